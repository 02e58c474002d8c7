"""Generated HDF5 files: determinism, contents, layout, X/Y-only input and atomic writing."""

from __future__ import annotations

import contextlib
import json
import os
import stat

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from deeproute.cli import main
from deeproute.dataset import open_dataset
from deeproute.errors import InputError
from deeproute.generate import LABEL_STYLES, GenerateConfig, generate_arrays, generate_dataset
from deeproute.generate.paper import route_paper
from deeproute.generate.writer import SHARD_SIZE

PIN = 0
LAYER_NAMES = ["PIN", "M3", "VIA3", "M4", "VIA4", "M5", "VIA5", "M6"]
# 2500 samples cover two full shards of 1024 and a partial third, and end in a partial chunk.
COUNT = 2500


def read_file(path):
    with h5py.File(path, "r") as file:
        return file["X"][:], file["Y"][:], file["pins"][:]


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    """A 2500-sample file with seed 7 written by one process, shared by the tests below."""
    path = tmp_path_factory.mktemp("reference") / "seed7.h5"
    generate_dataset(path, GenerateConfig(count=COUNT, seed=7), workers=1)
    return path


# --- determinism -------------------------------------------------------------------------


def test_count_spans_several_shards():
    assert COUNT > 2 * SHARD_SIZE
    assert COUNT % SHARD_SIZE != 0


@pytest.mark.parametrize("workers", [2, 3])
def test_same_seed_same_file_for_any_workers(reference_file, tmp_path, workers):
    path = tmp_path / f"workers{workers}.h5"
    generate_dataset(path, GenerateConfig(count=COUNT, seed=7), workers=workers)
    expected = read_file(reference_file)
    for name, actual, expected_array in zip("X Y pins".split(), read_file(path), expected):
        assert np.array_equal(actual, expected_array), name


def test_different_seed_different_file(reference_file, tmp_path):
    path = tmp_path / "seed8.h5"
    generate_dataset(path, GenerateConfig(count=COUNT, seed=8), workers=1)
    for name, actual, other in zip("X Y pins".split(), read_file(path), read_file(reference_file)):
        assert not np.array_equal(actual, other), name


def test_generate_arrays_equals_file(reference_file):
    inputs, labels, pins = generate_arrays(GenerateConfig(count=COUNT, seed=7))
    file_inputs, file_labels, file_pins = read_file(reference_file)
    assert np.array_equal(inputs, file_inputs)
    assert np.array_equal(labels, file_labels)
    assert np.array_equal(pins, file_pins)


def test_generate_arrays_slice_equals_file(reference_file):
    # Samples from the second shard onwards, stopping inside the third.
    inputs, labels, pins = generate_arrays(GenerateConfig(count=COUNT, seed=7), SHARD_SIZE, 2100)
    file_inputs, file_labels, file_pins = read_file(reference_file)
    assert np.array_equal(inputs, file_inputs[SHARD_SIZE:2100])
    assert np.array_equal(labels, file_labels[SHARD_SIZE:2100])
    assert np.array_equal(pins, file_pins[SHARD_SIZE:2100])


# --- contents and layout -----------------------------------------------------------------


def test_file_shapes_and_dtypes(reference_file):
    with h5py.File(reference_file, "r") as file:
        assert file["X"].shape == (COUNT, 1, 32, 32)
        assert file["Y"].shape == (COUNT, 8, 32, 32)
        assert file["pins"].shape == (COUNT, 5, 2)
        assert file["X"].dtype == np.uint8
        assert file["Y"].dtype == np.uint8
        assert file["pins"].dtype == np.int16


def test_file_attributes(reference_file):
    with h5py.File(reference_file, "r") as file:
        attrs = dict(file.attrs)
    assert attrs["format_version"] == 1
    assert attrs["grid"].tolist() == [32, 32]
    assert attrs["extent_um"].tolist() == [11.0, 11.0]
    assert attrs["pin_range"].tolist() == [2, 5]
    assert attrs["seed"] == 7
    assert attrs["label_style"] == "paper"
    assert [str(name) for name in attrs["layer_names"]] == LAYER_NAMES


