"""The architecture, checked: layers (import-linter), no private names across modules,
no long module without a reason.

The layers contract is in the repository's pyproject.toml ([tool.importlinter]);
docs/concepts/architecture.md draws it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "core" / "src" / "stashflow"
SOURCES = [CORE, *sorted((REPO / "plugins").glob("*/src/*")),
           *sorted((REPO / "docs" / "examples").glob("*/src/*"))]
LINT_IMPORTS = shutil.which("lint-imports")


def _lint(env: dict | None = None) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS, "import-linter is not installed: pip install -r requirements-test.txt"
    return subprocess.run([LINT_IMPORTS, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_the_layers_contract_holds():
    out = _lint()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "stashflow's layers KEPT" in out.stdout
    assert "no cycles among the modules of a package KEPT" in out.stdout


@pytest.mark.parametrize("module, bad", [
    ("records.py", "from .engine import tasks as _upward\n"),  # the record format knows no task
    ("storage/base.py", "from ..registry import get_registry as _upward\n"),  # nor storage a registry
])
def test_the_layers_contract_fails_on_a_wrong_import(tmp_path, module, bad):
    copy = tmp_path / "stashflow"
    shutil.copytree(CORE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    source = target.read_text()
    cut = source.index("from __future__ import annotations\n") + len("from __future__ import annotations\n")
    target.write_text(source[:cut] + bad + source[cut:])
    out = _lint({"PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout[-3000:]
    assert "stashflow's layers BROKEN" in out.stdout
    name = "stashflow." + module.removesuffix(".py").replace("/", ".")
    assert name in out.stdout, out.stdout[-3000:]


def _modules(root: Path):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_reads_another_modules_private_names():
    """`from x import _name` and `x._name` across modules: only a module's own privates."""
    found = []
    for source in SOURCES:
        for path, tree in _modules(source):
            imported: set[str] = set()  # names bound to stashflow modules in this file
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (
                        node.level or (node.module or "").startswith("stashflow")):
                    for alias in node.names:
                        if _private(alias.name) and not (alias.name == "_" or (node.module is None
                                                         and node.level)):
                            found.append(f"{path.relative_to(REPO)}:{node.lineno}: "
                                         f"imports {alias.name} from {node.module}")
                        imported.add(alias.asname or alias.name)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("stashflow"):
                            imported.add((alias.asname or alias.name).split(".")[0])
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and _private(node.attr)
                        and isinstance(node.value, ast.Name) and node.value.id in imported):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: reads "
                                 f"{node.value.id}.{node.attr}")
    assert found == [], "\n".join(found)


def test_every_long_module_says_why_at_its_top():
    long = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            text = path.read_text()
            if text.count("\n") > 500:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "Why one long module" not in doc:
                    long.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert long == [], "split these modules or say at their top why they are long: " + ", ".join(long)


def test_the_plugins_use_only_public_modules_of_stashflow():
    """A plugin imports stashflow.<public module>, never a module whose name starts with _."""
    found = []
    for source in SOURCES[1:]:
        for path, tree in _modules(source):
            for node in ast.walk(tree):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                for name in names:
                    if name.startswith("stashflow.") and any(_private(part)
                                                             for part in name.split(".")):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert found == [], "\n".join(found)


def test_the_tree_has_no_module_left_out_of_the_layers():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = {name.strip() for contract in config["contracts"] if contract["type"] == "layers"
               for layer in contract["layers"] for name in layer.replace(":", "|").split("|")}
    top = {f"stashflow.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"}
    top |= {f"stashflow.{p.name}" for p in CORE.iterdir() if (p / "__init__.py").exists()}
    assert sorted(top - layered) == [], "add these modules to a layer in pyproject.toml"
    assert sys.version_info >= (3, 11)


def test_imports_inside_functions_are_for_import_time_and_say_so():
    """A library module imports stashflow's own modules at its top; one inside a function
    must say why (`# lazy: ...`): with the layers acyclic, only import time is a reason."""
    found = []
    for path, tree in _modules(CORE):
        rel = path.relative_to(CORE).as_posix()
        if rel.startswith(("cli", "testing/", "engine/demo", "__init__", "__main__")):
            continue  # the command line and the kit defer imports by design
        lines = path.read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for sub in ast.walk(node):
                    if (isinstance(sub, ast.ImportFrom)
                            and (sub.level or (sub.module or "").startswith("stashflow"))
                            and "# lazy:" not in lines[sub.end_lineno - 1]):
                        found.append(f"{rel}:{sub.lineno}: {lines[sub.lineno - 1].strip()}")
    assert found == [], "\n".join(found)
