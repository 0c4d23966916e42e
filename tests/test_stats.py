"""The paired statistics every table and sweep reports, against hand computations: each seed's difference to the
equal-budget partner, the mean, and a 95% Student-t interval on the paired differences."""
import argparse
import json
import math

import pytest
from pathlib import Path

import experiments


def test_paired_difference_by_hand():
    """Differences 1, 2, 3 (a - b): mean 2, sd 1, so the interval is 2 +- t(0.975; 2) / sqrt(3) = 2 +- 4.303 / 1.732."""
    d = experiments.paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert d["diffs"] == pytest.approx([1.0, 2.0, 3.0]) and d["n"] == 3 and d["mean"] == pytest.approx(2.0)
    half = 4.303 / math.sqrt(3)
    assert d["ci95"] == pytest.approx([2.0 - half, 2.0 + half]) and d["excludes_zero"] is False
    tight = experiments.paired_difference([0.5, 0.7, 0.6, 0.6], [0.0, 0.0, 0.0, 0.0])  # sd 0.0816, t(3) = 3.182
    half = 3.182 * math.sqrt(0.02 / 3) / 2
    assert tight["ci95"] == pytest.approx([0.6 - half, 0.6 + half]) and tight["excludes_zero"] is True
    below = experiments.paired_difference([0.0, 0.0, 0.0], [1.0, 1.1, 0.9])
    assert below["ci95"][1] < 0 and below["excludes_zero"] is True
    one = experiments.paired_difference([1.0], [0.5])
    assert one["ci95"] is None and one["excludes_zero"] is None and one["mean"] == 0.5


def test_student_t_quantiles_by_table():
    """A few of the table's values (any statistics book), and the normal quantile beyond 30 degrees of freedom."""
    assert experiments.T975[0] == 12.706 and experiments.T975[1] == 4.303 and experiments.T975[6] == 2.365
    big = experiments.paired_difference([float(i % 2) for i in range(41)], [0.0] * 41)
    sd = math.sqrt(sum((i % 2 - 20 / 41) ** 2 for i in range(41)) / 40)
    assert big["ci95"][1] - big["mean"] == pytest.approx(2.021 * sd / math.sqrt(41), abs=1e-3)   # t(0.975; 40)
    assert experiments.t975(30) == 2.042 and experiments.t975(60) == pytest.approx(2.000, abs=1e-3)
    assert experiments.t975(120) == pytest.approx(1.980, abs=1e-3)


def metrics(miou):
    return {"miou": miou, "labelled_fraction": 0.01, "points_per_image": 1.0, "required_fraction": None,
            "wall_seconds": 1.0}


def test_table_pairs_each_selector_with_its_equal_budget_partner():
    """SPL against random at SPL's budget and against entropy; PPL against random at 40 px per image; seed by seed
    (the lists are in seed order)."""
    base = {row: [metrics(0.5), metrics(0.5)] for row in experiments.TABLE_MODES}
    base["spl"] = [metrics(0.70), metrics(0.66)]
    base["random"] = [metrics(0.68), metrics(0.65)]
    base["entropy"] = [metrics(0.60), metrics(0.61)]
    base["ppl"] = [metrics(0.64), metrics(0.62)]
    base["random, 40 px"] = [metrics(0.63), metrics(0.60)]
    results = {r["mode"]: r for r in experiments.summarise_table(base, argparse.Namespace())}
    assert results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01])
    assert results["spl"]["vs_random"]["partner"] == "random"
    assert results["spl"]["vs_entropy"]["diffs"] == pytest.approx([0.10, 0.05])
    assert results["ppl"]["vs_random"]["diffs"] == pytest.approx([0.01, 0.02])
    assert results["ppl"]["vs_random"]["partner"] == "random, 40 px" and results["ppl"]["vs_entropy"] is None
    assert results["random"]["vs_random"] is None and results["supervised"]["vs_random"] is None
    # RIPU against LabOR at the same budget: regions against SPL, points against the paper's PPL
    assert results["ripu regions"]["vs_labor"]["diffs"] == pytest.approx([0.5 - 0.70, 0.5 - 0.66])
    assert results["ripu points"]["vs_labor"]["diffs"] == pytest.approx([0.5 - 0.64, 0.5 - 0.62])
    assert results["ripu points"]["vs_labor"]["partner"] == "ppl" and results["spl"]["vs_labor"] is None
    assert results["spl"]["vs_supervised"]["diffs"] == pytest.approx([0.20, 0.16])   # supervised: 0.5, 0.5
    assert results["supervised"]["vs_supervised"] is None
    half = 12.706 * math.sqrt(0.00005) / math.sqrt(2)       # the two differences 0.02, 0.01: sd sqrt(0.00005)
    assert results["spl"]["vs_random"]["ci95"] == pytest.approx([0.015 - half, 0.015 + half])


