"""The trunk-and-leg label rule of Jain & Okabe (2017), reproduced exactly and vectorized.

For each net with pins (x_i, y_i):

1. Spans in µm: xlen = (max x - min x) * pitch_x, ylen = (max y - min y) * pitch_y.
2. Wire classes from the resistance of a wire on each metal (`Technology.wire_ohm`).
   If xlen > ylen: horizontal M6 and vertical M5 when R_M4 > R_M6; otherwise horizontal
   M4 and vertical M5 if R_M3 > R_M5, else M3. If xlen <= ylen: vertical M3 and horizontal
   M4 when R_M5 > R_M3; otherwise vertical M5 and horizontal M6 if R_M4 > R_M6, else M4.
3. With x̄ = floor(mean x) and ȳ = floor(mean y): if xlen > ylen, a horizontal trunk at
   row ȳ from min x to max x and a vertical leg from each pin to row ȳ; otherwise a
   vertical trunk at column x̄ from min y to max y and a horizontal leg from each pin to x̄.
   Legs are omitted when the span across the trunk is zero.

        pin o         o pin          horizontal trunk (xlen > ylen):
            |         |              legs on the vertical class run
       ȳ ===+====+====+===           from each pin to the trunk row
                 |
                 o pin

4. A via is placed wherever two adjacent metals overlap.
"""

from __future__ import annotations

import numpy as np

from deeproute import stack
from deeproute.tech import DEFAULT_TECH, Technology

NO_CLASS = -1  # wire class of a direction whose span is zero


