"""Checks for the course exercises of notebooks/06_exercises.ipynb: each runs a student's function beside the
project's own (the reference) on random and edge-case inputs and prints what differs, case by case.

    import exercise_checks as ex
    ex.check("seg_loss", seg_loss)          # prints one line per case, returns True when every case agrees
    ex.EXERCISES                            # the names, in the order of notebooks/README.md

A stub that raises NotImplementedError reads "not implemented yet". The tests (tests/test_exercises.py) fill every
stub with the reference and check that every case then agrees, and that typical wrong answers are caught.
"""
import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import labor  # noqa: E402
import models  # noqa: E402
import selection  # noqa: E402
import train  # noqa: E402

C = 5  # classes in the checks' small inputs


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _logits(seed, b=2, c=C, h=6, w=8, scale=3.0):
    return scale * torch.randn(b, c, h, w, generator=_g(seed))                         # (B, C, H, W)


def _labels(seed, b=2, h=12, w=16, ignore=0.3):
    y = torch.randint(C, (b, h, w), generator=_g(seed))
    y[torch.rand(b, h, w, generator=_g(seed + 1)) < ignore] = 255
    return y                                                                            # (B, H, W)


def _describe(got, want):
    """'' when equal (tensors: allclose), else what differs, in words."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected {len(want)} outputs, got {type(got).__name__}"
        for k, (g, w) in enumerate(zip(got, want)):
            if (d := _describe(g, w)):
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
        return "" if isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * max(1.0, abs(want)) else \
            f"got {got!r}, expected {want!r}"
    return "" if got == want else f"got {got!r}, expected {want!r}"


def _run(name, cases):
    """cases: [(description, student_thunk, reference_thunk)]. Prints one line per case; True if all agree."""
    ok = True
    for what, student, reference in cases:
        want = reference()
        try:
            got = student()
        except NotImplementedError:
            print(f"{name}: not implemented yet")
            return False
        except Exception as e:  # noqa: BLE001 (a student's error is what the check reports)
            ok = False
            print(f"  {name} [{what}]: raised {type(e).__name__}: {e}"[:300])
            continue
        if (d := _describe(got, want)):
            ok = False
            print(f"  {name} [{what}]: {d}")
    print(f"{name}: {'every case agrees' if ok else 'see the differences above'} ({len(cases)} cases)")
    return ok


# ------------------------------------------------------------------------------------------------ the checks

def check_seg_loss(fn):
    def grad_of(f, logits, y):
        x = logits.clone().requires_grad_(True)
        f(x, y).backward()
        return x.grad
    empty = torch.full((2, 12, 16), 255)
    return _run("seg_loss", [
        ("labels at 2x the logits' size, some 255", lambda: fn(_logits(1), _labels(2)),
         lambda: labor.seg_loss(_logits(1), _labels(2))),
        ("labels at the logits' size", lambda: fn(_logits(3), _labels(4, h=6, w=8)),
         lambda: labor.seg_loss(_logits(3), _labels(4, h=6, w=8))),
        ("one class only", lambda: fn(_logits(5), torch.zeros(2, 12, 16, dtype=torch.long)),
         lambda: labor.seg_loss(_logits(5), torch.zeros(2, 12, 16, dtype=torch.long))),
        ("no labelled pixel: exactly 0", lambda: fn(_logits(6), empty), lambda: labor.seg_loss(_logits(6), empty)),
        ("no labelled pixel: zero gradient", lambda: grad_of(fn, _logits(6), empty),
         lambda: grad_of(labor.seg_loss, _logits(6), empty)),
    ])


def check_adv_losses(generator, discriminator):
    d_s, d_t = torch.randn(2, 1, 3, 4, generator=_g(7)), torch.randn(2, 1, 3, 4, generator=_g(8))
    return _run("adv_generator_loss, adv_discriminator_loss", [
        (f"{name} {gan}", lambda f=f, a=a, gan=gan: f(*a, gan=gan), lambda r=r, a=a, gan=gan: r(*a, gan=gan))
        for gan in ("vanilla", "ls")
        for name, f, r, a in (("generator", generator, labor.adv_generator_loss, (d_t,)),
                              ("discriminator", discriminator, labor.adv_discriminator_loss, (d_s, d_t)))])


def check_inconsistency_mask(fn):
    same = _logits(9)
    tied = torch.zeros(1, C, 2, 3)
    tied[:, 1:3] = 1.0                                   # classes 1 and 2 tie everywhere: argmax takes the first
    return _run("inconsistency_mask", [
        ("random heads", lambda: fn(_logits(10), _logits(11)), lambda: selection.inconsistency_mask(_logits(10),
                                                                                                     _logits(11))),
        ("identical heads: empty mask", lambda: fn(same, same.clone()), lambda: selection.inconsistency_mask(
            same, same.clone())),
        ("tied scores in both heads", lambda: fn(tied, tied.clone()), lambda: selection.inconsistency_mask(
            tied, tied.clone())),
    ])


def check_iast(iast_update, pseudo_labels, pseudo_label_loss):
    prob = F.softmax(_logits(12, scale=4.0), dim=1)
    absent = prob.clone()
    absent[:, 4] = 0.0                                   # class 4 never predicted: its threshold must not move
    absent = absent / absent.sum(dim=1, keepdim=True)
    theta = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9])
    high = torch.full((C,), 0.999)
    return _run("iast_update, pseudo_labels, pseudo_label_loss", [
        ("iast_update, random batch", lambda: iast_update(prob, theta), lambda: labor.iast_update(prob, theta)),
        ("iast_update, a class absent", lambda: iast_update(absent, theta), lambda: labor.iast_update(absent, theta)),
        ("pseudo_labels", lambda: pseudo_labels(prob, theta), lambda: labor.pseudo_labels(prob, theta)),
        ("pseudo_labels, every pixel below its threshold", lambda: pseudo_labels(prob, high),
         lambda: labor.pseudo_labels(prob, high)),
        ("pseudo_label_loss", lambda: pseudo_label_loss(_logits(13), _logits(14), _labels(15, h=6, w=8)),
         lambda: labor.pseudo_label_loss(_logits(13), _logits(14), _labels(15, h=6, w=8))),
    ])


def check_discrepancy(fn):
    one = _logits(16, c=1)
    return _run("discrepancy", [
        ("random heads", lambda: fn(_logits(17), _logits(18)), lambda: labor.discrepancy(_logits(17), _logits(18))),
        ("identical heads: 0", lambda: fn(_logits(19), _logits(19)), lambda: labor.discrepancy(_logits(19),
                                                                                              _logits(19))),
        ("one class", lambda: fn(one, -one), lambda: labor.discrepancy(one, -one)),
    ])


def check_spl(spl_select, budget_to_pixels):
    a, b, same = _logits(20, h=10, w=12), _logits(21, h=10, w=12), _logits(22, h=10, w=12)
    ex = torch.rand(2, 10, 12, generator=_g(23)) < 0.5
    cases = [(f"budget_to_pixels({f}, 10, 12)", lambda f=f: budget_to_pixels(f, 10, 12),
              lambda f=f: selection.budget_to_pixels(f, 10, 12)) for f in (0.0, 0.001, 0.1, 0.5, 1.0)]
    cases += [
        ("whole mask", lambda: spl_select(a, b), lambda: selection.spl_select(a, b)),
        ("identical heads: nothing", lambda: spl_select(same, same.clone()), lambda: selection.spl_select(
            same, same.clone())),
        ("with pixels excluded", lambda: spl_select(a, b, exclude=ex), lambda: selection.spl_select(a, b,
                                                                                                   exclude=ex)),
        ("capped at 10%, most discrepant", lambda: spl_select(a, b, budget=0.1, cap="discrepancy"),
         lambda: selection.spl_select(a, b, budget=0.1, cap="discrepancy")),
        ("capped at 10%, random (seeds 1, 2)", lambda: spl_select(a, b, budget=0.1, cap="random", seeds=[1, 2]),
         lambda: selection.spl_select(a, b, budget=0.1, cap="random", seeds=[1, 2])),
    ]
    return _run("spl_select, budget_to_pixels", cases)


def check_ppl(ppl_select, allocate_points):
    a, b = _logits(24, h=10, w=12, scale=1.0), _logits(25, h=10, w=12, scale=1.0)
    one = torch.zeros(1, C, 10, 12)
    one[:, 0] = 5.0
    one2 = one.clone()
    one2[:, 0, :5] = -5.0                                 # the heads disagree on the top half; one class under pbar
    cases = [(f"allocate_points({c.tolist()}, {n})", lambda c=c, n=n: allocate_points(c, n),
              lambda c=c, n=n: selection.allocate_points(c, n))
             for c, n in ((torch.tensor([5, 0, 1, 10]), 7), (torch.tensor([0, 0, 0]), 4),
                          (torch.tensor([3, 3, 3]), 2), (torch.tensor([1, 2]), 40))]
    cases += [
        ("40 points", lambda: ppl_select(a, b, 40), lambda: selection.ppl_select(a, b, 40)),
        ("5 points", lambda: ppl_select(a, b, 5), lambda: selection.ppl_select(a, b, 5)),
        ("identical heads: no point", lambda: ppl_select(a, a.clone(), 40), lambda: selection.ppl_select(
            a, a.clone(), 40)),
        ("one class in the mask", lambda: ppl_select(one, one2, 3), lambda: selection.ppl_select(one, one2, 3)),
    ]
    return _run("ppl_select, allocate_points", cases)


def check_baselines(random_select, entropy_select):
    """random_select is checked by its properties (its draws may differ from ours), entropy_select number by
    number."""
    ex = torch.zeros(2, 6, 8, dtype=torch.bool)
    ex[:, :3] = True

    def properties(sel, n, exclude=None):
        sel = torch.as_tensor(sel)
        per_image = sel.flatten(1).sum(dim=1).tolist()
        return (tuple(sel.shape), sel.dtype, per_image, bool((sel & exclude).any()) if exclude is not None else False)

    flat = torch.zeros(2, C, 6, 8)                       # every pixel equally uncertain: ties
    return _run("random_select, entropy_select", [
        ("random_select: shape, dtype, 7 per image", lambda: properties(random_select((2, 6, 8), 7, _g(1)), 7),
         lambda: ((2, 6, 8), torch.bool, [7, 7], False)),
        ("random_select: never an excluded pixel", lambda: properties(random_select((2, 6, 8), 20, _g(2), ex), 20,
                                                                         ex), lambda: ((2, 6, 8), torch.bool,
                                                                                       [20, 20], False)),
        ("entropy_select", lambda: entropy_select(_logits(26), 5), lambda: selection.entropy_select(_logits(26), 5)),
        ("entropy_select, with pixels excluded", lambda: entropy_select(_logits(27), 5, exclude=ex),
         lambda: selection.entropy_select(_logits(27), 5, exclude=ex)),
        ("entropy_select, all tied: exactly 5 per image", lambda: entropy_select(flat, 5).flatten(1).sum(1),
         lambda: torch.tensor([5, 5])),
    ])


def check_annotator(annotate, batch):
    """annotate(self, indices, selection) of selection.Annotator; batch(self, indices, device=None) of
    selection.RevealedLabels; each checked inside the project's class."""
    truth = {i: torch.randint(C, (4, 5), generator=_g(30 + i)) for i in range(3)}
    sel = torch.rand(2, 4, 5, generator=_g(33)) < 0.4
    Student = type("StudentAnnotator", (selection.Annotator,), {"annotate": annotate})

    def labels_and_counts(cls):
        a = cls(lambda i: truth[i])
        out = a.annotate([0, 2], sel)
        a.annotate([2], torch.zeros(1, 4, 5, dtype=torch.bool))
        return out, a.pixels_revealed, a.images_annotated

    def dense(fn):
        revealed = selection.RevealedLabels((4, 5))
        revealed.add(1, torch.where(sel[0], truth[1], torch.full_like(truth[1], 255)))
        return fn(revealed, [1, 0, 1])

    return _run("Annotator.annotate, RevealedLabels.batch", [
        ("labels revealed (255 elsewhere), pixels counted, images counted once",
         lambda: labels_and_counts(Student), lambda: labels_and_counts(selection.Annotator)),
        ("batch: an image with labels, one without, one twice", lambda: dense(batch),
         lambda: dense(selection.RevealedLabels.batch)),
    ])


