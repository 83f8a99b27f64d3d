"""Run-to-run lifecycle: statuses, deadlines, replacing a run, forced insertion, concurrency and crashes.

Every test that takes ``store`` runs twice: on a SQLite file and on a schema of a real PostgreSQL
(``[history] url``; tests/pg.py starts the server, skipped locally without it, required in CI).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import history_oracle  # tests/history_oracle.py: the independent lifecycle oracle
import numpy as np
import pandas as pd
import pytest
import shapely

from gisgrid import HistoryError
from gisgrid.findings import make_findings
from gisgrid.history import LIFECYCLE_COLUMNS, History

X0, Y0 = 500_000.0, 3_550_000.0
CRS = "EPSG:4549"
D1, D2, D3, D4 = dt.date(2024, 5, 1), dt.date(2024, 5, 10), dt.date(2024, 5, 12), dt.date(2024, 5, 20)


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


# The defects of a small town over four nights: a gap that is fixed and breaks again, a grid
# that gets a chief, an overlap that appears, a lane whose severity rises.
GAP = {"kind": "area_gap", "severity": "high", "message": "area in no grid", "geometry": _box(100, 100, 120, 110),
       "key": "village:V1", "village_id": "V1", "owner": "张三", "measure": 200.0, "unit": "m2"}
UNSTAFFED = {"kind": "grid_unstaffed", "severity": "high", "message": "grid G2 has no grid chief",
             "geometry": _box(0, 100, 200, 200), "key": "grid:G2", "village_id": "V1", "grid_id": "G2",
             "owner": "镇指挥中心", "measure": 1.0, "unit": "count"}
LANE = {"kind": "road_uncovered", "severity": "medium", "message": "lane R2 in no grid",
        "geometry": shapely.LineString([(X0 + 210, Y0 + 150), (X0 + 250, Y0 + 150)]), "key": "road:R2",
        "village_id": "V2", "owner": "李四", "measure": 40.0, "unit": "m"}
OVERLAP = {"kind": "area_overlap", "severity": "medium", "message": "G3 and G4 overlap",
           "geometry": _box(300, 95, 400, 105), "key": "grid:G3|G4", "village_id": "V2", "owner": "王五",
           "measure": 1000.0, "unit": "m2"}


def findings(*rows: dict) -> gpd.GeoDataFrame:
    df = pd.DataFrame([dict(r) for r in rows]) if rows else pd.DataFrame(
        {"kind": [], "severity": [], "message": [], "key": [], "geometry": []})
    return make_findings(df, crs=CRS, key=df["key"])


def by_kind(life: gpd.GeoDataFrame) -> dict[str, pd.Series]:
    return {r["kind"]: r for _, r in life.iterrows()}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Where a new history goes, by name: a SQLite file, or ``URL#schema`` (a fresh schema per test)."""
    if request.param == "sqlite":
        return lambda name="history": str(tmp_path / "reports" / f"{name}.sqlite")
    url = request.getfixturevalue("libpq_env")
    tag = uuid.uuid4().hex[:8]
    return lambda name="history": f"{url}#h_{tag}_{name}"


def open_history(where: str) -> History:
    """``History`` at a location ``store`` gave (``URL#schema`` for PostgreSQL)."""
    location, _, schema = where.partition("#")
    return History(location, schema=schema or None)


@pytest.fixture
def hist(store: Callable[[str], str]) -> History:
    return open_history(store("history"))