def test_sweep_pairs_by_seed_at_the_same_budget():
    """A selector's runs are paired with random's of the same seed and budget asked, whatever the order of the rows;
    a seed random lacks is left out."""
    rows = [{"selector": s, "budget": b, "seed": seed, "miou": m, "labelled_fraction": b or 0, "points_per_image": 1,
             "required_fraction": None}
            for s, b, seed, m in (("random", 0.01, 0, 0.60), ("random", 0.01, 1, 0.62), ("spl", 0.01, 1, 0.65),
                                  ("spl", 0.01, 0, 0.61), ("spl", 0.01, 2, 0.70), ("entropy", 0.01, 0, 0.50),
                                  ("entropy", 0.01, 1, 0.52), ("spl", 0.05, 0, 0.66), ("adaptseg", None, 0, 0.5))]
    got = {(r["selector"], r["budget"]): r for r in experiments.summarise_sweep(rows)}
    assert got["spl", 0.01]["vs_random"]["diffs"] == pytest.approx([0.03, 0.01])     # seeds 1, 0; seed 2 unpaired
    assert got["spl", 0.01]["vs_entropy"]["diffs"] == pytest.approx([0.13, 0.11])
    assert got["entropy", 0.01]["vs_random"]["diffs"] == pytest.approx([-0.10, -0.10])
    assert "vs_random" not in got["spl", 0.05] and "vs_random" not in got["adaptseg", None]
    assert "vs_random" not in got["random", 0.01]
    ripu = [{"selector": "ripu regions", "budget": 0.01, "seed": seed, "miou": m, "labelled_fraction": 0.01,
             "points_per_image": 1, "required_fraction": None} for seed, m in ((1, 0.60), (0, 0.66))]
    got = {(r["selector"], r["budget"]): r for r in experiments.summarise_sweep(rows + ripu)}
    assert got["ripu regions", 0.01]["vs_labor"]["diffs"] == pytest.approx([-0.05, 0.05])   # seeds 1, 0 vs SPL


def test_a_difference_cell_marks_an_interval_clear_of_zero():
    assert experiments._difference(experiments.paired_difference([0.6, 0.7, 0.65], [0.5, 0.6, 0.55])).endswith(" *")
    assert "*" not in experiments._difference(experiments.paired_difference([0.6, 0.5, 0.7], [0.6, 0.6, 0.6]))
    assert experiments._difference(None) == "-"


def test_the_readme_brief_of_a_table_and_a_sweep(tmp_path):
    """python experiments.py brief FOLDER: per-seed values, the mean and the difference to random, bold only where
    the interval excludes zero."""
    clear = experiments.paired_difference([0.70, 0.66, 0.68], [0.68, 0.65, 0.66])
    unclear = experiments.paired_difference([0.70, 0.62, 0.68], [0.68, 0.65, 0.66])
    rows = [{"mode": "spl", "mious": [0.70, 0.66, 0.68], "miou_mean": 0.68, "labelled_fraction": 0.015,
             "annotation_seconds": 421.0, "vs_random": clear},
            {"mode": "ppl", "mious": [0.70, 0.62, 0.68], "miou_mean": 0.6667, "labelled_fraction": 0.002,
             "annotation_seconds": 96.0, "vs_random": unclear}]
    (tmp_path / "results.json").write_text(json.dumps({"seeds": [0, 1, 2], "results": rows}))
    lines = experiments.brief(tmp_path).splitlines()
    assert lines[2] == "| spl | 70.0 / 66.0 / 68.0 | 68.0 | 1.50% | 421 | **+1.67 [+0.23, +3.10]** |  |"
    assert lines[3].startswith("| ppl | 70.0 / 62.0 / 68.0 | 66.7 | 0.20% | 96 | +0.33 [") and "**" not in lines[3]
    sweep = {"budgets": [0.001], "summary": [{"selector": "random", "budget": 0.001, "miou_mean": 0.64},
                                              {"selector": "spl", "budget": 0.001, "miou_mean": 0.65, "vs_random": clear}]}
    (tmp_path / "results.json").unlink()
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    assert experiments.brief(tmp_path).splitlines()[2] == "| 0.1% | 64.0 | **+1.67 [+0.23, +3.10]** |"


