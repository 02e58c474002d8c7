"""Figures of routed nets with matplotlib: layouts in the stack's colours and prediction errors.

Every figure draws a net the same way, with y growing upward as in the GDSII export:

- metals are bars along each segment in the layer colour. Lower metals are drawn wider, so
  a wire on M5 stays visible on top of M3 in the same column (METAL_BAR_WIDTH);
- vias are filled shapes in the layer colour, one shape per via layer (VIA_SHAPE);
- pins are hollow black rings around their pixel;
- the error view colours each pixel by its worst disagreement over the 8 layers. Light
  grey means prediction and label agree on 'on', magenta a false 'on', gold a missed
  pixel, and dark grey a pixel with both on different layers.

`visualize_dataset` is the library side of `deeproute visualize`; `save_routes_figure` draws
the overview of `deeproute route`. Figures are built on `matplotlib.figure.Figure` without
pyplot, so no global backend or state is touched.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch, Rectangle, RegularPolygon

from deeproute import stack
from deeproute.decode import decode
from deeproute.errors import InputError
from deeproute.layout import Layout

if TYPE_CHECKING:
    from deeproute.route import RoutedNet

logger = logging.getLogger(__name__)

FIGURE_FORMATS = (".png", ".svg", ".pdf")
# 64 samples with per-layer rows make a PNG of about 46,000 px height at PNG_DPI, below the
# 2^16 px per side that matplotlib's Agg renderer accepts.
MAX_SAMPLES = 64
PNG_DPI = 150
PANEL_INCHES = 3.2  # side of one main panel
LAYER_PANEL_INCHES = PANEL_INCHES / 2

# Bar width across a wire, in pixels: lower metals wider, so stacked wires stay visible.
METAL_BAR_WIDTH = {stack.M3: 0.70, stack.M4: 0.70, stack.M5: 0.36, stack.M6: 0.36}
# (polygon vertices, rotation in radians) of each via layer's marker.
VIA_SHAPE = {stack.VIA3: (4, math.pi / 4), stack.VIA4: (4, 0.0), stack.VIA5: (3, 0.0)}
VIA_RADIUS = {stack.VIA3: 0.45, stack.VIA4: 0.45, stack.VIA5: 0.45}  # in pixels, centre to corner
PIN_RADIUS = 0.48  # in pixels
PIN_COLOUR = stack.LAYERS[stack.PIN].colour

# Error colours avoid the hues of the stack colours, so no error reads as a layer.
CORRECT_COLOUR = "#d0d0d0"
FALSE_ON_COLOUR = "#e7298a"
MISSED_COLOUR = "#e6ab02"
BOTH_COLOUR = "#555555"
PROBLEM_COLOUR = "#c00000"  # title of a net that is open or breaks a rule


def check_figure_path(path: str | os.PathLike) -> str:
    """Return the figure format ('png', 'svg' or 'pdf') of `path`, raising InputError on another extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise InputError(
            f"{path}: unknown figure format {Path(path).suffix or '(no extension)'!r}; "
            f"use one of {', '.join(FIGURE_FORMATS)}"
        )
    return suffix[1:]


def save_figure(figure: Figure, path: str | os.PathLike, image_format: str | None = None) -> None:
    """Write `figure` to `path` in `image_format` (default: from the extension)."""
    image_format = image_format or check_figure_path(path)
    figure.savefig(path, format=image_format, dpi=PNG_DPI)
    logger.info("wrote figure %s", path)


# ------------------------------------------------------------------------------ single panels


def setup_grid_axes(ax: Axes, height: int, width: int, tick_step: int = 8) -> None:
    """Frame `ax` as a height x width routing grid in pixel units with y upward."""
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(-0.5, height - 0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(0, width, tick_step))
    ax.set_yticks(range(0, height, tick_step))
    ax.set_xticks(np.arange(-0.5, width, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, height, 1.0), minor=True)
    ax.tick_params(which="both", length=0, labelsize=6)
    ax.grid(which="minor", color="#eeeeee", linewidth=0.4)
    ax.set_axisbelow(True)


