"""The teaching notebooks: each is committed executed, with its figures, so that people can read it where it is
shown (GitHub, a course page); each runs top to bottom on CPU and shows at least as many figures as its committed
copy.

Each notebook trains its own tiny models (one or two minutes on one core), so these tests take several minutes in
all. Run only them with `python -m pytest tests/test_notebooks.py`.
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("01_domain_gap.ipynb", "02_inconsistency_mask_spl.ipynb", "03_points_ppl.ipynb", "04_results.ipynb",
            "05_is_it_required.ipynb")
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_four_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 4, f"expected at least 4 notebooks in {NOTEBOOKS_DIR}, found {sorted(names)}"
    missing = [n for n in EXPECTED if n not in names]
    assert not missing, f"missing notebooks: {missing}"


def figures(nb):
    """The number of figures (PNG outputs) a notebook shows."""
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_executed_with_its_figures(path):
    """Every code cell of the committed copy ran, in order, and the notebook shows its figures."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code"]
    assert None not in counts, f"{path.name}: some code cells were not executed before committing"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    if path.name != "06_exercises.ipynb":  # (the exercises print their checks: tests/test_exercises.py)
        assert figures(nb) > 0, f"{path.name}: the committed copy shows no figure"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """Executes every cell in order (cwd = notebooks/, as Jupyter does); any cell error fails the test."""
    monkeypatch.delenv("LABOR_RESULTS_DIR", raising=False)  # 04_results then builds its own tiny table
    monkeypatch.delenv("LABOR_SWEEP_DIR", raising=False)    # 05_is_it_required runs its own tiny sweep
    before = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    nb = nbformat.read(path, as_version=4)
    committed = figures(nb)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    shown = figures(nb) >= committed > 0 or path.name == "06_exercises.ipynb"
    assert shown, (f"{path.name} ran but showed {figures(nb)} figures, fewer than the "
                                          f"{committed} of its committed copy (is the matplotlib backend inline?)")
    after = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    assert after == before, f"{path.name} left files in notebooks/: {sorted(set(after) - set(before))}"
