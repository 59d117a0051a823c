"""fastmlp.data.datasets: finding, verifying, reading, splitting and downloading MNIST-like datasets.

Synthetic datasets come from the ``synthetic`` fixture (tests/conftest.py); the real MNIST
tests use ``mnist``. No test touches the network: ``urlopen`` is replaced for every test.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import io
import math
import os
import re
import resource
import stat
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fastmlp.data import datasets as data
from fastmlp.data import idxfile
from fastmlp.data.datasets import load_dataset
from fastmlp.errors import DataError

KEYS = ("train_images", "train_labels", "test_images", "test_labels")


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any real download attempt in this module is a test bug."""
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"test tried to reach the network: {url}")
    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)


def assert_one_line_data_error(excinfo, names, *fragments) -> str:
    """The DataError's message is one line, names ``names`` (a path or file name) and says ``fragments``."""
    message = str(excinfo.value)
    assert excinfo.type is DataError
    assert "\n" not in message and "\r" not in message, f"message is not one line: {message!r}"
    assert str(names) in message, f"{names} not named in: {message}"
    for fragment in fragments:
        assert fragment in message.lower(), f"{fragment!r} not in: {message}"
    return message


def assert_same_arrays(ds: data.Dataset, synthetic) -> None:
    for key in KEYS:
        got, want = getattr(ds, key), synthetic.arrays[key]
        assert got.dtype == np.uint8, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


# ----------------------------------------------------------------------------- reading: forms

FORMS = [
    pytest.param(dict(form="gz"), id="gzipped-idx"),
    pytest.param(dict(form="raw"), id="raw-idx"),
    pytest.param(dict(form="npy", npy_set=0), id="npy-train_images-flat"),
    pytest.param(dict(form="npy", npy_set=0, square_images=True), id="npy-train_images-28x28"),
    pytest.param(dict(form="npy", npy_set=1), id="npy-x_train-flat"),
    pytest.param(dict(form="npy", npy_set=1, square_images=True), id="npy-x_train-28x28"),
]


@pytest.mark.parametrize("how", FORMS)
def test_every_file_form_reads_the_same_verified_uint8_arrays(tmp_path, synthetic, how):
    """Gzipped IDX, raw IDX and both .npy naming sets, (n,28,28) or (n,784), give identical arrays."""
    folder = synthetic.write(tmp_path / "synthetic", **how)
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_same_arrays(ds, synthetic)
    assert ds.train_images.shape == (12, 784) and ds.test_images.shape == (7, 784)
    assert ds.train_labels.shape == (12,) and ds.test_labels.shape == (7,)
    assert ds.num_features == 784 and ds.num_classes == 10
    assert ds.name == "synthetic"
    assert Path(ds.source).resolve() == folder.resolve()


@pytest.mark.parametrize("form", ["gz", "raw", "npy"])
def test_checksums_are_recorded_per_file_as_the_md5_of_the_idx_content(tmp_path, synthetic, form):
    synthetic.write(tmp_path, form)
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert ds.checksums == {synthetic.fspec(k).filename: hashlib.md5(synthetic.idx(k)).hexdigest()
                            for k in KEYS}


def test_unverified_data_records_the_md5_of_its_content_as_idx(tmp_path, synthetic):
    synthetic.write(tmp_path, "raw", keys=KEYS[:2])
    synthetic.write(tmp_path, "npy", keys=KEYS[2:])
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert ds.checksums["train-images-idx3-ubyte"] == hashlib.md5(synthetic.idx("train_images")).hexdigest()
    assert ds.checksums["t10k-images-idx3-ubyte"] == hashlib.md5(synthetic.idx("test_images")).hexdigest()


def test_npy_labels_of_any_integer_type_are_accepted_as_uint8(tmp_path, synthetic):
    synthetic.write(tmp_path, "npy")
    np.save(tmp_path / "train_labels.npy", synthetic.arrays["train_labels"].astype(np.int64))
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert ds.train_labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.train_labels, synthetic.arrays["train_labels"])


def test_gzip_is_preferred_over_raw_idx_over_npy(tmp_path, synthetic):
    """When several forms of a file are present the .gz wins, then raw IDX; the others are not read."""
    synthetic.write(tmp_path, "gz", keys=["train_images"])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not read")
    (tmp_path / "train_images.npy").write_bytes(b"not read")
    synthetic.write(tmp_path, "raw", keys=["train_labels", "test_images", "test_labels"])
    (tmp_path / "y_train.npy").write_bytes(b"not read")
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_same_arrays(ds, synthetic)


# ----------------------------------------------------------------------------- reading: errors

def corrupt(synthetic, tmp_path, key: str, raw: bytes, form: str = "raw", **load):
    """Write the dataset (raw IDX), replace ``key`` with ``raw`` (gzipped for form "gz"), load it."""
    synthetic.write(tmp_path, form)
    target = synthetic.path(tmp_path, key, form)
    target.write_bytes(gzip.compress(raw, mtime=0) if form == "gz" else raw)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, **load)
    return excinfo, target