def test_a_stopped_table_regenerates_over_its_finished_seeds_only(tmp_path):
    """python experiments.py regenerate FOLDER on a --mode table folder whose command has not finished: the table
    is made of the seeds whose every row has finished, so each difference pairs the same seeds (a table that took
    every finished run of a row would pair SPL's seed 2 with nothing, or random's seeds with other SPL seeds)."""
    args = {"iters": 500, "schedule": "staged", "model": "tiny", "points": 40, "data": "synthetic", "shift": 0.6,
            "thing_shift": 0.0, "quiet": True}
    spl = {0: 0.70, 1: 0.66, 2: 0.90}
    rand = {0: 0.68, 1: 0.65, 2: 0.50}
    for *_, stem, _ in experiments.TABLE_ROWS:
        for seed in (0, 1, 2):
            if stem == "ripu_points" and seed == 2:
                continue                                   # seed 2 is still running: no metrics.json yet
            miou = spl[seed] if stem == "spl" else rand[seed] if stem == "random" else 0.6
            run = tmp_path / f"{stem}-seed{seed}"
            run.mkdir()
            (run / "metrics.json").write_text(json.dumps(
                {**metrics(miou), "args": {**args, "out": str(run)}}))
    (tmp_path / "plan.json").write_text(json.dumps({"experiment": "table", "seeds": [0, 1, 2, 3]}))
    results = {r["mode"]: r for r in experiments.regenerate(tmp_path)}
    assert results["spl"]["mious"] == [0.70, 0.66]
    assert results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["partial"]["missing"]["2"] == ["ripu_points-seed2"]
    assert len(saved["partial"]["missing"]["3"]) == 12                 # asked for, never begun
    assert "Left out: seed 2 (1 of 12 runs missing); seed 3 (12 of 12 runs missing)" in \
        (tmp_path / "results.md").read_text()
    # the missing run finishes: regenerate gives the whole table, no longer partial
    (tmp_path / "plan.json").write_text(json.dumps({"experiment": "table", "seeds": [0, 1, 2]}))
    run = tmp_path / "ripu_points-seed2"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({**metrics(0.6), "args": {**args, "out": str(run)}}))
    results = {r["mode"]: r for r in experiments.regenerate(tmp_path)}
    assert results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01, 0.40])
    assert "partial" not in json.loads((tmp_path / "results.json").read_text())
    assert "Left out" not in (tmp_path / "results.md").read_text()


def test_regenerate_refuses_a_table_folder_with_no_finished_seed(tmp_path):
    run = tmp_path / "spl-seed0"          # (a sweep's whole-mask SPL has this name too: not taken for a table)
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics(0.7)))
    with pytest.raises(experiments.UsageError, match="holds neither"):
        experiments.regenerate(tmp_path)
    (tmp_path / "plan.json").write_text(json.dumps({"experiment": "table", "seeds": [0]}))
    with pytest.raises(experiments.UsageError, match="no seed has all 12 runs"):
        experiments.regenerate(tmp_path)


