"""The maps in a real browser: headless Chromium, network cut, one session for the module.

Every page here is the self-contained (``assets="inline"``) one with no basemap, opened from a file with
DNS resolution disabled and a proxy to nowhere, so anything it tried to fetch would fail and be logged.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from test_maps import PAYLOADS, hostile_names, hostile_town, small_town

from gisgrid import maps
from gisgrid.analysis import analyze
from gisgrid.demo import make_demo

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ERRORS_JS = ("window.__errors=[];window.addEventListener('error',function(e){"
             "window.__errors.push(String(e.message));});")


@pytest.fixture(scope="module")
def driver():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("GISGRID_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (GISGRID_REQUIRE_BROWSER is set)")
        pytest.skip("chromium/chromedriver not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,900",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERRORS_JS})
    yield drv
    drv.quit()


def _open(drv, path: Path, timeout: float = 20.0) -> float:
    drv.get_log("browser")  # drop what earlier pages logged
    start = time.perf_counter()
    drv.get(path.as_uri())
    while time.perf_counter() - start < timeout:
        if drv.execute_script("return window.__gisgrid_ready === true"):
            return time.perf_counter() - start
        time.sleep(0.05)
    pytest.fail(f"map did not become ready in {timeout} s; errors: {drv.execute_script('return window.__errors')}")
    return 0.0


def _problems(drv) -> list[str]:
    errors = list(drv.execute_script("return window.__errors") or [])
    severe = [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    return errors + severe


@pytest.fixture(scope="module")
def demo_assessment():
    return analyze(make_demo().town())


OPEN_ALL_JS = """
var out = {tooltips: 0, popups: 0, texts: []};
GG.layers.forEach(function (g) {
  if (!GG.map.hasLayer(g)) { GG.map.addLayer(g); }
  g.eachLayer(function (l) {
    if (!l.feature) { return; }
    var ll = l.getLatLng ? l.getLatLng() : l.getBounds().getCenter();
    if (g.getTooltip()) {
      l.fire('mouseover', {latlng: ll}, true);
      var t = g.getTooltip();
      if (t && t.isOpen()) { out.tooltips += 1; out.texts.push(t.getElement().innerText); }
      l.fire('mouseout', {latlng: ll}, true);
    }
    if (g.getPopup()) {
      l.fire('click', {latlng: ll}, true);
      var p = g.getPopup();
      if (p && p.isOpen()) { out.popups += 1; out.texts.push(p.getElement().innerText); }
      GG.map.closePopup();
    }
  });
});
return out;
"""


def test_town_map_renders_offline(driver, demo_assessment, tmp_path):
    path = maps.save_map(maps.command_center_map(demo_assessment, assets="inline", basemap="none"),
                         tmp_path / "town.html")
    seconds = _open(driver, path)
    assert seconds < 10
    assert driver.execute_script("return typeof L === 'object' && L.version") == "1.9.3"
    stats = driver.execute_script("return GG.stats()")
    town = demo_assessment.town
    assert stats["grids"]["drawn"] == len(town.grids)
    assert stats["villages"]["drawn"] == len(town.villages)
    assert stats["pois"]["drawn"] == len(town.pois)
    assert stats["gaps"]["drawn"] == int((demo_assessment.findings["kind"] == "area_gap").sum())
    assert stats["roads_lane"] == {"features": 0, "drawn": 0, "onMap": False}  # minor roads: lazy, off
    # The hatch is a real SVG pattern fill; veto items pulse.
    fills = driver.execute_script(
        "return Array.from(document.querySelectorAll('.leaflet-ggTop-pane path')).map(p => p.getAttribute('fill'))")
    assert "url(#gg-hatch)" in fills
    # A veto point is a large alarm marker above every icon, not a faint ring; sensitive sections start off.
    vetoes = demo_assessment.findings[demo_assessment.findings["severity"] == "veto"]
    points = int((vetoes.geom_type == "Point").sum())
    assert points >= 1  # the demo plants a school in no grid
    alarms = driver.execute_script(
        "return Array.from(document.querySelectorAll('.gg-alarm')).map(function (e) {"
        "var r = e.getBoundingClientRect(); return [r.width, r.height, getComputedStyle(e).borderTopColor,"
        "+getComputedStyle(e.parentNode).zIndex]; })")
    assert len(alarms) == points
    poi_z = driver.execute_script("return Math.max.apply(null, Array.from(document.querySelectorAll("
                                  "'.gg-poi-icon')).map(function (e) { return +getComputedStyle(e).zIndex; }))")
    for w, h, colour, z in alarms:
        assert min(w, h) >= 30
        assert colour == "rgb(192, 0, 0)"
        assert z > poi_z  # drawn above the school's own icon
    assert stats["sensitive"]["onMap"] is False
    if len(vetoes) > points:
        assert driver.execute_script("return document.querySelectorAll('path.gg-pulse').length") > 0
    # Controls are there: layers, search, fullscreen, measure, minimap, legend, title.
    for sel in (".leaflet-control-layers", ".gg-search input", ".gg-fullscreen", ".gg-measure", ".gg-minimap",
                ".gg-legend", ".gg-title"):
        assert driver.execute_script(f"return document.querySelectorAll({sel!r}).length") >= 1, sel
    assert town.name in driver.execute_script("return document.querySelector('.gg-title').innerText")
    shot = tmp_path / "town.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    shutil.copyfile(shot, "/tmp/gisgrid_map.png")
    # Switching lanes on parses and draws them.
    n = driver.execute_script(
        "var g = GG.layers.filter(function (x) { return x.ggSpec.key === 'roads_lane'; })[0];"
        "GG.map.addLayer(g); return GG.stats().roads_lane.drawn;")
    assert n == int((town.roads["road_class"] == "lane").sum())
    assert _problems(driver) == []


def test_search_and_measure(driver, demo_assessment, tmp_path):
    path = maps.save_map(maps.command_center_map(demo_assessment, assets="inline", basemap="none"),
                         tmp_path / "town.html")
    _open(driver, path)
    gid = demo_assessment.town.grids["grid_id"].iloc[0]
    assert driver.execute_script(f"return GG.search({gid!r})") >= 1
    driver.find_element("css selector", ".gg-search li").click()
    text = driver.execute_script("var p = GG.map._popup; return p && p.isOpen() ? p.getElement().innerText : ''")
    assert gid in text
    chief = demo_assessment.responsibility.staffing["chief_name"].dropna().iloc[0]
    assert driver.execute_script(f"return GG.search({chief!r})") >= 1
    # Measure: two clicks 1 km apart on the map.
    driver.find_element("css selector", ".gg-measure a").click()
    total = driver.execute_script(
        "var m = GG.map, c = m.getCenter(), p = m.latLngToContainerPoint(c);"
        "var q = m.containerPointToLatLng([p.x + 100, p.y]);"
        "m.fire('preclick', {latlng: c}); m.fire('preclick', {latlng: q});"
        "return [GG.measureState.total, m.distance(c, q)];")
    assert abs(total[0] - total[1]) < 1e-6
    assert total[0] > 0
    assert _problems(driver) == []


def test_every_tooltip_and_popup_opens(driver, tmp_path):
    a = analyze(small_town())
    path = maps.save_map(maps.command_center_map(a, assets="inline", basemap="none"), tmp_path / "small.html")
    _open(driver, path)
    out = driver.execute_script(OPEN_ALL_JS)
    assert out["tooltips"] > 10
    assert out["popups"] > 5
    text = "\n".join(out["texts"])
    assert "V1-G1" in text
    assert "138****0000" in text
    assert "13812340000" not in text
    assert _problems(driver) == []


def test_hostile_names_stay_text(driver, tmp_path):
    a = analyze(hostile_town())
    path = maps.save_map(maps.command_center_map(a, assets="inline", basemap="none"), tmp_path / "hostile.html")
    _open(driver, path)
    out = driver.execute_script(OPEN_ALL_JS)
    assert out["tooltips"] > 10
    assert out["popups"] > 5
    # Search over hostile names, and the village labels, legend and layer names render as text too.
    # the search matches the decoded text of every escaped character (&lt; &#36; &#123; ...), without the DOM
    for key in ("V1-G1", "东村", "张三", "东村小学"):
        assert driver.execute_script("return GG.search(arguments[0])", hostile_names()[key]) >= 1, key
    driver.execute_script(f"GG.search({hostile_names()['张三']!r})")
    page_text = driver.execute_script("return document.body.innerText")
    shown = "\n".join(out["texts"]) + page_text
    names = hostile_names()
    for key in ("东村", "V1-G1", "张三", "东村小学", "测试镇"):
        assert names[key] in shown, key
    assert all(any(p in s for s in shown.split("\n")) for p in PAYLOADS[:5])
    assert driver.execute_script("return typeof window.__xss") == "undefined"
    assert driver.execute_script("return document.title").startswith(names["测试镇"])
    shot = tmp_path / "hostile.png"
    driver.save_screenshot(str(shot))
    assert _problems(driver) == []


def test_owner_map_in_browser(driver, tmp_path):
    a = analyze(small_town())
    path = maps.save_map(maps.command_center_map(a, owner="张三", assets="inline", basemap="none"),
                         tmp_path / "owner.html")
    _open(driver, path)
    stats = driver.execute_script("return GG.stats()")
    assert stats["grids"]["drawn"] == 1
    out = driver.execute_script(OPEN_ALL_JS)
    text = "\n".join(out["texts"])
    assert "V1-G1" in text
    assert "V1-G2" not in text
    assert "李四" not in text
    assert _problems(driver) == []


# A popup as the user sees it: its box and the map's, once any auto-pan has finished.
POPUP_BOX_JS = """
var p = GG.map._popup;
if (!p || !p.isOpen()) { return null; }
var r = p.getElement().getBoundingClientRect(), c = GG.map.getContainer().getBoundingClientRect();
var body = p.getElement().querySelector('.leaflet-popup-content');
return {w: r.width, h: r.height, top: r.top - c.top, left: r.left - c.left, bottom: c.bottom - r.bottom,
        right: c.right - r.right, scrolls: body.scrollHeight > body.clientHeight + 1,
        text: body.innerText, moving: !!(GG.map._panAnim && GG.map._panAnim._inProgress),
        rows: body.querySelectorAll('table tr').length,
        value_w: Math.min.apply(null, Array.from(body.querySelectorAll('td')).map(function (td) {
          return td.getBoundingClientRect().width; }))};
