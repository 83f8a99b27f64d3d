"""Loading a town from a config (field and value mapping, relative paths) and ``gisgrid check`` as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import X0, Y0

from gisgrid import ConfigError, InputError, SchemaError
from gisgrid.crs import wgs84_to_gcj02
from gisgrid.pipeline import load_config, load_town

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
[town]
name = "石港镇"

[sources.boundary]
path = "data/town.gpkg"
layer = "镇界"
fields = { name = "镇名" }

[sources.villages]
path = "data/村界.shp"
fields = { village_id = "村编号", name = "村名" }

[sources.grids]
path = "data/town.gpkg"
layer = "网格"
fields = { grid_id = "网格编号", village_id = "所属村" }

[sources.roads]
path = "data/roads.geojson"
fields = { road_id = "道路编号", road_class = "道路等级", name = "路名" }
values = { road_class = { "主干道" = "main", "次干道" = "secondary", "村道" = "village", "小巷" = "lane" } }

[sources.pois]
path = "data/必查点位.csv"
crs = "GCJ-02"
fields = { poi_id = "编号", kind = "类别", name = "名称" }
values = { kind = { "学校" = "school", "菜场" = "market" } }

[sources.grid_staff]
path = "data/网格员.csv"
fields = { person_id = "工号", name = "姓名", phone = "电话", role = "职务", grid_id = "网格编号" }
values = { role = { "网格长" = "grid_chief", "网格员" = "grid_member" } }

[sources.river_chiefs]
path = "data/河长.xlsx"
values = { level = { "镇级" = "town", "村级" = "village" } }

[sources.river_chiefs.fields]
person_id = "工号"
name = "姓名"
phone = "电话"
level = "级别"
river_id = "河道编号"
village_id = "村编号"

[sources.rivers]
path = "data/town.gpkg"
layer = "河道"
fields = { river_id = "河道编号", name = "河名" }
"""


def _b(x0, y0, x1, y1):
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _l(*pts):
    return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])


POI_XY = [(50.0, 30.0), (300.0, 120.0)]  # metres from (X0, Y0): where the school and the market really are


def _poi_lonlat():
    pts = gpd.GeoSeries([shapely.Point(X0 + x, Y0 + y) for x, y in POI_XY], crs=4549).to_crs(4326)
    return pts.x.to_numpy(), pts.y.to_numpy()


def write_office_town(folder: Path) -> Path:
    """The kind of files a town office sends: GBK shapefile, GeoPackage, GeoJSON, GBK CSV, XLSX; Chinese names."""
    data = folder / "data"
    data.mkdir(parents=True)
    crs = "EPSG:4549"
    pyogrio.write_dataframe(
        gpd.GeoDataFrame({"村编号": ["001", "002"], "村名": ["东社村", "西亭村"]},
                         geometry=[_b(0, 0, 200, 200), _b(200, 0, 400, 200)], crs=crs),
        data / "村界.shp", encoding="GBK",
    )
    (data / "村界.cpg").unlink(missing_ok=True)
    gpkg = data / "town.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame({"镇名": ["石港镇"]}, geometry=[_b(0, 0, 400, 200)], crs=crs),
                            gpkg, layer="镇界")
    # grids in lon/lat (CGCS2000), the villages in Gauss-Kruger metres: both end up in one analysis CRS
    grids = gpd.GeoDataFrame(
        {"网格编号": ["G01", "G02", "G03", "G04"], "所属村": ["001", "001", "002", "002"]},
        geometry=[_b(0, 0, 200, 100), _b(0, 100, 200, 200), _b(200, 0, 400, 100), _b(200, 100, 400, 200)], crs=crs,
    ).to_crs(4490)
    pyogrio.write_dataframe(grids, gpkg, layer="网格")
    pyogrio.write_dataframe(
        gpd.GeoDataFrame({"河道编号": ["H1"], "河名": ["通吕运河"]}, geometry=[_l((0, 150), (400, 150))], crs=crs),
        gpkg, layer="河道",
    )
    pyogrio.write_dataframe(
        gpd.GeoDataFrame({"道路编号": ["R1", "R2"], "道路等级": ["主干道", "小巷"], "路名": ["通港路", "东社巷"]},
                         geometry=[_l((0, 50), (400, 50)), _l((100, 0), (100, 200))], crs=crs).to_crs(4326),
        data / "roads.geojson",
    )
    # must-check points digitised on a Gaode (GCJ-02) map: their GCJ-02 numbers, as the office would have them
    glon, glat = wgs84_to_gcj02(*_poi_lonlat())
    (data / "必查点位.csv").write_bytes(
        ("编号,类别,名称,经度,纬度\n"
         f"007,学校,东社小学,{glon[0]:.10f},{glat[0]:.10f}\n"
         f"008,菜场,石港菜场,{glon[1]:.10f},{glat[1]:.10f}\n").encode("gbk")
    )
    (data / "网格员.csv").write_bytes(
        ("工号,姓名,电话,职务,网格编号\n"
         "0001,张三,13800000001,网格长,G01\n"
         "0002,李四,13800000002,网格长,G02\n"
         "0003,王五,,网格员,G03\n"
         "0004,赵六,13800000004,网格长,G09\n").encode("gbk")
    )
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["工号", "姓名", "电话", "级别", "河道编号", "村编号"])
    ws.append(["0101", "钱七", 13900000001, "镇级", "H1", None])
    ws.append(["0102", "孙八", 13900000002, "村级", "H1", "001"])
    wb.save(data / "河长.xlsx")
    cfg = folder / "gisgrid.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    return cfg


