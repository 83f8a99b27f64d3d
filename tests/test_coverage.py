"""Tests of gisgrid.geometry.coverage: hand-computed fixtures and properties against shapely."""

from __future__ import annotations

import os

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely import LineString, MultiPolygon, Point, Polygon, box

from gisgrid import CRSError, InputError, SchemaError
from gisgrid import settings as gg_settings
from gisgrid.geometry import coverage as cov
from gisgrid.geometry.coverage import partition_defects, points_in_zones, uncovered_lines, union_zones

CRS = "EPSG:4549"

@pytest.fixture(autouse=True)
def _exact_mode(monkeypatch):
    """These tests pin the exact engine (tolerance 0): test_tolerance.py covers the digitising tolerance."""
    monkeypatch.setattr(gg_settings, "tolerance_m", 0.0)



def zones_frame(geoms, ids=None, **kw) -> gpd.GeoDataFrame:
    ids = ids if ids is not None else [f"z{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"zid": ids}, geometry=list(geoms), crs=kw.pop("crs", CRS), **kw)


def lines_frame(geoms, **kw) -> gpd.GeoDataFrame:
    n = len(geoms)
    data = {"road_id": [f"r{i}" for i in range(n)], "road_class": ["lane"] * n}
    return gpd.GeoDataFrame(data, geometry=list(geoms), crs=kw.pop("crs", CRS), **kw)


@pytest.fixture
def ring_of_eight() -> gpd.GeoDataFrame:
    """3 x 3 squares of 10 m, the centre one missing: an interior 100 m2 hole."""
    cells = [box(10 * i, 10 * j, 10 * i + 10, 10 * j + 10) for j in range(3) for i in range(3)]
    del cells[4]
    labels = [0, 1, 2, 3, 5, 6, 7, 8]
    return zones_frame(cells, ids=[f"c{i}" for i in labels], index=labels)


def lengths_by_line(result: gpd.GeoDataFrame, index: pd.Index) -> np.ndarray:
    return result.groupby(level=0)["length_m"].sum().reindex(index, fill_value=0.0).to_numpy()


# --------------------------------------------------------------------------- partition_defects


def test_interior_gap_exact(ring_of_eight):
    out = partition_defects(ring_of_eight)
    assert list(out["kind"]) == ["gap"]
    row = out.iloc[0]
    assert row["area_m2"] == pytest.approx(100.0, abs=1e-9)
    assert row["n_zones"] == 0
    assert not row["sliver"]
    assert row["geometry"].normalize().equals_exact(box(10, 10, 20, 20).normalize(), 1e-9)
    # every neighbour touches the hole (the corner ones at a point)
    assert row["zone_ids"] == ("0", "1", "2", "3", "5", "6", "7", "8")


def test_gaps_within_extent(ring_of_eight):
    extent = box(-5, -5, 35, 35)
    out = partition_defects(ring_of_eight, extent=extent)
    gaps = out[out["kind"] == "gap"]
    assert sorted(gaps["area_m2"].round(9)) == [100.0, 700.0]
    assert gaps["area_m2"].sum() + union_zones(ring_of_eight).area == pytest.approx(extent.area)


def test_overlap_exact_with_ids():
    zones = zones_frame([box(0, 0, 10, 10), box(5, 0, 15, 10), box(20, 0, 30, 10)], ids=["a", "b", "c"])
    out = partition_defects(zones, id_column="zid")
    assert list(out["kind"]) == ["overlap"]
    row = out.iloc[0]
    assert row["area_m2"] == pytest.approx(50.0)
    assert row["zone_ids"] == ("a", "b")
    assert row["n_zones"] == 2
    assert row["geometry"].normalize().equals_exact(box(5, 0, 10, 10).normalize(), 1e-9)


def test_triple_overlap_is_its_own_piece():
    zones = zones_frame([box(0, 0, 10, 10), box(5, 0, 15, 10), box(5, 0, 10, 5)], ids=["a", "b", "c"])
    out = partition_defects(zones, id_column="zid")
    out.index = out["zone_ids"].map(",".join)
    assert set(out["zone_ids"]) == {("a", "b"), ("a", "b", "c")}
    assert out.loc["a,b", "area_m2"] == pytest.approx(25.0)
    assert out.loc["a,b,c", "area_m2"] == pytest.approx(25.0)
    assert out.loc["a,b,c", "n_zones"] == 3
    assert (out["kind"] == "overlap").all()


def test_containment_and_duplicates_are_overlaps():
    # "overlaps" as a DE-9IM predicate misses both of these
    zones = zones_frame([box(0, 0, 10, 10), box(2, 2, 4, 4), box(20, 0, 30, 10), box(20, 0, 30, 10)])
    out = partition_defects(zones, id_column="zid")
    out.index = out["zone_ids"].map(",".join)
    assert out.loc["z0,z1", "area_m2"] == pytest.approx(4.0)
    assert out.loc["z2,z3", "area_m2"] == pytest.approx(100.0)


def test_overlap_clipped_to_extent_and_index_ids():
    zones = zones_frame([box(0, 0, 10, 10), box(5, 0, 15, 10)], index=[7, 3])
    out = partition_defects(zones, extent=box(0, 0, 15, 5))
    over = out[out["kind"] == "overlap"]
    assert list(over["zone_ids"]) == [("3", "7")]
    assert over["area_m2"].sum() == pytest.approx(25.0)
    assert (out["kind"] == "overlap").all()  # the extent is fully covered


def test_sliver_flag_and_threshold():
    zones = zones_frame([box(0, 0, 10, 10), box(9.95, 0, 20, 10)])  # 0.5 m2 overlap
    out = partition_defects(zones)
    assert out["area_m2"].iloc[0] == pytest.approx(0.5)
    assert bool(out["sliver"].iloc[0])
    assert not bool(partition_defects(zones, min_area_m2=0.1)["sliver"].iloc[0])


def test_partition_clean_coverage_is_empty_with_columns():
    zones = zones_frame([box(0, 0, 10, 10), box(10, 0, 20, 10)])
    out = partition_defects(zones)
    assert out.empty
    assert list(out.columns) == ["kind", "zone_ids", "n_zones", "area_m2", "sliver", "split_id", "geometry"]
    assert out.crs == zones.crs


def test_partition_no_zones():
    empty = zones_frame([])
    assert partition_defects(empty).empty
    out = partition_defects(empty, extent=box(0, 0, 2, 3))
    assert list(out["kind"]) == ["gap"]
    assert out["area_m2"].iloc[0] == pytest.approx(6.0)
    assert out["zone_ids"].iloc[0] == ()


def test_touching_holes_and_multipolygons():
    shell = [(0, 0), (30, 0), (30, 30), (0, 30)]
    holes = [[(5, 5), (15, 5), (15, 15), (5, 15)], [(15, 15), (25, 15), (25, 25), (15, 25)]]
    holed = Polygon(shell, holes)
    island = MultiPolygon([box(6, 6, 8, 8), box(40, 0, 50, 10)])
    zones = zones_frame([holed, island])
    out = partition_defects(zones)
    gaps = out[out["kind"] == "gap"]
    assert gaps["area_m2"].sum() == pytest.approx(200.0 - 4.0)
    assert (out["kind"] == "gap").all()


def test_partition_missing_id_column():
    with pytest.raises(SchemaError, match="no column"):
        partition_defects(zones_frame([box(0, 0, 1, 1)]), id_column="grid_id")


# --------------------------------------------------------------------------- uncovered_lines


def test_road_crossing_gap_exact(ring_of_eight):
    roads = lines_frame([LineString([(5, 15), (25, 15)])])
    out = uncovered_lines(roads, ring_of_eight)
    assert len(out) == 1
    assert out["length_m"].iloc[0] == pytest.approx(10.0, abs=1e-12)
    assert out.geometry.iloc[0].normalize().equals_exact(LineString([(10, 15), (20, 15)]).normalize(), 1e-12)


def test_road_on_shared_edge_is_covered():
    zones = zones_frame([box(0, 0, 10, 10), box(10, 0, 20, 10)])
    roads = lines_frame([LineString([(10, 0), (10, 10)]), LineString([(10, 10), (10, 4), (10, 7)])])
    assert uncovered_lines(roads, zones, tolerance_m=0).empty


def test_road_on_edge_of_the_hole_is_covered(ring_of_eight):
    roads = lines_frame([LineString([(10, 10), (20, 10), (20, 20)])])
    assert uncovered_lines(roads, ring_of_eight, tolerance_m=0).empty


def test_road_along_outer_edge():
    zones = zones_frame([box(0, 0, 10, 10), box(10, 0, 20, 10)])
    along = LineString([(0, 0), (20, 0)])
    beyond = LineString([(-5, 0), (25, 0)])
    out = uncovered_lines(lines_frame([along, beyond]), zones, tolerance_m=0)
    assert list(out.index) == [1, 1]
    assert out["length_m"].sum() == pytest.approx(10.0)


def test_lines_with_no_zones():
    roads = lines_frame([LineString([(0, 0), (3, 4)]), LineString([(0, 0), (0, 2), (0, 1)])])
    out = uncovered_lines(roads, zones_frame([]))
    # the self-overlapping line is dissolved, as shapely's difference does
    assert out["length_m"].tolist() == pytest.approx([5.0, 2.0])


def test_empty_inputs_keep_columns():
    zones = zones_frame([box(0, 0, 1, 1)])
    roads = lines_frame([])
    out = uncovered_lines(roads, zones)
    assert out.empty
    assert list(out.columns) == ["road_id", "road_class", "geometry", "length_m"]
    covered = uncovered_lines(lines_frame([LineString([(0.2, 0.2), (0.8, 0.8)])]), zones)
    assert covered.empty
    assert list(covered.columns) == ["road_id", "road_class", "geometry", "length_m"]
    assert covered.crs == zones.crs


def test_none_and_empty_lines_are_skipped():
    roads = lines_frame([None, LineString(), LineString([(0, 0), (1, 0)])])
    out = uncovered_lines(roads, zones_frame([box(5, 5, 6, 6)]))
    assert list(out.index) == [2]


def test_index_and_columns_kept_pieces_repeated(ring_of_eight):
    zig = LineString([(15, 5), (15, 25), (35, 25)])  # crosses the hole, then leaves the zones
    inside = LineString([(1, 1), (2, 2)])
    roads = lines_frame([zig, inside], index=pd.Index(["x", "y"], name="rid"))
    roads["speed"] = [30, 50]
    before = roads.copy()
    out = uncovered_lines(roads, ring_of_eight)
    assert list(out.index) == ["x", "x"]
    assert out.index.name == "rid"
    assert list(out.columns) == [*roads.columns, "length_m"]
    assert sorted(out["length_m"].round(9)) == [5.0, 10.0]
    assert (out["road_id"] == "r0").all()
    assert (out["speed"] == 30).all()
    pd.testing.assert_frame_equal(roads, before)  # input untouched


def test_contiguous_pieces_are_merged():
    # two holes touching at a corner: a road through the corner is one piece
    zones = zones_frame([Polygon([(0, 0), (30, 0), (30, 30), (0, 30)], [
        [(5, 5), (15, 5), (15, 15), (5, 15)], [(15, 15), (25, 15), (25, 25), (15, 25)]])])
    roads = lines_frame([LineString([(5, 5), (25, 25)])])
    out = uncovered_lines(roads, zones)
    assert len(out) == 1
    assert out["length_m"].iloc[0] == pytest.approx(np.hypot(20, 20))
    assert out.geometry.iloc[0].geom_type == "LineString"


def test_extent_clips_the_result(ring_of_eight):
    roads = lines_frame([LineString([(15, 15), (50, 15)])])
    out = uncovered_lines(roads, ring_of_eight, extent=box(0, 0, 40, 40))
    assert out["length_m"].sum() == pytest.approx(5.0 + 10.0)
    extent_frame = gpd.GeoDataFrame(geometry=[box(0, 0, 18, 40)], crs=CRS)
    out = uncovered_lines(roads, ring_of_eight, extent=extent_frame)
    assert out["length_m"].sum() == pytest.approx(3.0)
    assert uncovered_lines(roads, ring_of_eight, extent=box(100, 100, 101, 101)).empty


def test_road_along_extent_boundary_outside_zones_is_uncovered():
    zones = zones_frame([box(0, 0, 10, 10)])
    roads = lines_frame([LineString([(10, 0), (20, 0)])])
    out = uncovered_lines(roads, zones, extent=box(0, 0, 20, 10))
    assert out["length_m"].sum() == pytest.approx(10.0)


def test_road_on_town_boundary_in_a_sliver_at_real_coordinates():
    # grids stop 5 cm short of the town boundary; a road runs exactly along the
    # boundary and crosses one grid that overshoots it. The plain shapely
    # expression (road - union) & town drops whole pieces here, because the
    # computed nodes are a few ulps off the boundary; the extent is closed.
    x0, y0 = 500_000.0, 3_550_000.0
    town = Polygon([(x0, y0), (x0 + 300, y0 + 110), (x0 + 300, y0 + 300), (x0, y0 + 300)])
    over = box(x0 + 37.3, y0 + 37.3 * 110 / 300 - 5, x0 + 47.3, y0 + 37.3 * 110 / 300 + 10)
    zones = zones_frame([town.buffer(-0.05, join_style="mitre"), over])
    road = LineString([(x0, y0), (x0 + 300, y0 + 110)])
    out = uncovered_lines(lines_frame([road]), zones, extent=town)
    assert out["length_m"].sum() == pytest.approx(road.length - road.intersection(over).length, abs=1e-6)
    assert len(out) == 2


def test_road_on_grid_edge_next_to_an_overlap_is_covered():
    # From a synthetic county: the road runs along two edges of grid "b"; grid
    # "a" overlaps "b" and crosses one of those edges. union_all(a, b) puts a
    # computed node ~1e-11 m off that edge, and road.difference(union) reports
    # 69.4 m of the road as uncovered. The road is on b's edge: covered.
    a = shapely.from_wkt(
        "POLYGON ((490091.4178766078 3379041.2056904747, 490317.03902716836 3378982.1021262323, "
        "490137.6726535349 3378846.3042641887, 490063.98812413594 3378897.552959266, "
        "490091.4178766078 3379041.2056904747))"
    )
    b = shapely.from_wkt(
        "POLYGON ((490330.8963874207 3379264.382446381, 490344.19431384956 3379240.2723802635, "
        "490368.67530561966 3379024.9586462486, 490310.3033483196 3378980.7653738754, "
        "490093.76262961014 3379037.490234322, 490082.0786715865 3379045.4996657996, "
        "490138.0288952086 3379171.587225616, 490174.9839519331 3379195.3617582936, "
        "490330.8963874207 3379264.382446381))"
    )
    road = shapely.from_wkt(
        "LINESTRING (490344.19431384956 3379240.2723802635, 490368.67530561966 3379024.9586462486, "
        "490310.3033483196 3378980.7653738754)"
    )
    zones = zones_frame([a, b])
    assert uncovered_lines(lines_frame([road]), zones, tolerance_m=0).empty
    # a genuinely uncovered continuation of the road is still reported
    longer = LineString([*road.coords, (490300.0, 3378900.0)])
    out = uncovered_lines(lines_frame([longer]), zones, tolerance_m=0)
    expected = LineString([(490310.3033483196, 3378980.7653738754), (490300.0, 3378900.0)]).difference(a).length
    assert out["length_m"].sum() == pytest.approx(expected, abs=1e-6)


def test_tolerance_absorbs_only_what_lies_within_it_of_the_zones():
    zones = zones_frame([box(0, 0, 10, 10), box(10.01, 0, 20, 10)])  # 1 cm hairline gap
    roads = lines_frame([
        LineString([(5, 5), (15, 5)]),  # crosses the hairline: 1 cm of noise
        LineString([(19.7, 5), (20.3, 5)]),  # pokes 0.3 m out of the zones: within the tolerance
        LineString([(9, 20), (9.4, 20)]),  # short but far from every zone: kept
    ])
    out = uncovered_lines(roads, zones, tolerance_m=2.0)
    assert sorted(out.index) == [2]
    assert out["length_m"].to_numpy() == pytest.approx([0.4])
    raw = uncovered_lines(roads, zones)  # exact mode (this module's default)
    assert lengths_by_line(raw, roads.index) == pytest.approx([0.01, 0.3, 0.4])
    tight = uncovered_lines(roads, zones, tolerance_m=0.4)  # 0.3 m out is more than half of 0.4 m
    assert sorted(tight.index) == [1, 2]


def test_fallback_for_big_pieces_matches(ring_of_eight, monkeypatch):
    roads = lines_frame([LineString([(5, 15), (40, 15), (40, -5), (15, -5), (15, 15)])])
    expected = uncovered_lines(roads, ring_of_eight)
    monkeypatch.setattr(cov, "_BIG_PIECE_VERTICES", 0)
    got = uncovered_lines(roads, ring_of_eight)
    assert got["length_m"].sum() == pytest.approx(expected["length_m"].sum())
    assert len(got) == len(expected)


def test_bad_tolerance_and_types():
    zones = zones_frame([box(0, 0, 1, 1)])
    with pytest.raises(InputError):
        uncovered_lines(lines_frame([LineString([(0, 0), (1, 1)])]), zones, tolerance_m=-1)
    with pytest.raises(InputError, match="LineString"):
        uncovered_lines(lines_frame([Point(0, 0)]), zones)
    with pytest.raises(InputError, match="Polygon"):
        uncovered_lines(lines_frame([LineString([(0, 0), (1, 1)])]), lines_frame([LineString([(0, 0), (1, 1)])]))
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(InputError, match="invalid"):
        uncovered_lines(lines_frame([LineString([(0, 0), (1, 1)])]), zones_frame([bowtie]))


# --------------------------------------------------------------------------- points_in_zones


def test_points_in_zones_edges_and_overlaps():
    zones = zones_frame([box(0, 0, 10, 10), box(10, 0, 20, 10), box(15, 0, 25, 10)], ids=[3, 1, 2])
    pts = gpd.GeoDataFrame(
        geometry=[Point(5, 5), Point(10, 5), Point(0, 0), Point(17, 5), Point(50, 50), None],
        index=list("abcdef"),
        crs=CRS,
    )
    out = points_in_zones(pts, zones, id_column="zid")
    assert list(out.index) == list("abcdef")
    assert out.tolist() == [3, ("1", "3"), 3, ("1", "2"), None, None]
    assert out.name == "zid"
    by_index = points_in_zones(pts, zones)
    assert by_index["a"] == 0
    assert by_index["b"] == ("0", "1")


def test_points_in_no_zones():
    pts = gpd.GeoDataFrame(geometry=[Point(0, 0)], crs=CRS)
    assert points_in_zones(pts, zones_frame([])).tolist() == [None]


# --------------------------------------------------------------------------- union_zones


def test_union_zones_paths(caplog):
    caplog.set_level("DEBUG", logger="gisgrid.geometry.coverage")
    valid = [box(0, 0, 1, 1), box(1, 0, 2, 1)]
    assert union_zones(valid).area == pytest.approx(2.0)
    assert "valid coverage" in caplog.text
    overlapping = gpd.GeoSeries([box(0, 0, 1, 1), box(0.5, 0, 2, 1), box(2, 0, 3, 1)])
    assert union_zones(overlapping).area == pytest.approx(3.0)
    assert "invalid coverage edges" in caplog.text
    assert union_zones([]).is_empty
    assert union_zones(gpd.GeoSeries([None, box(0, 0, 1, 1)])).area == pytest.approx(1.0)


# --------------------------------------------------------------------------- CRS


def test_crs_errors():
    zones = zones_frame([box(0, 0, 1, 1)])
    roads = lines_frame([LineString([(0, 0), (1, 1)])])
    with pytest.raises(CRSError, match="to_crs"):
        uncovered_lines(roads.to_crs("EPSG:4490"), zones.to_crs("EPSG:4490"))
    with pytest.raises(ValueError, match="to_crs"):  # CRSError is a ValueError
        partition_defects(zones.set_crs("EPSG:4326", allow_override=True))
    with pytest.raises(CRSError, match=r"EPSG|CGCS2000"):
        uncovered_lines(roads, zones.set_crs("EPSG:4547", allow_override=True))
    with pytest.raises(CRSError):
        uncovered_lines(roads, zones.set_crs(None, allow_override=True))
    with pytest.raises(CRSError):
        points_in_zones(gpd.GeoDataFrame(geometry=[Point(0, 0)], crs="EPSG:4547"), zones)
    bad_extent = gpd.GeoSeries([box(0, 0, 1, 1)], crs="EPSG:4547")
    with pytest.raises(CRSError):
        uncovered_lines(roads, zones, extent=bad_extent)
    with pytest.raises(CRSError):
        partition_defects(zones, extent=bad_extent)
    # no CRS on either side is accepted
    assert uncovered_lines(roads.set_crs(None, allow_override=True), zones.set_crs(None, allow_override=True)).empty


# --------------------------------------------------------------------------- properties

# integers (exact shared edges) or messy decimals recorded to the micrometre, as surveyed
# coordinates are (never sub-ulp offsets such as 4e-23, which no data set holds)
coord = st.integers(0, 40).map(float) | st.floats(0, 40, allow_nan=False).map(lambda v: round(v, 6))


@st.composite
def zone_geoms(draw) -> list:
    """Random messy zones: grid cells, boxes, triangles, holed boxes, multi-parts."""
    zones = []
    if draw(st.booleans()):  # part of a regular partition (shared edges)
        size = draw(st.sampled_from([5.0, 8.0, 10.0]))
        cells = [box(x, y, x + size, y + size) for x in np.arange(0, 40, size) for y in np.arange(0, 40, size)]
        keep = draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
        zones += [c for c, k in zip(cells, keep, strict=True) if k]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["box", "tri", "holed", "multi"]))
        x0, y0, x1, y1 = (draw(coord) for _ in range(4))
        if kind == "tri":
            geom = Polygon([(x0, y0), (x1, y1), (draw(coord), draw(coord))])
        else:
            geom = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            if kind == "holed":
                geom = geom.difference(geom.buffer(-1.0, join_style="mitre"))
            elif kind == "multi":
                geom = MultiPolygon([geom, box(x1 + 45, y1, x1 + 47, y1 + 3)])
        if geom.is_valid and geom.area > 0 and geom.geom_type in ("Polygon", "MultiPolygon"):
            zones.append(geom)
    return zones


