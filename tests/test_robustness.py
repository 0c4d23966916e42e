"""Runs that survive (issue 6): a run killed at any moment resumes from its last complete checkpoint and ends
exactly as an uninterrupted one; labels are never bought twice; checkpoints load with weights_only=True, so a
truncated, foreign or malicious one is refused by name; bad input and divergence give one clear error (exit 2)
and never damage an earlier run. (Label leakage is tested in test_train.py.)

Issue 10: a run folder that is a file or cannot be written is refused, a full disk never costs the last good
checkpoint; SIGTERM / SIGINT write a checkpoint at the current iteration and exit 128 + n, and the resumed run ends
as the uninterrupted one; under torchrun an error on any rank ends every rank at once with the same message;
--resume reads the checkpoint once. (Every flag's bad values: test_flags.py.)"""
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import distributed  # noqa: E402
from tools import experiments  # noqa: E402
from fakes import assert_equal, write_fake_cityscapes, write_fake_gta5  # noqa: E402
import labor  # noqa: E402
import selection  # noqa: E402
import train  # noqa: E402
from tools import checkpoint as files  # noqa: E402
from tools import flags  # noqa: E402
import tools.runtime  # noqa: E402
from tools import Stopped  # noqa: E402

# --schedule joint: these runs label at the iterations they choose (--select-at)
TINY = ["--schedule", "joint", "--n-source", "8", "--n-target", "6", "--n-val", "4", "--size", "32", "64",
        "--batch-size", "2", "--width", "8", "--log-every", "3", "--threads", "1"]
SELECT_AT = 20  # SPL at iteration 20 of 40 labels a few hundred pixels with these settings (at 3: none)


def run_flags(save_every=2):
    return ["--mode", "spl", "--iters", "40", "--save-every", str(save_every), "--select-at", str(SELECT_AT), *TINY]


RUN = run_flags()
REAL = ["--data", "gta5-cityscapes", "--model", "tiny", "--source-size", "64", "32", "--target-size", "64", "32",
        "--iters", "2", "--batch-size", "1", "--width", "8", "--threads", "1"]


# ------------------------------------------------------------------------------------------------ helpers

def main(argv, capsys):
    """train.main in this process; returns (exit code, stderr). Exit code 0 when it returns normally."""
    capsys.readouterr()
    try:
        train.main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_one_clear_error(code, err, *names):
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in err, (name, err)


