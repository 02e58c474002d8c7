"""Parse the `--device` option shared by every command that runs the network."""

from __future__ import annotations

import torch

from deeproute.errors import InputError


def resolve_device(option: str = "auto") -> torch.device:
    """Resolve 'auto', 'cpu', 'cuda' or 'cuda:N' to a torch device.

    Raises InputError for any other string, for CUDA without a GPU and for a GPU index
    that does not exist.
    """
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(option)
    except (RuntimeError, ValueError):
        raise InputError(f"invalid device {option!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {option!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {option} requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {option} does not exist; this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return device
