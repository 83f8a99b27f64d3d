"""One function per job: load, analyse, write.

The CLI is a thin shell over these; a scheduler or a notebook can call them
directly. ``load_town`` turns a config file (or a GeoPackage with the
canonical layer names, or nothing: the embedded demo town) into a validated
:class:`~gisgrid.model.Town`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gisgrid import io, settings
from gisgrid._errors import ConfigError, HistoryError, InputError, SchemaError
from gisgrid.io.atomic import no_space, publish_staged, staging_folder
from gisgrid.io.config import TRACK_SOURCES, Config, describe_config, find_config, load_config
from gisgrid.io.files import show_text
from gisgrid.io.tracks import iter_track_batches, to_datum
from gisgrid.model import LAYERS, ROSTERS, Town
from gisgrid.vocab import percent

if TYPE_CHECKING:
    from gisgrid.history import History

__all__ = [
    "Config",
    "RunResult",
    "analyse_config",
    "check",
    "coverage_options",
    "describe_config",
    "find_config",
    "list_runs",
    "load_config",
    "load_town",
    "make_maps",
    "run",
    "score",
    "scoring_scheme",
    "send_dispatch",
    "undo_run",
    "validate",
    "write_demo",
]

logger = logging.getLogger(__name__)

SOURCE_NAMES = (*LAYERS, *ROSTERS)


def _map_fields(frame: Any, name: str, spec: dict[str, Any]) -> Any:
    fields = spec.get("fields") or {}
    src = (getattr(frame, "attrs", {}) or {}).get("source") or {}
    missing = {canon: col for canon, col in fields.items() if col not in frame.columns}
    if missing:
        canon, col = next(iter(missing.items()))
        have = [str(c) for c in frame.columns if c != "geometry"]
        msg = f"the config maps {canon} to column '{col}', which the {name} data does not have; it has {have}."
        raise SchemaError(msg, path=src.get("path"), layer=src.get("layer") or name, column=col,
                          fix=f"correct [sources.{name}] fields")
    rename = {col: canon for canon, col in fields.items()}
    clash = [c for c in rename.values() if c in frame.columns and c not in rename]
    out = frame.drop(columns=clash).rename(columns=rename)
    for key, mapping in (spec.get("values") or {}).items():
        col = rename.get(key, key)  # the canonical name or the user's own column name
        if col not in out.columns:
            have = [str(c) for c in frame.columns if c != "geometry"]
            msg = f"the config maps values of column '{key}', which the {name} data does not have; it has {have}."
            raise SchemaError(msg, path=src.get("path"), layer=src.get("layer") or name, column=key,
                              fix=f"correct [sources.{name}] values")
        if not isinstance(mapping, dict):
            msg = f"[sources.{name}] values for '{key}' must be a table."
            raise ConfigError(msg, fix=f'write values = {{ {key} = {{ "yours" = "canonical" }} }}')
        out[col] = out[col].map(lambda v, m=mapping: m.get(_value_key(v), v) if v is not None else v)
    out.attrs = {"source": src}
    return out


def _value_key(value: Any) -> str:
    """A cell as the text key of a ``values`` mapping (codes stored as 1.0 match "1")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_source(name: str, spec: dict[str, Any]) -> Any:
    if "url" in spec:  # PostGIS: read there, then the same mapping, validation and repairs as a file
        if name in ROSTERS:
            frame = io.read_postgis_table(spec["url"], table=spec.get("table"), sql=spec.get("sql"), name=name)
        else:
            frame = io.read_postgis(spec["url"], table=spec.get("table"), sql=spec.get("sql"),
                                    geometry=spec.get("geometry"), crs=spec.get("crs"), name=name)
    elif name in ROSTERS:
        frame = io.read_table(spec["path"], encoding=spec.get("encoding"), sheet=spec.get("sheet", spec.get("layer")))
        if spec.get("rows") is not None:  # a table is read whole, then cut to the town's rows
            frame = frame.loc[list(spec["rows"].positions)]
    else:
        frame = io.read_layer(spec["path"], layer=spec.get("layer"), encoding=spec.get("encoding"),
                              crs=spec.get("crs"), rows=spec.get("rows"))
    out = _map_fields(frame, name, spec)
    return out if spec.get("rows") is None else _town_rows(out, name, spec)


