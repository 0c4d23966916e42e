"""Tests for data.py: the synthetic benchmark's numbers, the tables, and the real loaders
on tiny fake datasets written in the real folder layouts (including broken ones)."""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402
import synthetic  # noqa: E402
import train  # noqa: E402  (train.build_data: stage 0 picks the datasets)
from fakes import write_fake_cityscapes, write_fake_gta5  # noqa: E402


# ----------------------------------------------------------------------------- tables

def test_label_id_table_maps_the_19_ids_and_ignores_the_rest():
    ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    lut = data.LABEL_ID_TO_TRAIN_ID
    assert lut.shape == (256,) and lut.dtype == np.uint8
    assert lut[ids].tolist() == list(range(19))
    others = np.setdiff1d(np.arange(256), ids)
    assert (lut[others] == 255).all()
    assert lut[7] == 0 and lut[26] == 13 and lut[0] == 255 and lut[255] == 255
    assert sorted(data.VALID_LABEL_IDS.tolist()) == [*range(34), 255]


def test_class_tables_and_palettes():
    assert len(data.CITYSCAPES_CLASSES) == 19 and data.CITYSCAPES_PALETTE.shape == (19, 3)
    assert data.CITYSCAPES_PALETTE.dtype == np.uint8
    assert data.CITYSCAPES_PALETTE[0].tolist() == [128, 64, 128]     # road
    assert data.CITYSCAPES_PALETTE[13].tolist() == [0, 0, 142]       # car
    assert data.SYNTHETIC_CLASSES == ("road", "sidewalk", "building", "vegetation", "sky",
                                      "car", "person", "pole", "traffic sign")
    assert data.SYNTHETIC_PALETTE.shape == (9, 3) and data.SYNTHETIC_PALETTE.dtype == np.uint8
    for k, name in enumerate(data.SYNTHETIC_CLASSES):   # each class keeps its Cityscapes colour
        cs = data.CITYSCAPES_CLASSES.index(name)
        assert (data.SYNTHETIC_PALETTE[k] == data.CITYSCAPES_PALETTE[cs]).all()


def test_colorize_and_denormalize():
    label = np.array([[0, 1, 8], [255, 4, 2]])
    rgb = data.colorize(label)                                        # max 8 -> synthetic palette
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert (rgb[1, 0] == 0).all()                                     # ignore -> black
    for (i, j) in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]:
        assert (rgb[i, j] == data.SYNTHETIC_PALETTE[label[i, j]]).all()
    cs = data.colorize(torch.tensor([[13, 255], [18, 0]]))           # tensor, max 18 -> Cityscapes
    assert (cs[0, 0] == data.CITYSCAPES_PALETTE[13]).all() and (cs[0, 1] == 0).all()
    assert (cs[1, 0] == data.CITYSCAPES_PALETTE[18]).all()
    forced = data.colorize(label, data.CITYSCAPES_PALETTE)
    assert (forced[0, 2] == data.CITYSCAPES_PALETTE[8]).all()

    image = torch.rand(3, 5, 7)
    out = data.denormalize(image)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(float) - image.permute(1, 2, 0).numpy() * 255).max() <= 0.5 + 1e-4


# ----------------------------------------------------------------------------- generator

def test_make_scene_is_deterministic_and_varies():
    image, label = synthetic.make_scene("target", 3)
    assert image.shape == (96, 192, 3) and image.dtype == np.uint8
    assert label.shape == (96, 192) and label.dtype == np.uint8
    again = synthetic.make_scene("target", 3, "train", 0, (96, 192), 1.0)
    assert (again[0] == image).all() and (again[1] == label).all()
    for other in [dict(index=4), dict(split="val"), dict(seed=1), dict(domain="source")]:
        kw = dict(domain="target", index=3, split="train", seed=0) | other
        other_image, other_label = synthetic.make_scene(**kw)
        assert (other_image != image).mean() > 0.3 and (other_label != label).mean() > 0.1, other
    small = synthetic.make_scene("source", 0, size=(24, 40))
    assert small[0].shape == (24, 40, 3) and small[1].shape == (24, 40)


