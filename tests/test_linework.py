"""The linear-referencing engine (gisgrid.geometry.linework) against plain shapely and brute force.

Each property compares the engine with an oracle that shares none of its arithmetic: GEOS buffers, intersections,
distances and substrings, or interval unions done one float at a time in Python.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shapely
import shapely.ops
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gisgrid.geometry import linework
from gisgrid.geometry.linework import Intervals, Lines

X0, Y0 = 500_000.0, 3_550_000.0  # real projected coordinates: large numbers, as the engine meets them
QUAD = 64  # GEOS buffers are polygons with their vertices on the circle, at most pi / (2 * QUAD) apart
OUTER = (1.0 + 1e-9) / math.cos(math.pi / (4 * QUAD))  # buffer(r * OUTER) holds the whole disc of radius r
TOL = 1e-6  # metres

coord = st.one_of(st.integers(0, 100).map(float), st.integers(0, 100_000).map(lambda k: k / 1000.0))  # mm
polyline = st.lists(st.tuples(coord, coord), min_size=2, max_size=7)
small = st.integers(0, 20).map(float)  # integer segments: touches and collinear overlaps are exact


def distinct(values, tol=1e-9):
    out = []
    for v in sorted(np.asarray(values, dtype=float).tolist()):
        if not out or v > out[-1] + tol:
            out.append(v)
    return out


def shifted(points):
    return np.asarray(points, dtype=float) + np.array([X0, Y0])


def union(intervals, gap=0.0):
    """Brute-force union of float intervals, joining those at most ``gap`` apart."""
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def uncovered(xs, ys):
    """Length of the union of ``xs`` that the union of ``ys`` leaves uncovered."""
    ys = union(ys)
    return sum((e - s) - sum(max(0.0, min(e, ye) - max(s, ys_)) for ys_, ye in ys) for s, e in union(xs))


def oracle(a, targets, r):
    """Chainage intervals of polyline ``a`` inside GEOS's buffer of radius ``r`` around the targets.

    Per (segment of ``a``, target segment or point) pair: a straight segment meets the buffer's polygon in pieces
    whose ends project onto it without ambiguity, and a buffer of a single segment or point is never simplified
    (GEOS simplifies the input line of a longer buffer by up to 1% of ``r``).
    """
    out = []
    chainage = 0.0
    for p, q in itertools.pairwise(a):
        seg = shapely.LineString([p, q])
        if seg.length == 0:
            continue
        for c, d in targets:
            zone = shapely.buffer(shapely.Point(c) if np.array_equal(c, d) else shapely.LineString([c, d]), r,
                                  quad_segs=QUAD)
            for piece in shapely.get_parts(shapely.intersection(seg, zone)):
                if piece.geom_type == "LineString" and piece.length > 0:
                    ends = shapely.line_locate_point(seg, shapely.points(shapely.get_coordinates(piece)[[0, -1]]))
                    out.append((chainage + ends.min(), chainage + ends.max()))
        chainage += seg.length
    return out


def within(a, targets, labels, d):
    lines = Lines(np.array([shapely.LineString(a)], dtype=object))
    ca = np.array([c for c, _ in targets])
    cb = np.array([d_ for _, d_ in targets])
    return lines.within(ca, cb, np.asarray(labels, dtype=object), d)


def targets_of(polylines, points):
    """Target segments of each polyline (a single point when ``points``), with the polyline's label."""
    targets, labels = [], []
    for i, pl in enumerate(polylines):
        xy = shifted(pl)
        pairs = [(p, p) for p in xy] if points else list(itertools.pairwise(xy))
        targets += pairs
        labels += [f"T{i}"] * len(pairs)
    return targets, labels


def sandwiched(a, targets, got, d):
    """Whether the engine's intervals hold GEOS's inscribed buffer and lie in its circumscribed one."""
    found = list(zip(got.start.tolist(), got.end.tolist(), strict=True))
    return (uncovered(oracle(a, targets, d), found) <= TOL
            and uncovered(found, oracle(a, targets, d * OUTER)) <= TOL)


# --------------------------------------------------------------------------- within: exact distances along a line
@settings(max_examples=120, deadline=None)
@given(a=polyline, polylines=st.lists(polyline, min_size=1, max_size=3), d=st.floats(0.5, 40.0),
       points=st.booleans())
def test_within_is_what_geos_buffers_cut_from_the_line(a, polylines, d, points):
    a = shifted(a)
    targets, labels = targets_of(polylines, points)
    got = within(a, targets, labels, d)
    assert (got.part == 0).all()
    assert (np.diff(got.start) > 0).all()
    assert (got.end - got.start > 1e-6).all()
    assert (got.start[1:] > got.end[:-1]).all()  # maximal: no two touch
    assert sandwiched(a, targets, got, d)
    # each interval is triggered by exactly the targets that reach it
    inner, outer = {}, {}
    for label in set(labels):
        mine = [t for t, lab in zip(targets, labels, strict=True) if lab == label]
        inner[label], outer[label] = union(oracle(a, mine, d)), union(oracle(a, mine, d * OUTER))
    for s, e, trig in zip(got.start, got.end, got.trigger, strict=True):
        names = trig.split(",")
        assert names == sorted(set(names))
        for label in inner:
            if label in names:
                assert any(x <= e + TOL and y >= s - TOL for x, y in outer[label]), (label, s, e)
            else:
                assert uncovered([(s, e)], inner[label]) >= e - s - TOL, (label, s, e)


