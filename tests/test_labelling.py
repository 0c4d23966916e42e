"""Labeling only if required, measured (issue 12): what each bought label fixes (required_fraction), the paper's
staged schedule (warm-up A, then B on that A with A fixed, then select, then A with the labels), one warm-up and
one B shared by every run of a seed (--init-from), and the experiments of many real runs (experiments.py)."""
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
from tools import experiments  # noqa: E402
import labor  # noqa: E402
import selection  # noqa: E402
from tools import tables  # noqa: E402
import train  # noqa: E402
from tools import checkpoint as files  # noqa: E402
from tools import runtime  # noqa: E402
from tools import UsageError  # noqa: E402

# --schedule joint: these runs label at the iterations they choose (--select-at)
TINY = ["--schedule", "joint", "--iters", "8", "--n-source", "8", "--n-target", "6", "--n-val", "4", "--size", "32",
        "64", "--batch-size", "2", "--width", "8", "--log-every", "2", "--threads", "1"]
STAGED = ["--schedule", "staged", "--warmup", "4", "--selector-iters", "4"]


def run_mode(mode, out, *extra):
    args = train.get_args(["--mode", mode, "--out", str(out), *TINY, *extra])
    args.quiet = True
    return train.run(args)


def weights(folder):
    return torch.load(Path(folder) / "model_A.pt", weights_only=True)["A"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def params(module):
    """Parameters only (B's batch-norm statistics follow its own training batches)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


# ------------------------------------------------------------------------------------------ required_fraction

def test_required_counter_matches_a_hand_count():
    """Six bought pixels of one image: A is wrong on three (one of them unscored: 255 is never counted)."""
    counter = selection.RequiredCounter(3)
    pred_a = torch.tensor([0, 0, 1, 2, 2, 1])
    label = torch.tensor([0, 1, 1, 0, 2, 255])
    counter.add(pred_a, label)
    s = counter.summary(["a", "b", "c"])
    # scored: 5 pixels (labels 0, 1, 1, 0, 2); A wrong at positions 1 (0 vs 1) and 3 (2 vs 0): 2 of 5
    assert s["bought_pixels"] == 5 and s["a_wrong_pixels"] == 2
    assert s["required_fraction"] == pytest.approx(2 / 5)
    assert s["per_class"]["a"] == {"share_of_bought": pytest.approx(2 / 5), "a_error_rate": pytest.approx(1 / 2)}
    assert s["per_class"]["b"] == {"share_of_bought": pytest.approx(2 / 5), "a_error_rate": pytest.approx(1 / 2)}
    assert s["per_class"]["c"] == {"share_of_bought": pytest.approx(1 / 5), "a_error_rate": 0.0}


class ConstantA(torch.nn.Module):
    """A model A that predicts class k everywhere (logits (B, C, H/8, W/8))."""

    def __init__(self, k, num_classes):
        super().__init__()
        self.k, self.c = k, num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(len(x), self.c, x.shape[-2] // 8, x.shape[-1] // 8)
        logits[:, self.k] = 1.0
        return logits, logits


def test_select_round_required_fraction_is_a_error_rate_on_bought_pixels():
    """Random selection under an A that always predicts 'road': required_fraction is the share of bought pixels
    whose revealed label is not road, counted here by hand from the labels the annotator revealed."""
    args = train.get_args(["--mode", "random", "--budget", "0.1", *TINY])
    runtime.setup(args)
    _, target, _, classes = train.build_data(args)
    images = data.ImagesOnly(target)
    road = classes.index("road")
    annotator = selection.Annotator(lambda i: target[i][1])
    revealed = selection.RevealedLabels(tuple(images[0][0].shape[-2:]))
    net = {"A": ConstantA(road, len(classes))}
    _, required, a_wrong = train.select_round(args, net, images, annotator, revealed, 0, 1, classes)
    labels = torch.cat([lab[lab != 255] for lab in (revealed.labels[i].long() for i in revealed.labels)])
    assert required["bought_pixels"] == len(labels) > 0
    assert required["required_fraction"] == pytest.approx(float((labels != road).float().mean()))
    assert required["per_class"]["road"]["a_error_rate"] == 0.0
    assert set(a_wrong) == {0, 1, 2}  # the figure rows; each marks bought non-road pixels only
    for i, wrong in a_wrong.items():
        lab = revealed.batch([i])[0]
        assert torch.equal(wrong, (lab != 255) & (lab != road))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spl", "ppl", "random", "entropy"])
def test_every_selecting_mode_records_its_rounds(mode, tmp_path, capsys):
    extra = ["--budget", "0.05"] if mode != "ppl" else []  # SPL capped: its mask at init is the whole image
    args = train.get_args(["--mode", mode, "--out", str(tmp_path / mode), *TINY, "--select-at", "2", "5", *extra])
    train.run(args)
    m = json.loads((tmp_path / mode / "metrics.json").read_text())
    assert len(m["selection_rounds"]) == 2
    for r in m["selection_rounds"]:
        assert 0 <= r["required_fraction"] <= 1
        assert set(r["per_class"]) == set(data.SYNTHETIC_CLASSES)
        shares = [c["share_of_bought"] for c in r["per_class"].values()]
        assert sum(shares) == pytest.approx(1.0 if r["bought_pixels"] else 0.0)  # SPL's mask may be empty
    bought = sum(r["bought_pixels"] for r in m["selection_rounds"])
    assert bought > 0
    assert m["required_fraction"] == pytest.approx(sum(r["a_wrong_pixels"] for r in m["selection_rounds"]) / bought)
    out = capsys.readouterr().out + capsys.readouterr().err
    assert "labelling round 2/2" in out and "required_fraction" in out


# ------------------------------------------------------------------------------------------ staged schedule

def staged_args(mode, out, *extra):
    args = train.get_args(["--mode", mode, "--out", str(out), *TINY, *STAGED, *extra])
    args.quiet = True
    return args


def test_staged_selector_starts_from_a_and_leaves_a_fixed(tmp_path):
    """Stage 1b with --selector-init a: B's backbone is A's (checked with lr 0, so nothing moves), and A's weights
    and batch-norm statistics are the same before and after B's training."""
    args = staged_args("spl", tmp_path / "r")
    args.lr = 0.0  # nothing moves (the command line refuses --lr 0)
    runtime.setup(args)
    source, target, _, classes = train.build_data(args)
    net = train.build_models(args, len(classes))
    opt = train.build_optimisers(args, net)
    a_before = {k: v.clone() for k, v in net["A"].state_dict().items()}
    assert not same_weights(params(net["B"].backbone), params(net["A"].backbone))
    state = {"selector_history": []}
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    theta = torch.full((len(classes),), labor.IAST_THETA0)
    train.train_selector(args, net, opt, scaler, theta, data.ImagesOnly(target), state)
    assert same_weights(params(net["B"].backbone), params(net["A"].backbone))
    assert same_weights(net["A"].state_dict(), a_before)
    assert net["A"].training  # back to training mode for stage 1c
    assert len(state["selector_history"]) == 2  # 4 iterations, logged every 2


def test_staged_scratch_keeps_b_own_start(tmp_path):
    args = staged_args("spl", tmp_path / "r", "--selector-init", "scratch")
    args.lr = 0.0
    runtime.setup(args)
    _, target, _, classes = train.build_data(args)
    net = train.build_models(args, len(classes))
    b_before = params(net["B"].backbone)
    train.train_selector(args, net, train.build_optimisers(args, net), torch.amp.GradScaler("cpu", enabled=False),
                         torch.full((len(classes),), labor.IAST_THETA0), data.ImagesOnly(target),
                         {"selector_history": []})
    assert same_weights(params(net["B"].backbone), b_before)
    assert not same_weights(params(net["B"].backbone), params(net["A"].backbone))


@pytest.mark.slow
def test_staged_run_labels_once_after_the_warmup(tmp_path):
    m = run_mode("spl", tmp_path / "r", *STAGED)
    assert m["schedule"] == "staged" and len(m["selection_rounds"]) == 1
    assert m["labelled_pixels"] > 0 and m["stage_seconds"]["selector"] > 0
    assert [h["selector_iter"] for h in m["selector_history"]] == [2, 4]
    assert "loss_pseudo" not in m["history"][-1]  # B does not train beside A in the staged schedule


@pytest.mark.slow
def test_runs_from_another_runs_warm_up_and_b_are_the_runs_that_train_their_own(tmp_path):
    """--init-from RUN_DIR: a staged run starts from the warm-up (and the trained B) another run of its seed saved in
    warmup.pt; the results are bit for bit those of a run that trains its own. B is taken only when B's settings
    agree (else trained anew from the warm-up); a warm-up of other settings or another seed is refused by name."""
    run_mode("spl", tmp_path / "spl-own", *STAGED)
    run_mode("random", tmp_path / "random-own", *STAGED, "--budget", "0.05")
    run_mode("ppl", tmp_path / "ppl-own", *STAGED, "--lambda-dis", "0.2")
    first = run_mode("ppl", tmp_path / "ppl-first", *STAGED)      # trains the warm-up and B: its warmup.pt
    assert first["shared_warmup"] is None and (tmp_path / "ppl-first" / files.WARMUP).is_file()
    init = ["--init-from", str(tmp_path / "ppl-first")]
    spl = run_mode("spl", tmp_path / "spl-init", *STAGED, *init)
    rnd = run_mode("random", tmp_path / "random-init", *STAGED, *init, "--budget", "0.05")
    other_b = run_mode("ppl", tmp_path / "ppl-init", *STAGED, *init, "--lambda-dis", "0.2")   # B of its own
    assert spl["shared_warmup"] == str(tmp_path / "ppl-first" / files.WARMUP) and rnd["shared_warmup"]
    assert not (tmp_path / "spl-init" / files.WARMUP).exists()     # only a run that trained its warm-up shares it
    for name in ("spl", "random", "ppl"):
        assert same_weights(weights(tmp_path / f"{name}-own"), weights(tmp_path / f"{name}-init")), name
    own = json.loads((tmp_path / "spl-own" / "metrics.json").read_text())
    assert own["labelled_pixels"] == spl["labelled_pixels"] and own["miou"] == spl["miou"]
    assert spl["selector_history"] == first["selector_history"] != other_b["selector_history"]
    assert own["history"] == spl["history"]                       # the warm-up's log comes with it
    for extra, message in ((["--lr", "0.02"], r"other settings \(--lr 0.01 -> 0.02\)"),
                           (["--seed", "1"], r"other settings \(--seed 0 -> 1\)")):
        with pytest.raises(UsageError, match=message):
            run_mode("random", tmp_path / f"refused{extra[1]}", *STAGED, *init, "--budget", "0.05", *extra)
    with pytest.raises(UsageError, match="--init-from"):     # RIPU as published trains from its own start
        run_mode("ripu", tmp_path / "ripu", *STAGED, *init)
    # killed in its labelling round, a run that came with B trained resumes without training B again
    real = train.select_round

    def killed(*a, **k):
        raise KeyboardInterrupt
    train.select_round = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            run_mode("spl", tmp_path / "spl-killed", *STAGED, *init)
    finally:
        train.select_round = real
    args = train.get_args(["--resume", str(tmp_path / "spl-killed")])
    args.quiet = True
    resumed = train.run(args)
    assert same_weights(weights(tmp_path / "spl-own"), weights(tmp_path / "spl-killed"))
    assert resumed["selector_history"] == first["selector_history"] and resumed["miou"] == own["miou"]


@pytest.mark.slow
def test_staged_run_killed_in_the_selector_stage_resumes_exactly(tmp_path, monkeypatch, capsys):
    """A crash while B trains: --resume restarts stage 1b from the checkpoint at the end of the warm-up and ends
    exactly where an uninterrupted run ends."""
    ref = run_mode("spl", tmp_path / "ref", *STAGED)
    real_step = train.selector_step
    calls = [0]

    def crash(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # the kill
        return real_step(*a, **k)

    monkeypatch.setattr(train, "selector_step", crash)
    with pytest.raises(KeyboardInterrupt):
        run_mode("spl", tmp_path / "run", *STAGED)
    monkeypatch.setattr(train, "selector_step", real_step)
    assert files.load_safe(tmp_path / "run" / files.CHECKPOINT, "checkpoint")["iter"] == 4
    args = train.get_args(["--resume", str(tmp_path / "run")])
    args.quiet = True
    resumed = train.run(args)
    assert same_weights(weights(tmp_path / "ref"), weights(tmp_path / "run"))
    assert resumed["labelled_pixels"] == ref["labelled_pixels"] and resumed["miou"] == ref["miou"]


# ------------------------------------------------------------------------------------------ experiments.py

def experiment(*words):
    """python -m tools.experiments WORDS with the tiny staged settings (real runs, in processes of their own)."""
    experiments.main([*words, *TINY, *STAGED, "--quiet"])


@pytest.mark.slow
def test_sweep_writes_curve_and_spends_each_budget(tmp_path):
    experiment("sweep", "--budgets", "0.05", "--out", str(tmp_path), "--jobs", "2")
    for f in ("sweep.md", "sweep.json", "budget_curve.png"):
        assert (tmp_path / f).exists(), f
    saved = json.loads((tmp_path / "sweep.json").read_text())
    got = {(r["selector"], r["budget"]): r for r in saved["summary"]}
    expected = {("spl (whole mask)", None), ("adaptseg", None), ("supervised", None)} | {
        (label, 0.05) for _, label, *_ in tables.SWEEP}
    assert set(got) == expected and len(saved["runs"]) == len(expected)
    hw = 32 * 64
    for b in (0.05,):
        for s in ("random", "entropy", "margin"):  # exactly the budget in every image
            assert got[(s, b)]["points_per_image"] == round(b * hw), (s, b)
        assert got[("spl", b)]["points_per_image"] <= round(b * hw)  # capped: at most its mask
        assert 0 < got[("ppl", b)]["points_per_image"] <= round(b * hw)  # as many points, if the mask holds them
        assert 0 < got[("ppl, cell 8", b)]["points_per_image"] <= round(b * hw)  # ... and if its blocks hold them
        assert got[("ripu points", b)]["points_per_image"] <= round(b * hw)  # ... and if its windows leave room
        assert 0 < got[("ripu regions", b)]["points_per_image"] <= 9 * math.ceil(b * hw / 9)  # 3x3 boxes, some clipped
    assert got[("adaptseg", None)]["labelled_fraction"] == 0 and got[("supervised", None)]["labelled_fraction"] == 1
    # one warm-up and one B for the seed, trained by SPL's whole-mask run; every other run but supervised starts there
    assert sorted(p.parent.name for p in tmp_path.glob(f"*/{files.WARMUP}")) == ["spl-seed0"]
    for r in saved["runs"]:
        warmup = json.loads((tmp_path / r["run"] / "metrics.json").read_text())["shared_warmup"]
        assert (warmup is None) == (r["selector"] in ("spl (whole mask)", "supervised")), r
    # the sweep's files again from its runs' metrics.json alone, byte for byte
    before = {f: (tmp_path / f).read_bytes() for f in ("sweep.md", "sweep.json", "budget_curve.png")}
    (tmp_path / "sweep.md").unlink()
    experiments.main(["regenerate", str(tmp_path)])
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    # the same command again runs nothing: every run has finished with these settings
    a, passed = experiments.build_parser().parse_known_args(["sweep", "--budgets", "0.05", "--out", str(tmp_path),
                                                              *TINY, *STAGED])
    assert experiments.plan_stages(a, passed) == []


@pytest.mark.slow
def test_an_experiment_gives_with_two_jobs_what_it_gives_with_one(tmp_path):
    """--jobs 2 runs two runs at a time (one thread each: TINY has --threads 1); the sweep is the one the same
    experiment writes run by run."""
    for jobs in (1, 2):
        experiment("sweep", "--budgets", "0.05", "--selectors", "random", "spl", "--out", str(tmp_path / f"jobs{jobs}"),
                   "--jobs", str(jobs))
    one, two = (json.loads((tmp_path / f"jobs{j}" / "sweep.json").read_text()) for j in (1, 2))
    assert two == one and len(one["runs"]) == 5


@pytest.mark.slow
def test_noise_experiment_end_to_end(tmp_path):
    """experiments.py noise with real (tiny) runs: the noisy annotator changes labels, not what is bought (SPL's
    mask and random's pixels at P = 0.5 are those of P = 0), reuses the seed's warm-up and B, and counts its wrong
    labels."""
    experiment("noise", "--noise-levels", "0", "0.5", "--noise-band", "2", "--out", str(tmp_path))
    summary = {(e["level"], e["row"]): e for e in json.loads((tmp_path / "noise.json").read_text())["summary"]}
    for row in ("spl", "random", "ripu regions"):
        assert summary[0.5, row]["labelled_fraction"] == summary[0.0, row]["labelled_fraction"] > 0
        assert summary[0.0, row]["wrong_share"] == 0
    assert summary[0.0, "random"]["labelled_fraction"] == pytest.approx(     # random buys SPL's fraction
        summary[0.0, "spl"]["labelled_fraction"], abs=1 / (32 * 64))
    assert summary[0.5, "spl"]["wrong_share"] > 0
    clean, noisy = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("spl-seed0",
                                                                                           "spl-noise0.5-seed0"))
    assert noisy["shared_warmup"] and noisy["selector_history"] == clean["selector_history"]
    assert noisy["annotator_wrong_labels"] > 0 and noisy["annotator_noise"] == 0.5


@pytest.mark.slow
def test_slurm_path_runs_the_commands_it_submits(tmp_path):
    """The --slurm path without a cluster: submitit's debug executor runs each job of the two job arrays in this
    process (here: a `python train.py ...` each), stage 1 before stage 2; the sweep is then regenerated."""
    a, passed = experiments.build_parser().parse_known_args(["sweep", "--budgets", "0.05", "--selectors", "random",
                                                             "spl", "--slurm", "debug-partition", "--out",
                                                             str(tmp_path), *TINY, *STAGED, "--quiet"])
    stages = experiments.plan_stages(a, passed)
    jobs = experiments.submit_slurm(stages, a, tmp_path, cluster="debug")
    assert [len(stage) for stage in jobs] == [2, 3]
    for stage in jobs:
        for job in stage:
            job.result()
    summary, _ = tables.regenerate(tmp_path)["sweep"]
    assert len(summary) == 5
    assert json.loads((tmp_path / "random-budget0.05-seed0" / "metrics.json").read_text())["shared_warmup"]


def test_defaults_are_the_staged_schedule_on_the_recalibrated_benchmark():
    """Chosen on the tuning split (README): the staged schedule, B from A, --thing-shift 0, --lambda-dis 0.05. The
    staged schedule labels once, at the end of the warm-up; the joint one, by default, half-way (--select-at 0.5)."""
    args = train.get_args([])
    assert (args.schedule, args.selector_init, args.thing_shift, args.select_at) == ("staged", "a", 0.0, None)
    assert (args.lambda_dis, args.spl_cap) == (0.05, "random")
    assert train.select_iterations(args) == [250]                     # --warmup 0.5 of --iters 500
    joint = train.get_args(["--schedule", "joint", "--iters", "40", "--select-at", "0.25", "30"])
    assert train.select_iterations(joint) == [10, 30]
    assert train.select_iterations(train.get_args(["--schedule", "joint"])) == [250]


@pytest.mark.slow
def test_the_printed_stages_run_in_a_plain_pipeline(tmp_path):
    """The README's pipeline: `--stage 1` then `--stage 2`, each piped to xargs -P 2, then regenerate. Stage 1 trains
    what stage 2 starts from (here the first selector's run: margin and random need no B), so every run of stage 2
    finds its --init-from folder, and the sweep's files are written from the runs."""
    words = ["python", "-m", "tools.experiments", "sweep", "--budgets", "0.05", "--selectors", "random", "margin",
             "--out", str(tmp_path), *TINY, *STAGED]
    for stage in ("1", "2"):
        cmd = f"{shlex.join(words)} --stage {stage} | xargs -d '\\n' -P 2 -I CMD sh -c CMD"
        done = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.json"))
    assert runs == ["adaptseg-seed0", "margin-budget0.05-seed0", "random-budget0.05-seed0", "supervised-seed0"]
    shared = json.loads((tmp_path / "margin-budget0.05-seed0" / "metrics.json").read_text())["shared_warmup"]
    assert shared == str(tmp_path / "random-budget0.05-seed0" / files.WARMUP)   # started from stage 1's warm-up
    assert json.loads((tmp_path / "random-budget0.05-seed0" / "metrics.json").read_text())["selector_history"] == []
    subprocess.run([sys.executable, "-m", "tools.experiments", "regenerate", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    assert (tmp_path / "sweep.md").is_file()
