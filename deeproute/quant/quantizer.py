"""The TQT quantizer: uniform, symmetric, per-tensor, power-of-2 scale, trained log2 threshold.

Jain, Gural, Wu & Dick (2019), "Trained Quantization Thresholds for Accurate and Efficient
Fixed-Point Inference of Deep Neural Networks". For b bits and threshold t,

    signed:    n = -2^(b-1), p = 2^(b-1) - 1, s = 2^ceil(log2 t) / 2^(b-1)
    unsigned:  n = 0,        p = 2^b - 1,     s = 2^ceil(log2 t) / 2^b
    q(x) = clip(round(x / s), n, p) * s

Rounding is round-half-to-even everywhere in deeproute (torch.round, ONNX QuantizeLinear and
the integer engine's rounding right shift all use it), so exact halves agree across all three.
The trainable parameter is log2 t. Ceil and round pass gradients straight through, which gives

    dq/d(log2 t) = s ln2 (round(x/s) - x/s)   where n <= round(x/s) <= p
                 = s ln2 n                     where round(x/s) < n
                 = s ln2 p                     where round(x/s) > p
    dq/dx        = 1 inside [n, p], 0 outside.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from deeproute.errors import InputError

logger = logging.getLogger(__name__)

MIN_BITS, MAX_BITS = 2, 16
FALLBACK_THRESHOLD = 1.0  # used for an all-zero tensor, whose values any scale represents exactly
LN2 = math.log(2.0)


def check_bits(bits: int, name: str = "bit width") -> int:
    """Return `bits` as an int, or raise InputError when it is outside 2..16."""
    if isinstance(bits, bool) or int(bits) != bits or not MIN_BITS <= bits <= MAX_BITS:
        raise InputError(f"{name} must be an integer within {MIN_BITS}..{MAX_BITS}, got {bits}")
    return int(bits)


def integer_range(bits: int, signed: bool) -> tuple[int, int]:
    """Return the (n, p) integer range of a `bits`-wide quantizer."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def ceil_log2(value: float) -> int:
    """Return ceil(log2(value)) for value > 0, exact for powers of 2.

    math.frexp splits value into m * 2^e with 0.5 <= m < 1 without rounding, so an exact
    power of 2 (m == 0.5) gives e - 1 rather than an integer a hair above it.
    """
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"ceil_log2 needs a positive finite value, got {value}")
    mantissa, exponent = math.frexp(value)
    return exponent - 1 if mantissa == 0.5 else exponent


def scale_exponent(log2_threshold: float, bits: int, signed: bool) -> int:
    """Return e with s = 2^e for a quantizer whose threshold is 2^log2_threshold."""
    return math.ceil(log2_threshold) - (bits - 1 if signed else bits)


def initial_log2_threshold(threshold: float) -> float:
    """Return the float32 log2 threshold whose ceil is exactly ceil_log2(threshold).

    A zero, negative or non-finite threshold (an all-zero tensor, an empty calibration range)
    falls back to 1.0 instead of taking the log of 0.
    """
    if not threshold > 0 or not math.isfinite(threshold):
        logger.warning("threshold %r is not positive and finite; using %g", threshold, FALLBACK_THRESHOLD)
        threshold = FALLBACK_THRESHOLD
    exact = ceil_log2(threshold)
    stored = float(torch.tensor(math.log2(threshold), dtype=torch.float32))
    if math.ceil(stored) != exact:
        # float32 rounding moved log2 t across an integer, so store the integer itself.
        stored = float(exact)
    return stored


class TQTQuantize(torch.autograd.Function):
    """Fake quantization q(x) with the TQT gradients for x and for log2 t."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, log2_threshold: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
        low, high = integer_range(bits, signed)
        exponent = scale_exponent(float(log2_threshold), bits, signed)
        scale = 2.0**exponent  # a Python float: an exact power of 2
        scaled = x / scale
        rounded = torch.round(scaled)  # half to even
        ctx.save_for_backward(scaled, rounded)
        ctx.scale = scale
        ctx.low, ctx.high = low, high
        return rounded.clamp(low, high) * scale

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        scaled, rounded = ctx.saved_tensors
        low, high, scale = ctx.low, ctx.high, ctx.scale
        clipped = rounded.clamp(low, high)
        inside = clipped == rounded

        grad_x = grad_output * inside

        # Below the range clipped is n and above it p, which are the outside gradients.
        grad_log2 = torch.where(inside, rounded - scaled, clipped)
        grad_log2 = (grad_output * grad_log2).sum() * (scale * LN2)
        return grad_x, grad_log2.reshape(1).to(grad_output.dtype), None, None


def fake_quantize(x: torch.Tensor, log2_threshold: torch.Tensor, bits: int, signed: bool = True) -> torch.Tensor:
    """Apply TQTQuantize; `log2_threshold` is a one-element tensor."""
    return TQTQuantize.apply(x, log2_threshold, bits, signed)


def quantize_to_exponent(x: torch.Tensor, exponent: int, bits: int, signed: bool = True) -> torch.Tensor:
    """Fake-quantize `x` at the fixed scale 2^exponent; the gradient to x is straight-through.

    Used for biases, whose scale is the product of the input and weight scales.
    """
    log2_threshold = exponent + (bits - 1 if signed else bits)
    fixed = torch.tensor([float(log2_threshold)], dtype=x.dtype, device=x.device)
    return TQTQuantize.apply(x, fixed, bits, signed)


class Quantizer(nn.Module):
    """A per-tensor TQT quantizer owning one trainable log2 threshold."""

    def __init__(self, bits: int, signed: bool = True, threshold: float = FALLBACK_THRESHOLD):
        super().__init__()
        self.bits = check_bits(bits)
        self.signed = signed
        self.log2_threshold = nn.Parameter(torch.tensor([initial_log2_threshold(threshold)]))

    def set_threshold(self, threshold: float) -> None:
        """Set the threshold from a calibrated value, keeping exact powers of 2 exact."""
        with torch.no_grad():
            self.log2_threshold.fill_(initial_log2_threshold(threshold))

    @property
    def range(self) -> tuple[int, int]:
        return integer_range(self.bits, self.signed)

    def exponent(self) -> int:
        """Return e with scale 2^e."""
        return scale_exponent(self.log2_threshold.item(), self.bits, self.signed)

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """Return the clipped integers round(x / s) as int64, without gradients."""
        low, high = self.range
        with torch.no_grad():
            return torch.round(x.double() / 2.0 ** self.exponent()).clamp(low, high).long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.log2_threshold.to(x.dtype), self.bits, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, exponent={self.exponent()}"
