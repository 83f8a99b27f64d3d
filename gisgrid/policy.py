"""Policy: the thresholds, the exit status and the village score, each decided in one place.

:func:`evaluate_thresholds` turns the findings (and their lifecycle) into the
exit status of ``gisgrid run``; :func:`scorecard` gives each village's coverage
(the ranking is :mod:`gisgrid.scoring`'s).

Default thresholds (:data:`DEFAULT_FAIL_ON`)
--------------------------------------------
A run fails (exit 1) on any open veto item, on anything overdue, and when less
than 99% of the town's area is in a grid: "OK" must never mean half the town is
uncovered. ``[report] fail_on`` overrides each (``overdue = 0`` or ``false``
switches a rule off, ``area_coverage_below = 0.95`` relaxes it).

Village coverage scorecard (0.1)
--------------------------------
The ranking, the red flags and the yellow cards are :mod:`gisgrid.scoring`'s
(the 测评体系: points lost per finding and owner, periods, ties, the veto);
the report shows :func:`scorecard`'s coverage columns beside that ranking
(:func:`gisgrid.report.points.with_ranking`). :func:`scorecard` on its own
still ranks one run by its fixed weights (:data:`SCORE_WEIGHTS`), for the
notebooks and scripts written against 0.1::

    coverage = 100 × mean(area_coverage, road_coverage)      # percent, 0–100
    score    = coverage − 20 × veto − 5 × overdue − 2 × sensitive

where ``area_coverage`` is the share of the village's area inside a grid,
``road_coverage`` is ``1 − uncovered_road_m / road_m`` (left out when the
village has no roads), ``veto`` is the number of open veto findings,
``overdue`` the open findings past their deadline and ``sensitive`` the open
findings at sensitive sections or must-check points (kinds
``sensitive_section``, ``checkpoint_incomplete``, ``poi_uncovered``) in the
village. Ties are broken by fewer open findings, then by village id. The
best-ranked village(s) get the red flag (夺红旗) unless they have an open veto
item; the worst-ranked get the yellow card (亮黄牌) when they score below the
best.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gisgrid import settings
from gisgrid._errors import ConfigError, HistoryError
from gisgrid.findings import SEVERITY_RANK, explode_ids, is_open, lifecycle_as_of, with_lifecycle
from gisgrid.vocab import as_number, as_shown, nearest, percent

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

__all__ = [
    "DEFAULT_FAIL_ON",
    "SCORE_WEIGHTS",
    "SENSITIVE_KINDS",
    "THRESHOLD_KEYS",
    "check_thresholds",
    "deadline_days",
    "effective_thresholds",
    "evaluate_thresholds",
    "scorecard",
    "village_names",
]

logger = logging.getLogger(__name__)

#: The thresholds a run applies when the config says nothing (see the module docstring).
DEFAULT_FAIL_ON: dict[str, Any] = {"veto": 1, "overdue": 1, "area_coverage_below": 0.99}
#: Weights of the 0.1 village score (see the module docstring; the ranking is gisgrid.scoring's).
SCORE_WEIGHTS: dict[str, float] = {"veto": 20.0, "overdue": 5.0, "sensitive": 2.0}
#: Kinds counted as "sensitive" in the village score.
SENSITIVE_KINDS: tuple[str, ...] = ("sensitive_section", "checkpoint_incomplete", "poi_uncovered")

#: ``fail_on`` keys: counts fail at ``>=`` the value, ``*_below`` ratios below it, ``*_above`` lengths above it.
THRESHOLD_KEYS: dict[str, str] = {
    "veto": "open veto findings (default 1; 0 or false turns the veto rule off)",
    "overdue": "open findings past their deadline",
    "reopened": "findings back again (反弹)",
    "new": "new findings",
    "open": "open findings",
    "high": "open high-severity findings",
    "area_coverage_below": "share of the town's area inside a grid",
    "effective_coverage_below": "share of the town's area inside a staffed grid",
    "road_coverage_below": "share of road length inside a grid",
    "uncovered_lane_m_above": "metres of lane in no grid",
}


def village_names(assessment: Any) -> dict[str, str]:
    """Village id -> name, from the town (or the summary when the town is not at hand)."""
    villages = getattr(getattr(assessment, "town", None), "villages", None)
    if villages is None or "village_id" not in getattr(villages, "columns", ()):
        summary = getattr(assessment, "summary", None)
        if summary is not None and "name" in summary.columns:
            return {str(k): as_shown(v) for k, v in summary["name"].items()}
        return {}
    names = villages["name"] if "name" in villages.columns else villages["village_id"]
    return {str(k): as_shown(v) for k, v in zip(villages["village_id"], names, strict=True)}


# --------------------------------------------------------------------------- thresholds
def _threshold_value(key: str, value: Any) -> float | None:
    """The limit of one ``fail_on`` rule; None when it is switched off (``false``, or 0 for a count)."""
    if isinstance(value, bool):
        if value and key != "veto":
            msg = f"fail_on.{key} must be a number (or false to switch it off), not {value!r}."
            raise ConfigError(msg, fix=f"write e.g. fail_on = {{ {key} = 1 }}")
        return 1.0 if value else None
    f = as_number(value)
    if f is None or f < 0:
        msg = f"fail_on.{key} must be a number >= 0, not {value!r}."
        raise ConfigError(msg, fix=f"write e.g. fail_on = {{ {key} = 1 }}")
    if f == 0 and not key.endswith(("_below", "_above")):
        return None  # "fail when 0 or more" would fail every night: 0 switches a count off
    return f


def effective_thresholds(fail_on: Mapping[str, Any] | None) -> dict[str, Any]:
    """The thresholds a run applies: :data:`DEFAULT_FAIL_ON` with the config's ``fail_on`` over it."""
    return {**DEFAULT_FAIL_ON, **check_thresholds(fail_on)}


