"""What a label costs a person (cost.py) against hand counts, and the annotator who errs at outlines
(selection.Annotator with noise): its rate, that it touches only the band near class boundaries, and its record."""
import numpy as np
import pytest
import torch

import cost
import selection


def grid(h=10, w=10):
    return np.zeros((h, w), bool), np.zeros((h, w), int)


def test_a_square_of_one_class_is_one_dominant_label_click():
    asked, labels = grid()
    asked[2:6, 3:7] = True
    assert cost.region_clicks(asked, labels) == ({}, {0: 1})
    assert cost.image_seconds(asked, labels, "regions") == {0: pytest.approx(cost.SECONDS_PER_POINT)}


def test_two_classes_split_by_a_line_cost_two_rectangles_and_two_crossings():
    """A 4x4 square, left half class 0, right half class 1: 4 + 4 polygon vertices, and the split crosses the
    square's outline twice: 10 clicks, half of each crossing to each class."""
    asked, labels = grid()
    asked[2:6, 3:7] = True
    labels[:, 5:] = 1
    assert cost.outline_crossings(asked, labels) == 2
    polygon, dominant = cost.region_clicks(asked, labels)
    assert polygon == {0: 5.0, 1: 5.0} and dominant == {}
    seconds = cost.image_seconds(asked, labels, "regions", seconds_per_click=2.0)
    assert seconds == {0: pytest.approx(10.0), 1: pytest.approx(10.0)}


def test_a_one_pixel_wide_sliver():
    """One class: one click. Two classes: each part a thin rectangle (4 vertices), and their boundary crosses both
    long edges of the sliver: 2 crossings."""
    asked, labels = grid()
    asked[4, 1:9] = True
    assert cost.region_clicks(asked, labels) == ({}, {0: 1})
    labels[:, 5:] = 1
    assert cost.outline_crossings(asked, labels) == 2
    assert cost.region_clicks(asked, labels) == ({0: 5.0, 1: 5.0}, {})


def test_a_thin_strip_along_a_boundary_crosses_its_outline_at_its_ends_only():
    """SPL's usual piece: two pixels wide, one class per row. The boundary runs inside the strip from end to end
    and meets its outline twice, however long the strip."""
    asked, labels = grid(6, 30)
    asked[2:4, 2:28] = True
    labels[3] = 1
    assert cost.outline_crossings(asked, labels) == 2
    assert cost.region_clicks(asked, labels) == ({0: 5.0, 1: 5.0}, {})


def test_polygon_vertices_of_an_l_and_of_a_ring():
    l_shape = np.zeros((8, 8), bool)
    l_shape[1:6, 1:3] = True
    l_shape[4:6, 1:6] = True
    assert cost.polygon_vertices(l_shape) == 6
    diagonal = np.eye(8, dtype=bool)                                             # 8-connected: one thin polygon
    assert cost.polygon_vertices(diagonal) == 4
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False
    assert cost.polygon_vertices(ring) == 8                                      # outline and hole: 4 + 4


def test_points_cost_one_click_each_per_class_and_void_costs_nothing():
    asked, labels = grid()
    asked[0, :3] = True
    labels[0, 1] = 2
    labels[0, 2] = 255
    assert cost.image_seconds(asked, labels, "points", seconds_per_point=3.0) == {0: 3.0, 2: 3.0}


def test_pieces_are_costed_one_by_one():
    """Two separate one-class pieces: two dominant clicks; a mixed piece beside them adds its polygons."""
    asked, labels = grid(10, 20)
    asked[1:3, 1:3] = True                                                       # class 0
    asked[6:8, 1:3] = True
    labels[6:8, 1:3] = 1                                                         # class 1
    asked[2:6, 10:14] = True
    labels[:, 12:] = 2                                                           # a piece of classes 0 and 2
    polygon, dominant = cost.region_clicks(asked, labels)
    assert dominant == {0: 1, 1: 1} and polygon == {0: 5.0, 2: 5.0}


def test_a_full_image_is_every_parts_polygon_and_a_click_per_part():
    labels = np.zeros((10, 10), int)
    labels[:, 5:] = 1
    labels[2:4, 1:3] = 2                                                         # a square inside class 0
    clicks = cost.full_image_clicks(labels)
    assert clicks[1] == 4 + 1 and clicks[2] == 4 + 1
    assert clicks[0] == (4 + 4) + 1                                              # its outline and the hole
    assert cost.image_seconds(None, labels, "full", seconds_per_click=1.0) == {c: float(k) for c, k in clicks.items()}


def test_other_class_across_the_nearest_boundary_by_hand():
    labels = torch.tensor([[0, 0, 0, 1],
                           [0, 0, 0, 1],
                           [0, 0, 2, 2]])
    other = selection.outline_other_class(labels, band=1)
    assert other.tolist() == [[-1, -1, 1, 0],
                              [-1, 2, 1, 0],     # (1, 2): one 1 and two 2s around it: 2
                              [-1, 2, 0, 0]]


def noisy(noise, band=1, seed=0):
    g = torch.Generator().manual_seed(5)
    truth = {i: (torch.rand(40, 60, generator=g) < 0.5).long().cumsum(1) % 3 for i in range(4)}   # many boundaries
    truth[3][:, 30:] = 255                                                        # void is never made wrong
    return truth, selection.Annotator(lambda i: truth[i], noise=noise, band=band, seed=seed)


def test_the_noisy_annotator_errs_at_its_rate_and_only_near_boundaries():
    truth, annotator = noisy(0.2)
    asked = torch.ones(4, 40, 60, dtype=torch.bool)
    got = annotator.annotate([0, 1, 2, 3], asked)
    band = torch.stack([selection.outline_other_class(truth[i], 1) >= 0 for i in range(4)])
    valid = torch.stack([truth[i] != 255 for i in range(4)])
    wrong = got != torch.stack([truth[i] for i in range(4)])
    assert not (wrong & ~band).any()                                             # only near a class boundary
    assert not (wrong & ~valid).any()
    n = int((band & valid).sum())
    rate = int(wrong.sum()) / n
    assert abs(rate - 0.2) < 4 * (0.2 * 0.8 / n) ** 0.5, (rate, n)               # four standard errors
    assert annotator.wrong_labels == int(wrong.sum())
    others = torch.stack([selection.outline_other_class(truth[i], 1) for i in range(4)])
    assert torch.equal(got[wrong], others[wrong])                                # the class on the other side


def test_the_noisy_annotator_is_seeded_and_off_by_default():
    asked = torch.rand(2, 40, 60, generator=torch.Generator().manual_seed(1)) < 0.3
    a, b = (noisy(0.5, seed=3)[1].annotate([0, 1], asked) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, noisy(0.5, seed=4)[1].annotate([0, 1], asked))
    truth, perfect = noisy(0.0)
    got = perfect.annotate([0, 1], asked)
    assert torch.equal(got, torch.where(asked, torch.stack([truth[0], truth[1]]), torch.full_like(got, 255)))
    assert perfect.wrong_labels == 0


def test_the_noisy_annotators_record_survives_a_checkpoint():
    """A resumed run continues the noise's draws where they were (how often each image was asked, the count)."""
    _, first = noisy(0.3)
    asked = torch.ones(1, 40, 60, dtype=torch.bool)
    first.annotate([2], asked)
    _, again = noisy(0.3)
    again.load_state_dict(first.state_dict())
    assert again.wrong_labels == first.wrong_labels and again.asked == {2: 1}
    assert torch.equal(again.annotate([2], asked), first.annotate([2], asked))
