"""TQT retraining: weights and log2 thresholds of a QuantizedFCN trained together.

Retraining starts from a statically calibrated model with batch norm already folded. It
minimizes the training loss of deeproute.train with Adam: two-class cross-entropy per pixel
and layer, class weights 1 'off' and 3 'on'. The thresholds get their own learning rate,
because a log2 threshold moves in powers of 2 while a weight moves in small steps. With the
cosine schedule both rates decay to 0 over all steps, so the thresholds settle instead of
jumping between two powers of 2 at the end.

With a teacher (the float network) and a distillation weight d > 0, the loss becomes
CE(labels) + d * KL(teacher || student), the Kullback-Leibler divergence between the
teacher's and the quantized network's (off, on) probabilities, averaged over pixels and
layers. The soft targets tell the low-bit network how confident the float network is, not
just which class wins.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deeproute.device import resolve_device
from deeproute.errors import InputError
from deeproute.model import pair_logits
from deeproute.quant.qmodel import QuantizedFCN
from deeproute.train import TrainConfig, check_finite_loss, evaluate_arrays

logger = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of TQT retraining."""

    epochs: int = 3  # passes over the training set; a few suffice when starting from float weights
    batch_size: int = 100  # the float training's batch size
    lr: float = 1e-4  # Adam, weights and biases: a fine-tuning rate, 20x below the float run's
    threshold_lr: float = 1e-3  # Adam, log2 thresholds: about 1,000 steps to move one power of 2
    weight_decay: float = 0.0  # none: decaying a weight towards 0 changes its quantized value
    schedule: str = "cosine"  # "constant" or "cosine" (both rates decay to 0 over all steps)
    class_weights: tuple[float, float] = TrainConfig.class_weights
    distill: float = 0.0  # weight of the distillation term, where 0 trains on the labels alone
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        for name, value in (("learning rate", self.lr), ("threshold learning rate", self.threshold_lr)):
            if not (value > 0 and math.isfinite(value)):
                raise InputError(f"{name} must be positive and finite, got {value}")
        if not (self.distill >= 0 and math.isfinite(self.distill)):
            raise InputError(f"distillation weight must be 0 or more and finite, got {self.distill}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")


def default_retrain_settings(weight_bits: int) -> dict:
    """Return the lr, threshold_lr and schedule that `deeproute quantize` uses for `weight_bits`.

    These are the settings of the shipped INT8 and W4A8 models (docs/benchmarks.md). At 8
    bits and more, TQT fine-tunes, and weights move far less than one quantization step.
    Below 8 bits a step is 1/8 of the threshold (at 4 bits), so weights must cross steps,
    which needs a higher weight rate: on an early checkpoint, W4A8 after 100 steps reached
    F1 0.82 with lr 3e-4 and 0.80 with 1e-3 (threshold lr 1e-3, cosine), but 0.58 with lr
    1e-4, threshold lr 1e-2 and a constant rate. Both widths use threshold lr 1e-3 with
    cosine decay, so the thresholds settle instead of flipping between powers of 2.
    """
    lr = RetrainConfig.lr if weight_bits >= 8 else 3e-4
    return {"lr": lr, "threshold_lr": RetrainConfig.threshold_lr, "schedule": RetrainConfig.schedule}


def retrain(
    model: QuantizedFCN,
    train_inputs: np.ndarray,
    train_labels: np.ndarray,
    config: RetrainConfig = RetrainConfig(),
    val_inputs: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: bool = False,
    on_epoch=None,
    teacher: torch.nn.Module | None = None,
) -> list[dict]:
    """Train `model` in place with TQT and return one record per epoch.

    With validation arrays, each record also contains the fake-quantized model's
    validation metrics, computed in eval mode and so identical to the integer engine's.
    `teacher`, a float network with the same outputs, is needed when `config.distill` > 0.
    """
    config.validate()
    if config.distill > 0 and teacher is None:
        raise ValueError("distillation needs a teacher network")
    if len(train_inputs) < config.batch_size:
        raise InputError(
            f"the training set has {len(train_inputs)} samples, fewer than one batch of {config.batch_size}"
        )
    device = resolve_device(config.device)
    model.to(device)
    if config.distill > 0:
        teacher = teacher.to(device).eval()
    else:
        teacher = None
    optimizer = torch.optim.Adam(
        [
            {"params": model.weight_parameters(), "lr": config.lr, "weight_decay": config.weight_decay},
            {"params": model.threshold_parameters(), "lr": config.threshold_lr, "weight_decay": 0.0},
        ]
    )
    scheduler = None
    if config.schedule == "cosine":
        steps = config.epochs * (len(train_inputs) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    class_weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    inputs = torch.from_numpy(train_inputs)
    labels = torch.from_numpy(train_labels)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(inputs), generator=generator)
        loss = _train_epoch(
            model, optimizer, scheduler, inputs, labels, order, config, class_weights, device, progress, epoch, teacher
        )
        check_finite_loss(loss, epoch)
        record = {"epoch": epoch, "train_loss": loss, "epoch_seconds": time.perf_counter() - started}
        if val_inputs is not None:
            record["val"] = evaluate_arrays(model, val_inputs, val_labels, device, config.batch_size)
        record["exponents"] = model.exponents()
        history.append(record)
        logger.info("TQT epoch %d loss %.4f%s", epoch, loss, f" val F1 {record['val']['f1']:.4f}" if "val" in record else "")
        if on_epoch is not None:
            on_epoch(record)
    model.to("cpu")
    model.eval()
    if teacher is not None:
        teacher.to("cpu")
    return history


def _train_epoch(model, optimizer, scheduler, inputs, labels, order, config, class_weights, device, progress, epoch,
                 teacher) -> float:
    model.train()
    batch_size = config.batch_size
    batches = range(0, len(order) - batch_size + 1, batch_size)  # full batches only
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"TQT epoch {epoch}", unit="batch", leave=False)
    total = torch.zeros((), dtype=torch.float64)
    for start in batches:
        index = order[start : start + batch_size]
        x = inputs[index].to(device).float().contiguous(memory_format=torch.channels_last)  # (B, 1, H, W)
        y = labels[index].to(device).long()  # (B, 8, H, W)
        scores = model(x)  # (B, 16, H, W), fake-quantized
        logits = pair_logits(scores)  # (B, 2, 8, H, W)
        loss = F.cross_entropy(logits, y, weight=class_weights)
        if teacher is not None:
            with torch.no_grad():
                target = F.log_softmax(pair_logits(teacher(x)), dim=1)
            divergence = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none", log_target=True)
            loss = loss + config.distill * divergence.sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.detach().double().cpu()
    return float(total / max(len(batches), 1))

