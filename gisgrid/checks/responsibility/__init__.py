"""Who is responsible where: grid chiefs on grids, river chiefs on reaches, chiefs on cross-boundary sections.

:func:`analyze_responsibility` joins the rosters onto the map:

- **grids** (网格): each grid's chief (网格长) and members (网格员) from
  ``grid_staff``; a grid without a chief is a ``grid_unstaffed`` finding, a
  roster person whose grid does not exist a ``staff_unplaced`` one, a chief
  with more work than the configured limits a ``grid_overloaded`` one;
- **rivers** (河长制): every river is split at village borders into *reaches*
  (河段) with their chainage along the river; every river needs a town-level
  chief and every reach its village-level chief (``river_unassigned``); a
  chief whose river or village does not exist is ``chief_unplaced``;
- **cross-boundary sections** (交界断面): ``section_m`` either side of every
  point where a river crosses a village border or the town border, with the
  chiefs of both sides;
- **river corridors** (河道管理范围): per chief, the river centreline buffered
  by a half-width (by river level, or ``width_m / 2 + bank_m``) with *flat*
  caps (the corridor ends where the centreline ends) and round joins, clipped
  to the chief's village (village chiefs) or the town (town and county chiefs);
- **border roads**: a road lying on the shared edge of two grids (within
  ``settings.border_tolerance_m``, for at least ``border_min_m``) is covered,
  but by whom? ``border_rule`` decides: ``"left"`` (the grid on the road's
  left in its digitised direction, probed 0.5 m to the left of the middle of
  the shared part), ``"longer"`` (the grid holding the longer share of the
  whole road; ties within the tolerance fall back to ``"left"``) or
  ``"flag"`` (a ``road_ambiguous`` finding for the command center to decide).
  The decision is kept in :attr:`Responsibility.border_roads` and the road
  counts in the owner's workload only (under ``"flag"``, in both).

The findings come without owners: :func:`gisgrid.owners.assign_owners` gives
every finding of every check its owner once, after all checks (the staffing
table's ``owner`` column and the chiefs here are what it reads; owner strings
are described there).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.checks.responsibility._shapes import (
    DEFAULT_CORRIDOR_M,
    _gdf,
    _geoms,
    _line_note,
    _nones,
    _only,
    _person_labels,
)
from gisgrid.checks.responsibility.border_roads import _border_roads
from gisgrid.checks.responsibility.rivers import _Chiefs, _corridors, _cross_sections, _reaches, _river_chiefs
from gisgrid.checks.responsibility.staffing import _staffing, staffing_table
from gisgrid.checks.responsibility.workload import _workload
from gisgrid.findings import (
    concat_findings,
    empty_findings,
    ids_cell,
    make_findings,
    present,
    show_ids,
    unique_present,
)
from gisgrid.model import Town
from gisgrid.vocab import village_owner

__all__ = [
    "BORDER_RULES",
    "DEFAULT_OPTIONS",
    "LIMITS",
    "AssignOptions",
    "Responsibility",
    "analyze_responsibility",
    "resolve_options",
    "staffing_table",
]

logger = logging.getLogger(__name__)

#: Ways to decide who owns a road lying on the border of two grids.
BORDER_RULES: tuple[str, ...] = ("left", "longer", "flag")

#: Workload limits (``[assign.limits]``): the workload column each one bounds, its unit and its words.
LIMITS: dict[str, tuple[str, str, str]] = {
    "max_grids": ("grids", "count", "grids"),
    "max_households": ("households", "count", "households"),
    "max_area_m2": ("area_m2", "m2", "m² of grid area"),
    "max_road_m": ("road_m", "m", "m of road"),
    "max_pois": ("pois", "count", "must-check points"),
}

class AssignOptions(TypedDict, total=False):
    """The ``[assign]`` options (every key optional; :func:`resolve_options` fills the defaults)."""

    border_rule: str  # "left" | "longer" | "flag"
    border_min_m: float
    section_m: float
    corridor_m: float | dict[str, float]  # a number, or by river level with "default"
    bank_m: float | None
    limits: dict[str, float | bool]  # max_grids, max_households, max_area_m2, max_road_m, max_pois
    default_owner: str | None


#: Defaults of the ``[assign]`` options (see :func:`resolve_options`).
DEFAULT_OPTIONS: dict[str, Any] = {
    "border_rule": "left",
    "border_min_m": 5.0,
    "section_m": 100.0,
    "corridor_m": DEFAULT_CORRIDOR_M,
    "bank_m": None,
    "limits": {"max_grids": 3},
    "default_owner": None,
}




# --------------------------------------------------------------------------- result
@dataclass
class Responsibility:
    """Who is responsible where, and what is missing.

    Attributes
    ----------
    staffing : DataFrame
        One row per grid: ``grid_id``, ``village_id``, ``chief_id``,
        ``chief_name``, ``chief_phone`` (``", "``-joined when a grid has two
        chiefs), ``members`` (``", "``-joined names), ``member_count``,
        ``staffed`` (bool) and ``owner`` (the chief, or the village when there
        is none).
    reaches : GeoDataFrame
        River parts inside one village: ``reach_id``
        (``"<river_id>-<village_id>-<k>"``, k = 1, 2, … by chainage),
        ``river_id``, ``river_name``, ``village_id``, ``start_m``, ``end_m``
        (chainage from the river's first vertex), ``length_m``,
        ``town_chief``, ``village_chief`` (names or None); geometries run
        downstream (digitised direction). A river entering a village twice
        has two reaches there; a river lying on a village border (界河) has a
        reach in each village; river parts in no village (outside the town or
        in a gap between villages) are not reaches.
    cross_sections : GeoDataFrame
        交界断面: ``section_id`` (``"<river_id>-X<k>"``), ``river_id``,
        ``border`` (``"village"`` or ``"town"``), ``village_a`` (upstream
        side), ``village_b`` (downstream side; None outside the town or in no
        village), ``chainage_m`` of the crossing, ``chiefs_a``, ``chiefs_b``,
        ``start_m``, ``end_m``, ``length_m`` and the river part ``section_m``
        either side of the crossing.
    corridors : GeoDataFrame
        河道管理范围 per chief: ``person_id``, ``name``, ``level``,
        ``river_id``, ``village_id``, ``area_m2``, ``half_width_m``, ``phone``.
    responsibility : GeoDataFrame
        "Who is responsible here": ``layer`` (``"grid"`` or ``"river"``),
        ``zone_id``, ``village_id``, ``owner``, ``phone``, ``level``.
    workload : DataFrame
        Per grid chief: ``person_id``, ``name``, ``grids``, ``area_m2``,
        ``road_m_<class>`` for every road class, ``households``, ``pois``
        (must-check points), ``road_m``, ``phone``, ``grid_ids``, ``village_ids``.
    findings : GeoDataFrame
        ``grid_unstaffed``, ``staff_unplaced``, ``chief_unplaced``,
        ``grid_overloaded``, ``river_unassigned``, ``road_ambiguous``; owners filled.
    border_roads : GeoDataFrame
        Road parts on the shared edge of two grids and the decision taken:
        ``road_id``, ``road_class``, ``grids`` (``"A,B"``), ``grid_a``,
        ``grid_b``, ``owner_grid`` (None under ``"flag"``), ``decided_by``, ``length_m``.
    options : dict
        The resolved options (see :func:`resolve_options`).
    """

    staffing: pd.DataFrame
    reaches: gpd.GeoDataFrame
    cross_sections: gpd.GeoDataFrame
    corridors: gpd.GeoDataFrame
    responsibility: gpd.GeoDataFrame
    workload: pd.DataFrame
    findings: gpd.GeoDataFrame
    border_roads: gpd.GeoDataFrame = field(default_factory=gpd.GeoDataFrame)
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        staffed = int(self.staffing["staffed"].sum()) if len(self.staffing) else 0
        return (f"<Responsibility: {staffed}/{len(self.staffing)} grids staffed, {len(self.reaches)} reaches, "
                f"{len(self.cross_sections)} cross-boundary sections, {len(self.corridors)} corridors, "
                f"{len(self.border_roads)} border roads, {len(self.findings)} findings>")


# --------------------------------------------------------------------------- options
def _number(value: Any, key: str, *, minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        msg = f"[assign] {key} must be a number {bound}, got {value!r}."
        raise ConfigError(msg, fix=f"write {key} = 30 (metres) or remove it to use the default")
    return float(value)


def _by_level(value: Any, key: str, *, strict: bool) -> float | dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): _number(v, f"{key}.{k}", strict=strict) for k, v in value.items()}
    return _number(value, key, strict=strict)


def resolve_options(options: AssignOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check the ``[assign]`` options and fill in the defaults.

    Parameters
    ----------
    options
        ``border_rule`` (``"left"``, ``"longer"`` or ``"flag"``; default
        ``"left"``); ``border_min_m`` (a road counts as lying on a grid
        border only where it runs along it for at least this length, default
        5 m: shorter shared bits are where a road crosses the border at a
        shallow angle); ``section_m`` (half-length of a cross-boundary section,
        default 100); ``corridor_m`` (corridor half-width from the centreline
        when the river has no ``width_m``: a number, or a table by river
        ``level`` with an optional ``default`` key; default 30 m each side);
        ``bank_m`` (when the river has ``width_m``, the corridor half-width is
        ``width_m / 2 + bank_m``; a number or a table by level; default the
        river's ``corridor_m``, i.e. the same margin measured from the bank
        instead of the centreline); ``limits`` (workload limits per grid chief,
        merged over the default ``{max_grids = 3}``: any of ``max_grids``,
        ``max_households``, ``max_area_m2``, ``max_road_m``, ``max_pois``; set a
        limit to ``false`` to switch it off); ``default_owner`` (owner where no
        one is named; default ``settings.default_owner``).

    Returns
    -------
    dict
        The resolved options (a new dict).

    Raises
    ------
    ConfigError
        An unknown key or a value of the wrong kind.
    """
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        msg = f"unknown [assign] option(s) {unknown}."
        raise ConfigError(msg, fix=f"use only {sorted(DEFAULT_OPTIONS)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_OPTIONS.items()}
    rule = given.get("border_rule", out["border_rule"])
    if rule not in BORDER_RULES:
        msg = f"[assign] border_rule must be one of {list(BORDER_RULES)}, got {rule!r}."
        raise ConfigError(msg, fix='write border_rule = "left" (or "longer", or "flag" to have each case decided)')
    out["border_rule"] = rule
    out["section_m"] = _number(given.get("section_m", out["section_m"]), "section_m")
    out["border_min_m"] = _number(given.get("border_min_m", out["border_min_m"]), "border_min_m")
    out["corridor_m"] = _by_level(given.get("corridor_m", out["corridor_m"]), "corridor_m", strict=True)
    bank = given.get("bank_m")
    out["bank_m"] = None if bank is None else _by_level(bank, "bank_m", strict=False)
    limits = given.get("limits", {})
    if not isinstance(limits, Mapping):
        msg = f"[assign] limits must be a table, got {limits!r}."
        raise ConfigError(msg, fix="write [assign.limits] with max_grids = 3, max_households = 500, …")
    bad = sorted(set(limits) - set(LIMITS))
    if bad:
        msg = f"unknown [assign.limits] key(s) {bad}."
        raise ConfigError(msg, fix=f"use only {sorted(LIMITS)}")
    merged = {**out["limits"], **limits}
    out["limits"] = {k: _number(v, f"limits.{k}") for k, v in merged.items() if v is not None and v is not False}
    owner = given.get("default_owner")
    if owner is not None and (not isinstance(owner, str) or not owner.strip()):
        msg = f"[assign] default_owner must be a non-empty text, got {owner!r}."
        raise ConfigError(msg, fix='write default_owner = "镇指挥中心"')
    out["default_owner"] = owner.strip() if isinstance(owner, str) else None
    return out


# --------------------------------------------------------------------------- findings
def _finding_frames(town: Town, *, staffing: pd.DataFrame, reaches: gpd.GeoDataFrame, merged: np.ndarray,
                    chiefs: _Chiefs, workload: pd.DataFrame, zones: Mapping[str, shapely.Geometry],
                    border: gpd.GeoDataFrame, opts: Mapping[str, Any], vnames: Mapping[str, str]
                    ) -> list[gpd.GeoDataFrame]:
    crs = town.crs
    parts: list[gpd.GeoDataFrame] = []
    gpos = pd.Series(np.arange(len(town.grids)), index=town.grids["grid_id"].to_numpy(dtype=object))
    ggeoms = _geoms(town.grids)

    def place(vid: Any) -> str:
        return f"{vnames.get(vid, vid)} ({vid})" if present(vid) else "no village"

    # grid_unstaffed
    un = staffing[~staffing["staffed"]]
    if len(un):
        g = ggeoms[gpos[un["grid_id"]].to_numpy()]
        msgs = [f"grid {gid} in {place(v)} has no grid chief (网格长)"
                + (f"; its {n} member(s) ({m}) need a chief" if n else "")
                + "; name one in the grid_staff roster."
                for gid, v, n, m in zip(un["grid_id"], un["village_id"], un["member_count"], un["members"],
                                        strict=True)]
        frame = pd.DataFrame({"kind": "grid_unstaffed", "severity": "high", "village_id": un["village_id"].to_numpy(),
                              "grid_id": un["grid_id"].to_numpy(), "measure": shapely.area(g), "unit": "m2",
                              "rule": "grid_chief", "message": msgs, "geometry": g})
        parts.append(make_findings(frame, crs=crs, key=[f"grid:{x}" for x in un["grid_id"]]))
    # staff_unplaced and chief_unplaced, from the load-time reference checks
    issues = town.issues
    rpos = pd.Series(np.arange(len(town.rivers)), index=town.rivers["river_id"].to_numpy(dtype=object))
    for kind, roster in (("staff_unplaced", "grid_staff"), ("chief_unplaced", "river_chiefs")):
        rows = issues[issues["kind"] == kind] if len(issues) else issues
        if not len(rows):
            continue
        table = getattr(town, roster)
        geoms, msgs, keys = [], [], []
        for row, pid, name, col, value, problem in rows[["row", "person_id", "name", "column", "value", "problem"]
                                                         ].itertuples(index=False):
            river = table.at[row, "river_id"] if roster == "river_chiefs" and row in table.index else None
            geom = merged[rpos[river]] if present(river) and river in rpos.index else shapely.Point()
            geoms.append(geom)
            role = table.at[row, "role" if roster == "grid_staff" else "level"] if row in table.index else None
            shown = "(blank)" if not present(value) else value
            msgs.append(f"{name} ({pid}, {role}) in the {roster} roster{_line_note(town, roster, row)}: "
                        f"{col} = {shown}: {problem}; correct the roster.")
            keys.append(f"{roster}:{pid}|{col}|{value}")
        frame = pd.DataFrame({"kind": kind, "severity": "medium", "measure": 1.0, "unit": "count",
                              "rule": f"{roster}_reference", "message": msgs, "geometry": geoms,
                              "person_id": rows["person_id"].to_numpy(dtype=object)})
        parts.append(make_findings(frame, crs=crs, key=keys))
    # river_unassigned: rivers without a town chief, reaches without a village chief
    rivers = town.rivers
    if len(rivers):
        no_town = ~rivers["river_id"].isin(set(chiefs.town))
        inside = _only(shapely.intersection(merged, town.extent), 1)
        no_town &= shapely.length(inside) > 0
        if no_town.any():
            sel = np.flatnonzero(no_town.to_numpy())
            g = inside[sel]
            rid = rivers["river_id"].to_numpy(dtype=object)[sel]
            rname = rivers["name"].to_numpy(dtype=object)[sel]
            frame = pd.DataFrame({
                "kind": "river_unassigned", "severity": "high", "measure": shapely.length(g), "unit": "m",
                "rule": "town_chief", "geometry": g, "river_id": rid, "reach_id": None,
                "message": [f"river {n} ({r}) has no town-level river chief (镇级河长) for its {m:,.0f} m in the "
                            "town; appoint one in the river_chiefs roster."
                            for n, r, m in zip(rname, rid, shapely.length(g), strict=True)],
            })
            parts.append(make_findings(frame, crs=crs, key=[f"river:{r}" for r in rid]))
        open_ = reaches[reaches["village_chief"].isna()] if len(reaches) else reaches
        if len(open_):
            frame = pd.DataFrame({
                "kind": "river_unassigned", "severity": "high", "village_id": open_["village_id"].to_numpy(),
                "measure": open_["length_m"].to_numpy(), "unit": "m", "rule": "village_chief",
                "geometry": _geoms(open_), "river_id": open_["river_id"].to_numpy(),
                "reach_id": open_["reach_id"].to_numpy(),
                "message": [f"reach {rc} of river {n} ({r}) in {place(v)}, chainage {a:,.0f}-{b:,.0f} m, has no "
                            "village-level river chief (村级河长); appoint one in the river_chiefs roster."
                            for rc, n, r, v, a, b in zip(open_["reach_id"], open_["river_name"], open_["river_id"],
                                                         open_["village_id"], open_["start_m"], open_["end_m"],
                                                         strict=True)],
            })
            keys = [f"reach:{r}|{v}" for r, v in zip(open_["river_id"], open_["village_id"], strict=True)]
            parts.append(make_findings(frame, crs=crs, key=keys))
    # grid_overloaded: one finding per chief and exceeded limit
    for limit, value in opts["limits"].items():
        col, unit, words = LIMITS[limit]
        if not len(workload):
            break
        over = workload[workload[col].astype(float) > value]
        if not len(over):
            continue
        frame = pd.DataFrame({
            "kind": "grid_overloaded", "severity": "low", "village_id": over["village_ids"].to_numpy(),
            "grid_id": over["grid_ids"].to_numpy(), "measure": over[col].astype(float).to_numpy(), "unit": unit,
            "rule": limit, "geometry": [zones[p] for p in over["person_id"]],
            "person_id": over["person_id"].to_numpy(),
            # a shared name is already labelled "name (id)": the id is not said twice
            "message": [f"grid chief {n if str(n).endswith(f'({p})') else f'{n} ({p})'} has {float(x):,.0f} {words} "
                        f"in grids {show_ids(g, ',')}, over the limit "
                        f"{limit} = {value:,.0f}; split the work or add a grid chief."
                        for n, p, x, g in zip(over["name"], over["person_id"], over[col], over["grid_ids"],
                                              strict=True)],
        })
        parts.append(make_findings(frame, crs=crs, key=[f"chief:{p}|{limit}" for p in over["person_id"]]))
    # road_ambiguous (border_rule = flag)
    flagged = border[border["owner_grid"].isna()] if len(border) else border
    if len(flagged):
        gv = dict(zip(town.grids["grid_id"], town.grids["village_id"], strict=True))
        villages = [ids_cell(sorted(unique_present([gv.get(a), gv.get(b)])))
                    for a, b in zip(flagged["grid_a"], flagged["grid_b"], strict=True)]
        frame = pd.DataFrame({
            "kind": "road_ambiguous", "severity": "medium", "village_id": villages,
            "grid_id": flagged["grids"].to_numpy(), "measure": flagged["length_m"].to_numpy(), "unit": "m",
            "rule": "border_rule", "geometry": _geoms(flagged), "road_id": flagged["road_id"].to_numpy(),
            "road_class": flagged["road_class"].to_numpy(),
            "message": [f"{c} road {r} runs {m:,.0f} m along the border of grids {a} and {b}: both or neither may "
                        "patrol it; the command center must decide which grid owns it."
                        for c, r, m, a, b in zip(flagged["road_class"], flagged["road_id"], flagged["length_m"],
                                                 flagged["grid_a"], flagged["grid_b"], strict=True)],
        })
        keys = [f"road:{r}|{','.join(g)}" for r, g in zip(flagged["road_id"], flagged["grids"], strict=True)]
        parts.append(make_findings(frame, crs=crs, key=keys))
    return parts


# --------------------------------------------------------------------------- main entry
def analyze_responsibility(town: Town, *, options: AssignOptions | Mapping[str, Any] | None = None,
                           tolerance_m: float | None = None) -> Responsibility:
    """Join the rosters onto grids and river reaches and report what is missing.

    Parameters
    ----------
    town
        A validated :class:`~gisgrid.model.Town`.
    options
        The ``[assign]`` options; see :func:`resolve_options`.

    Returns
    -------
    Responsibility
        Staffing, reaches, cross-boundary sections, corridors, the
        "who is responsible here" layer, the workload per grid chief, the
        border-road decisions and the findings (owners filled).

    Raises
    ------
    ConfigError
        Bad options.
    """
    opts = resolve_options(options)
    crs = town.crs
    labels = _person_labels(town)
    vnames = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
    vowner = {v: village_owner(v, n) for v, n in vnames.items()}
    staffing = _staffing(town, labels, vowner)
    merged = shapely.line_merge(_geoms(town.rivers), directed=True) if len(town.rivers) else np.array([], dtype=object)
    chiefs = _river_chiefs(town, labels)
    tol = settings.tolerance_m if tolerance_m is None else float(tolerance_m)
    reaches = _reaches(town, merged, chiefs, tol)
    sections = _cross_sections(town, merged, reaches, chiefs, opts["section_m"], tol)
    corridors = _corridors(town, merged, chiefs, opts)
    band = tol if tol > 0 else settings.border_tolerance_m
    border = _border_roads(town, opts["border_rule"], opts["border_min_m"], band)
    workload, zones = _workload(town, labels, border)

    grid_rows = pd.DataFrame({"layer": "grid", "zone_id": staffing["grid_id"], "village_id": staffing["village_id"],
                              "owner": staffing["owner"], "phone": staffing["chief_phone"],
                              "level": np.where(staffing["staffed"], "grid_chief", "village")})
    river_rows = pd.DataFrame({
        "layer": "river",
        "zone_id": [r if not present(v) else f"{r}@{v}" for r, v in zip(corridors["river_id"],
                                                                            corridors["village_id"], strict=True)],
        "village_id": corridors["village_id"], "owner": corridors["name"], "phone": corridors["phone"],
        "level": corridors["level"],
    })
    resp_geoms = np.concatenate([_geoms(town.grids), _geoms(corridors)])
    resp_frame = pd.concat([f for f in (grid_rows, river_rows) if len(f)], ignore_index=True) if len(
        grid_rows) or len(river_rows) else pd.DataFrame()
    for col in ("layer", "zone_id", "village_id", "owner", "phone", "level"):
        if col in resp_frame.columns:
            resp_frame[col] = _nones(resp_frame[col])
    responsibility = _gdf(resp_frame, resp_geoms, crs, ("layer", "zone_id", "village_id", "owner", "phone", "level"))

    parts = _finding_frames(town, staffing=staffing, reaches=reaches, merged=merged, chiefs=chiefs,
                            workload=workload, zones=zones, border=border, opts=opts, vnames=vnames)
    findings = concat_findings(parts, crs=crs) if parts else empty_findings(crs)
    for col in ("person_id", "river_id", "reach_id", "road_id", "road_class"):
        if col in findings.columns:
            findings[col] = _nones(findings[col])
    result = Responsibility(staffing=staffing, reaches=reaches, cross_sections=sections, corridors=corridors,
                            responsibility=responsibility, workload=workload, findings=findings,
                            border_roads=border, options=opts)
    logger.info("responsibility: %s", result)
    return result
