"""End-to-end check of the generate and info commands on a small file."""

import subprocess
import sys

import h5py


def test_generate_then_info(tmp_path):
    out = tmp_path / "small.h5"
    subprocess.run(
        [sys.executable, "-m", "deeproute", "generate", str(out), "-n", "300", "--quiet"], check=True
    )
    with h5py.File(out) as file:
        assert file["Y"].shape == (300, 8, 32, 32)
    result = subprocess.run(
        [sys.executable, "-m", "deeproute", "info", str(out)], check=True, capture_output=True, text=True
    )
    assert "samples      300" in result.stdout