def check_aspp_forward(forward):
    torch.manual_seed(0)
    ref = models.ASPP(8, C)
    for conv in ref.branches:
        nn.init.normal_(conv.weight, 0.0, 0.1)
        nn.init.normal_(conv.bias, 0.0, 0.1)
    student = type("StudentASPP", (models.ASPP,), {"forward": forward})(8, C)
    student.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 30, 30, generator=_g(34))
    return _run("ASPP.forward", [("all four branches, summed", lambda: student(x), lambda: ref(x))])


def check_pixel_selector_forward(forward):
    torch.manual_seed(0)
    ref = models.PixelSelector(models.make_backbone("tiny", width=8), C)
    student = type("StudentSelector", (models.PixelSelector,), {"forward": forward})(
        models.make_backbone("tiny", width=8), C)
    student.load_state_dict(ref.state_dict())
    ref.eval(), student.eval()
    x = torch.rand(2, 3, 32, 64, generator=_g(35))

    def backbone_grad_from_detached_heads(net):
        net.zero_grad(set_to_none=True)
        *_, d1, d2 = net(x, heads_on_detached=True)
        (d1.sum() + d2.sum()).backward()
        return sum(float(p.grad.abs().sum()) for p in net.backbone.parameters() if p.grad is not None)

    return _run("PixelSelector.forward", [
        ("logits of both heads and the features", lambda: student(x), lambda: ref(x)),
        ("heads_on_detached=True: five outputs", lambda: student(x, heads_on_detached=True)[3:],
         lambda: ref(x, heads_on_detached=True)[3:]),
        ("the detached heads send no gradient to the backbone", lambda: backbone_grad_from_detached_heads(student),
         lambda: 0.0),
    ])


