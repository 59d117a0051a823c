"""The GEMM on blocks of flat buffers (``fastmlp.blas.gemm``) against its NumPy twin in the reference."""

import numpy as np
import pytest

from fastmlp import reference as ref
from fastmlp.blas import gemm


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
