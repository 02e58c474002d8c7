"""Score a trained model on a dataset file."""

from __future__ import annotations

import logging
import os

import torch

from deeproute.checkpoint import load_model
from deeproute.dataset import open_dataset
from deeproute.errors import InputError
from deeproute.metrics import PixelCounts
from deeproute.model import compare_scores

logger = logging.getLogger(__name__)


def evaluate_file(
    data: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    batch_size: int = 500,
    device: str = "auto",
) -> dict:
    """Return pixel metrics of a model (the shipped one when `model_path` is None) on `data`."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    with open_dataset(data) as dataset:
        if len(dataset) == 0:
            raise InputError(f"{data}: the dataset is empty (N = 0)")
        model, _ = load_model(model_path, grid=dataset.grid)
        model = model.to(target, memory_format=torch.channels_last)
        counts = PixelCounts()
        with torch.inference_mode():
            for _, inputs, labels in dataset.iter_chunks(batch_size):
                x = torch.from_numpy(inputs).to(target).float().contiguous(memory_format=torch.channels_last)
                counts.add(compare_scores(model(x)), labels)
    return counts.summary()
