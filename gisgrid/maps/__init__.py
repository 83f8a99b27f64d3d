r"""Command-center maps: self-contained, safe, fast Leaflet pages drawn with folium.

This package is the only place that imports folium. It turns an ``Assessment``
into one interactive HTML page per audience:

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
uncovered roads (bold red), unassigned reaches, sensitive sections (off at
first, drawn light: context, not alarm), other findings, and veto items
(pulsing; a veto point is a large red ring with a badge above its icon).

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
    runtime of our own (``gisgrid/maps/assets/map_runtime.js``, shared by or
    inlined in every page) that binds one tooltip and one popup per layer and builds the table
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
    are rounded to 6 decimals (~0.1 m) and written as integer deltas in a
    compact text (zigzag, 5 bits per character: about half the bytes of JSON
    numbers), as are the codes of repeated property values; only the columns
    that tooltips and popups show are kept, under one-letter keys,
    column-wise; hidden layers (sensitive sections, minor roads, corridors)
    are parsed only when first switched on; the search index decodes its
    text on the first search. A county's command-center page is about 1/19
    of ``explore()`` of its villages, grids, roads and findings
    (``benchmarks/bench_maps.py``).
Popups
    A field | value table of a fixed width (220-360 px), scrolling when
    long; Leaflet pans it into view with a margin and keeps it there.
Basemaps
    ``osm``, ``tianditu`` / ``tianditu-img`` (vector ``vec_w``+``cva_w`` or
    imagery ``img_w``+``cia_w``, both offered), ``gaode`` / ``gaode-satellite``
    (AMap; GCJ-02 tiles, so every overlay is shifted with
    :func:`gisgrid.crs.wgs84_to_gcj02`), ``none``; ``tiles_url`` replaces the
    basemap's tiles with an intranet tile server (``gaode`` still shifts).
Assets
    ``assets="assets"`` (the default) writes one ``maps/assets/`` folder per
    map set, Leaflet (JS, CSS and its images) from the ``xstatic-leaflet``
    package plus our runtime and CSS, and every map links it relatively: the
    maps work offline and share one copy. ``assets="inline"`` embeds the same
    in each page (one self-contained file). Both use small built-in
    fullscreen, minimap and measure controls instead of folium's plugins (no
    package ships them): the page fetches nothing but tiles.
    ``assets="cdn"`` links Leaflet and folium's Fullscreen, MiniMap and
    MeasureControl plugins from their CDNs.

Modules
-------
``text`` escaping, masked phones, numbers; ``colouring`` grid colours;
``styles`` strokes, icons and names of the layers; ``layers`` geometry made
ready for the page; ``prepare`` every layer of an assessment, once;
``scopes`` what a village's or an owner's map shows; ``basemaps`` tiles;
``static`` Leaflet and our runtime; ``elements`` our folium elements;
``page`` one map; this module the maps folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from gisgrid.findings import OPEN_STATUSES, id_list, split_owner
from gisgrid.io import atomic_write_text
from gisgrid.io.atomic import WINDOWS_RESERVED, cut_utf8
from gisgrid.maps.basemaps import BASEMAPS, _basemaps
from gisgrid.maps.colouring import colour_graph, grid_colours
from gisgrid.maps.layers import DECIMALS
from gisgrid.maps.page import (
    DETAIL_ZOOM,
    SVG_LIMIT,
    _check,
    _render,
    command_center_map,
    save_map,
    write_assets,
)
from gisgrid.maps.prepare import _prepare
from gisgrid.maps.scopes import _owner_scope, _Scope, _village_scope
from gisgrid.maps.static import ASSETS, ASSETS_DIR, LEAFLET_VERSION
from gisgrid.maps.styles import MINOR_ROAD_CLASSES, PALETTE
from gisgrid.maps.text import esc, mask_phone

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

__all__ = [
    "ASSETS",
    "ASSETS_DIR",
    "BASEMAPS",
    "DECIMALS",
    "DETAIL_ZOOM",
    "LEAFLET_VERSION",
    "MAX_OWNER_MAPS",
    "MAX_VILLAGE_MAPS",
    "MINOR_ROAD_CLASSES",
    "PALETTE",
    "SVG_LIMIT",
    "colour_graph",
    "command_center_map",
    "esc",
    "grid_colours",
    "mask_phone",
    "safe_name",
    "save_map",
    "write_assets",
    "write_maps",
]

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w\-]+", re.UNICODE)


def safe_name(text: str, *, limit: int = 60) -> str:
    """File-name part for an owner or village: letters (any script), digits, ``-`` and ``_`` only.

    At most ``limit`` characters and 120 bytes of UTF-8 (file names are limited in bytes, not characters);
    a Windows device name (``CON``, ``NUL``, …) gets a leading ``_``.
    """
    s = cut_utf8(_UNSAFE.sub("_", str(text)).strip("_.")[:limit], 120)
    if s.upper() in WINDOWS_RESERVED:
        s = f"_{s}"
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


MAX_OWNER_MAPS = 500
#: Above this many villages only the villages with findings get a map of their own (the rest are on the
#: command-center map, and ``gisgrid map --village ID`` writes any one).
MAX_VILLAGE_MAPS = 100


def _owners_to_fix(assessment: Assessment) -> list[str]:
    """The owners with an open finding (every finding when there is no history): one map each."""
    found = assessment.findings
    if "status" in found.columns:
        found = found[found["status"].isin(OPEN_STATUSES)]
    return sorted({who for o in found["owner"] for who in split_owner(o)}) if "owner" in found.columns else []


def write_maps(
    assessment: Assessment,
    out: str | os.PathLike[str],
    *,
    basemap: str = "osm",
    assets: str = "assets",
    village: str | None = None,
    owner: str | None = None,
    tiles_url: str | None = None,
    tianditu_key: str | None = None,
    per_owner: bool | None = None,
    per_village: bool | None = None,
) -> list[Path]:
    """Write the command-center, per-village and per-owner maps and their index under ``out/maps``.

    Parameters
    ----------
    assessment
        The analysis result.
    out
        Folder that receives ``maps/``.
    basemap, assets, tiles_url, tianditu_key
        As for :func:`command_center_map`. Phones are always masked in files.
        With ``assets="assets"`` the shared ``maps/assets/`` folder is written once for the set.
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
        Every file written (the changed asset files first), the index last.
    """
    _check(basemap, assets)
    bases, first = _basemaps(basemap, tiles_url, tianditu_key)
    folder = Path(out) / "maps"
    model = _prepare(assessment, gcj=basemap.startswith("gaode"), show_phones=False)
    town = model.town_name

    def draw(scope: _Scope, name: str) -> Path:
        m = _render(model, scope, bases=bases, first_base=first, assets=assets, show_phones=False)
        return save_map(m, folder / name, assets=False)

    # One shared copy of Leaflet and our runtime for the whole set (written once, before any map links it).
    written: list[Path] = write_assets(folder) if assets == "assets" else []
    entries: list[tuple[str, str, str]] = []
    if village is None and owner is None:
        written.append(draw(_Scope("town", town, {}), "command_center.html"))
        entries.append(("指挥中心 command center", f"{town} 指挥中心 command center", "command_center.html"))
    villages = [str(village)] if village is not None else (
        [] if owner is not None else assessment.town.villages["village_id"].astype(str).tolist())
    if village is None and owner is None and (per_village is False or (
            per_village is None and len(villages) > MAX_VILLAGE_MAPS)):
        with_findings = {i for v in assessment.findings["village_id"] for i in id_list(v)}
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
    owners = [str(owner)] if owner is not None else ([] if village is not None else _owners_to_fix(assessment))
    if owner is None and village is None and len(owners) < len(model.owners):
        rest = len(model.owners) - len(owners)
        entries.append(("责任人 owners", f"另有 {rest} 个责任人无待办 {rest} more owners with nothing to fix: "
                        "gisgrid map --owner NAME", ""))
    if owner is None and owners and (per_owner is False or (per_owner is None and len(owners) > MAX_OWNER_MAPS)):
        logger.info("maps: %d owners; per-owner maps not written (gisgrid map --owner NAME writes one)", len(owners))
        entries.append(("责任人 owners", f"{len(owners)} 个责任人: gisgrid map --owner NAME", ""))
        owners = []
    ofile = _unique_names(owners)
    for who in owners:
        name = f"owner_{ofile[who]}.html"
        written.append(draw(_owner_scope(model, assessment, who), name))
        entries.append(("责任人 owners", who, name))
    if village is None and owner is None:  # one map asked for: the index of the whole set stays as it is
        written.append(atomic_write_text(folder / "index.html", _index_html(town, entries)))
    logger.info("maps: %d files in %s", len(written), folder)
    return written