@pytest.mark.parametrize("wrong", [0.99, 1.01])
def test_the_oracle_tells_a_wrong_distance(wrong):
    a = shifted([(0, 0), (100, 30), (40, 90)])
    targets, labels = targets_of([[(50, 0), (60, 80)], [(10, 50)]], points=False)
    assert sandwiched(a, targets, within(a, targets, labels, 20.0), 20.0)
    assert not sandwiched(a, targets, within(a, targets, labels, 20.0 * wrong), 20.0)


@settings(max_examples=200, deadline=None)
@given(ab=st.lists(st.tuples(coord, coord), min_size=2, max_size=2), cd=st.lists(st.tuples(coord, coord), min_size=2,
       max_size=2), d=st.floats(0.1, 60.0), point=st.booleans())
def test_capsule_interval_bounds_exactly_the_points_within_the_distance(ab, cd, d, point):
    A, B = shifted(ab)
    C, D = shifted(cd)
    assume(not np.array_equal(A, B))  # the engine's segments have length
    if point:
        D = C
    lo, hi = linework.capsule_interval(A[None], B[None], C[None], D[None], d)
    target = shapely.Point(C) if point else shapely.LineString([C, D])
    t = np.linspace(0.0, 1.0, 101)
    dist = shapely.distance(shapely.points(A + t[:, None] * (B - A)), target)
    scale = 1e-9 * (1.0 + np.hypot(*(B - A)))
    if not np.isfinite(lo[0]):
        assert (dist > d - 1e-7).all()
        return
    assert 0.0 <= lo[0] <= hi[0] <= 1.0
    inside = (t >= lo[0] + scale) & (t <= hi[0] - scale)
    outside = (t < lo[0] - scale) | (t > hi[0] + scale)
    assert (dist[inside] <= d + 1e-7).all()
    assert (dist[outside] > d - 1e-7).all()
    ends = shapely.distance(shapely.points(A + np.array([lo[0], hi[0]])[:, None] * (B - A)), target)
    assert (ends <= d + 1e-7).all()
    if lo[0] > 0.0:
        assert ends[0] == pytest.approx(d, abs=1e-7)  # the interval ends where the distance reaches d
    if hi[0] < 1.0:
        assert ends[1] == pytest.approx(d, abs=1e-7)


