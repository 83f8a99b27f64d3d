"""GPS tracks: cleaning, patrols, and what a patrol covers (pure numpy and shapely, vectorised).

A track is a set of fixes ``(person, t, x, y)`` in a metric CRS. :func:`clean_tracks`
sorts them, cuts each person's fixes into *patrols* at time gaps, drops GPS
spikes (a fix that is impossibly fast to reach and to leave while its
neighbours are plausibly close) and measures every patrol: duration, length,
median and top speed, and the *teleports* that remain (a jump no walker, cyclist
or car makes: evidence of a doctored or broken track, never dropped).

:func:`cover` answers "which chainage of these lines did each patrol pass within
``d`` of", the engine of the patrol check: the patrol's segments against the
segments of a :class:`~gisgrid.geometry.linework.Lines` (pairs from one ``STRtree`` query of the
steps' boxes against the segments), exact per pair with
:func:`~gisgrid.geometry.linework.capsule_interval` (the same closed form as
``Lines.within``), merged per (patrol, line part). The same pairs give the part
of each patrol lying within ``d`` of the lines (is the track on the river at all).

No Python loop runs over fixes, segments or pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from gisgrid.geometry.linework import Lines, capsule_interval

__all__ = ["Cover", "Track", "clean_tracks", "cover", "merge_intervals", "patrol_lines"]

_SLACK_M = 1e-6


@dataclass
class Track:
    """Cleaned fixes and the patrols they form.

    Attributes
    ----------
    person, t, x, y : numpy.ndarray
        The kept fixes sorted by person and time (``t`` in seconds).
    patrol : numpy.ndarray
        Patrol number (0..n-1) of each kept fix; fixes of a patrol are contiguous.
    patrols : pandas.DataFrame
        One row per patrol (index = patrol number): ``person``, ``start``, ``end`` (seconds),
        ``duration_s``, ``length_m`` (teleport jumps left out), ``points``, ``median_speed_mps``
        (of the steps, by time), ``max_speed_mps`` (of the plausible steps), ``teleports``,
        ``max_jump_m``, ``jump_speed_mps``, ``spikes`` (fixes dropped as spikes).
    dropped : numpy.ndarray
        Positions (in the input order) of the fixes dropped as spikes.
    """

    person: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    patrol: np.ndarray
    patrols: pd.DataFrame
    dropped: np.ndarray

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, 2) start and end of every step inside a patrol, and the patrol of each."""
        same = self.patrol[1:] == self.patrol[:-1]
        xy = np.column_stack([self.x, self.y])
        return xy[:-1][same], xy[1:][same], self.patrol[:-1][same]


