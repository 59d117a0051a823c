"""Work claimed block by block: the shared counter, and the blocks of the column split's phases."""

import numba
import numpy as np
import pytest
from numba import njit, prange

from fastmlp.claims import claim, reset
from fastmlp.layout import CLAIM_MIN_TILES, CLAIM_SMALL_BLOCKS, COLUMN_TILE, claim_blocks, claim_bounds, split_bounds


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


def _blocks(n):
    return [claim_bounds(n, b) for b in range(claim_blocks(n))]


def test_blocks_cover_a_layers_units_in_order_on_tile_boundaries():
    for n in range(1, 1100):
        blocks = _blocks(n)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        for (a0, a1), (b0, b1) in zip(blocks, blocks[1:]):
            assert a1 == b0 and a0 <= a1
        assert all(j0 % COLUMN_TILE == 0 for j0, _ in blocks)


def test_a_large_block_at_each_end_and_the_small_ones_between():
    """1024 units (64 tiles): 384 units at each end, and the 256 between in equal small blocks."""
    small = 256 // CLAIM_SMALL_BLOCKS
    assert _blocks(1024) == [(0, 384)] + [(384 + q * small, 384 + (q + 1) * small)
                                          for q in range(CLAIM_SMALL_BLOCKS)] + [(640, 1024)]
    for n in (256, 500, 784, 1000, 4096):
        sizes = [j1 - j0 for j0, j1 in _blocks(n)]
        tiles = -(-n // COLUMN_TILE)
        assert sizes[0] == 3 * tiles // 8 * COLUMN_TILE and sizes[-1] >= sizes[0] - COLUMN_TILE
        tiles_between = [-(-s // COLUMN_TILE) for s in sizes[1:-1]]
        assert len(tiles_between) == CLAIM_SMALL_BLOCKS and max(tiles_between) - min(tiles_between) <= 1


def test_a_layer_of_few_tiles_is_claimed_in_halves():
    """Below CLAIM_MIN_TILES tiles (100 units: 7) each end's block is one of split_bounds' halves."""
    n = (CLAIM_MIN_TILES - 1) * COLUMN_TILE
    for m in (1, 40, 100, n):
        assert _blocks(m) == [split_bounds(m, 2, 0), split_bounds(m, 2, 1)]
    assert len(_blocks(n + 1)) == 2 + CLAIM_SMALL_BLOCKS
