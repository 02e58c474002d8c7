"""The TQT quantizer: scales, rounding and gradients on hand-worked values."""

import math

import pytest
import torch

from deeproute.errors import InputError
from deeproute.quant.quantizer import (
    Quantizer,
    ceil_log2,
    check_bits,
    fake_quantize,
    initial_log2_threshold,
    quantize_to_exponent,
)

LN2 = math.log(2.0)


def _elementwise(values, log2_threshold, bits, signed):
    """Return q(x), dq/dx and dq/d(log2 t) for each value, each gradient taken alone."""
    outputs, input_grads, threshold_grads = [], [], []
    for value in values:
        x = torch.tensor([value], dtype=torch.float64, requires_grad=True)
        log2_t = torch.tensor([log2_threshold], dtype=torch.float64, requires_grad=True)
        q = fake_quantize(x, log2_t, bits, signed)
        q.sum().backward()
        outputs.append(q.item())
        input_grads.append(x.grad.item())
        threshold_grads.append(log2_t.grad.item())
    return outputs, input_grads, threshold_grads


def test_signed_quantizer_hand_worked():
    # 3 bits signed: n = -4, p = 3; log2 t = 0 so s = 2^0 / 2^2 = 0.25.
    cases = [
        # x,     x/s,  q,     dq/dx, dq/dlog2t / (s ln2)
        (0.3, 1.2, 0.25, 1.0, 1 - 1.2),  # inside
        (-2.0, -8.0, -1.0, 0.0, -4.0),  # below n: gradient s ln2 n
        (5.0, 20.0, 0.75, 0.0, 3.0),  # above p: gradient s ln2 p
        (0.375, 1.5, 0.5, 1.0, 2 - 1.5),  # exact half rounds to even 2
        (0.625, 2.5, 0.5, 1.0, 2 - 2.5),  # exact half rounds to even 2
        (-0.125, -0.5, 0.0, 1.0, 0 + 0.5),  # exact half rounds to even 0
        (0.875, 3.5, 0.75, 0.0, 3.0),  # the half above p rounds to 4, so it clips
    ]
    outputs, input_grads, threshold_grads = _elementwise([c[0] for c in cases], 0.0, 3, True)
    for (x, _, q, dx, dlog), output, input_grad, threshold_grad in zip(cases, outputs, input_grads, threshold_grads):
        assert output == q, x
        assert input_grad == dx, x
        assert threshold_grad == pytest.approx(0.25 * LN2 * dlog, abs=1e-12), x


def test_unsigned_quantizer_hand_worked():
    # 3 bits unsigned: n = 0, p = 7; log2 t = 0 so s = 2^0 / 2^3 = 0.125.
    cases = [
        (0.3, 2.4, 0.25, 1.0, 2 - 2.4),  # inside
        (-0.5, -4.0, 0.0, 0.0, 0.0),  # below n = 0: gradient s ln2 * 0
        (2.0, 16.0, 0.875, 0.0, 7.0),  # above p: gradient s ln2 p
        (0.1875, 1.5, 0.25, 1.0, 2 - 1.5),  # exact half rounds to even 2
        (0.3125, 2.5, 0.25, 1.0, 2 - 2.5),  # exact half rounds to even 2
    ]
    outputs, input_grads, threshold_grads = _elementwise([c[0] for c in cases], 0.0, 3, False)
    for (x, _, q, dx, dlog), output, input_grad, threshold_grad in zip(cases, outputs, input_grads, threshold_grads):
        assert output == q, x
        assert input_grad == dx, x
        assert threshold_grad == pytest.approx(0.125 * LN2 * dlog, abs=1e-12), x


def test_threshold_gradient_sums_over_tensor():
    x = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    log2_t = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    fake_quantize(x, log2_t, 3, True).sum().backward()
    assert log2_t.grad.item() == pytest.approx(0.25 * LN2 * ((1 - 1.2) - 4 + 3))


def test_ceil_of_log2_threshold_sets_scale():
    x = torch.tensor([1.0], dtype=torch.float64)
    for log2_threshold, expected in [(0.0, 2.0**-7), (0.01, 2.0**-6), (-0.99, 2.0**-7), (2.5, 2.0**-4)]:
        q = fake_quantize(x * 3e-3, torch.tensor([log2_threshold], dtype=torch.float64), 8, True)
        assert q.item() == round(3e-3 / expected) * expected, log2_threshold


@pytest.mark.parametrize("exponent", [-20, -3, 0, 1, 5, 30])
def test_power_of_two_threshold_keeps_its_scale(exponent):
    threshold = 2.0**exponent
    assert ceil_log2(threshold) == exponent
    assert Quantizer(8, signed=True, threshold=threshold).exponent() == exponent - 7
    assert Quantizer(8, signed=False, threshold=threshold).exponent() == exponent - 8


def test_threshold_above_power_of_two_takes_next_scale():
    # log2(8 (1 + 2^-30)) rounds to exactly 3.0 in float32, but the threshold exceeds 8.
    threshold = 8.0 * (1 + 2.0**-30)
    assert ceil_log2(threshold) == 4
    assert math.ceil(initial_log2_threshold(threshold)) == 4
    assert Quantizer(8, threshold=threshold).exponent() == 4 - 7


def test_all_zero_tensor_gives_finite_values():
    quantizer = Quantizer(8, threshold=0.0)  # threshold of an all-zero tensor
    x = torch.zeros(2, 3, requires_grad=True)
    q = quantizer(x)
    q.sum().backward()
    assert torch.equal(q, torch.zeros(2, 3))
    assert torch.isfinite(quantizer.log2_threshold).all()
    assert torch.isfinite(quantizer.log2_threshold.grad).all()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan"), float("inf")])
def test_unusable_threshold_falls_back_to_one(threshold):
    assert initial_log2_threshold(threshold) == 0.0


def test_bias_quantizer_clips_to_int16():
    bias = torch.tensor([1.0, 40000.0, -40000.0, 2.5], dtype=torch.float64)
    q = quantize_to_exponent(bias, 0, 16)
    assert q.tolist() == [1.0, 32767.0, -32768.0, 2.0]


@pytest.mark.parametrize("bits", [1, 17, 0, 2.5])
def test_bit_width_outside_range_rejected(bits):
    with pytest.raises(InputError, match="2..16"):
        check_bits(bits)


def test_float32_matches_float64_on_grid():
    # Power-of-2 scales make x / s exact in both precisions, so both round identically.
    x = torch.linspace(-3, 3, 1001)
    log2_t = torch.tensor([1.0])
    single = fake_quantize(x, log2_t, 8, True)
    double = fake_quantize(x.double(), log2_t.double(), 8, True)
    assert torch.equal(single.double(), double)
