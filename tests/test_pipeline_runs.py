"""Scheduled runs as cron makes them: repeated dates, two at once, one killed halfway."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gisgrid.history import History

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "gisgrid", "run", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(*args, cwd):
    p = start(*args, cwd=cwd)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def stray(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".gisgrid.lock")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    code, _, err = run("--help", cwd=d)
    assert code == 0, err
    res = subprocess.run([sys.executable, "-m", "gisgrid", "demo", "--out", str(d)], env=ENV, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    return d / "gisgrid.toml"


@pytest.mark.slow
def test_same_date_twice_replaces_the_run(config, tmp_path):
    for _ in range(2):
        code, _, err = run(config, "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps", cwd=tmp_path)
        assert code == 1, err
    runs = History(tmp_path / "reports" / "history.sqlite").runs()
    assert len(runs) == 1
    findings = pd.read_csv(tmp_path / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    assert set(findings["status"]) == {"new"}
    assert stray(tmp_path / "reports") == []


@pytest.mark.slow
def test_two_runs_at_once_do_not_corrupt_anything(config, tmp_path):
    procs = [start(config, "--out", tmp_path, "--as-of", "2026-11-02", "--no-maps", cwd=tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], results
    runs = History(tmp_path / "reports" / "history.sqlite").runs()
    assert len(runs) == 1
    folder = tmp_path / "reports" / "2026-11-02"
    findings = pd.read_csv(folder / "findings.csv", encoding="utf-8-sig")
    assert len(findings) > 0
    assert (folder / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert stray(tmp_path / "reports") == []


#: The stages of ``gisgrid run``, in order (``GISGRID_FAULT=pause:<stage>`` stops a run at the start of one).
STAGES = ("load", "analyse", "history", "maps", "report", "cleaned grids", "done")


def start_paused(stage, config, out, tmp, *args):
    """Start ``gisgrid run`` that pauses at the start of ``stage`` (in its own process group)."""
    marker, log = tmp / f"paused-{stage}.txt", tmp / f"run-{stage}.log"
    env = {**ENV, "GISGRID_FAULT": f"pause:{stage}", "GISGRID_PAUSE_FILE": str(marker)}
    with log.open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "gisgrid", "run", str(config), "--out", str(out), *args],
                                cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def kill_when_paused(procs, tmp):
    """Wait until each ``{stage: process}`` has written its pause marker, then SIGKILL them all."""
    try:
        for stage, p in procs.items():
            marker, log = tmp / f"paused-{stage}.txt", tmp / f"run-{stage}.log"
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert p.poll() is None, f"the run ended (exit {p.returncode}) before {stage!r}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the run did not reach {stage!r} in 300 s:\n{log.read_text()}"
                time.sleep(0.05)
            assert marker.read_text().splitlines() == [stage, str(p.pid)]
            assert p.poll() is None, f"the run did not stay paused at {stage!r}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for stage, p in procs.items():
        assert p.wait(timeout=60) == -signal.SIGKILL, stage


def files(folder: Path) -> dict[str, bytes]:
    return {str(q.relative_to(folder)): q.read_bytes() for q in sorted(folder.rglob("*")) if q.is_file()}


def history_tables(db: Path, as_of: str = "9999") -> dict[str, list]:
    """The three tables of the run history (see gisgrid.history) up to ``as_of``; ``created`` apart."""
    with sqlite3.connect(db) as conn:
        return {
            "runs": conn.execute("SELECT as_of, config_hash, fingerprints, counts, totals, deadlines, crs FROM runs "
                                 "WHERE as_of <= ? ORDER BY as_of", (as_of,)).fetchall(),
            "created": conn.execute("SELECT as_of, created FROM runs WHERE as_of <= ? ORDER BY as_of",
                                    (as_of,)).fetchall(),
            "observations": conn.execute("SELECT * FROM observations WHERE as_of <= ? ORDER BY as_of, finding_id",
                                         (as_of,)).fetchall(),
            "findings": conn.execute("SELECT * FROM findings ORDER BY finding_id").fetchall(),
        }


@pytest.mark.slow
def test_killed_run_leaves_the_last_good_report(config, tmp_path):
    # The demo config with the command-center map only: every stage of a run, maps included, but quick.
    small = config.with_name("kill.toml")
    small.write_text(config.read_text(encoding="utf-8") + "\n[maps]\nper_owner = false\nper_village = false\n",
                     encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(small, "--out", out, "--as-of", "2026-11-01", "--no-maps", cwd=out)
    assert code == 1, err
    reports = out / "reports"
    folder = reports / "2026-11-01"
    db = reports / "history.sqlite"
    before = files(folder)
    assert {"report.html", "findings.csv", "summary.json", "cleaned_grids.gpkg"} <= set(before)
    history_before = history_tables(db)
    assert len(history_before["runs"]) == 1
    # Re-runs of the same date, killed (SIGKILL: no clean-up code runs) at the start of each stage but the last;
    # the three that stop before writing anything run side by side.
    for group in (STAGES[:3], *((s,) for s in STAGES[3:-1])):
        kill_when_paused({s: start_paused(s, small, out, tmp_path, "--as-of", "2026-11-01") for s in group},
                         tmp_path)
        where = f"killed at {'/'.join(group)}"
        # the new report was at most being written in a staging folder: the last good one is untouched
        assert files(folder) == before, f"{where}: the last good report changed"
        history = History(db)
        assert history.verify() == [], where
        tables = history_tables(db)
        # a re-run of the same date with the same inputs records exactly the same run (only its time differs)
        for table in ("runs", "observations", "findings"):
            assert tables[table] == history_before[table], f"{where}: {table} changed"
        if group[-1] == "history":
            assert tables["created"] == history_before["created"], f"{where}: the history was written"
        if group == ("cleaned grids",):
            assert stray(reports), "a run killed while writing its report leaves its staging folder behind"
    # The next run clears what the killed ones left behind; killed once it is done, its report is whole.
    kill_when_paused({"done": start_paused("done", small, out, tmp_path, "--as-of", "2026-11-03", "--no-maps")},
                     tmp_path)
    assert stray(reports) == []
    assert files(folder) == before
    new = files(reports / "2026-11-03")
    assert set(new) == set(before)
    assert all(new.values()), "an empty file in the new report"
    assert new["report.html"].rstrip().endswith(b"</html>")
    assert len(pd.read_csv(reports / "2026-11-03" / "findings.csv", encoding="utf-8-sig")) == len(
        pd.read_csv(folder / "findings.csv", encoding="utf-8-sig"))
    history = History(db)
    assert [d.isoformat() for d in history.runs()["as_of"]] == ["2026-11-01", "2026-11-03"]
    assert history.verify() == []
    after = history_tables(db, "2026-11-01")
    assert (after["runs"], after["observations"]) == (history_before["runs"], history_before["observations"])
