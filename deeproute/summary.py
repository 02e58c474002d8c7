"""Summary statistics of a routing dataset: pin counts, wire-class mix, layer occupancy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from deeproute import stack


@dataclass
class DatasetSummary:
    """Counts accumulated over a dataset; `merge` combines partial summaries."""

    height: int
    width: int
    count: int = 0
    pin_histogram: Counter = field(default_factory=Counter)  # pins per net -> nets
    wire_classes: Counter = field(default_factory=Counter)  # e.g. "M4+M5" -> nets
    on_pixels: np.ndarray = field(default_factory=lambda: np.zeros(stack.NUM_LAYERS, np.int64))

    @classmethod
    def empty(cls, height: int, width: int) -> DatasetSummary:
        return cls(height, width)

    @classmethod
    def from_arrays(cls, labels: np.ndarray, pins: np.ndarray | None = None) -> DatasetSummary:
        """Summarize uint8 labels (N, 8, H, W), with pin counts from `pins` or the pin layer."""
        count, _, height, width = labels.shape
        summary = cls(height, width, count=count)

        # 'On' pixels per net and layer. Summing the 0/1 bytes along the contiguous pixel axis
        # is several times faster than count_nonzero over a strided axis.
        pixel_dtype = np.uint16 if height * width < 2**16 else np.uint32
        per_net = labels.reshape(count, stack.NUM_LAYERS, -1).sum(axis=2, dtype=pixel_dtype)  # (N, 8)

        if pins is not None:
            pin_counts = (pins[..., 0] >= 0).sum(axis=1)
        else:
            pin_counts = per_net[:, stack.PIN]
        summary.pin_histogram.update(Counter(pin_counts.tolist()))

        # The wire class of a net is the set of metals it uses, e.g. "M3+M4".
        used = per_net[:, list(stack.METALS)] > 0  # (N, 4)
        codes = used @ (1 << np.arange(len(stack.METALS)))  # (N,) bitmask of used metals
        for code, nets in zip(*np.unique(codes, return_counts=True)):
            summary.wire_classes[_class_name(int(code))] += int(nets)

        summary.on_pixels = per_net.sum(axis=0, dtype=np.int64)
        return summary

    def merge(self, other: DatasetSummary) -> None:
        self.count += other.count
        self.pin_histogram.update(other.pin_histogram)
        self.wire_classes.update(other.wire_classes)
        self.on_pixels = self.on_pixels + other.on_pixels

    def on_fraction(self) -> np.ndarray:
        """Fraction of 'on' pixels per layer, in stack order."""
        pixels = max(self.count * self.height * self.width, 1)
        return self.on_pixels / pixels

    def to_dict(self) -> dict:
        return {
            "samples": self.count,
            "grid": [self.height, self.width],
            "pins_per_net": {str(k): v for k, v in sorted(self.pin_histogram.items())},
            "wire_classes": dict(sorted(self.wire_classes.items())),
            "on_fraction": {
                name: float(f) for name, f in zip(stack.LAYER_NAMES, self.on_fraction())
            },
        }

    def format(self) -> str:
        """Render the summary as an aligned plain-text report."""
        lines = [f"samples      {self.count}", f"grid         {self.height} x {self.width} (H x W)"]
        lines.append("pins per net")
        for pins, nets in sorted(self.pin_histogram.items()):
            lines.append(f"  {pins:>4}      {nets:>9}  {100 * nets / max(self.count, 1):6.2f} %")
        lines.append("wire classes")
        for name, nets in sorted(self.wire_classes.items()):
            lines.append(f"  {name:<9} {nets:>9}  {100 * nets / max(self.count, 1):6.2f} %")
        lines.append("'on' pixels per layer")
        for name, fraction in zip(stack.LAYER_NAMES, self.on_fraction()):
            lines.append(f"  {name:<9} {100 * fraction:8.3f} %")
        return "\n".join(lines)


def _class_name(code: int) -> str:
    names = [stack.LAYER_NAMES[m] for bit, m in enumerate(stack.METALS) if code >> bit & 1]
    return "+".join(names) if names else "none"
