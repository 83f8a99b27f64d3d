"""Patrols (巡河, 巡格): did the river chiefs and grid staff walk their reaches and grids?

The tracks of the chiefs' phone apps (:mod:`gisgrid.io.tracks` reads them in
batches) are cleaned and cut into patrols (:func:`gisgrid.geometry.tracks.clean_tracks`),
matched to what each person is responsible for (:func:`gisgrid.geometry.tracks.cover`)
and judged by the rule of the person's level:

- **subjects**: a county or town river chief answers for every reach of the
  river in the town, a village chief for the river's reaches in the village
  (``Responsibility.reaches``); a grid chief or member for the lanes of the
  grid (the roads of ``grid_road_classes`` inside it);
- **a valid patrol** lasts ``min_duration_min`` and ``min_distance_m`` at least,
  is not faster than ``max_speed_kmh`` (the speed held half of the time: a
  walk, a bicycle or an e-bike, not a car), lies on its route (at least
  ``min_on_route`` of its length within ``river_distance_m`` of the reach, or
  of its fixes inside the grid) and has no teleport; every other patrol is a
  ``patrol_suspect`` finding with its evidence, never dropped;
- **frequency**: ``times`` valid patrols touching the subject in every
  ``period`` (``week``: ISO weeks, Monday to Sunday, judged in the month of
  their Thursday; ``dekad``: 旬, days 1-10, 11-20, 21-end; ``month``;
  ``quarter``, judged with its last month) of the judged month, in the
  ``months`` the rule applies, that are over by the run date; a person
  short in any period is a ``patrol_missing`` finding;
- **share**: the valid patrols of the month together cover ``min_share`` of the
  subject (reach length within ``river_distance_m``; lane length within
  ``lane_distance_m``); less is a ``patrol_partial`` finding whose geometry is
  the unpatrolled chainage.

The shipped rules (:data:`DEFAULT_RULES`) follow published ones: county chiefs
quarterly, town chiefs monthly, village chiefs weekly (Henan); each patrol at
least 5 minutes and 300 m (Sixian, Anhui; Aheqi, Xinjiang asks 30 minutes and
2 km). Grid chiefs patrol monthly and grid members weekly; grid members are
judged only when ``levels`` names them.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.checks.responsibility._shapes import _person_labels  # owners named as everywhere else
from gisgrid.findings import empty_findings, ids_cell, make_findings
from gisgrid.geometry.linework import Lines, lines_only
from gisgrid.geometry.tracks import Track, clean_tracks, cover, merge_intervals, patrol_lines
from gisgrid.model import Town
from gisgrid.vocab import nearest

__all__ = [
    "DEFAULT_OPTIONS",
    "DEFAULT_RULES",
    "LEVELS",
    "PERIODS",
    "PatrolResult",
    "analyze_patrols",
    "judged_month",
    "periods_of",
    "resolve_patrol_options",
]

logger = logging.getLogger(__name__)

#: Levels a rule can be written for: river chiefs by level, grid staff by role.
LEVELS: tuple[str, ...] = ("county", "town", "village", "grid_chief", "grid_member")
#: Periods a rule can count patrols in.
PERIODS: tuple[str, ...] = ("week", "dekad", "month", "quarter")
_RULE_KEYS = ("period", "times", "min_duration_min", "min_distance_m", "min_share", "months")
_ALL_MONTHS = list(range(1, 13))

#: The shipped rules, per level (``[patrols.rules.LEVEL]`` overrides any key).
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "county": {"period": "quarter", "times": 1, "min_duration_min": 5.0, "min_distance_m": 300.0, "min_share": 0.8,
               "months": _ALL_MONTHS},
    "town": {"period": "month", "times": 1, "min_duration_min": 5.0, "min_distance_m": 300.0, "min_share": 0.8,
             "months": _ALL_MONTHS},
    "village": {"period": "week", "times": 1, "min_duration_min": 5.0, "min_distance_m": 300.0, "min_share": 0.8,
                "months": _ALL_MONTHS},
    "grid_chief": {"period": "month", "times": 1, "min_duration_min": 5.0, "min_distance_m": 300.0,
                   "min_share": 0.5, "months": _ALL_MONTHS},
    "grid_member": {"period": "week", "times": 1, "min_duration_min": 5.0, "min_distance_m": 300.0,
                    "min_share": 0.5, "months": _ALL_MONTHS},
}

#: The ``[patrols]`` options besides ``rules``.
DEFAULT_OPTIONS: dict[str, Any] = {
    "month": None,               # "YYYY-MM"; None: the last whole month before the run date
    "timezone": "Asia/Shanghai",  # periods are local days
    "levels": ["county", "town", "village", "grid_chief"],
    "gap_min": 10.0,             # a pause longer than this ends a patrol
    "max_speed_kmh": 15.0,       # faster (held half of the time) is a vehicle
    "teleport_kmh": 180.0,       # faster in one step is a spike (dropped) or a teleport (suspect)
    "river_distance_m": 50.0,    # a patrol covers the reach within this distance of its track
    "lane_distance_m": 30.0,     # ... and the lanes of a grid within this distance
    "min_on_route": 0.5,         # share of a patrol on its river (length) or in its grid (fixes)
    "grid_road_classes": ["lane"],
    "simplify_m": 2.0,           # tracks kept for the map are simplified this much
}
_OPTION_KEYS = (*DEFAULT_OPTIONS, "rules")


# --------------------------------------------------------------------------- options
def _bad(key: str, value: Any, fix: str) -> ConfigError:
    return ConfigError(f"[patrols] {key} = {value!r} is not allowed.", fix=fix)


def _positive(value: Any, key: str, *, allow_zero: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise _bad(key, value, f"write {key} as a number {'>= 0' if allow_zero else '> 0'}")
    return float(value)


def _share(value: Any, key: str) -> float:
    v = _positive(value, key)
    if v > 1:
        raise _bad(key, value, f"write {key} as a share between 0 and 1 (0.8 for 80%)")
    return v


def _unknown(given: Iterable[str], known: Iterable[str], where: str) -> None:
    known = list(known)
    extra = [str(k) for k in given if k not in known]
    if extra:
        close = nearest(extra, known)
        hint = f"did you mean {close}? " if close else ""
        msg = f"unknown key(s) {extra} in {where}."
        raise ConfigError(msg, fix=f"{hint}use {known}")


def resolve_patrol_options(table: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``[patrols]`` section checked and filled with the defaults (``check`` and ``run`` both call this).

    Raises
    ------
    ConfigError
        An unknown key (with did-you-mean), a level or period gisgrid does not know, a bad number.
    """
    table = dict(table or {})
    _unknown(table, _OPTION_KEYS, "[patrols]")
    opts = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_OPTIONS.items()}
    for key, value in table.items():
        if key == "rules":
            continue
        if key == "month":
            if value is not None:
                try:
                    dt.date.fromisoformat(f"{value}-01")
                except (TypeError, ValueError):
                    raise _bad(key, value, 'write month = "2026-11" (or remove it: the last whole month)') from None
            opts[key] = None if value is None else str(value)
        elif key == "timezone":
            try:
                pd.Timestamp("2026-01-01").tz_localize(str(value))
            except Exception:  # noqa: BLE001 - pandas raises several kinds for an unknown zone
                raise _bad(key, value, 'write timezone = "Asia/Shanghai"') from None
            opts[key] = str(value)
        elif key in ("levels",):
            if not isinstance(value, list) or any(v not in LEVELS for v in value):
                wrong = [v for v in (value if isinstance(value, list) else [value]) if v not in LEVELS]
                close = nearest([str(v) for v in wrong], LEVELS)
                raise _bad(key, value, (f"did you mean {close}? " if close else "") + f"use a list of {list(LEVELS)}")
            opts[key] = list(value)
        elif key == "grid_road_classes":
            if not isinstance(value, list) or any(v not in settings.road_classes for v in value):
                raise _bad(key, value, f"use a list of {list(settings.road_classes)}")
            opts[key] = list(value)
        elif key == "min_on_route":
            opts[key] = _share(value, key)
        else:
            opts[key] = _positive(value, key, allow_zero=key in ("simplify_m",))
    rules_in = table.get("rules") or {}
    if not isinstance(rules_in, dict):
        raise _bad("rules", rules_in, "write [patrols.rules.village] tables, one per level")
    _unknown(rules_in, LEVELS, "[patrols.rules]")
    rules: dict[str, dict[str, Any]] = {}
    for level, default in DEFAULT_RULES.items():
        rule = dict(default)
        given = rules_in.get(level) or {}
        if not isinstance(given, dict):
            raise _bad(f"rules.{level}", given, f"write [patrols.rules.{level}] as a table")
        _unknown(given, _RULE_KEYS, f"[patrols.rules.{level}]")
        for key, value in given.items():
            where = f"rules.{level}.{key}"
            if key == "period":
                if value not in PERIODS:
                    close = nearest(str(value), PERIODS)
                    raise _bad(where, value, (f"did you mean {close}? " if close else "") + f"use one of {PERIODS}")
                rule[key] = value
            elif key == "times":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise _bad(where, value, "write times as a whole number >= 1")
                rule[key] = int(value)
            elif key == "months":
                if not isinstance(value, list) or any(not isinstance(m, int) or not 1 <= m <= 12 for m in value):
                    raise _bad(where, value, "write months as a list of month numbers, e.g. [3, 4, 5, 6]")
                rule[key] = sorted(set(value))
            elif key == "min_share":
                rule[key] = _share(value, where)
            else:
                rule[key] = _positive(value, where)
        rules[level] = rule
    opts["rules"] = rules
    return opts


