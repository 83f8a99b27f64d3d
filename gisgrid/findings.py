"""The one findings table every check writes and every output reads.

Columns (in this order): ``finding_id``, ``kind``, ``severity``, ``village_id``,
``grid_id``, ``owner``, ``measure``, ``unit``, ``rule``, ``message``, ``geometry``.

Id cells
--------
``village_id`` and ``grid_id`` hold one id as text, or a tuple of ids when a
finding concerns several (an overlap of two grids, a road on the border of
two villages), never ids joined into one text: an id may contain a comma.
Read them with :func:`id_list`, make them with :func:`ids_cell`; only files
without lists (CSV, XLSX, GeoPackage) and text for people join them
(:func:`show_ids`); GeoJSON keeps them as arrays and the history as JSON.

Stable ids
----------
``finding_id`` is ``"<kind>-<12 hex>"`` where the hex digits are the start of a
SHA-1 of the kind, the finding's *subject key* (the ids it is about: road id,
grid ids, poi id, river and village ids; never a person's name, so reassigning
a chief does not change the id) and its location: the centroid of the
offending geometry snapped to a ``settings.id_snap_m`` (10 m) grid whose cell
edges are shifted off the round numbers (at 6.3 m, 16.3 m, …), so that a
gap centred on a round coordinate does not sit on a cell edge. A few
centimetres of editing noise keep the id; a different gap, or the same gap in
a different place, gets another. Two findings that would still collide (the
same key in the same 10 m cell) are told apart by a ``~2``, ``~3`` suffix in
a deterministic order (by area/length, then coordinates).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid._errors import ConfigError, GisgridError, SchemaError
from gisgrid.vocab import KINDS, SEVERITIES, is_missing

__all__ = [
    "COLUMNS",
    "KINDS",
    "LIFECYCLE_COLUMNS",
    "OPEN_STATUSES",
    "OWNER_JOIN",
    "SEVERITY_RANK",
    "SUBJECT_COLUMNS",
    "as_date",
    "as_text",
    "concat_findings",
    "empty_findings",
    "explode_ids",
    "group_ids",
    "group_join",
    "id_list",
    "ids_cell",
    "is_open",
    "join_present",
    "lifecycle_as_of",
    "make_findings",
    "names_in",
    "present",
    "present_mask",
    "severity_rank",
    "show_ids",
    "sort_findings",
    "split_owner",
    "unique_present",
    "validate_findings",
    "with_lifecycle",
]

COLUMNS: tuple[str, ...] = (
    "finding_id",
    "kind",
    "severity",
    "village_id",
    "grid_id",
    "owner",
    "measure",
    "unit",
    "rule",
    "message",
    "geometry",
)

_CELL_SHIFT = 0.37

#: What a finding is about, beyond its village and grid: the checks fill the ones that apply.
SUBJECT_COLUMNS: tuple[str, ...] = (
    "road_id",        # road_uncovered, road_ambiguous, sensitive sections on roads
    "road_class",     # road_uncovered, road_ambiguous
    "poi_id",         # poi_uncovered, checkpoint_incomplete
    "poi_kind",       # the kind of that must-check point
    "river_id",       # river_unassigned, chief_unplaced, sections on rivers
    "reach_id",       # river_unassigned (a village-level reach)
    "section_id",     # a cross-boundary river section (交界断面)
    "person_id",      # staff_unplaced, chief_unplaced, grid_overloaded
    "layer",          # input_repaired: the layer that was repaired
    "feature_id",     # input_repaired: the feature
    "base_severity",  # the severity before a sensitive-section rule raised it
)

#: Columns :meth:`gisgrid.history.History.record` adds to every finding (its lifecycle).
LIFECYCLE_COLUMNS: tuple[str, ...] = ("status", "first_seen", "last_seen", "opened_on", "deadline", "days_overdue",
                                      "resolved_on", "times_reopened")
#: Statuses of a finding that still needs work.
OPEN_STATUSES: tuple[str, ...] = ("new", "persisting", "overdue", "reopened")

#: Joins the parties of a joint owner: ``"A / B"``.
OWNER_JOIN = " / "

SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

_TEXT_COLUMNS = ("finding_id", "kind", "severity", "village_id", "grid_id", "owner", "unit",
                 "rule", "message")


def severity_rank(severity: pd.Series) -> pd.Series:
    """Return 0 for ``veto`` up to 3 for ``low`` (unknown severities sort last)."""
    return severity.map(SEVERITY_RANK).fillna(len(SEVERITY_RANK)).astype(int)


def empty_findings(crs: Any) -> gpd.GeoDataFrame:
    """Return an empty findings table in ``crs``."""
    data = {c: pd.Series([], dtype=object) for c in COLUMNS if c != "geometry"}
    data["measure"] = pd.Series([], dtype=float)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _location_key(geoms: np.ndarray, snap_m: float) -> list[str]:
    pts = shapely.centroid(geoms)
    empty = shapely.is_empty(pts) | shapely.is_missing(pts)
    x = np.where(empty, 0.0, shapely.get_x(np.where(empty, shapely.Point(0, 0), pts)))
    y = np.where(empty, 0.0, shapely.get_y(np.where(empty, shapely.Point(0, 0), pts)))
    # Cell edges sit at 0.63 of a cell, away from the round numbers people digitise on.
    sx = np.floor(x / snap_m + _CELL_SHIFT).astype(np.int64)
    sy = np.floor(y / snap_m + _CELL_SHIFT).astype(np.int64)
    return [f"{a}:{b}" for a, b in zip(sx, sy, strict=True)]


def make_findings(
    frame: pd.DataFrame,
    *,
    crs: Any,
    key: Sequence[str] | pd.Series | None = None,
    snap_m: float | None = None,
) -> gpd.GeoDataFrame:
    """Build a findings table from a frame with (a subset of) the finding columns.

    Parameters
    ----------
    frame
        Must have ``kind``, ``severity``, ``message`` and ``geometry``; other
        finding columns are filled with None. Extra columns are kept after the
        canonical ones (e.g. ``road_class``, ``grid_ids``).
    crs
        CRS of the geometries (the town's analysis CRS).
    key
        Subject key per row (e.g. ``"road:R12"``); joined into the stable id.
    snap_m
        Location snap for the id, default ``settings.id_snap_m``.

    Returns
    -------
    GeoDataFrame
        Findings with a stable ``finding_id``, index reset.
    """
    missing = [c for c in ("kind", "severity", "message", "geometry") if c not in frame.columns]
    if missing:
        msg = f"findings frame lacks columns {missing}"
        raise SchemaError(msg, fix="build findings with kind, severity, message and geometry")
    snap = settings.id_snap_m if snap_m is None else snap_m
    df = pd.DataFrame(frame).reset_index(drop=True).copy()
    bad = sorted(set(df["severity"]) - set(SEVERITY_RANK))
    if bad:
        msg = f"unknown severity {bad}"
        raise SchemaError(msg, fix=f"use one of {list(SEVERITIES)}")
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col == "measure" else None
    df["measure"] = pd.to_numeric(df["measure"], errors="coerce").astype(float)
    geoms = np.asarray(gpd.GeoSeries(df["geometry"]).values, dtype=object)
    keys = [""] * len(df) if key is None else [str(k) for k in key]
    loc = _location_key(geoms, snap)
    ids = []
    for kind, k, lc in zip(df["kind"], keys, loc, strict=True):
        digest = hashlib.sha1(f"{kind}|{k}|{lc}".encode()).hexdigest()[:12]
        ids.append(f"{kind}-{digest}")
    df["finding_id"] = ids
    if df["finding_id"].duplicated().any():
        cx = shapely.get_x(shapely.centroid(geoms))
        cy = shapely.get_y(shapely.centroid(geoms))
        order = np.lexsort((cy, cx, -df["measure"].fillna(0).to_numpy()))
        rank = pd.Series(0, index=df.index)
        ordered = df["finding_id"].iloc[order]
        rank.iloc[order] = ordered.groupby(ordered).cumcount().to_numpy()
        df["finding_id"] = np.where(
            rank > 0, df["finding_id"] + "~" + (rank + 1).astype(str), df["finding_id"]
        )
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extra]
    for col in _TEXT_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return gpd.GeoDataFrame(df, geometry="geometry", crs=crs)


def concat_findings(parts: Iterable[gpd.GeoDataFrame], *, crs: Any) -> gpd.GeoDataFrame:
    """Concatenate findings tables (empty ones allowed) and sort them."""
    frames = [p for p in parts if p is not None and len(p)]
    if not frames:
        return empty_findings(crs)
    out = pd.concat(frames, ignore_index=True)
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=crs)
    return sort_findings(out)


def sort_findings(findings: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Sort most severe first, then largest measure, then id; index reset."""
    rank = severity_rank(findings["severity"])
    order = np.lexsort(
        (
            findings["finding_id"].astype(str).to_numpy(),
            -findings["measure"].fillna(0).to_numpy(dtype=float),
            rank.to_numpy(),
        )
    )
    return findings.iloc[order].reset_index(drop=True)


def validate_findings(frame: Any, *, where: str, error: type[GisgridError] = SchemaError) -> gpd.GeoDataFrame:
    """Check that ``frame`` is a findings table; return it as a GeoDataFrame with every declared column.

    The one check of the schema that history, report, comparison and maps all make on what they are given.

    Parameters
    ----------
    frame
        A findings table (from :func:`make_findings`, an Assessment, a lifecycle table or a report's file).
    where
        Who is asking, for the message (e.g. ``"history.record"``).
    error
        The error class to raise (default :class:`~gisgrid.SchemaError`; history raises ``HistoryError``).

    Returns
    -------
    GeoDataFrame
        A new table with the columns of :data:`COLUMNS` (missing ones empty), then the subject and
        lifecycle columns it has, then any others; the input is not changed.

    Raises
    ------
    SchemaError
        Not a table, no ``finding_id``/``kind``/``severity`` column, or a severity or kind gisgrid does not know.
    """
    if not isinstance(frame, pd.DataFrame):
        msg = f"{where} needs a findings table, not {type(frame).__name__}."
        raise error(msg, fix="pass assessment.findings (or a table from make_findings)")
    missing = [c for c in ("finding_id", "kind", "severity") if c not in frame.columns]
    if missing:
        msg = f"{where}: the findings lack the column(s) {missing}."
        raise error(msg, fix="build findings with gisgrid.findings.make_findings")
    bad = sorted({str(s) for s in frame["severity"].dropna()} - set(SEVERITY_RANK))
    if bad:
        msg = f"{where}: unknown severity {bad}."
        raise error(msg, fix=f"use one of {list(SEVERITY_RANK)}")
    unknown = sorted({str(k) for k in frame["kind"].dropna()} - set(KINDS))
    if unknown:
        msg = f"{where}: unknown finding kind {unknown}."
        raise error(msg, fix=f"use one of {sorted(KINDS)}")
    out = frame.copy()
    if not isinstance(out, gpd.GeoDataFrame):
        out = gpd.GeoDataFrame(out, geometry="geometry" if "geometry" in out.columns else None)
    for col in COLUMNS:
        if col not in out.columns and col != "geometry":
            out[col] = np.nan if col == "measure" else None
    order = [c for c in (*COLUMNS, *SUBJECT_COLUMNS, *LIFECYCLE_COLUMNS) if c in out.columns]
    return out[order + [c for c in out.columns if c not in order]]


# --------------------------------------------------------------------------- values
def present(value: Any) -> bool:
    """False for None, NA, NaN and blank text: the one null check of the package."""
    return not is_missing(value) and not (isinstance(value, str) and not value.strip())


def id_list(value: Any) -> list[str]:
    """The ids in one id cell (``grid_id``, ``village_id``, ``zone_ids``): a tuple's items, a text's one id.

    An id cell holds one id as text, or a tuple of ids when a finding concerns several (an overlap of two
    grids): never ids joined into one text, so an id may itself contain a comma. [] for a missing cell.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if present(v)]
    return [str(value).strip()] if present(value) else []


def ids_cell(ids: Iterable[Any]) -> str | tuple[str, ...] | None:
    """The id cell for these ids: None for none, the id for one, a tuple for several (distinct, in order)."""
    if isinstance(ids, str):
        ids = [ids]
    items = unique_present(i for v in ids for i in id_list(v))
    if not items:
        return None
    return items[0] if len(items) == 1 else tuple(items)


def show_ids(value: Any, sep: str = ", ") -> str | None:
    """An id cell as people read it: the ids joined with ``sep`` (only CSV, XLSX, maps and messages join)."""
    items = id_list(value)
    return sep.join(items) if items else None


def names_in(value: Any) -> list[str]:
    """The names in a ``", "``-joined display list (e.g. the chiefs of a reach), [] for a missing one."""
    if not present(value):
        return []
    return [p.strip() for p in str(value).split(",") if p.strip()]


def explode_ids(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per id of ``column``: a finding about two villages counts for each (a missing id stays None)."""
    cells: list[list[str | None]] = [[*id_list(v)] or [None] for v in frame[column]]
    out = frame.assign(**{column: cells}).explode(column)
    out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def unique_present(values: Iterable[Any]) -> list[str]:
    """The distinct present values as text, in order of appearance."""
    seen: dict[str, None] = {}
    for v in values:
        if present(v):
            seen.setdefault(str(v), None)
    return list(seen)


def join_present(values: Iterable[Any], sep: str = ", ") -> str | None:
    """The distinct present values joined with ``sep``; None when there are none."""
    items = unique_present(values)
    return sep.join(items) if items else None


def _groups(keys: Any, values: Any) -> tuple[np.ndarray, list[list[str]]]:
    """The keys with a present value, and per key its distinct present values as text, in order of appearance."""
    df = pd.DataFrame({"k": np.asarray(keys, dtype=object), "v": np.asarray(values, dtype=object)})
    df = df[present_mask(df["v"])].drop_duplicates()
    if not len(df):
        return np.empty(0, dtype=object), []
    df = df.sort_values("k", kind="stable")
    k = df["k"].to_numpy(dtype=object)
    v = df["v"].astype(str).tolist()
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], len(v)].tolist()
    # list slices: np.split costs more than the joins on 100k small groups
    return k[starts], [v[a:b] for a, b in zip(starts.tolist(), ends, strict=True)]


