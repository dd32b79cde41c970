"""The layout of ranklab/experiments: protocol -> run -> results, no import cycle between its modules,
and the results side readable without the trainer."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ranklab" / "experiments"
SUBPACKAGES = ("protocol", "run", "results")
HEAVY = ("ranklab.train.trainer", "accelerate", "transformers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(package.rglob("*.py"))}


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of ranklab.experiments that ``name`` imports anywhere (module level, functions, branches)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from package import module`` imports the submodule; ``from module import name`` the module
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walker_sees_relative_and_function_level_imports():
    graph = _graph()
    recipes = "ranklab.experiments.protocol.recipes"
    assert "ranklab.experiments.protocol.paper_recipes" in graph[recipes]  # from .paper_recipes import ...
    assert "ranklab.experiments.protocol.paper_settings" in graph["ranklab.experiments.protocol.paper_recipes"]
    assert "ranklab.experiments.run.analysis" in graph["ranklab.experiments.run.runner"]  # inside execute()
    assert "ranklab.experiments.results.figures" in graph["ranklab.experiments.run.commands"]  # inside _draw()
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_experiments_modules_import_no_cycle():
    graph = _graph()
    assert len(graph) >= 25
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the two recipe sets build on protocol.spec; only the generic set reads the paper set
    assert "ranklab.experiments.protocol.recipes" not in graph["ranklab.experiments.protocol.paper_recipes"]


def test_the_whole_package_imports_no_cycle():
    """Not only experiments/: no module of ranklab imports (at any depth, in any function) a module
    that imports it back."""
    graph = _graph(ROOT / "ranklab")
    assert len(graph) >= 100
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_layout_is_protocol_run_results_with_no_module_left_at_the_top():
    top = {p.name for p in PACKAGE.iterdir() if p.suffix in (".py", ".md") or (p.is_dir() and p.name != "__pycache__")}
    assert top == {"__init__.py", "toy.py", "README.md", *SUBPACKAGES}  # no module (or shim) left at the old paths
    readme = (PACKAGE / "README.md").read_text()
    for sub in SUBPACKAGES:
        init = PACKAGE / sub / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), init  # says what lives there
        for module in (PACKAGE / sub).glob("*.py"):
            if module.name != "__init__.py":
                assert f"{sub}/{module.name}" in readme, module  # one line per module
    assert not (ROOT / "ranklab" / "result_plots.py").exists()
    import ranklab.experiments

    assert callable(ranklab.experiments.fit_planted)  # the public API stays at the top


def test_the_results_modules_import_without_the_trainer():
    """Each module of results/ in a fresh interpreter: none of them imports the trainer, Accelerate or
    Transformers (the results are drawn from the summary alone)."""
    names = sorted(name for name in _modules() if name.startswith("ranklab.experiments.results."))
    assert len(names) >= 10
    code = "\n".join([
        "import importlib, sys",
        f"heavy = {HEAVY!r}",
        f"for name in {names!r}:",
        "    importlib.import_module(name)",
        "    loaded = [m for m in heavy if m in sys.modules]",
        "    assert not loaded, (name, loaded)",
        "print('ok')",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize("modules", [("ranklab.experiments.results.claims", "ranklab.experiments.results.figures")])
def test_claims_and_figures_in_a_fresh_interpreter(modules):
    code = (f"import sys, {', '.join(modules)}\n"
            f"assert not [m for m in {HEAVY!r} if m in sys.modules], [m for m in {HEAVY!r} if m in sys.modules]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
