"""A synthetic district (区/县): towns side by side, each a hand-drawn demo town, with planted district defects.

:func:`make_district` splits a district outline into towns (a Voronoi diagram of jittered seeds) and builds
each town with the town generator inside its share (:func:`gisgrid.demo._generate` with that outline), so
every town keeps its own planted town defects and truth. Each town's boundary is hand-drawn on its own, so
two neighbours' shared border never matches to the centimetre (a few decimetres off, inside the default
tolerance), like the borders two township offices digitised separately.

The district-level defects are planted and recorded in :attr:`DemoDistrict.truth` (EPSG:4549):

``town_gap``
    A chunk cut from one town along its border with a neighbour: in the district, in no town.
``town_overlap``
    A chunk of a neighbour added to a town: land claimed by two towns.
``person_two_towns``
    One town's grid chief (same name and phone) listed as a grid chief in another town.
``phone_two_names``
    One phone number under two different names in two towns.
``town_river_section``
    Not a defect: a river (跨镇河) that leaves one town and enters its neighbour, in both towns' river layers
    under its one name, with a town-level chief on each side and a village-level chief per village it
    crosses; the district run lists the section (跨镇交界断面) with the two town-level chiefs. The demo
    towns' own rivers end at their town borders without crossing (no other section).
``town_border_road``
    Not a defect: a village road (界路) running along 40 % of one shared border, 1.5 m inside the first
    town and digitised by that town only; the district run lists it with its owner by ``[checks]
    border_roads``. (It is a road on the first town's own boundary, so that town may report parts of it
    outside its hand-drawn grids.)

Nothing else is wrong at district level: every other pair of towns meets within the tolerance, and no other
phone number appears in two towns. The module makes data only; :mod:`gisgrid.district.files` writes it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops
from shapely.geometry import Point, Polygon, box

from gisgrid._errors import ConfigError
from gisgrid.demo import DemoData, _Built, _generate
from gisgrid.demo.hand import hand_draw
from gisgrid.demo.scales import ANALYSIS_CRS, DELIVERY_CRS, SCALES, _centre_xy

__all__ = ["DISTRICT_TRUTH_COLUMNS", "TOWN_NAMES", "DemoDistrict", "make_district"]

#: Town names of the demo district, in order (a district of more towns than this is refused).
TOWN_NAMES: tuple[str, ...] = (
    "东社", "西亭", "南坝", "北渡", "石港", "金沙", "平潮", "兴仁", "川姜", "先锋", "刘桥", "五接",
    "二甲", "余东", "骑岸", "三余", "十总", "四安", "张芝山", "姜灶", "竹行", "小海", "江海", "东港",
    "新联", "海晏", "吕四", "包场", "天补", "聚南",
)
DISTRICT_TRUTH_COLUMNS = ("kind", "towns", "person", "phone", "measure", "unit", "note", "geometry")
_TOWN_SIZE_M = 5_000.0  # side of a town's share of the district, before the jitter
_GAP_RADIUS_M = 120.0
_OVERLAP_RADIUS_M = 90.0


@dataclass(frozen=True, eq=False)
class DemoDistrict:
    """A district of demo towns.

    Attributes
    ----------
    name : str
    towns : dict of str to DemoData
        Town id (``T01``, ...) -> the town, in EPSG:4490 like :func:`gisgrid.demo.make_demo`.
    boundary : GeoDataFrame
        The district boundary (one row, hand-drawn), in EPSG:4490.
    truth : GeoDataFrame
        One row per planted district defect (:data:`DISTRICT_TRUTH_COLUMNS`), in EPSG:4549.
    """

    name: str
    towns: dict[str, DemoData]
    boundary: gpd.GeoDataFrame
    truth: gpd.GeoDataFrame


def _town_spec(i: int, grids: int, area_m2: float) -> object:
    side = math.sqrt(area_m2)
    return dataclasses.replace(
        SCALES["town"], name=f"{TOWN_NAMES[i]}镇", area_id=f"3206121{i + 1:02d}", width_m=side, height_m=side,
        n_grids=grids, n_villages=max(3, grids // 8), n_main_roads=2, n_main_rivers=1, n_minor_rivers=1,
        minor_river_km=(1.0, 2.0), n_edge_roads=1, n_communities=1,
    )


def _cells(rng: np.random.Generator, n: int) -> tuple[Polygon, list[Polygon]]:
    """The district outline and its ``n`` town shares (Voronoi cells of jittered lattice seeds, 1 cm precision)."""
    cols = math.ceil(math.sqrt(n * 1.5))
    rows = math.ceil(n / cols)
    cx, cy = _centre_xy()
    x0, y0 = cx - cols * _TOWN_SIZE_M / 2, cy - rows * _TOWN_SIZE_M / 2
    seeds = [(x0 + (k % cols + 0.5 + rng.uniform(-0.25, 0.25)) * _TOWN_SIZE_M,
              y0 + (k // cols + 0.5 + rng.uniform(-0.25, 0.25)) * _TOWN_SIZE_M) for k in range(n)]
    # the district: the seeds' lattice cells, its corners cut a little so it is not a plain rectangle
    last_row = n - (rows - 1) * cols
    parts = [box(x0, y0, x0 + cols * _TOWN_SIZE_M, y0 + (rows - 1) * _TOWN_SIZE_M),
             box(x0, y0 + (rows - 1) * _TOWN_SIZE_M, x0 + last_row * _TOWN_SIZE_M, y0 + rows * _TOWN_SIZE_M)]
    outline = shapely.union_all(parts).buffer(-400, join_style="mitre").buffer(400, join_style="round")
    outline = shapely.set_precision(shapely.simplify(outline, 5.0), 0.01)
    vor = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=outline.buffer(_TOWN_SIZE_M))
    by_seed = {}
    for cell in vor.geoms:
        k = next(i for i, s in enumerate(seeds) if cell.contains(Point(s)))
        by_seed[k] = shapely.set_precision(cell.intersection(outline), 0.01)
    cells = [by_seed[k] for k in range(n)]
    return outline, cells


def _shared_border(a: Polygon, b: Polygon) -> shapely.LineString | None:
    line = shapely.line_merge(a.boundary.intersection(b.boundary))
    if line.is_empty:
        return None
    lines = list(getattr(line, "geoms", [line]))
    best = max(lines, key=lambda g: g.length)
    return best if best.length > 4 * _GAP_RADIUS_M else None


def _neighbour_pairs(cells: list[Polygon]) -> list[tuple[int, int, shapely.LineString]]:
    pairs = []
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            line = _shared_border(cells[i], cells[j])
            if line is not None:
                pairs.append((i, j, line))
    return pairs


def _single(poly: Any) -> Polygon:
    if isinstance(poly, Polygon):
        return poly
    return max(poly.geoms, key=lambda g: g.area)


def make_district(*, towns: int = 24, grids: int = 60, seed: int = 20261201,
                  hand_drawn: bool = True) -> DemoDistrict:
    """Build a demo district of ``towns`` towns of about ``grids`` grids each, with planted district defects.

    Parameters
    ----------
    towns
        Number of towns, 4 to ``len(TOWN_NAMES)`` (the planted defects need four different towns).
    grids
        Grids per town (the town demo has 200; at least 40).
    seed
        The district's seed; town ``k`` uses ``seed + k``.
    hand_drawn
        Hand-draw every polygon (see :func:`gisgrid.demo.make_demo`).

    Returns
    -------
    DemoDistrict
    """
    if not 4 <= towns <= len(TOWN_NAMES):
        msg = f"a demo district has 4 to {len(TOWN_NAMES)} towns, not {towns}."
        raise ConfigError(msg, fix=f"give --towns between 4 and {len(TOWN_NAMES)}")
    if grids < 40:  # fewer, and most grids touch the town's outline: no room for the town's planted defects
        msg = f"a demo district town needs at least 40 grids, not {grids}."
        raise ConfigError(msg, fix="give --town-grids 40 or more")
    rng = np.random.default_rng(seed)
    outline, cells = _cells(rng, towns)
    pairs = _neighbour_pairs(cells)
    # two neighbour pairs (disjoint when the district has them): a gap between the first, an overlap between the second
    (ga, gb, gline) = pairs[0]
    others = [p for p in pairs[1:] if not {p[0], p[1]} & {ga, gb}] or pairs[1:]
    (oa, ob, oline) = others[0]
    gap = _single(Point(gline.interpolate(0.5, normalized=True)).buffer(_GAP_RADIUS_M).intersection(cells[ga]))
    gap = shapely.set_precision(gap, 0.01)
    over = _single(Point(oline.interpolate(0.5, normalized=True)).buffer(_OVERLAP_RADIUS_M).intersection(cells[ob]))
    over = shapely.set_precision(over, 0.01)
    outlines = list(cells)
    outlines[ga] = shapely.set_precision(_single(cells[ga].difference(gap)), 0.01)
    outlines[oa] = shapely.set_precision(_single(outlines[oa].union(over)), 0.01)

    ids = [f"T{k + 1:02d}" for k in range(towns)]
    built: dict[str, _Built] = {}
    for k, tid in enumerate(ids):
        spec = _town_spec(k, grids, outlines[k].area)
        for attempt in range(8):  # a small town may have no room for its planted defects with one seed
            try:
                built[tid] = _generate("town", seed + k + 1000 * attempt, hand_drawn=hand_drawn,
                                       spec=spec, outline=outlines[k])  # type: ignore[arg-type]
                break
            except RuntimeError:
                if attempt == 7:
                    raise
    _unique_phones(built)
    truth_rows = [
        {"kind": "town_gap", "towns": f"{ids[ga]},{ids[gb]}", "person": None, "phone": None,
         "measure": round(gap.area, 1), "unit": "m2", "note": "cut from the first town along its border",
         "geometry": gap},
        {"kind": "town_overlap", "towns": f"{ids[oa]},{ids[ob]}", "person": None, "phone": None,
         "measure": round(over.area, 1), "unit": "m2", "note": "the first town drawn into the second",
         "geometry": over},
    ]
    truth_rows += _plant_rosters(built, ids, rng)
    third = [p for p in pairs if {p[0], p[1]} != {ga, gb} and {p[0], p[1]} != {oa, ob}] or pairs
    truth_rows.append(_plant_river(built, ids, outlines, third[-1], rng))
    free = [p for p in pairs if {p[0], p[1]} not in ({ga, gb}, {oa, ob})] or pairs
    truth_rows.append(_plant_border_road(built, ids, outlines, max(free, key=lambda p: p[2].length)))
    boundary = np.array([outline], dtype=object)
    if hand_drawn:
        boundary = hand_draw(boundary, np.random.default_rng([seed, 2]))
    district = gpd.GeoDataFrame({"name": ["通东区"], "district_id": ["320612"]}, geometry=list(boundary),
                                crs=ANALYSIS_CRS)
    demos = {tid: DemoData(name=b.name, layers={k: v.to_crs(DELIVERY_CRS) for k, v in b.layers.items()},
                           rosters=b.rosters, truth=b.truth) for tid, b in built.items()}
    truth = gpd.GeoDataFrame(truth_rows, columns=list(DISTRICT_TRUTH_COLUMNS), geometry="geometry",
                             crs=ANALYSIS_CRS)
    return DemoDistrict(name="通东区", towns=demos, boundary=district.to_crs(DELIVERY_CRS), truth=truth)


_RIVER_NAME = "跨镇河"
_ROAD_NAME = "界路"


def _plant_border_road(built: dict[str, _Built], ids: list[str], outlines: list[Polygon],
                       pair: tuple[int, int, shapely.LineString]) -> dict[str, object]:
    """A road along the middle 40 % of the longest shared border, 1.5 m inside town a, in a's roads only."""
    a, b, border = pair
    piece = shapely.ops.substring(border, 0.3, 0.7, normalized=True)
    road = None
    for side in (1.5, -1.5):
        cand = piece.offset_curve(side)
        if outlines[a].contains(cand.interpolate(0.5, normalized=True)):
            road = cand
    if road is None:
        msg = "demo district: no side of the border for the border road"
        raise RuntimeError(msg)
    roads = built[ids[a]].layers["roads"]
    row = gpd.GeoDataFrame({"road_id": [f"R{len(roads) + 1}"], "road_class": ["village"], "name": [_ROAD_NAME]},
                           geometry=[road], crs=roads.crs)
    built[ids[a]].layers["roads"] = pd.concat([roads, row], ignore_index=True)
    return {"kind": "town_border_road", "towns": f"{ids[a]},{ids[b]}", "person": None, "phone": None,
            "measure": round(road.length, 1), "unit": "m", "note": f"{_ROAD_NAME} along the border, in {ids[a]} only",
            "geometry": road}


