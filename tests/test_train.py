"""train.py end to end with tiny settings: every mode runs, writes what it promises, spends the budget its mode
allows, and reads target-train labels only through the annotator."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import data
import selection
import synthetic
import train

ROOT = Path(__file__).resolve().parents[1]
# Small enough for seconds on a CPU. --schedule joint: these runs label at the iterations they choose (--select-at);
# the default, staged schedule has its own tests in tests/test_labelling.py.
SMALL = ["--iters", "6", "--n-source", "8", "--n-target", "6", "--n-val", "4", "--size", "32", "64", "--batch-size",
         "2", "--width", "8", "--log-every", "3", "--threads", "1"]
TINY = ["--schedule", "joint", *SMALL]
FIELDS = {"mode", "seed", "miou", "per_class_iou", "labelled_fraction", "points_per_image", "stage_seconds",
          "iters_per_second", "peak_memory_mb", "wall_seconds", "history", "annotation_seconds", "annotator_noise",
          "annotator_wrong_labels"}


def run_mode(mode, out, *extra):
    args = train.get_args(["--mode", mode, "--out", str(out), *TINY, *extra])
    args.quiet = True
    return train.run(args)


def test_frozen_discriminator_passes_the_same_gradient_to_its_input_and_none_to_its_weights():
    """A's step through D (Eq. 3): with D frozen, the gradient reaching D's input (so A) is the one an unfrozen D
    passes, D's weights get none, and afterwards each weight requires grad as before (a frozen one stays so)."""
    import models
    torch.manual_seed(0)
    D = models.FCDiscriminator(3, ndf=4)
    D.net[0].bias.requires_grad_(False)
    p = torch.rand(2, 3, 64, 64, requires_grad=True)                                 # (B, C, H, W)
    D(p).pow(2).sum().backward()
    grad_unfrozen = p.grad.clone()
    D.zero_grad(set_to_none=True)
    p.grad = None
    with train.frozen(D) as (bare,):
        loss = bare(p).pow(2).sum()
    loss.backward()  # after the block, as in train_step
    assert torch.equal(p.grad, grad_unfrozen)
    assert all(w.grad is None for w in D.parameters())
    assert [w.requires_grad for w in D.parameters()] == [True, False] + [True] * 8


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["source_only", "adaptseg", "spl", "ppl", "ppl-cell8", "random", "entropy",
                                  "margin", "supervised", "ripu_regions", "ripu_points", "ripu"])