@pytest.mark.parametrize("form", ["raw", "gz"])
def test_wrong_magic_is_an_error_naming_the_file(tmp_path, synthetic, form):
    raw = bytearray(synthetic.idx("train_images"))
    raw[3] = 0x01  # the labels magic 0x00000801 in an images file
    excinfo, target = corrupt(synthetic, tmp_path, "train_images", bytes(raw), form)
    assert_one_line_data_error(excinfo, target, "magic", "0x00000801")


@pytest.mark.parametrize("key", ["train_images", "test_labels"])
@pytest.mark.parametrize("cut", [1, 100, "header"])
def test_truncated_idx_file_is_an_error_naming_the_file(tmp_path, synthetic, key, cut):
    raw = synthetic.idx(key)
    raw = raw[:6] if cut == "header" else raw[:-cut]
    excinfo, target = corrupt(synthetic, tmp_path, key, raw)
    assert_one_line_data_error(excinfo, target, "truncated")


@pytest.mark.parametrize("damage", ["cut-in-half", "cut-trailer", "not-gzip", "flipped-byte"])
def test_corrupt_or_truncated_gzip_is_an_error_naming_the_file(tmp_path, synthetic, damage):
    synthetic.write(tmp_path, "gz")
    target = synthetic.path(tmp_path, "train_images", "gz")
    gz = bytearray(synthetic.gz("train_images"))
    if damage == "cut-in-half":
        gz = gz[: len(gz) // 2]
    elif damage == "cut-trailer":
        gz = gz[:-4]
    elif damage == "not-gzip":
        gz = bytearray(synthetic.idx("train_images"))
    else:
        gz[len(gz) // 2] ^= 0xFF
    target.write_bytes(bytes(gz))
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target)


@pytest.mark.parametrize("form", ["raw", "gz"])
def test_data_longer_than_the_header_says_is_an_error(tmp_path, synthetic, form):
    excinfo, target = corrupt(synthetic, tmp_path, "train_labels", synthetic.idx("train_labels") + b"\0", form)
    assert_one_line_data_error(excinfo, target, "too long")


@pytest.mark.parametrize("form", ["raw", "gz"])
def test_checksum_mismatch_is_an_error_and_verify_false_accepts_the_same_file(tmp_path, synthetic, form):
    raw = bytearray(synthetic.idx("test_images"))
    raw[16 + 5] ^= 0xFF  # one pixel of the first test image: same size, different content
    excinfo, target = corrupt(synthetic, tmp_path, "test_images", bytes(raw), form)
    assert_one_line_data_error(excinfo, target, "checksum mismatch", synthetic.fspec("test_images").md5)

    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert ds.test_images[0, 5] == synthetic.arrays["test_images"][0, 5] ^ 0xFF
    assert ds.checksums["t10k-images-idx3-ubyte"] == hashlib.md5(bytes(raw)).hexdigest()


def test_npy_checksum_mismatch_is_an_error_and_verify_false_accepts_it(tmp_path, synthetic):
    synthetic.write(tmp_path, "npy")
    images = synthetic.arrays["train_images"].copy()
    images[3, 400] ^= 0x01
    np.save(tmp_path / "train_images.npy", images)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, tmp_path / "train_images.npy", "checksum mismatch")
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    np.testing.assert_array_equal(ds.train_images, images)


@pytest.mark.parametrize("form", ["gz", "npy"])
def test_missing_file_is_an_error_naming_the_folder_and_the_file(tmp_path, synthetic, form):
    synthetic.write(tmp_path, form)
    synthetic.path(tmp_path, "test_labels", form).unlink()
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    message = assert_one_line_data_error(excinfo, tmp_path, "missing")
    assert "t10k-labels-idx1-ubyte" in message and "test_labels.npy" in message


def test_image_count_other_than_the_registered_one_is_a_dimension_error(tmp_path, synthetic):
    images = synthetic.arrays["train_images"]
    raw = synthetic.idx_bytes(np.vstack([images, images[:1]]), "images")  # 13 images, spec says 12
    excinfo, target = corrupt(synthetic, tmp_path, "train_images", raw)
    assert_one_line_data_error(excinfo, target, "dimensions", "[13, 28, 28]", "[12, 28, 28]")


@pytest.mark.parametrize("verify", [True, False])
def test_images_of_the_wrong_size_are_a_dimension_error_even_unverified(tmp_path, synthetic, verify):
    images = np.zeros((12, 27 * 28), np.uint8)
    excinfo, target = corrupt(synthetic, tmp_path, "train_images", synthetic.idx_bytes(images, "images", 27, 28),
                              verify=verify)
    assert_one_line_data_error(excinfo, target, "dimensions", "[12, 27, 28]")


@pytest.mark.parametrize("name, array, fragment", [
    ("train_images.npy", np.zeros((12, 27, 28), np.uint8), "shape"),
    ("train_images.npy", np.zeros((12, 783), np.uint8), "shape"),
    ("train_images.npy", np.zeros((12, 784), np.float32), "dtype"),
    ("train_labels.npy", np.zeros((12, 1), np.uint8), "shape"),
    ("train_labels.npy", np.zeros(12, np.float64), "dtype"),
    ("train_labels.npy", np.full(12, -1, np.int64), "labels"),
    ("train_labels.npy", np.zeros(11, np.uint8), "rows"),
])
def test_npy_of_the_wrong_shape_dtype_or_count_is_an_error_naming_the_file(tmp_path, synthetic, name,
                                                                            array, fragment):
    synthetic.write(tmp_path, "npy")
    np.save(tmp_path / name, array)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, tmp_path / name, fragment)


