"""Roads on the shared edge of two grids, and which grid owns them (``border_rule``)."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.checks.responsibility._shapes import _SIDE_STEP_M, _gdf, _geoms, _nones, _only
from gisgrid.geometry.linework import along_pairs
from gisgrid.model import Town

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- border roads
_BORDER_COLUMNS = ("road_id", "road_class", "grids", "grid_a", "grid_b", "owner_grid", "decided_by", "length_m")


def _border_roads(town: Town, rule: str, min_m: float, band_m: float) -> gpd.GeoDataFrame:
    """Road parts lying on the shared edge of two grids (within ``band_m`` of both), and which grid owns each."""
    roads, grids = town.roads, town.grids
    empty = _gdf({}, [], town.crs, _BORDER_COLUMNS)
    if not len(roads) or len(grids) < 2:
        return empty
    tol = float(band_m)
    rgeoms, ggeoms = _geoms(roads), _geoms(grids)
    # a road crossing a border at an angle a runs 2 x band / sin(a) within the band: with a wide band
    # (hand-drawn borders) only a run ten bands long is along the border, not across it
    min_m = max(min_m, settings.sliver_length_m, 10 * tol if tol > settings.border_tolerance_m else 0.0)
    # A road inside a grid and farther than the band from its edge runs along no border.
    tree = shapely.STRtree(ggeoms)
    r_in, g_in = tree.query(rgeoms, predicate="covered_by")
    deep = shapely.distance(rgeoms[r_in], shapely.boundary(ggeoms[g_in])) > 2 * tol
    cand = np.setdiff1d(np.arange(len(rgeoms)), r_in[deep])
    near = np.unique(tree.query(rgeoms[cand], predicate="dwithin", distance=2 * tol)[1])
    if not len(cand) or len(near) < 2:
        return empty
    ri, gi = along_pairs(rgeoms[cand], ggeoms[near], tolerance_m=tol if tol > 0.5 else 2 * tol,
                          min_length_m=min_m / 2)
    ri, gi = cand[ri], near[gi]
    two = np.bincount(ri, minlength=len(rgeoms))[ri] >= 2  # a border has two sides
    ri, gi = ri[two], gi[two]
    if not len(ri):
        return empty
    edge = shapely.buffer(shapely.boundary(ggeoms[np.unique(gi)]), tol, quad_segs=2)
    edge_of = pd.Series(np.arange(len(edge)), index=np.unique(gi))
    near = shapely.intersection(rgeoms[ri], edge[edge_of[gi].to_numpy()])
    pairs = pd.DataFrame({"r": ri, "g": gi, "near": near, "len": shapely.length(near)})
    pairs = pairs[pairs["len"] >= min_m]
    both = pairs.merge(pairs, on="r", suffixes=("_a", "_b"))
    gids = grids["grid_id"].to_numpy(dtype=object)
    both = both[gids[both["g_a"].to_numpy()] < gids[both["g_b"].to_numpy()]].reset_index(drop=True)
    if not len(both):
        return empty
    shared = _only(shapely.intersection(both["near_a"].to_numpy(), both["near_b"].to_numpy()), 1)
    shared = shapely.line_merge(shared)
    parts, idx = shapely.get_parts(shared, return_index=True)
    ok = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= min_m)
    parts, idx = parts[ok], idx[ok]
    if not len(parts):
        return empty
    r = both["r"].to_numpy()[idx]
    a = both["g_a"].to_numpy()[idx]
    b = both["g_b"].to_numpy()[idx]
    frame = pd.DataFrame({
        "road_id": roads["road_id"].to_numpy(dtype=object)[r], "road_class": roads["road_class"].to_numpy(
            dtype=object)[r], "grid_a": gids[a], "grid_b": gids[b], "length_m": shapely.length(parts),
    })
    frame["grids"] = list(zip(frame["grid_a"], frame["grid_b"], strict=True))
    if rule == "flag":
        frame["owner_grid"] = None
        frame["decided_by"] = "flag"
    else:
        left = _left_grid(parts, rgeoms[r], ggeoms[a], ggeoms[b], step_m=max(_SIDE_STEP_M, 2 * tol + 0.5))
        owner = np.where(left, gids[a], gids[b]).astype(object)
        decided = np.full(len(frame), "left", dtype=object)
        if rule == "longer":
            share_a = shapely.length(shapely.intersection(rgeoms[r], shapely.buffer(ggeoms[a], tol, quad_segs=2)))
            share_b = shapely.length(shapely.intersection(rgeoms[r], shapely.buffer(ggeoms[b], tol, quad_segs=2)))
            clear = np.abs(share_a - share_b) > tol
            owner = np.where(clear, np.where(share_a > share_b, gids[a], gids[b]), owner).astype(object)
            decided = np.where(clear, "longer", "longer (tie: left)").astype(object)
        frame["owner_grid"] = owner
        frame["decided_by"] = decided
    frame = frame.assign(_g=parts, _gs=[",".join(g) for g in frame["grids"]]).sort_values(
        ["road_id", "_gs", "length_m"], kind="stable").drop(columns="_gs")
    for col in ("road_id", "road_class", "grid_a", "grid_b", "owner_grid", "decided_by"):
        frame[col] = _nones(frame[col])
    logger.info("%d road part(s) lie on grid borders (border_rule=%s)", len(frame), rule)
    return _gdf(frame, frame["_g"].to_numpy(), town.crs, _BORDER_COLUMNS)


def _left_grid(parts: np.ndarray, roads: np.ndarray, grid_a: np.ndarray, grid_b: np.ndarray, *,
               step_m: float = _SIDE_STEP_M) -> np.ndarray:
    """True where grid_a is on the road's left at the middle of the border part (else grid_b).

    The probe stands ``step_m`` to the left of the road: beyond the wobble of hand-drawn borders.
    """
    mid = shapely.line_interpolate_point(parts, 0.5, normalized=True)
    at = shapely.line_locate_point(roads, mid)
    length = shapely.length(roads)
    step = np.minimum(_SIDE_STEP_M, shapely.length(parts) / 4)
    p0 = shapely.line_interpolate_point(roads, np.maximum(at - step, 0.0))
    p1 = shapely.line_interpolate_point(roads, np.minimum(at + step, length))
    dx = shapely.get_x(p1) - shapely.get_x(p0)
    dy = shapely.get_y(p1) - shapely.get_y(p0)
    norm = np.hypot(dx, dy)
    norm[norm == 0] = 1.0
    lx = shapely.get_x(mid) - dy / norm * step_m
    ly = shapely.get_y(mid) + dx / norm * step_m
    in_a = shapely.contains_xy(grid_a, lx, ly)
    in_b = shapely.contains_xy(grid_b, lx, ly)
    probe = shapely.points(lx, ly)
    nearer_a = shapely.distance(grid_a, probe) <= shapely.distance(grid_b, probe)
    return np.where(in_a != in_b, in_a, nearer_a)
