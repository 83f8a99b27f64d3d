"""``gisgrid run district.toml``: every town as its own Dask task, then the district checks, ranking and outputs.

The graph is flat: one task per town (:func:`gisgrid.district.tasks.run_town`: load, analyse, write the
town's outputs under ``towns/<id>/``, return its outcome), gathered as they complete; the district checks,
the town ranking and the district outputs run in this process once every town has an outcome. Where the
towns run is ``[compute] scheduler`` (or ``--scheduler``): ``local`` starts a ``LocalCluster`` of worker
processes sized to the machine, ``threads`` one worker with threads, ``sync`` runs the towns one after the
other here (for debugging), and an address (``tcp://host:8786``) uses a running cluster, whose workers must
see the same files (shared storage).

Exit codes (:data:`EXIT_CODES`): 0 every town completed within its thresholds and the district checks found
no land in no town or in two; 1 a town hit its thresholds or the district checks found such land (or, shared
layers split by a town column, rows of no town); 2 a town
(or the district config) had bad input; 3 a town crashed (an unexpected error, or its worker died more
often than ``retries``). The worst applies. The other towns always complete and are reported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from gisgrid import io
from gisgrid._errors import ConfigError, GisgridError
from gisgrid.district.checks import _town_frame, border_roads, district_findings, district_sections
from gisgrid.district.config import DistrictConfig, TownEntry, load_district
from gisgrid.district.history import DistrictHistory
from gisgrid.district.partition import digests, town_config, unassigned_findings
from gisgrid.district.tasks import TownOutcome, run_town
from gisgrid.findings import show_ids

__all__ = ["EXIT_CODES", "DistrictProgress", "DistrictResult", "check_district", "connect", "run_district"]

logger = logging.getLogger(__name__)

#: The district run's exit codes and what each says.
EXIT_CODES: dict[int, str] = {
    0: "every town completed within its thresholds; no land in no town or in two",
    1: "a town hit its thresholds (a veto item, fail_on), or land lies in no town or in two, or rows of shared "
       "layers belong to no town",
    2: "a town had bad input (its error is in the district report), or the district config is wrong",
    3: "a town crashed, or its worker died more often than [compute] retries",
}
_STATUS_CODE = {"ok": 0, "bad_input": 2, "crashed": 3}


@dataclass
class DistrictProgress:
    """One step of a district run, for a progress display."""

    done: int
    total: int
    failed: int
    town: TownOutcome | None
    eta_s: float | None
    dashboard: str | None = None


@dataclass
class DistrictResult:
    """What a district run did."""

    exit_code: int
    reason: str
    name: str
    as_of: dt.date
    towns: list[TownOutcome]
    standings: pd.DataFrame
    findings: gpd.GeoDataFrame  # district checks' findings
    all_findings: gpd.GeoDataFrame  # every town's findings and the district's, with a town column
    report_dir: Path
    sections: Any = None  # the river sections between towns (跨镇交界断面) and their owners
    roads: Any = None  # the roads on town borders and their owners
    written: list[Path] = field(default_factory=list)
    scheduler: str = ""
    dashboard: str | None = None
    seconds: float = 0.0

    def failed(self) -> list[TownOutcome]:
        """The towns that did not complete."""
        return [t for t in self.towns if t.status != "ok"]

    def one_line(self) -> str:
        """One line for a cron mail."""
        ok = len(self.towns) - len(self.failed())
        flag = "OK" if self.exit_code == 0 else "FAIL"
        return (f"gisgrid {flag} district {self.name} {self.as_of.isoformat()}: {ok}/{len(self.towns)} towns, "
                f"{len(self.failed())} failed, {len(self.findings)} district findings; {self.reason}; report "
                f"{self.report_dir / 'district.html'}")

    def describe(self) -> str:
        """A short description for a terminal."""
        lines = [f"{self.name} — district run {self.as_of.isoformat()} ({len(self.towns)} towns, "
                 f"{self.seconds:,.1f} s on {self.scheduler})"]
        for rec in self.standings.to_dict("records"):
            mark = {"red": " 红旗", "yellow": " 黄牌"}.get(str(rec.get("flag") or ""), "")
            lines.append(f"  {int(rec['rank']):>3}. {rec['name']}  {rec['score']:.2f}{mark}")
        for t in self.failed():
            lines.append(f"  FAILED {t.id} {t.name}: {t.status}: {t.error}")
        by_kind = self.findings["kind"].value_counts().sort_index() if len(self.findings) else pd.Series(dtype=int)
        lines.append("  district findings  " + (", ".join(f"{k} {v}" for k, v in by_kind.items()) or "none"))
        lines.append(f"  result             {'FAIL' if self.exit_code else 'OK'} (exit {self.exit_code}): "
                     f"{self.reason}")
        lines.append(f"  report             {(self.report_dir / 'district.html').resolve()}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- scheduler
@contextlib.contextmanager
def connect(scheduler: str, *, workers: int | None = None, retries: int = 2) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (None for ``"sync"``), closed (with its cluster) on exit.

    ``local``: a ``LocalCluster`` of ``workers`` single-threaded worker processes (default one per core);
    ``threads``: one in-process worker with ``workers`` threads; an address: the running cluster there. A
    cluster started here allows a task ``retries`` worker deaths before it is given up (``allowed-failures``).
    """
    if scheduler == "sync":
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    n = workers or os.cpu_count() or 1
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
        if scheduler in ("local", "threads"):
            processes = scheduler == "local"
            cluster = LocalCluster(n_workers=n if processes else 1, threads_per_worker=1 if processes else n,
                                   processes=processes, dashboard_address=":0", silence_logs=logging.ERROR)
            try:
                with Client(cluster) as client:
                    yield client
            finally:
                cluster.close()
        else:
            try:
                client = Client(scheduler, timeout=30)
            except OSError as exc:
                msg = f"no Dask scheduler answers at {scheduler} ({exc})."
                raise ConfigError(msg, fix="start one (dask scheduler; dask worker ADDRESS) or use "
                                  'scheduler = "local"') from None
            with client:
                yield client


