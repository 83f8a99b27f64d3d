"""Command-center maps: layers, controls, escaping, phones, GCJ-02, inline assets, per-village/owner maps.

The helpers at the top (a hand-made town whose every number is known, its hostile-names twin, and a reader
for the layer data in a rendered page) are shared with ``test_maps_browser.py``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, Point, box

from gisgrid import maps
from gisgrid._errors import ConfigError
from gisgrid.analysis import analyze
from gisgrid.crs import wgs84_to_gcj02
from gisgrid.demo import make_demo
from gisgrid.io import config as config_mod
from gisgrid.maps.layers import _encode_geometries, _simplify, _varints
from gisgrid.maps.prepare import _prepare
from gisgrid.model import Town

CRS = "EPSG:4549"
X0, Y0 = 500_000.0, 3_550_000.0

PAYLOADS = (
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "${window.__xss=1}",
    "</script><script>window.__xss=1</script>",
    "\"'><svg onload=window.__xss=1>",
    "`;window.__xss=1;`",
    "{{7*7}}\\u003cb\\u003e",
)

PHONES = {"S1": "13812340000", "S2": "13900001111", "S3": "13711112222", "S4": "15055556666"}


def _sq(x0: float, x1: float, y0: float = Y0, y1: float = Y0 + 1000) -> Any:
    return box(X0 + x0, y0, X0 + x1, y1)


def frames(names: dict[str, str] | None = None) -> dict[str, Any]:
    """Layers and rosters of the hand-made town; ``names`` renames every id and name (hostile test)."""
    n = names or {}

    def t(key: str) -> str:
        return n.get(key, key)

    villages = gpd.GeoDataFrame(
        {"village_id": [t("V1"), t("V2")], "name": [t("东村"), t("西村")]},
        geometry=[_sq(0, 2000), _sq(2000, 4000)], crs=CRS)
    grids = gpd.GeoDataFrame(
        {"grid_id": [t("V1-G1"), t("V1-G2"), t("V2-G1"), t("V2-G2")],
         "village_id": [t("V1"), t("V1"), t("V2"), t("V2")],
         "name": [t("一网格"), t("二网格"), t("三网格"), t("四网格")]},
        # V2-G2 stops 100 m short of the village edge: a 100 m x 1 km gap.
        geometry=[_sq(0, 1000), _sq(1000, 2000), _sq(2000, 3000), _sq(3000, 3900)], crs=CRS)
    roads = gpd.GeoDataFrame(
        {"road_id": [t("R1"), t("R2"), t("R3")], "road_class": ["main", "lane", "village"],
         "name": [t("人民路"), t("小巷"), t("村道")]},
        geometry=[LineString([(X0 + 100, Y0 + 500), (X0 + 3800, Y0 + 500)]),
                  LineString([(X0 + 3500, Y0 + 300), (X0 + 3990, Y0 + 300)]),
                  LineString([(X0 + 500, Y0 + 100), (X0 + 500, Y0 + 900)])], crs=CRS)
    rivers = gpd.GeoDataFrame({"river_id": [t("H1")], "name": [t("通吕河")]},
                              geometry=[LineString([(X0 + 50, Y0 + 800), (X0 + 3950, Y0 + 800)])], crs=CRS)
    pois = gpd.GeoDataFrame({"poi_id": [t("P1"), t("P2")], "kind": ["school", "market"],
                             "name": [t("东村小学"), t("西村市场")]},
                            geometry=[Point(X0 + 300, Y0 + 300), Point(X0 + 2500, Y0 + 300)], crs=CRS)
    staff = pd.DataFrame({
        "person_id": ["S1", "S2", "S3", "S4"],
        "name": [t("张三"), t("李四"), t("王五"), t("陈七")],
        "phone": [PHONES["S1"], PHONES["S2"], PHONES["S3"], PHONES["S4"]],
        "role": ["grid_chief", "grid_chief", "grid_chief", "grid_member"],
        "grid_id": [t("V1-G1"), t("V1-G2"), t("V2-G1"), t("V1-G1")],
    })
    chiefs = pd.DataFrame({"person_id": ["C1", "C2"], "name": [t("赵六"), t("孙八")],
                           "phone": ["13600000001", "13600000002"],
                           "level": ["town", "village"], "river_id": [t("H1"), t("H1")], "village_id": [None, t("V1")]})
    boundary = gpd.GeoDataFrame({"name": [t("测试镇")]}, geometry=[_sq(0, 4000)], crs=CRS)
    return {"boundary": boundary, "villages": villages, "grids": grids, "roads": roads, "rivers": rivers,
            "pois": pois, "grid_staff": staff, "river_chiefs": chiefs}


def small_town() -> Town:
    return Town.from_frames(**frames(), crs=CRS)


HOSTILE_KEYS = ("V1", "V2", "东村", "西村", "V1-G1", "V1-G2", "V2-G1", "V2-G2", "一网格", "二网格", "三网格", "四网格",
                "R1", "R2", "R3", "人民路", "小巷", "村道", "H1", "通吕河", "P1", "P2", "东村小学", "西村市场",
                "张三", "李四", "王五", "陈七", "赵六", "孙八", "测试镇")


def hostile_names() -> dict[str, str]:
    """Every id and name becomes a payload (made unique with a short suffix)."""
    return {key: f"{PAYLOADS[k % len(PAYLOADS)]}{k}" for k, key in enumerate(HOSTILE_KEYS)}


def hostile_town() -> Town:
    return Town.from_frames(**frames(hostile_names()), crs=CRS)


_SPEC = re.compile(r"GG\.layer\(\w+, (\{.*?\})\);\n")
_BLOCK = re.compile(r'<script type="application/json" id="(gg-d\d+)">(.*?)</script>', re.S)


_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _ints(text: str) -> list[int]:
    """The page's compact integers: 5 bits per character, low bits first, 32 means more follows."""
    out, v, shift = [], 0, 0
    for ch in text:
        d = _DIGITS.index(ch)
        v |= (d & 31) << shift
        if d & 32:
            shift += 5
        else:
            out.append(v)
            v, shift = 0, 0
    assert shift == 0, "a value was cut off"
    return out


