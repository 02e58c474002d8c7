"""The technology table: grid extent, wire resistance per µm and via resistance.

The values are those used to choose wire classes in Jain & Okabe (2017), "Training a Fully
Convolutional Neural Network to Route Integrated Circuits". Every route starts and ends on
M2 pins, so a wire on a given metal pays the via stack below that metal twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deeproute import stack

DEFAULT_GRID = 32  # pixels per side of the routing window
DEFAULT_EXTENT_UM = 11.0  # physical side length of the routing window in µm
DEFAULT_PIN_RANGE = (2, 5)  # pins per net, inclusive


@dataclass(frozen=True)
class Technology:
    """Resistances of the metal and via layers used to pick wire classes."""

    # Sheet resistance of each routing metal in ohm per µm of wire.
    wire_ohm_per_um: dict[int, float] = field(
        default_factory=lambda: {stack.M3: 30.555, stack.M4: 24.077, stack.M5: 18.368, stack.M6: 16.950}
    )
    # Resistance of one via in ohm, bottom to top: VIA2 (M2-M3), VIA3, VIA4, VIA5.
    via_ohm: tuple[float, ...] = (40.0, 30.0, 12.0, 12.0)
    # Drawn sizes in µm, used only by the GDSII export because the routing grid carries no
    # widths. They stay below the 0.34 µm pitch of the default 11 µm, 32-pixel window.
    wire_width_um: dict[int, float] = field(
        default_factory=lambda: {stack.M3: 0.10, stack.M4: 0.10, stack.M5: 0.14, stack.M6: 0.14}
    )
    via_size_um: float = 0.10  # side of a square via cut, every via layer
    pin_size_um: float = 0.14  # side of the square drawn on the pin layer for each pin

    def stack_ohm(self, metal: int) -> float:
        """Return the resistance in ohm of the via stack from an M2 pin up to `metal`."""
        level = stack.METALS.index(metal)  # M3 -> 0 ... M6 -> 3
        return sum(self.via_ohm[: level + 1])

    def wire_ohm(self, metal: int, length_um):
        """Return the resistance of a wire of `length_um` on `metal` with a via stack at each end.

        Works elementwise on numpy arrays of lengths.
        """
        return self.wire_ohm_per_um[metal] * length_um + 2.0 * self.stack_ohm(metal)


DEFAULT_TECH = Technology()
