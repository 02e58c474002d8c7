"""Routing datasets on disk: the HDF5 layout, validated reading and atomic writing.

File layout (format version 1):

    X     uint8 (N, 1, H, W)   pin map, the network input
    Y     uint8 (N, 8, H, W)   layout layers in `deeproute.stack` order, the label
    pins  int16 (N, P, 2)      (x, y) grid coordinates of each net's pins, padded with -1

plus attributes recording how the file was made. A file with only X and Y in this layout,
as written by the published generator of Jain & Okabe (2017), is valid input everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from deeproute import stack
from deeproute.errors import InputError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_SAMPLES = 128  # samples per HDF5 chunk: 1 MiB of Y at 32x32, cheap to read one sample
COMPRESSION_LEVEL = 1  # gzip level; the sparse layers already shrink about 85x at level 1 (50k nets, 32x32)


@dataclass(frozen=True)
class DatasetInfo:
    """Attributes of a dataset file; fields are None when an X/Y-only file lacks them."""

    count: int
    height: int
    width: int
    has_pins: bool
    extent_um: tuple[float, float] | None = None
    pin_range: tuple[int, int] | None = None
    seed: int | None = None
    label_style: str | None = None
    format_version: int | None = None


class RoutingDataset:
    """A validated, open dataset file. Use as a context manager or call `close()`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open_hdf5(self.path)
        try:
            self.info = _validate_layout(self._file, self.path)
        except Exception:
            self._file.close()
            raise

    def __enter__(self) -> RoutingDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return self.info.count

    @property
    def grid(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.info.height, self.info.width

    def read(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read samples [start, stop) as (X, Y) uint8 arrays, checking that values are 0 or 1."""
        stop = self.info.count if stop is None else stop
        inputs = self._file["X"][start:stop]
        labels = self._file["Y"][start:stop]
        for name, array in (("X", inputs), ("Y", labels)):
            if array.size and array.max() > 1:
                bad = int(np.argmax(array.reshape(array.shape[0], -1).max(axis=1) > 1)) + start
                raise InputError(
                    f"{self.path}: {name} must hold only 0 and 1, but sample {bad} has "
                    f"value {int(array[bad - start].max())}"
                )
        return inputs, labels

    def read_pins(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Read pins [start, stop) as int16 (n, P, 2); for X/Y-only files derive them from X."""
        stop = self.info.count if stop is None else stop
        pin_map = self._file["X"][start:stop][:, 0]  # (n, H, W)
        if not self.info.has_pins:
            return pins_from_map(pin_map)
        pins = self._file["pins"][start:stop]
        _check_pins_match_map(self.path, pins, pin_map, start)
        return pins

    def iter_chunks(self, size: int = 4096) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (start, X, Y) blocks of at most `size` samples, in order."""
        for start in range(0, self.info.count, size):
            inputs, labels = self.read(start, min(start + size, self.info.count))
            yield start, inputs, labels


def open_dataset(path: str | os.PathLike) -> RoutingDataset:
    """Open and validate a dataset file, raising InputError with the reason when it is unusable."""
    return RoutingDataset(path)


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, DatasetInfo]:
    """Read a whole dataset into memory as validated (X, Y) uint8 arrays."""
    with open_dataset(path) as dataset:
        if len(dataset) == 0:
            raise InputError(f"{path}: the dataset is empty (N = 0)")
        inputs, labels = dataset.read()
        return inputs, labels, dataset.info


def pins_from_map(pin_map: np.ndarray) -> np.ndarray:
    """Return int16 (N, P, 2) (x, y) pins from a (N, H, W) pin map, in row-major order, padded with -1."""
    count = pin_map.shape[0]
    net, y, x = np.nonzero(pin_map)
    per_net = np.bincount(net, minlength=count)
    max_pins = int(per_net.max()) if count else 0
    pins = np.full((count, max(max_pins, 1), 2), -1, dtype=np.int16)
    slot = np.arange(net.size) - np.repeat(np.cumsum(per_net) - per_net, per_net)
    pins[net, slot, 0] = x
    pins[net, slot, 1] = y
    return pins


def _check_pins_match_map(path: Path, pins: np.ndarray, pin_map: np.ndarray, start: int) -> None:
    """Raise InputError unless `pins` are integer grid points that mark exactly the pixels of X."""
    if not np.issubdtype(pins.dtype, np.integer):
        raise InputError(f"{path}: pins must be integers, got {pins.dtype}")
    count, height, width = pin_map.shape
    valid = pins[..., 0] >= 0
    x, y = pins[..., 0], pins[..., 1]
    inside = (x < width) & (y >= 0) & (y < height)
    if not inside[valid].all():
        net = int(np.argmax((valid & ~inside).any(axis=1))) + start
        raise InputError(f"{path}: sample {net} has a pin outside the {height}x{width} grid")
    drawn = np.zeros((count, height * width), dtype=np.int32)
    net_index, slot = np.nonzero(valid)
    np.add.at(drawn, (net_index, y[net_index, slot].astype(np.int64) * width + x[net_index, slot]), 1)
    mismatch = (drawn != pin_map.reshape(count, -1)).any(axis=1)
    if mismatch.any():
        net = int(np.argmax(mismatch)) + start
        raise InputError(f"{path}: sample {net}: the pins dataset does not match the pin map X")


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error})") from error
    if not is_hdf5:
        raise InputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: cannot be opened as HDF5 ({error})") from error


def _validate_layout(file: h5py.File, path: Path) -> DatasetInfo:
    for name in ("X", "Y"):
        if name not in file or not isinstance(file[name], h5py.Dataset):
            raise InputError(f"{path}: missing dataset {name!r}; a routing dataset needs X and Y")
    inputs, labels = file["X"], file["Y"]
    if inputs.ndim != 4 or inputs.shape[1] != 1:
        raise InputError(f"{path}: X must have shape (N, 1, H, W), got {inputs.shape}")
    if labels.ndim != 4 or labels.shape[1] != stack.NUM_LAYERS:
        raise InputError(
            f"{path}: Y must have shape (N, {stack.NUM_LAYERS}, H, W), got {labels.shape}"
        )
    if labels.shape[0] != inputs.shape[0] or labels.shape[2:] != inputs.shape[2:]:
        raise InputError(f"{path}: X {inputs.shape} and Y {labels.shape} disagree on N, H or W")
    for name, dataset in (("X", inputs), ("Y", labels)):
        if dataset.dtype != np.uint8:
            raise InputError(f"{path}: {name} must be uint8, got {dataset.dtype}")

    count, _, height, width = labels.shape
    has_pins = "pins" in file
    if has_pins:
        pins = file["pins"]
        if pins.ndim != 3 or pins.shape[0] != count or pins.shape[2] != 2:
            raise InputError(f"{path}: pins must have shape ({count}, P, 2), got {pins.shape}")

    attrs = file.attrs
    if "format_version" in attrs and attrs["format_version"] != FORMAT_VERSION:
        raise InputError(
            f"{path}: dataset format version {attrs['format_version']} is not supported "
            f"(expected {FORMAT_VERSION}); regenerate it with `deeproute generate`"
        )
    if "format_version" in attrs:
        missing = [name for name in _GENERATOR_ATTRIBUTES if name not in attrs]
        if missing:
            raise InputError(
                f"{path}: missing attributes {', '.join(missing)}, which every file with "
                f"format_version has; regenerate it with `deeproute generate`"
            )
    extent = attrs.get("extent_um")
    pin_range = attrs.get("pin_range")
    try:
        return DatasetInfo(
            count=count,
            height=height,
            width=width,
            has_pins=has_pins,
            extent_um=_pair(extent, float) if extent is not None else None,
            pin_range=_pair(pin_range, int) if pin_range is not None else None,
            seed=int(attrs["seed"]) if "seed" in attrs else None,
            label_style=str(attrs["label_style"]) if "label_style" in attrs else None,
            format_version=int(attrs["format_version"]) if "format_version" in attrs else None,
        )
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: invalid attribute value ({error})") from error


# Attributes that `write_attributes` records next to format_version.
_GENERATOR_ATTRIBUTES = ("extent_um", "pin_range", "seed", "label_style")


def _pair(value, kind) -> tuple:
    """Convert a 2-element attribute array to a tuple of `kind`, raising ValueError otherwise."""
    values = np.atleast_1d(value)
    if values.shape != (2,):
        raise ValueError(f"expected 2 values, got {values.tolist()}")
    return tuple(kind(v) for v in values)


def check_output_file(path: str | os.PathLike, overwrite: bool = False, example: str = "out.h5") -> Path:
    """Raise InputError unless a new file can be written at `path`; return it as a Path.

    An existing regular file is accepted only with `overwrite`. Directories, devices,
    pipes and symbolic links are never replaced.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a directory; give a file path such as {target / example}")
    if target.is_symlink():
        raise InputError(f"{target}: is a symbolic link; give the path of a regular file")
    if target.exists() and not target.is_file():
        raise InputError(f"{target}: exists and is not a regular file")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: already exists; pass --overwrite to replace it")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise InputError(f"{target}: {directory} {what}")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{target}: directory {directory} is not writable")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path` and rename it onto `path` only on success.

    On any exception, KeyboardInterrupt included, the temporary file is removed and
    nothing is left at `path`. An existing `path` is kept unless `overwrite` is set.
    """
    target = check_output_file(path, overwrite)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        raise InputError(f"{target}: cannot create a file in {directory} ({error.strerror})") from error
    os.close(handle)
    temporary_path = Path(temporary)
    # mkstemp creates the file as 0600; give the output the mode a plain open() would.
    os.chmod(temporary_path, 0o666 & ~current_umask())
    try:
        yield temporary_path
        os.replace(temporary_path, target)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """Return the process umask."""
    # NOTE: os.umask can only be read by setting it, so a file that another thread creates
    # between the two calls gets umask 022 instead of the process's own.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def create_datasets(
    file: h5py.File, count: int, height: int, width: int, max_pins: int
) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset]:
    """Create the chunked, gzip-compressed X, Y and pins datasets of a new file."""
    chunk = min(CHUNK_SAMPLES, max(count, 1))
    common = dict(compression="gzip", compression_opts=COMPRESSION_LEVEL)
    inputs = file.create_dataset(
        "X", shape=(count, 1, height, width), dtype=np.uint8, chunks=(chunk, 1, height, width), **common
    )
    labels = file.create_dataset(
        "Y",
        shape=(count, stack.NUM_LAYERS, height, width),
        dtype=np.uint8,
        chunks=(chunk, stack.NUM_LAYERS, height, width),
        **common,
    )
    pins = file.create_dataset(
        "pins", shape=(count, max_pins, 2), dtype=np.int16, chunks=(min(count, 8192) or 1, max_pins, 2), **common
    )
    return inputs, labels, pins


def write_attributes(
    file: h5py.File,
    height: int,
    width: int,
    extent_um: tuple[float, float],
    pin_range: tuple[int, int],
    seed: int,
    label_style: str,
) -> None:
    """Record how a generated file was made."""
    file.attrs["format_version"] = FORMAT_VERSION
    file.attrs["grid"] = np.array([height, width], dtype=np.int64)
    file.attrs["extent_um"] = np.array(extent_um, dtype=np.float64)
    file.attrs["pin_range"] = np.array(pin_range, dtype=np.int64)
    file.attrs["seed"] = seed
    file.attrs["label_style"] = label_style
    file.attrs["layer_names"] = np.array(stack.LAYER_NAMES, dtype=h5py.string_dtype())
