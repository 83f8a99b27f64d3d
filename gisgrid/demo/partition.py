"""The town outline and its exact partition into grids (Voronoi cells) and villages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely import Point, Polygon

from gisgrid.demo.names import _VILLAGE_FIRST, _VILLAGE_SECOND, _width
from gisgrid.demo.scales import _GRID_SIZE, _Scale


def _outline(rng: np.random.Generator, spec: _Scale, centre: tuple[float, float]) -> Polygon:
    """Irregular, smooth town outline: a perturbed super-ellipse of width x height."""
    n = spec.outline_vertices
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    expo = 2.0 / 3.0
    x = np.sign(c) * np.abs(c) ** expo
    y = np.sign(s) * np.abs(s) ** expo
    radial = np.ones(n)
    for k in range(2, 7):
        radial += rng.uniform(0.015, 0.06) / k**0.5 * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    radial += rng.uniform(-0.006, 0.006, size=n)
    pts = np.column_stack([x * radial * spec.width_m / 2, y * radial * spec.height_m / 2])
    ang = math.radians(rng.uniform(-8.0, 8.0))
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    pts = pts @ rot.T + np.asarray(centre)
    poly = shapely.set_precision(Polygon(np.round(pts, 2)), _GRID_SIZE)
    if not isinstance(poly, Polygon) or not poly.is_valid:
        msg = "demo outline is not a simple polygon"
        raise RuntimeError(msg)
    return poly


def _lattice(rng: np.random.Generator, bounds: tuple[float, ...], spacing: float,
             jitter: float) -> np.ndarray:
    """Jittered hexagonal lattice of points covering ``bounds`` with a margin."""
    x0, y0, x1, y1 = bounds
    dy = spacing * math.sqrt(3.0) / 2.0
    ys = np.arange(y0 - 2 * dy, y1 + 2 * dy, dy)
    xs = np.arange(x0 - 2 * spacing, x1 + 2 * spacing, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(len(ys)) % 2)[:, None] * spacing / 2.0
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    return pts + rng.uniform(-jitter, jitter, size=pts.shape) * spacing


def _partition(rng: np.random.Generator, spec: _Scale,
               outline: Polygon) -> tuple[np.ndarray, np.ndarray, float]:
    """Clip a Voronoi diagram of jittered seeds to the outline: the clean grid coverage."""
    spacing = math.sqrt(outline.area / (spec.n_grids * math.sqrt(3.0) / 2.0))
    pts = _lattice(rng, outline.bounds, spacing, 0.3)
    shapely.prepare(outline)
    pts = pts[shapely.contains_xy(outline, pts[:, 0], pts[:, 1])]
    x0, y0, x1, y1 = outline.bounds
    frame = shapely.box(x0 - 5 * spacing, y0 - 5 * spacing, x1 + 5 * spacing, y1 + 5 * spacing)
    vor = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, ordered=True)
    cells = shapely.get_parts(vor)
    inside = shapely.contains_properly(outline, cells)
    clipped = cells.copy()
    clipped[~inside] = shapely.intersection(cells[~inside], outline)
    clipped = shapely.set_precision(clipped, _GRID_SIZE)

    parts, owner = shapely.get_parts(clipped, return_index=True)
    keep_type = shapely.get_type_id(parts) == 3
    parts, owner = parts[keep_type], owner[keep_type]
    area = shapely.area(parts)
    min_area = 0.2 * float(np.median(area))
    holds_seed = shapely.contains_xy(parts, pts[owner, 0], pts[owner, 1])
    main = holds_seed & (area >= min_area)
    parts = _merge_orphans(parts, main)
    out = parts[main]
    seeds = pts[owner[main]]
    return out, seeds, spacing


def _merge_orphans(parts: np.ndarray, main: np.ndarray) -> np.ndarray:
    """Union every non-main part into the main part it shares the longest border with."""
    parts = parts.copy()
    orphans = [int(i) for i in np.flatnonzero(~main)]
    if not orphans:
        return parts
    edges = _edge_table(parts)
    pairs = _shared_pairs(edges)
    root = np.arange(len(parts))
    for _ in range(len(orphans) + 1):
        left = []
        for o in orphans:
            near = pairs[(pairs["a"] == o) | (pairs["b"] == o)]
            best, best_len = -1, 0.0
            for a, b, length in near[["a", "b", "length"]].itertuples(index=False):
                other = root[b if a == o else a]
                if main[other] and length > best_len:
                    best, best_len = int(other), float(length)
            if best < 0:
                left.append(o)
                continue
            parts[best] = shapely.coverage_union_all([parts[best], parts[o]])
            root[o] = best
        if not left:
            break
        if len(left) == len(orphans):
            msg = "demo partition: an outline fragment touches no grid"
            raise RuntimeError(msg)
        orphans = left
    return parts


def _edge_table(polys: np.ndarray) -> pd.DataFrame:
    """One row per exterior-ring segment, keyed by its 1 cm-rounded endpoints (sorted)."""
    rings = shapely.get_exterior_ring(polys)
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    key = np.rint(xy / _GRID_SIZE).astype(np.int64)
    same = idx[:-1] == idx[1:]
    a, b = key[:-1][same], key[1:][same]
    owner = idx[:-1][same]
    length = np.hypot(*(xy[1:][same] - xy[:-1][same]).T)
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    hi = np.where(swap[:, None], a, b)
    table = pd.DataFrame(
        {"x1": lo[:, 0], "y1": lo[:, 1], "x2": hi[:, 0], "y2": hi[:, 1], "owner": owner,
         "length": length}
    )
    return table[table["length"] > 0].reset_index(drop=True)


def _shared_pairs(edges: pd.DataFrame) -> pd.DataFrame:
    """Segments shared by two polygons: a < b, the segment's keys and length."""
    keys = ["x1", "y1", "x2", "y2"]
    merged = edges.merge(edges[[*keys, "owner"]], on=keys, suffixes=("", "_b"))
    merged = merged[merged["owner"] < merged["owner_b"]]
    out = merged.rename(columns={"owner": "a", "owner_b": "b"})[["a", "b", *keys, "length"]]
    return out.sort_values(["a", "b", *keys]).reset_index(drop=True)