@st.composite
def line_geoms(draw, zones: list) -> list:
    """Random polylines, some along zone edges, some doubling back on themselves."""
    vertices = shapely.get_coordinates(zones) if zones else np.zeros((0, 2))
    point = st.tuples(coord, coord)
    if len(vertices):
        point = point | st.sampled_from([tuple(v) for v in vertices])
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        pts = draw(st.lists(point, min_size=2, max_size=5))
        if draw(st.booleans()) and len(pts) >= 2:  # OSM-style back-tracking
            pts = [*pts, pts[-2], pts[-1]]
        line = LineString(pts)
        if line.length > 0:
            lines.append(line)
    if len(lines) >= 2 and draw(st.booleans()):  # a multi-part line
        lines[:2] = [shapely.MultiLineString(lines[:2])]
    return lines


def shifted(geoms: list, offset: tuple[float, float]) -> list:
    """Translate geometries (to realistic Gauss-Kruger magnitudes, where rounding bites)."""
    if offset == (0.0, 0.0) or not geoms:
        return geoms
    moved = shapely.transform(np.array(geoms, dtype=object), lambda xy: xy + np.array(offset))
    # rounding may collapse a thin polygon or a short line: drop what became degenerate
    keep = shapely.is_valid(moved) & ((shapely.area(moved) > 0) | (shapely.length(moved) > 0))
    keep &= (shapely.get_dimensions(moved) == 1) | (shapely.area(moved) > 0)
    return list(moved[keep])


