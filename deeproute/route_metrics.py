"""Route-level figures of predicted nets against their labels, before and after repair.

Pixel F1 counts correct pixels. These figures count nets that work:

    connected          all pins of the net in one electrical component (`check_net`)
    identical          routing channels M3-M6 and VIA3-VIA5 equal to the label's; the PIN
                       channel is left out because it copies the network input
    legal              connected and no violation of `check_net`
    wirelength_ratio   sum of predicted wirelength / sum of label wirelength over nets
    mean_wirelength_ratio  mean of the per-net ratio over nets with a nonzero label length

A prediction is the thresholded network output, metal that floats included, so its
wirelength ratio is not a route quality on its own. After repair every net should be
connected and legal, and the ratio measures the repair's detours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deeproute.check import check_net
from deeproute.errors import InputError
from deeproute.repair import ROUTING_CHANNELS, RepairConfig, RepairReport, on_probabilities, repair


@dataclass(frozen=True)
class RouteRecord:
    """Route-level outcome of one net."""

    connected: bool
    identical: bool
    legal: bool
    wirelength_um: float  # of the thresholded prediction
    label_wirelength_um: float
    repair: RepairReport | None = None  # None when repair was skipped
    repaired_identical: bool | None = None

    @property
    def wirelength_overhead(self) -> float | None:
        """Repaired wirelength / label wirelength - 1; None without repair or label length."""
        if self.repair is None or self.label_wirelength_um == 0:
            return None
        return self.repair.wirelength_um / self.label_wirelength_um - 1.0


def route_records(
    outputs,
    labels,
    pins,
    extent_um: tuple[float, float] = (11.0, 11.0),
    with_repair: bool = True,
    config: RepairConfig = RepairConfig(),
) -> list[RouteRecord]:
    """Check and optionally repair each net of a batch.

    Args:
        outputs: (N, 16, H, W) network scores or (N, 8, H, W) 'on' probabilities.
        labels: 0/1 (N, 8, H, W) label maps.
        pins: (N, P, 2) (x, y) pins padded with -1.
        extent_um: (x, y) physical grid size in µm.
        with_repair: also repair each net (the slow part) and score the result.
    """
    outputs, labels, pins = np.asarray(outputs), np.asarray(labels), np.asarray(pins)
    if outputs.ndim != 4 or labels.ndim != 4 or pins.ndim != 3:
        raise InputError(
            f"expected (N, C, H, W) outputs, (N, 8, H, W) labels and (N, P, 2) pins, "
            f"got {outputs.shape}, {labels.shape} and {pins.shape}"
        )
    if not outputs.shape[0] == labels.shape[0] == pins.shape[0]:
        raise InputError(
            f"outputs, labels and pins disagree on the net count: "
            f"{outputs.shape[0]}, {labels.shape[0]} and {pins.shape[0]}"
        )

    records = []
    for net in range(outputs.shape[0]):
        _, predicted = on_probabilities(outputs[net])
        label = labels[net].astype(bool)
        raw = check_net(predicted, pins[net], extent_um)
        label_length = check_net(label, pins[net], extent_um).wirelength_um
        record = dict(
            connected=raw.connected,
            identical=_same_routing(predicted, label),
            legal=raw.legal,
            wirelength_um=raw.wirelength_um,
            label_wirelength_um=label_length,
        )
        if with_repair:
            repaired, report = repair(outputs[net], pins[net], extent_um, config)
            record.update(repair=report, repaired_identical=_same_routing(repaired.astype(bool), label))
        records.append(RouteRecord(**record))
    return records


@dataclass
class RouteTally:
    """Counts behind the route-level fractions of one kind of map (predicted or repaired)."""

    nets: int = 0
    connected: int = 0
    legal: int = 0
    identical: int = 0
    changed: int = 0  # repaired maps only: nets that repair altered
    wirelength_um: float = 0.0
    label_wirelength_um: float = 0.0
    ratio_sum: float = 0.0  # sum of per-net wirelength ratios
    ratio_nets: int = 0  # nets with a nonzero label wirelength

    def add(self, connected: bool, legal: bool, identical: bool, changed: bool,
            length_um: float, label_length_um: float) -> None:
        self.nets += 1
        self.connected += connected
        self.legal += legal
        self.identical += identical
        self.changed += changed
        self.wirelength_um += length_um
        self.label_wirelength_um += label_length_um
        if label_length_um > 0:
            self.ratio_sum += length_um / label_length_um
            self.ratio_nets += 1

    def fractions(self) -> dict:
        return {
            "nets": self.nets,
            "connected": _fraction(self.connected, self.nets),
            "identical": _fraction(self.identical, self.nets),
            "legal": _fraction(self.legal, self.nets),
            "wirelength_ratio": _fraction(self.wirelength_um, self.label_wirelength_um),
            "mean_wirelength_ratio": _fraction(self.ratio_sum, self.ratio_nets),
        }


@dataclass
class RouteCounts:
    """Route-level tallies of predicted and repaired maps, accumulated over batches."""

    predicted: RouteTally = field(default_factory=RouteTally)
    repaired: RouteTally = field(default_factory=RouteTally)

    def add(self, records: list[RouteRecord]) -> None:
        for record in records:
            self.predicted.add(
                record.connected, record.legal, record.identical, False,
                record.wirelength_um, record.label_wirelength_um,
            )
            if record.repair is not None:
                self.repaired.add(
                    record.repair.connected_after, record.repair.legal_after,
                    bool(record.repaired_identical), record.repair.changed,
                    record.repair.wirelength_um, record.label_wirelength_um,
                )

    def summary(self) -> dict:
        """Return fractions and wirelength ratios; `repaired` is present only if nets were repaired.

        A fraction or ratio with nothing to divide by is None.
        """
        result = self.predicted.fractions()
        if self.repaired.nets:
            result["repaired"] = self.repaired.fractions()
            result["repaired"]["changed"] = _fraction(self.repaired.changed, self.repaired.nets)
        return result


def format_route_table(summary: dict) -> str:
    """Render a RouteCounts summary as plain text, one row for predictions and one after repair."""
    lines = [f"{'route':<10}{'connected':>10}{'legal':>10}{'identical':>10}{'wl ratio':>10}{'mean ratio':>11}"]
    rows = [("predicted", summary)]
    if "repaired" in summary:
        rows.append(("repaired", summary["repaired"]))
    for name, figures in rows:
        lines.append(
            f"{name:<10}{_percent(figures['connected']):>10}{_percent(figures['legal']):>10}"
            f"{_percent(figures['identical']):>10}{_number(figures['wirelength_ratio']):>10}"
            f"{_number(figures['mean_wirelength_ratio']):>11}"
        )
    lines.append(f"nets {summary['nets']}")
    return "\n".join(lines)


def _same_routing(predicted: np.ndarray, label: np.ndarray) -> bool:
    return bool(np.array_equal(predicted[ROUTING_CHANNELS], label[ROUTING_CHANNELS]))


def _fraction(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
