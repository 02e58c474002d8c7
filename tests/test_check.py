"""Specification tests of `check_net` on hand-made nets and generated labels.

Hand-made nets sit on a 16x16 grid of extent 16 µm, so one pitch is 1 µm.
Pixels are written as (x, y); arrays are indexed [layer, y, x].
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeproute.check import NetCheck, check_net, wirelength_um
from deeproute.errors import InputError
from deeproute.generate import GenerateConfig
from deeproute.generate.paper import route_paper
from deeproute.generate.writer import generate_arrays

PIN, M3, VIA3, M4, VIA4, M5, VIA5, M6 = range(8)
EXTENT = (16.0, 16.0)


def _net(*pins):
    """An empty 16x16 map with the given (x, y) pins on channel 0."""
    layers = np.zeros((8, 16, 16), dtype=np.uint8)
    for x, y in pins:
        layers[PIN, y, x] = 1
    return layers


def _trunk_net():
    """Pins (2, 5) and (9, 5) joined by an M4 trunk along row 5."""
    layers = _net((2, 5), (9, 5))
    layers[M4, 5, 2:10] = 1
    return layers


def test_trunk_is_clean():
    result = check_net(_trunk_net(), extent_um=EXTENT)

    assert result == NetCheck(connected=True, violations=[], counts={}, wirelength_um=7.0, via_count=0)
    assert result.legal


def test_gap_in_trunk_is_open():
    layers = _trunk_net()
    layers[M4, 5, 5] = 0

    result = check_net(layers, extent_um=EXTENT)

    assert not result.connected
    assert result.counts == {"open": 1}
    assert result.wirelength_um == 5.0  # runs of 3 and 4 pixels: 2 + 3 pitches


def test_three_separate_pins_count_two_opens():
    result = check_net(_net((1, 1), (5, 5), (9, 9)), extent_um=EXTENT)

    assert result.counts == {"open": 2}


def test_leg_with_via_is_clean():
    layers = _net((2, 5), (9, 5), (6, 1))
    layers[M4, 5, 2:10] = 1
    layers[M3, 1:6, 6] = 1  # leg from pin (6, 1) down to the trunk
    layers[VIA3, 5, 6] = 1

    result = check_net(layers, extent_um=EXTENT)

    assert result.legal
    assert result.wirelength_um == 7.0 + 4.0
    assert result.via_count == 1


def test_missing_via_is_open():
    layers = _net((2, 5), (9, 5), (6, 1))
    layers[M4, 5, 2:10] = 1
    layers[M3, 1:6, 6] = 1  # overlaps the trunk at (6, 5), but no VIA3 is drawn there

    result = check_net(layers, extent_um=EXTENT)

    assert not result.connected
    assert result.counts == {"open": 1}


def test_wrong_way_jog_counted_per_contact():
    layers = _net((2, 5), (5, 5))
    layers[M3, 5, 2:6] = 1  # M3 is vertical; this row of 4 pixels makes 3 sideways contacts

    result = check_net(layers, extent_um=EXTENT)

    assert result.connected
    assert result.counts == {"wrong_way:M3": 3}
    assert result.violations == ["wrong_way:M3"]
    assert not result.legal
    assert result.wirelength_um == 0.0  # four single-pixel segments


def test_adjacent_parallel_legs_are_not_jogs():
    layers = _net((3, 0), (4, 0), (4, 6))
    layers[M4, 6, 3:5] = 1  # short trunk along row 6
    layers[M3, 0:7, 3] = 1  # two legs on neighbouring tracks, touching sideways all the way
    layers[M3, 0:7, 4] = 1
    layers[VIA3, 6, 3:5] = 1

    result = check_net(layers, extent_um=EXTENT)

    assert result.legal


def test_floating_via_without_metal_above():
    layers = _trunk_net()
    layers[VIA4, 5, 4] = 1  # M4 below, no M5 above

    result = check_net(layers, extent_um=EXTENT)

    assert result.connected
    assert result.counts == {"floating_via:VIA4": 1}
    assert result.via_count == 1


def test_floating_metal_counted_per_segment():
    layers = _trunk_net()
    layers[M5, 8:11, 12] = 1  # a 3-pixel segment joined to nothing
    layers[M5, 12, 1] = 1  # a single pixel joined to nothing

    result = check_net(layers, extent_um=EXTENT)

    assert result.connected
    assert result.counts == {"floating_metal:M5": 2}
    assert result.wirelength_um == 7.0 + 2.0


def test_sideways_metal_is_jog_not_floating():
    layers = _trunk_net()
    layers[M4, 6, 3:6] = 1  # a parallel run in row 6 that touches the trunk from below

    result = check_net(layers, extent_um=EXTENT)

    assert result.counts == {"wrong_way:M4": 3}


def test_sideways_contact_joins_whole_component():
    layers = _net((2, 5), (9, 5), (6, 1))
    layers[M4, 5, 2:10] = 1
    layers[M3, 1:6, 6] = 1  # an M3 leg joined to the trunk by a via
    layers[VIA3, 5, 6] = 1
    layers[M4, 4, 8:11] = 1  # an M4 run in row 4 that touches the trunk only from above

    result = check_net(layers, extent_um=EXTENT)

    assert result.connected
    assert result.counts == {"wrong_way:M4": 2}  # contacts at x = 8 and 9; no floating metal


def test_pins_argument_overrides_channel_zero():
    layers = _trunk_net()
    layers[PIN] = 0

    with_pins = check_net(layers, pins=[(2, 5), (9, 5), (-1, -1)], extent_um=EXTENT)
    other_pins = check_net(layers, pins=[(2, 5), (12, 12)], extent_um=EXTENT)

    assert with_pins.legal
    assert other_pins.counts == {"open": 1}


def test_pin_joins_any_metal_at_its_pixel():
    layers = _net((2, 5), (9, 5))
    layers[M6, 5, 2:10] = 1  # M6 straight over both pins, no via stack down to M2

    assert check_net(layers, extent_um=EXTENT).legal


def test_net_without_pins_has_only_floating_metal():
    layers = _trunk_net()
    layers[PIN] = 0

    result = check_net(layers, extent_um=EXTENT)

    assert result.connected
    assert result.counts == {"floating_metal:M4": 1}


def test_pin_outside_grid_rejected():
    with pytest.raises(InputError, match="outside"):
        check_net(_trunk_net(), pins=[(2, 5), (16, 5)])


def test_wirelength_uses_each_direction_pitch():
    layers = np.zeros((8, 32, 16), dtype=np.uint8)
    layers[M6, 0, 0:5] = 1  # 4 pitches along x of 11 / 16 µm
    layers[M3, 0:3, 0] = 1  # 2 pitches along y of 8 / 32 µm

    assert wirelength_um(layers, extent_um=(11.0, 8.0)) == pytest.approx(4 * 11 / 16 + 2 * 8 / 32)


@settings(max_examples=80, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 31), st.integers(0, 31)), min_size=2, max_size=5))
def test_generated_labels_check_clean(pins):
    padded = np.full((1, 5, 2), -1, dtype=np.int16)
    padded[0, : len(pins)] = sorted(pins)
    label = route_paper(padded, 32, 32, (11.0, 11.0))[0]

    result = check_net(label, padded[0])

    assert result.connected
    assert result.violations == []


def test_generator_batch_checks_clean():
    _, labels, pins = generate_arrays(GenerateConfig(count=300, seed=12))

    failures = [net for net in range(len(labels)) if not check_net(labels[net], pins[net]).legal]

    assert failures == []
