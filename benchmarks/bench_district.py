"""District runs on Dask: 1 worker vs 2, the scheduler overhead per town, the peak memory per worker.

Usage::

    python benchmarks/bench_district.py [--towns 24] [--town-grids 60] [--workers 1 2] [--maps] [--keep DIR]
    python benchmarks/bench_district.py --simulate 1200 [--task-s 0.05] [--payload-kb 60]

Writes the demo district (``gisgrid demo --scale district``) once, then runs it with a ``LocalCluster`` of each
number of worker processes into a fresh output folder and prints one row per run: wall time of the whole
district run (cluster start to history recorded), of the towns alone (first task submitted to last town
back), the towns' own time (sum of the tasks' wall times), the scheduler overhead per town, the peak memory
of each worker, and whether every town's findings (ids included) are identical to the first run's. The
overhead per town is ``(workers x towns wall - sum of task times) / towns``: the time a worker slot was not
running a town (scheduling, moving results, worker start-up and imports, idle tail), as a share of the mean
town time. Timings depend on the machine and on what else runs on it; nothing is asserted.

``--simulate N`` measures the scheduler alone at a province's task count: N stand-in towns that sleep
``--task-s`` seconds and return a result of ``--payload-kb`` (a town's outcome is ~60 kB: its findings,
boundary and rosters) on a 2-worker ``LocalCluster``, through the same client code
(:func:`gisgrid.district.connect`, ``as_completed``); it prints the overhead per task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from gisgrid.district import DistrictProgress, run_district
from gisgrid.district.files import write_district_demo

AS_OF = dt.date(2026, 11, 30)


def _run(config: Path, out: Path, workers: int, maps: bool) -> dict[str, Any]:
    marks: list[float] = []

    def progress(p: DistrictProgress) -> None:
        marks.append(time.perf_counter())

    start = time.perf_counter()
    result = run_district(config, out=out, as_of=AS_OF, scheduler="local", workers=workers, maps=maps,
                          progress=progress)
    wall = time.perf_counter() - start
    towns_wall = marks[-1] - marks[0]  # the first mark is the cluster ready, before any task
    task_s = sum(t.seconds for t in result.towns)
    n = len(result.towns)
    overhead = (workers * towns_wall - task_s) / n
    peak = {}
    for t in result.towns:
        peak[t.pid] = max(peak.get(t.pid, 0.0), t.peak_mb)
    ids = {(t.id, fid) for t in result.towns if t.lifecycle is not None for fid in t.lifecycle["finding_id"]}
    return {"workers": workers, "towns": n, "failed": len(result.failed()), "wall_s": round(wall, 1),
            "towns_wall_s": round(towns_wall, 1), "town_mean_s": round(task_s / n, 2),
            "overhead_per_town_s": round(overhead, 2), "overhead_share": round(overhead / (task_s / n), 3),
            "peak_mb_per_worker": ", ".join(f"{v:,.0f}" for v in sorted(peak.values())),
            "district_findings": len(result.findings), "_ids": ids}


def _stand_in(k: int, seconds: float, payload_kb: int) -> bytes:
    time.sleep(seconds)
    return bytes(payload_kb * 1024)


def _simulate(n: int, seconds: float, payload_kb: int, workers: int) -> None:
    from distributed import as_completed

    from gisgrid.district import connect

    with connect("local", workers=workers) as client:
        client.run(lambda: None)  # the workers are up before the clock starts
        start = time.perf_counter()
        futures = [client.submit(_stand_in, k, seconds, payload_kb, pure=False) for k in range(n)]
        got = 0
        for fut in as_completed(futures):
            got += len(fut.result())
            fut.release()
        wall = time.perf_counter() - start
    overhead = (workers * wall - n * seconds) / n
    print(pd.DataFrame([{"tasks": n, "workers": workers, "task_s": seconds, "payload_kb": payload_kb,
                         "wall_s": round(wall, 2), "ideal_s": round(n * seconds / workers, 2),
                         "overhead_per_task_ms": round(overhead * 1000, 1),
                         "results_mb": round(got / 1e6, 1)}]).to_string(index=False))


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--towns", type=int, default=24)
    ap.add_argument("--town-grids", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--maps", action="store_true", help="write every town's maps too")
    ap.add_argument("--keep", default=None, help="write into this folder and keep it")
    ap.add_argument("--data", default=None, help="an existing demo district folder (district.toml) to run")
    ap.add_argument("--simulate", type=int, default=0, help="only the scheduler: this many stand-in towns")
    ap.add_argument("--task-s", type=float, default=0.05)
    ap.add_argument("--payload-kb", type=int, default=60)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.simulate:
        _simulate(args.simulate, args.task_s, args.payload_kb, max(args.workers))
        return
    with tempfile.TemporaryDirectory(prefix="bench_district_") as tmp:
        root = Path(args.keep or tmp)
        data = Path(args.data) if args.data else root / "data"
        if not args.data:
            t0 = time.perf_counter()
            write_district_demo(data, towns=args.towns, grids=args.town_grids)
            print(f"demo district: {args.towns} towns of {args.town_grids} grids written in "
                  f"{time.perf_counter() - t0:,.1f} s")
        rows = [_run(data / "district.toml", root / f"out{w}", w, args.maps) for w in args.workers]
    first = rows[0]["_ids"]
    for r in rows:
        r["identical"] = r.pop("_ids") == first
    table = pd.DataFrame(rows)
    base = table["towns_wall_s"].iloc[0]
    table["speed_up"] = (base / table["towns_wall_s"]).round(2)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    print("speed-up is towns_wall_s of the first run over each run's; overhead_share is the scheduler overhead "
          "per town over the mean town time")


if __name__ == "__main__":
    main()
