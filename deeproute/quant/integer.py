"""Integer-only inference of the quantized routing network in numpy, and its loader.

Per stage, on integers only:

    acc = conv(x, w) + b                         int8 x int8 -> int32, int16 or int32 bias
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
import zipfile
import zlib
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

# Limits the loader enforces, so that every integer step of the engine fits int64.
MAX_GRID = 4096  # pixels per side
MAX_STAGES = 256
EXPONENT_RANGE = (-126, 127)  # the scale 2^e must be a normal float32, as ONNX stores it
SHIFT_RANGE = (-31, 31)  # acc << 31 and acc * 2^31 >> 62 both stay inside int64
MAX_SLOPE_SHIFT = 31  # acc * 2^31 needs 62 bits
BIAS_BITS = (16, 32)
ACTIVATIONS = ("leaky_relu", "none")


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
    """Return the smallest signed integer dtype for `bits`-bit values, up to 16 bits."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


def bias_dtype(bias_bits: int) -> np.dtype:
    """Return the dtype of a stage's biases: int16 or int32."""
    return np.dtype(np.int16) if bias_bits == 16 else np.dtype(np.int32)


@dataclass
class IntegerStage:
    """One convolution stage of the integer network.

    Attributes:
        weight: (C_out, C_in, kh, kw) integers within the signed `weight_bits` range.
        bias: (C_out,) int16 or int32 (`bias_bits`) at the accumulator scale
            2^(input_exponent + weight_exponent).
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
    bias_bits: int = 16

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

    Raises InputError, naming the file and the field, when the folder, a file, a field or
    an array is missing, has the wrong type or is outside its range.
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputError(f"{manifest_path}: not valid JSON ({error})") from error
    try:
        with np.load(arrays_path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise InputError(f"{arrays_path}: not a readable npz archive ({error}); export the model again") from error
    except KeyError as error:
        raise InputError(f"{arrays_path}: not a readable npz archive (damaged member list {error})") from error
    return model_from_manifest(manifest, arrays, manifest_path, arrays_path)


def model_from_manifest(
    manifest, arrays: dict[str, np.ndarray], source: str | os.PathLike = "manifest", arrays_source: str | os.PathLike = "arrays"
) -> IntegerFCN:
    """Build and validate an IntegerFCN from a parsed manifest and its arrays.

    Raises InputError naming `source` (the manifest) or `arrays_source` and the field.
    """
    try:
        return _parse_manifest(manifest, arrays, source, arrays_source)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        if isinstance(error, InputError):
            raise
        # NOTE: the checks in _parse_manifest should leave nothing for this to catch; it
        # keeps an unforeseen manifest from ending in a traceback.
        raise InputError(f"{source}: invalid integer model manifest ({type(error).__name__}: {error})") from error


def _parse_manifest(manifest, arrays: dict[str, np.ndarray], source, arrays_source) -> IntegerFCN:
    fields = _Fields(manifest, "", source)
    if fields.raw("format") != FORMAT_NAME:
        raise InputError(f"{source}: format is {fields.raw('format')!r}, expected {FORMAT_NAME!r}")
    version = fields.raw("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise InputError(f"{source}: format version {version!r} is not supported (expected {FORMAT_VERSION})")
    fields.choice("rounding", ("half_to_even",))
    fields.integer("accumulator_bits", 32, 32)
    height, width = fields.integers("grid", 2, 1, MAX_GRID)
    model_input = fields.object("input")
    model_input.integer("exponent", 0, 0)
    model_input.choice("dtype", ("uint8",))

    leaky = fields.object("leaky_relu")
    slope_shift = leaky.integer("shift", 0, MAX_SLOPE_SHIFT)
    slope_numerator = leaky.integer("numerator", 0, 2**slope_shift - 1)
    if "slope" in leaky.value and leaky.value["slope"] != slope_numerator / 2**slope_shift:
        raise InputError(f"{source}: leaky_relu.slope must equal numerator / 2^shift = {slope_numerator / 2**slope_shift}")

    entries = fields.array("stages", 1, MAX_STAGES)
    stages = []
    input_exponent = 0
    for index in range(len(entries)):
        entry = _Fields(entries[index], f"stages[{index}]", source)
        stage = _parse_stage(entry, arrays, input_exponent, slope_shift, arrays_source)
        stages.append(stage)
        input_exponent = stage.output_exponent
    _check_chain(stages, source)

    named = {name for entry in entries for name in (entry["weight"], entry["bias"])}
    unnamed = sorted(set(arrays) - named)
    if unnamed:
        raise InputError(f"{arrays_source}: contains arrays that no stage of {source} names: {', '.join(unnamed)}")

    scores = fields.object("scores")
    scores.integer("bits", stages[-1].output_bits, stages[-1].output_bits)
    scores.integer("exponent", stages[-1].output_exponent, stages[-1].output_exponent)
    metadata = {}
    for key in ("quantization", "source"):
        if key in fields.value:
            metadata[key] = fields.object(key).value

    return IntegerFCN(
        stages=stages,
        grid=(height, width),
        slope_numerator=slope_numerator,
        slope_shift=slope_shift,
        metadata=metadata,
    )


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


class _Fields:
    """One JSON object of the manifest, read with type and range checks.

    Every error names the manifest file and the field's path, e.g. `stages[3].shift`.
    """

    def __init__(self, value, path: str, source):
        self.path = path
        self.source = source
        if not isinstance(value, dict):
            raise InputError(f"{source}: {path or 'the manifest'} must be a JSON object, got {_JSON_TYPES.get(type(value), type(value).__name__)}")
        self.value = value

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, expected: str) -> InputError:
        got = self.value[key]
        shown = repr(got) if len(repr(got)) <= 60 else _JSON_TYPES.get(type(got), type(got).__name__)
        return InputError(f"{self.source}: {self._name(key)} must be {expected}, got {shown}")

    def raw(self, key: str):
        if key not in self.value:
            raise InputError(f"{self.source}: field {self._name(key)} is missing")
        return self.value[key]

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            expected = f"the integer {low}" if low == high else f"an integer within {low}..{high}"
            raise self._fail(key, expected)
        return value

    def integers(self, key: str, length: int, low: int, high: int) -> list[int]:
        values = self.raw(key)
        valid = isinstance(values, list) and len(values) == length and all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values
        )
        if not valid:
            raise self._fail(key, f"a list of {length} integers within {low}..{high}")
        return values

    def choice(self, key: str, choices: tuple) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or value not in choices:
            raise self._fail(key, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def string(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string")
        return value

    def object(self, key: str) -> _Fields:
        return _Fields(self.raw(key), self._name(key), self.source)

    def array(self, key: str, low: int, high: int) -> list:
        value = self.raw(key)
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise self._fail(key, f"an array of {low} to {high} entries")
        return value


def _check_chain(stages: list[IntegerStage], source) -> None:
    """Raise InputError unless the stages form a routing network that fits int32 accumulators."""
    if stages[0].weight.shape[1] != 1:
        raise InputError(f"{source}: stages[0].in_channels must be 1 (the pin map), got {stages[0].weight.shape[1]}")
    for index, (previous, stage) in enumerate(zip(stages, stages[1:]), start=1):
        if stage.weight.shape[1] != previous.weight.shape[0]:
            raise InputError(
                f"{source}: stages[{index}].in_channels is {stage.weight.shape[1]}, "
                f"but stages[{index - 1}] has {previous.weight.shape[0]} output channels"
            )
    expected = ["leaky_relu"] * (len(stages) - 1) + ["none"]
    for index, (stage, activation) in enumerate(zip(stages, expected)):
        if stage.activation != activation:
            raise InputError(f"{source}: stages[{index}].activation must be {activation!r}, got {stage.activation!r}")
    if stages[-1].weight.shape[0] % 2:
        raise InputError(f"{source}: the score stage needs an even number of channels, got {stages[-1].weight.shape[0]}")

    for index, stage in enumerate(stages):
        input_max = 1 if index == 0 else 2 ** (stages[index - 1].output_bits - 1)
        if accumulator_bound(stage, input_max) > INT32_MAX:
            raise InputError(f"{source}: stages[{index}] can overflow its int32 accumulator")


def _parse_stage(entry: _Fields, arrays: dict, input_exponent: int, slope_shift: int, arrays_source) -> IntegerStage:
    """Read one stage entry and its two arrays; raise InputError on any mismatch."""
    source, name = entry.source, entry.path
    weight_name, bias_name = entry.string("weight"), entry.string("bias")
    for key, array_name in (("weight", weight_name), ("bias", bias_name)):
        if array_name not in arrays:
            raise InputError(f"{arrays_source}: array {array_name!r}, named by {source} field {name}.{key}, is missing")
    weight, bias = arrays[weight_name], arrays[bias_name]

    weight_bits = entry.integer("weight_bits", 2, 16)
    bias_bits = entry.raw("bias_bits")
    if isinstance(bias_bits, bool) or not isinstance(bias_bits, int) or bias_bits not in BIAS_BITS:
        raise entry._fail("bias_bits", "16 or 32")
    output_bits = entry.integer("output_bits", 2, 16)
    in_channels = entry.integer("in_channels", 1, 4096)
    out_channels = entry.integer("out_channels", 1, 4096)
    rows, columns = entry.integers("kernel", 2, 1, 2 * MAX_GRID + 1)
    top, bottom, left, right = entry.integers("padding", 4, 0, 2 * MAX_GRID)
    if top + bottom != rows - 1 or left + right != columns - 1:
        raise entry._fail("padding", f"a 'same' padding for a {rows}x{columns} kernel (top + bottom = {rows - 1}, left + right = {columns - 1})")

    expected_weight = (storage_dtype(weight_bits), (out_channels, in_channels, rows, columns))
    if (weight.dtype, weight.shape) != expected_weight:
        raise InputError(
            f"{arrays_source}: array {weight_name!r} must be {expected_weight[0]} of shape {expected_weight[1]} "
            f"as {source} field {name} declares, got {weight.dtype} {weight.shape}"
        )
    expected_bias = (bias_dtype(bias_bits), (out_channels,))
    if (bias.dtype, bias.shape) != expected_bias:
        raise InputError(
            f"{arrays_source}: array {bias_name!r} must be {expected_bias[0]} of shape {expected_bias[1]} "
            f"as {source} field {name} declares, got {bias.dtype} {bias.shape}"
        )
    low, high = -(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1
    if weight.size and (weight.min() < low or weight.max() > high):
        raise InputError(f"{arrays_source}: array {weight_name!r} exceeds the {weight_bits}-bit range [{low}, {high}] of {name}.weight_bits")

    entry.integer("input_exponent", input_exponent, input_exponent)
    weight_exponent = entry.integer("weight_exponent", *EXPONENT_RANGE)
    entry.integer("accumulator_exponent", input_exponent + weight_exponent, input_exponent + weight_exponent)
    output_exponent = entry.integer("output_exponent", *EXPONENT_RANGE)
    activation = entry.choice("activation", ACTIVATIONS)
    stage = IntegerStage(
        weight=weight,
        bias=bias,
        padding=(top, bottom, left, right),
        weight_bits=weight_bits,
        input_exponent=input_exponent,
        weight_exponent=weight_exponent,
        output_exponent=output_exponent,
        output_bits=output_bits,
        activation=activation,
        bias_bits=bias_bits,
    )
    if not SHIFT_RANGE[0] <= stage.shift <= SHIFT_RANGE[1]:
        raise InputError(
            f"{source}: {name} output_exponent - accumulator_exponent = {stage.shift} is outside "
            f"{SHIFT_RANGE[0]}..{SHIFT_RANGE[1]}, the shifts the engine supports"
        )
    entry.integer("shift", stage.shift, stage.shift)
    if activation == "leaky_relu":
        entry.integer("negative_shift", stage.shift + slope_shift, stage.shift + slope_shift)
    return stage


def accumulator_bound(stage: IntegerStage, input_max: int) -> int:
    """Return the largest |accumulator| that inputs of magnitude <= `input_max` can produce."""
    per_channel = np.abs(stage.weight.astype(np.int64)).reshape(stage.weight.shape[0], -1).sum(axis=1)
    return int((per_channel * input_max + np.abs(stage.bias.astype(np.int64))).max())