def _dashboard(client: Any, scheduler: str) -> str | None:
    if client is None or scheduler not in ("local", "threads"):
        return None
    try:
        import bokeh  # noqa: F401  the dashboard needs it
    except ImportError:
        return None
    return str(client.dashboard_link)


def _town_source(cfg: DistrictConfig, town: TownEntry, digest: dict[str, str]) -> Any:
    """What a town's task runs: its config file, or its share of the district's shared layers."""
    if cfg.partition is None:
        return str(town.config)
    return town_config(cfg.partition, town.id, town.name, digest)


def _gather(client: Any, cfg: DistrictConfig, out_dir: Path, as_of: dt.date, *, force: bool, maps: bool,
            tick: Callable[[TownOutcome | None], None]) -> list[TownOutcome]:
    """Run every town (one task each) and return their outcomes in the config's order."""
    outcomes: dict[str, TownOutcome] = {}
    digest = digests(cfg.partition) if cfg.partition is not None else {}
    if client is None:
        for t in cfg.towns:
            outcomes[t.id] = run_town(t.id, _town_source(cfg, t, digest), str(out_dir), as_of=as_of, force=force,
                                      maps=maps, name=t.name)
            tick(outcomes[t.id])
        return [outcomes[t.id] for t in cfg.towns]
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = {client.submit(run_town, t.id, _town_source(cfg, t, digest), str(out_dir), as_of=as_of, force=force,
                             maps=maps, name=t.name, key=f"gisgrid-town-{t.id}-{token}", pure=False): t
               for t in cfg.towns}
    for fut in as_completed(list(futures)):
        t = futures[fut]
        if fut.status == "error":  # the task itself never raises: its worker died more often than allowed
            exc = fut.exception()
            outcomes[t.id] = TownOutcome(id=t.id, name=t.name or t.id, status="crashed",
                                         error=f"{type(exc).__name__}: {exc}")
        else:
            outcomes[t.id] = fut.result()
        fut.release()
        tick(outcomes[t.id])
    return [outcomes[t.id] for t in cfg.towns]


# --------------------------------------------------------------------------- the run
def _district_crs(outcomes: list[TownOutcome]) -> Any:
    for t in outcomes:
        if t.status == "ok" and t.boundary is not None:
            return t.boundary.crs
    return None


def _extent(cfg: DistrictConfig, crs: Any) -> Any:
    if cfg.boundary is None:
        return None
    import shapely

    layer = io.read_layer(cfg.boundary["path"], layer=cfg.boundary.get("layer"))
    if crs is not None:
        layer = layer.to_crs(crs)
    return shapely.union_all(layer.geometry.values)