def test_a_table_runs_seed_by_seed(tmp_path):
    """--mode table launches a seed's every run before the runs of the seed after next, so a table stopped early
    has its first seeds whole (the order that queued every seed's SPL first left all seeds half done)."""
    import train
    args = train.get_args(["--mode", "table", "--seeds", "0", "1", "2", "--out", str(tmp_path), "--quiet",
                           "--size", "32", "64"])
    order = []

    def fake_run(a):
        order.append((Path(a.out).name.rpartition("-seed")[0], a.seed))
        return {**metrics(0.6), "args": vars(a), "seed": a.seed}

    experiments.run_table(args, fake_run, lambda a: a)
    assert len(order) == 3 * len(experiments.TABLE_ROWS)
    assert json.loads((tmp_path / "plan.json").read_text()) == {"experiment": "table", "seeds": [0, 1, 2]}
    last_of = {seed: max(i for i, (_, s) in enumerate(order) if s == seed) for seed in (0, 1, 2)}
    first_of = {seed: min(i for i, (_, s) in enumerate(order) if s == seed) for seed in (0, 1, 2)}
    assert last_of[0] < first_of[2] and last_of[1] < last_of[2]
    assert order[0] == ("spl", 0)                         # SPL first: the seed's other runs need its warm-up and B


def test_a_sweep_runs_seed_by_seed(tmp_path):
    """--mode sweep, as the table: a seed's every run is launched before the runs of the seed after next, so a sweep
    stopped early has its first seeds whole (the order that queued every seed's whole-mask SPL and supervised runs
    first left no seed whole for hours)."""
    import train
    args = train.get_args(["--mode", "sweep", "--seeds", "0", "1", "2", "--budgets", "0.001", "0.005", "--selectors",
                           "random", "spl", "--out", str(tmp_path), "--quiet", "--size", "32", "64"])
    calls = []
    experiments.run_sweep(args, fake_runs(calls, lambda mode, p, seed: 0.6), lambda a: a)
    order = [(name.rpartition("-seed")[0], seed) for name, _, seed, _, _ in calls]
    assert len(order) == 3 * (3 + 2 * 2)   # whole mask, adaptseg, supervised + 2 selectors at 2 budgets
    last_of = {seed: max(i for i, (_, s) in enumerate(order) if s == seed) for seed in (0, 1, 2)}
    first_of = {seed: min(i for i, (_, s) in enumerate(order) if s == seed) for seed in (0, 1, 2)}
    assert last_of[0] < first_of[2] and last_of[1] < last_of[2]
    for seed in (0, 1, 2):   # SPL's whole mask before the seed's others: they need its warm-up and B
        assert all(order.index(("spl", seed)) < i for i, (stem, s) in enumerate(order)
                   if s == seed and stem not in ("spl", "supervised"))


def test_selectors_compared_at_equal_annotator_seconds():
    """The sweep's time comparison: mIoU read off each seed's curve linearly in log seconds (by hand: halfway in
    log between 10 s and 1000 s is 100 s), nothing beyond the measured seconds, and differences to random paired
    by seed at the same level (a comparison at the same budget would pair SPL's 300 s with random's 10 s)."""
    def row(sel, budget, seed, secs, miou):
        return {"selector": sel, "budget": budget, "seed": seed, "annotation_seconds": secs, "miou": miou}
    rows = [row("random", 0.001, 0, 10.0, 0.50), row("random", 0.01, 0, 1000.0, 0.70),
            row("random", 0.001, 1, 10.0, 0.52), row("random", 0.01, 1, 1000.0, 0.68),
            row("spl", 0.001, 0, 100.0, 0.64), row("spl", 0.01, 0, 400.0, 0.69),
            row("spl", 0.001, 1, 100.0, 0.61), row("spl", 0.01, 1, 400.0, 0.66),
            row("ppl", 0.001, 0, 50.0, 0.60), row("ppl", 0.005, 0, 200.0, 0.62), row("ppl", 0.01, 0, 200.0, 0.64),
            row("adaptseg", None, 0, None, 0.40)]
    got = {(e["selector"], e["seconds"]): e for e in experiments.at_equal_seconds(rows, levels=(100.0, 300.0, 5.0))}
    assert got["random", 100.0]["mious"] == pytest.approx([0.60, 0.60])
    assert got["spl", 100.0]["vs_random"]["diffs"] == pytest.approx([0.04, 0.01])
    at300 = 0.50 + 0.20 * math.log(30) / math.log(100)         # random, seed 0, at 300 s
    frac = math.log(3) / math.log(4)                              # SPL: 300 s is log(3)/log(4) of the way 100 -> 400
    assert got["spl", 300.0]["mious"][0] == pytest.approx(0.64 + 0.05 * frac)
    assert got["spl", 300.0]["vs_random"]["diffs"][0] == pytest.approx(0.64 + 0.05 * frac - at300)
    assert ("random", 5.0) not in got and ("spl", 5.0) not in got        # below every run: no extrapolation
    assert got["ppl", 100.0]["mious"] == pytest.approx([0.60 + 0.03 * 0.5])  # two runs at 200 s: their mean, 0.63
    assert got["random", 100.0]["vs_random"] is None and all(k[0] != "adaptseg" for k in got)


