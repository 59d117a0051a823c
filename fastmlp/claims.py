"""Work claimed block by block: an atomic counter that Numba's threads share inside a parallel region.

A region's work is cut into blocks fixed by the shape; each thread takes the next unclaimed block
from its end of the list (:func:`claim`) until none is left. Which thread runs a block, and how
many blocks each runs, may vary from step to step; what a block computes does not, so results
never depend on it. A thread on a slowed core (or one that starts late) simply claims fewer
blocks, where a fixed share per thread would make the other wait.
"""

from __future__ import annotations

from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _fetch_add(typingctx, counters, r, amount):
    """``counters[r] += amount`` as one atomic read-modify-write (int64 array), returning the old value."""
    if not (isinstance(counters, types.Array) and counters.dtype == types.int64 and counters.ndim == 1):
        return None
    if not (isinstance(r, types.Integer) and isinstance(amount, types.Integer)):
        return None
    sig = types.int64(counters, r, amount)

    def codegen(context, builder, signature, args):
        arr, index, step = args
        data = context.make_array(signature.args[0])(context, builder, arr).data
        slot = builder.gep(data, [context.cast(builder, index, signature.args[1], types.intp)])
        return builder.atomic_rmw("add", slot, context.cast(builder, step, signature.args[2], types.int64),
                                  "monotonic")

    return sig, codegen


_BACK = 1 << 32  # a claim from the back counts in the high half of the slot


@njit(cache=True, error_model="numpy", inline="always")
def claim(counters, r, end, blocks):
    """The next unclaimed block of region r's ``blocks`` from one end of the list: the lowest when
    ``end`` is 0, the highest when it is 1; -1 when none is left.

    The slot ``counters[r]`` counts the claims from the front in its low 32 bits and from the back
    in its high 32 bits; one atomic add takes a number from either, and a claim is good while the
    two counts before it sum to less than ``blocks``, so every block goes to exactly one claim.
    Two threads claiming from opposite ends take the same blocks step after step when they run at
    one speed (each keeps its data in its own cache), and meet wherever the faster one has got to
    when they do not. The slot must be 0 before the region starts (:func:`reset`). The parallel
    region's own start and end order the blocks' memory accesses; the counter only hands out numbers.
    """
    before = _fetch_add(counters, r, _BACK if end else 1)
    front, back = before & 0xFFFFFFFF, before >> 32
    if front + back >= blocks:
        return -1
    return blocks - 1 - back if end else front


@njit(cache=True, error_model="numpy", inline="always")
def reset(counters):
    """Every region's counter back to 0 (outside any parallel region)."""
    for r in range(counters.shape[0]):
        counters[r] = 0
