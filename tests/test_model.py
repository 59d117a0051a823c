"""The MLP keeps every parameter in one flat float32 buffer, initialises like the reference,
and saves and loads itself atomically."""

import os
import zipfile

import numpy as np
import pytest
from model_files import MALFORMED, model_zip, valid_arrays, with_arrays

from fastmlp import reference as ref
from fastmlp.engine.layout import BUFFER_ALIGNMENT, aligned_zeros, make_layout
from fastmlp.errors import ModelError
from fastmlp.training.model import MLP


def test_layout_places_each_weight_then_its_bias_back_to_back():
    layout = make_layout([4, 3, 2])
    np.testing.assert_array_equal(layout, [[4, 3, 0, 12], [3, 2, 15, 21]])
    assert MLP([4, 3, 2]).num_parameters == 4 * 3 + 3 + 3 * 2 + 2


def test_layer_views_share_memory_with_the_flat_buffer():
    model = MLP([5, 4, 3])
    (W1, b1), (W2, b2) = model.layers()
    assert W1.shape == (4, 5) and b1.shape == (4,) and W2.shape == (3, 4) and b2.shape == (3,)
    for view in (W1, b1, W2, b2):
        assert np.shares_memory(view, model.params)
    W2[1, 2] = 42
    assert model.params[4 * 5 + 4 + 1 * 4 + 2] == 42


@pytest.mark.parametrize("shape,dtype", [(1, np.float32), (79_510, np.float32), ((2, 1001), np.float32),
                                         ((3, 5), np.int32), (0, np.float64)])
def test_aligned_buffers_are_contiguous_writable_zeros_starting_on_a_page(shape, dtype):
    for _ in range(5):  # several allocations: NumPy alone starts them wherever the allocator does
        a = aligned_zeros(shape, dtype)
        assert a.shape == np.zeros(shape).shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable and not a.any()
        assert a.ctypes.data % BUFFER_ALIGNMENT == 0 or a.size == 0  # an empty one has no data to place
        a[...] = 7
        assert (a == 7).all()


def test_a_models_parameters_start_on_a_page():
    assert MLP([784, 100, 10]).params.ctypes.data % BUFFER_ALIGNMENT == 0


def test_initialisation_draws_the_same_weights_as_the_reference_network():
    model = MLP.initialized([20, 8, 6, 3], np.random.default_rng(5))
    net = ref.NN([20, 8, 6, 3], np.random.default_rng(5), np.float32)
    for got, want in zip([a for pair in model.layers() for a in pair], net.parameters()):
        np.testing.assert_array_equal(got, want)
    assert all(np.all(b == 0) for _, b in model.layers())
    assert model.params.dtype == np.float32


@pytest.mark.parametrize("sizes", [[], [784], [784, 0, 10], [784, -3, 10]])
def test_bad_sizes_are_rejected(sizes):
    with pytest.raises(ModelError, match="sizes"):
        MLP(sizes)


def test_a_parameter_buffer_of_the_wrong_size_is_rejected():
    with pytest.raises(ModelError, match="float32"):
        MLP([4, 3, 2], np.zeros(7, np.float32))


def test_evaluate_rejects_images_of_the_wrong_shape():
    model = MLP([784, 10, 10])
    with pytest.raises(ModelError, match=r"uint8 .*float32 .*\(n, 784\)"):
        model.evaluate(np.zeros((3, 100), np.uint8), np.zeros(3, np.uint8))


@pytest.mark.parametrize("rows,message", [
    (np.array([0, 3]), r"rows must be in \[0, 2\] \(the data has 3 rows\); found 0 to 3"),
    (np.array([-1]), r"rows must be in \[0, 2\]"),
    (np.array([0.5]), "rows must be a 1-D array of integer row indices"),
])
def test_evaluate_and_logits_refuse_rows_outside_the_images(rows, message):
    model = MLP([784, 10, 10])
    images, labels = np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8)
    with pytest.raises(ModelError, match=message):
        model.evaluate(images, labels, rows)
    with pytest.raises(ModelError, match=message):
        model.rows_logits(images, rows)


@pytest.mark.parametrize("labels,message", [
    (np.array([0, 10, 2]), r"labels must be in \[0, 9\] for a model of 10 outputs; found 0 to 10"),
    (np.array([0, -1, 2]), r"labels must be in \[0, 9\]"),
    (np.array([0, 1]), "labels must be a 1-D integer array of 3 labels, one per image"),
    (np.array([0.0, 1.0, 2.0]), "labels must be a 1-D integer array"),
])
def test_evaluate_refuses_labels_the_model_cannot_have(labels, message):
    with pytest.raises(ModelError, match=message):
        MLP([784, 10, 10]).evaluate(np.zeros((3, 784), np.uint8), labels)


