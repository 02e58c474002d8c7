"""Integer-only inference of the quantized routing network in numpy, and its loader.

Per stage, on integers only:

    acc = conv(x, w) + b                         int8 x int8 -> int32, int16 bias
    y   = acc >> k                               for acc >= 0, where k = e_out - e_in - e_w
    y   = (acc * 655) >> (k + 16)                for acc < 0, hidden stages (LeakyReLU)
    y   = clip(y, -128, 127)                     int16 range for the scores

where ">>" is a rounding right shift with ties to even, and a negative shift is a left shift.
The LeakyReLU product and its shift fuse into one rounding, so a negative activation is
rounded once, not once at the accumulator scale and again at the output scale. The
comparator then sets a layer 'on' where score 2l+1 is greater than score 2l (ties are 'off').

The file format read by `load_int8_engine` is described in docs/int8-format.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeproute.errors import InputError

logger = logging.getLogger(__name__)

FORMAT_NAME = "deeproute-int8"
FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
ARRAYS_NAME = "model.npz"
INT32_MAX = 2**31 - 1


def rounding_right_shift(values: np.ndarray, shift: int) -> np.ndarray:
    """Return round(values / 2^shift) with ties to even, as int64; shift <= 0 shifts left.

    Adding 2^(shift-1) - 1 plus the lowest bit of the quotient before the arithmetic
    (flooring) shift rounds up above the half, down below it, and at the half only
    when the quotient is odd.
    """
    values = values.astype(np.int64, copy=False)
    if shift <= 0:
        return values << -shift
    quotient_bit = (values >> shift) & 1
    return (values + ((1 << (shift - 1)) - 1) + quotient_bit) >> shift


def storage_dtype(bits: int) -> np.dtype:
    """Return the smallest signed integer dtype for `bits`-bit values."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


@dataclass
class IntegerStage:
    """One convolution stage of the integer network.

    Attributes:
        weight: (C_out, C_in, kh, kw) integers within the signed `weight_bits` range.
        bias: (C_out,) int16 at the accumulator scale 2^(input_exponent + weight_exponent).
        padding: (top, bottom, left, right) zero padding, PyTorch's padding="same".
        activation: "leaky_relu" for hidden stages, "none" for the score stage.
    """

    weight: np.ndarray
    bias: np.ndarray
    padding: tuple[int, int, int, int]
    weight_bits: int
    input_exponent: int
    weight_exponent: int
    output_exponent: int
    output_bits: int
    activation: str

    @property
    def accumulator_exponent(self) -> int:
        return self.input_exponent + self.weight_exponent

    @property
    def shift(self) -> int:
        """Rounding right shift from the accumulator to the output scale."""
        return self.output_exponent - self.accumulator_exponent


@dataclass
class IntegerFCN:
    """The routing network in integer arithmetic: `scores` and `predict` on uint8 pin maps."""

    stages: list[IntegerStage]
    grid: tuple[int, int]
    slope_numerator: int = 655
    slope_shift: int = 16
    metadata: dict = field(default_factory=dict)

    @property
    def score_exponent(self) -> int:
        """Exponent e of the score scale: float scores are integer scores * 2^e."""
        return self.stages[-1].output_exponent

    def scores(self, pins: np.ndarray) -> np.ndarray:
        """Return int32 (N, 16, H, W) integer scores for uint8 (N, 1, H, W) pin maps of 0/1."""
        return self.stage_outputs(pins)[-1]

    def predict(self, pins: np.ndarray) -> np.ndarray:
        """Return bool (N, 8, H, W): True where a layer's 'on' score beats its 'off' score."""
        scores = self.scores(pins)
        return scores[:, 1::2] > scores[:, 0::2]

    def stage_outputs(self, pins: np.ndarray) -> list[np.ndarray]:
        """Return each stage's int32 (N, C, H, W) output; the last is the scores."""
        x = self._check_pins(pins)[:, 0]  # (N, H, W), 0/1
        outputs = []
        for index, stage in enumerate(self.stages):
            if index == 0:
                accumulator = _conv_binary(x, stage.weight, stage.padding)
            else:
                accumulator = _conv_im2col(x, stage.weight, stage.padding)
            accumulator += stage.bias.astype(np.int32)
            x = self._requantize(accumulator, stage)  # (N, H, W, C), channels last
            outputs.append(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.int32))
        return outputs

    def _requantize(self, accumulator: np.ndarray, stage: IntegerStage) -> np.ndarray:
        """Map int32 accumulators to the stage's output integers, in the smallest dtype."""
        if stage.activation == "leaky_relu":
            # Positives are multiplied by 2^16 and shifted 16 further, which equals shifting
            # them by `shift`; negatives get the slope numerator. One rounding for both.
            multiplier = np.where(accumulator < 0, self.slope_numerator, 1 << self.slope_shift)
            scaled = accumulator.astype(np.int64) * multiplier  # at most 31 + 16 bits
            output = rounding_right_shift(scaled, stage.shift + self.slope_shift)
        else:
            output = rounding_right_shift(accumulator, stage.shift)
        low, high = -(2 ** (stage.output_bits - 1)), 2 ** (stage.output_bits - 1) - 1
        return np.clip(output, low, high).astype(storage_dtype(stage.output_bits))

    def _check_pins(self, pins: np.ndarray) -> np.ndarray:
        pins = np.asarray(pins)
        height, width = self.grid
        if pins.ndim != 4 or pins.shape[1] != 1 or pins.shape[2:] != (height, width):
            raise InputError(f"pin maps must have shape (N, 1, {height}, {width}), got {pins.shape}")
        if pins.size and (pins.min() < 0 or pins.max() > 1):
            raise InputError(f"pin maps must hold only 0 and 1, got values in [{pins.min()}, {pins.max()}]")
        return pins