def _plant_river(built: dict[str, _Built], ids: list[str], outlines: list[Polygon],
                 pair: tuple[int, int, shapely.LineString], rng: np.random.Generator) -> dict[str, object]:
    """A river from town a across the middle of its border with b into b, with its chiefs on both sides."""
    a, b, border = pair
    mid = border.interpolate(0.5, normalized=True)
    ends = [shapely.Point(shapely.line_interpolate_point(shapely.shortest_line(mid, outlines[k].centroid),
                                                         0.8, normalized=True)) for k in (a, b)]
    line = shapely.LineString([ends[0].coords[0], mid.coords[0], ends[1].coords[0]])
    chiefs = []
    used = set(_people(built)["phone"])
    for k in (a, b):
        town = built[ids[k]]
        part = _single_line(line.intersection(outlines[k]))
        rivers = town.layers["rivers"]
        rid = f"H{len(rivers) + 1:02d}"
        row = gpd.GeoDataFrame({"river_id": [rid], "name": [_RIVER_NAME], "level": ["town"], "width_m": [18.0]},
                               geometry=[part], crs=rivers.crs)
        town.layers["rivers"] = pd.concat([rivers, row], ignore_index=True)
        villages = town.layers["villages"]
        near = villages[villages.geometry.distance(part) < 5.0]
        roster = town.rosters["river_chiefs"]
        names, phones = _new_people(rng, 1 + len(near), used)
        add = pd.DataFrame({"person_id": [f"CX{j + 1:02d}" for j in range(1 + len(near))], "name": names,
                            "phone": phones, "level": ["town"] + ["village"] * len(near),
                            "river_id": rid, "village_id": pd.Series([None, *near["village_id"]], dtype=object)})
        town.rosters["river_chiefs"] = pd.concat([roster, add], ignore_index=True)
        chiefs.append(names[0])
    return {"kind": "town_river_section", "towns": f"{ids[a]},{ids[b]}", "person": ",".join(chiefs), "phone": None,
            "measure": 0.0, "unit": "m", "note": f"{_RIVER_NAME} leaves {ids[a]} and enters {ids[b]}",
            "geometry": mid}


