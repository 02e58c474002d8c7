"""Write the integer routing network as an ONNX model in QDQ form.

Every tensor that the integer engine stores as integers appears as QuantizeLinear/DequantizeLinear
with the same power-of-2 scale and a zero point of 0:

    pins -> Q/DQ (uint8, scale 1)
         -> [Conv(DQ(int8 w, 2^e_w), DQ(int32 b, 2^(e_in+e_w))) -> LeakyRelu -> Q/DQ (int8)] x 14
         -> Conv -> Q/DQ (int16 scores) -> scores

int16 QuantizeLinear needs opset 21. The weights of a model with fewer than 8 weight bits
are still stored as int8, with values inside the narrower range.

NOTE: a runtime that keeps these operators in float32 computes the convolutions exactly
for 8-bit weights and int16 biases (integers times powers of 2 with sums below 2^24). With
wider weights or int32 biases the sums can exceed 2^24 and float32 Conv rounds them.
LeakyRelu multiplies by 655 / 2^16
in float32, which can round a product of more than 24 significant bits. An activation
whose exact value lies next to a rounding boundary can then differ by one step from the
integer engine's. QuantizeLinear itself rounds halves to even, as the engine does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deeproute.quant.export import write_atomically
from deeproute.quant.integer import IntegerFCN, storage_dtype

OPSET = 21
INPUT_NAME = "pins"
OUTPUT_NAME = "scores"


def build_onnx(engine: IntegerFCN):
    """Return an onnx.ModelProto computing `engine`'s scores in float, QDQ-annotated."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    def quantize_dequantize(source: str, name: str, exponent: int, zero_point: np.ndarray) -> str:
        scale = constant(f"{name}.scale", np.array(2.0**exponent, dtype=np.float32))
        zero = constant(f"{name}.zero_point", zero_point)
        nodes.append(helper.make_node("QuantizeLinear", [source, scale, zero], [f"{name}.q"], name=f"{name}.quantize"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", scale, zero], [name], name=f"{name}.dequantize"))
        return name

    def dequantize(name: str, integers: np.ndarray, exponent: int) -> str:
        stored = constant(f"{name}.integers", integers)
        scale = constant(f"{name}.scale", np.array(2.0**exponent, dtype=np.float32))
        zero = constant(f"{name}.zero_point", np.zeros((), dtype=integers.dtype))
        nodes.append(helper.make_node("DequantizeLinear", [stored, scale, zero], [name], name=f"{name}.dequantize"))
        return name

    x = quantize_dequantize(INPUT_NAME, "input", 0, np.zeros((), dtype=np.uint8))
    last = len(engine.stages) - 1
    for index, stage in enumerate(engine.stages):
        prefix = f"stage{index}"
        weight = dequantize(f"{prefix}.weight", stage.weight.astype(storage_dtype(stage.weight_bits)), stage.weight_exponent)
        bias = dequantize(f"{prefix}.bias", stage.bias.astype(np.int32), stage.accumulator_exponent)
        top, bottom, left, right = stage.padding
        nodes.append(
            helper.make_node(
                "Conv", [x, weight, bias], [f"{prefix}.conv"], name=f"{prefix}.conv",
                kernel_shape=list(stage.weight.shape[2:]), pads=[top, left, bottom, right],
            )
        )
        z = f"{prefix}.conv"
        if stage.activation == "leaky_relu":
            slope = engine.slope_numerator / 2**engine.slope_shift  # exact in float32
            nodes.append(helper.make_node("LeakyRelu", [z], [f"{prefix}.leaky_relu"], name=f"{prefix}.leaky_relu", alpha=slope))
            z = f"{prefix}.leaky_relu"
        zero_dtype = storage_dtype(stage.output_bits)
        output_name = OUTPUT_NAME if index == last else f"{prefix}.output"
        x = quantize_dequantize(z, output_name, stage.output_exponent, np.zeros((), dtype=zero_dtype))

    height, width = engine.grid
    graph = helper.make_graph(
        nodes,
        "deeproute_int8",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", engine.stages[-1].weight.shape[0], height, width])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="deeproute")
    model.doc_string = "Routing FCN with power-of-2 QDQ scales; 'on' where scores[2l+1] > scores[2l]."
    onnx.checker.check_model(model)
    return model


def save_onnx(engine: IntegerFCN, path: str | os.PathLike) -> Path:
    """Write `engine` as an ONNX model to `path`."""
    path = Path(path)
    write_atomically(path, build_onnx(engine).SerializeToString())
    return path
