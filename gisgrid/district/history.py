"""The district history: each district run's town scores, one SQLite transaction per run.

It sits beside the town histories (``reports/district.sqlite`` of the district's output folder; each town's
own ``towns/<id>/reports/history.sqlite`` keeps its findings' lifecycle). A run is recorded only once its
report is published, in one transaction, so the history never holds half a run; SQLite's own locking (with
a wait) keeps two concurrent writers apart. Recording a date again replaces that date's run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

__all__ = ["DistrictHistory"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS district_runs (
    as_of TEXT PRIMARY KEY, recorded_at TEXT NOT NULL, towns INTEGER NOT NULL, failed INTEGER NOT NULL,
    findings INTEGER NOT NULL, exit_code INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS district_scores (
    as_of TEXT NOT NULL REFERENCES district_runs(as_of) ON DELETE CASCADE, town TEXT NOT NULL,
    name TEXT, status TEXT NOT NULL, score REAL, rank INTEGER, flag TEXT, PRIMARY KEY (as_of, town));
"""


class DistrictHistory:
    """The district's runs and town scores in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    def record(self, as_of: dt.date, towns: pd.DataFrame, *, findings: int, exit_code: int) -> None:
        """Record one run: ``towns`` has ``town``, ``name``, ``status``, ``score``, ``rank``, ``flag``."""
        rows = [(as_of.isoformat(), str(r["town"]), r.get("name"), str(r["status"]),
                 None if pd.isna(r.get("score")) else float(r["score"]),
                 None if pd.isna(r.get("rank")) else int(r["rank"]), r.get("flag") or "")
                for r in towns.to_dict("records")]
        failed = int((towns["status"] != "ok").sum())
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # one writer at a time; the others wait (timeout above)
            try:
                con.execute("DELETE FROM district_runs WHERE as_of = ?", (as_of.isoformat(),))
                con.execute("INSERT INTO district_runs VALUES (?, ?, ?, ?, ?, ?)",
                            (as_of.isoformat(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             len(towns), failed, findings, exit_code))
                con.executemany("INSERT INTO district_scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def runs(self) -> pd.DataFrame:
        """Every recorded run, oldest first."""
        if not self.path.exists():
            return pd.DataFrame(columns=["as_of", "recorded_at", "towns", "failed", "findings", "exit_code"])
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM district_runs ORDER BY as_of", con)

    def scores(self, *, before: dt.date | None = None, last: int = 6) -> pd.DataFrame:
        """The town scores of the ``last`` runs (before ``before`` when given), oldest first."""
        if not self.path.exists():
            return pd.DataFrame(columns=["as_of", "town", "name", "status", "score", "rank", "flag"])
        with self._connect() as con:
            days = [r[0] for r in con.execute(
                "SELECT as_of FROM district_runs WHERE as_of < ? ORDER BY as_of DESC LIMIT ?",
                ((before or dt.date.max).isoformat(), last))]
            if not days:
                return pd.DataFrame(columns=["as_of", "town", "name", "status", "score", "rank", "flag"])
            marks = ",".join("?" * len(days))
            return pd.read_sql_query(f"SELECT * FROM district_scores WHERE as_of IN ({marks}) ORDER BY as_of, town",
                                     con, params=days)
