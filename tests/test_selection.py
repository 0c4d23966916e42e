"""Tests for selection.py: Eq. 4's mask, SPL, PPL, the baselines and the annotator, each against a hand
example or an independent brute-force numpy computation."""

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import selection  # noqa: E402


def np_softmax(x, axis=1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def random_heads(seed, b=2, c=3, h=8, w=8, scale=3.0):
    """Two independent random heads: they disagree on about (C-1)/C of the pixels, so the mask is large."""
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(b, c, h, w, generator=g, dtype=torch.float64),
            scale * torch.randn(b, c, h, w, generator=g, dtype=torch.float64))


# ----------------------------------------------------------------------------- Eq. 4

def test_inconsistency_mask_identical_heads_is_empty():
    """Eq. 4: M_i = 1[argmax p1_i != argmax p2_i] is empty when the heads agree."""
    x = torch.randn(2, 4, 5, 5)
    m = selection.inconsistency_mask(x, x.clone())
    assert m.dtype == torch.bool and m.shape == (2, 5, 5) and not m.any()


def test_inconsistency_mask_hand_example():
    """Eq. 4 by hand: head argmaxes [0, 1, 0, 2] vs [0, 0, 1, 2] disagree at pixels 1 and 2."""
    l1 = torch.tensor([[5., 0, 0], [0, 5, 0], [5, 0, 0], [0, 0, 5]]).t().reshape(1, 3, 1, 4)
    l2 = torch.tensor([[5., 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]]).t().reshape(1, 3, 1, 4)
    assert selection.inconsistency_mask(l1, l2).flatten().tolist() == [False, True, True, False]


# ----------------------------------------------------------------------------- SPL

def test_spl_without_budget_is_the_inconsistency_mask():
    """SPL (Sec. 3.3): with no budget, label every pixel of Eq. 4's mask."""
    l1, l2 = random_heads(0)
    mask = l1.argmax(1) != l2.argmax(1)
    assert torch.equal(selection.spl_select(l1, l2), mask)


def test_spl_with_budget_picks_most_discrepant_mask_pixels():
    """SPL at a budget: round(budget*H*W) pixels per image, the mask pixels of largest per-pixel Eq. 6."""
    l1, l2 = random_heads(1)
    budget = 0.1                                                            # round(6.4) = 6 pixels per image
    sel = selection.spl_select(l1, l2, budget=budget, cap="discrepancy")
    p1, p2 = np_softmax(l1.numpy()), np_softmax(l2.numpy())
    d = np.abs(p1 - p2).mean(axis=1)                                        # (B, H, W) per-pixel Eq. 6
    mask = l1.numpy().argmax(1) != l2.numpy().argmax(1)
    for j in range(2):
        assert mask[j].sum() > 6
        cand = np.flatnonzero(mask[j])
        top = cand[np.argsort(-d[j].flatten()[cand])[:6]]
        assert sel[j].sum().item() == 6
        assert set(np.flatnonzero(sel[j].numpy())) == set(top.tolist())
        assert not (sel[j].numpy() & ~mask[j]).any()


def test_spl_random_cap_draws_inside_the_mask_with_each_images_seed():
    """SPL at a budget with cap='random': round(budget*H*W) mask pixels per image, the mask pixels of highest
    uniform score drawn with that image's seed, so an image gets the same pixels alone or in a batch."""
    l1, l2 = random_heads(1)
    mask = l1.argmax(1) != l2.argmax(1)
    sel = selection.spl_select(l1, l2, budget=0.1, cap="random", seeds=[11, 12])
    for j, s in enumerate([11, 12]):
        score = torch.rand((8, 8), generator=torch.Generator().manual_seed(s)).flatten().numpy()
        cand = np.flatnonzero(mask[j].numpy())
        top = cand[np.argsort(-score[cand])[:6]]
        assert set(np.flatnonzero(sel[j].numpy())) == set(top.tolist())
        alone = selection.spl_select(l1[j:j + 1], l2[j:j + 1], budget=0.1, cap="random", seeds=[s])
        assert torch.equal(alone[0], sel[j])
    assert torch.equal(selection.spl_select(l1, l2, budget=1.0, cap="random", seeds=[0, 1]), mask)