def test_three_nights_of_changing_findings(hist: History) -> None:
    first = hist.record(findings(GAP, UNSTAFFED, LANE), as_of=D1, config_hash="c1", fingerprints={"grids": "a1"})
    assert first.crs == CRS
    assert set(LIFECYCLE_COLUMNS) <= set(first.columns)
    assert set(first["status"]) == {"new"}
    gap_id = by_kind(first)["area_gap"]["finding_id"]
    f1 = by_kind(first)
    assert f1["area_gap"]["deadline"] == D1 + dt.timedelta(days=7)
    assert f1["road_uncovered"]["deadline"] == D1 + dt.timedelta(days=15)

    # night 2: the gap is fixed, G2 still has no chief (past its 7 days), an overlap appears
    second = by_kind(hist.record(findings(UNSTAFFED, LANE, OVERLAP), as_of=D2, config_hash="c1"))
    assert second["area_gap"]["status"] == "resolved"
    assert second["area_gap"]["resolved_on"] == D2
    assert second["area_gap"]["last_seen"] == D1
    assert second["area_gap"]["geometry"].equals_exact(GAP["geometry"], 1e-6)  # from the stored WKT
    assert second["grid_unstaffed"]["status"] == "overdue"
    assert second["grid_unstaffed"]["days_overdue"] == 2
    assert second["road_uncovered"]["status"] == "persisting"
    assert second["road_uncovered"]["first_seen"] == D1
    assert second["area_overlap"]["status"] == "new"

    # night 3: G2 is staffed, the gap breaks again (反弹)
    third = by_kind(hist.record(findings(GAP, LANE, OVERLAP), as_of=D3))
    assert third["grid_unstaffed"]["status"] == "resolved"
    assert third["area_gap"]["status"] == "reopened"
    assert third["area_gap"]["finding_id"] == gap_id
    assert third["area_gap"]["first_seen"] == D1
    assert third["area_gap"]["times_reopened"] == 1
    assert third["area_gap"]["deadline"] == D3 + dt.timedelta(days=7)  # a new stretch, a new deadline
    assert third["area_overlap"]["status"] == "persisting"
    assert third["area_overlap"]["first_seen"] == D2

    # night 4: the lane becomes a veto item: the tighter deadline counts from first_seen
    fourth = by_kind(hist.record(findings(GAP, dict(LANE, severity="veto"), OVERLAP), as_of=D4))
    lane = fourth["road_uncovered"]
    assert lane["severity"] == "veto"
    assert lane["deadline"] == D1 + dt.timedelta(days=3)
    assert lane["status"] == "overdue"
    assert lane["days_overdue"] == (D4 - D1).days - 3
    assert fourth["area_gap"]["status"] == "overdue"  # reopened on D3, 7 days for high
    assert "grid_unstaffed" not in fourth  # resolved rows are listed once, then closed

    runs = hist.runs()
    assert list(runs["as_of"]) == [D1, D2, D3, D4]
    assert list(runs["open"]) == [3, 3, 3, 3]
    assert list(runs["resolved"]) == [0, 1, 1, 0]
    assert runs["fingerprints"].iloc[0] == {"grids": "a1"}
    counts = hist.open_counts()
    assert list(counts["veto"]) == [0, 0, 0, 1]
    assert list(counts["overdue"]) == [0, 1, 0, 2]
    assert hist.previous_run(D3).as_of == D2
    assert hist.previous_run(D1) is None
    assert hist.verify() == []


def test_snapshot_rebuilds_a_past_run(hist: History) -> None:
    hist.record(findings(GAP, UNSTAFFED, LANE), as_of=D1)
    live = hist.record(findings(UNSTAFFED, dict(LANE, severity="high")), as_of=D2)
    hist.record(findings(LANE), as_of=D3)
    snap = hist.snapshot(D2)
    assert snap.crs == CRS
    cols = ["finding_id", "severity", *LIFECYCLE_COLUMNS]
    pd.testing.assert_frame_equal(
        pd.DataFrame(snap[cols]).sort_values("finding_id").reset_index(drop=True),
        pd.DataFrame(live[cols]).sort_values("finding_id").reset_index(drop=True),
    )
    assert all(a.equals_exact(b, 1e-6) for a, b in zip(snap.sort_values("finding_id").geometry,
                                                         live.sort_values("finding_id").geometry, strict=True))


