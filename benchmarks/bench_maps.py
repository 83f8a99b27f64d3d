"""Command-center map: HTML size, write time and time to render in Chromium, vs ``GeoDataFrame.explore()``.

Usage::

    python benchmarks/bench_maps.py                 # town and county scales
    python benchmarks/bench_maps.py --scale town    # one scale
    python benchmarks/bench_maps.py --no-browser    # sizes and write times only

For each scale the demo town is made and analysed once, then:

- ``gisgrid``: :func:`gisgrid.maps.command_center_map` + :func:`gisgrid.maps.save_map`, in the default
  (``assets``: the page plus one shared ``assets/`` folder, whose size is not counted: it is written once per
  map set), CDN and self-contained (inline) variants, no basemap. The command-center page holds every layer
  (boundary, villages, grids, roads, reaches, corridors, points, findings, sensitive sections);
- ``explore()``: the four layers of issue 13's yardstick (villages, grids, roads, findings) drawn with
  ``GeoDataFrame.explore(m=...)`` one after another, then saved; ``--explore-all`` adds the other layers
  too (slow at county scale: 200 MB, 90 s);
- size vs explore: the default page's size over ``explore()``'s (issue 13 asks for 1/3 or less);
- render: the default page (with its ``assets/`` folder) opened in headless Chromium with the network cut,
  until the page's ``window.__gisgrid_ready`` flag (set two animation frames after every visible layer was
  drawn): "in-page" from the document's time origin (navigation start, the page's own ``performance.now()``),
  "wall" from ``driver.get`` (adds the browser's navigation overhead, seconds on a loaded machine); issue 13
  asks for under 5 s at county scale. ``explore()``'s page cannot be timed the same way offline (it needs
  Leaflet from a CDN).

Measured on 2 shared cores (load 9-13), county: the page 8.73 MB (12.19 MB before the compact encoding), 1/19
of ``explore()``'s 164.6 MB; render 3.4 s in-page, 5.5 s wall.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import folium

from gisgrid import maps
from gisgrid.analysis import analyze
from gisgrid.demo import make_demo

logger = logging.getLogger("bench_maps")


def explore_map(a: Any, *, every_layer: bool = False) -> folium.Map:
    """Villages, grids, roads and findings (or every layer) with GeoDataFrame.explore(), as an analyst would."""
    town = a.town
    m = town.grids.explore(name="grids")
    layers = [("villages", town.villages), ("roads", town.roads), ("findings", a.findings)]
    if every_layer:
        layers += [("boundary", town.boundary),
                   ("rivers", a.responsibility.reaches if a.responsibility is not None else town.rivers),
                   ("pois", town.pois), ("sensitive", a.sensitive)]
    for name, frame in layers:
        if frame is not None and len(frame):
            frame.explore(m=m, name=name)
    folium.LayerControl().add_to(m)
    return m


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def render_seconds(path: Path) -> tuple[float, float]:
    """Wall seconds from driver.get to the ready flag, and the page's own performance.now() at that flag."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,900",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        drv.get("about:blank")
        start = time.perf_counter()
        drv.get(path.as_uri())
        while not drv.execute_script("return window.__gisgrid_ready === true"):
            if time.perf_counter() - start > 120:
                msg = "map not ready after 120 s"
                raise TimeoutError(msg)
            time.sleep(0.02)
        wall = time.perf_counter() - start
        in_page = float(drv.execute_script("return GG.readyMs")) / 1000.0
    finally:
        drv.quit()
    return wall, in_page


def run(scale: str, folder: Path, *, browser: bool, explore_all: bool = False) -> dict[str, Any]:
    (town, t_town) = timed(lambda: make_demo(scale=scale).town())
    (a, t_analyze) = timed(lambda: analyze(town))
    logger.info("%s: town %.1f s, analyze %.1f s: %r", scale, t_town, t_analyze, a)
    row: dict[str, Any] = {"scale": scale, "grids": len(town.grids), "roads": len(town.roads),
                           "findings": len(a.findings), "sensitive": 0 if a.sensitive is None else len(a.sensitive)}
    for assets in ("assets", "cdn", "inline"):
        path = folder / f"{scale}_{assets}.html"
        _, secs = timed(lambda assets=assets, path=path: maps.save_map(
            maps.command_center_map(a, assets=assets, basemap="none"), path))
        row[f"gisgrid_{assets}_mb"] = path.stat().st_size / 1e6
        row[f"gisgrid_{assets}_s"] = secs
    row["assets_folder_mb"] = sum(p.stat().st_size for p in (folder / maps.ASSETS_DIR).iterdir()) / 1e6
    epath = folder / f"{scale}_explore.html"
    _, secs = timed(lambda: explore_map(a, every_layer=explore_all).save(str(epath)))
    row["explore_mb"] = epath.stat().st_size / 1e6
    row["explore_s"] = secs
    row["explore_layers"] = "all" if explore_all else "4"
    row["ratio"] = row["gisgrid_assets_mb"] / row["explore_mb"]
    if browser:
        row["render_wall_s"], row["render_page_s"] = render_seconds(folder / f"{scale}_assets.html")
    logger.info("%s: %s", scale, row)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| scale | grids | roads | findings | sensitive | gisgrid MB (s) | + assets/ MB | gisgrid cdn MB (s) "
            "| gisgrid inline MB (s) | explore() layers | explore() MB (s) | size vs explore | render wall s "
            "| render in-page s |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['scale']} | {r['grids']:,} | {r['roads']:,} | {r['findings']:,} | {r['sensitive']:,} "
            f"| {r['gisgrid_assets_mb']:.2f} ({r['gisgrid_assets_s']:.1f}) | {r['assets_folder_mb']:.2f} "
            f"| {r['gisgrid_cdn_mb']:.2f} ({r['gisgrid_cdn_s']:.1f}) | {r['gisgrid_inline_mb']:.2f} "
            f"({r['gisgrid_inline_s']:.1f}) | {r['explore_layers']} | {r['explore_mb']:.2f} ({r['explore_s']:.1f}) "
            f"| {r['ratio']:.3f} (1/{1 / r['ratio']:.1f}) "
            f"| {r.get('render_wall_s', float('nan')):.2f} | {r.get('render_page_s', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("town", "county"), action="append")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the pages in this folder")
    parser.add_argument("--explore-all", action="store_true",
                        help="explore() every layer, not only villages, grids, roads and findings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    scales = args.scale or ["town", "county"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [run(s, folder, browser=not args.no_browser, explore_all=args.explore_all) for s in scales]
    sys.stdout.write(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
