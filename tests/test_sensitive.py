"""Sensitive sections and must-check points: every rule on a town whose answers can be worked out by hand."""

from __future__ import annotations

import copy
import math
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
import tomllib

import gisgrid
from gisgrid.checks import sensitive
from gisgrid.checks.sensitive import DEFAULT_RULES, analyze_sensitive, parse_rules, summarise_sections
from gisgrid.findings import COLUMNS, concat_findings, make_findings
from gisgrid.geometry import linework
from gisgrid.model import Town

X0, Y0 = 500000.0, 3550000.0  # EPSG:4549 (CGCS2000 / 3-degree GK CM 120E), metres
CRS = "EPSG:4549"
HALF_150 = math.sqrt(200**2 - 150**2)  # half the chord a 200 m circle cuts from a line 150 m away


def pt(x, y):
    return shapely.Point(X0 + x, Y0 + y)


def ln(*pts):
    return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])


def bx(a, b, c, d):
    return shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d)


def make_town(*, roads=(), pois=(), rivers=(), grids=None, chiefs=None, river_chiefs=()):
    """Two villages side by side, V1 = [0, 1000] x [0, 1000] and V2 = [1000, 2000] x [0, 1000]."""
    villages = gpd.GeoDataFrame({"village_id": ["V1", "V2"], "name": ["东村", "西村"]},
                                geometry=[bx(0, 0, 1000, 1000), bx(1000, 0, 2000, 1000)], crs=CRS)
    grids = grids or [("G1", "V1", bx(0, 0, 1000, 1000)), ("G2", "V2", bx(1000, 0, 2000, 1000))]
    grid_frame = gpd.GeoDataFrame({"grid_id": [g[0] for g in grids], "village_id": [g[1] for g in grids]},
                                  geometry=[g[2] for g in grids], crs=CRS)
    chiefs = [g[0] for g in grids] if chiefs is None else list(chiefs)
    staff = pd.DataFrame({"person_id": [f"S{g}" for g in chiefs], "name": [f"网格长{g}" for g in chiefs],
                          "role": "grid_chief", "grid_id": chiefs})

    def frame(rows, cols):
        if not rows:
            return None
        return gpd.GeoDataFrame({c: [r[i] for r in rows] for i, c in enumerate(cols)},
                                geometry=[r[-1] for r in rows], crs=CRS)

    rc = pd.DataFrame(list(river_chiefs), columns=["person_id", "name", "level", "river_id", "village_id"]) \
        if river_chiefs else None
    return Town.from_frames(villages=villages, grids=grid_frame, roads=frame(roads, ["road_id", "road_class"]),
                            pois=frame(pois, ["poi_id", "kind"]), rivers=frame(rivers, ["river_id", "name"]),
                            grid_staff=staff, river_chiefs=rc, crs=CRS, name="测试镇")


def only(*names, veto_rules=(), **changes):
    """A [rules] table with only the named shipped rules (``changes``: rule -> keys to override)."""
    table = {"defaults": False, "veto_rules": list(veto_rules)}
    for name in names:
        table[name] = {**copy.deepcopy(DEFAULT_RULES[name]), **changes.get(name, {})}
    return table


def real_findings(town):
    """The findings and responsibility the other engines produce for ``town``."""
    from gisgrid import analysis, owners
    from gisgrid.checks import responsibility as assign

    cov, _ = analysis.coverage_findings(town, tolerance_m=0)  # exact borders: the exact engine
    resp = assign.analyze_responsibility(town, tolerance_m=0)
    found = owners.assign_owners(concat_findings([cov, resp.findings], crs=town.crs), town, resp)
    return found, resp


def one(frame, **eq):
    mask = np.ones(len(frame), dtype=bool)
    for col, value in eq.items():
        mask &= (frame[col] == value).to_numpy()
    rows = frame[mask]
    assert len(rows) == 1, rows.drop(columns="geometry").to_string()
    return rows.iloc[0]


def hausdorff(a, b):
    return shapely.hausdorff_distance(a, b)


# ------------------------------------------------------------------------------------------- proximity
def test_school_150m_from_a_lane_gives_the_exact_chord():
    town = make_town(roads=[("R1", "lane", ln((100, 500), (900, 500)))], pois=[("P1", "school", pt(500, 650))])
    res = analyze_sensitive(town, None, None, rules=only("school_200m"))
    sec = one(res.sections, rule="school_200m")
    assert sec["length_m"] == pytest.approx(2 * HALF_150, abs=1e-9)
    assert hausdorff(sec.geometry, ln((500 - HALF_150, 500), (500 + HALF_150, 500))) < 1e-6
    assert (sec["trigger"], sec["severity"], sec["layer"], sec["feature_id"]) == ("P1", "high", "road", "R1")
    assert (sec["village_id"], sec["grid_id"], sec["owner"]) == ("V1", "G1", "网格长G1")
    assert sec["covered"]
    assert sec["staffed"]
    assert "school" in sec["detail"]
    assert "P1" in sec["detail"]
    assert len(res.findings) == 0  # a sensitive place with nothing wrong is not a finding
    assert list(res.sections.columns) == list(sensitive.SECTION_COLUMNS)