def test_open_dataset_reads_attributes(reference_file):
    with open_dataset(reference_file) as dataset:
        info = dataset.info
    assert (info.count, info.height, info.width) == (COUNT, 32, 32)
    assert info.has_pins
    assert info.extent_um == (11.0, 11.0)
    assert info.pin_range == (2, 5)
    assert info.seed == 7
    assert info.label_style == "paper"
    assert info.format_version == 1


def test_datasets_are_chunked_and_compressed(reference_file):
    with h5py.File(reference_file, "r") as file:
        for name in ("X", "Y", "pins"):
            assert file[name].chunks is not None, name
            assert file[name].compression == "gzip", name
        assert file["X"].chunks == (128, 1, 32, 32)
        assert file["Y"].chunks == (128, 8, 32, 32)


def test_input_is_pin_layer(reference_file):
    inputs, labels, _ = read_file(reference_file)
    assert np.array_equal(inputs[:, 0], labels[:, PIN])


def test_labels_are_paper_routes_of_stored_pins(reference_file):
    _, labels, pins = read_file(reference_file)
    assert np.array_equal(labels, route_paper(pins, 32, 32, (11.0, 11.0)))


def test_pin_counts_within_range(reference_file):
    _, _, pins = read_file(reference_file)
    counts = (pins[..., 0] >= 0).sum(axis=1)
    assert set(counts.tolist()) == {2, 3, 4, 5}


def test_file_smaller_than_one_chunk(tmp_path):
    path = tmp_path / "tiny.h5"
    generate_dataset(path, GenerateConfig(count=5, seed=1), workers=1)
    inputs, labels, pins = generate_arrays(GenerateConfig(count=5, seed=1))
    file_inputs, file_labels, file_pins = read_file(path)
    assert np.array_equal(file_inputs, inputs)
    assert np.array_equal(file_labels, labels)
    assert np.array_equal(file_pins, pins)


def test_non_square_grid_file(tmp_path):
    path = tmp_path / "wide.h5"
    config = GenerateConfig(count=300, height=16, width=40, extent_um=(11.0, 4.4), pin_range=(3, 7))
    generate_dataset(path, config, workers=1)
    inputs, labels, pins = read_file(path)
    assert labels.shape == (300, 8, 16, 40)
    assert pins.shape == (300, 7, 2)
    assert np.array_equal(labels, route_paper(pins, 16, 40, (11.0, 4.4)))


def test_summary_counts_match_file(reference_file, tmp_path):
    summary = generate_dataset(tmp_path / "again.h5", GenerateConfig(count=COUNT, seed=7), workers=2)
    _, labels, pins = read_file(reference_file)
    counts = (pins[..., 0] >= 0).sum(axis=1)
    assert summary.count == COUNT
    assert dict(summary.pin_histogram) == {k: int((counts == k).sum()) for k in (2, 3, 4, 5)}
    assert summary.on_pixels.tolist() == labels.sum(axis=(0, 2, 3)).tolist()
    assert sum(summary.wire_classes.values()) == COUNT


def test_file_mode_follows_umask(tmp_path):
    path = tmp_path / "mode.h5"
    previous = os.umask(0o022)
    try:
        generate_dataset(path, GenerateConfig(count=10), workers=1)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --- X/Y-only files ----------------------------------------------------------------------


@pytest.fixture()
def xy_only_file(tmp_path):
    """An X/Y-only file like the published generator's: two hand-placed nets, no attributes."""
    pins = np.array([[[3, 5], [10, 5], [-1, -1]], [[2, 2], [6, 6], [4, 1]]], dtype=np.int16)
    labels = route_paper(pins, 32, 32, (11.0, 11.0))
    path = tmp_path / "xy_only.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("X", data=labels[:, PIN : PIN + 1])
        file.create_dataset("Y", data=labels)
    return path