def test_every_mode_runs_and_respects_its_budget(mode, tmp_path):
    """Each mode trains, evaluates, writes metrics.json (with every promised field), a checkpoint, the
    selection and figures; the revealed budget is what the mode allows (ppl-cell8: --mode ppl --ppl-cell 8)."""
    extra = {"random": ["--budget", "0.05"], "entropy": ["--budget", "0.05"], "margin": ["--budget", "0.05"],
             # at initialisation the two heads disagree almost everywhere: a mask big enough to test budgets
             "spl": ["--select-at", "0"], "ppl": ["--select-at", "0"],
             "ppl-cell8": ["--select-at", "0", "--ppl-cell", "8"], "ripu_regions": ["--budget", "0.05"],
             "ripu_points": ["--select-at", "0"], "ripu": ["--budget", "0.05", "--iters", "20"]}.get(mode, [])
    cell = mode == "ppl-cell8"
    mode = "ppl" if cell else mode
    m = run_mode(mode, tmp_path / mode, *extra)
    saved = json.loads((tmp_path / mode / "metrics.json").read_text())
    assert FIELDS <= set(saved)
    assert saved["miou"] == pytest.approx(m["miou"]) and 0.0 <= m["miou"] <= 1.0
    assert len(m["per_class_iou"]) == len(data.SYNTHETIC_CLASSES)
    for f in ("model_A.pt", "selection.pt", "predictions.png"):
        assert (tmp_path / mode / f).exists(), f
    hw = 32 * 64
    sel = torch.load(tmp_path / mode / "selection.pt", weights_only=True)
    if selection.modes()[mode].selector is not None:  # what the labels cost a person (cost.py), per image
        assert m["annotation_seconds"]["kind"] == selection.modes()[mode].selector.kind
        assert m["annotation_seconds"]["per_image"] == pytest.approx(sum(m["annotation_seconds"]["per_class"].values()))
        assert m["annotation_seconds"]["per_image"] > 0 and m["annotator_wrong_labels"] == 0
    else:
        assert m["annotation_seconds"] is None
    if mode in ("source_only", "adaptseg"):
        assert m["labelled_pixels"] == 0 and len(sel["label"]) == 0
    elif mode == "supervised":
        assert m["labelled_fraction"] == 1.0 and len(sel["label"]) == 6 * hw
    elif mode in ("random", "entropy", "margin"):
        assert m["points_per_image"] == round(0.05 * hw)      # exactly the budget, in every image
        assert len(sel["label"]) == 6 * round(0.05 * hw)
    elif mode == "ppl":  # 40 points per image, each one pixel; with --ppl-cell 8 one per class in an 8x8 block
        assert len(sel["label"]) == m["labelled_pixels"] == round(6 * m["points_per_image"])
        block = sel["image_index"] * 1000 + sel["pixel_index"] // 64 // 8 * 8 + sel["pixel_index"] % 64 // 8
        if cell:
            assert 0 < m["points_per_image"] <= 40
            assert torch.bincount(block).max() <= len(data.SYNTHETIC_CLASSES)
        else:  # the paper's rule: the nearest points, wherever they lie (side by side: some block holds more)
            assert m["points_per_image"] == 40 and torch.bincount(block).max() > len(data.SYNTHETIC_CLASSES)
    elif mode in ("ripu_regions", "ripu"):  # whole 3x3 boxes: at most ceil(H W budget / 9) per image in all
        rounds = len(m["selection_rounds"])
        assert rounds == (5 if mode == "ripu" else 1)
        assert 0 < m["points_per_image"] <= 9 * math.ceil(hw * 0.05 / 9)   # (the budget's boxes, over all rounds)
    elif mode == "ripu_points":  # 40 single pixels per image, each alone in its 3x3 window (k = 1 at width 64)
        assert m["points_per_image"] == 40
    elif mode == "spl":
        assert m["labelled_pixels"] > 0
        assert m["labelled_pixels"] == len(sel["label"])      # what the annotator counted is what was stored
    if mode in ("spl", "ppl", "random", "entropy"):
        assert (tmp_path / mode / "selection.png").exists()


@pytest.mark.slow
def test_target_labels_only_through_the_annotator(tmp_path, monkeypatch):
    """Poison every target-train label outside the pixels SPL selected: the run must not change at all, so the
    trainer read nothing else of target-train ground truth."""
    run_mode("spl", tmp_path / "clean", "--select-at", "0")
    sel = torch.load(tmp_path / "clean" / "selection.pt", weights_only=True)
    keep = torch.zeros(6, 32 * 64, dtype=torch.bool)
    keep[sel["image_index"], sel["pixel_index"]] = True
    original = synthetic.SyntheticStreets.__getitem__

    def poisoned(self, i):
        x, y = original(self, i)
        if self.domain == "target" and self.split == "train":
            y = y.clone().flatten()
            y[~keep[i]] = (y[~keep[i]] + 1) % 9          # every unselected label is wrong
            y = y.reshape(x.shape[-2:])
        return x, y

    monkeypatch.setattr(synthetic.SyntheticStreets, "__getitem__", poisoned)
    run_mode("spl", tmp_path / "poisoned", "--select-at", "0")
    a = torch.load(tmp_path / "clean" / "model_A.pt", weights_only=True)["A"]
    b = torch.load(tmp_path / "poisoned" / "model_A.pt", weights_only=True)["A"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "poisoned" / "metrics.json").read_text())
    assert ma["labelled_pixels"] == mb["labelled_pixels"] and ma["miou"] == mb["miou"]