def _column(c: Any, n: int) -> list[Any]:
    return c if isinstance(c, list) else [c["u"][i] for i in _ints(c["i"])]


def _line(text: str, s: int) -> list[list[float]]:
    deltas = [(v >> 1) if v % 2 == 0 else -((v + 1) >> 1) for v in _ints(text)]  # zigzag back to signed
    xy = np.cumsum(np.asarray(deltas, dtype=np.int64).reshape(-1, 2), axis=0) / s
    return xy.tolist()


def _geometry(kind: str, c: Any, s: int) -> dict[str, Any]:
    if kind == "Point":
        return {"type": kind, "coordinates": _line(c, s)[0]}
    if kind in ("MultiPoint", "LineString"):
        return {"type": kind, "coordinates": _line(c, s)}
    if kind in ("Polygon", "MultiLineString"):
        return {"type": kind, "coordinates": [_line(r, s) for r in c]}
    return {"type": kind, "coordinates": [[_line(r, s) for r in p] for p in c]}


def layer_data(page: str) -> dict[str, dict[str, Any]]:
    """Layer key -> {"spec", "rows" (property dicts), "geoms" (GeoJSON geometries)}, decoded like GG.data does."""
    blocks = {m.group(1): json.loads(m.group(2)) for m in _BLOCK.finditer(page)}
    out = {}
    for m in _SPEC.finditer(page):
        spec = json.loads(m.group(1))
        rows: list[dict[str, Any]] = []
        geoms: list[dict[str, Any]] = []
        if spec.get("data"):
            d = blocks[spec["data"]]
            n = len(d["g"])
            cols = [_column(c, n) for c in d["c"]]
            rows = [{k: cols[j][i] for j, k in enumerate(d["k"])} for i in range(n)]
            types = _column(d["t"], n)
            geoms = [_geometry(types[i], d["g"][i], d["s"]) for i in range(n)]
        out[spec["key"]] = {"spec": spec, "rows": rows, "geoms": geoms}
    return out


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo_assessment():
    return analyze(make_demo().town())


