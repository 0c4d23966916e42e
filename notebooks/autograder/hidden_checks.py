"""The hidden checks, the autograder's only: otter assign puts this folder in the autograder zip, never in the
student copy. Each hidden test of notebooks/06_exercises.ipynb runs this file afresh from the autograder's own
files (../source/files/autograder/ where otter grades), and this file runs exercise_checks.py afresh from beside
its folder: a student's changes to the module they imported reach neither. The cases are the public ones, drawn
from the seed recorded in exercise_expected_hidden.pt (python notebooks/autograder/record.py --new-hidden-seed
draws a new one); the student's outputs are computed before that file's outputs are read. Exercise 13 runs with
the reference's functions of exercises 1, 4, 5 and 11 (reference.py)."""
import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent
HIDDEN = HERE / "exercise_expected_hidden.pt"


def _checks():
    return runpy.run_path(str(HERE.parent / "exercise_checks.py"))


def _helpers(name):
    return runpy.run_path(str(HERE / "reference.py"))["HELPERS"] if name == "selector_step" else None


def report(name, *functions, part=None):
    return _checks()["report"](name, *functions, part=part, expected=HIDDEN, helpers=_helpers(name),
                               label="hidden draw")


def check(name, *functions, part=None):
    ok, text = report(name, *functions, part=part)
    print(text)
    return ok


def verify(name, *functions, part=None):
    ok, text = report(name, *functions, part=part)
    if not ok:
        raise AssertionError("\n" + text)