def _town_rows(outcomes: list[TownOutcome], crs: Any) -> gpd.GeoDataFrame:
    """Every town's findings (its lifecycle table) with ``town`` and ``town_name``, in the district CRS."""
    parts = []
    for t in outcomes:
        if t.status != "ok" or t.lifecycle is None:
            continue
        life = gpd.GeoDataFrame(t.lifecycle).to_crs(crs)
        parts.append(life.assign(town=t.id, town_name=t.name))
    if not parts:
        return gpd.GeoDataFrame({"town": []}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs)


def _standings(outcomes: list[TownOutcome], towns_rows: gpd.GeoDataFrame, found: gpd.GeoDataFrame,
               cfg: DistrictConfig) -> pd.DataFrame:
    """The town ranking: the same 测评体系 as villages (:mod:`gisgrid.scoring`), parties named by ``town``."""
    from gisgrid import scoring
    from gisgrid.io.config import ScoringOptions

    scheme = scoring.Scheme.from_options(ScoringOptions.parse(cfg.scoring, cfg.path))
    views = []
    if len(towns_rows):
        v = scoring.run_view(towns_rows)
        v["town"] = list(towns_rows["town"])
        views.append(v)
    if len(found):  # district findings have no lifecycle yet: each is open, new today
        d = pd.DataFrame(found).assign(status="new", deadline=None)
        v = scoring.run_view(d)
        v["town"] = list(found["town"])
        views.append(v)
    ok = [t for t in outcomes if t.status == "ok"]
    view = pd.concat(views, ignore_index=True) if views else pd.DataFrame(
        columns=["finding_id", "kind", "severity", "status", "open", "overdue", "reopened", "fixed_on_time", "veto",
                 "measure", "unit", "town"])
    table = scoring.standings(view, scheme, by="town", parties=[t.id for t in ok],
                              names={t.id: t.name for t in ok}, level="town")
    coverage = {t.id: t.totals.get("area_coverage") for t in ok}
    return table.assign(area_coverage=[coverage.get(p) for p in table["party"]])


def _verdict(outcomes: list[TownOutcome], found: gpd.GeoDataFrame) -> tuple[int, str]:
    worst = max((_STATUS_CODE[t.status] for t in outcomes), default=0)
    if worst == 3:
        names = ", ".join(t.id for t in outcomes if t.status == "crashed")
        return 3, f"town(s) crashed: {names}"
    if worst == 2:
        names = ", ".join(t.id for t in outcomes if t.status == "bad_input")
        return 2, f"town(s) with bad input: {names}"
    hit = [t.id for t in outcomes if t.exit_code]
    land = int(found["kind"].isin(["town_gap", "town_overlap"]).sum()) if len(found) else 0
    stray = found.loc[found["kind"] == "town_unassigned", "measure"].sum() if len(found) else 0
    if hit or land or stray:
        parts = ([f"town(s) over their thresholds: {', '.join(hit)}"] if hit else []) + (
            [f"{land} piece(s) of land in no town or in two"] if land else []) + (
            [f"{int(stray)} row(s) of the shared layers in no town"] if stray else [])
        return 1, "; ".join(parts)
    return 0, "every town within its thresholds"


