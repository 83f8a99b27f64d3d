"""The report's charts: coverage by village, open findings over time, findings by severity and status.

Drawn with matplotlib (no pyplot state) as SVG data URIs, in a font with Chinese
glyphs when one is installed (:func:`cjk_font`), else with ids.
"""

from __future__ import annotations

import base64
import functools
import io as _io
import logging
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gisgrid.findings import OPEN_STATUSES, SEVERITY_RANK, is_open
from gisgrid.vocab import METRIC_LABELS, SEVERITY_COLOURS, SEVERITY_LABELS, STATUS_COLOURS, STATUS_LABELS

if TYPE_CHECKING:
    from gisgrid.history import History

logger = logging.getLogger(__name__)

_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                 "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK JP", "Noto Sans CJK TC",
                 "Droid Sans Fallback", "AR PL UMing CN", "SimHei", "Microsoft YaHei", "PingFang SC")
_CJK_FILES = re.compile(r"(cjk|wqy|wenquanyi|sourcehan|droidsansfallback|uming|ukai|simhei|msyh|pingfang)", re.I)


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


def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese in this session (notebooks); return the font's name, or None.

    The font is found by its file when matplotlib's font cache predates it (a font installed after the
    cache was built), so a stale ``~/.cache/matplotlib`` does not matter. Also sets an ASCII minus sign,
    which every font has.
    """
    import matplotlib as mpl

    family = cjk_font()
    if family:
        mpl.rcParams["font.sans-serif"] = [family, *[f for f in mpl.rcParams["font.sans-serif"] if f != family]]
    mpl.rcParams["font.family"] = "sans-serif"
    mpl.rcParams["axes.unicode_minus"] = False
    return family


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
    rc: Any = {  # matplotlib types its keys as literals
        "font.family": "sans-serif",
        "font.sans-serif": ([family] if family else []) + ["DejaVu Sans"],
        "axes.unicode_minus": False,
        "svg.fonttype": "path",
        "svg.hashsalt": "gisgrid",
        "font.size": 9,
    }
    return mpl.rc_context(rc)


#: matplotlib's rcParams, its font objects and the warning filters are one per process: two towns drawing at
#: once (a district on the threads scheduler) would change them under each other. One chart set at a time.
_DRAWING = threading.Lock()


def _charts(card: pd.DataFrame, life: pd.DataFrame, history: History | None, max_villages: int = 30) -> list[_Chart]:
    with _DRAWING:
        return _draw_charts(card, life, history, max_villages)


def _draw_charts(card: pd.DataFrame, life: pd.DataFrame, history: History | None, max_villages: int) -> list[_Chart]:
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
                label=_label(METRIC_LABELS["area_coverage"], "area"))
        ax.barh(y - 0.2, show["road_coverage"].fillna(0) * 100, height=0.4, color="#9ecae1",
                label=_label(METRIC_LABELS["road_coverage"], "roads"))
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
