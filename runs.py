"""Run plumbing for train.py: the run folder, atomic checkpoints, safe loads, RNG state and the resumable data stream.

None of this is LabOR; it is what lets a run be killed at any moment and resumed exactly (stage 1 writes
checkpoints, stage 4 writes the outputs), and what turns a user's mistake into one clear message.

    ArgumentParser, positive_int, ... every flag's valid range, checked before any work starts
    save_atomic / load_safe      every file we write, written whole or not at all; read with weights_only=True
    prepare_out                  the run folder: never a file, an earlier run or a folder we cannot write in
    checkpoint / restore         everything a resumed run needs to continue bit for bit
    InfiniteSampler / stream     seeded endless batches that can start at any position
    setup_runtime                device, threads, precision and the run folder's name
    stop_on_signal / Stopped     SIGTERM, SIGINT: a checkpoint at the current iteration, then exit 128 + signal
    log_interval / write_metrics the log lines and metrics.json
    error_message                what main prints for a mistake the user can fix
"""
import argparse
import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import data
import selection

FORMAT = "labor-reference/1"   # every file we write carries it: a foreign file is refused by name
CHECKPOINT, SELECTION = "checkpoint.pt", "selection.pt"


class UsageError(Exception):
    """A mistake the user can fix (bad flag, folder, file): printed as one message, exit code 2."""


