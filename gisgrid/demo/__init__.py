"""A deterministic synthetic township with planted defects and a truth manifest.

:func:`make_demo` builds a plain-country town modelled on the Jiangsu coast
near 121.2°E, 32.1°N (Tongzhou, Nantong): an irregular town boundary, villages
(村居) made of grids (网格), main roads down to lanes and farm roads (小巷农路),
canals and rivers, must-check points (schools, markets, clinics, water intakes,
town entrances) and the rosters of grid staff and river chiefs.

Everything is constructed in metres in EPSG:4549 (CGCS2000 3-degree
Gauss-Kruger, CM 120E) and delivered in EPSG:4490 (CGCS2000 lon/lat), as a
township office would deliver it. The grid partition is exact: one Voronoi
diagram of jittered seeds clipped to the town outline and snapped to a 1 cm
precision grid, so neighbouring grids share identical vertices.

A known set of defects is then planted and recorded in :attr:`DemoData.truth`
(in EPSG:4549), one row per finding the coverage engine should report:

``area_gap``
    A chunk cut from a grid along its border with a neighbour in the same
    village: inside the village, in no grid.
``area_overlap``
    A grid extended into its neighbour (``grid_id`` is ``"A,B"``).
``road_uncovered``
    A lane running through a gap; the measure is the length inside the gap.
``poi_uncovered``
    A school standing in a gap.
``grid_unstaffed``
    A grid with grid members but no grid chief.
``river_unassigned``
    A (river, village) reach whose village-level chief is missing.
``input_repaired``
    A grid stored with a zero-width spike (an invalid ring) that
    ``shapely.make_valid(method="structure")`` turns back into the intended
    polygon.

Nothing else is wrong: no other gap or overlap of 1 m² or more, no other road
piece outside the grids, every other must-check point in exactly one grid,
every other grid with a chief and every other reach with its chiefs.

The module makes data only; writing it to files is :mod:`gisgrid.io`'s job.

The code is one module per concept: :mod:`~gisgrid.demo.scales` (where and how
big), :mod:`~gisgrid.demo.partition` (outline, grids, villages),
:mod:`~gisgrid.demo.lines` (rivers and roads), :mod:`~gisgrid.demo.plant` (the
defects), :mod:`~gisgrid.demo.pois` (must-check points),
:mod:`~gisgrid.demo.hand` (hand-drawn borders), :mod:`~gisgrid.demo.rosters`,
:mod:`~gisgrid.demo.truth`, :mod:`~gisgrid.demo.source` (the delivered form and
its config) and :mod:`~gisgrid.demo.names`; this module ties them together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid._errors import ConfigError
from gisgrid.demo.hand import HAND_MAX_M, HAND_SIGMA_M, HAND_STEP_M, hand_draw
from gisgrid.demo.lines import _rivers, _road_frame, _road_lines, _roads
from gisgrid.demo.names import _width
from gisgrid.demo.partition import (
    _check_coverage,
    _edge_table,
    _outline,
    _partition,
    _shared_pairs,
    _village_frames,
    _villages,
)
from gisgrid.demo.patrols import DemoPatrols, make_patrols
from gisgrid.demo.plant import _Planter
from gisgrid.demo.pois import _pois
from gisgrid.demo.rosters import _grid_staff, _reaches, _river_chiefs
from gisgrid.demo.scales import ANALYSIS_CRS, DELIVERY_CRS, SCALES, _centre_xy, _Scale
from gisgrid.demo.source import LAYER_KEYS, ROSTER_KEYS, SOURCE_FIELDS, SOURCE_VALUES, _config_toml, _to_source
from gisgrid.demo.truth import TRUTH_COLUMNS, _truth

if TYPE_CHECKING:
    from gisgrid.model import Town

__all__ = [
    "ANALYSIS_CRS",
    "DELIVERY_CRS",
    "HAND_MAX_M",
    "HAND_SIGMA_M",
    "HAND_STEP_M",
    "LAYER_KEYS",
    "ROSTER_KEYS",
    "SCALES",
    "SOURCE_FIELDS",
    "SOURCE_VALUES",
    "TRUTH_COLUMNS",
    "DemoData",
    "hand_draw",
    "make_demo",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DemoData:
    """A synthetic town: canonical layers and rosters plus the planted defects.

    Attributes
    ----------
    name : str
        Town name (``"东社镇"`` at town scale).
    layers : dict of str to GeoDataFrame
        ``boundary``, ``villages``, ``grids``, ``roads``, ``rivers``, ``pois`` with
        canonical columns, in EPSG:4490.
    rosters : dict of str to DataFrame
        ``grid_staff`` and ``river_chiefs`` with canonical columns.
    truth : GeoDataFrame
        One row per planted defect (columns ``kind``, ``village_id``, ``grid_id``,
        ``road_id``, ``poi_id``, ``river_id``, ``measure``, ``unit``, ``note``,
        ``geometry``), in EPSG:4549.
    analysis_crs : str
        The metric CRS the town was built in and should be analysed in.
    """

    name: str
    layers: dict[str, gpd.GeoDataFrame]
    rosters: dict[str, pd.DataFrame]
    truth: gpd.GeoDataFrame
    analysis_crs: str = ANALYSIS_CRS

    def source_layers(self) -> dict[str, gpd.GeoDataFrame]:
        """Return the layers as a township office would deliver them.

        Roads carry Chinese field names (``道路编号``, ``道路等级``, ``道路名称``)
        and Chinese classes (主干道/次干道/村道/小巷); villages carry ``村编码``,
        ``村名``, ``户数``, ``人口``; the other layers are canonical.

        Returns
        -------
        dict of str to GeoDataFrame
            Copies, in EPSG:4490.
        """
        return {key: _to_source(key, frame) for key, frame in self.layers.items()}

    def source_rosters(self) -> dict[str, pd.DataFrame]:
        """Return the rosters with the Chinese headers and values of a real office.

        Returns
        -------
        dict of str to DataFrame
            ``grid_staff`` (人员编号, 姓名, 电话, 职务, 网格编号) and
            ``river_chiefs`` (人员编号, 姓名, 电话, 级别, 河道编号, 村编码).
        """
        return {key: _to_source(key, frame) for key, frame in self.rosters.items()}

    def config_toml(
        self,
        *,
        gpkg: str = "town.gpkg",
        staff_csv: str = "grid_staff.csv",
        chiefs_xlsx: str = "river_chiefs.xlsx",
    ) -> str:
        """Return the TOML configuration that maps the source form back to canonical.

        Parameters
        ----------
        gpkg
            GeoPackage holding the six layers (one layer per key), relative to
            the config file.
        staff_csv
            Grid staff CSV (GBK encoded), relative to the config file.
        chiefs_xlsx
            River chiefs workbook, relative to the config file.

        Returns
        -------
        str
            TOML text loadable with :mod:`tomllib`.
        """
        return _config_toml(self.name, gpkg=gpkg, staff_csv=staff_csv, chiefs_xlsx=chiefs_xlsx)

    def patrols(self) -> DemoPatrols:
        """A month of patrol tracks of the chiefs, with planted cases (:mod:`gisgrid.demo.patrols`; made once)."""
        if "_patrols" not in self.__dict__:  # frozen: the cache goes straight into the instance's dict
            self.__dict__["_patrols"] = make_patrols(self.layers, self.rosters)
        return self.__dict__["_patrols"]

    def town(self) -> Town:
        """Validate the layers and rosters into a :class:`gisgrid.model.Town`.

        Returns
        -------
        Town
            In :attr:`analysis_crs`; its ``repairs`` record the planted invalid grid(s).
        """
        from gisgrid.model import Town

        return Town.from_frames(
            **self.layers, **self.rosters, name=self.name, crs=self.analysis_crs
        )


def make_demo(*, scale: str = "town", seed: int = 20261129, hand_drawn: bool = True) -> DemoData:
    """Build the synthetic town (or county) with its planted defects.

    Parameters
    ----------
    scale
        ``"town"`` (~20 villages, ~200 grids, ~4k road segments) or ``"county"``
        (~300 villages, ~20k grids, ~50k road segments).
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed gives identical frames.
    hand_drawn
        Draw every grid, village and the town boundary on its own, as a township
        data clerk does (the default): borders densified to a vertex every
        :data:`HAND_STEP_M` and each vertex off by a few decimetres, so that
        neighbours' borders never coincide. ``False`` gives the exact partition
        (shared borders identical to the centimetre) that exact-geometry tests
        need. The ids, attributes, rosters and the planted defects are the
        same in both forms.

    Returns
    -------
    DemoData

    Raises
    ------
    ConfigError
        If ``scale`` is not one of :data:`SCALES`.
    """
    built = _generate(scale, seed, hand_drawn=hand_drawn)
    layers = {key: built.layers[key].to_crs(DELIVERY_CRS) for key in LAYER_KEYS}
    return DemoData(name=built.name, layers=layers, rosters=built.rosters, truth=built.truth)


@dataclass
class _Built:
    """Everything :func:`_generate` makes, in EPSG:4549 (for make_demo and the tests)."""

    name: str
    layers: dict[str, gpd.GeoDataFrame]
    rosters: dict[str, pd.DataFrame]
    truth: gpd.GeoDataFrame
    clean_grids: gpd.GeoDataFrame


def _generate(scale: str, seed: int, *, hand_drawn: bool = True, spec: _Scale | None = None,
              outline: shapely.Polygon | None = None) -> _Built:
    """Build the demo in EPSG:4549; the steps consume ``rng`` in a fixed order.

    The hand drawing takes its noise from a separate stream, so the clean and
    the hand-drawn demo differ in their polygons' vertices only. ``spec`` and
    ``outline`` (in EPSG:4549) replace the scale's own: a district's towns
    (:mod:`gisgrid.demo.district`) are built inside their share of the district.
    """
    if spec is None and scale not in SCALES:
        msg = f"unknown demo scale {scale!r}; valid choices are {sorted(SCALES)}."
        raise ConfigError(msg, fix=f"use one of {', '.join(sorted(SCALES))}")
    spec = SCALES[scale] if spec is None else spec
    rng = np.random.default_rng(seed)
    centre = _centre_xy() if outline is None else (outline.centroid.x, outline.centroid.y)

    outline = _outline(rng, spec, centre) if outline is None else outline
    cells, cell_seeds, spacing = _partition(rng, spec, outline)
    boundary = shapely.coverage_union_all(cells)
    _check_coverage(cells, boundary)

    assign, village_seeds = _villages(rng, spec, outline, cells, cell_seeds)
    vill = _village_frames(rng, spec, cells, cell_seeds, assign, village_seeds, centre)
    grid_village = vill["grid_village"]
    village_polys = vill["village_polys"]
    village_ids = vill["village_ids"]
    village_bases = vill["village_bases"]
    grid_ids = vill["grid_ids"]
    cells = vill["cells"]
    cell_seeds = vill["cell_seeds"]
    village_centres = vill["centres"]

    rivers, river_names, river_levels, river_widths = _rivers(rng, spec, boundary,
                                                              village_polys)
    roads, main_lines = _roads(rng, spec, boundary, village_polys, village_centres,
                               village_bases, vill["community"], vill["hub"], spacing)

    edges = _edge_table(cells)
    pairs = _shared_pairs(edges)
    on_edge = np.zeros(len(cells), dtype=bool)
    counts = edges.groupby(["x1", "y1", "x2", "y2"])["owner"].transform("size")
    on_edge[edges.loc[counts == 1, "owner"].to_numpy()] = True

    road_lines = _road_lines(roads, boundary)
    plant = _Planter(rng, spec, cells, cell_seeds, grid_village, pairs, on_edge, spacing,
                     road_lines, rivers)
    plant.gaps_and_overlaps()
    clean_cells = cells.copy()
    cells = plant.cells

    # Remove every road touching a gap or overlap (1 m margin), then add the planted lanes
    # and the roads lying exactly on shared grid edges.
    zones = [z for z, _ in plant.zones]
    keep = np.ones(len(road_lines.lines), dtype=bool)
    if zones:
        tree = shapely.STRtree(road_lines.lines)
        hit = tree.query(shapely.buffer(np.array(zones, dtype=object), 1.0),
                         predicate="intersects")[1]
        keep[hit] = False
    road_lines = road_lines.subset(keep)
    lane_rows = plant.gap_lanes(village_bases)
    edge_rows = plant.edge_roads(spec.n_edge_roads, village_bases)
    for geom, cls, name in (*lane_rows, *edge_rows):
        road_lines.append(geom, cls, name)
    road_frame, lane_road_ids = _road_frame(road_lines, n_planted=len(lane_rows),
                                            n_edge=len(edge_rows))

    # Planting and placing work on the exact partition; only the delivered polygons are hand-drawn.
    drawn_villages, drawn_boundary = village_polys, boundary
    if hand_drawn:
        pen = np.random.default_rng([seed, 1])
        plant.cells = hand_draw(plant.cells, pen)
        drawn_villages = hand_draw(village_polys, pen)
        drawn_boundary = hand_draw(np.array([boundary], dtype=object), pen)[0]
    cells = plant.cells
    spikes = plant.spikes()
    unstaffed = plant.unstaffed()

    pois = _pois(rng, plant, village_centres, village_bases,
                 vill["village_names"], rivers, river_names, river_levels, main_lines,
                 boundary, centre)

    reaches = _reaches(rivers, village_polys)
    dropped_reaches = plant.choose_reaches(reaches)

    # ------------------------------------------------------------------ frames (EPSG:4549)
    grid_geoms = cells.copy()
    for pos, spiked in spikes:
        grid_geoms[pos] = spiked
    households = rng.integers(120, 420, size=len(cells))
    grids = gpd.GeoDataFrame(
        {
            "grid_id": grid_ids,
            "village_id": [village_ids[v] for v in grid_village],
            "name": vill["grid_names"],
            "households": households.astype(np.int64),
        },
        geometry=list(grid_geoms),
        crs=ANALYSIS_CRS,
    )
    clean_grids = grids.set_geometry(list(clean_cells), crs=ANALYSIS_CRS)
    village_hh = np.bincount(grid_village, weights=households, minlength=len(village_ids))
    village_hh = village_hh.astype(np.int64)
    ratio = rng.uniform(2.4, 3.1, size=len(village_ids))
    villages = gpd.GeoDataFrame(
        {
            "village_id": village_ids,
            "name": vill["village_names"],
            "households": village_hh,
            "population": np.rint(village_hh * ratio).astype(np.int64),
        },
        geometry=list(drawn_villages),
        crs=ANALYSIS_CRS,
    )
    boundary_frame = gpd.GeoDataFrame(
        {"name": [spec.name], "town_id": [spec.area_id]}, geometry=[drawn_boundary], crs=ANALYSIS_CRS
    )
    river_ids = [f"H{i + 1:0{_width(len(rivers), 2)}d}" for i in range(len(rivers))]
    river_frame = gpd.GeoDataFrame(
        {"river_id": river_ids, "name": river_names, "level": river_levels,
         "width_m": np.asarray(river_widths, dtype=float)},
        geometry=list(rivers),
        crs=ANALYSIS_CRS,
    )
    poi_ids = [f"P{i + 1:0{_width(len(pois), 3)}d}" for i in range(len(pois))]
    poi_frame = gpd.GeoDataFrame(
        {"poi_id": poi_ids, "kind": [p[0] for p in pois], "name": [p[1] for p in pois]},
        geometry=[p[2] for p in pois],
        crs=ANALYSIS_CRS,
    )
    grid_staff = _grid_staff(rng, grid_ids, {grid_ids[p] for p in unstaffed})
    river_chiefs, missing_chiefs = _river_chiefs(rng, rivers, river_ids, reaches, village_ids,
                                                 dropped_reaches)

    truth = _truth(plant, spikes, unstaffed, dropped_reaches, reaches, grid_ids, grid_village,
                   village_ids, lane_road_ids, road_frame, poi_frame, river_ids,
                   missing_chiefs)

    layers = {
        "boundary": boundary_frame,
        "villages": villages,
        "grids": grids,
        "roads": road_frame,
        "rivers": river_frame,
        "pois": poi_frame,
    }
    logger.info(
        "demo %s (%s, seed %d): %d villages, %d grids, %d road segments, %d rivers, %d POIs, "
        "%d planted defects",
        spec.name, scale, seed, len(villages), len(grids), len(road_frame), len(river_frame),
        len(poi_frame), len(truth),
    )
    return _Built(
        name=spec.name,
        layers=layers,
        rosters={"grid_staff": grid_staff, "river_chiefs": river_chiefs},
        truth=truth,
        clean_grids=clean_grids,
    )