def _steps(person: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, gap_s: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step i -> i+1: same patrol?, seconds, metres."""
    dt = np.diff(t).astype(float)
    d = np.hypot(np.diff(x), np.diff(y))
    same = (person[1:] == person[:-1]) & (dt <= gap_s)
    return same, dt, d


def clean_tracks(person: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, *, gap_s: float = 600.0,
                 max_speed_mps: float = 50.0, rounds: int = 3) -> Track:
    """Sort fixes, cut them into patrols at time gaps, drop spikes, measure each patrol.

    Parameters
    ----------
    person
        Integer code of each fix's person.
    t
        Seconds (any epoch) of each fix.
    x, y
        Metric coordinates.
    gap_s
        A pause longer than this ends a patrol.
    max_speed_mps
        Faster than this is impossible on a patrol (default 50 m/s, 180 km/h): a fix reached and left
        faster, while its two neighbours are plausibly close, is a spike and dropped; a step this fast
        that does not come back is a teleport, kept and counted.
    rounds
        Spike passes (a burst of k spikes needs k passes).

    Returns
    -------
    Track
    """
    person = np.asarray(person)
    t = np.asarray(t, dtype=np.int64)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.lexsort((t, person))
    alive = np.ones(len(t), dtype=bool)
    for _ in range(rounds):
        idx = order[alive[order]]
        if len(idx) < 3:
            break
        p, tt, xx, yy = person[idx], t[idx], x[idx], y[idx]
        same, dt, d = _steps(p, tt, xx, yy, gap_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(dt > 0, d / np.where(dt > 0, dt, 1.0), np.where(d > 0, np.inf, 0.0))
        fast = same & (v > max_speed_mps)
        # a spike: fast in and fast out, while its neighbours are plausibly close to each other
        dt2 = (tt[2:] - tt[:-2]).astype(float)
        d2 = np.hypot(xx[2:] - xx[:-2], yy[2:] - yy[:-2])
        plausible = d2 <= max_speed_mps * np.maximum(dt2, 1.0)
        spike = fast[:-1] & fast[1:] & plausible
        if not spike.any():
            break
        alive[idx[1:-1][spike]] = False
    idx = order[alive[order]]
    dropped = np.sort(np.flatnonzero(~alive))
    p, tt, xx, yy = person[idx], t[idx], x[idx], y[idx]
    n = len(idx)
    if n == 0:
        empty = pd.DataFrame({c: pd.Series([], dtype=float) for c in _PATROL_COLUMNS})
        return Track(p, tt, xx, yy, np.empty(0, dtype=np.intp), empty, dropped)
    same, dt, d = _steps(p, tt, xx, yy, gap_s)
    new = np.concatenate([[True], ~same])
    patrol = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dt > 0, d / np.where(dt > 0, dt, 1.0), np.where(d > 0, np.inf, 0.0))
    jump = same & (v > max_speed_mps)
    ok = same & ~jump
    sp = patrol[:-1]
    npat = len(first)
    length = np.bincount(sp[ok], weights=d[ok], minlength=npat)
    moving_t = np.bincount(sp[ok], weights=dt[ok], minlength=npat)
    teleports = np.bincount(sp[jump], minlength=npat)
    max_jump = np.zeros(npat)
    np.maximum.at(max_jump, sp[jump], d[jump])
    jump_speed = np.zeros(npat)
    np.maximum.at(jump_speed, sp[jump], np.where(np.isfinite(v[jump]), v[jump], 0.0))
    vmax = np.zeros(npat)
    np.maximum.at(vmax, sp[ok], v[ok])
    median = _time_median(sp[ok], v[ok], dt[ok], npat)
    spikes_per = np.zeros(npat, dtype=np.int64)
    if len(dropped):  # a dropped fix counts for the patrol of the kept fix before it (same person)
        t0 = int(min(tt.min(), t[dropped].min()))
        span = int(max(tt.max(), t[dropped].max())) - t0 + 1
        kept_key = p.astype(np.int64) * span + (tt - t0)
        at = np.clip(np.searchsorted(kept_key, person[dropped].astype(np.int64) * span + (t[dropped] - t0),
                                     side="right") - 1, 0, n - 1)
        mine = p[at] == person[dropped]
        np.add.at(spikes_per, patrol[at][mine], 1)
    patrols = pd.DataFrame({
        "person": p[first],
        "start": tt[first],
        "end": tt[last],
        "duration_s": (tt[last] - tt[first]).astype(float),
        "length_m": length,
        "points": last - first + 1,
        "moving_s": moving_t,
        "median_speed_mps": median,
        "max_speed_mps": vmax,
        "teleports": teleports,
        "max_jump_m": max_jump,
        "jump_speed_mps": jump_speed,
        "spikes": spikes_per,
    })
    return Track(p, tt, xx, yy, patrol, patrols, dropped)


_PATROL_COLUMNS = ("person", "start", "end", "duration_s", "length_m", "points", "moving_s", "median_speed_mps",
                   "max_speed_mps", "teleports", "max_jump_m", "jump_speed_mps", "spikes")


def _time_median(group: np.ndarray, value: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Median of ``value`` per group weighted by ``weight`` (time): the speed held half of the time."""
    out = np.zeros(n)
    if not len(group):
        return out
    order = np.lexsort((value, group))
    g, v, w = group[order], value[order], weight[order]
    cw = np.cumsum(w)
    start = np.searchsorted(g, np.arange(n), side="left")
    end = np.searchsorted(g, np.arange(n), side="right")
    has = end > start
    before = np.where(start > 0, cw[np.maximum(start - 1, 0)], 0.0)
    total = np.where(has, cw[np.maximum(end - 1, 0)] - before, 0.0)
    half = before + total / 2
    at = np.clip(np.searchsorted(cw, half, side="left"), start, np.maximum(end - 1, start))
    out[has] = v[np.minimum(at[has], len(v) - 1)]
    return out


def merge_intervals(key: np.ndarray, start: np.ndarray, end: np.ndarray, *, eps: float = 1e-7
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge overlapping or touching ``[start, end]`` intervals with the same integer ``key``.

    Returns
    -------
    key, start, end : numpy.ndarray
        One row per maximal interval, sorted by key and start.
    """
    if not len(key):
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    order = np.lexsort((start, key))
    k, s, e = key[order], start[order], end[order]
    # a running maximum of the ends that restarts with each key (keys shifted far apart)
    span = float(max(np.max(e) - np.min(s), 1.0)) * 4 + 1
    shift = (k - k.min()).astype(float) * span
    run = np.maximum.accumulate(e + shift) - shift
    new = np.ones(len(k), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (s[1:] > run[:-1] + eps)
    first = np.flatnonzero(new)
    last_end = np.maximum.reduceat(e, first)
    return k[first], s[first], last_end


@dataclass
class Cover:
    """What patrols covered of a set of lines (see :func:`cover`).

    Attributes
    ----------
    patrol, part, start, end : numpy.ndarray
        Merged chainage intervals of line part ``part`` within the distance of patrol ``patrol``.
    near_m : numpy.ndarray
        Per patrol (0..n_patrols-1): metres of the patrol's own track within the distance of the lines.
    """

    patrol: np.ndarray
    part: np.ndarray
    start: np.ndarray
    end: np.ndarray
    near_m: np.ndarray

    def covered_m(self, n_patrols: int, n_parts: int) -> np.ndarray:
        """(n_patrols, n_parts) metres of each part covered by each patrol."""
        out = np.zeros((n_patrols, n_parts))
        np.add.at(out, (self.patrol, self.part), self.end - self.start)
        return out


def cover(lines: Lines, a: np.ndarray, b: np.ndarray, patrol: np.ndarray, n_patrols: int, distance_m: float
          ) -> Cover:
    """Chainage of ``lines`` within ``distance_m`` of each patrol, and how much of each patrol is near them.

    Parameters
    ----------
    lines
        The lines a patrol should follow (reaches, lanes), exploded once.
    a, b
        (n, 2) ends of the patrol steps (:meth:`Track.segments`); grouped by patrol.
    patrol
        Patrol number (0..n_patrols-1) of each step.
    n_patrols
        Number of patrols.
    distance_m
        How close counts as passing.

    Returns
    -------
    Cover
    """
    near_m = np.zeros(n_patrols)
    empty = Cover(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0), near_m)
    if not len(a) or not len(lines.seg_a):
        return empty
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    patrol = np.asarray(patrol, dtype=np.int64)
    grow = distance_m + _SLACK_M
    t_lo = np.minimum(a, b) - grow
    t_hi = np.maximum(a, b) + grow
    # (step, line segment) pairs whose boxes meet (the step's grown by the distance): one STRtree query of the
    # steps against the lines' segments, the tree built once per Lines
    tree = _segment_tree(lines)
    s_idx, g_idx = tree.query(shapely.box(t_lo[:, 0], t_lo[:, 1], t_hi[:, 0], t_hi[:, 1]))
    if not len(s_idx):
        return empty
    ga, gb = lines.seg_a[g_idx], lines.seg_b[g_idx]
    # the line's chainage near the step ...
    lo, hi = capsule_interval(ga, gb, a[s_idx], b[s_idx], distance_m)
    hit = np.isfinite(lo) & (hi >= lo)
    part = lines.seg_part[g_idx[hit]]
    st = lines.seg_ch0[g_idx[hit]] + lo[hit] * lines.seg_len[g_idx[hit]]
    en = lines.seg_ch0[g_idx[hit]] + hi[hit] * lines.seg_len[g_idx[hit]]
    n_parts = max(len(lines.parts), 1)
    key, st, en = merge_intervals(patrol[s_idx[hit]] * n_parts + part, st, en)
    keep = en - st > 1e-6
    key, st, en = key[keep], st[keep], en[keep]
    # ... and the step's own stretch near the line (is the patrol on the river at all)
    tlo, thi = capsule_interval(a[s_idx], b[s_idx], ga, gb, distance_m)
    hit = np.isfinite(tlo) & (thi >= tlo)
    step_len = np.hypot(*(b - a).T)
    sk, s0, s1 = merge_intervals(s_idx[hit].astype(np.int64), tlo[hit], thi[hit])
    np.add.at(near_m, patrol[sk], (s1 - s0) * step_len[sk])
    return Cover(key // n_parts, key % n_parts, st, en, near_m)


def _segment_tree(lines: Lines) -> shapely.STRtree:
    """STRtree of the boxes of every segment of ``lines`` (built once, kept on the instance)."""
    tree = lines.__dict__.get("_track_segment_tree")
    if tree is None:
        box = lines.seg_box
        tree = shapely.STRtree(shapely.box(box[:, 0], box[:, 1], box[:, 2], box[:, 3]))
        lines.__dict__["_track_segment_tree"] = tree
    return tree


def patrol_lines(track: Track, *, simplify_m: float = 0.0) -> np.ndarray:
    """One LineString per patrol (a Point for a patrol of one fix), optionally simplified."""
    n = len(track.patrols)
    if not n:
        return np.empty(0, dtype=object)
    counts = np.bincount(track.patrol, minlength=n)
    xy = np.column_stack([track.x, track.y])
    out = np.empty(n, dtype=object)
    multi = np.flatnonzero(counts >= 2)
    rows = np.isin(track.patrol, multi)
    if len(multi):  # patrols renumbered 0..k-1 so that linestrings gives one line each
        rank = np.searchsorted(multi, track.patrol[rows])
        out[multi] = shapely.linestrings(xy[rows], indices=rank)
    one = np.flatnonzero(counts < 2)
    if len(one):
        out[one] = shapely.points(xy[np.searchsorted(track.patrol, one)])
    if simplify_m > 0:
        # plain Douglas-Peucker (20x faster than keeping topology): a track may cross itself anyway
        out = shapely.simplify(out, simplify_m, preserve_topology=False)
    return out
