"""The fake-quantized routing network, bit-identical to the integer engine in eval mode.

Per stage, with every scale a power of 2 and e_x the exponent of scale 2^e_x:

    pins (0/1, exponent 0)
      -> conv with int weights (exponent e_w) and an int16 or int32 bias (exponent e_in + e_w)
      -> LeakyReLU with slope 655 / 2^16 (hidden stages only)
      -> int8 activation quantizer (hidden stages) or int16 score quantizer (last stage)

In eval mode the forward pass runs in float64. Every value is then an integer times a power
of 2 with fewer than 53 significant bits. Inputs, weights and biases are small integers, the
convolution sums stay below 2^31 in magnitude, and the LeakyReLU product needs 31 + 10 bits.
So each step is exact, the rounding in each quantizer sees the same number as the integer
engine's rounding right shift, and both round halves to even. Training mode runs in float32
for speed and is not bit-exact.

A bias is stored as int16 when every bias of its stage rounds into the int16 range at the
accumulator scale, and as int32 (the accumulator's type) otherwise. With more than 8 weight
bits the accumulator scale is finer, and int16 would clip most biases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeproute.quant.calibrate import weight_threshold
from deeproute.quant.fold import FoldedFCN
from deeproute.quant.quantizer import Quantizer, check_bits, integer_range, quantize_to_exponent

BIAS_BIT_WIDTHS = (16, 32)  # int16 where every bias of the stage fits, else int32
SLOPE_SHIFT = 16  # the LeakyReLU slope is a fixed-point constant with 16 fractional bits
INPUT_EXPONENT = 0  # the pin map is exactly 0 or 1


def slope_numerator(negative_slope: float) -> int:
    """Return round(slope * 2^16), the integer LeakyReLU slope (655 for 0.01)."""
    numerator = round(negative_slope * 2**SLOPE_SHIFT)
    if not 0 <= numerator < 2**SLOPE_SHIFT:
        raise ValueError(f"LeakyReLU slope {negative_slope} does not fit 16 fractional bits in [0, 1)")
    return numerator


class QuantizedFCN(nn.Module):
    """Fake-quantized FoldedFCN with TQT quantizers for every weight and activation tensor.

    Attributes:
        weights, biases: float32 master copies, trained in TQT retraining.
        weight_quantizers: signed `weight_bits` quantizers, one per stage.
        output_quantizers: signed `activation_bits` quantizers after each hidden stage's
            LeakyReLU, and a signed `score_bits` quantizer on the scores.
    """

    def __init__(
        self,
        folded: FoldedFCN,
        weight_bits: int = 8,
        activation_bits: int = 8,
        score_bits: int = 16,
    ):
        super().__init__()
        self.weight_bits = check_bits(weight_bits, "weight bit width")
        self.activation_bits = check_bits(activation_bits, "activation bit width")
        self.score_bits = check_bits(score_bits, "score bit width")
        self.weights = nn.ParameterList(nn.Parameter(w.detach().clone()) for w in folded.weights)
        self.biases = nn.ParameterList(nn.Parameter(b.detach().clone()) for b in folded.biases)
        self.paddings = list(folded.paddings)
        self.grid = folded.grid
        self.negative_slope = folded.negative_slope
        self.slope_numerator = slope_numerator(folded.negative_slope)

        self.weight_quantizers = nn.ModuleList(
            Quantizer(self.weight_bits, signed=True, threshold=float(w.detach().abs().max())) for w in self.weights
        )
        stages = len(self.weights)
        self.output_quantizers = nn.ModuleList(
            Quantizer(self.activation_bits if index < stages - 1 else self.score_bits, signed=True)
            for index in range(stages)
        )

    def set_output_thresholds(self, thresholds: list[float]) -> None:
        """Set the activation and score thresholds, e.g. from calibrate_activations."""
        if len(thresholds) != len(self.output_quantizers):
            raise ValueError(f"expected {len(self.output_quantizers)} thresholds, got {len(thresholds)}")
        for quantizer, threshold in zip(self.output_quantizers, thresholds):
            quantizer.set_threshold(threshold)

    def set_weight_thresholds(self, thresholds: list[float]) -> None:
        """Set the weight thresholds, e.g. from calibrate.weight_threshold."""
        if len(thresholds) != len(self.weight_quantizers):
            raise ValueError(f"expected {len(self.weight_quantizers)} thresholds, got {len(thresholds)}")
        for quantizer, threshold in zip(self.weight_quantizers, thresholds):
            quantizer.set_threshold(threshold)

    def threshold_parameters(self) -> list[nn.Parameter]:
        return [q.log2_threshold for q in (*self.weight_quantizers, *self.output_quantizers)]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [*self.weights, *self.biases]

    def exponents(self) -> list[dict]:
        """Return each stage's input, weight, accumulator and output exponents."""
        stages = []
        input_exponent = INPUT_EXPONENT
        for weight_quantizer, output_quantizer in zip(self.weight_quantizers, self.output_quantizers):
            weight_exponent = weight_quantizer.exponent()
            output_exponent = output_quantizer.exponent()
            stages.append(
                {
                    "input": input_exponent,
                    "weight": weight_exponent,
                    "accumulator": input_exponent + weight_exponent,
                    "output": output_exponent,
                }
            )
            input_exponent = output_exponent
        return stages

    def stage_outputs(self, pins: torch.Tensor) -> list[torch.Tensor]:
        """Return each stage's fake-quantized output; the last is the scores (N, 16, H, W)."""
        dtype = torch.float32 if self.training else torch.float64
        slope = self.slope_numerator / 2**SLOPE_SHIFT  # exact in float32 and float64
        x = pins.to(dtype)
        input_exponent = INPUT_EXPONENT
        outputs = []
        last = len(self.weights) - 1
        for index in range(len(self.weights)):
            weight_quantizer = self.weight_quantizers[index]
            output_quantizer = self.output_quantizers[index]
            weight = weight_quantizer(self.weights[index].to(dtype))
            accumulator_exponent = input_exponent + weight_quantizer.exponent()
            bias_bits = bias_bit_width(self.biases[index], accumulator_exponent)
            bias = quantize_to_exponent(self.biases[index].to(dtype), accumulator_exponent, bias_bits)

            top, bottom, left, right = self.paddings[index]
            z = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias)  # (N, C_out, H, W)
            if index < last:
                z = torch.where(z >= 0, z, z * slope)
            x = output_quantizer(z)
            outputs.append(x)
            input_exponent = output_quantizer.exponent()
        return outputs

    def forward(self, pins: torch.Tensor) -> torch.Tensor:
        return self.stage_outputs(pins)[-1]

    def bias_bit_widths(self) -> list[int]:
        """Return each stage's bias bit width, 16 or 32 (see bias_bit_width)."""
        return [
            bias_bit_width(bias, stage["accumulator"]) for bias, stage in zip(self.biases, self.exponents())
        ]

    def clipped_biases(self) -> list[int]:
        """Return, per stage, how many biases fall outside the range of their bit width and are clipped."""
        counts = []
        for bias, stage, bits in zip(self.biases, self.exponents(), self.bias_bit_widths()):
            low, high = integer_range(bits, signed=True)
            integers = _bias_integers(bias, stage["accumulator"])
            counts.append(int(((integers < low) | (integers > high)).sum()))
        return counts


