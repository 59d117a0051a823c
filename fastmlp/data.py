"""Datasets: find, verify, read and split MNIST-like data; download with an atomic rename.

Images stay ``uint8`` in memory, shape (n, 784): the 60,000 MNIST training images take
47 MB, not the 188 MB of float32. Scaling to [0, 1] float32 happens when a batch is gathered
(``fastmlp.kernels.gather_batch``, ``fastmlp.reference.gather_batch``).

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
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset: its name, what it holds and its canonical checksum."""

    filename: str          # without .gz
    kind: str              # "images" or "labels"
    count: int             # number of images or labels
    md5: str               # MD5 of the decompressed IDX content
    npy_names: tuple[str, ...]  # accepted .npy file names for the same array


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

def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Base folders searched, in order: explicit, $FASTMLP_DATA_DIR, ./data."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    env = os.environ.get("FASTMLP_DATA_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path("data"))
    return dirs


def _has_any_file(folder: Path, spec: DatasetSpec) -> bool:
    if not folder.is_dir():
        return False
    for f in spec.files:
        if (folder / f.filename).exists() or (folder / (f.filename + ".gz")).exists():
            return True
        if any((folder / n).exists() for n in f.npy_names):
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


# ----------------------------------------------------------------------------- reading

def _idx_header(kind: str, count: int, rows: int, cols: int) -> bytes:
    dims = [count, rows, cols] if kind == "images" else [count]
    magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    return np.array([magic, *dims], dtype=">i4").tobytes()


def _read_exactly(stream, out: memoryview) -> int:
    """Fill ``out`` from ``stream``; return the number of bytes read (short only at the end)."""
    done = 0
    while done < len(out):
        # Bounded chunks: gzip's readinto builds a temporary as large as the request.
        n = stream.readinto(out[done:done + (1 << 20)])
        if not n:
            break
        done += n
    return done


def read_idx_stream(stream, path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28,
                    verify: bool = True, available: int | None = None) -> tuple[np.ndarray, str]:
    """Read and check one IDX file from a binary stream; returns ``(array, md5)``.

    The data go straight into their final uint8 array (no intermediate copy of the whole
    file), and the MD5 of the content (header and data) is computed on the way. Images come
    back as (count, rows*cols), labels as (count,). ``available``, when known, is the size of
    the content: a header claiming more is rejected before anything is allocated.
    """
    expected_magic = IMAGES_MAGIC if fspec.kind == "images" else LABELS_MAGIC
    ndim = 3 if fspec.kind == "images" else 1
    header_len = 4 + 4 * ndim
    header = stream.read(header_len)
    if len(header) < header_len:
        raise DataError(f"{path}: truncated: {len(header)} bytes, shorter than the {header_len}-byte IDX header")
    fields = np.frombuffer(header, dtype=">i4")
    magic = int(fields[0])
    if magic != expected_magic:
        raise DataError(f"{path}: wrong IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
                        f"for {fspec.kind}")
    dims = [int(d) for d in fields[1:]]
    expected_dims = [fspec.count, rows, cols] if fspec.kind == "images" else [fspec.count]
    # Custom data (verify=False) may hold any number of images, but of the registered size.
    if dims != expected_dims and (verify or dims[1:] != expected_dims[1:]):
        raise DataError(f"{path}: dimensions {dims}, expected {expected_dims}")
    if any(d <= 0 for d in dims):
        raise DataError(f"{path}: invalid dimensions {dims}")
    payload = int(np.prod(dims))
    if available is not None and available - header_len < payload:
        raise DataError(f"{path}: truncated: {max(available - header_len, 0)} bytes of data, "
                        f"header says {payload}")
    array = np.empty(payload, dtype=np.uint8)
    got = _read_exactly(stream, memoryview(array))
    if got < payload:
        raise DataError(f"{path}: truncated: {got} bytes of data, header says {payload}")
    extra = len(stream.read(1 << 16))
    if extra:
        raise DataError(f"{path}: too long: more than {payload} bytes of data, header says {payload}")
    digest = hashlib.md5(header)
    digest.update(memoryview(array))
    md5 = digest.hexdigest()
    if verify and md5 != fspec.md5:
        raise DataError(f"{path}: checksum mismatch: MD5 {md5}, expected {fspec.md5} "
                        f"(corrupt file, or a different dataset: --no-verify accepts custom data)")
    if fspec.kind == "images":
        array = array.reshape(dims[0], dims[1] * dims[2])
    array.flags.writeable = False  # the dataset is shared by every run in the process
    return array, md5


