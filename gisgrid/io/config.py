"""The config file, parsed once into typed options.

``gisgrid.toml`` is read and checked here, section by section, so that
``gisgrid check`` refuses exactly what ``gisgrid run`` would: an unknown key
anywhere gets one did-you-mean (:func:`unknown_keys`), a bad value names the
section, the key and the fix. The sections a check owns (``[rules]``,
``[assign]``) and the thresholds (``[report] fail_on``) are kept as tables
here and parsed by their owners (:func:`gisgrid.checks.sensitive.parse_rules`,
:func:`gisgrid.checks.responsibility.resolve_options`,
:func:`gisgrid.policy.check_thresholds`); :func:`gisgrid.pipeline.validate`
runs all of them for both commands.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gisgrid._errors import ConfigError
from gisgrid.io.files import list_layers, read_config
from gisgrid.io.postgis import DB_KEYS, check_source, check_url
from gisgrid.vocab import KINDS, SEVERITIES, nearest

__all__ = [
    "LAYER_SOURCES",
    "ROSTER_SOURCES",
    "SOURCE_NAMES",
    "TRACK_SOURCES",
    "Config",
    "CoverageOptions",
    "HistoryOptions",
    "MapOptions",
    "ReportOptions",
    "ScoringOptions",
    "describe_config",
    "find_config",
    "load_config",
    "parse_config",
    "unknown_keys",
]

#: The layers and rosters a config can name under ``[sources.NAME]``.
LAYER_SOURCES: tuple[str, ...] = ("boundary", "villages", "grids", "roads", "rivers", "pois")
ROSTER_SOURCES: tuple[str, ...] = ("grid_staff", "river_chiefs")
SOURCE_NAMES: tuple[str, ...] = (*LAYER_SOURCES, *ROSTER_SOURCES)
#: GPS tracks (not part of the Town: streamed by :mod:`gisgrid.io.tracks` when the patrols are judged).
TRACK_SOURCES: tuple[str, ...] = ("patrols",)
_TRACK_KEYS = ("path", "crs", "encoding", "fields", "timezone", "person_from")
_SOURCE_KEYS = ("path", "layer", "crs", "encoding", "fields", "values", "defaults", "sheet", "allow_empty",
                *DB_KEYS)
_SECTIONS = ("town", "sources", "coverage", "rules", "report", "history", "assign", "maps", "scoring", "dispatch",
             "patrols",
             "publish")
_TOWN_KEYS = ("name", "crs")


def unknown_keys(given: Iterable[str], known: Iterable[str], *, where: str, path: Path | None = None,
                 what: str = "key") -> None:
    """Refuse keys that are not in ``known``, suggesting the nearest one (the one did-you-mean of the config).

    Raises
    ------
    ConfigError
        Naming the section, the unknown key(s), the nearest known key and the keys allowed.
    """
    known = list(known)
    bad = sorted(str(k) for k in given if k not in known)
    if not bad:
        return
    close = nearest(bad, known)
    hint = f"did you mean {close!r}? " if close else ""
    msg = f"{where} has unknown {what}(s) {bad}."
    raise ConfigError(msg, path=path, fix=f"{hint}use only {sorted(known)}")


def _table(value: Any, where: str, path: Path | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"{where} must be a table, not {value!r}."
        raise ConfigError(msg, path=path, fix=f"write it as a {where} section or an inline table {{ ... }}")
    return dict(value)


def _metres(value: Any, where: str, path: Path | None, example: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        msg = f"{where} must be a number of metres >= 0, not {value!r}."
        raise ConfigError(msg, path=path, fix=f"write {example}")
    return float(value)


def _flag(value: Any, where: str, path: Path | None, example: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    msg = f"{where} must be true or false, not {value!r}."
    raise ConfigError(msg, path=path, fix=f"write {example}")


@dataclass(frozen=True)
class CoverageOptions:
    """``[coverage]``: the digitising tolerance, the cleaned-grids proposal, the geometry threads.

    ``outside_town``: whether what lies outside the town is reported (it is always counted).
    """

    tolerance_m: float | None = None  # None: settings.tolerance_m
    cleaned_grids: bool = True
    workers: int | None = None  # None: settings.workers
    outside_town: bool = True

    @classmethod
    def parse(cls, table: Mapping[str, Any], path: Path | None = None) -> CoverageOptions:
        """Check and type the ``[coverage]`` table (raises :class:`~gisgrid.ConfigError`)."""
        unknown_keys(table, ("tolerance_m", "cleaned_grids", "workers", "outside_town"), where="[coverage]",
                     path=path)
        tol = table.get("tolerance_m")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol)
                                or tol < 0):
            msg = f"[coverage] tolerance_m must be a number of metres >= 0, not {tol!r}."
            raise ConfigError(msg, path=path,
                              fix="write tolerance_m = 2.0 (0 for exact geometry: no digitising noise)")
        cleaned = table.get("cleaned_grids", True)
        if not isinstance(cleaned, bool):
            msg = f"[coverage] cleaned_grids must be true or false, not {cleaned!r}."
            raise ConfigError(msg, path=path, fix="write cleaned_grids = false to skip the cleaned-grids proposal")
        workers = table.get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            msg = f"[coverage] workers must be a whole number >= 1, not {workers!r}."
            raise ConfigError(msg, path=path, fix="write workers = 2, or leave it out for one thread per CPU")
        outside = _flag(table.get("outside_town"), "[coverage] outside_town", path,
                        "outside_town = false to count, but not report, what lies outside the town")
        return cls(tolerance_m=None if tol is None else float(tol), cleaned_grids=cleaned, workers=workers,
                   outside_town=True if outside is None else outside)

    def as_dict(self) -> dict[str, Any]:
        """The options as the 0.1 ``coverage_options`` dict."""
        return {"tolerance_m": self.tolerance_m, "cleaned_grids": self.cleaned_grids, "workers": self.workers,
                "outside_town": self.outside_town}


@dataclass(frozen=True)
class ReportOptions:
    """``[report]``: thresholds of the exit status, deadlines per severity, the sliver area."""

    fail_on: dict[str, Any] = field(default_factory=dict)  # checked by gisgrid.policy.check_thresholds
    deadlines: dict[str, Any] = field(default_factory=dict)  # checked by gisgrid.policy.deadline_days
    sliver_area_m2: float | None = None

    @classmethod
    def parse(cls, table: Mapping[str, Any], path: Path | None = None) -> ReportOptions:
        """Check and type the ``[report]`` table (raises :class:`~gisgrid.ConfigError`)."""
        unknown_keys(table, ("fail_on", "deadlines", "sliver_area_m2"), where="[report]", path=path)
        return cls(fail_on=_table(table.get("fail_on"), "[report] fail_on", path),
                   deadlines=_table(table.get("deadlines"), "[report] deadlines", path),
                   sliver_area_m2=_metres(table.get("sliver_area_m2"), "[report] sliver_area_m2", path,
                                          "sliver_area_m2 = 1.0"))


#: ``[maps] assets`` modes (as ``gisgrid.maps.ASSETS``; a test holds them equal).
MAP_ASSETS: tuple[str, ...] = ("assets", "cdn", "inline")


@dataclass(frozen=True)
class MapOptions:
    """``[maps]``: basemap, where Leaflet comes from, a custom tile URL, which per-owner/village maps to draw."""

    basemap: str = "osm"
    assets: str = "assets"  # one shared maps/assets/ folder: the maps work offline
    tiles_url: str | None = None
    per_owner: bool | None = None
    per_village: bool | None = None

    @classmethod
    def parse(cls, table: Mapping[str, Any], path: Path | None = None) -> MapOptions:
        """Check and type the ``[maps]`` table (the values themselves are checked by the maps)."""
        unknown_keys(table, ("basemap", "assets", "tiles_url", "per_owner", "per_village"), where="[maps]", path=path)
        for key in ("basemap", "assets", "tiles_url"):
            if key in table and not isinstance(table[key], str):
                msg = f"[maps] {key} must be text, not {table[key]!r}."
                raise ConfigError(msg, path=path, fix=f'write {key} = "..." (see README)')
        assets = table.get("assets", "assets")
        if assets not in MAP_ASSETS:  # the same modes as gisgrid.maps.ASSETS (io does not import maps)
            close = nearest(assets, MAP_ASSETS)
            msg = f"[maps] assets = {assets!r} is not a mode."
            raise ConfigError(msg, path=path, fix=(f'did you mean assets = "{close}"? ' if close else "")
                              + 'use "assets" (default: a shared maps/assets/ folder, works offline), "cdn" or '
                              '"inline" (one self-contained file)')
        return cls(basemap=table.get("basemap", "osm"), assets=assets,
                   tiles_url=table.get("tiles_url"),
                   per_owner=_flag(table.get("per_owner"), "[maps] per_owner", path, "per_owner = false"),
                   per_village=_flag(table.get("per_village"), "[maps] per_village", path, "per_village = false"))


@dataclass(frozen=True)
class HistoryOptions:
    """``[history]``: where the run history lives.

    ``path``: a SQLite file (default: ``reports/history.sqlite`` under the output folder). ``url`` (and
    optionally ``schema``): a PostgreSQL database instead, for towns whose runs happen on different machines;
    the schema defaults to ``gisgrid_history_<town name>`` (see :func:`gisgrid.history.default_schema`).
    """

    path: Path | None = None
    url: str | None = None
    schema: str | None = None

    @classmethod
    def parse(cls, table: Mapping[str, Any], base: Path | None, path: Path | None = None) -> HistoryOptions:
        """Check and type the ``[history]`` table; a relative path is relative to the config file."""
        unknown_keys(table, ("path", "url", "schema"), where="[history]", path=path)
        if "url" in table:
            if "path" in table:
                msg = "[history] has both path (a SQLite file) and url (PostgreSQL); the history lives in one place."
                raise ConfigError(msg, path=path, fix="keep one of them")
            try:
                url = check_url(table["url"], where="[history] url")
            except ConfigError as exc:
                raise ConfigError(exc.what, path=path, fix=exc.fix) from None
            schema = table.get("schema")
            if schema is not None and (not isinstance(schema, str) or not schema.strip()
                                       or len(schema.encode()) > 63 or "\x00" in schema):
                msg = f"[history] schema must be a PostgreSQL schema name of 1 to 63 bytes, not {schema!r}."
                raise ConfigError(msg, path=path, fix='write schema = "history_t01" (one per town)')
            return cls(url=url, schema=schema)
        if "schema" in table:
            msg = "[history] schema is for a history in PostgreSQL, and there is no [history] url."
            raise ConfigError(msg, path=path, fix='add url = "postgresql:///gis", or remove schema')
        if "path" not in table:
            return cls()
        if not isinstance(table["path"], str) or not table["path"].strip():
            msg = f"[history] path must be a file name, not {table['path']!r}."
            raise ConfigError(msg, path=path, fix='write path = "history.sqlite"')
        _check_path_text(table["path"], "[history] path", path)
        p = Path(table["path"])
        return cls(path=p if p.is_absolute() or base is None else base / p)


#: ``[scoring]`` keys, period kinds and tie-break keys (as ``gisgrid.scoring``; a test holds them equal).
SCORING_KEYS: tuple[str, ...] = ("base", "period", "red", "yellow", "red_min", "yellow_below", "share_ties",
                                 "veto_yellow", "overdue", "reopened", "fixed_credit", "credit_cap", "tie_break",
                                 "trend", "kinds", "severity", "unlisted")
SCORING_PERIODS: tuple[str, ...] = ("month", "quarter", "year")
SCORING_TIE_BREAKS: tuple[str, ...] = ("veto", "overdue", "reopened", "fixed_on_time", "hygiene")
_KIND_RULE_KEYS = ("points", "per", "cap")


def _number(value: Any, where: str, path: Path | None, example: str, *, minimum: float | None = 0.0,
            whole: bool = False) -> float:
    """A finite number (>= ``minimum``; a whole one when ``whole``), or a ConfigError naming ``where``."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (not whole or float(value).is_integer())
    if not ok:
        what = "a whole number" if whole else "a number"
        msg = f"{where} must be {what}{'' if minimum is None else f' >= {minimum:g}'}, not {value!r}."
        raise ConfigError(msg, path=path, fix=f"write {example}")
    return float(value)


