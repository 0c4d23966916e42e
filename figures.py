"""Figures of a run (stage 4) and of several runs (--mode table): what a person looks at first.

    save_figures   predictions.png (model A on target val) and selection.png (what was labelled)
    plot_table     results.png (mIoU against the labelled fraction, one marker per method)

matplotlib's object API only (no pyplot), so a notebook's backend is left alone.
"""
import numpy as np
import torch
from matplotlib.figure import Figure

import data
import labor

FIGURE_ROWS = 3  # images shown in predictions.png and selection.png


def save_figures(args, out, A, evals, target_images, masks, revealed, a_wrong=None):
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
            pred = labor.upsample(A(x[None].to(args.device))[0], y.shape[-2:]).argmax(1)[0].cpu()
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
            if args.mode == "ppl":  # points: dots in their revealed class colour, ringed red where A was wrong
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
    """results.png: one marker per method, mIoU (mean ± std over seeds) against the labelled fraction."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    markers = dict(source_only="v", adaptseg="^", random="x", entropy="+", ppl="s", spl="o", supervised="*")
    for r in results:
        frac = max(100 * r["labelled_fraction"], 1e-3)  # log axis: unlabelled methods drawn at 0.001%
        ax.errorbar(frac, 100 * r["miou_mean"], yerr=100 * r["miou_std"], marker=markers.get(r["mode"], "o"),
                    markersize=9, linestyle="none", label=r["mode"], capsize=3)
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


def plot_budget_curve(path, summary, seeds):
    """budget_curve.png: mIoU (mean ± std over seeds) against the labelled fraction, one line per selector; SPL's
    whole mask as a point of its own; AdaptSeg (no labels) and supervised (every label) as horizontal lines."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    style = dict(random=("x", "tab:gray"), entropy=("+", "tab:orange"), spl=("o", "tab:blue"), ppl=("s", "tab:green"))
    for sel, (marker, colour) in style.items():
        pts = sorted((r for r in summary if r["selector"] == sel and r["budget"] is not None),
                     key=lambda r: r["labelled_fraction"])
        if pts:
            ax.errorbar([100 * r["labelled_fraction"] for r in pts], [100 * r["miou_mean"] for r in pts],
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
    _finish(fig, ax, path, "labelled target pixels (%, log scale)", f"Budget curve (synthetic, seeds {seeds})")
