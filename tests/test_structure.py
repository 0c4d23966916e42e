"""How the files depend on each other: the concept files (the paper's ideas) import none of the plumbing, and the
project's modules import each other without a cycle, counting imports anywhere in a file (inside functions too)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = ("labor.py", "selection.py", "models.py", "data.py", "synthetic.py", "cost.py")
PLUMBING = {"runs", "experiments", "distributed", "job", "train", "bench", "figures"}
PROJECT = {p.stem for p in ROOT.glob("*.py")}


def imports(path):
    """The project modules a file imports, anywhere in it (a relative or foreign import does not count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT


def cycle(graph):
    """An import cycle of the graph {module: modules it imports}, as a list (None when there is none)."""
    state = {}

    def visit(node, path):
        if state.get(node) == "open":
            return path[path.index(node):] + [node]
        if state.get(node) != "done":
            state[node] = "open"
            for nxt in sorted(graph.get(node, ())):
                if found := visit(nxt, path + [node]):
                    return found
            state[node] = "done"
        return None

    return next((found for node in sorted(graph) if (found := visit(node, []))), None)


def test_concept_files_import_no_plumbing():
    """labor.py, selection.py, models.py, data.py, synthetic.py and cost.py can be read (and imported) without the
    run's plumbing: no import of it anywhere in them, not even inside a function."""
    for name in CONCEPTS:
        assert not imports(ROOT / name) & PLUMBING, (name, imports(ROOT / name) & PLUMBING)


def test_no_import_cycle_at_any_depth():
    """The project's modules, each pointing to every one it imports (at module level or inside a function), form no
    cycle: a reader can take the files in an order where each needs only the ones before it."""
    assert cycle({p.stem: imports(p) for p in ROOT.glob("*.py")}) is None


def test_the_checks_see_an_import_inside_a_function_and_a_cycle(tmp_path):
    """(The checks themselves: an import hidden in a function body counts, a relative or foreign one does not; a
    cycle through three modules is found, a diamond is not one.)"""
    f = tmp_path / "x.py"
    f.write_text("import torch\nfrom . import job\n\ndef f():\n    import runs\n    from experiments import table\n")
    assert imports(f) == {"runs", "experiments"}
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
