"""GDSII export: hand-worked rectangles, the layer map, and a KLayout read-back against routes.json."""

import json
from pathlib import Path

import pytest
import torch

from deeproute import stack
from deeproute.checkpoint import make_checkpoint, save_checkpoint
from deeproute.errors import InputError
from deeproute.export import gds
from deeproute.layout import Layout, Segment, Via
from deeproute.model import FCNConfig, RoutingFCN
from deeproute.route import route_pins_file

kdb = pytest.importorskip("klayout.db")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pins.json"


def test_segment_rectangle_hand_worked():
    # Pitch 0.5 µm: pixel x = 2 has its centre at 1.25 µm, x = 5 at 2.75 µm, y = 3 at 1.75 µm.
    lower, upper = gds.segment_rectangle_um(Segment(stack.M4, (2, 3), (5, 3)), (0.5, 0.5), 0.1)
    assert lower == pytest.approx((1.20, 1.70))
    assert upper == pytest.approx((2.80, 1.80))


def test_single_pixel_segment_is_square():
    lower, upper = gds.segment_rectangle_um(Segment(stack.M3, (0, 0), (0, 0)), (0.4, 0.2), 0.14)
    assert lower == pytest.approx((0.13, 0.03))
    assert upper == pytest.approx((0.27, 0.17))


def test_default_layer_map_comes_from_stack():
    layer_map = gds.default_layer_map()
    assert layer_map[stack.M3] == (13, 0)
    assert layer_map[stack.VIA5] == (35, 0)
    assert len(layer_map) == stack.NUM_LAYERS


@pytest.mark.parametrize(
    "spec, channel, expected",
    [
        ("M3=23/0", stack.M3, (23, 0)),
        ("m3=23/5, via3=43", stack.VIA3, (43, 0)),
        ("PIN=1/2", stack.PIN, (1, 2)),
        ("M6=7/7", stack.M5, (15, 0)),  # layers not named keep their default
    ],
)
def test_layer_map_text(spec, channel, expected):
    assert gds.parse_layer_map(spec)[channel] == expected


def test_layer_map_json_file(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"M4": [24, 1], "VIA4": "44/2", "M5": 25}))
    layer_map = gds.parse_layer_map(str(path))
    assert layer_map[stack.M4] == (24, 1)
    assert layer_map[stack.VIA4] == (44, 2)
    assert layer_map[stack.M5] == (25, 0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("M7=1/0", "unknown layer 'M7'"),
        ("M3=-1/0", "expected LAYER/DATATYPE"),
        ("M3=1/0/0", "expected LAYER/DATATYPE"),
        ("M3=65536/0", "from 0 to 65535"),
        ("M3:13", "invalid entry"),
        ("absent.json", "GDS layer map file not found"),
    ],
)
def test_layer_map_errors(spec, message):
    with pytest.raises(InputError, match=message):
        gds.parse_layer_map(spec)


def test_cell_names_are_unique_and_safe():
    assert gds.cell_names(["data[0]", "data_0_", "a b", gds.TOP_CELL]) == [
        "data_0_", "data_0__1", "a_b", f"{gds.TOP_CELL}_1",
    ]


def _read_cells(path):
    layout = kdb.Layout()
    layout.read(str(path))
    return layout


def _shapes(layout, cell, gds_layer, datatype):
    """Return the boxes and polygons of `cell` on one GDS layer, as KLayout µm boxes."""
    index = layout.find_layer(gds_layer, datatype)
    if index is None:
        return []
    return [shape.dbox for shape in cell.shapes(index).each() if shape.is_box() or shape.is_polygon()]


def _expected_boxes(net, document):
    """Compute each layer's µm rectangles from routes.json alone, keyed by layer name."""
    sizes = document["gds"]
    boxes = {name: [] for name in stack.LAYER_NAMES}
    for layer, wires in net["wires"].items():
        half = sizes["wire_width_um"][layer] / 2
        for wire in wires:
            (x0, y0), (x1, y1) = wire["from_um"], wire["to_um"]
            boxes[layer].append((x0 - half, y0 - half, x1 + half, y1 + half))
    for via in net["vias"]:
        half = sizes["via_size_um"] / 2
        x, y = via["at_um"]
        boxes[via["layer"]].append((x - half, y - half, x + half, y + half))
    for x, y in net["pins_um"]:
        half = sizes["pin_size_um"] / 2
        boxes["PIN"].append((x - half, y - half, x + half, y + half))
    return boxes


def _bounding_box(rectangles):
    return (
        min(r[0] for r in rectangles), min(r[1] for r in rectangles),
        max(r[2] for r in rectangles), max(r[3] for r in rectangles),
    )


@pytest.fixture(scope="module")
def routed_example(tmp_path_factory):
    """Route the example with an untrained model biased towards 'off'; return the output folder."""
    folder = tmp_path_factory.mktemp("gds")
    torch.manual_seed(1)
    model = RoutingFCN(FCNConfig(height=32, width=32, channels=4, stages=3))
    with torch.no_grad():
        model.scores.bias[0::2] = 4.0
        model.scores.bias[1::2] = -4.0
    save_checkpoint(folder / "model.pt", make_checkpoint(model))
    out = folder / "out"
    route_pins_file(EXAMPLE, out, model_path=folder / "model.pt", gds_layers="M3=23/0,VIA3=43/1", device="cpu")
    return out


