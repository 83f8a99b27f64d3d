"""Coordinate reference systems: the analysis CRS, coordinate sanity checks, GCJ-02 and BD-09.

Chinese web maps publish coordinates in two offset systems that no EPSG code
describes: GCJ-02 (AMap/Gaode, Tencent) and BD-09 (Baidu). Data declared in
them is converted to WGS84 on load. The GCJ-02 forward formula is the public
one; its inverse has no closed form and is solved here by fixed-point
iteration to well under a millimetre.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import pyproj
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from gisgrid._errors import CRSError

__all__ = [
    "OFFSET_DATUMS",
    "analysis_crs",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "check_coordinates",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "gk_zone_crs",
    "parse_crs",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

logger = logging.getLogger(__name__)

#: Offset "datums" of Chinese web maps, by normalised name.
OFFSET_DATUMS = ("GCJ-02", "BD-09")

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by GCJ-02
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0
# Mainland China, generously: GCJ-02 offsets are applied only in here.
_CHINA = (72.0, 0.8, 137.9, 55.9)


@functools.lru_cache(maxsize=64)
def _to_lonlat(crs: pyproj.CRS) -> pyproj.Transformer:
    """Transformer from ``crs`` to WGS84 lon/lat, cached: building one costs ~60 ms (thread-safe since pyproj 3.1)."""
    return pyproj.Transformer.from_crs(crs, 4326, always_xy=True)


def _normalise_offset(value: str) -> str | None:
    key = value.strip().upper().replace("_", "").replace("-", "").replace(" ", "")
    return {"GCJ02": "GCJ-02", "BD09": "BD-09", "BD09LL": "BD-09"}.get(key)


def parse_crs(value: Any, *, where: dict[str, Any] | None = None) -> pyproj.CRS | str:
    """Parse a declared CRS: an EPSG/PROJ/WKT string or code, or ``"GCJ-02"`` / ``"BD-09"``.

    Parameters
    ----------
    value
        What the config or caller declared.
    where
        Location keywords for the error (``path``, ``layer``).

    Returns
    -------
    pyproj.CRS or str
        A CRS, or the normalised name of an offset datum.
    """
    if isinstance(value, pyproj.CRS):
        return value
    if isinstance(value, str):
        offset = _normalise_offset(value)
        if offset:
            return offset
    try:
        return pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        msg = f"unknown CRS {value!r} ({exc})."
        raise CRSError(
            msg,
            **(where or {}),
            fix='give an EPSG code such as "EPSG:4490" or "EPSG:4549", or "GCJ-02" / "BD-09"',
        ) from None


def gk_zone_crs(lon: float) -> pyproj.CRS:
    """Return the CGCS2000 3-degree Gauss-Kruger zone (EPSG:4534–4554, no zone prefix) nearest ``lon``."""
    cm = int(np.clip(np.round(lon / 3.0) * 3, 75, 135))
    return pyproj.CRS.from_epsg(4534 + (cm - 75) // 3)


def _lonlat_centre(gdf: Any) -> tuple[float, float]:
    if gdf.crs is None:
        msg = "the data has no CRS, so no analysis CRS can be chosen."
        raise CRSError(msg, fix="set one with .set_crs(...) or declare crs in the config")
    minx, miny, maxx, maxy = gdf.total_bounds
    if not np.all(np.isfinite([minx, miny, maxx, maxy])):
        msg = "the data is empty, so no analysis CRS can be chosen."
        raise CRSError(msg, fix="give a non-empty layer or an explicit analysis CRS")
    tr = _to_lonlat(pyproj.CRS.from_user_input(gdf.crs))
    lon, lat = tr.transform((minx + maxx) / 2.0, (miny + maxy) / 2.0)
    return float(lon), float(lat)


def analysis_crs(gdf: Any) -> pyproj.CRS:
    """Choose the metric CRS for analysing ``gdf``.

    Inside China: the CGCS2000 3-degree Gauss-Kruger zone whose central
    meridian is nearest the data's centre (Tongzhou, Nantong at ~121.1°E gives
    EPSG:4549). Elsewhere: the UTM zone of the centre.

    Parameters
    ----------
    gdf
        A GeoDataFrame or GeoSeries with a CRS.

    Returns
    -------
    pyproj.CRS
    """
    lon, lat = _lonlat_centre(gdf)
    if _CHINA[0] <= lon <= _CHINA[2] and 3.0 <= lat <= _CHINA[3]:
        return gk_zone_crs(lon)
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not infos:
        msg = f"no UTM zone found for lon {lon:.3f}, lat {lat:.3f}."
        raise CRSError(msg, fix="set the analysis CRS in the config ([town] crs)")
    return pyproj.CRS.from_epsg(int(infos[0].code))


def _describe(minx: float, miny: float, maxx: float, maxy: float) -> str:
    return f"x {minx:.6g}…{maxx:.6g}, y {miny:.6g}…{maxy:.6g}"


def check_coordinates(
    bounds: tuple[float, float, float, float],
    crs: pyproj.CRS,
    *,
    where: dict[str, Any] | None = None,
) -> None:
    """Refuse coordinates that cannot be in ``crs``.

    Catches lon/lat numbers labelled with a projected CRS, projected numbers
    labelled as lon/lat, latitude-first (swapped) axes, eastings with a zone
    prefix, and data far outside the CRS's area of use.

    Parameters
    ----------
    bounds
        ``(minx, miny, maxx, maxy)`` of the data as stored.
    crs
        The CRS the data claims to be in.
    where
        Location keywords for the error (``path``, ``layer``).

    Raises
    ------
    CRSError
    """
    loc = where or {}
    minx, miny, maxx, maxy = (float(b) for b in bounds)
    if not np.all(np.isfinite([minx, miny, maxx, maxy])):
        return
    seen = _describe(minx, miny, maxx, maxy)
    name = crs.to_string()
    degrees_like = minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90
    if crs.is_geographic:
        if not degrees_like:
            if minx >= -90 and maxx <= 90 and miny >= -180 and maxy <= 180:
                what = (f"the coordinates ({seen}) look like latitude, longitude (swapped axes), "
                        f"but {name} is read as longitude, latitude.")
                fix = "swap the columns, or re-export with longitude first"
            else:
                what = (f"the coordinates ({seen}) are not degrees, "
                        f"but the layer is labelled {name} (longitude/latitude).")
                fix = "declare the projected CRS the numbers are in, e.g. crs = \"EPSG:4549\""
            raise CRSError(what, **loc, fix=fix)
        # Latitude-first data in China: x within Chinese latitudes, y within Chinese longitudes.
        if minx >= 3 and maxx <= 56 and miny >= 72 and maxy <= 138:
            what = f"the coordinates ({seen}) look like latitude, longitude (swapped axes) for a place in China."
            raise CRSError(what, **loc, fix="swap the columns, or re-export with longitude first")
        lon_lat = (minx, miny, maxx, maxy)
    else:
        if degrees_like and max(abs(maxx - minx), abs(maxy - miny)) < 20:
            what = (f"the coordinates ({seen}) look like longitude/latitude degrees, "
                    f"but the layer is labelled {name}, which is in metres.")
            raise CRSError(what, **loc, fix='declare crs = "EPSG:4490" (or "EPSG:4326") for this layer')
        try:
            tr = _to_lonlat(crs)
            lon_lat = tr.transform_bounds(minx, miny, maxx, maxy)
        except pyproj.exceptions.ProjError:
            lon_lat = (np.inf, np.inf, np.inf, np.inf)
        if minx > 1e7 and name.startswith("EPSG:45"):
            what = f"the eastings ({seen}) carry a zone prefix, but {name} has none."
            raise CRSError(
                what, **loc, fix="use the prefixed Gauss-Kruger code (EPSG:4513–4533) or remove the prefix"
            )
    aou = crs.area_of_use
    if aou is None or not np.all(np.isfinite(lon_lat)):
        if not np.all(np.isfinite(lon_lat)):
            what = f"the coordinates ({seen}) cannot be transformed from {name}."
            raise CRSError(what, **loc, fix="check the declared CRS")
        return
    margin = 5.0
    if (
        lon_lat[2] < aou.west - margin
        or lon_lat[0] > aou.east + margin
        or lon_lat[3] < aou.south - margin
        or lon_lat[1] > aou.north + margin
    ):
        what = (
            f"the coordinates ({seen}) fall at lon {lon_lat[0]:.2f}…{lon_lat[2]:.2f}, "
            f"lat {lon_lat[1]:.2f}…{lon_lat[3]:.2f}, outside the area of use of {name} "
            f"({aou.west:.1f}…{aou.east:.1f}E, {aou.south:.1f}…{aou.north:.1f}N)."
        )
        raise CRSError(what, **loc, fix="declare the CRS the numbers are really in")


def _out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (lon < _CHINA[0]) | (lon > _CHINA[2]) | (lat < _CHINA[1]) | (lat > _CHINA[3])


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = lon - 105.0
    y = lat - 35.0
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
        + common
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
        + common
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    rad = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sq = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1.0 - _EE)) / (magic * sq) * np.pi)
    dlon = dlon * 180.0 / (_A / sq * np.cos(rad) * np.pi)
    return dlon, dlat


def _as_arrays(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def wgs84_to_gcj02(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Shift WGS84 longitude/latitude to GCJ-02 (identity outside mainland China)."""
    lon, lat = _as_arrays(lon, lat)
    dlon, dlat = _delta(lon, lat)
    out = _out_of_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def gcj02_to_wgs84(lon: Any, lat: Any, *, tol_deg: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`wgs84_to_gcj02` by fixed-point iteration (round trip well under 0.5 m)."""
    glon, glat = _as_arrays(lon, lat)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(30):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        wlon = wlon - elon
        wlat = wlat - elat
        if np.all(np.abs(elon) < tol_deg) and np.all(np.abs(elat) < tol_deg):
            break
    return wlon, wlat


def gcj02_to_bd09(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Shift GCJ-02 longitude/latitude to Baidu's BD-09."""
    x, y = _as_arrays(lon, lat)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Shift Baidu's BD-09 longitude/latitude to GCJ-02."""
    lon, lat = _as_arrays(lon, lat)
    x = lon - 0.0065
    y = lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_wgs84(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Shift BD-09 to WGS84 (via GCJ-02)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def wgs84_to_bd09(lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Shift WGS84 to BD-09 (via GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))
