"""Parallel, deterministic dataset generation straight into a compressed HDF5 file.

The samples are cut into fixed shards of SHARD_SIZE nets. Shard k draws from its own
random stream, `SeedSequence(seed, spawn_key=(k,))`, so the file's contents depend on the
seed alone and not on how many worker processes produced the shards. Workers also
deflate the HDF5 chunks themselves, and the parent writes them with `write_direct_chunk`,
so compression runs in parallel and little data crosses process boundaries.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import h5py
import numpy as np
from isal import isal_zlib

from deeproute import dataset, stack, tech
from deeproute.errors import InputError
from deeproute.generate.pins import sample_pins
from deeproute.generate.styles import get_label_style
from deeproute.summary import DatasetSummary

logger = logging.getLogger(__name__)

SHARD_SIZE = 1024  # nets per shard: small enough to stay in cache, a multiple of the chunk size
# NOTE: each worker keeps at least one shard of labels in memory, SHARD_SIZE * 8 * H * W bytes.
# That is 8 MiB at 32x32 but 8 GiB at 1024x1024, so large grids can run out of memory.
MIN_GRID, MAX_GRID = 4, 1024
MAX_SEED = 2**63 - 1  # the seed is stored as an int64 HDF5 attribute


@dataclass(frozen=True)
class GenerateConfig:
    """Everything that determines a generated dataset, apart from where it is written."""

    count: int
    height: int = tech.DEFAULT_GRID
    width: int = tech.DEFAULT_GRID
    extent_um: tuple[float, float] = (tech.DEFAULT_EXTENT_UM, tech.DEFAULT_EXTENT_UM)
    pin_range: tuple[int, int] = tech.DEFAULT_PIN_RANGE
    seed: int = 0
    label_style: str = "paper"

    def validate(self) -> None:
        """Raise InputError naming the first invalid setting."""
        if self.count <= 0:
            raise InputError(f"sample count must be positive, got {self.count}")
        for name, size in (("height", self.height), ("width", self.width)):
            if not MIN_GRID <= size <= MAX_GRID:
                raise InputError(f"grid {name} must be within {MIN_GRID}..{MAX_GRID}, got {size}")
        if any(not np.isfinite(e) or e <= 0 for e in self.extent_um):
            raise InputError(f"extent must be positive µm, got {self.extent_um}")
        low, high = self.pin_range
        cells = self.height * self.width
        if low > high:
            raise InputError(f"pin range {low}-{high} is reversed; write it as {high}-{low}")
        if low < 2:
            raise InputError(f"a net needs at least 2 pins, got pin range {low}-{high}")
        if high > cells:
            raise InputError(
                f"pin range {low}-{high} asks for more pins than the {self.height}x{self.width} "
                f"grid has free pixels ({cells})"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be within 0..{MAX_SEED}, got {self.seed}")
        get_label_style(self.label_style)


def generate_arrays(config: GenerateConfig, start: int = 0, stop: int | None = None):
    """Generate samples [start, stop) in memory as (X, Y, pins); identical to the file contents.

    `start` must be a multiple of SHARD_SIZE.
    """
    config.validate()
    stop = config.count if stop is None else stop
    if start % SHARD_SIZE or not 0 <= start < stop <= config.count:
        raise InputError(
            f"sample range [{start}, {stop}) must lie within [0, {config.count}] and start "
            f"at a multiple of {SHARD_SIZE}"
        )
    parts = [_make_shard(config, shard) for shard in range(start // SHARD_SIZE, _shard_count(stop))]
    inputs, labels, pins = (np.concatenate(p) for p in zip(*parts))
    keep = slice(0, stop - start)
    return inputs[keep], labels[keep], pins[keep]


def generate_dataset(
    path: str | os.PathLike,
    config: GenerateConfig,
    workers: int | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Generate `config.count` samples into the HDF5 file at `path`, atomically.

    Args:
        workers: worker processes; None uses all cores, 1 runs in this process.
        on_progress: called with the number of samples finished after each shard.

    Returns:
        Summary statistics of the written dataset.
    """
    config.validate()
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    shards = _shard_count(config.count)
    summary = DatasetSummary.empty(config.height, config.width)

    with dataset.atomic_output(path, overwrite=overwrite) as temporary:
        with h5py.File(temporary, "w") as file:
            dataset.write_attributes(
                file, config.height, config.width, config.extent_um, config.pin_range,
                config.seed, config.label_style,
            )
            inputs, labels, pins = dataset.create_datasets(
                file, config.count, config.height, config.width, config.pin_range[1]
            )
            for shard, (x_chunks, y_chunks, shard_pins, shard_summary) in enumerate(
                _run_shards(config, shards, workers)
            ):
                start = shard * SHARD_SIZE
                chunk = inputs.chunks[0]
                for offset, (x_bytes, y_bytes) in enumerate(zip(x_chunks, y_chunks)):
                    row = start + offset * chunk
                    inputs.id.write_direct_chunk((row, 0, 0, 0), x_bytes)
                    labels.id.write_direct_chunk((row, 0, 0, 0), y_bytes)
                pins[start : start + shard_pins.shape[0]] = shard_pins
                summary.merge(shard_summary)
                if on_progress is not None:
                    on_progress(min(start + SHARD_SIZE, config.count))
    logger.info("wrote %d samples to %s", config.count, path)
    return summary


def _shard_count(count: int) -> int:
    return (count + SHARD_SIZE - 1) // SHARD_SIZE


def _run_shards(config: GenerateConfig, shards: int, workers: int) -> Iterator[tuple]:
    if workers == 1 or shards == 1:
        for shard in range(shards):
            yield _compress_shard(config, shard)
        return
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=min(workers, shards), mp_context=context) as pool:
        # map() yields in submission order, which keeps the output independent of scheduling.
        yield from pool.map(_compress_shard, [config] * shards, range(shards), chunksize=1)


def _make_shard(config: GenerateConfig, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate shard `shard` as (X, Y, pins) from its own random stream."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(shard,)))
    size = min(SHARD_SIZE, config.count - shard * SHARD_SIZE)
    pins = sample_pins(rng, size, config.height, config.width, config.pin_range)
    route = get_label_style(config.label_style)
    labels = route(pins, config.height, config.width, config.extent_um)
    inputs = np.ascontiguousarray(labels[:, stack.PIN : stack.PIN + 1])
    return inputs, labels, pins


def _compress_shard(config: GenerateConfig, shard: int):
    """Generate a shard and deflate it into HDF5 gzip chunks of CHUNK_SAMPLES samples."""
    inputs, labels, pins = _make_shard(config, shard)
    summary = DatasetSummary.from_arrays(labels, pins)
    chunk = min(dataset.CHUNK_SAMPLES, config.count)
    x_chunks, y_chunks = [], []
    for row in range(0, inputs.shape[0], chunk):
        x_chunks.append(_deflate(inputs[row : row + chunk], chunk))
        y_chunks.append(_deflate(labels[row : row + chunk], chunk))
    return x_chunks, y_chunks, pins, summary


def _deflate(block: np.ndarray, chunk: int) -> bytes:
    """Compress a block as one full HDF5 chunk, zero-padding a short final block."""
    if block.shape[0] < chunk:
        padded = np.zeros((chunk,) + block.shape[1:], dtype=block.dtype)
        padded[: block.shape[0]] = block
        block = padded
    # ISA-L writes a standard zlib stream, which HDF5's gzip filter reads back, about six
    # times faster than zlib level 1 on these sparse layers (scripts/bench_generate.py).
    return isal_zlib.compress(block.tobytes(), dataset.COMPRESSION_LEVEL)
