"""Where to label: the inconsistency mask (Eq. 4), SPL and PPL (Sec. 3.3), baselines, and the annotator.

All selectors work on one batch of target images at the resolution of the labels (the trainer upsamples the
selector's logits first) and return a boolean selection mask (B, H, W): True = "ask the annotator for this
pixel". Nothing here loops over pixels; PPL loops over images and classes only.

SELECTORS at the end of the selectors is the one list of them: each selector's function and what train.py,
tools/experiments.py and tools/figures.py need to know of it. A new selector is one function and one entry there.

The annotator is the ONLY way the trainer may read target-train ground truth: it returns labels that are 255
everywhere outside the selection, and counts what it revealed.
"""
import math
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import cost
import labor

IGNORE_INDEX = 255


def inconsistency_mask(logits1, logits2):
    """Eq. 4:  M_i = 1[ argmax_k p1_ik != argmax_k p2_ik ]: the pixels where the selector's two heads disagree.

    logits1, logits2: (B, C, H, W). Returns (B, H, W) bool.
    """
    return logits1.argmax(dim=1) != logits2.argmax(dim=1)


def pixel_discrepancy(logits1, logits2):
    """Per-pixel Eq. 6: d_i = 1/C sum_k |p1_ik - p2_ik|. (B, C, H, W) x 2 -> (B, H, W)."""
    return (F.softmax(logits1, dim=1) - F.softmax(logits2, dim=1)).abs().mean(dim=1)


def _top_per_image(score, n_per_image, candidates=None):
    """Boolean mask of the n highest-score pixels of each image (among `candidates` if given).

    score: (B, H, W); n_per_image: int or (B,) ints. Ties go as torch.topk orders them: the same on every run of
    one machine, but an order torch does not document (random and entropy scores tie only by accident).
    """
    b, h, w = score.shape
    score = score.reshape(b, -1).float()                                      # (B, HW)
    if candidates is not None:
        score = score.masked_fill(~candidates.reshape(b, -1), float("-inf"))
    n = torch.as_tensor(n_per_image, device=score.device).expand(b).clamp(max=h * w)  # (B,)
    if candidates is not None:
        n = torch.minimum(n, candidates.reshape(b, -1).sum(dim=1))
    k = int(n.max().item()) if b else 0
    order = score.topk(k, dim=1).indices                                      # (B, k)
    keep = torch.arange(k, device=score.device).unsqueeze(0) < n.unsqueeze(1) # (B, k)
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, order, keep)
    return mask.reshape(b, h, w)


def budget_to_pixels(budget, height, width):
    """A budget given as a fraction of pixels per image -> a pixel count per image (at least 1 if budget > 0)."""
    n = int(round(budget * height * width))
    return max(1, n) if budget > 0 else 0


# --------------------------------------------------------------------------------------------------------------
# SPL: segment-based pixel labelling
# --------------------------------------------------------------------------------------------------------------

def spl_select(logits1, logits2, budget=None, exclude=None, cap="random", seeds=None):
    """SPL (Sec. 3.3): label every pixel of the inconsistency mask of Eq. 4.

    budget=None labels the whole mask (the paper: about 2.2% of Cityscapes pixels). A budget in (0, 1] caps
    each image at that fraction of its pixels, so that selectors can be compared at equal budgets (our addition;
    the paper does not cap). Which mask pixels fill the cap:
      cap="random":       uniformly at random among the mask's pixels (image j's drawn with seeds[j]:
                          seeded_scores), spread over every disagreement region;
      cap="discrepancy":  the most discrepant first (per-pixel Eq. 6); these lie packed together on a few
                          boundary stretches and do far worse (README: the two caps on the tuning split).

    exclude: optional (B, H, W) bool of pixels never to select (already labelled in an earlier round).
    logits1, logits2: (B, C, H, W). Returns (B, H, W) bool.
    """
    mask_incons = inconsistency_mask(logits1, logits2)                      # (B, H, W)
    if exclude is not None:
        mask_incons &= ~exclude
    if budget is None:
        return mask_incons
    n = budget_to_pixels(budget, *mask_incons.shape[-2:])
    if cap == "discrepancy":
        score = pixel_discrepancy(logits1, logits2)                         # (B, H, W)
    elif cap == "random":
        b, h, w = mask_incons.shape
        score = seeded_scores(seeds, h, w) if seeds is not None else torch.rand(b, h, w)        # (B, H, W)
        score = score.to(mask_incons.device)
    else:
        raise ValueError(f"unknown SPL cap {cap!r}: 'random' or 'discrepancy'")
    return _top_per_image(score, n, candidates=mask_incons)


# --------------------------------------------------------------------------------------------------------------
# PPL: point-based pixel labelling
# --------------------------------------------------------------------------------------------------------------

