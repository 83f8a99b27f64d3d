"""Writing tables and layers: CSV, XLSX, GeoJSON and GeoPackage, atomically and formula-safe."""

from __future__ import annotations

import contextlib
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
import shapely

from gisgrid.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from gisgrid.vocab import is_missing

__all__ = ["FORMULA_STARTS", "PendingFile", "defuse", "jsonable", "start_xlsx", "write_csv", "write_geojson",
           "write_layers", "write_xlsx"]


#: A cell starting with one of these is read as a formula by spreadsheet programs (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Control characters XML 1.0 cannot hold (a workbook with one does not open).
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


#: Cells up to which a workbook is assembled in memory (about 170 bytes a cell at its peak); a larger one is
#: streamed row by row through a temporary file per sheet (constant memory, but a file per sheet costs time
#: when there are hundreds of small sheets).
XLSX_IN_MEMORY_CELLS = 1_000_000


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> Path:
    """Write several tables as sheets of one XLSX workbook, atomically.

    The one XLSX writer of the package: XlsxWriter (about 1.7 times as fast as
    openpyxl's write-only mode, see ``benchmarks/bench_report.py``), in memory up
    to :data:`XLSX_IN_MEMORY_CELLS` cells, else streaming rows to disk. Geometry
    columns and the index are left out; the header row is bold, frozen and
    has a filter on every column; the columns are as wide as their first 200 values (at most 60); text cells
    go through :func:`defuse` and lose the control characters XML cannot hold,
    and text is always written as text, never as a formula, number or link;
    dates read as ``yyyy-mm-dd``; sheet names are cut to Excel's 31 characters
    and made unique.

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
    import xlsxwriter

    used: set[str] = set()
    cells = sum(int(np.prod(getattr(frame, "shape", (0, 0)))) for frame in sheets.values())
    mode = {"in_memory": True} if cells <= XLSX_IN_MEMORY_CELLS else {"constant_memory": True}
    with atomic_path(path) as tmp:
        # text stays text: no formulas, numbers or links guessed from it; NaN/inf never reach a cell
        book = xlsxwriter.Workbook(str(tmp), {
            **mode, "strings_to_formulas": False, "strings_to_numbers": False,
            "strings_to_urls": False, "default_date_format": "yyyy-mm-dd", "remove_timezone": True})
        bold = book.add_format({"bold": True})
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        try:
            for name, frame in sheets.items():
                df = pd.DataFrame(frame)
                if isinstance(frame, gpd.GeoDataFrame):
                    df = df.drop(columns=[frame.geometry.name])
                df = df.drop(columns=["geometry"], errors="ignore")
                sheet = book.add_worksheet(_sheet_title(name, used))
                columns = [_xlsx_value(str(c)) for c in df.columns]
                cols = [_xlsx_column(df.iloc[:, i]) for i in range(df.shape[1])]
                for i, (col, values) in enumerate(zip(columns, cols, strict=True)):
                    sample = [len(str(v)) for v in values[:200] if v is not None]
                    sheet.set_column(i, i, min(max([len(col), *sample]) + 2, 60))
                sheet.freeze_panes(1, 0)
                if columns:
                    sheet.autofilter(0, 0, len(df), len(columns) - 1)
                for i, col in enumerate(columns):
                    sheet.write_string(0, i, col, bold)
                text, number = sheet.write_string, sheet.write_number
                for r, record in enumerate(zip(*cols, strict=True), start=1):
                    for c, v in enumerate(record):
                        kind = type(v)
                        if v is None:
                            continue
                        if kind is str:
                            text(r, c, v)
                        elif kind is float or kind is int:
                            number(r, c, v)
                        elif kind is bool:
                            sheet.write_boolean(r, c, v)
                        elif isinstance(v, dt.datetime):
                            sheet.write_datetime(r, c, v, stamp)
                        else:  # a date (_xlsx_value leaves nothing else)
                            sheet.write_datetime(r, c, v, day)
        finally:
            book.close()
    return Path(path)


def _xlsx_column(series: pd.Series) -> list[Any]:
    """A column's cells as :func:`_xlsx_value` gives them; numbers without a Python call per cell."""
    if pd.api.types.is_bool_dtype(series):
        return [None if is_missing(v) else bool(v) for v in series.tolist()]
    if pd.api.types.is_numeric_dtype(series):
        arr = series.to_numpy(dtype=float, na_value=np.nan)
        values: list[Any] = arr.tolist()
        if not np.isfinite(arr).all():
            values = [v if math.isfinite(v) else None for v in values]
        elif pd.api.types.is_integer_dtype(series):
            values = [int(v) for v in values]
        return values
    return [_xlsx_value(v) for v in series.tolist()]


def _sheet_title(name: str, used: set[str]) -> str:
    """An Excel sheet name: no [ ] : * ? / or backslash, at most 31 UTF-16 units, unique ignoring case.

    No ``'`` at either end, and not Excel's reserved ``History``.
    """
    base = "".join("_" if ch in '[]:*?/\\' or ord(ch) < 32 else ch for ch in str(name))
    base = _utf16_cut(base.strip("'"), 31).strip("'") or "sheet"
    title, k = base, 2
    while title.casefold() in used or title.casefold() == "history":
        tail = f"~{k}"
        title, k = _utf16_cut(base, 31 - len(tail)).rstrip("'") + tail, k + 1
    used.add(title.casefold())
    return title


