"""One function per job: load, analyse, write.

The CLI is a thin shell over these; a scheduler or a notebook can call them
directly. ``load_town`` turns a config file (or a GeoPackage with the
canonical layer names, or nothing: the embedded demo town) into a validated
:class:`~gisgrid.model.Town`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gisgrid import io
from gisgrid._errors import ConfigError, SchemaError
from gisgrid.model import LAYERS, ROSTERS, Town
from gisgrid.vocab import percent

__all__ = ["Config", "RunResult", "analyse_config", "check", "load_config", "load_town", "make_maps", "run",
           "write_demo"]

logger = logging.getLogger(__name__)

_SOURCE_KEYS = {"path", "layer", "crs", "encoding", "fields", "values", "sheet"}
_TOP_KEYS = {"town", "sources", "coverage", "rules", "report", "owners", "history", "assign", "maps"}
#: ``[coverage]`` keys and their defaults (None: the value in gisgrid.settings).
COVERAGE_KEYS: dict[str, Any] = {"tolerance_m": None, "cleaned_grids": True, "workers": None}
SOURCE_NAMES = (*LAYERS, *ROSTERS)


@dataclass
class Config:
    """A parsed configuration: where the data is and how to analyse and report it.

    Attributes
    ----------
    path : Path or None
        The config file (None for the embedded demo or a bare GeoPackage).
    town : dict
        ``[town]``: ``name``, ``crs``.
    sources : dict
        ``[sources.NAME]`` tables with absolute paths.
    sections : dict
        Every other top-level table (``rules``, ``report``, ``owners``, ``history``, ``assign``, ``maps``).
    """

    path: Path | None = None
    town: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    demo: bool = False

    def section(self, name: str) -> dict[str, Any]:
        """Return a top-level table (empty dict when absent)."""
        return dict(self.sections.get(name) or {})


def _parse_config(data: dict[str, Any]) -> Config:
    path = Path(data.pop("_path"))
    base = Path(data.pop("_dir"))
    unknown = set(data) - _TOP_KEYS
    if unknown:
        msg = f"unknown section(s) {sorted(unknown)}."
        raise ConfigError(msg, path=path, fix=f"use only {sorted(_TOP_KEYS)}")
    town = dict(data.get("town") or {})
    sources_in = data.get("sources") or {}
    if not isinstance(sources_in, dict) or not sources_in:
        msg = "no [sources.NAME] tables."
        raise ConfigError(msg, path=path, fix="add [sources.villages] and [sources.grids] at least (see README)")
    sources: dict[str, dict[str, Any]] = {}
    for name, spec in sources_in.items():
        where = f"[sources.{name}]"
        if name not in SOURCE_NAMES:
            msg = f"unknown source {where}."
            raise ConfigError(msg, path=path, fix=f"use one of {list(SOURCE_NAMES)}")
        if not isinstance(spec, dict) or "path" not in spec:
            msg = f"{where} has no path."
            raise ConfigError(msg, path=path, fix=f'add path = "file.gpkg" under {where}')
        bad = set(spec) - _SOURCE_KEYS
        if bad:
            msg = f"{where} has unknown key(s) {sorted(bad)}."
            raise ConfigError(msg, path=path, fix=f"use only {sorted(_SOURCE_KEYS)}")
        for key in ("fields", "values"):
            if key in spec and not isinstance(spec[key], dict):
                msg = f"{where} {key} must be a table."
                raise ConfigError(msg, path=path, fix=f'write {key} = {{ canonical = "yours" }}')
        entry = dict(spec)
        entry["path"] = str((base / str(spec["path"])).resolve())
        sources[name] = entry
    for req in ("villages", "grids"):
        if req not in sources:
            msg = f"[sources.{req}] is missing."
            raise ConfigError(msg, path=path, fix=f"add [sources.{req}] with the path of your {req} layer")
    sections = {k: v for k, v in data.items() if k not in {"town", "sources"}}
    return Config(path=path, town=town, sources=sources, sections=sections)


def find_config() -> Path | None:
    """``gisgrid.toml`` in the current folder, when there is one."""
    cand = Path.cwd() / "gisgrid.toml"
    return cand.resolve() if cand.is_file() else None


def describe_config(source: str | os.PathLike[str] | None) -> str:
    """One line naming the config a command will use (the first line of ``check``, ``run`` and ``map``)."""
    if source is not None:
        return f"config: {Path(source).resolve()}"
    found = find_config()
    if found is not None:
        return f"config: {found} (found in the current folder)"
    return ("config: none given and no gisgrid.toml here: this is the embedded demo town (东社镇). To run your own "
            "data, write a gisgrid.toml (see `gisgrid demo --out DIR` for an example) and pass its path, or run "
            "from its folder.")


def load_config(source: str | os.PathLike[str] | None = None) -> Config:
    """Read a config file, a folder holding ``gisgrid.toml``, a GeoPackage, or nothing (the demo town).

    Parameters
    ----------
    source
        Path of a ``.toml`` config, a folder with a ``gisgrid.toml``, a
        ``.gpkg`` with the canonical layer names, or None: ``./gisgrid.toml``
        when there is one (as ruff and pytest find theirs), else the demo.

    Returns
    -------
    Config
    """
    if source is None:
        found = find_config()
        if found is None:
            return Config(demo=True)
        source = found
    p = Path(source)
    if p.is_dir():
        cand = p / "gisgrid.toml"
        if not cand.exists():
            msg = "the folder has no gisgrid.toml."
            raise ConfigError(msg, path=p,
                              fix="give the config file's path, or run `gisgrid demo --out DIR` for an example")
        p = cand
    if p.suffix.lower() == ".gpkg":
        return _gpkg_config(p)
    return _parse_config(io.read_config(p))


def _gpkg_config(path: Path) -> Config:
    if not path.exists():
        msg = "the file does not exist."
        raise ConfigError(msg, path=path, fix="check the path")
    names = set(io.list_layers(path))  # a damaged or truncated file is an InputError naming it
    sources = {n: {"path": str(path.resolve()), "layer": n} for n in SOURCE_NAMES if n in names}
    for n in ROSTERS:
        if n in sources:
            sources[n]["sheet"] = sources[n].pop("layer")
    for req in ("villages", "grids"):
        if req not in sources:
            msg = f"has no '{req}' layer (it has {sorted(names)})."
            raise ConfigError(msg, path=path, layer=req, fix="name the layers boundary, villages, grids, roads, "
                              "rivers, pois, grid_staff, river_chiefs, or write a gisgrid.toml that maps yours")
    return Config(path=path, sources=sources)


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
    if name in ROSTERS:
        frame = io.read_table(spec["path"], encoding=spec.get("encoding"), sheet=spec.get("sheet", spec.get("layer")))
    else:
        frame = io.read_layer(spec["path"], layer=spec.get("layer"), encoding=spec.get("encoding"),
                              crs=spec.get("crs"))
    return _map_fields(frame, name, spec)


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
        logger.info("reading %s from %s", name, spec["path"])
        frames[name] = _read_source(name, spec)
    return Town.from_frames(**frames, crs=cfg.town.get("crs"), name=cfg.town.get("name"))


def check(source: str | os.PathLike[str] | Config | None = None) -> tuple[Town, pd.DataFrame]:
    """Load and validate only (data and sensitive-section rules); return the town and its per-layer table."""
    cfg = source if isinstance(source, Config) else load_config(source)
    _validate_rules(cfg)
    coverage_options(cfg)
    town = load_town(cfg)
    return town, town.layer_table()


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
                f"veto {t['veto']}; {st}; {self.reason}; report {self.report_dir}")

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
            f"  report             {self.report_dir}",
        ]
        maps = [p for p in self.written if p.suffix == ".html" and p.parent.name == "maps"]
        if maps:
            lines.append(f"  maps               {maps[0].parent} ({len(maps)} files)")
        return "\n".join(lines)


def _fingerprints(cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in cfg.sources.items():
        p = Path(spec["path"])
        out[name] = io.file_digest(p) if p.exists() else "missing"
    return out


def _config_hash(cfg: Config) -> str:
    if cfg.path is None or not cfg.path.exists():
        return "demo" if cfg.demo else ""
    return io.file_digest(cfg.path)


def coverage_options(cfg: Config) -> dict[str, Any]:
    """The ``[coverage]`` table, checked: ``tolerance_m``, ``cleaned_grids``, ``workers``.

    Raises
    ------
    ConfigError
        An unknown key (with the nearest known one) or a bad value.
    """
    given = cfg.section("coverage")
    where = cfg.path
    unknown = sorted(set(given) - set(COVERAGE_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(COVERAGE_KEYS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        msg = f"[coverage] has unknown key(s) {unknown}."
        raise ConfigError(msg, path=where, fix=f"{hint}use only {sorted(COVERAGE_KEYS)}")
    out = dict(COVERAGE_KEYS)
    out.update(given)
    tol = out["tolerance_m"]
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol)
                            or tol < 0):
        msg = f"[coverage] tolerance_m must be a number of metres >= 0, not {tol!r}."
        raise ConfigError(msg, path=where, fix="write tolerance_m = 2.0 (0 for exact geometry: no digitising noise)")
    if not isinstance(out["cleaned_grids"], bool):
        msg = f"[coverage] cleaned_grids must be true or false, not {out['cleaned_grids']!r}."
        raise ConfigError(msg, path=where, fix="write cleaned_grids = false to skip the cleaned-grids proposal")
    workers = out["workers"]
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        msg = f"[coverage] workers must be a whole number >= 1, not {workers!r}."
        raise ConfigError(msg, path=where, fix="write workers = 2, or leave it out for one thread per CPU")
    return out


def analyse_config(cfg: Config, town: Town | None = None, *, as_of: dt.date | None = None) -> Any:
    """Load (unless given) and analyse the town of ``cfg`` with its rules and options."""
    from gisgrid.analysis import analyze

    town = load_town(cfg) if town is None else town
    report_cfg = cfg.section("report")
    cov = coverage_options(cfg)
    return analyze(town, rules=cfg.sections.get("rules"), options=cfg.section("assign"),
                   sliver_area_m2=report_cfg.get("sliver_area_m2"), tolerance_m=cov["tolerance_m"],
                   workers=cov["workers"], as_of=as_of or dt.date.today())


def run(
    source: str | os.PathLike[str] | Config | None = None,
    *,
    out: str | os.PathLike[str] = ".",
    as_of: dt.date | None = None,
    force: bool = False,
    maps: bool = True,
    progress: ProgressFn | None = None,
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
        Folder that receives ``maps/`` and ``reports/``.
    as_of
        Date of the run (default today).
    force
        Allow a run dated before the last recorded one.
    maps
        Write the HTML maps.
    progress
        ``progress(step, done, total)`` callback (the CLI draws a bar with it).

    Returns
    -------
    RunResult
    """
    from gisgrid import history as history_mod
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
    _validate_rules(cfg)
    cov = coverage_options(cfg)
    out_dir = check_output_folder(out, "reports", "maps", f"reports/{as_of.isoformat()}")
    reports = out_dir / "reports"
    tick("load", 0, total)
    town = load_town(cfg)
    tick("analyse", 1, total)
    assessment = analyse_config(cfg, town, as_of=as_of)
    hist_cfg = cfg.section("history")
    db_path = Path(hist_cfg["path"]) if "path" in hist_cfg else reports / "history.sqlite"
    if cfg.path is not None and not db_path.is_absolute() and "path" in hist_cfg:
        db_path = cfg.path.parent / db_path
    report_cfg = cfg.section("report")
    written: list[Path] = []
    folder = reports / as_of.isoformat()
    # The cleaned-grids proposal is GEOS work (the GIL is released): it runs beside the history, the
    # maps and the report, which are Python work, and goes into the staged report folder last.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gisgrid-clean")
    cleaning = None
    if cov["cleaned_grids"] and assessment.totals.get("tolerance_m", 0) > 0:
        from gisgrid.analysis import cleaned_grids

        cleaning = pool.submit(cleaned_grids, assessment, workers=cov["workers"])
    try:
        with io.file_lock(reports / ".gisgrid.lock"):
            io.remove_stale_staging(reports)
            tick("history", 2, total)
            hist = history_mod.History(db_path)
            lifecycle = hist.record(assessment.findings, as_of=as_of, config_hash=_config_hash(cfg),
                                    fingerprints=_fingerprints(cfg), force=force,
                                    deadlines=report_cfg.get("deadlines"), totals=assessment.totals)
            verdict = policy.evaluate_thresholds(assessment, lifecycle, report_cfg.get("fail_on"))  # once per run
            maps_written: list[Path] = []
            if maps:  # before the report: the proposal is still being computed beside them
                tick("maps", 3, total)
                # Maps show each finding's status and first-seen date from the history.
                mcfg = cfg.section("maps")
                maps_written = maps_mod.write_maps(
                    _with_lifecycle(assessment, lifecycle), out_dir, basemap=mcfg.get("basemap", "osm"),
                    assets=mcfg.get("assets", "cdn"), tiles_url=mcfg.get("tiles_url"),
                    per_owner=mcfg.get("per_owner"), per_village=mcfg.get("per_village"))
            tick("report", total - 2, total)
            map_href = "../../maps/command_center.html" if maps else None
            with io.staged_folder(folder) as staging:  # the whole report folder appears at once, or not at all
                written += report_mod.write_report(assessment, staging, lifecycle, history=hist, map_href=map_href,
                                                   fail_on=report_cfg.get("fail_on"), as_of=as_of, verdict=verdict)
                written += _write_layers(staging, assessment)
                for owner, table in task_lists(_with_lifecycle(assessment, lifecycle)).items():
                    written.append(io.write_csv(table, staging / "owners" / f"{io.safe_filename(owner)}.csv"))
                if cleaning is not None:
                    tick("cleaned grids", total - 1, total)
                    written.append(io.write_layers({"cleaned_grids": cleaning.result()},
                                                   staging / "cleaned_grids.gpkg"))
            written = [folder / p.relative_to(staging) for p in written] + maps_written
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    tick("done", total, total)
    code, reason = verdict
    return RunResult(exit_code=code, reason=reason, assessment=assessment, lifecycle=lifecycle,
                     report_dir=folder, as_of=as_of, written=written)


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
FAULT_ENV = "GISGRID_FAULT"