def allocate_points(counts, n_points):
    """Spread n_points over the classes present (counts[k] > 0): as evenly as possible, never more points to a
    class than it has uncertain pixels, leftovers to the classes with the most uncertain pixels.

    counts: (C,) long. Returns (C,) long summing to min(n_points, counts.sum()).
    """
    alloc = torch.zeros_like(counts)
    remaining = int(min(n_points, int(counts.sum())))
    while remaining > 0:  # a few rounds at most: each round gives every class with room an equal share
        room = counts - alloc
        open_classes = (room > 0).nonzero().flatten()
        share = max(1, remaining // len(open_classes))
        # classes with the most uncertain pixels first, so a leftover of 1 goes to the largest one
        for k in open_classes[room[open_classes].argsort(descending=True, stable=True)]:
            give = min(share, int(room[k]), remaining)
            alloc[k] += give
            remaining -= give
            if remaining == 0:
                break
    return alloc


def ppl_select(logits1, logits2, n_points=40, feat=None, exclude=None, cell=0):
    """PPL (Sec. 3.3): a few points per image, each the uncertain pixel most typical of its class.

    For each image and each class k:
      U_k     = { i in mask_incons : argmax_c pbar_ic = k },   pbar = (p1 + p2) / 2   (the uncertain pixels of k)
      proto_k = mean_{i in U_k} z_i          (z = pbar, or the selector's features `feat` if given)
      points  = the pixels of U_k with the smallest || z_i - proto_k ||_2   (ties: the first in raster order)
    with n_points per image spread over the classes present (allocate_points). Which prediction assigns a pixel
    to a class, and how points are shared between classes, are our reading of the paper (README, departures).
    cell > 0 (our addition, `--ppl-cell`; the default 0 is the paper's rule): at most one point of a class
    per cell x cell block of the image (in one call: a later round may add another), the block's pixel nearest
    proto_k, in the blocks whose best pixel is nearest; the pixels most typical of a class lie side by side, and A
    predicts one value per 8x8 block. A class's room is then the number of blocks it touches, and
    allocate_points shares the points by that.

    logits1, logits2: (B, C, H, W). feat: optional (B, D, h, w) at any resolution; each pixel takes the feature
    of its nearest feature cell, gathered for the uncertain pixels only (upsampling 2048-d features to
    1024x512 would need gigabytes). exclude: optional (B, H, W) bool of pixels never to select.
    Returns (B, H, W) bool with at most n_points True per image, all inside the inconsistency mask.
    """
    mask_incons = inconsistency_mask(logits1, logits2)                      # (B, H, W)
    if exclude is not None:
        mask_incons &= ~exclude
    pbar = 0.5 * (F.softmax(logits1, dim=1) + F.softmax(logits2, dim=1))    # (B, C, H, W)
    pred = pbar.argmax(dim=1)                                               # (B, H, W)
    b, c, h, w = logits1.shape
    block = _blocks(h, w, cell, logits1.device) if cell else None           # (HW,) block of each pixel
    selected = torch.zeros(b, h * w, dtype=torch.bool, device=logits1.device)
    for j in range(b):
        cls = torch.where(mask_incons[j].flatten(), pred[j].flatten(), -1)  # (HW,) class of uncertain px, -1 else
        counts = torch.bincount(cls[cls >= 0], minlength=c)                 # (C,)
        if cell:  # room for one point per block a class touches
            pairs = torch.unique(cls[cls >= 0] * (h * w) + block[cls >= 0])  # distinct (class, block)
            counts = torch.bincount(pairs // (h * w), minlength=c)          # (C,)
        alloc = allocate_points(counts, n_points)
        for k in alloc.nonzero().flatten().tolist():
            idx = (cls == k).nonzero().flatten()                            # (n_k,) pixel indices of U_k
            z = _embed(idx, pbar[j], feat[j] if feat is not None else None, w)   # (n_k, D)
            proto = z.mean(dim=0, keepdim=True)                             # (1, D)
            dist = (z - proto).norm(dim=1)                                  # (n_k,)
            if cell:
                nearest = _nearest_per_block(dist, block[idx], int(alloc[k]))
            else:
                nearest = dist.argsort(stable=True)[:int(alloc[k])]         # ties: the first pixel in raster order
            selected[j, idx[nearest]] = True
    return selected.reshape(b, h, w)


def _blocks(h, w, cell, device):
    """The cell x cell block of every pixel of an (h, w) image, numbered row by row. Returns (h*w,) long."""
    ys, xs = torch.arange(h, device=device) // cell, torch.arange(w, device=device) // cell
    return (ys[:, None] * (xs[-1] + 1) + xs[None, :]).flatten()


def _nearest_per_block(dist, blocks, n):
    """Positions of the n smallest dist, taking at most one per block (each block's smallest).
    Returns (min(n, number of blocks),)."""
    order = dist.argsort(stable=True)                                       # nearest first
    _, inv = torch.unique(blocks[order], return_inverse=True)
    pos = torch.arange(len(order), device=dist.device)
    first = torch.full((int(inv.max()) + 1,), len(order), device=dist.device).scatter_reduce(0, inv, pos, "amin")
    return order[first.sort().values[:n]]                                   # each block's nearest, nearest first


def _embed(idx, prob, feat, width):
    """The embedding z_i of flat pixel indices idx: the class-probability vector, or the feature of the nearest
    feature cell when feat (D, h, w) is given. Returns (n, D)."""
    if feat is None:
        return prob.flatten(1)[:, idx].t()                                  # (n, C)
    height = prob.shape[-2]
    rows = idx // width * feat.shape[-2] // height
    cols = idx % width * feat.shape[-1] // width
    return feat[:, rows, cols].t().float()                                  # (n, D)


# --------------------------------------------------------------------------------------------------------------
# Baselines at an equal budget
# --------------------------------------------------------------------------------------------------------------

def seeded_scores(seeds, height, width):
    """Uniform scores in [0, 1), image j's drawn with its own seeds[j], so that a random choice does not depend on
    how images are batched or split across processes. Returns (B, H, W) on CPU."""
    return torch.stack([torch.rand((height, width), generator=torch.Generator().manual_seed(s)) for s in seeds])


def random_select(shape, n_per_image, generator=None, exclude=None):
    """n_per_image pixels per image, uniformly at random. shape = (B, H, W). Returns (B, H, W) bool (on CPU)."""
    score = torch.rand(shape, generator=generator)
    return _top_per_image(score, n_per_image, candidates=None if exclude is None else ~exclude.cpu())


def entropy_select(logits_a, n_per_image, exclude=None):
    """The n_per_image pixels of highest prediction entropy H_i = - sum_k p_ik log p_ik under model A."""
    logp = F.log_softmax(logits_a, dim=1)                                   # (B, C, H, W)
    entropy = -(logp.exp() * logp).sum(dim=1)                               # (B, H, W)
    return _top_per_image(entropy, n_per_image, candidates=None if exclude is None else ~exclude)


def baseline_select(mode, logits_a, budget, seeds, exclude=None):
    """A batch of Table 1's baselines: 'random' (uniform, image j's drawn with seeds[j]: seeded_scores) or
    'entropy' (A's most uncertain pixels), each at `budget` of the pixels; 'supervised': every pixel.
    logits_a: A's logits at image size (B, C, H, W)."""
    b, _, h, w = logits_a.shape
    if mode == "supervised":
        return torch.ones(b, h, w, dtype=torch.bool)
    n = budget_to_pixels(budget, h, w)
    if mode == "entropy":
        return entropy_select(logits_a, n, exclude=exclude)
    return _top_per_image(seeded_scores(seeds, h, w), n, candidates=None if exclude is None else ~exclude.cpu())


# --------------------------------------------------------------------------------------------------------------
# RIPU (Xie et al., CVPR 2022), LabOR's successor: region impurity times prediction uncertainty, from A alone
# --------------------------------------------------------------------------------------------------------------
# Faithful to its code (BIT-DA/RIPU, core/active/build.py, floating_region.py, spatial_purity.py), with two
# exceptions we name: log C where RIPU hard-codes log 19, and ties broken as RIPU's max over rows then columns
# happens to break them (the smallest column, then the smallest row). It is not LabOR: it needs no selector B.

def _box_sum(x, k):
    """The sum over each pixel's (2k+1) x (2k+1) window, zero padding outside the image. (B, D, H, W) -> same."""
    ones = torch.ones(x.shape[1], 1, 2 * k + 1, 2 * k + 1, dtype=x.dtype, device=x.device)
    return F.conv2d(x, ones, padding=k, groups=x.shape[1])


def ripu_scores(logits_a, k, regions=True):
    """RIPU's score of every pixel from A's logits (B, C, H, W) at image size, over its (2k+1)^2 window:

        h_i  = - sum_c p_ic log(p_ic + 1e-6)                 prediction uncertainty (entropy), p = softmax
        q_ic = #{j in window(i) : argmax p_j = c} / n_i       n_i = the window's pixels inside the image
        P_i  = - sum_c q_ic log(q_ic + 1e-6)                  region impurity
    regions=True (RIPU-RA): h and P are divided by log C, U_i = sum_{j in window(i)} h_j / n_i, score = P_i * U_i.
    regions=False (RIPU-PA): score = h_i * P_i, natural logs, not normalised. Returns (B, H, W).
    """
    b, c, h, w = logits_a.shape
    p = F.softmax(logits_a.float(), dim=1)                                   # (B, C, H, W)
    entropy = -(p * torch.log(p + 1e-6)).sum(dim=1, keepdim=True)            # (B, 1, H, W)
    n = _box_sum(torch.ones(b, 1, h, w, device=p.device), k)                 # (B, 1, H, W)
    onehot = F.one_hot(p.argmax(dim=1), c).permute(0, 3, 1, 2).float()      # (B, C, H, W)
    q = _box_sum(onehot, k) / n                                              # (B, C, H, W)
    impurity = -(q * torch.log(q + 1e-6)).sum(dim=1)                         # (B, H, W)
    if not regions:
        return entropy[:, 0] * impurity
    log_c = math.log(c)
    return (impurity / log_c) * (_box_sum(entropy / log_c, k)[:, 0] / n[:, 0])


def _greedy_boxes(score, n, reveal, suppress, taken):
    """Per image, n times: the best remaining centre (ties: the smallest column, then the smallest row), its
    (2 reveal + 1)^2 box revealed, and the (2 suppress + 1)^2 box around it taken (never a centre again). Boxes are
    clipped at the image border; a box still counts as one of the n. taken: (B, H, W) bool, updated in place.
    Stops early when no centre is left. Returns (B, H, W) bool of the pixels to reveal."""
    b, h, w = score.shape
    out = torch.zeros(b, h, w, dtype=torch.bool, device=score.device)
    for j in range(b):
        s = score[j].masked_fill(taken[j], float("-inf")).t().contiguous()     # (W, H): column-major order
        for _ in range(n):
            best = int(s.flatten().argmax())
            x, y = divmod(best, h)
            if s[x, y] == float("-inf"):
                break
            out[j, max(0, y - reveal):y + reveal + 1, max(0, x - reveal):x + reveal + 1] = True
            s[max(0, x - suppress):x + suppress + 1, max(0, y - suppress):y + suppress + 1] = float("-inf")
            taken[j, max(0, y - suppress):y + suppress + 1, max(0, x - suppress):x + suppress + 1] = True
    return out


def ripu_point_radius(width):
    """RIPU-PA's window radius k, scaled to the image width: 32 at Cityscapes' 2048 pixels, so k = 32 W / 2048
    rounded (3 at the synthetic 192; 16 at the 1024 of --preset paper), at least 1."""
    return max(1, round(32 * width / 2048))


def ripu_boxes(budget, height, width):
    """RIPU-RA's number of 3x3 boxes per image for a budget (a fraction of the pixels): ceil(H W budget / 9)."""
    return math.ceil(height * width * budget / 9) if budget > 0 else 0


def ripu_select(logits_a, budget=None, n_points=None, exclude=None, n_boxes=None):
    """RIPU on A's logits (B, C, H, W) at image size. With `budget` (a fraction of the pixels) or `n_boxes`, regions
    (RIPU-RA, k = 1): ripu_boxes(budget, H, W) (or n_boxes) boxes of 3x3 per image, each centre's 5x5 box
    suppressed. With `n_points`, points
    (RIPU-PA, k = ripu_point_radius(W)): n_points single pixels per image, each centre's (2k+1)^2 window
    suppressed. exclude: (B, H, W) bool, the pixels bought in earlier rounds; as in RIPU, the boxes suppressed then
    stay closed to centres (here: those pixels dilated by the suppression reach beyond the revealed box).
    Returns (B, H, W) bool."""
    b, _, h, w = logits_a.shape
    if budget is not None or n_boxes is not None:
        k, reveal, suppress = 1, 1, 2
        n = n_boxes if n_boxes is not None else ripu_boxes(budget, h, w)
    else:
        k = ripu_point_radius(w)
        reveal, suppress, n = 0, k, n_points
    score = ripu_scores(logits_a, k, regions=n_points is None)                   # (B, H, W)
    taken = torch.zeros(b, h, w, dtype=torch.bool, device=logits_a.device)
    if exclude is not None:
        grow = suppress - reveal
        taken = F.max_pool2d(exclude.float()[:, None], 2 * grow + 1, stride=1, padding=grow)[:, 0] > 0
    return _greedy_boxes(score, n, reveal, suppress, taken)


def margin_select(logits_a, n_per_image, exclude=None):
    """The classic margin baseline (Scheffer et al. 2001): the n_per_image pixels where A's two most likely classes
    are closest, the smallest m_i = p_i(1) - p_i(2), p_i(1) >= p_i(2) the two largest of softmax(logits_a)_i.
    logits_a: (B, C, H, W) at image size; exclude: (B, H, W) bool, never chosen. Returns (B, H, W) bool."""
    top2 = F.softmax(logits_a.float(), dim=1).topk(2, dim=1).values                   # (B, 2, H, W)
    return _top_per_image(top2[:, 1] - top2[:, 0], n_per_image, candidates=None if exclude is None else ~exclude)


# --------------------------------------------------------------------------------------------------------------
# The selectors, one entry each
# --------------------------------------------------------------------------------------------------------------

class Round(NamedTuple):
    """What a selector sees of a batch of target-train images in labelling round r of `rounds` (train.select_round
    fills it). Several rounds share the run's budget: a fraction is divided by `rounds`, a count split by share()."""
    logits_a: torch.Tensor    # (B, C, H, W) A's logits at image size
    heads: tuple              # (logits1, logits2, feat): B's two heads at image size and its features; None without B
    exclude: torch.Tensor     # (B, H, W) bool, bought in an earlier round (None in the first)
    seeds: list               # one seed per image, for random picks that do not depend on how images are batched
    budget: object            # the run's budget: a fraction of the pixels, or points per image (Selector.budget)
    r: int
    rounds: int
    options: dict             # the selectors' flags: spl_cap, ppl_cell, ppl_space


class Query(NamedTuple):
    """What a labelling round asks the annotator (train.choose): every target-train image's chosen pixels, with A's
    prediction there kept to count later which labels A required. Kept whole between choosing and buying, so a
    person can answer in between (--annotator label-studio: tools/label_studio.py)."""
    chosen: dict              # image index -> (H, W) bool, the pixels to ask for
    pred_a: dict              # image index -> (n,) uint8, A's prediction on them at selection time
    masks: dict               # image index -> (H, W) bool, the inconsistency masks (Eq. 4) of the figures' images


def share(total, r, rounds):
    """Round r's part of an integer budget split over `rounds`, the earlier rounds taking the remainder."""
    return total // rounds + (r < total % rounds)


class Selector(NamedTuple):
    select: Callable          # select(Round) -> (B, H, W) bool: the pixels to ask the annotator for
    needs_b: bool             # reads B's two heads: the run trains the pixel selector B (LabOR's Eq. 5-6)
    budget: str               # "fraction" of the pixels per image (--budget) or "points" per image (--points)
    kind: str                 # what it asks a person to do (cost.py): click "points" or outline "regions"
    style: tuple              # (marker, colour) in the figures
    default_budget: float = 0.022   # --budget when not given (the paper's SPL budget); None: SPL's whole mask


def _spl(q):
    logits1, logits2, _ = q.heads
    return spl_select(logits1, logits2, budget=None if q.budget is None else q.budget / q.rounds,
                      exclude=q.exclude, cap=q.options["spl_cap"], seeds=q.seeds)


def _ppl(q):
    logits1, logits2, feat = q.heads
    return ppl_select(logits1, logits2, share(q.budget, q.r, q.rounds), exclude=q.exclude,
                      feat=feat if q.options["ppl_space"] == "feat" else None, cell=q.options["ppl_cell"])


def _ripu_regions(q):   # the run's boxes, shared over its rounds
    total = ripu_boxes(q.budget, *q.logits_a.shape[-2:])
    return ripu_select(q.logits_a, n_boxes=share(total, q.r, q.rounds), exclude=q.exclude)


def _margin(q):
    return margin_select(q.logits_a, budget_to_pixels(q.budget / q.rounds, *q.logits_a.shape[-2:]), q.exclude)


# The order is the figures' (and the default order of a sweep's --selectors). Labels in tables and figures: the
# name with spaces ("ripu regions").
SELECTORS = {
    "random": Selector(lambda q: baseline_select("random", q.logits_a, q.budget / q.rounds, q.seeds, q.exclude),
                       False, "fraction", "points", ("x", "tab:gray")),
    "entropy": Selector(lambda q: baseline_select("entropy", q.logits_a, q.budget / q.rounds, q.seeds, q.exclude),
                        False, "fraction", "points", ("+", "tab:orange")),
    "spl": Selector(_spl, True, "fraction", "regions", ("o", "tab:blue"), default_budget=None),
    "ppl": Selector(_ppl, True, "points", "points", ("s", "tab:green")),
    "ripu_regions": Selector(_ripu_regions, False, "fraction", "regions", ("^", "tab:purple")),
    "ripu_points": Selector(lambda q: ripu_select(q.logits_a, n_points=share(q.budget, q.r, q.rounds),
                                                  exclude=q.exclude), False, "points", "points", ("v", "tab:pink")),
    "margin": Selector(_margin, False, "fraction", "points", ("*", "tab:brown")),
}
# Our variants of a selector, each a row of its own beside the paper's rule: key (a sweep's --selectors, the run
# folders) -> (selector, its flags, label, style).
VARIANTS = {"ppl-cell8": ("ppl", {"ppl_cell": 8}, "ppl, cell 8", ("D", "tab:olive"))}
# Full supervision buys every pixel of every image; what that costs a person is cost.py's "full" count.
EVERY_PIXEL = Selector(lambda q: torch.ones(len(q.logits_a), *q.logits_a.shape[-2:], dtype=torch.bool), False,
                       None, "full", None, default_budget=None)


def label(name):
    """A selector's name in tables and figures: 'ripu_regions' -> 'ripu regions'."""
    return name.replace("_", " ")


# --------------------------------------------------------------------------------------------------------------
# The modes: what each --mode of train.py does, one row each
# --------------------------------------------------------------------------------------------------------------

class Mode(NamedTuple):
    """What a --mode does in train.py's pipeline. Each selector of SELECTORS is a mode (LabOR's pipeline with that
    selector); MODES adds the modes that buy no labels, full supervision and RIPU as published."""
    selector: Selector = None     # what buys target labels (None: the mode buys none)
    source: bool = True           # A learns from the source labels (Eq. 1)
    adversarial: bool = True      # A fools D on target (Eq. 3): the run trains the discriminators
    rounds: tuple = None          # its own labelling rounds, as fractions of --iters (None: --schedule's)
    extra_loss: Callable = None   # a method's own terms on A's loss: (logits_s, y_s, logits_t, size_t) -> {name: (w, loss)}


# RIPU as published (Xie et al. 2022): its regions, five labelling rounds at 10k, 12k, ..., 18k of 40k iterations, its
# two losses on A and no discriminator; labor.ripu_losses.
RIPU_ROUNDS = (0.25, 0.30, 0.35, 0.40, 0.45)


def modes():
    """Every --mode, in --help's order (read when asked: a selector registered in SELECTORS is a mode at once)."""
    return {"source_only": Mode(adversarial=False), "adaptseg": Mode(), **{k: Mode(s) for k, s in SELECTORS.items()},
            "ripu": Mode(SELECTORS["ripu_regions"], adversarial=False, rounds=RIPU_ROUNDS,
                         extra_loss=labor.ripu_losses),
            "supervised": Mode(EVERY_PIXEL, source=False, adversarial=False, rounds=(0,))}


def shares_warmup(mode, schedule):
    """Staged runs that adapt A alone (Eq. 1, 3) before buying labels at the schedule's round, and adaptseg, which buys
    none, train one and the same warm-up for a seed: one run trains it (warmup.pt), the others may start from it."""
    m = modes()[mode]
    return schedule == "staged" and m.source and m.adversarial and m.rounds is None


# --------------------------------------------------------------------------------------------------------------
# Was the label required? What each bought label fixes
# --------------------------------------------------------------------------------------------------------------

class RequiredCounter:
    """Counts, over the pixels bought in one labelling round, where model A's prediction at selection time differs
    from the label the annotator revealed: the labels A *required*.

        required_fraction = #{bought i : y_i != A(x)_i} / #{bought i}        (pixels with y_i = 255 not counted)

    For random selection this is A's pixel error rate; a selector that finds the pixels that need a label scores
    higher. Per class c (of the revealed label): the share of bought pixels, and A's error rate on them. It reads
    only what the annotator returned, never the ground truth itself.
    """

    def __init__(self, num_classes):
        self.bought = torch.zeros(num_classes, dtype=torch.long)   # (C,) bought pixels per revealed class
        self.wrong = torch.zeros(num_classes, dtype=torch.long)    # (C,) of those, where A predicted another class

    def add(self, pred_a, label):
        """pred_a, label: (n,) A's prediction and the revealed label on the bought pixels of one image."""
        label, pred_a = label.long().flatten(), pred_a.long().flatten()
        valid = label != IGNORE_INDEX
        c = len(self.bought)
        self.bought += torch.bincount(label[valid], minlength=c)
        self.wrong += torch.bincount(label[valid & (pred_a != label)], minlength=c)

    def summary(self, classes):
        """A JSON-ready dict: required_fraction, bought_pixels, and per class share_of_bought and a_error_rate
        (None where the class was not bought)."""
        total = int(self.bought.sum())
        per_class = {name: {"share_of_bought": int(b) / max(total, 1),
                            "a_error_rate": (int(w) / int(b)) if b else None}
                     for name, b, w in zip(classes, self.bought, self.wrong)}
        return {"required_fraction": int(self.wrong.sum()) / max(total, 1), "bought_pixels": total,
                "a_wrong_pixels": int(self.wrong.sum()), "per_class": per_class}


def buy(annotator, revealed, chosen, pred_a, classes, keep=(), kind=None, seconds=None):
    """Ask the annotator for the chosen pixels of every image (once per image, in index order), keep the labels
    in `revealed` and count what they fix. chosen: {index: (H, W) bool}; pred_a: {index: (n,) A's prediction on
    those pixels at selection time}. Returns RequiredCounter's summary and, for the images in `keep`, (H, W) bool
    maps of the bought pixels where A was wrong. With `kind` ("points", "regions" or "full": cost.py), the summary
    also holds "annotation_seconds": what the asked pixels cost a person, per image of the round and per class,
    from the asked region and the revealed labels only (`seconds`: cost.image_seconds's constants)."""
    required, a_wrong, spent = RequiredCounter(len(classes)), {}, {}
    for i in sorted(chosen):
        y = annotator.annotate([i], chosen[i][None])[0]                                   # (H, W), 255 unbought
        revealed.add(i, y)
        required.add(pred_a[i], y[chosen[i]])
        if i in keep:
            a_wrong[i] = torch.zeros_like(chosen[i])
            a_wrong[i][chosen[i]] = (pred_a[i].long() != y[chosen[i]]) & (y[chosen[i]] != IGNORE_INDEX)
        if kind is not None and chosen[i].any():
            for c, t in cost.image_seconds(chosen[i].cpu().numpy(), y.cpu().numpy(), kind, **(seconds or {})).items():
                spent[c] = spent.get(c, 0.0) + t
    summary = required.summary(classes)
    if kind is not None:
        n = max(len(chosen), 1)
        summary["annotation_seconds"] = {"kind": kind, "per_image": sum(spent.values()) / n,
                                         "per_class": {name: spent.get(c, 0.0) / n for c, name in enumerate(classes)}}
    return summary, a_wrong


def label_spread(revealed, cell=8):
    """How spread out the bought pixels are (analysis; no label is read). Returns (blocks_per_label, nearest):
    the distinct cell x cell blocks of an image that its bought pixels touch, summed over images, per bought pixel
    (1.0: never two labels in a block; A predicts one value per 8x8 block), and the median, over bought pixels, of
    the distance in pixels to the nearest other bought pixel of the same image (images of over 4096 labels left
    out of it; None if no image has two; of an even count, the lower middle value)."""
    h, w = revealed.size
    block = _blocks(h, w, cell, "cpu")                                              # (HW,) block of each pixel
    blocks, labels, nearest = 0, 0, []
    for p in revealed.pixels.values():
        blocks += len(torch.unique(block[p]))
        labels += len(p)
        if 1 < len(p) <= 4096:
            yx = torch.stack([p // w, p % w], dim=1).double()                        # (n, 2)
            d = torch.cdist(yx, yx).fill_diagonal_(float("inf"))                      # (n, n)
            nearest.append(d.min(dim=1).values)
    return blocks / max(labels, 1), (torch.cat(nearest).median().item() if nearest else None)


# --------------------------------------------------------------------------------------------------------------
# The annotator
# --------------------------------------------------------------------------------------------------------------

class Annotator:
    """Reveals ground truth only where asked, and counts what it revealed.

    label_of(index) -> (H, W) long ground truth of target-train image `index`. The trainer never receives
    `label_of`, only the annotator: `annotate(indices, selection)` returns labels that are 255 outside the
    selection. Counters: pixels_revealed; over the DISTINCT images annotated (an image labelled in two rounds
    counts once): images_annotated, pixels_seen (their pixels), fraction_revealed, and points_per_image (pixels
    revealed per image, which for PPL is the number of clicked points).

    noise > 0 (not in the paper: --annotator-noise) makes it err where people err, at outlines: a revealed pixel
    within `band` pixels (Chebyshev) of another class gets, with probability `noise`, the most frequent other class
    of its (2 band + 1)^2 window instead (ties: the smallest class). The draws are seeded by (seed, image, how
    often the image was asked); wrong_labels counts the labels it got wrong.
    """

    def __init__(self, label_of, noise=0.0, band=1, seed=0):
        self._label_of = label_of
        self.noise, self.band, self.seed = noise, band, seed
        self.pixels_revealed = 0
        self.wrong_labels = 0
        self.image_pixels = {}  # index of each distinct image annotated -> its number of pixels
        self.asked = {}         # index -> how often it was asked (the noise's draws)

    def annotate(self, indices, selection):
        """indices: list of B ints; selection: (B, H, W) bool. Returns (B, H, W) long, 255 outside selection."""
        labels = torch.stack([torch.as_tensor(self._label_of(int(i))) for i in indices]).long()
        selection = selection.to(labels.device)
        if labels.shape != selection.shape:
            raise ValueError(f"selection {tuple(selection.shape)} does not match labels {tuple(labels.shape)}")
        revealed = torch.where(selection, labels, torch.full_like(labels, IGNORE_INDEX))
        if self.noise > 0:
            revealed = torch.stack([self._err(int(i), r, y, s) for i, r, y, s in zip(indices, revealed, labels,
                                                                                   selection)])
        self.pixels_revealed += int(selection.sum())
        for i in indices:
            self.image_pixels[int(i)] = labels.shape[-2] * labels.shape[-1]
            self.asked[int(i)] = self.asked.get(int(i), 0) + 1
        return revealed

    def _err(self, i, revealed, truth, selection):
        """revealed (H, W) with this image's slips at outlines (see the class docstring)."""
        other = outline_other_class(truth, self.band)                                  # (H, W), -1 off the band
        seed = int(np.random.SeedSequence([self.seed, i, self.asked.get(i, 0)]).generate_state(1)[0])
        flip = torch.rand(truth.shape, generator=torch.Generator().manual_seed(seed)) < self.noise
        flip &= selection & (other >= 0) & (truth != IGNORE_INDEX)
        self.wrong_labels += int(flip.sum())
        return torch.where(flip, other, revealed)

    @property
    def images_annotated(self):
        return len(self.image_pixels)

    @property
    def pixels_seen(self):
        return sum(self.image_pixels.values())

    @property
    def fraction_revealed(self):
        return self.pixels_revealed / max(1, self.pixels_seen)

    @property
    def points_per_image(self):
        return self.pixels_revealed / max(1, self.images_annotated)

    def state_dict(self):
        """The counters, as tensors (for checkpoints loaded with weights_only=True)."""
        keys = sorted(self.image_pixels)
        asked = sorted(self.asked)
        return {"pixels_revealed": self.pixels_revealed, "image_index": torch.tensor(keys, dtype=torch.long),
                "image_pixels": torch.tensor([self.image_pixels[k] for k in keys], dtype=torch.long),
                "wrong_labels": self.wrong_labels, "asked_index": torch.tensor(asked, dtype=torch.long),
                "asked_count": torch.tensor([self.asked[k] for k in asked], dtype=torch.long)}

    def load_state_dict(self, state):
        self.pixels_revealed = int(state["pixels_revealed"])
        self.image_pixels = dict(zip(state["image_index"].tolist(), state["image_pixels"].tolist()))
        self.wrong_labels = int(state.get("wrong_labels", 0))  # (saved before the noise existed: none)
        self.asked = dict(zip(state["asked_index"].tolist(), state["asked_count"].tolist())) \
            if "asked_index" in state else dict.fromkeys(self.image_pixels, 1)


def outline_other_class(labels, band=1):
    """For each pixel within `band` pixels (Chebyshev) of a pixel of another class (255 does not count), the most
    frequent other class in its (2 band + 1)^2 window (ties: the smallest class); -1 elsewhere. labels: (H, W)."""
    labels = labels.long()
    valid = labels != IGNORE_INDEX
    c = int(labels[valid].max()) + 1 if valid.any() else 1
    onehot = F.one_hot(torch.where(valid, labels, 0), c).permute(2, 0, 1).float() * valid        # (C, H, W)
    counts = F.conv2d(onehot[:, None], torch.ones(1, 1, 2 * band + 1, 2 * band + 1), padding=band)[:, 0]
    counts = counts.masked_fill(F.one_hot(torch.where(valid, labels, 0), c).permute(2, 0, 1).bool(), 0)
    best = counts.argmax(dim=0)                                                                   # (H, W)
    return torch.where(counts.amax(dim=0) > 0, best, torch.full_like(best, -1))


class RevealedLabels:
    """The target labels revealed so far, stored sparsely: for each target-train image, the flat indices of its
    labelled pixels and their labels. `batch(indices)` densifies them into (B, H, W) with 255 elsewhere: the
    y_t of Eq. 2. It holds only what the annotator returned, so it is safe to save and to give the trainer.
    """

    def __init__(self, size):
        self.size = tuple(size)               # (H, W) of the target-train labels
        self.pixels = {}                      # image index -> (n,) long flat pixel indices
        self.labels = {}                      # image index -> (n,) uint8 labels

    def add(self, index, revealed):
        """revealed: (H, W) long from Annotator.annotate, 255 where nothing was revealed. Merges with earlier rounds."""
        flat = revealed.flatten().cpu().clone()                         # (H*W,)
        if index in self.pixels:  # a later round: keep the earlier labels too
            flat[self.pixels[index]] = self.labels[index].long()
        idx = (flat != IGNORE_INDEX).nonzero().flatten()
        self.pixels[index], self.labels[index] = idx, flat[idx].to(torch.uint8)

    def batch(self, indices, device=None):
        out = torch.full((len(indices), self.size[0] * self.size[1]), IGNORE_INDEX, dtype=torch.long)
        for row, i in enumerate(indices):
            i = int(i)
            if i in self.pixels:
                out[row, self.pixels[i]] = self.labels[i].long()
        return out.reshape(len(indices), *self.size).to(device)

    def mask(self, indices, device=None):
        """(B, H, W) bool: which pixels of these images are already labelled (to exclude them in later rounds)."""
        return self.batch(indices, device) != IGNORE_INDEX

    def num_pixels(self):
        return sum(int(v.numel()) for v in self.pixels.values())

    def state_dict(self):
        """Plain tensors only (loadable with torch.load(weights_only=True))."""
        keys = sorted(self.pixels)
        return {"size": list(self.size),
                "image_index": torch.tensor([k for k in keys for _ in range(len(self.pixels[k]))], dtype=torch.long),
                "pixel_index": torch.cat([self.pixels[k] for k in keys]) if keys else torch.zeros(0, dtype=torch.long),
                "label": torch.cat([self.labels[k] for k in keys]) if keys else torch.zeros(0, dtype=torch.uint8)}

    @classmethod
    def from_state_dict(cls, state):
        out = cls(state["size"])
        for i in state["image_index"].unique().tolist():
            sel = state["image_index"] == i
            out.pixels[i], out.labels[i] = state["pixel_index"][sel], state["label"][sel]
        return out

    def masks(self):
        """(H, W) bool of the labelled pixels of each image, in the order of self.pixels."""
        out = []
        for i in self.pixels:
            m = torch.zeros(self.size[0] * self.size[1], dtype=torch.bool)
            m[self.pixels[i]] = True
            out.append(m.reshape(self.size))
        return out