def test_gds_shapes_match_routes_json(routed_example):
    document = json.loads((routed_example / "routes.json").read_text())
    layout = _read_cells(routed_example / "routes.gds")
    dbu = layout.dbu
    assert dbu == pytest.approx(document["gds"]["database_unit_um"])

    for net in document["nets"]:
        cell = layout.cell(net["gds_cell"])
        assert cell is not None, net["gds_cell"]
        expected = _expected_boxes(net, document)
        for name, (gds_layer, datatype) in document["gds"]["layers"].items():
            shapes = _shapes(layout, cell, gds_layer, datatype)
            assert len(shapes) == len(expected[name]), (net["name"], name)
            if not shapes:
                continue
            box = kdb.DBox()
            for shape in shapes:
                box += shape
            want = _bounding_box(expected[name])
            got = (box.left, box.bottom, box.right, box.top)
            assert got == pytest.approx(want, abs=dbu), (net["name"], name)

            # Shape by shape: both sides sorted by position rounded to 10 nm, far below the pitch.
            def position(rectangle):
                return tuple(round(v, 2) for v in rectangle)

            each_got = sorted(((b.left, b.bottom, b.right, b.top) for b in shapes), key=position)
            each_want = sorted(expected[name], key=position)
            for got_shape, want_shape in zip(each_got, each_want):
                assert got_shape == pytest.approx(want_shape, abs=dbu), (net["name"], name)


def test_gds_uses_overridden_layers(routed_example):
    document = json.loads((routed_example / "routes.json").read_text())
    assert document["gds"]["layers"]["M3"] == [23, 0]
    assert document["gds"]["layers"]["VIA3"] == [43, 1]
    layout = _read_cells(routed_example / "routes.gds")
    layers = {(info.layer, info.datatype) for info in (layout.get_info(i) for i in layout.layer_indexes())}
    used = set()
    for net in document["nets"]:
        used |= {name for name, boxes in _expected_boxes(net, document).items() if boxes}
    assert layers == {tuple(document["gds"]["layers"][name]) for name in used}
    assert (13, 0) not in layers
    assert (33, 0) not in layers


def test_gds_override_on_hand_made_layout(tmp_path):
    layout = Layout(height=4, width=4, extent_um=(2.0, 2.0), pins=[(1, 0), (1, 3)])
    layout.segments = [Segment(stack.M3, (1, 0), (1, 3))]
    path = tmp_path / "override.gds"
    gds.write_gds(path, [("n", layout)], gds.parse_layer_map("M3=23/4,PIN=2/0"))
    read = _read_cells(path)
    layers = {(info.layer, info.datatype) for info in (read.get_info(i) for i in read.layer_indexes())}
    assert layers == {(23, 4), (2, 0)}


def test_gds_top_cell_places_every_net(routed_example):
    document = json.loads((routed_example / "routes.json").read_text())
    layout = _read_cells(routed_example / "routes.gds")
    top = layout.top_cell()
    assert top.name == gds.TOP_CELL
    placed = {layout.cell(instance.cell_index).name: (instance.dcplx_trans.disp.x, instance.dcplx_trans.disp.y)
              for instance in top.each_inst()}
    assert len(placed) == len(document["nets"])
    for net in document["nets"]:
        assert placed[net["gds_cell"]] == pytest.approx(tuple(net["gds_origin_um"]))


def test_gds_labels_name_the_net(routed_example):
    document = json.loads((routed_example / "routes.json").read_text())
    layout = _read_cells(routed_example / "routes.gds")
    pin_layer = layout.find_layer(*document["gds"]["layers"]["PIN"])
    for net in document["nets"]:
        texts = [s.text_string for s in layout.cell(net["gds_cell"]).shapes(pin_layer).each() if s.is_text()]
        assert texts == [net["name"]]


def test_write_gds_hand_made_layout(tmp_path):
    # One M4 wire (0,0)-(3,0), a VIA4 at (3,0), one M5 wire (3,0)-(3,2), pins at both ends.
    layout = Layout(height=4, width=4, extent_um=(2.0, 2.0), pins=[(0, 0), (3, 2)])
    layout.segments = [Segment(stack.M4, (0, 0), (3, 0)), Segment(stack.M5, (3, 0), (3, 2))]
    layout.vias = [Via(stack.VIA4, (3, 0))]
    path = tmp_path / "one.gds"
    gds.write_gds(path, [("n", layout)])

    read = _read_cells(path)
    cell = read.cell("n")
    m4 = _shapes(read, cell, 14, 0)
    assert len(m4) == 1
    # Pitch 0.5 µm, M4 width 0.10 µm: centres 0.25 to 1.75 µm, y 0.25.
    assert (m4[0].left, m4[0].bottom, m4[0].right, m4[0].top) == pytest.approx((0.20, 0.20, 1.80, 0.30))
    m5 = _shapes(read, cell, 15, 0)
    assert (m5[0].left, m5[0].bottom, m5[0].right, m5[0].top) == pytest.approx((1.68, 0.18, 1.82, 1.32))
    assert len(_shapes(read, cell, 34, 0)) == 1
    assert len(_shapes(read, cell, 12, 0)) == 2
