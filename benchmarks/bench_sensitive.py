"""Benchmark gisgrid.checks.sensitive (default rules) against the coverage engine's own time.

Usage::

    python benchmarks/bench_sensitive.py [--scale town|county] [--repeat N] [--stages]

Builds the demo (``make_demo(scale=...)``, default the county: ~300 villages,
~20k grids, ~50k road segments), then times on the same town:

* the coverage engine: :func:`gisgrid.analysis.coverage_findings` (gaps and
  overlaps of villages and grids, uncovered roads, POIs in no grid);
* responsibility: :func:`gisgrid.checks.responsibility.analyze_responsibility` (for scale);
* :func:`gisgrid.checks.sensitive.analyze_sensitive` with the default rules, on the
  coverage and responsibility findings.

Each gisgrid call is timed best of ``--repeat``. It logs a table of times and
the ratio to the coverage time, the number of section rows and findings, and
checks the findings are exactly the planted ones (same count and kinds as the
demo's truth, one veto per planted school in a gap). ``--stages`` also logs the
time of every stage of analyze_sensitive (its DEBUG log).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from gisgrid import analysis, owners
from gisgrid.checks import responsibility as assign
from gisgrid.checks import sensitive
from gisgrid.demo import make_demo
from gisgrid.findings import concat_findings

logger = logging.getLogger("bench_sensitive")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """Result of the last call and the best time of ``repeat`` calls."""
    best = float("inf")
    out = None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


class _Stages(logging.Handler):
    """Collect analyze_sensitive's stage timings from its DEBUG log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.endswith(" s)"):
            self.lines.append(msg)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["town", "county"], default="county")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each gisgrid call")
    parser.add_argument("--stages", action="store_true", help="log the time of every stage of analyze_sensitive")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("gisgrid").setLevel(logging.WARNING)

    t0 = time.perf_counter()
    demo = make_demo(scale=args.scale)
    town = demo.town()
    logger.info("demo %s (%s): %d villages, %d grids, %d road segments, %d rivers, %d POIs; built in %.1f s",
                town.name, args.scale, len(town.villages), len(town.grids), len(town.roads), len(town.rivers),
                len(town.pois), time.perf_counter() - t0)

    (cov, _), t_cov = timed(lambda: analysis.coverage_findings(town), args.repeat)
    resp, t_resp = timed(lambda: assign.analyze_responsibility(town), args.repeat)
    found = owners.assign_owners(concat_findings([cov, resp.findings], crs=town.crs), town, resp)
    res, t_sens = timed(lambda: sensitive.analyze_sensitive(town, found, resp), args.repeat)

    if args.stages:
        handler = _Stages()
        log = logging.getLogger("gisgrid.checks.sensitive")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        sensitive.analyze_sensitive(town, found, resp)
        log.removeHandler(handler)
        log.propagate = True
        logger.info("analyze_sensitive stages:")
        for line in handler.lines:
            logger.info("  %s", line)

    logger.info("")
    logger.info("%-44s %9s %9s", "step", "seconds", "x coverage")
    for name, t in (("coverage engine (coverage_findings)", t_cov),
                    ("responsibility (analyze_responsibility)", t_resp),
                    ("analyze_sensitive, default rules", t_sens)):
        logger.info("%-44s %9.2f %9.2f", name, t, t / t_cov)
    logger.info("")
    by_rule = res.sections.groupby("rule")["length_m"].agg(["size", "sum"])
    for rule, row in by_rule.iterrows():
        logger.info("  %-22s %7d section rows %12.0f m", rule, int(row["size"]), float(row["sum"]))
    f = res.findings
    raised = int((f["severity"] != f["base_severity"]).sum())
    veto = int((f["severity"] == "veto").sum())
    same = sorted(f["kind"]) == sorted(demo.truth["kind"])
    logger.info("%d findings in, %d out (%d raised, %d veto); planted %d; same kinds as planted: %s",
                len(found), len(f), raised, veto, len(demo.truth), same)
    logger.info("%d checkpoints, %d incomplete", len(res.checkpoints), int((~res.checkpoints["ok"]).sum()))


if __name__ == "__main__":
    main()
