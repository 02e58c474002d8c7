"""Pins files: JSON and CSV parsing, the grid convention and one-line errors on bad input."""

import json

import numpy as np
import pytest

from deeproute.errors import InputError
from deeproute.pinsfile import Net, read_pins_file


def _json(tmp_path, document, name="pins.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _csv(tmp_path, text, name="pins.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_reads_grid_extent_and_nets(tmp_path):
    path = _json(tmp_path, {"grid": [16, 24], "extent_um": 8, "nets": [{"name": "a", "pins": [[23, 0], [0, 15]]}]})
    pins = read_pins_file(path)
    assert pins.grid == (16, 24)
    assert pins.extent_um == (8.0, 8.0)
    assert pins.nets == (Net("a", ((23, 0), (0, 15))),)


def test_grid_is_height_then_width(tmp_path):
    # grid [16, 24]: x (column) may reach 23, y (row) only 15.
    path = _json(tmp_path, {"grid": [16, 24], "nets": [{"name": "a", "pins": [[20, 1], [1, 20]]}]})
    with pytest.raises(InputError, match=r"pin \(1, 20\) is outside the 16x24 grid"):
        read_pins_file(path)


def test_pin_maps_mark_row_y_column_x(tmp_path):
    path = _json(tmp_path, {"grid": [4, 6], "nets": [{"name": "a", "pins": [[5, 0], [1, 3]]}]})
    maps = read_pins_file(path).pin_maps()
    expected = np.zeros((1, 1, 4, 6), np.uint8)
    expected[0, 0, 0, 5] = 1
    expected[0, 0, 3, 1] = 1
    assert maps.dtype == np.uint8
    assert np.array_equal(maps, expected)


def test_csv_matches_json_example():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    assert read_pins_file(examples / "pins.csv") == read_pins_file(examples / "pins.json")


def test_csv_uses_grid_and_extent_arguments(tmp_path):
    path = _csv(tmp_path, "net,x,y\nb,0,0\nb,40,9\n\n")
    pins = read_pins_file(path, grid=(10, 48), extent_um=(20.0, 5.0))
    assert pins.grid == (10, 48)
    assert pins.extent_um == (20.0, 5.0)
    assert pins.nets[0].pins == ((0, 0), (40, 9))


def test_csv_default_grid_is_32(tmp_path):
    pins = read_pins_file(_csv(tmp_path, "NET, X, Y\nb,0,0\nb,31,31\n"))
    assert pins.grid == (32, 32)


GOOD_NET = {"name": "ok", "pins": [[1, 1], [2, 2]]}

BAD_JSON = [
    ("empty file", "", "the pins file is empty"),
    ("malformed", '{"grid": [32, 32], "nets": [', "invalid JSON at line 1"),
    ("top level list", [GOOD_NET], "top level must be a JSON object"),
    ("unknown top key", {"grid": [32, 32], "nets": [GOOD_NET], "pitch": 1}, "unknown key 'pitch'"),
    ("duplicate key", '{"grid": [32, 32], "grid": [16, 16], "nets": []}', "key 'grid' appears twice"),
    ("missing grid", {"nets": [GOOD_NET]}, "missing 'grid'"),
    ("grid one int", {"grid": [32], "nets": [GOOD_NET]}, "grid must be two positive integers"),
    ("grid zero", {"grid": [0, 32], "nets": [GOOD_NET]}, "grid must be two positive integers"),
    ("grid float", {"grid": [32.0, 32], "nets": [GOOD_NET]}, "grid must be two positive integers"),
    ("grid string", {"grid": "32x32", "nets": [GOOD_NET]}, "grid must be two positive integers"),
    ("bad extent", {"grid": [32, 32], "extent_um": -1, "nets": [GOOD_NET]}, "extent_um must be"),
    ("missing nets", {"grid": [32, 32]}, "missing 'nets'"),
    ("no nets", {"grid": [32, 32], "nets": []}, "'nets' is empty"),
    ("net not object", {"grid": [32, 32], "nets": [[1, 2]]}, r"nets\[0\] must be an object"),
    ("missing name", {"grid": [32, 32], "nets": [{"pins": [[1, 1], [2, 2]]}]}, r"nets\[0\]: missing 'name'"),
    ("empty name", {"grid": [32, 32], "nets": [{"name": "", "pins": [[1, 1], [2, 2]]}]}, "name is empty"),
    ("name with space", {"grid": [32, 32], "nets": [{"name": "a b", "pins": [[1, 1], [2, 2]]}]}, "whitespace"),
    ("unknown net key", {"grid": [32, 32], "nets": [dict(GOOD_NET, layer="M3")]}, "net 'ok': unknown key 'layer'"),
    ("missing pins", {"grid": [32, 32], "nets": [{"name": "n"}]}, "net 'n': missing 'pins'"),
    ("one pin", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1, 1]]}]}, "net 'n': a net needs at least 2 pins, got 1"),
    ("duplicate pin", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1, 1], [4, 4], [1, 1]]}]},
     r"net 'n': pin \(1, 1\) is listed twice"),
    ("pin triple", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1, 1, 0], [4, 4]]}]}, "pin 0 must be an"),
    ("float coordinate", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1.5, 1], [4, 4]]}]},
     "net 'n': pin 0: x must be a non-negative integer, got 1.5"),
    ("integral float", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1, 4.0], [4, 4]]}]},
     "y must be a non-negative integer, got 4.0"),
    ("string coordinate", {"grid": [32, 32], "nets": [{"name": "n", "pins": [["1", 1], [4, 4]]}]},
     "x must be a non-negative integer"),
    ("bool coordinate", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[True, 1], [4, 4]]}]},
     "x must be a non-negative integer, got true"),
    ("negative", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[1, -2], [4, 4]]}]}, "net 'n': pin 0: y = -2 is negative"),
    ("outside x", {"grid": [32, 32], "nets": [{"name": "n", "pins": [[32, 0], [4, 4]]}]},
     r"net 'n': pin 0: pin \(32, 0\) is outside the 32x32 grid"),
    ("duplicate names", {"grid": [32, 32], "nets": [GOOD_NET, GOOD_NET]}, "net 'ok': the name is used by more than one net"),
]


