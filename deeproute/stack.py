"""The layout layer stack: channel order, names, preferred directions, via pairs, colours.

This module is the single definition of the 8 layers that every array in deeproute
uses, in the channel order of Jain & Okabe (2017), "Training a Fully Convolutional
Neural Network to Route Integrated Circuits". Arrays are indexed `[layer, y, x]`:
rows are y and columns are x.

    channel  name  kind  direction   joins
    0        PIN   pin   -           (M2 pin shapes)
    1        M3    metal vertical
    2        VIA3  via   -           M3 - M4
    3        M4    metal horizontal
    4        VIA4  via   -           M4 - M5
    5        M5    metal vertical
    6        VIA5  via   -           M5 - M6
    7        M6    metal horizontal
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(str, Enum):
    """Preferred routing direction of a metal layer."""

    HORIZONTAL = "horizontal"  # along x, within one row
    VERTICAL = "vertical"  # along y, within one column


@dataclass(frozen=True)
class Layer:
    """One channel of the layout encoding."""

    index: int  # channel index in (N, 8, H, W) arrays
    name: str
    kind: str  # "pin", "metal" or "via"
    colour: str  # matplotlib colour used by every figure
    gds_layer: int  # default GDSII layer number
    direction: Direction | None = None  # metals only
    below: int | None = None  # vias only: channel of the metal underneath
    above: int | None = None  # vias only: channel of the metal on top
    gds_datatype: int = 0  # default GDSII datatype, paired with gds_layer


# Colours are chosen so that adjacent layers differ in hue and vias stand out as dark squares.
LAYERS: tuple[Layer, ...] = (
    Layer(0, "PIN", "pin", "#000000", 12),
    Layer(1, "M3", "metal", "#1f77b4", 13, direction=Direction.VERTICAL),
    Layer(2, "VIA3", "via", "#17becf", 33, below=1, above=3),
    Layer(3, "M4", "metal", "#d62728", 14, direction=Direction.HORIZONTAL),
    Layer(4, "VIA4", "via", "#8c564b", 34, below=3, above=5),
    Layer(5, "M5", "metal", "#2ca02c", 15, direction=Direction.VERTICAL),
    Layer(6, "VIA5", "via", "#9467bd", 35, below=5, above=7),
    Layer(7, "M6", "metal", "#ff7f0e", 16, direction=Direction.HORIZONTAL),
)

NUM_LAYERS = len(LAYERS)
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)
LAYER_INDEX: dict[str, int] = {layer.name: layer.index for layer in LAYERS}

PIN = LAYER_INDEX["PIN"]
M3, VIA3, M4 = LAYER_INDEX["M3"], LAYER_INDEX["VIA3"], LAYER_INDEX["M4"]
VIA4, M5, VIA5, M6 = LAYER_INDEX["VIA4"], LAYER_INDEX["M5"], LAYER_INDEX["VIA5"], LAYER_INDEX["M6"]

METALS: tuple[int, ...] = tuple(layer.index for layer in LAYERS if layer.kind == "metal")
VIAS: tuple[int, ...] = tuple(layer.index for layer in LAYERS if layer.kind == "via")
HORIZONTAL_METALS: tuple[int, ...] = tuple(
    layer.index for layer in LAYERS if layer.direction is Direction.HORIZONTAL
)
VERTICAL_METALS: tuple[int, ...] = tuple(
    layer.index for layer in LAYERS if layer.direction is Direction.VERTICAL
)
# (via channel, metal below, metal above) for each via layer, bottom to top.
VIA_PAIRS: tuple[tuple[int, int, int], ...] = tuple(
    (layer.index, layer.below, layer.above) for layer in LAYERS if layer.kind == "via"
)


def layer_by_name(name: str) -> Layer:
    """Look a layer up by its name (case-insensitive), raising KeyError with the valid names."""
    key = name.upper()
    if key not in LAYER_INDEX:
        raise KeyError(f"unknown layer {name!r}; expected one of {', '.join(LAYER_NAMES)}")
    return LAYERS[LAYER_INDEX[key]]
