"""Run-to-run lifecycle of findings: new, persisting, overdue, resolved, back again (反弹).

:class:`History` keeps one SQLite database (by default ``reports/history.sqlite``), or one
schema of a PostgreSQL database (``[history] url``: a district whose towns run on different
machines), with three tables:

``runs``
    One row per run date: ``as_of`` (``YYYY-MM-DD``, primary key),
    ``config_hash``, ``fingerprints`` (JSON: input file digests), ``counts``
    (JSON: findings by status, and open findings by severity and kind),
    ``totals`` (JSON: the assessment's headline numbers, when given),
    ``deadlines`` (JSON: days allowed per severity for this run), ``crs`` and
    ``created`` (UTC timestamp).
``observations``
    One row per run and finding seen that run, plus one row (status
    ``resolved``) for each finding open at the run before and gone at this
    one: ``as_of``, ``finding_id``, ``severity``, ``status``, ``opened_on``,
    ``deadline``, ``times_reopened``.
``findings``
    One row per finding ever seen: its last known attributes (``kind``,
    ``severity``, ``village_id``, ``grid_id``, ``owner``, ``measure``, ``unit``,
    ``rule``, ``message``, ``geometry`` as WKT with its ``crs``) and its
    lifecycle as of the latest run (``first_seen``, ``last_seen``,
    ``opened_on``, ``deadline``, ``status``, ``resolved_on``, ``times_reopened``).

Lifecycle rules
---------------
Runs are ordered by date; "consecutive" means consecutive *runs*, not days.

* ``new``: seen for the first time.
* ``persisting``: seen at the previous run too, deadline not yet passed.
* ``overdue``: seen at the previous run too and the run date is after the deadline.
* ``resolved``: seen at the previous run, gone now; listed once (at this run),
  closed after.
* ``reopened``: seen before, resolved since, back now (反弹); counted in
  ``times_reopened``.

The deadline is ``opened_on`` (the first day of the current stretch of
sightings: ``first_seen``, or the day it came back) plus the days allowed for
its severity (``settings.deadline_days``, or the ``deadlines`` given to
:meth:`History.record`). When the severity rises, the tighter deadline counts
from the same day; a later fall in severity never loosens it.

Every observation is kept, so the lifecycle is recomputed from the ordered
observations of the findings a run touches: recording a date again replaces
that run exactly, and a run forced in before the last one re-derives the
statuses of the runs after it.

Concurrency and crashes
-----------------------
SQLite: the database is in WAL mode with a busy timeout; each :meth:`History.record`
is one ``BEGIN IMMEDIATE`` transaction, so two runs at once are serialised
and a run killed half-way leaves the history as it was. PostgreSQL: each
:meth:`History.record` is one transaction holding an advisory lock of its
schema (two runs wait for each other, up to the timeout); a connection lost
half-way rolls it back. The lifecycle code is the same for both: only the
connection, the transaction and the schema set-up differ (``_SqliteStore``,
``_PgStore``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid import settings
from gisgrid._errors import HistoryError, InputError
from gisgrid.findings import (
    COLUMNS,
    LIFECYCLE_COLUMNS,
    OPEN_STATUSES,
    SEVERITY_RANK,
    as_date,
    sort_findings,
    validate_findings,
)
from gisgrid.policy import deadline_days
from gisgrid.vocab import STATUSES, as_shown, is_missing

__all__ = ["LIFECYCLE_COLUMNS", "OPEN_STATUSES", "STATUSES", "History", "Run", "connect"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 60.0
_ATTRS = ("kind", "severity", "village_id", "grid_id", "owner", "measure", "unit", "rule", "message")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    as_of        TEXT PRIMARY KEY,
    config_hash  TEXT NOT NULL DEFAULT '',
    fingerprints TEXT NOT NULL DEFAULT '{}',
    counts       TEXT NOT NULL DEFAULT '{}',
    totals       TEXT NOT NULL DEFAULT '{}',
    deadlines    TEXT NOT NULL DEFAULT '{}',
    crs          TEXT,
    created      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    finding_id     TEXT PRIMARY KEY,
    kind           TEXT,
    severity       TEXT,
    village_id     TEXT,
    grid_id        TEXT,
    owner          TEXT,
    measure        REAL,
    unit           TEXT,
    rule           TEXT,
    message        TEXT,
    geometry       TEXT,
    crs            TEXT,
    first_seen     TEXT,
    last_seen      TEXT,
    opened_on      TEXT,
    deadline       TEXT,
    status         TEXT,
    resolved_on    TEXT,
    times_reopened INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS observations (
    as_of          TEXT NOT NULL REFERENCES runs(as_of) ON DELETE CASCADE,
    finding_id     TEXT NOT NULL,
    severity       TEXT,
    status         TEXT NOT NULL,
    opened_on      TEXT,
    deadline       TEXT,
    times_reopened INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (as_of, finding_id)
);
CREATE INDEX IF NOT EXISTS observations_finding ON observations (finding_id, as_of);
CREATE INDEX IF NOT EXISTS findings_status ON findings (status);
"""
# PostgreSQL's REAL is 4 bytes: a measure keeps its digits as DOUBLE PRECISION (SQLite's REAL is 8 bytes)
_PG_SCHEMA = _SCHEMA.replace(" REAL,", " DOUBLE PRECISION,") + """;
CREATE TABLE IF NOT EXISTS gisgrid_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


@dataclass(frozen=True)
class Run:
    """One recorded run.

    Attributes
    ----------
    as_of : date
    config_hash : str
    fingerprints : dict
        Input file digests by source name.
    counts : dict
        ``open`` (int), ``status``, ``severity`` and ``kind`` (dicts of counts;
        severity and kind count open findings only).
    totals : dict
        Headline numbers of the assessment (area_coverage, …) when recorded.
    created : str
        UTC timestamp of the (last) recording.
    """

    as_of: dt.date
    config_hash: str = ""
    fingerprints: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    created: str = ""


def _iso(value: dt.date | str) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(str(value)).isoformat()


def _id_cell(text: Any) -> Any:
    """A stored id cell: one id as text, or a JSON list of ids (written for a finding about several)."""
    if isinstance(text, str) and text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return text
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return tuple(items)
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value or {}, ensure_ascii=False, sort_keys=True, default=_json_default)


def _crs_text(crs: Any) -> str | None:
    if crs is None:
        return None
    crs = pyproj.CRS.from_user_input(crs)
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


# --------------------------------------------------------------------------- lifecycle replay
def _replay(obs: pd.DataFrame, run_dates: list[str], run_days: list[dict[str, int]]) -> tuple[pd.DataFrame,
                                                                                             pd.DataFrame]:
    """Every run again, from nothing, with the one lifecycle step (:func:`_step`) that :meth:`History.record` uses.

    Parameters
    ----------
    obs
        ``finding_id``, ``as_of``, ``severity``: one row per run a finding was seen.
    run_dates
        Every run date (ISO text), ascending.
    run_days
        Days allowed per severity at each run (same order as ``run_dates``).

    Returns
    -------
    rows : DataFrame
        The observations each run would have written (``resolved`` rows included).
    state : DataFrame
        One row per finding, its lifecycle after the last run.
    """
    rows, state = _replay_state(obs, run_dates, run_days)
    state = state[state["first_seen"].notna()].reset_index().rename(columns={"index": "finding_id"})
    return rows, state[["finding_id", "first_seen", "last_seen", "opened_on", "deadline", "status", "resolved_on",
                        "times_reopened"]]


def _replay_state(obs: pd.DataFrame, run_dates: list[str], run_days: list[dict[str, int]]
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`_replay` with the lifecycle state as :func:`_step` keeps it (index ``finding_id``)."""
    state = _state_frame(pd.DataFrame({"finding_id": pd.Series([], dtype=object)}))
    parts = []
    for day, allowed in zip(run_dates, run_days, strict=True):
        rows, state = _step(state, day, obs.loc[obs["as_of"] == day, ["finding_id", "severity"]], allowed)
        parts.append(rows)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["as_of", "finding_id", "severity", "status", "first_seen", "last_seen", "opened_on", "deadline",
                 "times_reopened", "present"])
    return rows, state


