"""`deeproute route`: routes.json, the one-line summaries, and nothing written on bad input."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from deeproute import stack
from deeproute.checkpoint import make_checkpoint, save_checkpoint
from deeproute.cli import main
from deeproute.model import FCNConfig, RoutingFCN

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pins.json"
OUTPUTS = {"routes.json", "routes.gds", "routes.png"}


def _random_model(path, grid=(32, 32)):
    """Save an untrained 3-stage model biased towards 'off', so repair draws most of each route."""
    torch.manual_seed(0)
    model = RoutingFCN(FCNConfig(height=grid[0], width=grid[1], channels=4, stages=3))
    with torch.no_grad():
        model.scores.bias[0::2] = 4.0  # 'off' scores
        model.scores.bias[1::2] = -4.0  # 'on' scores
    save_checkpoint(path, make_checkpoint(model))
    return path


@pytest.fixture(scope="module")
def model32(tmp_path_factory):
    return _random_model(tmp_path_factory.mktemp("model") / "random32.pt")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory, model32):
    """One route of the example pins file: (CliRunner result, output directory)."""
    out = tmp_path_factory.mktemp("route") / "out"
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--device", "cpu")
    return result, out


def _route(*args):
    return CliRunner().invoke(main, ["route", *map(str, args)])


def test_route_writes_three_files(example_run):
    result, out = example_run
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == OUTPUTS


def test_route_prints_one_line_per_net(example_run):
    result, _ = example_run
    lines = result.output.splitlines()
    names = [json.loads(EXAMPLE.read_text())["nets"][i]["name"] for i in range(6)]
    assert len(lines) == 7
    for line, name in zip(lines, names):
        assert line.startswith(name)
        assert "connected" in line
    assert lines[-1].startswith("6 nets: 6 connected, 6 legal")


def test_routes_json_per_net_fields(example_run):
    _, out = example_run
    document = json.loads((out / "routes.json").read_text())
    assert document["grid"] == [32, 32]
    assert document["pitch_um"] == [0.34375, 0.34375]
    assert [net["name"] for net in document["nets"]] == ["clk", "rst_n", "data[0]", "data[1]", "enable", "sum_carry"]
    for net in document["nets"]:
        assert set(net["wires"]) == {"M3", "M4", "M5", "M6"}
        assert net["connected"] is True
        assert net["violations"] == []
        assert net["via_count"] == len(net["vias"])
        assert isinstance(net["repaired"], bool)


def test_routes_json_units(example_run):
    _, out = example_run
    document = json.loads((out / "routes.json").read_text())
    clk = document["nets"][0]
    assert clk["pins"][0] == [4, 27]
    assert clk["pins_um"][0] == [pytest.approx(4.5 * 0.34375), pytest.approx(27.5 * 0.34375)]
    total = 0.0
    for layer, wires in clk["wires"].items():
        direction = stack.layer_by_name(layer).direction
        for wire in wires:
            along = 0 if direction is stack.Direction.HORIZONTAL else 1
            assert wire["from"][1 - along] == wire["to"][1 - along]  # straight along the layer
            assert wire["length_um"] == pytest.approx((wire["to"][along] - wire["from"][along]) * 0.34375)
            total += wire["length_um"]
    assert clk["wirelength_um"] == pytest.approx(total)


def test_route_csv_needs_matching_grid(tmp_path, model32):
    pins = tmp_path / "pins.csv"
    pins.write_text("net,x,y\na,1,1\na,5,9\n")
    out = tmp_path / "out"
    result = _route(pins, "--out", out, "--model", model32, "--grid", "16", "--device", "cpu")
    assert result.exit_code == 2
    assert "model was trained on a 32x32 grid, but the data is 16x16" in result.output
    assert not out.exists()


def test_route_keeps_other_files(tmp_path, model32):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == OUTPUTS | {"keep.txt"}
    assert (out / "keep.txt").read_text() == "mine"


def test_route_rejects_existing_routes(tmp_path, model32):
    out = tmp_path / "out"
    out.mkdir()
    (out / "routes.json").write_text("old")
    result = _route(EXAMPLE, "--out", out, "--model", model32)
    assert result.exit_code == 2
    assert "already contains routes.json; pass --overwrite" in result.output
    assert (out / "routes.json").read_text() == "old"


def test_route_overwrite_replaces_routes_only(tmp_path, model32):
    out = tmp_path / "out"
    out.mkdir()
    (out / "routes.json").write_text("old")
    (out / "notes.txt").write_text("mine")
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--overwrite", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == OUTPUTS | {"notes.txt"}
    assert (out / "routes.json").read_text() != "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_route_accepts_empty_dir(tmp_path, model32):
    out = tmp_path / "out"
    out.mkdir()
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} == OUTPUTS


def test_route_failure_leaves_nothing(tmp_path, model32, monkeypatch):
    import deeproute.render

    def fail(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(deeproute.render, "save_routes_figure", fail)
    out = tmp_path / "out"
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--device", "cpu")
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    assert list(tmp_path.iterdir()) == []


BAD_PINS = [
    ("outside", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, 1], [33, 2]]}]}', r"net 'a': pin 1: pin (33, 2) is outside"),
    ("duplicate pin", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, 1], [1, 1]]}]}', "net 'a': pin (1, 1) is listed twice"),
    ("one pin", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, 1]]}]}', "net 'a': a net needs at least 2 pins"),
    ("float", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1.5, 1], [2, 2]]}]}', "net 'a': pin 0: x must be a non-negative integer"),
    ("negative", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, -1], [2, 2]]}]}', "net 'a': pin 0: y = -1 is negative"),
    ("duplicate net", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, 1], [2, 2]]}, {"name": "a", "pins": [[3, 1], [2, 2]]}]}',
     "net 'a': the name is used by more than one net"),
    ("unknown key", '{"grid": [32, 32], "nets": [{"name": "a", "pins": [[1, 1], [2, 2]], "w": 1}]}', "net 'a': unknown key 'w'"),
    ("empty", "", "the pins file is empty"),
    ("malformed", '{"grid": [32, 32], "nets": [{"name": "a"', "invalid JSON"),
    ("bad grid", '{"grid": [32, -1], "nets": [{"name": "a", "pins": [[1, 1], [2, 2]]}]}', "grid must be two positive integers"),
    ("grid mismatch", '{"grid": [16, 16], "nets": [{"name": "a", "pins": [[1, 1], [2, 2]]}]}', "trained on a 32x32 grid"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_PINS], ids=[case[0] for case in BAD_PINS])
def test_route_bad_pins_exit_2(tmp_path, model32, text, message):
    pins = tmp_path / "pins.json"
    pins.write_text(text)
    out = tmp_path / "out"
    result = _route(pins, "--out", out, "--model", model32, "--device", "cpu")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: ")
    assert message in result.output
    assert not out.exists()


BAD_OPTIONS = [
    ("csv grid", ["--grid", "0x32"], "--grid: grid must be two positive integers"),
    ("csv grid text", ["--grid", "big"], "--grid: expected N or HxW"),
    ("layer map name", ["--gds-layers", "M9=1/0"], "unknown layer 'M9'"),
    ("layer map number", ["--gds-layers", "M3=70000/0"], "from 0 to 65535"),
    ("layer map syntax", ["--gds-layers", "M3"], "invalid entry 'M3'"),
    ("missing model", ["--model", "absent.pt"], "checkpoint not found"),
    ("figure nets", ["--figure-nets", "0"], "at least 1 net"),
]


@pytest.mark.parametrize("options, message", [case[1:] for case in BAD_OPTIONS], ids=[case[0] for case in BAD_OPTIONS])
def test_route_bad_options_exit_2(tmp_path, model32, options, message):
    pins = tmp_path / "pins.csv"
    shutil.copy(EXAMPLE.with_suffix(".csv"), pins)
    out = tmp_path / "out"
    args = [pins, "--out", out, "--device", "cpu"]
    if "--model" not in options:
        args += ["--model", model32]
    result = _route(*args, *options)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert message in result.output
    assert not out.exists()


def test_route_file_as_out(tmp_path, model32):
    out = tmp_path / "routes"
    out.write_text("a file")
    result = _route(EXAMPLE, "--out", out, "--model", model32)
    assert result.exit_code == 2
    assert "exists and is not a directory" in result.output


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, model32):
    """The integer form of `model32`, calibrated with max thresholds on 20 generated nets."""
    pipeline = pytest.importorskip("deeproute.quant.pipeline", reason="the integer engine deeproute.quant is not installed")
    from deeproute.generate import GenerateConfig, generate_dataset

    folder = tmp_path_factory.mktemp("int8")
    generate_dataset(folder / "calib.h5", GenerateConfig(count=20, height=32, width=32, seed=4), workers=1)
    config = pipeline.QuantizeConfig(calib_samples=20, batch_size=10, calibration="max")
    pipeline.quantize_checkpoint(model32, folder / "calib.h5", folder / "engine", config)
    return folder / "engine"


def test_route_int8_engine(tmp_path, int8_dir):
    out = tmp_path / "out"
    result = _route(EXAMPLE, "--out", out, "--int8", int8_dir)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "routes.json").read_text())
    assert document["model"].endswith("(int8)")
    assert all(net["connected"] for net in document["nets"])


@pytest.mark.parametrize(
    "extra, message",
    [(["--model", "m.pt"], "pass either --model or --int8, not both"), (["--grid", "16"], "trained on a 32x32 grid")],
)
def test_route_int8_bad_input(tmp_path, int8_dir, extra, message):
    pins = tmp_path / "pins.csv"
    pins.write_text("net,x,y\na,1,1\na,5,9\n")
    result = _route(pins, "--out", tmp_path / "out", "--int8", int8_dir, *extra)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_route_creates_parent_folders(tmp_path, model32):
    out = tmp_path / "a" / "b" / "routes"
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["routes.gds", "routes.json", "routes.png"]
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["routes"]  # no staging folder left


@pytest.mark.parametrize("case", ["dangling link", "under a file"])
def test_route_unusable_out_exit_2(tmp_path, model32, case):
    if case == "dangling link":
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "absent")
        message = "symbolic link to a missing path"
    else:
        (tmp_path / "afile").write_text("a file")
        out = tmp_path / "afile" / "sub"
        message = "is not a directory"
    result = _route(EXAMPLE, "--out", out, "--model", model32, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert message in result.output
