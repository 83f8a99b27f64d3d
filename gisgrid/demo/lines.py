"""Rivers and roads: meandering polylines, from canals and main roads down to lanes, clipped to the town."""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely import LineString, Point, Polygon

from gisgrid.demo.names import _MAIN_ROAD_BASES, _RIVER_BASES, _ordinal, _width
from gisgrid.demo.scales import ANALYSIS_CRS, _Scale


@dataclass
class _Roads:
    """Road pieces before ids: coordinate arrays, classes and names."""

    coords: list[np.ndarray]
    classes: list[str]
    names: list[str]

    def add(self, coords: np.ndarray, road_class: str, name: str, every: int) -> None:
        """Split a polyline into pieces of ``every`` vertices and add them."""
        n = len(coords)
        for i in range(0, n - 1, every):
            piece = coords[i : min(i + every, n - 1) + 1]
            if len(piece) >= 2:
                self.coords.append(piece)
                self.classes.append(road_class)
                self.names.append(name)


def _meander(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, step: float,
             amp: float, waves: tuple[float, float], pin_ends: bool = True) -> np.ndarray:
    """Polyline from p0 to p1 with sinusoidal meanders of amplitude ``amp``."""
    d = p1 - p0
    length = float(np.hypot(*d))
    n = max(2, math.ceil(length / step) + 1)
    t = np.linspace(0.0, 1.0, n)
    normal = np.array([-d[1], d[0]]) / max(length, 1e-9)
    offset = np.zeros(n)
    for _ in range(2):
        wl = rng.uniform(*waves)
        offset += rng.uniform(0.4, 1.0) * amp * np.sin(2 * math.pi * t * length / wl
                                                       + rng.uniform(0, 2 * math.pi))
    if pin_ends:
        offset *= np.sin(math.pi * t) ** 0.5
    pts = p0 + t[:, None] * d + offset[:, None] * normal
    return np.round(pts, 2)


def _crossing(bounds: tuple[float, ...], through: np.ndarray,
              angle: float) -> tuple[np.ndarray, np.ndarray]:
    """End points of a straight line through ``through`` crossing all of ``bounds``."""
    x0, y0, x1, y1 = bounds
    reach = math.hypot(x1 - x0, y1 - y0)
    u = np.array([math.cos(angle), math.sin(angle)])
    return through - u * reach, through + u * reach