def check_discriminator_layers(layers):
    """layers(num_classes, ndf) -> the nn.Sequential of FCDiscriminator: five 4x4 stride-2 convs, LeakyReLU(0.2)
    between, no sigmoid at the end (logits)."""
    torch.manual_seed(0)
    ref = models.FCDiscriminator(C, 4)
    prob = F.softmax(torch.randn(2, C, 64, 64, generator=_g(36)), dim=1)

    def student_out():
        net = layers(C, 4)
        net.load_state_dict(ref.net.state_dict())
        return net(prob)

    return _run("FCDiscriminator layers", [
        ("parameter shapes", lambda: [tuple(p.shape) for p in layers(C, 4).parameters()],
         lambda: [tuple(p.shape) for p in ref.net.parameters()]),
        ("output on a softmax map: logits (B, 1, h/32, w/32)", student_out, lambda: ref(prob)),
    ])


def check_selector_step(step):
    """step(args, B, opt_b, theta, x_t, logits_a, scaler) as train.selector_step: one step of B from the same
    start as the reference's, then B's weights, the losses and the IAST thresholds compared; and the glue tests'
    logic (tests/test_glue.py): Eq. 6 pushes the heads apart and never reaches the backbone."""
    args = argparse.Namespace(device=torch.device("cpu"), amp_dtype=None, lambda_dis=1.0, iast_alpha=labor.IAST_ALPHA,
                              iast_beta=labor.IAST_BETA, iast_gamma=labor.IAST_GAMMA)
    torch.manual_seed(0)
    start = models.PixelSelector(models.make_backbone("tiny", width=8), C)
    x = torch.rand(2, 3, 32, 64, generator=_g(37))
    logits_a = 4.0 * torch.randn(2, C, 4, 8, generator=_g(38))

    def one_step(fn, lambda_dis=1.0):
        B = copy.deepcopy(start)
        opt = torch.optim.SGD(B.parameters(), lr=0.02)
        a = argparse.Namespace(**{**vars(args), "lambda_dis": lambda_dis})
        losses, theta = fn(a, B, opt, torch.full((C,), labor.IAST_THETA0), x, logits_a,
                           torch.amp.GradScaler(enabled=False))
        return B, losses, theta

    def weights(fn):
        return [p.detach().clone() for p in one_step(fn)[0].parameters()]

    def losses(fn):
        _, l, theta = one_step(fn)
        return [l["loss_pseudo"], l["loss_dis"], theta]

    def apart(fn):
        d = []
        for lam in (0.0, 4.0):
            B = one_step(fn, lam)[0]
            with torch.no_grad():
                d.append(labor.discrepancy(*B(x)[:2]).item())
        return d[1] > d[0]

    def backbone_same(fn):
        a, b = one_step(fn, 4.0)[0], one_step(fn, 0.0)[0]
        return all(torch.equal(p, q) for p, q in zip(a.backbone.parameters(), b.backbone.parameters()))

    return _run("selector_step", [
        ("B's weights after one step", lambda: weights(step), lambda: weights(train.selector_step)),
        ("losses and thresholds returned", lambda: losses(step), lambda: losses(train.selector_step)),
        ("lambda_dis > 0 pushes the heads further apart than lambda_dis = 0", lambda: apart(step), lambda: True),
        ("Eq. 6 leaves the backbone as it is", lambda: backbone_same(step), lambda: True),
    ])


