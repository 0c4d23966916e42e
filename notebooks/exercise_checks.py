"""Checks for the course exercises of notebooks/06_exercises.ipynb (the source; `otter assign` makes the student
copy, dist/student/06_exercises.ipynb, which imports this file). Each check runs a student's function on fixed
random and edge-case inputs, and only then reads the project's outputs on them, recorded in
exercise_expected_public.pt, to say case by case what differs. It holds no answer and imports torch and numpy only,
so a student copy runs without labor.py, selection.py, models.py or train.py in reach.

    import exercise_checks as ex
    ex.check("seg_loss", seg_loss)           # prints one line per case that differs; True when every case agrees
    ex.verify("seg_loss", seg_loss)          # the same cases; raises AssertionError listing the differences
    python notebooks/autograder/record.py    # re-record the outputs after a change to the project moved them

The notebook's tests do not use the module a student imported (which the student may have changed): they run
this file afresh (runpy.run_path) for every check. The hidden checks (autograder/hidden_checks.py, in the
autograder zip only) run the same cases on inputs drawn from the seed recorded in the autograder's own
exercise_expected_hidden.pt. A stub that raises NotImplementedError reads "not implemented yet".
"""
import argparse
import contextlib
import io
import runpy
import types
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
C = 5              # classes in the checks' small inputs
IGNORE = 255
PUBLIC = HERE / "exercise_expected_public.pt"


class Case(NamedTuple):
    what: str                                   # shown to the student
    run: Callable                               # run(*functions) -> output (the student's or the project's)
    compare: Optional[Callable] = None          # compare(got, want, extra) -> '' or what differs; default: equal
    extra: Optional[tuple] = None               # (name, args): what compare needs, recorded by autograder/record.py
    part: Optional[str] = None                  # the function it grades, where an exercise has several


# ---------------------------------------------------------------------------------------------- comparing outputs

