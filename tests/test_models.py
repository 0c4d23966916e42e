"""Tests for models.py: exact parameter counts of DeepLab-V2 and AdaptSegNet's discriminator, output strides,
ASPP's four-branch sum, frozen batch norm, learning-rate groups and the pixel selector."""

import ast
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import models  # noqa: E402


@pytest.fixture(scope="module")
def deeplab():
    """DeepLab-V2 (ResNet-101) for 19 classes with the auxiliary head, random weights (never downloaded)."""
    torch.manual_seed(0)
    return models.DeepLabV2(19, aux=True, weights=None)


# ----------------------------------------------------------------------------- DeepLab-V2 (model A)

def test_deeplabv2_parameter_counts(deeplab):
    """DeepLab-V2 + AdaptSegNet aux head: 44,601,560 parameters = ResNet-101 without fc (42,500,160)
    + two 4-branch ASPPs (4 * (2048*19*9 + 19) + 4 * (1024*19*9 + 19) = 2,101,400)."""
    heads = 4 * (2048 * 19 * 9 + 19) + 4 * (1024 * 19 * 9 + 19)
    assert heads == 2_101_400
    assert models.count_parameters(deeplab.backbone) == 42_500_160
    assert models.count_parameters(deeplab.head) + models.count_parameters(deeplab.head_aux) == heads
    assert models.count_parameters(deeplab) == 44_601_560
    no_aux = models.SegModel(deeplab.backbone, 19, aux=False)
    assert models.count_parameters(no_aux) == 44_601_560 - 4 * (1024 * 19 * 9 + 19)


def test_deeplabv2_output_stride_8(deeplab):
    """DeepLab-V2 (dilated layer3/layer4): 64x64 input -> 8x8 logits for both the main and the aux outputs."""
    deeplab.eval()
    with torch.no_grad():
        main, aux = deeplab(torch.rand(1, 3, 64, 64))
        f3, f4 = deeplab.backbone(torch.rand(1, 3, 48, 80))
    assert main.shape == (1, 19, 8, 8) and aux.shape == (1, 19, 8, 8)
    assert f3.shape == (1, 1024, 6, 10) and f4.shape == (1, 2048, 6, 10)
    assert tuple(models.ResNet101Backbone.channels) == (1024, 2048)
    assert not torch.equal(main, aux)


def test_resnet_batchnorm_is_frozen(deeplab):
    """Batch size 1 (AdaptSegNet/LabOR): ResNet-101's BN keeps its statistics and affine parameters even in train()."""
    deeplab.train()
    bns = [m for m in deeplab.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 104                                                    # ResNet-101's BN layers
    assert all(not m.training for m in bns)
    assert all(not m.weight.requires_grad and not m.bias.requires_grad for m in bns)
    assert deeplab.training and deeplab.head.training                         # the rest is in train mode
    before = [m.running_mean.clone() for m in bns]
    with torch.no_grad():
        deeplab(torch.rand(1, 3, 32, 32) * 5)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))   # statistics untouched
    deeplab.eval()


