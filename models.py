"""Models of LabOR: the segmentation model A, the pixel selector B and the discriminator D.

* `DeepLabV2`   model A at full scale: ResNet-101 (output stride 8) + ASPP classifier, plus AdaptSegNet's
                auxiliary ASPP head on layer3 (the "multi-level" outputs of Eq. 3).
* `TinyDeepLab` the same interface on a small dilated CNN, so the synthetic benchmark trains on a laptop CPU.
* `PixelSelector` model B: one shared backbone, two ASPP classifier heads (MCD-style, Sec. 3.2).
* `FCDiscriminator` AdaptSegNet's fully-convolutional discriminator on softmax outputs (Eq. 3).

Every segmentation model takes images as float tensors in [0, 1] of shape (B, 3, H, W) and normalises them
itself with the ImageNet statistics, so data.py never has to. No model calls `.cuda()`: move it with `.to(device)`.
"""
import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std with ImageNet statistics; buffers are not saved in checkpoints (they are constants)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class ASPP(nn.Module):
    """DeepLab-V2's atrous spatial pyramid pooling classifier: four parallel 3x3 convs with dilations
    6, 12, 18, 24 whose class scores are SUMMED.

    AdaptSegNet's `Classifier_Module` returns inside its loop and so sums only the first two branches; the
    DeepLab-V2 paper (and this code) sums all four. tests/test_models.py checks that every branch contributes.
    """

    def __init__(self, in_channels, num_classes, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations)
        for conv in self.branches:  # DeepLab-V2 / AdaptSegNet initialisation
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):                                  # x: (B, C_in, h, w)
        return sum(branch(x) for branch in self.branches)  # (B, num_classes, h, w)


# ----------------------------------------------------------------------------------------------------------------
# Backbones: each returns the features of its "layer3" and "layer4" (the multi-level outputs), output stride 8.
# ----------------------------------------------------------------------------------------------------------------

class ResNet101Backbone(nn.Module):
    """torchvision's ResNet-101 with layer3 dilated by 2 and layer4 by 4 (output stride 8), as DeepLab-V2.

    Batch norm is frozen (running statistics and affine parameters fixed at their ImageNet values) because
    the paper trains with batch size 1, as AdaptSegNet does. torchvision puts the stride of a bottleneck on
    its 3x3 conv, the Caffe ResNet of AdaptSegNet on its first 1x1 conv: same parameters, slightly different
    features (listed under "departures" in the README).
    """
    channels = (1024, 2048)  # (layer3, layer4)

    def __init__(self, weights=None):
        super().__init__()
        import torchvision  # (here: importing it takes seconds, and the tiny model of the CPU runs needs none of it)
        tv_weights = None
        if weights == "imagenet":  # downloaded by torchvision on the user's machine, never unasked
            tv_weights = torchvision.models.ResNet101_Weights.IMAGENET1K_V1
        net = torchvision.models.resnet101(weights=tv_weights, replace_stride_with_dilation=[False, True, True])
        if weights not in (None, "imagenet"):  # an offline file: a torchvision resnet101 state dict
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]  # only the unused classifier may be absent
            if missing or unexpected:  # strict=False alone would silently keep the random init
                raise ValueError(f"weights file {weights} is not a torchvision resnet101 state dict: missing "
                                 f"{missing[:3]}, unexpected {unexpected[:3]} ({len(missing)} and "
                                 f"{len(unexpected)} keys in all)")
        self.normalize = Normalize()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        for m in self.modules():  # frozen BN: keep the ImageNet running statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x):                           # x: (B, 3, H, W) in [0, 1]
        x = self.stem(self.normalize(x))            # (B, 64, H/4, W/4)
        x = self.layer2(self.layer1(x))             # (B, 512, H/8, W/8)
        f3 = self.layer3(x)                         # (B, 1024, H/8, W/8)
        f4 = self.layer4(f3)                        # (B, 2048, H/8, W/8)
        return f3, f4


