"""The GEMM on blocks of flat buffers (``fastmlp.engine.blas.gemm``) against its NumPy twin in the reference,
the same product cut into blocks of rows (``gemm_blocks``), and when the blocks are used."""

import threading

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.engine import blas
from fastmlp.engine.blas import SMALL_GEMM_MIN_ROWS, SMALL_GEMM_MNK, gemm, gemm_blocks, small_gemm_limit


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_a_block_product_matches_numpy_and_leaves_the_rest_of_the_buffer_alone(trans_a, trans_b, beta):
    rng = np.random.default_rng(int(trans_a) * 4 + int(trans_b) * 2 + int(beta * 2))
    m, n, k = 7, 5, 9
    # operands inside larger buffers, at offsets, with row strides wider than the block
    lda, ldb, ldc = (m if trans_a else k) + 3, (k if trans_b else n) + 2, n + 4
    a = rng.standard_normal(3 + ((k if trans_a else m) - 1) * lda + lda).astype(np.float32)
    b = rng.standard_normal(5 + ((n if trans_b else k) - 1) * ldb + ldb).astype(np.float32)
    c = rng.standard_normal(2 + (m - 1) * ldc + ldc).astype(np.float32)
    want = ref.block_gemm(trans_a, trans_b, m, n, k, a, 3, lda, b, 5, ldb, c.copy(), 2, ldc, beta)
    got = c.copy()
    gemm(trans_a, trans_b, m, n, k, a, 3, lda, b, 5, ldb, got, 2, ldc, beta)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    block = np.zeros_like(c, dtype=bool)
    for i in range(m):
        block[2 + i * ldc:2 + i * ldc + n] = True
    np.testing.assert_array_equal(got[~block], c[~block])  # outside the block: untouched, bit for bit
    assert not np.array_equal(got[block], c[block])


def test_an_empty_sum_sets_the_block_to_beta_times_itself():
    c = np.full(12, np.nan, np.float32)
    gemm(False, False, 2, 3, 0, np.zeros(1, np.float32), 0, 1, np.zeros(1, np.float32), 0, 3, c, 0, 3, 0.0)
    np.testing.assert_array_equal(c[:6], 0.0)  # beta 0 overwrites, even NaN
    assert np.isnan(c[6:]).all()
    c[:6] = 2.0
    gemm(False, False, 2, 3, 0, np.zeros(1, np.float32), 0, 1, np.zeros(1, np.float32), 0, 3, c, 0, 3, 0.5)
    np.testing.assert_array_equal(c[:6], 1.0)


def operands(rng, trans_a, trans_b, m, n, k):
    """A, B and C inside larger buffers, at offsets 3, 5 and 2, with row strides wider than the block."""
    lda, ldb, ldc = (m if trans_a else k) + 3, (k if trans_b else n) + 2, n + 4
    a = rng.standard_normal(3 + ((k if trans_a else m) - 1) * lda + lda).astype(np.float32)
    b = rng.standard_normal(5 + ((n if trans_b else k) - 1) * ldb + ldb).astype(np.float32)
    c = rng.standard_normal(2 + (m - 1) * ldc + ldc).astype(np.float32)
    return (a, 3, lda, b, 5, ldb), (c, 2, ldc)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,rows", [(35, 8), (35, 11), (16, 8), (9, 8), (35, 35), (35, 7)])