def _fault(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        msg = f"fault injected at the start of stage {step!r} ({FAULT_ENV})"
        raise RuntimeError(msg)


def write_crash_log(command: str, exc: BaseException, folder: str | os.PathLike[str] | None) -> Path:
    """Write the traceback of an unexpected error where the operator will look, and return the file.

    ``folder`` (the run's ``--out``) when it can be written, else the system's temporary folder.
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


def _write_layers(folder: Path, assessment: Any) -> list[Path]:
    """Sensitive sections, checkpoints, river reaches and cross-boundary sections beside the findings."""
    out: list[Path] = []
    resp = assessment.responsibility
    layers = {"sensitive": assessment.sensitive, "reaches": getattr(resp, "reaches", None),
              "cross_sections": getattr(resp, "cross_sections", None)}
    for name, layer in layers.items():
        if layer is not None:
            out.append(io.write_geojson(layer, folder / f"{name}.geojson"))
    if assessment.checkpoints is not None:
        out.append(io.write_csv(assessment.checkpoints, folder / "checkpoints.csv"))
    return out


def _with_lifecycle(assessment: Any, lifecycle: Any) -> Any:
    """The assessment with findings carrying their deadline and status (for task lists)."""
    import copy

    cols = [c for c in ("finding_id", "status", "first_seen", "deadline") if c in lifecycle.columns]
    merged = assessment.findings.merge(pd.DataFrame(lifecycle[cols]), on="finding_id", how="left")
    out = copy.copy(assessment)
    out.findings = merged
    return out


def _validate_rules(cfg: Config) -> None:
    from gisgrid.checks.sensitive import parse_rules

    parse_rules(cfg.sections.get("rules"))


def make_maps(
    source: str | os.PathLike[str] | Config | None = None,
    *,
    out: str | os.PathLike[str] = ".",
    village: str | None = None,
    owner: str | None = None,
    basemap: str | None = None,
) -> list[Path]:
    """Analyse and write the command-center maps only (``maps/`` under ``out``)."""
    from gisgrid import maps as maps_mod

    check_output_folder(out, "maps")
    cfg = source if isinstance(source, Config) else load_config(source)
    _validate_rules(cfg)
    assessment = analyse_config(cfg)
    mcfg = cfg.section("maps")
    if village is not None and village not in set(assessment.town.villages["village_id"]):
        msg = f"no village with id {village!r}."
        raise ConfigError(msg, fix=f"use one of {sorted(assessment.town.villages['village_id'])[:10]} …")
    return maps_mod.write_maps(assessment, Path(out), basemap=basemap or mcfg.get("basemap", "osm"),
                               assets=mcfg.get("assets", "cdn"), tiles_url=mcfg.get("tiles_url"),
                               village=village, owner=owner)
