"""The MLP of the fast path: one flat float32 parameter buffer, per-layer views, workspaces.

``sizes = [n_0, n_1, ..., n_L]``: ReLU layers n_0 -> n_1 -> ... -> n_{L-1}, then a linear
output layer n_{L-1} -> n_L (the logits). Layer l holds ``W_l`` (n_{l+1}, n_l) and ``b_l``
(n_{l+1},), stored one after the other::

    params = [W_1 | b_1 | W_2 | b_2 | ... ]     (float32, C order)

Initialisation follows the homework and draws the same numbers as the reference network from
the same generator: ``W ~ N(0, 1/sqrt(n_in))``, ``b = 0``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from ..atomic import atomic_path
from ..data.idxfile import MAX_DEFLATE_RATIO, read_exactly, read_npy_header
from ..engine import pool
from ..engine.infer import allocate_infer_work, logits_worker
from ..engine.layers import input_scale as engine_input_scale
from ..engine.layout import aligned_zeros, make_layout, num_parameters
from ..engine.parts import INFER_ROWS
from ..errors import ModelError
from ..files import open_regular_file
from ..reference import init_weight
from .threads import usable_cores


def check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ModelError(f"layer sizes must be at least [n_in, n_out], all positive; got {sizes}")
    return sizes


#: A model file's ``input_scale`` when it does not say: ``fastmlp train`` on 8-bit pixels (x / 255)
PIXEL_SCALE = 1.0 / 255.0


def network_inputs(images: np.ndarray, input_scale: float) -> np.ndarray:
    """``images`` (n, n_0), raw values (uint8 pixels or float32), as the engine must be given them for
    a network that takes ``images * input_scale`` (a model file's ``input_scale``: what its inputs
    were multiplied by in training). The engine reads uint8 as x / 255 and float32 as it is, so such
    arrays pass unchanged when that is the scale; any other scale multiplies a float32 copy."""
    if np.float32(input_scale) == engine_input_scale(images):
        return images
    return np.ascontiguousarray(images, dtype=np.float32) * np.float32(input_scale)


def is_regressor(meta: dict) -> bool:
    """Whether a model file's metadata says an ``MLPRegressor`` saved it (identity outputs, no classes)."""
    saved = meta.get("estimator")
    return isinstance(saved, dict) and saved.get("kind") == "identity"


def output_labels(meta: dict, path) -> list | None:
    """What a model file's outputs stand for, from its metadata: None for the classes 0..K-1 of a run
    of ``fastmlp train``; an estimator's ``classes_`` for a classifier it saved. A regressor's outputs
    are no classes: :class:`ModelError` (the commands that read classes cannot use it)."""
    saved = meta.get("estimator")
    if not isinstance(saved, dict):
        return None
    if is_regressor(meta):
        raise ModelError(f"{path}: a regressor's model (MLPRegressor): its outputs are numbers, not classes; "
                         f"use fastmlp.load({str(path)!r}).predict(X)")
    try:
        return np.array(saved["classes"], dtype=np.dtype(saved["classes_dtype"])).tolist()
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{path}: metadata estimator.classes is not a list of labels") from None


