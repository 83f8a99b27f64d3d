"""Tests of the synthetic demo town: exact partition, planted defects and nothing else.

Every check here is plain shapely/pandas, independent of the coverage engine.
"""

from __future__ import annotations

import sys
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gisgrid import ConfigError
from gisgrid import demo as demo_module
from gisgrid.demo import DemoData, make_demo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METRIC = "EPSG:4549"
DEFAULT_SEED = 20261129


@pytest.fixture(scope="module", params=[DEFAULT_SEED, 7], ids=["default-seed", "seed-7"])
def seed(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="module")
def town(seed: int) -> DemoData:
    """The exact partition: these tests pin the generator's geometry (test_hand_drawn_* the drawing)."""
    return make_demo(seed=seed, hand_drawn=False)


@pytest.fixture(scope="module")
def metric(town: DemoData) -> dict[str, gpd.GeoDataFrame]:
    """The delivered layers back in metres, with invalid grids repaired as a loader would."""
    out = {k: v.to_crs(METRIC) for k, v in town.layers.items()}
    geoms = out["grids"].geometry.values
    fixed = [g if g.is_valid else shapely.make_valid(g, method="structure") for g in geoms]
    out["grids"] = out["grids"].set_geometry(fixed, crs=METRIC)
    return out


def _truth(town: DemoData, kind: str) -> gpd.GeoDataFrame:
    return town.truth[town.truth["kind"] == kind]


# --------------------------------------------------------------------------- API and schema
def test_unknown_scale_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"county.*town|town.*county"):
        make_demo(scale="province")
    with pytest.raises(ValueError, match="scale"):
        make_demo(scale="")


def test_layers_have_canonical_columns_and_crs(town: DemoData) -> None:
    assert town.name == "东社镇"
    assert town.analysis_crs == "EPSG:4549"
    assert list(town.layers) == ["boundary", "villages", "grids", "roads", "rivers", "pois"]
    assert list(town.rosters) == ["grid_staff", "river_chiefs"]
    columns = {
        "boundary": ["name", "town_id"],
        "villages": ["village_id", "name", "households", "population"],
        "grids": ["grid_id", "village_id", "name", "households"],
        "roads": ["road_id", "road_class", "name"],
        "rivers": ["river_id", "name", "level", "width_m"],
        "pois": ["poi_id", "kind", "name"],
    }
    types = {"boundary": {"Polygon"}, "villages": {"Polygon"}, "grids": {"Polygon"},
             "roads": {"LineString"}, "rivers": {"LineString"}, "pois": {"Point"}}
    for key, frame in town.layers.items():
        assert frame.crs.to_epsg() == 4490, key
        assert [c for c in frame.columns if c != "geometry"] == columns[key], key
        assert set(frame.geom_type) == types[key], key
        id_col = columns[key][0]
        assert frame[id_col].is_unique, key
    assert list(town.rosters["grid_staff"].columns) == ["person_id", "name", "phone", "role",
                                                        "grid_id"]
    assert list(town.rosters["river_chiefs"].columns) == ["person_id", "name", "phone", "level",
                                                          "river_id", "village_id"]
    assert town.truth.crs.to_epsg() == 4549
    assert list(town.truth.columns) == ["kind", "village_id", "grid_id", "road_id", "poi_id",
                                        "river_id", "measure", "unit", "note", "geometry"]