# --------------------------------------------------------------------------- periods
def judged_month(as_of: dt.date, month: str | None = None) -> tuple[int, int]:
    """(year, month) judged: ``month`` (``"YYYY-MM"``) or the last whole month before ``as_of``."""
    if month:
        d = dt.date.fromisoformat(f"{month}-01")
        return d.year, d.month
    first = as_of.replace(day=1)
    prev = first - dt.timedelta(days=1)
    return prev.year, prev.month


def periods_of(period: str, year: int, month: int) -> list[tuple[str, dt.date, dt.date]]:
    """The periods judged with a month: ``(label, first day, last day)``.

    ``week``: ISO weeks whose Thursday falls in the month; ``dekad``: 1-10, 11-20, 21-end;
    ``month``: the month; ``quarter``: the quarter when the month ends one, else none.
    """
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    if period == "month":
        return [(f"{year}-{month:02d}", first, last)]
    if period == "dekad":
        return [(f"{year}-{month:02d} 上旬", first, dt.date(year, month, 10)),
                (f"{year}-{month:02d} 中旬", dt.date(year, month, 11), dt.date(year, month, 20)),
                (f"{year}-{month:02d} 下旬", dt.date(year, month, 21), last)]
    if period == "quarter":
        if month % 3:
            return []
        return [(f"{year}-Q{month // 3}", dt.date(year, month - 2, 1), last)]
    out = []
    thursday = first + dt.timedelta(days=(3 - first.weekday()) % 7)
    while thursday <= last:
        monday = thursday - dt.timedelta(days=3)
        iso = thursday.isocalendar()
        out.append((f"{iso[0]}-W{iso[1]:02d}", monday, monday + dt.timedelta(days=6)))
        thursday += dt.timedelta(days=7)
    return out


