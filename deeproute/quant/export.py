"""Convert a QuantizedFCN to integers and write it as plain data: model.npz + model.json.

The npz contains only integer arrays (read with np.load(allow_pickle=False)). The JSON
manifest contains bit widths, exponents and shifts. docs/int8-format.md describes both.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from deeproute.errors import InputError
from deeproute.quant.integer import (
    ARRAYS_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    INT32_MAX,
    IntegerFCN,
    IntegerStage,
    accumulator_bound,
    bias_dtype,
    storage_dtype,
)
from deeproute.quant.qmodel import INPUT_EXPONENT, SLOPE_SHIFT, QuantizedFCN
from deeproute.quant.quantizer import integer_range

logger = logging.getLogger(__name__)


def to_integer_model(model: QuantizedFCN, metadata: dict | None = None) -> IntegerFCN:
    """Return the IntegerFCN that computes exactly what `model` computes in eval mode.

    Each stage's biases are int16 when they all fit, else int32. Biases outside the int32
    range are clipped, as the fake-quantized model clips them, and a warning gives the count.
    Raises InputError when an int32 accumulator could overflow.
    """
    stages = []
    exponents = model.exponents()
    last = len(exponents) - 1
    bias_bit_widths = model.bias_bit_widths()
    clipped = model.clipped_biases()
    for index, stage_exponents in enumerate(exponents):
        weight = model.weight_quantizers[index].integers(model.weights[index]).numpy()
        bias_bits = bias_bit_widths[index]
        bias_low, bias_high = integer_range(bias_bits, signed=True)
        with torch.no_grad():
            bias = torch.round(model.biases[index].double() / 2.0 ** stage_exponents["accumulator"])
        bias = bias.clamp(bias_low, bias_high).long().numpy()
        if clipped[index]:
            logger.warning(
                "stage %d: %d of %d biases exceed the int%d range at scale 2^%d and are clipped",
                index, clipped[index], bias.size, bias_bits, stage_exponents["accumulator"],
            )
        stage = IntegerStage(
            weight=weight.astype(storage_dtype(model.weight_bits)),
            bias=bias.astype(bias_dtype(bias_bits)),
            bias_bits=bias_bits,
            padding=tuple(model.paddings[index]),
            weight_bits=model.weight_bits,
            input_exponent=stage_exponents["input"],
            weight_exponent=stage_exponents["weight"],
            output_exponent=stage_exponents["output"],
            output_bits=model.output_quantizers[index].bits,
            activation="leaky_relu" if index < last else "none",
        )
        input_max = 1 if index == 0 else 2 ** (stages[-1].output_bits - 1)
        if accumulator_bound(stage, input_max) > INT32_MAX:
            raise InputError(f"stage {index} can overflow its int32 accumulator; use fewer weight bits")
        stages.append(stage)

    details = dict(metadata or {})
    details.setdefault("quantization", {})
    details["quantization"]["clipped_biases"] = clipped
    details["quantization"]["log2_thresholds"] = {
        "weights": [q.log2_threshold.item() for q in model.weight_quantizers],
        "outputs": [q.log2_threshold.item() for q in model.output_quantizers],
    }
    return IntegerFCN(
        stages=stages,
        grid=tuple(model.grid),
        slope_numerator=model.slope_numerator,
        slope_shift=SLOPE_SHIFT,
        metadata=details,
    )


def manifest_of(engine: IntegerFCN) -> tuple[dict, dict[str, np.ndarray]]:
    """Return the JSON manifest and the named arrays that describe `engine`."""
    arrays = {}
    stages = []
    for index, stage in enumerate(engine.stages):
        weight_name, bias_name = f"stage{index}.weight", f"stage{index}.bias"
        arrays[weight_name] = stage.weight
        arrays[bias_name] = stage.bias
        out_channels, in_channels, rows, columns = stage.weight.shape
        entry = {
            "weight": weight_name,
            "bias": bias_name,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "kernel": [rows, columns],
            "padding": list(stage.padding),
            "weight_bits": stage.weight_bits,
            "bias_bits": stage.bias_bits,
            "input_exponent": stage.input_exponent,
            "weight_exponent": stage.weight_exponent,
            "accumulator_exponent": stage.accumulator_exponent,
            "output_exponent": stage.output_exponent,
            "output_bits": stage.output_bits,
            "activation": stage.activation,
            "shift": stage.shift,
        }
        if stage.activation == "leaky_relu":
            entry["negative_shift"] = stage.shift + engine.slope_shift
        stages.append(entry)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "grid": list(engine.grid),
        "rounding": "half_to_even",
        "accumulator_bits": 32,
        "input": {"dtype": "uint8", "shape": ["N", 1, *engine.grid], "values": [0, 1], "exponent": INPUT_EXPONENT},
        "leaky_relu": {
            "numerator": engine.slope_numerator,
            "shift": engine.slope_shift,
            "slope": engine.slope_numerator / 2**engine.slope_shift,
        },
        "stages": stages,
        "scores": {
            "bits": engine.stages[-1].output_bits,
            "exponent": engine.score_exponent,
            "comparator": "layer l is on where score[2l+1] > score[2l]; ties are off",
        },
        **engine.metadata,
    }
    return manifest, arrays


def save_integer_model(engine: IntegerFCN, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write model.npz and model.json into `directory`, each through a temporary file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest, arrays = manifest_of(engine)

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    arrays_path = directory / ARRAYS_NAME
    manifest_path = directory / MANIFEST_NAME
    write_atomically(arrays_path, buffer.getvalue())
    write_atomically(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest_path, arrays_path


def write_atomically(path: Path, content: bytes) -> None:
    """Write `content` to `path` through a temporary file in the same folder."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