_STATE_COLUMNS = ("present", "severity", "first_seen", "last_seen", "opened_on", "deadline", "status",
                  "resolved_on", "times_reopened")


def _state_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Normalise a lifecycle state: index ``finding_id``, dates as ISO text or None."""
    out = pd.DataFrame(df).set_index("finding_id")
    for col in _STATE_COLUMNS:
        if col not in out.columns:
            out[col] = None
    out = out[list(_STATE_COLUMNS)].astype(object)
    out = out.where(out.notna(), None)
    out["present"] = out["present"].map(bool)
    out["times_reopened"] = out["times_reopened"].map(lambda v: 0 if v is None else int(v))
    return out


def _dates(values: Any) -> np.ndarray:
    return pd.to_datetime(pd.Series(values, dtype=object), format="%Y-%m-%d", errors="coerce").to_numpy(
        dtype="datetime64[D]")


def _texts(values: np.ndarray) -> np.ndarray:
    out = np.datetime_as_string(values, unit="D").astype(object)
    out[np.isnat(values)] = None
    return out


def _step(state: pd.DataFrame, day: str, seen: pd.DataFrame, days: Mapping[str, int]) -> tuple[pd.DataFrame,
                                                                                            pd.DataFrame]:
    """Advance the lifecycle by one run.

    Parameters
    ----------
    state
        Lifecycle before the run (see :func:`_state_frame`); ``present`` marks
        the findings seen at the previous run.
    day
        The run date (ISO text).
    seen
        ``finding_id``, ``severity`` of the findings seen at this run.
    days
        Days allowed per severity at this run.

    Returns
    -------
    rows : DataFrame
        This run's observations: the findings seen, and the ``resolved`` ones.
    state : DataFrame
        Lifecycle after the run.
    """
    seen = seen.drop_duplicates("finding_id").set_index("finding_id")
    st = state.reindex(state.index.union(seen.index, sort=False))
    st["present"] = st["present"].map(lambda v: bool(v) if v is not None and v == v else False)
    st["times_reopened"] = st["times_reopened"].map(lambda v: 0 if v is None or v != v else int(v))
    st = st.astype(object).where(st.notna(), None)
    now = np.datetime64(day, "D")
    is_seen = st.index.isin(seen.index)
    before = st["present"].to_numpy(dtype=bool)
    ever = st["first_seen"].notna().to_numpy()
    sev = seen["severity"].reindex(st.index)
    default = max(days.values()) if days else 30
    allowed = sev.map(lambda s: days.get(s, default) if s is not None else default).to_numpy(dtype=np.int64)
    allowed = allowed.astype("timedelta64[D]")
    opened_prev, deadline_prev = _dates(st["opened_on"]), _dates(st["deadline"])
    cont = is_seen & before
    reopened = is_seen & ~before & ever
    new = is_seen & ~before & ~ever
    gone = ~is_seen & before
    opened = np.where(cont, opened_prev, now)
    tight = np.where(cont, opened_prev + allowed, now + allowed)
    deadline = np.where(cont, np.minimum(deadline_prev, tight), tight)
    status = np.select([cont & (now > deadline), cont, reopened, new],
                       ["overdue", "persisting", "reopened", "new"], default="").astype(object)
    times = st["times_reopened"].to_numpy(dtype=np.int64) + reopened
    first = np.where(new, day, st["first_seen"].to_numpy(dtype=object))
    after = st.copy()
    after.loc[is_seen, "present"] = True
    after.loc[is_seen, "severity"] = sev[is_seen]
    after.loc[is_seen, "first_seen"] = first[is_seen]
    after.loc[is_seen, "last_seen"] = day
    after.loc[is_seen, "opened_on"] = _texts(opened[is_seen])
    after.loc[is_seen, "deadline"] = _texts(deadline[is_seen])
    after.loc[is_seen, "status"] = status[is_seen]
    after.loc[is_seen, "resolved_on"] = None
    after.loc[is_seen, "times_reopened"] = times[is_seen]
    after.loc[gone, "present"] = False
    after.loc[gone, "status"] = "resolved"
    after.loc[gone, "resolved_on"] = day
    rows = after[is_seen | gone].copy()
    rows.loc[gone[is_seen | gone], "last_seen"] = st.loc[gone, "last_seen"].to_numpy()
    rows.insert(0, "as_of", day)
    rows = rows.reset_index().rename(columns={"index": "finding_id"})
    cols = ["as_of", "finding_id", "severity", "status", "first_seen", "last_seen", "opened_on", "deadline",
            "times_reopened", "present"]
    return rows[cols], after


# --------------------------------------------------------------------------- the database
@contextlib.contextmanager
def connect(path: Path, *, timeout: float) -> Iterator[sqlite3.Connection]:
    """A connection to the history database (also the dispatch outbox's), every SQLite failure a HistoryError.

    The error says what happened: busy, a full disk, read-only (not damaged), or damaged.
    """
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        msg = f"the history database cannot be opened ({exc})."
        raise HistoryError(msg, path=path, fix="check the folder exists and is writable") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        yield conn
    except sqlite3.DatabaseError as exc:
        text = str(exc).lower()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            msg = f"the history database is busy: another run held it for more than {timeout:.0f} s."
            fix = "wait for the other run to finish and run again"
        elif "disk is full" in text or "disk i/o error" in text:
            # a write refused (a full disk, a file-size limit): SQLite rolled the transaction back
            msg = (f"the history database could not be written ({exc}): the disk holding {path.parent} is "
                   "full, a file-size limit was hit, or the disk failed. The run was rolled back: the history "
                   "is as it was, not damaged.")
            fix = "free space on that disk (or move [history] path to another) and run again"
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            # an intact history we may not write: never advise moving it away
            msg = f"the history database (or its folder) is read-only for this user ({exc}); it is not damaged."
            fix = "make the file and its folder writable for the user running gisgrid (the history is intact)"
        else:
            msg = f"the history database is damaged or not a gisgrid history ({exc})."
            fix = "move the file away (a new history starts) or restore it from a backup"
        raise HistoryError(msg, path=path, fix=fix) from None
    finally:
        conn.close()


def _frame(sql: str, conn: Any, params: Any = ()) -> pd.DataFrame:
    """A query's rows as a DataFrame (as ``pandas.read_sql_query`` makes them), on either backend."""
    cur = conn.execute(sql, params)
    columns = [d[0] for d in cur.description]
    return pd.DataFrame.from_records(cur.fetchall(), columns=columns, coerce_float=True)


class _SqliteStore:
    """The history in one SQLite file: WAL, a busy timeout, ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.name = path.name
        path.parent.mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return str(self.path)

    def error(self, msg: str, fix: str) -> HistoryError:
        return HistoryError(msg, path=self.path, fix=fix)

    def connect(self) -> contextlib.AbstractContextManager[Any]:
        return connect(self.path, timeout=self.timeout)

    def init_schema(self, conn: sqlite3.Connection, *, create: bool = True) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            logger.warning("history %s: journal mode is %s, not WAL", self.path, mode)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            msg = f"the history database has schema version {version}; this gisgrid knows {SCHEMA_VERSION}."
            raise self.error(msg, "upgrade gisgrid, or use another history file")
        if version == SCHEMA_VERSION:
            return
        with self.transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self, conn: sqlite3.Connection, *,
                    commit: Callable[[Any], None] | None = None) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            (commit or self.commit)(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def commit(conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def integrity(self, conn: sqlite3.Connection) -> list[str]:
        quick = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return [] if quick == "ok" else [f"integrity_check: {quick}"]


class _PgConnection:
    """The calls of :class:`sqlite3.Connection` the history makes, on a psycopg connection.

    The history's SQL is written once, with ``?`` marks (SQLite's); here they become psycopg's ``%s``.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = ()) -> Any:
        cur = self.raw.cursor()
        cur.execute(sql.replace("?", "%s"), tuple(params) if len(params) else None)
        return cur

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        cur = self.raw.cursor()
        if rows:
            cur.executemany(sql.replace("?", "%s"), rows)
        return cur


