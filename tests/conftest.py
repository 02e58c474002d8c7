"""Shared fixtures: small generated datasets and a tiny trained checkpoint."""

import pytest

from deeproute.generate import GenerateConfig, generate_dataset


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """Paths of a 16x16 training set (600 nets) and validation set (200 nets)."""
    folder = tmp_path_factory.mktemp("data")
    train = folder / "train.h5"
    val = folder / "val.h5"
    generate_dataset(train, GenerateConfig(count=600, height=16, width=16, seed=1), workers=1)
    generate_dataset(val, GenerateConfig(count=200, height=16, width=16, seed=2), workers=1)
    return train, val


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, small_data):
    """A run folder holding a 4-stage, 4-channel model trained for 2 epochs on `small_data`."""
    from deeproute.train import TrainConfig, train

    train_path, val_path = small_data
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        train_path, val_path, out,
        TrainConfig(epochs=2, batch_size=50, lr=3e-3, amp="off", train_eval_samples=100),
        model_config={"channels": 4, "stages": 4},
    )
    return out
