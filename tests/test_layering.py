"""The package's layers hold (docs/architecture.md): the import-linter contracts in pyproject.toml
pass, they really fail on a violation, and no two modules import each other (directly or round
a loop). Imports under `if TYPE_CHECKING:` are annotations and do not count."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: grimp analyses the `kninfer` it imports, the copy under `root`.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_contracts_are_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def copy_of_the_package(dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copytree(
        ROOT / "kninfer", dest / "kninfer", ignore=shutil.ignore_patterns("__pycache__", "crds")
    )
    return dest


def test_a_transport_importing_a_family_breaks_the_contracts(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path / "repo")
    routes = root / "kninfer" / "http" / "routes.py"
    routes.write_text(routes.read_text() + "\nfrom kninfer.predictors.sklearn import MODEL_FILES\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Transports know no model family BROKEN" in done.stdout
    assert "kninfer.http.routes -> kninfer.predictors.sklearn" in done.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contracts(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path / "repo")
    codec = root / "kninfer" / "protocol" / "v2.py"
    codec.write_text(
        codec.read_text() + "\n\ndef _late() -> None:\n"
        "    from kninfer.server import lifecycle  # noqa: F401\n"
    )
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Layers point one way BROKEN" in done.stdout
    assert "kninfer.protocol.v2 -> kninfer.server.lifecycle" in done.stdout


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in kninfer's import graph."""
    import grimp

    graph = grimp.build_graph("kninfer", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    edges = {
        m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    assert import_cycles() == []