def town_key(value: Any) -> str | None:
    """A cell of a town column as a town id: text, trimmed, ``320612101.0`` read as ``320612101``; None if blank."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):  # None, NaN, pd.NA
        return None
    key = _value_key(value)
    return key or None


def _town_rows(frame: Any, name: str, spec: dict[str, Any]) -> Any:
    """A district town's share of a shared source (``spec["rows"]``, an :class:`io.Rows`), checked after mapping.

    Every row read must have the town's id in the town column (else the file changed after the district
    split it); a town with no rows in a source that is not ``allow_empty`` is refused, naming the column.
    """
    rows = spec["rows"]
    src = (getattr(frame, "attrs", {}) or {}).get("source") or {}
    where = {"path": _source_text(spec), "layer": spec.get("layer") or spec.get("sheet") or name,
             "column": rows.column}
    wrong = [i for i, v in zip(frame.index, frame[rows.by], strict=True) if town_key(v) != rows.value]
    if wrong:
        table = name in ROSTERS or str(spec.get("path", "")).lower().endswith((".csv", ".txt"))
        label = f"line {int(wrong[0]) + 2}" if table else f"feature {int(wrong[0])}"  # as the model numbers rows
        msg = (f"{label} of the {name} data no longer has {rows.column} = {rows.value!r}: the file changed after "
               "the district split it by town.")
        raise InputError(msg, **where, fix="run again once the file is no longer being written")
    if not len(frame) and not spec.get("allow_empty", False):
        what = "roster" if name in ROSTERS else "layer"
        msg = f"no row of the {name} {what} has {rows.column} = {rows.value!r}, so this town has no {name}."
        raise InputError(msg, **where, fix=(f"{rows.hint} " if rows.hint else "") + "correct the town's id under "
                         f"[[towns]] or fill in {rows.column} for its rows; write allow_empty = true under "
                         f"[sources.{name}] if a town may have none")
    frame.attrs = {"source": src}
    return frame


def _source_text(spec: dict[str, Any]) -> str:
    """Where a source is read from, as it may be shown (a database URL without any password)."""
    return io.display_url(spec["url"]) if "url" in spec else str(spec["path"])


def load_town(source: str | os.PathLike[str] | Config | None = None) -> Town:
    """Load and validate a town.

    Parameters
    ----------
    source
        A config file path, a folder with ``gisgrid.toml``, a GeoPackage with
        the canonical layer names, a :class:`Config`, or None for the embedded
        demo town (the same data as ``data/geo/``).

    Returns
    -------
    Town

    Raises
    ------
    GisgridError
        ``ConfigError``, ``InputError``, ``SchemaError`` or ``CRSError`` naming the file and the fix.
    """
    cfg = source if isinstance(source, Config) else load_config(source)
    if cfg.demo:
        from gisgrid.demo import make_demo

        return make_demo().town()
    frames: dict[str, Any] = {}
    for name, spec in cfg.sources.items():
        if name in TRACK_SOURCES:  # GPS tracks are streamed when the patrols are judged (patrol_batches)
            continue
        logger.info("reading %s from %s", name, _source_text(spec))
        frames[name] = _read_source(name, spec)
        if not len(frames[name]) and not spec.get("allow_empty", False):
            # an empty layer silently switches its checks off: the veto with the POIs, 100% with the roads
            msg = f"the {name} {'roster' if name in ROSTERS else 'layer'} has no rows; every check that reads it " \
                  "would pass without looking."
            raise InputError(msg, path=_source_text(spec), layer=spec.get("layer") or spec.get("sheet")
                             or spec.get("table") or name,
                             fix=f"point [sources.{name}] at the right file and layer, or write allow_empty = true "
                                 "under it if the town really has none")
    town_name = cfg.town.get("name")  # control characters written out, as in every layer and roster (io.files)
    return Town.from_frames(**frames, crs=cfg.town.get("crs"),
                            name=None if town_name is None else show_text(str(town_name)),
                            defaults={n: spec.get("defaults") for n, spec in cfg.sources.items()})


def check(source: str | os.PathLike[str] | Config | None = None) -> tuple[Town, pd.DataFrame]:
    """Load and validate only (data and sensitive-section rules); return the town and its per-layer table."""
    cfg = source if isinstance(source, Config) else load_config(source)
    validate(cfg)
    town = load_town(cfg)
    table = town.layer_table()
    if "patrols" in cfg.sources:  # the tracks are read too: every row a run would refuse is named now
        fixes, issues = 0, []
        for batch in iter_track_batches(cfg.sources["patrols"]):
            fixes += len(batch.fixes)
            issues += batch.issues
        for issue in issues[:20]:
            logger.warning("patrol tracks: %s", issue)
        if len(issues) > 20:
            logger.warning("patrol tracks: %d more rows refused", len(issues) - 20)
        row = {"layer": "patrols", "rows": fixes, "geometry": "GPS fixes", "repairs": 0, "issues": len(issues),
               "source": cfg.sources["patrols"]["path"]}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return town, table


def border_mismatch(source: str | os.PathLike[str] | Config | None = None, *, town: Town | None = None
                    ) -> dict[str, Any]:
    """Measure how well the hand-drawn grids fit: the widths of their border mismatches (``gisgrid check``).

    Parameters
    ----------
    source
        The config (path or :class:`Config`; None: the demo town).
    town
        The town, when already loaded from ``source``.

    Returns
    -------
    dict
        See :func:`gisgrid.analysis.border_mismatch`.
    """
    from gisgrid.analysis import border_mismatch as measure

    cfg = source if isinstance(source, Config) else load_config(source)
    cov = coverage_options(cfg)
    return measure(load_town(cfg) if town is None else town, tolerance_m=cov["tolerance_m"], workers=cov["workers"])


def write_demo(out: str | os.PathLike[str], *, scale: str = "town", hand_drawn: bool = True) -> list[Path]:
    """Write the synthetic demo data set (GeoPackage, GBK CSV and XLSX rosters, gisgrid.toml) to ``out``.

    ``hand_drawn=False`` writes the exact partition (see :func:`gisgrid.demo.make_demo`).
    """
    from gisgrid.demo import make_demo

    demo = make_demo(scale=scale, hand_drawn=hand_drawn)
    folder = check_output_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    layers = demo.source_layers()
    rosters = demo.source_rosters()
    return [
        io.write_layers(layers, folder / "town.gpkg"),
        io.write_csv(rosters["grid_staff"], folder / "grid_staff.csv", encoding="gbk"),
        io.write_xlsx({"river_chiefs": rosters["river_chiefs"]}, folder / "river_chiefs.xlsx"),
        io.write_geojson(demo.truth, folder / "truth.geojson"),
        # a month of patrol tracks as a phone app exports them: GCJ-02, Chinese headers, local times
        io.write_csv(demo.patrols().source_table(shift=lambda lon, lat: to_datum(lon, lat, "GCJ-02")),
                     folder / "patrols.csv"),
        io.write_geojson(demo.patrols().truth, folder / "patrols_truth.geojson"),
        io.atomic_write_text(folder / "gisgrid.toml", demo.config_toml()),
    ]


# --------------------------------------------------------------------------- run / map
ProgressFn = Callable[[str, int, int], None]


def _noop(step: str, done: int, total: int) -> None:
    """Progress sink that ignores everything."""


@dataclass
class RunResult:
    """What ``gisgrid run`` did.

    Attributes
    ----------
    exit_code : int
        0 within thresholds, 1 a veto item or a threshold hit.
    reason : str
        Why the exit code is what it is.
    assessment : Assessment
    lifecycle : GeoDataFrame
        Today's findings with their history status (and those resolved since the last run).
    report_dir : Path
    written : list of Path
    """

    exit_code: int
    reason: str
    assessment: Any
    lifecycle: Any
    report_dir: Path
    as_of: dt.date
    written: list[Path] = field(default_factory=list)
    period: Any = None  # the period to date (gisgrid.report.points.PeriodScores)
    dispatched: Any = None  # the DispatchResult of ``run(dispatch=True)``

    def counts(self) -> dict[str, int]:
        """Findings by lifecycle status."""
        if self.lifecycle is None or "status" not in self.lifecycle.columns:
            return {}
        return {str(k): int(v) for k, v in self.lifecycle["status"].value_counts().sort_index().items()}

    def one_line(self) -> str:
        """One line for a cron mail."""
        t = self.assessment.totals
        st = ", ".join(f"{k} {v}" for k, v in self.counts().items()) or "no findings"
        flag = "FAIL" if self.exit_code else "OK"
        return (f"gisgrid {flag} {self.assessment.town.name} {self.as_of.isoformat()}: "
                f"area {percent(t['area_coverage'])}, lanes uncovered {t['uncovered_lane_m']:,.0f} m, "
                f"veto {t['veto']}; {st}; {self.reason}; report {self.report_dir}"
                + (f"; {self.dispatched.one_line()}" if self.dispatched is not None else ""))

    def describe(self) -> str:
        """A short multi-line description for a terminal."""
        t = self.assessment.totals
        lines = [
            f"{self.assessment.town.name} — coverage report {self.as_of.isoformat()}",
            f"  area in a grid     {percent(t['area_coverage'], 3)} (staffed {percent(t['effective_coverage'], 3)})",
            f"  roads in a grid    {percent(t['road_coverage'], 3)}; uncovered lanes {t['uncovered_lane_m']:,.0f} m",
            f"  findings           {len(self.assessment.findings)}: "
            + ", ".join(f"{k} {v}" for k, v in t["by_severity"].items()),
            "  status             " + (", ".join(f"{k} {v}" for k, v in self.counts().items()) or "-"),
            f"  result             {'FAIL' if self.exit_code else 'OK'}: {self.reason}",
            *([f"  patrolled {t['patrol_month']}  reaches {percent(t['river_patrolled'])}, grids "
               f"{percent(t['grid_patrolled'])} ({t['patrols_valid']:,} valid of {t['patrols']:,} patrols)"]
              if "patrol_month" in t else []),  # effective coverage: looked after, not only assigned
            *(f"  {line}" for line in (self.period.lines() if self.period is not None else [])),
        ]
        out = t.get("outside") or {}
        if out.get("roads") or out.get("grids") or out.get("pois"):
            lines.insert(3, f"  outside the town   {out['roads']:,} roads ({out['road_m']:,.0f} m), {out['grids']:,} "
                            f"grid parts ({out['grid_area_m2']:,.0f} m²), {out['pois']:,} points: not checked")
        if t.get("derived"):
            lines.insert(3, "  derived            " + ", ".join(f"{k} {v:,}" for k, v in t["derived"].items())
                         + " (see derived.csv)")
        lines.append(f"  report             {(self.report_dir / 'report.html').resolve()}")
        maps = [p for p in self.written if p.suffix == ".html" and p.parent.name == "maps"]
        if maps:
            lines.append(f"  map                {(maps[0].parent / 'command_center.html').resolve()} "
                         f"({len(maps)} map files)")
        if self.dispatched is not None:
            lines += [f"  {line}" for line in self.dispatched.describe()]
        return "\n".join(lines)


def _fingerprints(cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in cfg.sources.items():
        if "url" in spec:  # a database table has no file to digest: its address and query stand for it
            text = f"{_source_text(spec)} {spec.get('table')} {spec.get('sql')}"
            out[name] = "postgis:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
            continue
        p = Path(spec["path"])
        if p.is_dir():  # a folder of GPX tracks: its files' names and digests
            text = " ".join(f"{q.name}:{io.file_digest(q)}" for q in sorted(p.iterdir()) if q.is_file())
            out[name] = "folder:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
            continue
        # a district's shared file is digested once for all its towns (gisgrid.district.partition)
        out[name] = spec.get("digest") or (io.file_digest(p) if p.exists() else "missing")
    return out


def _config_hash(cfg: Config) -> str:
    if cfg.path is None or not cfg.path.exists():
        return "demo" if cfg.demo else ""
    return io.file_digest(cfg.path)


def coverage_options(cfg: Config) -> dict[str, Any]:
    """The ``[coverage]`` options as a dict (``tolerance_m``, ``cleaned_grids``, ``workers``); see ``cfg.coverage``."""
    return cfg.coverage.as_dict()


def validate(cfg: Config) -> None:
    """Check every section a run will use, the same way for ``check`` and ``run``, before any data is read.

    The sections the config parser types itself (``[coverage]``, ``[report]``,
    ``[maps]``, ``[history]``) were checked by :func:`load_config`; this adds
    the ones their owners parse: ``[rules]``, ``[assign]``, ``[report] fail_on``
    and ``deadlines``.

    Raises
    ------
    ConfigError, RuleError
        The first bad key or value, with the fix.
    """
    from gisgrid import policy
    from gisgrid.checks.responsibility import resolve_options
    from gisgrid.checks.sensitive import parse_rules

    parse_rules(cfg.sections.get("rules"))
    resolve_options(cfg.section("assign"))
    policy.check_thresholds(cfg.report.fail_on)
    policy.deadline_days(cfg.report.deadlines)
    _check_basemap(cfg)
    scoring_scheme(cfg)  # [scoring]: parsed by load_config, checked whole here
    _dispatch_options(cfg)
    publish_options(cfg)
    from gisgrid.checks.patrols import resolve_patrol_options

    resolve_patrol_options(cfg.section("patrols"))


def patrol_batches(cfg: Config) -> Any:
    """The patrol tracks of ``cfg`` as an iterable of batches (None when it names none); the demo's own month."""
    if "patrols" in cfg.sources:
        return iter_track_batches(cfg.sources["patrols"])
    if cfg.demo:
        from gisgrid.demo import make_demo

        return [make_demo().patrols().fixes]
    return None