# --------------------------------------------------------------------------- subjects
@dataclass
class _Subject:
    """What one person answers for: a river (its reaches in the town or a village) or a grid."""

    person_id: str
    label: str
    level: str
    kind: str                 # "river" or "grid"
    subject_id: str           # river_id or river_id@village_id, or grid_id
    river_id: str | None
    village_ids: Any
    grid_id: str | None
    reach_ids: list[str]
    lines: np.ndarray         # reaches, or the grid's lanes
    area: Any = None          # the grid polygon (grids)


@dataclass
class PatrolResult:
    """What :func:`analyze_patrols` found.

    Attributes
    ----------
    findings : GeoDataFrame
        ``patrol_missing``, ``patrol_partial``, ``patrol_suspect`` (owners filled: the person).
    patrols : GeoDataFrame
        One row per patrol: ``person_id``, ``name``, ``level``, ``start``, ``end`` (local time), ``duration_min``,
        ``length_m``, ``speed_kmh``, ``on_route``, ``teleports``, ``max_jump_m``, ``spikes``, ``valid``,
        ``reasons``; geometry the (simplified) track.
    people : DataFrame
        One row per (person, subject) judged: ``person_id``, ``name``, ``level``, ``subject_id``, ``village_id``,
        ``period``, ``required``, ``periods``, ``periods_met``, ``valid_patrols``, ``suspect_patrols``,
        ``share``, ``status`` (``ok``, ``partial``, ``missing``, ``not judged``).
    reach_patrolled : Series
        Metres of each reach (by ``reach_id``) covered by a valid patrol in the month.
    grid_patrolled : Series
        Per ``grid_id``: True when a valid patrol of the grid's staff fell in the month.
    issues : list
        The rows refused on reading (:class:`gisgrid.io.tracks.TrackIssue`), as text.
    month : tuple
        (year, month) judged.
    points : int
        Fixes read.
    """

    findings: gpd.GeoDataFrame
    patrols: gpd.GeoDataFrame
    people: pd.DataFrame
    reach_patrolled: pd.Series
    grid_patrolled: pd.Series
    issues: list[str] = field(default_factory=list)
    month: tuple[int, int] = (1970, 1)
    points: int = 0


def _grid_lanes(town: Town, classes: list[str]) -> dict[str, np.ndarray]:
    """The road pieces of ``classes`` inside each grid."""
    roads = town.roads[town.roads["road_class"].isin(classes)]
    grids = town.grids
    if not len(roads) or not len(grids):
        return {}
    gg = np.asarray(grids.geometry.values, dtype=object)
    rg = np.asarray(roads.geometry.values, dtype=object)
    gi, ri = shapely.STRtree(rg).query(gg, predicate="intersects")
    pieces, owner = lines_only(shapely.intersection(gg[gi], rg[ri]), gi)
    ids = grids["grid_id"].to_numpy(dtype=object)
    out: dict[str, list[Any]] = {}
    for g, piece in zip(owner, pieces, strict=True):
        out.setdefault(str(ids[g]), []).append(piece)
    return {k: np.asarray(v, dtype=object) for k, v in out.items()}


