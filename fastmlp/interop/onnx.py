"""Export a trained MLP to ONNX, for onnxruntime and other inference engines.

The graph, for layers ``l = 1..L`` with ``W_l`` (n_l, n_{l-1}) and ``b_l`` (n_l,) as
:mod:`fastmlp.training.model` stores them::

    x          float32 [N, n_0]   input, pixels already scaled to [0, 1]
    h_l = Relu(Gemm(h_{l-1}, W_l, b_l, transB=1))      = max(h_{l-1} @ W_l.T + b_l, 0),  h_0 = x
    logits     = Gemm(h_{L-1}, W_L, b_L, transB=1)      float32 [N, n_L]
    probabilities = Softmax(logits, axis=1)             float32 [N, n_L]

One ``Gemm`` node a layer (``transB=1`` takes W in its stored (n_out, n_in) layout, so the
weights are copied as they are), ``Relu`` between layers, ``Softmax`` at the end; ``N`` is a
free dimension. Opset :data:`OPSET`, IR version :data:`IR_VERSION`: loadable by onnxruntime
1.13 and later. The ``onnx`` package is needed (``pip install 'fastmlp[onnx]'``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..atomic import atomic_path
from ..errors import UsageError
from ..extras import require
from ..training.model import MLP
from ..version import __version__

OPSET = 17
IR_VERSION = 8  # the IR of opset 17 (onnx 1.12); newer onnx packages would write a newer one


def _onnx():
    return require("onnx", "onnx", "exporting to ONNX")


def to_onnx(model: MLP, metadata: dict | None = None, probabilities: bool = True):
    """The :class:`onnx.ModelProto` of ``model`` (see the module's docstring), checked by ``onnx.checker``.

    ``metadata`` (e.g. the training configuration from ``model.npz``) is kept in the model's
    ``metadata_props`` as JSON, with the layer sizes and fastmlp's version. Without
    ``probabilities`` (a regressor's identity output) the graph ends at the logits.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    sizes = model.sizes
    initializers, nodes = [], []
    inp = "x"
    n_layers = len(sizes) - 1
    for l, (W, b) in enumerate(model.layers(), start=1):
        last = l == n_layers
        initializers += [numpy_helper.from_array(np.ascontiguousarray(W, np.float32), f"W{l}"),
                         numpy_helper.from_array(np.ascontiguousarray(b, np.float32), f"b{l}")]
        z = "logits" if last else f"z{l}"
        nodes.append(helper.make_node("Gemm", [inp, f"W{l}", f"b{l}"], [z], name=f"linear{l}", transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [z], [f"h{l}"], name=f"relu{l}"))
            inp = f"h{l}"
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", sizes[-1]])]
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1))
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", sizes[-1]]))

    graph = helper.make_graph(
        nodes, "fastmlp_mlp",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        outputs=outputs,
        initializer=initializers,
        doc_string=f"fastmlp MLP {sizes}: x float32 [N, {sizes[0]}] scaled to [0, 1]",
    )
    proto = helper.make_model(graph, producer_name="fastmlp", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, {"sizes": json.dumps(sizes),
                                   "fastmlp_metadata": json.dumps(metadata or {}, sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(model: MLP, path: str | os.PathLike, metadata: dict | None = None, probabilities: bool = True) -> None:
    """Write :func:`to_onnx` of ``model`` to ``path`` atomically (a reader never sees half a file)."""
    onnx = _onnx()
    proto = to_onnx(model, metadata, probabilities)
    try:
        with atomic_path(path) as tmp:
            onnx.save_model(proto, os.fspath(tmp))
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
