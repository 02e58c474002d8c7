"""Figures: the error view, panel layout, `deeproute visualize` formats and its bad input."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from matplotlib.colors import to_rgba

from deeproute import render, stack
from deeproute.checkpoint import make_checkpoint, save_checkpoint
from deeproute.cli import main
from deeproute.errors import InputError
from deeproute.generate import GenerateConfig, generate_dataset
from deeproute.model import FCNConfig, RoutingFCN

MAGIC = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}


@pytest.fixture(scope="module")
def data16(tmp_path_factory):
    path = tmp_path_factory.mktemp("render") / "tiny.h5"
    generate_dataset(path, GenerateConfig(count=5, height=16, width=16, seed=3), workers=1)
    return path


@pytest.fixture(scope="module")
def model16(tmp_path_factory):
    """An untrained 16x16 model, whose noisy output gives both false 'on' and missed pixels."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("render") / "random16.pt"
    save_checkpoint(path, make_checkpoint(RoutingFCN(FCNConfig(height=16, width=16, channels=4, stages=3))))
    return path


def _visualize(*args):
    return CliRunner().invoke(main, ["visualize", *map(str, args)])


def test_error_image_classes():
    label = np.zeros((8, 3, 3), np.uint8)
    prediction = np.zeros((8, 3, 3), np.uint8)
    label[stack.M3, 0, 1] = label[stack.M3, 1, 1] = 1  # M3 at (x, y) = (1, 0) and (1, 1)
    prediction[stack.M3, 1, 1] = prediction[stack.M3, 2, 2] = 1  # M3 at (1, 1) and (2, 2)
    prediction[stack.M4, 0, 1] = 1  # M4 at (1, 0), where the label has only M3

    image, counts = render.error_image(label, prediction)
    assert counts == {"false_on": 2, "missed": 1}
    assert tuple(image[1, 1]) == to_rgba(render.CORRECT_COLOUR)
    assert tuple(image[2, 2]) == to_rgba(render.FALSE_ON_COLOUR)
    assert tuple(image[0, 1]) == to_rgba(render.BOTH_COLOUR)  # M3 missed and M4 false 'on'
    assert image[0, 0, 3] == 0.0  # off everywhere: transparent


def test_error_image_missed_only():
    label = np.zeros((8, 2, 2), np.uint8)
    label[stack.VIA4, 1, 0] = 1
    image, counts = render.error_image(label, np.zeros_like(label))
    assert counts == {"false_on": 0, "missed": 1}
    assert tuple(image[1, 0]) == to_rgba(render.MISSED_COLOUR)


@pytest.mark.parametrize("name, expected", [("a.png", "png"), ("a.SVG", "svg"), ("dir/a.pdf", "pdf")])
def test_figure_format_from_extension(name, expected):
    assert render.check_figure_path(name) == expected


@pytest.mark.parametrize("name", ["a.jpg", "a", "a.png.txt"])
def test_figure_format_rejects_others(name):
    with pytest.raises(InputError, match="unknown figure format"):
        render.check_figure_path(name)


def test_sample_figure_panel_count():
    labels = np.zeros((2, 8, 8, 8), np.uint8)
    inputs = np.zeros((2, 1, 8, 8), np.uint8)
    with_model = render.sample_figure(inputs, labels, labels, [0, 1], per_layer=True)
    assert len(with_model.axes) == 2 * (4 + stack.NUM_LAYERS)
    data_only = render.sample_figure(inputs, labels, None, [0, 1])
    assert len(data_only.axes) == 2 * 2


def test_select_samples():
    assert render.select_samples(5, 9, None, "f") == [0, 1, 2, 3, 4]
    assert render.select_samples(50, 3, [], "f") == [0, 1, 2]
    assert render.select_samples(50, 3, [7, 2, 7], "f") == [7, 2]


def test_visualize_png_with_model_and_layers(tmp_path, data16, model16):
    out = tmp_path / "figure.png"
    result = _visualize(data16, "--model", model16, "--out", out, "--index", "1,3", "--layers", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC["png"])
    assert "2 samples" in result.output


@pytest.mark.parametrize("extension", ["svg", "pdf"])
def test_visualize_vector_formats(tmp_path, data16, extension):
    out = tmp_path / f"figure.{extension}"
    result = _visualize(data16, "--out", out, "--samples", "2")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC[extension])


BAD_VISUALIZE = [
    ("jpg", ["--out", "{tmp}/f.jpg"], "unknown figure format '.jpg'"),
    ("index high", ["--out", "{tmp}/f.png", "--index", "5"], "--index 5 is out of range; the file has samples 0 to 4"),
    ("index negative", ["--out", "{tmp}/f.png", "--index", "-1"], "--index -1 is out of range"),
    ("index text", ["--out", "{tmp}/f.png", "--index", "two"], "--index: expected a sample number, got 'two'"),
    ("samples zero", ["--out", "{tmp}/f.png", "--samples", "0"], "--samples must be at least 1"),
    ("model grid", ["--out", "{tmp}/f.png", "--model", "{model32}"], "trained on a 32x32 grid, but the data is 16x16"),
    ("missing model", ["--out", "{tmp}/f.png", "--model", "{tmp}/absent.pt"], "checkpoint not found"),
]


@pytest.mark.parametrize("options, message", [case[1:] for case in BAD_VISUALIZE], ids=[case[0] for case in BAD_VISUALIZE])
def test_visualize_bad_input_exit_2(tmp_path, data16, options, message):
    model32 = tmp_path / "random32.pt"
    save_checkpoint(model32, make_checkpoint(RoutingFCN(FCNConfig(height=32, width=32, channels=2, stages=2))))
    args = [option.format(tmp=tmp_path, model32=model32) for option in options]
    result = _visualize(data16, *args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert message in result.output
    assert not (tmp_path / "f.png").exists()
    assert not (tmp_path / "f.jpg").exists()


def test_visualize_keeps_existing_figure(tmp_path, data16):
    out = tmp_path / "f.png"
    out.write_bytes(b"old")
    result = _visualize(data16, "--out", out)
    assert result.exit_code == 2
    assert "already exists; pass --overwrite" in result.output
    assert out.read_bytes() == b"old"


def test_visualize_missing_data(tmp_path):
    result = _visualize(tmp_path / "absent.h5", "--out", tmp_path / "f.png")
    assert result.exit_code == 2
    assert "file not found" in result.output


def test_visualize_too_many_samples(tmp_path, data16):
    with pytest.raises(InputError, match="at most 64"):
        render.select_samples(100, 65, None, data16)


def test_visualize_rejects_pins_off_grid(tmp_path, data16):
    import shutil

    import h5py

    broken = tmp_path / "broken.h5"
    shutil.copy(data16, broken)
    with h5py.File(broken, "r+") as file:
        pins = file["pins"][...]
        pins[0, 0] = (40, 2)  # outside the 16x16 grid
        file["pins"][...] = pins
    result = _visualize(broken, "--out", tmp_path / "f.png", "--index", "0")
    assert result.exit_code == 2
    assert "has a pin outside the 16x16 grid" in result.output
    assert not (tmp_path / "f.png").exists()
