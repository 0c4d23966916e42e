"""The glue that composes the losses and selectors, checked by numbers on tiny models with fixed weights: B's step
(selector_step), A's and D's step (train_step) and a labelling round (select_round). Each test names the wrong
implementation it catches; the pieces themselves are checked in test_labor.py, test_selection.py and
test_models.py."""
import argparse
import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import labor  # noqa: E402
import models  # noqa: E402
import selection  # noqa: E402
import train  # noqa: E402
from tools import runtime  # noqa: E402

C = 9  # the synthetic benchmark's classes


def tiny_args(**overrides):
    """The settings train_step and selector_step read, for the CPU in fp32."""
    args = argparse.Namespace(device=torch.device("cpu"), amp_dtype=None, memory_format=torch.contiguous_format,
                              mode="spl", schedule="staged", gan="vanilla", lambda_seg_aux=0.1,
                              lambda_target=1.0, lambda_adv=0.001, lambda_adv_aux=0.0002, lambda_dis=0.05,
                              iast_alpha=labor.IAST_ALPHA, iast_beta=labor.IAST_BETA, iast_gamma=labor.IAST_GAMMA)
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def selector(seed=0):
    torch.manual_seed(seed)
    return models.PixelSelector(models.make_backbone("tiny", width=8), C)


def batch(seed=1, n=2, hw=(32, 64)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *hw, generator=g)                                          # (B, 3, H, W)


