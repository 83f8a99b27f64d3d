"""谁丢分、谁担责: the ledger of points lost, the period ranking and the trend (report.html, ``gisgrid score``).

The arithmetic is :mod:`gisgrid.scoring`'s; this module gathers its inputs from a
run (the lifecycle table) or from the history (the observations of a period),
builds the tables of ``points.csv`` and ``points.xlsx`` and renders the report's
section (``templates/points.html.j2``). The files are written by the caller
through :mod:`gisgrid.io`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from gisgrid import scoring
from gisgrid.findings import with_lifecycle
from gisgrid.scoring import LEVELS, TIE_BREAKS, Period, Scheme
from gisgrid.vocab import SEVERITY_LABELS, as_number, as_shown, kind_label

if TYPE_CHECKING:
    from gisgrid.history import History

__all__ = ["MAX_LEDGER_ROWS", "TOTALS_KEY", "PeriodScores", "period_scores", "points_note", "points_sheets",
           "render_points", "run_points", "with_ranking"]

logger = logging.getLogger(__name__)

#: Ledger rows shown in report.html (points.csv holds every row).
MAX_LEDGER_ROWS = 1000
#: The key of a run's recorded totals that holds :func:`gisgrid.scoring.village_book`.
TOTALS_KEY = "scoring"

_FLAG_TEXT = {"red": "红旗 red flag", "yellow": "黄牌 yellow card", "": ""}


@dataclass
class PeriodScores:
    """A period's (or period to date's) scores: the standings and ledger of each level, and the trend.

    Attributes
    ----------
    period : Period
        The period (``end`` is the day scored to, for a period to date).
    runs : list of date
        The runs in it.
    levels : dict
        ``village`` and ``department`` standings (:func:`gisgrid.scoring.standings`).
    ledger : DataFrame
        The period's ledger of both levels (:func:`gisgrid.scoring.ledgers`).
    trend : dict
        Per level, the scores of the last ``scheme.trend`` periods and the change (:func:`gisgrid.scoring.trend`).
    """

    period: Period
    scheme: Scheme
    runs: list[dt.date] = field(default_factory=list)
    levels: dict[str, pd.DataFrame] = field(default_factory=dict)
    ledger: pd.DataFrame = field(default_factory=pd.DataFrame)
    trend: dict[str, pd.DataFrame] = field(default_factory=dict)
    folder: Path | None = None  # where ``gisgrid score`` wrote it

    def ranking(self) -> pd.DataFrame:
        """Both levels in one table (``level`` first), as ``ranking.csv`` holds them."""
        parts = [t.assign(level=lvl) for lvl, t in self.levels.items()]
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        return out[["level", *[c for c in out.columns if c != "level"]]] if len(out.columns) else out

    def lines(self, top: int = 3) -> list[str]:
        """A few lines for a terminal: per level, the flags and the best and worst."""
        out = [f"period {self.period.label} ({self.period.start.isoformat()} – {self.period.end.isoformat()}), "
               f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"]
        for lvl, table in self.levels.items():
            if not len(table):
                out.append(f"  {lvl}: none scored")
                continue
            red = [_who(r) for r in table.to_dict("records") if r["flag"] == "red"]
            yellow = [_who(r) for r in table.to_dict("records") if r["flag"] == "yellow"]
            out.append(f"  {lvl}: red {', '.join(red) or '-'}; yellow {', '.join(yellow) or '-'}")
            change = _changes(self.trend.get(lvl))
            shown = table.head(top).to_dict("records") + (table.tail(1).to_dict("records")
                                                          if top and len(table) > top else [])
            for r in shown:
                delta = change.get(r["party"])
                out.append(f"    {r['rank']:>3}. {_who(r)}  {r['score']:.2f}"
                           + ("" if delta is None else f" ({delta:+.2f})"))
        return out


def _who(row: Mapping[str, Any]) -> str:
    name, party = as_shown(row.get("name")), as_shown(row.get("party"))
    return party if not name or name == party else f"{name} ({party})"


def _changes(trend: pd.DataFrame | None) -> dict[str, float | None]:
    if trend is None or "change" not in trend.columns:
        return {}
    return {p: as_number(c) for p, c in zip(trend["party"], trend["change"], strict=True)}


def _book(history: History | None, day: dt.date, fallback: Mapping[str, Any] | None) -> dict[str, Any]:
    """The village names and hygiene recorded with the last run up to ``day`` (else ``fallback``)."""
    if history is not None:
        runs = history.runs()
        runs = runs[runs["as_of"].map(lambda d: d <= day)]
        for totals in reversed(list(runs["totals"])):
            book = (totals or {}).get(TOTALS_KEY)
            if book:
                return dict(book)
    return dict(fallback or {})


def period_scores(history: History | None, period: Period, scheme: Scheme, *,
                  run_view: pd.DataFrame | None = None, book: Mapping[str, Any] | None = None,
                  run_ledger: pd.DataFrame | None = None) -> PeriodScores:
    """Score a period (to ``period.end``) and the ``scheme.trend - 1`` periods before it.

    Parameters
    ----------
    history
        The run history (None: only ``run_view`` is scored, as a period of one run).
    period
        The period; its ``end`` is the last day counted (a period to date ends on the run date).
    scheme
        The 测评体系.
    run_view
        The view of the run being reported (:func:`gisgrid.scoring.run_view`), used without a history.
    book
        Village names and hygiene (:func:`gisgrid.scoring.village_book`) when the history has none.
    run_ledger
        The ledger of ``run_view`` when the caller has it (without a history the period is that run).
    """
    def score(p: Period) -> tuple[list[dt.date], pd.DataFrame]:
        if history is None:
            return [], run_view if run_view is not None else scoring.period_view(pd.DataFrame())
        obs = history.observations(p.start, p.end)
        return sorted(set(obs["as_of"])), scoring.period_view(obs)

    runs, view = score(period)
    if history is None and run_view is not None:
        runs = [period.end]
    info = _book(history, period.end, book)
    villages, hygiene = dict(info.get("villages") or {}), dict(info.get("hygiene") or {})
    if not villages:
        logger.warning("scoring %s: the runs recorded no village list (recorded by an older gisgrid): villages "
                       "without findings are not ranked and show their ids; the next run records it", period.label)
    reuse = history is None and run_view is not None  # the period is that one run: its ledger is the run's
    ledger = run_ledger if reuse and run_ledger is not None else scoring.ledgers(view, scheme, villages=villages)
    books = {lvl: ledger[ledger["level"] == lvl].drop(columns=["name"]) for lvl in LEVELS}
    levels = scoring.level_tables(view, scheme, villages=villages, hygiene=hygiene, books=books)
    history_of: list[tuple[Period, dict[str, pd.DataFrame]]] = [(period, levels)]
    if history is not None:
        p = period
        for _ in range(scheme.trend - 1):
            p = p.previous()
            prev_runs, prev_view = score(p)
            tables = scoring.level_tables(prev_view, scheme, villages=villages, hygiene=hygiene) if prev_runs \
                else {lvl: pd.DataFrame(columns=["party", "name", "score"]) for lvl in LEVELS}
            history_of.insert(0, (p, tables))
    trend = {lvl: scoring.trend([(p, t[lvl]) for p, t in history_of]) for lvl in LEVELS}
    return PeriodScores(period=period, scheme=scheme, runs=runs, levels=levels, ledger=ledger, trend=trend)


def with_ranking(card: pd.DataFrame, villages: pd.DataFrame) -> pd.DataFrame:
    """The village scorecard (coverage columns) with the 测评体系's ``rank``, ``score`` and ``flag``, in its order."""
    ranked = villages.set_index("party")
    out = card.drop(columns=["rank", "score", "flag"], errors="ignore").copy()
    ids = out["village_id"].astype(str)
    out.insert(0, "rank", ids.map(ranked["rank"]).fillna(len(ranked) + 1).astype(int).to_numpy())
    out["score"] = ids.map(ranked["score"]).to_numpy(dtype=float)
    out["lost"] = ids.map(ranked["lost"]).to_numpy(dtype=float)
    out["flag"] = ids.map(ranked["flag"]).fillna("").to_numpy(dtype=object)
    order = {p: i for i, p in enumerate(ranked.index)}
    out = out.iloc[np.argsort([order.get(v, len(order)) for v in ids], kind="stable")]
    return out.reset_index(drop=True)


