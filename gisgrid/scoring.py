"""测评体系: the scoring scheme, the ledger of points lost (失分台账), periods, red flags and yellow cards.

One policy for every level: :func:`ledger` and :func:`standings` score any set
of parties named by a column of a *view* (one row per finding over a span: a
run or a period). Villages are scored by ``village_id`` (属地: the village
answers for its territory), departments and persons in charge by the parties of
``owner`` that are not a village committee (谁丢分、谁担责); a district run adds
a ``town`` column and scores towns with the same functions.

The points (a shipped default for every number; ``[scoring]`` changes any)
--------------------------------------------------------------------------
For each party, over a span::

    score = base − Σ lost + min(Σ credit, credit_cap)

* a finding **open at the end** of the span costs its kind's points
  (``points`` per finding, or ``points`` per ``per`` units of its measure,
  pro rata: a lane of 76.7 m at 0.5 per 100 m costs 0.38), at most ``cap`` per
  kind and party, plus its severity's points (``severity``: a veto item 10);
  a kind with no rule costs ``unlisted`` points by its severity (at most 5);
* a finding **overdue** at any run of the span (or fixed after its deadline)
  costs ``overdue`` points, one
  **back again** (反弹) ``reopened`` points, once per finding and span;
* a finding **fixed within its deadline** during the span, and not open at its
  end, earns ``fixed_credit``: a credit offsets points lost (at most
  ``credit_cap`` per party) and never lifts a score above ``base``, so a
  village never beats one that had nothing to fix.

A finding about two villages, or owned by ``"A / B"``, costs each party in
full. Every row of the ledger is rounded to 0.01 and the score is the sum of
the rows, so the ledger adds up to the score exactly.

Periods
-------
A period is a month (``2026-11``), a quarter (``2026Q4``) or a year
(``2026``). Its score is the state at its **last run** (the open findings then)
plus the **events of every run in it** (overdue, back again, fixed on time),
each counted once per finding. The end state is what an inspection at the end
of the quarter sees, so a fix before the end counts in full (整改到位); what
went overdue or relapsed during the quarter is not forgiven by a late fix
(防止反弹). An average over the runs was rejected: it would depend on how many
nights the scheduler ran (a missed night moves it), and a defect found and
fixed on time would still cost points.

Ranks and flags
---------------
Parties are ranked by score, then by the ``tie_break`` keys (default: fewer
veto items, fewer overdue, fewer back again, more fixed on time, less border
sliver area per km² (数据质量, villages only)); parties equal on all of these
share the rank. The best ``red`` get the red flag (夺红旗) and the worst
``yellow`` the yellow card (亮黄牌); when a tie straddles the count, the tied
parties get no flag unless ``share_ties = true``. A party with a veto item in
the period never gets a red flag, nor does anyone when all are equal; ``veto_yellow = true`` gives it a yellow
card; ``red_min`` and ``yellow_below`` add score thresholds. Villages and
departments are ranked separately.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gisgrid._errors import ConfigError
from gisgrid.findings import OPEN_STATUSES, as_date, id_list, is_open, present, split_owner
from gisgrid.vocab import as_number, as_shown

__all__ = [
    "DEFAULT_KIND_RULES",
    "DEFAULT_SEVERITY_POINTS",
    "DEFAULT_UNLISTED_POINTS",
    "LEVELS",
    "PERIODS",
    "TIE_BREAKS",
    "KindRule",
    "Period",
    "Scheme",
    "is_village_owner",
    "ledger",
    "parse_period",
    "period_of",
    "period_view",
    "rank",
    "run_view",
    "standings",
    "trend",
]

#: Period kinds, shortest first.
PERIODS: tuple[str, ...] = ("month", "quarter", "year")
#: The two levels ranked separately: the column of a view that names their parties, and their label.
LEVELS: dict[str, tuple[str, str]] = {
    "village": ("village_id", "村居 villages"),
    "department": ("department", "部门及责任人 departments and persons in charge"),
}
#: Tie-break keys, in their default order, with what wins.
TIE_BREAKS: dict[str, str] = {
    "veto": "fewer veto items in the period",
    "overdue": "fewer findings overdue in the period",
    "reopened": "fewer findings back again (反弹) in the period",
    "fixed_on_time": "more findings fixed within their deadline",
    "hygiene": "less border sliver area per km² (数据质量; villages only)",
}
_HIGHER_WINS = frozenset({"fixed_on_time"})


@dataclass(frozen=True)
class KindRule:
    """What a finding kind costs: ``points`` per finding, or per ``per`` units of its measure; ``cap`` per party."""

    points: float
    per: float = 0.0  # 0: per finding
    cap: float | None = None

    def describe(self, unit: str = "") -> str:
        """The rule in words, e.g. ``"0.5 per 100 m, at most 10"``."""
        text = f"{self.points:g} per {self.per:g} {unit}".rstrip() if self.per > 0 else f"{self.points:g} each"
        return text + ("" if self.cap is None else f", at most {self.cap:g}")


_UNIT_SHOWN = {"m2": "m²", "count": ""}
_UNITS = {"area_gap": "m²", "area_overlap": "m²", "road_uncovered": "m", "river_unassigned": "m"}

#: The shipped points per finding kind (README "测评体系" has the table).
DEFAULT_KIND_RULES: dict[str, KindRule] = {
    "area_gap": KindRule(0.5, per=1000.0, cap=10.0),
    "area_overlap": KindRule(0.2, per=1000.0, cap=5.0),
    "road_uncovered": KindRule(0.5, per=100.0, cap=10.0),
    "road_ambiguous": KindRule(0.5, cap=5.0),
    "river_unassigned": KindRule(1.0, per=1000.0, cap=10.0),
    "grid_unstaffed": KindRule(2.0, cap=10.0),
    "grid_overloaded": KindRule(1.0, cap=5.0),
    "staff_unplaced": KindRule(0.5, cap=5.0),
    "chief_unplaced": KindRule(0.5, cap=5.0),
    "poi_uncovered": KindRule(2.0, cap=10.0),
    "checkpoint_incomplete": KindRule(1.0, cap=10.0),
    "sensitive_section": KindRule(1.0, cap=10.0),
    "input_repaired": KindRule(0.2, cap=2.0),
    "grid_straddles": KindRule(0.5, cap=5.0),
    "outside_town": KindRule(0.0),  # outside the town: not its score
}
#: The shipped points per finding of a kind with no rule in ``kinds``, by severity (at most 5 per kind and party).
DEFAULT_UNLISTED_POINTS: dict[str, float] = {"veto": 2.0, "high": 1.0, "medium": 0.5, "low": 0.2}
_UNLISTED_CAP = 5.0
#: The shipped extra points per severity (a veto item costs 10 on top of its kind's points).
DEFAULT_SEVERITY_POINTS: dict[str, float] = {"veto": 10.0, "high": 0.0, "medium": 0.0, "low": 0.0}


@dataclass(frozen=True)
class Scheme:
    """The 测评体系: every number of the score, the period and the flags (see the module docstring)."""

    base: float = 100.0
    kinds: Mapping[str, KindRule] = field(default_factory=lambda: dict(DEFAULT_KIND_RULES))
    severity: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_POINTS))
    unlisted: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_UNLISTED_POINTS))
    overdue: float = 2.0
    reopened: float = 3.0
    fixed_credit: float = 0.5
    credit_cap: float = 5.0
    period: str = "quarter"
    red: int = 3
    yellow: int = 3
    red_min: float | None = None
    yellow_below: float | None = None
    share_ties: bool = False
    veto_yellow: bool = False
    tie_break: tuple[str, ...] = tuple(TIE_BREAKS)
    trend: int = 4

    @classmethod
    def from_options(cls, options: Any = None) -> Scheme:
        """The shipped scheme with what ``[scoring]`` sets over it.

        Parameters
        ----------
        options
            A :class:`gisgrid.io.config.ScoringOptions` (or anything with its attributes; None or a missing
            attribute keeps the shipped value); ``kinds`` and ``severity`` are merged key by key.
        """
        if options is None:
            return cls()
        default = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            given = getattr(options, f.name, None)
            if given is None or f.name in ("kinds", "severity", "unlisted"):
                continue
            values[f.name] = tuple(given) if f.name == "tie_break" else given
        kinds = dict(default.kinds)
        for kind, rule in (getattr(options, "kinds", None) or {}).items():
            kinds[kind] = dataclasses.replace(kinds.get(kind, KindRule(0.0)), **dict(rule))
        severity = {**default.severity, **dict(getattr(options, "severity", None) or {})}
        unlisted = {**default.unlisted, **dict(getattr(options, "unlisted", None) or {})}
        scheme = cls(**values, kinds=kinds, severity=severity, unlisted=unlisted)
        scheme.check()
        return scheme

    def check(self) -> None:
        """Refuse a scheme that cannot rank (raises :class:`~gisgrid.ConfigError`)."""
        if self.period not in PERIODS:
            msg = f"[scoring] period must be one of {list(PERIODS)}, not {self.period!r}."
            raise ConfigError(msg, fix='write period = "quarter"')
        bad = [k for k in self.tie_break if k not in TIE_BREAKS]
        if bad:
            msg = f"[scoring] tie_break has unknown key(s) {bad}."
            raise ConfigError(msg, fix=f"use some of {list(TIE_BREAKS)}")

    def rule(self, kind: str, severity: str) -> KindRule:
        """The rule of a finding kind: its own in ``kinds``, else its severity's in ``unlisted``."""
        own = self.kinds.get(kind)
        if own is not None:
            return own
        return KindRule(float(self.unlisted.get(severity, 0.0)), cap=_UNLISTED_CAP)

    def table(self) -> pd.DataFrame:
        """The scheme as rows (``item``, ``points``, ``rule``) for the report and the workbook."""
        rows = [{"item": f"kind {k}", "points": r.points, "rule": r.describe(_UNITS.get(k, ""))}
                for k, r in self.kinds.items()]
        rows += [{"item": f"unlisted kind, {s}", "points": p, "rule": f"each, at most {_UNLISTED_CAP:g}"}
                 for s, p in self.unlisted.items()]
        rows += [{"item": f"severity {s}", "points": p, "rule": "extra, open at the end"}
                 for s, p in self.severity.items() if p]
        rows += [{"item": "overdue 逾期", "points": self.overdue, "rule": "once per finding and period"},
                 {"item": "reopened 反弹", "points": self.reopened, "rule": "once per finding and period"},
                 {"item": "fixed on time 按期整改", "points": -self.fixed_credit,
                  "rule": f"credit, at most {self.credit_cap:g} per party"}]
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- periods
@dataclass(frozen=True, order=True)
class Period:
    """A month, quarter or year: ``start`` and ``end`` (both included) and its ``label`` (``2026Q4``)."""

    start: dt.date
    end: dt.date
    kind: str
    label: str

    def previous(self) -> Period:
        """The period just before, of the same kind."""
        return period_of(self.start - dt.timedelta(days=1), self.kind)

    def to_date(self, day: dt.date) -> Period:
        """The part of the period up to ``day`` (the period to date)."""
        return dataclasses.replace(self, end=min(self.end, day))