def check_rows(rows, n: int, what: str = "rows", error=ModelError) -> np.ndarray:
    """``rows`` as a C-contiguous 1-D int64 array of indices in [0, n), or ``error``: the kernels
    index the data with them unchecked, so they are checked once here, where they enter."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise error(f"{what} must be a 1-D array of integer row indices; got "
                    f"{arr.dtype} {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        raise error(f"{what} must be in [0, {n - 1}] (the data has {n} rows); found {int(arr.min())} to {int(arr.max())}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``ln softmax`` of each row of float32 logits, in float64: ``l - max - ln sum exp(l - max)``
    (finite for any finite logits)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


class MLP:
    """ReLU hidden layers and a linear output layer over one flat float32 parameter buffer."""

    def __init__(self, sizes: Sequence[int], params: np.ndarray | None = None):
        self.sizes = check_sizes(sizes)
        self.layout = make_layout(self.sizes)
        n = self.num_parameters
        if params is None:
            params = aligned_zeros(n)
        if params.shape != (n,) or params.dtype != np.float32:
            raise ModelError(f"parameter buffer must be float32 ({n},) for sizes {self.sizes}; "
                             f"got {params.dtype} {params.shape}")
        self.params = params

    @classmethod
    def initialized(cls, sizes: Sequence[int], rng: np.random.Generator) -> MLP:
        """``W ~ N(0, 1/sqrt(n_in))``, ``b = 0``, drawn layer by layer like the reference NN."""
        model = cls(sizes)
        for W, _ in model.layers():
            W[...] = init_weight(rng, W.shape[1], W.shape[0], np.float32)
        return model

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.layout)

    def views(self, buf: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_1, b_1), ...]`` as views into ``buf`` (params, grads or an Adam moment)."""
        out = []
        for n_in, n_out, w_off, b_off in self.layout:
            out.append((buf[w_off:w_off + n_in * n_out].reshape(n_out, n_in), buf[b_off:b_off + n_out]))
        return out

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.views(self.params)

    def set_from(self, arrays: Sequence[np.ndarray]) -> None:
        """Copy ``[W1, b1, W2, b2, ...]`` (e.g. a reference ``NN.parameters()``) into the buffer."""
        flat = [v for pair in self.layers() for v in pair]
        if len(arrays) != len(flat):
            raise ModelError(f"expected {len(flat)} arrays, got {len(arrays)}")
        for dst, src in zip(flat, arrays):
            if dst.shape != np.shape(src):
                raise ModelError(f"shape {np.shape(src)} does not fit {dst.shape}")
            dst[...] = src

    def _check_images(self, images: np.ndarray) -> None:
        if (not isinstance(images, np.ndarray) or images.ndim != 2 or images.shape[1] != self.sizes[0]
                or images.dtype not in (np.uint8, np.float32) or not images.flags.c_contiguous):
            raise ModelError(f"images must be a C-contiguous uint8 (pixels, scaled by 1/255) or float32 "
                             f"(features as they are) array (n, {self.sizes[0]}); got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")

    def rows_logits(self, images: np.ndarray, rows: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
        """Logits (len(rows), n_L) float32 of ``images[rows]`` (all rows by default), on ``threads``
        threads (default: the usable cores); a row's logits are the same bits wherever it sits
        and whatever the thread count (:mod:`fastmlp.engine.infer`)."""
        self._check_images(images)
        rows = np.arange(len(images), dtype=np.int64) if rows is None else check_rows(rows, len(images))
        out = np.empty((len(rows), self.sizes[-1]), np.float32)
        if len(rows):
            threads = max(1, min(threads or usable_cores(), -(-len(rows) // INFER_ROWS)))
            work = allocate_infer_work(self.sizes, threads)
            pool.run(logits_worker, threads, work.sync, self.params, self.layout, images, rows, work, out)
        return out

    def evaluate(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None,
                 threads: int | None = None) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over ``images[rows]`` (all rows by default); ``labels``
        (len(images),) integers in [0, n_L)."""
        self._check_images(images)
        rows = np.arange(len(images), dtype=np.int64) if rows is None else check_rows(rows, len(images))
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or (labels.size and labels.dtype.kind not in "iu"):
            raise ModelError(f"labels must be a 1-D integer array of {len(images)} labels, one per image; got "
                             f"{labels.dtype} {labels.shape}")
        if len(rows) == 0:
            return float("nan"), float("nan")
        y = labels[rows].astype(np.int64)
        if int(y.min()) < 0 or int(y.max()) >= self.sizes[-1]:
            raise ModelError(f"labels must be in [0, {self.sizes[-1] - 1}] for a model of {self.sizes[-1]} "
                             f"outputs; found {int(y.min())} to {int(y.max())}")
        logits = self.rows_logits(images, rows, threads)
        logp = log_softmax(logits)
        loss = -float(logp[np.arange(len(rows)), y].sum()) / len(rows)
        return loss, float(np.count_nonzero(logits.argmax(axis=1) == y)) / len(rows)

    def predict(self, images: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Predicted class of each row of an image matrix (n, n_0): uint8 pixels or float32 features."""
        return self.rows_logits(images, None, threads).argmax(axis=1)

    def logits(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Logits ``h`` (m, n_L) float32 of each row of ``x`` (m, n_0).

        ``x`` as :meth:`predict` takes it: uint8 pixels (scaled by 1/255) or float features as
        they are (converted to float32: inputs already scaled to [0, 1] for a model trained on
        images).
        """
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8):
            x = np.ascontiguousarray(x, dtype=np.float32)
        return self.rows_logits(x, None, threads)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``softmax(h)`` (m, n_L) float32, rows summing to 1, for the logits ``h`` of :meth:`logits`.

        Row by row, stable: ``p_j = exp(h_j - max h) / sum_k exp(h_k - max h)`` (in float64).
        """
        return np.exp(log_softmax(self.logits(x))).astype(np.float32)

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike, **metadata) -> None:
        """Write ``model.npz`` atomically: sizes, the flat parameters, and JSON metadata."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, sizes=np.array(self.sizes, np.int64), params=self.params,
                         metadata=np.array(json.dumps(metadata, sort_keys=True)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[MLP, dict]:
        """Read a file written by :meth:`save`; returns ``(model, metadata)``.

        Every claim the file makes (array shapes and dtypes, the parameter count its sizes
        imply) is checked against the others and against the file's size before anything is
        allocated; whatever is wrong with it is one :class:`ModelError` line.
        """
        try:
            with open_regular_file(path, ModelError) as fh, zipfile.ZipFile(fh) as archive:
                sizes, params, meta = _read_model(archive, path, os.fstat(fh.fileno()).st_size)
        except FileNotFoundError:
            raise ModelError(f"{path}: no such model file") from None
        except ModelError:
            raise
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{path}: not a fastmlp model file (truncated, or not a zip archive: {exc})") from None
        except (zlib.error, EOFError, ValueError) as exc:
            raise ModelError(f"{path}: not a fastmlp model file ({str(exc).splitlines()[0]})") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except MemoryError:
            raise ModelError(f"{path}: not enough memory to load it") from None
        return cls(sizes, params), meta


def _member_header(archive: zipfile.ZipFile, path, key: str, file_size: int):
    """Open ``key``'s ``.npy`` member and read its header: ``(stream, shape, dtype)``.

    The member's size must be exactly what its header claims, and no more than its compressed
    bytes in the file can hold, so reading it allocates no more than the file can justify.
    """
    try:
        info = archive.getinfo(key + ".npy")
    except KeyError:
        raise ModelError(f"{path}: not a fastmlp model file (no {key!r} array)") from None
    if info.compress_type == zipfile.ZIP_STORED:
        bound = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        bound = info.compress_size * MAX_DEFLATE_RATIO
    else:
        raise ModelError(f"{path}: {key!r} compressed with zip method {info.compress_type}, "
                         f"expected stored or deflated")
    if info.compress_size > file_size or info.file_size > bound:
        raise ModelError(f"{path}: {key!r} claims {info.file_size} bytes, more than the file can hold (truncated?)")
    stream = archive.open(info)
    shape, dtype, _, offset = read_npy_header(stream)
    if dtype.hasobject or any(d < 0 for d in shape):
        raise ModelError(f"{path}: {key!r} is of dtype {dtype} and shape {shape}, not a plain array")
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size != offset + nbytes:
        raise ModelError(f"{path}: {key!r} holds {info.file_size - offset} bytes of data, its header says {nbytes}")
    return stream, shape, dtype


def _member_data(stream, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The data of a member whose header :func:`_member_header` read and checked."""
    array = np.empty(shape, dtype)
    if read_exactly(stream, memoryview(array).cast("B")) != array.nbytes:
        raise EOFError("array data ends early")
    return array


def _read_model(archive: zipfile.ZipFile, path, file_size: int) -> tuple[list[int], np.ndarray, dict]:
    """``(sizes, params, metadata)`` of an open ``model.npz``, every part checked."""
    sizes_in, sizes_shape, sizes_dtype = _member_header(archive, path, "sizes", file_size)
    params_in, params_shape, params_dtype = _member_header(archive, path, "params", file_size)
    meta_in, meta_shape, meta_dtype = _member_header(archive, path, "metadata", file_size)
    if len(sizes_shape) != 1 or sizes_dtype.kind not in "iu" or sizes_shape[0] < 2:
        raise ModelError(f"{path}: sizes of dtype {sizes_dtype} and shape {sizes_shape}; expected a 1-D "
                         f"integer array of at least 2 layer sizes")
    if len(params_shape) != 1 or params_dtype.kind != "f" or params_dtype.itemsize != 4:
        raise ModelError(f"{path}: params of dtype {params_dtype} and shape {params_shape}; expected a 1-D "
                         f"float32 array")
    if meta_shape != () or meta_dtype.kind != "U":
        raise ModelError(f"{path}: metadata of dtype {meta_dtype} and shape {meta_shape}; expected a JSON string")
    # Each layer has at least one bias: more layers than parameters cannot fit (and is not read).
    if sizes_shape[0] - 1 > params_shape[0]:
        raise ModelError(f"{path}: {sizes_shape[0]} layer sizes for {params_shape[0]} parameters")
    sizes = [int(s) for s in _member_data(sizes_in, sizes_shape, sizes_dtype)]
    if any(s <= 0 for s in sizes):
        raise ModelError(f"{path}: layer sizes must all be positive; got {_brief(sizes)}")
    needed = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if needed != params_shape[0]:
        raise ModelError(f"{path}: sizes {_brief(sizes)} need {needed} parameters, params holds {params_shape[0]}")
    params = _member_data(params_in, params_shape, params_dtype).astype(np.float32, copy=False)
    if not np.isfinite(params).all():
        bad = int(np.count_nonzero(~np.isfinite(params)))
        raise ModelError(f"{path}: {bad} of {params.size} parameters are NaN or infinite")
    text = str(_member_data(meta_in, meta_shape, meta_dtype)[()])
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: metadata is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: metadata is a JSON {type(meta).__name__}, expected an object")
    _check_metadata(meta, path)
    return sizes, params, meta


def _check_metadata(meta: dict, path) -> None:
    """The fields of a run's metadata that the commands read: ModelError naming the first of the wrong type."""
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    config = meta.get("config", {})
    checks = [("config", config, isinstance(config, dict), "an object")]
    if isinstance(config, dict):
        checks += [("config.val_size", config.get("val_size", 0), whole(config.get("val_size", 0)),
                    "a whole number >= 0"),
                   ("config.dataset", config.get("dataset", "mnist"), isinstance(config.get("dataset", "mnist"), str),
                    "a dataset's name")]
    scale = meta.get("input_scale", 1.0)
    checks += [("epoch", meta.get("epoch", 0), whole(meta.get("epoch", 0)), "a whole number >= 0"),
               ("input_scale", scale, isinstance(scale, (int, float)) and not isinstance(scale, bool)
                and math.isfinite(scale) and scale > 0, "a number > 0")]
    for name, value, ok, expected in checks:
        if not ok:
            raise ModelError(f"{path}: metadata {name} is {_brief_value(value)}, expected {expected}")


def _brief_value(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _brief(values: list[int], most: int = 8) -> str:
    """``values`` as a list, cut short (one line) when long."""
    if len(values) <= most:
        return str(values)
    return "[" + ", ".join(map(str, values[:most])) + f", ... ({len(values)} values)]"