@pytest.mark.parametrize("document, message", [case[1:] for case in BAD_JSON], ids=[case[0] for case in BAD_JSON])
def test_bad_json_raises_one_line(tmp_path, document, message):
    path = _json(tmp_path, document)
    with pytest.raises(InputError, match=message) as error:
        read_pins_file(path)
    assert "\n" not in str(error.value)
    assert str(path) in str(error.value)


BAD_CSV = [
    ("empty file", "", "the pins file is empty"),
    ("only commas", ",,\n", "no header and no pins"),
    ("wrong header", "name,x,y\na,1,1\na,2,2\n", "the header must be 'net,x,y'"),
    ("header only", "net,x,y\n", "no pins after the header"),
    ("short row", "net,x,y\na,1\n", "line 2: expected 3 fields"),
    ("float coordinate", "net,x,y\na,1,1\na,2.5,2\n", "line 3: net 'a': x must be a non-negative integer, got '2.5'"),
    ("negative", "net,x,y\na,1,1\na,2,-1\n", "line 3: net 'a': y = -1 is negative"),
    ("outside grid", "net,x,y\na,1,1\na,2,32\n", r"line 3: net 'a': pin \(2, 32\) is outside the 32x32 grid"),
    ("duplicate pin", "net,x,y\na,1,1\na,1,1\n", r"net 'a': pin \(1, 1\) is listed twice"),
    ("one pin", "net,x,y\na,1,1\nb,2,2\nb,3,3\n", "net 'a': a net needs at least 2 pins, got 1"),
    ("split net", "net,x,y\na,1,1\na,2,2\nb,3,3\nb,4,4\na,5,5\n", "line 6: net 'a': the net appears again"),
    ("empty name", "net,x,y\n,1,1\n,2,2\n", "line 2: the net name is empty"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_CSV], ids=[case[0] for case in BAD_CSV])
def test_bad_csv_raises_one_line(tmp_path, text, message):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError, match=message) as error:
        read_pins_file(path)
    assert "\n" not in str(error.value)


def test_csv_bad_grid_argument(tmp_path):
    path = _csv(tmp_path, "net,x,y\na,1,1\na,2,2\n")
    with pytest.raises(InputError, match="--grid: grid must be two positive integers"):
        read_pins_file(path, grid=(0, 32))


def test_json_grid_conflicts_with_argument(tmp_path):
    path = _json(tmp_path, {"grid": [32, 32], "nets": [GOOD_NET]})
    with pytest.raises(InputError, match="differs from the requested 16x16"):
        read_pins_file(path, grid=(16, 16))


@pytest.mark.parametrize(
    "name, message",
    [("pins.txt", "unknown pins file type '.txt'"), ("absent.json", "pins file not found")],
)
def test_bad_path(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("net,x,y\n")
    with pytest.raises(InputError, match=message):
        read_pins_file(path)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_pins_file(tmp_path)


def test_non_utf8_is_rejected(tmp_path):
    path = tmp_path / "pins.csv"
    path.write_bytes(b"net,x,y\n\xff\xfe,1,1\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_pins_file(path)


def test_csv_rejects_python_only_integer_forms(tmp_path):
    from deeproute.errors import InputError
    from deeproute.pinsfile import read_pins_file

    for cell in ("1_0", "+1", "\u0661"):
        path = tmp_path / "pins.csv"
        path.write_text(f"net,x,y\na,{cell},2\na,3,4\n", encoding="utf-8")
        with pytest.raises(InputError, match="x must be a non-negative integer"):
            read_pins_file(path)