def test_bent_lane_section_is_exactly_the_part_within_reach():
    lane = ln((100, 500), (450, 520), (520, 700), (900, 760))
    school = pt(500, 650)
    town = make_town(roads=[("R1", "lane", lane)], pois=[("K1", "kindergarten", school)])
    res = analyze_sensitive(town, None, None, rules=only("school_200m"))
    geom = shapely.line_merge(shapely.union_all(res.sections.geometry.to_numpy()))
    assert geom.geom_type == "LineString"
    ends = [shapely.Point(geom.coords[0]), shapely.Point(geom.coords[-1])]
    assert [e.distance(school) for e in ends] == pytest.approx([200.0, 200.0], abs=1e-6)
    # distance to a point is convex along a segment: every vertex within 200 m puts the whole section within
    assert shapely.distance(shapely.points(shapely.get_coordinates(geom)), school).max() <= 200 + 1e-6
    reference = lane.intersection(school.buffer(200.0, quad_segs=2048)).length  # inscribed polygon, from below
    assert geom.length == pytest.approx(reference, abs=0.01)
    assert geom.length >= reference


def test_section_is_cut_at_the_grid_border():
    town = make_town(roads=[("R1", "lane", ln((800, 500), (1200, 500)))], pois=[("P1", "school", pt(1000, 650))])
    s = analyze_sensitive(town, None, None, rules=only("school_200m")).sections
    assert sorted(s["grid_id"]) == ["G1", "G2"]
    assert s["length_m"].to_numpy() == pytest.approx([HALF_150, HALF_150], abs=1e-9)
    assert dict(zip(s["grid_id"], s["village_id"], strict=True)) == {"G1": "V1", "G2": "V2"}
    assert dict(zip(s["grid_id"], s["owner"], strict=True)) == {"G1": "网格长G1", "G2": "网格长G2"}


def test_market_and_clinic_are_medium_within_100m_on_roads_and_rivers():
    town = make_town(roads=[("R1", "village", ln((100, 500), (900, 500)))],
                     rivers=[("H1", "东河", ln((0, 800), (1000, 800)))],
                     pois=[("M1", "market", pt(300, 560)), ("C1", "clinic", pt(700, 500)),
                           ("C2", "clinic", pt(600, 830))])
    s = analyze_sensitive(town, None, None, rules=only("market_clinic_100m")).sections
    assert set(s["severity"]) == {"medium"}
    road = s[s["layer"] == "road"].set_index("trigger")["length_m"]
    assert road["M1"] == pytest.approx(2 * math.sqrt(100**2 - 60**2), abs=1e-9)
    assert road["C1"] == pytest.approx(200.0, abs=1e-9)
    river = one(s, layer="river")
    assert (river["feature_id"], river["trigger"]) == ("H1", "C2")
    assert river["length_m"] == pytest.approx(2 * math.sqrt(100**2 - 30**2), abs=1e-9)


def test_overlapping_circles_give_one_section_with_both_triggers():
    town = make_town(roads=[("R1", "lane", ln((100, 500), (900, 500)))],
                     pois=[("P1", "school", pt(400, 650)), ("P2", "kindergarten", pt(550, 650))])
    sec = one(analyze_sensitive(town, None, None, rules=only("school_200m")).sections, rule="school_200m")
    assert sec["trigger"] == "P1,P2"
    assert sec["length_m"] == pytest.approx(150 + 2 * HALF_150, abs=1e-9)


# ------------------------------------------------------------------------------------------- along the river
def river_town(*intakes):
    return make_town(rivers=[("H1", "东河", ln((0, 200), (800, 200), (800, 900))),
                             ("H2", "西河", ln((0, 350), (700, 350)))],
                     pois=[(f"W{i + 1}", "water_intake", p) for i, p in enumerate(intakes)])


def test_water_intake_section_runs_500m_along_the_nearest_river():
    # W1 is 30 m from H1's northward reach, at chainage 800 + 100 = 900; H2 is 139 m away.
    res = analyze_sensitive(river_town(pt(830, 300)), None, None, rules=only("water_intake_500m"))
    sec = one(res.sections, rule="water_intake_500m")
    assert (sec["feature_id"], sec["trigger"], sec["layer"], sec["severity"]) == ("H1", "W1", "river", "high")
    assert sec["length_m"] == pytest.approx(1000.0, abs=1e-9)
    assert hausdorff(sec.geometry, ln((400, 200), (800, 200), (800, 800))) < 1e-6
    assert "chainage 900 m" in sec["detail"]


