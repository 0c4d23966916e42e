"""Figures of a run (stage 4) and of several runs (tables, sweeps): what a person looks at first.

    save_figures      predictions.png (model A on target val) and selection.png (what was labelled)
    at_a_glance       one target image through the whole method in one figure (docs/at_a_glance.png), from the
                      record of the labelling round a run keeps in selection.pt (job.glance_record):
                          python -m tools.figures at-a-glance RUN_DIR [--out PATH]
    plot_table        results.png (mIoU against the labelled fraction and against annotator seconds)
    plot_budget_curve budget_curve.png

matplotlib's object API only (no pyplot), so a notebook's backend is left alone.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import matplotlib.ticker
from matplotlib.figure import Figure

import data
import labor
import selection

FIGURE_ROWS = 3  # images shown in predictions.png and selection.png
GLANCE_IMAGE = 0  # the target-train image of the at-a-glance figure


def save_figures(args, device, out, A, evals, target_images, masks, revealed, a_wrong=None):
    """predictions.png: val input, ground truth, prediction. selection.png: target-train input, the
    inconsistency mask of B at selection time (spl/ppl), the selected pixels or points, the revealed labels.
    The selected pixels are red where A's prediction at selection time was wrong (the label was required) and
    green where A was already right (a_wrong: {index: (H, W) bool}).
    (With several rounds, the mask shown is the last round's, the selection the union of all rounds.)"""
    palette = np.asarray(evals.palette) if hasattr(evals, "palette") else None
    chosen = dict(zip(revealed.pixels, revealed.masks()))  # {image index: (H, W) bool}, the pixels bought
    A.eval()
    rows = min(FIGURE_ROWS, len(evals))
    fig = Figure(figsize=(9, 2 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    with torch.no_grad():
        for r in range(rows):
            x, y = evals[r]
            pred = labor.upsample(A(x[None].to(device))[0], y.shape[-2:]).argmax(1)[0].cpu()
            for ax, img, title in zip(axes[r], (data.denormalize(x), data.colorize(y, palette),
                                                data.colorize(pred, palette)), ("input", "ground truth", "prediction")):
                ax.imshow(img)
                ax.set_title(f"val {r}: {title}", fontsize=8)
                ax.axis("off")
    fig.suptitle(f"{args.mode}: model A on target val")
    fig.tight_layout()
    fig.savefig(out / "predictions.png", dpi=100)
    A.train()
    if not chosen:
        return
    idx = sorted(chosen)[:FIGURE_ROWS]
    fig = Figure(figsize=(12, 2 * len(idx)))
    axes = fig.subplots(len(idx), 4, squeeze=False)
    with torch.no_grad():
        for r, i in enumerate(idx):
            x, _ = target_images[i]
            img = data.denormalize(x)
            if i in masks:
                mask, mask_title = masks[i], "inconsistency mask (Eq. 4)"
            else:
                mask, mask_title = chosen[i], "selected pixels"
            sel = chosen[i].numpy()
            wrong = a_wrong[i].numpy() if a_wrong and i in a_wrong else np.zeros_like(sel)
            over = img.copy()
            ys, xs = np.nonzero(sel)
            lab = revealed.batch([i])[0]
            axes[r, 0].imshow(img)
            axes[r, 1].imshow(mask.numpy(), cmap="gray")
            axes[r, 2].imshow(img)
            if args.mode in selection.SELECTORS and selection.SELECTORS[args.mode].budget == "points":  # points: dots
                # in their class colour, ringed red where A was wrong
                colours = data.colorize(lab, palette)[ys, xs] / 255.0
                rings = np.where(wrong[ys, xs][:, None], [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
                axes[r, 2].scatter(xs, ys, c=colours, s=16, edgecolors=rings, linewidths=1.0)
            else:
                for px, colour in ((sel & ~wrong, (0, 255, 0)), (wrong, (255, 0, 0))):
                    over[px] = (0.2 * over[px] + 0.8 * np.array(colour)).astype(np.uint8)
                axes[r, 2].imshow(over)
            axes[r, 3].imshow(data.colorize(lab, palette))
            title = f"selected ({int(sel.sum())} px; red: A wrong {int(wrong.sum())}, green: A right)"
            for ax, t in zip(axes[r], ("target train input", mask_title, title, "labels revealed")):
                ax.set_title(t, fontsize=8)
                ax.axis("off")
    fig.suptitle(f"{args.mode}: what was labelled")
    fig.tight_layout()
    fig.savefig(out / "selection.png", dpi=100)


def plot_table(path, results, seeds):
    """results.png. Left: one marker per method, mIoU (mean ± std over seeds) against the labelled fraction. Right:
    the methods that bought labels, mIoU against what the labels cost a person (annotator seconds per image,
    cost.py): at the same pixels, a selector whose labels are cheaper to give sits further left."""
    fig = Figure(figsize=(12, 4.2))
    ax, tx = fig.subplots(1, 2)
    styles = {**selector_styles(), **ROW_STYLE}
    for r in results:
        frac = max(100 * r["labelled_fraction"], 1e-3)  # log axis: unlabelled methods drawn at 0.001%
        marker, colour = styles.get(r["mode"], ("o", None))
        style = dict(marker=marker, color=colour, markersize=9, linestyle="none", label=r["mode"], capsize=3)
        ax.errorbar(frac, 100 * r["miou_mean"], yerr=100 * r["miou_std"], **style)
        if r.get("annotation_seconds"):
            tx.errorbar(r["annotation_seconds"], 100 * r["miou_mean"], yerr=100 * r["miou_std"], **style)
    tx.set_xscale("log")
    tx.set_xlabel("annotator seconds per image (cost.py; log scale)")
    tx.set_ylabel("target val mIoU (%)")
    tx.set_title("what the labels cost a person (markers as on the left)", fontsize=9)
    tx.grid(alpha=0.3)
    _finish(fig, ax, path, "labelled target pixels (%, log scale; 0.001 = none)",
            f"Miniature Table 1 (synthetic, seeds {seeds})")


def _finish(fig, ax, path, xlabel, title):
    """mIoU against the labelled fraction on a log axis: labels, grid, legend, saved."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def selector_styles():
    """{label: (marker, colour)} of every selector (selection.SELECTORS) and variant, each variant after its
    selector: one look for one selector in every figure."""
    styles = {}
    for name, sel in selection.SELECTORS.items():
        styles[selection.label(name)] = sel.style
        styles.update({lab: style for base, _, lab, style in selection.VARIANTS.values() if base == name})
    return styles


# The table's rows that are not a selector at its own budget.
ROW_STYLE = {"source_only": ("d", "tab:brown"), "adaptseg": ("<", "tab:red"), "supervised": ("P", "k"),
             "random, 40 px": ("1", "tab:gray"), "ripu as published": (">", "tab:purple")}


def plot_budget_curve(path, summary, seeds):
    """budget_curve.png. Left: mIoU (mean ± std over seeds) against the labelled fraction, one line per selector;
    SPL's whole mask as a point of its own; AdaptSeg (no labels) and supervised (every label) as horizontal lines.
    Middle: each selector minus random at the same labelled fraction, the mean paired difference over seeds with its
    95% interval (summary's "vs_random"), placed at the row's labelled fraction; an interval clear of zero is drawn
    filled. Right: mIoU against what the labels
    cost a person, annotator seconds per image (cost.py), with full annotation's cost marked."""
    fig = Figure(figsize=(19, 4.8))
    ax, dx, tx = fig.subplots(1, 3)
    styles = {sel: style for sel, style in selector_styles().items() if any(r["selector"] == sel for r in summary)}
    dodge = {sel: 1.06 ** (k - (len(styles) - 1) / 2) for k, sel in enumerate(styles)}  # side by side
    for sel, (marker, colour) in styles.items():
        pts = sorted((r for r in summary if r["selector"] == sel and r["budget"] is not None),
                     key=lambda r: r["labelled_fraction"])
        if pts:
            ax.errorbar([100 * r["labelled_fraction"] for r in pts], [100 * r["miou_mean"] for r in pts],
                        yerr=[100 * r["miou_std"] for r in pts], marker=marker, color=colour, capsize=3, label=sel)
        pts = [r for r in pts if r.get("vs_random") and r["vs_random"]["ci95"]]
        for r in pts:
            d = r["vs_random"]
            lo, hi = (100 * v for v in d["ci95"])
            dx.errorbar(100 * r["labelled_fraction"] * dodge[sel], 100 * d["mean"],
                        yerr=[[100 * d["mean"] - lo], [hi - 100 * d["mean"]]],
                        marker=marker, color=colour, capsize=3,
                        markerfacecolor=colour if d["excludes_zero"] else "none")
        if pts:
            dx.plot([100 * r["labelled_fraction"] * dodge[sel] for r in pts], [100 * r["vs_random"]["mean"] for r in pts],
                    color=colour, alpha=0.5, label=sel)
        pts = sorted((r for r in summary if r["selector"] == sel and r["budget"] is not None
                      and r.get("annotation_seconds")), key=lambda r: r["annotation_seconds"])
        if pts:
            tx.errorbar([r["annotation_seconds"] for r in pts], [100 * r["miou_mean"] for r in pts],
                        yerr=[100 * r["miou_std"] for r in pts], marker=marker, color=colour, capsize=3, label=sel)
    for r in summary:
        if r["selector"] == "spl (whole mask)":
            ax.errorbar(100 * r["labelled_fraction"], 100 * r["miou_mean"], yerr=100 * r["miou_std"], marker="*",
                        markersize=13, color="tab:blue", linestyle="none", capsize=3, label="spl (whole mask)")
        if r["selector"] in ("adaptseg", "supervised"):
            colour = "tab:red" if r["selector"] == "adaptseg" else "k"
            ax.axhline(100 * r["miou_mean"], color=colour, linestyle="--", linewidth=1,
                       label=f"{r['selector']} ({100 * r['miou_mean']:.1f})")
            ax.axhspan(100 * (r["miou_mean"] - r["miou_std"]), 100 * (r["miou_mean"] + r["miou_std"]),
                       color=colour, alpha=0.08)
    for r in summary:
        if r["selector"] == "supervised" and r.get("annotation_seconds"):
            tx.axvline(r["annotation_seconds"], color="k", linestyle=":", linewidth=1)
            tx.annotate(f"full annotation\n{r['annotation_seconds']:.0f} s ", (r["annotation_seconds"], 0.97),
                        xycoords=("data", "axes fraction"), ha="right", va="top", fontsize=8)
            tx.axhline(100 * r["miou_mean"], color="k", linestyle="--", linewidth=1)
        if r["selector"] == "adaptseg":
            tx.axhline(100 * r["miou_mean"], color="tab:red", linestyle="--", linewidth=1)
    if tx.get_legend_handles_labels()[0]:
        tx.set_xscale("log")
        tx.legend(fontsize=8, loc="lower right")
    tx.set_xlabel("annotator seconds per image (cost.py; log scale)")
    tx.set_ylabel("target val mIoU (%)")
    tx.set_title("what the labels cost a person", fontsize=9)
    tx.grid(alpha=0.3)
    dx.axhline(0, color="k", linewidth=1)
    dx.set_xscale("log")
    ticks = sorted({round(100 * r["labelled_fraction"], 3) for r in summary if r["selector"] == "random"})
    if ticks:   # one tick per random run, in the left panel's units (the log axis's own minor labels overlap)
        dx.set_xticks(ticks, [f"{t:g}" for t in ticks])
        dx.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    dx.set_xlabel("labelled pixels (%, log scale)")
    dx.set_ylabel("minus random at the same labelled fraction (mIoU points)")
    dx.set_title("paired difference to random, mean and 95% interval\n(filled: the interval excludes zero)",
                 fontsize=9)
    dx.grid(alpha=0.3)
    if dx.get_legend_handles_labels()[0]:
        dx.legend(fontsize=8)
    _finish(fig, ax, path, "labelled target pixels (%, log scale)", f"Budget curve (synthetic, seeds {seeds})")


def plot_noise(path, summary, seeds):
    """noise.png. Left: each method's mIoU (mean ± std over seeds) against the annotator's error rate P at
    outlines (--annotator-noise). Right: each selector minus random at the same P, the mean paired difference with
    its 95% interval (summary's "vs_random"); filled where the interval excludes zero."""
    fig = Figure(figsize=(11, 4.5))
    ax, dx = fig.subplots(1, 2)
    levels = sorted({e["level"] for e in summary})
    x = {p: i for i, p in enumerate(levels)}   # evenly spaced: P = 0 has no place on a log axis
    for k, row in enumerate(dict.fromkeys(e["row"] for e in summary)):
        marker, colour = selector_styles().get(row, ("o", None))
        pts = [e for e in summary if e["row"] == row]
        shift = 0.04 * (k - 1)   # side by side, so the error bars do not hide each other
        ax.errorbar([x[e["level"]] + shift for e in pts], [100 * e["miou_mean"] for e in pts],
                    yerr=[100 * e["miou_std"] for e in pts], marker=marker, color=colour, capsize=3, label=row)
        for e in pts:
            d = e.get("vs_random")
            if d and d["ci95"]:
                lo, hi = (100 * v for v in d["ci95"])
                dx.errorbar(x[e["level"]] + shift, 100 * d["mean"], yerr=[[100 * d["mean"] - lo],
                                                                          [hi - 100 * d["mean"]]],
                            marker=marker, color=colour, capsize=3,
                            markerfacecolor=colour if d["excludes_zero"] else "none",
                            label=row if e is pts[0] else None)
    for a in (ax, dx):
        a.set_xticks(range(len(levels)), [f"{p:g}" for p in levels])
        a.set_xlabel("P: chance that a label at an outline is wrong (--annotator-noise)")
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:   # (one seed: no interval, nothing drawn on the right)
            a.legend(fontsize=8)
    dx.axhline(0, color="k", linewidth=1)
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title(f"an annotator who errs at outlines (synthetic, seeds {seeds})", fontsize=9)
    dx.set_ylabel("minus random at the same P (mIoU points)")
    dx.set_title("paired difference to random, mean and 95% interval\n(filled: the interval excludes zero)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ------------------------------------------------------------------------------------------------ at a glance

def at_a_glance(run_dir, out=None):
    """docs/at_a_glance.png from a run folder of --mode spl or ppl: one target-train image through the whole
    method, side by side. The ground truth (read from the dataset, for this figure only) marks where A was wrong:
    SPL's pixels and PPL's points are red there and green where A was already right. Returns the path written."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise ValueError(f"{run_dir} holds no finished run (metrics.json); give the folder of a finished --mode spl "
                         f"or ppl run")
    g = torch.load(run_dir / "selection.pt", weights_only=True).get("glance")
    if not g:
        raise ValueError(f"{run_dir} has no record of its labelling round for this figure: give the folder of a "
                         f"--mode spl or ppl run made by this version")
    args = argparse.Namespace(**json.loads((run_dir / "metrics.json").read_text())["args"])
    _, target, _, classes = data.build_data(args)   # the run's own data, from its settings
    x, y = target[g["index"]]
    palette = np.asarray(target.palette)
    y = y.numpy()
    valid = y != labor.IGNORE_INDEX
    wrong = valid & (g["pred_a"].numpy() != y)                                           # (H, W) A's errors
    img = data.denormalize(x)
    mask, points = g["mask"].numpy(), g["ppl"].numpy()

    panels = [(img, "input (target train)"), (data.colorize(y, palette), "ground truth"),
              (data.colorize(g["pred_a"], palette),
               f"A's prediction (hatched: wrong, {100 * wrong.sum() / max(valid.sum(), 1):.1f}% of pixels)"),
              (data.colorize(g["head1"], palette), "B, head 1"), (data.colorize(g["head2"], palette), "B, head 2"),
              (mask, f"inconsistency mask, Eq. 4 ({100 * mask.mean():.2f}%)"),
              (img, f"SPL: the whole mask ({int((mask & wrong).sum())} of {int(mask.sum())} px A got wrong)"),
              (img, f"PPL: {int(points.sum())} points ({int((points & wrong).sum())} where A was wrong)")]
    fig = Figure(figsize=(16, 5.4))
    axes = fig.subplots(2, 4)
    for ax, (image, title) in zip(axes.flat, panels):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    axes[0, 2].contourf(wrong, levels=[0.5, 1.5], colors="none", hatches=["////"])
    for ax, pixels, style in ((axes[1, 2], mask, dict(s=5, marker="s", linewidths=0)),
                              (axes[1, 3], points, dict(s=22, edgecolors="white", linewidths=0.6))):
        ys, xs = np.nonzero(pixels)  # drawn as markers: one pixel in 18,432 would not show
        ax.scatter(xs, ys, c=np.where(wrong[ys, xs][:, None], [[1.0, 0, 0]], [[0, 0.8, 0]]), **style)
    a = args
    fig.suptitle(f"LabOR at a glance: target-train image {g['index']} at the labelling round ({a.mode} run, seed "
                 f"{a.seed}, {a.iters} iterations; PPL: {a.points} points, --ppl-cell {a.ppl_cell})", fontsize=10)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "at_a_glance.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.figures", description="Figures from a finished run folder.")
    sub = p.add_subparsers(dest="figure", required=True)
    g = sub.add_parser("at-a-glance", help="one target image through the whole method (docs/at_a_glance.png)")
    g.add_argument("run_dir", help="the folder of a finished --mode spl or ppl run")
    g.add_argument("--out", default=None, help="where to write the PNG (default RUN_DIR/at_a_glance.png)")
    args = p.parse_args(argv)
    try:
        print(at_a_glance(args.run_dir, args.out))
    except (OSError, ValueError) as e:   # no such folder or file, no finished SPL or PPL run
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
