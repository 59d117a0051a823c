"""The floating-point mode a training call runs in: subnormal numbers flushed to zero.

Adam's moments of weights that rarely see a gradient (MNIST's border pixels) decay towards zero
and pass through the subnormal range (below 1.2e-38 in float32), where x86 cores take a hundred
cycles or more per operation: a few thousand such moments slowed a 784-100-10 epoch by a fifth.
XLA runs with subnormals flushed, and so do the training workers here: :func:`flush_subnormals`
sets the CPU's flush-to-zero and denormals-are-zero modes (x86 MXCSR bits FTZ and DAZ; Arm FPCR
bit FZ) for the thread, and :func:`restore_fp_mode` puts the caller's mode back before the
kernel returns, so nothing outside the call (NumPy in the caller's thread) sees the change.
Every thread of a call sets the same mode, so results stay the same bits on any thread count.
"""

from __future__ import annotations

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_TRIPLE = llvm_binding.get_process_triple().lower()
_X86 = _TRIPLE.startswith(("x86_64", "i686", "i386"))
_ARM64 = _TRIPLE.startswith(("aarch64", "arm64"))
_MXCSR_FTZ_DAZ = 0x8040  # MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)
_FPCR_FZ = 1 << 24


def _mxcsr(builder, store: bool, slot):
    name = "llvm.x86.sse.ldmxcsr" if store else "llvm.x86.sse.stmxcsr"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]),
                                        name)
    builder.call(fn, (builder.bitcast(slot, ir.IntType(8).as_pointer()),))


@intrinsic
def flush_subnormals(typingctx):
    """Set this thread's flush-to-zero mode; returns the mode it replaced (for :func:`restore_fp_mode`)."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            _mxcsr(builder, False, slot)
            old = builder.load(slot)
            builder.store(builder.or_(old, ir.Constant(ir.IntType(32), _MXCSR_FTZ_DAZ)), slot)
            _mxcsr(builder, True, slot)
            return builder.zext(old, i64)
        if _ARM64:
            get = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, []), "llvm.aarch64.get.fpcr")
            put = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i64]),
                                                 "llvm.aarch64.set.fpcr")
            old = builder.call(get, ())
            builder.call(put, (builder.or_(old, ir.Constant(i64, _FPCR_FZ)),))
            return old
        return ir.Constant(i64, 0)

    return types.int64(), codegen


@intrinsic
def restore_fp_mode(typingctx, old):
    """Put back the mode :func:`flush_subnormals` returned."""
    if not isinstance(old, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(value, ir.IntType(32)), slot)
            _mxcsr(builder, True, slot)
        elif _ARM64:
            put = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(64)]),
                                                 "llvm.aarch64.set.fpcr")
            builder.call(put, (value,))
        return context.get_dummy_value()

    return types.void(old), codegen
