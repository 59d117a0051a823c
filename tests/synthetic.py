"""Synthetic datasets for the tests: tiny MNIST-shaped arrays, their IDX files and a verifying spec."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from fastmlp.data import datasets as data
from fastmlp.data.idxfile import FileSpec

KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# The IDX format, written out independently of fastmlp.data.datasets so that the tests check it.
IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def kind_of(key: str) -> str:
    """``"images"`` for ``train_images``/``test_images``, else ``"labels"``."""
    return "images" if key.endswith("images") else "labels"


def idx_bytes(array: np.ndarray, kind: str, rows: int = 28, cols: int = 28) -> bytes:
    """The IDX file content of ``array``: images (n, rows*cols) or (n, rows, cols), labels (n,).

    The header is magic then one big-endian int32 per dimension; ``rows``/``cols`` go into the
    header as given, so a test can write a header that disagrees with the data.
    """
    a = np.ascontiguousarray(array, dtype=np.uint8)
    if kind == "images":
        header = struct.pack(">4i", IDX_IMAGES_MAGIC, len(a), rows, cols)
    else:
        header = struct.pack(">2i", IDX_LABELS_MAGIC, len(a))
    return header + a.tobytes()


class SyntheticDataset:
    """A tiny MNIST-shaped dataset: its arrays, a verifying ``DatasetSpec``, and file writers.

    ``arrays`` maps ``train_images``/``test_images`` to uint8 (n, rows*cols) and
    ``train_labels``/``test_labels`` to uint8 (n,). Every class 0..num_classes-1 that fits
    appears among the labels (so 9, the largest valid MNIST label, is always there).
    """

    def __init__(self, name: str = "synthetic", n_train: int = 12, n_test: int = 7, seed: int = 0, *,
                 rows: int = 28, cols: int = 28, num_classes: int = 10, mirrors: tuple[str, ...] = (),
                 system_dirs: tuple[str, ...] = (), arrays: dict[str, np.ndarray] | None = None):
        self.name, self.rows, self.cols, self.num_classes = name, rows, cols, num_classes
        self.mirrors, self.system_dirs, self.seed = tuple(mirrors), tuple(system_dirs), seed
        if arrays is None:
            rng = np.random.default_rng(seed)
            arrays = {}
            for part, n in (("train", n_train), ("test", n_test)):
                arrays[f"{part}_images"] = rng.integers(0, 256, (n, rows * cols), dtype=np.uint8)
                arrays[f"{part}_labels"] = rng.permutation(np.arange(n) % num_classes).astype(np.uint8)
        self.arrays = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in arrays.items()}
        # The MD5 of each decompressed IDX file, keyed as fastmlp.data.datasets._idx_files expects.
        md5s = {name: md5(self.idx(key))
                for key, name in zip(KEYS, ("train-images", "train-labels", "t10k-images", "t10k-labels"))}
        self.spec = data.DatasetSpec(
            name=name,
            **data._idx_files(md5s, len(self.arrays["train_images"]), len(self.arrays["test_images"])),
            mirrors=self.mirrors, system_dirs=self.system_dirs, rows=rows, cols=cols, num_classes=num_classes,
        )

    #: ``idx_bytes(array, kind, rows=28, cols=28)``: IDX bytes of any array (for hand-made bad files).
    idx_bytes = staticmethod(idx_bytes)

    def replace(self, **arrays: np.ndarray) -> SyntheticDataset:
        """The same dataset with some arrays replaced; its spec's MD5s match the new arrays."""
        return SyntheticDataset(self.name, rows=self.rows, cols=self.cols, num_classes=self.num_classes,
                                mirrors=self.mirrors, system_dirs=self.system_dirs,
                                arrays={**self.arrays, **arrays})

    def dataset(self) -> data.Dataset:
        """The arrays as an in-memory :class:`fastmlp.data.datasets.Dataset` (as ``load_dataset`` returns it)."""
        a = self.arrays
        return data.Dataset(self.name, a["train_images"], a["train_labels"], a["test_images"], a["test_labels"],
                            source=Path("<memory>"), checksums={k: md5(self.idx(k)) for k in KEYS},
                            num_classes=self.num_classes)

    def fspec(self, key: str) -> FileSpec:
        return getattr(self.spec, key)

    def idx(self, key: str) -> bytes:
        """The decompressed IDX bytes of one of the four files."""
        return idx_bytes(self.arrays[key], kind_of(key), self.rows, self.cols)

    def gz(self, key: str) -> bytes:
        """The gzipped IDX bytes of one of the four files (deterministic: mtime 0)."""
        return gzip.compress(self.idx(key), mtime=0)

    def path(self, folder: str | os.PathLike, key: str, form: str = "gz", npy_set: int = 0) -> Path:
        """Where ``write`` puts ``key`` in ``folder`` for ``form`` ("gz", "raw" or "npy")."""
        fspec = self.fspec(key)
        if form == "gz":
            return Path(folder) / (fspec.filename + ".gz")
        if form == "raw":
            return Path(folder) / fspec.filename
        if form == "npy":
            return Path(folder) / fspec.npy_names[npy_set]
        raise ValueError(f"unknown form {form!r}")

    def write(self, folder: str | os.PathLike, form: str = "gz", *, keys=KEYS, npy_set: int = 0,
              square_images: bool = False) -> Path:
        """Write files into ``folder`` (created); return it.

        ``form``: "gz" (gzipped IDX), "raw" (IDX) or "npy". For "npy", ``npy_set`` 0 uses
        ``train_images.npy``..., 1 uses ``x_train.npy``...; ``square_images`` saves images as
        (n, rows, cols) instead of (n, rows*cols).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key in keys:
            target = self.path(folder, key, form, npy_set)
            if form == "gz":
                target.write_bytes(self.gz(key))
            elif form == "raw":
                target.write_bytes(self.idx(key))
            else:
                array = self.arrays[key]
                if square_images and kind_of(key) == "images":
                    array = array.reshape(len(array), self.rows, self.cols)
                np.save(target, array)
        return folder


def learnable_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Images whose class is a bright 7x7 block at one of ten places, under uniform noise."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 120, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 5)
            images[i, 4 + 10 * r:11 + 10 * r, 1 + 5 * c:6 + 5 * c] = 255
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images.reshape(n, 784), labels
    return arrays
