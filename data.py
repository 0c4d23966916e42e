"""
Data for LabOR: the class tables, the real datasets' loaders, and the target-train view the trainer gets.

LabOR (Shin et al., ICCV 2021) adapts a model trained on GTA5 (video-game frames, labelled) to Cityscapes (real
photos, unlabelled but for the pixels an annotator is asked for). This file holds:
  1. class tables and palettes (Cityscapes train IDs, the label-ID lookup, the synthetic benchmark's 9 classes)
  2. real loaders `GTA5` and `Cityscapes`, with clear errors for broken folders (tests/fakes.py writes tiny
     datasets in their layouts)
  3. helpers: `ImagesOnly` (target train without its labels), `real_sizes`, `colorize`, `denormalize`
  4. `build_data`: the datasets of a run, from its flags (the synthetic benchmark, or GTA5 and Cityscapes)

The built-in synthetic benchmark, which needs no download, is synthetic.py (its 9 classes are named here too).

Conventions: images are float tensors (3, H, W) in [0, 1] (no mean/std normalisation,
the model does that), labels are long tensors (H, W) of train IDs with IGNORE_INDEX
(255) for pixels that are not scored.
"""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import synthetic
from synthetic import (BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY, SYNTHETIC_CLASSES,  # noqa: F401
                       SYNTHETIC_PALETTE, VEGETATION)
from synthetic import to_tensors as _to_tensors

# -----------------------------------------------------------------------------
# 1. Classes and palettes

IGNORE_INDEX = 255  # label value for "not scored" pixels (CrossEntropyLoss(ignore_index=255))

# The 19 Cityscapes classes used for training and evaluation ("train IDs" 0..18).
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
# Official Cityscapes colours for the train IDs (cityscapesScripts/helpers/labels.py).
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)  # (19, 3)

# Cityscapes "label IDs" (0..33, what the PNG files store) of the 19 train IDs, in order.
# GTA5 labels use the same IDs, which is why GTA5 -> Cityscapes adaptation works at all.
TRAIN_ID_TO_LABEL_ID = np.array(
    [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], dtype=np.uint8)
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)  # (256,) lookup table
LABEL_ID_TO_TRAIN_ID[TRAIN_ID_TO_LABEL_ID] = np.arange(19)
# Values a label file may contain: the 34 label IDs and 255. Anything else means the
# file is not a label-ID map (e.g. a colour or instance PNG) and we refuse it.
VALID_LABEL_IDS = np.array([*range(34), IGNORE_INDEX], dtype=np.int64)
_VALID_LABEL_LUT = np.zeros(256, dtype=bool)
_VALID_LABEL_LUT[VALID_LABEL_IDS] = True

# Where the synthetic benchmark's 9 classes (synthetic.SYNTHETIC_CLASSES) sit among the Cityscapes train IDs.
SYNTHETIC_TO_CITYSCAPES = np.array(
    [CITYSCAPES_CLASSES.index(c) for c in SYNTHETIC_CLASSES], dtype=np.int64)  # (9,)


class DatasetError(ValueError):
    """A dataset folder or file is missing or broken; the message names the path."""


# -----------------------------------------------------------------------------
# 2. Real datasets: GTA5 (source) and Cityscapes (target)


def _pngs(folder):
    """Sorted names of the .png files directly inside `folder`."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".png"))


def _read_list(list_path):
    """Non-empty stripped lines of an AdaptSegNet-style list file."""
    if not os.path.isfile(list_path):
        raise DatasetError(f"list file not found: {list_path}. Pass list_path=None to use every "
                           f"image in the folder, or a text file with one image name per line.")
    with open(list_path) as f:
        return [line.strip() for line in f if line.strip()]


def _open_image(path, mode=None):
    """Fully decode an image (PIL is lazy), optionally convert it; decoder errors -> DatasetError."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()  # copy: closing frees the pixels
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read {path}: {e}. The file is missing, truncated or not "
                           f"an image; re-download or re-extract it.") from e


def _check_label_ids(ids, path):
    """Raise DatasetError if the label-ID map `ids` holds values outside VALID_LABEL_IDS."""
    if ids.dtype == np.uint8:
        ok = _VALID_LABEL_LUT[ids].all()                             # one lookup per pixel
    else:                                                            # 16/32-bit PNG
        ok = ids.min() >= 0 and ids.max() <= 255 and _VALID_LABEL_LUT[ids.astype(np.int64)].all()
    if not ok:
        bad = np.setdiff1d(np.unique(ids), VALID_LABEL_IDS)
        raise DatasetError(f"label {path} contains values {bad[:10].tolist()} outside the "
                           f"Cityscapes label IDs 0..33 and 255; is it really a label-ID map "
                           f"(not a *_color.png / *_instanceIds.png file)?")


