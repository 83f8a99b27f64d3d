"""Coverage geometry: uncovered line parts, gaps and overlaps, point-in-zone.

A pure geometry module: GeoDataFrames in, new GeoDataFrames (or Series) out;
inputs are never modified. All lengths and areas are in the units of the
(projected, metric) CRS of the inputs; geographic CRSs are refused.

Uncovered lines
---------------
:func:`uncovered_lines` answers "which parts of each line lie outside every
zone?" with the semantics of the plain shapely expression
``line.difference(shapely.union_all(zones))`` (then intersected with an extent
when one is given). Zones and extent are closed sets: a road running exactly
along the shared edge of two grids, or along the outer edge of a grid, is
covered; a road along the extent's edge is inside the extent.

The work is done on the *complement* of the zones instead of the zones
themselves, because the gaps are small while the zones are everywhere:

1. ``U`` is the union of the zones (:func:`union_zones`).
2. ``C = B - U`` where ``B`` is a box strictly containing the lines and ``U``.
   ``C`` is computed once; its pieces are bounded by ``U``'s own rings, so
   no new vertex is introduced anywhere near a line.
3. A line that meets no piece of ``C`` lies inside ``U`` and is covered; a
   line inside one piece meets no zone and is uncovered as a whole. Both are
   found with one ``STRtree`` query of the (prepared) pieces against the lines.
4. For a line ``L`` and a small piece ``P`` the uncovered part is
   ``L ∩ interior(P)``, computed exactly as ``L - (B' - P)`` with ``B'`` a
   slightly larger box (``B' - P`` is a closed polygon with ``P`` as a hole,
   so a line lying along ``P``'s boundary -- which is ``U``'s boundary -- is
   removed, as in the reference). The union over pieces is ``L - U``.
5. A line meeting a *big* piece (more than ``_BIG_PIECE_VERTICES`` vertices,
   typically the region outside all zones) is instead differenced with the
   union of the few zones it intersects, which is ``L - U`` locally.
6. The parts are clipped to the extent, merged per line with
   :func:`shapely.line_merge` and exploded into LineStrings.

Geometry calls are vectorised shapely array functions over the candidate
(line, piece) pairs; the only Python loops run over distinct group sizes.

Hand-drawn borders: the digitising tolerance
--------------------------------------------
Everything above is the *exact* engine (``tolerance_m=0``). By default
(``settings.tolerance_m``, 2 m) the functions judge by width instead, as
:mod:`gisgrid.tolerance` explains: only the parts of lines inside real gaps
(at least ``tolerance_m`` wide) are uncovered, and a line running along a
zone's edge within half the tolerance is covered even beside a real gap;
gaps and overlaps narrower than the tolerance are slivers.

Floating-point noise
--------------------
In the exact engine a piece of any length lying everywhere within
``_ON_EDGE_ULPS`` ulps (~3e-8 m at Gauss-Kruger coordinates) of some
zone is on that zone's edge and so covered. This happens where zones overlap:
the union puts a computed node, a few ulps off the original edge, on the edge
a road runs along, and ``line.difference(union)`` then reports tens of metres
of the road as uncovered, ~1e-11 m outside the zones.

The clip to the extent (step 6) treats a part within ``_ON_EDGE_ULPS`` ulps of
the extent (~3e-8 m at Gauss-Kruger coordinates) as on its edge, hence inside.
Without this, a road lying exactly along the town boundary loses or keeps
whole pieces at random, because the nodes computed where it enters and leaves
zones are a few ulps off that boundary -- which is what the plain shapely
expression does. The price is a stub of at most ~3e-8 m / sin(angle) where a
line crosses the extent's edge.

Gaps and overlaps
-----------------
:func:`partition_defects` reports the gaps (parts of the extent in no zone)
and the overlaps (parts in two or more zones, split by the exact set of zones
covering them). Overlap candidates are restricted to the zones
``shapely.coverage_invalid_edges`` flags; the overlap faces come from
polygonizing the noded boundaries of only the zones in overlapping pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely import STRtree

from gisgrid import settings
from gisgrid._errors import CRSError, InputError, SchemaError
from gisgrid.geometry.tolerance import (
    Clock,
    gap_regions,
    gaps_by_tiles,
    grouped_union,
    opening,
    overlap_pairs,
    polygon_parts,
)

__all__ = [
    "lines_in_gaps",
    "nearest_zones",
    "partition_defects",
    "points_in_zones",
    "uncovered_lines",
    "union_zones",
]

logger = logging.getLogger(__name__)

#: Complement pieces with more vertices than this are not intersected with
#: lines directly (each such intersection costs O(vertices)); lines touching
#: them are differenced with the union of their own zones instead.
_BIG_PIECE_VERTICES = 2000

#: A computed line part within this many ulps (of the largest coordinate) of
#: the extent's edge lies on it: ~3e-8 m at Gauss-Kruger magnitudes, where the
#: rounding of computed nodes is ~1e-9 m.
_ON_EDGE_ULPS = 64

_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAR = ("LineString", "MultiLineString", "LinearRing")
_EMPTY = shapely.GeometryCollection()


# --------------------------------------------------------------------------- #
# input checks
# --------------------------------------------------------------------------- #


def _check_crs(named: dict[str, Any]) -> pyproj.CRS | None:
    """Refuse geographic or mismatched CRSs among the named frames.

    Parameters
    ----------
    named
        Layer name -> GeoDataFrame/GeoSeries (entries without a ``crs``
        attribute, such as bare shapely geometries, are skipped).

    Returns
    -------
    pyproj.CRS or None
        The common CRS (None when no input declares one).

    Raises
    ------
    CRSError
        A CRS is geographic (degrees, not metres) or two CRSs differ.
    """
    common: pyproj.CRS | None = None
    first: str | None = None
    seen = False
    for name, frame in named.items():
        if not hasattr(frame, "crs"):
            continue
        crs = frame.crs
        if crs is not None and crs.is_geographic:
            raise CRSError(
                f"{name} is in the geographic CRS {crs.name!r} (degrees); coverage "
                "lengths and areas need metres.",
                layer=name,
                fix="reproject with .to_crs(...) to a metric CRS (e.g. the CGCS2000 "
                "Gauss-Kruger zone chosen by gisgrid.crs.analysis_crs).",
            )
        if not seen:
            common, first, seen = crs, name, True
            continue
        if (common is None) != (crs is None) or (common is not None and common != crs):
            raise CRSError(
                f"{name} is in CRS {_crs_name(crs)} but {first} is in CRS "
                f"{_crs_name(common)}.",
                layer=name,
                fix=f"reproject with .to_crs(...) so {name} and {first} share one metric CRS.",
            )
    return common


def _crs_name(crs: pyproj.CRS | None) -> str:
    return "None (undeclared)" if crs is None else repr(crs.name)


def _geometry_values(frame: Any) -> np.ndarray:
    """Return the geometries of a GeoDataFrame/GeoSeries/array as an object array."""
    if isinstance(frame, gpd.GeoDataFrame):
        return np.asarray(frame.geometry.array, dtype=object)
    if isinstance(frame, gpd.GeoSeries):
        return np.asarray(frame.array, dtype=object)
    if isinstance(frame, shapely.Geometry):
        return np.array([frame], dtype=object)
    return np.asarray(list(frame) if not isinstance(frame, np.ndarray) else frame, dtype=object)


def _present(geoms: np.ndarray) -> np.ndarray:
    """Positions of the geometries that are neither None nor empty."""
    return np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))


def _check_types(
    geoms: np.ndarray, index: pd.Index | None, allowed: tuple[str, ...], layer: str, what: str
) -> None:
    allowed_ids = [int(shapely.GeometryType[a.upper()]) for a in allowed]
    bad = np.flatnonzero(~np.isin(shapely.get_type_id(geoms), allowed_ids))
    if bad.size:
        row = index[bad[0]] if index is not None else int(bad[0])
        found = sorted({geoms[i].geom_type for i in bad})
        raise InputError(
            f"{layer} must hold {what} geometries; {bad.size} row(s) hold {', '.join(found)}.",
            layer=layer,
            row=row,
            fix=f"keep only {what} rows (e.g. frame[frame.geom_type.isin({list(allowed)})]).",
        )


def _typed(frame: Any, layer: str, types: tuple[str, ...], what: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """The non-empty geometries of ``frame``, their positions and index labels, all of the geometry ``types``."""
    geoms = _geometry_values(frame)
    pos = _present(geoms)
    geoms = geoms[pos]
    index = frame.index[pos] if isinstance(frame, pd.Series | pd.DataFrame) else None
    if geoms.size:
        _check_types(geoms, index, types, layer, what)
    return geoms, pos, index


def _polygons(zones: Any, layer: str = "zones") -> tuple[np.ndarray, np.ndarray]:
    """Valid, non-empty polygonal geometries of ``zones`` and their positions.

    Raises
    ------
    InputError
        A geometry is not polygonal or is invalid.
    """
    geoms, pos, index = _typed(zones, layer, _POLYGONAL, "Polygon/MultiPolygon")
    invalid = np.flatnonzero(~shapely.is_valid(geoms)) if geoms.size else np.empty(0, dtype=int)
    if invalid.size:
        row = index[invalid[0]] if index is not None else int(pos[invalid[0]])
        raise InputError(
            f"{layer} has {invalid.size} invalid polygon(s): "
            f"{shapely.is_valid_reason(geoms[invalid[0]])}.",
            layer=layer,
            row=row,
            fix="repair them with shapely.make_valid (gisgrid.Town does this on load).",
        )
    return geoms, pos


def _lines(lines: Any, layer: str = "lines") -> tuple[np.ndarray, np.ndarray]:
    """Non-empty linear geometries of ``lines`` and their positions."""
    geoms, pos, _ = _typed(lines, layer, _LINEAR, "LineString/MultiLineString")
    return geoms, pos


def _extent(extent: Any) -> shapely.Geometry | None:
    """The extent as one polygonal shapely geometry (None when not given)."""
    if extent is None:
        return None
    geoms = _geometry_values(extent)
    geoms = geoms[_present(geoms)]
    if geoms.size == 0:
        return shapely.MultiPolygon()
    _check_types(geoms, None, _POLYGONAL, "extent", "Polygon/MultiPolygon")
    geom = geoms[0] if geoms.size == 1 else shapely.union_all(geoms)
    if not shapely.is_valid(geom):
        raise InputError(
            f"the extent polygon is invalid: {shapely.is_valid_reason(geom)}.",
            layer="extent",
            fix="repair it with shapely.make_valid.",
        )
    return geom


# --------------------------------------------------------------------------- #
# small vectorised helpers
# --------------------------------------------------------------------------- #


def _explode(geoms: np.ndarray, owner: np.ndarray, keep: str) -> tuple[np.ndarray, np.ndarray]:
    """Explode geometries into parts of type ``keep`` with positive size."""
    parts, idx = shapely.get_parts(geoms, return_index=True)
    ok = shapely.get_type_id(parts) == int(getattr(shapely.GeometryType, keep.upper()))
    measure = shapely.length(parts) if keep == "LineString" else shapely.area(parts)
    ok &= measure > 0
    return parts[ok], owner[idx[ok]]


def _clip_to(
    geoms: np.ndarray, owner: np.ndarray, region: shapely.Geometry, keep: str
) -> tuple[np.ndarray, np.ndarray]:
    """Intersect geometries with ``region``, only computing the ones crossing it."""
    if geoms.size == 0:
        return geoms, owner
    shapely.prepare(region)  # used as the first operand: prepared predicates
    inside = shapely.covers(region, geoms)
    crossing = ~inside & shapely.intersects(region, geoms)
    cut = shapely.intersection(geoms[crossing], region)
    geoms = np.concatenate([geoms[inside], cut])
    owner = np.concatenate([owner[inside], owner[crossing]])
    order = np.argsort(owner, kind="stable")
    return _explode(geoms[order], owner[order], keep)


def _check_id_column(zones: pd.DataFrame, id_column: str | None) -> None:
    if id_column is not None and id_column not in zones.columns:
        raise SchemaError(
            f"zones have no column {id_column!r}.",
            layer="zones",
            column=id_column,
            fix=f"pass one of {list(zones.columns)} or None to use the index.",
        )


def _id_array(zones: pd.DataFrame, id_column: str | None, pos: np.ndarray) -> np.ndarray:
    """Zone ids (``id_column`` or the index) at ``pos`` as Python objects."""
    values = zones[id_column] if id_column is not None else zones.index.to_series()
    out = np.empty(pos.size, dtype=object)
    out[:] = values.iloc[pos].tolist()
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool | np.bool_):
        return (1, str(value))
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value))
    return (1, str(value))


def _join_ids(values: Iterable[Hashable]) -> tuple[str, ...]:
    """The distinct ids as text, sorted (numbers numerically, then text): a real list, never a joined string."""
    return tuple(str(v) for v in sorted(set(values), key=_sort_key))


def _bounds_box(*bounds: np.ndarray, margin_factor: float = 0.01) -> tuple[np.ndarray, float]:
    """Common bounds of several ``total_bounds`` arrays and a safe margin."""
    stack = np.array([b for b in bounds if np.all(np.isfinite(b))])
    lo = stack[:, :2].min(axis=0)
    hi = stack[:, 2:].max(axis=0)
    span = float(max(hi - lo))
    return np.concatenate([lo, hi]), 1.0 + margin_factor * span


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def _union_and_flags(geoms: np.ndarray) -> tuple[shapely.Geometry, np.ndarray]:
    """Union of non-empty polygons and which of them have invalid coverage edges.

    The zones whose edges ``shapely.coverage_invalid_edges`` accepts form a
    valid coverage on their own (no two of them overlap, shared edges have
    identical vertices), so they are dissolved with the fast
    ``coverage_union``; the flagged zones -- overlapping or misaligned -- are
    then added with ``union_all``, which nodes them properly.
    """
    if geoms.size == 0:
        return shapely.MultiPolygon(), np.zeros(0, dtype=bool)
    if geoms.size == 1:
        return geoms[0], np.zeros(1, dtype=bool)
    bad = ~shapely.is_empty(shapely.coverage_invalid_edges(geoms))
    n_bad = int(bad.sum())
    if n_bad == 0:
        logger.debug("union_zones: %d zones form a valid coverage: coverage_union", geoms.size)
        return shapely.coverage_union_all(geoms), bad
    if n_bad == geoms.size:
        logger.debug("union_zones: no zone has valid coverage edges: union_all")
        return shapely.union_all(geoms), bad
    logger.debug(
        "union_zones: %d of %d zones have invalid coverage edges (overlap or misaligned): "
        "coverage_union of the rest, then union_all",
        n_bad,
        geoms.size,
    )
    valid_part = shapely.coverage_union_all(geoms[~bad])
    return shapely.union_all(np.concatenate([[valid_part], geoms[bad]])), bad


def union_zones(zones: Any) -> shapely.Geometry:
    """Union of zone polygons.

    ``shapely.coverage_union`` is fast but silently wrong on overlapping or
    misaligned input, so the coverage is validated first: when it is valid
    the zones are dissolved with :func:`shapely.coverage_union_all`;
    otherwise the zones with valid coverage edges (which form a valid
    coverage among themselves) are dissolved that way and the zones
    ``shapely.coverage_invalid_edges`` flags are added with
    :func:`shapely.union_all`. The result is the union of the zones (logged
    at debug level: which path was taken).

    Parameters
    ----------
    zones
        GeoDataFrame, GeoSeries or array-like of (Multi)Polygons. None and
        empty geometries are ignored.

    Returns
    -------
    shapely.Geometry
        The union (an empty MultiPolygon when there are no zones).
    """
    geoms = _geometry_values(zones)
    return _union_and_flags(geoms[_present(geoms)])[0]


def _line_minus_union(
    lines: np.ndarray, zones: np.ndarray, union: shapely.Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """Parts of each line outside ``union`` (= the union of ``zones``).

    Returns
    -------
    parts, owner
        LineString parts and the position in ``lines`` each comes from.
    """
    bounds = [shapely.total_bounds(lines)]
    if not shapely.is_empty(union):
        bounds.append(np.asarray(union.bounds))
    (xmin, ymin, xmax, ymax), margin = _bounds_box(*bounds)
    outer = shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    outer2 = shapely.box(xmin - 2 * margin, ymin - 2 * margin, xmax + 2 * margin, ymax + 2 * margin)

    pieces = shapely.get_parts(shapely.difference(outer, union))
    pieces = pieces[shapely.area(pieces) > 0]
    big = shapely.get_num_coordinates(pieces) > _BIG_PIECE_VERTICES
    shapely.prepare(pieces)
    tree = STRtree(lines)
    p_idx, l_idx = tree.query(pieces, predicate="intersects")
    # A line in the interior of one piece meets no zone: all of it is uncovered.
    free = shapely.contains_properly(pieces[p_idx], lines[l_idx])
    shapely.destroy_prepared(pieces)
    outside = l_idx[free]
    p_idx, l_idx = p_idx[~free], l_idx[~free]

    fallback = np.unique(l_idx[big[p_idx]])
    direct = ~np.isin(l_idx, fallback)
    p_idx, l_idx = p_idx[direct], l_idx[direct]
    logger.debug(
        "uncovered_lines: %d lines, %d complement pieces (%d big), %d lines outside all "
        "zones, %d line-piece pairs, %d lines differenced with their own zones",
        lines.size,
        pieces.size,
        int(big.sum()),
        outside.size,
        p_idx.size,
        fallback.size,
    )

    # L ∩ interior(P) == L - (B' - P) for lines inside B'.
    used, inverse = np.unique(p_idx, return_inverse=True)
    holes = shapely.difference(outer2, pieces[used])
    parts_direct = shapely.difference(lines[l_idx], holes[inverse])

    # Lines touching a big piece: difference with the union of their own zones.
    if fallback.size:
        ztree = STRtree(zones)
        f_idx, z_idx = ztree.query(lines[fallback], predicate="intersects")
        local = grouped_union(zones[z_idx], f_idx, fallback.size)
        parts_fallback = shapely.difference(lines[fallback], local)
    else:
        parts_fallback = np.empty(0, dtype=object)

    # difference with an empty geometry nodes the line (dissolving self-overlaps)
    # exactly as the reference does
    parts_outside = shapely.difference(lines[outside], _EMPTY)
    geoms = np.concatenate([parts_direct, parts_fallback, parts_outside])
    owner = np.concatenate([l_idx, fallback, outside])
    order = np.argsort(owner, kind="stable")
    return _explode(geoms[order], owner[order], "LineString")


def _merge(parts: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the parts of each owner with line_merge and explode again."""
    if parts.size == 0:
        return parts, owner
    uniq, inverse = np.unique(owner, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    multi = shapely.multilinestrings(parts[order], indices=inverse[order])
    merged = shapely.line_merge(multi)
    pieces, idx = _explode(merged, uniq, "LineString")
    return pieces, idx


def _all_within(pieces: np.ndarray, zones: np.ndarray, distance: float, step: Any) -> np.ndarray:
    """Whether every sample point of each piece lies within ``distance`` of some zone.

    The samples are the vertices of the pieces densified to at most ``step``
    apart (a scalar or one value per piece) and the midpoints between them;
    each is tested against the zones' STRtree with ``dwithin``.
    """
    if pieces.size == 0 or zones.size == 0:
        return np.zeros(pieces.size, dtype=bool)
    dense = shapely.segmentize(pieces, step)
    xy, idx = shapely.get_coordinates(dense, return_index=True)
    same = idx[1:] == idx[:-1]
    xy = np.concatenate([xy, (xy[1:][same] + xy[:-1][same]) / 2])
    idx = np.concatenate([idx, idx[1:][same]])
    hit = np.zeros(idx.size, dtype=bool)
    found, _ = STRtree(zones).query(shapely.points(xy), predicate="dwithin", distance=distance)
    hit[found] = True
    return np.bincount(idx[~hit], minlength=pieces.size) == 0


def _on_zone_edges(pieces: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """Whether each piece lies on zone edges to machine precision.

    Such a piece is covered (zones are closed); it shows up as uncovered only
    because the union of overlapping zones puts computed nodes, a few ulps
    off the original edges, on the edge the line runs along.
    """
    if pieces.size == 0 or zones.size == 0:
        return np.zeros(pieces.size, dtype=bool)
    bounds = shapely.total_bounds(zones)
    eps = _ON_EDGE_ULPS * float(np.spacing(np.abs(bounds).max()))
    lengths = shapely.length(pieces)
    result = _all_within(pieces, zones, eps, np.inf)  # vertices and midpoints first
    maybe = np.flatnonzero(result)
    if maybe.size:  # then 512 samples along each candidate
        step = np.maximum(lengths[maybe] / 256.0, eps)
        result[maybe] = _all_within(pieces[maybe], zones, eps, step)
    return result


def _tolerance(tolerance_m: float | None) -> float:
    """The digitising tolerance to use (``settings.tolerance_m`` for None), checked."""
    tol = settings.tolerance_m if tolerance_m is None else tolerance_m
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        tol = float("nan")
    if not np.isfinite(tol) or tol < 0:
        raise InputError(
            f"tolerance_m must be a finite number of metres >= 0, not {tolerance_m!r}.",
            fix="pass the digitising tolerance in metres (e.g. 2.0), 0 for exact geometry, "
            "or None for settings.tolerance_m.",
        )
    return tol


def _workers(workers: int | None) -> int:
    return settings.thread_count(workers)


def _exact_uncovered(line_geoms: np.ndarray, zone_geoms: np.ndarray, ext: shapely.Geometry | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``line - union(zones)`` (clipped to the extent), exactly, minus rounding artefacts."""
    union = _union_and_flags(zone_geoms)[0]
    parts, owner = _line_minus_union(line_geoms, zone_geoms, union)
    if ext is not None:
        # The extent is closed: a road along its edge is inside. The parts
        # carry computed nodes a few ulps off that edge, so clip with the
        # extent grown by _ON_EDGE_ULPS ulps instead of the extent itself.
        magnitude = float(np.abs(np.asarray(ext.bounds)).max())
        grown = shapely.buffer(ext, _ON_EDGE_ULPS * np.spacing(magnitude), join_style="mitre")
        parts, owner = _clip_to(parts, owner, grown, "LineString")
    pieces, owner = _merge(parts, owner)
    if pieces.size:
        drop = _on_zone_edges(pieces, zone_geoms)
        if drop.any():
            logger.debug("uncovered_lines: %d pieces lie on zone edges (rounding): covered", int(drop.sum()))
        pieces, owner = pieces[~drop], owner[~drop]
    return pieces, owner


def _tiled(regions: np.ndarray, most: int = 2000) -> np.ndarray:
    """Regions with more than ``most`` vertices cut into tiles (a line meets a tile's few vertices, not all)."""
    n = shapely.get_num_coordinates(regions)
    big = n > most
    if not big.any():
        return regions
    out = [regions[~big]]
    for region, count in zip(regions[big], n[big], strict=True):
        k = int(np.ceil(np.sqrt(count / (most / 4))))
        x0, y0, x1, y1 = region.bounds
        xs, ys = np.linspace(x0, x1, k + 1), np.linspace(y0, y1, k + 1)
        gx, gy = (a.ravel() for a in np.meshgrid(np.arange(k), np.arange(k)))
        out.append(polygon_parts(shapely.intersection(region, shapely.box(xs[gx], ys[gy], xs[gx + 1],
                                                                           ys[gy + 1])))[0])
    return np.concatenate(out)


def _in_regions(line_geoms: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The parts of each line inside the regions, merged per line: pieces and line positions."""
    if line_geoms.size == 0 or regions.size == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    regions = _tiled(regions)
    r_idx, l_idx = STRtree(line_geoms).query(regions, predicate="intersects")  # the regions prepared
    if l_idx.size == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    parts = shapely.intersection(line_geoms[l_idx], regions[r_idx])
    order = np.argsort(l_idx, kind="stable")
    parts, owner = _explode(parts[order], l_idx[order], "LineString")
    return _merge(parts, owner)


def _along_edges(pieces: np.ndarray, zones: np.ndarray, radius: float) -> np.ndarray:
    """Whether each piece lies everywhere within ``radius`` of some zone: it runs along a zone's edge.

    The middle of each piece first, then vertices and midpoints; the pieces
    passing both are sampled every ``radius / 2``.
    """
    result = np.zeros(pieces.size, dtype=bool)
    middle = shapely.line_interpolate_point(pieces, 0.5, normalized=True)
    result[np.unique(STRtree(zones).query(middle, predicate="dwithin", distance=radius)[0])] = True
    maybe = np.flatnonzero(result)
    if maybe.size:
        result[maybe] = _all_within(pieces[maybe], zones, radius, np.inf)
    maybe = np.flatnonzero(result)
    if maybe.size:
        result[maybe] = _all_within(pieces[maybe], zones, radius, radius / 2)
    return result


def _minus_zones(pieces: np.ndarray, owner: np.ndarray, zones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line pieces less the zones they meet (one zone at a time: no union), exploded and merged per owner."""
    p_idx, z_idx = STRtree(zones).query(pieces, predicate="intersects")
    if p_idx.size == 0:
        return pieces, owner
    order = np.argsort(p_idx, kind="stable")
    p_idx, z_idx = p_idx[order], z_idx[order]
    first = np.searchsorted(p_idx, p_idx, side="left")
    rank = np.arange(p_idx.size) - first
    pieces = pieces.copy()
    for k in range(int(rank.max()) + 1):
        sel = rank == k
        pieces[p_idx[sel]] = shapely.difference(pieces[p_idx[sel]], zones[z_idx[sel]])
    order = np.argsort(owner, kind="stable")
    parts, part_owner = _explode(pieces[order], owner[order], "LineString")
    return _merge(parts, part_owner)


def _real_pieces(line_geoms: np.ndarray, zone_geoms: np.ndarray, regions: np.ndarray, tol: float, *,
                 cut: bool = False, grown: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Line pieces inside the real gaps, less those running along a zone's edge within ``tol / 2``.

    A road on the edge of a hand-drawn grid wobbles in and out of it: the bits
    outside, even beside a real gap, are covered. A road crossing a real gap
    keeps its whole length in the gap. ``cut``: the regions may reach into
    the zones, so cut the zones out of the pieces. ``grown``: the zones
    grown by ``tol / 2``, when known (a piece their union covers runs along
    an edge).
    """
    pieces, owner = _in_regions(line_geoms, regions)
    if cut and pieces.size and zone_geoms.size:
        pieces, owner = _minus_zones(pieces, owner, zone_geoms)
    if pieces.size and zone_geoms.size:
        if grown is not None:
            edge = np.zeros(pieces.size, dtype=bool)
            tree = STRtree(grown)
            middle = shapely.line_interpolate_point(pieces, 0.5, normalized=True)
            cand = np.unique(tree.query(middle, predicate="intersects")[0])
            if cand.size:
                c_i, g_i = tree.query(pieces[cand], predicate="intersects")
                edge[cand] = shapely.covered_by(pieces[cand], grouped_union(grown[g_i], c_i, cand.size))
        else:
            edge = _along_edges(pieces, zone_geoms, tol / 2)
        pieces, owner = pieces[~edge], owner[~edge]
    return pieces, owner


def _line_frame(lines: gpd.GeoDataFrame, line_pos: np.ndarray, pieces: np.ndarray, owner: np.ndarray
                ) -> gpd.GeoDataFrame:
    src = line_pos[owner] if owner.size else np.empty(0, dtype=np.intp)
    out = lines.iloc[src].copy()
    out[lines.geometry.name] = gpd.GeoSeries(pieces, crs=lines.crs).array
    out["length_m"] = shapely.length(pieces).astype(float) if pieces.size else np.empty(0)
    return out


def lines_in_gaps(lines: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, gaps: Any, *,
                  tolerance_m: float | None = None) -> gpd.GeoDataFrame:
    """The uncovered parts of lines, given the real gaps (e.g. from :func:`partition_defects`).

    The parts inside the gaps, less those running along a zone's edge within
    half the tolerance (see :func:`uncovered_lines`).

    Parameters
    ----------
    lines
        LineString/MultiLineString layer in a metric CRS.
    zones
        The zones (grids), same CRS.
    gaps
        The real gaps: polygons in no zone.
    tolerance_m
        The digitising tolerance (default ``settings.tolerance_m``).

    Returns
    -------
    geopandas.GeoDataFrame
        As :func:`uncovered_lines` returns it.
    """
    _check_crs({"lines": lines, "zones": zones, "gaps": gaps})
    tol = _tolerance(tolerance_m)
    line_geoms, line_pos = _lines(lines)
    zone_geoms, _ = _polygons(zones)
    gap_geoms, _ = _polygons(gaps, "gaps")
    pieces, owner = _real_pieces(line_geoms, zone_geoms, gap_geoms, tol)
    return _line_frame(lines, line_pos, pieces, owner)


def uncovered_lines(
    lines: gpd.GeoDataFrame,
    zones: gpd.GeoDataFrame,
    *,
    extent: Any = None,
    tolerance_m: float | None = None,
    workers: int | None = None,
) -> gpd.GeoDataFrame:
    """Parts of each line that lie outside every zone.

    With ``tolerance_m = 0`` (exact mode) the result is
    ``line.difference(shapely.union_all(zones))`` (then intersected with
    ``extent``), line by line, minus rounding artefacts (see the module
    notes). Zones are closed: a line lying exactly along a zone edge, shared
    or outer, is covered. The extent is closed too.

    With a digitising tolerance (the default, ``settings.tolerance_m``) only
    the parts inside *real* gaps count: gaps at least ``tolerance_m`` wide
    (see :mod:`gisgrid.tolerance`). A line crossing a sliver between two
    hand-drawn grids, or running along their border inside the tolerance, is
    covered; a line through a real gap is uncovered over its exact length in
    the gap.

    Parameters
    ----------
    lines
        LineString/MultiLineString layer (roads, rivers) in a metric CRS.
        None and empty geometries are skipped.
    zones
        Polygon/MultiPolygon layer (grids, villages) in the same CRS. Zones
        may overlap, leave gaps, have holes and several parts.
    extent
        Optional shapely (Multi)Polygon, GeoSeries or GeoDataFrame (its union
        is used): only the uncovered parts inside it are reported.
    tolerance_m
        Digitising tolerance in metres; 0 for exact geometry. Default
        :data:`gisgrid.settings.tolerance_m`.
    workers
        Threads (default :data:`gisgrid.settings.workers`).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per connected uncovered piece (a LineString, contiguous parts
        merged), carrying the source line's index label (repeated when a line
        has several pieces) and all its columns, with the geometry replaced by
        the piece and a ``length_m`` column (overwritten if present). Rows
        follow the order of ``lines``. Empty (with the same columns) when
        everything is covered.

    Raises
    ------
    CRSError
        A CRS is geographic, or the layers' CRSs differ.
    InputError
        Wrong geometry types, invalid zone polygons or a bad tolerance.
    """
    _check_crs({"lines": lines, "zones": zones, "extent": extent})
    tol = _tolerance(tolerance_m)
    line_geoms, line_pos = _lines(lines)
    zone_geoms, _ = _polygons(zones)
    ext = _extent(extent)

    if ext is not None and line_geoms.size:
        keep = STRtree(line_geoms).query(ext, predicate="intersects")
        keep.sort()
        line_geoms, line_pos = line_geoms[keep], line_pos[keep]

    pieces, owner = np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    if line_geoms.size and tol == 0:
        pieces, owner = _exact_uncovered(line_geoms, zone_geoms, ext)
    elif line_geoms.size:
        region = ext
        if region is None:  # everywhere near the lines: a box well beyond them and the zones
            bounds = [shapely.total_bounds(line_geoms)]
            if zone_geoms.size:
                bounds.append(shapely.total_bounds(zone_geoms))
            (x0, y0, x1, y1), margin = _bounds_box(*bounds)
            margin += 2 * tol
            region = shapely.box(x0 - margin, y0 - margin, x1 + margin, y1 + margin)
        regions, grown = gap_regions(zone_geoms, region, tol, workers=_workers(workers), cut=False)
        pieces, owner = _real_pieces(line_geoms, zone_geoms, regions, tol, cut=True, grown=grown)

    out = _line_frame(lines, line_pos, pieces, owner)
    logger.debug(
        "uncovered_lines: %d uncovered pieces on %d lines, %.1f m (tolerance %g m)",
        len(out),
        np.unique(owner).size,
        float(out["length_m"].sum()),
        tol,
    )
    return out


def _overlap_faces(geoms: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Connected pieces covered by two or more zones, and the zones over each.

    Only zones with invalid coverage edges (``flags``) can overlap another
    zone (if two zones overlap, at least one has an edge inside the other).
    The candidate pairs are the flagged zones' intersecting neighbours whose
    interiors meet; the faces are found by polygonizing the noded boundaries
    of the zones in those pairs and testing a point of each face against them.

    Returns
    -------
    faces, members
        Polygon pieces and, per piece, the sorted positions (into ``geoms``)
        of the zones covering it.
    """
    empty: tuple[np.ndarray, list[np.ndarray]] = (np.empty(0, dtype=object), [])
    if geoms.size < 2:
        return empty
    flagged = np.flatnonzero(flags)
    if flagged.size == 0:
        return empty
    tree = STRtree(geoms)
    a_idx, b = tree.query(geoms[flagged], predicate="intersects")
    a = flagged[a_idx]
    other = a != b
    a, b = a[other], b[other]
    # interiors meet <=> intersects and not touches ("overlaps" misses containment)
    meets = ~shapely.touches(geoms[a], geoms[b])
    a, b = a[meets], b[meets]
    if a.size == 0:
        return empty
    involved = np.unique(np.concatenate([a, b]))
    logger.debug(
        "partition_defects: %d zones with invalid coverage edges, %d in overlaps",
        flagged.size,
        involved.size,
    )
    sub = geoms[involved]
    noded = shapely.union_all(shapely.boundary(sub))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    faces = faces[shapely.area(faces) > 0]
    if faces.size == 0:
        return empty
    probes = shapely.point_on_surface(faces)
    f_idx, z_idx = STRtree(sub).query(probes, predicate="within")
    counts = np.bincount(f_idx, minlength=faces.size)
    order = np.lexsort((involved[z_idx], f_idx))
    f_idx, z_pos = f_idx[order], involved[z_idx][order]
    split = np.split(z_pos, np.cumsum(counts)[:-1])
    over = np.flatnonzero(counts >= 2)
    if over.size == 0:
        return empty
    keys = [tuple(split[i]) for i in over]
    key_codes, key_ids = np.unique(np.array([",".join(map(str, k)) for k in keys]), return_inverse=True)
    merged = grouped_union(faces[over], key_ids, key_codes.size)
    first = np.zeros(key_codes.size, dtype=np.intp)
    first[key_ids[::-1]] = np.arange(key_ids.size)[::-1]
    pieces, owner = _explode(merged, np.arange(key_codes.size), "Polygon")
    members = [np.asarray(keys[first[k]]) for k in owner]
    return pieces, members


def partition_defects(
    zones: gpd.GeoDataFrame,
    *,
    extent: Any = None,
    id_column: str | None = None,
    min_area_m2: float | None = None,
    tolerance_m: float | None = None,
    split_by: Any = None,
    split_id_column: str | None = None,
    workers: int | None = None,
) -> gpd.GeoDataFrame:
    """Gaps between and overlaps of zones within an extent.

    With ``tolerance_m = 0`` (exact mode) every gap and overlap piece is
    reported with its exact shape; pieces under ``min_area_m2`` are flagged
    ``sliver``.

    With a digitising tolerance (the default, ``settings.tolerance_m``) a
    piece is judged by its width (:mod:`gisgrid.tolerance`): the part of it at
    least ``tolerance_m`` wide is a real gap or overlap, reported with that
    shape (its sliver tails cut off); everything narrower is a sliver row
    (``sliver`` True), kept so that the noise can be counted and located.

    Parameters
    ----------
    zones
        Polygon/MultiPolygon layer in a metric CRS.
    extent
        Shapely (Multi)Polygon, GeoSeries or GeoDataFrame (its union) that the
        zones should tile. Default: the outline of the zones, so only holes
        enclosed by zones count as gaps.
    id_column
        Column with the zone ids to report; default the index.
    min_area_m2
        Pieces smaller than this are flagged ``sliver``. Default
        :data:`gisgrid.settings.sliver_area_m2`.
    tolerance_m
        Digitising tolerance in metres; 0 for exact geometry. Default
        :data:`gisgrid.settings.tolerance_m`.
    split_by
        Optional polygons (GeoDataFrame or GeoSeries, e.g. the villages): with
        a tolerance, real gaps and overlaps are split at their borders (a part
        narrower than the tolerance stays with the largest part) and every row
        says which polygon it lies in (``split_id``).
    split_id_column
        Column of ``split_by`` naming each polygon (default its index).
    workers
        Threads (default :data:`gisgrid.settings.workers`).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per connected gap or overlap piece (the slivers last), columns ``kind``
        (``'gap'``/``'overlap'``), ``zone_ids`` (a tuple of ids as text,
        sorted: overlap, the zones covering the piece; gap, the zones
        touching it), ``n_zones`` (zones over the piece, 0 for gaps),
        ``area_m2``, ``sliver``, ``split_id`` (the ``split_by`` polygon a
        piece lies in; None outside them or without ``split_by``) and
        ``geometry``. In
        exact mode a region covered by three zones is its own piece with
        three ids; with a tolerance overlaps are reported per pair of zones.
        Sorted by kind, ids, area (slivers: by kind).

    Raises
    ------
    CRSError
        The CRS is geographic or the extent's CRS differs.
    SchemaError
        ``id_column`` is not a column of ``zones``.
    InputError
        Wrong geometry types, invalid zone polygons or a bad tolerance.
    """
    crs = _check_crs({"zones": zones, "extent": extent})
    min_area = settings.sliver_area_m2 if min_area_m2 is None else float(min_area_m2)
    tol = _tolerance(tolerance_m)
    _check_id_column(zones, id_column)
    geoms, pos = _polygons(zones)
    ids = _id_array(zones, id_column, pos)
    if tol > 0:
        frame = _tolerant_defects(geoms, ids, extent, (split_by, split_id_column), tol, min_area, _workers(workers))
        return _defect_frame(frame, crs)
    ext = _extent(extent)
    union, flags = _union_and_flags(geoms)

    # gaps
    if ext is None:
        shells = shapely.polygons(shapely.get_exterior_ring(shapely.get_parts(union)))
        region = shapely.union_all(shells) if shells.size else shapely.MultiPolygon()
    else:
        region = ext
    gaps, _ = _explode(
        np.array([shapely.difference(region, union)], dtype=object), np.zeros(1, np.intp), "Polygon"
    )
    gap_ids: list[tuple[str, ...]] = []
    if gaps.size:
        g_idx, z_idx = STRtree(geoms).query(gaps, predicate="intersects")
        order = np.lexsort((z_idx, g_idx))
        g_idx, z_idx = g_idx[order], z_idx[order]
        split = np.split(z_idx, np.cumsum(np.bincount(g_idx, minlength=gaps.size))[:-1])
        gap_ids = [_join_ids(ids[s]) for s in split]

    # overlaps
    over, members = _overlap_faces(geoms, flags)
    if ext is not None and over.size:
        over, keep = _clip_to(over, np.arange(over.size), ext, "Polygon")
        members = [members[k] for k in keep]
    over_ids = [_join_ids(ids[m]) for m in members]
    n_over = np.array([len(m) for m in members], dtype=np.int64)

    geometry = np.concatenate([gaps, over])
    area = shapely.area(geometry).astype(float) if geometry.size else np.empty(0)
    frame = pd.DataFrame(
        {
            "kind": pd.Series(["gap"] * gaps.size + ["overlap"] * over.size, dtype=object),
            "zone_ids": pd.Series(gap_ids + over_ids, dtype=object),
            "n_zones": np.concatenate([np.zeros(gaps.size, np.int64), n_over]),
            "area_m2": area,
            "sliver": area < min_area,
            "split_id": _split_of(geometry, *_split_rows(split_by, split_id_column)),
            "geometry": geometry,
        }
    )
    return _defect_frame(frame, crs)


def _defect_frame(frame: pd.DataFrame, crs: Any) -> gpd.GeoDataFrame:
    # real pieces by kind, ids and size; the (many) slivers after them, by kind, in the order found
    real = ~frame["sliver"].to_numpy(dtype=bool)
    head = frame[real]
    head = head.assign(_ids=[",".join(v) for v in head["zone_ids"]]).sort_values(
        ["kind", "_ids", "area_m2"], ascending=[True, True, False], kind="stable").drop(columns="_ids")
    tail = frame[~real].sort_values("kind", kind="stable")
    frame = pd.concat([head, tail], ignore_index=True)
    geometry = frame.pop("geometry").to_numpy(dtype=object)
    out = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, crs=crs).array, crs=crs)
    real = ~out["sliver"].to_numpy(dtype=bool)
    gap = (out["kind"] == "gap").to_numpy()
    logger.debug(
        "partition_defects: %d gaps (%.1f m2), %d overlap pieces (%.1f m2), %d slivers (%.1f m2)",
        int((gap & real).sum()),
        float(out.loc[gap & real, "area_m2"].sum()),
        int((~gap & real).sum()),
        float(out.loc[~gap & real, "area_m2"].sum()),
        int((~real).sum()),
        float(out.loc[~real, "area_m2"].sum()),
    )
    return out


def _split_rows(split_by: Any, id_column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``split_by`` polygons and their ids (none when not given)."""
    if split_by is None:
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    geoms = _geometry_values(split_by)
    ok = _present(geoms)
    if isinstance(split_by, gpd.GeoDataFrame) and id_column is not None:
        if id_column not in split_by.columns:
            raise SchemaError(f"split_by has no column {id_column!r}.", layer="split_by", column=id_column,
                              fix=f"pass one of {list(split_by.columns)} or None to use the index.")
        labels = split_by[id_column].to_numpy(dtype=object)
    elif isinstance(split_by, pd.Series | pd.DataFrame):
        labels = split_by.index.to_numpy(dtype=object)
    else:
        labels = np.arange(geoms.size).astype(object)
    geoms, labels = geoms[ok], labels[ok]
    if geoms.size:
        _check_types(geoms, None, _POLYGONAL, "split_by", "Polygon/MultiPolygon")
        bad = np.flatnonzero(~shapely.is_valid(geoms))
        if bad.size:
            raise InputError(f"split_by polygon {labels[bad[0]]} is invalid: "
                             f"{shapely.is_valid_reason(geoms[bad[0]])}.", layer="split_by",
                             fix="repair it with shapely.make_valid.")
    return geoms, labels


def _split(parts: np.ndarray, owner: np.ndarray, geoms: np.ndarray, labels: np.ndarray, tol: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut pieces at the borders of the split polygons; a part narrower than ``tol`` joins its piece's largest part.

    Returns
    -------
    parts, owner, split_id
        The parts (the part of a piece outside every polygon keeps ``split_id`` None).
    """
    if parts.size == 0 or geoms.size == 0:
        return parts, owner, np.full(parts.size, None, dtype=object)
    p_idx, g_idx = STRtree(geoms).query(parts, predicate="intersects")
    inside = shapely.covered_by(parts[p_idx], geoms[g_idx])
    whole = np.zeros(parts.size, dtype=bool)
    whole[p_idx[inside]] = True
    label = np.full(parts.size, None, dtype=object)
    label[p_idx[inside]] = labels[g_idx[inside]]
    cut = ~whole[p_idx]
    cp, cg = p_idx[cut], g_idx[cut]
    out_parts, out_owner, out_label = [parts[whole]], [owner[whole]], [label[whole]]
    todo = np.flatnonzero(~whole)
    if todo.size:
        sub, s_idx = polygon_parts(shapely.intersection(parts[cp], geoms[cg]))
        s_piece, s_label = cp[s_idx], labels[cg[s_idx]]
        rest, r_piece = polygon_parts(shapely.difference(parts[todo], grouped_union(
            geoms[cg], np.searchsorted(todo, cp), todo.size)), todo)
        sub = np.concatenate([sub, rest])
        s_piece = np.concatenate([s_piece, r_piece])
        s_label = np.concatenate([s_label, np.full(rest.size, None, dtype=object)])
        thin = shapely.is_empty(opening(sub, tol))
        # the largest part of each piece takes its thin parts
        area = shapely.area(sub)
        order = np.lexsort((-area, s_piece))
        biggest = np.full(parts.size, -1)
        biggest[s_piece[order][::-1]] = order[::-1]
        host = np.where(thin, biggest[s_piece], np.arange(sub.size))
        keep = np.unique(host)
        merged = grouped_union(sub, np.searchsorted(keep, host), keep.size)
        out_parts.append(merged)
        out_owner.append(owner[s_piece[keep]])
        out_label.append(s_label[keep])
    return np.concatenate(out_parts), np.concatenate(out_owner), np.concatenate(out_label)


def _outline(geoms: np.ndarray, tol: float) -> shapely.Geometry:
    """The zones' outline with slivers closed: shells of the union of the zones grown by tol / 2, shrunk back."""
    r = tol / 2.0
    grown = shapely.union_all(shapely.buffer(geoms, r, quad_segs=8))
    parts = shapely.get_parts(grown)
    shells = shapely.polygons(shapely.get_exterior_ring(parts))
    return shapely.buffer(shapely.union_all(shells), -r, quad_segs=8)


def _id_ranks(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids as text and each one's rank in :func:`_join_ids` order (numbers numerically, then text)."""
    text = np.array([str(v) for v in ids], dtype=object)
    keys = [_sort_key(v) for v in ids]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return text, rank


def _joined(groups: np.ndarray, members: np.ndarray, n: int, text: np.ndarray, rank: np.ndarray
            ) -> list[tuple[str, ...]]:
    """Per group 0..n-1, the distinct member ids in :func:`_join_ids` order."""
    order = np.lexsort((rank[members], groups))
    groups, members = groups[order], members[order]
    keep = np.ones(groups.size, dtype=bool)
    keep[1:] = (groups[1:] != groups[:-1]) | (members[1:] != members[:-1])
    groups, members = groups[keep], members[keep]
    names = text[members].tolist()
    bounds = np.searchsorted(groups, np.arange(n + 1)).tolist()
    return [tuple(names[bounds[i]:bounds[i + 1]]) for i in range(n)]


def _touching(pieces: np.ndarray, zones: np.ndarray, ranked: tuple[np.ndarray, np.ndarray],
              distance: float = 0.0) -> list[tuple[str, ...]]:
    """Ids of the zones touching (or within ``distance`` of) each piece."""
    if pieces.size == 0 or zones.size == 0:
        return [()] * pieces.size
    if distance > 0:
        p_idx, z_idx = STRtree(zones).query(pieces, predicate="dwithin", distance=distance)
    else:
        p_idx, z_idx = STRtree(zones).query(pieces, predicate="intersects")
    return _joined(p_idx, z_idx, pieces.size, *ranked)


def _tolerant_defects(geoms: np.ndarray, ids: np.ndarray, extent: Any, split: tuple[Any, str | None],
                      tol: float, min_area: float, workers: int) -> pd.DataFrame:
    """Real gaps and overlaps (at least ``tol`` wide) and the slivers, one row per piece."""
    ext = (_outline(geoms, tol) if geoms.size else shapely.MultiPolygon()) if extent is None else _extent(extent)
    split_geoms, split_ids = _split_rows(*split)
    rows: list[pd.DataFrame] = []
    ranked = _id_ranks(ids)
    clock = Clock(logger)

    def add(kind: str, pieces: np.ndarray, zone_ids: list[tuple[str, ...]], n_zones: Any, sliver: Any,
            extent_ids: np.ndarray) -> None:
        area = shapely.area(pieces) if pieces.size else np.empty(0)
        rows.append(pd.DataFrame({
            "kind": kind, "zone_ids": pd.Series(zone_ids, dtype=object), "n_zones": n_zones,
            "area_m2": area.astype(float), "sliver": sliver,
            "split_id": pd.Series(list(extent_ids), dtype=object), "geometry": pieces,
        }))

    def where(pieces: np.ndarray) -> np.ndarray:
        return _split_of(pieces, split_geoms, split_ids)

    # gaps, tile by tile
    pieces = gaps_by_tiles(geoms, ext, workers=workers)
    clock.lap(f"partition_defects: {pieces.size} gap pieces")
    real = opening(pieces, tol, workers=workers)
    clock.lap("partition_defects: gaps opened")
    has = ~shapely.is_empty(real)
    noise = np.flatnonzero(~has)
    add("gap", pieces[noise], _touching(pieces[noise], geoms, ranked), 0, True, where(pieces[noise]))
    if has.any():
        hit = np.flatnonzero(has)
        parts, owner = polygon_parts(real[hit], hit)
        parts, owner, label = _split(parts, owner, split_geoms, split_ids, tol)
        add("gap", parts, _touching(parts, geoms, ranked, tol), 0, shapely.area(parts) < min_area, label)
        tails, _ = polygon_parts(shapely.difference(pieces[hit], real[hit]))
        add("gap", tails, _touching(tails, geoms, ranked), 0, True, where(tails))
    clock.lap("partition_defects: gaps described")

    # overlaps, pair by pair
    pieces, a, b = overlap_pairs(geoms, workers=workers)
    clock.lap(f"partition_defects: {pieces.size} overlap pieces")
    if pieces.size:
        text, rank = ranked
        first = np.where(rank[a] <= rank[b], a, b)
        second = np.where(rank[a] <= rank[b], b, a)
        # a pair's ids as a tuple, and as one text key to group by (NUL never occurs in an id)
        pair_ids = list(zip(text[first].tolist(), text[second].tolist(), strict=True))
        pair_keys = list(text[first] + "\x00" + text[second])
        pair_of_key = dict(zip(pair_keys, pair_ids, strict=True))
        real = opening(pieces, tol, workers=workers)
        clock.lap("partition_defects: overlaps opened")
        has = ~shapely.is_empty(real)
        noise = np.flatnonzero(~has)
        add("overlap", pieces[noise], [pair_ids[i] for i in noise], 2, True, where(pieces[noise]))
        if has.any():
            hit = np.flatnonzero(has)
            tails, t_owner = polygon_parts(shapely.difference(pieces[hit], real[hit]), hit)
            add("overlap", tails, [pair_ids[i] for i in t_owner], 2, True, where(tails))
            # one piece per pair and connected part, inside the extent, split like the gaps
            codes, pair_of = np.unique(np.array([pair_keys[i] for i in hit], dtype=object), return_inverse=True)
            merged = shapely.intersection(grouped_union(real[hit], pair_of, codes.size), ext)
            parts, owner = polygon_parts(merged)
            parts, owner, label = _split(parts, owner, split_geoms, split_ids, tol)
            add("overlap", parts, [pair_of_key[codes[k]] for k in owner], 2, shapely.area(parts) < min_area, label)
    if not rows:
        add("gap", np.empty(0, dtype=object), [], 0, True, np.empty(0, dtype=object))
    clock.lap("partition_defects: overlaps described")
    out = pd.concat(rows, ignore_index=True)
    out["n_zones"] = out["n_zones"].astype(np.int64)
    out["sliver"] = out["sliver"].astype(bool)
    return out


def _split_of(pieces: np.ndarray, ext_geoms: np.ndarray, ext_ids: np.ndarray) -> np.ndarray:
    """Id of the split polygon holding each piece's representative point (None outside all)."""
    out = np.full(pieces.size, None, dtype=object)
    if pieces.size == 0 or ext_geoms.size == 0:
        return out
    # a point of the piece's outline is enough to place a sliver; a real piece gets a point on its surface
    small = shapely.area(pieces) < 100.0
    probes = np.empty(pieces.size, dtype=object)
    probes[small] = shapely.get_point(shapely.get_exterior_ring(pieces[small]), 0)
    probes[~small] = shapely.point_on_surface(pieces[~small])
    e_idx, p_idx = STRtree(probes).query(ext_geoms, predicate="intersects")  # the extents prepared
    order = np.lexsort((e_idx, p_idx))
    p_idx, e_idx = p_idx[order], e_idx[order]
    first = np.unique(p_idx, return_index=True)[1]
    out[p_idx[first]] = ext_ids[e_idx[first]]
    return out


def _point_inputs(points: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, id_column: str | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of the point functions: zone polygons, their ids, the points, the present points."""
    _check_crs({"points": points, "zones": zones})
    _check_id_column(zones, id_column)
    zone_geoms, zpos = _polygons(zones)
    pts = _geometry_values(points)
    return zone_geoms, _id_array(zones, id_column, zpos), pts, _present(pts)


def points_in_zones(
    points: gpd.GeoDataFrame,
    zones: gpd.GeoDataFrame,
    *,
    id_column: str | None = None,
) -> pd.Series:
    """The zone containing each point.

    Parameters
    ----------
    points
        Point layer in a metric CRS.
    zones
        Polygon/MultiPolygon layer in the same CRS.
    id_column
        Column of ``zones`` with the ids to report; default the index.

    Returns
    -------
    pandas.Series
        Indexed like ``points`` (object dtype, named ``id_column`` or
        ``'zone_id'``): the id of the zone covering the point (a point on an
        edge counts), None when no zone covers it or the geometry is missing,
        and a tuple of the sorted ids (as text) when several zones do.

    Raises
    ------
    CRSError
        A CRS is geographic or the two CRSs differ.
    SchemaError
        ``id_column`` is not a column of ``zones``.
    """
    zone_geoms, ids, pts, present = _point_inputs(points, zones, id_column)
    result = np.full(pts.size, None, dtype=object)
    if present.size and zone_geoms.size:
        p_idx, z_idx = STRtree(zone_geoms).query(pts[present], predicate="covered_by")
        counts = np.bincount(p_idx, minlength=present.size)
        one = counts == 1
        order = np.argsort(p_idx, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        z_sorted = z_idx[order]
        single = np.flatnonzero(one)
        result[present[single]] = ids[z_sorted[first[single]]]
        for i in np.flatnonzero(counts > 1):
            result[present[i]] = _join_ids(ids[z_sorted[first[i] : first[i] + counts[i]]])
    return pd.Series(result, index=points.index, dtype=object, name=id_column or "zone_id")


def nearest_zones(
    points: gpd.GeoDataFrame,
    zones: gpd.GeoDataFrame,
    *,
    id_column: str | None = None,
    max_distance_m: float,
) -> pd.DataFrame:
    """The nearest zone of each point, within a distance.

    For points that fall in a sliver between hand-drawn zones: such a point
    belongs to the nearest zone (ties: the lowest id).

    Parameters
    ----------
    points, zones, id_column
        As for :func:`points_in_zones`.
    max_distance_m
        Zones farther than this are not considered.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``points``: ``zone_id`` (None when no zone is near
        enough or the geometry is missing) and ``distance_m``.
    """
    zone_geoms, ids, pts, present = _point_inputs(points, zones, id_column)
    zone = np.full(pts.size, None, dtype=object)
    dist = np.full(pts.size, np.nan)
    if present.size and zone_geoms.size:
        (p_idx, z_idx), d = STRtree(zone_geoms).query_nearest(
            pts[present], max_distance=max_distance_m, return_distance=True, all_matches=True)
        order = np.lexsort((ids[z_idx].astype(str), d, p_idx))
        p_idx, z_idx, d = p_idx[order], z_idx[order], d[order]
        first = np.unique(p_idx, return_index=True)[1]
        zone[present[p_idx[first]]] = ids[z_idx[first]]
        dist[present[p_idx[first]]] = d[first]
    return pd.DataFrame({"zone_id": pd.Series(zone, dtype=object), "distance_m": dist}, index=points.index)


def zones_at(points: np.ndarray, tree: STRtree, ids: np.ndarray) -> list[tuple[str, ...]]:
    """Which zones is each point in: the one "which zone is this in" of the package.

    Parameters
    ----------
    points
        Point geometries (array).
    tree
        An ``STRtree`` of the zone polygons.
    ids
        The zone ids, in the tree's order.

    Returns
    -------
    list of tuple of str
        Per point, the sorted ids of the zones it lies in or on; ``()`` for none.
    """
    out: list[tuple[str, ...]] = [()] * len(points)
    if not len(points) or not len(ids):
        return out
    pi, gi = tree.query(np.asarray(points, dtype=object), predicate="intersects")
    if not len(pi):
        return out
    hits = pd.DataFrame({"p": pi, "id": np.asarray(ids, dtype=object)[gi]}).drop_duplicates()
    hits = hits.sort_values(["p", "id"], kind="stable")
    p = hits["p"].to_numpy()
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    for pos, chunk in zip(p[starts], np.split(hits["id"].to_numpy(dtype=object), starts[1:]), strict=True):
        out[int(pos)] = tuple(chunk)
    return out
