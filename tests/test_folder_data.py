"""Your own data (issue 44): data.Folder in mmsegmentation's img_dir/ann_dir layout, the class file, the export of
the synthetic benchmark in that layout (python -m tools.export_synthetic) and its exact round trip, GTA5 or
Cityscapes on one side with a folder on the other, and one clear error line for each broken folder or file.

Each test names the wrong implementation it catches."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402
import train  # noqa: E402
from fakes import (label_id_map, write_classes, write_fake_cityscapes, write_fake_folder,  # noqa: E402
                   write_fake_gta5)
from tools import UsageError, export_synthetic, flags  # noqa: E402

SYNTH = dict(n_source=4, n_target=4, n_val=2, size=[32, 64], data_seed=3, shift=0.6, thing_shift=0.0)
TINY = ["--iters", "4", "--n-source", "4", "--n-target", "4", "--n-val", "2", "--size", "32", "64", "--batch-size",
        "2", "--width", "8", "--threads", "1", "--quiet", "--data-seed", "3"]


def folder_args(**kw):
    """The data flags of a --data folder run, as tools.flags makes them (sizes left to data.folder_sizes)."""
    base = dict(data="folder", preset="synthetic", size=[32, 64], source_size=None, target_size=None,
                source_root=None, target_root=None, gta5_root=None, cityscapes_root=None, gta5_list=None,
                cityscapes_list=None, classes=None, img_suffix=[".png", ".jpg"], seg_suffix=".png", eval_split="val")
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny benchmark of SYNTH, exported once for the module's tests."""
    out = tmp_path_factory.mktemp("export") / "bench"
    export_synthetic.main([str(out), *(w for k, v in SYNTH.items() for w in
                                       [f"--{k.replace('_', '-')}", *map(str, v if isinstance(v, list) else [v])])])
    return out


# ----------------------------------------------------------------------------- the export and its round trip

def test_export_writes_the_layout_and_the_class_file(exported):
    """The tree of docs/own_data.md, names sorting in scene order, and a class file of the 9 classes with their
    colours and no map (catches: a missing split, names that sort 1, 10, 2, a palette other than the benchmark's)."""
    for side, splits in (("source", ["train"]), ("target", ["train", "val"])):
        for kind in ("img_dir", "ann_dir"):
            assert sorted(p.name for p in (exported / side / kind).iterdir()) == splits
    assert [p.name for p in sorted((exported / "target" / "img_dir" / "train").iterdir())] == \
        ["000000.png", "000001.png", "000002.png", "000003.png"]
    spec = json.loads((exported / "classes.json").read_text())
    assert spec["classes"] == list(data.SYNTHETIC_CLASSES) and "map" not in spec
    assert np.array_equal(spec["palette"], data.SYNTHETIC_PALETTE)


def test_export_reads_back_bit_for_bit(exported):
    """Every image and label of every split, through --data folder, equals the built-in benchmark's tensors for
    the same flags (catches: a lossy format such as JPEG, another scene order, a label read through a wrong map,
    val written from the tuning split)."""
    synthetic_args = argparse.Namespace(data="synthetic", eval_split="val", **SYNTH)
    mine = data.build_data(folder_args(source_root=exported / "source", target_root=exported / "target",
                                       classes=exported / "classes.json"))
    ref = data.build_data(synthetic_args)
    assert mine[3] == ref[3]
    for got, want in zip(mine[:3], ref[:3]):
        assert len(got) == len(want) and np.array_equal(got.palette, want.palette)
        for i in range(len(want)):
            (x, y), (x0, y0) = got[i], want[i]
            assert torch.equal(x, x0) and torch.equal(y, y0) and y.dtype == y0.dtype, i


