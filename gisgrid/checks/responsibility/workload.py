"""Each grid chief's workload: grids, area, roads by class, households, must-check points."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.checks.responsibility._shapes import _geoms, _nones
from gisgrid.findings import (
    group_ids,
    group_join,
)
from gisgrid.model import Town

logger = logging.getLogger(__name__)



# --------------------------------------------------------------------------- workload
def _workload(town: Town, labels: Mapping[str, str], border: gpd.GeoDataFrame
              ) -> tuple[pd.DataFrame, dict[str, shapely.Geometry]]:
    classes = list(settings.road_classes)
    cols = ["person_id", "name", "grids", "area_m2", *[f"road_m_{c}" for c in classes], "households", "pois",
            "road_m", "phone", "grid_ids", "village_ids"]
    grids, staff = town.grids, town.grid_staff
    chiefs = staff[(staff["role"] == "grid_chief") & staff["grid_id"].isin(set(grids["grid_id"]))]
    chiefs = chiefs.drop_duplicates(["person_id", "grid_id"])
    if not len(chiefs):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols}), {}
    cz = chiefs[["person_id", "grid_id"]].merge(
        pd.DataFrame({"grid_id": grids["grid_id"], "village_id": grids["village_id"],
                      "households": grids["households"], "_g": _geoms(grids)}), on="grid_id")
    cz = cz.sort_values(["person_id", "grid_id"], kind="stable").reset_index(drop=True)
    people = pd.unique(cz["person_id"].to_numpy(dtype=object))
    zone_of = dict(zip(cz["person_id"], cz["_g"], strict=True))  # one grid each: the grid itself
    several = cz[cz["person_id"].duplicated(keep=False)]
    for pid, group in several.groupby("person_id", sort=False)["_g"]:  # only chiefs of several grids
        zone_of[pid] = shapely.union_all(group.to_numpy(dtype=object))
    zones = np.asarray([zone_of[p] for p in people], dtype=object)
    first = dict(zip(chiefs["person_id"], chiefs["name"], strict=True))
    work = pd.DataFrame({"person_id": people})
    work["name"] = [labels.get(p, first[p]) for p in people]
    grouped = cz.groupby("person_id")
    work["grids"] = work["person_id"].map(grouped["grid_id"].nunique()).astype(int)
    work["area_m2"] = shapely.area(zones)
    work["households"] = work["person_id"].map(grouped["households"].sum(min_count=1)).astype(float)
    work["grid_ids"] = work["person_id"].map(group_ids(cz["person_id"], cz["grid_id"]))
    villages = cz[["person_id", "village_id"]].sort_values(["person_id", "village_id"], kind="stable")
    work["village_ids"] = work["person_id"].map(group_ids(villages["person_id"], villages["village_id"]))
    work["phone"] = _nones(work["person_id"].map(group_join(chiefs["person_id"], chiefs["phone"])))
    # roads clipped to each chief's grids, by class; border parts counted for their owner grid only
    lengths = pd.DataFrame(0.0, index=people, columns=classes)
    roads = town.roads
    if len(roads):
        rg = _geoms(roads)
        ri, zi = shapely.STRtree(zones).query(rg, predicate="intersects")
        inside = shapely.contains_properly(zones[zi], rg[ri])  # most roads: no overlay needed
        clipped = shapely.length(rg[ri])
        clipped[~inside] = shapely.length(shapely.intersection(rg[ri[~inside]], zones[zi[~inside]]))
        part = pd.DataFrame({"p": people[zi], "cls": roads["road_class"].to_numpy(dtype=object)[ri],
                             "len": clipped})
        lengths = lengths.add(part.pivot_table(index="p", columns="cls", values="len", aggfunc="sum"),
                              fill_value=0.0).reindex(columns=classes, fill_value=0.0)
        lengths = lengths.add(_border_adjust(border, chiefs, zone_of), fill_value=0.0).reindex(
            index=people, columns=classes, fill_value=0.0)
    for c in classes:
        work[f"road_m_{c}"] = lengths[c].reindex(people).fillna(0.0).clip(lower=0.0).to_numpy()
    work["road_m"] = work[[f"road_m_{c}" for c in classes]].sum(axis=1)
    pois = town.pois[town.pois["kind"].isin(settings.must_check_kinds)]
    counts = pd.Series(0, index=people)
    if len(pois):
        pi, zi = shapely.STRtree(zones).query(_geoms(pois), predicate="intersects")
        hits = pd.DataFrame({"p": people[zi], "poi": pois["poi_id"].to_numpy(dtype=object)[pi]}).drop_duplicates()
        counts = counts.add(hits.groupby("p").size(), fill_value=0)
    work["pois"] = work["person_id"].map(counts).fillna(0).astype(int)
    work["person_id"] = _nones(work["person_id"])
    return work[cols].reset_index(drop=True), zone_of


def _border_adjust(border: gpd.GeoDataFrame, chiefs: pd.DataFrame,
                   zone_of: Mapping[str, shapely.Geometry]) -> pd.DataFrame:
    """Road metres to add per chief and class so that a decided border part counts for its owner only."""
    decided = border[border["owner_grid"].notna()] if len(border) else border
    if not len(decided):
        return pd.DataFrame()
    frame = pd.DataFrame({"cls": decided["road_class"].to_numpy(dtype=object),
                          "owner": decided["owner_grid"].to_numpy(dtype=object),
                          "other": np.where(decided["owner_grid"] == decided["grid_a"], decided["grid_b"],
                                            decided["grid_a"]).astype(object),
                          "_g": _geoms(decided), "len": decided["length_m"].to_numpy()})
    frame["k"] = np.arange(len(frame))
    who = chiefs[["grid_id", "person_id"]]
    owners = frame.merge(who, left_on="owner", right_on="grid_id")
    others = frame.merge(who, left_on="other", right_on="grid_id")
    # a chief of both grids keeps the part once, through the union of their grids
    others = others.merge(owners[["k", "person_id"]], on=["k", "person_id"], how="left", indicator=True)
    others = others[others["_merge"] == "left_only"]
    owners = owners.drop_duplicates(["k", "person_id"])
    others = others.drop_duplicates(["k", "person_id"])
    rows = []
    if len(owners):
        z = np.asarray([zone_of[p] for p in owners["person_id"]], dtype=object)
        got = shapely.length(shapely.intersection(owners["_g"].to_numpy(), z))
        rows.append(pd.DataFrame({"p": owners["person_id"], "cls": owners["cls"], "d": owners["len"] - got}))
    if len(others):
        z = np.asarray([zone_of[p] for p in others["person_id"]], dtype=object)
        got = shapely.length(shapely.intersection(others["_g"].to_numpy(), z))
        rows.append(pd.DataFrame({"p": others["person_id"], "cls": others["cls"], "d": -got}))
    if not rows:
        return pd.DataFrame()
    delta = pd.concat(rows, ignore_index=True)
    return delta.pivot_table(index="p", columns="cls", values="d", aggfunc="sum")
