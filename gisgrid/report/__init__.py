"""The coverage-gap report folder: HTML, CSV, XLSX, GeoJSON and a JSON summary.

:func:`write_report` fills ``reports/YYYY-MM-DD/`` (the pipeline stages and
swaps the folder). The thresholds, the exit status and the village score are
:mod:`gisgrid.policy`'s.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io as _io
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import geopandas as gpd
import jinja2
import numpy as np
import pandas as pd

from gisgrid import __version__, io, settings
from gisgrid.findings import (
    COLUMNS,
    KINDS,
    LIFECYCLE_COLUMNS,
    OPEN_STATUSES,
    SEVERITY_RANK,
    is_open,
    lifecycle_as_of,
    sort_findings,
    with_lifecycle,
)
from gisgrid.policy import SCORE_WEIGHTS, SENSITIVE_KINDS, THRESHOLD_KEYS, evaluate_thresholds, scorecard, village_names
from gisgrid.vocab import (
    KIND_ZH,
    SEVERITY_COLOURS,
    SEVERITY_LABELS,
    STATUS_COLOURS,
    STATUS_LABELS,
    percent,
)

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

__all__ = [
    "KIND_LABELS",
    "SCORE_WEIGHTS",
    "SEVERITY_LABELS",
    "STATUS_LABELS",
    "THRESHOLD_KEYS",
    "evaluate_thresholds",
    "render_html",
    "scorecard",
    "write_report",
]

logger = logging.getLogger(__name__)


#: The labels of the one vocabulary (kept here under their 0.1 names).
KIND_LABELS = KIND_ZH
#: Rows listed per table of report.html (the CSV and XLSX hold every finding).
MAX_ROWS = 1000
#: Most rows of the data-hygiene sheet in findings.xlsx (the grids with the most sliver area; hygiene.csv has all).
MAX_HYGIENE_ROWS = 1000
#: Most per-village plus per-owner sheets in findings.xlsx (beyond it the owner sheets are left out:
#: the pipeline's ``owners/*.csv`` hold each owner's list).
MAX_SHEETS = 500


_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                 "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK JP", "Noto Sans CJK TC",
                 "Droid Sans Fallback", "AR PL UMing CN", "SimHei", "Microsoft YaHei", "PingFang SC")
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CJK_FILES = re.compile(r"(cjk|wqy|wenquanyi|sourcehan|droidsansfallback|uming|ukai|simhei|msyh|pingfang)", re.I)


# --------------------------------------------------------------------------- small helpers
def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _num(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars, dates, NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_defuse = io.defuse  # one rule for every CSV and XLSX cell


def _safe_href(href: str | None) -> str | None:
    """A link that is a relative path or an http(s)/file URL, else None."""
    if not href:
        return None
    scheme = urlsplit(str(href)).scheme.lower()
    if scheme in ("", "http", "https", "file"):
        return str(href)
    logger.warning("report: map link %r ignored (only relative paths and http(s)/file URLs are linked)", href)
    return None


# --------------------------------------------------------------------------- charts
@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of a font with Chinese glyphs matplotlib can use (None when there is none).

    Looks in matplotlib's font list first, then among the system's font files
    (a font installed after matplotlib built its cache), e.g. Debian's
    ``fonts-noto-cjk``.
    """
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for family in _CJK_FAMILIES:
        if family in known:
            return family
    try:
        files = font_manager.findSystemFonts()
    except Exception:  # noqa: BLE001 - font discovery must never break a report
        files = []
    for path in sorted(files, key=lambda p: ("Sans" not in p, "Regular" not in p, p)):
        if not _CJK_FILES.search(os.path.basename(path)):
            continue
        try:
            font_manager.fontManager.addfont(path)
            name = font_manager.FontProperties(fname=path).get_name()
        except Exception:  # noqa: BLE001 - a broken font file is skipped
            continue
        logger.debug("report: using CJK font %s (%s)", name, path)
        return name
    logger.warning("report: no font with Chinese glyphs found; chart labels use ids "
                   "(install the Debian package fonts-noto-cjk)")
    return None