def describe(got, want):
    """'' when equal (tensors: allclose), else what differs, in words."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected {len(want)} outputs, got {type(got).__name__}"
        for k, (g, w) in enumerate(zip(got, want)):
            if (d := describe(g, w)):
                return f"output {k}: {d}"
        return ""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {type(got).__name__} {got!r}"[:200]
        got, want = got.detach(), want.detach()
        if tuple(got.shape) != tuple(want.shape):
            return f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if want.dtype == torch.bool or got.dtype == torch.bool:
            if got.dtype != want.dtype:
                return f"dtype {got.dtype}, expected {want.dtype}"
            n = int((got != want).sum())
            return f"{n} of {want.numel()} entries differ" if n else ""
        if not want.is_floating_point() and want.numel() <= 20:      # small integer outputs: show both
            return "" if torch.equal(got.long(), want.long()) else f"got {got.tolist()}, expected {want.tolist()}"
        if torch.isnan(got.float()).any() and not torch.isnan(want.float()).any():
            return f"NaN in the output (expected {want.flatten()[:3].tolist()}...)"
        if not torch.allclose(got.double(), want.double(), rtol=1e-4, atol=1e-6, equal_nan=True):
            diff = (got.double() - want.double()).abs()
            at = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), want.shape))
            return (f"values differ: largest difference {float(diff.max()):.3g} at index {at} "
                    f"(got {float(got.flatten()[diff.argmax()]):.5g}, expected "
                    f"{float(want.flatten()[diff.argmax()]):.5g})")
        return ""
    if isinstance(want, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        return "" if isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * max(1.0, abs(want)) else \
            f"got {got!r}, expected {want!r}"
    return "" if got == want else f"got {got!r}, expected {want!r}"


def _equal(got, want, extra=None):
    return describe(got, want)


def _points(got, want, extra):
    """PPL's outputs, compared so that the student sees what is wrong: points on excluded pixels, how many points
    per image, how many outside the inconsistency mask, how many per class, then (when no tie leaves the choice
    open) the first point that differs. extra = (the inconsistency mask, the class of each pixel under pbar,
    whether distances tie at some class's cut, the excluded pixels or None): recorded from the project."""
    mask, cls, tied, excluded = extra
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != want.shape:
        return describe(got, want)
    msgs = []
    for j in range(len(want)):
        if excluded is not None and (on := int((got[j] & excluded[j]).sum())):
            msgs.append(f"image {j}: {on} point{'s' * (on > 1)} on excluded pixels: your selection ignores "
                        f"`exclude` (those pixels are labelled already)")
        n_got, n_want = int(got[j].sum()), int(want[j].sum())
        if n_got != n_want:
            msgs.append(f"image {j}: {n_got} points, expected {n_want}")
        if (out := int((got[j] & ~mask[j]).sum())):
            msgs.append(f"image {j}: {out} point{'s' * (out > 1)} outside the inconsistency mask")
        per_got = torch.bincount(cls[j][got[j]], minlength=C).tolist()
        per_want = torch.bincount(cls[j][want[j]], minlength=C).tolist()
        if per_got != per_want:
            msgs.append(f"image {j}: points per class {per_got}, expected {per_want}")
    if not msgs and not tied and not torch.equal(got, want):
        j, y, x = (got != want).nonzero()[0].tolist()
        msgs.append(f"the first point that differs: image {j}, row {y}, column {x} ({'taken' if got[j, y, x] else 'not taken'}"
                    f", expected {'taken' if want[j, y, x] else 'not taken'}): the nearest to the prototype?")
    return "; ".join(msgs)


def _same_count_per_image(got, want, extra=None):
    """Ties leave the choice open: the number of pixels per image (and the dtype) must agree."""
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != want.shape:
        return describe(got, want)
    got_n, want_n = got.flatten(1).sum(1).tolist(), want.flatten(1).sum(1).tolist()
    return "" if got_n == want_n else f"pixels per image {got_n}, expected {want_n}"


def _random_pixels(excluded=None):
    """random_select is checked by its properties: its draws may differ from ours."""
    def compare(got, want, extra=None):
        if (d := _same_count_per_image(got, want)):
            return d
        return f"{int((got & excluded).sum())} excluded pixels chosen" if excluded is not None and \
            (got & excluded).any() else ""
    return compare


def _pair(same):
    """Two selections drawn with generators of the same seed (same=True) or of two seeds (same=False)."""
    def compare(got, want, extra=None):
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return describe(got, want)
        if (d := _same_count_per_image(got[0], want[0]) or _same_count_per_image(got[1], want[1])):
            return d
        if same and not torch.equal(got[0], got[1]):
            return ("same generator, different draws: your selection ignores `generator` (draw with it: "
                    "torch.rand(..., generator=generator) or torch.randperm(..., generator=generator))")
        if not same and torch.equal(got[0], got[1]):
            return ("two generators with different seeds, the same pixels: your selection ignores `generator` "
                    "(or is not random)")
        return ""
    return compare


def _uniform(allowed, n, draws):
    """How often each pixel was chosen over `draws` independent draws of n of the allowed pixels: never an
    excluded one, and every allowed one about draws * n / |allowed| times (within 5.5 standard deviations)."""
    p = n / int(allowed.sum())
    mean, sd = draws * p, (draws * p * (1 - p)) ** 0.5

    def compare(got, want, extra=None):
        if not isinstance(got, torch.Tensor) or got.shape != allowed.shape:
            return describe(got, want)
        if (bad := int(got[~allowed].sum())):
            return f"{bad} draws of excluded pixels"
        lo, hi = int(got[allowed].min()), int(got[allowed].max())
        if lo < mean - 5.5 * sd or hi > mean + 5.5 * sd:
            return (f"not uniform: over {draws} draws each allowed pixel was chosen between {lo} and {hi} times, "
                    f"expected about {mean:.0f} (every allowed pixel equally likely)")
        return ""
    return compare


def _labels(got, want, extra=None):
    """Pseudo-labels: describe, and which rule a difference points to."""
    d = describe(got, want)
    if d and isinstance(got, torch.Tensor) and got.shape == want.shape:
        kept = int(((got != IGNORE) & (want == IGNORE)).sum())
        other = int(((got != want) & (got != IGNORE) & (want != IGNORE)).sum())
        if kept:
            d += (f"; {kept} pixels labelled where the expected is 255: a pixel keeps its argmax class k* only if its "
                  f"confidence reaches that class's threshold theta[k*] (not any class's own threshold)")
        if other:
            d += f"; {other} pixels labelled with another class than their argmax"
    return d


def _annotated(got, want, extra=None):
    """annotate's case: the labels, then the counters, with a word on image_pixels."""
    if not isinstance(got, (tuple, list)) or len(got) != len(want):
        return describe(got, want)
    if (d := describe(list(got[:3]), list(want[:3]))):
        return d
    try:
        pixels = {int(k): int(v) for k, v in dict(got[3]).items()}
    except (TypeError, ValueError):
        pixels = got[3]
    if pixels != want[3]:
        return (f"image_pixels {pixels}, expected {want[3]}: image_pixels[i] is the number of pixels of image i "
                f"(H x W), however many of them were revealed")
    return ""


def _times_c(got, want, extra=None):
    """describe, and a word when the value is C times the expected one (a sum over the classes)."""
    d = describe(got, want)
    if d and isinstance(got, (torch.Tensor, float)) and abs(float(got) - C * float(want)) < 1e-4 * C:
        d += f" = {C} x the expected: Eq. 6 takes the mean over the C classes too, 1/(NC)"
    return d


# ---------------------------------------------------------------------------------------------- inputs

def _g(seed):
    return torch.Generator().manual_seed(seed)


def _logits(seed, b=2, c=C, h=6, w=8, scale=3.0):
    return scale * torch.randn(b, c, h, w, generator=_g(seed))                         # (B, C, H, W)


def _labels_map(seed, b=2, h=12, w=16, ignore=0.3):
    y = torch.randint(C, (b, h, w), generator=_g(seed))
    y[torch.rand(b, h, w, generator=_g(seed + 1)) < ignore] = IGNORE
    return y                                                                            # (B, H, W)


def _grad_of(f, logits, y):
    x = logits.clone().requires_grad_(True)
    f(x, y).backward()
    return x.grad


# ---------------------------------------------------------------------------------------------- the cases

def seg_loss_cases(s):
    empty = torch.full((2, 12, 16), IGNORE)
    return [
        Case("labels at 2x the logits' size, some 255", lambda f: f(_logits(s + 1), _labels_map(s + 2))),
        Case("labels at the logits' size", lambda f: f(_logits(s + 3), _labels_map(s + 4, h=6, w=8))),
        Case("one class only", lambda f: f(_logits(s + 5), torch.zeros(2, 12, 16, dtype=torch.long))),
        Case("no labelled pixel: exactly 0", lambda f: f(_logits(s + 6), empty)),
        Case("no labelled pixel: zero gradient", lambda f: _grad_of(f, _logits(s + 6), empty)),
    ]


def adv_cases(s):
    d_s, d_t = torch.randn(2, 1, 3, 4, generator=_g(s + 7)), torch.randn(2, 1, 3, 4, generator=_g(s + 8))
    return [Case(f"generator, gan={gan}", lambda g, d, gan=gan: g(d_t, gan=gan), part="adv_generator_loss")
            for gan in ("vanilla", "ls")] + \
        [Case(f"discriminator, gan={gan}", lambda g, d, gan=gan: d(d_s, d_t, gan=gan), part="adv_discriminator_loss")
         for gan in ("vanilla", "ls")]


def mask_cases(s):
    tied = torch.zeros(1, C, 2, 3)
    tied[:, 1:3] = 1.0                                   # classes 1 and 2 tie everywhere: argmax takes the first
    return [Case("random heads", lambda f: f(_logits(s + 10), _logits(s + 11))),
            Case("identical heads: empty mask", lambda f: f(_logits(s + 9), _logits(s + 9))),
            Case("tied scores in both heads", lambda f: f(tied, tied.clone()))]


def iast_cases(s):
    prob = F.softmax(_logits(s + 12, scale=4.0), dim=1)
    absent = prob.clone()
    absent[:, 4] = 0.0                                   # class 4 never predicted: its threshold must not move
    absent = absent / absent.sum(dim=1, keepdim=True)
    few = F.softmax(_logits(s + 16, b=1, h=2, w=3, scale=2.0), dim=1)    # 6 pixels: the percentile interpolates
    sure = F.softmax(_logits(s + 17, scale=40.0), dim=1)                 # confidences of 1.0: the cap at 0.999
    one = torch.full((1, C, 1, C), 0.7 / (C - 1))        # pixel k: class k at 0.3, each other class at 0.175
    one[0, torch.arange(C), 0, torch.arange(C)] = 0.3
    # thresholds at most 0.5: the percentile (near 100) of [0.3, theta_c] is about theta_c with any rule, and 0.3
    # without theta_c
    theta_one = torch.tensor([0.42, 0.44, 0.46, 0.48, 0.5]) - 0.02 * torch.rand(C, generator=_g(s + 18))
    theta = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9])
    low = torch.tensor([0.1, 0.15, 0.2, 0.25, 0.3])      # below 0.5: a second class may reach its threshold too
    high0 = torch.tensor([0.97, 0.04, 0.04, 0.04, 0.04])  # class 0's pixels fall below it; the others' reach theirs
    u, p, lo = "iast_update", "pseudo_labels", "pseudo_label_loss"
    return [
        Case("iast_update, random batch", lambda u_, p_, l_: u_(prob, theta), part=u),
        Case("iast_update, a class absent", lambda u_, p_, l_: u_(absent, theta), part=u),
        Case("iast_update, 6 pixels (a percentile between two of them)", lambda u_, p_, l_: u_(
            few, theta, alpha=0.9, beta=0.5, gamma=1.0), part=u),
        Case("iast_update, one pixel per class, below its threshold (theta_c is one of the values)",
             lambda u_, p_, l_: u_(one, theta_one), part=u),
        Case("iast_update, confident pixels, thresholds at 0.999, beta 0.5", lambda u_, p_, l_: u_(
            sure, torch.full((C,), 0.999), beta=0.5), part=u),
        Case("pseudo_labels", lambda u_, p_, l_: p_(prob, theta), _labels, part=p),
        Case("pseudo_labels, thresholds below 0.5 (only the argmax class counts)", lambda u_, p_, l_: p_(prob, low),
             _labels, part=p),
        Case("pseudo_labels, class 0's threshold high, the others' low (only the argmax class's threshold counts)",
             lambda u_, p_, l_: p_(prob, high0), _labels, part=p),
        Case("pseudo_labels, every pixel below its threshold", lambda u_, p_, l_: p_(prob, torch.full((C,), 0.999)),
             _labels, part=p),
        Case("pseudo_label_loss", lambda u_, p_, l_: l_(_logits(s + 13), _logits(s + 14),
                                                        _labels_map(s + 15, h=6, w=8)), part=lo),
    ]