def _conv_binary(pins: np.ndarray, weight: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    """Convolve (N, H, W) maps of 0/1 with a one-input-channel kernel by adding a window per pin.

    A pin at (i, j) adds w[c, top + i - y, left + j - x] to output (y, x). With the kernel
    flipped, that is a (H, W) window of it, so the work is pins x C x H x W additions instead
    of H x W x C x kh x kw multiplications. Returns int32 (N, H, W, C).
    """
    count, height, width = pins.shape
    _, _, rows, columns = weight.shape
    top, _, left, _ = padding
    flipped = weight[:, 0, ::-1, ::-1].transpose(1, 2, 0).astype(np.int32)  # (kh, kw, C)
    # Zero rows and columns around the flipped kernel keep every window inside the array.
    framed = np.pad(flipped, ((height - 1, height - 1), (width - 1, width - 1), (0, 0)))
    accumulator = np.zeros((count, height, width, weight.shape[0]), dtype=np.int32)
    sample, row, column = np.nonzero(pins)
    first_rows = rows - 1 - top - row + height - 1  # window origin in `framed`
    first_columns = columns - 1 - left - column + width - 1
    for n, r, c in zip(sample, first_rows, first_columns):
        accumulator[n] += framed[r : r + height, c : c + width]
    return accumulator


def _conv_im2col(x: np.ndarray, weight: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    """Convolve (N, H, W, C_in) int8/int16 with (C_out, C_in, kh, kw) weights into int32 (N, H, W, C_out)."""
    count, height, width, in_channels = x.shape
    out_channels, _, rows, columns = weight.shape
    top, bottom, left, right = padding
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (rows, columns), axis=(1, 2))  # (N, H, W, C_in, kh, kw)
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, rows * columns * in_channels)  # (N*H*W, kh*kw*C_in)
    kernel = weight.transpose(0, 2, 3, 1).reshape(out_channels, -1)  # (C_out, kh*kw*C_in)
    # Multiply-accumulate in int32 from int8 (or int16) operands. On numpy 2.4 einsum's
    # integer loop runs several times faster here than matmul's.
    product = np.einsum("pk,ok->po", patches, kernel, dtype=np.int32, casting="safe")
    return product.reshape(count, height, width, out_channels)