@pytest.fixture(scope="module")
def small_assessment():
    return analyze(small_town())


@pytest.fixture(scope="module")
def hostile_assessment():
    return analyze(hostile_town())


@pytest.fixture(scope="module")
def demo_page(demo_assessment):
    return maps.command_center_map(demo_assessment).get_root().render()


def _render(assessment: Any, **kw: Any) -> str:
    return maps.command_center_map(assessment, **kw).get_root().render()


# ----------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("payload", PAYLOADS)
def test_esc_neutralises_every_payload(payload):
    out = maps.esc(payload)
    assert not set(out) & set("<>\"'`${}\\")
    assert html.unescape(out) == payload


def test_esc_none_and_nan():
    assert maps.esc(None) == ""
    assert maps.esc(float("nan")) == ""
    assert maps.esc(12) == "12"


@pytest.mark.parametrize(("raw", "masked"), [
    ("13812340000", "138****0000"),
    ("138-1234-0000", "138-****-0000"),
    ("13812340000, 13900001111", "138****0000, 139****1111"),
    ("0513-81234567", "051*-****4567"),
    ("12345", "****5"),
    (None, None),
    ("", None),
])
def test_mask_phone(raw, masked):
    assert maps.mask_phone(raw) == masked


def test_colour_graph_proper_and_few_colours(demo_assessment):
    grids = demo_assessment.town.grids
    colours = maps.grid_colours(grids.geometry)
    pairs = shapely.STRtree(grids.geometry.values).query(grids.geometry.values, predicate="intersects")
    i, j = pairs[:, pairs[0] != pairs[1]]
    assert (colours[i] != colours[j]).all()
    assert colours.max() + 1 <= len(maps.PALETTE)


def test_colour_graph_small_cases():
    assert maps.colour_graph(0, [], []).tolist() == []
    # A triangle needs three colours; a path two.
    tri = maps.colour_graph(3, [0, 1, 2], [1, 2, 0])
    assert len(set(tri.tolist())) == 3
    path = maps.colour_graph(4, [0, 1, 2], [1, 2, 3])
    assert all(path[a] != path[b] for a, b in [(0, 1), (1, 2), (2, 3)])
    assert path.max() <= 1


# ----------------------------------------------------------------------------- the command-center page
def test_every_layer_and_control_is_on_the_page(demo_page, demo_assessment):
    page = demo_page
    data = layer_data(page)
    expected = {"boundary", "grids", "villages", "roads_main", "roads_secondary", "roads_village", "roads_lane",
                "rivers", "corridors", "pois", "gaps", "overlaps", "uncovered", "unassigned", "sensitive", "other",
                "veto"}
    assert expected <= set(data)
    town = demo_assessment.town
    assert len(data["grids"]["rows"]) == len(town.grids)
    assert len(data["villages"]["rows"]) == len(town.villages)
    assert sum(len(data[f"roads_{c}"]["rows"]) for c in ("main", "secondary", "village", "lane")) == len(town.roads)
    assert len(data["pois"]["rows"]) == len(town.pois)
    f = demo_assessment.findings
    assert len(data["gaps"]["rows"]) == int((f["kind"] == "area_gap").sum())
    assert len(data["veto"]["rows"]) == int((f["severity"] == "veto").sum())
    # Minor road classes and corridors start hidden and load lazily.
    for key in ("roads_village", "roads_lane", "corridors"):
        assert data[key]["spec"]["lazy"] is True
    assert data["grids"]["spec"]["lazy"] is False
    # Reaches carry their chiefs.
    assert any(r.get("t") or r.get("c") for r in data["rivers"]["rows"])
    # Controls: layers, search, legend, title; the offline default has our own fullscreen, measure and minimap.
    for needle in ("L.control.layers(", '"preferCanvas": true', "GG.finish(", '"search":', '"legend":', '"title":',
                   '"fullscreen":true', '"measure":true', '"minimap":'):
        assert needle in page, needle
    # Hatched gaps (SVG pattern, SVG renderer, own pane) and pulsing veto items; a veto point is an alarm marker.
    assert 'id="gg-hatch"' in page
    assert data["gaps"]["spec"]["svg"] is True
    assert data["gaps"]["spec"]["style"]["base"]["fillColor"] == "url(#gg-hatch)"
    assert data["veto"]["spec"]["style"]["base"]["className"] == "gg-pulse"
    assert data["veto"]["spec"]["point"] == {"kind": "alarm"}
    # Sensitive sections are context: off when the map opens (loaded when switched on), light, under the findings.
    assert data["sensitive"]["spec"]["lazy"] is True
    assert data["sensitive"]["spec"]["style"]["base"]["fillOpacity"] <= 0.1
    assert not data["sensitive"]["spec"].get("front")
    # Title: town, date, headline numbers.
    cfg = json.loads(re.search(r"GG\.finish\(\w+, (\{.*\})\);", page).group(1))
    title = html.unescape(cfg["title"])
    assert town.name in title
    assert re.search(r"\d{4}-\d{2}-\d{2}", title)
    t = demo_assessment.totals
    assert f"{np.floor(t['area_coverage'] * 10000) / 100:.2f}%" in title
    assert f"veto {t['veto']}" in re.sub(r"<[^>]+>", "", title)
    legend = html.unescape(cfg["legend"])
    assert "覆盖空白 gaps" in legend  # the report's word for area_gap (gisgrid.vocab)
    assert "一票否决 veto items" in legend