def discrepancy_cases(s):
    one = _logits(s + 16, c=1)
    return [Case("random heads", lambda f: f(_logits(s + 17), _logits(s + 18)), _times_c),
            Case("identical heads: 0", lambda f: f(_logits(s + 19), _logits(s + 19))),
            Case("one class", lambda f: f(one, -one))]


def _budgets(s):
    """An image size and budgets: 0, a budget under one pixel, two whose pixel counts round to the nearest integer
    differently from down and up, and 10%, 50%, 100%. Seed 0: 0.013 and 0.018 of 120 pixels are 1.56 and 2.16, to
    the nearest 2 and 2, rounded down 1 and 2, rounded up 2 and 3."""
    if s == 0:
        return (10, 12), (0.0, 0.001, 0.013, 0.018, 0.1, 0.5, 1.0)
    h, w = (int(v) for v in torch.randint(8, 16, (2,), generator=_g(s + 41)))
    k1, k2 = (int(v) for v in torch.randint(1, h * w // 4, (2,), generator=_g(s + 42)))
    n = h * w
    return (h, w), (0.0, round(0.3 / n, 6), round((k1 + 0.6) / n, 6), round((k2 + 0.2) / n, 6), 0.1, 0.5, 1.0)


def _allocations(s):
    """allocate_points' cases: (counts, n). Seed 0: fixed ones; else drawn alike."""
    if s == 0:
        return (([5, 0, 1, 10], 7), ([0, 0, 0], 4), ([3, 3, 3], 2), ([1, 2], 40), ([4, 9, 6], 5))
    r = [int(v) for v in torch.randint(0, 13, (16,), generator=_g(s + 43))]
    first = [r[0], 0, r[1] + 1, r[2]]
    return ((first, 3 + r[3]), ([0, 0, 0], 1 + r[4] % 8), ([1 + r[5] % 5] * 4, 1 + r[6] % 3),
            ([r[7] % 3, 1 + r[8] % 3], 40),
            ([3 + r[9], 16 + r[10], 3 + r[11]], 3 * (1 + r[12] % 2) + 1 + r[13] % 2))   # leftovers: the largest


def spl_cases(s):
    a, b, same = _logits(s + 20, h=10, w=12), _logits(s + 21, h=10, w=12), _logits(s + 22, h=10, w=12)
    ex = torch.rand(2, 10, 12, generator=_g(s + 23)) < 0.5
    (h, w), fractions = _budgets(s)
    cases = [Case(f"budget_to_pixels({f}, {h}, {w})", lambda sel, btp, f=f: btp(f, h, w), part="budget_to_pixels")
             for f in fractions]
    return cases + [Case(what, run, part="spl_select") for what, run in [
        ("whole mask", lambda sel, btp: sel(a, b)),
        ("identical heads: nothing", lambda sel, btp: sel(same, same.clone())),
        ("with pixels excluded", lambda sel, btp: sel(a, b, exclude=ex)),
        ("capped at 10%, most discrepant", lambda sel, btp: sel(a, b, budget=0.1, cap="discrepancy")),
        ("capped at 10%, random (seeds 1, 2)", lambda sel, btp: sel(a, b, budget=0.1, cap="random", seeds=[1, 2])),
    ]]


def ppl_cases(s):
    a, b = _logits(s + 24, h=10, w=12, scale=1.0), _logits(s + 25, h=10, w=12, scale=1.0)
    ex = torch.rand(2, 10, 12, generator=_g(s + 28)) < 0.4
    one = torch.zeros(1, C, 10, 12)
    one[:, 0] = 5.0
    one2 = one.clone()
    one2[:, 0, :5] = -5.0                                 # the heads disagree on the top half; one class under pbar
    cases = [Case(f"allocate_points({c}, {n})", lambda sel, alloc, c=c, n=n: alloc(torch.tensor(c), n),
                  part="allocate_points")
             for c, n in _allocations(s)]
    return cases + [Case(what, run, _points, ("ppl", args), part="ppl_select") for what, run, args in [
        ("40 points", lambda sel, alloc: sel(a, b, 40), (a, b, 40, None)),
        ("5 points", lambda sel, alloc: sel(a, b, 5), (a, b, 5, None)),
        ("12 points, with pixels excluded", lambda sel, alloc: sel(a, b, 12, exclude=ex), (a, b, 12, ex)),
        ("identical heads: no point", lambda sel, alloc: sel(a, a.clone(), 40), (a, a, 40, None)),
        ("one class in the mask, all at the same distance (any 3 of them)", lambda sel, alloc: sel(one, one2, 3),
         (one, one2, 3, None)),
    ]]


def baseline_cases(s):
    ex = torch.zeros(2, 6, 8, dtype=torch.bool)
    ex[:, :3] = True
    flat = torch.zeros(2, C, 6, 8)                       # every pixel equally uncertain: ties
    allowed = torch.ones(6, 8, dtype=torch.bool)
    allowed[::2, 1::2] = False                           # a checkerboard of excluded pixels in one image

    def counts(r, draws=400):
        total = torch.zeros(6, 8, dtype=torch.long)
        for k in range(draws):
            total += r((1, 6, 8), 6, _g(s + 100 + k), ~allowed[None]).long()[0]
        return total

    r_ = "random_select"
    return [
        Case("random_select: shape, dtype, 7 per image", lambda r, e: r((2, 6, 8), 7, _g(s + 1)), _random_pixels(),
             part=r_),
        Case("random_select: never an excluded pixel", lambda r, e: r((2, 6, 8), 20, _g(s + 2), ex),
             _random_pixels(ex), part=r_),
        Case("random_select: two generators of the same seed, the same pixels",
             lambda r, e: (r((2, 6, 8), 7, _g(s + 3)), r((2, 6, 8), 7, _g(s + 3))), _pair(same=True), part=r_),
        Case("random_select: generators of two seeds, other pixels",
             lambda r, e: (r((2, 6, 8), 7, _g(s + 3)), r((2, 6, 8), 7, _g(s + 4))), _pair(same=False), part=r_),
        Case("random_select: every allowed pixel equally likely (400 draws)", lambda r, e: counts(r),
             _uniform(allowed, 6, 400), part=r_),
        Case("entropy_select", lambda r, e: e(_logits(s + 26), 5), part="entropy_select"),
        Case("entropy_select, with pixels excluded", lambda r, e: e(_logits(s + 27), 5, exclude=ex),
             part="entropy_select"),
        Case("entropy_select, all tied: any 5 per image", lambda r, e: e(flat, 5), _same_count_per_image,
             part="entropy_select"),
    ]


# The project's classes without the methods the exercises ask for: the student's method is put in its place.
class AnnotatorScaffold:
    """selection.Annotator's state: _label_of(i) the truth, pixels_revealed, image_pixels {index: its pixels}."""

    def __init__(self, label_of):
        self._label_of, self.noise, self.pixels_revealed, self.image_pixels, self.asked = label_of, 0.0, 0, {}, {}

    @property
    def images_annotated(self):
        return len(self.image_pixels)


class RevealedScaffold:
    """selection.RevealedLabels' state: size (H, W), pixels {index: flat indices}, labels {index: their labels}."""

    def __init__(self, size, pixels, labels):
        self.size, self.pixels, self.labels = tuple(size), pixels, labels


def annotator_cases(s):
    truth = {i: torch.randint(C, (4, 5), generator=_g(s + 30 + i)) for i in range(3)}
    sel = torch.rand(2, 4, 5, generator=_g(s + 33)) < 0.4

    def labels_and_counts(annotate):
        a = type("Annotator", (AnnotatorScaffold,), {"annotate": annotate})(lambda i: truth[i])
        out = a.annotate([0, 2], sel)
        a.annotate([2], torch.zeros(1, 4, 5, dtype=torch.bool))
        return out, a.pixels_revealed, a.images_annotated, dict(a.image_pixels)

    def dense(batch):
        idx = sel[0].flatten().nonzero().flatten()
        revealed = RevealedScaffold((4, 5), {1: idx}, {1: truth[1].flatten()[idx].to(torch.uint8)})
        return batch(revealed, [1, 0, 1])

    return [Case("annotate: labels revealed (255 elsewhere), pixels counted, images counted once, image_pixels",
                 lambda annotate, batch: labels_and_counts(annotate), _annotated, part="annotate"),
            Case("batch: an image with labels, one without, one twice", lambda annotate, batch: dense(batch),
                 part="batch")]


class ASPPScaffold(nn.Module):
    """models.ASPP's layers: four 3x3 convs, dilations 6, 12, 18, 24 (its forward is the exercise)."""

    def __init__(self, cin, classes, seed):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, classes, 3, padding=d, dilation=d) for d in (6, 12, 18, 24))
        g = _g(seed)
        for p in self.parameters():
            p.data = 0.1 * torch.randn(p.shape, generator=g)