# --------------------------------------------------------------------------- chainage, substrings and points
@settings(max_examples=100, deadline=None)
@given(a=polyline, cuts=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
def test_substrings_and_points_are_shapelys(a, cuts):
    line = shapely.LineString(shifted(a))
    lines = Lines(np.array([line], dtype=object))
    if line.length == 0:
        assert len(lines.parts) == 0
        return
    s, e = sorted(c * line.length for c in cuts)
    piece = lines.substrings(np.array([0]), np.array([s]), np.array([e]))[0]
    assert piece.length == pytest.approx(e - s, abs=1e-7)
    if e - s > 1e-6:
        assert shapely.hausdorff_distance(piece, shapely.ops.substring(line, s, e)) < 1e-7
    at = lines.points_at(lines.base[0] + np.array([s, e]))
    want = shapely.get_coordinates(shapely.line_interpolate_point(line, [s, e]))
    assert np.allclose(at, want, rtol=0, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(layer=st.lists(st.one_of(st.none(), polyline, st.lists(polyline, min_size=1, max_size=3)), max_size=5))
def test_lines_keeps_every_part_with_its_owner_and_chainage(layer):
    def geom(g):
        if g is None:
            return None
        if isinstance(g[0], tuple):
            return shapely.LineString(shifted(g))
        return shapely.MultiLineString([shifted(p) for p in g])

    geoms = np.array([geom(g) for g in layer] + [shapely.LineString()], dtype=object)
    lines = Lines(geoms)
    for i, g in enumerate(geoms):
        want = 0.0 if g is None else shapely.length(g)
        assert lines.part_len[lines.owner == i].sum() == pytest.approx(want, abs=1e-7)
    assert (lines.part_len > 0).all()
    assert np.allclose(lines.part_len, shapely.length(lines.parts), rtol=0, atol=1e-7)
    assert (lines.seg_len > 0).all()
    # every segment sits in its part at its chainage
    mid = lines.seg_ch0 + lines.seg_len / 2.0
    at = shapely.line_interpolate_point(lines.parts[lines.seg_part], mid)
    assert np.allclose(shapely.get_coordinates(at), (lines.seg_a + lines.seg_b) / 2.0, rtol=0, atol=1e-7)
    assert np.allclose(lines.points_at(lines.base[lines.seg_part] + mid), (lines.seg_a + lines.seg_b) / 2.0,
                       rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- Intervals: merging is a union
eighths = st.integers(0, 200).map(lambda k: k / 8.0)  # exact floats: gaps are 0 or at least 1/8, never borderline


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(1, 20), min_size=1, max_size=3),
       raw=st.lists(st.tuples(st.integers(0, 2), eighths, eighths, st.sampled_from(["a", "b", "T10", "T2"])),
                    max_size=12))
def test_merge_is_the_union_per_part_with_the_labels_of_its_pieces(lengths, raw):
    lines = Lines(np.array([shapely.LineString([(X0, Y0 + 10 * k), (X0 + n, Y0 + 10 * k)])
                            for k, n in enumerate(lengths)], dtype=object))
    # 0 <= start <= end <= the part's length, as every caller gives them
    raw = [(p % len(lengths), *sorted(min(x, lengths[p % len(lengths)]) for x in (s, s + w)), lab)
           for p, s, w, lab in raw]
    got = lines.merge(np.array([r[0] for r in raw], dtype=np.intp), np.array([r[1] for r in raw]),
                      np.array([r[2] for r in raw]), np.array([r[3] for r in raw], dtype=object))
    want = []
    for p in range(len(lengths)):
        mine = [(s, e, lab) for q, s, e, lab in raw if q == p]
        for s, e in union([(s, e) for s, e, _ in mine], gap=1e-7):
            if e - s > 1e-6:  # a point (or a hair) is no section
                want.append((p, s, e, ",".join(sorted({lab for x, y, lab in mine if s <= x and y <= e}))))
    assert list(zip(got.part.tolist(), got.start.tolist(), got.end.tolist(), got.trigger.tolist(),
                    strict=True)) == want


def test_no_intervals():
    empty = Intervals.empty()
    assert len(empty) == 0
    lines = Lines(np.array([shapely.LineString([(0, 0), (1, 0)])], dtype=object))
    assert len(lines.merge(np.empty(0, np.intp), np.empty(0), np.empty(0), np.empty(0, object))) == 0
    assert len(lines.within(np.empty((0, 2)), np.empty((0, 2)), np.empty(0, object), 5.0)) == 0


# --------------------------------------------------------------------------- small helpers
@settings(max_examples=150, deadline=None)
@given(pts=st.lists(st.tuples(small, small), min_size=4, max_size=4).filter(lambda p: p[0] != p[1] and p[2] != p[3]))
def test_segment_hits_are_geos_intersections(pts):
    A, B, C, D = (np.array(p, dtype=float) for p in pts)
    t, at = linework.segment_hits(A[None], B[None], C[None], D[None])
    assert (at == 0).all()
    ab = shapely.LineString([A, B])
    meet = shapely.intersection(ab, shapely.LineString([C, D]))  # empty, a point, or the collinear overlap
    want = shapely.line_locate_point(ab, shapely.points(shapely.get_coordinates(meet)), normalized=True)
    assert distinct(t) == pytest.approx(distinct(want), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(0, 5), max_size=8), firsts=st.lists(st.integers(0, 50), min_size=8, max_size=8))
def test_ranges_are_the_ranges(counts, firsts):
    first = np.array(firsts[:len(counts)], dtype=np.intp)
    values, which = linework.ranges(first, np.array(counts, dtype=np.intp))
    assert values.tolist() == [f + j for f, c in zip(first.tolist(), counts, strict=True) for j in range(c)]
    assert which.tolist() == [i for i, c in enumerate(counts) for _ in range(c)]


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 4), small, small), max_size=12))
def test_grouped_unions_each_group_as_union_all_does(items):
    geoms = np.array([shapely.box(x, y, x + 3, y + 2) for _, x, y in items], dtype=object)
    groups = np.array([g for g, _, _ in items], dtype=np.intp)
    got = linework.grouped(geoms, groups, 5, shapely.union_all, shapely.Polygon())
    for g in range(5):
        want = shapely.union_all(geoms[groups == g])
        assert got[g].is_empty == want.is_empty
        assert shapely.symmetric_difference(got[g], want).area < 1e-9


def test_union_lines_and_lines_only_merge_what_touches():
    a = shapely.LineString([(0, 0), (5, 0)])
    b = shapely.LineString([(5, 0), (5, 5)])
    merged = linework.union_lines(np.array([[a, b]], dtype=object), axis=1)[0]
    assert merged.geom_type == "LineString"
    assert merged.length == pytest.approx(10.0)
    pieces = shapely.intersection(np.array([shapely.MultiLineString([a, b]), a], dtype=object),
                                  shapely.box(-1, -1, 6, 3))
    out, owner = linework.lines_only(np.append(pieces, shapely.Point(0, 0)), np.array([7, 8, 9]))
    assert owner.tolist() == [7, 8]
    assert [g.geom_type for g in out] == ["LineString", "LineString"]
    assert [g.length for g in out] == pytest.approx([8.0, 5.0])
    starts, ends = linework.segments_of(out)
    assert starts.tolist() == [[0, 0], [5, 0], [0, 0]]
    assert ends.tolist() == [[5, 0], [5, 3], [5, 0]]
