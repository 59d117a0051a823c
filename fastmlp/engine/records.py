"""The records a training call's kernels take: a few named tuples in place of forty arguments.

Numba types a named tuple by its fields' types, so every record of one kind compiles to one
signature (each field is always given the same Python or NumPy type here), and a new option of
the recipe is one field of one record, not a new argument in six places.

* :class:`Net`: the layout and the flat parameter buffer.
* :class:`Data`: the examples (uint8 pixels or float32 features), their class labels (1-D integers)
  or regression targets (2-D float32), the epoch's order, and the examples' weights (float32, or
  None: every example counts once, and no weight code is compiled).
* :class:`Work`: the buffers preallocated for a batch size (:func:`allocate_work`).
* :class:`Optim`: Adam's moments and the weight average (empty when off).
* :class:`Aug`: the warp's parameters and taps, or None (then the warp is not even compiled).
* :class:`Recipe`: the training recipe's options, fixed for a run, or None for the plain recipe
  (then none of their code is even compiled).
* :class:`Call`: what one kernel call does (its steps, eta, seed and epoch).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import types
from numba.extending import overload

from .blas import small_gemm_limit
from .layout import N_IN, N_OUT, aligned_zeros
from .parts import MAX_PARTS, column_split, row_parts, unit_parts, update_blocks
from .sync import SYNC_SLOTS

Net = namedtuple("Net", ["layout", "params"])
Data = namedtuple("Data", ["images", "labels", "order", "weights"])
Work = namedtuple("Work", ["x", "y", "z", "h", "d", "act_off", "grads", "scratch", "out", "penalty", "blocks",
                           "counters", "sync"])
Optim = namedtuple("Optim", ["m", "v", "ema"])
Aug = namedtuple("Aug", ["params", "taps"])
Recipe = namedtuple("Recipe", ["schedule", "warmup", "total", "floor", "weight_decay", "max_norm", "ema",
                               "smoothing", "dropout_input", "dropout"])
Call = namedtuple("Call", ["first", "n_steps", "batch_size", "t0", "seed", "epoch", "lr", "beta1", "beta2", "eps",
                           "alpha", "small"])


def make_recipe(schedule: int = 0, warmup: float = 0.0, total: float = 0.0, floor: float = 0.0,
                weight_decay: float = 0.0, max_norm: float = 0.0, ema: float = 0.0, smoothing: float = 0.0,
                dropout_input: float = 0.0, dropout: float = 0.0) -> Recipe | None:
    """A :class:`Recipe` with every field of its one type (the schedule's code an int, the rest floats),
    or None for the plain recipe (every option off: the kernels then compile without them)."""
    recipe = Recipe(int(schedule), float(warmup), float(total), float(floor), float(weight_decay), float(max_norm),
                    float(ema), float(smoothing), float(dropout_input), float(dropout))
    plain = recipe.schedule == 0 and not any(recipe[4:])  # warm-up, total and floor belong to schedules
    return None if plain else recipe


def make_call(first: int, n_steps: int, batch_size: int, t0: int, seed: int, epoch: int, lr: float, beta1: float,
              beta2: float, eps: float, alpha: float = 0.0, small: int = 0) -> Call:
    """A :class:`Call` with every field of its one type (``alpha``: scikit-learn's L2 penalty)."""
    return Call(int(first), int(n_steps), int(batch_size), int(t0), int(seed), int(epoch), float(lr), float(beta1),
                float(beta2), float(eps), float(alpha), int(small))


# What the kernels read of a recipe. Each is chosen when a kernel compiles, by whether the recipe is
# None: with the plain recipe the accessors give None (or 0), and the code that the options need
# (dropout masks, max-norm, the average, the schedule) is left out of the compiled kernel.

def hidden_dropout(recipe):
    """The hidden layers' dropout probability; None for the plain recipe."""
    return None if recipe is None else recipe.dropout


def input_dropout(recipe):
    """The inputs' dropout probability; None for the plain recipe."""
    return None if recipe is None else recipe.dropout_input


def max_norm_of(recipe):
    """The hidden units' max-norm; None for the plain recipe."""
    return None if recipe is None else recipe.max_norm


def smoothing_of(recipe):
    """The label smoothing; 0 for the plain recipe."""
    return 0.0 if recipe is None else recipe.smoothing


@overload(hidden_dropout, jit_options={"cache": True})
def _hidden_dropout(recipe):
    if isinstance(recipe, types.NoneType):
        return lambda recipe: None
    return lambda recipe: recipe.dropout


@overload(input_dropout, jit_options={"cache": True})
def _input_dropout(recipe):
    if isinstance(recipe, types.NoneType):
        return lambda recipe: None
    return lambda recipe: recipe.dropout_input


@overload(max_norm_of, jit_options={"cache": True})
def _max_norm_of(recipe):
    if isinstance(recipe, types.NoneType):
        return lambda recipe: None
    return lambda recipe: recipe.max_norm


@overload(smoothing_of, jit_options={"cache": True})
def _smoothing_of(recipe):
    if isinstance(recipe, types.NoneType):
        return lambda recipe: 0.0
    return lambda recipe: recipe.smoothing


def batch_norm(data, idx):
    """What a batch's summed loss and gradient are divided by: its total weight, summed in order (its
    row count when ``data.weights`` is None)."""
    if data.weights is None:
        return float(len(idx))
    return float(np.sum(data.weights[idx], dtype=np.float64))


@overload(batch_norm, jit_options={"cache": True})
def _batch_norm(data, idx):
    if isinstance(data.types[data.fields.index("weights")], types.NoneType):
        return lambda data, idx: np.float64(idx.shape[0])

    def weighted(data, idx):
        total = 0.0
        for i in range(idx.shape[0]):
            total += data.weights[idx[i]]
        return total
    return weighted


def loss_scale(labels, k):
    """The reported loss per unit of the summed one: 1 for classes; ``1 / k`` for k regression
    targets (scikit-learn's squared error is a mean over the outputs)."""
    return 1.0 if labels.ndim == 1 else 1.0 / k


@overload(loss_scale, jit_options={"cache": True})
def _loss_scale(labels, k):
    if labels.ndim == 1:
        return lambda labels, k: 1.0
    return lambda labels, k: 1.0 / k


def activation_offsets(sizes, batch_size: int) -> np.ndarray:
    """Offsets of each layer's (B, n_out) block in the workspace's z, h and d buffers."""
    outs = list(sizes[1:])
    return np.array([batch_size * sum(outs[:l]) for l in range(len(outs))], dtype=np.int64)


def update_parts(layout: np.ndarray, columns: bool) -> np.ndarray:
    """The update phase's parts, one row each: ``(layer, first, end)``.

    The row split's are :func:`fastmlp.engine.parts.update_blocks` (weight rows and their biases).
    The column split's follow the parts that computed the gradient: a hidden layer's units by
    :func:`~fastmlp.engine.parts.unit_parts` (first, end: the part's number and the count), the last
    layer's columns by the parts of the layer below it (its biases cut the same way); listed part
    by part (every layer's part 0, then every layer's part 1, ...), so that the threads claiming
    from the two ends of the list update what they computed, in their own caches.
    """
    if not columns:
        return np.array(update_blocks(layout), dtype=np.int64).reshape(-1, 3)
    L = layout.shape[0]
    counts = [unit_parts(int(layout[l, N_OUT] if l < L - 1 else layout[l, N_IN])) for l in range(L)]
    rows = [(l, p, counts[l]) for p in range(max(counts)) for l in range(L) if p < counts[l]]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def allocate_work(sizes, batch_size: int, threads: int, scratch_size: int = 1, columns: bool | None = None,
                  regression: bool = False) -> Work:
    """Every buffer a training call needs for batches of up to ``batch_size`` rows on up to
    ``threads`` threads: activations (x, y and the z, h, d blocks), one gradient buffer per row
    shard (one in the column split), augmentation scratch per thread, the shards' loss sums, the
    update parts' penalty sums, claim counters and the barrier. ``columns``: the split (default
    :func:`~fastmlp.engine.parts.column_split`'s for the shape). ``regression``: ``y`` holds the
    batch's float32 targets (B, n_L) rather than its int32 labels (B,)."""
    from .layout import make_layout
    layout = make_layout(sizes)
    columns = column_split(sizes, batch_size, small_gemm_limit() > 0) if columns is None else columns
    n_params = int(layout[-1, 3] + layout[-1, N_OUT])
    total = batch_size * sum(sizes[1:])
    parts = update_parts(layout, columns)
    shards = 1 if columns else row_parts(batch_size)
    y = aligned_zeros((batch_size, sizes[-1])) if regression else aligned_zeros(batch_size, np.int32)
    return Work(x=aligned_zeros(batch_size * int(layout[0, N_IN])), y=y,
                z=aligned_zeros(total), h=aligned_zeros(total), d=aligned_zeros(total),
                act_off=activation_offsets(sizes, batch_size), grads=aligned_zeros((shards, n_params)),
                scratch=np.zeros((max(1, threads), scratch_size), np.float64), out=np.zeros((2, MAX_PARTS)),
                penalty=np.zeros(len(parts)), blocks=parts, counters=np.zeros(1, np.int64),
                sync=np.zeros(SYNC_SLOTS, np.int64))