def test_unreadable_npy_is_an_error_naming_the_file(tmp_path, synthetic):
    synthetic.write(tmp_path, "npy")
    (tmp_path / "test_images.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, tmp_path / "test_images.npy", "not a readable .npy")


@pytest.mark.parametrize("bad_label", [10, 255])
@pytest.mark.parametrize("form", ["gz", "npy"])
def test_labels_out_of_range_are_an_error_naming_the_file(tmp_path, synthetic, form, bad_label):
    """Even a file whose checksum matches (custom data) is rejected when a label is not 0..9."""
    labels = synthetic.arrays["train_labels"].copy()
    labels[4] = bad_label
    bad = synthetic.replace(train_labels=labels)
    bad.write(tmp_path, form)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=bad.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, bad.path(tmp_path, "train_labels", form), "out of range", str(bad_label))


def test_image_and_label_counts_must_agree(tmp_path, synthetic):
    """Unverified custom data may have any count, but as many labels as images."""
    synthetic.write(tmp_path, "raw")
    eleven_labels = synthetic.idx_bytes(synthetic.arrays["train_labels"][:11], "labels")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(eleven_labels)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert_one_line_data_error(excinfo, tmp_path, "12 train images but 11 train labels")


def test_unverified_custom_data_may_hold_any_number_of_images(tmp_path, synthetic, make_synthetic):
    bigger = make_synthetic(n_train=30, n_test=3, seed=5)
    bigger.write(tmp_path, "gz")
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert_same_arrays(ds, bigger)
    with pytest.raises(DataError):
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=True)


@contextlib.contextmanager
def address_space_limit(headroom: int):
    """Cap this process's virtual memory at its current size plus ``headroom`` bytes (Linux)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc/self/status")
    vmsize = int(re.search(r"VmSize:\s+(\d+) kB", status.read_text()).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vmsize + headroom if hard == resource.RLIM_INFINITY else min(vmsize + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("form", ["raw", "gz"])
def test_a_header_claiming_more_images_than_the_file_holds_is_truncated_not_a_memory_error(
        tmp_path, synthetic, form):
    liar = synthetic.idx_bytes(synthetic.arrays["train_images"], "images")
    liar = liar[:4] + (2**31 - 1).to_bytes(4, "big") + liar[8:]  # count field: 2,147,483,647 images
    synthetic.write(tmp_path, form)
    target = synthetic.path(tmp_path, "train_images", form)
    target.write_bytes(gzip.compress(liar, mtime=0) if form == "gz" else liar)
    with address_space_limit(1 << 30), pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert_one_line_data_error(excinfo, target, "truncated")


# ----------------------------------------------------------------------------- reading: hostile files

def npy_header_only(shape, dtype=np.uint8) -> bytes:
    """A .npy file's header claiming ``shape``, with no data after it."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


@pytest.mark.parametrize("key, shape", [("train_images", (10**12, 784)), ("train_images", (10**12, 28, 28)),
                                        ("train_labels", (10**12,))])
def test_a_npy_header_claiming_more_rows_than_the_file_holds_is_truncated_not_a_memory_error(
        tmp_path, synthetic, key, shape):
    synthetic.write(tmp_path, "npy")
    target = synthetic.path(tmp_path, key, "npy")
    target.write_bytes(npy_header_only(shape) + b"\0" * 100)
    with address_space_limit(1 << 30), pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert_one_line_data_error(excinfo, target, "truncated", str(math.prod(shape)))


def test_a_npy_longer_than_its_header_says_is_an_error(tmp_path, synthetic):
    synthetic.write(tmp_path, "npy")
    target = synthetic.path(tmp_path, "test_labels", "npy")
    target.write_bytes(target.read_bytes() + b"\0")
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target, "too long")


def test_a_fortran_ordered_npy_reads_the_same_arrays(tmp_path, synthetic):
    synthetic.write(tmp_path, "npy")
    square = synthetic.arrays["train_images"].reshape(-1, 28, 28)
    np.save(tmp_path / "train_images.npy", np.asfortranarray(square))
    assert_same_arrays(load_dataset(spec=synthetic.spec, data_dir=tmp_path), synthetic)


