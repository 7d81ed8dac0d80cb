"""Module boundaries (issue "One method, one file", item B): no import cycles among the
modules of ``benchmarks`` and ``plots``, and ``plots`` imports of ``benchmarks`` only the
torch- and fcntl-free modules it needs, so it runs on a laptop without the runner, Windows
(no ``fcntl``) included.

Imports are read with ``ast``, every ``import`` statement of a module counted, also those
inside functions: a lazy import still ties two modules together.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO
from results_fixtures import FakeRun, write_run

PACKAGES = ("benchmarks", "plots")
#: What ``plots`` may import of ``benchmarks``: the package itself (its ``__init__`` imports
#: nothing), the schemas of the files it reads (the dataset catalogue, a matrix's
#: reference/comparisons keys) and the portable atomic writes.
PLOTS_MAY_IMPORT = {"benchmarks", "benchmarks.catalogue", "benchmarks.comparisons",
                    "benchmarks.files"}
#: Never imported, even lazily, by what plots imports: the training stack.
HEAVY = ("torch", "torchvision", "samplers", "models", "submitit")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (anywhere in it), as absolute dotted names.

    ``from pkg import x`` counts as ``pkg.x`` when that is a module, else as ``pkg``.
    """
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v] & graph.keys()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read():
    # guards the test itself: a parser that found nothing would find no cycles either
    assert "benchmarks.data" in GRAPH["benchmarks.train"]
    assert "benchmarks.runner" in GRAPH["benchmarks.slurm"]       # a lazy import counts
    assert "benchmarks.comparisons" in GRAPH["plots.paired"]      # `from benchmarks import x`


def test_no_import_cycles_in_benchmarks_and_plots():
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_lazy_cycle():
    assert _cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]


def test_plots_imports_of_benchmarks_are_the_torch_free_schemas_only():
    used = {(name, m) for name in GRAPH if name.split(".")[0] == "plots"
            for m in GRAPH[name] if m.split(".")[0] == "benchmarks"}
    assert {m for _, m in used} <= PLOTS_MAY_IMPORT, sorted(used)
    # and what those import stays inside the set, never the training stack
    for name in PLOTS_MAY_IMPORT:
        inside = {m for m in GRAPH[name] if m.split(".")[0] == "benchmarks"}
        assert inside <= PLOTS_MAY_IMPORT, (name, inside)
        heavy = {m for m in GRAPH[name] if m.split(".")[0] in HEAVY}
        assert not heavy, (name, heavy)


def test_plots_run_without_fcntl_and_without_torch(tmp_path):
    # As on Windows: ``import fcntl`` fails. The plots must still import, write every file
    # atomically (figures, summary, report) and never load torch.
    for seed in range(2):
        for arm in ("sgd", "impon"):
            write_run(tmp_path / "m", FakeRun(arm=arm, seed=seed, matrix="m", epochs=3,
                                              batch_size=1000, dataset="cifar10", n_train=50000,
                                              n_test=10000))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["fcntl"] = None          # `import fcntl` now raises ImportError
        from plots.__main__ import main
        rc = main(["m", "--results", {str(tmp_path)!r}])
        assert "torch" not in sys.modules, "plots loaded torch"
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "m" / "report.md").read_text()
    assert "CIFAR-10 (train 50,000 / test 10,000)" in report   # the catalogue's title
    assert (tmp_path / "m" / "figures" / "fig2_test_accuracy_vs_epoch.png").is_file()
    assert not [p for p in (tmp_path / "m").rglob(".*") if p.is_file()]  # no temp left
