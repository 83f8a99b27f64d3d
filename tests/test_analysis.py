"""analyze() on a hand-computable town: two villages, four grids, one gap, one overlap."""

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from shapely.affinity import translate

import gisgrid
from gisgrid.analysis import analyze
from gisgrid.model import Town

X0, Y0 = 500000.0, 3550000.0


def box(a, b, c, d):
    return shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d)


def line(*pts):
    return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])


def small_town(*, staffed=("G1", "G2", "G3", "G4"), gap=True):
    villages = gpd.GeoDataFrame({"village_id": ["V1", "V2"], "name": ["东社村", "西亭村"]},
                                geometry=[box(0, 0, 150, 100), box(150, 0, 300, 100)], crs=4549)
    g2 = box(100, 0, 150, 50) if gap else box(100, 0, 150, 100)
    grids = gpd.GeoDataFrame({"grid_id": ["G1", "G2", "G3", "G4"], "village_id": ["V1", "V1", "V2", "V2"]},
                             geometry=[box(0, 0, 100, 100), g2, box(150, 0, 300, 100), box(250, 0, 300, 100)],
                             crs=4549)
    roads = gpd.GeoDataFrame(
        {"road_id": ["R1", "R2"], "road_class": ["lane", "main"], "name": ["东社巷", "通港路"]},
        geometry=[line((50, 75), (200, 75)), line((100, 0), (100, 50))], crs=4549)
    pois = gpd.GeoDataFrame({"poi_id": ["P1", "P2"], "kind": ["school", "market"], "name": ["东社小学", "东社市场"]},
                            geometry=[shapely.Point(X0 + 125, Y0 + 75), shapely.Point(X0 + 50, Y0 + 50)], crs=4549)
    staff = pd.DataFrame({"person_id": [f"S{i}" for i in range(len(staffed))],
                          "name": [f"网格长{g}" for g in staffed], "phone": ["13800000000"] * len(staffed),
                          "role": "grid_chief", "grid_id": list(staffed)})
    return Town.from_frames(villages=villages, grids=grids, roads=roads, pois=pois, grid_staff=staff,
                            name="测试镇")


@pytest.fixture(scope="module")
def assessment():
    return analyze(small_town())


def _one(findings, kind):
    rows = findings[findings["kind"] == kind]
    assert len(rows) == 1, rows[["kind", "message"]]
    return rows.iloc[0]


def test_gap_overlap_road_and_point_found_exactly(assessment):
    f = assessment.findings
    gap = _one(f, "area_gap")
    assert gap["measure"] == pytest.approx(2500.0)
    assert gap["village_id"] == "V1"
    assert gap.geometry.equals_exact(box(100, 50, 150, 100).normalize(), 1e-6) or gap.geometry.symmetric_difference(
        box(100, 50, 150, 100)).area < 1e-6
    ov = _one(f, "area_overlap")
    assert ov["measure"] == pytest.approx(5000.0)
    assert ov["grid_id"] == ("G3", "G4")
    road = _one(f, "road_uncovered")
    assert road["measure"] == pytest.approx(50.0)
    assert road["unit"] == "m"
    assert road.geometry.length == pytest.approx(50.0)
    assert "212" not in road["message"]
    assert "50 m" in road["message"]
    poi = _one(f, "poi_uncovered")
    assert poi["poi_id"] == "P1"


def test_road_on_shared_grid_edge_is_covered(assessment):
    f = assessment.findings
    assert not ((f["kind"] == "road_uncovered") & (f["road_id"] == "R2")).any()


def test_school_in_a_gap_is_a_veto(assessment):
    poi = _one(assessment.findings, "poi_uncovered")
    assert poi["severity"] == "veto"
    assert assessment.totals["veto"] >= 1


def test_owners_filled(assessment):
    f = assessment.findings
    assert f["owner"].notna().all()
    gap = _one(f, "area_gap")
    assert "V1" in gap["owner"] or "东社村" in gap["owner"]
    ov = _one(f, "area_overlap")
    assert "网格长G3" in ov["owner"]
    assert "网格长G4" in ov["owner"]


def test_summary_numbers(assessment):
    s = assessment.summary
    assert s.loc["V1", "area_m2"] == pytest.approx(15000.0)
    assert s.loc["V1", "grid_area_m2"] == pytest.approx(12500.0)
    assert s.loc["V1", "area_coverage"] == pytest.approx(12500 / 15000)
    assert s.loc["V2", "area_coverage"] == pytest.approx(1.0)
    assert s.loc["V1", "uncovered_m_lane"] == pytest.approx(50.0)
    assert s.loc["V1", "road_m_lane"] == pytest.approx(100.0)
    assert s.loc["V2", "road_m_lane"] == pytest.approx(50.0)
    assert assessment.totals["area_coverage"] == pytest.approx(27500 / 30000)
    assert assessment.totals["uncovered_lane_m"] == pytest.approx(50.0)


def test_unstaffed_grid_lowers_effective_coverage_only():
    a = analyze(small_town(staffed=("G1", "G3", "G4")))
    s = a.summary
    assert s.loc["V1", "area_coverage"] == pytest.approx(12500 / 15000)
    assert s.loc["V1", "effective_coverage"] == pytest.approx(10000 / 15000)
    assert ((a.findings["kind"] == "grid_unstaffed") & (a.findings["grid_id"] == "G2")).sum() == 1


def test_fixing_the_gap_keeps_other_ids_and_resolves_it(assessment):
    fixed = analyze(small_town(gap=False))
    before, after = set(assessment.findings["finding_id"]), set(fixed.findings["finding_id"])
    gap_id = _one(assessment.findings, "area_gap")["finding_id"]
    ov_id = _one(assessment.findings, "area_overlap")["finding_id"]
    assert gap_id in before
    assert gap_id not in after
    assert ov_id in after


def test_ids_stable_under_centimetre_noise(assessment):
    t = small_town()
    shifted = t.replace(grids=t.grids.set_geometry(t.grids.geometry.translate(0.02, -0.01)),
                        villages=t.villages.set_geometry(t.villages.geometry.translate(0.02, -0.01)))
    again = analyze(shifted)
    kinds = ["area_gap", "area_overlap", "road_uncovered", "poi_uncovered"]
    for kind in kinds:
        assert _one(again.findings, kind)["finding_id"] == _one(assessment.findings, kind)["finding_id"]


def test_input_does_not_change(assessment):
    t = small_town()
    grids_before = t.grids.copy()
    analyze(t)
    pd.testing.assert_frame_equal(pd.DataFrame(t.grids.drop(columns="geometry")),
                                  pd.DataFrame(grids_before.drop(columns="geometry")))
    assert t.grids.geometry.equals(grids_before.geometry)


def test_repaired_grid_becomes_a_finding():
    t = small_town()
    bow = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100)])
    grids = t.grids.copy()
    grids.loc[grids["grid_id"] == "G1", "geometry"] = bow
    a = analyze(t.replace(grids=grids))
    rep = _one(a.findings, "input_repaired")
    assert rep["grid_id"] == "G1"
    assert rep["rule"] == "make_valid"


def test_repr_html_escapes_names():
    t = small_town()
    villages = t.villages.copy()
    villages["name"] = ["<script>alert(1)</script>", "西亭村"]
    a = analyze(t.replace(villages=villages))
    out = a._repr_html_()
    assert "<script>alert(1)</script>" not in out
    assert "<h4>" in out
    assert "&lt;script&gt;" in out or "script" not in out.lower().replace("<h4>", "")


def test_public_api():
    assert gisgrid.analyze is analyze
    assert gisgrid.Town is Town
    assert callable(gisgrid.load_town)
    _ = translate
