"""Checks for the course exercises (notebooks/06_exercises.ipynb, the student copy that otter-grader makes from
notebooks/course/exercises.ipynb). Each runs a student's function on fixed random and edge-case inputs and compares
its outputs with the project's, recorded in exercise_expected_public.pt (the hidden checks: a second draw of every
input, recorded in exercise_expected_hidden.pt, which only the autograder holds). It imports torch and numpy only,
so a student copy runs without labor.py, selection.py, models.py or train.py in reach.

    import exercise_checks as ex
    ex.check("seg_loss", seg_loss)         # prints one line per case that differs; True when every case agrees
    ex.verify("seg_loss", seg_loss)        # the same cases; raises AssertionError listing the differences (otter)
    python notebooks/exercise_checks.py --record     # rewrite both expected files from the project's functions

A stub that raises NotImplementedError reads "not implemented yet". tests/test_exercises.py checks that every check
passes with the project's own functions, that the recorded files match them, and that typical wrong answers fail.
"""
import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
C = 5              # classes in the checks' small inputs
IGNORE = 255
HIDDEN_SEED = 1000  # the hidden checks draw every random input again, with seeds shifted by this


class Case(NamedTuple):
    what: str                                   # shown to the student
    run: Callable                               # run(*functions) -> output (the student's or the reference's)
    compare: Optional[Callable] = None          # compare(got, want, extra) -> '' or what differs; default: equal
    extra: Optional[Callable] = None            # extra(project) -> what compare needs, recorded with the reference


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


def _points(got, want, extra):
    """PPL's outputs, compared so that the student sees what is wrong: how many points per image, how many
    outside the inconsistency mask, how many per class, then (when no tie leaves the choice open) the first point
    that differs. extra = (mask, the class of each pixel under pbar, whether distances tie at the cut)."""
    mask, cls, tied = extra
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != want.shape:
        return describe(got, want)
    msgs = []
    for j in range(len(want)):
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


def _random_pixels(got, want, extra):
    """random_select is checked by its properties: its draws may differ from ours. extra: the excluded pixels."""
    if (d := _same_count_per_image(got, want)):
        return d
    return f"{int((got & extra).sum())} excluded pixels chosen" if extra is not None and (got & extra).any() else ""


# ---------------------------------------------------------------------------------------------- inputs

def _g(seed):
    return torch.Generator().manual_seed(seed)


def _logits(seed, b=2, c=C, h=6, w=8, scale=3.0):
    return scale * torch.randn(b, c, h, w, generator=_g(seed))                         # (B, C, H, W)


def _labels(seed, b=2, h=12, w=16, ignore=0.3):
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
        Case("labels at 2x the logits' size, some 255", lambda f: f(_logits(s + 1), _labels(s + 2))),
        Case("labels at the logits' size", lambda f: f(_logits(s + 3), _labels(s + 4, h=6, w=8))),
        Case("one class only", lambda f: f(_logits(s + 5), torch.zeros(2, 12, 16, dtype=torch.long))),
        Case("no labelled pixel: exactly 0", lambda f: f(_logits(s + 6), empty)),
        Case("no labelled pixel: zero gradient", lambda f: _grad_of(f, _logits(s + 6), empty)),
    ]


