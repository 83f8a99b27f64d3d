"""District checks: what no single town can see. Each is a finding kind with an owner and a ``town`` cell.

``town_gap`` / ``town_overlap``
    The towns' boundaries against the district boundary (or, without one, against each other): land in no
    town and land in two, judged by :func:`gisgrid.geometry.coverage.partition_defects` with the same
    hand-digitising tolerance as the town checks, so two offices' borders a few decimetres apart are not
    reported. Owner: the district's grid center (it draws the towns' borders); ``town``: the towns touching.
``person_two_towns``
    One person (the same name and phone) listed as grid chief (网格长) in two or more towns. Owner: those
    towns' grid offices.
``phone_two_names``
    One phone number under different names in two or more towns (any roster). Owner: those towns' grid
    offices.
``section_unowned``
    A river section where a river leaves one town and enters another (跨镇交界断面: the river of one name
    ending at the town border within ``snap_m`` of its continuation in the neighbour) with no town-level
    river chief on one side. Owner: that town's grid office. Every such section is also listed, with the
    town-level chiefs of both sides as its owners, by :func:`river_sections`.
``town_unassigned``
    Shared layers split by a town column (``partition_by``): rows whose town is blank or not a town of the
    district, which no town checks (:func:`gisgrid.district.partition.unassigned_findings`). Owner: the
    district's grid center.

The findings are one table with the columns of :mod:`gisgrid.findings` plus ``town`` (a town id, or a tuple
of them when a finding concerns several) and ``town_name``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid.findings import OWNER_JOIN, make_findings, present
from gisgrid.geometry.coverage import partition_defects

__all__ = ["BORDER_ROAD_RULES", "DISTRICT_KINDS", "ROAD_COLUMNS", "SECTION_COLUMNS", "border_roads",
           "boundary_findings", "district_findings", "district_sections",
           "river_sections", "roster_findings", "town_office"]

#: The district kinds and their severity.
DISTRICT_KINDS: dict[str, str] = {"town_gap": "high", "town_overlap": "high", "person_two_towns": "medium",
                                  "phone_two_names": "medium", "section_unowned": "medium",
                                  "town_unassigned": "high"}
#: How the owner of a road on a town border is decided (``[checks] border_roads``).
BORDER_ROAD_RULES: dict[str, str] = {
    "both": "both towns own it together (联合负责)",
    "lower_id": "the town with the lower id",
    "longer": "the town that has more of it in its roads (ties: the lower id)",
}
#: The columns of :func:`border_roads`.
ROAD_COLUMNS = ("town_a", "town_b", "road", "length_a_m", "length_b_m", "owner_town", "owner", "rule", "geometry")
#: The columns of :func:`river_sections`.
SECTION_COLUMNS = ("town_a", "town_b", "river", "river_id_a", "river_id_b", "chiefs_a", "chiefs_b", "owner",
                   "gap_m", "geometry")
_DIGITS = re.compile(r"\D")


def town_office(name: str) -> str:
    """The owner string of a town's grid office (网格办)."""
    return f"{name}网格办 town grid office"


def _towns_cell(ids: list[str]) -> str | tuple[str, ...]:
    ids = sorted(set(ids))
    return ids[0] if len(ids) == 1 else tuple(ids)


def boundary_findings(towns: gpd.GeoDataFrame, *, extent: Any = None, tolerance_m: float, owner: str,
                      names: Mapping[str, str]) -> gpd.GeoDataFrame:
    """Land in no town and land in two towns.

    Parameters
    ----------
    towns
        One row per town: ``town`` (its id) and its boundary polygon, in a metric CRS.
    extent
        The district boundary (a polygon in the same CRS); None: only holes enclosed by towns count as gaps.
    tolerance_m
        The digitising tolerance (as the town checks' ``[coverage] tolerance_m``).
    owner
        Who answers for the towns' borders.
    names
        Town id -> name, for the messages.

    Returns
    -------
    GeoDataFrame
        Findings (``town_gap``, ``town_overlap``) with ``town`` and ``town_name``.
    """
    pieces = partition_defects(towns[["town", "geometry"]], extent=extent, id_column="town", tolerance_m=tolerance_m)
    real = pieces[~pieces["sliver"].astype(bool)].reset_index(drop=True)
    rows = []
    for rec in real.to_dict("records"):
        ids = [str(t) for t in rec["zone_ids"]]
        kind = "town_gap" if rec["kind"] == "gap" else "town_overlap"
        shown = "、".join(names.get(t, t) for t in ids) or "-"
        what = (f"{rec['area_m2']:,.0f} m² of the district in no town (next to {shown})" if kind == "town_gap"
                else f"{rec['area_m2']:,.0f} m² claimed by {shown}")
        rows.append({"kind": kind, "severity": DISTRICT_KINDS[kind], "owner": owner, "measure": rec["area_m2"],
                     "unit": "m2", "rule": f"town borders, tolerance {tolerance_m:g} m", "message": what,
                     "geometry": rec["geometry"], "town": _towns_cell(ids) if ids else None,
                     "town_name": shown})
    frame = pd.DataFrame(rows, columns=["kind", "severity", "owner", "measure", "unit", "rule", "message",
                                        "geometry", "town", "town_name"])
    keys = ["towns:" + ",".join(t if isinstance(t, tuple) else [t or ""]) for t in frame["town"]]
    return make_findings(frame, crs=towns.crs, key=keys)