def _check_basemap(cfg: Config) -> None:
    """Refuse a ``[maps] basemap`` typo here: the maps would find it only after the history was written."""
    from gisgrid.maps.basemaps import BASEMAPS
    from gisgrid.vocab import nearest

    if cfg.maps.basemap not in BASEMAPS:
        close = nearest(cfg.maps.basemap, BASEMAPS)
        msg = f"[maps] basemap = {cfg.maps.basemap!r} is not a basemap."
        raise ConfigError(msg, path=cfg.path, fix=(f'did you mean basemap = "{close}"? ' if close else "")
                          + f"use one of {list(BASEMAPS)}")


def publish_options(cfg: Config) -> Any:
    """``[publish]`` typed (None when the config has none): where ``run`` writes the findings in PostGIS."""
    from gisgrid.publish import parse_options

    return parse_options(cfg.section("publish"))


def publish_target(source: str | os.PathLike[str] | Config | None = None) -> str | None:
    """``gisgrid check``: one line on where ``run`` would publish (None without ``[publish]``); exit 2 if it cannot."""
    from gisgrid.publish import describe_target

    cfg = source if isinstance(source, Config) else load_config(source)
    options = publish_options(cfg)
    return None if options is None else describe_target(options)


def history_target(source: str | os.PathLike[str] | Config | None = None) -> str | None:
    """``gisgrid check``: one line on a ``[history] url`` (None for a SQLite history); exit 2 if it cannot be used.

    Creates nothing: a history not there yet is reported as started by the first run.
    """
    cfg = source if isinstance(source, Config) else load_config(source)
    if cfg.history.url is None:
        return None
    from gisgrid.history import History, default_schema

    try:
        hist = open_history(cfg, create=False)
    except HistoryError as exc:
        if "no run history" not in exc.what:
            raise
        schema = cfg.history.schema or default_schema(str(cfg.town.get("name") or ""))
        where = History.describe_location(cfg.history.url, schema)
        return f"history: {where}: started by the first run"
    runs = hist.runs()
    latest = f", latest {runs['as_of'].iloc[-1].isoformat()}" if len(runs) else ""
    return f"history: {hist.where}: {len(runs)} run(s){latest}"


