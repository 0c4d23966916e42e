"""Experiments of several runs, each one call of train.py's `run` with the same settings but the mode, budget and
seed. No LabOR logic of its own.

    --mode table   the miniature Table 1: every mode at the paper's budgets -> results.md, results.json, results.png
    --mode sweep   a budget curve: random, entropy, SPL (capped, and its whole mask) and PPL at several budgets,
                   with AdaptSeg and supervised as lines -> sweep.md, sweep.json, budget_curve.png
    --mode noise   SPL, random (and RIPU's regions) with an annotator who errs at outlines, at several
                   --annotator-noise levels -> noise.md, noise.json, noise.png

Under the staged schedule every run of a seed reuses one warm-up of A and one trained B (<out>/shared), so all
selectors start from the same A. A run whose folder already holds metrics.json is read, not run again, and one
holding a checkpoint is resumed, so an interrupted experiment continues where it stopped when the same command is
given again (with the same --jobs and --threads: the thread count changes the floating-point sums). --jobs N runs
N runs at a time in worker processes (Launcher).
"""
import argparse
import concurrent.futures
import contextlib
import functools
import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

import data
import figures
import runs
from runs import UsageError, prepare_out

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
TABLE_MODES = tuple(row for row, *_ in TABLE_ROWS)  # the rows' names (results.json's "mode")
# Each selector's equal-budget partners for the paired differences: random at the same labelled fraction (SPL's, or
# --points per image for point selectors), and entropy where it buys the same fraction.
PARTNERS = {"entropy": ("random", None), "spl": ("random", "entropy"), "ripu regions": ("random", "entropy"),
            "ripu as published": ("random", "entropy"), "ppl": ("random, 40 px", None),
            "ppl, cell 8": ("random, 40 px", None), "ripu points": ("random, 40 px", None)}
# RIPU against LabOR at the same budget ("vs_labor"): its regions against SPL (at SPL's labelled fraction), its
# points against the paper's PPL (at --points per image); in the sweep, at the same budget asked.
LABOR_PARTNERS = {"ripu regions": "spl", "ripu as published": "spl", "ripu points": "ppl"}

# Published mIoU, GTA5 -> Cityscapes, DeepLab-V2: source only and AdaptSegNet (multi-level) from Tsai et al. 2018,
# LabOR SPL (2.2% of pixels) from Shin et al. 2021, whose fully supervised model is within 0.1 of it.
PAPER_TABLE = {"source_only": 36.6, "adaptseg": 42.4, "spl": 66.6}


def add_flags(p):
    """train.py's flags for several runs at once."""
    g = p.add_argument_group("experiments: --mode table and --mode sweep (experiments.py)")
    g.add_argument("--seeds", type=runs.seed, nargs="+", default=None,
                   help="--mode table / sweep: several seeds, averaged")
    g.add_argument("--budgets", type=runs.fraction, nargs="+", default=[0.001, 0.005, 0.01, 0.022, 0.05],
                   help="--mode sweep: labelled fractions of pixels (PPL: at most as many points per image) "
                        "(default 0.001 0.005 0.01 0.022 0.05)")
    g.add_argument("--jobs", type=runs.positive_int, default=1,
                   help="--mode table / sweep: runs at once, each in a process of its own with --threads / N threads "
                        "(default 1; on a 2-core CPU 2 is faster: two one-thread runs do more than one two-thread run, "
                        "docs/operations.md). Results equal those of the same runs made one by one with that many "
                        "threads")
    g.add_argument("--selectors", nargs="+", default=None, choices=[key for _, key, _, _ in SWEEP_SELECTORS],
                   help="--mode sweep: the selectors to run at every budget (default: all of them); --mode noise: "
                        "spl, random and any of ripu_regions, entropy (default: spl random ripu_regions)")
    g.add_argument("--noise-levels", type=runs.unit_float, nargs="+", default=[0.0, 0.05, 0.2],
                   help="--mode noise: the --annotator-noise levels P to run (default 0 0.05 0.2; at 0 the runs "
                        "are named as the table's, so --out a table folder reuses them)")


def one_run(args, run, apply_defaults, out, mode, seed, name=None, **settings):
    """`run` with this mode, seed and settings, in run_folder(...); a folder holding metrics.json is read instead,
    one holding a checkpoint (a run stopped or killed before) is resumed, each after checking its settings."""
    a = argparse.Namespace(**vars(args))
    a.mode, a.seed, a.shared_dir = mode, seed, args.shared_dir or str(out / "shared")
    for k, v in settings.items():
        setattr(a, k, v)
    a.out = str(run_folder(out, mode, seed, name, **settings))
    done = Path(a.out) / "metrics.json"
    if done.exists():
        saved = json.loads(done.read_text())
        if differ := changed_settings(saved.get("args", {}), runs.args_dict(a)):
            raise UsageError(f"{a.out} holds a finished run with other settings ({', '.join(differ)}); give the "
                             f"same command as before to continue that experiment, or another --out")
        if not args.quiet:
            print(f"=== {a.out}: done before, read from its metrics.json ===")
        return saved
    if (Path(a.out) / runs.CHECKPOINT).exists():  # stopped (or killed) in an earlier try: continue it exactly
        resumed = runs.resume_args(argparse.Namespace(**{**vars(a), "resume": a.out}))
        if differ := changed_settings(runs.args_dict(resumed), runs.args_dict(a)):
            raise UsageError(f"{a.out} holds a stopped run with other settings ({', '.join(differ)}); give the "
                             f"same command as before to continue that experiment, or another --out")
        a = resumed
    if not args.quiet:
        print(f"=== {a.out}{' (resumed)' if a.resume else ''} ===")
    return run(apply_defaults(a))


