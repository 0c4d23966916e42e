"""experiments.py without training: the paired statistics every table reports (against hand computations), the
tables made from run folders' metrics.json alone, and the commands an experiment plans (stages, shared warm-ups,
budgets, what is skipped or resumed). Real runs through experiments.py: tests/test_labelling.py."""
import json
import re
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tools import experiments
from tools import tables
import train
from tools import checkpoint as files  # noqa: E402
from tools import flags  # noqa: E402
from tools import UsageError  # noqa: E402

SIZE = ["--size", "32", "64"]   # 2048 pixels an image
ARGS = {"iters": 500, "schedule": "staged", "model": "tiny", "points": 40, "data": "synthetic", "shift": 0.6,
        "thing_shift": 0.0, "size": [32, 64], "preset": "synthetic", "source_size": None, "target_size": None,
        "eval_split": "val"}


def write_run(folder, name, miou, **more):
    """A finished run as experiments.py sees one: <name>/metrics.json (nothing is trained)."""
    run = Path(folder) / name
    run.mkdir(parents=True, exist_ok=True)
    m = {"miou": miou, "labelled_fraction": 0.01, "points_per_image": 1.0, "required_fraction": None,
         "wall_seconds": 1.0, "labelled_pixels": 20, "eval_split": "val", "args": {**ARGS, "out": str(run)}, **more}
    (run / "metrics.json").write_text(json.dumps(m))
    return m


# ------------------------------------------------------------------------------------------------ statistics

def test_paired_difference_by_hand():
    """Differences 1, 2, 3 (a - b): mean 2, sd 1, so the interval is 2 +- t(0.975; 2) / sqrt(3) = 2 +- 4.303 / 1.732."""
    d = tables.paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert d["diffs"] == pytest.approx([1.0, 2.0, 3.0]) and d["n"] == 3 and d["mean"] == pytest.approx(2.0)
    half = 4.303 / math.sqrt(3)
    assert d["ci95"] == pytest.approx([2.0 - half, 2.0 + half], abs=1e-3) and d["excludes_zero"] is False
    tight = tables.paired_difference([0.5, 0.7, 0.6, 0.6], [0.0, 0.0, 0.0, 0.0])  # sd 0.0816, t(3) = 3.182
    half = 3.182 * math.sqrt(0.02 / 3) / 2
    assert tight["ci95"] == pytest.approx([0.6 - half, 0.6 + half], abs=1e-4) and tight["excludes_zero"] is True
    below = tables.paired_difference([0.0, 0.0, 0.0], [1.0, 1.1, 0.9])
    assert below["ci95"][1] < 0 and below["excludes_zero"] is True
    one = tables.paired_difference([1.0], [0.5])
    assert one["ci95"] is None and one["excludes_zero"] is None and one["mean"] == 0.5


@pytest.mark.parametrize("n, t", [(2, 12.706), (3, 4.303), (8, 2.365), (31, 2.042), (41, 2.021), (121, 1.980)])
def test_intervals_use_student_t_with_n_minus_one_degrees_of_freedom(n, t):
    """The half-width over sd / sqrt(n) is the 97.5% Student-t quantile with n - 1 degrees of freedom, as any
    statistics book's table gives it to three decimals (a normal quantile, 1.960, or n degrees of freedom fail)."""
    d = tables.paired_difference([float(i % 2) for i in range(n)], [0.0] * n)
    sd = math.sqrt(sum((i % 2 - d["mean"]) ** 2 for i in range(n)) / (n - 1))
    assert (d["ci95"][1] - d["mean"]) / (sd / math.sqrt(n)) == pytest.approx(t, abs=5e-4)


def test_a_difference_cell_marks_an_interval_clear_of_zero():
    assert tables._difference(tables.paired_difference([0.6, 0.7, 0.65], [0.5, 0.6, 0.55])).endswith(" * 3/3")
    assert "*" not in tables._difference(tables.paired_difference([0.6, 0.5, 0.7], [0.6, 0.6, 0.6]))
    assert tables._difference(None) == "-"


def test_sign_counts_and_holm_by_hand():
    """k/n counts the seeds where the difference is positive, with the two-sided sign test's p (8 of 8: 2 / 2^8);
    the t-test's p is below 0.05 exactly when the interval excludes zero; Holm compares the smallest of m p-values
    with 0.05 / m, the next with 0.05 / (m - 1), and stops at the first that fails."""
    d = tables.paired_difference([1.0 + 0.1 * i for i in range(8)], [0.0] * 8)
    assert d["positive"] == 8 and d["sign_p"] == pytest.approx(2 / 2 ** 8) and d["p"] < 1e-5
    mixed = tables.paired_difference([0.6, 0.5, 0.7, 0.62], [0.6, 0.6, 0.6, 0.6])
    assert mixed["positive"] == 2 and (mixed["p"] < 0.05) == mixed["excludes_zero"]
    # sorted 0.001, 0.012, 0.02, 0.3 against 0.05/4, 0.05/3, 0.05/2, 0.05: the first three pass, the last fails
    family = [{"p": p} for p in (0.001, 0.02, 0.012, 0.3)]
    assert tables.holm(family + [None]) == 4
    assert [f["holm"] for f in family] == [True, True, True, False]
    family = [{"p": p} for p in (0.001, 0.02, 0.018, 0.3)]   # 0.018 > 0.05 / 3: it fails, and so does all after it
    tables.holm(family)
    assert [f["holm"] for f in family] == [True, False, False, False]
    assert "†" in tables._difference({**d, "holm": True}) and "†" not in tables._difference(d)