def test_grid_colours_differ_between_neighbours_on_the_page(demo_page):
    rows = layer_data(demo_page)["grids"]
    geoms = np.array([shapely.from_geojson(json.dumps(g)) for g in rows["geoms"]])
    ks = np.array([r["_k"] for r in rows["rows"]])
    pairs = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    i, j = pairs[:, pairs[0] != pairs[1]]
    assert (ks[i] != ks[j]).all()


def test_tooltips_and_popups_carry_the_fields(demo_page, demo_assessment):
    data = layer_data(demo_page)
    grids = data["grids"]
    assert [f[0] for f in grids["spec"]["tip"]] == ["g", "v", "c"]
    assert {"m", "p"} <= {f[0] for f in grids["spec"]["pop"]}
    staffing = demo_assessment.responsibility.staffing.set_index("grid_id")
    row = grids["rows"][0]
    gid = html.unescape(row["g"])
    assert html.unescape(row["c"]) == staffing.loc[gid, "chief_name"]
    finding_fields = {f[0] for f in data["gaps"]["spec"]["pop"]}
    assert {"k", "s", "z", "o", "m", "fs"} <= finding_fields
    gap = data["gaps"]["rows"][0]
    assert gap["k"].startswith("覆盖空白 · area_gap")
    assert gap["z"]
    assert gap["o"]


def test_first_seen_shown_when_history_exists(small_assessment):
    f = small_assessment.findings.copy()
    f["first_seen"] = "2026-01-05"
    a = type(small_assessment)(**{**small_assessment.__dict__, "findings": f})
    rows = layer_data(_render(a))["gaps"]["rows"]
    assert rows
    assert all(r["fs"] == "2026-01-05" for r in rows)


def test_phones_masked_unless_asked(small_assessment):
    page = _render(small_assessment)
    for raw in PHONES.values():
        assert raw not in page
    phones = {r["p"] for r in layer_data(page)["grids"]["rows"] if r.get("p")}
    assert "138****0000" in phones
    shown = _render(small_assessment, show_phones=True)
    assert PHONES["S1"] in shown


# ----------------------------------------------------------------------------- safety
def test_hostile_names_never_reach_the_page_raw(hostile_assessment):
    page = _render(hostile_assessment, assets="inline", basemap="none")
    for payload in PAYLOADS:
        assert payload not in page, payload
    assert page.lower().count("</script") == page.lower().count("<script")
    # The names still arrive, as text: decoding the escaped properties gives back the payloads.
    data = layer_data(page)
    names = {html.unescape(r["n"]) for r in data["villages"]["rows"]}
    assert names == {hostile_names()["东村"], hostile_names()["西村"]}
    chiefs = {html.unescape(r["c"]) for r in data["grids"]["rows"]}
    assert hostile_names()["张三"] in chiefs
    assert "49" not in {html.unescape(r["g"]) for r in data["grids"]["rows"]}
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert "<" not in title
    assert html.unescape(title).startswith(hostile_names()["测试镇"])


