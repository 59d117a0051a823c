"""An exported ONNX model computes what fastmlp computes: the same logits (within 1e-5), the same
predictions, softmax probabilities, for any number of hidden layers; it is written atomically."""

import json
import sys

import numpy as np
import pytest

from fastmlp.errors import UsageError
from fastmlp.interop import onnx as export
from fastmlp.training.model import MLP


def run_onnx(onnxruntime, path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, probabilities)`` of the ONNX model in ``path`` for float32 ``x``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return tuple(session.run(["logits", "probabilities"], {"x": x}))


@pytest.mark.parametrize("sizes", [[784, 64, 10], [784, 128, 64, 10], [784, 96, 48, 32, 10]],
                         ids=["1 hidden", "2 hidden", "3 hidden"])
def test_onnxruntime_gives_fastmlps_logits_for_1_2_and_3_hidden_layers(onnxruntime, tmp_path, sizes):
    rng = np.random.default_rng(len(sizes))
    model = MLP.initialized(sizes, rng)
    for _, b in model.layers():
        b[...] = rng.normal(0, 0.1, b.shape)  # non-zero biases, so that they are checked too
    export.save_onnx(model, tmp_path / "model.onnx")
    x = rng.random((300, 784), dtype=np.float32)
    logits, probs = run_onnx(onnxruntime, tmp_path / "model.onnx", x)
    np.testing.assert_allclose(logits, model.logits(x), rtol=0, atol=1e-5)
    np.testing.assert_allclose(probs, model.probabilities(x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


def test_onnxruntime_agrees_with_fastmlp_on_all_10000_mnist_test_images(onnxruntime, mnist, mnist_model, tmp_path):
    _, model = mnist_model
    export.save_onnx(model, tmp_path / "model.onnx")
    x = mnist.test_images.astype(np.float32) / 255  # the input is pixels scaled to [0, 1]
    logits, _ = run_onnx(onnxruntime, tmp_path / "model.onnx", x)
    assert logits.shape == (10_000, 10)
    np.testing.assert_array_equal(logits.argmax(axis=1), model.predict(mnist.test_images))
    # float32 round-off of two GEMM libraries: a few units in the last place of logits up to ~20
    np.testing.assert_allclose(logits, model.logits(mnist.test_images), rtol=1e-6, atol=1e-5)


def test_the_graph_is_gemm_relu_softmax_with_a_free_batch_dimension(onnxruntime):
    import onnx
    proto = export.to_onnx(MLP([784, 32, 16, 10]), {"epoch": 3})
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]
    assert proto.opset_import[0].version == export.OPSET == 17
    assert proto.ir_version == export.IR_VERSION

    def shape(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    (x,) = proto.graph.input
    assert x.name == "x" and x.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and shape(x) == ["N", 784]
    assert [(o.name, shape(o)) for o in proto.graph.output] == [("logits", ["N", 10]), ("probabilities", ["N", 10])]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["sizes"]) == [784, 32, 16, 10]
    assert json.loads(props["fastmlp_metadata"]) == {"epoch": 3}


def test_export_replaces_a_file_only_once_the_new_one_is_complete(onnxruntime, tmp_path, monkeypatch):
    import onnx
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")

    def fail(proto, path):
        with open(path, "wb") as fh:
            fh.write(b"half a mod")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", fail)
    with pytest.raises(UsageError, match="model.onnx: cannot write"):
        export.save_onnx(MLP([784, 8, 10]), target)
    assert target.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


def test_without_the_onnx_package_export_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'fastmlp\[onnx\]'"):
        export.to_onnx(MLP([784, 8, 10]))


def test_without_an_extra_its_tests_skip_and_under_require_extras_they_fail(monkeypatch):
    from helpers import import_extra
    monkeypatch.delenv("FASTMLP_REQUIRE_EXTRAS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install 'fastmlp\[onnx\]'"):
        import_extra("fastmlp_absent_module", "onnx")
    monkeypatch.setenv("FASTMLP_REQUIRE_EXTRAS", "1")  # as .ci/run sets it
    with pytest.raises(pytest.fail.Exception, match="FASTMLP_REQUIRE_EXTRAS=1"):
        import_extra("fastmlp_absent_module", "onnx")
