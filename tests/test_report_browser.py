"""report.html with 1,000 and 20,000 findings, in headless Chromium: bounded height, no wider than the window.

The findings are made in code on the demo town by ``benchmarks/bench_report.py`` (its real villages, grids and
grid chiefs; overlaps between neighbouring grids, gaps along up to 40 grids, findings across two villages; a
lifecycle of new, persisting, overdue, back-again and fixed items), and written by the real ``write_report``.

Why the height is bounded: every list longer than ``FLAT_ROWS`` is one collapsed line per village, and the
tables that grow with the town (scorecard, owners, must-check points, the points ledger) sit in boxes at most
70% of the window tall; the rest (headline, charts, the 15 grids to redraw first) has a fixed size. So the page
does not grow with the number of findings: at 20,000 it is at most as tall as at 1,000 plus a tenth, and
under ``MAX_SCREENS`` windows (the 0.1 report was 333,602 px tall at 795 findings).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest

from gisgrid import report
from gisgrid.vocab import percent

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1000, 20000)
WINDOW = (1400, 900)
#: The page is at most this many windows tall, at any number of findings (see the module docstring).
MAX_SCREENS = 20
#: The village scorecard starts within this many windows from the top.
SCORECARD_WITHIN_SCREENS = 6
#: Generous bounds for a shared 2-core CI machine (measured: first paint 0.3-0.5 s, load 1-3 s under load 10).
FIRST_PAINT_MS = 5_000
LOAD_MS = 20_000
#: CPU seconds of write_report at 20,000 findings (measured 6-10 s on a loaded 2-core machine; the goal, as
#: benchmarks/bench_report.py measures it on a quiet one, is under 5 s of wall time; openpyxl took 15 s alone).
WRITE_CPU_S = 15.0


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "bench_report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_report"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """``{n: (folder, assessment, lifecycle, cpu seconds)}``: the whole folder at the largest size (write_report),
    report.html alone below it (render_html: the page is the same, the test is quicker)."""
    bench = _bench()
    out = {}
    for n in SIZES:
        a, life = bench.synthetic_assessment(n)
        folder = tmp_path_factory.mktemp(f"report{n}")
        start = time.process_time()
        if n == max(SIZES):
            report.write_report(a, folder, life, map_href="../../maps/command_center.html")
        else:
            html = report.render_html(a, life, map_href="../../maps/command_center.html")
            (folder / "report.html").write_text(html, encoding="utf-8")
        out[n] = (folder, a, life, time.process_time() - start)
    return out


# --------------------------------------------------------------------------- without a browser
def test_the_folder_at_20000_findings(reports):
    folder, _, life, cpu = reports[20000]
    assert len(life) == 20000
    assert life["owner"].nunique() > 300
    assert life["village_id"].map(lambda v: isinstance(v, tuple)).any()  # findings across two villages
    assert life["message"].str.count(",").max() >= 39  # a gap along 40 grids
    assert cpu < WRITE_CPU_S, f"write_report took {cpu:.1f} s of CPU at 20,000 findings"
    html = (folder / "report.html").read_text(encoding="utf-8")
    for name in ("findings.xlsx", "findings.csv", "findings.geojson", "summary.json", "hygiene.csv"):
        assert (folder / name).exists()
        assert f'href="{name}"' in html  # the full lists, linked relatively
    # Beyond MAX_COPIED_ROWS the workbook lists every finding once, with a filter on every column.
    book = openpyxl.load_workbook(folder / "findings.xlsx", read_only=True)
    assert book.sheetnames == ["findings", "checkpoints", "summary", "hygiene 数据质量"]
    sheet = book["findings"]
    assert sheet.max_row == 20000 + 1
    book.close()
    ref = re.search(r'<autoFilter ref="([^"]+)"', _sheet_xml(folder / "findings.xlsx", 1)).group(1)
    assert ref == f"A1:{openpyxl.utils.get_column_letter(sheet.max_column)}{20000 + 1}"


def _sheet_xml(path: Path, number: int) -> str:
    with zipfile.ZipFile(path) as z:
        return z.read(f"xl/worksheets/sheet{number}.xml").decode("utf-8")


def test_no_ratio_below_one_reads_100_percent(reports):
    for n in SIZES:
        folder, a, _, _ = reports[n]
        html = (folder / "report.html").read_text(encoding="utf-8")
        # by construction every ratio of this town is below 1 (0.9996 and 0.99996 among them)
        ratios = [a.totals["area_coverage"], a.totals["effective_coverage"], a.totals["road_coverage"],
                  *a.summary["area_coverage"], *a.summary["road_coverage"]]
        assert max(ratios) < 1
        assert percent(0.99996) == "99.99%"
        assert "99.96%" in html  # the area in the headline
        assert "99.99%" in html  # the staffed area
        assert not re.search(r"100\.0+\s*%", html), n


# --------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="module")
def driver():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(chromedriver).exists()):
        if os.environ.get("GISGRID_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (GISGRID_REQUIRE_BROWSER is set)")
        pytest.skip("chromium/chromedriver not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(chromedriver), options=opts)
    yield drv
    drv.quit()


MEASURE_JS = """
var nav = performance.getEntriesByType('navigation')[0];
var paint = performance.getEntriesByType('paint').filter(function (e) { return e.name === 'first-contentful-paint'; });
var top = function (id) {
  var e = document.getElementById(id); return e ? e.getBoundingClientRect().top + scrollY : -1; };
