"""Measure what quantization costs the routing FCN: F1 and inference speed.

On one validation set it prints the F1 of the float32 model, of static INT8 with each
calibration rule, and of TQT INT8 and TQT W4A8, each retrained with the settings that
`deeproute quantize` uses for its weight bit width (deeproute.quant.retrain.
default_retrain_settings). A float32 control is fine-tuned with the same data, steps,
learning rate and schedule as TQT INT8, so that the gain of extra training is not read as
a gain of TQT. Then it times float PyTorch, the numpy integer engine and onnxruntime on
the same samples.

Quantized F1 comes from the fake-quantized model in eval mode, which computes in float64
and is bit-identical to the integer engine (tests/test_quant_model.py checks this). The
script also checks that both give the same predictions on the timing samples.

The retrained rows above use a short run (--epochs over --train-samples), so that the
script finishes in minutes. Models exported by `deeproute quantize` with longer recipes are
scored too when passed with --exported NAME=DIR: the integer engine runs them on the same
validation samples, and the row names the recipe from the folder's report.json.

Usage:
    python scripts/bench_quant.py --model deeproute/weights/fcn32.pt --train data/train.h5 \\
        --val data/val.h5 --exported "TQT INT8"=deeproute/weights/fcn32-int8 --json bench_quant.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from deeproute.checkpoint import load_model
from deeproute.dataset import load_arrays
from deeproute.errors import InputError
from deeproute.model import compare_scores, pair_logits
from deeproute.quant.calibrate import CALIBRATION_METHODS, CalibrationConfig, calibrate_activations
from deeproute.quant.export import to_integer_model
from deeproute.quant.fold import fold_batch_norm
from deeproute.quant.integer import load_int8_engine
from deeproute.quant.onnx_export import build_onnx
from deeproute.quant.pipeline import REPORT_NAME, evaluate_engine
from deeproute.quant.qmodel import build_quantized_model
from deeproute.quant.retrain import RetrainConfig, default_retrain_settings, retrain
from deeproute.train import TrainConfig, evaluate_arrays

logger = logging.getLogger("bench_quant")
CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeproute/weights/fcn32.pt", help="float checkpoint")
    parser.add_argument("--train", default="data/train.h5", help="source of calibration and TQT samples")
    parser.add_argument("--val", default="data/val.h5")
    parser.add_argument("--calib-samples", type=int, default=1000)
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2, help="TQT and control fine-tuning epochs")
    parser.add_argument("--val-samples", type=int, default=1000)
    parser.add_argument("--speed-samples", type=int, default=300, help="samples timed per engine")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--exported", action="append", default=[], metavar="NAME=DIR",
                        help="also score the integer model in DIR (written by deeproute quantize); repeatable")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    exported = [_parse_exported(parser, value) for value in args.exported]
    engines = {}
    for name, directory in exported:  # before any work, so a bad folder costs no benchmark time
        try:
            engines[name] = load_int8_engine(directory)
        except InputError as error:
            parser.error(f"--exported {name}={directory}: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    model, checkpoint = load_model(args.model)
    train_x, train_y, _ = load_arrays(args.train)
    val_x, val_y, _ = load_arrays(args.val)
    calib_x = train_x[: args.calib_samples]
    train_x, train_y = train_x[: args.train_samples], train_y[: args.train_samples]
    val_x, val_y = val_x[: args.val_samples], val_y[: args.val_samples]
    folded = fold_batch_norm(model)

    rows = [("float32", _f1(model, val_x, val_y, args.batch_size))]
    thresholds = {}
    for method in CALIBRATION_METHODS:
        thresholds[method] = calibrate_activations(folded, calib_x, CalibrationConfig(method, batch_size=args.batch_size))
        quantized = build_quantized_model(folded, thresholds[method])
        rows.append((f"static INT8, {method} calibration", _f1(quantized, val_x, val_y, args.batch_size)))
        logger.info("%s", rows[-1])

    started = datetime.datetime.now(datetime.timezone.utc)
    retrain_configs = {
        weight_bits: RetrainConfig(epochs=args.epochs, batch_size=args.batch_size, device="cpu",
                                   **default_retrain_settings(weight_bits))
        for weight_bits in (8, 4)
    }
    tqt_models = {}
    for name, weight_bits, weight_calibration in (("TQT INT8 (W8A8)", 8, "max"), ("TQT W4A8", 4, "mse")):
        quantized = build_quantized_model(folded, thresholds["max"], weight_bits, weight_calibration=weight_calibration)
        if weight_bits != 8:  # static W8A8 with max calibration is already a row
            rows.append((f"static W{weight_bits}A8, {weight_calibration} weight thresholds",
                         _f1(quantized, val_x, val_y, args.batch_size)))
        retrain(quantized, train_x, train_y, retrain_configs[weight_bits])
        tqt_models[name] = quantized
        steps = args.epochs * (len(train_x) // args.batch_size)
        rows.append((f"{name}, short run ({steps} steps)", _f1(quantized, val_x, val_y, args.batch_size)))
        logger.info("%s", rows[-1])

    recipes = {}
    for name, directory in exported:
        engine = engines[name]
        recipes[name] = _recipe(directory)
        row = f"{name}, exported ({recipes[name]['summary']})"
        rows.append((row, evaluate_engine(engine, val_x, val_y, args.batch_size)["f1"]))
        logger.info("%s", rows[-1])

    control = fold_batch_norm(model)
    _fine_tune_float(control, train_x, train_y, retrain_configs[8])
    rows.append(("float32 control, same fine-tuning", _f1(control, val_x, val_y, args.batch_size)))

    speed = _time_engines(model, tqt_models["TQT INT8 (W8A8)"], val_x[: args.speed_samples], args.batch_size)
    results = {
        "model": args.model,
        "model_epoch": checkpoint.get("metrics", {}).get("epoch"),
        "samples": {"calibration": len(calib_x), "tqt_training": len(train_x), "validation": len(val_x),
                    "timing": min(args.speed_samples, len(val_x))},
        "tqt": {
            f"W{bits}A8": {"epochs": config.epochs, "lr": config.lr, "threshold_lr": config.threshold_lr,
                           "schedule": config.schedule}
            for bits, config in retrain_configs.items()
        },
        "tqt_init": {"activations": "max", "weights": {"W8A8": "max", "W4A8": "mse"}},
        "exported": {name: {"path": str(directory), **recipes[name]} for name, directory in exported},
        "f1": {name: f1 for name, f1 in rows},
        "speed": speed,
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} torch threads, numpy {np.__version__}",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _print_tables(rows, speed)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


def _parse_exported(parser, value: str) -> tuple[str, str]:
    name, separator, directory = value.partition("=")
    if not separator or not name or not directory:
        parser.error(f"--exported takes NAME=DIR, got {value!r}")
    return name, directory


def _recipe(directory) -> dict:
    """Return the settings of an exported model from its report.json, with a one-line summary."""
    try:
        with open(os.path.join(directory, REPORT_NAME), encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return {"summary": "no report.json"}
    settings = report.get("settings", {})
    keys = ("weight_bits", "epochs", "lr", "threshold_lr", "schedule", "distill")
    recipe = {key: settings.get(key) for key in keys}
    recipe["training_samples"] = report.get("training_samples")
    recipe["mode"] = report.get("mode")
    if recipe["mode"] == "tqt":
        steps = recipe["epochs"] * (recipe["training_samples"] // settings.get("batch_size", 100))
        summary = (f"W{recipe['weight_bits']}A8, {steps} TQT steps, lr {recipe['lr']:g}, "
                   f"threshold lr {recipe['threshold_lr']:g}, {recipe['schedule']}")
        if recipe.get("distill"):
            summary += f", distill {recipe['distill']:g}"
    else:
        summary = f"W{recipe['weight_bits']}A8, static"
    recipe["summary"] = summary
    return recipe


def _cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _f1(model, inputs, labels, batch_size) -> float:
    return evaluate_arrays(model, inputs, labels, CPU, batch_size)["f1"]


def _fine_tune_float(model, inputs, labels, config: RetrainConfig) -> None:
    """Fine-tune a folded float model with TQT's loss, optimizer, weight learning rate, schedule and order."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * (len(inputs) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if config.schedule == "cosine" else None
    class_weights = torch.tensor(TrainConfig.class_weights)
    generator = torch.Generator().manual_seed(config.seed)
    inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
            index = order[start : start + config.batch_size]
            scores = model(inputs[index].float())
            loss = F.cross_entropy(pair_logits(scores), labels[index].long(), weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    model.eval()


def _time_engines(model, quantized, inputs, batch_size) -> dict:
    """Return samples/s of float PyTorch, the integer engine and onnxruntime on `inputs`."""
    import onnxruntime

    engine = to_integer_model(quantized)
    session = onnxruntime.InferenceSession(build_onnx(engine).SerializeToString(), providers=["CPUExecutionProvider"])

    def run_float(batch):
        with torch.inference_mode():
            x = torch.from_numpy(batch).float().contiguous(memory_format=torch.channels_last)
            return compare_scores(model(x)).numpy()

    def run_onnx(batch):
        scores = session.run(None, {"pins": batch.astype(np.float32)})[0]
        return scores[:, 1::2] > scores[:, 0::2]

    model = model.to(memory_format=torch.channels_last)
    runners = {"float32 PyTorch": run_float, "integer engine (numpy)": engine.predict, "onnxruntime QDQ": run_onnx}
    speed, predictions = {}, {}
    for name, run in runners.items():
        run(inputs[:batch_size])  # warm-up
        started = time.perf_counter()
        predictions[name] = np.concatenate([run(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
        speed[name] = len(inputs) / (time.perf_counter() - started)
    with torch.no_grad():
        fake = compare_scores(quantized(torch.from_numpy(inputs))).numpy()
    speed["engine equals fake-quant predictions"] = bool(np.array_equal(predictions["integer engine (numpy)"], fake))
    speed["onnxruntime equals engine predictions"] = bool(
        np.array_equal(predictions["onnxruntime QDQ"], predictions["integer engine (numpy)"])
    )
    onnx_scores = session.run(None, {"pins": inputs.astype(np.float32)})[0] / 2.0**engine.score_exponent
    speed["onnxruntime scores differing from engine (fraction)"] = float(np.mean(onnx_scores != engine.scores(inputs)))
    return speed


def _print_tables(rows, speed) -> None:
    float_f1 = rows[0][1]
    print("| model | F1 | vs float32 (points) |")
    print("|---|---|---|")
    for name, f1 in rows:
        print(f"| {name} | {f1:.4f} | {100 * (f1 - float_f1):+.2f} |")
    print()
    print("| inference | samples/s |")
    print("|---|---|")
    for name, value in speed.items():
        print(f"| {name} | {value if isinstance(value, bool) else f'{value:.3g}'} |")


if __name__ == "__main__":
    main()
