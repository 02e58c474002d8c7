"""Training and inference throughput of deeproute's loop against the published plain loop.

Both loops train the same network on the same in-memory samples, alternating rounds so
that background load affects both alike. The baseline is the published recipe as plainly
written: float32 NCHW tensors in a TensorDataset, a shuffling DataLoader with batch 100,
and a forward/backward/step per batch. deeproute's loop is `deeproute.train._train_epoch`:
uint8 samples indexed in memory, channels-last and bf16 autocast.

Usage: python scripts/bench_train.py [--samples 3000] [--rounds 3] [--stages 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from deeproute.generate import GenerateConfig, generate_arrays
from deeproute.model import FCNConfig, RoutingFCN, compare_scores, pair_logits
from deeproute.train import TrainConfig, _Distributed, _train_epoch


def baseline_epoch(model, optimizer, inputs, labels, weights) -> float:
    """One epoch of the plain published loop; returns samples/s."""
    loader = DataLoader(TensorDataset(inputs.float(), labels.long()), batch_size=100, shuffle=True)
    model.train()
    started = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(pair_logits(model(x)), y, weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(inputs) / (time.perf_counter() - started)


def deeproute_epoch(model, optimizer, scheduler, inputs, labels, weights, config, seed) -> float:
    """One epoch of deeproute's loop; returns samples/s."""
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    started = time.perf_counter()
    _train_epoch(model, optimizer, scheduler, inputs, labels, order, config, weights,
                 torch.device("cpu"), torch.bfloat16, _Distributed(), False, 0)
    return len(inputs) / (time.perf_counter() - started)


def inference_rate(model, inputs, channels_last: bool, batch: int = 500) -> float:
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            x = inputs[start : start + batch].float()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            compare_scores(model(x))
    return len(inputs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", type=int, default=15)
    args = parser.parse_args()

    inputs, labels, _ = generate_arrays(GenerateConfig(count=args.samples, seed=11))
    inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
    weights = torch.tensor([1.0, 3.0])
    config = TrainConfig(batch_size=100)
    model_config = FCNConfig(stages=args.stages)

    torch.manual_seed(0)
    plain = RoutingFCN(model_config)
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=5e-4, weight_decay=1e-5)
    torch.manual_seed(0)
    fast = RoutingFCN(model_config).to(memory_format=torch.channels_last)
    fast_optimizer = torch.optim.Adam(fast.parameters(), lr=5e-4, weight_decay=1e-5)
    fast_scheduler = torch.optim.lr_scheduler.LambdaLR(fast_optimizer, lambda step: 1.0)

    plain_rates, fast_rates = [], []
    for round_index in range(args.rounds + 1):  # round 0 warms up both and is discarded
        plain_rate = baseline_epoch(plain, plain_optimizer, inputs, labels, weights)
        fast_rate = deeproute_epoch(fast, fast_optimizer, fast_scheduler, inputs, labels, weights, config, round_index)
        if round_index:
            plain_rates.append(plain_rate)
            fast_rates.append(fast_rate)

    plain_median = statistics.median(plain_rates)
    fast_median = statistics.median(fast_rates)
    print(f"threads {torch.get_num_threads()}, samples {args.samples}, rounds {args.rounds}, stages {args.stages}")
    print(f"training  plain fp32 NCHW DataLoader loop: {plain_median:8.0f} samples/s")
    print(f"training  deeproute loop (channels-last, bf16): {fast_median:8.0f} samples/s")
    print(f"training  speed-up: {fast_median / plain_median:.2f}x")

    plain_infer = statistics.median(inference_rate(plain, inputs, False) for _ in range(3))
    fast_infer = statistics.median(inference_rate(fast, inputs, True) for _ in range(3))
    print(f"inference fp32 NCHW, batch 500:           {plain_infer:8.0f} samples/s")
    print(f"inference fp32 channels-last, batch 500:  {fast_infer:8.0f} samples/s")


if __name__ == "__main__":
    main()
