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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.ops import substring

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.findings import (
    OWNER_JOIN,
    concat_findings,
    empty_findings,
    group_ids,
    group_join,
    ids_cell,
    join_present,
    make_findings,
    present,
    show_ids,
    split_owner,
    unique_present,
)
from gisgrid.geometry.coverage import zones_at
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
    "corridor_m": 30.0,
    "bank_m": None,
    "limits": {"max_grids": 3},
    "default_owner": None,
}


_SIDE_STEP_M = 0.5  # how far either side of a crossing (along the river) or of a road (to its left) we look


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


# --------------------------------------------------------------------------- small helpers
def _geoms(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    values = frame.geometry.values if isinstance(frame, gpd.GeoDataFrame) else frame.values
    return np.asarray(values, dtype=object)


def _gdf(data: Mapping[str, Any] | pd.DataFrame, geoms: Any, crs: Any, columns: Sequence[str]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(data) if not isinstance(data, pd.DataFrame) else data.copy()
    for col in columns:
        if col not in frame.columns:
            frame[col] = pd.Series([None] * len(frame), dtype=object, index=frame.index)
    frame = frame[list(columns)].reset_index(drop=True)
    geo = gpd.GeoSeries(np.asarray(geoms, dtype=object) if len(frame) else [], crs=crs)
    return gpd.GeoDataFrame(frame, geometry=geo, crs=crs)


def _only(geoms: np.ndarray, dim: int) -> np.ndarray:
    """Keep only the parts of dimension ``dim`` (1 lines, 2 polygons); empty where none is left."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return geoms
    wanted = (1, 5) if dim == 1 else (3, 6)
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    bad = np.flatnonzero(~np.isin(types, wanted))
    if not len(bad):
        return out
    parts, idx = shapely.get_parts(geoms[bad], return_index=True)
    keep = shapely.get_dimensions(parts) == dim
    maker = shapely.multilinestrings if dim == 1 else shapely.multipolygons
    rebuilt = np.full(len(bad), None, dtype=object)
    if keep.any():
        rebuilt = maker(parts[keep], indices=idx[keep], out=rebuilt)
    empty = shapely.MultiLineString() if dim == 1 else shapely.MultiPolygon()
    rebuilt = np.where(shapely.is_missing(rebuilt), empty, rebuilt)
    out[bad] = rebuilt
    return out


def _nones(series: pd.Series) -> pd.Series:
    """An object column with None for missing values; the town's text was cleaned once, by model, on load."""
    obj = series.astype(object)
    return obj.where(obj.notna(), None)


def _substring(line: shapely.Geometry, start: float, end: float) -> shapely.Geometry:
    """``shapely.ops.substring`` that also takes a MultiLineString (chainage summed over its parts)."""
    if line.geom_type == "LineString":
        return substring(line, start, end)
    parts = shapely.get_parts(line)
    lengths = shapely.length(parts)
    offsets = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.clip(np.searchsorted(offsets, (start + end) / 2, side="right") - 1, 0, len(parts) - 1))
    return substring(parts[k], max(start - offsets[k], 0.0), min(end - offsets[k], lengths[k]))


def _person_labels(town: Town) -> dict[str, str]:
    """person_id -> the name used as owner ("name (person_id)" when a name is shared)."""
    frames = [f[["person_id", "name"]] for f in (town.grid_staff, town.river_chiefs) if len(f)]
    if not frames:
        return {}
    people = pd.concat(frames, ignore_index=True).astype(object).drop_duplicates("person_id")
    shared = people["name"].duplicated(keep=False)
    label = np.where(shared, people["name"] + " (" + people["person_id"] + ")", people["name"])
    return dict(zip(people["person_id"], label, strict=True))


def _line_note(town: Town, roster: str, row: Any) -> str:
    path = str((town.sources.get(roster) or {}).get("path") or "")
    if path.lower().endswith((".csv", ".txt", ".xlsx", ".xlsm")) and isinstance(row, (int, np.integer)):
        return f" (line {int(row) + 2} of {path})"
    return ""


# --------------------------------------------------------------------------- staffing
def staffing_table(town: Town) -> pd.DataFrame:
    """The one staffing table: per grid its chief(s), members and owner (:attr:`Responsibility.staffing`).

    Parameters
    ----------
    town
        A validated town.

    Returns
    -------
    DataFrame
        One row per grid: ``grid_id``, ``village_id``, ``chief_id``, ``chief_name``, ``chief_phone``,
        ``members``, ``member_count``, ``staffed``, ``owner`` (the chief(s), or the village that must name one).
    """
    names = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
    return _staffing(town, _person_labels(town), {v: village_owner(v, n) for v, n in names.items()})


def _staffing(town: Town, labels: Mapping[str, str], vowner: Mapping[str, str | None]) -> pd.DataFrame:
    grids = town.grids
    staff = town.grid_staff
    placed = staff[staff["grid_id"].isin(set(grids["grid_id"]))].drop_duplicates(["grid_id", "person_id", "role"])
    chiefs = placed[placed["role"] == "grid_chief"]
    members = placed[placed["role"] == "grid_member"]
    out = pd.DataFrame({"grid_id": grids["grid_id"].to_numpy(dtype=object),
                        "village_id": grids["village_id"].to_numpy(dtype=object)})
    chief_label = [labels.get(p, n) for p, n in zip(chiefs["person_id"], chiefs["name"], strict=True)]
    for col, frame, values, sep in (
        ("chief_id", chiefs, chiefs["person_id"], ", "), ("chief_name", chiefs, chiefs["name"], ", "),
        ("chief_phone", chiefs, chiefs["phone"], ", "), ("owner", chiefs, chief_label, OWNER_JOIN),
        ("members", members, members["name"], ", "),
    ):
        out[col] = out["grid_id"].map(group_join(frame["grid_id"], values, sep))
    count = members.drop_duplicates(["grid_id", "person_id"])["grid_id"].value_counts()
    out["member_count"] = out["grid_id"].map(count).fillna(0).astype(int)
    out["staffed"] = out["chief_id"].notna().to_numpy(dtype=bool)
    for col in ("chief_id", "chief_name", "chief_phone", "members", "owner"):
        # group_join keeps only present text (the rosters were cleaned by model): missing is NaN, made None
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["owner"] = [o if s else vowner.get(v) or village_owner(v)
                    for o, s, v in zip(out["owner"], out["staffed"], out["village_id"], strict=True)]
    two = chiefs["grid_id"].value_counts()
    if (two > 1).any():
        logger.info("%d grid(s) have more than one grid chief: %s", int((two > 1).sum()),
                    ", ".join(two.index[two > 1][:10]))
    cols = ["grid_id", "village_id", "chief_id", "chief_name", "chief_phone", "members", "member_count",
            "staffed", "owner"]
    return out[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- rivers
_REACH_COLUMNS = ("reach_id", "river_id", "river_name", "village_id", "start_m", "end_m", "length_m",
                  "town_chief", "village_chief")
_SECTION_COLUMNS = ("section_id", "river_id", "border", "village_a", "village_b", "chainage_m", "chiefs_a",
                    "chiefs_b", "start_m", "end_m", "length_m")
_CORRIDOR_COLUMNS = ("person_id", "name", "level", "river_id", "village_id", "area_m2", "half_width_m", "phone")


@dataclass
class _Chiefs:
    """River chiefs placed on existing rivers (and villages), as owner labels."""

    town: dict[str, str]                       # river_id -> labels joined " / "
    village: dict[tuple[str, str], str]        # (river_id, village_id) -> labels joined " / "
    placed: pd.DataFrame                       # rows of river_chiefs with a corridor


def _river_chiefs(town: Town, labels: Mapping[str, str]) -> _Chiefs:
    rc = town.river_chiefs
    rivers = set(town.rivers["river_id"])
    villages = set(town.villages["village_id"])
    on_river = rc["river_id"].isin(rivers)
    is_village = rc["level"] == "village"
    placed = rc[on_river & (~is_village | rc["village_id"].isin(villages))].copy()
    placed["label"] = [labels.get(p, n) for p, n in zip(placed["person_id"], placed["name"], strict=True)]
    tc = placed[placed["level"] == "town"].groupby("river_id")["label"].agg(lambda s: join_present(s, OWNER_JOIN))
    vc = placed[placed["level"] == "village"].groupby(["river_id", "village_id"])["label"].agg(
        lambda s: join_present(s, OWNER_JOIN))
    return _Chiefs(town=dict(tc.items()), village=dict(vc.items()), placed=placed)


def _reaches(town: Town, merged: np.ndarray, chiefs: _Chiefs, tol: float) -> gpd.GeoDataFrame:
    rivers = town.rivers
    villages = town.villages
    vgeoms = _geoms(villages)
    empty = _gdf({}, [], town.crs, _REACH_COLUMNS)
    if not len(rivers):
        return empty
    ri, vi = shapely.STRtree(vgeoms).query(merged, predicate="intersects")
    if not len(ri):
        return empty
    pieces = _only(shapely.intersection(merged[ri], vgeoms[vi]), 1)
    pieces = shapely.line_merge(pieces, directed=True)
    parts, pidx = shapely.get_parts(pieces, return_index=True)
    # a bit of river in the sliver where two hand-drawn villages overlap is no reach
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= max(settings.sliver_length_m, tol))
    parts, pidx = parts[keep], pidx[keep]
    r, v = ri[pidx], vi[pidx]
    line = merged[r]
    start = shapely.line_locate_point(line, shapely.get_point(parts, 0))
    end = shapely.line_locate_point(line, shapely.get_point(parts, -1))
    flip = start > end
    parts = np.where(flip, shapely.reverse(parts), parts)
    start, end = np.minimum(start, end), np.maximum(start, end)
    river_ids = rivers["river_id"].to_numpy(dtype=object)[r]
    village_ids = villages["village_id"].to_numpy(dtype=object)[v]
    frame = pd.DataFrame({
        "river_id": river_ids, "river_name": rivers["name"].to_numpy(dtype=object)[r], "village_id": village_ids,
        "start_m": start, "end_m": end, "length_m": shapely.length(parts), "_g": parts,
    }).sort_values(["river_id", "start_m", "village_id"], kind="stable")
    k = frame.groupby(["river_id", "village_id"], sort=False).cumcount() + 1
    frame["reach_id"] = frame["river_id"] + "-" + frame["village_id"] + "-" + k.astype(str)
    frame["town_chief"] = frame["river_id"].map(lambda x: _comma(chiefs.town.get(x)))
    frame["village_chief"] = [_comma(chiefs.village.get((a, b)))
                              for a, b in zip(frame["river_id"], frame["village_id"], strict=True)]
    for col in ("reach_id", "river_id", "river_name", "village_id", "town_chief", "village_chief"):
        frame[col] = _nones(frame[col])
    return _gdf(frame, frame["_g"].to_numpy(), town.crs, _REACH_COLUMNS)


def _comma(owner: str | None) -> str | None:
    """Owner labels joined by " / " as a ", "-joined list of names (None stays None)."""
    return None if owner is None else ", ".join(split_owner(owner))


def _cross_sections(town: Town, merged: np.ndarray, reaches: gpd.GeoDataFrame, chiefs: _Chiefs,
                    section_m: float, tol: float) -> gpd.GeoDataFrame:
    empty = _gdf({}, [], town.crs, _SECTION_COLUMNS)
    if not len(reaches):
        return empty
    pos = pd.Series(np.arange(len(town.rivers)), index=town.rivers["river_id"].to_numpy(dtype=object))
    cand = pd.DataFrame({
        "river_id": np.concatenate([reaches["river_id"].to_numpy(dtype=object)] * 2),
        "c": np.concatenate([reaches["start_m"].to_numpy(), reaches["end_m"].to_numpy()]),
    })
    cand["r"] = cand["river_id"].map(pos).astype(int)
    cand["L"] = shapely.length(merged[cand["r"].to_numpy()])
    cand = cand[(cand["c"] > _SIDE_STEP_M) & (cand["c"] < cand["L"] - _SIDE_STEP_M)]
    cand = cand.sort_values(["river_id", "c"], kind="stable")
    gap = cand.groupby("river_id")["c"].diff()
    # hand-drawn villages: one reach ends and the next starts up to two tolerances apart
    cand = cand[gap.isna() | (gap > max(0.01, 2 * tol))].reset_index(drop=True)
    if not len(cand):
        return empty
    lines = merged[cand["r"].to_numpy()]
    c = cand["c"].to_numpy()
    up = shapely.line_interpolate_point(lines, c - _SIDE_STEP_M)
    down = shapely.line_interpolate_point(lines, c + _SIDE_STEP_M)
    tree = shapely.STRtree(_geoms(town.villages))
    vids = town.villages["village_id"].to_numpy(dtype=object)
    side_a = [h[0] if h else None for h in zones_at(up, tree, vids)]
    side_b = [h[0] if h else None for h in zones_at(down, tree, vids)]
    extent = town.extent
    shapely.prepare(extent)
    outside = ~shapely.intersects(extent, up) | ~shapely.intersects(extent, down)
    cand["village_a"], cand["village_b"] = side_a, side_b
    cand["border"] = np.where(outside, "town", "village")
    cand = cand[(cand["village_a"] != cand["village_b"]).to_numpy()
                & (cand["village_a"].notna() | cand["village_b"].notna()).to_numpy()].reset_index(drop=True)
    if not len(cand):
        return empty
    cand["start_m"] = np.maximum(cand["c"] - section_m, 0.0)
    cand["end_m"] = np.minimum(cand["c"] + section_m, cand["L"])
    geoms = [_substring(merged[r], a, b) for r, a, b in zip(cand["r"], cand["start_m"], cand["end_m"], strict=True)]
    cand["length_m"] = shapely.length(np.asarray(geoms, dtype=object))
    cand["chainage_m"] = cand["c"]
    cand["section_id"] = cand["river_id"] + "-X" + (cand.groupby("river_id").cumcount() + 1).astype(str)
    cand["chiefs_a"] = [_comma(chiefs.village.get((r, v))) for r, v in zip(cand["river_id"], cand["village_a"],
                                                                           strict=True)]
    cand["chiefs_b"] = [_comma(chiefs.village.get((r, v))) for r, v in zip(cand["river_id"], cand["village_b"],
                                                                           strict=True)]
    for col in ("village_a", "village_b", "chiefs_a", "chiefs_b", "section_id", "river_id", "border"):
        cand[col] = _nones(cand[col])
    return _gdf(cand, geoms, town.crs, _SECTION_COLUMNS)


def _half_widths(rivers: gpd.GeoDataFrame, corridor: float | dict[str, float],
                 bank: float | dict[str, float] | None) -> np.ndarray:
    def by_level(value: float | dict[str, float], level: Any, fallback: float) -> float:
        if isinstance(value, dict):
            return value.get(str(level), value.get("default", fallback)) if present(level) else value.get(
                "default", fallback)
        return value

    default = float(DEFAULT_OPTIONS["corridor_m"])
    out = []
    for level, width in zip(rivers["level"], rivers["width_m"], strict=True):
        base = by_level(corridor, level, default)
        if present(width) and float(width) > 0:
            margin = base if bank is None else by_level(bank, level, base)
            out.append(float(width) / 2 + margin)
        else:
            out.append(base)
    return np.asarray(out, dtype=float)


def _corridors(town: Town, merged: np.ndarray, chiefs: _Chiefs, opts: Mapping[str, Any]) -> gpd.GeoDataFrame:
    placed = chiefs.placed
    if not len(placed) or not len(town.rivers):
        return _gdf({}, [], town.crs, _CORRIDOR_COLUMNS)
    half = _half_widths(town.rivers, opts["corridor_m"], opts["bank_m"])
    buffers = shapely.buffer(merged, half, cap_style="flat", join_style="round")
    rpos = pd.Series(np.arange(len(town.rivers)), index=town.rivers["river_id"].to_numpy(dtype=object))
    vgeom = pd.Series(_geoms(town.villages), index=town.villages["village_id"].to_numpy(dtype=object))
    r = placed["river_id"].map(rpos).astype(int).to_numpy()
    is_village = (placed["level"] == "village").to_numpy()
    clip = np.where(is_village, placed["village_id"].map(vgeom).to_numpy(dtype=object), town.extent)
    geoms = _only(shapely.intersection(buffers[r], clip), 2)
    frame = placed[["person_id", "label", "level", "river_id", "village_id", "phone"]].rename(
        columns={"label": "name"}).reset_index(drop=True)
    frame["village_id"] = _nones(frame["village_id"].where(is_village, None))
    frame["area_m2"] = shapely.area(geoms)
    frame["half_width_m"] = half[r]
    lost = frame.loc[frame["area_m2"] <= 0, ["name", "river_id", "village_id"]]
    if len(lost):
        logger.warning("%d river chief(s) have no corridor: the river does not reach their village or the town "
                       "(%s)", len(lost), ", ".join(f"{a} {b}@{c}" for a, b, c in lost.itertuples(index=False)))
    return _gdf(frame, geoms, town.crs, _CORRIDOR_COLUMNS)


# --------------------------------------------------------------------------- border roads
_BORDER_COLUMNS = ("road_id", "road_class", "grids", "grid_a", "grid_b", "owner_grid", "decided_by", "length_m")


def _segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Straight segments of lines as an (n, 4) array ``x0 y0 x1 y1``, and the index of each one's geometry."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    coords, pidx = shapely.get_coordinates(parts, return_index=True)
    same = pidx[1:] == pidx[:-1]
    return np.hstack([coords[:-1][same], coords[1:][same]]), owner[pidx[:-1][same]]


def _interval(a: np.ndarray, b: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The t-interval where ``lo <= a + b * t <= hi`` (all t when b is 0 and a fits, none when it does not)."""
    flat = np.abs(b) < 1e-12
    safe = np.where(flat, 1.0, b)
    t1, t2 = (lo - a) / safe, (hi - a) / safe
    fits = (a >= lo) & (a <= hi)
    start = np.where(flat, np.where(fits, -np.inf, np.inf), np.minimum(t1, t2))
    end = np.where(flat, np.where(fits, np.inf, -np.inf), np.maximum(t1, t2))
    return start, end


def _along_pairs(lines: np.ndarray, polygons: np.ndarray, *, tolerance_m: float, min_length_m: float,
                 chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Return (line, polygon) index pairs where a line may run along the polygon's edge.

    A pair is kept when a segment of the line lies within ``tolerance_m`` of
    an edge of the polygon for at least ``min_length_m``: segment against
    segment in numpy, a cheap superset of the exact (buffer) test. The
    (segment, polygon) pairs whose boxes meet are expanded to the polygon's
    edges ``chunk`` pairs at a time, so memory stays bounded however many
    vertices hand-drawn polygons have.
    """
    rseg, rown = _segments(lines)
    eseg, eown = _segments(shapely.boundary(polygons))
    length_e = np.hypot(eseg[:, 2] - eseg[:, 0], eseg[:, 3] - eseg[:, 1])
    ok = length_e > 0
    eseg, eown, length_e = eseg[ok], eown[ok], length_e[ok]
    e_lo, e_hi = np.minimum(eseg[:, :2], eseg[:, 2:]), np.maximum(eseg[:, :2], eseg[:, 2:])
    e_off = np.searchsorted(eown, np.arange(len(polygons)))
    e_cnt = np.bincount(eown, minlength=len(polygons))
    t = tolerance_m
    r_lo, r_hi = np.minimum(rseg[:, :2], rseg[:, 2:]), np.maximum(rseg[:, :2], rseg[:, 2:])
    rbox = shapely.box(r_lo[:, 0] - t, r_lo[:, 1] - t, r_hi[:, 0] + t, r_hi[:, 1] + t)
    s_all, p_all = shapely.STRtree(polygons).query(rbox)
    # edge boxes grown by the tolerance once, one coordinate per array: the box test gathers 1-D columns
    ex0, ey0, ex1, ey1 = e_lo[:, 0] - t, e_lo[:, 1] - t, e_hi[:, 0] + t, e_hi[:, 1] + t
    rx0, ry0, rx1, ry1 = r_lo[:, 0], r_lo[:, 1], r_hi[:, 0], r_hi[:, 1]
    found: list[np.ndarray] = []
    for at in range(0, len(s_all), chunk):
        seg_i, poly = s_all[at:at + chunk], p_all[at:at + chunk]
        cnt = e_cnt[poly]
        si = np.repeat(seg_i, cnt)
        ei = np.repeat(e_off[poly] - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) + np.arange(cnt.sum())
        near = (rx0[si] <= ex1[ei]) & (ex0[ei] <= rx1[si])  # x first: most pairs fail it
        si, ei = si[near], ei[near]
        near = (ry0[si] <= ey1[ei]) & (ey0[ei] <= ry1[si])
        si, ei = si[near], ei[near]
        p0, p1 = rseg[si, :2], rseg[si, 2:]
        q0 = eseg[ei, :2]
        u = (eseg[ei, 2:] - q0) / length_e[ei, None]
        n = np.column_stack([-u[:, 1], u[:, 0]])
        rel, step = p0 - q0, p1 - p0
        d_lo, d_hi = _interval((n * rel).sum(1), (n * step).sum(1), -t, t)
        s_lo, s_hi = _interval((u * rel).sum(1), (u * step).sum(1), -t, length_e[ei] + t)
        lo = np.maximum.reduce([np.zeros(len(si)), d_lo, s_lo])
        hi = np.minimum.reduce([np.ones(len(si)), d_hi, s_hi])
        along = np.clip(hi - lo, 0.0, None) * np.hypot(step[:, 0], step[:, 1])
        keep = along >= min_length_m
        found.append(np.column_stack([rown[si[keep]], eown[ei[keep]]]))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), dtype=np.intp)
    return pairs[:, 0], pairs[:, 1]


