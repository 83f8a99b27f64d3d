"""House rules that code review would otherwise have to remember: lint, and imports pointing one way."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gisgrid"

# module -> package modules it may import at module level (DESIGN.md, with the deviations the
# closing notes explain: maps/report write through io; pipeline builds the demo town when no config is given).
ALLOWED = {
    "_errors": set(),
    "settings": set(),
    "vocab": set(),
    "crs": {"_errors"},
    "io": {"_errors", "crs"},
    "model": {"_errors", "crs", "settings"},
    "findings": {"_errors", "settings"},
    "tolerance": set(),  # pure geometry: shapely and numpy only
    "coverage": {"_errors", "settings", "model", "tolerance"},
    "assign": {"_errors", "settings", "model", "findings", "coverage"},
    "sensitive": {"_errors", "settings", "model", "findings", "coverage"},
    "analysis": {"vocab", "_errors", "settings", "model", "findings", "coverage", "tolerance", "assign", "sensitive"},
    "compare": {"vocab", "_errors", "settings", "findings", "analysis"},
    "maps": {"vocab", "_errors", "settings", "model", "findings", "crs", "io"},
    "report": {"vocab", "_errors", "settings", "findings", "io", "__init__"},
    "history": {"_errors", "settings", "findings"},
    "demo": {"_errors", "settings", "model"},
    "pipeline": {"vocab", "_errors", "settings", "io", "model", "analysis", "maps", "report", "history", "assign",
                 "sensitive", "demo"},
    "cli": {"_errors", "pipeline", "demo", "__init__"},
}


def _package_imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "gisgrid":
                found.update(a.name for a in node.names if (PKG / f"{a.name}.py").exists())
                if any(not (PKG / f"{a.name}.py").exists() for a in node.names):
                    found.add("__init__")
            elif node.module.startswith("gisgrid."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gisgrid."):
                    found.add(a.name.split(".")[1])
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_imports_point_one_way(module):
    path = PKG / f"{module}.py"
    assert path.exists(), f"{module}.py is listed in the dependency table but missing"
    extra = _package_imports(path, top_level_only=True) - ALLOWED[module] - {module}
    assert not extra, f"gisgrid.{module} imports {sorted(extra)}, which DESIGN.md does not allow"


def test_every_module_is_in_the_table():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    assert modules <= set(ALLOWED), f"add {sorted(modules - set(ALLOWED))} to the dependency table"


def test_folium_only_in_maps():
    users = [p.name for p in PKG.glob("*.py") if p.stem != "maps"
             and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "folium" in ast.dump(n)
                     for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert users == []


def test_analysis_never_imports_outputs_at_module_level():
    assert not _package_imports(PKG / "analysis.py", top_level_only=True) & {"maps", "report", "cli", "pipeline"}


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is in the test extra")
def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", "gisgrid", "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stdout[-4000:]
