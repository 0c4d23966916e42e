"""Experiments of several runs: --mode table, the miniature Table 1 (every mode, one or more seeds).

train.py's `run` does one run; this file calls it once per mode and seed with the same settings and writes
results.md, results.json and results.png in the table's folder. It holds no LabOR logic of its own.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import figures
from runs import UsageError, prepare_out

TABLE_MODES = ("source_only", "adaptseg", "random", "entropy", "ppl", "spl", "supervised")

# Published mIoU, GTA5 -> Cityscapes, DeepLab-V2: source only and AdaptSegNet (multi-level) from Tsai et al. 2018,
# LabOR SPL (2.2% of pixels) from Shin et al. 2021, whose fully supervised model is within 0.1 of it.
PAPER_TABLE = {"source_only": 36.6, "adaptseg": 42.4, "spl": 66.6}


def run_table(args, run, apply_defaults):
    """Every mode with the same seed(s), each one `run(args)`; random and entropy at the budget SPL used. Writes
    results.md, results.json and results.png in the run folder."""
    out = Path(args.out or f"runs/table-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.md").exists():
        raise UsageError(f"{out} already holds a table (results.md); pick another --out or delete it")
    prepare_out(out)  # a file, or a folder we cannot write in, is refused before the first run
    seeds = args.seeds or [args.seed]
    rows = {m: [] for m in TABLE_MODES}
    for seed in seeds:
        spl_frac = None
        for mode in ("spl", "ppl", "random", "entropy", "source_only", "adaptseg", "supervised"):
            a = argparse.Namespace(**vars(args))
            a.mode, a.seed, a.out = mode, seed, str(out / f"{mode}-seed{seed}")
            a = apply_defaults(a)
            if mode in ("random", "entropy") and args.budget is None:
                a.budget = spl_frac  # SPL's own budget (0 if its mask was empty)
            if not args.quiet:
                print(f"=== table: {mode}, seed {seed} ===")
            m = run(a)
            if mode == "spl":
                spl_frac = m["labelled_fraction"]
            rows[mode].append(m)
    results = summarise_table(rows, args)
    write_table(out, results, rows, seeds, args)
    return results


def summarise_table(rows, args):
    sup = np.mean([m["miou"] for m in rows["supervised"]])
    results = []
    for mode in TABLE_MODES:
        mious = [m["miou"] for m in rows[mode]]
        results.append({"mode": mode, "miou_mean": float(np.mean(mious)), "miou_std": float(np.std(mious)),
                        "mious": mious, "of_supervised": float(np.mean(mious) / sup),
                        "labelled_fraction": float(np.mean([m["labelled_fraction"] for m in rows[mode]])),
                        "points_per_image": float(np.mean([m["points_per_image"] for m in rows[mode]])),
                        "wall_seconds": float(np.mean([m["wall_seconds"] for m in rows[mode]]))})
    return results


def write_table(out, results, rows, seeds, args):
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Miniature Table 1: synthetic benchmark, seeds {seeds}, {args.iters} iterations, model {args.model}.",
             "", "| method | mIoU (%) | of supervised | labelled pixels (%) | px / image | paper, GTA5->Cityscapes |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                     f"{100 * r['of_supervised']:.0f}% | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {PAPER_TABLE.get(r['mode'], '-')} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"seeds": seeds, "results": results}, indent=2))
    if not args.quiet:
        print("\n".join(lines))
    figures.plot_table(out / "results.png", results, seeds)
