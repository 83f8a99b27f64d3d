"""Where the time of ``gisgrid.analyze`` and ``gisgrid run`` goes, stage by stage, on the demo town or county.

Usage::

    python benchmarks/bench_analyze.py [--scale town|county] [--clean] [--repeat 1] [--run] [--stages]

Prints one row per stage (build the synthetic data, validate into a Town,
coverage findings, responsibility, owners, sensitive rules, summary) and the
whole ``analyze`` call, in seconds. The demo is hand-drawn (every grid drawn
on its own) unless ``--clean`` asks for the exact partition, analysed with
tolerance 0. ``--run`` also writes the demo to a temporary folder and times
``gisgrid run`` on it stage by stage (load, analyse, history, report, task
lists, maps, the cleaned-grids proposal), with the peak memory of the
process; ``--stages`` logs the coverage engine's own stages.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import resource
import tempfile
import time

import pandas as pd

from gisgrid import analysis, owners, pipeline, settings
from gisgrid.checks import responsibility as assign
from gisgrid.checks import sensitive
from gisgrid.demo import make_demo
from gisgrid.findings import concat_findings


def _timed(rows: list[dict], stage: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    rows.append({"stage": stage, "seconds": time.perf_counter() - t0})
    return out


def _run(scale: str, hand_drawn: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.write_demo(f"{tmp}/data", scale=scale, hand_drawn=hand_drawn)
        marks: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        result = pipeline.run(f"{tmp}/data/gisgrid.toml", out=f"{tmp}/out",
                              progress=lambda step, done, total: marks.append((step, time.perf_counter())))
        total = time.perf_counter() - t0
    rows = [{"stage": step, "seconds": end - start}
            for (step, start), (_, end) in itertools.pairwise(marks) if step != "done"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ngisgrid run ({scale}{'' if hand_drawn else ', exact'}): {total:.1f} s, exit {result.exit_code}, "
          f"{len(result.written)} files, peak memory {peak:,.0f} MB (this process, analysis included)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:8.2f}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=["town", "county"], default="county")
    p.add_argument("--clean", action="store_true", help="the exact partition, tolerance 0")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--run", action="store_true", help="also time `gisgrid run` on the demo written to files")
    p.add_argument("--stages", action="store_true", help="log the coverage engine's stages")
    args = p.parse_args()
    if args.stages:
        logging.basicConfig(level=logging.WARNING, format="    %(message)s")
        for name in ("gisgrid.geometry.coverage", "gisgrid.geometry.tolerance"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    tol = 0.0 if args.clean else settings.tolerance_m
    for _ in range(args.repeat):
        rows: list[dict] = []
        demo = _timed(rows, "make_demo (synthetic data)", make_demo, scale=args.scale, hand_drawn=not args.clean)
        town = _timed(rows, "Town.from_frames (validate, reproject, repair)", demo.town)
        found, stats = _timed(rows, "coverage_findings (gaps, overlaps, roads, points)",
                              analysis.coverage_findings, town, tolerance_m=tol)
        resp = _timed(rows, "analyze_responsibility (staff, reaches, corridors)", assign.analyze_responsibility,
                      town, tolerance_m=tol)
        allf = concat_findings([found, resp.findings], crs=town.crs)
        sres = _timed(rows, "analyze_sensitive (default rules)", sensitive.analyze_sensitive, town, allf, resp,
                      tolerance_m=tol, poi_grid=stats["poi_grid"])
        owned = _timed(rows, "assign_owners (once, after every check)", owners.assign_owners, sres.findings, town,
                       resp)
        sections = sensitive.summarise_sections(sres, town)
        _timed(rows, "summary", analysis._summary, town, owned, stats, resp, sections)
        _timed(rows, "grid_hygiene", analysis.grid_hygiene, town, stats["grid_defects"])
        a = _timed(rows, "analyze (all of the above after Town)", analysis.analyze, town, tolerance_m=tol)
        if tol > 0:
            _timed(rows, "cleaned_grids (the proposal)", analysis.cleaned_grids, a)
        table = pd.DataFrame(rows)
        print(f"\nscale={args.scale}{'' if not args.clean else ' (exact)'}: {len(town.villages)} villages, "
              f"{len(town.grids)} grids, {len(town.roads)} roads, {len(town.rivers)} rivers, {len(town.pois)} POIs, "
              f"{len(a.findings)} findings, {a.totals.get('slivers', 0):,} slivers absorbed")
        print(table.to_string(index=False, float_format=lambda v: f"{v:8.2f}"))
        if args.run:
            _run(args.scale, not args.clean)


if __name__ == "__main__":
    main()