# ------------------------------------------------------------------------------------------------ arguments

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes raise UsageError, so that main prints them as its one 'error: ...' line (argparse
    would print the usage block first) and a caller in Python gets an exception rather than SystemExit."""

    def error(self, message):
        raise UsageError(message)


def _checked(convert, ok, valid):
    """An argparse type: convert the text and check the value; argparse puts the flag's name before the message."""
    def check(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {valid}")
        return value
    return check


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


MIN_SIDE = 32  # the discriminator's five 4x4 stride-2 convolutions leave nothing of a smaller image
positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
seed = _checked(int, lambda v: 0 <= v < 2 ** 32, "a seed, an integer in [0, 2**32)")
image_side = _checked(int, lambda v: v >= MIN_SIDE, f"an image side of at least {MIN_SIDE} pixels (the "
                                                    f"discriminator halves it five times)")
positive_float = _checked(_finite, lambda v: v > 0, "a positive number")
non_negative_float = _checked(_finite, lambda v: v >= 0, "a number >= 0")
unit_float = _checked(_finite, lambda v: 0 <= v <= 1, "a number in [0, 1]")
fraction = _checked(_finite, lambda v: 0 < v <= 1, "a fraction in (0, 1], e.g. 0.022")
momentum = _checked(_finite, lambda v: 0 <= v < 1, "a momentum in [0, 1)")
existing_dir = _checked(str, lambda v: Path(v).is_dir(), "an existing folder")
existing_file = _checked(str, lambda v: Path(v).is_file(), "an existing file")
folder = _checked(str, lambda v: not Path(v).is_file(), "a folder (it may not exist yet), not a file")


def add_data_flags(p):
    """The flags of the data: the synthetic benchmark's knobs, then the real datasets' folders (two groups)."""
    g = p.add_argument_group("the synthetic benchmark (synthetic.py; the default data)")
    a = g.add_argument
    a("--data", default="synthetic", choices=["synthetic", "gta5-cityscapes"], help="benchmark (default synthetic)")
    a("--eval-split", default="val", choices=["val", "tune"],
      help="'val' reports on target val; 'tune' on a tuning split generated with another seed (for choosing "
           "settings without looking at val; synthetic only)")
    a("--size", type=image_side, nargs=2, default=None, metavar=("H", "W"),
      help="synthetic image size (default 96 192)")
    a("--shift", type=unit_float, default=0.6,
      help="synthetic domain-shift strength: 0 = target looks like source, 1 = synthetic.py's full target style "
           "(default 0.6, chosen on the tuning split: source-only then scores well under 70%% of supervised)")
    a("--thing-shift", type=unit_float, default=0.0,
      help="synthetic: the shift of the things' colours alone (car, person, pole, sign). Default 0, chosen on the "
           "tuning split: an adapted model then recognises things partly, as on GTA5 -> Cityscapes; "
           "--thing-shift 0.6 (= --shift) is the first benchmark, where it misses them whole (docs/experiments.md)")
    a("--n-source", type=positive_int, default=None, help="synthetic source-train images (default 1000)")
    a("--n-target", type=positive_int, default=None, help="synthetic target-train images (default 500)")
    a("--n-val", type=positive_int, default=None, help="synthetic target-val images (default 200)")
    a("--data-seed", type=seed, default=0, help="seed of the synthetic benchmark itself (default 0)")
    a("--width", type=positive_int, default=24, help="--model tiny: the backbone's width (default 24)")
    g = p.add_argument_group("real data: GTA5 to Cityscapes (README, 'Full scale')")
    a = g.add_argument
    a("--gta5-root", type=existing_dir, default=None, help="GTA5 folder with images/ and labels/")
    a("--cityscapes-root", type=existing_dir, default=None, help="Cityscapes folder with leftImg8bit/ and gtFine/")
    a("--gta5-list", type=existing_file, default=None, help="optional AdaptSegNet-style list of GTA5 image names")
    a("--cityscapes-list", type=existing_file, default=None, help="optional list of Cityscapes train image names")
    a("--source-size", type=image_side, nargs=2, default=None, metavar=("W", "H"),
      help="real data: source resize (paper preset 1280 720; otherwise 640 360)")
    a("--target-size", type=image_side, nargs=2, default=None, metavar=("W", "H"),
      help="real data: target resize (paper preset 1024 512; otherwise 512 256)")


def add_run_flags(p):
    """The flags of the run itself, not of the method: where it runs, where it writes, checkpoints."""
    a = p.add_argument_group("the run (device, output, resume; docs/operations.md)").add_argument
    a("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when available")
    a("--out", default=None, help="run folder (default runs/<mode>-<time>)")
    a("--init-from", default=None, metavar="RUN_DIR",
      help="start where the warm-up of the staged run in RUN_DIR ended (its warmup.pt: A, D, optimisers, RNG), "
           "with its trained B when B's settings agree: the runs of a seed share one warm-up (experiments.py)")
    a("--budget-from", default=None, metavar="RUN_DIR",
      help="--budget: the labelled fraction the finished run in RUN_DIR bought (random at SPL's budget)")
    a("--log-every", type=positive_int, default=50, help="one log line every N iterations (default 50)")
    a("--threads", type=positive_int, default=None, help="CPU threads for torch (default: all cores)")
    a("--num-workers", type=non_negative_int, default=0,
      help="DataLoader workers (default 0; 4 suits the real datasets)")
    a("--quiet", action="store_true", help="no progress bars or log lines (metrics.json is still written)")
    a("--save-every", type=non_negative_int, default=100,
      help="write checkpoint.pt every N iterations, atomically, and at the end (default 100; 0: only at the end)")
    a("--resume", default=None, metavar="RUN_DIR",
      help="continue the run in RUN_DIR from its last complete checkpoint, with its own settings (other flags "
           "but --device/--threads/--num-workers/--quiet are ignored); labels already bought are reused")
    a("--amp", action="store_true", help="mixed precision: bf16 where supported, else fp16 with a GradScaler")


def check_args(args):
    """What no single flag's type can check: flags that need each other, files, the device."""
    real = args.data == "gta5-cityscapes"
    if args.init_from and not args.resume and not (Path(args.init_from) / WARMUP).is_file():
        raise UsageError(f"--init-from {args.init_from}: there is no {WARMUP} there; give the folder of a staged run of "
                         f"this seed that has bought its labels (experiments.py runs it first)")
    if args.budget_from and not args.resume:
        if args.budget is not None:
            raise UsageError("give --budget or --budget-from, not both")
        done = Path(args.budget_from) / "metrics.json"
        if not done.is_file():
            raise UsageError(f"--budget-from {args.budget_from}: there is no finished run there ({done}); run it "
                             f"first")
        args.budget = json.loads(done.read_text())["labelled_fraction"]
    if real and (not args.gta5_root or not args.cityscapes_root):
        raise UsageError("--data gta5-cityscapes needs --gta5-root and --cityscapes-root (see README, 'Full scale')")
    if real and args.eval_split != "val":
        raise UsageError("--eval-split tune exists for the synthetic benchmark only")
    if args.weights not in (None, "imagenet") and not Path(args.weights).is_file():
        raise UsageError(f"--weights {args.weights}: no such file; give 'imagenet' (torchvision download) or the "
                         f"path of a torchvision resnet101 state dict")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA GPU here; use --device cpu (or auto)")
    check_schedule(args)


def as_iterations(value, iters):
    """A count given as iterations (>= 1) or as a fraction of --iters (< 1)."""
    return int(round(value * iters)) if value < 1 else int(value)


def check_schedule(args):
    """--warmup must leave training on both sides of the labelling, --select-at name iterations in [0, --iters),
    --selector-iters at least one iteration (train.select_iterations turns them into iteration numbers)."""
    if args.schedule == "staged":
        if args.select_at is not None and not args.resume:  # (a run saved before --select-at had no default)
            raise UsageError(f"--select-at is for --schedule joint; the staged schedule labels once, at the end "
                             f"of --warmup ({args.warmup})")
        if not 0 < as_iterations(args.warmup, args.iters) < args.iters or (
                args.warmup > 1 and args.warmup != int(args.warmup)):
            raise UsageError(f"--warmup {args.warmup}: give a fraction of --iters in (0, 1) or whole iterations "
                             f"in [1, --iters={args.iters}) that leave training on both sides of the labelling")
    else:
        its = {as_iterations(s, args.iters) for s in args.select_at}
        if any(i < 0 or i >= args.iters for i in its) or any(s > 1 and s != int(s) for s in args.select_at):
            raise UsageError(f"--select-at {' '.join(map(str, args.select_at))}: give fractions of --iters in "
                             f"[0, 1) or whole iterations in [1, --iters={args.iters})")
    if as_iterations(args.selector_iters, args.iters) < 1:
        raise UsageError(f"--selector-iters {args.selector_iters} is less than one iteration of --iters "
                         f"{args.iters}")


# ---------------------------------------------------------------------------------------------------- files

def save_atomic(obj, path):
    """torch.save (a str: the text) to a temporary file, flush it to disk, then rename: a kill or a full disk at any
    moment leaves either the old file or the new one, never half of one, and no temporary file either."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            if isinstance(obj, str):
                f.write(obj.encode())
            else:
                torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise
        hint = (f"; then continue with: python train.py --resume {path.parent}"
                if (path.parent / CHECKPOINT).is_file() else "")
        raise UsageError(f"cannot write {path} ({e.strerror or e}); the previous {path.name}, if any, is unchanged: "
                         f"free some space or fix the folder's permissions{hint}") from None


def load_safe(path, what):
    """torch.load(weights_only=True): plain tensors and containers only, so a checkpoint from a stranger cannot
    run code here. A missing, truncated, corrupt or foreign file gives a UsageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of a forbidden object, random bytes, ...
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load {what} {path}: it is truncated, corrupt or holds objects other than "
                         f"tensors ({reason}); delete it or use another run folder") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UsageError(f"{path} is not a labor-reference {what} (format {FORMAT!r} missing)")
    return obj