def _border_roads(town: Town, rule: str, min_m: float, band_m: float) -> gpd.GeoDataFrame:
    """Road parts lying on the shared edge of two grids (within ``band_m`` of both), and which grid owns each."""
    roads, grids = town.roads, town.grids
    empty = _gdf({}, [], town.crs, _BORDER_COLUMNS)
    if not len(roads) or len(grids) < 2:
        return empty
    tol = float(band_m)
    rgeoms, ggeoms = _geoms(roads), _geoms(grids)
    # a road crossing a border at an angle a runs 2 x band / sin(a) within the band: with a wide band
    # (hand-drawn borders) only a run ten bands long is along the border, not across it
    min_m = max(min_m, settings.sliver_length_m, 10 * tol if tol > settings.border_tolerance_m else 0.0)
    # A road inside a grid and farther than the band from its edge runs along no border.
    tree = shapely.STRtree(ggeoms)
    r_in, g_in = tree.query(rgeoms, predicate="covered_by")
    deep = shapely.distance(rgeoms[r_in], shapely.boundary(ggeoms[g_in])) > 2 * tol
    cand = np.setdiff1d(np.arange(len(rgeoms)), r_in[deep])
    near = np.unique(tree.query(rgeoms[cand], predicate="dwithin", distance=2 * tol)[1])
    if not len(cand) or len(near) < 2:
        return empty
    ri, gi = _along_pairs(rgeoms[cand], ggeoms[near], tolerance_m=tol if tol > 0.5 else 2 * tol,
                          min_length_m=min_m / 2)
    ri, gi = cand[ri], near[gi]
    two = np.bincount(ri, minlength=len(rgeoms))[ri] >= 2  # a border has two sides
    ri, gi = ri[two], gi[two]
    if not len(ri):
        return empty
    edge = shapely.buffer(shapely.boundary(ggeoms[np.unique(gi)]), tol, quad_segs=2)
    edge_of = pd.Series(np.arange(len(edge)), index=np.unique(gi))
    near = shapely.intersection(rgeoms[ri], edge[edge_of[gi].to_numpy()])
    pairs = pd.DataFrame({"r": ri, "g": gi, "near": near, "len": shapely.length(near)})
    pairs = pairs[pairs["len"] >= min_m]
    both = pairs.merge(pairs, on="r", suffixes=("_a", "_b"))
    gids = grids["grid_id"].to_numpy(dtype=object)
    both = both[gids[both["g_a"].to_numpy()] < gids[both["g_b"].to_numpy()]].reset_index(drop=True)
    if not len(both):
        return empty
    shared = _only(shapely.intersection(both["near_a"].to_numpy(), both["near_b"].to_numpy()), 1)
    shared = shapely.line_merge(shared)
    parts, idx = shapely.get_parts(shared, return_index=True)
    ok = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= min_m)
    parts, idx = parts[ok], idx[ok]
    if not len(parts):
        return empty
    r = both["r"].to_numpy()[idx]
    a = both["g_a"].to_numpy()[idx]
    b = both["g_b"].to_numpy()[idx]
    frame = pd.DataFrame({
        "road_id": roads["road_id"].to_numpy(dtype=object)[r], "road_class": roads["road_class"].to_numpy(
            dtype=object)[r], "grid_a": gids[a], "grid_b": gids[b], "length_m": shapely.length(parts),
    })
    frame["grids"] = list(zip(frame["grid_a"], frame["grid_b"], strict=True))
    if rule == "flag":
        frame["owner_grid"] = None
        frame["decided_by"] = "flag"
    else:
        left = _left_grid(parts, rgeoms[r], ggeoms[a], ggeoms[b], step_m=max(_SIDE_STEP_M, 2 * tol + 0.5))
        owner = np.where(left, gids[a], gids[b]).astype(object)
        decided = np.full(len(frame), "left", dtype=object)
        if rule == "longer":
            share_a = shapely.length(shapely.intersection(rgeoms[r], shapely.buffer(ggeoms[a], tol, quad_segs=2)))
            share_b = shapely.length(shapely.intersection(rgeoms[r], shapely.buffer(ggeoms[b], tol, quad_segs=2)))
            clear = np.abs(share_a - share_b) > tol
            owner = np.where(clear, np.where(share_a > share_b, gids[a], gids[b]), owner).astype(object)
            decided = np.where(clear, "longer", "longer (tie: left)").astype(object)
        frame["owner_grid"] = owner
        frame["decided_by"] = decided
    frame = frame.assign(_g=parts, _gs=[",".join(g) for g in frame["grids"]]).sort_values(
        ["road_id", "_gs", "length_m"], kind="stable").drop(columns="_gs")
    for col in ("road_id", "road_class", "grid_a", "grid_b", "owner_grid", "decided_by"):
        frame[col] = _nones(frame[col])
    logger.info("%d road part(s) lie on grid borders (border_rule=%s)", len(frame), rule)
    return _gdf(frame, frame["_g"].to_numpy(), town.crs, _BORDER_COLUMNS)