def test_hostile_layer_control_names_are_escaped(hostile_assessment):
    page = _render(hostile_assessment, village=hostile_names()["V1"])
    block = re.search(r"overlays :  \{(.*?)\},", page, re.S).group(1)
    assert "<script" not in block
    assert "window.__xss" not in block


# ----------------------------------------------------------------------------- basemaps
def test_gcj02_shift_on_known_coordinates():
    # Published test vector (wandergis/coordtransform): WGS84 116.404, 39.915 -> GCJ-02 116.41024449916938,
    # 39.91640428150164. A one-village town in Beijing with a school exactly there.
    crs = "EPSG:4326"
    vil = gpd.GeoDataFrame({"village_id": ["B1"], "name": ["北村"]}, geometry=[box(116.39, 39.90, 116.42, 39.93)],
                           crs=crs)
    grd = gpd.GeoDataFrame({"grid_id": ["B1-G1"], "village_id": ["B1"]}, geometry=[box(116.39, 39.90, 116.42, 39.93)],
                           crs=crs)
    poi = gpd.GeoDataFrame({"poi_id": ["X"], "kind": ["school"], "name": ["校"]}, geometry=[Point(116.404, 39.915)],
                           crs=crs)
    a = analyze(Town.from_frames(villages=vil, grids=grd, pois=poi))
    plain = layer_data(_render(a, basemap="osm"))["pois"]["geoms"][0]["coordinates"]
    shifted = layer_data(_render(a, basemap="gaode"))["pois"]["geoms"][0]["coordinates"]
    assert plain == pytest.approx([116.404, 39.915], abs=2e-6)
    assert shifted == pytest.approx([116.41024449916938, 39.91640428150164], abs=2e-6)


def test_gcj02_shift_moves_every_overlay_in_nantong(small_assessment):
    plain = layer_data(_render(small_assessment, basemap="osm"))
    gaode = layer_data(_render(small_assessment, basemap="gaode"))
    for key in ("grids", "villages", "roads_main", "rivers", "pois", "gaps", "boundary"):
        a = shapely.get_coordinates(shapely.from_geojson(json.dumps(plain[key]["geoms"][0])))
        b = shapely.get_coordinates(shapely.from_geojson(json.dumps(gaode[key]["geoms"][0])))
        lon, lat = wgs84_to_gcj02(a[:, 0], a[:, 1])
        assert np.allclose(b, np.column_stack([lon, lat]), atol=2e-6), key
        metres = gpd.GeoSeries([Point(a[0]), Point(b[0])], crs=4326).to_crs(4549)
        assert 300 < metres.iloc[0].distance(metres.iloc[1]) < 700, key


def test_tianditu_needs_a_key(small_assessment, monkeypatch):
    monkeypatch.delenv("TIANDITU_KEY", raising=False)
    with pytest.raises(ConfigError, match="Tianditu"):
        maps.command_center_map(small_assessment, basemap="tianditu")
    page = _render(small_assessment, basemap="tianditu", tianditu_key="abc123")
    for layer in ("vec_w", "cva_w", "img_w", "cia_w"):
        assert f"tianditu.gov.cn/{layer}/wmts" in page
    assert "tk=abc123" in page
    monkeypatch.setenv("TIANDITU_KEY", "fromenv")
    assert "tk=fromenv" in _render(small_assessment, basemap="tianditu-img")


def test_other_basemaps_and_intranet_tiles(small_assessment):
    assert "tile.openstreetmap.org" in _render(small_assessment)
    assert "autonavi.com" in _render(small_assessment, basemap="gaode-satellite")
    none = _render(small_assessment, basemap="none")
    assert "tile.openstreetmap.org" not in none
    assert "tile_layer_" not in none
    intra = _render(small_assessment, tiles_url="https://tiles.gov.local/{z}/{x}/{y}.png")
    assert "https://tiles.gov.local/{z}/{x}/{y}.png" in intra
    assert "openstreetmap" not in intra
    with pytest.raises(ConfigError, match="basemap"):
        maps.command_center_map(small_assessment, basemap="google")
    with pytest.raises(ConfigError, match="assets"):
        maps.command_center_map(small_assessment, assets="local")


