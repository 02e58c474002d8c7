"""The 15-stage fully convolutional routing network of Jain & Okabe (2017).

    pins (N, 1, H, W)
      -> stage 1:     conv (H+1)x(W+1) for even H and W, 1 -> C, "same" padding, batch norm, LeakyReLU
      -> stages 2-14: conv 3x3, C -> C, batch norm, LeakyReLU
      -> stage 15:    conv 3x3, C -> 16, bias, no norm or activation
    scores (N, 16, H, W): an (off, on) score pair per layer, channel 2*l is 'off' and
    2*l + 1 is 'on' for layer l in `deeproute.stack` order.

The comparator sets a pixel of a layer 'on' where its 'on' score beats its 'off' score.
The first kernel spans the whole grid, so the receptive field of every pixel covers
nearly every pin of the net.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from deeproute import stack
from deeproute.errors import InputError


@dataclass(frozen=True)
class FCNConfig:
    """Shape of the routing network; the defaults are the published architecture."""

    height: int = 32  # grid rows the first kernel is sized for
    width: int = 32  # grid columns
    channels: int = 16  # feature maps per hidden stage
    stages: int = 15  # convolution stages in total, the last one being the score stage
    first_kernel: tuple[int, int] | None = None  # None: smallest odd sizes above (H, W), so each receptive field covers the grid
    negative_slope: float = 0.01  # LeakyReLU slope
    layers: int = stack.NUM_LAYERS  # output layers, each with an (off, on) score pair

    def kernel(self) -> tuple[int, int]:
        """Return the (rows, columns) size of the first convolution's kernel."""
        if self.first_kernel is None:
            return _odd_above(self.height), _odd_above(self.width)
        return tuple(self.first_kernel)

    def validate(self) -> None:
        if self.stages < 2:
            raise InputError(f"the network needs at least 2 stages, got {self.stages}")
        if self.channels < 1:
            raise InputError(f"channels must be positive, got {self.channels}")
        if min(self.kernel()) < 1 or any(size % 2 == 0 for size in self.kernel()):
            raise InputError(f"first kernel must be odd and positive so that 'same' padding is symmetric, got {self.kernel()}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["first_kernel"] = list(self.kernel())
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FCNConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("first_kernel") is not None:
            known["first_kernel"] = tuple(int(v) for v in known["first_kernel"])
        return cls(**known)


def _odd_above(size: int) -> int:
    """Return the smallest odd number larger than `size` (33 for 32, 35 for 33)."""
    return size + 1 if size % 2 == 0 else size + 2


class Stage(nn.Sequential):
    """Convolution, batch norm and LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], slope: float):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, padding="same", bias=True),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(slope),
        )


class RoutingFCN(nn.Module):
    """Maps a pin map (N, 1, H, W) to (off, on) scores (N, 2 * layers, H, W)."""

    def __init__(self, config: FCNConfig = FCNConfig()):
        super().__init__()
        config.validate()
        self.config = config
        hidden = config.channels
        stages = [Stage(1, hidden, config.kernel(), config.negative_slope)]
        for _ in range(config.stages - 2):
            stages.append(Stage(hidden, hidden, (3, 3), config.negative_slope))
        self.features = nn.Sequential(*stages)
        self.scores = nn.Conv2d(hidden, 2 * config.layers, 3, padding="same", bias=True)

    def forward(self, pins: torch.Tensor) -> torch.Tensor:
        return self.scores(self.features(pins))  # (N, 2L, H, W)


def compare_scores(scores: torch.Tensor) -> torch.Tensor:
    """Apply the score comparator: (N, 2L, H, W) scores -> (N, L, H, W) bool, 'on' > 'off'."""
    pairs = scores.unflatten(1, (-1, 2))  # (N, L, 2, H, W)
    return pairs[:, :, 1] > pairs[:, :, 0]


def pair_logits(scores: torch.Tensor) -> torch.Tensor:
    """Rearrange (N, 2L, H, W) scores to (N, 2, L, H, W) class logits for cross-entropy."""
    return scores.unflatten(1, (-1, 2)).transpose(1, 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
