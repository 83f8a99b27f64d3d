"""Shared fixtures: small, hand-built, realistic layers (add new fixtures; do not rename these)."""

from __future__ import annotations

import os

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from hypothesis import settings as hypothesis_settings

# CI explores the same examples every run (a red CI is then a real regression, not a new random draw);
# locally hypothesis keeps exploring and remembers failures in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

@pytest.fixture(autouse=True)
def _gisgrid_logger_as_it_was():
    """A test that runs the CLI in this process lets it configure the gisgrid logger (its handler, no
    propagation); give the logger back afterwards, so later tests' caplog still sees the library's records."""
    import logging

    root = logging.getLogger("gisgrid")
    saved = (list(root.handlers), root.propagate, root.level)
    yield
    root.handlers[:], root.propagate = saved[0], saved[1]
    root.setLevel(saved[2])


@pytest.fixture(scope="session")
def cluster():
    """A throwaway PostgreSQL + PostGIS for the session (tests/pg.py): skipped without the binaries, failed in CI."""
    import pg

    reason = pg.missing_reason()
    if reason is not None:
        if os.environ.get(pg.REQUIRE_ENV):
            pytest.fail(f"{pg.REQUIRE_ENV} is set but no PostgreSQL/PostGIS can be started: {reason}")
        pytest.skip(f"no PostgreSQL with PostGIS here: {reason}")
    with pg.running() as c:
        yield c


@pytest.fixture(scope="session")
def libpq_env(cluster):
    """The library reads libpq's environment, as it would on a command center's server."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PG")}
    for key in saved:
        del os.environ[key]
    os.environ.update({k: v for k, v in cluster.env().items() if k.startswith("PG")})
    yield "postgresql:///gis"
    for key in [k for k in os.environ if k.startswith("PG")]:
        del os.environ[key]
    os.environ.update(saved)


#: Lower-left corner of the hand-built town, EPSG:4549 (CGCS2000 GK CM 120E), near Nantong.
X0, Y0 = 500_000.0, 3_550_000.0
ANALYSIS_EPSG = 4549


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A rectangle given in metres from (X0, Y0)."""
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def line(*pts: tuple[float, float]) -> shapely.LineString:
    """A line through points given in metres from (X0, Y0)."""
    return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])


@pytest.fixture
def town_frames() -> dict[str, object]:
    """Canonical frames of a 400 m x 200 m town in EPSG:4549: two villages, four grids, all staffed.

    Keys are the keyword arguments of ``Town.from_frames``; each call gives fresh copies.
    """
    crs = f"EPSG:{ANALYSIS_EPSG}"
    villages = gpd.GeoDataFrame(
        {"village_id": ["V1", "V2"], "name": ["东社村", "西亭村"], "households": [120, 95]},
        geometry=[box(0, 0, 200, 200), box(200, 0, 400, 200)], crs=crs,
    )
    grids = gpd.GeoDataFrame(
        {"grid_id": ["G1", "G2", "G3", "G4"], "village_id": ["V1", "V1", "V2", "V2"]},
        geometry=[box(0, 0, 200, 100), box(0, 100, 200, 200), box(200, 0, 400, 100), box(200, 100, 400, 200)],
        crs=crs,
    )
    boundary = gpd.GeoDataFrame({"name": ["测试镇"]}, geometry=[box(0, 0, 400, 200)], crs=crs)
    roads = gpd.GeoDataFrame(
        {"road_id": ["R1", "R2"], "road_class": ["main", "lane"]},
        geometry=[line((0, 50), (400, 50)), line((100, 0), (100, 200))], crs=crs,
    )
    rivers = gpd.GeoDataFrame(
        {"river_id": ["H1"], "name": ["通吕运河"]}, geometry=[line((0, 150), (400, 150))], crs=crs,
    )
    pois = gpd.GeoDataFrame(
        {"poi_id": ["P1"], "kind": ["school"], "name": ["东社小学"]},
        geometry=[shapely.Point(X0 + 50, Y0 + 30)], crs=crs,
    )
    grid_staff = pd.DataFrame({
        "person_id": ["S1", "S2", "S3", "S4"],
        "name": ["张三", "李四", "王五", "赵六"],
        "phone": ["13800000001", "13800000002", "13800000003", "13800000004"],
        "role": ["grid_chief"] * 4,
        "grid_id": ["G1", "G2", "G3", "G4"],
    })
    river_chiefs = pd.DataFrame({
        "person_id": ["C1", "C2"], "name": ["钱七", "孙八"], "phone": ["13900000001", "13900000002"],
        "level": ["town", "village"], "river_id": ["H1", "H1"], "village_id": [None, "V1"],
    })
    return {"boundary": boundary, "villages": villages, "grids": grids, "roads": roads, "rivers": rivers,
            "pois": pois, "grid_staff": grid_staff, "river_chiefs": river_chiefs}