def gzip_members(raw: bytes, *cuts: int) -> bytes:
    """``raw`` gzipped as several concatenated members, split at ``cuts``."""
    bounds = [0, *cuts, len(raw)]
    return b"".join(gzip.compress(raw[a:b], mtime=0) for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("key", ["train_images", "test_labels"])
@pytest.mark.parametrize("cuts", [(10,), (4, 9, 20)], ids=["2-members", "4-members"])
def test_a_gzip_of_several_members_is_read_and_verified(tmp_path, synthetic, key, cuts):
    synthetic.write(tmp_path, "gz")
    target = synthetic.path(tmp_path, key, "gz")
    target.write_bytes(gzip_members(synthetic.idx(key), *cuts))
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_same_arrays(ds, synthetic)
    assert ds.checksums[synthetic.fspec(key).filename] == synthetic.fspec(key).md5


@pytest.mark.parametrize("cut", [1, 8, "second-member-header"])
def test_a_gzip_of_several_members_cut_short_is_still_truncated(tmp_path, synthetic, cut):
    synthetic.write(tmp_path, "gz")
    target = synthetic.path(tmp_path, "train_images", "gz")
    gz = gzip_members(synthetic.idx("train_images"), 100)
    first = len(gzip.compress(synthetic.idx("train_images")[:100], mtime=0))
    target.write_bytes(gz[:first + 5] if cut == "second-member-header" else gz[:-cut])
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target, "truncated")


def load_within(seconds: float, **kwargs):
    """``load_dataset(**kwargs)`` in a thread; fails the test, rather than hanging it, when it blocks."""
    import threading
    outcome = {}

    def run():
        try:
            outcome["result"] = load_dataset(**kwargs)
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"load_dataset still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.parametrize("form", ["gz", "raw", "npy"])
def test_a_named_pipe_in_place_of_a_data_file_is_refused_at_once(tmp_path, synthetic, form):
    synthetic.write(tmp_path, form)
    target = synthetic.path(tmp_path, "train_labels", form)
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(DataError) as excinfo:
        load_within(5, spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target, "named pipe", "not a regular file")


def test_a_folder_or_device_in_place_of_a_data_file_is_refused(tmp_path, synthetic):
    synthetic.write(tmp_path, "raw")
    folder = synthetic.path(tmp_path, "test_images", "raw")
    folder.unlink()
    folder.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, folder, "a folder, not a regular file")
    folder.rmdir()
    folder.symlink_to("/dev/zero")
    with pytest.raises(DataError) as excinfo:
        load_within(5, spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, folder, "character device")


@pytest.fixture
def no_body_read(monkeypatch):
    """Fails the test if any file's data (beyond its header) is read."""
    def refuse(stream, out):
        raise AssertionError(f"read {len(out)} bytes of data before every header was checked")
    monkeypatch.setattr(idxfile, "read_exactly", refuse)


def test_image_and_label_counts_are_compared_before_any_data_is_read(tmp_path, synthetic, no_body_read):
    """A huge (sparse) images file whose header disagrees with the labels' is not read at all."""
    synthetic.write(tmp_path, "raw")
    target = synthetic.path(tmp_path, "train_images", "raw")
    count = (1 << 31) // 784  # 2 GiB of images, on disk only as a hole
    with open(target, "wb") as fh:
        fh.write(synthetic.idx_bytes(np.zeros((0, 784), np.uint8), "images")[:4] + count.to_bytes(4, "big")
                 + (28).to_bytes(4, "big") * 2)
        fh.truncate(16 + count * 784)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path, verify=False)
    assert_one_line_data_error(excinfo, tmp_path, f"{count} train images but 12 train labels", target.name)


@pytest.mark.parametrize("form", ["gz", "raw", "npy"])
def test_a_bad_last_header_is_reported_before_any_data_is_read(tmp_path, synthetic, no_body_read, form):
    synthetic.write(tmp_path, form)
    target = synthetic.path(tmp_path, "test_labels", form)
    target.write_bytes(b"\x93NUMPY garbage" if form == "npy" else b"\0\0\x08\x03" + bytes(12))
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target)


class FailingFile:
    """A file that fails with EIO once ``good`` bytes have been read from it."""

    def __init__(self, inner, good: int):
        self.inner, self.left = inner, good

    def _take(self, n: int) -> int:
        if self.left <= 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(n, self.left) if n >= 0 else self.left
        self.left -= n
        return n

    def read(self, n: int = -1) -> bytes:
        return self.inner.read(self._take(n))

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        return self.inner.readinto(view[:self._take(len(view))])

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("form", ["gz", "raw", "npy"])
def test_a_read_error_mid_file_is_one_line_naming_the_file(tmp_path, synthetic, monkeypatch, form):
    synthetic.write(tmp_path, form)
    target = synthetic.path(tmp_path, "train_images", form)
    opener = idxfile.open_regular_file

    def failing(path, *args):
        fh = opener(path, *args)
        return FailingFile(fh, target.stat().st_size // 2) if Path(path) == target else fh
    monkeypatch.setattr(idxfile, "open_regular_file", failing)
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    assert_one_line_data_error(excinfo, target, "cannot read", "input/output error")


# ----------------------------------------------------------------------------- data folders that cannot be used

@pytest.mark.parametrize("how", ["explicit", "env"])
def test_a_data_folder_that_is_a_file_is_an_error_naming_it(tmp_path, no_data_env, monkeypatch, synthetic, how):
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    if how == "env":
        monkeypatch.setenv("FASTMLP_DATA_DIR", str(afile))
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=afile if how == "explicit" else None, download=True)
    message = assert_one_line_data_error(excinfo, afile, "is a file, not a folder")
    assert "--data-dir" in message and "FASTMLP_DATA_DIR" in message


