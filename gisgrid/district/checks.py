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

from gisgrid.findings import OWNER_JOIN, make_findings
from gisgrid.geometry.coverage import partition_defects

__all__ = ["DISTRICT_KINDS", "boundary_findings", "district_findings", "roster_findings", "town_office"]

#: The district kinds and their severity.
DISTRICT_KINDS: dict[str, str] = {"town_gap": "high", "town_overlap": "high", "person_two_towns": "medium",
                                  "phone_two_names": "medium"}
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