def test_spl_caps_differ_where_the_discrepancy_is_packed_together():
    """Two disagreement regions, the left one far more discrepant: the 'discrepancy' cap spends the whole budget
    on the left region, the 'random' cap spreads it over both (each region holds half the mask)."""
    c, h, w = 3, 4, 8
    l1 = torch.zeros(1, c, h, w, dtype=torch.float64)
    l2 = torch.zeros(1, c, h, w, dtype=torch.float64)
    l1[0, 0], l2[0, 1] = 1.0, 1.0                      # heads disagree everywhere, a little ...
    l1[0, 0, :, :4], l2[0, 1, :, :4] = 9.0, 9.0         # ... and strongly on the left half
    top = selection.spl_select(l1, l2, budget=0.25, cap="discrepancy")  # 8 of the 32 mask pixels
    assert top.sum() == 8 and not top[0, :, 4:].any()
    right = sum(int(selection.spl_select(l1, l2, budget=0.25, cap="random", seeds=[s])[0, :, 4:].sum())
                for s in range(20))
    assert 0.3 < right / (20 * 8) < 0.7                # about half of the picks in the right half
    with pytest.raises(ValueError, match="unknown SPL cap"):
        selection.spl_select(l1, l2, budget=0.25, cap="entropy")


def test_spl_budget_larger_than_mask_takes_whole_mask():
    """SPL at a budget never leaves the mask: a generous budget gives back exactly Eq. 4's mask."""
    l1, l2 = random_heads(2)
    mask = l1.argmax(1) != l2.argmax(1)
    assert torch.equal(selection.spl_select(l1, l2, budget=1.0), mask)


def test_spl_exclude_removes_already_labelled_pixels():
    """SPL in a later round: excluded (already labelled) pixels are never selected; the budget goes to the next."""
    l1, l2 = random_heads(3)
    mask = l1.argmax(1) != l2.argmax(1)
    exclude = torch.zeros_like(mask)
    exclude[:, :4] = True
    assert torch.equal(selection.spl_select(l1, l2, exclude=exclude), mask & ~exclude)
    first = selection.spl_select(l1, l2, budget=0.1)
    again = selection.spl_select(l1, l2, budget=0.1, exclude=first)
    assert not (again & first).any()
    assert (again.sum(dim=(1, 2)) == 6).all()
    assert not (again & ~mask).any()
    assert torch.equal(mask, l1.argmax(1) != l2.argmax(1))                # exclude did not alter anything


def test_budget_to_pixels():
    """A budget fraction -> round(budget * H * W) pixels, at least one."""
    assert selection.budget_to_pixels(0.1, 8, 8) == 6
    assert selection.budget_to_pixels(0.022, 512, 1024) == round(0.022 * 512 * 1024)
    assert selection.budget_to_pixels(1e-9, 8, 8) == 1


# ----------------------------------------------------------------------------- PPL: point allocation

@pytest.mark.parametrize("counts, n, expected", [
    ([100, 100, 100, 0], 40, None),
    ([2, 100, 100], 40, [2, 19, 19]),
    ([50, 100, 80], 4, [1, 2, 1]),            # the leftover point goes to the class with most uncertain pixels
    ([3, 0, 1], 40, [3, 0, 1]),               # fewer uncertain pixels than points: all of them
    ([0, 0, 0], 5, [0, 0, 0]),
])
def test_allocate_points_hand_cases(counts, n, expected):
    """PPL: n points spread evenly over the classes present, capped by each class's uncertain pixels."""
    alloc = selection.allocate_points(torch.tensor(counts), n).tolist()
    if expected is None:                      # [100, 100, 100, 0], 40 -> 14, 13, 13 in some order, 0
        assert sorted(alloc[:3]) == [13, 13, 14] and alloc[3] == 0
    else:
        assert alloc == expected


