"""Training loop of the routing FCN: weighted cross-entropy, Adam, checkpoints, resume, DDP.

The loss is the published one: two-class cross-entropy per pixel and per layer with class
weights 1 ('off') and 3 ('on'), because over 98% of pixels are 'off'. Each epoch's
permutation and, with `fresh`, each epoch's training set are drawn from seeds derived
from the run seed and the epoch, so a resumed run repeats an uninterrupted one.

Under `torchrun`, each process trains on its shard of every epoch with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs) and rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from deeproute import checkpoint as ckpt
from deeproute.dataset import load_arrays
from deeproute.device import resolve_device
from deeproute.errors import InputError
from deeproute.metrics import PixelCounts
from deeproute.model import FCNConfig, RoutingFCN, compare_scores, pair_logits
from deeproute.outputs import check_can_create

logger = logging.getLogger(__name__)

FRESH_SEED_OFFSET = 1_000_000_007  # keeps fresh-set seeds far from the small seeds users pick for files
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class TrainConfig:
    """Optimization settings; the defaults are the published recipe."""

    epochs: int = 30
    batch_size: int = 100  # global batch, split evenly across DDP processes
    lr: float = 5e-4
    weight_decay: float = 1e-5
    schedule: str = "constant"  # "constant", "step" (x step_factor every step_epochs) or "cosine"
    step_epochs: int = 30
    step_factor: float = 0.1
    class_weights: tuple[float, float] = (1.0, 3.0)  # ('off', 'on'): 'on' pixels are rare
    fresh: bool = False  # draw a new training set from the generator every epoch
    fresh_count: int | None = None  # samples per fresh epoch; None: size of the training file
    seed: int = 0
    amp: str = "auto"  # bf16 autocast ("auto" or "bf16") or "off"; batch norm and loss stay float32
    device: str = "auto"  # "auto" picks CUDA when present
    train_eval_samples: int = 2000  # fixed training subset scored every epoch
    eval_batch_size: int = 500

    def validate(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"learning rate must be positive and finite, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.amp not in ("auto", "bf16", "off"):
            raise InputError(f"unknown mixed-precision mode {self.amp!r}; expected auto, bf16 or off")
        if self.step_epochs < 1:
            raise InputError(f"step epochs must be at least 1, got {self.step_epochs}")
        if not 0 < self.step_factor <= 1:
            raise InputError(f"step factor must be in (0, 1], got {self.step_factor}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise InputError(f"weight decay must be non-negative and finite, got {self.weight_decay}")
        if self.fresh_count is not None and self.fresh_count < 1:
            raise InputError(f"fresh sample count must be positive, got {self.fresh_count}")


def check_finite_loss(loss: float, epoch: int) -> None:
    """Raise InputError when an epoch's mean loss is NaN or infinite, before it is saved."""
    if not math.isfinite(loss):
        raise InputError(
            f"training diverged: the mean loss of epoch {epoch} is {loss}; "
            f"lower the learning rate (checkpoints of earlier epochs are kept)"
        )


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    model_config: dict | None = None,
    resume: bool = False,
    progress: bool = False,
    on_epoch=None,
) -> list[dict]:
    """Train the routing FCN and write metrics, curves and checkpoints into `out_dir`.

    Args:
        model_config: FCNConfig fields to override (channels, stages, first_kernel, ...).
        resume: continue from `out_dir/last.pt` with its optimizer, scheduler and epoch.
        progress: show a tqdm bar per epoch on stderr (rank 0 only).
        on_epoch: called with each epoch's record on rank 0.

    Returns:
        The per-epoch records, as also written to `out_dir/metrics.jsonl`.
    """
    config.validate()
    out = Path(out_dir)
    resolve_device(config.device)  # reject a bad --device before any work
    distributed = _init_distributed(config.device)
    device = _pick_device(config.device, distributed)
    amp_dtype = _amp_dtype(config.amp, device)

    train_x, train_y, train_info = load_arrays(train_path)
    val_x, val_y, val_info = load_arrays(val_path)
    grid = (train_info.height, train_info.width)
    if (val_info.height, val_info.width) != grid:
        raise InputError(
            f"validation grid {val_info.height}x{val_info.width} differs from training grid "
            f"{grid[0]}x{grid[1]}"
        )

    last_path = out / "last.pt"
    history: list[dict] = []
    start_epoch = 0
    if resume:
        if not last_path.exists():
            raise InputError(f"{last_path}: no checkpoint to resume from")
        state = ckpt.load_checkpoint(last_path)
        model = ckpt.build_model(state, last_path)
        if tuple(state["grid"]) != grid:
            raise InputError(f"{last_path}: checkpoint grid {state['grid']} does not fit the data grid {list(grid)}")
        declared = FCNConfig.from_dict(state["model_config"]).to_dict()
        for key, value in (model_config or {}).items():
            wanted = list(value) if isinstance(value, tuple) else value
            if declared.get(key) != wanted:
                raise InputError(
                    f"{last_path}: the run was trained with {key} = {declared.get(key)}, not {wanted}; "
                    f"drop that option to resume or start a new run in another folder"
                )
        if "training" not in state:
            raise InputError(f"{last_path}: checkpoint has no training state to resume from (only last.pt has it)")
        training = state["training"]
        config = TrainConfig(**{**training["config"], "epochs": config.epochs, "device": config.device})
        config.class_weights = tuple(config.class_weights)
        history = list(training["history"])
        start_epoch = int(training["epoch"]) + 1
    else:
        if out.exists() and (out / "last.pt").exists():
            raise InputError(f"{out}: already contains a run; pass --resume to continue it or pick another --out")
        torch.manual_seed(config.seed)
        overrides = dict(model_config or {})
        model = RoutingFCN(FCNConfig(height=grid[0], width=grid[1], **overrides))
        state = None
    if distributed.main:
        # The folder itself is made with the first epoch's files, so that a run stopped
        # before then leaves no empty folder behind.
        check_can_create(out_dir, "run")

    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fresh_count = config.fresh_count or len(train_x)
    steps_per_epoch = math.ceil((fresh_count if config.fresh else len(train_x)) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, steps_per_epoch))
    if state is not None:
        optimizer.load_state_dict(state["training"]["optimizer"])
        scheduler.load_state_dict(state["training"]["scheduler"])

    trainable = model
    if distributed.enabled:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    class_weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    subset = slice(0, min(config.train_eval_samples, len(train_x)))
    train_eval_x, train_eval_y = train_x[subset], train_y[subset]
    best_f1 = max((row["val"]["f1"] for row in history), default=-1.0)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        epoch_x, epoch_y = _epoch_data(config, epoch, train_x, train_y, train_info, fresh_count)
        order = _epoch_order(config.seed, epoch, len(epoch_x), distributed)
        loss = _train_epoch(
            trainable, optimizer, scheduler, epoch_x, epoch_y, order, config, class_weights,
            device, amp_dtype, distributed, progress and distributed.main, epoch,
        )
        train_seconds = time.perf_counter() - started
        check_finite_loss(loss, epoch)

        val_scores = evaluate_arrays(model, val_x, val_y, device, config.eval_batch_size, distributed)
        train_scores = evaluate_arrays(model, train_eval_x, train_eval_y, device, config.eval_batch_size, distributed)
        record = {
            "epoch": epoch,
            "train_loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "samples_per_s": len(epoch_x) / train_seconds,
            "train": train_scores,
            "val": val_scores,
        }
        history.append(record)
        if distributed.main:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"{out}: cannot create the run folder ({error.strerror})") from error
            _write_epoch(out, model, record, history, config, optimizer, scheduler, epoch, best_f1, train_info)
            best_f1 = max(best_f1, val_scores["f1"])
            logger.info(
                "epoch %d loss %.4f val F1 %.4f train F1 %.4f (%.0f samples/s)",
                epoch, loss, val_scores["f1"], train_scores["f1"], record["samples_per_s"],
            )
            if on_epoch is not None:
                on_epoch(record)
    if distributed.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return history


