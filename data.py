"""
Data for LabOR: the class tables, the real datasets' loaders, and the target-train view the trainer gets.

LabOR (Shin et al., ICCV 2021) adapts a model trained on GTA5 (video-game frames, labelled) to Cityscapes (real
photos, unlabelled but for the pixels an annotator is asked for). This file holds:
  1. class tables and palettes (Cityscapes train IDs, the label-ID lookup, the synthetic benchmark's 9 classes)
  2. real loaders `GTA5` and `Cityscapes`, with clear errors for broken folders (tests/fakes.py writes tiny
     datasets in their layouts)
  3. your own data: `Folder` (mmsegmentation's img_dir/ann_dir layout) and `Classes` (its class file), with the
     same clear errors (docs/own_data.md; tools/export_synthetic.py writes the benchmark in this layout)
  4. helpers: `ImagesOnly` (target train without its labels), `real_sizes`, `colorize`, `denormalize`
  5. `build_data`: the datasets of a run, from its flags (the synthetic benchmark, your folders, or GTA5 and
     Cityscapes)

The built-in synthetic benchmark, which needs no download, is synthetic.py (its 9 classes are named here too).

Conventions: images are float tensors (3, H, W) in [0, 1] (no mean/std normalisation,
the model does that), labels are long tensors (H, W) of train IDs with IGNORE_INDEX
(255) for pixels that are not scored.
"""

import json
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
    """Shared loading for GTA5, Cityscapes and Folder: subclasses fill `self.pairs` (image, label or None)."""

    classes, num_classes, palette = CITYSCAPES_CLASSES, len(CITYSCAPES_CLASSES), CITYSCAPES_PALETTE
    size = label_size = None  # (W, H) resize targets, None = keep

    def __len__(self):
        """Number of (image, label) pairs."""
        return len(self.pairs)

    def train_ids(self, ids, path):
        """Label values as stored (H, W) -> train IDs (H, W) uint8: here Cityscapes label IDs (Folder: its class
        file's map); DatasetError for a value outside the map."""
        _check_label_ids(ids, path)
        return LABEL_ID_TO_TRAIN_ID[ids]

    def load(self, i):
        """Read pair i as uint8 arrays: image (H, W, 3), label of train IDs (H, W) (None: no label file), resized."""
        image_path, label_path = self.pairs[i]
        image = _open_image(image_path, "RGB")
        label = None
        if label_path is not None:
            raw = _open_image(label_path)
            if raw.mode not in ("1", "L", "P") and not raw.mode.startswith("I"):  # I, I;16: 16/32-bit
                raise DatasetError(f"label {label_path} has mode {raw.mode}; expected a single-channel map of "
                                   f"label values (not a colour image such as Cityscapes' *_color.png).")
            if raw.size != image.size:
                raise DatasetError(f"label {label_path} is {raw.size[0]}x{raw.size[1]} but its image "
                                   f"{image_path} is {image.size[0]}x{image.size[1]}; they must match.")
            label = Image.fromarray(self.train_ids(np.asarray(raw).astype(np.uint8) if raw.mode == "1"
                                                   else np.asarray(raw), label_path))   # (H, W) train IDs
            if self.label_size is not None and label.size != tuple(self.label_size):
                label = label.resize(tuple(self.label_size), Image.NEAREST)
            label = np.array(label)                                   # writable copy for torch
        if self.size is not None and image.size != tuple(self.size):
            image = image.resize(tuple(self.size), Image.BILINEAR)
        return np.array(image), label

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
# 3. Your own data: mmsegmentation's custom-dataset layout and a class file (docs/own_data.md)

FOLDER_LAYOUT = ("root/img_dir/{split}/<name><image suffix> and root/ann_dir/{split}/<name><label suffix> "
                 "(docs/own_data.md)")


