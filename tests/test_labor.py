"""Tests for labor.py: every loss of LabOR checked against numbers computed by hand or with numpy."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import labor  # noqa: E402
import models  # noqa: E402


def np_log_softmax(x, axis=1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def np_softmax(x, axis=1):
    return np.exp(np_log_softmax(x, axis))


# ----------------------------------------------------------------------------- Eq. 1 / Eq. 2: seg_loss

def test_seg_loss_matches_numpy_cross_entropy_over_labelled_pixels():
    """Eq. 1/2: L_seg = -1/|Omega| sum_{i in Omega} log softmax(logits)_i[y_i], Omega = non-255 pixels."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[torch.rand(2, 5, 6, generator=g) < 0.4] = 255
    x, y = logits.numpy(), labels.numpy()
    logp = np_log_softmax(x, axis=1)
    b, hh, ww = np.nonzero(y != 255)
    expected = -logp[b, y[b, hh, ww], hh, ww].mean()
    assert 0 < (y != 255).sum() < y.size
    got = labor.seg_loss(logits, labels)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # the mean is over labelled pixels only, not over all pixels
    assert got.item() != pytest.approx(-logp[b, y[b, hh, ww], hh, ww].sum() / y.size, rel=1e-3)


def test_seg_loss_ignores_255_pixels():
    """Eq. 2 on sparse labels: logits at unlabelled (255) pixels do not affect the loss; at labelled ones they do."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (1, 4, 4), generator=g)
    labels[0, :2] = 255
    base = labor.seg_loss(logits, labels)
    changed = logits.clone()
    changed[..., :2, :] = 50 * torch.randn(1, 3, 2, 4, generator=g)       # only the 255 rows
    assert torch.equal(labor.seg_loss(changed, labels), base)
    changed_labelled = logits.clone()
    changed_labelled[0, :, 3, 3] += torch.tensor([5.0, -5.0, 0.0])       # a labelled pixel
    assert not torch.allclose(labor.seg_loss(changed_labelled, labels), base)


def test_seg_loss_without_labels_is_exactly_zero_and_has_zero_gradient():
    """A batch with no revealed pixel (all 255) gives L_seg = 0 (not NaN) and a finite, zero gradient."""
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 8, 8), 255, dtype=torch.long)
    loss = labor.seg_loss(logits, labels)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # plain mean cross-entropy would be NaN here: the guard is what makes it 0
    assert torch.isnan(F.cross_entropy(logits.detach(), labels[:, :4, :4], ignore_index=255))


def test_seg_loss_upsamples_logits_bilinearly_to_label_size():
    """DeepLab-V2 losses: output-stride-8 logits are bilinearly upsampled (align_corners=False) to the labels."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 16, 20), generator=g)
    labels[:, ::3] = 255
    up = F.interpolate(logits, size=(16, 20), mode="bilinear", align_corners=False)
    y = labels.numpy()
    logp = np_log_softmax(up.numpy(), axis=1)
    b, hh, ww = np.nonzero(y != 255)
    expected = -logp[b, y[b, hh, ww], hh, ww].mean()
    assert labor.seg_loss(logits, labels).item() == pytest.approx(expected, rel=1e-10)
    # a different interpolation gives a different number, so the check above is about bilinear/False
    up_ac = F.interpolate(logits, size=(16, 20), mode="bilinear", align_corners=True)
    assert labor.seg_loss(up_ac, labels).item() != pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- Eq. 3: adversarial losses

LOGITS = [-2.0, 0.5, 3.0]


def softplus(x):
    return math.log(1.0 + math.exp(x))


def test_vanilla_generator_loss_by_hand():
    """Eq. 3, A's side (source label 0): L = mean BCE(D(x_t), 0) = -mean log(1 - sigmoid(d)) = mean log(1 + e^d)."""
    d = torch.tensor(LOGITS).view(1, 1, 1, 3)
    expected = sum(-math.log(1.0 - 1.0 / (1.0 + math.exp(-x))) for x in LOGITS) / 3
    assert expected == pytest.approx(sum(softplus(x) for x in LOGITS) / 3)
    assert labor.adv_generator_loss(d).item() == pytest.approx(expected, rel=1e-6)
    # A is rewarded when D says "source" (very negative logits): the loss goes to 0
    assert labor.adv_generator_loss(torch.full((1, 1, 2, 2), -30.0)).item() < 1e-12
    assert labor.adv_generator_loss(torch.full((1, 1, 2, 2), 30.0)).item() == pytest.approx(30.0, rel=1e-6)