def test_allocate_points_properties_on_random_counts():
    """PPL allocation = water-filling: sums to min(n, total), never exceeds counts, unsaturated classes within 1
    of each other and no saturated class above them."""
    g = torch.Generator().manual_seed(7)
    for _ in range(300):
        c = int(torch.randint(1, 8, (1,), generator=g))
        counts = torch.randint(0, 30, (c,), generator=g) * (torch.rand(c, generator=g) < 0.8)
        n = int(torch.randint(1, 80, (1,), generator=g))
        alloc = selection.allocate_points(counts, n)
        assert int(alloc.sum()) == min(n, int(counts.sum()))
        assert (alloc <= counts).all() and (alloc >= 0).all()
        open_ = (alloc < counts)
        if open_.any():
            lo, hi = int(alloc[open_].min()), int(alloc[open_].max())
            assert hi - lo <= 1
            assert int(alloc.max()) <= hi


# ----------------------------------------------------------------------------- PPL: point selection

def ppl_reference(l1, l2, n_points, feat=None, exclude=None):
    """Brute-force numpy PPL. Returns per image (mask, pred, {k: (pixels (r, s) of U_k, their distances to
    proto_k)}, C), so that tests can compare distances, which is robust to ties between equal features."""
    x1, x2 = l1.numpy(), l2.numpy()
    p1, p2 = np_softmax(x1), np_softmax(x2)
    pbar = (p1 + p2) / 2
    b, c, h, w = x1.shape
    mask = x1.argmax(1) != x2.argmax(1)
    if exclude is not None:
        mask &= ~exclude.numpy()
    pred = pbar.argmax(1)
    if feat is not None:        # nearest-cell features, via an independent route: F.interpolate(mode="nearest")
        z_all = F.interpolate(feat.double(), size=(h, w), mode="nearest").numpy()
    else:
        z_all = pbar
    out = []
    for j in range(b):
        per_class = {}
        for k in range(c):
            idx = [(r, s) for r in range(h) for s in range(w) if mask[j, r, s] and pred[j, r, s] == k]
            if not idx:
                continue
            z = np.stack([z_all[j, :, r, s] for r, s in idx])
            proto = z.mean(axis=0)
            dist = np.sqrt(((z - proto) ** 2).sum(axis=1))
            per_class[k] = (idx, dist)
        out.append((mask[j], pred[j], per_class, c))
    return out


def check_ppl(sel, ref, n_points):
    for j, (mask, pred, per_class, c) in enumerate(ref):
        s = sel[j].numpy()
        counts = torch.tensor([len(per_class[k][0]) if k in per_class else 0 for k in range(c)])
        alloc = selection.allocate_points(counts, n_points)
        assert s.sum() == min(n_points, int(mask.sum()))
        assert not (s & ~mask).any()                                           # all inside the mask
        for k, (idx, dist) in per_class.items():
            chosen = np.array([s[r, q] for r, q in idx])
            assert chosen.sum() == alloc[k]
            # the chosen pixels of class k are the alloc[k] nearest to the class prototype (ties allowed)
            np.testing.assert_allclose(np.sort(dist[chosen]), np.sort(dist)[:int(alloc[k])], rtol=1e-9, atol=1e-12)
        assert (s & ~np.isin(pred, list(per_class))).sum() == 0


def test_ppl_points_are_nearest_to_class_prototypes_in_pbar_space():
    """PPL (Sec. 3.3): at most N points per image, inside Eq. 4's mask, each the uncertain pixel of class k
    closest (L2 in pbar = (p1+p2)/2 space) to the mean pbar of class k's uncertain pixels: brute force."""
    l1, l2 = random_heads(8)
    for n_points in (1, 3, 10, 40, 1000):
        sel = selection.ppl_select(l1, l2, n_points=n_points)
        assert sel.dtype == torch.bool and sel.shape == (2, 8, 8)
        check_ppl(sel, ppl_reference(l1, l2, n_points), n_points)


