"""The files of a run: written whole or not at all, read safely, and everything a resumed run needs to continue
bit for bit. None of this is LabOR.

    save_atomic / load_safe      every file we write, written whole or not at all; read with weights_only=True
    prepare_out                  the run folder: never a file, an earlier run or a folder another process uses
    save_checkpoint / restore    everything a resumed run needs to continue bit for bit
    save_warmup / init_from      the seed's shared warm-up (and trained B): --init-from
    log_interval / write_metrics the log lines and metrics.json
    error_message                what main prints for a mistake the user can fix
"""
import argparse
import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

import data
import selection
from tools import UsageError
from tools.runtime import peak_memory_mb, unwrap

FORMAT = "labor-reference/1"   # every file we write carries it: a foreign file is refused by name
CHECKPOINT, SELECTION = "checkpoint.pt", "selection.pt"


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


_locks = {}   # run folder -> its lock (filelock.FileLock on out/.lock), held while this process runs there


def lock_folder(out):
    """Refuse a folder another process is running in (two commands given one --out would write the same files). The
    operating system drops the lock when the process ends, however it ends. Held until unlock_folder (a run that
    failed keeps it until its process ends, or gives it to the next run of this process in that folder)."""
    key = str(Path(out).resolve())
    if key not in _locks:
        try:
            lock = FileLock(Path(out) / ".lock", is_singleton=False)
            lock.acquire(timeout=0)
            _locks[key] = lock
        except Timeout:
            raise UsageError(f"{out} is in use by another process (a run, or an experiment's run, in {out}); wait "
                             f"for it to end or pick another --out") from None


def unlock_folder(out):
    lock = _locks.pop(str(Path(out).resolve()), None)
    if lock is not None:
        lock.release()


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


def args_dict(args, rt=None):
    """The command-line settings as plain values; with the run's Runtime, the device and run folder as they are."""
    d = {k: v for k, v in vars(args).items() if k != "checkpoint"}
    return {**d, "device": str(rt.device), "out": rt.out} if rt else d


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


RUNTIME_FLAGS = ("device", "threads", "num_workers", "quiet", "resume",   # a resumed run may change these
                 "label_studio_url", "accept_partial")
SAVED_BEFORE = {"spl_cap": "discrepancy", "ppl_cell": 0,  # flags added since some runs were saved: how those runs acted
                "annotator_noise": 0.0, "noise_band": 1, "seconds_per_point": 2.4, "seconds_per_click": 3.2,
                "contour_tolerance": 0.75, "init_from": None, "budget_from": None, "source_root": None,
                "target_root": None, "classes": None, "img_suffix": [".png", ".jpg"], "seg_suffix": ".png",
                "scenes": None, "annotator": "oracle", "label_studio_url": None, "accept_partial": False}


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


def check_finite(net, state, out, saved_at):
    """A step can blow the weights up while its loss was finite: such weights are never saved."""
    for k, m in net.items():
        if not all(torch.isfinite(t).all() for t in unwrap(m).state_dict().values() if t.is_floating_point()):
            raise UsageError(f"training diverged: the weights of {k} are no longer finite after iteration "
                             f"{state['iter'] - 1}; the last good checkpoint is {out / CHECKPOINT} (iteration "
                             f"{saved_at}); lower --lr and start again")