def run_district(
    source: str | os.PathLike[str] | DistrictConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    as_of: dt.date | None = None,
    force: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    maps: bool | None = None,
    progress: Callable[[DistrictProgress], None] | None = None,
) -> DistrictResult:
    """Run every town of a district as its own Dask task, then the district checks, ranking and outputs.

    Parameters
    ----------
    source
        ``district.toml`` (or its folder, or a parsed :class:`DistrictConfig`).
    out
        The district's output folder (default: the config's folder): ``towns/<id>/`` gets each town's usual
        outputs, ``reports/DATE/`` the district report and tables, ``maps/district.html`` the district map,
        ``reports/district.sqlite`` the district history.
    as_of, force
        As for :func:`gisgrid.pipeline.run` (passed to every town).
    scheduler, workers
        Override ``[compute]``.
    maps
        Write each town's maps (default ``[compute] maps``, true).
    progress
        Called once at the start and once per town done.

    Returns
    -------
    DistrictResult
    """
    started = time.perf_counter()
    cfg = source if isinstance(source, DistrictConfig) else load_district(source)
    as_of = as_of or dt.date.today()
    sched = scheduler or cfg.scheduler
    if scheduler is not None:
        load_district_scheduler_check(sched)
    out_dir = Path(out) if out is not None else cfg.path.parent
    reports = out_dir / "reports"
    if cfg.boundary is not None:
        _extent(cfg, None)  # a bad district boundary is refused before any town runs
    total = len(cfg.towns)
    done: list[TownOutcome] = []
    with connect(sched, workers=workers or cfg.workers, retries=cfg.retries) as client:
        dash = _dashboard(client, sched)

        def tick(outcome: TownOutcome | None) -> None:
            if outcome is not None:
                done.append(outcome)
            elapsed = time.perf_counter() - started
            eta = elapsed / len(done) * (total - len(done)) if done else None
            if outcome is not None:
                logger.info("town %s %s (%d/%d) in %.1f s", outcome.id, outcome.status, len(done), total,
                            outcome.seconds)
            if progress is not None:
                progress(DistrictProgress(done=len(done), total=total,
                                          failed=sum(t.status != "ok" for t in done), town=outcome, eta_s=eta,
                                          dashboard=dash))

        tick(None)
        outcomes = _gather(client, cfg, out_dir, as_of, force=force, maps=cfg.maps if maps is None else maps,
                           tick=tick)
    crs = _district_crs(outcomes)
    ok = [t for t in outcomes if t.status == "ok"]
    names = {t.id: t.name for t in outcomes}
    if crs is not None:
        found = district_findings({t.id: t.boundary for t in ok}, {t.id: t.rosters for t in ok}, names=names,
                                  extent=_extent(cfg, crs), tolerance_m=cfg.tolerance_m, owner=cfg.owner, crs=crs)
        sections, unowned = district_sections({t.id: t.rivers for t in ok}, {t.id: t.rosters for t in ok},
                                              {t.id: t.boundary for t in ok}, names=names, crs=crs)
        found = gpd.GeoDataFrame(pd.concat([found, unowned], ignore_index=True), geometry="geometry", crs=crs)
        on_borders = border_roads({t.id: t.roads for t in ok}, _town_frame({t.id: t.boundary for t in ok}, crs),
                                  names=names, rule=cfg.border_roads, min_m=cfg.border_road_m,
                                  tolerance_m=cfg.tolerance_m)
    else:
        found = gpd.GeoDataFrame({"kind": [], "town": []}, geometry=gpd.GeoSeries([]))
        sections = on_borders = None
    if cfg.partition is not None and len(cfg.partition.stray):  # rows of no town: said, never dropped
        stray = unassigned_findings(cfg.partition, crs=crs, owner=cfg.owner)
        found = gpd.GeoDataFrame(pd.concat([found, stray], ignore_index=True), geometry="geometry", crs=crs)
    town_rows = _town_rows(outcomes, crs) if crs is not None else gpd.GeoDataFrame({"town": []},
                                                                                   geometry=gpd.GeoSeries([]))
    standings = _standings(outcomes, town_rows, found, cfg)
    code, reason = _verdict(outcomes, found)
    every = gpd.GeoDataFrame(pd.concat([town_rows, found], ignore_index=True), geometry="geometry", crs=crs)
    folder = reports / as_of.isoformat()
    result = DistrictResult(exit_code=code, reason=reason, name=cfg.name, as_of=as_of, towns=outcomes,
                            standings=standings, findings=found, all_findings=every, report_dir=folder,
                            sections=sections, roads=on_borders,
                            scheduler=sched, dashboard=dash)
    from gisgrid.district.outputs import write_outputs
    from gisgrid.pipeline import _fault

    with io.file_lock(reports / ".district.lock"):
        hist = DistrictHistory(reports / "district.sqlite")
        result.written = write_outputs(result, out_dir, hist.scores(before=as_of),
                                       before_publish=lambda: _fault("district report"))
        _fault("district history")  # the report is published, the run not yet recorded
        # last: the history records a run only once its report is published (never half a run)
        hist.record(as_of, _history_rows(outcomes, standings), findings=len(found), exit_code=code)
    result.seconds = time.perf_counter() - started
    return result


