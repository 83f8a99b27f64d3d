"""The one vocabulary of what people read: numbers as the maps, reports, notebooks and the terminal show them.

A ratio is shown truncated, never rounded up: 0.99996 of the town in a grid
reads 99.99%, never 100% (a shortfall must not read as full coverage), and a
ratio over nothing (no roads to cover) reads "n/a", never 100%.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["percent", "village_owner"]


def percent(value: Any, digits: int = 2) -> str:
    """A ratio (0..1) as a percentage that never rounds a shortfall up to 100% nor a trace down to 0%.

    Parameters
    ----------
    value
        The ratio; None or NaN for "no data".
    digits
        Decimals of the percentage.

    Returns
    -------
    str
        e.g. ``"99.99%"`` for 0.99996, ``"100.00%"`` for 1, ``"<0.01%"`` for
        0.00001, ``"n/a"`` for None or NaN.
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(x):
        return "n/a"
    scale = 10.0**digits
    shown = math.floor(x * 100 * scale + 1e-9) / scale  # truncate, with a hair for binary fractions like 0.29
    if x < 1 and shown >= 100:  # the hair must not lift a shortfall to 100%
        shown = (100 * scale - 1) / scale
    if shown <= 0 < x:
        return f"<{1 / scale:.{digits}f}%"
    return f"{shown:.{digits}f}%"


def village_owner(village_id: str | None, name: str | None = None) -> str | None:
    """Return the owner string of a village: ``"<name>村委会 (<village_id>)"``.

    A name ending in 社区 gets 居委会; a name already ending in 村委会 or 居委会
    is kept as it is. None when ``village_id`` is None.
    """
    if village_id is None:
        return None
    if not name:
        return f"村委会 ({village_id})"
    if name.endswith(("村委会", "居委会")):
        body = name
    elif name.endswith("社区"):
        body = f"{name}居委会"
    else:
        body = f"{name}村委会"
    return f"{body} ({village_id})"