@pytest.mark.parametrize("domain", ["source", "target"])
def test_all_classes_present_and_small_classes_rare(domain):
    labels = np.stack([synthetic.make_scene(domain, i)[1] for i in range(20)])  # (20, H, W)
    assert labels.max() <= 8
    fraction = np.bincount(labels.ravel(), minlength=9) / labels.size
    print(domain, "class fractions", dict(zip(data.SYNTHETIC_CLASSES, fraction.round(4).tolist())))
    assert (fraction > 0).all(), "every class appears somewhere in 20 scenes"
    for small in ("person", "pole", "traffic sign"):
        assert 0 < fraction[data.SYNTHETIC_CLASSES.index(small)] < 0.05
    # Many object boundaries: a good share of pixels differ from their right neighbour.
    edges = (labels[:, :, 1:] != labels[:, :, :-1]).mean()
    assert edges > 0.02


def test_generation_is_fast():
    synthetic.make_scene("target", 0)                                      # warm-up
    times = []
    for i in range(20):
        start = time.perf_counter()
        synthetic.make_scene("target", i)
        times.append(time.perf_counter() - start)
    ms = min(times) * 1000  # the fastest of 20: what the code costs, not what a busy machine lends it
    print(f"make_scene target 96x192: {ms:.2f} ms per image (fastest of 20)")
    assert ms < 25   # typically ~4 ms


def _road_mean(domain, shift, n=20):
    """Mean RGB of road pixels over n scenes."""
    pixels = [im[lb == data.ROAD] for im, lb in
              (synthetic.make_scene(domain, i, shift=shift) for i in range(n))]
    return np.concatenate(pixels).astype(np.float64).mean(0)


def test_shift_controls_the_domain_gap():
    source = _road_mean("source", 1.0)
    close = np.abs(_road_mean("target", 0.0) - source).max()
    far = np.abs(_road_mean("target", 1.0) - source).max()
    print("road colour gap at shift 0 / 1:", close, far)
    assert close < 8 and far > 25
    # shift=0 also switches off textures / blur / noise: a target image is as flat as a
    # source one (few distinct colours, mostly per object).
    flat = synthetic.make_scene("target", 0, shift=0.0)[0]
    busy = synthetic.make_scene("target", 0, shift=1.0)[0]
    n_colours = lambda im: len(np.unique(im.reshape(-1, 3), axis=0))  # noqa: E731
    assert n_colours(flat) < 100 < n_colours(busy)


def test_thing_shift_moves_only_the_things_colours():
    """thing_shift=None is shift (the benchmark unchanged); thing_shift=0 paints the target's things (here persons)
    in their source colour while everything else keeps the shift; the labels never change."""
    default = synthetic.make_scene("target", 3, shift=0.6)
    assert all((a == b).all() for a, b in zip(default, synthetic.make_scene("target", 3, shift=0.6, thing_shift=0.6)))
    things0 = synthetic.make_scene("target", 3, shift=0.6, thing_shift=0.0)
    assert (things0[1] == default[1]).all()
    label = default[1]
    person, sky = label == data.SYNTHETIC_CLASSES.index("person"), label == data.SYNTHETIC_CLASSES.index("sky")
    src_person = np.array(synthetic.SOURCE_COLORS["person"], np.float32)
    gap = lambda im: np.abs(im[person].mean(0) - src_person).max()  # noqa: E731
    print("person colour gap to source, thing_shift 0.6 / 0:", gap(default[0]), gap(things0[0]))
    assert gap(things0[0]) < gap(default[0]) - 30
    assert np.abs(things0[0][sky].astype(float).mean(0) - default[0][sky].astype(float).mean(0)).max() < 3


def test_source_ignores_shift():
    a, b = synthetic.make_scene("source", 5, shift=0.0), synthetic.make_scene("source", 5, shift=1.0)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_synthetic_streets_dataset():
    ds = synthetic.SyntheticStreets("target", "tune", size=(32, 64))     # default n: 200
    assert len(ds) == 200 and ds.num_classes == 9 and ds.classes == data.SYNTHETIC_CLASSES
    assert ds.domain == "target" and ds.split == "tune" and ds.palette.shape == (9, 3)
    image, label = ds[7]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert label.shape == (32, 64) and label.dtype == torch.int64
    assert 0 <= image.min() and image.max() <= 1 and label.max() <= 8
    ref_image, ref_label = synthetic.make_scene("target", 7, "tune", 0, (32, 64), 1.0)
    assert (label.numpy() == ref_label).all()
    assert torch.allclose(image, torch.from_numpy(ref_image).permute(2, 0, 1).float() / 255)
    assert len(synthetic.SyntheticStreets("source", n=3)) == 3
    with pytest.raises(ValueError):
        synthetic.SyntheticStreets("game")

    only = data.ImagesOnly(ds)
    img, idx = only[7]
    assert idx == 7 and torch.equal(img, image) and len(only) == 200 and only.num_classes == 9


