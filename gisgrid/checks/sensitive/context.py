"""What every rule reads: the town's line layers, grids, staffing and river chiefs, built once per call.

:class:`_Context` holds them for one :func:`~gisgrid.checks.sensitive.analyze_sensitive`
call, with the lookups the selectors, sections and checkpoints share (grid
owners, the village at a place, the POIs of some kinds) and the helpers that
turn user columns into text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from gisgrid.checks.responsibility import staffing_table
from gisgrid.findings import present
from gisgrid.geometry.coverage import zones_at
from gisgrid.geometry.linework import Lines, segments_of
from gisgrid.model import Town

_ON_BORDER_M = 1.0  # a village border segment this close to the town boundary is the town boundary


def _arr(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    """The geometries as an object array."""
    values = frame.geometry.values if isinstance(frame, gpd.GeoDataFrame) else frame.values
    return np.asarray(values, dtype=object)


def _text(value: Any) -> str | None:
    """The value as stripped text; None when it is missing or blank."""
    return (str(value).strip() or None) if present(value) else None


def _texts(values: np.ndarray) -> np.ndarray:
    """:func:`_text` of each value (vectorised when the values are text)."""
    arr = np.asarray(values, dtype=object)
    if not len(arr) or pd.api.types.infer_dtype(arr, skipna=True) != "string":
        return np.array([_text(v) for v in arr], dtype=object)
    na = pd.isna(arr)
    out = np.full(len(arr), None, dtype=object)
    out[~na] = [v.strip() or None for v in arr[~na].tolist()]
    for i in np.flatnonzero(na):  # None, NaN and NA give None; any other missing value: as _text says
        out[i] = _text(arr[i])
    return out


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The column as an object array; all None when the frame has no such column."""
    if name in frame.columns:
        return frame[name].to_numpy(dtype=object)
    return np.full(len(frame), None, dtype=object)


def _frame(responsibility: Any, name: str) -> pd.DataFrame | None:
    """The responsibility's table ``name`` (staffing, reaches, ...), or None when it has none."""
    frame = getattr(responsibility, name, None) if responsibility is not None else None
    return frame if isinstance(frame, pd.DataFrame) else None


class _Context:
    """Per-call caches: the town's line layers, grids, staffing and river chiefs."""

    def __init__(self, town: Town, responsibility: Any) -> None:
        self.town = town
        self.crs = town.crs
        self.extent = town.extent
        shapely.prepare(self.extent)
        self._lines: dict[str, Lines] = {}
        self.pois_of: dict[tuple[str, ...], gpd.GeoDataFrame] = {}
        self.grids = town.grids.reset_index(drop=True)
        self.grid_geoms = _arr(self.grids)
        shapely.prepare(self.grid_geoms)
        self.grid_tree = STRtree(self.grid_geoms)
        if len(self.grid_geoms) and (shapely.get_type_id(self.grid_geoms) == 3).all() and not (
                shapely.get_num_interior_rings(self.grid_geoms) > 0).any():
            # plain polygons (the usual case): their coordinates are their one ring
            xy, at = shapely.get_coordinates(self.grid_geoms, return_index=True)
            ring_grid = np.arange(len(self.grid_geoms))
        else:
            rings, ring_grid = shapely.get_parts(shapely.boundary(self.grid_geoms), return_index=True)
            xy, at = shapely.get_coordinates(rings, return_index=True)
        edge = np.flatnonzero(at[1:] == at[:-1])
        self.grid_edge_a, self.grid_edge_b = xy[edge], xy[edge + 1]  # grouped by grid, in grid order
        self.grid_edge_n = np.bincount(ring_grid[at[edge]], minlength=len(self.grid_geoms))
        self.grid_edge_off = np.concatenate([[0], np.cumsum(self.grid_edge_n)[:-1]])
        self.grid_edge_box_grown = np.concatenate([np.minimum(self.grid_edge_a, self.grid_edge_b),
                                                   np.maximum(self.grid_edge_a, self.grid_edge_b) + 1e-7], axis=1)
        self.grid_bounds = shapely.bounds(self.grid_geoms).reshape(-1, 4)
        self.village_geoms = _arr(town.villages)
        self.village_tree = STRtree(self.village_geoms)
        self.village_ids = town.villages["village_id"].to_numpy(dtype=object)
        self.village_names = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
        self.chiefs, self.staffed, self.grid_owner = _staffing(town, responsibility)
        self.grid_id_str = self.grids["grid_id"].astype(str).to_numpy(dtype=object)
        self.grid_owner_at = _lookup(self.grid_owner, self.grid_id_str, None)
        self.grid_staffed_at = _lookup(self.staffed, self.grid_id_str, False).astype(bool)
        self.reaches = _frame(responsibility, "reaches")
        self.cross_sections = _frame(responsibility, "cross_sections")
        self.corridors = _frame(responsibility, "corridors")
        self.boundary_line = shapely.boundary(self.extent)
        # the town shrunk by 3 * _ON_BORDER_M: whatever lies inside it is farther than _ON_BORDER_M from the
        # boundary (the buffer's arcs and simplification are off by far less than the 2 m to spare)
        self.inner_extent = shapely.buffer(self.extent, -3.0 * _ON_BORDER_M)
        shapely.prepare(self.inner_extent)
        a, b = segments_of(self.boundary_line)
        self.boundary_tree = STRtree(shapely.linestrings(np.stack([a, b], axis=1)) if len(a)
                                     else np.empty(0, dtype=object))
        self.river_chief_of: dict[tuple[str, str], str | None] = {}
        if self.reaches is not None and len(self.reaches) and {"river_id", "village_id", "village_chief"} <= set(
                self.reaches.columns):
            for rid, vid, chief in zip(self.reaches["river_id"], self.reaches["village_id"],
                                       self.reaches["village_chief"], strict=True):
                key = (str(rid), str(vid))
                name = _text(chief)
                if name or key not in self.river_chief_of:
                    self.river_chief_of[key] = name

    def lines(self, layer: str) -> Lines:
        """The layer (``roads`` or ``rivers``) as :class:`~gisgrid.geometry.linework.Lines` (built once)."""
        if layer not in self._lines:
            self._lines[layer] = Lines(_arr(getattr(self.town, layer)))
        return self._lines[layer]

    tolerance_m: float = 0.0
    gaps: np.ndarray = np.empty(0, dtype=object)
    poi_grid: dict[str, Any] = {}  # noqa: RUF012 (replaced per call, never mutated)

    def absorb_slivers(self, geoms: np.ndarray, grid_pos: np.ndarray) -> np.ndarray:
        """Parts in no grid but not in a real gap lie in slivers: give each the nearest grid within the tolerance."""
        lost = np.flatnonzero(grid_pos < 0)
        if self.tolerance_m <= 0 or not lost.size or not len(self.grid_geoms):
            return grid_pos
        in_gap = np.zeros(lost.size, dtype=bool)
        if self.gaps.size:
            in_gap[np.unique(STRtree(self.gaps).query(geoms[lost], predicate="intersects")[0])] = True
        cand = lost[~in_gap]
        i, g = self.grid_tree.query_nearest(geoms[cand], max_distance=self.tolerance_m, all_matches=False)
        out = grid_pos.copy()
        out[cand[i]] = g
        return out

    def village_at(self, geoms: np.ndarray) -> np.ndarray:
        """Village id at each geometry's middle (lines) or representative point."""
        out = np.full(len(geoms), None, dtype=object)
        if not len(geoms) or not len(self.village_geoms):
            return out
        lin = np.isin(shapely.get_type_id(geoms), (1, 5))
        dummy = shapely.LineString([(0, 0), (1, 0)])
        mid = shapely.line_interpolate_point(np.where(lin, geoms, dummy), 0.5, normalized=True)
        pts = np.where(lin, mid, shapely.point_on_surface(np.where(lin, shapely.Point(0, 0), geoms)))
        # on a border: the lowest village id, as everywhere else
        out[:] = [ids[0] if ids else None for ids in zones_at(pts, self.village_tree, self.village_ids)]
        return out

    def village_label(self, vid: Any) -> str:
        """``name (id)`` of a village, its id when it has no other name, or ``no village``."""
        if vid is None:
            return "no village"
        name = self.village_names.get(vid)
        return f"{name} ({vid})" if name and name != vid else str(vid)