def test_vanilla_discriminator_loss_by_hand():
    """Eq. 3, D's side: 1/2 [BCE(D(x_s), 0) + BCE(D(x_t), 1)], with BCE by hand from math.log/exp."""
    ds = torch.tensor(LOGITS).view(1, 1, 3, 1)
    dt = torch.tensor([1.0, -0.5, 0.0, 2.0]).view(1, 1, 2, 2)
    src = sum(-math.log(1.0 - 1.0 / (1.0 + math.exp(-x))) for x in LOGITS) / 3
    tgt = sum(-math.log(1.0 / (1.0 + math.exp(-x))) for x in [1.0, -0.5, 0.0, 2.0]) / 4
    assert labor.adv_discriminator_loss(ds, dt).item() == pytest.approx(0.5 * (src + tgt), rel=1e-6)
    # a perfect D (source very negative, target very positive) has loss -> 0
    perfect = labor.adv_discriminator_loss(torch.full((1, 1, 2, 2), -30.0), torch.full((1, 1, 2, 2), 30.0))
    assert perfect.item() < 1e-12
    # D at chance (logit 0 everywhere) has loss log 2
    chance = labor.adv_discriminator_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert chance.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_least_squares_gan_losses_by_hand():
    """Eq. 3 with gan='ls': mean squared distance of D's outputs to the label (source 0, target 1)."""
    ds = torch.tensor(LOGITS).view(1, 1, 1, 3)
    dt = torch.tensor([1.0, -0.5, 0.0, 2.0]).view(1, 1, 2, 2)
    gen = sum(x ** 2 for x in [1.0, -0.5, 0.0, 2.0]) / 4                       # target outputs vs 0
    assert labor.adv_generator_loss(dt, gan="ls").item() == pytest.approx(gen, rel=1e-6)
    src = sum(x ** 2 for x in LOGITS) / 3
    tgt = sum((x - 1.0) ** 2 for x in [1.0, -0.5, 0.0, 2.0]) / 4
    assert labor.adv_discriminator_loss(ds, dt, gan="ls").item() == pytest.approx(0.5 * (src + tgt), rel=1e-6)


def test_unknown_gan_raises():
    """Only 'vanilla' and 'ls' are defined for Eq. 3."""
    d = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError):
        labor.adv_generator_loss(d, gan="wgan")
    with pytest.raises(ValueError):
        labor.adv_discriminator_loss(d, d, gan="hinge")


# ----------------------------------------------------------------------------- Eq. 6: discrepancy

def test_discrepancy_of_identical_heads_is_zero():
    """Eq. 6: L_dis = 0 when F1 and F2 agree exactly."""
    x = torch.randn(2, 5, 3, 4)
    assert labor.discrepancy(x, x.clone()).item() == 0.0


def test_discrepancy_of_opposite_one_hot_heads_by_hand():
    """Eq. 6 = 1/(NC) sum |p1 - p2|: opposite one-hots give (1 + 1) / C per pixel: 1.0 for C=2, 0.5 for C=4."""
    one = torch.tensor([100.0, -100.0]).view(1, 2, 1, 1).expand(2, 2, 3, 3)
    other = torch.tensor([-100.0, 100.0]).view(1, 2, 1, 1).expand(2, 2, 3, 3)
    assert labor.discrepancy(one, other).item() == pytest.approx(1.0, abs=1e-6)        # = 2 / C, C = 2
    a4 = torch.full((1, 4, 2, 2), -100.0)
    b4 = a4.clone()
    a4[:, 0] = 100.0
    b4[:, 3] = 100.0
    assert labor.discrepancy(a4, b4).item() == pytest.approx(0.5, abs=1e-6)            # = 2 / C, C = 4
    # mean over pixels: half the pixels agree, half are opposite -> 0.5 for C = 2
    mixed1 = torch.cat([one[..., :2], one[..., :2]], dim=-1)       # (2, 2, 3, 4)
    mixed2 = torch.cat([one[..., :2], other[..., :2]], dim=-1)
    assert labor.discrepancy(mixed1, mixed2).item() == pytest.approx(0.5, abs=1e-6)


