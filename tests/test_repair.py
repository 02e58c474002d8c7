"""Specification tests of `repair`: hand-made broken predictions with their expected output,
labels that must come back unchanged, and real network output that must come back legal.

Hand-made nets sit on a 16x16 grid of extent 16 µm, so one pitch is 1 µm.
Pixels are written as (x, y); arrays are indexed [layer, y, x].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deeproute.check import check_net
from deeproute.errors import InputError
from deeproute.generate import GenerateConfig
from deeproute.generate.paper import route_paper
from deeproute.generate.writer import generate_arrays
from deeproute.model import FCNConfig, RoutingFCN
from deeproute.repair import repair, repair_batch

PIN, M3, VIA3, M4, VIA4, M5, VIA5, M6 = range(8)
EXTENT = (16.0, 16.0)


def _probabilities(layers, background=0.0):
    """'On' probabilities: 0.95 where `layers` is on, `background` elsewhere."""
    return np.where(np.asarray(layers) > 0, 0.95, background)


def _net(*pins):
    layers = np.zeros((8, 16, 16), dtype=np.uint8)
    for x, y in pins:
        layers[PIN, y, x] = 1
    return layers, np.array(pins)


def _routing(layers):
    """The routing channels (all but PIN) of a map, as bool."""
    return np.asarray(layers)[1:].astype(bool)


def test_gap_in_trunk_filled():
    label, pins = _net((2, 5), (9, 5))
    label[M4, 5, 2:10] = 1
    predicted = _probabilities(label)
    predicted[M4, 5, 5] = 0.4  # the network nearly drew the missing pixel

    layers, report = repair(predicted, pins, EXTENT)

    assert np.array_equal(layers, label)
    assert not report.connected_before
    assert report.legal_after
    assert report.paths_added == 1
    assert report.pixels_added == 1
    assert report.pixels_removed == 0
    assert report.wirelength_um == 7.0


def test_missing_via_restored_without_path():
    label, pins = _net((2, 5), (9, 5), (6, 1))
    label[M4, 5, 2:10] = 1
    label[M3, 1:6, 6] = 1
    label[VIA3, 5, 6] = 1
    predicted = _probabilities(label)
    predicted[VIA3, 5, 6] = 0.1  # metal overlaps at (6, 5), but the via is off

    layers, report = repair(predicted, pins, EXTENT)

    assert np.array_equal(layers, label)
    assert not report.connected_before
    assert report.paths_added == 0
    assert report.pixels_added == 1  # the via


def test_floating_stub_dropped():
    label, pins = _net((2, 5), (9, 5))
    label[M4, 5, 2:10] = 1
    predicted = _probabilities(label)
    predicted[M5, 9:12, 13] = 0.9  # a 3-pixel M5 segment joined to nothing

    layers, report = repair(predicted, pins, EXTENT)

    assert np.array_equal(layers, label)
    assert report.connected_before
    assert not report.legal_before
    assert report.pixels_removed == 3
    assert report.changed


def test_dangling_stub_pruned():
    label, pins = _net((2, 5), (9, 5))
    label[M4, 5, 2:10] = 1
    predicted = _probabilities(label)
    predicted[M4, 5, 10:13] = 0.9  # the trunk runs 3 pixels past the last pin
    predicted[M3, 6:9, 4] = 0.9  # a leg that hangs off the trunk, with its via
    predicted[M3, 5, 4] = 0.9
    predicted[VIA3, 5, 4] = 0.9

    layers, report = repair(predicted, pins, EXTENT)

    assert np.array_equal(layers, label)
    assert report.legal_before  # stubs break no rule of the checker
    assert report.pixels_removed == 3 + 4 + 1


def test_empty_prediction_straight_pins():
    _, pins = _net((2, 5), (9, 5))

    layers, report = repair(np.zeros((8, 16, 16)), pins, EXTENT)

    metal = layers[[M3, M4, M5, M6]]
    assert report.legal_after
    assert report.wirelength_um == 7.0
    assert report.via_count == 0
    assert metal.sum() == 8  # one straight horizontal run from x = 2 to 9
    assert metal[:, 5, 2:10].sum(axis=1).max() == 8


def test_empty_prediction_diagonal_pins():
    _, pins = _net((2, 2), (6, 9))

    layers, report = repair(np.zeros((8, 16, 16)), pins, EXTENT)

    assert report.legal_after
    assert not report.connected_before
    assert report.wirelength_um == 4.0 + 7.0  # Manhattan distance: no detour
    assert report.via_count == 1  # one turn from a horizontal to a vertical metal


def test_empty_prediction_five_pins():
    _, pins = _net((1, 1), (14, 2), (7, 8), (2, 13), (12, 14))

    layers, report = repair(np.zeros((8, 16, 16)), pins, EXTENT)

    assert report.legal_after
    assert report.paths_added == 4
    assert check_net(layers, pins, EXTENT).violations == []


def test_repair_follows_network_probabilities():
    _, pins = _net((2, 2), (8, 8))
    predicted = np.zeros((8, 16, 16))
    predicted[M3, 2:9, 2] = 0.45  # below threshold, but the L the network leaned to
    predicted[M4, 8, 2:9] = 0.45  # no via probability: only the metal picks the corner

    layers, _ = repair(predicted, pins, EXTENT)

    expected = np.zeros((8, 16, 16), dtype=np.uint8)
    expected[PIN, 2, 2] = expected[PIN, 8, 8] = 1
    expected[M3, 2:9, 2] = 1
    expected[M4, 8, 2:9] = 1
    expected[VIA3, 8, 2] = 1
    assert np.array_equal(layers, expected)


def test_wrong_way_jogs_replaced():
    _, pins = _net((2, 5), (5, 5))
    predicted = np.zeros((8, 16, 16))
    predicted[M3, 5, 2:6] = 0.9  # a row on vertical M3: 3 wrong-way jogs

    layers, report = repair(predicted, pins, EXTENT)

    assert check_net(predicted > 0.5, pins, EXTENT).counts == {"wrong_way:M3": 3}
    assert report.connected_before
    assert not report.legal_before
    assert report.legal_after
    assert report.wirelength_um == 3.0  # a horizontal run from x = 2 to 5
    assert not layers[M3, 5, 3:5].any()  # the middle M3 pixels are gone


def test_pin_without_metal_joined():
    label, pins = _net((2, 5), (9, 5), (9, 12))
    label[M4, 5, 2:10] = 1
    predicted = _probabilities(label)  # nothing reaches pin (9, 12)

    layers, report = repair(predicted, pins, EXTENT)

    assert report.legal_after
    assert report.paths_added == 1
    assert report.wirelength_um == 7.0 + 7.0  # trunk plus a straight vertical leg
    assert layers[M4, 5, 2:10].all()


def test_scores_and_probabilities_agree():
    label, pins = _net((2, 5), (9, 5))
    label[M4, 5, 2:10] = 1
    label[M4, 5, 5] = 0
    probabilities = _probabilities(label, background=0.05)
    scores = np.zeros((16, 16, 16))
    scores[1::2] = np.log(probabilities / (1 - probabilities))  # 'on' logit against an 'off' score of 0

    from_scores, _ = repair(scores, pins, EXTENT)
    from_probabilities, _ = repair(probabilities, pins, EXTENT)

    assert np.array_equal(from_scores, from_probabilities)


def test_single_pin_net_keeps_nothing():
    _, pins = _net((4, 4))
    predicted = np.zeros((8, 16, 16))
    predicted[M4, 4, 2:8] = 0.9

    layers, report = repair(predicted, pins, EXTENT)

    assert report.legal_after
    assert not _routing(layers).any()


@pytest.mark.parametrize(
    "output, message",
    [
        (np.zeros((7, 16, 16)), "expected"),
        (np.full((8, 16, 16), np.nan), "NaN"),
        (np.full((8, 16, 16), 1.5), r"\[0, 1\]"),
    ],
)
def test_bad_output_rejected(output, message):
    with pytest.raises(InputError, match=message):
        repair(output, np.array([(1, 1), (3, 3)]))


def test_pin_outside_grid_rejected():
    with pytest.raises(InputError, match="outside"):
        repair(np.zeros((8, 16, 16)), np.array([(1, 1), (3, 16)]))


@settings(max_examples=40, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 31), st.integers(0, 31)), min_size=2, max_size=5))
def test_labels_come_back_unchanged(pins):
    padded = np.full((1, 5, 2), -1, dtype=np.int16)
    padded[0, : len(pins)] = sorted(pins)
    label = route_paper(padded, 32, 32, (11.0, 11.0))[0]

    layers, report = repair(label.astype(np.float64), padded[0])

    assert np.array_equal(layers, label)
    assert not report.changed


def test_untrained_network_output_repaired():
    torch.manual_seed(0)
    inputs, labels, pins = generate_arrays(GenerateConfig(count=60, height=16, width=16, seed=13))
    model = RoutingFCN(FCNConfig(height=16, width=16, channels=4, stages=3)).eval()
    with torch.inference_mode():
        scores = model(torch.from_numpy(inputs).float()).numpy()  # (N, 16, H, W)

    layers, reports = repair_batch(scores, pins)

    assert layers.shape == labels.shape
    assert all(report.legal_after for report in reports)
    for net in range(len(reports)):
        assert check_net(layers[net], pins[net]).violations == []


def test_noisy_labels_repaired():
    rng = np.random.default_rng(0)
    _, labels, pins = generate_arrays(GenerateConfig(count=150, seed=14))
    noise = rng.random(labels.shape)
    flipped = np.where(noise < 0.03, 1 - labels, labels)  # flip 3% of pixels
    probabilities = np.where(flipped > 0, 0.6 + 0.3 * noise, 0.4 * noise)

    layers, reports = repair_batch(probabilities, pins)

    assert all(report.legal_after for report in reports)
    assert all(check_net(layers[net], pins[net]).legal for net in range(len(reports)))


def test_batch_rejects_mismatched_counts():
    with pytest.raises(InputError, match="pins"):
        repair_batch(np.zeros((3, 8, 16, 16)), np.zeros((2, 5, 2)))
