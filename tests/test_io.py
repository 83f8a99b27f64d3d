"""gisgrid.io: reading real-world township files (encodings, broken companions, CRS trouble) and atomic writes."""

from __future__ import annotations

import warnings
import zipfile

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import X0, Y0, box
from pyproj import Geod

from gisgrid import ConfigError, CRSError, GisgridError, InputError
from gisgrid import io as gio
from gisgrid.crs import bd09_to_wgs84, gcj02_to_wgs84

NAMES = ["东社村", "西亭村", "石港镇居委会"]


def _villages(crs="EPSG:4549"):
    return gpd.GeoDataFrame(
        {"村名": NAMES, "村编号": ["001", "002", "003"], "户数": [120, 95, 300]},
        geometry=[box(0, 0, 200, 200), box(200, 0, 400, 200), box(400, 0, 600, 200)],
        crs=crs,
    )


def _files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- encodings
@pytest.mark.parametrize(
    ("data_encoding", "cpg", "detected"),
    [
        ("GBK", None, "gb18030"),          # no .cpg at all
        ("UTF-8", "ANSI 936", "utf-8"),    # .cpg claims GBK, data is UTF-8
        ("GBK", "65001", "gb18030"),       # .cpg claims UTF-8, data is GBK
        ("GBK", "UTF-8", "gb18030"),
        ("UTF-8", None, "utf-8"),
    ],
)
def test_shapefile_encoding_is_detected_from_the_bytes(tmp_path, data_encoding, cpg, detected):
    path = tmp_path / "村界.shp"
    pyogrio.write_dataframe(_villages(), path, encoding=data_encoding)
    cpg_path = path.with_suffix(".cpg")
    if cpg is None:
        cpg_path.unlink(missing_ok=True)
    else:
        cpg_path.write_text(cpg)
    # the bytes really are in the data encoding (the test would prove nothing otherwise)
    raw = path.with_suffix(".dbf").read_bytes()
    assert "东社村".encode(data_encoding) in raw
    assert gio.detect_encoding(path) == detected

    gdf = gio.read_layer(path)
    assert list(gdf.columns) == ["村名", "村编号", "户数", "geometry"]
    assert gdf["村名"].tolist() == NAMES
    assert gdf["村编号"].tolist() == ["001", "002", "003"]
    assert gdf.crs.to_epsg() == 4549
    assert gdf.attrs["source"]["path"] == str(path)


@pytest.mark.parametrize(("data_encoding", "cpg"), [("GBK", None), ("GBK", "65001"), ("UTF-8", "ANSI 936")])
def test_zipped_shapefile_encoding_is_detected_too(tmp_path, data_encoding, cpg):
    # offices e-mail shapefiles zipped; GDAL alone would read GBK without .cpg as Latin-1 (mojibake)
    folder = tmp_path / "src"
    folder.mkdir()
    pyogrio.write_dataframe(_villages(), folder / "村界.shp", encoding=data_encoding)
    (folder / "村界.cpg").unlink(missing_ok=True)
    if cpg is not None:
        (folder / "村界.cpg").write_text(cpg)
    archive = tmp_path / "村界.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
    gdf = gio.read_layer(archive)
    assert list(gdf.columns) == ["村名", "村编号", "户数", "geometry"]
    assert gdf["村名"].tolist() == NAMES
    assert gdf.crs.to_epsg() == 4549


