"""report.html: the page of one run, from ``templates/report.html.j2``.

It leads with what a command center reads first: the headline numbers against the
last run, the veto and overdue items, the village scorecard and the counts per
owner; then the open, new and fixed findings, the charts and the data hygiene.
A list longer than :data:`FLAT_ROWS` is grouped by village (collapsed, with its
counts per kind) and shows at most :data:`GROUP_ROWS` rows per village; the
CSV and XLSX beside the page hold every finding. Self-contained: inline CSS,
charts as data URIs, and one inline script (the filter boxes, allowed by its
hash in the page's Content-Security-Policy; the page works without it).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import importlib.resources
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from gisgrid import __version__, settings
from gisgrid.findings import (
    KINDS,
    explode_ids,
    id_list,
    is_open,
    lifecycle_as_of,
    show_ids,
    sort_findings,
    with_lifecycle,
)
from gisgrid.policy import SENSITIVE_KINDS, evaluate_thresholds, scorecard, village_names
from gisgrid.report import points
from gisgrid.report.charts import _charts
from gisgrid.vocab import KIND_ZH, METRIC_LABELS, SEVERITY_LABELS, STATUS_LABELS, as_number, as_shown, percent

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment
    from gisgrid.history import History, Run

logger = logging.getLogger(__name__)

#: Most finding rows in one section of report.html (the CSV and XLSX hold every finding).
MAX_ROWS = 1000
#: A list this long or shorter is one table; a longer one is grouped by village, collapsed, with counts per kind.
FLAT_ROWS = 25
#: Most rows shown per village group (fewer when there are many villages, so a section stays within MAX_ROWS).
GROUP_ROWS = 50
#: Most rows shown per owner in the responsibility lists.
OWNER_ROWS = 20


def _safe_href(href: str | None) -> str | None:
    """A link that is a relative path or an http(s)/file URL, else None."""
    if not href:
        return None
    scheme = urlsplit(str(href)).scheme.lower()
    if scheme in ("", "http", "https", "file"):
        return str(href)
    logger.warning("report: map link %r ignored (only relative paths and http(s)/file URLs are linked)", href)
    return None


_HEADLINES: tuple[tuple[str, str, str, bool], ...] = (
    # key, label, format, higher is better
    ("area_coverage", METRIC_LABELS["area_coverage"], "pct", True),
    ("effective_coverage", METRIC_LABELS["effective_coverage"], "pct", True),
    ("road_coverage", METRIC_LABELS["road_coverage"], "pct", True),
    ("uncovered_lane_m", f"{METRIC_LABELS['uncovered_lane_m']} (m)", "m", False),
    ("river_patrolled", "河道巡查覆盖 reach length patrolled in period", "pct", True),
    ("grid_patrolled", "网格巡查覆盖 grids patrolled in period", "pct", True),
    ("open", "未整改问题 open findings", "int", False),
    ("veto", "一票否决 veto items", "int", False),
    ("overdue", "逾期 overdue", "int", False),
    ("new", "新发现 new", "int", False),
    ("reopened", "反弹 back again", "int", False),
    ("resolved", "已整改 fixed since last run", "int", True),
)


def _headline(assessment: Assessment, life: pd.DataFrame, previous: Run | None) -> list[dict[str, Any]]:
    totals = dict(getattr(assessment, "totals", None) or {})
    open_ = life[is_open(life)]
    now: dict[str, float | None] = {k: as_number(totals.get(k)) for k in
                                    ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m",
                                     "river_patrolled", "grid_patrolled")}
    now["open"] = len(open_)
    now["veto"] = int((open_["severity"] == "veto").sum())
    for st in ("overdue", "new", "reopened", "resolved"):
        now[st] = int((life["status"] == st).sum())
    before: dict[str, float | None] = {}
    if previous is not None:
        counts = dict(getattr(previous, "counts", {}) or {})
        ptot = dict(getattr(previous, "totals", {}) or {})
        for k in ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m", "river_patrolled",
                  "grid_patrolled"):
            before[k] = as_number(ptot.get(k))
        before["open"] = as_number(counts.get("open"))
        before["veto"] = as_number((counts.get("severity") or {}).get("veto"))
        for st in ("overdue", "new", "reopened", "resolved"):
            before[st] = as_number((counts.get("status") or {}).get(st))
    cards = []
    for key, label, fmt, higher_better in _HEADLINES:
        value = now.get(key)
        if value is None and key in ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m",
                                     "river_patrolled", "grid_patrolled") and key not in totals:
            continue  # an assessment without it (a ratio over nothing is in totals, as NaN, and reads n/a)
        prev = before.get(key)
        delta = None if value is None or prev is None else value - prev
        trend = "same"
        if delta is not None and abs(delta) > 1e-12:
            trend = "better" if (delta > 0) == higher_better else "worse"
        cards.append({"key": key, "label": label, "value": _fmt(value, fmt), "delta": _fmt_delta(delta, fmt),
                      "trend": trend, "has_previous": prev is not None})
    return cards


def _fmt(value: float | None, fmt: str) -> str:
    if fmt == "pct":
        return percent(value)  # None (over nothing) reads n/a
    if value is None:
        return "—"
    if fmt == "m":
        return f"{value:,.0f}"
    return f"{int(value):,d}"


def _fmt_delta(delta: float | None, fmt: str) -> str:
    if delta is None:
        return ""
    if abs(delta) < 1e-12:
        return "±0"
    if fmt == "pct":
        return f"{delta * 100:+.2f} pp"
    if fmt == "m":
        return f"{delta:+,.0f}"
    return f"{round(delta):+,d}"


def _measure(value: Any, unit: Any) -> str:
    f = as_number(value)
    if f is None:
        return ""
    unit = as_shown(unit)
    if unit in ("m2", "m²"):
        return f"{f:,.0f} m²"
    if unit == "m":
        return f"{f:,.1f} m"
    if unit == "count" or float(f).is_integer():
        return f"{f:,.0f}" + (f" {unit}" if unit and unit != "count" else "")
    return f"{f:,.2f} {unit}".strip()


def _listing(frame: pd.DataFrame, names: Mapping[str, str]) -> dict[str, Any]:
    """One list of findings: a table when it is short, else groups per village (most urgent first).

    A group carries its counts (findings, veto, overdue, per kind) and its first
    :data:`GROUP_ROWS` rows in the list's order (the most urgent), shown by kind
    (the most frequent first); a finding about two villages is in both groups.
    """
    total = len(frame)
    if total <= FLAT_ROWS:
        return {"total": total, "rows": _rows(frame, names), "groups": [], "more": 0}
    per = explode_ids(_light(frame), "village_id").reset_index(drop=True)
    vid = per["village_id"].fillna("").astype(str).to_numpy()
    kind = per["kind"].astype(str).to_numpy()
    veto = (per["severity"] == "veto").to_numpy()
    overdue = (per["status"] == "overdue").to_numpy()
    found = pd.Series(vid).groupby(vid, sort=False).indices
    cap = max(5, min(GROUP_ROWS, MAX_ROWS // max(len(found), 1)))
    groups = []
    for v, idx in found.items():
        names_k, inverse, counts = np.unique(kind[idx], return_inverse=True, return_counts=True)
        order = np.lexsort((names_k, -counts))  # kinds, the most frequent first
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        # the group's most urgent rows (the list's own order), shown by kind, the most frequent kind first
        shown = idx[:cap][np.argsort(rank[inverse[:cap]], kind="stable")]
        shown_k = dict(zip(*np.unique(kind[shown], return_counts=True), strict=True))
        groups.append({
            "village_id": v, "village": names.get(v) or v or "—",
            "count": len(idx), "veto": int(veto[idx].sum()), "overdue": int(overdue[idx].sum()),
            "kinds": {str(names_k[i]): {"label": KIND_ZH.get(str(names_k[i]), str(names_k[i])),
                                        "count": int(counts[i]), "shown": int(shown_k.get(names_k[i], 0))}
                      for i in order},
            "rows": shown, "more": len(idx) - len(shown),
        })
    rows = iter(_rows(per.iloc[np.concatenate([g["rows"] for g in groups])], names))  # built once for all groups
    for g in groups:
        g["rows"] = [next(rows) for _ in g["rows"]]
    groups.sort(key=lambda g: (-g["veto"], -g["overdue"], -g["count"], g["village_id"]))
    return {"total": total, "rows": [], "groups": groups, "more": sum(g["more"] for g in groups)}


#: The columns a row of the page shows.
_ROW_COLUMNS = ("finding_id", "kind", "severity", "status", "village_id", "grid_id", "owner", "measure", "unit",
                "message", "first_seen", "deadline", "days_overdue", "resolved_on", "times_reopened")


def _light(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of :data:`_ROW_COLUMNS` only, as a plain frame (no geometry to copy), index reset."""
    return pd.DataFrame(frame[[c for c in _ROW_COLUMNS if c in frame.columns]]).reset_index(drop=True)