# ------------------------------------------------------------------------------------------------ tables from folders

def table_folder(folder, seeds=(0, 1), skip=()):
    """Every row of the table for these seeds (but `skip`: (stem, seed) not finished), with the mIoU below."""
    miou = {"spl": (0.70, 0.66, 0.90), "random": (0.68, 0.65, 0.50), "entropy": (0.60, 0.61, 0.5),
            "ppl": (0.64, 0.62, 0.6), "random-points": (0.63, 0.60, 0.6)}
    for *_, stem, _ in tables.TABLE_ROWS:
        for s in seeds:
            if (stem, s) not in skip:
                write_run(folder, f"{stem}-seed{s}", miou.get(stem, (0.5, 0.5, 0.5))[s])


def test_table_pairs_each_selector_with_its_equal_budget_partner(tmp_path):
    """SPL against random at SPL's budget and against entropy; PPL against random at 40 px per image; RIPU against
    LabOR; every row against supervised; seed by seed (rows found by their folder names)."""
    table_folder(tmp_path)
    results = {r["mode"]: r for r in tables.table(tmp_path)}
    assert results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01])
    assert results["spl"]["vs_random"]["partner"] == "random"
    assert results["spl"]["vs_entropy"]["diffs"] == pytest.approx([0.10, 0.05])
    assert results["ppl"]["vs_random"]["diffs"] == pytest.approx([0.01, 0.02])
    assert results["ppl"]["vs_random"]["partner"] == "random, 40 px" and results["ppl"]["vs_entropy"] is None
    assert results["random"]["vs_random"] is None and results["supervised"]["vs_random"] is None
    assert results["ripu as published"]["vs_random"]["partner"] == "random"
    assert results["ripu as published"]["vs_entropy"]["partner"] == "entropy"
    assert results["entropy"]["vs_random"]["partner"] == "random" and results["entropy"]["vs_entropy"] is None
    assert results["ripu regions"]["vs_labor"]["diffs"] == pytest.approx([0.5 - 0.70, 0.5 - 0.66])
    assert results["ripu points"]["vs_labor"]["diffs"] == pytest.approx([0.5 - 0.64, 0.5 - 0.62])
    assert results["ripu points"]["vs_labor"]["partner"] == "ppl" and results["spl"]["vs_labor"] is None
    assert results["spl"]["vs_supervised"]["diffs"] == pytest.approx([0.20, 0.16])   # supervised: 0.5, 0.5
    assert results["supervised"]["vs_supervised"] is None
    half = 12.706 * math.sqrt(0.00005) / math.sqrt(2)       # the two differences 0.02, 0.01: sd sqrt(0.00005)
    assert results["spl"]["vs_random"]["ci95"] == pytest.approx([0.015 - half, 0.015 + half], abs=1e-4)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["runs"]["ppl, cell 8"] == ["ppl-cell8-seed0", "ppl-cell8-seed1"]
    assert (tmp_path / "results.png").is_file() and "| spl | 68.0 ± 2.8 | 70.0 / 66.0 |" in \
        (tmp_path / "results.md").read_text()


def test_a_table_of_some_rows_and_its_per_class_view(tmp_path):
    """--rows plans those rows alone (source_only, spl and supervised always); the table summarises those rows, a
    partner not given leaves its cell empty (PPL's is random at 40 px), and regenerate writes the same table although
    the folder holds another row's runs; the per-class view is the mean IoU over the seeds where the class is
    defined, and each selector minus random per class with its sign count."""
    rows = ["source_only", "adaptseg", "random", "spl", "ppl", "supervised"]
    a, passed = experiments.build_parser().parse_known_args(["table", "--seeds", "0", "--rows", *rows,
                                                             "--out", str(tmp_path)])
    planned = [Path(c[c.index("--out") + 1]).name for stage in experiments.plan_stages(a, passed) for c in stage]
    assert sorted(planned) == sorted(f"{r}-seed0" for r in rows)
    with pytest.raises(UsageError, match="source_only .*spl .*supervised"):
        experiments.plan_stages(*experiments.build_parser().parse_known_args(["table", "--rows", "spl", "random"]))
    iou = {"spl": [(0.5, 0.2), (0.7, None)], "random": [(0.4, 0.3), (0.6, None)]}   # (road, bus) per seed
    for stem in rows:
        for s in (0, 1):
            road, bus = iou.get(stem, [(0.1, 0.1)] * 2)[s]
            write_run(tmp_path, f"{stem}-seed{s}", 0.5 + 0.01 * s, per_class_iou={"road": road, "bus": bus})
        write_run(tmp_path, f"entropy-seed{s}", 0.5, per_class_iou={"road": 0.1, "bus": 0.1})   # (not a row given)
    got = {r["mode"]: r for r in tables.table(tmp_path, stems=rows)}
    assert list(got) == ["source_only", "adaptseg", "random", "spl", "ppl", "supervised"]
    assert got["ppl"]["vs_random"] is None and got["spl"]["vs_entropy"] is None
    assert got["spl"]["per_class_iou"] == pytest.approx({"road": 0.6, "bus": 0.2})        # bus seen in seed 0 alone
    assert got["spl"]["per_class_vs_random"]["road"] == {"mean": pytest.approx(0.1), "positive": 2, "n": 2}
    assert got["spl"]["per_class_vs_random"]["bus"] == {"mean": pytest.approx(-0.1), "positive": 0, "n": 1}
    md = (tmp_path / "results.md").read_text()
    assert "| spl | 60.0 | 20.0 |" in md and "| spl minus random | +10.0 2/2 | -10.0 0/1 |" in md
    assert "ppl minus" not in md and "| entropy |" not in md
    tables.regenerate(tmp_path)
    assert (tmp_path / "results.md").read_text() == md
    (tmp_path / "results.json").unlink()   # a table whose rows were found, not given, saves none: a partial folder's
    tables.regenerate(tmp_path)            # regenerate does not pin the rows it happened to find
    assert "rows" not in json.loads((tmp_path / "results.json").read_text())


