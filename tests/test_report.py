"""The report folder: files, thresholds, scorecard, escaping, and the page in a real browser."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely

from gisgrid import ConfigError, policy, report
from gisgrid.analysis import analyze
from gisgrid.findings import make_findings
from gisgrid.history import History
from gisgrid.model import Town

X0, Y0 = 500_000.0, 3_550_000.0
CRS = "EPSG:4549"
EVIL_VILLAGE = "<script>alert(1)</script>"
EVIL_OWNER = "<img src=x onerror=alert(1)>"
D1, D2, D3 = dt.date(2024, 5, 1), dt.date(2024, 5, 10), dt.date(2024, 5, 12)


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _town() -> Town:
    """Three villages; a 5 m gap between G1 and G2; G3 has no chief; a lane leaves every grid."""
    villages = gpd.GeoDataFrame(
        {"village_id": ["V1", "V2", "V3"], "name": ["东社村", EVIL_VILLAGE, "西亭村 $5"]},
        geometry=[_box(0, 0, 200, 200), _box(200, 0, 400, 200), _box(400, 0, 600, 200)], crs=CRS)
    grids = gpd.GeoDataFrame(
        {"grid_id": ["G1", "G2", "G3", "G4"], "village_id": ["V1", "V1", "V2", "V3"]},
        geometry=[_box(0, 0, 200, 95), _box(0, 100, 200, 200), _box(200, 0, 400, 200), _box(400, 0, 600, 200)],
        crs=CRS)
    roads = gpd.GeoDataFrame(
        {"road_id": ["R1", "R2"], "road_class": ["main", "lane"]},
        geometry=[shapely.LineString([(X0, Y0 + 50), (X0 + 600, Y0 + 50)]),
                  shapely.LineString([(X0 + 100, Y0 + 60), (X0 + 100, Y0 + 140)])], crs=CRS)
    staff = pd.DataFrame({"person_id": ["S1", "S2", "S4"], "name": ["张三", "李四", "王五"],
                          "phone": ["13800000001", "13800000002", "13800000004"], "role": ["grid_chief"] * 3,
                          "grid_id": ["G1", "G2", "G4"]})
    return Town.from_frames(villages=villages, grids=grids, roads=roads, grid_staff=staff, crs=CRS, name="测试镇")


@dataclass
class StandIn:
    """The attributes of an Assessment the report reads, with hand-set numbers (for formula tests)."""

    town: Town
    findings: gpd.GeoDataFrame
    summary: pd.DataFrame
    totals: dict[str, Any]
    checkpoints: gpd.GeoDataFrame | None = None
    sensitive: gpd.GeoDataFrame | None = None


def _stand_in(town: Town, *, fixed: bool = False, staffed: bool = False) -> StandIn:
    rows = [
        {"kind": "area_gap", "severity": "high", "message": "G1 与 G2 之间 1000 m² 无网格", "key": "village:V1",
         "geometry": _box(0, 95, 200, 100), "village_id": "V1", "owner": "张三", "measure": 1000.0, "unit": "m2"},
        {"kind": "grid_unstaffed", "severity": "high", "message": "网格 G3 无网格长", "key": "grid:G3",
         "geometry": _box(200, 0, 400, 200), "village_id": "V2", "grid_id": "G3", "owner": "镇指挥中心",
         "measure": 1.0, "unit": "count"},
        {"kind": "road_uncovered", "severity": "veto", "message": "小巷 R2 5 m 不在任何网格", "key": "road:R2",
         "geometry": shapely.LineString([(X0 + 100, Y0 + 95), (X0 + 100, Y0 + 100)]), "village_id": "V1",
         "owner": "张三", "measure": 5.0, "unit": "m"},
    ]
    if fixed:
        rows = rows[1:2]
    if staffed:
        rows = [r for r in rows if r["kind"] != "grid_unstaffed"]
    df = pd.DataFrame(rows)
    found = make_findings(df, crs=CRS, key=df["key"])
    v = town.villages.set_index("village_id")
    grid_area = town.grids.dissolve("village_id").area.reindex(v.index).fillna(0)
    summary = pd.DataFrame({"name": v["name"], "area_m2": v.area, "grid_area_m2": grid_area,
                            "area_coverage": grid_area / v.area, "road_m": [280.0, 200.0, 200.0],
                            "uncovered_road_m": [0.0 if fixed else 5.0, 0.0, 0.0]})
    for sev in ("veto", "high", "medium", "low"):
        summary[sev] = found[found["severity"] == sev].groupby("village_id").size().reindex(v.index, fill_value=0)
    gap = 0.0 if fixed else 1000.0
    staffed_area = 120_000 if staffed else 80_000
    totals = {"area_coverage": 1 - gap / 120_000, "effective_coverage": (staffed_area - gap) / 120_000,
              "road_coverage": 1 - (0 if fixed else 5) / 680, "uncovered_lane_m": 0.0 if fixed else 5.0,
              "veto": int((found["severity"] == "veto").sum()), "by_severity": {}, "by_kind": {}}
    checkpoints = gpd.GeoDataFrame(
        {"poi_id": ["P1"], "kind": ["school"], "name": [EVIL_VILLAGE], "village_id": ["V1"], "grid_id": ["G1"],
         "grid_chief": ["张三"], "river_chief": [None], "ok": [True], "problem": [None]},
        geometry=[shapely.Point(X0 + 50, Y0 + 30)], crs=CRS)
    return StandIn(town, found, summary, totals, checkpoints)


def assess(town: Town, *, fixed: bool = False, staffed: bool = False) -> Any:
    """The real analysis of the test town; ``fixed``: G1 grows to close the gap (and the lane in it);
    ``staffed``: G3 gets a grid chief."""
    if fixed:
        grids = town.grids.copy()
        grids.loc[grids["grid_id"] == "G1", "geometry"] = _box(0, 0, 200, 100)
        town = town.replace(grids=grids)
    if staffed:
        staff = pd.concat([town.grid_staff, pd.DataFrame({"person_id": ["S3"], "name": ["赵六"],
                           "phone": ["13800000003"], "role": ["grid_chief"], "grid_id": ["G3"]})], ignore_index=True)
        town = town.replace(grid_staff=staff)
    return analyze(town)


def with_evil_owner(a: Any) -> Any:
    """Put a hostile owner name on the first finding (owners come from rosters and config)."""
    f = a.findings.copy()
    if len(f):
        f.loc[f.index[0], "owner"] = EVIL_OWNER
    a.findings = f
    return a


def assert_only_our_script(html: str) -> None:
    """The page has one script, ours, and its Content-Security-Policy allows exactly that one by its hash."""
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 1
    assert html.count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode("ascii")
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1]


@pytest.fixture
def three_runs(tmp_path: Path) -> tuple[Any, gpd.GeoDataFrame, History]:
    town = _town()
    hist = History(tmp_path / "reports" / "history.sqlite")
    first = with_evil_owner(assess(town))
    hist.record(first.findings, as_of=D1, totals=first.totals)
    second = with_evil_owner(assess(town, fixed=True))
    hist.record(second.findings, as_of=D2, totals=second.totals)
    third = with_evil_owner(assess(town, staffed=True))
    life = hist.record(third.findings, as_of=D3, totals=third.totals)
    return third, life, hist


def test_report_folder(tmp_path: Path, three_runs: tuple[Any, gpd.GeoDataFrame, History]) -> None:
    a, life, hist = three_runs
    folder = tmp_path / "reports" / D3.isoformat()
    written = report.write_report(a, folder, life, history=hist, map_href="../../maps/command_center.html",
                                  fail_on={"overdue": 1, "area_coverage_below": 0.999})
    assert [p.name for p in written] == ["report.html", "findings.csv", "findings.xlsx", "findings.geojson",
                                         "hygiene.csv", "summary.json"]
    assert all(p.parent == folder and p.stat().st_size > 0 for p in written)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left

    raw = (folder / "findings.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    csv = pd.read_csv(folder / "findings.csv", encoding="utf-8-sig", dtype=str)
    for col in ("finding_id", "kind", "severity", "village_id", "grid_id", "owner", "measure", "message",
                "status", "first_seen", "deadline", "resolved_on", "village_name", "lon", "lat"):
        assert col in csv.columns
    assert "东社村" in set(csv["village_name"])
    assert {"reopened", "resolved"} <= set(csv["status"])
    assert len(csv) == len(life)
    assert csv["lon"].astype(float).between(119, 121).all()

    book = openpyxl.load_workbook(folder / "findings.xlsx", read_only=True)
    names = book.sheetnames
    assert names[0] == "findings"
    assert names[-3:] == ["checkpoints", "summary", "hygiene 数据质量"]
    assert any(n.startswith("村 V1") for n in names)
    assert any(n.startswith("责 ") for n in names)
    rows = list(book["findings"].iter_rows(values_only=True))
    assert len(rows) == len(life) + 1
    assert {"status", "deadline"} <= set(rows[0])
    summary_rows = list(book["summary"].iter_rows(values_only=True))
    assert {"rank", "score", "flag"} <= set(summary_rows[0])
    book.close()

    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["as_of"] == D3.isoformat()
    assert summary["exit_status"] == 1
    assert "veto" in summary["reason"] or "overdue" in summary["reason"] or "area coverage" in summary["reason"]
    assert set(summary["counts"]) >= {"by_kind", "by_severity", "by_status", "open", "total"}
    assert summary["counts"]["by_status"]["resolved"] == int((life["status"] == "resolved").sum())
    assert 0.9 < summary["coverage"]["area_coverage"] <= 1
    assert set(summary["coverage"]["villages"]) == {"V1", "V2", "V3"}
    assert summary["previous_run"]["as_of"] == D2.isoformat()
    assert summary["files"][-1] == "summary.json"

    geo = json.loads((folder / "findings.geojson").read_text(encoding="utf-8"))
    assert len(geo["features"]) == len(life)
    x, y = shapely.geometry.shape(geo["features"][0]["geometry"]).representative_point().coords[0]
    assert (119 < x < 121, 31 < y < 33) == (True, True)  # EPSG:4326
    assert "deadline" in geo["features"][0]["properties"]

    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "上次检查 last run 2024-05-10" in html
    assert 'href="../../maps/command_center.html"' in html
    assert html.count("data:image/svg+xml;base64,") == 3
    assert_only_our_script(html)
    assert "http://" not in html  # self-contained
    assert "https://" not in html
    assert "@media print" in html
    assert "size: A4" in html


def test_hostile_text_escaped_everywhere(tmp_path: Path, three_runs: tuple[Any, gpd.GeoDataFrame, History]) -> None:
    a, life, hist = three_runs
    life = life.copy()
    life.loc[life.index[0], "message"] = '=HYPERLINK("http://x","y") </td></tr></table><script>alert(2)</script>'
    html = report.render_html(a, life, history=hist, map_href="javascript:alert(3)")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert_only_our_script(html)
    assert "<img src=x" not in html
    assert "javascript:" not in html
    written = report.write_report(a, tmp_path / "r", life, history=hist)
    csv = pd.read_csv(written[1], encoding="utf-8-sig", dtype=str)
    assert csv["message"].str.startswith("'=HYPERLINK").any()  # no formula in spreadsheets
    book = openpyxl.load_workbook(written[2])
    cells = [c for row in book["findings"].iter_rows() for c in row]
    assert not [c for c in cells if c.data_type == "f"]


def test_thresholds() -> None:
    town = _town()
    a = _stand_in(town)
    code, reason = policy.evaluate_thresholds(a, None, None)
    assert code == 1
    assert "veto" in reason
    assert policy.evaluate_thresholds(a, None, {"veto": 0}) == (0, "within thresholds")
    assert policy.evaluate_thresholds(a, None, {"veto": False}) == (0, "within thresholds")
    code, reason = policy.evaluate_thresholds(a, None, {"veto": 0, "area_coverage_below": 0.999})
    assert code == 1
    # shown truncated, like every ratio (a shortfall never rounds up): 0.991666… reads 99.16%
    assert "area coverage 99.16% < 99.90%" in reason
    code, reason = policy.evaluate_thresholds(a, None, {"veto": 0, "uncovered_lane_m_above": 1, "high": 3})
    assert code == 1
    assert "uncovered lanes 5 m > 1 m" in reason
    assert "high" not in reason
    fixed = _stand_in(town, fixed=True)
    assert policy.evaluate_thresholds(fixed, None, {"overdue": 1, "area_coverage_below": 0.99})[0] == 0
    life = fixed.findings.assign(status="overdue", deadline=D1, days_overdue=3)
    code, reason = policy.evaluate_thresholds(fixed, life, {"overdue": 1})
    assert (code, reason) == (1, "overdue 1 >= 1")
    with pytest.raises(ConfigError, match="unknown key"):
        policy.evaluate_thresholds(a, None, {"overdu": 1})
    with pytest.raises(ConfigError, match="must be a number"):
        policy.evaluate_thresholds(a, None, {"overdue": "many"})


def test_scorecard_formula_and_flags() -> None:
    town = _town()
    a = _stand_in(town)
    life = a.findings.assign(status=["overdue", "new", "persisting"])
    card = policy.scorecard(a, life).set_index("village_id")
    # V1: area 195/200, road 1 - 5/280; one veto (new... persisting) and one overdue high gap
    v1 = card.loc["V1"]
    expected = 100 * np.mean([0.975, 1 - 5 / 280]) - 20 * 1 - 5 * int(v1["overdue"])
    assert v1["score"] == pytest.approx(round(expected, 2))
    assert card.loc["V3", "score"] == pytest.approx(100.0)
    assert card.loc["V3", "flag"] == "red"
    assert card.loc["V1", "flag"] == "yellow"
    assert list(card["rank"]) == sorted(card["rank"])
    assert card.loc["V2", "name"] == EVIL_VILLAGE


def test_report_without_history(tmp_path: Path) -> None:
    a = _stand_in(_town())
    written = report.write_report(a, tmp_path, None, as_of=D1)
    summary = json.loads(written[-1].read_text(encoding="utf-8"))
    assert summary["counts"]["by_status"]["new"] == len(a.findings)
    assert summary["previous_run"] is None
    assert "首次检查 first run" in written[0].read_text(encoding="utf-8")


def test_charts_use_a_cjk_font_when_installed() -> None:
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False,
                                timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    if not listed.strip():
        assert report._label("东社村", "V1") == "V1"  # ids instead of empty boxes
        pytest.skip("no CJK font installed (Debian package fonts-noto-cjk)")
    assert report.cjk_font() is not None
    assert report._label("东社村 $5", "V1") == r"东社村 \$5"


def test_charts_without_a_cjk_font_fall_back_to_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report.charts, "cjk_font", lambda: None)
    a = _stand_in(_town())
    html = report.render_html(a, None, as_of=D1)  # pytest turns any missing-glyph warning into an error
    assert html.count("data:image/svg+xml;base64,") == 3
    assert report._label("东社村", "V1") == "V1"


# --------------------------------------------------------------------------- the browser
def _driver() -> Any:
    chromium, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.exists() and driver.exists()):
        if os.environ.get("GISGRID_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromium-driver are required (GISGRID_REQUIRE_BROWSER is set)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"):
        opts.add_argument(arg)
    opts.binary_location = str(chromium)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(driver)), options=opts)


@pytest.mark.browser
def test_report_in_headless_chromium(tmp_path: Path, three_runs: tuple[Any, gpd.GeoDataFrame, History]) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.print_page_options import PrintOptions

    a, life, hist = three_runs
    folder = tmp_path / "2024-05-12"
    written = report.write_report(a, folder, life, history=hist, map_href="../../maps/command_center.html")
    driver = _driver()
    try:
        driver.set_window_size(1200, 900)
        driver.get(written[0].resolve().as_uri())
        with pytest.raises(NoAlertPresentException):
            _ = driver.switch_to.alert.text
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
        body = driver.find_element(By.TAG_NAME, "body").text
        assert EVIL_VILLAGE in body
        assert EVIL_OWNER in body
        assert "测试镇" in body
        assert "村居排名" in body
        assert driver.execute_script("return document.querySelectorAll('script').length") == 1  # ours
        assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert driver.execute_script("return window.__gisgrid_report_ready") is True  # the CSP let it run
        loaded = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
        assert loaded == 3  # the three charts decode
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(int(height) + 120, 10000))
        png = tmp_path / "report.png"
        assert driver.save_screenshot(str(png))
        assert png.stat().st_size > 10_000
        shutil.copy(png, "/tmp/gisgrid_report.png")
        options = PrintOptions()
        options.page_width, options.page_height = 21.0, 29.7
        pdf = tmp_path / "report.pdf"
        import base64

        pdf.write_bytes(base64.b64decode(driver.print_page(options)))
        assert pdf.read_bytes().startswith(b"%PDF")
    finally:
        driver.quit()


def test_hygiene_sheet_keeps_the_worst_grids_and_points_to_the_csv(tmp_path, monkeypatch):
    from gisgrid.analysis import analyze
    from gisgrid.demo import make_demo

    a = analyze(make_demo().town())
    monkeypatch.setattr(report.tables, "MAX_HYGIENE_ROWS", 5)
    report.write_report(a, tmp_path, None)
    import openpyxl

    sheet = openpyxl.load_workbook(tmp_path / "findings.xlsx", read_only=True)["hygiene 数据质量"]
    rows = list(sheet.iter_rows(values_only=True))
    assert [r[0] for r in rows[1:6]] == list(a.hygiene["grid_id"].head(5))
    assert "hygiene.csv" in str(rows[6][0])
    assert len(rows) == 7
    csv = pd.read_csv(tmp_path / "hygiene.csv", encoding="utf-8-sig")
    assert len(csv) == len(a.town.grids)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Data hygiene" in html
    assert f"{a.totals['slivers']:,}" in html


def test_default_thresholds_never_say_ok_for_half_a_town() -> None:
    town = _town()
    a = _stand_in(town)
    assert policy.effective_thresholds(None) == policy.DEFAULT_FAIL_ON
    half = dataclasses.replace(a, totals={**a.totals, "area_coverage": 0.53})
    code, reason = policy.evaluate_thresholds(half, None, {"veto": 0})
    assert code == 1
    assert "area coverage 53.00% < 99.00%" in reason
    assert policy.evaluate_thresholds(half, None, {"veto": 0, "area_coverage_below": 0.5})[0] == 0
    fixed = _stand_in(town, fixed=True)
    overdue = fixed.findings.assign(status="overdue", deadline=D1, days_overdue=3)
    assert policy.evaluate_thresholds(fixed, overdue, None) == (1, "overdue 1 >= 1")  # by default
    assert policy.evaluate_thresholds(fixed, overdue, {"overdue": 0})[0] == 0  # 0 switches a count off
    assert policy.evaluate_thresholds(fixed, overdue, {"overdue": False})[0] == 0
    with pytest.raises(ConfigError, match="or false"):
        policy.check_thresholds({"overdue": True})


def test_workbook_in_memory_and_streamed_hold_the_same_cells(tmp_path, monkeypatch):
    from gisgrid import io
    from gisgrid.io import tables as io_tables

    when = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.timezone.utc)
    frame = pd.DataFrame({
        "id": ["G1,东", "=1+1", "-2", "@SUM(A1)", "ok\x01", None],
        "ids": [("G1,东", "G2"), None, "x", "y", "z", "w"],
        "n": [1.5, np.nan, np.inf, 0.0, -3.0, 2.0],
        "k": [1, 2, 3, 4, 5, 6],
        "flag": [True, False, True, False, True, False],
        "day": [dt.date(2024, 5, 1), None, dt.date(2024, 5, 2), None, None, None],
        "at": [when] * 6,
    })
    books = {}
    for name, cells in (("memory", io_tables.XLSX_IN_MEMORY_CELLS), ("streamed", 0)):
        monkeypatch.setattr(io_tables, "XLSX_IN_MEMORY_CELLS", cells)
        path = io.write_xlsx({"a": frame, "A": frame.head(2), "History": frame, "责 " + "𠀀" * 20: frame.head(1)},
                             tmp_path / f"{name}.xlsx")
        book = openpyxl.load_workbook(path)
        books[name] = {s.title: [[c.value for c in row] for row in s.iter_rows()] for s in book.worksheets}
        assert not [c for s in book.worksheets for row in s.iter_rows() for c in row if c.data_type == "f"]
        assert book["a"].auto_filter.ref == "A1:G7"
    assert books["memory"] == books["streamed"]
    rows = books["memory"]["a"]
    assert rows[0] == ["id", "ids", "n", "k", "flag", "day", "at"]
    assert [r[0] for r in rows[1:]] == ["G1,东", "'=1+1", "'-2", "'@SUM(A1)", "ok", None]  # defused, cleaned
    assert rows[1][1] == "G1,东, G2"
    assert [r[2] for r in rows[1:]] == [1.5, None, None, 0, -3, 2]
    assert rows[1][4] is True
    assert rows[1][5] == dt.datetime(2024, 5, 1)
    assert rows[1][6] == dt.datetime(2024, 5, 1, 8, 30)  # naive, as stored
    # unique ignoring case; Excel reserves History; 31 UTF-16 units at most (𠀀 counts two)
    assert list(books["memory"]) == ["a", "A~2", "History~2", "责 " + "𠀀" * 14]