def test_recording_a_date_again_replaces_that_run(hist: History, store: Callable[[str], str]) -> None:
    hist.record(findings(GAP, UNSTAFFED), as_of=D1)
    hist.record(findings(GAP, OVERLAP, LANE), as_of=D2)  # a mistaken run ...
    again = hist.record(findings(UNSTAFFED), as_of=D2, config_hash="fixed")  # ... run again the same day
    fresh = open_history(store("fresh"))
    fresh.record(findings(GAP, UNSTAFFED), as_of=D1)
    expected = fresh.record(findings(UNSTAFFED), as_of=D2, config_hash="fixed")
    cols = ["finding_id", "status", "first_seen", "deadline", "resolved_on", "times_reopened"]
    pd.testing.assert_frame_equal(pd.DataFrame(again[cols]), pd.DataFrame(expected[cols]))
    assert set(again["status"]) == {"overdue", "resolved"}
    runs = hist.runs()
    assert len(runs) == 2
    assert runs["config_hash"].iloc[-1] == "fixed"
    # the overlap and lane seen only in the replaced run are forgotten
    kinds = {k for (k,) in history_oracle.raw_sql(hist, "SELECT kind FROM findings")}
    assert kinds == {"area_gap", "grid_unstaffed"}
    assert hist.verify() == []