def test_two_intake_windows_merge_and_stop_at_the_river_ends():
    # W2 at chainage 100: its window [-400, 600] stops at the source and meets W1's [400, 1400];
    # W3 at chainage 1450 of the 1500 m river: [950, 1950] stops at the mouth and meets it too.
    res = analyze_sensitive(river_town(pt(830, 300), pt(100, 190)), None, None, rules=only("water_intake_500m"))
    sec = one(res.sections, rule="water_intake_500m")
    assert sec["trigger"] == "W1,W2"
    assert sec["length_m"] == pytest.approx(1400.0, abs=1e-9)
    res = analyze_sensitive(river_town(pt(830, 300), pt(100, 190), pt(790, 850)), None, None,
                            rules=only("water_intake_500m"))
    sec = one(res.sections, rule="water_intake_500m")
    assert sec["trigger"] == "W1,W2,W3"
    assert hausdorff(sec.geometry, ln((0, 200), (800, 200), (800, 900))) < 1e-6


def test_intake_far_from_any_river_gets_no_section(caplog):
    res = analyze_sensitive(river_town(pt(500, 800)), None, None, rules=only("water_intake_500m"))
    assert res.sections.empty
    assert "farther than 200 m" in caplog.text


# ------------------------------------------------------------------------------------------- borders
def test_town_entrances_are_the_road_pieces_reaching_the_boundary():
    roads = [("R1", "main", ln((-100, 500), (400, 500))),   # enters the town across x = 0
             ("R2", "lane", ln((300, 100), (700, 100)))]     # runs 100 m inside the boundary, never reaches it
    town = make_town(roads=roads)
    sec = one(analyze_sensitive(town, None, None, rules=only("town_entrance_200m")).sections, rule="town_entrance_200m")
    assert (sec["feature_id"], sec["trigger"], sec["severity"]) == ("R1", "town_boundary", "medium")
    assert hausdorff(sec.geometry, ln((0, 500), (200, 500))) < 1e-6
    wide = analyze_sensitive(town, None, None,
                             rules=only("town_entrance_200m", town_entrance_200m={"entrances_only": False}))
    assert wide.sections.groupby("feature_id")["length_m"].sum().to_dict() == pytest.approx({"R1": 200.0, "R2": 400.0})


def test_village_border_strip_leaves_out_the_town_boundary():
    roads = [("R1", "lane", ln((800, 500), (1200, 500))),   # crosses the V1/V2 border
             ("R2", "lane", ln((970, 200), (970, 800))),    # runs 30 m from it
             ("R3", "lane", ln((30, 200), (30, 800)))]      # runs 30 m from the town boundary only
    s = analyze_sensitive(make_town(roads=roads), None, None, rules=only("village_border_50m")).sections
    assert set(s["trigger"]) == {"V1,V2"}
    assert set(s["severity"]) == {"low"}
    assert s.groupby("feature_id")["length_m"].sum().to_dict() == pytest.approx({"R1": 100.0, "R2": 600.0})
    r1 = s[s["feature_id"] == "R1"]
    assert sorted(r1["grid_id"]) == ["G1", "G2"]
    assert r1["length_m"].to_numpy() == pytest.approx([50.0, 50.0])


def cross_town(**kw):
    return make_town(rivers=[("H1", "东河", ln((200, 300), (1800, 300)))],
                     river_chiefs=[("C0", "镇河长", "town", "H1", None), ("C1", "村河长", "village", "H1", "V1")], **kw)


def test_cross_boundary_section_escalates_the_missing_side_not_a_duplicate():
    town = cross_town()
    found, resp = real_findings(town)
    reach = one(found, kind="river_unassigned")
    res = analyze_sensitive(town, found, resp, rules=only("cross_boundary", veto_rules=["cross_boundary"]))
    s = res.sections
    assert sorted(s["village_id"]) == ["V1", "V2"]
    assert s["length_m"].to_numpy() == pytest.approx([100.0, 100.0])
    assert set(s["trigger"]) == {"H1-X1"}
    assert len(res.findings) == len(found)  # the missing V2 side is already a river_unassigned
    after = one(res.findings, finding_id=reach["finding_id"])
    assert (after["severity"], after["rule"], after["base_severity"]) == ("veto", "cross_boundary", "high")
    # nobody reported it: one sensitive_section, for the 100 m on the V2 side only
    alone = analyze_sensitive(town, None, resp, rules=only("cross_boundary"))
    new = one(alone.findings, kind="sensitive_section")
    assert (new["village_id"], new["severity"], new["rule"]) == ("V2", "high", "cross_boundary")
    assert new["measure"] == pytest.approx(100.0)
    assert "no village river chief on the 西村 (V2) side of cross-boundary section H1-X1" in new["message"]


