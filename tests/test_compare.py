"""gisgrid.compare (gisgrid.comparison): before and after a what-if edit, matched by finding_id."""

import importlib

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from conftest import box

import gisgrid
from gisgrid.analysis import analyze
from gisgrid.comparison import Comparison, compare
from gisgrid.model import Town


@pytest.fixture
def town(town_frames):
    return Town.from_frames(**town_frames, name="测试镇")


@pytest.fixture
def before(town):
    return analyze(town)


def _with_gap(town):
    """G2 (top of village V1) loses a 50 m x 50 m corner: a gap in V1, and lane R2 runs through it."""
    grids = town.grids.copy()
    i = grids.index[grids["grid_id"] == "G2"][0]
    grids.loc[i, "geometry"] = shapely.difference(grids.loc[i, "geometry"], box(75, 100, 125, 150))
    return town.replace(grids=grids)


def _without_chief(town, grid_id="G4"):
    staff = town.grid_staff.copy()
    staff.loc[staff["grid_id"] == grid_id, "role"] = "grid_member"
    return town.replace(grid_staff=staff)


def test_same_town_changes_nothing(town, before):
    diff = compare(before, analyze(town))
    assert isinstance(diff, Comparison)
    assert diff.counts == {"fixed": 0, "created": 0, "persisting": len(before.findings), "changed_severity": 0}
    assert (diff.totals["delta"].fillna(0) == 0).all()
    assert set(diff.totals["trend"]) <= {"same"}
    assert diff.before_name == diff.after_name == "测试镇"


def test_gap_and_unstaffed_grid_are_created_then_fixed(town, before):
    broken = analyze(_without_chief(_with_gap(town)))
    diff = compare(before, broken)
    kinds = sorted(diff.created["kind"])
    assert "area_gap" in kinds
    assert "road_uncovered" in kinds
    assert "grid_unstaffed" in kinds
    assert set(diff.created["finding_id"]) == set(broken.findings["finding_id"]) - set(before.findings["finding_id"])
    assert diff.fixed.empty
    gap = diff.created[diff.created["kind"] == "area_gap"].iloc[0]
    assert gap["measure"] == pytest.approx(2500.0, rel=1e-6)
    totals = diff.totals
    assert totals.loc["area_coverage", "delta"] < 0
    assert totals.loc["area_coverage", "trend"] == "worse"
    assert totals.loc["grids_unstaffed", "before"] == 0
    assert totals.loc["grids_unstaffed", "after"] == 1
    assert totals.loc["uncovered_lane_m", "after"] == pytest.approx(50.0, abs=0.01)
    assert totals.loc["findings", "delta"] == len(broken.findings) - len(before.findings)
    assert totals.loc["by_kind.area_gap", "before"] == 0
    assert totals.loc["by_kind.area_gap", "trend"] == "worse"

    back = compare(broken, before)  # and the repair, read the other way round
    assert set(back.fixed["finding_id"]) == set(diff.created["finding_id"])
    assert back.created.empty
    assert back.totals.loc["area_coverage", "trend"] == "better"
    assert back.fixed.crs == broken.findings.crs


def test_partial_fix_keeps_what_persists(town):
    broken = _without_chief(_with_gap(town))
    a = analyze(broken)
    staffed = analyze(broken.replace(grid_staff=town.grid_staff))  # the chief is back, the gap is not
    diff = compare(a, staffed)
    assert list(diff.fixed["kind"]) == ["grid_unstaffed"]
    assert diff.created.empty
    assert {"area_gap", "road_uncovered"} <= set(diff.persisting["kind"])
    assert {"severity_before", "owner_before", "measure_before"} <= set(diff.persisting.columns)
    assert (diff.persisting["measure"] == diff.persisting["measure_before"]).all()
    assert diff.changed_severity.empty
    assert diff.totals.loc["grids_unstaffed", "delta"] == -1
    assert diff.totals.loc["grids", "trend"] == "same"
    v = diff.villages
    assert v.loc["V2", "findings_delta"] < 0
    assert v.loc["V1", "findings_delta"] == 0
    assert v.loc["V1", "name"] == "东社村"
    assert "changed severity" not in diff.headline()


