"""Experiments of several runs, each one call of train.py's `run` with the same settings but the mode, budget and
seed. No LabOR logic of its own.

    --mode table   the miniature Table 1: every mode at the paper's budgets -> results.md, results.json, results.png
    --mode sweep   a budget curve: random, entropy, SPL (capped, and its whole mask) and PPL at several budgets,
                   with AdaptSeg and supervised as lines -> sweep.md, sweep.json, budget_curve.png

Under the staged schedule every run of a seed reuses one warm-up of A and one trained B (<out>/shared), so all
selectors start from the same A. A run whose folder already holds metrics.json is read, not run again, so an
interrupted experiment continues where it stopped when the same command is given again.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import data
import figures
import runs
from runs import UsageError, prepare_out

TABLE_MODES = ("source_only", "adaptseg", "random", "entropy", "ppl", "spl", "supervised")

# Published mIoU, GTA5 -> Cityscapes, DeepLab-V2: source only and AdaptSegNet (multi-level) from Tsai et al. 2018,
# LabOR SPL (2.2% of pixels) from Shin et al. 2021, whose fully supervised model is within 0.1 of it.
PAPER_TABLE = {"source_only": 36.6, "adaptseg": 42.4, "spl": 66.6}


def add_flags(p):
    """train.py's flags for several runs at once."""
    p.add_argument("--seeds", type=runs.seed, nargs="+", default=None,
                   help="--mode table / sweep: several seeds, averaged")
    p.add_argument("--budgets", type=runs.fraction, nargs="+", default=[0.001, 0.005, 0.01, 0.022, 0.05],
                   help="--mode sweep: labelled fractions of pixels (PPL: at most as many points per image) "
                        "(default 0.001 0.005 0.01 0.022 0.05)")


def one_run(args, run, apply_defaults, out, mode, seed, name=None, **settings):
    """`run` with this mode, seed and settings, in out/<name> (by default named after them); a folder holding
    metrics.json is read instead."""
    a = argparse.Namespace(**vars(args))
    a.mode, a.seed, a.shared_dir = mode, seed, args.shared_dir or str(out / "shared")
    for k, v in settings.items():
        setattr(a, k, v)
    a.out = str(out / (name or "-".join([mode, *[f"{k}{v:g}" for k, v in settings.items()], f"seed{seed}"])))
    done = Path(a.out) / "metrics.json"
    if done.exists():
        saved = json.loads(done.read_text())
        if differ := changed_settings(saved.get("args", {}), runs.args_dict(a)):
            raise UsageError(f"{a.out} holds a finished run with other settings ({', '.join(differ)}); give the "
                             f"same command as before to continue that experiment, or another --out")
        if not args.quiet:
            print(f"=== {a.out}: done before, read from its metrics.json ===")
        return saved
    if not args.quiet:
        print(f"=== {a.out} ===")
    return run(apply_defaults(a))


# Settings that change where and how fast a run works, not what it computes.
PLUMBING = ("out", "quiet", "threads", "log_every", "num_workers", "save_every", "resume", "shared_dir", "seeds",
            "budgets", "device", "benchmark", "peak_tflops", "profile")   # (the --benchmark flags never act on a run)


def changed_settings(saved, wanted):
    """The settings (besides PLUMBING) in which a finished run's saved args differ from the wanted ones; a setting
    the saved run does not know (a flag added since) counts as unset."""
    saved, wanted = effective(saved), effective(wanted)
    return [f"--{k.replace('_', '-')} {saved.get(k)} -> {v}" for k, v in wanted.items()
            if k not in PLUMBING and saved.get(k) != v]


# Settings of the selector B (and of SPL / PPL alone): they do not act on a run that has no B.
SELECTOR_ONLY = ("lambda_dis", "selector_iters", "selector_init", "iast_alpha", "iast_beta", "iast_gamma")
PPL_ONLY = ("points", "ppl_space", "ppl_cell")   # and these act on PPL alone


def effective(settings):
    """Settings as they act: runs saved before a default changed wrote them otherwise, and a setting that does not
    act on the run's mode is left out (random pixels do not depend on B's --lambda-dis)."""
    s = {**runs.SAVED_BEFORE, **settings}   # a flag the run predates acted as runs.SAVED_BEFORE says
    if s.get("mode") not in ("spl", "ppl"):
        s.update(dict.fromkeys(SELECTOR_ONLY))
    if s.get("mode") != "ppl":
        s.update(dict.fromkeys(PPL_ONLY))
    if s.get("schedule") == "staged":
        s["select_at"] = None           # the staged schedule labels after --warmup (older runs saved [0.5])
    if s.get("mode") != "spl" or s.get("budget") is None:
        s["spl_cap"] = None             # the cap acts on capped SPL only
    if s.get("thing_shift") is None:
        s["thing_shift"] = s.get("shift")   # unset: the things shift with the rest (runs before --thing-shift 0)
    return s


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
            settings = {}
            if mode in ("random", "entropy") and args.budget is None:
                settings["budget"] = spl_frac  # SPL's own budget (0 if its mask was empty)
            m = one_run(args, run, apply_defaults, out, mode, seed, name=f"{mode}-seed{seed}", **settings)
            if mode == "spl":
                spl_frac = m["labelled_fraction"]
            rows[mode].append(m)
    results = summarise_table(rows, args)
    write_table(out, results, rows, seeds, args)
    return results