def aspp_cases(s):
    x = torch.randn(2, 8, 30, 30, generator=_g(s + 34))
    return [Case("all four branches, summed",
                 lambda fwd: type("ASPP", (ASPPScaffold,), {"forward": fwd})(8, C, s + 35)(x))]


class SelectorScaffold(nn.Module):
    """models.PixelSelector's parts: backbone(x) -> (low, feat) at stride 4, head1 and head2 (1x1 convs here),
    heads(feat) -> (head1(feat), head2(feat)). Its forward is exercise 11's."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head1, self.head2 = nn.Conv2d(8, C, 1), nn.Conv2d(8, C, 1)
        self.backbone = lambda x: (None, self.stem(x))

    def heads(self, feat):
        return self.head1(feat), self.head2(feat)


def _selector(forward, seed):
    return type("PixelSelector", (SelectorScaffold,), {"forward": forward})(seed)


def selector_cases(s):
    x = torch.rand(2, 3, 32, 64, generator=_g(s + 35))

    def backbone_grad_from_detached_heads(net):
        net.zero_grad(set_to_none=True)
        *_, d1, d2 = net(x, heads_on_detached=True)
        (d1.sum() + d2.sum()).backward()
        return sum(float(p.grad.abs().sum()) for p in net.stem.parameters() if p.grad is not None)

    return [Case("logits of both heads and the features", lambda fwd: _selector(fwd, s)(x)),
            Case("heads_on_detached=True: five outputs", lambda fwd: _selector(fwd, s)(x, heads_on_detached=True)),
            Case("the detached heads send no gradient to the backbone",
                 lambda fwd: backbone_grad_from_detached_heads(_selector(fwd, s)))]


def discriminator_cases(s):
    prob = F.softmax(torch.randn(2, C, 64, 64, generator=_g(s + 36)), dim=1)

    def output(layers):
        net = layers(C, 4)
        g = _g(s + 37)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        return net(prob)

    return [Case("parameter shapes", lambda layers: [tuple(p.shape) for p in layers(C, 4).parameters()]),
            Case("output on a softmax map: logits (B, 1, h/32, w/32)", output)]


def seeded_scores(seeds, height, width):
    """selection.seeded_scores: uniform scores in [0, 1), image j's drawn with its own seeds[j]. (B, H, W)."""
    return torch.stack([torch.rand((height, width), generator=_g(s)) for s in seeds])


