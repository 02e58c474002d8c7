"""The `deeproute quantize` pipeline: checkpoint -> fold -> calibrate -> [TQT] -> export -> report.

Writes into one folder:

    model.npz, model.json   the integer model (docs/int8-format.md)
    model.onnx              the same model in QDQ form
    report.json             settings, retraining history and, with a validation set,
                            F1 of the float model and of the integer engine
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from deeproute import checkpoint as ckpt
from deeproute.dataset import load_arrays
from deeproute.device import resolve_device
from deeproute.errors import InputError
from deeproute.metrics import PixelCounts
from deeproute.quant.calibrate import WEIGHT_CALIBRATION_METHODS, CalibrationConfig, calibrate_activations
from deeproute.quant.export import save_integer_model, to_integer_model, write_atomically
from deeproute.quant.fold import fold_batch_norm
from deeproute.outputs import check_output_dir, staged_directory
from deeproute.quant.integer import ARRAYS_NAME, MANIFEST_NAME, IntegerFCN
from deeproute.quant.onnx_export import save_onnx
from deeproute.quant.qmodel import build_quantized_model
from deeproute.quant.quantizer import check_bits
from deeproute.quant.retrain import RetrainConfig, default_retrain_settings, retrain
from deeproute.train import evaluate_arrays

logger = logging.getLogger(__name__)

REPORT_NAME = "report.json"
ONNX_NAME = "model.onnx"
OUTPUT_NAMES = (ARRAYS_NAME, MANIFEST_NAME, ONNX_NAME, REPORT_NAME)


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of one quantization run; the defaults give the shipped INT8 model."""

    weight_bits: int = 8  # 4 gives W4A8
    weight_calibration: str | None = None  # "max" or "mse"; None: "mse" below 8 bits, else "max"
    calibration: str = "max"  # activation thresholds: "max", "percentile" or "klj"
    percentile: float = 99.99
    calib_samples: int = 2000  # first samples of the calibration file that are used
    batch_size: int = 100
    epochs: int = 3  # TQT epochs, used only with a training set
    train_samples: int | None = None  # None: the whole training file
    val_samples: int | None = None  # None: the whole validation file
    # TQT optimizer settings; None takes default_retrain_settings(weight_bits).
    lr: float | None = None
    threshold_lr: float | None = None
    schedule: str | None = None  # "constant" or "cosine"
    distill: float = 0.0  # weight of distillation from the float network in TQT; 0: labels only
    seed: int = 0
    device: str = "auto"  # for TQT retraining; integer inference always runs on the CPU

    @property
    def weight_calibration_rule(self) -> str:
        """The weight calibration rule in effect: the explicit one, else mse below 8 bits."""
        if self.weight_calibration is not None:
            return self.weight_calibration
        return "mse" if self.weight_bits < 8 else "max"

    def retrain_config(self) -> RetrainConfig:
        """The TQT settings in effect: explicit values, else the defaults for the weight bit width."""
        defaults = default_retrain_settings(self.weight_bits)
        return RetrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=defaults["lr"] if self.lr is None else self.lr,
            threshold_lr=defaults["threshold_lr"] if self.threshold_lr is None else self.threshold_lr,
            schedule=defaults["schedule"] if self.schedule is None else self.schedule,
            distill=self.distill,
            seed=self.seed,
            device=self.device,
        )

    def validate(self) -> None:
        check_bits(self.weight_bits, "weight bit width")
        if self.weight_calibration_rule not in WEIGHT_CALIBRATION_METHODS:
            raise InputError(
                f"unknown weight calibration {self.weight_calibration!r}; "
                f"expected one of {', '.join(WEIGHT_CALIBRATION_METHODS)}"
            )
        CalibrationConfig(self.calibration, self.percentile, self.batch_size).validate()
        self.retrain_config().validate()
        resolve_device(self.device)
        for name, value in (("calibration samples", self.calib_samples), ("training samples", self.train_samples),
                            ("validation samples", self.val_samples)):
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")