def test_truncated_zip_is_an_input_error(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    pyogrio.write_dataframe(_villages(), folder / "v.shp")
    archive = tmp_path / "v.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(InputError, match="zip") as info:
        gio.read_layer(archive)
    assert info.value.path == str(archive)


def test_explicit_wrong_encoding_is_an_input_error(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes("姓名,电话\n张三,13800000000\n".encode("gbk"))
    with pytest.raises(InputError, match="cannot be decoded as utf-8") as info:
        gio.read_table(path, encoding="utf-8")
    assert info.value.path == str(path)
    assert "encoding" in info.value.fix


def test_text_neither_utf8_nor_gbk_is_refused(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(b"a,b\n\xff\xfe\xff,\x81\n")
    with pytest.raises(InputError, match="neither UTF-8 nor GBK"):
        gio.read_table(path)


def test_gbk_csv_roster_keeps_phone_numbers_and_ids_as_text(tmp_path):
    path = tmp_path / "网格员名单.csv"
    text = ("姓名,电话,职务,网格编号\n"
            "张三,13800000000,网格长,007\n"
            "李四,,网格员,010\n"
            "王五,013912345678,网格员,0\n")
    path.write_bytes(text.encode("gbk"))
    assert gio.detect_encoding(path) == "gb18030"
    df = gio.read_table(path)
    assert list(df.columns) == ["姓名", "电话", "职务", "网格编号"]
    assert df["姓名"].tolist() == ["张三", "李四", "王五"]
    assert df["电话"].tolist() == ["13800000000", None, "013912345678"]
    assert df["网格编号"].tolist() == ["007", "010", "0"]
    assert df.loc[1, "电话"] is None
    assert df.attrs["source"]["path"] == str(path)


def test_utf8_bom_csv_is_read(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes("\ufeff姓名,网格编号\n张三,007\n".encode())
    df = gio.read_table(path)
    assert list(df.columns) == ["姓名", "网格编号"]
    assert df.iloc[0].tolist() == ["张三", "007"]


def test_xlsx_roster_with_chinese_headers_keeps_text(tmp_path):
    path = tmp_path / "河长名单.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "河长"
    ws.append(["姓名", "电话", "职务", "网格编号"])
    ws.append(["张三", 13800000000, "网格长", "007"])   # phone typed as a number, id as text
    ws.append(["李四", "13900000000", "网格员", 12])    # phone as text, id as a number
    ws.append(["王五", None, "网格员", "008"])          # empty cell
    wb.save(path)
    df = gio.read_table(path)
    assert list(df.columns) == ["姓名", "电话", "职务", "网格编号"]
    assert df["电话"].tolist() == ["13800000000", "13900000000", None]
    assert df["网格编号"].tolist() == ["007", "12", "008"]
    assert df.loc[2, "电话"] is None
    assert all(isinstance(v, str) for v in df["姓名"])
    assert gio.read_table(path, sheet="河长").equals(df)
    with pytest.raises(InputError, match="sheet") as info:
        gio.read_table(path, sheet="网格员")
    assert info.value.path == str(path)


def test_roster_written_by_write_csv_and_write_xlsx_reads_back(tmp_path):
    roster = pd.DataFrame({"姓名": ["张三", "李四"], "电话": ["13800000000", None], "网格编号": ["007", "010"]})
    gio.write_csv(roster, tmp_path / "a.csv", encoding="gbk")
    gio.write_xlsx({"名单": roster}, tmp_path / "a.xlsx")
    for name in ("a.csv", "a.xlsx"):
        back = gio.read_table(tmp_path / name)
        assert back.to_dict("list") == {"姓名": ["张三", "李四"], "电话": ["13800000000", None],
                                        "网格编号": ["007", "010"]}


def test_unknown_table_type_and_missing_file(tmp_path):
    (tmp_path / "roster.ods").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown table type"):
        gio.read_table(tmp_path / "roster.ods")
    with pytest.raises(InputError, match="does not exist") as info:
        gio.read_table(tmp_path / "nope.csv")
    assert "nope.csv" in str(info.value)


# --------------------------------------------------------------------------- broken shapefiles
def test_shapefile_without_prj_needs_a_declared_crs(tmp_path):
    path = tmp_path / "grids.shp"
    pyogrio.write_dataframe(_villages(), path)
    path.with_suffix(".prj").unlink()
    with pytest.raises(CRSError, match="no CRS") as info:
        gio.read_layer(path)
    assert info.value.path == str(path)
    assert "crs =" in info.value.fix
    gdf = gio.read_layer(path, crs="EPSG:4549")
    assert gdf.crs.to_epsg() == 4549
    assert gdf["村名"].tolist() == NAMES


def test_shapefile_without_dbf_or_shx_is_refused(tmp_path):
    path = tmp_path / "grids.shp"
    pyogrio.write_dataframe(_villages(), path)
    path.with_suffix(".shx").unlink()
    with pytest.raises(InputError, match=r"\.shx") as info:
        gio.read_layer(path)
    assert info.value.path == str(path)
    path.with_suffix(".dbf").unlink()
    with pytest.raises(InputError, match=r"\.dbf") as info:
        gio.read_layer(path)
    assert info.value.path == str(path)
    assert ".dbf" in info.value.fix


def test_truncated_shp_is_refused(tmp_path):
    gdf = gpd.GeoDataFrame(
        {"grid_id": [f"G{i}" for i in range(40)]},
        geometry=[box(50 * i, 0, 50 * i + 50, 50) for i in range(40)], crs="EPSG:4549",
    )
    path = tmp_path / "grids.shp"
    pyogrio.write_dataframe(gdf, path)
    assert len(gio.read_layer(path)) == 40
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as info:
        gio.read_layer(path)
    assert info.value.path == str(path)


# --------------------------------------------------------------------------- broken GeoPackages
@pytest.mark.parametrize("layer", [None, "villages"])
def test_truncated_geopackage_is_an_input_error_naming_the_file(tmp_path, layer):
    path = tmp_path / "town.gpkg"
    pyogrio.write_dataframe(_villages(), path, layer="villages")
    pyogrio.write_dataframe(_villages(), path, layer="grids")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        gio.read_layer(path, layer=layer)
    exc = info.value
    assert not isinstance(exc, pyogrio.errors.DataSourceError)
    assert exc.path == str(path)
    assert str(path) in str(exc)
    assert "\n" not in str(exc)
    assert "DataSourceError" not in str(exc)
    assert "sqlite3_" not in str(exc)
    assert exc.__cause__ is None
    assert exc.__suppress_context__
    assert "copy it again" in exc.fix


def test_truncated_geopackage_via_list_layers(tmp_path):
    path = tmp_path / "town.gpkg"
    pyogrio.write_dataframe(_villages(), path, layer="villages")
    assert gio.list_layers(path) == ["villages"]
    path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(InputError, match="damaged, truncated") as info:
        gio.list_layers(path)
    assert info.value.path == str(path)


def test_missing_layer_names_the_layers_present(tmp_path):
    path = tmp_path / "town.gpkg"
    pyogrio.write_dataframe(_villages(), path, layer="村界")
    with pytest.raises(InputError, match="村界") as info:
        gio.read_layer(path, layer="villages")
    assert info.value.layer == "villages"


def test_geopackage_that_lost_its_crs(tmp_path):
    path = tmp_path / "town.gpkg"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        pyogrio.write_dataframe(_villages(crs=None), path, layer="villages")
    with pytest.raises(CRSError, match="no CRS") as info:
        gio.read_layer(path, layer="villages")
    assert info.value.path == str(path)
    assert info.value.layer == "villages"
    assert gio.read_layer(path, layer="villages", crs="EPSG:4549").crs.to_epsg() == 4549


def test_unknown_vector_type_and_missing_file(tmp_path):
    (tmp_path / "grids.dwg").write_bytes(b"AC1027")
    with pytest.raises(InputError, match="unknown file type"):
        gio.read_layer(tmp_path / "grids.dwg")
    with pytest.raises(InputError, match="does not exist"):
        gio.read_layer(tmp_path / "grids.gpkg")


def test_garbage_geojson_is_an_input_error(tmp_path):
    path = tmp_path / "grids.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(InputError) as info:
        gio.read_layer(path)
    assert info.value.path == str(path)
    assert "DataSourceError" not in str(info.value)


# --------------------------------------------------------------------------- CRS that does not fit
def test_lonlat_numbers_labelled_4549_are_refused(tmp_path):
    path = tmp_path / "v.gpkg"
    pyogrio.write_dataframe(_villages().to_crs(4490).set_crs(4549, allow_override=True), path)
    with pytest.raises(CRSError, match="look like longitude/latitude degrees") as info:
        gio.read_layer(path)
    assert info.value.path == str(path)
    assert "EPSG:4490" in info.value.fix


def test_projected_numbers_labelled_4490_are_refused(tmp_path):
    path = tmp_path / "v.gpkg"
    pyogrio.write_dataframe(_villages().set_crs(4490, allow_override=True), path)
    with pytest.raises(CRSError, match="not degrees"):
        gio.read_layer(path)
    # same numbers declared in the config as lon/lat: still refused
    pyogrio.write_dataframe(_villages(), tmp_path / "ok.gpkg")
    with pytest.raises(CRSError, match="not degrees"):
        gio.read_layer(tmp_path / "ok.gpkg", crs="EPSG:4490")


def test_swapped_lat_lon_is_refused(tmp_path):
    path = tmp_path / "pois.csv"
    path.write_text("poi_id,lon,lat\nP1,32.10,121.20\nP2,32.11,121.21\n", encoding="utf-8")
    with pytest.raises(CRSError, match="swapped") as info:
        gio.read_layer(path, crs="EPSG:4490")
    assert info.value.path == str(path)


def test_gcj02_layer_is_converted_to_wgs84(tmp_path):
    lon = np.array([121.20, 121.23, 121.26])
    lat = np.array([32.10, 32.08, 32.12])
    pts = gpd.GeoDataFrame({"poi_id": ["P1", "P2", "P3"]}, geometry=gpd.points_from_xy(lon, lat), crs=4326)
    ring = gpd.GeoDataFrame({"grid_id": ["G1"]}, geometry=[shapely.box(121.2, 32.1, 121.21, 32.11)], crs=4326)
    pyogrio.write_dataframe(pts, tmp_path / "pois_gcj.geojson")
    pyogrio.write_dataframe(ring, tmp_path / "grid_gcj.geojson")

    gdf = gio.read_layer(tmp_path / "pois_gcj.geojson", crs="GCJ-02")
    assert gdf.crs.to_epsg() == 4326
    wlon, wlat = gcj02_to_wgs84(lon, lat)
    np.testing.assert_allclose(gdf.geometry.x, wlon, atol=1e-9)
    np.testing.assert_allclose(gdf.geometry.y, wlat, atol=1e-9)
    shift = Geod(ellps="WGS84").inv(lon, lat, gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy())[2]
    assert np.all((shift > 400) & (shift < 600)), shift

    # polygons: every vertex shifted
    poly = gio.read_layer(tmp_path / "grid_gcj.geojson", crs="gcj02").geometry.iloc[0]
    src = shapely.get_coordinates(ring.geometry.iloc[0])
    np.testing.assert_allclose(shapely.get_coordinates(poly), np.column_stack(gcj02_to_wgs84(src[:, 0], src[:, 1])))

    bd = gio.read_layer(tmp_path / "pois_gcj.geojson", crs="BD-09")
    blon, blat = bd09_to_wgs84(lon, lat)
    np.testing.assert_allclose(bd.geometry.x, blon, atol=1e-9)
    np.testing.assert_allclose(bd.geometry.y, blat, atol=1e-9)


def test_gcj02_declared_for_metres_is_refused(tmp_path):
    pyogrio.write_dataframe(_villages(), tmp_path / "v.gpkg")
    with pytest.raises(CRSError, match="not degrees"):
        gio.read_layer(tmp_path / "v.gpkg", crs="GCJ-02")


def test_unknown_declared_crs(tmp_path):
    pyogrio.write_dataframe(_villages(), tmp_path / "v.gpkg")
    with pytest.raises(CRSError, match="unknown CRS") as info:
        gio.read_layer(tmp_path / "v.gpkg", crs="Beijing 54 maybe")
    assert info.value.path == str(tmp_path / "v.gpkg")


# --------------------------------------------------------------------------- other formats
def test_kml_reader(tmp_path):
    pts = gpd.GeoDataFrame(
        {"Name": ["东社小学", "石港菜场"], "kind": ["school", "market"]},
        geometry=gpd.points_from_xy([121.20, 121.21], [32.10, 32.11]), crs=4326,
    )
    path = tmp_path / "必查点位.kml"
    pyogrio.write_dataframe(pts, path, driver="KML", layer="pois")
    for layer in (None, "pois"):
        gdf = gio.read_layer(path, layer=layer)
        assert gdf.crs.to_epsg() == 4326
        assert gdf["Name"].tolist() == ["东社小学", "石港菜场"]
        assert gdf["kind"].tolist() == ["school", "market"]
        np.testing.assert_allclose(gdf.geometry.x, [121.20, 121.21])


def test_csv_with_wkt(tmp_path):
    path = tmp_path / "grids.csv"
    path.write_bytes(
        ("网格编号,WKT\n"
         "007,\"POLYGON ((121.20 32.10, 121.21 32.10, 121.21 32.11, 121.20 32.11, 121.20 32.10))\"\n"
         "008,\"POLYGON ((121.21 32.10, 121.22 32.10, 121.22 32.11, 121.21 32.11, 121.21 32.10))\"\n").encode("gbk")
    )
    gdf = gio.read_layer(path, crs="EPSG:4490")
    assert gdf.crs.to_epsg() == 4490
    assert list(gdf.columns) == ["网格编号", "geometry"]
    assert gdf["网格编号"].tolist() == ["007", "008"]
    assert gdf.geometry.iloc[0].equals(shapely.box(121.20, 32.10, 121.21, 32.11))
    with pytest.raises(CRSError, match="no CRS"):
        gio.read_layer(path)


def test_csv_with_bad_wkt_names_the_line(tmp_path):
    path = tmp_path / "pois.csv"
    path.write_text("poi_id,wkt\nP1,POINT (121.2 32.1)\nP2,POINT (121.2\n", encoding="utf-8")
    with pytest.raises(InputError, match="not WKT") as info:
        gio.read_layer(path, crs="EPSG:4490")
    assert info.value.column == "wkt"
    assert info.value.row == 3  # file line: header is line 1


def test_csv_with_lon_lat(tmp_path):
    path = tmp_path / "必查点位.csv"
    path.write_bytes("编号,名称,经度,纬度\n007,东社小学,121.2,32.1\n008,石港菜场,121.21,32.11\n".encode("gbk"))
    gdf = gio.read_layer(path, crs="EPSG:4490")
    assert list(gdf.columns) == ["编号", "名称", "geometry"]
    assert gdf["编号"].tolist() == ["007", "008"]
    np.testing.assert_allclose(gdf.geometry.x, [121.2, 121.21])
    np.testing.assert_allclose(gdf.geometry.y, [32.1, 32.11])

    bad = tmp_path / "bad.csv"
    bad.write_text("poi_id,lon,lat\nP1,121.2,32.1\nP2,,32.1\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 3") as info:
        gio.read_layer(bad, crs="EPSG:4490")
    assert info.value.column == "lon"

    none = tmp_path / "none.csv"
    none.write_text("poi_id,name\nP1,a\n", encoding="utf-8")
    with pytest.raises(InputError, match="no geometry column"):
        gio.read_layer(none, crs="EPSG:4490")


def test_multi_layer_geopackage_layers(tmp_path):
    path = tmp_path / "town.gpkg"
    gio.write_layers({"villages": _villages(), "grids": _villages().iloc[:2]}, path)
    assert set(gio.list_layers(path)) == {"villages", "grids"}
    assert len(gio.read_layer(path, layer="grids")) == 2
    assert gio.read_layer(path, layer="villages")["村名"].tolist() == NAMES


# --------------------------------------------------------------------------- config
def test_read_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        gio.read_config(tmp_path / "gisgrid.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[town]\nname = "x\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        gio.read_config(bad)
    assert info.value.path == str(bad)
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes('[town]\nname = "石港镇"\n'.encode("gbk"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        gio.read_config(gbk)
    good = tmp_path / "good.toml"
    good.write_text('[town]\nname = "石港镇"\n', encoding="utf-8")
    data = gio.read_config(good)
    assert data["town"]["name"] == "石港镇"
    assert data["_dir"] == str(tmp_path.resolve())


# --------------------------------------------------------------------------- atomic writes
def _write_then_fail(target, text, exc, seen):
    """Write part of a file through atomic_path, then fail as a crashing writer would."""
    with gio.atomic_path(target) as tmp:
        seen.append(tmp)
        tmp.write_text(text, encoding="utf-8")
        raise exc


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "report.html"
    gio.atomic_write_text(target, "第一版 old report")
    seen = []
    with pytest.raises(RuntimeError, match="disk full"):
        _write_then_fail(target, "half a rep", RuntimeError("disk full"), seen)
    assert seen[0].parent == target.parent
    assert seen[0] != target
    assert not seen[0].exists()
    assert target.read_text(encoding="utf-8") == "第一版 old report"
    assert _files_in(tmp_path) == ["report.html"]

    with pytest.raises(UnicodeEncodeError):
        gio.atomic_write_text(target, "新报告", encoding="ascii")
    assert target.read_text(encoding="utf-8") == "第一版 old report"
    assert _files_in(tmp_path) == ["report.html"]

    gio.atomic_write_text(target, "第二版 new report")
    assert target.read_text(encoding="utf-8") == "第二版 new report"
    assert _files_in(tmp_path) == ["report.html"]


def test_atomic_write_to_a_new_folder_and_failing_first_write(tmp_path):
    target = tmp_path / "reports" / "2026-01-01" / "findings.csv"
    with pytest.raises(ValueError, match="boom"):
        _write_then_fail(target, "x", ValueError("boom"), [])
    assert not target.exists()
    assert _files_in(target.parent) == []
    gio.write_csv(pd.DataFrame({"a": ["1"]}), target)
    assert _files_in(target.parent) == ["findings.csv"]


def test_write_layers_shapefile_and_geopackage_are_complete(tmp_path):
    gdf = _villages()
    gio.write_layers({"villages": gdf}, tmp_path / "v.shp", encoding="GBK")
    assert {p.suffix for p in tmp_path.iterdir()} >= {".shp", ".shx", ".dbf", ".prj"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back = gio.read_layer(tmp_path / "v.shp")
    assert back["村名"].tolist() == NAMES
    assert back.geom_equals(gdf.geometry).all()


def test_geojson_is_written_in_wgs84(tmp_path):
    path = gio.write_geojson(_villages(), tmp_path / "findings.geojson")
    back = gio.read_layer(path)
    assert back.crs.to_epsg() == 4326
    assert "东社村" in path.read_text(encoding="utf-8")
    np.testing.assert_allclose(back.to_crs(4549).area, 40_000, rtol=1e-6)
    x, y = back.to_crs(4549).geometry.iloc[0].exterior.coords[0]
    assert abs(x - X0) < 250
    assert abs(y - Y0) < 250


def test_errors_are_builtin_value_errors():
    for cls in (InputError, CRSError, ConfigError):
        assert issubclass(cls, GisgridError)
        assert issubclass(cls, ValueError)
    exc = InputError("bad.", path="a.gpkg", layer="grids", column="grid_id", row=3, fix="do it")
    assert str(exc) == "file a.gpkg, layer 'grids', column 'grid_id', row 3: bad. Fix: do it"


def test_file_lock_held_too_long_is_a_clear_error(tmp_path):
    import threading

    from gisgrid.io import file_lock

    lock = tmp_path / "reports" / ".gisgrid.lock"
    held, release = threading.Event(), threading.Event()

    def hold():
        with file_lock(lock):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(InputError, match="another gisgrid run") as err, file_lock(lock, timeout_s=0.3):
            pass
        assert str(lock) in str(err.value)
        assert "Fix:" in str(err.value)
    finally:
        release.set()
        t.join()
    with file_lock(lock, timeout_s=1):  # free again once the holder is done
        pass


def test_file_lock_leaves_no_file_and_still_excludes(tmp_path):
    import threading
    import time

    from gisgrid.io import file_lock

    lock = tmp_path / "reports" / ".gisgrid.lock"
    inside: list[int] = []
    overlaps: list[int] = []

    def work(n: int) -> None:
        for _ in range(15):
            with file_lock(lock, timeout_s=30):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.002)
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps  # removing the file on release never let two holders in
    assert not lock.exists()  # and no empty lock file stays behind


def test_file_names_fit_the_byte_limit_and_windows(tmp_path):
    from gisgrid.io import safe_filename
    from gisgrid.maps import safe_name

    long_name = "𠀀" * 100 + "村委会"  # 4-byte characters: 100 of them alone are 400 bytes
    for name in (safe_filename(long_name), safe_name(long_name)):
        assert len(name.encode("utf-8")) <= 130
        (tmp_path / f"owner_{name}.html").write_text("x", encoding="utf-8")  # the file system takes it
    assert safe_filename(long_name) != safe_filename("𠀀" * 100 + "居委会")  # the hash keeps them apart
    for reserved in ("CON", "nul", "Aux", "COM1", "lpt9"):
        assert safe_filename(reserved).upper() != reserved.upper()
        assert safe_name(reserved).upper() != reserved.upper()
    assert safe_filename("镇综治办") == "镇综治办"  # a plain name is kept as it is


def test_a_windows_path_turned_into_a_tab_by_toml_is_refused(tmp_path):
    from gisgrid import ConfigError
    from gisgrid.io.config import load_config

    cfg = tmp_path / "gisgrid.toml"
    cfg.write_text('[sources.villages]\npath = ".\\town.gpkg"\n[sources.grids]\npath = "a.gpkg"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="backslash starts an escape") as info:
        load_config(cfg)
    assert "single quotes" in info.value.fix
    cfg.write_text("[sources.villages]\npath = './town.gpkg'\n[sources.grids]\npath = \"a.gpkg\"\n", encoding="utf-8")
    assert load_config(cfg).sources["villages"]["path"].endswith("town.gpkg")


def test_geojson_is_what_geopandas_writes_only_faster(tmp_path):
    """io.geojson_text against GeoDataFrame.to_json: same features, properties, nulls, id arrays, geometry."""
    import json
    import math

    import geopandas as gpd
    import numpy as np
    import shapely

    from gisgrid.io import write_geojson
    from gisgrid.io.tables import geojson_text

    frame = gpd.GeoDataFrame({
        "finding_id": ["a-1", "b-2", "c-3", "d-4"],
        "grid_id": [("G1", "G2"), "G3", None, ("东", "<script>")],
        "measure": [1.5, np.nan, 3.0, float(2**40)],
        "count": np.array([1, 2, 3, 4], dtype=np.int64),
        "open": [True, False, True, False],
        "message": ['quote " and \\ and 换行\n', "", None, "x"],
    }, geometry=[shapely.Point(120.123456789, 31.5), None, shapely.Polygon(),
                 shapely.MultiLineString([[(0, 0), (1e-7, 2.5)], [(3, 4), (5, 6)]])], crs=4326)

    def close(x, y):
        if isinstance(x, float) or isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return len(x) == len(y) and all(close(p, q) for p, q in zip(x, y, strict=True))
        return x == y

    want = json.loads(frame.to_json(drop_id=True, ensure_ascii=False))
    assert close(json.loads(geojson_text(frame)), want)
    path = write_geojson(frame, tmp_path / "f.geojson")
    assert close(json.loads(path.read_text(encoding="utf-8")), want)
    assert "<script>" in path.read_text(encoding="utf-8")  # data, as text: escaping is the pages' job


def test_a_workbook_written_by_a_second_process_is_the_same_and_its_errors_come_back(tmp_path):
    """Forked, or in place where this process has other threads (earlier tests may leave some): the same
    workbook, and the same errors, raised by result()."""
    import errno
    import os

    import openpyxl
    import pandas as pd

    from gisgrid.io import start_xlsx, write_xlsx

    sheets = {"问题 findings": pd.DataFrame({"id": ["a", "=1+1", "东"], "m": [1.5, None, 3.0]}),
              "owners": pd.DataFrame({"owner": ["村委会", "+x"]})}
    here = write_xlsx(sheets, tmp_path / "here.xlsx")
    there = start_xlsx(sheets, tmp_path / "there.xlsx").result()

    def cells(path):
        book = openpyxl.load_workbook(path, read_only=True)
        return {s.title: [list(r) for r in s.iter_rows(values_only=True)] for s in book}

    assert cells(there) == cells(here)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        pending = start_xlsx(sheets, locked / "no.xlsx")
        if os.geteuid() != 0:  # root writes anywhere: then the child succeeds and nothing is to be said
            with pytest.raises(OSError, match=r"no\.xlsx") as err:
                pending.result()
            assert err.value.errno in (errno.EACCES, errno.EPERM)
        else:
            pending.result()
    finally:
        locked.chmod(0o700)
    (tmp_path / "a file").write_text("x", encoding="utf-8")
    blocked = start_xlsx(sheets, tmp_path / "a file" / "x.xlsx")
    with pytest.raises(OSError, match=r"x\.xlsx") as err:  # the child's error, errno and all, is the parent's
        blocked.result()
    assert err.value.errno in (errno.ENOTDIR, errno.EEXIST)
    start_xlsx(sheets, tmp_path / "stopped.xlsx").cancel()  # a caller that failed stops the child: no zombie