class Classes:
    """A class file, JSON: {"classes": [names in train-ID order], "palette": [[r, g, b], ...] (optional),
    "map": {"value on disk": train ID, ...} (optional)}. Without a map the label files hold train IDs 0..C-1 and
    255 (ignored), and any other value is an error; with one, every value it does not name becomes 255.

    Example (docs/own_data.md): {"classes": ["road", "car"], "map": {"7": 0, "26": 1}}: Cityscapes label IDs.
    """

    def __init__(self, path):
        """Read and check the file; DatasetError (naming it) for anything that is not as above."""
        self.path = Path(path)
        try:
            spec = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"class file {path} does not parse: {e}") from e
        names = spec.get("classes") if isinstance(spec, dict) else None
        if (not isinstance(names, list) or not 0 < len(names) < IGNORE_INDEX or len(set(names)) != len(names)
                or not all(isinstance(n, str) and n for n in names)):
            self._fail('needs "classes": a list of distinct class names in train-ID order (at most 254)')
        self.names = tuple(names)
        C = len(names)
        colours = spec.get("palette", [_default_colour(n, k) for k, n in enumerate(names)])
        if not (isinstance(colours, list) and len(colours) == C and all(
                isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                for c in colours)):
            self._fail(f'"palette" must hold one [r, g, b] (0..255) per class, {C} in all')
        self.palette = np.array(colours, dtype=np.uint8)                 # (C, 3)
        self.lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)            # value on disk -> train ID
        self.valid = np.zeros(256, dtype=bool)                           # values a label file may hold
        if "map" in spec:
            table = spec["map"]
            pairs = [(k, v) for k, v in table.items()] if isinstance(table, dict) else []
            if not pairs or not all(k.isdigit() and int(k) <= 255 and isinstance(v, int)
                                    and (0 <= v < C or v == IGNORE_INDEX) for k, v in pairs):
                self._fail(f'"map" must map label values on disk ("0".."255") to train IDs 0..{C - 1} or 255')
            self.lut[[int(k) for k, _ in pairs]] = [v for _, v in pairs]
            self.valid[:] = True                                         # everything else: 255
        else:
            self.lut[:C], self.valid[:C] = np.arange(C), True           # labels already hold train IDs
        self.valid[IGNORE_INDEX] = True

    def _fail(self, what):
        raise DatasetError(f"class file {self.path}: {what} (docs/own_data.md)")

    def train_ids(self, ids, path):
        """Label values on disk (H, W) -> train IDs (H, W) uint8; DatasetError for a value outside the map."""
        values = ids.astype(np.int64)                                    # (8- or 16-bit PNGs)
        inside = (values >= 0) & (values <= 255)
        outside = ~(inside & self.valid[np.where(inside, values, 0)])
        if outside.any():
            allowed = "0..255" if self.valid.all() else f"train IDs 0..{len(self.names) - 1} and 255"
            raise DatasetError(f"label {path} holds values {np.unique(values[outside])[:10].tolist()} outside "
                               f"the class file {self.path} ({allowed}); add them to its \"map\" or fix the label.")
        return self.lut[values]


def _default_colour(name, k):
    """A class's colour when the class file gives none: Cityscapes' for its names, else a fixed random one."""
    if name in CITYSCAPES_CLASSES:
        return CITYSCAPES_PALETTE[CITYSCAPES_CLASSES.index(name)].tolist()
    return np.random.default_rng(k).integers(0, 256, 3).tolist()


def _by_name(folder, suffixes, what, layout):
    """{name: path} of the files under `folder` (subfolders too) that end in one of `suffixes`, the name being
    the path inside `folder` without its suffix; DatasetError for a missing or empty folder or a name twice."""
    _check_folder(folder, f"{what} folder", layout)
    found = {}
    for path in sorted(folder.rglob("*")):
        suffix = next((s for s in suffixes if path.name.lower().endswith(s.lower())), None)
        if suffix is None or not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()[:-len(suffix)]
        if name in found:
            raise DatasetError(f"{path} and {found[name]} are two {what}s of one name; keep one.")
        found[name] = path
    if not found:
        raise DatasetError(f"no {what}s ({' or '.join(suffixes)}) in {folder}: an empty split. Expected layout: "
                           f"{layout}")
    return found


