"""河长制: rivers split into reaches at village borders, cross-boundary sections (交界断面), corridors per chief."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.checks.responsibility._shapes import (
    _SIDE_STEP_M,
    DEFAULT_CORRIDOR_M,
    _gdf,
    _geoms,
    _nones,
    _only,
    _substring,
)
from gisgrid.findings import (
    OWNER_JOIN,
    join_present,
    present,
    split_owner,
)
from gisgrid.geometry.coverage import zones_at
from gisgrid.model import Town

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rivers
_REACH_COLUMNS = ("reach_id", "river_id", "river_name", "village_id", "start_m", "end_m", "length_m",
                  "town_chief", "village_chief")
_SECTION_COLUMNS = ("section_id", "river_id", "border", "village_a", "village_b", "chainage_m", "chiefs_a",
                    "chiefs_b", "start_m", "end_m", "length_m")
_CORRIDOR_COLUMNS = ("person_id", "name", "level", "river_id", "village_id", "area_m2", "half_width_m", "phone")


@dataclass
class _Chiefs:
    """River chiefs placed on existing rivers (and villages), as owner labels."""

    town: dict[str, str]                       # river_id -> labels joined " / "
    village: dict[tuple[str, str], str]        # (river_id, village_id) -> labels joined " / "
    placed: pd.DataFrame                       # rows of river_chiefs with a corridor


def _river_chiefs(town: Town, labels: Mapping[str, str]) -> _Chiefs:
    rc = town.river_chiefs
    rivers = set(town.rivers["river_id"])
    villages = set(town.villages["village_id"])
    on_river = rc["river_id"].isin(rivers)
    is_village = rc["level"] == "village"
    placed = rc[on_river & (~is_village | rc["village_id"].isin(villages))].copy()
    placed["label"] = [labels.get(p, n) for p, n in zip(placed["person_id"], placed["name"], strict=True)]
    tc = placed[placed["level"] == "town"].groupby("river_id")["label"].agg(lambda s: join_present(s, OWNER_JOIN))
    vc = placed[placed["level"] == "village"].groupby(["river_id", "village_id"])["label"].agg(
        lambda s: join_present(s, OWNER_JOIN))
    return _Chiefs(town=dict(tc.items()), village=dict(vc.items()), placed=placed)


def _reaches(town: Town, merged: np.ndarray, chiefs: _Chiefs, tol: float) -> gpd.GeoDataFrame:
    rivers = town.rivers
    villages = town.villages
    vgeoms = _geoms(villages)
    empty = _gdf({}, [], town.crs, _REACH_COLUMNS)
    if not len(rivers):
        return empty
    ri, vi = shapely.STRtree(vgeoms).query(merged, predicate="intersects")
    if not len(ri):
        return empty
    pieces = _only(shapely.intersection(merged[ri], vgeoms[vi]), 1)
    pieces = shapely.line_merge(pieces, directed=True)
    parts, pidx = shapely.get_parts(pieces, return_index=True)
    # a bit of river in the sliver where two hand-drawn villages overlap is no reach
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= max(settings.sliver_length_m, tol))
    parts, pidx = parts[keep], pidx[keep]
    r, v = ri[pidx], vi[pidx]
    line = merged[r]
    start = shapely.line_locate_point(line, shapely.get_point(parts, 0))
    end = shapely.line_locate_point(line, shapely.get_point(parts, -1))
    flip = start > end
    parts = np.where(flip, shapely.reverse(parts), parts)
    start, end = np.minimum(start, end), np.maximum(start, end)
    river_ids = rivers["river_id"].to_numpy(dtype=object)[r]
    village_ids = villages["village_id"].to_numpy(dtype=object)[v]
    frame = pd.DataFrame({
        "river_id": river_ids, "river_name": rivers["name"].to_numpy(dtype=object)[r], "village_id": village_ids,
        "start_m": start, "end_m": end, "length_m": shapely.length(parts), "_g": parts,
    }).sort_values(["river_id", "start_m", "village_id"], kind="stable")
    k = frame.groupby(["river_id", "village_id"], sort=False).cumcount() + 1
    frame["reach_id"] = frame["river_id"] + "-" + frame["village_id"] + "-" + k.astype(str)
    frame["town_chief"] = frame["river_id"].map(lambda x: _comma(chiefs.town.get(x)))
    frame["village_chief"] = [_comma(chiefs.village.get((a, b)))
                              for a, b in zip(frame["river_id"], frame["village_id"], strict=True)]
    for col in ("reach_id", "river_id", "river_name", "village_id", "town_chief", "village_chief"):
        frame[col] = _nones(frame[col])
    return _gdf(frame, frame["_g"].to_numpy(), town.crs, _REACH_COLUMNS)


def _comma(owner: str | None) -> str | None:
    """Owner labels joined by " / " as a ", "-joined list of names (None stays None)."""
    return None if owner is None else ", ".join(split_owner(owner))


def _cross_sections(town: Town, merged: np.ndarray, reaches: gpd.GeoDataFrame, chiefs: _Chiefs,
                    section_m: float, tol: float) -> gpd.GeoDataFrame:
    empty = _gdf({}, [], town.crs, _SECTION_COLUMNS)
    if not len(reaches):
        return empty
    pos = pd.Series(np.arange(len(town.rivers)), index=town.rivers["river_id"].to_numpy(dtype=object))
    cand = pd.DataFrame({
        "river_id": np.concatenate([reaches["river_id"].to_numpy(dtype=object)] * 2),
        "c": np.concatenate([reaches["start_m"].to_numpy(), reaches["end_m"].to_numpy()]),
    })
    cand["r"] = cand["river_id"].map(pos).astype(int)
    cand["L"] = shapely.length(merged[cand["r"].to_numpy()])
    cand = cand[(cand["c"] > _SIDE_STEP_M) & (cand["c"] < cand["L"] - _SIDE_STEP_M)]
    cand = cand.sort_values(["river_id", "c"], kind="stable")
    gap = cand.groupby("river_id")["c"].diff()
    # hand-drawn villages: one reach ends and the next starts up to two tolerances apart
    cand = cand[gap.isna() | (gap > max(0.01, 2 * tol))].reset_index(drop=True)
    if not len(cand):
        return empty
    lines = merged[cand["r"].to_numpy()]
    c = cand["c"].to_numpy()
    up = shapely.line_interpolate_point(lines, c - _SIDE_STEP_M)
    down = shapely.line_interpolate_point(lines, c + _SIDE_STEP_M)
    tree = shapely.STRtree(_geoms(town.villages))
    vids = town.villages["village_id"].to_numpy(dtype=object)
    side_a = [h[0] if h else None for h in zones_at(up, tree, vids)]
    side_b = [h[0] if h else None for h in zones_at(down, tree, vids)]
    extent = town.extent
    shapely.prepare(extent)
    outside = ~shapely.intersects(extent, up) | ~shapely.intersects(extent, down)
    cand["village_a"], cand["village_b"] = side_a, side_b
    cand["border"] = np.where(outside, "town", "village")
    cand = cand[(cand["village_a"] != cand["village_b"]).to_numpy()
                & (cand["village_a"].notna() | cand["village_b"].notna()).to_numpy()].reset_index(drop=True)
    if not len(cand):
        return empty
    cand["start_m"] = np.maximum(cand["c"] - section_m, 0.0)
    cand["end_m"] = np.minimum(cand["c"] + section_m, cand["L"])
    geoms = [_substring(merged[r], a, b) for r, a, b in zip(cand["r"], cand["start_m"], cand["end_m"], strict=True)]
    cand["length_m"] = shapely.length(np.asarray(geoms, dtype=object))
    cand["chainage_m"] = cand["c"]
    cand["section_id"] = cand["river_id"] + "-X" + (cand.groupby("river_id").cumcount() + 1).astype(str)
    cand["chiefs_a"] = [_comma(chiefs.village.get((r, v))) for r, v in zip(cand["river_id"], cand["village_a"],
                                                                           strict=True)]
    cand["chiefs_b"] = [_comma(chiefs.village.get((r, v))) for r, v in zip(cand["river_id"], cand["village_b"],
                                                                           strict=True)]
    for col in ("village_a", "village_b", "chiefs_a", "chiefs_b", "section_id", "river_id", "border"):
        cand[col] = _nones(cand[col])
    return _gdf(cand, geoms, town.crs, _SECTION_COLUMNS)


def _half_widths(rivers: gpd.GeoDataFrame, corridor: float | dict[str, float],
                 bank: float | dict[str, float] | None) -> np.ndarray:
    def by_level(value: float | dict[str, float], level: Any, fallback: float) -> float:
        if isinstance(value, dict):
            return value.get(str(level), value.get("default", fallback)) if present(level) else value.get(
                "default", fallback)
        return value

    default = float(DEFAULT_CORRIDOR_M)
    out = []
    for level, width in zip(rivers["level"], rivers["width_m"], strict=True):
        base = by_level(corridor, level, default)
        if present(width) and float(width) > 0:
            margin = base if bank is None else by_level(bank, level, base)
            out.append(float(width) / 2 + margin)
        else:
            out.append(base)
    return np.asarray(out, dtype=float)


def _corridors(town: Town, merged: np.ndarray, chiefs: _Chiefs, opts: Mapping[str, Any]) -> gpd.GeoDataFrame:
    placed = chiefs.placed
    if not len(placed) or not len(town.rivers):
        return _gdf({}, [], town.crs, _CORRIDOR_COLUMNS)
    half = _half_widths(town.rivers, opts["corridor_m"], opts["bank_m"])
    buffers = shapely.buffer(merged, half, cap_style="flat", join_style="round")
    rpos = pd.Series(np.arange(len(town.rivers)), index=town.rivers["river_id"].to_numpy(dtype=object))
    vgeom = pd.Series(_geoms(town.villages), index=town.villages["village_id"].to_numpy(dtype=object))
    r = placed["river_id"].map(rpos).astype(int).to_numpy()
    is_village = (placed["level"] == "village").to_numpy()
    clip = np.where(is_village, placed["village_id"].map(vgeom).to_numpy(dtype=object), town.extent)
    geoms = _only(shapely.intersection(buffers[r], clip), 2)
    frame = placed[["person_id", "label", "level", "river_id", "village_id", "phone"]].rename(
        columns={"label": "name"}).reset_index(drop=True)
    frame["village_id"] = _nones(frame["village_id"].where(is_village, None))
    frame["area_m2"] = shapely.area(geoms)
    frame["half_width_m"] = half[r]
    lost = frame.loc[frame["area_m2"] <= 0, ["name", "river_id", "village_id"]]
    if len(lost):
        logger.warning("%d river chief(s) have no corridor: the river does not reach their village or the town "
                       "(%s)", len(lost), ", ".join(f"{a} {b}@{c}" for a, b, c in lost.itertuples(index=False)))
    return _gdf(frame, geoms, town.crs, _CORRIDOR_COLUMNS)
