"""Random pin placement: nets of distinct pins drawn uniformly on the routing grid."""

from __future__ import annotations

import numpy as np

# Rejection rounds before the remaining nets fall back to an exact permutation draw.
_REJECTION_ROUNDS = 8


def sample_pins(
    rng: np.random.Generator, count: int, height: int, width: int, pin_range: tuple[int, int]
) -> np.ndarray:
    """Draw `count` nets of distinct pins, uniformly placed on a `height` x `width` grid.

    The pin count of each net is uniform over the inclusive `pin_range`.

    Returns:
        int16 array (count, max_pins, 2) of (x, y) grid coordinates, padded with -1.
    """
    min_pins, max_pins = pin_range
    cells = height * width
    pin_counts = rng.integers(min_pins, max_pins + 1, size=count)  # (N,)
    valid = np.arange(max_pins)[None, :] < pin_counts[:, None]  # (N, P)

    # Draw cell indices with replacement, then redraw the nets that got a repeated cell.
    # For sparse nets (5 pins on 1024 cells) about 1% of nets need a second round.
    flat = rng.integers(0, cells, size=(count, max_pins))  # (N, P)
    todo = np.arange(count)
    for _ in range(_REJECTION_ROUNDS):
        if todo.size == 0:
            break
        duplicated = _has_duplicate(flat[todo], valid[todo])
        todo = todo[duplicated]
        flat[todo] = rng.integers(0, cells, size=(todo.size, max_pins))
    if todo.size:
        # Dense nets: an exact draw without replacement from random sort keys.
        keys = rng.random((todo.size, cells))
        flat[todo] = np.argpartition(keys, max_pins - 1, axis=1)[:, :max_pins]

    pins = np.stack([flat % width, flat // width], axis=-1).astype(np.int16)  # (N, P, 2)
    pins[~valid] = -1
    return pins


def _has_duplicate(flat: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return a bool per net: True where two of its valid pins share a cell."""
    marked = np.where(valid, flat, -1 - np.arange(flat.shape[1])[None, :])  # padding never collides
    ordered = np.sort(marked, axis=1)
    return (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