def test_ppl_one_point_per_class_is_the_argmin():
    """PPL with one point per class: exactly the argmin of ||pbar_i - proto_k|| over U_k, for every class."""
    l1, l2 = random_heads(9, c=3)
    ref = ppl_reference(l1, l2, 3)
    for mask, pred, per_class, c in ref:
        assert sorted(per_class) == [0, 1, 2]                              # all three classes uncertain somewhere
    sel = selection.ppl_select(l1, l2, n_points=3)
    for j, (mask, pred, per_class, c) in enumerate(ref):
        expected = {per_class[k][0][int(np.argmin(per_class[k][1]))] for k in per_class}
        got = {tuple(int(v) for v in rc) for rc in np.argwhere(sel[j].numpy())}
        assert got == expected


def test_ppl_with_low_resolution_features():
    """PPL in feature space: each pixel takes its nearest feature cell (as F.interpolate 'nearest'); the points
    are the uncertain pixels nearest to the class prototype of those features."""
    g = torch.Generator().manual_seed(11)
    for (h, w), (fh, fw) in (((8, 8), (3, 3)), ((8, 8), (4, 2)), ((8, 8), (8, 8)), ((6, 10), (2, 5)), ((9, 6), (4, 3))):
        l1, l2 = random_heads(10 + h + w, h=h, w=w)
        feat = torch.randn(2, 5, fh, fw, generator=g)
        for n_points in (3, 12):
            sel = selection.ppl_select(l1, l2, n_points=n_points, feat=feat)
            check_ppl(sel, ppl_reference(l1, l2, n_points, feat=feat), n_points)
    # the feature space matters: with features, the points differ from the pbar-space points here
    l1, l2 = random_heads(10)
    feat = torch.randn(2, 5, 8, 8, generator=g)
    assert not torch.equal(selection.ppl_select(l1, l2, 6, feat=feat), selection.ppl_select(l1, l2, 6))


def test_ppl_exclude_respected():
    """PPL in a later round: already labelled pixels are removed from U_k before the prototypes are computed."""
    l1, l2 = random_heads(12)
    first = selection.ppl_select(l1, l2, n_points=6)
    again = selection.ppl_select(l1, l2, n_points=6, exclude=first)
    assert not (again & first).any()
    check_ppl(again, ppl_reference(l1, l2, 6, exclude=first), 6)