def _left_grid(parts: np.ndarray, roads: np.ndarray, grid_a: np.ndarray, grid_b: np.ndarray, *,
               step_m: float = _SIDE_STEP_M) -> np.ndarray:
    """True where grid_a is on the road's left at the middle of the border part (else grid_b).

    The probe stands ``step_m`` to the left of the road: beyond the wobble of hand-drawn borders.
    """
    mid = shapely.line_interpolate_point(parts, 0.5, normalized=True)
    at = shapely.line_locate_point(roads, mid)
    length = shapely.length(roads)
    step = np.minimum(_SIDE_STEP_M, shapely.length(parts) / 4)
    p0 = shapely.line_interpolate_point(roads, np.maximum(at - step, 0.0))
    p1 = shapely.line_interpolate_point(roads, np.minimum(at + step, length))
    dx = shapely.get_x(p1) - shapely.get_x(p0)
    dy = shapely.get_y(p1) - shapely.get_y(p0)
    norm = np.hypot(dx, dy)
    norm[norm == 0] = 1.0
    lx = shapely.get_x(mid) - dy / norm * step_m
    ly = shapely.get_y(mid) + dx / norm * step_m
    in_a = shapely.contains_xy(grid_a, lx, ly)
    in_b = shapely.contains_xy(grid_b, lx, ly)
    probe = shapely.points(lx, ly)
    nearer_a = shapely.distance(grid_a, probe) <= shapely.distance(grid_b, probe)
    return np.where(in_a != in_b, in_a, nearer_a)


