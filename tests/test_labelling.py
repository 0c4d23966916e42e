"""Labeling only if required, measured (issue 12): what each bought label fixes (required_fraction), the paper's
staged schedule (warm-up A, then B on that A with A fixed, then select, then A with the labels), one warm-up and
one B shared by every run of a seed, and the budget sweep."""
import argparse
import json
import math
import pickle
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import experiments  # noqa: E402
import labor  # noqa: E402
import runs  # noqa: E402
import selection  # noqa: E402
import train  # noqa: E402

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
    runs.setup_runtime(args)
    _, target, _, classes = train.build_data(args)
    images = data.ImagesOnly(target)
    road = classes.index("road")
    annotator = selection.Annotator(lambda i: target[i][1])
    revealed = selection.RevealedLabels(tuple(images[0][0].shape[-2:]))
    net = {"A": ConstantA(road, len(classes))}
    _, required, a_wrong = train.select_round(args, net, images, annotator, revealed, 0, 1, 0.1, classes)
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
    runs.setup_runtime(args)
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
    runs.setup_runtime(args)
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
def test_shared_warmup_and_selector_give_the_same_runs(tmp_path):
    """Every run of a seed may reuse the warm-up and B that another run saved in --shared-dir: the results are
    bit for bit those of a run that trains its own."""
    shared = ["--shared-dir", str(tmp_path / "shared")]
    run_mode("spl", tmp_path / "spl-own", *STAGED)
    run_mode("random", tmp_path / "random-own", *STAGED, "--budget", "0.05")
    first = run_mode("ppl", tmp_path / "ppl-first", *STAGED, *shared)      # trains and shares warm-up and B
    assert first["shared_warmup"] is None
    assert len(list((tmp_path / "shared").glob("warmup-seed0-*.pt"))) == 1
    assert len(list((tmp_path / "shared").glob("selector-seed0-*.pt"))) == 1
    spl = run_mode("spl", tmp_path / "spl-shared", *STAGED, *shared)
    rnd = run_mode("random", tmp_path / "random-shared", *STAGED, *shared, "--budget", "0.05")
    assert spl["shared_warmup"] and rnd["shared_warmup"]
    for name in ("spl", "random"):
        assert same_weights(weights(tmp_path / f"{name}-own"), weights(tmp_path / f"{name}-shared")), name
    own = json.loads((tmp_path / "spl-own" / "metrics.json").read_text())
    assert own["labelled_pixels"] == spl["labelled_pixels"] and own["miou"] == spl["miou"]
    # another seed shares nothing with seed 0
    other = run_mode("random", tmp_path / "random-seed1", *STAGED, *shared, "--budget", "0.05", "--seed", "1")
    assert other["shared_warmup"] is None


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
    assert runs.load_safe(tmp_path / "run" / runs.CHECKPOINT, "checkpoint")["iter"] == 4
    args = train.get_args(["--resume", str(tmp_path / "run")])
    args.quiet = True
    resumed = train.run(args)
    assert same_weights(weights(tmp_path / "ref"), weights(tmp_path / "run"))
    assert resumed["labelled_pixels"] == ref["labelled_pixels"] and resumed["miou"] == ref["miou"]


# ------------------------------------------------------------------------------------------ the sweep

