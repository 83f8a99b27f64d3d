"""The page: one Leaflet map per scope with its layers, legend, headline and controls, and saving it.

:func:`command_center_map` prepares an assessment and draws one scope of it; :func:`_render` draws a
scope of an already prepared model (``write_maps`` prepares once and draws many).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import folium
import folium.plugins
import numpy as np
import pandas as pd
from branca.element import Figure

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.io import atomic_write_text
from gisgrid.maps.basemaps import BASEMAPS, _add_basemaps, _Base, _basemaps
from gisgrid.maps.elements import _data_block, _Finish, _GeoLayer, _Pane, _Raw
from gisgrid.maps.layers import _Layer
from gisgrid.maps.prepare import PATROL_VALIDITY, _Model, _prepare
from gisgrid.maps.scopes import _Scope, _scope_for
from gisgrid.maps.static import (
    _LEAFLET_CSS,
    _LEAFLET_JS,
    ASSETS,
    ASSETS_DIR,
    _asset_files,
    _asset_links,
    _inline_script,
    _leaflet_files,
    _static,
)
from gisgrid.maps.styles import (
    _FINDING_LAYERS,
    _HATCH_ID,
    _HATCH_SVG,
    _POI_ICON,
    _POI_OTHER,
    _ROAD_STYLE,
    _TOP_PANE,
    MINOR_ROAD_CLASSES,
    PALETTE,
    _road_label,
)
from gisgrid.maps.text import _fmt_measure, _fmt_pct, esc
from gisgrid.vocab import KIND_ZH, METRIC_LABELS, POI_KIND_LABELS, SEVERITY_COLOURS

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

logger = logging.getLogger(__name__)

_ASSET_LINKS = "gg_assets"  # the page header's element that links the shared assets/ folder
#: Layers with more features than this draw on the canvas (no hatch, no pulse).
SVG_LIMIT = 3000
#: Below this zoom village labels and point icons are hidden (a county overview would be all icons).
DETAIL_ZOOM = 12


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
            parts.append(f'<span class="gg-kpi">{METRIC_LABELS["area_coverage"]} '
                         f'<span class="{cls}">{esc(_fmt_pct(cov))}</span></span>')
        lane = t.get("uncovered_lane_m")
        if lane is not None:
            cls = "gg-ok" if float(lane) == 0 else "gg-bad"
            parts.append(f'<span class="gg-kpi">{METRIC_LABELS["uncovered_lane_m"]} '
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
    # The view first, so every layer is projected once, at the zoom it is shown at (not again after a fit).
    m.fit_bounds([[south, west], [north, east]], max_zoom=17)
    fig = cast(Figure, m.get_root())  # a Map's root is always its Figure
    title_text = {"town": f"{model.town_name} 指挥中心", "village": f"{model.town_name} {scope.label}",
                  "owner": f"{scope.label} 责任地图"}[scope.kind]
    fig.title = esc(title_text)
    # Assets: only Leaflet; folium's jQuery/Bootstrap/awesome-markers are not used by anything here.
    m.default_js = []
    m.default_css = []
    if assets == "assets":  # one shared copy beside the maps, relative links: works offline (save_map writes it)
        fig.header.add_child(_Raw(_asset_links()), name=_ASSET_LINKS)
    else:
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
             "tip": [["n", "村居 village"], ["i", "编号 id"], ["a", METRIC_LABELS["area_coverage"]],
                     ["f", "问题 findings"]],
             "pop": [["n", "村居 village"], ["i", "编号 id"], ["h", "户数 households"], ["g", "网格 grids"],
                     ["u", "无网格长 unstaffed grids"], ["a", METRIC_LABELS["area_coverage"]],
                     ["e", METRIC_LABELS["effective_coverage"]], ["r", METRIC_LABELS["road_coverage"]],
                     ["f", "问题 findings"],
                     ["x", "一票否决 veto"]],
             "search": ["n", "i"]})
    for cls in settings.road_classes:
        rstyle = {**_ROAD_STYLE.get(cls, {"color": "#999", "weight": 1}), "opacity": 0.9}
        overlay(f"roads_{cls}", L[f"roads_{cls}"], _road_label(cls), _swatch(rstyle, line=True),
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
        f'font-size:9px">{g}</span>{esc(POI_KIND_LABELS[k])}' for k, (g, c) in _POI_ICON.items()) + "</li>")

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
    sev_styles = {esc(s): {"color": c, "fillColor": c} for s, c in SEVERITY_COLOURS.items()}
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
                notes.append(f"{KIND_ZH['area_gap']}超过 {SVG_LIMIT} 处，改为实色填充 "
                             f"(more than {SVG_LIMIT} gaps: flat fill)")
            overlay(key, sub, label, '<span class="gg-sw gg-hatch-sw"></span>',
                    {**fbase, "style": {"base": style}, "svg": svg, "pane": _TOP_PANE if svg else None})
        elif key == "overlaps":
            style = {"color": "#e65c00", "weight": 1.5, "fillColor": "#ff8c00", "fillOpacity": 0.55}
            overlay(key, sub, label, _swatch(style), {**fbase, "style": {"base": style}, "front": True})
        elif key == "uncovered":
            style = {"color": "#e00000", "weight": 5, "opacity": 0.95}
            overlay(key, sub, label, _swatch(style, line=True), {**fbase, "style": {"base": style}, "front": True})
        elif key == "unpatrolled":  # assigned but not walked: the stretch (or the grid) no patrol covered
            style = {"color": "#0570b0", "weight": 6, "dashArray": "2 8", "opacity": 0.9, "fillColor": "#0570b0",
                     "fillOpacity": 0.15}
            overlay(key, sub, label, _swatch(style, line=True), {**fbase, "style": {"base": style}, "front": True})
        else:
            style = {"color": "#c51b7d", "weight": 5, "dashArray": "8 6", "opacity": 0.95}
            overlay(key, sub, label, _swatch(style, line=True), {**fbase, "style": {"base": style}, "front": True})
    if "patrols" in L:
        # The month's walks: valid ones thin and green (context), suspect ones bold purple (to check).
        good = {"color": "#1a9850", "weight": 2, "opacity": 0.7}
        bad = {"color": "#762a83", "weight": 4, "opacity": 0.95, "dashArray": "6 4"}
        overlay("patrols", L["patrols"], "巡查轨迹 patrol tracks", _swatch(good, line=True) + _swatch(bad, line=True),
                {"style": {"base": good, "by": "ok", "styles": {esc(PATROL_VALIDITY[True]): good,
                                                                esc(PATROL_VALIDITY[False]): bad}},
                 "title": "巡查 Patrol",
                 "tip": [["nm", "巡查人 who"], ["t0", "开始 start"], ["ok", "有效 valid"], ["r", "原因 why"]],
                 "pop": [["nm", "巡查人 who"], ["p", "编号 id"], ["lv", "级别 level"], ["t0", "开始 start"],
                         ["d", "时长 duration"], ["l", "长度 length"], ["sp", "速度 speed"], ["ok", "有效 valid"],
                         ["r", "原因 why"]],
                 "search": ["nm", "p"]},
                legend_line="巡查轨迹 patrol tracks (green: valid; purple dashed: suspect)")
    if "sensitive" in L:
        # Context, not alarm: the problems inside sections are findings drawn above in their own colours. The
        # layer starts off (a town has thousands of sections) and is drawn light and below the findings.
        style = {"color": "#9e7bb5", "weight": 1.5, "opacity": 0.45, "fillColor": "#9e7bb5", "fillOpacity": 0.06}
        if len(L["sensitive"]):
            notes.append("敏感地段默认关闭，在图层列表中打开 (sensitive sections: off at first, switch the layer on "
                         "to see them)")
        overlay("sensitive", L["sensitive"], "敏感地段 sensitive sections", _swatch(style),
                {"style": {"base": style}, "title": "敏感地段 Sensitive section",
                 "point": {"kind": "circle", "radius": 4},
                 "tip": [["nm", "名称 name"], ["r", "规则 rule"], ["s", "严重度 severity"], ["o", "责任人 owner"],
                         ["cv", "入网格 covered"], ["sf", "有人管 staffed"]],
                 "pop": [["i", "地段 section"], ["nm", "名称 name"], ["r", "规则 rule"], ["d", "说明 detail"],
                         ["s", "严重度 severity"], ["t", "触发 trigger"], ["v", "村居 village"], ["g", "网格 grid"],
                         ["o", "责任人 owner"], ["rc", "河长 river chief"], ["cv", "入网格 covered"],
                         ["sf", "有人管 staffed"], ["l", "长度 length"]]}, show=False)
    other = fl.take(~shown)
    ostyle = {"color": "#e31a1c", "weight": 3, "fillOpacity": 0.35}
    overlay("other", other, "其他问题 other findings", _swatch({"color": "#e31a1c", "fillColor": "#fd8d3c"}),
            {**fbase, "style": {"base": ostyle, "by": "sv", "styles": sev_styles}, "front": True},
            legend_line="其他问题 other findings (colour = severity)")
    veto = fl.take(sev == "veto")
    vsvg = len(veto) <= SVG_LIMIT
    vstyle_ = {"color": "#c00000", "weight": 5, "fillColor": "#ff0000", "fillOpacity": 0.3,
               **({"className": "gg-pulse"} if vsvg else {})}
    # A veto point is a large red ring with a badge above its own icon (an SVG/canvas circle hid under it).
    overlay("veto", veto, "一票否决 veto items",
            '<span class="gg-sw-alarm"></span><span class="gg-sw gg-sw-pulse" style="background:#f4cccc"></span>',
            {**fbase, "style": {"base": vstyle_}, "svg": vsvg, "pane": _TOP_PANE if vsvg else None,
             "front": not vsvg,
             "point": {"kind": "alarm"} if vsvg else {"kind": "circle", "radius": 12}})

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
        notes.append("离线版：全屏、鹰眼、测距为内置简版 (offline page: built-in fullscreen, "
                     "minimap and measure controls)")
    if any(b for b in bases) and "AMap" in bases[0].name:
        notes.append("高德底图为 GCJ-02 坐标，所有图层已偏移对齐 (AMap tiles are GCJ-02: overlays shifted to match)")
    notes.append("电话已隐藏中间四位 (phones masked)" if not show_phones else "电话完整显示 (phones shown in full)")
    if model.dropped_findings and scope.kind == "town":
        notes.append(f"{model.dropped_findings} 条问题无位置，未画出 (findings without a location, not drawn)")
    cfg["title"] = _headline(model, scope, fl)
    cfg["legend"] = ("<details open><summary>图例 Legend</summary><ul>" + "".join(legend) + "</ul>"
                     + "".join(f'<div class="gg-note">{esc(n)}</div>' for n in notes) + "</details>")
    _Finish(cfg).add_to(m)
    return m


def _check(basemap: str, assets: str) -> None:
    if basemap not in BASEMAPS:
        msg = f"unknown basemap {basemap!r}."
        raise ConfigError(msg, fix=f"use one of {list(BASEMAPS)}")
    if assets not in ASSETS:
        msg = f"unknown assets mode {assets!r}."
        raise ConfigError(msg, fix="use 'assets' (the default: one shared assets/ folder beside the maps, works "
                                   "offline), 'cdn' (links to CDNs) or 'inline' (one self-contained file)")


def command_center_map(
    assessment: Assessment,
    *,
    basemap: str = "osm",
    village: str | None = None,
    owner: str | None = None,
    assets: str = "inline",
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
        ``"inline"`` (default: everything embedded, one self-contained page
        that also shows in a notebook), ``"assets"`` (Leaflet and our runtime
        in one ``assets/`` folder beside the map, linked relatively;
        :func:`save_map` writes it; the default of :func:`write_maps` and of
        ``gisgrid run``) or ``"cdn"`` (Leaflet and plugins from CDNs). The
        offline modes (``inline``, ``assets``) use built-in fullscreen,
        minimap and measure controls.
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


def write_assets(folder: str | os.PathLike[str]) -> list[Path]:
    """Write the shared ``assets/`` folder (Leaflet, our runtime and CSS) under ``folder``.

    A file whose content is already there is left as it is.

    Parameters
    ----------
    folder
        The folder of the map files; ``folder/assets`` receives the files.

    Returns
    -------
    list of Path
        The files written (those that changed).
    """
    out = []
    for name, text in _asset_files().items():
        target = Path(folder) / ASSETS_DIR / name
        data = text.encode("utf-8")
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        out.append(atomic_write_text(target, text))
    return out


def save_map(m: folium.Map, path: str | os.PathLike[str], *, assets: bool = True) -> Path:
    """Render ``m`` to one HTML file, atomically (temporary file + rename).

    Parameters
    ----------
    m
        A map from :func:`command_center_map`.
    path
        Target file; parent folders are created.
    assets
        For a map drawn with ``assets="assets"``: also write the shared ``assets/`` folder beside the file
        (see :func:`write_assets`; unchanged files are left alone). :func:`gisgrid.maps.write_maps` writes it
        once for the whole set.

    Returns
    -------
    Path
    """
    if assets and _ASSET_LINKS in cast(Figure, m.get_root()).header._children:  # the map links assets/
        write_assets(Path(path).parent)
    text = m.get_root().render()
    out = atomic_write_text(path, text)
    logger.info("map written: %s (%.1f MB)", out, len(text.encode("utf-8")) / 1e6)
    return out
