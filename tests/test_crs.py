"""gisgrid.crs: the analysis CRS, coordinate sanity checks, GCJ-02 and BD-09."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from gisgrid import CRSError
from gisgrid.crs import (
    analysis_crs,
    bd09_to_gcj02,
    bd09_to_wgs84,
    check_coordinates,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    gk_zone_crs,
    parse_crs,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")
# Mainland China, roughly (Xinjiang to Heilongjiang, Hainan to Mohe).
CHINA_LON = st.floats(73.5, 135.0, allow_nan=False)
CHINA_LAT = st.floats(18.2, 53.5, allow_nan=False)


def _point(lon, lat, crs=4326):
    return gpd.GeoSeries([shapely.Point(lon, lat)], crs=crs)


def _central_meridian(crs: pyproj.CRS) -> float:
    params = {p.name: p.value for p in crs.coordinate_operation.params}
    return params["Longitude of natural origin"]


# --------------------------------------------------------------------------- analysis CRS
def test_tongzhou_gets_cgcs2000_gk_cm120():
    crs = analysis_crs(_point(121.1, 32.0))
    assert crs.to_epsg() == 4549
    assert _central_meridian(crs) == 120
    assert crs.is_projected
    assert crs.axis_info[0].unit_name == "metre"


def test_beijing_gets_zone_cm117():
    # central meridians 75, 78, ..., 135 are EPSG 4534 + (cm - 75) / 3; 116.4 is nearest 117
    expected = 4534 + (117 - 75) // 3
    crs = analysis_crs(_point(116.4, 39.9))
    assert crs.to_epsg() == expected == 4548
    assert _central_meridian(crs) == 117


@pytest.mark.parametrize("lon", np.arange(73.6, 135.0, 0.7).round(2).tolist())
def test_gk_zone_is_the_nearest_central_meridian(lon):
    crs = gk_zone_crs(lon)
    cm = _central_meridian(crs)
    assert abs(lon - cm) <= 1.5
    assert cm % 3 == 0
    assert "CGCS2000" in crs.name
    assert f"CM {int(cm)}E" in crs.name


def test_data_in_a_projected_crs_is_located_by_its_lonlat_centre():
    # the same square in EPSG:4549 and in EPSG:4490 gives the same analysis CRS
    sq = gpd.GeoSeries([shapely.box(500_000, 3_550_000, 501_000, 3_551_000)], crs=4549)
    assert analysis_crs(sq) == analysis_crs(sq.to_crs(4490)) == pyproj.CRS.from_epsg(4549)


@pytest.mark.parametrize(
    ("lon", "lat"), [(10.0, 50.0), (-74.0, 40.7), (151.2, -33.9), (-58.4, -34.6)]
)
def test_outside_china_the_utm_zone(lon, lat):
    crs = analysis_crs(_point(lon, lat))
    zone = int((lon + 180) // 6) + 1
    expected = (32600 if lat >= 0 else 32700) + zone
    assert crs.to_epsg() == expected
    assert abs(_central_meridian(crs) - lon) <= 3


def test_analysis_crs_needs_a_crs_and_data():
    with pytest.raises(CRSError, match="no CRS"):
        analysis_crs(gpd.GeoSeries([shapely.Point(121.2, 32.1)]))
    with pytest.raises(CRSError, match="empty"):
        analysis_crs(gpd.GeoSeries([], crs=4490))


def test_parse_crs_offsets_and_errors():
    assert parse_crs("gcj02") == "GCJ-02"
    assert parse_crs(" GCJ_02 ") == "GCJ-02"
    assert parse_crs("bd-09") == "BD-09"
    assert parse_crs("EPSG:4490") == pyproj.CRS.from_epsg(4490)
    assert parse_crs(4549) == pyproj.CRS.from_epsg(4549)
    with pytest.raises(CRSError, match="unknown CRS") as info:
        parse_crs("EPSG:999999", where={"path": "grids.shp", "layer": "grids"})
    assert info.value.path == "grids.shp"
    assert "EPSG:4490" in info.value.fix


# --------------------------------------------------------------------------- coordinate checks
def test_lonlat_numbers_labelled_gauss_kruger_are_refused():
    with pytest.raises(CRSError, match="degrees") as info:
        check_coordinates((121.2, 32.1, 121.25, 32.15), pyproj.CRS.from_epsg(4549), where={"path": "v.shp"})
    assert "EPSG:4490" in info.value.fix
    assert info.value.path == "v.shp"


def test_projected_numbers_labelled_lonlat_are_refused():
    with pytest.raises(CRSError, match="not degrees") as info:
        check_coordinates((500_000, 3_550_000, 501_000, 3_551_000), pyproj.CRS.from_epsg(4490))
    assert "EPSG:4549" in info.value.fix


def test_swapped_lat_lon_is_refused():
    with pytest.raises(CRSError, match="swapped"):
        check_coordinates((32.1, 121.2, 32.15, 121.25), pyproj.CRS.from_epsg(4490))
    # western China: longitudes under 90 still caught
    with pytest.raises(CRSError, match="swapped"):
        check_coordinates((43.8, 87.6, 43.9, 87.7), pyproj.CRS.from_epsg(4326))


def test_zone_prefixed_eastings_are_refused():
    # EPSG:4549 has no zone prefix; 40 500 000 is the CM 120E zone-40 prefixed easting
    with pytest.raises(CRSError, match="zone prefix"):
        check_coordinates((40_500_000, 3_550_000, 40_501_000, 3_551_000), pyproj.CRS.from_epsg(4549))


def test_data_far_outside_the_area_of_use_is_refused():
    # Nantong's Gauss-Kruger numbers labelled Hong Kong 1980 Grid: they would lie ~2700 km north of Hong Kong
    with pytest.raises(CRSError, match="area of use"):
        check_coordinates((500_000, 3_550_000, 501_000, 3_551_000), pyproj.CRS.from_epsg(2326))


@pytest.mark.parametrize(
    ("bounds", "epsg"),
    [((121.2, 32.1, 121.25, 32.15), 4490), ((500_000, 3_550_000, 501_000, 3_551_000), 4549),
     ((330_000, 3_550_000, 340_000, 3_560_000), 32651)],
)
def test_correct_coordinates_pass(bounds, epsg):
    check_coordinates(bounds, pyproj.CRS.from_epsg(epsg))


# --------------------------------------------------------------------------- GCJ-02 / BD-09
def test_published_reference_vectors():
    # wandergis/coordTransform README (the widely used reference implementation), Tiananmen
    np.testing.assert_allclose(wgs84_to_gcj02(116.404, 39.915), (116.41024449916938, 39.91640428150164), rtol=1e-12)
    np.testing.assert_allclose(gcj02_to_bd09(116.404, 39.915), (116.41036949371029, 39.92133699351021), rtol=1e-12)
    np.testing.assert_allclose(bd09_to_gcj02(116.404, 39.915), (116.39762729119315, 39.90865673957631), rtol=1e-12)
    np.testing.assert_allclose(wgs84_to_bd09(116.404, 39.915), (116.41662724378733, 39.922699552216216), rtol=1e-12)


def test_gcj02_offset_in_nantong_is_several_hundred_metres():
    glon, glat = wgs84_to_gcj02(121.2, 32.1)
    shift = GEOD.inv(121.2, 32.1, float(glon), float(glat))[2]
    assert 440 < shift < 520
    # the offset pushes east and south here
    assert glon > 121.2
    assert glat < 32.1


def test_no_offset_outside_china():
    lon, lat = wgs84_to_gcj02([10.0, -74.0], [50.0, 40.7])
    np.testing.assert_array_equal(lon, [10.0, -74.0])
    np.testing.assert_array_equal(lat, [50.0, 40.7])
    np.testing.assert_array_equal(gcj02_to_wgs84(10.0, 50.0), (10.0, 50.0))


def _distance(lon1, lat1, lon2, lat2):
    return GEOD.inv(lon1, lat1, float(lon2), float(lat2))[2]


@settings(max_examples=300, deadline=None)
@given(CHINA_LON, CHINA_LAT)
def test_gcj02_round_trip_within_half_a_metre(lon, lat):
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert _distance(lon, lat, *back) < 0.5
    # and the other way: the inverse really inverts the forward shift
    fwd = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert _distance(lon, lat, *fwd) < 0.5


@settings(max_examples=300, deadline=None)
@given(CHINA_LON, CHINA_LAT)
def test_bd09_round_trip_within_half_a_metre(lon, lat):
    back = bd09_to_wgs84(*wgs84_to_bd09(lon, lat))
    assert _distance(lon, lat, *back) < 0.5
    back_gcj = bd09_to_gcj02(*gcj02_to_bd09(lon, lat))
    assert _distance(lon, lat, *back_gcj) < 0.5


def test_conversions_are_vectorised():
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(73.5, 135, 1000), rng.uniform(18.2, 53.5, 1000)
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert glon.shape == (1000,)
    one = [wgs84_to_gcj02(a, b) for a, b in zip(lon[:5], lat[:5], strict=True)]
    np.testing.assert_allclose(np.array(one)[:, 0], glon[:5])
    wlon, wlat = gcj02_to_wgs84(glon, glat)
    d = GEOD.inv(lon, lat, wlon, wlat)[2]
    assert d.max() < 0.01