@pytest.mark.slow
def test_sweep_writes_curve_and_spends_each_budget(tmp_path):
    args = train.get_args(["--mode", "sweep", "--out", str(tmp_path), *TINY, *STAGED,
                           "--budgets", "0.01", "0.05", "--seeds", "0"])
    args.quiet = True
    summary = train.run_sweep(args)
    for f in ("sweep.md", "sweep.json", "budget_curve.png"):
        assert (tmp_path / f).exists(), f
    got = {(r["selector"], r["budget"]): r for r in summary}
    expected = {("spl (whole mask)", None), ("adaptseg", None), ("supervised", None)} | {
        (s, b) for s, *_ in experiments.SWEEP_SELECTORS for b in (0.01, 0.05)}
    assert set(got) == expected
    hw = 32 * 64
    for b in (0.01, 0.05):
        for s in ("random", "entropy"):  # exactly the budget in every image
            assert got[(s, b)]["points_per_image"] == round(b * hw), (s, b)
        assert got[("spl", b)]["points_per_image"] <= round(b * hw)  # capped: at most its mask
        assert 0 < got[("ppl", b)]["points_per_image"] <= round(b * hw)  # as many points, if the mask holds them
        assert 0 < got[("ppl, cell 8", b)]["points_per_image"] <= round(b * hw)  # ... and if its blocks hold them
        assert got[("ripu points", b)]["points_per_image"] <= round(b * hw)  # ... and if its windows leave room
        assert 0 < got[("ripu regions", b)]["points_per_image"] <= 9 * math.ceil(b * hw / 9)  # 3x3 boxes, some clipped
    assert got[("adaptseg", None)]["labelled_fraction"] == 0 and got[("supervised", None)]["labelled_fraction"] == 1
    # one warm-up and one B for the seed, shared by every run
    assert len(list((tmp_path / "shared").glob("warmup-*.pt"))) == 1
    assert len(list((tmp_path / "shared").glob("selector-*.pt"))) == 1
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert len(saved["runs"]) == len(expected)
    # the sweep's files again from its runs' metrics.json alone (python experiments.py regenerate FOLDER)
    md = (tmp_path / "sweep.md").read_text()
    (tmp_path / "sweep.md").unlink()
    experiments.regenerate(tmp_path)
    assert (tmp_path / "sweep.md").read_text() == md
    # the same command again reads the finished runs back instead of training them
    again = argparse.Namespace(**vars(args))
    (tmp_path / "sweep.md").unlink()
    assert train.run_sweep(again) == summary


@pytest.mark.slow
def test_sweep_with_two_jobs_gives_what_one_job_gives(tmp_path):
    """--jobs 2: the runs of two seeds in two worker processes (one thread each: TINY has --threads 1), each seed's
    runs launched after its SPL; sweep.json is the one the same sweep writes run by run."""
    flags = ["--mode", "sweep", *TINY, *STAGED, "--budgets", "0.05", "--seeds", "0", "1", "--quiet"]
    for jobs in (1, 2):
        train.run_sweep(train.get_args([*flags, "--out", str(tmp_path / f"jobs{jobs}"), "--jobs", str(jobs)]))
    one, two = (json.loads((tmp_path / f"jobs{j}" / "sweep.json").read_text()) for j in (1, 2))
    assert two == one and len(one["runs"]) == 2 * (3 + len(experiments.SWEEP_SELECTORS))
    assert len(list((tmp_path / "jobs2" / "shared").glob("warmup-*.pt"))) == 2  # one per seed
    for r in two["runs"]:  # every run but SPL's whole mask (which trains it) and supervised started from it
        warmup = json.loads((tmp_path / "jobs2" / r["run"] / "metrics.json").read_text())["shared_warmup"]
        assert (warmup is None) == (r["selector"] in ("spl (whole mask)", "supervised")), r


@pytest.mark.slow
def test_table_with_two_jobs_gives_what_one_job_gives(tmp_path):
    """--mode table --jobs 2: random and entropy start after SPL and get its budget; the same table as run by run."""
    flags = ["--mode", "table", *TINY, *STAGED, "--quiet"]
    results = [train.run_table(train.get_args([*flags, "--out", str(tmp_path / f"jobs{j}"), "--jobs", str(j)]))
               for j in (1, 2)]
    for r in results:
        for row in r:
            row.pop("wall_seconds")
    assert results[1] == results[0]
    spl = next(r for r in results[1] if r["mode"] == "spl")
    assert spl["labelled_fraction"] > 0
    assert [r["labelled_fraction"] for r in results[1] if r["mode"] in ("random", "entropy")] == pytest.approx(
        [spl["labelled_fraction"]] * 2, abs=1 / (32 * 64))