def test_the_readme_brief_of_a_sweep_shows_equal_seconds(tmp_path):
    clear = experiments.paired_difference([0.70, 0.66, 0.68], [0.68, 0.65, 0.66])
    sweep = {"budgets": [0.001], "summary": [{"selector": "random", "budget": 0.001, "miou_mean": 0.64},
                                              {"selector": "spl", "budget": 0.001, "miou_mean": 0.65}],
             "at_equal_seconds": [{"selector": "random", "seconds": 60.0, "miou_mean": 0.61, "vs_random": None},
                                  {"selector": "spl", "seconds": 60.0, "miou_mean": 0.63, "vs_random": clear}]}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    lines = experiments.brief(tmp_path).splitlines()
    assert lines[4] == "| annotator s / image | random mIoU | spl minus random |"
    assert lines[6] == "| 60 | 61.0 | **+1.67 [+0.23, +3.10]** |"


def test_list_gives_each_runs_seeds_in_order_and_their_mean(tmp_path):
    for name, seed, miou in (("random-budget0.0002", 1, 0.60), ("random-budget0.0002", 0, 0.57), ("adaptseg", 0, 0.5)):
        run = tmp_path / f"{name}-seed{seed}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({**metrics(miou), "eval_split": "tune"}))
    lines = experiments.listing(tmp_path).splitlines()
    assert "| random-budget0.0002 | tune | 1.000 | 57.00 / 60.00 | 0, 1 | 58.50 |" in lines
    assert "| adaptseg | tune | 1.000 | 50.00 | 0 | 50.00 |" in lines


def fake_runs(calls, miou_of):
    """A stand-in for train.run: writes metrics.json as a run does (so a finished run is read back, not run
    again), with mIoU miou_of(mode, noise, seed), labelled fraction 0.01 * (seed + 1) + 0.001 * P for SPL (others:
    their --budget), 20 labelled pixels (random: 40) of which 10 * P are wrong."""
    import runs

    def run(a):
        calls.append((Path(a.out).name, a.mode, a.seed, a.annotator_noise, a.budget))
        frac = 0.01 * (a.seed + 1) + 0.001 * a.annotator_noise if a.mode == "spl" else (a.budget or 0.0)
        m = {**metrics(miou_of(a.mode, a.annotator_noise, a.seed)), "labelled_fraction": frac,
             "labelled_pixels": 40 if a.mode == "random" else 20,
             "annotator_wrong_labels": round(10 * a.annotator_noise),
             "args": runs.args_dict(a), "seed": a.seed}
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "metrics.json").write_text(json.dumps(m))
        return m
    return run


