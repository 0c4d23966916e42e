"""How the files depend on each other, and what a reader sees at the top: the concept files (the paper's ideas) and
train.py at the root, the plumbing in tools/. Imports run one way: concept files import only concept files, train.py
imports concept files and tools/' run API, and nothing imports train; no cycle at any depth (an import inside a
function counts). `import train` works where fcntl, resource and termios do not exist (Windows)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONCEPTS = {"labor", "selection", "models", "data", "synthetic", "cost"}
RUN_API = {"tools", "tools.flags", "tools.runtime", "tools.job", "tools.checkpoint", "tools.distributed",
           "tools.bench", "tools.figures"}


def module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


PROJECT = {module_name(p) for p in [*ROOT.glob("*.py"), *(ROOT / "tools").glob("*.py")]}


def imports(path, project=None):
    """The project modules a file imports, anywhere in it (`from tools import job` counts as tools.job; a relative or
    foreign import does not count)."""
    project = PROJECT if project is None else project
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n in project}


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


def graph():
    return {module_name(p): imports(p) - {module_name(p)} for p in [*ROOT.glob("*.py"), *(ROOT / "tools").glob("*.py")]}


def test_the_root_holds_the_concept_files_and_train_alone():
    """`ls *.py` shows the design card: the six concept files and train.py; everything else is in tools/."""
    assert {p.stem for p in ROOT.glob("*.py")} == CONCEPTS | {"train"}


def test_imports_run_one_way():
    """Concept files import only concept files; train.py imports concept files and the run API of tools/; no
    module of tools/ (nor any other) imports train."""
    g = graph()
    for name in CONCEPTS:
        assert g[name] <= CONCEPTS, (name, g[name] - CONCEPTS)
    assert g["train"] <= CONCEPTS | RUN_API, g["train"] - CONCEPTS - RUN_API
    assert not [m for m, deps in g.items() if "train" in deps]


def test_no_import_cycle_at_any_depth():
    """The project's modules, each pointing to every one it imports (at module level or inside a function), form no
    cycle: a reader can take the files in an order where each needs only the ones before it."""
    g = {m: {d for d in deps if d != "tools"} for m, deps in graph().items()}   # (the package's __init__ holds no import)
    assert cycle(g) is None


def test_import_train_without_posix_only_modules():
    """On a system without fcntl, resource or termios (Windows), `import train` still works and a method function
    runs: they are blocked here by a finder that refuses them."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name in ('fcntl', 'resource', 'termios'):\n"
            "            raise ImportError(f'no module named {name} (blocked)')\n"
            "sys.meta_path.insert(0, Block())\n"
            "for m in ('fcntl', 'resource', 'termios'):\n"
            "    sys.modules.pop(m, None)\n"
            "import train, tools.experiments\n"
            "import tools.runtime\n"
            "assert tools.runtime.peak_memory_mb(tools.runtime.Runtime().device) is None\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_the_checks_see_an_import_inside_a_function_and_a_cycle(tmp_path):
    """(The checks themselves: an import hidden in a function body counts, `from tools import job` names tools.job, a
    relative or foreign one does not count; a cycle through three modules is found, a diamond is not one.)"""
    f = tmp_path / "x.py"
    f.write_text("import torch\nfrom . import job\nfrom tools import job\n\ndef f():\n    import train\n"
                 "    from tools.experiments import table\n")
    assert imports(f) == {"tools", "tools.job", "train", "tools.experiments"}
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
