"""How the threads of one kernel call share work: atomic claims of parts, and barriers between phases.

A kernel call runs the same ``nogil`` function on T threads (:mod:`fastmlp.engine.pool`), each
knowing its number t. A phase's work is a list of parts fixed by the shape
(:mod:`fastmlp.engine.parts`); each thread takes the next unclaimed part (:func:`claim`) until
none is left, then waits at a :func:`barrier` for the others before the next phase. Which thread
runs a part, and how many parts each runs, may vary from step to step; what a part computes does
not, so results never depend on it. A thread on a slowed core (or one that starts late) simply
claims fewer parts, where a fixed share per thread would make the others wait.

The atomics are Numba intrinsics emitting LLVM's ``atomicrmw`` and atomic loads and stores
(sequentially consistent: each barrier orders every write before it against every read after
it). A waiting thread spins, then yields its core (``sched_yield``), so that more threads than
cores stay correct, only slower.
"""

from __future__ import annotations

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel


def _int64_slot(context, builder, signature, arr, index):
    """A pointer to ``arr[index]`` of a 1-D int64 array."""
    data = context.make_array(signature.args[0])(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, index, signature.args[1], types.intp)])


def _is_int64_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


@intrinsic
def fetch_add(typingctx, counters, r, amount):
    """``counters[r] += amount`` as one atomic read-modify-write (int64 array), returning the old value."""
    if not (_is_int64_array(counters) and isinstance(r, types.Integer) and isinstance(amount, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        slot = _int64_slot(context, builder, signature, args[0], args[1])
        step = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", slot, step, "seq_cst")

    return types.int64(counters, r, amount), codegen


@intrinsic
def atomic_load(typingctx, counters, r):
    """``counters[r]``, read atomically."""
    if not (_is_int64_array(counters) and isinstance(r, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_int64_slot(context, builder, signature, args[0], args[1]), "seq_cst", 8)

    return types.int64(counters, r), codegen


@intrinsic
def atomic_store(typingctx, counters, r, value):
    """``counters[r] = value``, written atomically."""
    if not (_is_int64_array(counters) and isinstance(r, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        slot = _int64_slot(context, builder, signature, args[0], args[1])
        builder.store_atomic(context.cast(builder, args[2], signature.args[2], types.int64), slot, "seq_cst", 8)
        return context.get_dummy_value()

    return types.void(counters, r, value), codegen


@intrinsic
def sched_yield(typingctx):
    """The C library's ``sched_yield()``: give the core to another runnable thread. Linked by name, so
    kernels that call it are cached on disk."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, ())

    return types.int32(), codegen


@intrinsic
def spin_pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``, Arm ``yield``): a waiting thread leaves the core's
    resources to the work beside it and does not flood the memory system with reads. Nothing on
    other targets."""
    def codegen(context, builder, signature, args):
        triple = builder.module.triple.lower() or _PROCESS_TRIPLE
        if triple.startswith(("x86_64", "i686", "i386")):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, ())
        elif triple.startswith(("aarch64", "arm64")):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]),
                                                "llvm.aarch64.hint")
            builder.call(fn, (ir.Constant(ir.IntType(32), 1),))
        return context.get_dummy_value()

    return types.void(), codegen


_PROCESS_TRIPLE = llvm_binding.get_process_triple().lower()
_BACK = 1 << 32  # a claim from the back counts in the high half of the slot


@kernel
def claim(counters, r, end, parts):
    """The next unclaimed part of phase r's ``parts`` from one end of the list: the lowest when
    ``end`` is 0, the highest when it is 1; -1 when none is left.

    The slot ``counters[r]`` counts the claims from the front in its low 32 bits and from the back
    in its high 32 bits; one atomic add takes a number from either, and a claim is good while the
    two counts before it sum to less than ``parts``, so every part goes to exactly one claim.
    Two threads claiming from opposite ends take the same parts step after step when they run at
    one speed (each keeps its data in its own cache), and meet wherever the faster one has got to
    when they do not. The slot must be 0 when the phase starts (:func:`barrier` resets them).
    """
    before = fetch_add(counters, r, _BACK if end else 1)
    front, back = before & 0xFFFFFFFF, before >> 32
    if front + back >= parts:
        return -1
    return parts - 1 - back if end else front


# Slots of a call's ``sync`` array (int64): the barrier's arrival count and generation, and the
# abort flag (set when a thread fails; every barrier then returns at once).
ARRIVED, GENERATION, ABORT = 0, 1, 2
SYNC_SLOTS = 3
SPINS_BEFORE_YIELD = 4000


@kernel
def barrier(sync, threads, counters):
    """Wait until all ``threads`` threads have called it; the last to arrive resets the claim
    ``counters`` (every phase's slot back to 0) before it lets the others go. Returns False when
    the call is being aborted (a thread failed), True otherwise.

    A sense-reversing central barrier: each arrival adds 1 to ``sync[ARRIVED]``; the last resets
    it and advances ``sync[GENERATION]``, which the others wait to see change.
    """
    if threads == 1:
        for r in range(counters.shape[0]):
            counters[r] = 0
        return atomic_load(sync, ABORT) == 0
    generation = atomic_load(sync, GENERATION)
    if fetch_add(sync, ARRIVED, 1) == threads - 1:
        for r in range(counters.shape[0]):
            atomic_store(counters, r, 0)
        atomic_store(sync, ARRIVED, 0)
        fetch_add(sync, GENERATION, 1)
    else:
        spins = 0
        while atomic_load(sync, GENERATION) == generation:
            if atomic_load(sync, ABORT) != 0:
                return False
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                sched_yield()
            else:
                spin_pause()
    return atomic_load(sync, ABORT) == 0