def test_discrepancy_matches_numpy_and_is_bounded_by_two_over_c():
    """Eq. 6 on random logits: equals numpy mean |softmax1 - softmax2| and lies in (0, 2/C]."""
    g = torch.Generator().manual_seed(3)
    for c in (2, 3, 7):
        l1 = 4 * torch.randn(2, c, 5, 5, generator=g, dtype=torch.float64)
        l2 = 4 * torch.randn(2, c, 5, 5, generator=g, dtype=torch.float64)
        expected = np.abs(np_softmax(l1.numpy()) - np_softmax(l2.numpy())).mean()
        got = labor.discrepancy(l1, l2).item()
        assert got == pytest.approx(expected, rel=1e-10)
        assert 0.0 < got <= 2.0 / c


# ----------------------------------------------------------------------------- Eq. 5: IAST pseudo-labels

def np_iast(prob, theta, alpha=labor.IAST_ALPHA, beta=labor.IAST_BETA, gamma=labor.IAST_GAMMA):
    """Independent numpy reference of IAST's threshold update."""
    conf, pred = prob.max(axis=1), prob.argmax(axis=1)
    out = theta.copy()
    for c in range(len(theta)):
        vals = np.append(conf[pred == c], theta[c])
        psi = np.percentile(vals, 100 * (1 - alpha * theta[c] ** gamma))    # linear interpolation (default)
        out[c] = min(beta * theta[c] + (1 - beta) * psi, labor.IAST_MAX_THETA)
    return out


def test_iast_update_matches_numpy_and_hand_computation():
    """IAST (Eq. 5's thresholds): psi_c = percentile(conf_c + [theta_c], 100(1 - alpha theta_c^gamma)),
    theta_c <- beta theta_c + (1 - beta) psi_c; 2 classes, 6 pixels."""
    p0 = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.45, 0.95])
    prob = torch.stack([p0, 1 - p0]).view(1, 2, 2, 3)                  # class 1 wins at pixels 2 and 4
    theta = torch.tensor([0.9, 0.5])
    new = labor.iast_update(prob, theta)
    expected = np_iast(prob.double().numpy(), theta.double().numpy())
    np.testing.assert_allclose(new.numpy(), expected, rtol=0, atol=1e-6)
    # class 1 by hand: values sorted [0.5 (theta), 0.55, 0.7]; q = 1 - 0.2 * 0.5^8 = 0.99921875
    # position q * (3 - 1) = 1.9984375 -> psi = 0.55 + 0.9984375 * 0.15 = 0.699765625
    assert new[1].item() == pytest.approx(0.9 * 0.5 + 0.1 * 0.699765625, abs=1e-6)
    assert new[1].item() == pytest.approx(0.5199765625, abs=1e-6)
    assert torch.equal(theta, torch.tensor([0.9, 0.5]))                # the input is not modified in place


def test_iast_update_on_random_batch_matches_numpy():
    """IAST on a random softmax over 4 classes and 2 images, several consecutive updates, vs numpy."""
    g = torch.Generator().manual_seed(4)
    prob = F.softmax(3 * torch.randn(2, 4, 6, 7, generator=g), dim=1)
    theta_t = torch.full((4,), labor.IAST_THETA0)
    theta_n = theta_t.double().numpy()
    for _ in range(3):
        theta_t = labor.iast_update(prob, theta_t)
        theta_n = np_iast(prob.double().numpy(), theta_n)
        np.testing.assert_allclose(theta_t.numpy(), theta_n, rtol=0, atol=2e-6)
    assert not np.allclose(theta_n, labor.IAST_THETA0)                  # the thresholds did move