def test_ids_names_and_values(town: DemoData) -> None:
    L, R = town.layers, town.rosters
    assert L["villages"]["village_id"].str.fullmatch(r"V\d{2}").all()
    assert L["villages"]["name"].str.contains(r"(?:村|社区)$").all()
    assert L["grids"]["grid_id"].str.fullmatch(r"V\d{2}-G\d{2}").all()
    assert (L["grids"]["grid_id"].str[:3] == L["grids"]["village_id"]).all()
    assert L["grids"]["name"].str.fullmatch(r".+(村|社区)第\d+网格").all()
    assert L["roads"]["road_id"].str.fullmatch(r"R\d{4}").all()
    assert set(L["roads"]["road_class"]) == {"main", "secondary", "village", "lane"}
    assert L["roads"]["name"].str.contains(r"(?:路|巷)$").all()
    assert L["rivers"]["river_id"].str.fullmatch(r"H\d{2}").all()
    assert L["rivers"]["name"].str.contains(r"(?:河|港)$").all()
    assert set(L["rivers"]["level"]) <= {"town", "village"}
    assert "town" in set(L["rivers"]["level"])
    assert L["rivers"]["width_m"].between(8, 40).all()
    assert L["pois"]["poi_id"].str.fullmatch(r"P\d{3}").all()
    assert set(L["pois"]["kind"]) == {"school", "kindergarten", "market", "clinic",
                                      "water_intake", "town_entrance"}
    suffix = {"school": "小学", "kindergarten": "幼儿园", "market": "农贸市场", "clinic": "卫生室",
              "water_intake": "取水口", "town_entrance": "镇入口"}
    for kind, name in zip(L["pois"]["kind"], L["pois"]["name"], strict=True):
        assert name.endswith(suffix[kind])
    for roster, prefix in (("grid_staff", r"S\d{4}"), ("river_chiefs", r"C\d{3}")):
        frame = R[roster]
        assert frame["person_id"].str.fullmatch(prefix).all()
        assert frame["person_id"].is_unique
        assert frame["phone"].str.fullmatch(r"1[3-9]\d{9}").all()
        assert frame["name"].str.fullmatch(r"[\u4e00-\u9fff]{2,3}").all()
        # the office exports CSV in GBK
        frame.to_csv(index=False).encode("gbk")
    assert set(R["grid_staff"]["role"]) == {"grid_chief", "grid_member"}
    chiefs = R["river_chiefs"]
    assert set(chiefs["level"]) == {"county", "town", "village"}
    village_level = chiefs["level"] == "village"
    assert chiefs.loc[village_level, "village_id"].notna().all()
    assert chiefs.loc[~village_level, "village_id"].isna().all()


def test_town_scale_counts(town: DemoData) -> None:
    L = town.layers
    assert 15 <= len(L["villages"]) <= 30
    assert 150 <= len(L["grids"]) <= 250
    assert 3000 <= len(L["roads"]) <= 6000
    assert 4 <= len(L["rivers"]) <= 10
    assert len(L["pois"]) >= 30
    assert (L["roads"]["road_class"] == "main").sum() >= 30  # main roads split into segments
    x0, y0, x1, y1 = town.layers["boundary"].to_crs(METRIC).total_bounds
    assert 8_000 <= x1 - x0 <= 12_000
    assert 6_500 <= y1 - y0 <= 9_500
    lon, lat = town.layers["boundary"].union_all().centroid.coords[0]
    assert abs(lon - 121.2) < 0.05
    assert abs(lat - 32.1) < 0.05


def test_same_seed_same_bytes_other_seed_other_town() -> None:
    a, b = make_demo(), make_demo()
    for key in a.layers:
        pd.testing.assert_frame_equal(a.layers[key].drop(columns="geometry"),
                                      b.layers[key].drop(columns="geometry"))
        assert list(a.layers[key].geometry.to_wkb()) == list(b.layers[key].geometry.to_wkb())
    for key in a.rosters:
        pd.testing.assert_frame_equal(a.rosters[key], b.rosters[key])
    pd.testing.assert_frame_equal(a.truth.drop(columns="geometry"),
                                  b.truth.drop(columns="geometry"))
    assert list(a.truth.geometry.to_wkb()) == list(b.truth.geometry.to_wkb())
    c = make_demo(seed=7)
    assert list(c.layers["grids"].geometry.to_wkb()) != list(a.layers["grids"].geometry.to_wkb())


# --------------------------------------------------------------------------- geometry
def test_villages_are_irregular_and_tile_the_town(town: DemoData,
                                                  metric: dict[str, gpd.GeoDataFrame]) -> None:
    villages = metric["villages"]
    assert (villages.geom_type == "Polygon").all()
    # not boxes: each village has many corners and fills well under its bounding box
    n_vertices = shapely.get_num_coordinates(villages.geometry.values)
    assert (n_vertices >= 8).all()
    fill = villages.area / villages.envelope.area
    assert fill.max() < 0.95
    # villages tile the town exactly
    geoms = np.asarray(town.layers["villages"].to_crs(METRIC).geometry.values)
    boundary = metric["boundary"].geometry.iloc[0]
    assert abs(shapely.area(geoms).sum() - boundary.area) < 1.0
    assert shapely.difference(boundary, shapely.union_all(geoms)).area < 0.01
    # each village's grids add up to the village, give or take the planted gaps/overlaps
    grid_area = metric["grids"].area.groupby(metric["grids"]["village_id"]).sum()
    village_area = villages.set_index("village_id").area
    planted = town.truth[town.truth["kind"].isin(["area_gap", "area_overlap"])]
    sign = np.where(planted["kind"] == "area_gap", -1.0, 1.0)
    expected = village_area.add(
        pd.Series(sign * planted["measure"].to_numpy()).groupby(
            planted["village_id"].to_numpy()).sum(), fill_value=0.0)
    assert (grid_area - expected).abs().max() < 0.1


