"""Experiments of many runs. Each run is one `python train.py ...` command; an experiment is a list of them in two
stages (first each seed's shared parts), handed to an engine made for the job. No LabOR logic here.

    python experiments.py table [--seeds 0 1 ...] [train.py's flags]    the miniature Table 1: results.md/json/png
    python experiments.py sweep [--budgets ...] [--selectors ...]      a budget curve: sweep.md/json, budget_curve.png
    python experiments.py noise [--noise-levels ...] [--selectors ...]  an annotator who errs at outlines: noise.*
        --jobs N            here, N runs at a time (concurrent.futures and subprocess)
        --slurm PARTITION   on a SLURM cluster with submitit: a job array per stage, the second after the first
        --print             the commands, one a line, stage by stage (a shell loop, xargs -P, GNU parallel)
    python experiments.py regenerate|brief|list FOLDER ...  the tables again, from the runs' metrics.json alone

Stage 1 of a seed trains what its other runs share: SPL's run, whose warm-up of A and trained B (warmup.pt) the
others start from (train.py --init-from), and whose labelled fraction random buys (--budget-from). A run whose
folder holds metrics.json with the same settings is skipped and one holding a checkpoint resumes, so the same
command finishes an interrupted experiment (with the same --jobs and --threads: threads change float sums).
"""
import argparse
import concurrent.futures
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch

import figures
import runs
import selection
import train
from runs import UsageError

ROOT = Path(__file__).resolve().parent
# The rows of the miniature Table 1: (row, mode, settings, run folder stem, budget). The paper's rules by default; our
# variants and RIPU's selector are rows of their own beside them. budget "spl": SPL's labelled fraction of the same
# seed; "points": --points pixels per image (as PPL's clicks); None: the mode's own.
TABLE_ROWS = (("source_only", "source_only", {}, "source_only", None), ("adaptseg", "adaptseg", {}, "adaptseg", None),
              ("random", "random", {}, "random", "spl"), ("entropy", "entropy", {}, "entropy", "spl"),
              ("spl", "spl", {}, "spl", None), ("ppl", "ppl", {}, "ppl", None),
              ("ppl, cell 8", "ppl", {"ppl_cell": 8}, "ppl-cell8", None),
              ("random, 40 px", "random", {}, "random-points", "points"),
              ("ripu regions", "ripu_regions", {}, "ripu_regions", "spl"),
              ("ripu points", "ripu_points", {}, "ripu_points", None),
              ("ripu as published", "ripu", {}, "ripu", "spl"),
              ("supervised", "supervised", {}, "supervised", None))
STAGE_1 = ("spl", "source_only", "supervised")   # need no other run; SPL trains the seed's warm-up and B
# RIPU against LabOR at the same budget: its regions against SPL, its points against the paper's PPL.
LABOR_PARTNERS = {"ripu regions": "spl", "ripu as published": "spl", "ripu points": "ppl"}
# Published mIoU, GTA5 -> Cityscapes, DeepLab-V2: source only and AdaptSegNet (multi-level) from Tsai et al. 2018,
# LabOR SPL (2.2% of pixels) from Shin et al. 2021, whose fully supervised model is within 0.1 of it.
PAPER_TABLE = {"source_only": 36.6, "adaptseg": 42.4, "spl": 66.6}
# The sweep's selectors: each of selection.SELECTORS and our variants, as (--selectors key, label, mode, settings).
SWEEP = [(k, selection.label(k), k, {}) for k in selection.SELECTORS] + [
    (k, lab, mode, settings) for k, (mode, settings, lab, _) in selection.VARIANTS.items()]
SWEEP.sort(key=lambda s: list(figures.selector_styles()).index(s[1]))   # a variant after its selector


# ------------------------------------------------------------------------------------------------ the runs

def run_folder(mode, seed, **settings):
    """<mode>-<setting><value>...-seed<S>, e.g. random-budget0.005-seed1."""
    return "-".join([mode, *[f"{k}{v:g}" for k, v in settings.items()], f"seed{seed}"])


def noise_stem(mode, p):
    """At P = 0 the table's own name, so --out a table folder reuses its runs; <mode>-noise<P> otherwise."""
    return mode if p == 0 else f"{mode}-noise{p:g}"


