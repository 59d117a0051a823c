"""Work claimed block by block: the counter that the column split's threads share."""

import numba
import numpy as np
import pytest
from numba import njit, prange

from fastmlp.claims import claim, reset


@njit(parallel=True)
def _claim_all(counters, region, owner, order, blocks, workers, spin):
    """Every worker claims blocks of ``region`` from its end (worker t from end t % 2) until none is
    left, marking each block's owner and the order in which it was taken."""
    reset(counters)
    for t in prange(workers):
        b = claim(counters, region, t % 2, blocks)
        k = 0
        while b >= 0:
            owner[b] += 1 + 1000 * t
            order[b] = k
            k += 1
            acc = 0.0
            for i in range(spin):  # some work per block, so that the workers overlap
                acc += np.sqrt(i + b)
            if acc < 0:
                owner[b] = -1
            b = claim(counters, region, t % 2, blocks)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_block_is_claimed_exactly_once_whatever_the_threads(threads, workers):
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        counters = np.full(3, 7, np.int64)  # stale values from an earlier region: reset clears them
        owner, order = np.zeros(20_001, np.int64), np.zeros(20_001, np.int64)
        _claim_all(counters, 1, owner, order, owner.size, workers, 200)
    finally:
        numba.set_num_threads(before)
    assert (owner % 1000 == 1).all()  # each block marked once, by one worker
    front, back = counters[1] & 0xFFFFFFFF, counters[1] >> 32
    assert front + back == owner.size + workers  # each worker's last claim came back empty
    assert counters[0] == counters[2] == 0
    if workers <= 2:  # worker 0 alone at the front: its blocks are a prefix, taken in order
        k = int((owner // 1000 == 0).sum())
        assert (owner[:k] // 1000 == 0).all()
        np.testing.assert_array_equal(order[:k], np.arange(k))


def test_two_workers_meet_where_the_faster_one_got_to():
    """From opposite ends: the front worker's blocks are 0 .. k - 1 in order, the back worker's
    the rest from the last one down, whoever is faster."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        counters, owner, order = np.zeros(1, np.int64), np.zeros(501, np.int64), np.zeros(501, np.int64)
        _claim_all(counters, 0, owner, order, owner.size, 2, 2000)
    finally:
        numba.set_num_threads(before)
    k = int((owner == 1).sum())
    assert (owner[:k] == 1).all() and (owner[k:] == 1001).all()
    np.testing.assert_array_equal(order[:k], np.arange(k))
    np.testing.assert_array_equal(order[k:], np.arange(owner.size - k)[::-1])


def test_claim_types_only_a_flat_int64_counter_array():
    @njit
    def bad(counters):
        return claim(counters, 0, 0, 4)

    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(2, np.int32))