def _single_line(geom: Any) -> shapely.LineString:
    merged = shapely.line_merge(geom)
    if isinstance(merged, shapely.LineString):
        return merged
    return max(merged.geoms, key=lambda g: g.length)


def _new_people(rng: np.random.Generator, n: int, used: set[str]) -> tuple[list[str], list[str]]:
    from gisgrid.demo.rosters import _people as people

    names, phones = people(rng, n)
    for k, phone in enumerate(phones):
        while phone in used:
            phone = phone[:3] + f"{(int(phone[3:]) + 104729) % 10**8:08d}"
        phones[k] = phone
        used.add(phone)
    return names, phones


def _people(built: dict[str, _Built]) -> pd.DataFrame:
    rows = []
    for tid, b in built.items():
        for roster in ("grid_staff", "river_chiefs"):
            frame = b.rosters[roster]
            rows.append(pd.DataFrame({"town": tid, "roster": roster, "row": range(len(frame)),
                                      "name": frame["name"].to_numpy(), "phone": frame["phone"].to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def _unique_phones(built: dict[str, _Built]) -> None:
    """Give every phone that two towns share by chance a new number: only the planted ones may repeat."""
    people = _people(built)
    first_town = people.groupby("phone")["town"].transform("first")
    clash = people[people["town"] != first_town]
    used = set(people["phone"])
    for rec in clash.itertuples():
        frame = built[rec.town].rosters[rec.roster]
        phone = str(rec.phone)
        while phone in used:
            phone = phone[:3] + f"{(int(phone[3:]) + 7919) % 10**8:08d}"
        used.add(phone)
        old = frame.at[rec.row, "phone"]
        frame.loc[frame["phone"] == old, "phone"] = phone  # one person keeps one number in their town


def _plant_rosters(built: dict[str, _Built], ids: list[str], rng: np.random.Generator) -> list[dict[str, object]]:
    """A grid chief of one town made chief in another too; a phone of one town given to another name."""
    n = len(ids)
    a, b = ids[int(rng.integers(n))], None
    while b is None or b == a:
        b = ids[int(rng.integers(n))]
    staff_a = built[a].rosters["grid_staff"]
    staff_b = built[b].rosters["grid_staff"]
    chief = staff_a[staff_a["role"] == "grid_chief"].iloc[0]
    # the chief of b's last staffed grid becomes a's chief (same name and phone), every row of that person
    target = staff_b[staff_b["role"] == "grid_chief"].iloc[-1]
    same = (staff_b["name"] == target["name"]) & (staff_b["phone"] == target["phone"])
    staff_b.loc[same, "name"] = chief["name"]
    staff_b.loc[same, "phone"] = chief["phone"]
    rows: list[dict[str, object]] = [
        {"kind": "person_two_towns", "towns": f"{a},{b}", "person": chief["name"], "phone": chief["phone"],
         "measure": 2.0, "unit": "towns", "note": f"grid chief of {chief['grid_id']} in {a} and of "
         f"{target['grid_id']} in {b}", "geometry": None},
    ]
    c, d = None, None
    while c is None or d is None or len({a, b, c, d}) < 4:
        c, d = ids[int(rng.integers(n))], ids[int(rng.integers(n))]
    staff_c = built[c].rosters["grid_staff"]
    staff_d = built[d].rosters["grid_staff"]
    giver = staff_c[staff_c["role"] == "grid_member"].iloc[0]
    taker = staff_d[(staff_d["role"] == "grid_member") & (staff_d["name"] != giver["name"])].iloc[0]
    staff_d.loc[(staff_d["name"] == taker["name"]) & (staff_d["phone"] == taker["phone"]), "phone"] = giver["phone"]
    rows.append({"kind": "phone_two_names", "towns": f"{c},{d}", "person": f"{giver['name']},{taker['name']}",
                 "phone": giver["phone"], "measure": 2.0, "unit": "names",
                 "note": f"{giver['name']} in {c}, {taker['name']} in {d}", "geometry": None})
    return rows
