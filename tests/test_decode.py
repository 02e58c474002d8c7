"""Specification tests of `decode` and `encode` between on/off maps and Layout geometry.

Pixels are written as (x, y); arrays are indexed [layer, y, x].
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deeproute.decode import decode, encode
from deeproute.errors import InputError
from deeproute.generate import GenerateConfig
from deeproute.generate.paper import route_paper
from deeproute.generate.writer import generate_arrays
from deeproute.layout import Layout, Segment, Via

PIN, M3, VIA3, M4, VIA4, M5, VIA5, M6 = range(8)


def _empty(height=8, width=8):
    return np.zeros((8, height, width), dtype=np.uint8)


def test_decode_horizontal_runs():
    layers = _empty()
    layers[M4, 2, 1:4] = 1  # (1, 2)-(3, 2)
    layers[M4, 2, 5] = 1  # single pixel (5, 2)
    layers[M4, 6, 0:8] = 1  # full row (0, 6)-(7, 6)

    layout = decode(layers)

    assert layout.segments == [
        Segment(M4, (1, 2), (3, 2)),
        Segment(M4, (5, 2), (5, 2)),
        Segment(M4, (0, 6), (7, 6)),
    ]


def test_decode_vertical_runs():
    layers = _empty()
    layers[M5, 1:5, 2] = 1  # (2, 1)-(2, 4)
    layers[M5, 0, 6] = 1  # single pixel (6, 0)

    layout = decode(layers)

    assert layout.segments == [Segment(M5, (6, 0), (6, 0)), Segment(M5, (2, 1), (2, 4))]


def test_decode_wrong_way_pixels_are_single_segments():
    layers = _empty()
    layers[M3, 3, 1:4] = 1  # three M3 pixels in a row, across M3's vertical direction

    layout = decode(layers)

    assert layout.segments == [Segment(M3, (x, 3), (x, 3)) for x in (1, 2, 3)]
    assert all(segment.pixels == 1 for segment in layout.segments)


def test_decode_vias_and_pins():
    layers = _empty()
    layers[PIN, 4, 1] = 1
    layers[PIN, 0, 7] = 1
    layers[VIA4, 5, 3] = 1
    layers[VIA3, 2, 2] = 1

    layout = decode(layers)

    assert layout.pins == [(7, 0), (1, 4)]
    assert layout.vias == [Via(VIA3, (2, 2)), Via(VIA4, (3, 5))]


def test_decode_grid_and_pitch():
    layout = decode(_empty(height=16, width=32), extent_um=(11.0, 8.0))

    assert (layout.height, layout.width) == (16, 32)
    assert layout.pitch_um == (11.0 / 32, 8.0 / 16)


def test_decode_rejects_bad_shape():
    with pytest.raises(InputError, match="shape"):
        decode(np.zeros((7, 4, 4), dtype=np.uint8))


def test_decode_rejects_non_binary_values():
    layers = _empty()
    layers[M4, 0, 0] = 2
    with pytest.raises(InputError, match="only 0 and 1"):
        decode(layers)


def test_encode_hand_layout():
    layout = Layout(
        height=4,
        width=5,
        pins=[(0, 1)],
        segments=[Segment(M4, (0, 1), (3, 1)), Segment(M3, (3, 0), (3, 3))],
        vias=[Via(VIA3, (3, 1))],
    )

    layers = encode(layout)

    expected = np.zeros((8, 4, 5), dtype=np.uint8)
    expected[PIN, 1, 0] = 1
    expected[M4, 1, 0:4] = 1
    expected[M3, 0:4, 3] = 1
    expected[VIA3, 1, 3] = 1
    assert layers.dtype == np.uint8
    assert np.array_equal(layers, expected)


@pytest.mark.parametrize(
    "segment",
    [
        Segment(M4, (0, 0), (0, 2)),  # vertical run on a horizontal metal
        Segment(M3, (0, 0), (2, 0)),  # horizontal run on a vertical metal
        Segment(M4, (3, 0), (1, 0)),  # start after end
        Segment(VIA3, (0, 0), (0, 0)),  # not a metal channel
        Segment(M4, (0, 0), (9, 0)),  # leaves the grid
    ],
)
def test_encode_rejects_bad_segment(segment):
    layout = Layout(height=4, width=4, segments=[segment])
    with pytest.raises(InputError):
        encode(layout)


def test_encode_rejects_pin_outside_grid():
    with pytest.raises(InputError, match="outside"):
        encode(Layout(height=4, width=4, pins=[(4, 0)]))


@settings(max_examples=150, deadline=None)
@given(arrays(np.uint8, st.tuples(st.just(8), st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 1)))
def test_round_trip_random_maps(layers):
    assert np.array_equal(encode(decode(layers)), layers)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 31), st.integers(0, 31)), min_size=2, max_size=5))
def test_round_trip_generated_labels(pins):
    padded = np.full((1, 5, 2), -1, dtype=np.int16)
    padded[0, : len(pins)] = sorted(pins)
    label = route_paper(padded, 32, 32, (11.0, 11.0))[0]

    assert np.array_equal(encode(decode(label)), label)


def test_round_trip_generator_batch():
    _, labels, _ = generate_arrays(GenerateConfig(count=200, seed=11))

    for label in labels:
        assert np.array_equal(encode(decode(label)), label)
