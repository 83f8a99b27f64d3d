"""Tests for gisgrid.checks.responsibility and gisgrid.owners: grid chiefs, river chiefs, border roads, owners.

The fixture town (EPSG:4549, offset x=500000, y=3550000; coordinates below are
relative to that offset) is worked out by hand:

- villages V1 东村 [0,1000]x[0,1000], V2 中村 [1000,2000], V3 西湖社区 [2000,3000];
  the town boundary is [0,3000]x[0,1000];
- each village has two 500 m wide grids: G11 G12 | G21 G22 | G31 G32;
- river R1 (level town, no width) runs west to east along y=500 from x=-500
  (outside the town) to x=2500, so chainage = x + 500: it enters V1 at 500,
  crosses into V2 at 1500 and into V3 at 2500, and ends at 3000;
- river R2 (level village, width_m 20) runs north along x=2250 from y=100 to
  y=900 inside G31 (chainage = y - 100);
- road RD1 (lane) lies exactly on the G11|G12 edge x=500, digitised north;
  road RD2 (village) runs south on the G21|G22 edge x=1500 from y=1000 to
  y=600 (400 m), then west to x=1200 (300 m inside G21); road RD3 (main)
  crosses G11 and G12 along y=200 from x=100 to x=900.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely import LineString, Point, box

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.checks.responsibility import Responsibility, analyze_responsibility, resolve_options
from gisgrid.findings import make_findings
from gisgrid.model import Town
from gisgrid.owners import assign_owners, task_lists, village_owner

X0, Y0 = 500000.0, 3550000.0
CRS = "EPSG:4549"
DEFAULT = settings.default_owner

@pytest.fixture(autouse=True)
def _exact_mode(monkeypatch):
    """Hand-built towns with exact borders: the exact engine (tolerance 0); the demo test sets its own."""
    monkeypatch.setattr(settings, "tolerance_m", 0.0)



def b(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def line(*pts: tuple[float, float]) -> LineString:
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def pt(x: float, y: float) -> Point:
    return Point(X0 + x, Y0 + y)


def xy(geom: shapely.Geometry) -> list[tuple[float, float]]:
    return [(round(x - X0, 3), round(y - Y0, 3)) for x, y in shapely.get_coordinates(geom)]


STAFF = [
    ("P1", "张三", "13800000001", "grid_chief", "G11"),
    ("P2", "李四", "13800000002", "grid_chief", "G12"),
    ("P3", "王五", "13800000003", "grid_chief", "G21"),
    ("P4", "赵六", "13800000004", "grid_member", "G22"),
    ("P1", "张三", "13800000001", "grid_chief", "G31"),
    ("P3", "王五", "13800000003", "grid_chief", "G32"),
    ("P5", "刘一", "13800000005", "grid_member", "G11"),
    ("P9", "孙七", "13800000009", "grid_chief", "G99"),
]
CHIEFS = [
    ("C1", "钱八", "13900000001", "town", "R1", None),
    ("C2", "周九", "13900000002", "village", "R1", "V1"),
    ("C3", "吴十", "13900000003", "village", "R1", "V3"),
    ("C4", "郑一", "13900000004", "village", "R2", "V3"),
    ("C5", "冯二", "13900000005", "town", "R9", None),
    ("C6", "陈三", "13900000006", "county", "R1", None),
]


def frames() -> dict:
    villages = gpd.GeoDataFrame(
        {"village_id": ["V1", "V2", "V3"], "name": ["东村", "中村", "西湖社区"]},
        geometry=[b(0, 0, 1000, 1000), b(1000, 0, 2000, 1000), b(2000, 0, 3000, 1000)], crs=CRS)
    grids = gpd.GeoDataFrame(
        {"grid_id": ["G11", "G12", "G21", "G22", "G31", "G32"], "village_id": ["V1", "V1", "V2", "V2", "V3", "V3"],
         "households": [100, 50, 80, None, 20, 30]},
        geometry=[b(0, 0, 500, 1000), b(500, 0, 1000, 1000), b(1000, 0, 1500, 1000), b(1500, 0, 2000, 1000),
                  b(2000, 0, 2500, 1000), b(2500, 0, 3000, 1000)], crs=CRS)
    boundary = gpd.GeoDataFrame({"name": ["测试镇"]}, geometry=[b(0, 0, 3000, 1000)], crs=CRS)
    roads = gpd.GeoDataFrame(
        {"road_id": ["RD1", "RD2", "RD3"], "road_class": ["lane", "village", "main"]},
        geometry=[line((500, 0), (500, 1000)), line((1500, 1000), (1500, 600), (1200, 600)),
                  line((100, 200), (900, 200))], crs=CRS)
    rivers = gpd.GeoDataFrame(
        {"river_id": ["R1", "R2"], "name": ["清水河", "小溪"], "level": ["town", "village"], "width_m": [None, 20.0]},
        geometry=[line((-500, 500), (2500, 500)), line((2250, 100), (2250, 900))], crs=CRS)
    pois = gpd.GeoDataFrame(
        {"poi_id": ["S1", "M1", "T1"], "kind": ["school", "market", "toilet"]},
        geometry=[pt(250, 800), pt(2600, 300), pt(300, 300)], crs=CRS)
    staff = pd.DataFrame(STAFF, columns=["person_id", "name", "phone", "role", "grid_id"])
    chiefs = pd.DataFrame(CHIEFS, columns=["person_id", "name", "phone", "level", "river_id", "village_id"])
    return {"boundary": boundary, "villages": villages, "grids": grids, "roads": roads, "rivers": rivers,
            "pois": pois, "grid_staff": staff, "river_chiefs": chiefs}


def make_town(**changes: object) -> Town:
    kw = frames()
    kw.update(changes)
    return Town.from_frames(**kw, crs=CRS)


@pytest.fixture(scope="module")
def town() -> Town:
    return make_town()


@pytest.fixture(scope="module")
def resp(town: Town) -> Responsibility:
    return analyze_responsibility(town, tolerance_m=0)


def owned(resp: Responsibility, town: Town) -> pd.DataFrame:
    """The responsibility findings with their owners (decided once, by gisgrid.owners, after every check)."""
    return assign_owners(resp.findings, town, resp)


def by(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    return frame.set_index(col, drop=False)


# --------------------------------------------------------------------------- options
def test_options_defaults_and_merge() -> None:
    opts = resolve_options(None)
    assert opts["border_rule"] == "left"
    assert opts["section_m"] == 100.0
    assert opts["corridor_m"] == 30.0
    assert opts["bank_m"] is None
    assert opts["limits"] == {"max_grids": 3.0}
    merged = resolve_options({"limits": {"max_households": 500}})
    assert merged["limits"] == {"max_grids": 3.0, "max_households": 500.0}
    assert resolve_options({"limits": {"max_grids": False}})["limits"] == {}
    by_level = resolve_options({"corridor_m": {"town": 50, "default": 20}, "bank_m": 0})
    assert by_level["corridor_m"] == {"town": 50.0, "default": 20.0}
    assert by_level["bank_m"] == 0.0


@pytest.mark.parametrize("bad", [
    {"border_rule": "right"},
    {"section_m": 0},
    {"section_m": "100"},
    {"corridor_m": {"town": -5}},
    {"limits": {"max_roads": 3}},
    {"limits": 3},
    {"colour": "red"},
    {"default_owner": ""},
])
def test_options_refused(bad: dict) -> None:
    with pytest.raises(ConfigError, match=r"\[assign"):
        resolve_options(bad)


def test_bad_options_refused_by_analysis(town: Town) -> None:
    with pytest.raises(ValueError, match="border_rule"):
        analyze_responsibility(town, options={"border_rule": "middle"})


def test_village_owner_strings() -> None:
    assert village_owner("V1", "东村") == "东村村委会 (V1)"
    assert village_owner("V3", "西湖社区") == "西湖社区居委会 (V3)"
    assert village_owner("V4", "北村村委会") == "北村村委会 (V4)"
    assert village_owner("V5") == "村委会 (V5)"
    assert village_owner(None) is None


# --------------------------------------------------------------------------- staffing
def test_staffing_one_row_per_grid(resp: Responsibility) -> None:
    st = by(resp.staffing, "grid_id")
    assert list(st["grid_id"]) == ["G11", "G12", "G21", "G22", "G31", "G32"]
    assert st.at["G11", "chief_name"] == "张三"
    assert st.at["G11", "chief_phone"] == "13800000001"
    assert st.at["G11", "members"] == "刘一"
    assert st.at["G11", "member_count"] == 1
    assert st.at["G22", "chief_id"] is None
    assert st.at["G22", "members"] == "赵六"
    assert list(st["staffed"]) == [True, True, True, False, True, True]
    assert st.at["G22", "owner"] == "中村村委会 (V2)"


def test_grid_unstaffed_finding(resp: Responsibility, town: Town) -> None:
    f = owned(resp, town)[owned(resp, town)["kind"] == "grid_unstaffed"]
    assert len(f) == 1
    row = f.iloc[0]
    assert (row["grid_id"], row["village_id"], row["severity"]) == ("G22", "V2", "high")
    assert row["owner"] == "中村村委会 (V2)"
    assert row["geometry"].equals(town.grids.geometry.iloc[3])
    assert row["measure"] == pytest.approx(500_000.0)
    assert "赵六" in row["message"]


def test_unplaced_people(resp: Responsibility, town: Town) -> None:
    f = owned(resp, town)
    staff = f[f["kind"] == "staff_unplaced"]
    assert list(staff["person_id"]) == ["P9"]
    assert staff.iloc[0]["severity"] == "medium"
    assert staff.iloc[0]["geometry"].is_empty
    assert "G99" in staff.iloc[0]["message"]
    assert staff.iloc[0]["owner"] == DEFAULT
    chief = f[f["kind"] == "chief_unplaced"]
    assert list(chief["person_id"]) == ["C5"]
    assert "R9" in chief.iloc[0]["message"]
    assert chief.iloc[0]["owner"] == DEFAULT


# --------------------------------------------------------------------------- rivers
def test_reaches_split_at_village_borders(resp: Responsibility) -> None:
    r = by(resp.reaches, "reach_id")
    assert list(r["reach_id"]) == ["R1-V1-1", "R1-V2-1", "R1-V3-1", "R2-V3-1"]
    assert r.loc["R1-V1-1", ["start_m", "end_m", "length_m"]].tolist() == pytest.approx([500, 1500, 1000])
    assert r.loc["R1-V2-1", ["start_m", "end_m", "length_m"]].tolist() == pytest.approx([1500, 2500, 1000])
    assert r.loc["R1-V3-1", ["start_m", "end_m", "length_m"]].tolist() == pytest.approx([2500, 3000, 500])
    assert r.loc["R2-V3-1", ["start_m", "end_m", "length_m"]].tolist() == pytest.approx([0, 800, 800])
    assert xy(r.at["R1-V2-1", "geometry"]) == [(1000, 500), (2000, 500)]  # runs downstream
    assert r.at["R1-V1-1", "river_name"] == "清水河"
    assert r.at["R1-V1-1", "town_chief"] == "钱八"
    assert r.at["R1-V1-1", "village_chief"] == "周九"
    assert r.at["R1-V2-1", "village_chief"] is None
    assert r.at["R2-V3-1", "town_chief"] is None
    assert r.at["R2-V3-1", "village_chief"] == "郑一"


def test_reach_chainage_follows_digitised_direction() -> None:
    rivers = frames()["rivers"]
    rivers.loc[0, "geometry"] = line((2500, 500), (-500, 500))  # now flows west
    resp = analyze_responsibility(make_town(rivers=rivers))
    r = by(resp.reaches[resp.reaches["river_id"] == "R1"], "reach_id")
    assert r.loc["R1-V3-1", ["start_m", "end_m"]].tolist() == pytest.approx([0, 500])
    assert r.loc["R1-V2-1", ["start_m", "end_m"]].tolist() == pytest.approx([500, 1500])
    assert r.loc["R1-V1-1", ["start_m", "end_m"]].tolist() == pytest.approx([1500, 2500])
    assert xy(r.at["R1-V2-1", "geometry"]) == [(2000, 500), (1000, 500)]
    sec = resp.cross_sections
    assert list(sec["village_a"]) == ["V3", "V2", "V1"]
    assert list(sec["border"]) == ["village", "village", "town"]


def test_river_meandering_through_a_village_twice() -> None:
    rivers = frames()["rivers"].iloc[[1]].copy()
    rivers["geometry"] = [line((2250, 100), (2250, 300), (1750, 300), (1750, 700), (2250, 700), (2250, 900))]
    resp = analyze_responsibility(make_town(rivers=rivers, river_chiefs=None))
    r = by(resp.reaches, "reach_id")
    assert list(r["reach_id"]) == ["R2-V3-1", "R2-V2-1", "R2-V3-2"]
    assert r.loc["R2-V3-1", ["start_m", "end_m"]].tolist() == pytest.approx([0, 450])
    assert r.loc["R2-V2-1", ["start_m", "end_m"]].tolist() == pytest.approx([450, 1350])
    assert r.loc["R2-V3-2", ["start_m", "end_m"]].tolist() == pytest.approx([1350, 1800])
    assert list(resp.cross_sections["chainage_m"]) == pytest.approx([450, 1350])


def test_river_unassigned(resp: Responsibility, town: Town) -> None:
    f = owned(resp, town)[owned(resp, town)["kind"] == "river_unassigned"]
    reach = f[f["rule"] == "village_chief"]
    assert list(reach["reach_id"]) == ["R1-V2-1"]
    row = reach.iloc[0]
    assert (row["village_id"], row["severity"], row["unit"]) == ("V2", "high", "m")
    assert row["measure"] == pytest.approx(1000)
    assert row["owner"] == "钱八"  # the river's town chief sees that the reach gets a chief
    assert "村级" in row["message"]
    whole = f[f["rule"] == "town_chief"]
    assert list(whole["river_id"]) == ["R2"]
    row = whole.iloc[0]
    assert row["grid_id"] is None
    assert row["owner"] == DEFAULT
    assert row["village_id"] == "V3"
    assert row["measure"] == pytest.approx(800)
    assert "镇级" in row["message"]


def test_cross_sections(resp: Responsibility) -> None:
    s = by(resp.cross_sections, "section_id")
    assert list(s["section_id"]) == ["R1-X1", "R1-X2", "R1-X3"]
    assert list(s["chainage_m"]) == pytest.approx([500, 1500, 2500])
    assert list(s["border"]) == ["town", "village", "village"]
    assert list(s["village_a"]) == [None, "V1", "V2"]
    assert list(s["village_b"]) == ["V1", "V2", "V3"]
    assert list(s["chiefs_a"]) == [None, "周九", None]
    assert list(s["chiefs_b"]) == ["周九", None, "吴十"]
    assert list(s["length_m"]) == pytest.approx([200, 200, 200])
    assert xy(s.at["R1-X2", "geometry"]) == [(900, 500), (1100, 500)]
    assert xy(s.at["R1-X1", "geometry"]) == [(-100, 500), (100, 500)]


def test_cross_section_clipped_at_river_ends(town: Town) -> None:
    resp = analyze_responsibility(town, options={"section_m": 600})
    s = by(resp.cross_sections, "section_id")
    assert s.loc["R1-X1", ["start_m", "end_m"]].tolist() == pytest.approx([0, 1100])
    assert s.loc["R1-X3", ["start_m", "end_m", "length_m"]].tolist() == pytest.approx([1900, 3000, 1100])


def test_corridors_flat_caps(resp: Responsibility) -> None:
    # flat caps: a straight centreline of length L buffered by w gives exactly 2 * w * L
    c = resp.corridors.set_index("person_id", drop=False)
    assert c.at["C1", "area_m2"] == pytest.approx(2 * 30 * 2500)  # R1 inside the town: x 0..2500
    assert c.at["C6", "area_m2"] == pytest.approx(2 * 30 * 2500)  # county chief: clipped to the town too
    assert c.at["C2", "area_m2"] == pytest.approx(2 * 30 * 1000)  # clipped to V1
    assert c.at["C3", "area_m2"] == pytest.approx(2 * 30 * 500)  # V3: x 2000..2500, ends with the river
    assert c.at["C4", "area_m2"] == pytest.approx(2 * (20 / 2 + 30) * 800)  # width_m 20: 10 + bank 30
    assert c.at["C4", "half_width_m"] == pytest.approx(40)
    assert c.at["C4", "geometry"].bounds == pytest.approx((X0 + 2210, Y0 + 100, X0 + 2290, Y0 + 900))
    assert c.at["C2", "village_id"] == "V1"
    assert c.at["C1", "village_id"] is None
    assert "C5" not in c.index  # chief of a river that does not exist


def test_corridor_widths_by_level(town: Town) -> None:
    resp = analyze_responsibility(town, options={"corridor_m": {"town": 50, "default": 20}, "bank_m": 5})
    c = resp.corridors.set_index("person_id")
    assert c.at["C1", "area_m2"] == pytest.approx(2 * 50 * 2500)
    assert c.at["C4", "area_m2"] == pytest.approx(2 * (10 + 5) * 800)  # level village -> default; width + bank


def test_responsibility_layer(resp: Responsibility) -> None:
    layer = resp.responsibility
    grids = layer[layer["layer"] == "grid"].set_index("zone_id")
    assert grids.at["G11", "owner"] == "张三"
    assert grids.at["G11", "phone"] == "13800000001"
    assert grids.at["G22", "owner"] == "中村村委会 (V2)"
    rivers = layer[layer["layer"] == "river"]
    assert set(rivers["zone_id"]) == {"R1", "R1@V1", "R1@V3", "R2@V3"}
    assert set(rivers["owner"]) == {"钱八", "周九", "吴十", "郑一", "陈三"}
    assert layer.crs == resp.reaches.crs
    # "who is responsible here": a point on R1 in V1
    here = layer[layer.intersects(pt(700, 510))]
    assert set(here["owner"]) == {"李四", "钱八", "陈三", "周九"}


# --------------------------------------------------------------------------- border roads and workload
def test_border_rule_left(resp: Responsibility) -> None:
    br = by(resp.border_roads, "road_id")
    assert list(br["road_id"]) == ["RD1", "RD2"]  # RD3 only crosses a border
    assert br.at["RD1", "grids"] == ("G11", "G12")
    assert br.at["RD1", "owner_grid"] == "G11"  # going north, west is on the left
    assert br.at["RD2", "owner_grid"] == "G22"  # going south, east is on the left
    assert br.at["RD1", "length_m"] == pytest.approx(1000)
    assert br.at["RD2", "length_m"] == pytest.approx(400, abs=2 * settings.border_tolerance_m)
    assert not (resp.findings["kind"] == "road_ambiguous").any()


def test_border_rule_longer(town: Town) -> None:
    br = by(analyze_responsibility(town, options={"border_rule": "longer"}).border_roads, "road_id")
    assert br.at["RD2", "owner_grid"] == "G21"  # 400 + 300 m in G21 against 400 m in G22
    assert br.at["RD2", "decided_by"] == "longer"
    assert br.at["RD1", "owner_grid"] == "G11"  # equal shares: falls back to the left rule
    assert br.at["RD1", "decided_by"] == "longer (tie: left)"


def test_border_rule_flag(town: Town) -> None:
    resp = analyze_responsibility(town, options={"border_rule": "flag"})
    assert resp.border_roads["owner_grid"].isna().all()
    f = by(owned(resp, town)[owned(resp, town)["kind"] == "road_ambiguous"], "road_id")
    assert list(f.sort_index()["grid_id"]) == [("G11", "G12"), ("G21", "G22")]
    assert f.at["RD1", "severity"] == "medium"
    assert f.at["RD1", "owner"] == "张三 / 李四"
    assert f.at["RD2", "owner"] == "王五 / 中村村委会 (V2)"
    assert f.at["RD1", "village_id"] == "V1"
    assert f.at["RD1", "measure"] == pytest.approx(1000)
    assert xy(f.at["RD1", "geometry"]) == [(500, 0), (500, 1000)]


def test_border_rule_left_follows_digitised_direction() -> None:
    roads = frames()["roads"].iloc[[0]].copy()
    roads["geometry"] = [line((500, 1000), (500, 0))]  # RD1 digitised south: east (G12) is on its left
    br = analyze_responsibility(make_town(roads=roads)).border_roads
    assert list(br["owner_grid"]) == ["G12"]


def test_border_within_tolerance() -> None:
    roads = frames()["roads"].iloc[[0]].copy()
    roads["geometry"] = [line((500.03, 0), (500.03, 1000))]  # 3 cm off the shared edge
    br = analyze_responsibility(make_town(roads=roads)).border_roads
    assert list(br["grids"]) == [("G11", "G12")]
    assert br.iloc[0]["owner_grid"] == "G11"


def test_shallow_crossing_is_not_a_border_road() -> None:
    roads = frames()["roads"].iloc[[0]].copy()
    # crosses the G11|G12 edge at 2.3 degrees: within 5 cm of it for 2.5 m only
    roads["geometry"] = [line((480, 0), (520, 1000))]
    t = make_town(roads=roads)
    assert len(analyze_responsibility(t).border_roads) == 0
    br = analyze_responsibility(t, options={"border_min_m": 1}).border_roads
    assert br["length_m"].tolist() == pytest.approx([2 * 0.05 / np.sin(np.arctan2(40, 1000))], rel=1e-3)


def test_workload(resp: Responsibility) -> None:
    w = by(resp.workload, "person_id")
    assert list(w["person_id"]) == ["P1", "P2", "P3"]
    assert w.loc["P1", ["grids", "area_m2", "households", "pois"]].tolist() == pytest.approx([2, 1e6, 120, 1])
    assert w.at["P1", "grid_ids"] == ("G11", "G31")
    assert w.at["P1", "village_ids"] == ("V1", "V3")
    assert w.at["P1", "road_m_main"] == pytest.approx(400)
    assert w.at["P1", "road_m_lane"] == pytest.approx(1000)  # RD1 goes to G11 (left rule)
    assert w.at["P2", "road_m_lane"] == pytest.approx(0)
    assert w.at["P2", "road_m_main"] == pytest.approx(400)
    assert w.at["P3", "road_m_village"] == pytest.approx(300, abs=0.1)  # RD2's border part went to G22
    assert w.at["P3", "road_m"] == pytest.approx(300, abs=0.1)
    assert w.at["P3", "pois"] == 1  # the market; the toilet is not a must-check point
    assert w.at["P2", "households"] == pytest.approx(50)


def test_workload_longer_and_flag(town: Town) -> None:
    w = by(analyze_responsibility(town, options={"border_rule": "longer"}).workload, "person_id")
    assert w.at["P3", "road_m_village"] == pytest.approx(700, abs=0.1)
    w = by(analyze_responsibility(town, options={"border_rule": "flag"}).workload, "person_id")
    assert w.at["P1", "road_m_lane"] == pytest.approx(1000)  # undecided: counted for both sides
    assert w.at["P2", "road_m_lane"] == pytest.approx(1000)


def test_grid_overloaded(town: Town, resp: Responsibility) -> None:
    assert not (resp.findings["kind"] == "grid_overloaded").any()  # default max_grids = 3
    res = analyze_responsibility(town, options={"limits": {"max_grids": 1, "max_households": 100}})
    f = owned(res, town)[owned(res, town)["kind"] == "grid_overloaded"]
    got = sorted(zip(f["person_id"], f["rule"], f["measure"], strict=True))
    assert got == [("P1", "max_grids", 2), ("P1", "max_households", 120), ("P3", "max_grids", 2),
                   ("P3", "max_households", 110)]
    row = f[(f["person_id"] == "P1") & (f["rule"] == "max_grids")].iloc[0]
    assert row["severity"] == "low"
    assert row["grid_id"] == ("G11", "G31")
    assert row["owner"] == "东村村委会 (V1) / 西湖社区居委会 (V3)"
    assert row["geometry"].area == pytest.approx(1e6)


# --------------------------------------------------------------------------- rosters from files
def test_rosters_from_gbk_csv_and_xlsx(tmp_path) -> None:
    from gisgrid.io import read_table

    staff = pd.DataFrame(STAFF, columns=["人员编号", "姓名", "电话", "角色", "网格编号"])
    staff["角色"] = staff["角色"].map({"grid_chief": "网格长", "grid_member": "网格员"})
    staff.to_csv(tmp_path / "网格员.csv", index=False, encoding="gbk")
    chiefs = pd.DataFrame(CHIEFS, columns=["人员编号", "姓名", "电话", "级别", "河流编号", "村编号"])
    chiefs["级别"] = chiefs["级别"].map({"town": "镇级", "village": "村级", "county": "县级"})
    chiefs.to_excel(tmp_path / "河长.xlsx", index=False)

    s = read_table(tmp_path / "网格员.csv").rename(
        columns={"人员编号": "person_id", "姓名": "name", "电话": "phone", "角色": "role", "网格编号": "grid_id"})
    s["role"] = s["role"].map({"网格长": "grid_chief", "网格员": "grid_member"})
    c = read_table(tmp_path / "河长.xlsx").rename(
        columns={"人员编号": "person_id", "姓名": "name", "电话": "phone", "级别": "level", "河流编号": "river_id",
                 "村编号": "village_id"})
    c["level"] = c["level"].map({"镇级": "town", "村级": "village", "县级": "county"})
    from_files = analyze_responsibility(make_town(grid_staff=s, river_chiefs=c))
    in_code = analyze_responsibility(make_town())
    pd.testing.assert_frame_equal(from_files.staffing, in_code.staffing)
    pd.testing.assert_frame_equal(from_files.workload, in_code.workload)
    assert list(from_files.reaches["village_chief"]) == list(in_code.reaches["village_chief"])
    assert from_files.staffing.loc[0, "chief_phone"] == "13800000001"  # text, not a number
    unplaced = from_files.findings[from_files.findings["kind"] == "staff_unplaced"].iloc[0]
    assert "line 9 of" in unplaced["message"]  # header is line 1; 孙七 is the 8th person
    assert set(from_files.findings["finding_id"]) == set(in_code.findings["finding_id"])


# --------------------------------------------------------------------------- owners
def _findings(crs: object) -> gpd.GeoDataFrame:
    rows = [
        # kind, severity, village_id, grid_id, geometry, extras
        ("area_gap", "high", "V2", None, b(1400, 900, 1450, 950), {}),
        ("area_gap", "high", None, None, b(-50, 0, -10, 10), {}),  # outside every village
        ("area_overlap", "medium", "V1", ("G11", "G12"), b(490, 0, 510, 10), {}),
        ("road_uncovered", "high", None, None, line((100, 900), (200, 900)), {}),  # located in G11
        ("road_uncovered", "high", None, None, line((1600, 900), (1700, 900)), {}),  # G22: unstaffed
        ("poi_uncovered", "veto", None, None, pt(-100, -100), {}),  # outside the town
        ("grid_unstaffed", "high", "V2", "G22", b(1500, 0, 2000, 1000), {}),
        ("river_unassigned", "high", "V2", None, line((1000, 500), (2000, 500)),
         {"river_id": "R1", "reach_id": "R1-V2-1"}),
        ("river_unassigned", "high", None, None, line((2250, 100), (2250, 900)),
         {"river_id": "R2", "reach_id": None, "rule": "town_chief"}),
        ("sensitive_section", "high", None, None, line((1400, 500), (1600, 500)), {"section_id": "R1-X2"}),
        ("sensitive_section", "medium", None, None, pt(600, 500), {"reach_id": "R1-V1-1"}),
        ("input_repaired", "low", None, None, b(100, 100, 110, 110), {}),
        ("checkpoint_incomplete", "high", "V1", "G11", pt(250, 800), {"owner": "预设的人"}),
    ]
    data = []
    for kind, sev, vid, gid, geom, extra in rows:
        data.append({"kind": kind, "severity": sev, "village_id": vid, "grid_id": gid, "message": kind,
                     "geometry": geom, "river_id": None, "reach_id": None, "section_id": None, **extra})
    return make_findings(pd.DataFrame(data), crs=crs, key=[str(i) for i in range(len(data))])


def test_assign_owners_every_kind(town: Town, resp: Responsibility) -> None:
    findings = _findings(town.crs)
    before = findings.copy()
    out = assign_owners(findings, town, resp)
    pd.testing.assert_frame_equal(findings, before)  # input untouched
    assert out is not findings
    assert list(out["owner"]) == [
        "中村村委会 (V2)",  # area_gap in V2: the village
        DEFAULT,  # area_gap in no village: nobody named
        "张三 / 李四",  # overlap of G11 and G12: both chiefs
        "张三",  # uncovered road located in G11
        "中村村委会 (V2)",  # located in G22, which has no chief: its village
        DEFAULT,  # outside the town
        "中村村委会 (V2)",
        "钱八",  # reach without a village chief: the river's town chief
        DEFAULT,  # river without a town chief
        "周九 / 中村村委会 (V2)",  # cross-boundary section V1|V2: both sides (V2 has no chief)
        "周九",  # on reach R1-V1-1: its village chief
        DEFAULT,  # input repairs: the command center
        "预设的人",  # an owner already set is kept
    ]
    assert list(out["village_id"]) == ["V2", None, "V1", "V1", "V2", None, "V2", "V2", "V3", ("V1", "V2"), "V1",
                                       "V1", "V1"]
    assert out.loc[3, "grid_id"] is None  # grid_id is not invented


def test_assign_owners_default_owner(town: Town, resp: Responsibility) -> None:
    out = assign_owners(_findings(town.crs), town, resp, default_owner="综治办")
    assert out.loc[1, "owner"] == "综治办"
    custom = analyze_responsibility(town, options={"default_owner": "网格办"})
    assert set(owned(custom, town).loc[custom.findings["kind"] == "staff_unplaced", "owner"]) == {"网格办"}
    assert assign_owners(_findings(town.crs), town, custom).loc[1, "owner"] == "网格办"


def test_every_own_finding_has_an_owner(town: Town) -> None:
    for rule in ("left", "longer", "flag"):
        f = owned(analyze_responsibility(town, options={"border_rule": rule, "limits": {"max_grids": 1}}), town)
        assert f["owner"].map(lambda o: isinstance(o, str) and bool(o)).all()
        assert f["finding_id"].is_unique


def test_grid_with_two_chiefs() -> None:
    staff = pd.DataFrame([*STAFF, ("P6", "何二", "13800000006", "grid_chief", "G12")],
                         columns=["person_id", "name", "phone", "role", "grid_id"])
    town = make_town(grid_staff=staff)
    resp = analyze_responsibility(town, options={"border_rule": "flag"})
    st = resp.staffing.set_index("grid_id")
    assert st.at["G12", "chief_name"] == "李四, 何二"
    assert st.at["G12", "chief_id"] == "P2, P6"
    assert st.at["G12", "owner"] == "李四 / 何二"
    f = owned(resp, town)[resp.findings["grid_id"] == ("G11", "G12")]
    assert f.iloc[0]["owner"] == "张三 / 李四 / 何二"
    assert set(task_lists(owned(resp, town))) >= {"张三", "李四", "何二"}


def test_shared_names_are_told_apart() -> None:
    staff = pd.DataFrame(STAFF, columns=["person_id", "name", "phone", "role", "grid_id"])
    staff.loc[staff["person_id"] == "P2", "name"] = "张三"  # a second 张三
    town = make_town(grid_staff=staff)
    resp = analyze_responsibility(town, options={"border_rule": "flag"})
    f = owned(resp, town)[resp.findings["grid_id"] == ("G11", "G12")]
    assert f.iloc[0]["owner"] == "张三 (P1) / 张三 (P2)"


# --------------------------------------------------------------------------- task lists
def test_task_lists(town: Town, resp: Responsibility) -> None:
    findings = assign_owners(_findings(town.crs), town, resp)
    findings["deadline"] = pd.Timestamp("2025-01-10")
    findings["status"] = "new"
    findings.loc[4, "status"] = "fixed"

    class Assessment:
        pass

    assessment = Assessment()
    assessment.findings = findings
    lists = task_lists(assessment)
    assert list(lists) == sorted(lists)
    assert set(lists["张三"]["kind"]) == {"area_overlap", "road_uncovered"}
    assert set(lists["李四"]["kind"]) == {"area_overlap"}  # "张三 / 李四" goes to both
    v2 = lists["中村村委会 (V2)"]
    assert list(v2["kind"]) == ["area_gap", "grid_unstaffed", "sensitive_section"]  # the fixed one is gone
    assert list(v2.columns) == ["finding_id", "kind", "severity", "village_id", "grid_id", "owner", "measure",
                                "unit", "message", "deadline", "status"]
    assert lists[DEFAULT]["severity"].iloc[0] == "veto"  # most severe first
    assert "预设的人" in lists
    assert task_lists(findings.iloc[:0]) == {}
    assert set(task_lists(owned(resp, town))) == {"中村村委会 (V2)", "钱八", DEFAULT}


# --------------------------------------------------------------------------- edges
def test_inputs_not_mutated() -> None:
    t = make_town()
    copies = {k: getattr(t, k).copy() for k in ("grids", "roads", "rivers", "grid_staff", "river_chiefs")}
    analyze_responsibility(t, options={"border_rule": "flag"})
    for k, frame in copies.items():
        pd.testing.assert_frame_equal(getattr(t, k), frame)


def test_town_without_rivers_roads_or_rosters() -> None:
    kw = frames()
    t = Town.from_frames(villages=kw["villages"], grids=kw["grids"], crs=CRS)
    resp = analyze_responsibility(t)
    assert len(resp.reaches) == 0
    assert len(resp.cross_sections) == 0
    assert len(resp.corridors) == 0
    assert len(resp.border_roads) == 0
    assert len(resp.workload) == 0
    assert "road_m_lane" in resp.workload.columns
    assert list(resp.findings["kind"]) == ["grid_unstaffed"] * 6
    assert resp.reaches.crs == t.crs
    assert len(resp.responsibility) == 6
    assert "6 grids" in repr(resp) or "0/6 grids" in repr(resp)
    assert assign_owners(resp.findings.iloc[:0], t, resp).empty


def test_multilinestring_river() -> None:
    rivers = frames()["rivers"].iloc[[0]].copy()
    rivers["geometry"] = [shapely.MultiLineString([
        [(X0 + 1200, Y0 + 500), (X0 + 2500, Y0 + 500)], [(X0 - 500, Y0 + 500), (X0 + 1200, Y0 + 500)]])]
    r = by(analyze_responsibility(make_town(rivers=rivers)).reaches, "reach_id")
    assert r.loc["R1-V1-1", ["start_m", "end_m"]].tolist() == pytest.approx([500, 1500])
    assert r.loc["R1-V3-1", ["start_m", "end_m"]].tolist() == pytest.approx([2500, 3000])


# --------------------------------------------------------------------------- the demo town
@pytest.mark.parametrize(("hand_drawn", "tol"), [(True, 2.0), (False, 0.0)], ids=["hand-drawn", "exact"])
def test_demo_planted_defects_found(hand_drawn: bool, tol: float) -> None:
    from gisgrid import demo

    d = demo.make_demo(hand_drawn=hand_drawn)
    town = d.town()
    truth = d.truth
    resp = analyze_responsibility(town, tolerance_m=tol)
    found = owned(resp, town)
    assert set(found["kind"]) <= {"grid_unstaffed", "river_unassigned"}  # and nothing else
    # the planted unstaffed grids, owned by their villages
    planted = truth[truth["kind"] == "grid_unstaffed"]
    got = found[found["kind"] == "grid_unstaffed"]
    assert len(planted) > 0
    assert sorted(got["grid_id"]) == sorted(planted["grid_id"])
    vnames = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
    assert list(got["owner"]) == [village_owner(v, vnames[v]) for v in got["village_id"]]
    # the planted chief-less reaches, owned by the river's town chief
    planted = truth[truth["kind"] == "river_unassigned"]
    got = found[found["kind"] == "river_unassigned"]
    assert len(planted) > 0
    assert set(got["rule"]) == {"village_chief"}
    pairs = got.groupby(["river_id", "village_id"])["measure"].sum()
    expected = planted.groupby(["river_id", "village_id"])["measure"].sum()
    assert sorted(pairs.index) == sorted(expected.index)
    assert pairs.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy(), abs=1.0)
    chiefs = town.river_chiefs
    town_level = chiefs[chiefs["level"] == "town"].set_index("river_id")
    shared = set(pd.concat([town.grid_staff, chiefs])[["person_id", "name"]].drop_duplicates()
                 .loc[lambda f: f["name"].duplicated(keep=False), "name"])
    expected_owner = [town_level.at[r, "name"] + (f" ({town_level.at[r, 'person_id']})"
                                                  if town_level.at[r, "name"] in shared else "")
                      for r in got["river_id"]]
    assert list(got["owner"]) == expected_owner
    # roads laid exactly on shared grid edges (named 分界路 in the demo) are the border roads, and only they
    flagged = analyze_responsibility(town, options={"border_rule": "flag"}, tolerance_m=tol).findings
    edge_roads = town.roads.loc[town.roads["name"].fillna("").str.endswith("分界路"), "road_id"]
    assert len(edge_roads) > 0
    got = sorted(flagged.loc[flagged["kind"] == "road_ambiguous", "road_id"])
    if not hand_drawn:
        assert got == sorted(edge_roads)
    else:
        # with a 2 m band a few other roads run along a border too: each of them does so on the exact
        # partition as well (within twice the band), so the hand drawing invents none
        clean = demo.make_demo(hand_drawn=False).town()
        wide = analyze_responsibility(clean, options={"border_rule": "flag"}, tolerance_m=2 * tol).findings
        assert set(got) <= set(wide.loc[wide["kind"] == "road_ambiguous", "road_id"])
        assert set(edge_roads) <= set(got)


def test_a_shared_name_is_not_followed_by_its_id_twice() -> None:
    staff = pd.DataFrame(STAFF, columns=["person_id", "name", "phone", "role", "grid_id"])
    staff.loc[staff["person_id"] == "P3", "name"] = "张三"  # a second 张三, who chiefs G21 and G32
    resp = analyze_responsibility(make_town(grid_staff=staff), options={"limits": {"max_grids": 1}})
    over = resp.findings[resp.findings["kind"] == "grid_overloaded"].set_index("person_id")
    assert "张三 (P1) has" in over.at["P1", "message"]
    assert "(P1) (P1)" not in over.at["P1", "message"]
    assert "张三 (P3) has" in over.at["P3", "message"]