def _label(text: str, ascii_fallback: str) -> str:
    """Chart-safe label: ``$`` escaped (no mathtext); ids when no CJK font can draw the text."""
    if not text.isascii() and cjk_font() is None:
        text = ascii_fallback
    return text.replace("\\", "\\\\").replace("$", r"\$")


@dataclass
class _Chart:
    title: str
    uri: str
    alt: str


def _render(fig: Any) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _chart_context() -> Any:
    import matplotlib as mpl

    family = cjk_font()
    rc = {
        "font.family": "sans-serif",
        "font.sans-serif": ([family] if family else []) + ["DejaVu Sans"],
        "axes.unicode_minus": False,
        "svg.fonttype": "path",
        "svg.hashsalt": "gisgrid",
        "font.size": 9,
    }
    return mpl.rc_context(rc)


def _charts(card: pd.DataFrame, life: pd.DataFrame, history: Any, max_villages: int = 30) -> list[_Chart]:
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out: list[_Chart] = []
    with _chart_context(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*findfont.*", category=UserWarning)
        # coverage by village
        show = card.sort_values(["coverage", "village_id"], ascending=[True, True]).head(max_villages)
        show = show.iloc[::-1]
        fig = Figure(figsize=(7.0, 0.9 + 0.26 * max(len(show), 1)))
        ax = fig.add_subplot()
        labels = [_label(f"{n} ({v})" if n != v else v, v) for n, v in zip(show["name"], show["village_id"],
                                                                                 strict=True)]
        y = np.arange(len(show))
        ax.barh(y + 0.2, show["area_coverage"].fillna(0) * 100, height=0.4, color="#3182bd",
                label=_label("面积覆盖 area", "area"))
        ax.barh(y - 0.2, show["road_coverage"].fillna(0) * 100, height=0.4, color="#9ecae1",
                label=_label("道路覆盖 roads", "roads"))
        ax.set_yticks(y, labels)
        low = float(np.nanmin(np.r_[show["area_coverage"].to_numpy(dtype=float),
                                    show["road_coverage"].to_numpy(dtype=float), 1.0]) * 100) if len(show) else 0
        ax.set_xlim(max(0.0, math.floor(low / 5) * 5 - 5), 100.5)
        ax.set_xlabel("%")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        more = "" if len(card) <= max_villages else f" (lowest {max_villages} of {len(card)})"
        out.append(_Chart("村居覆盖率 Coverage by village" + more, _render(fig),
                          "coverage of area and roads by village"))
        # open findings over time
        fig = Figure(figsize=(7.0, 2.8))
        ax = fig.add_subplot()
        sevs = list(SEVERITY_RANK)
        counts = None
        if history is not None:
            try:
                counts = history.open_counts()
            except Exception as exc:  # noqa: BLE001 - a chart must not break the report
                logger.warning("report: history chart skipped (%s)", exc)
        if counts is not None and len(counts) >= 2:
            x = pd.to_datetime(pd.Series([str(d) for d in counts["as_of"]]))
            ax.stackplot(x, *[counts[s].to_numpy(dtype=float) for s in reversed(sevs)],
                         labels=[_label(SEVERITY_LABELS[s], s) for s in reversed(sevs)],
                         colors=[SEVERITY_COLOURS[s] for s in reversed(sevs)], alpha=0.9)
            ax.plot(x, counts["open"], color="black", lw=1)
            locator = mdates.AutoDateLocator(maxticks=8)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        else:
            if counts is not None and len(counts):
                row = counts.iloc[-1]
                values = [int(row[s]) for s in sevs]
                when = str(row["as_of"])
            else:
                open_ = life[is_open(life)]
                values = [int((open_["severity"] == s).sum()) for s in sevs]
                when = "today"
            bottom = 0
            for s, v in zip(reversed(sevs), reversed(values), strict=True):
                ax.bar([when], [v], bottom=bottom, color=SEVERITY_COLOURS[s], label=_label(SEVERITY_LABELS[s], s))
                bottom += v
        ax.set_ylabel(_label("未整改 open", "open"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, ncol=4, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        out.append(_Chart("问题数量变化 Open findings over time", _render(fig), "open findings per run by severity"))
        # by severity and status
        fig = Figure(figsize=(7.0, 2.4))
        ax = fig.add_subplot()
        left = np.zeros(len(sevs))
        for st in (*OPEN_STATUSES, "resolved"):
            vals = np.array([int(((life["severity"] == s) & (life["status"] == st)).sum()) for s in sevs])
            ax.barh(np.arange(len(sevs)), vals, left=left, color=STATUS_COLOURS[st], label=_label(STATUS_LABELS[st],
                                                                                                  st))
            left += vals
        ax.set_yticks(np.arange(len(sevs)), [_label(SEVERITY_LABELS[s], s) for s in sevs])
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, ncol=5, frameon=False)
        ax.grid(axis="x", alpha=0.3)
        out.append(_Chart("按级别统计 Findings by severity", _render(fig), "findings by severity and status"))
    return out


# --------------------------------------------------------------------------- tables
def _finding_table(life: gpd.GeoDataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The flat findings table of the CSV and XLSX: finding and lifecycle columns, village name, lon/lat."""
    df = pd.DataFrame(life.drop(columns=[life.geometry.name])) if isinstance(life, gpd.GeoDataFrame) and \
        life.geometry.name in life.columns else pd.DataFrame(life).drop(columns=["geometry"], errors="ignore")
    df.insert(df.columns.get_loc("village_id") + 1, "village_name",
              df["village_id"].map(lambda v: names.get(str(v)) if v is not None else None))
    lon = lat = np.full(len(df), np.nan)
    if isinstance(life, gpd.GeoDataFrame) and life.crs is not None and len(life):
        geo = life.geometry
        ok = ~(geo.isna() | geo.is_empty)
        if ok.any():
            pts = gpd.GeoSeries(geo[ok].representative_point(), crs=life.crs).to_crs(4326)
            lon = pd.Series(np.nan, index=life.index)
            lat = pd.Series(np.nan, index=life.index)
            lon[ok] = pts.x.round(7)
            lat[ok] = pts.y.round(7)
            lon, lat = lon.to_numpy(), lat.to_numpy()
    df["lon"] = lon
    df["lat"] = lat
    first = [c for c in COLUMNS if c != "geometry" and c in df.columns]
    first.insert(first.index("village_id") + 1, "village_name")
    status_first = ["finding_id", "status", *[c for c in first if c != "finding_id"]]
    rest = [c for c in df.columns if c not in status_first]
    life_cols = [c for c in LIFECYCLE_COLUMNS if c in rest and c != "status"]
    others = [c for c in rest if c not in life_cols]
    df = df[[*status_first, *life_cols, *others]]
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].map(_defuse)
    return df.reset_index(drop=True)


@dataclass
class _Sheet:
    """One worksheet: header and rows of plain cell values."""

    columns: list[str]
    rows: list[list[Any]]


def _sheet(frame: pd.DataFrame) -> _Sheet:
    df = pd.DataFrame(frame).drop(columns=["geometry"], errors="ignore")
    rows = [[_xlsx_value(v) for v in rec] for rec in df.itertuples(index=False, name=None)]
    return _Sheet([str(c) for c in df.columns], rows)


def _sheets(table: pd.DataFrame, card: pd.DataFrame, assessment: Any) -> dict[str, _Sheet]:
    """All findings, one sheet per village and per owner, the checkpoints and the village summary."""
    everything = _sheet(table)
    sheets: dict[str, _Sheet] = {"findings": everything}
    village_names = dict(zip(table["village_id"], table["village_name"], strict=True))
    for vid, idx in sorted(table.groupby(table["village_id"].fillna("—").astype(str)).indices.items()):
        name = _text(village_names.get(vid))
        sheets[f"村 {vid} {name}".strip()] = _Sheet(everything.columns, [everything.rows[i] for i in idx])
    owners = sorted(table.groupby(table["owner"].fillna(settings.default_owner).astype(str)).indices.items())
    if len(sheets) - 1 + len(owners) <= MAX_SHEETS:
        for owner, idx in owners:
            sheets[f"责 {owner}"] = _Sheet(everything.columns, [everything.rows[i] for i in idx])
    else:
        logger.warning("report: %d owners: findings.xlsx gets no per-owner sheets (more than %d sheets); "
                       "see the owners/ lists", len(owners), MAX_SHEETS)
    checkpoints = _get(assessment, "checkpoints")
    if checkpoints is not None:
        cp = pd.DataFrame(checkpoints).drop(columns=["geometry"], errors="ignore").map(_defuse)
    else:
        cp = pd.DataFrame({"note": ["no must-check points analysed"]})
    sheets["checkpoints"] = _sheet(cp)
    summary = _get(assessment, "summary")
    summ = card.copy()
    if summary is not None:
        extra = pd.DataFrame(summary).copy()
        extra.index = extra.index.astype(str)
        extra = extra.drop(columns=[c for c in extra.columns if c in summ.columns and c != "village_id"])
        summ = summ.merge(extra, left_on="village_id", right_index=True, how="left")
    sheets["summary"] = _sheet(summ.map(_defuse))
    hygiene = _get(assessment, "hygiene")
    if hygiene is not None and float((_get(assessment, "totals") or {}).get("tolerance_m") or 0) > 0:
        table = pd.DataFrame(hygiene)
        if len(table) > MAX_HYGIENE_ROWS:  # the worst first; every grid is in hygiene.csv
            rest = len(table) - MAX_HYGIENE_ROWS
            table = pd.concat([table.head(MAX_HYGIENE_ROWS), pd.DataFrame(
                {"grid_id": [f"… {rest} more grids in hygiene.csv 另有 {rest} 个网格见 hygiene.csv"]})])
        sheets["hygiene 数据质量"] = _sheet(table.map(_defuse))
    return sheets


def _sheet_title(name: str, used: set[str]) -> str:
    """An Excel sheet name: no [ ] : * ? / or backslash, at most 31 characters, unique ignoring case."""
    base = "".join("_" if ch in '[]:*?/\\' or ord(ch) < 32 else ch for ch in str(name)).strip("'")[:31] or "sheet"
    title, k = base, 2
    while title.casefold() in used:
        tail = f"~{k}"
        title, k = base[: 31 - len(tail)] + tail, k + 1
    used.add(title.casefold())
    return title


def _xlsx_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, dt.date)):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.replace(tzinfo=None)
        return value
    if isinstance(value, (list, tuple, set, dict, np.ndarray)):
        value = json.dumps(_jsonable(value), ensure_ascii=False)
    return _ILLEGAL_XLSX.sub("", str(value))


def _text_cell(sheet: Any, value: str) -> Any:
    """A cell that keeps text starting with ``=`` as text (openpyxl would store a formula)."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def _write_workbook(sheets: Mapping[str, _Sheet], path: Path) -> Path:
    """Write the sheets with openpyxl's streaming writer (time linear in cells, any number of sheets).

    The header row is bold and frozen; text never becomes a formula.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    used: set[str] = set()
    with io.atomic_path(path) as tmp:
        book = Workbook(write_only=True)
        bold = Font(bold=True)
        for name, content in sheets.items():
            sheet = book.create_sheet(_sheet_title(name, used))
            sheet.freeze_panes = "A2"
            for i, col in enumerate(content.columns):
                sample = [len(str(r[i])) for r in content.rows[:200] if r[i] is not None]
                sheet.column_dimensions[get_column_letter(i + 1)].width = min(max([len(col), *sample]) + 2, 60)
            header = []
            for col in content.columns:
                cell = WriteOnlyCell(sheet, value=_xlsx_value(col))
                cell.data_type = "s"
                cell.font = bold
                header.append(cell)
            sheet.append(header)
            for record in content.rows:
                sheet.append([_text_cell(sheet, v) if isinstance(v, str) and v.startswith("=") else v
                              for v in record])
        book.save(tmp)
    return path


def _geojson_frame(life: gpd.GeoDataFrame, names: Mapping[str, str]) -> gpd.GeoDataFrame:
    out = life.copy()
    out.insert(out.columns.get_loc("village_id") + 1, "village_name",
               out["village_id"].map(lambda v: names.get(str(v)) if v is not None else None))
    for col in out.columns:
        if col == out.geometry.name:
            continue
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: v if v is None or isinstance(v, (str, int, float, bool))
                                    else json.dumps(_jsonable(v), ensure_ascii=False) if isinstance(
                                        v, (list, tuple, dict, np.ndarray)) else _jsonable(v))
        elif pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].map(_jsonable)
    return out


# --------------------------------------------------------------------------- the HTML report
_HEADLINES: tuple[tuple[str, str, str, bool], ...] = (
    # key, label, format, higher is better
    ("area_coverage", "面积覆盖率 area in a grid", "pct", True),
    ("effective_coverage", "有人负责 staffed area", "pct", True),
    ("road_coverage", "道路覆盖率 roads in a grid", "pct", True),
    ("uncovered_lane_m", "未覆盖小巷农路 lanes in no grid (m)", "m", False),
    ("open", "未整改问题 open findings", "int", False),
    ("veto", "一票否决 veto items", "int", False),
    ("overdue", "逾期 overdue", "int", False),
    ("new", "新发现 new", "int", False),
    ("reopened", "反弹 back again", "int", False),
    ("resolved", "已整改 fixed since last run", "int", True),
)


def _headline(assessment: Any, life: pd.DataFrame, previous: Any) -> list[dict[str, Any]]:
    totals = dict(_get(assessment, "totals") or {})
    open_ = life[is_open(life)]
    now: dict[str, float | None] = {k: _num(totals.get(k)) for k in
                                    ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m")}
    now["open"] = len(open_)
    now["veto"] = int((open_["severity"] == "veto").sum())
    for st in ("overdue", "new", "reopened", "resolved"):
        now[st] = int((life["status"] == st).sum())
    before: dict[str, float | None] = {}
    if previous is not None:
        counts = dict(getattr(previous, "counts", {}) or {})
        ptot = dict(getattr(previous, "totals", {}) or {})
        for k in ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m"):
            before[k] = _num(ptot.get(k))
        before["open"] = _num(counts.get("open"))
        before["veto"] = _num((counts.get("severity") or {}).get("veto"))
        for st in ("overdue", "new", "reopened", "resolved"):
            before[st] = _num((counts.get("status") or {}).get(st))
    cards = []
    for key, label, fmt, higher_better in _HEADLINES:
        value = now.get(key)
        if value is None and key in ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m"):
            continue
        prev = before.get(key)
        delta = None if value is None or prev is None else value - prev
        trend = "same"
        if delta is not None and abs(delta) > 1e-12:
            trend = "better" if (delta > 0) == higher_better else "worse"
        cards.append({"key": key, "label": label, "value": _fmt(value, fmt), "delta": _fmt_delta(delta, fmt),
                      "trend": trend, "has_previous": prev is not None})
    return cards


def _fmt(value: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "pct":
        return percent(value)
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
    f = _num(value)
    if f is None:
        return ""
    unit = _text(unit)
    if unit in ("m2", "m²"):
        return f"{f:,.0f} m²"
    if unit == "m":
        return f"{f:,.1f} m"
    if unit == "count" or float(f).is_integer():
        return f"{f:,.0f}" + (f" {unit}" if unit and unit != "count" else "")
    return f"{f:,.2f} {unit}".strip()


def _listing(frame: pd.DataFrame, names: Mapping[str, str]) -> dict[str, Any]:
    """Rows of one HTML table (at most ``MAX_ROWS``) and how many more there are."""
    return {"rows": _rows(frame.head(MAX_ROWS), names), "more": max(len(frame) - MAX_ROWS, 0), "total": len(frame)}


def _rows(frame: pd.DataFrame, names: Mapping[str, str]) -> list[dict[str, Any]]:
    rows = []
    for rec in frame.to_dict("records"):
        vid = rec.get("village_id")
        rows.append({
            "finding_id": _text(rec.get("finding_id")),
            "kind": _text(rec.get("kind")),
            "kind_label": KIND_LABELS.get(_text(rec.get("kind")), ""),
            "kind_meaning": KINDS.get(_text(rec.get("kind")), ""),
            "severity": _text(rec.get("severity")),
            "severity_label": SEVERITY_LABELS.get(_text(rec.get("severity")), _text(rec.get("severity"))),
            "status": _text(rec.get("status")),
            "status_label": STATUS_LABELS.get(_text(rec.get("status")), _text(rec.get("status"))),
            "village": (names.get(str(vid)) or str(vid)) if vid is not None else "—",
            "village_id": _text(vid),
            "grid_id": _text(rec.get("grid_id")) or "—",
            "owner": _text(rec.get("owner")) or settings.default_owner,
            "measure": _measure(rec.get("measure"), rec.get("unit")),
            "message": _text(rec.get("message")),
            "first_seen": _text(rec.get("first_seen")),
            "deadline": _text(rec.get("deadline")),
            "days_overdue": int(rec.get("days_overdue") or 0),
            "resolved_on": _text(rec.get("resolved_on")),
            "times_reopened": int(rec.get("times_reopened") or 0),
        })
    return rows


def _owner_lists(open_: pd.DataFrame, names: Mapping[str, str]) -> tuple[list[dict[str, Any]], bool]:
    """Each owner's open findings, most urgent owner first; compact (counts only) beyond ``MAX_ROWS``."""
    if not len(open_):
        return [], False
    ordered = sort_findings(open_)
    owners = ordered["owner"].fillna(settings.default_owner).astype(str).to_numpy()
    compact = len(ordered) > MAX_ROWS
    rows = [] if compact else _rows(ordered, names)
    severity = ordered["severity"].to_numpy()
    status = ordered["status"].to_numpy()
    deadline = ordered["deadline"].to_numpy()
    out = []
    for owner, idx in pd.Series(owners).groupby(owners, sort=False).indices.items():
        dates = [d for d in deadline[idx] if d is not None]
        out.append({
            "owner": owner,
            "count": len(idx),
            "veto": int((severity[idx] == "veto").sum()),
            "overdue": int((status[idx] == "overdue").sum()),
            "next_deadline": _text(min(dates) if dates else None),
            "table": {"rows": [rows[i] for i in idx] if rows else [], "more": 0, "total": len(idx)},
        })
    out.sort(key=lambda o: (-o["veto"], -o["overdue"], -o["count"], o["owner"]))
    return out, compact


def _checkpoint_rows(assessment: Any) -> list[dict[str, str]]:
    cp = _get(assessment, "checkpoints")
    if cp is None or not len(cp):
        return []
    df = pd.DataFrame(cp).drop(columns=["geometry"], errors="ignore")
    if "ok" in df.columns:
        df = df.assign(_bad=~df["ok"].fillna(False).astype(bool)).sort_values("_bad", ascending=False, kind="stable")
    cols = [c for c in ("poi_id", "kind", "name", "village_id", "grid_id", "grid_chief", "river_chief", "ok",
                        "problem") if c in df.columns]
    return [{c: ("✔" if v is True else "✘" if v is False else _text(v)) for c, v in rec.items()}
            for rec in df[cols].to_dict("records")]


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gisgrid.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "—" if _num(v) is None else percent(v, 1)
    env.filters["num"] = lambda v, d=1: "—" if _num(v) is None else f"{float(v):,.{d}f}"
    return env


def render_html(
    assessment: Any,
    lifecycle: pd.DataFrame | None,
    *,
    history: Any = None,
    map_href: str | None = None,
    fail_on: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
) -> str:
    """Render ``report.html`` (self-contained: inline CSS, charts as data URIs, no scripts).

    Parameters are those of :func:`write_report`.

    Returns
    -------
    str
        The HTML document.
    """
    return _build(assessment, lifecycle, history=history, map_href=map_href, fail_on=fail_on, as_of=as_of)["html"]


def _build(assessment: Assessment, lifecycle: pd.DataFrame | None, *, history: Any, map_href: str | None,
           fail_on: Mapping[str, Any] | None, as_of: dt.date | None,
           verdict: tuple[int, str] | None = None) -> dict[str, Any]:
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
    card = scorecard(assessment, life)
    open_ = sort_findings(life[is_open(life)])
    veto = open_[open_["severity"] == "veto"]
    overdue = life[life["status"] == "overdue"].sort_values(["days_overdue", "finding_id"],
                                                            ascending=[False, True], kind="stable")
    new = sort_findings(life[life["status"].isin(("reopened", "new"))])
    new = pd.concat([new[new["status"] == "reopened"], new[new["status"] == "new"]])
    resolved = sort_findings(life[life["status"] == "resolved"])
    town = _get(assessment, "town")
    totals = dict(_get(assessment, "totals") or {})
    charts = _charts(card, life, history)
    owners, owners_compact = _owner_lists(open_, names)
    generated = dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    context = {
        "town": _text(_get(town, "name")) or "town",
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
        "scorecard": card.to_dict("records"),
        "weights": SCORE_WEIGHTS,
        "sensitive_kinds": SENSITIVE_KINDS,
        "owners": owners,
        "owners_compact": owners_compact,
        "charts": charts,
        "checkpoints": _checkpoint_rows(assessment),
        "deadline_days": dict(settings.deadline_days),
        "status_labels": STATUS_LABELS,
        "severity_labels": SEVERITY_LABELS,
        "totals": totals,
        "default_owner": settings.default_owner,
        "hygiene": _hygiene_context(assessment, totals),
    }
    html = _environment().get_template("report.html.j2").render(**context)
    return {"html": html, "life": life, "names": names, "code": code, "reason": reason, "card": card,
            "previous": previous, "day": day, "totals": totals, "town": context["town"]}


def _hygiene_context(assessment: Any, totals: Mapping[str, Any], top: int = 15) -> dict[str, Any] | None:
    """The data-hygiene section: what the digitising tolerance absorbed, and the grids to redraw first."""
    tol = float(totals.get("tolerance_m") or 0.0)
    table = _get(assessment, "hygiene")
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
            "grid": _text(r["grid_id"]), "village": f"{names.get(str(r['village_id']), '')} ({_text(r['village_id'])})",
            "slivers": int(r["slivers"]), "gap": f"{r['gap_sliver_m2']:,.1f}",
            "overlap": f"{r['overlap_sliver_m2']:,.1f}",
            "total": f"{r['sliver_m2']:,.1f}",
        } for r in worst.to_dict("records")],
    }


