"""The validated township: :class:`Town` and its layer schemas.

A :class:`Town` holds the canonical layers (boundary, villages, grids, roads,
rivers, POIs) as GeoDataFrames in one metric analysis CRS, the rosters as
DataFrames, and two records of what validation did:

``repairs``
    One row per geometry repaired or removed (``make_valid``, empty or None
    geometries, parts of the wrong type dropped from a collection), with the
    area before and after. These become ``input_repaired`` findings.
``issues``
    One row per broken reference (a roster person whose grid does not exist,
    a chief whose river or village does not exist, a grid whose village does
    not exist). Nothing is dropped; the coverage engine reports them.
``derived``
    One row per value gisgrid filled in because the data did not give it: a
    grid's ``village_id`` from the village holding most of its area, a
    ``road_id`` from the road's geometry, a configured default (e.g.
    ``road_class``) for a missing or unmapped value.

Everything else that is wrong is refused with a :class:`~gisgrid.SchemaError`
or :class:`~gisgrid.CRSError` naming the file, layer, column, rows and fix.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gisgrid import settings
from gisgrid._errors import CRSError, InputError, SchemaError
from gisgrid.crs import analysis_crs as _choose_crs
from gisgrid.crs import check_coordinates, parse_crs
from gisgrid.vocab import POI_KIND_LABELS, is_missing

__all__ = ["DERIVABLE", "DERIVED_COLUMNS", "LAYERS", "ROSTERS", "LayerSpec", "RosterSpec", "Town"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerSpec:
    """What a canonical layer must hold."""

    geom: str  # "polygon", "line" or "point"
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    id: str | None = None
    numeric: tuple[str, ...] = ()


@dataclass(frozen=True)
class RosterSpec:
    """What a roster table must hold."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


LAYERS: dict[str, LayerSpec] = {
    "boundary": LayerSpec("polygon", ("name",), ("town_id",)),
    "villages": LayerSpec("polygon", ("village_id", "name"), ("households", "population"), "village_id",
                          ("households", "population")),
    "grids": LayerSpec("polygon", ("grid_id", "village_id"), ("name", "households"), "grid_id", ("households",)),
    "roads": LayerSpec("line", ("road_id", "road_class"), ("name",), "road_id"),
    "rivers": LayerSpec("line", ("river_id", "name"), ("level", "width_m"), "river_id", ("width_m",)),
    "pois": LayerSpec("point", ("poi_id", "kind"), ("name",), "poi_id"),
}

ROSTERS: dict[str, RosterSpec] = {
    "grid_staff": RosterSpec(
        ("person_id", "name", "role", "grid_id"), ("phone",),
        {"role": ("grid_chief", "grid_member")},
    ),
    "river_chiefs": RosterSpec(
        ("person_id", "name", "level", "river_id"), ("phone", "village_id"),
        {"level": ("county", "town", "village")},
    ),
}

_GEOM_TYPES = {
    "polygon": {"Polygon", "MultiPolygon"},
    "line": {"LineString", "MultiLineString", "LinearRing"},
    "point": {"Point", "MultiPoint"},
}
_PART_TYPE_IDS = {"polygon": (3,), "line": (1, 2), "point": (0,)}

REPAIR_COLUMNS = ("layer", "feature_id", "row", "action", "detail", "area_before", "area_after", "geometry")
DERIVED_COLUMNS = ("layer", "column", "feature_id", "row", "value", "rule", "detail", "measure", "villages")
#: Columns gisgrid can fill in from the data itself when a layer lacks them (see :data:`DERIVED_COLUMNS`).
DERIVABLE: dict[str, tuple[str, ...]] = {"grids": ("village_id",), "roads": ("road_id",)}
#: A grid whose area outside its derived village is at least this share (and ``settings.sliver_area_m2``)
#: straddles villages: a finding, because its village committee is then a guess.
STRADDLE_SHARE = 0.05
ISSUE_COLUMNS = ("kind", "source", "row", "person_id", "name", "column", "value", "problem")


def _where(frame: Any, layer: str) -> dict[str, Any]:
    src = getattr(frame, "attrs", {}).get("source") or {}
    return {"path": src.get("path"), "layer": src.get("layer") or layer}


def _is_table_file(frame: Any) -> bool:
    path = (getattr(frame, "attrs", {}).get("source") or {}).get("path") or ""
    return str(path).lower().endswith((".csv", ".txt", ".xlsx", ".xlsm"))


def _row_label(frame: Any, rows: Any, limit: int = 5) -> str:
    """Human row numbers: file lines for CSV/XLSX (header is line 1), else feature numbers."""
    rows = list(rows)
    offset = 2 if _is_table_file(frame) else 0
    shown = ", ".join(str(int(r) + offset) if isinstance(r, (int, np.integer)) else str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    unit = "line" if offset else "feature"
    return f"{unit}{'s' if len(rows) > 1 else ''} {shown}{more}"


def _empty_layer(name: str, crs: Any) -> gpd.GeoDataFrame:
    spec = LAYERS[name]
    cols = {c: pd.Series([], dtype=object) for c in (*spec.required, *spec.optional)}
    return gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _empty_roster(name: str) -> pd.DataFrame:
    spec = ROSTERS[name]
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in (*spec.required, *spec.optional)})


def _clean_text(series: pd.Series) -> pd.Series:
    """Ids and codes as stripped text; numbers read as 12.0 become '12'; blanks become None."""

    def one(v: Any) -> Any:
        if is_missing(v):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        text = str(v).strip()
        return text or None

    # Built as object so blanks stay None (pandas 3 would infer str and turn None into NaN).
    return pd.Series([one(v) for v in series], index=series.index, name=series.name, dtype=object)