# ------------------------------------------------------------------------------------------- escalation
def gap_town(**kw):
    """V1 has a gap x in [400, 600] between grids G1 and G1b."""
    grids = [("G1", "V1", bx(0, 0, 400, 1000)), ("G1b", "V1", bx(600, 0, 1000, 1000)),
             ("G2", "V2", bx(1000, 0, 2000, 1000))]
    return make_town(grids=grids, **kw)


def test_uncovered_lane_near_a_school_is_raised_and_keeps_its_id():
    town = gap_town(roads=[("R1", "village", ln((100, 500), (900, 500)))], pois=[("P1", "school", pt(300, 650))])
    found, resp = real_findings(town)
    before = one(found, kind="road_uncovered")
    assert before["severity"] == "medium"
    res = analyze_sensitive(town, found, resp, rules=only("school_200m"))
    assert sorted(res.findings["finding_id"]) == sorted(found["finding_id"])  # nothing new, nothing lost
    after = one(res.findings, finding_id=before["finding_id"])
    assert (after["kind"], after["severity"], after["base_severity"], after["rule"]) == (
        "road_uncovered", "high", "medium", "school_200m")
    assert after["message"].startswith(before["message"])
    assert "P1" in after["message"]
    s = res.sections
    assert s.loc[s["covered"], "length_m"].sum() == pytest.approx(400 - (300 - HALF_150), abs=1e-6)
    gap = one(s, covered=False)
    assert gap["length_m"] == pytest.approx(300 + HALF_150 - 400, abs=1e-6)
    assert (gap["grid_id"], gap["village_id"], gap["staffed"]) == (None, "V1", False)
    # the same place with no finding about it: then the section itself is the finding
    alone = analyze_sensitive(town, None, resp, rules=only("school_200m"))
    new = one(alone.findings, kind="sensitive_section")
    assert (new["severity"], new["rule"], new["village_id"], new["unit"]) == ("high", "school_200m", "V1", "m")
    assert new["measure"] == pytest.approx(300 + HALF_150 - 400, abs=1e-6)


def test_switching_a_rule_off():
    town = gap_town(roads=[("R1", "village", ln((100, 500), (900, 500)))], pois=[("P1", "school", pt(300, 650))])
    found, resp = real_findings(town)
    res = analyze_sensitive(town, found, resp, rules={"school_200m": {"enabled": False}})
    assert "school_200m" not in set(res.sections["rule"])
    assert one(res.findings, kind="road_uncovered")["severity"] == "medium"
    assert not next(r for r in res.rules if r.name == "school_200m").enabled


def test_main_road_piece_is_raised_but_a_lane_crossing_it_is_not():
    town = gap_town(roads=[("M1", "main", ln((100, 500), (900, 500))), ("K1", "village", ln((500, 100), (500, 900)))])
    found, resp = real_findings(town)
    res = analyze_sensitive(town, found, resp, rules=only("main_roads", main_roads={"severity": "high"}))
    f = res.findings
    main = one(f, kind="road_uncovered", road_id="M1")
    assert (main["base_severity"], main["severity"], main["rule"]) == ("low", "high", "main_roads")
    lane = one(f, kind="road_uncovered", road_id="K1")
    assert (lane["severity"], lane["rule"]) == ("medium", "road_village")
    assert sorted(res.sections["length_m"].round(6)) == [200.0, 300.0, 300.0]
    assert not (f["kind"] == "sensitive_section").any()


def test_two_masters_is_as_bad_as_none():
    town = make_town()
    rows = pd.DataFrame({
        "kind": ["area_overlap", "road_ambiguous", "area_gap"], "severity": ["medium", "low", "low"],
        "message": ["overlap", "ambiguous", "gap"], "rule": ["grid_overlap", "border_rule", "no_grid"],
        "geometry": [bx(100, 100, 200, 200), ln((1000, 100), (1000, 300)), bx(300, 300, 310, 310)]})
    found = make_findings(rows, crs=town.crs, key=["a", "b", "c"])
    res = analyze_sensitive(town, found, None, rules=only("two_masters"))
    f = res.findings.set_index("kind")
    assert f.loc["area_overlap", "severity"] == "high"
    assert f.loc["road_ambiguous", "severity"] == "high"
    assert f.loc["area_overlap", "rule"] == "two_masters"
    assert f.loc["area_gap", "severity"] == "low"
    assert sorted(res.findings["finding_id"]) == sorted(found["finding_id"])
    assert list(res.findings.columns[: len(COLUMNS)]) == list(COLUMNS)


def core_findings(town):
    rows = pd.DataFrame({"kind": "area_gap", "severity": "low", "message": ["in", "out", "touching"],
                         "geometry": [bx(300, 300, 400, 400), bx(850, 850, 900, 900), bx(800, 300, 850, 350)]})
    return make_findings(rows, crs=town.crs, key=["in", "out", "touching"])