def test_noise_runs_random_at_the_fraction_spl_bought_at_each_level(tmp_path):
    """--mode noise: at each P, SPL first, then random (and RIPU's regions) at the labelled fraction SPL bought for
    that seed, every run with --annotator-noise P; paired differences to random at the same P and to the same
    method at P = 0, by hand."""
    import train
    args = train.get_args(["--mode", "noise", "--seeds", "0", "1", "--noise-levels", "0", "0.2", "--out",
                           str(tmp_path), "--quiet", "--size", "32", "64"])
    miou = {("spl", 0.0): (0.70, 0.66), ("random", 0.0): (0.68, 0.65), ("ripu_regions", 0.0): (0.69, 0.60),
            ("spl", 0.2): (0.60, 0.62), ("random", 0.2): (0.61, 0.60), ("ripu_regions", 0.2): (0.58, 0.57)}
    calls = []
    summary = experiments.run_noise(args, fake_runs(calls, lambda mode, p, seed: miou[mode, p][seed]), lambda a: a)
    assert len(calls) == 2 * 2 * 3
    for name, mode, seed, p, budget in calls:
        assert name == (f"{mode}-seed{seed}" if p == 0 else f"{mode}-noise{p:g}-seed{seed}")   # P = 0: the table's
        if mode != "spl":
            assert budget == pytest.approx(0.01 * (seed + 1) + 0.001 * p)   # SPL's fraction, this seed, this P
            assert [c[:4] for c in calls].index((f"{experiments.noise_stem('spl', p)}-seed{seed}", "spl", seed, p)) \
                < calls.index((name, mode, seed, p, budget))
    # a seed's first SPL run (it trains the warm-up and B the others reuse) alone, then the next seed's is queued
    assert [c[0] for c in calls[:3]] == ["spl-seed0", "spl-seed1", "spl-noise0.2-seed0"]
    got = {(e["level"], e["row"]): e for e in summary}
    assert got[0.2, "spl"]["vs_random"]["diffs"] == pytest.approx([-0.01, 0.02])
    assert got[0.2, "ripu regions"]["vs_random"]["diffs"] == pytest.approx([-0.03, -0.03])
    assert got[0.2, "spl"]["vs_perfect"]["diffs"] == pytest.approx([-0.10, -0.04])
    assert got[0.0, "spl"]["vs_perfect"] is None and got[0.2, "random"]["vs_random"] is None
    assert got[0.2, "spl"]["wrong_share"] == pytest.approx(2 / 20) and got[0.2, "random"]["wrong_share"] == 2 / 40
    assert got[0.0, "random"]["wrong_share"] == 0
    saved = json.loads((tmp_path / "noise.json").read_text())
    assert saved["complete_seeds"] == [0, 1] and "partial" not in saved
    assert (tmp_path / "noise.png").is_file() and "| 0.2 | spl | 61.0 ± 1.4 |" in (tmp_path / "noise.md").read_text()
    # the same command again reads every run back; regenerate and brief work on a folder of noise runs alone
    calls.clear()
    experiments.run_noise(args, fake_runs(calls, lambda mode, p, seed: miou[mode, p][seed]), lambda a: a)
    assert calls == []
    assert {(e["level"], e["row"]): e["vs_random"] for e in experiments.regenerate(tmp_path)}[0.2, "spl"]["diffs"] \
        == pytest.approx([-0.01, 0.02])
    assert experiments.brief(tmp_path).splitlines()[0].startswith("| P (annotator errs at outlines) |")
    (tmp_path / "noise.json").write_text(json.dumps({"levels": [0.0], "rows": ["spl", "random"], "seeds": [5]}))
    with pytest.raises(experiments.UsageError, match="no seed"):
        experiments.brief(tmp_path)


def test_noise_reuses_a_tables_perfect_annotator_runs_and_regenerates_beside_it(tmp_path):
    """--mode noise --out <a table's folder>: the P = 0 runs are the table's own (not trained again); regenerate
    rewrites the table and noise.*, the latter over the seeds whose every noise run has finished."""
    import train
    flags = ["--seeds", "0", "1", "--out", str(tmp_path), "--quiet", "--size", "32", "64"]
    calls = []
    run = fake_runs(calls, lambda mode, p, seed: 0.6 + 0.01 * seed - p / 10 + 0.02 * (mode == "spl"))
    experiments.run_table(train.get_args(["--mode", "table", *flags]), run, lambda a: a)
    calls.clear()
    experiments.run_noise(train.get_args(["--mode", "noise", *flags, "--selectors", "spl", "random"]), run,
                          lambda a: a)
    assert sorted(name for name, *_ in calls) == sorted(f"{m}-noise{p:g}-seed{s}" for m in ("spl", "random")
                                                        for p in (0.05, 0.2) for s in (0, 1))
    import shutil
    shutil.rmtree(tmp_path / "random-noise0.2-seed1")                   # seed 1 not finished
    experiments.regenerate(tmp_path)
    saved = json.loads((tmp_path / "noise.json").read_text())
    assert saved["complete_seeds"] == [0] and saved["partial"] == {"missing_seeds": [1]}
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == [0, 1]   # the table, rewritten too
    brief = experiments.brief(tmp_path).splitlines()
    assert "| P (annotator errs at outlines) | wrong labels (SPL) | spl mIoU | random mIoU | spl minus random |" in brief
    assert "| 0.2 | 10.0% | 60.0 | 58.0 | +2.00 |" in brief     # one seed: no interval; 2 of 20 SPL labels wrong


