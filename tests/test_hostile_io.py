"""Hostile files and attributes around what fastmlp writes, reads and predicts with.

Writing: every writer (model files, checkpoints, reports, plots, ONNX) writes only regular
files. A path that names a folder, a device, a named pipe or a socket is one line naming it
(exit 2 from the command) and is left as it was; a symbolic link is followed, so the file it
leads to is replaced and the link stays.

Reading pictures: a float or 32-bit picture (a float TIFF of 0..1 or 0..255, 32-bit integers)
is read by the range its values follow, as its 8-bit copy is.

The estimator: ``coefs_`` and ``intercepts_`` are the network. Edited in place, or assigned
new arrays (whole, by item or by slice), they are what ``predict``, ``save`` and ``to_onnx``
use; arrays of the wrong shape, kind or number are one clear error and change nothing.
"""

from __future__ import annotations

import json
import os
import socket
import stat

import numpy as np
import pytest
from helpers import assert_one_line_exit_2, import_extra, run_offline

from fastmlp.atomic import atomic_path, write_target, write_text
from fastmlp.errors import ModelError, UsageError
from fastmlp.training.model import MLP


@pytest.fixture
def cwd(tmp_path):
    """An empty current folder for the command."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.npz"
    MLP.initialized([784, 16, 10], np.random.default_rng(0)).save(path)
    return path


def device_node(path):
    """A character device (/dev/null's numbers) at ``path``: one a failed check could replace
    without harm, where the real /dev/null must never be at stake. Skips where mknod is refused."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    return path


def unix_socket(path):
    """A listening Unix socket at ``path``; the caller closes it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    return sock


def kind_of(path) -> str:
    mode = os.lstat(path).st_mode
    for test, name in ((stat.S_ISLNK, "link"), (stat.S_ISFIFO, "pipe"), (stat.S_ISCHR, "device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"), (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "other"


# ----------------------------------------------------------------------------- writing: the command

def test_export_onto_a_named_pipe_is_one_line_and_the_pipe_stays(cwd, model_file):
    os.mkfifo(cwd / "pipe")
    assert_one_line_exit_2(["export", model_file, "--onnx", "pipe"], cwd, "pipe: is a named pipe, not a regular file")
    assert kind_of(cwd / "pipe") == "pipe"


def test_export_onto_a_device_is_one_line_and_the_device_stays(cwd, model_file):
    device_node(cwd / "null")
    assert_one_line_exit_2(["export", model_file, "--onnx", "null"], cwd, "null: is a character device")
    assert kind_of(cwd / "null") == "device"


def test_export_onto_a_socket_is_one_line_and_the_socket_stays(cwd, model_file):
    with unix_socket(cwd / "sock"):
        assert_one_line_exit_2(["export", model_file, "--onnx", "sock"], cwd, "sock: is a socket")
        assert kind_of(cwd / "sock") == "socket"


@pytest.mark.parametrize("name", ["out", "out/", "absent/"])
def test_export_onto_a_folder_is_one_line(cwd, model_file, name):
    (cwd / "out").mkdir()
    line = assert_one_line_exit_2(["export", model_file, "--onnx", name], cwd, name, "folder")
    assert "give a file name" in line
    assert kind_of(cwd / "out") == "folder" and not (cwd / "absent").exists()


def test_export_through_a_link_to_a_pipe_or_a_device_is_one_line_naming_both(cwd, model_file):
    os.mkfifo(cwd / "pipe")
    (cwd / "to-pipe").symlink_to("pipe")
    assert_one_line_exit_2(["export", model_file, "--onnx", "to-pipe"], cwd, "to-pipe (a link to ", "named pipe")
    assert kind_of(cwd / "to-pipe") == "link" and kind_of(cwd / "pipe") == "pipe"
    device_node(cwd / "null")
    (cwd / "to-null").symlink_to(cwd / "null")
    assert_one_line_exit_2(["export", model_file, "--onnx", "to-null"], cwd, "to-null (a link to ", "device")
    assert kind_of(cwd / "to-null") == "link" and kind_of(cwd / "null") == "device"


def test_export_through_a_link_that_loops_is_one_line(cwd, model_file):
    (cwd / "a.onnx").symlink_to("b.onnx")
    (cwd / "b.onnx").symlink_to("a.onnx")
    assert_one_line_exit_2(["export", model_file, "--onnx", "a.onnx"], cwd, "a.onnx: a symbolic link that loops")


def test_export_through_a_link_replaces_the_file_it_leads_to_and_keeps_the_link(cwd, model_file):
    (cwd / "models").mkdir()
    (cwd / "models" / "v1.onnx").write_bytes(b"the previous export")
    (cwd / "latest.onnx").symlink_to("models/v1.onnx")
    (cwd / "new.onnx").symlink_to("models/v2.onnx")  # a link to a file not there yet
    for name in ("latest.onnx", "new.onnx"):
        proc = run_offline(["export", model_file, "--onnx", name], cwd)
        assert proc.returncode == 0, proc.stderr
        assert kind_of(cwd / name) == "link"
    onnx = import_extra("onnx", "onnx")
    for name in ("v1.onnx", "v2.onnx"):
        assert kind_of(cwd / "models" / name) == "file"
        props = {p.key: p.value for p in onnx.load(cwd / "models" / name).metadata_props}
        assert json.loads(props["sizes"]) == [784, 16, 10]
    assert sorted(os.listdir(cwd / "models")) == ["v1.onnx", "v2.onnx"]  # no temporary file left over


# ----------------------------------------------------------------------------- writing: every writer

def _writers():
    """``name: write(path)`` for each of fastmlp's file writers."""
    from fastmlp.figures import save_figure, subplots
    from fastmlp.training.runs import save_checkpoint

    def figure(path):
        fig, ax = subplots()
        ax.plot([0, 1])
        save_figure(fig, path)

    return {
        "model file": lambda path: MLP([4, 3, 2]).save(path),
        "checkpoint": lambda path: save_checkpoint(path, {"x": np.zeros(3)}, {"epoch": 1}),
        "text (history, report)": lambda path: write_text(path, "text"),
        "plot": figure,
    }


@pytest.mark.parametrize("writer", _writers())
@pytest.mark.parametrize("kind", ["pipe", "device", "socket", "folder", "link to a pipe"])
def test_no_writer_replaces_a_special_file(tmp_path, writer, kind):
    target = tmp_path / "target"
    sock = None
    if kind == "pipe":
        os.mkfifo(target)
    elif kind == "device":
        device_node(target)
    elif kind == "socket":
        sock = unix_socket(target)
    elif kind == "folder":
        target.mkdir()
    else:
        os.mkfifo(tmp_path / "pipe")
        target.symlink_to(tmp_path / "pipe")
    try:
        with pytest.raises(UsageError, match="target"):
            _writers()[writer](target)
        assert kind_of(target) == {"link to a pipe": "link"}.get(kind, kind)
        assert sorted(os.listdir(tmp_path)) == sorted(["target"] + (["pipe"] if kind == "link to a pipe" else []))
    finally:
        if sock is not None:
            sock.close()


def test_the_real_devices_are_refused_before_anything_is_written():
    for path in (os.devnull, "/dev/zero"):
        if os.path.exists(path):
            with pytest.raises(UsageError, match="not a regular file"):
                write_target(path)


def test_a_replaced_file_keeps_its_permissions_and_a_new_one_follows_the_umask(tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o640)
    write_text(kept, "new")
    assert kept.read_text() == "new" and stat.S_IMODE(kept.stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "fresh.txt", "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o640


def test_a_target_turned_into_a_pipe_while_it_is_written_is_not_replaced(tmp_path):
    target = tmp_path / "model.npz"
    with pytest.raises(UsageError, match="named pipe"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"content")
            os.mkfifo(target)
    assert kind_of(target) == "pipe" and os.listdir(tmp_path) == ["model.npz"]


# ----------------------------------------------------------------------------- reading pictures

@pytest.fixture
def pil():
    return import_extra("PIL.Image", "images")


def dark_ring(side=120) -> np.ndarray:
    """A zero in dark ink on white: grey levels in [0, 1]."""
    y, x = np.mgrid[:side, :side] - side / 2
    return 1 - np.clip(6.5 - np.abs(np.hypot(y / 0.9, x / 0.6) - side / 3), 0, 1)


@pytest.mark.parametrize("form", ["float 0..1", "float 0..255", "float -1..1", "32-bit integers 0..65535",
                                  "32-bit integers 0..10^6", "16 bits holding 8-bit values"])
def test_predict_reads_a_float_or_32_bit_picture_as_its_8_bit_copy(cwd, model_file, pil, form):
    grey = dark_ring()
    eight_bit = np.round(255 * grey).astype(np.uint8)
    pixels = {"float 0..1": (eight_bit / 255).astype(np.float32),
              "float 0..255": eight_bit.astype(np.float32),
              "float -1..1": (eight_bit / 127.5 - 1).astype(np.float32),
              "32-bit integers 0..65535": eight_bit.astype(np.int32) * 257,
              "32-bit integers 0..10^6": np.round(eight_bit / 255 * 1e6).astype(np.int32),
              "16 bits holding 8-bit values": eight_bit.astype(np.uint16)}[form]
    other = "ring16.png" if pixels.dtype == np.uint16 else "ring.tif"  # TIFF holds 32-bit and float grey
    pil.fromarray(eight_bit).save(cwd / "ring.png")
    pil.fromarray(pixels).save(cwd / other)
    proc = run_offline(["predict", model_file, "ring.png", other, "--json", "--top", "10"], cwd)
    assert proc.returncode == 0, proc.stderr
    png, tif = json.loads(proc.stdout)
    np.testing.assert_allclose([t["probability"] for t in tif["top"]], [t["probability"] for t in png["top"]],
                               atol=1e-4)


def test_a_blank_float_picture_is_one_line_not_a_digit(cwd, model_file, pil):
    pil.fromarray(np.full((60, 60), 0.9, np.float32)).save(cwd / "blank.tif")
    assert_one_line_exit_2(["predict", model_file, "blank.tif"], cwd, "blank.tif: no digit found")


# ----------------------------------------------------------------------------- the estimator's attributes

@pytest.fixture(scope="module")
def fitted():
    """``(make, X)``: ``make(kind)`` fits a fresh small classifier or regressor on ``X``."""
    import_extra("sklearn", "sklearn")
    import warnings

    from fastmlp import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.random((120, 6)).astype(np.float32)

    def make(kind):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "classifier":
                return MLPClassifier((8, 5), max_iter=3, random_state=0).fit(X, four_classes(X))
            return MLPRegressor((8, 5), max_iter=3, random_state=0).fit(X, X[:, :2] @ [[1.0, 2.0], [3.0, 4.0]])

    return make, X


def four_classes(X) -> np.ndarray:
    return (X[:, 0] > 0.5).astype(int) + 2 * (X[:, 1] > 0.5)


def numpy_forward(coefs, intercepts, X) -> np.ndarray:
    """scikit-learn's forward pass in float64: ReLU hidden layers, the output layer as it is."""
    h = X.astype(np.float64)
    for l, (W, b) in enumerate(zip(coefs, intercepts)):
        h = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        if l < len(coefs) - 1:
            h = np.maximum(h, 0)
    return h


def outputs(est, X) -> np.ndarray:
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def softmax_if(est, h: np.ndarray) -> np.ndarray:
    if not hasattr(est, "predict_proba"):
        return h
    z = np.exp(h - h.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def new_arrays(est, seed=1):
    rng = np.random.default_rng(seed)
    return ([rng.normal(0, 0.5, c.shape) for c in est.coefs_], [rng.normal(0, 0.5, b.shape) for b in est.intercepts_])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_assigned_coefs_and_intercepts_are_what_predict_save_and_onnx_use(fitted, kind, tmp_path):
    make, X = fitted
    est = make(kind)
    coefs, intercepts = new_arrays(est)
    est.coefs_ = coefs                  # float64 lists, copied into the float32 buffer
    est.intercepts_ = tuple(intercepts)
    want = softmax_if(est, numpy_forward(coefs, intercepts, X))
    np.testing.assert_allclose(outputs(est, X), want, rtol=1e-4, atol=1e-4)
    for c, new in zip(est.coefs_, coefs):
        assert c.dtype == np.float32 and np.shares_memory(c, est._params)
        np.testing.assert_array_equal(c, new.astype(np.float32))

    import fastmlp
    est.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(outputs(fastmlp.load(tmp_path / "model.npz"), X), outputs(est, X))
    onnx = import_extra("onnx", "onnx")
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in est.to_onnx().graph.initializer}
    np.testing.assert_array_equal(initializers["W1"], coefs[0].astype(np.float32).T)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_in_place_edits_and_item_assignments_are_what_predict_uses(fitted, kind):
    make, X = fitted
    est = make(kind)
    coefs, intercepts = new_arrays(est, seed=2)
    est.coefs_[0][:] = coefs[0]
    est.coefs_[1] = coefs[1]
    est.coefs_[-1:] = coefs[-1:]
    est.intercepts_[0] += intercepts[0] - est.intercepts_[0]  # read, add, and assign back to the item
    est.intercepts_[1:] = intercepts[1:]
    want = softmax_if(est, numpy_forward(coefs, intercepts, X))
    np.testing.assert_allclose(outputs(est, X), want, rtol=1e-4, atol=1e-4)


def test_warm_start_continues_from_assigned_arrays(fitted):
    make, X = fitted
    est = make("classifier")
    for c in est.coefs_:
        c[:] = 0
    est.set_params(warm_start=True, max_iter=1, learning_rate_init=1e-12)
    with pytest.warns(Warning, match="Maximum iterations"):
        est.fit(X, four_classes(X))
    assert all(np.abs(c).max() < 1e-6 for c in est.coefs_)


@pytest.mark.parametrize("attribute,value,fragment", [
    ("coefs_", lambda e: [np.zeros((6, 9)), *e.coefs_[1:]], "coefs_[0] must have shape (6, 8), the fitted network's; "
                                                             "got (6, 9)"),
    ("coefs_", lambda e: [c.T for c in e.coefs_], "coefs_[0] must have shape (6, 8)"),
    ("coefs_", lambda e: e.coefs_[:2], "coefs_ must be a list of 3 arrays, one a layer; got 2 arrays"),
    ("coefs_", lambda e: np.zeros((3, 6, 8)), "coefs_ must be a list of 3 arrays, one a layer; got ndarray"),
    ("coefs_", lambda e: None, "got NoneType"),
    ("intercepts_", lambda e: [*e.intercepts_[:2], np.zeros(4, complex)], "intercepts_[2] must hold real numbers"),
    ("intercepts_", lambda e: [*e.intercepts_[:2], np.array(["a"] * 4)], "intercepts_[2] must hold real numbers"),
    ("intercepts_", lambda e: [*e.intercepts_[:2], [0.0, np.nan, 0.0, 0.0]], "intercepts_[2] has values that are NaN"),
    ("coefs_", lambda e: [np.full((6, 8), 1e39), *e.coefs_[1:]], "beyond float32's range"),
    ("coefs_", lambda e: [[[1.0] * 8] * 5 + [[1.0]], *e.coefs_[1:]], "coefs_[0] must be an array of shape (6, 8)"),
], ids=["wider", "transposed", "a layer short", "one 3-D array", "None", "complex", "strings", "NaN",
        "beyond float32", "ragged"])
def test_wrong_arrays_are_one_clear_error_and_change_nothing(fitted, attribute, value, fragment):
    make, X = fitted
    est = make("classifier")
    before, params = outputs(est, X), est._params.copy()
    bad = value(est)
    with pytest.raises(ModelError) as err:
        setattr(est, attribute, bad)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelError, match="must"):
        getattr(est, attribute)[0] = np.zeros((2, 2))
    np.testing.assert_array_equal(est._params, params)
    np.testing.assert_array_equal(outputs(est, X), before)


def test_the_number_of_layers_cannot_change(fitted):
    make, _ = fitted
    est = make("classifier")
    for change in (lambda a: a.append(a[0]), lambda a: a.pop(), lambda a: a.__delitem__(0), lambda a: a.extend([]),
                   lambda a: a.insert(0, a[0]), lambda a: a.clear(), lambda a: a.reverse()):
        with pytest.raises(TypeError, match="its length cannot change"):
            change(est.coefs_)
    assert len(est.coefs_) == len(est.intercepts_) == 3


def test_unfitted_there_are_no_coefs_and_assigning_them_is_refused():
    import_extra("sklearn", "sklearn")
    from fastmlp import MLPClassifier
    clf = MLPClassifier()
    assert not hasattr(clf, "coefs_") and not hasattr(clf, "intercepts_")
    with pytest.raises(ModelError, match="fitted estimator only"):
        clf.coefs_ = [np.zeros((2, 2))]


def test_copies_and_pickles_of_the_lists_are_plain_lists_of_arrays(fitted):
    import copy
    import pickle
    make, _ = fitted
    est = make("classifier")
    for twin in (copy.deepcopy(est.coefs_), pickle.loads(pickle.dumps(est.coefs_))):
        assert type(twin) is list and not any(np.shares_memory(t, est._params) for t in twin)
        twin.append(twin[0])  # a plain list: no longer the network's
    again = pickle.loads(pickle.dumps(est))
    assert all(np.shares_memory(c, again._params) for c in again.coefs_ + again.intercepts_)


def test_export_onto_its_own_model_file_is_one_line_and_the_model_stays(cwd, model_file):
    before = model_file.read_bytes()
    assert_one_line_exit_2(["export", model_file, "--onnx", model_file], cwd, "is the model file itself")
    (cwd / "alias.npz").symlink_to(model_file)
    assert_one_line_exit_2(["export", model_file, "--onnx", "alias.npz"], cwd, "is the model file itself")
    assert model_file.read_bytes() == before


def test_export_through_a_dangling_link_into_a_missing_folder_makes_no_folder(cwd, model_file, tmp_path):
    (cwd / "out.onnx").symlink_to(tmp_path / "nowhere" / "deeper" / "x.onnx")
    assert_one_line_exit_2(["export", model_file, "--onnx", "out.onnx"], cwd, "out.onnx: a symbolic link to",
                           "whose folder does not exist")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("args", [["train", "--out", ""], ["train", "--resume", " "], ["train", "--config", ""],
                                  ["evaluate", ""], ["predict", "{model}", ""], ["export", "{model}", "--onnx", ""],
                                  ["report", "--out", ""]])
def test_an_empty_path_is_one_line_not_the_current_folder(cwd, model_file, args):
    args = [str(model_file) if a == "{model}" else a for a in args]
    assert_one_line_exit_2(args, cwd, "an empty path (is a shell variable unset?)")
    assert not list(cwd.iterdir())


def test_a_person_s_own_dot_files_beside_a_run_s_names_stay(cwd):
    from fastmlp.atomic import remove_stale_temporaries
    mine = [".model.npz.notes.tmp.txt", ".history.json.1.tmpl", ".model.npz.abcdefgh.tmp.npz.bak"]
    stale = ".model.npz.k3_9zq0a.tmp.npz"  # what atomic_path names a temporary file
    for name in [*mine, stale]:
        (cwd / name).write_text("x")
    assert [p.name for p in remove_stale_temporaries(cwd, ["model.npz", "history.json"])] == [stale]
    assert sorted(p.name for p in cwd.iterdir()) == sorted(mine)
