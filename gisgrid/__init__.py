"""gisgrid: is every square metre, road, river reach and must-check point of a township under a named, responsible person?"""

from __future__ import annotations

from gisgrid._errors import (
    ConfigError,
    CRSError,
    GisgridError,
    HistoryError,
    InputError,
    RuleError,
    SchemaError,
)

__version__ = "0.1.0"

__all__ = [
    "CRSError",
    "ConfigError",
    "GisgridError",
    "HistoryError",
    "InputError",
    "RuleError",
    "SchemaError",
    "__version__",
]
