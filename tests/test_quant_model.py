"""Folding, calibration, the fake-quantized model, the integer engine, export and ONNX."""

import json

import numpy as np
import pytest
import torch

from deeproute.errors import InputError
from deeproute.generate import GenerateConfig, generate_arrays
from deeproute.model import FCNConfig, RoutingFCN, compare_scores
from deeproute.quant.calibrate import CalibrationConfig, _Histogram, calibrate_activations, weight_threshold
from deeproute.quant.export import save_integer_model, to_integer_model
from deeproute.quant.fold import FoldedFCN, fold_batch_norm
from deeproute.quant.integer import load_int8_engine, rounding_right_shift
from deeproute.quant.qmodel import QuantizedFCN, bias_bit_width, build_quantized_model
from deeproute.quant.retrain import RetrainConfig, retrain


def _random_model(seed=0, **overrides):
    """A tiny RoutingFCN in eval mode with random, non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    config = dict(height=8, width=8, stages=4, channels=4)
    config.update(overrides)
    model = RoutingFCN(FCNConfig(**config))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _nets(count=200, seed=1, size=8):
    inputs, labels, _ = generate_arrays(
        GenerateConfig(count=count, height=size, width=size, extent_um=(3.0, 3.0), pin_range=(2, 4), seed=seed)
    )
    return inputs, labels


def _quantized(model, inputs, method="max", weight_bits=8):
    folded = fold_batch_norm(model)
    thresholds = calibrate_activations(folded, inputs, CalibrationConfig(method=method, batch_size=50))
    return build_quantized_model(folded, thresholds, weight_bits=weight_bits)


@pytest.mark.parametrize("first_kernel", [None, (5, 5), (3, 5)])
def test_folded_model_matches_batch_norm(first_kernel):
    model = _random_model(first_kernel=first_kernel)
    inputs, _ = _nets(50)
    x = torch.from_numpy(inputs).float()
    with torch.no_grad():
        expected = model(x)
        folded = fold_batch_norm(model)(x)
    assert torch.allclose(folded, expected, rtol=0, atol=1e-5)


def test_calibration_max_and_percentile():
    values = torch.from_numpy(np.random.default_rng(0).standard_normal(200_000))
    histogram = _Histogram(float(values.abs().max()), 8)
    histogram.add(values)
    expected = np.percentile(values.abs().numpy(), 99.0)
    bin_width = histogram.edge / (histogram.bins // 2)
    assert abs(histogram.percentile(99.0) - expected) <= bin_width


def test_klj_clips_rare_outlier():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(200_000), [1000.0]])
    histogram = _Histogram(1000.0, 8)
    histogram.add(torch.from_numpy(values))
    threshold = histogram.klj_threshold()
    assert threshold < 1000.0  # the lone outlier is clipped
    assert threshold >= 4.0  # but not the bulk of the normal distribution
    assert np.log2(threshold) == int(np.log2(threshold))  # a power of 2


def test_weight_threshold_max_and_mse():
    # 4 bits: at t = 1 (step 1/8) the 0.05 weights round to 0, squared error about 0.2506.
    # At t = 0.5 (step 1/16) they become 0.0625 and 0.9 clips to 0.4375: about 0.2295.
    # At t = 0.25 (step 1/32) 0.9 clips to 0.21875: about 0.4798.
    weight = torch.tensor([0.9] + [0.05] * 100)
    assert weight_threshold(weight, 4, "max") == pytest.approx(0.9)
    assert weight_threshold(weight, 4, "mse") == 0.5
    assert weight_threshold(weight, 8, "mse") == 1.0  # 8 bits resolve 0.05 without clipping
    assert weight_threshold(torch.zeros(5), 4, "mse") == 0.0


def test_zero_activations_calibrate_without_nan():
    zero = FoldedFCN(
        [torch.zeros(4, 1, 3, 3), torch.zeros(16, 4, 3, 3)], [torch.zeros(4), torch.zeros(16)], 0.01, (8, 8)
    )
    inputs, _ = _nets(50)
    for method in ("max", "percentile", "klj"):
        thresholds = calibrate_activations(zero, inputs, CalibrationConfig(method=method, batch_size=50))
        model = build_quantized_model(zero, thresholds)
        scores = model(torch.from_numpy(inputs))
        assert torch.isfinite(scores).all(), method
        assert all(np.isfinite(q.log2_threshold.item()) for q in model.output_quantizers), method
        assert not to_integer_model(model).scores(inputs).any(), method


def test_calibration_set_smaller_than_batch_rejected():
    inputs, _ = _nets(30)
    with pytest.raises(InputError, match="fewer than one batch"):
        calibrate_activations(fold_batch_norm(_random_model()), inputs, CalibrationConfig(batch_size=50))


def test_rounding_shift_matches_torch_round():
    values = np.arange(-1100, 1101)
    for shift in range(-2, 9):
        expected = torch.round(torch.from_numpy(values).double() / 2.0**shift).long().numpy()
        assert np.array_equal(rounding_right_shift(values, shift), expected), shift


@pytest.mark.parametrize("method", ["max", "percentile", "klj"])
@pytest.mark.parametrize("weight_bits", [8, 4])
def test_engine_bit_identical_to_fake_quant(method, weight_bits):
    model = _random_model()
    inputs, _ = _nets(200)
    quantized = _quantized(model, inputs, method, weight_bits)
    engine = to_integer_model(quantized)
    with torch.no_grad():
        expected = quantized.stage_outputs(torch.from_numpy(inputs))
    for stage, (integers, fake) in enumerate(zip(engine.stage_outputs(inputs), expected)):
        exponent = engine.stages[stage].output_exponent
        assert np.array_equal(integers * 2.0**exponent, fake.numpy()), stage


def test_engine_bit_identical_on_dense_pin_maps():
    model = _random_model(seed=3)
    inputs, _ = _nets(100)
    quantized = _quantized(model, inputs)
    dense = (np.random.default_rng(0).random((40, 1, 8, 8)) < 0.5).astype(np.uint8)
    engine = to_integer_model(quantized)
    with torch.no_grad():
        expected = quantized(torch.from_numpy(dense)).numpy()
    assert np.array_equal(engine.scores(dense) * 2.0**engine.score_exponent, expected)


def test_engine_predictions_match_fake_quant():
    model = _random_model()
    inputs, _ = _nets(200)
    quantized = _quantized(model, inputs)
    with torch.no_grad():
        expected = compare_scores(quantized(torch.from_numpy(inputs))).numpy()
    predicted = to_integer_model(quantized).predict(inputs)
    assert predicted.dtype == bool
    assert predicted.shape == (200, 8, 8, 8)
    assert np.array_equal(predicted, expected)


def test_exact_halves_round_to_even_in_both():
    # A 1x1 stage with integer weights [68, 100, 4, 76, -68] at scale 2^-7 (max 100/128 has
    # ceil log2 = 0) and an output threshold of 8, so e_out = 3 - 7 = -4 and the shift is 3.
    # At a pin the accumulators divided by 8 are 8.5, 12.5, 0.5 and 9.5: exact halves.
    weights = torch.tensor([68.0, 100.0, 4.0, 76.0, -68.0]).reshape(5, 1, 1, 1) / 128
    folded = FoldedFCN(
        [weights, torch.ones(16, 5, 1, 1) / 8], [torch.zeros(5), torch.zeros(16)], 0.01, (4, 4)
    )
    model = QuantizedFCN(folded)
    model.set_output_thresholds([8.0, 64.0])
    model.eval()
    assert model.exponents()[0] == {"input": 0, "weight": -7, "accumulator": -7, "output": -4}

    pins = np.zeros((1, 1, 4, 4), dtype=np.uint8)
    pins[0, 0, 1, 2] = 1
    engine = to_integer_model(model)
    integers = engine.stage_outputs(pins)[0][0, :, 1, 2]
    with torch.no_grad():
        fake = model.stage_outputs(torch.from_numpy(pins))[0][0, :, 1, 2].numpy()
    # Ties to even: 8.5 -> 8, 12.5 -> 12, 0.5 -> 0, 9.5 -> 10; -68 * 655 / 2^19 -> 0.
    assert integers.tolist() == [8, 12, 0, 10, 0]
    assert (fake * 2**4).tolist() == [8, 12, 0, 10, 0]


def test_export_round_trip(tmp_path):
    model = _random_model()
    inputs, _ = _nets(100)
    engine = to_integer_model(_quantized(model, inputs))
    save_integer_model(engine, tmp_path)
    loaded = load_int8_engine(tmp_path)
    assert np.array_equal(loaded.scores(inputs), engine.scores(inputs))
    assert loaded.score_exponent == engine.score_exponent
    assert loaded.grid == (8, 8)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        assert archive["stage0.weight"].dtype == np.int8
        assert archive["stage0.bias"].dtype == np.int16
    manifest = json.loads((tmp_path / "model.json").read_text())
    for stage in manifest["stages"]:
        assert stage["shift"] == stage["output_exponent"] - stage["input_exponent"] - stage["weight_exponent"]


@pytest.mark.parametrize("weight_bits", [12, 16])
def test_wide_weights_keep_biases_in_int32(tmp_path, weight_bits):
    # At 16 weight bits the accumulator scale is 2^8 finer than at 8 bits. Biases of a few
    # tenths then need more than 16 bits, and int16 would clip them.
    inputs, _ = _nets(100)
    quantized = _quantized(_random_model(), inputs, weight_bits=weight_bits)
    assert quantized.clipped_biases() == [0, 0, 0, 0]
    assert 32 in quantized.bias_bit_widths()

    engine = to_integer_model(quantized)
    save_integer_model(engine, tmp_path)
    loaded = load_int8_engine(tmp_path)
    manifest = json.loads((tmp_path / "model.json").read_text())
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        for index, stage in enumerate(manifest["stages"]):
            assert stage["bias_bits"] == quantized.bias_bit_widths()[index]
            assert archive[stage["bias"]].dtype == (np.int32 if stage["bias_bits"] == 32 else np.int16)
    with torch.no_grad():
        expected = quantized(torch.from_numpy(inputs)).numpy()
    assert np.array_equal(loaded.scores(inputs) * 2.0**loaded.score_exponent, expected)


def test_bias_bit_width_hand_worked():
    # At scale 2^-15: 0.5 -> 16384 and -1.0 -> -32768 fit int16, 1.0 -> 32768 does not.
    assert bias_bit_width(torch.tensor([0.5, -1.0]), -15) == 16
    assert bias_bit_width(torch.tensor([0.5, 1.0]), -15) == 32
    assert bias_bit_width(torch.tensor([1.0]), -14) == 16


def test_scores_are_int32_with_16_channels():
    inputs, _ = _nets(10)
    engine = to_integer_model(_quantized(_random_model(), _nets(100)[0]))
    scores = engine.scores(inputs)
    assert scores.dtype == np.int32
    assert scores.shape == (10, 16, 8, 8)
    assert scores.min() >= -(2**15)
    assert scores.max() < 2**15


def _broken_copy(source, destination, edit_manifest=None, edit_arrays=None):
    manifest = json.loads((source / "model.json").read_text())
    with np.load(source / "model.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    destination.mkdir()
    (destination / "model.json").write_text(json.dumps(manifest))
    np.savez(destination / "model.npz", **arrays)
    return destination


def test_loader_rejects_bad_folders(tmp_path):
    engine = to_integer_model(_quantized(_random_model(), _nets(100)[0]))
    good = tmp_path / "good"
    save_integer_model(engine, good)

    def wide_weights(arrays):
        arrays["stage1.weight"] = arrays["stage1.weight"].astype(np.int16) * 4

    def wrong_shift(manifest):
        manifest["stages"][0]["shift"] += 1

    def other_format(manifest):
        manifest["format"] = "something-else"

    def short_padding(manifest):
        manifest["stages"][1]["padding"] = [0, 0, 1, 1]

    cases = {
        "missing": (tmp_path / "missing", "not a directory"),
        "weights": (_broken_copy(good, tmp_path / "weights", edit_arrays=wide_weights), "int8"),
        "shift": (_broken_copy(good, tmp_path / "shift", edit_manifest=wrong_shift), "shift"),
        "format": (_broken_copy(good, tmp_path / "format", edit_manifest=other_format), "format"),
        "padding": (_broken_copy(good, tmp_path / "padding", edit_manifest=short_padding), "padding"),
    }
    for name, (folder, message) in cases.items():
        with pytest.raises(InputError, match=message):
            load_int8_engine(folder)


def _set(path, value):
    """Return a manifest edit that sets the field at `path` (keys and list indices) to `value`."""

    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _delete(path):
    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


MALFORMED_MANIFESTS = [
    # (case, edit, words the message must contain)
    ("leaky shift 100", _set(["leaky_relu", "shift"], 100), "leaky_relu.shift must be an integer within 0..31, got 100"),
    ("leaky numerator too large", _set(["leaky_relu", "numerator"], 2**16), "leaky_relu.numerator"),
    ("string exponent", _set(["stages", 1, "weight_exponent"], "-7"), "stages[1].weight_exponent must be an integer"),
    ("float bits", _set(["stages", 0, "weight_bits"], 8.0), "stages[0].weight_bits must be an integer"),
    ("boolean bits", _set(["stages", 0, "output_bits"], True), "stages[0].output_bits"),
    ("bias bits 24", _set(["stages", 2, "bias_bits"], 24), "stages[2].bias_bits must be 16 or 32"),
    ("missing shift", _delete(["stages", 3, "shift"]), "field stages[3].shift is missing"),
    ("huge exponent", _set(["stages", 1, "output_exponent"], 10**6), "stages[1].output_exponent"),
    ("grid of strings", _set(["grid"], ["8", "8"]), "grid must be a list of 2 integers"),
    ("stages not a list", _set(["stages"], {"0": {}}), "stages must be an array"),
    ("stage not an object", _set(["stages", 1], [1, 2]), "stages[1] must be a JSON object, got an array"),
    ("array name not a string", _set(["stages", 0, "weight"], 3), "stages[0].weight must be a non-empty string"),
    ("unknown array", _set(["stages", 0, "bias"], "nothing"), "array 'nothing', named by"),
    ("channels differ from array", _set(["stages", 1, "out_channels"], 5), "must be int8 of shape (5, 4, 3, 3)"),
    ("bias bits differ from array", _set(["stages", 0, "bias_bits"], 32), "must be int32 of shape (4,)"),
    ("activation", _set(["stages", 3, "activation"], "relu"), "stages[3].activation must be one of"),
    ("score exponent", _set(["scores", "exponent"], 99), "scores.exponent must be the integer"),
    ("input exponent", _set(["input", "exponent"], 1), "input.exponent must be the integer 0"),
    ("negative shift", _set(["stages", 0, "negative_shift"], 0), "stages[0].negative_shift"),
    ("format version", _set(["format_version"], 2), "format version 2 is not supported"),
]


@pytest.mark.parametrize("case, edit, message", MALFORMED_MANIFESTS, ids=[c[0] for c in MALFORMED_MANIFESTS])
def test_loader_names_bad_field(tmp_path, case, edit, message):
    engine = to_integer_model(_quantized(_random_model(), _nets(100)[0]))
    good = tmp_path / "good"
    save_integer_model(engine, good)
    broken = _broken_copy(good, tmp_path / "broken", edit_manifest=edit)
    with pytest.raises(InputError) as raised:
        load_int8_engine(broken)
    assert message in str(raised.value)
    assert str(broken) in str(raised.value)


def test_loader_rejects_damaged_files(tmp_path):
    engine = to_integer_model(_quantized(_random_model(), _nets(100)[0]))
    good = tmp_path / "good"
    save_integer_model(engine, good)

    truncated = _broken_copy(good, tmp_path / "truncated")
    content = (truncated / "model.npz").read_bytes()
    (truncated / "model.npz").write_bytes(content[: len(content) // 2])
    with pytest.raises(InputError, match="model.npz: not a readable npz archive"):
        load_int8_engine(truncated)

    listed = _broken_copy(good, tmp_path / "listed")
    (listed / "model.json").write_text("[1, 2, 3]")
    with pytest.raises(InputError, match="the manifest must be a JSON object, got an array"):
        load_int8_engine(listed)

    def extra_array(arrays):
        arrays["stray"] = np.zeros(3, dtype=np.int8)

    stray = _broken_copy(good, tmp_path / "stray", edit_arrays=extra_array)
    with pytest.raises(InputError, match="contains arrays that no stage of .* names: stray"):
        load_int8_engine(stray)


def test_engine_rejects_bad_pin_maps():
    engine = to_integer_model(_quantized(_random_model(), _nets(100)[0]))
    with pytest.raises(InputError, match="only 0 and 1"):
        engine.scores(np.full((1, 1, 8, 8), 2, dtype=np.uint8))
    with pytest.raises(InputError, match="shape"):
        engine.scores(np.zeros((1, 1, 9, 8), dtype=np.uint8))


def test_onnx_runtime_matches_engine(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from deeproute.quant.onnx_export import save_onnx

    inputs, _ = _nets(200)
    engine = to_integer_model(_quantized(_random_model(), inputs))
    path = save_onnx(engine, tmp_path / "model.onnx")

    import onnx

    graph = onnx.load(path)
    assert graph.opset_import[0].version >= 13
    operators = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "LeakyRelu"} <= operators

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"pins": inputs.astype(np.float32)})[0]
    integers = scores / 2.0**engine.score_exponent
    # The predictions must agree exactly. A score may differ by one step where float32
    # LeakyRelu rounds a product of more than 24 bits, which this small model never forms.
    assert np.array_equal(compare_scores(torch.from_numpy(scores)).numpy(), engine.predict(inputs))
    assert np.mean(integers != engine.scores(inputs)) <= 1e-3


def test_retraining_moves_thresholds_and_stays_exact():
    model = _random_model()
    inputs, labels = _nets(200)
    quantized = _quantized(model, inputs)
    before = [q.log2_threshold.item() for q in quantized.output_quantizers]
    weights_before = quantized.weights[1].detach().clone()

    history = retrain(quantized, inputs, labels, RetrainConfig(epochs=2, batch_size=50, device="cpu"),
                      inputs[:100], labels[:100])

    assert len(history) == 2
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert [q.log2_threshold.item() for q in quantized.output_quantizers] != before
    assert not torch.equal(quantized.weights[1].detach(), weights_before)
    assert not quantized.training
    engine = to_integer_model(quantized)
    with torch.no_grad():
        expected = quantized(torch.from_numpy(inputs)).numpy()
    assert np.array_equal(engine.scores(inputs) * 2.0**engine.score_exponent, expected)


def test_distillation_changes_retraining():
    model = _random_model()
    inputs, labels = _nets(100)
    folded = fold_batch_norm(model)
    results = []
    for distill in (0.0, 1.0, 1.0):
        quantized = _quantized(model, inputs, weight_bits=4)
        config = RetrainConfig(epochs=1, batch_size=50, device="cpu", distill=distill)
        history = retrain(quantized, inputs, labels, config, teacher=folded)
        results.append((history[0]["train_loss"], quantized.weights[1].detach().clone()))
    plain, distilled, again = results
    # The KL term is non-negative, so it adds to the loss. The same run repeats exactly.
    assert distilled[0] > plain[0]
    assert not torch.equal(distilled[1], plain[1])
    assert distilled[0] == again[0]
    assert torch.equal(distilled[1], again[1])
    # The teacher itself is left untouched.
    assert torch.equal(folded.weights[1], fold_batch_norm(model).weights[1])
    with pytest.raises(ValueError, match="teacher"):
        retrain(_quantized(model, inputs), inputs, labels, RetrainConfig(epochs=1, batch_size=50, distill=1.0))
    with pytest.raises(InputError, match="distillation weight"):
        RetrainConfig(distill=-0.5).validate()
