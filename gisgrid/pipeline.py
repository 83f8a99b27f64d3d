"""One function per job: load, analyse, write.

The CLI is a thin shell over these; a scheduler or a notebook can call them
directly. ``load_town`` turns a config file (or a GeoPackage with the
canonical layer names, or nothing: the embedded demo town) into a validated
:class:`~gisgrid.model.Town`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyogrio

from gisgrid import io
from gisgrid._errors import ConfigError, SchemaError
from gisgrid.model import LAYERS, ROSTERS, Town

__all__ = ["Config", "check", "load_config", "load_town", "write_demo"]

logger = logging.getLogger(__name__)

_SOURCE_KEYS = {"path", "layer", "crs", "encoding", "fields", "values", "sheet"}
_TOP_KEYS = {"town", "sources", "rules", "report", "owners", "history", "assign", "maps"}
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


def load_config(source: str | os.PathLike[str] | None = None) -> Config:
    """Read a config file, a folder holding ``gisgrid.toml``, a GeoPackage, or nothing (the demo town).

    Parameters
    ----------
    source
        Path of a ``.toml`` config, a folder with a ``gisgrid.toml``, a
        ``.gpkg`` with the canonical layer names, or None.

    Returns
    -------
    Config
    """
    if source is None:
        return Config(demo=True)
    p = Path(source)
    if p.is_dir():
        cand = p / "gisgrid.toml"
        if not cand.exists():
            msg = "the folder has no gisgrid.toml."
            raise ConfigError(msg, path=p, fix="give the config file's path, or run `gisgrid demo --out DIR` for an example")
        p = cand
    if p.suffix.lower() == ".gpkg":
        return _gpkg_config(p)
    return _parse_config(io.read_config(p))


def _gpkg_config(path: Path) -> Config:
    if not path.exists():
        msg = "the file does not exist."
        raise ConfigError(msg, path=path, fix="check the path")
    try:
        names = {str(n) for n in pyogrio.list_layers(path)[:, 0]}
    except Exception as exc:  # noqa: BLE001 - any driver failure means unreadable
        msg = f"cannot be opened as a GeoPackage ({type(exc).__name__}: {exc})."
        raise ConfigError(msg, path=path, fix="check the file is complete; copy it again or re-export it") from None
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
    for col, mapping in (spec.get("values") or {}).items():
        if col in out.columns:
            out[col] = out[col].map(lambda v, m=mapping: m.get(str(v).strip(), v) if v is not None else v)
    out.attrs = {"source": src}
    return out


def _read_source(name: str, spec: dict[str, Any]) -> Any:
    if name in ROSTERS:
        frame = io.read_table(spec["path"], encoding=spec.get("encoding"), sheet=spec.get("sheet"))
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
    """Load and validate only; return the town and its per-layer table."""
    town = load_town(source)
    return town, town.layer_table()


def write_demo(out: str | os.PathLike[str], *, scale: str = "town") -> list[Path]:
    """Write the synthetic demo data set (GeoPackage, GBK CSV and XLSX rosters, gisgrid.toml) to ``out``."""
    from gisgrid.demo import make_demo

    demo = make_demo(scale=scale)
    folder = Path(out)
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