def check_thresholds(fail_on: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check the ``[report] fail_on`` table before a run: known keys, numbers >= 0.

    Raises
    ------
    ConfigError
        An unknown key (with the nearest known one) or a value that is not a number.
    """
    rules = dict(fail_on or {})
    bad = sorted(str(k) for k in rules if k not in THRESHOLD_KEYS)
    if bad:
        close = nearest(bad, THRESHOLD_KEYS)
        hint = f"did you mean {close!r}? " if close else ""
        msg = f"[report] fail_on has unknown key(s) {bad}."
        raise ConfigError(msg, fix=f"{hint}use {sorted(THRESHOLD_KEYS)}")
    for key, value in rules.items():
        _threshold_value(key, value)
    return rules


def evaluate_thresholds(
    assessment: Assessment,
    lifecycle: pd.DataFrame | None,
    fail_on: Mapping[str, Any] | None,
) -> tuple[int, str]:
    """Decide the exit status of a run: 1 on a veto item or a configured threshold, else 0.

    Parameters
    ----------
    assessment
        The assessment (``.findings``, ``.totals``).
    lifecycle
        The table :meth:`gisgrid.history.History.record` returned (None:
        every finding of the assessment counts as new and open).
    fail_on
        The ``[report] fail_on`` table, e.g. ``{"overdue": 1,
        "area_coverage_below": 0.99}``; keys in :data:`THRESHOLD_KEYS`. Counts
        fail when they reach the value, ``*_below`` ratios when they fall
        below it, ``*_above`` lengths when they exceed it. It is applied over
        :data:`DEFAULT_FAIL_ON` (any veto, anything overdue, area coverage below
        99%); 0 or ``false`` switches a count off.

    Returns
    -------
    tuple of (int, str)
        Exit code 0 or 1, and the reason in one line.

    Raises
    ------
    ConfigError
        For an unknown key or a value that is not a number.
    """
    rules = effective_thresholds(fail_on)
    life = with_lifecycle(assessment, lifecycle, lifecycle_as_of(lifecycle))
    open_ = life[is_open(life)]
    counts = {
        "veto": int((open_["severity"] == "veto").sum()),
        "high": int((open_["severity"] == "high").sum()),
        "overdue": int((open_["status"] == "overdue").sum()),
        "reopened": int((open_["status"] == "reopened").sum()),
        "new": int((open_["status"] == "new").sum()),
        "open": len(open_),
    }
    totals = dict(getattr(assessment, "totals", None) or {})
    hits: list[str] = []
    veto_limit = _threshold_value("veto", rules.get("veto", 1))
    if veto_limit and counts["veto"] >= veto_limit:
        kinds = open_.loc[open_["severity"] == "veto", "kind"].value_counts()
        what = ", ".join(f"{k} {v}" for k, v in kinds.items())
        hits.append(f"{counts['veto']} veto item{'s' if counts['veto'] != 1 else ''} (一票否决: {what})")
    for key in ("overdue", "reopened", "new", "open", "high"):
        if key in rules:
            limit = _threshold_value(key, rules[key])
            if limit and counts[key] >= limit:
                hits.append(f"{key} {counts[key]} >= {limit:g}")
    for key in ("area_coverage_below", "effective_coverage_below", "road_coverage_below"):
        if key in rules:
            limit = _threshold_value(key, rules[key])
            name = key.removesuffix("_below")
            value = as_number(totals.get(name))
            if value is None:
                logger.warning("fail_on.%s: the assessment has no %s; threshold not checked", key, name)
            elif limit is not None and value < limit:
                hits.append(f"{name.replace('_', ' ')} {percent(value)} < {percent(limit)}")
    if "uncovered_lane_m_above" in rules:
        limit = _threshold_value("uncovered_lane_m_above", rules["uncovered_lane_m_above"])
        value = as_number(totals.get("uncovered_lane_m"))
        if value is None:
            logger.warning("fail_on.uncovered_lane_m_above: the assessment has no uncovered_lane_m; not checked")
        elif limit is not None and value > limit:
            hits.append(f"uncovered lanes {value:,.0f} m > {limit:,.0f} m")
    if hits:
        return 1, "; ".join(hits)
    return 0, "within thresholds"


# --------------------------------------------------------------------------- scorecard
def scorecard(assessment: Assessment, lifecycle: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rank the villages (村居排名) by the score in the module docstring.

    Parameters
    ----------
    assessment
        The assessment (``.summary`` per village, ``.town.villages``).
    lifecycle
        The lifecycle table (default: the assessment's findings, all open).

    Returns
    -------
    DataFrame
        One row per village, best first: ``rank``, ``village_id``, ``name``,
        ``area_coverage``, ``road_coverage``, ``coverage`` (percent),
        ``veto``, ``overdue``, ``sensitive``, ``open``, ``score``, ``flag``
        (``"red"``, ``"yellow"`` or ``""``).
    """
    life = with_lifecycle(assessment, lifecycle, lifecycle_as_of(lifecycle))
    names = village_names(assessment)
    summary = getattr(assessment, "summary", None)
    if summary is None:
        summary = pd.DataFrame(index=pd.Index(sorted(names), name="village_id"))
    s = pd.DataFrame(summary).copy()
    s.index = s.index.astype(str)
    ids = list(s.index)
    area = s["area_coverage"] if "area_coverage" in s.columns else (
        s["grid_area_m2"] / s["area_m2"] if {"grid_area_m2", "area_m2"} <= set(s.columns) else
        pd.Series(np.nan, index=s.index))
    area = pd.to_numeric(area, errors="coerce").clip(0, 1)
    if "road_coverage" in s.columns:
        road = pd.to_numeric(s["road_coverage"], errors="coerce").clip(0, 1)
    elif {"road_m", "uncovered_road_m"} <= set(s.columns):
        road_m = pd.to_numeric(s["road_m"], errors="coerce")
        road = (1 - pd.to_numeric(s["uncovered_road_m"], errors="coerce") / road_m.where(road_m > 0)).clip(0, 1)
    else:
        road = pd.Series(np.nan, index=s.index)
    coverage = (pd.concat([area, road], axis=1).mean(axis=1, skipna=True) * 100).fillna(100.0)
    # a finding about two villages costs both (谁丢分、谁担责)
    open_ = explode_ids(pd.DataFrame(life[is_open(life)][["village_id", "severity", "status", "kind"]]),
                        "village_id")
    vid = open_["village_id"]

    def per_village(mask: pd.Series) -> pd.Series:
        return vid[mask].value_counts().reindex(ids, fill_value=0).astype(int)

    card = pd.DataFrame({
        "village_id": ids,
        "name": [names.get(v, as_shown(s["name"].get(v)) if "name" in s.columns else v) or v for v in ids],
        "area_coverage": area.to_numpy(),
        "road_coverage": road.to_numpy(),
        "coverage": coverage.to_numpy(),
        "veto": per_village(open_["severity"] == "veto").to_numpy(),
        "overdue": per_village(open_["status"] == "overdue").to_numpy(),
        "sensitive": per_village(open_["kind"].isin(SENSITIVE_KINDS)).to_numpy(),
        "open": per_village(pd.Series(True, index=open_.index)).to_numpy(),
    })
    w = SCORE_WEIGHTS
    card["score"] = (card["coverage"] - w["veto"] * card["veto"] - w["overdue"] * card["overdue"]
                     - w["sensitive"] * card["sensitive"]).round(2)
    card = card.sort_values(["score", "open", "village_id"], ascending=[False, True, True], kind="stable")
    card = card.reset_index(drop=True)
    card.insert(0, "rank", card["score"].rank(method="min", ascending=False).astype(int))
    card["flag"] = ""
    if len(card):
        best, worst = card["score"].max(), card["score"].min()
        card.loc[(card["score"] == best) & (card["veto"] == 0), "flag"] = "red"
        if worst < best:
            card.loc[card["score"] == worst, "flag"] = "yellow"
    return card


def deadline_days(deadlines: Mapping[str, Any] | None) -> dict[str, int]:
    """Days allowed to fix a finding, per severity: ``settings.deadline_days`` with the config's overrides.

    Raises
    ------
    HistoryError
        An unknown severity, or a value that is not a whole number of days >= 0.
    """
    days = {str(k): int(v) for k, v in settings.deadline_days.items()}
    for sev, value in (deadlines or {}).items():
        if sev not in SEVERITY_RANK:
            msg = f"deadlines names an unknown severity {sev!r}."
            raise HistoryError(msg, fix=f"use the severities {list(SEVERITY_RANK)}")
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = -1
        if n < 0 or n != value:
            msg = f"the deadline for {sev} must be a whole number of days >= 0, not {value!r}."
            raise HistoryError(msg, fix="write e.g. deadlines = { veto = 3, high = 7 }")
        days[str(sev)] = n
    return days
