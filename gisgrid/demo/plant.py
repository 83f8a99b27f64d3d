"""The planted defects, placed exactly into the clean partition.

Gaps and overlaps between grids, lanes through gaps, roads along grid edges, zero-width spikes,
unstaffed grids and reaches without a village chief.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely import LineString, Point, Polygon

from gisgrid.demo.lines import _RoadLines
from gisgrid.demo.scales import _GRID_SIZE, _Scale


class _Planter:
    """Chooses where the defects go and plants them, exactly, into the grid polygons."""

    def __init__(self, rng: np.random.Generator, spec: _Scale, cells: np.ndarray,
                 seeds: np.ndarray, grid_village: np.ndarray, pairs: pd.DataFrame,
                 on_edge: np.ndarray, spacing: float, roads: _RoadLines,
                 rivers: np.ndarray) -> None:
        self.rng = rng
        self.spec = spec
        self.cells = cells.copy()
        self.seeds = seeds
        self.grid_village = grid_village
        self.pairs = pairs
        self.on_edge = on_edge
        self.spacing = spacing
        self.blocked = np.zeros(len(cells), dtype=bool)
        protected = roads.lines[roads.classes != "lane"]
        self.major = shapely.STRtree(np.concatenate([protected, rivers]))
        self.any_road = shapely.STRtree(np.concatenate([roads.lines, rivers]))
        # planted records
        self.gaps: list[dict[str, Any]] = []
        self.overlaps: list[dict[str, Any]] = []
        self.zones: list[tuple[Polygon, str]] = []
        self.spiked: list[int] = []
        self.unstaffed_grids: list[int] = []
        self.reaches_dropped: list[int] = []
        self.neigh: dict[int, list[int]] = {}
        for a, b in zip(pairs["a"].to_numpy(), pairs["b"].to_numpy(), strict=True):
            self.neigh.setdefault(int(a), []).append(int(b))
            self.neigh.setdefault(int(b), []).append(int(a))

    # -------------------------------------------------------------- helpers
    def _block(self, *cells: int) -> None:
        for c in cells:
            self.blocked[c] = True
            for n in self.neigh.get(c, []):
                self.blocked[n] = True

    def _free(self, c: int) -> bool:
        return not self.blocked[c] and not self.on_edge[c]

    def _candidates(self) -> pd.DataFrame:
        p = self.pairs
        same = self.grid_village[p["a"].to_numpy()] == self.grid_village[p["b"].to_numpy()]
        long_enough = p["length"].to_numpy() >= 0.3 * self.spacing
        cand = p[same & long_enough]
        return cand.iloc[self.rng.permutation(len(cand))].reset_index(drop=True)

    def _shape(self, row: Any, into: int) -> dict[str, Any] | None:
        """A pentagon standing on the shared segment and reaching into cell ``into``."""
        s = np.array([row.x1, row.y1], dtype=float) * _GRID_SIZE
        t = np.array([row.x2, row.y2], dtype=float) * _GRID_SIZE
        d = t - s
        length = float(np.hypot(*d))
        e = d / length
        normal = np.array([-e[1], e[0]])
        if np.dot(self.seeds[into] - (s + t) / 2, normal) < 0:
            normal = -normal
        w = self.rng.uniform(0.12, 0.16) * self.spacing
        depth = self.rng.uniform(0.09, 0.12) * self.spacing
        u = self.rng.uniform(0.4, 0.6)
        m = s + e * length * u
        if u * length < w / 2 + 0.1 * length or (1 - u) * length < w / 2 + 0.1 * length:
            return None
        p1 = np.round(m - e * w / 2, 2)
        p2 = np.round(m + e * w / 2, 2)
        q1 = np.round(p1 + normal * depth + e * w * 0.12, 2)
        q2 = np.round(p2 + normal * depth - e * w * 0.12, 2)
        apex = np.round(m + normal * depth * 1.45 + e * w * self.rng.uniform(-0.15, 0.15), 2)
        zone = Polygon([p1, q1, apex, q2, p2])
        return {"s": s, "t": t, "p1": p1, "p2": p2, "path": np.array([p1, q1, apex, q2, p2]),
                "zone": shapely.normalize(zone), "normal": normal, "m": m, "depth": depth}

    def _fits(self, shape: dict[str, Any], a: int, b: int, into: int,
              strict: bool) -> tuple[Polygon, Polygon] | None:
        """Apply a shape to grid a (which changes) and b (which gains two vertices).

        Returns the new pair if the zone is a clean gap (in neither grid) or a clean
        overlap (in both), well away from the host's other edges and from roads and
        rivers (``strict``: all of them; else all but lanes, which are removed later).
        """
        zone = shape["zone"]
        host = self.cells[into]
        if not zone.is_valid or not shapely.within(zone, shapely.buffer(host, 0.05)):
            return None
        rest = _ring_without(host, shape["s"], shape["t"])
        if rest is None or shapely.distance(zone, rest) < 0.08 * self.spacing:
            return None
        tree = self.any_road if strict else self.major
        if len(tree.query(zone, predicate="dwithin", distance=25.0)):
            return None
        new_a = _insert(self.cells[a], shape["s"], shape["t"], shape["path"])
        new_b = _insert(self.cells[b], shape["s"], shape["t"], np.array([shape["p1"],
                                                                          shape["p2"]]))
        if new_a is None or new_b is None or not (new_a.is_valid and new_b.is_valid):
            return None
        inside = shapely.area(shapely.intersection(np.array([new_a, new_b]), zone))
        expect = 0.0 if into == a else zone.area  # gap: in neither; overlap: in both
        if np.abs(inside - expect).max() > 1e-3:
            return None
        return new_a, new_b

    # -------------------------------------------------------------- planting
    def gaps_and_overlaps(self) -> None:
        """Plant 2k gaps and k overlaps (k = spec.n_defects) between same-village grids."""
        k = self.spec.n_defects
        want = ["gap"] * (2 * k) + ["overlap"] * k
        cand = self._candidates()
        for strict in (True, False):
            for row in cand.itertuples(index=False):
                if not want:
                    break
                a, b = int(row.a), int(row.b)
                if not (self._free(a) and self._free(b)):
                    continue
                if self.rng.uniform() < 0.5:
                    a, b = b, a
                kind = want[0]
                # gap: cut from a, reaching into a; overlap: a grows into b
                into = a if kind == "gap" else b
                shape = self._shape(row, into)
                if shape is None:
                    continue
                fit = self._fits(shape, a, b, into, strict)
                if fit is None:
                    continue
                if kind == "gap" and not self._lane_fits(shape, a, b):
                    continue
                new_a, new_b = fit
                before = self.cells[a].area
                self.cells[a], self.cells[b] = new_a, new_b
                rec = {"a": a, "b": b, "zone": shape["zone"], "shape": shape,
                       "change": new_a.area - before}
                (self.gaps if kind == "gap" else self.overlaps).append(rec)
                self.zones.append((shape["zone"], kind))
                self._block(a, b)
                want.pop(0)
        if want:
            msg = f"demo: no room to plant {want}"
            raise RuntimeError(msg)

    def _lane_fits(self, shape: dict[str, Any], a: int, b: int) -> bool:
        """The planted lane must run from inside grid a through the gap into grid b."""
        lane = self._lane_geom(shape)
        start, end = Point(lane.coords[0]), Point(lane.coords[-1])
        return bool(
            self.cells[a].contains(start) and self.cells[a].exterior.distance(start) > 5.0
            and self.cells[b].contains(end) and self.cells[b].exterior.distance(end) > 5.0
        )

    def _lane_geom(self, shape: dict[str, Any]) -> LineString:
        n, m, depth = shape["normal"], shape["m"], shape["depth"]
        e = np.array([n[1], -n[0]])
        w = float(np.hypot(*(shape["p2"] - shape["p1"])))
        start = np.round(m + n * (depth * 1.45 + 0.12 * self.spacing) + e * 0.15 * w, 2)
        mid = np.round(m + n * depth * 0.5 + e * 0.05 * w, 2)
        end = np.round(m - n * 0.1 * self.spacing - e * 0.1 * w, 2)
        return LineString([start, mid, end])

    def gap_lanes(self, bases: list[str]) -> list[tuple[LineString, str, str]]:
        """The lanes through the first half of the gaps (the other half get a school)."""
        out = []
        for rec in self.gaps[: self.spec.n_defects]:
            lane = self._lane_geom(rec["shape"])
            rec["lane"] = lane
            village = int(self.grid_village[rec["a"]])
            out.append((lane, "lane", f"{bases[village]}断头巷"))
        return out

    def edge_roads(self, n: int, bases: list[str]) -> list[tuple[LineString, str, str]]:
        """Roads lying exactly along a shared grid edge (legitimate coverage)."""
        out: list[tuple[LineString, str, str]] = []
        p = self.pairs
        order = self.rng.permutation(len(p))
        for i in order:
            if len(out) >= n:
                break
            row = p.iloc[int(i)]
            a, b = int(row["a"]), int(row["b"])
            if self.blocked[a] or self.blocked[b] or row["length"] < 0.25 * self.spacing:
                continue
            s = _vertex(self.cells[a], row["x1"], row["y1"])
            t = _vertex(self.cells[a], row["x2"], row["y2"])
            if s is None or t is None:
                continue
            geom = LineString([s, t])
            if len(self.any_road.query(geom, predicate="dwithin", distance=5.0)):
                continue
            village = int(self.grid_village[a])
            out.append((geom, "village", f"{bases[village]}分界路"))
            self._block(a, b)
        return out

    def spikes(self) -> list[tuple[int, Polygon]]:
        """Zero-width inward spikes on k grids: invalid rings that repair to the intended grid."""
        out: list[tuple[int, Polygon]] = []
        for c in self.rng.permutation(len(self.cells)):
            if len(out) >= self.spec.n_defects:
                break
            c = int(c)
            if not self._free(c):
                continue
            ring = np.asarray(self.cells[c].exterior.coords)
            i = int(self.rng.integers(0, len(ring) - 1))
            v = ring[i]
            to_seed = self.seeds[c] - v
            dist = float(np.hypot(*to_seed))
            tip = np.round(v + to_seed / dist * min(0.12 * self.spacing, 0.4 * dist), 2)
            coords = np.vstack([ring[: i + 1], [tip, v], ring[i + 1 :]])
            spiked = Polygon(coords)
            fixed = shapely.make_valid(spiked, method="structure", keep_collapsed=False)
            if spiked.is_valid or fixed.geom_type != "Polygon":
                continue
            if shapely.symmetric_difference(fixed, self.cells[c]).area > 1e-6:
                continue
            out.append((c, spiked))
            self.spiked.append(c)
            self._block(c)
        return out

    def unstaffed(self) -> list[int]:
        """Grids whose roster will have members but no chief."""
        for c in self.rng.permutation(len(self.cells)):
            if len(self.unstaffed_grids) >= self.spec.n_defects:
                break
            if not self.blocked[int(c)]:
                self.unstaffed_grids.append(int(c))
                self._block(int(c))
        return self.unstaffed_grids

    def choose_reaches(self, reaches: pd.DataFrame) -> list[int]:
        """Reaches (rows of ``reaches``) whose village chief will be missing.

        Only a river that runs through the village in one contiguous piece, so the
        defect is one reach however the engine splits reaches.
        """
        per_river = reaches.groupby("river")["river"].transform("size")
        ok = reaches.index[(reaches["length"] >= 300.0) & (per_river >= 2)
                           & (reaches["pieces"] == 1)
                           & (shapely.get_type_id(reaches["geometry"].to_numpy()) == 1)]
        chosen: list[int] = []
        used_rivers: list[int] = []
        for i in self.rng.permutation(np.asarray(ok)):
            if len(chosen) >= self.spec.n_defects:
                break
            river = int(reaches.at[int(i), "river"])
            if river in used_rivers:
                continue
            chosen.append(int(i))
            used_rivers.append(river)
        self.reaches_dropped = sorted(chosen)
        return self.reaches_dropped


def _ring_without(poly: Polygon, s: np.ndarray, t: np.ndarray) -> LineString | None:
    """The exterior ring of ``poly`` minus its segment s-t, as one open line."""
    ring = np.asarray(poly.exterior.coords)[:-1]
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    ks = np.rint(s / _GRID_SIZE).astype(np.int64)
    kt = np.rint(t / _GRID_SIZE).astype(np.int64)
    i = np.flatnonzero((key == ks).all(axis=1))
    j = np.flatnonzero((key == kt).all(axis=1))
    if len(i) != 1 or len(j) != 1:
        return None
    n = len(ring)
    a, b = int(i[0]), int(j[0])
    if (a + 1) % n == b:  # s -> t: walk from t round to s
        idx = [(b + k) % n for k in range(n)]
    elif (b + 1) % n == a:
        idx = [(a + k) % n for k in range(n)]
    else:
        return None
    return LineString(ring[idx])


def _insert(poly: Polygon, s: np.ndarray, t: np.ndarray, path: np.ndarray) -> Polygon | None:
    """Insert ``path`` (ordered from s to t) between the ring vertices s and t."""
    ring = np.asarray(poly.exterior.coords)
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    ks = np.rint(s / _GRID_SIZE).astype(np.int64)
    kt = np.rint(t / _GRID_SIZE).astype(np.int64)
    for i in range(len(ring) - 1):
        if (key[i] == ks).all() and (key[i + 1] == kt).all():
            return Polygon(np.vstack([ring[: i + 1], path, ring[i + 1 :]]))
        if (key[i] == kt).all() and (key[i + 1] == ks).all():
            return Polygon(np.vstack([ring[: i + 1], path[::-1], ring[i + 1 :]]))
    return None


def _vertex(poly: Polygon, kx: int, ky: int) -> np.ndarray | None:
    """The exact ring coordinate whose 1 cm key is (kx, ky)."""
    ring = np.asarray(poly.exterior.coords)
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    hit = np.flatnonzero((key[:, 0] == kx) & (key[:, 1] == ky))
    return ring[int(hit[0])] if len(hit) else None