def test_param_groups_heads_at_10x_and_cover_every_trainable_param_once(deeplab):
    """DeepLab-V2 optimiser: backbone at lr, the new ASPP heads at 10 lr; every trainable parameter exactly once,
    frozen BN parameters in no group."""
    for model in (deeplab, models.TinyDeepLab(5, width=4),
                  models.PixelSelector(models.TinyBackbone(width=4), 5)):
        groups = model.param_groups(0.01)
        assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]
        assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
        head_ids = {id(p) for p in groups[1]["params"]}
        assert head_ids.isdisjoint(id(p) for p in model.backbone.parameters())
    n_trainable = sum(p.numel() for g in deeplab.param_groups(1.0) for p in g["params"])
    n_frozen_bn = sum(2 * m.num_features for m in deeplab.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    assert n_trainable == 44_601_560 - n_frozen_bn


# ----------------------------------------------------------------------------- ASPP

def test_aspp_sums_all_four_branches():
    """DeepLab-V2's ASPP: the class scores of the four dilated branches (6, 12, 18, 24) are summed, and every
    branch contributes (AdaptSegNet's classifier returns after two)."""
    torch.manual_seed(1)
    aspp = models.ASPP(8, 3)
    assert [b.dilation for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    for b in aspp.branches:
        nn.init.normal_(b.bias)
    x = torch.randn(2, 8, 30, 30)
    with torch.no_grad():
        out = aspp(x)
        parts = [b(x) for b in aspp.branches]
        torch.testing.assert_close(out, sum(parts))
        for i, b in enumerate(aspp.branches):
            saved = b.weight.clone(), b.bias.clone()
            b.weight.zero_()
            b.bias.zero_()
            without = aspp(x)
            b.weight.copy_(saved[0])
            b.bias.copy_(saved[1])
            assert not torch.allclose(without, out)
            torch.testing.assert_close(out - without, parts[i])               # exactly branch i's share


# ----------------------------------------------------------------------------- discriminator D

def test_fc_discriminator_parameters_and_output_stride():
    """AdaptSegNet's D: 2,781,121 parameters for 19 classes; five stride-2 convs: 64x128 -> 2x4."""
    d = models.FCDiscriminator(19)
    by_hand = (19 * 64 * 16 + 64) + (64 * 128 * 16 + 128) + (128 * 256 * 16 + 256) \
        + (256 * 512 * 16 + 512) + (512 * 1 * 16 + 1)
    assert by_hand == 2_781_121 == models.count_parameters(d)
    with torch.no_grad():
        out = d(torch.softmax(torch.randn(2, 19, 64, 128), dim=1))
    assert out.shape == (2, 1, 2, 4)


def test_fc_discriminator_returns_logits_not_probabilities():
    """Eq. 3 uses BCE-with-logits: D has no sigmoid, its outputs go below 0 and above 1."""
    torch.manual_seed(2)
    d = models.FCDiscriminator(4)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    prob = torch.softmax(torch.randn(3, 4, 64, 64), dim=1)
    last = d.net[-1]
    with torch.no_grad():
        last.bias.fill_(5.0)
        assert (d(prob) > 1).all()
        last.bias.fill_(-5.0)
        assert (d(prob) < 0).all()


# ----------------------------------------------------------------------------- tiny backbone, pixel selector (B)

def test_tiny_backbone_batchnorm_trains_normally():
    """TinyBackbone (the CPU stand-in) trains its BN: train mode, trainable affine, running statistics move."""
    bb = models.TinyBackbone(width=4)
    bb.train()
    bns = [m for m in bb.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 9 and all(m.training for m in bns)
    assert all(m.weight.requires_grad and m.bias.requires_grad for m in bns)
    before = bns[0].running_mean.clone()
    f3, f4 = bb(torch.rand(2, 3, 32, 40))
    assert not torch.equal(before, bns[0].running_mean)
    assert f3.shape == (2, 16, 4, 5) and f4.shape == (2, 32, 4, 5)            # stride 8, channels (4w, 8w)
    assert bb.channels == (16, 32)


def test_pixel_selector_heads_start_different():
    """Sec. 3.2: B = (G, F1, F2); the heads must start different (or Eq. 4's mask is empty at step 0);
    feat is G's layer4 output with backbone.channels[1] channels, at output stride 8."""
    torch.manual_seed(3)
    sel = models.PixelSelector(models.TinyBackbone(width=4), num_classes=5)
    sel.eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        l1, l2, feat = sel(x)
        _, f4 = sel.backbone(x)
    assert l1.shape == l2.shape == (2, 5, 4, 6)
    assert feat.shape == (2, sel.backbone.channels[1], 4, 6)
    torch.testing.assert_close(feat, f4)
    assert not torch.allclose(l1, l2)
    assert not torch.equal(sel.head1.branches[0].weight, sel.head2.branches[0].weight)
    with torch.no_grad():
        torch.testing.assert_close(sel.head1(feat), l1)
        torch.testing.assert_close(sel.head2(feat), l2)


def test_no_hardcoded_cuda_calls():
    """Device-agnostic code: no `.cuda(` call in models.py, labor.py or selection.py (move with .to(device))."""
    for name in ("models.py", "labor.py", "selection.py"):
        source = (ROOT / name).read_text()
        tree = ast.parse(source)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "cuda"]
        assert calls == [], f"{name} uses .cuda at line {calls[0].lineno}"
        # the text check, on code only (models.py's docstring mentions `.cuda()` to say it is not used)
        doc_ranges = [(n.lineno, n.end_lineno) for n in ast.walk(tree)
                      if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]
        for i, ln in enumerate(source.splitlines(), start=1):
            if any(a <= i <= b for a, b in doc_ranges) or ln.lstrip().startswith("#"):
                continue
            assert ".cuda(" not in ln.split("#")[0], f"{name}:{i}: {ln}"