# --------------------------------------------------------------------------- the folder
def write_report(
    assessment: Assessment,
    out: str | os.PathLike[str],
    lifecycle: pd.DataFrame | None = None,
    *,
    history: Any = None,
    map_href: str | None = None,
    fail_on: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
    verdict: tuple[int, str] | None = None,
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
    built = _build(assessment, lifecycle, history=history, map_href=map_href, fail_on=fail_on, as_of=as_of,
                   verdict=verdict)
    life, names, card = built["life"], built["names"], built["card"]
    table = _finding_table(life, names)
    written = [
        io.atomic_write_text(folder / "report.html", built["html"]),
        io.write_csv(table, folder / "findings.csv"),
        _write_workbook(_sheets(table, card, assessment), folder / "findings.xlsx"),
    ]
    geo = _geojson_frame(life, names)
    if geo.crs is None:
        logger.warning("report: findings have no CRS; findings.geojson is written in their own coordinates")
    written.append(io.write_geojson(geo, folder / "findings.geojson"))
    hygiene = _get(assessment, "hygiene")
    if hygiene is not None and float(built["totals"].get("tolerance_m") or 0) > 0:
        written.append(io.write_csv(pd.DataFrame(hygiene).map(_defuse), folder / "hygiene.csv"))
    summary = _summary(built, life, card, fail_on, map_href, [p.name for p in written] + ["summary.json"])
    written.append(io.atomic_write_text(folder / "summary.json",
                                        json.dumps(_jsonable(summary), ensure_ascii=False, indent=2) + "\n"))
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
        "thresholds": dict(fail_on or {}),
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
        "flags": {
            "red": [r["village_id"] for r in card.to_dict("records") if r["flag"] == "red"],
            "yellow": [r["village_id"] for r in card.to_dict("records") if r["flag"] == "yellow"],
        },
        "previous_run": None if previous is None else {
            "as_of": previous.as_of.isoformat(), "counts": previous.counts, "totals": previous.totals},
        "map_href": _safe_href(map_href),
        "files": files,
    }
