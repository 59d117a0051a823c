"""Datasets: find, verify, read and split MNIST-like data; download with an atomic rename.

Images stay ``uint8`` in memory, shape (n, 784): the 60,000 MNIST training images take
47 MB, not the 188 MB of float32. Scaling to [0, 1] float32 happens when a batch is gathered
(``fastmlp.engine.layers.gather_batch``, ``fastmlp.reference.gather_batch``).

Where a dataset named NAME is looked for, first match wins:

1. an explicit ``data_dir`` (``--data-dir``),
2. ``$FASTMLP_DATA_DIR``,
3. ``./data``,
4. the system folders the registry lists (Debian's ``/usr/share/datasets/NAME``).

A dataset lives in ``<dir>/<NAME>/``; an explicit ``data_dir`` may also point at that
folder itself. Accepted file forms, in order of preference:

* IDX, gzipped or raw: ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``;
* NumPy ``.npy`` arrays: ``train_images.npy``, ``train_labels.npy``, ``test_images.npy``,
  ``test_labels.npy`` (also accepted: ``x_train.npy``, ``y_train.npy``, ``x_test.npy``,
  ``y_test.npy``). Images are uint8 of shape (n, 28, 28) or (n, 784); labels integers.

Every file is verified before use: IDX magic, dimensions, byte length and the MD5 of the
decompressed content against the canonical value (for ``.npy`` images: the MD5 of the IDX
file they are equivalent to). Any problem raises :class:`DataError` with one line naming the
file and what is wrong. ``verify=False`` skips only the checksum, for custom data.

Reading is done in two passes: every file is opened (only regular files: a named pipe or a
device is refused, not waited on) and its header read and checked, the four against each other
too, before any data is read. What a header claims is checked against what the file can hold
before its array is allocated; the data then go straight into that array.

Arrays from anywhere (a dataset, the estimator's ``fit``) are checked by
:func:`check_training_arrays` and :func:`check_sample_weight` before training: the kernels index
them without bounds checks.
"""

from __future__ import annotations

import http.client
import os
import stat
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, ensure_writable_folder
from ..errors import DataError
from ..files import kind_of_file
from .idxfile import FileSpec, OpenedFile, open_idx, open_npy, read_idx


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: four IDX files, where to download them, and extra places to look."""

    name: str
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    rows: int = 28
    cols: int = 28
    num_classes: int = 10
    gz_md5: dict = field(default_factory=dict)  # MD5 of the archives as the mirrors serve them

    @property
    def files(self) -> tuple[FileSpec, FileSpec, FileSpec, FileSpec]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


def _idx_files(md5s: dict[str, str], train_count: int = 60000, test_count: int = 10000):
    return dict(
        train_images=FileSpec("train-images-idx3-ubyte", "images", train_count, md5s["train-images"],
                              ("train_images.npy", "x_train.npy")),
        train_labels=FileSpec("train-labels-idx1-ubyte", "labels", train_count, md5s["train-labels"],
                              ("train_labels.npy", "y_train.npy")),
        test_images=FileSpec("t10k-images-idx3-ubyte", "images", test_count, md5s["t10k-images"],
                             ("test_images.npy", "x_test.npy")),
        test_labels=FileSpec("t10k-labels-idx1-ubyte", "labels", test_count, md5s["t10k-labels"],
                             ("test_labels.npy", "y_test.npy")),
    )


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        **_idx_files({
            "train-images": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels": "a25bea736e30d166cdddb491f175f624",
            "t10k-images": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels": "27ae3e4e09519cfbb04c329615203637",
        }),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        system_dirs=("/usr/share/datasets/mnist",),
        gz_md5={
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        **_idx_files({
            "train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels": "15d484375f8d13e6eb1aabb0c3f46965",
        }),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        gz_md5={
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset called ``name``; a clear error for an unknown name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


@dataclass
class Dataset:
    """A dataset in memory. Images uint8 (n, rows*cols), labels uint8 (n,)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path
    checksums: dict[str, str]
    num_classes: int = 10

    @property
    def num_features(self) -> int:
        return self.train_images.shape[1]


# ----------------------------------------------------------------------------- locating

