"""The models shipped inside the package load and route a fresh sample of nets well."""

import torch

from deeproute.checkpoint import DEFAULT_INT8_MODEL, load_model
from deeproute.generate import GenerateConfig, generate_arrays
from deeproute.metrics import PixelCounts
from deeproute.model import compare_scores


def _fresh_nets(count=200):
    inputs, labels, _ = generate_arrays(GenerateConfig(count=count, seed=424242))
    return inputs, labels


def test_shipped_float_model_scores_above_published_f1():
    model, checkpoint = load_model()
    assert checkpoint["grid"] == [32, 32]
    inputs, labels = _fresh_nets()
    counts = PixelCounts()
    with torch.inference_mode():
        counts.add(compare_scores(model(torch.from_numpy(inputs).float())), labels)
    assert counts.summary()["f1"] > 0.92  # published validation F1


def test_shipped_int8_model_scores_above_published_f1():
    from deeproute.quant import load_int8_engine

    engine = load_int8_engine(DEFAULT_INT8_MODEL)
    inputs, labels = _fresh_nets(100)
    counts = PixelCounts()
    counts.add(engine.predict(inputs), labels)
    assert counts.summary()["f1"] > 0.92


def test_shipped_w4a8_weights_and_f1():
    import numpy as np

    from deeproute.checkpoint import DEFAULT_W4A8_MODEL
    from deeproute.quant import load_int8_engine

    engine = load_int8_engine(DEFAULT_W4A8_MODEL)
    with np.load(DEFAULT_W4A8_MODEL / "model.npz", allow_pickle=False) as arrays:
        weights = [arrays[name] for name in arrays.files if name.endswith(".weight")]
    assert len(weights) == 15
    assert min(int(w.min()) for w in weights) >= -8  # the signed 4-bit range
    assert max(int(w.max()) for w in weights) <= 7
    inputs, labels = _fresh_nets(200)
    counts = PixelCounts()
    counts.add(engine.predict(inputs), labels)
    assert counts.summary()["f1"] > 0.92  # published validation F1; the model scores 0.936 on data/val.h5
