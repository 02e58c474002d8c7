"""Specification tests of the trunk-and-leg label rule (`route_paper`).

Hand-worked cases state their expected pixels in full, worked from the rule rather than
from the code. At the default 32x32 grid over 11 µm the pitch is 0.34375 µm, so the
resistance comparisons reduce to pixel spans:

    R_M4 > R_M6  <=>  7.127 * xlen > 48   <=>  x span >= 20 px  (6.875 µm)
    R_M3 > R_M5  <=>  12.187 * ylen > 84  <=>  y span >= 21 px  (7.21875 µm)

which gives these wire-class pairs (horizontal/vertical):

    horizontal trunk (x span > y span):  x span <= 19 -> M4/M3,  x span >= 20 -> M6/M5
    vertical trunk (x span <= y span):   y span <= 20 -> M4/M3,
                                         y span >= 21 -> M4/M5 if x span <= 19, else M6/M5

M4 with M5 under a horizontal trunk would need xlen < 6.735 µm < 6.893 µm < ylen, which
contradicts xlen > ylen, so that pair only occurs with a vertical trunk.

Pixels are written as (x, y); arrays are indexed [layer, y, x].
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeproute.generate.paper import NO_CLASS, choose_wire_classes, route_paper

# Channel order written out from the format definition, not imported from deeproute.stack.
PIN, M3, VIA3, M4, VIA4, M5, VIA5, M6 = range(8)
NAMES = ("PIN", "M3", "VIA3", "M4", "VIA4", "M5", "VIA5", "M6")
METAL_CHANNELS = (M3, M4, M5, M6)
HORIZONTAL = (M4, M6)
VERTICAL = (M3, M5)
VIA_METALS = {VIA3: (M3, M4), VIA4: (M4, M5), VIA5: (M5, M6)}  # via -> (below, above)


def route_net(pins, height=32, width=32, extent_um=(11.0, 11.0)) -> np.ndarray:
    """Route one net given as a list of (x, y) and return its (8, H, W) layers."""
    batch = np.array([pins], dtype=np.int16)  # (1, P, 2)
    return route_paper(batch, height, width, extent_um)[0]


def on_pixels(layers: np.ndarray, channel: int) -> set[tuple[int, int]]:
    ys, xs = np.nonzero(layers[channel])
    return {(int(x), int(y)) for x, y in zip(xs, ys)}


def row(y: int, x_from: int, x_to: int) -> set[tuple[int, int]]:
    """Pixels (x, y) of row y from x_from to x_to inclusive."""
    return {(x, y) for x in range(x_from, x_to + 1)}


def column(x: int, y_from: int, y_to: int) -> set[tuple[int, int]]:
    """Pixels (x, y) of column x from y_from to y_to inclusive."""
    return {(x, y) for y in range(y_from, y_to + 1)}


def assert_layers(layers: np.ndarray, expected: dict[int, set[tuple[int, int]]]) -> None:
    """Assert that each channel equals its set in `expected`, or is empty when not listed."""
    for channel, name in enumerate(NAMES):
        assert on_pixels(layers, channel) == expected.get(channel, set()), name


# --- hand-worked cases -------------------------------------------------------------------


def test_horizontally_aligned_pins_have_no_legs():
    # x span 7 > y span 0: horizontal trunk on M4 in row 5; the zero vertical span has no class.
    layers = route_net([(3, 5), (10, 5)])
    assert_layers(
        layers,
        {
            PIN: {(3, 5), (10, 5)},
            M4: {(3, 5), (4, 5), (5, 5), (6, 5), (7, 5), (8, 5), (9, 5), (10, 5)},
        },
    )


def test_vertically_aligned_pins_have_no_legs():
    # x span 0 <= y span 7: vertical trunk on M3 in column 7 from row 2 to 9.
    layers = route_net([(7, 2), (7, 9), (7, 4)])
    assert_layers(
        layers,
        {
            PIN: {(7, 2), (7, 9), (7, 4)},
            M3: {(7, 2), (7, 3), (7, 4), (7, 5), (7, 6), (7, 7), (7, 8), (7, 9)},
        },
    )


def test_equal_spans_give_vertical_trunk():
    # x span 4 == y span 4: vertical trunk at x̄ = floor(8 / 2) = 4 on M3, legs on M4.
    layers = route_net([(2, 2), (6, 6)])
    assert_layers(
        layers,
        {
            PIN: {(2, 2), (6, 6)},
            M3: {(4, 2), (4, 3), (4, 4), (4, 5), (4, 6)},
            M4: {(2, 2), (3, 2), (4, 2), (4, 6), (5, 6), (6, 6)},
            VIA3: {(4, 2), (4, 6)},
        },
    )


def test_pin_on_trunk_gets_one_pixel_leg():
    # x span 8 > y span 4: horizontal M4 trunk at ȳ = floor(12 / 3) = 4. Pin (1, 4) sits on
    # the trunk, so its M3 leg is the single pixel under it, joined by a VIA3.
    layers = route_net([(1, 4), (9, 2), (5, 6)])
    assert_layers(
        layers,
        {
            PIN: {(1, 4), (9, 2), (5, 6)},
            M4: {(1, 4), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (7, 4), (8, 4), (9, 4)},
            M3: {(1, 4), (9, 2), (9, 3), (9, 4), (5, 4), (5, 5), (5, 6)},
            VIA3: {(1, 4), (9, 4), (5, 4)},
        },
    )


def test_horizontal_trunk_below_threshold_is_m4_m3():
    # x span 19 (6.53125 µm): R_M4 = 297.25 < R_M6 = 298.70, so M4; y span 1: R_M3 < R_M5, so M3.
    layers = route_net([(0, 0), (19, 1)])
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (19, 1)},
            M4: row(0, 0, 19),
            M3: {(0, 0), (19, 0), (19, 1)},
            VIA3: {(0, 0), (19, 0)},
        },
    )


def test_horizontal_trunk_at_threshold_is_m6_m5():
    # x span 20 (6.875 µm): R_M4 = 305.53 > R_M6 = 304.53, so the trunk moves up to M6 over M5.
    layers = route_net([(0, 0), (20, 1)])
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (20, 1)},
            M6: row(0, 0, 20),
            M5: {(0, 0), (20, 0), (20, 1)},
            VIA5: {(0, 0), (20, 0)},
        },
    )


def test_vertical_trunk_below_threshold_is_m3_m4():
    # y span 20 (6.875 µm): R_M5 = 290.28 > R_M3 = 290.07, so M3 trunk at x̄ = floor(19 / 2) = 9.
    layers = route_net([(0, 0), (19, 20)])
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (19, 20)},
            M3: column(9, 0, 20),
            M4: row(0, 0, 9) | row(20, 9, 19),
            VIA3: {(9, 0), (9, 20)},
        },
    )


def test_vertical_trunk_short_legs_is_m5_m4():
    # y span 21 (7.21875 µm): R_M5 = 296.59 < R_M3 = 300.57, so M5; x span 3: R_M4 < R_M6, so M4.
    # x̄ = floor(7 / 2) = 3.
    layers = route_net([(2, 0), (5, 21)])
    assert_layers(
        layers,
        {
            PIN: {(2, 0), (5, 21)},
            M5: column(3, 0, 21),
            M4: {(2, 0), (3, 0), (3, 21), (4, 21), (5, 21)},
            VIA4: {(3, 0), (3, 21)},
        },
    )


def test_vertical_trunk_long_legs_is_m5_m6():
    # y span 21 gives M5 as above; x span 20 gives R_M4 > R_M6, so M6 legs. x̄ = 10.
    layers = route_net([(0, 0), (20, 21)])
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (20, 21)},
            M5: column(10, 0, 21),
            M6: row(0, 0, 10) | row(21, 10, 20),
            VIA5: {(10, 0), (10, 21)},
        },
    )


def test_trunk_column_is_floor_of_mean():
    # Mean x 3.5: floor gives 3, where rounding (half up or half to even) would give 4.
    layers = route_net([(3, 0), (4, 9)])
    assert on_pixels(layers, M3) == column(3, 0, 9)
    assert on_pixels(layers, M4) == {(3, 0), (3, 9), (4, 9)}
    assert on_pixels(layers, VIA3) == {(3, 0), (3, 9)}


def test_trunk_column_floor_of_half():
    # Mean x 2.5 -> 2.
    layers = route_net([(2, 0), (3, 9)])
    assert on_pixels(layers, M3) == column(2, 0, 9)
    assert on_pixels(layers, M4) == {(2, 0), (2, 9), (3, 9)}


def test_trunk_column_floor_of_two_thirds():
    # Mean x 8/3 = 2.67 -> 2, where rounding would give 3.
    layers = route_net([(0, 0), (4, 5), (4, 9)])
    assert on_pixels(layers, M3) == column(2, 0, 9)
    assert on_pixels(layers, M4) == row(0, 0, 2) | row(5, 2, 4) | row(9, 2, 4)
    assert on_pixels(layers, VIA3) == {(2, 0), (2, 5), (2, 9)}


def test_trunk_row_is_floor_of_mean():
    # Horizontal trunk (x span 9 > y span 3) at ȳ = floor(5 / 2) = 2.
    layers = route_net([(0, 1), (9, 4)])
    assert on_pixels(layers, M4) == row(2, 0, 9)
    assert on_pixels(layers, M3) == column(0, 1, 2) | column(9, 2, 4)


def test_padding_is_ignored():
    # The same net with three -1 padding slots: padding must not pull min, max or mean down.
    padded = route_net([(3, 0), (4, 9), (-1, -1), (-1, -1), (-1, -1)])
    assert on_pixels(padded, PIN) == {(3, 0), (4, 9)}
    assert on_pixels(padded, M3) == column(3, 0, 9)
    assert on_pixels(padded, M4) == {(3, 0), (3, 9), (4, 9)}


def test_non_square_grid_keeps_x_and_y():
    # H=48, W=32 over 11 µm: pitch_x = 0.34375, pitch_y = 0.229 µm. y span 43 = 9.854 µm gives
    # R_M5 = 345.0 < R_M3 = 381.1, so an M5 trunk at x̄ = floor(61 / 2) = 30; x span 1 gives M4.
    layers = route_net([(30, 2), (31, 45)], height=48, width=32)
    assert layers.shape == (8, 48, 32)
    assert_layers(
        layers,
        {
            PIN: {(30, 2), (31, 45)},
            M5: column(30, 2, 45),
            M4: {(30, 2), (30, 45), (31, 45)},
            VIA4: {(30, 2), (30, 45)},
        },
    )


def test_non_square_grid_compares_spans_in_um():
    # H=48, W=32: 2 px across is 0.6875 µm but 2 px down only 0.458 µm, so xlen > ylen and the
    # trunk is horizontal, although the pixel spans tie. ȳ = floor(2 / 2) = 1.
    layers = route_net([(0, 0), (2, 2)], height=48, width=32)
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (2, 2)},
            M4: row(1, 0, 2),
            M3: column(0, 0, 1) | column(2, 1, 2),
            VIA3: {(0, 1), (2, 1)},
        },
    )


def test_extent_is_x_then_y():
    # Extent 22 µm across, 11 µm down on 32x32: xlen = 3 * 0.6875 = 2.06 > ylen = 4 * 0.34375
    # = 1.375, so the trunk is horizontal at ȳ = 2. Swapped extents would make it vertical.
    layers = route_net([(0, 0), (3, 4)], extent_um=(22.0, 11.0))
    assert_layers(
        layers,
        {
            PIN: {(0, 0), (3, 4)},
            M4: row(2, 0, 3),
            M3: column(0, 0, 2) | column(3, 2, 4),
            VIA3: {(0, 2), (3, 2)},
        },
    )


@pytest.mark.parametrize(
    "xlen, ylen, expected",
    [
        (6.875, 0.34375, (M6, M5)),  # horizontal trunk, R_M4 > R_M6
        (6.53125, 0.34375, (M4, M3)),  # horizontal trunk, R_M4 < R_M6 and R_M3 < R_M5
        (0.0, 6.875, (NO_CLASS, M3)),  # vertical trunk, R_M5 > R_M3, no horizontal span
        (1.03125, 7.21875, (M4, M5)),  # vertical trunk, R_M5 < R_M3, R_M4 < R_M6
        (6.875, 7.21875, (M6, M5)),  # vertical trunk, R_M5 < R_M3, R_M4 > R_M6
        (3.0, 0.0, (M4, NO_CLASS)),  # horizontal trunk with no vertical span
        (2.0, 2.0, (M4, M3)),  # tie counts as a vertical trunk: R_M5 > R_M3
    ],
)
def test_wire_classes_from_spans(xlen, ylen, expected):
    horizontal, vertical = choose_wire_classes(np.array([xlen]), np.array([ylen]))
    assert (int(horizontal[0]), int(vertical[0])) == expected


# --- an independent reference implementation ---------------------------------------------


def reference_route(pins, height, width, extent_um) -> np.ndarray:
    """Route one net of (x, y) pins by the rule, written as plain loops over pixels."""
    xs = [x for x, _ in pins]
    ys = [y for _, y in pins]
    xlen = (max(xs) - min(xs)) * (extent_um[0] / width)
    ylen = (max(ys) - min(ys)) * (extent_um[1] / height)
    r_m3 = 30.555 * ylen + 2 * 40.0
    r_m4 = 24.077 * xlen + 2 * (40.0 + 30.0)
    r_m5 = 18.368 * ylen + 2 * (40.0 + 30.0 + 12.0)
    r_m6 = 16.950 * xlen + 2 * (40.0 + 30.0 + 12.0 + 12.0)

    if xlen > ylen:
        if r_m4 > r_m6:
            horizontal, vertical = M6, M5
        else:
            horizontal = M4
            vertical = M5 if r_m3 > r_m5 else M3
    else:
        if r_m5 > r_m3:
            vertical, horizontal = M3, M4
        else:
            vertical = M5
            horizontal = M6 if r_m4 > r_m6 else M4

    x_bar = sum(xs) // len(xs)
    y_bar = sum(ys) // len(ys)
    metal = {channel: set() for channel in METAL_CHANNELS}
    if xlen > ylen:
        for x in range(min(xs), max(xs) + 1):
            metal[horizontal].add((x, y_bar))
        if ylen > 0:
            for x, y in pins:
                for leg_y in range(min(y, y_bar), max(y, y_bar) + 1):
                    metal[vertical].add((x, leg_y))
    else:
        for y in range(min(ys), max(ys) + 1):
            metal[vertical].add((x_bar, y))
        if xlen > 0:
            for x, y in pins:
                for leg_x in range(min(x, x_bar), max(x, x_bar) + 1):
                    metal[horizontal].add((leg_x, y))

    layers = np.zeros((8, height, width), dtype=np.uint8)
    for channel, pixels in metal.items():
        for x, y in pixels:
            layers[channel, y, x] = 1
    for via, (below, above) in VIA_METALS.items():
        for x, y in metal[below] & metal[above]:
            layers[via, y, x] = 1
    for x, y in pins:
        layers[PIN, y, x] = 1
    return layers


def random_nets(rng, count, height, width, max_pins=6):
    """Draw nets of 2..max_pins distinct pins; half of them inside a small window, for ties."""
    nets = []
    for index in range(count):
        if index % 2:
            window_h = int(rng.integers(2, min(height, 9) + 1))
            window_w = int(rng.integers(2, min(width, 9) + 1))
            top = int(rng.integers(0, height - window_h + 1))
            left = int(rng.integers(0, width - window_w + 1))
        else:
            window_h, window_w, top, left = height, width, 0, 0
        pin_count = int(rng.integers(2, min(max_pins, window_h * window_w) + 1))
        cells = rng.choice(window_h * window_w, size=pin_count, replace=False)
        nets.append([(left + int(c) % window_w, top + int(c) // window_w) for c in cells])
    return nets


def pad(nets, slots):
    array = np.full((len(nets), slots, 2), -1, dtype=np.int16)
    for index, net in enumerate(nets):
        array[index, : len(net)] = net
    return array


@pytest.mark.parametrize(
    "height, width, extent_um",
    [(32, 32, (11.0, 11.0)), (48, 32, (11.0, 11.0)), (9, 20, (3.0, 7.5))],
)
def test_route_paper_matches_reference(height, width, extent_um):
    rng = np.random.default_rng(height * 1000 + width)
    nets = random_nets(rng, 1200, height, width)
    routed = route_paper(pad(nets, 6), height, width, extent_um)

    mismatches = [
        index
        for index, net in enumerate(nets)
        if not np.array_equal(routed[index], reference_route(net, height, width, extent_um))
    ]
    assert mismatches == [], f"first mismatching net: {nets[mismatches[0]]}"


def test_reference_nets_cover_every_wire_class():
    # The comparison above is only meaningful if the random nets reach every class pair.
    rng = np.random.default_rng(32 * 1000 + 32)
    nets = random_nets(rng, 1200, 32, 32)
    seen = set()
    for net in nets:
        layers = reference_route(net, 32, 32, (11.0, 11.0))
        seen.add(tuple(channel for channel in METAL_CHANNELS if layers[channel].any()))
    assert {(M3, M4), (M4, M5), (M5, M6), (M3,), (M4,)} <= seen


# --- properties --------------------------------------------------------------------------


def neighbours(channel: int, y: int, x: int):
    """Pixels that a shape at (channel, y, x) touches electrically."""
    if channel == PIN:
        for metal in METAL_CHANNELS:
            yield metal, y, x
        return
    if channel in VIA_METALS:
        below, above = VIA_METALS[channel]
        yield below, y, x
        yield above, y, x
        return
    yield channel, y - 1, x
    yield channel, y + 1, x
    yield channel, y, x - 1
    yield channel, y, x + 1
    yield PIN, y, x
    for via, (below, above) in VIA_METALS.items():
        if channel in (below, above):
            yield via, y, x


def is_connected(layers: np.ndarray) -> bool:
    """Breadth-first search from one pin: True when every on pixel of every layer is reached."""
    on = {tuple(int(v) for v in index) for index in zip(*np.nonzero(layers))}
    pins = [shape for shape in on if shape[0] == PIN]
    if not pins:
        return False
    reached = {pins[0]}
    queue = deque(reached)
    while queue:
        shape = queue.popleft()
        for neighbour in neighbours(*shape):
            if neighbour in on and neighbour not in reached:
                reached.add(neighbour)
                queue.append(neighbour)
    return reached == on


def test_connectivity_checker_sees_a_cut():
    layers = route_net([(2, 2), (6, 6)])
    assert is_connected(layers)
    layers[VIA3, 6, 4] = 0  # drop the via joining the lower leg to the trunk
    assert not is_connected(layers)


def test_connectivity_checker_sees_a_stray_pixel():
    layers = route_net([(2, 2), (6, 6)])
    layers[M5, 20, 20] = 1
    assert not is_connected(layers)


@st.composite
def nets(draw):
    """A grid, an extent and one net of 2..6 distinct pins on it, as (pins, H, W, extent)."""
    height = draw(st.integers(4, 40))
    width = draw(st.integers(4, 40))
    extent_um = draw(st.sampled_from([(11.0, 11.0), (11.0, 5.5), (30.0, 8.0), (4.0, 20.0)]))
    pin_count = draw(st.integers(2, 6))
    cells = draw(
        st.lists(st.integers(0, height * width - 1), min_size=pin_count, max_size=pin_count, unique=True)
    )
    pins = [(cell % width, cell // width) for cell in cells]
    return pins, height, width, extent_um


@settings(max_examples=300, deadline=None)
@given(nets())
def test_every_net_is_connected(net):
    pins, height, width, extent_um = net
    assert is_connected(route_net(pins, height, width, extent_um))


@settings(max_examples=300, deadline=None)
@given(nets())
def test_every_via_has_metal_below_and_above(net):
    layers = route_net(*net)
    for via, (below, above) in VIA_METALS.items():
        lonely = layers[via].astype(bool) & ~(layers[below].astype(bool) & layers[above].astype(bool))
        assert not lonely.any(), NAMES[via]


@settings(max_examples=300, deadline=None)
@given(nets())
def test_pin_layer_holds_exactly_the_pins(net):
    pins, height, width, extent_um = net
    layers = route_net(pins, height, width, extent_um)
    assert on_pixels(layers, PIN) == set(pins)


def runs(line: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) of each run of ones in a 1-D array."""
    padded = np.concatenate([[0], line.astype(np.int8), [0]])
    steps = np.diff(padded)
    return list(zip(np.flatnonzero(steps == 1).tolist(), (np.flatnonzero(steps == -1) - 1).tolist()))