def _rivers(rng: np.random.Generator, spec: _Scale, boundary: Polygon,
            village_polys: np.ndarray) -> tuple[np.ndarray, list[str], list[str], list[float]]:
    """Main canals crossing the whole plain and minor rivers, each through several villages."""
    x0, y0, x1, y1 = boundary.bounds
    w, h = x1 - x0, y1 - y0
    tree = shapely.STRtree(village_polys)

    def clipped(coords: np.ndarray) -> LineString | None:
        """The longest part inside the town, if it runs >= 100 m through two villages."""
        geom = shapely.line_merge(shapely.intersection(LineString(coords), boundary))
        parts = [p for p in shapely.get_parts(geom) if p.geom_type == "LineString"]
        if not parts:
            return None
        longest = max(parts, key=lambda p: p.length)
        hit = tree.query(longest, predicate="intersects")
        through = shapely.length(shapely.intersection(longest, village_polys[hit]))
        if longest.length < 800.0 or int((through >= 100.0).sum()) < 2:
            return None
        return longest

    out: list[LineString] = []
    levels: list[str] = []
    widths: list[float] = []
    n_ew = (spec.n_main_rivers + 1) // 2
    n_ns = spec.n_main_rivers - n_ew
    for i in range(spec.n_main_rivers):
        if i < n_ew:
            frac = (i + 0.5 + rng.uniform(-0.25, 0.25)) / n_ew
            through = np.array([x0 + w / 2, y0 + frac * h])
            ang = math.radians(rng.uniform(-15, 15))
        else:
            frac = (i - n_ew + 0.5 + rng.uniform(-0.25, 0.25)) / max(n_ns, 1)
            through = np.array([x0 + frac * w, y0 + h / 2])
            ang = math.radians(90 + rng.uniform(-15, 15))
        a, b = _crossing(boundary.bounds, through, ang)
        line = clipped(_meander(rng, a, b, 60.0, rng.uniform(120, 350), (1500, 4000), False))
        width = round(float(rng.uniform(20, 40)), 1)
        if line is not None:
            out.append(line)
            levels.append("town")
            widths.append(width)
    for _ in range(spec.n_minor_rivers):
        for _attempt in range(30):
            start = np.array([rng.uniform(x0 + 0.1 * w, x1 - 0.1 * w),
                              rng.uniform(y0 + 0.1 * h, y1 - 0.1 * h)])
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(*spec.minor_river_km) * 1000.0
            end = start + length * np.array([math.cos(ang), math.sin(ang)])
            line = clipped(_meander(rng, start, end, 50.0, rng.uniform(60, 200), (800, 2500)))
            if line is not None:
                out.append(line)
                levels.append("village")
                widths.append(round(float(rng.uniform(8, 18)), 1))
                break
    order = np.argsort([-g.length for g in out], kind="stable")
    bases = [str(b) for b in rng.permutation(np.array(_RIVER_BASES))]
    names = []
    for i in range(len(out)):
        base = bases[i % len(bases)] + ("" if i < len(bases) else str(i // len(bases) + 1))
        names.append(base + ("河" if i % 3 else "港"))
    rivers = np.array([out[i] for i in order], dtype=object)
    return rivers, names, [levels[i] for i in order], [widths[i] for i in order]


def _roads(rng: np.random.Generator, spec: _Scale, boundary: Polygon, village_polys: np.ndarray,
           centres: np.ndarray, bases: list[str], community: np.ndarray, hub_index: int,
           spacing: float) -> tuple[_Roads, list[LineString]]:
    """Main roads, secondary roads between villages, village roads and lanes."""
    roads = _Roads([], [], [])
    x0, y0, x1, y1 = boundary.bounds
    w, h = x1 - x0, y1 - y0
    hub = centres[hub_index]
    main_lines: list[LineString] = []
    main_names = [f"{b}路" for b in rng.permutation(np.array(_MAIN_ROAD_BASES))]
    for i in range(spec.n_main_roads):
        if spec.n_main_roads <= 4:
            through = hub + rng.uniform(-400, 400, size=2)
            ang = math.radians(i * 180.0 / spec.n_main_roads + rng.uniform(-12, 12))
        else:
            through = np.array([rng.uniform(x0 + 0.15 * w, x1 - 0.15 * w),
                                rng.uniform(y0 + 0.15 * h, y1 - 0.15 * h)])
            ang = math.radians((i % 4) * 45.0 + rng.uniform(-15, 15))
        a, b = _crossing(boundary.bounds, through, ang)
        coords = _meander(rng, a, b, 50.0, rng.uniform(40, 120), (3000, 8000), False)
        name = main_names[i % len(main_names)]
        if i >= len(main_names):
            name = name.replace("路", f"{i // len(main_names) + 1}路")
        main_lines.append(LineString(coords))
        roads.add(coords, "main", name, 6)

    # secondary: minimum spanning tree of village centres plus a share of the other
    # Delaunay edges
    tri = shapely.delaunay_triangles(shapely.multipoints(centres), only_edges=True)
    segs = shapely.get_coordinates(shapely.get_parts(tri)).reshape(-1, 2, 2)
    tree = shapely.STRtree(shapely.points(centres))
    near = tree.query_nearest(shapely.points(segs.reshape(-1, 2)), all_matches=False)
    flat = np.empty(len(segs) * 2, dtype=np.int64)
    flat[near[0]] = near[1]
    ends = np.unique(np.sort(flat.reshape(-1, 2), axis=1), axis=0)
    lengths = np.hypot(*(centres[ends[:, 0]] - centres[ends[:, 1]]).T)
    order = np.argsort(lengths, kind="stable")
    parent = np.arange(len(centres))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    chosen = []
    extra_p = rng.uniform(size=len(order))
    for k, e in enumerate(order.tolist()):
        ia, ib = int(ends[e, 0]), int(ends[e, 1])
        ra, rb = find(ia), find(ib)
        if ra != rb:
            parent[ra] = rb
            chosen.append(e)
        elif extra_p[k] < 0.3 and lengths[e] < 2.2 * np.median(lengths):
            chosen.append(e)
    for e in sorted(chosen):
        ia, ib = int(ends[e, 0]), int(ends[e, 1])
        coords = _meander(rng, centres[ia], centres[ib], 40.0, rng.uniform(30, 90), (800, 2500))
        roads.add(coords, "secondary", f"{bases[ia]}{bases[ib]}路", 6)

    # settlements: centre of each village plus hamlets; village roads; lanes
    for v in range(len(centres)):
        poly = village_polys[v]
        shapely.prepare(poly)
        settlements = [centres[v]]
        n_ham = int(rng.integers(spec.hamlets[0], spec.hamlets[1] + 1))
        bx0, by0, bx1, by1 = poly.bounds
        for _ in range(60):
            if len(settlements) > n_ham:
                break
            p = np.array([rng.uniform(bx0, bx1), rng.uniform(by0, by1)])
            if not poly.contains(Point(p)):
                continue
            if min(math.hypot(*(p - q)) for q in settlements) < 0.9 * spacing:
                continue
            settlements.append(p)
        k_road = 0
        for p in settlements[1:]:
            k_road += 1
            coords = _meander(rng, p, centres[v], 30.0, rng.uniform(20, 60), (400, 1200))
            roads.add(coords, "village", f"{bases[v]}{_ordinal(k_road)}组路", 5)
        for _ in range(int(rng.integers(spec.radial_roads[0], spec.radial_roads[1] + 1))):
            k_road += 1
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.8, 1.8) * spacing
            end = centres[v] + length * np.array([math.cos(ang), math.sin(ang)])
            coords = _meander(rng, centres[v], end, 30.0, rng.uniform(15, 40), (400, 1200))
            roads.add(coords, "village", f"{bases[v]}{_ordinal(k_road)}组路", 5)
        k_lane = 0
        for j, p in enumerate(settlements):
            big = j == 0 and community[v]
            n_nodes = spec.centre_lattice if big else int(rng.integers(spec.lattice[0],
                                                                       spec.lattice[1] + 1))
            for piece in _lane_lattice(rng, p, n_nodes, rng.uniform(50, 80)):
                k_lane += 1
                roads.add(piece, "lane", f"{bases[v]}{k_lane}巷", 1)
        for _ in range(int(rng.integers(spec.field_lanes[0], spec.field_lanes[1] + 1))):
            k_lane += 1
            start = settlements[int(rng.integers(len(settlements)))]
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.4, 1.2) * spacing
            end = start + length * np.array([math.cos(ang), math.sin(ang)])
            coords = _meander(rng, start, end, 25.0, rng.uniform(5, 20), (300, 900))
            roads.add(coords, "lane", f"{bases[v]}{k_lane}号农路", 4)
    return roads, main_lines