def test_market_town_core_as_a_polygon_in_metres_or_degrees():
    town = make_town(roads=[("R1", "lane", ln((100, 500), (900, 500)))])
    found = core_findings(town)
    core = bx(200, 200, 800, 800)
    res = analyze_sensitive(town, found, None, rules=only("market_core", market_core={"wkt": core.wkt}))
    sec = one(res.sections, rule="market_core")
    assert sec["length_m"] == pytest.approx(600.0, abs=1e-6)
    assert res.findings.set_index("message")["severity"].to_dict() == {
        "in [Raised from low to medium, rule market_core: in the market-town core (集镇).]": "medium",
        "out": "low", "touching": "low"}
    to_deg = pyproj.Transformer.from_crs(CRS, "EPSG:4490", always_xy=True)
    ring = [list(to_deg.transform(x, y)) for x, y in core.exterior.coords[:-1]]
    res2 = analyze_sensitive(town, found, None, rules=only("market_core", market_core={"lonlat": ring}))
    assert one(res2.sections, rule="market_core")["length_m"] == pytest.approx(600.0, abs=1e-3)


def test_market_town_core_defaults_to_300m_around_markets():
    town = make_town(roads=[("R1", "lane", ln((0, 500), (1000, 500)))], pois=[("M1", "market", pt(500, 600))])
    sec = one(analyze_sensitive(town, None, None, rules=only("market_core")).sections, rule="market_core")
    assert sec["length_m"] == pytest.approx(2 * math.sqrt(300**2 - 100**2), abs=1e-9)


# ------------------------------------------------------------------------------------------- must-check points
def checkpoint_town():
    grids = [("G1", "V1", bx(0, 0, 1000, 1000)), ("G2", "V2", bx(1000, 0, 1400, 1000)),
             ("G3", "V2", bx(1400, 0, 2000, 1000))]
    pois = [("P1", "school", pt(300, 650)), ("P2", "clinic", pt(1200, 800)), ("W1", "water_intake", pt(1600, 310)),
            ("P3", "market", pt(500, 900)), ("X1", "shop", pt(600, 900))]
    return cross_town(grids=grids, chiefs=["G1", "G3"], pois=pois)


def test_checkpoints_link_the_findings_that_already_report_them():
    town = checkpoint_town()
    found, resp = real_findings(town)
    unstaffed = one(found, kind="grid_unstaffed")
    reach = one(found, kind="river_unassigned")
    res = analyze_sensitive(town, found, resp)
    cp = res.checkpoints.set_index("poi_id")
    assert list(res.checkpoints.columns) == list(sensitive.CHECKPOINT_COLUMNS)
    assert sorted(cp.index) == ["P1", "P2", "P3", "W1"]  # a shop is not a must-check point
    assert cp.loc["P1", "ok"]
    assert cp.loc["P1", "grid_chief"] == "网格长G1"
    assert cp.loc["P1", "river_id"] is None
    assert not cp.loc["P2", "ok"]
    assert cp.loc["P2", "problem"] == "grid G2 has no grid chief"
    assert cp.loc["P2", "finding_id"] == unstaffed["finding_id"]
    assert cp.loc["P2", "severity"] == "high"
    assert (cp.loc["W1", "grid_id"], cp.loc["W1", "river_id"], cp.loc["W1", "reach_id"]) == ("G3", "H1", "H1-V2-1")
    assert cp.loc["W1", "river_chief"] is None
    assert cp.loc["W1", "finding_id"] == reach["finding_id"]
    assert cp.loc["W1", "severity"] == "veto"
    f = res.findings
    assert not f["kind"].isin(["checkpoint_incomplete", "sensitive_section"]).any()
    assert len(f) == len(found)
    r = one(f, finding_id=reach["finding_id"])
    assert (r["severity"], r["rule"]) == ("veto", "veto_points")
    assert "water_intake" in r["message"]
    assert "W1" in r["message"]


def test_checkpoint_problems_nobody_reported_become_findings():
    town = checkpoint_town()
    _, resp = real_findings(town)
    res = analyze_sensitive(town, None, resp)
    new = res.findings[res.findings["kind"] == "checkpoint_incomplete"].set_index("poi_id")
    assert sorted(new.index) == ["P2", "W1"]
    assert new.loc["P2", "severity"] == "high"
    assert new.loc["P2", "rule"] == "must_check"
    assert new.loc["W1", "severity"] == "veto"
    assert new.loc["W1", "rule"] == "veto_points"
    assert "Veto item" in new.loc["W1", "message"]
    cp = res.checkpoints.set_index("poi_id")
    assert cp.loc["W1", "finding_id"] == new.loc["W1", "finding_id"]