def autocast(args):
    """Mixed precision when args.amp_dtype is set (never in these checks), as the project's trainer does."""
    return torch.autocast(args.device.type, dtype=args.amp_dtype, enabled=args.amp_dtype is not None)


def selector_step_cases(s):
    """step(args, B, opt_b, theta, x_t, logits_a, scaler) as train.selector_step: B's weights, losses and
    thresholds after one step, and after two steps with one optimiser; and that Eq. 6 pushes the heads apart
    without reaching the backbone. B's forward is the student's exercise 11, the helpers their exercises 1, 4 and
    5 (in the autograder: the reference's, so that a slip there is not charged twice)."""
    args = argparse.Namespace(device=torch.device("cpu"), amp_dtype=None, lambda_dis=1.0, iast_alpha=0.2,
                              iast_beta=0.9, iast_gamma=8.0)
    x = torch.rand(2, 3, 32, 64, generator=_g(s + 37))
    logits_a = 4.0 * torch.randn(2, C, 4, 8, generator=_g(s + 38))
    x2 = torch.rand(2, 3, 32, 64, generator=_g(s + 39))
    logits_a2 = 4.0 * torch.randn(2, C, 4, 8, generator=_g(s + 40))

    def steps(step, forward, lambda_dis=1.0, n=1):
        B = _selector(forward, s)
        opt = torch.optim.SGD(B.parameters(), lr=0.02)
        a = argparse.Namespace(**{**vars(args), "lambda_dis": lambda_dis})
        theta = torch.full((C,), 0.9)
        for x_t, l_a in [(x, logits_a), (x2, logits_a2)][:n]:
            losses, theta = step(a, B, opt, theta, x_t, l_a, torch.amp.GradScaler(enabled=False))
        return B, losses, theta

    def spread(B):
        """How far apart the heads' softmax maps are: their mean squared difference (not Eq. 6 itself)."""
        with torch.no_grad():
            p1, p2 = (F.softmax(o, dim=1) for o in B(x)[:2])
        return float(((p1 - p2) ** 2).mean())

    def apart(step, forward):
        return spread(steps(step, forward, 4.0)[0]) > spread(steps(step, forward, 0.0)[0])

    def backbone_same(step, forward):
        a, b = steps(step, forward, 4.0)[0], steps(step, forward, 0.0)[0]
        return all(torch.equal(p, q) for p, q in zip(a.stem.parameters(), b.stem.parameters()))

    return [
        Case("B's weights after one step", lambda step, fwd: [p.detach() for p in steps(step, fwd)[0].parameters()]),
        Case("losses and thresholds returned", lambda step, fwd: (lambda _, l, t: [l["loss_pseudo"], l["loss_dis"],
                                                                                   l["pseudo_fraction"], t])(
            *steps(step, fwd))),
        Case("B's weights after two steps with one optimiser", lambda step, fwd: [
            p.detach() for p in steps(step, fwd, n=2)[0].parameters()]),
        Case("lambda_dis > 0 pushes the heads further apart than lambda_dis = 0", apart),
        Case("Eq. 6 leaves the backbone as it is", backbone_same),
    ]