class Folder(_LabelledFolder):
    """Your own images, in mmsegmentation's custom-dataset layout (docs/own_data.md):

        root/img_dir/{train,val}/<name>.png (or .jpg)      root/ann_dir/{train,val}/<name>.png

    Image and label share <name> (subfolders allowed); labels are single-channel PNGs mapped by the class file
    (`Classes`). size=(W, H): images resized bilinear, labels nearest, as GTA5 and Cityscapes. labels_required=
    False: a split may lack ann_dir (target train, which only an annotator labels): then `labelled` is False and
    only `image(i)` reads it. Every file is read once here, so a broken one stops a run before it trains.
    """

    def __init__(self, root, split, classes, size=None, img_suffix=(".png", ".jpg"), seg_suffix=".png",
                 labels_required=True):
        """Match images and labels by name, then read every pair once (DatasetError names the broken file)."""
        self.root, self.split, self.size, self.label_size = Path(root), split, size, size
        self.classes, self.num_classes, self.palette = classes.names, len(classes.names), classes.palette
        self.class_file = classes
        layout = FOLDER_LAYOUT.format(split=split)
        _check_folder(self.root, "dataset folder", layout)
        images = _by_name(self.root / "img_dir" / split, tuple(img_suffix), "image", layout)
        ann = self.root / "ann_dir" / split
        self.labelled = labels_required or ann.is_dir()
        labels = _by_name(ann, (seg_suffix,), "label", layout) if self.labelled else {}
        for name, label in labels.items():
            if name not in images:
                raise DatasetError(f"label {label} has no image: expected {self.root / 'img_dir' / split / name} "
                                   f"with {' or '.join(img_suffix)}. Expected layout: {layout}")
        for name, image in images.items():
            if self.labelled and name not in labels:
                raise DatasetError(f"image {image} has no label: expected {ann / name}{seg_suffix}. "
                                   f"Expected layout: {layout}")
        self.pairs = [(images[n], labels.get(n)) for n in sorted(images)]
        for i in range(len(self.pairs)):
            self.load(i)                   # every file read once: a broken one stops here, before any training

    def train_ids(self, ids, path):
        """Label values on disk -> train IDs by the class file."""
        return self.class_file.train_ids(ids, path)

    def image(self, i):
        """Image i alone, (3, H, W) float in [0, 1] (what ImagesOnly shows the trainer of an unlabelled split)."""
        image, _ = self.load(i)
        return torch.from_numpy(image).permute(2, 0, 1).float().div_(255).contiguous()  # as synthetic.to_tensors

    def __getitem__(self, i):
        """(image (3, H, W) float in [0, 1], label (H, W) long of train IDs / 255)."""
        if not self.labelled:
            raise DatasetError(f"{self.root / 'ann_dir' / self.split} does not exist: {self.split} has no labels")
        return super().__getitem__(i)


# -----------------------------------------------------------------------------
# 4. Helpers


def real_sizes(preset, source_size=None, target_size=None):
    """(W, H) of source and target images for the real datasets: AdaptSegNet's 1280x720 and 1024x512 with the
    paper preset, half of that otherwise; an explicit (W, H) wins."""
    paper = preset == "paper"
    src = tuple(source_size) if source_size else ((1280, 720) if paper else (640, 360))
    tgt = tuple(target_size) if target_size else ((1024, 512) if paper else (512, 256))
    return src, tgt


def folder_sizes(preset, size, source_size=None, target_size=None):
    """(W, H) of source and target under --data folder: as given; else the paper's 1280x720 and 1024x512 with the
    paper preset; else --size (H, W) for both sides: the CPU scale of the synthetic preset (an exported benchmark
    is read at its own size)."""
    if preset == "paper":
        return real_sizes(preset, source_size, target_size)
    default = tuple(size[::-1]) if size else (192, 96)
    return tuple(source_size) if source_size else default, tuple(target_size) if target_size else default


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
        """(image (3, H, W), i); the label is read and dropped (a Folder split without labels: never read)."""
        if not getattr(self.dataset, "labelled", True):
            return self.dataset.image(i), i
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
# 5. The datasets of a run