@pytest.mark.slow
def test_noise_experiment_end_to_end(tmp_path):
    """--mode noise with real (tiny) runs: the noisy annotator changes labels, not what is bought (SPL's mask and
    random's pixels at P = 0.5 are those of P = 0), reuses the seed's warm-up and B, and counts its wrong labels."""
    flags = ["--mode", "noise", *TINY, *STAGED, "--quiet", "--noise-levels", "0", "0.5", "--noise-band", "2",
             "--out", str(tmp_path)]
    summary = {(e["level"], e["row"]): e for e in train.run_noise(train.get_args(flags))}
    for row in ("spl", "random", "ripu regions"):
        assert summary[0.5, row]["labelled_fraction"] == summary[0.0, row]["labelled_fraction"] > 0
        assert summary[0.0, row]["wrong_share"] == 0
    assert summary[0.5, "spl"]["wrong_share"] > 0
    clean, noisy = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("spl-seed0",
                                                                                           "spl-noise0.5-seed0"))
    assert noisy["shared_warmup"] and noisy["selector_history"] == clean["selector_history"]
    assert noisy["annotator_wrong_labels"] > 0 and noisy["annotator_noise"] == 0.5


def test_a_stop_in_a_worker_process_reaches_the_experiment_intact():
    stopped = pickle.loads(pickle.dumps(runs.Stopped(15, 42, "runs/x")))
    assert (stopped.signum, str(stopped)) == (15, "stopped at iteration 42; continue with: python train.py --resume "
                                                   "runs/x")
    assert str(pickle.loads(pickle.dumps(runs.Stopped(2, 0, None, "not started")))) == "not started"


@pytest.mark.slow
def test_an_experiment_resumes_a_stopped_run_and_refuses_one_with_other_settings(tmp_path):
    """A run folder holding a checkpoint but no metrics.json (a stop, a kill) is continued by the same experiment
    command, to the result the run has without a stop; with other settings it is refused by name."""
    flags = ["--mode", "random", *TINY, "--budget", "0.05", "--save-every", "2", "--quiet"]
    ref = train.run(train.get_args([*flags, "--out", str(tmp_path / "ref")]))
    args = train.get_args([*flags, "--out", str(tmp_path / "x")])
    stopped = tmp_path / "exp" / "random-seed0"
    train.run(train.get_args([*flags, "--out", str(stopped)]))
    (stopped / "metrics.json").unlink()  # as if stopped after its last checkpoint
    other = argparse.Namespace(**{**vars(args), "lr": 0.5})
    with pytest.raises(runs.UsageError, match=r"holds a stopped run with other settings \(--lr"):
        experiments.one_run(other, train.run, train.apply_defaults, tmp_path / "exp", "random", 0)
    m = experiments.one_run(args, train.run, train.apply_defaults, tmp_path / "exp", "random", 0)
    assert (m["miou"], m["labelled_pixels"]) == (ref["miou"], ref["labelled_pixels"])
    assert (stopped / "metrics.json").exists()


def test_shared_file_names_change_with_every_setting_and_not_with_a_later_unset_key(tmp_path):
    """Runs share a warm-up only when every setting it depends on agrees. A key added later (--thing-shift) leaves
    the name of files shared before it existed unchanged while unset, and changes it once set (as it is by default)."""
    args = train.get_args(["--schedule", "staged", "--shared-dir", str(tmp_path), "--mode", "spl"])
    name = runs.shared_file(args, "warmup", runs.WARMUP_KEYS)
    assert name.parent == tmp_path and name.name.startswith("warmup-seed0-")
    older = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in runs.LATER_KEYS})
    unset = argparse.Namespace(**{**vars(args), "thing_shift": None})
    assert runs.shared_file(older, "warmup", runs.WARMUP_KEYS) == runs.shared_file(unset, "warmup", runs.WARMUP_KEYS)
    assert args.thing_shift == 0.0 and runs.shared_file(older, "warmup", runs.WARMUP_KEYS) != name
    for key, value in [("thing_shift", 0.6), ("shift", 0.5), ("seed", 1), ("warmup", 0.4)]:
        changed = argparse.Namespace(**{**vars(args), key: value})
        assert runs.shared_file(changed, "warmup", runs.WARMUP_KEYS) != name, key
    changed = argparse.Namespace(**{**vars(args), "lambda_dis": 0.5})     # B's settings: not the warm-up's
    assert runs.shared_file(changed, "warmup", runs.WARMUP_KEYS) == name
    assert runs.shared_file(changed, "selector", runs.SELECTOR_KEYS) != runs.shared_file(args, "selector",
                                                                                         runs.SELECTOR_KEYS)


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