def test_a_stopped_table_regenerates_over_its_finished_seeds_only(tmp_path):
    """A table whose runs have not all finished: only the seeds whose every row has finished enter it, so each
    difference pairs the same seeds (every finished run of a row would pair SPL's seed 2 with nothing); the seeds
    left out are named; once the run finishes, regenerate writes the whole table again."""
    table_folder(tmp_path, seeds=(0, 1, 2), skip={("ripu_points", 2)})
    results = {r["mode"]: r for r in tables.regenerate(tmp_path)["table"]}
    assert results["spl"]["mious"] == [0.70, 0.66] and results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["partial"]["missing"] == {"2": 1}
    assert "Left out: seed 2 (1 of 12 runs missing)" in (tmp_path / "results.md").read_text()
    write_run(tmp_path, "ripu_points-seed2", 0.6)
    results = {r["mode"]: r for r in tables.regenerate(tmp_path)["table"]}
    assert results["spl"]["vs_random"]["diffs"] == pytest.approx([0.02, 0.01, 0.40])
    assert "partial" not in json.loads((tmp_path / "results.json").read_text())
    assert "Left out" not in (tmp_path / "results.md").read_text()


def test_regenerate_refuses_a_folder_with_no_experiment_or_no_finished_seed(tmp_path):
    write_run(tmp_path, "spl-seed0", 0.7)          # (a sweep's whole-mask SPL has this name too: not a table)
    with pytest.raises(UsageError, match="holds no finished run of a table, a sweep"):
        tables.regenerate(tmp_path)
    write_run(tmp_path, "source_only-seed0", 0.3)
    with pytest.raises(UsageError, match="no seed has all 3 runs finished"):   # (source_only, spl, supervised)
        tables.regenerate(tmp_path)


def sweep_folder(folder, seeds=(0, 1, 2), skip=()):
    """A sweep at budget 0.001 (2 points of a 32x64 image): SPL's whole mask, adaptseg, supervised, and random,
    entropy, capped SPL, PPL and RIPU's regions there, with these mIoU by seed."""
    miou = {"random-budget0.001": (0.60, 0.61, 0.62), "entropy-budget0.001": (0.50, 0.52, 0.5),
            "spl-budget0.001": (0.61, 0.65, 0.70), "ripu_regions-budget0.001": (0.66, 0.60, 0.7)}
    for stem in ("spl", "adaptseg", "supervised", "random-budget0.001", "entropy-budget0.001", "spl-budget0.001",
                 "ppl-points2", "ripu_regions-budget0.001"):
        for s in seeds:
            if (stem, s) not in skip:
                write_run(folder, f"{stem}-seed{s}", miou.get(stem, (0.55, 0.55, 0.55))[s],
                          annotation_seconds={"per_image": 10.0 * (s + 1)})


def test_sweep_pairs_by_seed_at_the_same_budget_asked(tmp_path):
    """Each selector against random and entropy of the same seed and budget asked, RIPU's regions against capped
    SPL; PPL's run of 2 points per image is the budget 0.001 (0.001 x 2048 = 2); a seed not finished is left out
    of every difference."""
    sweep_folder(tmp_path, skip={("random-budget0.001", 1)})
    got = {(r["selector"], r["budget"]): r for r in tables.sweep(tmp_path)[0]}
    assert set(got) == {("spl (whole mask)", None), ("adaptseg", None), ("supervised", None), ("random", 0.001),
                        ("entropy", 0.001), ("spl", 0.001), ("ppl", 0.001), ("ripu regions", 0.001)}
    assert got["spl", 0.001]["seeds"] == [0, 2]
    assert got["spl", 0.001]["vs_random"]["diffs"] == pytest.approx([0.01, 0.08])
    assert got["spl", 0.001]["vs_entropy"]["diffs"] == pytest.approx([0.11, 0.20])
    assert got["entropy", 0.001]["vs_random"]["diffs"] == pytest.approx([-0.10, -0.12])
    assert got["ripu regions", 0.001]["vs_labor"]["diffs"] == pytest.approx([0.05, 0.00])
    assert "vs_random" not in got["adaptseg", None] and "vs_random" not in got["random", 0.001]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["budgets"] == [0.001] and saved["partial"] == {"missing": {"1": 1}}
    assert [r["run"] for r in saved["runs"][:4]] == ["spl-seed0", "adaptseg-seed0", "supervised-seed0",
                                                     "random-budget0.001-seed0"]
    assert "Left out: seed 1 (1 of 8 runs missing)" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "budget_curve.png").is_file()