# The exercises of notebooks/README.md, in order: name -> (the check, the reference functions it takes).
EXERCISES = {
    "seg_loss": (check_seg_loss, (labor.seg_loss,)),
    "adv_losses": (check_adv_losses, (labor.adv_generator_loss, labor.adv_discriminator_loss)),
    "inconsistency_mask": (check_inconsistency_mask, (selection.inconsistency_mask,)),
    "iast": (check_iast, (labor.iast_update, labor.pseudo_labels, labor.pseudo_label_loss)),
    "discrepancy": (check_discrepancy, (labor.discrepancy,)),
    "spl": (check_spl, (selection.spl_select, selection.budget_to_pixels)),
    "ppl": (check_ppl, (selection.ppl_select, selection.allocate_points)),
    "baselines": (check_baselines, (selection.random_select, selection.entropy_select)),
    "annotator": (check_annotator, (selection.Annotator.annotate, selection.RevealedLabels.batch)),
    "aspp": (check_aspp_forward, (models.ASPP.forward,)),
    "pixel_selector": (check_pixel_selector_forward, (models.PixelSelector.forward,)),
    "discriminator": (check_discriminator_layers, (lambda c, ndf: models.FCDiscriminator(c, ndf).net,)),
    "selector_step": (check_selector_step, (train.selector_step,)),
}


def check(name, *functions):
    """Run exercise `name`'s check on the student's function(s); prints the differences; True when all agree."""
    return EXERCISES[name][0](*functions)
