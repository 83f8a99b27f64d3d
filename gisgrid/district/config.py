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

Every key is checked; a typo is refused with a did-you-mean, before any town runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gisgrid import io, settings
from gisgrid._errors import ConfigError
from gisgrid.vocab import nearest

__all__ = ["SCHEDULERS", "DistrictConfig", "TownEntry", "is_district", "load_district"]

#: The named schedulers; anything else must be a ``tcp://`` (or ``tls://``) address of a running scheduler.
SCHEDULERS: tuple[str, ...] = ("local", "threads", "sync")
_TOP = ("district", "towns", "compute", "checks", "scoring")
_KEYS = {
    "district": ("name", "boundary"),
    "towns": ("config", "id", "name"),
    "compute": ("scheduler", "workers", "retries", "maps"),
    "checks": ("tolerance_m", "owner", "border_roads", "border_road_m"),
}


@dataclass(frozen=True)
class TownEntry:
    """One town of the district: its id (the folder of its outputs) and its config file."""

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
    _refuse_unknown(data, _TOP, "the file", path)
    district = data.get("district", {})
    compute = data.get("compute", {})
    checks = data.get("checks", {})
    for name, table in (("district", district), ("compute", compute), ("checks", checks)):
        if not isinstance(table, dict):
            msg = f"[{name}] must be a table."
            raise ConfigError(msg, path=path, fix=f"write it as a [{name}] section")
        _refuse_unknown(table, _KEYS[name], f"[{name}]", path)
    towns_raw = data.get("towns", [])
    if not isinstance(towns_raw, list) or not towns_raw:
        msg = "the district lists no towns."
        raise ConfigError(msg, path=path, fix='add one [[towns]] table per town with config = "town/gisgrid.toml"')
    towns: list[TownEntry] = []
    for k, entry in enumerate(towns_raw, start=1):
        if not isinstance(entry, dict) or "config" not in entry:
            msg = f"[[towns]] number {k} has no config."
            raise ConfigError(msg, path=path, fix='give it config = "path/to/gisgrid.toml"')
        _refuse_unknown(entry, _KEYS["towns"], f"[[towns]] number {k}", path)
        cfg = (base / str(entry["config"])).resolve()
        if cfg.is_dir():
            cfg = cfg / "gisgrid.toml"
        tid = str(entry.get("id") or cfg.parent.name)
        if io.safe_filename(tid) != tid:
            msg = f"town id {tid!r} cannot be a folder name."
            raise ConfigError(msg, path=path, fix="give the town an id of letters, digits, - and _")
        towns.append(TownEntry(id=tid, config=cfg, name=entry.get("name")))
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
                          border_road_m=float(road_m), scoring=dict(scoring))
