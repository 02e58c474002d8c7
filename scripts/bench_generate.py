"""Benchmark dataset generation: a per-sample loop against deeproute's `generate_dataset`.

Both sides produce the same file layout (X, Y and pins, gzip level 1, chunks of 128
samples) for the same label rule, in one process, one after the other:

(a) baseline: for each sample, draw the pins with numpy, route the net with numpy slices,
    and write the sample's row into each HDF5 dataset.
(b) deeproute: `generate_dataset`, which draws and routes 1024 nets per numpy call, spreads
    the shards over worker processes and writes pre-compressed chunks.

The baseline's labels are checked against `route_paper` on its own pins, so both sides
are known to do the same work.

    python scripts/bench_generate.py [--count 50000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from deeproute import stack, tech
from deeproute.dataset import CHUNK_SAMPLES, COMPRESSION_LEVEL
from deeproute.generate import GenerateConfig, generate_dataset
from deeproute.generate.paper import route_paper

HEIGHT = WIDTH = tech.DEFAULT_GRID
EXTENT_UM = tech.DEFAULT_EXTENT_UM
MIN_PINS, MAX_PINS = tech.DEFAULT_PIN_RANGE
# The plain loop runs with h5py's default chunk cache (1 MiB), as a straightforward script
# would. The tuned variant's 16 MiB holds a full Y chunk (1 MiB) of each dataset, so each
# chunk is compressed once instead of being evicted and recompressed by row writes.
TUNED_CHUNK_CACHE_BYTES = 16 * 2**20


def route_one(xs: list[int], ys: list[int]) -> np.ndarray:
    """Route one net by the trunk-and-leg rule into uint8 (8, H, W) layers."""
    pitch_x, pitch_y = EXTENT_UM / WIDTH, EXTENT_UM / HEIGHT
    x_min, x_max, y_min, y_max = min(xs), max(xs), min(ys), max(ys)
    xlen = (x_max - x_min) * pitch_x
    ylen = (y_max - y_min) * pitch_y
    ohm = tech.DEFAULT_TECH.wire_ohm
    r_m3, r_m4 = ohm(stack.M3, ylen), ohm(stack.M4, xlen)
    r_m5, r_m6 = ohm(stack.M5, ylen), ohm(stack.M6, xlen)
    x_bar = sum(xs) // len(xs)
    y_bar = sum(ys) // len(ys)

    layers = np.zeros((stack.NUM_LAYERS, HEIGHT, WIDTH), dtype=np.uint8)
    if xlen > ylen:
        horizontal = stack.M6 if r_m4 > r_m6 else stack.M4
        vertical = stack.M5 if r_m4 > r_m6 or r_m3 > r_m5 else stack.M3
        layers[horizontal, y_bar, x_min : x_max + 1] = 1  # trunk
        if ylen > 0:
            for x, y in zip(xs, ys):
                layers[vertical, min(y, y_bar) : max(y, y_bar) + 1, x] = 1  # leg
    else:
        vertical = stack.M3 if r_m5 > r_m3 else stack.M5
        horizontal = stack.M4 if r_m5 > r_m3 or r_m4 <= r_m6 else stack.M6
        layers[vertical, y_min : y_max + 1, x_bar] = 1  # trunk
        if xlen > 0:
            for x, y in zip(xs, ys):
                layers[horizontal, y, min(x, x_bar) : max(x, x_bar) + 1] = 1  # leg

    for via, below, above in stack.VIA_PAIRS:
        np.bitwise_and(layers[below], layers[above], out=layers[via])
    layers[stack.PIN, ys, xs] = 1
    return layers


def run_baseline(path: Path, count: int, seed: int, cache_bytes: int | None = None) -> None:
    """Generate `count` samples one at a time, writing each row as it is made.

    `cache_bytes` sets the HDF5 chunk cache; None keeps h5py's default.
    """
    rng = np.random.default_rng(seed)
    chunk = min(CHUNK_SAMPLES, count)
    gzip = dict(compression="gzip", compression_opts=COMPRESSION_LEVEL)
    cache = {} if cache_bytes is None else {"rdcc_nbytes": cache_bytes}
    with h5py.File(path, "w", **cache) as file:
        inputs = file.create_dataset(
            "X", (count, 1, HEIGHT, WIDTH), np.uint8, chunks=(chunk, 1, HEIGHT, WIDTH), **gzip
        )
        labels = file.create_dataset(
            "Y", (count, stack.NUM_LAYERS, HEIGHT, WIDTH), np.uint8,
            chunks=(chunk, stack.NUM_LAYERS, HEIGHT, WIDTH), **gzip,
        )
        pins = file.create_dataset(
            "pins", (count, MAX_PINS, 2), np.int16, chunks=(min(count, 8192), MAX_PINS, 2), **gzip
        )
        for index in range(count):
            pin_count = int(rng.integers(MIN_PINS, MAX_PINS + 1))
            cells = rng.choice(HEIGHT * WIDTH, size=pin_count, replace=False)
            xs = (cells % WIDTH).tolist()
            ys = (cells // WIDTH).tolist()
            layers = route_one(xs, ys)
            row = np.full((MAX_PINS, 2), -1, dtype=np.int16)
            row[:pin_count, 0] = xs
            row[:pin_count, 1] = ys

            inputs[index] = layers[stack.PIN : stack.PIN + 1]
            labels[index] = layers
            pins[index] = row


def check_baseline(path: Path, samples: int) -> None:
    """Raise AssertionError unless the baseline's first labels match `route_paper`."""
    with h5py.File(path, "r") as file:
        labels = file["Y"][:samples]
        pins = file["pins"][:samples]
    expected = route_paper(pins, HEIGHT, WIDTH, (EXTENT_UM, EXTENT_UM))
    if not np.array_equal(labels, expected):
        raise AssertionError("baseline labels differ from route_paper on the same pins")


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="samples per side (default 50000)")
    parser.add_argument("--workers", type=int, default=None, help="deeproute worker processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of both sides (default 0)")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="bench_generate.") as directory:
        plain_path = Path(directory) / "plain.h5"
        tuned_path = Path(directory) / "tuned.h5"
        deeproute_path = Path(directory) / "deeproute.h5"
        config = GenerateConfig(count=args.count, seed=args.seed)

        plain_s = timed(lambda: run_baseline(plain_path, args.count, args.seed))
        check_baseline(plain_path, min(args.count, 2000))
        deeproute_s = timed(lambda: generate_dataset(deeproute_path, config, workers=workers))
        tuned_s = timed(lambda: run_baseline(tuned_path, args.count, args.seed, TUNED_CHUNK_CACHE_BYTES))

    rate = {name: args.count / seconds for name, seconds in
            (("plain", plain_s), ("tuned", tuned_s), ("deeproute", deeproute_s))}
    print(f"samples                     {args.count} ({HEIGHT}x{WIDTH} grid, pins {MIN_PINS}-{MAX_PINS})")
    print(f"plain loop (default cache)  {plain_s:8.2f} s  {rate['plain']:10.0f} samples/s  (1 process)")
    print(f"loop with 16 MiB cache      {tuned_s:8.2f} s  {rate['tuned']:10.0f} samples/s  (1 process)")
    print(f"deeproute                   {deeproute_s:8.2f} s  {rate['deeproute']:10.0f} samples/s  ({workers} workers)")
    print(f"speed-up over plain loop    {rate['deeproute'] / rate['plain']:8.1f}x")
    print(f"speed-up over tuned loop    {rate['deeproute'] / rate['tuned']:8.1f}x")


if __name__ == "__main__":
    main()
