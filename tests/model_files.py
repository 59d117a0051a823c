"""Model files for the tests: a valid one's bytes, and malformed ones with the error each must give."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from fastmlp.training.model import MLP


def valid_arrays(sizes=(6, 5, 3)) -> dict:
    """The three arrays :meth:`MLP.save` writes, for a small model."""
    model = MLP.initialized(list(sizes), np.random.default_rng(1))
    return dict(sizes=np.array(sizes, np.int64), params=model.params,
                metadata=np.array(json.dumps({"epoch": 1})))


def npy_bytes(array=None, *, header_shape=None, dtype=None) -> bytes:
    """A .npy member: ``array``'s, or a header alone claiming ``header_shape`` of ``dtype``."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                   "fortran_order": False, "shape": header_shape})
    return buf.getvalue()


def model_zip(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of ``{name: array or bytes}``, named ``name.npy`` like np.savez does."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, value in members.items():
            zf.writestr(name + ".npy", value if isinstance(value, bytes) else npy_bytes(value))
    return buf.getvalue()


def with_arrays(**changes) -> bytes:
    """A model file whose arrays are the valid ones with ``changes`` (None removes one)."""
    arrays = {**valid_arrays(), **changes}
    return model_zip({k: v for k, v in arrays.items() if v is not None})


VALID = model_zip(valid_arrays())

MALFORMED = {
    "empty": (b"", "not a zip file"),
    "truncated-half": (VALID[: len(VALID) // 2], "not a fastmlp model file"),
    "truncated-by-one": (VALID[:-1], "not a fastmlp model file"),
    "npy-renamed": (npy_bytes(np.zeros(10, np.float32)), "not a fastmlp model file"),
    "npy-renamed-huge-header": (npy_bytes(header_shape=(10**12,), dtype=np.float32), "not a fastmlp model file"),
    "zip-of-other-arrays": (model_zip({"a": np.zeros(3)}), "no 'sizes' array"),
    "zip-without-metadata": (with_arrays(metadata=None), "no 'metadata' array"),
    "zip-not-of-npy": (model_zip({"sizes": b"hello", "params": b"x", "metadata": b"{}"}), "not a fastmlp model"),
    "metadata-json-list": (with_arrays(metadata=np.array("[1, 2]")), "metadata is a json list"),
    "metadata-json-number": (with_arrays(metadata=np.array("3")), "metadata is a json int"),
    "metadata-not-json": (with_arrays(metadata=np.array("{epoch")), "metadata is not valid json"),
    "metadata-deeply-nested": (with_arrays(metadata=np.array("[" * 100000)), "metadata is not valid json"),
    "metadata-not-a-string": (with_arrays(metadata=np.array([1, 2])), "metadata of dtype"),
    "metadata-object": (with_arrays(metadata=np.array({"epoch": 1}, dtype=object)), "not a plain array"),
    "sizes-2d": (with_arrays(sizes=np.array([[6, 5, 3]], np.int64)), "expected a 1-d integer array"),
    "sizes-float": (with_arrays(sizes=np.array([6.0, 5.0, 3.0])), "expected a 1-d integer array"),
    "sizes-bool": (with_arrays(sizes=np.array([True, True])), "expected a 1-d integer array"),
    "sizes-one-value": (with_arrays(sizes=np.array([6], np.int64)), "at least 2 layer sizes"),
    "sizes-zero": (with_arrays(sizes=np.array([6, 0, 3], np.int64)), "positive"),
    "sizes-negative": (with_arrays(sizes=np.array([6, -5, 3], np.int64)), "positive"),
    "sizes-huge": (with_arrays(sizes=np.array([10**9, 10**9, 10], np.int64)),
                   "need 1000000011000000010 parameters, params holds 53"),
    "sizes-overflowing-int64": (with_arrays(sizes=np.array([2**63 - 1, 2**63 - 1], np.int64)), "parameters"),
    "sizes-huge-uint64": (with_arrays(sizes=np.array([2**64 - 1, 3], np.uint64)), "parameters"),
    "sizes-more-layers-than-params": (with_arrays(sizes=np.ones(1000, np.int64)), "1000 layer sizes"),
    "sizes-header-claims-10^12": (with_arrays(sizes=npy_bytes(header_shape=(10**12,), dtype=np.int64)),
                                  "its header says"),
    "params-strings": (with_arrays(params=np.array(["a"] * 53)), "expected a 1-d float32"),
    "params-float64": (with_arrays(params=np.zeros(53)), "expected a 1-d float32"),
    "params-int32": (with_arrays(params=np.zeros(53, np.int32)), "expected a 1-d float32"),
    "params-2d": (with_arrays(params=np.zeros((53, 1), np.float32)), "expected a 1-d float32"),
    "params-too-short": (with_arrays(params=np.zeros(52, np.float32)), "need 53 parameters, params holds 52"),
    "params-too-long": (with_arrays(params=np.zeros(54, np.float32)), "need 53 parameters, params holds 54"),
    "params-nan": (with_arrays(params=np.r_[np.zeros(52, np.float32), np.float32("nan")]), "1 of 53 parameters"),
    "params-inf": (with_arrays(params=np.full(53, np.inf, np.float32)), "53 of 53 parameters are nan or infinite"),
    "params-header-claims-10^12": (
        with_arrays(sizes=np.array([10**6, 10**6], np.int64),
                    params=npy_bytes(header_shape=(10**12 + 10**6,), dtype=np.float32)), "its header says"),
    "params-short-of-its-header": (with_arrays(params=npy_bytes(np.zeros(53, np.float32))[:-4]), "its header says"),
}
