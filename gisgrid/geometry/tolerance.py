"""The digitising tolerance: real gaps and overlaps versus the noise of hand-drawn borders.

Township layers are drawn by hand, each grid on its own, so two neighbours'
borders differ by decimetres all along their length. Between them lie
thousands of slivers: thin gaps and thin overlaps that no one meant. This
module tells them from real defects, the way GEOS, PostGIS
(``ST_CoverageClean``) and QGIS do for coverage cleaning: by **width**.

The width of a piece is twice the radius of its maximum inscribed circle
(:func:`widths`). A piece narrower than the tolerance ``t`` is noise; the
part of a piece that is at least ``t`` wide is real. That part is the
morphological *opening* of the piece with a disc of radius ``t / 2``
(:func:`opening`): erode by ``t / 2`` (what is left is the set of centres of
the discs that fit), then dilate back. A real gap with sliver tails running
off along the borders keeps its real shape and loses the tails; a 1 m strip
400 m long opens to nothing.

For a region ``E`` and zones ``Z`` the opening of the gaps ``E - ∪Z`` is,
exactly, ``((E ⊖ r) - ∪(Z ⊕ r)) ⊕ r`` (:func:`gap_regions`). That form never
builds the union of the hand-drawn zones themselves (slow: every wobbly
border crosses its neighbour's hundreds of times) but only the union of the
dilated zones, whose borders lie well inside one another and union fast.

Everything here is pure geometry on shapely arrays; inputs are never
modified. Work that splits into independent parts (one extent, one chunk of
pairs) runs in threads: shapely releases the GIL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import shapely
from shapely import STRtree

from gisgrid.geometry.linework import grouped

__all__ = [
    "Clock",
    "clean_coverage",
    "gap_regions",
    "gaps_by_extent",
    "gaps_by_tiles",
    "grouped_union",
    "opening",
    "overlap_pairs",
    "parallel_chunks",
    "parallel_union",
    "polygon_parts",
    "widths",
]

logger = logging.getLogger(__name__)

_EMPTY_POLYGON = shapely.Polygon()
_EMPTY = shapely.GeometryCollection()
#: Arc segments per quarter circle in the erosions and dilations: the chord
#: error is r * (1 - cos(pi / 32)), 0.5% of the radius.
QUAD_SEGS = 8

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
class Clock:
    """Debug-log how long each stage took (where the time goes, for the benchmarks)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.t = time.perf_counter()

    def lap(self, what: str) -> None:
        """Log ``what`` with the seconds since the last lap."""
        now = time.perf_counter()
        self.log.debug("%s (%.2f s)", what, now - self.t)
        self.t = now


def parallel_chunks(fn: Callable[[np.ndarray], T], n: int, *, workers: int = 1,
                    chunks_per_worker: int = 4) -> list[T]:
    """Run ``fn`` on consecutive chunks of ``range(n)``, in threads when ``workers > 1``.

    Parameters
    ----------
    fn
        Takes an integer array of positions, returns anything.
    n
        Number of items.
    workers
        Threads; 1 runs in the calling thread.
    chunks_per_worker
        Chunks per thread (smaller chunks balance uneven work).

    Returns
    -------
    list
        ``fn``'s results in chunk order.
    """
    if n == 0:
        return []
    k = 1 if workers <= 1 else min(n, workers * chunks_per_worker)
    parts = np.array_split(np.arange(n), k)
    if k == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, parts))


