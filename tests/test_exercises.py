"""The course exercises: notebooks/06_exercises.ipynb (otter-grader's source notebook: stubs, solutions, public and
hidden checks with points, model answers), notebooks/exercise_checks.py (the checks: no answer in them),
notebooks/autograder/ (the hidden checks, the reference's helpers, the hidden draw, record.py, the autograder's
requirements) and notebooks/grade_exercises.py (grading).

Fast: the recorded outputs are the project's; every check passes with the project's functions, the notebook's
solutions and correct alternatives; each wrong answer, the subtle ones included, fails its check (public and
hidden) with a message that names the mistake; exercise 13 is graded with the reference's helpers; the checks run
with no project module in reach, from folders whose names contain "labor" too; the shipped checks hold no answer.
Slow (needs requirements-course.txt): otter makes the student copy and the autograder; the grader gives the
solutions full marks, the stubs zero, each set of wrong answers exactly the points of the parts it breaks, and
each tampering attempt no hidden point; the autograder's own requirements install an environment that grades."""
import importlib.util
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import venv
import zipfile
from argparse import Namespace
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
AUTOGRADER = NOTEBOOKS / "autograder"
NOTEBOOK = NOTEBOOKS / "06_exercises.ipynb"
import labor  # noqa: E402
import selection  # noqa: E402

RECORD = Namespace(**runpy.run_path(str(AUTOGRADER / "record.py")))
ex = RECORD.checks()                                                   # exercise_checks.py, as the tests load it
HIDDEN = Namespace(**runpy.run_path(str(AUTOGRADER / "hidden_checks.py")))
REFERENCE = runpy.run_path(str(AUTOGRADER / "reference.py"))["HELPERS"]
PROJECT = RECORD.reference()


def quiet(fn, *a, **k):
    out = io.StringIO()
    with redirect_stdout(out):
        ok = fn(*a, **k)
    return ok, out.getvalue()


def both(name, *functions, part=None):
    """(passed public, passed hidden, what both printed)."""
    ok1, p1 = quiet(ex.check, name, *functions, part=part)
    ok2, p2 = quiet(HIDDEN.check, name, *functions, part=part)
    return ok1, ok2, p1 + p2


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
def test_the_recorded_outputs_are_the_projects(hidden):
    """exercise_expected_public.pt and autograder/exercise_expected_hidden.pt hold what the project's functions
    give today (a change to labor.py, selection.py, models.py or train.py that moves an output must be followed by
    `python notebooks/autograder/record.py`); the hidden draw has a seed of its own and other inputs."""
    path = HIDDEN.HIDDEN if hidden else ex.PUBLIC
    recorded = torch.load(path, weights_only=True)
    now = RECORD.record(recorded["seed"], PROJECT, ex)
    assert recorded["cases"].keys() == now["cases"].keys()
    stale = [k for k in now["cases"] if ex.describe(list(recorded["cases"][k]), list(now["cases"][k]))]
    assert not stale, f"re-record: python notebooks/autograder/record.py ({stale[:3]})"
    if hidden:
        public = torch.load(ex.PUBLIC, weights_only=True)
        assert recorded["seed"] != public["seed"] == 0
        key = "seg_loss/labels at the logits' size"
        assert ex.describe(now["cases"][key][0], public["cases"][key][0])


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_every_check_passes_with_the_reference(name):
    ok1, ok2, printed = both(name, *PROJECT.answers[name])
    assert ok1 and ok2, printed


def test_the_autograders_helpers_are_the_references():
    """autograder/reference.py's functions (exercise 13 runs with them when graded) pass their exercises' checks."""
    for name, fns in (("seg_loss", ["seg_loss"]), ("iast", ["iast_update", "pseudo_labels", "pseudo_label_loss"]),
                      ("discrepancy", ["discrepancy"]), ("pixel_selector", ["pixel_selector_forward"])):
        ok1, ok2, printed = both(name, *[REFERENCE[f] for f in fns])
        assert ok1 and ok2, printed


# ---------------------------------------------------------------------------------------------- wrong answers

def _argmax_without_dim(l1, l2):
    return l1.argmax() != l2.argmax()


def _discrepancy_summed_over_classes(l1, l2):
    return (F.softmax(l1, dim=1) - F.softmax(l2, dim=1)).abs().sum(dim=1).mean()


def _seg_loss_as_mean_over_all_pixels(logits, labels, ignore_index=255):
    up = labor.upsample(logits, labels.shape[-2:])
    loss = F.cross_entropy(up, labels.clamp(max=up.shape[1] - 1), reduction="none")
    return (loss * (labels != ignore_index)).mean()  # divides by every pixel, not the labelled ones


def _generator_flipped(d, gan="vanilla"):
    return labor._gan_criterion(d, labor.TARGET_LABEL, gan)  # A rewarded for looking like target


def _aspp_two_branches(self, x):
    return self.branches[0](x) + self.branches[1](x)  # AdaptSegNet's slip


def _selector_not_detached(self, x, heads_on_detached=False):
    _, feat = self.backbone(x)
    l1, l2 = self.heads(feat)
    return (l1, l2, feat) if not heads_on_detached else (l1, l2, feat, l1, l2)


def _selector_step_wrong_sign(args, B, opt_b, theta, x_t, logits_a, scaler):
    flipped = type(args)(**{**vars(args), "lambda_dis": -args.lambda_dis})
    return PROJECT.train.selector_step(flipped, B, opt_b, theta, x_t, logits_a, scaler)


def _annotate_everything(self, indices, sel):
    return selection.Annotator.annotate(self, indices, torch.ones_like(sel))


def _layers_with_sigmoid(c, ndf=64):
    return torch.nn.Sequential(*PROJECT.models.FCDiscriminator(c, ndf).net, torch.nn.Sigmoid())


def _iast(percentile=None, cap=True):
    """labor.iast_update with another percentile rule, or without the 0.999 cap."""
    def update(prob, theta, alpha=labor.IAST_ALPHA, beta=labor.IAST_BETA, gamma=labor.IAST_GAMMA):
        conf, pred = prob.max(dim=1)
        new = theta.clone()
        for c in range(len(theta)):
            conf_c = torch.cat([conf[pred == c], theta[c:c + 1]])
            q = float(1.0 - alpha * theta[c] ** gamma)
            if percentile == "nearest rank":
                psi = conf_c.sort().values[max(0, int(torch.tensor(q * len(conf_c)).ceil()) - 1)]
            else:
                psi = torch.quantile(conf_c, q)
            new[c] = beta * theta[c] + (1 - beta) * psi
            if cap:
                new[c] = new[c].clamp(max=0.999)
        return new
    return update


def _pseudo_labels_any_class(prob, theta, ignore_index=255):
    """'a class whose probability reaches its threshold' (the first such class), not the argmax's."""
    reach = prob >= theta[None, :, None, None]                                  # (B, C, H, W)
    first = reach.float().argmax(dim=1)
    return torch.where(reach.any(dim=1), first, torch.full_like(first, ignore_index))