def _phone(value: Any) -> str:
    return _DIGITS.sub("", str(value)).removeprefix("86") if value is not None else ""


def roster_findings(people: pd.DataFrame, places: Mapping[str, Any], *, names: Mapping[str, str],
                    crs: Any) -> gpd.GeoDataFrame:
    """The same grid chief in two towns; one phone under different names in two towns.

    Parameters
    ----------
    people
        Every roster row of every town: ``town``, ``roster`` (``grid_staff``/``river_chiefs``), ``name``,
        ``phone``, ``role`` (grid staff: ``grid_chief``/``grid_member``), ``grid_id``.
    places
        Town id -> a point inside it (where a roster finding is drawn).
    names
        Town id -> name.
    crs
        The CRS of ``places``.

    Returns
    -------
    GeoDataFrame
        Findings (``person_two_towns``, ``phone_two_names``) with ``town`` and ``town_name``.
    """
    df = pd.DataFrame(people).copy()
    df["key"] = df["phone"].map(_phone)
    df["name"] = df["name"].astype(str).str.strip()
    df = df[df["key"] != ""]
    rows = []
    chiefs = df[(df["roster"] == "grid_staff") & (df["role"] == "grid_chief")]
    for (name, key), grp in chiefs.groupby(["name", "key"], sort=True):
        towns = sorted(set(grp["town"]))
        if len(towns) < 2:
            continue
        where = "; ".join(f"{names.get(t, t)}: {', '.join(sorted(set(map(str, g['grid_id']))))}"
                          for t, g in grp.groupby("town", sort=True))
        rows.append(_roster_row("person_two_towns", towns, names, places,
                                f"{name} ({key}) is grid chief in {len(towns)} towns ({where})", key))
    for key, grp in df.groupby("key", sort=True):
        towns = sorted(set(grp["town"]))
        people_named = sorted(set(grp["name"]))
        if len(towns) < 2 or len(people_named) < 2:
            continue
        said = "; ".join(f"{names.get(t, t)}: {'、'.join(sorted(set(g['name'])))}" for t, g in grp.groupby("town"))
        rows.append(_roster_row("phone_two_names", towns, names, places,
                                f"phone {key} under {len(people_named)} names ({said})", key))
    frame = pd.DataFrame(rows, columns=["kind", "severity", "owner", "measure", "unit", "rule", "message",
                                        "geometry", "town", "town_name", "_key"])
    keys = list(frame.pop("_key"))
    return make_findings(frame, crs=crs, key=keys)


def _roster_row(kind: str, towns: list[str], names: Mapping[str, str], places: Mapping[str, Any], message: str,
                key: str) -> dict[str, Any]:
    pts = [places[t] for t in towns if t in places]
    geom = shapely.centroid(shapely.MultiPoint(pts)) if pts else None
    return {"kind": kind, "severity": DISTRICT_KINDS[kind],
            "owner": OWNER_JOIN.join(town_office(names.get(t, t)) for t in towns), "measure": float(len(towns)),
            "unit": "towns", "rule": "rosters across towns", "message": message, "geometry": geom,
            "town": _towns_cell(towns), "town_name": "、".join(names.get(t, t) for t in towns), "_key": f"phone:{key}"}


def _ends(rivers: Mapping[str, gpd.GeoDataFrame], lines: Mapping[str, Any], crs: Any, snap_m: float) -> pd.DataFrame:
    """Every river end within ``snap_m`` of its town's boundary: town, river id, name, point."""
    rows = []
    for tid, frame in rivers.items():
        if frame is None or not len(frame):
            continue
        parts = frame.to_crs(crs).explode(index_parts=False)
        for rid, name, geom in zip(parts["river_id"], parts["name"], parts.geometry, strict=True):
            if geom is None or geom.is_empty:
                continue
            for point in (shapely.get_point(geom, 0), shapely.get_point(geom, -1)):
                if point.distance(lines[tid]) <= snap_m:
                    rows.append({"town": tid, "river_id": str(rid), "name": str(name).strip(), "geometry": point})
    return pd.DataFrame(rows, columns=["town", "river_id", "name", "geometry"])


