"""Repair predicted nets so that every net comes out connected and legal.

The network's thresholded output can leave opens, floating metal, floating vias and
wrong-way jogs. `repair` turns it into a net that `deeproute.check.check_net` passes:

1. Keep: threshold the scores, set each via where the metals below and above overlap,
   and keep only the metal whose legal component (see `deeproute.check`) contains a pin.
2. Join: grow a tree from the component with the most pins. Each round runs one
   multi-source Dijkstra search from the tree over the routing grid and draws the
   cheapest path to the nearest other pin component.
3. Prune: keep only a tree of the resulting metal that joins all pins, grown greedily
   from the first pin by shortest paths (one unit per grid step or via). Dangling stubs,
   the longer side of loops and redundant parallel wires go. The metal stacked on a pin
   stays, so the via stack the network drew there is kept. Then redraw the vias as the
   overlap of adjacent metals.

The routing grid has one node per pixel of M3, M4, M5 and M6. A node joins its
neighbours along the layer's preferred direction and the nodes at the same pixel on the
adjacent metals (a via). A pin joins every metal at its pixel at no cost, as in the label
rule, which draws M3-M6 straight over the M2 pins without a VIA2 channel. Entering a node
costs `reuse_cost` on metal that the keep step kept, else
`step_cost + probability_weight * (1 - p_on)`. A layer change adds
`via_cost + via_probability_weight * (1 - p_via)`, or nothing where that via already
exists. So repairs follow what the network wanted.

Every via in the output is the overlap of two adjacent metals of the one component that
holds every pin, so no via floats, no metal floats, and every same-layer contact across
the preferred direction lies inside that component, which `check_net` does not count as
a wrong-way jog.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra

from deeproute import stack
from deeproute.check import check_net, legal_components, pin_map
from deeproute.errors import InputError

logger = logging.getLogger(__name__)

ROUTING_CHANNELS = slice(1, stack.NUM_LAYERS)  # every channel but PIN: the routing decision
_METAL_INDEX = np.array(stack.METALS)  # grid plane k -> metal channel
_PIN_CONTACT_COST = 1e-6  # a pin joins the metal at its pixel for free; Dijkstra needs > 0


@dataclass(frozen=True)
class RepairConfig:
    """Path costs of the join step, in units of one grid step on confident metal."""

    step_cost: float = 1.0  # entering a pixel the network marked 'on' with certainty
    probability_weight: float = 2.0  # extra cost of a pixel with p_on = 0
    via_cost: float = 1.0  # a new via, beyond the pixel it enters
    via_probability_weight: float = 2.0  # extra cost of a new via with p_on = 0
    reuse_cost: float = 1e-3  # entering kept metal: nearly free, but positive for Dijkstra


@dataclass(frozen=True)
class RepairReport:
    """Outcome of `repair` on one net."""

    connected_before: bool  # check_net of the thresholded prediction: all pins joined
    legal_before: bool  # check_net of the thresholded prediction: connected, no violation
    connected_after: bool
    legal_after: bool
    changed: bool  # the routing channels (all but PIN) differ from the prediction
    paths_added: int  # shortest paths drawn by the join step
    pixels_added: int  # routing-channel pixels on in the output but not in the prediction
    pixels_removed: int  # routing-channel pixels on in the prediction but not in the output
    wirelength_um: float  # of the repaired net, as check_net measures it
    via_count: int  # of the repaired net


def on_probabilities(scores_or_probs) -> tuple[np.ndarray, np.ndarray]:
    """Return (p_on float64 (8, H, W), predicted bool (8, H, W)) from network output.

    Accepts (16, H, W) (off, on) score pairs as `RoutingFCN` returns them, or (8, H, W)
    'on' probabilities in [0, 1]. A pixel is predicted 'on' where its 'on' score beats its
    'off' score, or where its probability exceeds 0.5; both rules agree with
    `deeproute.model.compare_scores`.
    """
    array = np.asarray(scores_or_probs, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] not in (2 * stack.NUM_LAYERS, stack.NUM_LAYERS):
        raise InputError(
            f"expected (16, H, W) scores or ({stack.NUM_LAYERS}, H, W) probabilities, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InputError("scores or probabilities contain NaN or infinity")

    if array.shape[0] == 2 * stack.NUM_LAYERS:
        off, on = array[0::2], array[1::2]
        probabilities = 1.0 / (1.0 + np.exp(off - on))  # softmax of the (off, on) pair
        return probabilities, on > off

    if array.min() < 0.0 or array.max() > 1.0:
        raise InputError(
            f"probabilities must lie in [0, 1], got values from {array.min():g} to {array.max():g}; "
            f"pass (16, H, W) raw scores instead"
        )
    return array, array > 0.5


def repair(
    scores_or_probs,
    pins,
    extent_um: tuple[float, float] = (11.0, 11.0),
    config: RepairConfig = RepairConfig(),
) -> tuple[np.ndarray, RepairReport]:
    """Repair one predicted net so that all its pins are connected by legal routing.

    Args:
        scores_or_probs: (16, H, W) scores or (8, H, W) 'on' probabilities of one net.
        pins: (P, 2) (x, y) grid coordinates of the net's pins, padded with -1.
        extent_um: (x, y) physical grid size in µm, for the reported wirelength.
        config: path costs of the join step.

    Returns:
        (layers, report): uint8 (8, H, W) repaired map with channel 0 set to the pins, and
        a RepairReport. The map passes `check_net` with no violation.
    """
    probabilities, predicted = on_probabilities(scores_or_probs)
    _, height, width = probabilities.shape
    pins_image = pin_map(pins, height, width)
    before = check_net(predicted, pins, extent_um)

    metal = _keep_pin_components(predicted[_METAL_INDEX], pins_image)  # (4, H, W)
    costs = _edge_costs(probabilities, metal, config)
    metal, paths = _join_components(metal, pins_image, costs)
    metal = _shortest_path_tree(metal, pins_image)

    layers = _with_vias(metal, pins_image).astype(np.uint8)
    after = check_net(layers, pins, extent_um)
    if not after.legal:
        # Unreachable by construction (see the module docstring), so log it if it ever happens.
        logger.error("repaired net still fails the check: %s", after.counts)

    added = np.count_nonzero(layers[ROUTING_CHANNELS].astype(bool) & ~predicted[ROUTING_CHANNELS])
    removed = np.count_nonzero(predicted[ROUTING_CHANNELS] & ~layers[ROUTING_CHANNELS].astype(bool))
    report = RepairReport(
        connected_before=before.connected,
        legal_before=before.legal,
        connected_after=after.connected,
        legal_after=after.legal,
        changed=bool(added or removed),
        paths_added=paths,
        pixels_added=int(added),
        pixels_removed=int(removed),
        wirelength_um=after.wirelength_um,
        via_count=after.via_count,
    )
    return layers, report


def repair_batch(
    scores_or_probs,
    pins,
    extent_um: tuple[float, float] = (11.0, 11.0),
    config: RepairConfig = RepairConfig(),
) -> tuple[np.ndarray, list[RepairReport]]:
    """Repair a batch: (N, 16 or 8, H, W) network output and (N, P, 2) pins.

    Returns:
        (uint8 (N, 8, H, W) repaired maps, one RepairReport per net).
    """
    outputs = np.asarray(scores_or_probs)
    pins = np.asarray(pins)
    if outputs.ndim != 4 or pins.ndim != 3 or outputs.shape[0] != pins.shape[0]:
        raise InputError(
            f"expected (N, C, H, W) network output and (N, P, 2) pins, got {outputs.shape} and {pins.shape}"
        )
    layers = np.zeros((outputs.shape[0], stack.NUM_LAYERS) + outputs.shape[2:], dtype=np.uint8)
    reports = []
    for net in range(outputs.shape[0]):
        layers[net], report = repair(outputs[net], pins[net], extent_um, config)
        reports.append(report)
    return layers, reports


def _with_vias(metal: np.ndarray, pins_image: np.ndarray) -> np.ndarray:
    """Build a bool (8, H, W) map from (4, H, W) metal, with a via wherever adjacent metals overlap."""
    layers = np.zeros((stack.NUM_LAYERS,) + pins_image.shape, dtype=bool)
    layers[stack.PIN] = pins_image
    layers[_METAL_INDEX] = metal
    for via, below, above in stack.VIA_PAIRS:
        layers[via] = layers[below] & layers[above]
    return layers


def _keep_pin_components(metal: np.ndarray, pins_image: np.ndarray) -> np.ndarray:
    """Drop the metal whose legal component contains no pin."""
    labels = legal_components(_with_vias(metal, pins_image), pins_image)
    pin_labels = np.unique(labels[stack.PIN][pins_image])
    return metal & np.isin(labels[_METAL_INDEX], pin_labels)


@dataclass(frozen=True)
class _RoutingGrid:
    """The directed edges of the routing grid of one (H, W), in CSR order.

    Nodes are numbered k * H * W + y * W + x for grid plane k (M3, M4, M5, M6).
    """

    nodes: int
    indptr: np.ndarray  # CSR row pointers over source nodes
    source: np.ndarray  # node each edge leaves
    target: np.ndarray  # node each edge enters
    via_slot: np.ndarray  # for a layer change, via plane * H * W + pixel; -1 within a layer


@functools.lru_cache(maxsize=8)
def _routing_grid(height: int, width: int) -> _RoutingGrid:
    area = height * width
    pixel = np.arange(area).reshape(height, width)
    sources, targets, slots = [], [], []

    def add(a, b, slot):
        sources.extend((a, b))
        targets.extend((b, a))
        slots.extend((slot, slot))

    for plane, metal in enumerate(stack.METALS):
        offset = plane * area
        if stack.LAYERS[metal].direction is stack.Direction.HORIZONTAL:
            a, b = pixel[:, :-1].ravel(), pixel[:, 1:].ravel()
        else:
            a, b = pixel[:-1].ravel(), pixel[1:].ravel()
        add(offset + a, offset + b, np.full(a.size, -1))

    flat = pixel.ravel()
    for plane in range(len(stack.METALS) - 1):  # via plane k joins metal planes k and k + 1
        add(plane * area + flat, (plane + 1) * area + flat, plane * area + flat)

    source = np.concatenate(sources)
    target = np.concatenate(targets)
    slot = np.concatenate(slots)
    order = np.lexsort((target, source))
    nodes = len(stack.METALS) * area
    indptr = np.concatenate([[0], np.cumsum(np.bincount(source, minlength=nodes))])
    return _RoutingGrid(nodes, indptr, source[order], target[order], slot[order])


def _edge_costs(probabilities: np.ndarray, metal: np.ndarray, config: RepairConfig) -> csr_matrix:
    """Weight each grid edge by the cost of the node it enters plus any new via."""
    _, height, width = probabilities.shape
    grid = _routing_grid(height, width)

    node_cost = config.step_cost + config.probability_weight * (1.0 - probabilities[_METAL_INDEX])
    node_cost = np.where(metal, config.reuse_cost, node_cost).reshape(-1)  # (4 * H * W,)

    via_channels = np.array([via for via, _, _ in stack.VIA_PAIRS])
    via_cost = config.via_cost + config.via_probability_weight * (1.0 - probabilities[via_channels])
    via_cost = np.where(metal[:-1] & metal[1:], 0.0, via_cost).reshape(-1)  # existing vias are free

    weight = node_cost[grid.target]
    is_via = grid.via_slot >= 0
    weight[is_via] += via_cost[grid.via_slot[is_via]]
    return csr_matrix((weight, grid.target, grid.indptr), shape=(grid.nodes, grid.nodes))


def _join_components(metal: np.ndarray, pins_image: np.ndarray, costs: csr_matrix) -> tuple[np.ndarray, int]:
    """Join all pin components by greedy shortest paths; return (metal, paths drawn)."""
    metal = metal.copy()
    planes, height, width = metal.shape
    area = height * width
    pin_pixels = np.flatnonzero(pins_image)
    paths = 0

    root = None
    while True:
        labels = legal_components(_with_vias(metal, pins_image), pins_image)
        pin_labels = labels[stack.PIN].reshape(-1)[pin_pixels]
        groups, sizes = np.unique(pin_labels, return_counts=True)
        if groups.size <= 1:
            return metal, paths
        if root is None:
            root = pin_pixels[np.flatnonzero(pin_labels == groups[np.argmax(sizes)])[0]]
        tree = labels[stack.PIN].reshape(-1)[root]

        metal_labels = labels[_METAL_INDEX].reshape(-1)  # label of each grid node
        pin_stack = (np.arange(planes)[:, None] * area + pin_pixels[None, :]).reshape(planes, -1)
        in_tree = pin_labels == tree
        sources = np.union1d(np.flatnonzero(metal.reshape(-1) & (metal_labels == tree)), pin_stack[:, in_tree])
        targets = np.union1d(
            np.flatnonzero(metal.reshape(-1) & np.isin(metal_labels, groups[groups != tree])),
            pin_stack[:, ~in_tree],
        )

        distance, predecessor, _ = dijkstra(
            costs, directed=True, indices=sources, return_predecessors=True, min_only=True
        )
        node = int(targets[np.argmin(distance[targets])])
        flat_metal = metal.reshape(-1)
        while node >= 0:
            flat_metal[node] = True
            node = int(predecessor[node])
        paths += 1


def _shortest_path_tree(metal: np.ndarray, pins_image: np.ndarray) -> np.ndarray:
    """Keep only the metal of a tree that joins all pins, grown greedily within `metal`.

    The tree starts at the first pin and repeatedly adds the shortest path from the tree to
    the nearest pin not yet in it. Paths run over the legal graph of `metal`, with vias
    drawn as metal overlap and one unit per grid step or via, so dangling stubs, the longer
    side of each loop and all but one of parallel wires go. Each pin is a graph node joined
    to every metal at its pixel. The metal stacked on a pin stays even where no path uses
    it, so the via stack the network drew on a pin is kept.
    """
    planes, height, width = metal.shape
    area = height * width
    pin_pixels = np.flatnonzero(pins_image)
    if pin_pixels.size < 2:
        return np.zeros_like(metal)  # nothing to connect

    grid = _routing_grid(height, width)
    flat = metal.reshape(-1)
    on_metal = flat[grid.source] & flat[grid.target]
    sources, targets = [grid.source[on_metal]], [grid.target[on_metal]]
    weights = [np.ones(int(on_metal.sum()))]
    pin_nodes = grid.nodes + np.arange(pin_pixels.size)  # node of pin j: grid.nodes + j
    for plane in range(planes):
        contact = flat[plane * area + pin_pixels]
        metal_nodes = plane * area + pin_pixels[contact]
        sources.extend((metal_nodes, pin_nodes[contact]))
        targets.extend((pin_nodes[contact], metal_nodes))
        weights.append(np.full(2 * metal_nodes.size, _PIN_CONTACT_COST))
    nodes = grid.nodes + pin_pixels.size
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))), shape=(nodes, nodes)
    ).tocsr()

    kept = np.zeros(nodes, dtype=bool)
    kept[pin_nodes[0]] = True
    waiting = pin_nodes[1:]
    while waiting.size:
        distance, predecessor, _ = dijkstra(
            graph, directed=True, indices=np.flatnonzero(kept), return_predecessors=True, min_only=True
        )
        nearest = int(np.argmin(distance[waiting]))
        if not np.isfinite(distance[waiting[nearest]]):
            logger.error("%d pins are not joined to the first pin after the join step", waiting.size)
            break
        node = int(waiting[nearest])
        while node >= 0 and not kept[node]:
            kept[node] = True
            node = int(predecessor[node])
        waiting = waiting[~kept[waiting]]  # a path may pass through other pins

    tree = kept[: grid.nodes].reshape(metal.shape)
    tree |= metal & pins_image[None]  # the metal stacked on each pin
    return tree
