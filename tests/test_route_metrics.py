"""Route-level figures: hand-counted batches, and the `evaluate` library call and command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from deeproute.checkpoint import make_checkpoint, save_checkpoint
from deeproute.errors import InputError
from deeproute.evaluate import evaluate_file
from deeproute.generate import GenerateConfig, generate_dataset
from deeproute.generate.writer import generate_arrays
from deeproute.model import FCNConfig, RoutingFCN
from deeproute.route_metrics import RouteCounts, format_route_table, route_records

PIN, M3, VIA3, M4, VIA4, M5, VIA5, M6 = range(8)
EXTENT = (16.0, 16.0)  # 16x16 grid: one pitch is 1 µm


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A generated 16x16 dataset of 40 nets and an untrained 3-stage checkpoint for it."""
    folder = tmp_path_factory.mktemp("route")
    data = folder / "val.h5"
    generate_dataset(data, GenerateConfig(count=40, height=16, width=16, seed=21), workers=1)
    torch.manual_seed(0)
    model = RoutingFCN(FCNConfig(height=16, width=16, channels=4, stages=3))
    checkpoint = folder / "tiny.pt"
    save_checkpoint(checkpoint, make_checkpoint(model))
    return data, checkpoint


def _two_nets():
    """Net 0: a correct M4 trunk of 7 µm. Net 1: an empty prediction for a 7 µm M4 trunk."""
    labels = np.zeros((2, 8, 16, 16), dtype=np.uint8)
    labels[:, PIN, 5, 2] = labels[:, PIN, 5, 9] = 1
    labels[:, M4, 5, 2:10] = 1
    pins = np.array([[(2, 5), (9, 5)], [(2, 5), (9, 5)]])
    outputs = labels.astype(np.float64)
    outputs[1, 1:] = 0.0  # net 1: nothing routed
    return outputs, labels, pins


def test_hand_counted_batch():
    outputs, labels, pins = _two_nets()

    counts = RouteCounts()
    counts.add(route_records(outputs, labels, pins, EXTENT))
    summary = counts.summary()

    assert summary["nets"] == 2
    assert summary["connected"] == 0.5
    assert summary["identical"] == 0.5
    assert summary["legal"] == 0.5
    assert summary["wirelength_ratio"] == 7.0 / 14.0
    assert summary["mean_wirelength_ratio"] == (1.0 + 0.0) / 2
    repaired = summary["repaired"]
    assert repaired["connected"] == 1.0
    assert repaired["legal"] == 1.0
    assert repaired["changed"] == 0.5
    assert repaired["wirelength_ratio"] == 1.0  # the repair draws a straight 7 µm run


def test_records_per_net():
    outputs, labels, pins = _two_nets()

    good, empty = route_records(outputs, labels, pins, EXTENT)

    assert good.identical
    assert good.repaired_identical
    assert not good.repair.changed
    assert good.wirelength_overhead == 0.0
    assert not empty.connected
    assert empty.repair.connected_after
    assert empty.repair.changed
    assert empty.wirelength_overhead == 0.0


def test_without_repair_no_repaired_figures():
    outputs, labels, pins = _two_nets()

    records = route_records(outputs, labels, pins, EXTENT, with_repair=False)
    counts = RouteCounts()
    counts.add(records)

    assert records[0].repair is None
    assert records[0].wirelength_overhead is None
    assert "repaired" not in counts.summary()
    assert "repaired" not in format_route_table(counts.summary())


def test_batches_add_up():
    inputs, labels, pins = generate_arrays(GenerateConfig(count=30, height=16, width=16, seed=22))
    rng = np.random.default_rng(1)
    outputs = np.clip(labels + rng.normal(0.0, 0.3, labels.shape), 0.0, 1.0)

    whole = RouteCounts()
    whole.add(route_records(outputs, labels, pins))
    parts = RouteCounts()
    parts.add(route_records(outputs[:11], labels[:11], pins[:11]))
    parts.add(route_records(outputs[11:], labels[11:], pins[11:]))

    split, joined = parts.summary(), whole.summary()
    assert split.pop("repaired") == pytest.approx(joined.pop("repaired"))
    assert split == pytest.approx(joined)
    assert whole.summary()["repaired"]["legal"] == 1.0


def test_mismatched_batch_rejected():
    outputs, labels, pins = _two_nets()
    with pytest.raises(InputError, match="disagree"):
        route_records(outputs, labels[:1], pins)


def test_table_rows():
    outputs, labels, pins = _two_nets()
    counts = RouteCounts()
    counts.add(route_records(outputs, labels, pins, EXTENT))

    table = format_route_table(counts.summary())

    assert "predicted     50.00%" in table
    assert "repaired     100.00%" in table
    assert "nets 2" in table


def test_evaluate_file_route_keys(tiny_files):
    data, checkpoint = tiny_files

    summary = evaluate_file(data, checkpoint, batch_size=16, device="cpu")
    pixel_only = evaluate_file(data, checkpoint, batch_size=16, device="cpu", route=False)

    assert summary["route"]["nets"] == 40
    assert summary["route"]["repaired"]["connected"] == 1.0
    assert summary["route"]["repaired"]["legal"] == 1.0
    assert "route" not in pixel_only
    assert {key: value for key, value in summary.items() if key != "route"} == pixel_only


def test_evaluate_command_no_route(tiny_files, tmp_path):
    data, checkpoint = tiny_files
    report = tmp_path / "figures.json"

    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "evaluate", str(data), "--model", str(checkpoint),
         "--device", "cpu", "--pixel-only", "--json", str(report)],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "route" not in json.loads(report.read_text())
    assert "repaired" not in result.stdout


def test_evaluate_command_prints_route_table(tiny_files, tmp_path):
    data, checkpoint = tiny_files
    report = tmp_path / "figures.json"

    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "evaluate", str(data), "--model", str(checkpoint),
         "--device", "cpu", "--json", str(report)],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "repaired     100.00%   100.00%" in result.stdout
    assert json.loads(report.read_text())["route"]["repaired"]["legal"] == 1.0
