"""Writing tables and layers: CSV, XLSX, GeoJSON and GeoPackage, atomically and formula-safe."""

from __future__ import annotations

import io as _io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from gisgrid.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["FORMULA_STARTS", "defuse", "write_csv", "write_geojson", "write_layers", "write_xlsx"]


#: A cell starting with one of these is read as a formula by spreadsheet programs (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, made plain text (a leading ``'``)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _defused(df: pd.DataFrame) -> pd.DataFrame:
    text = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    if not text:
        return df
    out = df.copy()
    for c in text:
        out[c] = out[c].map(defuse)
    return out


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], *, encoding: str = "utf-8-sig") -> Path:
    """Write a table as CSV atomically (default UTF-8 with BOM, which Excel reads as Chinese).

    Every text cell that a spreadsheet would run as a formula is written as plain text (:func:`defuse`).
    """
    df = pd.DataFrame(frame)
    if isinstance(frame, gpd.GeoDataFrame):
        df = df.drop(columns=[frame.geometry.name])
    df = _defused(df)
    buf = _io.StringIO()
    df.to_csv(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue().encode(encoding))


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> Path:
    """Write several tables as sheets of one XLSX workbook, atomically.

    Geometry columns are dropped; sheet names are cut to Excel's 31 characters
    and made unique.
    """
    used: set[str] = set()
    with atomic_path(path) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            df = pd.DataFrame(frame)
            if isinstance(frame, gpd.GeoDataFrame):
                df = df.drop(columns=[frame.geometry.name])
            title = _sheet_title(name, used)
            _defused(df).to_excel(writer, sheet_name=title, index=False)
    return Path(path)


def _sheet_title(name: str, used: set[str]) -> str:
    base = "".join("_" if ch in '[]:*?/\\' else ch for ch in str(name))[:31] or "sheet"
    title, k = base, 2
    while title in used:
        tail = f"~{k}"
        title, k = base[: 31 - len(tail)] + tail, k + 1
    used.add(title)
    return title


def write_geojson(frame: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a GeoDataFrame as GeoJSON in EPSG:4326, atomically."""
    out = frame.to_crs(4326) if frame.crs is not None else frame
    return atomic_write_text(path, out.to_json(drop_id=True, ensure_ascii=False))


def write_layers(
    layers: Mapping[str, gpd.GeoDataFrame],
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
) -> Path:
    """Write layers to one GeoPackage (or a single layer to .shp/.geojson), atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        for name, gdf in layers.items():
            kwargs: dict[str, Any] = {}
            if encoding:
                kwargs["encoding"] = encoding
            if target.suffix.lower() == ".gpkg":
                kwargs["layer"] = name
            pyogrio.write_dataframe(gdf, tmp, **kwargs)
        if target.suffix.lower() == ".shp":
            for ext in (".shx", ".dbf", ".prj", ".cpg"):
                side = tmp.with_suffix(ext)
                if side.exists():
                    os.replace(side, target.with_suffix(ext))
    return target
