"""Benchmark the patrol check (issue 18): a county month of river-chief tracks, streamed in batches.

A synthetic county: ``--chiefs`` village river chiefs (default 3,000), each with a
wiggly reach of 1.5-3 km in a village of his own; every chief walks his reach
once a week (weekly 1-hour patrols at ``--sample-s`` seconds, default 5 s: about
720 fixes each), so a month is about 9 million fixes at the default size. The
fixes are made batch by batch (``--batch-chiefs`` chiefs at a time), never all
at once, and handed to :func:`gisgrid.checks.patrols.analyze_patrols` as a
stream, exactly as :func:`gisgrid.io.tracks.iter_track_batches` hands a file.

It prints fixes per second, where the time goes (cleaning, matching, judging,
projection) and the peak memory. ``--csv-rows N`` also times reading N rows of
a CSV of fixes (the reader's own speed). ``--movingpandas`` times movingpandas
(if installed) against :func:`gisgrid.geometry.tracks.clean_tracks` on the same
fixes: gap splitting and the speed outlier cleaning.

Run::

    python benchmarks/bench_patrols.py                  # 3,000 chiefs, ~9 M fixes
    python benchmarks/bench_patrols.py --chiefs 300     # a tenth
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid.checks.patrols import analyze_patrols
from gisgrid.checks.responsibility import analyze_responsibility
from gisgrid.geometry.tracks import clean_tracks
from gisgrid.io.tracks import iter_track_batches
from gisgrid.model import Town

CRS = "EPSG:4549"
CELL_M = 1500.0  # each village a 1.5 km square; the reach wiggles across it
BJ = dt.timezone(dt.timedelta(hours=8))
WEEKS = (dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 23))


def county(chiefs: int, seed: int = 7) -> tuple[Town, np.ndarray]:
    """Villages in a square grid, one river (one reach) and one village chief in each."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(chiefs)))
    k = np.arange(chiefs)
    x0 = 400_000 + (k % side) * CELL_M
    y0 = 3_500_000 + (k // side) * CELL_M
    villages = shapely.box(x0, y0, x0 + CELL_M, y0 + CELL_M)
    # a river across each village, 30 vertices, wiggling up to 200 m: 1.5-2 km
    t = np.linspace(0.02, 0.98, 30)
    xs = x0[:, None] + t[None, :] * CELL_M
    ys = (y0[:, None] + CELL_M / 2 + 200 * np.sin(t[None, :] * rng.uniform(3, 9, (chiefs, 1)))
          + rng.normal(0, 15, (chiefs, 30)))
    rivers = shapely.linestrings(np.stack([xs, ys], axis=2))
    vid = np.char.add("V", k.astype(str)).astype(object)
    rid = np.char.add("H", k.astype(str)).astype(object)
    town = Town.from_frames(
        villages=gpd.GeoDataFrame({"village_id": vid, "name": vid}, geometry=villages, crs=CRS),
        grids=gpd.GeoDataFrame({"grid_id": np.char.add("G", k.astype(str)).astype(object), "village_id": vid},
                               geometry=villages, crs=CRS),
        rivers=gpd.GeoDataFrame({"river_id": rid, "name": rid}, geometry=rivers, crs=CRS),
        river_chiefs=pd.DataFrame({"person_id": np.char.add("C", k.astype(str)).astype(object), "name": rid,
                                   "phone": "13800000000", "level": "village", "river_id": rid, "village_id": vid}),
        crs=CRS)
    return town, rivers


def fixes(rivers: np.ndarray, first: int, last: int, sample_s: float, seed: int) -> pd.DataFrame:
    """A month of weekly 1-hour walks along each reach of chiefs ``first``..``last - 1`` (WGS84 fixes)."""
    rng = np.random.default_rng(seed)
    to_ll = pyproj.Transformer.from_crs(CRS, 4326, always_xy=True)
    n_fix = int(3600 / sample_s)
    parts = []
    for w, monday in enumerate(WEEKS):
        ids = np.arange(first, last)
        lines = rivers[ids]
        length = shapely.length(lines)
        # there and back along the reach, an hour at ~1.2 m/s: positions along it, folded
        walked = np.arange(n_fix)[None, :] * sample_s * 1.2
        along = np.abs(((walked / length[:, None]) + 1) % 2 - 1) * length[:, None]
        pts = shapely.line_interpolate_point(np.repeat(lines, n_fix), along.ravel())
        xy = shapely.get_coordinates(pts) + rng.normal(0, 4.0, (len(pts), 2))
        start = np.array([int(dt.datetime(monday.year, monday.month, monday.day, 8, tzinfo=BJ).timestamp())
                          + int(rng.integers(0, 6 * 86400 // 3600)) * 3600 for _ in ids])
        t = (start[:, None] + (np.arange(n_fix) * sample_s)[None, :]).ravel().astype(np.int64)
        lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
        parts.append(pd.DataFrame({"person_id": np.repeat(np.char.add("C", ids.astype(str)).astype(object), n_fix),
                                   "t": t, "lon": lon, "lat": lat}))
        del w
    return pd.concat(parts, ignore_index=True).sort_values(["person_id", "t"], kind="stable")


def stream(rivers: np.ndarray, chiefs: int, batch: int, sample_s: float, made: list[float]) -> Iterator[pd.DataFrame]:
    for first in range(0, chiefs, batch):
        t0 = time.perf_counter()
        frame = fixes(rivers, first, min(first + batch, chiefs), sample_s, seed=first)
        made.append(time.perf_counter() - t0)  # generation is not the check's time
        yield frame


def bench_csv(rows: int) -> None:
    """Rows per second of the CSV reader (checking and converting every row)."""
    rng = np.random.default_rng(1)
    people = np.repeat(np.char.add("C", np.arange(rows // 700 + 1).astype(str)), 700)[:rows]
    t = 1_793_664_000 + np.tile(np.arange(700) * 5, rows // 700 + 1)[:rows]
    when = pd.to_datetime(t, unit="s", utc=True).tz_convert("Asia/Shanghai").strftime("%Y-%m-%dT%H:%M:%S%z")
    frame = pd.DataFrame({"person_id": people, "timestamp": when, "lon": 121.2 + rng.normal(0, 0.01, rows),
                          "lat": 32.1 + rng.normal(0, 0.01, rows)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fixes.csv"
        frame.to_csv(path, index=False)
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        n = sum(len(b.fixes) for b in iter_track_batches({"path": str(path)}))
        dt_s = time.perf_counter() - t0
    print(f"CSV reader: {n:,} rows in {dt_s:.1f} s = {n / dt_s:,.0f} rows/s "
          f"({size_mb:.0f} MB file)")


def bench_movingpandas(rivers: np.ndarray, chiefs: int, sample_s: float) -> None:
    """movingpandas' gap splitter and outlier cleaner against clean_tracks, on the same fixes."""
    try:
        import movingpandas as mpd
    except ImportError:
        print("movingpandas: not installed (pip install movingpandas to compare)")
        return
    frame = fixes(rivers, 0, chiefs, sample_s, seed=0)
    to_m = pyproj.Transformer.from_crs(4326, CRS, always_xy=True)
    x, y = to_m.transform(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    t0 = time.perf_counter()
    codes = pd.factorize(frame["person_id"])[0]
    track = clean_tracks(codes, frame["t"].to_numpy(), x, y, gap_s=600, max_speed_mps=50)
    ours = time.perf_counter() - t0
    gdf = gpd.GeoDataFrame({"person_id": frame["person_id"].to_numpy(),
                            "time": pd.to_datetime(frame["t"].to_numpy(), unit="s")},
                           geometry=gpd.points_from_xy(x, y), crs=CRS)
    t0 = time.perf_counter()
    tc = mpd.TrajectoryCollection(gdf, "person_id", t="time")
    split = mpd.ObservationGapSplitter(tc).split(gap=dt.timedelta(minutes=10))
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    mpd.OutlierCleaner(split).clean(v_max=180, units=("km", "h"))
    clean = time.perf_counter() - t1
    print(f"cleaning {len(frame):,} fixes of {chiefs} chiefs: clean_tracks {ours:.2f} s "
          f"({len(track.patrols)} patrols); movingpandas {build:.2f} s to build and split "
          f"({len(split.trajectories)} trajectories) + {clean:.2f} s OutlierCleaner "
          f"= {(build + clean) / max(ours, 1e-9):,.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chiefs", type=int, default=3000)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--batch-chiefs", type=int, default=200)
    ap.add_argument("--simplify-m", type=float, default=None, help="[patrols] simplify_m (default: the shipped one)")
    ap.add_argument("--csv-rows", type=int, default=0)
    ap.add_argument("--movingpandas", type=int, default=0, help="chiefs for the movingpandas comparison")
    args = ap.parse_args()
    t0 = time.perf_counter()
    town, rivers = county(args.chiefs)
    reaches = analyze_responsibility(town).reaches
    print(f"county: {args.chiefs:,} village chiefs, {len(reaches):,} reaches "
          f"({shapely.length(rivers).sum() / 1000:,.0f} km) built in {time.perf_counter() - t0:.1f} s")
    made: list[float] = []
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = analyze_patrols(town, reaches, stream(rivers, args.chiefs, args.batch_chiefs, args.sample_s, made),
                          options={"month": "2026-11", **({} if args.simplify_m is None else
                                                          {"simplify_m": args.simplify_m})},
                          as_of=dt.date(2026, 12, 1))
    prof.disable()
    wall = time.perf_counter() - t0 - sum(made)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"patrol check: {res.points:,} fixes, {len(res.patrols):,} patrols, {len(res.findings)} findings in "
          f"{wall:.1f} s (generation of the fixes, {sum(made):.1f} s, not counted) = {res.points / wall:,.0f} fixes/s; "
          f"peak RSS {peak_mb:,.0f} MB (batches of {args.batch_chiefs} chiefs)")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    wanted = {"clean_tracks": "cleaning (sort, gaps, spikes, per-patrol stats)",
              "_match_person": "matching (per chief: reach intervals, on-route share, distance)",
              "cover": "  of which cover() (candidate pairs, capsule intervals, merge)",
              "_findings": "judging (periods, shares, unpatrolled chainage, findings)",
              "transform": "projection WGS84 -> CGCS2000 GK",
              "patrol_lines": "track lines for the map",
              "_subjects": "subjects (who answers for which reach)"}
    rows: dict[str, float] = {}
    for (_, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name in wanted:
            rows[name] = rows.get(name, 0.0) + cum
    for name, label in wanted.items():
        if name in rows:
            print(f"  {label:<70} {rows[name]:7.1f} s (under the profiler)")
    if args.csv_rows:
        bench_csv(args.csv_rows)
    if args.movingpandas:
        bench_movingpandas(rivers, args.movingpandas, args.sample_s)


if __name__ == "__main__":
    main()