# The exercises of notebooks/README.md, in order: name -> its cases (seed -> [Case]).
EXERCISES = {
    "seg_loss": seg_loss_cases, "adv_losses": adv_cases, "inconsistency_mask": mask_cases, "iast": iast_cases,
    "discrepancy": discrepancy_cases, "spl": spl_cases, "ppl": ppl_cases, "baselines": baseline_cases,
    "annotator": annotator_cases, "aspp": aspp_cases, "pixel_selector": selector_cases,
    "discriminator": discriminator_cases, "selector_step": selector_step_cases,
}

# The functions each exercise's check takes, in order (the names the notebook gives them).
ARGUMENTS = {"seg_loss": ["seg_loss"], "adv_losses": ["adv_generator_loss", "adv_discriminator_loss"],
             "inconsistency_mask": ["inconsistency_mask"],
             "iast": ["iast_update", "pseudo_labels", "pseudo_label_loss"], "discrepancy": ["discrepancy"],
             "spl": ["spl_select", "budget_to_pixels"], "ppl": ["ppl_select", "allocate_points"],
             "baselines": ["random_select", "entropy_select"], "annotator": ["annotate", "batch"],
             "aspp": ["aspp_forward"], "pixel_selector": ["pixel_selector_forward"],
             "discriminator": ["discriminator_layers"], "selector_step": ["selector_step", "pixel_selector_forward"]}