def period_of(day: dt.date, kind: str = "quarter") -> Period:
    """The period of ``kind`` that holds ``day``."""
    if kind == "month":
        start = dt.date(day.year, day.month, 1)
        label = f"{day.year}-{day.month:02d}"
        months = 1
    elif kind == "quarter":
        q = (day.month - 1) // 3
        start = dt.date(day.year, 3 * q + 1, 1)
        label = f"{day.year}Q{q + 1}"
        months = 3
    elif kind == "year":
        start = dt.date(day.year, 1, 1)
        label = str(day.year)
        months = 12
    else:
        msg = f"unknown period kind {kind!r}."
        raise ConfigError(msg, fix=f"use one of {list(PERIODS)}")
    m = start.month - 1 + months
    end = dt.date(start.year + m // 12, m % 12 + 1, 1) - dt.timedelta(days=1)
    return Period(start=start, end=end, kind=kind, label=label)


_PERIOD_RE = (("quarter", re.compile(r"^(\d{4})-?Q([1-4])$", re.I)), ("month", re.compile(r"^(\d{4})-(\d{1,2})$")),
              ("year", re.compile(r"^(\d{4})$")))


def parse_period(text: str) -> Period:
    """``2026Q4`` (or ``2026-Q4``), ``2026-11`` or ``2026`` as a :class:`Period`.

    Raises
    ------
    ConfigError
        Text that names no period.
    """
    value = str(text).strip()
    for kind, pattern in _PERIOD_RE:
        m = pattern.match(value)
        if m is None:
            continue
        year = int(m.group(1))
        if kind == "quarter":
            return period_of(dt.date(year, 3 * int(m.group(2)) - 2, 1), "quarter")
        if kind == "month" and 1 <= int(m.group(2)) <= 12:
            return period_of(dt.date(year, int(m.group(2)), 1), "month")
        if kind == "year":
            return period_of(dt.date(year, 1, 1), "year")
    msg = f"--period {value!r} names no period."
    raise ConfigError(msg, fix="write a quarter 2026Q4, a month 2026-11 or a year 2026")


# --------------------------------------------------------------------------- views
_VIEW_COLUMNS = ("finding_id", "kind", "severity", "village_id", "owner", "measure", "unit", "status", "open",
                 "overdue", "reopened", "fixed_on_time", "veto")
_VILLAGE_OWNER = re.compile(r"(村委会|居委会) \([^()]*\)$")


def is_village_owner(party: Any) -> bool:
    """True for a village committee's owner string ``"<name>村委会 (<id>)"`` (:func:`gisgrid.vocab.village_owner`)."""
    return bool(_VILLAGE_OWNER.search(as_shown(party)))


def _departments(owner: Any) -> tuple[str, ...]:
    """The parties of an owner that are not a village committee (the village is scored by its territory)."""
    return tuple(p for p in split_owner(owner) if not is_village_owner(p))


def _finish_view(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["department"] = [_departments(o) for o in df["owner"]]
    df["measure"] = pd.to_numeric(df["measure"], errors="coerce")
    for col in ("open", "overdue", "reopened", "fixed_on_time", "veto"):
        df[col] = df[col].astype(bool)
    return df[[*_VIEW_COLUMNS, "department"]].reset_index(drop=True)


def run_view(lifecycle: pd.DataFrame) -> pd.DataFrame:
    """The view of one run: its lifecycle table (:func:`gisgrid.findings.with_lifecycle`) as one row per finding.

    Returns
    -------
    DataFrame
        ``finding_id``, ``kind``, ``severity``, ``village_id``, ``owner``, ``measure``, ``unit``, ``status``
        and the flags ``open`` (at the end), ``overdue``, ``reopened``, ``fixed_on_time``, ``veto`` (an open
        veto item), and ``department`` (the owner's parties that are not a village committee).
    """
    df = pd.DataFrame(lifecycle).drop(columns=["geometry"], errors="ignore").copy()
    for col in ("village_id", "owner", "measure", "unit", "deadline", "resolved_on"):
        if col not in df.columns:
            df[col] = None
    status = df["status"].astype(str)
    open_ = is_open(df)
    deadline = df["deadline"].map(as_date)
    fixed = df["resolved_on"].map(as_date)
    df["open"] = open_
    late = [(s == "resolved" and f is not None and d is not None and f > d)
            for s, f, d in zip(status, fixed, deadline, strict=True)]
    df["overdue"] = (status == "overdue") | np.array(late, dtype=bool)  # a late fix was overdue too
    df["reopened"] = status == "reopened"
    df["fixed_on_time"] = [(s == "resolved" and f is not None and d is not None and f <= d)
                           for s, f, d in zip(status, fixed, deadline, strict=True)]
    df["veto"] = open_ & (df["severity"] == "veto")
    return _finish_view(df)


def period_view(observations: pd.DataFrame) -> pd.DataFrame:
    """The view of a period from its observations (:meth:`gisgrid.history.History.observations`).

    A finding is open at the end when its observation at the period's last run is open; overdue, back again
    and veto when any run of the period saw it so; fixed on time when a run found it gone by its deadline and
    it is not open at the end. Severity, status and attributes are those of its last observation.
    """
    obs = pd.DataFrame(observations).reset_index(drop=True)
    if not len(obs):
        return _finish_view(pd.DataFrame({c: pd.Series([], dtype=object) for c in _VIEW_COLUMNS}))
    day = pd.to_datetime(obs["as_of"]).to_numpy(dtype="datetime64[D]")
    deadline = pd.to_datetime(obs["deadline"]).to_numpy(dtype="datetime64[D]")  # NaT: none
    status = obs["status"].to_numpy(dtype=object).astype(str)
    codes, _ = pd.factorize(obs["finding_id"].to_numpy(dtype=object))
    in_time = ~np.isnat(deadline) & (day <= deadline)
    resolved = status == "resolved"
    open_obs = np.isin(status, OPEN_STATUSES)

    def ever(mask: np.ndarray) -> np.ndarray:  # per finding: any of its observations
        return np.bincount(codes, weights=mask.astype(float), minlength=codes.max() + 1)[codes] > 0

    order = np.lexsort((day, codes))  # each finding's observations in date order
    last = order[np.r_[codes[order][1:] != codes[order][:-1], True]]
    view = obs.iloc[last].copy()
    view["overdue"] = ever((status == "overdue") | (resolved & ~in_time))[last]  # a late fix was overdue too
    view["reopened"] = ever(status == "reopened")[last]
    view["veto"] = ever(open_obs & (obs["severity"].to_numpy(dtype=object) == "veto"))[last]
    view["open"] = open_obs[last] & (day[last] == day.max())
    view["fixed_on_time"] = ever(resolved & in_time)[last] & ~view["open"].to_numpy(dtype=bool)
    return _finish_view(view)


# --------------------------------------------------------------------------- ledger
_LEDGER_COLUMNS = ("level", "party", "finding_id", "kind", "severity", "status", "rule", "measure", "unit",
                   "points")


def _parties(cell: Any) -> list[str]:
    if isinstance(cell, tuple | list):
        return [str(p) for p in cell if present(p)]
    return id_list(cell)


def ledger(view: pd.DataFrame, scheme: Scheme | None = None, *, by: str = "village_id",
           level: str | None = None) -> pd.DataFrame:
    """The ledger of points lost (失分台账): one row per party, finding and rule that moved its score.

    Parameters
    ----------
    view
        From :func:`run_view` or :func:`period_view` (or any table with their columns).
    scheme
        The scheme (default: the shipped one).
    by
        The column naming each finding's parties: ``village_id``, ``department``, or any column of id
        cells (a district run's ``town``).
    level
        The ``level`` written in each row (default ``by``).

    Returns
    -------
    DataFrame
        ``level``, ``party``, ``finding_id``, ``kind``, ``severity``, ``status``, ``rule``, ``measure``,
        ``unit``, ``points`` (negative: lost; positive: credit; rounded to 0.01), ordered by party, most lost
        first.
    """
    scheme = scheme or Scheme()
    columns = [*_LEDGER_COLUMNS, "_cap"]
    v = pd.DataFrame(view).reset_index(drop=True)
    v = v.assign(party=[_parties(c) for c in v[by]]).explode("party")
    v = v[v["party"].notna()]
    if not len(v):
        return pd.DataFrame(columns=list(_LEDGER_COLUMNS))
    v = v.reset_index(drop=True)
    # plain arrays: iterating pandas' string arrays costs a call per cell
    k_arr = v["kind"].to_numpy(dtype=object).astype(str)
    s_arr = v["severity"].to_numpy(dtype=object).astype(str)
    u_arr = np.array([as_shown(u) for u in v["unit"].to_numpy(dtype=object)] if "unit" in v.columns
                     else [""] * len(v), dtype=object).astype(str)
    kind, sev = (pd.Series(a, index=v.index) for a in (k_arr, s_arr))
    rules = {(k, s_): scheme.rule(k, s_) for k, s_ in set(zip(k_arr.tolist(), s_arr.tolist(), strict=True))}
    pair = pd.Series(list(zip(k_arr.tolist(), s_arr.tolist(), strict=True)), index=v.index, dtype=object)
    pts = pair.map(lambda ks: rules[ks].points).astype(float)
    per = pair.map(lambda ks: rules[ks].per).astype(float)
    measure = pd.to_numeric(v["measure"], errors="coerce")
    pro_rata = (per > 0) & measure.notna()
    pts = pts.where(~pro_rata, pts * measure / per.where(per > 0))
    text = pd.Series(list(zip(k_arr.tolist(), s_arr.tolist(), u_arr.tolist(), strict=True)), index=v.index,
                     dtype=object)
    texts = {t: f"kind {t[0]}: {rules[(t[0], t[1])].describe(_UNIT_SHOWN.get(t[2], t[2]))}" for t in set(text)}
    open_ = v["open"].astype(bool)
    extra = sev.map(lambda x: float(scheme.severity.get(x, 0.0)))
    charged, heavy = open_ & (pts > 0), open_ & (extra > 0)
    parts = [
        v[charged].assign(rule=text[charged].map(texts), points=-pts[charged], _cap="cap:" + kind[charged]),
        v[heavy].assign(rule="severity " + sev[heavy] + ": " + extra[heavy].map(lambda e: f"{e:g}"),
                        points=-extra[heavy], _cap=""),
    ]
    for flag, amount, text, cap in (("overdue", -scheme.overdue, f"overdue 逾期: {scheme.overdue:g}", ""),
                                    ("reopened", -scheme.reopened, f"reopened 反弹: {scheme.reopened:g}", ""),
                                    ("fixed_on_time", scheme.fixed_credit,
                                     f"fixed on time 按期整改: +{scheme.fixed_credit:g}", "cap:credit")):
        if amount:
            parts.append(v[v[flag].astype(bool)].assign(rule=text, points=amount, _cap=cap))
    out = pd.concat([p for p in parts if len(p)] or [pd.DataFrame(columns=columns)], ignore_index=True)
    out = out.assign(level=level or by)
    for col in columns:
        if col not in out.columns:
            out[col] = None
    out = out[columns]
    if not len(out):
        return out.drop(columns=["_cap"])
    out["points"] = out["points"].astype(float)
    out = _apply_caps(out, scheme)
    out["points"] = out["points"].round(2) + 0.0  # + 0.0: no -0.0 in the files
    # a party's rows: most lost first, then the credits (the order of the report and points.csv)
    out = out.sort_values(["party", "points", "finding_id", "rule"], kind="stable").reset_index(drop=True)
    return out[list(_LEDGER_COLUMNS)]


def _apply_caps(out: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Cut each party's points of a kind at the kind's cap, and its credit at ``credit_cap`` (largest first)."""
    caps: dict[str, float] = {f"cap:{k}": _UNLISTED_CAP for k in set(out["kind"].astype(str)) - set(scheme.kinds)}
    caps.update({f"cap:{k}": r.cap for k, r in scheme.kinds.items() if r.cap is not None})
    out = out.copy()
    out["_limit"] = out["_cap"].map(caps).astype(float)  # NaN: no cap
    losses = out["_cap"] != "cap:credit"
    out = _cut(out, losses)
    # credits last: they offset the points lost after the caps, never lift a score above base
    lost = (-out.loc[losses, "points"]).groupby(out.loc[losses, "party"]).sum()
    credit = ~losses
    if credit.any():
        offset = out.loc[credit, "party"].map(lost).astype(float).fillna(0.0)
        out.loc[credit, "_limit"] = offset.clip(upper=scheme.credit_cap).to_numpy(dtype=float)
        out = _cut(out, credit)
    return out.drop(columns=["_limit"])


def _cut(out: pd.DataFrame, rows: pd.Series) -> pd.DataFrame:
    """Within each (party, cap) group of ``rows`` with a ``_limit``, largest first: the share still under it."""
    sub = out[rows & out["_limit"].notna()]
    if not len(sub):
        return out
    size = sub["points"].abs()
    order = pd.DataFrame({"party": sub["party"], "cap": sub["_cap"], "size": -size, "id": sub["finding_id"]})
    order = order.sort_values(["party", "cap", "size", "id"], kind="stable")
    size = size.loc[order.index]
    used_before = size.groupby([order["party"], order["cap"]], sort=False).cumsum() - size
    allowed = np.clip(sub.loc[order.index, "_limit"] - used_before, 0.0, size)
    cut = allowed < size - 1e-12
    sign = np.sign(sub.loc[order.index, "points"])
    out.loc[order.index, "points"] = sign * allowed
    idx = order.index[cut.to_numpy()]
    out.loc[idx, "rule"] = [f"{r} (cap {lim:.2f} reached: {p:+.2f})" for r, lim, p in
                            zip(out.loc[idx, "rule"], sub.loc[idx, "_limit"], out.loc[idx, "points"], strict=True)]
    return out


# --------------------------------------------------------------------------- standings
def standings(view: pd.DataFrame, scheme: Scheme | None = None, *, by: str = "village_id",
              parties: Iterable[str] | None = None, names: Mapping[str, str] | None = None,
              hygiene: Mapping[str, float] | None = None, level: str | None = None,
              book: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score and rank the parties of one level over a span (a run or a period).

    Parameters
    ----------
    view, scheme, by, level
        As for :func:`ledger`.
    parties
        Every party of the level (a village with no finding scores ``base``); default those in the view.
    names
        Party id -> name to show.
    hygiene
        Party id -> border sliver area per km² (the ``hygiene`` tie-break; missing: not compared).
    book
        This level's :func:`ledger` when the caller has it already.

    Returns
    -------
    DataFrame
        Best first (see :func:`rank`): ``rank``, ``party``, ``name``, ``score``, ``lost``, ``credit``,
        ``open``, ``veto``, ``overdue``, ``reopened``, ``fixed_on_time``, ``hygiene``, ``flag``.
    """
    scheme = scheme or Scheme()
    book = ledger(view, scheme, by=by, level=level) if book is None else book
    flags = ["open", "veto", "overdue", "reopened", "fixed_on_time"]
    exploded = pd.DataFrame(view).assign(party=[_parties(c) for c in view[by]]).explode("party")
    exploded = exploded[exploded["party"].notna()]
    ids = list(dict.fromkeys([*(parties or []), *exploded["party"]]))
    per = exploded[flags].astype(bool).astype(int).groupby(exploded["party"]).sum()
    per = per.reindex(ids, fill_value=0).astype(int)
    pts = book.groupby("party")["points"]
    lost = (-book["points"].clip(upper=0)).groupby(book["party"]).sum().reindex(ids, fill_value=0.0)
    credit = book["points"].clip(lower=0).groupby(book["party"]).sum().reindex(ids, fill_value=0.0)
    total = pts.sum().reindex(ids, fill_value=0.0) if len(book) else pd.Series(0.0, index=ids)
    names = names or {}
    table = pd.DataFrame({
        "party": ids,
        "name": [as_shown(names.get(p)) or p for p in ids],
        "score": (scheme.base + total.to_numpy(dtype=float)).round(2),
        "lost": lost.to_numpy(dtype=float).round(2) + 0.0,
        "credit": credit.to_numpy(dtype=float).round(2) + 0.0,
        **{k: per[k].to_numpy() for k in ("open", "veto", "overdue", "reopened", "fixed_on_time")},
        "hygiene": pd.Series([as_number((hygiene or {}).get(p)) for p in ids], dtype=float).to_numpy(),
    })
    return rank(table, scheme)


def rank(table: pd.DataFrame, scheme: Scheme | None = None) -> pd.DataFrame:
    """Rank a standings table and give the flags (the rules are in the module docstring).

    Parameters
    ----------
    table
        ``party``, ``score`` and the tie-break columns (``veto``, ``overdue``, ``reopened``,
        ``fixed_on_time``, ``hygiene``).

    Returns
    -------
    DataFrame
        A new table, best first, with ``rank`` (equal for parties equal on the score and every tie-break)
        and ``flag`` (``"red"``, ``"yellow"`` or ``""``).
    """
    scheme = scheme or Scheme()
    df = pd.DataFrame(table).drop(columns=["rank", "flag"], errors="ignore").reset_index(drop=True)
    keys = [("score", False)]
    for k in scheme.tie_break:
        if k in df.columns and not (k == "hygiene" and df[k].isna().all()):
            keys.append((k, k in _HIGHER_WINS))
    # a missing hygiene number compares as the worst (it cannot win a tie it was not measured for)
    sort = pd.DataFrame({c: (df[c] if not hi else -df[c]) for c, hi in keys})
    if "score" in sort:
        sort["score"] = -sort["score"]
    sort = sort.fillna(np.inf)
    key_tuples = list(sort.itertuples(index=False, name=None))
    order = sorted(range(len(df)), key=lambda i: (key_tuples[i], str(df["party"].iat[i])))
    df = df.iloc[order].reset_index(drop=True)
    ranked = [key_tuples[i] for i in order]
    ranks: list[int] = []
    for i, k in enumerate(ranked):
        ranks.append(ranks[-1] if i and k == ranked[i - 1] else i + 1)
    df.insert(0, "rank", ranks)
    df["flag"] = ""
    # a red flag needs someone ranked worse, and never goes to a party with a veto item (一票否决)
    no_veto = (df["veto"] == 0) if "veto" in df else pd.Series(True, index=df.index)
    red = _by_count(df, scheme.red, scheme.share_ties, eligible=no_veto & (df["rank"] < df["rank"].max()),
                    best=True, min_score=scheme.red_min)
    df.loc[red, "flag"] = "red"
    not_red = df["flag"] != "red"
    # a yellow card needs someone ranked better: an all-equal town gets no card by count
    yellow = _by_count(df, scheme.yellow, scheme.share_ties, eligible=not_red & (df["rank"] > 1), best=False)
    df.loc[yellow, "flag"] = "yellow"
    if scheme.yellow_below is not None:
        df.loc[not_red & (df["score"] < scheme.yellow_below), "flag"] = "yellow"
    if scheme.veto_yellow and "veto" in df:
        df.loc[df["veto"] > 0, "flag"] = "yellow"
    return df


def _by_count(df: pd.DataFrame, count: int, share_ties: bool, *, eligible: pd.Series | None, best: bool,
              min_score: float | None = None) -> list[int]:
    """Rows of the best (or worst) ``count`` eligible parties, whole rank groups only (see ``share_ties``)."""
    ok = pd.Series(True, index=df.index) if eligible is None else eligible
    if min_score is not None:
        ok = ok & (df["score"] >= min_score)
    rows = df.index[ok]
    if count <= 0 or not len(rows):
        return []
    groups = df.loc[rows].groupby("rank", sort=True).groups
    ordered = sorted(groups, reverse=not best)
    chosen: list[int] = []
    for r in ordered:
        members = list(groups[r])
        if len(chosen) + len(members) > count:
            if share_ties:
                chosen += members
            break
        chosen += members
        if len(chosen) == count:
            break
    return chosen


# --------------------------------------------------------------------------- trend
def trend(by_period: Sequence[tuple[Period, pd.DataFrame]]) -> pd.DataFrame:
    """Each party's score over the periods (oldest first) and the change since the period before the last.

    Parameters
    ----------
    by_period
        ``(period, standings)`` pairs, oldest first; a period without runs may have an empty table.

    Returns
    -------
    DataFrame
        ``party``, ``name``, one column per period label (NaN: not scored), ``change`` (the last period
        minus the one before; NaN when either is missing), ordered as the last period's ranking.
    """
    if not by_period:
        return pd.DataFrame(columns=["party", "name", "change"])
    labels = [p.label for p, _ in by_period]
    last = by_period[-1][1]
    parties = list(dict.fromkeys([*last.get("party", []), *(p for _, t in by_period for p in t.get("party", []))]))
    names: dict[str, str] = {}
    for _, t in by_period:
        if len(t):
            names.update(dict(zip(t["party"], t["name"], strict=True)))
    out = pd.DataFrame({"party": parties, "name": [names.get(p, p) for p in parties]})
    for (_, t), label in zip(by_period, labels, strict=True):
        scores = dict(zip(t["party"], t["score"], strict=True)) if len(t) else {}
        out[label] = [scores.get(p, np.nan) for p in parties]
    out["change"] = (out[labels[-1]] - out[labels[-2]]).round(2) if len(labels) > 1 else np.nan
    return out


def village_book(assessment: Any) -> dict[str, dict[str, Any]]:
    """Every village's name and its border sliver area per km² (the ``hygiene`` tie-break), from an assessment.

    Recorded with each run (``totals["scoring"]``) so that a period is ranked from the history alone.
    """
    summary = getattr(assessment, "summary", None)
    villages = getattr(getattr(assessment, "town", None), "villages", None)
    names: dict[str, Any] = {}
    if villages is not None and "village_id" in getattr(villages, "columns", ()):
        col = villages["name"] if "name" in villages.columns else villages["village_id"]
        names = {str(v): as_shown(n) for v, n in zip(villages["village_id"], col, strict=True)}
    hygiene: dict[str, Any] = {}
    if summary is not None and {"sliver_area_m2", "area_m2"} <= set(summary.columns):
        area = pd.to_numeric(summary["area_m2"], errors="coerce")
        share = pd.to_numeric(summary["sliver_area_m2"], errors="coerce") / area.where(area > 0) * 1e6
        hygiene = {str(k): round(float(v), 3) for k, v in share.items() if as_number(v) is not None}
        names = names or {str(k): str(k) for k in summary.index}
    return {"villages": names, "hygiene": hygiene}


def level_tables(view: pd.DataFrame, scheme: Scheme, *, villages: Mapping[str, str] | None = None,
                 hygiene: Mapping[str, float] | None = None,
                 books: Mapping[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """Standings of both levels: ``village`` (every village of ``villages``) and ``department``.

    ``books``: the ledgers of the levels (by ``level``, as :func:`ledgers` returns them) when already made.
    """
    books = books or {}
    vill = standings(view, scheme, by="village_id", parties=list(villages or {}), names=villages, hygiene=hygiene,
                     level="village", book=books.get("village"))
    dept = standings(view, scheme, by="department", level="department", book=books.get("department"))
    return {"village": vill, "department": dept}


def ledgers(view: pd.DataFrame, scheme: Scheme, *, villages: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The ledger of both levels, villages first, with each party's name (``points.csv``)."""
    parts = [ledger(view, scheme, by="village_id", level="village"),
             ledger(view, scheme, by="department", level="department")]
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    names = dict(villages or {})
    out.insert(2, "name", [names.get(p, p) if lvl == "village" else p
                           for lvl, p in zip(out["level"], out["party"], strict=True)])
    return out