def analyse_config(cfg: Config, town: Town | None = None, *, as_of: dt.date | None = None) -> Any:
    """Load (unless given) and analyse the town of ``cfg`` with its rules and options."""
    from gisgrid.analysis import analyze

    town = load_town(cfg) if town is None else town
    patrols = cfg.section("patrols")
    if cfg.demo:
        from gisgrid.demo.patrols import MONTH

        patrols = {"month": MONTH, **patrols}  # the embedded demo's tracks are of one month
    return analyze(town, rules=cfg.sections.get("rules"), options=cfg.section("assign"),
                   sliver_area_m2=cfg.report.sliver_area_m2, tolerance_m=cfg.coverage.tolerance_m,
                   workers=cfg.coverage.workers, outside_town=cfg.coverage.outside_town,
                   as_of=as_of or dt.date.today(), patrols=patrol_batches(cfg),
                   patrol_options=patrols)


def run(
    source: str | os.PathLike[str] | Config | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    as_of: dt.date | None = None,
    force: bool = False,
    maps: bool = True,
    progress: ProgressFn | None = None,
    dispatch: bool = False,
) -> RunResult:
    """Load, analyse, record history, write the report folder and the maps.

    The report for ``as_of`` is written into a temporary folder and swapped
    into ``reports/YYYY-MM-DD`` only when complete, under a lock, so a killed
    or concurrent run never leaves a half-written report.

    Parameters
    ----------
    source
        Config path, folder, GeoPackage, :class:`Config` or None (demo town).
    out
        Folder that receives ``maps/`` and ``reports/`` (default: the config's folder; for the demo, the
        current folder).
    as_of
        Date of the run (default today).
    force
        Allow a run dated before the last recorded one.
    maps
        Write the HTML maps.
    progress
        ``progress(step, done, total)`` callback (the CLI draws a bar with it).
    dispatch
        After the report is published, send each owner's news (``[dispatch]``, see :func:`send_dispatch`); a
        channel that failed adds :data:`gisgrid.dispatch.EXIT_DELIVERY` to the exit code.

    Returns
    -------
    RunResult
    """
    from gisgrid import maps as maps_mod
    from gisgrid import policy
    from gisgrid import report as report_mod
    from gisgrid.owners import task_lists

    report_progress = progress or _noop

    def tick(step: str, done: int, total: int) -> None:
        _fault(step)
        report_progress(step, done, total)

    total = 6 if maps else 5
    today = dt.date.today()
    as_of = as_of or today
    if as_of > today + dt.timedelta(days=MAX_DAYS_AHEAD) and not force:
        msg = (f"--as-of {as_of.isoformat()} is {(as_of - today).days} days after today ({today.isoformat()}); "
               "a run dated in the future would be recorded in the history and block every later night.")
        raise ConfigError(msg, fix=f"check the date (at most {MAX_DAYS_AHEAD} days ahead), or add --force if you "
                          "really mean it")
    cfg = source if isinstance(source, Config) else load_config(source)
    validate(cfg)
    if maps:  # a basemap that needs a key (Tianditu) and has none: refused here, not after the history commit
        from gisgrid.maps.basemaps import _basemaps

        _basemaps(cfg.maps.basemap, cfg.maps.tiles_url, None)
    if dispatch:  # refused before anything is recorded: no [dispatch], or a secret missing from the environment
        _dispatch_ready(cfg)
    publishing = publish_options(cfg)
    cov = coverage_options(cfg)
    out_dir = check_output_folder(output_folder(cfg, out), "reports", "maps", f"reports/{as_of.isoformat()}")
    reports = out_dir / "reports"
    tick("load", 0, total)
    town = load_town(cfg)
    tick("analyse", 1, total)
    assessment = analyse_config(cfg, town, as_of=as_of)
    written: list[Path] = []
    folder = reports / as_of.isoformat()
    # The cleaned-grids proposal is GEOS work (the GIL is released): it runs beside the history, the
    # maps and the report, which are Python work, and goes into the staged report folder last.
    # With one thread for this town (a district worker: the towns are the parallelism), it runs in turn.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gisgrid-clean")
    cleaning: Any = None
    if cov["cleaned_grids"] and assessment.totals.get("tolerance_m", 0) > 0:
        from gisgrid.analysis import cleaned_grids

        if settings.thread_count(cov["workers"]) > 1:
            cleaning = pool.submit(cleaned_grids, assessment, workers=cov["workers"])
        else:
            cleaning = _Later(cleaned_grids, assessment, workers=1)
    try:
        with io.file_lock(reports / ".gisgrid.lock"):
            io.remove_stale_staging(reports)
            hist = open_history(cfg, out_dir)
            _recover_half_runs(reports, hist)
            tick("history", 2, total)
            latest = hist.last_run()
            # a backfill (--force, an older date) records its report but leaves the live maps/ at the newest state
            backfill = latest is not None and as_of < latest.as_of
            pending = reports / f"{PENDING_PREFIX}{as_of.isoformat()}"
            io.atomic_write_text(pending, f"{as_of.isoformat()}\n")  # until the report is published
            maps_stage: Path | None = None
            try:
                lifecycle = hist.record(assessment.findings, as_of=as_of, config_hash=_config_hash(cfg),
                                        fingerprints=_fingerprints(cfg), force=force,
                                        deadlines=cfg.report.deadlines, totals=_recorded_totals(assessment))
                verdict = policy.evaluate_thresholds(assessment, lifecycle, cfg.report.fail_on)  # once per run
                maps_written: list[Path] = []
                if maps and backfill:
                    logger.warning("backfill of %s: maps/ keeps the state of the latest run (%s)", as_of.isoformat(),
                                   latest.as_of.isoformat() if latest else "-")
                if maps and not backfill:  # before the report: the proposal is still being computed beside them
                    tick("maps", 3, total)
                    # Maps show each finding's status and first-seen date from the history. They are staged
                    # too: the live maps/ must not show a run that a later fault undoes.
                    maps_stage = staging_folder(reports, "maps")
                    maps_written = maps_mod.write_maps(
                        assessment.with_lifecycle(lifecycle), maps_stage, basemap=cfg.maps.basemap,
                        assets=cfg.maps.assets, tiles_url=cfg.maps.tiles_url,
                        per_owner=cfg.maps.per_owner, per_village=cfg.maps.per_village)
                tick("report", total - 2, total)
                map_href = "../../maps/command_center.html" if maps and not backfill else None
                with io.staged_folder(folder) as staging:  # the whole report folder appears at once, or not at all
                    run_points = _run_points(assessment, lifecycle, hist, scoring_scheme(cfg), as_of)
                    written += report_mod.write_report(assessment, staging, lifecycle, history=hist, map_href=map_href,
                                                       fail_on=cfg.report.fail_on, as_of=as_of, verdict=verdict,
                                                       scheme=scoring_scheme(cfg), points=run_points)
                    written += _write_layers(staging, assessment)
                    points_written, period_to_date = _write_points(staging, run_points)
                    written += points_written
                    for owner, table in task_lists(assessment.with_lifecycle(lifecycle)).items():
                        written.append(io.write_csv(table, staging / "owners" / f"{io.safe_filename(owner)}.csv"))
                    if cleaning is not None:
                        tick("cleaned grids", total - 1, total)
                        written.append(io.write_layers({"cleaned_grids": cleaning.result()},
                                                       staging / "cleaned_grids.gpkg"))
                    if publishing is not None:  # last, in the staging: a failed publish leaves no report either
                        from gisgrid.publish import publish

                        tick("publish", total - 1, total)
                        publish(lifecycle, publishing, run_date=as_of, town=assessment.town.name,
                                config_hash=_config_hash(cfg), exit_code=verdict[0], reason=verdict[1],
                                before_commit=lambda: _fault("publish commit"))
                    _fault("staged")  # the report is complete in its staging folder, not yet swapped in
                if maps_stage is not None:  # the report is published: now the maps (a rename per file)
                    maps_written = publish_staged(maps_stage, out_dir, maps_written)
                _fault("published")
            except BaseException:
                # a fault after the history commit (a full disk, a bad file name): undo it, nothing half-recorded
                with contextlib.suppress(Exception):  # the error line already says nothing was published
                    _recover_half_runs(reports, hist, level=logging.INFO)
                    if maps_stage is not None:
                        io.remove_stale_staging(reports)
                raise
            pending.unlink(missing_ok=True)  # the history and its report are both published
            written = [folder / p.relative_to(staging) for p in written] + maps_written
    except OSError as exc:
        if no_space(exc):  # the operator's to fix, like a read-only folder: exit 2, naming the folder
            msg = f"the disk holding {reports} is full, or a file-size limit was hit ({exc}); this run was not " \
                  "recorded and the last report is as it was."
            raise ConfigError(msg, fix="free space on that disk (or give --out a folder on another disk) and run "
                              "again") from None
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    tick("done", total, total)
    code, reason = verdict
    sent = None
    if dispatch and backfill:
        logger.warning("backfill of %s: nothing is dispatched (its news is old); gisgrid dispatch --as-of %s sends "
                       "it if you want", as_of.isoformat(), as_of.isoformat())
    elif dispatch:  # the report is published: the links in the messages work
        sent = send_dispatch(cfg, out=out_dir, as_of=as_of, lifecycle=lifecycle, town=assessment.town.name)
        code += sent.exit_code
    return RunResult(exit_code=code, reason=reason, assessment=assessment, lifecycle=lifecycle,
                     report_dir=folder, as_of=as_of, written=written, period=period_to_date, dispatched=sent)