def polygon_parts(geoms: np.ndarray, owner: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Explode geometries (collections included) into Polygons of positive area.

    Returns
    -------
    parts, owner
        The polygons and, for each, ``owner`` of the geometry it came from
        (its position when ``owner`` is None).
    """
    geoms = np.asarray(geoms, dtype=object)
    owner = np.arange(len(geoms)) if owner is None else np.asarray(owner)
    parts, idx = shapely.get_parts(geoms, return_index=True)
    # a collection may hold multi-parts: explode once more
    parts, idx2 = shapely.get_parts(parts, return_index=True)
    idx = idx[idx2]
    ok = shapely.get_type_id(parts) == int(shapely.GeometryType.POLYGON)
    ok[ok] = shapely.area(parts[ok]) > 0
    return parts[ok], owner[idx[ok]]


def grouped_union(geoms: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Union of ``geoms`` per group, vectorised by group size (:func:`gisgrid.geometry.linework.grouped`).

    Parameters
    ----------
    geoms
        Geometries, one per member.
    groups
        Group number (``0 <= g < n_groups``) of each member.
    n_groups
        Number of groups.

    Returns
    -------
    numpy.ndarray
        One geometry per group; empty groups get an empty collection.
    """
    return grouped(np.asarray(geoms, dtype=object), groups, n_groups, shapely.union_all, _EMPTY)


def parallel_union(geoms: np.ndarray, *, workers: int = 1) -> shapely.Geometry:
    """``union_all`` of many polygons: one spatial strip per thread, then the strips together."""
    geoms = np.asarray(geoms, dtype=object)
    if workers <= 1 or geoms.size < 64:
        return shapely.union_all(geoms)
    xy = shapely.get_coordinates(shapely.centroid(geoms))
    order = np.argsort(xy[:, 0], kind="stable")
    parts = parallel_chunks(lambda pos: shapely.union_all(geoms[order[pos]]), geoms.size, workers=workers,
                            chunks_per_worker=1)
    return shapely.union_all(np.array(parts, dtype=object))


# --------------------------------------------------------------------------- width
def widths(geoms: np.ndarray, *, precision_m: float = 0.01) -> np.ndarray:
    """Width of each polygon: twice the radius of its maximum inscribed circle.

    Parameters
    ----------
    geoms
        Polygons (object array).
    precision_m
        Distance tolerance of the circle's search (GEOS's ``tolerance``).

    Returns
    -------
    numpy.ndarray
        Widths in the units of the coordinates; 0 for empty geometries.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(len(geoms))
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        out[ok] = 2.0 * shapely.length(shapely.maximum_inscribed_circle(geoms[ok], precision_m))
    return out


def _substantial(core: np.ndarray, owner: np.ndarray, width_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The parts of the cores (the centres of the discs that fit) covering at least ``width_m²``, per owner.

    A piece wider than the tolerance at a single spot -- one vertex of a
    hand-drawn border thrown off further than the rest -- has a core of a
    few square decimetres; a real gap at least twice the tolerance wide has
    a core of at least ``width_m²`` (its core is more than ``width_m`` wide
    both ways), and so has a long strip barely wider than the tolerance.
    """
    parts, idx = polygon_parts(core, owner)
    keep = shapely.area(parts) >= width_m * width_m
    parts, idx = parts[keep], idx[keep]
    owners = np.unique(idx)
    return grouped_union(parts, np.searchsorted(owners, idx), owners.size), owners


def opening(pieces: np.ndarray, width_m: float, *, workers: int = 1) -> np.ndarray:
    """The part of each polygon that is at least ``width_m`` wide.

    The morphological opening with a disc of radius ``r = width_m / 2``,
    with the corners it rounds off given back: the part of the piece within
    ``r`` of the opening (so a rectangle keeps its exact area, and a sliver
    tail keeps just ``r`` of its root). Nothing outside the piece is ever
    added. A part whose disc centres cover less than ``width_m²`` is a
    single wide spot of a sliver, not a defect (see :func:`_substantial`).

    Parameters
    ----------
    pieces
        Polygons (object array).
    width_m
        The tolerance; 0 returns the pieces unchanged.
    workers
        Threads for the erosion.

    Returns
    -------
    numpy.ndarray
        One (Multi)Polygon per piece, empty where the whole piece is narrower
        than ``width_m``.
    """
    pieces = np.asarray(pieces, dtype=object)
    if width_m <= 0:
        return pieces.copy()
    r = width_m / 2.0
    out = np.full(len(pieces), _EMPTY_POLYGON, dtype=object)
    # a disc of radius r needs pi r^2 of area
    cand = np.flatnonzero(shapely.area(pieces) >= 0.99 * np.pi * r * r)
    if cand.size == 0:
        return out
    core = np.concatenate(parallel_chunks(lambda pos: shapely.buffer(pieces[cand[pos]], -r, quad_segs=QUAD_SEGS),
                                          cand.size, workers=workers))
    core, cand = _substantial(core, cand, width_m)
    if cand.size:
        # dilate by 2r, not r: the opening rounds off every corner, and the piece within r of the
        # opening gives the corners back (a square gap keeps its area; a sliver tail keeps only r of its root)
        grown = shapely.buffer(core, 2 * r, quad_segs=QUAD_SEGS)
        real = shapely.intersection(grown, pieces[cand])
        parts, owner = polygon_parts(real, cand)
        if parts.size:
            merged = grouped_union(parts, np.searchsorted(cand, owner), cand.size)
            keep = ~shapely.is_empty(merged)
            out[cand[keep]] = merged[keep]
    return out


# --------------------------------------------------------------------------- gaps
def gaps_by_extent(zones: np.ndarray, extents: np.ndarray, *, workers: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Exact gaps: the parts of each extent polygon in no zone.

    Each extent is differenced with the union of the zones that meet it, so
    the work splits by extent and runs in threads.

    Parameters
    ----------
    zones, extents
        Valid polygons (object arrays).
    workers
        Threads.

    Returns
    -------
    pieces, extent_index
        Connected gap polygons and the position of the extent each lies in.
    """
    zones = np.asarray(zones, dtype=object)
    extents = np.asarray(extents, dtype=object)
    if extents.size == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    if zones.size == 0:
        return polygon_parts(extents)
    e_idx, z_idx = STRtree(zones).query(extents, predicate="intersects")
    load = np.bincount(e_idx, minlength=extents.size)
    order = np.argsort(-load, kind="stable")  # balance the chunks: many zones first

    def run(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mine = order[pos]
        local = np.full(extents.size, -1)
        local[mine] = np.arange(mine.size)
        sel = local[e_idx] >= 0
        unions = grouped_union(zones[z_idx[sel]], local[e_idx[sel]], mine.size)
        return polygon_parts(shapely.difference(extents[mine], unions), mine)

    done = parallel_chunks(run, extents.size, workers=workers)
    pieces = np.concatenate([d[0] for d in done])
    owner = np.concatenate([d[1] for d in done])
    order = np.argsort(owner, kind="stable")
    return pieces[order], owner[order]


def gaps_by_tiles(zones: np.ndarray, extent: shapely.Geometry, *, zones_per_tile: int = 64,
                  workers: int = 1) -> np.ndarray:
    """Exact gaps of one large extent: ``extent - ∪zones``, tile by tile.

    The extent's bounding box is cut into tiles holding about
    ``zones_per_tile`` zones each; each tile's gaps are its part of the
    extent minus the union of the zones clipped to the tile (in threads), and
    the pieces cut by tile edges are joined again. No union ever spans the
    whole town, which on hand-drawn borders is slow.

    Parameters
    ----------
    zones
        Valid polygons.
    extent
        A valid polygonal geometry.
    zones_per_tile
        The tile size, in zones.
    workers
        Threads.

    Returns
    -------
    numpy.ndarray
        The connected gap polygons.
    """
    zones = np.asarray(zones, dtype=object)
    if shapely.is_empty(extent):
        return np.empty(0, dtype=object)
    n = max(1, int(np.ceil(np.sqrt(zones.size / max(zones_per_tile, 1)))))
    if n == 1:
        return gaps_by_extent(zones, np.array([extent], dtype=object), workers=workers)[0]
    x0, y0, x1, y1 = extent.bounds
    xs, ys = np.linspace(x0, x1, n + 1), np.linspace(y0, y1, n + 1)
    mx, my = np.meshgrid(np.arange(n), np.arange(n))
    gx, gy = mx.ravel(), my.ravel()
    tiles = shapely.box(xs[gx], ys[gy], xs[gx + 1], ys[gy + 1])
    t_idx, z_idx = STRtree(zones).query(tiles, predicate="intersects")
    t_ext, _ = STRtree(np.array([extent], dtype=object)).query(tiles, predicate="intersects")
    shapely.prepare(tiles)
    inside = shapely.contains_properly(tiles[t_idx], zones[z_idx])

    def run(pos: np.ndarray) -> np.ndarray:
        mine = np.intersect1d(pos, t_ext)
        local = np.full(tiles.size, -1)
        local[mine] = np.arange(mine.size)
        sel = local[t_idx] >= 0
        parts = zones[z_idx[sel]].copy()
        cut = ~inside[sel]
        parts[cut] = shapely.intersection(parts[cut], tiles[t_idx[sel][cut]])
        unions = grouped_union(parts, local[t_idx[sel]], mine.size)
        area = shapely.intersection(tiles[mine], extent)
        return polygon_parts(shapely.difference(area, unions))[0]

    pieces = np.concatenate(parallel_chunks(run, tiles.size, workers=workers))
    # join the pieces the tile edges cut
    b = shapely.bounds(pieces)
    edge = np.zeros(pieces.size, dtype=bool)
    for cuts, lo, hi in ((xs[1:-1], b[:, 0], b[:, 2]), (ys[1:-1], b[:, 1], b[:, 3])):
        first = np.searchsorted(cuts, lo, side="left")
        edge |= (first < cuts.size) & (cuts[np.minimum(first, cuts.size - 1)] <= hi)
    if edge.any():
        joined = polygon_parts(np.array([shapely.union_all(pieces[edge])], dtype=object))[0]
        pieces = np.concatenate([pieces[~edge], joined])
    return pieces


def gap_regions(zones: np.ndarray, extent: shapely.Geometry, width_m: float, *, workers: int = 1,
                cut: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The real gaps of ``extent - ∪zones``: the opening, without the union of the zones.

    ``open(E - ∪Z) = ((E ⊖ r) - ∪(Z ⊕ r)) ⊕ r``; like :func:`opening` the
    corners come back (dilate by ``2r``), then the result is intersected
    with the extent and cut by the few zones near each region, so the
    regions are exactly in no zone.

    Parameters
    ----------
    zones
        Valid polygons.
    extent
        The region the zones should cover (a polygonal geometry).
    width_m
        The tolerance (> 0).
    workers
        Threads for the dilation.
    cut
        Cut the zones out of the regions (without: the regions reach up to
        ``width_m / 2`` into the zones beside them, which a caller that cuts
        lines by the zones anyway need not pay for).

    Returns
    -------
    regions : numpy.ndarray
        Polygons: the connected real gaps.
    grown : numpy.ndarray
        The zones (those meeting the extent) grown by ``width_m / 2``.
    """
    zones = np.asarray(zones, dtype=object)
    r = width_m / 2.0
    core = shapely.buffer(extent, -r, quad_segs=QUAD_SEGS)
    grown = np.empty(0, dtype=object)
    if zones.size:
        near = zones[STRtree(zones).query(extent, predicate="intersects")]
        grown = np.concatenate(parallel_chunks(
            lambda pos: shapely.buffer(near[pos], r, quad_segs=QUAD_SEGS), near.size, workers=workers))
        if grown.size:
            core = shapely.difference(core, parallel_union(grown, workers=workers))
    cores, _ = polygon_parts(np.array([core], dtype=object))
    cores = cores[shapely.area(cores) >= width_m * width_m]  # see _substantial()
    if cores.size == 0:
        return cores, grown
    regions = shapely.intersection(shapely.buffer(cores, 2 * r, quad_segs=QUAD_SEGS), extent)  # see opening()
    if zones.size and cut:
        c_idx, z_idx = STRtree(zones).query(regions, predicate="intersects")
        if c_idx.size:
            local = grouped_union(zones[z_idx], c_idx, regions.size)
            regions = shapely.difference(regions, local)
    parts, _ = polygon_parts(regions)
    return parts, grown


# --------------------------------------------------------------------------- overlaps
def overlap_pairs(zones: np.ndarray, *, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every piece where two zones overlap, with the pair.

    Parameters
    ----------
    zones
        Valid polygons.
    workers
        Threads for the pairwise intersections.

    Returns
    -------
    pieces, a, b
        Polygon pieces and the positions (``a < b``) of the two zones over each.
    """
    zones = np.asarray(zones, dtype=object)
    empty = (np.empty(0, dtype=object), np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp))
    if zones.size < 2:
        return empty
    a, b = STRtree(zones).query(zones, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    if a.size == 0:
        return empty
    inter = np.concatenate(parallel_chunks(
        lambda pos: shapely.intersection(zones[a[pos]], zones[b[pos]]), a.size, workers=workers))
    pieces, pair = polygon_parts(inter)
    return pieces, a[pair], b[pair]


# --------------------------------------------------------------------------- cleaning
def clean_coverage(zones: np.ndarray, groups: np.ndarray, width_m: float, *,
                   keep: Sequence[tuple[int, shapely.Geometry]] = (), workers: int = 1,
                   snapping_m: float | None = None) -> np.ndarray:
    """A proposal for matched borders: ``shapely.coverage_clean`` group by group, then across groups.

    Overlap slivers go to the neighbour with the longest shared border and
    gaps narrower than ``width_m`` are filled the same way; wider gaps stay
    open. ``coverage_clean`` is superlinear in the number of polygons, so it
    runs on each group (one village's grids) on its own, in threads; then,
    for each pair of neighbouring groups, on just the zones along their
    common border (without snapping, so the borders already matched inside
    each group stay as they are).

    Parameters
    ----------
    zones
        Valid polygons.
    groups
        Group label of each zone (e.g. its village).
    width_m
        Gaps narrower than this are filled.
    keep
        ``(position, region)`` pairs added back to a zone after cleaning: the
        real overlaps, which are findings and must not be decided by the
        proposal.
    workers
        Threads.
    snapping_m
        Vertex snapping distance inside a group (default half of ``width_m``).

    Returns
    -------
    numpy.ndarray
        The cleaned polygons, in the order of ``zones``.
    """
    zones = np.asarray(zones, dtype=object)
    out = zones.copy()
    if zones.size == 0:
        return out
    snap = width_m / 2.0 if snapping_m is None else snapping_m
    _, label = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    members = np.split(np.argsort(label, kind="stable"), np.cumsum(np.bincount(label))[:-1])
    members.sort(key=len, reverse=True)

    def clean(batch: list[np.ndarray], snapping: float) -> None:
        def run(pos: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(batch[int(i)], shapely.coverage_clean(out[batch[int(i)]], gap_width=width_m,
                                                           snapping_distance=snapping)) for i in pos]

        for chunk in parallel_chunks(run, len(batch), workers=workers):
            for m, cleaned in chunk:
                out[m] = cleaned

    clock = Clock(logger)
    clean(members, snap)
    clock.lap(f"clean_coverage: {len(members)} groups cleaned")
    # across groups: for each group, its zones on a border with other groups and the foreign zones they
    # meet, in one call (so a junction of three groups is cleaned as one); groups sharing no zone run
    # side by side
    a, b = STRtree(out).query(out, predicate="intersects")
    cross = label[a] != label[b]
    a, b = a[cross], b[cross]
    if a.size:
        borders = [np.unique(np.concatenate([a[label[a] == g], b[label[a] == g]])) for g in np.unique(label[a])]
        borders.sort(key=len, reverse=True)
        n_groups = len(borders)
        while borders:
            used = np.zeros(zones.size, dtype=bool)
            batch, later = [], []
            for m in borders:
                if used[m].any():
                    later.append(m)
                else:
                    used[m] = True
                    batch.append(m)
            clean(batch, 0.0)
            borders = later
        clock.lap(f"clean_coverage: the borders of {n_groups} groups cleaned")
    for pos, region in keep:
        out[pos] = shapely.union(out[pos], region)
    bad = shapely.is_empty(out) | ~shapely.is_valid(out)
    out[bad] = zones[bad]  # never propose less than the input
    return out
