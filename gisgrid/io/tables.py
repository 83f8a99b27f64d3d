"""Writing tables and layers: CSV, XLSX, GeoJSON and GeoPackage, atomically and formula-safe."""

from __future__ import annotations

import datetime as dt
import io as _io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from gisgrid.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from gisgrid.vocab import is_missing

__all__ = ["FORMULA_STARTS", "defuse", "jsonable", "write_csv", "write_geojson", "write_layers", "write_xlsx"]


#: A cell starting with one of these is read as a formula by spreadsheet programs (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Control characters XML 1.0 cannot hold; openpyxl refuses a cell with one.
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def defuse(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, made plain text (a leading ``'``)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _listed(value: Any) -> Any:
    """A list of ids (a tuple cell) as people read it in a file without lists: ``"G1, G2"``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def _map_text(df: pd.DataFrame, fn: Any) -> pd.DataFrame:
    """``fn`` applied to every cell of the text (object) columns; the table itself when it has none."""
    cols = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    if not cols:
        return df
    out = df.copy()
    for c in cols:
        out[c] = out[c].map(fn)
    return out


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its list cells joined for display (CSV, XLSX and GeoPackage have no lists)."""
    return _map_text(df, _listed)


def _defused(df: pd.DataFrame) -> pd.DataFrame:
    return _map_text(df, defuse)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], *, encoding: str = "utf-8-sig") -> Path:
    """Write a table as CSV atomically (default UTF-8 with BOM, which Excel reads as Chinese).

    Every text cell that a spreadsheet would run as a formula is written as plain text (:func:`defuse`).
    """
    df = pd.DataFrame(frame)
    if isinstance(frame, gpd.GeoDataFrame):
        df = df.drop(columns=[frame.geometry.name])
    df = _defused(_flat(df))
    buf = _io.StringIO()
    df.to_csv(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue().encode(encoding))


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> Path:
    """Write several tables as sheets of one XLSX workbook, atomically.

    The one XLSX writer of the package: openpyxl's streaming writer (time linear
    in cells, any number of sheets). Geometry columns and the index are left out;
    the header row is bold and frozen and the columns are as wide as their first
    200 values (at most 60); text cells go through :func:`defuse` and lose the
    control characters XML cannot hold, and text never becomes a formula; sheet
    names are cut to Excel's 31 characters and made unique.

    Parameters
    ----------
    sheets
        Sheet name -> table, in the order of the sheets.
    path
        The workbook written.

    Returns
    -------
    Path
        ``path``.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    used: set[str] = set()
    with atomic_path(path) as tmp:
        book = Workbook(write_only=True)
        bold = Font(bold=True)
        for name, frame in sheets.items():
            df = pd.DataFrame(frame)
            if isinstance(frame, gpd.GeoDataFrame):
                df = df.drop(columns=[frame.geometry.name])
            df = _defused(df.drop(columns=["geometry"], errors="ignore"))
            columns = [str(c) for c in df.columns]
            rows = [[_xlsx_value(v) for v in rec] for rec in df.itertuples(index=False, name=None)]
            sheet = book.create_sheet(_sheet_title(name, used))
            sheet.freeze_panes = "A2"
            for i, col in enumerate(columns):
                sample = [len(str(r[i])) for r in rows[:200] if r[i] is not None]
                sheet.column_dimensions[get_column_letter(i + 1)].width = min(max([len(col), *sample]) + 2, 60)
            header = []
            for col in columns:
                cell = _text_cell(sheet, _xlsx_value(col))
                cell.font = bold
                header.append(cell)
            sheet.append(header)
            for record in rows:
                sheet.append([_text_cell(sheet, v) if isinstance(v, str) and v.startswith("=") else v
                              for v in record])
        book.save(tmp)
    return Path(path)


def _sheet_title(name: str, used: set[str]) -> str:
    """An Excel sheet name: no [ ] : * ? / or backslash, at most 31 characters, unique ignoring case."""
    base = "".join("_" if ch in '[]:*?/\\' or ord(ch) < 32 else ch for ch in str(name)).strip("'")[:31] or "sheet"
    title, k = base, 2
    while title.casefold() in used:
        tail = f"~{k}"
        title, k = base[: 31 - len(tail)] + tail, k + 1
    used.add(title.casefold())
    return title


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars, dates, NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _xlsx_value(value: Any) -> Any:
    """A cell openpyxl stores as it is: None for missing, naive datetimes, id lists joined, JSON, clean text."""
    if is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, dt.date)):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.replace(tzinfo=None)
        return value
    if isinstance(value, (list, tuple)):
        value = _listed(value)
    elif isinstance(value, (set, dict, np.ndarray)):
        value = json.dumps(jsonable(value), ensure_ascii=False)
    return _ILLEGAL_XLSX.sub("", str(value))


def _text_cell(sheet: Any, value: str) -> Any:
    """A cell that keeps text starting with ``=`` as text (openpyxl would store a formula)."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def write_geojson(frame: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a GeoDataFrame as GeoJSON in EPSG:4326, atomically (id lists stay JSON arrays)."""
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
            pyogrio.write_dataframe(_flat(gdf), tmp, **kwargs)
        if target.suffix.lower() == ".shp":
            for ext in (".shx", ".dbf", ".prj", ".cpg"):
                side = tmp.with_suffix(ext)
                if side.exists():
                    os.replace(side, target.with_suffix(ext))
    return target
