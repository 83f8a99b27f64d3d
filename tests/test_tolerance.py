"""The digitising tolerance: width, opening, real gaps and overlaps on hand-drawn borders, cleaning."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from conftest import X0, Y0, box, line
from hypothesis import given, settings
from hypothesis import strategies as st

from gisgrid.analysis import analyze, cleaned_grids
from gisgrid.demo import hand_draw
from gisgrid.geometry import coverage, tolerance
from gisgrid.model import Town

CRS = "EPSG:4549"


def frame(geoms, ids=None, col="grid_id"):
    ids = ids or [f"G{i + 1}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({col: ids}, geometry=list(geoms), crs=CRS)


# --------------------------------------------------------------------------- width and opening
def test_width_is_twice_the_inscribed_radius():
    w = tolerance.widths(np.array([box(0, 0, 400, 1), box(0, 0, 20, 20), shapely.Polygon()], dtype=object))
    assert w[0] == pytest.approx(1.0, abs=0.03)
    assert w[1] == pytest.approx(20.0, abs=0.03)
    assert w[2] == 0.0


def test_opening_drops_a_strip_and_keeps_a_field_without_its_tail():
    strip = box(0, 0, 400, 1)  # 1 m wide, 400 m long: noise
    field = shapely.union(box(0, 0, 20, 20), box(20, 9.5, 120, 10.5))  # a 20 m field with a 1 m tail
    out = tolerance.opening(np.array([strip, field], dtype=object), 2.0)
    assert out[0].is_empty
    # the tail is gone but for r (+ the disc's reach) of its root; the field keeps its corners
    assert out[1].bounds[2] <= X0 + 22.0
    assert out[1].area == pytest.approx(400.0 + 1.0, abs=0.5)
    assert out[1].within(field.buffer(1e-6))


def test_zero_tolerance_opening_is_identity():
    g = np.array([box(0, 0, 1, 1)], dtype=object)
    assert tolerance.opening(g, 0.0)[0].equals(g[0])


# --------------------------------------------------------------------------- gaps and overlaps
def _two_grids_with_a_strip_and_a_field():
    """Two grids 1 m apart along x = 100 (a sliver), and a 20 m x 30 m field cut from the right one."""
    left = box(0, 0, 100, 200)
    right = shapely.difference(box(101, 0, 200, 200), box(101, 80, 121, 110))
    return frame([left, right]), box(0, 0, 200, 200)


def test_partition_defects_reports_the_field_with_its_real_shape_and_counts_the_strip():
    grids, extent = _two_grids_with_a_strip_and_a_field()
    d = coverage.partition_defects(grids, extent=extent, id_column="grid_id", tolerance_m=2.0)
    real = d[~d["sliver"]]
    assert list(real["kind"]) == ["gap"]
    # the field is 21 m wide (it opens onto the strip); its tails along the strip are cut off
    field = box(100, 80, 121, 110)
    assert shapely.symmetric_difference(real.geometry.iloc[0], field).area < 5.0
    assert real["zone_ids"].iloc[0] == ("G1", "G2")
    slivers = d[d["sliver"]]
    # the strip (200 m x 1 m) minus the stretch beside the field (and r of each root) is counted, never reported
    assert slivers["area_m2"].sum() == pytest.approx(200 - 30 - 2 * 1.0, abs=2.0)
    exact = coverage.partition_defects(grids, extent=extent, id_column="grid_id", tolerance_m=0)
    assert len(exact[~exact["sliver"]]) == 1
    assert exact["area_m2"].max() == pytest.approx(200 + 600, abs=1e-6)


def test_real_overlap_found_and_sliver_overlap_counted():
    a = box(0, 0, 100.8, 100)  # 0.8 m into b all along: a sliver
    b = shapely.union(box(100, 0, 200, 100), box(70, 40, 101, 60))  # and a 30 m x 20 m bite into a: real
    d = coverage.partition_defects(frame([a, b]), extent=box(0, 0, 200, 100), id_column="grid_id", tolerance_m=2.0)
    real = d[~d["sliver"]]
    assert list(real["kind"]) == ["overlap"]
    assert real["zone_ids"].iloc[0] == ("G1", "G2")
    assert real["area_m2"].iloc[0] == pytest.approx(30.8 * 20, abs=2.0)
    assert d.loc[d["sliver"], "area_m2"].sum() == pytest.approx(0.8 * 80, abs=2.0)


def test_gaps_split_at_village_borders_thin_parts_stay_with_the_largest():
    grids = frame([box(0, 0, 100, 100), box(200, 0, 300, 100)])
    # a 100 m gap between them, across the border of two hand-drawn villages; village 1 reaches 0.5 m
    # into village 2's part of the gap along a thin band
    v1 = box(0, 0, 150, 100)
    v2 = box(150, 0, 300, 100)
    villages = gpd.GeoDataFrame({"village_id": ["V1", "V2"]}, geometry=[v1, v2], crs=CRS)
    d = coverage.partition_defects(grids, extent=box(0, 0, 300, 100), id_column="grid_id", tolerance_m=2.0,
                                   split_by=villages, split_id_column="village_id")
    real = d[~d["sliver"] & (d["kind"] == "gap")].sort_values("split_id")
    assert list(real["split_id"]) == ["V1", "V2"]
    assert real["area_m2"].sum() == pytest.approx(100 * 100, abs=1.0)
    assert real["area_m2"].iloc[0] == pytest.approx(5000, abs=5)


def test_tiles_give_the_same_gaps_as_one_union():
    rng = np.random.default_rng(3)
    cells = [box(x, y, x + 50, y + 50) for x in range(0, 500, 50) for y in range(0, 500, 50)]
    drawn = hand_draw(np.array(cells, dtype=object), rng)
    extent = box(0, 0, 500, 500)
    one = tolerance.gaps_by_extent(drawn, np.array([extent], dtype=object))[0]
    tiled = tolerance.gaps_by_tiles(drawn, extent, zones_per_tile=9, workers=2)
    assert shapely.area(tiled).sum() == pytest.approx(shapely.area(one).sum(), rel=1e-9)
    assert len(tiled) == len(one)


# --------------------------------------------------------------------------- lines and points
def test_roads_through_slivers_and_along_borders_are_covered_and_through_a_field_not():
    grids, extent = _two_grids_with_a_strip_and_a_field()
    roads = gpd.GeoDataFrame({"road_id": ["cross", "along", "field"]}, geometry=[
        line((50, 20), (150, 20)),      # crosses the 1 m strip
        line((100.5, 0), (100.5, 75)),   # runs inside the strip for 75 m
        line((50, 95), (150, 95)),      # crosses the 21 m field
    ], crs=CRS)
    out = coverage.uncovered_lines(roads, grids, extent=extent, tolerance_m=2.0)
    assert list(out["road_id"]) == ["field"]
    assert out["length_m"].iloc[0] == pytest.approx(21.0, abs=1e-6)
    exact = coverage.uncovered_lines(roads, grids, extent=extent, tolerance_m=0)
    assert set(exact["road_id"]) == {"cross", "along", "field"}


def test_uncovered_lines_without_extent_sees_outside_the_zones():
    grids, _ = _two_grids_with_a_strip_and_a_field()
    roads = gpd.GeoDataFrame({"road_id": ["out"]}, geometry=[line((150, 150), (150, 260))], crs=CRS)
    out = coverage.uncovered_lines(roads, grids, tolerance_m=2.0)
    assert out["length_m"].sum() == pytest.approx(60.0, abs=1e-6)


def test_nearest_zone_within_a_distance():
    grids, _ = _two_grids_with_a_strip_and_a_field()
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 100.3, Y0 + 10), shapely.Point(X0 + 110, Y0 + 95)],
                           crs=CRS)
    near = coverage.nearest_zones(pts, grids, id_column="grid_id", max_distance_m=2.0)
    assert near["zone_id"].iloc[0] == "G1"
    assert near["distance_m"].iloc[0] == pytest.approx(0.3)
    assert near["zone_id"].iloc[1] is None


def _hand_town(town_frames, rng, *, plant_gap=None, plant_school=None):
    """The conftest town with every grid, village and the boundary drawn on its own."""
    f = dict(town_frames)
    for key in ("grids", "villages", "boundary"):
        geoms = np.asarray(f[key].geometry.values, dtype=object)
        f[key] = f[key].set_geometry(list(hand_draw(geoms, rng)))
    if plant_gap is not None:
        g = f["grids"]
        f["grids"] = g.set_geometry([shapely.difference(x, plant_gap) for x in g.geometry])
    if plant_school is not None:
        f["pois"] = f["pois"].set_geometry([plant_school])
    return Town.from_frames(**f, name="手绘镇", crs=CRS)


def test_school_in_a_sliver_belongs_to_the_nearest_grid_and_in_a_field_is_a_veto(town_frames):
    rng = np.random.default_rng(11)
    # the school sits exactly on the hand-drawn border of G1 and G2: in a sliver or an overlap
    sliver_town = _hand_town(town_frames, rng, plant_school=shapely.Point(X0 + 50, Y0 + 100))
    a = analyze(sliver_town)
    f = a.findings
    assert not (f["kind"] == "poi_uncovered").any()
    assert (f["severity"] != "veto").all()
    cp = a.checkpoints.set_index("poi_id")
    assert cp.loc["P1", "grid_id"] in ("G1", "G2", ("G1", "G2"))
    field = box(30, 20, 70, 60)
    gap_town = _hand_town(town_frames, np.random.default_rng(12), plant_gap=field,
                          plant_school=shapely.Point(X0 + 50, Y0 + 40))
    f = analyze(gap_town).findings
    school = f[f["kind"] == "poi_uncovered"]
    assert len(school) == 1
    assert school["severity"].iloc[0] == "veto"


def test_hand_drawn_town_reports_only_what_is_wrong(town_frames):
    exact = analyze(Town.from_frames(**town_frames, name="手绘镇", crs=CRS), tolerance_m=0)
    expected = exact.findings["kind"].value_counts().to_dict()  # V2's reach has no village river chief
    expected["area_gap"] = expected.get("area_gap", 0) + 1
    rng = np.random.default_rng(5)
    field = box(150, 120, 190, 180)
    town = _hand_town(town_frames, rng, plant_gap=field)
    a = analyze(town)
    kinds = a.findings["kind"].value_counts().to_dict()
    assert kinds == expected, a.findings[["kind", "message"]].to_string()
    gap = a.findings[a.findings["kind"] == "area_gap"].iloc[0]
    assert gap["measure"] == pytest.approx(40 * 60, rel=0.03)
    assert a.totals["slivers"] > 0
    assert a.totals["sliver_area_m2"] > 0
    hy = a.hygiene
    assert set(hy["grid_id"]) == {"G1", "G2", "G3", "G4"}
    assert (hy["sliver_m2"] > 0).all()
    assert hy["sliver_m2"].is_monotonic_decreasing


def test_border_road_found_between_wobbly_borders(town_frames):
    rng = np.random.default_rng(8)
    town = _hand_town(town_frames, rng)
    # R1 runs along y = 50, inside G1/G3; add a road along the true G1|G2 border at y = 100
    roads = town.roads
    extra = gpd.GeoDataFrame({"road_id": ["R9"], "road_class": ["village"], "name": ["分界路"]},
                             geometry=[line((10, 100), (190, 100))], crs=CRS)
    town = town.replace(roads=gpd.GeoDataFrame(
        __import__("pandas").concat([roads, extra], ignore_index=True), crs=CRS))
    a = analyze(town, options={"border_rule": "left"})
    border = a.responsibility.border_roads
    row = border[border["road_id"] == "R9"]
    assert len(row) >= 1
    assert row["length_m"].sum() > 150
    # the road runs east: its left (north) is G2
    assert set(row["owner_grid"]) == {"G2"}
    assert not (a.findings["kind"] == "road_uncovered").any()


# --------------------------------------------------------------------------- cleaning
def test_cleaned_grids_match_borders_and_keep_real_defects(town_frames):
    rng = np.random.default_rng(21)
    field = box(150, 120, 190, 180)
    a = analyze(_hand_town(town_frames, rng, plant_gap=field))
    c = cleaned_grids(a)
    assert list(c["grid_id"]) == list(a.town.grids["grid_id"])
    assert bool(shapely.coverage_is_valid(np.asarray(c.geometry.values)))
    # the real gap stays a gap (a hole in the grids); every sliver between grids is gone
    holes = coverage.partition_defects(c, id_column="grid_id", tolerance_m=0)
    gap = a.findings[a.findings["kind"] == "area_gap"]
    assert len(holes) == 1
    assert holes["area_m2"].iloc[0] == pytest.approx(gap["measure"].iloc[0], rel=0.02)
    real = coverage.partition_defects(c, extent=a.town.extent, id_column="grid_id", tolerance_m=2.0)
    assert len(real[~real["sliver"]]) == 1
    assert np.allclose(c["area_change_m2"], c["cleaned_area_m2"] - c["area_m2"])
    assert c["area_change_m2"].abs().max() < 400


# --------------------------------------------------------------------------- properties
def _lattice(n: int, size: float) -> list[shapely.Polygon]:
    return [box(i * size, j * size, (i + 1) * size, (j + 1) * size) for i in range(n) for j in range(n)]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), jitter=st.floats(0.05, 0.9))
def test_jitter_below_the_tolerance_changes_no_finding(seed, jitter):
    rng = np.random.default_rng(seed)
    cells = np.array(_lattice(3, 80.0), dtype=object)
    drawn = hand_draw(cells, rng, sigma_m=jitter / 2, max_m=jitter)  # neighbours differ by < 2 x jitter < 2 m
    grids = frame(drawn)
    extent = shapely.union_all(cells)
    d = coverage.partition_defects(grids, extent=extent, id_column="grid_id", tolerance_m=2.0)
    assert (d["sliver"]).all(), d[~d["sliver"]][["kind", "zone_ids", "area_m2"]]
    roads = gpd.GeoDataFrame({"road_id": ["a", "b"]}, geometry=[line((0, 80), (240, 80)), line((40, 0), (40, 240))],
                             crs=CRS)
    assert coverage.uncovered_lines(roads, grids, extent=extent, tolerance_m=2.0).empty


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.floats(4.2, 30.0), where=st.floats(0.2, 0.8))
def test_a_gap_wider_than_twice_the_tolerance_is_always_found(seed, width, where):
    rng = np.random.default_rng(seed)
    cells = np.array(_lattice(3, 80.0), dtype=object)
    hole = box(where * 200, 100, where * 200 + width, 100 + width)
    drawn = hand_draw(cells, rng)
    drawn = shapely.difference(drawn, hole)
    d = coverage.partition_defects(frame(drawn), extent=shapely.union_all(cells), id_column="grid_id",
                                   tolerance_m=2.0)
    real = d[~d["sliver"] & (d["kind"] == "gap")]
    assert len(real) >= 1
    assert real.geometry.iloc[0].intersects(hole.centroid)
    assert real["area_m2"].sum() >= 0.8 * width * width