def test_replacing_a_run_that_reopened_a_finding(hist: History) -> None:
    hist.record(findings(GAP, LANE), as_of=D1)
    hist.record(findings(LANE), as_of=D2)
    assert by_kind(hist.record(findings(GAP, LANE), as_of=D3))["area_gap"]["status"] == "reopened"
    again = by_kind(hist.record(findings(LANE), as_of=D3))  # the gap was a mistake that night
    assert "area_gap" not in again  # resolved on D2 already: not listed again
    (row,) = history_oracle.raw_sql(hist, "SELECT status, resolved_on, times_reopened, last_seen FROM findings "
                           "WHERE kind = 'area_gap'")
    assert row == ("resolved", D2.isoformat(), 0, D1.isoformat())
    assert hist.verify() == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_match_a_full_replay(store: Callable[[str], str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    hist = open_history(store("h"))
    pool = [{"kind": "area_gap", "severity": "low", "message": f"g{i}", "key": f"g{i}",
             "geometry": _box(30 * i, 0, 30 * i + 5, 5)} for i in range(25)]
    days = sorted({dt.date(2024, 7, 1) + dt.timedelta(days=int(d)) for d in rng.choice(60, 12, replace=False)})
    recorded: set[dt.date] = set()
    ops: list[str] = []
    for step in range(16):
        keep = [dict(r, severity=str(rng.choice(["veto", "high", "medium", "low"], p=[0.1, 0.2, 0.3, 0.4])))
                for r in pool if rng.random() < 0.6]
        later = [d for d in days if not recorded or d > max(recorded)]
        earlier = [d for d in days if recorded and d < max(recorded) and d not in recorded]
        op = rng.choice(["next", "next", "replace", "insert"])
        if op == "replace" and recorded:
            day = sorted(recorded)[int(rng.integers(len(recorded)))]
        elif op == "insert" and earlier:
            day = earlier[int(rng.integers(len(earlier)))]
        elif later:
            day = later[int(rng.integers(min(3, len(later))))]  # sometimes skip a date, to insert it later
        else:
            break
        force = bool(recorded) and day < max(recorded)
        ops.append("insert" if force and day not in recorded else "replace" if day in recorded else "next")
        recorded.add(day)
        life = hist.record(findings(*keep), as_of=day, force=force, deadlines={"low": int(rng.integers(1, 20))})
        assert set(life.loc[life["status"] != "resolved", "message"]) == {r["message"] for r in keep}
        assert hist.verify() == [], f"seed {seed} step {step} day {day}"
        assert history_oracle.check(hist) == [], f"seed {seed} step {step} day {day}"
    assert {"next", "replace", "insert"} <= set(ops)


def test_an_earlier_date_needs_force(hist: History) -> None:
    hist.record(findings(GAP), as_of=D1)
    hist.record(findings(GAP, LANE), as_of=D3)
    with pytest.raises(HistoryError, match="before the last recorded run"):
        hist.record(findings(UNSTAFFED), as_of=D2)
    assert len(hist.runs()) == 2
    inserted = by_kind(hist.record(findings(LANE), as_of=D2, force=True))
    assert inserted["area_gap"]["status"] == "resolved"
    assert inserted["road_uncovered"]["status"] == "new"
    # the later run is re-derived: the gap is now back again on D3, the lane persisting
    snap = by_kind(hist.snapshot(D3))
    assert snap["area_gap"]["status"] == "reopened"
    assert snap["road_uncovered"]["status"] == "persisting"
    assert snap["road_uncovered"]["first_seen"] == D2
    assert hist.verify() == []


def test_deadlines_configurable_and_validated(hist: History) -> None:
    life = hist.record(findings(GAP, LANE), as_of=D1, deadlines={"high": 1, "medium": 2})
    deadlines = dict(zip(life["kind"], life["deadline"], strict=True))
    assert deadlines == {"area_gap": D1 + dt.timedelta(days=1), "road_uncovered": D1 + dt.timedelta(days=2)}
    with pytest.raises(HistoryError, match="unknown severity"):
        hist.record(findings(GAP), as_of=D2, deadlines={"urgent": 1})
    with pytest.raises(HistoryError, match="whole number"):
        hist.record(findings(GAP), as_of=D2, deadlines={"high": -1})


def test_empty_run_resolves_everything_and_assessment_accepted(hist: History) -> None:
    class Assessment:
        def __init__(self, f: gpd.GeoDataFrame) -> None:
            self.findings = f
            self.totals = {"area_coverage": 0.99}

    hist.record(Assessment(findings(GAP, LANE)), as_of=D1)
    assert hist.runs()["totals"].iloc[0] == {"area_coverage": 0.99}
    life = hist.record(findings(), as_of=D2)
    assert set(life["status"]) == {"resolved"}
    assert len(life) == 2
    assert life.crs == CRS
    assert list(hist.open_counts()["open"]) == [2, 0]
    quiet = hist.record(findings(), as_of=D3)
    assert len(quiet) == 0
    assert set(LIFECYCLE_COLUMNS) <= set(quiet.columns)


def test_output_keeps_extra_columns_and_crs_of_input(hist: History) -> None:
    f = findings(GAP, LANE).assign(road_class=[None, "lane"])
    life = hist.record(f, as_of=D1)
    assert "road_class" in life.columns
    moved = hist.record(findings(LANE).to_crs(4326), as_of=D2)
    assert moved.crs.to_epsg() == 4326
    gap = moved[moved["kind"] == "area_gap"].geometry.iloc[0]
    assert abs(gap.centroid.x - 120.0) < 0.1  # resolved geometry reprojected from the stored CRS


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "history.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError, match="damaged or not a gisgrid history"):
        History(bad)


# --------------------------------------------------------------------------- processes
_CHILD_PRELUDE = textwrap.dedent(
    """
    import datetime as dt, sys, time
    import pandas as pd, shapely
    from gisgrid.findings import make_findings
    from gisgrid.history import History

    def open_history(where):
        location, _, schema = where.partition("#")
        return History(location, schema=schema or None)

    def findings(prefix, n, x0=500000.0, y0=3550000.0):
        rows = [{"kind": "area_gap", "severity": "high", "message": f"{prefix}{i}", "key": f"{prefix}{i}",
                 "geometry": shapely.box(x0 + 50 * i, y0, x0 + 50 * i + 20, y0 + 20)} for i in range(n)]
        df = pd.DataFrame(rows)
        return make_findings(df, crs="EPSG:4549", key=df["key"])
    """
)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_two_concurrent_writers_keep_the_database_consistent(tmp_path: Path, store: Callable[[str], str]) -> None:
    db = store("history")
    script = tmp_path / "writer.py"
    script.write_text(_CHILD_PRELUDE + textwrap.dedent(
        """
        db, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
        hist = open_history(db)
        while not (sys.argv[4] and __import__("os").path.exists(sys.argv[4])):
            time.sleep(0.01)
        for day in range(1, 7):
            hist.record(findings(prefix, n + day % 3), as_of=dt.date(2024, 6, day), force=True,
                        config_hash=prefix)
        print("done", prefix)
        """
    ), encoding="utf-8")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), db, p, str(n), str(go)], env=_child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p, n in (("a", 5), ("b", 9))]
    go.write_text("go")
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("done")
    hist = open_history(db)
    assert hist.verify() == []
    runs = hist.runs()
    assert list(runs["as_of"]) == [dt.date(2024, 6, d) for d in range(1, 7)]
    for _, run in runs.iterrows():
        snap = hist.snapshot(run["as_of"])
        present = snap[snap["status"] != "resolved"]
        prefix = run["config_hash"]
        n = {"a": 5, "b": 9}[prefix] + run["as_of"].day % 3
        assert sorted(present["message"]) == sorted(f"{prefix}{i}" for i in range(n))