def adv_cases(s):
    d_s, d_t = torch.randn(2, 1, 3, 4, generator=_g(s + 7)), torch.randn(2, 1, 3, 4, generator=_g(s + 8))
    return [Case(f"generator, gan={gan}", lambda g, d, gan=gan: g(d_t, gan=gan)) for gan in ("vanilla", "ls")] + \
        [Case(f"discriminator, gan={gan}", lambda g, d, gan=gan: d(d_s, d_t, gan=gan)) for gan in ("vanilla", "ls")]


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
    theta = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9])
    low = torch.tensor([0.1, 0.15, 0.2, 0.25, 0.3])      # below 0.5: a second class may reach its threshold too
    return [
        Case("iast_update, random batch", lambda u, p, l: u(prob, theta)),
        Case("iast_update, a class absent", lambda u, p, l: u(absent, theta)),
        Case("iast_update, 6 pixels (a percentile between two of them)", lambda u, p, l: u(few, theta, alpha=0.9,
                                                                                           beta=0.5, gamma=1.0)),
        Case("iast_update, confident pixels, thresholds at 0.999, beta 0.5", lambda u, p, l: u(
            sure, torch.full((C,), 0.999), beta=0.5)),
        Case("pseudo_labels", lambda u, p, l: p(prob, theta)),
        Case("pseudo_labels, thresholds below 0.5 (only the argmax class counts)", lambda u, p, l: p(prob, low)),
        Case("pseudo_labels, every pixel below its threshold", lambda u, p, l: p(prob, torch.full((C,), 0.999))),
        Case("pseudo_label_loss", lambda u, p, l: l(_logits(s + 13), _logits(s + 14), _labels(s + 15, h=6, w=8))),
    ]


def _times_c(got, want, extra=None):
    """describe, and a word when the value is C times the expected one (a sum over the classes)."""
    d = describe(got, want)
    if d and isinstance(got, (torch.Tensor, float)) and abs(float(got) - C * float(want)) < 1e-4 * C:
        d += f" = {C} x the expected: Eq. 6 takes the mean over the C classes too, 1/(NC)"
    return d


def discrepancy_cases(s):
    one = _logits(s + 16, c=1)
    return [Case("random heads", lambda f: f(_logits(s + 17), _logits(s + 18)), _times_c),
            Case("identical heads: 0", lambda f: f(_logits(s + 19), _logits(s + 19))),
            Case("one class", lambda f: f(one, -one))]


def spl_cases(s):
    a, b, same = _logits(s + 20, h=10, w=12), _logits(s + 21, h=10, w=12), _logits(s + 22, h=10, w=12)
    ex = torch.rand(2, 10, 12, generator=_g(s + 23)) < 0.5
    # 0.013 and 0.018 of 120 pixels are 1.56 and 2.16: to nearest 2 and 2, rounded down 1, rounded up 3
    cases = [Case(f"budget_to_pixels({f}, 10, 12)", lambda sel, btp, f=f: btp(f, 10, 12))
             for f in (0.0, 0.001, 0.013, 0.018, 0.1, 0.5, 1.0)]
    return cases + [
        Case("whole mask", lambda sel, btp: sel(a, b)),
        Case("identical heads: nothing", lambda sel, btp: sel(same, same.clone())),
        Case("with pixels excluded", lambda sel, btp: sel(a, b, exclude=ex)),
        Case("capped at 10%, most discrepant", lambda sel, btp: sel(a, b, budget=0.1, cap="discrepancy")),
        Case("capped at 10%, random (seeds 1, 2)", lambda sel, btp: sel(a, b, budget=0.1, cap="random",
                                                                         seeds=[1, 2])),
    ]


def _ppl_extra(l1, l2, n):
    """What _points needs, from the project: the mask, the class of each pixel, and whether a tie at some
    class's cut leaves the choice of points open (then only counts, mask and classes are compared)."""
    def extra(project):
        sel = project.selection
        mask = sel.inconsistency_mask(l1, l2)
        pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
        cls = pbar.argmax(dim=1)
        tied = False
        for j in range(len(l1)):
            counts = torch.bincount(cls[j][mask[j]], minlength=C)
            for k, a in enumerate(sel.allocate_points(counts, n).tolist()):
                if 0 < a < int(counts[k]):
                    z = pbar[j].flatten(1)[:, (mask[j] & (cls[j] == k)).flatten()].t()
                    d = (z - z.mean(0, keepdim=True)).norm(dim=1).sort().values
                    tied |= bool(d[a - 1] == d[a])
        return mask, cls, tied
    return extra


