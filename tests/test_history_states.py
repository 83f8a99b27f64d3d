"""The lifecycle of `History.record` as a state machine, checked against a model written from its docstring.

Each machine run records nights into a fresh SQLite file (a second test: a fresh PostgreSQL schema): the next
night, the same night again, a forced re-run of a past night, a night forced in between two others, or (refused)
an earlier night without force; each night sees a random subset of a small fixed pool of findings, each with a
random severity and the deadlines of the night. The model below knows nothing of `gisgrid.history`: it replays
the ordered nights with the rules of the module docstring (new, persisting, overdue, resolved once then closed,
reopened and counted; deadline from the first day of the stretch, tightened when the severity rises, never
loosened)."""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
import uuid
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
import shapely
from history_oracle import raw_sql
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from gisgrid import HistoryError
from gisgrid import settings as gg_settings
from gisgrid.findings import make_findings
from gisgrid.history import History

X0, Y0 = 500_000.0, 3_550_000.0
CRS = "EPSG:4549"
START = dt.date(2024, 3, 1)
SEVERITIES = ("veto", "high", "medium", "low")
#: Deadline overrides a night may be recorded with (None: settings.deadline_days).
DEADLINES = (None, {"veto": 1}, {"high": 2, "low": 40}, {"medium": 4, "veto": 6})


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


# Five findings in fixed places: their ids are the same every night, whatever their severity.
POOL = [
    {"kind": "area_gap", "message": "gap", "key": "village:V1", "geometry": _box(0, 0, 20, 10)},
    {"kind": "area_overlap", "message": "overlap", "key": "grid:G1|G2", "geometry": _box(100, 0, 120, 10)},
    {"kind": "road_uncovered", "message": "lane", "key": "road:R2",
     "geometry": shapely.LineString([(X0 + 200, Y0), (X0 + 260, Y0)])},
    {"kind": "grid_unstaffed", "message": "no chief", "key": "grid:G3", "geometry": _box(300, 0, 400, 100)},
    {"kind": "poi_uncovered", "message": "school", "key": "poi:P1", "geometry": shapely.Point(X0 + 500, Y0 + 5)},
]


def findings(picks: dict[int, str]) -> pd.DataFrame:
    """The findings of the pool entries ``picks`` names, each with the severity it gives."""
    return _findings(tuple(sorted(picks.items()))).copy()


@functools.cache
def _findings(picks: tuple[tuple[int, str], ...]) -> pd.DataFrame:
    rows = [dict(POOL[i], severity=sev) for i, sev in picks]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(
        {"kind": [], "severity": [], "message": [], "key": [], "geometry": []})
    return make_findings(df, crs=CRS, key=df["key"])


IDS = list(findings(dict.fromkeys(range(len(POOL)), "low"))["finding_id"])
assert len(set(IDS)) == len(POOL)

PICKS = st.dictionaries(st.integers(0, len(POOL) - 1), st.sampled_from(SEVERITIES), max_size=len(POOL))


def days_allowed(override: dict[str, int] | None) -> dict[str, int]:
    return {**gg_settings.deadline_days, **(override or {})}


# ----------------------------------------------------------------------------- the model
def model(nights: dict[dt.date, tuple[dict[str, str], dict[str, int]]]) -> tuple[dict, dict]:
    """Replay the nights in date order with the docstring's rules.

    Returns the state of every finding after the last night (``status``, ``first_seen``, ``opened_on``,
    ``deadline``, ``times_reopened``, ``resolved_on``) and, per night, the rows that night lists: the
    findings seen and those resolved that night.
    """
    state: dict[str, dict] = {}
    listed: dict[dt.date, dict[str, dict]] = {}
    before: set[str] = set()
    for day in sorted(nights):
        seen, days = nights[day]
        rows = {}
        for fid, sev in seen.items():
            s = state.get(fid)
            if s is None:  # new: first sighting
                s = state[fid] = {"first_seen": day, "opened_on": day, "deadline": day + dt.timedelta(days[sev]),
                                  "times_reopened": 0, "status": "new"}
            elif fid in before:  # seen at the previous night too: same stretch, deadline only tightens
                s["deadline"] = min(s["deadline"], s["opened_on"] + dt.timedelta(days[sev]))
                s["status"] = "overdue" if day > s["deadline"] else "persisting"
            else:  # seen before, resolved since, back now: a new stretch
                s.update(opened_on=day, deadline=day + dt.timedelta(days[sev]), status="reopened",
                         times_reopened=s["times_reopened"] + 1)
            s["resolved_on"] = None
            rows[fid] = dict(s)
        for fid in before - set(seen):  # gone: resolved, listed this night only
            state[fid].update(status="resolved", resolved_on=day)
            rows[fid] = dict(state[fid])
        listed[day] = rows
        before = set(seen)
    return state, listed