def default_schema(town: str | None) -> str:
    """The PostgreSQL schema of a town's history when ``[history] schema`` is not given."""
    name = " ".join(str(town or "").split())
    return f"gisgrid_history_{name}" if name else "gisgrid_history"


class _PgStore:
    """The history in one schema of a PostgreSQL database (``[history] url``, ``schema``).

    The tables are those of SQLite, in the schema (the connection's search path), plus ``gisgrid_meta``
    holding the schema version and the town whose history it is. Credentials come from libpq
    (``~/.pgpass``, a service file, ``PGPASSWORD``); no error shows a password.
    """

    def __init__(self, url: str, schema: str | None, timeout: float, town: str | None) -> None:
        from gisgrid.io import postgis

        self.url = postgis.check_url(url, where="[history] url")
        self.schema = schema or default_schema(town)
        self.timeout = timeout
        self.town = " ".join(str(town or "").split())
        self.name = History.describe_location(url, self.schema)
        if not self.schema.strip() or len(self.schema.encode()) > _MAX_IDENTIFIER_BYTES or "\x00" in self.schema:
            msg = (f"the history schema name {self.schema!r} is not a PostgreSQL name (1 to "
                   f"{_MAX_IDENTIFIER_BYTES} bytes).")
            raise HistoryError(msg, fix='set a shorter [history] schema, e.g. schema = "history_t01"')
        # two keys: creating the schema, and recording a run (readers never wait for a run)
        self._keys = tuple(zlib.crc32(f"gisgrid history {k} {self.schema}".encode()) for k in ("init", "record"))

    def __str__(self) -> str:
        return self.name

    def error(self, msg: str, fix: str) -> HistoryError:
        return HistoryError(f"the history in {self.name}: {msg}", fix=fix)

    @contextlib.contextmanager
    def connect(self) -> Iterator[_PgConnection]:
        import psycopg
        from psycopg import sql as pgsql

        from gisgrid.io import postgis

        try:
            with postgis.connect(self.url, where="[history]", read_only=False,
                                 application_name="gisgrid history") as raw:
                try:
                    raw.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.timeout * 1000)}ms",))
                    raw.execute("SELECT set_config('search_path', %s, false)",
                                (pgsql.Identifier(self.schema).as_string(raw),))
                    raw.commit()
                    yield _PgConnection(raw)
                except psycopg.Error as exc:
                    raise self._failure(exc) from None
        except InputError as exc:  # could not connect: the same words, as the history's error
            raise HistoryError(exc.what, fix=exc.fix) from None

    def _failure(self, exc: Exception) -> HistoryError:
        from psycopg import errors

        from gisgrid.io.postgis import safe_reason

        reason = safe_reason(exc)
        if isinstance(exc, errors.LockNotAvailable):
            msg = f"the history is busy: another run held it for more than {self.timeout:.0f} s."
            return self.error(msg, "wait for the other run to finish and run again")
        if isinstance(exc, errors.InsufficientPrivilege):
            return self._no_rights(reason)
        if isinstance(exc, errors.DiskFull):
            msg = f"the database server's disk is full ({reason}); the run was rolled back, the history is as it was."
            return self.error(msg, "free space on the database server and run again")
        msg = f"the database refused or failed ({reason}); the run was rolled back, the history is as it was."
        return self.error(msg, "check the server is up and the user's rights on the schema, and run again")

    def _no_rights(self, reason: str) -> HistoryError:
        msg = f"this user may not read or write it ({reason}); the history is as it was."
        return self.error(msg, f"grant the user USAGE and CREATE on schema {self.schema!r} and its tables, or "
                               "CREATE on the database for the first run")

    def init_schema(self, conn: _PgConnection, *, create: bool = True) -> None:
        usable = conn.execute("SELECT has_schema_privilege(oid, 'USAGE') FROM pg_catalog.pg_namespace "
                              "WHERE nspname = ?", (self.schema,)).fetchone()
        if usable is not None and not usable[0]:  # its tables would look missing: say why instead
            raise self._no_rights(f"no USAGE on schema {self.schema!r}")
        version, town = self._meta(conn)
        if version is None and not create:
            msg = "there is no run history here yet (no gisgrid history in that schema)."
            raise self.error(msg, "run gisgrid run first, or check [history] url and schema")
        if version is None:
            with self.transaction(conn, key=self._keys[0]):
                exists = conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?",
                                      (self.schema,)).fetchone()
                if not exists:
                    from psycopg import sql as pgsql

                    conn.raw.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(self.schema)))
                if self._meta(conn)[0] is None:  # not created meanwhile by another run
                    for statement in _PG_SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany("INSERT INTO gisgrid_meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                     [("schema_version", str(SCHEMA_VERSION)), ("town", self.town)])
            version, town = self._meta(conn)
        if version is not None and version > SCHEMA_VERSION:
            msg = f"it has schema version {version}; this gisgrid knows {SCHEMA_VERSION}."
            raise self.error(msg, "upgrade gisgrid, or set another [history] schema")
        if town and self.town and town != self.town:
            msg = f"it is the history of the town {town!r}, not of {self.town!r}."
            raise self.error(msg, "give each town its own [history] schema (by default each town name has its own)")
        conn.raw.commit()

    @staticmethod
    def _meta(conn: _PgConnection) -> tuple[int | None, str]:
        if conn.execute("SELECT to_regclass('gisgrid_meta')").fetchone()[0] is None:
            return None, ""
        meta = dict(conn.execute("SELECT key, value FROM gisgrid_meta").fetchall())
        version = meta.get("schema_version")
        return (int(version) if version is not None else None), str(meta.get("town") or "")

    @contextlib.contextmanager
    def transaction(self, conn: _PgConnection, *, key: int | None = None,
                    commit: Callable[[Any], None] | None = None) -> Iterator[_PgConnection]:
        conn.raw.commit()  # whatever was read before: the transaction starts here
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (self._keys[1] if key is None else key,))
            yield conn
            (commit or self.commit)(conn)
        except BaseException:
            conn.raw.rollback()
            raise

    @staticmethod
    def commit(conn: _PgConnection) -> None:
        conn.raw.commit()

    def integrity(self, conn: _PgConnection) -> list[str]:
        return []  # the server keeps its own pages whole; the replay below checks the contents


