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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import LineString, Point, Polygon

from gisgrid import settings
from gisgrid._errors import ConfigError

if TYPE_CHECKING:
    from gisgrid.model import Town

__all__ = ["SCALES", "DemoData", "make_demo"]

logger = logging.getLogger(__name__)

ANALYSIS_CRS = "EPSG:4549"
DELIVERY_CRS = "EPSG:4490"
_CENTRE_LONLAT = (121.2, 32.1)
_GRID_SIZE = 0.01  # coordinate precision of every polygon, metres

LAYER_KEYS: tuple[str, ...] = ("boundary", "villages", "grids", "roads", "rivers", "pois")
ROSTER_KEYS: tuple[str, ...] = ("grid_staff", "river_chiefs")
TRUTH_COLUMNS: tuple[str, ...] = (
    "kind", "village_id", "grid_id", "road_id", "poi_id", "river_id", "measure", "unit", "note",
    "geometry",
)

# --------------------------------------------------------------------------- source form
#: Source (delivered) field names per layer/roster: canonical -> source.
SOURCE_FIELDS: dict[str, dict[str, str]] = {
    "boundary": {"name": "name", "town_id": "town_id"},
    "villages": {"village_id": "村编码", "name": "村名", "households": "户数", "population": "人口"},
    "grids": {"grid_id": "grid_id", "village_id": "village_id", "name": "name",
              "households": "households"},
    "roads": {"road_id": "道路编号", "road_class": "道路等级", "name": "道路名称"},
    "rivers": {"river_id": "river_id", "name": "name", "level": "level", "width_m": "width_m"},
    "pois": {"poi_id": "poi_id", "kind": "kind", "name": "name"},
    "grid_staff": {"person_id": "人员编号", "name": "姓名", "phone": "电话", "role": "职务",
                   "grid_id": "网格编号"},
    "river_chiefs": {"person_id": "人员编号", "name": "姓名", "phone": "电话", "level": "级别",
                     "river_id": "河道编号", "village_id": "村编码"},
}

#: Source (delivered) values per layer/roster and column: source -> canonical.
SOURCE_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "roads": {"road_class": {"主干道": "main", "次干道": "secondary", "村道": "village",
                             "小巷": "lane"}},
    "grid_staff": {"role": {"网格长": "grid_chief", "网格员": "grid_member"}},
    "river_chiefs": {"level": {"县级": "county", "镇级": "town", "村级": "village"}},
}


# --------------------------------------------------------------------------- scales
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

# --------------------------------------------------------------------------- name pools
_VILLAGE_FIRST = "永新东西南北金三长双红光友建合兴五十四高大安福富龙凤桥园港沙陈张刘严季姜吕石九平"
_VILLAGE_SECOND = "兴桥安丰星明联新和平庄港园沙河湾圩荡甸灶总甲墩店坝华盛强富胜林阳"
_MAIN_ROAD_BASES = (
    "通启", "金沙", "海港", "世纪", "人民", "振兴", "富民", "兴东", "沿江", "跃进", "工农",
    "建设", "朝阳", "长江", "团结", "通海", "江海", "银河",
)
_RIVER_BASES = (
    "东社", "通吕", "九圩", "新江", "团结", "跃进", "红旗", "幸福", "中心", "十字", "南川",
    "北新", "东方", "友谊", "五一", "胜利", "长青", "光明", "青龙", "白龙", "利民", "丰收",
    "姚港", "四甲", "横沙", "竖河", "三余", "二甲", "金余", "汤家", "余东", "正场",
)
_SURNAMES = "陈张顾季陆施曹王李刘朱徐黄周吴杨沈袁姜邱范钱孙丁马冯茅瞿葛严蔡倪秦宋唐郁"
_GIVEN = "建国明华军平红霞芳丽伟强勇杰静敏燕辉峰涛斌林海波宇浩晨洁琴兰英梅春秋雪新文志永德立云翠桂玉金宝荣健俊"
_PHONE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
    "157", "158", "159", "177", "180", "181", "187", "188", "189", "191", "199",
)
_NUMERALS = "一二三四五六七八九十"


def _ordinal(k: int) -> str:
    """Chinese numeral for 1..10, digits above."""
    return _NUMERALS[k - 1] if 1 <= k <= 10 else str(k)


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(n)))


# --------------------------------------------------------------------------- public API
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
        lines = ["[town]", f"name = {_toml_str(self.name)}", 'crs = "auto"', "",
                 "[coverage]",
                 f"tolerance_m = {float(settings.tolerance_m)!r}  # gaps and overlaps narrower than this are "
                 "digitising noise", ""]
        for key in (*LAYER_KEYS, *ROSTER_KEYS):
            lines.append(f"[sources.{key}]")
            if key in LAYER_KEYS:
                lines.append(f"path = {_toml_str(gpkg)}")
                lines.append(f"layer = {_toml_str(key)}")
            elif key == "grid_staff":
                lines.append(f"path = {_toml_str(staff_csv)}")
                lines.append('encoding = "gbk"')
            else:
                lines.append(f"path = {_toml_str(chiefs_xlsx)}")
            lines.append(f"fields = {_toml_inline(SOURCE_FIELDS[key])}")
            if key in SOURCE_VALUES:
                inner = ", ".join(
                    f"{_toml_key(col)} = {_toml_inline(mapping)}"
                    for col, mapping in SOURCE_VALUES[key].items()
                )
                lines.append(f"values = {{ {inner} }}")
            lines.append("")
        return "\n".join(lines)

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


