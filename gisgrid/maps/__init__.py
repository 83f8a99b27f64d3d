r"""Command-center maps: self-contained, safe, fast Leaflet pages drawn with folium.

This is the only module that imports folium. It turns an ``Assessment`` into
one interactive HTML page per audience:

- ``maps/command_center.html``: the whole town for the command center (指挥中心);
- ``maps/village_<id>.html``: one village with its grids, roads, reaches and findings;
- ``maps/owner_<name>.html``: what one owner (a grid chief, a river chief, a
  village committee) must act on: only their own grids and findings;
- ``maps/index.html``: links to all of them.

Layers (LayerControl, top to bottom of the drawing order): town boundary,
villages (labelled), grids (coloured so that neighbours differ, with their
chief), roads by class (village roads and lanes start hidden), river reaches
with their chiefs, river corridors (hidden), must-check points (icons by
kind) and, on top, the findings: gaps (red hatch), overlaps (orange),
uncovered roads (bold red), unassigned reaches, sensitive sections, other
findings, and veto items (pulsing).

Design decisions
----------------
Escaping
    Every string that comes from the data (names, ids, column values) and
    every label is passed through :func:`esc` in Python before it reaches
    folium or our JavaScript: ``html.escape`` plus the characters that mean
    something inside a JavaScript template literal (backtick, ``$``,
    backslash) and braces. The page inserts these strings with ``innerHTML``,
    so they show as text. Layer data is embedded in ``<script
    type="application/json">`` blocks (``<`` and ``>`` written as ``\\u003c``,
    ``\\u003e``) and read with ``JSON.parse``: nothing from the data is ever
    evaluated, and no ``</script>`` can end a script early.
Tooltips, popups, search
    folium's ``GeoJsonTooltip``/``GeoJsonPopup`` embed every column of every
    feature and build their tables with template literals; we use a small
    runtime of our own (``gisgrid/maps/assets/map_runtime.js``, inlined in every
    page) that binds one tooltip and one popup per layer and builds the table
    from short property keys. The same runtime runs the search box (grid id,
    village, chief) over the layers' properties.
Hatching
    The canvas renderer (``prefer_canvas=True``, needed at county scale)
    cannot fill with a pattern. Gaps and veto items are therefore drawn with
    Leaflet's SVG renderer in a pane of their own above the canvas, the gaps
    filled with an SVG ``<pattern>`` (red diagonal hatch) defined once in the
    page, veto items outlined with a CSS pulse. They are few; past
    ``SVG_LIMIT`` features a layer falls back to a flat fill on the canvas
    (said in the legend).
Speed and size
    Grids and villages are simplified with ``shapely.coverage_simplify``
    (shared edges stay shared), roads with ``shapely.simplify``; coordinates
    are rounded to 6 decimals (~0.1 m); only the columns that tooltips and
    popups show are kept, under one-letter keys, column-wise; hidden layers
    are parsed only when first switched on.
Basemaps
    ``osm``, ``tianditu`` / ``tianditu-img`` (vector ``vec_w``+``cva_w`` or
    imagery ``img_w``+``cia_w``, both offered), ``gaode`` / ``gaode-satellite``
    (AMap; GCJ-02 tiles, so every overlay is shifted with
    :func:`gisgrid.crs.wgs84_to_gcj02`), ``none``; ``tiles_url`` replaces the
    basemap's tiles with an intranet tile server (``gaode`` still shifts).
Assets
    ``assets="cdn"`` links Leaflet and folium's Fullscreen, MiniMap and
    MeasureControl plugins from their CDNs. ``assets="inline"`` embeds
    Leaflet (JS, CSS and its images) from the ``xstatic-leaflet`` package and
    uses small built-in fullscreen, minimap and measure controls instead of
    the plugins (no package ships them): the page fetches nothing but tiles.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import folium
import folium.plugins
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from folium.template import Template

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.crs import wgs84_to_gcj02
from gisgrid.findings import KINDS
from gisgrid.io import atomic_write_text
from gisgrid.vocab import percent

__all__ = [
    "ASSETS",
    "BASEMAPS",
    "colour_graph",
    "command_center_map",
    "esc",
    "grid_colours",
    "mask_phone",
    "save_map",
    "write_maps",
]

logger = logging.getLogger(__name__)

#: Basemap names accepted by :func:`command_center_map`.
BASEMAPS = ("osm", "tianditu", "tianditu-img", "gaode", "gaode-satellite", "none")
#: Asset modes: link from CDNs, or embed everything in the page.
ASSETS = ("cdn", "inline")
#: Layers with more features than this draw on the canvas (no hatch, no pulse).
SVG_LIMIT = 3000
#: Below this zoom village labels and point icons are hidden (a county overview would be all icons).
DETAIL_ZOOM = 12
#: Sensitive sections start hidden (loaded when switched on) past this many features.
SHOW_LIMIT = 5000
#: Coordinates are rounded to this many decimals (1e-6 degree is about 0.1 m).
DECIMALS = 6

LEAFLET_VERSION = "1.9.3"
_LEAFLET_JS = f"https://cdn.jsdelivr.net/npm/leaflet@{LEAFLET_VERSION}/dist/leaflet.js"
_LEAFLET_CSS = f"https://cdn.jsdelivr.net/npm/leaflet@{LEAFLET_VERSION}/dist/leaflet.css"

_TIANDITU = ("https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
             "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={{z}}&TILEROW={{y}}"
             "&TILECOL={{x}}&tk={key}")
_TIANDITU_ATTR = '&copy; <a href="https://www.tianditu.gov.cn/">天地图 Tianditu</a>'
_GAODE = {
    "vector": "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}",
    "satellite": "https://webst0{s}.is.autonavi.com/appmaptile?style=6&x={x}&y={y}&z={z}",
    "labels": "https://webst0{s}.is.autonavi.com/appmaptile?style=8&x={x}&y={y}&z={z}",
}
_GAODE_ATTR = '&copy; <a href="https://www.amap.com/">高德 AMap</a> (GCJ-02)'
_OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
_OSM_ATTR = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'

#: Grid fill colours (no reds or oranges: those mean findings).
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#80b1d3", "#b3de69", "#fccde5", "#d9d9d9", "#ccebc5")

_ROAD_STYLE = {
    "main": {"color": "#5b3a1a", "weight": 4.5},
    "secondary": {"color": "#8c6d46", "weight": 3},
    "village": {"color": "#8f8f8f", "weight": 2},
    "lane": {"color": "#a9a9a9", "weight": 1},
}
_ROAD_LABEL = {"main": "主干道 main roads", "secondary": "次干道 secondary roads", "village": "村道 village roads",
               "lane": "小巷农路 lanes"}
#: Road classes drawn but switched off when the map opens.
MINOR_ROAD_CLASSES = ("village", "lane")

_SEVERITY_LABEL = {"veto": "一票否决 veto", "high": "高 high", "medium": "中 medium", "low": "低 low"}
_SEVERITY_COLOUR = {"veto": "#8b0000", "high": "#e31a1c", "medium": "#fd8d3c", "low": "#fecc5c"}
_KIND_ZH = {
    "area_gap": "网格空白", "area_overlap": "网格重叠", "road_uncovered": "道路未入网格",
    "road_ambiguous": "道路归属不清", "river_unassigned": "河段无河长", "grid_unstaffed": "网格无网格长",
    "grid_overloaded": "网格长超负荷", "staff_unplaced": "人员网格不存在", "chief_unplaced": "河长河段不存在",
    "poi_uncovered": "必查点位未入网格", "checkpoint_incomplete": "必查点位责任不全",
    "sensitive_section": "敏感地段", "input_repaired": "数据已修复",
}
_POI_ICON = {
    "school": ("学", "#1f78b4"), "kindergarten": ("幼", "#6a3d9a"), "market": ("市", "#b15928"),
    "clinic": ("医", "#e31a1c"), "water_intake": ("水", "#1b9e77"), "town_entrance": ("入", "#33a02c"),
}
_POI_OTHER = ("点", "#555555")
_POI_LABEL = {"school": "学校 school", "kindergarten": "幼儿园 kindergarten", "market": "市场 market",
              "clinic": "卫生院 clinic", "water_intake": "取水口 water intake", "town_entrance": "镇入口 town entrance"}

_TOP_PANE = "ggTop"
_HATCH_ID = "gg-hatch"
_HATCH_SVG = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true" focusable="false"><defs>'
    f'<pattern id="{_HATCH_ID}" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">'
    '<rect width="8" height="8" fill="#ff0000" fill-opacity="0.12"/>'
    '<line x1="0" y1="0" x2="0" y2="8" stroke="#d00000" stroke-width="3"/></pattern></defs></svg>'
)


# ----------------------------------------------------------------------------- escaping
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;",
                          "$": "&#36;", "\\": "&#92;", "{": "&#123;", "}": "&#125;"})


def esc(value: Any) -> str:
    """Escape one value from the data for the page: the single helper every label goes through.

    ``html.escape`` (``& < > " '``) plus the characters that act inside a
    JavaScript template literal or a template engine (backtick, ``$``,
    backslash, braces), all as HTML character references. The result shows as
    the original text when inserted with ``innerHTML``, cannot close a
    ``<script>`` element (no ``<`` survives), and cannot run as
    ``${...}`` in a template literal.

    Parameters
    ----------
    value
        Anything; None and NaN become ``""``.

    Returns
    -------
    str
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).translate(_ESCAPES)