def draw_layout(ax: Axes, layout: Layout, pins: Sequence[tuple[int, int]] | None = None) -> None:
    """Draw metals, vias and pins of `layout` on a grid axes; `pins` replaces the layout's own."""
    bars: dict[int, list[Rectangle]] = {metal: [] for metal in stack.METALS}
    for segment in layout.segments:
        bar = METAL_BAR_WIDTH[segment.layer]
        (x0, y0), (x1, y1) = segment.start, segment.end
        bars[segment.layer].append(Rectangle((x0 - bar / 2, y0 - bar / 2), x1 - x0 + bar, y1 - y0 + bar))
    for order, metal in enumerate(stack.METALS):
        if bars[metal]:
            colour = stack.LAYERS[metal].colour
            ax.add_collection(PatchCollection(bars[metal], facecolor=colour, edgecolor="none", zorder=2 + order))

    markers: dict[int, list[RegularPolygon]] = {via: [] for via in stack.VIAS}
    for via in layout.vias:
        vertices, rotation = VIA_SHAPE[via.layer]
        markers[via.layer].append(
            RegularPolygon(via.at, numVertices=vertices, radius=VIA_RADIUS[via.layer], orientation=rotation)
        )
    for via in stack.VIAS:
        if markers[via]:
            colour = stack.LAYERS[via].colour
            ax.add_collection(PatchCollection(markers[via], facecolor=colour, edgecolor="black", linewidth=0.5, zorder=7))
    draw_pins(ax, layout.pins if pins is None else pins)


def draw_pins(ax: Axes, pins: Sequence[tuple[int, int]]) -> None:
    """Draw each (x, y) pin as a hollow ring on top of everything else."""
    if len(pins) == 0:
        return
    rings = [Circle((x, y), PIN_RADIUS) for x, y in pins]
    ax.add_collection(
        PatchCollection(rings, facecolor="none", edgecolor=PIN_COLOUR, linewidth=1.4, zorder=8, clip_on=False)
    )