def test_clean_grids_are_an_exact_coverage_also_after_round_trip(seed: int) -> None:
    built = demo_module._generate("town", seed, hand_drawn=False)
    clean = built.clean_grids
    geoms = np.asarray(clean.geometry.values)
    assert bool(shapely.coverage_is_valid(geoms))
    assert shapely.is_empty(shapely.coverage_invalid_edges(geoms)).all()
    boundary = built.layers["boundary"].geometry.iloc[0]
    union = shapely.coverage_union_all(geoms)
    assert abs(union.area - boundary.area) <= 1e-6 * boundary.area
    assert abs(shapely.area(geoms).sum() - boundary.area) <= 1e-6 * boundary.area
    assert len(boundary.interiors) == 0
    # 4549 -> 4490 -> 4549: only 1e-9-level noise, no gap or overlap above 0.01 m²
    back = clean.to_crs("EPSG:4490").to_crs(METRIC)
    bgeoms = np.asarray(back.geometry.values)
    bunion = shapely.union_all(bgeoms)
    assert shapely.difference(boundary, bunion).area < 0.01
    tree = shapely.STRtree(bgeoms)
    i, j = tree.query(bgeoms, predicate="intersects")
    keep = i < j
    inter = shapely.area(shapely.intersection(bgeoms[i[keep]], bgeoms[j[keep]]))
    assert inter.max() < 0.01


def _gap_parts(metric: dict[str, gpd.GeoDataFrame]) -> np.ndarray:
    boundary = metric["boundary"].geometry.iloc[0]
    union = shapely.union_all(np.asarray(metric["grids"].geometry.values))
    parts = shapely.get_parts(shapely.difference(boundary, union))
    return parts[shapely.area(parts) >= 1.0]


def test_gaps_are_exactly_the_planted_ones(town: DemoData,
                                           metric: dict[str, gpd.GeoDataFrame]) -> None:
    truth = _truth(town, "area_gap")
    assert len(truth) == 2
    assert truth["grid_id"].is_unique
    parts = _gap_parts(metric)
    assert len(parts) == 2
    villages = metric["villages"].set_index("village_id")
    for row in truth.itertuples():
        match = [p for p in parts if p.intersects(row.geometry)]
        assert len(match) == 1
        assert abs(match[0].area - row.measure) < 0.01
        assert abs(row.geometry.area - row.measure) < 1e-6
        assert shapely.symmetric_difference(match[0], row.geometry).area < 0.01
        assert 1_000 <= row.measure <= 10_000  # a chunk, not a sliver
        # inside its village, next to the grid it was cut from
        assert villages.geometry[row.village_id].buffer(0.01).contains(row.geometry)
        grid = metric["grids"].set_index("grid_id").geometry[row.grid_id]
        assert grid.distance(row.geometry) < 0.01
        assert row.unit == "m2"


def test_overlap_is_exactly_the_planted_one(town: DemoData,
                                            metric: dict[str, gpd.GeoDataFrame]) -> None:
    truth = _truth(town, "area_overlap")
    assert len(truth) == 1
    grids = metric["grids"]
    geoms = np.asarray(grids.geometry.values)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    inter = shapely.intersection(geoms[i], geoms[j])
    area = shapely.area(inter)
    big = area >= 1.0
    assert big.sum() == 1
    ids = grids["grid_id"].to_numpy()
    pair = ",".join(sorted([ids[i[big][0]], ids[j[big][0]]]))
    row = truth.iloc[0]
    assert pair == row["grid_id"]
    assert abs(area[big][0] - row["measure"]) < 0.01
    assert shapely.symmetric_difference(inter[big][0], row.geometry).area < 0.01
    assert 1_000 <= row["measure"] <= 10_000
    assert area[~big].sum() < 0.1
    # both grids of the pair are in the truth village
    assert set(grids.loc[grids["grid_id"].isin(pair.split(",")), "village_id"]) == {
        row["village_id"]}