def _budget(rounding):
    return lambda b, h, w: (max(1, int(rounding(b * h * w))) if b > 0 else 0)


def _allocate(order):
    """allocate_points with the leftovers given by another order: 'index' (lowest first) or 'smallest'."""
    def allocate(counts, n):
        alloc = torch.zeros_like(counts)
        remaining = int(min(n, int(counts.sum())))
        while remaining > 0:
            room = counts - alloc
            open_classes = (room > 0).nonzero().flatten()
            share = max(1, remaining // len(open_classes))
            order_ = open_classes if order == "index" else open_classes[room[open_classes].argsort(stable=True)]
            for k in order_:
                give = min(share, int(room[k]), remaining)
                alloc[k] += give
                remaining -= give
                if remaining == 0:
                    break
        return alloc
    return allocate


def _ppl_random_mask_pixels(l1, l2, n=40, exclude=None):
    return selection.spl_select(l1, l2, budget=n / l1[0, 0].numel(), exclude=exclude, seeds=[0] * len(l1))


def _ppl_farthest(l1, l2, n=40, exclude=None):
    """The pixels farthest from the prototype: the same count per image and class, inside the mask."""
    mask = selection.inconsistency_mask(l1, l2)
    pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
    out = torch.zeros_like(mask)
    for j in range(len(l1)):
        cls = torch.where(mask[j], pbar[j].argmax(0), -1)
        alloc = selection.allocate_points(torch.bincount(cls[cls >= 0], minlength=l1.shape[1]), n)
        for k in alloc.nonzero().flatten().tolist():
            idx = (cls.flatten() == k).nonzero().flatten()
            z = pbar[j].flatten(1)[:, idx].t()
            far = (z - z.mean(0)).norm(dim=1).argsort(descending=True)[:int(alloc[k])]
            out[j].view(-1)[idx[far]] = True
    return out


def _ppl_outside_the_mask(l1, l2, n=40, exclude=None):
    """The project's points, each moved one pixel right: off the mask, often."""
    return torch.roll(selection.ppl_select(l1, l2, n, exclude=exclude), 1, dims=-1)


def _random_ignoring_generator(shape, n_per_image, generator=None, exclude=None):
    return selection.random_select(shape, n_per_image, None, exclude)          # the global generator


def _random_first_allowed(shape, n_per_image, generator=None, exclude=None):
    """The first n allowed pixels in raster order: no draw at all."""
    allowed = torch.ones(shape, dtype=torch.bool) if exclude is None else ~exclude
    order = torch.arange(allowed[0].numel()).expand(shape[0], -1).float()
    return selection._top_per_image(-order.reshape(shape), n_per_image, allowed)


def _ppl_ignoring_exclude(l1, l2, n=40, exclude=None):
    return selection.ppl_select(l1, l2, n)


def _selector_step_without_zero_grad(args, B, opt_b, theta, x_t, logits_a, scaler):
    opt_b.zero_grad = lambda *a, **k: None                       # the step as the project's, less zero_grad
    return PROJECT.train.selector_step(args, B, opt_b, theta, x_t, logits_a, scaler)


def _annotate_counting_revealed(self, indices, sel):
    """image_pixels read as 'the pixels revealed in image i'."""
    out = selection.Annotator.annotate(self, indices, sel)
    for row, i in enumerate(indices):
        self.image_pixels[int(i)] = int(sel[row].sum())
    return out


def _pseudo_labels_any_own_threshold(prob, theta, ignore_index=255):
    """The argmax class, kept where ANY class reaches its own threshold."""
    pred = prob.argmax(dim=1)
    keep = (prob >= theta[None, :, None, None]).any(dim=1)
    return torch.where(keep, pred, torch.full_like(pred, ignore_index))


def _iast_without_theta(prob, theta, alpha=labor.IAST_ALPHA, beta=labor.IAST_BETA, gamma=labor.IAST_GAMMA):
    """The percentile over the pixels' confidences alone (theta_c not appended; an absent class keeps theta_c)."""
    conf, pred = prob.max(dim=1)
    new = theta.clone()
    for c in range(len(theta)):
        if (pred == c).any():
            psi = torch.quantile(conf[pred == c], float(1.0 - alpha * theta[c] ** gamma))
            new[c] = torch.clamp(beta * theta[c] + (1 - beta) * psi, max=0.999)
    return new


_L = (labor.iast_update, labor.pseudo_labels, labor.pseudo_label_loss)
# exercise -> [(what is wrong, its functions, a word the message must contain, the one part it fails)]
WRONG = {
    "seg_loss": [("the mean over all pixels, labelled or not", (_seg_loss_as_mean_over_all_pixels,), "differ", None)],
    "adv_losses": [("A's loss with the target label (a flipped sign)",
                    (_generator_flipped, labor.adv_discriminator_loss), "differ", "adv_generator_loss")],
    "inconsistency_mask": [("argmax without dim", (_argmax_without_dim,), "shape", None)],
    "iast": [("the thresholds never updated", (lambda prob, theta, *a, **k: theta.clone(), *_L[1:]), "differ",
              "iast_update"),
             ("no min(..., 0.999) cap", (_iast(cap=False), *_L[1:]), "0.999", "iast_update"),
             ("nearest-rank percentile", (_iast("nearest rank"), *_L[1:]), "6 pixels", "iast_update"),
             ("theta_c not appended to conf_c", (_iast_without_theta, *_L[1:]), "WITH theta_c appended",
              "iast_update"),
             ("the first class reaching its threshold, not the argmax's", (_L[0], _pseudo_labels_any_class, _L[2]),
              "below 0.5", "pseudo_labels"),
             ("kept where any class reaches its own threshold", (_L[0], _pseudo_labels_any_own_threshold, _L[2]),
              "that class's threshold", "pseudo_labels")],
    "discrepancy": [("summed over classes instead of the mean", (_discrepancy_summed_over_classes,), "1/(NC)", None)],
    "spl": [("the pixels already bought chosen again (exclude ignored)",
             (lambda l1, l2, budget=None, exclude=None, cap="random", seeds=None: selection.spl_select(
                 l1, l2, budget, None, cap, seeds), selection.budget_to_pixels), "excluded", "spl_select"),
            ("the budget rounded down", (selection.spl_select, _budget(lambda x: x // 1)), "0.013", "budget_to_pixels"),
            ("the budget rounded up", (selection.spl_select, _budget(lambda x: -(-x // 1))), "0.018",
             "budget_to_pixels")],
    "ppl": [("random mask pixels instead of the ones nearest the prototypes",
             (_ppl_random_mask_pixels, selection.allocate_points), "points per class", "ppl_select"),
            ("the farthest pixels from the prototype", (_ppl_farthest, selection.allocate_points),
             "the first point that differs", "ppl_select"),
            ("points moved off the mask", (_ppl_outside_the_mask, selection.allocate_points),
             "outside the inconsistency mask", "ppl_select"),
            ("exclude ignored", (_ppl_ignoring_exclude, selection.allocate_points), "ignores `exclude`",
             "ppl_select"),
            ("leftover points to the lowest class index", (selection.ppl_select, _allocate("index")),
             "allocate_points([4, 9, 6], 5)", "allocate_points"),
            ("leftover points to the smallest class", (selection.ppl_select, _allocate("smallest")),
             "allocate_points([4, 9, 6], 5)", "allocate_points")],
    "baselines": [("A's most confident pixels instead of its most uncertain",
                   (selection.random_select, lambda logits, n, exclude=None: selection._top_per_image(
                       F.softmax(logits, dim=1).max(dim=1).values, n, None if exclude is None else ~exclude)),
                   "entropy_select", "entropy_select"),
                  ("random pixels that ignore `generator`", (_random_ignoring_generator, selection.entropy_select),
                   "ignores `generator`", "random_select"),
                  ("the first n allowed pixels in raster order", (_random_first_allowed, selection.entropy_select),
                   "ignores `generator`", "random_select")],
    "annotator": [("every pixel revealed", (_annotate_everything, selection.RevealedLabels.batch), "annotate",
                   "annotate"),
                  ("image_pixels counting the revealed pixels", (_annotate_counting_revealed,
                                                                 selection.RevealedLabels.batch),
                   "image_pixels[i] is the number of pixels", "annotate")],
    "aspp": [("two of the four branches", (_aspp_two_branches,), "differ", None)],
    "pixel_selector": [("heads not detached for Eq. 6", (_selector_not_detached,), "no gradient", None)],
    "discriminator": [("a sigmoid at the end", (_layers_with_sigmoid,), "differ", None)],
    "selector_step": [("Eq. 6 with the wrong sign", (_selector_step_wrong_sign, PROJECT.models.PixelSelector.forward),
                       "apart", None),
                      ("no opt_b.zero_grad()", (_selector_step_without_zero_grad,
                                                PROJECT.models.PixelSelector.forward), "zero_grad", None)],
}


@pytest.mark.parametrize("name,what,answer,word,part", [(n, *case) for n, cases in WRONG.items() for case in cases],
                         ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None)
def test_a_wrong_answer_is_caught_and_shown(name, what, answer, word, part):
    """Each wrong answer fails its check on the public and the hidden draw, with a message that names the case or
    the mistake; where an exercise has parts, it fails exactly its own part (partial credit)."""
    ok1, public = quiet(ex.check, name, *answer)
    ok2, hidden = quiet(HIDDEN.check, name, *answer)
    assert not ok1 and not ok2, (what, public, hidden)
    assert word in public, (what, public)
    if part is not None:
        failing = {p for p in ex.parts(name) if not quiet(ex.check, name, *answer, part=p)[0]}
        assert failing == {part}, (what, failing)


def test_every_exercise_has_a_wrong_answer_test():
    assert set(WRONG) == set(ex.EXERCISES)


def test_the_discrepancy_off_by_c_and_seg_loss_upsampled_otherwise_say_so():
    _, printed = quiet(ex.check, "discrepancy", _discrepancy_summed_over_classes)
    assert "5 x the expected" in printed
    _, printed = quiet(ex.check, "discrepancy", lambda a, b: 2 * _discrepancy_summed_over_classes(a, b))
    assert "x the expected" not in printed
    _, printed = quiet(ex.check, "seg_loss", _seg_loss_as_mean_over_all_pixels)
    assert "align_corners" not in printed

    def corners(logits, labels, ignore_index=255):
        up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True)
        return labor.seg_loss(up, labels, ignore_index)

    ok, printed = quiet(ex.check, "seg_loss", corners)
    assert not ok and "align_corners=False" in printed, printed


def test_a_missing_theta_c_is_not_blamed_on_the_interpolation():
    _, printed = quiet(ex.check, "iast", _iast_without_theta, *_L[1:])
    assert "WITH theta_c appended" in printed and "nearest rank" not in printed, printed
    _, printed = quiet(ex.check, "iast", _iast("nearest rank"), *_L[1:])
    assert "nearest rank" in printed and "theta_c appended" not in printed, printed


def test_exercise_13_is_graded_with_the_reference_helpers():
    """A right selector_step whose discrepancy (exercise 5) is wrong: the public check, with the student's own
    helpers, fails and says to fix exercise 5 first; graded (the hidden check, and the public one where the
    autograder's files are), it passes: the slip costs exercise 5 only."""
    scope = {"seg_loss": labor.seg_loss, "iast_update": labor.iast_update, "pseudo_labels": labor.pseudo_labels,
             "pseudo_label_loss": labor.pseudo_label_loss, "discrepancy": _discrepancy_summed_over_classes,
             "F": F, "torch": torch, "autocast": ex.autocast, "IGNORE_INDEX": 255}
    exec(_solution_source("selector_step"), scope)
    step, forward = scope["selector_step"], _selector_not_detached          # exercise 11 wrong too
    ok, printed = quiet(ex.check, "selector_step", step, forward)
    assert not ok and "your discrepancy" in printed, printed
    ok, printed = quiet(HIDDEN.check, "selector_step", step, forward)
    assert ok, printed
    ok, printed = quiet(ex.check, "selector_step", step, forward, helpers="autograder")
    assert ok, printed
    ok, printed = quiet(HIDDEN.check, "selector_step", _selector_step_wrong_sign, forward)   # its own slip counts
    assert not ok, printed


# ---------------------------------------------------------------------------------------------- correct alternatives

def _ppl_with_tie_rule(rule):
    """The project's PPL with another rule for equal distances: torch.topk's order, or the last pixels first."""
    def select(l1, l2, n=40, exclude=None):
        mask = selection.inconsistency_mask(l1, l2)
        if exclude is not None:
            mask &= ~exclude
        pbar = 0.5 * (F.softmax(l1, dim=1) + F.softmax(l2, dim=1))
        out = torch.zeros_like(mask)
        for j in range(len(l1)):
            cls = torch.where(mask[j], pbar[j].argmax(0), -1).flatten()
            alloc = selection.allocate_points(torch.bincount(cls[cls >= 0], minlength=l1.shape[1]), n)
            for k in alloc.nonzero().flatten().tolist():
                idx = (cls == k).nonzero().flatten()
                z = pbar[j].flatten(1)[:, idx].t()
                d = (z - z.mean(0)).norm(dim=1)
                a = int(alloc[k])
                near = d.topk(a, largest=False).indices if rule == "topk" else \
                    (len(d) - 1 - d.flip(0).argsort(stable=True)[:a])          # equal distances: the last first
                out[j].view(-1)[idx[near]] = True
        return out
    return select


@pytest.mark.parametrize("rule", ["topk", "last first"])
def test_ppl_accepts_any_rule_for_equal_distances(rule):
    ok1, ok2, printed = both("ppl", _ppl_with_tie_rule(rule), selection.allocate_points)
    assert ok1 and ok2, printed
    tied = torch.load(ex.PUBLIC, weights_only=True)["cases"]
    assert tied["ppl/one class in the mask, all at the same distance (any 3 of them)"][1][2], "no tie: tests nothing"


def test_entropy_accepts_any_rule_for_equal_entropies_and_log2():
    def last_first(logits, n, exclude=None):
        flipped = torch.flip(logits, dims=[-1])
        return torch.flip(selection.entropy_select(flipped, n, None if exclude is None else exclude.flip(-1)),
                          dims=[-1])

    def log2(logits, n, exclude=None):
        p = F.softmax(logits, dim=1)
        h = -(p * torch.log2(p)).sum(dim=1)
        return selection._top_per_image(h, n, None if exclude is None else ~exclude)

    for entropy in (last_first, log2):
        ok1, ok2, printed = both("baselines", selection.random_select, entropy)
        assert ok1 and ok2, printed


# A second solution to every exercise, written as a student might: loops, numpy.percentile, cdist,
# torch.special.entr, randperm (the notebook's own solutions are the vectorised one).
ALTERNATIVE = r'''
import numpy as np


def seg_loss(logits, labels, ignore_index=255):
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    keep = labels != ignore_index
    if not keep.any():
        return up.sum() * 0.0
    logp = F.log_softmax(up, dim=1).permute(0, 2, 3, 1)[keep]
    return -logp.gather(1, labels[keep][:, None]).mean()


def adv_generator_loss(d_out_t, gan="vanilla"):
    return F.softplus(d_out_t).mean() if gan == "vanilla" else (d_out_t ** 2).mean()


def adv_discriminator_loss(d_out_s, d_out_t, gan="vanilla"):
    if gan == "vanilla":
        return 0.5 * (F.softplus(d_out_s).mean() + F.softplus(-d_out_t).mean())
    return 0.5 * ((d_out_s ** 2).mean() + ((d_out_t - 1) ** 2).mean())


def inconsistency_mask(logits1, logits2):
    return torch.ne(torch.argmax(logits1, 1), torch.argmax(logits2, 1))


def iast_update(prob, theta, alpha=0.2, beta=0.9, gamma=8.0):
    conf, pred = prob.max(dim=1)
    out = []
    for c in range(len(theta)):
        values = np.append(conf[pred == c].numpy(), float(theta[c]))
        psi = np.percentile(values, 100 * (1 - alpha * float(theta[c]) ** gamma))
        out.append(min(beta * float(theta[c]) + (1 - beta) * psi, 0.999))
    return torch.tensor(out, dtype=theta.dtype)


def pseudo_labels(prob, theta, ignore_index=255):
    pred = prob.argmax(1)
    conf = prob.gather(1, pred[:, None])[:, 0]
    out = pred.clone()
    out[conf < theta[pred]] = ignore_index
    return out


def pseudo_label_loss(logits1, logits2, y_hat):
    return sum(seg_loss(logits, y_hat) for logits in (logits1, logits2))


def discrepancy(logits1, logits2):
    return (logits1.softmax(1) - logits2.softmax(1)).abs().sum(1).mean() / logits1.shape[1]


def budget_to_pixels(budget, height, width):
    return max(1, int(np.floor(budget * height * width + 0.5))) if budget > 0 else 0


def spl_select(logits1, logits2, budget=None, exclude=None, cap="random", seeds=None):
    mask = inconsistency_mask(logits1, logits2)
    if exclude is not None:
        mask = mask & ~exclude
    if budget is None:
        return mask
    b, h, w = mask.shape
    score = (logits1.softmax(1) - logits2.softmax(1)).abs().mean(1) if cap == "discrepancy" else \
        seeded_scores(seeds, h, w)
    out = torch.zeros_like(mask)
    for j in range(b):
        idx = mask[j].flatten().nonzero().flatten()
        order = score[j].flatten()[idx].argsort(descending=True)
        out[j].view(-1)[idx[order[:budget_to_pixels(budget, h, w)]]] = True
    return out


def allocate_points(counts, n_points):
    counts = [int(c) for c in counts]
    alloc, left = [0] * len(counts), min(n_points, sum(counts))
    while left > 0:
        room = [k for k in range(len(counts)) if alloc[k] < counts[k]]
        share = max(1, left // len(room))
        for k in sorted(room, key=lambda k: (alloc[k] - counts[k], k)):
            give = min(share, counts[k] - alloc[k], left)
            alloc[k] += give
            left -= give
            if left == 0:
                break
    return torch.tensor(alloc)


def ppl_select(logits1, logits2, n_points=40, exclude=None):
    mask = inconsistency_mask(logits1, logits2)
    if exclude is not None:
        mask &= ~exclude
    pbar = (logits1.softmax(1) + logits2.softmax(1)) / 2
    out = torch.zeros_like(mask)
    for j in range(len(mask)):
        cls = pbar[j].argmax(0)
        alloc = allocate_points(torch.stack([(mask[j] & (cls == k)).sum() for k in range(pbar.shape[1])]), n_points)
        for k in range(pbar.shape[1]):
            if alloc[k] == 0:
                continue
            ys, xs = torch.nonzero(mask[j] & (cls == k), as_tuple=True)
            z = pbar[j][:, ys, xs].t()
            d = torch.cdist(z, z.mean(0, keepdim=True))[:, 0]
            take = torch.argsort(d, stable=True)[:int(alloc[k])]
            out[j, ys[take], xs[take]] = True
    return out


def random_select(shape, n_per_image, generator=None, exclude=None):
    b, h, w = shape
    out = torch.zeros(b, h * w, dtype=torch.bool)
    for j in range(b):
        allowed = torch.arange(h * w) if exclude is None else (~exclude[j]).flatten().nonzero().flatten()
        out[j, allowed[torch.randperm(len(allowed), generator=generator)[:n_per_image]]] = True
    return out.reshape(shape)


def entropy_select(logits_a, n_per_image, exclude=None):
    ent = torch.special.entr(logits_a.softmax(1)).sum(1)
    if exclude is not None:
        ent = ent.masked_fill(exclude, -1.0)
    out = torch.zeros_like(ent, dtype=torch.bool)
    for j in range(len(ent)):
        out[j].view(-1)[ent[j].flatten().topk(n_per_image).indices] = True
    return out


def annotate(self, indices, selection):
    out = []
    for row, i in enumerate(indices):
        truth = torch.as_tensor(self._label_of(int(i))).long()
        out.append(torch.where(selection[row], truth, torch.full_like(truth, 255)))
        self.image_pixels[int(i)] = truth.numel()
    self.pixels_revealed += int(selection.sum())
    return torch.stack(out)


def batch(self, indices, device=None):
    h, w = self.size
    rows = []
    for i in indices:
        row = torch.full((h * w,), 255, dtype=torch.long)
        if int(i) in self.pixels:
            row[self.pixels[int(i)]] = self.labels[int(i)].long()
        rows.append(row.view(h, w))
    return torch.stack(rows)


def aspp_forward(self, x):
    out = 0
    for branch in self.branches:
        out = out + branch(x)
    return out


def pixel_selector_forward(self, x, heads_on_detached=False):
    feat = self.backbone(x)[1]
    outs = (*self.heads(feat), feat)
    return outs + tuple(self.heads(feat.detach())) if heads_on_detached else outs


def discriminator_layers(num_classes, ndf=64):
    layers, cin = [], num_classes
    for cout in (ndf, ndf * 2, ndf * 4, ndf * 8):
        layers += [nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(negative_slope=0.2)]
        cin = cout
    return nn.Sequential(*layers, nn.Conv2d(cin, 1, kernel_size=4, stride=2, padding=1))


def selector_step(args, B, opt_b, theta, x_t, logits_a, scaler):
    with torch.no_grad():
        up = F.interpolate(logits_a.float(), size=x_t.shape[-2:], mode="bilinear", align_corners=False)
        prob = up.softmax(1)
        theta = iast_update(prob, theta, alpha=args.iast_alpha, beta=args.iast_beta, gamma=args.iast_gamma)
        y_hat = pseudo_labels(prob, theta)
    opt_b.zero_grad()
    with autocast(args):
        l1, l2, _, d1, d2 = B(x_t, heads_on_detached=True)
        lp, ld = pseudo_label_loss(l1, l2, y_hat), discrepancy(d1, d2)
        loss = lp + (-args.lambda_dis) * ld
    scaler.scale(loss).backward()
    scaler.step(opt_b)
    return {"loss_pseudo": lp.item(), "loss_dis": ld.item(),
            "pseudo_fraction": float((y_hat != 255).float().mean())}, theta
'''


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_a_solution_written_otherwise_passes(name):
    scope = {"torch": torch, "nn": torch.nn, "F": F, "seeded_scores": ex.seeded_scores, "autocast": ex.autocast}
    exec(ALTERNATIVE, scope)
    ok1, ok2, printed = both(name, *[scope[a] for a in ex.ARGUMENTS[name]])
    assert ok1 and ok2, printed


# ---------------------------------------------------------------------------------------------- the notebook

def _cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def _solution_cells():
    """The code cells between raw '# BEGIN SOLUTION' and '# END SOLUTION' cells."""
    out, inside = [], False
    for c in _cells():
        src = "".join(c["source"])
        if c["cell_type"] == "raw" and src.startswith("# BEGIN SOLUTION"):
            inside = True
        elif c["cell_type"] == "raw" and src.startswith("# END SOLUTION"):
            inside = False
        elif inside and c["cell_type"] == "code":
            out.append(src)
    return out


def _solution_source(name):
    return "".join(c for c in _solution_cells() if c.startswith(f"def {name}"))


def _stub(src):
    """The student's version of a solution cell, as otter assign writes it: solution blocks removed, each
    prompt's lines kept."""
    out, skip = [], False
    for line in src.splitlines():
        s = line.strip()
        if s.startswith("# BEGIN SOLUTION"):
            skip = True
        elif s.startswith("# END SOLUTION"):
            skip = False
        elif s.endswith(("# BEGIN PROMPT", "# END PROMPT")):
            continue
        elif not skip:
            out.append(line)
    return "\n".join(out)


def _answers(transform):
    scope = {"torch": torch, "nn": torch.nn, "F": F, "IGNORE_INDEX": 255, "seeded_scores": ex.seeded_scores,
             "autocast": ex.autocast}
    for src in _solution_cells():
        exec(transform(src), scope)
    return scope


def _questions():
    """{question: (points list, [test cell sources])} of the auto-graded questions."""
    out, name = {}, None
    for c in _cells():
        src = "".join(c["source"])
        if c["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION") and "manual: true" not in src:
            name = re.search(r"name: (\w+)", src).group(1)
            out[name] = (json.loads(re.search(r"points: (\[.*\])", src).group(1)), [])
        elif c["cell_type"] == "raw" and src.startswith("# END QUESTION"):
            name = None
        elif name and c["cell_type"] == "code" and "def test_" in src:
            out[name][1].append(src)
    return out


POINTS = {"seg_loss": 3, "adv_losses": 2, "inconsistency_mask": 1, "iast": 4, "discrepancy": 2, "spl": 3, "ppl": 5,
          "baselines": 2, "annotator": 2, "aspp": 1, "pixel_selector": 2, "discriminator": 1, "selector_step": 4}


def test_the_notebooks_solutions_pass_and_its_stubs_are_empty():
    """The source notebook's solutions pass every public and hidden check; its stubs (the solution blocks taken
    out, as otter assign does) each read 'not implemented yet'; each exercise has one public and one hidden test
    per part, calling its check afresh from its file with these arguments, and its points add up as printed."""
    solved, stubs = _answers(lambda s: s), _answers(_stub)
    for name in ex.EXERCISES:
        ok1, ok2, printed = both(name, *[solved[a] for a in ex.ARGUMENTS[name]])
        assert ok1 and ok2, printed
        _, printed = quiet(ex.check, name, *[stubs[a] for a in ex.ARGUMENTS[name]])
        assert "not implemented yet" in printed
    questions = _questions()
    assert list(questions) == list(ex.EXERCISES)
    for name, (points, tests) in questions.items():
        parts = ex.parts(name)
        assert len(points) == len(tests) == 2 * len(parts), name
        assert sum(points) == POINTS[name], name
        args = ", ".join(ex.ARGUMENTS[name])
        for k, (part, hidden) in enumerate([(p, False) for p in parts] + [(p, True) for p in parts]):
            call = f'["verify"]("{name}", {args}' + (f', part="{part}"' if part else "")
            src = tests[k]
            assert call in src and ("hidden: true" in src) == hidden, (name, k)
            assert ("hidden_checks.py" in src) == hidden and "import exercise_checks" not in src, (name, k)
    sources = ["".join(c["source"]) for c in _cells()]
    assert sum(s.startswith("# BEGIN QUESTION") and "manual: true" in s for s in sources) == 3   # W1-W3
    assert sum("**Model answer.**" in s for s in sources) == 3
    assert sum(POINTS.values()) == 32


def test_the_setup_cell_installs_what_is_missing_only():
    """The student copy's first cell installs CPU torch, numpy and otter-grader where they are missing."""
    setup = next(s for s in ("".join(c["source"]) for c in _cells()) if "def missing_installs" in s)
    scope = {}
    exec(setup.split("\nfor args in")[0], scope)
    have_otter = importlib.util.find_spec("otter") is not None   # (requirements-course.txt; torch and numpy are here)
    assert scope["missing_installs"]() == ([] if have_otter else [["otter-grader"]])
    assert scope["missing_installs"](lambda m: None) == [
        ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"], ["numpy", "otter-grader"]]
    assert scope["missing_installs"](lambda m: None if m == "otter" else object()) == [["otter-grader"]]   # Colab


def test_the_shipped_checks_hold_no_answer():
    """exercise_checks.py (which students get) holds no answer and no hidden seed: no percentile, no distance to a
    prototype, no Eq. 6, no cross-entropy, no reference function; those live in notebooks/autograder/."""
    text = (NOTEBOOKS / "exercise_checks.py").read_text()
    for answer in ("torch.quantile(", "percentile(", ".norm(", ".abs().mean()", "cross_entropy", "binary_cross",
                   "_ppl_extra", "HIDDEN_SEED", "import labor", "import selection", "import train"):
        assert answer not in text, answer
    seed = torch.load(HIDDEN.HIDDEN, weights_only=True)["seed"]
    assert str(seed) not in text


# ---------------------------------------------------------------------------------------------- a student's folder

_HIDE = """import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):                 # the project's modules, hidden by name
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('labor', 'selection', 'models', 'train'):
            raise ImportError('not in a student copy: ' + name)
sys.meta_path.insert(0, _Hide())
sys.path = [p for p in sys.path if p not in ('', '.', {root!r}, {notebooks!r})]
sys.path.insert(0, '.')
"""
_STUDENT = ("import exercise_checks as ex, torch\n"
            "ok = ex.check('discrepancy', lambda a, b: (a.softmax(1) - b.softmax(1)).abs().mean())\n"
            "bad = ex.check('inconsistency_mask', lambda a, b: a.argmax() != b.argmax())\n"
            "print('RESULT', ok, bad, sorted(m for m in sys.modules\n"
            "                                if m in ('labor', 'selection', 'models', 'train')))")


def _student_folder(base):
    base.mkdir(parents=True)
    for f in ("exercise_checks.py", "exercise_expected_public.pt"):
        shutil.copy(NOTEBOOKS / f, base / f)
    return base


def test_the_checks_run_without_the_project_in_reach(tmp_path):
    """A student copy holds the notebook, exercise_checks.py, the public outputs and the tests only: no labor.py,
    selection.py, models.py or train.py. The checks import none of them and still report."""
    folder = _student_folder(tmp_path / "student")
    code = _HIDE.format(root=str(ROOT), notebooks=str(NOTEBOOKS)) + _STUDENT
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert "RESULT True False []" in out.stdout, out.stdout + out.stderr


def test_the_checks_run_from_folders_named_after_the_project(tmp_path):
    """The same, from a folder whose path holds "labor" and with torch and numpy reachable only through a path
    that holds "labor" too (a virtual environment at labor-reference/.venv): the project's modules are hidden by
    name, not by a piece of a path."""
    import sysconfig
    site = tmp_path / "labor-reference" / ".venv" / "site-packages"
    site.mkdir(parents=True)
    for lib in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(lib).iterdir():
            if not (site / entry.name).exists():
                (site / entry.name).symlink_to(entry)
    folder = _student_folder(tmp_path / "labor-reference" / "labor-course" / "student")
    code = _HIDE.format(root=str(ROOT), notebooks=str(NOTEBOOKS)) + _STUDENT
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=folder, capture_output=True, text=True,
                         timeout=180, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "PYTHONPATH": str(site)})
    assert "RESULT True False []" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------- otter (slow)

# Submissions built from the solutions with some functions replaced by wrong ones, and the points each must lose
# per exercise: exactly the parts they break. Exercise 13 runs with the reference's helpers when graded, so a
# wrong discrepancy (wrong_b) or seg_loss, IAST cap or forward (wrong_d) costs it nothing.
SUBMISSIONS = {
    "wrong_a": ({"inconsistency_mask": "def inconsistency_mask(logits1, logits2):\n"
                                       "    return logits1.argmax() != logits2.argmax()\n",
                 "aspp_forward": "def aspp_forward(self, x):\n    return self.branches[0](x) + self.branches[1](x)\n",
                 "budget_to_pixels": "def budget_to_pixels(budget, height, width):\n"
                                     "    return max(1, int(budget * height * width)) if budget > 0 else 0\n"},
                {"inconsistency_mask": 1, "aspp": 1, "spl": 1}),
    "wrong_b": ({"discrepancy": "def discrepancy(logits1, logits2):\n"
                                "    return (F.softmax(logits1, 1) - F.softmax(logits2, 1)).abs().sum(1).mean()\n",
                 "discriminator_layers": "_layers = discriminator_layers\n"
                                         "def discriminator_layers(num_classes, ndf=64):\n"
                                         "    return nn.Sequential(*_layers(num_classes, ndf), nn.Sigmoid())\n"},
                {"discrepancy": 2, "discriminator": 1}),
    "wrong_c": ({"adv_generator_loss": "def adv_generator_loss(d_out_t, gan='vanilla'):\n"
                                       "    return _criterion(d_out_t, 1.0, gan)\n",
                 "allocate_points": "def allocate_points(counts, n_points):\n"
                                    "    alloc = torch.zeros_like(counts)\n"
                                    "    for _ in range(int(min(n_points, int(counts.sum())))):\n"
                                    "        k = int(((counts - alloc) > 0).nonzero()[0])   # the lowest index first\n"
                                    "        alloc[k] += 1\n"
                                    "    return alloc\n",
                 "entropy_select": "def entropy_select(logits_a, n_per_image, exclude=None):\n"
                                   "    return random_select(logits_a[:, 0].shape, n_per_image, None, exclude)\n",
                 "annotate": "_annotate = annotate\n"
                             "def annotate(self, indices, selection):\n"
                             "    return _annotate(self, indices, torch.ones_like(selection))\n"},
                {"adv_losses": 1, "ppl": 5, "baselines": 1, "annotator": 1}),
    "wrong_d": ({"iast_update": "def iast_update(prob, theta, alpha=0.2, beta=0.9, gamma=8.0):\n"
                                "    conf, pred = prob.max(dim=1)\n"
                                "    new = theta.clone()\n"
                                "    for c in range(theta.numel()):\n"
                                "        conf_c = torch.cat([conf[pred == c], theta[c:c + 1]])\n"
                                "        psi = torch.quantile(conf_c, float(1 - alpha * theta[c] ** gamma))\n"
                                "        new[c] = beta * theta[c] + (1 - beta) * psi        # no cap at 0.999\n"
                                "    return new\n",
                 "pixel_selector_forward": "def pixel_selector_forward(self, x, heads_on_detached=False):\n"
                                           "    _, feat = self.backbone(x)\n"
                                           "    l1, l2 = self.heads(feat)\n"
                                           "    return (l1, l2, feat, l1, l2) if heads_on_detached else (l1, l2, feat)\n",
                 "seg_loss": "def seg_loss(logits, labels, ignore_index=IGNORE_INDEX):\n"
                             "    up = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear', align_corners=True)\n"
                             "    return F.cross_entropy(up, labels, ignore_index=ignore_index) if (labels != 255).any() \\\n"
                             "        else up.sum() * 0\n"},
                {"iast": 2, "pixel_selector": 2, "seg_loss": 3}),
    # the five slips that kept all their points before (random_select ignoring its generator, PPL ignoring
    # exclude, no zero_grad, image_pixels as the pixels revealed, a pixel kept where any class reaches its own
    # threshold): each costs its part now
    "lax": ({"random_select": "_random_select = random_select\n"
                              "def random_select(shape, n_per_image, generator=None, exclude=None):\n"
                              "    return _random_select(shape, n_per_image, None, exclude)\n",
             "ppl_select": "_ppl_select = ppl_select\n"
                           "def ppl_select(logits1, logits2, n_points=40, exclude=None):\n"
                           "    return _ppl_select(logits1, logits2, n_points)\n",
             "selector_step": "_selector_step = selector_step\n"
                              "def selector_step(args, B, opt_b, theta, x_t, logits_a, scaler):\n"
                              "    opt_b.zero_grad = lambda *a, **k: None\n"
                              "    return _selector_step(args, B, opt_b, theta, x_t, logits_a, scaler)\n",
             "annotate": "_annotate = annotate\n"
                         "def annotate(self, indices, selection):\n"
                         "    out = _annotate(self, indices, selection)\n"
                         "    for row, i in enumerate(indices):\n"
                         "        self.image_pixels[int(i)] = int(selection[row].sum())\n"
                         "    return out\n",
             "pseudo_labels": "def pseudo_labels(prob, theta, ignore_index=IGNORE_INDEX):\n"
                              "    pred = prob.argmax(dim=1)\n"
                              "    keep = (prob >= theta[None, :, None, None]).any(dim=1)\n"
                              "    return torch.where(keep, pred, torch.full_like(pred, ignore_index))\n"},
            {"baselines": 1, "ppl": 3.5, "selector_step": 4, "annotator": 1, "iast": 1.25}),
}

# Attempts to score without solving: (code added after the setup cell, what each stub's function becomes).
_FRAMES = '''import sys
def _steal(*args, **kwargs):
    """Whatever the checker holds above this call: a local `want`, or the recorded output of this case."""
    frame, case = sys._getframe(1), None
    while frame is not None:
        seen = frame.f_locals
        if "want" in seen:
            return seen["want"]
        if case is None and hasattr(seen.get("case"), "what"):
            case = seen["case"].what
        for value in [*seen.values(), *frame.f_globals.values()]:
            if isinstance(value, dict) and case is not None:
                for key, recorded in list(value.items()):
                    if isinstance(key, str) and key.endswith("/" + case):
                        return recorded[0]
        frame = frame.f_back
    raise NotImplementedError
'''
_REPLAY = '''import os, torch
def _outputs(*paths):
    for path in paths:
        if os.path.isfile(path):
            recorded = torch.load(path, weights_only=True)
            return recorded.get("cases", recorded)
    return {{}}
_RECORDED = [_outputs("exercise_expected_public.pt")]{hidden}
_CALLS = {{}}
def _replay(exercise):
    """The recorded outputs of this exercise's cases, one per call, in the order the checks ask for them."""
    keys = [(k, d) for d in _RECORDED for k in d if k.startswith(exercise + "/")]
    def replay(*args, **kwargs):
        n = _CALLS.get(exercise, 0)
        _CALLS[exercise] = n + 1
        key, outputs = keys[n % len(keys)]
        return outputs[key][0]
    return replay
'''
_DISK = ('\n_RECORDED.append(_outputs("autograder/exercise_expected_hidden.pt", "exercise_expected_hidden.pt",\n'
         '                            "../source/files/autograder/exercise_expected_hidden.pt"))')
ATTACKS = {
    "stubs, ex.verify patched": ("import exercise_checks as ex\nex.verify = lambda *a, **k: None", None),
    "stubs, ex.report patched": ("import exercise_checks as ex\nex.report = lambda *a, **k: (True, '')", None),
    "stubs, ex.differences patched": ("import exercise_checks as ex\nex.differences = lambda *a, **k: []", None),
    "reads the checker's frames": (_FRAMES, "_steal"),
    "replays the public outputs": (_REPLAY.format(hidden=""), "_replay({exercise!r})"),
    "replays the hidden outputs read from the autograder's files": (_REPLAY.format(hidden=_DISK),
                                                                    "_replay({exercise!r})"),
}
_EXERCISE_OF = {}
for _name, _args in ex.ARGUMENTS.items():
    for _a in _args:
        _EXERCISE_OF.setdefault(_a, _name)


def _submission(student_nb, replace, out):
    """The student copy with every stub filled by its solution, then the functions in `replace` redefined."""
    nb = json.loads(Path(student_nb).read_text())
    solutions = [s for s in _solution_cells()]
    k = 0
    for c in nb["cells"]:
        if c["cell_type"] == "code" and "raise NotImplementedError" in "".join(c["source"]):
            c["source"] = solutions[k]
            k += 1
    assert k == len(solutions)
    extra = "\n\n".join(replace.values())
    if extra:
        first = next(i for i, c in enumerate(nb["cells"]) if "def selector_step" in "".join(c["source"]))
        nb["cells"].insert(first + 1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                       "source": extra})
    Path(out).write_text(json.dumps(nb))
    return out


def attack_submission(student_nb, attack, out):
    """The student copy, stubs left, with an attack: code added after the setup cell, and each stub's function
    replaced by what `attack` makes of it."""
    prelude, becomes = attack
    nb = json.loads(Path(student_nb).read_text())
    at = next(i for i, c in enumerate(nb["cells"]) if "import exercise_checks as ex" in "".join(c["source"]))
    nb["cells"].insert(at + 1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                "source": prelude})
    for c in nb["cells"]:
        src = "".join(c["source"])
        if becomes and c["cell_type"] == "code" and "raise NotImplementedError" in src:
            names = [n for n in re.findall(r"^def (\w+)\(", src, flags=re.M) if n in _EXERCISE_OF]
            c["source"] = src + "".join(f"\n{n} = {becomes.format(exercise=_EXERCISE_OF[n])}" for n in names)
    Path(out).write_text(json.dumps(nb))
    return out


def grade_folder(subs, autograder, out_json, python=sys.executable, timeout=1800):
    run = subprocess.run([python, str(NOTEBOOKS / "grade_exercises.py"), str(subs), "--autograder", str(autograder),
                          "--json", str(out_json), "--csv", str(out_json.with_suffix(".csv"))],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {Path(k).stem: v for k, v in json.loads(out_json.read_text()).items()}, run.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("otter")
    out = tmp_path_factory.mktemp("otter") / "dist"
    run = subprocess.run([sys.executable, "-m", "otter", "assign", str(NOTEBOOK), str(out)], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)   # (python -m: the otter of this Python, on PATH or not)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


@pytest.mark.slow
def test_otter_makes_the_student_copy_and_the_grader_scores_it(dist, tmp_path):
    student = dist / "student"
    assert sorted(p.name for p in student.iterdir()) == ["06_exercises.ipynb", "exercise_checks.py",
                                                        "exercise_expected_public.pt", "tests"]
    text = "".join(p.read_text() for p in [student / "06_exercises.ipynb", *(student / "tests").iterdir()])
    for answer in ("BEGIN SOLUTION", "Model answer", "torch.quantile(conf_c", "hidden_checks", "hidden=True",
                   "This is the SOURCE", "tests/test_exercises.py", "TEACHING.md"):
        assert answer not in text, answer
    assert "def missing_installs" in text and "grader.export(" in text and "grader = otter.Notebook" in text
    for f in ("hidden_checks.py", "reference.py", "exercise_expected_hidden.pt"):
        assert (dist / "autograder" / "autograder" / f).exists()
    assert not (dist / "autograder" / "autograder" / "record.py").exists()

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(student / "06_exercises.ipynb", subs / "stubs.ipynb")
    _submission(student / "06_exercises.ipynb", {}, subs / "solutions.ipynb")
    for name, (replace, _) in SUBMISSIONS.items():
        _submission(student / "06_exercises.ipynb", replace, subs / f"{name}.ipynb")
    by_name, printed = grade_folder(subs, dist / "autograder", tmp_path / "grades.json")
    assert by_name["solutions"]["total"] == 32 == by_name["solutions"]["possible"]
    assert by_name["stubs"]["total"] == 0
    for name, (_, lost) in SUBMISSIONS.items():
        got = {q: g["possible"] - g["score"] for q, g in by_name[name]["exercises"].items()
               if g["score"] < g["possible"]}
        assert got == lost, (name, got)
    assert not by_name["solutions"]["review"] and not by_name["wrong_a"]["review"]
    assert "total" in printed and "32 / 32" in printed
    rows = (tmp_path / "grades.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["submission", "seg_loss"] and rows[0].endswith("total,possible,review")
    assert len(rows) == 1 + 2 + len(SUBMISSIONS) and any(r.endswith(",32,32,0") for r in rows)


@pytest.mark.slow
def test_the_student_copy_runs_its_checks(dist, tmp_path):
    """The student copy as a student runs it, in its own folder: the setup cell starts otter, each grader.check
    cell runs the public checks; with a wrong discrepancy, its check and exercise 13's say so, the others pass."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    folder = tmp_path / "student"
    shutil.copytree(dist / "student", folder)
    _submission(folder / "06_exercises.ipynb", {}, folder / "06_exercises.ipynb")
    nb = nbformat.read(folder / "06_exercises.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if "grader.export" not in c.source]            # (the export makes a PDF)
    for c in nb.cells:
        if c.source.startswith("def discrepancy("):
            c.source = SUBMISSIONS["wrong_b"][0]["discrepancy"]
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(folder)}}).execute()
    shown = {}
    for c in nb.cells:
        if c.cell_type == "code" and (m := re.match(r'grader\.check\("(\w+)"\)', c.source)):
            shown[m.group(1)] = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                                        for o in c.outputs)
    assert list(shown) == list(ex.EXERCISES)
    for name, text in shown.items():
        passed = "All test cases passed" in text
        assert passed == (name not in ("discrepancy", "selector_step")), (name, text)
    assert "5 x the expected" in shown["discrepancy"] and "your discrepancy" in shown["selector_step"]


@pytest.mark.slow
def test_tampering_gets_no_hidden_point(dist, tmp_path):
    """Stubs with the checks' module patched (verify, report, differences), with functions that read what the
    checker holds in its frames, and with functions that replay the recorded public outputs get no hidden point
    (the patches and the frames none at all). Replaying the hidden outputs read from the autograder's own files
    on disk is not stopped (otter runs in the student's Python): the grader lists every such line for review."""
    subs = tmp_path / "subs"
    subs.mkdir()
    files = {}
    for k, (name, attack) in enumerate(ATTACKS.items()):
        files[f"attack{k}"] = name
        attack_submission(dist / "student" / "06_exercises.ipynb", attack, subs / f"attack{k}.ipynb")
    by_name, _ = grade_folder(subs, dist / "autograder", tmp_path / "grades.json")
    table = []
    for stem, name in files.items():
        g = by_name[stem]
        hidden = sum(e["hidden"] for e in g["exercises"].values())
        table.append((name, g["total"], hidden, len(g["review"])))
        assert g["review"], name                                                 # every attempt is listed
        if "autograder's files" not in name:
            assert hidden == 0, (name, g)
        if "patched" in name or "frames" in name:
            assert g["total"] == 0, (name, g)
    print("\n".join(f"{n:<62} total {t:>5g} / 32, hidden {h:>5g}, review {r}" for n, t, h, r in table))


def _local_cpu_torch():
    """The version of a CPU torch wheel in this machine's pip find-links, if any: building the autograder's
    environment with it takes seconds; without it pip would fetch a CUDA build of several GB."""
    links = os.environ.get("PIP_FIND_LINKS") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True).stdout
    for folder in links.split():
        for wheel in sorted(Path(folder).glob("torch-*+cpu-*.whl")) if Path(folder).is_dir() else []:
            return wheel.name.split("-")[1].split("+")[0]
    return None


@pytest.mark.slow
def test_the_autograders_own_requirements_install_an_environment_that_grades(dist, tmp_path):
    """The autograder zip's environment (what Gradescope and `otter grade` build) names CPU torch (conda-forge's
    pytorch-cpu, then pip's torch and numpy, which find it installed) besides otter-grader. Its pip packages, in
    a clean virtual environment, grade: the solutions 32, the stubs 0. (Some minutes: otter-grader's
    dependencies come from the package index.)"""
    yaml = pytest.importorskip("yaml")
    with zipfile.ZipFile(next((dist / "autograder").glob("*.zip"))) as zf:
        env = yaml.safe_load(zf.read("environment.yml"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {"pytorch-cpu", "numpy"} <= set(conda), conda
    assert [p.split(">")[0].split("=")[0].split("[")[0] for p in pip] == ["otter-grader", "torch", "numpy"], pip
    version = _local_cpu_torch()
    if version is None:
        pytest.skip("no CPU torch wheel in pip's find-links: build it by hand as notebooks/TEACHING.md says")
    (tmp_path / "constraints.txt").write_text(f"torch=={version}\n")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    run = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *pip, "-c",
                          str(tmp_path / "constraints.txt")], capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check = subprocess.run([str(bin_dir / "python"), "-c", "import torch, numpy, otter, sys; print(sys.prefix, "
                            "torch.__version__)"], capture_output=True, text=True, timeout=300)
    assert str(tmp_path / "venv") in check.stdout and version in check.stdout, check.stdout + check.stderr
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(dist / "student" / "06_exercises.ipynb", subs / "stubs.ipynb")
    _submission(dist / "student" / "06_exercises.ipynb", {}, subs / "solutions.ipynb")
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{old_path}"          # (the kernel otter starts: the venv's)
    try:
        by_name, _ = grade_folder(subs, dist / "autograder", tmp_path / "grades.json", python=str(bin_dir / "python"))
    finally:
        os.environ["PATH"] = old_path
    assert by_name["solutions"]["total"] == 32 and by_name["stubs"]["total"] == 0, by_name