def test_school_in_a_gap_is_a_veto_item_once():
    town = gap_town(pois=[("P1", "school", pt(500, 500))])
    found, resp = real_findings(town)
    poi = one(found, kind="poi_uncovered")
    res = analyze_sensitive(town, found, resp)
    assert len(res.findings) == len(found)
    after = one(res.findings, finding_id=poi["finding_id"])
    assert (after["severity"], after["rule"], after["base_severity"]) == ("veto", "veto_points", "high")
    assert one(res.checkpoints, poi_id="P1")["finding_id"] == poi["finding_id"]
    off = analyze_sensitive(town, found, resp, rules={"veto_points": {"enabled": False}})
    assert (off.findings["severity"] != "veto").all()


def test_intake_on_a_river_without_any_chief_vetoes_only_its_reach():
    town = make_town(rivers=[("H1", "东河", ln((100, 500), (1900, 500)))], pois=[("W1", "water_intake", pt(500, 510))])
    found, resp = real_findings(town)
    res = analyze_sensitive(town, found, resp)
    f = res.findings[res.findings["kind"] == "river_unassigned"].set_index("rule")
    assert f.loc["veto_points", "reach_id"] == "H1-V1-1"
    assert set(f["base_severity"]) == {"high"}
    assert sorted(f.index) == ["town_chief", "veto_points", "village_chief"]  # no town chief, V2's reach, W1's reach
    assert one(res.checkpoints, poi_id="W1")["finding_id"] == f.loc["veto_points", "finding_id"]


def test_a_town_with_nothing_sensitive():
    town = make_town()
    found, resp = real_findings(town)
    res = analyze_sensitive(town, found, resp)
    assert res.sections.empty
    assert res.checkpoints.empty
    assert res.findings.empty
    assert summarise_sections(res, town)["sections"].tolist() == [0, 0]


def test_veto_rules_make_whatever_they_meet_a_veto_item():
    town = gap_town(roads=[("M1", "main", ln((100, 500), (900, 500)))])
    found, resp = real_findings(town)
    res = analyze_sensitive(town, found, resp, rules={"veto_rules": ["main_roads"]})
    main = one(res.findings, kind="road_uncovered")
    assert (main["severity"], main["rule"]) == ("veto", "main_roads")
    assert set(res.sections.loc[res.sections["rule"] == "main_roads", "severity"]) == {"veto"}


# ------------------------------------------------------------------------------------------- the rules table
def test_defaults_round_trip():
    rules = parse_rules(None)
    assert parse_rules(DEFAULT_RULES) == rules
    assert {r.name for r in rules} == set(DEFAULT_RULES) - {"veto_rules"}
    assert {r.type for r in rules} == set(sensitive.RULE_TYPES)
    assert all(r.enabled and not r.veto for r in rules)
    assert parse_rules(rules) == rules


def test_a_shipped_rule_is_changed_key_by_key_and_new_rules_are_added():
    rules = {r.name: r for r in parse_rules({
        "school_200m": {"distance_m": 300}, "veto_rules": ["water_intake_500m"],
        "must_check": {"kinds": ["school", "nursing_home"]},
        "nursing_home_100m": {"type": "proximity", "kinds": ["nursing_home"], "distance_m": 100,
                              "severity": "medium"}})}
    assert rules["school_200m"].distance_m == 300
    assert rules["school_200m"].kinds == ("school", "kindergarten")
    assert rules["water_intake_500m"].veto
    assert rules["water_intake_500m"].effective_severity == "veto"
    assert rules["nursing_home_100m"].layers == ("roads", "rivers")
    assert parse_rules({"defaults": False}) == []


def test_readme_example_is_valid():
    text = sensitive.__doc__.split("Example (``gisgrid.toml``)::")[1].split("\nGeometry\n")[0]
    data = tomllib.loads("\n".join(line[4:] for line in text.splitlines()))
    rules = {r.name: r for r in parse_rules(data["rules"])}
    assert rules["school_200m"].distance_m == 300
    assert not rules["village_border_50m"].enabled
    assert rules["market_core"].lonlat is not None
    assert rules["water_intake_500m"].veto
    assert "nursing_home" in rules["must_check"].kinds