def _d(value) -> dt.date | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def lifecycle_rows(frame: pd.DataFrame) -> dict[str, dict]:
    """A lifecycle frame from History as ``{finding_id: {status, first_seen, deadline, times_reopened, ...}}``."""
    assert not frame["finding_id"].duplicated().any(), "a finding listed twice in one night"
    return {r.finding_id: {"status": r.status, "first_seen": _d(r.first_seen), "opened_on": _d(r.opened_on),
                           "deadline": _d(r.deadline), "times_reopened": int(r.times_reopened),
                           "resolved_on": _d(r.resolved_on)}
            for r in frame.itertuples()}


def expected_rows(rows: dict[str, dict]) -> dict[str, dict]:
    keys = ("status", "first_seen", "opened_on", "deadline", "times_reopened", "resolved_on")
    return {fid: {k: r[k] for k in keys} for fid, r in rows.items()}


# ----------------------------------------------------------------------------- the machine
class HistoryLifecycle(RuleBasedStateMachine):
    url: str | None = None  # a postgresql:// URL: the same machine on the PostgreSQL history

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="gisgrid-history-states-")
        # a PostgreSQL machine (url set, below) records into a fresh schema each run
        self.hist = History(self.url, schema=f"m_{uuid.uuid4().hex[:12]}") if self.url else \
            History(Path(self._tmp.name) / "history.sqlite")
        self.nights: dict[dt.date, tuple[dict[str, str], dict[str, int]]] = {}

    def teardown(self) -> None:
        self._tmp.cleanup()

    def _record(self, day: dt.date, picks: dict[int, str], override: dict[str, int] | None, force: bool) -> None:
        life = self.hist.record(findings(picks), as_of=day, force=force, deadlines=override)
        self.nights[day] = ({IDS[i]: sev for i, sev in picks.items()}, days_allowed(override))
        _, listed = model(self.nights)
        assert lifecycle_rows(life) == expected_rows(listed[day]), f"record() of {day}"
        resolved_now = {fid for fid, r in listed[day].items() if r["status"] == "resolved"}
        assert set(life.loc[life["status"] == "resolved", "finding_id"]) == resolved_now

    @property
    def dates(self) -> list[dt.date]:
        return sorted(self.nights)

    @rule(gap=st.integers(1, 12), picks=PICKS, override=st.sampled_from(DEADLINES))
    def next_night(self, gap: int, picks: dict[int, str], override: dict[str, int] | None) -> None:
        day = self.dates[-1] + dt.timedelta(gap) if self.nights else START
        self._record(day, picks, override, force=False)

    @precondition(lambda self: self.nights)
    @rule(picks=PICKS, override=st.sampled_from(DEADLINES))
    def same_night_again(self, picks: dict[int, str], override: dict[str, int] | None) -> None:
        self._record(self.dates[-1], picks, override, force=False)

    @precondition(lambda self: len(self.nights) >= 2)
    @rule(data=st.data(), picks=PICKS, override=st.sampled_from(DEADLINES))
    def past_night_again_forced(self, data, picks: dict[int, str], override: dict[str, int] | None) -> None:
        day = data.draw(st.sampled_from(self.dates[:-1]), label="past night")
        self._record(day, picks, override, force=True)
        self._check_later_nights(day)

    @precondition(lambda self: any((b - a).days >= 2 for a, b in pairwise(sorted(self.nights))))
    @rule(data=st.data(), picks=PICKS, override=st.sampled_from(DEADLINES))
    def night_forced_in_between(self, data, picks: dict[int, str], override: dict[str, int] | None) -> None:
        free = [a + dt.timedelta(k) for a, b in pairwise(self.dates) for k in range(1, (b - a).days)]
        day = data.draw(st.sampled_from(free), label="night in between")
        self._record(day, picks, override, force=True)
        self._check_later_nights(day)

    @precondition(lambda self: self.nights)
    @rule(picks=PICKS)
    def earlier_night_without_force_refused(self, picks: dict[int, str]) -> None:
        with pytest.raises(HistoryError, match="before the last recorded run"):
            self.hist.record(findings(picks), as_of=self.dates[-1] - dt.timedelta(1))

    def _check_later_nights(self, day: dt.date) -> None:
        """After a forced night, the nights after it are re-derived: each snapshot lists what the model lists,
        and every night's counts (``History.runs``) count what the model lists."""
        _, listed = model(self.nights)
        for later in [d for d in self.dates if d > day]:
            assert lifecycle_rows(self.hist.snapshot(later)) == expected_rows(listed[later]), f"snapshot of {later}"
        runs = self.hist.runs()
        assert list(runs["as_of"]) == self.dates
        for run in runs.itertuples():
            count = Counter(r["status"] for r in listed[run.as_of].values())
            assert {s: n for s, n in run.counts["status"].items() if n} == dict(count), f"counts of {run.as_of}"
            assert run.counts["open"] == sum(n for s, n in count.items() if s != "resolved")

    # ------------------------------------------------------------------ invariants
    @invariant()
    def every_night_as_recorded(self) -> None:
        """Every night's rows (the ``observations`` table of the module docstring) and status counts."""
        _, listed = model(self.nights)
        rows = raw_sql(self.hist, "SELECT as_of, finding_id, status, opened_on, deadline, times_reopened "
                                  "FROM observations")
        dates = [_d(d) for (d,) in raw_sql(self.hist, "SELECT as_of FROM runs ORDER BY as_of")]
        got: dict[dt.date, dict[str, dict]] = {}
        for day, fid, status, opened, deadline, times in rows:
            got.setdefault(_d(day), {})[fid] = {"status": status, "opened_on": _d(opened),
                                                "deadline": _d(deadline), "times_reopened": int(times)}
        want = {day: {fid: {k: r[k] for k in ("status", "opened_on", "deadline", "times_reopened")}
                      for fid, r in night.items()} for day, night in listed.items() if night}
        assert dates == self.dates
        assert got == want

    @invariant()
    def latest_lifecycle_of_every_finding(self) -> None:
        """The ``findings`` table (see the module docstring): each finding's lifecycle as of the latest run."""
        state, _ = model(self.nights)
        rows = raw_sql(self.hist, "SELECT finding_id, status, first_seen, opened_on, deadline, times_reopened, "
                                  "resolved_on FROM findings")
        got = {fid: {"status": s, "first_seen": _d(f), "opened_on": _d(o), "deadline": _d(d),
                     "times_reopened": int(t), "resolved_on": _d(r)}
               for fid, s, f, o, d, t, r in rows}
        assert got == expected_rows(state)
        assert {f for f, r in got.items() if r["status"] == "resolved"} == {
            f for f, r in state.items() if r["status"] == "resolved"}