def test_a_killed_run_leaves_history_as_it_was(tmp_path: Path, store: Callable[[str], str]) -> None:
    db = store("history")
    hist = open_history(db)
    hist.record(findings(GAP, UNSTAFFED), as_of=D1)
    before_runs = hist.runs()
    before = hist.snapshot(D1)
    script = tmp_path / "killed.py"
    script.write_text(_CHILD_PRELUDE + textwrap.dedent(
        """
        def stall(self, conn):
            # everything of the run is written inside the open transaction; now die before COMMIT
            n = conn.execute("SELECT COUNT(*) FROM observations WHERE as_of = '2024-05-10'").fetchone()[0]
            print("written", n, flush=True)
            time.sleep(120)

        History._commit = stall
        open_history(sys.argv[1]).record(findings("k", 4), as_of=dt.date(2024, 5, 10))
        """
    ), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), db], env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("written"), proc.stderr.read() if proc.poll() is not None else line
        assert int(line.split()[1]) > 0
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = open_history(db)
    pd.testing.assert_frame_equal(after.runs().drop(columns=["created"]), before_runs.drop(columns=["created"]))
    snap = after.snapshot(D1)
    pd.testing.assert_frame_equal(pd.DataFrame(snap.drop(columns="geometry")),
                                  pd.DataFrame(before.drop(columns="geometry")))
    assert after.verify() == []
    # the lock died with the process: the next night records normally
    life = after.record(findings(UNSTAFFED), as_of=D2)
    assert set(life["status"]) == {"overdue", "resolved"}


def test_verify_finds_a_tampered_history(hist: History) -> None:
    hist.record(findings(GAP, LANE), as_of=D1)
    hist.record(findings(GAP), as_of=D2)
    assert hist.verify() == []
    assert history_oracle.check(hist) == []
    history_oracle.raw_sql(hist, "UPDATE observations SET deadline = '2099-01-01' WHERE status != 'resolved'")
    history_oracle.raw_sql(hist, "UPDATE findings SET times_reopened = 3")
    problems = hist.verify()
    assert any("observations differ" in p for p in problems)
    assert any("findings state differs" in p for p in problems)
    assert len(history_oracle.check(hist)) == 2


@pytest.mark.parametrize("undo", [D2, D3])
def test_undo_removes_a_run_as_if_it_had_never_been(store: Callable[[str], str], undo: dt.date) -> None:
    nights = {D1: (GAP, LANE), D2: (GAP,), D3: (GAP, LANE)}
    hist = open_history(store("h"))
    for day, found in nights.items():
        hist.record(findings(*found), as_of=day)
    clean = open_history(store("clean"))  # the same nights without the mistaken one
    for day, found in nights.items():
        if day != undo:
            clean.record(findings(*found), as_of=day)
    removed = hist.undo(undo)
    assert removed.as_of == undo
    assert list(hist.runs()["as_of"]) == list(clean.runs()["as_of"])
    cols = ["finding_id", "status", "first_seen", "opened_on", "deadline", "times_reopened"]
    last = max(d for d in nights if d != undo)
    assert hist.snapshot(last)[cols].sort_values("finding_id").reset_index(drop=True).equals(
        clean.snapshot(last)[cols].sort_values("finding_id").reset_index(drop=True))
    assert hist.verify() == []
    assert history_oracle.check(hist) == []
    with pytest.raises(HistoryError, match="no run is recorded"):
        hist.undo(undo)
