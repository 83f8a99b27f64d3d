"""gisgrid.model.Town: validation, repair records and reference issues."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from conftest import X0, Y0, box

from gisgrid import CRSError, InputError, SchemaError
from gisgrid.model import REPAIR_COLUMNS, Town


def test_valid_town(town_frames):
    town = Town.from_frames(**town_frames)
    assert town.crs == pyproj.CRS.from_epsg(4549)
    assert town.name == "测试镇"
    assert len(town.villages) == 2
    assert len(town.grids) == 4
    assert len(town.roads) == 2
    assert len(town.repairs) == 0
    assert len(town.issues) == 0
    assert list(town.repairs.columns) == list(REPAIR_COLUMNS)
    assert town.area_m2 == pytest.approx(400 * 200)
    assert town.extent.equals(box(0, 0, 400, 200))
    # optional columns exist; numeric ones are numbers, ids are text
    assert "households" in town.grids.columns
    assert "name" in town.grids.columns
    assert town.villages["households"].tolist() == [120.0, 95.0]
    assert town.river_chiefs["village_id"].tolist() == [None, "V1"]
    table = town.layer_table().set_index("layer")
    assert table.loc["grids", "rows"] == 4
    assert table.loc["grid_staff", "rows"] == 4


def test_inputs_are_not_changed(town_frames):
    before = {k: v.copy() for k, v in town_frames.items()}
    grids = town_frames["grids"]
    grids.loc[0, "geometry"] = shapely.Polygon([(X0, Y0), (X0 + 200, Y0 + 100), (X0 + 200, Y0), (X0, Y0 + 100)])
    before["grids"] = grids.copy()
    Town.from_frames(**town_frames)
    for k, v in before.items():
        pd.testing.assert_frame_equal(town_frames[k], v)


def test_lonlat_input_is_projected_to_the_gauss_kruger_zone(town_frames):
    metric = Town.from_frames(**town_frames)
    lonlat = {k: (v.to_crs(4490) if isinstance(v, gpd.GeoDataFrame) else v) for k, v in town_frames.items()}
    town = Town.from_frames(**lonlat)
    assert town.crs.to_epsg() == 4549
    np.testing.assert_allclose(town.grids.area, metric.grids.area, rtol=1e-6)
    np.testing.assert_allclose(town.grids.total_bounds, metric.grids.total_bounds, atol=0.01)


def test_explicit_analysis_crs(town_frames):
    town = Town.from_frames(**town_frames, crs="EPSG:32651")
    assert town.crs.to_epsg() == 32651
    assert town.area_m2 == pytest.approx(town_frames["boundary"].to_crs(32651).area.iloc[0])
    with pytest.raises(CRSError, match="not a projected CRS"):
        Town.from_frames(**town_frames, crs="EPSG:4490")


def test_ids_become_text(town_frames):
    grids = town_frames["grids"].assign(grid_id=[1.0, 2.0, 3.0, 4.0])
    staff = town_frames["grid_staff"].assign(grid_id=[1, 2, 3, 4])
    town = Town.from_frames(**{**town_frames, "grids": grids, "grid_staff": staff})
    assert town.grids["grid_id"].tolist() == ["1", "2", "3", "4"]
    assert town.grid_staff["grid_id"].tolist() == ["1", "2", "3", "4"]
    assert len(town.issues) == 0


def test_blanks_are_none_not_nan(town_frames):
    staff = town_frames["grid_staff"].copy()
    staff["phone"] = ["13800000001", None, " ", "13800000004"]
    town = Town.from_frames(**{**town_frames, "grid_staff": staff})
    assert town.grid_staff["phone"].tolist() == ["13800000001", None, None, "13800000004"]


# --------------------------------------------------------------------------- repairs
def test_bowtie_grid_is_repaired_and_recorded(town_frames):
    grids = town_frames["grids"].copy()
    bowtie = shapely.Polygon([(X0, Y0), (X0 + 200, Y0 + 100), (X0 + 200, Y0), (X0, Y0 + 100)])
    assert not bowtie.is_valid
    grids.loc[0, "geometry"] = bowtie
    town = Town.from_frames(**{**town_frames, "grids": grids})
    assert len(town.grids) == 4
    fixed = town.grids.set_index("grid_id").geometry["G1"]
    assert fixed.is_valid
    # the two triangles either side of the crossing point (X0+100, Y0+50)
    left = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 + 50), (X0, Y0 + 100)])
    right = shapely.Polygon([(X0 + 200, Y0), (X0 + 200, Y0 + 100), (X0 + 100, Y0 + 50)])
    expected = shapely.union_all([left, right])
    assert fixed.symmetric_difference(expected).area < 1e-6
    assert len(town.repairs) == 1
    rep = town.repairs.iloc[0]
    assert rep["layer"] == "grids"
    assert rep["feature_id"] == "G1"
    assert rep["row"] == 0
    assert rep["action"] == "make_valid"
    assert "Self-intersection" in rep["detail"]
    assert rep["area_after"] == pytest.approx(expected.area)
    assert rep["area_before"] == pytest.approx(shapely.area(bowtie))
    assert rep["geometry"].equals(fixed)
    assert town.repairs.crs == town.crs


def test_none_and_empty_geometries_are_removed_and_recorded(town_frames):
    grids = town_frames["grids"].copy()
    grids.loc[1, "geometry"] = None
    grids.loc[3, "geometry"] = shapely.Polygon()
    town = Town.from_frames(**{**town_frames, "grids": grids})
    assert town.grids["grid_id"].tolist() == ["G1", "G3"]
    rec = town.repairs.set_index("feature_id")
    assert sorted(rec.index) == ["G2", "G4"]
    assert set(rec["action"]) == {"removed_empty"}
    assert rec.loc["G2", "row"] == 1
    assert rec.loc["G4", "row"] == 3
    # the staff of a removed grid are not dropped; they are reported as unplaced
    assert len(town.grid_staff) == 4
    assert sorted(town.issues["value"]) == ["G2", "G4"]
    assert set(town.issues["kind"]) == {"staff_unplaced"}


def test_z_coordinates_are_dropped(town_frames):
    grids = town_frames["grids"].copy()
    grids["geometry"] = shapely.force_3d(grids.geometry.values, 12.5)
    roads = town_frames["roads"].copy()
    roads["geometry"] = shapely.force_3d(roads.geometry.values, 3.0)
    assert shapely.has_z(grids.geometry.values).all()
    town = Town.from_frames(**{**town_frames, "grids": grids, "roads": roads})
    assert not shapely.has_z(town.grids.geometry.values).any()
    assert not shapely.has_z(town.roads.geometry.values).any()
    assert town.grids.geom_equals(town_frames["grids"].geometry).all()


def test_geometry_collection_is_exploded_and_recorded(town_frames):
    grids = town_frames["grids"].copy()
    poly = grids.geometry.iloc[0]
    grids.loc[0, "geometry"] = shapely.GeometryCollection(
        [poly, shapely.LineString([(X0, Y0), (X0 + 5, Y0 + 5)]), shapely.Point(X0 + 1, Y0 + 1)]
    )
    town = Town.from_frames(**{**town_frames, "grids": grids})
    g1 = town.grids.set_index("grid_id").geometry["G1"]
    assert g1.geom_type == "Polygon"
    assert g1.equals(poly)
    rep = town.repairs.iloc[0]
    assert rep["action"] == "collection_exploded"
    assert rep["feature_id"] == "G1"
    assert "3 parts" in rep["detail"]
    assert "kept 1" in rep["detail"]
    assert rep["area_before"] == pytest.approx(poly.area)
    assert rep["area_after"] == pytest.approx(poly.area)


def test_collection_repair_is_recorded_in_the_analysis_crs(town_frames):
    # input in lon/lat: the record must still be in metres, like the grids themselves
    lonlat = {k: (v.to_crs(4490) if isinstance(v, gpd.GeoDataFrame) else v) for k, v in town_frames.items()}
    grids = lonlat["grids"]
    poly = grids.geometry.iloc[0]
    grids.loc[0, "geometry"] = shapely.GeometryCollection([poly, shapely.Point(poly.centroid)])
    town = Town.from_frames(**lonlat)
    rep = town.repairs.iloc[0]
    assert rep["action"] == "collection_exploded"
    assert rep["area_after"] == pytest.approx(200 * 100, rel=1e-4)
    assert rep["area_before"] == pytest.approx(200 * 100, rel=1e-4)
    g1 = town.grids.set_index("grid_id").geometry["G1"]
    assert rep["geometry"].equals_exact(g1, 1e-6)


def test_collection_with_multipolygon_part(town_frames):
    grids = town_frames["grids"].copy()
    parts = shapely.MultiPolygon([box(0, 0, 100, 100), box(100, 0, 200, 100)])
    grids.loc[0, "geometry"] = shapely.GeometryCollection([parts, shapely.LineString([(X0, Y0), (X0, Y0 + 9)])])
    town = Town.from_frames(**{**town_frames, "grids": grids})
    g1 = town.grids.set_index("grid_id").geometry["G1"]
    assert g1.area == pytest.approx(200 * 100)


# --------------------------------------------------------------------------- refusals
def test_empty_villages_layer_is_a_schema_error(town_frames):
    villages = town_frames["villages"].iloc[0:0]
    villages.attrs["source"] = {"path": "/data/村界.shp", "layer": None}
    with pytest.raises(SchemaError, match="no features") as info:
        Town.from_frames(**{**town_frames, "villages": villages})
    assert info.value.layer == "villages"
    assert info.value.path == "/data/村界.shp"
    # all geometries missing is the same
    with pytest.raises(SchemaError, match="no features"):
        Town.from_frames(**{**town_frames, "villages": town_frames["villages"].assign(geometry=None)})


def test_empty_grids_layer_is_a_schema_error(town_frames):
    with pytest.raises(SchemaError, match="grids layer has no features") as info:
        Town.from_frames(**{**town_frames, "grids": town_frames["grids"].iloc[0:0]})
    assert info.value.layer == "grids"
    # and with an explicit analysis CRS too
    with pytest.raises(SchemaError, match="villages layer has no features"):
        Town.from_frames(**{**town_frames, "villages": town_frames["villages"].iloc[0:0]}, crs="EPSG:4549")


def test_duplicate_ids_name_the_id_and_rows(town_frames):
    grids = town_frames["grids"].assign(grid_id=["G1", "G2", "G1", "G4"])
    with pytest.raises(SchemaError, match="duplicate") as info:
        Town.from_frames(**{**town_frames, "grids": grids})
    msg = str(info.value)
    assert "'G1'" in msg
    assert "features 0, 2" in msg
    assert info.value.column == "grid_id"
    assert info.value.layer == "grids"


def test_duplicate_ids_from_a_csv_name_file_lines(town_frames):
    pois = gpd.GeoDataFrame(
        {"poi_id": ["P1", "P2", "P2"], "kind": ["school", "market", "clinic"]},
        geometry=[shapely.Point(X0 + 10, Y0 + 10)] * 3, crs="EPSG:4549",
    )
    pois.attrs["source"] = {"path": "/data/必查点位.csv", "layer": None}
    with pytest.raises(SchemaError, match="lines 3, 4") as info:
        Town.from_frames(**{**town_frames, "pois": pois})
    assert info.value.path == "/data/必查点位.csv"


def test_blank_ids_are_refused(town_frames):
    grids = town_frames["grids"].assign(grid_id=["G1", None, "G3", " "])
    with pytest.raises(SchemaError, match="2 row") as info:
        Town.from_frames(**{**town_frames, "grids": grids})
    assert "features 1, 3" in str(info.value)


def test_missing_column_lists_the_columns_present_and_the_fix(town_frames):
    grids = town_frames["grids"].rename(columns={"grid_id": "网格编码"})
    grids.attrs["source"] = {"path": "/data/网格.shp", "layer": None}
    with pytest.raises(SchemaError, match="grid_id") as info:
        Town.from_frames(**{**town_frames, "grids": grids})
    exc = info.value
    assert "'网格编码', 'village_id'" in str(exc)
    assert exc.column == "grid_id"
    assert exc.path == "/data/网格.shp"
    assert "[sources.grids]" in exc.fix
    assert "fields" in exc.fix


def test_missing_roster_column(town_frames):
    staff = town_frames["grid_staff"].drop(columns=["role"])
    with pytest.raises(SchemaError, match="role") as info:
        Town.from_frames(**{**town_frames, "grid_staff": staff})
    assert "[sources.grid_staff]" in info.value.fix


def test_wrong_road_class_suggests_a_values_mapping(town_frames):
    roads = town_frames["roads"].assign(road_class=["main", "小巷"])
    with pytest.raises(SchemaError, match="小巷") as info:
        Town.from_frames(**{**town_frames, "roads": roads})
    assert info.value.column == "road_class"
    assert "values" in info.value.fix
    assert "road_class" in info.value.fix
    assert "feature 1" in str(info.value)


def test_wrong_roster_role_suggests_a_values_mapping(town_frames):
    staff = town_frames["grid_staff"].assign(role=["网格长", "grid_member", "grid_member", "grid_member"])
    with pytest.raises(SchemaError, match="网格长") as info:
        Town.from_frames(**{**town_frames, "grid_staff": staff})
    assert 'values = { role = { "网格长" = "grid_chief" } }' in info.value.fix


def test_wrong_geometry_type_is_refused(town_frames):
    grids = town_frames["grids"].copy()
    grids["geometry"] = grids.geometry.centroid
    with pytest.raises(SchemaError, match="polygon") as info:
        Town.from_frames(**{**town_frames, "grids": grids})
    assert "Point" in str(info.value)


def test_non_numeric_households_is_refused(town_frames):
    villages = town_frames["villages"].assign(households=["120", "约九十"])
    with pytest.raises(SchemaError, match="约九十") as info:
        Town.from_frames(**{**town_frames, "villages": villages})
    assert info.value.column == "households"


def test_mislabelled_coordinates_get_the_coordinate_error(town_frames):
    # projected numbers labelled lon/lat: the CRS error, not a confusing one from choosing the zone
    villages = town_frames["villages"].set_crs(4490, allow_override=True)
    with pytest.raises(CRSError, match="not degrees"):
        Town.from_frames(**{**town_frames, "villages": villages})
    swapped = town_frames["villages"].to_crs(4490)
    swapped["geometry"] = shapely.transform(swapped.geometry.values, lambda c: c[:, ::-1])
    with pytest.raises(CRSError, match="swapped"):
        Town.from_frames(**{**town_frames, "villages": swapped})
    grids = town_frames["grids"].to_crs(4490).set_crs(4549, allow_override=True)
    with pytest.raises(CRSError, match="degrees") as info:
        Town.from_frames(**{**town_frames, "grids": grids})
    assert info.value.layer == "grids"


def test_layer_without_crs(town_frames):
    with pytest.raises(CRSError, match="no CRS"):
        Town.from_frames(**{**town_frames, "roads": town_frames["roads"].set_crs(None, allow_override=True)})
    with pytest.raises(CRSError, match="no CRS"):
        Town.from_frames(**{**town_frames, "villages": town_frames["villages"].set_crs(None, allow_override=True)})


def test_a_plain_dataframe_is_not_a_layer(town_frames):
    with pytest.raises(SchemaError, match="GeoDataFrame"):
        Town.from_frames(**{**town_frames, "roads": pd.DataFrame(town_frames["roads"].drop(columns="geometry"))})


# --------------------------------------------------------------------------- broken references: issues, not drops
def test_roster_naming_a_missing_grid_is_an_issue_not_a_drop(town_frames):
    staff = pd.concat([town_frames["grid_staff"], pd.DataFrame({
        "person_id": ["S9"], "name": ["周九"], "phone": ["13800000009"], "role": ["grid_member"], "grid_id": ["G99"],
    })], ignore_index=True)
    town = Town.from_frames(**{**town_frames, "grid_staff": staff})
    assert len(town.grid_staff) == 5
    assert "S9" in set(town.grid_staff["person_id"])
    assert len(town.issues) == 1
    issue = town.issues.iloc[0]
    assert issue["kind"] == "staff_unplaced"
    assert issue["source"] == "grid_staff"
    assert issue["person_id"] == "S9"
    assert issue["name"] == "周九"
    assert issue["column"] == "grid_id"
    assert issue["value"] == "G99"
    assert issue["row"] == 4


def test_river_chief_references(town_frames):
    chiefs = pd.DataFrame({
        "person_id": ["C1", "C2", "C3", "C4"], "name": ["钱七", "孙八", "吴十", "郑一"],
        "level": ["town", "village", "village", "village"], "river_id": ["H1", "H1", "H9", "H1"],
        "village_id": [None, None, "V1", "V7"],
    })
    town = Town.from_frames(**{**town_frames, "river_chiefs": chiefs})
    assert len(town.river_chiefs) == 4
    got = {(r.person_id, r.column, r.value) for r in town.issues.itertuples()}
    assert got == {("C2", "village_id", None), ("C3", "river_id", "H9"), ("C4", "village_id", "V7")}
    assert set(town.issues["kind"]) == {"chief_unplaced"}


def test_grid_in_a_missing_village_is_an_issue(town_frames):
    grids = town_frames["grids"].assign(village_id=["V1", "V1", "V2", "V3"])
    town = Town.from_frames(**{**town_frames, "grids": grids})
    assert len(town.grids) == 4
    issue = town.issues.iloc[0]
    assert issue["kind"] == "input_reference"
    assert issue["name"] == "G4"
    assert issue["value"] == "V3"


# --------------------------------------------------------------------------- replace
def test_replace_revalidates(town_frames):
    town = Town.from_frames(**town_frames)
    smaller = town.replace(grids=town.grids.iloc[:3])
    assert len(smaller.grids) == 3
    assert smaller.crs == town.crs
    assert smaller.name == town.name
    assert len(town.grids) == 4
    assert list(smaller.issues["value"]) == ["G4"]
    with pytest.raises(SchemaError, match="unknown layer"):
        town.replace(buildings=town.grids)
    with pytest.raises(SchemaError, match="duplicate"):
        town.replace(grids=pd.concat([town.grids, town.grids.iloc[:1]]).reset_index(drop=True))


@pytest.mark.parametrize("layer", ["roads", "rivers", "pois", "villages", "grids"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_coordinates_are_refused_naming_the_layer_and_feature(town_frames, layer, bad):
    frames = dict(town_frames)
    frame = frames[layer].copy()
    geom = frame.geometry.iloc[-1]
    xy = shapely.get_coordinates(geom)
    xy[1 if geom.geom_type == "Polygon" else 0, 0] = bad  # a polygon: not the closing vertex
    frame.loc[frame.index[-1], frame.geometry.name] = shapely.set_coordinates(geom, xy)
    frames[layer] = frame
    with pytest.raises(InputError, match=rf"{layer} layer has NaN or infinite coordinates in feature") as info:
        Town.from_frames(**frames, crs="EPSG:4549", name="t")
    assert info.value.layer == layer


def test_defaults_fill_missing_classes_and_bad_defaults_are_refused(town_frames):
    roads = town_frames["roads"].copy()
    roads["road_class"] = [None] + ["机耕路"] * (len(roads) - 1)
    roads.attrs["source"] = {"path": "/data/道路.geojson", "layer": None}
    town = Town.from_frames(**{**town_frames, "roads": roads}, defaults={"roads": {"road_class": "lane"}})
    assert set(town.roads["road_class"]) == {"lane"}
    rows = town.derived[town.derived["column"] == "road_class"]
    assert len(rows) == len(roads)  # every filled value recorded, with why
    assert rows["detail"].str.contains("missing").sum() == 1
    assert rows["detail"].str.contains("'机耕路'").sum() == len(roads) - 1
    with pytest.raises(SchemaError, match="not one of") as info:  # a default that is not a class itself
        Town.from_frames(**{**town_frames, "roads": roads}, defaults={"roads": {"road_class": "小巷"}})
    assert info.value.column == "road_class"
    assert info.value.path == "/data/道路.geojson"
    with pytest.raises(SchemaError, match="does not use") as info:
        Town.from_frames(**town_frames, defaults={"roads": {"surface": "asphalt"}})
    assert "[sources.roads]" in info.value.fix
    with pytest.raises(SchemaError, match="defaults are for layers"):
        Town.from_frames(**town_frames, defaults={"grid_staff": {"role": "grid_member"}})


def test_a_default_that_is_not_text_is_refused_in_the_config(tmp_path):
    from gisgrid import ConfigError
    from gisgrid.io.config import load_config

    cfg = tmp_path / "gisgrid.toml"
    cfg.write_text('[sources.villages]\npath = "t.gpkg"\n[sources.grids]\npath = "t.gpkg"\n'
                   '[sources.roads]\npath = "t.gpkg"\ndefaults = { road_class = 3 }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[sources.roads\] defaults must be text") as info:
        load_config(cfg)
    assert "road_class" in info.value.fix