def save_checkpoint(settings, out, state, net, opt, scaler, theta, revealed, annotator):
    """checkpoint.pt: the trainer's whole state at state['iter'] (settings: args_dict's)."""
    save_atomic({"format": FORMAT, "args": settings, **state,
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


def save_model(settings, out, A, theta, classes):
    """model_A.pt: the final A, the IAST thresholds theta, the run's settings and the class names."""
    save_atomic({"format": FORMAT, "A": A.state_dict(), "theta": theta.cpu(), "args": settings,
                 "classes": list(classes)}, out / "model_A.pt")


def save_selection(mode, out, revealed, annotator, state, theta):
    """selection.pt: every label bought so far (sparse: image, pixel, label), the annotator's counters, what each
    round's labels fixed, the figure masks, and B's log and theta as they were at the round (the iteration, too);
    written after each round so that a killed run never buys the same labels again."""
    save_atomic({"format": FORMAT, "mode": mode, "rounds_done": state["rounds_done"], "iter": state["iter"],
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
               "power", "gan", "lambda_seg_aux", "lambda_adv", "lambda_adv_aux", "seed", "amp", "device", "schedule",
               "source_root", "target_root", "classes", "img_suffix", "seg_suffix", "scenes")
SELECTOR_KEYS = WARMUP_KEYS + ("selector_iters", "selector_init", "lambda_dis", "iast_alpha", "iast_beta",
                               "iast_gamma")


def save_warmup(settings, out, net, theta, state):
    """warmup.pt: the checkpoint on disk, written at the end of the warm-up before B trained (or a round was
    bought), and B as trained since, with its theta, log and settings. Another run of this seed starts from it with
    --init-from."""
    warm = load_safe(out / CHECKPOINT, "checkpoint")
    if "B" in net:
        warm["selector"] = {"B": unwrap(net["B"]).state_dict(), "theta": theta.cpu(), "args": settings,
                            "selector_history": state["selector_history"]}
    save_atomic(warm, out / WARMUP)


def init_from(args, settings, state, net, opt, scaler, annotator):
    """--init-from RUN_DIR: start where that run's warm-up ended (its warmup.pt): A, D and their optimisers, the RNG
    and the warm-up's log, with this run's own clock; and that run's trained B with its theta when this run has B
    with the same settings (its log too: B is then trained). Returns theta."""
    path = Path(args.init_from) / WARMUP
    warm = load_safe(path, "warm-up")
    if differ := changed_settings(warm["args"], settings, WARMUP_KEYS):
        raise UsageError(f"--init-from {args.init_from}: its warm-up was trained with other settings "
                         f"({', '.join(differ)}); give a run of this seed with the same settings")
    theta, _ = restore(warm, state, net, opt, scaler, annotator, partial=True)
    state["shared_warmup"] = str(path)
    b = warm.get("selector")
    if "B" in net and b is not None and not changed_settings(b["args"], settings, SELECTOR_KEYS):
        unwrap(net["B"]).load_state_dict(b["B"])
        state["selector_history"] = b["selector_history"]
        return b["theta"]
    return theta


# Settings that change where and how fast a run works, not what it computes (and flags of older versions).
PLUMBING = ("out", "quiet", "threads", "log_every", "num_workers", "save_every", "resume", "shared_dir", "seeds",
            "budgets", "device", "benchmark", "peak_tflops", "profile", "jobs", "selectors", "noise_levels",
            "init_from", "budget_from", "label_studio_url", "accept_partial")


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


# ------------------------------------------------------------------------------------------------ outputs

def log_interval(args, rt, state, bar):
    """One history entry (mean of every loss term over the interval) and one log line."""
    running = state["running"]
    entry = {"iter": state["iter"], **{k: v / running["n"] for k, v in running.items() if k != "n"}}
    state["history"].append(entry)
    state["running"] = {}
    bar.set_postfix({k[5:] if k.startswith("loss_") else k: f"{v:.3g}" for k, v in entry.items() if k != "iter"})
    if not rt.quiet:
        tqdm.write(f"[{args.mode}] iter {entry['iter']}/{args.iters} " +
                   " ".join(f"{k}={v:.4f}" for k, v in entry.items() if k != "iter"))


def write_metrics(args, rt, out, state, miou, ious, classes, annotator, agree):
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
        **person_answers(state["selection_rounds"]),   # --annotator label-studio: the seconds a person took
        "annotator_noise": getattr(args, "annotator_noise", 0.0), "annotator_wrong_labels": annotator.wrong_labels,
        "selection_rounds": state["selection_rounds"], "schedule": args.schedule,
        "shared_warmup": state["shared_warmup"], "selector_history": state["selector_history"],
        "stage_seconds": stage_time, "wall_seconds": total,
        "selection_share_of_wall": stage_time["selection"] / max(total, 1e-9),
        "iters_per_second": args.iters / max(stage_time["adaptation"], 1e-9),
        "peak_memory_mb": peak_memory_mb(rt.device), "ranks_agree": agree,
        "history": state["history"], "args": args_dict(args, rt),
        "platform": {"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "device": str(rt.device), "world": rt.world,
                     **provenance(rt.device)},
    }
    save_atomic(json.dumps(metrics, indent=2), out / "metrics.json")  # half a metrics.json would mark it finished
    if not rt.quiet:
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


def person_answers(rounds):
    """--annotator label-studio, over every round: the seconds a person took (Label Studio's lead_time) per
    target-train image and in all, and per target-train image of a round as annotation_seconds counts cost.py's
    modelled seconds (summed over rounds: the two side by side); the tasks and pixels their answers left out or
    added. Nothing for the oracle."""
    answered = [r["label_studio"] for r in rounds if "label_studio" in r]
    if not answered:
        return {}
    per_image = {}
    for a in answered:
        for i, s in a["seconds"].items():
            per_image[i] = per_image.get(i, 0.0) + s
    counts = ("tasks", "tasks_unanswered", "tasks_deleted", "dropped_pixels", "unanswered_pixels")
    return {"annotation_seconds_measured": {"per_image": per_image, "total": sum(per_image.values()),
                                            "mean_per_image": sum(a["mean_per_image"] for a in answered)},
            "label_studio": {"url": answered[-1]["url"], "project": answered[-1]["project"],
                             **{k: sum(a[k] for a in answered) for k in counts}}}


def log_round(args, rt, r, n_rounds, required):
    """One log line per labelling round: how much was bought and how much of it A needed."""
    if not rt.quiet:
        cost = required.get("annotation_seconds")
        tqdm.write(f"[{args.mode}] labelling round {r + 1}/{n_rounds}: {required['bought_pixels']} px bought, "
                   f"A was wrong on {100 * required['required_fraction']:.1f}% of them (required_fraction)"
                   + (f", about {cost['per_image']:.0f} s of annotator time per image" if cost else "")
                   + (person_line(required["label_studio"]) if "label_studio" in required else ""))


def person_line(a):
    """The log line's part for a person's answers: what was dropped or missing, and the seconds measured."""
    return (f"; Label Studio: {a['tasks'] - a['tasks_unanswered']}/{a['tasks']} tasks answered in "
            f"{sum(a['seconds'].values()):.0f} s ({a['mean_per_image']:.0f} s per image), {a['dropped_pixels']} px "
            f"painted outside the query dropped, {a['unanswered_pixels']} queried px unanswered")
