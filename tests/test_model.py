"""The published network's shape, parameter count and score comparator."""

import torch

from deeproute.model import FCNConfig, RoutingFCN, compare_scores, count_parameters, pair_logits


def test_published_parameter_count():
    assert count_parameters(RoutingFCN()) == 50_368


def test_published_first_kernel_spans_grid():
    model = RoutingFCN()
    assert model.features[0][0].kernel_size == (33, 33)


def test_stage_count_and_norms():
    model = RoutingFCN()
    assert len(model.features) == 14
    assert all(isinstance(stage[1], torch.nn.BatchNorm2d) for stage in model.features)
    assert model.scores.out_channels == 16


def test_output_shape_on_rectangular_grid():
    model = RoutingFCN(FCNConfig(height=12, width=20, stages=3, channels=4)).eval()
    scores = model(torch.zeros(2, 1, 12, 20))
    assert scores.shape == (2, 16, 12, 20)
    assert model.features[0][0].kernel_size == (13, 21)


def test_comparator_on_beats_off():
    scores = torch.zeros(1, 16, 1, 3)
    scores[0, 1, 0, 0] = 1.0  # layer 0 pixel 0: on 1 > off 0
    scores[0, 2, 0, 1] = 1.0  # layer 1 pixel 1: off 1 > on 0
    # layer 0 pixel 2: a tie stays off
    predicted = compare_scores(scores)
    assert predicted.shape == (1, 8, 1, 3)
    assert predicted[0, 0].tolist() == [[True, False, False]]
    assert not predicted[0, 1].any()


def test_pair_logits_layout():
    scores = torch.arange(16.0).reshape(1, 16, 1, 1)
    logits = pair_logits(scores)  # (1, 2, 8, 1, 1)
    assert logits[0, 0, :, 0, 0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert logits[0, 1, :, 0, 0].tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
