"""A finding about several grids or villages holds a real list of ids: an id may contain a comma.

Two overlapping grids ``"G1,东"`` and ``"G2"`` once made ``grid_id = "G1,东,G2"`` and one owner; the
other grid's chief was silently dropped. Now the cell is a tuple, every consumer reads it as one, and
only files without lists (CSV, XLSX, GeoPackage) and people's text join it.
"""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import pandas as pd
import pytest
from shapely import box

import gisgrid
from gisgrid.findings import explode_ids, id_list, ids_cell, show_ids
from gisgrid.history import History
from gisgrid.maps import write_maps
from gisgrid.report import write_report

CRS = "EPSG:4549"
X0, Y0 = 500000.0, 3550000.0
AWKWARD = "G1,东"  # a real township code with a comma in it


def b(x0: float, y0: float, x1: float, y1: float):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


@pytest.fixture(scope="module")
def assessment():
    # the villages overlap by 50 m (a finding about both), the grids "G1,东" and "G2" by 100 m
    villages = gpd.GeoDataFrame({"village_id": ["V,1", "V2"], "name": ["东,村", "西村"]},
                                geometry=[b(0, 0, 1050, 1000), b(1000, 0, 2000, 1000)], crs=CRS)
    grids = gpd.GeoDataFrame({"grid_id": [AWKWARD, "G2", "G3"], "village_id": ["V,1", "V,1", "V2"]},
                             geometry=[b(0, 0, 600, 1000), b(500, 0, 1000, 1000), b(1000, 0, 2000, 1000)], crs=CRS)
    staff = pd.DataFrame([("P1", "张三", "grid_chief", AWKWARD), ("P2", "李四", "grid_chief", "G2"),
                          ("P3", "王五", "grid_chief", "G3")], columns=["person_id", "name", "role", "grid_id"])
    town = gisgrid.Town.from_frames(villages=villages, grids=grids, grid_staff=staff, crs=CRS, name="测试镇")
    return gisgrid.analyze(town, tolerance_m=0)  # exact borders drawn in code


def overlap(a, rule="grid_overlap"):
    rows = a.findings[a.findings["rule"] == rule]
    assert len(rows) == 1
    return rows.iloc[0]


def test_a_village_overlap_belongs_to_both_villages(assessment):
    row = overlap(assessment, "village_overlap")
    assert row["village_id"] == ("V,1", "V2")
    card = gisgrid.policy.scorecard(assessment).set_index("village_id")
    assert card.loc["V,1", "open"] >= 1
    assert card.loc["V2", "open"] >= 1  # 谁丢分、谁担责: both lose the points
    assert assessment.summary.loc["V2", "findings"] >= 1


def test_cells_helpers():
    assert id_list(("A,1", "B")) == ["A,1", "B"]
    assert id_list("A,1") == ["A,1"]
    assert id_list(None) == []
    assert ids_cell(["A,1"]) == "A,1"
    assert ids_cell(["A", "B", "A"]) == ("A", "B")
    assert ids_cell([]) is None
    assert ids_cell("A,1") == "A,1"
    assert show_ids(("A,1", "B")) == "A,1, B"
    frame = pd.DataFrame({"village_id": [("V1", "V2"), "V3", None], "n": [1, 2, 3]})
    assert explode_ids(frame, "village_id")["village_id"].tolist() == ["V1", "V2", "V3", None]


def test_an_overlap_names_both_grids_and_both_chiefs(assessment):
    row = overlap(assessment)
    assert row["grid_id"] == (AWKWARD, "G2")
    assert set(row["owner"].split(" / ")) == {"张三", "李四"}
    assert row["village_id"] == "V,1"


def test_both_chiefs_get_it_on_their_task_list(assessment):
    lists = assessment.owners()
    fid = overlap(assessment)["finding_id"]
    assert fid in set(lists["张三"]["finding_id"])
    assert fid in set(lists["李四"]["finding_id"])


def test_history_keeps_the_list(assessment, tmp_path):
    hist = History(tmp_path / "h.sqlite")
    day = dt.date(2026, 12, 1)
    hist.record(assessment, as_of=day)
    snap = hist.snapshot(day).set_index("finding_id")
    assert snap.loc[overlap(assessment)["finding_id"], "grid_id"] == (AWKWARD, "G2")
    # and a resolved finding comes back from storage as a list too
    fixed = assessment.findings[assessment.findings["kind"] != "area_overlap"]
    life = hist.record(fixed, as_of=day + dt.timedelta(days=1)).set_index("finding_id")
    gone = life.loc[overlap(assessment)["finding_id"]]
    assert gone["status"] == "resolved"
    assert gone["grid_id"] == (AWKWARD, "G2")


def test_files_join_for_display_and_geojson_keeps_arrays(assessment, tmp_path):
    written = write_report(assessment, tmp_path / "r")
    csv = pd.read_csv(tmp_path / "r" / "findings.csv", dtype=str, encoding="utf-8-sig").set_index("finding_id")
    fid = overlap(assessment)["finding_id"]
    assert csv.loc[fid, "grid_id"] == f"{AWKWARD}, G2"
    xlsx = pd.read_excel(tmp_path / "r" / "findings.xlsx", sheet_name="findings", dtype=str).set_index("finding_id")
    assert xlsx.loc[fid, "grid_id"] == f"{AWKWARD}, G2"
    geo = json.loads((tmp_path / "r" / "findings.geojson").read_text(encoding="utf-8"))
    props = next(f["properties"] for f in geo["features"] if f["properties"]["finding_id"] == fid)
    assert props["grid_id"] == [AWKWARD, "G2"]
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert f"{AWKWARD}, G2" in html
    assert "&#39;G2&#39;" not in html  # never a Python tuple's repr, escaped or not
    assert "'G2'" not in html
    assert tmp_path / "r" / "report.html" in written


def test_maps_show_the_list_and_both_villages_see_a_shared_finding(assessment, tmp_path):
    written = write_maps(assessment, tmp_path)
    page = (tmp_path / "maps" / "command_center.html").read_text(encoding="utf-8")
    assert "G1,东, G2" in page
    assert "&#39;G2&#39;" not in page  # never a Python tuple's repr, escaped or not
    assert "'G2'" not in page
    shared = overlap(assessment, "village_overlap")["finding_id"]
    villages = [p for p in written if p.name.startswith("village_")]
    assert len(villages) == 2
    for p in villages:  # each village's own map lists the finding about both
        assert shared in p.read_text(encoding="utf-8"), p.name
