"""Pins files: the nets that `deeproute route` reads, parsed from JSON or CSV and validated.

JSON, the full form:

    {
      "grid": [32, 32],
      "extent_um": [11.0, 11.0],
      "nets": [{"name": "clk", "pins": [[3, 4], [20, 9]]}]
    }

`grid` is [height, width] in pixels, that is [rows, columns], the order of the (N, 8, H, W)
arrays. Each pin is an (x, y) grid point, x being the column (0 <= x < width) and y the row
(0 <= y < height). `extent_um` is optional: the (x, y) physical size of the grid in µm, or
one number for a square grid. A net needs a unique name and at least 2 distinct pins.

CSV: a header line `net,x,y`, then one pin per line. The rows of one net must be adjacent,
and nets keep the order of their first row. CSV carries neither grid nor extent, so both
come from the caller (the `--grid` and `--extent-um` options of `deeproute route`).

Every problem raises InputError with one line that names the file, the net and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeproute.errors import InputError
from deeproute.tech import DEFAULT_EXTENT_UM, DEFAULT_GRID

CSV_HEADER = ("net", "x", "y")
TOP_LEVEL_KEYS = ("grid", "extent_um", "nets")
NET_KEYS = ("name", "pins")
MIN_PINS = 2


@dataclass(frozen=True)
class Net:
    """One net to route: a name and its distinct (x, y) pins in grid units."""

    name: str
    pins: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PinsFile:
    """The validated contents of a pins file."""

    grid: tuple[int, int]  # (height, width) in pixels
    extent_um: tuple[float, float]  # (x, y) physical size of the grid in µm
    nets: tuple[Net, ...]

    @property
    def height(self) -> int:
        return self.grid[0]

    @property
    def width(self) -> int:
        return self.grid[1]

    def pin_maps(self) -> np.ndarray:
        """Return the network input: uint8 (N, 1, H, W), 1 at every pin of each net."""
        maps = np.zeros((len(self.nets), 1, self.height, self.width), dtype=np.uint8)
        for index, net in enumerate(self.nets):
            for x, y in net.pins:
                maps[index, 0, y, x] = 1
        return maps


def read_pins_file(
    path: str | os.PathLike,
    grid: tuple[int, int] | None = None,
    extent_um: tuple[float, float] | None = None,
) -> PinsFile:
    """Read and validate a pins file; the format follows the extension (.json or .csv).

    Args:
        path: the pins file.
        grid: (height, width) in pixels. A CSV file takes it from here, or DEFAULT_GRID
            square when None. A JSON file must agree with it when both are given.
        extent_um: (x, y) size of the grid in µm, with the same rule as `grid`. When both
            are missing, it is DEFAULT_EXTENT_UM square.
    """
    path = Path(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _parse_json(text, path, grid, extent_um)
    if suffix == ".csv":
        return _parse_csv(text, path, grid, extent_um)
    raise InputError(f"{path}: unknown pins file type {path.suffix!r}; use a .json or .csv file")


def validate_grid(value, where: str) -> tuple[int, int]:
    """Check that `value` is two positive integers (height, width) and return them as a tuple."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) and v > 0 for v in value):
        raise InputError(f"{where}: grid must be two positive integers [height, width], got {_show(value)}")
    return int(value[0]), int(value[1])


def validate_extent(value, where: str) -> tuple[float, float]:
    """Check that `value` is one or two positive finite µm sizes and return (x, y)."""
    numbers = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(numbers) == 1:
        numbers = numbers * 2
    valid = len(numbers) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in numbers
    )
    if not valid:
        raise InputError(f"{where}: extent_um must be one or two positive numbers in µm [x, y], got {_show(value)}")
    return float(numbers[0]), float(numbers[1])


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: pins file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a pins file (.json or .csv)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {error.start})") from error
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from error
    if not text.strip():
        raise InputError(f"{path}: the pins file is empty")
    return text


# ---------------------------------------------------------------------------------------- JSON


def _parse_json(text: str, path: Path, grid, extent_um) -> PinsFile:
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from error
    except _DuplicateKey as error:
        raise InputError(f"{path}: key {error.key!r} appears twice in one JSON object") from error

    if not isinstance(document, dict):
        raise InputError(f"{path}: the top level must be a JSON object with 'grid' and 'nets', got {_type(document)}")
    _reject_unknown_keys(document, TOP_LEVEL_KEYS, f"{path}")
    if "grid" not in document:
        raise InputError(f"{path}: missing 'grid'; add \"grid\": [height, width] in pixels")
    if "nets" not in document:
        raise InputError(f"{path}: missing 'nets'; add a list of {{\"name\": ..., \"pins\": [[x, y], ...]}}")

    file_grid = validate_grid(document["grid"], f"{path}")
    if grid is not None and tuple(grid) != file_grid:
        raise InputError(
            f"{path}: the file's grid {file_grid[0]}x{file_grid[1]} differs from the requested "
            f"{grid[0]}x{grid[1]}; drop --grid or fix the file"
        )
    extent = _merge_extent(document, path, extent_um)

    records = document["nets"]
    if not isinstance(records, list):
        raise InputError(f"{path}: 'nets' must be a list of net objects, got {_type(records)}")
    if not records:
        raise InputError(f"{path}: 'nets' is empty; there is nothing to route")

    nets = []
    for number, record in enumerate(records):
        nets.append(_parse_json_net(record, number, path, file_grid))
    _reject_duplicate_names(nets, path)
    return PinsFile(grid=file_grid, extent_um=extent, nets=tuple(nets))