"""
CLICK_JS = """
var key = arguments[0], k = arguments[1];
var g = GG.layers.filter(function (x) { return x.ggSpec.key === key; })[0];
if (!GG.map.hasLayer(g)) { GG.map.addLayer(g); }
var ls = [];
g.eachLayer(function (l) { if (l.feature && !l.ggLabel) { ls.push(l); } });
var l = ls[k % ls.length];
GG.map.closePopup();
l.fire('click', {latlng: l.getLatLng ? l.getLatLng() : l.getBounds().getCenter()}, true);
return ls.length;
"""


def _popup_box(drv) -> dict:
    last = None
    for _ in range(40):  # until auto-pan has settled (two equal reads)
        box = drv.execute_script(POPUP_BOX_JS)
        if box is not None and not box["moving"] and box == last:
            return box
        last = box
        time.sleep(0.05)
    pytest.fail(f"popup did not settle: {last}")
    return {}


def _readable_and_on_screen(box: dict, what: str) -> None:
    assert 220 <= box["w"] <= 380, (what, box)
    assert 40 <= box["h"] <= 420, (what, box)  # a long popup scrolls instead of growing
    assert min(box["top"], box["left"], box["bottom"], box["right"]) >= 0, (what, box)


def test_popups_are_readable_and_stay_on_screen(driver, demo_assessment, tmp_path):
    # The demo's findings (their messages are long), plus one with a 3,000-character message and an id list
    # without spaces: each popup a field | value table of a fixed width, scrolled when long, inside the map.
    f = demo_assessment.findings.copy()
    gap = f.index[f["kind"] == "area_gap"][0]
    f.loc[gap, "message"] = "很长的说明 a long message " * 120
    f.loc[gap, "grid_id"] = ",".join(f"V01-G{k:03d}" for k in range(150))
    a = type(demo_assessment)(**{**demo_assessment.__dict__, "findings": f})
    path = maps.save_map(maps.command_center_map(a, basemap="none"), tmp_path / "town.html")
    _open(driver, path)
    seen = set()
    for key in ("grids", "villages", "pois", "gaps", "overlaps", "uncovered", "unassigned", "other", "veto",
                "sensitive"):
        for k in ((0, 5) if key in ("grids", "pois") else (0,)):
            n = driver.execute_script(CLICK_JS, key, k)
            box = _popup_box(driver)
            _readable_and_on_screen(box, (key, k))
            assert box["rows"] >= 2, (key, box)  # a table: field | value
            assert box["value_w"] >= 150, (key, box)  # values read across, not one character per line
            seen.add(key)
            if key == "gaps" and k == 0 and n:
                assert box["scrolls"]
                assert "很长的说明" in box["text"]
    # A search result opens its popup the same way.
    gid = demo_assessment.town.grids["grid_id"].iloc[-1]
    assert driver.execute_script(f"GG.map.setView([0, 0], 3); return GG.search({gid!r})") >= 1
    driver.find_element("css selector", ".gg-search li").click()
    box = _popup_box(driver)
    _readable_and_on_screen(box, "search")
    assert gid in box["text"]
    assert _problems(driver) == []


def test_default_maps_work_offline(driver, tmp_path):
    # The default maps link one shared assets/ folder; this browser has no network (no DNS, a dead proxy).
    a = analyze(small_town())
    files = maps.write_maps(a, tmp_path, basemap="none")
    assert (tmp_path / "maps" / "assets" / "leaflet.js").is_file()
    for page in (tmp_path / "maps" / "command_center.html", next(p for p in files if p.name == "village_V2.html")):
        _open(driver, page)
        assert driver.execute_script("return typeof L !== 'undefined' && L.version") == "1.9.3"
        stats = driver.execute_script("return GG.stats()")
        assert stats["grids"]["drawn"] >= 1
        assert stats["gaps"]["drawn"] == 1
        assert driver.execute_script("return document.querySelectorAll('.gg-fullscreen, .gg-measure, "
                                     ".gg-minimap').length") == 3
        assert _problems(driver) == []
    # The page decodes the compact coordinates to where the points are (1e-6 degree).
    drawn = driver.execute_script("var g = GG.layers.filter(function (x) { return x.ggSpec.key === 'pois'; })[0];"
                                  "var out = []; g.eachLayer(function (l) { var p = l.getLatLng();"
                                  "out.push([l.feature.properties.i, p.lng, p.lat]); }); return out;")
    pois = a.town.pois.to_crs(4326).set_index("poi_id")
    assert len(drawn) >= 1
    for pid, lon, lat in drawn:
        assert abs(lon - pois.geometry[pid].x) < 1e-6
        assert abs(lat - pois.geometry[pid].y) < 1e-6
    assert len([p for p in files if p.suffix == ".html"]) > 3
    # The same set with Leaflet from its CDN is the white page this browser must show without a network.
    maps.write_maps(a, tmp_path / "cdn", basemap="none", assets="cdn", per_owner=False, per_village=False)
    driver.get((tmp_path / "cdn" / "maps" / "command_center.html").as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert driver.execute_script("return typeof L") == "undefined"


def test_patrol_tracks_coloured_by_validity_and_unpatrolled_stretches(driver, tmp_path):
    """Issue 18's map: the month's walks (valid green, suspect purple dashed) and what no one walked."""
    import datetime as dt

    demo = make_demo()
    town = demo.town()
    a = analyze(town, patrols=[demo.patrols().fixes], patrol_options={"month": "2026-11"},
                as_of=dt.date(2026, 12, 1))
    tracks = a.patrols.patrols
    suspect = int((~tracks["valid"].astype(bool)).sum())
    assert suspect >= 1  # the demo plants a car and a track off the river
    path = maps.save_map(maps.command_center_map(a, assets="inline", basemap="none"), tmp_path / "patrols.html")
    _open(driver, path)
    stats = driver.execute_script("return GG.stats()")
    assert stats["patrols"]["drawn"] == len(tracks)
    unwalked = int(a.findings["kind"].isin(["patrol_partial", "patrol_missing"]).sum())
    assert unwalked >= 1
    assert stats["unpatrolled"]["drawn"] == unwalked
    strokes = driver.execute_script(
        "var g = GG.layers.filter(function (x) { return x.ggSpec.key === 'patrols'; })[0]; var out = [];"
        "g.eachLayer(function (l) { out.push([l.options.color, l.options.dashArray || '']); }); return out;")
    assert sum(1 for c, d in strokes if c == "#762a83" and d) == suspect
    assert sum(1 for c, _ in strokes if c == "#1a9850") == len(tracks) - suspect
    # a suspect chief's own map holds their walks only
    who = tracks.loc[~tracks["valid"].astype(bool), "name"].iloc[0]
    owner = next(o for o in a.findings["owner"].dropna() if str(o).startswith(str(who)))
    own = maps.save_map(maps.command_center_map(a, assets="inline", basemap="none", owner=owner),
                        tmp_path / "owner.html")
    _open(driver, own)
    assert driver.execute_script("return GG.stats()")["patrols"]["drawn"] == int((tracks["name"] == who).sum())
    assert _problems(driver) == []
