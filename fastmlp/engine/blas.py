"""A float32 GEMM on blocks of flat row-major buffers, callable from Numba kernels without copies.

``np.dot`` inside Numba takes whole contiguous arrays. The column-split step (see
:mod:`fastmlp.engine.columns`) multiplies column blocks: ``z[:, j0:j1] = x @ W[j0:j1].T`` writes
every row of z with a stride of n_out floats. :func:`gemm` reaches the same BLAS (SciPy's
``sgemm``, through Numba's own ``numba_xxgemm`` helper, which takes leading dimensions) with a
pointer and a row stride per operand. The call is linked by name, so kernels that use it are cached
on disk like those that use ``np.dot``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel

_CHAR = ir.IntType(8)
_VOID_P = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta):
    """Column-major ``C = op(A) @ op(B) + beta C`` (Fortran's sgemm) on float32 arrays at element offsets."""
    for arr in (a, b, c):
        if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1):
            return None
    sig = types.int32(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta)

    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, a_, ao, lda_, b_, bo, ldb_, c_, co, ldc_, beta_ = args
        tys = signature.args
        intp = context.get_value_type(types.intp)

        def as_intp(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def pointer(arr, ty, off, off_ty):
            data = context.make_array(ty)(context, builder, arr).data
            return builder.bitcast(builder.gep(data, [as_intp(off, off_ty)]), _VOID_P)

        def char(value, ty):
            return builder.trunc(as_intp(value, ty), _CHAR)

        f32 = ir.FloatType()
        alpha_slot = cgutils.alloca_once_value(builder, ir.Constant(f32, 1.0))
        beta_slot = cgutils.alloca_once_value(builder, context.cast(builder, beta_, tys[14], types.float32))
        fnty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, _CHAR, intp, intp, intp, _VOID_P, _VOID_P, intp,
                                                _VOID_P, intp, _VOID_P, _VOID_P, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        return builder.call(fn, (ir.Constant(_CHAR, ord("s")), char(ta, tys[0]), char(tb, tys[1]),
                                 as_intp(m_, tys[2]), as_intp(n_, tys[3]), as_intp(k_, tys[4]),
                                 builder.bitcast(alpha_slot, _VOID_P), pointer(a_, tys[5], ao, tys[6]),
                                 as_intp(lda_, tys[7]), pointer(b_, tys[8], bo, tys[9]), as_intp(ldb_, tys[10]),
                                 builder.bitcast(beta_slot, _VOID_P), pointer(c_, tys[11], co, tys[12]),
                                 as_intp(ldc_, tys[13])))

    return sig, codegen


_N, _T = ord("n"), ord("t")


@kernel
def gemm(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta):
    """Row-major ``C = op(A) @ op(B) + beta C`` on blocks of flat float32 buffers.

    C is (m, n): element (i, j) at ``c[c_off + i ldc + j]``. op(A) is (m, k): A as stored
    (``a[a_off + i lda + l]``, ``trans_a`` false) or transposed (A stored (k, m),
    ``a[a_off + l lda + i]``); likewise op(B) (k, n) from ``b``. ``beta`` 0 overwrites C. The
    caller keeps every index inside its buffer (BLAS does not check). Row-major C is column-major
    C^T = op(B)^T op(A)^T, which is what the column-major BLAS is asked for.
    """
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum: BLAS may return at once, leaving C as it was
        for i in range(m):
            for j in range(n):
                c[c_off + i * ldc + j] = 0.0 if beta == 0 else c[c_off + i * ldc + j] * beta
        return
    _xxgemm(_T if trans_b else _N, _T if trans_a else _N, n, m, k, b, b_off, ldb, a, a_off, lda, c, c_off, ldc,
            beta)


# OpenBLAS's SkylakeX-family cores (AVX-512) compute a product of at most SMALL_GEMM_MNK
# multiply-adds (M N K) with their small-matrix kernels, which skip the packing and run much
# faster on the products of MLP training; other kernel families have no such path, and there
# cutting a product into small blocks only adds work (docs/tuning.md has the figures).
SMALL_GEMM_MNK = 1_000_000
# Blocks of fewer rows lose more than the small kernels gain (docs/tuning.md).
SMALL_GEMM_MIN_ROWS = 8
SMALL_GEMM_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


@functools.cache
def kernels_blas() -> dict | None:
    """threadpoolctl's record of the BLAS the kernels call (SciPy's), or None when it cannot be told."""
    import scipy.linalg.cython_blas  # noqa: F401  (the library the kernels call: loaded, so that it is listed)
    from threadpoolctl import threadpool_info
    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    # SciPy's own copy (a wheel's scipy.libs folder), else the one BLAS that NumPy and SciPy share
    own = [lib for lib in libs if "scipy" in os.path.basename(os.path.dirname(str(lib.get("filepath", "")))).lower()]
    return own[0] if own else libs[0] if len(libs) == 1 else None


@functools.cache
def small_gemm_limit() -> int:
    """SMALL_GEMM_MNK when the BLAS that the kernels call (SciPy's OpenBLAS, 0.3.16 or later) has
    the small-matrix kernels on this machine, else 0. Fixed for the process: the blocks it leads
    to decide the rounding, so it never depends on a measurement."""
    lib = kernels_blas()
    if lib is None or lib.get("internal_api") != "openblas":
        return 0
    version = tuple(int(p) if p.isdigit() else 0 for p in str(lib.get("version") or "0").split(".")[:3])
    core = str(lib.get("architecture") or "").lower()
    return SMALL_GEMM_MNK if version >= (0, 3, 16) and core in SMALL_GEMM_CORES else 0


@kernel
def gemm_blocks(limit, trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta):
    """:func:`gemm`, C's m rows cut into the fewest equal blocks of at most ``limit // (n k)`` rows
    each (so that each product has at most ``limit`` multiply-adds; see SMALL_GEMM_MNK). One call
    when ``limit`` is 0, when the product fits, or when a block would hold fewer than
    SMALL_GEMM_MIN_ROWS rows. Row r of op(A) is A's row r (``a_off + r lda``), or its column r when
    ``trans_a``; C's row r is at ``c_off + r ldc``.
    """
    rows = limit // max(1, n * k)
    if limit == 0 or rows >= m or rows < SMALL_GEMM_MIN_ROWS:
        gemm(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta)
        return
    blocks = -(-m // rows)
    for q in range(blocks):
        r0, r1 = q * m // blocks, (q + 1) * m // blocks
        gemm(trans_a, trans_b, r1 - r0, n, k, a, a_off + (r0 if trans_a else r0 * lda), lda, b, b_off, ldb, c,
             c_off + r0 * ldc, ldc, beta)


_BLAS = []  # one threadpoolctl controller of the BLAS libraries, made on first use


def blas_threads(threads: int):
    """A context in which the loaded BLAS libraries (NumPy's and SciPy's, which the kernels call)
    use ``threads`` threads; about 10 us to enter and leave once the controller exists."""
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401  (the kernels' np.dot calls SciPy's BLAS: load it first)
        from threadpoolctl import ThreadpoolController
        _BLAS.append(ThreadpoolController().select(user_api="blas"))
    return _BLAS[0].limit(limits=threads)


@kernel
def _square(a, c):
    np.dot(a, a, c)


_BLAS_STARTED: list[bool] = []


def start_blas_threads(threads: int) -> None:
    """Once per process, one multi-threaded GEMM through the BLAS that the kernels call: with
    OpenBLAS, when the first call runs on one thread, later single-threaded calls from several
    threads at once run one after the other; after one call with its pool started they run side
    by side. Never while a kernel call holds the BLAS at one thread (:func:`one_blas_thread`)."""
    with _HOLD_LOCK:
        if _BLAS_STARTED or threads < 2 or _HOLD[0]:
            return
        a = np.ones((256, 256), np.float32)
        with blas_threads(threads):
            _square(a, np.empty_like(a))
        _BLAS_STARTED.append(True)


_HOLD_LOCK = threading.Lock()
_HOLD: list = [0, None]  # how many kernel calls hold the BLAS at one thread, and the limit they share


@functools.cache
def _openblas_threads_setter():
    """OpenBLAS's ``openblas_set_num_threads_local`` (0.3.27 and later: sets the count, returns the one it
    replaced) in the library the kernels call, or None."""
    lib = kernels_blas()
    if lib is None or lib.get("internal_api") != "openblas":
        return None
    try:
        setter = ctypes.CDLL(lib["filepath"]).openblas_set_num_threads_local
    except (OSError, AttributeError, KeyError):
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
    return setter


def _blas_at_one_thread():
    """Set the kernels' BLAS to one thread; returns what gives the previous count back. OpenBLAS's own
    setter where there is one: threadpoolctl's, called from a Python thread other than the main one,
    left OpenBLAS 0.3.31 at its threads."""
    setter = _openblas_threads_setter()
    if setter is not None:
        previous = setter(1)
        return lambda: setter(previous)
    return blas_threads(1).restore_original_limits


@contextlib.contextmanager
def one_blas_thread():
    """The BLAS at one thread for the block: the kernels' parts are the parallelism. The setting is
    the process's, so the holds are counted: the first sets it, the last gives it back. (Each block
    setting and restoring it on its own let one Python thread's call end another's hold midway,
    and the BLAS's threads cut a product at other rows: other bits with OpenBLAS's Haswell kernels.)"""
    with _HOLD_LOCK:
        if _HOLD[0] == 0:
            _HOLD[1] = _blas_at_one_thread()
        _HOLD[0] += 1
    try:
        yield
    finally:
        with _HOLD_LOCK:
            _HOLD[0] -= 1
            if _HOLD[0] == 0:
                _HOLD[1]()
                _HOLD[1] = None
