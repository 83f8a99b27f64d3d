"""An independent lifecycle oracle for the tests: the whole history derived at once, vectorised by stretch.

:class:`gisgrid.history.History` advances the lifecycle run by run (``_step``). This module derives the
same statuses, deadlines and reopen counts from all observations in one pass, a different algorithm
written from the rules in history's docstring, and checks a history database against it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from gisgrid.findings import SEVERITY_RANK


def replay(obs: pd.DataFrame, run_dates: list[str], run_days: list[dict[str, int]]) -> tuple[pd.DataFrame,
                                                                                             pd.DataFrame]:
    """All statuses from the observations in one pass, by stretches of consecutive runs.

    Takes what ``gisgrid.history._replay`` takes and returns the same two tables: the observations each
    run writes (``resolved`` rows included) and each finding's lifecycle after the last run.
    """
    cols = ["as_of", "finding_id", "severity", "status", "first_seen", "last_seen", "opened_on", "deadline",
            "times_reopened"]
    state_cols = ["finding_id", "first_seen", "last_seen", "opened_on", "deadline", "status", "resolved_on",
                  "times_reopened"]
    if obs.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=state_cols)
    index = {d: i for i, d in enumerate(run_dates)}
    run_dt = np.array(run_dates, dtype="datetime64[D]")
    o = pd.DataFrame({"finding_id": obs["finding_id"].astype(str).to_numpy(),
                      "k": obs["as_of"].map(index).to_numpy(dtype=np.int64),
                      "severity": obs["severity"].to_numpy(dtype=object)})
    o = o.sort_values(["finding_id", "k"], kind="stable").reset_index(drop=True)
    fid = o["finding_id"].to_numpy(dtype=object)
    k = o["k"].to_numpy()
    same = np.r_[False, fid[1:] == fid[:-1]]
    cont = same & np.r_[False, k[1:] == k[:-1] + 1]
    new_ep = ~cont
    episode = np.cumsum(new_ep)
    ep_no = pd.Series(new_ep.astype(np.int64)).groupby(fid).cumsum().to_numpy()
    sev_names = list(SEVERITY_RANK)
    table = np.array([[days.get(s, max(days.values())) for s in sev_names] for days in run_days], dtype=np.int64)
    sev_idx = o["severity"].map({s: i for i, s in enumerate(sev_names)}).fillna(len(sev_names) - 1)
    allowed = table[k, sev_idx.to_numpy(dtype=np.int64)]
    allowed = pd.Series(allowed).groupby(episode).cummin().to_numpy()
    date = run_dt[k]
    opened = pd.Series(date).groupby(episode).transform("first").to_numpy(dtype="datetime64[D]")
    first = pd.Series(date).groupby(fid).transform("first").to_numpy(dtype="datetime64[D]")
    deadline = opened + allowed.astype("timedelta64[D]")
    status = np.where(new_ep & (ep_no == 1), "new",
                      np.where(new_ep, "reopened", np.where(date > deadline, "overdue", "persisting")))
    reopened = ep_no - 1
    present = pd.DataFrame({
        "as_of": date, "finding_id": fid, "severity": o["severity"].to_numpy(dtype=object), "status": status,
        "first_seen": first, "last_seen": date, "opened_on": opened, "deadline": deadline,
        "times_reopened": reopened, "k": k,
    })
    is_last = ~np.r_[cont[1:], False]
    ends = present[is_last & (k < len(run_dates) - 1)].copy()
    ends["k"] = ends["k"] + 1
    ends["as_of"] = run_dt[ends["k"].to_numpy()]
    ends["status"] = "resolved"
    rows = pd.concat([present, ends], ignore_index=True)
    last_of_fid = ~np.r_[same[1:], False]
    st = present[last_of_fid].copy()
    gone = st["k"].to_numpy() < len(run_dates) - 1
    resolved_k = np.minimum(st["k"].to_numpy() + 1, len(run_dates) - 1)
    st["resolved_on"] = np.where(gone, run_dt[resolved_k], np.datetime64("NaT"))
    st["status"] = np.where(gone, "resolved", st["status"].to_numpy())

    def text(values: Any) -> np.ndarray:
        arr = np.asarray(values, dtype="datetime64[D]")
        out = np.datetime_as_string(arr, unit="D").astype(object)
        out[np.isnat(arr)] = None
        return out

    for frame in (rows, st):
        for c in ("as_of", "first_seen", "last_seen", "opened_on", "deadline", "resolved_on"):
            if c in frame.columns:
                frame[c] = text(frame[c].to_numpy(dtype="datetime64[D]"))
    rows = rows.sort_values(["as_of", "finding_id"], kind="stable").reset_index(drop=True)
    return rows[cols], st[state_cols].reset_index(drop=True)


def check(hist: Any) -> list[str]:
    """Problems of a history database against :func:`replay` (empty when it agrees)."""
    return hist.verify(replay=replay)


def raw_sql(hist: Any, statement: str) -> list[tuple]:
    """One statement straight on the history's tables, past the library (to look, or to tamper)."""
    if hist.path is not None:
        with sqlite3.connect(hist.path) as conn:
            return conn.execute(statement).fetchall()
    import psycopg
    from psycopg import sql

    with psycopg.connect("", autocommit=True) as conn:  # libpq's environment, as the library's own
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(hist.schema)))
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []
