"""The coverage check: is every square metre, road and must-check point inside a grid (and a village)?

:func:`coverage_findings` turns the coverage engine's gaps, overlaps and
uncovered line parts (:mod:`gisgrid.geometry.coverage`) into findings:
``area_gap`` and ``area_overlap`` (grids and villages), ``road_uncovered``
(the uncovered part of each road, by class), ``poi_uncovered`` (must-check
points in no grid), and ``input_repaired`` for what the loader repaired.
With a digitising tolerance the slivers between hand-drawn neighbours are
counted per grid (:func:`grid_hygiene`), never reported as findings;
:func:`border_mismatch` measures how far the borders disagree.
"""

from __future__ import annotations

import logging
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.findings import concat_findings, empty_findings, id_list, ids_cell, make_findings, show_ids
from gisgrid.geometry import coverage, tolerance
from gisgrid.model import Town
from gisgrid.vocab import ROAD_CLASS_EN, ROAD_CLASS_ZH, percent

__all__ = ["border_mismatch", "coverage_findings", "grid_hygiene", "zone_of"]

logger = logging.getLogger(__name__)


def _arr(gdf: gpd.GeoDataFrame) -> np.ndarray:
    return np.asarray(gdf.geometry.values, dtype=object)


def zone_of(geoms: np.ndarray, zones: gpd.GeoDataFrame, id_column: str) -> np.ndarray:
    """Id of the zone holding each geometry's representative point (None when none; the lowest id on a shared edge)."""
    if not len(geoms) or not len(zones):
        return np.full(len(geoms), None, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    pts = np.where(ok, shapely.point_on_surface(np.where(ok, geoms, shapely.Point(0, 0))), None)
    ids = coverage.points_in_zones(gpd.GeoDataFrame(geometry=pts, crs=zones.crs), zones, id_column=id_column)
    return np.array([next(iter(id_list(v)), None) for v in ids], dtype=object)


def _names(frame: pd.DataFrame, id_col: str) -> dict[str, str]:
    if "name" not in frame.columns:
        return {}
    return {k: v for k, v in zip(frame[id_col], frame["name"], strict=True) if v is not None}


def _label(ids: Any, names: dict[str, str]) -> str:
    if ids is None:
        return "no village"
    parts = id_list(ids)
    return ", ".join(f"{names.get(p, p)} ({p})" if names.get(p) and names.get(p) != p else p for p in parts)


def _metres(value: float) -> str:
    """A length for a message: never "0 m" for something that is there."""
    return f"{value:,.0f} m" if value >= 1 else f"{value:.1f} m"


# ----------------------------------------------------------------------------- coverage
def _outside_town(town: Town, *, tol: float, min_area: float, report: bool,
                  workers: int | None) -> tuple[list[gpd.GeoDataFrame], dict[str, Any]]:
    """Roads and grid parts outside the town: counted always, reported as ``outside_town`` unless switched off.

    With a tolerance, a border drawn a little off the town's is not outside: roads within ``tol`` of the town
    and grid parts narrower than ``tol`` are the same digitising noise the coverage checks absorb.
    """
    extent = town.extent
    near = shapely.buffer(extent, tol) if tol > 0 else extent
    stats: dict[str, Any] = {"roads": 0, "road_m": 0.0, "grids": 0, "grid_area_m2": 0.0, "pois": 0}
    parts: list[gpd.GeoDataFrame] = []
    shapely.prepare(near)
    if len(town.roads):
        rg = _arr(town.roads)
        cand = np.flatnonzero(~shapely.covered_by(rg, near))
        pieces = shapely.difference(rg[cand], near)
        length = shapely.length(pieces)
        keep = length >= settings.sliver_length_m
        cand, pieces, length = cand[keep], pieces[keep], length[keep]
        stats.update(roads=int(cand.size), road_m=float(length.sum()))
        if report and cand.size:
            ids = town.roads["road_id"].to_numpy(dtype=object)[cand]
            order = np.argsort(-length)
            shown = ", ".join(str(i) for i in ids[order[:5]]) + (f" and {cand.size - 5} more" if cand.size > 5 else "")
            frame = pd.DataFrame({
                "kind": ["outside_town"], "severity": ["low"], "rule": ["roads"], "village_id": [None],
                "grid_id": [None], "measure": [float(length.sum())], "unit": ["m"],
                "geometry": [shapely.union_all(pieces)],
                "message": [f"{cand.size:,} road(s) have {_metres(float(length.sum()))} outside the town's boundary "
                            f"and villages ({shown}); they are not checked. Clip the roads layer to the town, or "
                            "extend the boundary if the land is the town's."],
            })
            parts.append(make_findings(frame, crs=town.crs, key=["outside:roads"]))
    if len(town.grids):
        gg = _arr(town.grids)
        cand = np.flatnonzero(~shapely.covered_by(gg, extent))
        pieces = tolerance.opening(shapely.difference(gg[cand], extent), tol, workers=workers or 1)
        area = shapely.area(pieces)
        keep = area >= max(min_area, tol * tol)
        cand, pieces, area = cand[keep], pieces[keep], area[keep]
        stats.update(grids=int(cand.size), grid_area_m2=float(area.sum()))
        if report and cand.size:
            gids = town.grids["grid_id"].to_numpy(dtype=object)[cand]
            vids = town.grids["village_id"].to_numpy(dtype=object)[cand]
            frame = pd.DataFrame({
                "kind": "outside_town", "severity": "low", "rule": "grid", "village_id": vids, "grid_id": gids,
                "measure": area, "unit": "m2", "geometry": pieces,
                "message": [f"grid {g} reaches {a:,.0f} m² beyond the town's boundary and villages; redraw it to "
                            "the boundary (or correct the boundary)." for g, a in zip(gids, area, strict=True)],
            })
            parts.append(make_findings(frame, crs=town.crs, key=[f"outside:grid:{g}" for g in gids]))
    if len(town.pois):
        stats["pois"] = int((~shapely.covered_by(_arr(town.pois), near)).sum())
    return parts, stats


def _straddling_grids(town: Town) -> list[gpd.GeoDataFrame]:
    """Grids whose village was derived from their location but that lie in two or more villages."""
    der = town.derived
    rows = der[(der["layer"] == "grids") & (der["column"] == "village_id") & der["villages"].notna()]
    if not len(rows):
        return []
    geom = dict(zip(town.grids["grid_id"], _arr(town.grids), strict=True))
    frame = pd.DataFrame({
        "kind": "grid_straddles", "severity": "medium", "rule": "village_from_location",
        "village_id": [ids_cell(v) for v in rows["villages"]], "grid_id": rows["feature_id"].to_numpy(dtype=object),
        "measure": rows["measure"].to_numpy(dtype=float), "unit": "m2",
        "geometry": [geom.get(g, shapely.Point()) for g in rows["feature_id"]],
        "message": [f"grid {g} has no village_id and straddles villages {d.split('straddles villages ')[-1]}; it "
                    f"was counted in village {v}. Give it a village_id, or split it at the village border."
                    for g, d, v in zip(rows["feature_id"], rows["detail"], rows["value"], strict=True)],
    })
    return [make_findings(frame, crs=town.crs, key=[f"straddle:{g}" for g in rows["feature_id"]])]


def coverage_findings(town: Town, *, sliver_area_m2: float | None = None, tolerance_m: float | None = None,
                      workers: int | None = None, outside_town: bool = True,
                      ) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Area gaps and overlaps, uncovered roads and must-check points, input repairs, what lies outside.

    Parameters
    ----------
    town
        A validated town.
    sliver_area_m2
        Gaps and overlaps smaller than this are counted, not reported
        (default ``settings.sliver_area_m2``).
    tolerance_m
        Digitising tolerance (default ``settings.tolerance_m``; 0: exact
        geometry). Gaps and overlaps narrower than this are slivers, counted
        per grid and village but not reported; roads and points in slivers
        are covered.
    workers
        Threads for the geometry engine.
    outside_town
        Report roads and grid parts outside the town as ``outside_town``
        findings (low); they are counted in ``stats["outside"]`` either way.

    Returns
    -------
    findings : GeoDataFrame
        Findings (owner not yet filled).
    stats : dict
        Intermediate layers the summary needs: ``grid_defects`` and
        ``village_defects`` (every gap and overlap piece, slivers included),
        ``uncovered`` (uncovered road pieces), ``poi_grid``, ``crumbs``.
    """
    min_area = settings.sliver_area_m2 if sliver_area_m2 is None else sliver_area_m2
    tol = settings.tolerance_m if tolerance_m is None else float(tolerance_m)
    crs = town.crs
    extent = town.extent
    vnames = _names(town.villages, "village_id")
    parts: list[gpd.GeoDataFrame] = []

    # Areas: the town in villages, the villages in grids (with a tolerance: village by village).
    vdef = coverage.partition_defects(town.villages, extent=extent, id_column="village_id", min_area_m2=min_area,
                                      tolerance_m=tol, workers=workers)
    gdef = coverage.partition_defects(town.grids, extent=extent, id_column="grid_id", split_by=town.villages,
                                      split_id_column="village_id", min_area_m2=min_area, tolerance_m=tol,
                                      workers=workers)
    v_gaps = vdef[(vdef["kind"] == "gap") & ~vdef["sliver"]]
    no_village = shapely.union_all(_arr(v_gaps)) if len(v_gaps) else None
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    for geom, area, touching in zip(_arr(v_gaps), v_gaps["area_m2"], v_gaps["zone_ids"], strict=True):
        rows.append({"kind": "area_gap", "severity": "high", "rule": "no_village", "village_id": None,
                     "grid_id": None, "measure": area, "unit": "m2", "geometry": geom,
                     "message": f"{area:,.0f} m² of the town lies in no village (next to {_label(touching, vnames)}); "
                                "assign it to a village and a grid."})
        keys.append("no_village")
    g_gaps = gdef[(gdef["kind"] == "gap") & ~gdef["sliver"]]
    if tol > 0:  # already split by village; land in no village is the village check's finding
        g_gaps = g_gaps[g_gaps["split_id"].notna()]
    g_geoms = _arr(g_gaps)
    if tol > 0:
        g_vill = g_gaps["split_id"].to_numpy(dtype=object)
        g_area = g_gaps["area_m2"].to_numpy(dtype=float)
        g_touch = g_gaps["zone_ids"].to_numpy(dtype=object)
    else:
        if no_village is not None and len(g_geoms):
            g_geoms = shapely.difference(g_geoms, no_village)
        g_area = shapely.area(g_geoms) if len(g_geoms) else np.array([])
        keep = g_area >= min_area
        g_geoms, g_area = g_geoms[keep], g_area[keep]
        g_vill = zone_of(g_geoms, town.villages, "village_id")
        g_touch = g_gaps["zone_ids"].to_numpy(dtype=object)[keep]
    for geom, area, vid, touching in zip(g_geoms, g_area, g_vill, g_touch, strict=True):
        rows.append({"kind": "area_gap", "severity": "high", "rule": "no_grid", "village_id": vid, "grid_id": None,
                     "measure": float(area), "unit": "m2", "geometry": geom,
                     "message": f"{float(area):,.0f} m² in village {_label(vid, vnames)} lies in no grid "
                                f"(between grids {show_ids(touching, ',') or '-'}); add it to a grid."})
        keys.append(f"gap:{vid}")
    for frame, what, rule in ((gdef, "grids", "grid_overlap"), (vdef, "villages", "village_overlap")):
        ov = frame[(frame["kind"] == "overlap") & ~frame["sliver"]]
        if not len(ov):
            continue
        if what == "villages":
            vids = pd.Series([ids_cell(v) for v in ov["zone_ids"]], dtype=object).to_numpy()  # 1-D: cells
        elif tol > 0:
            vids = ov["split_id"].to_numpy(dtype=object)
        else:
            vids = zone_of(_arr(ov), town.villages, "village_id")
        for geom, area, ids, vid in zip(_arr(ov), ov["area_m2"], ov["zone_ids"], vids, strict=True):
            rows.append({"kind": "area_overlap", "severity": "high", "rule": rule, "village_id": vid,
                         "grid_id": ids_cell(ids) if what == "grids" else None, "measure": area, "unit": "m2",
                         "geometry": geom,
                         "message": f"{area:,.0f} m² is claimed by {what} {show_ids(ids, ',')}; one place must have "
                                    "one master — redraw the border."})
            keys.append(f"{rule}:{','.join(ids)}")
    if rows:
        parts.append(make_findings(pd.DataFrame(rows), crs=crs, key=keys))

    # Roads: the parts inside the town that lie in no grid (with a tolerance: in a real gap).
    if tol > 0:
        regions = _arr(gdef[(gdef["kind"] == "gap") & ~gdef["sliver"]])
        if no_village is not None:  # land in no village: its real gaps between grids too
            regions = np.concatenate([regions, tolerance.gap_regions(_arr(town.grids), no_village, tol)[0]])
        found = coverage.lines_in_gaps(town.roads, town.grids, gpd.GeoSeries(regions, crs=crs), tolerance_m=tol)
    else:
        regions = np.empty(0, dtype=object)
        found = coverage.uncovered_lines(town.roads, town.grids, extent=extent, tolerance_m=0)
    crumb = found["length_m"].to_numpy(dtype=float) < settings.sliver_length_m
    crumbs = {"pieces": int(crumb.sum()), "length_m": float(found.loc[crumb, "length_m"].sum())}
    uncovered = found[~crumb]
    if len(uncovered):
        ug = _arr(uncovered)
        vids = zone_of(ug, town.villages, "village_id")
        cls = uncovered["road_class"].to_numpy(dtype=object)
        names = uncovered["name"].to_numpy(dtype=object)
        rids = uncovered["road_id"].to_numpy(dtype=object)
        length = uncovered["length_m"].to_numpy(dtype=float)
        msgs = [
            f"{ROAD_CLASS_EN.get(c, c)} ({ROAD_CLASS_ZH.get(c, c)}) "
            f"{repr(n) + ' ' if n else ''}({r}) has {_metres(m)} outside any grid in village {_label(v, vnames)}; "
            "extend a grid over it."
            for c, n, r, m, v in zip(cls, names, rids, length, vids, strict=True)
        ]
        frame = pd.DataFrame({
            "kind": "road_uncovered", "severity": [settings.road_uncovered_severity.get(c, "medium") for c in cls],
            "rule": [f"road_{c}" for c in cls], "village_id": vids, "grid_id": None, "measure": length, "unit": "m",
            "message": msgs, "geometry": ug, "road_id": rids, "road_class": cls,
        })
        parts.append(make_findings(frame, crs=crs, key=[f"road:{r}" for r in rids]))

    # Points: every POI must be in a grid; with a tolerance one in a sliver belongs to the nearest grid.
    poi_grid = coverage.points_in_zones(town.pois, town.grids, id_column="grid_id") if len(town.pois) else pd.Series(
        [], dtype=object)
    if len(town.pois):
        lost_mask = poi_grid.isna().to_numpy()
        snapped = np.zeros(len(town.pois), dtype=bool)
        if tol > 0 and lost_mask.any():
            lost_pos = np.flatnonzero(lost_mask)
            pts = _arr(town.pois)[lost_pos]
            in_gap = np.zeros(len(lost_pos), dtype=bool)
            if len(regions):
                in_gap[np.unique(shapely.STRtree(regions).query(pts, predicate="intersects")[0])] = True
            near = coverage.nearest_zones(town.pois.iloc[lost_pos], town.grids, id_column="grid_id",
                                          max_distance_m=tol)
            ok = ~in_gap & near["zone_id"].notna().to_numpy()
            snapped[lost_pos[ok]] = True
            poi_grid = poi_grid.copy()
            poi_grid.iloc[lost_pos[ok]] = near["zone_id"].to_numpy(dtype=object)[ok]
            if ok.any():
                sp = town.pois.iloc[lost_pos[ok]]
                sg = near["zone_id"].to_numpy(dtype=object)[ok]
                sd = near["distance_m"].to_numpy(dtype=float)[ok]
                frame = pd.DataFrame({
                    "kind": "input_repaired", "severity": "low", "rule": "poi_in_sliver",
                    "village_id": zone_of(_arr(sp), town.villages, "village_id"), "grid_id": sg,
                    "measure": sd, "unit": "m", "geometry": _arr(sp), "poi_id": sp["poi_id"].to_numpy(dtype=object),
                    "poi_kind": sp["kind"].to_numpy(dtype=object),
                    "message": [f"{k} {repr(n) + ' ' if n else ''}({p}) lies in a sliver between hand-drawn grids, "
                                f"{d:.1f} m outside grid {g}; counted in the nearest grid {g} — redraw the border "
                                "so that the grid contains it."
                                for k, n, p, g, d in zip(sp["kind"], sp["name"], sp["poi_id"], sg, sd, strict=True)],
                })
                parts.append(make_findings(frame, crs=crs, key=[f"poi_sliver:{p}" for p in sp["poi_id"]]))
        lost = town.pois[lost_mask & ~snapped]
        if len(lost):
            lg = _arr(lost)
            vids = zone_of(lg, town.villages, "village_id")
            must = lost["kind"].isin(settings.must_check_kinds).to_numpy()
            frame = pd.DataFrame({
                "kind": "poi_uncovered", "severity": np.where(must, "high", "medium"),
                "rule": [f"poi_{k}" for k in lost["kind"]], "village_id": vids, "grid_id": None,
                "measure": 1.0, "unit": "count", "geometry": lg, "poi_id": lost["poi_id"].to_numpy(dtype=object),
                "poi_kind": lost["kind"].to_numpy(dtype=object),
                "message": [f"{'Must-check point' if m else 'Point'} {k} {repr(n) + ' ' if n else ''}({p}) in "
                            f"village {_label(v, vnames)} is in no grid; put it in a grid and name its chief."
                            for m, k, n, p, v in zip(must, lost["kind"], lost["name"], lost["poi_id"], vids,
                                                     strict=True)],
            })
            parts.append(make_findings(frame, crs=crs, key=[f"poi:{p}" for p in lost["poi_id"]]))

    # Input repairs and broken references recorded while loading.
    rep = town.repairs
    if len(rep):
        removed = rep["action"].astype(str).str.startswith("removed").to_numpy()
        geoms = np.asarray(rep.geometry.values, dtype=object)
        geoms = np.where(shapely.is_missing(geoms), shapely.Point(), geoms)
        frame = pd.DataFrame({
            "kind": "input_repaired", "severity": np.where(removed, "medium", "low"),
            "rule": rep["action"].to_numpy(dtype=object), "village_id": None,
            "grid_id": np.where(rep["layer"] == "grids", rep["feature_id"], None),
            "measure": rep["area_after"].to_numpy(dtype=float), "unit": "m2", "geometry": geoms,
            "message": [f"{lay} {fid}: {det}" + (f" (area {b:,.1f} → {a:,.1f} m²)" if pd.notna(a) else "")
                        + "; correct the source data."
                        for lay, fid, det, b, a in zip(rep["layer"], rep["feature_id"], rep["detail"],
                                                       rep["area_before"], rep["area_after"], strict=True)],
        })
        frame["village_id"] = zone_of(geoms, town.villages, "village_id")
        parts.append(make_findings(frame, crs=crs, key=[f"repair:{a}:{lay}:{f}" for a, lay, f in
                                                        zip(rep["action"], rep["layer"], rep["feature_id"],
                                                            strict=True)]))
    refs = town.issues[town.issues["kind"] == "input_reference"] if len(town.issues) else town.issues
    if len(refs):
        frame = pd.DataFrame({
            "kind": "input_repaired", "severity": "medium", "rule": "broken_reference", "village_id": None,
            "grid_id": refs["name"].to_numpy(dtype=object), "measure": 1.0, "unit": "count",
            "geometry": [shapely.Point()] * len(refs),
            "message": [f"{p}; fix the {c} in the {s} layer." for p, c, s in
                        zip(refs["problem"], refs["column"], refs["source"], strict=True)],
        })
        grid_geom = dict(zip(town.grids["grid_id"], _arr(town.grids), strict=True))
        frame["geometry"] = [grid_geom.get(g, shapely.Point()) for g in frame["grid_id"]]
        parts.append(make_findings(frame, crs=crs, key=[f"ref:{n}" for n in refs["name"]]))

    outside, outside_stats = _outside_town(town, tol=tol, min_area=min_area, report=outside_town, workers=workers)
    parts += outside + _straddling_grids(town)
    findings = concat_findings(parts, crs=crs) if parts else empty_findings(crs)
    stats = {"grid_defects": gdef, "village_defects": vdef, "uncovered": uncovered, "poi_grid": poi_grid,
             "crumbs": crumbs, "tolerance_m": tol, "outside": outside_stats}
    return findings, stats


# ----------------------------------------------------------------------------- data hygiene
def grid_hygiene(town: Town, grid_defects: gpd.GeoDataFrame) -> pd.DataFrame:
    """Per grid, the slivers along its borders: what the digitising tolerance absorbed.

    A sliver between two grids (a thin gap touching both, or a thin overlap
    of the two) counts for each of them: it is on both borders, and either
    data clerk may redraw it.

    Parameters
    ----------
    town
        The town.
    grid_defects
        :func:`gisgrid.coverage.partition_defects` of the grids (sliver rows used).

    Returns
    -------
    pandas.DataFrame
        One row per grid (``grid_id``, ``village_id``, ``name``, ``slivers``,
        ``gap_sliver_m2``, ``overlap_sliver_m2``, ``sliver_m2``), the grids
        with the most sliver area first.
    """
    grids = town.grids
    out = pd.DataFrame({"grid_id": grids["grid_id"].to_numpy(dtype=object),
                        "village_id": grids["village_id"].to_numpy(dtype=object),
                        "name": grids["name"].to_numpy(dtype=object) if "name" in grids.columns else None})
    sl = grid_defects[grid_defects["sliver"]]
    table = pd.DataFrame({"grid_id": sl["zone_ids"].map(list), "kind": sl["kind"].to_numpy(),
                          "area": sl["area_m2"].to_numpy(dtype=float)}).explode("grid_id")
    table = table[table["grid_id"].notna()]
    count = table.groupby("grid_id").size()
    area = table.pivot_table(index="grid_id", columns="kind", values="area", aggfunc="sum", fill_value=0.0)
    key = out["grid_id"].astype(str)
    out["slivers"] = key.map(count).fillna(0).astype(np.int64).to_numpy()
    for kind, col in (("gap", "gap_sliver_m2"), ("overlap", "overlap_sliver_m2")):
        out[col] = key.map(area[kind]).fillna(0.0).to_numpy(dtype=float) if kind in area.columns else 0.0
    out["sliver_m2"] = out["gap_sliver_m2"] + out["overlap_sliver_m2"]
    return out.sort_values(["sliver_m2", "grid_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def border_mismatch(town: Town, *, tolerance_m: float | None = None, workers: int | None = None,
                    sample: int = 20_000, widest: int = 5) -> dict[str, Any]:
    """How well hand-drawn grids fit together: the distribution of the widths of their mismatches.

    Every gap and overlap piece between the grids is measured (its width is
    twice the radius of its largest inscribed circle); above ``sample``
    pieces the percentiles come from a fixed random sample, and the widest
    pieces are searched among the likeliest candidates.

    Parameters
    ----------
    town
        The town.
    tolerance_m
        The tolerance to judge (default ``settings.tolerance_m``; 0 is judged against the default).
    workers
        Threads.
    sample
        Most pieces measured for the percentiles.
    widest
        How many of the widest slivers to name.

    Returns
    -------
    dict
        ``tolerance_m``, ``pieces``, ``measured``, ``median_m``, ``p95_m``,
        ``p99_m``, ``share_within`` (of the pieces narrower than the
        tolerance), ``real`` (pieces wider: reported as gaps or overlaps),
        ``widest`` (the widest slivers: kind, grid ids, width and area) and
        ``verdict`` (a sentence).
    """
    tol = settings.tolerance_m if tolerance_m is None else float(tolerance_m)
    judged = tol if tol > 0 else settings.tolerance_m
    d = coverage.partition_defects(town.grids, extent=town.extent, id_column="grid_id", tolerance_m=judged,
                                   workers=workers)
    pieces = d[d["sliver"]]
    real = d[~d["sliver"]]
    geoms = _arr(pieces)
    n = len(geoms)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    w = tolerance.widths(geoms[pick], precision_m=0.02) if n else np.empty(0)
    # the widest: exact widths of the pieces whose upper bound (bounding box, area) is largest
    b = shapely.bounds(geoms) if n else np.empty((0, 4))
    bound = np.minimum(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]),
                       2 * np.sqrt(shapely.area(geoms) / np.pi)) if n else np.empty(0)
    top = np.argsort(-bound, kind="stable")[: max(widest * 40, 200)]
    wt = tolerance.widths(geoms[top], precision_m=0.02) if top.size else np.empty(0)
    order = np.argsort(-wt, kind="stable")[:widest]
    widest_rows = [{"kind": str(pieces["kind"].iat[top[i]]), "grid_ids": show_ids(pieces["zone_ids"].iat[top[i]], ","),
                    "width_m": round(float(wt[i]), 2), "area_m2": round(float(pieces["area_m2"].iat[top[i]]), 1)}
                   for i in order]
    q = np.quantile(w, [0.5, 0.95, 0.99]) if w.size else np.zeros(3)
    within = float((w < judged).mean()) if w.size else 1.0
    verdict = (f"95% of border mismatches are under {q[1]:.2f} m; tolerance_m = {judged:g} absorbs "
               f"{percent(within, 1)} of the {n:,} slivers; {len(real)} piece(s) wider than {judged:g} m are "
               "reported as real gaps or overlaps.")
    if q[2] > 0.8 * judged:
        verdict += (f" 1% of the mismatches are {q[2]:.2f} m or wider, close to the tolerance: check the widest "
                    "slivers below, and raise tolerance_m if they are digitising noise.")
    return {"tolerance_m": judged, "pieces": n, "measured": int(w.size), "median_m": float(q[0]),
            "p95_m": float(q[1]), "p99_m": float(q[2]), "share_within": within, "real": len(real),
            "widest": widest_rows, "verdict": verdict}


# ----------------------------------------------------------------------------- summary