def quantize_checkpoint(
    model_path: str | os.PathLike,
    calib_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: QuantizeConfig = QuantizeConfig(),
    train_path: str | os.PathLike | None = None,
    val_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_epoch=None,
) -> dict:
    """Quantize a float checkpoint, write the integer and ONNX models to `out_dir`, return the report.

    Without `train_path` the thresholds come from static calibration alone; with it, TQT
    retraining follows for `config.epochs` epochs. Raises InputError for invalid settings,
    files or non-finite weights, before anything is written.
    """
    config.validate()
    check_output_dir(out_dir, OUTPUT_NAMES, overwrite, "integer model")

    model, checkpoint = ckpt.load_model(model_path)
    grid = tuple(checkpoint["grid"])
    calib_inputs, _ = _load(calib_path, grid, config.calib_samples, "calibration")
    train = _load(train_path, grid, config.train_samples, "training") if train_path is not None else None
    val = _load(val_path, grid, config.val_samples, "validation") if val_path is not None else None

    folded = fold_batch_norm(model)
    _check_finite(folded, model_path)
    thresholds = calibrate_activations(
        folded, calib_inputs, CalibrationConfig(config.calibration, config.percentile, config.batch_size), progress
    )
    quantized = build_quantized_model(
        folded, thresholds, weight_bits=config.weight_bits, weight_calibration=config.weight_calibration_rule
    )

    history = []
    if train is not None:
        history = retrain(
            quantized, *train, config.retrain_config(), *(val or (None, None)), progress=progress, on_epoch=on_epoch,
            teacher=folded,
        )

    engine = to_integer_model(quantized, _metadata(model_path, checkpoint, config, train is not None))

    settings = asdict(config)
    settings["weight_calibration"] = config.weight_calibration_rule
    if train is None:
        # Static mode retrains nothing, so no retraining setting applies.
        settings.update(epochs=0, lr=None, threshold_lr=None, schedule=None, distill=None)
    else:
        retrain_config = config.retrain_config()
        settings.update(lr=retrain_config.lr, threshold_lr=retrain_config.threshold_lr, schedule=retrain_config.schedule)
    report = {
        "model": str(model_path),
        "grid": list(grid),
        "settings": settings,
        "mode": "tqt" if train is not None else "static",
        "device": str(resolve_device(config.device)) if train is not None else None,
        "calibration_samples": len(calib_inputs),
        "training_samples": len(train[0]) if train is not None else 0,
        "bias_bits": [stage.bias_bits for stage in engine.stages],
        "clipped_biases": engine.metadata["quantization"]["clipped_biases"],
        "clipped_biases_total": sum(engine.metadata["quantization"]["clipped_biases"]),
        "retraining": history,
    }
    if val is not None:
        report["validation"] = _compare_on(model, engine, *val, config.batch_size, progress)
        report["validation"]["path"] = str(val_path)
    # The four files appear together, and only after validation: an error or Ctrl-C
    # before this point leaves `out_dir` as it was.
    with staged_directory(out_dir, OUTPUT_NAMES, overwrite, "integer model") as staging:
        save_integer_model(engine, staging)
        save_onnx(engine, staging / ONNX_NAME)
        write_atomically(staging / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    logger.info("wrote %s to %s", ", ".join(OUTPUT_NAMES), out_dir)
    return report


def evaluate_engine(engine: IntegerFCN, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 100, progress: bool = False) -> dict:
    """Return pixel metrics of the integer engine on uint8 arrays."""
    counts = PixelCounts()
    batches = range(0, len(inputs), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="integer inference", unit="batch", leave=False)
    for start in batches:
        counts.add(engine.predict(inputs[start : start + batch_size]), labels[start : start + batch_size])
    return counts.summary()


def _compare_on(model, engine, inputs, labels, batch_size, progress) -> dict:
    float_summary = evaluate_arrays(model, inputs, labels, torch.device("cpu"), batch_size)
    int8_summary = evaluate_engine(engine, inputs, labels, batch_size, progress)
    return {
        "samples": len(inputs),
        "float": float_summary,
        "int8": int8_summary,
        "f1_drop_points": 100.0 * (float_summary["f1"] - int8_summary["f1"]),
    }


def _check_finite(folded, model_path) -> None:
    """Raise InputError when a folded weight or bias is NaN or infinite (e.g. a negative running variance)."""
    for index, (weight, bias) in enumerate(zip(folded.weights, folded.biases)):
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise InputError(
                f"{model_path}: stage {index} has NaN or infinite weights after folding batch norm; "
                f"quantize a checkpoint with finite weights and running variances"
            )


def _load(path, grid, limit, role) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels, info = load_arrays(path)
    if (info.height, info.width) != grid:
        raise InputError(
            f"{path}: the {role} set is on a {info.height}x{info.width} grid, "
            f"but the model was trained on {grid[0]}x{grid[1]}"
        )
    if limit is not None:
        inputs, labels = inputs[:limit], labels[:limit]
    return inputs, labels


def _metadata(model_path, checkpoint: dict, config: QuantizeConfig, retrained: bool) -> dict:
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    return {
        "quantization": {
            "mode": "tqt" if retrained else "static",
            "calibration": config.calibration,
            "weight_calibration": config.weight_calibration_rule,
            "weight_bits": config.weight_bits,
            "activation_bits": 8,
            "score_bits": 16,
            "epochs": config.epochs if retrained else 0,
            "schedule": config.retrain_config().schedule if retrained else None,
        },
        "source": {
            "checkpoint": Path(model_path).name,
            "sha256": digest,
            "model_config": checkpoint["model_config"],
            "label_style": checkpoint.get("label_style"),
        },
    }