@pytest.mark.parametrize(("table", "words"), [
    ({"school_200m": {"kinds": ["schol"]}}, ["school_200m", "unknown POI kind", "did you mean 'school'"]),
    ({"school_200m": {"distance_m": -5}}, ["school_200m", "0 m or more"]),
    ({"school_200m": {"distance_m": "200"}}, ["school_200m", 'not "200"', "bare number"]),
    ({"school_200m": {"distance_m": True}}, ["school_200m", "number of metres"]),
    ({"school_200m": {"severity": "urgent"}}, ["school_200m", "unknown severity", "veto"]),
    ({"mine": {"type": "proximty", "kinds": ["school"], "distance_m": 1, "severity": "low"}},
     ["mine", "unknown type", "did you mean 'proximity'"]),
    ({"mine": {"kinds": ["school"]}}, ["mine", "has no type"]),
    ({"school_200m": {"distanse_m": 100}}, ["school_200m", "unknown key", "did you mean 'distance_m'"]),
    ({"main_roads": {"classes": ["highway"]}}, ["main_roads", "unknown road class"]),
    ({"two_masters": {"finding_kinds": ["gap"]}}, ["two_masters", "unknown finding kind"]),
    ({"school_200m": {"layers": ["canals"]}}, ["school_200m", "unknown layer"]),
    ({"school_200m": {"enabled": "no"}}, ["school_200m", "true or false"]),
    ({"school_200m": 200}, ["school_200m", "must be a table"]),
    ({"veto_rules": ["schools"]}, ["veto_rules", "schools"]),
    ({"veto_points": {"severity": "high"}}, ["veto_points", "always"]),
    ({"market_core": {"wkt": "POLYGON ((0 0, 1 1"}}, ["market_core", "wkt"]),
    ({"market_core": {"lonlat": [[121.2, 32.1], [121.3]]}}, ["market_core", "lonlat"]),
    ({"mine": {"type": "proximity", "kinds": ["school"], "severity": "low"}}, ["mine", "distance_m"]),
    ({"defaults": "yes"}, ["defaults"]),
])
def test_bad_rules_are_refused_with_the_rule_and_the_fix(table, words):
    with pytest.raises(gisgrid.RuleError) as err:
        parse_rules(table)
    text = str(err.value)
    assert "Fix:" in text
    for w in words:
        assert w in text, text
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, gisgrid.ConfigError)


def test_analyze_sensitive_refuses_bad_rules_too():
    with pytest.raises(gisgrid.RuleError, match="school_200m"):
        analyze_sensitive(make_town(), None, None, rules={"school_200m": {"distance_m": -1}})


# ------------------------------------------------------------------------------------------- summary and inputs
def test_summary_per_village():
    town = make_town(roads=[("R1", "lane", ln((800, 500), (1200, 500)))], pois=[("P1", "school", pt(1000, 650))],
                     chiefs=["G1"])
    res = analyze_sensitive(town, None, None, rules=only("school_200m"))
    s = summarise_sections(res, town)
    assert list(s.index) == ["V1", "V2"]
    assert s.index.name == "village_id"
    assert s.loc["V1", ["sections", "covered", "staffed"]].tolist() == [1, 1, 1]
    assert s.loc["V2", ["sections", "covered", "staffed"]].tolist() == [1, 1, 0]
    assert s["length_m"].to_numpy() == pytest.approx([HALF_150, HALF_150])
    assert s["veto"].tolist() == [0, 0]


def test_inputs_are_not_changed():
    town = gap_town(roads=[("R1", "village", ln((100, 500), (900, 500)))], pois=[("P1", "school", pt(300, 650))])
    found, resp = real_findings(town)
    snapshot = found.copy()
    analyze_sensitive(town, found, resp)
    pd.testing.assert_frame_equal(pd.DataFrame(found.drop(columns="geometry")),
                                  pd.DataFrame(snapshot.drop(columns="geometry")))
    assert "base_severity" not in found.columns


# ------------------------------------------------------------------------------------------- the demo town
@pytest.fixture(scope="module")
def demo():
    """The exact partition (the hand-drawn demo goes through analyze(), which passes the tolerance on)."""
    from gisgrid.demo import make_demo

    return make_demo(hand_drawn=False)


@pytest.fixture(scope="module")
def demo_run(demo):
    town = demo.town()
    found, resp = real_findings(town)
    return town, found, resp, analyze_sensitive(town, found, resp)


def test_demo_findings_are_the_planted_ones_some_raised(demo, demo_run):
    _, found, _, res = demo_run
    f = res.findings
    assert sorted(f["finding_id"]) == sorted(found["finding_id"])  # same problems, same ids: nothing added
    assert sorted(f["kind"]) == sorted(demo.truth["kind"])
    rank = f["severity"].map(gisgrid.findings.SEVERITY_RANK)
    assert (rank <= f["base_severity"].map(gisgrid.findings.SEVERITY_RANK)).all()  # only ever raised
    school = one(f, kind="poi_uncovered")
    assert (school["severity"], school["rule"]) == ("veto", "veto_points")
    assert (f["severity"] == "veto").sum() == 1


def test_demo_sections_and_checkpoints(demo, demo_run):
    town, _, _, res = demo_run
    s = res.sections
    assert {"school_200m", "market_clinic_100m", "water_intake_500m", "town_entrance_200m", "village_border_50m",
            "cross_boundary", "main_roads", "market_core"} <= set(s["rule"])
    intakes = s[s["rule"] == "water_intake_500m"].groupby("trigger")["length_m"].sum()
    assert len(intakes) == (town.pois["kind"] == "water_intake").sum()
    assert intakes.to_numpy() == pytest.approx(1000.0)  # 500 m each way, every intake far from a river end
    assert s["section_id"].is_unique
    assert (s["length_m"] >= 0.5).all()
    assert s.crs == town.crs
    cp = res.checkpoints
    assert len(cp) == town.pois["kind"].isin(gisgrid.settings.must_check_kinds).sum()
    bad = cp[~cp["ok"]]
    assert list(bad["kind"]) == ["school"]
    assert bad["finding_id"].iloc[0] in set(res.findings["finding_id"])


