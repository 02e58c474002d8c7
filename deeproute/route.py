"""Batch routing: a pins file in, repaired and checked routes out as JSON, GDSII and a figure.

    PinsFile --pin maps (N, 1, H, W)--> scorer --scores (N, 16, H, W)--> repair, per net
        --> layers (8, H, W) --> decode (Layout) and check_net (NetCheck) --> RoutedNet

`route_nets` is the library entry point. `route_pins_file` adds the file handling of the
`deeproute route` command. It validates every input first, then writes DIR/routes.json,
DIR/routes.gds and DIR/routes.png into a staging directory, which replaces DIR only after
all three are written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from deeproute.check import NetCheck, check_net
from deeproute.decode import decode
from deeproute.device import resolve_device
from deeproute.errors import InputError
from deeproute.layout import Layout
from deeproute.outputs import check_output_dir, staged_directory
from deeproute.pinsfile import Net, PinsFile, read_pins_file
from deeproute.repair import RepairReport, repair
from deeproute.tech import DEFAULT_PIN_RANGE

logger = logging.getLogger(__name__)

# Maps float32 pin maps (N, 1, H, W) to float32 (off, on) scores (N, 16, H, W).
Scorer = Callable[[np.ndarray], np.ndarray]

ROUTES_JSON = "routes.json"
ROUTES_GDS = "routes.gds"
ROUTES_FIGURE = "routes.png"
OUTPUT_NAMES = (ROUTES_JSON, ROUTES_GDS, ROUTES_FIGURE)


@dataclass
class RoutedNet:
    """One net after inference, repair and checking."""

    net: Net
    predicted: np.ndarray  # uint8 (8, H, W): the comparator output of the network
    layers: np.ndarray  # uint8 (8, H, W): the repaired map, PIN channel set to the pins
    layout: Layout  # geometry of `layers`
    check: NetCheck  # check_net of `layers`
    repair: RepairReport

    @property
    def repaired(self) -> bool:
        """True when repair changed the routing channels of the prediction."""
        return self.repair.changed


def torch_scorer(model: torch.nn.Module, device: str = "auto") -> Scorer:
    """Wrap a float RoutingFCN in eval mode as a Scorer on `device`."""
    target = resolve_device(device)
    model = model.to(target).eval()

    def score(pin_maps: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(pin_maps).to(target)
            return model(inputs).float().cpu().numpy()

    return score


def load_int8_scorer(directory: str | os.PathLike, grid: tuple[int, int]) -> Scorer:
    """Load an integer model folder as a Scorer, raising InputError when its grid is not `grid`."""
    from deeproute.quant.integer import load_int8_engine

    engine = load_int8_engine(directory)
    if tuple(engine.grid) != tuple(grid):
        raise InputError(
            f"{directory}: model was trained on a {engine.grid[0]}x{engine.grid[1]} grid, "
            f"but the data is {grid[0]}x{grid[1]}"
        )
    scale = 2.0 ** engine.score_exponent  # integer scores times this are the float scores

    def score(pin_maps: np.ndarray) -> np.ndarray:
        return engine.scores(pin_maps.astype(np.uint8)).astype(np.float32) * np.float32(scale)

    return score


def predict_scores(scorer: Scorer, pin_maps: np.ndarray, batch_size: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, scores (n, 16, H, W)) for consecutive batches of uint8 pin maps (N, 1, H, W)."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, pin_maps.shape[0], batch_size):
        batch = pin_maps[start : start + batch_size].astype(np.float32)
        yield start, np.asarray(scorer(batch), dtype=np.float32)


def route_nets(pins_file: PinsFile, scorer: Scorer, batch_size: int = 256) -> list[RoutedNet]:
    """Route every net of `pins_file`: infer in batches, then repair, decode and check each net."""
    for net in pins_file.nets:
        if len(net.pins) > DEFAULT_PIN_RANGE[1]:
            logger.warning(
                "net %s has %d pins, more than the %d to %d pins of the generator's default nets "
                "that the shipped model was trained on",
                net.name, len(net.pins), *DEFAULT_PIN_RANGE,
            )

    extent = pins_file.extent_um
    routed = []
    for start, scores in predict_scores(scorer, pins_file.pin_maps(), batch_size):
        predicted = (scores[:, 1::2] > scores[:, 0::2]).astype(np.uint8)  # (n, 8, H, W), as compare_scores
        for offset, net_scores in enumerate(scores):
            net = pins_file.nets[start + offset]
            pins = np.array(net.pins, dtype=np.int64)  # (P, 2) as (x, y)
            layers, report = repair(net_scores, pins, extent)
            layout = decode(layers, extent)
            layout.pins = list(net.pins)  # the file's order, so the first pin is the one named first
            routed.append(
                RoutedNet(
                    net=net,
                    predicted=predicted[offset],
                    layers=layers,
                    layout=layout,
                    check=check_net(layers, pins, extent),
                    repair=report,
                )
            )
        logger.info("routed %d of %d nets", len(routed), len(pins_file.nets))
    return routed


def format_net_line(routed: RoutedNet, name_width: int = 0) -> str:
    """Return the one-line summary of a routed net that `deeproute route` prints."""
    check = routed.check
    status = "connected" if check.connected else "OPEN"
    violations = f"{len(check.violations)} violation(s)" if check.violations else "no violations"
    if check.violations:
        violations += f" ({', '.join(check.violations)})"
    return (
        f"{routed.net.name:<{name_width}}  {len(routed.net.pins)} pins  {status}  "
        f"{'repaired' if routed.repaired else 'as predicted'}  "
        f"{check.wirelength_um:.2f} µm  {check.via_count} via{'' if check.via_count == 1 else 's'}  {violations}"
    )


def route_pins_file(
    pins_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    int8_dir: str | os.PathLike | None = None,
    grid: tuple[int, int] | None = None,
    extent_um: tuple[float, float] | None = None,
    gds_layers: str | None = None,
    figure_nets: int = 16,
    batch_size: int = 256,
    device: str = "auto",
    overwrite: bool = False,
) -> list[RoutedNet]:
    """Route a pins file into out_dir/routes.json, routes.gds and routes.png.

    Every input is validated before any file is written, and the files appear in `out_dir`
    only once all three are complete. Earlier routes files in `out_dir` are rejected unless
    `overwrite` is set; other files there are kept.

    Args:
        model_path: float checkpoint; None (with no `int8_dir`) is the shipped model.
        int8_dir: integer model folder from `deeproute.quant`, used in place of a checkpoint.
        grid, extent_um: for CSV pins files, and checked against a JSON file's own values.
        gds_layers: layer map overrides, see `deeproute.export.gds.parse_layer_map`.
        figure_nets: how many nets the overview figure shows, from the first.
        device: for the float model; the integer model runs in numpy on the CPU.
    """
    from deeproute.export import gds
    from deeproute.export.routes_json import routes_document, write_routes_json
    from deeproute.render import save_routes_figure

    if model_path is not None and int8_dir is not None:
        raise InputError("pass either --model or --int8, not both")
    pins_file = read_pins_file(pins_path, grid=grid, extent_um=extent_um)
    layer_map = gds.parse_layer_map(gds_layers)
    gds.require_gdstk()
    if figure_nets < 1:
        raise InputError(f"the figure needs at least 1 net, got {figure_nets}")
    check_output_dir(out_dir, OUTPUT_NAMES, overwrite, "routes")

    if int8_dir is not None:
        scorer = load_int8_scorer(int8_dir, pins_file.grid)
        model_label = f"{int8_dir} (int8)"
    else:
        from deeproute.checkpoint import DEFAULT_MODEL, load_model

        model, _ = load_model(model_path, grid=pins_file.grid)
        scorer = torch_scorer(model, device)
        model_label = str(model_path or DEFAULT_MODEL)

    routed = route_nets(pins_file, scorer, batch_size)

    with staged_directory(out_dir, OUTPUT_NAMES, overwrite, "routes") as staging:
        placements = gds.write_gds(staging / ROUTES_GDS, [(r.net.name, r.layout) for r in routed], layer_map)
        document = routes_document(routed, pins_file, placements, layer_map, model=model_label)
        write_routes_json(staging / ROUTES_JSON, document)
        save_routes_figure(staging / ROUTES_FIGURE, routed[:figure_nets], total=len(routed))
    return routed


