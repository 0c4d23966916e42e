"""Experiments of many runs. Each run is one `python train.py ...` command; an experiment is a list of them in two
stages (first each seed's shared parts), handed to an engine made for the job. No LabOR logic here.

    python -m tools.experiments table [--seeds 0 1 ...] [--rows ...] [train.py's flags]   the miniature Table 1:
                                                                             results.md/json/png
    python -m tools.experiments sweep [--budgets ...] [--selectors ...]      a budget curve: sweep.md/json, budget_curve.png
    python -m tools.experiments noise [--noise-levels ...] [--selectors ...]  an annotator who errs at outlines: noise.*
        --jobs N            here, N runs at a time (concurrent.futures and subprocess)
        --slurm PARTITION   on a SLURM cluster with submitit: a job array per stage, the second after the first
        --print             the commands, one a line, stage by stage (a shell loop, xargs -P, GNU parallel)
    python -m tools.experiments regenerate|brief|list FOLDER ...  the tables again, from the runs' metrics.json alone
    python -m tools.experiments compare A B FOLDER ...           run A minus run B, paired over the seeds of the folders

Stage 1 of a seed trains what its other runs share: SPL's run, whose warm-up of A and trained B (warmup.pt) the
others start from (train.py --init-from), and whose labelled fraction random buys (--budget-from). A run whose
folder holds metrics.json with the same settings is skipped and one holding a checkpoint resumes, so the same
command finishes an interrupted experiment (with the same --jobs and --threads: threads change float sums).
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import selection
from tools import Stopped, UsageError
from tools import checkpoint as files
from tools import flags
from tools.runtime import STOP_SIGNALS
from tools.tables import (SWEEP, TABLE_ROWS, brief, compare, image_pixels, listing, noise, noise_stem, regenerate, sweep,
                          table, table_rows)

ROOT = Path(__file__).resolve().parents[1]   # the project: train.py
STAGE_1 = ("spl", "source_only", "supervised")   # need no other run; SPL trains the seed's warm-up and B
# ------------------------------------------------------------------------------------------------ the runs

def run_folder(mode, seed, **settings):
    """<mode>-<setting><value>...-seed<S>, e.g. random-budget0.005-seed1."""
    return "-".join([mode, *[f"{k}{v:g}" for k, v in settings.items()], f"seed{seed}"])


def plan(a, base):
    """The experiment's runs: [(stage, folder name, mode, seed, settings, init-from folder, budget-from folder)]."""
    shares = lambda mode: selection.shares_warmup(mode, base.schedule)  # noqa: E731
    runs_ = []

    def add(stage, name, mode, seed, settings=(), first=None, budget_from=None):
        runs_.append((stage, name, mode, seed, dict(settings), first if first not in (None, name) and shares(mode)
                       else None, budget_from))

    pixels = image_pixels(base)
    for s in a.seeds:
        if a.command == "table":
            for row, mode, settings, stem, budget in table_rows(a.out, a.rows)[0]:
                if budget == "points":
                    settings = {**settings, "budget": base.points / pixels}
                add(1 if row in STAGE_1 else 2, f"{stem}-seed{s}", mode, s, settings, f"spl-seed{s}",
                    f"spl-seed{s}" if budget == "spl" and base.budget is None else None)
        elif a.command == "sweep":
            picks = [(mode, {**size, **settings}) for b in a.budgets for key, _, mode, settings in SWEEP
                     if key in a.selectors for size in [{"points": max(1, round(b * pixels))} if
                                                        selection.SELECTORS[mode].budget == "points" else {"budget": b}]]
            # the seed's warm-up: SPL's run (with B) when a selector needs B, else the first selector's run
            first = f"spl-seed{s}" if any(selection.SELECTORS[m].needs_b for m, _ in picks) else \
                run_folder(picks[0][0], s, **picks[0][1])
            if first == f"spl-seed{s}":
                add(1, first, "spl", s)
            add(1, f"supervised-seed{s}", "supervised", s)
            add(2, f"adaptseg-seed{s}", "adaptseg", s, first=first)
            for mode, settings in picks:
                name = run_folder(mode, s, **settings)
                add(1 if name == first else 2, name, mode, s, settings, first)
        else:   # staged: every run starts from the first level's SPL, whose one mask, chosen before the annotator
            first = f"{noise_stem('spl', a.noise_levels[0])}-seed{s}"   # errs, is SPL's at every level too
            for p in a.noise_levels:
                spl = first if shares("spl") else f"{noise_stem('spl', p)}-seed{s}"
                for mode in a.selectors:
                    add(1 if mode == "spl" and (p == a.noise_levels[0] or not shares("spl")) else 2,
                        f"{noise_stem(mode, p)}-seed{s}", mode, s, {"annotator_noise": p}, first,
                        None if mode == "spl" else spl)
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
    passed = without(passed, "--threads", "--quiet")   # (ours come last: extra)
    for stage, name, mode, seed, settings, first, budget_from in plan(a, base):
        folder = out / name
        words = [f for k, v in settings.items() for f in (f"--{k.replace('_', '-')}", repr(v))]
        if first and ((out / first / files.WARMUP).is_file() or not (out / first / "metrics.json").is_file()):
            words += ["--init-from", str(out / first)]   # (a finished run without warmup.pt: train its own, the same)
        words += ["--budget-from", str(out / budget_from)] if budget_from else []
        cmd = [*passed, "--mode", mode, "--seed", str(seed), "--out", str(folder), *words, *extra]
        if (folder / "metrics.json").is_file() or (folder / files.CHECKPOINT).is_file():
            wanted = flags.get_args(without(cmd, "--init-from"))   # (changes no result; its source may be gone)
            if (folder / "metrics.json").is_file():
                saved, what = json.loads((folder / "metrics.json").read_text())["args"], "finished"
            else:
                saved, what = files.load_safe(folder / files.CHECKPOINT, "checkpoint")["args"], "stopped"
                runtime = without(passed, "--device", "--num-workers", keep=True)   # (all else is the run's own)
                cmd = ["--resume", str(folder), *runtime, *extra]
            if differ := files.changed_settings(saved, files.args_dict(wanted)):
                raise UsageError(f"{folder} holds a {what} run with other settings ({', '.join(differ)}); give the "
                                 f"same command as before to continue that experiment, or another --out")
            if what == "finished":
                continue
        stages[stage - 1].append(["python", os.path.relpath(ROOT / "train.py"), *cmd])   # (run from here)
    return stages