def _check_base(base: Path) -> Path:
    """``base`` itself when it is a folder or absent; an error when it is something else."""
    try:
        mode = os.stat(base).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return base
    except OSError as exc:
        raise DataError(f"{base}: cannot look into this data folder ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else kind_of_file(mode)
        raise DataError(f"{base} is {kind}, not a folder: --data-dir and FASTMLP_DATA_DIR name the "
                        f"folder that holds <dataset>/")
    return base


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Base folders searched, in order: explicit, $FASTMLP_DATA_DIR, ./data.

    An explicit folder or ``$FASTMLP_DATA_DIR`` that exists but is not a folder is an error, and
    so is a blank one (set but empty: a mistake, not a request to look elsewhere or download),
    unless an explicit folder is given.
    """
    dirs = []
    if data_dir is not None:
        if not str(data_dir).strip():
            raise DataError("--data-dir is empty; give the folder that holds <dataset>/")
        dirs.append(_check_base(Path(data_dir)))
    env = os.environ.get("FASTMLP_DATA_DIR")
    if env is not None and not env.strip() and data_dir is None:
        raise DataError("FASTMLP_DATA_DIR is set but empty; unset it, or set it to the folder that holds <dataset>/")
    if env:
        dirs.append(_check_base(Path(env)))
    dirs.append(Path("data"))
    return dirs


def _present(path: Path) -> bool:
    """Whether ``path`` names something; a path that cannot be examined counts, so reading it says why."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass  # e.g. permission denied: opening it reports that
    return True


def _has_any_file(folder: Path, spec: DatasetSpec) -> bool:
    if not os.path.isdir(folder):
        return False
    for f in spec.files:
        names = (f.filename, f.filename + ".gz", *f.npy_names)
        if any(_present(folder / n) for n in names):
            return True
    return False


def find_dataset_dir(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding ``spec``'s files, or None when no candidate folder has any of them."""
    for base in candidate_dirs(data_dir):
        for folder in (base / spec.name, base):
            if _has_any_file(folder, spec):
                return folder
    for sysdir in spec.system_dirs:
        if _has_any_file(Path(sysdir), spec):
            return Path(sysdir)
    return None


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"{path}: label {int(labels.max())} out of range 0..{num_classes - 1}")


def open_file(folder: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True) -> OpenedFile:
    """Find and open one of the four files in ``folder``: ``.gz``, raw IDX, then ``.npy``."""
    for candidate in (folder / (fspec.filename + ".gz"), folder / fspec.filename):
        if _present(candidate):
            return open_idx(candidate, fspec, rows, cols, verify)
    for name in fspec.npy_names:
        candidate = folder / name
        if _present(candidate):
            return open_npy(candidate, fspec, rows, cols, verify)
    names = f"{fspec.filename}[.gz] or {' / '.join(fspec.npy_names)}"
    raise DataError(f"{folder}: missing {names}")


def _writable_folder(folder: Path) -> Path:
    """Create ``folder`` and check a file can be written in it; one line saying where otherwise."""
    try:
        ensure_writable_folder(folder)
    except OSError as exc:
        raise DataError(f"cannot write the download into {folder} ({exc.strerror or exc}); choose another "
                        f"place with --data-dir or FASTMLP_DATA_DIR") from None
    return folder


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None, *,
                 verify: bool = True, download: bool = False, spec: DatasetSpec | None = None,
                 progress: bool = True) -> Dataset:
    """Find, verify and read a dataset into uint8 arrays.

    ``download=True`` fetches it (saying so on stderr) when no candidate folder holds any of
    its files; a folder holding some but not all files is an error, not a download. The four
    headers are read and checked against each other before any file's data.
    """
    spec = spec or get_spec(name)
    folder = find_dataset_dir(spec, data_dir)
    if folder is None:
        if not download:
            looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
            raise DataError(f"dataset {spec.name!r} not found (looked in {looked}); run "
                            f"`fastmlp data download {spec.name}` or set FASTMLP_DATA_DIR")
        target = _writable_folder(candidate_dirs(data_dir)[0] / spec.name)
        print(f"fastmlp: dataset {spec.name!r} not found; downloading it into {target}", file=sys.stderr)
        folder = download_dataset(spec.name, target.parent, progress=progress, spec=spec)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    opened: dict[str, OpenedFile] = {}
    try:
        for key in keys:
            opened[key] = open_file(folder, getattr(spec, key), spec.rows, spec.cols, verify)
        for part in ("train", "test"):
            images, labels = opened[f"{part}_images"], opened[f"{part}_labels"]
            if images.count != labels.count:
                raise DataError(f"{folder}: {images.count} {part} images but {labels.count} {part} labels "
                                f"({images.path.name}, {labels.path.name})")
        arrays, checksums = {}, {}
        for key, source in opened.items():
            array, digest = source.read(spec.rows, spec.cols, verify)
            if source.fspec.kind == "labels":
                _check_labels(array, source.path, spec.num_classes)
            arrays[key] = array
            checksums[source.fspec.filename] = digest
    finally:
        for source in opened.values():
            source.close()
    return Dataset(spec.name, source=folder, checksums=checksums, num_classes=spec.num_classes, **arrays)