@pytest.mark.slow
def test_poison_detector_can_fail(tmp_path, monkeypatch):
    """The poisoning test above is able to fail: poisoning a selected pixel's label does change the run."""
    run_mode("spl", tmp_path / "clean", "--select-at", "0")
    original = synthetic.SyntheticStreets.__getitem__

    def poisoned(self, i):
        x, y = original(self, i)
        if self.domain == "target" and self.split == "train":
            y = (y + 1) % 9                               # every label wrong, selected ones included
        return x, y

    monkeypatch.setattr(synthetic.SyntheticStreets, "__getitem__", poisoned)
    run_mode("spl", tmp_path / "poisoned", "--select-at", "0")
    a = torch.load(tmp_path / "clean" / "model_A.pt", weights_only=True)["A"]
    b = torch.load(tmp_path / "poisoned" / "model_A.pt", weights_only=True)["A"]
    assert not all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_several_rounds_split_the_budget(tmp_path):
    """Two labelling rounds for random at budget 0.05: each round reveals half, never the same pixel twice."""
    m = run_mode("random", tmp_path / "r", "--budget", "0.05", "--select-at", "2", "4")
    per_round = round(0.025 * 32 * 64)
    assert m["points_per_image"] == 2 * per_round
    sel = torch.load(tmp_path / "r" / "selection.pt", weights_only=True)
    assert len(sel["label"]) == 6 * 2 * per_round  # stored pixels are distinct: no pixel bought twice


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--budget", "1.5"], "--budget"),
    (["--budget", "0"], "--budget"),
    (["--points", "0"], "--points"),
    (["--mode", "bogus"], "unknown --mode"),
    (["--select-at", "100"], "--select-at"),
    (["--data", "gta5-cityscapes"], "--gta5-root"),
])
def test_bad_flags_give_one_clear_error(flags, message, tmp_path):
    """A user mistake prints one 'error: ...' line naming the flag and exits with code 2, no traceback."""
    cmd = [sys.executable, "train.py", "--mode", "spl", "--out", str(tmp_path / "x"), *TINY, *flags]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_existing_run_is_never_overwritten(tmp_path):
    run_mode("source_only", tmp_path / "run")
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(train.UsageError, match="already holds"):
        run_mode("source_only", tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def readme_train_commands():
    """The `python train.py ...` lines of the README's shell blocks."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line.startswith("python train.py") and "gta5-cityscapes" not in line
            and "--benchmark" not in line]


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    """Every `python train.py` command of the README runs as written, with tiny settings appended."""
    commands = readme_train_commands()
    assert any(c.startswith("python train.py --mode spl") for c in commands)
    for i, c in enumerate(commands):
        cmd = [sys.executable] + c.split()[1:] + SMALL + ["--out", str(tmp_path / f"cmd{i}")]  # its own schedule
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{c}\n{r.stderr[-2000:]}"


@pytest.mark.slow
def test_at_a_glance_figure_from_a_tiny_run_folder(tmp_path, capsys):
    """`python figures.py at-a-glance RUN_DIR` draws one target image through the method from a finished SPL run:
    the record its labelling round kept is consistent (the mask is where the heads' argmax differ, PPL's points lie
    in it, 40 of them), the PNG is written, and a run without B is refused with one line."""
    from tools import figures
    run_mode("spl", tmp_path / "spl", "--select-at", "0")
    g = torch.load(tmp_path / "spl" / "selection.pt", weights_only=True)["glance"]
    assert g["index"] == figures.GLANCE_IMAGE and g["pred_a"].shape == g["mask"].shape == (32, 64)
    assert torch.equal(g["mask"], g["head1"] != g["head2"])
    assert g["mask"].any() and not (g["ppl"] & ~g["mask"]).any() and int(g["ppl"].sum()) == 40
    figures.main(["at-a-glance", str(tmp_path / "spl"), "--out", str(tmp_path / "glance.png")])
    assert (tmp_path / "glance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_mode("random", tmp_path / "random", "--budget", "0.05")
    with pytest.raises(SystemExit) as e:
        figures.main(["at-a-glance", str(tmp_path / "random")])
    assert e.value.code == 2 and "spl or ppl run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_noisy_annotator_is_recorded_and_changes_only_the_labels(tmp_path):
    """--annotator-noise: the run records how many labels the annotator got wrong; it buys the same pixels as the
    perfect annotator (selection does not see labels), and only labels near class boundaries differ."""
    clean = run_mode("random", tmp_path / "clean", "--budget", "0.2")
    noisy = run_mode("random", tmp_path / "noisy", "--budget", "0.2", "--annotator-noise", "0.5")
    a, b = (torch.load(tmp_path / d / "selection.pt", weights_only=True) for d in ("clean", "noisy"))
    assert torch.equal(a["pixel_index"], b["pixel_index"]) and torch.equal(a["image_index"], b["image_index"])
    differ = int((a["label"] != b["label"]).sum())
    assert noisy["annotator_noise"] == 0.5 and noisy["annotator_wrong_labels"] == differ > 0
    assert clean["annotator_wrong_labels"] == 0