def ppl_cases(s):
    a, b = _logits(s + 24, h=10, w=12, scale=1.0), _logits(s + 25, h=10, w=12, scale=1.0)
    one = torch.zeros(1, C, 10, 12)
    one[:, 0] = 5.0
    one2 = one.clone()
    one2[:, 0, :5] = -5.0                                 # the heads disagree on the top half; one class under pbar
    cases = [Case(f"allocate_points({c}, {n})", lambda sel, alloc, c=c, n=n: alloc(torch.tensor(c), n))
             for c, n in (([5, 0, 1, 10], 7), ([0, 0, 0], 4), ([3, 3, 3], 2), ([1, 2], 40), ([4, 9, 6], 5))]
    return cases + [
        Case("40 points", lambda sel, alloc: sel(a, b, 40), _points, _ppl_extra(a, b, 40)),
        Case("5 points", lambda sel, alloc: sel(a, b, 5), _points, _ppl_extra(a, b, 5)),
        Case("identical heads: no point", lambda sel, alloc: sel(a, a.clone(), 40), _points, _ppl_extra(a, a, 40)),
        Case("one class in the mask, all at the same distance (any 3 of them)", lambda sel, alloc: sel(one, one2, 3),
             _points, _ppl_extra(one, one2, 3)),
    ]


