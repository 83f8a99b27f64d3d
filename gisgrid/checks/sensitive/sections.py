"""The sections table: the rules' pieces cut at grid borders, each row placed in its grid, with a stable id.

A row lies in one grid, or in none: pieces are cut where they cross grid
edges (exactly, by closed-form segment intersections) and each part goes to
the grids holding its middle point. A part in no grid that lies in a sliver
between hand-drawn grids, not in a real gap, goes to the nearest grid within
the digitising tolerance. Ids hash the rule, feature, grid and the middle
point snapped to ``settings.id_snap_m``, so they survive re-digitising.
"""

from __future__ import annotations

import hashlib
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.checks.sensitive.context import _Context
from gisgrid.checks.sensitive.selectors import _concat_raw, _Raw
from gisgrid.geometry.linework import Lines, ranges, segment_hits

__all__ = ["SECTION_COLUMNS"]

#: Columns of :attr:`gisgrid.checks.sensitive.SensitiveResult.sections`.
SECTION_COLUMNS: tuple[str, ...] = (
    "section_id", "rule", "severity", "trigger", "detail", "layer", "feature_id", "name", "road_class",
    "village_id", "grid_id", "owner", "river_chief", "covered", "staffed", "length_m", "geometry",
)

_LAYER_LABEL = {"roads": "road", "rivers": "river"}
_NONE = np.array(None, dtype=object)  # "else None" for np.where, as an array (the same result, and it type-checks)


def _sections(ctx: _Context, raws: list[_Raw]) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Cut the rules' pieces at grid borders and describe them; also each row's missing-chief text."""
    raws = [r for r in raws if len(r.geoms)]
    if not raws:
        return _empty_sections(ctx.crs), np.empty(0, dtype=object)
    rule_of = np.concatenate([np.full(len(r.geoms), i) for i, r in enumerate(raws)])
    cat = _concat_raw(raws[0].rule, raws)
    src, geoms, grid_pos = _cut_at_grids(ctx, cat.geoms)
    grid_pos = ctx.absorb_slivers(geoms, grid_pos)
    covered = grid_pos >= 0
    gp = np.maximum(grid_pos, 0)
    grid_id = np.where(covered, ctx.grid_id_str[gp], _NONE)
    village = np.where(covered, ctx.grids["village_id"].to_numpy(dtype=object)[gp], _NONE)
    if (~covered).any():
        village[~covered] = ctx.village_at(geoms[~covered])
    layer, pos = cat.layer[src], cat.pos[src]
    is_road = layer == "roads"
    feature = np.full(len(src), None, dtype=object)
    name = np.full(len(src), None, dtype=object)
    road_class = np.full(len(src), None, dtype=object)
    for mask, frame_, id_col in ((is_road, ctx.town.roads, "road_id"), (~is_road, ctx.town.rivers, "river_id")):
        if mask.any():
            feature[mask] = frame_[id_col].astype(str).to_numpy(dtype=object)[pos[mask]]
            name[mask] = frame_["name"].to_numpy(dtype=object)[pos[mask]]
    if is_road.any():
        road_class[is_road] = ctx.town.roads["road_class"].to_numpy(dtype=object)[pos[is_road]]
    owner = np.where(covered, ctx.grid_owner_at[gp], _NONE)
    staffed = covered & ctx.grid_staffed_at[gp]
    river_chief = np.full(len(src), None, dtype=object)
    if (~is_road).any() and ctx.river_chief_of:
        river_chief[~is_road] = [ctx.river_chief_of.get((f, str(v))) for f, v in
                                 zip(feature[~is_road], village[~is_road], strict=True)]
    rule_names = np.array([r.rule.name for r in raws], dtype=object)[rule_of[src]]
    severity = np.array([r.rule.effective_severity for r in raws], dtype=object)[rule_of[src]]
    layer_label = np.where(is_road, _LAYER_LABEL["roads"], _NONE)
    if (~is_road).any():
        layer_label[~is_road] = [_LAYER_LABEL[x] for x in layer[~is_road]]
    section_id, id_key = _section_ids(rule_names, feature, grid_id, geoms)
    order = np.lexsort((id_key if id_key is not None else _str_rank(section_id), _str_rank(rule_names)))
    columns = {
        "section_id": section_id, "rule": rule_names, "severity": severity, "trigger": cat.trigger[src],
        "detail": cat.detail[src], "layer": layer_label, "feature_id": feature, "name": name,
        "road_class": road_class, "village_id": village, "grid_id": grid_id, "owner": owner,
        "river_chief": river_chief,
    }
    # columns read from the user's layers may hold NaN or NA: None instead (triggers and details are text, or
    # None, by construction)
    from_input = ("feature_id", "name", "road_class", "village_id", "grid_id")
    data: dict[str, Any] = {
        k: pd.Series(_none_for_na(v[order]) if k in from_input else v[order], dtype=object)
        for k, v in ((k, np.asarray(v, dtype=object)) for k, v in columns.items())}
    data["covered"] = covered[order]
    data["staffed"] = staffed[order]
    data["length_m"] = shapely.length(geoms[order]).astype(float)
    data["geometry"] = gpd.GeoSeries(geoms[order], crs=ctx.crs).values
    out = gpd.GeoDataFrame(data, geometry="geometry", crs=ctx.crs)
    return out[list(SECTION_COLUMNS)], cat.missing[src][order]


def _none_for_na(values: np.ndarray) -> np.ndarray:
    """The object array with None for every missing value (None, NaN, NA)."""
    na = pd.isna(values)
    if na.any():
        values = values.copy()
        values[na] = None
    return values


def _str_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each value's ``str`` among the distinct ones (equal strings, equal rank): a sort key."""
    codes, uniq = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    text = np.asarray(uniq, dtype=object).astype(str)
    order = np.argsort(text, kind="stable")
    rank = np.empty(len(text), dtype=np.int64)
    rank[order] = np.arange(len(text))
    # distinct values with the same str (rare: 1 and "1") share the lowest rank
    sorted_text = text[order]
    dup = np.flatnonzero(sorted_text[1:] == sorted_text[:-1]) + 1
    for i in dup:
        rank[order[i]] = rank[order[i - 1]]
    return rank[codes]