def _utf16_cut(text: str, units: int) -> str:
    """The longest start of ``text`` that is at most ``units`` UTF-16 code units (Excel counts those)."""
    out, n = [], 0
    for ch in text:
        n += 2 if ord(ch) > 0xFFFF else 1
        if n > units:
            break
        out.append(ch)
    return "".join(out)


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
    """A cell value the XLSX writer stores as it is.

    None for missing, naive datetimes, id lists joined, JSON, text defused
    (:func:`defuse`) and without the control characters XML cannot hold.
    """
    if type(value) is str:  # most cells: no call below
        text = value
    elif is_missing(value):
        return None
    else:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, (bool, int, dt.date)):
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                return value.replace(tzinfo=None)
            return value
        if isinstance(value, (list, tuple)):
            text = _listed(value)
        elif isinstance(value, (set, dict, np.ndarray)):
            text = json.dumps(jsonable(value), ensure_ascii=False)
        else:
            text = str(value)
    if not text.isprintable():  # tabs and newlines stay; other control characters go
        text = _ILLEGAL_XLSX.sub("", text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class PendingFile:
    """A file being written by a child process (:func:`start_xlsx`); :meth:`result` waits for it."""

    def __init__(self, path: Path, pid: int | None = None, fd: int | None = None,
                 error: BaseException | None = None) -> None:
        self.path, self._pid, self._fd, self._error = path, pid, fd, error

    def result(self) -> Path:
        """Wait for the file; raise the child's error as the parent's (OSError keeps its errno: a full disk)."""
        if self._error is not None:  # written in place, and that failed: said here, as a child's error would be
            raise self._error
        if self._pid is None:
            return self.path
        with os.fdopen(self._fd or 0, "rb") as pipe:
            said = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if said:
            info = json.loads(said.decode("utf-8"))
            if info.get("errno") is not None:
                raise OSError(info["errno"], info["text"], str(self.path))
            msg = f"writing {self.path.name} failed: {info['type']}: {info['text']}"
            raise RuntimeError(msg)
        if os.waitstatus_to_exitcode(status) != 0:
            msg = f"the process writing {self.path.name} ended with status {os.waitstatus_to_exitcode(status)}"
            raise RuntimeError(msg)
        return self.path

    def cancel(self) -> None:
        """Stop the child (the caller failed before it needed the file); the file may or may not be there."""
        if self._pid is None:
            return
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        with contextlib.suppress(OSError):
            os.close(self._fd or 0)
        self._pid = None


def _can_fork() -> bool:
    import threading

    # fork() copies only the calling thread: a lock another thread holds stays held in the child for ever (a
    # town run in a Dask worker thread hung in its child's fork handlers). So: from the main thread only, and
    # with no other threads than gisgrid's own (the cleaned-grids thread does GEOS work) and the CLI progress
    # bar's monitor, which take no lock the child needs. Python 3.12+ also warns about the rest.
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    return (hasattr(os, "fork") and threading.current_thread() is threading.main_thread()
            and all(t.name.startswith(_HARMLESS_THREADS) for t in others))


_HARMLESS_THREADS = ("gisgrid-", "tqdm_monitor")


def start_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | os.PathLike[str]) -> PendingFile:
    """Start :func:`write_xlsx` in a forked child; where fork is not safe or not there, write it now.

    The caller renders its page meanwhile: on two cores the workbook no longer adds its seconds.

    Returns
    -------
    PendingFile
        ``.result()`` waits and returns the path, raising the child's error; ``.cancel()`` stops it.
    """
    target = Path(path)
    if not _can_fork():
        try:
            return PendingFile(write_xlsx(sheets, target))
        except OSError as exc:  # raised by result(), naming the workbook, as the forked child's would be
            return PendingFile(target, error=OSError(exc.errno, exc.strerror or str(exc), str(target)))
        except Exception as exc:  # noqa: BLE001
            return PendingFile(target, error=exc)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write, say what went wrong, and leave without running the parent's clean-up
        code = 1
        try:
            os.close(read)
            said = b""
            try:
                write_xlsx(sheets, target)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                said = json.dumps({"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                                   "text": str(exc)}).encode("utf-8")
            os.write(write, said)
            os.close(write)
        finally:
            os._exit(code)
    os.close(write)
    return PendingFile(target, pid, read)


def geojson_text(frame: gpd.GeoDataFrame) -> str:
    """``frame`` as a GeoJSON FeatureCollection: what ``GeoDataFrame.to_json(drop_id=True)`` gives, faster.

    The geometries are written by GEOS in one vectorised call and each row's properties by the C JSON
    encoder, instead of a Python mapping per coordinate (20,000 findings: about 5x faster). Missing values
    are null, empty geometries null, id tuples arrays, as in geopandas.
    """
    geoms = np.asarray(frame.geometry.values, dtype=object)
    shown = np.full(len(geoms), "null", dtype=object)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    if present.any():
        shown[present] = shapely.to_geojson(geoms[present])
    props = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    values = props.astype(object)
    values[pd.isna(props).to_numpy()] = None
    encode = json.JSONEncoder(ensure_ascii=False).encode
    cols = [str(c) for c in props.columns]
    features = ", ".join(f'{{"type": "Feature", "properties": {encode(dict(zip(cols, row, strict=True)))}, '
                         f'"geometry": {g}}}' for row, g in zip(values.to_numpy(), shown, strict=True))
    return f'{{"type": "FeatureCollection", "features": [{features}]}}'


def write_geojson(frame: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a GeoDataFrame as GeoJSON in EPSG:4326, atomically (id lists stay JSON arrays)."""
    out = frame.to_crs(4326) if frame.crs is not None else frame
    return atomic_write_text(path, geojson_text(out))


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