def prepare_out(out, resume=False):
    """The run folder. Never overwrite an earlier run: a folder holding a run (metrics.json or a checkpoint) is
    refused, unless resuming it. A file, or a folder we cannot write in, is refused now rather than at the first
    checkpoint."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; the run needs a folder (a new one, or one without a run)")
    for f in () if resume else ("metrics.json", CHECKPOINT, SELECTION):
        if (out / f).exists():
            raise UsageError(f"{out} already holds a run ({f}); continue it with --resume {out}, or pick another "
                             f"--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a real write: permissions, read-only disks, ...
    except OSError as e:
        raise UsageError(f"cannot write in the run folder {out} ({e.strerror or e}); pick another --out") from None
    lock_folder(out)


_locks = {}   # run folder -> its lock file, open while this process runs there


def lock_folder(out):
    """Refuse a folder another process is running in (two commands given one --out would write the same files): a
    lock on out/.lock (fcntl.lockf: the kernel drops it when the process ends, however it ends, and a forked
    DataLoader worker does not hold it). Held until unlock_folder (a run that failed keeps it until its process ends,
    or gives it to the next run of this process in that folder)."""
    key = str(Path(out).resolve())
    if key in _locks:
        return
    f = open(Path(out) / ".lock", "a")
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"{out} is in use by another process (a run, or an experiment's run, in {out}); wait "
                         f"for it to end or pick another --out") from None
    _locks[key] = f


def unlock_folder(out):
    f = _locks.pop(str(Path(out).resolve()), None)
    if f is not None:
        f.close()


def _code_state():
    """(commit, whether tracked files differ from it) of the code as this process loaded it; 'unknown', None where
    git cannot tell (no git, not a checkout)."""
    def git(*a):
        try:
            out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *a], capture_output=True,
                                 text=True, timeout=30)
            return out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD") or "unknown"
    return commit, (bool(git("status", "--porcelain", "--untracked-files=no")) if commit != "unknown" else None)


CODE_AT_START = _code_state()   # read when the modules are loaded: the code that runs, not the tree at the end


def provenance(device):
    """Which code and machine made a run: the commit (and whether tracked files differed from it) as the process
    loaded the code, the CPU's model and the GPU's when one was used. Results differ between CPU models (by 2.4 mIoU
    on the default run between two machines here), so a table must say which made it. A resumed run records the
    code of the process that finished it. 'unknown' where git or /proc/cpuinfo cannot tell."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"commit": CODE_AT_START[0], "dirty": CODE_AT_START[1], "cpu": cpu, "gpu": gpu}