def plan(a, base):
    """The experiment's runs: [(stage, folder name, mode, seed, settings, init-from folder, budget-from folder)]."""
    shares = lambda mode: train.shares_warmup(argparse.Namespace(mode=mode, schedule=base.schedule))  # noqa: E731
    runs_ = []

    def add(stage, name, mode, seed, settings=(), first=None, budget_from=None):
        runs_.append((stage, name, mode, seed, dict(settings), first if first not in (None, name) and shares(mode)
                       else None, budget_from))

    pixels = image_pixels(base)
    for s in a.seeds:
        if a.command == "table":
            for row, mode, settings, stem, budget in TABLE_ROWS:
                if budget == "points":
                    settings = {**settings, "budget": base.points / pixels}
                add(1 if row in STAGE_1 else 2, f"{stem}-seed{s}", mode, s, settings, f"spl-seed{s}",
                    f"spl-seed{s}" if budget == "spl" and base.budget is None else None)
        elif a.command == "sweep":
            add(1, f"spl-seed{s}", "spl", s)
            add(1, f"supervised-seed{s}", "supervised", s)
            add(2, f"adaptseg-seed{s}", "adaptseg", s, first=f"spl-seed{s}")
            for b in a.budgets:
                for key, _, mode, settings in SWEEP:
                    if key in a.selectors:
                        size = {"points": max(1, round(b * pixels))} if \
                            selection.SELECTORS[mode].budget == "points" else {"budget": b}
                        add(2, run_folder(mode, s, **size, **settings), mode, s, {**size, **settings}, f"spl-seed{s}")
        else:
            first = f"{noise_stem('spl', a.noise_levels[0])}-seed{s}"
            for p in a.noise_levels:
                for mode in a.selectors:
                    add(1 if mode == "spl" and first.startswith(noise_stem("spl", p) + "-") else 2,
                        f"{noise_stem(mode, p)}-seed{s}", mode, s, {"annotator_noise": p}, first,
                        None if mode == "spl" else first)   # SPL's fraction, the same at every P: one mask
    names = [r[1] for r in runs_]
    if len(set(names)) < len(names):
        raise UsageError(f"two {a.command} runs would share a folder ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                         f"give distinct --budgets / --noise-levels")
    return runs_


def commands(a, base, passed, out):
    """[stage 1's commands, stage 2's]: each run's `python train.py ...`, or `--resume` for a stopped one; a finished
    one with the same settings is left out, one with other settings refused by name."""
    stages = [[], []]
    extra = (["--threads", str(a.threads)] if a.threads else []) + (["--quiet"] if a.jobs > 1 or base.quiet else [])
    passed = [w for k, w in enumerate(passed) if w != "--quiet" and "--threads" not in (w.split("=")[0],
                                                                                         passed[k - 1] if k else "")]
    for stage, name, mode, seed, settings, first, budget_from in plan(a, base):
        folder = out / name
        flags = [f for k, v in settings.items() for f in (f"--{k.replace('_', '-')}", repr(v))]
        flags += ["--init-from", str(out / first)] if first else []
        flags += ["--budget-from", str(out / budget_from)] if budget_from else []
        cmd = [*passed, "--mode", mode, "--seed", str(seed), "--out", str(folder), *flags, *extra]
        if (folder / "metrics.json").is_file() or (folder / runs.CHECKPOINT).is_file():
            wanted = train.get_args(cmd)
            if (folder / "metrics.json").is_file():
                saved, what = json.loads((folder / "metrics.json").read_text())["args"], "finished"
            else:
                saved, what = runs.load_safe(folder / runs.CHECKPOINT, "checkpoint")["args"], "stopped"
                cmd = ["--resume", str(folder), *extra]
            if differ := runs.changed_settings(saved, runs.args_dict(wanted)):
                raise UsageError(f"{folder} holds a {what} run with other settings ({', '.join(differ)}); give the "
                                 f"same command as before to continue that experiment, or another --out")
            if what == "finished":
                continue
        stages[stage - 1].append(["python", "train.py", *cmd])
    return [s for s in stages if s]


class Here:
    """Runs the commands on this machine, `jobs` at a time (concurrent.futures and subprocess). Each run is a process
    group of its own: a SIGINT or SIGTERM to the experiment is passed to every run in progress once (each writes its
    checkpoint and stops; a second Ctrl-C then ends them at once), and no run starts after it."""

    def __init__(self, jobs):
        self.jobs, self.running, self.lock, self.signum = jobs, set(), threading.Lock(), 0

    def one(self, cmd):
        with self.lock:
            if self.signum:
                return None
            proc = subprocess.Popen([sys.executable, *cmd[1:]], start_new_session=True, cwd=ROOT)
            self.running.add(proc)
        code = proc.wait()
        with self.lock:
            self.running.discard(proc)
        folder = Path(cmd[cmd.index("--out" if "--out" in cmd else "--resume") + 1])
        if code == 0 and self.jobs > 1:
            m = json.loads((folder / "metrics.json").read_text())
            print(f"=== {folder}: {100 * m['miou']:.1f} mIoU, {m['wall_seconds']:.0f} s ===", flush=True)
        return code

    def stop(self, signum, frame):
        with self.lock:
            self.signum = self.signum or signum
            for proc in self.running:
                proc.send_signal(signum)

    def __call__(self, stages):
        previous = {s: signal.signal(s, self.stop) for s in runs.STOP_SIGNALS}
        try:
            with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
                for cmds in stages:
                    failed = [(c, code) for c, code in zip(cmds, pool.map(self.one, cmds)) if code]
                    if self.signum:
                        raise runs.Stopped(self.signum, 0, None, "stopped (every run in progress wrote its "
                                           "checkpoint); continue with the same command")
                    if failed:
                        raise UsageError("these runs failed (their errors are above): " + "; ".join(
                            f"{shlex.join(c[2:])} (exit {code})" for c, code in failed))
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def submit_slurm(stages, a, out, cluster="slurm"):
    """Each stage a SLURM job array (submitit), the second stage starting when the first has ended well. Returns the
    jobs, stage by stage (cluster="debug": submitit runs each job in this process when its result is asked)."""
    import submitit
    executor = submitit.AutoExecutor(folder=out / "slurm", cluster=cluster)
    executor.update_parameters(slurm_partition=a.slurm, gpus_per_node=a.gpus_per_run, cpus_per_task=a.cpus_per_run,
                               timeout_min=a.time, name=f"labor-{a.command}")
    jobs = []
    for cmds in stages:
        if jobs:
            executor.update_parameters(slurm_dependency="afterok:" + jobs[-1][0].job_id.split("_")[0])
        jobs.append(executor.submit_array([submitit.helpers.CommandFunction([sys.executable, *c[1:]], cwd=ROOT)
                                           for c in cmds]))
    return jobs


# ------------------------------------------------------------------------------------------------ statistics

def paired_difference(a, b):
    """a - b seed by seed (two lists over the same seeds, in the same order): the differences, their mean and a 95%
    confidence interval for it from Student's t on the paired differences, mean +- t(0.975; n-1) sd / sqrt(n) (sd
    with n - 1). `excludes_zero`: the interval lies wholly above or below zero; one seed has no interval (None)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n, mean = len(d), float(np.mean(d))
    if n < 2:
        return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": None, "excludes_zero": None}
    half = float(scipy.stats.t.ppf(0.975, n - 1)) * float(np.std(d, ddof=1)) / np.sqrt(n)
    lo, hi = float(mean - half), float(mean + half)
    return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0)}


def spread(values):
    """The standard deviation over seeds, with n - 1 (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_of(metrics, key, part=None):
    """The mean of metrics.json's `key` (its `part`) over the runs that have it (None where none has)."""
    values = [m[key] if part is None else m[key][part] for m in metrics if m.get(key) is not None]
    return float(np.mean(values)) if values else None


def image_pixels(args):
    """Pixels of one target-train image, as the annotator sees it."""
    h, w = args.size if args.data == "synthetic" else \
        train.data.real_sizes(args.preset, args.source_size, args.target_size)[1][::-1]   # (W, H) -> (H, W)
    return h * w


def _difference(d, bold=False):
    """A paired difference for a table cell: mean [interval], in points of mIoU; * where it excludes zero, "-" for
    none. bold (the README's brief): **bold** where it excludes zero instead, "" for none."""
    if not d:
        return "" if bold else "-"
    if d["ci95"] is None:
        return f"{100 * d['mean']:+.2f}"
    lo, hi = (100 * v for v in d["ci95"])
    text = f"{100 * d['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    if bold:
        return f"**{text}**" if d["excludes_zero"] else text
    return text + (" *" if d["excludes_zero"] else "")


def benchmark_name(args):
    """The data the runs used, as the first line of results.md and sweep.md names it."""
    if args["data"] != "synthetic":
        return args["data"]
    thing = args["shift"] if args.get("thing_shift") is None else args["thing_shift"]
    return f"synthetic benchmark (--shift {args['shift']:g}, --thing-shift {thing:g})"


def seeds_and_runs(folder, stems):
    """(seeds, {stem: [metrics per seed]}, missing): the seeds whose every run <stem>-seed<S> has finished (each
    paired difference compares the same seeds), their metrics, and {seed: runs missing} of the other seeds begun."""
    found = {}
    for f in Path(folder).glob("*-seed*/metrics.json"):
        stem, _, seed = f.parent.name.rpartition("-seed")
        if seed.isdigit() and stem in stems:
            found.setdefault(int(seed), {})[stem] = json.loads(f.read_text())
    seeds = sorted(s for s, got in found.items() if len(got) == len(stems))
    missing = {s: len(stems) - len(got) for s, got in sorted(found.items()) if s not in seeds}
    if not seeds:
        raise UsageError(f"{folder}: no seed has all {len(stems)} runs finished yet; nothing to summarise")
    return seeds, {stem: [found[s][stem] for s in seeds] for stem in stems}, missing


def partial_line(missing, n):
    return "" if not missing else "\n\nPartial: only the seeds whose every run had finished. Left out: " + "; ".join(
        f"seed {s} ({k} of {n} runs missing)" for s, k in missing.items()) + "."


def summary(mious, metrics, **more):
    return {"miou_mean": float(np.mean(mious)), "miou_std": spread(mious), "mious": mious,
            "labelled_fraction": mean_of(metrics, "labelled_fraction"),
            "points_per_image": mean_of(metrics, "points_per_image"),
            "required_fraction": mean_of(metrics, "required_fraction"), **more}


# ------------------------------------------------------------------------------------------------ the table

CAPTION = ("Differences are paired over the seeds: each seed's mIoU minus its partner's at the same labelled "
           "fraction (random at SPL's budget, or at {points} px per image for the point selectors; entropy at SPL's "
           "budget; RIPU's regions against SPL, its points against the paper's PPL), in points, with their mean and "
           "a 95% confidence interval from Student's t on the paired differences (n - 1 degrees of freedom); * marks "
           "an interval that excludes zero.")


def table(folder, quiet=True):
    """results.md, results.json and results.png from the table's runs in `folder` (TABLE_ROWS, found by name)."""
    seeds, by_stem, missing = seeds_and_runs(folder, [r[3] for r in TABLE_ROWS])
    rows = {row: by_stem[stem] for row, _, _, stem, _ in TABLE_ROWS}
    mious = {row: [m["miou"] for m in ms] for row, ms in rows.items()}
    results = []
    for row, mode, settings, _, _ in TABLE_ROWS:   # each selector against random (and entropy) at its budget
        picks = train.selecting(mode) and mode != "random"
        fraction = picks and train.selector_of(mode).budget == "fraction"
        partners = {"vs_random": ("random" if fraction else "random, 40 px") if picks else None,
                    "vs_entropy": "entropy" if fraction and mode != "entropy" else None,
                    "vs_labor": LABOR_PARTNERS.get(row), "vs_supervised": "supervised" if row != "supervised" else None}
        vs = {k: p and {"partner": p, **paired_difference(mious[row], mious[p])} for k, p in partners.items()}
        results.append({"mode": row, **summary(mious[row], rows[row]),
                        "of_supervised": float(np.mean(mious[row]) / np.mean(mious["supervised"])),
                        "annotation_seconds": mean_of(rows[row], "annotation_seconds", "per_image"),
                        "wall_seconds": mean_of(rows[row], "wall_seconds"), **vs})
    order = ("mode", "miou_mean", "miou_std", "mious", "of_supervised", "labelled_fraction", "points_per_image",
             "required_fraction", "annotation_seconds", "wall_seconds", "vs_random", "vs_entropy", "vs_labor",
             "vs_supervised")
    results = [{k: r[k] for k in order} for r in results]
    args = rows["spl"][0]["args"]
    lines = [f"Miniature Table 1: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, schedule "
             f"{args['schedule']}, model {args['model']}.", "",
             "| method | mIoU (%) | per seed | of supervised | labelled pixels (%) | px / image | annotator time per "
             "image (s) | required_fraction | minus random | minus entropy | RIPU minus LabOR | minus supervised | "
             "paper, GTA5->Cityscapes |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | {per_seed(r['mious'])} | "
                     f"{100 * r['of_supervised']:.0f}% | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {number(r['annotation_seconds'], '.0f')} | "
                     f"{number(r['required_fraction'], '.3f')} | {_difference(r['vs_random'])} | "
                     f"{_difference(r['vs_entropy'])} | {_difference(r['vs_labor'])} | "
                     f"{_difference(r['vs_supervised'])} | {PAPER_TABLE.get(r['mode'], '-')} |")
    caption = CAPTION.format(points=args["points"])
    saved = {"seeds": seeds, "caption": caption, "results": results,
             "runs": {row: [f"{stem}-seed{s}" for s in seeds] for row, _, _, stem, _ in TABLE_ROWS}}
    write(folder, "results", "\n".join(lines + ["", caption]) + partial_line(missing, len(TABLE_ROWS)),
          {**saved, **({"partial": {"missing": missing}} if missing else {})}, quiet)
    figures.plot_table(Path(folder) / "results.png", results, seeds)
    return results


def per_seed(values):
    return " / ".join(f"{100 * v:.1f}" for v in values)


def number(value, fmt):
    return "-" if value is None else format(value, fmt)


def write(folder, name, md, saved, quiet):
    (Path(folder) / f"{name}.md").write_text(md + "\n")
    (Path(folder) / f"{name}.json").write_text(json.dumps(saved, indent=2))
    if not quiet:
        print(md)


# ------------------------------------------------------------------------------------------------ the sweep

def sweep_rows(folder):
    """(seeds, rows, missing) of a sweep folder: one row per run (selector, budget asked, seed, run folder, what came
    of it), seed by seed in the sweep's order, over the seeds whose every run has finished. The budget asked is in
    the folder's name (random-budget0.005), or, for points per image (ppl-points92), the sweep budget that gives
    them."""
    names = {f.parent.name.rpartition("-seed")[0] for f in Path(folder).glob("*-seed*/metrics.json")}
    found = {n: re.fullmatch(r"([a-z_]+)((?:-[a-z_]*[a-z]\d[0-9.e+-]*)*)", n) for n in names}
    asked = {n: {k: float(v) for k, v in re.findall(r"-([a-z_]*[a-z])(\d[0-9.e+-]*?)(?=-[a-z]|$)", m[2])}
             for n, m in found.items() if m and re.search(r"-(budget|points)\d", n)}
    budgets = sorted({a["budget"] for a in asked.values() if "budget" in a})
    fixed = {"spl": "spl (whole mask)", "adaptseg": "adaptseg", "supervised": "supervised"}
    stems = [n for n in fixed if n in names] + list(asked)
    seeds, by_stem, missing = seeds_and_runs(folder, stems)
    pixels = image_pixels(argparse.Namespace(**by_stem[stems[0]][0]["args"]))
    entries = []   # (order, selector, budget, stem)
    styles = list(figures.selector_styles())
    for stem, a in asked.items():
        mode = found[stem][1]
        label = next((lab for k, (base, settings, lab, _) in selection.VARIANTS.items() if base == mode and all(
            a.get(s) == v for s, v in settings.items())), selection.label(mode))
        budget = a.get("budget", next((b for b in budgets if max(1, round(b * pixels)) == a.get("points")),
                                      a.get("points", 0) / pixels))
        entries.append(((budget, styles.index(label)), label, budget, stem))
    entries = [(None, name, None, stem) for stem, name in fixed.items() if stem in names] + sorted(entries)
    rows = [{"selector": sel, "budget": b, "seed": s, "run": f"{stem}-seed{s}", "miou": m["miou"],
             "labelled_fraction": m["labelled_fraction"], "points_per_image": m["points_per_image"],
             "required_fraction": m.get("required_fraction"),
             "annotation_seconds": (m.get("annotation_seconds") or {}).get("per_image")}
            for k, s in enumerate(seeds) for _, sel, b, stem in entries for m in [by_stem[stem][k]]]
    return seeds, sorted({b for _, _, b, _ in entries if b is not None}), rows, by_stem[stems[0]][0]["args"], missing


def sweep(folder, quiet=True):
    """sweep.md, sweep.json and budget_curve.png from a sweep folder's runs: per (selector, budget asked), the mean
    and spread over seeds and the paired differences to random and entropy at the same budget asked, and RIPU's to
    LabOR's ("vs_random", "vs_entropy", "vs_labor"); then each selector at equal annotator seconds (at_equal_seconds)."""
    seeds, budgets, rows, args, missing = sweep_rows(folder)
    groups = {}
    for r in rows:
        groups.setdefault((r["selector"], r["budget"]), []).append(r)
    out = []
    for (sel, budget), rs in groups.items():
        mious = [r["miou"] for r in rs]
        entry = {"selector": sel, "budget": budget, "seeds": [r["seed"] for r in rs], "mious": mious,
                 **summary(mious, rs), "annotation_seconds": mean_of(rs, "annotation_seconds")}
        for key, partner in (("vs_random", "random"), ("vs_entropy", "entropy"), ("vs_labor", LABOR_PARTNERS.get(sel))):
            if budget is not None and partner and sel != partner and (partner, budget) in groups:
                theirs = {r["seed"]: r["miou"] for r in groups[partner, budget]}
                both = [r for r in rs if r["seed"] in theirs]
                entry[key] = paired_difference([r["miou"] for r in both], [theirs[r["seed"]] for r in both])
        out.append(entry)
    lines = [f"Budget sweep: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, schedule "
             f"{args['schedule']}, model {args['model']}.", "",
             "| selector | budget asked (%) | labelled pixels (%) | px / image | annotator s / image | mIoU (%) | "
             "per seed | required_fraction | minus random | minus entropy | RIPU minus LabOR |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(out, key=lambda r: (r["budget"] is not None, r["budget"] or 0, r["selector"])):
        asked = "-" if r["budget"] is None else f"{100 * r['budget']:g}"
        lines.append(f"| {r['selector']} | {asked} | "
                     f"{100 * r['labelled_fraction']:.3f} | {r['points_per_image']:.1f} | "
                     f"{number(r['annotation_seconds'], '.1f')} | {100 * r['miou_mean']:.1f} ± "
                     f"{100 * r['miou_std']:.1f} | {per_seed(r['mious'])} | {number(r['required_fraction'], '.3f')} | "
                     f"{_difference(r.get('vs_random'))} | {_difference(r.get('vs_entropy'))} | "
                     f"{_difference(r.get('vs_labor'))} |")
    caption = ("Differences are paired over the seeds: each seed's mIoU minus random's (or entropy's; for RIPU's "
               "regions capped SPL's, for its points the paper's PPL's) at the same budget asked, in points, with "
               "their mean and a 95% confidence interval from Student's t on the paired differences (n - 1 "
               "degrees of freedom); * marks an interval that excludes zero. SPL and PPL stop at B's mask; RIPU's "
               "regions are whole 3x3 boxes (at least one per image): compare the labelled pixels too.")
    lines += ["", caption]
    equal = at_equal_seconds(rows)
    if equal:
        lines += ["", "At equal annotator time per image (cost.py): each seed's mIoU read off its curve between the "
                  "two budgets whose seconds bracket the level, linearly in log seconds (none beyond the measured "
                  "range); differences to random paired over the seeds both reach, 95% Student-t interval.", "",
                  "| annotator s / image | selector | mIoU (%) | per seed | seeds | minus random |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {e['seconds']:g} | {e['selector']} | {100 * e['miou_mean']:.1f} | {per_seed(e['mious'])} | "
                  f"{len(e['seeds'])} | {_difference(e['vs_random'])} |" for e in equal]
    saved = {"seeds": seeds, "budgets": budgets, "caption": caption, "summary": out, "at_equal_seconds": equal,
             "runs": rows, **({"partial": {"missing": missing}} if missing else {})}
    write(folder, "sweep", "\n".join(lines) + partial_line(missing, len(rows) // len(seeds)), saved, quiet)
    figures.plot_budget_curve(Path(folder) / "budget_curve.png", out, seeds)
    return out


# Annotator seconds per image at which the sweep compares selectors: log-spaced inside the range its budgets cost
# (0.02% to 0.5% of a 96x192 image: 4 to 92 points, 9.6 s to 221 s), so every selector is read, not extrapolated.
EQUAL_SECONDS = (10.0, 30.0, 100.0)


def at_equal_seconds(rows, levels=EQUAL_SECONDS):
    """Each selector's mIoU at equal annotator time per image: per seed, its runs at the sweep's budgets give points
    (seconds per image, mIoU); at each level the mIoU is read off the line between the two runs whose seconds
    bracket it, linearly in log seconds (no extrapolation: a level outside a seed's range gets no value). Then,
    per level, the mean over seeds and the paired difference to random at the same level ("vs_random", over the
    seeds both reach). Returns [{"selector", "seconds", "seeds", "mious", "miou_mean", "vs_random"}]."""
    curves = {}   # (selector, seed) -> [(log seconds, mIoU)]
    for r in rows:
        if r["budget"] is not None and r.get("annotation_seconds"):
            curves.setdefault((r["selector"], r["seed"]), []).append((np.log(r["annotation_seconds"]), r["miou"]))
    read = {}     # (selector, level) -> {seed: mIoU}
    for (sel, seed), pts in curves.items():
        by_x = {}
        for x, y in pts:   # equal seconds at two budgets (a selector capped at B's mask): their mean mIoU
            by_x.setdefault(x, []).append(y)
        xs = sorted(by_x)
        ys = [float(np.mean(by_x[x])) for x in xs]
        for level in levels:
            if xs[0] <= np.log(level) <= xs[-1]:
                read.setdefault((sel, level), {})[seed] = float(np.interp(np.log(level), xs, ys))
    out = []
    for (sel, level), by_seed in sorted(read.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seeds = sorted(by_seed)
        theirs = read.get(("random", level), {})
        both = [s for s in seeds if s in theirs]
        out.append({"selector": sel, "seconds": level, "seeds": seeds, "mious": [by_seed[s] for s in seeds],
                    "miou_mean": float(np.mean([by_seed[s] for s in seeds])),
                    "vs_random": paired_difference([by_seed[s] for s in both], [theirs[s] for s in both])
                    if sel != "random" and both else None})
    return out


# ------------------------------------------------------------------------------------------------ the noisy annotator

def noise_rows(folder):
    """(levels, [(row label, mode)]) of the noise runs in a folder (<mode>-noise<P>-seed<S>, and the table's names at
    P = 0): SPL and random first, then the other selectors in selection.SELECTORS' order."""
    found = {(m[1], float(m[2])) for f in Path(folder).glob("*-noise*-seed*/metrics.json")
             if (m := re.fullmatch(r"([a-z_]+)-noise([0-9.e-]+)", f.parent.name.rpartition("-seed")[0]))}
    modes = sorted({mode for mode, _ in found}, key=lambda m: (m not in ("spl", "random"), m != "spl",
                                                                list(selection.SELECTORS).index(m)))
    zero = [0.0] if any(Path(folder).glob("spl-seed*/metrics.json")) else []   # P = 0: the table's runs
    return zero + sorted({p for _, p in found}), [(selection.label(m), m) for m in modes]


def noise(folder, quiet=True):
    """noise.md, noise.json and noise.png: per annotator noise P and row, the mIoU over the seeds whose every run
    has finished, the share of labels the annotator got wrong, and the paired differences to random at the same P
    ("vs_random") and to the same row with the perfect annotator ("vs_perfect")."""
    levels, rows = noise_rows(folder)
    seeds, by_stem, missing = seeds_and_runs(folder, [noise_stem(m, p) for _, m in rows for p in levels])
    m = {(row, p): by_stem[noise_stem(mode, p)] for row, mode in rows for p in levels}
    out = []
    for p in levels:
        for row, _ in rows:
            mious = [r["miou"] for r in m[row, p]]
            random_ = [r["miou"] for r in m["random", p]]
            out.append({"level": p, "row": row, "seeds": seeds, "mious": mious, "miou_mean": float(np.mean(mious)),
                        "miou_std": spread(mious), "labelled_fraction": mean_of(m[row, p], "labelled_fraction"),
                        "wrong_share": float(np.mean([r.get("annotator_wrong_labels", 0) / max(r["labelled_pixels"], 1)
                                                      for r in m[row, p]])),
                        "vs_random": None if row == "random" else paired_difference(mious, random_),
                        "vs_perfect": None if p == 0 or 0 not in levels else
                        paired_difference(mious, [r["miou"] for r in m[row, 0.0]])})
    args = m["spl", levels[0]][0]["args"]
    lines = [f"Annotator noise: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, noise band "
             f"{args.get('noise_band', 1)} px.", "",
             "| P (label at an outline flipped) | method | mIoU (%) | per seed | labelled pixels (%) | wrong labels (%) | "
             "minus random | minus itself at P = 0 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {e['level']:g} | {e['row']} | {100 * e['miou_mean']:.1f} ± {100 * e['miou_std']:.1f} | "
              f"{per_seed(e['mious'])} | {100 * e['labelled_fraction']:.2f} | {100 * e['wrong_share']:.1f} | "
              f"{_difference(e['vs_random'])} | {_difference(e['vs_perfect'])} |" for e in out]
    caption = ("--annotator-noise P: a label bought within --noise-band pixels of a class boundary is replaced by "
               "the class on the other side with probability P. Random buys the fraction SPL bought at the same P. "
               "Differences are paired over the seeds, in points, with a 95% Student-t interval (n - 1 degrees of "
               "freedom); * marks an interval that excludes zero.")
    saved = {"levels": levels, "rows": [row for row, _ in rows], "seeds": seeds, "complete_seeds": seeds,
             "caption": caption, "summary": out, "runs": {f"{row} @ {p:g}": [f"{noise_stem(mode, p)}-seed{s}" for s in seeds]
                                                          for row, mode in rows for p in levels}}
    write(folder, "noise", "\n".join(lines + ["", caption]) + partial_line(missing, len(rows) * len(levels)),
          {**saved, **({"partial": {"missing_seeds": list(missing)}} if missing else {})}, quiet)
    figures.plot_noise(Path(folder) / "noise.png", out, seeds)
    return out


# ------------------------------------------------------------------------------------------------ the files again

def kinds(folder):
    """The experiments whose runs a folder holds: "table" (source_only-seed*), "sweep" (<mode>-budget<b>-seed*,
    <mode>-points<n>-seed*), "noise" (<mode>-noise<P>-seed*); a noise experiment may share a table's folder."""
    names = [f.parent.name for f in Path(folder).glob("*-seed*/metrics.json")]
    found = [k for k, pattern in (("table", r"source_only-seed\d+"), ("sweep", r".*-(budget|points)[0-9].*"),
                                  ("noise", r".*-noise[0-9].*")) if any(re.fullmatch(pattern, n) for n in names)]
    if not found:
        raise UsageError(f"{folder} holds no finished run of a table, a sweep or a noise experiment")
    return found


def regenerate(folder, quiet=True):
    """Rewrite the files of every experiment in the folder from its runs' metrics.json alone (no run is trained or
    checked again); a seed whose runs have not all finished is left out and named."""
    return {k: {"table": table, "sweep": sweep, "noise": noise}[k](folder, quiet) for k in kinds(folder)}


def brief(folder):
    """The README's short form of the folder's experiments, from its runs: per row the mIoU per seed, the mean, what
    was labelled and what it cost a person, and the paired differences (bold where the interval excludes zero)."""
    diff = lambda d: _difference(d, bold=True)  # noqa: E731
    lines = []
    done = regenerate(folder)
    if "table" in done:
        lines += ["| method | mIoU (%) per seed | mean | labelled | annotator s / image | minus random, same budget | "
                  "RIPU minus LabOR |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {per_seed(r['mious'])} | {100 * r['miou_mean']:.1f} | "
                  f"{100 * r['labelled_fraction']:.2f}% | {number(r['annotation_seconds'], '.0f')} | "
                  f"{diff(r['vs_random'])} | {diff(r['vs_labor'])} |" for r in done["table"]]
    if "sweep" in done:
        saved = json.loads((Path(folder) / "sweep.json").read_text())
        names = [n for n in figures.selector_styles() if n != "random" and any(r["selector"] == n for r in done["sweep"])]
        for key, col, entries in (("budget", "budget", saved["summary"]), ("seconds", "annotator s / image",
                                                                            saved["at_equal_seconds"])):
            at = {(e["selector"], e[key]): e for e in entries}
            lines += ["" if lines else None, f"| {col} | random mIoU | " + " | ".join(f"{n} minus random" for n in names)
                      + " |", "|---|---|" + "---|" * len(names)]
            for level in sorted({e[key] for e in entries if e[key] is not None}):
                rand = at.get(("random", level))
                lines.append(f"| {100 * level:g}% | " if key == "budget" else f"| {level:g} | ")
                lines[-1] += ("-" if rand is None else f"{100 * rand['miou_mean']:.1f}") + " | " + " | ".join(
                    diff(at.get((n, level), {}).get("vs_random")) for n in names) + " |"
    if "noise" in done:
        rows = list(dict.fromkeys(e["row"] for e in done["noise"]))
        at = {(e["level"], e["row"]): e for e in done["noise"]}
        others = [r for r in rows if r != "random"]
        lines += ["" if lines else None, "| P (annotator errs at outlines) | wrong labels (SPL) | " + " | ".join(
            f"{r} mIoU" for r in rows) + " | " + " | ".join(f"{r} minus random" for r in others) + " |",
                  "|---|---|" + "---|" * (len(rows) + len(others))]
        lines += [f"| {p:g} | {100 * at[p, 'spl']['wrong_share']:.1f}% | " + " | ".join(
            f"{100 * at[p, r]['miou_mean']:.1f}" for r in rows) + " | " + " | ".join(
            diff(at[p, r]["vs_random"]) for r in others) + " |" for p in dict.fromkeys(e["level"] for e in done["noise"])]
    return "\n".join(line for line in lines if line is not None)


def listing(folder):
    """Any folder of run folders <name>-seed<S>: per name, the evaluation split, the labelled fraction, mIoU per seed
    and the mean. Returns markdown."""
    groups = {}
    for f in sorted(Path(folder).glob("*-seed*/metrics.json")):
        name, _, seed = f.parent.name.rpartition("-seed")
        if seed.isdigit():
            groups.setdefault(name, []).append((int(seed), json.loads(f.read_text())))
    lines = ["| runs | split | labelled (%) | mIoU (%) per seed | seeds | mean |", "|---|---|---|---|---|---|"]
    for name, found in groups.items():
        found.sort(key=lambda sm: sm[0])
        mious = [100 * m["miou"] for _, m in found]
        lines.append(f"| {name} | {found[0][1]['eval_split']} | "
                     f"{100 * np.mean([m['labelled_fraction'] for _, m in found]):.3f} | "
                     f"{' / '.join(f'{v:.2f}' for v in mious)} | {', '.join(str(s) for s, _ in found)} | "
                     f"{np.mean(mious):.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the command line

def build_parser():
    p = runs.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("table", "the miniature Table 1: every mode, the paper's budgets"),
                       ("sweep", "every selector at several budgets: the budget curve"),
                       ("noise", "SPL and random (and others) with an annotator who errs at outlines")):
        e = sub.add_parser(name, help=what, description=f"{what}. Any flag of train.py (python train.py --help) "
                           f"is given to every run, e.g. --iters 60 or --eval-split tune.").add_argument
        e("--seeds", type=runs.seed, nargs="+", default=None, help="the seeds (default: train.py's --seed, 0)")
        e("--out", default=None, help=f"the experiment's folder (default runs/{name}-<time>)")
        e("--jobs", type=runs.positive_int, default=1, help="runs at once on this machine, each with --threads / "
          "--jobs threads (default 1; on a 2-core CPU 2 runs of one thread do more than one of two)")
        e("--slurm", metavar="PARTITION", default=None, help="submit the runs to this SLURM partition (submitit)")
        e("--gpus-per-run", type=runs.non_negative_int, default=1, help="--slurm: GPUs of each run (default 1)")
        e("--cpus-per-run", type=runs.positive_int, default=8, help="--slurm: CPU cores of each run (default 8)")
        e("--time", type=runs.positive_int, default=24 * 60, help="--slurm: minutes a run may take (default 1440)")
        e("--print", action="store_true", help="print the commands, one a line, stage by stage; run nothing")
        if name == "sweep":
            e("--budgets", type=runs.fraction, nargs="+", default=[0.001, 0.005, 0.01, 0.022, 0.05],
              help="labelled fractions of the pixels; a point selector gets as many points per image (default 0.001 "
                   "0.005 0.01 0.022 0.05)")
        if name != "table":
            keys = [k for k, *_ in SWEEP] if name == "sweep" else [k for k, s in selection.SELECTORS.items()
                                                                   if s.budget == "fraction"]
            e("--selectors", nargs="+", choices=keys, default=keys if name == "sweep" else
              ["spl", "random", "ripu_regions"], help="the selectors (default: " + ("all" if name == "sweep" else
              "spl random ripu_regions; spl and random always") + ")")
        if name == "noise":
            e("--noise-levels", type=runs.unit_float, nargs="+", default=[0.0, 0.05, 0.2],
              help="the --annotator-noise levels P (default 0 0.05 0.2; at 0 the runs are named as the table's, so "
                   "--out a table's folder reuses them)")
    for name, what in (("regenerate", "rewrite the experiments' files in FOLDER from its runs' metrics.json"),
                       ("brief", "print the README's tables of FOLDER"), ("list", "any folder of <name>-seed<S> runs: "
                                                                                  "mIoU per seed")):
        sub.add_parser(name, help=what).add_argument("folders", nargs="+", metavar="FOLDER")
    return p


def main(argv=None):
    """One line `error: ...` and exit 2 for a mistake; 128 + the signal for a stop (every run wrote a checkpoint)."""
    try:
        a, passed = build_parser().parse_known_args(argv)
        if a.command in ("regenerate", "brief", "list"):
            if passed:
                raise UsageError(f"unrecognized arguments: {' '.join(passed)}")
            for f in a.folders:
                print(brief(f) if a.command == "brief" else listing(f) if a.command == "list" else
                      f"{f}: rewritten from its runs' metrics.json ({', '.join(regenerate(f))})")
            return
        experiment(a, passed)
    except runs.Stopped as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def plan_stages(a, passed):
    """The experiment's commands, stage by stage: every flag checked, nothing run."""
    if "--mode" in passed or any(w.startswith("--mode=") for w in passed):
        raise UsageError("the experiment chooses each run's --mode; leave it out")
    base = train.get_args([*passed, "--mode", "spl"])   # every flag of train.py checked now, before any run starts
    a.seeds, a.threads, a.quiet = a.seeds or [base.seed], base.threads, base.quiet
    if len(set(a.seeds)) < len(a.seeds) or len(set(getattr(a, "budgets", []))) < len(getattr(a, "budgets", [])):
        raise UsageError("a seed or budget given twice would count twice in the means and intervals; give each once")
    if a.command == "noise":
        a.noise_levels = sorted(set(a.noise_levels))
        if "spl" not in a.selectors or "random" not in a.selectors or base.budget is not None:
            raise UsageError("noise: give spl and random among --selectors, and no --budget (every selector buys "
                             "SPL's labelled fraction)")
    if a.jobs > 1:   # one thread each on a 2-core CPU: two one-thread runs do more than one two-thread run
        a.threads = max(1, (base.threads or torch.get_num_threads()) // a.jobs)
    if a.slurm:
        a.threads = a.cpus_per_run
    a.out = Path(a.out or f"runs/{a.command}-{time.strftime('%Y%m%d-%H%M%S')}")
    return commands(a, base, passed, a.out)


def experiment(a, passed):
    """Plan the runs, hand them to an engine, write the tables (here) or say how to (--slurm, --print)."""
    stages = plan_stages(a, passed)
    if a.print:
        for k, cmds in enumerate(stages):
            print(f"# stage {k + 1} of {len(stages)}" + (": after every run above has ended" if k else ""))
            print("\n".join(shlex.join(c) for c in cmds))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    if a.slurm:
        jobs = submit_slurm(stages, a, a.out)
        print(f"submitted {sum(map(len, jobs))} runs as {len(jobs)} job array(s): "
              f"{', '.join(j[0].job_id.split('_')[0] for j in jobs)}; when they have ended, give this command again "
              f"(stopped runs resume) or python experiments.py regenerate {a.out}")
        return
    Here(a.jobs)(stages)
    {"table": table, "sweep": sweep, "noise": noise}[a.command](a.out, quiet=a.quiet)


if __name__ == "__main__":
    main()