@settings(max_examples=300, deadline=None)
@given(nets())
def test_metals_follow_preferred_direction(net):
    pins, height, width, extent_um = net
    layers = route_net(pins, height, width, extent_um)
    used_horizontal = [m for m in HORIZONTAL if layers[m].any()]
    used_vertical = [m for m in VERTICAL if layers[m].any()]

    # One metal per direction, and every row (horizontal) or column (vertical) of a metal
    # contains one straight run: each leg ends on the trunk, so legs sharing a line overlap.
    assert len(used_horizontal) <= 1
    assert len(used_vertical) <= 1
    for metal in used_horizontal:
        assert all(len(runs(layers[metal, y])) <= 1 for y in range(height)), NAMES[metal]
    for metal in used_vertical:
        assert all(len(runs(layers[metal, :, x])) <= 1 for x in range(width)), NAMES[metal]

    # The trunk metal lies on one line; every leg run crosses that line.
    xs = [x for x, _ in pins]
    ys = [y for _, y in pins]
    xlen = (max(xs) - min(xs)) * (extent_um[0] / width)
    ylen = (max(ys) - min(ys)) * (extent_um[1] / height)
    if xlen > ylen:
        trunk_rows = np.flatnonzero(layers[used_horizontal[0]].any(axis=1))
        assert trunk_rows.size == 1
        for metal in used_vertical:
            for x in np.flatnonzero(layers[metal].any(axis=0)):
                assert layers[metal, trunk_rows[0], x] == 1
    else:
        trunk_columns = np.flatnonzero(layers[used_vertical[0]].any(axis=0))
        assert trunk_columns.size == 1
        for metal in used_horizontal:
            for y in np.flatnonzero(layers[metal].any(axis=1)):
                assert layers[metal, y, trunk_columns[0]] == 1
