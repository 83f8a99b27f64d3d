"""Grid colours: neighbouring grids never share a fill (greedy graph colouring over an STRtree)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

__all__ = ["colour_graph", "grid_colours"]


def colour_graph(n: int, i: np.ndarray, j: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Colour a graph so that no edge joins two equal colours (greedy, vectorised).

    Jones-Plassmann rounds: every uncoloured vertex whose priority (degree
    first, then a seeded random tie-break) beats all its uncoloured
    neighbours takes the smallest colour none of its neighbours has. The
    vertices chosen in one round are never adjacent, so each round is a few
    numpy operations over the edge list; planar maps need 4-6 colours.

    Parameters
    ----------
    n
        Number of vertices.
    i, j
        Edge end points (any order, duplicates and self-loops ignored).
    seed
        Tie-break seed (the result is deterministic).

    Returns
    -------
    ndarray of int
        Colour index per vertex, from 0.
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    keep = i != j
    i, j = np.concatenate([i[keep], j[keep]]), np.concatenate([j[keep], i[keep]])
    colours = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return colours
    deg = np.bincount(i, minlength=n)
    rng = np.random.default_rng(seed)
    prio = deg.astype(np.int64) * n + rng.permutation(n)
    while True:
        unc = colours < 0
        if not unc.any():
            break
        both = unc[i] & unc[j]
        beaten = np.zeros(n, dtype=bool)
        beaten[i[both & (prio[j] > prio[i])]] = True
        sel = unc & ~beaten
        width = int(colours.max()) + 2
        used = np.zeros((n, width), dtype=bool)
        e = sel[i] & (colours[j] >= 0)
        used[i[e], colours[j[e]]] = True
        idx = np.flatnonzero(sel)
        colours[idx] = np.argmin(used[idx], axis=1)
    return colours


def grid_colours(geoms: Any, *, distance: float = 1.0) -> np.ndarray:
    """Colour index per polygon so that polygons within ``distance`` of each other differ.

    Neighbours come from one ``STRtree`` query (``dwithin``), so grids that
    should touch but are separated by a sliver gap still get different colours.

    Parameters
    ----------
    geoms
        Polygons in a metric CRS (array-like or GeoSeries).
    distance
        Neighbour distance in CRS units.

    Returns
    -------
    ndarray of int
    """
    arr = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    tree = shapely.STRtree(arr)
    pairs = tree.query(arr, predicate="dwithin", distance=distance)
    return colour_graph(len(arr), pairs[0], pairs[1])