def _subjects(town: Town, reaches: gpd.GeoDataFrame, opts: Mapping[str, Any]) -> dict[str, list[_Subject]]:
    labels = _person_labels(town)
    levels = set(opts["levels"])
    out: dict[str, list[_Subject]] = {}
    rg = np.asarray(reaches.geometry.values, dtype=object)
    rid = reaches["reach_id"].to_numpy(dtype=object)
    rvil = reaches["village_id"].to_numpy(dtype=object)
    # the reaches of each river, and of each (river, village): looked up, never searched per chief
    by_river = pd.Series(np.arange(len(reaches))).groupby(reaches["river_id"].to_numpy(dtype=object)).indices
    by_pair = pd.Series(np.arange(len(reaches))).groupby(
        [reaches["river_id"].to_numpy(dtype=object), rvil]).indices if len(reaches) else {}
    rc = town.river_chiefs
    for pid, level, river, village in rc[["person_id", "level", "river_id", "village_id"]].itertuples(index=False):
        if level not in levels:
            continue
        on = by_pair.get((river, village)) if level == "village" else by_river.get(river)
        if on is None or not len(on):
            continue  # a chief whose river or village does not exist: chief_unplaced already says so
        sid = str(river) if level != "village" else f"{river}@{village}"
        out.setdefault(str(pid), []).append(_Subject(
            person_id=str(pid), label=labels.get(pid, str(pid)), level=str(level), kind="river", subject_id=sid,
            river_id=str(river), village_ids=ids_cell(rvil[on]), grid_id=None,
            reach_ids=[str(r) for r in rid[on]], lines=rg[on]))
    grid_levels = levels & {"grid_chief", "grid_member"}
    if grid_levels and len(town.grid_staff):
        lanes = _grid_lanes(town, list(opts["grid_road_classes"]))
        gpos = {g: i for i, g in enumerate(town.grids["grid_id"])}
        ggeom = np.asarray(town.grids.geometry.values, dtype=object)
        gvill = town.grids["village_id"].to_numpy(dtype=object)
        for pid, role, grid in town.grid_staff[["person_id", "role", "grid_id"]].itertuples(index=False):
            if role not in grid_levels or grid not in gpos:
                continue
            out.setdefault(str(pid), []).append(_Subject(
                person_id=str(pid), label=labels.get(pid, str(pid)), level=str(role), kind="grid",
                subject_id=str(grid), river_id=None, village_ids=gvill[gpos[grid]], grid_id=str(grid),
                reach_ids=[], lines=lanes.get(str(grid), np.empty(0, dtype=object)), area=ggeom[gpos[grid]]))
    return out


# --------------------------------------------------------------------------- matching
@dataclass
class _Acc:
    """What the batches gathered: patrol rows and the covered intervals of valid and all patrols."""

    rows: list[pd.DataFrame] = field(default_factory=list)
    geoms: list[np.ndarray] = field(default_factory=list)
    cover: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = field(
        default_factory=dict)  # (person, subject no) -> [(patrol uid, part, start, end)]
    issues: list[str] = field(default_factory=list)
    points: int = 0
    next_uid: int = 0


def _local_seconds(tz: str, day: dt.date) -> int:
    return int(pd.Timestamp(day).tz_localize(tz).tz_convert("UTC").timestamp())


