"""Hand-drawn grids: gisgrid's tolerant engine against ``geopandas.overlay``, and where the time goes.

Usage::

    python benchmarks/bench_tolerance.py [--grids 5000] [--roads 20000] [--missing 0.02] [--repeat 3]

Builds a Voronoi partition of ``--grids`` grids, removes ``--missing`` of
them (the real gaps), then draws every remaining grid again on its own with
:func:`gisgrid.demo.hand_draw` (a vertex every 10 m, each off by a few
decimetres, as a township data clerk draws them). Roads are random
polylines plus roads along the true grid borders. On the same data it times

* ``uncovered_lines(roads, grids)`` with the default tolerance, against
  ``geopandas.overlay(roads, grids, how="difference")``;
* the same on the exact partition (no hand drawing, tolerance 0);
* ``partition_defects(grids, extent=boundary)`` with the tolerance, stage by stage.

and checks the answer against the truth known from the clean data: the
uncovered length inside the missing grids (and outside the town) must agree
within 1%, and no uncovered piece may lie away from a real gap (a noise
piece). It prints a table; the ratio column is overlay / gisgrid.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from gisgrid import settings
from gisgrid.demo import hand_draw
from gisgrid.geometry.coverage import partition_defects, uncovered_lines

CRS = "EPSG:4549"


def build(n_grids: int, n_roads: int, missing: float, seed: int = 11) -> dict[str, Any]:
    """Clean cells, the missing ones, the hand-drawn grids, the roads and the boundary."""
    rng = np.random.default_rng(seed)
    cell = 350.0
    radius = cell * np.sqrt(n_grids / np.pi)
    x0, y0 = 500_000.0, 3_400_000.0
    angle = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    wobble = 1 + 0.06 * np.sin(3 * angle + 1) + 0.03 * np.sin(7 * angle)
    boundary = shapely.Polygon(np.c_[x0 + radius * wobble * np.cos(angle), y0 + radius * wobble * np.sin(angle)])
    minx, miny, maxx, maxy = boundary.bounds
    seeds = rng.uniform([minx, miny], [maxx, maxy], size=(int(n_grids * 1.3), 2))
    seeds = seeds[shapely.contains_xy(boundary, seeds[:, 0], seeds[:, 1])][:n_grids]
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=boundary.buffer(cell)))
    cells = shapely.set_precision(shapely.intersection(cells, boundary), 0.01)
    cells = shapely.get_parts(cells)
    cells = cells[(shapely.get_type_id(cells) == 3) & (shapely.area(cells) > 100.0)]
    gone = np.zeros(cells.size, dtype=bool)
    gone[rng.choice(cells.size, size=max(1, int(missing * cells.size)), replace=False)] = True
    kept = cells[~gone]
    drawn = hand_draw(kept, np.random.default_rng(seed + 1))

    # roads: random polylines, and a quarter along the true borders between grids
    n_edge = n_roads // 4
    n_rand = n_roads - n_edge
    start = rng.uniform([minx, miny], [maxx, maxy], size=(n_rand, 2))
    steps = rng.normal(0, 80.0, size=(n_rand, 3, 2))
    coords = np.concatenate([start[:, None, :], start[:, None, :] + np.cumsum(steps, axis=1)], axis=1)
    rand = shapely.linestrings(coords.reshape(-1, 2), indices=np.repeat(np.arange(n_rand), 4))
    owner = rng.integers(0, kept.size, size=n_edge)
    xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(kept[owner]), return_index=True)
    counts = np.bincount(idx, minlength=n_edge)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) + (rng.random(n_edge) * np.maximum(counts - 3, 1)).astype(
        int)
    take = first[:, None] + np.arange(3)[None, :]
    along = shapely.linestrings(xy[take.ravel()], indices=np.repeat(np.arange(n_edge), 3))
    geoms = np.concatenate([rand, along])
    roads = gpd.GeoDataFrame({"road_id": np.arange(geoms.size)}, geometry=geoms, crs=CRS)
    return {"cells": cells, "gone": gone, "kept": kept, "drawn": drawn, "roads": roads, "boundary": boundary}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grids", type=int, default=5000)
    p.add_argument("--roads", type=int, default=20000)
    p.add_argument("--missing", type=float, default=0.02)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--stages", action="store_true", help="log where partition_defects spends its time")
    args = p.parse_args()
    if args.stages:
        logging.basicConfig(level=logging.DEBUG, format="    %(message)s")
        for name in ("gisgrid.geometry.tolerance", "gisgrid.geometry.coverage"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    d = build(args.grids, args.roads, args.missing)
    tol = settings.tolerance_m
    hand = gpd.GeoDataFrame({"grid_id": np.arange(d["drawn"].size)}, geometry=d["drawn"], crs=CRS)
    clean = gpd.GeoDataFrame({"grid_id": np.arange(d["kept"].size)}, geometry=d["kept"], crs=CRS)
    roads = d["roads"]
    print(f"{d['cells'].size} grids ({int(d['gone'].sum())} missing), {len(roads)} roads, "
          f"{shapely.get_num_coordinates(d['drawn']).mean():.0f} vertices per hand-drawn grid, tolerance {tol:g} m")

    # the truth, from the clean partition: what lies outside every kept clean cell
    kept_union = shapely.coverage_union_all(d["kept"])
    truth = shapely.length(shapely.difference(np.asarray(roads.geometry.values), kept_union)).sum()
    true_gaps = shapely.difference(d["boundary"], kept_union)

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, grids, tolerance_m in (("hand-drawn", hand, None), ("exact partition", clean, 0.0)):
            ours, t_ours = timed(lambda g=grids, t=tolerance_m: uncovered_lines(roads, g, tolerance_m=t),
                                 args.repeat)
            theirs, t_theirs = timed(lambda g=grids: gpd.overlay(roads, g, how="difference", keep_geom_type=True),
                                     args.repeat)
            ours_m = float(ours["length_m"].sum())
            theirs_m = float(shapely.length(np.asarray(theirs.geometry.values)).sum())
            # noise: pieces inside the town farther than the tolerance from every true gap
            shapely.prepare(d["boundary"])
            inside = shapely.covered_by(np.asarray(ours.geometry.values), d["boundary"])
            far = shapely.distance(np.asarray(ours.geometry.values), true_gaps) > tol
            rows.append((label, t_ours, t_theirs, len(ours), ours_m, len(theirs), theirs_m, int((inside & far).sum())))

    print(f"\ntruth (clean data): {truth:,.1f} m of road outside every grid\n")
    head = (f"{'grids':<17}{'gisgrid s':>10}{'overlay s':>10}{'ratio':>7}{'pieces':>8}{'metres':>12}"
            f"{'vs truth':>9}{'overlay pieces':>15}{'overlay m':>12}{'noise':>7}")
    print(head)
    print("-" * len(head))
    for label, t_o, t_t, n_o, m_o, n_t, m_t, noise in rows:
        print(f"{label:<17}{t_o:>10.2f}{t_t:>10.2f}{t_t / t_o:>6.1f}x{n_o:>8}{m_o:>12,.1f}"
              f"{(m_o - truth) / truth:>+9.2%}{n_t:>15}{m_t:>12,.1f}{noise:>7}")

    print("\npartition_defects(hand-drawn grids, extent=boundary), tolerance", tol)
    t = time.perf_counter()
    defects = partition_defects(hand, extent=d["boundary"], id_column="grid_id")
    total = time.perf_counter() - t
    real = defects[~defects["sliver"]]
    print(f"  {total:.2f} s: {len(real)} real gaps/overlaps ({real['area_m2'].sum():,.0f} m²), "
          f"{int(defects['sliver'].sum()):,} slivers ({defects.loc[defects['sliver'], 'area_m2'].sum():,.0f} m²) "
          f"absorbed; {int(d['gone'].sum())} grids were removed")


if __name__ == "__main__":
    main()