class _Later:
    """A call made when its result is first asked for (a future's ``result()``, without a thread)."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._call = functools.partial(func, *args, **kwargs)

    def result(self) -> Any:
        return self._call()


#: A run's marker in ``reports/`` from before its history commit until its report is published.
PENDING_PREFIX = ".pending-"


def _recover_half_runs(reports: Path, hist: Any, *, level: int = logging.WARNING) -> None:
    """Undo a run whose history was committed but whose report never appeared (a kill or a full disk between).

    The history and the report folder move together: a pending marker with no published report means the
    history holds a run nobody can read, so it is removed; with the report published, only the marker goes.
    """
    for marker in sorted(reports.glob(f"{PENDING_PREFIX}*")):
        day = dt.date.fromisoformat(marker.name.removeprefix(PENDING_PREFIX))
        if not (reports / day.isoformat() / "report.html").exists() and hist.get_run(day) is not None:
            hist.undo(day)
            logger.log(level, "the run of %s was recorded but its report never appeared (interrupted): it is "
                       "undone; run that date again to redo it", day.isoformat())
        marker.unlink(missing_ok=True)


def output_folder(cfg: Config, out: str | os.PathLike[str] | None = None) -> Path:
    """Where ``maps/`` and ``reports/`` go: ``out`` when given, else the config's folder (the demo: here).

    Next to the config, not the current folder, so that a cron job or a shell in another folder finds and
    extends the same history.
    """
    if out is not None:
        return Path(out)
    return cfg.path.parent if cfg.path is not None else Path(".")


def _recover_now(reports: Path, hist: Any) -> None:
    """Undo a killed run's half-recorded run now (as the next ``run`` would), unless a run is writing."""
    if not any(reports.glob(f"{PENDING_PREFIX}*")):
        return
    try:
        with io.file_lock(reports / ".gisgrid.lock", timeout_s=0):
            io.remove_stale_staging(reports)
            _recover_half_runs(reports, hist)
    except InputError:  # a run holds the lock: its marker is live
        logger.warning("a run is writing to %s now: its date may be listed before its report appears", reports)


