"""The tables of an experiment, from its runs' metrics.json alone: every run folder <name>-seed<S> is found by its
name, and only the seeds whose every run has finished enter a table, so each paired difference compares the same
seeds. No run is trained or checked here; tools/experiments.py makes the runs and calls these (regenerate, brief, list).

    table       the miniature Table 1 (TABLE_ROWS): results.md, results.json, results.png
    sweep       the budget curve: sweep.md, sweep.json, budget_curve.png (and each selector at equal seconds)
    noise       an annotator who errs at outlines: noise.md, noise.json, noise.png
    regenerate  every one of them a folder holds; brief: the README's short form; listing: any folder of runs

Statistics: each seed's mIoU minus its partner's at the same budget, the mean and a 95% Student-t interval on the
paired differences (scipy.stats).
"""
import argparse
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.stats

import data
import selection
from tools import UsageError, figures

# The rows of the miniature Table 1: (row, mode, settings, run folder stem, budget). The paper's rules by default; our
# variants and RIPU's selector are rows of their own beside them. budget "spl": SPL's labelled fraction of the same
# seed; "points": --points pixels per image (as PPL's clicks); None: the mode's own.
TABLE_ROWS = (("source_only", "source_only", {}, "source_only", None), ("adaptseg", "adaptseg", {}, "adaptseg", None),
              ("random", "random", {}, "random", "spl"), ("entropy", "entropy", {}, "entropy", "spl"),
              ("spl", "spl", {}, "spl", None), ("ppl", "ppl", {}, "ppl", None),
              ("ppl, cell 8", "ppl", {"ppl_cell": 8}, "ppl-cell8", None),
              ("random, 40 px", "random", {}, "random-points", "points"),
              ("ripu regions", "ripu_regions", {}, "ripu_regions", "spl"),
              ("ripu points", "ripu_points", {}, "ripu_points", None),
              ("ripu as published", "ripu", {}, "ripu", "spl"),
              ("supervised", "supervised", {}, "supervised", None))
# RIPU against LabOR at the same budget: its regions against SPL, its points against the paper's PPL.
LABOR_PARTNERS = {"ripu regions": "spl", "ripu as published": "spl", "ripu points": "ppl"}
# Published mIoU, GTA5 -> Cityscapes, DeepLab-V2: source only and AdaptSegNet (multi-level) from Tsai et al. 2018,
# LabOR SPL (2.2% of pixels) from Shin et al. 2021, whose fully supervised model is within 0.1 of it.
PAPER_TABLE = {"source_only": 36.6, "adaptseg": 42.4, "spl": 66.6}
# The sweep's selectors: each of selection.SELECTORS and our variants, as (--selectors key, label, mode, settings).
SWEEP = [(k, selection.label(k), k, {}) for k in selection.SELECTORS] + [
    (k, lab, mode, settings) for k, (mode, settings, lab, _) in selection.VARIANTS.items()]
SWEEP.sort(key=lambda s: list(figures.selector_styles()).index(s[1]))   # a variant after its selector


def noise_stem(mode, p):
    """At P = 0 the table's own name, so --out a table folder reuses its runs; <mode>-noise<P> otherwise."""
    return mode if p == 0 else f"{mode}-noise{p:g}"


# ------------------------------------------------------------------------------------------------ statistics