def args_dict(args):
    """The command-line settings as plain values (run-time fields like rank or dtype left out)."""
    skip = ("rank", "world", "amp_dtype", "memory_format", "checkpoint")
    return {k: (str(v) if isinstance(v, torch.device) else v) for k, v in vars(args).items() if k not in skip}


# ------------------------------------------------------------------------------------------ checkpoints

def rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


RUNTIME_FLAGS = ("device", "threads", "num_workers", "quiet", "resume")  # a resumed run may change these
SAVED_BEFORE = {"spl_cap": "discrepancy", "ppl_cell": 0,  # flags added since some runs were saved: how those runs acted
                "annotator_noise": 0.0, "noise_band": 1, "seconds_per_point": 2.4, "seconds_per_click": 3.2,
                "contour_tolerance": 0.75, "init_from": None, "budget_from": None}


def resume_args(cli):
    """--resume RUN_DIR: the run's own settings come from its checkpoint, so it continues exactly."""
    if (Path(cli.resume) / "metrics.json").exists():
        raise UsageError(f"{cli.resume} holds a finished run (metrics.json): there is nothing to resume; start a "
                         f"new run with another --out")
    if not (Path(cli.resume) / CHECKPOINT).is_file():
        raise UsageError(f"--resume {cli.resume}: there is no {Path(cli.resume) / CHECKPOINT}; give the folder of a "
                         f"run that was stopped or killed")
    ckpt = load_safe(Path(cli.resume) / CHECKPOINT, "checkpoint")
    args = argparse.Namespace(**{**SAVED_BEFORE, **ckpt["args"]})
    for k in RUNTIME_FLAGS:
        setattr(args, k, getattr(cli, k))
    args.out = cli.resume
    args.checkpoint = ckpt  # run() restores from it: the file is read once
    return args


def resume_checkpoint(args):
    """The checkpoint a --resume run continues from (the one resume_args read; None for a new run)."""
    if not args.resume:
        return None
    ckpt = vars(args).pop("checkpoint", None)  # popped: the run's weights are not kept twice in memory
    return ckpt if ckpt is not None else load_safe(Path(args.out) / CHECKPOINT, "checkpoint")


def unwrap(m):
    """The plain module inside a DistributedDataParallel wrapper (or the module itself)."""
    return m.module if hasattr(m, "module") else m


def check_finite(net, state, out, saved_at):
    """A step can blow the weights up while its loss was finite: such weights are never saved."""
    for k, m in net.items():
        if not all(torch.isfinite(t).all() for t in unwrap(m).state_dict().values() if t.is_floating_point()):
            raise UsageError(f"training diverged: the weights of {k} are no longer finite after iteration "
                             f"{state['iter'] - 1}; the last good checkpoint is {out / CHECKPOINT} (iteration "
                             f"{saved_at}); lower --lr and start again")


def save_checkpoint(args, out, state, net, opt, scaler, theta, revealed, annotator):
    """checkpoint.pt: the trainer's whole state at state['iter'] (rank 0 writes it)."""
    if args.rank == 0:
        save_atomic({"format": FORMAT, "args": args_dict(args), **state,
                     "nets": {k: unwrap(m).state_dict() for k, m in net.items()},
                     "opts": {k: o.state_dict() for k, o in opt.items()}, "scaler": scaler.state_dict(),
                     "theta": theta.cpu(), "revealed": revealed.state_dict(),
                     "annotator": annotator.state_dict(), "rng": rng_state()}, out / CHECKPOINT)


def restore(ckpt, state, net, opt, scaler, annotator, partial=False):
    """Load a checkpoint into freshly built models and optimisers: everything an uninterrupted run would hold at
    that iteration. Returns (theta, revealed) as tensors of their own.

    partial=True loads another run's warm-up (--init-from): models it lacks (B, built by this run's mode) keep their
    fresh start, and this run keeps its own clock."""
    for k, m in net.items():
        if k in ckpt["nets"] or not partial:
            m.load_state_dict(ckpt["nets"][k])
    for k, o in opt.items():
        if k in ckpt["opts"] or not partial:
            o.load_state_dict(ckpt["opts"][k])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    annotator.load_state_dict(ckpt["annotator"])
    state.update({k: ckpt[k] for k in state if k in ckpt and not (partial and k == "stage_time")})
    set_rng_state(ckpt["rng"])
    return ckpt["theta"], selection.RevealedLabels.from_state_dict(ckpt["revealed"])