# --------------------------------------------------------------------------- workload
def _workload(town: Town, labels: Mapping[str, str], border: gpd.GeoDataFrame
              ) -> tuple[pd.DataFrame, dict[str, shapely.Geometry]]:
    classes = list(settings.road_classes)
    cols = ["person_id", "name", "grids", "area_m2", *[f"road_m_{c}" for c in classes], "households", "pois",
            "road_m", "phone", "grid_ids", "village_ids"]
    grids, staff = town.grids, town.grid_staff
    chiefs = staff[(staff["role"] == "grid_chief") & staff["grid_id"].isin(set(grids["grid_id"]))]
    chiefs = chiefs.drop_duplicates(["person_id", "grid_id"])
    if not len(chiefs):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols}), {}
    cz = chiefs[["person_id", "grid_id"]].merge(
        pd.DataFrame({"grid_id": grids["grid_id"], "village_id": grids["village_id"],
                      "households": grids["households"], "_g": _geoms(grids)}), on="grid_id")
    cz = cz.sort_values(["person_id", "grid_id"], kind="stable").reset_index(drop=True)
    people = pd.unique(cz["person_id"].to_numpy(dtype=object))
    zone_of = dict(zip(cz["person_id"], cz["_g"], strict=True))  # one grid each: the grid itself
    several = cz[cz["person_id"].duplicated(keep=False)]
    for pid, group in several.groupby("person_id", sort=False)["_g"]:  # only chiefs of several grids
        zone_of[pid] = shapely.union_all(group.to_numpy(dtype=object))
    zones = np.asarray([zone_of[p] for p in people], dtype=object)
    first = dict(zip(chiefs["person_id"], chiefs["name"], strict=True))
    work = pd.DataFrame({"person_id": people})
    work["name"] = [labels.get(p, first[p]) for p in people]
    grouped = cz.groupby("person_id")
    work["grids"] = work["person_id"].map(grouped["grid_id"].nunique()).astype(int)
    work["area_m2"] = shapely.area(zones)
    work["households"] = work["person_id"].map(grouped["households"].sum(min_count=1)).astype(float)
    work["grid_ids"] = work["person_id"].map(group_ids(cz["person_id"], cz["grid_id"]))
    villages = cz[["person_id", "village_id"]].sort_values(["person_id", "village_id"], kind="stable")
    work["village_ids"] = work["person_id"].map(group_ids(villages["person_id"], villages["village_id"]))
    work["phone"] = _nones(work["person_id"].map(group_join(chiefs["person_id"], chiefs["phone"])))
    # roads clipped to each chief's grids, by class; border parts counted for their owner grid only
    lengths = pd.DataFrame(0.0, index=people, columns=classes)
    roads = town.roads
    if len(roads):
        rg = _geoms(roads)
        ri, zi = shapely.STRtree(zones).query(rg, predicate="intersects")
        inside = shapely.contains_properly(zones[zi], rg[ri])  # most roads: no overlay needed
        clipped = shapely.length(rg[ri])
        clipped[~inside] = shapely.length(shapely.intersection(rg[ri[~inside]], zones[zi[~inside]]))
        part = pd.DataFrame({"p": people[zi], "cls": roads["road_class"].to_numpy(dtype=object)[ri],
                             "len": clipped})
        lengths = lengths.add(part.pivot_table(index="p", columns="cls", values="len", aggfunc="sum"),
                              fill_value=0.0).reindex(columns=classes, fill_value=0.0)
        lengths = lengths.add(_border_adjust(border, chiefs, zone_of), fill_value=0.0).reindex(
            index=people, columns=classes, fill_value=0.0)
    for c in classes:
        work[f"road_m_{c}"] = lengths[c].reindex(people).fillna(0.0).clip(lower=0.0).to_numpy()
    work["road_m"] = work[[f"road_m_{c}" for c in classes]].sum(axis=1)
    pois = town.pois[town.pois["kind"].isin(settings.must_check_kinds)]
    counts = pd.Series(0, index=people)
    if len(pois):
        pi, zi = shapely.STRtree(zones).query(_geoms(pois), predicate="intersects")
        hits = pd.DataFrame({"p": people[zi], "poi": pois["poi_id"].to_numpy(dtype=object)[pi]}).drop_duplicates()
        counts = counts.add(hits.groupby("p").size(), fill_value=0)
    work["pois"] = work["person_id"].map(counts).fillna(0).astype(int)
    work["person_id"] = _nones(work["person_id"])
    return work[cols].reset_index(drop=True), zone_of


