"""gisgrid: is every square metre, road, river reach and must-check point of a township under a named person?

The analyst's API::

    import gisgrid
    town = gisgrid.load_town("gisgrid.toml")      # or no argument: the demo town
    a = gisgrid.analyze(town)
    a.findings, a.summary, a.explore()
"""

from __future__ import annotations

from gisgrid import _compat
from gisgrid._errors import (
    ConfigError,
    CRSError,
    GisgridError,
    HistoryError,
    InputError,
    RuleError,
    SchemaError,
)

_compat.install()

_LAZY = {
    "Assessment": "gisgrid.analysis",
    "Comparison": "gisgrid.comparison",
    "analyze": "gisgrid.analysis",
    "compare": "gisgrid.comparison",
    "Town": "gisgrid.model",
    "load_town": "gisgrid.pipeline",
}


def __getattr__(name: str) -> object:
    # Lazy so that ``import gisgrid.crs`` stays light and modules load in dependency order.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'gisgrid' has no attribute {name!r}"
    raise AttributeError(msg)

__version__ = "0.1.0"

__all__ = [
    "Assessment",
    "CRSError",
    "Comparison",
    "ConfigError",
    "GisgridError",
    "HistoryError",
    "InputError",
    "RuleError",
    "SchemaError",
    "Town",
    "__version__",
    "analyze",
    "compare",
    "load_town",
]
