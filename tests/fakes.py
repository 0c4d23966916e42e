"""assert_equal (exact comparison of checkpoints and metrics), and tiny datasets written in the real GTA5 and Cityscapes folder layouts and in the own-data layout (img_dir/ann_dir),
for the tests of the real loaders and of data.Folder.

They reuse synthetic.py's scenes, with the labels turned into Cityscapes label IDs, so a loader that reads
them back must recover exactly what was drawn.
"""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data import CITYSCAPES_PALETTE, IGNORE_INDEX, SYNTHETIC_TO_CITYSCAPES, TRAIN_ID_TO_LABEL_ID
from synthetic import SYNTHETIC_CLASSES, make_scene


def write_fake_gta5(root, n=4, size=(16, 32), seed=0):
    """Write a tiny GTA5-layout dataset (synthetic source scenes) under root; return root.

    Labels are palette ('P') PNGs of Cityscapes label IDs, like the real ones; the
    bottom row is 0 ("unlabeled", the car bonnet) and pixel (0, 0) is 255.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, label = _fake_pair("source", i, seed, size)
        Image.fromarray(image).save(root / "images" / f"{i + 1:05d}.png")
        lbl = Image.fromarray(label).convert("P")
        lbl.putpalette(np.resize(CITYSCAPES_PALETTE, (256, 3)).flatten().tolist())
        lbl.save(root / "labels" / f"{i + 1:05d}.png")
    return root


def write_fake_cityscapes(root, n=4, splits=("train", "val"), size=(16, 32), seed=0):
    """Write a tiny Cityscapes-layout dataset (synthetic target scenes) under root; return root.

    n images per split, alternating between two cities; labels are 8-bit grey PNGs of
    label IDs with the same 0 bottom row and 255 corner pixel as write_fake_gta5.
    """
    root = Path(root)
    for split in splits:
        for i in range(n):
            city = ("aachen", "bochum")[i % 2]
            name = f"{city}_{i:06d}_000019"
            for folder in ("leftImg8bit", "gtFine"):
                (root / folder / split / city).mkdir(parents=True, exist_ok=True)
            image, label = _fake_pair("target", i + 1000 * splits.index(split), seed, size)
            Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")
            Image.fromarray(label).save(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png")
    return root


def _fake_pair(domain, index, seed, size):
    """A synthetic scene with its label turned into Cityscapes label IDs (plus 0 and 255)."""
    image, label = make_scene(domain, index, "fake", seed, size)
    ids = TRAIN_ID_TO_LABEL_ID[SYNTHETIC_TO_CITYSCAPES[label]]        # (H, W) label IDs
    ids[-1, :] = 0                                                    # "unlabeled" -> 255
    ids[0, 0] = IGNORE_INDEX
    return image, ids


# ----------------------------------------------------------------------------- your own data (data.Folder)

def write_fake_folder(root, n=3, splits=("train", "val"), size=(16, 32), seed=0, domain="target",
                      labels="synthetic", img_suffix=".png", seg_suffix=".png", subfolder=""):
    """Write a tiny own-data folder in mmsegmentation's layout under root; return root.

    root/img_dir/<split>/<subfolder>/<name><img_suffix> and root/ann_dir/<split>/<subfolder>/<name><seg_suffix>,
    synthetic scenes (index i + 1000 * split number). labels: "synthetic" (train IDs 0..8, the class file of
    write_classes(path)), "cityscapes" (Cityscapes train IDs 0..18, write_classes(path, CITYSCAPES_CLASSES)) or
    "label_ids" (Cityscapes label IDs with the 0 bottom row and 255 corner of write_fake_gta5, for
    write_classes(path, CITYSCAPES_CLASSES, label_id_map())).
    """
    root = Path(root)
    for s, split in enumerate(splits):
        for kind in ("img_dir", "ann_dir"):
            (root / kind / split / subfolder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = make_scene(domain, i + 1000 * s, "fake", seed, size)
            if labels == "cityscapes":
                label = SYNTHETIC_TO_CITYSCAPES[label].astype(np.uint8)
            elif labels == "label_ids":
                image, label = _fake_pair(domain, i + 1000 * s, seed, size)
            name = f"scene_{i:03d}"
            Image.fromarray(image).save(root / "img_dir" / split / subfolder / f"{name}{img_suffix}")
            Image.fromarray(label).save(root / "ann_dir" / split / subfolder / f"{name}{seg_suffix}")
    return root


def label_id_map():
    """The class file's "map" of Cityscapes label IDs to its 19 train IDs (the rest: 255)."""
    return {str(int(v)): k for k, v in enumerate(TRAIN_ID_TO_LABEL_ID)}


def write_classes(path, names=SYNTHETIC_CLASSES, mapping=None, palette=None):
    """Write a class file (JSON) naming `names` in train-ID order, with an optional map and palette; return path."""
    spec = {"classes": list(names)}
    if palette is not None:
        spec["palette"] = palette
    if mapping is not None:
        spec["map"] = mapping
    Path(path).write_text(json.dumps(spec))
    return Path(path)


def assert_equal(a, b, where):
    """Nested dicts / lists of tensors and plain values, compared exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where