# ----------------------------------------------------------------------------- real loaders

def _write_pair(image_path, label_path, label_ids, image_size=None):
    """Write one RGB image and one 8-bit label-ID PNG (label_ids: (H, W) array)."""
    h, w = image_size or label_ids.shape
    os.makedirs(os.path.dirname(image_path), exist_ok=True)
    os.makedirs(os.path.dirname(label_path), exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(image_path)
    Image.fromarray(np.asarray(label_ids, np.uint8)).save(label_path)


def _ids(h=16, w=32):
    """A label-ID map using 7 (road), 26 (car), 0 (unlabeled) and 255 (ignore)."""
    ids = np.full((h, w), 7, np.uint8)
    ids[:, w // 2:] = 26
    ids[0] = 0
    ids[-1] = 255
    return ids


def test_gta5_reads_and_maps_ids(tmp_path):
    root = write_fake_gta5(tmp_path / "gta", n=3)
    _write_pair(root / "images" / "09999.png", root / "labels" / "09999.png", _ids())
    ds = data.GTA5(root)
    assert len(ds) == 4 and ds.num_classes == 19 and ds.classes == data.CITYSCAPES_CLASSES
    image, label = ds[3]
    assert image.shape == (3, 16, 32) and image.dtype == torch.float32 and label.dtype == torch.int64
    assert abs(image.mean().item() - 100 / 255) < 1e-6
    assert (label[1:-1, :16] == 0).all() and (label[1:-1, 16:] == 13).all()  # 7 -> 0, 26 -> 13
    assert (label[0] == 255).all() and (label[-1] == 255).all()              # 0, 255 -> 255
    # The fake scenes' palette PNG labels go through the same table.
    raw = np.asarray(Image.open(root / "labels" / "00001.png"))
    assert (ds[0][1].numpy() == data.LABEL_ID_TO_TRAIN_ID[raw]).all()

    (tmp_path / "list.txt").write_text("00002.png\n09999.png\n\n")
    listed = data.GTA5(root, list_path=tmp_path / "list.txt", size=(16, 8))
    assert len(listed) == 2
    image, label = listed[1]
    assert image.shape == (3, 8, 16) and label.shape == (8, 16)
    assert set(label.unique().tolist()) <= {0, 13, 255}

    torch.manual_seed(0)
    image, label = data.GTA5(root, crop=(8, 10))[0]
    assert image.shape == (3, 8, 10) and label.shape == (8, 10)


def test_cityscapes_reads_splits_and_resizes(tmp_path):
    root = write_fake_cityscapes(tmp_path / "cs", n=3, splits=("train", "val"))
    assert len(data.Cityscapes(root, "train")) == 3
    name = "zurich_000000_000019"
    _write_pair(root / "leftImg8bit" / "val" / "zurich" / f"{name}_leftImg8bit.png",
                root / "gtFine" / "val" / "zurich" / f"{name}_gtFine_labelIds.png", _ids())
    ds = data.Cityscapes(root, "val", size=(16, 8))
    assert len(ds) == 4 and ds.pairs[-1][0].name == f"{name}_leftImg8bit.png"
    image, label = ds[3]
    assert image.shape == (3, 8, 16) and label.shape == (16, 32)     # label kept at full size
    assert (label[1:-1, :16] == 0).all() and (label[1:-1, 16:] == 13).all() and (label[0] == 255).all()
    image, label = data.Cityscapes(root, "val", size=(16, 8), label_size=(16, 8))[3]
    assert label.shape == (8, 16) and set(label.unique().tolist()) <= {0, 13, 255}

    (tmp_path / "val.txt").write_text(f"zurich/{name}_leftImg8bit.png\n")
    assert len(data.Cityscapes(root, "val", list_path=tmp_path / "val.txt")) == 1
    only = data.ImagesOnly(ds)
    assert only[2][1] == 2 and only[2][0].shape == (3, 8, 16) and only.num_classes == 19


# Each broken-folder case: (which loader, how to break a good fake) -> the path the
# error message must name. Folder problems fail at construction, file problems at [i].

def _break(kind, root):
    """Damage a fake dataset at `root`; return (path that must be named, fails at getitem?)."""
    gta = (root / "images").exists()
    img_dir = root / "images" if gta else root / "leftImg8bit" / "train" / "aachen"
    lbl_dir = root / "labels" if gta else root / "gtFine" / "train" / "aachen"
    first_img = sorted(img_dir.glob("*.png"))[0]
    first_lbl = sorted(lbl_dir.glob("*.png"))[0]
    if kind == "missing root":
        return root / "nope", False
    if kind == "missing images folder":
        folder = root / "images" if gta else root / "leftImg8bit" / "train"
        os.rename(folder, str(folder) + "_moved")
        return folder, False
    if kind == "missing labels folder":
        folder = root / "labels" if gta else root / "gtFine" / "train"
        os.rename(folder, str(folder) + "_moved")
        return folder, False
    if kind == "empty folder":
        folder = img_dir if gta else img_dir.parent                  # all cities of the split
        for f in folder.rglob("*.png"):
            f.unlink()
        return folder, False
    if kind == "image without label":
        first_lbl.unlink()
        return first_img, False
    if kind == "label value 200":
        ids = np.asarray(Image.open(first_lbl)).copy()
        ids[3, 3] = 200
        Image.fromarray(ids).save(first_lbl)
        return first_lbl, True
    if kind == "label of different size":
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(first_lbl)
        return first_lbl, True
    if kind == "truncated png":
        raw = first_img.read_bytes()
        first_img.write_bytes(raw[: len(raw) // 2])
        return first_img, True
    if kind == "colour label":
        Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(first_lbl)
        return first_lbl, True
    raise ValueError(kind)


CASES = ["missing root", "missing images folder", "missing labels folder", "empty folder",
         "image without label", "label value 200", "label of different size", "truncated png",
         "colour label"]


@pytest.mark.parametrize("dataset", ["gta5", "cityscapes"])
@pytest.mark.parametrize("case", CASES)
def test_broken_datasets_raise_clear_errors(tmp_path, dataset, case):
    if dataset == "gta5":
        root = write_fake_gta5(tmp_path / "gta", n=2)
        make = lambda r: data.GTA5(r)  # noqa: E731
    else:
        root = write_fake_cityscapes(tmp_path / "cs", n=2, splits=("train",))
        make = lambda r: data.Cityscapes(r, "train")  # noqa: E731
    path, at_getitem = _break(case, root)
    if case == "missing root":
        root = path
    with pytest.raises(data.DatasetError) as info:
        ds = make(root)
        assert at_getitem, "construction should have failed"
        index = [i for i, pair in enumerate(ds.pairs) if path in pair][0]
        ds[index]
    assert str(path) in str(info.value), (str(path), str(info.value))
    assert isinstance(info.value, ValueError)


def test_list_file_problems(tmp_path):
    root = write_fake_gta5(tmp_path / "gta", n=2)
    with pytest.raises(data.DatasetError, match="list file not found"):
        data.GTA5(root, list_path=tmp_path / "missing.txt")
    (tmp_path / "list.txt").write_text("00001.png\n12345.png\n")
    with pytest.raises(data.DatasetError, match="12345.png"):
        data.GTA5(root, list_path=tmp_path / "list.txt")


def test_build_data_generates_each_synthetic_split_once_per_process():
    """Runs in one process (notebooks, tests): a second with the same data flags gets the same scenes without generating them
    again; other flags (another seed or size) get their own, equal to a fresh SyntheticStreets."""
    import argparse
    flags = dict(data="synthetic", size=[16, 32], shift=0.6, thing_shift=0.0, n_source=3, n_target=2, n_val=2,
                 data_seed=5, eval_split="tune")
    first = train.build_data(argparse.Namespace(**flags))
    again = train.build_data(argparse.Namespace(**flags))
    assert all(a is b for a, b in zip(first[:3], again[:3]))
    other = train.build_data(argparse.Namespace(**{**flags, "data_seed": 6}))
    assert other[0] is not first[0]
    fresh = synthetic.SyntheticStreets("target", "val", n=2, size=(16, 32), shift=0.6, seed=6 + 1000, thing_shift=0.0)
    assert np.array_equal(other[2].images, fresh.images) and np.array_equal(other[2].labels, fresh.labels)
    assert not np.array_equal(other[2].images, first[2].images)
