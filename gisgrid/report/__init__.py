"""The coverage-gap report folder: HTML, CSV, XLSX, GeoJSON and a JSON summary.

:func:`write_report` fills ``reports/YYYY-MM-DD/`` (the pipeline stages and
swaps the folder). The thresholds, the exit status and the village score are
:mod:`gisgrid.policy`'s.

``html`` renders report.html (``charts`` draws its charts), ``tables`` builds
the findings table, the workbook's sheets and the GeoJSON frame; the XLSX
itself is written by :func:`gisgrid.io.write_xlsx`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gisgrid import __version__, io
from gisgrid.findings import SEVERITY_RANK, is_open
from gisgrid.policy import SCORE_WEIGHTS, THRESHOLD_KEYS, effective_thresholds, evaluate_thresholds, scorecard
from gisgrid.report.charts import _label as _label  # tests call it here
from gisgrid.report.charts import cjk_font, use_cjk_font
from gisgrid.report.html import MAX_ROWS, _build, _safe_href, render_html
from gisgrid.report.tables import MAX_HYGIENE_ROWS, MAX_SHEETS, _finding_table, _geojson_frame, _hygiene_table, _sheets
from gisgrid.scoring import Scheme
from gisgrid.vocab import KIND_ZH, SEVERITY_LABELS, STATUS_LABELS

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment
    from gisgrid.history import History

__all__ = [
    "KIND_LABELS",
    "MAX_HYGIENE_ROWS",
    "MAX_ROWS",
    "MAX_SHEETS",
    "SCORE_WEIGHTS",
    "SEVERITY_LABELS",
    "STATUS_LABELS",
    "THRESHOLD_KEYS",
    "cjk_font",
    "evaluate_thresholds",
    "render_html",
    "scorecard",
    "use_cjk_font",
    "write_report",
]

logger = logging.getLogger(__name__)


#: The labels of the one vocabulary (kept here under their 0.1 names).
KIND_LABELS = KIND_ZH


def write_report(
    assessment: Assessment,
    out: str | os.PathLike[str],
    lifecycle: pd.DataFrame | None = None,
    *,
    history: History | None = None,
    map_href: str | None = None,
    fail_on: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
    verdict: tuple[int, str] | None = None,
    scheme: Scheme | None = None,
    points: tuple[pd.DataFrame, Any] | None = None,
) -> list[Path]:
    """Write the report files of one run into ``out``.

    Parameters
    ----------
    assessment
        The assessment: ``.town`` (name, villages), ``.findings``,
        ``.summary`` (per village), ``.totals``; ``.checkpoints`` optional.
    out
        The report folder (``reports/YYYY-MM-DD``, or the pipeline's staging
        folder); created when missing.
    lifecycle
        The table :meth:`gisgrid.history.History.record` returned (today's
        findings plus those resolved since the last run), or None (no
        history: every finding is new).
    history
        The :class:`~gisgrid.history.History`, for the change since the last
        run and the over-time chart.
    map_href
        Link to the command-center map (relative path or http(s) URL).
    fail_on
        Thresholds, see :func:`gisgrid.policy.evaluate_thresholds`.
    as_of
        Date of the report (default: the run date in ``lifecycle``, else today).
    verdict
        The exit status and its reason, as :func:`gisgrid.policy.evaluate_thresholds`
        decided them for this run (default: decided here from ``fail_on``).
    scheme
        The 测评体系 (:class:`gisgrid.scoring.Scheme`; default the shipped one): ``points.csv`` and
        ``points.xlsx`` (失分台账) and the period to date in the scorecard.
    points
        This run's ledger and period to date as :func:`gisgrid.report.points.run_points` made them, when the
        caller has them already (default: computed here).

    Returns
    -------
    list of Path
        ``report.html``, ``findings.csv``, ``findings.xlsx``,
        ``findings.geojson``, ``hygiene.csv`` (with a digitising tolerance:
        per grid, the slivers it absorbed), ``summary.json``; each written
        atomically.
    """
    if isinstance(assessment, (str, os.PathLike)):  # the 0.1 order: write_report(folder, assessment, lifecycle)
        warnings.warn("write_report(folder, assessment, ...) is now write_report(assessment, folder, ...)",
                      DeprecationWarning, stacklevel=2)
        assessment, out = out, assessment  # type: ignore[assignment]
    folder = Path(out)
    started: dict[str, Any] = {}

    def tables_ready(life: pd.DataFrame, names: dict[str, str], card: pd.DataFrame) -> None:
        # the workbook (the slowest file) is written by a second process while the page renders
        started["table"] = table = _finding_table(life, names)
        started["xlsx"] = io.start_xlsx(_sheets(table, card, assessment), folder / "findings.xlsx")

    try:
        built = _build(assessment, lifecycle, history=history, map_href=map_href, fail_on=fail_on, as_of=as_of,
                       verdict=verdict, scheme=scheme, points_result=points, tables_ready=tables_ready)
        life, names, card = built["life"], built["names"], built["card"]
        page = io.atomic_write_text(folder / "report.html", built["html"])
        csv = io.write_csv(started["table"], folder / "findings.csv")
        geo = _geojson_frame(life, names)
        if geo.crs is None:
            logger.warning("report: findings have no CRS; findings.geojson is written in their own coordinates")
        geojson = io.write_geojson(geo, folder / "findings.geojson")
        hygiene = _hygiene_table(assessment)
        extra = [io.write_csv(hygiene.map(io.defuse), folder / "hygiene.csv")] if hygiene is not None else []
    except BaseException:
        if "xlsx" in started:
            started["xlsx"].cancel()
        raise
    written = [page, csv, started["xlsx"].result(), geojson, *extra]
    summary = _summary(built, life, card, fail_on, map_href, [p.name for p in written] + ["summary.json"])
    written.append(io.atomic_write_text(folder / "summary.json",
                                        json.dumps(io.jsonable(summary), ensure_ascii=False, indent=2) + "\n"))
    logger.info("report %s: %d findings (%s); exit %d: %s", folder, len(life),
                ", ".join(f"{k} {v}" for k, v in life["status"].value_counts().items()) or "none",
                built["code"], built["reason"])
    return written


def _summary(built: dict[str, Any], life: pd.DataFrame, card: pd.DataFrame, fail_on: Mapping[str, Any] | None,
             map_href: str | None, files: list[str]) -> dict[str, Any]:
    open_ = life[is_open(life)]
    totals = built["totals"]
    previous = built["previous"]
    villages = {
        r["village_id"]: {k: r[k] for k in ("name", "rank", "score", "flag", "coverage", "area_coverage",
                                            "road_coverage", "veto", "overdue", "sensitive", "open")}
        for r in card.to_dict("records")
    }
    return {
        "town": built["town"],
        "as_of": built["day"].isoformat(),
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gisgrid_version": __version__,
        "exit_status": built["code"],
        "reason": built["reason"],
        "thresholds": effective_thresholds(fail_on),
        "counts": {
            "total": len(life),
            "open": len(open_),
            "by_status": {s: int((life["status"] == s).sum()) for s in ("new", "persisting", "overdue", "reopened",
                                                                        "resolved")},
            "by_severity": {s: int((open_["severity"] == s).sum()) for s in SEVERITY_RANK},
            "by_kind": {str(k): int(v) for k, v in open_["kind"].value_counts().sort_index().items()},
        },
        "coverage": {
            **{k: totals.get(k) for k in ("area_coverage", "effective_coverage", "road_coverage",
                                         "uncovered_lane_m") if k in totals},
            "villages": villages,
        },
        "hygiene": {k: totals.get(k) for k in (
            "tolerance_m", "slivers", "sliver_area_m2", "sliver_gap_area_m2", "sliver_overlap_area_m2",
            "village_slivers", "village_sliver_area_m2", "road_crumbs", "road_crumb_m") if k in totals},
        # effective coverage: reach length and grids patrolled in the judged month (gisgrid.checks.patrols)
        "patrols": {k: totals.get(k) for k in ("patrol_month", "river_patrolled", "grid_patrolled", "patrols",
                                               "patrols_valid", "patrol_fixes", "patrol_rows_refused") if k in totals},
        "outside_town": totals.get("outside") or {},  # counted, not checked
        "derived": totals.get("derived") or {},  # values gisgrid filled in (derived.csv)
        "flags": {
            "red": [r["village_id"] for r in card.to_dict("records") if r["flag"] == "red"],
            "yellow": [r["village_id"] for r in card.to_dict("records") if r["flag"] == "yellow"],
        },
        "previous_run": None if previous is None else {
            "as_of": previous.as_of.isoformat(), "counts": previous.counts, "totals": previous.totals},
        "map_href": _safe_href(map_href),
        "files": files,
    }