def parts(name):
    """The parts an exercise is graded by (its functions, where they are independent), or [None]."""
    found = []
    for case in EXERCISES[name](0):
        if case.part not in found:
            found.append(case.part)
    return found


# ---------------------------------------------------------------------------------------------- hints

def _hints(name, found):
    """A word on the likely mistake, from which cases differ."""
    whats = {w for w, _ in found}
    if name == "seg_loss" and "labels at 2x the logits' size, some 255" in whats and \
            "labels at the logits' size" not in whats:
        return [("upsampling", "only the upsampled case differs: upsample as the text says, F.interpolate(..., "
                               "mode='bilinear', align_corners=False) (the project's labor.upsample)")]
    if name == "iast":
        if "iast_update, one pixel per class, below its threshold (theta_c is one of the values)" in whats:
            return [("theta_c", "conf_c is the confidences of the pixels predicted c WITH theta_c appended: the "
                                "percentile is taken over both (a class with one pixel has two values)")]
        if "iast_update, 6 pixels (a percentile between two of them)" in whats:
            return [("percentile", "the percentile interpolates linearly between the two nearest values, as "
                                   "torch.quantile and numpy.percentile do (not the nearest rank)")]
    if name == "selector_step" and "B's weights after two steps with one optimiser" in whats and \
            "B's weights after one step" not in whats:
        return [("zero_grad", "the first step agrees, the second differs: call opt_b.zero_grad() before the "
                              "backward pass (else the gradients of the step before add up)")]
    return []


# ---------------------------------------------------------------------------------------------- running a check

def _load(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: the checks compare with the outputs recorded there "
                                f"(python notebooks/autograder/record.py writes it)")
    return torch.load(path, weights_only=True)