def test_noise_refuses_levels_of_one_folder_name_and_a_budget(tmp_path):
    import train
    for extra, message in ((["--noise-levels", "0.1", "0.1000001"], "same run folder name"),
                           (["--budget", "0.01"], "leave --budget out")):
        args = train.get_args(["--mode", "noise", "--out", str(tmp_path / "n"), "--quiet", *extra])
        with pytest.raises(experiments.UsageError, match=message):
            experiments.run_noise(args, None, lambda a: a)
    assert not (tmp_path / "n").exists()


def test_noise_selectors_must_buy_spls_fraction():
    assert [m for _, m in experiments.noise_rows(None)] == ["spl", "random", "ripu_regions"]
    for wrong in (["spl", "ppl", "random"], ["spl"], ["random", "entropy"]):
        with pytest.raises(experiments.UsageError, match="--mode noise --selectors"):
            experiments.noise_rows(wrong)


def test_a_stopped_sweep_regenerates_over_its_finished_seeds_only(tmp_path):
    """python experiments.py regenerate on a --mode sweep folder whose command has not finished: plan.json names
    every run; the sweep is made of the seeds whose every run has finished (the differences pair the same seeds),
    and the same command continues it into the whole sweep."""
    import shutil
    import train
    args = train.get_args(["--mode", "sweep", "--seeds", "0", "1", "2", "--budgets", "0.001", "--selectors",
                           "random", "spl", "--out", str(tmp_path), "--quiet", "--size", "32", "64"])
    miou = {("random", 0): 0.60, ("random", 1): 0.61, ("random", 2): 0.62}
    calls = []
    run = fake_runs(calls, lambda mode, p, seed: miou.get((mode, seed), 0.65 + 0.01 * seed))
    experiments.run_sweep(args, run, lambda a: a)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["experiment"] == "sweep" and len(plan["runs"]) == 3 + 2   # whole mask, adaptseg, supervised + 2
    for f in ("sweep.json", "sweep.md"):
        (tmp_path / f).unlink()
    shutil.rmtree(tmp_path / "random-budget0.001-seed1")                 # seed 1 stopped before its random run
    summary = {(r["selector"], r["budget"]): r for r in experiments.regenerate(tmp_path)}
    assert summary["spl", 0.001]["seeds"] == [0, 2]
    assert summary["spl", 0.001]["vs_random"]["diffs"] == pytest.approx([0.05, 0.05])
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["seeds"] == [0, 2] and saved["partial"] == {"missing": {"1": 1}}
    assert "Left out: seed 1 (1 of 5 runs missing)" in (tmp_path / "sweep.md").read_text()
    calls.clear()
    experiments.run_sweep(args, run, lambda a: a)                         # the same command continues it
    assert [c[0] for c in calls] == ["random-budget0.001-seed1"]
    assert "partial" not in json.loads((tmp_path / "sweep.json").read_text())
    with pytest.raises(experiments.UsageError, match="already holds a sweep"):
        experiments.run_sweep(args, run, lambda a: a)


