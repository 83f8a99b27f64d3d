"""The analysts' notebooks: committed without outputs, and they run top to bottom on the demo data.

Each notebook is executed with nbclient in the ``python3`` kernel, in a temporary working directory
(with ``TMPDIR`` pointing there too), and fails the test on any error. Warnings inside the kernel do
not raise, so the cells' stderr is checked for them instead.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_coverage_gaps.ipynb", "03_rivers_and_chiefs.ipynb", "04_what_if.ipynb"]
CELL_TIMEOUT_S = 300
CJK = re.compile(r"[\u4e00-\u9fff]")
WARNING = re.compile(r"\b[A-Z]\w*Warning\b|missing from (the )?font|Glyph \d+")


def _read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _outputs(nb, output_type: str | None = None):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if output_type is None or out.get("output_type") == output_type:
                yield cell, out


def _rich(nb, mime: str) -> list[str]:
    return [str(out["data"][mime]) for _, out in _outputs(nb) if mime in out.get("data", {})]


def test_the_four_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.get("outputs") == [], f"{name}: a cell has outputs; clear them before committing"
        assert cell.get("execution_count") is None, f"{name}: a cell has an execution count"
    text = "\n".join(c.source for c in nb.cells)
    assert not re.search(r"/(work|home|root|Users)/", text), f"{name}: no absolute paths; use the demo data"
    assert nb.cells[0].cell_type == "markdown"
    assert CJK.search(nb.cells[0].source), f"{name}: the title is for the town too (Chinese and English)"


def _cjk_installed() -> bool:
    import subprocess

    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False,
                                timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    return bool(listed.strip())


def _need_cjk() -> None:
    """Like the report's chart test: without a CJK font skip, except where CI promises one (.ci/run installs it)."""
    if _cjk_installed():
        return
    if os.environ.get("GISGRID_REQUIRE_BROWSER"):
        pytest.fail("no CJK font, but CI installs fonts-noto-cjk (.ci/run)")
    pytest.skip("no CJK font installed (Debian package fonts-noto-cjk): the notebooks' Chinese labels need one")


def test_a_font_cache_older_than_the_font_does_not_matter(monkeypatch):
    """matplotlib's cache built before fonts-noto-cjk was installed: the font is still found by its file."""
    import warnings

    from matplotlib import font_manager
    from matplotlib.figure import Figure

    from gisgrid.report import charts

    _need_cjk()
    stale = [f for f in font_manager.fontManager.ttflist if not charts._CJK_FILES.search(os.path.basename(f.fname))]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    charts.cjk_font.cache_clear()
    monkeypatch.setattr("matplotlib.rcParams", __import__("matplotlib").rcParams.copy())
    try:
        assert charts.use_cjk_font() is not None
        fig = Figure()
        fig.add_subplot().set_title("东社镇 网格")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a missing glyph is a UserWarning
            fig.savefig(os.devnull, format="png")
    finally:
        charts.cjk_font.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_top_to_bottom(name, tmp_path):
    if not name.startswith("01"):
        _need_cjk()
    nb = _read(name)
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)  # anything a notebook writes to a temp folder lands here
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    for cell, out in _outputs(nb, "stream"):
        if out.get("name") == "stderr":
            assert not WARNING.search(out["text"]), f"{name}: warning in cell\n{cell.source}\n---\n{out['text']}"
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before, f"{name} wrote into the repository"
    html = _rich(nb, "text/html")
    assert html, f"{name}: nothing rendered itself"
    assert any("leaflet" in h.lower() for h in html), f"{name}: no interactive map was shown"
    if name.startswith("01"):
        assert any("coverage assessment" in h for h in html)
        assert any("东社镇" in h for h in html)
    if name.startswith(("02", "03", "04")):
        assert _rich(nb, "image/png"), f"{name}: no matplotlib figure"
    if name.startswith("02"):
        written = sorted(p.suffix for p in tmp_path.glob("gisgrid-tasks-*/*"))
        assert written == [".csv", ".xlsx"], f"task lists not exported to the temp folder: {written}"
    if name.startswith("04"):
        assert any("fixed 已整改" in h and "created 新增" in h for h in html)
    assert elapsed < 4 * CELL_TIMEOUT_S