def points_sheets(run_ledger: pd.DataFrame, scores: PeriodScores) -> dict[str, pd.DataFrame]:
    """The sheets of ``points.xlsx``: this run's ledger, the period's ranking of each level, the trend, the scheme."""
    sheets = {"失分台账 ledger": run_ledger}
    for lvl, table in scores.levels.items():
        sheets[f"{lvl} {scores.period.label}"] = table
    for lvl, table in scores.trend.items():
        sheets[f"trend {lvl}"] = table
    sheets["测评体系 scheme"] = scores.scheme.table()
    return sheets


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gisgrid.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pts"] = lambda v: "—" if as_number(v) is None else f"{float(v):,.2f}"
    env.filters["delta"] = lambda v: "" if as_number(v) is None else f"{float(v):+.2f}"
    return env


def _owner_blocks(run_ledger: pd.DataFrame) -> tuple[list[dict[str, Any]], int]:
    """Per party (most points lost first), its ledger rows; at most :data:`MAX_LEDGER_ROWS` rows in all."""
    if not len(run_ledger):
        return [], 0
    groups = run_ledger.groupby(["level", "party"], sort=False)
    totals = groups["points"].sum()
    order = sorted(totals.index, key=lambda k: (k[0] != "village", totals[k], k[1]))
    rows_of = groups.indices  # one pass over the ledger, not one mask per party
    blocks, shown = [], 0
    for lvl, party in order:
        rows = run_ledger.iloc[rows_of[(lvl, party)]]
        take = rows.head(max(MAX_LEDGER_ROWS - shown, 0))
        shown += len(take)
        blocks.append({
            "level": lvl, "party": party, "name": as_shown(rows["name"].iat[0]) if "name" in rows else party,
            "total": float(totals[(lvl, party)]), "count": len(rows),
            "rows": [{"finding_id": as_shown(r["finding_id"]), "kind": as_shown(r["kind"]),
                      "kind_label": kind_label(as_shown(r["kind"])), "status": as_shown(r["status"]),
                      "severity": SEVERITY_LABELS.get(as_shown(r.get("severity")), as_shown(r.get("severity"))),
                      "rule": as_shown(r["rule"]), "points": r["points"]} for r in take.to_dict("records")],
        })
    return blocks, max(len(run_ledger) - shown, 0)