def test_a_sweep_pairs_at_the_same_labelled_fraction_not_the_same_budget_asked(tmp_path):
    """RIPU's whole boxes buy twice the pixels asked at 0.1%: its partner is random's run at 0.2% (the same pixels),
    not at 0.1%; a fraction 4% off still pairs, one 6% off from every partner has no difference at all."""
    for s, (m_random1, m_random2, m_ripu) in enumerate([(0.60, 0.64, 0.61), (0.62, 0.65, 0.60)]):
        write_run(tmp_path, f"spl-seed{s}", 0.7)
        write_run(tmp_path, f"random-budget0.001-seed{s}", m_random1, labelled_fraction=0.001)
        write_run(tmp_path, f"random-budget0.002-seed{s}", m_random2, labelled_fraction=0.002)
        write_run(tmp_path, f"ripu_regions-budget0.001-seed{s}", m_ripu, labelled_fraction=0.002)
        write_run(tmp_path, f"entropy-budget0.001-seed{s}", 0.5, labelled_fraction=0.00104)   # 4% over random's
        write_run(tmp_path, f"ripu_regions-budget0.004-seed{s}", 0.66, labelled_fraction=0.00424)   # 6% over 0.004
        write_run(tmp_path, f"random-budget0.004-seed{s}", 0.66, labelled_fraction=0.004)
    got = {(r["selector"], r["budget"]): r for r in tables.sweep(tmp_path)[0]}
    ripu = got["ripu regions", 0.001]["vs_random"]
    assert ripu["diffs"] == pytest.approx([0.61 - 0.64, 0.60 - 0.65]) and ripu["partner_budget"] == 0.002
    assert tables._difference(ripu).endswith("(vs its 0.2% run)") and "unequal" not in tables._difference(ripu)
    assert got["entropy", 0.001]["vs_random"]["diffs"] == pytest.approx([0.5 - 0.60, 0.5 - 0.62])
    assert got["entropy", 0.001]["vs_random"]["partner_budget"] is None
    assert "vs_random" not in got["ripu regions", 0.004]
    assert "| ripu regions | 0.4 | 0.424 | 1.0 | - | 66.0 ± 0.0 | 66.0 / 66.0 | - | - | - | - |" in \
        (tmp_path / "sweep.md").read_text()


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
    got = {(e["selector"], e["seconds"]): e for e in tables.at_equal_seconds(rows, levels=(100.0, 300.0, 5.0))}
    assert got["random", 100.0]["mious"] == pytest.approx([0.60, 0.60])
    assert got["spl", 100.0]["vs_random"]["diffs"] == pytest.approx([0.04, 0.01])
    at300 = 0.50 + 0.20 * math.log(30) / math.log(100)         # random, seed 0, at 300 s
    frac = math.log(3) / math.log(4)                              # SPL: 300 s is log(3)/log(4) of the way 100 -> 400
    assert got["spl", 300.0]["mious"][0] == pytest.approx(0.64 + 0.05 * frac)
    assert got["spl", 300.0]["vs_random"]["diffs"][0] == pytest.approx(0.64 + 0.05 * frac - at300)
    assert ("random", 5.0) not in got and ("spl", 5.0) not in got        # below every run: no extrapolation
    assert got["ppl", 100.0]["mious"] == pytest.approx([0.60 + 0.03 * 0.5])  # two runs at 200 s: their mean, 0.63
    assert got["random", 100.0]["vs_random"] is None and all(k[0] != "adaptseg" for k in got)


def test_the_readme_brief_of_a_table_a_sweep_and_a_noise_experiment(tmp_path):
    """python -m tools.experiments brief FOLDER: per-seed values, the mean and the difference to random, bold only where
    the interval excludes zero; for a sweep per budget asked and at equal annotator seconds."""
    table_folder(tmp_path, seeds=(0, 1, 2))
    lines = tables.brief(tmp_path).splitlines()
    spl = next(line for line in lines if line.startswith("| spl |"))
    assert spl == "| spl | 70.0 / 66.0 / 90.0 | 75.3 | 1.00% | - | +14.33 [-40.90, +69.56] 3/3 |  |"   # 0.02, 0.01, 0.40
    sweep = tmp_path / "sweep"
    sweep_folder(sweep)
    lines = tables.brief(sweep).splitlines()
    assert lines[0] == ("| budget | random mIoU | entropy minus random | spl minus random | ppl minus random | "
                        "ripu regions minus random |")
    assert lines[2].startswith("| 0.1% | 61.0 | **-10.33 [") and "| +4.33 [" in lines[2]
    assert lines[4] == lines[0].replace("| budget |", "| annotator s / image |")
    tables.sweep(sweep)   # sweep.md's caption counts the family its † marks come from: brief says the same
    m = re.search(r"Holm's adjustment over the (\d+) paired", (sweep / "sweep.md").read_text())[1]
    assert f"† kept by Holm's adjustment over the {m} paired differences of the sweep (both tables)." in lines


def test_list_gives_each_runs_seeds_in_order_and_their_mean(tmp_path):
    for name, seed, miou in (("random-budget0.0002", 1, 0.60), ("random-budget0.0002", 0, 0.57), ("adaptseg", 0, 0.5)):
        write_run(tmp_path, f"{name}-seed{seed}", miou, eval_split="tune")
    lines = tables.listing(tmp_path).splitlines()
    assert "| random-budget0.0002 | tune | 1.000 | 57.00 / 60.00 | 0, 1 | 58.50 |" in lines
    assert "| adaptseg | tune | 1.000 | 50.00 | 0 | 50.00 |" in lines