def _cut_at_grids(ctx: _Context, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut line pieces where they cross grid edges; say which grid holds each part (-1: none).

    Exact and vectorised. A piece that grids cover whole is kept whole, once per
    such grid. Any other piece is split at the chainages where its segments meet
    the edges of the grids it touches (a crossing, or both ends of a run along
    an edge: closed-form segment intersections over the (segment, edge) pairs of
    each (piece, grid) pair); each part then lies in the grids holding its
    middle point (grids are closed: a part along the shared edge of two grids is
    in both, and appears once for each), or in none. Consecutive parts in the
    same grid are merged again; parts shorter than ``settings.sliver_length_m``
    are dropped.

    Returns
    -------
    src, pieces, grid
        Per output part: index of its piece in ``geoms``, its geometry, and the
        position of its grid in ``ctx.grids`` (-1 when in no grid).
    """
    lines = Lines(geoms)
    n_parts = len(lines.parts)
    # (part, grid) pairs that meet: of the pairs whose boxes meet, the grids covering the part whole
    # and the others intersecting it (grids are prepared)
    p_idx, g_idx = ctx.grid_tree.query(lines.parts)
    whole = shapely.covers(ctx.grid_geoms[g_idx], lines.parts[p_idx])
    meet = whole.copy()
    rest = np.flatnonzero(~whole)
    meet[rest] = shapely.intersects(ctx.grid_geoms[g_idx[rest]], lines.parts[p_idx[rest]])
    p_idx, g_idx, whole = p_idx[meet], g_idx[meet], whole[meet]
    cut = np.zeros(n_parts, dtype=bool)
    cut[p_idx[~whole]] = True
    keep = ~cut[p_idx]
    met = np.zeros(n_parts, dtype=bool)
    met[p_idx] = True
    out_part = [p_idx[keep], np.flatnonzero(~met)]
    out_grid = [g_idx[keep], np.full(len(out_part[1]), -1)]
    out_geom = [lines.parts[out_part[0]], lines.parts[out_part[1]]]
    if cut.any():
        pp, gg = p_idx[~whole], g_idx[~whole]
        # (segment, grid) pairs whose boxes meet, then (segment, edge) pairs likewise
        seg, pair = ranges(lines.seg_off[pp], lines.seg_n[pp])
        grid = gg[pair]
        sb = lines.seg_box[seg]  # (xmin, ymin, xmax, ymax) of each segment
        gb = ctx.grid_bounds[grid]
        near = ((sb[:, :2] <= gb[:, 2:] + 1e-7) & (gb[:, :2] <= sb[:, 2:] + 1e-7)).all(1)
        seg, grid, sb = seg[near], grid[near], sb[near]
        count = ctx.grid_edge_n[grid]
        edge, _ = ranges(ctx.grid_edge_off[grid], count)
        eb = ctx.grid_edge_box_grown[edge]  # the edges' boxes, their high sides grown by 1e-7
        near = ((np.repeat(sb[:, 0], count) <= eb[:, 2]) & (np.repeat(sb[:, 1], count) <= eb[:, 3])
                & (eb[:, 0] <= np.repeat(sb[:, 2] + 1e-7, count)) & (eb[:, 1] <= np.repeat(sb[:, 3] + 1e-7, count)))
        seg, edge = np.repeat(seg, count)[near], edge[near]
        t, at = segment_hits(lines.seg_a[seg], lines.seg_b[seg], ctx.grid_edge_a[edge], ctx.grid_edge_b[edge])
        seg = seg[at]
        parts = np.flatnonzero(cut)
        part = np.concatenate([lines.seg_part[seg], parts, parts])
        ch = np.concatenate([lines.seg_ch0[seg] + t * lines.seg_len[seg], np.zeros(len(parts)),
                             lines.part_len[parts]])
        key = lines.base[part] + ch
        order = np.argsort(key, kind="stable")
        part, key = part[order], key[order]
        nxt = np.flatnonzero((part[1:] == part[:-1]) & (key[1:] - key[:-1] > 1e-9))
        iv_part, ks, ke = part[nxt], key[nxt], key[nxt + 1]
        # the grids holding each interval's middle: of the grids meeting its part
        by_part = np.argsort(p_idx, kind="stable")
        grid_of = g_idx[by_part]
        off = np.searchsorted(p_idx[by_part], np.arange(n_parts))
        at, i_idx = ranges(off[iv_part], np.bincount(p_idx, minlength=n_parts)[iv_part])
        i_grid = grid_of[at]
        mid = lines.points_at((ks + ke) / 2.0)
        gb, mx, my = ctx.grid_bounds[i_grid], mid[i_idx, 0], mid[i_idx, 1]
        box = (gb[:, 0] <= mx) & (mx <= gb[:, 2]) & (gb[:, 1] <= my) & (my <= gb[:, 3])
        i_idx, i_grid, mx, my = i_idx[box], i_grid[box], mx[box], my[box]
        inside = shapely.intersects_xy(ctx.grid_geoms[i_grid], mx, my)
        i_idx, i_grid = i_idx[inside], i_grid[inside]
        held = np.zeros(len(iv_part), dtype=bool)
        held[i_idx] = True
        lost = np.flatnonzero(~held)
        i_all = np.concatenate([i_idx, lost])
        g_all = np.concatenate([i_grid, np.full(len(lost), -1)])
        p_all = iv_part[i_all]
        order = np.lexsort((ks[i_all], g_all, p_all))
        i_all, g_all, p_all = i_all[order], g_all[order], p_all[order]
        s_all, e_all = ks[i_all], ke[i_all]
        new = np.ones(len(i_all), dtype=bool)
        new[1:] = (p_all[1:] != p_all[:-1]) | (g_all[1:] != g_all[:-1]) | (s_all[1:] > e_all[:-1] + 1e-9)
        starts = np.flatnonzero(new)
        m_part = p_all[starts]
        m_start = s_all[starts] - lines.base[m_part]
        m_end = np.maximum.reduceat(e_all, starts) - lines.base[m_part] if len(starts) else np.empty(0)
        out_part.append(m_part)
        out_grid.append(g_all[starts])
        out_geom.append(lines.substrings(m_part, m_start, m_end))
    part = np.concatenate(out_part)
    pieces = np.concatenate(out_geom)
    grid = np.concatenate(out_grid)
    ok = shapely.length(pieces) >= settings.sliver_length_m
    return lines.owner[part[ok]], pieces[ok], grid[ok]


def _section_ids(rule: np.ndarray, feature: np.ndarray, grid: np.ndarray,
                 geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Stable section ids (``S-`` and 10 hex digits of a SHA-1; ``~2``, ``~3`` ... on repeats).

    Also a sort key in the order of the ids' text (the digits as a number), or None when some id repeats.
    """
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    mx, my = shapely.get_x(mid), shapely.get_y(mid)
    snap = settings.id_snap_m
    sx = np.floor(mx / snap + 0.37).astype(np.int64)
    sy = np.floor(my / snap + 0.37).astype(np.int64)
    sha1 = hashlib.sha1
    digest = b"".join([sha1(f"{r}|{f}|{g}|{x}:{y}".encode()).digest()[:5]
                       for r, f, g, x, y in zip(rule.tolist(), feature.tolist(), grid.tolist(), sx.tolist(),
                                                sy.tolist(), strict=True)])
    raw = np.frombuffer(digest, dtype=np.uint8).reshape(-1, 5)
    text = np.empty((len(raw), 12), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("S"), ord("-")
    text[:, 2::2] = _HEX[raw >> 4]
    text[:, 3::2] = _HEX[raw & 15]
    ids = text.view("S12").ravel().astype("U12").astype(object)
    key = (raw.astype(np.int64) << np.array([32, 24, 16, 8, 0])).sum(axis=1)
    if len(np.unique(key)) == len(key):
        return ids, key
    series = pd.Series(ids, dtype=object)
    rank = series.groupby(series, sort=False).cumcount().to_numpy()
    return np.array([i if k == 0 else f"{i}~{k + 1}" for i, k in zip(ids, rank, strict=True)], dtype=object), None


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _empty_sections(crs: Any) -> gpd.GeoDataFrame:
    """A sections table with no rows, its columns typed as full ones are."""
    data: dict[str, Any] = {c: pd.Series([], dtype=object) for c in SECTION_COLUMNS if c != "geometry"}
    data["covered"] = pd.Series([], dtype=bool)
    data["staffed"] = pd.Series([], dtype=bool)
    data["length_m"] = pd.Series([], dtype=float)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