def group_join(keys: Any, values: Any, sep: str = ", ") -> pd.Series:
    """Distinct present values per key, in order of appearance, joined with ``sep`` (a Series indexed by key)."""
    index, groups = _groups(keys, values)
    return pd.Series([sep.join(g) for g in groups], index=index, dtype=object)


def group_ids(keys: Any, values: Any) -> pd.Series:
    """Distinct present ids per key, in order of appearance, as id cells (:func:`ids_cell`), indexed by key."""
    index, groups = _groups(keys, values)
    return pd.Series([g[0] if len(g) == 1 else tuple(g) for g in groups], index=index, dtype=object)


def split_owner(owner: Any) -> list[str]:
    """The parties of a joint owner ``"A / B"``: ``["A", "B"]``."""
    if not present(owner):
        return []
    return [p.strip() for p in str(owner).split(OWNER_JOIN) if p.strip()]


def present_mask(values: Any) -> np.ndarray:
    """Vectorised :func:`present`: not None/NaN and not blank text."""
    arr = np.asarray(values, dtype=object)
    ok = ~pd.isna(arr)
    if ok.any():
        text = pd.Series(arr[ok], dtype=object)
        ok[ok] = ~text.str.strip().eq("").to_numpy(dtype=bool)  # non-text values give NaN here: present
    return ok


