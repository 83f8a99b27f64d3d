"""The report's tables: the flat findings table, the workbook's sheets, the GeoJSON frame, the hygiene rows.

``findings.csv`` is the findings table, ``findings.xlsx`` its sheets (written by
:func:`gisgrid.io.write_xlsx`), ``findings.geojson`` the frame and ``hygiene.csv``
the hygiene rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd

from gisgrid import io, settings
from gisgrid.findings import COLUMNS, LIFECYCLE_COLUMNS, explode_ids, id_list
from gisgrid.policy import village_names
from gisgrid.vocab import as_shown

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

logger = logging.getLogger(__name__)

#: Most rows of the data-hygiene sheet in findings.xlsx (the grids with the most sliver area; hygiene.csv has all).
MAX_HYGIENE_ROWS = 1000
#: Most per-village plus per-owner sheets in findings.xlsx (beyond it the owner sheets are left out:
#: the pipeline's ``owners/*.csv`` hold each owner's list).
MAX_SHEETS = 500
#: Most findings that findings.xlsx also copies onto a sheet per village and per owner. Beyond it the workbook
#: holds every finding once, on the ``findings`` sheet with a filter on every column: each copy would cost as
#: much time as the list itself (20,000 findings: seconds), and the pipeline's ``owners/*.csv`` hold each
#: owner's list.
MAX_COPIED_ROWS = 5000


def _village_names(ids: pd.Series, names: Mapping[str, str]) -> list[str | None]:
    """The name(s) of each id cell's village(s), joined for display."""
    return [", ".join(names.get(v) or v for v in id_list(cell)) or None for cell in ids]


