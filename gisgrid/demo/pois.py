"""Must-check points, each strictly inside one grid, and the schools standing in planted gaps.

Clinics, schools, kindergartens and markets per village, water intakes on the town rivers and
town entrances where the main roads cross the boundary.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import LineString, Point, Polygon

from gisgrid.demo.plant import _Planter


def _pois(rng: np.random.Generator, plant: _Planter, centres: np.ndarray, bases: list[str],
          village_names: list[str], rivers: np.ndarray, river_names: list[str],
          river_levels: list[str], main_lines: list[LineString], boundary: Polygon,
          centre: tuple[float, float]) -> list[tuple[str, str, Point]]:
    """Must-check points; every one strictly inside one grid, clear of planted zones."""
    tree = shapely.STRtree(plant.cells)
    zones = shapely.union_all([z for z, _ in plant.zones]) if plant.zones else None
    rings = shapely.get_exterior_ring(plant.cells)

    def ok(p: Point) -> bool:
        hit = tree.query(p, predicate="within")
        if len(hit) != 1 or shapely.distance(p, rings[int(hit[0])]) < 3.0:
            return False
        return zones is None or zones.distance(p) >= 10.0

    offsets = [(0.0, 0.0)] + [
        (r * math.cos(a), r * math.sin(a))
        for r in (15.0, 30.0, 60.0, 120.0, 200.0)
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ]

    def near(base: np.ndarray) -> Point:
        for dx, dy in offsets:
            p = Point(round(base[0] + dx, 2), round(base[1] + dy, 2))
            if ok(p):
                return p
        msg = "demo: no place for a must-check point"
        raise RuntimeError(msg)

    def along(line: LineString, start: float, step: float) -> Point | None:
        d = start
        while 0 <= d <= line.length:
            q = line.interpolate(d)
            p = Point(round(q.x, 2), round(q.y, 2))
            if ok(p):
                return p
            d += step
        return None

    out: list[tuple[str, str, Point]] = []
    for v in range(len(centres)):
        c = centres[v]
        is_comm = village_names[v].endswith("社区")

        def around(r0: float, r1: float, c: np.ndarray = c) -> np.ndarray:
            ang = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(r0, r1)
            return c + r * np.array([math.cos(ang), math.sin(ang)])

        out.append(("clinic", f"{village_names[v]}卫生室", near(around(40, 150))))
        if is_comm or v % 3 == 0:
            out.append(("school", f"{bases[v]}小学", near(around(150, 350))))
        if is_comm or v % 3 == 1:
            out.append(("kindergarten", f"{bases[v]}幼儿园", near(around(100, 300))))
        if is_comm or v % 5 == 2:
            out.append(("market", f"{bases[v]}农贸市场", near(around(50, 200))))
    for i, (river, level) in enumerate(zip(rivers, river_levels, strict=True)):
        if level != "town":
            continue
        p = along(river, river.length * rng.uniform(0.3, 0.7), 25.0)
        if p is not None:
            out.append(("water_intake", f"{river_names[i]}取水口", p))
    k = 0
    for line in main_lines:
        for part in shapely.get_parts(shapely.intersection(line, boundary)):
            if part.geom_type != "LineString" or part.length < 200:
                continue
            for end, start, step in ((part.coords[0], 30.0, 10.0),
                                     (part.coords[-1], part.length - 30.0, -10.0)):
                if boundary.exterior.distance(Point(end)) > 1e-3:
                    continue
                p = along(part, start, step)
                if p is None:
                    continue
                k += 1
                direction = _direction(np.array(end) - np.asarray(centre))
                out.append(("town_entrance", f"{direction}{k}号镇入口", p))
    # the schools standing in the gaps without a lane
    for rec in plant.gaps[plant.spec.n_defects :]:
        zone = rec["zone"]
        p = zone.centroid
        p = Point(round(p.x, 2), round(p.y, 2))
        village = int(plant.grid_village[rec["a"]])
        rec["poi_index"] = len(out)
        out.append(("school", f"{bases[village]}新村小学", p))
    return out


def _direction(vec: np.ndarray) -> str:
    ang = math.degrees(math.atan2(vec[1], vec[0])) % 360
    return ("东", "北", "西", "南")[int(((ang + 45) % 360) // 90)]