def _lane_lattice(rng: np.random.Generator, centre: np.ndarray, n: int,
                  spacing: float) -> list[np.ndarray]:
    """Irregular lattice of short lanes around a settlement centre; one piece per edge."""
    ij = np.arange(n) - (n - 1) / 2.0
    gx, gy = np.meshgrid(ij * spacing, ij * spacing)
    nodes = np.stack([gx, gy], axis=-1) + rng.uniform(-0.18, 0.18, size=(n, n, 2)) * spacing
    ang = rng.uniform(0, math.pi / 2)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    nodes = nodes @ rot.T + centre
    nodes = np.round(nodes, 2)
    keep_h = rng.uniform(size=(n, n - 1)) < 0.8
    keep_v = rng.uniform(size=(n - 1, n)) < 0.8
    out = []
    for r in range(n):
        for c in range(n - 1):
            if keep_h[r, c]:
                out.append(np.array([nodes[r, c], nodes[r, c + 1]]))
    for r in range(n - 1):
        for c in range(n):
            if keep_v[r, c]:
                out.append(np.array([nodes[r, c], nodes[r + 1, c]]))
    return out


@dataclass
class _RoadLines:
    """Road pieces as shapely lines, clipped to the town."""

    lines: np.ndarray
    classes: np.ndarray
    names: np.ndarray

    def subset(self, mask: np.ndarray) -> _RoadLines:
        """Keep the rows where ``mask`` is True."""
        return _RoadLines(self.lines[mask], self.classes[mask], self.names[mask])

    def append(self, geom: LineString, road_class: str, name: str) -> None:
        """Add one road piece at the end."""
        self.lines = np.append(self.lines, np.array([geom], dtype=object))
        self.classes = np.append(self.classes, np.array([road_class], dtype=object))
        self.names = np.append(self.names, np.array([name], dtype=object))


def _road_lines(roads: _Roads, boundary: Polygon) -> _RoadLines:
    """Build the road pieces as lines, clip them to the town, drop pieces under 1 m."""
    counts = np.array([len(c) for c in roads.coords])
    coords = np.vstack(roads.coords)
    lines = shapely.linestrings(coords, indices=np.repeat(np.arange(len(counts)), counts))
    shapely.prepare(boundary)
    inside = shapely.contains_properly(boundary, lines)
    clipped = lines.copy()
    clipped[~inside] = shapely.intersection(lines[~inside], boundary)
    parts, owner = shapely.get_parts(clipped, return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= 1.0)
    parts, owner = parts[keep], owner[keep]
    classes = np.asarray(roads.classes, dtype=object)[owner]
    names = np.asarray(roads.names, dtype=object)[owner]
    return _RoadLines(parts, classes, names)


def _road_frame(lines: _RoadLines, *, n_planted: int,
                n_edge: int) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Number the roads by class (main first) and build the frame."""
    rank = {c: i for i, c in enumerate(("main", "secondary", "village", "lane"))}
    order = np.argsort([rank[c] for c in lines.classes], kind="stable")
    n = len(order)
    width = _width(n, 4)
    ids = np.empty(n, dtype=object)
    ids[order] = [f"R{i + 1:0{width}d}" for i in range(n)]
    frame = gpd.GeoDataFrame(
        {"road_id": list(ids[order]), "road_class": list(lines.classes[order]),
         "name": list(lines.names[order])},
        geometry=list(lines.lines[order]),
        crs=ANALYSIS_CRS,
    )
    first_planted = n - n_planted - n_edge
    planted_ids = [str(ids[i]) for i in range(first_planted, first_planted + n_planted)]
    return frame, planted_ids