def as_text(series: pd.Series) -> pd.Series:
    """Object column with None for missing values (pandas 3 infers ``str`` with NaN otherwise)."""
    obj = series.astype(object)
    return obj.where(present_mask(obj), None)


# --------------------------------------------------------------------------- lifecycle
def as_date(value: Any) -> dt.date | None:
    """A date from a date, datetime, Timestamp or ISO text; None for a missing or unreadable value."""
    if is_missing(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def lifecycle_as_of(lifecycle: pd.DataFrame | None) -> dt.date:
    """The run date a lifecycle table describes (its latest date); today without one."""
    if lifecycle is not None and len(lifecycle):
        dates = [d for c in ("last_seen", "resolved_on") if c in lifecycle.columns for v in lifecycle[c]
                 if (d := as_date(v)) is not None]
        if dates:
            return max(dates)
    return dt.date.today()


def _fresh(findings: gpd.GeoDataFrame, as_of: dt.date) -> gpd.GeoDataFrame:
    """Lifecycle columns for findings without a history: everything is new today."""
    out = findings.copy()
    days = settings.deadline_days
    out["status"] = "new"
    out["first_seen"] = as_of
    out["last_seen"] = as_of
    out["opened_on"] = as_of
    out["deadline"] = [as_of + dt.timedelta(days=int(days.get(s, max(days.values())))) for s in out["severity"]]
    out["days_overdue"] = 0
    out["resolved_on"] = None
    out["times_reopened"] = 0
    return out


def with_lifecycle(assessment: Any, lifecycle: pd.DataFrame | None, as_of: dt.date) -> gpd.GeoDataFrame:
    """The findings with every lifecycle column (:data:`LIFECYCLE_COLUMNS`), dates as dates.

    Parameters
    ----------
    assessment
        Anything with ``findings`` (an Assessment); used when ``lifecycle`` is None.
    lifecycle
        The table :meth:`gisgrid.history.History.record` returned, or a findings
        table without lifecycle columns, or None.
    as_of
        The run date: findings without a history are new on it.

    Returns
    -------
    GeoDataFrame
        A new table; the inputs are not changed.
    """
    if lifecycle is None or "status" not in lifecycle.columns:
        findings = getattr(assessment, "findings", None) if lifecycle is None else lifecycle
        if findings is None:
            msg = "the report needs the assessment's findings or a lifecycle table."
            raise ConfigError(msg, fix="pass assessment (with .findings) or the table History.record returned")
        life = _fresh(findings, as_of)
    else:
        life = lifecycle
    life = validate_findings(life, where="the report")
    for col in LIFECYCLE_COLUMNS:
        if col not in life.columns:
            life[col] = 0 if col in ("days_overdue", "times_reopened") else None
    for col in ("first_seen", "last_seen", "deadline", "resolved_on"):
        life[col] = life[col].map(as_date).astype(object)
    for col in ("days_overdue", "times_reopened"):
        life[col] = pd.to_numeric(life[col], errors="coerce").fillna(0).astype(int)
    return life.reset_index(drop=True)


def is_open(life: pd.DataFrame) -> pd.Series:
    """True for the rows whose status is open (:data:`OPEN_STATUSES`)."""
    return life["status"].isin(OPEN_STATUSES)