def test_a_data_folder_under_proc_is_an_error_saying_where_it_tried_to_write(no_data_env, synthetic, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir="/proc", download=True)
    message = assert_one_line_data_error(excinfo, "/proc/synthetic", "cannot write")
    assert "--data-dir" in message and "FASTMLP_DATA_DIR" in message
    assert capsys.readouterr().err == ""  # no "downloading" line before the error


def test_no_data_and_a_current_folder_where_data_cannot_be_created_is_one_line(
        tmp_path, no_data_env, monkeypatch, synthetic, capsys):
    """From /proc, where ./data cannot be created (a read-only folder would not stop root)."""
    monkeypatch.chdir("/proc")
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, download=True)
    message = assert_one_line_data_error(excinfo, Path("data") / "synthetic", "cannot write")
    assert "--data-dir" in message and "FASTMLP_DATA_DIR" in message
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("form", [
    "gz", "raw",
    "npy",
])
def test_loaded_arrays_are_read_only_whatever_the_file_form(tmp_path, synthetic, form):
    synthetic.write(tmp_path, form)
    ds = load_dataset(spec=synthetic.spec, data_dir=tmp_path)
    for key in KEYS:
        with pytest.raises(ValueError, match="read-only"):
            getattr(ds, key)[0] = 1


def test_unknown_dataset_name_is_an_error_listing_the_known_ones():
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar-10")
    assert_one_line_data_error(excinfo, "'cifar-10'", "unknown dataset", "mnist", "fashion-mnist")
    with pytest.raises(DataError):
        data.get_spec("MNIST")  # names are exact


def test_dataset_found_nowhere_is_an_error_saying_where_it_looked(tmp_path, no_data_env, synthetic):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=empty, download=False)
    message = assert_one_line_data_error(excinfo, empty, "'synthetic'", "not found", "looked in")
    assert "FASTMLP_DATA_DIR" in message  # says how to fix it


def test_registry_describes_the_canonical_mnist_files():
    spec = data.get_spec("mnist")
    assert [f.filename for f in spec.files] == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert [f.count for f in spec.files] == [60000, 60000, 10000, 10000]
    assert [f.kind for f in spec.files] == ["images", "labels", "images", "labels"]
    assert (spec.rows, spec.cols, spec.num_classes) == (28, 28, 10)
    assert spec.train_images.md5 == "6bbc9ace898e44ae57da46a324031adb"
    assert all(m.startswith("https://") for m in spec.mirrors)


# ----------------------------------------------------------------------------- search order

@pytest.fixture
def places(tmp_path, monkeypatch, no_data_env):
    """Three bases: an explicit dir, $FASTMLP_DATA_DIR and ./data (cwd is an empty tmp folder)."""
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    cwd_data = no_data_env / "data"
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(env))
    return explicit, env, cwd_data


def source_of(ds) -> Path:
    return Path(ds.source).resolve()


def test_explicit_data_dir_beats_env_which_beats_cwd_data(places, synthetic):
    explicit, env, cwd_data = places
    for base in places:
        synthetic.write(base / "synthetic")
    assert source_of(load_dataset(spec=synthetic.spec, data_dir=explicit)) == (explicit / "synthetic").resolve()
    assert source_of(load_dataset(spec=synthetic.spec)) == (env / "synthetic").resolve()


def test_env_dir_beats_cwd_data(places, synthetic):
    _, env, cwd_data = places
    synthetic.write(env / "synthetic")
    synthetic.write(cwd_data / "synthetic")
    assert source_of(load_dataset(spec=synthetic.spec)) == (env / "synthetic").resolve()


def test_cwd_data_is_used_when_nothing_else_has_the_dataset(places, synthetic):
    _, _, cwd_data = places
    synthetic.write(cwd_data / "synthetic")
    ds = load_dataset(spec=synthetic.spec)
    assert source_of(ds) == (cwd_data / "synthetic").resolve()
    assert_same_arrays(ds, synthetic)


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_env_variable_is_one_error_not_a_look_elsewhere(places, synthetic, monkeypatch, blank):
    """Set but blank is a mistake: not unset (./data, then a download), and not the current folder."""
    explicit, _, cwd_data = places
    monkeypatch.setenv("FASTMLP_DATA_DIR", blank)
    synthetic.write(cwd_data / "synthetic")
    with pytest.raises(DataError, match="FASTMLP_DATA_DIR is set but empty"):
        load_dataset(spec=synthetic.spec)
    synthetic.write(explicit / "synthetic")  # an explicit folder is looked in first: the blank one is not needed
    assert source_of(load_dataset(spec=synthetic.spec, data_dir=explicit)) == (explicit / "synthetic").resolve()


def test_a_blank_data_dir_is_one_error(places, synthetic):
    with pytest.raises(DataError, match="--data-dir is empty"):
        load_dataset(spec=synthetic.spec, data_dir="")


def test_explicit_dir_may_point_at_the_dataset_folder_itself(places, synthetic):
    explicit, env, _ = places
    synthetic.write(env / "synthetic")
    synthetic.write(explicit, "raw")
    assert source_of(load_dataset(spec=synthetic.spec, data_dir=explicit)) == explicit.resolve()


