"""Text for the page: the one escaping rule, JSON safe inside ``<script>``, masked phones, numbers as shown.

Every string from the data reaches the page through :func:`esc` (or :func:`_text`, the same rule for a
whole column): folium's Tooltip and Popup do not escape, and our runtime inserts with ``innerHTML``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gisgrid.findings import show_ids
from gisgrid.vocab import as_number, percent

__all__ = ["esc", "mask_phone"]

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;",
                          "$": "&#36;", "\\": "&#92;", "{": "&#123;", "}": "&#125;"})


def esc(value: Any) -> str:
    """Escape one value from the data for the page: the single helper every label goes through.

    ``html.escape`` (``& < > " '``) plus the characters that act inside a
    JavaScript template literal or a template engine (backtick, ``$``,
    backslash, braces), all as HTML character references. The result shows as
    the original text when inserted with ``innerHTML``, cannot close a
    ``<script>`` element (no ``<`` survives), and cannot run as
    ``${...}`` in a template literal.

    Parameters
    ----------
    value
        Anything; None and NaN become ``""``.

    Returns
    -------
    str
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).translate(_ESCAPES)


def _script_json(obj: Any) -> str:
    """JSON that is safe inside ``<script>``: compact, UTF-8, no ``<``, ``>`` or ``&`` left raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _script_safe(text)


def _script_safe(text: str) -> str:
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_DIGIT = re.compile(r"\d")


def mask_phone(value: Any) -> str | None:
    """Mask a phone number for display: ``13812340000`` -> ``138****0000``.

    The first three and last four digits stay; at least four digits are
    always masked (so short numbers show fewer). Separators are kept;
    several numbers joined with commas are masked one by one.

    Parameters
    ----------
    value
        A phone number (any text), or None.

    Returns
    -------
    str or None
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return ", ".join(_mask_one(part.strip()) for part in re.split(r"[,，;；/]", text) if part.strip())


def _mask_one(text: str) -> str:
    n = len(_DIGIT.findall(text))
    if n == 0:
        return "****"
    masked = max(4, n - 7)
    tail = min(4, max(0, n - masked))
    head = max(0, min(3, n - masked - tail))
    out, i = [], 0
    for ch in text:
        if ch.isdigit():
            out.append(ch if i < head or i >= n - tail else "*")
            i += 1
        else:
            out.append(ch)
    return "".join(out)


def _text(series: pd.Series | Sequence[Any]) -> list[str | None]:
    """Escaped text per value (None for blanks); each distinct value is escaped once."""
    values = [show_ids(v) if isinstance(v, (list, tuple)) else v for v in series]  # id lists read "G1, G2"
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    texts = [str(u) for u in uniques]
    joined = "\x00".join(texts)
    if texts and joined.count("\x00") == len(texts) - 1:  # escape every distinct value in one pass
        done = [t or None for t in joined.translate(_ESCAPES).split("\x00")]
    else:
        done = [esc(t) or None for t in texts]
    return [done[c] if c >= 0 else None for c in codes.tolist()]


def _fmt_num(value: Any, digits: int = 0, unit: str = "") -> str | None:
    x = as_number(value)
    if x is None:
        return None
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def _fmt_pct(value: Any) -> str | None:
    x = as_number(value)
    if x is None:
        return None
    return percent(x if x <= 1.0 else x / 100)


def _fmt_measure(measure: Any, unit: Any) -> str | None:
    try:
        x = float(measure)
    except (TypeError, ValueError):
        return None
    if math.isnan(x):
        return None
    u = str(unit or "")
    if u in ("m2", "m²", "sqm"):
        return f"{x / 10000:,.2f} ha ({x:,.0f} m²)" if x >= 10000 else f"{x:,.1f} m²"
    if u == "m":
        return f"{x / 1000:,.2f} km" if x >= 1000 else f"{x:,.1f} m"
    if u == "count":
        return f"{x:,.0f}"
    return f"{x:,.6g} {u}".strip()