# --------------------------------------------------------------------------- source helpers
def _to_source(key: str, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col, mapping in SOURCE_VALUES.get(key, {}).items():
        reverse = {canonical: source for source, canonical in mapping.items()}
        out[col] = out[col].map(reverse).astype(out[col].dtype)
    return out.rename(columns=SOURCE_FIELDS[key])


def _toml_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _toml_str(key)


def _toml_inline(mapping: dict[str, str]) -> str:
    inner = ", ".join(f"{_toml_key(k)} = {_toml_str(v)}" for k, v in mapping.items())
    return f"{{ {inner} }}"


# --------------------------------------------------------------------------- generation
@dataclass
class _Built:
    """Everything :func:`_generate` makes, in EPSG:4549 (for make_demo and the tests)."""

    name: str
    layers: dict[str, gpd.GeoDataFrame]
    rosters: dict[str, pd.DataFrame]
    truth: gpd.GeoDataFrame
    clean_grids: gpd.GeoDataFrame


@dataclass
class _Roads:
    """Road pieces before ids: coordinate arrays, classes and names."""

    coords: list[np.ndarray]
    classes: list[str]
    names: list[str]

    def add(self, coords: np.ndarray, road_class: str, name: str, every: int) -> None:
        """Split a polyline into pieces of ``every`` vertices and add them."""
        n = len(coords)
        for i in range(0, n - 1, every):
            piece = coords[i : min(i + every, n - 1) + 1]
            if len(piece) >= 2:
                self.coords.append(piece)
                self.classes.append(road_class)
                self.names.append(name)


def _generate(scale: str, seed: int, *, hand_drawn: bool = True) -> _Built:
    """Build the demo in EPSG:4549; the steps consume ``rng`` in a fixed order.

    The hand drawing takes its noise from a separate stream, so the clean and
    the hand-drawn demo differ in their polygons' vertices only.
    """
    if scale not in SCALES:
        msg = f"unknown demo scale {scale!r}; valid choices are {sorted(SCALES)}."
        raise ConfigError(msg, fix=f"use one of {', '.join(sorted(SCALES))}")
    spec = SCALES[scale]
    rng = np.random.default_rng(seed)
    centre = _centre_xy()

    outline = _outline(rng, spec, centre)
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


#: Vertex spacing of hand-drawn borders, metres.
HAND_STEP_M = 10.0
#: Typical and largest offset of a hand-drawn vertex from the true border, metres:
#: two neighbours' borders are at most 2 x HAND_MAX_M apart, inside the default tolerance.
HAND_SIGMA_M = 0.25
HAND_MAX_M = 0.6


def hand_draw(polygons: np.ndarray, rng: np.random.Generator, *, step_m: float = HAND_STEP_M,
              sigma_m: float = HAND_SIGMA_M, max_m: float = HAND_MAX_M) -> np.ndarray:
    """Redraw each polygon on its own, as a data clerk tracing imagery would.

    Every exterior ring is densified to a vertex every ``step_m`` and each
    vertex is moved by a smooth random offset (a running mean of white noise
    over 7 vertices, scaled to ``sigma_m``) plus a little white noise, clipped
    to ``max_m``. A polygon that the noise would make invalid is drawn again
    with half the noise, and kept densified but unmoved if that fails too.

    Parameters
    ----------
    polygons
        Polygons without holes (object array), in metres.
    rng
        The noise stream.
    step_m, sigma_m, max_m
        Vertex spacing, typical and largest offset.

    Returns
    -------
    numpy.ndarray
        New polygons, coordinates rounded to the centimetre.
    """
    dense = shapely.segmentize(np.asarray(polygons, dtype=object), step_m)
    xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(dense), return_index=True)
    closing = np.r_[idx[1:] != idx[:-1], True]
    xy, idx = xy[~closing], idx[~closing]
    n = len(xy)
    white = rng.normal(0.0, 1.0, size=(n, 2))
    csum = np.vstack([np.zeros((1, 2)), np.cumsum(white, axis=0)])
    lo, hi = np.clip(np.arange(n) - 3, 0, n), np.clip(np.arange(n) + 4, 0, n)
    smooth = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    smooth *= sigma_m / max(float(smooth.std()), 1e-12)
    offset = smooth + rng.normal(0.0, sigma_m / 3.0, size=(n, 2))
    out = dense.copy()
    todo = np.ones(len(dense), dtype=bool)
    for scale in (1.0, 0.5):
        rows = todo[idx]
        moved = np.round(xy[rows] + np.clip(offset[rows] * scale, -max_m, max_m), 2)
        which, ring_of = np.unique(idx[rows], return_inverse=True)
        drawn = shapely.polygons(shapely.linearrings(moved, indices=ring_of))
        ok = shapely.is_valid(drawn) & (shapely.get_num_interior_rings(dense[which]) == 0)
        out[which[ok]] = drawn[ok]
        todo[which[ok]] = False
        if not todo.any():
            break
    return out


def _centre_xy() -> tuple[float, float]:
    pt = gpd.GeoSeries([Point(*_CENTRE_LONLAT)], crs=DELIVERY_CRS).to_crs(ANALYSIS_CRS)
    return round(float(pt.x.iloc[0]), 0), round(float(pt.y.iloc[0]), 0)


# --------------------------------------------------------------------------- geometry
def _outline(rng: np.random.Generator, spec: _Scale, centre: tuple[float, float]) -> Polygon:
    """Irregular, smooth town outline: a perturbed super-ellipse of width x height."""
    n = spec.outline_vertices
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    expo = 2.0 / 3.0
    x = np.sign(c) * np.abs(c) ** expo
    y = np.sign(s) * np.abs(s) ** expo
    radial = np.ones(n)
    for k in range(2, 7):
        radial += rng.uniform(0.015, 0.06) / k**0.5 * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    radial += rng.uniform(-0.006, 0.006, size=n)
    pts = np.column_stack([x * radial * spec.width_m / 2, y * radial * spec.height_m / 2])
    ang = math.radians(rng.uniform(-8.0, 8.0))
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    pts = pts @ rot.T + np.asarray(centre)
    poly = shapely.set_precision(Polygon(np.round(pts, 2)), _GRID_SIZE)
    if not isinstance(poly, Polygon) or not poly.is_valid:
        msg = "demo outline is not a simple polygon"
        raise RuntimeError(msg)
    return poly


def _lattice(rng: np.random.Generator, bounds: tuple[float, ...], spacing: float,
             jitter: float) -> np.ndarray:
    """Jittered hexagonal lattice of points covering ``bounds`` with a margin."""
    x0, y0, x1, y1 = bounds
    dy = spacing * math.sqrt(3.0) / 2.0
    ys = np.arange(y0 - 2 * dy, y1 + 2 * dy, dy)
    xs = np.arange(x0 - 2 * spacing, x1 + 2 * spacing, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(len(ys)) % 2)[:, None] * spacing / 2.0
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    return pts + rng.uniform(-jitter, jitter, size=pts.shape) * spacing


def _partition(rng: np.random.Generator, spec: _Scale,
               outline: Polygon) -> tuple[np.ndarray, np.ndarray, float]:
    """Clip a Voronoi diagram of jittered seeds to the outline: the clean grid coverage."""
    spacing = math.sqrt(outline.area / (spec.n_grids * math.sqrt(3.0) / 2.0))
    pts = _lattice(rng, outline.bounds, spacing, 0.3)
    shapely.prepare(outline)
    pts = pts[shapely.contains_xy(outline, pts[:, 0], pts[:, 1])]
    x0, y0, x1, y1 = outline.bounds
    frame = shapely.box(x0 - 5 * spacing, y0 - 5 * spacing, x1 + 5 * spacing, y1 + 5 * spacing)
    vor = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, ordered=True)
    cells = shapely.get_parts(vor)
    inside = shapely.contains_properly(outline, cells)
    clipped = cells.copy()
    clipped[~inside] = shapely.intersection(cells[~inside], outline)
    clipped = shapely.set_precision(clipped, _GRID_SIZE)

    parts, owner = shapely.get_parts(clipped, return_index=True)
    keep_type = shapely.get_type_id(parts) == 3
    parts, owner = parts[keep_type], owner[keep_type]
    area = shapely.area(parts)
    min_area = 0.2 * float(np.median(area))
    holds_seed = shapely.contains_xy(parts, pts[owner, 0], pts[owner, 1])
    main = holds_seed & (area >= min_area)
    parts = _merge_orphans(parts, main)
    out = parts[main]
    seeds = pts[owner[main]]
    return out, seeds, spacing


def _merge_orphans(parts: np.ndarray, main: np.ndarray) -> np.ndarray:
    """Union every non-main part into the main part it shares the longest border with."""
    parts = parts.copy()
    orphans = [int(i) for i in np.flatnonzero(~main)]
    if not orphans:
        return parts
    edges = _edge_table(parts)
    pairs = _shared_pairs(edges)
    root = np.arange(len(parts))
    for _ in range(len(orphans) + 1):
        left = []
        for o in orphans:
            near = pairs[(pairs["a"] == o) | (pairs["b"] == o)]
            best, best_len = -1, 0.0
            for a, b, length in near[["a", "b", "length"]].itertuples(index=False):
                other = root[b if a == o else a]
                if main[other] and length > best_len:
                    best, best_len = int(other), float(length)
            if best < 0:
                left.append(o)
                continue
            parts[best] = shapely.coverage_union_all([parts[best], parts[o]])
            root[o] = best
        if not left:
            break
        if len(left) == len(orphans):
            msg = "demo partition: an outline fragment touches no grid"
            raise RuntimeError(msg)
        orphans = left
    return parts


def _edge_table(polys: np.ndarray) -> pd.DataFrame:
    """One row per exterior-ring segment, keyed by its 1 cm-rounded endpoints (sorted)."""
    rings = shapely.get_exterior_ring(polys)
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    key = np.rint(xy / _GRID_SIZE).astype(np.int64)
    same = idx[:-1] == idx[1:]
    a, b = key[:-1][same], key[1:][same]
    owner = idx[:-1][same]
    length = np.hypot(*(xy[1:][same] - xy[:-1][same]).T)
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    hi = np.where(swap[:, None], a, b)
    table = pd.DataFrame(
        {"x1": lo[:, 0], "y1": lo[:, 1], "x2": hi[:, 0], "y2": hi[:, 1], "owner": owner,
         "length": length}
    )
    return table[table["length"] > 0].reset_index(drop=True)