def load_int8_engine(directory: str | os.PathLike) -> IntegerFCN:
    """Load an exported integer model from `directory` (model.json + model.npz).

    Raises InputError when the folder, a file or a field is missing or inconsistent.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    arrays_path = directory / ARRAYS_NAME
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory; pass the folder written by `deeproute quantize`")
    for path in (manifest_path, arrays_path):
        if not path.is_file():
            raise InputError(f"{path}: not found; {directory} is not an integer model folder")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{manifest_path}: not valid JSON ({error})") from error
    try:
        with np.load(arrays_path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{arrays_path}: not a readable npz archive ({error})") from error
    return model_from_manifest(manifest, arrays, manifest_path)


def model_from_manifest(manifest: dict, arrays: dict[str, np.ndarray], source: str | os.PathLike = "manifest") -> IntegerFCN:
    """Build and validate an IntegerFCN from a parsed manifest and its arrays."""
    try:
        return _parse_manifest(manifest, arrays, source)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{source}: invalid integer model manifest ({type(error).__name__}: {error})") from error


def _parse_manifest(manifest: dict, arrays: dict[str, np.ndarray], source) -> IntegerFCN:
    if manifest.get("format") != FORMAT_NAME:
        raise InputError(f"{source}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{source}: format version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})"
        )
    if manifest["rounding"] != "half_to_even":
        raise InputError(f"{source}: rounding {manifest['rounding']!r} is not supported (expected 'half_to_even')")
    if int(manifest["input"]["exponent"]) != 0:
        raise InputError(f"{source}: input exponent must be 0 (pin maps of 0 and 1), got {manifest['input']['exponent']}")
    height, width = (int(v) for v in manifest["grid"])
    leaky = manifest["leaky_relu"]
    slope_numerator, slope_shift = int(leaky["numerator"]), int(leaky["shift"])
    if not 0 <= slope_numerator < 2**slope_shift:
        raise InputError(f"{source}: LeakyReLU slope {slope_numerator} / 2^{slope_shift} is not within [0, 1)")

    stages = []
    input_exponent = 0
    for index, entry in enumerate(manifest["stages"]):
        stage = _parse_stage(entry, arrays, input_exponent, source, index)
        stages.append(stage)
        input_exponent = stage.output_exponent
    _check_chain(stages, source)

    return IntegerFCN(
        stages=stages,
        grid=(height, width),
        slope_numerator=slope_numerator,
        slope_shift=slope_shift,
        metadata={key: manifest[key] for key in ("quantization", "source") if key in manifest},
    )


def _check_chain(stages: list[IntegerStage], source) -> None:
    """Raise InputError unless the stages form a routing network that fits int32 accumulators."""
    if not stages:
        raise InputError(f"{source}: the model has no stages")
    if stages[0].weight.shape[1] != 1:
        raise InputError(f"{source}: the first stage must take 1 input channel, got {stages[0].weight.shape[1]}")
    for previous, stage in zip(stages, stages[1:]):
        if stage.weight.shape[1] != previous.weight.shape[0]:
            raise InputError(f"{source}: stage channel counts do not chain ({previous.weight.shape} -> {stage.weight.shape})")
    expected = ["leaky_relu"] * (len(stages) - 1) + ["none"]
    if [stage.activation for stage in stages] != expected:
        raise InputError(f"{source}: activations must be leaky_relu for hidden stages and none for the scores")
    if stages[-1].weight.shape[0] % 2:
        raise InputError(f"{source}: the score stage needs an even number of channels, got {stages[-1].weight.shape[0]}")

    for index, stage in enumerate(stages):
        input_max = 1 if index == 0 else 2 ** (stages[index - 1].output_bits - 1)
        if accumulator_bound(stage, input_max) > INT32_MAX:
            raise InputError(f"{source}: stage {index} can overflow its int32 accumulator")


def _parse_stage(entry: dict, arrays: dict, input_exponent: int, source, index: int) -> IntegerStage:
    name = f"stage {index}"
    for key in (entry["weight"], entry["bias"]):
        if key not in arrays:
            raise InputError(f"{source}: {name} names array {key!r}, which the npz does not contain")
    weight, bias = arrays[entry["weight"]], arrays[entry["bias"]]
    weight_bits, output_bits = int(entry["weight_bits"]), int(entry["output_bits"])
    for field_name, bits in (("weight_bits", weight_bits), ("output_bits", output_bits)):
        if not 2 <= bits <= 16:
            raise InputError(f"{source}: {name} {field_name} must be within 2..16, got {bits}")

    expected_weight_dtype = storage_dtype(weight_bits)
    if weight.dtype != expected_weight_dtype or weight.ndim != 4:
        raise InputError(f"{source}: {name} weight must be a 4-D {expected_weight_dtype} array, got {weight.dtype} {weight.shape}")
    if bias.dtype != np.int16 or bias.shape != (weight.shape[0],):
        raise InputError(f"{source}: {name} bias must be int16 of shape ({weight.shape[0]},), got {bias.dtype} {bias.shape}")
    low, high = -(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1
    if weight.size and (weight.min() < low or weight.max() > high):
        raise InputError(f"{source}: {name} weights exceed the {weight_bits}-bit range [{low}, {high}]")
    if list(entry["kernel"]) != list(weight.shape[2:]):
        raise InputError(f"{source}: {name} kernel {entry['kernel']} does not match weight shape {weight.shape}")

    top, bottom, left, right = (int(v) for v in entry["padding"])
    rows, columns = weight.shape[2:]
    if min(top, bottom, left, right) < 0 or top + bottom != rows - 1 or left + right != columns - 1:
        raise InputError(f"{source}: {name} padding {entry['padding']} does not keep the size for a {rows}x{columns} kernel")
    if int(entry["input_exponent"]) != input_exponent:
        raise InputError(
            f"{source}: {name} input exponent {entry['input_exponent']} differs from the previous "
            f"output exponent {input_exponent}"
        )

    stage = IntegerStage(
        weight=weight,
        bias=bias,
        padding=(top, bottom, left, right),
        weight_bits=weight_bits,
        input_exponent=input_exponent,
        weight_exponent=int(entry["weight_exponent"]),
        output_exponent=int(entry["output_exponent"]),
        output_bits=output_bits,
        activation=str(entry["activation"]),
    )
    if int(entry["shift"]) != stage.shift:
        raise InputError(f"{source}: {name} shift {entry['shift']} differs from output - input - weight exponent {stage.shift}")
    return stage


def accumulator_bound(stage: IntegerStage, input_max: int) -> int:
    """Return the largest |accumulator| that inputs of magnitude <= `input_max` can produce."""
    per_channel = np.abs(stage.weight.astype(np.int64)).reshape(stage.weight.shape[0], -1).sum(axis=1)
    return int((per_channel * input_max + np.abs(stage.bias.astype(np.int64))).max())