@dataclass(frozen=True)
class ScoringOptions:
    """``[scoring]``: the 测评体系 as the config sets it (None: the shipped value of :class:`gisgrid.scoring.Scheme`).

    ``kinds`` maps a finding kind to ``{points, per, cap}`` (each key optional, over the shipped rule);
    ``severity`` maps a severity to its extra points, ``unlisted`` to the points of a kind with no rule.
    """

    base: float | None = None
    period: str | None = None
    red: int | None = None
    yellow: int | None = None
    red_min: float | None = None
    yellow_below: float | None = None
    share_ties: bool | None = None
    veto_yellow: bool | None = None
    overdue: float | None = None
    reopened: float | None = None
    fixed_credit: float | None = None
    credit_cap: float | None = None
    tie_break: tuple[str, ...] | None = None
    trend: int | None = None
    kinds: dict[str, dict[str, float]] = field(default_factory=dict)
    severity: dict[str, float] = field(default_factory=dict)
    unlisted: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, table: Mapping[str, Any], path: Path | None = None) -> ScoringOptions:
        """Check and type the ``[scoring]`` table (raises :class:`~gisgrid.ConfigError`)."""
        unknown_keys(table, SCORING_KEYS, where="[scoring]", path=path)
        values: dict[str, Any] = {}
        for key in ("base", "overdue", "reopened", "fixed_credit", "credit_cap"):
            if key in table:
                values[key] = _number(table[key], f"[scoring] {key}", path, f"{key} = 2")
        for key in ("red_min", "yellow_below"):
            if key in table:
                values[key] = _number(table[key], f"[scoring] {key}", path, f"{key} = 90", minimum=None)
        for key, least in (("red", 0), ("yellow", 0), ("trend", 1)):
            if key in table:
                values[key] = int(_number(table[key], f"[scoring] {key}", path, f"{key} = 3", minimum=least,
                                          whole=True))
        for key in ("share_ties", "veto_yellow"):
            if key in table:
                values[key] = _flag(table[key], f"[scoring] {key}", path, f"{key} = true")
        if "period" in table:
            if table["period"] not in SCORING_PERIODS:
                close = nearest(str(table["period"]), SCORING_PERIODS)
                msg = f"[scoring] period = {table['period']!r} is not a period."
                raise ConfigError(msg, path=path, fix=(f'did you mean period = "{close}"? ' if close else "")
                                  + f"use one of {list(SCORING_PERIODS)}")
            values["period"] = table["period"]
        if "tie_break" in table:
            keys = table["tie_break"]
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                msg = f"[scoring] tie_break must be a list of names, not {keys!r}."
                raise ConfigError(msg, path=path, fix=f"write tie_break = {list(SCORING_TIE_BREAKS)}")
            unknown_keys(keys, SCORING_TIE_BREAKS, where="[scoring] tie_break", path=path, what="name")
            values["tie_break"] = tuple(keys)
        kinds = _table(table.get("kinds"), "[scoring] kinds", path)
        unknown_keys(kinds, KINDS, where="[scoring] kinds", path=path, what="finding kind")
        rules: dict[str, dict[str, float]] = {}
        for kind, rule in kinds.items():
            where = f"[scoring] kinds.{kind}"
            rule = _table(rule, where, path)
            unknown_keys(rule, _KIND_RULE_KEYS, where=where, path=path)
            rules[kind] = {k: _number(v, f"{where} {k}", path, f"{kind} = {{ points = 0.5, per = 100, cap = 10 }}")
                           for k, v in rule.items()}
        severity = _table(table.get("severity"), "[scoring] severity", path)
        unknown_keys(severity, SEVERITIES, where="[scoring] severity", path=path, what="severity")
        points = {k: _number(v, f"[scoring] severity.{k}", path, "severity = { veto = 10 }")
                  for k, v in severity.items()}
        unlisted = _table(table.get("unlisted"), "[scoring] unlisted", path)
        unknown_keys(unlisted, SEVERITIES, where="[scoring] unlisted", path=path, what="severity")
        other = {k: _number(v, f"[scoring] unlisted.{k}", path, "unlisted = { high = 1 }") for k, v in unlisted.items()}
        return cls(**values, kinds=rules, severity=points, unlisted=other)


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
        Every other top-level table, as written (``rules``, ``report``, ``history``, ``assign``,
        ``maps``, ``coverage``).
    coverage, report, maps, history
        The typed options of those sections.
    demo : bool
        True for the embedded demo town (no config file).
    """

    path: Path | None = None
    town: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    demo: bool = False
    coverage: CoverageOptions = field(default_factory=CoverageOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    maps: MapOptions = field(default_factory=MapOptions)
    history: HistoryOptions = field(default_factory=HistoryOptions)
    scoring: ScoringOptions = field(default_factory=lambda: ScoringOptions())

    def section(self, name: str) -> dict[str, Any]:
        """Return a top-level table as written (empty dict when absent)."""
        return dict(self.sections.get(name) or {})


def _check_path_text(value: Any, where: str, path: Path | None) -> None:
    r"""Refuse a path that TOML turned into control characters: ``".\town.gpkg"`` in double quotes holds a tab."""
    text = str(value)
    if any(ch in text for ch in "\t\n\r\b\f"):
        shown = text.encode("unicode_escape").decode("ascii")
        msg = f"{where} {shown!r} holds a control character: in TOML double quotes a backslash starts an escape."
        raise ConfigError(msg, path=path, fix="write Windows paths with forward slashes (./town.gpkg), in single "
                                              "quotes ('.\\town.gpkg') or with doubled backslashes")


def _parse_config(data: dict[str, Any]) -> Config:
    path = Path(data.pop("_path"))
    base = Path(data.pop("_dir"))
    unknown_keys(data, _SECTIONS, where="the config", path=path, what="section")
    town = _table(data.get("town"), "[town]", path)
    unknown_keys(town, _TOWN_KEYS, where="[town]", path=path)
    sources_in = data.get("sources") or {}
    if not isinstance(sources_in, dict) or not sources_in:
        msg = "no [sources.NAME] tables."
        raise ConfigError(msg, path=path, fix="add [sources.villages] and [sources.grids] at least (see README)")
    sources: dict[str, dict[str, Any]] = {}
    for name, spec in sources_in.items():
        where = f"[sources.{name}]"
        if name in TRACK_SOURCES and isinstance(spec, dict):  # a file or a folder of tracks, read in batches
            if "path" not in spec:
                msg = f"{where} has no path."
                raise ConfigError(msg, path=path,
                                  fix=f'add path = "tracks/" (a folder of GPX files, or a CSV of fixes) under {where}')
            unknown_keys(spec, _TRACK_KEYS, where=where, path=path)
            _check_path_text(spec["path"], f"{where} path", path)
            if "fields" in spec and not isinstance(spec["fields"], dict):
                msg = f"{where} fields must be a table."
                raise ConfigError(msg, path=path,
                                  fix='write fields = { person_id = "人员编号", timestamp = "定位时间" }')
            sources[name] = {**spec, "path": str((base / str(spec["path"])).resolve())}
            continue
        if name not in SOURCE_NAMES:
            close = nearest(str(name), (*SOURCE_NAMES, *TRACK_SOURCES))
            hint = f"did you mean [sources.{close}]? " if close else ""
            msg = f"unknown source {where}."
            raise ConfigError(msg, path=path, fix=f"{hint}use one of {[*SOURCE_NAMES, *TRACK_SOURCES]}")
        if not isinstance(spec, dict) or ("path" not in spec and "url" not in spec):
            msg = f"{where} has no path."
            raise ConfigError(msg, path=path, fix=f'add path = "file.gpkg" (or url = "postgresql:///db" and table = '
                                                  f'"schema.table") under {where}')
        unknown_keys(spec, _SOURCE_KEYS, where=where, path=path)
        check_source(spec, where=where, path=path)  # a PostGIS source: url with table or sql
        if "path" in spec:
            _check_path_text(spec["path"], f"{where} path", path)
        for key in ("fields", "values", "defaults"):
            if key in spec and not isinstance(spec[key], dict):
                msg = f"{where} {key} must be a table."
                raise ConfigError(msg, path=path, fix=f'write {key} = {{ canonical = "yours" }}')
        bad = {k: v for k, v in (spec.get("defaults") or {}).items() if not isinstance(v, str) or not v.strip()}
        if bad:
            msg = f"{where} defaults must be text, not {bad}."
            raise ConfigError(msg, path=path, fix='write defaults = { road_class = "lane" }')
        if "allow_empty" in spec and not isinstance(spec["allow_empty"], bool):
            msg = f"{where} allow_empty must be true or false, not {spec['allow_empty']!r}."
            raise ConfigError(msg, path=path, fix="write allow_empty = true if the layer is empty on purpose")
        entry = dict(spec)
        if "path" in spec:
            entry["path"] = str((base / str(spec["path"])).resolve())
        sources[name] = entry
    for req in ("villages", "grids"):
        if req not in sources:
            msg = f"[sources.{req}] is missing."
            raise ConfigError(msg, path=path, fix=f"add [sources.{req}] with the path of your {req} layer")
    sections = {k: v for k, v in data.items() if k not in {"town", "sources"}}
    for name, value in sections.items():
        _table(value, f"[{name}]", path)
    return Config(path=path, town=town, sources=sources, sections=sections,
                  coverage=CoverageOptions.parse(_table(sections.get("coverage"), "[coverage]", path), path),
                  report=ReportOptions.parse(_table(sections.get("report"), "[report]", path), path),
                  maps=MapOptions.parse(_table(sections.get("maps"), "[maps]", path), path),
                  history=HistoryOptions.parse(_table(sections.get("history"), "[history]", path), base, path),
                  scoring=ScoringOptions.parse(_table(sections.get("scoring"), "[scoring]", path), path))


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
    return _parse_config(read_config(p))


def parse_config(data: Mapping[str, Any]) -> Config:
    """A config from a table as :func:`read_config` returns it (with ``_path`` and ``_dir``), every section checked.

    What :func:`load_config` does after reading the file; a district of shared layers
    (:mod:`gisgrid.district.partition`) parses its town sections with it.
    """
    return _parse_config(dict(data))


def _gpkg_config(path: Path) -> Config:
    if not path.exists():
        msg = "the file does not exist."
        raise ConfigError(msg, path=path, fix="check the path")
    names = set(list_layers(path))  # a damaged or truncated file is an InputError naming it
    sources = {n: {"path": str(path.resolve()), "layer": n} for n in SOURCE_NAMES if n in names}
    for n in ROSTER_SOURCES:
        if n in sources:
            sources[n]["sheet"] = sources[n].pop("layer")
    for req in ("villages", "grids"):
        if req not in sources:
            msg = f"has no '{req}' layer (it has {sorted(names)})."
            raise ConfigError(msg, path=path, layer=req, fix="name the layers boundary, villages, grids, roads, "
                              "rivers, pois, grid_staff, river_chiefs, or write a gisgrid.toml that maps yours")
    return Config(path=path, sources=sources)