def test_an_experiment_reads_a_finished_run_only_if_its_settings_agree(tmp_path):
    """--mode table / sweep read a run folder that holds metrics.json instead of running it again, but only when
    that run had the same settings; otherwise the experiment stops with a clear error instead of mixing them."""
    args = train.get_args(["--mode", "table", *TINY, "--out", str(tmp_path)])
    calls = []

    def fake_run(a):  # stands for train.run: records the call, writes metrics.json as run does
        calls.append(a.mode)
        out = Path(a.out)
        out.mkdir(parents=True)
        m = {"miou": 0.5, "args": runs.args_dict(a)}
        (out / "metrics.json").write_text(json.dumps(m))
        return m

    first = experiments.one_run(args, fake_run, lambda a: a, tmp_path, "random", 0, budget=0.05)
    again = experiments.one_run(args, fake_run, lambda a: a, tmp_path, "random", 0, budget=0.05)
    assert calls == ["random"] and again == first                    # read, not run again
    other = argparse.Namespace(**{**vars(args), "iters": 9, "quiet": False, "threads": 2})
    with pytest.raises(train.UsageError, match=r"other settings \(--iters 8 -> 9\)"):
        experiments.one_run(other, fake_run, lambda a: a, tmp_path, "random", 0, budget=0.05)
    assert calls == ["random"]
    # runs saved before the defaults changed wrote the same settings otherwise: staged runs saved --select-at 0.5,
    # runs of the first benchmark --thing-shift None (= --shift)
    now = {"schedule": "staged", "select_at": None, "shift": 0.6, "thing_shift": 0.6, "iters": 8}
    before = {"schedule": "staged", "select_at": [0.5], "shift": 0.6, "thing_shift": None, "iters": 8}
    assert experiments.changed_settings(before, now) == []
    assert experiments.changed_settings(before, {**now, "profile": False}) == []     # a flag of --benchmark only
    assert experiments.changed_settings({**before, "schedule": "joint"}, {**now, "schedule": "joint"}) == [
        "--select-at [0.5] -> None"]
    assert experiments.changed_settings(before, {**now, "thing_shift": 0.0}) == ["--thing-shift 0.6 -> 0.0"]
    # capped SPL runs saved before --spl-cap kept the most discrepant pixels; the cap acts on capped SPL only
    spl = {**now, "mode": "spl", "budget": 0.01}
    assert experiments.changed_settings(spl, {**spl, "spl_cap": "discrepancy"}) == []
    assert experiments.changed_settings(spl, {**spl, "spl_cap": "random"}) == ["--spl-cap discrepancy -> random"]
    assert experiments.changed_settings({**now, "mode": "random", "budget": 0.01},
                                        {**now, "mode": "random", "budget": 0.01, "spl_cap": "random"}) == []
    assert experiments.changed_settings({**spl, "budget": None}, {**spl, "budget": None, "spl_cap": "random"}) == []
    # B's settings do not act on a run without B: random pixels are read back whatever --lambda-dis says
    rnd = {**now, "mode": "random", "budget": 0.01, "lambda_dis": 0.2}
    assert experiments.changed_settings(rnd, {**rnd, "lambda_dis": 0.05}) == []
    assert experiments.changed_settings({**spl, "lambda_dis": 0.2}, {**spl, "lambda_dis": 0.05}) == [
        "--lambda-dis 0.2 -> 0.05"]
    # --ppl-cell acts on PPL alone; PPL runs saved before it took the nearest points wherever they lay (0)
    ppl = {**now, "mode": "ppl"}
    assert experiments.changed_settings(ppl, {**ppl, "ppl_cell": 0}) == []
    assert experiments.changed_settings(ppl, {**ppl, "ppl_cell": 8}) == ["--ppl-cell 0 -> 8"]
    assert experiments.changed_settings({**spl, "ppl_cell": 0}, {**spl, "ppl_cell": 8}) == []
