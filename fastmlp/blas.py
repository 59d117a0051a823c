"""A float32 GEMM on blocks of flat row-major buffers, callable from Numba kernels without copies.

``np.dot`` inside Numba takes whole contiguous arrays. The column-split step (see
:mod:`fastmlp.step_kernels`) multiplies column blocks: ``z[:, j0:j1] = x @ W[j0:j1].T`` writes
every row of z with a stride of n_out floats. :func:`gemm` reaches the same BLAS (SciPy's
``sgemm``, through Numba's own ``numba_xxgemm`` helper, which takes leading dimensions) with a
pointer and a row stride per operand. The call is linked by name, so kernels that use it are cached
on disk like those that use ``np.dot``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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


@njit(cache=True, error_model="numpy", inline="always")
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
