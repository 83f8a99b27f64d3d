"""The district outputs: the report folder and the district map.

``reports/DATE/district.html``, ``district_findings.csv/.xlsx/.geojson``, ``towns.csv``; ``maps/district.html``.

The report folder is staged and appears whole or not at all (:func:`gisgrid.io.staged_folder`); every file
goes through :mod:`gisgrid.io`'s atomic writers, and every text that came from the input is escaped in HTML.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gisgrid import io
from gisgrid.vocab import KIND_ZH, SEVERITY_LABELS, as_number, percent

if TYPE_CHECKING:
    from gisgrid.district.run import DistrictResult

__all__ = ["district_html", "trend_table", "write_outputs"]

_FLAG = {"red": "🚩 红旗 red flag", "yellow": "🟨 黄牌 yellow card"}
_CSS = """body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}tr.red td{background:#fdecea}tr.yellow td{background:#fff8d6}.num{text-align:right}
.failed td{background:#eee;color:#900}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))


def trend_table(past: pd.DataFrame, standings: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """Each town's score at the past runs and today (columns are dates, oldest first), in today's order."""
    today = pd.DataFrame({"as_of": as_of, "town": standings["party"], "score": standings["score"]})
    rows = pd.concat([past[["as_of", "town", "score"]], today], ignore_index=True) if len(past) else today
    wide = rows.pivot_table(index="town", columns="as_of", values="score", aggfunc="last")
    order = [p for p in standings["party"] if p in wide.index]
    return wide.reindex(order)


def district_html(result: DistrictResult, trend: pd.DataFrame) -> str:
    """The district report page: headline, the town ranking with flags and trend, failed towns, findings."""
    date = result.as_of.isoformat()
    by_id = {t.id: t for t in result.towns}
    ok = len(result.towns) - len(result.failed())
    out = [f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{_e(result.name)} {date}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>{_e(result.name)} — 区级网格化测评 district report {date}</h1>",
           f"<p>{ok} of {len(result.towns)} towns completed, {len(result.failed())} failed; "
           f"{len(result.findings)} district findings. Result: <b>{'FAIL' if result.exit_code else 'OK'}</b> "
           f"(exit {result.exit_code}): {_e(result.reason)}.</p>",
           "<p><a href='../../maps/district.html'>district map 区级地图</a> · "
           "<a href='district_findings.csv'>district_findings.csv</a> · "
           "<a href='district_findings.xlsx'>.xlsx</a> · <a href='district_findings.geojson'>.geojson</a></p>",
           "<h2>镇街排名 Town ranking (夺红旗、亮黄牌)</h2>",
           "<table id='ranking'><tr><th>rank</th><th>town</th><th>score</th><th>flag</th><th>area in a grid</th>"
           "<th>open</th><th>veto</th><th>overdue</th><th>fixed on time</th><th>headline</th><th>map</th>"]
    dates = [str(c) for c in trend.columns]
    out[-1] += "".join(f"<th>{_e(d)}</th>" for d in dates) + "</tr>"
    for rec in result.standings.to_dict("records"):
        t = by_id[str(rec["party"])]
        flag = str(rec.get("flag") or "")
        cov = as_number(rec.get("area_coverage"))
        head = _e(t.reason)
        link = f"../../{t.report}" if t.report else ""
        maplink = f"<a href='../../{_e(t.map)}'>map</a>" if t.map else ""
        trend_cells = "".join(
            f"<td class='num'>{'' if pd.isna(trend.at[t.id, c]) else f'{trend.at[t.id, c]:.2f}'}</td>"
            if t.id in trend.index else "<td></td>" for c in trend.columns)
        out.append(f"<tr class='{flag}' data-town='{_e(t.id)}'><td class='num'>{int(rec['rank'])}</td>"
                   f"<td><a href='{_e(link)}'>{_e(t.name)}</a></td><td class='num'>{rec['score']:.2f}</td>"
                   f"<td>{_e(_FLAG.get(flag, ''))}</td><td class='num'>{percent(cov) if cov is not None else ''}</td>"
                   f"<td class='num'>{rec['open']}</td><td class='num'>{rec['veto']}</td>"
                   f"<td class='num'>{rec['overdue']}</td><td class='num'>{rec['fixed_on_time']}</td>"
                   f"<td>{head}</td><td>{maplink}</td>"
                   f"{trend_cells}</tr>")
    out.append("</table>")
    if result.failed():
        out.append("<h2>未完成的镇街 Towns that did not complete</h2><table id='failed'><tr><th>town</th>"
                   "<th>status</th><th>error</th><th>fix</th></tr>")
        for t in result.failed():
            out.append(f"<tr class='failed' data-town='{_e(t.id)}'><td>{_e(t.name)}</td><td>{_e(t.status)}</td>"
                       f"<td>{_e(t.error)}</td><td>{_e(t.fix)}</td></tr>")
        out.append("</table>")
    if result.sections is not None and len(result.sections):
        out.append("<h2>跨镇交界断面 River sections between towns</h2><table id='sections'><tr><th>river</th>"
                   "<th>from</th><th>to</th><th>owners (town-level river chiefs of both sides)</th></tr>")
        for rec in result.sections.to_dict("records"):
            out.append(f"<tr><td>{_e(rec['river'])}</td><td>{_e(by_id[rec['town_a']].name)}</td>"
                       f"<td>{_e(by_id[rec['town_b']].name)}</td><td>{_e(rec['owner'])}</td></tr>")
        out.append("</table>")
    if result.roads is not None and len(result.roads):
        out.append("<h2>跨镇交界道路 Roads on town borders</h2><table id='border-roads'><tr><th>road</th>"
                   "<th>towns</th><th>length (m)</th><th>owner</th><th>rule</th></tr>")
        for rec in result.roads.to_dict("records"):
            out.append(f"<tr><td>{_e(rec['road'])}</td><td>{_e(by_id[rec['town_a']].name)}、"
                       f"{_e(by_id[rec['town_b']].name)}</td><td class='num'>{rec['length_a_m']:,.0f} / "
                       f"{rec['length_b_m']:,.0f}</td><td>{_e(rec['owner'])}</td><td>{_e(rec['rule'])}</td></tr>")
        out.append("</table>")
    out.append("<h2>区级问题 District findings</h2><table id='district-findings'><tr><th>kind</th><th>severity</th>"
               "<th>towns</th><th>owner</th><th>measure</th><th>message</th><th>id</th></tr>")
    for rec in result.findings.to_dict("records"):
        kind = str(rec["kind"])
        m = as_number(rec.get("measure"))
        out.append(f"<tr><td>{_e(KIND_ZH.get(kind, kind))} {_e(kind)}</td>"
                   f"<td>{_e(SEVERITY_LABELS.get(str(rec['severity']), rec['severity']))}</td>"
                   f"<td>{_e(rec.get('town_name'))}</td><td>{_e(rec.get('owner'))}</td>"
                   f"<td class='num'>{'' if m is None else f'{m:,.1f}'} {_e(rec.get('unit'))}</td>"
                   f"<td>{_e(rec.get('message'))}</td><td>{_e(rec['finding_id'])}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def write_outputs(result: DistrictResult, out_dir: Path, past: pd.DataFrame, *,
                  before_publish: Callable[[], None] | None = None) -> list[Path]:
    """Write the staged report folder, then the district map; return the files written.

    ``before_publish`` is called when the report is complete in its staging folder, not yet swapped in (the
    fault hook of the tests: an error there leaves no report).
    """
    from gisgrid.district.run import finding_table
    from gisgrid.maps.district import write_district_map

    date = result.as_of.isoformat()
    trend = trend_table(past, result.standings, date)
    written: list[Path] = []
    every = result.all_findings
    with io.staged_folder(result.report_dir) as staging:
        written.append(io.atomic_write_text(staging / "district.html", district_html(result, trend)))
        table = finding_table(every)
        written.append(io.write_csv(table, staging / "district_findings.csv"))
        written.append(io.write_xlsx({"findings": table, "towns": result.standings},
                                     staging / "district_findings.xlsx"))
        geo = every.drop(columns=[c for c in every.columns if c != "geometry" and every[c].map(
            lambda v: isinstance(v, dict)).any()])
        for col in geo.columns:  # dates as ISO text (JSON has no date)
            if col != "geometry" and geo[col].map(lambda v: isinstance(v, dt.date)).any():
                geo[col] = geo[col].map(lambda v: v.isoformat() if isinstance(v, dt.date) else v)
        written.append(io.write_geojson(geo[geo.geometry.notna()], staging / "district_findings.geojson"))
        written.append(io.write_csv(result.standings, staging / "towns.csv"))
        if result.sections is not None:
            written.append(io.write_csv(pd.DataFrame(result.sections).drop(columns="geometry"),
                                        staging / "border_sections.csv"))
        if result.roads is not None:
            written.append(io.write_csv(pd.DataFrame(result.roads).drop(columns="geometry"),
                                        staging / "border_roads.csv"))
        if before_publish is not None:
            before_publish()
    written = [result.report_dir / p.relative_to(staging) for p in written]
    boundaries = {t.id: t.boundary for t in result.towns if t.status == "ok"}
    if boundaries:
        written.append(write_district_map(result.name, boundaries, result.standings, result.findings,
                                          {t.id: t.map for t in result.towns if t.map},
                                          {t.id: t.name for t in result.towns}, out_dir / "maps" / "district.html"))
    return written
