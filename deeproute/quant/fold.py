"""Fold each batch norm of a trained RoutingFCN into the convolution before it.

In eval mode batch norm is the affine map y = (z - mean) * gamma / sqrt(var + eps) + beta, so
with a = gamma / sqrt(var + eps) the folded convolution has weights w * a (per output channel)
and bias (b - mean) * a + beta. The folded network computes the same function in float, up to
float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeproute.model import RoutingFCN


def same_padding(kernel: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return the (top, bottom, left, right) zero padding of PyTorch's padding="same".

    For an even kernel PyTorch puts the extra row and column at the bottom and right.
    """
    rows, columns = kernel
    top, left = (rows - 1) // 2, (columns - 1) // 2
    return top, rows - 1 - top, left, columns - 1 - left


class FoldedFCN(nn.Module):
    """The routing network with batch norm folded away: conv + LeakyReLU stages, then scores.

    Attributes:
        weights, biases: float32 convolution parameters, one per stage, the last being the
            score convolution.
        paddings: (top, bottom, left, right) zero padding of each stage.
    """

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], negative_slope: float, grid: tuple[int, int]):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w.detach().clone().float()) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b.detach().clone().float()) for b in biases)
        self.paddings = [same_padding(tuple(w.shape[2:])) for w in weights]
        self.negative_slope = negative_slope
        self.grid = tuple(grid)

    def stage_outputs(self, pins: torch.Tensor) -> list[torch.Tensor]:
        """Return each hidden stage's LeakyReLU output and, last, the scores (N, 16, H, W)."""
        outputs = []
        x = pins
        last = len(self.weights) - 1
        for index, (weight, bias, padding) in enumerate(zip(self.weights, self.biases, self.paddings)):
            top, bottom, left, right = padding
            x = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias)
            if index < last:
                x = F.leaky_relu(x, self.negative_slope)
            outputs.append(x)
        return outputs

    def forward(self, pins: torch.Tensor) -> torch.Tensor:
        return self.stage_outputs(pins)[-1]


def fold_batch_norm(model: RoutingFCN) -> FoldedFCN:
    """Return a FoldedFCN that computes what `model` computes in eval mode."""
    weights, biases = [], []
    with torch.no_grad():
        for stage in model.features:
            conv, norm = stage[0], stage[1]
            factor = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)  # (C_out,)
            weight = conv.weight.double() * factor[:, None, None, None]
            bias = (conv.bias.double() - norm.running_mean.double()) * factor + norm.bias.double()
            weights.append(weight.float())
            biases.append(bias.float())
        weights.append(model.scores.weight.detach().float())
        biases.append(model.scores.bias.detach().float())
    config = model.config
    return FoldedFCN(weights, biases, config.negative_slope, (config.height, config.width))
