"""How a step's work is cut: parts fixed by the shape alone, powers of two, each efficient on one core."""

import numpy as np
import pytest

from fastmlp.engine import parts
from fastmlp.engine.layout import make_layout


@pytest.mark.parametrize("m,expected", [(1, 1), (2, 2), (31, 2), (64, 2), (256, 2), (383, 2), (512, 4), (600, 4),
                                        (1024, 8), (2048, 16), (100_000, 16)])
def test_a_batch_is_cut_into_a_power_of_two_of_row_shards_of_at_least_128_rows(m, expected):
    assert parts.row_parts(m) == expected


@pytest.mark.parametrize("n,expected", [(1, 2), (100, 2), (1023, 2), (1024, 2), (2048, 4), (4096, 8),
                                        (1 << 20, 16)])
def test_a_layer_is_cut_into_a_power_of_two_of_parts_of_at_least_512_units(n, expected):
    assert parts.unit_parts(n) == expected


@pytest.mark.parametrize("n,count", [(10, 2), (40, 2), (100, 2), (1024, 2), (4096, 8), (130, 4)])
def test_unit_parts_cover_the_layer_once_on_tile_boundaries(n, count):
    bounds = [parts.split_bounds(n, count, p) for p in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(j0 % parts.COLUMN_TILE == 0 for j0, _ in bounds)


def test_the_update_blocks_cover_every_parameter_once_in_whole_rows():
    layout = make_layout([784, 1024, 1024, 10])
    seen = np.zeros(int(layout[-1, 3] + layout[-1, 1]), np.int64)
    for l, r0, r1 in parts.update_blocks(layout):
        n_in, w, b = layout[l, 0], layout[l, 2], layout[l, 3]
        seen[w + r0 * n_in:w + r1 * n_in] += 1
        seen[b + r0:b + r1] += 1
        assert (r1 - r0) * n_in <= max(parts.UPDATE_ELEMENTS, n_in)
    assert (seen == 1).all()


@pytest.mark.parametrize("sizes,batch,with_small_kernels,without", [
    ((784, 100, 10), 32, True, True), ((784, 256, 128, 10), 128, True, True), ((784, 1024, 1024, 10), 128, True, True),
    ((784, 1024, 10), 256, True, True), ((784, 100, 10), 64, True, True), ((784, 100, 10), 128, True, False),
    ((784, 64, 10), 128, True, False), ((784, 64, 10), 64, True, True), ((784, 100, 10), 256, False, False),
    ((784, 128, 10), 256, False, False), ((784, 192, 10), 256, True, True), ((784, 256, 10), 512, False, False),
    ((784, 384, 10), 512, True, True), ((784, 1024, 1024, 10), 512, True, True), ((784, 100, 10), 512, False, False),
    ((784, 32, 10), 32, False, False), ((784, 16, 10), 32, False, False), ((784, 10), 8, False, False),
    ((256, 100, 10), 100, True, True), ((256, 100, 10), 200, False, False), ((100, 256, 128, 10), 32, False, False)])
def test_the_split_is_chosen_by_the_shape_and_the_blas_kernel_family(sizes, batch, with_small_kernels, without):
    """With 512 inputs or more, units are split when the first hidden layer is at least 64 units
    wide and half as wide as the batch is long up to 128 rows, three quarters beyond (without the
    BLAS's small-matrix kernels, a layer under 128 units only for batches of 64 rows or fewer);
    with 256 to 511 inputs it must be as wide as the batch; never with fewer inputs. Never the
    thread count: the split decides the rounding."""
    assert parts.column_split(sizes, batch, small_kernels=True) is with_small_kernels
    assert parts.column_split(sizes, batch, small_kernels=False) is without


def test_a_changed_engine_source_drops_every_cached_kernel_of_the_engine(tmp_path):
    """Numba's cache of a kernel notices a change in its own file only; the engine keeps a hash of all
    its sources beside the caches and drops them all when it changes (here: a stale stamp)."""
    import os
    import subprocess
    import sys

    from numba.core.caching import _CacheLocator

    from fastmlp.engine import jit
    folder = tmp_path / _CacheLocator.get_suitable_cache_subpath(str(jit.ENGINE / "jit.py"))
    folder.mkdir(parents=True)
    stale = folder / "step.row_worker-1.py311.nbi"
    stale.write_text("compiled from other sources")
    (folder / jit.STAMP).write_text("another hash")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", "import fastmlp.engine"], env=env, check=True, timeout=120)
    assert not stale.exists()
    current = (folder / jit.STAMP).read_text()
    assert len(current) == 40 and current != "another hash"
    kept = folder / "step.row_worker-1.py311.nbi"
    kept.write_text("compiled from these sources")
    subprocess.run([sys.executable, "-c", "import fastmlp.engine"], env=env, check=True, timeout=120)
    assert kept.exists()