def choose_wire_classes(
    xlen: np.ndarray, ylen: np.ndarray, tech: Technology = DEFAULT_TECH
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the horizontal and vertical metal of each net from its spans in µm.

    Returns:
        (horizontal, vertical) int arrays of metal channels, NO_CLASS where a span is zero.
    """
    r_m3 = tech.wire_ohm(stack.M3, ylen)
    r_m4 = tech.wire_ohm(stack.M4, xlen)
    r_m5 = tech.wire_ohm(stack.M5, ylen)
    r_m6 = tech.wire_ohm(stack.M6, xlen)

    wide = xlen > ylen
    # Horizontal trunk: M6/M5 if M6 is cheaper than M4, else M4 with the cheaper of M3/M5.
    wide_h = np.where(r_m4 > r_m6, stack.M6, stack.M4)
    wide_v = np.where(r_m4 > r_m6, stack.M5, np.where(r_m3 > r_m5, stack.M5, stack.M3))
    # Vertical trunk: M3/M4 if M5 costs more than M3, else M5 with the cheaper of M4/M6.
    tall_v = np.where(r_m5 > r_m3, stack.M3, stack.M5)
    tall_h = np.where(r_m5 > r_m3, stack.M4, np.where(r_m4 > r_m6, stack.M6, stack.M4))

    horizontal = np.where(wide, wide_h, tall_h)
    vertical = np.where(wide, wide_v, tall_v)
    horizontal = np.where(xlen > 0, horizontal, NO_CLASS)
    vertical = np.where(ylen > 0, vertical, NO_CLASS)
    return horizontal, vertical


def route_paper(
    pins: np.ndarray,
    height: int,
    width: int,
    extent_um: tuple[float, float],
    tech: Technology = DEFAULT_TECH,
) -> np.ndarray:
    """Route each net with the trunk-and-leg rule and rasterize it into 8 layout layers.

    Args:
        pins: int (N, P, 2) array of (x, y) grid coordinates, padded with -1.
        height, width: grid size in pixels.
        extent_um: (x, y) physical size of the grid in µm.

    Returns:
        uint8 (N, 8, H, W) on/off layout layers in `stack` order.
    """
    count = pins.shape[0]
    valid = pins[..., 0] >= 0  # (N, P)
    px = pins[..., 0].astype(np.int64)
    py = pins[..., 1].astype(np.int64)
    big = np.iinfo(np.int64).max

    x_min = np.where(valid, px, big).min(axis=1)  # (N,)
    x_max = np.where(valid, px, -1).max(axis=1)
    y_min = np.where(valid, py, big).min(axis=1)
    y_max = np.where(valid, py, -1).max(axis=1)
    pin_count = valid.sum(axis=1)
    x_mean = np.floor_divide(np.where(valid, px, 0).sum(axis=1), pin_count)  # floor of the mean
    y_mean = np.floor_divide(np.where(valid, py, 0).sum(axis=1), pin_count)

    xlen = (x_max - x_min) * (extent_um[0] / width)
    ylen = (y_max - y_min) * (extent_um[1] / height)
    horizontal, vertical = choose_wire_classes(xlen, ylen, tech)
    wide = xlen > ylen  # (N,) True: horizontal trunk

    # Each wire is a straight segment: (net, channel, fixed coordinate, lo, hi, is_horizontal).
    # A horizontal segment lies in row `fixed` from column lo to hi; a vertical one in
    # column `fixed` from row lo to hi. Trunk first, then one leg per pin.
    nets = np.arange(count)
    trunk_channel = np.where(wide, horizontal, vertical)
    trunk_fixed = np.where(wide, y_mean, x_mean)
    trunk_lo = np.where(wide, x_min, y_min)
    trunk_hi = np.where(wide, x_max, y_max)

    leg_net, leg_slot = np.nonzero(valid & np.where(wide, ylen > 0, xlen > 0)[:, None])
    leg_wide = wide[leg_net]
    leg_x, leg_y = px[leg_net, leg_slot], py[leg_net, leg_slot]
    leg_target = np.where(leg_wide, y_mean[leg_net], x_mean[leg_net])  # trunk row or column
    leg_from = np.where(leg_wide, leg_y, leg_x)
    leg_channel = np.where(leg_wide, vertical[leg_net], horizontal[leg_net])
    leg_fixed = np.where(leg_wide, leg_x, leg_y)

    seg_net = np.concatenate([nets, leg_net])
    seg_channel = np.concatenate([trunk_channel, leg_channel])
    seg_fixed = np.concatenate([trunk_fixed, leg_fixed])
    seg_lo = np.concatenate([trunk_lo, np.minimum(leg_from, leg_target)])
    seg_hi = np.concatenate([trunk_hi, np.maximum(leg_from, leg_target)])
    seg_horizontal = np.concatenate([wide, ~leg_wide])

    layers = np.zeros((count, stack.NUM_LAYERS, height, width), dtype=np.uint8)
    _draw_segments(layers, seg_net, seg_channel, seg_fixed, seg_lo, seg_hi, seg_horizontal)
    for via, below, above in stack.VIA_PAIRS:
        layers[:, via] = layers[:, below] & layers[:, above]
    layers[:, stack.PIN] = rasterize_pins(pins, height, width)
    return layers


def rasterize_pins(pins: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return a uint8 (N, H, W) map with 1 at every valid pin of each net."""
    count = pins.shape[0]
    image = np.zeros((count, height * width), dtype=np.uint8)
    net, slot = np.nonzero(pins[..., 0] >= 0)
    flat = pins[net, slot, 1].astype(np.int64) * width + pins[net, slot, 0]
    image[net, flat] = 1
    return image.reshape(count, height, width)


def _draw_segments(layers, net, channel, fixed, lo, hi, horizontal) -> None:
    """Set every pixel covered by the given straight segments in `layers` (N, 8, H, W)."""
    _, _, height, width = layers.shape
    lengths = hi - lo + 1  # (S,)
    seg = np.repeat(np.arange(lengths.size), lengths)  # segment of each covered pixel
    starts = np.cumsum(lengths) - lengths
    along = lo[seg] + np.arange(seg.size) - starts[seg]  # coordinate along the segment
    is_h = horizontal[seg]
    y = np.where(is_h, fixed[seg], along)
    x = np.where(is_h, along, fixed[seg])
    plane = net[seg].astype(np.int64) * stack.NUM_LAYERS + channel[seg]
    layers.reshape(-1)[(plane * height + y) * width + x] = 1