def bias_bit_width(bias: torch.Tensor, accumulator_exponent: int) -> int:
    """Return 16 if every bias rounds into the int16 range at scale 2^accumulator_exponent, else 32."""
    integers = _bias_integers(bias, accumulator_exponent)
    low, high = integer_range(BIAS_BIT_WIDTHS[0], signed=True)
    fits = bool(((integers >= low) & (integers <= high)).all())
    return BIAS_BIT_WIDTHS[0] if fits else BIAS_BIT_WIDTHS[1]


def _bias_integers(bias: torch.Tensor, accumulator_exponent: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.round(bias.detach().double() / 2.0**accumulator_exponent)

def build_quantized_model(
    folded: FoldedFCN,
    thresholds: list[float],
    weight_bits: int = 8,
    activation_bits: int = 8,
    weight_calibration: str = "max",
) -> QuantizedFCN:
    """Return a QuantizedFCN in eval mode with the given output thresholds.

    Weight thresholds come from `weight_calibration`: "max" (max |w|) or "mse".
    """
    model = QuantizedFCN(folded, weight_bits=weight_bits, activation_bits=activation_bits)
    model.set_weight_thresholds([weight_threshold(w, model.weight_bits, weight_calibration) for w in model.weights])
    model.set_output_thresholds(thresholds)
    model.eval()
    return model