def replay_selection(saved, annotator, state):
    """The labels a killed run bought after its last checkpoint (selection.pt): returned as RevealedLabels with
    theta, the annotator's counters, the round records and B's log restored, so that nothing is bought twice."""
    annotator.load_state_dict(saved["annotator"])
    state.update({k: saved[k] for k in ("masks", "a_wrong", "selection_rounds", "glance", "selector_history",
                                        "rounds_done")})
    return selection.RevealedLabels.from_state_dict(saved), saved["theta"]


def save_model(args, out, A, theta, classes):
    """model_A.pt: the final A, the IAST thresholds theta, the run's settings and the class names."""
    save_atomic({"format": FORMAT, "A": A.state_dict(), "theta": theta.cpu(), "args": args_dict(args),
                 "classes": list(classes)}, out / "model_A.pt")


def save_selection(args, out, revealed, annotator, state, theta):
    """selection.pt: every label bought so far (sparse: image, pixel, label), the annotator's counters, what each
    round's labels fixed, the figure masks, and B's log and theta as they were at the round (the iteration, too);
    written after each round so that a killed run never buys the same labels again."""
    if args.rank == 0:
        save_atomic({"format": FORMAT, "mode": args.mode, "rounds_done": state["rounds_done"], "iter": state["iter"],
                     **revealed.state_dict(), "annotator": annotator.state_dict(), "masks": state["masks"],
                     "glance": state["glance"], "a_wrong": state["a_wrong"], "theta": theta.cpu(),
                     "selection_rounds": state["selection_rounds"], "selector_history": state["selector_history"]},
                    out / SELECTION)


# ------------------------------------------------------------------------------------- --init-from, --budget-from

WARMUP = "warmup.pt"   # a staged run's state at the end of A's warm-up, and its trained B: what --init-from reads
# What A's warm-up and the trained B depend on: a run starts from another's only if these agree.
WARMUP_KEYS = ("data", "data_seed", "size", "shift", "thing_shift", "n_source", "n_target", "gta5_root",
               "cityscapes_root", "gta5_list", "cityscapes_list", "source_size", "target_size", "preset", "model",
               "width", "weights", "ndf", "iters", "warmup", "batch_size", "lr", "lr_d", "momentum", "weight_decay",
               "power", "gan", "lambda_seg_aux", "lambda_adv", "lambda_adv_aux", "seed", "amp", "device", "schedule")
SELECTOR_KEYS = WARMUP_KEYS + ("selector_iters", "selector_init", "lambda_dis", "iast_alpha", "iast_beta",
                               "iast_gamma")


def save_warmup(args, out, net, theta, state):
    """warmup.pt (rank 0): the checkpoint on disk, written at the end of the warm-up before B trained (or a round was
    bought), and B as trained since, with its theta, log and settings. Another run of this seed starts from it with
    --init-from."""
    if args.rank == 0:
        warm = load_safe(out / CHECKPOINT, "checkpoint")
        if "B" in net:
            warm["selector"] = {"B": unwrap(net["B"]).state_dict(), "theta": theta.cpu(), "args": args_dict(args),
                                "selector_history": state["selector_history"]}
        save_atomic(warm, out / WARMUP)


def init_from(args, state, net, opt, scaler, annotator):
    """--init-from RUN_DIR: start where that run's warm-up ended (its warmup.pt): A, D and their optimisers, the RNG
    and the warm-up's log, with this run's own clock; and that run's trained B with its theta when this run has B
    with the same settings (its log too: B is then trained). Returns theta."""
    path = Path(args.init_from) / WARMUP
    warm = load_safe(path, "warm-up")
    if differ := changed_settings(warm["args"], args_dict(args), WARMUP_KEYS):
        raise UsageError(f"--init-from {args.init_from}: its warm-up was trained with other settings "
                         f"({', '.join(differ)}); give a run of this seed with the same settings")
    theta, _ = restore(warm, state, net, opt, scaler, annotator, partial=True)
    state["shared_warmup"] = str(path)
    b = warm.get("selector")
    if "B" in net and b is not None and not changed_settings(b["args"], args_dict(args), SELECTOR_KEYS):
        unwrap(net["B"]).load_state_dict(b["B"])
        state["selector_history"] = b["selector_history"]
        return b["theta"]
    return theta


# Settings that change where and how fast a run works, not what it computes (and flags of older versions).
PLUMBING = ("out", "quiet", "threads", "log_every", "num_workers", "save_every", "resume", "shared_dir", "seeds",
            "budgets", "device", "benchmark", "peak_tflops", "profile", "jobs", "selectors", "noise_levels",
            "init_from", "budget_from")


