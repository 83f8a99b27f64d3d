"""Reading layers, tables and the config file.

Readers turn every library failure (pyogrio ``DataSourceError``, fiona
``DriverError``, ``UnicodeDecodeError``, ``OSError``) into an
:class:`~gisgrid.InputError` that names the file and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import sys
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from gisgrid._errors import ConfigError, CRSError, InputError
from gisgrid.crs import OFFSET_DATUMS, bd09_to_wgs84, check_coordinates, gcj02_to_wgs84, parse_crs
from gisgrid.vocab import is_missing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Rows", "detect_encoding", "list_layers", "read_config", "read_layer", "read_table", "read_values"]

logger = logging.getLogger(__name__)

_VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".kml", ".fgb", ".gml", ".zip"}
_WKT_COLUMNS = ("wkt", "WKT", "geometry", "geom", "the_geom", "几何")
_LON_COLUMNS = ("lon", "lng", "longitude", "x", "经度", "LON", "Longitude", "X")
_LAT_COLUMNS = ("lat", "latitude", "y", "纬度", "LAT", "Latitude", "Y")
_SNIFF_BYTES = 4 * 1024 * 1024


# --------------------------------------------------------------------------- encodings
def _decode_probe(data: bytes) -> str | None:
    """Return 'utf-8', 'gb18030' or None for bytes that decode as neither."""
    if not data or data.isascii():
        return "utf-8"
    for enc in ("utf-8", "gb18030"):
        try:
            data.decode(enc, errors="strict")
        except UnicodeDecodeError:
            continue
        return enc
    return None


def _dbf_text_bytes(dbf: Path) -> bytes:
    """Field names and record bytes of a .dbf (what an encoding applies to)."""
    with dbf.open("rb") as fh:
        return _dbf_text_from(fh)


def _dbf_text_from(fh: Any) -> bytes:
    head = fh.read(32)
    if len(head) < 32:
        return b""
    header_len, record_len = struct.unpack("<HH", head[8:12])
    descriptors = fh.read(max(header_len - 32, 0))
    names = b"".join(
        descriptors[i : i + 11].split(b"\x00")[0]
        for i in range(0, len(descriptors) - 1, 32)
        if descriptors[i : i + 1] != b"\r"
    )
    fh.seek(header_len)
    body = fh.read(_SNIFF_BYTES - (_SNIFF_BYTES % max(record_len, 1)))
    return names + b" " + body


def _zip_shapefile_encoding(path: Path) -> str | None:
    """Encoding of the .dbf files inside a zipped shapefile (None when the zip holds none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            dbfs = [n for n in zf.namelist() if n.lower().endswith(".dbf")]
            parts = []
            for name in dbfs:
                with zf.open(name) as fh:
                    parts.append(_dbf_text_from(fh))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        msg = f"cannot be opened as a zip archive ({exc})."
        raise InputError(msg, path=path, fix="check the file is complete; copy it again or zip it again") from None
    if not dbfs:
        return None
    enc = _decode_probe(b" ".join(parts))
    if enc is None:
        msg = "the text of the shapefile in it is neither UTF-8 nor GBK/GB18030."
        raise InputError(msg, path=path, fix='give the encoding in the config, e.g. encoding = "big5"')
    return enc


def detect_encoding(path: str | os.PathLike[str]) -> str:
    """Detect the text encoding of a Shapefile's .dbf or a CSV file.

    Strict UTF-8 first, then GB18030 (a superset of GBK/GB2312). A ``.cpg``
    file is never trusted over the bytes: offices write ``ANSI 936`` or
    ``65001`` whatever the data really is.

    Parameters
    ----------
    path
        A ``.shp``, ``.dbf`` or ``.csv``/``.txt`` file.

    Returns
    -------
    str
        ``"utf-8"`` or ``"gb18030"``.

    Raises
    ------
    InputError
        When the bytes are neither.
    """
    p = Path(path)
    if p.suffix.lower() in {".shp", ".dbf", ".shx"}:
        dbf = _sibling(p, ".dbf")
        data = _dbf_text_bytes(dbf) if dbf else b""
    else:
        with p.open("rb") as fh:
            data = fh.read(_SNIFF_BYTES)
        data = data.removeprefix(b"\xef\xbb\xbf")
        # A cut in the middle of a multi-byte character would fail strict decoding.
        if len(data) == _SNIFF_BYTES:
            data = data[: data.rfind(b"\n") + 1] or data
    enc = _decode_probe(data)
    if enc is None:
        msg = "its text is neither UTF-8 nor GBK/GB18030."
        raise InputError(msg, path=p, fix='give the encoding in the config, e.g. encoding = "big5"')
    return enc


def _sibling(path: Path, suffix: str) -> Path | None:
    for cand in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if cand.exists():
            return cand
    return None


# --------------------------------------------------------------------------- reading
def _gdal_reason(exc: BaseException, path: Path) -> str:
    """GDAL's complaint in a few words: no SQL statement, no repeated path, no exception class."""
    text = " ".join(str(exc).split()).replace(f"'{path}'", "the file").replace(str(path), "the file")
    if "failed: " in text:  # the SQLite driver prefixes the statement that failed
        text = text.rsplit("failed: ", 1)[1]
    text = text.replace("the file not recognized", "not recognized")
    parts = list(dict.fromkeys(part.strip(" .") for part in text.split(";")
                               if part.strip(" .") and not part.strip().startswith("It might help")))
    text = "; ".join(parts) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def list_layers(path: str | os.PathLike[str]) -> list[str]:
    """Names of the layers (and attribute tables) in a GeoPackage, KML or other multi-layer file.

    Raises
    ------
    InputError
        When the file is missing, damaged or truncated.
    """
    p = Path(path)
    if not p.exists():
        msg = "the file does not exist."
        raise InputError(msg, path=p, fix="check the path (paths in a config are relative to the config file)")
    try:
        return [str(n) for n in pyogrio.list_layers(p)[:, 0]]
    except Exception as exc:  # noqa: BLE001 - GDAL and zip readers raise many types
        msg = f"cannot be opened: the file is damaged, truncated or not a vector file ({_gdal_reason(exc, p)})."
        raise InputError(msg, path=p, fix="check the file is complete; copy it again or re-export it") from None


def _check_shapefile(path: Path) -> None:
    """Refuse a shapefile whose companions are missing or whose .shp is cut short."""
    if _sibling(path, ".dbf") is None:
        msg = "the .dbf file beside it is missing, so every attribute (ids, names) would be lost."
        raise InputError(msg, path=path, fix="copy the .dbf (and .shx, .prj, .cpg) next to the .shp")
    shx = _sibling(path, ".shx")
    if shx is None:
        msg = "the .shx index beside it is missing."
        raise InputError(msg, path=path, fix="copy the .shx next to the .shp, or re-export the layer")
    shp_size = path.stat().st_size
    data = shx.read_bytes()
    if len(data) < 100:
        msg = "the .shx index is truncated."
        raise InputError(msg, path=shx, fix="re-export the layer")
    (declared,) = struct.unpack(">i", path.read_bytes()[24:28]) if shp_size >= 28 else (0,)
    n = (len(data) - 100) // 8
    if n:
        recs = np.frombuffer(data[100 : 100 + 8 * n], dtype=">i4").reshape(n, 2)
        end = int(((recs[:, 0].astype(np.int64) + recs[:, 1] + 4) * 2).max())
    else:
        end = 100
    if shp_size < max(end, declared * 2):
        msg = (
            f"the .shp file is truncated: {shp_size} bytes, but its index expects {max(end, declared * 2)}; "
            "features at the end have no geometry."
        )
        raise InputError(msg, path=path, fix="copy the file again or re-export the layer")


def _read_csv_layer(path: Path, *, encoding: str | None, layer: str | None) -> gpd.GeoDataFrame:
    df = read_table(path, encoding=encoding)
    wkt = next((c for c in _WKT_COLUMNS if c in df.columns), None)
    if wkt is not None:
        text = df[wkt].astype(object).where(df[wkt].notna(), None)
        try:
            geoms = shapely.from_wkt(text.to_numpy(dtype=object), on_invalid="raise")
        except shapely.errors.GEOSException as exc:
            parsed = shapely.from_wkt(text.to_numpy(dtype=object), on_invalid="ignore")
            bad = np.flatnonzero(pd.isna(parsed) & text.notna().to_numpy())
            line = int(df.index[bad[0]]) + 2 if len(bad) else None
            msg = f"column '{wkt}' holds text that is not WKT ({exc})."
            raise InputError(msg, path=path, column=wkt, row=line,
                             fix="write geometries as WKT, e.g. POINT (121.2 32.1)") from None
        return gpd.GeoDataFrame(df.drop(columns=[wkt]), geometry=geoms)
    lon = next((c for c in _LON_COLUMNS if c in df.columns), None)
    lat = next((c for c in _LAT_COLUMNS if c in df.columns), None)
    if lon is None or lat is None:
        msg = f"no geometry column: expected one of {list(_WKT_COLUMNS)} or a lon/lat pair (lon, lat, 经度, 纬度)."
        raise InputError(msg, path=path, layer=layer, fix="add a WKT column or longitude and latitude columns")
    x = pd.to_numeric(df[lon], errors="coerce")
    y = pd.to_numeric(df[lat], errors="coerce")
    bad = df.index[x.isna() | y.isna()]
    if len(bad):
        msg = f"{len(bad)} rows have no numeric {lon}/{lat} (first: row {int(bad[0]) + 2} of the file)."
        raise InputError(msg, path=path, column=lon, fix="fill in the coordinates or remove the rows")
    return gpd.GeoDataFrame(df.drop(columns=[lon, lat]), geometry=gpd.points_from_xy(x, y))


def _apply_declared_crs(gdf: gpd.GeoDataFrame, declared: Any, where: dict[str, Any]) -> gpd.GeoDataFrame:
    parsed = parse_crs(declared, where=where)
    if isinstance(parsed, str) and parsed in OFFSET_DATUMS:
        check_coordinates(gdf.total_bounds, pyproj.CRS.from_epsg(4326), where=where)
        fn = gcj02_to_wgs84 if parsed == "GCJ-02" else bd09_to_wgs84

        def shift(coords: np.ndarray) -> np.ndarray:
            lon, lat = fn(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        out = gdf.copy()
        out.geometry = shapely.transform(gdf.geometry.values, shift)
        logger.info("%s: converted %s coordinates to WGS84", where.get("path"), parsed)
        return out.set_crs(4326, allow_override=True)
    return gdf.set_crs(parsed, allow_override=True)


@dataclass(frozen=True)
class Rows:
    """Some rows of a layer or table, chosen before it is read: a district town's share of a shared layer.

    Attributes
    ----------
    positions : tuple of int
        The rows' 0-based positions in the file (the feature numbers :func:`read_layer` gives; a table's
        data rows, file line = position + 2), ascending.
    fids : tuple of int or None
        Their GDAL feature ids in the same order (read by id, so only these rows are read); None for a CSV
        layer or a table, which is read whole and then cut to ``positions``.
    by, value
        What the rows have in common: the canonical column (after the field mapping) and its value, the
        town's id (checked after reading by :func:`gisgrid.pipeline.load_town`).
    column
        The source's own name of ``by`` (for messages).
    hint
        Said in the fix when no row has ``value`` (the nearest value the source has).
    """

    positions: tuple[int, ...]
    fids: tuple[int, ...] | None = None
    by: str = ""
    value: str = ""
    column: str = ""
    hint: str = ""


def _vector_encoding(p: Path, *, layer: str | None, encoding: str | None) -> str | None:
    """Check a vector file before GDAL opens it (companions, type, layer); return its attribute encoding."""
    if not p.exists():
        msg = "the file does not exist."
        raise InputError(msg, path=p, fix="check the path (paths in a config are relative to the config file)")
    suffix = p.suffix.lower()
    if suffix == ".shp":
        _check_shapefile(p)
        if encoding is None:
            encoding = detect_encoding(p)
    elif suffix == ".zip" and encoding is None:  # a zipped shapefile: same distrust of .cpg
        encoding = _zip_shapefile_encoding(p)
    elif suffix not in _VECTOR_SUFFIXES:
        msg = f"unknown file type '{suffix}'."
        raise InputError(msg, path=p, fix="use .gpkg, .shp, .geojson, .kml or .csv")
    if layer is not None and suffix in {".gpkg", ".kml"}:
        names = list_layers(p)
        if layer not in names:
            msg = f"has no layer '{layer}'; it has {names}."
            raise InputError(msg, path=p, layer=layer, fix="set layer to one of those")
    return encoding


def _read_gdal(p: Path, *, layer: str | None, encoding: str | None, **options: Any) -> Any:
    """``pyogrio.read_dataframe`` with every failure an :class:`InputError` naming the file and layer."""
    where: dict[str, Any] = {"path": p, "layer": layer}
    try:
        with _gdal_warnings_as_log():
            return pyogrio.read_dataframe(p, layer=layer, encoding=encoding, **options)
    except UnicodeDecodeError as exc:
        msg = f"its text cannot be decoded as {encoding} ({exc.reason})."
        raise InputError(msg, **where, fix='give the right encoding in the config, e.g. encoding = "gbk"') from None
    except Exception as exc:  # noqa: BLE001 - GDAL and zip readers raise many types
        msg = f"cannot be read: the file is damaged, truncated or not a vector file ({_gdal_reason(exc, p)})."
        fix = "check the file is complete and a supported format; copy it again or re-export it"
        if "fids" in options:
            fix = "the file may have changed while the district ran: run again; else " + fix
        raise InputError(msg, **where, fix=fix) from None


def _at_positions(frame: Any, rows: Rows, where: dict[str, Any]) -> Any:
    """``frame`` (read by feature id, ids as its index) indexed by the rows' positions in the file."""
    position = dict(zip(rows.fids or (), rows.positions, strict=True))
    missing = sorted(set(position) - set(frame.index))
    if missing:
        msg = f"features {missing[:5]} were not found: the file changed while the district ran."
        raise InputError(msg, **where, fix="run again once the file is no longer being written")
    out = frame.loc[list(position)]
    out.index = pd.Index(list(position.values()))
    return out


def read_layer(
    path: str | os.PathLike[str],
    *,
    layer: str | None = None,
    encoding: str | None = None,
    crs: Any = None,
    rows: Rows | None = None,
) -> gpd.GeoDataFrame:
    """Read a vector layer: GeoPackage, Shapefile, GeoJSON, KML, or CSV with WKT or lon/lat.

    Parameters
    ----------
    path
        The file.
    layer
        Layer name inside a multi-layer file (GeoPackage, KML).
    encoding
        Attribute encoding; detected for Shapefiles and CSV when None
        (strict UTF-8, then GB18030; a ``.cpg`` is not trusted).
    crs
        Declared CRS: overrides the file's, or gives one where the file has
        none. ``"GCJ-02"`` and ``"BD-09"`` are converted to WGS84.
    rows
        Only these rows (by feature id where GDAL reads the file, else cut after reading), before the
        checks of :func:`finish_layer`: a district town's share of a shared layer.

    Returns
    -------
    GeoDataFrame
        With a CRS, and its index the 0-based feature number in the file.

    Raises
    ------
    InputError, CRSError
    """
    p = Path(path)
    where: dict[str, Any] = {"path": p, "layer": layer}
    if not p.exists():
        msg = "the file does not exist."
        raise InputError(msg, path=p, fix="check the path (paths in a config are relative to the config file)")
    suffix = p.suffix.lower()
    if suffix in {".csv", ".txt"}:
        gdf = _read_csv_layer(p, encoding=encoding, layer=layer)
        if rows is not None:
            gdf = gdf.loc[list(rows.positions)]
    else:
        encoding = _vector_encoding(p, layer=layer, encoding=encoding)
        if rows is not None and rows.fids is not None:
            gdf = _at_positions(_read_gdal(p, layer=layer, encoding=encoding, fids=list(rows.fids),
                                           fid_as_index=True), rows, where)
        else:
            gdf = _read_gdal(p, layer=layer, encoding=encoding)
            if rows is not None:
                gdf = gdf.loc[list(rows.positions)]
        if gdf.crs is None and crs is None and gdf.geometry.notna().any():
            msg = "the layer has no CRS (no .prj, or a GeoPackage without a spatial reference)."
            raise CRSError(msg, **where, fix='declare it in the config: crs = "EPSG:4490" (or the CRS it is in)')
    return finish_layer(gdf, crs=crs, where=where, source={"path": str(p), "layer": layer})


def read_values(path: str | os.PathLike[str], columns: Sequence[str], *, layer: str | None = None,
                encoding: str | None = None, table: bool = False) -> pd.DataFrame:
    """Some attribute columns of a layer or table, without geometry: what a district reads to split shared layers.

    Parameters
    ----------
    path
        A vector file (as :func:`read_layer`) or, with ``table``, a roster (as :func:`read_table`).
    columns
        The columns wanted; those the source lacks are left out (``attrs["columns"]`` lists every column
        it has, for a did-you-mean).
    layer
        The layer (or, with ``table``, the sheet).
    encoding
        As for :func:`read_layer` and :func:`read_table`.
    table
        Read a table (CSV, XLSX or a GeoPackage attribute table) rather than a layer.

    Returns
    -------
    DataFrame
        Index: each row's 0-based position (as :func:`read_layer` and :func:`read_table` number them);
        the wanted columns as read (no mapping), and ``fid``: the GDAL feature id of each row (the
        position for a CSV layer or a table).
    """
    p = Path(path)
    if table or p.suffix.lower() in {".csv", ".txt"}:
        df = read_table(p, encoding=encoding, sheet=layer if table else None)
        have = [str(c) for c in df.columns]
        out = df[[c for c in columns if c in have]].copy()
        out["fid"] = np.arange(len(out))
    else:
        encoding = _vector_encoding(p, layer=layer, encoding=encoding)
        try:
            have = [str(c) for c in pyogrio.read_info(p, layer=layer, encoding=encoding)["fields"]]
        except Exception as exc:  # noqa: BLE001 - GDAL raises many types
            msg = f"cannot be read: the file is damaged, truncated or not a vector file ({_gdal_reason(exc, p)})."
            raise InputError(msg, path=p, layer=layer, fix="check the file is complete; copy it again") from None
        wanted = [c for c in columns if c in have]
        df = _read_gdal(p, layer=layer, encoding=encoding, columns=wanted, read_geometry=False, fid_as_index=True)
        out = pd.DataFrame({c: df[c].to_numpy() for c in wanted}, index=pd.RangeIndex(len(df)))
        out["fid"] = df.index.to_numpy()
    out.attrs["columns"] = have
    return out


def finish_layer(gdf: gpd.GeoDataFrame, *, crs: Any, where: dict[str, Any], source: dict[str, Any]
                 ) -> gpd.GeoDataFrame:
    """The one post-read path of every layer source (files and PostGIS): declared CRS, GCJ-02, coordinates.

    ``crs`` (the config's ``crs =``) overrides or supplies the layer's CRS, converting GCJ-02/BD-09; a
    layer with geometry and no CRS is refused; the coordinates must fit the CRS. ``source`` goes into
    ``attrs["source"]`` (what ``Town`` records and ``gisgrid check`` shows).
    """
    if crs is not None:
        gdf = _apply_declared_crs(gdf, crs, where)
    elif gdf.crs is None:
        if len(gdf) and gdf.geometry.notna().any():
            msg = "the layer has no CRS."
            raise CRSError(msg, **where, fix='declare it in the config: crs = "EPSG:4490" (or the CRS it is in)')
        gdf = gdf.set_crs(4326)
    if len(gdf) and gdf.geometry.notna().any():
        _refuse_non_finite(gdf, where=where, source=source)
        _refuse_missing_zone_prefix(gdf.total_bounds, gdf.crs, where=where)
        check_coordinates(gdf.total_bounds, gdf.crs, where=where)
    gdf = show_controls(gdf)
    gdf.attrs["source"] = source
    return gdf


def _refuse_missing_zone_prefix(bounds: Any, crs: Any, *, where: dict[str, Any]) -> None:
    """Refuse eastings without the zone prefix that a prefixed Gauss-Kruger CRS (EPSG:4513-4533) expects."""
    if crs is None:
        return
    crs = pyproj.CRS(crs)
    op = crs.coordinate_operation
    x0 = next((p.value for p in op.params if p.name.lower() == "false easting"), 0.0) if op is not None else 0.0
    if x0 < 1_000_000 or not np.isfinite(bounds[2]) or bounds[2] >= 1_000_000:
        return
    zone = int(x0 // 1_000_000)
    epsg = crs.to_epsg()
    plain = f"EPSG:{epsg + 21}" if epsg is not None and 4513 <= epsg <= 4533 else "the same zone's CM code"
    msg = (f"the eastings (x {bounds[0]:,.0f}…{bounds[2]:,.0f}) have no zone prefix, but the layer is labelled "
           f"{crs.name}, whose eastings start with the zone number {zone} (e.g. {zone}500000).")
    raise CRSError(msg, **where, fix=f'declare crs = "{plain}" for this layer (the zone without the prefix), or '
                   "add the prefix to the coordinates")


def _refuse_non_finite(gdf: gpd.GeoDataFrame, *, where: dict[str, Any], source: dict[str, Any]) -> None:
    """Refuse NaN or infinite coordinates on reading, naming the layer and the features.

    They would pass for no data in the bounds (the CRS check, the choice of the analysis CRS) and break GEOS later.
    """
    xy, owner = shapely.get_coordinates(np.asarray(gdf.geometry.values), return_index=True)
    bad = np.unique(owner[~np.isfinite(xy).all(axis=1)])
    if not bad.size:
        return
    table = str(source.get("path") or "").lower().endswith((".csv", ".txt"))  # file lines: the header is line 1
    rows = [int(gdf.index[r]) + (2 if table else 0) for r in bad[:5]]  # the index: the feature number in the file
    label = f"{'line' if table else 'feature'}{'s' if bad.size > 1 else ''} {', '.join(map(str, rows))}" + (
        f" and {bad.size - 5} more" if bad.size > 5 else "")
    name = source.get("layer") or Path(str(source.get("path") or "layer")).stem
    msg = f"the {name} layer has NaN or infinite coordinates in {label}: such a feature cannot be placed on the map."
    raise InputError(msg, **{**where, "row": rows[0]}, fix=f"correct or delete those features in the {name} layer "
                     "(a GIS can select them by an invalid or empty geometry)")


#: The warning filters are one per process: two threads reading at once (a district on the threads
#: scheduler) would restore each other's filters mid-read. One read at a time records its warnings.
_RECORDING = threading.Lock()


@contextlib.contextmanager
def _gdal_warnings_as_log() -> Iterator[None]:
    import warnings

    with _RECORDING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "invalid value encountered" in str(w.message):
            continue  # numpy decoding a NaN coordinate: check_coordinates refuses it, naming the feature
        logger.warning("%s", w.message)


def read_table(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """Read a roster from CSV or XLSX, every cell as text.

    Text is kept as text (phone numbers and ids with leading zeros survive);
    empty cells are None. CSV encoding is detected when not given (strict
    UTF-8, then GB18030: Excel in China saves CSV as GBK).

    Parameters
    ----------
    path
        ``.csv``/``.txt`` or ``.xlsx``/``.xlsm``.
    encoding
        CSV encoding; detected when None.
    sheet
        Sheet name or 0-based number for XLSX (default the first).

    Returns
    -------
    DataFrame
        Index = 0-based data row (file line = index + 2).
    """
    p = Path(path)
    if not p.exists():
        msg = "the file does not exist."
        raise InputError(msg, path=p, fix="check the path (paths in a config are relative to the config file)")
    suffix = p.suffix.lower()
    if suffix == ".gpkg":
        try:
            df = pyogrio.read_dataframe(p, layer=sheet, read_geometry=False)
        except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise many types
            msg = f"table {sheet!r} cannot be read ({_gdal_reason(exc, p)})."
            raise InputError(msg, path=p, layer=None if sheet is None else str(sheet),
                             fix="check the layer name") from None
        df = _text_frame(df)
    elif suffix in {".xlsx", ".xlsm"}:
        try:
            df = pd.read_excel(p, sheet_name=0 if sheet is None else sheet, dtype=object, engine="openpyxl")
        except ValueError as exc:
            msg = f"sheet {sheet!r} cannot be read ({exc})."
            raise InputError(msg, path=p, layer=None if sheet is None else str(sheet),
                             fix="set sheet to an existing sheet name") from None
        except Exception as exc:  # noqa: BLE001 - GDAL and zip readers raise many types
            msg = f"cannot be read as an Excel workbook ({type(exc).__name__}: {exc})."
            raise InputError(msg, path=p, fix="open and save it again in Excel, or export it as CSV") from None
        df = _text_frame(df)
    elif suffix in {".csv", ".txt"}:
        enc = encoding or detect_encoding(p)
        try:
            df = pd.read_csv(p, dtype=str, encoding="utf-8-sig" if enc == "utf-8" else enc, keep_default_na=False)
        except UnicodeDecodeError as exc:
            msg = f"its text cannot be decoded as {enc} ({exc.reason})."
            raise InputError(msg, path=p, fix='give the right encoding in the config, e.g. encoding = "gbk"') from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            msg = f"is not a readable CSV table ({exc})."
            raise InputError(msg, path=p, fix="check the file has a header row and one record per line") from None
        df = df.astype(object).where(df != "", None)
    else:
        msg = f"unknown table type '{suffix}'."
        raise InputError(msg, path=p, fix="use .csv or .xlsx")
    df.columns = [str(c).strip() for c in df.columns]
    df = show_controls(df)
    df.attrs["source"] = {"path": str(p), "layer": None if sheet is None else str(sheet)}
    return df.reset_index(drop=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def show_text(text: str) -> str:
    r"""``text`` with control characters (a terminal escape sequence, a bell) written out as ``\x1b``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def show_controls(frame: Any) -> Any:
    """The text cells of ``frame`` with control characters written out (:func:`show_text`), on reading.

    A name that carries an escape sequence would otherwise reach the terminal, the cron mail, every CSV,
    XLSX and HTML page; tabs and line breaks stay (CSV quotes them). Returns ``frame`` itself (changed in
    place: it was just read) so that its attrs stay.
    """
    for col in frame.columns:
        if col == getattr(frame, "_geometry_column_name", None) or not (
                frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col])):
            continue
        hit = frame[col].map(lambda v: isinstance(v, str) and _CONTROL.search(v) is not None).to_numpy(bool)
        if hit.any():
            values = frame[col].to_numpy(copy=True)
            values[hit] = [show_text(v) for v in values[hit]]
            frame[col] = values
    return frame


def _text_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text or None, in object columns (pandas 3 would infer str and turn None into NaN)."""
    cols = {i: pd.Series([_cell_text(v) for v in df.iloc[:, i]], index=df.index, dtype=object)
            for i in range(df.shape[1])}
    out = pd.DataFrame(cols, index=df.index)
    out.columns = df.columns
    return out


def _cell_text(value: Any) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file; the result carries ``_path`` and ``_dir`` for resolving paths."""
    p = Path(path)
    if not p.exists():
        msg = "the config file does not exist."
        raise ConfigError(msg, path=p, fix="give the path of a gisgrid.toml (gisgrid demo writes an example)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        msg = "the config file is not UTF-8."
        raise ConfigError(msg, path=p, fix="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"the config file is not valid TOML ({exc})."
        fix = "correct the line named above"
        if "\\" in str(exc):  # ".\data\town.gpkg" in double quotes: a backslash starts an escape in TOML
            fix += ("; write Windows paths with forward slashes (./town.gpkg), in single quotes ('.\\town.gpkg') "
                    "or with doubled backslashes")
        raise ConfigError(msg, path=p, fix=fix) from None
    data["_path"] = str(p.resolve())
    data["_dir"] = str(p.resolve().parent)
    return data
