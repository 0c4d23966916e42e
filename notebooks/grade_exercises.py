"""Grade submitted copies of the exercises (notebooks/06_exercises.ipynb) with otter-grader's autograder, here,
without Docker: each exercise's points, what failed, and a total.

    otter assign notebooks/06_exercises.ipynb dist                 # once: dist/student, dist/autograder/*.zip
    python notebooks/grade_exercises.py submissions/ --autograder dist/autograder
    python notebooks/grade_exercises.py alice.ipynb bob.ipynb --autograder dist/autograder --json grades.json

Each notebook runs in a temporary folder through otter.api.grade_submission (the hidden checks and their recorded
outputs come from the autograder zip). The written questions (W1-W3) are graded by hand: they are listed, not
scored. `otter grade` does the same for a class in Docker containers, isolated from each other and from this
machine: prefer it where Docker runs. Needs requirements-course.txt.
"""
import argparse
import json
import sys
from pathlib import Path


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
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.exists():
            out.append(p)
        else:
            raise SystemExit(f"error: {p} is not a notebook or a folder of notebooks")
    if not out:
        raise SystemExit("error: no notebook to grade")
    return out


def grade(notebook, zip_path):
    """{exercise: {"score", "possible", "failed": [messages]}} for one submission."""
    from otter.api import grade_submission
    results = grade_submission(str(notebook), str(zip_path), quiet=True)
    out = {}
    for name, res in results.results.items():
        failed = [tc.message.split("\n", 1)[-1].strip() for tc in res.test_case_results if not tc.passed]
        out[name] = {"score": float(res.score), "possible": float(res.possible), "failed": failed}
    return out


def show(notebook, grades):
    print(f"{notebook}")
    for name, g in grades.items():
        print(f"  {name:<20} {g['score']:>4g} / {g['possible']:<4g}")
        for message in g["failed"]:
            which = "hidden" if "hidden=True" in message else "public"
            report = message.split("AssertionError:", 1)[-1].strip().splitlines()   # the check's own lines
            for line in report[:6]:
                print(f"      {which}: {line.strip()[:150]}")
    total, possible = sum(g["score"] for g in grades.values()), sum(g["possible"] for g in grades.values())
    print(f"  {'total':<20} {total:>4g} / {possible:<4g}   (written questions W1-W3: graded by hand)")
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade exercise notebooks with otter's autograder, without Docker.")
    p.add_argument("paths", nargs="+", help="submitted notebooks, or folders of them")
    p.add_argument("--autograder", default="dist/autograder",
                   help="the autograder zip from otter assign, or its folder (the newest zip there)")
    p.add_argument("--json", help="also write every grade to this file")
    args = p.parse_args(argv)
    try:
        import otter  # noqa: F401 (only: is it installed?)
    except ImportError:
        raise SystemExit("error: otter-grader is not installed: pip install -r requirements-course.txt")
    zip_path = autograder_zip(args.autograder)
    every = {}
    for notebook in submissions(args.paths):
        every[str(notebook)] = grade(notebook, zip_path)
        show(notebook, every[str(notebook)])
    if args.json:
        Path(args.json).write_text(json.dumps(every, indent=1))
    return every


if __name__ == "__main__":
    sys.exit(main() and 0)