def changed_settings(saved, wanted, keys=None):
    """The settings (of `keys`, or all but PLUMBING) in which a saved run's args differ from the wanted ones, as
    '--flag saved -> wanted'; a setting the saved run does not know (a flag added since) counts as unset."""
    saved, wanted = effective(saved), effective(wanted)
    return [f"--{k.replace('_', '-')} {saved.get(k)} -> {v}" for k, v in wanted.items()
            if (k in keys if keys else k not in PLUMBING) and saved.get(k) != v]


# Settings of the selector B (and of PPL alone): they do not act on a run without B (or that is not PPL).
SELECTOR_ONLY = ("lambda_dis", "selector_iters", "selector_init", "iast_alpha", "iast_beta", "iast_gamma")
PPL_ONLY = ("points", "ppl_space", "ppl_cell")


def effective(settings):
    """Settings as they act: runs saved before a default changed wrote them otherwise, and a setting that does not
    act on the run's mode is left out (random pixels do not depend on B's --lambda-dis)."""
    s = {**SAVED_BEFORE, **settings}   # a flag the run predates acted as SAVED_BEFORE says
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
    if s.get("device"):
        s["device"] = str(s["device"]).split(":")[0]   # cuda:1 is cuda (each torchrun rank has its own)
    return s


def new_state():
    """The trainer's counters and records: everything of a run, besides the models, that a checkpoint holds."""
    return {"iter": 0, "rounds_done": 0, "history": [], "running": {}, "masks": {}, "a_wrong": {}, "glance": {},
            "selection_rounds": [], "selector_history": [], "shared_warmup": None,
            "stage_time": {"setup": 0.0, "adaptation": 0.0, "selector": 0.0, "selection": 0.0, "evaluation": 0.0,
                           "outputs": 0.0}}


def record_losses(state, losses, it, out, saved_at):
    """Adds one iteration's losses to the running sums; stops before a bad step reaches a checkpoint, so the last
    one on disk stays good."""
    for k, v in losses.items():
        if not math.isfinite(v):
            raise UsageError(f"training diverged: {k} = {v} at iteration {it}; the last good checkpoint is "
                             f"{out / CHECKPOINT} (iteration {saved_at}); lower --lr and start again")
        state["running"][k] = state["running"].get(k, 0.0) + v
    state["running"]["n"] = state["running"].get("n", 0) + 1


def state_digest(net):
    """SHA-256 over every parameter and buffer of every model (names and exact bytes): equal digests mean equal
    weights, bit for bit."""
    h = hashlib.sha256()
    for key in sorted(net):
        for name, t in unwrap(net[key]).state_dict().items():
            h.update(f"{key}.{name}".encode())
            h.update(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- data stream

class InfiniteSampler(torch.utils.data.Sampler):
    """An endless, seeded stream of indices: epoch e is torch.randperm(n) seeded with (seed, e). It can start at
    any position, so a resumed run sees exactly the batches an uninterrupted one would; with several processes
    rank r takes every world-th index."""

    def __init__(self, n, seed, start=0, rank=0, world=1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def __iter__(self):
        t = self.start * self.world + self.rank
        while True:
            epoch, pos = divmod(t, self.n)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            yield int(torch.randperm(self.n, generator=g)[pos])
            t += self.world


def stream(dataset, args, seed, start, device):
    """An endless iterator of batches moved to the device (start = samples already consumed by this rank)."""
    sampler = InfiniteSampler(len(dataset), seed, start, args.rank, args.world)
    # its own generator: a loader started draws from the global RNG, and a resumed run starts it at another moment
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                                         num_workers=args.num_workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.num_workers > 0, worker_init_fn=ignore_stop_signals,
                                         generator=torch.Generator().manual_seed(seed))
    for batch in loader:
        yield [t.to(device, non_blocking=True) for t in batch]


def rank_share(dataset, args):
    """This rank's share of a dataset (every world-th image), in order: selection and evaluation go through it."""
    indices = list(range(args.rank, len(dataset), args.world))
    return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=args.batch_size,
                                       num_workers=args.num_workers, generator=torch.Generator(),  # (see stream)
                                       worker_init_fn=ignore_stop_signals)


