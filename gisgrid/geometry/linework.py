"""Linear referencing on line layers: which stretches of a line lie within a distance of something.

A line layer (roads, rivers) is exploded once into parts and segments with
their chainage (distance along the part) in :class:`Lines`. Questions about
it are then answered as chainage intervals (:class:`Intervals`) and cut out
as substrings:

* the part of each line within ``d`` of a set of points or segments
  (:meth:`Lines.within`) is exact: per (line segment, target segment) pair,
  the segment against the capsule around the target, in closed form
  (:func:`capsule_interval`), merged along the chainage (:meth:`Lines.merge`);
* candidate pairs come from one ``STRtree`` box query of runs of segments,
  narrowed by comparing boxes in numpy, so no Python loop runs over features
  or pairs of them;
* :meth:`Lines.substrings` cuts intervals out exactly, keeping every vertex
  in between.

Everything here is pure geometry on numpy and shapely arrays; inputs are
never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

__all__ = [
    "Intervals",
    "Lines",
    "along_pairs",
    "capsule_interval",
    "grouped",
    "lines_only",
    "ranges",
    "segment_hits",
    "segments_of",
    "union_lines",
]

_RUN = 4  # connected target segments queried as one box in Lines.within
_CHUNK = 16  # consecutive segments of a line indexed as one box (Lines.chunks)
_BOX_SLACK_M = 1e-6  # boxes grown by this before they are compared: candidate pairs are never lost to rounding


@dataclass
class Intervals:
    """Chainage intervals ``[start, end]`` of the parts of a :class:`Lines`, with the trigger (labels) of each.

    Attributes
    ----------
    part : numpy.ndarray
        Part of each interval (a position in :attr:`Lines.parts`).
    start, end : numpy.ndarray
        Chainages along the part, in the part's units (metres).
    trigger : numpy.ndarray
        Object array: what each interval is near (labels joined with ``','``).
    """

    part: np.ndarray
    start: np.ndarray
    end: np.ndarray
    trigger: np.ndarray

    def __len__(self) -> int:
        return len(self.part)

    @classmethod
    def empty(cls) -> Intervals:
        """No intervals."""
        return cls(np.empty(0, dtype=np.intp), np.empty(0), np.empty(0), np.empty(0, dtype=object))


class Lines:
    """A line layer exploded into parts and segments, with chainage, for exact distance work.

    Missing and empty geometries are skipped; MultiLineStrings are merged
    where their pieces connect (in their direction) and the rest split into
    parts; LinearRings become LineStrings; parts of zero length are dropped.

    Parameters
    ----------
    geoms
        Object array of linear geometries (a layer's geometry column).

    Attributes
    ----------
    owner : numpy.ndarray
        Position in ``geoms`` of each part.
    parts : numpy.ndarray
        The parts (2D LineStrings, or the input's own lines when they are plain 2D LineStrings).
    part_len : numpy.ndarray
        Length of each part.
    vxy, vkey : numpy.ndarray
        Every vertex of every part, and a key increasing along all parts: the
        length of all parts up to the vertex plus its part's number (so one
        part's keys end 1 before the next part's begin).
    base : numpy.ndarray
        ``vkey`` of each part's first vertex: chainage ``c`` on part ``p`` has key ``base[p] + c``.
    seg_a, seg_b, seg_part, seg_ch0, seg_len : numpy.ndarray
        Every segment of positive length: its end points, part, chainage of its
        start and length; grouped by part, in part order.
    """

    def __init__(self, geoms: np.ndarray) -> None:
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        pos = np.flatnonzero(ok)
        merged = geoms[pos].copy()
        multi = shapely.get_type_id(merged) == 5
        if multi.any():
            merged[multi] = shapely.line_merge(merged[multi], directed=True)
        simple = bool(len(merged)) and bool((shapely.get_type_id(merged) == 1).all()) and not bool(
            (shapely.has_z(merged) | shapely.has_m(merged)).any())
        part_len = None
        if simple:  # plain 2D LineStrings (the usual case): they are their own parts
            length = shapely.length(merged)
            keep = length > 0
            self.owner = pos[keep]
            self.parts = merged[keep]
            part_len = length[keep]
            coords, vpart = shapely.get_coordinates(self.parts, return_index=True)
        else:
            parts, idx = shapely.get_parts(merged, return_index=True)
            keep = np.isin(shapely.get_type_id(parts), (1, 2)) & (shapely.length(parts) > 0)
            self.owner = pos[idx[keep]]
            if keep.any():  # LinearRings become LineStrings
                xy, at = shapely.get_coordinates(parts[keep], return_index=True)
                self.parts = shapely.linestrings(xy, indices=at)
                coords, vpart = xy, at
            else:
                self.parts = np.empty(0, dtype=object)
                coords, vpart = np.empty((0, 2)), np.empty(0, dtype=np.intp)
        self.vxy = coords
        same = vpart[1:] == vpart[:-1]
        step = np.where(same, np.hypot(*(coords[1:] - coords[:-1]).T), 0.0) if len(coords) else np.empty(0)
        cum = np.concatenate([[0.0], np.cumsum(step)])
        # A key increasing along all parts: chainage plus the part number (parts 1 m apart).
        self.vkey = cum + vpart
        first = np.flatnonzero(np.concatenate([[True], ~same])) if len(coords) else np.empty(0, np.intp)
        self.base = self.vkey[first]
        self.part_len = (part_len if part_len is not None else shapely.length(self.parts)).astype(float)
        seg = np.flatnonzero(same & (step > 0))
        self.seg_a = coords[seg]
        self.seg_b = coords[seg + 1]
        self.seg_part = vpart[seg]
        self.seg_ch0 = self.vkey[seg] - self.base[self.seg_part]
        self.seg_len = step[seg]
        self._part_tree: STRtree | None = None
        self._chunks: tuple[STRtree, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._seg_box: np.ndarray | None = None
        self._seg_off: np.ndarray | None = None
        self._seg_n: np.ndarray | None = None

    @property
    def part_tree(self) -> STRtree:
        """STRtree of the parts (built once)."""
        if self._part_tree is None:
            self._part_tree = STRtree(self.parts)
        return self._part_tree

    @property
    def seg_box(self) -> np.ndarray:
        """(xmin, ymin, xmax, ymax) of each segment (computed once)."""
        if self._seg_box is None:
            self._seg_box = np.concatenate([np.minimum(self.seg_a, self.seg_b), np.maximum(self.seg_a, self.seg_b)],
                                           axis=1)
        return self._seg_box

    @property
    def seg_off(self) -> np.ndarray:
        """Position of each part's first segment (segments are grouped by part, in part order)."""
        if self._seg_off is None:
            self._seg_off = np.concatenate([[0], np.cumsum(self.seg_n)[:-1]]).astype(np.intp)
        return self._seg_off

    @property
    def seg_n(self) -> np.ndarray:
        """Number of segments of each part."""
        if self._seg_n is None:
            self._seg_n = np.bincount(self.seg_part, minlength=len(self.parts))
        return self._seg_n

    def chunks(self) -> tuple[STRtree, np.ndarray, np.ndarray, np.ndarray]:
        """Runs of at most ``_CHUNK`` (16) consecutive segments of a part, for box queries (built once).

        A part of at most ``_CHUNK`` segments is one run, indexed by the part
        itself; a longer part is split into runs indexed by the diagonals of
        their boxes.

        Returns
        -------
        tree : shapely.STRtree
            The runs' boxes.
        first, count : numpy.ndarray
            Each run's first segment and its number of segments.
        bounds : numpy.ndarray
            (n, 4) box (xmin, ymin, xmax, ymax) of each run.
        """
        if self._chunks is None:
            n = self.seg_n
            k = (n + _CHUNK - 1) // _CHUNK
            if not len(n) or (k <= 1).all():
                first, count = self.seg_off[n > 0], n[n > 0]
                chunk_part = np.flatnonzero(n > 0)
            else:
                chunk_part = np.repeat(np.arange(len(n)), k)
                j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
                first = self.seg_off[chunk_part] + j * _CHUNK
                count = np.minimum(n[chunk_part] - j * _CHUNK, _CHUNK)
            box = self.seg_box
            bounds = np.concatenate([np.minimum.reduceat(box[:, :2], first), np.maximum.reduceat(box[:, 2:], first)],
                                    axis=1) if len(first) else np.empty((0, 4))
            whole = count == self.seg_n[chunk_part]
            geoms = np.empty(len(first), dtype=object)
            geoms[whole] = self.parts[chunk_part[whole]]  # a whole part: its own geometry
            if (~whole).any():  # a run of a long part: the diagonal of its box
                geoms[~whole] = shapely.linestrings(bounds[~whole].reshape(-1, 2, 2))
            tree = self.part_tree if whole.all() and len(first) == len(self.parts) else STRtree(geoms)
            self._chunks = (tree, first, count, bounds)
        return self._chunks

    def near_pairs(self, pts: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
        """(point, part) pairs, sorted, whose boxes come within ``distance``: candidates for a GEOS test.

        Every part within ``distance`` of a point is among them (the boxes are
        those of runs of segments, grown by a hair).

        Parameters
        ----------
        pts
            Object array of Points; missing and empty ones have no pairs.
        distance
            Metres.

        Returns
        -------
        point, part : numpy.ndarray
            Positions in ``pts`` and in :attr:`parts`, sorted by point then part, unique.
        """
        if not len(pts) or not len(self.seg_a):
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
        ok = np.flatnonzero(~(shapely.is_missing(pts) | shapely.is_empty(pts)))  # the others have no pairs
        x, y = shapely.get_x(pts[ok]), shapely.get_y(pts[ok])
        grow = distance + _BOX_SLACK_M
        tree, c_first, _, _ = self.chunks()
        boxes = shapely.linestrings(np.stack([np.c_[x - grow, y - grow], np.c_[x + grow, y + grow]], axis=1))
        p_idx, c_idx = tree.query(boxes)
        p_idx = ok[p_idx]
        key = np.unique(p_idx.astype(np.int64) * len(self.parts) + self.seg_part[c_first[c_idx]])
        return (key // len(self.parts)).astype(np.intp), (key % len(self.parts)).astype(np.intp)

    def within(self, ca: np.ndarray, cb: np.ndarray, labels: np.ndarray, distance: float) -> Intervals:
        """Chainage intervals of the parts lying within ``distance`` of the segments ``ca``-``cb``.

        Candidates come from one box query: runs of up to ``_RUN`` connected
        target segments (a point is a run of its own), their box grown by
        ``distance``, against runs of up to ``_CHUNK`` segments of the parts
        (:meth:`chunks`); expanded to (target segment, line segment) pairs
        whose boxes come within ``distance``. Each pair's interval is then
        exact (:func:`capsule_interval`).

        Parameters
        ----------
        ca, cb
            (n, 2) end points of the target segments; ``ca == cb`` is a point.
        labels
            (n,) label of each target (POI id, village id, ...).
        distance
            Metres.

        Returns
        -------
        Intervals
            ``part``, ``start``, ``end``, ``trigger`` (sorted unique labels joined with ``','``),
            one per maximal interval.
        """
        if not len(ca) or not len(self.seg_a):
            return Intervals.empty()
        ca = np.asarray(ca, dtype=float)
        cb = np.asarray(cb, dtype=float)
        n = len(ca)
        degenerate = np.all(ca == cb, axis=1)
        # runs of connected segments (a point is a run of its own), at most _RUN long
        brk = np.ones(n, dtype=bool)
        brk[1:] = ~np.all(cb[:-1] == ca[1:], axis=1) | degenerate[1:] | degenerate[:-1]
        first = np.flatnonzero(brk)
        k = np.arange(n) - first[np.cumsum(brk) - 1]
        brk |= k % _RUN == 0
        first = np.flatnonzero(brk)
        run_n = np.diff(np.append(first, n))
        # each target's box grown by the distance (and a hair, so that rounding never drops a pair GEOS
        # would call within the distance); each run's box, as a diagonal line: the tree compares boxes only
        grow = distance + _BOX_SLACK_M
        t_box = np.concatenate([np.minimum(ca, cb) - grow, np.maximum(ca, cb) + grow], axis=1)
        lo_run = np.minimum.reduceat(t_box[:, :2], first)
        hi_run = np.maximum.reduceat(t_box[:, 2:], first)
        targets = shapely.linestrings(np.stack([lo_run, hi_run], axis=1))
        tree, c_first, c_count, c_bounds = self.chunks()
        r_idx, c_idx = tree.query(targets)
        if not len(r_idx):
            return Intervals.empty()
        # (target segment, run of line segments) pairs whose boxes come within the distance
        t_idx, which = ranges(first[r_idx], run_n[r_idx])
        c_idx = c_idx[which]
        tb, lb = t_box[t_idx], c_bounds[c_idx]
        near = (lb[:, 0] <= tb[:, 2]) & (lb[:, 1] <= tb[:, 3]) & (tb[:, 0] <= lb[:, 2]) & (tb[:, 1] <= lb[:, 3])
        t_idx, c_idx, tb = t_idx[near], c_idx[near], tb[near]
        # (target segment, line segment) pairs likewise
        cnt = c_count[c_idx]
        s_idx, which = ranges(c_first[c_idx], cnt)
        sb = self.seg_box[s_idx]
        near = ((sb[:, 0] <= np.repeat(tb[:, 2], cnt)) & (sb[:, 1] <= np.repeat(tb[:, 3], cnt))
                & (np.repeat(tb[:, 0], cnt) <= sb[:, 2]) & (np.repeat(tb[:, 1], cnt) <= sb[:, 3]))
        s_idx, t_idx = s_idx[near], t_idx[which[near]]
        lo, hi = capsule_interval(self.seg_a[s_idx], self.seg_b[s_idx], ca[t_idx], cb[t_idx], distance)
        ok = np.isfinite(lo) & (hi > lo)
        s_idx, t_idx, lo, hi = s_idx[ok], t_idx[ok], lo[ok], hi[ok]
        start = self.seg_ch0[s_idx] + lo * self.seg_len[s_idx]
        end = self.seg_ch0[s_idx] + hi * self.seg_len[s_idx]
        return self.merge(self.seg_part[s_idx], start, end, np.asarray(labels, dtype=object)[t_idx])

    def merge(self, part: np.ndarray, start: np.ndarray, end: np.ndarray, labels: np.ndarray) -> Intervals:
        """Merge overlapping or touching intervals per part and join their labels.

        Parameters
        ----------
        part, start, end
            Part of each interval and its chainages, ``0 <= start <= end <=
            part_len`` (any order).
        labels
            Label of each interval.

        Returns
        -------
        Intervals
            One per maximal interval longer than 1e-6, sorted by part and start;
            ``trigger`` is the sorted distinct labels (as text) joined with ``','``.
        """
        if not len(part):
            return Intervals.empty()
        ks = self.base[part] + start
        ke = self.base[part] + end
        order = np.lexsort((ks, part))
        part, ks, ke, labels = part[order], ks[order], ke[order], labels[order]
        run = np.maximum.accumulate(ke)
        new = np.ones(len(part), dtype=bool)
        new[1:] = (ks[1:] > run[:-1] + 1e-7) | (part[1:] != part[:-1])
        gid = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        g_end = np.maximum.reduceat(ke, starts)
        p0 = part[starts]
        start = np.maximum(ks[starts] - self.base[p0], 0.0)
        end = np.minimum(g_end - self.base[p0], self.part_len[p0])
        trigger = _join_per_group(gid, labels, len(starts))
        keep = (end - start) > 1e-6
        return Intervals(p0[keep], start[keep], end[keep], trigger[keep])

    def substrings(self, part: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The pieces of ``parts[part]`` between chainages ``start`` < ``end`` (exact, vectorised).

        Parameters
        ----------
        part, start, end
            Part of each piece and its chainages.

        Returns
        -------
        numpy.ndarray
            LineStrings: the interpolated ends and every vertex in between.
        """
        if not len(part):
            return np.empty(0, dtype=object)
        gs = self.base[part] + start
        ge = self.base[part] + end
        last = len(self.vkey) - 1
        a = np.clip(np.searchsorted(self.vkey, gs, side="right"), 1, last)
        b = np.clip(np.searchsorted(self.vkey, ge, side="left"), 1, last)
        ps = _lerp(self.vxy[a - 1], self.vxy[a], self.vkey[a - 1], self.vkey[a], gs)
        pe = _lerp(self.vxy[b - 1], self.vxy[b], self.vkey[b - 1], self.vkey[b], ge)
        k = np.maximum(b - a, 0)
        n = k + 2
        offs = np.concatenate([[0], np.cumsum(n)[:-1]])
        out = np.empty((int(n.sum()), 2))
        out[offs] = ps
        out[offs + k + 1] = pe
        rows = np.repeat(np.arange(len(part)), k)
        within = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        out[offs[rows] + 1 + within] = self.vxy[a[rows] + within]
        return shapely.linestrings(out, indices=np.repeat(np.arange(len(part)), n))

    def points_at(self, key: np.ndarray) -> np.ndarray:
        """(n, 2) points at keys along all parts (as in :attr:`vkey`: ``base[part] + chainage``)."""
        last = len(self.vkey) - 1
        a = np.clip(np.searchsorted(self.vkey, key, side="right"), 1, last)
        return _lerp(self.vxy[a - 1], self.vxy[a], self.vkey[a - 1], self.vkey[a], key)


def ranges(first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``first[i], first[i] + 1, ... first[i] + count[i] - 1`` one after another, and the ``i`` of each.

    Parameters
    ----------
    first, count
        Integer arrays: start and length of each range.

    Returns
    -------
    values, which : numpy.ndarray
        The ranges' members, concatenated in order, and the range each came from.
    """
    which = np.repeat(np.arange(len(count)), count)
    return np.arange(len(which)) + np.repeat(first - (np.cumsum(count) - count), count), which


def _join_per_group(gid: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique labels of each group joined with ``','`` (groups numbered 0..n-1, all non-empty)."""
    codes, uniq = pd.factorize(np.asarray(labels, dtype=object), use_na_sentinel=False)
    # the distinct labels as text, sorted (distinct labels with the same text are one)
    text = np.asarray(uniq, dtype=object).astype(str)
    text_code, text_uniq = pd.factorize(text)
    order = np.argsort(np.asarray(text_uniq, dtype=str), kind="stable")
    m = max(len(order), 1)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    key = np.unique(np.asarray(gid, dtype=np.int64) * m + rank[text_code[codes]])
    g = key // m
    values = np.asarray(text_uniq, dtype=object)[order][key % m]
    counts = np.bincount(g, minlength=n)
    first = np.searchsorted(g, np.arange(n))
    out = values[np.minimum(first, len(values) - 1)].copy()
    for j in range(1, int(counts.max(initial=1))):  # intervals that several POIs or borders reach
        more = np.flatnonzero(counts > j)
        out[more] = out[more] + "," + values[first[more] + j]
    return out


def _lerp(p0: np.ndarray, p1: np.ndarray, k0: np.ndarray, k1: np.ndarray, k: np.ndarray) -> np.ndarray:
    span = k1 - k0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(span > 0, (k - k0) / np.where(span > 0, span, 1.0), 0.0)
    return p0 + np.clip(t, 0.0, 1.0)[:, None] * (p1 - p0)


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u, v)


def capsule_interval(A: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray,
                     d: float) -> tuple[np.ndarray, np.ndarray]:
    """Parameter interval ``[lo, hi]`` of the segments A→B lying within ``d`` of the segments C–D.

    The points within ``d`` of a segment form a capsule (two discs and a
    rectangle), which is convex, so its intersection with a segment is one
    interval: the hull of the intervals cut by the discs (a quadratic) and by
    the rectangle (Liang-Barsky).

    Parameters
    ----------
    A, B
        (n, 2) start and end of each segment measured.
    C, D
        (n, 2) ends of the target segment of each pair; ``C == D`` is a point (a disc).
    d
        The distance.

    Returns
    -------
    lo, hi : numpy.ndarray
        Parameters along A→B (0 at A, 1 at B); ``lo = inf`` where the segment never comes within ``d``.
    """
    ax, ay = A[:, 0], A[:, 1]
    abx, aby = B[:, 0] - ax, B[:, 1] - ay
    a = abx * abx + aby * aby
    lo = np.full(len(A), np.inf)
    hi = np.full(len(A), -np.inf)
    two_a = 2.0 * np.where(a > 0, a, 1.0)
    point = (C[:, 0] == D[:, 0]) & (C[:, 1] == D[:, 1])
    for P, rows in ((C, slice(None)), (D, np.flatnonzero(~point))):  # a point target: one disc
        fx, fy = ax[rows] - P[rows, 0], ay[rows] - P[rows, 1]
        ab_x, ab_y, a_, two = abx[rows], aby[rows], a[rows], two_a[rows]
        b = 2.0 * (fx * ab_x + fy * ab_y)
        c = (fx * fx + fy * fy) - d * d
        disc = b * b - 4.0 * a_ * c
        ok = (disc >= 0) & (a_ > 0)
        sq = np.sqrt(np.where(ok, disc, 0.0))
        t1 = np.maximum((-b - sq) / two, 0.0)
        t2 = np.minimum((-b + sq) / two, 1.0)
        hit = ok & (t1 <= t2)
        lo[rows] = np.where(hit, np.minimum(lo[rows], t1), lo[rows])
        hi[rows] = np.where(hit, np.maximum(hi[rows], t2), hi[rows])
    rows = np.flatnonzero(~point)
    cdx, cdy = D[rows, 0] - C[rows, 0], D[rows, 1] - C[rows, 1]
    L = np.hypot(cdx, cdy)
    rows, cdx, cdy, L = rows[L > 0], cdx[L > 0], cdy[L > 0], L[L > 0]
    if not len(rows):
        return lo, hi
    ux, uy = cdx / L, cdy / L
    vx, vy = -uy, ux
    acx, acy = ax[rows] - C[rows, 0], ay[rows] - C[rows, 1]
    ab_x, ab_y = abx[rows], aby[rows]
    u0, du = acx * ux + acy * uy, ab_x * ux + ab_y * uy
    v0, dv = acx * vx + acy * vy, ab_x * vx + ab_y * vy
    tlo = np.zeros(len(rows))
    thi = np.ones(len(rows))
    ok = np.ones(len(rows), dtype=bool)
    for p, q in ((-du, u0), (du, L - u0), (-dv, v0 + d), (dv, d - v0)):
        zero = np.abs(p) < 1e-12
        ok &= ~(zero & (q < 0))
        r = q / np.where(zero, 1.0, p)
        tlo = np.where(~zero & (p < 0), np.maximum(tlo, r), tlo)
        thi = np.where(~zero & (p > 0), np.minimum(thi, r), thi)
    hit = ok & (tlo <= thi)
    lo[rows] = np.where(hit, np.minimum(lo[rows], tlo), lo[rows])
    hi[rows] = np.where(hit, np.maximum(hi[rows], thi), hi[rows])
    return lo, hi


def segments_of(geom: Any) -> tuple[np.ndarray, np.ndarray]:
    """End points of every segment of a linear geometry or array of them.

    Parameters
    ----------
    geom
        A geometry or an array of them (multi-parts are exploded).

    Returns
    -------
    a, b : numpy.ndarray
        (n, 2) start and end of each segment, in order.
    """
    geoms = np.atleast_1d(np.asarray(geom, dtype=object))
    coords, idx = shapely.get_coordinates(shapely.get_parts(geoms), return_index=True)
    if len(coords) < 2:
        return np.empty((0, 2)), np.empty((0, 2))
    same = np.flatnonzero(idx[1:] == idx[:-1])
    return coords[same], coords[same + 1]


def lines_only(geoms: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explode to LineStrings with length and merge the contiguous ones per owner.

    Parameters
    ----------
    geoms
        Geometries, e.g. the result of an intersection (points and polygons are dropped).
    owner
        Owner of each geometry.

    Returns
    -------
    pieces, owner : numpy.ndarray
        The merged LineStrings and the owner of each, by owner.
    """
    if not len(geoms):
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    parts, idx = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) > 0)
    parts, own = parts[keep], np.asarray(owner)[idx[keep]]
    if not len(parts):
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    uniq, inv = np.unique(own, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    merged = shapely.line_merge(shapely.multilinestrings(parts[order], indices=inv[order]))
    pieces, j = shapely.get_parts(merged, return_index=True)
    keep = shapely.length(pieces) > 0
    return pieces[keep], uniq[j[keep]]


def segment_hits(A: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where segments A→B meet segments C–D: parameters ``t`` along A→B and the pair of each.

    A crossing or touch gives one ``t``; a collinear overlap gives the ``t`` of
    both ends of the overlap. Pairs that do not meet give nothing.

    Parameters
    ----------
    A, B, C, D
        (n, 2) end points, pairwise.

    Returns
    -------
    t, pair : numpy.ndarray
        Each meeting's parameter along A→B (clipped to [0, 1]) and its pair.
    """
    r, q, w = B - A, D - C, C - A
    cross = r[:, 0] * q[:, 1] - r[:, 1] * q[:, 0]
    rr, qq = _dot(r, r), _dot(q, q)
    scale = np.sqrt(rr * qq)
    parallel = np.abs(cross) <= 1e-12 * scale
    safe = np.where(parallel, 1.0, cross)
    t = (w[:, 0] * q[:, 1] - w[:, 1] * q[:, 0]) / safe
    u = (w[:, 0] * r[:, 1] - w[:, 1] * r[:, 0]) / safe
    eps = 1e-12
    hit = ~parallel & (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    # collinear: C lies on the line through A and B (within 1e-7 m); the overlap's ends, projected
    off_line = np.abs(w[:, 0] * r[:, 1] - w[:, 1] * r[:, 0]) / np.sqrt(np.where(rr > 0, rr, 1.0))
    tc = _dot(w, r) / np.where(rr > 0, rr, 1.0)
    td = _dot(D - A, r) / np.where(rr > 0, rr, 1.0)
    lo, hi = np.minimum(tc, td), np.maximum(tc, td)
    along = parallel & (off_line <= 1e-7) & (hi >= -eps) & (lo <= 1 + eps)
    ts = np.concatenate([t[hit], lo[along], hi[along]])
    at = np.concatenate([np.flatnonzero(hit), np.flatnonzero(along), np.flatnonzero(along)])
    return np.clip(ts, 0.0, 1.0), at


def grouped(geoms: np.ndarray, groups: np.ndarray, n: int, union: Callable[..., np.ndarray],
            empty: shapely.Geometry) -> np.ndarray:
    """``union(members, axis=1)`` of the geometries of each group 0..n-1, vectorised by group size.

    Parameters
    ----------
    geoms
        Geometries, one per member.
    groups
        Group number (``0 <= g < n``) of each member.
    n
        Number of groups.
    union
        Called as ``union(array_2d, axis=1)`` once per distinct group size,
        e.g. :func:`shapely.union_all` or :func:`union_lines`.
    empty
        The result for a group with no members.

    Returns
    -------
    numpy.ndarray
        One geometry per group; a group of one member is that member itself.
    """
    out = np.full(n, empty, dtype=object)
    if not len(geoms):
        return out
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    items = geoms[order]
    one = np.flatnonzero(counts == 1)
    out[one] = items[starts[one]]
    for k in np.unique(counts[counts > 1]):  # one call per distinct group size
        members = np.flatnonzero(counts == k)
        take = starts[members][:, None] + np.arange(k)[None, :]
        out[members] = union(items[take], axis=1)
    return out


def union_lines(geoms: np.ndarray, axis: int) -> np.ndarray:
    """Union along ``axis``, the touching lines of each result merged into longer ones (:func:`shapely.line_merge`).

    Parameters
    ----------
    geoms
        Array of linear geometries.
    axis
        Axis of :func:`shapely.union_all`.

    Returns
    -------
    numpy.ndarray
        The merged unions.
    """
    return shapely.line_merge(shapely.union_all(geoms, axis=axis))


# --------------------------------------------------------------------------- lines along polygon edges
def _polyline_segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Straight segments of lines as an (n, 4) array ``x0 y0 x1 y1``, and the index of each one's geometry."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    coords, pidx = shapely.get_coordinates(parts, return_index=True)
    same = pidx[1:] == pidx[:-1]
    return np.hstack([coords[:-1][same], coords[1:][same]]), owner[pidx[:-1][same]]


def _interval(a: np.ndarray, b: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The t-interval where ``lo <= a + b * t <= hi`` (all t when b is 0 and a fits, none when it does not)."""
    flat = np.abs(b) < 1e-12
    safe = np.where(flat, 1.0, b)
    t1, t2 = (lo - a) / safe, (hi - a) / safe
    fits = (a >= lo) & (a <= hi)
    start = np.where(flat, np.where(fits, -np.inf, np.inf), np.minimum(t1, t2))
    end = np.where(flat, np.where(fits, np.inf, -np.inf), np.maximum(t1, t2))
    return start, end


def along_pairs(lines: np.ndarray, polygons: np.ndarray, *, tolerance_m: float, min_length_m: float,
                 chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """(line, polygon) index pairs where a line may run along the polygon's edge (the border-road candidates).

    Parameters
    ----------
    lines
        Linear geometries.
    polygons
        Polygonal geometries.
    tolerance_m
        How far from the polygon's edge a line may run.
    min_length_m
        How long it must run within that distance.
    chunk
        (segment, polygon) pairs expanded to edges at a time (bounds the memory).

    Returns
    -------
    line, polygon : numpy.ndarray
        Index pairs, unique.

    Notes
    -----
    A pair is kept when a segment of the line lies within ``tolerance_m`` of
    an edge of the polygon for at least ``min_length_m``: segment against
    segment in numpy, a cheap superset of the exact (buffer) test. The
    (segment, polygon) pairs whose boxes meet are expanded to the polygon's
    edges ``chunk`` pairs at a time, so memory stays bounded however many
    vertices hand-drawn polygons have.
    """
    rseg, rown = _polyline_segments(lines)
    eseg, eown = _polyline_segments(shapely.boundary(polygons))
    length_e = np.hypot(eseg[:, 2] - eseg[:, 0], eseg[:, 3] - eseg[:, 1])
    ok = length_e > 0
    eseg, eown, length_e = eseg[ok], eown[ok], length_e[ok]
    e_lo, e_hi = np.minimum(eseg[:, :2], eseg[:, 2:]), np.maximum(eseg[:, :2], eseg[:, 2:])
    e_off = np.searchsorted(eown, np.arange(len(polygons)))
    e_cnt = np.bincount(eown, minlength=len(polygons))
    t = tolerance_m
    r_lo, r_hi = np.minimum(rseg[:, :2], rseg[:, 2:]), np.maximum(rseg[:, :2], rseg[:, 2:])
    rbox = shapely.box(r_lo[:, 0] - t, r_lo[:, 1] - t, r_hi[:, 0] + t, r_hi[:, 1] + t)
    s_all, p_all = shapely.STRtree(polygons).query(rbox)
    # edge boxes grown by the tolerance once, one coordinate per array: the box test gathers 1-D columns
    ex0, ey0, ex1, ey1 = e_lo[:, 0] - t, e_lo[:, 1] - t, e_hi[:, 0] + t, e_hi[:, 1] + t
    rx0, ry0, rx1, ry1 = r_lo[:, 0], r_lo[:, 1], r_hi[:, 0], r_hi[:, 1]
    found: list[np.ndarray] = []
    for at in range(0, len(s_all), chunk):
        seg_i, poly = s_all[at:at + chunk], p_all[at:at + chunk]
        cnt = e_cnt[poly]
        si = np.repeat(seg_i, cnt)
        ei = np.repeat(e_off[poly] - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) + np.arange(cnt.sum())
        near = (rx0[si] <= ex1[ei]) & (ex0[ei] <= rx1[si])  # x first: most pairs fail it
        si, ei = si[near], ei[near]
        near = (ry0[si] <= ey1[ei]) & (ey0[ei] <= ry1[si])
        si, ei = si[near], ei[near]
        p0, p1 = rseg[si, :2], rseg[si, 2:]
        q0 = eseg[ei, :2]
        u = (eseg[ei, 2:] - q0) / length_e[ei, None]
        n = np.column_stack([-u[:, 1], u[:, 0]])
        rel, step = p0 - q0, p1 - p0
        d_lo, d_hi = _interval((n * rel).sum(1), (n * step).sum(1), -t, t)
        s_lo, s_hi = _interval((u * rel).sum(1), (u * step).sum(1), -t, length_e[ei] + t)
        lo = np.maximum.reduce([np.zeros(len(si)), d_lo, s_lo])
        hi = np.minimum.reduce([np.ones(len(si)), d_hi, s_hi])
        along = np.clip(hi - lo, 0.0, None) * np.hypot(step[:, 0], step[:, 1])
        keep = along >= min_length_m
        found.append(np.column_stack([rown[si[keep]], eown[ei[keep]]]))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), dtype=np.intp)
    return pairs[:, 0], pairs[:, 1]
