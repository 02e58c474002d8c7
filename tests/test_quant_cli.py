"""`deeproute quantize` and `deeproute evaluate --int8` on good and bad input."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deeproute.cli import main
from deeproute.generate import GenerateConfig, generate_dataset
from deeproute.quant import load_int8_engine


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_one_line_error(result, message):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]


@pytest.fixture(scope="module")
def static_export(tmp_path_factory, tiny_run, small_data):
    """An integer model folder made by static max calibration of the tiny trained model."""
    train, val = small_data
    out = tmp_path_factory.mktemp("quant") / "static"
    result = _invoke(
        "quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 200,
        "--val", val, "--batch-size", 50, "--out", out,
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_quantize_writes_all_files(static_export):
    out, result = static_export
    for name in ("model.npz", "model.json", "model.onnx", "report.json"):
        assert (out / name).is_file(), name
    assert "F1 on 200 validation samples" in result.output


def test_quantize_report_compares_f1(static_export):
    out, _ = static_export
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "static"
    assert report["settings"]["epochs"] == 0
    assert report["device"] is None
    assert report["validation"]["samples"] == 200
    assert 0.0 <= report["validation"]["int8"]["f1"] <= 1.0
    drop = 100 * (report["validation"]["float"]["f1"] - report["validation"]["int8"]["f1"])
    assert report["validation"]["f1_drop_points"] == pytest.approx(drop)


def test_quantize_summary_states_f1_change(static_export):
    _, result = static_export
    summary = [line for line in result.output.splitlines() if line.startswith("F1 on")]
    assert len(summary) == 1
    assert "-0.00" not in summary[0]
    assert re.search(r"\((\d+\.\d\d points (below|above) float|the same as float to 0\.01 points)\)$", summary[0])


def test_quantize_16_bit_weights_keep_f1(tmp_path, tiny_run, small_data):
    train, val = small_data
    out = tmp_path / "w16"
    result = _invoke(
        "quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 200,
        "--val", val, "--weight-bits", 16, "--batch-size", 50, "--out", out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["clipped_biases_total"] == 0
    assert 32 in report["bias_bits"]
    assert abs(report["validation"]["f1_drop_points"]) < 1.0
    assert "warning" not in result.stderr
    manifest = json.loads((out / "model.json").read_text())
    assert [stage["bias_bits"] for stage in manifest["stages"]] == report["bias_bits"]


def test_quantize_static_low_bits_warns(tmp_path, tiny_run, small_data):
    train, _ = small_data
    result = _invoke(
        "quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 100,
        "--weight-bits", 4, "--batch-size", 50, "--out", tmp_path / "w4", "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "warning: static quantization with 4-bit weights" in result.stderr
    assert "--train" in result.stderr
    report = json.loads((tmp_path / "w4" / "report.json").read_text())
    assert report["settings"]["weight_calibration"] == "mse"


def test_quantize_help_mentions_low_bit_retraining():
    result = _invoke("quantize", "--help")
    assert result.exit_code == 0
    assert "Below 8 bits, use --train" in " ".join(result.output.split())


def test_quantize_rejects_nan_checkpoint(tmp_path, tiny_run, small_data):
    checkpoint = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    name = next(key for key, value in checkpoint["state_dict"].items() if value.is_floating_point() and value.numel() > 1)
    checkpoint["state_dict"][name].view(-1)[0] = float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(checkpoint, broken)
    out = tmp_path / "out"
    result = _invoke("quantize", "--model", broken, "--calib", small_data[0], "--out", out)
    _assert_one_line_error(result, "NaN")
    assert not out.exists()


def _broken_int8_folder(source, destination, manifest_text=None, truncate_arrays=False, edit=None):
    destination.mkdir()
    for name in ("model.json", "model.npz"):
        shutil.copy(source / name, destination / name)
    if manifest_text is not None:
        (destination / "model.json").write_text(manifest_text)
    if edit is not None:
        manifest = json.loads((destination / "model.json").read_text())
        edit(manifest)
        (destination / "model.json").write_text(json.dumps(manifest))
    if truncate_arrays:
        content = (destination / "model.npz").read_bytes()
        (destination / "model.npz").write_bytes(content[: len(content) // 2])
    return destination


def test_int8_commands_reject_malformed_folders(tmp_path, static_export, small_data):
    good = static_export[0]

    def huge_shift(manifest):
        manifest["leaky_relu"]["shift"] = 100

    folders = [
        (_broken_int8_folder(good, tmp_path / "truncated", truncate_arrays=True), "model.npz: not a readable npz archive"),
        (_broken_int8_folder(good, tmp_path / "list", manifest_text="[]"), "model.json: the manifest must be a JSON object"),
        (_broken_int8_folder(good, tmp_path / "shift", edit=huge_shift), "model.json: leaky_relu.shift must be an integer"),
    ]
    pins = tmp_path / "pins.csv"
    pins.write_text("net,x,y\na,1,1\na,5,9\n")
    for folder, message in folders:
        _assert_one_line_error(_invoke("evaluate", small_data[1], "--int8", folder), message)
        _assert_one_line_error(_invoke("route", pins, "--grid", 16, "--int8", folder, "--out", tmp_path / "routes"), message)


def test_evaluate_int8_matches_report(static_export, small_data, tmp_path):
    out, _ = static_export
    figures = tmp_path / "figures.json"
    result = _invoke("evaluate", small_data[1], "--int8", out, "--json", figures)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    summary = json.loads(figures.read_text())
    assert summary["f1"] == report["validation"]["int8"]["f1"]
    assert "route" in summary


def test_load_int8_engine_api(static_export, small_data):
    out, _ = static_export
    engine = load_int8_engine(out)
    inputs = np.zeros((2, 1, 16, 16), dtype=np.uint8)
    inputs[:, 0, 3, 4] = inputs[:, 0, 10, 12] = 1
    assert engine.scores(inputs).dtype == np.int32
    assert engine.scores(inputs).shape == (2, 16, 16, 16)
    assert engine.predict(inputs).shape == (2, 8, 16, 16)


def test_quantize_tqt_w4a8(tmp_path, tiny_run, small_data):
    train, val = small_data
    out = tmp_path / "tqt"
    result = _invoke(
        "quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 100,
        "--train", train, "--train-samples", 200, "--epochs", 1, "--val", val, "--val-samples", 100,
        "--weight-bits", 4, "--calibration", "percentile", "--batch-size", 50, "--out", out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "tqt"
    assert len(report["retraining"]) == 1
    assert report["device"] in ("cpu", "cuda")
    assert report["settings"]["weight_calibration"] == "mse"
    assert report["settings"]["lr"] == 3e-4
    assert report["settings"]["threshold_lr"] == 1e-3
    assert report["settings"]["schedule"] == "cosine"
    weights = np.load(out / "model.npz", allow_pickle=False)["stage1.weight"]
    assert weights.min() >= -8
    assert weights.max() <= 7
    assert "TQT epoch  0" in result.output


def test_quantize_rejects_bad_input(tmp_path, tiny_run, small_data, static_export):
    train, val = small_data
    model = tiny_run / "best.pt"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    small_grid = tmp_path / "grid8.h5"
    generate_dataset(small_grid, GenerateConfig(count=100, height=8, width=8, extent_um=(3.0, 3.0), pin_range=(2, 3)), workers=1)
    out = tmp_path / "out"
    base = ("quantize", "--calib", train, "--out", out)
    cases = [
        ((*base, "--model", garbage), "not a valid deeproute checkpoint"),
        ((*base, "--model", model, "--weight-bits", 1), "2..16"),
        ((*base, "--model", model, "--weight-bits", 17), "2..16"),
        (("quantize", "--model", model, "--calib", small_grid, "--out", out), "8x8 grid"),
        ((*base, "--model", model, "--calib-samples", 30, "--batch-size", 50), "fewer than one batch"),
        ((*base, "--model", model, "--epochs", 2), "--epochs needs --train"),
        ((*base, "--model", model, "--distill", 1), "--distill needs --train"),
        ((*base, "--model", model, "--train", train, "--distill", -1), "distillation weight must be 0 or more"),
        ((*base, "--model", model, "--train", train, "--device", "bogus"), "invalid device 'bogus'"),
        ((*base, "--model", model, "--lr", 5), "--lr needs --train"),
        ((*base, "--model", model, "--val-samples", 5), "--val-samples needs --val"),
        ((*base, "--model", model, "--train-samples", 5), "--train-samples needs --train"),
        ((*base, "--model", model, "--train", train, "--distill", "inf"), "must be 0 or more and finite"),
        ((*base, "--model", model, "--train", train, "--threshold-lr", "inf"), "must be positive and finite"),
        (("quantize", "--model", model, "--calib", train, "--out", garbage / "sub"), "is not a directory"),
        (("quantize", "--model", model, "--calib", train, "--out", static_export[0]), "--overwrite"),
    ]
    for args, message in cases:
        _assert_one_line_error(_invoke(*args), message)


def test_evaluate_int8_rejects_bad_input(tmp_path, tiny_run, small_data, static_export):
    _, val = small_data
    _assert_one_line_error(_invoke("evaluate", val, "--int8", tmp_path / "none"), "not a directory")
    _assert_one_line_error(
        _invoke("evaluate", val, "--int8", static_export[0], "--model", tiny_run / "best.pt"), "either --model or --int8"
    )


def test_quantize_error_exit_code_in_process(tmp_path, small_data):
    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "quantize", "--model", tmp_path / "missing.pt",
         "--calib", small_data[0], "--out", tmp_path / "out"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.pt'}: checkpoint not found"]


def test_quantize_failure_leaves_nothing(tmp_path, tiny_run, small_data, monkeypatch):
    import deeproute.quant.pipeline

    def fail(*args, **kwargs):
        raise RuntimeError("onnx export failed")

    monkeypatch.setattr(deeproute.quant.pipeline, "save_onnx", fail)
    train, val = small_data
    out = tmp_path / "new" / "int8"
    result = _invoke("quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 100,
                     "--val", val, "--val-samples", 50, "--batch-size", 50, "--out", out)
    assert isinstance(result.exception, RuntimeError)
    assert list(tmp_path.iterdir()) == []


def test_quantize_overwrite_replaces_outputs(tmp_path, tiny_run, small_data):
    train, _ = small_data
    out = tmp_path / "int8"
    out.mkdir()
    (out / "report.json").write_text("{}")
    (out / "notes.txt").write_text("kept")
    args = ("quantize", "--model", tiny_run / "best.pt", "--calib", train, "--calib-samples", 100,
            "--batch-size", 50, "--out", out)
    _assert_one_line_error(_invoke(*args), "already contains report.json")
    assert _invoke(*args, "--overwrite").exit_code == 0
    assert json.loads((out / "report.json").read_text())["mode"] == "static"
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.npz", "model.onnx", "notes.txt", "report.json"]


def test_quantize_rejects_text_checkpoint(tmp_path, small_data):
    text = tmp_path / "notes.pt"
    text.write_text("these are notes, not weights")
    result = _invoke("quantize", "--model", text, "--calib", small_data[0], "--out", tmp_path / "out")
    _assert_one_line_error(result, "not a file written by torch.save")
    _assert_one_line_error(
        _invoke("quantize", "--model", text, "--calib", small_data[0], "--out", ""), "output folder path is empty"
    )


def test_quantize_rejects_folder_named_output(tmp_path, tiny_run, small_data):
    out = tmp_path / "int8"
    (out / "model.npz").mkdir(parents=True)
    result = _invoke("quantize", "--model", tiny_run / "best.pt", "--calib", small_data[0], "--calib-samples", 100,
                     "--batch-size", 50, "--out", out, "--overwrite")
    _assert_one_line_error(result, "is not a regular file")
    assert [p.name for p in out.iterdir()] == ["model.npz"]