OFFSETS = st.sampled_from([(0.0, 0.0), (500_000.0, 3_550_000.0)])


def reference(lines: list, zones: list, extent=None) -> np.ndarray:
    union = shapely.union_all(zones) if zones else Polygon()
    diff = shapely.difference(np.array(lines, dtype=object), union)
    if extent is not None:
        diff = shapely.intersection(diff, extent)
    return shapely.length(diff)


def sampled(lines: list, zones: list, extent=None, step: float = 1e-3) -> np.ndarray:
    """Brute-force oracle: uncovered length from the midpoints of ``step``-long bits.

    Point predicates only, no overlay, so it does not share the rounding of
    computed nodes that trips ``line.difference(union)``. A midpoint within a
    few ulps of a zone (extent) is in it: closed sets, and the midpoint of a
    bit lying exactly on an edge is itself rounded. Accurate to ~``step`` per
    crossing of a zone edge.
    """
    # dissolve self-overlaps first: a doubled-back stretch of road counts once
    geoms = np.array([shapely.union_all([line]) for line in lines], dtype=object)
    scale = max(np.abs(shapely.total_bounds(geoms)).max(), 1.0)
    eps = 128 * float(np.spacing(scale))
    xy, idx = shapely.get_coordinates(shapely.segmentize(geoms, step), return_index=True)
    same = idx[1:] == idx[:-1]
    a, b, owner = xy[:-1][same], xy[1:][same], idx[:-1][same]
    mids = shapely.points((a + b) / 2)
    outside = np.ones(mids.size, dtype=bool)
    if zones:
        hit, _ = shapely.STRtree(zones).query(mids, predicate="dwithin", distance=eps)
        outside[hit] = False
    if extent is not None:
        outside &= shapely.dwithin(extent, mids, eps)
    return np.bincount(owner[outside], weights=np.hypot(*(b - a).T)[outside], minlength=geoms.size)