def test_xy_only_file_opens(xy_only_file):
    with open_dataset(xy_only_file) as dataset:
        info = dataset.info
        inputs, labels = dataset.read()
    assert (info.count, info.height, info.width) == (2, 32, 32)
    assert not info.has_pins
    assert info.format_version is None
    assert info.seed is None
    assert inputs.shape == (2, 1, 32, 32)
    assert labels.shape == (2, 8, 32, 32)


def test_xy_only_pins_derived_from_x(xy_only_file):
    with open_dataset(xy_only_file) as dataset:
        pins = dataset.read_pins()
    # Row-major order (by y, then x), padded with -1 to the largest net.
    expected = np.array([[[3, 5], [10, 5], [-1, -1]], [[4, 1], [2, 2], [6, 6]]], dtype=np.int16)
    assert np.array_equal(pins, expected)


def test_xy_only_info_command(xy_only_file):
    result = CliRunner().invoke(main, ["info", str(xy_only_file)])
    assert result.exit_code == 0, result.output
    assert "attributes   none (X/Y-only file)" in result.stdout
    assert "samples      2" in result.stdout


def test_xy_only_info_json(xy_only_file):
    result = CliRunner().invoke(main, ["info", "--json", str(xy_only_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 2
    assert report["format_version"] is None
    assert report["pins_per_net"] == {"2": 1, "3": 1}
    # Net 0 is a lone M4 trunk. Net 1 (x span 4 <= y span 5) is an M3 trunk in column 4,
    # rows 1-6, with M4 legs of 3, 3 and 1 pixels and a VIA3 at each leg's trunk end.
    assert report["wire_classes"] == {"M3+M4": 1, "M4": 1}
    pixels = {name: round(share * 2 * 32 * 32) for name, share in report["on_fraction"].items()}
    assert pixels == {"PIN": 5, "M3": 6, "VIA3": 3, "M4": 15, "VIA4": 0, "M5": 0, "VIA5": 0, "M6": 0}


# --- atomic writing ----------------------------------------------------------------------


@contextlib.contextmanager
def registered_style(name, router):
    """Register a label style for the duration of a with block."""
    LABEL_STYLES[name] = router
    try:
        yield
    finally:
        del LABEL_STYLES[name]


def route_then_fail(pins, height, width, extent_um):
    raise RuntimeError("router failed")


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir())


def test_router_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out.h5"
    with registered_style("broken", route_then_fail):
        with pytest.raises(RuntimeError, match="router failed"):
            generate_dataset(out, GenerateConfig(count=100, label_style="broken"), workers=1)
    assert leftovers(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path):
    def interrupt(done):
        raise KeyboardInterrupt

    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(out, GenerateConfig(count=COUNT), workers=1, on_progress=interrupt)
    assert leftovers(tmp_path) == []


def test_interrupt_with_workers_leaves_nothing(tmp_path):
    def interrupt(done):
        raise KeyboardInterrupt

    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(out, GenerateConfig(count=COUNT), workers=2, on_progress=interrupt)
    assert leftovers(tmp_path) == []


def test_failure_keeps_existing_file(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous contents")
    with registered_style("broken", route_then_fail):
        with pytest.raises(RuntimeError):
            generate_dataset(out, GenerateConfig(count=100, label_style="broken"), workers=1, overwrite=True)
    assert out.read_bytes() == b"previous contents"
    assert leftovers(tmp_path) == ["out.h5"]


def test_existing_file_kept_without_overwrite(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous contents")
    with pytest.raises(InputError, match="already exists"):
        generate_dataset(out, GenerateConfig(count=10), workers=1)
    assert out.read_bytes() == b"previous contents"
    assert leftovers(tmp_path) == ["out.h5"]


def test_overwrite_replaces_file(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous contents")
    generate_dataset(out, GenerateConfig(count=10), workers=1, overwrite=True)
    assert h5py.is_hdf5(out)
    assert leftovers(tmp_path) == ["out.h5"]
