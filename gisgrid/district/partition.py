"""Shared layers split by a town column: a district config with ``[district] partition_by``.

A district office that keeps one layer of each kind for all its towns, with a column saying which town each
row belongs to, writes the ``[sources.NAME]`` tables of a town config once, in ``district.toml``, and names
that column (its canonical name, after each source's ``fields`` mapping)::

    [district]
    name = "通东区"
    partition_by = "town_id"

    [sources.grids]
    path = "district_layers.gpkg"
    layer = "grids"
    fields = { town_id = "乡镇代码" }

    [[towns]]              # optional: the towns (values of the column) and their names; default every value found
    id = "320612101"
    name = "东社镇"

Before any town runs, :func:`split` reads the town column of every source (one attribute column, no
geometry), refuses a source that lacks it (a did-you-mean naming the layer) and records which rows belong to
which town. Each town is then :func:`town_config`: the district's town sections (``[coverage]``, ``[rules]``,
...) with every source cut to that town's rows (an :class:`gisgrid.io.Rows`: the rows' feature ids, so the
town's task reads only its own features, through the same post-read checks as any layer), run by
:func:`gisgrid.pipeline.run` like any town. Rows whose town is blank, or is not one of the district's towns,
are kept in :attr:`Partition.stray` and become ``town_unassigned`` findings (:func:`unassigned_findings`):
never dropped unseen.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

from gisgrid import io
from gisgrid._errors import ConfigError, GisgridError, SchemaError
from gisgrid.findings import make_findings
from gisgrid.io.config import ROSTER_SOURCES, Config
from gisgrid.vocab import nearest

__all__ = ["Partition", "digests", "split", "town_config", "unassigned_findings"]

logger = logging.getLogger(__name__)

#: The column that names a row in the messages about it (canonical; the source's own name is shown).
_SUBJECT = {"boundary": "name", "villages": "village_id", "grids": "grid_id", "roads": "road_id",
            "rivers": "river_id", "pois": "poi_id", "grid_staff": "name", "river_chiefs": "name"}
#: The sources whose values make the default list of towns (every town has villages and grids).
_TOWN_SOURCES = ("villages", "grids")
_SHOWN = 10


@dataclass(frozen=True, eq=False)
class Partition:
    """A district's shared sources, split by town.

    Attributes
    ----------
    by : str
        The town column (canonical, after each source's field mapping).
    base : Config
        The district's town sections and its shared sources, as one town config (no rows chosen).
    towns : list of (str, str or None)
        The towns: id (a value of the column) and name (None: the boundary's ``name``, else the id).
    shares : dict
        Source name -> town id -> the town's rows (:class:`gisgrid.io.Rows`).
    stray : DataFrame
        The rows of no town: ``source``, ``column`` (the source's own name), ``what`` (``"blank"`` or
        ``"unknown"``), ``value``, ``position``, ``fid``, ``subject`` (the row's own id or name).
    counts : DataFrame
        Rows per town (index) and source (columns).
    """

    by: str
    base: Config
    towns: list[tuple[str, str | None]]
    shares: dict[str, dict[str, io.Rows]] = field(default_factory=dict)
    stray: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)


def _where(name: str, spec: Mapping[str, Any]) -> str | None:
    return spec.get("layer") or spec.get("sheet") or (None if name in ROSTER_SOURCES else name)


def _column(name: str, spec: Mapping[str, Any], by: str) -> str:
    return str((spec.get("fields") or {}).get(by, by))


def _refuse_missing(name: str, spec: Mapping[str, Any], by: str, column: str, have: list[str]) -> None:
    fields = spec.get("fields") or {}
    what = "roster" if name in ROSTER_SOURCES else "layer"
    msg = f"the {name} {what} has no column '{column}' for partition_by = \"{by}\"; it has {have}."
    close_key = nearest(by, [str(k) for k in fields]) if by not in fields else None
    close = nearest(column, have)
    if close_key is not None:
        fix = (f'did you mean partition_by = "{close_key}"? ([sources.{name}] fields maps {close_key} to '
               f"'{fields[close_key]}')")
    elif close is not None:
        fix = f"did you mean '{close}'? map it under [sources.{name}]: fields = {{ {by} = \"{close}\" }}"
    else:
        fix = (f"add the town column to the {name} {what}, or name yours under [sources.{name}]: "
               f"fields = {{ {by} = \"乡镇代码\" }}")
    raise SchemaError(msg, path=spec["path"], layer=_where(name, spec), column=column, fix=fix)


def _scan(name: str, spec: Mapping[str, Any], by: str) -> pd.DataFrame:
    """Every row of a source: its position (index), ``fid``, town ``key`` (None: blank) and ``subject``."""
    from gisgrid.pipeline import _map_fields, town_key  # the mapping a town's run applies, applied here

    fields = spec.get("fields") or {}
    column = _column(name, spec, by)
    subject = str(fields.get(_SUBJECT[name], _SUBJECT[name]))
    wanted = [column] + ([subject] if subject != column else [])
    frame = io.read_values(spec["path"], wanted, layer=spec.get("sheet", spec.get("layer")),
                           encoding=spec.get("encoding"), table=name in ROSTER_SOURCES)
    if column not in frame.columns:
        _refuse_missing(name, spec, by, column, list(frame.attrs.get("columns", [])))
    values = spec.get("values") or {}
    mapping = values.get(by, values.get(column))
    town = frame[[column]].copy()
    town.attrs = {"source": {"path": spec["path"], "layer": _where(name, spec)}}
    mapped = _map_fields(town, name, {"fields": {by: column}, **({"values": {by: mapping}} if mapping else {})})
    codes, uniques = pd.factorize(mapped[by].astype(object), use_na_sentinel=True)  # each distinct value once
    keys = pd.Series([town_key(v) for v in uniques] + [None], dtype=object).to_numpy()[codes]  # -1: the None
    return pd.DataFrame({"fid": frame["fid"].to_numpy(), "key": keys,
                         "subject": frame[subject].to_numpy() if subject in frame.columns else None},
                        index=frame.index)


def _town_ids(towns: Sequence[tuple[Any, Any]] | None, found: set[str], path: Any) -> list[tuple[str, str | None]]:
    from gisgrid.pipeline import town_key

    if towns is None:
        return [(t, None) for t in sorted(found)]
    if not towns:
        msg = "towns = [] lists no town."
        raise ConfigError(msg, path=path, fix="remove it (every value of the town column is a town), or add "
                          '[[towns]] id = "320612101" per town')
    out = []
    for k, (value, name) in enumerate(towns, start=1):
        tid = town_key(value)
        if tid is None:
            msg = f"[[towns]] number {k} has no id."
            raise ConfigError(msg, path=path, fix='give it id = "320612101" (its value in the town column)')
        out.append((tid, None if name is None else str(name)))
    return out


def split(base: Config, by: str, towns: Sequence[tuple[Any, Any]] | None = None) -> Partition:
    """Read the town column of every source of ``base`` and split its rows by town (no geometry is read).

    Parameters
    ----------
    base
        The district's town sections and shared sources (:func:`gisgrid.io.config.parse_config`).
    by
        ``[district] partition_by``: the town column, after each source's field mapping.
    towns
        ``[[towns]]`` as (id, name) pairs; None: every value found in the villages and grids layers.

    Returns
    -------
    Partition

    Raises
    ------
    SchemaError
        A source without the town column (the did-you-mean names the layer and the nearest column).
    ConfigError
        A ``[[towns]]`` table without an id; no town found.
    """
    scans = {name: _scan(name, spec, by) for name, spec in base.sources.items()}
    found = {k for name in _TOWN_SOURCES if name in scans for k in scans[name]["key"].dropna()}
    chosen = _town_ids(towns, found, base.path)
    if not chosen:
        msg = f"no row of the villages or grids layer has a value in the town column ({by})."
        raise ConfigError(msg, path=base.path, fix=f"fill in the town column, or list the towns under [[towns]] "
                          f"with id = the value of {by}")
    ids = [t for t, _ in chosen]
    shares: dict[str, dict[str, io.Rows]] = {}
    stray: list[pd.DataFrame] = []
    counts: dict[str, pd.Series] = {}
    for name, scan in scans.items():
        spec = base.sources[name]
        column = _column(name, spec, by)
        gdal = name not in ROSTER_SOURCES and not str(spec["path"]).lower().endswith((".csv", ".txt"))
        groups = {str(k): g for k, g in scan.groupby("key", sort=False)}
        values = sorted(groups)
        shares[name] = {}
        for tid in ids:
            g = groups.get(tid)
            if g is None:
                close = nearest(tid, values)
                hint = (f"did you mean {close!r}?" if close else f"its values of {column} are "
                        f"{values[:8]}{' …' if len(values) > 8 else ''}")
                shares[name][tid] = io.Rows((), () if gdal else None, by=by, value=tid, column=column, hint=hint)
                continue
            shares[name][tid] = io.Rows(tuple(int(p) for p in g.index),
                                        tuple(int(f) for f in g["fid"]) if gdal else None,
                                        by=by, value=tid, column=column)
        counts[name] = pd.Series({tid: len(shares[name][tid].positions) for tid in ids})
        wanted = set(ids)
        blank = scan["key"].isna()
        lost = scan[blank | ~scan["key"].isin(wanted)]
        if len(lost):
            stray.append(pd.DataFrame({
                "source": name, "column": column, "what": ["blank" if b else "unknown" for b in blank[lost.index]],
                "value": lost["key"].fillna("").astype(object).to_numpy(), "position": lost.index.to_numpy(),
                "fid": lost["fid"].to_numpy(), "subject": lost["subject"].to_numpy()}))
    lost_rows = pd.concat(stray, ignore_index=True) if stray else pd.DataFrame(
        columns=["source", "column", "what", "value", "position", "fid", "subject"])
    if len(lost_rows):
        others = sorted(set(lost_rows.loc[lost_rows["what"] == "unknown", "value"]))
        logger.warning("%d row(s) of the shared sources have a blank town (%s) and %d a town not in the district%s: "
                       "each is reported (town_unassigned)", int((lost_rows["what"] == "blank").sum()), by,
                       int((lost_rows["what"] == "unknown").sum()),
                       f" ({', '.join(others[:5])}{' …' if len(others) > 5 else ''})" if others else "")
    return Partition(by=by, base=base, towns=chosen, shares=shares, stray=lost_rows,
                     counts=pd.DataFrame(counts).reindex(ids).fillna(0).astype(int))


def digests(part: Partition) -> dict[str, str]:
    """Each shared file's SHA-256, computed once for the history of every town (not once per town)."""
    return {p: io.file_digest(p) for p in sorted({str(s["path"]) for s in part.base.sources.values()})}


def town_config(part: Partition, town_id: str, name: str | None = None,
                digest: Mapping[str, str] | None = None) -> Config:
    """The town's config: the district's town sections, each source cut to the town's rows.

    ``name`` (``[[towns]] name``) is the town's name; without it the boundary's ``name`` is (else the id).
    ``digest`` (from :func:`digests`) gives each shared file's fingerprint for the town's history.
    """
    sources = {}
    for src, spec in part.base.sources.items():
        entry = {**spec, "rows": part.shares[src][town_id]}
        if digest and str(spec["path"]) in digest:
            entry["digest"] = digest[str(spec["path"])]
        sources[src] = entry
    shown = name if name is not None else (None if "boundary" in sources else town_id)
    town = {k: v for k, v in part.base.town.items() if k != "name"}
    if shown is not None:
        town["name"] = shown
    history = part.base.history
    if history.url is not None:  # one schema per town, by its id (names may be missing or change)
        history = dataclasses.replace(history, schema=f"gisgrid_history_{town_id}")
    return dataclasses.replace(part.base, town=town, sources=sources, history=history)


def _labels(name: str, spec: Mapping[str, Any], rows: pd.DataFrame, limit: int = _SHOWN) -> str:
    table = name in ROSTER_SOURCES or str(spec["path"]).lower().endswith((".csv", ".txt"))
    unit = "line" if table else "feature"
    subject = str((spec.get("fields") or {}).get(_SUBJECT[name], _SUBJECT[name]))
    shown = []
    for pos, sub in zip(rows["position"].iloc[:limit], rows["subject"].iloc[:limit], strict=True):
        label = f"{unit} {int(pos) + (2 if table else 0)}"
        shown.append(label if sub is None or pd.isna(sub) else f"{label} ({subject} {sub})")
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def _geometry(name: str, spec: Mapping[str, Any], rows: pd.DataFrame, crs: Any) -> Any:
    """The union of the rows' geometries in ``crs`` (None for a roster, or when they cannot be read)."""
    if name in ROSTER_SOURCES or crs is None:
        return None
    gdal = not str(spec["path"]).lower().endswith((".csv", ".txt"))
    pick = io.Rows(tuple(int(p) for p in rows["position"]), tuple(int(f) for f in rows["fid"]) if gdal else None)
    try:
        layer = io.read_layer(spec["path"], layer=spec.get("layer"), encoding=spec.get("encoding"),
                              crs=spec.get("crs"), rows=pick)
    except GisgridError as exc:
        logger.warning("%s: the geometry of the rows of no town cannot be read (%s)", name, exc)
        return None
    geoms = layer.to_crs(crs).geometry
    geoms = geoms[geoms.notna() & ~geoms.is_empty]
    if not len(geoms):
        return None
    return shapely.union_all(shapely.make_valid(geoms.to_numpy()))


def _where_text(name: str, spec: Mapping[str, Any]) -> str:
    what = "roster" if name in ROSTER_SOURCES else "layer"
    return f"the {name} {what} ({spec['path']}" + (f", layer {spec['layer']})" if spec.get("layer") else ")")


#: Where a town's rows of no town are drawn: its first layer (in this order) that has some.
_DRAWN = ("boundary", "villages", "grids", "pois", "rivers", "roads")


def unassigned_findings(part: Partition, *, crs: Any, owner: str) -> gpd.GeoDataFrame:
    """``town_unassigned``: the rows of the shared sources whose town is blank or not a town of the district.

    One finding per source for its blank rows, and one per value that is not a town (over every source
    that has it, with a did-you-mean of the nearest town), naming the source, the column, the rows and the
    fix; drawn where the rows lie (a roster's rows have no place).
    """
    from gisgrid.district.checks import DISTRICT_KINDS

    ids = [t for t, _ in part.towns]
    rows = []

    def add(key: str, n: int, column: str, message: str, geometry: Any) -> None:
        rows.append({"kind": "town_unassigned", "severity": DISTRICT_KINDS["town_unassigned"], "owner": owner,
                     "measure": float(n), "unit": "rows", "rule": f"partition_by = {part.by} (column {column})",
                     "message": message, "geometry": geometry, "town": None, "town_name": "", "_key": key})

    stray = part.stray
    for name, g in stray[stray["what"] == "blank"].groupby("source", sort=True):
        spec = part.base.sources[str(name)]
        column = str(g["column"].iloc[0])
        add(f"unassigned:blank:{name}", len(g), column,
            f"{len(g)} row(s) of {_where_text(str(name), spec)} have no town, {column} is blank: "
            f"{_labels(str(name), spec, g)}; no town checks them. Fix: fill in {column}",
            _geometry(str(name), spec, g, crs))
    for value, g in stray[stray["what"] == "unknown"].groupby("value", sort=True):
        parts = []
        by_source = dict(list(g.groupby("source", sort=False)))
        for name in [s for s in part.base.sources if s in by_source]:
            rows_of = by_source[name]
            parts.append(f"{_where_text(name, part.base.sources[name])} {rows_of['column'].iloc[0]}, {len(rows_of)} "
                         f"row(s): {_labels(name, part.base.sources[name], rows_of, limit=3)}")
        near = nearest(str(value), ids)
        drawn = next((s for s in _DRAWN if s in by_source), None)
        add(f"unassigned:value:{value}", len(g), ", ".join(sorted(set(g["column"]))),
            f"{len(g)} row(s) have town {value!r}, which is not a town of this district: " + "; ".join(parts)
            + "; no town checks them. Fix: " + (f"did you mean {near!r}? " if near else "")
            + f"correct the value, or list the town under [[towns]] (id = {value!r})",
            None if drawn is None else _geometry(drawn, part.base.sources[drawn], by_source[drawn], crs))
    frame = pd.DataFrame(rows, columns=["kind", "severity", "owner", "measure", "unit", "rule", "message",
                                        "geometry", "town", "town_name", "_key"])
    keys = list(frame.pop("_key"))
    return make_findings(frame, crs=crs, key=keys)