def test_logits_equal_the_reference_forward():
    rng = np.random.default_rng(2)
    model = MLP.initialized([12, 9, 4], rng)
    x = rng.random((5, 12)).astype(np.float32)
    net = ref.NN([12, 9, 4], np.random.default_rng(0))
    net.layers[0].W[:], net.layers[0].b[:] = model.layers()[0]
    net.layers[1].W[:], net.layers[1].b[:] = model.layers()[1]
    np.testing.assert_allclose(model.logits(x), net.forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def reference_twin(model: MLP) -> ref.NN:
    """A float64 reference network holding ``model``'s parameters."""
    net = ref.NN(model.sizes, np.random.default_rng(0))
    net_params = net.parameters()
    for dst, src in zip(net_params, [a for pair in model.layers() for a in pair]):
        dst[...] = src
    return net


def test_logits_of_many_inference_chunks_equal_the_reference_forward():
    rng = np.random.default_rng(3)
    model = MLP.initialized([30, 16, 8, 5], rng)
    x = rng.random((600, 30)).astype(np.float32)  # 600 rows: five chunks, the last one short
    np.testing.assert_allclose(model.logits(x), reference_twin(model).forward(x.astype(np.float64)),
                               rtol=1e-5, atol=1e-5)


def test_logits_of_uint8_pixels_are_the_logits_of_the_pixels_over_255():
    rng = np.random.default_rng(4)
    model = MLP.initialized([20, 7, 3], rng)
    pixels = rng.integers(0, 256, (9, 20), dtype=np.uint8)
    np.testing.assert_allclose(model.logits(pixels), model.logits(pixels.astype(np.float32) / 255), atol=1e-6)


def test_probabilities_are_the_softmax_of_the_logits_and_agree_with_predict():
    rng = np.random.default_rng(5)
    model = MLP.initialized([12, 10, 4], rng)
    x = (10 * rng.random((50, 12))).astype(np.float32)  # large inputs: logits far apart
    p = model.probabilities(x)
    assert p.dtype == np.float32 and p.shape == (50, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    want = np.exp(ref.log_softmax(reference_twin(model).forward(x.astype(np.float64))))
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(p.argmax(axis=1), model.predict(x))


def test_save_then_load_round_trips_parameters_and_metadata(tmp_path):
    model = MLP.initialized([6, 5, 3], np.random.default_rng(1))
    path = tmp_path / "model.npz"
    model.save(path, config={"lr": 0.001}, epoch=3)
    loaded, meta = MLP.load(path)
    assert loaded.sizes == [6, 5, 3]
    np.testing.assert_array_equal(loaded.params, model.params)
    assert meta == {"config": {"lr": 0.001}, "epoch": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left


def test_loading_a_missing_or_corrupt_model_file_gives_one_clear_line(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        MLP.load(tmp_path / "absent.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelError, match="not a fastmlp model file") as info:
        MLP.load(bad)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- malformed model files



@pytest.mark.parametrize("content, fragment", MALFORMED.values(), ids=MALFORMED.keys())
def test_every_malformed_model_file_is_one_model_error_line(tmp_path, content, fragment):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        MLP.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert fragment in message.lower(), message


def test_a_deflate_bomb_member_is_refused_before_it_is_read(tmp_path):
    """A member whose directory entry claims more than its compressed bytes can expand to."""
    content = bytearray(model_zip(valid_arrays(), zipfile.ZIP_DEFLATED))
    # Patch the central directory's uncompressed size of params.npy to 2**31.
    entry = content.rindex(b"PK\x01\x02", 0, content.index(b"params.npy", content.index(b"PK\x01\x02")))
    content[entry + 24:entry + 28] = (2**31).to_bytes(4, "little")
    path = tmp_path / "model.npz"
    path.write_bytes(bytes(content))
    with pytest.raises(ModelError, match="claims 2147483648 bytes"):
        MLP.load(path)


def test_a_model_saved_compressed_or_with_big_endian_params_loads(tmp_path):
    arrays = valid_arrays()
    path = tmp_path / "model.npz"
    np.savez_compressed(path, **arrays)
    model, meta = MLP.load(path)
    np.testing.assert_array_equal(model.params, arrays["params"])
    path.write_bytes(with_arrays(params=arrays["params"].astype(">f4")))
    model, meta = MLP.load(path)
    np.testing.assert_array_equal(model.params, arrays["params"])
    assert model.params.dtype == np.float32 and model.params.dtype.isnative and meta == {"epoch": 1}


def test_a_named_pipe_or_a_folder_as_model_file_is_refused_at_once(tmp_path):
    pipe = tmp_path / "model.npz"
    os.mkfifo(pipe)
    with pytest.raises(ModelError, match="named pipe, not a regular file"):
        MLP.load(pipe)  # would block forever if opened for reading
    with pytest.raises(ModelError, match="a folder, not a regular file"):
        MLP.load(tmp_path)
