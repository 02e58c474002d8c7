"""Dataset generation: pin sampling, reference label styles and the parallel HDF5 writer."""

from deeproute.generate.paper import choose_wire_classes, route_paper
from deeproute.generate.pins import sample_pins
from deeproute.generate.styles import LABEL_STYLES, get_label_style
from deeproute.generate.writer import GenerateConfig, generate_arrays, generate_dataset

__all__ = [
    "LABEL_STYLES",
    "GenerateConfig",
    "choose_wire_classes",
    "generate_arrays",
    "generate_dataset",
    "get_label_style",
    "route_paper",
    "sample_pins",
]
