"""Score a trained model on a dataset file."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from deeproute.checkpoint import load_model
from deeproute.dataset import open_dataset
from deeproute.device import resolve_device
from deeproute.errors import InputError
from deeproute.metrics import PixelCounts
from deeproute.model import compare_scores
from deeproute.route_metrics import RouteCounts, route_records
from deeproute.tech import DEFAULT_EXTENT_UM

logger = logging.getLogger(__name__)


def evaluate_file(
    data: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    batch_size: int = 500,
    device: str = "auto",
    route: bool = True,
    int8_dir: str | os.PathLike | None = None,
) -> dict:
    """Return pixel metrics of a model (the shipped one when `model_path` is None) on `data`.

    With `int8_dir`, the integer engine of that exported folder (see `deeproute.quant`)
    scores the data instead of a checkpoint, on the CPU.

    With `route`, the result also holds route-level figures under "route" (see
    `deeproute.route_metrics`), before and after repairing every net; repair runs on the
    CPU at a few milliseconds per net.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    target = resolve_device(device)
    with open_dataset(data) as dataset:
        if len(dataset) == 0:
            raise InputError(f"{data}: the dataset is empty (N = 0)")
        if int8_dir is not None:
            if model_path is not None:
                raise InputError("pass either --model or --int8, not both")
            score = _int8_scorer(int8_dir, dataset.grid)
        else:
            model, _ = load_model(model_path, grid=dataset.grid)
            model = model.to(target, memory_format=torch.channels_last)

            def score(inputs):
                return model(torch.from_numpy(inputs).to(target).float().contiguous(memory_format=torch.channels_last))
        counts = PixelCounts()
        routes = RouteCounts()
        extent_um = dataset.info.extent_um or (DEFAULT_EXTENT_UM, DEFAULT_EXTENT_UM)
        with torch.inference_mode():
            for start, inputs, labels in dataset.iter_chunks(batch_size):
                scores = score(inputs)
                counts.add(compare_scores(scores), labels)
                if route:
                    pins = dataset.read_pins(start, start + labels.shape[0])
                    routes.add(route_records(scores.float().cpu().numpy(), labels, pins, extent_um))
                    logger.info("route figures: %d of %d nets done", routes.predicted.nets, len(dataset))
    summary = counts.summary()
    if route:
        summary["route"] = routes.summary()
    return summary


def _int8_scorer(directory: str | os.PathLike, grid: tuple[int, int]):
    """Return a function mapping uint8 pin maps to float scores of the integer engine in `directory`."""
    from deeproute.quant.integer import load_int8_engine

    engine = load_int8_engine(directory)
    if tuple(engine.grid) != tuple(grid):
        raise InputError(
            f"{directory}: model was quantized for a {engine.grid[0]}x{engine.grid[1]} grid, "
            f"but the data is {grid[0]}x{grid[1]}"
        )
    scale = 2.0**engine.score_exponent  # int16 scores times a power of 2 are exact in float32

    def score(inputs):
        return torch.from_numpy(engine.scores(inputs).astype(np.float32) * np.float32(scale))

    return score
