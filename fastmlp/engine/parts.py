"""How a step's work is cut into parts: by the shape alone, never by the machine or the thread count.

Every parallel phase of a step (:mod:`fastmlp.engine.step`) and of inference
(:mod:`fastmlp.engine.infer`) is a list of parts that these rules fix from the shape (layer sizes,
batch rows). Any number of threads claims them (:mod:`fastmlp.engine.sync`); what a part
computes, and the order in which partial results are added, never depend on who claims it. So
the bits of a run are the same on 1, 2 or 64 threads; more threads only finish the list sooner.

Part counts are powers of two between MIN_PARTS and MAX_PARTS, so that the common core counts
(2, 4, 8, 16) share them evenly. Parts are no smaller than an efficient single-threaded product
(ROWS_PER_SHARD rows, UNITS_PER_PART units): a part that is too small costs more in the BLAS's
fixed work (packing its shared operand again) than another core gains (docs/scaling.md models it).
"""

from __future__ import annotations

from .jit import kernel

MIN_PARTS = 2
MAX_PARTS = 16
ROWS_PER_SHARD = 128
UNITS_PER_PART = 512

# The column split cuts a layer's units on multiples of COLUMN_TILE: OpenBLAS computes a
# product's rows in tiles of 16, and a part that ends inside a tile runs slower (docs/tuning.md).
COLUMN_TILE = 16


@kernel
def _power_of_two_parts(n):
    """The largest power of two <= n, within [MIN_PARTS, MAX_PARTS]."""
    p = MIN_PARTS
    while p * 2 <= min(n, MAX_PARTS):
        p *= 2
    return p


@kernel
def row_parts(m):
    """Row shards of a batch of m rows: at least ROWS_PER_SHARD rows each (but two at least, one
    for one row), a power of two."""
    return min(m, _power_of_two_parts(m // ROWS_PER_SHARD))


@kernel
def unit_parts(n):
    """Parts of a layer of n units in the column split: at least UNITS_PER_PART units each (but
    two at least), a power of two; :func:`split_bounds` gives their units."""
    return _power_of_two_parts(n // UNITS_PER_PART)


@kernel
def shard_bounds(m, n_shards, s):
    """Rows ``r0 .. r1 - 1`` of shard s of a batch of m rows cut into n_shards."""
    return s * m // n_shards, (s + 1) * m // n_shards


@kernel
def split_bounds(n, parts, p):
    """Units ``j0 .. j1 - 1`` of part p of n units cut into ``parts`` on multiples of COLUMN_TILE
    (a part may be empty when n is small)."""
    tiles = -(-n // COLUMN_TILE)
    return min(n, p * tiles // parts * COLUMN_TILE), min(n, (p + 1) * tiles // parts * COLUMN_TILE)


def column_split(sizes, batch_size, small_kernels: bool = True) -> bool:
    """Whether a network of these layer sizes trains in the column split rather than as row shards.

    Row shards of many rows are efficient products; few rows are not, while a column part keeps
    every row. So, with at least COLUMN_SPLIT_WIDE_INPUTS inputs (the first product is where the
    split gains), the column split takes a first hidden layer at least COLUMN_SPLIT_UNITS wide
    and at least half as wide as the batch is long, up to COLUMN_SPLIT_BLOCK_ROWS rows; three
    quarters as wide beyond. From COLUMN_SPLIT_INPUTS inputs the layer must be as wide as the
    batch; never with fewer inputs. Without the BLAS's small-matrix kernels (``small_kernels``
    False: :func:`fastmlp.engine.blas.small_gemm_limit` is 0) narrow parts are slower, and a layer
    narrower than COLUMN_SPLIT_PLAIN_UNITS splits only batches of at most COLUMN_SPLIT_PLAIN_ROWS
    rows. The measurements behind each bound, for both kernel families, are in docs/tuning.md.
    """
    sizes = list(sizes)
    hidden = sizes[1:-1]
    if not hidden or hidden[0] <= COLUMN_TILE or sizes[0] < COLUMN_SPLIT_INPUTS:
        return False
    width = hidden[0]
    if sizes[0] < COLUMN_SPLIT_WIDE_INPUTS:
        return width >= batch_size
    share = 0.5 if batch_size <= COLUMN_SPLIT_BLOCK_ROWS else 0.75
    if width < COLUMN_SPLIT_UNITS or width < share * batch_size:
        return False
    return small_kernels or width >= COLUMN_SPLIT_PLAIN_UNITS or batch_size <= COLUMN_SPLIT_PLAIN_ROWS


COLUMN_SPLIT_INPUTS = 256
COLUMN_SPLIT_WIDE_INPUTS = 512
COLUMN_SPLIT_BLOCK_ROWS = 128
COLUMN_SPLIT_UNITS = 64
COLUMN_SPLIT_PLAIN_UNITS = 128
COLUMN_SPLIT_PLAIN_ROWS = 64

# Inference runs chunks of INFER_ROWS rows through the whole network, each chunk a part
# (:mod:`fastmlp.engine.infer`); a row's logits do not depend on the chunk it falls in.
INFER_ROWS = 128

# The row split's update runs over blocks of whole weight rows of about UPDATE_ELEMENTS
# parameters (a block's parameters, gradients and moments stay in one core's cache).
UPDATE_ELEMENTS = 32768


def update_blocks(layout) -> list[tuple[int, int, int]]:
    """``(layer, first row, end row)`` of every block of the row split's update, layer by layer;
    a layer's bias goes with its last block."""
    from .layout import N_IN, N_OUT
    blocks = []
    for l in range(layout.shape[0]):
        n_in, n_out = int(layout[l, N_IN]), int(layout[l, N_OUT])
        rows = max(1, UPDATE_ELEMENTS // n_in)
        count = -(-n_out // rows)
        blocks += [(l, q * n_out // count, (q + 1) * n_out // count) for q in range(count)]
    return blocks