def a_logits(seed=2, n=2, hw=(4, 8), scale=4.0):
    """A's logits at output stride 8: confident on some pixels, unsure on others."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, C, *hw, generator=g)                                 # (B, C, H/8, W/8)


def heads_discrepancy(B, x):
    with torch.no_grad():
        logits1, logits2, _ = B(x)
    return labor.discrepancy(logits1, logits2).item()


def one_selector_step(lambda_dis, lr=0.02, **kw):
    """One fixed B after one selector_step with this --lambda-dis (plain SGD, no momentum; a small step, so that
    the heads move as the gradient says rather than overshoot)."""
    B = selector()
    opt = torch.optim.SGD(B.parameters(), lr=lr)
    theta = torch.full((C,), labor.IAST_THETA0)
    args = tiny_args(lambda_dis=lambda_dis, **kw)
    losses, theta = train.selector_step(args, B, opt, theta, batch(), a_logits(), torch.amp.GradScaler(enabled=False))
    return B, losses, theta


# ------------------------------------------------------------------------------------------------ selector_step

def test_selector_step_pushes_the_heads_apart_only_through_eq6():
    """With lambda_dis > 0 one step leaves the heads further apart on that batch than the same step without Eq. 6
    (lambda_dis = 0), and the larger lambda_dis the further. Catches Eq. 6 added with the wrong sign (the heads
    pulled together) or left out of the loss."""
    x = batch()
    before = heads_discrepancy(selector(), x)
    after = {lam: heads_discrepancy(one_selector_step(lam)[0], x) for lam in (0.0, 1.0, 4.0)}
    assert after[4.0] > after[1.0] > after[0.0], (before, after)
    assert after[4.0] > before


def test_eq6_sends_no_gradient_into_the_selectors_backbone():
    """Eq. 6 trains the heads F1, F2 only (labor.discrepancy): after one step the backbone G is the same, bit for
    bit, whatever lambda_dis, while the heads differ. Catches the discrepancy taken on the heads' attached outputs."""
    with_eq6, _, _ = one_selector_step(4.0)
    without, _, _ = one_selector_step(0.0)
    for (name, a), b in zip(with_eq6.backbone.state_dict().items(), without.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(with_eq6.head1.branches[0].weight, without.head1.branches[0].weight)


def test_eq5_learns_as_thresholded_pseudo_labels_and_ignores_the_rest(monkeypatch):
    """The heads learn A's pseudo-labels where A's confidence reaches its class's IAST threshold (after this
    batch's update of the thresholds), and nothing elsewhere (255). Computed here by hand from A's logits. Catches
    B trained on A's plain argmax, on its own predictions, or with the thresholds before their update."""
    seen = {}
    real = labor.pseudo_label_loss

    def spy(logits1, logits2, y_hat):
        seen["y_hat"] = y_hat.clone()
        return real(logits1, logits2, y_hat)

    monkeypatch.setattr(labor, "pseudo_label_loss", spy)
    _, losses, theta = one_selector_step(0.05)
    prob = F.softmax(F.interpolate(a_logits(), size=(32, 64), mode="bilinear", align_corners=False), dim=1)
    theta0 = torch.full((C,), labor.IAST_THETA0)
    assert not torch.equal(theta, theta0)                                           # this batch moved them
    conf, pred = prob.max(dim=1)                                                    # (B, H, W)
    expected = torch.where(conf >= theta[pred], pred, torch.full_like(pred, 255))
    assert torch.equal(seen["y_hat"], expected)
    assert 0 < (expected != 255).sum() < expected.numel()                          # some kept, some ignored
    before = torch.where(conf >= theta0[pred], pred, torch.full_like(pred, 255))   # with the thresholds not updated
    assert not torch.equal(before, expected)                                       # (so that order is checked)
    assert losses["pseudo_fraction"] == pytest.approx((expected != 255).float().mean().item())


# ------------------------------------------------------------------------------------------------ train_step

class Recorder:
    """An optimiser that records the gradients its step sees and leaves the weights as they are."""

    def __init__(self, module, watch=()):
        self.module, self.watch, self.grads, self.watched = module, watch, None, None

    def zero_grad(self, set_to_none=True):
        for p in self.module.parameters():
            p.grad = None

    def step(self):
        self.grads = [None if p.grad is None else p.grad.clone() for p in self.module.parameters()]
        self.watched = [[None if p.grad is None else p.grad.clone() for p in m.parameters()] for m in self.watch]


def gradients(loss, module):
    return torch.autograd.grad(loss, [p for p in module.parameters() if p.requires_grad], allow_unused=True)


def step_setup():
    args = tiny_args(lambda_seg_aux=0.3, lambda_target=0.7, lambda_adv=0.2, lambda_adv_aux=0.05)
    torch.manual_seed(0)
    net = {"A": models.TinyDeepLab(C, width=8), "D": models.FCDiscriminator(C, 4),
           "D_aux": models.FCDiscriminator(C, 4)}
    g = torch.Generator().manual_seed(3)
    x_s, x_t = torch.rand(2, 3, 32, 64, generator=g), torch.rand(2, 3, 32, 64, generator=g)
    y_s = torch.randint(C, (2, 32, 64), generator=g)
    y_t = torch.randint(C, (2, 32, 64), generator=g)
    y_t[torch.rand(2, 32, 64, generator=g) > 0.1] = 255                             # a few revealed labels
    return args, net, (x_s, y_s), (x_t, torch.arange(2)), y_t


def test_train_step_gives_a_the_gradient_of_the_documented_weighted_sum():
    """A's gradient in train_step equals that of Eq. 1 (+ lambda_seg_aux aux) + lambda_target Eq. 2 (+ aux) +
    lambda_adv Eq. 3 (main) + lambda_adv_aux Eq. 3 (aux), written out here with torch's own losses on A's maps at
    image size (target maps classified as source, label 0). Each weight differs, so a weight applied to the wrong
    term, a missing term or a wrong adversarial label is caught. D receives no gradient in A's step."""
    args, net, batch_s, batch_t, y_t = step_setup()
    before = copy.deepcopy(net)
    opt = {"A": Recorder(net["A"], watch=(net["D"], net["D_aux"])), "D": Recorder(net["D"]),
           "D_aux": Recorder(net["D_aux"])}
    train.train_step(args, net, opt, torch.full((C,), 0.9), batch_s, batch_t, y_t)

    A, D, D_aux = before["A"], before["D"], before["D_aux"]
    (x_s, y_s), (x_t, _) = batch_s, batch_t
    up = lambda t: F.interpolate(t, size=(32, 64), mode="bilinear", align_corners=False)  # noqa: E731
    ce = lambda t, y: F.cross_entropy(up(t), y, ignore_index=255)  # noqa: E731
    as_source = lambda d: F.binary_cross_entropy_with_logits(d, torch.zeros_like(d))  # noqa: E731
    s_main, s_aux = A(x_s)
    t_main, t_aux = A(x_t)
    loss = (ce(s_main, y_s) + 0.3 * ce(s_aux, y_s) + 0.7 * (ce(t_main, y_t) + 0.3 * ce(t_aux, y_t))
            + 0.2 * as_source(D(F.softmax(up(t_main), dim=1))) + 0.05 * as_source(D_aux(F.softmax(up(t_aux), dim=1))))
    for got, want in zip(opt["A"].grads, gradients(loss, A)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert all(g is None for grads in opt["A"].watched for g in grads)           # D frozen in A's step


def test_train_step_trains_d_on_detached_maps_source_as_source():
    """D's step: Eq. 3 on D's side, 1/2 [BCE(D(source maps), 0) + BCE(D(target maps), 1)], by hand, for D and D_aux.
    Catches swapped domain labels, maps not detached (A's gradient would change in D's step) and source maps taken
    from the wrong output."""
    args, net, batch_s, batch_t, y_t = step_setup()
    before = copy.deepcopy(net)
    rec_a = Recorder(net["A"])
    opt = {"A": rec_a, "D": Recorder(net["D"], watch=(net["A"],)), "D_aux": Recorder(net["D_aux"], watch=(net["A"],))}
    train.train_step(args, net, opt, torch.full((C,), 0.9), batch_s, batch_t, y_t)

    A = before["A"]
    (x_s, _), (x_t, _) = batch_s, batch_t
    up = lambda t: F.interpolate(t, size=(32, 64), mode="bilinear", align_corners=False)  # noqa: E731
    bce = lambda d, label: F.binary_cross_entropy_with_logits(d, torch.full_like(d, label))  # noqa: E731
    with torch.no_grad():
        maps = {"D": [F.softmax(up(A(x)[0]), dim=1) for x in (x_s, x_t)],
                "D_aux": [F.softmax(up(A(x)[1]), dim=1) for x in (x_s, x_t)]}
    for key in ("D", "D_aux"):
        D = before[key]
        loss = 0.5 * (bce(D(maps[key][0]), 0.0) + bce(D(maps[key][1]), 1.0))
        for got, want in zip(opt[key].grads, gradients(loss, D)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
        for got, want in zip(opt[key].watched[0], rec_a.grads):                    # A's gradient untouched
            assert (got is None and want is None) or torch.equal(got, want)


# ------------------------------------------------------------------------------------------------ select_round

def labelling_setup(mode="spl", n_target=4):
    args = train.get_args(["--mode", mode, "--iters", "4", "--n-source", "2", "--n-target", str(n_target),
                           "--n-val", "2", "--size", "32", "64", "--batch-size", "2", "--width", "8", "--threads",
                           "1", "--device", "cpu", "--quiet"])
    runtime.setup(args)
    _, target, _, classes = train.build_data(args)
    images = data.ImagesOnly(target)
    annotator = selection.Annotator(lambda i: target[i][1])
    revealed = selection.RevealedLabels(tuple(images[0][0].shape[-2:]))
    net = train.build_models(args, len(classes))
    return args, net, images, annotator, revealed, classes


def test_select_round_gives_the_selectors_bs_two_heads_at_image_size(monkeypatch):
    """SPL and PPL receive B's head 1 and head 2, upsampled to the image, for every target-train image. Catches A's
    logits (or one head twice) passed instead, and heads left at output stride 8."""
    for mode, name in (("spl", "spl_select"), ("ppl", "ppl_select")):
        args, net, images, annotator, revealed, classes = labelling_setup(mode)
        seen = []
        real = getattr(selection, name)
        monkeypatch.setattr(selection, name, lambda p1, p2, *a, real=real, **k: seen.append((p1, p2)) or real(
            p1, p2, *a, **k))
        train.select_round(args, net, images, annotator, revealed, 0, 1, classes)
        B = net["B"].eval()
        with torch.no_grad():
            x = torch.stack([images[i][0] for i in range(len(images))])
            h1, h2, _ = B(x)
        p1 = torch.cat([s[0] for s in seen])
        p2 = torch.cat([s[1] for s in seen])
        assert p1.shape == (len(images), len(classes), 32, 64)
        up = lambda t: F.interpolate(t, size=(32, 64), mode="bilinear", align_corners=False)  # noqa: E731
        torch.testing.assert_close(p1, up(h1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(p2, up(h2), rtol=1e-5, atol=1e-5)
        monkeypatch.undo()


def test_a_pixel_bought_in_one_round_is_never_bought_again(monkeypatch):
    """Two labelling rounds of capped SPL with the same B (15% of each image per round, random mask pixels drawn
    anew): the second asks the annotator for none of the first's pixels, and the annotator counts each pixel once.
    Catches the exclusion of bought pixels dropped in later rounds (the draws would overlap by about 15%)."""
    args, net, images, annotator, revealed, classes = labelling_setup("spl")
    args.budget = 0.3   # over two rounds
    asked = []
    real = selection.buy
    monkeypatch.setattr(selection, "buy", lambda annotator, revealed, chosen, *a, **k: asked.append(
        {i: m.clone() for i, m in chosen.items()}) or real(annotator, revealed, chosen, *a, **k))
    for r in (0, 1):
        train.select_round(args, net, images, annotator, revealed, r, 2, classes)
    first, second = asked
    assert sum(int(m.sum()) for m in first.values()) > 0 and sum(int(m.sum()) for m in second.values()) > 0
    assert all(not (first[i] & second[i]).any() for i in first)
    assert annotator.pixels_revealed == sum(int(m.sum()) for rnd in asked for m in rnd.values())


def test_a_selector_registered_from_outside_runs_a_labelling_round(monkeypatch):
    """A selector is one function and one entry of selection.SELECTORS: registered here, from the test file, it is a
    --mode of train.py and labels a round of train.select_round (the annotator asked for exactly its pixels, costed
    as the kind it names), with no other list of modes to edit."""
    def top_left(q):   # the first row's first `budget * W` pixels of every image not bought before
        chosen = torch.zeros(len(q.logits_a), *q.logits_a.shape[-2:], dtype=torch.bool)
        chosen[:, 0, :round(q.budget * q.logits_a.shape[-1])] = True
        return chosen & ~q.exclude.cpu() if q.exclude is not None else chosen

    monkeypatch.setitem(selection.SELECTORS, "top_left", selection.Selector(top_left, False, "fraction", "regions",
                                                                            ("h", "k")))
    args, net, images, annotator, revealed, classes = labelling_setup("top_left")
    args.budget = 0.5
    assert "B" not in net and "D" in net
    _, required, _ = train.select_round(args, net, images, annotator, revealed, 0, 1, classes)
    assert annotator.pixels_revealed == required["bought_pixels"] == len(images) * 32
    assert all(torch.equal(m[0, :32], torch.ones(32, dtype=torch.bool)) and m.sum() == 32 for m in revealed.masks())
    assert required["annotation_seconds"]["kind"] == "regions"