class _LabelledFolder(torch.utils.data.Dataset):
    """Shared loading for GTA5 and Cityscapes: subclasses fill `self.pairs` (image, label)."""

    classes, num_classes, palette = CITYSCAPES_CLASSES, len(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE
    size = label_size = None  # (W, H) resize targets, None = keep

    def __len__(self):
        """Number of (image, label) pairs."""
        return len(self.pairs)

    def load(self, i):
        """Read pair i as uint8 arrays: image (H, W, 3), label of train IDs (H, W), resized."""
        image_path, label_path = self.pairs[i]
        image = _open_image(image_path, "RGB")
        raw = _open_image(label_path)
        if raw.mode not in ("L", "P") and not raw.mode.startswith("I"):  # I, I;16: 16/32-bit
            raise DatasetError(f"label {label_path} has mode {raw.mode}; expected a single-channel "
                               f"map of Cityscapes label IDs (not the *_color.png file).")
        if raw.size != image.size:
            raise DatasetError(f"label {label_path} is {raw.size[0]}x{raw.size[1]} but its image "
                               f"{image_path} is {image.size[0]}x{image.size[1]}; they must match.")
        ids = np.asarray(raw)                                        # (H, W) label IDs
        _check_label_ids(ids, label_path)
        label = LABEL_ID_TO_TRAIN_ID[ids]                            # (H, W) train IDs
        if self.size is not None:
            image = image.resize(tuple(self.size), Image.BILINEAR)
        label = Image.fromarray(label)
        if self.label_size is not None:
            label = label.resize(tuple(self.label_size), Image.NEAREST)
        return np.array(image), np.array(label)                       # writable copies for torch

    def __getitem__(self, i):
        """(image (3, H, W) float in [0, 1], label (H, W) long of train IDs / 255)."""
        return _to_tensors(*self.load(i))


def _check_folder(path, what, layout):
    """Raise DatasetError unless `path` is an existing directory."""
    if not os.path.isdir(path):
        raise DatasetError(f"{what} not found: {path}. Expected layout: {layout}")


class GTA5(_LabelledFolder):
    """GTA5 (Richter et al. 2016): 24,966 game frames with Cityscapes-compatible labels.

    Layout: root/images/*.png and root/labels/*.png with the same file names; labels
    store Cityscapes label IDs and are mapped to the 19 train IDs.
    list_path: optional text file with one image file name per line (AdaptSegNet's
        train.txt); default: every png in root/images.
    size=(W, H): resize image (bilinear) and label (nearest); AdaptSegNet uses (1280, 720).
    crop=(h, w): after resizing, a random crop of this size (torch RNG, so
        torch.manual_seed makes it reproducible); None = no crop.
    """

    LAYOUT = "root/images/*.png and root/labels/*.png with the same file names"

    def __init__(self, root, list_path=None, size=None, crop=None):
        """Find the image/label pairs and check that the folder is complete (no decoding)."""
        self.root, self.size, self.label_size, self.crop = Path(root), size, size, crop
        _check_folder(self.root, "GTA5 root folder", self.LAYOUT)
        images, labels = self.root / "images", self.root / "labels"
        _check_folder(images, "GTA5 images folder", self.LAYOUT)
        _check_folder(labels, "GTA5 labels folder", self.LAYOUT)
        names = _pngs(images) if list_path is None else _read_list(list_path)
        if not names:
            raise DatasetError(f"no .png images in {images if list_path is None else list_path}. "
                               f"Expected layout: {self.LAYOUT}")
        have_images, have_labels = set(_pngs(images)), set(_pngs(labels))
        for name in names:
            if name not in have_images:
                raise DatasetError(f"image {images / name} (from {list_path}) not found.")
            if name not in have_labels:
                raise DatasetError(f"image {images / name} has no label file: expected "
                                   f"{labels / name}. Expected layout: {self.LAYOUT}")
        self.pairs = [(images / n, labels / n) for n in names]

    def __getitem__(self, i):
        """(image (3, H, W) float in [0, 1], label (H, W) long), randomly cropped if crop is set."""
        image, label = self.load(i)
        if self.crop is not None:
            (h, w), (H, W) = self.crop, label.shape
            if h > H or w > W:
                raise DatasetError(f"crop {h}x{w} is larger than {self.pairs[i][0]} ({H}x{W} after resize).")
            top = int(torch.randint(0, H - h + 1, ()))
            left = int(torch.randint(0, W - w + 1, ()))
            image, label = image[top:top + h, left:left + w], label[top:top + h, left:left + w]
        return _to_tensors(image, label)


class Cityscapes(_LabelledFolder):
    """Cityscapes (Cordts et al. 2016): 2975 train / 500 val street photos, 2048x1024.

    Layout: root/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and
            root/gtFine/{split}/<city>/<name>_gtFine_labelIds.png
    list_path: optional text file of "<city>/<name>_leftImg8bit.png" lines (AdaptSegNet).
    size=(W, H): resize the image (bilinear); the paper uses (1024, 512).
    label_size=(W, H): resize the label (nearest); None keeps it at full resolution,
        which is how the field evaluates (predictions are upsampled to the label).
    """

    LAYOUT = ("root/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and "
              "root/gtFine/{split}/<city>/<name>_gtFine_labelIds.png")

    def __init__(self, root, split="train", list_path=None, size=None, label_size=None):
        """Find the image/label pairs of `split` and check the folder (no decoding)."""
        self.root, self.split, self.size, self.label_size = Path(root), split, size, label_size
        layout = self.LAYOUT.format(split=split)
        _check_folder(self.root, "Cityscapes root folder", layout)
        images, labels = self.root / "leftImg8bit" / split, self.root / "gtFine" / split
        _check_folder(images, "Cityscapes image folder", layout)
        _check_folder(labels, "Cityscapes label folder", layout)
        if list_path is None:
            names = [f"{city}/{f}" for city in sorted(os.listdir(images)) if (images / city).is_dir()
                     for f in _pngs(images / city) if f.endswith("_leftImg8bit.png")]
        else:
            names = _read_list(list_path)
        if not names:
            where = images if list_path is None else list_path
            raise DatasetError(f"no *_leftImg8bit.png images in {where}. Expected layout: {layout}")
        self.pairs = []
        for name in names:
            image = images / name
            label = labels / name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            if not image.is_file():
                raise DatasetError(f"image {image} (from {list_path}) not found.")
            if not label.is_file():
                raise DatasetError(f"image {image} has no label file: expected {label}. "
                                   f"Expected layout: {layout}")
            self.pairs.append((image, label))


# -----------------------------------------------------------------------------
# 3. Helpers


def real_sizes(preset, source_size=None, target_size=None):
    """(W, H) of source and target images for the real datasets: AdaptSegNet's 1280x720 and 1024x512 with the
    paper preset, half of that otherwise; an explicit (W, H) wins."""
    paper = preset == "paper"
    src = tuple(source_size) if source_size else ((1280, 720) if paper else (640, 360))
    tgt = tuple(target_size) if target_size else ((1024, 512) if paper else (512, 256))
    return src, tgt


class ImagesOnly(torch.utils.data.Dataset):
    """Wrap a labelled dataset and return (image, index): the target-train view.

    In domain adaptation the trainer must never see target labels; it gets images and
    their indices, and asks for labels (the LabOR "annotator") only where it selects.
    """

    def __init__(self, dataset):
        """Keep the wrapped dataset and copy its class metadata."""
        self.dataset = dataset
        self.classes, self.num_classes = dataset.classes, dataset.num_classes
        self.palette = dataset.palette

    def __len__(self):
        """Same length as the wrapped dataset."""
        return len(self.dataset)

    def __getitem__(self, i):
        """(image (3, H, W), i); the label is read and dropped."""
        return self.dataset[i][0], i


def colorize(label, palette=None):
    """Label map (..., H, W) of ints (numpy or torch) -> RGB (..., H, W, 3) uint8.

    255 (ignore) and any value outside the palette become black. palette=None picks
    SYNTHETIC_PALETTE when every non-ignored value is < 9, else CITYSCAPES_PALETTE
    (a Cityscapes map that happens to use only IDs 0..8 gets synthetic colours then:
    pass the palette explicitly when it matters).
    """
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    label = np.asarray(label).astype(np.int64)
    if palette is None:
        valid = label[label != IGNORE_INDEX]
        palette = SYNTHETIC_PALETTE if valid.size == 0 or valid.max() < 9 else CITYSCAPES_PALETTE
    lut = np.zeros((256, 3), np.uint8)                                  # everything else: black
    lut[:len(palette)] = palette
    return lut[np.where((label >= 0) & (label < len(palette)), label, IGNORE_INDEX)]


def denormalize(image):
    """Image (3, H, W) float in [0, 1] (torch or numpy) -> (H, W, 3) uint8 for plotting."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    image = np.moveaxis(np.asarray(image), -3, -1)                     # (H, W, 3)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


# -----------------------------------------------------------------------------
# 4. The datasets of a run

def build_data(args):
    """Source train (labelled), target train (labelled: train.run hands it to the annotator only), target eval (val,
    or the tuning split) and the class names, from a run's flags."""
    if args.data == "synthetic":
        kw = dict(size=tuple(args.size), shift=args.shift, thing_shift=getattr(args, "thing_shift", None))
        source = synthetic.synthetic_split("source", "train", n=args.n_source, seed=args.data_seed, **kw)
        target = synthetic.synthetic_split("target", "train", n=args.n_target, seed=args.data_seed, **kw)
        # the tuning split has val's distribution and another seed, so choosing settings never sees val
        eval_seed = args.data_seed + (0 if args.eval_split == "val" else 1000)
        evals = synthetic.synthetic_split("target", "val", n=args.n_val, seed=eval_seed, **kw)
        return source, target, evals, source.classes
    src_size, tgt_size = real_sizes(args.preset, args.source_size, args.target_size)
    source = GTA5(args.gta5_root, list_path=args.gta5_list, size=src_size)
    target = Cityscapes(args.cityscapes_root, "train", list_path=args.cityscapes_list, size=tgt_size,
                        label_size=tgt_size)
    # evaluation as the field does: predict at 1024x512, upsample to the full-resolution label
    evals = Cityscapes(args.cityscapes_root, "val", size=tgt_size, label_size=None)
    return source, target, evals, source.classes