def test_iast_update_keeps_theta_of_absent_class_exactly():
    """IAST: appending theta_c makes psi_c = theta_c for a class absent from the batch, so theta_c stays put."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    logits[:, 2] = -50.0                                                # class 2 never predicted
    prob = F.softmax(logits, dim=1)
    for t in torch.rand(50, generator=g) * 0.99:
        theta = torch.tensor([0.9, 0.7, float(t)])
        new = labor.iast_update(prob, theta)
        assert new[2].item() == theta[2].item()
        assert new[0].item() != theta[0].item()                        # present classes do move


def test_iast_update_caps_theta_at_0999():
    """IAST: theta_c <- min(., 0.999), even when every pixel of the class is near-certain."""
    prob = torch.zeros(1, 2, 3, 3)
    prob[:, 0] = 0.99999
    prob[:, 1] = 0.00001
    theta = torch.tensor([0.9995, 0.3])
    new = labor.iast_update(prob, theta)
    uncapped = 0.9 * 0.9995 + 0.1 * 0.99999                             # 0.9995490 > 0.999
    assert uncapped > labor.IAST_MAX_THETA
    assert new[0].item() == pytest.approx(labor.IAST_MAX_THETA, abs=1e-7)
    assert new[1].item() == pytest.approx(0.3, abs=1e-7)               # class 1 is absent: unchanged


def test_pseudo_labels_hand_example():
    """Eq. 5: y_hat = argmax p if max p >= theta[argmax p] (per-class thresholds), else 255."""
    theta = torch.tensor([0.6, 0.5, 0.7])
    pixels = [[0.70, 0.20, 0.10],   # class 0, 0.70 >= 0.6        -> 0
              [0.30, 0.45, 0.25],   # class 1, 0.45 <  0.5        -> 255
              [0.10, 0.20, 0.70],   # class 2, 0.70 >= 0.7 (tie)  -> 2
              [0.55, 0.45, 0.00],   # class 0, 0.55 <  0.6 (but >= theta_1) -> 255
              [0.20, 0.60, 0.20]]   # class 1, 0.60 >= 0.5        -> 1
    prob = torch.tensor(pixels).t().reshape(1, 3, 1, 5)
    y = labor.pseudo_labels(prob, theta)
    assert y.dtype == torch.long and y.shape == (1, 1, 5)
    assert y.flatten().tolist() == [0, 255, 2, 255, 1]


def test_pseudo_label_loss_is_sum_of_both_heads_seg_losses():
    """Eq. 5's selector loss: L_seg(F1, y_hat) + L_seg(F2, y_hat), with 255 ignored and upsampling."""
    g = torch.Generator().manual_seed(6)
    l1 = torch.randn(2, 3, 4, 4, generator=g)
    l2 = torch.randn(2, 3, 4, 4, generator=g)
    prob = F.softmax(torch.randn(2, 3, 8, 8, generator=g) * 2, dim=1)
    y_hat = labor.pseudo_labels(prob, torch.tensor([0.5, 0.6, 0.7]))
    assert (y_hat == 255).any() and (y_hat != 255).any()
    got = labor.pseudo_label_loss(l1, l2, y_hat)
    expected = labor.seg_loss(l1, y_hat) + labor.seg_loss(l2, y_hat)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() != pytest.approx(2 * labor.seg_loss(l1, y_hat).item(), rel=1e-3)


# ----------------------------------------------------------------------------- Eq. 6 gradient routing

def test_discrepancy_on_detached_heads_trains_heads_only():
    """Eq. 6 is maximised by F1, F2 only: -L_dis on heads_on_detached outputs gives the heads nonzero
    gradients and the shared backbone G none, while the pseudo-label path still reaches G."""
    torch.manual_seed(0)
    sel = models.PixelSelector(models.TinyBackbone(width=4), num_classes=3)
    x = torch.rand(2, 3, 32, 32)
    l1, l2, feat, d1, d2 = sel(x, heads_on_detached=True)
    torch.testing.assert_close(d1, l1)                                  # same values, different graphs
    torch.testing.assert_close(d2, l2)
    (-labor.discrepancy(d1, d2)).backward()
    for head in (sel.head1, sel.head2):
        grads = [p.grad for p in head.parameters()]
        assert all(gr is not None for gr in grads)
        assert sum(gr.abs().sum().item() for gr in grads) > 0
    for p in sel.backbone.parameters():
        assert p.grad is None or p.grad.abs().sum().item() == 0.0
    # the control: the same loss on the non-detached outputs does reach the backbone
    sel.zero_grad(set_to_none=True)
    (-labor.discrepancy(l1, l2)).backward()
    assert sum(p.grad.abs().sum().item() for p in sel.backbone.parameters() if p.grad is not None) > 0


def test_iou_from_confusion_by_hand():
    """conf[i, j] = pixels of class i predicted j. Class 0: TP 3, FN 1, FP 2 -> 3/6; class 1: TP 4, FN 2, FP 1 ->
    4/7; class 2 never occurs nor is predicted: NaN, and left out of the mean."""
    conf = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    miou, iou = labor.iou_from_confusion(conf)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(4 / 7) and math.isnan(iou[2])
    assert miou == pytest.approx((0.5 + 4 / 7) / 2)
    # a class that is only predicted, never true, has IoU 0 and counts in the mean
    miou, iou = labor.iou_from_confusion(torch.tensor([[5, 1], [0, 0]]))
    assert iou == pytest.approx([5 / 6, 0.0]) and miou == pytest.approx(5 / 12)
