"""Convert between 8-layer on/off maps and Layout geometry (segments, vias, pins).

`decode` reads each metal layer as maximal straight runs along the layer's preferred
direction; `encode` draws a Layout back into a map. The two are exact inverses on any
0/1 map. A metal pixel with no neighbour along its direction becomes a single-pixel
segment. Vias are stored pixel by pixel as drawn, so a via without metal on both sides
survives the round trip. `deeproute.check` reports such vias as floating.

    M4 (horizontal) row y:   . # # # . # .      ->  Segment(M4, (1, y), (3, y))
                                                     Segment(M4, (5, y), (5, y))
"""

from __future__ import annotations

import numpy as np

from deeproute import stack
from deeproute.errors import InputError
from deeproute.layout import Layout, Segment, Via


def check_layers(layers, name: str = "layers") -> np.ndarray:
    """Return `layers` as a bool (8, H, W) array, raising InputError on another shape or values.

    Accepts numpy arrays and anything `np.asarray` converts (bool, integer or float 0/1).
    """
    array = np.asarray(layers)
    if array.ndim != 3 or array.shape[0] != stack.NUM_LAYERS:
        raise InputError(f"{name} must have shape ({stack.NUM_LAYERS}, H, W), got {array.shape}")
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.integer):
        binary = array.size == 0 or (array.min() >= 0 and array.max() <= 1)
    else:
        binary = bool(((array == 0) | (array == 1)).all())
    if not binary:
        raise InputError(f"{name} must hold only 0 and 1; threshold scores before decoding")
    return array.astype(bool)


def decode(layers, extent_um: tuple[float, float] = (11.0, 11.0)) -> Layout:
    """Decode an (8, H, W) on/off map into wire segments, vias and pins.

    Args:
        layers: 0/1 or bool (8, H, W) map in `deeproute.stack` channel order.
        extent_um: (x, y) physical size of the grid in µm; sets `Layout.pitch_um`.

    Returns:
        A Layout whose segments are listed per metal layer, bottom to top, in row-major
        order of their start points. The metals a via joins are
        `stack.LAYERS[via.layer].below` and `.above`.
    """
    on = check_layers(layers)
    _, height, width = on.shape
    layout = Layout(height=height, width=width, extent_um=tuple(float(e) for e in extent_um))

    pin_y, pin_x = np.nonzero(on[stack.PIN])
    layout.pins = [(int(x), int(y)) for y, x in zip(pin_y, pin_x)]

    for metal in stack.METALS:
        layout.segments.extend(_runs(on[metal], metal))

    for via, _, _ in stack.VIA_PAIRS:
        via_y, via_x = np.nonzero(on[via])
        layout.vias.extend(Via(via, (int(x), int(y))) for y, x in zip(via_y, via_x))
    return layout


def _runs(plane: np.ndarray, metal: int) -> list[Segment]:
    """Return the maximal runs of `plane` (H, W) along the preferred direction of `metal`."""
    horizontal = stack.LAYERS[metal].direction is stack.Direction.HORIZONTAL
    lines = plane if horizontal else plane.T  # each row of `lines` is one track
    padded = np.zeros((lines.shape[0], lines.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = lines
    steps = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past where it ends
    start_track, start_along = np.nonzero(steps == 1)
    _, stop_along = np.nonzero(steps == -1)  # row-major order pairs each stop with its start

    segments = []
    for track, first, last in zip(start_track.tolist(), start_along.tolist(), (stop_along - 1).tolist()):
        if horizontal:
            segments.append(Segment(metal, (first, track), (last, track)))
        else:
            segments.append(Segment(metal, (track, first), (track, last)))
    if not horizontal:
        segments.sort(key=lambda s: (s.start[1], s.start[0]))
    return segments


def encode(layout: Layout) -> np.ndarray:
    """Draw a Layout into a uint8 (8, H, W) on/off map; the inverse of `decode`.

    Raises InputError when a segment is not straight along its layer's direction, lies on a
    non-metal channel, or any shape falls outside the grid.
    """
    layers = np.zeros((stack.NUM_LAYERS, layout.height, layout.width), dtype=np.uint8)
    for x, y in layout.pins:
        _check_inside(layout, (x, y), "pin")
        layers[stack.PIN, y, x] = 1

    for segment in layout.segments:
        if segment.layer not in stack.METALS:
            raise InputError(f"segment {segment} is on channel {segment.layer}, which is not a metal layer")
        (x0, y0), (x1, y1) = segment.start, segment.end
        _check_inside(layout, segment.start, "segment start")
        _check_inside(layout, segment.end, "segment end")
        horizontal = stack.LAYERS[segment.layer].direction is stack.Direction.HORIZONTAL
        straight = y0 == y1 if horizontal else x0 == x1
        if not straight or x0 > x1 or y0 > y1:
            raise InputError(
                f"segment {segment} must run along the preferred direction of "
                f"{stack.LAYER_NAMES[segment.layer]} with start <= end"
            )
        layers[segment.layer, y0 : y1 + 1, x0 : x1 + 1] = 1

    for via in layout.vias:
        if via.layer not in stack.VIAS:
            raise InputError(f"via {via} is on channel {via.layer}, which is not a via layer")
        _check_inside(layout, via.at, "via")
        layers[via.layer, via.at[1], via.at[0]] = 1
    return layers


def _check_inside(layout: Layout, point: tuple[int, int], what: str) -> None:
    x, y = point
    if not (0 <= x < layout.width and 0 <= y < layout.height):
        raise InputError(f"{what} at (x, y) = {point} lies outside the {layout.height}x{layout.width} grid")