class Launcher:
    """Starts an experiment's runs (one_run) and returns a Future of each one's metrics: one after another in this
    process (--jobs 1), or in --jobs worker processes that share the threads. A run that needs another's result
    (the seed's warm-up and B, SPL's budget) is launched after waiting for that result; a run asked for twice
    (noise runs at P = 0 are the table's) is launched once. While it is open, the folder is claimed
    (runs.claimed): a second command given the same folder is refused before it writes anything.

    SIGTERM or Ctrl-C: the runs in progress stop at an iteration boundary with a checkpoint (the workers get a
    SIGTERM from here; they ignore Ctrl-C), no further run starts, and the experiment exits 128 + the signal. The
    same command continues it: finished runs are read back, stopped ones resume. A second Ctrl-C ends it at once."""

    def __init__(self, args, run, apply_defaults, out):
        self.args, self.run, self.apply_defaults, self.out = args, run, apply_defaults, out
        self.pool, self.previous, self.launched, self.signum = None, {}, {}, 0
        self.held = contextlib.ExitStack()   # first: a folder in use is refused before a worker starts
        self.held.enter_context(runs.claimed(out, rank=getattr(args, "rank", 0)))
        if args.jobs > 1:  # 'spawn': a fresh interpreter, as forking a process that holds OpenMP threads is unsafe
            context = multiprocessing.get_context("spawn")
            self.stop = context.RawValue("b", 0)  # 1: workers start no further run (a plain byte: signal-safe)
            self.pool = concurrent.futures.ProcessPoolExecutor(args.jobs, context, initializer=_start_worker,
                                                               initargs=(self.stop,))
            threads = max(1, (args.threads or torch.get_num_threads()) // args.jobs)
            self.worker_args = argparse.Namespace(**{**vars(args), "threads": threads, "quiet": True})

    def __call__(self, mode, seed, name=None, **settings):
        if self.signum:
            raise runs.Stopped(self.signum, 0, None, STOPPED)
        folder = run_folder(self.out, mode, seed, name, **settings)
        if folder in self.launched:
            return self.launched[folder]
        if self.pool is None:
            future = concurrent.futures.Future()
            future.set_result(one_run(self.args, self.run, self.apply_defaults, self.out, mode, seed, name,
                                      **settings))
        else:
            future = self.pool.submit(_run_in_worker, self.worker_args, self.run, self.apply_defaults, self.out,
                                      mode, seed, name, **settings)
            if not self.args.quiet:
                future.add_done_callback(_say_done)
        self.launched[folder] = future
        return future

    def on_signal(self, signum, frame):
        at_once = signum == signal.SIGINT and (self.signum or runs.signal_noted())  # a second Ctrl-C
        self.signum = self.signum or signum
        if at_once:
            for worker in multiprocessing.active_children():
                worker.kill()
            raise KeyboardInterrupt
        if self.pool is not None:
            self.stop.value = 1
            for worker in multiprocessing.active_children():
                with contextlib.suppress(ProcessLookupError):  # it may have just ended
                    os.kill(worker.pid, signal.SIGTERM)

    def __enter__(self):
        self.previous = {s: signal.getsignal(s) for s in runs.STOP_SIGNALS}
        if threading.current_thread() is threading.main_thread():  # only there may handlers be set
            for s, handler in self.previous.items():
                if handler is not signal.SIG_IGN:
                    signal.signal(s, self.on_signal)
        return self

    def __exit__(self, kind, error, traceback):
        if self.pool is not None:
            if kind is not None:  # an error or a stop: the workers start nothing more
                self.stop.value = 1
            self.pool.shutdown(wait=True, cancel_futures=kind is not None)
        self.held.close()   # the folder's claim
        if threading.current_thread() is threading.main_thread():
            for s, handler in self.previous.items():
                signal.signal(s, handler or signal.SIG_DFL)
        if kind is KeyboardInterrupt and self.signum:
            raise runs.Stopped(signal.SIGINT, 0, None, "stopped at once (a second Ctrl-C); the stopped runs continue "
                               "from their last periodic checkpoint with the same command") from None
        if isinstance(error, runs.Stopped) or (kind is not None and self.signum):  # (a worker killed as it started)
            raise runs.Stopped(self.signum or error.signum, 0, None, STOPPED) from None


STOPPED = "stopped (every run in progress wrote its checkpoint); continue with the same command"


def run_folder(out, mode, seed, name=None, **settings):
    """out/<name>, by default named after the mode, the settings and the seed (random-budget0.005-seed1)."""
    return Path(out) / (name or "-".join([mode, *[f"{k}{v:g}" for k, v in settings.items()], f"seed{seed}"]))


_worker = {"stop": None, "signalled": False}  # in a worker process: the experiment's stop byte, a SIGTERM seen


def _start_worker(stop):
    """A worker leaves Ctrl-C to the experiment, which passes a SIGTERM on. A SIGTERM during a run stops it with a
    checkpoint (runs.stop_on_signal); one between runs is noted here, and the worker starts no further run."""
    _worker["stop"] = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _note_stop)


def _note_stop(signum, frame):
    _worker["signalled"] = True


def _run_in_worker(args, run, apply_defaults, out, mode, seed, name, **settings):
    """one_run in a worker process, unless the experiment is stopping."""
    if _worker["stop"].value or _worker["signalled"]:
        raise runs.Stopped(signal.SIGTERM, 0, None, "not started: the experiment is stopping")
    return one_run(args, run, apply_defaults, out, mode, seed, name, **settings)


def _say_done(future):
    if not future.cancelled() and future.exception() is None:
        m = future.result()
        print(f"=== {m['args']['out']}: {100 * m['miou']:.1f} mIoU, {m['wall_seconds']:.0f} s ===", flush=True)


# Settings that change where and how fast a run works, not what it computes.
PLUMBING = ("out", "quiet", "threads", "log_every", "num_workers", "save_every", "resume", "shared_dir", "seeds",
            "budgets", "device", "benchmark", "peak_tflops", "profile", "jobs",
            "selectors", "noise_levels")   # (--benchmark never acts on a run)