def _border_adjust(border: gpd.GeoDataFrame, chiefs: pd.DataFrame,
                   zone_of: Mapping[str, shapely.Geometry]) -> pd.DataFrame:
    """Road metres to add per chief and class so that a decided border part counts for its owner only."""
    decided = border[border["owner_grid"].notna()] if len(border) else border
    if not len(decided):
        return pd.DataFrame()
    frame = pd.DataFrame({"cls": decided["road_class"].to_numpy(dtype=object),
                          "owner": decided["owner_grid"].to_numpy(dtype=object),
                          "other": np.where(decided["owner_grid"] == decided["grid_a"], decided["grid_b"],
                                            decided["grid_a"]).astype(object),
                          "_g": _geoms(decided), "len": decided["length_m"].to_numpy()})
    frame["k"] = np.arange(len(frame))
    who = chiefs[["grid_id", "person_id"]]
    owners = frame.merge(who, left_on="owner", right_on="grid_id")
    others = frame.merge(who, left_on="other", right_on="grid_id")
    # a chief of both grids keeps the part once, through the union of their grids
    others = others.merge(owners[["k", "person_id"]], on=["k", "person_id"], how="left", indicator=True)
    others = others[others["_merge"] == "left_only"]
    owners = owners.drop_duplicates(["k", "person_id"])
    others = others.drop_duplicates(["k", "person_id"])
    rows = []
    if len(owners):
        z = np.asarray([zone_of[p] for p in owners["person_id"]], dtype=object)
        got = shapely.length(shapely.intersection(owners["_g"].to_numpy(), z))
        rows.append(pd.DataFrame({"p": owners["person_id"], "cls": owners["cls"], "d": owners["len"] - got}))
    if len(others):
        z = np.asarray([zone_of[p] for p in others["person_id"]], dtype=object)
        got = shapely.length(shapely.intersection(others["_g"].to_numpy(), z))
        rows.append(pd.DataFrame({"p": others["person_id"], "cls": others["cls"], "d": -got}))
    if not rows:
        return pd.DataFrame()
    delta = pd.concat(rows, ignore_index=True)
    return delta.pivot_table(index="p", columns="cls", values="d", aggfunc="sum")


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
            "message": [f"grid chief {n} ({p}) has {float(x):,.0f} {words} in grids {show_ids(g, ',')}, over the limit "
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