def test_a_product_in_blocks_of_rows_is_the_whole_product(trans_a, trans_b, m, rows):
    """``gemm_blocks`` with a limit of ``rows`` rows' multiply-adds: the block product of the
    reference, the buffer outside C's block untouched (35 rows at most 8 per block: 5 blocks of 7;
    at most 11: 4 blocks of 8 or 9; 7 per block is below the minimum: one product)."""
    rng = np.random.default_rng(m * 100 + rows + 10 * int(trans_a) + 20 * int(trans_b))
    n, k = 6, 10
    ab, (c, c_off, ldc) = operands(rng, trans_a, trans_b, m, n, k)
    want = ref.block_gemm(trans_a, trans_b, m, n, k, *ab, c.copy(), c_off, ldc, 0.0)
    got = c.copy()
    gemm_blocks(rows * n * k, trans_a, trans_b, m, n, k, *ab, got, c_off, ldc, 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    block = np.zeros_like(c, dtype=bool)
    for i in range(m):
        block[c_off + i * ldc:c_off + i * ldc + n] = True
    np.testing.assert_array_equal(got[~block], c[~block])


def test_blocks_are_the_fewest_equal_ones_within_the_limit_and_never_too_small(monkeypatch):
    """The rows of each call ``gemm_blocks`` makes, read through a Python stand-in for ``gemm``."""
    calls = []
    monkeypatch.setattr(blas, "gemm", lambda ta, tb, m, *rest: calls.append(m))
    for m, rows in ((35, 8), (35, 11), (32, 16), (100, 100), (100, 7), (100, 0)):
        calls.clear()
        blas.gemm_blocks.py_func(rows * 6 * 10, False, False, m, 6, 10, None, 0, 10, None, 0, 6, None, 0, 6, 0.0)
        rows_per_call = list(calls)
        assert sum(rows_per_call) == m
        if rows >= m or rows < SMALL_GEMM_MIN_ROWS:
            assert rows_per_call == [m]
        else:
            assert len(rows_per_call) == -(-m // rows) and max(rows_per_call) <= rows
            assert max(rows_per_call) - min(rows_per_call) <= 1


def openblas(folder, version="0.3.30", core="SkylakeX"):
    return {"user_api": "blas", "internal_api": "openblas", "filepath": f"/site-packages/{folder}/libopenblas.so",
            "version": version, "architecture": core}


@pytest.mark.parametrize("info,limit", [
    ([openblas("numpy.libs", core="Haswell"), openblas("scipy.libs")], SMALL_GEMM_MNK),
    ([openblas("numpy.libs"), openblas("scipy.libs", core="Haswell")], 0),
    ([openblas("numpy.libs"), openblas("scipy.libs", version="0.3.13")], 0),
    ([openblas("lib")], SMALL_GEMM_MNK),  # one BLAS shared by NumPy and SciPy
    ([openblas("numpy.libs"), openblas("lib")], 0),  # two, neither SciPy's: not known which one it calls
    ([{"user_api": "blas", "internal_api": "mkl", "filepath": "/lib/libmkl_rt.so", "version": "2024.1"}], 0),
])
def test_blocks_are_used_only_where_the_blas_has_small_matrix_kernels(monkeypatch, info, limit):
    """SciPy's OpenBLAS (the library the kernels call), 0.3.16 or later, on a SkylakeX-family core;
    NumPy's own BLAS does not decide."""
    import threadpoolctl
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: info)
    small_gemm_limit.cache_clear()
    blas.kernels_blas.cache_clear()
    try:
        assert small_gemm_limit() == limit
    finally:
        small_gemm_limit.cache_clear()
        blas.kernels_blas.cache_clear()


def test_holds_of_one_blas_thread_from_several_python_threads_end_only_with_the_last(monkeypatch):
    """Two fits in two Python threads each hold the BLAS at one thread while their kernels run: the
    first to finish must not give the BLAS its threads back under the other (whose products would then
    be cut at other rows: other bits with OpenBLAS's Haswell kernels)."""
    events = []

    def at_one_thread():  # stands for the BLAS's setter: the setting is the process's, one for all threads
        events.append("BLAS at 1")
        return lambda: events.append("BLAS given back")

    monkeypatch.setattr(blas, "_blas_at_one_thread", at_one_thread)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with blas.one_blas_thread():
            first_in.set()
            second_in.wait(30)
        first_out.set()

    def second():
        first_in.wait(30)
        with blas.one_blas_thread():
            second_in.set()
            first_out.wait(30)
            events.append("the second's kernels still run")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert events == ["BLAS at 1", "the second's kernels still run", "BLAS given back"]