def _merge_extent(document: dict, path: Path, requested) -> tuple[float, float]:
    if "extent_um" not in document:
        return tuple(requested) if requested is not None else (DEFAULT_EXTENT_UM, DEFAULT_EXTENT_UM)
    extent = validate_extent(document["extent_um"], f"{path}")
    if requested is not None and tuple(requested) != extent:
        raise InputError(
            f"{path}: the file's extent_um {extent[0]:g}x{extent[1]:g} differs from the requested "
            f"{requested[0]:g}x{requested[1]:g}; drop --extent-um or fix the file"
        )
    return extent


def _parse_json_net(record, number: int, path: Path, grid: tuple[int, int]) -> Net:
    where = f"{path}: nets[{number}]"
    if not isinstance(record, dict):
        raise InputError(f"{where} must be an object with 'name' and 'pins', got {_type(record)}")
    name = record.get("name")
    if name is None:
        raise InputError(f"{where}: missing 'name'")
    name = _validate_name(name, where)
    where = f"{path}: net {name!r}"
    _reject_unknown_keys(record, NET_KEYS, where)
    if "pins" not in record:
        raise InputError(f"{where}: missing 'pins'; add a list of [x, y] grid points")
    pins = record["pins"]
    if not isinstance(pins, list):
        raise InputError(f"{where}: 'pins' must be a list of [x, y] grid points, got {_type(pins)}")

    points = []
    for index, pin in enumerate(pins):
        if not isinstance(pin, list) or len(pin) != 2:
            raise InputError(f"{where}: pin {index} must be an [x, y] pair, got {_show(pin)}")
        points.append(_validate_point(pin[0], pin[1], f"{where}: pin {index}", grid))
    return _make_net(name, points, where)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_unknown_keys(record: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; expected only {', '.join(allowed)}")


# ----------------------------------------------------------------------------------------- CSV


def _parse_csv(text: str, path: Path, grid, extent_um) -> PinsFile:
    grid = validate_grid(grid, "--grid") if grid is not None else (DEFAULT_GRID, DEFAULT_GRID)
    extent = validate_extent(extent_um, "--extent-um") if extent_um is not None else (DEFAULT_EXTENT_UM,) * 2

    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise InputError(f"{path}: invalid CSV ({error})") from error
    numbered = [(line, row) for line, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        raise InputError(f"{path}: the pins file has no header and no pins; start it with 'net,x,y'")
    header_line, header = numbered[0]
    if tuple(cell.strip().lower() for cell in header) != CSV_HEADER:
        raise InputError(f"{path}, line {header_line}: the header must be 'net,x,y', got {','.join(header)!r}")
    if len(numbered) == 1:
        raise InputError(f"{path}: no pins after the header; add one 'net,x,y' line per pin")

    pins_by_net: dict[str, list[tuple[int, int]]] = {}
    last_name = None
    for line, row in numbered[1:]:
        where = f"{path}, line {line}"
        if len(row) != len(CSV_HEADER):
            raise InputError(f"{where}: expected 3 fields net,x,y, got {len(row)}")
        name = _validate_name(row[0].strip(), where)
        where = f"{where}: net {name!r}"
        if name in pins_by_net and name != last_name:
            raise InputError(f"{where}: the net appears again after other nets; keep its rows together or rename it")
        x = _parse_csv_int(row[1], "x", where)
        y = _parse_csv_int(row[2], "y", where)
        pins_by_net.setdefault(name, []).append(_validate_point(x, y, where, grid))
        last_name = name

    nets = [_make_net(name, points, f"{path}: net {name!r}") for name, points in pins_by_net.items()]
    return PinsFile(grid=grid, extent_um=extent, nets=tuple(nets))


def _parse_csv_int(cell: str, axis: str, where: str) -> int:
    value = cell.strip()
    # Python's int() also accepts "1_0", "+1" and non-ASCII digits; a coordinate is plain digits.
    if not re.fullmatch(r"-?[0-9]+", value):
        raise InputError(f"{where}: {axis} must be a non-negative integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------ shared checks


def _validate_name(name, where: str) -> str:
    if not isinstance(name, str):
        raise InputError(f"{where}: the net name must be a string, got {_show(name)}")
    if not name:
        raise InputError(f"{where}: the net name is empty")
    if any(character.isspace() or not character.isprintable() for character in name):
        raise InputError(f"{where}: the net name {name!r} contains whitespace or control characters")
    return name


def _validate_point(x, y, where: str, grid: tuple[int, int]) -> tuple[int, int]:
    height, width = grid
    for axis, value in (("x", x), ("y", y)):
        if not _is_int(value):
            raise InputError(f"{where}: {axis} must be a non-negative integer, got {_show(value)}")
        if value < 0:
            raise InputError(f"{where}: {axis} = {value} is negative; grid coordinates start at 0")
    if x >= width or y >= height:
        raise InputError(
            f"{where}: pin ({x}, {y}) is outside the {height}x{width} grid "
            f"(x must be below {width}, y below {height})"
        )
    return int(x), int(y)


def _make_net(name: str, points: list[tuple[int, int]], where: str) -> Net:
    seen = set()
    for point in points:
        if point in seen:
            raise InputError(f"{where}: pin ({point[0]}, {point[1]}) is listed twice")
        seen.add(point)
    if len(points) < MIN_PINS:
        raise InputError(f"{where}: a net needs at least {MIN_PINS} pins, got {len(points)}")
    return Net(name=name, pins=tuple(points))


def _reject_duplicate_names(nets: list[Net], path: Path) -> None:
    seen = set()
    for net in nets:
        if net.name in seen:
            raise InputError(f"{path}: net {net.name!r}: the name is used by more than one net")
        seen.add(net.name)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
