"""Grade submitted copies of the exercises (notebooks/06_exercises.ipynb) with otter-grader's autograder, here,
without Docker: each exercise's points, what failed, a total, and the lines of code to review by hand.

    otter assign notebooks/06_exercises.ipynb dist                 # once: dist/student, dist/autograder/*.zip
    python notebooks/grade_exercises.py submissions/ --autograder dist/autograder --csv grades.csv
    python notebooks/grade_exercises.py alice.ipynb bob.zip --autograder dist/autograder --json grades.json

A submission is a notebook, or the zip that the notebook's export cell makes (its notebook is graded). Each runs in
a temporary folder through otter.api.grade_submission (the hidden checks and their recorded outputs come from the
autograder zip). The written questions (W1-W3) are graded by hand: they are listed, not scored.

otter runs the checks in the student's own Python, so code written to fool them (read the checker's frames, patch
the checks, otter or torch, read the autograder's files, run checks out of order) could: the checks resist the
simple ways (tests/test_exercises.py tries them), and this script lists, under "review", every line of a
submission that is not in the notebook as handed out and reaches for such things. Read those lines before you
trust a score. `otter grade` does the same grading in Docker containers: isolated from this machine, not from the
student's code. Needs requirements-course.txt.
"""
import argparse
import csv
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "06_exercises.ipynb"

# What a line of a student's code must not reach for unchecked: (pattern, what it does).
FLAGS = [
    (r"\bsys\._getframe|\binspect\b|\bf_back\b|\bf_locals\b|\bf_globals\b|\btb_frame\b|\bgc\b",
     "reads frames or objects"),
    (r"\bsys\.modules\b|\bbuiltins\b|__builtins__|\bimportlib\b|\brunpy\b|__import__", "reaches into the imports"),
    (r"exercise_checks|exercise_expected|hidden_checks|autograder|reference\.py|\bex\.\w+\s*=(?!=)",
     "touches the checks"),
    (r"\botter\b|\bChecker\b|\bgrader\b|GradingResults|TestCase", "calls otter or the grader"),
    (r"\bsetattr\s*\(|\bdelattr\s*\(|__code__|__globals__|__closure__|__dict__", "rewrites objects or functions"),
    (r"\bopen\s*\(|\btorch\.load\b|\btorch\.save\b|\bpickle\b|\bos\b|\bshutil\b|\bglob\b|\bpathlib\b|\bPath\b",
     "reads or writes files"),
    (r"\bexec\s*\(|\beval\s*\(|\bcompile\s*\(|\bsubprocess\b|\bsocket\b|\burllib\b|\brequests\b", "runs other code"),
    (r"\b(torch|F|nn|np|numpy)(\.\w+)+\s*=(?!=)", "replaces a library function"),
]


def autograder_zip(path):
    """The zip itself, or the newest *.zip in a folder (otter assign stamps each with its time)."""
    path = Path(path)
    if path.is_dir():
        zips = sorted(path.glob("*.zip"), key=lambda p: p.stat().st_mtime)
        if not zips:
            raise SystemExit(f"error: no autograder zip in {path} (run: otter assign notebooks/06_exercises.ipynb "
                             f"dist)")
        return zips[-1]
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist")
    return path


