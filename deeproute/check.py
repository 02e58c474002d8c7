"""The net checker: connectivity, wrong-way jogs, floating vias and metal, wirelength.

Every module that needs to know whether a routed net is connected and legal calls
`check_net`.

Two connectivity graphs are built over the pixels of an (8, H, W) map:

- The legal graph joins a metal pixel to its on-neighbours along the layer's preferred
  direction, a via pixel's metal below to its metal above at the same pixel (only when
  both are on), and a pin to every metal at its pixel. The stack has no VIA2 channel and
  the label rule draws M3-M6 straight over the M2 pins, so a pin needs no via to reach
  the metal above it.
- The electrical graph adds the same-layer neighbours across the preferred direction,
  because touching metal conducts whatever its drawn direction.

A net is connected when all its pins lie in one electrical component. A wrong-way jog is
a pair of same-layer neighbours across the preferred direction whose pixels lie in
different legal components, so the net needs that sideways contact to join them. Two
parallel wires on adjacent tracks that are joined elsewhere, as the legs of a
trunk-and-leg label often are, are therefore not jogs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deeproute import stack
from deeproute.decode import check_layers
from deeproute.errors import InputError


@dataclass
class NetCheck:
    """Result of checking one routed net.

    `violations` lists each violated rule once, in a fixed order; `counts` gives how often:

        open                  pin components that are not joined, beyond the first
        wrong_way:<metal>     wrong-way jogs on that metal (see the module docstring)
        floating_via:<via>    via pixels without metal both below and above
        floating_metal:<metal> segments on that metal joined to no pin

    `wirelength_um` sums, over all metal segments, the centre-to-centre length
    (pixels - 1) * pitch along the segment's direction, so a single-pixel segment counts 0.
    `via_count` counts every via pixel, floating ones included.
    """

    connected: bool
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    wirelength_um: float = 0.0
    via_count: int = 0

    @property
    def legal(self) -> bool:
        """True when the net is connected and breaks no rule."""
        return self.connected and not self.violations


def pin_map(pins, height: int, width: int) -> np.ndarray:
    """Rasterize (P, 2) (x, y) pins, padded with -1, into a bool (H, W) map."""
    points = np.asarray(pins, dtype=np.int64).reshape(-1, 2)
    points = points[points[:, 0] >= 0]
    outside = (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
    if outside.any():
        raise InputError(
            f"pin (x, y) = {tuple(points[outside][0].tolist())} lies outside the {height}x{width} grid"
        )
    image = np.zeros((height, width), dtype=bool)
    image[points[:, 1], points[:, 0]] = True
    return image


def wirelength_um(layers, extent_um: tuple[float, float] = (11.0, 11.0)) -> float:
    """Return the centre-to-centre metal length in µm of an (8, H, W) map.

    Each segment of n pixels adds (n - 1) pitches, so the total is the number of on-pixel
    pairs along each layer's preferred direction times that direction's pitch.
    """
    return _wirelength_um(check_layers(layers), extent_um)


def _wirelength_um(on: np.ndarray, extent_um: tuple[float, float]) -> float:
    _, height, width = on.shape
    pitch_x, pitch_y = extent_um[0] / width, extent_um[1] / height
    total = 0.0
    for metal in stack.METALS:
        plane = on[metal]
        if _is_horizontal(metal):
            total += np.count_nonzero(plane[:, 1:] & plane[:, :-1]) * pitch_x
        else:
            total += np.count_nonzero(plane[1:] & plane[:-1]) * pitch_y
    return float(total)


def legal_components(on: np.ndarray, pins_image: np.ndarray) -> np.ndarray:
    """Label the legal graph of a bool (8, H, W) map with pins from a bool (H, W) map.

    Returns:
        int (8, H, W) component label of every on metal pixel, and on the PIN channel of
        every pin in `pins_image`. Every other entry is -1, via channels included.
    """
    runs, pin_nodes, nodes, _ = _graph_nodes(on, pins_image)
    source, target = _legal_edges(on, pins_image, runs, pin_nodes)
    component = _merge(nodes, source, target)
    return _pixel_labels(component, runs, pin_nodes, on.shape)


def check_net(layers, pins=None, extent_um: tuple[float, float] = (11.0, 11.0)) -> NetCheck:
    """Check one routed net for opens, wrong-way jogs, floating vias and floating metal.

    Args:
        layers: 0/1 or bool (8, H, W) map in `deeproute.stack` order.
        pins: (P, 2) (x, y) grid coordinates padded with -1; None reads channel 0 of `layers`.
        extent_um: (x, y) physical grid size in µm, for the wirelength.
    """
    on = check_layers(layers).copy()
    _, height, width = on.shape
    pins_image = on[stack.PIN] if pins is None else pin_map(pins, height, width)
    on[stack.PIN] = pins_image
    counts: dict[str, int] = {}

    runs, pin_nodes, nodes, first_node = _graph_nodes(on, pins_image)
    legal = _merge(nodes, *_legal_edges(on, pins_image, runs, pin_nodes))  # per node
    jog_from, jog_to, jog_metal = _wrong_way_jogs(on, runs, legal)
    electrical = _merge(nodes, jog_from, jog_to)[legal]  # per node, via its legal component

    pin_labels = np.unique(electrical[pin_nodes[pins_image]])
    unpinned = ~np.isin(electrical, pin_labels)  # per node: True where no pin is reached
    if pin_labels.size > 1:
        counts["open"] = int(pin_labels.size - 1)

    for metal in stack.METALS:
        jogs = int(np.count_nonzero(jog_metal == metal))
        if jogs:
            counts[f"wrong_way:{stack.LAYER_NAMES[metal]}"] = jogs

    for via, below, above in stack.VIA_PAIRS:
        floating = int(np.count_nonzero(on[via] & ~(on[below] & on[above])))
        if floating:
            counts[f"floating_via:{stack.LAYER_NAMES[via]}"] = floating

    for plane, metal in enumerate(stack.METALS):
        segments = int(np.count_nonzero(unpinned[first_node[plane] : first_node[plane + 1]]))
        if segments:
            counts[f"floating_metal:{stack.LAYER_NAMES[metal]}"] = segments

    return NetCheck(
        connected=pin_labels.size <= 1,
        violations=list(counts),
        counts=counts,
        wirelength_um=_wirelength_um(on, extent_um),
        via_count=int(sum(np.count_nonzero(on[via]) for via in stack.VIAS)),
    )


def _is_horizontal(metal: int) -> bool:
    return stack.LAYERS[metal].direction is stack.Direction.HORIZONTAL


def _neighbour_pairs(plane: np.ndarray, horizontal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return flat pixel indices (a, b) of on-pixel pairs that are neighbours along x or y."""
    height, width = plane.shape
    if horizontal:
        y, x = np.nonzero(plane[:, :-1] & plane[:, 1:])
        first = y * width + x
        return first, first + 1
    y, x = np.nonzero(plane[:-1] & plane[1:])
    first = y * width + x
    return first, first + width