def test_cdn_page_links_leaflet_and_its_plugins(small_assessment):
    page = _render(small_assessment, assets="cdn")
    for needle in ("cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js", "L.control.fullscreen(",
                   "L.Control.Measure(", "L.Control.MiniMap(", "@keyframes gg-pulse", "GG.finish("):
        assert needle in page, needle
    assert "assets/leaflet.js" not in page


def test_default_page_links_the_shared_assets_folder(small_assessment, tmp_path):
    m = maps.command_center_map(small_assessment, basemap="none", assets="assets")
    page = maps.save_map(m, tmp_path / "m.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert [u.split("?")[0] for u in links] == ["assets/leaflet.css", "assets/leaflet.js", "assets/gisgrid.css",
                                                "assets/gisgrid.js"]
    for u in links:  # each link names its file's content, so a browser never keeps a stale copy
        name, version = u.split("?v=")
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest().startswith(version)
    assert "Leaflet 1.9.3" in (tmp_path / "assets" / "leaflet.js").read_text(encoding="utf-8")
    assert "url(images/" not in (tmp_path / "assets" / "leaflet.css").read_text(encoding="utf-8")
    assert "Leaflet 1.9.3" not in page  # not embedded: one shared copy
    assert "https://" not in page.replace("https://www.openstreetmap.org", "")
    assert maps.ASSETS == config_mod.MAP_ASSETS
    # the files are written once: an unchanged folder is left as it is
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "assets").iterdir()}
    maps.save_map(m, tmp_path / "n.html")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "assets").iterdir()} == before


def test_inline_page_fetches_nothing(small_assessment):
    page = _render(small_assessment, assets="inline", basemap="none")
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert "url(images/" not in page
    assert "data:image/png;base64," in page
    assert "Leaflet 1.9.3" in page  # the embedded library's banner
    for cdn in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "code.jquery.com", "bootstrapcdn"):
        assert cdn not in page
    cfg = json.loads(re.search(r"GG\.finish\(\w+, (\{.*\})\);", page).group(1))
    assert cfg["fullscreen"]
    assert cfg["measure"]
    assert cfg["minimap"]
    assert "内置简版" in html.unescape(cfg["legend"])


# ----------------------------------------------------------------------------- village and owner maps
def test_owner_map_shows_only_that_owners_grids_and_findings(small_assessment):
    page = _render(small_assessment, owner="张三")
    data = layer_data(page)
    assert [html.unescape(r["g"]) for r in data["grids"]["rows"]] == ["V1-G1"]
    owners = {html.unescape(r["o"]) for k in ("gaps", "overlaps", "uncovered", "unassigned", "other", "veto")
              for r in data[k]["rows"]}
    assert owners <= {o for o in owners if "张三" in o}
    for other in ("李四", "王五", PHONES["S2"], "V2-G1"):
        assert other not in html.unescape(page)
    assert "张三" in html.unescape(page)


def test_owner_map_unknown_owner(small_assessment):
    with pytest.raises(ConfigError, match="belongs to"):
        maps.command_center_map(small_assessment, owner="nobody")


def test_village_map(small_assessment):
    data = layer_data(_render(small_assessment, village="V2"))
    assert {html.unescape(r["g"]) for r in data["grids"]["rows"]} == {"V2-G1", "V2-G2"}
    assert len(data["gaps"]["rows"]) == 1  # the 100 m strip at the east edge lies in V2
    with pytest.raises(ConfigError, match="no village"):
        maps.command_center_map(small_assessment, village="V9")