def _shared_pairs(edges: pd.DataFrame) -> pd.DataFrame:
    """Segments shared by two polygons: a < b, the segment's keys and length."""
    keys = ["x1", "y1", "x2", "y2"]
    merged = edges.merge(edges[[*keys, "owner"]], on=keys, suffixes=("", "_b"))
    merged = merged[merged["owner"] < merged["owner_b"]]
    out = merged.rename(columns={"owner": "a", "owner_b": "b"})[["a", "b", *keys, "length"]]
    return out.sort_values(["a", "b", *keys]).reset_index(drop=True)


def _check_coverage(cells: np.ndarray, boundary: shapely.Geometry) -> None:
    """Raise if the clean grids are not an exact, gap-free coverage of ``boundary``."""
    if not bool(shapely.coverage_is_valid(cells)):
        bad = int((~shapely.is_empty(shapely.coverage_invalid_edges(cells))).sum())
        msg = f"demo grids are not a valid coverage ({bad} cells with invalid edges)"
        raise RuntimeError(msg)
    total = float(shapely.area(cells).sum())
    if not isinstance(boundary, Polygon) or len(boundary.interiors):
        msg = "demo grid union is not one polygon without holes"
        raise RuntimeError(msg)
    if abs(total - boundary.area) > 1e-6 * boundary.area:
        msg = f"demo grids cover {total:.1f} m² of a {boundary.area:.1f} m² town"
        raise RuntimeError(msg)


