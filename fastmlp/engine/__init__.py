"""The engine: Numba kernels on flat float32 buffers, run on any number of threads.

Floors, bottom up (a module imports only from those below it):

1. ``layout`` (the flat buffers), ``parts`` (how work is cut, by the shape), ``sync`` (claims and
   barriers), ``rng`` (counter-based random numbers), ``blas`` (GEMM on blocks of flat buffers)
2. ``augment`` (the warp), ``update`` (Adam and the recipe's update), ``pool`` (the threads a
   call runs on)
3. ``layers`` (gather, dense forward and backward, the loss), ``columns`` (the column split's
   pieces), ``infer`` (position-independent inference)
4. ``records`` (the named tuples the kernels take), ``step`` (the training workers)

Everything here is nopython Numba or the thin Python that calls it; nothing knows about files,
datasets or the command line.
"""

from .jit import drop_stale_caches

drop_stale_caches()