def baseline_cases(s):
    ex = torch.zeros(2, 6, 8, dtype=torch.bool)
    ex[:, :3] = True
    flat = torch.zeros(2, C, 6, 8)                       # every pixel equally uncertain: ties
    return [
        Case("random_select: shape, dtype, 7 per image", lambda r, e: r((2, 6, 8), 7, _g(s + 1)), _random_pixels),
        Case("random_select: never an excluded pixel", lambda r, e: r((2, 6, 8), 20, _g(s + 2), ex), _random_pixels,
             lambda project: ex),
        Case("entropy_select", lambda r, e: e(_logits(s + 26), 5)),
        Case("entropy_select, with pixels excluded", lambda r, e: e(_logits(s + 27), 5, exclude=ex)),
        Case("entropy_select, all tied: any 5 per image", lambda r, e: e(flat, 5), _same_count_per_image),
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
        return out, a.pixels_revealed, a.images_annotated

    def dense(batch):
        idx = sel[0].flatten().nonzero().flatten()
        revealed = RevealedScaffold((4, 5), {1: idx}, {1: truth[1].flatten()[idx].to(torch.uint8)})
        return batch(revealed, [1, 0, 1])

    return [Case("annotate: labels revealed (255 elsewhere), pixels counted, images counted once",
                 lambda annotate, batch: labels_and_counts(annotate)),
            Case("batch: an image with labels, one without, one twice", lambda annotate, batch: dense(batch))]


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
    """runs.autocast: mixed precision when args.amp_dtype is set (never in these checks)."""
    return torch.autocast(args.device.type, dtype=args.amp_dtype, enabled=args.amp_dtype is not None)


def selector_step_cases(s):
    """step(args, B, opt_b, theta, x_t, logits_a, scaler) as train.selector_step: one step of B, then its weights,
    losses and thresholds; and that Eq. 6 pushes the heads apart without reaching the backbone. B's forward is the
    student's exercise 11, the helpers their exercises 1, 4 and 5 (the reference's when recording)."""
    args = argparse.Namespace(device=torch.device("cpu"), amp_dtype=None, lambda_dis=1.0, iast_alpha=0.2,
                              iast_beta=0.9, iast_gamma=8.0)
    x = torch.rand(2, 3, 32, 64, generator=_g(s + 37))
    logits_a = 4.0 * torch.randn(2, C, 4, 8, generator=_g(s + 38))

    def one_step(step, forward, lambda_dis=1.0):
        B = _selector(forward, s)
        opt = torch.optim.SGD(B.parameters(), lr=0.02)
        a = argparse.Namespace(**{**vars(args), "lambda_dis": lambda_dis})
        losses, theta = step(a, B, opt, torch.full((C,), 0.9), x, logits_a, torch.amp.GradScaler(enabled=False))
        return B, losses, theta

    def discrepancy(B):
        with torch.no_grad():
            p1, p2 = (F.softmax(o, dim=1) for o in B(x)[:2])
        return float((p1 - p2).abs().mean())

    def apart(step, forward):
        return discrepancy(one_step(step, forward, 4.0)[0]) > discrepancy(one_step(step, forward, 0.0)[0])

    def backbone_same(step, forward):
        a, b = one_step(step, forward, 4.0)[0], one_step(step, forward, 0.0)[0]
        return all(torch.equal(p, q) for p, q in zip(a.stem.parameters(), b.stem.parameters()))

    return [
        Case("B's weights after one step", lambda step, fwd: [p.detach() for p in one_step(step, fwd)[0].parameters()]),
        Case("losses and thresholds returned", lambda step, fwd: (lambda _, l, t: [l["loss_pseudo"], l["loss_dis"],
                                                                                   l["pseudo_fraction"], t])(
            *one_step(step, fwd))),
        Case("lambda_dis > 0 pushes the heads further apart than lambda_dis = 0", apart),
        Case("Eq. 6 leaves the backbone as it is", backbone_same),
    ]


# The exercises of notebooks/README.md, in order: name -> (its cases, how many functions the student gives).
EXERCISES = {
    "seg_loss": seg_loss_cases, "adv_losses": adv_cases, "inconsistency_mask": mask_cases, "iast": iast_cases,
    "discrepancy": discrepancy_cases, "spl": spl_cases, "ppl": ppl_cases, "baselines": baseline_cases,
    "annotator": annotator_cases, "aspp": aspp_cases, "pixel_selector": selector_cases,
    "discriminator": discriminator_cases, "selector_step": selector_step_cases,
}

def _upsampling_hint(found):
    """seg_loss right at the logits' size but not at 2x: the upsampling differs."""
    whats = [w for w, _ in found]
    if "labels at 2x the logits' size, some 255" in whats and "labels at the logits' size" not in whats:
        return [("upsampling", "only the upsampled case differs: upsample as the text says, F.interpolate(..., "
                               "mode='bilinear', align_corners=False) (the project's labor.upsample)")]
    return []


def _cases(name, hidden):
    return EXERCISES[name](HIDDEN_SEED if hidden else 0)


def expected_file(hidden=False):
    return HERE / f"exercise_expected_{'hidden' if hidden else 'public'}.pt"


_LOADED = {}


def _expected(hidden):
    path = expected_file(hidden)
    if path not in _LOADED:
        if not path.exists():
            raise FileNotFoundError(f"{path.name} is missing: the checks compare with the outputs recorded there "
                                    f"(python notebooks/exercise_checks.py --record writes it)")
        _LOADED[path] = torch.load(path, weights_only=True)
    return _LOADED[path]


def differences(name, *functions, hidden=False, expected=None):
    """[(case, what differs)] for the student's functions; [] when every case agrees. None: not implemented yet."""
    expected = _expected(hidden) if expected is None else expected
    found = []
    for case in _cases(name, hidden):
        want, extra = expected[f"{name}/{case.what}"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):      # a student's prints would bury the report
                got = case.run(*functions)
        except NotImplementedError:
            return None
        except Exception as e:  # noqa: BLE001 (a student's error is what the check reports)
            found.append((case.what, f"raised {type(e).__name__}: {e}"[:300]))
            continue
        if (d := (case.compare or (lambda g, w, e: describe(g, w)))(got, want, extra)):
            found.append((case.what, d))
    return found + (_upsampling_hint(found) if name == "seg_loss" else [])


# What an exercise's function calls from earlier exercises (by the names the notebook gives them).
USES = {"selector_step": {"seg_loss": "seg_loss", "iast_update": "iast", "pseudo_labels": "iast",
                          "pseudo_label_loss": "iast", "discrepancy": "discrepancy"}}


def _failing_dependencies(name, functions):
    """The earlier exercises that `name`'s function uses and that fail their own public check."""
    scope = getattr(functions[0], "__globals__", {})
    uses = {}
    for fn_name, exercise in USES.get(name, {}).items():
        if fn_name in scope:
            uses.setdefault(exercise, []).append(scope[fn_name])
    failing = []
    for exercise, fns in uses.items():
        given = [scope.get(n) for n in _ARGUMENTS[exercise]]
        if any(g is None for g in given) or differences(exercise, *given):
            failing.append(exercise)
    return failing


_ARGUMENTS = {"seg_loss": ["seg_loss"], "iast": ["iast_update", "pseudo_labels", "pseudo_label_loss"],
              "discrepancy": ["discrepancy"]}


def report(name, *functions, hidden=False):
    """(passed, text): one line per case that differs, and a last line that sums up."""
    found = differences(name, *functions, hidden=hidden)
    if found is None:
        return False, f"{name}: not implemented yet"
    if found and (failing := _failing_dependencies(name, functions)):
        found.append(("uses", f"your {', '.join(failing)} (an earlier exercise) fails its own check: fix it first"))
    n = len(_cases(name, hidden))
    lines = [f"  {name} [{what}]: {d}" for what, d in found]
    lines.append(f"{name}: {'every case agrees' if not found else 'see the differences above'} ({n} case{'s' * (n > 1)}"
                 f"{', hidden draw' if hidden else ''})")
    return not found, "\n".join(lines)


def check(name, *functions, hidden=False):
    """Run exercise `name`'s cases on the student's function(s); prints the differences; True when all agree."""
    ok, text = report(name, *functions, hidden=hidden)
    print(text)
    return ok


def verify(name, *functions, hidden=False):
    """As check, for otter's test cells: raises AssertionError with the differences unless every case agrees."""
    ok, text = report(name, *functions, hidden=hidden)
    if not ok:
        raise AssertionError("\n" + text)


# ---------------------------------------------------------------------------------------------- recording

def reference():
    """The project's functions for each exercise (imported here only: the checks themselves need none of them)."""
    sys.path.insert(0, str(HERE.parent))
    import labor
    import models
    import selection
    import train
    return argparse.Namespace(labor=labor, selection=selection, models=models, train=train, answers={
        "seg_loss": (labor.seg_loss,),
        "adv_losses": (labor.adv_generator_loss, labor.adv_discriminator_loss),
        "inconsistency_mask": (selection.inconsistency_mask,),
        "iast": (labor.iast_update, labor.pseudo_labels, labor.pseudo_label_loss),
        "discrepancy": (labor.discrepancy,),
        "spl": (selection.spl_select, selection.budget_to_pixels),
        "ppl": (selection.ppl_select, selection.allocate_points),
        "baselines": (selection.random_select, selection.entropy_select),
        "annotator": (selection.Annotator.annotate, selection.RevealedLabels.batch),
        "aspp": (models.ASPP.forward,),
        "pixel_selector": (models.PixelSelector.forward,),
        "discriminator": (lambda c, ndf=64: models.FCDiscriminator(c, ndf).net,),
        "selector_step": (train.selector_step, models.PixelSelector.forward),
    })


def record(hidden, project=None):
    """{name/case: (the reference's output, extra)} for every case of every exercise."""
    project = project or reference()
    out = {}
    for name in EXERCISES:
        for case in _cases(name, hidden):
            want = case.run(*project.answers[name])
            out[f"{name}/{case.what}"] = (_detached(want), case.extra(project) if case.extra else None)
    return out


def _detached(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        return type(x)(_detached(v) for v in x)
    return x


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Record the project's outputs on the exercises' inputs.")
    p.add_argument("--record", action="store_true", help="rewrite exercise_expected_{public,hidden}.pt")
    if p.parse_args().record:
        torch.set_num_threads(1)
        for h in (False, True):
            torch.save(record(h), expected_file(h))
            print(f"wrote {expected_file(h)}")
