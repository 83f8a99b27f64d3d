"""The rule types that select places: each builder turns one rule into the pieces of road and river it selects.

A builder takes the :class:`~gisgrid.checks.sensitive.context._Context` and a
:class:`~gisgrid.checks.sensitive.rules.Rule` and returns a :class:`_Raw`:
the pieces (exact substrings of the lines, not yet cut at grid borders), the
layer and feature of each, its ``trigger`` (what selected it) and ``detail``
(the same in words, made once per distinct trigger).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid.checks.sensitive.context import _ON_BORDER_M, _arr, _column, _Context, _poi_texts, _rule_pois, _text
from gisgrid.checks.sensitive.rules import Rule
from gisgrid.findings import present
from gisgrid.geometry.linework import Intervals, Lines, lines_only, segments_of
from gisgrid.vocab import ROAD_CLASS_ZH

logger = logging.getLogger(__name__)

_TOUCH_M = 1.0  # a piece reaching within this of the town boundary is an entrance


@dataclass
class _Raw:
    """The pieces a rule selects, before they are cut at grid borders."""

    rule: Rule
    layer: np.ndarray  # "roads"/"rivers" per piece
    pos: np.ndarray  # row position in the layer frame
    geoms: np.ndarray
    trigger: np.ndarray
    detail: np.ndarray
    missing: np.ndarray  # cross-boundary: ids of the villages whose side has no chief (","-joined), else None

    _FIELDS = ("layer", "pos", "geoms", "trigger", "detail", "missing")

    def take(self, idx: np.ndarray) -> _Raw:
        return _Raw(self.rule, *(getattr(self, f)[idx] for f in self._FIELDS))


def _empty_raw(rule: Rule) -> _Raw:
    e = np.empty(0, dtype=object)
    return _Raw(rule, e, np.empty(0, dtype=np.intp), e, e, e, e)


def _concat_raw(rule: Rule, parts: list[_Raw]) -> _Raw:
    parts = [p for p in parts if len(p.geoms)]
    if not parts:
        return _empty_raw(rule)
    return _Raw(rule, *(np.concatenate([getattr(p, f) for p in parts]) for f in _Raw._FIELDS))


def _raw(rule: Rule, layer: str, lines: Lines, iv: Intervals, detail: Mapping[str, str] | None = None,
         missing: Mapping[str, str] | None = None) -> _Raw:
    if not len(iv):
        return _empty_raw(rule)
    part = np.asarray(iv.part, dtype=np.intp)
    geoms = lines.substrings(part, np.asarray(iv.start, dtype=float), np.asarray(iv.end, dtype=float))
    trig = np.asarray(iv.trigger, dtype=object)
    codes, uniq = pd.factorize(trig, use_na_sentinel=False)
    det = np.array([_join_texts(t, detail) for t in uniq], dtype=object)[codes]
    miss = np.array([_join_texts(t, missing, ",") for t in uniq], dtype=object)[codes]
    return _Raw(rule, np.full(len(part), layer, dtype=object), lines.owner[part], geoms, trig, det, miss)


def _per_trigger(trigger: np.ndarray, text: Callable[[Any], str]) -> np.ndarray:
    """``text(t)`` for each trigger, computed once per distinct trigger."""
    if not len(trigger):
        return np.empty(0, dtype=object)
    codes, uniq = pd.factorize(np.asarray(trigger, dtype=object), use_na_sentinel=False)
    return np.array([text(t) for t in uniq], dtype=object)[codes]


def _join_texts(trigger: str, texts: Mapping[str, str] | None, sep: str = "; ") -> str | None:
    if not texts:
        return None
    found = list(dict.fromkeys(texts[t] for t in str(trigger).split(",") if texts.get(t)))
    return sep.join(found) if found else None


def _proximity(ctx: _Context, rule: Rule) -> _Raw:
    pois = _rule_pois(ctx, rule.kinds)
    if not len(pois):
        return _empty_raw(rule)
    xy = shapely.get_coordinates(_arr(pois))
    ids = pois["poi_id"].astype(str).to_numpy(dtype=object)
    texts = {k: f"within {rule.distance_m:g} m of {v}" for k, v in _poi_texts(pois).items()}
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        iv = lines.within(xy, xy, ids, float(rule.distance_m or 0.0))
        out.append(_raw(rule, layer, lines, iv, texts))
    return _concat_raw(rule, out)


def _along_river(ctx: _Context, rule: Rule) -> _Raw:
    pois = _rule_pois(ctx, rule.kinds)
    lines = ctx.lines("rivers")
    if not len(pois) or not len(lines.parts):
        return _empty_raw(rule)
    pts = _arr(pois)
    snap = rule.snap_m if rule.snap_m is not None else 200.0
    p_idx, part = lines.part_tree.query_nearest(pts, max_distance=snap, all_matches=False)
    lost = np.setdiff1d(np.arange(len(pois)), p_idx)
    if len(lost):
        logger.warning("%s: %d %s point(s) farther than %g m from any river have no section: %s", rule.name,
                       len(lost), "/".join(rule.kinds), snap, ", ".join(pois["poi_id"].astype(str).iloc[lost]))
    ch = shapely.line_locate_point(lines.parts[part], pts[p_idx])
    d = float(rule.distance_m or 0.0)
    ids = pois["poi_id"].astype(str).to_numpy(dtype=object)[p_idx]
    rivers = ctx.town.rivers
    rname = rivers["name"].to_numpy(dtype=object)[lines.owner[part]]
    rid = rivers["river_id"].to_numpy(dtype=object)[lines.owner[part]]
    ptext = _poi_texts(pois)
    texts = {i: f"within {d:g} m along river {n or r} ({r}) of {ptext[i]} (chainage {c:,.0f} m)"
             for i, n, r, c in zip(ids, rname, rid, ch, strict=True)}
    iv = lines.merge(part, np.maximum(ch - d, 0.0), np.minimum(ch + d, lines.part_len[part]), ids)
    return _raw(rule, "rivers", lines, iv, texts)


def _town_border(ctx: _Context, rule: Rule) -> _Raw:
    a, b = segments_of(ctx.boundary_line)
    text = {"town_boundary": f"within {rule.distance_m:g} m of the town boundary (town entrance, 出入口)"}
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        iv = lines.within(a, b, np.full(len(a), "town_boundary", dtype=object), float(rule.distance_m or 0.0))
        out.append(_raw(rule, layer, lines, iv, text))
    raw = _clip(ctx, _concat_raw(rule, out))
    if rule.entrances_only and len(raw.geoms):
        raw = raw.take(np.unique(ctx.boundary_tree.query(raw.geoms, predicate="dwithin", distance=_TOUCH_M)[0]))
    return raw


def _village_border(ctx: _Context, rule: Rule) -> _Raw:
    villages = ctx.town.villages
    parts, vidx = shapely.get_parts(shapely.boundary(_arr(villages)), return_index=True)
    coords, idx = shapely.get_coordinates(parts, return_index=True)
    if len(coords) < 2:
        return _empty_raw(rule)
    same = np.flatnonzero(idx[1:] == idx[:-1])
    a, b = coords[same], coords[same + 1]
    owner = villages["village_id"].astype(str).to_numpy(dtype=object)[vidx[idx[same]]]
    mid = (a + b) / 2.0
    # the middles well inside the town (in the town shrunk by 3 m) are not near its boundary; the others are tested
    test = np.flatnonzero(~shapely.intersects_xy(ctx.inner_extent, mid[:, 0], mid[:, 1]))
    on_town = test[ctx.boundary_tree.query(shapely.points(mid[test]), predicate="dwithin", distance=_ON_BORDER_M)[0]]
    keep = np.ones(len(a), dtype=bool)
    keep[on_town] = False
    a, b, owner = a[keep], b[keep], owner[keep]
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        out.append(_raw(rule, layer, lines, lines.within(a, b, owner, float(rule.distance_m or 0.0))))
    raw = _concat_raw(rule, out)
    if len(raw.geoms):
        raw.detail = _per_trigger(raw.trigger, lambda t: f"within {rule.distance_m:g} m of the border of villages "
                                  f"{', '.join(ctx.village_label(v) for v in str(t).split(','))}")
    return raw


def _cross_boundary(ctx: _Context, rule: Rule) -> _Raw:
    cs = ctx.cross_sections
    lines = ctx.lines("rivers")
    if cs is None or not len(cs) or not len(lines.parts) or "geometry" not in cs.columns:
        return _empty_raw(rule)
    cs = cs.reset_index(drop=True)
    geoms = np.asarray(gpd.GeoSeries(cs["geometry"]).values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    pos = np.flatnonzero(ok)
    g = geoms[pos]
    # the crossing: the point itself, or the point at chainage_m on a section line
    lin = np.isin(shapely.get_type_id(g), (1, 5))
    at = np.full(len(pos), 0.5)
    rel = False
    if "chainage_m" in cs.columns and "start_m" in cs.columns:
        at = (pd.to_numeric(cs["chainage_m"], errors="coerce") - pd.to_numeric(cs["start_m"], errors="coerce")
              ).to_numpy(dtype=float)[pos]
        rel = True
    bad = ~np.isfinite(at)
    at = np.where(bad, 0.5, at)
    dummy = shapely.LineString([(0, 0), (1, 0)])
    on_line = shapely.line_interpolate_point(np.where(lin, g, dummy), at, normalized=not rel)
    if rel and bad.any():
        on_line[bad] = shapely.line_interpolate_point(np.where(lin, g, dummy)[bad], 0.5, normalized=True)
    pts = np.where(lin, on_line, shapely.point_on_surface(np.where(lin, shapely.Point(0, 0), g)))
    sid = _column(cs, "section_id")
    sid = np.array([str(s) if s is not None else f"X{i}" for i, s in enumerate(sid)], dtype=object)
    rid = np.array([str(r) for r in _column(cs, "river_id")], dtype=object)
    # the part of the same river nearest the crossing
    q_idx, part = lines.near_pairs(pts, 5.0)
    close = shapely.dwithin(lines.parts[part], pts[q_idx], 5.0)
    q_idx, part = q_idx[close], part[close]
    river_of_part = ctx.town.rivers["river_id"].astype(str).to_numpy(dtype=object)[lines.owner[part]]
    same = river_of_part == rid[pos][q_idx]
    dist = shapely.distance(lines.parts[part], pts[q_idx])
    order = np.lexsort((dist, ~same, q_idx))
    q_idx, part = q_idx[order], part[order]
    first = np.unique(q_idx, return_index=True)[1]
    q_idx, part = q_idx[first], part[first]
    if len(q_idx) < len(pos):
        logger.warning("%s: %d cross-boundary section(s) are not on a river line; skipped", rule.name,
                       len(pos) - len(q_idx))
    ch = shapely.line_locate_point(lines.parts[part], pts[q_idx])
    d = float(rule.distance_m or 0.0)
    found = pos[q_idx]
    va, vb = _column(cs, "village_a"), _column(cs, "village_b")
    ca = _column(cs, "chiefs_a") if "chiefs_a" in cs.columns else np.full(len(cs), "?", dtype=object)
    cb = _column(cs, "chiefs_b") if "chiefs_b" in cs.columns else np.full(len(cs), "?", dtype=object)
    rnames = dict(zip(ctx.town.rivers["river_id"].astype(str), ctx.town.rivers["name"], strict=True))
    texts: dict[str, str] = {}
    missing: dict[str, str] = {}
    for i in found:
        sides = [_text(va[i]), _text(vb[i])]
        where = " and ".join(ctx.village_label(v) for v in sides if v) or "the town and outside"
        texts[sid[i]] = (f"within {d:g} m of cross-boundary section {sid[i]} of river "
                         f"{rnames.get(rid[i]) or rid[i]} ({rid[i]}) between {where}")
        lack = [str(v) for v, c in zip(sides, (ca[i], cb[i]), strict=True) if v and not present(c)]
        if lack:
            missing[sid[i]] = ",".join(lack)
    iv = lines.merge(part, np.maximum(ch - d, 0.0), np.minimum(ch + d, lines.part_len[part]), sid[found])
    return _raw(rule, "rivers", lines, iv, texts, missing)


def _road_class(ctx: _Context, rule: Rule) -> _Raw:
    lines = ctx.lines("roads")
    if not len(lines.parts):
        return _empty_raw(rule)
    cls = ctx.town.roads["road_class"].to_numpy(dtype=object)[lines.owner]
    sel = np.flatnonzero(np.isin(cls, list(rule.classes)))
    iv = Intervals(sel, np.zeros(len(sel)), lines.part_len[sel], cls[sel].astype(object))
    texts = {c: f"on a {c} road ({ROAD_CLASS_ZH.get(c, c)})" for c in rule.classes}
    return _raw(rule, "roads", lines, iv, texts)


def _core_polygon(ctx: _Context, rule: Rule) -> shapely.Geometry | None:
    if rule.polygon_wkt is not None:
        geom = shapely.from_wkt(rule.polygon_wkt)
    elif rule.lonlat is not None:
        tr = pyproj.Transformer.from_crs("EPSG:4490", ctx.crs, always_xy=True)
        xs, ys = tr.transform([p[0] for p in rule.lonlat], [p[1] for p in rule.lonlat])
        geom = shapely.Polygon(list(zip(xs, ys, strict=True)))
    else:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if not geom.intersects(ctx.extent):
        logger.warning("%s: the core polygon lies outside the town (is it in the analysis CRS %s?)", rule.name,
                       ctx.crs.to_string())
    return geom


def _core(ctx: _Context, rule: Rule) -> tuple[_Raw, shapely.Geometry | None]:
    poly = _core_polygon(ctx, rule)
    if poly is None:
        return _proximity(ctx, rule), None
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        if not len(lines.parts):
            continue
        hit = np.unique(lines.part_tree.query(poly, predicate="intersects"))
        pieces, own = lines_only(shapely.intersection(lines.parts[hit], poly), hit)
        n = len(pieces)
        out.append(_Raw(rule, np.full(n, layer, dtype=object), lines.owner[own], pieces,
                        np.full(n, "core", dtype=object), np.full(n, "in the market-town core (集镇)", dtype=object),
                        np.full(n, None, dtype=object)))
    return _concat_raw(rule, out), poly


def _clip(ctx: _Context, raw: _Raw) -> _Raw:
    """Keep only what lies in the town."""
    if not len(raw.geoms):
        return raw
    inside = shapely.covers(ctx.extent, raw.geoms)
    if inside.all():
        return raw
    out = np.flatnonzero(~inside)
    pieces, own = lines_only(shapely.intersection(raw.geoms[out], ctx.extent), out)
    clipped = raw.take(np.concatenate([np.flatnonzero(inside), own]))
    clipped.geoms = np.concatenate([raw.geoms[inside], pieces])
    return clipped


#: Rule type -> its builder (``core`` also gives its polygon, so analyze_sensitive calls :func:`_core` itself).
_BUILDERS: dict[str, Callable[[_Context, Rule], _Raw]] = {
    "proximity": _proximity, "along_river": _along_river, "town_border": _town_border,
    "village_border": _village_border, "cross_boundary": _cross_boundary, "road_class": _road_class}