def snapshot(folder):
    """{file name: sha256} of every file in a run folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def start(out, *flags):
    """train.py in a subprocess (a real process, so it can be killed like one)."""
    cmd = [sys.executable, "train.py", "--out", str(out), *flags, "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc, out, condition, keep=None, timeout=120):
    """Poll out/checkpoint.pt (with files.load_safe, as --resume reads it) until condition(iteration) holds.
    keep=(path, predicate): also keep a copy of a checkpoint whose iteration satisfies predicate."""
    ckpt, seen, t0 = out / files.CHECKPOINT, None, time.time()
    snap = out.parent / (out.name + "-poll.pt")
    while proc.poll() is None and time.time() - t0 < timeout:
        stamp = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if stamp is None or stamp == seen:
            time.sleep(0.01)
            continue
        seen = stamp
        shutil.copyfile(ckpt, snap)          # a complete file: checkpoints are replaced by rename
        it = files.load_safe(snap, "checkpoint")["iter"]
        if keep and keep[1](it) and not keep[0].exists():
            shutil.copyfile(snap, keep[0])
        if condition(it):
            return
    proc.kill()
    pytest.fail(f"the run ended (rc {proc.returncode}) or timed out before the signal; "
                f"stderr: {proc.stderr.read()[-2000:] if proc.stderr else ''}")


def kill_when(proc, out, condition, keep=None, timeout=120):
    """SIGKILL the process as soon as its checkpoint's iteration satisfies condition (see wait_for_checkpoint).
    Returns the iteration of the checkpoint left on disk after the kill."""
    wait_for_checkpoint(proc, out, condition, keep, timeout)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "killed mid-run, so the run must not have finished"
    return files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"]


def assert_same_run(ref, out):
    """Same final weights, loss history, labels bought and budget counters as the uninterrupted run."""
    a = torch.load(ref / "model_A.pt", weights_only=True)["A"]
    b = torch.load(out / "model_A.pt", weights_only=True)["A"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    assert ma["history"] == mb["history"]
    for k in ("miou", "labelled_pixels", "images_annotated", "labelled_fraction", "points_per_image"):
        assert ma[k] == mb[k], k
    sa, sb = (torch.load(d / files.SELECTION, weights_only=True) for d in (ref, out))
    assert sa["rounds_done"] == sb["rounds_done"] == 1
    for k in ("image_index", "pixel_index", "label"):
        assert torch.equal(sa[k], sb[k]), k
    assert sa["annotator"]["pixels_revealed"] == sb["annotator"]["pixels_revealed"] == len(sb["label"])
    assert torch.equal(sa["annotator"]["image_pixels"], sb["annotator"]["image_pixels"])
    ca, cb = (torch.load(d / files.CHECKPOINT, weights_only=True) for d in (ref, out))
    assert ca["iter"] == cb["iter"] == 40                 # the checkpoint written at the end
    for k in ca:  # B, the discriminators, every optimiser state, IAST's thresholds, the RNG, ...
        if k not in ("stage_time", "args"):               # ... all but wall-clock times and the --resume flag
            assert_equal(ca[k], cb[k], k)


@pytest.fixture
def annotator_calls(monkeypatch):
    """Counts the images the annotator is asked about in this process."""
    calls = []
    original = selection.Annotator.annotate

    def spy(self, indices, *rest, **kw):
        calls.extend(int(i) for i in indices)
        return original(self, indices, *rest, **kw)

    monkeypatch.setattr(selection.Annotator, "annotate", spy)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every resumed run must equal (also: the 'earlier run' bad input must not touch)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    args = train.get_args(["--out", str(out), *RUN])
    args.quiet = True
    m = train.run(args)
    assert m["labelled_pixels"] > 0, "the round should buy labels, or the selection checks below are empty"
    return out


# ------------------------------------------------------------------------------------------------ exact resume

@pytest.mark.slow
def test_killed_run_resumes_exactly(reference, tmp_path):
    """SIGKILL a real process mid-run (before the labelling round), resume it with `train.py --resume`: the
    result equals the uninterrupted run's (weights, losses, labels, budget)."""
    out = tmp_path / "run"
    it = kill_when(start(out, *RUN), out, lambda i: i >= 4)
    assert 4 <= it < SELECT_AT and not (out / files.SELECTION).exists()
    (out / (files.CHECKPOINT + ".tmp")).write_bytes(b"PK\x03\x04 half")   # as if killed mid-write, for sure
    r = subprocess.run([sys.executable, "train.py", "--resume", str(out), "--threads", "1", "--quiet"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(reference, out)


@pytest.mark.slow
def test_kill_after_labelling_round_does_not_buy_again(reference, tmp_path, capsys, monkeypatch, annotator_calls):
    """Killed after the round: the resumed run asks the annotator nothing and ends as the uninterrupted run.
    Killed between the round's selection.pt and the checkpoint after it (here: the run ends right after writing
    selection.pt, in this process), the checkpoint on disk is the one written before the round: the labels saved
    in selection.pt are reused, again without asking the annotator."""
    out = tmp_path / "run"
    it = kill_when(start(out, *RUN), out, lambda i: i > SELECT_AT)
    assert it > SELECT_AT and torch.load(out / files.SELECTION, weights_only=True)["rounds_done"] == 1
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert annotator_calls == []
    assert_same_run(reference, out)

    real, stale = files.save_selection, tmp_path / "stale"

    def then_killed(args, folder, revealed, annotator, state, theta):
        real(args, folder, revealed, annotator, state, theta)
        if state["rounds_done"] == 1:
            raise KeyboardInterrupt   # the kill, before the checkpoint that follows the round

    monkeypatch.setattr(files, "save_selection", then_killed)
    with pytest.raises(KeyboardInterrupt):
        main(["--out", stale, *RUN, "--quiet"], capsys)
    monkeypatch.setattr(files, "save_selection", real)
    ckpt = torch.load(stale / files.CHECKPOINT, weights_only=True)
    assert (ckpt["iter"], ckpt["rounds_done"]) == (SELECT_AT, 0)
    assert torch.load(stale / files.SELECTION, weights_only=True)["rounds_done"] == 1
    annotator_calls.clear()
    code, err = main(["--resume", stale, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert annotator_calls == []
    assert_same_run(reference, stale)


@pytest.mark.slow
def test_crash_before_first_periodic_checkpoint_can_resume(reference, tmp_path, capsys, monkeypatch,
                                                           annotator_calls):
    """With --save-every 0 (checkpoints only at the end) a run that dies early (here: an exception at iteration 3,
    in this process, to be quick) still leaves the checkpoint written right after set-up (iteration 0), and
    resuming from it gives the uninterrupted result."""
    step, calls = train.train_step, []

    def dying_step(*a, **kw):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt  # what Ctrl-C does; a SIGKILL leaves the same files behind
        return step(*a, **kw)

    monkeypatch.setattr(train, "train_step", dying_step)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        main(["--out", out, *run_flags(save_every=0), "--quiet"], capsys)
    monkeypatch.setattr(train, "train_step", step)
    assert files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"] == 0
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert sorted(annotator_calls) == list(range(6))  # the round ran here: the spy of the test above works
    assert_same_run(reference, out)


@pytest.mark.slow
def test_resume_of_a_finished_run_is_refused(reference, capsys):
    before = snapshot(reference)
    code, err = main(["--resume", reference, "--threads", "1"], capsys)
    assert_one_clear_error(code, err, reference)
    assert "finished" in err
    assert snapshot(reference) == before


# ------------------------------------------------------------------------------------------------ unsafe checkpoints

def checkpoint_copy(reference, tmp_path):
    """A run folder holding only a copy of the reference's checkpoint (as if killed)."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copyfile(reference / files.CHECKPOINT, out / files.CHECKPOINT)
    return out, out / files.CHECKPOINT


@pytest.mark.slow
def test_truncated_checkpoint_is_refused_by_name(reference, tmp_path, capsys):
    out, ckpt = checkpoint_copy(reference, tmp_path)
    raw = ckpt.read_bytes()
    ckpt.write_bytes(raw[:len(raw) // 2])
    code, err = main(["--resume", out, "--threads", "1"], capsys)
    assert_one_clear_error(code, err, ckpt)
    assert "truncated" in err


@pytest.mark.parametrize("content", ["foreign dict", "random bytes", "missing"])
def test_foreign_checkpoint_is_refused_by_name(content, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / files.CHECKPOINT
    if content == "foreign dict":       # loads fine, but is not ours
        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, ckpt)
    elif content == "random bytes":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = main(["--resume", out, "--threads", "1"], capsys)
    assert_one_clear_error(code, err, ckpt)


class Payload:
    """Unpickling this object runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.slow
@pytest.mark.parametrize("which", [files.CHECKPOINT, files.SELECTION])
def test_file_carrying_code_is_refused_and_never_run(which, reference, tmp_path, capsys):
    """A checkpoint.pt or selection.pt in our format, plus a pickled object whose unpickling runs a command."""
    out, _ = checkpoint_copy(reference, tmp_path)
    shutil.copyfile(reference / files.SELECTION, out / files.SELECTION)
    marker, evil = tmp_path / "pwned", out / which
    good = torch.load(evil, weights_only=True)
    good["note"] = Payload(f"touch {shlex.quote(str(marker))}")
    torch.save(good, evil)
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert_one_clear_error(code, err, evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the refusal is all that stood between us and the payload
    assert marker.exists()


def test_save_atomic_never_leaves_half_a_file(tmp_path, monkeypatch):
    """Killed mid-write (here: torch.save dies half-way), the previous checkpoint is still whole."""
    path = tmp_path / files.CHECKPOINT
    files.save_atomic({"format": files.FORMAT, "iter": 2, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        files.save_atomic({"format": files.FORMAT, "iter": 4, "w": torch.zeros(3)}, path)
    assert files.load_safe(path, "checkpoint")["iter"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.CHECKPOINT]   # and no half-written .tmp beside it


# ------------------------------------------------------------------------------------------------ bad input

@pytest.fixture
def fakes(tmp_path):
    return write_fake_gta5(tmp_path / "gta", n=2), write_fake_cityscapes(tmp_path / "cs", n=2)


def first(folder):
    return sorted(Path(folder).rglob("*.png"))[0]


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    return path


def break_fakes(case, gta, cs):
    """Damage the fake datasets; returns (extra flags, the text the error must contain)."""
    roots = ["--gta5-root", gta, "--cityscapes-root", cs]
    if case == "wrong gta5 root":
        return ["--gta5-root", gta.parent / "nope", "--cityscapes-root", cs], gta.parent / "nope"
    if case == "wrong cityscapes root":
        return ["--gta5-root", gta, "--cityscapes-root", gta], gta / "leftImg8bit"
    if case == "empty val split":
        for f in (cs / "leftImg8bit" / "val").rglob("*.png"):
            f.unlink()
        return roots, cs / "leftImg8bit" / "val"
    if case == "truncated source image":
        return roots, truncate(first(gta / "images"))
    if case == "truncated val image":                  # fails in evaluation, after training
        return roots, truncate(first(cs / "leftImg8bit" / "val"))
    if case == "truncated val image, worker":          # the same, raised inside a DataLoader worker
        return roots + ["--num-workers", "1"], truncate(first(cs / "leftImg8bit" / "val"))
    if case == "truncated target image, worker":       # in training, inside a persistent worker
        return roots + ["--num-workers", "1"], truncate(sorted((cs / "leftImg8bit" / "train").rglob("*.png"))[1])
    if case == "unknown label value":
        label = first(gta / "labels")
        ids = np.asarray(Image.open(label)).copy()
        ids[3, 3] = 200
        Image.fromarray(ids).save(label)
        return roots, label
    if case == "label size mismatch":
        label = first(cs / "gtFine" / "train")
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(label)
        return roots, label
    raise ValueError(case)


DATA_CASES = ["wrong gta5 root", "wrong cityscapes root", "empty val split", "truncated source image",
              "truncated val image", "truncated val image, worker", "truncated target image, worker",
              "unknown label value", "label size mismatch"]


@pytest.mark.slow
@pytest.mark.parametrize("case", DATA_CASES)
def test_broken_real_data_gives_one_clear_error(case, fakes, reference, tmp_path, capsys):
    """Broken GTA5 / Cityscapes folders and files, found at set-up, in training, in evaluation or inside a
    DataLoader worker: one 'error:' line naming the file, exit 2, and the earlier run untouched."""
    before = snapshot(reference)
    flags, name = break_fakes(case, *fakes)
    code, err = main([*REAL, *flags, "--out", tmp_path / "new", "--quiet"], capsys)
    assert_one_clear_error(code, err, name)
    assert snapshot(reference) == before


@pytest.mark.slow
def test_the_fake_real_data_run_works(fakes, tmp_path, capsys):
    """The broken-data cases above fail because of the damage, not because the settings cannot run."""
    gta, cs = fakes
    code, err = main([*REAL, "--gta5-root", gta, "--cityscapes-root", cs, "--out", tmp_path / "ok", "--quiet",
                      "--num-workers", "1"], capsys)
    assert code == 0, err
    assert (tmp_path / "ok" / "metrics.json").exists()


@pytest.mark.slow
def test_worker_error_from_the_command_line(fakes, tmp_path):
    """As a user sees it: train.py whose training DataLoader worker reads a truncated target image prints one
    line."""
    gta, cs = fakes
    bad = truncate(sorted((cs / "leftImg8bit" / "train").rglob("*.png"))[1])  # [0] is read at set-up
    cmd = [sys.executable, "train.py", *REAL, "--gta5-root", str(gta), "--cityscapes-root", str(cs),
           "--num-workers", "1", "--out", str(tmp_path / "new"), "--quiet"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert_one_clear_error(r.returncode, r.stderr, bad)


FLAG_CASES = {
    "budget 0": (["--budget", "0"], "--budget"),
    "budget 1.5": (["--budget", "1.5"], "--budget"),
    "points 0": (["--points", "0"], "--points"),
    "unknown mode": (["--mode", "bogus"], "unknown --mode"),
    "cuda without a GPU": (["--device", "cuda"], "--device cuda"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flags_give_one_clear_error(case, reference, tmp_path, capsys):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    flags, text = FLAG_CASES[case]
    before = snapshot(reference)
    code, err = main(["--mode", "spl", "--iters", "2", *TINY, *flags, "--out", tmp_path / "new"], capsys)
    assert_one_clear_error(code, err, text)
    assert snapshot(reference) == before
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize("holding", ["finished run", "killed run"])
def test_out_holding_a_run_is_refused_byte_for_byte(holding, reference, tmp_path, capsys):
    folder = reference if holding == "finished run" else checkpoint_copy(reference, tmp_path)[0]
    before = snapshot(folder)
    code, err = main(["--mode", "spl", "--iters", "2", *TINY, "--out", folder], capsys)
    assert_one_clear_error(code, err, folder, "--resume")
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------------------------ divergence

@pytest.mark.slow
def test_nan_loss_stops_naming_term_and_iteration(tmp_path, capsys, monkeypatch):
    """seg_loss turns NaN at iteration 7: exit 2, the message names loss_seg and iteration 7, and checkpoint.pt
    is the last good one (iteration 6, finite weights), loadable as a normal checkpoint."""
    calls = {"n": 0}
    step, seg_loss = train.train_step, labor.seg_loss

    def counting_step(*a, **kw):
        calls["n"] += 1
        return step(*a, **kw)

    def nan_after(logits, *a, **kw):
        loss = seg_loss(logits, *a, **kw)
        return loss * float("nan") if calls["n"] > 7 else loss     # call 8 is iteration 7 (0-based)

    monkeypatch.setattr(train, "train_step", counting_step)
    monkeypatch.setattr(labor, "seg_loss", nan_after)
    out = tmp_path / "run"
    code, err = main(["--mode", "spl", "--iters", "12", "--save-every", "2", "--select-at", "3", *TINY,
                      "--out", out, "--quiet"], capsys)
    assert_one_clear_error(code, err, "loss_seg", "iteration 7", f"{out / files.CHECKPOINT} (iteration 6)")
    ckpt = files.load_safe(out / files.CHECKPOINT, "checkpoint")
    assert ckpt["iter"] == 6
    for net, weights in ckpt["nets"].items():
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()), net
    assert not (out / "metrics.json").exists()


def test_exploding_learning_rate_keeps_a_finite_checkpoint(tmp_path, capsys):
    """A real divergence (--lr 1e5): a step can make the weights non-finite while its loss was still finite; the
    checkpoint written after it must not hold them. Whatever stops the run, checkpoint.pt stays finite."""
    out = tmp_path / "run"
    code, err = main(["--mode", "source_only", "--iters", "10", "--save-every", "1", "--lr", "1e5", *TINY,
                      "--out", out, "--quiet"], capsys)
    assert_one_clear_error(code, err, "diverged", "iteration", out / files.CHECKPOINT)
    ckpt = files.load_safe(out / files.CHECKPOINT, "checkpoint")
    for net, weights in ckpt["nets"].items():
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()), net


# ------------------------------------------------------------------------------------------------ run folders

@pytest.mark.parametrize("how", ["chmod", "a write that fails"])
def test_out_without_write_permission_is_refused(how, tmp_path, capsys, monkeypatch):
    """A folder we cannot write in is refused before any work, by name. Root writes through chmod, so there (as in
    these tests' container) the write the check makes is made to fail instead."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes whatever the permissions say")
        folder.chmod(0o555)
    else:
        def denied(dir=None, **kw):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        monkeypatch.setattr(files, "tempfile", SimpleNamespace(TemporaryFile=denied))
    code, err = main(["--mode", "spl", "--iters", "2", *TINY, "--out", folder, "--quiet"], capsys)
    assert_one_clear_error(code, err, folder, "Permission denied", "--out")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_full_disk_mid_run_keeps_the_last_checkpoint(reference, tmp_path, capsys, monkeypatch):
    """The disk fills up at iteration 30's checkpoint (torch.save writes part of it, then ENOSPC): one line naming
    the file, exit 2; checkpoint.pt is still iteration 28's, whole, and no .tmp is left. Once there is space again,
    --resume ends exactly as the uninterrupted run."""
    save = torch.save

    def disk_fills_up(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("iter", 0) >= 30:
            f.write(b"PK\x03\x04 part of a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    out = tmp_path / "run"
    code, err = main(["--out", out, *RUN, "--quiet"], capsys)
    assert_one_clear_error(code, err, out / files.CHECKPOINT, "No space left on device", f"--resume {out}")
    assert files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"] == 28
    assert not list(out.glob("*.tmp")) and not (out / "metrics.json").exists()
    monkeypatch.setattr(torch, "save", save)
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert_same_run(reference, out)


# ------------------------------------------------------------------------------------------------ SIGTERM, SIGINT

def weights_digest(path):
    """SHA-256 of a model_A.pt's weights (names and exact bytes), as files.state_digest."""
    h = hashlib.sha256()
    weights = torch.load(path, weights_only=True)["A"]
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def assert_same_result(ref, out):
    """What a user compares: metrics.json's mIoU and labelled pixels, and the weights' digest."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    assert (ma["miou"], ma["labelled_pixels"]) == (mb["miou"], mb["labelled_pixels"])
    assert weights_digest(ref / "model_A.pt") == weights_digest(out / "model_A.pt")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process", "process group with a DataLoader worker"])
def test_sigterm_checkpoints_and_the_resumed_run_ends_the_same(target, reference, tmp_path, capsys):
    """SIGTERM to a real `python train.py` mid-run (to it alone, or to its whole process group, as a cluster's
    pre-emption does, DataLoader worker included): it writes a checkpoint at the current iteration, prints how to
    continue, exits 128 + 15; `--resume` then ends exactly as the uninterrupted run."""
    out = tmp_path / "run"
    workers = ["--num-workers", "1"] if "group" in target else []
    cmd = [sys.executable, "train.py", "--out", str(out), *run_flags(save_every=3), *workers, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for_checkpoint(proc, out, lambda i: i >= 9)
    if "group" in target:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    n = files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"]
    assert 9 <= n < 40 and not (out / "metrics.json").exists()
    assert err.strip() == f"stopped at iteration {n}; continue with: python train.py --resume {out}", err
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert_same_result(reference, out)
    assert_same_run(reference, out)


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory):
    """An uninterrupted sweep of two-job runs (its flags, its folder): what a stopped and continued one must equal."""
    flags = ["sweep", "--budgets", "0.05", "--selectors", "random", "spl", "--iters", "40", "--save-every", "2", *TINY,
             "--select-at", str(SELECT_AT), "--jobs", "2", "--quiet"]
    ref = tmp_path_factory.mktemp("reference-table")
    experiments.main([*flags, "--out", str(ref)])
    return flags, ref


@pytest.mark.slow
@pytest.mark.parametrize("target", ["experiment alone", "process group"])
def test_sigterm_stops_an_experiment_with_two_jobs_and_the_same_command_finishes_it(target, reference_sweep,
                                                                                    tmp_path):
    """experiments.py sweep --jobs 2 stopped by SIGTERM (to the experiment alone, or to its whole process group, as
    a cluster does): it passes the signal once to every run in progress (each a process group of its own), they
    write their checkpoints and stop, no run starts after it, the exit code is 128 + 15; the same command then
    resumes the stopped runs, starts the rest, and writes the sweep an uninterrupted experiment writes."""
    flags, ref = reference_sweep
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "tools.experiments", *flags, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for_checkpoint(proc, out / "spl-seed0", lambda i: i >= 10)
    if target == "process group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == ("stopped (every run in progress wrote its checkpoint); continue with the "
                                            "same command"), err
    assert "stopped at iteration" in err and not (out / "spl-seed0" / "metrics.json").exists()
    assert not (out / "sweep.md").exists()
    assert not [m for m in ("random-budget0.05", "spl-budget0.05", "adaptseg") if (out / f"{m}-seed0").exists()]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    got, want = (json.loads((d / "sweep.json").read_text()) for d in (out, ref))
    assert got == want


def test_a_run_started_with_ctrl_c_ignored_leaves_it_ignored():
    """A background job (`python train.py ... &`) starts with SIGINT ignored: a Ctrl-C meant for the foreground
    must neither stop it nor be noted, and the run leaves SIGINT ignored (tests/conftest.py gives every other test
    a terminal's Ctrl-C)."""
    @tools.runtime.stop_on_signal
    def run(_):
        os.kill(os.getpid(), signal.SIGINT)
        return tools.runtime.signal_noted(), signal.getsignal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert run(None) == (0, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_too_late_for_the_run_reaches_the_experiment_but_not_pythons_ctrl_c_default(monkeypatch):
    """A signal after a run's last iteration (during evaluation) lets the run end; then it goes to the handler that
    was there before if that is an experiment's (which starts no further run), never to KeyboardInterrupt."""
    seen = []

    @tools.runtime.stop_on_signal
    def run(args):
        os.kill(os.getpid(), args)  # arrives "during evaluation": the run ends normally
        return "done"

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        assert run(signal.SIGTERM) == "done"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run(signal.SIGINT) == "done"  # no KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, previous)
    assert tools.runtime.signal_noted() == 0


@pytest.mark.slow
def test_ctrl_c_checkpoints_at_the_current_iteration(reference, tmp_path, capsys, monkeypatch):
    """SIGINT in this process during iteration 5 (--save-every 0: no checkpoint but iteration 0's): the run
    stops at iteration 6 with a checkpoint there, exits 130, gives the previous SIGINT handler back, and resumes
    to the uninterrupted result."""
    step, calls = train.train_step, []

    def interrupted_step(*a, **kw):
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGINT)   # arrives mid-iteration: the step still completes
        return step(*a, **kw)

    monkeypatch.setattr(train, "train_step", interrupted_step)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    code, err = main(["--out", out, *run_flags(save_every=0), "--quiet"], capsys)
    assert code == 128 + signal.SIGINT
    assert err == f"stopped at iteration 6; continue with: python train.py --resume {out}\n"
    assert files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"] == 6
    assert signal.getsignal(signal.SIGINT) is handler and len(calls) == 6
    monkeypatch.setattr(train, "train_step", step)
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert_same_result(reference, out)
    assert_same_run(reference, out)


def test_second_ctrl_c_stops_at_once(tmp_path, capsys, monkeypatch):
    """A second SIGINT does what it would do without us (KeyboardInterrupt, now); the checkpoint on disk stays the
    last complete one."""
    step, calls = train.train_step, []

    def twice(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return step(*a, **kw)

    monkeypatch.setattr(train, "train_step", twice)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        main(["--out", out, *run_flags(save_every=0), "--quiet"], capsys)
    assert files.load_safe(out / files.CHECKPOINT, "checkpoint")["iter"] == 0
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_second_sigterm_does_not_hurry_a_run_but_a_ctrl_c_after_it_does():
    """SIGTERM twice (a cluster, or an experiment, signalling every process of a job) stops the run at its next
    iteration all the same: the second is not passed on at once to the handler that was there before (here one that
    records what reaches it; without us it would end the process, checkpoint or not). A Ctrl-C after a SIGTERM
    acts at once."""
    seen = []

    @tools.runtime.stop_on_signal
    def run(signals):
        for s in signals:
            os.kill(os.getpid(), s)
        return tools.runtime.signal_noted()

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        assert run([signal.SIGTERM, signal.SIGTERM]) == signal.SIGTERM
        assert seen == [signal.SIGTERM]   # once, after the run (too late for it), not at the second SIGTERM
        with pytest.raises(KeyboardInterrupt):
            run([signal.SIGTERM, signal.SIGINT])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_two_ctrl_c_that_python_hands_over_as_one_still_stop_at_once():
    """Two Ctrl-C during one long C call (a forward pass, a checkpoint being written) land in C twice, but Python
    calls the handler once for both: a handler that counts its own calls takes them for one and the run goes on to
    a graceful stop. Here the first signal's byte is put on the wakeup socket by hand (where C puts one byte per
    signal), then one signal is sent: the run must stop at once, as after any second Ctrl-C."""
    @tools.runtime.stop_on_signal
    def run(_):
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)                    # the socket on which stop_on_signal counts the signals
        os.write(fd, bytes([signal.SIGINT]))        # a Ctrl-C whose handler call Python merged into the next one's
        os.kill(os.getpid(), signal.SIGINT)
        return "not stopped"

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(None)
    assert signal.getsignal(signal.SIGINT) is handler and signal.set_wakeup_fd(-1) == -1 and tools.runtime.signal_noted() == 0


# ------------------------------------------------------------------------------------------------ --resume reads once

@pytest.mark.slow
def test_resume_reads_the_checkpoint_once(reference, tmp_path, capsys, monkeypatch):
    out, ckpt = checkpoint_copy(reference, tmp_path)   # iteration 40 of 40: the resumed run only evaluates
    load, reads = torch.load, []

    def counting_load(f, *a, **kw):
        reads.append(Path(f).name if isinstance(f, (str, os.PathLike)) else f)
        return load(f, *a, **kw)

    monkeypatch.setattr(torch, "load", counting_load)
    code, err = main(["--resume", out, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert reads.count(files.CHECKPOINT) == 1, reads


@pytest.mark.slow
def test_resume_of_a_run_saved_before_spl_cap_keeps_its_cap(reference, tmp_path):
    """A checkpoint saved before --spl-cap existed resumes with the cap those runs used (the most discrepant
    pixels), not with today's default, and without a missing-attribute traceback."""
    out, ckpt = checkpoint_copy(reference, tmp_path)
    saved = files.load_safe(ckpt, "checkpoint")
    assert saved["args"]["spl_cap"] == "random"                    # today's default, saved with the run
    del saved["args"]["spl_cap"]                                   # as an older run saved it
    files.save_atomic(saved, ckpt)
    args = files.resume_args(flags.build_parser().parse_args(["--resume", str(out)]))
    assert args.spl_cap == "discrepancy"


# ------------------------------------------------------------------------------------------------ several processes

def torchrun(tmp_path, *flags, timeout=180):
    """train.py under torchrun, 2 CPU processes (gloo). Returns (result, seconds, {rank: its stderr})."""
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "--redirects", "2",
           "--log-dir", str(logs), "train.py", *flags, "--device", "cpu", "--quiet"]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    seconds = time.time() - t0
    errs = {int(p.parent.name): p.read_text() for p in logs.rglob("stderr.log")}
    return r, seconds, errs


def assert_one_rank_failed_and_every_rank_stopped(r, seconds, errs, failed, *names):
    """The rank that failed printed one `error:` line naming `names` and exited 2; torchrun stopped the other one
    (SIGTERM: no traceback, no second message) and named the failed rank as the root cause; all within seconds."""
    assert r.returncode != 0
    assert sorted(errs) == [0, 1], (r.stderr[-3000:], errs)
    lines = {rank: [line for line in err.splitlines() if line.strip()] for rank, err in errs.items()}
    assert len(lines[failed]) == 1 and lines[failed][0].startswith("error: "), lines
    for name in names:
        assert str(name) in lines[failed][0], (name, lines)
    assert not [line for line in lines[1 - failed] if "error" in line.lower()], lines   # torchrun stopped it quietly
    assert f'File "{ROOT}' not in r.stdout + r.stderr + errs[0] + errs[1]    # no traceback from our code
    cause = r.stderr[r.stderr.index("Root Cause"):]                            # torchrun's report
    assert re.search(rf"rank\s*:\s*{failed}\b", cause) and re.search(r"exitcode\s*:\s*2\b", cause), r.stderr[-3000:]
    assert seconds < 90, seconds     # start-up included; a hang would last the collective's timeout (30 min)


@pytest.mark.slow
def test_torchrun_error_on_rank0_only_ends_every_rank(reference, tmp_path):
    """--out holding a run is refused by rank 0 (the one that writes) and by every rank, as one line (on_rank0):
    both exit 2, within seconds."""
    folder = checkpoint_copy(reference, tmp_path)[0]
    before = snapshot(folder)
    r, seconds, errs = torchrun(tmp_path, "--mode", "spl", "--iters", "2", *TINY, "--out", str(folder))
    assert r.returncode != 0 and sorted(errs) == [0, 1] and seconds < 90, (r.stderr[-3000:], errs)
    assert [e.strip() for e in errs.values()][0] == [e.strip() for e in errs.values()][1]   # the same one line
    assert all(e.strip().startswith("error: ") and str(folder) in e and "--resume" in e and "\n" not in e.strip()
               for e in errs.values()), errs
    assert snapshot(folder) == before


@pytest.mark.slow
def test_torchrun_error_mid_run_on_one_rank_ends_every_rank(fakes, tmp_path):
    """A broken val image that only rank 1 reads (evaluation splits val by rank): rank 1 stops with the dataset's
    message while rank 0 waits for it in the all-reduce of the confusion matrix; torchrun's agent stops rank 0 at
    once, which ends without a message of its own, and names rank 1 as the root cause."""
    gta, cs = fakes
    bad = truncate(sorted((cs / "leftImg8bit" / "val").rglob("*.png"))[1])      # val image 1: rank 1's
    r, seconds, errs = torchrun(tmp_path, *REAL, "--gta5-root", str(gta), "--cityscapes-root", str(cs),
                                "--out", str(tmp_path / "run"))
    assert_one_rank_failed_and_every_rank_stopped(r, seconds, errs, 1, bad)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_stop_is_announced_by_rank0_only(rank, capsys, monkeypatch):
    """Under torchrun a SIGTERM stops every rank; the 'stopped at iteration ...; continue with' line is printed
    once (rank 0's), and every rank exits 128 + the signal."""
    monkeypatch.setenv("RANK", rank)

    def stopped():
        raise Stopped(signal.SIGTERM, 7, "runs/x")

    with pytest.raises(SystemExit) as e:
        distributed.exit_cleanly(stopped)
    assert e.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err == ("stopped at iteration 7; continue with: python train.py --resume runs/x\n" if rank == "0" else "")