def _town_chiefs(chiefs: pd.DataFrame | None, river_id: str) -> list[str]:
    if chiefs is None or not len(chiefs):
        return []
    t = pd.DataFrame(chiefs)
    mask = (t["level"].astype(str) == "town") & (t["river_id"].astype(str) == river_id)
    return sorted(set(t.loc[mask, "name"].astype(str)))


def river_sections(rivers: Mapping[str, gpd.GeoDataFrame], chiefs: Mapping[str, pd.DataFrame],
                   towns: gpd.GeoDataFrame, *, names: Mapping[str, str], snap_m: float = 50.0,
                   ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Where a river leaves one town and enters another (跨镇交界断面), and who owns each section.

    A section is a pair of river ends of the same river name in two towns, each within ``snap_m`` of its
    town's boundary and of each other (two offices draw a river to their own border line). Its owners are
    the town-level river chiefs of both sides.

    Returns
    -------
    (GeoDataFrame, GeoDataFrame)
        The sections (:data:`SECTION_COLUMNS`, one row each, at the midpoint of the two ends) and the
        ``section_unowned`` findings (a side with no town-level chief).
    """
    lines = {t: g.boundary for t, g in zip(towns["town"], towns.geometry, strict=True)}
    ends = _ends(rivers, lines, towns.crs, snap_m)
    rows: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    if len(ends):
        pts = np.asarray(ends["geometry"], dtype=object)
        left, right = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=snap_m)
        for i, j in zip(left, right, strict=True):
            a, b = ends.iloc[int(i)], ends.iloc[int(j)]
            if not (a["town"] < b["town"] and a["name"] == b["name"]):
                continue
            ca, cb = _town_chiefs(chiefs.get(a["town"]), a["river_id"]), _town_chiefs(chiefs.get(b["town"]),
                                                                                       b["river_id"])
            mid = shapely.centroid(shapely.MultiPoint([a["geometry"], b["geometry"]]))
            owner = OWNER_JOIN.join([*(f"{c}（{names.get(a['town'], a['town'])}河长）" for c in ca),
                                     *(f"{c}（{names.get(b['town'], b['town'])}河长）" for c in cb)])
            rows.append({"town_a": a["town"], "town_b": b["town"], "river": a["name"], "river_id_a": a["river_id"],
                         "river_id_b": b["river_id"], "chiefs_a": "、".join(ca), "chiefs_b": "、".join(cb),
                         "owner": owner, "gap_m": round(float(a["geometry"].distance(b["geometry"])), 2),
                         "geometry": mid})
            for side, cs in ((a, ca), (b, cb)):
                if cs:
                    continue
                found.append({"kind": "section_unowned", "severity": DISTRICT_KINDS["section_unowned"],
                              "owner": town_office(names.get(side["town"], side["town"])), "measure": 0.0,
                              "unit": "m", "rule": f"river ends within {snap_m:g} m across a town border",
                              "message": f"{side['name']} ({side['river_id']}) crosses from "
                                         f"{names.get(a['town'], a['town'])} to {names.get(b['town'], b['town'])}"
                                         f": no town-level river chief in {names.get(side['town'], side['town'])}",
                              "geometry": mid, "town": side["town"],
                              "town_name": names.get(side["town"], side["town"]),
                              "_key": f"section:{a['town']}|{b['town']}|{a['name']}|{side['town']}"})
    sections = gpd.GeoDataFrame(pd.DataFrame(rows, columns=list(SECTION_COLUMNS)), geometry="geometry",
                                crs=towns.crs)
    frame = pd.DataFrame(found, columns=["kind", "severity", "owner", "measure", "unit", "rule", "message",
                                         "geometry", "town", "town_name", "_key"])
    keys = list(frame.pop("_key"))
    return sections, make_findings(frame, crs=towns.crs, key=keys)


def border_roads(roads: Mapping[str, gpd.GeoDataFrame], towns: gpd.GeoDataFrame, *, names: Mapping[str, str],
                 rule: str = "both", within_m: float = 5.0, min_m: float = 200.0,
                 tolerance_m: float = 3.0) -> gpd.GeoDataFrame:
    """Roads on a town border (跨镇交界道路) and who owns each, by ``rule`` (:data:`BORDER_ROAD_RULES`).

    A road (by name; a nameless road by its id) lies on the border of towns A and B where at least ``min_m``
    of it, in either town's roads, runs within ``within_m`` of their shared border (the part of A's boundary
    within ``tolerance_m`` of B). Short stretches (a road meeting the border, a lane near it) are not sections.

    Returns
    -------
    GeoDataFrame
        One row per (pair of towns, road): :data:`ROAD_COLUMNS`, the geometry the road's parts on the border.
    """
    rows: list[dict[str, Any]] = []
    geoms = dict(zip(towns["town"], towns.geometry, strict=True))
    ids = sorted(geoms)
    tree = shapely.STRtree(np.asarray([geoms[t] for t in ids], dtype=object))
    for a in ids:
        for j in tree.query(geoms[a].buffer(tolerance_m), predicate="intersects"):
            b = ids[int(j)]
            if b <= a:
                continue
            shared = geoms[a].boundary.intersection(geoms[b].buffer(tolerance_m))
            if shared.length < min_m:
                continue
            zone = shared.buffer(within_m)
            parts: dict[str, dict[str, Any]] = {}
            for t in (a, b):
                frame = roads.get(t)
                if frame is None or not len(frame):
                    continue
                r = frame.to_crs(towns.crs)
                near = r[r.geometry.intersects(zone)]
                for name, rid, geom in zip(near["name"], near["road_id"], near.geometry, strict=True):
                    key = str(name).strip() if present(name) and str(name).strip() else f"road {rid}"
                    piece = geom.intersection(zone)
                    entry = parts.setdefault(key, {a: 0.0, b: 0.0, "geoms": []})
                    entry[t] += piece.length
                    entry["geoms"].append(piece)
            for key, entry in sorted(parts.items()):
                la, lb = entry[a], entry[b]
                if max(la, lb) < min_m:
                    continue
                owner_town = (a if rule == "lower_id" else (a if la >= lb else b) if rule == "longer" else None)
                owners = [owner_town] if owner_town else [a, b]
                rows.append({"town_a": a, "town_b": b, "road": key, "length_a_m": round(la, 1),
                             "length_b_m": round(lb, 1), "owner_town": ",".join(owners),
                             "owner": OWNER_JOIN.join(town_office(names.get(t, t)) for t in owners), "rule": rule,
                             "geometry": shapely.union_all(entry["geoms"])})
    return gpd.GeoDataFrame(pd.DataFrame(rows, columns=list(ROAD_COLUMNS)), geometry="geometry", crs=towns.crs)


def district_findings(boundaries: Mapping[str, gpd.GeoDataFrame], rosters: Mapping[str, Mapping[str, pd.DataFrame]],
                      *, names: Mapping[str, str], extent: Any, tolerance_m: float, owner: str,
                      crs: Any) -> gpd.GeoDataFrame:
    """Every district check over the towns that completed.

    Parameters
    ----------
    boundaries
        Town id -> its boundary layer (any CRS; brought to ``crs``).
    rosters
        Town id -> ``{"grid_staff": ..., "river_chiefs": ...}`` (canonical columns).
    names, tolerance_m, owner
        As for :func:`boundary_findings`.
    extent
        The district boundary in ``crs`` (or None).
    crs
        A metric CRS for the whole district.
    """
    parts = []
    for tid, frame in boundaries.items():
        geom = shapely.union_all(np.asarray(frame.to_crs(crs).geometry.values, dtype=object))
        parts.append({"town": tid, "geometry": geom})
    towns = gpd.GeoDataFrame(parts, columns=["town", "geometry"], geometry="geometry", crs=crs)
    found = [boundary_findings(towns, extent=extent, tolerance_m=tolerance_m, owner=owner, names=names)]
    rows = []
    for tid, tables in rosters.items():
        for roster, table in tables.items():
            t = pd.DataFrame(table)
            rows.append(pd.DataFrame({"town": tid, "roster": roster, "name": t.get("name"), "phone": t.get("phone"),
                                      "role": t.get("role"),
                                      "grid_id": t.get("grid_id")}))
    people = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["town", "roster", "name", "phone", "role", "grid_id"])
    places = {t: g.representative_point() for t, g in zip(towns["town"], towns.geometry, strict=True)}
    found.append(roster_findings(people, places, names=names, crs=crs))
    out = pd.concat(found, ignore_index=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=crs)


def district_sections(rivers: Mapping[str, gpd.GeoDataFrame], rosters: Mapping[str, Mapping[str, pd.DataFrame]],
                      boundaries: Mapping[str, gpd.GeoDataFrame], *, names: Mapping[str, str], crs: Any,
                      snap_m: float = 50.0) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """:func:`river_sections` over the towns that completed (boundaries and rivers in any CRS)."""
    towns = _town_frame(boundaries, crs)
    chiefs = {t: r.get("river_chiefs") for t, r in rosters.items()}
    return river_sections(rivers, chiefs, towns, names=names, snap_m=snap_m)


def _town_frame(boundaries: Mapping[str, gpd.GeoDataFrame], crs: Any) -> gpd.GeoDataFrame:
    parts = [{"town": t, "geometry": shapely.union_all(np.asarray(f.to_crs(crs).geometry.values, dtype=object))}
             for t, f in boundaries.items()]
    return gpd.GeoDataFrame(parts, columns=["town", "geometry"], geometry="geometry", crs=crs)