def _seed(path):
    """The seed the recorded file's inputs were drawn with (its outputs are not kept)."""
    return int(_load(path)["seed"])


def _outputs(name, functions, seed, part):
    """Runs the student's functions on every case (of `part`): [(case, (True, output) or (False, its error))], or
    None when a stub is not implemented yet. No expected value is read here, nor held by any caller."""
    out = []
    for case in EXERCISES[name](seed):
        if part is not None and case.part != part:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):      # a student's prints would bury the report
                out.append((case, (True, case.run(*functions))))
        except NotImplementedError:
            return None
        except Exception as e:  # noqa: BLE001 (a student's error is what the check reports)
            out.append((case, (False, f"raised {type(e).__name__}: {e}"[:300])))
    return out


def _compare(name, outputs, path):
    """[(case, what differs)], reading the recorded outputs only now."""
    expected = _load(path)["cases"]
    found = []
    for case, (ran, got) in outputs:
        if not ran:
            found.append((case.what, got))
            continue
        want, extra = expected[f"{name}/{case.what}"]
        if (d := (case.compare or _equal)(got, want, extra)):
            found.append((case.what, d))
    return found


def _rebound(fn, helpers):
    """fn with the names in `helpers` looked up there instead of in fn's own module (the notebook)."""
    if not isinstance(fn, types.FunctionType):
        return fn
    g = dict(fn.__globals__)
    g.update(helpers)
    new = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    return new


def autograder_helpers():
    """The reference's functions of exercises 1, 4, 5 and 11 where the autograder's files are (grading), else None
    (a student copy: exercise 13 then runs with the student's own)."""
    path = HERE / "autograder" / "reference.py"
    return runpy.run_path(str(path))["HELPERS"] if path.exists() else None


def differences(name, *functions, part=None, expected=PUBLIC, helpers=None):
    """[(case, what differs)] for the student's functions; [] when every case agrees; None: not implemented yet.
    helpers (exercise 13): {name: function} that its step calls instead of the student's, or "autograder"."""
    if isinstance(helpers, str):
        helpers = autograder_helpers()
    if name == "selector_step" and helpers:
        step, forward = functions
        functions = (_rebound(step, helpers), helpers.get("pixel_selector_forward", forward))
    outputs = _outputs(name, functions, _seed(expected), part)
    if outputs is None:
        return None
    found = _compare(name, outputs, expected)
    return found + _hints(name, found)


# What an exercise's function calls from earlier exercises (by the names the notebook gives them).
USES = {"selector_step": ["seg_loss", "iast", "discrepancy"]}


def _failing_dependencies(name, functions):
    """The earlier exercises that `name`'s function uses and that fail their own public check."""
    scope = getattr(functions[0], "__globals__", {})
    failing = []
    for exercise in USES.get(name, []):
        given = [scope.get(n) for n in ARGUMENTS[exercise]]
        if all(g is None for g in given):
            continue                                     # (not used under these names)
        if any(g is None for g in given) or differences(exercise, *given):
            failing.append(exercise)
    return failing


def report(name, *functions, part=None, expected=PUBLIC, helpers=None, label=""):
    """(passed, text): one line per case that differs, and a last line that sums up."""
    if isinstance(helpers, str):
        helpers = autograder_helpers()
    found = differences(name, *functions, part=part, expected=expected, helpers=helpers)
    title = name if part is None else f"{name}: {part}"
    if found is None:
        return False, f"{title}: not implemented yet"
    if found and not helpers and (failing := _failing_dependencies(name, functions)):
        found.append(("uses", f"your {', '.join(failing)} (an earlier exercise) fails its own check: fix it first"))
    n = sum(part is None or c.part == part for c in EXERCISES[name](0))
    lines = [f"  {title} [{what}]: {d}" for what, d in found]
    lines.append(f"{title}: {'every case agrees' if not found else 'see the differences above'} ({n} case"
                 f"{'s' * (n > 1)}{', ' + label if label else ''})")
    return not found, "\n".join(lines)


def check(name, *functions, part=None, expected=PUBLIC, helpers=None, label=""):
    """Run exercise `name`'s cases on the student's function(s); prints the differences; True when all agree."""
    ok, text = report(name, *functions, part=part, expected=expected, helpers=helpers, label=label)
    print(text)
    return ok


def verify(name, *functions, part=None, expected=PUBLIC, helpers=None, label=""):
    """As check, for otter's test cells: raises AssertionError with the differences unless every case agrees."""
    ok, text = report(name, *functions, part=part, expected=expected, helpers=helpers, label=label)
    if not ok:
        raise AssertionError("\n" + text)