def _table_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{**r, "flag_text": _FLAG_TEXT.get(as_shown(r.get("flag")), "")} for r in table.to_dict("records")]


def render_points(run_ledger: pd.DataFrame, scores: PeriodScores, *, as_of: dt.date) -> markupsafe.Markup:
    """The report's section 谁丢分、谁担责 (HTML, every text escaped).

    The run's ledger per party, the period ranking of the departments, the trend of both levels and the scheme.
    """
    blocks, more = _owner_blocks(run_ledger)
    trends = []
    for lvl, table in scores.trend.items():
        labels = [c for c in table.columns if c not in ("party", "name", "change")]
        trends.append({"level": lvl, "title": LEVELS[lvl][1], "labels": labels,
                       "rows": [{"who": _who(r), "scores": [r[c] for c in labels], "change": r.get("change")}
                                for r in table.to_dict("records")]})
    html = _environment().get_template("points.html.j2").render(
        as_of=as_of.isoformat(), period=scores.period.label, runs=len(scores.runs),
        start=scores.period.start.isoformat(), blocks=blocks, more=more,
        departments=_table_rows(scores.levels.get("department", pd.DataFrame())),
        department_title=LEVELS["department"][1], trends=trends,
        scheme=scores.scheme.table().to_dict("records"), base=scores.scheme.base,
        red=scores.scheme.red, yellow=scores.scheme.yellow,
        tie_break=[TIE_BREAKS[k] for k in scores.scheme.tie_break])
    return markupsafe.Markup(html)


def points_note(scores: PeriodScores) -> str:
    """The line under the village scorecard: where its score comes from."""
    s = scores.scheme
    return (f"得分 score: 测评体系 [scoring], period {scores.period.label} to {scores.period.end.isoformat()} "
            f"({len(scores.runs)} run{'s' if len(scores.runs) != 1 else ''}): {s.base:g} − points lost + credit "
            f"(see 谁丢分、谁担责). Red flag: the best {s.red} without a veto item in the period; yellow card: the "
            f"worst {s.yellow}; ties after the tie-break share the rank and a tie across the count gets no flag"
            f"{' (share_ties: it does)' if s.share_ties else ''}.")


def run_points(assessment: Any, life: pd.DataFrame | None, *, history: History | None, scheme: Scheme | None,
               as_of: dt.date) -> tuple[pd.DataFrame, PeriodScores]:
    """The ledger of one run and its period to date (from the history when the run is recorded in it).

    ``life`` is the run's lifecycle table (None: the assessment's findings, all new).

    Returns
    -------
    tuple of (DataFrame, PeriodScores)
        The run's ledger of both levels (``points.csv``) and the period to ``as_of``.
    """
    scheme = scheme or Scheme()
    view = scoring.run_view(with_lifecycle(assessment, life, as_of))
    book = scoring.village_book(assessment)
    run_ledger = scoring.ledgers(view, scheme, villages=book["villages"])
    period = scoring.period_of(as_of, scheme.period).to_date(as_of)
    recorded = history is not None and history.get_run(as_of) is not None
    scores = period_scores(history if recorded else None, period, scheme, run_view=view, book=book,
                           run_ledger=run_ledger)
    return run_ledger, scores
