"""Hand-digitising: every polygon redrawn on its own, as a township data clerk traces borders."""

from __future__ import annotations

import numpy as np
import shapely

#: Vertex spacing of hand-drawn borders, metres.
HAND_STEP_M = 10.0
#: Typical and largest offset of a hand-drawn vertex from the true border, metres:
#: two neighbours' borders are at most 2 x HAND_MAX_M apart, inside the default tolerance.
HAND_SIGMA_M = 0.25
HAND_MAX_M = 0.6


def hand_draw(polygons: np.ndarray, rng: np.random.Generator, *, step_m: float = HAND_STEP_M,
              sigma_m: float = HAND_SIGMA_M, max_m: float = HAND_MAX_M) -> np.ndarray:
    """Redraw each polygon on its own, as a data clerk tracing imagery would.

    Every exterior ring is densified to a vertex every ``step_m`` and each
    vertex is moved by a smooth random offset (a running mean of white noise
    over 7 vertices, scaled to ``sigma_m``) plus a little white noise, clipped
    to ``max_m``. A polygon that the noise would make invalid is drawn again
    with half the noise, and kept densified but unmoved if that fails too.

    Parameters
    ----------
    polygons
        Polygons without holes (object array), in metres.
    rng
        The noise stream.
    step_m, sigma_m, max_m
        Vertex spacing, typical and largest offset.

    Returns
    -------
    numpy.ndarray
        New polygons, coordinates rounded to the centimetre.
    """
    dense = shapely.segmentize(np.asarray(polygons, dtype=object), step_m)
    xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(dense), return_index=True)
    closing = np.r_[idx[1:] != idx[:-1], True]
    xy, idx = xy[~closing], idx[~closing]
    n = len(xy)
    white = rng.normal(0.0, 1.0, size=(n, 2))
    csum = np.vstack([np.zeros((1, 2)), np.cumsum(white, axis=0)])
    lo, hi = np.clip(np.arange(n) - 3, 0, n), np.clip(np.arange(n) + 4, 0, n)
    smooth = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    smooth *= sigma_m / max(float(smooth.std()), 1e-12)
    offset = smooth + rng.normal(0.0, sigma_m / 3.0, size=(n, 2))
    out = dense.copy()
    todo = np.ones(len(dense), dtype=bool)
    for scale in (1.0, 0.5):
        rows = todo[idx]
        moved = np.round(xy[rows] + np.clip(offset[rows] * scale, -max_m, max_m), 2)
        which, ring_of = np.unique(idx[rows], return_inverse=True)
        drawn = shapely.polygons(shapely.linearrings(moved, indices=ring_of))
        ok = shapely.is_valid(drawn) & (shapely.get_num_interior_rings(dense[which]) == 0)
        out[which[ok]] = drawn[ok]
        todo[which[ok]] = False
        if not todo.any():
            break
    return out