def evaluate_arrays(model, inputs, labels, device, batch_size: int = 500, distributed: _Distributed | None = None) -> dict:
    """Score a model on uint8 (N,1,H,W) inputs and (N,8,H,W) labels; DDP ranks split the work."""
    counts = predict_counts(model, inputs, labels, device, batch_size, distributed)
    return counts.summary()


def predict_counts(model, inputs, labels, device, batch_size=500, distributed: _Distributed | None = None) -> PixelCounts:
    distributed = distributed or _Distributed()
    was_training = model.training
    model.eval()
    counts = PixelCounts()
    indices = np.arange(distributed.rank, len(inputs), distributed.world)
    with torch.inference_mode():
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            x = _to_input(torch.as_tensor(inputs[batch]), device)
            predicted = compare_scores(model(x))
            counts.add(predicted, labels[batch])
    if distributed.enabled:
        array = torch.as_tensor(counts.as_array(), device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(array)
        counts = PixelCounts.from_array(array.cpu().numpy())
    model.train(was_training)
    return counts


def _to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).float().contiguous(memory_format=torch.channels_last)


def _train_epoch(model, optimizer, scheduler, inputs, labels, order, config, class_weights,
                 device, amp_dtype, distributed, show_progress, epoch) -> float:
    model.train()
    local_batch = max(config.batch_size // distributed.world, 1)
    batches = range(0, len(order), local_batch)
    if show_progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False)
    total_loss = torch.zeros((), dtype=torch.float64)
    for start in batches:
        index = order[start : start + local_batch]
        x = _to_input(inputs[index], device)
        y = labels[index].to(device, non_blocking=True).long()  # (B, 8, H, W)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            scores = model(x)  # (B, 16, H, W)
        loss = F.cross_entropy(pair_logits(scores.float()), y, weight=class_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.detach().double().cpu()
    mean_loss = total_loss / max(len(batches), 1)
    if distributed.enabled:
        dist.all_reduce(mean_loss)
        mean_loss /= distributed.world
    return float(mean_loss)


def _epoch_data(config, epoch, train_x, train_y, info, fresh_count):
    """Return the epoch's training tensors: the file's, or a newly generated set with `fresh`."""
    if not config.fresh:
        return torch.from_numpy(train_x), torch.from_numpy(train_y)
    from deeproute.generate import GenerateConfig, generate_arrays

    fresh = GenerateConfig(
        count=fresh_count,
        height=info.height,
        width=info.width,
        extent_um=info.extent_um or GenerateConfig.extent_um,
        pin_range=info.pin_range or GenerateConfig.pin_range,
        seed=FRESH_SEED_OFFSET + config.seed * 100_003 + epoch,
        label_style=info.label_style or "paper",
    )
    inputs, labels, _ = generate_arrays(fresh)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def _epoch_order(seed: int, epoch: int, count: int, distributed: _Distributed) -> torch.Tensor:
    """Return this process's sample order for an epoch; equal-length shards across ranks."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(count, generator=generator)
    usable = count - count % distributed.world
    return order[distributed.rank : usable : distributed.world]


def _lr_factor(config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if config.schedule == "step":
        return lambda step: config.step_factor ** ((step // steps_per_epoch) // config.step_epochs)
    return lambda step: 1.0


def _write_epoch(out, model, record, history, config, optimizer, scheduler, epoch, best_f1, info) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    label_style = info.label_style or "paper"
    training = {
        "epoch": epoch,
        "config": {**asdict(config), "class_weights": list(config.class_weights)},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
    }
    if record["val"]["f1"] > best_f1:
        ckpt.save_checkpoint(out / "best.pt", ckpt.make_checkpoint(model, label_style, record))
    ckpt.save_checkpoint(out / "last.pt", ckpt.make_checkpoint(model, label_style, record, training))
    from deeproute.curves import plot_training_curves

    plot_training_curves(history, out / "curves.png")


def _init_distributed(device_option: str) -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_option in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Distributed(rank, world, local_rank)


def _pick_device(option: str, distributed: _Distributed) -> torch.device:
    device = resolve_device(option)
    if device.type == "cuda" and distributed.enabled:
        return torch.device("cuda", distributed.local_rank)
    return device


def _amp_dtype(mode: str, device: torch.device):
    if mode == "off":
        return None
    # bf16 keeps float32's exponent range, so no loss scaling is needed on CPU or CUDA.
    return torch.bfloat16
