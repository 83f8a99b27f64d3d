"""The outbox: the messages of each run date and what each recipient was told, inside the history database.

Three tables beside the history's own (``CREATE TABLE IF NOT EXISTS``; the history never reads them):

``dispatch_plans``
    One row per run date whose messages were planned: ``as_of``, ``run_stamp`` (the history's
    ``created`` of that run: a run recorded again is planned again), ``planned`` (UTC time).
``dispatch_outbox``
    One row per message: ``as_of``, ``seq`` (send order), ``channel``, ``channel_kind``, ``recipient``,
    ``kind``, ``title``, ``body`` (exactly what is sent), ``record`` (JSON: the webhook payload, the
    e-mail addresses, the tags it tells), ``status`` (``pending``, ``sent``, ``failed``, or ``superseded``:
    left unsent when a later date was planned, whose messages carry its items that are still open), ``attempts``,
    ``last_error`` (with every secret removed), ``sent_at``.
``dispatch_notified``
    ``(recipient, finding_id, tag)`` sent, with the date and the message: written in the same transaction
    that marks the message sent, so a crash between two messages leaves exactly the sent ones marked.

Planning is one transaction (``BEGIN IMMEDIATE``): a date is planned once, and running it again only sends
what is still unsent. No secret is stored here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gisgrid.dispatch.messages import Message, to_json
from gisgrid.history import connect

__all__ = ["Outbox", "Pending"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch_plans (
    as_of     TEXT PRIMARY KEY,
    run_stamp TEXT NOT NULL DEFAULT '',
    planned   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dispatch_outbox (
    id           INTEGER PRIMARY KEY,
    as_of        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    channel      TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    record       TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      TEXT,
    UNIQUE (as_of, seq)
);
CREATE TABLE IF NOT EXISTS dispatch_notified (
    recipient  TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    tag        TEXT NOT NULL,
    as_of      TEXT NOT NULL,
    message_id INTEGER,
    PRIMARY KEY (recipient, finding_id, tag)
);
CREATE INDEX IF NOT EXISTS dispatch_outbox_day ON dispatch_outbox (as_of, status);
"""


@dataclass(frozen=True)
class Pending:
    """A message in the outbox not yet sent."""

    id: int
    as_of: dt.date
    seq: int
    channel: str
    channel_kind: str
    recipient: str
    kind: str
    title: str
    body: str
    payload: dict[str, Any]
    to: tuple[str, ...]
    notified: tuple[tuple[str, str, str], ...]
    attempts: int
    status: str


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Outbox:
    """The outbox tables of one history database.

    Parameters
    ----------
    path
        The history's SQLite file (it must exist: dispatch follows a recorded run).
    timeout
        Seconds to wait for another process holding the database.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        # the outbox lives in the history database: the history's connection, and its words for what went wrong
        return connect(self.path, timeout=self.timeout)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ reading
    def sent(self) -> set[tuple[str, str, str]]:
        """Every ``(recipient, finding_id, tag)`` sent so far."""
        with self._connect() as conn:
            return {tuple(r) for r in conn.execute("SELECT recipient, finding_id, tag FROM dispatch_notified")}

    def plan_stamp(self, as_of: dt.date) -> str | None:
        """The run stamp the date was planned for (None: not planned)."""
        with self._connect() as conn:
            row = conn.execute("SELECT run_stamp FROM dispatch_plans WHERE as_of = ?", (as_of.isoformat(),)).fetchone()
        return None if row is None else str(row[0])

    def unsent(self, as_of: dt.date) -> list[Pending]:
        """The date's messages not sent yet (pending or failed), in send order."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, as_of, seq, channel, channel_kind, recipient, kind, title, body, record, attempts, status "
                "FROM dispatch_outbox WHERE as_of = ? AND status IN ('pending', 'failed') ORDER BY seq",
                (as_of.isoformat(),)
            ).fetchall()
        out = []
        for r in rows:
            rec = json.loads(r[9])
            out.append(Pending(id=r[0], as_of=dt.date.fromisoformat(r[1]), seq=r[2], channel=r[3], channel_kind=r[4],
                               recipient=r[5], kind=r[6], title=r[7], body=r[8], payload=rec["payload"],
                               to=tuple(rec.get("to") or ()), notified=tuple(tuple(n) for n in rec["notified"]),
                               attempts=r[10], status=r[11]))
        return out

    def counts(self, as_of: dt.date) -> dict[str, int]:
        """Messages of the date by status."""
        with self._connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(
                "SELECT status, COUNT(*) FROM dispatch_outbox WHERE as_of = ? GROUP BY status", (as_of.isoformat(),))}

    # ------------------------------------------------------------------ writing
    def plan(self, as_of: dt.date, run_stamp: str, messages: Sequence[Message]) -> int | None:
        """Put a date's messages in the outbox, once.

        A date planned for the same run stamp is left as it is (returns None). A date whose run was
        recorded again since (another stamp) loses its unsent messages and gets these; what was sent stays
        sent, and the planner already left those items out. Unsent messages of earlier dates become
        ``superseded``: their items were never marked told, so these messages carry the ones still open,
        and a late dispatch of the earlier date cannot tell them twice.

        Returns
        -------
        int or None
            The number of earlier messages superseded; None when the date was planned already.
        """
        day = as_of.isoformat()
        with self._transaction() as conn:
            row = conn.execute("SELECT run_stamp FROM dispatch_plans WHERE as_of = ?", (day,)).fetchone()
            if row is not None and row[0] == run_stamp:
                return None
            conn.execute("DELETE FROM dispatch_outbox WHERE as_of = ? AND status != 'sent'", (day,))
            start = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM dispatch_outbox WHERE as_of = ?",
                                 (day,)).fetchone()[0]
            conn.executemany(
                "INSERT INTO dispatch_outbox (as_of, seq, channel, channel_kind, recipient, kind, title, body, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(day, start + n, m.channel, m.channel_kind, m.recipient, m.kind, m.title, m.body, to_json(m))
                 for n, m in enumerate(messages, start=1)])
            conn.execute("INSERT INTO dispatch_plans (as_of, run_stamp, planned) VALUES (?, ?, ?) ON CONFLICT(as_of) "
                         "DO UPDATE SET run_stamp = excluded.run_stamp, planned = excluded.planned",
                         (day, run_stamp, _now()))
            old = conn.execute("UPDATE dispatch_outbox SET status = 'superseded' WHERE as_of < ? AND status IN "
                               "('pending', 'failed')", (day,)).rowcount
        return int(old)

    def mark_sent(self, message: Pending, attempts: int) -> None:
        """The message went out: mark it and everything it told, in one transaction."""
        with self._transaction() as conn:
            conn.execute("UPDATE dispatch_outbox SET status = 'sent', attempts = attempts + ?, sent_at = ?, "
                         "last_error = NULL WHERE id = ?", (attempts, _now(), message.id))
            conn.executemany("INSERT OR IGNORE INTO dispatch_notified (recipient, finding_id, tag, as_of, message_id) "
                             "VALUES (?, ?, ?, ?, ?)",
                             [(r, f, t, message.as_of.isoformat(), message.id) for r, f, t in message.notified])

    def mark_failed(self, message: Pending, attempts: int, error: str) -> None:
        """The message did not go out (``error`` must already be free of secrets)."""
        with self._transaction() as conn:
            conn.execute("UPDATE dispatch_outbox SET status = 'failed', attempts = attempts + ?, last_error = ? "
                         "WHERE id = ?", (attempts, error[:500], message.id))
