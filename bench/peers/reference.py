"""The bundled model's own weights, read out of the .tflite, as a float reference in plain numpy and
as an ONNX graph, so the gateway's scoring path can be timed against other runtimes on exactly
the same network (not a retrained look-alike).

The model is dense(features->64, relu) -> dense(64->32, relu) -> dense(32->1) -> clip -> sigmoid,
full int8 with per-channel weight scales (checked: three dense layers are required). The references dequantise the weights and biases and run in
float32 on the standardised row (mean/scale from the model's manifest), so they differ from the
int8 interpreter only by its activation rounding; the benchmark reports that difference.
"""

from __future__ import annotations

import math

import numpy as np

LAYERS = 3


def extract_weights(tflite_path, manifest: dict) -> dict[str, np.ndarray]:
    """Dequantised weights (w{i}: [out, in]), biases (b{i}), clip bounds and standardisation."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path))
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}

    def value(index: int) -> np.ndarray:
        d = details[index]
        q = it.get_tensor(index).astype(np.float64)
        scales = d["quantization_parameters"]["scales"]
        zeros = d["quantization_parameters"]["zero_points"]
        if len(scales) > 1:  # per output channel, along axis 0
            shape = (-1,) + (1,) * (q.ndim - 1)
            return (q - zeros.reshape(shape)) * scales.reshape(shape)
        return (q - zeros[0]) * scales[0]

    ops = [op for op in it._get_ops_details() if op["op_name"] in ("FULLY_CONNECTED", "MINIMUM", "MAXIMUM")]
    dense = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    if len(dense) != LAYERS:
        raise ValueError(f"{tflite_path}: expected {LAYERS} dense layers, found {len(dense)}")
    out = {}
    for i, op in enumerate(dense, 1):
        _, w, b = op["inputs"]
        out[f"w{i}"] = value(w).astype(np.float32)
        out[f"b{i}"] = value(b).astype(np.float32)
    hi = next(op for op in ops if op["op_name"] == "MINIMUM")["inputs"][1]
    lo = next(op for op in ops if op["op_name"] == "MAXIMUM")["inputs"][1]
    out["clip"] = np.array([float(value(lo)), float(value(hi))], np.float32)
    out["mean"] = np.asarray(manifest["mean"], np.float32)
    out["scale"] = np.asarray(manifest["scale"], np.float32)
    return out


class NumpyScorer:
    """Float32 forward pass of the same weights; ``score(row)`` like ``FraudModel.score``."""

    def __init__(self, weights: dict):
        self.w = [np.ascontiguousarray(weights[f"w{i}"].T) for i in range(1, LAYERS + 1)]
        self.b = [weights[f"b{i}"] for i in range(1, LAYERS + 1)]
        self.lo, self.hi = (float(v) for v in weights["clip"])
        self.inv_scale = (1.0 / weights["scale"]).astype(np.float32)
        self.mean = weights["mean"]

    def score(self, row) -> float:
        x = (np.asarray(row, np.float32) - self.mean) * self.inv_scale
        x = np.maximum(x @ self.w[0] + self.b[0], 0.0)
        x = np.maximum(x @ self.w[1] + self.b[1], 0.0)
        z = float((x @ self.w[2] + self.b[2])[0])
        z = min(self.hi, max(self.lo, z))
        return 1.0 / (1.0 + math.exp(-z))


def onnx_model(weights: dict) -> bytes:
    """The same network as an ONNX graph (opset 17): standardise, three Gemm, Relu, Clip, Sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(weights["mean"].reshape(1, -1), "mean"),
             numpy_helper.from_array((1.0 / weights["scale"]).astype(np.float32).reshape(1, -1), "inv_scale"),
             numpy_helper.from_array(weights["clip"][0:1].reshape(()), "clip_lo"),
             numpy_helper.from_array(weights["clip"][1:2].reshape(()), "clip_hi")]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]),
             helper.make_node("Mul", ["centred", "inv_scale"], ["h0"])]
    for i in range(1, LAYERS + 1):
        inits += [numpy_helper.from_array(weights[f"w{i}"], f"w{i}"), numpy_helper.from_array(weights[f"b{i}"], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [f"h{i - 1}", f"w{i}", f"b{i}"], [f"g{i}"], transB=1))
        if i < LAYERS:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"h{i}"]))
    nodes += [helper.make_node("Clip", [f"g{LAYERS}", "clip_lo", "clip_hi"], ["logit"]),
              helper.make_node("Sigmoid", ["logit"], ["score"])]
    n = weights["w1"].shape[1]
    graph = helper.make_graph(nodes, "counterguard", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="counterguard-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