def test_write_maps(small_assessment, tmp_path):
    files = maps.write_maps(small_assessment, tmp_path)
    names = {p.name for p in files}
    assert {"command_center.html", "village_V1.html", "village_V2.html", "index.html"} <= names
    # one map per owner with something to fix, and none for an owner with nothing (张三's grid is clean)
    to_fix = {who for o in small_assessment.findings["owner"].dropna() for who in str(o).split(" / ")}
    assert {n for n in names if n.startswith("owner_")} == {f"owner_{maps.safe_name(w)}.html" for w in to_fix}
    assert "张三" not in to_fix
    assert "owner_张三.html" not in names
    assert "nothing to fix" in (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    # one shared assets/ folder, written first; every map links it and embeds no copy of Leaflet
    assert [p.relative_to(tmp_path / "maps").as_posix() for p in files[:4]] == [
        "assets/leaflet.css", "assets/leaflet.js", "assets/gisgrid.css", "assets/gisgrid.js"]
    pages = files[4:]
    assert all(p.parent == tmp_path / "maps" for p in pages)
    for p in pages[:-1]:
        text = p.read_text(encoding="utf-8")
        assert 'src="assets/leaflet.js?v=' in text
        assert "Leaflet 1.9.3" not in text
    index = (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    hrefs = {unquote(html.unescape(h)) for h in re.findall(r'href="([^"]+)"', index)}
    assert hrefs == {p.name for p in pages} - {"index.html"}
    # one map asked for: that map only; the set's index is not replaced by a one-map index
    before = index
    only = maps.write_maps(small_assessment, tmp_path, owner="李四")
    assert [p.name for p in only] == ["owner_李四.html"]
    only = maps.write_maps(small_assessment, tmp_path, village="V1")
    assert [p.name for p in only] == ["village_V1.html"]
    assert (tmp_path / "maps" / "index.html").read_text(encoding="utf-8") == before


def test_write_maps_hostile_names(hostile_assessment, tmp_path):
    files = maps.write_maps(hostile_assessment, tmp_path, assets="inline", basemap="none")
    index = (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    for payload in PAYLOADS:
        assert payload not in index
    for p in files:
        assert p.parent == tmp_path / "maps"
        assert re.fullmatch(r"[\w\-~.]+", p.name), p.name


def test_save_map_atomic(small_assessment, tmp_path):
    m = maps.command_center_map(small_assessment, assets="assets")
    out = maps.save_map(m, tmp_path / "a" / "m.html")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["assets", "m.html"]  # no temporary file left


def test_explore_uses_the_command_center_map(small_assessment):
    m = small_assessment.explore(basemap="none")
    page = m.get_root().render()
    assert "GG.finish(" in page
    # a notebook shows the page in an iframe, where no assets/ folder is beside it: self-contained
    assert "Leaflet 1.9.3" in page
    assert not re.search(r"<script[^>]+src=", page)


def test_geometryless_findings_are_counted_not_drawn(small_assessment):
    f = small_assessment.findings.copy()
    extra = f.iloc[[0]].copy()
    extra["geometry"] = None
    extra["finding_id"] = "x-1"
    f = gpd.GeoDataFrame(pd.concat([f, extra], ignore_index=True), geometry="geometry", crs=f.crs)
    a = type(small_assessment)(**{**small_assessment.__dict__, "findings": f})
    page = _render(a)
    assert "findings without a location" in html.unescape(page)
    assert Path  # keep the import used when the file is trimmed


def test_coordinate_encoding_round_trips_every_geometry_type():
    geoms = np.array([
        Point(120.1234567, 32.1),
        shapely.MultiPoint([(120.0, 32.0), (120.5, 32.25)]),
        LineString([(120.0, 32.0), (120.000001, 32.000002), (120.3, 31.9)]),
        shapely.MultiLineString([[(120, 32), (121, 33)], [(122, 30), (122.5, 30.5)]]),
        shapely.Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (2, 1), (2, 2), (1, 1)]]),
        shapely.MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]),
    ], dtype=object)
    rounded = shapely.transform(geoms, lambda c: np.round(c, 6))
    encoded, types = _encode_geometries(rounded)
    for g, code, kind in zip(rounded, encoded, types, strict=True):
        back = shapely.from_geojson(json.dumps(_geometry(kind, json.loads(json.dumps(code)), 10**6)))
        assert back.geom_type == g.geom_type
        assert shapely.equals_exact(back, g, tolerance=1e-9), kind