def submissions(paths):
    """The notebooks and exported zips to grade: files, or every *.ipynb and *.zip of a folder."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix in (".ipynb", ".zip") and not q.name.startswith("."))
        elif p.suffix in (".ipynb", ".zip") and p.exists():
            out.append(p)
        else:
            raise SystemExit(f"error: {p} is not a notebook, a submission zip or a folder of them")
    if not out:
        raise SystemExit("error: no notebook to grade")
    return out


def notebook_of(path, tmp):
    """The notebook to grade: the file itself, or the one notebook inside an exported zip."""
    path = Path(path)
    if path.suffix != ".zip":
        return path
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".ipynb") and "/" not in n.strip("/")]
        if len(names) != 1:
            raise SystemExit(f"error: {path} holds {len(names)} notebooks at its top, expected one")
        out = Path(tmp) / f"{path.stem}.ipynb"
        out.write_bytes(zf.read(names[0]))
    return out


def _code_lines(notebook):
    nb = json.loads(Path(notebook).read_text())
    for k, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            for line in src.splitlines():
                yield k, line


def given_lines(autograder):
    """The lines of code a student was handed: the source notebook's and the student copy's, where found."""
    given = {line.strip() for _, line in _code_lines(SOURCE)}
    folder = Path(autograder) if Path(autograder).is_dir() else Path(autograder).parent
    for nb in [*folder.glob("*.ipynb"), *(folder.parent / "student").glob("*.ipynb")]:
        given |= {line.strip() for _, line in _code_lines(nb)}
    return given


def _checks_in_order(notebook):
    return [m.group(1) for _, line in _code_lines(notebook) for m in re.finditer(r'grader\.check\("(\w+)"\)', line)]


def review(notebook, given, order):
    """[(cell, line, why)] for each line of the submission that is not handed out and matches a FLAGS pattern, and
    one entry if the check cells were moved, repeated or added."""
    out = []
    for k, line in _code_lines(notebook):
        code = line.split("#", 1)[0].strip()
        if not code or line.strip() in given:
            continue
        why = [w for pattern, w in FLAGS if re.search(pattern, code)]
        if why:
            out.append((k, line.strip()[:160], ", ".join(why)))
    if order is not None and _checks_in_order(notebook) != order:
        out.append((None, "grader.check cells", "moved, repeated or added: the checks ran in another order"))
    return out


def grade(notebook, zip_path):
    """{exercise: {"score", "possible", "failed": [messages]}} for one submission."""
    from otter.api import grade_submission
    results = grade_submission(str(notebook), str(zip_path), quiet=True)
    out = {}
    for name, res in results.results.items():
        failed = [tc.message.split("\n", 1)[-1].strip() for tc in res.test_case_results if not tc.passed]
        hidden = sum(float(tc.test_case.points) for tc in res.test_case_results if tc.passed and tc.test_case.hidden)
        out[name] = {"score": float(res.score), "possible": float(res.possible), "hidden": hidden, "failed": failed}
    return out


def show(notebook, grades, flagged=()):
    print(f"{notebook}")
    for name, g in grades.items():
        print(f"  {name:<20} {g['score']:>5g} / {g['possible']:<4g}")
        for message in g["failed"]:
            which = "hidden" if "hidden draw" in message or "hidden[" in message else "public"
            report = message.split("AssertionError:", 1)[-1].strip().splitlines()   # the check's own lines
            for line in report[:6]:
                print(f"      {which}: {line.strip()[:150]}")
    total, possible = sum(g["score"] for g in grades.values()), sum(g["possible"] for g in grades.values())
    print(f"  {'total':<20} {total:>5g} / {possible:<4g}   (written questions W1-W3: graded by hand)")
    for cell, line, why in flagged:
        print(f"  review: {'cell ' + str(cell) if cell is not None else ''}: {line}   ({why})")
    return total


def question_order():
    """The auto-graded questions in the source notebook's order."""
    cells = json.loads(SOURCE.read_text())["cells"]
    heads = ["".join(c["source"]) for c in cells if c["cell_type"] == "raw"]
    return [re.search(r"name: (\w+)", h).group(1) for h in heads
            if h.startswith("# BEGIN QUESTION") and "manual: true" not in h]


def write_csv(path, every):
    """One row per submission: its path, each exercise's score, the total, the points possible, lines to review."""
    found = list(next(iter(every.values()))["exercises"]) if every else []
    names = [n for n in question_order() if n in found] + [n for n in found if n not in question_order()]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", *names, "total", "possible", "review"])
        for sub, g in every.items():
            ex = g["exercises"]
            w.writerow([sub, *[f"{ex[n]['score']:g}" if n in ex else "" for n in names], f"{g['total']:g}",
                        f"{g['possible']:g}", len(g["review"])])


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade exercise notebooks with otter's autograder, without Docker.")
    p.add_argument("paths", nargs="+", help="submitted notebooks or export zips, or folders of them")
    p.add_argument("--autograder", default="dist/autograder",
                   help="the autograder zip from otter assign, or its folder (the newest zip there)")
    p.add_argument("--json", help="also write every grade, failed check and line to review to this file")
    p.add_argument("--csv", help="also write a table of grades to this file: one row per submission")
    args = p.parse_args(argv)
    try:
        import otter  # noqa: F401 (only: is it installed?)
    except ImportError:
        raise SystemExit("error: otter-grader is not installed: pip install -r requirements-course.txt")
    zip_path = autograder_zip(args.autograder)
    given = given_lines(args.autograder)
    folder = Path(args.autograder) if Path(args.autograder).is_dir() else Path(args.autograder).parent
    student = sorted((folder.parent / "student").glob("*.ipynb"))
    order = _checks_in_order(student[0]) if student else None      # (the order of the check cells handed out)
    every = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sub in submissions(args.paths):
            notebook = notebook_of(sub, tmp)
            grades, flagged = grade(notebook, zip_path), review(notebook, given, order)
            show(sub, grades, flagged)
            every[str(sub)] = {"exercises": grades, "total": sum(g["score"] for g in grades.values()),
                               "possible": sum(g["possible"] for g in grades.values()),
                               "review": [{"cell": c, "line": line, "why": why} for c, line, why in flagged]}
    if args.json:
        Path(args.json).write_text(json.dumps(every, indent=1))
    if args.csv:
        write_csv(args.csv, every)
    return every


if __name__ == "__main__":
    sys.exit(main() and 0)
