"""routes.json: the per-net report that `deeproute route` writes next to routes.gds.

Top level:

    format, format_version   "deeproute-routes", 1
    model                    the checkpoint or engine that routed the nets
    grid                     [height, width] in pixels
    extent_um, pitch_um      [x, y] size of the grid and of one pixel in µm
    gds                      file, top cell, database unit, layer map [layer, datatype] per
                             layer name, and the drawn wire widths, via and pin sizes in µm
    summary                  counts over all nets
    nets                     one entry per net, in the pins file's order

Each net:

    name, pins               pins as (x, y) grid points, in the file's order; pins_um
    connected, repaired      check_net of the repaired map; whether repair changed the prediction
    violations               rule names from check_net (empty for a legal net), with counts
    wirelength_um, via_count as check_net measures them
    repair                   what repair did: state before, paths drawn, pixels added and removed
    wires                    per metal name, the segments as {from, to} grid points and
                             {from_um, to_um} pixel centres with start <= end, plus length_um
    vias                     {layer, at, at_um}
    gds_cell, gds_origin_um  the net's cell and where the top cell places it

A grid point (x, y) has its µm centre at ((x + 0.5) * pitch_x, (y + 0.5) * pitch_y), in the
net's own cell.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from deeproute import stack
from deeproute.export import gds
from deeproute.pinsfile import PinsFile
from deeproute.tech import DEFAULT_TECH, Technology

if TYPE_CHECKING:
    from deeproute.route import RoutedNet

FORMAT = "deeproute-routes"
FORMAT_VERSION = 1
DECIMALS = 6  # µm values are rounded to 1 pm, far below the 1 nm GDSII database unit


def routes_document(
    routed: list[RoutedNet],
    pins_file: PinsFile,
    placements: list[gds.Placement],
    layer_map: gds.LayerMap,
    model: str | None = None,
    tech: Technology = DEFAULT_TECH,
) -> dict:
    """Build the routes.json document of routed nets and their GDSII placements."""
    height, width = pins_file.grid
    pitch = (pins_file.extent_um[0] / width, pins_file.extent_um[1] / height)
    nets = [_net_entry(item, placement, pitch) for item, placement in zip(routed, placements)]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "grid": [height, width],
        "extent_um": list(pins_file.extent_um),
        "pitch_um": [_um(pitch[0]), _um(pitch[1])],
        "gds": {
            "file": "routes.gds",
            "top_cell": gds.TOP_CELL,
            "database_unit_um": gds.PRECISION_M / gds.UNIT_M,
            "layers": gds.layer_map_names(layer_map),
            "wire_width_um": {stack.LAYER_NAMES[m]: tech.wire_width_um[m] for m in stack.METALS},
            "via_size_um": tech.via_size_um,
            "pin_size_um": tech.pin_size_um,
        },
        "summary": {
            "nets": len(nets),
            "connected": sum(net["connected"] for net in nets),
            "legal": sum(net["connected"] and not net["violations"] for net in nets),
            "repaired": sum(net["repaired"] for net in nets),
            "wirelength_um": _um(sum(net["wirelength_um"] for net in nets)),
            "via_count": sum(net["via_count"] for net in nets),
        },
        "nets": nets,
    }


def write_routes_json(path: str | os.PathLike, document: dict) -> None:
    """Write a routes.json document as indented UTF-8 JSON."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def _net_entry(item: RoutedNet, placement: gds.Placement, pitch: tuple[float, float]) -> dict:
    check, report = item.check, item.repair
    wires = {stack.LAYER_NAMES[metal]: [] for metal in stack.METALS}
    for segment in item.layout.segments:
        start_um = gds.pixel_centre_um(segment.start, pitch)
        end_um = gds.pixel_centre_um(segment.end, pitch)
        wires[stack.LAYER_NAMES[segment.layer]].append(
            {
                "from": list(segment.start),
                "to": list(segment.end),
                "from_um": _point_um(start_um),
                "to_um": _point_um(end_um),
                "length_um": _um(abs(end_um[0] - start_um[0]) + abs(end_um[1] - start_um[1])),
            }
        )
    vias = [
        {"layer": stack.LAYER_NAMES[via.layer], "at": list(via.at), "at_um": _point_um(gds.pixel_centre_um(via.at, pitch))}
        for via in item.layout.vias
    ]
    return {
        "name": item.net.name,
        "pins": [list(pin) for pin in item.net.pins],
        "pins_um": [_point_um(gds.pixel_centre_um(pin, pitch)) for pin in item.net.pins],
        "connected": bool(check.connected),
        "repaired": bool(item.repaired),
        "violations": list(check.violations),
        "violation_counts": dict(check.counts),
        "wirelength_um": _um(check.wirelength_um),
        "via_count": int(check.via_count),
        "repair": {
            "connected_before": bool(report.connected_before),
            "legal_before": bool(report.legal_before),
            "paths_added": int(report.paths_added),
            "pixels_added": int(report.pixels_added),
            "pixels_removed": int(report.pixels_removed),
        },
        "wires": wires,
        "vias": vias,
        "gds_cell": placement.cell,
        "gds_origin_um": _point_um(placement.origin_um),
    }


def _um(value: float) -> float:
    return round(float(value), DECIMALS)


def _point_um(point: tuple[float, float]) -> list[float]:
    return [_um(point[0]), _um(point[1])]