def test_noise_beside_a_table_by_hand(tmp_path):
    """A noise experiment in a table's folder: its P = 0 runs are the table's (same names); per P, each row minus
    random at that P and minus itself at P = 0, over the seeds whose every noise run finished; the share of
    labels the annotator got wrong; regenerate rewrites the table too."""
    table_folder(tmp_path, seeds=(0, 1))
    miou = {("spl", 0.2): (0.60, 0.62), ("random", 0.2): (0.61, 0.60)}
    for (mode, p), values in miou.items():
        for s in (0, 1):
            write_run(tmp_path, f"{mode}-noise{p:g}-seed{s}", values[s], labelled_pixels=20 if mode == "spl" else 40,
                      annotator_wrong_labels=2)
    done = tables.regenerate(tmp_path)
    assert set(done) == {"table", "noise"}
    got = {(e["level"], e["row"]): e for e in done["noise"]}
    assert got[0.2, "spl"]["vs_random"]["diffs"] == pytest.approx([-0.01, 0.02])
    assert got[0.2, "spl"]["vs_perfect"]["diffs"] == pytest.approx([-0.10, -0.04])
    assert got[0.0, "spl"]["vs_perfect"] is None and got[0.2, "random"]["vs_random"] is None
    # the change of SPL's lead: (0.60 - 0.61) - (0.70 - 0.68) = -0.03 and (0.62 - 0.60) - (0.66 - 0.65) = +0.01
    assert got[0.2, "spl"]["lead_change"]["diffs"] == pytest.approx([-0.03, 0.01])
    assert got[0.0, "spl"]["lead_change"] is None and got[0.2, "random"]["lead_change"] is None
    assert got[0.2, "spl"]["wrong_share"] == pytest.approx(2 / 20) and got[0.2, "random"]["wrong_share"] == 2 / 40
    assert "| 0.2 | spl | 61.0 ± 1.4 |" in (tmp_path / "noise.md").read_text() and (tmp_path / "noise.png").is_file()
    brief = tables.brief(tmp_path).splitlines()
    assert ("| P (annotator errs at outlines) | wrong labels (SPL) | spl mIoU | random mIoU | spl minus random | "
            "spl's lead, change since P = 0 |") in brief
    assert "| 0.2 | 10.0% | 61.0 | 60.5 | +0.50 [-18.56, +19.56] 1/2 | -1.00 [-26.41, +24.41] 1/2 |" in brief


# ------------------------------------------------------------------------------------------------ the commands

def plan(*words):
    """The commands `python -m tools.experiments WORDS --print` prints, as {stage: [argument lists after train.py]}."""
    a, passed = experiments.build_parser().parse_known_args(words)
    stages = experiments.plan_stages(a, passed)
    return [[c[2:] for c in cmds] for cmds in stages]


def flag(cmd, name):
    return cmd[len(cmd) - 1 - cmd[::-1].index(name) + 1] if name in cmd else None


def test_a_table_is_spl_source_only_and_supervised_first_then_the_rest_from_spls_warm_up(tmp_path):
    stages = plan("table", "--seeds", "0", "1", "--out", str(tmp_path), *SIZE)
    assert [sorted(flag(c, "--out").rpartition("/")[2] for c in s if flag(c, "--seed") == "0") for s in stages] == [
        ["source_only-seed0", "spl-seed0", "supervised-seed0"],
        sorted(f"{stem}-seed0" for *_, stem, _ in tables.TABLE_ROWS if stem not in experiments.STAGE_1)]
    second = {flag(c, "--out").rpartition("/")[2]: c for c in stages[1]}
    spl1 = str(tmp_path / "spl-seed1")
    assert flag(second["random-seed1"], "--init-from") == spl1 and flag(second["random-seed1"], "--budget-from") == spl1
    assert flag(second["ppl-cell8-seed1"], "--ppl-cell") == "8" and flag(second["ppl-seed1"], "--budget-from") is None
    assert flag(second["ripu-seed1"], "--init-from") is None          # RIPU as published trains its own from scratch
    assert float(flag(second["random-points-seed1"], "--budget")) == 40 / 2048
    assert all(flag(c, "--init-from") is None for c in stages[0])
    # every command is one train.py's parser accepts, with the experiment's flags
    for c in stages[0] + stages[1]:
        assert flags.build_parser().parse_args(c).size == [32, 64]


def test_a_sweep_gives_point_selectors_as_many_points_and_refuses_budgets_of_one_run(tmp_path):
    stages = plan("sweep", "--budgets", "0.001", "0.005", "--selectors", "random", "ppl", "ppl-cell8", "margin",
                  "--out", str(tmp_path), *SIZE)
    names = [flag(c, "--out").rpartition("/")[2] for c in stages[1]]
    assert names == ["adaptseg-seed0", "random-budget0.001-seed0", "ppl-points2-seed0",
                     "ppl-points2-ppl_cell8-seed0", "margin-budget0.001-seed0", "random-budget0.005-seed0",
                     "ppl-points10-seed0", "ppl-points10-ppl_cell8-seed0", "margin-budget0.005-seed0"]
    with pytest.raises(UsageError, match="ppl-points2-seed0"):   # 0.001 and 0.0011 give 2 points each
        plan("sweep", "--budgets", "0.001", "0.0011", "--selectors", "ppl", "--out", str(tmp_path), *SIZE)