def _graph_nodes(on: np.ndarray, pins_image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """Number the nodes of the legal graph: one per metal segment, then one per pin.

    A segment's pixels are joined along the preferred direction, so the legal graph never
    needs them apart.

    Returns:
        (runs, pin_nodes, nodes, first_node): int (4, H, W) node of each metal pixel in
        `stack.METALS` order and int (H, W) node of each pin, both -1 where off; the node
        count; and the first node of each metal plane and of the pins (5 entries).
    """
    _, height, width = on.shape
    runs = np.full((len(stack.METALS), height, width), -1, dtype=np.int64)
    nodes = 0
    first_node = []
    for plane, metal in enumerate(stack.METALS):
        first_node.append(nodes)
        metal_on = on[metal] if _is_horizontal(metal) else on[metal].T  # tracks as rows
        starts = metal_on.copy()
        starts[:, 1:] &= ~metal_on[:, :-1]
        numbered = np.where(metal_on, np.cumsum(starts).reshape(metal_on.shape) - 1 + nodes, -1)
        runs[plane] = numbered if _is_horizontal(metal) else numbered.T
        nodes += int(np.count_nonzero(starts))

    first_node.append(nodes)
    pin_nodes = np.full((height, width), -1, dtype=np.int64)
    pin_count = int(np.count_nonzero(pins_image))
    pin_nodes[pins_image] = np.arange(nodes, nodes + pin_count)
    return runs, pin_nodes, nodes + pin_count, first_node


def _legal_edges(on, pins_image, runs, pin_nodes) -> tuple[np.ndarray, np.ndarray]:
    """Return the legal graph's (source, target) node pairs: vias and pin contacts."""
    sources, targets = [], []
    for via, below, above in stack.VIA_PAIRS:
        joined = on[via] & on[below] & on[above]
        sources.append(runs[stack.METALS.index(below)][joined])
        targets.append(runs[stack.METALS.index(above)][joined])

    for plane, metal in enumerate(stack.METALS):
        contact = pins_image & on[metal]
        sources.append(pin_nodes[contact])
        targets.append(runs[plane][contact])
    return np.concatenate(sources), np.concatenate(targets)


def _merge(nodes: int, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return each node's component: the lowest node id it is joined to by the edges.

    Label propagation with pointer jumping; every round lowers some labels, so it stops.
    """
    labels = np.arange(nodes)
    if source.size == 0:
        return labels
    while True:
        low = np.minimum(labels[source], labels[target])
        updated = labels.copy()
        np.minimum.at(updated, source, low)
        np.minimum.at(updated, target, low)
        np.minimum.at(updated, labels[source], low)  # hook the old representatives too
        np.minimum.at(updated, labels[target], low)
        updated = updated[updated]
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def _pixel_labels(component, runs, pin_nodes, shape) -> np.ndarray:
    """Spread per-node components over an (8, H, W) label map, -1 where there is no node."""
    labels = np.full(shape, -1, dtype=np.int64)
    if component.size == 0:  # nothing drawn and no pins
        return labels
    metals = np.array(stack.METALS)
    labels[metals] = np.where(runs >= 0, component[runs], -1)
    labels[stack.PIN] = np.where(pin_nodes >= 0, component[pin_nodes], -1)
    return labels


def _wrong_way_jogs(on, runs, legal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (component a, component b, metal) of every cross-direction contact between
    different legal components, given each node's legal component `legal`."""
    froms, tos, metals = [], [], []
    for plane, metal in enumerate(stack.METALS):
        a, b = _neighbour_pairs(on[metal], not _is_horizontal(metal))
        flat_runs = runs[plane].reshape(-1)
        a, b = flat_runs[a], flat_runs[b]
        differ = legal[a] != legal[b]
        froms.append(legal[a[differ]])
        tos.append(legal[b[differ]])
        metals.append(np.full(int(differ.sum()), metal))
    return np.concatenate(froms), np.concatenate(tos), np.concatenate(metals)