def _lookup(table: Mapping[Any, Any], keys: np.ndarray, default: Any) -> np.ndarray:
    """``table.get(key, default)`` for each key, as an object array."""
    out = np.full(len(keys), default, dtype=object)
    if not table or not len(keys):
        return out
    at = pd.Index(np.fromiter(table, dtype=object, count=len(table))).get_indexer(np.asarray(keys, dtype=object))
    found = at >= 0
    out[found] = np.fromiter(table.values(), dtype=object, count=len(table))[at[found]]
    return out


def _staffing(town: Town, responsibility: Any) -> tuple[dict[str, str | None], dict[str, bool],
                                                        dict[str, str | None]]:
    """Grid id -> chief name(s), -> staffed, -> owner (the chief, or who must name one)."""
    staffing = _frame(responsibility, "staffing")
    if staffing is not None and "grid_id" in staffing.columns:
        gid = staffing["grid_id"].astype(str).to_numpy(dtype=object)
        names = _texts(_column(staffing, "chief_name")).tolist()
        flags = staffing["staffed"].to_numpy() if "staffed" in staffing.columns else np.array(
            [n is not None for n in names])
        if flags.dtype == bool:
            flag_values = flags.tolist()
        else:
            na = pd.isna(flags.astype(object))
            flag_values = [False if n else bool(f) for f, n in zip(flags, na, strict=True)]
        owners = _texts(_column(staffing, "owner")).tolist()
        chiefs = dict(zip(gid, names, strict=True))
        staffed = dict(zip(gid, flag_values, strict=True))
        owner = dict(zip(gid, [o or c for o, c in zip(owners, names, strict=True)], strict=True))
        return chiefs, staffed, owner
    # no Responsibility given: the one staffing table, from the roster
    return _staffing(town, SimpleNamespace(staffing=staffing_table(town)))


def _poi_texts(pois: gpd.GeoDataFrame) -> dict[str, str]:
    """POI id -> ``kind name (id)`` (``kind (id)`` when it has no name)."""
    return {str(p): f"{k} {n} ({p})" if present(n) else f"{k} ({p})"
            for p, k, n in zip(pois["poi_id"], pois["kind"], pois["name"], strict=True)}


def _rule_pois(ctx: _Context, kinds: Sequence[str]) -> gpd.GeoDataFrame:
    """The POIs of these kinds (computed once per set of kinds; not to be modified)."""
    key = tuple(kinds)
    if key not in ctx.pois_of:
        pois = ctx.town.pois
        ctx.pois_of[key] = pois[pois["kind"].isin(list(kinds))].reset_index(drop=True)
    return ctx.pois_of[key]
