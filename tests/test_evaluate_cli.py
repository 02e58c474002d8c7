"""`deeproute evaluate` and `deeproute train` on good and bad input, through the real CLI."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from deeproute.checkpoint import load_checkpoint


def _run(*args):
    return subprocess.run([sys.executable, "-m", "deeproute", *map(str, args)], capture_output=True, text=True, timeout=120)


def _write(path, **arrays):
    with h5py.File(path, "w") as file:
        for name, array in arrays.items():
            file.create_dataset(name, data=array)
    return path


def test_evaluate_json_keys(tiny_run, small_data, tmp_path):
    report = tmp_path / "scores.json"
    result = _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--json", report, "--no-route")
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    assert {"precision", "recall", "f1", "accuracy", "samples", "per_layer"} <= set(figures)
    assert figures["samples"] == 200
    assert set(figures["per_layer"]["VIA4"]) == {"precision", "recall", "f1"}
    assert "all" in result.stdout


def test_evaluate_matches_training_log(tiny_run, small_data, tmp_path):
    report = tmp_path / "scores.json"
    _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--json", report, "--no-route")
    logged = load_checkpoint(tiny_run / "best.pt")["metrics"]["val"]
    assert json.loads(report.read_text())["f1"] == pytest.approx(logged["f1"])


def test_evaluate_xy_only_file(tiny_run, small_data, tmp_path):
    with h5py.File(small_data[1]) as source:
        xy_only = _write(tmp_path / "xy.h5", X=source["X"][:50], Y=source["Y"][:50])
    result = _run("evaluate", xy_only, "--model", tiny_run / "best.pt")
    assert result.returncode == 0, result.stderr
    assert "samples 50" in result.stdout


def _bad_files(tmp_path):
    good_x = np.zeros((4, 1, 16, 16), np.uint8)
    good_y = np.zeros((4, 8, 16, 16), np.uint8)
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not a dataset")
    twos = good_y.copy()
    twos[2, 3, 5, 5] = 2
    return {
        "missing": (tmp_path / "absent.h5", "not found"),
        "not_hdf5": (not_hdf5, "not an HDF5 file"),
        "no_y": (_write(tmp_path / "no_y.h5", X=good_x), "missing dataset 'Y'"),
        "no_x": (_write(tmp_path / "no_x.h5", Y=good_y), "missing dataset 'X'"),
        "shape": (_write(tmp_path / "shape.h5", X=good_x, Y=good_y[:, :7]), "Y must have shape"),
        "dtype": (_write(tmp_path / "dtype.h5", X=good_x.astype(np.float32), Y=good_y), "X must be uint8"),
        "values": (_write(tmp_path / "values.h5", X=good_x, Y=twos), "sample 2 has value 2"),
        "empty": (_write(tmp_path / "empty.h5", X=good_x[:0], Y=good_y[:0]), "empty"),
        "grid": (_write(tmp_path / "grid.h5", X=np.zeros((4, 1, 8, 8), np.uint8), Y=np.zeros((4, 8, 8, 8), np.uint8)),
                 "trained on a 16x16 grid"),
    }


@pytest.mark.parametrize("case", ["missing", "not_hdf5", "no_y", "no_x", "shape", "dtype", "values", "empty", "grid"])
def test_evaluate_bad_data(case, tiny_run, tmp_path):
    path, message = _bad_files(tmp_path)[case]
    result = _run("evaluate", path, "--model", tiny_run / "best.pt", "--no-route")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_evaluate_corrupt_checkpoint(small_data, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04garbage" * 20)
    result = _run("evaluate", small_data[1], "--model", corrupt)
    assert result.returncode == 2
    assert "not a valid deeproute checkpoint" in result.stderr


def test_evaluate_checkpoint_with_code_rejected(small_data, tmp_path):
    pickled = tmp_path / "code.pt"
    torch.save({"format_version": 1, "hook": print}, pickled)  # a callable needs full unpickling
    result = _run("evaluate", small_data[1], "--model", pickled)
    assert result.returncode == 2
    assert "not a valid deeproute checkpoint" in result.stderr


def test_evaluate_architecture_mismatch(tiny_run, small_data, tmp_path):
    checkpoint = load_checkpoint(tiny_run / "best.pt")
    checkpoint["model_config"]["channels"] = 8
    mismatched = tmp_path / "mismatch.pt"
    torch.save(checkpoint, mismatched)
    result = _run("evaluate", small_data[1], "--model", mismatched)
    assert result.returncode == 2
    assert "do not fit the architecture" in result.stderr


def test_train_rejects_bad_validation_file(small_data, tmp_path):
    result = _run("train", "--train", small_data[0], "--val", tmp_path / "absent.h5", "--out", tmp_path / "run", "--epochs", "1")
    assert result.returncode == 2
    assert "absent.h5: file not found" in result.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_json_kept_without_overwrite(tiny_run, small_data, tmp_path):
    report = tmp_path / "scores.json"
    report.write_text("mine")
    result = _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--json", report, "--no-route")
    assert result.returncode == 2
    assert "already exists; pass --overwrite" in result.stderr
    assert report.read_text() == "mine"


def test_evaluate_json_missing_folder_fails_first(tiny_run, small_data, tmp_path):
    result = _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--json", tmp_path / "absent" / "s.json")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert result.stdout == ""  # rejected before any scoring


@pytest.mark.parametrize("device, message", [("bogus", "invalid device"), ("meta", "unsupported device"), ("cuda:7", "cuda")])
def test_evaluate_bad_device(device, message, tiny_run, small_data):
    result = _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--device", device, "--no-route")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_rejects_pins_not_matching_x(tiny_run, small_data, tmp_path):
    with h5py.File(small_data[1]) as source:
        pins = source["pins"][:20]
        shifted = tmp_path / "shifted.h5"
        _write(shifted, X=source["X"][:20], Y=source["Y"][:20], pins=np.where(pins >= 0, (pins + 1) % 16, pins))
    result = _run("evaluate", shifted, "--model", tiny_run / "best.pt")
    assert result.returncode == 2
    assert "sample 0: the pins dataset does not match the pin map X" in result.stderr


def test_evaluate_rejects_nan_weights(tiny_run, small_data, tmp_path):
    checkpoint = load_checkpoint(tiny_run / "best.pt")
    checkpoint["state_dict"]["scores.bias"][0] = float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(checkpoint, broken)
    result = _run("evaluate", small_data[1], "--model", broken, "--no-route")
    assert result.returncode == 2
    assert "NaN or infinite weights" in result.stderr


def test_train_rejects_zero_step_epochs(small_data, tmp_path):
    result = _run("train", "--train", small_data[0], "--val", small_data[1], "--out", tmp_path / "run",
                  "--schedule", "step", "--step-epochs", "0")
    assert result.returncode == 2
    assert "step epochs must be at least 1" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, message", [
    (["--fresh-count", "300"], "--fresh-count needs --fresh"),
    (["--lr", "inf"], "learning rate must be positive and finite"),
])
def test_train_rejects_bad_options(small_data, tmp_path, extra, message):
    result = _run("train", "--train", small_data[0], "--val", small_data[1], "--out", tmp_path / "run", *extra)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_json_directory_rejected(tiny_run, small_data, tmp_path):
    result = _run("evaluate", small_data[1], "--model", tiny_run / "best.pt", "--json", tmp_path)
    assert result.returncode == 2
    assert "report.json" in result.stderr


def test_train_resume_rejects_other_architecture(tiny_run, small_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    result = _run("train", "--train", small_data[0], "--val", small_data[1], "--out", copy, "--resume", "--stages", "5")
    assert result.returncode == 2
    assert "trained with stages = 4, not 5" in result.stderr


def test_sigterm_leaves_no_partial_file(tmp_path):
    import signal
    import time

    out = tmp_path / "big.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "deeproute", "generate", str(out), "-n", "3000000", "--quiet", "--workers", "1"],
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while not any(tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)  # wait until the temporary file exists
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.decode().strip().splitlines()[-1] == "terminated"
    assert list(tmp_path.iterdir()) == []


def test_evaluate_net_without_pins(tiny_run, small_data, tmp_path):
    with h5py.File(small_data[1]) as source:
        x, y = source["X"][:20], source["Y"][:20]
    x[3] = 0  # a net with no pins, which X/Y-only files may hold
    y[3] = 0
    path = _write(tmp_path / "nopins.h5", X=x, Y=y)
    result = _run("evaluate", path, "--model", tiny_run / "best.pt")
    assert result.returncode == 0, result.stderr
    assert "samples 20" in result.stdout
