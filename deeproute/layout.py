"""Routed layouts of single nets: wire segments, vias and pins on the routing grid.

A Layout is the geometric form of an 8-layer on/off map (`deeproute.stack` order). Grid
coordinates are (x, y) pixels; lengths in µm follow from the grid pitch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Segment:
    """A maximal straight run of metal along its layer's preferred direction.

    `start` and `end` are inclusive (x, y) grid points with start <= end; a single-pixel
    segment has start == end.
    """

    layer: int  # metal channel in deeproute.stack
    start: tuple[int, int]
    end: tuple[int, int]

    @property
    def pixels(self) -> int:
        return abs(self.end[0] - self.start[0]) + abs(self.end[1] - self.start[1]) + 1


@dataclass(frozen=True)
class Via:
    """A via pixel joining the metal below and above it."""

    layer: int  # via channel in deeproute.stack
    at: tuple[int, int]  # (x, y)


@dataclass
class Layout:
    """The routed geometry of one net on a height x width grid of extent_um (x, y) µm."""

    height: int
    width: int
    pins: list[tuple[int, int]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    vias: list[Via] = field(default_factory=list)
    extent_um: tuple[float, float] = (11.0, 11.0)

    @property
    def pitch_um(self) -> tuple[float, float]:
        """(x, y) size of one grid pixel in µm."""
        return self.extent_um[0] / self.width, self.extent_um[1] / self.height