def open_history(cfg: Config, out: str | os.PathLike[str] | None = None, *, create: bool = True) -> History:
    """The town's run history: ``[history] url`` (PostgreSQL), ``[history] path``, or ``reports/history.sqlite``.

    ``create=False`` (the commands that only read a history) refuses a history that does not exist yet.
    """
    from gisgrid.history import History

    town = " ".join(str(cfg.town.get("name") or "").split())
    if cfg.history.url is not None:
        if not town and cfg.history.schema is None:  # unnamed towns would all share gisgrid_history
            msg = "[history] url needs a schema of this town's own: the config has no [town] name to name it by."
            raise ConfigError(msg, path=cfg.path, fix='add schema = "history_<town>" under [history] (one per town), '
                                                      'or name the town under [town]')
        return History(cfg.history.url, schema=cfg.history.schema, town=town, create=create)
    path = cfg.history.path or output_folder(cfg, out) / "reports" / "history.sqlite"
    if not create and not path.exists():
        msg = f"there is no run history at {path}."
        raise HistoryError(msg, path=path, fix="give --out the folder gisgrid run wrote to (or [history] path)")
    return History(path)


def _outbox_path(cfg: Config, out: str | os.PathLike[str] | None, hist: History) -> Path:
    """The dispatch outbox: in the history's SQLite file, or beside the reports when the history is in PostgreSQL."""
    return hist.path if hist.path is not None else output_folder(cfg, out) / "reports" / "outbox.sqlite"


def list_runs(source: str | os.PathLike[str] | Config | None = None, *,
              out: str | os.PathLike[str] | None = None) -> list[str]:
    """One line per recorded run, oldest first (``gisgrid history list``)."""
    cfg = source if isinstance(source, Config) else load_config(source)
    hist = open_history(cfg, out, create=False)
    _recover_now(output_folder(cfg, out) / "reports", hist)
    runs = hist.runs()
    return [f"{r.as_of.isoformat()}  open {r.open:>5}  new {r.new:>4}  overdue {r.overdue:>4}  "
            f"resolved {r.resolved:>4}  recorded {r.created}" for r in runs.itertuples()] or ["no runs recorded"]


def undo_run(source: str | os.PathLike[str] | Config | None = None, *, out: str | os.PathLike[str] | None = None,
             as_of: dt.date) -> str:
    """Remove a run recorded by mistake and its report folder (``gisgrid history undo DATE``).

    The runs after it are re-derived as if it had never been; the maps keep whatever the last ``run`` drew.

    Returns
    -------
    str
        One line saying what was removed.
    """
    import shutil

    cfg = source if isinstance(source, Config) else load_config(source)
    reports = output_folder(cfg, out) / "reports"
    hist = open_history(cfg, out, create=False)
    with io.file_lock(reports / ".gisgrid.lock"):
        _recover_half_runs(reports, hist)  # a killed run first: the history and the reports agree again
        removed = hist.undo(as_of)
        folder = reports / as_of.isoformat()
        if folder.is_dir():
            aside = folder.with_name(f".{folder.name}.old")  # renamed first: the folder goes at once
            os.replace(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)
    return (f"removed the run of {as_of.isoformat()} ({sum(removed.counts.get('status', {}).values())} observations) "
            f"and its report; run gisgrid run again to redraw the maps if it was the latest")


def check_output_folder(out: str | os.PathLike[str], *subfolders: str) -> Path:
    """Refuse an output folder that cannot take the outputs, before anything is read or written.

    Raises
    ------
    ConfigError
        ``out`` or one of ``out/<subfolder>`` exists but is not a folder, or a folder that exists is not
        writable.
    """
    base = Path(out)
    for path in (base, *(base / s for s in subfolders)):
        if path.exists() and not path.is_dir():
            msg = f"{path} exists and is a file, not a folder."
            raise ConfigError(msg, path=path, fix="give --out a folder (or move the file away)")
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            msg = f"the folder {path} is not writable for this user."
            raise ConfigError(msg, path=path, fix="give --out a folder you can write, or change its permissions")
    return base


#: ``run --as-of`` may be at most this many days after today without ``--force`` (time zones, a late night).
MAX_DAYS_AHEAD = 2

#: Environment variable naming a stage of ``run`` (load, analyse, history, maps, report, cleaned grids,
#: done) at whose start an exception is raised: the crash and recovery tests use it.
#: ``pause:<stage>`` instead writes the file named by :data:`PAUSE_FILE_ENV` (atomically; its text is the
#: stage and the process id) at the start of that stage and then sleeps until the process is killed: the
#: kill tests use it to stop a run at a known point.
FAULT_ENV = "GISGRID_FAULT"
#: Environment variable with the path of the marker file a ``pause:<stage>`` fault writes.
PAUSE_FILE_ENV = "GISGRID_PAUSE_FILE"
_PAUSE = "pause:"


