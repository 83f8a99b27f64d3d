"""Layers ready for the page: simplified, moved to EPSG:4326 (or GCJ-02), rounded and integer-encoded.

A :class:`_Layer` holds one map layer as the page reads it: encoded coordinates per feature, escaped
property rows under short keys, and the raw attributes (village, owner, ...) that scopes select by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid.crs import wgs84_to_gcj02

logger = logging.getLogger(__name__)

#: Coordinates are rounded to this many decimals (1e-6 degree is about 0.1 m).
DECIMALS = 6
_SCALE = 10**DECIMALS


def _arr(frame: Any) -> np.ndarray:
    return np.asarray(frame.geometry.values, dtype=object)


def _simplify(geoms: np.ndarray, tolerance: float, *, coverage: bool) -> np.ndarray:
    """Simplify in the metric CRS; a coverage keeps its shared edges."""
    if tolerance <= 0 or len(geoms) == 0:
        return geoms
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    out = geoms.copy()
    if coverage and ok.any():
        try:
            simple = shapely.coverage_simplify(geoms[ok], tolerance)
            bad = ~shapely.is_valid(simple) | shapely.is_empty(simple)
            if bad.any():
                simple[bad] = shapely.simplify(geoms[ok][bad], tolerance, preserve_topology=True)
            out[ok] = simple
            return out
        except shapely.errors.GEOSException as exc:  # an invalid coverage: simplify one by one
            logger.info("coverage_simplify failed (%s); simplifying polygons one by one", exc)
    out[ok] = shapely.simplify(geoms[ok], tolerance, preserve_topology=True)
    return out


def _shift_gcj(coords: np.ndarray) -> np.ndarray:
    lon, lat = wgs84_to_gcj02(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


def _round(coords: np.ndarray) -> np.ndarray:
    return np.round(coords, DECIMALS)


def _to_map(geoms: np.ndarray, crs: Any, *, gcj: bool) -> np.ndarray:
    """Metric geometries -> EPSG:4326 (GCJ-02 shifted if asked), rounded."""
    if len(geoms) == 0:
        return geoms
    out = np.asarray(gpd.GeoSeries(geoms, crs=crs).to_crs(4326).values, dtype=object)
    if gcj:
        out = shapely.transform(out, _shift_gcj)
    return shapely.transform(out, _round)


def _tolerance(n_polygons: int) -> float:
    """Simplification tolerance in metres: invisible at the zoom a layer of this size is read at."""
    if n_polygons <= 1000:
        return 0.5
    if n_polygons <= 5000:
        return 1.0
    return 2.0


# ----------------------------------------------------------------------------- prepared layers
@dataclass
class _Layer:
    """One layer ready for the page: geometry JSON and escaped properties, plus raw attributes to select by."""

    key: str
    geoms: np.ndarray  # encoded coordinates per feature (see _encode_geometries)
    gtypes: np.ndarray  # GeoJSON type per feature
    keys: list[str]
    rows: list[list[Any]]
    attrs: pd.DataFrame
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.geoms)

    def take(self, mask: np.ndarray | None) -> _Layer:
        if mask is None:
            return self
        idx = np.flatnonzero(mask)
        return _Layer(self.key, self.geoms[idx], self.gtypes[idx], self.keys, [self.rows[k] for k in idx],
                      self.attrs.iloc[idx].reset_index(drop=True), self.bounds[idx])


def _build_layer(key: str, frame: gpd.GeoDataFrame, cols: dict[str, list[Any]], *, crs: Any, gcj: bool,
                 simplify: float = 0.0, coverage: bool = False, attrs: pd.DataFrame | None = None,
                 label_points: bool = False) -> _Layer:
    """Prepare ``frame`` (metric CRS) with property columns ``cols`` (already escaped/formatted)."""
    geoms = _arr(frame) if len(frame) else np.array([], dtype=object)
    geoms = _simplify(geoms, simplify, coverage=coverage)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    cols = dict(cols)
    if label_points and len(geoms):
        lp = np.full(len(geoms), None, dtype=object)
        lp[present] = shapely.point_on_surface(_arr(frame)[present])
        lp_map = _to_map(lp[present], crs, gcj=gcj)
        xy = np.full((len(geoms), 2), np.nan)
        xy[present] = shapely.get_coordinates(lp_map)
        cols["_lp"] = [[float(a), float(b)] if np.isfinite(a) else None for a, b in xy]
    mapped = _to_map(_no_collections(geoms[present]), crs, gcj=gcj)
    ok = ~shapely.is_empty(mapped) if len(mapped) else np.zeros(0, bool)
    keep = np.flatnonzero(present)[ok]
    mapped = mapped[ok]
    keys = list(cols)
    columns = [cols[k] for k in keys]
    rows = [[c[p] for c in columns] for p in keep]
    at = pd.DataFrame(index=range(len(frame))) if attrs is None else attrs.reset_index(drop=True).copy()
    if "pos" not in at.columns:
        at["pos"] = np.arange(len(frame))
    at = at.iloc[keep].reset_index(drop=True)
    bounds = shapely.bounds(mapped) if len(mapped) else np.zeros((0, 4))
    encoded, gtypes = _encode_geometries(mapped)
    return _Layer(key, encoded, gtypes, keys, rows, at, bounds)


def _no_collections(geoms: np.ndarray) -> np.ndarray:
    """GeometryCollections (e.g. from make_valid) become their highest-dimension parts; LinearRings LineStrings."""
    tid = shapely.get_type_id(geoms) if len(geoms) else np.zeros(0, dtype=np.int64)
    coll = tid == 7
    rings = tid == 2
    if not coll.any() and not rings.any():
        return geoms
    out = geoms.copy()
    for pos in np.flatnonzero(rings):  # LinearRing: draw as the closed line it is
        out[pos] = shapely.LineString(shapely.get_coordinates(geoms[pos]))
    for pos in np.flatnonzero(coll):
        parts = shapely.get_parts(geoms[pos])
        dims = shapely.get_dimensions(parts)
        keep = parts[dims == dims.max()] if len(parts) else parts
        out[pos] = shapely.union_all(keep) if len(keep) else shapely.Point()
    return out


#: The 64 characters of the compact integer text (JSON-safe, nothing that needs escaping in a ``<script>``).
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHA = np.frombuffer(_ALPHABET.encode("ascii"), dtype=np.uint8)
#: Values must stay below 2**30: the page decodes with 32-bit integer arithmetic.
_VARINT_LIMIT = 1 << 30


def _varints(values: np.ndarray) -> tuple[str, np.ndarray]:
    """Non-negative integers as one text, 5 bits per character, low bits first (bit 6: more follows).

    Returns the text and the character offset at which each value ends. A value below 32 takes one
    character, below 1024 two, below 32768 three: about half the bytes of the same numbers in JSON.
    """
    v = np.asarray(values, dtype=np.int64).ravel()
    if len(v) and (v.min() < 0 or v.max() >= _VARINT_LIMIT):
        msg = f"cannot encode integers outside [0, 2**30) for the page (got {v.min()}..{v.max()})"
        raise ValueError(msg)
    n = np.ones(len(v), dtype=np.int64)
    for k in range(1, 6):
        n += v >= (1 << (5 * k))
    width = int(n.max()) if len(v) else 0
    chars = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width):
        chars[:, k] = _ALPHA[((v >> (5 * k)) & 31) + 32 * (k < n - 1)]
    text = chars[np.arange(width) < n[:, None]].tobytes().decode("ascii")
    return text, np.cumsum(n)


def _zigzag(values: np.ndarray) -> np.ndarray:
    """Signed -> non-negative integers (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), for :func:`_varints`."""
    v = np.asarray(values, dtype=np.int64)
    return (v << 1) ^ (v >> 63)


def _encode_geometries(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates as integers (1e-6 degree), each ring or line as the text of ``[x0, y0, dx1, dy1, ...]``.

    The integers are zigzag- and then :func:`_varints`-encoded: one string per point, line or ring. Nesting
    follows GeoJSON (Point and LineString and MultiPoint one string; Polygon and MultiLineString a list of
    them; MultiPolygon a list of polygons). About a fifth of the size of GeoJSON text with 6 decimals;
    ``GG.data`` in the page turns it back into GeoJSON.
    """
    out = np.empty(len(geoms), dtype=object)
    types = np.empty(len(geoms), dtype=object)
    if not len(geoms):
        return out, types
    names = shapely.get_type_id(geoms)
    # One geometry type at a time, so that to_ragged_array keeps each type as it is.
    done = np.zeros(len(geoms), dtype=bool)
    for single in (0, 1, 3, 4, 5, 6):
        idx = np.flatnonzero(names == single)
        if not len(idx):
            continue
        _, coords, offsets = shapely.to_ragged_array(geoms[idx])
        ints = np.rint(coords * _SCALE).astype(np.int64)
        starts = offsets[0][:-1] if offsets else np.arange(len(ints))
        delta = ints.copy()
        delta[1:] -= ints[:-1]
        delta[starts] = ints[starts]
        text, ends = _varints(_zigzag(delta.ravel()))
        at = np.concatenate([[0], ends])[::2].tolist()  # character offset of each coordinate pair
        if not offsets:  # Points
            items: list[Any] = [text[at[k]: at[k + 1]] for k in range(len(ints))]
        else:
            o0 = offsets[0]
            items = [text[at[o0[k]]: at[o0[k + 1]]] for k in range(len(o0) - 1)]
            for off in offsets[1:]:
                items = [items[off[k]: off[k + 1]] for k in range(len(off) - 1)]
        name = {0: "Point", 4: "MultiPoint", 1: "LineString", 5: "MultiLineString", 3: "Polygon",
                6: "MultiPolygon"}[single]
        for pos, item in zip(idx, items, strict=True):
            out[pos] = item
            types[pos] = name
        done[idx] = True
    if not done.all():
        bad = sorted({shapely.get_type_id(g) for g in geoms[~done]})
        msg = f"cannot draw geometry type ids {bad} (geometry collections)"
        raise ValueError(msg)
    return out, types