def test_changed_severity_on_bare_findings_frames(before):
    f = gpd.GeoDataFrame({"finding_id": ["area_gap-1"], "kind": ["area_gap"], "severity": ["high"],
                          "village_id": ["V1"], "grid_id": [None], "owner": ["张三"], "measure": [10.0],
                          "unit": ["m2"], "rule": ["no_grid"], "message": ["gap"]},
                         geometry=[box(0, 0, 1, 1)], crs=before.findings.crs)
    later = f.copy()
    later["severity"] = "veto"
    later["owner"] = "李四"
    diff = compare(f, later)
    assert len(diff.changed_severity) == len(f)
    row = diff.changed_severity.iloc[0]
    assert (row["severity_before"], row["severity"]) == ("high", "veto")
    assert row["owner_before"] == "张三"
    assert diff.totals.loc["veto", "trend"] == "worse"
    assert "area_coverage" not in diff.totals.index  # bare frames: only counts are compared
    assert diff.villages.empty
    assert "changed severity" in diff.headline()


def test_changes_frame_for_explore(town, before):
    diff = compare(analyze(_with_gap(town)), before)
    ch = diff.changes
    assert isinstance(ch, gpd.GeoDataFrame)
    assert list(ch.columns[:2]) == ["change", "finding_id"]
    assert set(ch.loc[ch["change"] == "fixed", "kind"]) >= {"area_gap", "road_uncovered"}
    assert set(ch["change"]) == {"fixed"} | ({"persisting"} if len(before.findings) else set())
    assert ch.crs == before.findings.crs
    assert len(ch) == len(diff.fixed) + len(diff.created) + len(diff.persisting)
    empty = compare(before, before).changes
    assert "change" in empty.columns


def test_repr_and_html_escape_data(town, before):
    staff = town.grid_staff.copy()
    staff.loc[staff["grid_id"] == "G4", "role"] = "grid_member"
    villages = town.villages.copy()
    villages["name"] = ["<script>alert(1)</script>", "西亭村"]
    after = analyze(town.replace(grid_staff=staff, villages=villages, name="<b>镇</b>"))
    diff = compare(before, after)
    html = diff._repr_html_()
    assert "<script>" not in html
    assert "<b>镇</b>" not in html
    assert "&lt;b&gt;镇&lt;/b&gt;" in html
    assert "created" in html
    assert "grid_unstaffed" in html
    text = repr(diff)
    assert text.startswith("<Comparison")
    assert "1 created" in text
    assert "grids_unstaffed 0 → 1" in text


def test_public_name_is_the_function_even_after_importing_the_module(town, before):
    importlib.import_module("gisgrid.comparison")
    assert gisgrid.compare is compare
    assert isinstance(gisgrid.compare(before, before), Comparison)
    assert gisgrid.Comparison is Comparison
    assert "compare" in gisgrid.__all__


def test_bad_arguments(before):
    with pytest.raises(TypeError, match="Assessments"):
        compare(before, 42)
    with pytest.raises(ValueError, match="finding_id"):
        compare(pd.DataFrame({"kind": ["area_gap"], "severity": ["high"]}), before)


def test_town_and_assessment_show_themselves_escaped(town):
    villages = town.villages.copy()
    villages["name"] = ["<img src=x onerror=alert(1)>", "西亭村"]
    evil = town.replace(villages=villages, name="<i>镇</i>")
    t_html = evil._repr_html_()
    assert "<i>镇</i>" not in t_html
    assert "&lt;i&gt;镇&lt;/i&gt;" in t_html
    assert "villages" in t_html
    assert "households" in t_html
    gaps = analyze(_without_chief(_with_gap(evil)))
    a_html = gaps._repr_html_()
    assert "<img" not in a_html
    assert "<i>镇</i>" not in a_html
    assert "area_gap" in a_html
    assert ">None<" not in a_html
    assert "without a chief" in repr(gaps)