def _fault(step: str) -> None:
    fault = os.environ.get(FAULT_ENV)
    if fault == step:
        msg = f"fault injected at the start of stage {step!r} ({FAULT_ENV})"
        raise RuntimeError(msg)
    if fault == _PAUSE + step:
        import time

        marker = os.environ.get(PAUSE_FILE_ENV)
        if marker:
            io.atomic_write_text(marker, f"{step}\n{os.getpid()}\n")
        logger.warning("paused at the start of stage %r (%s=%s): waiting to be killed", step, FAULT_ENV, fault)
        while True:
            time.sleep(3600)


def write_crash_log(command: str, exc: BaseException, folder: str | os.PathLike[str] | None) -> Path:
    """Write the traceback of an unexpected error where the operator will look, and return the file.

    ``folder`` (the command's output folder: ``--out``, else the config's folder) when it can be written,
    else the system's temporary folder.
    """
    import tempfile
    import traceback

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"gisgrid {command}: unexpected error at {dt.datetime.now().isoformat(timespec='seconds')}\n"
            + "".join(traceback.format_exception(exc)))
    for base in ([Path(folder)] if folder is not None else []) + [Path(tempfile.gettempdir())]:
        try:
            return io.atomic_write_text(base / f"gisgrid-error-{stamp}.log", text)
        except OSError:
            continue
    msg = "no folder to write the crash log to"
    raise OSError(msg) from exc


def _run_points(assessment: Any, lifecycle: Any, hist: Any, scheme: Any, as_of: dt.date) -> tuple[Any, Any]:
    """The run's ledger and its period to date: computed once for the report page and the points files."""
    from gisgrid.report.points import run_points

    return run_points(assessment, lifecycle, history=hist, scheme=scheme, as_of=as_of)


def _write_points(folder: Path, run_points: tuple[Any, Any]) -> tuple[list[Path], Any]:
    """失分台账: ``points.csv`` and ``points.xlsx`` of the run; and its period to date, which the terminal shows."""
    from gisgrid.report.points import points_sheets

    run_ledger, period = run_points
    return [io.write_csv(run_ledger, folder / "points.csv"),
            io.write_xlsx(points_sheets(run_ledger, period), folder / "points.xlsx")], period


def _write_layers(folder: Path, assessment: Any) -> list[Path]:
    """Sensitive sections, checkpoints, river reaches and cross-boundary sections beside the findings."""
    out: list[Path] = []
    resp = assessment.responsibility
    layers = {"sensitive": assessment.sensitive, "reaches": getattr(resp, "reaches", None),
              "cross_sections": getattr(resp, "cross_sections", None)}
    for name, layer in layers.items():
        if layer is not None:
            out.append(io.write_geojson(layer, folder / f"{name}.geojson"))
    patrols = getattr(assessment, "patrols", None)
    if patrols is not None:  # the month's tracks (valid or suspect, why) and the per-chief table, for a GIS
        tracks = patrols.patrols.drop(columns=["start_s", "judged"], errors="ignore")
        for col in ("start", "end"):
            tracks[col] = [v.isoformat() for v in tracks[col]]
        out.append(io.write_geojson(tracks, folder / "patrols.geojson"))
        out.append(io.write_csv(patrols.people, folder / "patrol_people.csv"))
    if assessment.checkpoints is not None:
        out.append(io.write_csv(assessment.checkpoints, folder / "checkpoints.csv"))
    derived = assessment.town.derived
    if len(derived):  # every value gisgrid filled in, so that an analyst can check and correct the source
        out.append(io.write_csv(derived.drop(columns=["measure"]), folder / "derived.csv"))
    return out


def make_maps(
    source: str | os.PathLike[str] | Config | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    village: str | None = None,
    owner: str | None = None,
    basemap: str | None = None,
) -> list[Path]:
    """Analyse and write the command-center maps only (``maps/`` under ``out``, default the config's folder)."""
    from gisgrid import maps as maps_mod

    cfg = source if isinstance(source, Config) else load_config(source)
    out = check_output_folder(output_folder(cfg, out), "maps")
    validate(cfg)
    assessment = analyse_config(cfg)
    if village is not None and village not in set(assessment.town.villages["village_id"]):
        msg = f"no village with id {village!r}."
        raise ConfigError(msg, fix=f"use one of {sorted(assessment.town.villages['village_id'])[:10]} …")
    return maps_mod.write_maps(assessment, Path(out), basemap=basemap or cfg.maps.basemap,
                               assets=cfg.maps.assets, tiles_url=cfg.maps.tiles_url,
                               village=village, owner=owner)


# --------------------------------------------------------------------------- score (测评)
def scoring_scheme(cfg: Config) -> Any:
    """The 测评体系 of a config: the shipped :class:`gisgrid.scoring.Scheme` with ``[scoring]`` over it."""
    from gisgrid.scoring import Scheme

    return Scheme.from_options(cfg.scoring)


def _recorded_totals(assessment: Any) -> dict[str, Any]:
    """The totals a run records: the assessment's, and every village's name and hygiene (``totals["scoring"]``)."""
    from gisgrid.report.points import TOTALS_KEY
    from gisgrid.scoring import village_book

    return {**assessment.totals, TOTALS_KEY: village_book(assessment)}


