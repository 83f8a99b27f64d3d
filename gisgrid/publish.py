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
import json
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

__all__ = ["SCHEMA_VERSION", "PublishOptions", "PublishResult", "parse_options", "publish"]

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
_COPY_TYPES = ["text", "date", "text", "text", "text", "text", "text", "date", "int4", "text", "text", "text[]",
               "text[]", "float8", "text", "text", "text", "date", "date", "date", "date", "int4", "text", "text",
               "text"]
_PUBLISH_KEYS = ("url", "schema")


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


def _date(value: Any) -> dt.date | None:
    if not present(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _int(value: Any) -> int | None:
    return None if not present(value) else int(value)


def _rows(lifecycle: Any, *, run_date: dt.date, town: str) -> list[list[Any]]:
    """The COPY rows of the findings table, in its column order."""
    geoms = np.asarray(lifecycle.geometry.values, dtype=object) if len(lifecycle) else np.array([], dtype=object)
    crs = lifecycle.crs
    srid = (crs.to_epsg() or 0) if crs is not None else 0
    local = shapely.to_wkb(shapely.set_srid(geoms, srid), hex=True, include_srid=True) if len(geoms) else geoms
    if crs is not None and len(geoms):
        wgs = lifecycle.geometry.to_crs(4326).values
        wgs84 = shapely.to_wkb(shapely.set_srid(np.asarray(wgs, dtype=object), 4326), hex=True, include_srid=True)
    else:
        wgs84 = np.full(len(geoms), None, dtype=object)
    subject_cols = [c for c in SUBJECT_COLUMNS if c in lifecycle.columns]
    records = lifecycle.drop(columns=lifecycle.geometry.name).to_dict("records")
    rows = []
    for i, rec in enumerate(records):
        subject = {c: _text(rec[c]) for c in subject_cols if present(rec.get(c))}
        rows.append([
            _text(rec["finding_id"]), run_date, _text(town), _text(rec["kind"]), _text(rec.get("severity")),
            _text(rec.get("status")), _text(rec.get("owner")), _date(rec.get("deadline")),
            _int(rec.get("days_overdue")), _text(show_ids(rec.get("village_id"))), _text(show_ids(rec.get("grid_id"))),
            [_text(v) for v in id_list(rec.get("village_id"))], [_text(v) for v in id_list(rec.get("grid_id"))],
            None if not present(rec.get("measure")) else float(rec["measure"]), _text(rec.get("unit")),
            _text(rec.get("rule")), _text(rec.get("message")), _date(rec.get("first_seen")),
            _date(rec.get("last_seen")), _date(rec.get("opened_on")), _date(rec.get("resolved_on")),
            _int(rec.get("times_reopened")), json.dumps(subject, ensure_ascii=False).replace("\\u0000", "\ufffd"),
            None if pd.isna(local[i]) else local[i], None if pd.isna(wgs84[i]) else wgs84[i],
        ])
    return rows


def _counts(lifecycle: Any) -> dict[str, int]:
    status = lifecycle["status"] if "status" in lifecycle.columns else pd.Series([], dtype=object)
    counts = {k: int((status == k).sum()) for k in ("new", "persisting", "overdue", "reopened", "resolved")}
    counts["open"] = int(status.isin(OPEN_STATUSES).sum())
    counts["findings"] = len(lifecycle)
    return counts


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

    start = time.perf_counter()
    rows = _rows(lifecycle, run_date=run_date, town=town)
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
                with conn.cursor() as cur, cur.copy(
                        sql.SQL("COPY {}.findings ({}) FROM STDIN").format(s, names)) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
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
    logger.info("[publish] %d findings of %s %s into %s in %.2f s", len(rows), town, run_date.isoformat(),
                options.where, seconds)
    return PublishResult(rows=len(rows), seconds=seconds, schema=options.schema, replaced=int(replaced or 0))
