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

# part -> parts of the package it may import at module level (DESIGN.md "Layers of the code", with the
# deviations docs/architecture.md explains). A part is a top-level module or a folder (geometry/, checks/, ...).
ALLOWED = {
    "_errors": set(),
    "_compat": set(),
    "settings": {"vocab"},
    "vocab": set(),
    "crs": {"_errors"},
    "io": {"vocab", "_errors", "crs"},
    "model": {"vocab", "_errors", "crs", "settings"},
    "findings": {"_errors", "settings", "vocab"},
    "geometry": {"_errors", "settings", "vocab"},  # pure geometry: never model, findings or checks
    "checks": {"vocab", "_errors", "settings", "model", "findings", "geometry"},
    "owners": {"vocab", "settings", "findings", "geometry"},
    "policy": {"vocab", "_errors", "settings", "findings"},
    "scoring": {"vocab", "_errors", "settings", "findings"},  # the 测评体系: one policy for every level
    "analysis": {"vocab", "_errors", "settings", "model", "findings", "geometry", "checks", "owners"},
    "comparison": {"vocab", "_errors", "settings", "findings"},
    "maps": {"vocab", "_errors", "settings", "model", "findings", "crs", "io"},
    "report": {"vocab", "_errors", "settings", "findings", "policy", "io", "scoring", "__init__"},
    "history": {"vocab", "_errors", "settings", "findings", "policy", "io"},  # io.postgis: a history in PostgreSQL
    "publish": {"vocab", "_errors", "settings", "findings", "io"},  # writes PostGIS tables through io.postgis
    # outputs: messages from the findings' lifecycle; sends over the network and keeps its outbox in the history db
    "dispatch": {"vocab", "_errors", "settings", "findings", "io", "history"},  # its outbox is in the history db
    "demo": {"_errors", "settings", "model"},
    "pipeline": {"vocab", "_errors", "settings", "io", "model", "analysis", "maps", "report", "history", "owners",
                 "policy", "checks", "demo", "dispatch", "publish"},
    "cli": {"_errors", "pipeline", "demo", "__init__"},
    # district runs: each town through pipeline.run as a Dask task, then district checks (geometry), the town
    # ranking (scoring) and the district outputs (io writers, maps); the demo district's files (demo)
    "district": {"vocab", "_errors", "settings", "io", "findings", "geometry", "scoring", "demo", "pipeline", "maps"},
}
OUTPUTS = {"maps", "report", "history", "comparison", "dispatch"}
PARTS = {p.stem for p in PKG.iterdir()
         if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem not in {"__init__", "__main__"}}


def _part_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _files(part: str) -> list[Path]:
    folder = PKG / part
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PKG / f"{part}.py"]


def _imported_part(module: str) -> str | None:
    if module == "gisgrid":
        return "__init__"
    if module.startswith("gisgrid."):
        return module.split(".")[1]
    return None


def _package_imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guards = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test)]
    typing_only = {id(n) for g in guards for n in ast.walk(g)}  # imports for type hints only never run
    nodes = [n for n in (tree.body if top_level_only else ast.walk(tree)) if id(n) not in typing_only]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gisgrid":
                for a in node.names:
                    found.add(a.name if a.name in PARTS else "__init__")
            elif (part := _imported_part(node.module)) is not None:
                found.add(part)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if (part := _imported_part(a.name)) is not None and part != "__init__":
                    found.add(part)
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_one_way(part):
    files = _files(part)
    assert all(f.exists() for f in files), f"{part} is listed in the dependency table but missing"
    for f in files:
        extra = _package_imports(f, top_level_only=True) - ALLOWED[part] - {part}
        assert not extra, f"{f.relative_to(ROOT)} imports {sorted(extra)}, which DESIGN.md does not allow"


def test_every_part_is_in_the_table():
    assert set(PARTS) <= set(ALLOWED), f"add {sorted(set(PARTS) - set(ALLOWED))} to the dependency table"


def test_folium_only_in_maps():
    users = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if _part_of(p) != "maps"
             and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "folium" in ast.dump(n)
                     for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert users == []


def test_outputs_never_import_checks_even_lazily():
    for part in OUTPUTS:
        for f in _files(part):
            assert not _package_imports(f, top_level_only=False) & {"checks", "geometry", "analysis"}, f


def test_analysis_never_imports_outputs_at_module_level():
    assert not _package_imports(PKG / "analysis.py", top_level_only=True) & {"maps", "report", "cli", "pipeline"}


def test_pure_geometry_knows_no_town():
    for f in _files("geometry"):
        assert not _package_imports(f, top_level_only=False) & {"model", "findings", "checks"}, f


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is in the test extra")
def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", "gisgrid", "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stdout[-4000:]


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(),
                    reason="mypy is in the test extra")
def test_mypy_clean():
    mypy = shutil.which("mypy") or str(Path(sys.executable).parent / "mypy")
    res = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-4000:]


FILE_CALLS = {"open", "write_text", "write_bytes", "mkdir", "unlink", "rmdir", "rmtree", "to_file", "to_csv",
              "to_excel", "to_parquet", "write_dataframe", "savefig", "touch"}
TOUCH_FILES = {"io", "history", "pipeline"}


def test_only_io_history_and_pipeline_touch_files():
    offenders = []
    for path in PKG.rglob("*.py"):
        if _part_of(path) in TOUCH_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in FILE_CALLS:
                continue
            # writing into an in-memory buffer (a chart's SVG) touches no file
            target = node.args[0] if node.args else None
            if name == "savefig" and isinstance(target, ast.Name) and target.id == "buf":
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    assert offenders == [], "file I/O belongs in io/, history or pipeline"