def error_image(label: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Colour each pixel of (8, H, W) label vs prediction by its worst disagreement.

    Returns:
        (RGBA float image (H, W, 4), pixel counts {"false_on", "missed"} summed over layers).
    """
    label = label.astype(bool)
    prediction = prediction.astype(bool)
    false_on = prediction & ~label  # (8, H, W)
    missed = label & ~prediction
    agreed = (label & prediction).any(axis=0)
    any_false, any_missed = false_on.any(axis=0), missed.any(axis=0)

    from matplotlib.colors import to_rgba

    image = np.zeros(label.shape[1:] + (4,))
    image[agreed] = to_rgba(CORRECT_COLOUR)
    image[any_false] = to_rgba(FALSE_ON_COLOUR)
    image[any_missed] = to_rgba(MISSED_COLOUR)
    image[any_false & any_missed] = to_rgba(BOTH_COLOUR)
    return image, {"false_on": int(false_on.sum()), "missed": int(missed.sum())}


def draw_errors(ax: Axes, label: np.ndarray, prediction: np.ndarray, pins: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Draw the error view of one net; return its false-on and missed pixel counts."""
    image, counts = error_image(label, prediction)
    _show_image(ax, image)
    draw_pins(ax, pins)
    return counts


def draw_layer_plane(ax: Axes, layer: int, label: np.ndarray, prediction: np.ndarray | None = None) -> None:
    """Draw one layer (H, W): its 'on' pixels in the layer colour, or its errors when `prediction` is given."""
    from matplotlib.colors import to_rgba

    label = label.astype(bool)
    image = np.zeros(label.shape + (4,))
    name = stack.LAYER_NAMES[layer]
    if prediction is None:
        image[label] = to_rgba(stack.LAYERS[layer].colour)
        title = name
    else:
        prediction = prediction.astype(bool)
        image[label & prediction] = to_rgba(CORRECT_COLOUR)
        image[prediction & ~label] = to_rgba(FALSE_ON_COLOUR)
        image[label & ~prediction] = to_rgba(MISSED_COLOUR)
        title = f"{name}: {int((prediction & ~label).sum())} false, {int((label & ~prediction).sum())} missed"
    _show_image(ax, image)
    ax.set_title(title, fontsize=7, color=stack.LAYERS[layer].colour if layer != stack.PIN else "black", pad=2)


def _show_image(ax: Axes, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    ax.imshow(image, origin="lower", extent=(-0.5, width - 0.5, -0.5, height - 0.5), interpolation="nearest", zorder=1)
    setup_grid_axes(ax, height, width)


def legend_handles(errors: bool = False) -> list:
    """Return legend entries for the layers, pins and, with `errors`, the error colours."""
    handles = []
    for metal in stack.METALS:
        layer = stack.LAYERS[metal]
        handles.append(Patch(facecolor=layer.colour, label=f"{layer.name} ({layer.direction.value})"))
    for via in stack.VIAS:
        layer = stack.LAYERS[via]
        marker = {4: "D" if VIA_SHAPE[via][1] == 0.0 else "s", 3: "^"}[VIA_SHAPE[via][0]]
        joins = f"{stack.LAYER_NAMES[layer.below]}-{stack.LAYER_NAMES[layer.above]}"
        handles.append(
            Line2D([], [], linestyle="none", marker=marker, markersize=7, markerfacecolor=layer.colour,
                   markeredgecolor="black", markeredgewidth=0.5, label=f"{layer.name} ({joins})")
        )
    handles.append(
        Line2D([], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
               markeredgecolor=PIN_COLOUR, markeredgewidth=1.4, label="pin")
    )
    if errors:
        handles += [
            Patch(facecolor=CORRECT_COLOUR, label="correct 'on'"),
            Patch(facecolor=FALSE_ON_COLOUR, label="false 'on'"),
            Patch(facecolor=MISSED_COLOUR, label="missed"),
            Patch(facecolor=BOTH_COLOUR, label="false 'on' and missed"),
        ]
    return handles


# ----------------------------------------------------------------------------- whole figures


def sample_figure(
    inputs: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray | None,
    indices: Sequence[int],
    per_layer: bool = False,
    extent_um: tuple[float, float] = (11.0, 11.0),
) -> Figure:
    """Draw dataset samples, one block of rows each: pins, label, prediction and errors.

    Args:
        inputs: uint8 (n, 1, H, W) pin maps.
        labels: uint8 (n, 8, H, W).
        predictions: uint8 (n, 8, H, W) comparator output, or None to show data only.
        indices: the sample numbers in the file, for the row titles.
        per_layer: add a row of 8 per-layer panels under each sample.
    """
    count = labels.shape[0]
    main_columns = 4 if predictions is not None else 2
    columns = 8 if per_layer else main_columns
    span = columns // main_columns  # grid columns per main panel
    ratios = [2, 1] * count if per_layer else [1] * count  # main row, then the layer row
    width = main_columns * PANEL_INCHES
    height = count * PANEL_INCHES + 0.9  # 0.9 in for the legend
    if per_layer:
        width = max(width, stack.NUM_LAYERS * LAYER_PANEL_INCHES)
        height += count * LAYER_PANEL_INCHES

    figure = Figure(figsize=(width, height), layout="constrained")
    grid = figure.add_gridspec(len(ratios), columns, height_ratios=ratios)
    for row, sample in enumerate(indices):
        pins = _pins_of(inputs[row, 0])
        top = 2 * row if per_layer else row
        axes = [figure.add_subplot(grid[top, i * span : (i + 1) * span]) for i in range(main_columns)]

        setup_grid_axes(axes[0], *labels.shape[2:])
        draw_pins(axes[0], pins)
        axes[0].set_title(f"sample {sample}: {len(pins)} pins", fontsize=8)

        setup_grid_axes(axes[1], *labels.shape[2:])
        draw_layout(axes[1], decode(labels[row], extent_um), pins)
        axes[1].set_title("label", fontsize=8)

        if predictions is not None:
            setup_grid_axes(axes[2], *labels.shape[2:])
            draw_layout(axes[2], decode(predictions[row], extent_um), pins)
            axes[2].set_title("prediction", fontsize=8)
            counts = draw_errors(axes[3], labels[row], predictions[row], pins)
            axes[3].set_title(f"errors: {counts['false_on']} false 'on', {counts['missed']} missed", fontsize=8)

        if per_layer:
            for layer in range(stack.NUM_LAYERS):
                ax = figure.add_subplot(grid[top + 1, layer])
                plane = predictions[row, layer] if predictions is not None else None
                draw_layer_plane(ax, layer, labels[row, layer], plane)
                ax.tick_params(labelbottom=False, labelleft=False)

    figure.legend(handles=legend_handles(errors=predictions is not None), loc="outside upper center",
                  ncol=6, fontsize=7, frameon=False)
    return figure


def routes_figure(routed: Sequence[RoutedNet], total: int | None = None) -> Figure:
    """Draw the repaired layout of each routed net in a grid of panels, with a status title."""
    count = len(routed)
    if count == 0:
        raise InputError("there are no routed nets to draw")

    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(columns * PANEL_INCHES, rows * PANEL_INCHES + 1.0), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)

    for ax, item in zip(axes.flat, routed):
        layout = item.layout
        setup_grid_axes(ax, layout.height, layout.width)
        draw_layout(ax, layout)
        check = item.check
        if not check.connected:
            status, colour = "OPEN", PROBLEM_COLOUR
        elif check.violations:
            status, colour = f"{len(check.violations)} violations", PROBLEM_COLOUR
        else:
            status, colour = "connected", "black"
        repaired = ", repaired" if item.repaired else ""
        ax.set_title(
            f"{item.net.name}: {status}{repaired}\n{check.wirelength_um:.2f} µm, {_count(check.via_count, 'via')}",
            fontsize=7, color=colour,
        )
    for ax in axes.flat[count:]:
        ax.set_visible(False)

    if total is not None and total > count:
        heading = f"the first {count} of {total} routed nets"
    else:
        heading = f"{count} routed nets"
    figure.suptitle(f"{heading} after repair; axes in grid pixels, y up", fontsize=9)
    figure.legend(handles=legend_handles(), loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    return figure


def save_routes_figure(path: str | os.PathLike, routed: Sequence[RoutedNet], total: int | None = None) -> None:
    """Draw `routes_figure` into an image file."""
    save_figure(routes_figure(routed, total), path)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _pins_of(pin_map: np.ndarray) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(pin_map)
    return [(int(x), int(y)) for y, x in zip(ys, xs)]


# ------------------------------------------------------------------------------- visualize


def select_samples(count: int, samples: int, indices: Sequence[int] | None, path) -> list[int]:
    """Return the sample numbers to draw: `indices` when given, else the first `samples`."""
    if indices:
        for index in indices:
            if not 0 <= index < count:
                raise InputError(f"{path}: --index {index} is out of range; the file has samples 0 to {count - 1}")
        chosen = list(dict.fromkeys(indices))
    else:
        if samples < 1:
            raise InputError(f"--samples must be at least 1, got {samples}")
        chosen = list(range(min(samples, count)))
    if len(chosen) > MAX_SAMPLES:
        raise InputError(
            f"{len(chosen)} samples requested, but one figure draws at most {MAX_SAMPLES}; "
            f"pass fewer --index values or a smaller --samples"
        )
    return chosen


def visualize_dataset(
    data: str | os.PathLike,
    out: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    samples: int = 9,
    indices: Sequence[int] | None = None,
    per_layer: bool = False,
    device: str = "auto",
    overwrite: bool = False,
) -> list[int]:
    """Draw samples of a dataset file, with the model's prediction when `model_path` is given.

    Returns the sample numbers drawn. The figure format follows the extension of `out`.
    """
    from deeproute.dataset import atomic_output, open_dataset

    image_format = check_figure_path(out)
    with atomic_output(out, overwrite=overwrite) as temporary, open_dataset(data) as dataset:
        if len(dataset) == 0:
            raise InputError(f"{data}: the dataset is empty (N = 0)")
        chosen = select_samples(len(dataset), samples, indices, data)
        blocks = [dataset.read(index, index + 1) for index in chosen]
        for index in chosen:
            dataset.read_pins(index, index + 1)  # rejects a pins dataset that contradicts X, as evaluate does
        inputs = np.concatenate([block[0] for block in blocks])  # (n, 1, H, W)
        labels = np.concatenate([block[1] for block in blocks])  # (n, 8, H, W)
        predictions = None
        if model_path is not None:
            predictions = _predict(model_path, inputs, dataset.grid, device)
        extent = dataset.info.extent_um or (11.0, 11.0)
        figure = sample_figure(inputs, labels, predictions, chosen, per_layer, extent)
        save_figure(figure, temporary, image_format)
    return chosen


def _predict(model_path, inputs: np.ndarray, grid: tuple[int, int], device: str) -> np.ndarray:
    """Return the comparator output uint8 (n, 8, H, W) of a checkpoint on pin maps (n, 1, H, W)."""
    from deeproute.checkpoint import load_model
    from deeproute.route import predict_scores, torch_scorer

    model, _ = load_model(model_path, grid=grid)
    scorer = torch_scorer(model, device)
    scores = np.concatenate([batch for _, batch in predict_scores(scorer, inputs)])
    return (scores[:, 1::2] > scores[:, 0::2]).astype(np.uint8)
