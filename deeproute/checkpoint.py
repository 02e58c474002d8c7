"""Checkpoints: plain dicts of tensors and numbers, saved atomically, loaded with weights_only.

Contents (format version 1):
    format_version   int
    model_config     dict of FCNConfig fields
    state_dict       model weights (float32, on the CPU)
    grid             [height, width]
    label_style      str
    metrics          dict of the epoch's figures
    training         optional dict: epoch, optimizer, scheduler and RNG state, train config
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from deeproute.errors import InputError
from deeproute.model import FCNConfig, RoutingFCN

CHECKPOINT_VERSION = 1
WEIGHTS_DIR = Path(__file__).with_name("weights")
DEFAULT_MODEL = WEIGHTS_DIR / "fcn32.pt"
DEFAULT_INT8_MODEL = WEIGHTS_DIR / "fcn32-int8"
DEFAULT_W4A8_MODEL = WEIGHTS_DIR / "fcn32-w4a8"  # 4-bit weights, 8-bit activations


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """Write `checkpoint` to `path` through a temporary file, so a crash never leaves half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, target)


def make_checkpoint(model: RoutingFCN, label_style: str = "paper", metrics: dict | None = None, training: dict | None = None) -> dict:
    """Build a checkpoint dict from a model, with weights copied to the CPU."""
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu() for k, v in module.state_dict().items()}
    checkpoint = {
        "format_version": CHECKPOINT_VERSION,
        "model_config": module.config.to_dict(),
        "state_dict": state,
        "grid": [module.config.height, module.config.width],
        "label_style": label_style,
        "metrics": metrics or {},
    }
    if training is not None:
        checkpoint["training"] = training
    return checkpoint


def _looks_like_torch_file(path: Path) -> bool:
    """Return True for a zip archive (torch.save's format) or a pickle stream (its legacy format)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"  # the pickle protocol opcode


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint with `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a checkpoint file")
    try:
        is_torch_file = _looks_like_torch_file(path)
    except OSError as error:
        raise InputError(f"{path}: cannot read the checkpoint ({error.strerror})") from error
    if not is_torch_file:
        raise InputError(f"{path}: not a valid deeproute checkpoint (not a file written by torch.save)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere in the unpickler
        # torch's own message suggests weights_only=False, which would run arbitrary code,
        # so it is not passed on.
        reason = "it holds Python objects other than tensors and plain data" if "weights_only" in str(error) else "not a readable torch file"
        raise InputError(f"{path}: not a valid deeproute checkpoint ({reason})") from error
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path}: not a valid deeproute checkpoint (top level is {type(checkpoint).__name__})")
    for key in ("format_version", "model_config", "state_dict", "grid"):
        if key not in checkpoint:
            raise InputError(f"{path}: not a valid deeproute checkpoint (missing {key!r})")
    if not isinstance(checkpoint["model_config"], dict) or not isinstance(checkpoint["state_dict"], dict):
        raise InputError(f"{path}: not a valid deeproute checkpoint (model_config and state_dict must be dicts)")
    if checkpoint["format_version"] != CHECKPOINT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {checkpoint['format_version']} is not supported "
            f"(expected {CHECKPOINT_VERSION})"
        )
    return checkpoint


def build_model(checkpoint: dict, path: str | os.PathLike = "checkpoint") -> RoutingFCN:
    """Instantiate the network a checkpoint describes and load its weights."""
    try:
        config = FCNConfig.from_dict(checkpoint["model_config"])
        model = RoutingFCN(config)
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError, InputError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: weights do not fit the architecture it declares ({first_line})") from error
    if not all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        raise InputError(f"{path}: checkpoint contains NaN or infinite weights")
    return model


def load_model(path: str | os.PathLike | None = None, grid: tuple[int, int] | None = None) -> tuple[RoutingFCN, dict]:
    """Load a model in eval mode from `path`, or the shipped model when `path` is None.

    Raises InputError when `grid` is given and differs from the grid the model was trained on.
    """
    if path is None:
        path = DEFAULT_MODEL
        if not path.exists():
            raise InputError(f"no shipped model at {path}; pass --model CKPT")
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint, path)
    if grid is not None and tuple(grid) != tuple(checkpoint["grid"]):
        raise InputError(
            f"{path}: model was trained on a {checkpoint['grid'][0]}x{checkpoint['grid'][1]} grid, "
            f"but the data is {grid[0]}x{grid[1]}"
        )
    model.eval()
    return model, checkpoint
