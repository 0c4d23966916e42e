"""The synthetic benchmark's class statistics beside Cityscapes': per class, the share of the target's pixels and
the share of its images that contain the class (issue 45: does the benchmark have Cityscapes' long tail?).

    python -m tools.benchmark_stats --scenes long-tail          the long-tail variant's target train (500 scenes)
    python -m tools.benchmark_stats                             the balanced benchmark
    python -m tools.benchmark_stats --cityscapes-root DIR       Cityscapes' figures counted from its gtFine train

Cityscapes' figures (docs/experiments.md, "A long-tail benchmark: calibration", says where each comes from): pixel
shares are the per-class occurrence over the fine annotations, renormalised to the 19 evaluated classes (void pixels
left out, as the synthetic scenes have none); the shares of images are our assumption where no source publishes
them (marked '*'): --cityscapes-root counts both from gtFine train instead.
"""
import argparse

import numpy as np

import synthetic
from tools import flags

# Cityscapes fine annotations, % of all pixels per class (void classes, 11.7% in all, left out here):
# github.com/m-birke/automotive-segmentation-datasets, cityscapes.md ("pixel-wise occ"); the same order of
# magnitude as the bar chart of Cordts et al., CVPR 2016, Fig. 1.
CITYSCAPES_PIXELS = {
    "road": 32.7, "sidewalk": 5.3, "building": 20.1, "wall": 0.59, "fence": 0.77, "pole": 1.1243,
    "traffic light": 0.1823, "traffic sign": 0.5015, "vegetation": 14.3, "terrain": 0.98, "sky": 3.5,
    "person": 1.1, "rider": 0.1295, "car": 6.0, "truck": 0.2406, "bus": 0.2271, "train": 0.1907,
    "motorcycle": 0.0848, "bicycle": 0.4030}
# % of images containing each class: assumed (no published per-class image counts found; estimates for gtFine
# train, rare things from Cordts et al.'s instance statistics being a few hundred trucks, buses and trains)
CITYSCAPES_IMAGES = {
    "road": 99, "sidewalk": 94, "building": 98, "wall": 33, "fence": 45, "pole": 99, "traffic light": 57,
    "traffic sign": 93, "vegetation": 97, "terrain": 60, "sky": 93, "person": 82, "rider": 37, "car": 95,
    "truck": 12, "bus": 10, "train": 4, "motorcycle": 12, "bicycle": 55}


def scene_stats(labels, num_classes):
    """labels (N, H, W) of class indices -> (% of all pixels per class, % of images containing it), each (C,)."""
    counts = np.stack([np.bincount(lab.ravel(), minlength=num_classes)[:num_classes] for lab in labels])  # (N, C)
    return 100 * counts.sum(0) / counts.sum(), 100 * (counts > 0).mean(0)


def benchmark_stats(scenes="balanced", n=500, size=(96, 192), shift=0.6, thing_shift=0.0, seed=0, split="train"):
    """The target's statistics: (class names, pixel % (C,), image % (C,)) over n scenes of target `split`."""
    classes = synthetic.SYNTHETIC_CLASSES if scenes == "balanced" else synthetic.LONG_TAIL_CLASSES
    labels = np.stack([synthetic.make_scene("target", i, split, seed, size, shift, thing_shift, scenes)[1]
                       for i in range(n)])                                                    # (N, H, W)
    return (classes, *scene_stats(labels, len(classes)))


def cityscapes_stats(root):
    """({class: pixel %}, {class: image %}) counted from Cityscapes' gtFine train (data.Cityscapes)."""
    import data
    dataset = data.Cityscapes(root, "train")
    labels = (dataset.load(i)[1] for i in range(len(dataset)))
    counts = np.stack([np.bincount(lab[lab != data.IGNORE_INDEX].ravel(), minlength=19) for lab in labels])
    pixels, images = 100 * counts.sum(0) / counts.sum(), 100 * (counts > 0).mean(0)
    return dict(zip(data.CITYSCAPES_CLASSES, pixels)), dict(zip(data.CITYSCAPES_CLASSES, images))


def table(classes, pixels, images, reference=None):
    """Markdown: per class the target's pixel and image shares beside Cityscapes' (pixel shares renormalised to the
    19 classes; '*' marks an assumed figure)."""
    ref_pixels, ref_images, assumed = reference or (CITYSCAPES_PIXELS, CITYSCAPES_IMAGES, "*")
    total = sum(ref_pixels.values())
    lines = ["| class | target pixels (%) | Cityscapes pixels (%) | target images with it (%) | Cityscapes (%) |",
             "|---|---|---|---|---|"]
    for name, p, i in zip(classes, pixels, images):
        lines.append(f"| {name} | {p:.2f} | {100 * ref_pixels[name] / total:.2f} | {i:.0f} | "
                     f"{ref_images[name]:.0f}{assumed} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.benchmark_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_data_flags(p, synthetic_only=True)
    p.add_argument("--split", default="train", help="which target split's scenes (default train)")
    p.add_argument("--cityscapes-root", default=None, metavar="DIR",
                   help="count Cityscapes' figures from DIR/gtFine/train instead of the table above")
    a = p.parse_args(argv)
    scenes = a.scenes or "balanced"
    n = a.n_target or 500
    classes, pixels, images = benchmark_stats(scenes, n, tuple(a.size or (96, 192)), a.shift, a.thing_shift,
                                              a.data_seed, a.split)
    reference = (*cityscapes_stats(a.cityscapes_root), "") if a.cityscapes_root else None
    print(f"Target {a.split}, {n} scenes, --scenes {scenes} (--shift {a.shift}, --thing-shift {a.thing_shift}, "
          f"--data-seed {a.data_seed}); Cityscapes pixel shares of the 19 evaluated classes"
          f"{'' if reference else ', * = assumed share of images'}:\n")
    print(table(classes, pixels, images, reference))


if __name__ == "__main__":
    main()