HistoryLifecycle.TestCase.settings = settings(
    max_examples=30, stateful_step_count=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestHistoryLifecycle = HistoryLifecycle.TestCase


def test_the_same_machine_on_postgresql(libpq_env: str) -> None:
    """The same rules and model against a history in PostgreSQL ([history] url): fewer runs, same checks."""
    machine = type("HistoryLifecycleOnPostgres", (HistoryLifecycle,), {"url": libpq_env})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=12, stateful_step_count=8, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# ----------------------------------------------------------------------------- the model itself
def test_the_model_follows_the_docstring_on_a_hand_worked_week() -> None:
    """A hand-worked week, so that a wrong model cannot make the machine agree with a wrong History."""
    d = [START + dt.timedelta(k) for k in (0, 2, 9, 10, 12, 20)]
    a, b = IDS[0], IDS[1]
    days = days_allowed(None)  # veto 3, high 7, medium 15, low 30
    nights = {
        d[0]: ({a: "medium", b: "low"}, days),    # both new: a due d0+15, b due d0+30
        d[1]: ({a: "veto", b: "low"}, days),      # a rises to veto: d0+3; later falls never loosen it
        d[2]: ({a: "low"}, days),                 # a overdue (d0+9 > d0+3); b resolved at d2
        d[3]: ({a: "low"}, days),                 # still overdue
        d[4]: ({b: "high"}, days),                # a resolved; b back again: reopened, due d4+7
        d[5]: ({a: "high", b: "high"}, days),     # a reopened (due d5+7); b overdue (d5 > d4+7)
    }
    state, listed = model(nights)
    assert listed[d[0]][a]["deadline"] == d[0] + dt.timedelta(15)
    assert listed[d[1]][a]["deadline"] == d[0] + dt.timedelta(3)
    assert listed[d[2]][a]["status"] == "overdue"
    assert listed[d[2]][b]["status"] == "resolved"
    assert listed[d[2]][a]["deadline"] == d[0] + dt.timedelta(3)
    assert b not in listed[d[3]]  # resolved is listed once
    assert listed[d[4]][b]["status"] == "reopened"
    assert listed[d[4]][b]["opened_on"] == d[4]
    assert listed[d[4]][b]["times_reopened"] == 1
    assert listed[d[4]][a]["status"] == "resolved"
    assert listed[d[5]][b]["status"] == "overdue"
    assert state[a] == {"first_seen": d[0], "opened_on": d[5], "deadline": d[5] + dt.timedelta(7),
                        "times_reopened": 1, "status": "reopened", "resolved_on": None}
    assert state[b]["first_seen"] == d[0]
