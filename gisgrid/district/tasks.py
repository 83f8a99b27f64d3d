"""One town as one Dask task: :func:`run_town` loads, analyses and writes the town, then returns its outcome.

It runs in a worker process (or thread), so it takes and returns only picklable things, catches every
error of its town (a bad town must not stop the district) and says how long it took and how much memory
its worker has used at most.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gisgrid._errors import GisgridError

__all__ = ["TownOutcome", "run_town"]


@dataclass
class TownOutcome:
    """What one town's task returned.

    Attributes
    ----------
    id, name : str
    status : str
        ``"ok"``, ``"bad_input"`` (a :class:`~gisgrid.GisgridError`: the town's data or config) or
        ``"crashed"`` (an unexpected error, or its worker died more often than the retries allow).
    exit_code : int or None
        The town's own exit code (0 or 1) when it completed.
    reason, error, fix : str
    seconds : float
        Wall-clock time of the town inside its task.
    peak_mb : float
        The worker process's peak resident memory so far (MB).
    pid : int
        The process that ran it.
    totals : dict
        The headline numbers (``area_coverage``, ``road_coverage``, ``veto``, ...).
    lifecycle : GeoDataFrame or None
        The town's findings with their lifecycle status (as in its own report).
    boundary : GeoDataFrame or None
    rivers, roads : GeoDataFrame or None
    rosters : dict
        ``grid_staff`` and ``river_chiefs`` (canonical columns).
    report, map : str or None
        The town's report and command-center map, relative to the district's output folder.
    """

    id: str
    name: str
    status: str
    exit_code: int | None = None
    reason: str = ""
    error: str = ""
    fix: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0
    pid: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    lifecycle: Any = None
    boundary: Any = None
    rivers: Any = None
    roads: Any = None
    rosters: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    map: str | None = None


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


_TOTALS = ("area_coverage", "effective_coverage", "road_coverage", "uncovered_lane_m", "veto", "by_severity")


def run_town(town_id: str, config: Any, district_out: str, *, as_of: dt.date, force: bool = False,
             maps: bool = True, name: str | None = None) -> TownOutcome:
    """Run one town exactly as ``gisgrid run CONFIG --out DISTRICT/towns/ID`` would, and return its outcome.

    ``config`` is the town's config file, or (a district of shared layers) its
    :class:`~gisgrid.io.config.Config` with every source cut to the town's rows
    (:func:`gisgrid.district.partition.town_config`). Never raises for the town's own errors: they are its
    outcome (``bad_input`` or ``crashed``).
    """
    from gisgrid import pipeline, settings

    if _in_dask_worker():
        # one town per worker slot: the parallelism is the towns', so a town's own thread pools (the coverage
        # engine's, default one per core) would only fight the other workers for the cores. Results do not
        # depend on the thread count; a town config's own [coverage] workers still wins.
        settings.workers = 1
    start = time.perf_counter()
    out = Path(district_out) / "towns" / town_id
    shown = name or town_id
    try:
        result = pipeline.run(config, out=out, as_of=as_of, force=force, maps=maps)
    except GisgridError as exc:
        return TownOutcome(id=town_id, name=shown, status="bad_input", error=str(exc),
                           fix=str(getattr(exc, "fix", "") or ""), seconds=time.perf_counter() - start,
                           peak_mb=_peak_mb(), pid=os.getpid())
    except Exception as exc:  # noqa: BLE001  a crash of one town is reported, the others go on
        return TownOutcome(id=town_id, name=shown, status="crashed", error=f"{type(exc).__name__}: {exc}",
                           seconds=time.perf_counter() - start, peak_mb=_peak_mb(), pid=os.getpid())
    town = result.assessment.town
    rel = Path("towns") / town_id
    command = out / "maps" / "command_center.html"
    return TownOutcome(
        id=town_id, name=name or town.name, status="ok", exit_code=result.exit_code, reason=result.reason,
        seconds=time.perf_counter() - start, peak_mb=_peak_mb(), pid=os.getpid(),
        totals={k: result.assessment.totals.get(k) for k in _TOTALS},
        lifecycle=result.lifecycle, boundary=town.boundary, rivers=town.rivers,
        roads=town.roads[["road_id", "name", "geometry"]],
        rosters={"grid_staff": town.grid_staff, "river_chiefs": town.river_chiefs},
        report=(rel / "reports" / as_of.isoformat() / "report.html").as_posix(),
        map=(rel / "maps" / "command_center.html").as_posix() if command.exists() else None,
    )