def test_ppl_cell_takes_each_blocks_nearest_pixel():
    """--ppl-cell N: at most one point of a class per NxN block, the block's pixel nearest proto_k, and a class's
    points in the blocks whose nearest pixel is nearest overall; a class has room for as many points as blocks it
    touches. Brute force with ppl_reference (proto_k is still the mean over all of U_k)."""
    for cell, n_points in ((4, 6), (4, 40), (8, 5), (3, 11)):
        l1, l2 = random_heads(20 + cell, h=16, w=16)
        sel = selection.ppl_select(l1, l2, n_points=n_points, cell=cell)
        for j, (mask, pred, per_class, c) in enumerate(ppl_reference(l1, l2, n_points)):
            s = sel[j].numpy()
            assert not (s & ~mask).any()
            best = {}   # class -> {block: smallest distance in the block}
            for k, (idx, dist) in per_class.items():
                for (r, q), d in zip(idx, dist):
                    b = (r // cell, q // cell)
                    best.setdefault(k, {})[b] = min(best.get(k, {}).get(b, np.inf), d)
            counts = torch.tensor([len(best.get(k, {})) for k in range(c)])
            alloc = selection.allocate_points(counts, n_points)
            assert s.sum() == int(alloc.sum()) == min(n_points, int(counts.sum()))
            for k, (idx, dist) in per_class.items():
                chosen = [((r // cell, q // cell), d) for (r, q), d in zip(idx, dist) if s[r, q]]
                blocks = [b for b, _ in chosen]
                assert len(chosen) == alloc[k] and len(set(blocks)) == len(blocks)        # one per block
                for b, d in chosen:
                    assert np.isclose(d, best[k][b], rtol=1e-9, atol=1e-12)             # the block's nearest
                np.testing.assert_allclose(sorted(d for _, d in chosen),                  # the nearest blocks
                                           sorted(best[k].values())[:int(alloc[k])], rtol=1e-9, atol=1e-12)


def test_ppl_cell_one_is_plain_ppl_and_spreads_points():
    """A 1x1 block is a pixel: --ppl-cell 1 is PPL without a limit. With 8x8 blocks no block holds two points of
    a class, where plain PPL puts several side by side."""
    l1, l2 = random_heads(31, h=32, w=32)
    assert torch.equal(selection.ppl_select(l1, l2, 12, cell=1), selection.ppl_select(l1, l2, 12))
    plain, spread = selection.ppl_select(l1, l2, 40), selection.ppl_select(l1, l2, 40, cell=8)
    pred = (0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))).argmax(dim=1)            # (B, H, W)

    def most_in_a_block(sel):
        keys = [(j, int(pred[j, r, q]), r // 8, q // 8) for j, r, q in sel.nonzero().tolist()]
        return max(keys.count(k) for k in set(keys))
    assert most_in_a_block(spread) == 1 and most_in_a_block(plain) > 1


def test_label_spread_by_hand():
    """Image 0: (0,0), (0,1) share a block, (10,10) is in another: 2 blocks; nearest-other distances 1, 1 and
    |(10,10)-(0,1)| = sqrt(181). Image 1: one pixel, one block, no neighbour. 3 blocks / 4 labels; median 1."""
    r = selection.RevealedLabels((16, 16))
    m0 = torch.zeros(16, 16, dtype=torch.long).fill_(255)
    m0[0, 0], m0[0, 1], m0[10, 10] = 1, 2, 3
    m1 = torch.full((16, 16), 255, dtype=torch.long)
    m1[5, 5] = 0
    r.add(0, m0)
    r.add(1, m1)
    blocks, nearest = selection.label_spread(r, cell=8)
    assert blocks == pytest.approx(3 / 4) and nearest == pytest.approx(1.0)
    assert selection.label_spread(r, cell=1) == (pytest.approx(1.0), pytest.approx(1.0))   # a pixel per block
    far = selection.RevealedLabels((16, 16))
    far.add(0, torch.where(torch.arange(256).reshape(16, 16) % 85 == 0, 1, 255))   # (0,0) (5,5) (10,10) (15,15)
    assert selection.label_spread(far, cell=8) == (pytest.approx(2 / 4), pytest.approx(np.hypot(5, 5)))
    assert selection.label_spread(far, cell=4)[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- baselines

def test_random_select_exact_count_and_exclude():
    """Random baseline: exactly n pixels per image, uniformly, never an excluded one; seeded = reproducible."""
    sel = selection.random_select((3, 6, 7), 5, generator=torch.Generator().manual_seed(0))
    assert sel.dtype == torch.bool and sel.sum(dim=(1, 2)).tolist() == [5, 5, 5]
    again = selection.random_select((3, 6, 7), 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sel, again)
    exclude = torch.zeros(3, 6, 7, dtype=torch.bool)
    exclude[:, :5] = True                                                  # 7 pixels left per image
    exclude[2, 5, :4] = True                                               # image 2: only 3 left
    sel = selection.random_select((3, 6, 7), 5, generator=torch.Generator().manual_seed(1), exclude=exclude)
    assert not (sel & exclude).any()
    assert sel.sum(dim=(1, 2)).tolist() == [5, 5, 3]


def test_entropy_select_picks_highest_entropy_pixels():
    """Entropy baseline: the n pixels of largest H = -sum p log p; uniform pixels beat peaked ones."""
    temps = torch.tensor([5.0, 0.0, 2.0, 0.1, 8.0, 0.5])                 # logits t * [1, 0, 0]: entropy falls with t
    logits = torch.zeros(1, 3, 2, 3)
    logits[0, 0] = temps.view(2, 3)
    sel = selection.entropy_select(logits, 2)
    assert sel.flatten().tolist() == [False, True, False, True, False, False]   # t = 0 (uniform) and t = 0.1
    # hand value of the uniform pixel's entropy: log 3, the maximum for C = 3
    p = F.softmax(logits, dim=1)
    ent = -(p * p.log()).sum(1).flatten()
    assert ent[1].item() == pytest.approx(np.log(3), rel=1e-6) and ent.argmax().item() == 1
    exclude = torch.zeros(1, 2, 3, dtype=torch.bool)
    exclude[0, 0, 1] = True
    sel = selection.entropy_select(logits, 2, exclude=exclude)
    assert sel.flatten().tolist() == [False, False, False, True, False, True]   # t = 0.1 and t = 0.5
    assert selection.entropy_select(3 * torch.randn(2, 4, 5, 5), 7).sum(dim=(1, 2)).tolist() == [7, 7]


# ----------------------------------------------------------------------------- annotator

def make_gt(n=5, h=4, w=6, seed=13):
    g = torch.Generator().manual_seed(seed)
    return {i: torch.randint(0, 19, (h, w), generator=g) for i in range(n)}


def test_margin_select_takes_the_smallest_top_two_margins_by_hand():
    """Four pixels of one image, three classes: softmax margins p(1) - p(2) computed by hand; the two smallest are
    pixels 3 and 1 (a confident pixel with a large margin but high entropy elsewhere is not taken); an excluded
    pixel is never chosen. Catches the largest margin, p(1) - p(3), and a softmax over the wrong dimension."""
    probs = torch.tensor([[0.90, 0.05, 0.05], [0.45, 0.40, 0.15], [0.60, 0.20, 0.20], [0.34, 0.33, 0.33]])  # (4, C)
    logits = probs.log().t().reshape(1, 3, 1, 4)                                                 # (1, C, 1, 4)
    margins = [0.85, 0.05, 0.40, 0.01]
    chosen = selection.margin_select(logits, 2)
    assert chosen.shape == (1, 1, 4) and chosen[0, 0].tolist() == [False, True, False, True]
    assert sorted(range(4), key=margins.__getitem__)[:2] == [3, 1]
    exclude = torch.tensor([[[False, False, False, True]]])
    assert selection.margin_select(logits, 2, exclude)[0, 0].tolist() == [False, True, True, False]


def test_every_selector_returns_its_budget_in_one_round_and_says_what_it_is():
    """Each registry entry, called as train.select_round calls it (selection.Round), returns a (B, H, W) mask
    inside the image, never an excluded pixel, at most its budget (a fraction, or points per image); the fields
    train.py, experiments.py and figures.py read are of the kinds they expect."""
    torch.manual_seed(0)
    b, c, h, w = 2, 4, 16, 24
    logits_a, l1, l2 = (torch.randn(b, c, h, w) for _ in range(3))
    exclude = torch.zeros(b, h, w, dtype=torch.bool)
    exclude[:, :2] = True
    styles = set()
    for name, sel in selection.SELECTORS.items():
        budget = 6 if sel.budget == "points" else 0.05
        heads = (l1, l2, None) if sel.needs_b else None
        q = selection.Round(logits_a, heads, exclude, [1, 2], budget, 1, 2,
                            {"spl_cap": "random", "ppl_cell": 0, "ppl_space": "prob"})
        chosen = sel.select(q)
        assert chosen.shape == (b, h, w) and chosen.dtype == torch.bool, name
        assert not (chosen.cpu() & exclude).any(), name
        most = selection.share(6, 1, 2) if sel.budget == "points" else 9 * math.ceil(h * w * 0.05 / 2 / 9)
        assert 0 < chosen.sum(dim=(1, 2)).max() <= most, name
        assert sel.budget in ("fraction", "points") and sel.kind in ("points", "regions"), name
        styles.add(sel.style)
    assert len(styles) == len(selection.SELECTORS)   # one look for each selector
    assert [selection.share(7, r, 3) for r in range(3)] == [3, 2, 2]


def test_annotator_reveals_only_selected_pixels_and_counts():
    """The annotator: ground truth inside the selection, 255 outside, and exact counters."""
    gt = make_gt()
    asked = []

    def label_of(i):
        asked.append(i)
        return gt[i]

    ann = selection.Annotator(label_of)
    sel = torch.zeros(2, 4, 6, dtype=torch.bool)
    sel[0, 1, 2] = sel[0, 3, 5] = sel[1, 0, 0] = True
    out = ann.annotate([3, 1], sel)
    assert asked == [3, 1]
    assert out.dtype == torch.long and out.shape == (2, 4, 6)
    for row, i in enumerate([3, 1]):
        assert torch.equal(out[row][sel[row]], gt[i][sel[row]])
        assert (out[row][~sel[row]] == 255).all()
    assert ann.pixels_revealed == 3 and ann.pixels_seen == 48 and ann.images_annotated == 2
    assert ann.fraction_revealed == pytest.approx(3 / 48)
    assert ann.points_per_image == pytest.approx(1.5)
    sel2 = torch.zeros(1, 4, 6, dtype=torch.bool)
    sel2[0, :2] = True                                                    # 12 pixels
    ann.annotate([0], sel2)
    assert ann.pixels_revealed == 15 and ann.pixels_seen == 72 and ann.images_annotated == 3
    assert ann.fraction_revealed == pytest.approx(15 / 72)
    assert ann.points_per_image == pytest.approx(5.0)
    sel3 = torch.zeros(1, 4, 6, dtype=torch.bool)
    sel3[0, 3, 0] = True                                                  # a second round on image 3: 1 more px
    ann.annotate([3], sel3)
    assert ann.pixels_revealed == 16 and ann.images_annotated == 3 and ann.pixels_seen == 72
    assert ann.points_per_image == pytest.approx(16 / 3)
    restored = selection.Annotator(label_of)
    restored.load_state_dict(torch.load(_roundtrip(ann.state_dict()), weights_only=True))
    assert (restored.pixels_revealed, restored.images_annotated, restored.pixels_seen) == (16, 3, 72)


def test_annotator_shape_mismatch_raises():
    """A selection at the wrong resolution is an error, not a silent broadcast."""
    ann = selection.Annotator(make_gt().__getitem__)
    with pytest.raises(ValueError):
        ann.annotate([0, 1], torch.zeros(2, 8, 12, dtype=torch.bool))
    assert ann.pixels_revealed == 0


# ----------------------------------------------------------------------------- revealed labels

def test_revealed_labels_round_trip_and_merge():
    """RevealedLabels gives back y_t of Eq. 2: what was revealed, 255 elsewhere; a second round merges."""
    gt = make_gt()
    ann = selection.Annotator(gt.__getitem__)
    store = selection.RevealedLabels((4, 6))
    sel1 = torch.zeros(2, 4, 6, dtype=torch.bool)
    sel1[0, 0, :3] = True
    sel1[1, 2, 2] = True
    out1 = ann.annotate([2, 4], sel1)
    for row, i in enumerate([2, 4]):
        store.add(i, out1[row])
    y = store.batch([2, 4, 0])
    assert y.shape == (3, 4, 6) and y.dtype == torch.long
    assert torch.equal(y[:2], out1)
    assert (y[2] == 255).all()                                           # never annotated
    assert store.num_pixels() == 4
    sel2 = torch.zeros(1, 4, 6, dtype=torch.bool)
    sel2[0, 3, :] = True
    sel2[0, 0, 0] = True                                                  # overlaps round 1
    out2 = ann.annotate([2], sel2)
    store.add(2, out2[0])
    merged = store.batch([2])[0]
    union = sel1[0] | sel2[0]
    assert torch.equal(merged[union], gt[2][union])
    assert (merged[~union] == 255).all()
    assert store.num_pixels() == int(union.sum()) + 1 == 10              # image 2: 3 + 6 new; image 4: 1
    assert torch.equal(store.mask([2, 4, 0]), store.batch([2, 4, 0]) != 255)


def test_revealed_labels_state_dict_round_trip_with_weights_only_load(tmp_path):
    """RevealedLabels checkpoints hold plain tensors/lists/ints: torch.load(weights_only=True) restores them."""
    gt = make_gt()
    store = selection.RevealedLabels((4, 6))
    g = torch.Generator().manual_seed(14)
    for i in (0, 3, 4):
        sel = torch.rand(4, 6, generator=g) < 0.3
        store.add(i, torch.where(sel, gt[i], torch.full_like(gt[i], 255)))
    state = store.state_dict()
    for v in state.values():
        assert isinstance(v, (torch.Tensor, list, int))
    assert all(isinstance(s, int) for s in state["size"])
    path = tmp_path / "revealed.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    back = selection.RevealedLabels.from_state_dict(loaded)
    assert back.size == (4, 6)
    assert torch.equal(back.batch([0, 1, 3, 4]), store.batch([0, 1, 3, 4]))
    assert back.num_pixels() == store.num_pixels() > 0
    # the restored store keeps merging correctly
    extra = torch.full((4, 6), 255, dtype=torch.long)
    extra[3, 5] = gt[1][3, 5]
    back.add(1, extra)
    assert back.batch([1])[0, 3, 5].item() == gt[1][3, 5].item()
    # an empty store round-trips too
    buf = io.BytesIO()
    torch.save(selection.RevealedLabels((2, 2)).state_dict(), buf)
    buf.seek(0)
    empty = selection.RevealedLabels.from_state_dict(torch.load(buf, weights_only=True))
    assert (empty.batch([0]) == 255).all()


def _roundtrip(obj):
    """torch.save into memory, for torch.load(weights_only=True)."""
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_baseline_select_matches_the_single_image_rules():
    """random: image j is drawn with its own seed, exactly as random_select would draw it alone (so batching and
    splitting across processes change nothing); entropy: entropy_select; supervised: every pixel."""
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 10, 12)                                            # (B, C, H, W)
    seeds = [11, 12, 13]
    sel = selection.baseline_select("random", logits, 0.1, seeds)
    n = selection.budget_to_pixels(0.1, 10, 12)
    for j, s in enumerate(seeds):
        alone = selection.random_select((1, 10, 12), n, torch.Generator().manual_seed(s))
        assert torch.equal(sel[j:j + 1], alone) and int(sel[j].sum()) == n
    exclude = torch.zeros(3, 10, 12, dtype=torch.bool)
    exclude[:, :5] = True
    assert not (selection.baseline_select("random", logits, 0.1, seeds, exclude=exclude) & exclude).any()
    assert torch.equal(selection.baseline_select("entropy", logits, 0.1, seeds), selection.entropy_select(logits, n))
    assert selection.baseline_select("supervised", logits, None, seeds).all()


def test_buy_reveals_stores_and_counts_what_a_got_wrong():
    """Two images, 2x3 labels; A's prediction on the bought pixels is right on 2 of 4 counted ones (the 255 pixel
    is not counted). buy stores the labels, counts them, and maps where A was wrong for the images kept."""
    labels = {0: torch.tensor([[0, 1, 1], [2, 2, 255]]), 1: torch.tensor([[1, 1, 1], [0, 0, 0]])}
    annotator = selection.Annotator(lambda i: labels[i])
    revealed = selection.RevealedLabels((2, 3))
    chosen = {0: torch.tensor([[True, True, False], [False, True, True]]),        # labels 0, 1, 2, 255
              1: torch.tensor([[False, False, False], [True, False, False]])}     # label 0
    pred = {0: torch.tensor([0, 2, 2, 1], dtype=torch.uint8), 1: torch.tensor([1], dtype=torch.uint8)}
    summary, a_wrong = selection.buy(annotator, revealed, chosen, pred, ["a", "b", "c"], keep=[0])
    assert summary["bought_pixels"] == 4 and summary["a_wrong_pixels"] == 2 and summary["required_fraction"] == 0.5
    assert summary["per_class"]["a"] == {"share_of_bought": 0.5, "a_error_rate": 0.5}
    assert summary["per_class"]["b"] == {"share_of_bought": 0.25, "a_error_rate": 1.0}
    assert torch.equal(a_wrong[0], torch.tensor([[False, True, False], [False, False, False]])) and 1 not in a_wrong
    assert annotator.pixels_revealed == 5 and sorted(revealed.pixels) == [0, 1]
    assert torch.equal(revealed.batch([0, 1]), torch.where(torch.stack([chosen[0], chosen[1]]),
                                                           torch.stack([labels[0], labels[1]]), 255))