def paired_difference(a, b):
    """a - b seed by seed (two lists over the same seeds, in the same order): the differences, their mean and a 95%
    confidence interval for it from Student's t on the paired differences (scipy.stats.ttest_rel: mean +- t(0.975;
    n-1) sd / sqrt(n)). `excludes_zero`: the interval lies wholly above or below zero; one seed has no interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n, mean = len(d), float(np.mean(d))
    signs = {"positive": int((d > 0).sum()), "sign_p": float(scipy.stats.binomtest(int((d > 0).sum()), n).pvalue)
             if n and not (d == 0).any() else None}   # the sign test: how many seeds favour a, against a coin
    if n < 2:
        return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": None, "excludes_zero": None, "p": None, **signs}
    if np.all(d == d[0]):   # no spread: the interval is the point itself
        lo = hi = mean
        p = 0.0 if mean else 1.0
    else:
        t = scipy.stats.ttest_rel(a, b)
        (lo, hi), p = map(float, t.confidence_interval(0.95)), float(t.pvalue)
    return {"diffs": d.tolist(), "n": n, "mean": mean, "ci95": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0),
            "p": p, **signs}


EQUAL_BUDGET = 0.05   # "the same budget": labelled fractions within 5% of each other


def pixels_ratio(runs, partners):
    """The row's mean labelled fraction over its partner's: a comparison "at the same budget" is one only when this
    is within EQUAL_BUDGET of 1 (RIPU's whole 3x3 boxes overshoot a small budget; a mask may fall short of a cap)."""
    mine, theirs = mean_of(runs, "labelled_fraction"), mean_of(partners, "labelled_fraction")
    return float(mine / theirs) if mine and theirs else None


def same_fraction(runs, partner, groups):
    """The budget asked of the partner's runs that labelled the same fraction as `runs` (within EQUAL_BUDGET; the
    closest, the same budget asked first), or None: RIPU's whole 3x3 boxes buy 2.25x the pixels asked at 0.02%, so
    its partner there is random at 0.05%, not at 0.02%. groups: {(selector, budget asked): runs}."""
    budgets = sorted((b for (sel, b) in groups if sel == partner and b is not None),
                     key=lambda b: (abs(pixels_ratio(runs, groups[partner, b]) - 1), b != runs[0]["budget"]))
    return next((b for b in budgets if abs(pixels_ratio(runs, groups[partner, b]) - 1) <= EQUAL_BUDGET), None)


def holm(differences, alpha=0.05):
    """Holm's step-down adjustment over a family of paired differences (a table's): d["holm"] is True where the
    difference stays significant at `alpha` with every comparison of the family counted (the smallest p against
    alpha / m, the next against alpha / (m - 1), ..., stopping at the first that fails). Returns m."""
    tested = sorted((d for d in differences if d and d.get("p") is not None), key=lambda d: d["p"])
    going = True
    for i, d in enumerate(tested):
        going = going and d["p"] <= alpha / (len(tested) - i)
        d["holm"] = going
    return len(tested)


def spread(values):
    """The standard deviation over seeds, with n - 1 (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_of(metrics, key, part=None):
    """The mean of metrics.json's `key` (its `part`) over the runs that have it (None where none has)."""
    values = [m[key] if part is None else m[key][part] for m in metrics if m.get(key) is not None]
    return float(np.mean(values)) if values else None


def image_pixels(args):
    """Pixels of one target-train image, as the annotator sees it."""
    h, w = args.size if args.data == "synthetic" else \
        data.real_sizes(args.preset, args.source_size, args.target_size)[1][::-1]   # (W, H) -> (H, W)
    return h * w


def _difference(d, bold=False):
    """A paired difference for a table cell: mean [interval], in points of mIoU; * where it excludes zero, † where it
    still does after Holm's adjustment over its table's comparisons, then k/n: the seeds where it is positive, and
    "(unequal: r x the pixels)" where the two rows' labelled fractions differ by more than EQUAL_BUDGET; "-" for
    none. bold (the README's brief): **bold** where it excludes zero instead of *, "" for none."""
    if not d:
        return "" if bold else "-"
    if d["ci95"] is None:
        return f"{100 * d['mean']:+.2f}"
    lo, hi = (100 * v for v in d["ci95"])
    text = f"{100 * d['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    signs = f" {d['positive']}/{d['n']}" if "positive" in d else ""   # (runs summarised before the sign count)
    ratio = d.get("pixels_ratio")
    if ratio and abs(ratio - 1) > EQUAL_BUDGET:   # not the same budget: say by how much
        signs += f" (unequal: {ratio:.2f}x the pixels)"
    if d.get("partner_budget") is not None:       # the partner's run at another budget asked, the same pixels
        signs += f" (vs its {100 * d['partner_budget']:g}% run)"
    if bold:
        return (f"**{text}**" if d["excludes_zero"] else text) + ("†" if d.get("holm") else "") + signs
    return text + (" *" if d["excludes_zero"] else "") + ("†" if d.get("holm") else "") + signs


def benchmark_name(args):
    """The data the runs used, as the first line of results.md and sweep.md names it."""
    if args["data"] != "synthetic":
        return args["data"]
    thing = args["shift"] if args.get("thing_shift") is None else args["thing_shift"]
    return f"synthetic benchmark (--shift {args['shift']:g}, --thing-shift {thing:g})"


def seeds_and_runs(folder, stems):
    """(seeds, {stem: [metrics per seed]}, missing): the seeds whose every run <stem>-seed<S> has finished (each
    paired difference compares the same seeds), their metrics, and {seed: runs missing} of the other seeds begun."""
    found = {}
    for f in Path(folder).glob("*-seed*/metrics.json"):
        stem, _, seed = f.parent.name.rpartition("-seed")
        if seed.isdigit() and stem in stems:
            found.setdefault(int(seed), {})[stem] = json.loads(f.read_text())
    seeds = sorted(s for s, got in found.items() if len(got) == len(stems))
    missing = {s: len(stems) - len(got) for s, got in sorted(found.items()) if s not in seeds}
    if not seeds:
        raise UsageError(f"{folder}: no seed has all {len(stems)} runs finished yet; nothing to summarise")
    return seeds, {stem: [found[s][stem] for s in seeds] for stem in stems}, missing


def made_by(folder, runs):
    """Which code and machines made these runs, from their metrics.json (platform: commit, dirty, cpu, gpu; a run
    from before these keys reads 'unknown'). Returns ({"commits": {commit: runs}, "cpus": {cpu: runs}}, a line)."""
    commits, cpus = Counter(), Counter()
    for run in runs:
        p = json.loads((Path(folder) / run / "metrics.json").read_text()).get("platform", {})
        commits[p.get("commit", "unknown")[:12] + (" with uncommitted changes" if p.get("dirty") else "")] += 1
        cpus[p.get("cpu", "unknown") + (f" + {p['gpu']}" if p.get("gpu") else "")] += 1
    def counted(c):
        return ", ".join(f"{k} ({n} run{'s' if n > 1 else ''})" for k, n in c.most_common())
    line = f"Made by: commit {counted(commits)}; CPU {counted(cpus)}."
    return {"commits": dict(commits), "cpus": dict(cpus)}, line


def partial_line(missing, n):
    return "" if not missing else "\n\nPartial: only the seeds whose every run had finished. Left out: " + "; ".join(
        f"seed {s} ({k} of {n} runs missing)" for s, k in missing.items()) + "."


def summary(mious, metrics, **more):
    return {"miou_mean": float(np.mean(mious)), "miou_std": spread(mious), "mious": mious,
            "labelled_fraction": mean_of(metrics, "labelled_fraction"),
            "points_per_image": mean_of(metrics, "points_per_image"),
            "required_fraction": mean_of(metrics, "required_fraction"), **more}


# ------------------------------------------------------------------------------------------------ the table

CAPTION = ("Differences are paired over the seeds: each seed's mIoU minus its partner's at the same labelled "
           "fraction (random at SPL's budget, or at {points} px per image for the point selectors; entropy at SPL's "
           "budget; RIPU's regions against SPL, its points against the paper's PPL), in points, with their mean and "
           "a 95% confidence interval from Student's t on the paired differences (n - 1 degrees of freedom); * marks "
           "an interval that excludes zero.")


HOLM = (" † marks an interval that still excludes zero after Holm's adjustment over the {m} paired differences this "
        "table prints (one in twenty would exclude zero by chance if nothing were there); k/n: the seeds on which the "
        "difference is positive (a sign test's count). \"At the same budget\" means labelled fractions within 5%; "
        "a pair further apart is marked (unequal: r x the pixels, the row's over its partner's) and is no such "
        "comparison.")


def table_rows(folder, stems=None):
    """The rows of TABLE_ROWS given by their run names (`stems`, as --rows), or else those a table of given rows
    saved in the folder's results.json (so regenerate writes the same table), or else those whose runs the folder
    holds, begun or finished. Source-only (the floor), SPL (every seed's warm-up) and supervised (the ceiling) are
    always in it. Returns (the rows, whether they were given or saved rather than found)."""
    needed, saved = {"source_only", "spl", "supervised"}, Path(folder) / "results.json"
    stems = stems or (json.loads(saved.read_text()).get("rows") if saved.is_file() else None)
    given, stems = bool(stems), stems or [
        r[3] for r in TABLE_ROWS if r[3] in needed or any(Path(folder).glob(f"{r[3]}-seed[0-9]*"))]
    if not needed <= set(stems):
        raise UsageError("a table needs the rows source_only (the floor), spl (every seed's warm-up) and supervised "
                         f"(the ceiling); give them among --rows (got {' '.join(stems)})")
    return [r for r in TABLE_ROWS if r[3] in stems], given


def per_class(runs, partners=None):
    """{class: mean IoU over the seeds} of a row's runs; with `partners` (the same seeds' runs of another row), the
    paired difference per class instead: {class: {"mean", "positive", "n"}}, a class absent in both left out. None
    where a run has no per-class IoU."""
    if any(m.get("per_class_iou") is None for m in [*runs, *(partners or [])]):
        return None
    names = runs[0]["per_class_iou"]
    as_array = lambda ms: np.array([[m["per_class_iou"][c] for c in names] for m in ms], dtype=float)  # noqa: E731
    ious = as_array(runs)                                           # (seeds, classes), NaN where a class is unseen
    if partners is None:
        return {c: float(np.nanmean(ious[:, k])) if not np.isnan(ious[:, k]).all() else None
                for k, c in enumerate(names)}
    d = ious - as_array(partners)                                   # (seeds, classes)
    return {c: {"mean": float(np.nanmean(d[:, k])), "positive": int((d[:, k] > 0).sum()),
                "n": int((~np.isnan(d[:, k])).sum())} for k, c in enumerate(names) if not np.isnan(d[:, k]).all()}


def table(folder, quiet=True, files=True, stems=None):
    """results.md, results.json and results.png from the table's runs in `folder` (the rows of TABLE_ROWS whose runs
    it holds, found by name, or those of `stems`)."""
    table_rows_, given = table_rows(folder, stems)
    seeds, by_stem, missing = seeds_and_runs(folder, [r[3] for r in table_rows_])
    rows = {row: by_stem[stem] for row, _, _, stem, _ in table_rows_}
    mious = {row: [m["miou"] for m in ms] for row, ms in rows.items()}
    results = []
    for row, mode, settings, _, _ in table_rows_:   # each selector against random (and entropy) at its budget
        sel = selection.modes()[mode].selector
        picks = sel not in (None, selection.EVERY_PIXEL) and mode != "random"
        fraction = picks and sel.budget == "fraction"
        partners = {"vs_random": ("random" if fraction else "random, 40 px") if picks else None,
                    "vs_entropy": "entropy" if fraction and mode != "entropy" else None,
                    "vs_labor": LABOR_PARTNERS.get(row), "vs_supervised": "supervised" if row != "supervised" else None}
        partners = {k: p if p in rows else None for k, p in partners.items()}   # (a row the table was not given)
        vs = {k: p and {"partner": p, **paired_difference(mious[row], mious[p]),
                        "pixels_ratio": None if k == "vs_supervised" else pixels_ratio(rows[row], rows[p])}
              for k, p in partners.items()}   # (against every pixel is no "same budget" comparison)
        results.append({"mode": row, **summary(mious[row], rows[row]),
                        "of_supervised": float(np.mean(mious[row]) / np.mean(mious["supervised"])),
                        "annotation_seconds": mean_of(rows[row], "annotation_seconds", "per_image"),
                        "wall_seconds": mean_of(rows[row], "wall_seconds"), **vs,
                        "per_class_iou": per_class(rows[row]), "per_class_vs_random": vs["vs_random"] and per_class(
                            rows[row], rows[vs["vs_random"]["partner"]])})
    order = ("mode", "miou_mean", "miou_std", "mious", "of_supervised", "labelled_fraction", "points_per_image",
             "required_fraction", "annotation_seconds", "wall_seconds", "vs_random", "vs_entropy", "vs_labor",
             "vs_supervised", "per_class_iou", "per_class_vs_random")
    results = [{k: r[k] for k in order} for r in results]
    family = holm([r[k] for r in results for k in ("vs_random", "vs_entropy", "vs_labor", "vs_supervised")])
    args = rows["spl"][0]["args"]
    lines = [f"Miniature Table 1: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, schedule "
             f"{args['schedule']}, model {args['model']}.", "",
             "| method | mIoU (%) | per seed | of supervised | labelled pixels (%) | px / image | annotator time per "
             "image (s) | required_fraction | minus random | minus entropy | RIPU minus LabOR | minus supervised | "
             "paper, GTA5->Cityscapes |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {100 * r['miou_mean']:.1f} ± {100 * r['miou_std']:.1f} | {per_seed(r['mious'])} | "
                     f"{100 * r['of_supervised']:.0f}% | {100 * r['labelled_fraction']:.2f} | "
                     f"{r['points_per_image']:.0f} | {number(r['annotation_seconds'], '.0f')} | "
                     f"{number(r['required_fraction'], '.3f')} | {_difference(r['vs_random'])} | "
                     f"{_difference(r['vs_entropy'])} | {_difference(r['vs_labor'])} | "
                     f"{_difference(r['vs_supervised'])} | {PAPER_TABLE.get(r['mode'], '-')} |")
    caption = CAPTION.format(points=args["points"]) + HOLM.format(m=family)
    runs = {row: [f"{stem}-seed{s}" for s in seeds] for row, _, _, stem, _ in table_rows_}
    provenance, made = made_by(folder, [r for rs in runs.values() for r in rs])
    saved = {"seeds": seeds, "caption": caption, "results": results, "runs": runs, "made_by": provenance,
             **({"rows": [r[3] for r in table_rows_]} if given and len(table_rows_) < len(TABLE_ROWS) else {})}
    if files:
        write(folder, "results", "\n".join(lines + ["", caption, "", *per_class_lines(results), made]) +
              partial_line(missing, len(table_rows_)),
              {**saved, **({"partial": {"missing": missing}} if missing else {})}, quiet)
        figures.plot_table(Path(folder) / "results.png", results, seeds)
    return results


def per_class_lines(results):
    """The per-class view (lines ending in a blank one; none where a run has no per-class IoU): each row's IoU per
    class, and each selector's per-class difference to random at its budget (mean, then k/n: the seeds where it is
    positive; no interval, no test: where the labels went, not a claim)."""
    if any(r["per_class_iou"] is None for r in results):
        return []
    names = list(results[0]["per_class_iou"])
    head = ["| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines = ["Per class: IoU (%), the mean over the seeds where it is defined (a class neither in the val images nor "
             "predicted has none; -: no seed).", "", *head]
    lines += [f"| {r['mode']} | " + " | ".join(number(None if v is None else 100 * v, ".1f")
                                              for v in r["per_class_iou"].values()) + " |" for r in results]
    differences = [r for r in results if r["per_class_vs_random"]]
    if differences:
        lines += ["", "Each selector minus random at its budget, per class: the mean over the seeds (points of IoU), "
                  "then k/n, the seeds where it is positive of those where both are defined; no interval and no test "
                  "(where the labels went, not a claim).", "", *head]
        lines += [f"| {r['mode']} minus {r['vs_random']['partner']} | " + " | ".join(
            "-" if c not in r["per_class_vs_random"] else
            f"{100 * r['per_class_vs_random'][c]['mean']:+.1f} {r['per_class_vs_random'][c]['positive']}/"
            f"{r['per_class_vs_random'][c]['n']}" for c in names) + " |" for r in differences]
    return lines + [""]


def per_seed(values):
    return " / ".join(f"{100 * v:.1f}" for v in values)


def number(value, fmt):
    return "-" if value is None else format(value, fmt)


def write(folder, name, md, saved, quiet):
    (Path(folder) / f"{name}.md").write_text(md + "\n")
    (Path(folder) / f"{name}.json").write_text(json.dumps(saved, indent=2))
    if not quiet:
        print(md)


# ------------------------------------------------------------------------------------------------ the sweep

def sweep_rows(folder):
    """(seeds, rows, missing) of a sweep folder: one row per run (selector, budget asked, seed, run folder, what came
    of it), seed by seed in the sweep's order, over the seeds whose every run has finished. The budget asked is in
    the folder's name (random-budget0.005), or, for points per image (ppl-points92), the sweep budget that gives
    them."""
    names = {f.parent.name.rpartition("-seed")[0] for f in Path(folder).glob("*-seed*/metrics.json")}
    found = {n: re.fullmatch(r"([a-z_]+)((?:-[a-z_]*[a-z]\d[0-9.e+-]*)*)", n) for n in names}
    asked = {n: {k: float(v) for k, v in re.findall(r"-([a-z_]*[a-z])(\d[0-9.e+-]*?)(?=-[a-z]|$)", m[2])}
             for n, m in found.items() if m and re.search(r"-(budget|points)\d", n)}
    budgets = sorted({a["budget"] for a in asked.values() if "budget" in a})
    fixed = {"spl": "spl (whole mask)", "adaptseg": "adaptseg", "supervised": "supervised"}
    stems = [n for n in fixed if n in names] + list(asked)
    seeds, by_stem, missing = seeds_and_runs(folder, stems)
    pixels = image_pixels(argparse.Namespace(**by_stem[stems[0]][0]["args"]))
    entries = []   # (order, selector, budget, stem)
    styles = list(figures.selector_styles())
    for stem, a in asked.items():
        mode = found[stem][1]
        label = next((lab for k, (base, settings, lab, _) in selection.VARIANTS.items() if base == mode and all(
            a.get(s) == v for s, v in settings.items())), selection.label(mode))
        budget = a.get("budget", next((b for b in budgets if max(1, round(b * pixels)) == a.get("points")),
                                      a.get("points", 0) / pixels))
        entries.append(((budget, styles.index(label)), label, budget, stem))
    entries = [(None, name, None, stem) for stem, name in fixed.items() if stem in names] + sorted(entries)
    rows = [{"selector": sel, "budget": b, "seed": s, "run": f"{stem}-seed{s}", "miou": m["miou"],
             "labelled_fraction": m["labelled_fraction"], "points_per_image": m["points_per_image"],
             "required_fraction": m.get("required_fraction"),
             "annotation_seconds": (m.get("annotation_seconds") or {}).get("per_image")}
            for k, s in enumerate(seeds) for _, sel, b, stem in entries for m in [by_stem[stem][k]]]
    return seeds, sorted({b for _, _, b, _ in entries if b is not None}), rows, by_stem[stems[0]][0]["args"], missing


def sweep(folder, quiet=True, files=True):
    """sweep.md, sweep.json and budget_curve.png from a sweep folder's runs: per (selector, budget asked), the mean
    and spread over seeds and the paired differences to random and entropy at the same budget asked, and RIPU's to
    LabOR's ("vs_random", "vs_entropy", "vs_labor"); then each selector at equal annotator seconds (at_equal_seconds)."""
    seeds, budgets, rows, args, missing = sweep_rows(folder)
    groups = {}
    for r in rows:
        groups.setdefault((r["selector"], r["budget"]), []).append(r)
    out = []
    for (sel, budget), rs in groups.items():
        mious = [r["miou"] for r in rs]
        entry = {"selector": sel, "budget": budget, "seeds": [r["seed"] for r in rs], "mious": mious,
                 **summary(mious, rs), "annotation_seconds": mean_of(rs, "annotation_seconds")}
        for key, partner in (("vs_random", "random"), ("vs_entropy", "entropy"), ("vs_labor", LABOR_PARTNERS.get(sel))):
            if budget is not None and partner and sel != partner and (at := same_fraction(rs, partner, groups)):
                theirs = {r["seed"]: r["miou"] for r in groups[partner, at]}
                both = [r for r in rs if r["seed"] in theirs]
                entry[key] = {**paired_difference([r["miou"] for r in both], [theirs[r["seed"]] for r in both]),
                              "pixels_ratio": pixels_ratio(rs, groups[partner, at]),
                              "partner_budget": at if at != budget else None}
        out.append(entry)
    equal = at_equal_seconds(rows)
    family = holm([e.get(k) for e in out for k in ("vs_random", "vs_entropy", "vs_labor")] +
                  [e["vs_random"] for e in equal])
    lines = [f"Budget sweep: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, schedule "
             f"{args['schedule']}, model {args['model']}.", "",
             "| selector | budget asked (%) | labelled pixels (%) | px / image | annotator s / image | mIoU (%) | "
             "per seed | required_fraction | minus random | minus entropy | RIPU minus LabOR |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(out, key=lambda r: (r["budget"] is not None, r["budget"] or 0, r["selector"])):
        asked = "-" if r["budget"] is None else f"{100 * r['budget']:g}"
        lines.append(f"| {r['selector']} | {asked} | "
                     f"{100 * r['labelled_fraction']:.3f} | {r['points_per_image']:.1f} | "
                     f"{number(r['annotation_seconds'], '.1f')} | {100 * r['miou_mean']:.1f} ± "
                     f"{100 * r['miou_std']:.1f} | {per_seed(r['mious'])} | {number(r['required_fraction'], '.3f')} | "
                     f"{_difference(r.get('vs_random'))} | {_difference(r.get('vs_entropy'))} | "
                     f"{_difference(r.get('vs_labor'))} |")
    caption = ("Differences are paired over the seeds: each seed's mIoU minus random's (or entropy's; for RIPU's "
               "regions capped SPL's, for its points the paper's PPL's) at the same labelled fraction (within 5%), "
               "in points, with their mean and a 95% confidence interval from Student's t on the paired "
               "differences (n - 1 degrees of freedom); * marks an interval that excludes zero. The partner is its "
               "run at the same budget asked, or, where that labelled another fraction, its run at the budget asked "
               "that labelled the same (\"vs its 0.05% run\": RIPU's regions buy whole 3x3 boxes, at least one per "
               "image, 2.25x the pixels asked at 0.02%); a row with no such run has no difference (-)." +
               HOLM.replace("this table prints", "this sweep prints (both tables)").format(m=family))
    lines += ["", caption]
    if equal:
        lines += ["", "At equal annotator time per image (cost.py): each seed's mIoU read off its curve between the "
                  "two budgets whose seconds bracket the level, linearly in log seconds (none beyond the measured "
                  "range); differences to random paired over the seeds both reach, 95% Student-t interval.", "",
                  "| annotator s / image | selector | mIoU (%) | per seed | seeds | minus random |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {e['seconds']:g} | {e['selector']} | {100 * e['miou_mean']:.1f} | {per_seed(e['mious'])} | "
                  f"{len(e['seeds'])} | {_difference(e['vs_random'])} |" for e in equal]
    provenance, made = made_by(folder, [r["run"] for r in rows])
    lines += ["", made]
    saved = {"seeds": seeds, "budgets": budgets, "caption": caption, "summary": out, "at_equal_seconds": equal,
             "runs": rows, "made_by": provenance, **({"partial": {"missing": missing}} if missing else {})}
    if files:
        write(folder, "sweep", "\n".join(lines) + partial_line(missing, len(rows) // len(seeds)), saved, quiet)
        figures.plot_budget_curve(Path(folder) / "budget_curve.png", out, seeds)
    return out, equal


# Annotator seconds per image at which the sweep compares selectors: log-spaced inside the range its budgets cost
# (0.02% to 0.5% of a 96x192 image: 4 to 92 points, 9.6 s to 221 s), so every selector is read, not extrapolated.
EQUAL_SECONDS = (10.0, 30.0, 100.0)


def at_equal_seconds(rows, levels=EQUAL_SECONDS):
    """Each selector's mIoU at equal annotator time per image: per seed, its runs at the sweep's budgets give points
    (seconds per image, mIoU); at each level the mIoU is read off the line between the two runs whose seconds
    bracket it, linearly in log seconds (no extrapolation: a level outside a seed's range gets no value). Then,
    per level, the mean over seeds and the paired difference to random at the same level ("vs_random", over the
    seeds both reach). Returns [{"selector", "seconds", "seeds", "mious", "miou_mean", "vs_random"}]."""
    curves = {}   # (selector, seed) -> [(log seconds, mIoU)]
    for r in rows:
        if r["budget"] is not None and r.get("annotation_seconds"):
            curves.setdefault((r["selector"], r["seed"]), []).append((np.log(r["annotation_seconds"]), r["miou"]))
    read = {}     # (selector, level) -> {seed: mIoU}
    for (sel, seed), pts in curves.items():
        by_x = {}
        for x, y in pts:   # equal seconds at two budgets (a selector capped at B's mask): their mean mIoU
            by_x.setdefault(x, []).append(y)
        xs = sorted(by_x)
        ys = [float(np.mean(by_x[x])) for x in xs]
        for level in levels:
            if xs[0] <= np.log(level) <= xs[-1]:
                read.setdefault((sel, level), {})[seed] = float(np.interp(np.log(level), xs, ys))
    out = []
    for (sel, level), by_seed in sorted(read.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seeds = sorted(by_seed)
        theirs = read.get(("random", level), {})
        both = [s for s in seeds if s in theirs]
        out.append({"selector": sel, "seconds": level, "seeds": seeds, "mious": [by_seed[s] for s in seeds],
                    "miou_mean": float(np.mean([by_seed[s] for s in seeds])),
                    "vs_random": paired_difference([by_seed[s] for s in both], [theirs[s] for s in both])
                    if sel != "random" and both else None})
    return out


# ------------------------------------------------------------------------------------------------ the noisy annotator

def noise_rows(folder):
    """(levels, [(row label, mode)]) of the noise runs in a folder (<mode>-noise<P>-seed<S>, and the table's names at
    P = 0): SPL and random first, then the other selectors in selection.SELECTORS' order."""
    found = {(m[1], float(m[2])) for f in Path(folder).glob("*-noise*-seed*/metrics.json")
             if (m := re.fullmatch(r"([a-z_]+)-noise([0-9.e-]+)", f.parent.name.rpartition("-seed")[0]))}
    modes = sorted({mode for mode, _ in found}, key=lambda m: (m not in ("spl", "random"), m != "spl",
                                                                list(selection.SELECTORS).index(m)))
    zero = [0.0] if all(any(Path(folder).glob(f"{m}-seed*/metrics.json")) for m in modes) else []   # the table's
    return zero + sorted({p for _, p in found}), [(selection.label(m), m) for m in modes]


def noise(folder, quiet=True, files=True):
    """noise.md, noise.json and noise.png: per annotator noise P and row, the mIoU over the seeds whose every run
    has finished, the share of labels the annotator got wrong, and the paired differences to random at the same P
    ("vs_random") and to the same row with the perfect annotator ("vs_perfect")."""
    levels, rows = noise_rows(folder)
    seeds, by_stem, missing = seeds_and_runs(folder, [noise_stem(m, p) for _, m in rows for p in levels])
    m = {(row, p): by_stem[noise_stem(mode, p)] for row, mode in rows for p in levels}
    out = []
    for p in levels:
        for row, _ in rows:
            mious = [r["miou"] for r in m[row, p]]
            random_ = [r["miou"] for r in m["random", p]]
            out.append({"level": p, "row": row, "seeds": seeds, "mious": mious, "miou_mean": float(np.mean(mious)),
                        "miou_std": spread(mious), "labelled_fraction": mean_of(m[row, p], "labelled_fraction"),
                        "wrong_share": float(np.mean([r.get("annotator_wrong_labels", 0) / max(r["labelled_pixels"], 1)
                                                      for r in m[row, p]])),
                        "vs_random": None if row == "random" else paired_difference(mious, random_),
                        "vs_perfect": None if p == 0 or 0 not in levels else
                        paired_difference(mious, [r["miou"] for r in m[row, 0.0]]),
                        # the question noise asks: how much of the lead over random is lost at P, seed by seed
                        "lead_change": None if row == "random" or p == 0 or 0 not in levels else paired_difference(
                            [a - b for a, b in zip(mious, random_)],
                            [r["miou"] - q["miou"] for r, q in zip(m[row, 0.0], m["random", 0.0])])})
    family = holm([e[k] for e in out for k in ("vs_random", "vs_perfect", "lead_change")])
    args = m["spl", levels[0]][0]["args"]
    lines = [f"Annotator noise: {benchmark_name(args)}, seeds {seeds}, {args['iters']} iterations, noise band "
             f"{args.get('noise_band', 1)} px.", "",
             "| P (label at an outline flipped) | method | mIoU (%) | per seed | labelled pixels (%) | wrong labels (%) | "
             "minus random | minus itself at P = 0 | change of the lead over random since P = 0 |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {e['level']:g} | {e['row']} | {100 * e['miou_mean']:.1f} ± {100 * e['miou_std']:.1f} | "
              f"{per_seed(e['mious'])} | {100 * e['labelled_fraction']:.2f} | {100 * e['wrong_share']:.1f} | "
              f"{_difference(e['vs_random'])} | {_difference(e['vs_perfect'])} | {_difference(e['lead_change'])} |"
              for e in out]
    caption = ("--annotator-noise P: a label bought within --noise-band pixels of a class boundary is replaced by "
               "the class on the other side with probability P. Random buys the fraction SPL bought at the same P. "
               "Differences are paired over the seeds, in points, with a 95% Student-t interval (n - 1 degrees of "
               "freedom); * marks an interval that excludes zero. The change of the lead is, seed by seed, (row - "
               "random at P) - (row - random at P = 0): the P > 0 runs share the P = 0 runs' warm-up and B, so the two "
               "leads correlate and the change is measured far more tightly than either lead." + HOLM.format(m=family))
    runs = {f"{row} @ {p:g}": [f"{noise_stem(mode, p)}-seed{s}" for s in seeds] for row, mode in rows for p in levels}
    provenance, made = made_by(folder, [r for rs in runs.values() for r in rs])
    saved = {"levels": levels, "rows": [row for row, _ in rows], "seeds": seeds, "complete_seeds": seeds,
             "caption": caption, "summary": out, "runs": runs, "made_by": provenance}
    if files:
        write(folder, "noise", "\n".join(lines + ["", caption, "", made])
              + partial_line(missing, len(rows) * len(levels)),
              {**saved, **({"partial": {"missing_seeds": list(missing)}} if missing else {})}, quiet)
        figures.plot_noise(Path(folder) / "noise.png", out, seeds)
    return out


# ------------------------------------------------------------------------------------------------ the files again

def kinds(folder):
    """The experiments whose runs a folder holds: "table" (source_only-seed*), "sweep" (<mode>-budget<b>-seed*,
    <mode>-points<n>-seed*), "noise" (<mode>-noise<P>-seed*); a noise experiment may share a table's folder."""
    names = [f.parent.name for f in Path(folder).glob("*-seed*/metrics.json")]
    found = [k for k, pattern in (("table", r"source_only-seed\d+"), ("sweep", r".*-(budget|points)[0-9].*"),
                                  ("noise", r".*-noise[0-9].*")) if any(re.fullmatch(pattern, n) for n in names)]
    if not found:
        raise UsageError(f"{folder} holds no finished run of a table, a sweep or a noise experiment")
    return found


def regenerate(folder, quiet=True, files=True):
    """Rewrite the files of every experiment in the folder from its runs' metrics.json alone (no run is trained or
    checked again); a seed whose runs have not all finished is left out and named. Returns each one's summary."""
    return {k: {"table": table, "sweep": sweep, "noise": noise}[k](folder, quiet, files) for k in kinds(folder)}


def brief(folder):
    """The README's short form of the folder's experiments, from its runs: per row the mIoU per seed, the mean, what
    was labelled and what it cost a person, and the paired differences (bold where the interval excludes zero)."""
    diff = lambda d: _difference(d, bold=True)  # noqa: E731
    lines, kept = [], []
    done = regenerate(folder, files=False)
    if "table" in done:
        lines += ["| method | mIoU (%) per seed | mean | labelled | annotator s / image | minus random, same budget | "
                  "RIPU minus LabOR |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {per_seed(r['mious'])} | {100 * r['miou_mean']:.1f} | "
                  f"{100 * r['labelled_fraction']:.2f}% | {number(r['annotation_seconds'], '.0f')} | "
                  f"{diff(r['vs_random'])} | {diff(r['vs_labor'])} |" for r in done["table"]]
        kept.append(_kept_by_holm(done["table"], "table"))
    if "sweep" in done:
        summary, equal = done["sweep"]
        names = [n for n in figures.selector_styles() if n != "random" and any(r["selector"] == n for r in summary)]
        for key, col, entries in (("budget", "budget", summary), ("seconds", "annotator s / image", equal)):
            at = {(e["selector"], e[key]): e for e in entries}
            lines += ["" if lines else None, f"| {col} | random mIoU | " + " | ".join(f"{n} minus random" for n in names)
                      + " |", "|---|---|" + "---|" * len(names)]
            for level in sorted({e[key] for e in entries if e[key] is not None}):
                rand = at.get(("random", level))
                lines.append(f"| {100 * level:g}% | " if key == "budget" else f"| {level:g} | ")
                lines[-1] += ("-" if rand is None else f"{100 * rand['miou_mean']:.1f}") + " | " + " | ".join(
                    diff(at.get((n, level), {}).get("vs_random")) for n in names) + " |"
        kept.append(_kept_by_holm(summary + equal, "sweep (both tables)"))
    if "noise" in done:
        rows = list(dict.fromkeys(e["row"] for e in done["noise"]))
        at = {(e["level"], e["row"]): e for e in done["noise"]}
        others = [r for r in rows if r != "random"]
        lines += ["" if lines else None, "| P (annotator errs at outlines) | wrong labels (SPL) | " + " | ".join(
            f"{r} mIoU" for r in rows) + " | " + " | ".join(f"{r} minus random" for r in others) + " | " + " | ".join(
            f"{r}'s lead, change since P = 0" for r in others) + " |",
                  "|---|---|" + "---|" * (len(rows) + 2 * len(others))]
        lines += [f"| {p:g} | {100 * at[p, 'spl']['wrong_share']:.1f}% | " + " | ".join(
            f"{100 * at[p, r]['miou_mean']:.1f}" for r in rows) + " | " + " | ".join(
            diff(at[p, r]["vs_random"]) for r in others) + " | " + " | ".join(
            diff(at[p, r]["lead_change"]) for r in others) + " |"
            for p in dict.fromkeys(e["level"] for e in done["noise"])]
        kept.append(_kept_by_holm(done["noise"], "noise table"))
    lines += ["", *kept, made_by(folder, [f.parent.name for f in sorted(Path(folder).glob("*-seed*/metrics.json"))])[1]]
    return "\n".join(line for line in lines if line is not None)


def _kept_by_holm(entries, what):
    """The line under a brief table: † marks what Holm keeps, over the family that `holm` counted for its files."""
    m = sum(1 for e in entries for d in e.values() if isinstance(d, dict) and "holm" in d)
    return f"† kept by Holm's adjustment over the {m} paired differences of the {what}."


def compare(a, b, folders):
    """Run <a>-seed<S> minus run <b>-seed<S>, paired over every seed S that has both finished in one of the folders
    (seeds from several folders pooled: a table's eight and more seeds run later). Returns (summary, text)."""
    found = {}
    for folder in folders:
        for stem in (a, b):
            for f in Path(folder).glob(f"{stem}-seed*/metrics.json"):
                seed = f.parent.name.rpartition("-seed")[2]
                if seed.isdigit():
                    found.setdefault(int(seed), {})[stem] = json.loads(f.read_text())
    seeds = sorted(s for s, got in found.items() if len(got) == 2)
    if len(seeds) < 2:
        raise UsageError(f"{a} and {b}: fewer than two seeds with both runs finished in {', '.join(map(str, folders))}")
    d = paired_difference([found[s][a]["miou"] for s in seeds], [found[s][b]["miou"] for s in seeds])
    d["pixels_ratio"] = pixels_ratio([found[s][a] for s in seeds], [found[s][b] for s in seeds])
    _, made = made_by("/", [str(Path(folder).resolve() / f"{stem}-seed{s}") for s in seeds for stem in (a, b)
                            for folder in folders if (Path(folder) / f"{stem}-seed{s}" / "metrics.json").exists()])
    text = (f"{a} minus {b}, seeds {seeds}: {_difference(d)} (mIoU points; t-test p = {d['p']:.3f}, sign test "
            f"p = {d['sign_p']:.3f})\n{made}")
    return {"a": a, "b": b, "seeds": seeds, **d}, text


def listing(folder):
    """Any folder of run folders <name>-seed<S>: per name, the evaluation split, the labelled fraction, mIoU per seed
    and the mean. Returns markdown."""
    groups = {}
    for f in sorted(Path(folder).glob("*-seed*/metrics.json")):
        name, _, seed = f.parent.name.rpartition("-seed")
        if seed.isdigit():
            groups.setdefault(name, []).append((int(seed), json.loads(f.read_text())))
    lines = ["| runs | split | labelled (%) | mIoU (%) per seed | seeds | mean |", "|---|---|---|---|---|---|"]
    for name, found in groups.items():
        found.sort(key=lambda sm: sm[0])
        mious = [100 * m["miou"] for _, m in found]
        lines.append(f"| {name} | {found[0][1]['eval_split']} | "
                     f"{100 * np.mean([m['labelled_fraction'] for _, m in found]):.3f} | "
                     f"{' / '.join(f'{v:.2f}' for v in mious)} | {', '.join(str(s) for s, _ in found)} | "
                     f"{np.mean(mious):.2f} |")
    return "\n".join(lines)