def changed_settings(saved, wanted):
    """The settings (besides PLUMBING) in which a saved run's args differ from the wanted ones; a setting
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


def seed_by_seed(seeds):
    """(seed, the seeds whose first runs to queue now) for each seed in turn: an experiment runs seed by seed, so
    that one stopped early has its first seeds whole (regenerate makes a partial table, sweep or noise summary of
    them), and the next seed's first runs are queued before this seed's are awaited, to keep every job busy."""
    for n, seed in enumerate(seeds):
        yield seed, seeds[:2] if n == 0 else seeds[n + 1:n + 2]


def run_table(args, run, apply_defaults):
    """Every mode with the same seed(s), each one `run(args)`; random and entropy at the budget SPL used. Writes
    results.md, results.json and results.png in the run folder."""
    out = Path(args.out or f"runs/table-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "results.md").exists() and not _partial(out):  # a partial table (regenerate) is continued
        raise UsageError(f"{out} already holds a table (results.md); pick another --out or delete it")
    refuse_other_experiment(out, "table")
    prepare_out(out)  # a file, or a folder we cannot write in, is refused before the first run
    seeds = args.seeds or [args.seed]
    runs_ = {}
    first = ("spl", "source_only", "supervised")  # need no other run: SPL trains the seed's warm-up and B for the rest
    with Launcher(args, run, apply_defaults, out) as launch:
        (out / PLAN).write_text(json.dumps({"experiment": "table", "seeds": seeds}))  # for a partial table
        for seed, starting in seed_by_seed(seeds):
            for s in starting:
                for row, mode, settings, stem, _ in sorted((r for r in TABLE_ROWS if r[0] in first),
                                                           key=lambda r: first.index(r[0])):  # SPL first
                    runs_[row, s] = launch(mode, s, name=f"{stem}-seed{s}", **settings)
            spl_frac = runs_["spl", seed].result()["labelled_fraction"]  # (0 if its mask was empty)
            for row, mode, settings, stem, budget in TABLE_ROWS:
                if row not in first:
                    if budget == "spl" and args.budget is None:
                        settings = {**settings, "budget": spl_frac}
                    elif budget == "points":
                        settings = {**settings, "budget": args.points / image_pixels(args)}
                    runs_[row, seed] = launch(mode, seed, name=f"{stem}-seed{seed}", **settings)
        rows = {row: [runs_[row, seed].result() for seed in seeds] for row in TABLE_MODES}
        return table_from_runs(out, rows, seeds, args)


def table_from_runs(out, rows, seeds, args):
    """results.md, results.json and results.png from the runs' metrics ({row: [metrics per seed]})."""
    results = summarise_table(rows, args)
    write_table(out, results, rows, seeds, args)
    return results


def spread(values):
    """The standard deviation over seeds, with n - 1 (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# Student t quantiles t(0.975; df) for df = 1..30 (any statistics table; 3 decimals); beyond 30, t975 below.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df):
    """t(0.975; df): the table up to 30 degrees of freedom, beyond it the Cornish-Fisher expansion around the
    normal quantile z = 1.95996 (off by less than 0.001 from 31 on)."""
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def paired_difference(a, b):
    """a - b seed by seed (two lists over the same seeds, in the same order): the differences, their mean and a 95%
    confidence interval for it from Student's t on the paired differences, mean +- t(0.975; n-1) * sd / sqrt(n)
    (sd with n - 1). `excludes_zero` says whether the interval lies wholly above or below zero; with one seed
    there is no interval (None)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n, mean = len(d), float(np.mean(d))
    if n < 2:
        return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": None, "excludes_zero": None}
    half = t975(n - 1) * float(np.std(d, ddof=1)) / np.sqrt(n)
    lo, hi = float(mean - half), float(mean + half)
    return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0)}


def mean_required(metrics):
    """The mean required_fraction over the runs that bought labels (None where none did)."""
    req = [m["required_fraction"] for m in metrics if m.get("required_fraction") is not None]
    return float(np.mean(req)) if req else None


def summarise_table(rows, args):
    """Per row: the mean and spread over seeds, and the paired differences to its equal-budget partners
    (PARTNERS: "vs_random", "vs_entropy"; LABOR_PARTNERS: "vs_labor"; and "vs_supervised"; each
    experiments.paired_difference, None where there is none)."""
    sup = np.mean([m["miou"] for m in rows["supervised"]])
    results = []
    for mode in TABLE_MODES:
        mious = [m["miou"] for m in rows[mode]]
        vs = {}
        for key, partner in zip(("vs_random", "vs_entropy", "vs_labor"),
                                (*PARTNERS.get(mode, (None, None)), LABOR_PARTNERS.get(mode))):
            vs[key] = None if partner is None else {
                "partner": partner, **paired_difference(mious, [m["miou"] for m in rows[partner]])}
        # the paper's "within 0.1 of full supervision", tested seed by seed
        vs["vs_supervised"] = None if mode == "supervised" else {
            "partner": "supervised", **paired_difference(mious, [m["miou"] for m in rows["supervised"]])}
        results.append({"mode": mode, "miou_mean": float(np.mean(mious)), "miou_std": spread(mious),
                        "mious": mious, "of_supervised": float(np.mean(mious) / sup),
                        "labelled_fraction": float(np.mean([m["labelled_fraction"] for m in rows[mode]])),
                        "points_per_image": float(np.mean([m["points_per_image"] for m in rows[mode]])),
                        "required_fraction": mean_required(rows[mode]),
                        "annotation_seconds": mean_seconds(rows[mode]),
                        "wall_seconds": float(np.mean([m["wall_seconds"] for m in rows[mode]])), **vs})
    return results


def mean_seconds(metrics):
    """The mean over runs of the annotator seconds per image (metrics.json's annotation_seconds; None if none)."""
    secs = [m["annotation_seconds"]["per_image"] for m in metrics if m.get("annotation_seconds")]
    return float(np.mean(secs)) if secs else None


def image_pixels(args):
    """Pixels of one target-train image, as the annotator sees it."""
    h, w = args.size if args.data == "synthetic" else \
        data.real_sizes(args.preset, args.source_size, args.target_size)[1][::-1]   # (W, H) -> (H, W)
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
    if args.data != "synthetic":
        return args.data
    thing = args.shift if args.thing_shift is None else args.thing_shift
    return f"synthetic benchmark (--shift {args.shift:g}, --thing-shift {thing:g})"


CAPTION = ("Differences are paired over the seeds: each seed's mIoU minus its partner's at the same labelled "
           "fraction (random at SPL's budget, or at {points} px per image for the point selectors; entropy at SPL's "
           "budget; RIPU's regions against SPL, its points against the paper's PPL), in points, with their mean and "
           "a 95% confidence interval from Student's t on the paired differences (n - 1 degrees of freedom); * marks "
           "an interval that excludes zero.")


