"""Old module paths of 0.1 (``gisgrid.coverage``, ``gisgrid.assign``, ...) kept working, with a warning.

The 0.2 re-layout moved modules into folders that show the layers
(``geometry/``, ``checks/``, ...). Code written against 0.1 still imports;
each old path warns once with its new home, and will go in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

#: old module -> the modules that now hold its public names, first match wins
MOVED: dict[str, tuple[str, ...]] = {
    "gisgrid.coverage": ("gisgrid.geometry.coverage",),
    "gisgrid.tolerance": ("gisgrid.geometry.tolerance",),
    "gisgrid.assign": ("gisgrid.checks.responsibility", "gisgrid.owners"),
    "gisgrid.sensitive": ("gisgrid.checks.sensitive",),
}


class _Moved(types.ModuleType):
    """A stand-in module that reads each attribute from the module that holds it now."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"Moved in gisgrid 0.2 to {', '.join(homes)}.")
        self._homes = tuple(homes)

    def __getattr__(self, attr: str) -> Any:
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        msg = f"module {self.__name__!r} (now {', '.join(self._homes)}) has no attribute {attr!r}"
        raise AttributeError(msg)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(homes)} in gisgrid 0.2; import it from there",
                      DeprecationWarning, stacklevel=2)
        return _Moved(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Let the old module paths import (once per interpreter)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