def _check_columns(frame: Any, name: str, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        have = [str(c) for c in frame.columns if c != getattr(frame, "_geometry_column_name", None)]
        msg = f"required column{'s' if len(missing) > 1 else ''} {missing} missing; the {name} data has {have}."
        raise SchemaError(
            msg, **_where(frame, name), column=missing[0],
            fix=f'map your column in the config: [sources.{name}] fields = {{ {missing[0]} = "your column" }}',
        )


def _check_ids(frame: Any, name: str, col: str) -> None:
    blank = frame.index[frame[col].isna()]
    if len(blank):
        msg = f"{len(blank)} row(s) have no {col} ({_row_label(frame, blank)})."
        raise SchemaError(msg, **_where(frame, name), column=col, fix=f"give every row a {col}")
    dup = frame[col][frame[col].duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = dup.index[dup == first]
        msg = (f"{dup.nunique()} duplicate {col} value(s), e.g. '{first}' at {_row_label(frame, rows)}; "
               "ids must be unique.")
        raise SchemaError(msg, **_where(frame, name), column=col, fix=f"give each row its own {col}")


def _derived_row(layer: str, column: str, feature_id: Any, row: Any, value: Any, rule: str, detail: str,
                 measure: float = np.nan, villages: Any = None) -> dict[str, Any]:
    return {"layer": layer, "column": column, "feature_id": feature_id, "row": row, "value": value, "rule": rule,
            "detail": detail, "measure": measure, "villages": villages}


def _apply_defaults(gdf: gpd.GeoDataFrame, name: str, defaults: dict[str, Any], allowed: dict[str, tuple[str, ...]],
                    where: dict[str, Any]) -> list[dict[str, Any]]:
    """Fill configured defaults into missing (and, for closed vocabularies, unknown) values; return the record."""
    record: list[dict[str, Any]] = []
    for col, value in defaults.items():
        if col not in gdf.columns:
            gdf[col] = None
        choices = allowed.get(col)
        if choices is not None and value not in choices:
            msg = f"the default {col} = {value!r} for the {name} layer is not one of {list(choices)}."
            raise SchemaError(msg, **where, column=col,
                              fix=f'write defaults = {{ {col} = "{choices[-1]}" }} or another of {list(choices)}')
        cells = gdf[col]
        fill = cells.isna() | (~cells.isin(choices) if choices is not None else False)
        for idx in gdf.index[fill.to_numpy(dtype=bool)]:
            before = cells.at[idx]
            why = "missing" if is_missing(before) else f"unmapped value {before!r}"
            record.append(_derived_row(name, col, None, idx, value, "default",
                                       f"{why}: the configured default {value!r}"))
        gdf.loc[fill.to_numpy(dtype=bool), col] = value
    return record


def _geometry_ids(geoms: np.ndarray, crs: Any, prefix: str, rows: Any) -> np.ndarray:
    """Ids that stay the same for the same geometry: a hash of its normalised shape to the centimetre.

    Identical geometries get ``-2``, ``-3`` … in row order; a feature with no geometry gets its row number.
    """
    import hashlib

    geographic = bool(getattr(crs, "is_geographic", False))
    grid = 1e-7 if geographic else 0.01  # about 1 cm either way
    out = np.empty(len(geoms), dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        shapes = shapely.normalize(shapely.set_precision(geoms[ok], grid))
        out[ok] = [f"{prefix}{hashlib.sha1(w).hexdigest()[:10]}" for w in shapely.to_wkb(shapes, hex=False)]
    out[~ok] = [f"{prefix}row{r}" for r in np.asarray(rows)[~ok]]
    seen: dict[str, int] = {}
    for i, v in enumerate(out):
        seen[v] = seen.get(v, 0) + 1
        if seen[v] > 1:
            out[i] = f"{v}-{seen[v]}"
    return out


def _derive_ids(gdf: gpd.GeoDataFrame, name: str, col: str, crs: Any) -> list[dict[str, Any]]:
    """Fill a missing id column (or blank ids) from the geometry; return the record."""
    if col not in gdf.columns:
        gdf[col] = None
    blank = gdf[col].isna().to_numpy(dtype=bool)
    if not blank.any():
        return []
    ids = _geometry_ids(np.asarray(gdf.geometry.values, dtype=object)[blank], crs, prefix=f"{name[0].upper()}-",
                        rows=gdf.index[blank])
    gdf.loc[blank, col] = ids
    return [_derived_row(name, col, v, idx, v, "from_geometry",
                         f"no {col} in the data: a stable id from the geometry (the same shape keeps it)")
            for idx, v in zip(gdf.index[blank], ids, strict=True)]


def _derive_grid_villages(grids: gpd.GeoDataFrame, villages: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame,
                                                                                       list[dict[str, Any]]]:
    """A grid without a village gets the village holding most of its area; straddling grids are marked."""
    blank = grids["village_id"].isna().to_numpy(dtype=bool)
    if not blank.any() or not len(villages):
        return grids, []
    out = grids.copy()
    gg = np.asarray(out.geometry.values, dtype=object)[blank]
    vg = np.asarray(villages.geometry.values, dtype=object)
    vid = villages["village_id"].to_numpy(dtype=object)
    gi, vi = shapely.STRtree(vg).query(gg, predicate="intersects")
    share = shapely.area(shapely.intersection(gg[gi], vg[vi]))
    pairs = pd.DataFrame({"g": gi, "v": vid[vi], "m2": share}).sort_values(["g", "m2", "v"],
                                                                         ascending=[True, False, True])
    record: list[dict[str, Any]] = []
    chosen = np.full(len(gg), None, dtype=object)
    area = shapely.area(gg)
    perimeter = shapely.length(gg)
    rows = out.index[blank]
    for g, part in pairs.groupby("g", sort=True):
        best = part.iloc[0]
        chosen[g] = best["v"]
        outside = float(area[g] - best["m2"])
        others = part[part["m2"] > settings.sliver_area_m2]
        limit = max(STRADDLE_SHARE * area[g], settings.tolerance_m * perimeter[g] / 2, settings.sliver_area_m2)
        straddles = outside >= limit and len(others) > 1
        shares = ", ".join(f"{v} {m / area[g]:.0%}" for v, m in zip(others["v"], others["m2"], strict=True))
        detail = (f"no village_id in the data: village {best['v']} holds {best['m2'] / area[g]:.0%} of the grid"
                  + (f"; the grid straddles villages ({shares})" if straddles else ""))
        record.append(_derived_row("grids", "village_id", out.at[rows[g], "grid_id"], rows[g], best["v"],
                                   "largest_share", detail, measure=outside if straddles else np.nan,
                                   villages=tuple(others["v"]) if straddles else None))
    placed = np.array([c is not None for c in chosen], dtype=bool)
    out.loc[rows[placed], "village_id"] = chosen[placed]
    return out, record


def _lonlat_reason(reason: str, crs: Any) -> str:
    """GEOS's ``Self-intersection[x y]`` with lon/lat, the way people search a map."""
    import re

    m = re.search(r"\[\s*(-?[\d.eE+-]+)\s+(-?[\d.eE+-]+)\s*\]", reason)
    if not m:
        return reason
    try:
        to_wgs = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lon, lat = to_wgs.transform(float(m.group(1)), float(m.group(2)))
    except (ValueError, pyproj.exceptions.ProjError):
        return reason
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return reason
    return f"{reason[:m.start()]} at lon {lon:.6f}, lat {lat:.6f}{reason[m.end():]}"


def _poi_kinds(kinds: pd.Series, frame: Any, where: dict[str, Any]) -> pd.Series:
    """POI kinds with case and spacing normalised (``School `` is ``school``); a shipped kind's label refused.

    A kind written as the Chinese or English name of a shipped must-check kind (``学校``, ``Water intake``)
    that the config did not map would silently drop every such point and its veto: it is refused.
    """
    def norm(kind: str) -> str:
        return "_".join(kind.lower().replace("-", " ").split()) if kind.isascii() else kind.strip()

    out = kinds.map(lambda k: norm(str(k)) if k is not None else None)
    labels: dict[str, str] = {}
    for kind, label in POI_KIND_LABELS.items():
        zh, _, en = label.partition(" ")
        labels[zh] = kind
        labels[norm(en)] = kind
    unmapped = sorted({str(v) for v in out.dropna() if v in labels and v != labels[v]})
    if unmapped:
        rows = out.index[out.isin(unmapped)]
        pairs = ", ".join(f'"{v}" = "{labels[v]}"' for v in unmapped)
        msg = (f"POI kind(s) {unmapped} ({_row_label(frame, rows)}) name shipped must-check kinds in words gisgrid "
               "does not read: those points and their veto checks would be lost.")
        fix = f"map them in the config: values = {{ kind = {{ {pairs} }} }}"
        raise SchemaError(msg, **where, column="kind", fix=fix)
    return out


def _check_layers_meet(prepared: dict[str, gpd.GeoDataFrame], frames: dict[str, Any]) -> None:
    """Refuse a layer that lies nowhere near the villages: almost always a CRS label that does not fit its numbers.

    Grids in one Gauss-Kruger zone's numbers but labelled as the next zone land some 300 km away; coordinates
    without their zone prefix, or degrees labelled as metres, land further still. Every check would then
    report the whole town as uncovered.
    """
    x0, y0, x1, y1 = prepared["villages"].total_bounds
    margin = max(1000.0, 0.5 * max(x1 - x0, y1 - y0))
    for lname in ("boundary", "grids", "roads", "rivers", "pois"):
        gdf = prepared[lname]
        if not len(gdf) or gdf.geometry.is_empty.all():
            continue
        a0, b0, a1, b1 = gdf.total_bounds
        if a1 >= x0 - margin and a0 <= x1 + margin and b1 >= y0 - margin and b0 <= y1 + margin:
            continue
        dx, dy = (a0 + a1 - x0 - x1) / 2, (b0 + b1 - y0 - y1) / 2
        source = frames.get(lname)
        declared = getattr(getattr(source, "crs", None), "name", None) or "its declared CRS"
        msg = (f"the {lname} layer lies {np.hypot(dx, dy) / 1000:,.0f} km from the villages "
               f"({dx / 1000:+,.0f} km east, {dy / 1000:+,.0f} km north): its coordinates do not fit {declared}.")
        raise CRSError(msg, **_where(source, lname),
                       fix="check the layer's CRS against the villages': a neighbouring Gauss-Kruger zone (3° apart, "
                           "about 300 km), a missing or extra zone prefix on x (e.g. 40 500000 vs 500000), or "
                           "degrees labelled as metres; declare the right one with crs = \"EPSG:…\" in the config")


def _prepare_layer(
    name: str, frame: Any, target: pyproj.CRS, defaults: dict[str, Any] | None = None
) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    spec = LAYERS[name]
    where = _where(frame, name)
    if not isinstance(frame, gpd.GeoDataFrame):
        msg = f"the {name} layer must be a GeoDataFrame, got {type(frame).__name__}."
        raise SchemaError(msg, **where, fix="read it with gisgrid.io.read_layer or geopandas.read_file")
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - {*spec.required, *spec.optional})
    if unknown:
        uses = [*spec.required, *spec.optional]
        msg = f"defaults for {unknown}, which the {name} layer does not use; it uses {uses}."
        raise SchemaError(msg, **where, column=unknown[0], fix=f"correct [sources.{name}] defaults")
    derivable = DERIVABLE.get(name, ())
    _check_columns(frame, name, tuple(c for c in spec.required if c not in derivable and c not in defaults))
    if frame.crs is None:
        msg = f"the {name} layer has no CRS."
        raise CRSError(msg, **where, fix='set it with .set_crs("EPSG:4490") or declare crs in the config')
    gdf = frame.copy()
    for col in (*spec.optional, *derivable):
        if col not in gdf.columns:
            gdf[col] = None
    for col in spec.numeric:
        values = pd.to_numeric(gdf[col], errors="coerce")
        bad = gdf.index[values.isna() & _clean_text(gdf[col]).notna()]
        if len(bad):
            msg = f"column '{col}' must be a number, but {_row_label(frame, bad)} hold(s) '{gdf.loc[bad[0], col]}'."
            raise SchemaError(msg, **where, column=col, fix="fix those cells or map another column")
        gdf[col] = values.astype(float)
    text_cols = [c for c in (*spec.required, *spec.optional) if c not in spec.numeric]
    for col in text_cols:
        gdf[col] = _clean_text(gdf[col])
    derived = _apply_defaults(gdf, name, defaults, {"road_class": settings.road_classes}, where)
    if spec.id in derivable:
        derived += _derive_ids(gdf, name, spec.id, frame.crs)
    if spec.id:
        _check_ids(gdf, name, spec.id)
    if name == "roads":
        bad = sorted(set(gdf["road_class"].dropna()) - set(settings.road_classes))
        if bad or gdf["road_class"].isna().any():
            rows = gdf.index[~gdf["road_class"].isin(settings.road_classes)]
            msg = (f"road_class must be one of {list(settings.road_classes)}; found {bad or [None]} "
                   f"({_row_label(frame, rows)}).")
            raise SchemaError(
                msg, **where, column="road_class",
                fix='map your classes in the config: values = { road_class = { "小巷" = "lane", "主干道" = "main" } }',
            )
    if name == "pois" and gdf["kind"].isna().any():
        rows = gdf.index[gdf["kind"].isna()]
        msg = f"{_row_label(frame, rows)} have no kind."
        raise SchemaError(msg, **where, column="kind", fix="give every point a kind (school, market, …)")
    if name == "pois":
        gdf["kind"] = _poi_kinds(gdf["kind"], frame, where)

    repairs: list[dict[str, Any]] = []
    idcol = spec.id

    def fid(idx: Any) -> Any:
        return gdf.at[idx, idcol] if idcol else str(idx)

    geoms = np.asarray(gdf.geometry.values, dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if missing.any():
        for idx in gdf.index[missing]:
            repairs.append({"layer": name, "feature_id": fid(idx), "row": idx, "action": "removed_empty",
                            "detail": "feature has no geometry (None or empty); removed from analysis",
                            "area_before": np.nan, "area_after": np.nan, "geometry": None})
        logger.warning("%s: %d feature(s) without geometry removed and recorded", name, int(missing.sum()))
        gdf = gdf.loc[~missing].copy()
        geoms = geoms[~missing]
    if len(gdf) and shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
        logger.info("%s: Z coordinates dropped", name)
    # Collections: keep the parts of the layer's type, record what was dropped.
    types = shapely.get_type_id(geoms)
    is_coll = types == 7
    if is_coll.any():
        for pos in np.flatnonzero(is_coll):
            parts = shapely.get_parts(geoms[pos])
            keep = parts[np.isin(shapely.get_type_id(parts), _PART_TYPE_IDS[spec.geom] + (
                (6,) if spec.geom == "polygon" else (5,) if spec.geom == "line" else (4,)))]
            new = shapely.union_all(keep) if len(keep) else None
            idx = gdf.index[pos]
            repairs.append({"layer": name, "feature_id": fid(idx), "row": idx, "action": "collection_exploded",
                            "detail": (f"geometry collection of {len(parts)} parts; "
                                       f"kept {len(keep)} of type {spec.geom}"),
                            "area_before": np.nan, "area_after": np.nan, "geometry": new,
                            "_before": geoms[pos]})
            geoms[pos] = new
    names = np.array([g.geom_type if g is not None else "None" for g in geoms], dtype=object)
    wrong = ~np.isin(names, list(_GEOM_TYPES[spec.geom]))
    if wrong.any():
        rows = gdf.index[wrong]
        msg = (f"the {name} layer must hold {spec.geom} geometries, but {_row_label(frame, rows)} "
               f"hold {sorted(set(names[wrong]))}.")
        raise SchemaError(msg, **where,
                          fix=f"give the {name} layer {spec.geom}s only, or point the config at the right layer")
    if len(geoms):  # NaN or infinite coordinates would pass every check and break GEOS later
        xy, owner = shapely.get_coordinates(geoms, return_index=True)
        bad = np.unique(owner[~np.isfinite(xy).all(axis=1)])
        if bad.size:
            rows = gdf.index[bad]
            msg = (f"the {name} layer has NaN or infinite coordinates in {_row_label(frame, rows)}: such a "
                   "feature cannot be placed on the map.")
            raise InputError(msg, **where, row=rows[0],
                             fix=f"correct or delete those features in the {name} layer (a GIS can select them "
                                 "by an invalid or empty geometry)")
    gdf = gpd.GeoDataFrame(gdf.drop(columns=gdf.geometry.name), geometry=geoms, crs=frame.crs)
    if len(gdf):
        check_coordinates(gdf.total_bounds, gdf.crs, where=where)
    gdf = gdf.to_crs(target)
    # Collection records: geometry and areas in the analysis CRS (m²), like every other repair.
    for r in repairs:
        if "_before" in r:
            before = gpd.GeoSeries([r.pop("_before"), r["geometry"]], crs=frame.crs).to_crs(target)
            r["area_before"] = float(before.iloc[0].area)
            r["area_after"] = float(before.iloc[1].area) if r["geometry"] is not None else np.nan
            r["geometry"] = before.iloc[1]
    if spec.geom == "polygon" and len(gdf):
        geoms = np.asarray(gdf.geometry.values, dtype=object)
        invalid = ~shapely.is_valid(geoms)
        for pos in np.flatnonzero(invalid):
            before = geoms[pos]
            reason = shapely.is_valid_reason(before)
            fixed = shapely.make_valid(before, method="structure", keep_collapsed=False)
            if fixed.geom_type == "GeometryCollection":
                polys = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
                fixed = shapely.union_all(polys) if polys else shapely.Polygon()
            idx = gdf.index[pos]
            repairs.append({"layer": name, "feature_id": fid(idx), "row": idx, "action": "make_valid",
                            "detail": f"invalid polygon ({_lonlat_reason(reason, target)}) repaired with "
                                      "make_valid(method='structure')",
                            "area_before": float(shapely.area(before)), "area_after": float(shapely.area(fixed)),
                            "geometry": fixed if not fixed.is_empty else before})
            geoms[pos] = fixed
        if invalid.any():
            # Recorded as findings; a log line at INFO, not a warning in every notebook and cron mail.
            logger.info("%s: %d invalid polygon(s) repaired and recorded", name, int(invalid.sum()))
            collapsed = shapely.is_empty(geoms)
            gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))
            if collapsed.any():
                for r in repairs:
                    if r["row"] in set(gdf.index[collapsed]):
                        r["action"] = "removed_collapsed"
                        r["detail"] += "; nothing with area was left, so it was removed"
                gdf = gdf.loc[~collapsed]
    gdf.attrs = {}
    for r in derived:
        if r["feature_id"] is None and spec.id:
            r["feature_id"] = gdf.at[r["row"], spec.id] if r["row"] in gdf.index else None
    return gdf, repairs, derived


def _prepare_roster(name: str, frame: Any) -> pd.DataFrame:
    spec = ROSTERS[name]
    where = _where(frame, name)
    if not isinstance(frame, pd.DataFrame):
        msg = f"the {name} roster must be a DataFrame, got {type(frame).__name__}."
        raise SchemaError(msg, **where, fix="read it with gisgrid.io.read_table or pandas")
    _check_columns(frame, name, spec.required)
    df = pd.DataFrame(frame).copy()
    for col in spec.optional:
        if col not in df.columns:
            df[col] = None
    for col in (*spec.required, *spec.optional):
        df[col] = _clean_text(df[col])
    for col in ("person_id", "name"):
        blank = df.index[df[col].isna()]
        if len(blank):
            msg = f"{_row_label(frame, blank)} have no {col}."
            raise SchemaError(msg, **where, column=col, fix=f"fill in {col} for every person")
    for col, allowed in spec.choices.items():
        bad = df.index[~df[col].isin(allowed)]
        if len(bad):
            found = sorted({str(v) for v in df.loc[bad, col]})
            msg = f"column '{col}' must be one of {list(allowed)}; found {found} ({_row_label(frame, bad)})."
            raise SchemaError(
                msg, **where, column=col,
                fix=f'map your values in the config: values = {{ {col} = {{ "{found[0]}" = "{allowed[0]}" }} }}',
            )
    df.attrs = {"source": (getattr(frame, "attrs", {}) or {}).get("source")}
    return df


def _damaged_phones(phones: pd.Series) -> dict[str, np.ndarray]:
    """Phone numbers a spreadsheet damaged, by what happened to them (masks over the roster's rows)."""
    text = phones.astype(object).where(phones.notna(), "").astype(str)
    digits = text.str.replace(r"[\s\-()（）]", "", regex=True)
    scientific = text.str.contains(r"^\d(?:\.\d+)?[eE]\+?\d+$", regex=True).to_numpy(dtype=bool)
    plain = digits.str.fullmatch(r"\d+").to_numpy(dtype=bool)
    first = digits.str[:1]
    lost_zero = plain & (first != "0").to_numpy() & (first != "1").to_numpy() & \
        digits.str.len().between(9, 11).to_numpy(dtype=bool)
    return {
        "Excel turned the number into scientific notation and lost its last digits; re-export the column as text":
            scientific,
        "a landline that lost its leading 0 (area code); re-export the column as text": lost_zero & ~scientific,
    }


def _issue_rows(df: pd.DataFrame, mask: Any, *, kind: str, source: str, column: str, problem: str) -> list[dict]:
    out = []
    for idx in df.index[mask]:
        out.append({"kind": kind, "source": source, "row": idx, "person_id": df.at[idx, "person_id"]
                    if "person_id" in df.columns else None,
                    "name": df.at[idx, "name"] if "name" in df.columns else None,
                    "column": column, "value": df.at[idx, column], "problem": problem})
    return out


def _issue_frame(issues: list[dict[str, Any]]) -> pd.DataFrame:
    """Issues as a frame whose text columns are object (None stays None, not NaN as pandas 3 would infer)."""
    frame = pd.DataFrame(issues, columns=list(ISSUE_COLUMNS))
    for col in ISSUE_COLUMNS:
        if col != "row":
            frame[col] = pd.Series([r[col] for r in issues], index=frame.index, dtype=object)
    return frame


@dataclass(frozen=True, eq=False)
class Town:
    """A validated township in one metric analysis CRS.

    Build it with :meth:`Town.from_frames` or :func:`gisgrid.load_town`; the
    constructor itself does not validate.

    Attributes
    ----------
    name : str
    crs : pyproj.CRS
        The analysis CRS (metres).
    boundary, villages, grids, roads, rivers, pois : GeoDataFrame
        Canonical layers; absent optional layers are empty with their columns.
    grid_staff, river_chiefs : DataFrame
        Rosters; absent ones are empty.
    repairs : GeoDataFrame
        Geometry repairs and removals made on load.
    issues : DataFrame
        Broken references found on load (nothing is dropped for them).
    derived : DataFrame
        Values filled in on load (:data:`DERIVED_COLUMNS`): the layer, column,
        feature, value, the rule and why; ``measure`` and ``villages`` name
        the area outside the chosen village of a grid that straddles villages.
    sources : dict
        Where each layer came from (``{"path": ..., "layer": ...}``).
    """

    name: str
    crs: pyproj.CRS
    boundary: gpd.GeoDataFrame
    villages: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    rivers: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    grid_staff: pd.DataFrame
    river_chiefs: pd.DataFrame
    repairs: gpd.GeoDataFrame
    issues: pd.DataFrame
    sources: dict[str, Any] = field(default_factory=dict)
    derived: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DERIVED_COLUMNS)))

    LAYER_NAMES = ("boundary", "villages", "grids", "roads", "rivers", "pois")
    ROSTER_NAMES = ("grid_staff", "river_chiefs")

    @classmethod
    def from_frames(
        cls,
        *,
        boundary: gpd.GeoDataFrame | None = None,
        villages: gpd.GeoDataFrame,
        grids: gpd.GeoDataFrame,
        roads: gpd.GeoDataFrame | None = None,
        rivers: gpd.GeoDataFrame | None = None,
        pois: gpd.GeoDataFrame | None = None,
        grid_staff: pd.DataFrame | None = None,
        river_chiefs: pd.DataFrame | None = None,
        crs: Any = None,
        name: str | None = None,
        defaults: dict[str, dict[str, Any] | None] | None = None,
    ) -> Town:
        """Validate canonical frames and return a Town in one analysis CRS.

        Parameters
        ----------
        boundary, villages, grids, roads, rivers, pois
            GeoDataFrames with the canonical columns, each in any CRS.
            ``boundary`` may be None (the union of villages is the town).
        grid_staff, river_chiefs
            Roster DataFrames with the canonical columns.
        crs
            Analysis CRS: None or ``"auto"`` picks the CGCS2000 Gauss-Kruger
            zone nearest the data (UTM outside China); else any CRS in metres.
        name
            Town name; default the boundary's ``name``.
        defaults
            Per layer, values for missing cells, e.g. ``{"roads": {"road_class": "lane"}}``
            (for ``road_class`` also for values that are not a road class). Every value filled in is
            recorded in :attr:`derived`, as are a grid's ``village_id`` taken from its location and a
            ``road_id`` made from the geometry when the data has none.

        Returns
        -------
        Town

        Raises
        ------
        SchemaError, CRSError
        """
        frames = {"boundary": boundary, "villages": villages, "grids": grids, "roads": roads,
                  "rivers": rivers, "pois": pois}
        sources = {k: (getattr(v, "attrs", {}) or {}).get("source") for k, v in frames.items() if v is not None}
        for req in ("villages", "grids"):
            if frames[req] is None:
                msg = f"the {req} layer is required."
                raise SchemaError(msg, layer=req, fix=f"give a {req} layer ([sources.{req}] in the config)")
        extra = sorted(k for k, v in (defaults or {}).items() if v and k not in cls.LAYER_NAMES)
        if extra:
            msg = f"defaults are for layers; {extra} {'is' if len(extra) == 1 else 'are'} not one."
            raise SchemaError(msg, layer=extra[0], fix=f"remove defaults from [sources.{extra[0]}]")
        target = cls._target_crs(crs, villages)
        prepared: dict[str, gpd.GeoDataFrame] = {}
        repairs: list[dict[str, Any]] = []
        derived: list[dict[str, Any]] = []
        for lname in cls.LAYER_NAMES:
            frame = frames[lname]
            if frame is None:
                prepared[lname] = _empty_layer(lname, target)
                continue
            gdf, rep, der = _prepare_layer(lname, frame, target, (defaults or {}).get(lname))
            prepared[lname] = gdf
            repairs.extend(rep)
            derived.extend(der)
        if not len(prepared["villages"]) or not len(prepared["grids"]):
            empty = "villages" if not len(prepared["villages"]) else "grids"
            msg = f"the {empty} layer has no features."
            raise SchemaError(msg, **_where(frames[empty], empty), fix="point the config at the right file and layer")
        _check_layers_meet(prepared, frames)
        prepared["grids"], der = _derive_grid_villages(prepared["grids"], prepared["villages"])
        derived.extend(der)
        if derived:
            for (lname, col, rule), n in pd.DataFrame(derived).groupby(["layer", "column", "rule"]).size().items():
                logger.info("%s.%s: %d value(s) derived (%s)", lname, col, n, rule)
        rosters = {
            "grid_staff": (_empty_roster("grid_staff") if grid_staff is None
                           else _prepare_roster("grid_staff", grid_staff)),
            "river_chiefs": (_empty_roster("river_chiefs") if river_chiefs is None
                             else _prepare_roster("river_chiefs", river_chiefs)),
        }
        for rname, frame in (("grid_staff", grid_staff), ("river_chiefs", river_chiefs)):
            if frame is not None:
                sources[rname] = (getattr(frame, "attrs", {}) or {}).get("source")
        issues = cls._references(prepared, rosters)
        rep_frame = gpd.GeoDataFrame(
            pd.DataFrame(repairs, columns=list(REPAIR_COLUMNS)), geometry="geometry", crs=target
        )
        if name is None:
            names = prepared["boundary"]["name"].dropna()
            name = str(names.iloc[0]) if len(names) else "town"
        town = cls(name=name, crs=target, **prepared, **rosters, repairs=rep_frame,
                   issues=_issue_frame(issues), sources=sources,
                   derived=pd.DataFrame(derived, columns=list(DERIVED_COLUMNS)))
        logger.info("town %s: %d villages, %d grids, %d roads, %d rivers, %d POIs in %s; %d repairs, %d issues",
                    town.name, len(town.villages), len(town.grids), len(town.roads), len(town.rivers),
                    len(town.pois), town.crs.to_string(), len(town.repairs), len(town.issues))
        return town

    @staticmethod
    def _target_crs(crs: Any, villages: Any) -> pyproj.CRS:
        value = settings.analysis_crs if crs is None else crs
        if isinstance(value, str) and value.strip().lower() == "auto":
            where = _where(villages, "villages")
            if not isinstance(villages, gpd.GeoDataFrame) or villages.crs is None:
                msg = "the villages layer has no CRS, so no analysis CRS can be chosen."
                raise CRSError(msg, **where, fix='set its CRS or declare crs in the config')
            geoms = np.asarray(villages.geometry.values, dtype=object)
            if not (~(shapely.is_missing(geoms) | shapely.is_empty(geoms))).any():
                msg = "the villages layer has no features (none with a geometry)."
                raise SchemaError(msg, **where, fix="point the config at the right file and layer")
            # Mislabelled coordinates get their own error, not a confusing one from the CRS choice.
            check_coordinates(villages.total_bounds, villages.crs, where=where)
            return _choose_crs(villages)
        parsed = parse_crs(value)
        if isinstance(parsed, str) or not parsed.is_projected:
            msg = f"the analysis CRS {value!r} is not a projected CRS in metres."
            raise CRSError(msg, fix='use "auto" or a metric CRS such as "EPSG:4549"')
        return parsed

    @staticmethod
    def _references(layers: dict[str, gpd.GeoDataFrame], rosters: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
        issues: list[dict[str, Any]] = []
        village_ids = set(layers["villages"]["village_id"])
        grid_ids = set(layers["grids"]["grid_id"])
        river_ids = set(layers["rivers"]["river_id"])
        grids = layers["grids"]
        bad = ~grids["village_id"].isin(village_ids)
        for idx in grids.index[bad]:
            issues.append({"kind": "input_reference", "source": "grids", "row": idx, "person_id": None,
                           "name": grids.at[idx, "grid_id"], "column": "village_id",
                           "value": grids.at[idx, "village_id"],
                           "problem": f"grid {grids.at[idx, 'grid_id']} names village "
                                      f"{grids.at[idx, 'village_id']}, which is not in the villages layer"})
        staff = rosters["grid_staff"]
        issues += _issue_rows(staff, ~staff["grid_id"].isin(grid_ids), kind="staff_unplaced", source="grid_staff",
                              column="grid_id", problem="grid does not exist in the grids layer")
        chiefs = rosters["river_chiefs"]
        issues += _issue_rows(chiefs, ~chiefs["river_id"].isin(river_ids), kind="chief_unplaced",
                              source="river_chiefs", column="river_id",
                              problem="river does not exist in the rivers layer")
        village_level = (chiefs["level"] == "village") & chiefs["river_id"].isin(river_ids)
        issues += _issue_rows(chiefs, village_level & chiefs["village_id"].isna(), kind="chief_unplaced",
                              source="river_chiefs", column="village_id",
                              problem="village-level chief without a village_id")
        issues += _issue_rows(chiefs, village_level & chiefs["village_id"].notna()
                              & ~chiefs["village_id"].isin(village_ids), kind="chief_unplaced",
                              source="river_chiefs", column="village_id",
                              problem="village does not exist in the villages layer")
        for source, roster in (("grid_staff", staff), ("river_chiefs", chiefs)):
            for problem, mask in _damaged_phones(roster["phone"]).items():
                issues += _issue_rows(roster, mask, kind="phone_damaged", source=source, column="phone",
                                      problem=problem)
        return issues

    # ------------------------------------------------------------------ derived
    @cached_property
    def extent(self) -> shapely.Geometry:
        """The town's area: the union of the boundary, or of the villages when there is none."""
        src = self.boundary if len(self.boundary) else self.villages
        return shapely.union_all(np.asarray(src.geometry.values, dtype=object))

    @property
    def area_m2(self) -> float:
        """Area of :attr:`extent` in m²."""
        return float(self.extent.area)

    def frames(self) -> dict[str, Any]:
        """The layers and rosters as keyword arguments for :meth:`from_frames` (copies)."""
        out: dict[str, Any] = {k: getattr(self, k).copy() for k in (*self.LAYER_NAMES, *self.ROSTER_NAMES)}
        if not len(out["boundary"]):
            out["boundary"] = None
        return out

    def replace(self, **changes: Any) -> Town:
        """Return a new validated Town with some layers or rosters replaced (for what-if analysis)."""
        unknown = set(changes) - {*self.LAYER_NAMES, *self.ROSTER_NAMES, "name"}
        if unknown:
            msg = f"unknown layer(s) {sorted(unknown)}."
            raise SchemaError(msg, fix=f"use any of {[*self.LAYER_NAMES, *self.ROSTER_NAMES]}")
        kwargs = self.frames()
        kwargs.update(changes)
        kwargs.setdefault("name", self.name)
        new = Town.from_frames(**kwargs, crs=self.crs)
        # Layers kept as they were keep the record of the repairs made when they were first loaded.
        kept_derived = self.derived[~self.derived["layer"].isin(list(changes))]
        if len(kept_derived):
            new = dataclasses.replace(new, derived=pd.concat([kept_derived, new.derived], ignore_index=True)
                                      if len(new.derived) else kept_derived.reset_index(drop=True))
        kept = self.repairs[~self.repairs["layer"].isin(list(changes))] if len(self.repairs) else self.repairs
        if not len(kept):
            return new
        merged = pd.concat([kept, new.repairs], ignore_index=True) if len(new.repairs) else kept.copy()
        return dataclasses.replace(new, repairs=gpd.GeoDataFrame(merged, geometry="geometry", crs=new.crs))

    def derivation_notes(self) -> list[str]:
        """One line per layer and column whose values gisgrid filled in (for ``gisgrid check`` and the run)."""
        lines = []
        for (lname, col, rule), rows in self.derived.groupby(["layer", "column", "rule"], sort=False):
            n = len(rows)
            if rule == "largest_share":
                straddle = int(rows["villages"].notna().sum())
                how = "the village holding most of each grid's area" + (
                    f"; {straddle} grid(s) straddle villages (a grid_straddles finding each)" if straddle else "")
            elif rule == "from_geometry":
                how = "an id made from the geometry (the same shape keeps the same id)"
            else:
                counts = rows["detail"].str.replace(r": the configured default .*$", "", regex=True).value_counts()
                how = (f"the configured default {rows['value'].iloc[0]!r} for "
                       + ", ".join(f"{k} ({v})" for k, v in counts.head(5).items())
                       + (f" and {len(counts) - 5} more" if len(counts) > 5 else ""))
            lines.append(f"derived {lname}.{col} for {n:,} feature(s): {how}")
        return lines

    def layer_table(self) -> pd.DataFrame:
        """One row per layer and roster: rows, geometry, repairs and issues (for ``gisgrid check``)."""
        rows = []
        for lname in (*self.LAYER_NAMES, *self.ROSTER_NAMES):
            frame = getattr(self, lname)
            src = self.sources.get(lname) or {}
            rep = int((self.repairs["layer"] == lname).sum()) if len(self.repairs) else 0
            iss = int((self.issues["source"] == lname).sum()) if len(self.issues) else 0
            geom = LAYERS[lname].geom if lname in LAYERS else "table"
            rows.append({"layer": lname, "rows": len(frame), "geometry": geom, "repairs": rep, "issues": iss,
                         "source": src.get("path") or "-"})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"<Town {self.name!r}: {len(self.villages)} villages, {len(self.grids)} grids, "
                f"{len(self.roads)} roads, {len(self.rivers)} rivers, {len(self.pois)} POIs, "
                f"{self.crs.to_string()}, {len(self.repairs)} repairs, {len(self.issues)} issues>")

    def _repr_html_(self) -> str:
        esc = html.escape

        def count_by(frame: pd.DataFrame, col: str, limit: int = 6) -> str:
            if col not in frame.columns or not len(frame):
                return ""
            vc = frame[col].astype(object).where(frame[col].notna(), "(none)").astype(str).value_counts()
            text = ", ".join(f"{k} {v}" for k, v in vc.head(limit).items())
            return text + (f", … ({len(vc) - limit} more)" if len(vc) > limit else "")

        def km(frame: gpd.GeoDataFrame) -> float:
            return float(frame.geometry.length.sum()) / 1000 if len(frame) else 0.0

        detail: dict[str, str] = {}
        if "households" in self.villages.columns and self.villages["households"].notna().any():
            detail["villages"] = f"{pd.to_numeric(self.villages['households'], errors='coerce').sum():,.0f} households"
        if len(self.grids):
            per = self.grids.groupby("village_id").size()
            detail["grids"] = f"{per.min()}–{per.max()} per village"
        if len(self.roads):
            by = self.roads.geometry.length.groupby(self.roads["road_class"].to_numpy()).sum() / 1000
            order = [c for c in settings.road_classes if c in by.index] + [c for c in by.index
                                                                           if c not in settings.road_classes]
            detail["roads"] = f"{km(self.roads):,.1f} km: " + ", ".join(f"{c} {by[c]:,.1f}" for c in order)
        if len(self.rivers):
            detail["rivers"] = f"{km(self.rivers):,.1f} km"
        detail["pois"] = count_by(self.pois, "kind")
        detail["grid_staff"] = count_by(self.grid_staff, "role")
        detail["river_chiefs"] = count_by(self.river_chiefs, "level")
        table = self.layer_table().drop(columns=["source"])
        table["detail"] = [detail.get(n, "") for n in table["layer"]]
        head = (f"<b>{esc(self.name)}</b> — {esc(self.crs.name)} ({esc(self.crs.to_string())}),"
                f" area {self.area_m2 / 1e6:,.2f} km²")
        notes = []
        if len(self.repairs):
            notes.append(f"{len(self.repairs)} geometry repair(s) made on load (<code>town.repairs</code>)")
        if len(self.issues):
            notes.append(f"{len(self.issues)} broken reference(s) (<code>town.issues</code>)")
        foot = f"<p>{'; '.join(notes)}.</p>" if notes else ""
        return f"<div>{head}{table.to_html(index=False, escape=True, na_rep='')}{foot}</div>"
