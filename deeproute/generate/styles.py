"""Registry of label styles: routers that turn sampled pins into the 8 layout layers.

A label style is a function `(pins, height, width, extent_um) -> uint8 (N, 8, H, W)`.
New routers register here under their own name and leave the rest of the package as it is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from deeproute.errors import InputError
from deeproute.generate.paper import route_paper

LabelStyle = Callable[[np.ndarray, int, int, tuple[float, float]], np.ndarray]

LABEL_STYLES: dict[str, LabelStyle] = {
    "paper": route_paper,
}


def get_label_style(name: str) -> LabelStyle:
    """Return the router registered as `name`, raising InputError for an unknown name."""
    if name not in LABEL_STYLES:
        raise InputError(f"unknown label style {name!r}; expected one of {', '.join(LABEL_STYLES)}")
    return LABEL_STYLES[name]