def _check_coverage(cells: np.ndarray, boundary: shapely.Geometry) -> None:
    """Raise if the clean grids are not an exact, gap-free coverage of ``boundary``."""
    if not bool(shapely.coverage_is_valid(cells)):
        bad = int((~shapely.is_empty(shapely.coverage_invalid_edges(cells))).sum())
        msg = f"demo grids are not a valid coverage ({bad} cells with invalid edges)"
        raise RuntimeError(msg)
    total = float(shapely.area(cells).sum())
    if not isinstance(boundary, Polygon) or len(boundary.interiors):
        msg = "demo grid union is not one polygon without holes"
        raise RuntimeError(msg)
    if abs(total - boundary.area) > 1e-6 * boundary.area:
        msg = f"demo grids cover {total:.1f} m² of a {boundary.area:.1f} m² town"
        raise RuntimeError(msg)


# --------------------------------------------------------------------------- villages
def _villages(rng: np.random.Generator, spec: _Scale, outline: Polygon, cells: np.ndarray,
              cell_seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign cells to the nearest village seed, then make every village one piece."""
    # village seeds keep clear of the outline; size the lattice for the inner area
    spacing = math.sqrt(outline.area / (spec.n_villages * math.sqrt(3.0) / 2.0))
    inner = shapely.buffer(outline, -0.3 * spacing)
    spacing = math.sqrt(inner.area / (spec.n_villages * math.sqrt(3.0) / 2.0))
    inner = shapely.buffer(outline, -0.3 * spacing)
    pts = _lattice(rng, outline.bounds, spacing, 0.25)
    shapely.prepare(inner)
    pts = pts[shapely.contains_xy(inner, pts[:, 0], pts[:, 1])]
    tree = shapely.STRtree(shapely.points(pts))
    near = tree.query_nearest(shapely.points(cell_seeds), all_matches=False)
    assign = np.empty(len(cell_seeds), dtype=np.int64)
    assign[near[0]] = near[1]
    pairs = _shared_pairs(_edge_table(cells))
    for _ in range(20):
        changed = False
        for v in range(len(pts)):
            members = np.flatnonzero(assign == v)
            if len(members) == 0:
                continue
            union = shapely.coverage_union_all(cells[members])
            comps = shapely.get_parts(union)
            if len(comps) <= 1:
                continue
            order = np.argsort(-shapely.area(comps), kind="stable")
            reps = shapely.point_on_surface(cells[members])
            for comp in comps[order[1:]]:
                moved = members[shapely.within(reps, comp)]
                _reassign(moved, assign, pairs, v)
                changed = True
        if not changed:
            break
    used = np.unique(assign)
    remap = -np.ones(len(pts), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[assign], pts[used]


def _reassign(moved: np.ndarray, assign: np.ndarray, pairs: pd.DataFrame, old: int) -> None:
    """Give a detached group of cells to the neighbouring village sharing most border."""
    inside = np.zeros(len(assign), dtype=bool)
    inside[moved] = True
    a, b, length = pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["length"].to_numpy()
    # border segments between the group and cells of other villages, seen from either side
    cross_ab = inside[a] & ~inside[b]
    cross_ba = inside[b] & ~inside[a]
    other = np.concatenate([assign[b[cross_ab]], assign[a[cross_ba]]])
    shared = np.concatenate([length[cross_ab], length[cross_ba]])
    ok = other != old
    if ok.any():
        score = np.bincount(other[ok], weights=shared[ok])
        assign[moved] = int(np.argmax(score))


def _village_frames(rng: np.random.Generator, spec: _Scale, cells: np.ndarray,
                    cell_seeds: np.ndarray, assign: np.ndarray, village_seeds: np.ndarray,
                    centre: tuple[float, float]) -> dict[str, Any]:
    """Order villages and grids north-west first; name them; union the village polygons."""
    n = len(village_seeds)
    polys = np.array([shapely.coverage_union_all(cells[assign == v]) for v in range(n)],
                     dtype=object)
    if (shapely.get_type_id(polys) != 3).any():
        msg = "demo: a village is not one polygon"
        raise RuntimeError(msg)
    cent = shapely.get_coordinates(shapely.centroid(polys))
    order = np.lexsort((cent[:, 0], -np.round(cent[:, 1] / 1000.0)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    polys = polys[order]
    seeds = village_seeds[order]
    assign = rank[assign]

    width = _width(n, 2)
    village_ids = [f"V{i + 1:0{width}d}" for i in range(n)]
    pool = sorted({a + b for a in _VILLAGE_FIRST for b in _VILLAGE_SECOND if a != b} - {"东社"})
    bases = [str(x) for x in rng.choice(pool, size=n, replace=False)]
    dist = np.hypot(seeds[:, 0] - centre[0], seeds[:, 1] - centre[1])
    community = np.zeros(n, dtype=bool)
    hub = int(np.argmin(dist))
    bases[hub] = "东社"
    community[hub] = True
    extra = [int(i) for i in np.argsort(dist, kind="stable")[1:] if not community[i]]
    step = max(1, len(extra) // max(1, spec.n_communities - 1))
    for i in extra[::step][: spec.n_communities - 1]:
        community[i] = True
    names = [f"{b}社区" if community[i] else f"{b}村" for i, b in enumerate(bases)]

    # village centres: the seed if well inside, else a point on surface
    centres = np.empty((n, 2))
    for v in range(n):
        p = Point(seeds[v])
        if polys[v].contains(p) and polys[v].exterior.distance(p) > 200:
            centres[v] = seeds[v]
        else:
            centres[v] = shapely.get_coordinates(polys[v].point_on_surface())[0]

    # grids: by village, then north-west first inside the village
    gorder = np.lexsort((cell_seeds[:, 0], -np.round(cell_seeds[:, 1] / 100.0), assign))
    cells = cells[gorder]
    cell_seeds = cell_seeds[gorder]
    assign = assign[gorder]
    per_village = np.bincount(assign, minlength=n)
    gwidth = _width(int(per_village.max()), 2)
    counter = np.zeros(n, dtype=np.int64)
    grid_ids, grid_names = [], []
    for v in assign:
        counter[v] += 1
        grid_ids.append(f"{village_ids[v]}-G{counter[v]:0{gwidth}d}")
        grid_names.append(f"{names[v]}第{counter[v]}网格")
    return {
        "cells": cells, "cell_seeds": cell_seeds, "grid_village": assign,
        "village_polys": polys, "village_ids": village_ids, "village_bases": bases,
        "village_names": names, "community": community, "centres": centres,
        "grid_ids": grid_ids, "grid_names": grid_names, "hub": hub,
    }
