"""Properties of random pin placement (`sample_pins`)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deeproute.generate.pins import sample_pins


@st.composite
def placements(draw):
    """(seed, count, height, width, pin_range) with a pin range that fits the grid."""
    height = draw(st.integers(4, 40))
    width = draw(st.integers(4, 40))
    high = draw(st.integers(2, min(height * width, 40)))
    low = draw(st.integers(2, high))
    count = draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    return seed, count, height, width, (low, high)


def draw_pins(seed, count, height, width, pin_range):
    return sample_pins(np.random.default_rng(seed), count, height, width, pin_range)


@settings(max_examples=200, deadline=None)
@given(placements())
def test_pin_array_shape_and_dtype(placement):
    _, count, _, _, (_, high) = placement
    pins = draw_pins(*placement)
    assert pins.shape == (count, high, 2)
    assert pins.dtype == np.int16


@settings(max_examples=200, deadline=None)
@given(placements())
def test_pins_inside_grid(placement):
    _, _, height, width, _ = placement
    pins = draw_pins(*placement)
    valid = pins[..., 0] >= 0
    assert (pins[..., 0][valid] < width).all()
    assert (pins[..., 1][valid] >= 0).all()
    assert (pins[..., 1][valid] < height).all()


@settings(max_examples=200, deadline=None)
@given(placements())
def test_padding_is_minus_one_after_valid_pins(placement):
    pins = draw_pins(*placement)
    valid = pins[..., 0] >= 0
    assert (pins[~valid] == -1).all()
    assert (pins[..., 1][valid] >= 0).all()
    # Valid slots come first: once a slot is padding, every later slot is padding too.
    assert (valid[:, 1:] <= valid[:, :-1]).all()


@settings(max_examples=200, deadline=None)
@given(placements())
def test_pin_counts_within_range(placement):
    _, _, _, _, (low, high) = placement
    counts = (draw_pins(*placement)[..., 0] >= 0).sum(axis=1)
    assert counts.min() >= low
    assert counts.max() <= high


@settings(max_examples=200, deadline=None)
@given(placements())
def test_pins_of_a_net_are_distinct(placement):
    for net in draw_pins(*placement):
        cells = [tuple(pin) for pin in net.tolist() if pin[0] >= 0]
        assert len(set(cells)) == len(cells), cells


def test_full_grid_net_uses_every_cell():
    # 16 pins on a 4x4 grid is only possible as a permutation of all cells, which the
    # rejection rounds essentially never find, so this exercises the exact fallback draw.
    pins = draw_pins(5, 50, 4, 4, (16, 16))
    every_cell = {(x, y) for x in range(4) for y in range(4)}
    for net in pins:
        assert {tuple(pin) for pin in net.tolist()} == every_cell


def test_same_seed_same_pins():
    first = draw_pins(11, 500, 32, 32, (2, 5))
    second = draw_pins(11, 500, 32, 32, (2, 5))
    assert np.array_equal(first, second)


def test_different_seed_different_pins():
    first = draw_pins(11, 500, 32, 32, (2, 5))
    second = draw_pins(12, 500, 32, 32, (2, 5))
    assert not np.array_equal(first, second)


def test_pin_counts_are_uniform():
    counts = (draw_pins(3, 40_000, 32, 32, (2, 5))[..., 0] >= 0).sum(axis=1)
    shares = np.bincount(counts, minlength=6)[2:] / counts.size
    # Each of the 4 counts should take 25 %; the standard error at 40,000 nets is 0.2 %.
    assert np.allclose(shares, 0.25, atol=0.015), shares


def test_cells_are_uniform_for_dense_nets():
    # Pin ranges up to the full 4x4 grid mix the rejection draw and the exact fallback,
    # and both must leave every cell equally likely.
    pins = draw_pins(4, 20_000, 4, 4, (2, 16))
    valid = pins[..., 0] >= 0
    cells = pins[..., 1][valid].astype(np.int64) * 4 + pins[..., 0][valid]
    per_cell = np.bincount(cells, minlength=16)
    assert np.allclose(per_cell / per_cell.mean(), 1.0, atol=0.05), per_cell


def test_cells_are_uniform_for_sparse_nets():
    pins = draw_pins(6, 40_000, 8, 8, (2, 5))
    valid = pins[..., 0] >= 0
    cells = pins[..., 1][valid].astype(np.int64) * 8 + pins[..., 0][valid]
    per_cell = np.bincount(cells, minlength=64)
    # About 2,200 pins per cell, so a 10 % band is more than 4 standard errors wide.
    assert np.allclose(per_cell / per_cell.mean(), 1.0, atol=0.1), per_cell