def test_only_the_planted_lane_leaves_the_grids(town: DemoData,
                                                metric: dict[str, gpd.GeoDataFrame]) -> None:
    roads = metric["roads"]
    union = shapely.union_all(np.asarray(metric["grids"].geometry.values))
    outside = shapely.difference(np.asarray(roads.geometry.values), union)
    length = shapely.length(outside)
    bad = length > 0.5
    truth = _truth(town, "road_uncovered")
    assert len(truth) == 1
    row = truth.iloc[0]
    assert list(roads.loc[bad, "road_id"]) == [row["road_id"]]
    assert roads.loc[bad, "road_class"].iloc[0] == "lane"
    assert abs(length[bad][0] - row["measure"]) < 0.01
    assert abs(row.geometry.length - row["measure"]) < 1e-6
    assert shapely.hausdorff_distance(outside[bad][0], row.geometry) < 0.01
    # the lane runs on into grids on both sides of the gap
    lane = roads.loc[bad].geometry.iloc[0]
    assert lane.length > row["measure"] + 50
    # nothing leaves the town (roads are clipped to the boundary)
    boundary = metric["boundary"].geometry.iloc[0]
    assert shapely.length(shapely.difference(np.asarray(roads.geometry.values),
                                             boundary)).max() < 0.01
    # no road at all crosses the gap with the school; the lane's gap has only the lane
    gaps = _truth(town, "area_gap")
    tree = shapely.STRtree(np.asarray(roads.geometry.values))
    for g in gaps.itertuples():
        hits = roads["road_id"].to_numpy()[tree.query(g.geometry, predicate="intersects")]
        assert set(hits) <= {row["road_id"]}
    # no road in the overlap either
    overlap = _truth(town, "area_overlap").geometry.iloc[0]
    assert len(tree.query(overlap, predicate="intersects")) == 0


def test_some_roads_lie_exactly_on_shared_grid_edges(metric: dict[str, gpd.GeoDataFrame]) -> None:
    grids = metric["grids"]
    roads = metric["roads"]
    edges = shapely.get_exterior_ring(np.asarray(grids.geometry.values))
    tree = shapely.STRtree(edges)
    geoms = np.asarray(roads.geometry.values)
    r, e = tree.query(geoms, predicate="covered_by")
    on_two = pd.Series(e).groupby(r).size()
    assert (on_two >= 2).sum() >= 3


def test_pois_inside_one_grid_except_the_planted_school(
    town: DemoData, metric: dict[str, gpd.GeoDataFrame]
) -> None:
    pois = metric["pois"]
    grids = np.asarray(metric["grids"].geometry.values)
    tree = shapely.STRtree(grids)
    p, _ = tree.query(np.asarray(pois.geometry.values), predicate="within")
    n_in = np.bincount(p, minlength=len(pois))
    truth = _truth(town, "poi_uncovered")
    assert len(truth) == 1
    row = truth.iloc[0]
    outside = pois.loc[n_in == 0, "poi_id"].tolist()
    assert outside == [row["poi_id"]]
    assert (n_in <= 1).all()
    poi = pois.set_index("poi_id").loc[row["poi_id"]]
    assert poi["kind"] == "school"
    gap2 = _truth(town, "area_gap").geometry.iloc[1]
    assert gap2.contains(poi.geometry)
    assert row.geometry.distance(poi.geometry) < 0.01
    # town entrances lie on main roads, just inside the boundary
    boundary = metric["boundary"].geometry.iloc[0]
    mains = shapely.union_all(metric["roads"].geometry[metric["roads"]["road_class"] == "main"])
    entrances = pois[pois["kind"] == "town_entrance"]
    assert len(entrances) >= 4
    assert (entrances.distance(mains) < 0.01).all()
    assert (entrances.distance(boundary.exterior) < 100).all()
    # water intakes on rivers
    rivers = shapely.union_all(metric["rivers"].geometry.values)
    intakes = pois[pois["kind"] == "water_intake"]
    assert len(intakes) >= 1
    assert (intakes.distance(rivers) < 0.01).all()