def test_export_refuses_a_folder_that_is_not_empty(exported, capsys):
    """One line, exit 2, nothing overwritten (catches: writing over an earlier export)."""
    before = (exported / "classes.json").read_text()
    with pytest.raises(SystemExit) as e:
        export_synthetic.main([str(exported)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and str(exported) in err[0]
    assert (exported / "classes.json").read_text() == before


@pytest.mark.slow
def test_a_run_on_the_export_is_the_run_on_the_benchmark(exported, tmp_path):
    """train.py --data folder on the export and train.py on the built-in data, same seed and flags: the same loss
    history, labels bought, mIoU and weights (catches anything in the data path that changes one value: a resize of
    an image already at its size, another order, a float conversion other than synthetic.to_tensors)."""
    folder = ["--data", "folder", "--source-root", str(exported / "source"), "--target-root",
              str(exported / "target"), "--classes", str(exported / "classes.json")]
    runs = {}
    for name, extra in (("synthetic", []), ("folder", folder)):
        args = train.get_args(["--mode", "spl", "--out", str(tmp_path / name), *TINY, *extra])
        runs[name] = train.run(args)
    a, b = runs["synthetic"], runs["folder"]
    assert a["history"] == b["history"] and a["labelled_pixels"] == b["labelled_pixels"] > 0
    assert a["miou"] == b["miou"] and a["per_class_iou"] == b["per_class_iou"]
    wa, wb = (torch.load(tmp_path / n / "model_A.pt", weights_only=True)["A"] for n in ("synthetic", "folder"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ----------------------------------------------------------------------------- the loader and the class file

def test_a_map_turns_values_on_disk_into_train_ids_and_the_rest_into_255(tmp_path):
    """Cityscapes label IDs in a folder with the class file's map read as GTA5's loader reads them (catches: the
    map applied backwards, unmapped values kept, 255 not kept)."""
    root = write_fake_folder(tmp_path / "f", n=2, labels="label_ids")
    classes = data.Classes(write_classes(tmp_path / "c.json", data.CITYSCAPES_CLASSES, label_id_map()))
    ds = data.Folder(root, "train", classes)
    raw = np.asarray(Image.open(root / "ann_dir" / "train" / "scene_001.png"))
    label = ds[1][1].numpy()
    assert np.array_equal(label, data.LABEL_ID_TO_TRAIN_ID[raw])
    assert (label[-1] == 255).all() and label[0, 0] == 255 and set(np.unique(label)) - {255} <= set(range(19))
    assert ds.num_classes == 19 and np.array_equal(ds.palette, data.CITYSCAPES_PALETTE)  # colours by name


def test_images_of_any_size_are_resized_bilinear_and_labels_nearest(tmp_path):
    """Two sizes in one split, both read at size=(W, H) (catches: a label resized bilinear, which invents classes
    at boundaries; W and H swapped; an image left at its size)."""
    root = write_fake_folder(tmp_path / "f", n=1, splits=("train",), size=(20, 44))
    write_fake_folder(tmp_path / "g", n=1, splits=("train",), size=(16, 32))
    for kind in ("img_dir", "ann_dir"):
        (tmp_path / "g" / kind / "train" / "scene_000.png").rename(root / kind / "train" / "other.png")
    ds = data.Folder(root, "train", data.Classes(write_classes(tmp_path / "c.json")), size=(64, 32))
    for i, (image_path, label_path) in enumerate(ds.pairs):
        x, y = ds[i]
        assert x.shape == (3, 32, 64) and y.shape == (32, 64)
        want_y = np.array(Image.open(label_path).resize((64, 32), Image.NEAREST))
        want_x = np.array(Image.open(image_path).convert("RGB").resize((64, 32), Image.BILINEAR))
        assert np.array_equal(y.numpy(), want_y) and torch.equal(x, torch.from_numpy(want_x).permute(2, 0, 1) / 255)


def test_suffixes_and_subfolders_as_cityscapes_names_them(tmp_path):
    """--img-suffix _leftImg8bit.png --seg-suffix _gtFine_labelIds.png with city folders: images and labels pair by
    the name between folder and suffix (catches: matching by the whole file name, a flat scan that misses
    subfolders)."""
    root = write_fake_folder(tmp_path / "cs", n=2, labels="label_ids", subfolder="aachen",
                             img_suffix="_leftImg8bit.png", seg_suffix="_gtFine_labelIds.png")
    classes = data.Classes(write_classes(tmp_path / "c.json", data.CITYSCAPES_CLASSES, label_id_map()))
    ds = data.Folder(root, "val", classes, img_suffix=("_leftImg8bit.png",), seg_suffix="_gtFine_labelIds.png")
    assert [p[0].name for p in ds.pairs] == ["scene_000_leftImg8bit.png", "scene_001_leftImg8bit.png"]
    assert all(p[1].name == p[0].name.replace("_leftImg8bit", "_gtFine_labelIds") for p in ds.pairs)


def test_target_train_without_labels_shows_images_and_refuses_labels(tmp_path):
    """Target train may lack ann_dir/train: ImagesOnly gives its images without opening a label, and a label asked
    for is refused (catches: a made-up all-255 label handed to an annotator)."""
    root = write_fake_folder(tmp_path / "t", n=2, splits=("train",))
    for f in (root / "ann_dir" / "train").iterdir():
        f.unlink()
    (root / "ann_dir" / "train").rmdir()
    ds = data.Folder(root, "train", data.Classes(write_classes(tmp_path / "c.json")), size=(64, 32),
                     labels_required=False)
    assert not ds.labelled and ds.pairs[0][1] is None
    image, index = data.ImagesOnly(ds)[1]
    assert index == 1 and image.shape == (3, 32, 64)
    with pytest.raises(data.DatasetError, match="ann_dir"):
        ds[0]


# ----------------------------------------------------------------------------- GTA5 or Cityscapes on one side

def test_gta5_source_and_a_folder_target_with_cityscapes_classes(tmp_path):
    """GTA5 (source) and a folder with Cityscapes' 19 classes (target): one class list, both at their sizes
    (catches: the folder's classes not checked against GTA5's; the GTA5 side given the folder's map)."""
    args = folder_args(gta5_root=write_fake_gta5(tmp_path / "gta", n=2),
                       target_root=write_fake_folder(tmp_path / "t", n=2, labels="cityscapes"),
                       classes=write_classes(tmp_path / "c.json", data.CITYSCAPES_CLASSES),
                       source_size=[64, 32], target_size=[96, 48])
    source, target, evals, classes = data.build_data(args)
    assert classes == data.CITYSCAPES_CLASSES and isinstance(source, data.GTA5) and len(evals) == 2
    assert source[0][0].shape == (3, 32, 64) and target[0][1].shape == evals[1][1].shape == (48, 96)
    assert set(target[0][1].unique().tolist()) <= set(data.SYNTHETIC_TO_CITYSCAPES.tolist())


def test_a_folder_source_and_cityscapes_target(tmp_path):
    """A folder of Cityscapes label IDs with the map (source) and Cityscapes (target): the folder reads as GTA5
    would read the same files (catches: a map that differs from Cityscapes' table)."""
    src = write_fake_folder(tmp_path / "s", n=2, splits=("train",), domain="source", labels="label_ids")
    args = folder_args(source_root=src, cityscapes_root=write_fake_cityscapes(tmp_path / "cs", n=2),
                       classes=write_classes(tmp_path / "c.json", data.CITYSCAPES_CLASSES, label_id_map()))
    source, target, evals, classes = data.build_data(args)
    assert isinstance(target, data.Cityscapes) and classes == data.CITYSCAPES_CLASSES
    gta = write_fake_gta5(tmp_path / "g", n=0)
    for i, (image, label) in enumerate(source.pairs):
        (gta / "images" / label.name).write_bytes(image.read_bytes())
        (gta / "labels" / label.name).write_bytes(label.read_bytes())
    ref = data.GTA5(gta, size=(64, 32))              # (--size 32 64: both sides)
    assert all(torch.equal(a, b) for i in range(2) for a, b in zip(source[i], ref[i]))


@pytest.mark.slow
def test_a_run_with_gta5_source_and_a_folder_target(tmp_path):
    """End to end with the tiny model: GTA5 fixtures as source, a folder of Cityscapes' classes as target."""
    args = train.get_args(["--mode", "spl", "--out", str(tmp_path / "run"), *TINY, "--data", "folder",
                           "--gta5-root", str(write_fake_gta5(tmp_path / "gta", n=4)),
                           "--target-root", str(write_fake_folder(tmp_path / "t", n=4, labels="cityscapes")),
                           "--classes", str(write_classes(tmp_path / "c.json", data.CITYSCAPES_CLASSES))])
    m = train.run(args)
    assert len(m["per_class_iou"]) == 19 and m["labelled_pixels"] > 0 and m["args"]["target_size"] == [64, 32]


# ----------------------------------------------------------------------------- errors: one line, exit 2, no training

def _good(tmp_path):
    """A good pair of folders and class file: (source, target, class file)."""
    return (write_fake_folder(tmp_path / "src", n=2, splits=("train",), domain="source"),
            write_fake_folder(tmp_path / "tgt", n=2), write_classes(tmp_path / "classes.json"))


def _break(case, src, tgt, classes):
    """Damage the good folders for one case; return (extra flags, the path the one error line must name)."""
    s_img, s_lbl = src / "img_dir" / "train" / "scene_001.png", src / "ann_dir" / "train" / "scene_001.png"
    if case == "missing folder":
        return ["--target-root", str(tgt.parent / "nope")], tgt.parent / "nope"
    if case == "missing target ann_dir/val":
        for f in (tgt / "ann_dir" / "val").iterdir():
            f.unlink()
        (tgt / "ann_dir" / "val").rmdir()
        return [], tgt / "ann_dir" / "val"
    if case == "image without label":
        s_lbl.unlink()
        return [], s_img
    if case == "label without image":
        (tgt / "img_dir" / "val" / "scene_000.png").unlink()
        return [], tgt / "ann_dir" / "val" / "scene_000.png"
    if case == "label value outside the map":
        label = np.array(Image.open(s_lbl))
        label[3, 3] = 9                                               # 9 classes: 0..8 and 255
        Image.fromarray(label).save(s_lbl)
        return [], s_lbl
    if case == "label of another size":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(s_lbl)
        return [], s_lbl
    if case == "colour label":
        Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(s_lbl)
        return [], s_lbl
    if case == "truncated image":
        s_img.write_bytes(s_img.read_bytes()[:200])
        return [], s_img
    if case == "not an image":
        s_img.write_text("not an image\n")
        return [], s_img
    if case == "empty split":
        for kind in ("img_dir", "ann_dir"):
            for f in (tgt / kind / "val").iterdir():
                f.unlink()
        return [], tgt / "img_dir" / "val"
    if case == "class file that does not parse":
        classes.write_text('{"classes": ["road", ')
        return [], classes
    if case == "class file with a bad map":
        write_classes(classes, mapping={"7": 0, "26": 9})             # train ID 9 of 9 classes
        return [], classes
    if case == "classes not those of the source":                     # GTA5's 19 against the file's 9
        return ["--source-root", None, "--gta5-root", str(write_fake_gta5(src.parent / "gta", n=2))], classes
    if case == "target without ann_dir/train":
        for f in (tgt / "ann_dir" / "train").iterdir():
            f.unlink()
        (tgt / "ann_dir" / "train").rmdir()
        return [], tgt
    raise ValueError(case)


CASES = ["missing folder", "missing target ann_dir/val", "image without label", "label without image",
         "label value outside the map", "label of another size", "colour label", "truncated image", "not an image",
         "empty split", "class file that does not parse", "class file with a bad map",
         "classes not those of the source", "target without ann_dir/train"]


@pytest.mark.parametrize("case", CASES)
def test_each_broken_folder_is_one_error_line_naming_the_file_before_training(case, tmp_path, capsys):
    """The command line: exit 2, one `error:` line naming the file, no checkpoint (the first is written before
    iteration 0). Catches: a broken file found only when a batch reads it (the checkpoint would exist), a traceback,
    a message that does not say which file."""
    src, tgt, classes = _good(tmp_path)
    extra, path = _break(case, src, tgt, classes)
    flags = {"--source-root": str(src), "--target-root": str(tgt), "--classes": str(classes)}
    for k, v in zip(extra[::2], extra[1::2]):
        flags[k] = v
    argv = ["--mode", "spl", "--out", str(tmp_path / "run"), *TINY, "--data", "folder",
            *(w for k, v in flags.items() if v is not None for w in (k, v))]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert str(path) in err[0], (str(path), err[0])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    print(case, "->", err[0])


def test_every_file_is_checked_when_the_folder_is_opened(tmp_path):
    """The broken label of the last image stops Folder(...) itself, not its [i] later (catches a lazy loader, as
    GTA5's: a run would train until a batch happened to read the file)."""
    root = write_fake_folder(tmp_path / "f", n=3, splits=("val",))
    Image.fromarray(np.full((16, 32), 200, np.uint8)).save(root / "ann_dir" / "val" / "scene_002.png")
    with pytest.raises(data.DatasetError, match="scene_002"):
        data.Folder(root, "val", data.Classes(write_classes(tmp_path / "c.json")))


@pytest.mark.parametrize("flags, message", [
    (["--data", "folder", "--target-root", "{t}", "--classes", "{c}"], "needs one source"),
    (["--data", "folder", "--source-root", "{s}", "--gta5-root", "{s}", "--target-root", "{t}", "--classes", "{c}"],
     "needs one source"),
    (["--data", "folder", "--source-root", "{s}", "--target-root", "{t}"], "--classes"),
    (["--source-root", "{s}"], "--source-root is for --data folder"),
    (["--data", "folder", "--source-root", "{s}", "--target-root", "{t}", "--classes", "{c}", "--eval-split", "tune"],
     "--eval-split"),
])
def test_flags_of_folder_data_that_do_not_go_together(flags, message, tmp_path, capsys):
    """Flag combinations refused by tools.flags.check_args before the run folder exists."""
    src, tgt, classes = _good(tmp_path)
    argv = [w.format(s=src, t=tgt, c=classes) for w in flags]
    with pytest.raises(SystemExit) as e:
        train.main(["--out", str(tmp_path / "run"), *TINY, *argv])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_person_labels_a_target_without_ann_dir_train(tmp_path, monkeypatch):
    """With --annotator label-studio target train needs no labels: the flags pass and the data builds, images only
    (catches: the check refusing a target without ann_dir/train whoever the annotator, as before Label Studio)."""
    monkeypatch.setattr(flags, "check_person", lambda args: None)   # (the SDK and the token: not this test's)
    src, tgt, classes = _good(tmp_path)
    _break("target without ann_dir/train", src, tgt, classes)
    argv = ["--mode", "spl", "--out", str(tmp_path / "run"), *TINY, "--data", "folder", "--source-root", str(src),
            "--target-root", str(tgt), "--classes", str(classes)]
    with pytest.raises(UsageError, match="no ann_dir/train: the oracle annotator"):
        flags.get_args(argv)
    args = flags.get_args([*argv, "--annotator", "label-studio"])
    source, target, evals, names = data.build_data(args)
    assert not target.labelled and source.labelled and data.ImagesOnly(target)[0][0].shape[0] == 3 and len(evals) == 2
