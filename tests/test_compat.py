"""The 0.1 public paths keep working after the 0.2 re-layout, each with a warning that names its new home."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import gisgrid
from gisgrid import owners
from gisgrid.checks import responsibility, sensitive
from gisgrid.geometry import coverage, tolerance


@pytest.mark.parametrize(("old", "name", "home"), [
    ("gisgrid.coverage", "partition_defects", coverage),
    ("gisgrid.tolerance", "widths", tolerance),
    ("gisgrid.assign", "analyze_responsibility", responsibility),
    ("gisgrid.assign", "assign_owners", owners),
    ("gisgrid.assign", "task_lists", owners),
    ("gisgrid.sensitive", "parse_rules", sensitive),
])
def test_old_module_paths_import_with_a_warning(old, name, home):
    # a fresh interpreter: the warning fires on the first import of the old path
    code = (f"import warnings; warnings.simplefilter('error')\n"
            f"try:\n    from {old} import {name}\nexcept DeprecationWarning as w:\n    print('WARNED', w)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "WARNED" in res.stdout
    assert home.__name__ in res.stdout
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=home.__name__.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(home, name)


def test_an_unknown_name_on_an_old_path_is_an_attribute_error():
    sys.modules.pop("gisgrid.coverage", None)
    with pytest.warns(DeprecationWarning, match="gisgrid.geometry.coverage"):
        module = importlib.import_module("gisgrid.coverage")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = module.nope


def test_the_public_api_is_unchanged():
    for name in ("Assessment", "Comparison", "Town", "analyze", "compare", "load_town", "GisgridError",
                 "ConfigError", "InputError", "SchemaError", "CRSError", "RuleError", "HistoryError"):
        assert name in gisgrid.__all__
        assert getattr(gisgrid, name) is not None
    assert callable(gisgrid.compare)
    assert gisgrid.compare.__module__ == "gisgrid.comparison"