def assert_uncovered(got: np.ndarray, expected: np.ndarray, lines: list, zones: list, extent=None) -> None:
    """``got`` equals the shapely reference per line to 1 mm, or, where the
    reference itself is off (rounded nodes on an edge a line runs along), the
    brute-force oracle to 2 cm; and equal in total to 1e-6 elsewhere."""
    off = np.abs(got - expected) > 1e-3
    if off.any():
        oracle = sampled([lines[i] for i in np.flatnonzero(off)], zones, extent)
        np.testing.assert_allclose(got[off], oracle, rtol=0, atol=0.02)
    # abs: crossing the extent's edge may add a stub of ~3e-8 m / sin(angle) (on-edge tolerance)
    assert got[~off].sum() == pytest.approx(expected[~off].sum(), rel=1e-6, abs=1e-5)


PROPERTY = settings(
    max_examples=int(os.environ.get("GISGRID_TEST_EXAMPLES", "50")),  # raise it to hunt for counter-examples
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(data=st.data())
def test_property_equals_shapely_reference(data):
    zones = data.draw(zone_geoms())
    lines = data.draw(line_geoms(zones))
    assume(lines)
    extent = None
    if data.draw(st.booleans()):
        a, b = sorted(data.draw(st.tuples(coord, coord))), sorted(data.draw(st.tuples(coord, coord)))
        extent = box(a[0], b[0], a[1] + 1, b[1] + 1)
    offset = data.draw(OFFSETS)
    zones, lines = shifted(zones, offset), shifted(lines, offset)
    extent = shifted([extent], offset)[0] if extent is not None else None
    roads, grids = lines_frame(lines), zones_frame(zones)
    expected = reference(lines, zones, extent)
    for big in (cov._BIG_PIECE_VERTICES, 0):  # direct complement pieces, then the fallback
        old, cov._BIG_PIECE_VERTICES = cov._BIG_PIECE_VERTICES, big
        try:
            out = uncovered_lines(roads, grids, extent=extent, tolerance_m=0)
        finally:
            cov._BIG_PIECE_VERTICES = old
        got = lengths_by_line(out, roads.index)
        assert_uncovered(got, expected, lines, zones, extent)
        assert (shapely.get_type_id(out.geometry.values) == 1).all()  # LineStrings only
        assert (out["length_m"] > 0).all()


@PROPERTY
@given(data=st.data())
def test_property_conservation_and_noise_rule(data):
    zones = data.draw(zone_geoms())
    lines = data.draw(line_geoms(zones))
    assume(lines)
    offset = data.draw(OFFSETS)
    zones, lines = shifted(zones, offset), shifted(lines, offset)
    extent = shifted([box(5, 5, 35, 35)], offset)[0]
    roads, grids = lines_frame(lines), zones_frame(zones)
    raw = uncovered_lines(roads, grids, extent=extent, tolerance_m=0)
    geoms = np.array(lines, dtype=object)
    total = shapely.length(shapely.intersection(geoms, extent))
    # clip last, as uncovered_lines does: clipping first moves the cut ends off the zone edges
    covered = 0.0
    if zones:
        covered = shapely.length(shapely.intersection(shapely.intersection(geoms, shapely.union_all(zones)), extent))
    assert_uncovered(lengths_by_line(raw, roads.index), total - covered, lines, zones, extent)
    # default tolerance: a subset of the raw pieces; what is dropped is short
    default = uncovered_lines(roads, grids, extent=extent)
    assert len(default) <= len(raw)
    dropped = lengths_by_line(raw, roads.index) - lengths_by_line(default, roads.index)
    assert (dropped >= -1e-9).all()
    assert dropped.sum() <= 0.5 * (len(raw) - len(default)) + 1e-9


@PROPERTY
@given(zones=zone_geoms(), use_extent=st.booleans(), offset=OFFSETS)
def test_property_partition_accounting(zones, use_extent, offset):
    zones = shifted(zones, offset)
    grids = zones_frame(zones)
    extent = shifted([box(3, 3, 37, 37)], offset)[0] if use_extent else None
    out = partition_defects(grids, extent=extent)
    union = shapely.union_all(zones) if zones else Polygon()
    if extent is None:
        shells = shapely.polygons(shapely.get_exterior_ring(shapely.get_parts(union)))
        region = shapely.union_all(shells) if len(shells) else Polygon()
    else:
        region = extent
    gaps = out.loc[out["kind"] == "gap", "area_m2"].sum()
    assert gaps + shapely.intersection(union, region).area == pytest.approx(region.area, rel=1e-6, abs=1e-6)
    over = out[out["kind"] == "overlap"]
    multiple = (over["area_m2"] * (over["n_zones"] - 1)).sum()
    zone_area = shapely.area(shapely.intersection(np.array(zones, dtype=object), region)).sum() if zones else 0.0
    excess = zone_area - shapely.intersection(union, region).area
    assert multiple == pytest.approx(excess, rel=1e-6, abs=1e-6)
    assert (over["n_zones"] >= 2).all()
    assert (over["zone_ids"].map(len) == over["n_zones"]).all()
    assert (out["area_m2"] > 0).all()


@PROPERTY
@given(data=st.data())
def test_property_points_match_covers(data):
    zones = data.draw(zone_geoms())
    pts = data.draw(st.lists(st.tuples(coord, coord), min_size=1, max_size=10))
    grids = zones_frame(zones)
    points = gpd.GeoDataFrame(geometry=[Point(p) for p in pts], crs=CRS)
    out = points_in_zones(points, grids, id_column="zid")
    for i, p in enumerate(points.geometry):
        ids = sorted(zid for zid, z in zip(grids["zid"], zones, strict=True) if z.covers(p))
        expected = None if not ids else ids[0] if len(ids) == 1 else tuple(ids)
        assert out.iloc[i] == expected
