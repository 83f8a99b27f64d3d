"""The district map (``maps/district.html``).

Towns coloured by score, the district findings, and links to each town's own map.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import folium
import geopandas as gpd
import pandas as pd

from gisgrid.maps.elements import _Raw
from gisgrid.maps.page import _ASSET_LINKS, save_map
from gisgrid.maps.static import _asset_links
from gisgrid.vocab import KIND_ZH, SEVERITY_COLOURS

__all__ = ["score_colour", "write_district_map"]

_FLAG = {"red": "红旗 red flag", "yellow": "黄牌 yellow card"}


def score_colour(score: float | None, low: float, high: float) -> str:
    """Red (worst) to green (best) along the district's range of scores; grey when not scored."""
    if score is None or pd.isna(score):
        return "#9e9e9e"
    t = 1.0 if high <= low else (score - low) / (high - low)
    r, g = int(215 * (1 - t) + 26 * t), int(48 * (1 - t) + 150 * t)
    return f"#{r:02x}{g:02x}41"


def write_district_map(name: str, boundaries: Mapping[str, gpd.GeoDataFrame], standings: pd.DataFrame,
                       findings: gpd.GeoDataFrame, town_maps: Mapping[str, str], names: Mapping[str, str],
                       path: str | os.PathLike[str]) -> Path:
    """Write the district map to ``path`` (atomically) and return it.

    Parameters
    ----------
    name
        The district's name (the page title).
    boundaries
        Town id -> its boundary layer.
    standings
        The town ranking (``party``, ``score``, ``rank``, ``flag``).
    findings
        The district findings (any CRS).
    town_maps
        Town id -> its command-center map, relative to the district's output folder.
    names
        Town id -> name.
    """
    by = standings.set_index("party") if len(standings) else pd.DataFrame(columns=["score", "rank", "flag"])
    scores = [float(s) for s in by["score"]] if len(by) else [0.0]
    low, high = min(scores), max(scores)
    rows = []
    for tid, frame in boundaries.items():
        rec = by.loc[tid] if tid in by.index else None
        score = None if rec is None else float(rec["score"])
        link = town_maps.get(tid)
        popup = (f"<b>{html.escape(names.get(tid, tid))}</b> ({html.escape(tid)})<br>"
                 + ("" if rec is None else f"rank {int(rec['rank'])}, score {score:.2f} "
                    f"{html.escape(_FLAG.get(str(rec['flag']), ''))}<br>")
                 + (f"<a href='../{html.escape(link)}' target='_blank'>town map 镇街地图</a>" if link else ""))
        geom = frame.to_crs(4326).geometry.union_all()
        rows.append({"town": tid, "colour": score_colour(score, low, high), "popup": popup, "geometry": geom})
    towns = gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)
    finds = []
    if len(findings):
        for rec in findings[findings.geometry.notna()].to_crs(4326).to_dict("records"):
            kind = str(rec["kind"])
            finds.append({"colour": SEVERITY_COLOURS.get(str(rec["severity"]), "#000000"), "geometry": rec["geometry"],
                          "popup": f"<b>{html.escape(KIND_ZH.get(kind, kind))}</b> {html.escape(kind)}<br>"
                                   f"{html.escape(str(rec.get('message') or ''))}<br>"
                                   f"{html.escape(str(rec.get('owner') or ''))}"})
    found = gpd.GeoDataFrame(finds, columns=["colour", "popup", "geometry"], geometry="geometry", crs=4326)
    m = folium.Map(tiles=None, control_scale=True)
    fig = cast(Any, m.get_root())
    fig.title = html.escape(f"{name} 区级地图")
    # offline, as the town maps: Leaflet from the shared maps/assets/ folder, none of folium's CDN scripts
    # (folium's popups need jQuery), and the layers drawn by a few lines of plain Leaflet
    m.default_js = []
    m.default_css = []
    fig.header.add_child(_Raw(_asset_links()), name=_ASSET_LINKS)
    fig.script.add_child(_Raw(_SCRIPT.replace("MAP", m.get_name()).replace("TOWNS", _json(towns))
                              .replace("FINDINGS", _json(found))), name="gg_district")
    return save_map(m, path)


_SCRIPT = """window.addEventListener("load", function () {
  var map = MAP, pop = {maxWidth: 320};
  var towns = L.geoJSON(TOWNS, {
    style: function (f) { return {color: "#333333", weight: 1, fillColor: f.properties.colour, fillOpacity: 0.45}; },
    onEachFeature: function (f, l) { l.bindPopup(f.properties.popup, pop); }}).addTo(map);
  var found = L.geoJSON(FINDINGS, {
    style: function (f) {
      return {color: f.properties.colour, weight: 2, fillColor: f.properties.colour, fillOpacity: 0.8}; },
    pointToLayer: function (f, ll) { return L.circleMarker(ll, {radius: 8, color: f.properties.colour, fill: true}); },
    onEachFeature: function (f, l) { l.bindPopup(f.properties.popup, pop); }}).addTo(map);
  L.control.layers(null, {"镇街得分 towns by score": towns, "区级问题 district findings": found},
                   {collapsed: false}).addTo(map);
  if (towns.getLayers().length) { map.fitBounds(towns.getBounds()); }
});
"""


def _json(frame: gpd.GeoDataFrame) -> str:
    """GeoJSON text safe inside a script element (the popups are escaped HTML already)."""
    return json.dumps(json.loads(frame.to_json(drop_id=True)), ensure_ascii=False).replace("</", "<\\/")