def test_compact_integers_by_construction():
    # 5 bits per character, low bits first, +32 when more follow: 0 -> "A", 31 -> "f", 32 -> 0+more, 1 -> "gB"
    text, ends = _varints(np.array([0, 31, 32, 1023, 1024, 2**30 - 1]))
    assert text[:4] == "AfgB"
    assert ends.tolist() == [1, 2, 4, 6, 9, 15]
    assert _ints(text) == [0, 31, 32, 1023, 1024, 2**30 - 1]
    with pytest.raises(ValueError, match="2\\*\\*30"):
        _varints(np.array([2**30]))
    with pytest.raises(ValueError, match="2\\*\\*30"):
        _varints(np.array([-1]))


def test_geometry_collections_are_drawn_as_their_parts(small_assessment):
    f = small_assessment.findings.copy()
    gap = f.index[f["kind"] == "area_gap"][0]
    f.loc[gap, "geometry"] = shapely.GeometryCollection([f.loc[gap, "geometry"], Point(X0, Y0)])
    a = type(small_assessment)(**{**small_assessment.__dict__, "findings": f})
    geoms = layer_data(_render(a))["gaps"]["geoms"]
    assert [g["type"] for g in geoms] == ["Polygon"]


def test_write_maps_can_skip_per_owner_maps(small_assessment, tmp_path):
    files = maps.write_maps(small_assessment, tmp_path, per_owner=False)
    assert not [p for p in files if p.name.startswith("owner_")]
    assert [p for p in files if p.name.startswith("village_")]
    index = (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    assert "gisgrid map --owner" in index
    every = maps.write_maps(small_assessment, tmp_path / "all", per_owner=True)
    assert [p for p in every if p.name.startswith("owner_")]


def test_village_maps_above_the_limit_only_where_something_is_wrong(demo_assessment, tmp_path, monkeypatch):
    with_findings = set(demo_assessment.findings["village_id"].dropna().astype(str))
    quiet = set(demo_assessment.town.villages["village_id"].astype(str)) - with_findings
    assert with_findings
    assert quiet
    monkeypatch.setattr(maps, "MAX_VILLAGE_MAPS", 3)
    files = maps.write_maps(demo_assessment, tmp_path, basemap="none")
    drawn = {p.name[len("village_"):-len(".html")] for p in files if p.name.startswith("village_")}
    assert drawn == with_findings
    index = (tmp_path / "maps" / "index.html").read_text(encoding="utf-8")
    assert f"{len(quiet)} more villages with nothing to fix" in index
    every = maps.write_maps(demo_assessment, tmp_path / "all", basemap="none", per_village=True)
    assert sum(p.name.startswith("village_") for p in every) == len(with_findings | quiet)


def test_hand_drawn_grids_are_simplified_one_by_one_and_stay_valid(demo_assessment):
    # the demo is hand-drawn: no shared edges for coverage_simplify to keep, so each polygon on its own
    assert demo_assessment.totals["slivers"] > 0
    grids = np.asarray(demo_assessment.town.grids.geometry.values, dtype=object)
    simple = _simplify(grids, 0.5, coverage=False)
    assert shapely.is_valid(simple).all()
    assert not shapely.is_empty(simple).any()
    assert shapely.get_num_coordinates(simple).sum() < shapely.get_num_coordinates(grids).sum()
    assert shapely.hausdorff_distance(simple, grids).max() <= 0.5 + 1e-9
    model = _prepare(demo_assessment, gcj=False, show_phones=False)
    assert len(model.layers["grids"]) == len(grids)


def test_config_assets_mode_checked_with_did_you_mean():
    assert config_mod.MapOptions.parse({}).assets == "assets"  # offline by default
    assert config_mod.MapOptions.parse({"assets": "cdn"}).assets == "cdn"
    with pytest.raises(ConfigError, match='did you mean assets = "inline"'):
        config_mod.MapOptions.parse({"assets": "inlne"})