def test_noise_buys_spls_fraction_at_every_level_from_the_first_levels_spl(tmp_path):
    """Every run of a seed starts from the first level's SPL (its warm-up and B) and random buys its labelled
    fraction: the mask is chosen before the annotator errs, so SPL buys the same at every P."""
    stages = plan("noise", "--noise-levels", "0.2", "0", "--out", str(tmp_path), *SIZE)
    assert [flag(c, "--out").rpartition("/")[2] for c in stages[0]] == ["spl-seed0"]
    second = {flag(c, "--out").rpartition("/")[2]: c for c in stages[1]}
    assert sorted(second) == ["random-noise0.2-seed0", "random-seed0", "ripu_regions-noise0.2-seed0",
                              "ripu_regions-seed0", "spl-noise0.2-seed0"]
    spl = str(tmp_path / "spl-seed0")
    assert flag(second["random-noise0.2-seed0"], "--budget-from") == spl
    assert flag(second["spl-noise0.2-seed0"], "--init-from") == spl and flag(second["spl-noise0.2-seed0"],
                                                                             "--annotator-noise") == "0.2"
    for words, message in ((["--budget", "0.01"], "no --budget"), (["--selectors", "spl", "entropy"], "spl and random")):
        with pytest.raises(UsageError, match=message):
            plan("noise", "--out", str(tmp_path), *words)
    with pytest.raises(UsageError, match="invalid choice"):                      # PPL buys points, not SPL's fraction
        plan("noise", "--selectors", "spl", "random", "ppl")
    with pytest.raises(UsageError, match="above 0"):
        plan("noise", "--noise-levels", "0", "--out", str(tmp_path))
    # under the joint schedule each level's SPL runs alone (its later rounds see the noisy labels): random buys
    # the fraction SPL bought at the same P
    stages = plan("noise", "--noise-levels", "0", "0.2", "--schedule", "joint", "--out", str(tmp_path), *SIZE)
    assert sorted(flag(c, "--out").rpartition("/")[2] for c in stages[0]) == ["spl-noise0.2-seed0", "spl-seed0"]
    second = {flag(c, "--out").rpartition("/")[2]: c for c in stages[1]}
    assert flag(second["random-noise0.2-seed0"], "--budget-from") == str(tmp_path / "spl-noise0.2-seed0")
    assert all(flag(c, "--init-from") is None for c in stages[1])


def test_a_sweep_of_selectors_without_b_trains_no_b(tmp_path):
    """--selectors margin random: no selector reads B, so no SPL run trains one; the first selector's run trains the
    seed's warm-up (stage 1) and every other run of the seed, adaptseg too, starts from it."""
    stages = plan("sweep", "--budgets", "0.001", "0.005", "--selectors", "margin", "random", "--out", str(tmp_path),
                  *SIZE)
    names = [[flag(c, "--out").rpartition("/")[2] for c in stage] for stage in stages]
    assert names[0] == ["supervised-seed0", "random-budget0.001-seed0"]
    assert not any(n.startswith("spl") for stage in names for n in stage)
    assert sorted(names[1]) == ["adaptseg-seed0", "margin-budget0.001-seed0", "margin-budget0.005-seed0",
                                "random-budget0.005-seed0"]
    assert {flag(c, "--init-from") for c in stages[1]} == {str(tmp_path / "random-budget0.001-seed0")}
    with_b = plan("sweep", "--budgets", "0.001", "--selectors", "margin", "ppl", "--out", str(tmp_path / "b"), *SIZE)
    assert [flag(c, "--out").rpartition("/")[2] for c in with_b[0]] == ["spl-seed0", "supervised-seed0"]


def test_a_finished_run_is_skipped_a_stopped_one_resumed_and_other_settings_refused(tmp_path):
    """The same command again: a run whose metrics.json has the command's settings is left out; one with a
    checkpoint and no metrics.json continues with --resume; either with other settings is refused by name, before
    anything runs. Runs saved before a default changed count with what they did (files.effective)."""
    words = ("sweep", "--budgets", "0.001", "--selectors", "random", "spl", "--out", str(tmp_path), *SIZE)
    first = plan(*words)
    done = train.get_args(first[0][0])                              # spl-seed0, as it ran
    write_run(tmp_path, "spl-seed0", 0.7)
    (tmp_path / "spl-seed0" / "metrics.json").write_text(json.dumps({"miou": 0.7, "args": files.args_dict(done)}))
    (tmp_path / "spl-seed0" / files.WARMUP).write_bytes(b"")          # (the others start from it: it must be there)
    stopped = train.get_args(first[1][1])                           # random-budget0.001-seed0, stopped
    (tmp_path / "random-budget0.001-seed0").mkdir()
    files.save_atomic({"format": files.FORMAT, "args": files.args_dict(stopped)},
                     tmp_path / "random-budget0.001-seed0" / files.CHECKPOINT)
    again = plan(*words)
    assert [flag(c, "--out").rpartition("/")[2] for c in again[0]] == ["supervised-seed0"]
    assert again[1][1] == ["--resume", str(tmp_path / "random-budget0.001-seed0")]
    assert "--device" not in again[1][1]
    assert plan(*words, "--device", "cpu")[1][1] == ["--resume", str(tmp_path / "random-budget0.001-seed0"), "--device",
                                                     "cpu"]   # a resumed run keeps the flags of where it runs
    assert flag(again[1][0], "--init-from") == str(tmp_path / "spl-seed0")   # adaptseg starts from SPL's warm-up ...
    (tmp_path / "spl-seed0" / files.WARMUP).unlink()
    assert flag(plan(*words)[1][0], "--init-from") is None   # ... or, its warmup.pt gone (not committed), its own
    with pytest.raises(UsageError, match=r"holds a finished run with other settings \(--iters 500 -> 9\)"):
        plan(*words, "--iters", "9")
    (tmp_path / "spl-seed0" / "metrics.json").unlink()
    with pytest.raises(UsageError, match=r"random-budget0.001-seed0 holds a stopped run with other settings "
                                              r"\(--lr 0.01 -> 0.02\)"):
        plan(*words, "--lr", "0.02")