return {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
        window: window.innerWidth, viewport: window.innerHeight,
        paint: paint.length ? paint[0].startTime : null, load: nav.loadEventEnd,
        ready: window.__gisgrid_report_ready === true,
        order: ['headline', 'veto', 'overdue', 'villages', 'owners', 'open', 'new', 'resolved', 'charts'].map(top)};
"""


def _open(drv, path: Path) -> dict:
    drv.get_log("browser")
    drv.set_window_size(*WINDOW)
    drv.get(path.as_uri())
    deadline = time.perf_counter() + 60
    while drv.execute_script("return document.readyState") != "complete" or \
            not drv.execute_script("var n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd > 0"):
        assert time.perf_counter() < deadline, "report.html did not load in 60 s"
        time.sleep(0.05)
    return drv.execute_script(MEASURE_JS)


def _problems(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.browser
def test_the_page_at_1000_and_20000_findings(driver, reports):
    seen = {}
    for n in SIZES:
        folder = reports[n][0]
        m = _open(driver, folder / "report.html")
        seen[n] = m
        assert m["ready"], "the filter script did not run (Content-Security-Policy?)"
        assert m["width"] <= m["window"], (n, m)  # never wider than the window
        assert m["height"] <= MAX_SCREENS * m["viewport"], (n, m)
        assert m["paint"] is not None, (n, m)
        assert m["paint"] < FIRST_PAINT_MS, (n, m)
        assert m["load"] < LOAD_MS, (n, m)
        # what a command center reads first comes first
        assert min(m["order"]) > 0, m["order"]
        assert m["order"] == sorted(m["order"]), m["order"]
        assert m["order"][3] <= SCORECARD_WITHIN_SCREENS * m["viewport"], m["order"]
        assert _problems(driver) == []
        if n == SIZES[0]:
            # every cell of every list, opened, stays inside its column: long id lists and messages wrap
            cells = driver.execute_script(
                "document.querySelectorAll('details').forEach(function (d) { d.open = true; });"
                "var tds = Array.from(document.querySelectorAll('table.findings td'));"
                "return [tds.length, tds.filter(function (td) { return td.scrollWidth > td.clientWidth + 1; }).length,"
                "        Math.max.apply(null, tds.map(function (td) { return td.textContent.split(',').length; }))];")
            assert cells[0] > 5000, cells
            assert cells[1] == 0, cells
            assert cells[2] >= 40, cells  # a gap along 40 grids is among them
            assert driver.execute_script("return document.documentElement.scrollWidth") <= m["window"]
        # a narrow window (a laptop beside the wall screen): still no sideways scrolling
        driver.set_window_size(800, 900)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        if n == SIZES[-1]:  # the first screen, for people to look at
            driver.set_window_size(*WINDOW)
            driver.execute_script("window.scrollTo(0, 0);")
            assert driver.save_screenshot(str(folder / "report.png"))
            shutil.copyfile(folder / "report.png", f"/tmp/gisgrid_report_{n}.png")
    # the page does not grow with the findings
    assert seen[20000]["height"] <= 1.1 * seen[1000]["height"], (seen[1000]["height"], seen[20000]["height"])


@pytest.mark.browser
def test_filter_boxes(driver, reports):
    folder, _, life, _ = reports[20000]
    _open(driver, folder / "report.html")
    groups = driver.execute_script("return document.querySelectorAll('#open-list > details').length")
    assert groups == len({v for cell in life.loc[life["status"] != "resolved", "village_id"]
                          for v in (cell if isinstance(cell, tuple) else (cell,))})
    # the groups count what the lifecycle holds: per village, a finding about two villages in both
    opened = life[life["status"] != "resolved"]
    for key, rows in (("open", opened), ("veto", opened[opened["severity"] == "veto"]),
                      ("overdue", life[life["status"] == "overdue"])):
        want: dict[str, int] = {}
        for cell in rows["village_id"]:
            for v in cell if isinstance(cell, tuple) else (cell,):
                want[v] = want.get(v, 0) + 1
        got = driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' > details')).map(function (d) {"
            "  var b = d.querySelector('summary').querySelectorAll('b');"
            "  return [d.querySelector('summary .id').textContent, Number(b[1].textContent)]; });", f"#{key}-list")
        assert dict(got) == want, key
    # a finding of one village, shown in the list: filtering by its id leaves its village and its row
    fid = driver.execute_script(
        "var rows = Array.from(document.querySelectorAll('#open-list tr.f'));"
        "return rows.map(function (r) { return r.querySelector('.id').textContent.split(' · ')[1]; });")
    single = set(life.loc[life["village_id"].map(lambda v: isinstance(v, str)), "finding_id"])
    fid = next(f for f in fid if f in single)
    box = driver.find_element("css selector", "input[data-target='open-list']")
    assert box.is_displayed()
    box.send_keys(fid)
    time.sleep(0.5)
    shown = driver.execute_script(
        "var g = Array.from(document.querySelectorAll('#open-list > details')).filter(function (d) {"
        "  return !d.hidden; });"
        "return g.map(function (d) { return [d.open, Array.from(d.querySelectorAll('tr.f')).filter("
        "  function (r) { return !r.hidden; }).map(function (r) { return r.textContent; })]; });")
    assert len(shown) == 1
    assert shown[0][0] is True
    assert len(shown[0][1]) == 1
    assert fid in shown[0][1][0]
    counted = driver.execute_script("return document.querySelector(\".gg-count[data-for='open-list']\").textContent")
    assert counted == f"1 / {groups}"
    # cleared: every group back, closed
    driver.execute_script("var b = arguments[0]; b.value = ''; b.dispatchEvent(new Event('input'));", box)
    time.sleep(0.5)
    assert driver.execute_script(
        "return Array.from(document.querySelectorAll('#open-list > details')).filter(function (d) {"
        "  return !d.hidden && !d.open; }).length") == groups
    # the owners' table: an owner's name leaves the rows that name them
    owner = life.loc[life["status"] != "resolved", "owner"].value_counts().index[0]
    box = driver.find_element("css selector", "input[data-target='owners-list']")
    box.send_keys(owner)
    time.sleep(0.5)
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#owners-list tbody.fi')).filter(function (b) {"
        "  return !b.hidden; }).map(function (b) { return b.querySelector('td').textContent; });")
    assert owner in rows
    assert all(owner in r for r in rows)
    assert _problems(driver) == []
