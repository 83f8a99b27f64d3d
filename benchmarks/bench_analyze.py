"""Where the time of ``gisgrid.analyze`` goes, stage by stage, on the demo town or county.

Usage::

    python benchmarks/bench_analyze.py [--scale town|county] [--repeat 1]

Prints one row per stage (build the synthetic data, validate into a Town,
coverage findings, responsibility, owners, sensitive rules, summary) and the
whole ``analyze`` call, in seconds.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from gisgrid import analysis, assign, sensitive
from gisgrid.demo import make_demo
from gisgrid.findings import concat_findings


def _timed(rows: list[dict], stage: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    rows.append({"stage": stage, "seconds": time.perf_counter() - t0})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=["town", "county"], default="county")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    for _ in range(args.repeat):
        rows: list[dict] = []
        demo = _timed(rows, "make_demo (synthetic data)", make_demo, scale=args.scale)
        town = _timed(rows, "Town.from_frames (validate, reproject, repair)", demo.town)
        found, stats = _timed(rows, "coverage_findings (gaps, overlaps, roads, points)",
                              analysis.coverage_findings, town)
        resp = _timed(rows, "analyze_responsibility (staff, reaches, corridors)", assign.analyze_responsibility,
                      town)
        allf = concat_findings([found, resp.findings], crs=town.crs)
        allf = _timed(rows, "assign_owners", assign.assign_owners, allf, town, resp)
        sres = _timed(rows, "analyze_sensitive (default rules)", sensitive.analyze_sensitive, town, allf, resp)
        sections = sensitive.summarise_sections(sres, town)
        _timed(rows, "summary", analysis._summary, town, sres.findings, stats, resp, sections)
        a = _timed(rows, "analyze (all of the above after Town)", analysis.analyze, town)
        table = pd.DataFrame(rows)
        print(f"\nscale={args.scale}: {len(town.villages)} villages, {len(town.grids)} grids, "
              f"{len(town.roads)} roads, {len(town.rivers)} rivers, {len(town.pois)} POIs, "
              f"{len(a.findings)} findings")
        print(table.to_string(index=False, float_format=lambda v: f"{v:8.2f}"))


if __name__ == "__main__":
    main()
