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
import concurrent.futures
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch

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
    p.add_argument("--jobs", type=runs.positive_int, default=1,
                   help="--mode table / sweep: runs at once, each in a process of its own with --threads / N threads "
                        "(default 1; on a 2-core CPU 2 is faster: two one-thread runs do more than one two-thread run, "
                        "see README 'Speed'). Results equal those of the same runs made one by one with that many "
                        "threads")


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
    (the seed's warm-up and B, SPL's budget) is launched after waiting for that result.

    SIGTERM / Ctrl-C: every run in progress stops at an iteration boundary with a checkpoint, no further run
    starts, and the same command continues the experiment (finished runs are read back, stopped ones resumed)."""

    def __init__(self, args, run, apply_defaults, out):
        self.args, self.run, self.apply_defaults, self.out = args, run, apply_defaults, out
        self.pool, self.previous = None, {}
        if args.jobs > 1:  # 'spawn': a fresh interpreter, as forking a process that holds OpenMP threads is unsafe
            self.pool = concurrent.futures.ProcessPoolExecutor(args.jobs, multiprocessing.get_context("spawn"),
                                                               initializer=_start_worker)
            threads = max(1, (args.threads or torch.get_num_threads()) // args.jobs)
            self.worker_args = argparse.Namespace(**{**vars(args), "threads": threads, "quiet": True})

    def __call__(self, mode, seed, name=None, **settings):
        if self.pool is None:
            done = concurrent.futures.Future()
            done.set_result(one_run(self.args, self.run, self.apply_defaults, self.out, mode, seed, name, **settings))
            return done
        future = self.pool.submit(_run_in_worker, self.worker_args, self.run, self.apply_defaults, self.out, mode,
                                  seed, name, **settings)
        if not self.args.quiet:
            future.add_done_callback(_say_done)
        return future

    def __enter__(self):
        if self.pool is not None:
            self.previous = {s: signal.getsignal(s) for s in runs.STOP_SIGNALS}
            for s, handler in self.previous.items():
                if handler is not signal.SIG_IGN:
                    signal.signal(s, _pass_on)
        return self

    def __exit__(self, kind, error, traceback):
        if self.pool is not None:  # after an error or a stop, start nothing more
            self.pool.shutdown(wait=True, cancel_futures=kind is not None)
            for s, handler in self.previous.items():
                signal.signal(s, handler)
        if isinstance(error, runs.Stopped):
            raise runs.Stopped(error.signum, error.iteration, error.out, "stopped (every run in progress wrote its "
                               "checkpoint); continue with the same command") from None


def _pass_on(signum, frame):
    """The experiment's signal handler: Ctrl-C reaches the workers by itself, a SIGTERM sent to this process alone
    is passed on to them (a worker takes a second one as the first)."""
    for worker in multiprocessing.active_children():
        os.kill(worker.pid, signum)


_worker_stop = [0]  # in a worker process: the stop signal received (0: none)


def _start_worker():
    """A worker's signals: one that comes during a run stops it with a checkpoint (runs.stop_on_signal); one that
    comes between runs is noted here, so that the worker starts no further run."""
    for s in runs.STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, lambda signum, frame: _worker_stop.__setitem__(0, signum))


def _run_in_worker(args, run, apply_defaults, out, mode, seed, name, **settings):
    if _worker_stop[0]:
        raise runs.Stopped(_worker_stop[0], 0, None)
    try:
        return one_run(args, run, apply_defaults, out, mode, seed, name, **settings)
    except runs.Stopped as e:
        _worker_stop[0] = e.signum
        raise


def _say_done(future):
    if not future.cancelled() and future.exception() is None:
        m = future.result()
        print(f"=== {m['args']['out']}: {100 * m['miou']:.1f} mIoU, {m['wall_seconds']:.0f} s ===", flush=True)


# Settings that change where and how fast a run works, not what it computes.
PLUMBING = ("out", "quiet", "threads", "log_every", "num_workers", "save_every", "resume", "shared_dir", "seeds",
            "budgets", "device", "benchmark", "peak_tflops", "profile", "jobs")   # (--benchmark never acts on a run)


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
    runs_ = {}
    with Launcher(args, run, apply_defaults, out) as launch:
        for seed in seeds:  # first the runs that need no other: SPL trains the seed's warm-up and B for the rest
            for mode in ("spl", "source_only", "supervised"):
                runs_[mode, seed] = launch(mode, seed, name=f"{mode}-seed{seed}")
        for seed in seeds:
            spl_frac = runs_["spl", seed].result()["labelled_fraction"]  # (0 if its mask was empty)
            for mode in ("ppl", "random", "entropy", "adaptseg"):
                settings = {"budget": spl_frac} if mode in ("random", "entropy") and args.budget is None else {}
                runs_[mode, seed] = launch(mode, seed, name=f"{mode}-seed{seed}", **settings)
        rows = {mode: [runs_[mode, seed].result() for seed in seeds] for mode in TABLE_MODES}
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
    plan = [("spl", None, {}), ("adaptseg", None, {}), ("supervised", None, {})]
    for b in args.budgets:
        for sel in SWEEP_SELECTORS:
            plan.append((sel, b, {"points": max(1, round(b * image_pixels))} if sel == "ppl" else {"budget": b}))
    # SPL's whole mask trains the seed's warm-up and B, which every other run but supervised reuses: these two first
    first = [i for i, (mode, budget, _) in enumerate(plan) if budget is None and mode in ("spl", "supervised")]
    runs_ = {}
    with Launcher(args, run, apply_defaults, out) as launch:
        for seed in seeds:
            for i in first:
                runs_[i, seed] = launch(plan[i][0], seed, **plan[i][2])
        for seed in seeds:
            runs_[0, seed].result()
            for i, (mode, _, settings) in enumerate(plan):
                if i not in first:
                    runs_[i, seed] = launch(mode, seed, **settings)
        done = {key: future.result() for key, future in runs_.items()}
    rows = []  # one per run: selector, budget asked, seed and what came of it
    for seed in seeds:
        for i, (mode, budget, _) in enumerate(plan):
            m = done[i, seed]
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
