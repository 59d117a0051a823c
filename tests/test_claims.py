"""Work claimed block by block: the shared counter, and the blocks of the column split's phases."""

import numba
import numpy as np
import pytest
from numba import njit, prange

from fastmlp.claims import claim, reset
from fastmlp.layout import CLAIM_MIN_TILES, COLUMN_TILE, claim_blocks, claim_bounds, split_bounds


@njit(parallel=True)
def _claim_all(counters, region, owner, blocks, workers, spin):
    """Every worker claims blocks of ``region`` until none is left, marking each block's owner."""
    reset(counters)
    for t in prange(workers):
        b = claim(counters, region)
        while b < blocks:
            owner[b] += 1 + 1000 * t
            acc = 0.0
            for i in range(spin):  # some work per block, so that the workers overlap
                acc += np.sqrt(i + b)
            if acc < 0:
                owner[b] = -1
            b = claim(counters, region)


@pytest.mark.parametrize("threads", [1, 2])
def test_every_block_is_claimed_exactly_once_whatever_the_threads(threads):
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        counters = np.full(3, 7, np.int64)  # stale values from an earlier region: reset clears them
        owner = np.zeros(20_000, np.int64)
        _claim_all(counters, 1, owner, owner.size, 2, 200)
    finally:
        numba.set_num_threads(before)
    assert (owner % 1000 == 1).all()  # each block marked once, by one worker
    assert counters[1] == owner.size + 2  # and each worker's last claim came back past the end
    assert counters[0] == counters[2] == 0


def test_claim_types_only_a_flat_int64_counter_array():
    @njit
    def bad(counters):
        return claim(counters, 0)

    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(2, np.int32))


def _blocks(n, parts):
    return [claim_bounds(n, parts, b) for b in range(claim_blocks(n, parts))]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_blocks_cover_a_layers_units_in_order_on_tile_boundaries(parts):
    for n in range(1, 1100):
        blocks = _blocks(n, parts)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        for (a0, a1), (b0, b1) in zip(blocks, blocks[1:]):
            assert a1 == b0 and a0 <= a1
        assert all(j0 % COLUMN_TILE == 0 for j0, _ in blocks)


def test_the_large_blocks_hold_three_quarters_and_the_small_ones_share_the_rest_evenly():
    """1024 units (64 tiles) for two parts: two blocks of 384 units, then four of 64."""
    assert _blocks(1024, 2) == [(0, 384), (384, 768), (768, 832), (832, 896), (896, 960), (960, 1024)]
    for n in (256, 500, 784, 1000, 4096):
        sizes = [j1 - j0 for j0, j1 in _blocks(n, 2)]
        tiles = -(-n // COLUMN_TILE)
        assert sizes[0] == sizes[1] == 3 * tiles // 8 * COLUMN_TILE
        small = [-(-s // COLUMN_TILE) for s in sizes[2:]]
        assert len(small) == 4 and max(small) - min(small) <= 1


def test_a_layer_of_few_tiles_is_claimed_in_the_fixed_parts():
    """Below CLAIM_MIN_TILES tiles (100 units: 7) each thread's share is one block, as split_bounds cuts it."""
    n = (CLAIM_MIN_TILES - 1) * COLUMN_TILE
    for m in (1, 40, 100, n):
        assert _blocks(m, 2) == [split_bounds(m, 2, 0), split_bounds(m, 2, 1)]
    assert len(_blocks(n + 1, 2)) == 6