def score(source: str | os.PathLike[str] | Config | None = None, *, out: str | os.PathLike[str] | None = None,
          period: str | None = None) -> Any:
    """Rank the villages and departments over a period from the run history (``gisgrid score --period 2026Q4``).

    Writes ``reports/periods/<period>/``: ``ranking.csv`` (both levels), ``trend.csv``, ``points.csv`` (the
    period's ledger) and ``ranking.xlsx`` (the same as sheets, with the scheme), the folder at once.

    Parameters
    ----------
    source
        The config (its ``[scoring]`` and ``[history]``).
    out
        The folder ``gisgrid run`` wrote to (default: the config's folder).
    period
        ``2026Q4``, ``2026-11`` or ``2026`` (default: the ``[scoring] period`` holding the latest run).

    Returns
    -------
    PeriodScores
        With ``folder`` set to the folder written.

    Raises
    ------
    ConfigError, HistoryError
        A bad ``[scoring]`` or period, no history, or no run in the period.
    """
    from gisgrid.report.points import period_scores
    from gisgrid.scoring import parse_period, period_of

    cfg = source if isinstance(source, Config) else load_config(source)
    validate(cfg)
    scheme = scoring_scheme(cfg)
    span = parse_period(period) if period else None  # a bad period is refused before anything is read
    out = check_output_folder(output_folder(cfg, out), "reports")
    hist = open_history(cfg, out, create=False)
    latest = hist.last_run()
    if latest is None:
        msg = f"the run history in {hist.where} has no runs."
        raise HistoryError(msg, fix="run gisgrid run first")
    span = span or period_of(latest.as_of, scheme.period)
    scores = period_scores(hist, span, scheme)
    if not scores.runs:
        msg = f"no run in {span.label} ({span.start.isoformat()} to {span.end.isoformat()}) in {hist.where}."
        raise HistoryError(msg, fix="choose a period with runs (gisgrid history list shows them)")
    folder = Path(out) / "reports" / "periods" / span.label
    trend = pd.concat([t.assign(level=lvl) for lvl, t in scores.trend.items()], ignore_index=True)
    with io.staged_folder(folder) as staging:
        io.write_csv(scores.ranking(), staging / "ranking.csv")
        io.write_csv(trend, staging / "trend.csv")
        io.write_csv(scores.ledger, staging / "points.csv")
        io.write_xlsx({**{f"{lvl} {span.label}": t for lvl, t in scores.levels.items()},
                       **{f"trend {lvl}": t for lvl, t in scores.trend.items()},
                       "失分台账 ledger": scores.ledger, "测评体系 scheme": scheme.table()}, staging / "ranking.xlsx")
    scores.folder = folder
    return scores


# --------------------------------------------------------------------------- dispatch (吹哨)
def _dispatch_options(cfg: Config) -> Any:
    """``[dispatch]``, parsed (empty options when the section is absent)."""
    from gisgrid.dispatch import parse_dispatch

    return parse_dispatch(cfg.sections.get("dispatch"), path=cfg.path)


def _dispatch_ready(cfg: Config, *, secrets: bool = True) -> Any:
    """The ``[dispatch]`` options, refusing a config without channels or (``secrets``) an unset variable."""
    from gisgrid.dispatch import check_secrets

    options = _dispatch_options(cfg)
    if not options.enabled:
        msg = "the config has no [dispatch] section with channels, so there is nowhere to send to."
        raise ConfigError(msg, path=cfg.path, fix="add [dispatch] and [dispatch.channels.NAME] (see docs/dispatch.md)")
    missing = check_secrets(options) if secrets else []
    if missing:
        msg = f"the environment variable(s) {missing} named in [dispatch] are not set."
        raise ConfigError(msg, path=cfg.path, fix="export them in the environment of the scheduled job (their "
                          "values are never written in the config)")
    return options


def _dispatch_links(cfg: Config, options: Any, as_of: dt.date) -> Callable[[str, str], list[tuple[str, str]]]:
    """Links under ``[dispatch] base_url`` to the files ``run`` wrote (their names as the maps and task lists)."""
    from urllib.parse import quote

    from gisgrid.maps import safe_name

    base = options.base_url
    day = as_of.isoformat()
    owner_maps = cfg.maps.per_owner is not False

    def links(kind: str, who: str) -> list[tuple[str, str]]:
        if not base:
            return []
        if kind == "owner":
            out = [("任务清单 task list", f"{base}/reports/{day}/owners/{quote(io.safe_filename(who))}.csv")]
            if owner_maps:
                out.append(("地图 map", f"{base}/maps/owner_{quote(safe_name(who))}.html"))
            return out
        return [("报告 report", f"{base}/reports/{day}/report.html"),
                ("指挥中心地图 map", f"{base}/maps/command_center.html")]

    return links


def send_dispatch(
    source: str | os.PathLike[str] | Config | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    as_of: dt.date | None = None,
    dry_run: bool = False,
    lifecycle: Any = None,
    town: str | None = None,
) -> Any:
    """Send each owner's news of a recorded run (``gisgrid dispatch``, ``gisgrid run --dispatch``).

    Parameters
    ----------
    source
        The config (its ``[dispatch]`` section).
    out
        The folder ``run`` wrote to (its ``reports/history.sqlite`` holds the outbox), unless ``[history]
        path`` says otherwise.
    as_of
        The run date (default: the latest recorded run).
    dry_run
        Show what would be sent; send and record nothing, read no secret.
    lifecycle
        The run's lifecycle table when the caller has it (default: rebuilt from the history).
    town
        The town's name for the titles (default ``[town] name``).

    Returns
    -------
    gisgrid.dispatch.DispatchResult

    Raises
    ------
    ConfigError, HistoryError
        No ``[dispatch]``, an unset secret variable, no history or no run on that date.
    """
    from gisgrid import dispatch as dispatch_mod

    cfg = source if isinstance(source, Config) else load_config(source)
    options = _dispatch_ready(cfg, secrets=not dry_run)
    hist = open_history(cfg, out, create=False)
    run_ = hist.last_run() if as_of is None else hist.get_run(as_of)
    if run_ is None:
        msg = "no run is recorded" + ("" if as_of is None else f" on {as_of.isoformat()}") + f" in {hist.where}."
        raise HistoryError(msg, fix="run gisgrid run first, or give the --as-of date of a recorded run")
    life = hist.snapshot(run_.as_of) if lifecycle is None else lifecycle
    center = cfg.section("assign").get("default_owner") or settings.default_owner
    lock = output_folder(cfg, out) / "reports" / ".gisgrid.lock"
    with contextlib.nullcontext() if dry_run else io.file_lock(lock):
        return dispatch_mod.send(life, db_path=_outbox_path(cfg, out, hist), as_of=run_.as_of, options=options,
                                 run_stamp=run_.created,
                                 center=str(center), town=town or str(cfg.town.get("name") or ""),
                                 links=_dispatch_links(cfg, options, run_.as_of), dry_run=dry_run,
                                 before_send=lambda n: _fault(f"dispatch-{n}"))
