"""GDSII export of routed nets with gdstk: one cell per net, all placed under one top cell.

Geometry, in µm. With pitch (p_x, p_y) = extent_um / (width, height), grid pixel (x, y) has
its centre at ((x + 0.5) * p_x, (y + 0.5) * p_y) and the window spans (0, 0) to extent_um.
Grid row y maps to µm y without a flip, so y points up as in any layout viewer.

- A wire segment on metal m from pixel a to pixel b is one rectangle. Along the segment it
  spans from the centre of a to the centre of b, extended by w/2 at both ends; across it
  is w wide, where w = Technology.wire_width_um[m]. A single-pixel segment is a w x w square.

          w/2 |<------ centre a to centre b ------>| w/2
          +---+------------------------------------+---+   ^
          |   a                                    b   |   w
          +---+------------------------------------+---+   v

- A via is a square of side Technology.via_size_um centred on its pixel.
- A pin is a square of side Technology.pin_size_um centred on its pixel, on the PIN layer.
  The net's first pin also carries a text label with the net name on that layer.

The top cell places net i at the i-th tile of a grid with ceil(sqrt(N)) columns, left to
right and then downward, with TILE_GAP_UM between windows, because nets are routed
independently and would overlap if placed on one window. Units: 1 µm user unit, 1 nm
database unit.

The layer map gives each `deeproute.stack` layer a (GDS layer, datatype) pair. The default
comes from `stack.LAYERS` (gds_layer, gds_datatype); `parse_layer_map` applies overrides
such as "M3=23/0,VIA3=43/0" or a JSON file {"M3": [23, 0], "VIA3": "43/0"}.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deeproute import stack
from deeproute.errors import InputError
from deeproute.layout import Layout, Segment
from deeproute.tech import DEFAULT_TECH, Technology

logger = logging.getLogger(__name__)

LayerMap = dict[int, tuple[int, int]]  # stack channel -> (GDS layer, datatype)

TOP_CELL = "DEEPROUTE_TOP"
TILE_GAP_UM = 1.0  # empty space between the windows of neighbouring nets in the top cell
UNIT_M = 1e-6  # user unit: 1 µm
PRECISION_M = 1e-9  # database unit: 1 nm
MAX_GDS_NUMBER = 65535  # GDSII stores layer and datatype in 2 bytes; some tools accept only 0-255


@dataclass(frozen=True)
class Placement:
    """Cell name and top-cell position of one net in the GDSII file."""

    cell: str  # name of the net's cell
    origin_um: tuple[float, float]  # position of the cell's (0, 0) in the top cell


def default_layer_map() -> LayerMap:
    """Return the (GDS layer, datatype) of every stack layer as defined in `deeproute.stack`."""
    return {layer.index: (layer.gds_layer, layer.gds_datatype) for layer in stack.LAYERS}


def parse_layer_map(spec: str | os.PathLike | None) -> LayerMap:
    """Return the default layer map with the overrides in `spec` applied.

    Args:
        spec: None for the defaults, inline text "NAME=LAYER[/DATATYPE],...", or the path
            of a JSON object that maps layer names to [layer, datatype], "layer/datatype" or
            a bare layer number. A missing datatype keeps the layer's default.
    """
    layer_map = default_layer_map()
    if spec is None:
        return layer_map
    text = str(spec).strip()
    if text.lower().endswith(".json") or Path(text).is_file():
        overrides = _read_layer_map_file(Path(text))
    else:
        overrides = _parse_layer_map_text(text)

    for name, value in overrides.items():
        try:
            layer = stack.layer_by_name(name)
        except KeyError as error:
            raise InputError(f"GDS layer map: {error.args[0]}") from None
        layer_map[layer.index] = _parse_layer_number(value, layer, f"GDS layer map: {layer.name}")

    _warn_shared_numbers(layer_map)
    return layer_map


def layer_map_names(layer_map: LayerMap) -> dict[str, list[int]]:
    """Return the layer map keyed by layer name, as written to routes.json."""
    return {stack.LAYER_NAMES[channel]: list(numbers) for channel, numbers in sorted(layer_map.items())}


def require_gdstk():
    """Import gdstk, raising InputError with the install command when it is missing."""
    try:
        import gdstk
    except ImportError:
        raise InputError("GDSII export needs gdstk; install it with: pip install gdstk") from None
    return gdstk


def cell_names(net_names: list[str]) -> list[str]:
    """Return a unique GDSII cell name per net: the net name with characters outside
    [A-Za-z0-9_$] replaced by '_', plus a numeric suffix where two would clash."""
    used = {TOP_CELL}
    names = []
    for net_name in net_names:
        base = re.sub(r"[^A-Za-z0-9_$]", "_", net_name)
        name = base
        suffix = 1
        while name in used:
            name = f"{base}_{suffix}"
            suffix += 1
        used.add(name)
        names.append(name)
    return names


def tile_origins(count: int, extent_um: tuple[float, float], gap_um: float = TILE_GAP_UM) -> list[tuple[float, float]]:
    """Return the top-cell origin of each of `count` net windows (see the module docstring)."""
    columns = max(1, math.ceil(math.sqrt(count)))
    step_x = extent_um[0] + gap_um
    step_y = extent_um[1] + gap_um
    return [((i % columns) * step_x, -(i // columns) * step_y) for i in range(count)]


def pixel_centre_um(point: tuple[int, int], pitch_um: tuple[float, float]) -> tuple[float, float]:
    """Return the µm centre of grid pixel (x, y)."""
    return (point[0] + 0.5) * pitch_um[0], (point[1] + 0.5) * pitch_um[1]


def segment_rectangle_um(
    segment: Segment, pitch_um: tuple[float, float], width_um: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return the (lower-left, upper-right) µm corners of a wire segment's rectangle."""
    (x0, y0), (x1, y1) = pixel_centre_um(segment.start, pitch_um), pixel_centre_um(segment.end, pitch_um)
    half = width_um / 2
    return (min(x0, x1) - half, min(y0, y1) - half), (max(x0, x1) + half, max(y0, y1) + half)


