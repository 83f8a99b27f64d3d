"""The truth table: one row per planted defect, i.e. the findings the coverage engine should report."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import Polygon

from gisgrid.demo.plant import _Planter
from gisgrid.demo.scales import ANALYSIS_CRS

TRUTH_COLUMNS: tuple[str, ...] = (
    "kind", "village_id", "grid_id", "road_id", "poi_id", "river_id", "measure", "unit", "note",
    "geometry",
)


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
