"""Static calibration: activation thresholds from a calibration set, without retraining.

The thresholds are measured on the float network with batch norm folded. Three rules pick an
activation threshold from the values seen:

    max         the largest |x|
    percentile  a percentile of |x| (99.99 by default), read from a histogram
    klj         the power-of-2 threshold that minimizes the symmetric Kullback-Leibler
                divergence (KL-J) between the histogram of x and that of its quantized copy

The score threshold is always the largest |score|, because clipping both scores of a pair
turns a confident prediction into a tie. Weight thresholds are max |w| by default, or the
power of 2 with the smallest squared quantization error ("mse").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from deeproute.errors import InputError
from deeproute.quant.fold import FoldedFCN
from deeproute.quant.quantizer import ceil_log2, integer_range

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("max", "percentile", "klj")
WEIGHT_CALIBRATION_METHODS = ("max", "mse")
KLJ_CANDIDATES = 7  # power-of-2 thresholds tried below the one that covers the max
KLJ_SUBBINS = 16  # histogram bins per quantization step in the KL-J comparison
# Histogram bins per quantization step of the largest candidate, as a power of 2: enough
# for KLJ_SUBBINS at the smallest candidate, whose step is 2^KLJ_CANDIDATES times finer.
HISTOGRAM_EXTRA_BITS = KLJ_CANDIDATES + 4


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of activation calibration."""

    method: str = "max"  # "max", "percentile" or "klj"
    percentile: float = 99.99  # for method "percentile", in percent of |x|
    batch_size: int = 100  # samples per forward pass
    activation_bits: int = 8

    def validate(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration {self.method!r}; expected one of {', '.join(CALIBRATION_METHODS)}")
        if not 0 < self.percentile <= 100:
            raise InputError(f"percentile must be within (0, 100], got {self.percentile}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")


def calibrate_activations(
    model: FoldedFCN, inputs: np.ndarray, config: CalibrationConfig = CalibrationConfig(), progress: bool = False
) -> list[float]:
    """Return one threshold per stage output of `model` on uint8 (N, 1, H, W) `inputs`.

    The last entry is the score threshold. Raises InputError when `inputs` has fewer
    samples than one batch.
    """
    config.validate()
    if len(inputs) < config.batch_size:
        raise InputError(
            f"the calibration set has {len(inputs)} samples, fewer than one batch of {config.batch_size}; "
            f"pass a larger calibration set or a smaller --batch-size"
        )
    maxima = _run_passes(model, inputs, config.batch_size, progress, "calibrate (max)", _MaxStatistic)
    thresholds = [float(m) for m in maxima]
    if config.method == "max":
        return thresholds

    histograms = _run_passes(
        model, inputs, config.batch_size, progress, f"calibrate ({config.method})",
        lambda index: _Histogram(thresholds[index], config.activation_bits),
    )
    for index, histogram in enumerate(histograms[:-1]):
        if config.method == "percentile":
            thresholds[index] = histogram.percentile(config.percentile)
        else:
            thresholds[index] = histogram.klj_threshold()
    return thresholds


def weight_threshold(weight: torch.Tensor, bits: int, method: str = "max") -> float:
    """Return the threshold of a signed `bits`-wide weight quantizer.

    "max" is max |w|. "mse" is the power of 2, from the one that covers max |w| down to
    2^-KLJ_CANDIDATES of it, whose quantizer gives the smallest squared error; at 4 bits
    it clips the few largest weights to resolve the many small ones.
    """
    if method not in WEIGHT_CALIBRATION_METHODS:
        raise InputError(f"unknown weight calibration {method!r}; expected one of {', '.join(WEIGHT_CALIBRATION_METHODS)}")
    values = weight.detach().double()
    maximum = float(values.abs().max())
    if method == "max" or maximum == 0:
        return maximum
    low, high = integer_range(bits, signed=True)
    top = ceil_log2(maximum)
    best_threshold, best_error = 2.0**top, math.inf
    for exponent in range(top, top - KLJ_CANDIDATES - 1, -1):
        scale = 2.0 ** (exponent - (bits - 1))
        error = float(((torch.round(values / scale).clamp(low, high) * scale - values) ** 2).sum())
        if error < best_error:
            best_threshold, best_error = 2.0**exponent, error
    return best_threshold


def symmetric_kl(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Return KL(P||Q) + KL(Q||P) = sum (P - Q) log(P / Q) of two histograms on the same bins.

    Both are normalized first, and the empty bins of each share SMOOTHING of its mass, so
    that the logarithms stay finite.
    """
    p = _smooth(reference)
    q = _smooth(approximation)
    return float(np.sum((p - q) * np.log(p / q)))


def clipped_histograms(counts: np.ndarray, in_range: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (P, Q) for a signed histogram whose middle 2 * `in_range` bins lie inside the threshold.

    The in-range bins are first merged so that each quantization step spans KLJ_SUBBINS
    bins. So every candidate threshold is judged at the same resolution relative to its
    step. P is the distribution of clip(x): the counts beyond the threshold move onto the
    outermost bin on their side. Q is the quantized copy of the in-range counts only: each
    of the 2^bits levels spreads its mass evenly over its non-empty bins. The clipped mass
    is missing from Q, so KL-J grows with it, and a level that merges differently shaped
    bins blurs Q, so KL-J grows with that too.
    """
    half = len(counts) // 2
    levels_count = 2**bits
    merged = 2 * in_range // (levels_count * KLJ_SUBBINS)  # histogram bins per KL-J bin
    inside = counts[half - in_range : half + in_range].astype(np.float64).reshape(-1, merged).sum(axis=1)
    reference = inside.copy()
    reference[0] += counts[: half - in_range].sum()
    reference[-1] += counts[half + in_range :].sum()

    low, high = integer_range(bits, signed=True)
    centers = np.arange(-len(inside) // 2, len(inside) // 2) + 0.5  # in KL-J bins, relative to 0
    levels = np.clip(np.round(centers / KLJ_SUBBINS), low, high).astype(np.int64) - low
    occupied = inside > 0
    level_mass = np.bincount(levels, weights=inside, minlength=levels_count)
    level_bins = np.bincount(levels, weights=occupied.astype(np.float64), minlength=levels_count)
    spread = np.divide(level_mass, level_bins, out=np.zeros_like(level_mass), where=level_bins > 0)
    approximation = np.where(occupied, spread[levels], 0.0)
    return reference, approximation


SMOOTHING = 1e-4  # probability mass given to the empty bins of a histogram, in total


def _smooth(histogram: np.ndarray) -> np.ndarray:
    probabilities = histogram / histogram.sum()
    empty = probabilities == 0
    if not empty.any() or empty.all():
        return probabilities
    return np.where(empty, SMOOTHING / empty.sum(), probabilities * (1 - SMOOTHING))


class _MaxStatistic:
    def __init__(self, index: int):
        self.value = 0.0

    def add(self, x: torch.Tensor) -> None:
        self.value = max(self.value, float(x.abs().max()))

    def result(self) -> float:
        return self.value


class _Histogram:
    """A signed histogram on [-R, R] where R = 2^ceil(log2 max|x|), with bins fine enough for KL-J."""

    def __init__(self, maximum: float, bits: int):
        self.bits = bits
        self.top_exponent = ceil_log2(maximum) if maximum > 0 else 0
        self.edge = 2.0**self.top_exponent
        self.bins = 2 ** (bits + HISTOGRAM_EXTRA_BITS)
        self.counts = np.zeros(self.bins, dtype=np.int64)

    def add(self, x: torch.Tensor) -> None:
        values = x.detach().reshape(-1).double().cpu().numpy()
        width = 2 * self.edge / self.bins
        index = np.floor((values + self.edge) / width).astype(np.int64)
        self.counts += np.bincount(np.clip(index, 0, self.bins - 1), minlength=self.bins)

    def result(self) -> _Histogram:
        return self

    def percentile(self, percent: float) -> float:
        """Return the upper edge of the |x| bin where the cumulative share reaches `percent`."""
        half = self.bins // 2
        magnitude = self.counts[half:] + self.counts[:half][::-1]  # bins are symmetric about 0
        total = magnitude.sum()
        if total == 0:
            return 0.0
        cumulative = np.cumsum(magnitude) / total
        index = int(np.searchsorted(cumulative, percent / 100.0))
        index = min(index, half - 1)
        return (index + 1) * self.edge / half

    def klj_threshold(self) -> float:
        """Return the power-of-2 threshold with the smallest KL-J, the larger one on ties.

        Only powers of 2 are tried because the scale is 2^ceil(log2 t) / 2^(b-1): every
        threshold between two powers of 2 gives the same quantizer as the upper one.
        """
        if self.counts.sum() == 0:
            return 0.0
        half = self.bins // 2
        best_threshold, best_divergence = self.edge, math.inf
        for candidate in range(KLJ_CANDIDATES + 1):
            in_range = half >> candidate  # bins on each side of 0 inside the threshold
            reference, approximation = clipped_histograms(self.counts, in_range, self.bits)
            divergence = symmetric_kl(reference, approximation)
            if divergence < best_divergence:
                best_threshold, best_divergence = self.edge / 2**candidate, divergence
        return best_threshold


def _run_passes(model: FoldedFCN, inputs: np.ndarray, batch_size: int, progress: bool, description: str, make_statistic):
    statistics = None
    batches = range(0, len(inputs), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=description, unit="batch", leave=False)
    model.eval()
    with torch.no_grad():
        for start in batches:
            x = torch.from_numpy(inputs[start : start + batch_size]).float()
            outputs = model.stage_outputs(x)
            if statistics is None:
                statistics = [make_statistic(index) for index in range(len(outputs))]
            for statistic, output in zip(statistics, outputs):
                statistic.add(output)
    return [statistic.result() for statistic in statistics]