def write_table(out, results, rows, seeds, args, missing=None):
    """results.md, results.json and results.png. `missing` ({seed: [run folders]}): the seeds left out of a partial
    table because some of their runs had not finished (regenerate); it is named under the table."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Miniature Table 1: {benchmark_name(args)}, seeds {seeds}, {args.iters} iterations, schedule "
             f"{args.schedule}, model {args.model}.",
             "", "| method | mIoU (%) | per seed | of supervised | labelled pixels (%) | px / image | "
             "annotator time per image (s) | required_fraction | minus random | minus entropy | "
             "RIPU minus LabOR | minus supervised | paper, GTA5->Cityscapes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        req = "-" if r["required_fraction"] is None else f"{r['required_fraction']:.3f}"
        secs = "-" if r.get("annotation_seconds") is None else f"{r['annotation_seconds']:.0f}"
        lines.append(f"| {r['mode']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['mious'])} | "
                     f"{100 * r['of_supervised']:.0f}% | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {secs} | {req} | {_difference(r.get('vs_random'))} | "
                     f"{_difference(r.get('vs_entropy'))} | {_difference(r.get('vs_labor'))} | "
                     f"{_difference(r.get('vs_supervised'))} | {PAPER_TABLE.get(r['mode'], '-')} |")
    lines += ["", CAPTION.format(points=args.points)]
    if missing:
        lines += ["", f"Partial: only the seeds whose every run had finished. Left out: " + "; ".join(
            f"seed {seed} ({len(names)} of {len(TABLE_ROWS)} runs missing)" for seed, names in missing.items()) + "."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    folders = {row: [Path(m["args"]["out"]).name for m in rows[row]] for row in rows}
    saved = {"seeds": seeds, "caption": CAPTION.format(points=args.points), "results": results, "runs": folders}
    if missing:
        saved["partial"] = {"missing": {str(seed): names for seed, names in missing.items()}}
    (out / "results.json").write_text(json.dumps(saved, indent=2))
    if not args.quiet:
        print("\n".join(lines))
    figures.plot_table(out / "results.png", results, seeds)


# ------------------------------------------------------------------------------------------------ the sweep

# The selectors of the sweep, at every budget: (name, mode, settings). A budget is a fraction of the pixels;
# PPL gets at most as many points per image (budget * pixels per image). The paper's PPL, and ours beside it.
SWEEP_SELECTORS = (("random", "random", "random", {}), ("entropy", "entropy", "entropy", {}),
                   ("spl", "spl", "spl", {}), ("ppl", "ppl", "ppl", {}),
                   ("ppl, cell 8", "ppl-cell8", "ppl", {"ppl_cell": 8}),
                   ("ripu regions", "ripu_regions", "ripu_regions", {}),
                   ("ripu points", "ripu_points", "ripu_points", {}))   # (name, --selectors key, mode, settings)
POINT_MODES = ("ppl", "ripu_points")  # modes whose budget is a number of points per image


def run_sweep(args, run, apply_defaults):
    """Every selector at every budget of args.budgets (fractions of pixels; PPL gets at most the same number of
    points per image: budget * image_pixels), SPL's whole mask, AdaptSeg and supervised, for each seed. Writes sweep.md,
    sweep.json and budget_curve.png."""
    pixels = image_pixels(args)  # of one target image, as the annotator sees it
    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if (out / "sweep.md").exists() and not _partial(out, "sweep.json"):   # a partial sweep (regenerate) is continued
        raise UsageError(f"{out} already holds a sweep (sweep.md); pick another --out or delete it")
    seeds = args.seeds or [args.seed]
    plan = [("spl (whole mask)", "spl", None, {}), ("adaptseg", "adaptseg", None, {}),
            ("supervised", "supervised", None, {})]   # (selector, mode, budget, settings)
    for b in args.budgets:
        for name, key, mode, settings in SWEEP_SELECTORS:
            if args.selectors and key not in args.selectors:
                continue
            size = {"points": max(1, round(b * pixels))} if mode in POINT_MODES else {"budget": b}
            plan.append((name, mode, b, {**size, **settings}))
    stems = [run_folder(out, mode, 0, **settings).name.rpartition("-seed")[0] for _, mode, _, settings in plan]
    if len(set(stems)) < len(stems):   # (budgets that print alike, or give PPL the same number of points)
        raise UsageError(f"--budgets {' '.join(map(str, args.budgets))}: two budgets give the same run "
                         f"({', '.join(sorted({s for s in stems if stems.count(s) > 1}))}); give distinct budgets")
    refuse_other_experiment(out, "sweep")
    prepare_out(out)
    # SPL's whole mask trains the seed's warm-up and B, which every other run but supervised reuses: those two
    # runs start first, the others once that SPL run has ended; seed by seed, as the table.
    whole_mask, supervised = 0, 2
    runs_ = {}
    with Launcher(args, run, apply_defaults, out) as launch:
        (out / PLAN).write_text(json.dumps({"experiment": "sweep", "seeds": seeds, "budgets": args.budgets, "runs": [
            {"selector": name, "budget": b, "stem": stem} for (name, _, b, _), stem in zip(plan, stems)]}))
        for seed, starting in seed_by_seed(seeds):
            for s in starting:
                for i in (whole_mask, supervised):
                    runs_[i, s] = launch(plan[i][1], s, **plan[i][3])
            runs_[whole_mask, seed].result()
            for i, (_, mode, _, settings) in enumerate(plan):
                if i not in (whole_mask, supervised):
                    runs_[i, seed] = launch(mode, seed, **settings)
        done = {key: future.result() for key, future in runs_.items()}
        rows = [sweep_row(name, budget, seed, Path(done[i, seed]["args"]["out"]).name, done[i, seed])
                for seed in seeds for i, (name, _, budget, _) in enumerate(plan)]
        return sweep_from_runs(out, rows, seeds, args)


def sweep_row(selector, budget, seed, run, m):
    """One row of a sweep: the selector, the budget asked, the seed, its run folder and what came of it (metrics m)."""
    return {"selector": selector, "budget": budget, "seed": seed, "run": run, "miou": m["miou"],
            "labelled_fraction": m["labelled_fraction"], "points_per_image": m["points_per_image"],
            "required_fraction": m.get("required_fraction"),
            "annotation_seconds": (m.get("annotation_seconds") or {}).get("per_image")}


def sweep_from_runs(out, rows, seeds, args, missing=None):
    """sweep.md, sweep.json and budget_curve.png from one row per run (selector, budget, seed, its metrics)."""
    summary = summarise_sweep(rows)
    write_sweep(out, summary, rows, seeds, args, missing)
    return summary


def summarise_sweep(rows):
    """Mean and std over seeds for each (selector, budget), and each selector's paired differences to random and to
    entropy at the same budget asked, and RIPU's to LabOR's (LABOR_PARTNERS) ("vs_random", "vs_entropy",
    "vs_labor": experiments.paired_difference over the seeds both have)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["selector"], r["budget"]), []).append(r)
    summary = []
    for (sel, budget), rs in groups.items():
        req = [r["required_fraction"] for r in rs if r["required_fraction"] is not None]
        entry = {"selector": sel, "budget": budget, "seeds": [r["seed"] for r in rs],
                 "mious": [r["miou"] for r in rs], "miou_mean": float(np.mean([r["miou"] for r in rs])),
                 "miou_std": spread([r["miou"] for r in rs]),
                 "labelled_fraction": float(np.mean([r["labelled_fraction"] for r in rs])),
                 "points_per_image": float(np.mean([r["points_per_image"] for r in rs])),
                 "required_fraction": float(np.mean(req)) if req else None}
        secs = [r["annotation_seconds"] for r in rs if r.get("annotation_seconds") is not None]
        entry["annotation_seconds"] = float(np.mean(secs)) if secs else None
        for key, partner in (("vs_random", "random"), ("vs_entropy", "entropy"),
                             ("vs_labor", LABOR_PARTNERS.get(sel))):
            if budget is not None and partner and sel != partner and (partner, budget) in groups:
                theirs = {r["seed"]: r["miou"] for r in groups[partner, budget]}
                both = [r for r in rs if r["seed"] in theirs]
                entry[key] = paired_difference([r["miou"] for r in both],
                                                           [theirs[r["seed"]] for r in both])
        summary.append(entry)
    return summary


