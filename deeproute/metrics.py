"""Pixel metrics counted the published way: every pixel of all 8 layers, 'on' is positive."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from deeproute import stack


@dataclass
class PixelCounts:
    """Confusion counts per layer, accumulated over batches."""

    tp: np.ndarray = field(default_factory=lambda: np.zeros(stack.NUM_LAYERS, np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(stack.NUM_LAYERS, np.int64))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(stack.NUM_LAYERS, np.int64))
    tn: np.ndarray = field(default_factory=lambda: np.zeros(stack.NUM_LAYERS, np.int64))
    samples: int = 0

    def add(self, predicted, label) -> None:
        """Accumulate bool/0-1 (N, L, H, W) predictions against labels (torch or numpy)."""
        if isinstance(predicted, torch.Tensor):
            predicted = predicted.detach().cpu().numpy()
        if isinstance(label, torch.Tensor):
            label = label.detach().cpu().numpy()
        predicted = predicted.astype(bool)
        label = label.astype(bool)
        axes = (0, 2, 3)
        self.tp += (predicted & label).sum(axis=axes)
        self.fp += (predicted & ~label).sum(axis=axes)
        self.fn += (~predicted & label).sum(axis=axes)
        self.tn += (~predicted & ~label).sum(axis=axes)
        self.samples += predicted.shape[0]

    def merge(self, other: PixelCounts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        self.samples += other.samples

    def as_array(self) -> np.ndarray:
        """Return (5, L) int64 [tp, fp, fn, tn, samples broadcast], for all-reduce."""
        return np.stack([self.tp, self.fp, self.fn, self.tn, np.full_like(self.tp, self.samples)])

    @classmethod
    def from_array(cls, array: np.ndarray) -> PixelCounts:
        return cls(array[0].copy(), array[1].copy(), array[2].copy(), array[3].copy(), int(array[4][0]))

    def summary(self) -> dict:
        """Return overall precision, recall, F1, accuracy, sample count and per-layer P/R/F1."""
        overall = _scores(self.tp.sum(), self.fp.sum(), self.fn.sum(), self.tn.sum())
        overall["samples"] = self.samples
        overall["per_layer"] = {
            name: {
                key: value
                for key, value in _scores(self.tp[i], self.fp[i], self.fn[i], self.tn[i]).items()
                if key != "accuracy"
            }
            for i, name in enumerate(stack.LAYER_NAMES)
        }
        return overall


def _scores(tp, fp, fn, tn) -> dict:
    """Return precision, recall, F1 and accuracy from confusion counts.

    With nothing predicted 'on', precision is 1.0 only if nothing was missed. An empty
    recall or F1 denominator means there was nothing to find, which scores 1.0.
    """
    tp, fp, fn, tn = (int(v) for v in (tp, fp, fn, tn))
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    total = tp + fp + fn + tn
    accuracy = (tp + tn) / total if total else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def format_table(summary: dict) -> str:
    """Render a metrics summary as a plain-text table."""
    lines = [f"{'layer':<8}{'precision':>10}{'recall':>10}{'f1':>10}"]
    for name, scores in summary["per_layer"].items():
        lines.append(f"{name:<8}{scores['precision']:>10.4f}{scores['recall']:>10.4f}{scores['f1']:>10.4f}")
    lines.append(
        f"{'all':<8}{summary['precision']:>10.4f}{summary['recall']:>10.4f}{summary['f1']:>10.4f}"
        f"   accuracy {summary['accuracy']:.6f}   samples {summary['samples']}"
    )
    return "\n".join(lines)