def _rows(frame: pd.DataFrame, names: Mapping[str, str]) -> list[dict[str, Any]]:
    rows = []
    for rec in _light(frame).to_dict("records"):
        vid = rec.get("village_id")
        rows.append({
            "finding_id": as_shown(rec.get("finding_id")),
            "kind": as_shown(rec.get("kind")),
            "kind_label": KIND_ZH.get(as_shown(rec.get("kind")), ""),
            "kind_meaning": KINDS.get(as_shown(rec.get("kind")), ""),
            "severity": as_shown(rec.get("severity")),
            "severity_label": SEVERITY_LABELS.get(as_shown(rec.get("severity")), as_shown(rec.get("severity"))),
            "status": as_shown(rec.get("status")),
            "status_label": STATUS_LABELS.get(as_shown(rec.get("status")), as_shown(rec.get("status"))),
            "village": ", ".join(names.get(v) or v for v in id_list(vid)) or "—",
            "village_id": show_ids(vid) or "",
            "grid_id": show_ids(rec.get("grid_id")) or "—",
            "owner": as_shown(rec.get("owner")) or settings.default_owner,
            "measure": _measure(rec.get("measure"), rec.get("unit")),
            "message": as_shown(rec.get("message")),
            "first_seen": as_shown(rec.get("first_seen")),
            "deadline": as_shown(rec.get("deadline")),
            "days_overdue": int(rec.get("days_overdue") or 0),
            "resolved_on": as_shown(rec.get("resolved_on")),
            "times_reopened": int(rec.get("times_reopened") or 0),
        })
    return rows


