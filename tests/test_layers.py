"""The house's layers (../shared/DESIGN.md): the import-linter contracts of pyproject.toml hold on the
tree, and break on an upward import planted in a copy of it; what import-linter cannot see, no module
takes another module's private name, and no module or function outgrows one job."""

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastsoftmax"
LINT = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint(folder):
    return subprocess.run([str(LINT), "--no-logo", "--no-cache"], cwd=folder, capture_output=True, text=True,
                          check=False, timeout=300)


def test_the_tree_keeps_the_contracts():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in proc.stdout


def _ini(contracts, name):
    """pyproject.toml's contracts for a copy of the package named `name`, in import-linter's INI format
    (the benchmarks left out: they are not copied)."""
    lines = ["[importlinter]", f"root_package = {name}"]
    for contract in contracts:
        lines.append(f"[importlinter:contract:{contract['id']}]")
        for key, value in contract.items():
            if isinstance(value, list):
                kept = [v.replace("fastsoftmax", name) for v in value if "bench" not in v]
                lines += [f"{key} ="] + [f"    {v}" for v in kept]
            elif key != "id":
                lines.append(f"{key} = {str(value).replace('fastsoftmax', name)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("backends/cpu/rows.py", "from ...cli import common", "layers"),  # a kernel reaching for the CLI
    ("io/idx.py", "from ..ops import validation", "layers"),  # io knowing of kernels
    ("models/estimator.py", "from ..backends import cpu", "backends-behind-ops"),  # a model calling a backend
    ("backends/cuda/rows.py", "from ..cpu import rows", "twins-independent"),  # the twins reaching across
])
def test_a_planted_import_breaks_its_contract(tmp_path, module, planted, contract):
    copy = tmp_path / "planted"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / module).open("a") as f:
        f.write(f"\n{planted}  # planted\n")
    (tmp_path / ".importlinter").write_text(_ini(CONTRACTS, "planted"))
    proc = lint(tmp_path)
    assert proc.returncode != 0, proc.stdout
    dotted = "planted." + module.removesuffix(".py").replace("/", ".")
    broken = proc.stdout[proc.stdout.index("Broken contracts"):]
    assert dotted in broken and next(c["name"] for c in CONTRACTS if c["id"] == contract) in broken


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imported_module(node, path):
    """The fastsoftmax module an ImportFrom names, or None for another package's."""
    if node.level == 0:
        return node.module if (node.module or "").startswith("fastsoftmax") else None
    package = _dotted(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_takes_another_modules_private_name():
    """What two modules share lives in a third, lower one, under a public name (DESIGN.md)."""
    taken = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        modules = set()  # names bound to fastsoftmax modules here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _imported_module(node, path):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        taken.append(f"{_dotted(path)} imports {alias.name}")
                    modules.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                taken.append(f"{_dotted(path)} uses {node.value.id}.{node.attr}")
    assert taken == []


MODULE_LINES, FUNCTION_LINES = 400, 60


def test_modules_and_functions_stay_small():
    """A module passing ~400 lines or a function passing ~60 is split by job (DESIGN.md)."""
    large = []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") > MODULE_LINES:
            large.append(f"{_dotted(path)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES:
                    large.append(f"{_dotted(path)}.{node.name}: {lines} lines")
    assert large == []