def hash_seed(*numbers):
    """A stable seed from several integers (Python's hash() of a tuple is salted per process)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1)[0])


# ------------------------------------------------------------------------------------------------ runtime

def setup_runtime(args):
    """Device, distributed rank/world, threads, precision and the run folder's name (agreed on by every rank)."""
    args.rank = getattr(args, "rank", 0)
    args.world = getattr(args, "world", 1)
    args.quiet = getattr(args, "quiet", False)
    if not isinstance(args.device, torch.device):
        args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.amp_dtype = None
    if args.amp:  # bf16 where the hardware has it (no scaler needed), fp16 with a GradScaler otherwise
        bf16 = args.device.type == "cpu" or torch.cuda.is_bf16_supported()
        args.amp_dtype = torch.bfloat16 if bf16 else torch.float16
    args.memory_format = torch.channels_last if args.device.type == "cuda" else torch.contiguous_format
    if args.out is None:
        name = [f"runs/{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}"]
        if args.world > 1:
            torch.distributed.broadcast_object_list(name, src=0)
        args.out = name[0]


def autocast(args):
    """Mixed precision when --amp: bf16 where supported, else fp16 (then the GradScaler guards the gradients)."""
    return torch.autocast(args.device.type, dtype=args.amp_dtype, enabled=args.amp_dtype is not None)


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux: the process's peak RSS
    return kb / 1024


# ------------------------------------------------------------------------------------------------ signals

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)   # a cluster's pre-emption, Ctrl-C
_received = [0]                                  # the signal that asked the run to stop (0: none)


class Stopped(Exception):
    """A run stopped by SIGTERM / SIGINT after writing its checkpoint; main exits with 128 + the signal."""

    def __init__(self, signum, iteration, out, message=None):
        self.signum, self.iteration, self.out, self.message = signum, iteration, out, message
        super().__init__(message or f"stopped at iteration {iteration}; continue with: python train.py --resume {out}")


def stop_on_signal(run):
    """While `run` runs, SIGTERM and SIGINT only note the signal: the training loop looks at stop_requested at each
    iteration boundary, writes a checkpoint there and raises Stopped. A Ctrl-C after a noted signal acts at once,
    as it would without us; a second SIGTERM changes nothing (a cluster or an experiment may send one to every
    process of a job: the run still stops at its next iteration; SIGKILL is the way to end it at once). The previous
    handlers come back afterwards (notebooks and tests call run in this process); a signal that came too late to
    stop the run (during evaluation) is then handed to the previous handler if it is one of ours, not to Python's
    Ctrl-C default, so a lone run still ends.

    Python runs a handler once for signals that arrive together: two Ctrl-C pressed during one long operation (a
    forward pass of DeepLab, a checkpoint being written) reach `note` as one call. So the signals are counted where
    each of them lands, in C: signal.set_wakeup_fd writes one byte per signal to a socket, and `note` reads them."""
    @functools.wraps(run)
    def wrapper(args):
        if threading.current_thread() is not threading.main_thread():
            return run(args)  # only the main thread may set handlers; there the signals act as usual
        wakeup, counter = socket.socketpair()
        wakeup.setblocking(False)
        counter.setblocking(False)

        def note(signum, frame):
            try:
                arrived = counter.recv(4096).count(signum)   # this signal, and any that came with it
            except BlockingIOError:
                arrived = 1
            if signum == signal.SIGINT and (_received[0] or arrived > 1):   # a second Ctrl-C: what it does now
                signal.signal(signum, previous[signum] or signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            _received[0] = _received[0] or signum

        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        previous_fd = signal.set_wakeup_fd(wakeup.fileno(), warn_on_full_buffer=False)
        _received[0] = 0
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:  # e.g. SIGINT in a background job (`&`): it stays ignored
                signal.signal(s, note)
        try:
            result = run(args)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler or signal.SIG_DFL)
            signal.set_wakeup_fd(previous_fd)
            wakeup.close()
            counter.close()
            late, _received[0] = _received[0], 0
        if late and callable(previous[late]) and previous[late] is not signal.default_int_handler:
            previous[late](late, None)
        return result
    return wrapper


def signal_noted():
    """The signal a run in this process has noted and not yet acted on (0: none)."""
    return _received[0]


