"""Loose values, read one way across the report: an attribute that may be missing, a number, a text.

The same three helpers are private to :mod:`gisgrid.policy`; they stay apart
until policy makes its own public.
"""

from __future__ import annotations

import math
from typing import Any


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
