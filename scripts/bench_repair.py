"""Measure net repair: speed on one CPU core and route-level figures before and after.

Runs a checkpoint on a dataset file, then checks and repairs every net in this process
with torch, BLAS and OpenMP held to one thread, and prints the repair rate (nets/s) with
the route figures of `deeproute.route_metrics`. The rate covers check, repair and the
label comparison of each net, not the network's forward pass, which is timed apart.

Usage:
    .venv/bin/python scripts/bench_repair.py data/val_small.h5 --model runs/release/best.pt
    .venv/bin/python scripts/bench_repair.py data/val.h5 --model runs/release/best.pt \
        --json repair.json --records repair_nets.jsonl
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy and torch load their thread pools.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import date  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deeproute.checkpoint import load_model  # noqa: E402
from deeproute.dataset import open_dataset  # noqa: E402
from deeproute.route_metrics import RouteCounts, format_route_table, route_records  # noqa: E402
from deeproute.tech import DEFAULT_EXTENT_UM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="dataset file (HDF5) with labels")
    parser.add_argument("--model", required=True, help="checkpoint, e.g. runs/release/best.pt")
    parser.add_argument("--count", type=int, default=None, help="first COUNT nets only [default: all]")
    parser.add_argument("--batch-size", type=int, default=500, help="nets per forward pass")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures to this JSON file")
    parser.add_argument("--records", default=None, help="write one JSON line per net to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with open_dataset(args.data) as dataset:
        count = len(dataset) if args.count is None else min(args.count, len(dataset))
        inputs, labels = dataset.read(0, count)
        pins = dataset.read_pins(0, count)
        extent_um = dataset.info.extent_um or (DEFAULT_EXTENT_UM, DEFAULT_EXTENT_UM)
        model, checkpoint = load_model(args.model, grid=dataset.grid)

    forward_seconds = 0.0
    repair_seconds = 0.0
    counts = RouteCounts()
    records = []
    for start in range(0, count, args.batch_size):
        stop = min(start + args.batch_size, count)
        began = time.perf_counter()
        with torch.inference_mode():
            scores = model(torch.from_numpy(inputs[start:stop]).float()).numpy()
        forward_seconds += time.perf_counter() - began

        began = time.perf_counter()
        batch = route_records(scores, labels[start:stop], pins[start:stop], extent_um)
        repair_seconds += time.perf_counter() - began
        counts.add(batch)
        records.extend(batch)

    overhead = np.array([r.wirelength_overhead for r in records if r.wirelength_overhead is not None])
    figures = {
        "data": args.data,
        "model": args.model,
        "model_epoch": checkpoint.get("metrics", {}).get("epoch"),
        "model_val_f1": checkpoint.get("metrics", {}).get("val", {}).get("f1"),
        "nets": count,
        "machine": {"nproc": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "date": date.today().isoformat(),
        "forward_nets_per_s": count / forward_seconds,
        "repair_nets_per_s": count / repair_seconds,
        "repair_seconds": repair_seconds,
        "paths_added_mean": float(np.mean([r.repair.paths_added for r in records])),
        "wirelength_overhead": {
            "mean": float(overhead.mean()),
            "median": float(np.median(overhead)),
            "p95": float(np.percentile(overhead, 95)),
            "min": float(overhead.min()),
            "max": float(overhead.max()),
        },
        "route": counts.summary(),
    }

    print(format_route_table(figures["route"]))
    print(
        f"repair {figures['repair_nets_per_s']:.0f} nets/s on 1 thread ({repair_seconds:.1f} s), "
        f"forward pass {figures['forward_nets_per_s']:.0f} nets/s, "
        f"{figures['paths_added_mean']:.2f} paths added per net"
    )
    spread = figures["wirelength_overhead"]
    print(
        f"wirelength overhead vs label: mean {100 * spread['mean']:+.2f}%, median {100 * spread['median']:+.2f}%, "
        f"p95 {100 * spread['p95']:+.2f}%, range {100 * spread['min']:+.1f}% to {100 * spread['max']:+.1f}%"
    )
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    if args.records:
        with open(args.records, "w", encoding="utf-8") as handle:
            for net, record in enumerate(records):
                row = asdict(record)
                row["net"] = net
                row["wirelength_overhead"] = record.wirelength_overhead
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