def test_named_subfolder_wins_over_files_in_the_base_itself(places, synthetic, make_synthetic):
    explicit, _, _ = places
    synthetic.write(explicit / "synthetic")
    make_synthetic(seed=99).write(explicit)  # other content directly in the base
    ds = load_dataset(spec=synthetic.spec, data_dir=explicit)
    assert source_of(ds) == (explicit / "synthetic").resolve()
    assert_same_arrays(ds, synthetic)


def test_explicit_dir_without_the_dataset_falls_through_to_the_next_place(places, synthetic):
    """First match wins: an explicit folder holding none of the files is skipped."""
    explicit, env, _ = places
    explicit.mkdir()
    synthetic.write(env / "synthetic")
    assert source_of(load_dataset(spec=synthetic.spec, data_dir=explicit)) == (env / "synthetic").resolve()


def test_folder_with_some_but_not_all_files_is_an_error_not_skipped(places, synthetic):
    explicit, env, _ = places
    synthetic.write(env / "synthetic")
    synthetic.write(explicit / "synthetic", keys=["train_images"])
    with pytest.raises(DataError) as excinfo:
        load_dataset(spec=synthetic.spec, data_dir=explicit)
    assert_one_line_data_error(excinfo, explicit / "synthetic", "missing", "train-labels-idx1-ubyte")


def test_system_dirs_are_searched_last(places, tmp_path, make_synthetic):
    _, env, cwd_data = places
    system = tmp_path / "usr-share-datasets" / "synthetic"
    ds = make_synthetic(system_dirs=(str(system),))
    ds.write(system)
    assert source_of(load_dataset(spec=ds.spec)) == system.resolve()
    ds.write(cwd_data / "synthetic")
    assert source_of(load_dataset(spec=ds.spec)) == (cwd_data / "synthetic").resolve()
    ds.write(env / "synthetic")
    assert source_of(load_dataset(spec=ds.spec)) == (env / "synthetic").resolve()


def test_candidate_dirs_lists_explicit_env_then_cwd_data(monkeypatch):
    monkeypatch.setenv("FASTMLP_DATA_DIR", "/from/env")
    assert data.candidate_dirs("/explicit") == [Path("/explicit"), Path("/from/env"), Path("data")]
    monkeypatch.delenv("FASTMLP_DATA_DIR")
    assert data.candidate_dirs() == [Path("data")]


# ----------------------------------------------------------------------------- validation split

@pytest.mark.parametrize("n, val_size", [(60000, 5000), (100, 1), (10, 9), (7, 0)])
def test_validation_split_is_disjoint_sorted_and_covers_every_row(n, val_size):
    train_idx, val_idx = data.validation_split(n, val_size, seed=0)
    assert len(val_idx) == val_size and len(train_idx) == n - val_size
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(n))
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)


