"""Errors raised by gisgrid.

Every error is a :class:`GisgridError` and also a built-in (``ValueError``,
``RuntimeError``) so callers can catch either. Messages say *what* is wrong,
*where* (file, layer, column, row) and *how to fix it*; the parts are kept as
attributes so the CLI and reports can show them separately.
"""

from __future__ import annotations

__all__ = [
    "CRSError",
    "ConfigError",
    "GisgridError",
    "HistoryError",
    "InputError",
    "RuleError",
    "SchemaError",
]


class GisgridError(Exception):
    """Base class of every error gisgrid raises on purpose.

    Parameters
    ----------
    what
        One sentence: what is wrong.
    path, layer, column, row
        Where it is; any may be None.
    fix
        What the user should do about it.
    """

    def __init__(
        self,
        what: str,
        *,
        path: object | None = None,
        layer: str | None = None,
        column: str | None = None,
        row: object | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.path = None if path is None else str(path)
        self.layer = layer
        self.column = column
        self.row = row
        self.fix = fix
        super().__init__(self._compose())

    def where(self) -> str:
        """Return the location part of the message ('' when unknown)."""
        parts = []
        if self.path:
            parts.append(f"file {self.path}")
        if self.layer:
            parts.append(f"layer '{self.layer}'")
        if self.column:
            parts.append(f"column '{self.column}'")
        if self.row is not None:
            parts.append(f"row {self.row}")
        return ", ".join(parts)

    def _compose(self) -> str:
        where = self.where()
        msg = f"{where}: {self.what}" if where else self.what
        if self.fix:
            msg = f"{msg} Fix: {self.fix}"
        return msg


class InputError(GisgridError, ValueError):
    """Input data cannot be read or used as given."""


class SchemaError(InputError):
    """A layer or roster lacks a column, has duplicate ids or wrong geometry types."""


class CRSError(InputError):
    """A coordinate reference system is missing, unknown or does not fit the coordinates."""


class ConfigError(GisgridError, ValueError):
    """The configuration file is missing, malformed or contradicts itself."""


class RuleError(ConfigError):
    """A sensitive-section rule in the configuration is invalid."""


class HistoryError(GisgridError, RuntimeError):
    """The run history refuses an operation (e.g. a run dated before the last one)."""