def _conv_bn_relu(cin, cout, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A small dilated CNN with ResNet's layout in miniature: three stride-2 stages (output stride 8), then a
    "layer3" with dilation 2 and a "layer4" with dilation 4, exactly where DeepLab-V2 dilates. Width 24 keeps
    the default synthetic run within minutes on a 2-core CPU (see README, "Speed")."""

    def __init__(self, width=24):
        super().__init__()
        w = width
        self.channels = (4 * w, 8 * w)
        self.normalize = Normalize()
        self.stem = nn.Sequential(_conv_bn_relu(3, w, 2), _conv_bn_relu(w, w),            # H/2
                                  _conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 2 * w),  # H/4
                                  _conv_bn_relu(2 * w, 4 * w, 2))                           # H/8
        self.layer3 = nn.Sequential(_conv_bn_relu(4 * w, 4 * w, dilation=2), _conv_bn_relu(4 * w, 4 * w, dilation=2))
        self.layer4 = nn.Sequential(_conv_bn_relu(4 * w, 8 * w, dilation=4), _conv_bn_relu(8 * w, 8 * w, dilation=4))

    def forward(self, x):                           # x: (B, 3, H, W) in [0, 1]
        x = self.stem(self.normalize(x))            # (B, 4w, H/8, W/8)
        f3 = self.layer3(x)                         # (B, 4w, H/8, W/8)
        f4 = self.layer4(f3)                        # (B, 8w, H/8, W/8)
        return f3, f4


def make_backbone(name, weights=None, width=24):
    """'deeplabv2' -> ResNet-101 (weights None, 'imagenet' or a file path); 'tiny' -> TinyBackbone."""
    if name == "deeplabv2":
        return ResNet101Backbone(weights)
    if name == "tiny":
        return TinyBackbone(width)
    raise ValueError(f"unknown model {name!r}: use 'tiny' or 'deeplabv2'")


# ----------------------------------------------------------------------------------------------------------------
# Model A: DeepLab-V2 with AdaptSegNet's multi-level outputs
# ----------------------------------------------------------------------------------------------------------------

class SegModel(nn.Module):
    """Backbone + ASPP on layer4 (main output) + ASPP on layer3 (auxiliary output, AdaptSegNet's multi-level).

    forward(x) -> (logits_main, logits_aux), each (B, num_classes, H/8, W/8); logits_aux is None when aux=False.
    Logits stay at output stride 8: the losses upsample them to the label size (labor.seg_loss).
    """

    def __init__(self, backbone, num_classes, aux=True):
        super().__init__()
        self.backbone = backbone
        self.head = ASPP(backbone.channels[1], num_classes)
        self.head_aux = ASPP(backbone.channels[0], num_classes) if aux else None

    def forward(self, x):
        f3, f4 = self.backbone(x)
        logits_main = self.head(f4)                                               # (B, C, H/8, W/8)
        logits_aux = self.head_aux(f3) if self.head_aux is not None else None     # (B, C, H/8, W/8)
        return logits_main, logits_aux

    def param_groups(self, lr):
        """DeepLab-V2 / AdaptSegNet: the backbone learns at lr, the freshly initialised heads at 10 * lr."""
        heads = [p for m in (self.head, self.head_aux) if m is not None for p in m.parameters()]
        return [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": lr, "lr_mult": 1.0},
                {"params": heads, "lr": 10 * lr, "lr_mult": 10.0}]


def DeepLabV2(num_classes=19, aux=True, weights=None):
    """DeepLab-V2 (ResNet-101, ASPP) with AdaptSegNet's auxiliary head; 44,601,560 parameters for 19 classes."""
    return SegModel(ResNet101Backbone(weights), num_classes, aux)


def TinyDeepLab(num_classes=9, aux=True, width=24):
    """The same model on TinyBackbone, for the synthetic benchmark on CPU."""
    return SegModel(TinyBackbone(width), num_classes, aux)


# ----------------------------------------------------------------------------------------------------------------
# Model B: the pixel selector
# ----------------------------------------------------------------------------------------------------------------

class PixelSelector(nn.Module):
    """One shared backbone G and two classifier heads F1, F2 (Sec. 3.2, following MCD).

    forward(x) -> (logits1, logits2, feat): logits (B, C, H/8, W/8) from each head and the layer4 features
    feat (B, D, H/8, W/8) that PPL may use as its prototype space. forward(x, heads_on_detached=True) also
    returns the heads applied to detached features, so the trainer can send the discrepancy's gradient to the
    heads alone (labor.discrepancy explains why).
    """

    def __init__(self, backbone, num_classes):
        super().__init__()
        self.backbone = backbone
        self.head1 = ASPP(backbone.channels[1], num_classes)
        self.head2 = ASPP(backbone.channels[1], num_classes)
        # The two heads must start different, or Eq. 4's mask is empty and Eq. 6 has zero gradient at step 0.
        # ASPP's random normal init already makes them differ.

    def heads(self, feat):
        return self.head1(feat), self.head2(feat)                # 2 x (B, C, H/8, W/8)

    def forward(self, x, heads_on_detached=False):
        _, feat = self.backbone(x)                               # (B, D, H/8, W/8)
        logits1, logits2 = self.heads(feat)
        if not heads_on_detached:
            return logits1, logits2, feat
        # The heads once more on features cut from G's graph: a loss on these outputs trains F1 and F2 only
        # (Eq. 6, see labor.discrepancy). Done inside forward so DistributedDataParallel sees one forward.
        d1, d2 = self.heads(feat.detach())
        return logits1, logits2, feat, d1, d2

    def param_groups(self, lr):
        heads = list(self.head1.parameters()) + list(self.head2.parameters())
        return [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": lr, "lr_mult": 1.0},
                {"params": heads, "lr": 10 * lr, "lr_mult": 10.0}]


# ----------------------------------------------------------------------------------------------------------------
# Discriminator D (Eq. 3)
# ----------------------------------------------------------------------------------------------------------------

class FCDiscriminator(nn.Module):
    """AdaptSegNet's discriminator: five 4x4 stride-2 convs, channels C -> 64 -> 128 -> 256 -> 512 -> 1,
    LeakyReLU(0.2) between, no sigmoid (it returns logits: the losses use BCE-with-logits or least squares).

    Input: the segmentation softmax (B, C, h, w); output: (B, 1, h/32, w/32), one source-vs-target logit per
    patch. 2,781,121 parameters for C = 19.
    """

    def __init__(self, num_classes, ndf=64):
        super().__init__()
        chans = [num_classes, ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, prob):          # prob: (B, C, h, w), a softmax over dim=1
        return self.net(prob)         # (B, 1, h/32, w/32)


def count_parameters(module):
    """All parameters, trainable or not (frozen BN's affine parameters count, as in AdaptSegNet)."""
    return sum(p.numel() for p in module.parameters())