def _owner_lists(open_: pd.DataFrame, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each owner's counts (open, veto, overdue, next deadline, villages) and first rows, most urgent owner first.

    An owner shows at most :data:`OWNER_ROWS` rows, and all owners together at
    most :data:`MAX_ROWS` (beyond that the counts alone: findings.xlsx and the
    owners' task lists hold every row).
    """
    if not len(open_):
        return []
    ordered = sort_findings(open_)
    owners = ordered["owner"].fillna(settings.default_owner).astype(str).to_numpy()
    groups = pd.Series(owners).groupby(owners, sort=False).indices
    cap = min(OWNER_ROWS, MAX_ROWS // len(groups))
    severity = ordered["severity"].to_numpy()
    status = ordered["status"].to_numpy()
    deadline = ordered["deadline"].to_numpy()
    villages = ordered["village_id"].to_numpy()
    cap = cap if cap >= 3 else 0  # a list of one or two rows each is no list: the counts alone
    shown = [idx[:cap] for idx in groups.values()]
    rows = _rows(ordered.iloc[np.concatenate(shown)], names) if cap else []  # built once for all owners
    starts = np.cumsum([0, *(len(x) for x in shown)])
    out = []
    for k, (owner, idx) in enumerate(groups.items()):
        dates = [d for d in deadline[idx] if d is not None]
        where = list(dict.fromkeys(v for cell in villages[idx] for v in id_list(cell)))
        out.append({
            "owner": owner,
            "count": len(idx),
            "veto": int((severity[idx] == "veto").sum()),
            "overdue": int((status[idx] == "overdue").sum()),
            "next_deadline": as_shown(min(dates) if dates else None),
            "villages": ", ".join(names.get(v) or v for v in where[:3]) + (f" +{len(where) - 3}" if len(where) > 3
                                                                           else ""),
            "rows": rows[starts[k]:starts[k + 1]],
            "more": len(idx) - len(shown[k]),
        })
    out.sort(key=lambda o: (-o["veto"], -o["overdue"], -o["count"], o["owner"]))
    return out


def _checkpoint_rows(assessment: Assessment) -> list[dict[str, str]]:
    cp = getattr(assessment, "checkpoints", None)
    if cp is None or not len(cp):
        return []
    df = pd.DataFrame(cp).drop(columns=["geometry"], errors="ignore")
    if "ok" in df.columns:
        df = df.assign(_bad=~df["ok"].fillna(False).astype(bool)).sort_values("_bad", ascending=False, kind="stable")
    cols = [c for c in ("poi_id", "kind", "name", "village_id", "grid_id", "grid_chief", "river_chief", "ok",
                        "problem") if c in df.columns]
    return [{c: ("✔" if v is True else "✘" if v is False else as_shown(v)) for c, v in rec.items()}
            for rec in df[cols].to_dict("records")]


def _files(assessment: Assessment) -> list[dict[str, str]]:
    """The files :func:`gisgrid.report.write_report` writes beside the page, linked by their relative names."""
    files = [("findings.xlsx", "Excel: every finding, a sheet per village"), ("findings.csv", "CSV: every finding"),
             ("findings.geojson", "GeoJSON: every finding on the map"), ("summary.json", "counts for machines")]
    tol = float((getattr(assessment, "totals", None) or {}).get("tolerance_m") or 0)
    if tol > 0 and getattr(assessment, "hygiene", None) is not None:
        files.append(("hygiene.csv", "slivers per grid"))
    return [{"href": name, "what": what} for name, what in files]


#: The page's one script: the filter boxes (an input hides the groups and rows that do not contain its text).
_SCRIPT = (importlib.resources.files("gisgrid.report") / "templates" / "report.js").read_text(encoding="utf-8")


def _csp() -> str:
    """The Content-Security-Policy: nothing from outside, images as data URIs, inline CSS, our script by its hash."""
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gisgrid.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "—" if as_number(v) is None else percent(v, 1)
    env.filters["num"] = lambda v, d=1: "—" if as_number(v) is None else f"{float(v):,.{d}f}"
    return env


def render_html(
    assessment: Assessment,
    lifecycle: pd.DataFrame | None,
    *,
    history: History | None = None,
    map_href: str | None = None,
    fail_on: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
) -> str:
    """Render ``report.html`` (self-contained: inline CSS, charts as data URIs, one inline script).

    Parameters are those of :func:`write_report`.

    Returns
    -------
    str
        The HTML document.
    """
    return _build(assessment, lifecycle, history=history, map_href=map_href, fail_on=fail_on, as_of=as_of)["html"]


def _build(assessment: Assessment, lifecycle: pd.DataFrame | None, *, history: History | None, map_href: str | None,
           fail_on: Mapping[str, Any] | None, as_of: dt.date | None,
           verdict: tuple[int, str] | None = None, scheme: Any = None,
           points_result: tuple[pd.DataFrame, Any] | None = None,
           tables_ready: Callable[[pd.DataFrame, dict[str, str], pd.DataFrame], None] | None = None
           ) -> dict[str, Any]:
    day = as_of or lifecycle_as_of(lifecycle)
    life = with_lifecycle(assessment, lifecycle, day)
    names = village_names(assessment)
    code, reason = verdict if verdict is not None else evaluate_thresholds(assessment, life, fail_on)
    previous = None
    if history is not None:
        try:
            previous = history.previous_run(day)
        except Exception as exc:  # noqa: BLE001 - the report still renders without the comparison
            logger.warning("report: previous run not read from the history (%s)", exc)
    # the rank, score and flags are the 测评体系's, over the period to date (谁丢分、谁担责, report/points.py)
    run_ledger, period = points_result if points_result is not None else points.run_points(
        assessment, life, history=history, scheme=scheme, as_of=day)
    card = points.with_ranking(scorecard(assessment, life), period.levels["village"])
    if tables_ready is not None:  # the tables are known: the caller may start writing them while the page renders
        tables_ready(life, names, card)
    open_ = sort_findings(life[is_open(life)])
    veto = open_[open_["severity"] == "veto"]
    overdue = life[life["status"] == "overdue"].sort_values(["days_overdue", "finding_id"],
                                                            ascending=[False, True], kind="stable")
    new = sort_findings(life[life["status"].isin(("reopened", "new"))])
    new = pd.concat([new[new["status"] == "reopened"], new[new["status"] == "new"]])
    resolved = sort_findings(life[life["status"] == "resolved"])
    town = getattr(assessment, "town", None)
    totals = dict(getattr(assessment, "totals", None) or {})
    charts = _charts(card, life, history)
    owners = _owner_lists(open_, names)
    generated = dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    context = {
        "town": as_shown(getattr(town, "name", None)) or "town",
        "as_of": day.isoformat(),
        "generated": generated,
        "version": __version__,
        "exit_code": code,
        "reason": reason,
        "map_href": _safe_href(map_href),
        "previous": None if previous is None else previous.as_of.isoformat(),
        "headline": _headline(assessment, life, previous),
        "veto": _listing(veto, names),
        "overdue": _listing(overdue, names),
        "new": _listing(new, names),
        "resolved": _listing(resolved, names),
        "persisting": int((life["status"] == "persisting").sum()),
        "scorecard": _with_patrolled(card, assessment).to_dict("records"),
        "patrolled": "patrol_month" in totals,
        "points_note": points.points_note(period),
        "points_section": points.render_points(run_ledger, period, as_of=day),
        "sensitive_kinds": SENSITIVE_KINDS,
        "owners": owners,
        "open": _listing(open_, names),
        "files": _files(assessment),
        "script": _SCRIPT,
        "csp": _csp(),
        "charts": charts,
        "checkpoints": _checkpoint_rows(assessment),
        "deadline_days": dict(settings.deadline_days),
        "status_labels": STATUS_LABELS,
        "severity_labels": SEVERITY_LABELS,
        "totals": totals,
        "default_owner": settings.default_owner,
        "hygiene": _hygiene_context(assessment, totals),
        "patrols_section": _patrol_section(assessment, totals),
    }
    html = _environment().get_template("report.html.j2").render(**context)
    return {"html": html, "life": life, "names": names, "code": code, "reason": reason, "card": card,
            "points": (run_ledger, period),
            "previous": previous, "day": day, "totals": totals, "town": context["town"]}


def _with_patrolled(card: pd.DataFrame, assessment: Assessment) -> pd.DataFrame:
    """The scorecard with each village's patrolled shares of reach length and grids (when patrols were judged)."""
    summary = getattr(assessment, "summary", None)
    if summary is None or "river_patrolled" not in getattr(summary, "columns", ()) or "village_id" not in card:
        return card
    out = card.copy()
    for col in ("river_patrolled", "grid_patrolled"):
        out[col] = out["village_id"].map(summary[col])
    return out


_PATROL_STATUS = {"missing": "巡查不足 too few", "partial": "未全覆盖 partial", "ok": "合格 ok",
                  "not judged": "本期不考核 not judged"}


def _patrol_section(assessment: Assessment, totals: Mapping[str, Any]) -> markupsafe.Markup:
    """巡河巡格: one row per chief and what they answer for, the worst first (empty without patrols)."""
    result = getattr(assessment, "patrols", None)
    if result is None:
        return markupsafe.Markup("")
    people = result.people.copy()
    order = {"missing": 0, "partial": 1, "ok": 2, "not judged": 3}
    people["_o"] = people["status"].map(order).fillna(4)
    people = people.sort_values(["_o", "level", "person_id"], kind="stable")
    esc = markupsafe.escape
    rows = []
    for r in people.itertuples(index=False):
        share = percent(r.share)  # n/a: nothing to cover (a grid without lanes)
        rows.append(
            f"<tr class='{esc(str(r.status)).replace(' ', '-')}'><td>{esc(as_shown(r.name))}</td>"
            f"<td>{esc(as_shown(r.level))}</td><td>{esc(as_shown(r.subject_id))}</td>"
            f"<td>{esc(show_ids(r.village_id) or '')}</td><td>{r.required} / {esc(as_shown(r.period))}</td>"
            f"<td class='num'>{r.periods_met} / {r.periods}</td><td class='num'>{r.valid_patrols}</td>"
            f"<td class='num'>{r.suspect_patrols}</td><td class='num'>{share}</td>"
            f"<td>{esc(_PATROL_STATUS.get(str(r.status), str(r.status)))}</td></tr>")
    refused = int(totals.get("patrol_rows_refused") or 0)
    note = (f" {refused} GPS row(s) were refused on reading (named by file and line in the log)." if refused else "")
    return markupsafe.Markup(
        "<section id='patrols'><h2>巡河巡格 Patrols in " + str(esc(totals.get("patrol_month", ""))) + "</h2>"
        f"<p class='meta'>{int(totals.get('patrols', 0))} patrols, {int(totals.get('patrols_valid', 0))} valid; "
        f"reach length patrolled {percent(totals.get('river_patrolled'))}, grids patrolled "
        f"{percent(totals.get('grid_patrolled'))}.{esc(note)}</p>"
        "<table><thead><tr><th>责任人 chief</th><th>level</th><th>河道/网格 reach or grid</th><th>village</th>"
        "<th>rule</th><th>periods met</th><th>valid</th><th>suspect</th><th>covered</th><th>status</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _hygiene_context(assessment: Assessment, totals: Mapping[str, Any], top: int = 15) -> dict[str, Any] | None:
    """The data-hygiene section: what the digitising tolerance absorbed, and the grids to redraw first."""
    tol = float(totals.get("tolerance_m") or 0.0)
    table = getattr(assessment, "hygiene", None)
    if tol <= 0 or table is None:
        return None
    names = village_names(assessment)
    worst = table[table["sliver_m2"] > 0].head(top)
    return {
        "tolerance_m": f"{tol:g}",
        "slivers": f"{int(totals.get('slivers', 0)):,}",
        "sliver_area": f"{float(totals.get('sliver_area_m2', 0.0)):,.0f}",
        "gap_area": f"{float(totals.get('sliver_gap_area_m2', 0.0)):,.0f}",
        "overlap_area": f"{float(totals.get('sliver_overlap_area_m2', 0.0)):,.0f}",
        "village_slivers": f"{int(totals.get('village_slivers', 0)):,}",
        "village_sliver_area": f"{float(totals.get('village_sliver_area_m2', 0.0)):,.0f}",
        "crumbs": int(totals.get("road_crumbs", 0)),
        "crumb_m": f"{float(totals.get('road_crumb_m', 0.0)):,.1f}",
        "crumb_min": f"{settings.sliver_length_m:g}",
        "grids": [{
            "grid": show_ids(r["grid_id"]) or "",
            "village": f"{names.get(str(r['village_id']), '')} ({show_ids(r['village_id']) or ''})",
            "slivers": int(r["slivers"]), "gap": f"{r['gap_sliver_m2']:,.1f}",
            "overlap": f"{r['overlap_sliver_m2']:,.1f}",
            "total": f"{r['sliver_m2']:,.1f}",
        } for r in worst.to_dict("records")],
    }
