"""`gisgrid run`, `check`, `demo` and `map` as a user runs them: a subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

ROOT = Path(__file__).resolve().parents[1]


def gisgrid(*args, cwd, check_code=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "gisgrid", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    if check_code is not None:
        assert res.returncode == check_code, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "geo"
    gisgrid("demo", "--out", out, cwd=out.parent, check_code=0)
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    res = gisgrid("run", "--as-of", "2026-11-01", cwd=work)
    return work, res


def test_demo_writes_real_office_files(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    assert {"town.gpkg", "grid_staff.csv", "river_chiefs.xlsx", "gisgrid.toml"} <= names
    raw = (demo_dir / "grid_staff.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "网格长".encode("gbk") in raw


def test_committed_demo_data_is_what_demo_makes(demo_dir):
    committed = ROOT / "data" / "geo"
    for layer in ("villages", "grids", "roads", "rivers", "pois"):
        a = pyogrio.read_dataframe(committed / "town.gpkg", layer=layer)
        b = pyogrio.read_dataframe(demo_dir / "town.gpkg", layer=layer)
        pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")),
                                      pd.DataFrame(b.drop(columns="geometry")))
        assert a.geometry.geom_equals_exact(b.geometry, 1e-9).all(), layer
    assert (committed / "grid_staff.csv").read_bytes() == (demo_dir / "grid_staff.csv").read_bytes()


def test_run_without_config_finds_the_veto_and_writes_everything(default_run):
    work, res = default_run
    assert res.returncode == 1, res.stderr  # the planted school in a gap is a veto item
    folder = work / "reports" / "2026-11-01"
    for name in ("report.html", "findings.csv", "findings.xlsx", "findings.geojson", "summary.json",
                 "sensitive.geojson", "checkpoints.csv", "reaches.geojson", "cross_sections.geojson"):
        assert (folder / name).stat().st_size > 0, name
    assert (work / "maps" / "command_center.html").stat().st_size > 0
    assert (work / "reports" / "history.sqlite").exists()
    assert list((folder / "owners").glob("*.csv"))
    assert (folder / "findings.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary  # the report tests check its fields
    assert "Traceback" not in res.stderr
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.name != ".gisgrid.lock"]


def test_run_on_written_config_gives_the_same_findings(default_run, demo_dir, tmp_path):
    work, _ = default_run
    res = gisgrid("run", demo_dir / "gisgrid.toml", "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps",
                  cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    a = pd.read_csv(work / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    b = pd.read_csv(tmp_path / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    assert sorted(a["finding_id"]) == sorted(b["finding_id"])


def test_quiet_prints_one_line(demo_dir, tmp_path):
    res = gisgrid("run", demo_dir, "--out", tmp_path, "--quiet", "--no-maps", "--as-of", "2026-11-02", cwd=tmp_path)
    assert res.returncode == 1
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "veto" in lines[0]
    assert res.stderr == ""


def test_check_ok_and_bad_input_exit_2(demo_dir, tmp_path):
    ok = gisgrid("check", demo_dir / "gisgrid.toml", cwd=tmp_path, check_code=0)
    assert "grids" in ok.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (demo_dir / "town.gpkg").read_bytes()
    (broken / "town.gpkg").write_bytes(data[: len(data) // 3])
    cfg = (demo_dir / "gisgrid.toml").read_text(encoding="utf-8")
    (broken / "gisgrid.toml").write_text(cfg, encoding="utf-8")
    bad = gisgrid("check", broken / "gisgrid.toml", cwd=tmp_path, check_code=2)
    assert "town.gpkg" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_run = gisgrid("run", broken / "gisgrid.toml", "--out", tmp_path / "o", cwd=tmp_path, check_code=2)
    assert "town.gpkg" in bad_run.stderr


def test_earlier_date_refused_then_forced(default_run):
    work, _ = default_run
    res = gisgrid("run", "--as-of", "2026-10-01", "--no-maps", cwd=work, check_code=2)
    assert "force" in res.stderr.lower()
    gisgrid("run", "--as-of", "2026-10-01", "--no-maps", "--force", cwd=work, check_code=1)


def test_map_command_for_one_village(demo_dir, tmp_path):
    res = gisgrid("map", demo_dir / "gisgrid.toml", "--out", tmp_path, "--village", "V01", cwd=tmp_path,
                  check_code=0)
    assert "V01" in res.stdout or list((tmp_path / "maps").glob("village_*V01*.html"))
    bad = gisgrid("map", demo_dir / "gisgrid.toml", "--out", tmp_path, "--village", "NOPE", cwd=tmp_path,
                  check_code=2)
    assert "NOPE" in bad.stderr
