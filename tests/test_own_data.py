"""A new analyst's first day: their own files (tests/data/own_town), found as ./gisgrid.toml, through check and run.

The files have what real ones have: Chinese column names, GBK shapefiles and CSVs, no village column on the
grids, no id on the roads, a road class the config does not map, blanks, and a road that runs out of town.
The truth comes from the demo town the files were cut from (truth.json, written by make.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

OWN = Path(__file__).parent / "data" / "own_town"
VILLAGES = ("V01", "V02", "V03", "V04")


def gisgrid(*args: object, cwd: Path, code: int | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "gisgrid", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, encoding="utf-8", timeout=300)
    assert "Traceback" not in res.stderr, res.stderr
    if code is not None:
        assert res.returncode == code, res.stdout + res.stderr
    return res


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("own") / "东社镇数据"
    shutil.copytree(OWN, work, ignore=shutil.ignore_patterns("make.py", "truth.json"))
    return work


@pytest.fixture(scope="module")
def first_run(own: Path) -> subprocess.CompletedProcess[str]:
    return gisgrid("run", "--no-maps", "--as-of", "2026-11-02", cwd=own)


def test_check_finds_the_config_and_says_what_it_derived(own):
    res = gisgrid("check", cwd=own, code=0)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("config: ")
    assert str(own / "gisgrid.toml") in lines[0]
    derived = [line for line in lines if line.startswith("derived ")]
    assert any("grids.village_id for 39 feature" in line for line in derived), derived
    assert any("roads.road_id for" in line and "geometry" in line for line in derived), derived
    cls = next(line for line in derived if "roads.road_class" in line)
    assert "'lane'" in cls
    assert "机耕路" in cls
    assert "missing" in cls


def test_run_derives_each_grids_village_from_its_location(own, first_run):
    truth = json.loads((OWN / "truth.json").read_text(encoding="utf-8"))
    folder = own / "reports" / "2026-11-02"  # next to the config, not the current folder's parent
    derived = pd.read_csv(folder / "derived.csv", dtype=str, encoding="utf-8-sig")
    got = derived[(derived["layer"] == "grids") & (derived["column"] == "village_id")]
    assert dict(zip(got["feature_id"], got["value"], strict=True)) == truth["grid_village"]
    roads = derived[(derived["layer"] == "roads") & (derived["column"] == "road_id")]
    assert len(roads) == truth["roads"]
    assert roads["value"].is_unique


def test_road_ids_are_the_same_on_the_next_run(own, first_run):
    gisgrid("run", "--no-maps", "--as-of", "2026-11-03", cwd=own)
    ids = [pd.read_csv(own / "reports" / d / "derived.csv", dtype=str, encoding="utf-8-sig").query(
        "column == 'road_id'")["value"].tolist() for d in ("2026-11-02", "2026-11-03")]
    assert ids[0] == ids[1]
    # and a finding about a road keeps its id, so its lifecycle carries on instead of "fixed + new"
    two = [pd.read_csv(own / "reports" / d / "findings.csv", dtype=str, encoding="utf-8-sig")
           for d in ("2026-11-02", "2026-11-03")]
    assert set(two[0]["finding_id"]) == set(two[1]["finding_id"])


def test_the_run_names_its_outputs_and_the_road_out_of_town(own, first_run):
    out = first_run.stdout
    assert first_run.returncode in (0, 1), first_run.stderr
    report = own / "reports" / "2026-11-02" / "report.html"
    assert f"report             {report.resolve()}" in out
    assert "outside the town   1 roads" in out
    findings = pd.read_csv(report.parent / "findings.csv", dtype=str, encoding="utf-8-sig")
    outside = findings[findings["kind"] == "outside_town"]
    assert len(outside) == 1
    assert outside["severity"].iloc[0] == "low"
    summary = json.loads((report.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["outside_town"]["roads"] == 1
    assert summary["derived"]["grids.village_id"] == 39


def test_area_findings_match_the_demo_town_they_were_cut_from(own, first_run):
    import gisgrid as gg

    demo = gg.load_town(Path(__file__).parents[1] / "data" / "geo" / "gisgrid.toml")
    keep = {"villages": demo.villages["village_id"].isin(VILLAGES), "grids": demo.grids["village_id"].isin(VILLAGES)}
    town = gg.Town.from_frames(villages=demo.villages[keep["villages"]], grids=demo.grids[keep["grids"]],
                               grid_staff=demo.grid_staff, crs=demo.crs, name="oracle")
    want = gg.analyze(town).findings
    got = pd.read_csv(own / "reports" / "2026-11-02" / "findings.csv", dtype=str, encoding="utf-8-sig")

    def areas(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
        rows = frame[frame["kind"].isin(["area_gap", "area_overlap", "grid_unstaffed"])]
        return sorted((str(k), str(v), float(m)) for k, v, m in
                      zip(rows["kind"], rows["village_id"], rows["measure"].astype(float), strict=True))

    mine, oracle = areas(got), areas(pd.DataFrame(want.drop(columns="geometry")))
    assert [r[:2] for r in mine] == [r[:2] for r in oracle]
    assert [r[2] for r in mine] == pytest.approx([r[2] for r in oracle], rel=1e-3)  # shapefile round trip
    assert mine  # the four villages hold the demo's planted overlap and gap