class BackgroundLoad:
    """:func:`load_dataset` started in a thread; calling the object waits for it.

    Decompression and hashing release the GIL, so reading the data overlaps with importing
    and loading the compiled kernels. The result is handed over once and not kept, so the
    caller decides when the arrays are freed.
    """

    def __init__(self, *args, **kwargs):
        import threading
        self._result: Dataset | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self._thread.start()

    def _run(self, *args, **kwargs) -> None:
        try:
            self._result = load_dataset(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc

    def __call__(self) -> Dataset:
        self._thread.join()
        if self._error is not None:
            raise self._error
        result, self._result = self._result, None
        if result is None:
            raise RuntimeError("BackgroundLoad result already taken")
        return result


# ----------------------------------------------------------------------------- what training takes

def check_training_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, what: str = "training") -> None:
    """Raise :class:`DataError` unless the kernels can index these arrays safely.

    Images must be uint8 (n, n_features), pixels the gather scales by 1/255, or float32
    (n, n_features), finite features used as they are (C-contiguous either way). Labels must be
    integers in [0, num_classes): the loss kernel writes ``dlogits[i, label]``, so a label out
    of range would write out of bounds; or, for regression, finite float32 targets
    (n, num_classes). Checked once per dataset, where the data enters, never per step.
    """
    if (not isinstance(images, np.ndarray) or images.ndim != 2 or images.dtype not in (np.uint8, np.float32)
            or not images.flags.c_contiguous):
        raise DataError(f"{what} images must be a C-contiguous uint8 or float32 array (n, features); got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if images.dtype == np.float32 and not np.isfinite(np.sum(images, dtype=np.float64)):  # no temporary array
        raise DataError(f"{what} inputs contain NaN or infinity")
    if isinstance(labels, np.ndarray) and labels.ndim == 2 and labels.dtype == np.float32:  # regression targets
        if labels.shape != (len(images), num_classes) or not labels.flags.c_contiguous:
            raise DataError(f"{what} targets must be a C-contiguous float32 array ({len(images)}, {num_classes}); "
                            f"got {labels.shape}")
        if not np.isfinite(np.sum(labels, dtype=np.float64)):
            raise DataError(f"{what} targets contain NaN or infinity")
        return
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{what} labels must be a 1-D integer array; got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')}")
    if len(labels) != len(images):
        raise DataError(f"{what} set has {len(images)} images but {len(labels)} labels")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"{what} labels must be in [0, {num_classes - 1}]; found {int(labels.min())} "
                        f"to {int(labels.max())}")


def check_sample_weight(weights: np.ndarray, n: int) -> None:
    """Raise :class:`DataError` unless ``weights`` is a C-contiguous float32 array of n finite weights
    >= 0 (what the loss kernel reads for each example)."""
    if (not isinstance(weights, np.ndarray) or weights.dtype != np.float32 or weights.shape != (n,)
            or not weights.flags.c_contiguous):
        raise DataError(f"sample weights must be a C-contiguous float32 array ({n},); got "
                        f"{getattr(weights, 'dtype', type(weights).__name__)} {getattr(weights, 'shape', '')}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("sample weights must be finite and >= 0")


# ----------------------------------------------------------------------------- splitting

def validation_split(n_train: int, val_size: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded hold-out: ``(train_idx, val_idx)``, disjoint, covering 0..n_train-1.

    The split seed is separate from the training seed so that every configuration of a
    search is judged on the same validation images.
    """
    if not 0 <= val_size < n_train:
        raise DataError(f"val_size {val_size} must be in [0, {n_train - 1}] for {n_train} training images")
    order = np.random.default_rng(seed).permutation(n_train)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


# ----------------------------------------------------------------------------- downloading

def _progress_line(name: str, done: int, total: int | None, start: str = "\r", end: str = "") -> None:
    """``start``, ``name``, a bar when the total is known, the megabytes so far, ``end``; on stderr."""
    if total:
        bar = "#" * int(30 * done / total)
        sys.stderr.write(f"{start}  {name:<28} [{bar:<30}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB{end}")
    else:
        sys.stderr.write(f"{start}  {name:<28} {done / 1e6:6.1f} MB{end}")
    sys.stderr.flush()


def download_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None, *,
                     progress: bool = True, spec: DatasetSpec | None = None) -> Path:
    """Fetch a dataset's four gzipped IDX files over HTTPS into ``<data_dir>/<name>/``.

    Each file goes to a temporary file in the target folder and is renamed into place only
    after its content verified, so an interrupted download leaves nothing half-written.
    Files already present and valid are kept.
    """
    spec = spec or get_spec(name)
    base = Path(data_dir) if data_dir is not None else candidate_dirs(None)[0]
    folder = _writable_folder(base / spec.name)
    for fspec in spec.files:
        target = folder / (fspec.filename + ".gz")
        if _present(target):
            try:
                read_idx(target, fspec, spec.rows, spec.cols, verify=True)
                continue
            except DataError:
                pass  # replaced below
        errors = []
        for mirror in spec.mirrors:
            url = mirror + fspec.filename + ".gz"
            try:
                with atomic_path(target) as tmp:  # renamed onto target only once verified
                    _fetch(url, tmp, fspec.filename + ".gz", progress)
                    read_idx(tmp, fspec, spec.rows, spec.cols, verify=True)
                break
            except (OSError, DataError, http.client.HTTPException) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise DataError(f"could not download {fspec.filename}.gz: " + "; ".join(errors))
    return folder


def _fetch(url: str, dest: Path, label: str, progress: bool) -> None:
    """Stream ``url`` into ``dest``.

    With ``progress``: on a terminal a bar on stderr, redrawn in place as chunks arrive;
    anywhere else (a log file, a pipe) one line per file once it is complete.
    """
    live = progress and sys.stderr.isatty()
    with open(dest, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        done = 0
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            if live:
                _progress_line(label, done, total)
    if live:
        sys.stderr.write("\n")
    elif progress:
        _progress_line(label, done, total, start="", end="\n")
