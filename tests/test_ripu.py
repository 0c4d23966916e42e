"""RIPU's selector and losses (Xie et al., CVPR 2022), checked against brute-force references on small arrays:
the scores window by window, the greedy choice box by box (suppression, box reveal, budget, ties), later rounds,
and the two losses by hand."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import labor
import selection


def brute_scores(logits, k, regions):
    """ripu_scores with explicit loops over pixels and windows (numpy, float64)."""
    p = torch.softmax(logits.double(), dim=1).numpy()
    b, c, h, w = p.shape
    ent = -(p * np.log(p + 1e-6)).sum(axis=1)                                   # (B, H, W)
    pred = p.argmax(axis=1)
    out = np.zeros((b, h, w))
    for j in range(b):
        for y in range(h):
            for x in range(w):
                ys, xs = slice(max(0, y - k), y + k + 1), slice(max(0, x - k), x + k + 1)
                window = pred[j, ys, xs].ravel()
                q = np.bincount(window, minlength=c) / window.size
                impurity = -(q * np.log(q + 1e-6)).sum()
                if regions:
                    out[j, y, x] = impurity / math.log(c) * (ent[j, ys, xs] / math.log(c)).sum() / window.size
                else:
                    out[j, y, x] = ent[j, y, x] * impurity
    return out


def brute_greedy(score, n, reveal, suppress, taken):
    """The greedy choice written out: the best open centre (ties: smallest column, then smallest row)."""
    b, h, w = score.shape
    out = np.zeros((b, h, w), bool)
    taken = taken.copy()
    for j in range(b):
        for _ in range(n):
            best, where = -np.inf, None
            for x in range(w):
                for y in range(h):
                    if not taken[j, y, x] and score[j, y, x] > best:
                        best, where = score[j, y, x], (y, x)
            if where is None:
                break
            y, x = where
            out[j, max(0, y - reveal):y + reveal + 1, max(0, x - reveal):x + reveal + 1] = True
            taken[j, max(0, y - suppress):y + suppress + 1, max(0, x - suppress):x + suppress + 1] = True
    return out


def logits(seed, b=2, c=4, h=9, w=11, scale=2.0):
    return scale * torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k, regions", [(1, True), (2, False), (1, False)])
def test_ripu_scores_match_the_window_by_window_reference(k, regions):
    """Impurity of the window's predicted classes times uncertainty (the window's mean normalised entropy for
    regions, the pixel's entropy in nats for points), zero padding, divided by the in-image pixels."""
    x = logits(0)
    got = selection.ripu_scores(x, k, regions=regions).double().numpy()
    np.testing.assert_allclose(got, brute_scores(x, k, regions), rtol=1e-5, atol=1e-7)


def test_ripu_regions_are_the_greedy_reference_box_by_box():
    """ceil(H W budget / 9) boxes of 3x3 per image, each centre's 5x5 box closed to later centres, boxes clipped at
    the border: equal to the written-out greedy choice."""
    x = logits(1)
    budget = 0.2                                                                  # ceil(99 * 0.2 / 9) = 3 boxes
    got = selection.ripu_select(x, budget=budget)
    score = selection.ripu_scores(x, 1, regions=True).numpy()
    want = brute_greedy(score, math.ceil(9 * 11 * budget / 9), 1, 2, np.zeros(score.shape, bool))
    assert np.array_equal(got.numpy(), want)
    assert 9 < got[0].sum() <= 27                                                 # three boxes, none overlapping


def test_ripu_points_reveal_centres_and_close_their_windows():
    """n single pixels per image, no two within k of each other (Chebyshev), as the written-out greedy choice."""
    x = logits(2, h=16, w=20)
    k = selection.ripu_point_radius(20)
    got = selection.ripu_select(x, n_points=5)
    score = selection.ripu_scores(x, k, regions=False).numpy()
    want = brute_greedy(score, 5, 0, k, np.zeros(score.shape, bool))
    assert np.array_equal(got.numpy(), want)
    for j in range(2):
        pts = torch.nonzero(got[j]).tolist()
        assert len(pts) == 5
        assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) > k for a in pts for b in pts if a != b)


def test_ripu_ties_go_to_the_smallest_column_then_row():
    """Constant logits: every window pure, every score equal; RIPU's max over rows then columns picks the first
    column's first row, then the next open one down that column."""
    x = torch.zeros(1, 3, 6, 7)
    got = selection.ripu_select(x, n_points=2)                                   # k = 1 at width 7
    assert torch.nonzero(got[0]).tolist() == [[0, 0], [2, 0]]


def test_ripu_later_rounds_never_buy_or_crowd_earlier_pixels():
    """A second round excludes the pixels bought before and every centre within the suppression reach of them."""
    x = logits(3, h=12, w=14)
    first = selection.ripu_select(x, budget=0.15)
    second = selection.ripu_select(x, budget=0.15, exclude=first)
    assert first.any() and second.any() and not (first & second).any()
    reach = F.max_pool2d(first.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0    # 3x3 boxes grown to 5x5
    centres = F.avg_pool2d(second.float()[:, None], 3, stride=1, padding=1)[:, 0] * 9 > 8.5   # interior centres
    assert not (centres & reach).any()


def test_ripu_point_radius_scales_32_at_2048():
    assert [selection.ripu_point_radius(w) for w in (2048, 1024, 192, 64, 20)] == [32, 16, 3, 1, 1]


def test_negative_learning_loss_by_hand():
    """Over the (pixel, class) entries below 0.05: the mean of -log(1 - p + 1e-6); the rest count not at all."""
    prob = torch.tensor([0.01, 0.04, 0.95, 0.5, 0.3, 0.2]).reshape(2, 3, 1, 1)
    want = -(math.log(1 - 0.01 + 1e-6) + math.log(1 - 0.04 + 1e-6)) / 2
    assert labor.negative_learning_loss(prob).item() == pytest.approx(want, rel=1e-6)
    assert labor.negative_learning_loss(torch.full((1, 2, 2, 2), 0.5)).item() == 0.0


def test_local_consistency_loss_by_hand():
    """Labels [[0, 0, 1]] on a 1x3 image: RIPU's Laplacian marks the pixels next to the 1 and the 1 itself (which
    also borders the zero padding); the mean of sum_c |p - mean_3x3(p)| over them, replicate padding."""
    labels = torch.tensor([[[0, 0, 1]]])
    prob = torch.tensor([[[[0.9, 0.8, 0.1]], [[0.1, 0.2, 0.9]]]])                   # (1, 2, 1, 3)
    edges = F.conv2d(labels[:, None].float(), torch.tensor([[[[-1., -1, -1], [-1, 8, -1], [-1, -1, -1]]]]),
                     padding=1)[0, 0]
    assert (edges != 0).tolist() == [[False, True, True]]
    padded = F.pad(prob, (1, 1, 1, 1), mode="replicate")
    d = [sum(abs(prob[0, c, 0, i] - padded[0, c, :, i:i + 3].mean()) for c in range(2)) for i in (1, 2)]
    assert labor.local_consistency_loss(prob, labels).item() == pytest.approx(float(sum(d) / 2), rel=1e-6)
    labels[0, 0, 2] = 255                                                          # void is never a boundary pixel
    assert labor.local_consistency_loss(prob, labels).item() == pytest.approx(float(d[0]), rel=1e-6)
