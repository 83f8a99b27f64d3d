"""Publish a run's findings and their lifecycle into PostGIS, for the command center's GIS platform.

``[publish] url = "postgresql:///gis"`` and ``schema = "gisgrid"`` make ``gisgrid run`` write, in one
transaction (the platform sees the previous run or the new one, never half of one):

``<schema>.findings``
    one row per finding and run date (primary key ``finding_id, run_date``): kind, severity, lifecycle
    status, owner, deadline, ids, message, ``subject`` (jsonb: road, POI, river ids...), ``geom`` in the
    layer's SRID and ``geom_4326``, both with a GiST index;
``<schema>.runs``
    one row per town and run date: config hash, counts by status, exit code and reason;
``<schema>.current_findings``
    a view of the open findings of each town's latest run, in EPSG:4326, for the platform to draw;
``<schema>.schema_version``
    the version of these tables, so a later gisgrid can migrate them (a newer version is refused).

Re-publishing a date replaces that date's rows (runs stay idempotent); concurrent publishers into one
schema are serialised by a transaction-level advisory lock; the rows go in with COPY.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely

from gisgrid._errors import ConfigError, HistoryError
from gisgrid.findings import OPEN_STATUSES, SUBJECT_COLUMNS, id_list, present, show_ids
from gisgrid.io.postgis import check_url, connect, display_url, safe_reason

__all__ = ["SCHEMA_VERSION", "PublishOptions", "PublishResult", "describe_target", "parse_options", "publish"]

logger = logging.getLogger(__name__)

#: Version of the published tables; recorded in ``<schema>.schema_version``.
SCHEMA_VERSION = 1

_FINDING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("finding_id", "text NOT NULL"),
    ("run_date", "date NOT NULL"),
    ("town", "text NOT NULL"),
    ("kind", "text NOT NULL"),
    ("severity", "text"),
    ("status", "text"),
    ("owner", "text"),
    ("deadline", "date"),
    ("days_overdue", "integer"),
    ("village_id", "text"),
    ("grid_id", "text"),
    ("village_ids", "text[]"),
    ("grid_ids", "text[]"),
    ("measure", "double precision"),
    ("unit", "text"),
    ("rule", "text"),
    ("message", "text"),
    ("first_seen", "date"),
    ("last_seen", "date"),
    ("opened_on", "date"),
    ("resolved_on", "date"),
    ("times_reopened", "integer"),
    ("subject", "jsonb"),
    ("geom", "geometry"),  # the layer's SRID (towns of a district may differ): unconstrained
    ("geom_4326", "geometry(Geometry, 4326)"),
)
# binary COPY: geometries travel as EWKB bytes (PostGIS's binary input), no hex text to encode or parse
_COPY_TYPES = ["text", "date", "text", "text", "text", "text", "text", "date", "int4", "text", "text", "text[]",
               "text[]", "float8", "text", "text", "text", "date", "date", "date", "date", "int4", "jsonb", "bytea",
               "bytea"]
_PUBLISH_KEYS = ("url", "schema")
_CHUNK = 2_000  # findings per chunk of COPY rows


@dataclass(frozen=True)
class PublishOptions:
    """``[publish]``: the database and the schema the platform reads."""

    url: str
    schema: str = "gisgrid"

    @property
    def where(self) -> str:
        """The target as it may be shown (no password)."""
        return f"{display_url(self.url)} schema {self.schema!r}"


@dataclass(frozen=True)
class PublishResult:
    """What a publish wrote."""

    rows: int
    seconds: float
    schema: str
    replaced: int  # rows of the same town and date that were there before


def parse_options(table: Mapping[str, Any] | None) -> PublishOptions | None:
    """Check and type the ``[publish]`` table (None when there is none); no connection is made.

    Raises
    ------
    ConfigError
        An unknown key, a missing or password-holding url, a schema that is not text.
    """
    if not table:
        return None
    bad = sorted(str(k) for k in table if k not in _PUBLISH_KEYS)
    if bad:
        msg = f"[publish] has unknown key(s) {bad}."
        raise ConfigError(msg, fix=f"use only {list(_PUBLISH_KEYS)}")
    if "url" not in table:
        msg = "[publish] has no url."
        raise ConfigError(msg, fix='write url = "postgresql:///gis" under [publish] (the password in ~/.pgpass)')
    check_url(table["url"], where="[publish] url")
    schema = table.get("schema", "gisgrid")
    if not isinstance(schema, str) or not schema.strip() or "\x00" in schema or len(schema.encode()) > 63:
        msg = f"[publish] schema must be a name of at most 63 bytes, not {schema!r}."
        raise ConfigError(msg, fix='write schema = "gisgrid"')
    return PublishOptions(url=table["url"], schema=schema)


def _lock_key(schema: str) -> int:
    """The advisory lock of one schema: a signed 64-bit number from its name."""
    digest = hashlib.sha256(f"gisgrid.publish:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _ensure_schema(conn: Any, schema: str) -> None:
    """Create the tables on first use; refuse tables of a newer gisgrid (the advisory lock is held)."""
    from psycopg import sql

    s = sql.Identifier(schema)
    exists = conn.execute("SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL",
                          (schema,)).fetchone()[0]
    if exists:
        version = conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_version").format(s)).fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            msg = (f"[publish] schema {schema!r} holds tables of version {version}, written by a newer gisgrid; "
                   f"this one writes version {SCHEMA_VERSION}.")
            raise HistoryError(msg, fix="upgrade gisgrid on this machine, or publish into another schema")
        if version == SCHEMA_VERSION:
            return
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in _FINDING_COLUMNS)
    statuses = sql.SQL(", ").join(sql.Literal(x) for x in OPEN_STATUSES)
    for stmt in (
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())").format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.runs (run_date date NOT NULL, town text NOT NULL, config_hash text, "
                "findings integer NOT NULL, open integer NOT NULL, new integer NOT NULL, persisting integer NOT NULL, "
                "overdue integer NOT NULL, reopened integer NOT NULL, resolved integer NOT NULL, "
                "exit_code integer NOT NULL, reason text, published_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (town, run_date))").format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.findings ({}, PRIMARY KEY (finding_id, run_date))").format(s, cols),
        # geometries stored uncompressed: a publish does not pay pglz on every polygon, and reads are faster
        sql.SQL("ALTER TABLE {}.findings ALTER COLUMN geom SET STORAGE EXTERNAL, "
                "ALTER COLUMN geom_4326 SET STORAGE EXTERNAL").format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS findings_geom_gix ON {}.findings USING gist (geom)").format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS findings_geom_4326_gix ON {}.findings USING gist (geom_4326)").format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS findings_town_date_idx ON {}.findings (town, run_date)").format(s),
        sql.SQL("CREATE OR REPLACE VIEW {s}.current_findings AS SELECT f.finding_id, f.town, f.run_date, f.kind, "
                "f.severity, f.status, f.owner, f.deadline, f.days_overdue, f.village_id, f.grid_id, f.measure, "
                "f.unit, f.message, f.first_seen, f.geom_4326 AS geom FROM {s}.findings f JOIN "
                "(SELECT town, max(run_date) AS run_date FROM {s}.runs GROUP BY town) latest "
                "ON f.town = latest.town AND f.run_date = latest.run_date WHERE f.status IN ({st})"
                ).format(s=s, st=statuses),
        sql.SQL("INSERT INTO {}.schema_version (version) VALUES ({}) ON CONFLICT DO NOTHING").format(
            s, sql.Literal(SCHEMA_VERSION)),
    ):
        conn.execute(stmt)
    logger.info("[publish] created the tables of schema %r (version %d)", schema, SCHEMA_VERSION)


def _text(value: Any) -> str | None:
    """A cell as text PostgreSQL takes (it refuses NUL characters: shown as U+FFFD, never dropped silently)."""
    if not present(value):
        return None
    return str(value).replace("\x00", "\ufffd")


def _texts(values: Any) -> list[str | None]:
    """:func:`_text` of a column (a plain loop: most cells are text already)."""
    out: list[str | None] = []
    nul = False
    for v in values:
        if isinstance(v, str):
            if v.strip():
                out.append(v)
                nul = nul or "\x00" in v
            else:
                out.append(None)
        else:
            out.append(_text(v))
    return [None if v is None else v.replace("\x00", "\ufffd") for v in out] if nul else out


def _date(value: Any) -> dt.date | None:
    if not present(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _dates(values: Any) -> list[dt.date | None]:
    return [v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else _date(v) for v in values]


def _ints(values: Any) -> list[int | None]:
    return [None if not present(v) else int(v) for v in values]


def _ids(values: Any) -> tuple[list[str | None], list[list[str]]]:
    """An id column as text for people (``"V1, V2"``) and as exact lists (the cells hold an id or a tuple)."""
    shown, lists = [], []
    for v in values:
        items = [v.replace("\x00", "\ufffd")] if isinstance(v, str) and v.strip() else \
            [i.replace("\x00", "\ufffd") for i in id_list(v)]
        lists.append(items)
        shown.append(show_ids(items))
    return shown, lists


def _wkb(geoms: np.ndarray, srid: int) -> list[bytes | None]:
    if not len(geoms):
        return []
    out = shapely.to_wkb(shapely.set_srid(geoms, srid), include_srid=True)
    return [None if b is None else bytes(b) for b in out]


def _rows(lifecycle: Any, *, run_date: dt.date, town: str) -> list[tuple[Any, ...]]:
    """The COPY rows of the findings table, in its column order (built column by column, not cell by cell)."""
    n = len(lifecycle)
    geoms = np.asarray(lifecycle.geometry.values, dtype=object) if n else np.array([], dtype=object)
    crs = lifecycle.crs
    srid = (crs.to_epsg() or 0) if crs is not None else 0
    local = _wkb(geoms, srid)
    if crs is not None and n:
        wgs84 = _wkb(np.asarray(lifecycle.geometry.to_crs(4326).values, dtype=object), 4326)
    else:
        wgs84 = [None] * n

    def col(name: str) -> Any:
        return lifecycle[name].to_numpy(dtype=object) if name in lifecycle.columns else np.full(n, None, dtype=object)

    subject_cols = [c for c in SUBJECT_COLUMNS if c in lifecycle.columns]
    subject_vals = [_texts(col(c)) for c in subject_cols]
    subjects = [{c: v for c, v in zip(subject_cols, vals, strict=True) if v is not None}
                for vals in zip(*subject_vals, strict=True)] if subject_cols else [{} for _ in range(n)]
    village_shown, village_ids = _ids(col("village_id"))
    grid_shown, grid_ids = _ids(col("grid_id"))
    measure = pd.to_numeric(pd.Series(col("measure"), dtype=object), errors="coerce")
    columns = [
        _texts(col("finding_id")), [run_date] * n, [_text(town)] * n, _texts(col("kind")), _texts(col("severity")),
        _texts(col("status")), _texts(col("owner")), _dates(col("deadline")), _ints(col("days_overdue")),
        village_shown, grid_shown, village_ids, grid_ids,
        [None if pd.isna(v) else float(v) for v in measure], _texts(col("unit")), _texts(col("rule")),
        _texts(col("message")), _dates(col("first_seen")), _dates(col("last_seen")), _dates(col("opened_on")),
        _dates(col("resolved_on")), _ints(col("times_reopened")), subjects, local, wgs84,
    ]
    return list(zip(*columns, strict=True))


def _counts(lifecycle: Any) -> dict[str, int]:
    status = lifecycle["status"] if "status" in lifecycle.columns else pd.Series([], dtype=object)
    counts = {k: int((status == k).sum()) for k in ("new", "persisting", "overdue", "reopened", "resolved")}
    counts["open"] = int(status.isin(OPEN_STATUSES).sum())
    counts["findings"] = len(lifecycle)
    return counts


def describe_target(options: PublishOptions) -> str:
    """What a run would publish into, for ``gisgrid check``: reachable, its version and runs, this user's rights.

    Reads only (a READ ONLY transaction); nothing is created.

    Raises
    ------
    InputError
        The database cannot be reached or refuses the credentials.
    HistoryError
        The schema is of a newer gisgrid, or this user may not create or write it.
    """
    from psycopg import sql

    s = sql.Identifier(options.schema)
    with connect(options.url, where="[publish]", read_only=True, application_name="gisgrid check") as conn:
        exists = conn.execute("SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL",
                              (options.schema,)).fetchone()[0]
        if not exists:
            may = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE') OR "
                               "has_schema_privilege(n.oid, 'CREATE') FROM (SELECT NULL::oid AS oid) x "
                               "LEFT JOIN pg_namespace n ON n.nspname = %s", (options.schema,)).fetchone()[0]
            if not may:
                msg = f"[publish] {options.where}: this user may not create the schema or its tables."
                raise HistoryError(msg, fix="GRANT CREATE ON DATABASE ... TO the user, or create the schema for it")
            return f"publish: {options.where}: created on the first run (this user may create it)"
        quoted = '"' + options.schema.replace('"', '""') + '"'
        may = conn.execute("SELECT has_table_privilege(%(f)s, 'INSERT') AND has_table_privilege(%(f)s, 'DELETE') "
                           "AND has_table_privilege(%(r)s, 'INSERT') AND has_table_privilege(%(r)s, 'DELETE') "
                           "AND has_table_privilege(%(v)s, 'SELECT')",
                           {"f": f"{quoted}.findings", "r": f"{quoted}.runs", "v": f"{quoted}.schema_version"}
                           ).fetchone()[0]
        if not may:
            msg = f"[publish] {options.where}: this user may not write the findings and runs tables."
            raise HistoryError(msg, fix="GRANT SELECT ON schema_version, INSERT, DELETE ON findings and runs (in that "
                                        "schema) to the user")
        version = conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_version").format(s)).fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            msg = (f"[publish] schema {options.schema!r} holds tables of version {version}, written by a newer "
                   f"gisgrid; this one writes version {SCHEMA_VERSION}.")
            raise HistoryError(msg, fix="upgrade gisgrid on this machine, or publish into another schema")
        runs, latest = conn.execute(sql.SQL("SELECT count(*), max(run_date) FROM {}.runs").format(s)).fetchone()
    last = f", latest {latest.isoformat()}" if latest else ""
    return f"publish: {options.where}: version {version}, {runs} run(s){last}; this user may write it"


def publish(
    lifecycle: Any,
    options: PublishOptions,
    *,
    run_date: dt.date,
    town: str,
    config_hash: str = "",
    exit_code: int = 0,
    reason: str = "",
    before_commit: Callable[[], None] | None = None,
) -> PublishResult:
    """Write one run's findings with their lifecycle into PostGIS, in one transaction.

    Parameters
    ----------
    lifecycle
        The run's findings with their lifecycle (what :meth:`gisgrid.history.History.record` returns),
        in the analysis CRS.
    options
        ``[publish]``.
    run_date, town
        The run (its ``--as-of``) and the town's name: together they name the run's rows.
    config_hash, exit_code, reason
        Recorded in ``runs``.
    before_commit
        Called inside the transaction after every row is written (the crash tests pause here).

    Returns
    -------
    PublishResult

    Raises
    ------
    InputError
        The database cannot be reached or refuses the credentials.
    HistoryError
        The database refused the publish (rights, a newer schema version); nothing was changed.
    """
    import psycopg
    from psycopg import sql
    from psycopg.copy import QueuedLibpqWriter

    start = time.perf_counter()
    counts = _counts(lifecycle)
    s = sql.Identifier(options.schema)
    names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in _FINDING_COLUMNS)
    with connect(options.url, where="[publish]", read_only=False, application_name="gisgrid publish") as conn:
        try:
            with conn.transaction():
                # one publisher per schema at a time; released with the transaction, even when the connection dies
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(options.schema),))
                _ensure_schema(conn, options.schema)
                replaced = conn.execute(
                    sql.SQL("DELETE FROM {}.findings WHERE town = %s AND run_date = %s").format(s),
                    (town, run_date)).rowcount
                conn.execute(sql.SQL("DELETE FROM {}.runs WHERE town = %s AND run_date = %s").format(s),
                             (town, run_date))
                # rows built a chunk at a time while a thread sends the last one: the server parses and
                # indexes one chunk while this process builds the next
                with conn.cursor() as cur, cur.copy(
                        sql.SQL("COPY {}.findings ({}) FROM STDIN (FORMAT BINARY)").format(s, names),
                        writer=QueuedLibpqWriter(cur)) as copy:
                    copy.set_types(_COPY_TYPES)
                    for at in range(0, len(lifecycle), _CHUNK):
                        for row in _rows(lifecycle.iloc[at:at + _CHUNK], run_date=run_date, town=town):
                            copy.write_row(row)
                conn.execute(
                    sql.SQL("INSERT INTO {}.runs (run_date, town, config_hash, findings, open, new, persisting, "
                            "overdue, reopened, resolved, exit_code, reason) VALUES "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(s),
                    (run_date, _text(town), _text(config_hash), counts["findings"], counts["open"], counts["new"],
                     counts["persisting"], counts["overdue"], counts["reopened"], counts["resolved"], int(exit_code),
                     _text(reason)))
                if before_commit is not None:
                    before_commit()
        except psycopg.Error as exc:
            msg = f"[publish] {options.where}: the database refused the publish ({safe_reason(exc)}); nothing " \
                  "was changed there."
            raise HistoryError(msg, fix="check the user may create and write the schema (GRANT CREATE ON DATABASE "
                                        "..., or create the schema for it) and that the server is up") from None
    seconds = time.perf_counter() - start
    logger.info("[publish] %d findings of %s %s into %s in %.2f s", len(lifecycle), town, run_date.isoformat(),
                options.where, seconds)
    return PublishResult(rows=len(lifecycle), seconds=seconds, schema=options.schema, replaced=int(replaced or 0))