# --------------------------------------------------------------------------- villages
def _villages(rng: np.random.Generator, spec: _Scale, outline: Polygon, cells: np.ndarray,
              cell_seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign cells to the nearest village seed, then make every village one piece."""
    # village seeds keep clear of the outline; size the lattice for the inner area
    spacing = math.sqrt(outline.area / (spec.n_villages * math.sqrt(3.0) / 2.0))
    inner = shapely.buffer(outline, -0.3 * spacing)
    spacing = math.sqrt(inner.area / (spec.n_villages * math.sqrt(3.0) / 2.0))
    inner = shapely.buffer(outline, -0.3 * spacing)
    pts = _lattice(rng, outline.bounds, spacing, 0.25)
    shapely.prepare(inner)
    pts = pts[shapely.contains_xy(inner, pts[:, 0], pts[:, 1])]
    tree = shapely.STRtree(shapely.points(pts))
    near = tree.query_nearest(shapely.points(cell_seeds), all_matches=False)
    assign = np.empty(len(cell_seeds), dtype=np.int64)
    assign[near[0]] = near[1]
    pairs = _shared_pairs(_edge_table(cells))
    for _ in range(20):
        changed = False
        for v in range(len(pts)):
            members = np.flatnonzero(assign == v)
            if len(members) == 0:
                continue
            union = shapely.coverage_union_all(cells[members])
            comps = shapely.get_parts(union)
            if len(comps) <= 1:
                continue
            order = np.argsort(-shapely.area(comps), kind="stable")
            reps = shapely.point_on_surface(cells[members])
            for comp in comps[order[1:]]:
                moved = members[shapely.within(reps, comp)]
                _reassign(moved, assign, pairs, v)
                changed = True
        if not changed:
            break
    used = np.unique(assign)
    remap = -np.ones(len(pts), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[assign], pts[used]


def _reassign(moved: np.ndarray, assign: np.ndarray, pairs: pd.DataFrame, old: int) -> None:
    """Give a detached group of cells to the neighbouring village sharing most border."""
    inside = np.zeros(len(assign), dtype=bool)
    inside[moved] = True
    a, b, length = pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["length"].to_numpy()
    # border segments between the group and cells of other villages, seen from either side
    cross_ab = inside[a] & ~inside[b]
    cross_ba = inside[b] & ~inside[a]
    other = np.concatenate([assign[b[cross_ab]], assign[a[cross_ba]]])
    shared = np.concatenate([length[cross_ab], length[cross_ba]])
    ok = other != old
    if ok.any():
        score = np.bincount(other[ok], weights=shared[ok])
        assign[moved] = int(np.argmax(score))


def _village_frames(rng: np.random.Generator, spec: _Scale, cells: np.ndarray,
                    cell_seeds: np.ndarray, assign: np.ndarray, village_seeds: np.ndarray,
                    centre: tuple[float, float]) -> dict[str, Any]:
    """Order villages and grids north-west first; name them; union the village polygons."""
    n = len(village_seeds)
    polys = np.array([shapely.coverage_union_all(cells[assign == v]) for v in range(n)],
                     dtype=object)
    if (shapely.get_type_id(polys) != 3).any():
        msg = "demo: a village is not one polygon"
        raise RuntimeError(msg)
    cent = shapely.get_coordinates(shapely.centroid(polys))
    order = np.lexsort((cent[:, 0], -np.round(cent[:, 1] / 1000.0)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    polys = polys[order]
    seeds = village_seeds[order]
    assign = rank[assign]

    width = _width(n, 2)
    village_ids = [f"V{i + 1:0{width}d}" for i in range(n)]
    pool = sorted({a + b for a in _VILLAGE_FIRST for b in _VILLAGE_SECOND if a != b} - {"东社"})
    bases = [str(x) for x in rng.choice(pool, size=n, replace=False)]
    dist = np.hypot(seeds[:, 0] - centre[0], seeds[:, 1] - centre[1])
    community = np.zeros(n, dtype=bool)
    hub = int(np.argmin(dist))
    bases[hub] = "东社"
    community[hub] = True
    extra = [int(i) for i in np.argsort(dist, kind="stable")[1:] if not community[i]]
    step = max(1, len(extra) // max(1, spec.n_communities - 1))
    for i in extra[::step][: spec.n_communities - 1]:
        community[i] = True
    names = [f"{b}社区" if community[i] else f"{b}村" for i, b in enumerate(bases)]

    # village centres: the seed if well inside, else a point on surface
    centres = np.empty((n, 2))
    for v in range(n):
        p = Point(seeds[v])
        if polys[v].contains(p) and polys[v].exterior.distance(p) > 200:
            centres[v] = seeds[v]
        else:
            centres[v] = shapely.get_coordinates(polys[v].point_on_surface())[0]

    # grids: by village, then north-west first inside the village
    gorder = np.lexsort((cell_seeds[:, 0], -np.round(cell_seeds[:, 1] / 100.0), assign))
    cells = cells[gorder]
    cell_seeds = cell_seeds[gorder]
    assign = assign[gorder]
    per_village = np.bincount(assign, minlength=n)
    gwidth = _width(int(per_village.max()), 2)
    counter = np.zeros(n, dtype=np.int64)
    grid_ids, grid_names = [], []
    for v in assign:
        counter[v] += 1
        grid_ids.append(f"{village_ids[v]}-G{counter[v]:0{gwidth}d}")
        grid_names.append(f"{names[v]}第{counter[v]}网格")
    return {
        "cells": cells, "cell_seeds": cell_seeds, "grid_village": assign,
        "village_polys": polys, "village_ids": village_ids, "village_bases": bases,
        "village_names": names, "community": community, "centres": centres,
        "grid_ids": grid_ids, "grid_names": grid_names, "hub": hub,
    }


# --------------------------------------------------------------------------- lines
def _meander(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, step: float,
             amp: float, waves: tuple[float, float], pin_ends: bool = True) -> np.ndarray:
    """Polyline from p0 to p1 with sinusoidal meanders of amplitude ``amp``."""
    d = p1 - p0
    length = float(np.hypot(*d))
    n = max(2, math.ceil(length / step) + 1)
    t = np.linspace(0.0, 1.0, n)
    normal = np.array([-d[1], d[0]]) / max(length, 1e-9)
    offset = np.zeros(n)
    for _ in range(2):
        wl = rng.uniform(*waves)
        offset += rng.uniform(0.4, 1.0) * amp * np.sin(2 * math.pi * t * length / wl
                                                       + rng.uniform(0, 2 * math.pi))
    if pin_ends:
        offset *= np.sin(math.pi * t) ** 0.5
    pts = p0 + t[:, None] * d + offset[:, None] * normal
    return np.round(pts, 2)


def _crossing(bounds: tuple[float, ...], through: np.ndarray,
              angle: float) -> tuple[np.ndarray, np.ndarray]:
    """End points of a straight line through ``through`` crossing all of ``bounds``."""
    x0, y0, x1, y1 = bounds
    reach = math.hypot(x1 - x0, y1 - y0)
    u = np.array([math.cos(angle), math.sin(angle)])
    return through - u * reach, through + u * reach


def _rivers(rng: np.random.Generator, spec: _Scale, boundary: Polygon,
            village_polys: np.ndarray) -> tuple[np.ndarray, list[str], list[str], list[float]]:
    """Main canals crossing the whole plain and minor rivers, each through several villages."""
    x0, y0, x1, y1 = boundary.bounds
    w, h = x1 - x0, y1 - y0
    tree = shapely.STRtree(village_polys)

    def clipped(coords: np.ndarray) -> LineString | None:
        """The longest part inside the town, if it runs >= 100 m through two villages."""
        geom = shapely.line_merge(shapely.intersection(LineString(coords), boundary))
        parts = [p for p in shapely.get_parts(geom) if p.geom_type == "LineString"]
        if not parts:
            return None
        longest = max(parts, key=lambda p: p.length)
        hit = tree.query(longest, predicate="intersects")
        through = shapely.length(shapely.intersection(longest, village_polys[hit]))
        if longest.length < 800.0 or int((through >= 100.0).sum()) < 2:
            return None
        return longest

    out: list[LineString] = []
    levels: list[str] = []
    widths: list[float] = []
    n_ew = (spec.n_main_rivers + 1) // 2
    n_ns = spec.n_main_rivers - n_ew
    for i in range(spec.n_main_rivers):
        if i < n_ew:
            frac = (i + 0.5 + rng.uniform(-0.25, 0.25)) / n_ew
            through = np.array([x0 + w / 2, y0 + frac * h])
            ang = math.radians(rng.uniform(-15, 15))
        else:
            frac = (i - n_ew + 0.5 + rng.uniform(-0.25, 0.25)) / max(n_ns, 1)
            through = np.array([x0 + frac * w, y0 + h / 2])
            ang = math.radians(90 + rng.uniform(-15, 15))
        a, b = _crossing(boundary.bounds, through, ang)
        line = clipped(_meander(rng, a, b, 60.0, rng.uniform(120, 350), (1500, 4000), False))
        width = round(float(rng.uniform(20, 40)), 1)
        if line is not None:
            out.append(line)
            levels.append("town")
            widths.append(width)
    for _ in range(spec.n_minor_rivers):
        for _attempt in range(30):
            start = np.array([rng.uniform(x0 + 0.1 * w, x1 - 0.1 * w),
                              rng.uniform(y0 + 0.1 * h, y1 - 0.1 * h)])
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(*spec.minor_river_km) * 1000.0
            end = start + length * np.array([math.cos(ang), math.sin(ang)])
            line = clipped(_meander(rng, start, end, 50.0, rng.uniform(60, 200), (800, 2500)))
            if line is not None:
                out.append(line)
                levels.append("village")
                widths.append(round(float(rng.uniform(8, 18)), 1))
                break
    order = np.argsort([-g.length for g in out], kind="stable")
    bases = [str(b) for b in rng.permutation(np.array(_RIVER_BASES))]
    names = []
    for i in range(len(out)):
        base = bases[i % len(bases)] + ("" if i < len(bases) else str(i // len(bases) + 1))
        names.append(base + ("河" if i % 3 else "港"))
    rivers = np.array([out[i] for i in order], dtype=object)
    return rivers, names, [levels[i] for i in order], [widths[i] for i in order]


def _roads(rng: np.random.Generator, spec: _Scale, boundary: Polygon, village_polys: np.ndarray,
           centres: np.ndarray, bases: list[str], community: np.ndarray, hub_index: int,
           spacing: float) -> tuple[_Roads, list[LineString]]:
    """Main roads, secondary roads between villages, village roads and lanes."""
    roads = _Roads([], [], [])
    x0, y0, x1, y1 = boundary.bounds
    w, h = x1 - x0, y1 - y0
    hub = centres[hub_index]
    main_lines: list[LineString] = []
    main_names = [f"{b}路" for b in rng.permutation(np.array(_MAIN_ROAD_BASES))]
    for i in range(spec.n_main_roads):
        if spec.n_main_roads <= 4:
            through = hub + rng.uniform(-400, 400, size=2)
            ang = math.radians(i * 180.0 / spec.n_main_roads + rng.uniform(-12, 12))
        else:
            through = np.array([rng.uniform(x0 + 0.15 * w, x1 - 0.15 * w),
                                rng.uniform(y0 + 0.15 * h, y1 - 0.15 * h)])
            ang = math.radians((i % 4) * 45.0 + rng.uniform(-15, 15))
        a, b = _crossing(boundary.bounds, through, ang)
        coords = _meander(rng, a, b, 50.0, rng.uniform(40, 120), (3000, 8000), False)
        name = main_names[i % len(main_names)]
        if i >= len(main_names):
            name = name.replace("路", f"{i // len(main_names) + 1}路")
        main_lines.append(LineString(coords))
        roads.add(coords, "main", name, 6)

    # secondary: minimum spanning tree of village centres plus a share of the other
    # Delaunay edges
    tri = shapely.delaunay_triangles(shapely.multipoints(centres), only_edges=True)
    segs = shapely.get_coordinates(shapely.get_parts(tri)).reshape(-1, 2, 2)
    tree = shapely.STRtree(shapely.points(centres))
    near = tree.query_nearest(shapely.points(segs.reshape(-1, 2)), all_matches=False)
    ends = np.empty(len(segs) * 2, dtype=np.int64)
    ends[near[0]] = near[1]
    ends = ends.reshape(-1, 2)
    ends = np.sort(ends, axis=1)
    ends = np.unique(ends, axis=0)
    lengths = np.hypot(*(centres[ends[:, 0]] - centres[ends[:, 1]]).T)
    order = np.argsort(lengths, kind="stable")
    parent = np.arange(len(centres))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    chosen = []
    extra_p = rng.uniform(size=len(order))
    for k, e in enumerate(order):
        a, b = int(ends[e, 0]), int(ends[e, 1])
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            chosen.append(e)
        elif extra_p[k] < 0.3 and lengths[e] < 2.2 * np.median(lengths):
            chosen.append(e)
    for e in sorted(chosen):
        a, b = int(ends[e, 0]), int(ends[e, 1])
        coords = _meander(rng, centres[a], centres[b], 40.0, rng.uniform(30, 90), (800, 2500))
        roads.add(coords, "secondary", f"{bases[a]}{bases[b]}路", 6)

    # settlements: centre of each village plus hamlets; village roads; lanes
    for v in range(len(centres)):
        poly = village_polys[v]
        shapely.prepare(poly)
        settlements = [centres[v]]
        n_ham = int(rng.integers(spec.hamlets[0], spec.hamlets[1] + 1))
        bx0, by0, bx1, by1 = poly.bounds
        for _ in range(60):
            if len(settlements) > n_ham:
                break
            p = np.array([rng.uniform(bx0, bx1), rng.uniform(by0, by1)])
            if not poly.contains(Point(p)):
                continue
            if min(math.hypot(*(p - q)) for q in settlements) < 0.9 * spacing:
                continue
            settlements.append(p)
        k_road = 0
        for p in settlements[1:]:
            k_road += 1
            coords = _meander(rng, p, centres[v], 30.0, rng.uniform(20, 60), (400, 1200))
            roads.add(coords, "village", f"{bases[v]}{_ordinal(k_road)}组路", 5)
        for _ in range(int(rng.integers(spec.radial_roads[0], spec.radial_roads[1] + 1))):
            k_road += 1
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.8, 1.8) * spacing
            end = centres[v] + length * np.array([math.cos(ang), math.sin(ang)])
            coords = _meander(rng, centres[v], end, 30.0, rng.uniform(15, 40), (400, 1200))
            roads.add(coords, "village", f"{bases[v]}{_ordinal(k_road)}组路", 5)
        k_lane = 0
        for j, p in enumerate(settlements):
            big = j == 0 and community[v]
            n_nodes = spec.centre_lattice if big else int(rng.integers(spec.lattice[0],
                                                                       spec.lattice[1] + 1))
            for piece in _lane_lattice(rng, p, n_nodes, rng.uniform(50, 80)):
                k_lane += 1
                roads.add(piece, "lane", f"{bases[v]}{k_lane}巷", 1)
        for _ in range(int(rng.integers(spec.field_lanes[0], spec.field_lanes[1] + 1))):
            k_lane += 1
            start = settlements[int(rng.integers(len(settlements)))]
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.4, 1.2) * spacing
            end = start + length * np.array([math.cos(ang), math.sin(ang)])
            coords = _meander(rng, start, end, 25.0, rng.uniform(5, 20), (300, 900))
            roads.add(coords, "lane", f"{bases[v]}{k_lane}号农路", 4)
    return roads, main_lines


def _lane_lattice(rng: np.random.Generator, centre: np.ndarray, n: int,
                  spacing: float) -> list[np.ndarray]:
    """Irregular lattice of short lanes around a settlement centre; one piece per edge."""
    ij = np.arange(n) - (n - 1) / 2.0
    gx, gy = np.meshgrid(ij * spacing, ij * spacing)
    nodes = np.stack([gx, gy], axis=-1) + rng.uniform(-0.18, 0.18, size=(n, n, 2)) * spacing
    ang = rng.uniform(0, math.pi / 2)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    nodes = nodes @ rot.T + centre
    nodes = np.round(nodes, 2)
    keep_h = rng.uniform(size=(n, n - 1)) < 0.8
    keep_v = rng.uniform(size=(n - 1, n)) < 0.8
    out = []
    for r in range(n):
        for c in range(n - 1):
            if keep_h[r, c]:
                out.append(np.array([nodes[r, c], nodes[r, c + 1]]))
    for r in range(n - 1):
        for c in range(n):
            if keep_v[r, c]:
                out.append(np.array([nodes[r, c], nodes[r + 1, c]]))
    return out


@dataclass
class _RoadLines:
    """Road pieces as shapely lines, clipped to the town."""

    lines: np.ndarray
    classes: np.ndarray
    names: np.ndarray

    def subset(self, mask: np.ndarray) -> _RoadLines:
        """Keep the rows where ``mask`` is True."""
        return _RoadLines(self.lines[mask], self.classes[mask], self.names[mask])

    def append(self, geom: LineString, road_class: str, name: str) -> None:
        """Add one road piece at the end."""
        self.lines = np.append(self.lines, np.array([geom], dtype=object))
        self.classes = np.append(self.classes, np.array([road_class], dtype=object))
        self.names = np.append(self.names, np.array([name], dtype=object))


def _road_lines(roads: _Roads, boundary: Polygon) -> _RoadLines:
    """Build the road pieces as lines, clip them to the town, drop pieces under 1 m."""
    counts = np.array([len(c) for c in roads.coords])
    coords = np.vstack(roads.coords)
    lines = shapely.linestrings(coords, indices=np.repeat(np.arange(len(counts)), counts))
    shapely.prepare(boundary)
    inside = shapely.contains_properly(boundary, lines)
    clipped = lines.copy()
    clipped[~inside] = shapely.intersection(lines[~inside], boundary)
    parts, owner = shapely.get_parts(clipped, return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= 1.0)
    parts, owner = parts[keep], owner[keep]
    classes = np.asarray(roads.classes, dtype=object)[owner]
    names = np.asarray(roads.names, dtype=object)[owner]
    return _RoadLines(parts, classes, names)


def _road_frame(lines: _RoadLines, *, n_planted: int,
                n_edge: int) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Number the roads by class (main first) and build the frame."""
    rank = {c: i for i, c in enumerate(("main", "secondary", "village", "lane"))}
    order = np.argsort([rank[c] for c in lines.classes], kind="stable")
    n = len(order)
    width = _width(n, 4)
    ids = np.empty(n, dtype=object)
    ids[order] = [f"R{i + 1:0{width}d}" for i in range(n)]
    frame = gpd.GeoDataFrame(
        {"road_id": list(ids[order]), "road_class": list(lines.classes[order]),
         "name": list(lines.names[order])},
        geometry=list(lines.lines[order]),
        crs=ANALYSIS_CRS,
    )
    first_planted = n - n_planted - n_edge
    planted_ids = [str(ids[i]) for i in range(first_planted, first_planted + n_planted)]
    return frame, planted_ids


# --------------------------------------------------------------------------- defects
class _Planter:
    """Chooses where the defects go and plants them, exactly, into the grid polygons."""

    def __init__(self, rng: np.random.Generator, spec: _Scale, cells: np.ndarray,
                 seeds: np.ndarray, grid_village: np.ndarray, pairs: pd.DataFrame,
                 on_edge: np.ndarray, spacing: float, roads: _RoadLines,
                 rivers: np.ndarray) -> None:
        self.rng = rng
        self.spec = spec
        self.cells = cells.copy()
        self.seeds = seeds
        self.grid_village = grid_village
        self.pairs = pairs
        self.on_edge = on_edge
        self.spacing = spacing
        self.blocked = np.zeros(len(cells), dtype=bool)
        protected = roads.lines[roads.classes != "lane"]
        self.major = shapely.STRtree(np.concatenate([protected, rivers]))
        self.any_road = shapely.STRtree(np.concatenate([roads.lines, rivers]))
        # planted records
        self.gaps: list[dict[str, Any]] = []
        self.overlaps: list[dict[str, Any]] = []
        self.zones: list[tuple[Polygon, str]] = []
        self.spiked: list[int] = []
        self.unstaffed_grids: list[int] = []
        self.reaches_dropped: list[int] = []
        self.neigh: dict[int, list[int]] = {}
        for a, b in zip(pairs["a"].to_numpy(), pairs["b"].to_numpy(), strict=True):
            self.neigh.setdefault(int(a), []).append(int(b))
            self.neigh.setdefault(int(b), []).append(int(a))

    # -------------------------------------------------------------- helpers
    def _block(self, *cells: int) -> None:
        for c in cells:
            self.blocked[c] = True
            for n in self.neigh.get(c, []):
                self.blocked[n] = True

    def _free(self, c: int) -> bool:
        return not self.blocked[c] and not self.on_edge[c]

    def _candidates(self) -> pd.DataFrame:
        p = self.pairs
        same = self.grid_village[p["a"].to_numpy()] == self.grid_village[p["b"].to_numpy()]
        long_enough = p["length"].to_numpy() >= 0.3 * self.spacing
        cand = p[same & long_enough]
        return cand.iloc[self.rng.permutation(len(cand))].reset_index(drop=True)

    def _shape(self, row: Any, into: int) -> dict[str, Any] | None:
        """A pentagon standing on the shared segment and reaching into cell ``into``."""
        s = np.array([row.x1, row.y1], dtype=float) * _GRID_SIZE
        t = np.array([row.x2, row.y2], dtype=float) * _GRID_SIZE
        d = t - s
        length = float(np.hypot(*d))
        e = d / length
        normal = np.array([-e[1], e[0]])
        if np.dot(self.seeds[into] - (s + t) / 2, normal) < 0:
            normal = -normal
        w = self.rng.uniform(0.12, 0.16) * self.spacing
        depth = self.rng.uniform(0.09, 0.12) * self.spacing
        u = self.rng.uniform(0.4, 0.6)
        m = s + e * length * u
        if u * length < w / 2 + 0.1 * length or (1 - u) * length < w / 2 + 0.1 * length:
            return None
        p1 = np.round(m - e * w / 2, 2)
        p2 = np.round(m + e * w / 2, 2)
        q1 = np.round(p1 + normal * depth + e * w * 0.12, 2)
        q2 = np.round(p2 + normal * depth - e * w * 0.12, 2)
        apex = np.round(m + normal * depth * 1.45 + e * w * self.rng.uniform(-0.15, 0.15), 2)
        zone = Polygon([p1, q1, apex, q2, p2])
        return {"s": s, "t": t, "p1": p1, "p2": p2, "path": np.array([p1, q1, apex, q2, p2]),
                "zone": shapely.normalize(zone), "normal": normal, "m": m, "depth": depth}

    def _fits(self, shape: dict[str, Any], a: int, b: int, into: int,
              strict: bool) -> tuple[Polygon, Polygon] | None:
        """Apply a shape to grid a (which changes) and b (which gains two vertices).

        Returns the new pair if the zone is a clean gap (in neither grid) or a clean
        overlap (in both), well away from the host's other edges and from roads and
        rivers (``strict``: all of them; else all but lanes, which are removed later).
        """
        zone = shape["zone"]
        host = self.cells[into]
        if not zone.is_valid or not shapely.within(zone, shapely.buffer(host, 0.05)):
            return None
        rest = _ring_without(host, shape["s"], shape["t"])
        if rest is None or shapely.distance(zone, rest) < 0.08 * self.spacing:
            return None
        tree = self.any_road if strict else self.major
        if len(tree.query(zone, predicate="dwithin", distance=25.0)):
            return None
        new_a = _insert(self.cells[a], shape["s"], shape["t"], shape["path"])
        new_b = _insert(self.cells[b], shape["s"], shape["t"], np.array([shape["p1"],
                                                                          shape["p2"]]))
        if new_a is None or new_b is None or not (new_a.is_valid and new_b.is_valid):
            return None
        inside = shapely.area(shapely.intersection(np.array([new_a, new_b]), zone))
        expect = 0.0 if into == a else zone.area  # gap: in neither; overlap: in both
        if np.abs(inside - expect).max() > 1e-3:
            return None
        return new_a, new_b

    # -------------------------------------------------------------- planting
    def gaps_and_overlaps(self) -> None:
        """Plant 2k gaps and k overlaps (k = spec.n_defects) between same-village grids."""
        k = self.spec.n_defects
        want = ["gap"] * (2 * k) + ["overlap"] * k
        cand = self._candidates()
        for strict in (True, False):
            for row in cand.itertuples(index=False):
                if not want:
                    break
                a, b = int(row.a), int(row.b)
                if not (self._free(a) and self._free(b)):
                    continue
                if self.rng.uniform() < 0.5:
                    a, b = b, a
                kind = want[0]
                # gap: cut from a, reaching into a; overlap: a grows into b
                into = a if kind == "gap" else b
                shape = self._shape(row, into)
                if shape is None:
                    continue
                fit = self._fits(shape, a, b, into, strict)
                if fit is None:
                    continue
                if kind == "gap" and not self._lane_fits(shape, a, b):
                    continue
                new_a, new_b = fit
                before = self.cells[a].area
                self.cells[a], self.cells[b] = new_a, new_b
                rec = {"a": a, "b": b, "zone": shape["zone"], "shape": shape,
                       "change": new_a.area - before}
                (self.gaps if kind == "gap" else self.overlaps).append(rec)
                self.zones.append((shape["zone"], kind))
                self._block(a, b)
                want.pop(0)
        if want:
            msg = f"demo: no room to plant {want}"
            raise RuntimeError(msg)

    def _lane_fits(self, shape: dict[str, Any], a: int, b: int) -> bool:
        """The planted lane must run from inside grid a through the gap into grid b."""
        lane = self._lane_geom(shape)
        start, end = Point(lane.coords[0]), Point(lane.coords[-1])
        return bool(
            self.cells[a].contains(start) and self.cells[a].exterior.distance(start) > 5.0
            and self.cells[b].contains(end) and self.cells[b].exterior.distance(end) > 5.0
        )

    def _lane_geom(self, shape: dict[str, Any]) -> LineString:
        n, m, depth = shape["normal"], shape["m"], shape["depth"]
        e = np.array([n[1], -n[0]])
        w = float(np.hypot(*(shape["p2"] - shape["p1"])))
        start = np.round(m + n * (depth * 1.45 + 0.12 * self.spacing) + e * 0.15 * w, 2)
        mid = np.round(m + n * depth * 0.5 + e * 0.05 * w, 2)
        end = np.round(m - n * 0.1 * self.spacing - e * 0.1 * w, 2)
        return LineString([start, mid, end])

    def gap_lanes(self, bases: list[str]) -> list[tuple[LineString, str, str]]:
        """The lanes through the first half of the gaps (the other half get a school)."""
        out = []
        for rec in self.gaps[: self.spec.n_defects]:
            lane = self._lane_geom(rec["shape"])
            rec["lane"] = lane
            village = int(self.grid_village[rec["a"]])
            out.append((lane, "lane", f"{bases[village]}断头巷"))
        return out

    def edge_roads(self, n: int, bases: list[str]) -> list[tuple[LineString, str, str]]:
        """Roads lying exactly along a shared grid edge (legitimate coverage)."""
        out: list[tuple[LineString, str, str]] = []
        p = self.pairs
        order = self.rng.permutation(len(p))
        for i in order:
            if len(out) >= n:
                break
            row = p.iloc[int(i)]
            a, b = int(row["a"]), int(row["b"])
            if self.blocked[a] or self.blocked[b] or row["length"] < 0.25 * self.spacing:
                continue
            s = _vertex(self.cells[a], row["x1"], row["y1"])
            t = _vertex(self.cells[a], row["x2"], row["y2"])
            if s is None or t is None:
                continue
            geom = LineString([s, t])
            if len(self.any_road.query(geom, predicate="dwithin", distance=5.0)):
                continue
            village = int(self.grid_village[a])
            out.append((geom, "village", f"{bases[village]}分界路"))
            self._block(a, b)
        return out

    def spikes(self) -> list[tuple[int, Polygon]]:
        """Zero-width inward spikes on k grids: invalid rings that repair to the intended grid."""
        out = []
        for c in self.rng.permutation(len(self.cells)):
            if len(out) >= self.spec.n_defects:
                break
            c = int(c)
            if not self._free(c):
                continue
            ring = np.asarray(self.cells[c].exterior.coords)
            i = int(self.rng.integers(0, len(ring) - 1))
            v = ring[i]
            to_seed = self.seeds[c] - v
            dist = float(np.hypot(*to_seed))
            tip = np.round(v + to_seed / dist * min(0.12 * self.spacing, 0.4 * dist), 2)
            coords = np.vstack([ring[: i + 1], [tip, v], ring[i + 1 :]])
            spiked = Polygon(coords)
            fixed = shapely.make_valid(spiked, method="structure", keep_collapsed=False)
            if spiked.is_valid or fixed.geom_type != "Polygon":
                continue
            if shapely.symmetric_difference(fixed, self.cells[c]).area > 1e-6:
                continue
            out.append((c, spiked))
            self.spiked.append(c)
            self._block(c)
        return out

    def unstaffed(self) -> list[int]:
        """Grids whose roster will have members but no chief."""
        for c in self.rng.permutation(len(self.cells)):
            if len(self.unstaffed_grids) >= self.spec.n_defects:
                break
            if not self.blocked[int(c)]:
                self.unstaffed_grids.append(int(c))
                self._block(int(c))
        return self.unstaffed_grids

    def choose_reaches(self, reaches: pd.DataFrame) -> list[int]:
        """Reaches (rows of ``reaches``) whose village chief will be missing.

        Only a river that runs through the village in one contiguous piece, so the
        defect is one reach however the engine splits reaches.
        """
        per_river = reaches.groupby("river")["river"].transform("size")
        ok = reaches.index[(reaches["length"] >= 300.0) & (per_river >= 2)
                           & (reaches["pieces"] == 1)
                           & (shapely.get_type_id(reaches["geometry"].to_numpy()) == 1)]
        chosen: list[int] = []
        used_rivers: list[int] = []
        for i in self.rng.permutation(np.asarray(ok)):
            if len(chosen) >= self.spec.n_defects:
                break
            river = int(reaches.at[int(i), "river"])
            if river in used_rivers:
                continue
            chosen.append(int(i))
            used_rivers.append(river)
        self.reaches_dropped = sorted(chosen)
        return self.reaches_dropped


def _ring_without(poly: Polygon, s: np.ndarray, t: np.ndarray) -> LineString | None:
    """The exterior ring of ``poly`` minus its segment s-t, as one open line."""
    ring = np.asarray(poly.exterior.coords)[:-1]
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    ks = np.rint(s / _GRID_SIZE).astype(np.int64)
    kt = np.rint(t / _GRID_SIZE).astype(np.int64)
    i = np.flatnonzero((key == ks).all(axis=1))
    j = np.flatnonzero((key == kt).all(axis=1))
    if len(i) != 1 or len(j) != 1:
        return None
    n = len(ring)
    i, j = int(i[0]), int(j[0])
    if (i + 1) % n == j:  # s -> t: walk from t round to s
        idx = [(j + k) % n for k in range(n)]
    elif (j + 1) % n == i:
        idx = [(i + k) % n for k in range(n)]
    else:
        return None
    return LineString(ring[idx])


def _insert(poly: Polygon, s: np.ndarray, t: np.ndarray, path: np.ndarray) -> Polygon | None:
    """Insert ``path`` (ordered from s to t) between the ring vertices s and t."""
    ring = np.asarray(poly.exterior.coords)
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    ks = np.rint(s / _GRID_SIZE).astype(np.int64)
    kt = np.rint(t / _GRID_SIZE).astype(np.int64)
    for i in range(len(ring) - 1):
        if (key[i] == ks).all() and (key[i + 1] == kt).all():
            return Polygon(np.vstack([ring[: i + 1], path, ring[i + 1 :]]))
        if (key[i] == kt).all() and (key[i + 1] == ks).all():
            return Polygon(np.vstack([ring[: i + 1], path[::-1], ring[i + 1 :]]))
    return None


def _vertex(poly: Polygon, kx: int, ky: int) -> np.ndarray | None:
    """The exact ring coordinate whose 1 cm key is (kx, ky)."""
    ring = np.asarray(poly.exterior.coords)
    key = np.rint(ring / _GRID_SIZE).astype(np.int64)
    hit = np.flatnonzero((key[:, 0] == kx) & (key[:, 1] == ky))
    return ring[int(hit[0])] if len(hit) else None


# --------------------------------------------------------------------------- POIs
def _pois(rng: np.random.Generator, plant: _Planter, centres: np.ndarray, bases: list[str],
          village_names: list[str], rivers: np.ndarray, river_names: list[str],
          river_levels: list[str], main_lines: list[LineString], boundary: Polygon,
          centre: tuple[float, float]) -> list[tuple[str, str, Point]]:
    """Must-check points; every one strictly inside one grid, clear of planted zones."""
    tree = shapely.STRtree(plant.cells)
    zones = shapely.union_all([z for z, _ in plant.zones]) if plant.zones else None
    rings = shapely.get_exterior_ring(plant.cells)

    def ok(p: Point) -> bool:
        hit = tree.query(p, predicate="within")
        if len(hit) != 1 or shapely.distance(p, rings[int(hit[0])]) < 3.0:
            return False
        return zones is None or zones.distance(p) >= 10.0

    offsets = [(0.0, 0.0)] + [
        (r * math.cos(a), r * math.sin(a))
        for r in (15.0, 30.0, 60.0, 120.0, 200.0)
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ]

    def near(base: np.ndarray) -> Point:
        for dx, dy in offsets:
            p = Point(round(base[0] + dx, 2), round(base[1] + dy, 2))
            if ok(p):
                return p
        msg = "demo: no place for a must-check point"
        raise RuntimeError(msg)

    def along(line: LineString, start: float, step: float) -> Point | None:
        d = start
        while 0 <= d <= line.length:
            q = line.interpolate(d)
            p = Point(round(q.x, 2), round(q.y, 2))
            if ok(p):
                return p
            d += step
        return None

    out: list[tuple[str, str, Point]] = []
    for v in range(len(centres)):
        c = centres[v]
        is_comm = village_names[v].endswith("社区")

        def around(r0: float, r1: float, c: np.ndarray = c) -> np.ndarray:
            ang = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(r0, r1)
            return c + r * np.array([math.cos(ang), math.sin(ang)])

        out.append(("clinic", f"{village_names[v]}卫生室", near(around(40, 150))))
        if is_comm or v % 3 == 0:
            out.append(("school", f"{bases[v]}小学", near(around(150, 350))))
        if is_comm or v % 3 == 1:
            out.append(("kindergarten", f"{bases[v]}幼儿园", near(around(100, 300))))
        if is_comm or v % 5 == 2:
            out.append(("market", f"{bases[v]}农贸市场", near(around(50, 200))))
    for i, (river, level) in enumerate(zip(rivers, river_levels, strict=True)):
        if level != "town":
            continue
        p = along(river, river.length * rng.uniform(0.3, 0.7), 25.0)
        if p is not None:
            out.append(("water_intake", f"{river_names[i]}取水口", p))
    k = 0
    for line in main_lines:
        for part in shapely.get_parts(shapely.intersection(line, boundary)):
            if part.geom_type != "LineString" or part.length < 200:
                continue
            for end, start, step in ((part.coords[0], 30.0, 10.0),
                                     (part.coords[-1], part.length - 30.0, -10.0)):
                if boundary.exterior.distance(Point(end)) > 1e-3:
                    continue
                p = along(part, start, step)
                if p is None:
                    continue
                k += 1
                direction = _direction(np.array(end) - np.asarray(centre))
                out.append(("town_entrance", f"{direction}{k}号镇入口", p))
    # the schools standing in the gaps without a lane
    for rec in plant.gaps[plant.spec.n_defects :]:
        zone = rec["zone"]
        p = zone.centroid
        p = Point(round(p.x, 2), round(p.y, 2))
        village = int(plant.grid_village[rec["a"]])
        rec["poi_index"] = len(out)
        out.append(("school", f"{bases[village]}新村小学", p))
    return out


def _direction(vec: np.ndarray) -> str:
    ang = math.degrees(math.atan2(vec[1], vec[0])) % 360
    return ("东", "北", "西", "南")[int(((ang + 45) % 360) // 90)]


# --------------------------------------------------------------------------- rosters
def _reaches(rivers: np.ndarray, village_polys: np.ndarray) -> pd.DataFrame:
    """Every (river, village) pair with a river part inside the village."""
    tree = shapely.STRtree(village_polys)
    r_idx, v_idx = tree.query(rivers, predicate="intersects")
    parts = shapely.line_merge(shapely.intersection(rivers[r_idx], village_polys[v_idx]))
    length = shapely.length(parts)
    frame = pd.DataFrame({"river": r_idx, "village": v_idx, "length": length,
                          "pieces": shapely.get_num_geometries(parts), "geometry": parts})
    frame = frame[frame["length"] > 0].sort_values(["river", "village"], kind="stable")
    return frame.reset_index(drop=True)


def _people(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """``n`` deterministic Chinese names and distinct 11-digit mobile numbers."""
    surname = rng.integers(len(_SURNAMES), size=n)
    given_len = rng.integers(1, 3, size=n)
    given = rng.integers(len(_GIVEN), size=(n, 2))
    names = [
        _SURNAMES[s] + _GIVEN[g[0]] + (_GIVEN[g[1]] if k == 2 else "")
        for s, g, k in zip(surname, given, given_len, strict=True)
    ]
    prefix = np.asarray(_PHONE_PREFIXES, dtype=object)
    phones = pd.Series(
        prefix[rng.integers(len(prefix), size=n)]
        + np.char.zfill(rng.integers(0, 100_000_000, size=n).astype(str), 8).astype(object),
        dtype=object,
    )
    dup = phones.duplicated()
    while dup.any():
        k = int(dup.sum())
        phones[dup] = (prefix[rng.integers(len(prefix), size=k)]
                       + np.char.zfill(rng.integers(0, 100_000_000, size=k).astype(str), 8)
                       .astype(object))
        dup = phones.duplicated()
    return names, [str(p) for p in phones]


def _grid_staff(rng: np.random.Generator, grid_ids: list[str],
                unstaffed: set[str]) -> pd.DataFrame:
    """One grid chief (except the unstaffed grids) and 1-3 grid members per grid."""
    n_members = rng.integers(1, 4, size=len(grid_ids))
    roles: list[str] = []
    grids: list[str] = []
    for gid, k in zip(grid_ids, n_members, strict=True):
        crew = ([] if gid in unstaffed else ["grid_chief"]) + ["grid_member"] * int(k)
        roles += crew
        grids += [gid] * len(crew)
    names, phones = _people(rng, len(roles))
    width = _width(len(roles), 4)
    return pd.DataFrame(
        {
            "person_id": [f"S{i + 1:0{width}d}" for i in range(len(roles))],
            "name": names,
            "phone": phones,
            "role": roles,
            "grid_id": grids,
        }
    )


def _river_chiefs(rng: np.random.Generator, rivers: np.ndarray, river_ids: list[str],
                  reaches: pd.DataFrame, village_ids: list[str],
                  dropped: list[int]) -> tuple[pd.DataFrame, dict[int, str]]:
    """A county chief for the longest river, a town chief per river, a village chief per reach."""
    rows: list[tuple[str, str, str | None, int | None]] = []
    longest = int(np.argmax(shapely.length(rivers)))
    rows.append(("county", river_ids[longest], None, None))
    for r, rid in enumerate(river_ids):
        rows.append(("town", rid, None, None))
        for i in reaches.index[reaches["river"] == r]:
            vid = village_ids[int(reaches.at[i, "village"])]
            rows.append(("village", rid, vid, int(i)))
    names, phones = _people(rng, len(rows))
    missing = {int(r[3]): names[k] for k, r in enumerate(rows) if r[3] in dropped}
    keep = [k for k, r in enumerate(rows) if r[3] not in dropped]
    width = _width(len(keep), 3)
    frame = pd.DataFrame(
        {
            "person_id": [f"C{i + 1:0{width}d}" for i in range(len(keep))],
            "name": [names[k] for k in keep],
            "phone": [phones[k] for k in keep],
            "level": [rows[k][0] for k in keep],
            "river_id": [rows[k][1] for k in keep],
            "village_id": pd.Series([rows[k][2] for k in keep], dtype=object),
        }
    )
    return frame, missing


# --------------------------------------------------------------------------- truth
def _truth(plant: _Planter, spikes: list[tuple[int, Polygon]], unstaffed: list[int],
           dropped: list[int], reaches: pd.DataFrame, grid_ids: list[str],
           grid_village: np.ndarray, village_ids: list[str], lane_road_ids: list[str],
           roads: gpd.GeoDataFrame, pois: gpd.GeoDataFrame, river_ids: list[str],
           missing_chiefs: dict[int, str]) -> gpd.GeoDataFrame:
    """One row per planted defect, in EPSG:4549."""
    cells = plant.cells
    rows: list[dict[str, Any]] = []

    def row(kind: str, geom: shapely.Geometry, measure: float, unit: str, note: str,
            **ids: str | None) -> None:
        rec = dict.fromkeys(TRUTH_COLUMNS)
        rec.update(kind=kind, geometry=geom, measure=float(measure), unit=unit, note=note, **ids)
        rows.append(rec)

    for n, rec in enumerate(plant.gaps):
        a, b = rec["a"], rec["b"]
        zone = rec["zone"]
        row("area_gap", zone, zone.area, "m2",
            f"chunk cut from grid {grid_ids[a]} along its border with {grid_ids[b]} (gap #{n + 1})",
            village_id=village_ids[grid_village[a]], grid_id=grid_ids[a])
    for rec in plant.overlaps:
        a, b = rec["a"], rec["b"]
        zone = rec["zone"]
        pair = ",".join(sorted([grid_ids[a], grid_ids[b]]))
        row("area_overlap", zone, zone.area, "m2",
            f"grid {grid_ids[a]} extended into {grid_ids[b]}",
            village_id=village_ids[grid_village[a]], grid_id=pair)
    for n, (rec, rid) in enumerate(zip(plant.gaps, lane_road_ids, strict=False)):
        lane = roads.geometry[roads["road_id"] == rid].iloc[0]
        piece = shapely.intersection(lane, rec["zone"])
        row("road_uncovered", piece, piece.length, "m",
            f"lane {rid} runs through gap #{n + 1} between {grid_ids[rec['a']]} and "
            f"{grid_ids[rec['b']]}",
            village_id=village_ids[grid_village[rec["a"]]], road_id=rid)
    for rec in plant.gaps[plant.spec.n_defects :]:
        pos = rec["poi_index"]
        row("poi_uncovered", pois.geometry.iloc[pos], 1.0, "count",
            f"school {pois['name'].iloc[pos]} stands in the gap cut from {grid_ids[rec['a']]}",
            village_id=village_ids[grid_village[rec["a"]]], poi_id=pois["poi_id"].iloc[pos])
    for c in unstaffed:
        row("grid_unstaffed", cells[c], 1.0, "count",
            f"grid {grid_ids[c]} has grid members but no grid chief",
            village_id=village_ids[grid_village[c]], grid_id=grid_ids[c])
    for i in dropped:
        river = int(reaches.at[i, "river"])
        village = int(reaches.at[i, "village"])
        geom = reaches.at[i, "geometry"]
        row("river_unassigned", geom, shapely.length(geom), "m",
            f"reach of {river_ids[river]} in {village_ids[village]} has no village-level chief "
            f"(the office never named {missing_chiefs.get(i, 'one')})",
            village_id=village_ids[village], river_id=river_ids[river])
    for c, spiked in spikes:
        row("input_repaired", cells[c], 1.0, "count",
            f"grid {grid_ids[c]} stored with a zero-width spike "
            f"({shapely.is_valid_reason(spiked)}); make_valid(structure) restores it",
            village_id=village_ids[grid_village[c]], grid_id=grid_ids[c])
    frame = pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))
    for col in TRUTH_COLUMNS:
        if col not in ("measure", "geometry"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    frame["measure"] = frame["measure"].astype(float)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=ANALYSIS_CRS)
