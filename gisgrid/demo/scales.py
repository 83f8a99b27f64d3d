"""Where the demo town is built, to what precision, and how big each scale is."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
from shapely import Point

ANALYSIS_CRS = "EPSG:4549"
DELIVERY_CRS = "EPSG:4490"
_CENTRE_LONLAT = (121.2, 32.1)
_GRID_SIZE = 0.01  # coordinate precision of every polygon, metres


@dataclass(frozen=True)
class _Scale:
    """Size and density parameters of one demo scale."""

    name: str
    area_id: str
    width_m: float
    height_m: float
    n_grids: int
    n_villages: int
    n_main_roads: int
    n_main_rivers: int
    n_minor_rivers: int
    minor_river_km: tuple[float, float]
    hamlets: tuple[int, int]
    lattice: tuple[int, int]
    centre_lattice: int
    field_lanes: tuple[int, int]
    radial_roads: tuple[int, int]
    n_defects: int
    n_edge_roads: int
    outline_vertices: int
    n_communities: int


SCALES: dict[str, _Scale] = {
    "town": _Scale(
        name="东社镇", area_id="320612110", width_m=10_000.0, height_m=8_000.0, n_grids=200,
        n_villages=20, n_main_roads=3, n_main_rivers=3, n_minor_rivers=3,
        minor_river_km=(2.5, 5.0), hamlets=(2, 3), lattice=(5, 7), centre_lattice=12,
        field_lanes=(2, 4), radial_roads=(1, 2), n_defects=1, n_edge_roads=3,
        outline_vertices=96, n_communities=2,
    ),
    "county": _Scale(
        name="通东县", area_id="320612", width_m=60_000.0, height_m=50_000.0, n_grids=20_000,
        n_villages=300, n_main_roads=10, n_main_rivers=10, n_minor_rivers=16,
        minor_river_km=(4.0, 10.0), hamlets=(2, 4), lattice=(4, 5), centre_lattice=10,
        field_lanes=(2, 4), radial_roads=(1, 2), n_defects=3, n_edge_roads=10,
        outline_vertices=180, n_communities=12,
    ),
}


def _centre_xy() -> tuple[float, float]:
    pt = gpd.GeoSeries([Point(*_CENTRE_LONLAT)], crs=DELIVERY_CRS).to_crs(ANALYSIS_CRS)
    return round(float(pt.x.iloc[0]), 0), round(float(pt.y.iloc[0]), 0)