def test_a_folder_in_use_by_another_command_is_refused(tmp_path):
    """Two commands given one folder would both resume the same stopped run: while another live process has marked
    the folder (runs.claim_folder), a table, sweep or noise experiment there is refused before it writes anything;
    a mark left by a process that has ended, by an earlier process whose id a live one now has (its start time
    differs), or one holding no process id, is taken over; another host's mark is refused; the folder is marked as
    this process's (id and host) while its runs train, and the mark is removed when the command ends, also by an
    error."""
    import os
    import platform
    import shutil
    import subprocess
    import sys
    import runs
    import train
    args = train.get_args(["--mode", "sweep", "--seeds", "0", "--budgets", "0.001", "--selectors", "random", "spl",
                           "--out", str(tmp_path), "--quiet", "--size", "32", "64"])
    mark = tmp_path / runs.RUNNING
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark.write_text(f"{other.pid}\n")
        calls = []
        for experiment in (experiments.run_sweep, experiments.run_table, experiments.run_noise):
            with pytest.raises(experiments.UsageError, match=f"in use by another command \\(process {other.pid}"):
                experiment(args, fake_runs(calls, lambda mode, p, seed: 0.6), lambda a: a)
        assert calls == [] and [f.name for f in tmp_path.iterdir()] == [runs.RUNNING]
        if runs._started(other.pid) is not None:   # (Linux): the same id, a later start time: the id was reused
            reused = tmp_path / "reused"
            reused.mkdir()
            (reused / runs.RUNNING).write_text(f"{other.pid}\n{platform.node()}\n{int(runs._started(other.pid)) - 1}\n")
            taken = []
            experiments.run_sweep(argparse.Namespace(**{**vars(args), "out": str(reused)}),
                                  fake_runs(taken, lambda mode, p, seed: 0.6), lambda a: a)
            assert len(taken) == 3 + 2 and not (reused / runs.RUNNING).exists()
    finally:
        other.kill()
        other.wait()
    mark.write_text(f"{other.pid}\nanother-host\n\n")   # its process cannot be seen from here: refused
    with pytest.raises(experiments.UsageError, match="on host another-host"):
        experiments.run_sweep(args, fake_runs([], lambda mode, p, seed: 0.6), lambda a: a)
    mark.unlink()
    shutil.rmtree(tmp_path / "reused", ignore_errors=True)
    calls, marked = [], []
    run = fake_runs(calls, lambda mode, p, seed: 0.6)

    def watched(a):   # what the mark says while a run trains
        marked.append(mark.read_text().split("\n")[:2])
        return run(a)
    experiments.run_sweep(args, watched, lambda a: a)   # the other process has ended: its mark is taken over
    assert len(calls) == 3 + 2 and not mark.exists()
    assert all(m == [str(os.getpid()), platform.node()] for m in marked)
    for garbage in ("", "-1", "x", str(2 ** 70)):
        mark.write_text(garbage)
        (tmp_path / "sweep.md").unlink()
        experiments.run_sweep(args, run, lambda a: a)
        assert not mark.exists()

    def fails(a):
        raise RuntimeError("a run that fails")
    args.out = str(tmp_path / "failing")
    with pytest.raises(RuntimeError):
        experiments.run_sweep(args, fails, lambda a: a)
    assert not (tmp_path / "failing" / runs.RUNNING).exists()


def test_a_sweep_refuses_budgets_that_give_one_run_and_a_tables_folder(tmp_path):
    """Budgets 0.001 and 0.0011 of a 32x64 image both give PPL 2 points per image (one run folder for two budgets:
    the curve would plot one run twice); a sweep is refused a folder that holds a table (plan.json), and a table a
    sweep's; under torchrun only rank 0 claims the folder."""
    import runs
    import train
    args = train.get_args(["--mode", "sweep", "--seeds", "0", "--budgets", "0.001", "0.0011", "--selectors", "ppl",
                           "--out", str(tmp_path / "sweep"), "--quiet", "--size", "32", "64"])
    with pytest.raises(experiments.UsageError, match="ppl-points2"):
        experiments.run_sweep(args, None, lambda a: a)
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "plan.json").write_text(json.dumps({"experiment": "table", "seeds": [0]}))
    args.out, args.budgets = str(tmp_path / "table"), [0.001]
    with pytest.raises(experiments.UsageError, match="holds a --mode table"):
        experiments.run_sweep(args, None, lambda a: a)
    (tmp_path / "table" / "plan.json").write_text(json.dumps({"experiment": "sweep", "seeds": [0]}))
    with pytest.raises(experiments.UsageError, match="holds a --mode sweep"):
        experiments.run_table(args, None, lambda a: a)
    with runs.claimed(tmp_path, rank=1):
        assert not (tmp_path / runs.RUNNING).exists()


def test_the_experiments_command_line_ends_a_users_mistake_with_one_line(tmp_path):
    """python experiments.py regenerate on a folder with no finished seed: one 'error:' line, exit code 2, no
    traceback (as train.py's errors)."""
    import subprocess
    import sys
    (tmp_path / "plan.json").write_text(json.dumps({"experiment": "table", "seeds": [0]}))
    done = subprocess.run([sys.executable, str(Path(experiments.__file__)), "regenerate", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
