"""Small shared helpers of the responsibility check: geometry arrays, frames, substrings, people's labels."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.ops import substring

from gisgrid.model import Town

logger = logging.getLogger(__name__)

_SIDE_STEP_M = 0.5  # how far either side of a crossing (along the river) or of a road (to its left) we look
#: The river corridor half-width when nothing else says (``[assign] corridor_m``).
DEFAULT_CORRIDOR_M = 30.0


# --------------------------------------------------------------------------- small helpers
def _geoms(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    values = frame.geometry.values if isinstance(frame, gpd.GeoDataFrame) else frame.values
    return np.asarray(values, dtype=object)


def _gdf(data: Mapping[str, Any] | pd.DataFrame, geoms: Any, crs: Any, columns: Sequence[str]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(data) if not isinstance(data, pd.DataFrame) else data.copy()
    for col in columns:
        if col not in frame.columns:
            frame[col] = pd.Series([None] * len(frame), dtype=object, index=frame.index)
    frame = frame[list(columns)].reset_index(drop=True)
    geo = gpd.GeoSeries(np.asarray(geoms, dtype=object) if len(frame) else [], crs=crs)
    return gpd.GeoDataFrame(frame, geometry=geo, crs=crs)


def _only(geoms: np.ndarray, dim: int) -> np.ndarray:
    """Keep only the parts of dimension ``dim`` (1 lines, 2 polygons); empty where none is left."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return geoms
    wanted = (1, 5) if dim == 1 else (3, 6)
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    bad = np.flatnonzero(~np.isin(types, wanted))
    if not len(bad):
        return out
    parts, idx = shapely.get_parts(geoms[bad], return_index=True)
    keep = shapely.get_dimensions(parts) == dim
    maker = shapely.multilinestrings if dim == 1 else shapely.multipolygons
    rebuilt = np.full(len(bad), None, dtype=object)
    if keep.any():
        rebuilt = maker(parts[keep], indices=idx[keep], out=rebuilt)
    empty = shapely.MultiLineString() if dim == 1 else shapely.MultiPolygon()
    rebuilt = np.where(shapely.is_missing(rebuilt), empty, rebuilt)
    out[bad] = rebuilt
    return out


def _nones(series: pd.Series) -> pd.Series:
    """An object column with None for missing values; the town's text was cleaned once, by model, on load."""
    obj = series.astype(object)
    return obj.where(obj.notna(), None)


def _substring(line: shapely.Geometry, start: float, end: float) -> shapely.Geometry:
    """``shapely.ops.substring`` that also takes a MultiLineString (chainage summed over its parts)."""
    if line.geom_type == "LineString":
        return substring(line, start, end)
    parts = shapely.get_parts(line)
    lengths = shapely.length(parts)
    offsets = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.clip(np.searchsorted(offsets, (start + end) / 2, side="right") - 1, 0, len(parts) - 1))
    return substring(parts[k], max(start - offsets[k], 0.0), min(end - offsets[k], lengths[k]))


def _person_labels(town: Town) -> dict[str, str]:
    """person_id -> the name used as owner ("name (person_id)" when a name is shared)."""
    frames = [f[["person_id", "name"]] for f in (town.grid_staff, town.river_chiefs) if len(f)]
    if not frames:
        return {}
    people = pd.concat(frames, ignore_index=True).astype(object).drop_duplicates("person_id")
    shared = people["name"].duplicated(keep=False)
    label = np.where(shared, people["name"] + " (" + people["person_id"] + ")", people["name"])
    return dict(zip(people["person_id"], label, strict=True))


def _line_note(town: Town, roster: str, row: Any) -> str:
    path = str((town.sources.get(roster) or {}).get("path") or "")
    if path.lower().endswith((".csv", ".txt", ".xlsx", ".xlsm")) and isinstance(row, (int, np.integer)):
        # the file's name only: published reports never show the server's folders
        return f" (line {int(row) + 2} of {Path(path).name})"
    return ""
