"""The teaching notebooks: each runs top to bottom on CPU, and none is saved with outputs.

Each notebook trains its own tiny models (about a minute on one core), so these tests take a few minutes in all.
Run only them with `python -m pytest tests/test_notebooks.py`.
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("01_domain_gap.ipynb", "02_inconsistency_mask_spl.ipynb", "03_points_ppl.ipynb", "04_results.ipynb")
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_four_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 4, f"expected at least 4 notebooks in {NOTEBOOKS_DIR}, found {sorted(names)}"
    missing = [n for n in EXPECTED if n not in names]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_notebook_holds_no_outputs(path):
    """Notebooks are saved cleared, so the repository never shows stale figures or numbers."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace {path.relative_to(NOTEBOOKS_DIR.parent)}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """Executes every cell in order (cwd = notebooks/, as Jupyter does); any cell error fails the test."""
    monkeypatch.delenv("LABOR_RESULTS_DIR", raising=False)  # 04_results then builds its own tiny table
    before = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} ran but showed no figure (is the matplotlib backend still inline?)"
    after = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    assert after == before, f"{path.name} left files in notebooks/: {sorted(set(after) - set(before))}"