def test_every_grid_staffed_except_the_planted_one(town: DemoData) -> None:
    staff = town.rosters["grid_staff"]
    grids = town.layers["grids"]["grid_id"]
    chiefs = staff[staff["role"] == "grid_chief"].groupby("grid_id").size()
    members = staff[staff["role"] == "grid_member"].groupby("grid_id").size()
    assert set(staff["grid_id"]) == set(grids)
    assert members.reindex(grids, fill_value=0).between(1, 3).all()
    no_chief = sorted(set(grids) - set(chiefs.index))
    truth = _truth(town, "grid_unstaffed")
    assert no_chief == list(truth["grid_id"])
    assert (chiefs == 1).all()
    row = truth.iloc[0]
    assert members[row["grid_id"]] >= 1
    assert (row["measure"], row["unit"]) == (1.0, "count")


def test_every_reach_has_chiefs_except_the_planted_one(
    town: DemoData, metric: dict[str, gpd.GeoDataFrame]
) -> None:
    rivers, villages = metric["rivers"], metric["villages"]
    chiefs = town.rosters["river_chiefs"]
    assert set(chiefs.loc[chiefs["level"] == "town", "river_id"]) == set(rivers["river_id"])
    assert chiefs.loc[chiefs["level"] == "town", "river_id"].is_unique
    tree = shapely.STRtree(np.asarray(villages.geometry.values))
    r, v = tree.query(np.asarray(rivers.geometry.values), predicate="intersects")
    parts = shapely.intersection(rivers.geometry.values[r], villages.geometry.values[v])
    length = shapely.length(parts)
    reaches = pd.DataFrame({"river_id": rivers["river_id"].to_numpy()[r],
                            "village_id": villages["village_id"].to_numpy()[v],
                            "length": length})
    reaches = reaches[reaches["length"] > 0.01]
    # rivers cross several villages
    assert (reaches.groupby("river_id").size() >= 2).all()
    have = set(zip(chiefs.loc[chiefs["level"] == "village", "river_id"],
                   chiefs.loc[chiefs["level"] == "village", "village_id"], strict=True))
    missing = [(a, b) for a, b in zip(reaches["river_id"], reaches["village_id"], strict=True)
               if (a, b) not in have]
    truth = _truth(town, "river_unassigned")
    assert missing == list(zip(truth["river_id"], truth["village_id"], strict=True))
    row = truth.iloc[0]
    indep = reaches[(reaches["river_id"] == row["river_id"])
                    & (reaches["village_id"] == row["village_id"])]["length"].iloc[0]
    assert abs(indep - row["measure"]) < 0.01
    assert row["unit"] == "m"
    # one contiguous reach, so it is one finding however reaches are split
    assert row.geometry.geom_type == "LineString"
    # no village chief for a reach that does not exist
    assert have <= set(zip(reaches["river_id"], reaches["village_id"], strict=True))
    # a county chief for the longest river
    county = chiefs[chiefs["level"] == "county"]
    assert list(county["river_id"]) == [rivers.loc[rivers.length.idxmax(), "river_id"]]


def test_one_invalid_grid_that_repairs_to_the_intended_shape(town: DemoData, seed: int) -> None:
    truth = _truth(town, "input_repaired")
    assert len(truth) == 1
    row = truth.iloc[0]
    grids = town.layers["grids"]
    invalid = grids[~grids.is_valid]
    assert list(invalid["grid_id"]) == [row["grid_id"]]
    # in 4490 it is still invalid; the structure repair gives back the intended grid
    bad = invalid.geometry.iloc[0]
    fixed = shapely.make_valid(bad, method="structure")
    assert fixed.geom_type == "Polygon"
    back = gpd.GeoSeries([fixed], crs="EPSG:4490").to_crs(METRIC).iloc[0]
    assert shapely.symmetric_difference(back, row.geometry).area < 0.01
    # and in metres (as the model repairs it, after reprojection) exactly
    bad_m = gpd.GeoSeries([bad], crs="EPSG:4490").to_crs(METRIC).iloc[0]
    assert not bad_m.is_valid
    fixed_m = shapely.make_valid(bad_m, method="structure")
    assert abs(fixed_m.area - row.geometry.area) < 1e-3
    assert shapely.symmetric_difference(fixed_m, row.geometry).area < 0.01
    built = demo_module._generate("town", seed, hand_drawn=False)
    raw = built.layers["grids"].set_index("grid_id").geometry[row["grid_id"]]
    assert not raw.is_valid
    exact = shapely.make_valid(raw, method="structure")
    assert abs(exact.area - row.geometry.area) < 1e-6
    assert shapely.symmetric_difference(exact, row.geometry).area < 1e-6