def without(words, *flags, keep=False):
    """Command-line words without the given flags and their values (--flag V, --flag=V, or a switch alone); with
    keep=True, those flags and their values alone."""
    out, inside = [], False
    for w in words:
        if w.startswith("--"):
            inside = w.split("=")[0] in flags
        if inside == keep:
            out.append(w)
    return out


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
            proc = subprocess.Popen([sys.executable, *cmd[1:]], start_new_session=True)
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
        previous = {s: signal.signal(s, self.stop) for s in STOP_SIGNALS}
        try:
            with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
                for cmds in stages:
                    failed = [(c, code) for c, code in zip(cmds, pool.map(self.one, cmds)) if code]
                    if self.signum:
                        raise Stopped(self.signum, 0, None, "stopped (every run in progress wrote its "
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
        jobs.append(executor.submit_array([submitit.helpers.CommandFunction([sys.executable, *c[1:]],
                                                                            cwd=os.getcwd()) for c in cmds]))
    return jobs


# ------------------------------------------------------------------------------------------------ the command line

def build_parser():
    p = flags.ArgumentParser(prog="python -m tools.experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("table", "the miniature Table 1: every mode (or --rows), the paper's budgets"),
                       ("sweep", "every selector at several budgets: the budget curve"),
                       ("noise", "SPL and random (and others) with an annotator who errs at outlines")):
        e = sub.add_parser(name, help=what, description=f"{what}. Any flag of train.py (python train.py --help) "
                           f"is given to every run, e.g. --iters 60 or --eval-split tune.").add_argument
        e("--seeds", type=flags.seed, nargs="+", default=None, help="the seeds (default: train.py's --seed, 0)")
        e("--out", default=None, help=f"the experiment's folder (default runs/{name}-<time>)")
        e("--jobs", type=flags.positive_int, default=1, help="runs at once on this machine, each with --threads / "
          "--jobs threads (default 1; on a 2-core CPU 2 runs of one thread do more than one of two)")
        e("--slurm", metavar="PARTITION", default=None, help="submit the runs to this SLURM partition (submitit)")
        e("--gpus-per-run", type=flags.non_negative_int, default=1, help="--slurm: GPUs of each run (default 1)")
        e("--cpus-per-run", type=flags.positive_int, default=8, help="--slurm: CPU cores of each run (default 8)")
        e("--time", type=flags.positive_int, default=24 * 60, help="--slurm: minutes a run may take (default 1440)")
        e("--print", action="store_true", help="print the commands, one a line, stage by stage; run nothing")
        e("--stage", type=int, choices=[1, 2], default=None, help="print only this stage's commands, one a line "
          "(what is left of it), for a pipeline: stage 1 trains what stage 2's runs start from; run nothing")
        if name == "sweep":
            e("--budgets", type=flags.fraction, nargs="+", default=[0.001, 0.005, 0.01, 0.022, 0.05],
              help="labelled fractions of the pixels; a point selector gets as many points per image (default 0.001 "
                   "0.005 0.01 0.022 0.05)")
        if name == "table":
            stems = [r[3] for r in TABLE_ROWS]
            e("--rows", nargs="+", choices=stems, default=stems, metavar="ROW", help="the rows, by their runs' names "
              "(default all: " + " ".join(stems) + "); they must include source_only, spl and supervised")
        else:
            keys = [k for k, *_ in SWEEP] if name == "sweep" else [k for k, s in selection.SELECTORS.items()
                                                                   if s.budget == "fraction"]
            e("--selectors", nargs="+", choices=keys, default=keys if name == "sweep" else
              ["spl", "random", "ripu_regions"], help="the selectors (default: " + ("all" if name == "sweep" else
              "spl random ripu_regions; spl and random always") + ")")
        if name == "noise":
            e("--noise-levels", type=flags.unit_float, nargs="+", default=[0.0, 0.05, 0.2],
              help="the --annotator-noise levels P (default 0 0.05 0.2; at 0 the runs are named as the table's, so "
                   "--out a table's folder reuses them)")
    for name, what in (("regenerate", "rewrite the experiments' files in FOLDER from its runs' metrics.json"),
                       ("brief", "print the README's tables of FOLDER"), ("list", "any folder of <name>-seed<S> runs: "
                                                                                  "mIoU per seed")):
        sub.add_parser(name, help=what).add_argument("folders", nargs="+", metavar="FOLDER")
    c = sub.add_parser("compare", help="run A minus run B, paired over the seeds the folders hold both of")
    c.add_argument("a", metavar="A", help="a run's name without -seed<S>, e.g. spl")
    c.add_argument("b", metavar="B", help="the other's, e.g. random")
    c.add_argument("folders", nargs="+", metavar="FOLDER")
    return p


def main(argv=None):
    """One line `error: ...` and exit 2 for a mistake; 128 + the signal for a stop (every run wrote a checkpoint)."""
    try:
        a, passed = build_parser().parse_known_args(argv)
        if passed and a.command not in flags.EXPERIMENTS:   # (an experiment gives the rest to train.py)
            raise UsageError(f"unrecognized arguments: {' '.join(passed)}")
        if a.command == "compare":
            print(compare(a.a, a.b, a.folders)[1])
            return
        if a.command in ("regenerate", "brief", "list"):
            for f in a.folders:
                print(brief(f) if a.command == "brief" else listing(f) if a.command == "list" else
                      f"{f}: rewritten from its runs' metrics.json ({', '.join(regenerate(f))})")
            return
        experiment(a, passed)
    except Stopped as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def plan_stages(a, passed):
    """The experiment's commands, stage by stage, without the stages left empty (--stage N: both, even if empty):
    every flag checked, nothing run."""
    if "--mode" in passed or any(w.startswith("--mode=") for w in passed):
        raise UsageError("the experiment chooses each run's --mode; leave it out")
    base = flags.get_args([*passed, "--mode", "spl"])   # every flag of train.py checked now, before any run starts
    a.seeds, a.threads, a.quiet = a.seeds or [base.seed], base.threads, base.quiet
    if len(set(a.seeds)) < len(a.seeds) or len(set(getattr(a, "budgets", []))) < len(getattr(a, "budgets", [])):
        raise UsageError("a seed or budget given twice would count twice in the means and intervals; give each once")
    if a.command == "noise":
        a.noise_levels = sorted(set(a.noise_levels))
        if max(a.noise_levels) == 0:
            raise UsageError("noise: give a --noise-levels above 0 (at P = 0 the runs are the table's)")
        if "spl" not in a.selectors or "random" not in a.selectors or base.budget is not None:
            raise UsageError("noise: give spl and random among --selectors, and no --budget (every selector buys "
                             "SPL's labelled fraction)")
    if a.jobs > 1:   # one thread each on a 2-core CPU: two one-thread runs do more than one two-thread run
        a.threads = max(1, (base.threads or torch.get_num_threads()) // a.jobs)
    if a.slurm:
        a.threads = a.cpus_per_run
    a.out = Path(a.out or f"runs/{a.command}-{time.strftime('%Y%m%d-%H%M%S')}")
    if a.out.exists() and not a.out.is_dir():
        raise UsageError(f"--out {a.out} is a file; the experiment needs a folder (a new one, or its own)")
    stages = commands(a, base, passed, a.out)
    return stages if getattr(a, "stage", None) else [s for s in stages if s]


def experiment(a, passed):
    """Plan the runs, hand them to an engine, write the tables (here) or say how to (--slurm, --print)."""
    stages = plan_stages(a, passed)
    if a.stage:   # one stage, command lines alone: a pipeline runs them (xargs -P), then the next stage
        print("\n".join(shlex.join(c) for c in stages[a.stage - 1]))
        return
    if a.print:
        if not stages:
            print(f"# every run has finished: python -m tools.experiments regenerate {a.out} writes the tables")
        for k, cmds in enumerate(stages):
            print(f"# stage {k + 1} of {len(stages)}" + (": after every run above has ended" if k else ""))
            print("\n".join(shlex.join(c) for c in cmds))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    if a.slurm:
        jobs = submit_slurm(stages, a, a.out)
        print(f"submitted {sum(map(len, jobs))} runs as {len(jobs)} job array(s): "
              f"{', '.join(j[0].job_id.split('_')[0] for j in jobs)}; when they have ended, give this command again "
              f"(stopped runs resume) or python -m tools.experiments regenerate {a.out}")
        return
    Here(a.jobs)(stages)
    if a.command == "table":
        table(a.out, quiet=a.quiet, stems=a.rows)
    else:
        {"sweep": sweep, "noise": noise}[a.command](a.out, quiet=a.quiet)


if __name__ == "__main__":
    main()