def test_validation_split_is_seeded_and_deterministic():
    a = data.validation_split(1000, 100, seed=3)
    b = data.validation_split(1000, 100, seed=3)
    c = data.validation_split(1000, 100, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_validation_split_does_not_depend_on_the_global_numpy_random_state():
    np.random.seed(1)
    a = data.validation_split(1000, 100)
    np.random.seed(2)
    b = data.validation_split(1000, 100)
    np.testing.assert_array_equal(a[1], b[1])


def test_validation_split_defaults_hold_out_5000_rows():
    train_idx, val_idx = data.validation_split(60000)
    assert (len(train_idx), len(val_idx)) == (55000, 5000)


@pytest.mark.parametrize("val_size", [-1, 100, 101])
def test_validation_split_rejects_a_val_size_outside_0_to_n_minus_1(val_size):
    with pytest.raises(DataError, match="val_size"):
        data.validation_split(100, val_size)


# ----------------------------------------------------------------------------- downloading

MIRROR_A = "https://mirror-a.invalid/synthetic/"
MIRROR_B = "https://mirror-b.invalid/synthetic/"


class FakeResponse:
    """What ``urlopen`` returns: a context manager with ``headers`` and ``read(n)``."""

    def __init__(self, body: bytes, chunk: int = 997, fail_after: int | None = None,
                 error: BaseException | None = None):
        self.body, self.chunk, self.pos = body, chunk, 0
        self.fail_after, self.error = fail_after, error
        self.headers = {"Content-Length": str(len(body))}

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise self.error
        n = self.chunk if n is None or n < 0 else min(n, self.chunk)
        piece = self.body[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeMirrors:
    """Serves ``routes[url]`` from memory: bytes, a FakeResponse, or an exception to raise."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.requests: list[str] = []

    def urlopen(self, url, timeout=None, **kwargs):
        self.requests.append(url)
        route = self.routes.get(url)
        if route is None:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        if isinstance(route, BaseException):
            raise route
        if isinstance(route, bytes):
            return FakeResponse(route)
        return route


@pytest.fixture
def online(make_synthetic):
    """A synthetic dataset with two mirrors; mirror A serves its four .gz files."""
    return make_synthetic(mirrors=(MIRROR_A, MIRROR_B))


@pytest.fixture
def mirrors(monkeypatch, online) -> FakeMirrors:
    fake = FakeMirrors()
    for key in KEYS:
        fake.routes[MIRROR_A + online.fspec(key).filename + ".gz"] = online.gz(key)
    monkeypatch.setattr(data.urllib.request, "urlopen", fake.urlopen)
    return fake


def test_download_fetches_the_four_files_into_name_folder_and_they_load(tmp_path, online, mirrors):
    folder = data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert folder == tmp_path / "synthetic"
    assert files_in(folder) == sorted(f.filename + ".gz" for f in online.spec.files)  # no .part left over
    for key in KEYS:
        assert gzip.decompress(online.path(folder, key).read_bytes()) == online.idx(key)
    assert len(mirrors.requests) == 4
    assert_same_arrays(load_dataset(spec=online.spec, data_dir=tmp_path), online)


def test_download_reports_progress_on_stderr_only(tmp_path, online, mirrors, capsys):
    data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "train-images-idx3-ubyte.gz" in err


class TerminalStderr(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_download_progress_off_a_terminal_is_one_plain_line_per_file(tmp_path, online, mirrors, capsys):
    data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=True)
    err = capsys.readouterr().err  # captured: not a terminal, as in a log file
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 4
    for line, fspec in zip(lines, online.spec.files):
        assert fspec.filename + ".gz" in line and line.endswith(" MB")


def test_download_progress_on_a_terminal_is_redrawn_in_place(tmp_path, online, mirrors, monkeypatch):
    terminal = TerminalStderr()
    monkeypatch.setattr(sys, "stderr", terminal)
    data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=True)
    text = terminal.getvalue()
    chunks = sum(-(-len(online.gz(key)) // 997) for key in KEYS)  # FakeResponse serves 997-byte chunks
    assert text.count("\r") == chunks
    assert text.count("\n") == 4
    for line in text.split("\n")[:-1]:  # each file ends on its full bar
        assert "[" + "#" * 30 + "]" in line.split("\r")[-1]


def test_download_keeps_valid_files_and_refetches_only_broken_ones(tmp_path, online, mirrors):
    folder = data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    online.path(folder, "test_labels").write_bytes(b"broken")
    mirrors.requests.clear()
    data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert mirrors.requests == [MIRROR_A + "t10k-labels-idx1-ubyte.gz"]
    assert online.path(folder, "test_labels").read_bytes() == online.gz("test_labels")


def test_download_falls_back_to_the_next_mirror(tmp_path, online, mirrors):
    url_a = MIRROR_A + "train-labels-idx1-ubyte.gz"
    mirrors.routes[MIRROR_B + "train-labels-idx1-ubyte.gz"] = mirrors.routes[url_a]
    mirrors.routes[url_a] = urllib.error.URLError("connection refused")
    folder = data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert MIRROR_B + "train-labels-idx1-ubyte.gz" in mirrors.requests
    assert_same_arrays(load_dataset(spec=online.spec, data_dir=folder), online)


def _checksum_mismatch_gz(online, key):
    raw = bytearray(online.idx(key))
    raw[-1] ^= 0xFF
    return gzip.compress(bytes(raw), mtime=0)


FAILURES = {
    "network-error": lambda online, key: urllib.error.URLError("no route to host"),
    "http-404": lambda online, key: None,
    "connection-reset-mid-stream": lambda online, key: FakeResponse(
        online.gz(key), chunk=100, fail_after=200, error=ConnectionResetError(104, "Connection reset by peer")),
    "truncated-gzip": lambda online, key: online.gz(key)[:-10],
    "checksum-mismatch": _checksum_mismatch_gz,
    "not-gzip": lambda online, key: b"<html>Service Unavailable</html>",
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failed_or_corrupt_download_raises_and_leaves_no_file_behind(tmp_path, online, mirrors, failure):
    """Every mirror fails for one file: DataError (one line, naming the file); no target, no .part."""
    key = "train_images"
    filename = online.fspec(key).filename + ".gz"
    for mirror in (MIRROR_A, MIRROR_B):
        mirrors.routes[mirror + filename] = FAILURES[failure](online, key)
    with pytest.raises(DataError) as excinfo:
        data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert_one_line_data_error(excinfo, filename, "could not download")
    folder = tmp_path / "synthetic"
    assert not (folder / filename).exists()
    assert not [n for n in files_in(folder) if n.endswith(".part")]


def test_download_renames_only_verified_bytes_onto_the_target(tmp_path, online, mirrors, monkeypatch):
    key = "train_images"
    filename = online.fspec(key).filename + ".gz"
    mirrors.routes[MIRROR_A + filename] = _checksum_mismatch_gz(online, key)
    renamed_onto_target = []
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def spy(src, dst, *args, _real=real, **kwargs):
            if Path(dst).name == filename:
                renamed_onto_target.append(gzip.decompress(Path(src).read_bytes()))
            return _real(src, dst, *args, **kwargs)
        monkeypatch.setattr(os, name, spy)
    with pytest.raises(DataError):
        data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert renamed_onto_target == [], "corrupt download was renamed onto the target before verification"


def test_http_protocol_error_during_download_is_a_data_error(tmp_path, online, mirrors):
    filename = online.fspec("train_images").filename + ".gz"
    for mirror in (MIRROR_A, MIRROR_B):
        mirrors.routes[mirror + filename] = FakeResponse(
            online.gz("train_images"), chunk=100, fail_after=100, error=http.client.IncompleteRead(b"x" * 100, 50))
    with pytest.raises(DataError):
        data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    assert not [n for n in files_in(tmp_path / "synthetic") if n.endswith(".part")]


def test_downloaded_files_get_ordinary_permissions(tmp_path, online, mirrors):
    old = os.umask(0o022)
    try:
        folder = data.download_dataset(spec=online.spec, data_dir=tmp_path, progress=False)
    finally:
        os.umask(old)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir()}
    assert modes == {name: oct(0o644) for name in modes}


def test_load_dataset_downloads_into_the_first_candidate_when_asked(tmp_path, no_data_env, online, mirrors,
                                                                    capsys):
    target_base = tmp_path / "explicit"
    ds = load_dataset(spec=online.spec, data_dir=target_base, download=True, progress=False)
    assert source_of(ds) == (target_base / "synthetic").resolve()
    assert_same_arrays(ds, online)
    assert "downloading" in capsys.readouterr().err


def test_load_dataset_without_data_dir_downloads_into_cwd_data(no_data_env, online, mirrors):
    ds = load_dataset(spec=online.spec, download=True, progress=False)
    assert source_of(ds) == (no_data_env / "data" / "synthetic").resolve()


def test_load_dataset_does_not_download_over_a_partial_folder(tmp_path, no_data_env, online, mirrors):
    """A folder holding some but not all files is an error, not a download."""
    online.write(tmp_path / "synthetic", keys=["train_images"])
    with pytest.raises(DataError, match="missing"):
        load_dataset(spec=online.spec, data_dir=tmp_path, download=True, progress=False)
    assert mirrors.requests == []


# ----------------------------------------------------------------------------- real MNIST

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_has_the_canonical_shapes_and_uint8_types(mnist):
    assert mnist.name == "mnist"
    assert mnist.train_images.shape == (60000, 784) and mnist.test_images.shape == (10000, 784)
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    for key in KEYS:
        assert getattr(mnist, key).dtype == np.uint8, key
    assert mnist.num_features == 784 and mnist.num_classes == 10


def test_real_mnist_stays_uint8_in_memory(mnist):
    """47 MB of training images, not the 188 MB of float32."""
    assert mnist.train_images.nbytes == 47_040_000
    assert mnist.test_images.nbytes == 7_840_000


def test_real_mnist_label_histograms_are_the_canonical_ones(mnist):
    train = np.bincount(mnist.train_labels, minlength=10)
    test = np.bincount(mnist.test_labels, minlength=10)
    assert train.sum() == 60000 and test.sum() == 10000
    assert train.tolist() == MNIST_TRAIN_COUNTS
    assert test.tolist() == MNIST_TEST_COUNTS


def test_real_mnist_checksums_are_recorded_and_canonical(mnist):
    assert mnist.checksums == {f.filename: f.md5 for f in data.get_spec("mnist").files}
    assert mnist.checksums["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"


def test_real_mnist_pixels_span_0_to_255(mnist):
    for images in (mnist.train_images, mnist.test_images):
        assert images.min() == 0 and images.max() == 255
    # digits are mostly background: a fifth or less of the pixels are ink
    assert 0.15 < np.count_nonzero(mnist.train_images) / mnist.train_images.size < 0.25


# ----------------------------------------------------------------------------- the mnist fixture

def _run_fixture_probe(tmp_path, env_updates: dict[str, str | None]) -> subprocess.CompletedProcess:
    """Run a one-test pytest session using ``mnist`` with this conftest and a modified environment."""
    probe = tmp_path / "probe"
    probe.mkdir()
    for name in ("conftest.py", "synthetic.py"):  # the conftest and the module it imports
        (probe / name).write_text((Path(__file__).parent / name).read_text())
    (probe / "test_probe.py").write_text(textwrap.dedent("""
        def test_uses_mnist(mnist):
            assert False, "the fixture must not provide data here"
    """))
    env = dict(os.environ)
    for k, v in env_updates.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(probe)],
                          cwd=probe, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("data_dir", [None, "empty"], ids=["env-unset", "env-without-mnist"])
def test_mnist_fixture_skips_without_data_and_fails_when_data_is_required(tmp_path, data_dir):
    env_dir = None
    if data_dir:
        env_dir = tmp_path / "empty"
        env_dir.mkdir()
        env_dir = str(env_dir)
    (tmp_path / "a").mkdir()
    skipped = _run_fixture_probe(tmp_path / "a", {"FASTMLP_DATA_DIR": env_dir, "FASTMLP_REQUIRE_DATA": None})
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout and "FASTMLP_DATA_DIR" in skipped.stdout

    (tmp_path / "b").mkdir()
    required = _run_fixture_probe(tmp_path / "b", {"FASTMLP_DATA_DIR": env_dir, "FASTMLP_REQUIRE_DATA": "1"})
    assert required.returncode != 0
    assert "1 error" in required.stdout and "FASTMLP_REQUIRE_DATA" in required.stdout
