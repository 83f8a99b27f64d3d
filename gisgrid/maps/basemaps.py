"""Basemaps: OpenStreetMap, Tianditu (vector and imagery), AMap (GCJ-02), an intranet tile server, or none."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import folium

from gisgrid._errors import ConfigError
from gisgrid.maps.text import esc

#: Basemap names accepted by :func:`gisgrid.maps.command_center_map`.
BASEMAPS = ("osm", "tianditu", "tianditu-img", "gaode", "gaode-satellite", "none")

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
        opts: dict[str, Any] = {"maxZoom": 20}
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