class History:
    """The run history of one town, in a SQLite database or a PostgreSQL schema.

    Parameters
    ----------
    path
        The database file (created with its folder when missing), usually
        ``reports/history.sqlite``; or a ``postgresql://`` URL (no password:
        libpq's ``~/.pgpass``, service file or ``PGPASSWORD``).
    timeout
        Seconds to wait for another run holding the database.
    schema
        PostgreSQL only: the schema holding this history (created on first
        use); default ``gisgrid_history_<town>``.
    town
        The town whose history it is: PostgreSQL refuses a schema holding
        another town's history.
    create
        Start a new history when there is none (``False``: refuse, for the
        commands that only read one).

    Examples
    --------
    >>> hist = History("reports/history.sqlite")                 # doctest: +SKIP
    >>> life = hist.record(assessment.findings, as_of=date.today())  # doctest: +SKIP
    >>> life["status"].value_counts()                            # doctest: +SKIP
    >>> hist = History("postgresql://gis.example/gis", schema="history_t01")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = _BUSY_TIMEOUT_S,
                 schema: str | None = None, town: str | None = None, create: bool = True) -> None:
        from gisgrid.io.postgis import is_database_url

        self.timeout = float(timeout)
        self._store: _SqliteStore | _PgStore
        if is_database_url(str(path)):
            self._store = _PgStore(str(path), schema, self.timeout, town)
            self.path: Path | None = None  # the SQLite file; None in PostgreSQL
            self.schema: str | None = self._store.schema  # the PostgreSQL schema; None in SQLite
        else:
            if not create and not Path(path).exists():  # nothing made, not even its folder
                msg = "there is no run history here yet."
                raise HistoryError(msg, path=path, fix="give the file gisgrid run wrote")
            self._store = _SqliteStore(Path(path), self.timeout)
            self.path, self.schema = self._store.path, None
        with self._connect() as conn:
            self._store.init_schema(conn, create=create)

    def __repr__(self) -> str:
        return f"History({str(self._store)!r})"

    @staticmethod
    def describe_location(url: str, schema: str) -> str:
        """A PostgreSQL history's place as shown to the user: database and schema, never a password."""
        from gisgrid.io.postgis import display_url

        return f"{display_url(url)} schema {schema}"

    @property
    def where(self) -> str:
        """Where the history is: its file, or its database and schema (never a password)."""
        return str(self._store)

    def _error(self, msg: str, fix: str) -> HistoryError:
        return self._store.error(msg, fix)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> contextlib.AbstractContextManager[Any]:
        return self._store.connect()

    def _transaction(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        return self._store.transaction(conn, commit=self._commit)

    def _commit(self, conn: Any) -> None:
        self._store.commit(conn)

    # ------------------------------------------------------------------ recording
    def record(
        self,
        findings: Any,
        *,
        as_of: dt.date,
        config_hash: str = "",
        fingerprints: Mapping[str, Any] | None = None,
        force: bool = False,
        deadlines: Mapping[str, Any] | None = None,
        totals: Mapping[str, Any] | None = None,
    ) -> gpd.GeoDataFrame:
        """Record today's findings and return them with their lifecycle.

        Parameters
        ----------
        findings
            A findings GeoDataFrame (finding schema, any metric CRS), or an
            assessment with ``.findings`` (and ``.totals``, recorded for the
            report's "change since the last run").
        as_of
            Date of the run. Recording a date again replaces that run.
        config_hash
            Digest of the configuration used.
        fingerprints
            Digests of the input files, by source name.
        force
            Allow a date before the last recorded run (the runs after it are
            re-derived).
        deadlines
            Days allowed per severity, overriding ``settings.deadline_days``
            for this run (e.g. ``{"veto": 1}``).
        totals
            Headline numbers to keep with the run (default the assessment's
            ``.totals`` when an assessment is given).

        Returns
        -------
        GeoDataFrame
            Today's findings plus those resolved since the previous run (their
            geometry from the stored WKT), in the input's CRS, with the columns
            of :data:`LIFECYCLE_COLUMNS` added (dates as ``datetime.date``).

        Raises
        ------
        HistoryError
            For a date before the last run without ``force``, or a database
            that is busy for longer than the timeout or damaged.
        """
        if hasattr(findings, "findings") and not isinstance(findings, pd.DataFrame):
            if totals is None:
                totals = getattr(findings, "totals", None)
            findings = findings.findings
        today = self._prepare(findings)
        day = _iso(as_of)
        days = deadline_days(deadlines)
        crs_text = _crs_text(today.crs)
        with self._connect() as conn, self._transaction(conn):
            dates = [r[0] for r in conn.execute("SELECT as_of FROM runs ORDER BY as_of")]
            if dates and day < dates[-1] and not force:
                msg = f"a run dated {day} is before the last recorded run ({dates[-1]})."
                raise self._error(msg, "use --force to insert it into the history, or give the right --as-of date")
            replacing = day in dates
            prev = max((d for d in dates if d < day), default=None)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            conn.execute(
                "INSERT INTO runs (as_of, config_hash, fingerprints, totals, deadlines, crs, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(as_of) DO UPDATE SET config_hash = excluded.config_hash, "
                "fingerprints = excluded.fingerprints, totals = excluded.totals, deadlines = excluded.deadlines, "
                "crs = excluded.crs, created = excluded.created",
                (day, config_hash or "", _dumps(fingerprints), _dumps(totals), _dumps(days), crs_text, now),
            )
            # every finding whose lifecycle this run can change: seen (or resolved) at the run
            # before or since (including those of a run being replaced), and today's
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS affected (finding_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM affected")
            conn.execute("INSERT INTO affected SELECT finding_id FROM observations WHERE as_of >= ? "
                         "ON CONFLICT DO NOTHING", (prev or day,))
            conn.executemany("INSERT INTO affected VALUES (?) ON CONFLICT DO NOTHING",
                             [(f,) for f in today["finding_id"]])
            if not dates or day > dates[-1]:
                state = self._state_from_table(conn, prev)  # the common case: the next night
            else:
                state = self._state_from_observations(conn, day, dates)
            later = [d for d in dates if d > day]
            present = [(day, pd.DataFrame({"finding_id": today["finding_id"], "severity": today["severity"]}), days)]
            schedule = dict(zip(*self._run_schedule(conn), strict=True))
            for run in later:
                present.append((run, _frame(
                    "SELECT finding_id, severity FROM observations WHERE as_of = ? AND status != 'resolved'",
                    conn, params=(run,)), schedule[run]))
            parts = []
            for run, seen, allowed in present:
                rows_run, state = _step(state, run, seen, allowed)
                parts.append(rows_run)
            rows = pd.concat(parts, ignore_index=True)
            conn.execute("DELETE FROM observations WHERE as_of >= ?", (day,))
            conn.executemany(
                "INSERT INTO observations (as_of, finding_id, severity, status, opened_on, deadline, times_reopened) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                list(rows[["as_of", "finding_id", "severity", "status", "opened_on", "deadline", "times_reopened"]]
                     .astype(object).itertuples(index=False, name=None)),
            )
            self._upsert_attributes(conn, today, day, crs_text)
            self._write_state(conn, state)
            self._drop_orphans(conn)
            self._update_counts(conn, start=day)
            out = self._lifecycle_frame(conn, rows[rows["as_of"] == day].drop(columns=["present"]), today)
        logger.info("history %s: %s run %s: %s", self._store.name, "replaced" if replacing else "recorded", day,
                    ", ".join(f"{k} {v}" for k, v in out["status"].value_counts().items()) or "no findings")
        return out

    @staticmethod
    def _prepare(findings: Any) -> gpd.GeoDataFrame:
        if not isinstance(findings, gpd.GeoDataFrame):
            if isinstance(findings, pd.DataFrame) and "geometry" in findings.columns:
                findings = gpd.GeoDataFrame(findings, geometry="geometry")
            else:
                msg = f"record() needs a findings GeoDataFrame or an assessment, not {type(findings).__name__}."
                raise HistoryError(msg, fix="pass assessment.findings")
        findings = validate_findings(findings, where="history.record", error=HistoryError)
        today = findings.drop(columns=[c for c in (*LIFECYCLE_COLUMNS, "as_of") if c in findings.columns])
        today["finding_id"] = today["finding_id"].astype(str)
        dup = today["finding_id"].duplicated()
        if dup.any():
            logger.warning("history: %d duplicate finding ids ignored (first kept): %s", int(dup.sum()),
                           ", ".join(today.loc[dup, "finding_id"].head(5)))
            today = today[~dup]
        return today.reset_index(drop=True)

    @staticmethod
    def _upsert_attributes(conn: Any, today: gpd.GeoDataFrame, day: str, crs_text: str | None) -> None:
        geoms = np.asarray(today.geometry.values, dtype=object) if len(today) else np.array([], dtype=object)
        wkt = shapely.to_wkt(geoms, rounding_precision=-1) if len(geoms) else []

        def clean(v: Any) -> Any:
            if is_missing(v):
                return None
            if isinstance(v, np.generic):
                return v.item()
            if isinstance(v, (list, tuple)):  # an id list: JSON text, read back as a tuple
                return json.dumps([str(x) for x in v], ensure_ascii=False)
            return v if isinstance(v, (int, float)) else str(v)

        columns = [[clean(v) for v in today[a].to_numpy(dtype=object)] for a in _ATTRS]
        data = [
            (fid, *(col[i] for col in columns), wkt[i], crs_text, day)
            for i, fid in enumerate(today["finding_id"])
        ]
        conn.executemany(
            "INSERT INTO findings (finding_id, kind, severity, village_id, grid_id, owner, measure, unit, rule, "
            "message, geometry, crs, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(finding_id) DO UPDATE SET kind = excluded.kind, severity = excluded.severity, "
            "village_id = excluded.village_id, grid_id = excluded.grid_id, owner = excluded.owner, "
            "measure = excluded.measure, unit = excluded.unit, rule = excluded.rule, message = excluded.message, "
            "geometry = excluded.geometry, crs = excluded.crs "
            "WHERE findings.last_seen IS NULL OR findings.last_seen <= excluded.last_seen",
            data,
        )

    def _run_schedule(self, conn: Any) -> tuple[list[str], list[dict[str, int]]]:
        dates, days = [], []
        for as_of, deadlines in conn.execute("SELECT as_of, deadlines FROM runs ORDER BY as_of"):
            dates.append(as_of)
            stored = json.loads(deadlines or "{}")
            days.append({**{k: int(v) for k, v in settings.deadline_days.items()}, **stored})
        return dates, days

    @staticmethod
    def _state_from_table(conn: Any, prev: str | None) -> pd.DataFrame:
        """Lifecycle after the last run of the affected findings, as the findings table holds it."""
        state = _frame(
            "SELECT f.finding_id, f.severity, f.first_seen, f.last_seen, f.opened_on, f.deadline, f.status, "
            "f.resolved_on, f.times_reopened FROM findings f JOIN affected a USING (finding_id)", conn)
        state["present"] = (state["last_seen"] == prev) & (state["status"] != "resolved")
        return _state_frame(state)

    def _state_from_observations(self, conn: Any, day: str, dates: list[str]) -> pd.DataFrame:
        """Lifecycle of the affected findings just before ``day``, from their latest earlier observation."""
        latest = _frame(
            "SELECT o.finding_id, o.as_of, o.severity, o.status, o.opened_on, o.deadline, o.times_reopened "
            "FROM observations o JOIN (SELECT b.finding_id, MAX(b.as_of) AS as_of FROM observations b "
            "JOIN affected a USING (finding_id) WHERE b.as_of < ? GROUP BY b.finding_id) m "
            "ON o.finding_id = m.finding_id AND o.as_of = m.as_of", conn, params=(day,))
        first = _frame(
            "SELECT o.finding_id, MIN(o.as_of) AS first_seen FROM observations o JOIN affected a USING (finding_id) "
            "WHERE o.as_of < ? AND o.status != 'resolved' GROUP BY o.finding_id", conn, params=(day,))
        state = latest.merge(first, on="finding_id", how="left")
        resolved = state["status"] == "resolved"
        before = {d: p for p, d in zip([None, *dates[:-1]], dates, strict=True)}
        state["present"] = ~resolved
        state["resolved_on"] = state["as_of"].where(resolved, None)
        state["last_seen"] = np.where(resolved, state["as_of"].map(before), state["as_of"])
        return _state_frame(state.drop(columns=["as_of"]))

    @staticmethod
    def _write_state(conn: Any, state: pd.DataFrame) -> None:
        seen = state[state["first_seen"].notna()]
        conn.executemany(
            "UPDATE findings SET first_seen = ?, last_seen = ?, opened_on = ?, deadline = ?, status = ?, "
            "resolved_on = ?, times_reopened = ? WHERE finding_id = ?",
            list(seen.reset_index()[["first_seen", "last_seen", "opened_on", "deadline", "status", "resolved_on",
                                     "times_reopened", "finding_id"]].astype(object)
                 .itertuples(index=False, name=None)),
        )

    @staticmethod
    def _drop_orphans(conn: Any) -> None:
        """Forget findings no run has seen any more (they were only in a replaced run)."""
        gone = conn.execute(
            "DELETE FROM findings WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE "
            "o.finding_id = findings.finding_id AND o.status != 'resolved')"
        ).rowcount
        if gone:
            logger.debug("history: forgot %d findings seen only in the replaced run", gone)

    @staticmethod
    def _update_counts(conn: Any, *, start: str) -> None:
        grouped = _frame(
            "SELECT o.as_of, o.status, o.severity, f.kind, COUNT(*) AS n FROM observations o "
            "LEFT JOIN findings f USING (finding_id) WHERE o.as_of >= ? GROUP BY o.as_of, o.status, o.severity, f.kind",
            conn, params=(start,),
        )
        for (as_of,) in conn.execute("SELECT as_of FROM runs WHERE as_of >= ?", (start,)).fetchall():
            g = grouped[grouped["as_of"] == as_of]
            open_ = g[g["status"].isin(OPEN_STATUSES)]
            counts = {
                "open": int(open_["n"].sum()),
                "status": {s: int(g.loc[g["status"] == s, "n"].sum()) for s in STATUSES},
                "severity": {s: int(open_.loc[open_["severity"] == s, "n"].sum()) for s in SEVERITY_RANK},
                "kind": {str(k): int(v) for k, v in open_.groupby("kind")["n"].sum().items()},
            }
            conn.execute("UPDATE runs SET counts = ? WHERE as_of = ?", (_dumps(counts), as_of))

    def _lifecycle_frame(self, conn: Any, rows: pd.DataFrame, today: gpd.GeoDataFrame | None,
                         crs: Any = None) -> gpd.GeoDataFrame:
        """Join lifecycle rows of one run with today's findings and the stored resolved ones."""
        life = rows.set_index("finding_id")
        target_crs = today.crs if today is not None else crs
        parts = []
        if today is not None and len(today):
            present = today.join(life.drop(columns=["severity"]), on="finding_id", how="left")
            parts.append(present)
        stored_ids = list(life.index) if today is None else list(life.index[life["status"] == "resolved"])
        if stored_ids:
            # the severity of the run (the stored attributes are the latest ones)
            stored = self._stored(conn, stored_ids, target_crs).drop(columns=["severity"])
            stored = stored.join(life, on="finding_id", how="left")
            if target_crs is None and stored.crs is not None:
                target_crs = stored.crs
            parts.append(stored)
        if not parts:
            base = today if today is not None else gpd.GeoDataFrame(
                {c: pd.Series([], dtype=object) for c in COLUMNS if c != "geometry"},
                geometry=gpd.GeoSeries([], crs=target_crs), crs=target_crs)
            parts.append(base.assign(**{c: pd.Series([], dtype=object) for c in LIFECYCLE_COLUMNS}))
        frames = [f for f in parts if len(f)] or parts[:1]
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
        out = gpd.GeoDataFrame(out, geometry="geometry", crs=target_crs)
        return _finish(out)

    @staticmethod
    def _stored(conn: Any, ids: list[str], target_crs: Any) -> gpd.GeoDataFrame:
        cols = ["finding_id", *_ATTRS, "geometry", "crs"]
        frames = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            frames.append(_frame(f"SELECT {', '.join(cols)} FROM findings WHERE finding_id IN ({marks})",
                                            conn, params=chunk))
        df = pd.concat(frames, ignore_index=True)
        for col in ("village_id", "grid_id"):
            df[col] = df[col].map(_id_cell)
        geoms = shapely.from_wkt(df["geometry"].to_numpy(dtype=object), on_invalid="warn")
        parts = []
        for crs_text, idx in df.groupby(df["crs"].fillna(""), sort=False).groups.items():
            sub = gpd.GeoDataFrame(df.loc[idx].drop(columns=["geometry", "crs"]), geometry=list(geoms[idx]),
                                   crs=crs_text or None)
            if target_crs is not None and sub.crs is not None and sub.crs != target_crs:
                sub = sub.to_crs(target_crs)
            elif sub.crs is None:
                sub = sub.set_crs(target_crs)
            parts.append(sub)
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return gpd.GeoDataFrame(out, geometry="geometry", crs=target_crs)

    # ------------------------------------------------------------------ reading
    def runs(self) -> pd.DataFrame:
        """Every recorded run, oldest first.

        Returns
        -------
        DataFrame
            ``as_of`` (date), ``created``, ``config_hash``, ``fingerprints``
            (dict), ``open`` and one column per status (counts), ``counts`` and
            ``totals`` (dicts).
        """
        with self._connect() as conn:
            df = _frame(
                "SELECT as_of, created, config_hash, fingerprints, counts, totals FROM runs ORDER BY as_of", conn)
        for col in ("fingerprints", "counts", "totals"):
            df[col] = df[col].map(lambda s: json.loads(s or "{}"))
        df["as_of"] = df["as_of"].map(as_date).astype(object)
        df["open"] = df["counts"].map(lambda c: int(c.get("open", 0)))
        for s in STATUSES:
            df[s] = df["counts"].map(lambda c, s=s: int(c.get("status", {}).get(s, 0)))
        return df[["as_of", "created", "config_hash", "fingerprints", "open", *STATUSES, "counts", "totals"]]

    def open_counts(self) -> pd.DataFrame:
        """Open findings per run date, for the over-time chart.

        Returns
        -------
        DataFrame
            One row per run, oldest first: ``as_of`` (date), ``open``, one
            column per severity (open findings), one per status.
        """
        runs = self.runs()
        out = pd.DataFrame({"as_of": runs["as_of"], "open": runs["open"]})
        for s in SEVERITY_RANK:
            out[s] = runs["counts"].map(lambda c, s=s: int(c.get("severity", {}).get(s, 0)))
        for s in STATUSES:
            out[s] = runs[s]
        return out.reset_index(drop=True)

    def _run(self, where: str, params: tuple[Any, ...]) -> Run | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT as_of, config_hash, fingerprints, counts, totals, created FROM runs {where}", params
            ).fetchone()
        if row is None:
            return None
        day = as_date(row[0])
        if day is None:
            msg = f"the run history has a run with an unreadable date {row[0]!r}."
            raise self._error(msg, "restore the history file from a backup")
        return Run(as_of=day, config_hash=row[1], fingerprints=json.loads(row[2] or "{}"),
                   counts=json.loads(row[3] or "{}"), totals=json.loads(row[4] or "{}"), created=row[5])

    def previous_run(self, as_of: dt.date) -> Run | None:
        """The last run dated before ``as_of`` (None for the first run)."""
        return self._run("WHERE as_of < ? ORDER BY as_of DESC LIMIT 1", (_iso(as_of),))

    def last_run(self) -> Run | None:
        """The latest run (None for an empty history)."""
        return self._run("ORDER BY as_of DESC LIMIT 1", ())

    def get_run(self, as_of: dt.date) -> Run | None:
        """The run of ``as_of`` (None when there is none)."""
        return self._run("WHERE as_of = ?", (_iso(as_of),))

    def observations(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Every observation of the runs from ``start`` to ``end`` (both included), for scoring a period.

        Returns
        -------
        DataFrame
            One row per run and finding seen (or resolved) at it, oldest run first: ``as_of`` (date),
            ``finding_id``, ``severity`` and ``status`` of that run, ``opened_on``, ``deadline`` (dates),
            ``times_reopened``, and the finding's last recorded ``kind``, ``village_id`` (id cell),
            ``owner``, ``measure``, ``unit``.
        """
        with self._connect() as conn:
            df = _frame(
                "SELECT o.as_of, o.finding_id, o.severity, o.status, o.opened_on, o.deadline, o.times_reopened, "
                "f.kind, f.village_id, f.owner, f.measure, f.unit FROM observations o JOIN findings f "
                "USING (finding_id) WHERE o.as_of >= ? AND o.as_of <= ? ORDER BY o.as_of, o.finding_id",
                conn, params=(_iso(start), _iso(end)))
        for col in ("as_of", "opened_on", "deadline"):
            df[col] = df[col].map(as_date).astype(object)
        df["village_id"] = df["village_id"].map(_id_cell)
        return df

    def snapshot(self, as_of: dt.date | None = None) -> gpd.GeoDataFrame:
        """The lifecycle table of a recorded run, rebuilt from the database.

        Parameters
        ----------
        as_of
            A recorded run date (default the latest).

        Returns
        -------
        GeoDataFrame
            The columns :meth:`record` returned for that run (geometry from the
            stored WKT; extra finding columns are not stored).
        """
        run = self.last_run() if as_of is None else self.get_run(as_of)
        if run is None:
            msg = "no run recorded" + ("" if as_of is None else f" on {_iso(as_of)}") + "."
            raise self._error(msg, "record a run first (gisgrid run)")
        day = run.as_of.isoformat()
        with self._connect() as conn:
            dates = [r[0] for r in conn.execute("SELECT as_of FROM runs ORDER BY as_of")]
            prev = max((d for d in dates if d < day), default=None)
            crs = conn.execute("SELECT crs FROM runs WHERE as_of = ?", (day,)).fetchone()[0]
            rows = _frame(
                "SELECT o.as_of, o.finding_id, o.severity, o.status, f.first_seen, o.opened_on, o.deadline, "
                "o.times_reopened FROM observations o JOIN findings f USING (finding_id) WHERE o.as_of = ?",
                conn, params=(day,))
            rows["last_seen"] = [prev if s == "resolved" else day for s in rows["status"]]
            return self._lifecycle_frame(conn, rows, None, crs=crs)

    def undo(self, as_of: dt.date) -> Run:
        """Remove a run recorded by mistake; the runs after it are re-derived as if it had never been.

        Parameters
        ----------
        as_of
            The date of the run to remove.

        Returns
        -------
        Run
            The run removed (its date, counts and totals).

        Raises
        ------
        HistoryError
            No run is recorded on that date.
        """
        day = _iso(as_of)
        removed = self.get_run(as_of)
        if removed is None:
            msg = f"no run is recorded on {day}."
            raise self._error(msg, "give the date of a recorded run (gisgrid history shows them)")
        with self._connect() as conn, self._transaction(conn):
            conn.execute("DELETE FROM observations WHERE as_of = ?", (day,))
            conn.execute("DELETE FROM runs WHERE as_of = ?", (day,))
            dates, days = self._run_schedule(conn)
            seen = _frame(
                "SELECT finding_id, as_of, severity FROM observations WHERE status != 'resolved'", conn)
            rows, state = _replay_state(seen, dates, days)
            conn.execute("DELETE FROM observations")
            conn.executemany(
                "INSERT INTO observations (as_of, finding_id, severity, status, opened_on, deadline, times_reopened) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                list(rows[["as_of", "finding_id", "severity", "status", "opened_on", "deadline", "times_reopened"]]
                     .astype(object).itertuples(index=False, name=None)),
            )
            self._drop_orphans(conn)
            self._write_state(conn, state)
            if dates:
                self._update_counts(conn, start=dates[0])
        logger.info("history %s: removed the run of %s; %d run(s) left", self._store.name, day, len(dates))
        return removed

    def verify(self, *, replay: Callable[..., tuple[pd.DataFrame, pd.DataFrame]] | None = None) -> list[str]:
        """Check the database against every run replayed from its observations.

        Parameters
        ----------
        replay
            Another way to replay the runs, called like the built-in one (the tests pass an independent
            oracle); default the step :meth:`record` itself uses.

        Returns
        -------
        list of str
            Problems found (empty when the history is consistent).
        """
        problems: list[str] = []
        with self._connect() as conn:
            problems += self._store.integrity(conn)
            dates, days = self._run_schedule(conn)
            obs = _frame(
                "SELECT finding_id, as_of, severity FROM observations WHERE status != 'resolved'", conn)
            stored = _frame(
                "SELECT as_of, finding_id, status, opened_on, deadline, times_reopened FROM observations", conn)
            state = _frame(
                "SELECT finding_id, first_seen, last_seen, opened_on, deadline, status, resolved_on, times_reopened "
                "FROM findings", conn)
            orphans = conn.execute(
                "SELECT COUNT(*) FROM observations WHERE as_of NOT IN (SELECT as_of FROM runs)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} observations of runs that do not exist")
        rows, expect = (replay or _replay)(obs, dates, days)

        def norm(df: pd.DataFrame) -> pd.DataFrame:
            return df.astype(object).map(as_shown)

        key = ["as_of", "finding_id"]
        a = rows[[*key, "status", "opened_on", "deadline", "times_reopened"]].sort_values(key).reset_index(drop=True)
        b = stored.sort_values(key).reset_index(drop=True)
        if len(a) != len(b) or not norm(a).equals(norm(b[a.columns])):
            problems.append(f"observations differ from a replay ({len(b)} stored, {len(a)} replayed)")
        e = expect.sort_values("finding_id").reset_index(drop=True)
        s = state.sort_values("finding_id").reset_index(drop=True)
        if len(e) != len(s) or not norm(e).equals(norm(s[e.columns])):
            problems.append(f"findings state differs from a replay ({len(s)} stored, {len(e)} replayed)")
        return problems


def _finish(out: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Types and order of the lifecycle columns; sort: open by severity, then resolved."""
    for c in out.columns:
        if c != out.geometry.name and pd.api.types.is_string_dtype(out[c]) and out[c].dtype != object:
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    for c in ("first_seen", "last_seen", "opened_on", "deadline"):
        out[c] = out[c].map(as_date).astype(object)
    out["resolved_on"] = np.where(out["status"] == "resolved", out["as_of"], None) if "as_of" in out.columns else None
    out["resolved_on"] = out["resolved_on"].map(as_date).astype(object)
    out["times_reopened"] = pd.to_numeric(out["times_reopened"], errors="coerce").fillna(0).astype(int)
    as_of = out["as_of"].map(as_date) if "as_of" in out.columns else pd.Series(None, index=out.index)
    late = [
        max((a - d).days, 0) if (s in OPEN_STATUSES and a is not None and d is not None) else 0
        for a, d, s in zip(as_of, out["deadline"], out["status"], strict=True)
    ]
    out["days_overdue"] = np.asarray(late, dtype=int)
    out = out.drop(columns=["as_of"], errors="ignore")
    if len(out):
        resolved = (out["status"] == "resolved").to_numpy()
        out = pd.concat([sort_findings(out[~resolved]), sort_findings(out[resolved])], ignore_index=True)
        out = gpd.GeoDataFrame(out, geometry="geometry", crs=out.crs)
    first = [c for c in COLUMNS if c in out.columns]
    extra = [c for c in out.columns if c not in first and c not in LIFECYCLE_COLUMNS]
    return out[[*first, *LIFECYCLE_COLUMNS, *[c for c in extra if c != "geometry"]]]