def test_analyze_uses_the_engine(demo):
    from gisgrid import analysis

    a = analysis.analyze(demo.town())
    assert (a.findings["severity"] == "veto").sum() == 1
    assert len(a.findings) == len(demo.truth)
    assert a.sensitive is not None
    assert len(a.sensitive) > 0
    assert {"sensitive_sections", "sensitive_veto"} <= set(a.summary.columns)


def test_ids_do_not_move_when_severity_changes(demo_run):
    town, found, resp, res = demo_run
    calm = analyze_sensitive(town, found, resp, rules={"defaults": False})
    assert dict(zip(calm.findings["finding_id"], calm.findings["severity"], strict=True)) == dict(
        zip(found["finding_id"], found["severity"], strict=True))
    assert set(calm.findings["finding_id"]) == set(res.findings["finding_id"])


def test_result_repr(demo_run):
    assert re.match(r"<SensitiveResult: \d+ sections, \d+ findings raised, 1 veto", repr(demo_run[3]))


# ---------------------------------------------------------------------------- fast paths stay exact
def test_section_ids_stay_what_they_were():
    """Section ids hash rule, feature, grid and the snapped middle point; they must not move between versions.

    These are the ids gisgrid 0.1 gave (before the middle points came from GEOS instead of a copy of its arithmetic).
    """
    town = make_town(roads=[("R1", "lane", ln((100, 500), (450, 520), (520, 700), (900, 760))),
                            ("R2", "main", ln((700, 300), (900, 380), (1100, 420), (1350, 610), (1600, 600)))],
                     pois=[("P1", "school", pt(500, 650)), ("P2", "market", pt(1000, 450))])
    s = analyze_sensitive(town, None, None, rules=only("school_200m", "market_clinic_100m", "main_roads")).sections
    assert list(zip(s["section_id"], s["rule"], s["feature_id"], s["grid_id"], strict=True)) == [
        ("S-57885c5f0c", "main_roads", "R2", "G1"),
        ("S-6cd43c5e32", "main_roads", "R2", "G2"),
        ("S-a12561f27f", "market_clinic_100m", "R2", "G2"),
        ("S-f45637d462", "market_clinic_100m", "R2", "G1"),
        ("S-a1f70f9948", "school_200m", "R1", "G1"),
    ]


@pytest.mark.parametrize("points", [True, False])
def test_box_candidates_lose_no_pair(points):
    """``Lines.within`` narrows the pairs by boxes first; every pair still counts, exactly."""
    rng = np.random.default_rng(4)
    xs = np.arange(0.0, 1001.0, 50.0)  # a lattice of lanes at exact distances, plus random long lines
    lattice = [ln((0, v), (1000, v)) for v in xs] + [ln((v, 0), (v, 1000)) for v in xs]
    origin = np.array([X0, Y0])
    walks = list(shapely.linestrings(rng.normal(scale=30.0, size=(20, 60, 2)).cumsum(axis=1) + origin + 500.0))
    lines = linework.Lines(np.array(lattice + walks, dtype=object))
    ca = rng.uniform(0, 1000, (200, 2)) + origin
    ca[::2] = ca[::2].round(-1)  # half of them at exact distances from the lattice
    cb = ca.copy() if points else ca + rng.normal(scale=80.0, size=(200, 2)).round()
    labels = np.array([f"T{i}" for i in range(len(ca))], dtype=object)
    got = lines.within(ca, cb, labels, 50.0)
    s_idx = np.repeat(np.arange(len(lines.seg_a)), len(ca))  # every (segment, target) pair
    t_idx = np.tile(np.arange(len(ca)), len(lines.seg_a))
    lo, hi = linework.capsule_interval(lines.seg_a[s_idx], lines.seg_b[s_idx], ca[t_idx], cb[t_idx], 50.0)
    ok = np.isfinite(lo) & (hi > lo)
    s_idx, t_idx, lo, hi = s_idx[ok], t_idx[ok], lo[ok], hi[ok]
    want = lines.merge(lines.seg_part[s_idx], lines.seg_ch0[s_idx] + lo * lines.seg_len[s_idx],
                       lines.seg_ch0[s_idx] + hi * lines.seg_len[s_idx], labels[t_idx])
    assert len(want) > 20
    for field_ in ("part", "start", "end", "trigger"):
        assert np.array_equal(getattr(got, field_), getattr(want, field_))