@pytest.fixture(scope="module")
def _office_master(tmp_path_factory):
    return write_office_town(tmp_path_factory.mktemp("office") / "石港镇")


@pytest.fixture
def office_config(_office_master, tmp_path):
    """A fresh copy of the office's files (tests may break them)."""
    folder = shutil.copytree(_office_master.parent, tmp_path / "石港镇")
    return folder / _office_master.name


def _edit(cfg: Path, old: str, new: str, name: str = "edited.toml") -> Path:
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    out = cfg.with_name(name)
    out.write_text(text.replace(old, new), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- load_town from a config
def test_load_town_maps_chinese_fields_and_values(office_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths are relative to the config, not the working folder
    town = load_town(office_config)
    assert town.name == "石港镇"
    assert town.crs.to_epsg() == 4549
    assert town.villages["village_id"].tolist() == ["001", "002"]
    assert town.villages["name"].tolist() == ["东社村", "西亭村"]
    assert town.grids["grid_id"].tolist() == ["G01", "G02", "G03", "G04"]
    assert town.grids["village_id"].tolist() == ["001", "001", "002", "002"]
    assert town.roads["road_class"].tolist() == ["main", "lane"]
    assert town.roads["name"].tolist() == ["通港路", "东社巷"]
    assert town.pois["kind"].tolist() == ["school", "market"]
    assert town.pois["poi_id"].tolist() == ["007", "008"]
    assert town.grid_staff["person_id"].tolist() == ["0001", "0002", "0003", "0004"]
    assert town.grid_staff["phone"].tolist() == ["13800000001", "13800000002", None, "13800000004"]
    assert town.grid_staff["role"].tolist() == ["grid_chief", "grid_chief", "grid_member", "grid_chief"]
    assert town.river_chiefs["phone"].tolist() == ["13900000001", "13900000002"]
    assert town.river_chiefs["level"].tolist() == ["town", "village"]
    # the grids came in lon/lat and the villages in metres: they still tile the same 400 m x 200 m
    assert town.grids.union_all().symmetric_difference(town.villages.union_all()).area < 0.01
    assert town.area_m2 == pytest.approx(80_000, rel=1e-6)
    # the roster person in a grid that does not exist is kept and reported
    assert len(town.issues) == 1
    issue = town.issues.iloc[0]
    assert (issue["kind"], issue["person_id"], issue["value"]) == ("staff_unplaced", "0004", "G09")
    assert town.sources["villages"]["path"] == str(office_config.parent / "data" / "村界.shp")


def test_gcj02_points_are_converted_on_load(office_config):
    town = load_town(office_config)
    # the points land where they really are (to the millimetre), not ~480 m off
    expected = gpd.GeoSeries([shapely.Point(X0 + x, Y0 + y) for x, y in POI_XY], crs=4549).to_crs(town.crs)
    assert town.pois.geometry.distance(expected, align=False).max() < 0.005
    assert town.grids.geometry.iloc[0].contains(town.pois.geometry.iloc[0])


def test_load_config_from_a_folder(office_config):
    cfg = load_config(office_config.parent)
    assert cfg.path == office_config.resolve()
    assert cfg.sources["grids"]["path"] == str((office_config.parent / "data" / "town.gpkg").resolve())
    assert cfg.sources["grids"]["layer"] == "网格"
    with pytest.raises(ConfigError, match=r"no gisgrid\.toml"):
        load_config(office_config.parent / "data")


def test_missing_grids_source_is_a_config_error(office_config):
    text = office_config.read_text(encoding="utf-8")
    start = text.index("[sources.grids]")
    end = text.index("[sources.roads]")
    cfg = office_config.with_name("no_grids.toml")
    cfg.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[sources.grids\] is missing") as info:
        load_town(cfg)
    assert info.value.path == str(cfg.resolve())
    assert "[sources.grids]" in info.value.fix


def test_unknown_source_and_unknown_key_are_config_errors(office_config):
    cfg = _edit(office_config, "[sources.rivers]", "[sources.buildings]")
    with pytest.raises(ConfigError, match="unknown source") as info:
        load_town(cfg)
    assert "grids" in info.value.fix
    cfg = _edit(office_config, 'layer = "网格"', 'layer = "网格"\nlayr = "x"')
    with pytest.raises(ConfigError, match="layr"):
        load_town(cfg)
    cfg = _edit(office_config, '[town]', '[towm]\nx = 1\n[town]')
    with pytest.raises(ConfigError, match="unknown section"):
        load_town(cfg)
    cfg = _edit(office_config, 'path = "data/roads.geojson"\n', '')
    with pytest.raises(ConfigError, match="no path"):
        load_town(cfg)
    cfg = _edit(office_config, 'fields = { name = "镇名" }', 'fields = "镇名"')
    with pytest.raises(ConfigError, match="must be a table"):
        load_town(cfg)


def test_field_mapped_to_a_missing_column_is_a_schema_error(office_config):
    cfg = _edit(office_config, 'village_id = "所属村"', 'village_id = "所属村庄"')
    with pytest.raises(SchemaError, match="所属村庄") as info:
        load_town(cfg)
    exc = info.value
    assert exc.path == str((office_config.parent / "data" / "town.gpkg").resolve())
    assert exc.layer == "网格"
    assert exc.column == "所属村庄"
    assert "'网格编号', '所属村'" in str(exc)
    assert "[sources.grids]" in exc.fix


def test_unmapped_road_class_suggests_values(office_config):
    cfg = _edit(office_config, '"小巷" = "lane"', '"巷道" = "lane"')
    with pytest.raises(SchemaError, match="小巷") as info:
        load_town(cfg)
    assert info.value.path.endswith("roads.geojson")
    assert "values" in info.value.fix


def test_unmapped_roster_value_names_file_lines(office_config):
    cfg = _edit(office_config, '"网格员" = "grid_member"', '"协管员" = "grid_member"')
    with pytest.raises(SchemaError, match="网格员") as info:
        load_town(cfg)
    assert info.value.path.endswith("网格员.csv")
    assert "line 4" in str(info.value)  # header is line 1; 王五 is on line 4


def test_values_keyed_by_the_source_column_and_typos(office_config):
    cfg = _edit(office_config, 'values = { road_class = {', 'values = { "道路等级" = {')
    assert load_town(cfg).roads["road_class"].tolist() == ["main", "lane"]
    # a typo would otherwise silently leave 学校 unmapped: the school would not be a must-check point
    cfg = _edit(office_config, 'values = { kind = {', 'values = { knd = {')
    with pytest.raises(SchemaError, match="knd") as info:
        load_town(cfg)
    assert info.value.path.endswith("必查点位.csv")
    assert "values" in info.value.fix


def test_numeric_codes_map_through_values(tmp_path, town_frames):
    roads = town_frames["roads"].assign(等级=[1.0, 4.0]).drop(columns="road_class")  # codes stored as doubles
    pyogrio.write_dataframe(roads, tmp_path / "roads.gpkg")
    pyogrio.write_dataframe(town_frames["villages"], tmp_path / "town.gpkg", layer="villages")
    pyogrio.write_dataframe(town_frames["grids"], tmp_path / "town.gpkg", layer="grids")
    pyogrio.write_dataframe(town_frames["grid_staff"], tmp_path / "town.gpkg", layer="网格员")
    cfg = tmp_path / "gisgrid.toml"
    cfg.write_text(
        '[sources.villages]\npath = "town.gpkg"\nlayer = "villages"\n'
        '[sources.grids]\npath = "town.gpkg"\nlayer = "grids"\n'
        '[sources.grid_staff]\npath = "town.gpkg"\nlayer = "网格员"\n'  # a roster table in a GeoPackage, by layer
        '[sources.roads]\npath = "roads.gpkg"\nfields = { road_class = "等级" }\n'
        'values = { road_class = { "1" = "main", "4" = "lane" } }\n',
        encoding="utf-8",
    )
    town = load_town(cfg)
    assert town.roads["road_class"].tolist() == ["main", "lane"]
    assert town.grid_staff["person_id"].tolist() == ["S1", "S2", "S3", "S4"]


def test_declared_encoding_and_analysis_crs(office_config):
    cfg = _edit(office_config, 'path = "data/网格员.csv"', 'path = "data/网格员.csv"\nencoding = "utf-8"')
    with pytest.raises(InputError, match="cannot be decoded") as info:
        load_town(cfg)
    assert "网格员.csv" in str(info.value)
    cfg = _edit(office_config, 'name = "石港镇"', 'name = "石港镇"\ncrs = "EPSG:32651"')
    assert load_town(cfg).crs.to_epsg() == 32651


def test_missing_data_file_names_it(office_config):
    cfg = _edit(office_config, "data/roads.geojson", "data/道路.geojson")
    with pytest.raises(InputError, match="does not exist") as info:
        load_town(cfg)
    assert "道路.geojson" in str(info.value)
    assert "relative to the config" in info.value.fix


def test_geopackage_with_canonical_layer_names(tmp_path, town_frames):
    path = tmp_path / "town.gpkg"
    for name in ("boundary", "villages", "grids", "roads", "rivers", "pois"):
        pyogrio.write_dataframe(town_frames[name], path, layer=name)
    for name in ("grid_staff", "river_chiefs"):  # attribute tables, no geometry
        pyogrio.write_dataframe(town_frames[name], path, layer=name)
    assert dict(pyogrio.list_layers(path))["grid_staff"] is None
    town = load_town(path)
    assert town.name == "测试镇"
    assert len(town.grids) == 4
    assert len(town.roads) == 2
    assert len(town.pois) == 1
    assert town.grid_staff["phone"].tolist() == ["13800000001", "13800000002", "13800000003", "13800000004"]
    assert town.river_chiefs["village_id"].tolist() == [None, "V1"]
    assert len(town.issues) == 0


def test_geopackage_without_grids_layer(tmp_path, town_frames):
    path = tmp_path / "town.gpkg"
    pyogrio.write_dataframe(town_frames["villages"], path, layer="villages")
    pyogrio.write_dataframe(town_frames["grids"], path, layer="网格")
    with pytest.raises(ConfigError, match="no 'grids' layer") as info:
        load_town(path)
    assert "网格" in str(info.value)


def test_truncated_geopackage_given_directly_is_an_input_error(tmp_path, town_frames):
    path = tmp_path / "town.gpkg"
    for name in ("villages", "grids"):
        pyogrio.write_dataframe(town_frames[name], path, layer=name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated") as info:
        load_town(path)
    assert info.value.path == str(path)


# --------------------------------------------------------------------------- the CLI
def run_cli(*calls: tuple[str, ...], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run ``python -m gisgrid ARGS`` for each call, concurrently (each start-up costs a second or two)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [(args, subprocess.Popen([sys.executable, "-m", "gisgrid", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)) for args in calls]
    done = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def test_cli_check_good_data_prints_the_table(office_config, tmp_path):
    res, quiet = run_cli(("check", str(office_config)), ("check", "-q", str(office_config)), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "石港镇" in out
    assert "EPSG:4549" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for layer, rows in {"boundary": "1", "villages": "2", "grids": "4", "roads": "2", "rivers": "1", "pois": "2",
                        "grid_staff": "4", "river_chiefs": "2"}.items():
        assert lines[layer][1] == rows, (layer, lines[layer])
    assert "G09" in out  # the unplaced roster person is shown
    assert "Traceback" not in res.stderr
    assert quiet.returncode == 0, quiet.stderr
    assert len(quiet.stdout.strip().splitlines()) == 1
    assert "4 grids" in quiet.stdout
    assert "1 issues" in quiet.stdout


def test_cli_check_truncated_geopackage_exits_2_with_one_line(office_config, tmp_path):
    gpkg = office_config.parent / "data" / "town.gpkg"
    gpkg.write_bytes(gpkg.read_bytes()[: gpkg.stat().st_size // 2])
    res, debug = run_cli(("check", str(office_config)), ("check", "--debug", str(office_config)), cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr
    assert err[0].startswith("gisgrid check: error:")
    assert str(gpkg.resolve()) in err[0]
    assert "Fix:" in err[0]
    assert "Traceback" not in res.stderr
    assert debug.returncode not in (0, 2)
    assert "Traceback" in debug.stderr
    assert "InputError" in debug.stderr


def test_cli_check_bad_data_and_bad_config_exit_2(office_config, tmp_path):
    # village codes mapped as grid ids: duplicates
    cfg = _edit(office_config, 'grid_id = "网格编号", village_id = "所属村"',
                'grid_id = "所属村", village_id = "网格编号"')
    res, missing = run_cli(("check", str(cfg)), ("check", str(tmp_path / "nowhere.toml")), cwd=tmp_path)
    assert res.returncode == 2
    assert "duplicate" in res.stderr
    assert "town.gpkg" in res.stderr
    assert "'001'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr
    assert missing.returncode == 2
    assert "nowhere.toml" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cli_check_repairs_are_listed(tmp_path, town_frames):
    grids = town_frames["grids"].copy()
    grids.loc[0, "geometry"] = shapely.Polygon([(X0, Y0), (X0 + 200, Y0 + 100), (X0 + 200, Y0), (X0, Y0 + 100)])
    path = tmp_path / "town.gpkg"
    pyogrio.write_dataframe(town_frames["villages"], path, layer="villages")
    pyogrio.write_dataframe(grids, path, layer="grids")
    pyogrio.write_dataframe(pd.DataFrame(town_frames["grid_staff"]), path, layer="grid_staff")
    (res,) = run_cli(("check", str(path)), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "repaired grids G1" in res.stdout
    assert "make_valid" in res.stdout


def test_cli_check_names_the_file_line_of_a_roster_issue(tmp_path):
    from gisgrid.pipeline import write_demo

    write_demo(tmp_path)
    staff = pd.read_csv(tmp_path / "grid_staff.csv", encoding="gbk", dtype=str)
    grid_col = staff.columns[-1]
    staff.loc[4, grid_col] = "NO-SUCH-GRID"
    staff.to_csv(tmp_path / "grid_staff.csv", index=False, encoding="gbk")
    res = subprocess.run([sys.executable, "-m", "gisgrid", "check", str(tmp_path / "gisgrid.toml")],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "NO-SUCH-GRID" in ln)
    assert "line 6" in line  # header is line 1, data row 4 is line 6
