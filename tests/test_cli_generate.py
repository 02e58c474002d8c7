"""The `generate` and `info` commands: normal output, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from deeproute.cli import main


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, fragment: str) -> None:
    """Exit code 2, a single 'error: ...' line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


# --- normal runs -------------------------------------------------------------------------


def test_generate_prints_summary(tmp_path):
    out = tmp_path / "small.h5"
    result = run_cli("generate", str(out), "-n", "40", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    assert "samples      40" in result.stdout
    assert result.stderr == ""


def test_generate_json_summary(tmp_path):
    out = tmp_path / "small.h5"
    result = run_cli("generate", str(out), "-n", "40", "--grid", "48x32", "--pins", "3-4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 40
    assert report["grid"] == [48, 32]
    assert set(report["pins_per_net"]) <= {"3", "4"}
    assert sum(report["pins_per_net"].values()) == 40


def test_generate_quiet_prints_nothing(tmp_path):
    result = run_cli("generate", str(tmp_path / "small.h5"), "-n", "10", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_generate_options_reach_file(tmp_path):
    out = tmp_path / "small.h5"
    args = ["-n", "20", "--grid", "16x24", "--extent-um", "11x8", "--pins", "3-6", "--seed", "9"]
    result = run_cli("generate", str(out), *args, "--quiet")
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as file:
        assert file["Y"].shape == (20, 8, 16, 24)
        assert file.attrs["grid"].tolist() == [16, 24]
        assert file.attrs["extent_um"].tolist() == [11.0, 8.0]
        assert file.attrs["pin_range"].tolist() == [3, 6]
        assert file.attrs["seed"] == 9


def test_info_json_reports_attributes(tmp_path):
    out = tmp_path / "small.h5"
    run_cli("generate", str(out), "-n", "30", "--seed", "4", "--quiet")
    result = run_cli("info", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 30
    assert report["seed"] == 4
    assert report["pin_range"] == [2, 5]
    assert report["extent_um"] == [11.0, 11.0]
    assert report["label_style"] == "paper"
    assert report["format_version"] == 1


def test_overwrite_flag_replaces_file(tmp_path):
    out = tmp_path / "small.h5"
    out.write_bytes(b"old")
    result = run_cli("generate", str(out), "-n", "10", "--quiet", "--overwrite")
    assert result.exit_code == 0, result.output
    assert h5py.is_hdf5(out)


# --- bad input to generate ---------------------------------------------------------------

BAD_GENERATE_OPTIONS = [
    (["-n", "0"], "sample count must be positive, got 0"),
    (["-n", "-3"], "sample count must be positive, got -3"),
    (["--grid", "3"], "grid height must be within 4..1024, got 3"),
    (["--grid", "1025"], "grid height must be within 4..1024, got 1025"),
    (["--grid", "32x3"], "grid width must be within 4..1024, got 3"),
    (["--grid", "2000x32"], "grid height must be within 4..1024, got 2000"),
    (["--pins", "1-5"], "at least 2 pins"),
    (["--pins", "0-3"], "at least 2 pins"),
    (["--pins", "5-2"], "reversed"),
    (["--pins", "2-1025"], "more pins than the 32x32 grid has free pixels (1024)"),
    (["--grid", "4", "--pins", "2-17"], "more pins than the 4x4 grid has free pixels (16)"),
    (["--extent-um", "0"], "extent must be positive"),
    (["--extent-um", "11xnan"], "extent must be positive"),
    (["--seed", "-1"], "seed must be within"),
    (["--seed", str(2**64)], "seed must be within"),
    (["--workers", "0"], "workers must be at least 1, got 0"),
    (["--label-style", "maze"], "unknown label style 'maze'"),
]


@pytest.mark.parametrize("options, fragment", BAD_GENERATE_OPTIONS)
def test_generate_rejects_bad_option(tmp_path, options, fragment):
    out = tmp_path / "out.h5"
    result = run_cli("generate", str(out), *options)
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_missing_directory(tmp_path):
    result = run_cli("generate", str(tmp_path / "missing" / "out.h5"), "-n", "5")
    assert_one_line_error(result, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_directory_as_output(tmp_path):
    result = run_cli("generate", str(tmp_path), "-n", "5")
    assert_one_line_error(result, "is a directory")
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_directory_even_with_overwrite(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    result = run_cli("generate", str(target), "-n", "5", "--overwrite")
    assert_one_line_error(result, "is a directory")
    assert target.is_dir()


def test_generate_keeps_existing_file(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"old")
    result = run_cli("generate", str(out), "-n", "5")
    assert_one_line_error(result, "already exists; pass --overwrite")
    assert out.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.h5"]


def test_generate_error_in_real_process(tmp_path):
    # The same contract outside CliRunner: a real interpreter, real stderr.
    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "generate", str(tmp_path / "out.h5"), "-n", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == "error: sample count must be positive, got 0\n"
    assert result.stdout == ""


# --- bad input to info -------------------------------------------------------------------


def write_hdf5(path, **datasets):
    with h5py.File(path, "w") as file:
        for name, data in datasets.items():
            file.create_dataset(name, data=data)
    return path


X_OK = np.zeros((3, 1, 8, 8), dtype=np.uint8)
Y_OK = np.zeros((3, 8, 8, 8), dtype=np.uint8)

BAD_FILES = [
    ("no_x", dict(Y=Y_OK), "missing dataset 'X'"),
    ("no_y", dict(X=X_OK), "missing dataset 'Y'"),
    ("empty", dict(), "missing dataset 'X'"),
    ("x_two_channels", dict(X=np.zeros((3, 2, 8, 8), np.uint8), Y=Y_OK), "X must have shape (N, 1, H, W)"),
    ("x_three_dims", dict(X=np.zeros((3, 8, 8), np.uint8), Y=Y_OK), "X must have shape (N, 1, H, W)"),
    ("y_seven_layers", dict(X=X_OK, Y=np.zeros((3, 7, 8, 8), np.uint8)), "Y must have shape (N, 8, H, W)"),
    ("count_mismatch", dict(X=X_OK, Y=np.zeros((4, 8, 8, 8), np.uint8)), "disagree on N, H or W"),
    ("grid_mismatch", dict(X=X_OK, Y=np.zeros((3, 8, 8, 9), np.uint8)), "disagree on N, H or W"),
    ("x_float", dict(X=X_OK.astype(np.float32), Y=Y_OK), "X must be uint8, got float32"),
    ("y_int16", dict(X=X_OK, Y=Y_OK.astype(np.int16)), "Y must be uint8, got int16"),
    ("pins_shape", dict(X=X_OK, Y=Y_OK, pins=np.zeros((3, 5), np.int16)), "pins must have shape (3, P, 2)"),
    ("y_value_two", dict(X=X_OK, Y=np.full((3, 8, 8, 8), 2, np.uint8)), "Y must hold only 0 and 1"),
]


@pytest.mark.parametrize("name, datasets, fragment", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_info_rejects_bad_file(tmp_path, name, datasets, fragment):
    path = write_hdf5(tmp_path / f"{name}.h5", **datasets)
    assert_one_line_error(run_cli("info", str(path)), fragment)


def test_info_rejects_group_named_x(tmp_path):
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as file:
        file.create_group("X")
        file.create_dataset("Y", data=Y_OK)
    assert_one_line_error(run_cli("info", str(path)), "missing dataset 'X'")


def test_info_rejects_partial_attributes(tmp_path):
    path = write_hdf5(tmp_path / "partial.h5", X=X_OK, Y=Y_OK)
    with h5py.File(path, "a") as file:
        file.attrs["format_version"] = 1
        file.attrs["seed"] = 3
    assert_one_line_error(run_cli("info", str(path)), "missing attributes extent_um, pin_range, label_style")


def test_info_rejects_malformed_attribute(tmp_path):
    path = write_hdf5(tmp_path / "scalar.h5", X=X_OK, Y=Y_OK)
    with h5py.File(path, "a") as file:
        file.attrs["extent_um"] = 11.0
    assert_one_line_error(run_cli("info", str(path)), "invalid attribute value")


def test_info_rejects_missing_file(tmp_path):
    assert_one_line_error(run_cli("info", str(tmp_path / "absent.h5")), "file not found")


def test_info_rejects_directory(tmp_path):
    assert_one_line_error(run_cli("info", str(tmp_path)), "is a directory")


def test_info_rejects_text_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not a dataset\n")
    assert_one_line_error(run_cli("info", str(path)), "not an HDF5 file")


def test_info_error_in_real_process(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not a dataset\n")
    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "info", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {path}: not an HDF5 file\n"
