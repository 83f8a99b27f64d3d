"""The README's configuration examples are real: they parse and run on the demo data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gisgrid.pipeline import analyse_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def _toml_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```toml\n(.*?)```", text, flags=re.S)


def test_readme_has_the_two_commands_first():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert "pip install . && gisgrid run" in first
    assert 'pip install -e ".[test]" && pytest' in first


@pytest.mark.slow
def test_option_example_runs_on_the_demo_town(tmp_path):
    options = next(b for b in _toml_blocks() if "[rules]" in b)
    for name in ("town.gpkg", "grid_staff.csv", "river_chiefs.xlsx", "patrols.csv", "gisgrid.toml"):
        shutil.copy(ROOT / "data" / "geo" / name, tmp_path / name)
    cfg_path = tmp_path / "gisgrid.toml"
    cfg_path.write_text(cfg_path.read_text(encoding="utf-8") + "\n" + options, encoding="utf-8")
    cfg = load_config(cfg_path)
    a = analyse_config(cfg)
    assert a.responsibility.options["border_rule"] == "left"
    assert (a.findings["owner"] == "镇综治办").any()
    assert not ((a.sensitive["rule"] == "village_border_50m").any())