def check_district(source: str | os.PathLike[str] | DistrictConfig) -> tuple[bool, list[str]]:
    """``gisgrid check district.toml``: the district config checked as a run checks it, and what each town has.

    Every key, the district boundary and (shared layers) every source's town column are checked as by
    :func:`run_district` before any town runs (a :class:`~gisgrid.GisgridError` when one is wrong). A town
    config that is wrong, or a town with no rows in a source it needs, would be a bad town of the run: it is
    listed, and the first value returned is False.

    Returns
    -------
    (bool, list of str)
        Whether every town is usable, and the lines to show.
    """
    from gisgrid.pipeline import load_config, validate

    cfg = source if isinstance(source, DistrictConfig) else load_district(source)
    if cfg.boundary is not None:
        _extent(cfg, None)
    lines = [f"{cfg.name}: {len(cfg.towns)} towns, scheduler {cfg.scheduler}"
             + (f", district boundary {cfg.boundary['path']}" if cfg.boundary is not None else "")]
    bad = 0
    if cfg.partition is None:
        for t in cfg.towns:
            try:
                validate(load_config(t.config))  # its data is read by its run (a bad town does not stop the others)
            except GisgridError as exc:
                bad += 1
                lines.append(f"  {t.id}: bad town: {exc}")
                continue
            lines.append(f"  {t.id}{f' {t.name}' if t.name else ''}: {t.config}")
        return not bad, lines
    part = cfg.partition
    names = dict(part.towns)
    lines.append(f"shared layers split by {part.by}: rows per town")
    table = part.counts.copy()
    table.insert(0, "name", [names.get(t) or "" for t in table.index])
    lines += ["  " + line for line in table.rename_axis("town").reset_index().to_string(index=False).splitlines()]
    for tid, rec in part.counts.iterrows():
        empty = [s for s, n in rec.items() if n == 0 and not part.base.sources[s].get("allow_empty", False)]
        if len(empty) == len(rec):
            bad += 1
            lines.append(f"  {tid}: bad town: no row of any source has {part.by} = {tid!r}; "
                         f"{part.shares[empty[0]][str(tid)].hint}")
        elif empty:
            bad += 1
            lines.append(f"  {tid}: bad town: no rows in {', '.join(empty)} (allow_empty = true under a source "
                         "that a town may lack)")
    stray = part.stray
    for src, g in stray[stray["what"] == "blank"].groupby("source", sort=True):
        lines.append(f"  no town: {len(g)} row(s) of {src} with a blank {g['column'].iloc[0]}: reported as "
                     "town_unassigned by the run")
    for value, g in stray[stray["what"] == "unknown"].groupby("value", sort=True):
        per = ", ".join(f"{src} {n}" for src, n in g.groupby("source", sort=False).size().items())
        lines.append(f"  no town: town {value!r} is not a town of the district ({per} rows): reported as "
                     "town_unassigned by the run")
    return not bad, lines


def load_district_scheduler_check(scheduler: str) -> None:
    """Refuse a ``--scheduler`` that is neither a name nor an address (as ``[compute] scheduler``)."""
    from gisgrid.district.config import SCHEDULERS
    from gisgrid.vocab import nearest

    if scheduler not in SCHEDULERS and "://" not in scheduler:
        close = nearest(scheduler, SCHEDULERS)
        msg = f"--scheduler {scheduler!r} is neither a scheduler name nor an address."
        raise ConfigError(msg, fix=(f"did you mean {close}? " if close else "")
                          + f"use one of {list(SCHEDULERS)} or tcp://host:8786")


def _history_rows(outcomes: list[TownOutcome], standings: pd.DataFrame) -> pd.DataFrame:
    by = standings.set_index("party") if len(standings) else pd.DataFrame(columns=["score", "rank", "flag"])
    rows = []
    for t in outcomes:
        rec = by.loc[t.id] if t.id in by.index else None
        rows.append({"town": t.id, "name": t.name, "status": t.status,
                     "score": None if rec is None else rec["score"], "rank": None if rec is None else rec["rank"],
                     "flag": "" if rec is None else rec["flag"]})
    return pd.DataFrame(rows)


def finding_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The findings as a flat table (CSV/XLSX): ``town`` first, id lists joined, no geometry."""
    df = pd.DataFrame(frame).drop(columns=["geometry"], errors="ignore").copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, tuple | list)).any():
            df[col] = df[col].map(show_ids)
    first = [c for c in ("town", "town_name", "finding_id", "kind", "severity", "status") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