def stop_requested(args):
    """The signal received (0: none), agreed on by every rank, so that all of them stop at the same iteration."""
    signum = _received[0]
    if args.world > 1:
        t = torch.tensor([signum], device=args.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        signum = int(t.item())
    return signum


def ignore_stop_signals(worker_id):
    """DataLoader workers: a cluster (or Ctrl-C) signals the whole process group; the main process decides when to
    stop and ends its workers itself, so they must not die under the batch it is waiting for."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


# ------------------------------------------------------------------------------------------------ outputs

def log_interval(args, state, bar):
    """One history entry (mean of every loss term over the interval) and one log line."""
    running = state["running"]
    entry = {"iter": state["iter"], **{k: v / running["n"] for k, v in running.items() if k != "n"}}
    state["history"].append(entry)
    state["running"] = {}
    bar.set_postfix({k[5:] if k.startswith("loss_") else k: f"{v:.3g}" for k, v in entry.items() if k != "iter"})
    if args.rank == 0 and not args.quiet:
        tqdm.write(f"[{args.mode}] iter {entry['iter']}/{args.iters} " +
                   " ".join(f"{k}={v:.4f}" for k, v in entry.items() if k != "iter"))


def write_metrics(args, out, state, miou, ious, classes, annotator, agree):
    """metrics.json: the result (mIoU on target val, labels bought) and how it was obtained (times, settings)."""
    stage_time = state["stage_time"]
    total = sum(stage_time.values())
    metrics = {
        "mode": args.mode, "seed": args.seed, "data": args.data, "model": args.model, "iters": args.iters,
        "eval_split": args.eval_split, "miou": miou,
        "per_class_iou": {c: (None if math.isnan(v) else v) for c, v in zip(classes, ious)},  # JSON: null = absent
        "labelled_fraction": annotator.fraction_revealed, "labelled_pixels": annotator.pixels_revealed,
        "points_per_image": annotator.points_per_image, "images_annotated": annotator.images_annotated,
        "required_fraction": required_fraction(state["selection_rounds"]),
        "annotation_seconds": annotation_seconds(state["selection_rounds"]),
        "annotator_noise": getattr(args, "annotator_noise", 0.0), "annotator_wrong_labels": annotator.wrong_labels,
        "selection_rounds": state["selection_rounds"], "schedule": args.schedule,
        "shared_warmup": state["shared_warmup"], "selector_history": state["selector_history"],
        "stage_seconds": stage_time, "wall_seconds": total,
        "selection_share_of_wall": stage_time["selection"] / max(total, 1e-9),
        "iters_per_second": args.iters / max(stage_time["adaptation"], 1e-9),
        "peak_memory_mb": peak_memory_mb(args.device), "ranks_agree": agree,
        "history": state["history"], "args": args_dict(args),
        "platform": {"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "device": str(args.device), "world": args.world,
                     **provenance(args.device)},
    }
    save_atomic(json.dumps(metrics, indent=2), out / "metrics.json")  # half a metrics.json would mark it finished
    if not args.quiet:
        print(f"[{args.mode}] target {args.eval_split} mIoU {100 * miou:.2f}  labelled "
              f"{100 * metrics['labelled_fraction']:.3f}% of target pixels  "
              f"({metrics['points_per_image']:.1f} px/image)  wall {metrics['wall_seconds']:.0f}s  -> {out}")
    return metrics


def error_message(e):
    """The one line main prints for a mistake the user can fix (None: a bug, whose traceback is the useful part)."""
    if isinstance(e, OSError) and e.errno in USER_OS_ERRORS:   # a full disk, no permission, ...
        return f"{e.strerror}: {e.filename}" if e.filename else f"{e.strerror} (while writing the run's files)"
    if not isinstance(e, (UsageError, data.DatasetError)):
        return None
    message = str(e).strip()
    if "Original Traceback" in message:  # raised in a DataLoader worker: its last line is the message
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message


USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def required_fraction(rounds):
    """Over every labelling round: the share of bought pixels where A was wrong at selection time (None: none)."""
    bought = sum(r["bought_pixels"] for r in rounds)
    return sum(r["a_wrong_pixels"] for r in rounds) / bought if bought else None


def annotation_seconds(rounds):
    """Over every labelling round: what the labels cost a person per target-train image, in all and per class
    (cost.py; None for a run that bought nothing)."""
    costs = [r["annotation_seconds"] for r in rounds if "annotation_seconds" in r]
    if not costs:
        return None
    per_class = {c: sum(r["per_class"][c] for r in costs) for c in costs[0]["per_class"]}
    return {"kind": costs[0]["kind"], "per_image": sum(r["per_image"] for r in costs), "per_class": per_class}


def log_round(args, r, n_rounds, required):
    """One log line per labelling round: how much was bought and how much of it A needed."""
    if args.rank == 0 and not args.quiet:
        cost = required.get("annotation_seconds")
        tqdm.write(f"[{args.mode}] labelling round {r + 1}/{n_rounds}: {required['bought_pixels']} px bought, "
                   f"A was wrong on {100 * required['required_fraction']:.1f}% of them (required_fraction)"
                   + (f", about {cost['per_image']:.0f} s of annotator time per image" if cost else ""))