def test_changed_settings_reads_old_runs_as_they_acted():
    """Runs saved before a default changed wrote the same settings otherwise; a setting that does not act on the
    run's mode is not compared (random pixels do not depend on B's --lambda-dis)."""
    now = {"schedule": "staged", "select_at": None, "shift": 0.6, "thing_shift": 0.6, "iters": 8}
    before = {"schedule": "staged", "select_at": [0.5], "shift": 0.6, "thing_shift": None, "iters": 8}
    assert files.changed_settings(before, now) == []
    assert files.changed_settings(before, {**now, "profile": False, "init_from": "x", "shared_dir": None}) == []
    assert files.changed_settings({**before, "schedule": "joint"}, {**now, "schedule": "joint"}) == [
        "--select-at [0.5] -> None"]
    assert files.changed_settings(before, {**now, "thing_shift": 0.0}) == ["--thing-shift 0.6 -> 0.0"]
    spl = {**now, "mode": "spl", "budget": 0.01}
    assert files.changed_settings(spl, {**spl, "spl_cap": "discrepancy"}) == []
    assert files.changed_settings(spl, {**spl, "spl_cap": "random"}) == ["--spl-cap discrepancy -> random"]
    rnd = {**now, "mode": "random", "budget": 0.01, "lambda_dis": 0.2}
    assert files.changed_settings(rnd, {**rnd, "lambda_dis": 0.05}) == []
    assert files.changed_settings({**spl, "lambda_dis": 0.2}, {**spl, "lambda_dis": 0.05}) == ["--lambda-dis 0.2 -> 0.05"]
    ppl = {**now, "mode": "ppl"}
    assert files.changed_settings(ppl, {**ppl, "ppl_cell": 8}) == ["--ppl-cell 0 -> 8"]
    assert files.changed_settings({**spl, "ppl_cell": 0}, {**spl, "ppl_cell": 8}) == []
    assert files.changed_settings(spl, {**spl, "lr": 0.5}, keys=files.WARMUP_KEYS) == ["--lr None -> 0.5"]
    assert files.changed_settings(spl, {**spl, "budget": 0.5}, keys=files.WARMUP_KEYS) == []


def test_print_gives_commands_a_shell_runs_as_they_are(tmp_path, capsys):
    """--print: one command a line, stage by stage, each `python train.py ...` that a shell splits back into the
    same words (paths with spaces quoted)."""
    out = tmp_path / "with space"
    experiments.main(["table", "--print", "--out", str(out), *SIZE])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "# stage 1 of 2" and printed[4].startswith("# stage 2 of 2")
    commands = [shlex.split(line) for line in printed if not line.startswith("#")]
    assert all(c[0] == "python" and Path(c[1]).resolve() == Path(train.__file__).resolve() for c in commands)
    assert len(commands) == 12
    assert flag(commands[0], "--out").startswith(str(out)) and not out.exists()     # printed, nothing run


def test_slurm_submits_one_job_array_per_stage_the_second_after_the_first(tmp_path):
    """--slurm PARTITION: the sbatch script submitit writes (against submitit's own stand-in for sbatch): one array
    per stage, on the partition, with --gpus-per-run GPUs, --time minutes, and stage 2 waiting on stage 1."""
    from submitit.slurm import test_slurm
    a, passed = experiments.build_parser().parse_known_args(
        ["table", "--seeds", "0", "1", "--slurm", "gpu", "--gpus-per-run", "2", "--time", "90", "--out",
         str(tmp_path), *SIZE])
    stages = experiments.plan_stages(a, passed)
    with test_slurm.mocked_slurm():
        jobs = experiments.submit_slurm(stages, a, tmp_path)
    assert [len(j) for j in jobs] == [6, 18]
    scripts = sorted((tmp_path / "slurm").glob("*submission.sh"), key=lambda p: p.stat().st_mtime_ns)
    first, second = (p.read_text() for p in (scripts[0], scripts[-1]))
    for text, n in ((first, 6), (second, 18)):
        assert "#SBATCH --partition=gpu" in text and "#SBATCH --gpus-per-node=2" in text
        assert "#SBATCH --time=90" in text and f"#SBATCH --array=0-{n - 1}%{n}" in text
    assert "#SBATCH --dependency=afterok:" + jobs[0][0].job_id.split("_")[0] in second
    assert "--dependency" not in first


def test_the_experiments_command_line_ends_a_users_mistake_with_one_line(tmp_path):
    """python -m tools.experiments with a folder holding no experiment, or a bad flag of train.py: one 'error:' line, exit
    code 2, no traceback (as train.py's errors); train.py --mode table names the new command."""
    for words in (["regenerate", str(tmp_path)], ["table", "--lr", "-1", "--print"], ["sweep", "--mode", "spl"]):
        done = subprocess.run([sys.executable, "-m", "tools.experiments", *words], capture_output=True,
                              text=True)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr, words
        assert len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(UsageError, match=r"python -m tools.experiments table --seeds 0 1 --iters 60"):
        train.get_args(["--mode", "table", "--seeds", "0", "1", "--iters", "60"])