def read_idx(path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True):
    """Read one IDX file, gzipped (``.gz``) or raw; returns ``(array, md5)``. See :func:`read_idx_stream`."""
    try:
        if path.suffix == ".gz":
            with open(path, "rb") as raw:  # the gzip trailer records the content size (mod 2**32)
                raw.seek(-4, os.SEEK_END)
                available = int.from_bytes(raw.read(4), "little") or None
            opener = gzip.open
        else:
            available, opener = path.stat().st_size, open
        with opener(path, "rb") as stream:
            return read_idx_stream(stream, path, fspec, rows, cols, verify, available)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"{path}: label {int(labels.max())} out of range 0..{num_classes - 1}")


def read_npy(path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True) -> np.ndarray:
    """Read one ``.npy`` array and check it like the IDX file it stands for."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
    if fspec.kind == "images":
        if array.ndim == 3 and array.shape[1:] == (rows, cols):
            array = array.reshape(array.shape[0], rows * cols)
        if array.ndim != 2 or array.shape[1] != rows * cols:
            raise DataError(f"{path}: images of shape {array.shape}, expected (n, {rows}, {cols}) "
                            f"or (n, {rows * cols})")
    elif array.ndim != 1:
        raise DataError(f"{path}: labels of shape {array.shape}, expected (n,)")
    if array.dtype != np.uint8:
        if fspec.kind == "labels" and np.issubdtype(array.dtype, np.integer):
            if array.size and (array.min() < 0 or array.max() > 255):
                raise DataError(f"{path}: labels outside 0..255")
            array = array.astype(np.uint8)
        else:
            raise DataError(f"{path}: dtype {array.dtype}, expected uint8")
    if verify and array.shape[0] != fspec.count:
        raise DataError(f"{path}: {array.shape[0]} rows, expected {fspec.count}")
    array = np.ascontiguousarray(array)
    if verify:
        header = _idx_header(fspec.kind, array.shape[0], rows, cols)
        md5 = hashlib.md5(header)
        md5.update(memoryview(array).cast("B"))
        digest = md5.hexdigest()
        if digest != fspec.md5:
            raise DataError(f"{path}: checksum mismatch: content MD5 (as IDX) {digest}, expected "
                            f"{fspec.md5} (--no-verify accepts custom data)")
    array.flags.writeable = False  # shared by every run in the process, like the IDX arrays
    return array


def read_file(folder: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True):
    """Find and read one of the four arrays in ``folder``: ``.gz``, raw IDX, then ``.npy``.

    Returns ``(array, path, md5_of_content)``.
    """
    for candidate in (folder / (fspec.filename + ".gz"), folder / fspec.filename):
        if candidate.exists():
            array, md5 = read_idx(candidate, fspec, rows, cols, verify)
            return array, candidate, md5
    for name in fspec.npy_names:
        candidate = folder / name
        if candidate.exists():
            array = read_npy(candidate, fspec, rows, cols, verify)
            return array, candidate, fspec.md5 if verify else "unverified"
    names = f"{fspec.filename}[.gz] or {' / '.join(fspec.npy_names)}"
    raise DataError(f"{folder}: missing {names}")


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None, *,
                 verify: bool = True, download: bool = False, spec: DatasetSpec | None = None,
                 progress: bool = True) -> Dataset:
    """Find, verify and read a dataset into uint8 arrays.

    ``download=True`` fetches it (saying so on stderr) when no candidate folder holds any of
    its files; a folder holding some but not all files is an error, not a download.
    """
    spec = spec or get_spec(name)
    folder = find_dataset_dir(spec, data_dir)
    if folder is None:
        if not download:
            looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
            raise DataError(f"dataset {spec.name!r} not found (looked in {looked}); run "
                            f"`fastmlp data download {spec.name}` or set FASTMLP_DATA_DIR")
        target = candidate_dirs(data_dir)[0] / spec.name
        print(f"fastmlp: dataset {spec.name!r} not found; downloading it into {target}", file=sys.stderr)
        folder = download_dataset(spec.name, target.parent, progress=progress, spec=spec)
    arrays, checksums = {}, {}
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        fspec = getattr(spec, key)
        array, path, digest = read_file(folder, fspec, spec.rows, spec.cols, verify)
        if fspec.kind == "labels":
            _check_labels(array, path, spec.num_classes)
        arrays[key] = array
        checksums[fspec.filename] = digest
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise DataError(f"{folder}: {n_img} {part} images but {n_lab} {part} labels")
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
    folder = base / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for fspec in spec.files:
        target = folder / (fspec.filename + ".gz")
        if target.exists():
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
