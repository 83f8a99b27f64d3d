"""The district config (``district.toml``): its towns, its boundary, where the towns run, the district checks.

::

    [district]
    name = "通东区"
    boundary = { path = "district.gpkg", layer = "district" }   # optional: land in no town is judged in it

    [[towns]]
    config = "towns/T01/gisgrid.toml"    # each town's own config, relative to this file
    id = "T01"                           # optional: the folder name of its outputs (default: the config's folder)

    [compute]
    scheduler = "local"    # "local" (a LocalCluster sized to the machine), "threads", "sync" or "tcp://host:8786"
    workers = 2            # local: worker processes (default: one per core); threads: threads
    retries = 2            # a town whose worker died is run again this many times

    [checks]
    tolerance_m = 3.0      # town borders: the same hand-digitising tolerance as the town checks
    owner = "district"     # who answers for land in no town / in two towns (the district's 区网格中心)
    border_roads = "both"  # a road on a town border: "both", "lower_id" or "longer" (who has more of it)
    border_road_m = 200.0  # that much of a road within 5 m of a shared border makes it a border road

    [scoring]              # the town ranking: the same scheme and keys as a town's [scoring]

Or, for shared layers with a town column, ``[district] partition_by = "town_id"``, the ``[sources.NAME]``
tables and town sections of a town config once for every town, and ``[[towns]]`` with ``id`` (a value of the
column) and ``name`` (:mod:`gisgrid.district.partition`).

Every key is checked; a typo is refused with a did-you-mean, before any town runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gisgrid import io, settings
from gisgrid._errors import ConfigError
from gisgrid.district.partition import Partition, split
from gisgrid.io.config import SOURCE_NAMES, parse_config
from gisgrid.vocab import nearest

__all__ = ["SCHEDULERS", "DistrictConfig", "TownEntry", "is_district", "load_district"]

#: The named schedulers; anything else must be a ``tcp://`` (or ``tls://``) address of a running scheduler.
SCHEDULERS: tuple[str, ...] = ("local", "threads", "sync")
#: A town config's sections that a district of shared layers (``partition_by``) writes once for every town.
TOWN_SECTIONS: tuple[str, ...] = ("town", "sources", "coverage", "rules", "report", "assign", "maps")
#: A town config's sections that a district of shared layers cannot share (yet), and why.
_NOT_SHARED = {
    "history": "each town keeps its own history (towns/<id>/reports/history.sqlite, or with [history] url one "
               "PostgreSQL schema per town, gisgrid_history_<town id>)",
    "dispatch": "a district run sends no messages (run gisgrid dispatch on a town's output folder)",
    "publish": "a district run does not publish to PostGIS yet",
    "patrols": "patrol tracks are not split by town yet",
}
_TOP = ("district", "towns", "compute", "checks", "scoring")
_KEYS = {
    "district": ("name", "boundary", "partition_by"),
    "towns": ("config", "id", "name"),
    "compute": ("scheduler", "workers", "retries", "maps"),
    "checks": ("tolerance_m", "owner", "border_roads", "border_road_m"),
}


@dataclass(frozen=True)
class TownEntry:
    """One town of the district: its id (the folder of its outputs) and its config file.

    In a district of shared layers (``partition_by``) the id is the town's value in the town column and
    ``config`` the district config.
    """

    id: str
    config: Path
    name: str | None = None


@dataclass(frozen=True)
class DistrictConfig:
    """A parsed ``district.toml``.

    Attributes
    ----------
    path : Path
    name : str
    towns : list of TownEntry
    boundary : dict or None
        ``path`` (absolute) and ``layer`` of the district boundary.
    scheduler : str
    workers : int or None
    retries : int
    maps : bool
        Write each town's maps (the district map is written either way).
    tolerance_m : float
    owner : str
    scoring : dict
        The ``[scoring]`` table as written (parsed by :func:`gisgrid.scoring` like a town's).
    partition : Partition or None
        Shared layers split by a town column (``[district] partition_by``); None when each town has its own
        config.
    """

    path: Path
    name: str
    towns: list[TownEntry]
    boundary: dict[str, Any] | None = None
    scheduler: str = "local"
    workers: int | None = None
    retries: int = 2
    maps: bool = True
    tolerance_m: float = settings.tolerance_m
    owner: str = "区网格化服务管理中心 district grid center"
    border_roads: str = "both"
    border_road_m: float = 200.0
    scoring: dict[str, Any] = field(default_factory=dict)
    partition: Partition | None = None


def is_district(source: str | os.PathLike[str] | None) -> bool:
    """True when ``source`` is a TOML file with ``[[towns]]`` or ``[district]`` (a district config)."""
    if source is None:
        return False
    p = Path(source)
    if p.is_dir():
        p = p / "district.toml"
    if p.suffix.lower() != ".toml" or not p.is_file():
        return False
    try:
        data = io.read_config(p)
    except ConfigError:
        return False  # the town parser says what is wrong with it
    return "towns" in data or "district" in data


def _refuse_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str, path: Path) -> None:
    for key in table:
        if key.startswith("_") and where == "the file":
            continue
        if key not in allowed:
            close = nearest(key, allowed)
            msg = f"{where} has an unknown key {key!r}."
            raise ConfigError(msg, path=path, fix=(f"did you mean {close!r}? " if close else "")
                              + f"the keys are {list(allowed)}")


def load_district(source: str | os.PathLike[str]) -> DistrictConfig:
    """Read and check a district config (a file, or a folder holding ``district.toml``).

    Raises
    ------
    ConfigError
        A missing file, an unknown key (with a did-you-mean), no towns, a town config that does not exist,
        two towns with one id, a bad scheduler.
    """
    p = Path(source)
    if p.is_dir():
        p = p / "district.toml"
    data = io.read_config(p)
    path = Path(data["_path"])
    base = Path(data["_dir"])
    _refuse_unknown(data, (*_TOP, *TOWN_SECTIONS, *_NOT_SHARED), "the file", path)
    district = data.get("district", {})
    compute = data.get("compute", {})
    checks = data.get("checks", {})
    for name, table in (("district", district), ("compute", compute), ("checks", checks)):
        if not isinstance(table, dict):
            msg = f"[{name}] must be a table."
            raise ConfigError(msg, path=path, fix=f"write it as a [{name}] section")
        _refuse_unknown(table, _KEYS[name], f"[{name}]", path)
    partition = None
    if "partition_by" in district:
        partition, towns = _shared_towns(data, district["partition_by"], path)
    else:
        towns = _config_towns(data, path, base)
    ids = [t.id for t in towns]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        msg = f"two towns have the id {dup[0]!r}."
        raise ConfigError(msg, path=path, fix="give each [[towns]] its own id")
    scheduler = str(compute.get("scheduler", "local"))
    if scheduler not in SCHEDULERS and "://" not in scheduler:
        close = nearest(scheduler, SCHEDULERS)
        msg = f"[compute] scheduler = {scheduler!r} is neither a scheduler name nor an address."
        raise ConfigError(msg, path=path, fix=(f'did you mean "{close}"? ' if close else "")
                          + f'use one of {list(SCHEDULERS)} or "tcp://host:8786"')
    workers = compute.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        msg = f"[compute] workers = {workers!r} is not a positive whole number."
        raise ConfigError(msg, path=path, fix="give workers = 2 (or leave it out: one per core)")
    retries = compute.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        msg = f"[compute] retries = {retries!r} is not a whole number >= 0."
        raise ConfigError(msg, path=path, fix="give retries = 2")
    tol = checks.get("tolerance_m", settings.tolerance_m)
    if not isinstance(tol, int | float) or tol < 0:
        msg = f"[checks] tolerance_m = {tol!r} is not a distance in metres."
        raise ConfigError(msg, path=path, fix="give tolerance_m = 3.0")
    rule = str(checks.get("border_roads", "both"))
    rules = ("both", "lower_id", "longer")
    if rule not in rules:
        close = nearest(rule, rules)
        msg = f"[checks] border_roads = {rule!r} is not a rule."
        raise ConfigError(msg, path=path,
                          fix=(f'did you mean "{close}"? ' if close else "") + f"use one of {list(rules)}")
    road_m = checks.get("border_road_m", 200.0)
    if not isinstance(road_m, int | float) or road_m <= 0:
        msg = f"[checks] border_road_m = {road_m!r} is not a length in metres."
        raise ConfigError(msg, path=path, fix="give border_road_m = 200")
    boundary = district.get("boundary")
    if boundary is not None:
        if isinstance(boundary, str):
            boundary = {"path": boundary}
        if not isinstance(boundary, dict) or "path" not in boundary:
            msg = "[district] boundary must name a file."
            raise ConfigError(msg, path=path, fix='give boundary = { path = "district.gpkg", layer = "district" }')
        boundary = {**boundary, "path": str((base / str(boundary["path"])).resolve())}
    scoring = data.get("scoring", {})
    return DistrictConfig(path=path, name=str(district.get("name", path.parent.name)), towns=towns,
                          boundary=boundary, scheduler=scheduler, workers=workers, retries=retries,
                          maps=bool(compute.get("maps", True)), tolerance_m=float(tol),
                          owner=str(checks.get("owner", DistrictConfig.owner)), border_roads=rule,
                          border_road_m=float(road_m), scoring=dict(scoring), partition=partition)


def _folder_id(tid: str, path: Path) -> str:
    if io.safe_filename(tid) != tid:
        msg = f"town id {tid!r} cannot be a folder name."
        raise ConfigError(msg, path=path, fix="give the town an id of letters, digits, - and _")
    return tid


def _config_towns(data: dict[str, Any], path: Path, base: Path) -> list[TownEntry]:
    """``[[towns]]`` of a district whose towns are their own configs."""
    shared = [k for k in (*TOWN_SECTIONS, *_NOT_SHARED) if k in data]
    if shared:
        msg = f"[{shared[0]}] belongs to a district of shared layers, and [district] has no partition_by."
        raise ConfigError(msg, path=path, fix='add partition_by = "town_id" under [district] (the column of your '
                          "shared layers that names each row's town), or move it into each town's gisgrid.toml")
    towns_raw = data.get("towns", [])
    if not isinstance(towns_raw, list) or not towns_raw:
        msg = "the district lists no towns."
        raise ConfigError(msg, path=path, fix='add one [[towns]] table per town with config = "town/gisgrid.toml", '
                          'or share layers with a town column ([district] partition_by, see docs/district.md)')
    towns: list[TownEntry] = []
    for k, entry in enumerate(towns_raw, start=1):
        if not isinstance(entry, dict) or "config" not in entry:
            msg = f"[[towns]] number {k} has no config."
            raise ConfigError(msg, path=path, fix='give it config = "path/to/gisgrid.toml"')
        _refuse_unknown(entry, _KEYS["towns"], f"[[towns]] number {k}", path)
        cfg = (base / str(entry["config"])).resolve()
        if cfg.is_dir():
            cfg = cfg / "gisgrid.toml"
        tid = _folder_id(str(entry.get("id") or cfg.parent.name), path)
        towns.append(TownEntry(id=tid, config=cfg, name=entry.get("name")))
    return towns


def _shared_towns(data: dict[str, Any], by: Any, path: Path) -> tuple[Partition, list[TownEntry]]:
    """The town sections and shared sources of a district with ``partition_by``, split by town (data read)."""
    from gisgrid.pipeline import validate

    if not isinstance(by, str) or not by.strip():
        msg = f"[district] partition_by = {by!r} is not a column name."
        raise ConfigError(msg, path=path, fix='write partition_by = "town_id" (the column, after each source\'s '
                          "fields mapping, that names a row's town)")
    history = data.get("history")
    if isinstance(history, dict) and set(history) == {"url"}:  # the one [history] the towns can share
        data = {k: v for k, v in data.items() if k != "history"}
    else:
        history = None
    for name, why in _NOT_SHARED.items():
        if name in data:
            msg = f"[{name}] cannot be shared by the towns of a district with partition_by: {why}."
            fix = ('keep only url = "postgresql://…" under [history] (each town gets its own schema), or remove '
                   "[history]") if name == "history" else f"remove [{name}] from the district config"
            raise ConfigError(msg, path=path, fix=fix)
    town = data.get("town", {})
    if not isinstance(town, dict):
        msg = "[town] must be a table."
        raise ConfigError(msg, path=path, fix='write [town] crs = "auto"')
    if "name" in town:
        msg = "[town] name cannot be shared by the towns of a district."
        raise ConfigError(msg, path=path, fix='name each town under [[towns]] (name = "东社镇"), or leave names to '
                          "the boundary layer's name column")
    _refuse_unknown(town, ("crs",), "[town]", path)
    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        msg = "a district with partition_by has no [sources.NAME] tables."
        raise ConfigError(msg, path=path, fix="add [sources.villages], [sources.grids] and the other shared layers "
                          "and rosters, as in a town's gisgrid.toml, each with the town column")
    for name, spec in sources.items():
        if name not in SOURCE_NAMES:
            close = nearest(str(name), SOURCE_NAMES)
            msg = (f"[sources.{name}] cannot be shared by town: patrol tracks are not split by town yet."
                   if name == "patrols" else f"unknown source [sources.{name}].")
            raise ConfigError(msg, path=path, fix=(f"did you mean [sources.{close}]? " if close else "")
                              + f"use {list(SOURCE_NAMES)}")
        if isinstance(spec, dict) and "url" in spec:
            msg = f"[sources.{name}] is a PostGIS table: a district cannot split one by town yet."
            raise ConfigError(msg, path=path, fix="give each town a gisgrid.toml whose source selects its rows "
                              "(sql = \"SELECT * FROM t WHERE 乡镇代码 = '320612101'\") and list them with [[towns]] "
                              "config, or export the shared table to a GeoPackage")
    towns_raw = data.get("towns")
    pairs = None
    if towns_raw is not None:
        if not isinstance(towns_raw, list):
            msg = "[[towns]] must be a list of tables."
            raise ConfigError(msg, path=path, fix='write [[towns]] id = "320612101" name = "东社镇" per town')
        pairs = []
        for k, entry in enumerate(towns_raw, start=1):
            if not isinstance(entry, dict):
                msg = f"[[towns]] number {k} is not a table."
                raise ConfigError(msg, path=path, fix='write [[towns]] id = "320612101" name = "东社镇"')
            if "config" in entry:
                msg = (f"[[towns]] number {k} has a config, but the district has partition_by: its towns are the "
                       f"values of {by}, not configs.")
                raise ConfigError(msg, path=path, fix=f'give it id = "<its value of {by}>" (and name), or remove '
                                  "partition_by to list town configs")
            _refuse_unknown(entry, ("id", "name"), f"[[towns]] number {k}", path)
            if "id" not in entry:
                msg = f"[[towns]] number {k} has no id."
                raise ConfigError(msg, path=path, fix=f'give it id = "<its value of {by}>"')
            pairs.append((entry["id"], entry.get("name")))
    table = {"_path": str(path), "_dir": str(path.parent), "town": town, "sources": sources,
             **{k: data[k] for k in (*TOWN_SECTIONS[2:], "scoring") if k in data},
             **({"history": history} if history else {})}
    base = parse_config(table)
    validate(base)  # [rules], [assign], thresholds, basemap, [scoring]: as a town's run would, before any town
    part = split(base, by.strip(), pairs)
    towns = [TownEntry(id=_folder_id(tid, path), config=path, name=name) for tid, name in part.towns]
    return part, towns