def _script_json(obj: Any) -> str:
    """JSON that is safe inside ``<script>``: compact, UTF-8, no ``<``, ``>`` or ``&`` left raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _script_safe(text)


def _script_safe(text: str) -> str:
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_DIGIT = re.compile(r"\d")


def mask_phone(value: Any) -> str | None:
    """Mask a phone number for display: ``13812340000`` -> ``138****0000``.

    The first three and last four digits stay; at least four digits are
    always masked (so short numbers show fewer). Separators are kept;
    several numbers joined with commas are masked one by one.

    Parameters
    ----------
    value
        A phone number (any text), or None.

    Returns
    -------
    str or None
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return ", ".join(_mask_one(part.strip()) for part in re.split(r"[,，;；/]", text) if part.strip())


def _mask_one(text: str) -> str:
    n = len(_DIGIT.findall(text))
    if n == 0:
        return "****"
    masked = max(4, n - 7)
    tail = min(4, max(0, n - masked))
    head = max(0, min(3, n - masked - tail))
    out, i = [], 0
    for ch in text:
        if ch.isdigit():
            out.append(ch if i < head or i >= n - tail else "*")
            i += 1
        else:
            out.append(ch)
    return "".join(out)


# ----------------------------------------------------------------------------- colouring
def colour_graph(n: int, i: np.ndarray, j: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Colour a graph so that no edge joins two equal colours (greedy, vectorised).

    Jones-Plassmann rounds: every uncoloured vertex whose priority (degree
    first, then a seeded random tie-break) beats all its uncoloured
    neighbours takes the smallest colour none of its neighbours has. The
    vertices chosen in one round are never adjacent, so each round is a few
    numpy operations over the edge list; planar maps need 4-6 colours.

    Parameters
    ----------
    n
        Number of vertices.
    i, j
        Edge end points (any order, duplicates and self-loops ignored).
    seed
        Tie-break seed (the result is deterministic).

    Returns
    -------
    ndarray of int
        Colour index per vertex, from 0.
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    keep = i != j
    i, j = np.concatenate([i[keep], j[keep]]), np.concatenate([j[keep], i[keep]])
    colours = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return colours
    deg = np.bincount(i, minlength=n)
    rng = np.random.default_rng(seed)
    prio = deg.astype(np.int64) * n + rng.permutation(n)
    while True:
        unc = colours < 0
        if not unc.any():
            break
        both = unc[i] & unc[j]
        beaten = np.zeros(n, dtype=bool)
        beaten[i[both & (prio[j] > prio[i])]] = True
        sel = unc & ~beaten
        width = int(colours.max()) + 2
        used = np.zeros((n, width), dtype=bool)
        e = sel[i] & (colours[j] >= 0)
        used[i[e], colours[j[e]]] = True
        idx = np.flatnonzero(sel)
        colours[idx] = np.argmin(used[idx], axis=1)
    return colours


def grid_colours(geoms: Any, *, distance: float = 1.0) -> np.ndarray:
    """Colour index per polygon so that polygons within ``distance`` of each other differ.

    Neighbours come from one ``STRtree`` query (``dwithin``), so grids that
    should touch but are separated by a sliver gap still get different colours.

    Parameters
    ----------
    geoms
        Polygons in a metric CRS (array-like or GeoSeries).
    distance
        Neighbour distance in CRS units.

    Returns
    -------
    ndarray of int
    """
    arr = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    tree = shapely.STRtree(arr)
    pairs = tree.query(arr, predicate="dwithin", distance=distance)
    return colour_graph(len(arr), pairs[0], pairs[1])


# ----------------------------------------------------------------------------- geometry preparation
def _arr(frame: Any) -> np.ndarray:
    return np.asarray(frame.geometry.values, dtype=object)


def _simplify(geoms: np.ndarray, tolerance: float, *, coverage: bool) -> np.ndarray:
    """Simplify in the metric CRS; a coverage keeps its shared edges."""
    if tolerance <= 0 or len(geoms) == 0:
        return geoms
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    out = geoms.copy()
    if coverage and ok.any():
        try:
            simple = shapely.coverage_simplify(geoms[ok], tolerance)
            bad = ~shapely.is_valid(simple) | shapely.is_empty(simple)
            if bad.any():
                simple[bad] = shapely.simplify(geoms[ok][bad], tolerance, preserve_topology=True)
            out[ok] = simple
            return out
        except shapely.errors.GEOSException as exc:  # an invalid coverage: simplify one by one
            logger.info("coverage_simplify failed (%s); simplifying polygons one by one", exc)
    out[ok] = shapely.simplify(geoms[ok], tolerance, preserve_topology=True)
    return out


def _shift_gcj(coords: np.ndarray) -> np.ndarray:
    lon, lat = wgs84_to_gcj02(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def _round(coords: np.ndarray) -> np.ndarray:
    return np.round(coords, DECIMALS)


def _to_map(geoms: np.ndarray, crs: Any, *, gcj: bool) -> np.ndarray:
    """Metric geometries -> EPSG:4326 (GCJ-02 shifted if asked), rounded."""
    if len(geoms) == 0:
        return geoms
    out = np.asarray(gpd.GeoSeries(geoms, crs=crs).to_crs(4326).values, dtype=object)
    if gcj:
        out = shapely.transform(out, _shift_gcj)
    return shapely.transform(out, _round)


def _tolerance(n_polygons: int) -> float:
    """Simplification tolerance in metres: invisible at the zoom a layer of this size is read at."""
    if n_polygons <= 1000:
        return 0.5
    if n_polygons <= 5000:
        return 1.0
    return 2.0


# ----------------------------------------------------------------------------- prepared layers
@dataclass
class _Layer:
    """One layer ready for the page: geometry JSON and escaped properties, plus raw attributes to select by."""

    key: str
    geoms: np.ndarray  # encoded coordinates per feature (see _encode_geometries)
    gtypes: np.ndarray  # GeoJSON type per feature
    keys: list[str]
    rows: list[list[Any]]
    attrs: pd.DataFrame
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.geoms)

    def take(self, mask: np.ndarray | None) -> _Layer:
        if mask is None:
            return self
        idx = np.flatnonzero(mask)
        return _Layer(self.key, self.geoms[idx], self.gtypes[idx], self.keys, [self.rows[k] for k in idx],
                      self.attrs.iloc[idx].reset_index(drop=True), self.bounds[idx])


def _text(series: pd.Series | Sequence[Any]) -> list[str | None]:
    """Escaped text per value (None for blanks); each distinct value is escaped once."""
    codes, uniques = pd.factorize(pd.Series(series, dtype=object), use_na_sentinel=True)
    texts = [str(u) for u in uniques]
    joined = "\x00".join(texts)
    if texts and joined.count("\x00") == len(texts) - 1:  # escape every distinct value in one pass
        done = [t or None for t in joined.translate(_ESCAPES).split("\x00")]
    else:
        done = [esc(t) or None for t in texts]
    return [done[c] if c >= 0 else None for c in codes.tolist()]


def _as_float(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _fmt_num(value: Any, digits: int = 0, unit: str = "") -> str | None:
    x = _as_float(value)
    if x is None:
        return None
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def _fmt_pct(value: Any) -> str | None:
    x = _as_float(value)
    if x is None:
        return None
    return percent(x if x <= 1.0 else x / 100)


def _fmt_measure(measure: Any, unit: Any) -> str | None:
    try:
        x = float(measure)
    except (TypeError, ValueError):
        return None
    if math.isnan(x):
        return None
    u = str(unit or "")
    if u in ("m2", "m²", "sqm"):
        return f"{x / 10000:,.2f} ha ({x:,.0f} m²)" if x >= 10000 else f"{x:,.1f} m²"
    if u == "m":
        return f"{x / 1000:,.2f} km" if x >= 1000 else f"{x:,.1f} m"
    if u == "count":
        return f"{x:,.0f}"
    return f"{x:,.6g} {u}".strip()


def _build_layer(key: str, frame: gpd.GeoDataFrame, cols: dict[str, list[Any]], *, crs: Any, gcj: bool,
                 simplify: float = 0.0, coverage: bool = False, attrs: pd.DataFrame | None = None,
                 label_points: bool = False) -> _Layer:
    """Prepare ``frame`` (metric CRS) with property columns ``cols`` (already escaped/formatted)."""
    geoms = _arr(frame) if len(frame) else np.array([], dtype=object)
    geoms = _simplify(geoms, simplify, coverage=coverage)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    cols = dict(cols)
    if label_points and len(geoms):
        lp = np.full(len(geoms), None, dtype=object)
        lp[present] = shapely.point_on_surface(_arr(frame)[present])
        lp_map = _to_map(lp[present], crs, gcj=gcj)
        xy = np.full((len(geoms), 2), np.nan)
        xy[present] = shapely.get_coordinates(lp_map)
        cols["_lp"] = [[float(a), float(b)] if np.isfinite(a) else None for a, b in xy]
    mapped = _to_map(_no_collections(geoms[present]), crs, gcj=gcj)
    ok = ~shapely.is_empty(mapped) if len(mapped) else np.zeros(0, bool)
    keep = np.flatnonzero(present)[ok]
    mapped = mapped[ok]
    keys = list(cols)
    columns = [cols[k] for k in keys]
    rows = [[c[p] for c in columns] for p in keep]
    at = pd.DataFrame(index=range(len(frame))) if attrs is None else attrs.reset_index(drop=True).copy()
    if "pos" not in at.columns:
        at["pos"] = np.arange(len(frame))
    at = at.iloc[keep].reset_index(drop=True)
    bounds = shapely.bounds(mapped) if len(mapped) else np.zeros((0, 4))
    encoded, gtypes = _encode_geometries(mapped)
    return _Layer(key, encoded, gtypes, keys, rows, at, bounds)


_SCALE = 10**DECIMALS


def _no_collections(geoms: np.ndarray) -> np.ndarray:
    """GeometryCollections (e.g. from make_valid) become their highest-dimension parts; LinearRings LineStrings."""
    tid = shapely.get_type_id(geoms) if len(geoms) else np.zeros(0, dtype=np.int64)
    coll = tid == 7
    rings = tid == 2
    if not coll.any() and not rings.any():
        return geoms
    out = geoms.copy()
    for pos in np.flatnonzero(rings):  # LinearRing: draw as the closed line it is
        out[pos] = shapely.LineString(shapely.get_coordinates(geoms[pos]))
    for pos in np.flatnonzero(coll):
        parts = shapely.get_parts(geoms[pos])
        dims = shapely.get_dimensions(parts)
        keep = parts[dims == dims.max()] if len(parts) else parts
        out[pos] = shapely.union_all(keep) if len(keep) else shapely.Point()
    return out


def _encode_geometries(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates as integers (1e-6 degree), each ring or line as ``[x0, y0, dx1, dy1, ...]``.

    Nesting follows GeoJSON (Point ``[x, y]``; LineString and MultiPoint one flat list; Polygon and
    MultiLineString a list of them; MultiPolygon a list of polygons). About a third of the size of
    GeoJSON text with 6 decimals; ``GG.data`` in the page turns it back into GeoJSON.
    """
    out = np.empty(len(geoms), dtype=object)
    types = np.empty(len(geoms), dtype=object)
    if not len(geoms):
        return out, types
    names = shapely.get_type_id(geoms)
    # One geometry type at a time, so that to_ragged_array keeps each type as it is.
    done = np.zeros(len(geoms), dtype=bool)
    for single in (0, 1, 3, 4, 5, 6):
        idx = np.flatnonzero(names == single)
        if not len(idx):
            continue
        _, coords, offsets = shapely.to_ragged_array(geoms[idx])
        ints = np.rint(coords * _SCALE).astype(np.int64)
        starts = offsets[0][:-1] if offsets else np.arange(len(ints))
        delta = ints.copy()
        delta[1:] -= ints[:-1]
        delta[starts] = ints[starts]
        flat = delta.ravel().tolist()
        if not offsets:  # Points
            items: list[Any] = [flat[2 * k: 2 * k + 2] for k in range(len(ints))]
        else:
            o0 = offsets[0]
            items = [flat[2 * o0[k]: 2 * o0[k + 1]] for k in range(len(o0) - 1)]
            for off in offsets[1:]:
                items = [items[off[k]: off[k + 1]] for k in range(len(off) - 1)]
        name = {0: "Point", 4: "MultiPoint", 1: "LineString", 5: "MultiLineString", 3: "Polygon",
                6: "MultiPolygon"}[single]
        for pos, item in zip(idx, items, strict=True):
            out[pos] = item
            types[pos] = name
        done[idx] = True
    if not done.all():
        bad = sorted({shapely.get_type_id(g) for g in geoms[~done]})
        msg = f"cannot draw geometry type ids {bad} (geometry collections)"
        raise ValueError(msg)
    return out, types


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _staffing(assessment: Any) -> pd.DataFrame:
    """One row per grid: chief, members, phone, owner (from the responsibility analysis, else the roster)."""
    town = assessment.town
    resp = getattr(assessment, "responsibility", None)
    staffing = getattr(resp, "staffing", None) if resp is not None else None
    if staffing is not None and len(staffing):
        st = pd.DataFrame(staffing).drop_duplicates("grid_id").set_index("grid_id")
        out = pd.DataFrame(index=pd.Index(town.grids["grid_id"].to_numpy(dtype=object)))
        out["chief"] = _col(st, "chief_name").reindex(out.index)
        out["phone"] = _col(st, "chief_phone").reindex(out.index)
        out["members"] = _col(st, "members").reindex(out.index)
        owner = _col(st, "owner").reindex(out.index)
        out["owner"] = owner.where(owner.notna(), out["chief"])
        return out
    staff = town.grid_staff
    out = pd.DataFrame(index=pd.Index(town.grids["grid_id"].to_numpy(dtype=object)))
    chiefs = staff[staff["role"] == "grid_chief"]
    members = staff[staff["role"] == "grid_member"]
    out["chief"] = chiefs.groupby("grid_id")["name"].agg(lambda s: ", ".join(map(str, s))).reindex(out.index)
    out["phone"] = chiefs.groupby("grid_id")["phone"].agg(
        lambda s: ", ".join(str(v) for v in s if v is not None)).reindex(out.index)
    out["members"] = members.groupby("grid_id")["name"].agg(lambda s: ", ".join(map(str, s))).reindex(out.index)
    out["owner"] = out["chief"]
    return out


def _owners_of(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [p.strip() for p in str(value).split(" / ") if p.strip()]


@dataclass
class _Model:
    """Everything a map needs, prepared once per assessment (and basemap shift)."""

    town_name: str
    layers: dict[str, _Layer]
    totals: dict[str, Any]
    as_of: str
    village_names: dict[str, str]
    sources: dict[str, np.ndarray]
    grid_owner: np.ndarray
    owners: list[str]
    dropped_findings: int = 0
    _relations: _Relations | None = None

    def relations(self) -> _Relations:
        """Which roads, points and findings touch which village and grid (STRtree queries, cached)."""
        if self._relations is None:
            src = self.sources
            pg = _pairs(src["pois"], src["grids"])
            pv = _pairs(src["pois"], src["villages"])
            poi_grid = np.full(len(src["pois"]), -1, dtype=np.int64)
            poi_grid[pg[0]] = pg[1]
            poi_village = np.full(len(src["pois"]), -1, dtype=np.int64)
            poi_village[pv[0]] = pv[1]
            self._relations = _Relations(
                road_village=_pairs(src["roads"], src["villages"]), road_grid=_pairs(src["roads"], src["grids"]),
                poi_grid=poi_grid, poi_village=poi_village, finding_village=_pairs(src["findings"], src["villages"]),
                village_neighbours=_pairs(src["villages"], src["villages"]))
        return self._relations


@dataclass
class _Relations:
    road_village: tuple[np.ndarray, np.ndarray]
    road_grid: tuple[np.ndarray, np.ndarray]
    poi_grid: np.ndarray
    poi_village: np.ndarray
    finding_village: tuple[np.ndarray, np.ndarray]
    village_neighbours: tuple[np.ndarray, np.ndarray]


def _pairs(a: np.ndarray, b: np.ndarray, predicate: str = "intersects") -> tuple[np.ndarray, np.ndarray]:
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ok = ~(shapely.is_missing(a) | shapely.is_empty(a))
    tree = shapely.STRtree(b)
    idx = np.flatnonzero(ok)
    p = tree.query(a[ok], predicate=predicate)
    return idx[p[0]], p[1]


def _as_of(assessment: Any) -> str:
    for value in (getattr(assessment, "as_of", None), (getattr(assessment, "options", None) or {}).get("as_of")):
        if value:
            return str(value)[:10]
    return _dt.date.today().isoformat()


def _prepare(assessment: Any, *, gcj: bool, show_phones: bool) -> _Model:
    town = assessment.town
    crs = town.crs
    layers: dict[str, _Layer] = {}
    vnames = dict(zip(town.villages["village_id"].astype(str), town.villages["name"].astype(str), strict=False))

    def vname(ids: pd.Series) -> list[str | None]:
        return _text(pd.Series(ids, dtype=object).map(lambda v: vnames.get(str(v), v) if v is not None else None))

    # Town boundary (or the villages' outline).
    if len(town.boundary):
        bnd = town.boundary
    else:
        bnd = gpd.GeoDataFrame({"name": [town.name]}, geometry=[town.extent], crs=crs)
    layers["boundary"] = _build_layer("boundary", bnd, {"n": _text(_col(bnd, "name"))}, crs=crs, gcj=gcj,
                                      simplify=_tolerance(len(town.grids)))

    # Villages, with their summary line.
    vil = town.villages.reset_index(drop=True)
    summary = getattr(assessment, "summary", None)
    srow = (pd.DataFrame(summary).reindex(vil["village_id"].to_numpy(dtype=object))
            if summary is not None and len(summary) else pd.DataFrame(index=vil["village_id"]))
    vcols: dict[str, list[Any]] = {
        "n": _text(vil["name"]), "i": _text(vil["village_id"]),
        "h": [_fmt_num(v) for v in _col(vil, "households")],
        "a": [_fmt_pct(v) for v in _col(srow, "area_coverage")],
        "e": [_fmt_pct(v) for v in _col(srow, "effective_coverage")],
        "r": [_fmt_pct(v) for v in _col(srow, "road_coverage")],
        "g": [_fmt_num(v) for v in _col(srow, "grids")],
        "u": [_fmt_num(v) for v in _col(srow, "grids_unstaffed")],
        "f": [_fmt_num(v) for v in _col(srow, "findings")],
        "x": [_fmt_num(v) for v in _col(srow, "veto")],
    }
    # coverage_simplify keeps shared edges shared, but hand-drawn borders share none: simplify each polygon
    totals = getattr(assessment, "totals", None) or {}
    exact_villages = not totals.get("village_slivers")
    exact_grids = not totals.get("slivers")
    layers["villages"] = _build_layer("villages", vil, vcols, crs=crs, gcj=gcj, simplify=_tolerance(len(town.grids)),
                                      coverage=exact_villages, label_points=True,
                                      attrs=pd.DataFrame({"village_id": vil["village_id"].astype(str)}))

    # Grids, coloured, with staffing.
    grids = town.grids.reset_index(drop=True)
    st = _staffing(assessment).reindex(grids["grid_id"].to_numpy(dtype=object))
    phones = st["phone"] if show_phones else st["phone"].map(mask_phone)
    colours = grid_colours(_arr(grids)) % len(PALETTE)
    chief = [esc(c) or "— 无网格长 none" for c in st["chief"].astype(object)]
    gcols: dict[str, list[Any]] = {
        "g": _text(grids["grid_id"]), "v": vname(grids["village_id"]), "c": chief,
        "m": _text(st["members"]), "p": _text(phones), "nm": _text(_col(grids, "name")),
        "h": [_fmt_num(v) for v in _col(grids, "households")], "_k": [int(c) for c in colours],
    }
    gattrs = pd.DataFrame({"village_id": grids["village_id"].astype(object).to_numpy(),
                           "grid_id": grids["grid_id"].astype(str).to_numpy(),
                           "owner": st["owner"].astype(object).to_numpy()})
    layers["grids"] = _build_layer("grids", grids, gcols, crs=crs, gcj=gcj, simplify=_tolerance(len(grids)),
                                   coverage=exact_grids, attrs=gattrs)

    # Roads, one layer per class.
    roads = town.roads.reset_index(drop=True)
    tol_line = 0.5 if len(roads) < 20000 else 1.0
    for cls in settings.road_classes:
        in_class = (roads["road_class"] == cls).to_numpy()
        sub = roads[in_class].reset_index(drop=True)
        rcols = {"i": _text(sub["road_id"]), "n": _text(_col(sub, "name")),
                 "c": [esc(_ROAD_LABEL.get(cls, cls))] * len(sub)}
        layers[f"roads_{cls}"] = _build_layer(f"roads_{cls}", sub, rcols, crs=crs, gcj=gcj, simplify=tol_line,
                                              attrs=pd.DataFrame({"pos": np.flatnonzero(in_class)}))

    # Rivers by reach (with chiefs) when the responsibility analysis ran, else whole rivers.
    resp = getattr(assessment, "responsibility", None)
    reaches = getattr(resp, "reaches", None) if resp is not None else None
    if reaches is not None and len(reaches):
        rch = reaches.reset_index(drop=True)
        rcols = {"n": _text(_col(rch, "river_name")), "i": _text(_col(rch, "reach_id")),
                 "v": vname(_col(rch, "village_id")), "t": _text(_col(rch, "town_chief")),
                 "c": _text(_col(rch, "village_chief")), "l": [_fmt_measure(v, "m") for v in _col(rch, "length_m")]}
        rattrs = pd.DataFrame({"village_id": _col(rch, "village_id").to_numpy(dtype=object),
                               "owners": [tuple(x for x in (a, b) if isinstance(x, str))
                                          for a, b in zip(_col(rch, "town_chief"), _col(rch, "village_chief"),
                                                          strict=True)]})
        layers["rivers"] = _build_layer("rivers", rch, rcols, crs=crs, gcj=gcj, simplify=0.5, attrs=rattrs)
    else:
        riv = town.rivers.reset_index(drop=True)
        rcols = {"n": _text(_col(riv, "name")), "i": _text(_col(riv, "river_id")), "lv": _text(_col(riv, "level"))}
        layers["rivers"] = _build_layer("rivers", riv, rcols, crs=crs, gcj=gcj, simplify=0.5,
                                        attrs=pd.DataFrame({"village_id": [None] * len(riv),
                                                            "owners": [()] * len(riv)}))

    corridors = getattr(resp, "corridors", None) if resp is not None else None
    if corridors is not None and len(corridors):
        cor = corridors.reset_index(drop=True)
        ccols = {"c": _text(_col(cor, "name")), "lv": _text(_col(cor, "level")), "r": _text(_col(cor, "river_id")),
                 "v": vname(_col(cor, "village_id")), "a": [_fmt_measure(v, "m2") for v in _col(cor, "area_m2")]}
        layers["corridors"] = _build_layer("corridors", cor, ccols, crs=crs, gcj=gcj, simplify=0.5,
                                           attrs=pd.DataFrame({"village_id": _col(cor, "village_id").to_numpy(object),
                                                               "owner": _col(cor, "name").to_numpy(object)}))

    # Must-check points with their checkpoint status.
    pois = town.pois.reset_index(drop=True)
    cps = getattr(assessment, "checkpoints", None)
    cp = (pd.DataFrame(cps).drop_duplicates("poi_id").set_index("poi_id").reindex(pois["poi_id"].to_numpy(object))
          if cps is not None and len(cps) and "poi_id" in cps.columns else pd.DataFrame(index=pois["poi_id"]))
    ok = _col(cp, "ok")
    status = [None if v is None or v != v else ("✔ 正常 ok" if bool(v) else "✘ " + (esc(p) or "problem"))
              for v, p in zip(ok.astype(object), _col(cp, "problem").astype(object), strict=True)]
    pcols = {"n": _text(_col(pois, "name")), "i": _text(pois["poi_id"]),
             "k": [esc(_POI_LABEL.get(str(k), k)) for k in pois["kind"]],
             "kk": [esc(k) for k in pois["kind"]],
             "g": _text(_col(cp, "grid_id")), "c": _text(_col(cp, "grid_chief")),
             "rc": _text(_col(cp, "river_chief")), "s": status}
    layers["pois"] = _build_layer("pois", pois, pcols, crs=crs, gcj=gcj)

    # Findings.
    fnd = assessment.findings.reset_index(drop=True)
    fgeo = _arr(fnd) if len(fnd) else np.array([], dtype=object)
    located = ~(shapely.is_missing(fgeo) | shapely.is_empty(fgeo)) if len(fgeo) else np.zeros(0, bool)
    dropped = int((~located).sum())
    fnd = fnd[located].reset_index(drop=True)
    fcols = {
        "k": [esc(f"{_KIND_ZH.get(str(k), k)} · {k}") for k in fnd["kind"]],
        "s": [esc(_SEVERITY_LABEL.get(str(s), s)) for s in fnd["severity"]],
        "sv": [esc(s) for s in fnd["severity"]],
        "z": [_fmt_measure(m, u) for m, u in zip(fnd["measure"], fnd["unit"], strict=True)],
        "o": _text(_col(fnd, "owner")), "v": vname(_col(fnd, "village_id")), "g": _text(_col(fnd, "grid_id")),
        "r": _text(_col(fnd, "rule")), "m": _text(_col(fnd, "message")), "i": _text(fnd["finding_id"]),
        "w": [esc(KINDS.get(str(k), "")) or None for k in fnd["kind"]],
    }
    for extra, key in (("first_seen", "fs"), ("status", "st"), ("deadline", "dl")):
        if extra in fnd.columns:
            fcols[key] = [esc(str(v)[:10]) or None if v is not None and v == v else None for v in fnd[extra]]
    fattrs = pd.DataFrame({"kind": fnd["kind"].astype(str).to_numpy(),
                           "severity": fnd["severity"].astype(str).to_numpy(),
                           "village_id": _col(fnd, "village_id").to_numpy(object),
                           "owners": [tuple(_owners_of(o)) for o in _col(fnd, "owner")]})
    layers["findings"] = _build_layer("findings", fnd, fcols, crs=crs, gcj=gcj, attrs=fattrs)

    sens = getattr(assessment, "sensitive", None)
    if sens is not None and len(sens):
        sen = sens.reset_index(drop=True)
        yes_no = {True: "是 yes", False: "否 no"}
        scols = {"i": _text(_col(sen, "section_id")), "r": _text(_col(sen, "rule")),
                 "s": [esc(_SEVERITY_LABEL.get(str(s), s)) or None for s in _col(sen, "severity")],
                 "t": _text(_col(sen, "trigger")), "v": vname(_col(sen, "village_id")),
                 "g": _text(_col(sen, "grid_id")),
                 "o": _text(_col(sen, "owner")), "d": _text(_col(sen, "detail")), "nm": _text(_col(sen, "name")),
                 "rc": _text(_col(sen, "river_chief")),
                 "cv": [yes_no.get(bool(v)) if v is not None and v == v else None for v in _col(sen, "covered")],
                 "sf": [yes_no.get(bool(v)) if v is not None and v == v else None for v in _col(sen, "staffed")],
                 "l": [_fmt_measure(v, "m") for v in _col(sen, "length_m")]}
        layers["sensitive"] = _build_layer("sensitive", sen, scols, crs=crs, gcj=gcj,
                                           attrs=pd.DataFrame({"village_id": _col(sen, "village_id").to_numpy(object),
                                                               "owners": [tuple(_owners_of(o))
                                                                          for o in _col(sen, "owner")]}))

    # Relations for the village and owner maps (metric CRS, unsimplified geometry), computed when first needed.
    sources = {"villages": _arr(vil), "grids": _arr(grids),
               "roads": _arr(roads) if len(roads) else np.array([], dtype=object),
               "pois": _arr(pois) if len(pois) else np.array([], dtype=object),
               "findings": _arr(fnd) if len(fnd) else np.array([], dtype=object)}
    owners: set[str] = set()
    for o in layers["findings"].attrs["owners"]:
        owners.update(o)
    owners.update(str(o) for o in st["owner"].dropna())
    totals = dict(getattr(assessment, "totals", None) or {})
    return _Model(
        town_name=str(town.name), layers=layers, totals=totals, as_of=_as_of(assessment), village_names=vnames,
        sources=sources, grid_owner=st["owner"].to_numpy(dtype=object), owners=sorted(owners),
        dropped_findings=dropped,
    )


# ----------------------------------------------------------------------------- scopes
@dataclass
class _Scope:
    """Which features one map shows (None: all) and what it is called."""

    kind: str  # "town", "village", "owner"
    label: str
    masks: dict[str, np.ndarray | None]


def _road_masks(model: _Model, road_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class masks from row positions in the town's roads table."""
    out = {}
    for cls in settings.road_classes:
        lay = model.layers[f"roads_{cls}"]
        pos = lay.attrs["pos"].to_numpy() if len(lay) else np.zeros(0, np.int64)
        out[f"roads_{cls}"] = np.isin(pos, road_rows)
    return out


def _village_scope(model: _Model, assessment: Any, village: str) -> _Scope:
    town = assessment.town
    vids = town.villages["village_id"].astype(str).to_numpy()
    hit = np.flatnonzero(vids == str(village))
    if not len(hit):
        msg = f"no village with id {village!r}."
        raise ConfigError(msg, fix=f"use one of {sorted(vids)[:10]} …")
    v = int(hit[0])
    L = model.layers
    rel = model.relations()
    vmask = np.zeros(len(vids), bool)
    vmask[rel.village_neighbours[1][rel.village_neighbours[0] == v]] = True
    vmask[v] = True
    # Road positions in the full roads table that touch this village; the class layers hold positions per class.
    road_rows = rel.road_village[0][rel.road_village[1] == v]
    fat = L["findings"].attrs
    near = np.isin(fat["pos"].to_numpy(), rel.finding_village[0][rel.finding_village[1] == v])
    fmask = (fat["village_id"].astype(object) == str(village)).to_numpy() | (fat["village_id"].isna().to_numpy()
                                                                              & near)
    masks: dict[str, np.ndarray | None] = {
        "boundary": None,
        "villages": np.isin(L["villages"].attrs["village_id"].to_numpy(), vids[vmask]),
        "grids": (L["grids"].attrs["village_id"].astype(object) == str(village)).to_numpy(),
        "pois": _full(L["pois"], rel.poi_village == v),
        "findings": fmask,
    }
    masks.update(_road_masks(model, road_rows))
    for key in ("rivers", "corridors", "sensitive"):
        if key in L:
            masks[key] = (L[key].attrs["village_id"].astype(object) == str(village)).to_numpy()
    name = model.village_names.get(str(village), str(village))
    return _Scope("village", f"{name} ({village})", masks)


def _full(layer: _Layer, full_mask: np.ndarray) -> np.ndarray:
    """A mask over the source frame's rows, as a mask over the layer's (located) features."""
    pos = layer.attrs["pos"].to_numpy(dtype=np.int64) if len(layer) else np.zeros(0, np.int64)
    return full_mask[pos] if len(full_mask) else np.zeros(0, dtype=bool)


def _owner_scope(model: _Model, assessment: Any, owner: str) -> _Scope:
    L = model.layers
    rel = model.relations()
    gmask = np.array([str(o) == owner for o in model.grid_owner], dtype=bool)
    fat = L["findings"].attrs
    fmask = np.array([owner in o for o in fat["owners"]], dtype=bool)
    if not gmask.any() and not fmask.any() and not any(
            owner in o for k in ("rivers", "sensitive") if k in L for o in L[k].attrs["owners"]):
        msg = f"no grid, reach or finding belongs to {owner!r}."
        raise ConfigError(msg, fix=f"use an owner named in the findings, e.g. {model.owners[:5]}")
    gidx = np.flatnonzero(gmask)
    road_rows = np.unique(rel.road_grid[0][np.isin(rel.road_grid[1], gidx)])
    pmask = np.isin(rel.poi_grid, gidx)
    # Villages: those of the owner's grids and findings.
    vil_ids = set(L["grids"].attrs["village_id"][gmask].astype(str))
    vil_ids.update(str(v) for v in fat["village_id"][fmask] if v is not None and v == v)
    masks: dict[str, np.ndarray | None] = {
        "boundary": None,
        "villages": np.isin(L["villages"].attrs["village_id"].to_numpy(), list(vil_ids)),
        "grids": gmask,
        "pois": _full(L["pois"], pmask),
        "findings": fmask,
    }
    masks.update(_road_masks(model, road_rows))
    if "rivers" in L:
        masks["rivers"] = np.array([owner in o for o in L["rivers"].attrs["owners"]], dtype=bool)
        vil_ids.update(str(v) for v in L["rivers"].attrs["village_id"][masks["rivers"]] if isinstance(v, str))
        masks["villages"] = np.isin(L["villages"].attrs["village_id"].to_numpy(), list(vil_ids))
    if "corridors" in L:
        masks["corridors"] = (L["corridors"].attrs["owner"].astype(object) == owner).to_numpy()
    if "sensitive" in L:
        masks["sensitive"] = np.array([owner in o for o in L["sensitive"].attrs["owners"]], dtype=bool)
    return _Scope("owner", owner, masks)


# ----------------------------------------------------------------------------- page assets
@functools.lru_cache(maxsize=8)
def _static(name: str) -> str:
    return resources.files("gisgrid.maps").joinpath("assets", name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _leaflet_files() -> tuple[str, str]:
    """Leaflet's JS and CSS (images inlined) from the xstatic-leaflet package."""
    try:
        from xstatic.pkg import leaflet as xleaflet
    except ImportError:
        msg = "assets='inline' needs the xstatic-leaflet package, which is not installed."
        raise ConfigError(msg, fix="pip install xstatic-leaflet (or gisgrid[inline]), or use assets='cdn'") from None
    base = Path(xleaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def data_uri(match: re.Match[str]) -> str:
        img = base / match.group(1)
        if not img.exists():
            return match.group(0)
        return "url(data:image/png;base64," + base64.b64encode(img.read_bytes()).decode("ascii") + ")"

    css = re.sub(r"url\((images/[\w.-]+\.png)\)", data_uri, css)
    return js, css


class _Raw(Element):
    """A piece of page text inserted as is (no Jinja pass over it)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        """Return the text unchanged."""
        return self._text


def _inline_script(code: str) -> str:
    # Our own and Leaflet's code never contain "</script"; make sure of it anyway.
    return "<script>" + re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE) + "</script>"


class _GeoLayer(folium.map.Layer):
    """An overlay filled by ``GG.layer`` from a JSON data block (a folium Layer, so LayerControl lists it)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = GG.layer({{ this._parent.get_name() }}, {{ this.spec_js }});
        {% endmacro %}
        """
    )

    def __init__(self, name: str, spec: dict[str, Any], *, show: bool = True) -> None:
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "GeoLayer"
        self.spec_js = _script_json(spec)


class _Finish(MacroElement):
    """Title, legend, search, built-in controls and the ready flag (rendered last)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GG.finish({{ this._parent.get_name() }}, {{ this.cfg_js }});
        {% endmacro %}
        """
    )

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self._name = "GGFinish"
        self.cfg_js = _script_json(cfg)


class _Pane(MacroElement):
    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.createPane({{ this.pane|tojson }}).style.zIndex = {{ this.z|tojson }};
        {% endmacro %}
        """
    )

    def __init__(self, pane: str, z: int) -> None:
        super().__init__()
        self._name = "GGPane"
        self.pane = pane
        self.z = z


# ----------------------------------------------------------------------------- basemaps
@dataclass
class _Base:
    name: str
    tiles: list[tuple[str, dict[str, Any]]]  # (url, options) drawn together
    attr: str


def _basemaps(basemap: str, tiles_url: str | None, tianditu_key: str | None) -> tuple[list[_Base], int]:
    """Base layers to offer and the index of the one shown first."""
    if basemap not in BASEMAPS:
        msg = f"unknown basemap {basemap!r}."
        raise ConfigError(msg, fix=f"use one of {list(BASEMAPS)}")
    if tiles_url:
        opts = {"maxZoom": 20}
        return [_Base("内网底图 intranet tiles", [(tiles_url, opts)], "内网底图 intranet tiles")], 0
    if basemap == "none":
        return [], 0
    if basemap == "osm":
        return [_Base("OpenStreetMap", [(_OSM, {"maxZoom": 19})], _OSM_ATTR)], 0
    if basemap.startswith("tianditu"):
        key = tianditu_key or os.environ.get("TIANDITU_KEY")
        if not key:
            msg = "basemap 'tianditu' needs a Tianditu (天地图) key, and none was given."
            raise ConfigError(msg, fix="pass tianditu_key=... or set the TIANDITU_KEY environment variable "
                                       "(a browser key from console.tianditu.gov.cn), or use another basemap")
        k = quote(str(key).strip(), safe="")
        opts = {"maxZoom": 18, "subdomains": "01234567"}
        vec = _Base("天地图 矢量 Tianditu vector", [(_TIANDITU.format(layer="vec", key=k), opts),
                                                 (_TIANDITU.format(layer="cva", key=k), opts)], _TIANDITU_ATTR)
        img = _Base("天地图 影像 Tianditu imagery", [(_TIANDITU.format(layer="img", key=k), opts),
                                                  (_TIANDITU.format(layer="cia", key=k), opts)], _TIANDITU_ATTR)
        return [vec, img], (1 if basemap == "tianditu-img" else 0)
    opts = {"maxZoom": 18, "subdomains": "1234"}
    vec = _Base("高德 矢量 AMap vector", [(_GAODE["vector"], opts)], _GAODE_ATTR)
    sat = _Base("高德 卫星 AMap satellite", [(_GAODE["satellite"], opts), (_GAODE["labels"], opts)], _GAODE_ATTR)
    return [vec, sat], (1 if basemap == "gaode-satellite" else 0)


def _add_basemaps(m: folium.Map, bases: list[_Base], first: int) -> None:
    for k, base in enumerate(bases):
        if len(base.tiles) == 1:
            url, opts = base.tiles[0]
            folium.TileLayer(tiles=url, attr=base.attr, name=esc(base.name), overlay=False, control=True,
                             show=(k == first), max_zoom=opts.get("maxZoom", 18),
                             subdomains=opts.get("subdomains", "abc")).add_to(m)
            continue
        group = folium.FeatureGroup(name=esc(base.name), overlay=False, control=True, show=(k == first))
        for url, opts in base.tiles:
            folium.TileLayer(tiles=url, attr=base.attr, control=False, max_zoom=opts.get("maxZoom", 18),
                             subdomains=opts.get("subdomains", "abc")).add_to(group)
        group.add_to(m)


# ----------------------------------------------------------------------------- the map
def _swatch(style: dict[str, Any], *, line: bool = False, extra: str = "") -> str:
    if line:
        dash = "dashed" if style.get("dashArray") else "solid"
        w = max(1, min(6, round(float(style.get("weight", 2)))))
        return (f'<span class="gg-sw gg-sw-line" style="border-top:{w}px {dash} {style.get("color", "#666")}">'
                "</span>")
    fill = style.get("fillColor", style.get("color", "#999"))
    border = style.get("color", "#666")
    return f'<span class="gg-sw {extra}" style="background:{fill};border-color:{border}"></span>'


def _layer_name(swatch: str, label: str, n: int) -> str:
    return f"{swatch}{esc(label)} <small>({n:,})</small>"


_FINDING_LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("gaps", "网格空白 gaps", ("area_gap",)),
    ("overlaps", "网格重叠 overlaps", ("area_overlap",)),
    ("uncovered", "道路未入网格 uncovered roads", ("road_uncovered",)),
    ("unassigned", "河段无河长 unassigned reaches", ("river_unassigned",)),
)


def _headline(model: _Model, scope: _Scope, findings: _Layer) -> str:
    t = model.totals
    parts = []
    if scope.kind == "town":
        title = f"<b>{esc(model.town_name)}</b> 指挥中心"
    elif scope.kind == "village":
        title = f"<b>{esc(model.town_name)} · {esc(scope.label)}</b>"
    else:
        title = f"<b>{esc(scope.label)}</b> 责任地图 · {esc(model.town_name)}"
    parts.append(title)
    parts.append(f'<span class="gg-kpi">{esc(model.as_of)}</span>')
    if scope.kind == "town" and t:
        cov = t.get("area_coverage")
        if cov is not None:
            cls = "gg-ok" if float(cov) >= 0.9999 else "gg-bad"
            parts.append(f'<span class="gg-kpi">面积覆盖 area <span class="{cls}">{esc(_fmt_pct(cov))}</span></span>')
        lane = t.get("uncovered_lane_m")
        if lane is not None:
            cls = "gg-ok" if float(lane) == 0 else "gg-bad"
            parts.append(f'<span class="gg-kpi">未覆盖小巷 uncovered lanes '
                         f'<span class="{cls}">{esc(_fmt_measure(lane, "m"))}</span></span>')
        veto = t.get("veto")
        if veto is not None:
            cls = "gg-ok" if int(veto) == 0 else "gg-bad"
            parts.append(f'<span class="gg-kpi">一票否决 veto <span class="{cls}">{int(veto)}</span></span>')
    else:
        sev = findings.attrs["severity"] if len(findings) else pd.Series([], dtype=object)
        veto = int((sev == "veto").sum())
        parts.append(f'<span class="gg-kpi">问题 findings <b>{len(findings)}</b></span>')
        parts.append(f'<span class="gg-kpi">一票否决 veto <span class="{"gg-bad" if veto else "gg-ok"}">'
                     f"{veto}</span></span>")
    return "".join(parts)


def _column(values: list[Any]) -> Any:
    """A property column, dictionary-encoded (``{"u": uniques, "i": codes}``) when values repeat."""
    if len(values) < 8:
        return values
    try:
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    except TypeError:  # unhashable values (label points): keep as they are
        return values
    if len(uniques) > len(values) // 2:
        return values
    return {"u": [None if u is None or u != u else u for u in uniques], "i": codes.tolist()}


def _payload(layer: _Layer) -> dict[str, Any]:
    cols = [list(c) for c in zip(*layer.rows, strict=True)] if layer.rows else [[] for _ in layer.keys]
    return {"k": layer.keys, "c": [_column(c) for c in cols], "t": _column(layer.gtypes.tolist()),
            "g": layer.geoms.tolist(), "s": _SCALE}


def _data_block(m: folium.Map, layer: _Layer, ident: str) -> str:
    block = f'<script type="application/json" id="{ident}">{_script_json(_payload(layer))}</script>'
    m.get_root().html.add_child(_Raw(block), name=ident)
    return ident


def _render(model: _Model, scope: _Scope, *, bases: list[_Base], first_base: int, assets: str,
            show_phones: bool) -> folium.Map:
    L = {k: v.take(scope.masks.get(k)) for k, v in model.layers.items()}
    # Bounds: what the map is about (the scope's grids and findings, else the boundary).
    focus = [L[k].bounds for k in ("grids", "findings") if len(L[k])] if scope.kind != "town" else []
    if scope.kind != "town" and not focus and len(L["villages"]):
        focus = [L["villages"].bounds]
    allb = np.vstack(focus) if focus else (L["boundary"].bounds if len(L["boundary"]) else L["villages"].bounds)
    if len(allb):
        south, west = float(np.nanmin(allb[:, 1])), float(np.nanmin(allb[:, 0]))
        north, east = float(np.nanmax(allb[:, 3])), float(np.nanmax(allb[:, 2]))
    else:
        south, west, north, east = 31.9, 120.8, 32.1, 121.0
    m = folium.Map(location=[(south + north) / 2, (west + east) / 2], zoom_start=13, tiles=None,
                   prefer_canvas=True, control_scale=False, max_zoom=20)
    fig = m.get_root()
    title_text = {"town": f"{model.town_name} 指挥中心", "village": f"{model.town_name} {scope.label}",
                  "owner": f"{scope.label} 责任地图"}[scope.kind]
    fig.title = esc(title_text)
    # Assets: only Leaflet; folium's jQuery/Bootstrap/awesome-markers are not used by anything here.
    m.default_js = []
    m.default_css = []
    if assets == "inline":
        js, css = _leaflet_files()
        fig.header.add_child(_Raw(f"<style>{css}</style>"), name="leaflet_css")
        fig.header.add_child(_Raw(_inline_script(js)), name="leaflet")
    else:
        fig.header.add_child(_Raw(f'<link rel="stylesheet" href="{_LEAFLET_CSS}"/>'), name="leaflet_css")
        fig.header.add_child(_Raw(f'<script src="{_LEAFLET_JS}"></script>'), name="leaflet")
    fig.header.add_child(_Raw(f"<style>{_static('map.css')}</style>"), name="gg_css")
    fig.header.add_child(_Raw(_inline_script(_static("map_runtime.js"))), name="gg_runtime")
    fig.html.add_child(_Raw(_HATCH_SVG), name="gg_hatch")
    _Pane(_TOP_PANE, 450).add_to(m)
    _add_basemaps(m, bases, first_base)

    legend: list[str] = []
    counter = [0]

    def overlay(key: str, layer: _Layer, label: str, swatch: str, spec: dict[str, Any], *, show: bool = True,
                legend_line: str | None = None) -> None:
        counter[0] += 1
        ident = f"gg-d{counter[0]}"
        if len(layer):
            _data_block(m, layer, ident)
        spec = {"key": key, "data": ident if len(layer) else None, "n": len(layer), "lazy": not show, **spec}
        _GeoLayer(_layer_name(swatch, label, len(layer)), spec, show=show).add_to(m)
        legend.append(f"<li>{swatch}{esc(legend_line or label)}</li>")

    # Base layers of information.
    bstyle = {"color": "#222222", "weight": 3, "dashArray": "10 6", "fill": False}
    overlay("boundary", L["boundary"], "镇界 town boundary", _swatch(bstyle, line=True),
            {"style": {"base": bstyle}, "interactive": False})
    gstyle = {"color": "#555555", "weight": 1, "fillOpacity": 0.45}
    overlay("grids", L["grids"], "网格 grids", _swatch({"fillColor": PALETTE[0], "color": "#555"}),
            {"style": {"base": gstyle, "by": "_k", "styles": {str(i): {"fillColor": c} for i, c in enumerate(PALETTE)}},
             "title": "网格 Grid",
             "tip": [["g", "网格 grid"], ["v", "村居 village"], ["c", "网格长 chief"]],
             "pop": [["g", "网格 grid"], ["nm", "名称 name"], ["v", "村居 village"], ["c", "网格长 chief"],
                     ["m", "网格员 members"], ["p", "电话 phone"], ["h", "户数 households"]],
             "search": ["g", "v", "c"]},
            legend_line="网格 grids (neighbours differ in colour)")
    vstyle = {"color": "#1f3b73", "weight": 2.5, "fill": False}
    overlay("villages", L["villages"], "村居 villages", _swatch(vstyle, line=True),
            {"style": {"base": vstyle}, "interactive": False, "labels": "n", "title": "村居 Village",
             "tip": [["n", "村居 village"], ["i", "编号 id"], ["a", "面积覆盖 area in grids"], ["f", "问题 findings"]],
             "pop": [["n", "村居 village"], ["i", "编号 id"], ["h", "户数 households"], ["g", "网格 grids"],
                     ["u", "无网格长 unstaffed grids"], ["a", "面积覆盖 area in grids"],
                     ["e", "有人管 staffed area"], ["r", "道路覆盖 roads in grids"], ["f", "问题 findings"],
                     ["x", "一票否决 veto"]],
             "search": ["n", "i"]})
    for cls in settings.road_classes:
        rstyle = {**_ROAD_STYLE.get(cls, {"color": "#999", "weight": 1}), "opacity": 0.9}
        overlay(f"roads_{cls}", L[f"roads_{cls}"], _ROAD_LABEL.get(cls, cls), _swatch(rstyle, line=True),
                {"style": {"base": rstyle}, "title": "道路 Road",
                 "tip": [["n", "名称 name"], ["i", "道路 road"], ["c", "等级 class"]]},
                show=cls not in MINOR_ROAD_CLASSES)
    wstyle = {"color": "#2b83ba", "weight": 3, "opacity": 0.9}
    overlay("rivers", L["rivers"], "河段 river reaches", _swatch(wstyle, line=True),
            {"style": {"base": wstyle}, "title": "河段 River reach",
             "tip": [["n", "河流 river"], ["i", "河段 reach"], ["v", "村居 village"], ["t", "镇级河长 town chief"],
                     ["c", "村级河长 village chief"], ["l", "长度 length"], ["lv", "等级 level"]]})
    if "corridors" in L:
        cstyle = {"color": "#2b83ba", "weight": 1, "opacity": 0.5, "fillColor": "#2b83ba", "fillOpacity": 0.12}
        overlay("corridors", L["corridors"], "河道管理范围 river corridors", _swatch(cstyle),
                {"style": {"base": cstyle}, "title": "河道管理范围 River corridor",
                 "tip": [["c", "河长 chief"], ["lv", "级别 level"], ["r", "河流 river"], ["v", "村居 village"],
                         ["a", "面积 area"]]},
                show=False)
    icons = {esc(k): {"glyph": g, "color": c} for k, (g, c) in _POI_ICON.items()}
    icons["*"] = {"glyph": _POI_OTHER[0], "color": _POI_OTHER[1]}
    overlay("pois", L["pois"], "必查点位 must-check points",
            f'<span class="gg-poi" style="display:inline-block;background:{_POI_ICON["school"][1]};width:14px;'
            f'height:14px;line-height:14px;font-size:9px">{_POI_ICON["school"][0]}</span> ',
            {"style": {"base": {}}, "point": {"kind": "icon", "by": "kk", "icons": icons}, "title": "必查点位 Point",
             "tip": [["n", "名称 name"], ["k", "类型 kind"], ["s", "状态 status"]],
             "pop": [["n", "名称 name"], ["i", "编号 id"], ["k", "类型 kind"], ["g", "网格 grid"],
                     ["c", "网格长 grid chief"], ["rc", "河长 river chief"], ["s", "状态 status"]],
             "search": ["n", "i"]})
    legend.append('<li class="gg-wrap">' + " ".join(
        f'<span class="gg-poi" style="display:inline-block;background:{c};width:14px;height:14px;line-height:14px;'
        f'font-size:9px">{g}</span>{esc(_POI_LABEL[k])}' for k, (g, c) in _POI_ICON.items()) + "</li>")

    # Findings on top.
    fl = L["findings"]
    kinds = fl.attrs["kind"].to_numpy() if len(fl) else np.zeros(0, dtype=object)
    sev = fl.attrs["severity"].to_numpy() if len(fl) else np.zeros(0, dtype=object)
    ftip = [["k", "问题 kind"], ["s", "严重度 severity"], ["z", "规模 size"], ["o", "责任人 owner"],
            ["fs", "首次发现 first seen"], ["st", "状态 status"]]
    fpop = [["k", "问题 kind"], ["w", "含义 meaning"], ["s", "严重度 severity"], ["z", "规模 size"],
            ["o", "责任人 owner"], ["v", "村居 village"], ["g", "网格 grid"], ["m", "说明 message"],
            ["r", "规则 rule"], ["fs", "首次发现 first seen"], ["st", "状态 status"], ["dl", "期限 deadline"],
            ["i", "编号 id"]]
    fbase = {"title": "问题 Finding", "tip": ftip, "pop": fpop, "point": {"kind": "circle", "radius": 7}}
    sev_styles = {esc(s): {"color": c, "fillColor": c} for s, c in _SEVERITY_COLOUR.items()}
    shown = np.zeros(len(fl), dtype=bool)
    notes: list[str] = []
    for key, label, which in _FINDING_LAYERS:
        mask = np.isin(kinds, which)
        shown |= mask
        sub = fl.take(mask)
        if key == "gaps":
            svg = len(sub) <= SVG_LIMIT
            style = ({"color": "#d00000", "weight": 1.5, "fillColor": f"url(#{_HATCH_ID})", "fillOpacity": 1}
                     if svg else {"color": "#d00000", "weight": 1.5, "fillColor": "#ff0000", "fillOpacity": 0.35})
            if not svg:
                notes.append(f"网格空白超过 {SVG_LIMIT} 处，改为实色填充 (more than {SVG_LIMIT} gaps: flat fill)")
            overlay(key, sub, label, '<span class="gg-sw gg-hatch-sw"></span>',
                    {**fbase, "style": {"base": style}, "svg": svg, "pane": _TOP_PANE if svg else None})
        elif key == "overlaps":
            style = {"color": "#e65c00", "weight": 1.5, "fillColor": "#ff8c00", "fillOpacity": 0.55}
            overlay(key, sub, label, _swatch(style), {**fbase, "style": {"base": style}, "front": True})
        elif key == "uncovered":
            style = {"color": "#e00000", "weight": 5, "opacity": 0.95}
            overlay(key, sub, label, _swatch(style, line=True), {**fbase, "style": {"base": style}, "front": True})
        else:
            style = {"color": "#c51b7d", "weight": 5, "dashArray": "8 6", "opacity": 0.95}
            overlay(key, sub, label, _swatch(style, line=True), {**fbase, "style": {"base": style}, "front": True})
    if "sensitive" in L:
        # Context, not alarm: the problems inside sections are findings drawn above in their own colours.
        style = {"color": "#7b3294", "weight": 2, "opacity": 0.35, "fillColor": "#7b3294", "fillOpacity": 0.1}
        many = len(L["sensitive"]) > SHOW_LIMIT
        if many:
            notes.append(f"敏感地段超过 {SHOW_LIMIT} 段，默认关闭 (more than {SHOW_LIMIT} sensitive sections: "
                         "switch the layer on to see them)")
        overlay("sensitive", L["sensitive"], "敏感地段 sensitive sections", _swatch(style),
                {"style": {"base": style}, "front": True, "title": "敏感地段 Sensitive section",
                 "point": {"kind": "circle", "radius": 7},
                 "tip": [["nm", "名称 name"], ["r", "规则 rule"], ["s", "严重度 severity"], ["o", "责任人 owner"],
                         ["cv", "入网格 covered"], ["sf", "有人管 staffed"]],
                 "pop": [["i", "地段 section"], ["nm", "名称 name"], ["r", "规则 rule"], ["d", "说明 detail"],
                         ["s", "严重度 severity"], ["t", "触发 trigger"], ["v", "村居 village"], ["g", "网格 grid"],
                         ["o", "责任人 owner"], ["rc", "河长 river chief"], ["cv", "入网格 covered"],
                         ["sf", "有人管 staffed"], ["l", "长度 length"]]}, show=not many)
    other = fl.take(~shown)
    ostyle = {"color": "#e31a1c", "weight": 3, "fillOpacity": 0.35}
    overlay("other", other, "其他问题 other findings", _swatch({"color": "#e31a1c", "fillColor": "#fd8d3c"}),
            {**fbase, "style": {"base": ostyle, "by": "sv", "styles": sev_styles}, "front": True},
            legend_line="其他问题 other findings (colour = severity)")
    veto = fl.take(sev == "veto")
    vsvg = len(veto) <= SVG_LIMIT
    vstyle_ = {"color": "#8b0000", "weight": 4, "fillColor": "#8b0000", "fillOpacity": 0.25,
               **({"className": "gg-pulse"} if vsvg else {})}
    overlay("veto", veto, "一票否决 veto items", '<span class="gg-sw gg-sw-pulse" style="background:#f4cccc"></span>',
            {**fbase, "style": {"base": vstyle_}, "svg": vsvg, "pane": _TOP_PANE if vsvg else None,
             "front": not vsvg, "point": {"kind": "circle", "radius": 10}})

    folium.LayerControl(position="topright", collapsed=False).add_to(m)

    # Controls: folium's plugins from the CDN, our own small ones in the self-contained page.
    tiles_cfg = None
    if bases:
        url, opts = bases[first_base].tiles[0]
        tiles_cfg = {"url": url, "options": {k: v for k, v in opts.items() if k in ("subdomains", "maxZoom")}}
    outline_id = "gg-d1" if len(L["boundary"]) else None  # the boundary layer's own data block, drawn first
    cfg: dict[str, Any] = {"search": esc("搜索网格/村居/网格长 grid, village, chief"), "scale": True,
                           "detailZoom": DETAIL_ZOOM}
    if assets == "cdn":
        folium.plugins.Fullscreen(position="topleft", title="Fullscreen 全屏", title_cancel="Exit 退出").add_to(m)
        folium.plugins.MeasureControl(position="topleft", primary_length_unit="meters",
                                      secondary_length_unit="kilometers", primary_area_unit="sqmeters").add_to(m)
        if tiles_cfg is not None:
            mini_url, mini_opts = bases[first_base].tiles[0]
            folium.plugins.MiniMap(
                tile_layer=folium.TileLayer(tiles=mini_url, attr=bases[first_base].attr,
                                            subdomains=mini_opts.get("subdomains", "abc")),
                position="bottomright", toggle_display=True, zoom_level_offset=-5).add_to(m)
        else:
            cfg["minimap"] = {"tiles": None, "outline": outline_id}
    else:
        cfg.update(fullscreen=True, measure=True, minimap={"tiles": tiles_cfg, "outline": outline_id})
        notes.append("离线版：全屏、鹰眼、测距为内置简版 (self-contained page: built-in fullscreen, "
                     "minimap and measure controls)")
    if any(b for b in bases) and "AMap" in bases[0].name:
        notes.append("高德底图为 GCJ-02 坐标，所有图层已偏移对齐 (AMap tiles are GCJ-02: overlays shifted to match)")
    notes.append("电话已隐藏中间四位 (phones masked)" if not show_phones else "电话完整显示 (phones shown in full)")
    if model.dropped_findings and scope.kind == "town":
        notes.append(f"{model.dropped_findings} 条问题无位置，未画出 (findings without a location, not drawn)")
    cfg["title"] = _headline(model, scope, fl)
    cfg["legend"] = ("<details open><summary>图例 Legend</summary><ul>" + "".join(legend) + "</ul>"
                     + "".join(f'<div class="gg-note">{esc(n)}</div>' for n in notes) + "</details>")
    m.fit_bounds([[south, west], [north, east]], max_zoom=17)
    _Finish(cfg).add_to(m)
    return m


# ----------------------------------------------------------------------------- public API
def _check(basemap: str, assets: str) -> None:
    if basemap not in BASEMAPS:
        msg = f"unknown basemap {basemap!r}."
        raise ConfigError(msg, fix=f"use one of {list(BASEMAPS)}")
    if assets not in ASSETS:
        msg = f"unknown assets mode {assets!r}."
        raise ConfigError(msg, fix="use 'cdn' (links to CDNs) or 'inline' (one self-contained file for the intranet)")


def command_center_map(
    assessment: Any,
    *,
    basemap: str = "osm",
    village: str | None = None,
    owner: str | None = None,
    assets: str = "cdn",
    tiles_url: str | None = None,
    show_phones: bool = False,
    tianditu_key: str | None = None,
) -> folium.Map:
    """Draw the command-center map of an assessment.

    Parameters
    ----------
    assessment
        An :class:`gisgrid.analysis.Assessment` (``town``, ``findings``,
        ``summary``, ``totals``, ``responsibility``, ``sensitive``,
        ``checkpoints``).
    basemap
        One of :data:`BASEMAPS`: ``"osm"``, ``"tianditu"`` (vector),
        ``"tianditu-img"`` (imagery), ``"gaode"``, ``"gaode-satellite"``,
        ``"none"``. With ``gaode*`` every overlay is shifted to GCJ-02.
    village
        Only this village (``village_id``), its grids, roads, reaches, points
        and findings; neighbouring villages for context.
    owner
        Only this owner's grids, reaches and findings (the owner string of the
        findings: a chief's name, a village committee, ...).
    assets
        ``"cdn"`` (Leaflet and plugins from CDNs) or ``"inline"`` (everything
        embedded; built-in fullscreen, minimap and measure controls).
    tiles_url
        A tile URL template (``https://tiles.intranet/{z}/{x}/{y}.png``) that
        replaces the basemap's tiles.
    show_phones
        Show phone numbers in full (default: masked, ``138****0000``).
    tianditu_key
        Tianditu key; default the ``TIANDITU_KEY`` environment variable.

    Returns
    -------
    folium.Map

    Raises
    ------
    ConfigError
        Unknown basemap or assets mode, a Tianditu basemap without a key,
        ``assets="inline"`` without xstatic-leaflet, an unknown village or owner.
    """
    _check(basemap, assets)
    if village is not None and owner is not None:
        msg = "give village or owner, not both."
        raise ConfigError(msg, fix="draw one map per village and one per owner")
    bases, first = _basemaps(basemap, tiles_url, tianditu_key)
    model = _prepare(assessment, gcj=basemap.startswith("gaode"), show_phones=show_phones)
    scope = _scope_for(model, assessment, village=village, owner=owner)
    return _render(model, scope, bases=bases, first_base=first, assets=assets, show_phones=show_phones)


def _scope_for(model: _Model, assessment: Any, *, village: str | None, owner: str | None) -> _Scope:
    if village is not None:
        return _village_scope(model, assessment, str(village))
    if owner is not None:
        return _owner_scope(model, assessment, str(owner))
    return _Scope("town", model.town_name, {})


def save_map(m: folium.Map, path: str | os.PathLike[str]) -> Path:
    """Render ``m`` to one HTML file, atomically (temporary file + rename).

    Parameters
    ----------
    m
        A map from :func:`command_center_map`.
    path
        Target file; parent folders are created.

    Returns
    -------
    Path
    """
    text = m.get_root().render()
    out = atomic_write_text(path, text)
    logger.info("map written: %s (%.1f MB)", out, len(text.encode("utf-8")) / 1e6)
    return out


_UNSAFE = re.compile(r"[^\w\-]+", re.UNICODE)


def safe_name(text: str, *, limit: int = 60) -> str:
    """File-name part for an owner or village: letters (any script), digits, ``-`` and ``_`` only."""
    s = _UNSAFE.sub("_", str(text)).strip("_.")[:limit]
    return s or "_"


def _unique_names(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = safe_name(name)
        cand, k = base, 2
        while cand.lower() in used:
            cand, k = f"{base}~{k}", k + 1
        used.add(cand.lower())
        out[name] = cand
    return out


def _index_html(town: str, entries: Sequence[tuple[str, str, str]]) -> str:
    """The maps folder's index page: (section, label, href) rows, all escaped."""
    sections: dict[str, list[str]] = {}
    for section, label, href in entries:
        item = f'<a href="{esc(quote(href))}">{esc(label)}</a>' if href else esc(label)
        sections.setdefault(section, []).append(f"<li>{item}</li>")
    body = "".join(f"<h2>{esc(s)}</h2><ul>{''.join(items)}</ul>" for s, items in sections.items())
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{esc(town)} 地图 maps</title>"
        "<style>body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:2em;}"
        "ul{columns:3 18em;}li{margin:.2em 0;}</style></head>"
        f"<body><h1>{esc(town)} 网格化管理地图 maps</h1>{body}</body></html>\n"
    )


#: Above this many owners, ``write_maps`` skips the per-owner maps unless asked for them.
MAX_OWNER_MAPS = 500
#: Above this many villages only the villages with findings get a map of their own (the rest are on the
#: command-center map, and ``gisgrid map --village ID`` writes any one).
MAX_VILLAGE_MAPS = 100


def write_maps(
    assessment: Any,
    out_dir: str | os.PathLike[str],
    *,
    basemap: str = "osm",
    assets: str = "cdn",
    village: str | None = None,
    owner: str | None = None,
    tiles_url: str | None = None,
    tianditu_key: str | None = None,
    per_owner: bool | None = None,
    per_village: bool | None = None,
) -> list[Path]:
    """Write the command-center, per-village and per-owner maps and their index under ``out_dir/maps``.

    Parameters
    ----------
    assessment
        The analysis result.
    out_dir
        Folder that receives ``maps/``.
    basemap, assets, tiles_url, tianditu_key
        As for :func:`command_center_map`. Phones are always masked in files.
    village, owner
        Write only that village's (or owner's) map, plus the index.
    per_owner
        Write one map per owner. None: only while there are at most
        ``MAX_OWNER_MAPS`` owners (a county has thousands of chiefs; each can
        get theirs with ``gisgrid map --owner NAME``).

    per_village
        Write one map per village. None: every village while there are at
        most ``MAX_VILLAGE_MAPS``; above that only the villages with
        findings (a county has hundreds; the command-center map shows them
        all). False: only the villages with findings.

    Returns
    -------
    list of Path
        Every file written, the index last.
    """
    _check(basemap, assets)
    bases, first = _basemaps(basemap, tiles_url, tianditu_key)
    folder = Path(out_dir) / "maps"
    model = _prepare(assessment, gcj=basemap.startswith("gaode"), show_phones=False)
    town = model.town_name

    def draw(scope: _Scope, name: str) -> Path:
        m = _render(model, scope, bases=bases, first_base=first, assets=assets, show_phones=False)
        return save_map(m, folder / name)

    written: list[Path] = []
    entries: list[tuple[str, str, str]] = []
    if village is None and owner is None:
        written.append(draw(_Scope("town", town, {}), "command_center.html"))
        entries.append(("指挥中心 command center", f"{town} 指挥中心 command center", "command_center.html"))
    villages = [str(village)] if village is not None else (
        [] if owner is not None else assessment.town.villages["village_id"].astype(str).tolist())
    if village is None and owner is None and (per_village is False or (
            per_village is None and len(villages) > MAX_VILLAGE_MAPS)):
        with_findings = set(assessment.findings["village_id"].dropna().astype(str))
        quiet = [v for v in villages if v not in with_findings]
        villages = [v for v in villages if v in with_findings]
        if quiet:
            logger.info("maps: %d villages without findings get no map of their own (gisgrid map --village ID "
                        "writes one)", len(quiet))
            entries.append(("村居 villages", f"另有 {len(quiet)} 个村居无问题 {len(quiet)} more villages with nothing "
                            "to fix: see the command-center map, or gisgrid map --village ID", ""))
    vfile = _unique_names(villages)
    for vid in villages:
        name = f"village_{vfile[vid]}.html"
        written.append(draw(_village_scope(model, assessment, vid), name))
        entries.append(("村居 villages", f"{model.village_names.get(vid, vid)} ({vid})", name))
    owners = [str(owner)] if owner is not None else ([] if village is not None else model.owners)
    if owner is None and owners and (per_owner is False or (per_owner is None and len(owners) > MAX_OWNER_MAPS)):
        logger.info("maps: %d owners; per-owner maps not written (gisgrid map --owner NAME writes one)", len(owners))
        entries.append(("责任人 owners", f"{len(owners)} 个责任人: gisgrid map --owner NAME", ""))
        owners = []
    ofile = _unique_names(owners)
    for who in owners:
        name = f"owner_{ofile[who]}.html"
        written.append(draw(_owner_scope(model, assessment, who), name))
        entries.append(("责任人 owners", who, name))
    written.append(atomic_write_text(folder / "index.html", _index_html(town, entries)))
    logger.info("maps: %d files in %s", len(written), folder)
    return written