def test_truth_rows_are_the_documented_kinds(town: DemoData) -> None:
    counts = town.truth["kind"].value_counts().to_dict()
    assert counts == {"area_gap": 2, "area_overlap": 1, "road_uncovered": 1, "poi_uncovered": 1,
                      "grid_unstaffed": 1, "river_unassigned": 1, "input_repaired": 1}
    assert set(town.truth["unit"]) <= {"m2", "m", "count"}
    assert town.truth["village_id"].notna().all()
    assert (town.truth["measure"] > 0).all()
    assert town.truth.geometry.is_valid.all()
    # defects sit in different grids
    grids = [g for v in town.truth["grid_id"].dropna() for g in v.split(",")]
    assert len(grids) == len(set(grids))


# --------------------------------------------------------------------------- source form
def test_source_form_and_config_map_back_exactly(town: DemoData) -> None:
    cfg = tomllib.loads(town.config_toml())
    assert cfg["town"] == {"name": "东社镇", "crs": "auto"}
    sources = cfg["sources"]
    assert set(sources) == {"boundary", "villages", "grids", "roads", "rivers", "pois",
                            "grid_staff", "river_chiefs", "patrols"}
    # the month of patrol tracks: GCJ-02 fixes with Chinese headers mapped back to canonical, judged for that month
    assert sources["patrols"] == {"path": "patrols.csv", "crs": "GCJ-02",
                                  "fields": {"person_id": "人员编号", "timestamp": "定位时间", "lon": "经度",
                                             "lat": "纬度", "accuracy": "精度"}}
    assert set(town.patrols().source_table().columns) == set(sources["patrols"]["fields"].values())
    assert cfg["patrols"] == {"month": "2026-11"}
    for key in town.layers:
        assert sources[key]["path"] == "town.gpkg"
        assert sources[key]["layer"] == key
    assert sources["grid_staff"]["path"] == "grid_staff.csv"
    assert sources["grid_staff"]["encoding"] == "gbk"
    assert sources["river_chiefs"]["path"] == "river_chiefs.xlsx"
    src_layers, src_rosters = town.source_layers(), town.source_rosters()
    assert list(src_layers["roads"].columns[:3]) == ["道路编号", "道路等级", "道路名称"]
    assert set(src_layers["roads"]["道路等级"]) == {"主干道", "次干道", "村道", "小巷"}
    assert list(src_layers["villages"].columns[:4]) == ["村编码", "村名", "户数", "人口"]
    assert list(src_rosters["grid_staff"].columns) == ["人员编号", "姓名", "电话", "职务",
                                                       "网格编号"]
    assert set(src_rosters["grid_staff"]["职务"]) == {"网格长", "网格员"}
    assert list(src_rosters["river_chiefs"].columns) == ["人员编号", "姓名", "电话", "级别",
                                                         "河道编号", "村编码"]
    assert set(src_rosters["river_chiefs"]["级别"]) == {"县级", "镇级", "村级"}
    canonical = {**town.layers, **town.rosters}
    for key, frame in {**src_layers, **src_rosters}.items():
        spec = sources[key]
        back = frame.rename(columns={v: k for k, v in spec["fields"].items()})
        for col, mapping in spec.get("values", {}).items():
            back[col] = back[col].map(mapping)
        want = canonical[key]
        assert list(back.columns) == list(want.columns), key
        pd.testing.assert_frame_equal(
            pd.DataFrame(back.drop(columns="geometry", errors="ignore")),
            pd.DataFrame(want.drop(columns="geometry", errors="ignore")),
            check_dtype=False, obj=key,
        )
        if "geometry" in want.columns:
            assert back.geometry.geom_equals_exact(want.geometry, 0).all()
    # canonical frames untouched by making the source form
    assert set(town.layers["roads"]["road_class"]) == {"main", "secondary", "village", "lane"}
    custom = tomllib.loads(town.config_toml(gpkg="a b/t.gpkg", staff_csv='s"x.csv',
                                            chiefs_xlsx="c\\d.xlsx"))
    assert custom["sources"]["pois"]["path"] == "a b/t.gpkg"
    assert custom["sources"]["grid_staff"]["path"] == 's"x.csv'
    assert custom["sources"]["river_chiefs"]["path"] == "c\\d.xlsx"