# Annotator seconds per image at which the sweep compares selectors: log-spaced inside the range its budgets cost
# (0.02% to 0.5% of a 96x192 image: 4 to 92 points, 9.6 s to 221 s), so every selector is read, not extrapolated.
# (300 s lies beyond every budget but SPL's whole mask; the table compares SPL's 490 s with random's 641 s.)
EQUAL_SECONDS = (10.0, 30.0, 100.0)


def at_equal_seconds(rows, levels=EQUAL_SECONDS):
    """Each selector's mIoU at equal annotator time per image: per seed, its runs at the sweep's budgets give points
    (seconds per image, mIoU); at each level the mIoU is read off the line between the two runs whose seconds
    bracket it, linearly in log seconds (no extrapolation: a level outside a seed's range gets no value). Then,
    per level, the mean over seeds and the paired difference to random at the same level ("vs_random",
    experiments.paired_difference over the seeds both reach). Runs without annotation_seconds are left out.
    Returns [{"selector", "seconds", "seeds", "mious", "miou_mean", "vs_random"}]."""
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
            x = np.log(level)
            if xs[0] <= x <= xs[-1]:
                read.setdefault((sel, level), {})[seed] = float(np.interp(x, xs, ys))
    out = []
    for (sel, level), by_seed in sorted(read.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seeds = sorted(by_seed)
        entry = {"selector": sel, "seconds": level, "seeds": seeds, "mious": [by_seed[s] for s in seeds],
                 "miou_mean": float(np.mean([by_seed[s] for s in seeds])), "vs_random": None}
        theirs = read.get(("random", level), {})
        both = [s for s in seeds if s in theirs]
        if sel != "random" and both:
            entry["vs_random"] = paired_difference([by_seed[s] for s in both], [theirs[s] for s in both])
        out.append(entry)
    return out


def write_sweep(out, summary, rows, seeds, args, missing=None):
    """sweep.md, sweep.json and budget_curve.png. `missing` ({seed: [its run folders not finished]},
    experiments.split_seeds): the seeds left out of a partial sweep (regenerate); named under the table."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Budget sweep: {benchmark_name(args)}, seeds {seeds}, {args.iters} iterations, schedule "
             f"{args.schedule}, model {args.model}.", "",
             "| selector | budget asked (%) | labelled pixels (%) | px / image | annotator s / image | mIoU (%) | "
             "per seed | required_fraction | minus random | minus entropy | RIPU minus LabOR |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(summary, key=lambda r: (r["budget"] is not None, r["budget"] or 0, r["selector"])):
        asked = "-" if r["budget"] is None else f"{100 * r['budget']:g}"
        req = "-" if r["required_fraction"] is None else f"{r['required_fraction']:.3f}"
        secs = "-" if r.get("annotation_seconds") is None else f"{r['annotation_seconds']:.1f}"
        lines.append(f"| {r['selector']} | {asked} | {100 * r['labelled_fraction']:.3f} | "
                     f"{r['points_per_image']:.1f} | {secs} | "
                     f"{100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | "
                     f"{' / '.join(f'{100 * v:.1f}' for v in r['mious'])} | {req} | "
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
        lines += [f"| {e['seconds']:g} | {e['selector']} | {100 * e['miou_mean']:.1f} | "
                  f"{' / '.join(f'{100 * v:.1f}' for v in e['mious'])} | {len(e['seeds'])} | "
                  f"{_difference(e['vs_random'])} |" for e in equal]
    saved = {"seeds": seeds, "budgets": args.budgets, "caption": caption, "summary": summary,
             "at_equal_seconds": equal, "runs": rows}
    if missing:
        lines += ["", "Partial: only the seeds whose every run had finished. Left out: " + "; ".join(
            f"seed {seed} ({len(left)} of {len(rows) // len(seeds)} runs missing)" for seed, left in missing.items())
            + "."]
        saved["partial"] = {"missing": {str(seed): len(left) for seed, left in missing.items()}}
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    (out / "sweep.json").write_text(json.dumps(saved, indent=2))
    if not args.quiet:
        print("\n".join(lines))
    figures.plot_budget_curve(out / "budget_curve.png", summary, seeds)


# ------------------------------------------------------------------------------------------------ the noisy annotator

# Does a selector's lead over random survive an annotator who errs at outlines (--annotator-noise P)? The selectors
# that buy SPL's labelled fraction, each at every --noise-levels P, and random at the fraction SPL bought at that P.
NOISE_ROWS = (("spl", "spl"), ("random", "random"), ("ripu regions", "ripu_regions"), ("entropy", "entropy"))  # (row, mode)
NOISE_DEFAULT = ("spl", "random", "ripu_regions")   # --selectors of --mode noise unless given
NOISE = "noise.json"   # the plan (levels, rows, seeds), written before the first run, then the results


def noise_stem(mode, level):
    """A run folder's stem at annotator noise `level`: the table's own name at 0 (so --out a table folder reads its
    perfect-annotator runs and warm-ups instead of training them again), <mode>-noise<P> otherwise."""
    return mode if level == 0 else f"{mode}-noise{level:g}"


def noise_rows(selectors):
    """(row, mode) of --mode noise: --selectors among NOISE_ROWS' modes, SPL and random always among them."""
    keys = selectors or NOISE_DEFAULT
    allowed = [mode for _, mode in NOISE_ROWS]
    if any(k not in allowed for k in keys) or "spl" not in keys or "random" not in keys:
        raise UsageError(f"--mode noise --selectors {' '.join(keys)}: give spl and random, and any of "
                         f"{', '.join(m for m in allowed if m not in ('spl', 'random'))} (the selectors that buy "
                         f"SPL's labelled fraction)")
    return [(row, mode) for row, mode in NOISE_ROWS if mode in keys]


def run_noise(args, run, apply_defaults):
    """SPL, random at SPL's labelled fraction (and RIPU's regions, entropy) with an annotator who errs at outlines
    with probability P, for each of --noise-levels and each seed. Writes noise.md, noise.json and noise.png."""
    out = Path(args.out or f"runs/noise-{time.strftime('%Y%m%d-%H%M%S')}")
    seeds, levels, rows = args.seeds or [args.seed], sorted(set(args.noise_levels)), noise_rows(args.selectors)
    if len({noise_stem("spl", p) for p in levels}) < len(levels):
        raise UsageError(f"--noise-levels {' '.join(map(str, args.noise_levels))}: two levels give the same run "
                         f"folder name ({', '.join(noise_stem('spl', p) for p in levels)}); give distinct levels")
    if args.budget is not None:
        raise UsageError("--mode noise buys SPL's labelled fraction for every selector; leave --budget out")
    prepare_out(out)
    plan = {"levels": levels, "rows": [row for row, _ in rows], "seeds": seeds}
    spl, others = {}, []

    def dependents(seed, p):   # the selectors that buy the fraction SPL bought at this level
        frac = spl[seed, p].result()["labelled_fraction"]
        return [launch(mode, seed, name=f"{noise_stem(mode, p)}-seed{seed}", budget=frac, annotator_noise=p)
                for _, mode in rows if mode != "spl"]

    with Launcher(args, run, apply_defaults, out) as launch:
        (out / NOISE).write_text(json.dumps({**plan, "partial": True}))   # regenerate makes a partial summary from it
        # Seed by seed, as the table. The first SPL run of a seed trains its warm-up and B, which every other run
        # reuses, so it runs alone.
        first, rest = levels[0], levels[1:]
        for seed, starting in seed_by_seed(seeds):
            for s in starting:
                spl[s, first] = launch("spl", s, name=f"{noise_stem('spl', first)}-seed{s}", annotator_noise=first)
            spl[seed, first].result()
            for p in rest:
                spl[seed, p] = launch("spl", seed, name=f"{noise_stem('spl', p)}-seed{seed}", annotator_noise=p)
            for p in levels:
                others += dependents(seed, p)
        for future in others:
            future.result()
        return noise_summary(out, quiet=args.quiet)


def noise_summary(folder, quiet=True):
    """noise.md, noise.json and noise.png from the folder's runs (noise.json's plan says which): the seeds whose
    every run has finished, per level and row the mIoU over seeds, the share of labels the annotator got wrong, the
    paired difference to random at the same level ("vs_random") and to the same row with the perfect annotator
    ("vs_perfect", where level 0 is planned); each experiments.paired_difference."""
    folder = Path(folder)
    saved = json.loads((folder / NOISE).read_text())
    plan = {k: saved[k] for k in ("levels", "rows", "seeds")}
    modes = dict(NOISE_ROWS)
    stems = {(row, p): noise_stem(modes[row], p) for row in plan["rows"] for p in plan["levels"]}
    complete, missing = split_seeds(folder, plan["seeds"], list(stems.values()))
    if not complete:
        raise UsageError(f"{folder}: no seed has all its --mode noise runs finished yet; nothing to summarise")
    names = {(row, p, seed): f"{stem}-seed{seed}" for (row, p), stem in stems.items() for seed in complete}
    m = {k: json.loads((folder / name / "metrics.json").read_text()) for k, name in names.items()}
    summary = []
    for p in plan["levels"]:
        for row in plan["rows"]:
            runs_ = [m[row, p, s] for s in complete]
            mious = [r["miou"] for r in runs_]
            entry = {"level": p, "row": row, "seeds": complete, "mious": mious, "miou_mean": float(np.mean(mious)),
                     "miou_std": spread(mious),
                     "labelled_fraction": float(np.mean([r["labelled_fraction"] for r in runs_])),
                     "wrong_share": float(np.mean([r.get("annotator_wrong_labels", 0) / max(r["labelled_pixels"], 1)
                                                   for r in runs_])),
                     "vs_random": None, "vs_perfect": None}
            if row != "random":
                entry["vs_random"] = paired_difference(mious, [m["random", p, s]["miou"] for s in complete])
            if p != 0 and 0 in plan["levels"]:
                entry["vs_perfect"] = paired_difference(mious, [m[row, 0, s]["miou"] for s in complete])
            summary.append(entry)
    left_out = list(missing)
    args = m["spl", plan["levels"][0], complete[0]]["args"]
    lines = [f"Annotator noise: {benchmark_name(argparse.Namespace(**args))}, seeds {complete}, {args['iters']} "
             f"iterations, noise band {args.get('noise_band', 1)} px.", "",
             "| P (label at an outline flipped) | method | mIoU (%) | per seed | labelled pixels (%) | wrong labels (%) | "
             "minus random | minus itself at P = 0 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {e['level']:g} | {e['row']} | {100 * e['miou_mean']:.1f} ± {100 * e['miou_std']:.1f} | "
              f"{' / '.join(f'{100 * v:.1f}' for v in e['mious'])} | {100 * e['labelled_fraction']:.2f} | "
              f"{100 * e['wrong_share']:.1f} | {_difference(e['vs_random'])} | {_difference(e['vs_perfect'])} |"
              for e in summary]
    caption = ("--annotator-noise P: a label bought within --noise-band pixels of a class boundary is replaced by "
               "the class on the other side with probability P. Random buys the fraction SPL bought at the same P. "
               "Differences are paired over the seeds, in points, with a 95% Student-t interval (n - 1 degrees of "
               "freedom); * marks an interval that excludes zero.")
    lines += ["", caption]
    if left_out:
        lines += ["", f"Partial: only the seeds whose every run had finished. Left out: seeds {left_out}."]
    (folder / "noise.md").write_text("\n".join(lines) + "\n")
    saved = {**plan, "complete_seeds": complete, "caption": caption, "summary": summary,
             "runs": {f"{row} @ {p:g}": [names[row, p, s] for s in complete] for row in plan["rows"]
                      for p in plan["levels"]}}
    if left_out:
        saved["partial"] = {"missing_seeds": left_out}
    (folder / NOISE).write_text(json.dumps(saved, indent=2))
    if not quiet:
        print("\n".join(lines))
    figures.plot_noise(folder / "noise.png", summary, complete)
    return summary


# ------------------------------------------------------------------------------------------------ regenerate

PLAN = "plan.json"   # a table's seeds, or a sweep's seeds and runs, written before the first run


def _partial(folder, name="results.json"):
    """Whether folder/results.json (or sweep.json) is a partial table (or sweep), written by regenerate before every
    run had finished."""
    try:
        return "partial" in json.loads((Path(folder) / name).read_text())
    except (OSError, ValueError):
        return False


def finished_runs(folder):
    """(name, seed, path of metrics.json) of every finished run folder <name>-seed<S> in folder, sorted by path."""
    for f in sorted(Path(folder).glob("*-seed*/metrics.json")):
        name, _, seed = f.parent.name.rpartition("-seed")
        if seed.isdigit():
            yield name, int(seed), f


def split_seeds(folder, seeds, stems):
    """(complete, missing) of a stopped experiment: the seeds whose every run folder <stem>-seed<S> in folder holds a
    metrics.json, in the order given, and {seed: [the run folders not finished]} for the others. Only complete seeds
    enter a partial table, sweep or noise summary, so each paired difference compares the same seeds."""
    complete, missing = [], {}
    for seed in seeds:
        left = [f"{stem}-seed{seed}" for stem in stems
                if not (Path(folder) / f"{stem}-seed{seed}" / "metrics.json").is_file()]
        if left:
            missing[seed] = left
        else:
            complete.append(seed)
    return complete, missing


def partial_table(folder):
    """The table of a --mode table folder whose command has not finished (stopped, or still running): its run
    folders are read by name (<row>-seed<S>/metrics.json, as run_table names them), and only the seeds whose every
    row has finished enter the table, so each paired difference compares the same seeds. The seeds left out are
    named under the table; the same --mode table command continues the experiment and overwrites it."""
    folder = Path(folder)
    stems = [stem for *_, stem, _ in TABLE_ROWS]
    begun = sorted({seed for stem, seed, _ in finished_runs(folder) if stem in stems})   # (not a noise run's seed)
    try:    # the seeds the command asked for (a table made before plan.json: the seeds begun)
        seeds = json.loads((folder / PLAN).read_text())["seeds"]
    except (OSError, ValueError, KeyError):
        seeds = begun
    complete, missing = split_seeds(folder, seeds, stems)
    if not complete:
        raise UsageError(f"{folder}: no seed has all {len(stems)} runs of the table finished yet "
                         f"({len(begun)} seed(s) begun); nothing to regenerate")
    rows = {row: [json.loads((folder / f"{stem}-seed{seed}" / "metrics.json").read_text()) for seed in complete]
            for row, _, _, stem, _ in TABLE_ROWS}
    args = argparse.Namespace(**{**rows["spl"][0]["args"], "quiet": True})
    results = summarise_table(rows, args)
    write_table(folder, results, rows, complete, args, missing=missing)
    return results


def partial_sweep(folder):
    """The sweep of a --mode sweep folder whose command has not finished, from its plan.json (each run's folder
    stem, selector and budget) and the seeds whose every run has finished, so each paired difference compares the
    same seeds; the seeds left out are named. The same --mode sweep command continues it."""
    folder = Path(folder)
    plan = json.loads((folder / PLAN).read_text())
    complete, missing = split_seeds(folder, plan["seeds"], [e["stem"] for e in plan["runs"]])
    if not complete:
        raise UsageError(f"{folder}: no seed has all {len(plan['runs'])} runs of the sweep finished yet; nothing to "
                         f"regenerate")
    rows = []
    for seed in complete:
        for e in plan["runs"]:
            m = json.loads((folder / f"{e['stem']}-seed{seed}" / "metrics.json").read_text())
            rows.append(sweep_row(e["selector"], e["budget"], seed, f"{e['stem']}-seed{seed}", m))
    args = argparse.Namespace(**{**m["args"], "budgets": plan["budgets"], "quiet": True})
    return sweep_from_runs(folder, rows, complete, args, missing)


def experiment_of(folder):
    """"table" or "sweep": the experiment a folder holds, from its plan.json (written before the first run) or, for
    a folder made before plan.json, from its results.json / sweep.json or its source-only runs (a sweep has none);
    None for neither (a noise experiment alone, or no experiment)."""
    folder = Path(folder)
    try:
        planned = json.loads((folder / PLAN).read_text())["experiment"]
    except (OSError, ValueError, KeyError, TypeError):
        planned = None
    if planned in ("table", "sweep"):
        return planned
    if (folder / "sweep.json").is_file():
        return "sweep"
    if (folder / "results.json").is_file() or any(folder.glob("source_only-seed*/metrics.json")):
        return "table"
    return None


def refuse_other_experiment(out, experiment):
    """A table and a sweep cannot share a folder (each keeps its plan in plan.json); a noise experiment can join
    either."""
    other = experiment_of(out)
    if other not in (None, experiment):
        raise UsageError(f"{out} holds a --mode {other}; give --mode {experiment} another --out")


def regenerate(folder):
    """Rewrite a table's or a sweep's files (results.* or sweep.*), and a noise experiment's (noise.*), from the
    metrics.json of its runs alone: no run is trained or checked again. A table or sweep whose command has not
    finished (no results.json or sweep.json yet, or a partial one) gets a partial table or sweep of its finished
    seeds (partial_table, partial_sweep); noise.* covers the seeds whose every run finished.
    Noise runs share a table's folder when --mode noise was given it as --out."""
    folder = Path(folder)
    experiment = experiment_of(folder)
    if (folder / NOISE).is_file():   # a noise experiment, alone or beside a table in its folder
        try:
            noise = noise_summary(folder)
        except UsageError:
            if experiment is None:
                raise
        if experiment is None:
            return noise
    if experiment is None:
        raise UsageError(f"{folder} holds neither results.json (a table) nor sweep.json (a sweep)")
    name = "results.json" if experiment == "table" else "sweep.json"
    if not (folder / name).is_file() or _partial(folder, name):
        return partial_table(folder) if experiment == "table" else partial_sweep(folder)
    saved = json.loads((folder / name).read_text())
    if experiment == "table":
        if "runs" not in saved or set(saved["runs"]) != set(TABLE_MODES):
            raise UsageError(f"{folder}/results.json was written by an earlier version (it does not list this "
                             f"table's runs); give the --mode table command again instead, with the same --out")
        rows = {row: [json.loads((folder / run / "metrics.json").read_text()) for run in names]
                for row, names in saved["runs"].items()}
        args = argparse.Namespace(**{**rows["spl"][0]["args"], "quiet": True})
        return table_from_runs(folder, rows, saved["seeds"], args)
    rows = []
    for r in saved["runs"]:
        m = json.loads((folder / r["run"] / "metrics.json").read_text())
        rows.append(sweep_row(r["selector"], r["budget"], r["seed"], r["run"], m))
    args = argparse.Namespace(**{**m["args"], "budgets": saved["budgets"], "quiet": True})
    return sweep_from_runs(folder, rows, saved["seeds"], args)


def brief(folder):
    """The README's short form of a table (results.json) or a sweep (sweep.json): per row, mIoU per seed, the mean,
    what was labelled and what it cost a person, and the paired difference to random with its interval (bold
    where it excludes zero). Returns markdown."""
    folder = Path(folder)
    diff = functools.partial(_difference, bold=True)   # a table cell, bold where the interval excludes zero
    noise = noise_brief(folder) if (folder / NOISE).is_file() else []
    if (folder / NOISE).is_file() and not (folder / "results.json").is_file() and not (folder / "sweep.json").is_file():
        if not noise:
            raise UsageError(f"{folder}: no seed of its --mode noise runs has finished yet (regenerate writes a "
                             f"partial noise.json once one has)")
        return "\n".join(noise)
    if (folder / "results.json").is_file():
        saved = json.loads((folder / "results.json").read_text())
        lines = ["| method | mIoU (%) per seed | mean | labelled | annotator s / image | minus random, same budget | "
                 "RIPU minus LabOR |", "|---|---|---|---|---|---|---|"]
        for r in saved["results"]:
            secs = "-" if r.get("annotation_seconds") is None else f"{r['annotation_seconds']:.0f}"
            lines.append(f"| {r['mode']} | {' / '.join(f'{100 * v:.1f}' for v in r['mious'])} | "
                         f"{100 * r['miou_mean']:.1f} | {100 * r['labelled_fraction']:.2f}% | {secs} | "
                         f"{diff(r.get('vs_random'))} | {diff(r.get('vs_labor'))} |")
        return "\n".join(lines + ([""] + noise if noise else []))
    saved = json.loads((folder / "sweep.json").read_text())
    budgets = sorted(b for b in saved["budgets"])
    names = [n for n, *_ in SWEEP_SELECTORS if n != "random" and any(r["selector"] == n for r in saved["summary"])]
    at = {(r["selector"], r["budget"]): r for r in saved["summary"]}
    lines = ["| budget | random mIoU | " + " | ".join(f"{n} minus random" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for b in budgets:
        rand = at.get(("random", b))
        rand = "-" if rand is None else f"{100 * rand['miou_mean']:.1f}"
        lines.append(f"| {100 * b:g}% | {rand} | " +
                     " | ".join(diff(at.get((n, b), {}).get("vs_random")) for n in names) + " |")
    equal = {(e["selector"], e["seconds"]): e for e in saved.get("at_equal_seconds") or []}
    if equal:   # the same at equal annotator seconds per image (at_equal_seconds)
        levels = sorted({level for _, level in equal})
        lines += ["", "| annotator s / image | random mIoU | " + " | ".join(f"{n} minus random" for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for level in levels:
            rand = equal.get(("random", level))
            rand = "-" if rand is None else f"{100 * rand['miou_mean']:.1f}"
            lines.append(f"| {level:g} | {rand} | " +
                         " | ".join(diff((equal.get((n, level)) or {}).get("vs_random")) for n in names) + " |")
    return "\n".join(lines)


def noise_brief(folder):
    """The README's short form of noise.json (--mode noise): per P, the share of labels that were wrong, each
    method's mean mIoU and each selector's difference to random (bold where its interval excludes zero)."""
    saved = json.loads((Path(folder) / NOISE).read_text())
    if "summary" not in saved:
        return []   # planned, no seed finished yet
    diff = functools.partial(_difference, bold=True)
    rows = saved["rows"]
    others = [r for r in rows if r != "random"]
    at = {(e["level"], e["row"]): e for e in saved["summary"]}
    lines = ["| P (annotator errs at outlines) | wrong labels (SPL) | " + " | ".join(f"{r} mIoU" for r in rows) +
             " | " + " | ".join(f"{r} minus random" for r in others) + " |", "|---|---|" + "---|" * (len(rows) +
                                                                                                    len(others))]
    for p in saved["levels"]:
        lines.append(f"| {p:g} | {100 * at[p, 'spl']['wrong_share']:.1f}% | " +
                     " | ".join(f"{100 * at[p, r]['miou_mean']:.1f}" for r in rows) + " | " +
                     " | ".join(diff(at[p, r]["vs_random"]) for r in others) + " |")
    return lines


def listing(folder):
    """Any folder of run folders named <name>-seed<S> (a table, a sweep, runs made one by one): per name, the
    evaluation split, the labelled fraction, mIoU per seed and the mean. Returns markdown."""
    groups = {}
    for name, seed, f in finished_runs(folder):
        groups.setdefault(name, []).append((seed, json.loads(f.read_text())))
    lines = ["| runs | split | labelled (%) | mIoU (%) per seed | seeds | mean |", "|---|---|---|---|---|---|"]
    for name, runs_ in groups.items():
        runs_.sort(key=lambda sm: sm[0])
        mious = [100 * m["miou"] for _, m in runs_]
        lines.append(f"| {name} | {runs_[0][1]['eval_split']} | "
                     f"{100 * np.mean([m['labelled_fraction'] for _, m in runs_]):.3f} | "
                     f"{' / '.join(f'{v:.2f}' for v in mious)} | {', '.join(str(s) for s, _ in runs_)} | "
                     f"{np.mean(mious):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python experiments.py regenerate|brief|list FOLDER [FOLDER ...]
    import sys
    if len(sys.argv) < 3 or sys.argv[1] not in ("regenerate", "brief", "list"):
        sys.exit("usage: python experiments.py regenerate|brief|list FOLDER [FOLDER ...]  (regenerate, brief: a "
                 "--mode table, sweep or noise folder: rewrite its files from its runs' metrics.json, or print the "
                 "README's short form; list: any folder of <name>-seed<S> runs, mIoU per seed)")
    for f in sys.argv[2:]:
        try:
            if sys.argv[1] == "regenerate":
                regenerate(f)
                print(f"{f}: rewritten from its runs' metrics.json")
            else:
                print(brief(f) if sys.argv[1] == "brief" else listing(f))
        except UsageError as e:   # one clear line and exit code 2, as train.py's errors
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