@pytest.mark.parametrize("words, name", [
    (["table", "--seeds", "-1"], "--seeds"), (["table", "--seeds", "0", "x"], "--seeds"), (["table", "--seeds", "0", "1", "0"],
                                                                                      "given twice"),
    (["table", "--jobs", "0"], "--jobs"), (["sweep", "--budgets", "0"], "--budgets"),
    (["sweep", "--budgets", "0.01", "0.01"], "given twice"), (["sweep", "--selectors", "bogus"], "--selectors"),
    (["noise", "--noise-levels", "1.5"], "--noise-levels"), (["table", "--gpus-per-run", "-1"], "--gpus-per-run"),
    (["table", "--time", "0"], "--time"), (["table", "--iters", "0"], "--iters"), (["brief"], "FOLDER"),
    (["regenerate", "x", "--iters", "3"], "--iters")])
def test_every_flag_of_an_experiment_refuses_a_bad_value_with_one_line(words, name, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        experiments.main([*words, "--print"] if words[0] in ("table", "sweep", "noise") else words)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert name in err, err


# ------------------------------------------------------------------------------------------------ provenance

def test_a_run_records_its_commit_and_machine():
    """metrics.json's platform gets the commit of the code (and whether tracked files differ from it) and the CPU's
    model: what a reader needs to tell which code and machine made a number (results differ between CPU models)."""
    import torch
    p = files.provenance(torch.device("cpu"))
    head = subprocess.run(["git", "-C", str(Path(files.__file__).parents[1]), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    assert p["commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert p["dirty"] in (True, False, None) and p["cpu"] and p["gpu"] is None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        assert not models or p["cpu"] == models[0]


def test_tables_name_the_commits_and_cpus_behind_them(tmp_path):
    """results.md/json and brief count the runs per commit and per CPU; a run from before these keys is 'unknown'
    (committed runs are not rewritten)."""
    table_folder(tmp_path, seeds=(0, 1))
    for k, f in enumerate(sorted(tmp_path.glob("*-seed0/metrics.json"))):
        m = json.loads(f.read_text())
        m["platform"] = {"commit": "a" * 40, "dirty": k == 0, "cpu": "Test CPU"}
        f.write_text(json.dumps(m))
    n = len(tables.TABLE_ROWS)
    tables.table(tmp_path)
    made = json.loads((tmp_path / "results.json").read_text())["made_by"]
    assert made == {"commits": {"unknown": n, "aaaaaaaaaaaa": n - 1, "aaaaaaaaaaaa with uncommitted changes": 1},
                    "cpus": {"unknown": n, "Test CPU": n}}
    line = f"Made by: commit unknown ({n} runs), aaaaaaaaaaaa ({n - 1} runs), aaaaaaaaaaaa with uncommitted changes " \
           f"(1 run); CPU Test CPU ({n} runs), unknown ({n} runs)."
    assert line in (tmp_path / "results.md").read_text() and tables.brief(tmp_path).splitlines()[-1] == line


def test_a_pair_at_unequal_budgets_is_marked(tmp_path):
    """A comparison "at the same budget" whose labelled fractions differ by more than 5% says by how much (RIPU's
    whole boxes overshoot a small budget); within 5% it reads as a plain difference; never against supervised."""
    table_folder(tmp := tmp_path, seeds=(0, 1))
    for s in (0, 1):
        for stem, fraction in (("ripu_regions", 0.02), ("entropy", 0.0104)):
            f = tmp / f"{stem}-seed{s}" / "metrics.json"
            f.write_text(json.dumps({**json.loads(f.read_text()), "labelled_fraction": fraction}))
    got = {r["mode"]: r for r in tables.table(tmp)}
    assert got["ripu regions"]["vs_random"]["pixels_ratio"] == pytest.approx(2.0)
    assert tables._difference(got["ripu regions"]["vs_random"]).endswith("(unequal: 2.00x the pixels)")
    assert "unequal" not in tables._difference(got["entropy"]["vs_random"])            # 4% apart: the same budget
    assert got["spl"]["vs_supervised"]["pixels_ratio"] is None


def test_compare_pools_the_seeds_of_several_folders(tmp_path):
    """python -m tools.experiments compare spl random A B: seeds 0, 1 from one folder and seed 2 from another, paired seed
    by seed (0.02, 0.01, 0.40, as in the brief's table above); an unfinished partner leaves its seed out."""
    table_folder(tmp_path / "a", seeds=(0, 1))
    table_folder(tmp_path / "b", seeds=(2,))
    write_run(tmp_path / "b", "spl-seed3", 0.9)                     # no random-seed3: seed 3 is not paired
    got, text = tables.compare("spl", "random", [tmp_path / "a", tmp_path / "b"])
    assert got["seeds"] == [0, 1, 2] and got["diffs"] == pytest.approx([0.02, 0.01, 0.40])
    assert text.startswith("spl minus random, seeds [0, 1, 2]: +14.33 [-40.90, +69.56] 3/3")
    out = subprocess.run([sys.executable, "-m", "tools.experiments", "compare", "spl", "random", str(tmp_path / "a")],
                         capture_output=True, text=True, cwd=Path(tables.__file__).parents[1])
    assert out.returncode == 0 and "seeds [0, 1]" in out.stdout
    with pytest.raises(UsageError, match="fewer than two seeds"):
        tables.compare("spl", "random", [tmp_path / "b"])