def square_um(point: tuple[int, int], pitch_um: tuple[float, float], side_um: float):
    """Return the (lower-left, upper-right) µm corners of a square centred on pixel `point`."""
    x, y = pixel_centre_um(point, pitch_um)
    half = side_um / 2
    return (x - half, y - half), (x + half, y + half)


def write_gds(
    path: str | os.PathLike,
    nets: list[tuple[str, Layout]],
    layer_map: LayerMap | None = None,
    tech: Technology = DEFAULT_TECH,
) -> list[Placement]:
    """Write (net name, Layout) pairs to a GDSII file; return each net's cell and origin."""
    gdstk = require_gdstk()
    layer_map = default_layer_map() if layer_map is None else layer_map
    library = gdstk.Library(name="DEEPROUTE", unit=UNIT_M, precision=PRECISION_M)
    top = library.new_cell(TOP_CELL)
    placements = []
    if nets:
        _warn_wide_shapes(nets[0][1], tech)
        origins = tile_origins(len(nets), nets[0][1].extent_um)
        for (net_name, layout), cell_name, origin in zip(nets, cell_names([n for n, _ in nets]), origins):
            cell = library.new_cell(cell_name)
            _draw_net(gdstk, cell, net_name, layout, layer_map, tech)
            top.add(gdstk.Reference(cell, origin=origin))
            placements.append(Placement(cell=cell_name, origin_um=origin))
    library.write_gds(str(path))
    logger.info("wrote %d nets to %s", len(placements), path)
    return placements


def _draw_net(gdstk, cell, net_name: str, layout: Layout, layer_map: LayerMap, tech: Technology) -> None:
    pitch = layout.pitch_um
    for segment in layout.segments:
        gds_layer, datatype = layer_map[segment.layer]
        lower, upper = segment_rectangle_um(segment, pitch, tech.wire_width_um[segment.layer])
        cell.add(gdstk.rectangle(lower, upper, layer=gds_layer, datatype=datatype))

    for via in layout.vias:
        gds_layer, datatype = layer_map[via.layer]
        lower, upper = square_um(via.at, pitch, tech.via_size_um)
        cell.add(gdstk.rectangle(lower, upper, layer=gds_layer, datatype=datatype))

    pin_layer, pin_datatype = layer_map[stack.PIN]
    for pin in layout.pins:
        lower, upper = square_um(pin, pitch, tech.pin_size_um)
        cell.add(gdstk.rectangle(lower, upper, layer=pin_layer, datatype=pin_datatype))
    if layout.pins:
        label_at = pixel_centre_um(layout.pins[0], pitch)
        cell.add(gdstk.Label(net_name, label_at, layer=pin_layer, texttype=pin_datatype))


def _read_layer_map_file(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: GDS layer map file not found")
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: invalid JSON in GDS layer map ({error})") from error
    if not isinstance(overrides, dict):
        raise InputError(f"{path}: a GDS layer map must be a JSON object such as {{\"M3\": [23, 0]}}")
    return overrides


def _parse_layer_map_text(text: str) -> dict[str, str]:
    overrides = {}
    for entry in text.split(","):
        name, separator, value = entry.partition("=")
        if not separator or not name.strip() or not value.strip():
            raise InputError(f"GDS layer map: invalid entry {entry.strip()!r}; expected NAME=LAYER/DATATYPE such as M3=23/0")
        overrides[name.strip()] = value.strip()
    return overrides


def _parse_layer_number(value, layer: stack.Layer, where: str) -> tuple[int, int]:
    """Turn 23, "23", "23/0" or [23, 0] into (layer, datatype); a bare number keeps the default datatype."""
    if isinstance(value, list) and len(value) == 2:
        parts = value
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value, layer.gds_datatype]
    elif isinstance(value, str) and re.fullmatch(r"\d+(/\d+)?", value.strip()):
        numbers = [int(part) for part in value.strip().split("/")]
        parts = numbers if len(numbers) == 2 else [numbers[0], layer.gds_datatype]
    else:
        raise InputError(f"{where}: expected LAYER/DATATYPE such as 23/0, got {value!r}")
    for part in parts:
        if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= MAX_GDS_NUMBER:
            raise InputError(f"{where}: layer and datatype must be integers from 0 to {MAX_GDS_NUMBER}, got {value!r}")
    return int(parts[0]), int(parts[1])


def _warn_shared_numbers(layer_map: LayerMap) -> None:
    owners: dict[tuple[int, int], list[str]] = {}
    for channel, numbers in layer_map.items():
        owners.setdefault(numbers, []).append(stack.LAYER_NAMES[channel])
    for numbers, names in owners.items():
        if len(names) > 1:
            logger.warning("GDS layer %d/%d is shared by %s; their shapes will merge", *numbers, " and ".join(names))


def _warn_wide_shapes(layout: Layout, tech: Technology) -> None:
    pitch = min(layout.pitch_um)
    widest = max(*tech.wire_width_um.values(), tech.via_size_um)
    if widest >= pitch:
        logger.warning(
            "shapes up to %.3f µm wide exceed the %.3f µm grid pitch, so neighbouring tracks will touch in the GDSII file",
            widest, pitch,
        )