def _finding_table(life: gpd.GeoDataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The flat findings table of the CSV and XLSX: finding and lifecycle columns, village name, lon/lat."""
    df = pd.DataFrame(life.drop(columns=[life.geometry.name])) if isinstance(life, gpd.GeoDataFrame) and \
        life.geometry.name in life.columns else pd.DataFrame(life).drop(columns=["geometry"], errors="ignore")
    df.insert(df.columns.get_loc("village_id") + 1, "village_name", _village_names(df["village_id"], names))
    lon = lat = np.full(len(df), np.nan)
    if isinstance(life, gpd.GeoDataFrame) and life.crs is not None and len(life):
        geo = life.geometry
        ok = ~(geo.isna() | geo.is_empty)
        if ok.any():
            pts = gpd.GeoSeries(geo[ok].representative_point(), crs=life.crs).to_crs(4326)
            lon = pd.Series(np.nan, index=life.index)
            lat = pd.Series(np.nan, index=life.index)
            lon[ok] = pts.x.round(7)
            lat[ok] = pts.y.round(7)
            lon, lat = lon.to_numpy(), lat.to_numpy()
    df["lon"] = lon
    df["lat"] = lat
    first = [c for c in COLUMNS if c != "geometry" and c in df.columns]
    first.insert(first.index("village_id") + 1, "village_name")
    status_first = ["finding_id", "status", *[c for c in first if c != "finding_id"]]
    rest = [c for c in df.columns if c not in status_first]
    life_cols = [c for c in LIFECYCLE_COLUMNS if c in rest and c != "status"]
    others = [c for c in rest if c not in life_cols]
    df = df[[*status_first, *life_cols, *others]]
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].map(io.defuse)
    return df.reset_index(drop=True)


def _sheets(table: pd.DataFrame, card: pd.DataFrame, assessment: Assessment) -> dict[str, pd.DataFrame]:
    """The sheets of findings.xlsx: all findings, then the copies, the checkpoints, the summary and the hygiene.

    The copies (a sheet per village and per owner) only up to :data:`MAX_COPIED_ROWS` findings.
    """
    sheets: dict[str, pd.DataFrame] = {"findings": table}
    if len(table) <= MAX_COPIED_ROWS:
        sheets.update(_copies(table, assessment))
    else:
        logger.info("report: %d findings: findings.xlsx lists them once (no sheet per village or owner beyond "
                    "%d findings); filter the findings sheet, or see the owners/ lists", len(table), MAX_COPIED_ROWS)
    checkpoints = getattr(assessment, "checkpoints", None)
    if checkpoints is not None:
        cp = pd.DataFrame(checkpoints).drop(columns=["geometry"], errors="ignore").map(io.defuse)
    else:
        cp = pd.DataFrame({"note": ["no must-check points analysed"]})
    sheets["checkpoints"] = cp
    summary = getattr(assessment, "summary", None)
    summ = card.copy()
    if summary is not None:
        extra = pd.DataFrame(summary).copy()
        extra.index = extra.index.astype(str)
        extra = extra.drop(columns=[c for c in extra.columns if c in summ.columns and c != "village_id"])
        summ = summ.merge(extra, left_on="village_id", right_index=True, how="left")
    sheets["summary"] = summ.map(io.defuse)
    table = _hygiene_table(assessment)
    if table is not None:
        if len(table) > MAX_HYGIENE_ROWS:  # the worst first; every grid is in hygiene.csv
            rest = len(table) - MAX_HYGIENE_ROWS
            table = pd.concat([table.head(MAX_HYGIENE_ROWS), pd.DataFrame(
                {"grid_id": [f"… {rest} more grids in hygiene.csv 另有 {rest} 个网格见 hygiene.csv"]})])
        sheets["hygiene 数据质量"] = table.map(io.defuse)
    return sheets


def _copies(table: pd.DataFrame, assessment: Assessment) -> dict[str, pd.DataFrame]:
    """One sheet per village (a finding about two villages is on both) and per owner (up to MAX_SHEETS sheets)."""
    sheets: dict[str, pd.DataFrame] = {}
    names = village_names(assessment)
    per_village = explode_ids(table.reset_index(drop=True).rename_axis("_row").reset_index(), "village_id")
    for vid, idx in sorted(per_village.groupby(per_village["village_id"].fillna("—").astype(str)).indices.items()):
        name = as_shown(names.get(vid))
        sheets[f"村 {vid} {name}".strip()] = table.iloc[per_village["_row"].to_numpy()[idx]]
    owners = sorted(table.groupby(table["owner"].fillna(settings.default_owner).astype(str)).indices.items())
    if len(sheets) + len(owners) <= MAX_SHEETS:
        for owner, idx in owners:
            sheets[f"责 {owner}"] = table.iloc[idx]
    else:
        logger.warning("report: %d owners: findings.xlsx gets no per-owner sheets (more than %d sheets); "
                       "see the owners/ lists", len(owners), MAX_SHEETS)
    return sheets


def _hygiene_table(assessment: Assessment) -> pd.DataFrame | None:
    """Per grid, the slivers the digitising tolerance absorbed (None when the run had no tolerance)."""
    hygiene = getattr(assessment, "hygiene", None)
    if hygiene is None or float((getattr(assessment, "totals", None) or {}).get("tolerance_m") or 0) <= 0:
        return None
    return pd.DataFrame(hygiene)


def _geojson_frame(life: gpd.GeoDataFrame, names: Mapping[str, str]) -> gpd.GeoDataFrame:
    """The findings with their village name, every property a plain JSON value."""
    out = life.copy()
    out.insert(out.columns.get_loc("village_id") + 1, "village_name", _village_names(out["village_id"], names))
    for col in out.columns:
        if col == out.geometry.name:
            continue
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: v if v is None or isinstance(v, (str, int, float, bool))
                                    else [str(x) for x in v] if isinstance(v, (list, tuple))  # id lists: arrays
                                    else json.dumps(io.jsonable(v), ensure_ascii=False) if isinstance(
                                        v, (dict, np.ndarray)) else io.jsonable(v))
        elif pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].map(io.jsonable)
    return out