def _match_person(sub: list[_Subject], track: Track, segs: tuple[np.ndarray, np.ndarray, np.ndarray],
                  pat: slice, opts: Mapping[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """On-route share and the median distance from the route of each patrol of one person; intervals per subject.

    ``pat`` is the person's patrols (contiguous: the fixes are sorted by person), ``segs`` the steps of all patrols.
    """
    n = pat.stop - pat.start
    a, b, sp = segs
    lo, hi = np.searchsorted(sp, [pat.start, pat.stop])
    a, b, sp = a[lo:hi], b[lo:hi], sp[lo:hi] - pat.start
    f0, f1 = np.searchsorted(track.patrol, [pat.start, pat.stop])
    fx, fy, fp = track.x[f0:f1], track.y[f0:f1], track.patrol[f0:f1] - pat.start
    river = [s for s in sub if s.kind == "river"]
    grid = [s for s in sub if s.kind == "grid"]
    on_route = np.zeros(n)
    per: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    total = track.patrols["length_m"].to_numpy()[pat]  # teleport jumps left out
    if river:
        geoms = np.concatenate([s.lines for s in river])
        owner = np.concatenate([np.full(len(s.lines), k) for k, s in enumerate(river)])
        lines = Lines(geoms)
        c = cover(lines, a, b, sp, n, float(opts["river_distance_m"]))
        with np.errstate(invalid="ignore", divide="ignore"):
            on_route = np.maximum(on_route, np.where(total > 0, np.minimum(c.near_m / np.where(total > 0, total, 1),
                                                                            1.0), 0.0))
        subj = owner[lines.owner[c.part]] if len(c.part) else np.empty(0, dtype=np.intp)
        for k, s in enumerate(river):
            m = subj == k
            # chainage as a position along the subject's own lines: part numbers local to it
            part_local = lines.owner[c.part[m]] - np.flatnonzero(owner == k)[0] if m.any() else np.empty(0, np.intp)
            per.append((sub.index(s), c.patrol[m], part_local, c.start[m], c.end[m]))
    for s in grid:
        inside = shapely.contains_xy(shapely.buffer(s.area, float(opts["lane_distance_m"])), fx, fy)
        share = np.bincount(fp[inside], minlength=n) / np.maximum(np.bincount(fp, minlength=n), 1)
        on_route = np.maximum(on_route, share)
        if len(s.lines):
            lines = Lines(s.lines)
            c = cover(lines, a, b, sp, n, float(opts["lane_distance_m"]))
            per.append((sub.index(s), c.patrol, lines.owner[c.part], c.start, c.end))
        else:
            per.append((sub.index(s), np.empty(0, np.int64), np.empty(0, np.intp), np.empty(0), np.empty(0)))
    # how far off the route a patrol ran (the evidence of an off-route patrol): the median over its fixes,
    # measured for the patrols that are off it only (a distance per fix is the dearest step here)
    off = np.full(n, np.nan)
    far = np.flatnonzero(on_route < float(opts["min_on_route"]))
    keep = np.isin(fp, far)
    if len(far) and keep.any():
        route = shapely.union_all(np.concatenate([s.lines for s in river] + [np.asarray([s.area]) for s in grid]))
        if not shapely.is_empty(route):
            shapely.prepare(route)
            fq = fp[keep]
            dist = shapely.distance(shapely.points(fx[keep], fy[keep]), route)
            order = np.lexsort((dist, fq))
            cnt = np.bincount(fq, minlength=n)
            start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
            has = cnt > 0
            off[has] = dist[order][start[has] + cnt[has] // 2]
    return on_route, off, per


def _segments(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 2) start and end of every segment of the patrols' lines, and the patrol of each (in patrol order)."""
    xy, idx = shapely.get_coordinates(lines, return_index=True)
    same = idx[1:] == idx[:-1]
    return xy[:-1][same], xy[1:][same], idx[:-1][same]


def _judge_patrols(track: Track, uid: np.ndarray, people: np.ndarray, subjects: dict[str, list[_Subject]],
                   opts: Mapping[str, Any], acc: _Acc, crs: Any) -> None:
    pt = track.patrols
    n = len(pt)
    # the tracks simplified once (simplify_m): the map draws them and the matching walks their segments
    geoms = patrol_lines(track, simplify_m=float(opts["simplify_m"]))
    segs = _segments(geoms)
    on_route = np.zeros(n)
    off_m = np.full(n, np.nan)
    level = np.empty(n, dtype=object)
    person_ids = people[pt["person"].to_numpy(dtype=np.int64)] if n else np.empty(0, dtype=object)
    label = np.empty(n, dtype=object)
    # a person's patrols are contiguous (the fixes are sorted by person, then time)
    starts = np.flatnonzero(np.r_[True, person_ids[1:] != person_ids[:-1]]) if n else np.empty(0, np.intp)
    for p0, p1 in zip(starts, np.r_[starts[1:], n], strict=True):
        pid = person_ids[p0]
        sub = subjects.get(str(pid))
        if not sub:
            continue
        o, off, per = _match_person(sub, track, segs, slice(int(p0), int(p1)), opts)
        idx = np.arange(p0, p1)
        on_route[idx], off_m[idx] = o, off
        level[idx] = sub[0].level
        label[idx] = sub[0].label
        for k, p_local, part, st, en in per:
            acc.cover.setdefault((str(pid), k), []).append((uid[idx][p_local], part, st, en))
    rules = opts["rules"]
    min_dur = np.array([rules[lv]["min_duration_min"] * 60 if lv else 0 for lv in level], dtype=float)
    min_len = np.array([rules[lv]["min_distance_m"] if lv else 0 for lv in level], dtype=float)
    speed = pt["median_speed_mps"].to_numpy() * 3.6
    reasons = np.full(n, "", dtype=object)
    judged = level != None  # noqa: E711 - elementwise on an object array
    short = judged & ((pt["duration_s"].to_numpy() < min_dur) | (pt["length_m"].to_numpy() < min_len))
    fast = judged & (speed > float(opts["max_speed_kmh"]))
    off_route = judged & (on_route < float(opts["min_on_route"]))
    jump = judged & (pt["teleports"].to_numpy() > 0)
    for mask, word in ((short, "short"), (fast, "vehicle"), (off_route, "off_route"), (jump, "teleport")):
        reasons[mask] = np.where(reasons[mask] == "", word, reasons[mask] + "," + word)
    tz = str(opts["timezone"])
    start = pd.to_datetime(pt["start"].to_numpy(), unit="s", utc=True).tz_convert(tz)
    end = pd.to_datetime(pt["end"].to_numpy(), unit="s", utc=True).tz_convert(tz)
    frame = pd.DataFrame({
        "patrol_uid": uid, "person_id": person_ids, "name": label, "level": level,
        "start": start, "end": end, "start_s": pt["start"].to_numpy(),
        "duration_min": pt["duration_s"].to_numpy() / 60.0, "length_m": pt["length_m"].to_numpy(),
        "speed_kmh": speed, "max_speed_kmh": pt["max_speed_mps"].to_numpy() * 3.6, "on_route": on_route,
        "off_route_m": off_m, "points": pt["points"].to_numpy(), "teleports": pt["teleports"].to_numpy(),
        "max_jump_m": pt["max_jump_m"].to_numpy(), "jump_kmh": pt["jump_speed_mps"].to_numpy() * 3.6,
        "spikes": pt["spikes"].to_numpy(), "valid": judged & (reasons == ""), "reasons": reasons,
        "judged": judged,
    })
    acc.rows.append(frame)
    acc.geoms.append(geoms)


def analyze_patrols(town: Town, reaches: gpd.GeoDataFrame, batches: Iterable[Any], *,
                    options: Mapping[str, Any] | None = None, as_of: dt.date | None = None) -> PatrolResult:
    """Judge the patrols of a month: findings, the patrol table, the per-person table, patrolled coverage.

    Parameters
    ----------
    town
        The validated town (rosters, grids, roads).
    reaches
        ``Responsibility.reaches`` (river reaches with chainage and chiefs).
    batches
        Batches of fixes (:class:`gisgrid.io.tracks.TrackBatch`, or DataFrames with ``person_id``, ``t`` seconds
        UTC, ``lon``, ``lat`` WGS84): each person's fixes whole within one batch or spread over several.
    options
        The ``[patrols]`` section (see :func:`resolve_patrol_options`).
    as_of
        The run date: the judged month is the last whole month before it unless ``month`` says.

    Returns
    -------
    PatrolResult
    """
    opts = resolve_patrol_options(options)  # resolved options pass again unchanged
    run_day = as_of or dt.date.today()
    year, month = judged_month(run_day, opts["month"])
    tz = str(opts["timezone"])
    # only periods over by the run date are judged: a week still running cannot be short yet
    periods = {lv: [p for p in periods_of(rule["period"], year, month) if p[2] < run_day]
               for lv, rule in opts["rules"].items()}
    # the fixes read: the whole month, and the weeks that reach into the months either side
    days = [d for ps in periods.values() for _, a, b in ps for d in (a, b)]
    first_day = min([*days, dt.date(year, month, 1)])
    last_day = max([*days, dt.date(year, month, calendar.monthrange(year, month)[1])])
    t0 = _local_seconds(tz, first_day)
    t1 = _local_seconds(tz, last_day + dt.timedelta(days=1))
    subjects = _subjects(town, reaches, opts)
    to_town = pyproj.Transformer.from_crs(4326, town.crs, always_xy=True)
    acc = _Acc()
    for batch in batches:
        fixes = getattr(batch, "fixes", batch)
        acc.issues += [str(i) for i in getattr(batch, "issues", [])]
        acc.points += len(fixes)
        t = fixes["t"].to_numpy(dtype=np.int64)
        inside = (t >= t0) & (t < t1)
        fixes = fixes[inside]
        if not len(fixes):
            continue
        codes, people = pd.factorize(fixes["person_id"].astype(str))
        x, y = to_town.transform(fixes["lon"].to_numpy(dtype=float), fixes["lat"].to_numpy(dtype=float))
        track = clean_tracks(codes, fixes["t"].to_numpy(dtype=np.int64), x, y, gap_s=float(opts["gap_min"]) * 60,
                             max_speed_mps=float(opts["teleport_kmh"]) / 3.6)
        uid = acc.next_uid + np.arange(len(track.patrols))
        acc.next_uid += len(track.patrols)
        _judge_patrols(track, uid, np.asarray(people, dtype=object), subjects, opts, acc, town.crs)
    for issue in acc.issues[:20]:
        logger.warning("patrol tracks: %s", issue)
    if len(acc.issues) > 20:
        logger.warning("patrol tracks: %d more rows refused", len(acc.issues) - 20)
    patrols = _patrol_frame(acc, town.crs)
    stray = sorted(set(patrols.loc[~patrols["judged"].astype(bool), "person_id"])) if len(patrols) else []
    if stray:
        logger.warning("patrol tracks of %d person(s) on no roster (or of a level not judged) are not judged: %s",
                       len(stray), ", ".join(map(str, stray[:10])))
    findings, people, reach_m, grid_ok = _findings(town, subjects, patrols, acc, opts, periods, (year, month))
    logger.info("patrols %d-%02d: %d fixes, %d patrols (%d valid), %d findings", year, month, acc.points,
                len(patrols), int(patrols["valid"].sum()) if len(patrols) else 0, len(findings))
    return PatrolResult(findings=findings, patrols=patrols, people=people, reach_patrolled=reach_m,
                        grid_patrolled=grid_ok, issues=acc.issues, month=(year, month), points=acc.points)


_PATROL_COLUMNS = ("patrol_uid", "person_id", "name", "level", "start", "end", "start_s", "duration_min", "length_m",
                   "speed_kmh", "max_speed_kmh", "on_route", "off_route_m", "points", "teleports", "max_jump_m",
                   "jump_kmh", "spikes", "valid", "reasons", "judged")


def _patrol_frame(acc: _Acc, crs: Any) -> gpd.GeoDataFrame:
    if not acc.rows:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in _PATROL_COLUMNS})
        frame["valid"] = frame["valid"].astype(bool)
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    frame = pd.concat(acc.rows, ignore_index=True)
    geoms = np.concatenate(acc.geoms)
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


# --------------------------------------------------------------------------- findings
def _complement(part: np.ndarray, start: np.ndarray, end: np.ndarray, part_len: np.ndarray, min_m: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chainage of each part not in the (merged) intervals, pieces shorter than ``min_m`` left out."""
    k, s, e = merge_intervals(part.astype(np.int64), start, end)
    parts = np.arange(len(part_len))
    # every part's gaps: from 0 to its first start, between intervals, from its last end to its length
    gp = np.concatenate([parts, k])
    gs = np.concatenate([np.zeros(len(parts)), e])
    order = np.lexsort((gs, gp))
    gp, gs = gp[order], gs[order]
    nxt_start = np.concatenate([s, np.full(len(parts), np.inf)])
    np_part = np.concatenate([k, parts])
    o2 = np.lexsort((nxt_start, np_part))
    ge = np.minimum(nxt_start[o2], part_len[np_part[o2]])
    keep = ge - gs > min_m
    return gp[keep], gs[keep], ge[keep]


def _findings(town: Town, subjects: dict[str, list[_Subject]], patrols: gpd.GeoDataFrame, acc: _Acc,
              opts: Mapping[str, Any], periods: dict[str, list[tuple[str, dt.date, dt.date]]],
              month: tuple[int, int]) -> tuple[gpd.GeoDataFrame, pd.DataFrame, pd.Series, pd.Series]:
    crs = town.crs
    tz = str(opts["timezone"])
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    people_rows: list[dict[str, Any]] = []
    n_uid = int(patrols["patrol_uid"].max()) + 1 if len(patrols) else 0
    valid_of = np.zeros(n_uid, dtype=bool)
    start_of = np.zeros(n_uid, dtype=np.int64)
    on_of = np.zeros(n_uid)
    if len(patrols):
        u = patrols["patrol_uid"].to_numpy(dtype=np.int64)
        valid_of[u] = patrols["valid"].to_numpy(dtype=bool)
        start_of[u] = patrols["start_s"].to_numpy(dtype=np.int64)
        on_of[u] = patrols["on_route"].to_numpy(dtype=float)
    by_person = {str(k): v.to_numpy(dtype=np.int64) for k, v in
                 patrols.groupby("person_id")["patrol_uid"]} if len(patrols) else {}
    bounds = {lv: [(_local_seconds(tz, a), _local_seconds(tz, b + dt.timedelta(days=1))) for _, a, b in ps]
              for lv, ps in periods.items()}
    reach_iv: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (reach ids, start, end) of valid patrols
    grid_ok: dict[str, bool] = dict.fromkeys(town.grids["grid_id"], False)
    min_gap = max(settings.sliver_length_m, 1.0)
    tag = f"{month[0]}-{month[1]:02d}"
    for pid, subs in subjects.items():
        mine = by_person.get(pid, np.empty(0, dtype=np.int64))  # uids of the person's patrols
        for k, s in enumerate(subs):
            rule = opts["rules"][s.level]
            ps = periods[s.level] if month[1] in rule["months"] else []
            got = acc.cover.get((pid, k), [])
            uid = np.concatenate([g[0] for g in got]) if got else np.empty(0, np.int64)
            part = np.concatenate([g[1] for g in got]) if got else np.empty(0, np.intp)
            st = np.concatenate([g[2] for g in got]) if got else np.empty(0)
            en = np.concatenate([g[3] for g in got]) if got else np.empty(0)
            ok = valid_of[uid] if len(uid) else np.zeros(0, dtype=bool)
            touched = set(uid[ok & (en - st > 0)].tolist())
            if s.kind == "grid":  # a grid without lanes is patrolled by a valid patrol in it
                touched |= set(mine[valid_of[mine] & (on_of[mine] >= float(opts["min_on_route"]))].tolist())
            lines = Lines(s.lines) if len(s.lines) else None
            total = float(lines.part_len.sum()) if lines is not None else 0.0
            covered = 0.0
            gaps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
            if lines is not None:
                pl = lines.owner  # part -> position in s.lines; the intervals are by position: map to parts
                to_part = {int(o): i for i, o in enumerate(pl)}
                vpart = np.array([to_part.get(int(p), -1) for p in part[ok]], dtype=np.int64)
                good = vpart >= 0
                kk, ss, ee = merge_intervals(vpart[good], st[ok][good], en[ok][good])
                covered = float(np.sum(ee - ss))
                gaps = _complement(kk, ss, ee, lines.part_len, min_gap)
                if s.kind == "river" and len(kk):  # chainage along the reach itself: the same for every chief
                    reach_iv.append((np.asarray(s.reach_ids, dtype=object)[pl[kk]], ss, ee))
            if s.kind == "grid" and touched:
                grid_ok[str(s.grid_id)] = True
            share = covered / total if total > 0 else float("nan")
            when = np.sort(start_of[np.fromiter(touched, dtype=np.int64, count=len(touched))])
            counts = [int(np.searchsorted(when, hi) - np.searchsorted(when, lo))
                      for lo, hi in (bounds[s.level] if ps else [])]
            short = [(p[0], c) for p, c in zip(ps, counts, strict=True) if c < rule["times"]]
            n_valid = len(touched)
            n_suspect = int((~valid_of[mine]).sum())
            status = "not judged" if not ps else ("missing" if short else "ok")
            subject_geom = (shapely.union_all(s.lines) if s.kind == "river" else shapely.boundary(s.area))
            base = {"village_id": s.village_ids, "grid_id": s.grid_id, "owner": s.label, "person_id": pid,
                    "river_id": s.river_id, "reach_id": s.reach_ids[0] if len(s.reach_ids) == 1 else None,
                    "level": s.level, "subject_id": s.subject_id, "month": tag}
            what = (f"river {s.river_id}" + (f" in {s.village_ids}" if s.level == "village" else "")
                    if s.kind == "river" else f"grid {s.grid_id}")
            if short:
                never = len(short) == len(ps)
                need = f"{rule['times']} valid patrol(s) per {rule['period']}"
                miss = ", ".join(f"{p} ({c})" for p, c in short)
                rows.append({**base, "kind": "patrol_missing", "severity": "high" if never else "medium",
                             "measure": float(len(short)), "unit": "periods", "rule": f"patrols.{s.level}",
                             "message": f"{s.label} ({s.level}) patrolled {what} too seldom in {tag}: the rule "
                                        f"asks {need}; short in {len(short)} of {len(ps)} period(s): {miss}.",
                             "geometry": subject_geom})
                keys.append(f"patrol_missing|{pid}|{s.subject_id}|{tag}")
            if ps and n_valid and total > 0 and share < rule["min_share"] and gaps is not None and len(gaps[0]):
                pieces = lines.substrings(*gaps) if lines is not None else np.empty(0, dtype=object)
                unpatrolled = float(np.sum(gaps[2] - gaps[1]))
                rows.append({**base, "kind": "patrol_partial", "severity": "medium", "measure": unpatrolled,
                             "unit": "m", "rule": f"patrols.{s.level}",
                             "message": f"{s.label} ({s.level}) patrolled only {share:.0%} of {what} in {tag} "
                                        f"(the rule asks {rule['min_share']:.0%}): {unpatrolled:,.0f} m of "
                                        f"{total:,.0f} m never came within "
                                        f"{opts['river_distance_m' if s.kind == 'river' else 'lane_distance_m']:g} m "
                                        "of a valid patrol.",
                             "geometry": shapely.multilinestrings(pieces) if len(pieces) > 1 else pieces[0],
                             "share": share})
                keys.append(f"patrol_partial|{pid}|{s.subject_id}|{tag}")
                if status == "ok":
                    status = "partial"
            people_rows.append({"person_id": pid, "name": s.label, "level": s.level, "subject_id": s.subject_id,
                                "village_id": s.village_ids, "period": rule["period"], "required": rule["times"],
                                "periods": len(ps), "periods_met": len(ps) - len(short), "valid_patrols": n_valid,
                                "suspect_patrols": n_suspect, "share": share, "status": status})
    # suspect patrols: one finding each, with the evidence
    if len(patrols):
        sus = patrols[patrols["judged"].astype(bool) & ~patrols["valid"].astype(bool)]
        first_sub = {pid: subs[0] for pid, subs in subjects.items()}
        for r in sus.itertuples(index=False):
            s = first_sub[str(r.person_id)]
            reasons = str(r.reasons).split(",")
            words = []
            if "short" in reasons:
                words.append(f"too short ({r.duration_min:.1f} min, {r.length_m:,.0f} m)")
            if "vehicle" in reasons:
                words.append(f"too fast for a patrol on foot or by bicycle ({r.speed_kmh:.0f} km/h held half of "
                             "the time: a vehicle)")
            if "off_route" in reasons:
                words.append(f"off its {'river' if s.kind == 'river' else 'grid'} ({r.on_route:.0%} on it; "
                             f"typically {r.off_route_m:,.0f} m away)")
            if "teleport" in reasons:
                words.append(f"teleports ({int(r.teleports)} jump(s), up to {r.max_jump_m:,.0f} m at "
                             f"{r.jump_kmh:,.0f} km/h)")
            when = r.start.strftime("%Y-%m-%d %H:%M")
            geom = patrols.geometry.iloc[int(np.flatnonzero(patrols["patrol_uid"].to_numpy() == r.patrol_uid)[0])]
            rows.append({"village_id": s.village_ids, "grid_id": s.grid_id, "owner": s.label,
                         "person_id": r.person_id, "river_id": s.river_id, "reach_id": None, "level": s.level,
                         "subject_id": s.subject_id, "month": tag, "kind": "patrol_suspect",
                         "severity": "medium" if reasons != ["short"] else "low",
                         # the measure is the strongest evidence: speed, then the jump, then the distance off
                         "measure": float(r.speed_kmh if "vehicle" in reasons else r.max_jump_m
                                          if "teleport" in reasons else r.off_route_m if "off_route" in reasons
                                          else r.duration_min),
                         "unit": ("km/h" if "vehicle" in reasons else "m" if "off_route" in reasons
                                  or "teleport" in reasons else "min"),
                         "rule": "patrols.validity", "reasons": r.reasons, "patrol_start": when,
                         "speed_kmh": float(r.speed_kmh), "off_route_m": float(r.off_route_m),
                         "duration_min": float(r.duration_min), "track_m": float(r.length_m),
                         "max_jump_m": float(r.max_jump_m),
                         "message": f"{s.label}'s patrol of {when} is suspect: " + "; ".join(words) + ". It does "
                                    "not count; a supervisor should check it.",
                         "geometry": geom})
            keys.append(f"patrol_suspect|{r.person_id}|{r.start_s}")
    people = pd.DataFrame(people_rows, columns=["person_id", "name", "level", "subject_id", "village_id", "period",
                                                "required", "periods", "periods_met", "valid_patrols",
                                                "suspect_patrols", "share", "status"])
    # patrolled length per reach: the union of what every chief answerable for it walked (not the largest one)
    reach_series = pd.Series(dtype=float)
    if reach_iv:
        codes, names = pd.factorize(np.concatenate([r for r, _, _ in reach_iv]))
        rk, ra, rb = merge_intervals(codes.astype(np.int64), np.concatenate([v[1] for v in reach_iv]),
                                     np.concatenate([v[2] for v in reach_iv]))
        reach_series = pd.Series(np.bincount(rk, weights=rb - ra, minlength=len(names)),
                                 index=np.asarray(names, dtype=object), dtype=float)
    reach_series = reach_series.rename_axis("reach_id")
    grid_series = pd.Series(grid_ok, dtype=bool).rename_axis("grid_id")
    if not rows:
        return empty_findings(crs), people, reach_series, grid_series
    frame = pd.DataFrame(rows)
    return make_findings(frame, crs=crs, key=keys), people, reach_series, grid_series
