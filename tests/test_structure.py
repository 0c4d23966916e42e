"""How the files depend on each other: the concept files (the paper's ideas) import none of the plumbing, and the
project's modules import each other without a cycle."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = ("labor.py", "selection.py", "models.py", "data.py", "synthetic.py")
PLUMBING = {"runs", "experiments", "distributed", "job", "train", "bench", "figures"}
PROJECT = {p.stem for p in ROOT.glob("*.py")}


def imports(path, top_level_only=False):
    """The project modules a file imports (anywhere in it, or at module level only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT


def test_concept_files_import_no_plumbing():
    """labor.py, selection.py, models.py, data.py and synthetic.py can be read (and imported) without the run's
    plumbing: no import of it anywhere in them, not even inside a function."""
    for name in CONCEPTS:
        assert not imports(ROOT / name) & PLUMBING, (name, imports(ROOT / name) & PLUMBING)


def test_module_level_imports_have_no_cycle():
    """The project's modules, each pointing to the ones it imports at module level, form no cycle (a module that
    needs one of its importers imports it inside the function that needs it, as data.__getattr__ does)."""
    graph = {p.stem: imports(p, top_level_only=True) for p in ROOT.glob("*.py")}
    state = {}

    def visit(node, path):
        if state.get(node) == "open":
            raise AssertionError("import cycle: " + " -> ".join(path + [node]))
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_the_checks_see_an_import_inside_a_function(tmp_path):
    """(The check itself: an import hidden in a function body counts, a relative or foreign one does not.)"""
    f = tmp_path / "x.py"
    f.write_text("import torch\n\ndef f():\n    import runs\n    from experiments import run_table\n")
    assert imports(f) == {"runs", "experiments"} and imports(f, top_level_only=True) == set()


def test_the_synthetic_benchmarks_names_still_resolve_in_data():
    """The synthetic benchmark moved to synthetic.py; the names notebooks and users know from data.py still work."""
    import data
    import synthetic
    assert data.make_scene is synthetic.make_scene and data.SyntheticStreets is synthetic.SyntheticStreets
    assert data.SOURCE_COLORS is synthetic.SOURCE_COLORS