def build_data(args):
    """Source train (labelled), target train (labelled: train.run hands it to the annotator only), target eval (val,
    or the tuning split) and the class names, from a run's flags: the synthetic benchmark, your folders, or GTA5
    and Cityscapes."""
    if args.data == "synthetic":
        kw = dict(size=tuple(args.size), shift=args.shift, thing_shift=getattr(args, "thing_shift", None),
                  scenes=getattr(args, "scenes", None) or "balanced")   # (runs saved before --scenes: balanced)
        source = synthetic.synthetic_split("source", "train", n=args.n_source, seed=args.data_seed, **kw)
        target = synthetic.synthetic_split("target", "train", n=args.n_target, seed=args.data_seed, **kw)
        # the tuning split has val's distribution and another seed, so choosing settings never sees val
        eval_seed = args.data_seed + (0 if args.eval_split == "val" else 1000)
        evals = synthetic.synthetic_split("target", "val", n=args.n_val, seed=eval_seed, **kw)
        return source, target, evals, source.classes
    if args.data == "folder":
        return folder_data(args)
    src_size, tgt_size = real_sizes(args.preset, args.source_size, args.target_size)
    source = GTA5(args.gta5_root, list_path=args.gta5_list, size=src_size)
    target = Cityscapes(args.cityscapes_root, "train", list_path=args.cityscapes_list, size=tgt_size,
                        label_size=tgt_size)
    # evaluation as the field does: predict at 1024x512, upsample to the full-resolution label
    evals = Cityscapes(args.cityscapes_root, "val", size=tgt_size, label_size=None)
    return source, target, evals, source.classes


def folder_data(args):
    """--data folder: each side your folder (Folder, --source-root / --target-root, with --classes) or, with the
    same 19 classes, GTA5 (--gta5-root) as source or Cityscapes (--cityscapes-root) as target. Target train needs no
    labels here (a person may label it); target val does, for evaluation."""
    src_size, tgt_size = folder_sizes(args.preset, args.size, args.source_size, args.target_size)
    classes = Classes(args.classes) if args.classes else None
    real = [name for name, root in (("GTA5 (source)", args.gta5_root), ("Cityscapes (target)", args.cityscapes_root))
            if root]
    if classes is None and len(real) < 2:
        raise DatasetError("--data folder needs --classes FILE, the class file of your folder (docs/own_data.md)")
    if classes is not None and real and classes.names != CITYSCAPES_CLASSES:
        names = ", ".join(classes.names[:4]) + (", ..." if len(classes.names) > 4 else "")
        raise DatasetError(f"class file {classes.path} names {len(classes.names)} classes ({names}) but {real[0]} has "
                           f"Cityscapes' 19 in train-ID order ({', '.join(CITYSCAPES_CLASSES[:4])}, ...): list those, "
                           f"in that order")
    kw = dict(classes=classes, img_suffix=tuple(args.img_suffix), seg_suffix=args.seg_suffix)
    if args.source_root:
        source = Folder(args.source_root, "train", size=src_size, **kw)
    else:
        source = GTA5(args.gta5_root, list_path=args.gta5_list, size=src_size)
    if args.target_root:
        target = Folder(args.target_root, "train", size=tgt_size, labels_required=False, **kw)
        evals = Folder(args.target_root, "val", size=tgt_size, **kw)
    else:
        target = Cityscapes(args.cityscapes_root, "train", list_path=args.cityscapes_list, size=tgt_size,
                            label_size=tgt_size)
        evals = Cityscapes(args.cityscapes_root, "val", size=tgt_size, label_size=None)
    return source, target, evals, source.classes
