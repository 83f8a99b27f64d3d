"""The district map (``maps/district.html``).

Towns coloured by score, the district findings, and links to each town's own map.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import folium
import geopandas as gpd
import pandas as pd

from gisgrid.io import atomic_write_text
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
    bounds = towns.total_bounds
    m = folium.Map(tiles=None, control_scale=True)
    cast(Any, m.get_root()).header.add_child(folium.Element(f"<title>{html.escape(name)} 区级地图</title>"))
    group = folium.FeatureGroup(name="镇街得分 towns by score").add_to(m)
    for rec in towns.to_dict("records"):
        shape = folium.GeoJson(rec["geometry"].__geo_interface__, style_function=_fill(rec["colour"]))
        shape.add_child(folium.Popup(rec["popup"], max_width=320))
        shape.add_to(group)
    if len(findings):
        layer = folium.FeatureGroup(name="区级问题 district findings").add_to(m)
        f4326 = findings[findings.geometry.notna()].to_crs(4326)
        for rec in f4326.to_dict("records"):
            kind = str(rec["kind"])
            text = (f"<b>{html.escape(KIND_ZH.get(kind, kind))}</b> {html.escape(kind)}<br>"
                    f"{html.escape(str(rec.get('message') or ''))}<br>{html.escape(str(rec.get('owner') or ''))}")
            colour = SEVERITY_COLOURS.get(str(rec["severity"]), "#000000")
            where: Any = rec["geometry"]
            if where.geom_type == "Point":
                folium.CircleMarker([where.y, where.x], radius=8, color=colour, fill=True,
                                    popup=folium.Popup(text, max_width=320)).add_to(layer)
            else:
                piece = folium.GeoJson(where.__geo_interface__, style_function=_fill(colour, opacity=0.8))
                piece.add_child(folium.Popup(text, max_width=320))
                piece.add_to(layer)
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return atomic_write_text(path, m.get_root().render())


def _fill(colour: str, *, opacity: float = 0.45) -> Any:
    def style(_: Any) -> dict[str, Any]:
        return {"color": "#333333", "weight": 1, "fillColor": colour, "fillOpacity": opacity}

    return style