def spread(values):
    """The standard deviation over seeds, with n - 1 (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_required(metrics):
    """The mean required_fraction over the runs that bought labels (None where none did)."""
    req = [m["required_fraction"] for m in metrics if m.get("required_fraction") is not None]
    return float(np.mean(req)) if req else None


def summarise_table(rows, args):
    sup = np.mean([m["miou"] for m in rows["supervised"]])
    results = []
    for mode in TABLE_MODES:
        mious = [m["miou"] for m in rows[mode]]
        results.append({"mode": mode, "miou_mean": float(np.mean(mious)), "miou_std": spread(mious),
                        "mious": mious, "of_supervised": float(np.mean(mious) / sup),
                        "labelled_fraction": float(np.mean([m["labelled_fraction"] for m in rows[mode]])),
                        "points_per_image": float(np.mean([m["points_per_image"] for m in rows[mode]])),
                        "required_fraction": mean_required(rows[mode]),
                        "wall_seconds": float(np.mean([m["wall_seconds"] for m in rows[mode]]))})
    return results


def benchmark_name(args):
    """The data the runs used, as the first line of results.md and sweep.md names it."""
    if args.data != "synthetic":
        return args.data
    thing = args.shift if args.thing_shift is None else args.thing_shift
    return f"synthetic benchmark (--shift {args.shift:g}, --thing-shift {thing:g})"


def write_table(out, results, rows, seeds, args):
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Miniature Table 1: {benchmark_name(args)}, seeds {seeds}, {args.iters} iterations, schedule "
             f"{args.schedule}, model {args.model}.",
             "", "| method | mIoU (%) | per seed | of supervised | labelled pixels (%) | px / image | required_fraction | "
             "paper, GTA5->Cityscapes |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        req = "-" if r["required_fraction"] is None else f"{r['required_fraction']:.3f}"
        lines.append(f"| {r['mode']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['mious'])} | "
                     f"{100 * r['of_supervised']:.0f}% | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {req} | {PAPER_TABLE.get(r['mode'], '-')} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"seeds": seeds, "results": results}, indent=2))
    if not args.quiet:
        print("\n".join(lines))
    figures.plot_table(out / "results.png", results, seeds)


# ------------------------------------------------------------------------------------------------ the sweep

SWEEP_SELECTORS = ("random", "entropy", "spl", "ppl")


def run_sweep(args, run, apply_defaults, image_pixels=None):
    """Every selector at every budget of args.budgets (fractions of pixels; PPL gets at most the same number of
    points per image: budget * image_pixels), SPL's whole mask, AdaptSeg and supervised, for each seed. Writes sweep.md,
    sweep.json and budget_curve.png."""
    if image_pixels is None:  # the target image's size, as the annotator sees it
        h, w = args.size if args.data == "synthetic" else \
            data.real_sizes(args.preset, args.source_size, args.target_size)[1][::-1]   # (W, H) -> (H, W)
        image_pixels = h * w
    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "sweep.md").exists():
        raise UsageError(f"{out} already holds a sweep (sweep.md); pick another --out or delete it")
    seeds = args.seeds or [args.seed]
    rows = []  # one per run: selector, budget asked, seed and what came of it
    for seed in seeds:
        plan = [("spl", None, {}), ("adaptseg", None, {}), ("supervised", None, {})]  # spl first: it trains the
        for b in args.budgets:                                                        # warm-up and B that the
            for sel in SWEEP_SELECTORS:                                               # other runs reuse
                plan.append((sel, b, {"points": max(1, round(b * image_pixels))} if sel == "ppl" else {"budget": b}))
        for mode, budget, settings in plan:
            m = one_run(args, run, apply_defaults, out, mode, seed, **settings)
            name = "spl (whole mask)" if mode == "spl" and budget is None else mode
            rows.append({"selector": name, "budget": budget, "seed": seed, "run": Path(m["args"]["out"]).name,
                         "miou": m["miou"],
                         "labelled_fraction": m["labelled_fraction"], "points_per_image": m["points_per_image"],
                         "required_fraction": m.get("required_fraction")})
    summary = summarise_sweep(rows)
    write_sweep(out, summary, rows, seeds, args)
    return summary


def summarise_sweep(rows):
    """Mean and std over seeds for each (selector, budget)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["selector"], r["budget"]), []).append(r)
    summary = []
    for (sel, budget), rs in groups.items():
        req = [r["required_fraction"] for r in rs if r["required_fraction"] is not None]
        summary.append({"selector": sel, "budget": budget, "seeds": [r["seed"] for r in rs],
                        "mious": [r["miou"] for r in rs], "miou_mean": float(np.mean([r["miou"] for r in rs])),
                        "miou_std": spread([r["miou"] for r in rs]),
                        "labelled_fraction": float(np.mean([r["labelled_fraction"] for r in rs])),
                        "points_per_image": float(np.mean([r["points_per_image"] for r in rs])),
                        "required_fraction": float(np.mean(req)) if req else None})
    return summary


def write_sweep(out, summary, rows, seeds, args):
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Budget sweep: {benchmark_name(args)}, seeds {seeds}, {args.iters} iterations, schedule "
             f"{args.schedule}, model {args.model}.", "",
             "| selector | budget asked (%) | labelled pixels (%) | px / image | mIoU (%) | per seed | required_fraction |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(summary, key=lambda r: (r["budget"] is not None, r["budget"] or 0, r["selector"])):
        asked = "-" if r["budget"] is None else f"{100 * r['budget']:g}"
        req = "-" if r["required_fraction"] is None else f"{r['required_fraction']:.3f}"
        lines.append(f"| {r['selector']} | {asked} | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['mious'])} | {req} |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    (out / "sweep.json").write_text(json.dumps({"seeds": seeds, "budgets": args.budgets, "summary": summary,
                                                "runs": rows}, indent=2))
    if not args.quiet:
        print("\n".join(lines))
    figures.plot_budget_curve(out / "budget_curve.png", summary, seeds)