# --------------------------------------------------------------------------- model
def test_town_model_builds_with_exactly_one_repair(town: DemoData) -> None:
    model = town.town()
    assert model.name == "东社镇"
    assert model.crs.to_epsg() == 4549
    assert len(model.grids) == len(town.layers["grids"])
    assert len(model.roads) == len(town.layers["roads"])
    assert len(model.repairs) == 1
    rep = model.repairs.iloc[0]
    truth = _truth(town, "input_repaired").iloc[0]
    assert rep["layer"] == "grids"
    assert rep["feature_id"] == truth["grid_id"]
    assert abs(rep["area_after"] - truth.geometry.area) < 0.01
    assert shapely.symmetric_difference(rep["geometry"], truth.geometry).area < 0.01
    assert model.grids.is_valid.all()
    assert len(model.issues) == 0


# --------------------------------------------------------------------------- county
def test_county_scale_counts_and_defects() -> None:
    t0 = time.perf_counter()
    county = make_demo(scale="county")
    elapsed = time.perf_counter() - t0
    L = county.layers
    assert 250 <= len(L["villages"]) <= 350
    assert 17_000 <= len(L["grids"]) <= 23_000
    assert 40_000 <= len(L["roads"]) <= 65_000
    assert len(L["rivers"]) >= 15
    assert len(L["pois"]) >= 300
    assert L["villages"]["village_id"].str.fullmatch(r"V\d{3}").all()
    assert L["grids"]["grid_id"].is_unique
    assert L["roads"]["road_id"].is_unique
    staff = county.rosters["grid_staff"]
    assert staff["person_id"].is_unique
    assert staff["phone"].is_unique
    assert set(staff["grid_id"]) == set(L["grids"]["grid_id"])
    kinds = county.truth["kind"].value_counts()
    assert set(kinds.index) == {"area_gap", "area_overlap", "road_uncovered", "poi_uncovered",
                                "grid_unstaffed", "river_unassigned", "input_repaired"}
    assert (kinds >= 2).all()
    assert int((~L["grids"].is_valid).sum()) == kinds["input_repaired"]
    x0, y0, x1, y1 = L["boundary"].to_crs(METRIC).total_bounds
    assert 50_000 <= x1 - x0 <= 70_000
    assert 40_000 <= y1 - y0 <= 60_000
    assert elapsed < 60  # ~3 s on the 2-core dev box; generous for CI


# --------------------------------------------------------------------------- the hand drawing
@pytest.fixture(scope="module")
def drawn(seed: int) -> DemoData:
    return make_demo(seed=seed)


def test_hand_drawn_differs_from_the_exact_one_only_in_vertices(town: DemoData, drawn: DemoData) -> None:
    for key in ("villages", "grids", "roads", "rivers", "pois", "boundary"):
        a, b = town.layers[key], drawn.layers[key]
        assert list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
    for key in ("grid_staff", "river_chiefs"):
        pd.testing.assert_frame_equal(town.rosters[key], drawn.rosters[key])
    assert list(town.truth["kind"]) == list(drawn.truth["kind"])


def test_hand_drawn_borders_wobble_within_the_noise(town: DemoData, drawn: DemoData) -> None:
    for key in ("grids", "villages", "boundary"):
        exact = np.asarray(town.layers[key].to_crs(METRIC).geometry.values)
        hand = np.asarray(drawn.layers[key].to_crs(METRIC).geometry.values)
        ok = shapely.is_valid(exact) & shapely.is_valid(hand)
        dist = shapely.hausdorff_distance(exact[ok], hand[ok])
        assert dist.max() <= demo_module.HAND_MAX_M * np.sqrt(2) + 0.02, key
        assert (dist > 0.05).mean() > 0.9, key  # drawn again, not copied
    grids = np.asarray(drawn.layers["grids"].to_crs(METRIC).geometry.values)
    assert np.median(shapely.get_num_coordinates(grids)) >= 100  # hundreds of vertices, not seven
    # no two neighbours share their border exactly
    bad = ~shapely.is_empty(shapely.coverage_invalid_edges(grids[shapely.is_valid(grids)]))
    assert bad.mean() > 0.95
