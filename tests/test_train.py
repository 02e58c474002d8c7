"""Training: checkpoints and logs, resume equivalence, schedules, DDP and bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from deeproute.checkpoint import load_checkpoint
from deeproute.errors import InputError
from deeproute.train import TrainConfig, train

TINY = {"channels": 4, "stages": 3}


def _config(**changes):
    base = dict(epochs=3, batch_size=50, lr=2e-3, amp="off", train_eval_samples=100, schedule="cosine")
    base.update(changes)
    return TrainConfig(**base)


def test_run_folder_contents(tiny_run):
    names = sorted(os.listdir(tiny_run))
    assert names == ["best.pt", "curves.png", "last.pt", "metrics.jsonl"]


def test_metrics_log_has_epoch_figures(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    for row in rows:
        assert set(row["val"]) >= {"precision", "recall", "f1", "accuracy", "per_layer"}
        assert set(row["train"]["per_layer"]) == {"PIN", "M3", "VIA3", "M4", "VIA4", "M5", "VIA5", "M6"}
        assert row["samples_per_s"] > 0
        assert row["epoch_seconds"] > 0


def test_training_lowers_loss(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]


def test_checkpoint_loads_weights_only(tiny_run):
    checkpoint = torch.load(tiny_run / "best.pt", weights_only=True)
    assert checkpoint["format_version"] == 1
    assert checkpoint["grid"] == [16, 16]
    assert checkpoint["model_config"]["stages"] == 4


class _Interrupt(Exception):
    pass


def test_resume_matches_uninterrupted_run(small_data, tmp_path):
    train_path, val_path = small_data
    straight = tmp_path / "straight"
    train(train_path, val_path, straight, _config(fresh=True, fresh_count=300), TINY)

    resumed = tmp_path / "resumed"

    def stop_after_first_epoch(record):
        if record["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(train_path, val_path, resumed, _config(fresh=True, fresh_count=300), TINY, on_epoch=stop_after_first_epoch)
    assert load_checkpoint(resumed / "last.pt")["training"]["epoch"] == 1
    train(train_path, val_path, resumed, _config(fresh=True, fresh_count=300), TINY, resume=True)

    expected = load_checkpoint(straight / "last.pt")["state_dict"]
    actual = load_checkpoint(resumed / "last.pt")["state_dict"]
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def test_existing_run_needs_resume(tiny_run, small_data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    with pytest.raises(InputError, match="--resume"):
        train(*small_data, copy, _config(epochs=1), TINY)


def test_resume_without_checkpoint(small_data, tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        train(*small_data, tmp_path / "none", _config(), TINY, resume=True)


def test_step_schedule_divides_learning_rate(small_data, tmp_path):
    history = train(*small_data, tmp_path / "step", _config(epochs=2, schedule="step", step_epochs=1, lr=1e-3), TINY)
    assert history[0]["lr"] == pytest.approx(1e-4)
    assert history[1]["lr"] == pytest.approx(1e-5)


def test_grid_mismatch_rejected(small_data, tmp_path):
    from deeproute.generate import GenerateConfig, generate_dataset

    other = tmp_path / "other.h5"
    generate_dataset(other, GenerateConfig(count=100, height=12, width=12), workers=1)
    with pytest.raises(InputError, match="validation grid 12x12 differs"):
        train(small_data[0], other, tmp_path / "run", _config(epochs=1), TINY)


def test_ddp_two_cpu_processes(small_data, tmp_path):
    train_path, val_path = small_data
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "deeproute", "train", "--train", str(train_path), "--val", str(val_path), "--out", str(out),
        "--epochs", "2", "--batch-size", "100", "--channels", "4", "--stages", "3", "--amp", "off",
        "--device", "cpu", "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert rows[-1]["val"]["samples"] == 200  # both ranks' validation shards were summed
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.parametrize("changes, message", [
    ({"lr": float("inf")}, "learning rate must be positive and finite"),
    ({"weight_decay": float("inf")}, "weight decay must be non-negative and finite"),
])
def test_infinite_rates_rejected(small_data, tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        train(small_data[0], small_data[1], tmp_path / "run", _config(epochs=1, **changes), TINY)
    assert not (tmp_path / "run").exists()


def test_diverged_training_stops(small_data, tmp_path):
    # A finite but huge learning rate drives the weights, and so the loss, to NaN or infinity.
    with pytest.raises(InputError, match="training diverged"):
        train(small_data[0], small_data[1], tmp_path / "run", _config(epochs=2, lr=1e30), TINY)
    assert not (tmp_path / "run").exists()  # the folder is made with the first epoch's files


def test_dangling_symlink_run_folder_rejected(small_data, tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(InputError, match="symbolic link to a missing path"):
        train(small_data[0], small_data[1], link, _config(epochs=1), TINY)
