"""``analyze()``: every check in order, one findings table, one summary.

The order is coverage (gaps, overlaps, uncovered roads and points, input
repairs), then responsibility (staffing, river chiefs, owners), then the
sensitive-section rules, which may raise severities. The result is an
:class:`Assessment`.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import owners, settings
from gisgrid.checks import responsibility as assign
from gisgrid.checks import sensitive
from gisgrid.findings import concat_findings, empty_findings, make_findings, sort_findings
from gisgrid.geometry import coverage, tolerance
from gisgrid.model import Town
from gisgrid.vocab import ROAD_CLASS_EN, ROAD_CLASS_ZH, percent

__all__ = ["Assessment", "analyze", "border_mismatch", "cleaned_grids", "coverage_findings", "grid_hygiene"]

logger = logging.getLogger(__name__)



@dataclass
class Assessment:
    """The result of :func:`analyze`.

    Attributes
    ----------
    town : Town
    findings : GeoDataFrame
        One row per problem, the schema of :mod:`gisgrid.findings`, owner filled.
    summary : DataFrame
        One row per village (index ``village_id``): area, grid and staffed
        coverage, road lengths and uncovered lengths by class, POIs, slivers,
        sensitive sections and findings by severity.
    totals : dict
        Headline numbers for the whole town.
    responsibility : assign.Responsibility
        Staffing, river reaches, cross-boundary sections, corridors, workload.
    sensitive : GeoDataFrame
        Sensitive sections from the rules.
    checkpoints : GeoDataFrame
        Must-check points with their grid, grid chief and river chief.
    options : dict
        The options the analysis ran with.
    as_of : date or None
        The date the data describes (set by ``gisgrid run``; maps and reports show it).
    hygiene : DataFrame or None
        Per grid, the slivers the digitising tolerance absorbed (:func:`grid_hygiene`):
        which grids the data clerk should redraw first.
    defects : GeoDataFrame or None
        The real gap and overlap pieces of the grids
        (:func:`gisgrid.coverage.partition_defects`; the slivers are summed
        up in ``hygiene`` and ``totals``).
    """

    town: Town
    findings: gpd.GeoDataFrame
    summary: pd.DataFrame
    totals: dict[str, Any]
    responsibility: Any = None
    sensitive: gpd.GeoDataFrame | None = None
    checkpoints: gpd.GeoDataFrame | None = None
    options: dict[str, Any] = field(default_factory=dict)
    as_of: dt.date | None = None
    hygiene: pd.DataFrame | None = None
    defects: gpd.GeoDataFrame | None = None

    @property
    def workload(self) -> pd.DataFrame | None:
        """Per grid chief: grids, area, road length by class, households, must-check points."""
        return None if self.responsibility is None else self.responsibility.workload

    def explore(self, **kwargs: Any) -> Any:
        """Return the command-center map (a ``folium.Map``); keywords go to :func:`gisgrid.maps.command_center_map`."""
        from gisgrid.maps import command_center_map  # folium only in maps; lazy like GeoDataFrame.explore

        return command_center_map(self, **kwargs)

    def owners(self) -> dict[str, pd.DataFrame]:
        """The responsibility list (责任清单) of each owner, see :func:`gisgrid.owners.task_lists`."""
        return owners.task_lists(self)

    def __repr__(self) -> str:
        t = self.totals
        sev = t.get("by_severity", {})
        extra = f", {sev['high']} high" if sev.get("high") else ""
        return (f"<Assessment {self.town.name!r}: area coverage {percent(t['area_coverage'])}, "
                f"roads {percent(t.get('road_coverage', 1.0))}, {len(self.findings)} findings "
                f"({t['veto']} veto{extra}), {t.get('grids_unstaffed', 0)} grid(s) without a chief, "
                f"uncovered lanes {t['uncovered_lane_m']:,.0f} m>")

    def _repr_html_(self) -> str:
        esc = html.escape
        t = self.totals
        f = self.findings
        kinds = t.get("by_kind", {})
        colours = {"veto": "#8b0000", "high": "#cf222e", "medium": "#bf8700", "low": "#57606a"}
        chips = " ".join(
            f"<span style='color:{colours.get(k, '#000')}'><b>{v}</b> {esc(str(k))}</span>"
            for k, v in t["by_severity"].items())
        banner = ""
        if t["veto"]:
            banner = (f"<p style='color:#fff;background:#8b0000;padding:4px 8px'><b>一票否决 veto: {t['veto']} "
                      "item(s) fail the whole assessment</b> — fix these first.</p>")
        rows = [
            ("area in a grid 网格覆盖", percent(t["area_coverage"])),
            ("area under a grid chief 有网格长", percent(t["effective_coverage"])),
            ("roads in a grid 道路覆盖", f"{percent(t['road_coverage'])} of {t.get('road_m', 0) / 1000:,.1f} km"),
            ("uncovered lanes 未覆盖小巷农路", f"{t['uncovered_lane_m']:,.0f} m"),
            ("grids without a chief 无网格长", f"{t.get('grids_unstaffed', 0)} of {t.get('grids', 0)}"),
            ("reaches without a chief 无河长河段", str(kinds.get("river_unassigned", 0))),
            ("must-check points in no grid 必查点位未覆盖", str(kinds.get("poi_uncovered", 0))),
        ]
        if t.get("slivers"):
            rows.append(("slivers counted, not reported 碎片",
                         f"{t['slivers']} ({t.get('sliver_area_m2', 0):,.1f} m²)"))
        head = pd.DataFrame(rows, columns=["", self.town.name]).to_html(index=False, escape=True)
        by_kind = ", ".join(f"{k} {v}" for k, v in kinds.items())
        parts = [
            f"<h4>{esc(self.town.name)} — coverage assessment 全域覆盖检查"
            + (f" ({esc(str(self.as_of))})" if getattr(self, "as_of", None) else "") + "</h4>", banner, head,
            f"<p>{len(f)} findings: {chips}<br><small>{esc(by_kind)}</small></p>",
        ]
        s = self.summary
        if len(s) and "findings" in s.columns and int(s["findings"].sum()):
            sev_cols = [c for c in settings.severities if c in s.columns]
            worst = s[s["findings"] > 0].sort_values([*sev_cols, "area_coverage"],
                                                     ascending=[False] * len(sev_cols) + [True]).head(5)
            cols = [c for c in ("name", "area_coverage", "effective_coverage", "road_coverage", *sev_cols,
                                "findings") if c in worst.columns]
            table = pd.DataFrame(worst[cols]).copy()
            for c in ("area_coverage", "effective_coverage", "road_coverage"):
                if c in table.columns:
                    table[c] = [percent(v) for v in table[c]]
            parts.append("<p><b>Villages with the most to fix 问题最多的村居</b></p>")
            parts.append(table.rename_axis(None).to_html(escape=True, na_rep=""))
        if len(f):
            cols = [c for c in ("severity", "kind", "village_id", "grid_id", "owner", "measure", "unit", "message")
                    if c in f.columns]
            more = f" (first 10 of {len(f)}: <code>.findings</code>)" if len(f) > 10 else ""
            parts.append(f"<p><b>Worst findings 主要问题</b>{more}</p>")
            top = pd.DataFrame(f[cols].head(10))
            for c in top.columns:
                if not pd.api.types.is_numeric_dtype(top[c]):
                    top[c] = top[c].astype(object).where(top[c].notna(), "")
            parts.append(top.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:,.1f}"))
        parts.append("<p><small><code>.findings</code> · <code>.summary</code> · <code>.explore()</code> map · "
                     "<code>.owners()</code> task lists · <code>.responsibility</code></small></p>")
        return "<div>" + "".join(parts) + "</div>"


# ----------------------------------------------------------------------------- helpers
def _arr(gdf: gpd.GeoDataFrame) -> np.ndarray:
    return np.asarray(gdf.geometry.values, dtype=object)


def _locate(geoms: np.ndarray, zones: gpd.GeoDataFrame, id_column: str) -> np.ndarray:
    """Id of the zone holding each geometry's representative point (None when none; the lowest id on a shared edge)."""
    if not len(geoms) or not len(zones):
        return np.full(len(geoms), None, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    pts = np.where(ok, shapely.point_on_surface(np.where(ok, geoms, shapely.Point(0, 0))), None)
    ids = coverage.points_in_zones(gpd.GeoDataFrame(geometry=pts, crs=zones.crs), zones, id_column=id_column)
    return np.array([None if v is None else str(v).split(",")[0] for v in ids], dtype=object)


def _names(frame: pd.DataFrame, id_col: str) -> dict[str, str]:
    if "name" not in frame.columns:
        return {}
    return {k: v for k, v in zip(frame[id_col], frame["name"], strict=True) if v is not None}


def _label(ids: Any, names: dict[str, str]) -> str:
    if ids is None:
        return "no village"
    parts = [p for p in str(ids).split(",") if p]
    return ", ".join(f"{names.get(p, p)} ({p})" if names.get(p) and names.get(p) != p else p for p in parts)


def _metres(value: float) -> str:
    """A length for a message: never "0 m" for something that is there."""
    return f"{value:,.0f} m" if value >= 1 else f"{value:.1f} m"


# ----------------------------------------------------------------------------- coverage
def coverage_findings(town: Town, *, sliver_area_m2: float | None = None, tolerance_m: float | None = None,
                      workers: int | None = None) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Area gaps and overlaps, uncovered roads and must-check points, and input repairs.

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
    opts = {"min_area_m2": min_area, "tolerance_m": tol, "workers": workers}

    # Areas: the town in villages, the villages in grids (with a tolerance: village by village).
    vdef = coverage.partition_defects(town.villages, extent=extent, id_column="village_id", **opts)
    gdef = coverage.partition_defects(town.grids, extent=extent, id_column="grid_id", split_by=town.villages,
                                      split_id_column="village_id", **opts)
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
        g_vill = _locate(g_geoms, town.villages, "village_id")
        g_touch = g_gaps["zone_ids"].to_numpy(dtype=object)[keep]
    for geom, area, vid, touching in zip(g_geoms, g_area, g_vill, g_touch, strict=True):
        rows.append({"kind": "area_gap", "severity": "high", "rule": "no_grid", "village_id": vid, "grid_id": None,
                     "measure": float(area), "unit": "m2", "geometry": geom,
                     "message": f"{float(area):,.0f} m² in village {_label(vid, vnames)} lies in no grid "
                                f"(between grids {touching or '-'}); add it to a grid."})
        keys.append(f"gap:{vid}")
    for frame, what, rule in ((gdef, "grids", "grid_overlap"), (vdef, "villages", "village_overlap")):
        ov = frame[(frame["kind"] == "overlap") & ~frame["sliver"]]
        if not len(ov):
            continue
        if what == "villages":
            vids = ov["zone_ids"].to_numpy(dtype=object)
        elif tol > 0:
            vids = ov["split_id"].to_numpy(dtype=object)
        else:
            vids = _locate(_arr(ov), town.villages, "village_id")
        for geom, area, ids, vid in zip(_arr(ov), ov["area_m2"], ov["zone_ids"], vids, strict=True):
            rows.append({"kind": "area_overlap", "severity": "high", "rule": rule, "village_id": vid,
                         "grid_id": ids if what == "grids" else None, "measure": area, "unit": "m2",
                         "geometry": geom,
                         "message": f"{area:,.0f} m² is claimed by {what} {ids}; one place must have one master "
                                    "— redraw the border."})
            keys.append(f"{rule}:{ids}")
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
        vids = _locate(ug, town.villages, "village_id")
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
                    "village_id": _locate(_arr(sp), town.villages, "village_id"), "grid_id": sg,
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
            vids = _locate(lg, town.villages, "village_id")
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
        frame["village_id"] = _locate(geoms, town.villages, "village_id")
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

    findings = concat_findings(parts, crs=crs) if parts else empty_findings(crs)
    stats = {"grid_defects": gdef, "village_defects": vdef, "uncovered": uncovered, "poi_grid": poi_grid,
             "crumbs": crumbs, "tolerance_m": tol}
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
    table = pd.DataFrame({"grid_id": sl["zone_ids"].astype(str).str.split(","), "kind": sl["kind"].to_numpy(),
                          "area": sl["area_m2"].to_numpy(dtype=float)}).explode("grid_id")
    table = table[table["grid_id"].astype(bool)]
    count = table.groupby("grid_id").size()
    area = table.pivot_table(index="grid_id", columns="kind", values="area", aggfunc="sum", fill_value=0.0)
    key = out["grid_id"].astype(str)
    out["slivers"] = key.map(count).fillna(0).astype(np.int64).to_numpy()
    for kind, col in (("gap", "gap_sliver_m2"), ("overlap", "overlap_sliver_m2")):
        out[col] = key.map(area[kind]).fillna(0.0).to_numpy(dtype=float) if kind in area.columns else 0.0
    out["sliver_m2"] = out["gap_sliver_m2"] + out["overlap_sliver_m2"]
    return out.sort_values(["sliver_m2", "grid_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def cleaned_grids(assessment: Assessment, *, workers: int | None = None) -> gpd.GeoDataFrame:
    """A proposal for the grids with matched borders (the town may adopt it as its corrected layer).

    ``shapely.coverage_clean`` village by village: overlap slivers go to the
    neighbour with the longest shared border, gaps narrower than the tolerance
    are filled the same way. Real gaps stay open and real overlaps stay
    claimed by both grids: they are findings, for people to decide.

    Parameters
    ----------
    assessment
        An assessment made with a digitising tolerance.
    workers
        Threads (default ``settings.workers``).

    Returns
    -------
    geopandas.GeoDataFrame
        The grids' columns and cleaned geometry, plus ``area_m2`` (as drawn),
        ``cleaned_area_m2`` and ``area_change_m2``.
    """
    town = assessment.town
    tol = float(assessment.totals.get("tolerance_m") or settings.tolerance_m)
    grids = town.grids.reset_index(drop=True)
    geoms = _arr(grids)
    keep: list[tuple[int, shapely.Geometry]] = []
    defects = assessment.defects
    if defects is not None and len(defects):
        over = defects[(defects["kind"] == "overlap") & ~defects["sliver"]]
        pos = {str(g): i for i, g in enumerate(grids["grid_id"])}
        for ids, geom in zip(over["zone_ids"], _arr(over), strict=True):
            keep += [(pos[g], geom) for g in str(ids).split(",") if g in pos]
    cleaned = tolerance.clean_coverage(geoms, grids["village_id"].astype(str).to_numpy(), tol, keep=keep,
                                       workers=settings.thread_count(workers))
    out = grids.copy()
    out["area_m2"] = shapely.area(geoms)
    out["cleaned_area_m2"] = shapely.area(cleaned)
    out["area_change_m2"] = out["cleaned_area_m2"] - out["area_m2"]
    return out.set_geometry(gpd.GeoSeries(cleaned, crs=town.crs).array)


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
    widest_rows = [{"kind": str(pieces["kind"].iat[top[i]]), "grid_ids": str(pieces["zone_ids"].iat[top[i]]),
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
def _area_by_village(geoms: np.ndarray, villages: gpd.GeoDataFrame) -> pd.Series:
    """Area of ``geoms`` inside each village (vectorised over intersecting pairs)."""
    vid = villages["village_id"].to_numpy(dtype=object)
    if not len(geoms):
        return pd.Series(0.0, index=pd.Index(vid, name="village_id"))
    tree = shapely.STRtree(geoms)
    vi, gi = tree.query(_arr(villages), predicate="intersects")
    areas = shapely.area(shapely.intersection(_arr(villages)[vi], geoms[gi]))
    return pd.Series(areas).groupby(vid[vi]).sum().reindex(vid, fill_value=0.0).rename_axis("village_id")


def _length_by_village(lines: gpd.GeoDataFrame, villages: gpd.GeoDataFrame) -> pd.DataFrame:
    """Road length per village and class; lines wholly inside one village are not cut."""
    vid = villages["village_id"].to_numpy(dtype=object)
    out = pd.DataFrame(0.0, index=pd.Index(vid, name="village_id"), columns=list(settings.road_classes))
    if not len(lines):
        return out
    lg = _arr(lines)
    vg = _arr(villages)
    tree = shapely.STRtree(vg)
    li, vi = tree.query(lg, predicate="intersects")
    inside = shapely.covered_by(lg[li], vg[vi])
    length = np.where(inside, shapely.length(lg[li]), 0.0)
    cut = ~inside
    if cut.any():
        a, b = lg[li][cut], vg[vi][cut]
        length[cut] = np.concatenate(tolerance.parallel_chunks(
            lambda pos: shapely.length(shapely.intersection(a[pos], b[pos])), a.size,
            workers=settings.thread_count()))
    cls = lines["road_class"].to_numpy(dtype=object)[li]
    table = pd.DataFrame({"village_id": vid[vi], "road_class": cls, "m": length})
    piv = table.pivot_table(index="village_id", columns="road_class", values="m", aggfunc="sum", fill_value=0.0)
    return out.add(piv.reindex(index=out.index, columns=out.columns, fill_value=0.0), fill_value=0.0)


def _summary(town: Town, findings: gpd.GeoDataFrame, stats: dict[str, Any], resp: Any,
             sections: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    villages = town.villages
    vid = villages["village_id"].to_numpy(dtype=object)
    idx = pd.Index(vid, name="village_id")
    extent = town.extent
    s = pd.DataFrame(index=idx)
    s["name"] = villages["name"].to_numpy(dtype=object)
    varea = shapely.area(shapely.intersection(_arr(villages), extent))
    s["area_m2"] = varea
    gdef = stats["grid_defects"]
    gaps = gdef[gdef["kind"] == "gap"]
    if stats.get("tolerance_m", 0) > 0:  # slivers are absorbed; real gaps are already split by village
        real = gaps[~gaps["sliver"]]
        gap_area = real.groupby("split_id")["area_m2"].sum().reindex(vid, fill_value=0.0)
        gap_area.index.name = "village_id"
    else:
        gap_area = _area_by_village(_arr(gaps), villages)
    s["grid_area_m2"] = (s["area_m2"] - gap_area.to_numpy()).clip(lower=0.0)
    s["area_coverage"] = np.where(s["area_m2"] > 0, s["grid_area_m2"] / s["area_m2"], 1.0)
    slivers = gdef[gdef["sliver"]]
    if stats.get("tolerance_m", 0) > 0:
        sv = slivers["split_id"].to_numpy(dtype=object)
    else:
        sv = _locate(_arr(slivers), villages, "village_id")
    s["slivers"] = pd.Series(1, index=range(len(slivers))).groupby(sv).sum().reindex(vid, fill_value=0).to_numpy() \
        if len(slivers) else 0
    s["sliver_area_m2"] = pd.Series(slivers["area_m2"].to_numpy()).groupby(sv).sum().reindex(
        vid, fill_value=0.0).to_numpy() if len(slivers) else 0.0
    s["grids"] = town.grids.groupby("village_id").size().reindex(vid, fill_value=0).to_numpy()
    # Effective (staffed) coverage: area and roads in grids that have a chief.
    staffing = resp.staffing
    unstaffed_ids = set(staffing.loc[~staffing["staffed"].astype(bool), "grid_id"])
    s["grids_unstaffed"] = town.grids[town.grids["grid_id"].isin(unstaffed_ids)].groupby(
        "village_id").size().reindex(vid, fill_value=0).to_numpy()
    un = town.grids[town.grids["grid_id"].isin(unstaffed_ids)]
    un_only = np.array([], dtype=object)
    if len(un):
        staffed = town.grids[~town.grids["grid_id"].isin(unstaffed_ids)]
        un_union = shapely.union_all(_arr(un))
        near = _arr(staffed)[shapely.STRtree(_arr(staffed)).query(un_union, predicate="intersects")] if len(
            staffed) else np.array([], dtype=object)
        rest = shapely.difference(un_union, shapely.union_all(near)) if len(near) else un_union
        un_only = np.array([rest], dtype=object)
    s["staffed_area_m2"] = (s["grid_area_m2"] - _area_by_village(un_only, villages)).clip(lower=0.0)
    s["effective_coverage"] = np.where(s["area_m2"] > 0, s["staffed_area_m2"] / s["area_m2"], 1.0)
    # Roads.
    roads_in = town.roads
    by_class = _length_by_village(roads_in, villages)
    unc = stats["uncovered"]
    unc_v = _locate(_arr(unc), villages, "village_id") if len(unc) else np.array([], dtype=object)
    unc_tab = pd.DataFrame({"village_id": unc_v, "road_class": unc["road_class"].to_numpy(dtype=object)
                            if len(unc) else [], "m": unc["length_m"].to_numpy(dtype=float) if len(unc) else []})
    unc_piv = unc_tab.pivot_table(index="village_id", columns="road_class", values="m", aggfunc="sum",
                                  fill_value=0.0) if len(unc_tab) else pd.DataFrame()
    unc_piv = unc_piv.reindex(index=idx, columns=list(settings.road_classes), fill_value=0.0)
    for c in settings.road_classes:
        s[f"road_m_{c}"] = by_class[c].to_numpy()
        s[f"uncovered_m_{c}"] = unc_piv[c].to_numpy()
    s["road_m"] = by_class.sum(axis=1).to_numpy()
    s["uncovered_road_m"] = unc_piv.sum(axis=1).to_numpy()
    s["road_coverage"] = np.where(s["road_m"] > 0, 1 - s["uncovered_road_m"] / s["road_m"], 1.0)
    if len(un_only) and len(roads_in):
        r_un = roads_in.copy()
        r_un = r_un.set_geometry(shapely.intersection(_arr(r_un), un_only[0]))
        r_un = r_un[~r_un.geometry.is_empty]
        un_road = _length_by_village(r_un, villages).sum(axis=1)
    else:
        un_road = pd.Series(0.0, index=idx)
    s["staffed_road_m"] = (s["road_m"] - s["uncovered_road_m"] - un_road.reindex(idx, fill_value=0.0)).clip(lower=0)
    s["effective_road_coverage"] = np.where(s["road_m"] > 0, s["staffed_road_m"] / s["road_m"], 1.0)
    # Points.
    if len(town.pois):
        pv = _locate(_arr(town.pois), villages, "village_id")
        s["pois"] = pd.Series(1, index=range(len(pv))).groupby(pv).sum().reindex(vid, fill_value=0).to_numpy()
        lost = stats["poi_grid"].isna().to_numpy()
        s["pois_uncovered"] = pd.Series(lost.astype(int)).groupby(pv).sum().reindex(vid, fill_value=0).to_numpy()
    else:
        s["pois"] = 0
        s["pois_uncovered"] = 0
    # Sensitive sections.
    if sections is not None and len(sections):
        for col in sections.columns:
            s[f"sensitive_{col}" if not col.startswith("sensitive") else col] = sections[col].reindex(
                idx, fill_value=0).to_numpy()
    # Findings by severity.
    sev = findings.groupby(["village_id", "severity"]).size().unstack(fill_value=0) if len(findings) else None
    for level in settings.severities:
        s[level] = (sev[level].reindex(idx, fill_value=0).to_numpy() if sev is not None and level in sev.columns
                    else 0)
    s["findings"] = s[list(settings.severities)].sum(axis=1)
    total_area = float(s["area_m2"].sum())
    total_road = float(s["road_m"].sum())
    totals = {
        "area_m2": total_area,
        "area_coverage": float(s["grid_area_m2"].sum() / total_area) if total_area else 1.0,
        "effective_coverage": float(s["staffed_area_m2"].sum() / total_area) if total_area else 1.0,
        "road_m": total_road,
        "uncovered_road_m": float(s["uncovered_road_m"].sum()),
        "road_coverage": float(1 - s["uncovered_road_m"].sum() / total_road) if total_road else 1.0,
        "effective_road_coverage": float(s["staffed_road_m"].sum() / total_road) if total_road else 1.0,
        "uncovered_lane_m": float(s["uncovered_m_lane"].sum()),
        "slivers": int(gdef["sliver"].sum()),
        "sliver_area_m2": float(gdef.loc[gdef["sliver"], "area_m2"].sum()),
        "sliver_gap_area_m2": float(gdef.loc[gdef["sliver"] & (gdef["kind"] == "gap"), "area_m2"].sum()),
        "sliver_overlap_area_m2": float(gdef.loc[gdef["sliver"] & (gdef["kind"] == "overlap"), "area_m2"].sum()),
        "village_slivers": int(stats["village_defects"]["sliver"].sum()),
        "village_sliver_area_m2": float(stats["village_defects"].loc[stats["village_defects"]["sliver"],
                                                                     "area_m2"].sum()),
        "tolerance_m": float(stats.get("tolerance_m", 0.0)),
        "road_crumbs": int(stats.get("crumbs", {}).get("pieces", 0)),
        "road_crumb_m": float(stats.get("crumbs", {}).get("length_m", 0.0)),
        "villages": len(villages),
        "grids": len(town.grids),
        "grids_unstaffed": len(unstaffed_ids),
        "findings": len(findings),
        "veto": int((findings["severity"] == "veto").sum()),
        "by_severity": {lv: int((findings["severity"] == lv).sum()) for lv in settings.severities},
        "by_kind": {str(k): int(v) for k, v in findings["kind"].value_counts().sort_index().items()},
    }
    return s, totals


# ----------------------------------------------------------------------------- analyze
def analyze(
    town: Town,
    *,
    rules: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    sliver_area_m2: float | None = None,
    tolerance_m: float | None = None,
    workers: int | None = None,
    as_of: dt.date | None = None,
) -> Assessment:
    """Run every check on ``town`` and gather one findings table and the summary.

    Parameters
    ----------
    town
        A validated :class:`~gisgrid.model.Town`.
    rules
        The ``[rules]`` config table for sensitive sections (None: the defaults).
    options
        The ``[assign]`` config table (border-road rule, corridor widths,
        workload limits, default owner).
    sliver_area_m2
        Gaps and overlaps below this area are counted, not reported.
    tolerance_m
        The digitising tolerance in metres (default ``settings.tolerance_m``;
        0 for exact geometry): gaps and overlaps narrower than this are
        slivers, counted per grid (``Assessment.hygiene``) but not reported.
    workers
        Threads for the geometry engine (default ``settings.workers``).
    as_of
        The date the data describes, shown on maps and reports.

    Returns
    -------
    Assessment
    """
    opts = dict(options or {})
    logger.info("coverage: %s", town.name)
    found, stats = coverage_findings(town, sliver_area_m2=sliver_area_m2, tolerance_m=tolerance_m, workers=workers)
    logger.info("responsibility: staffing, river chiefs, owners")
    resp = assign.analyze_responsibility(town, options=opts, tolerance_m=stats["tolerance_m"])
    allf = concat_findings([found, resp.findings], crs=town.crs)
    logger.info("sensitive sections and must-check points")
    gdef = stats["grid_defects"]
    gaps = _arr(gdef[(gdef["kind"] == "gap") & ~gdef["sliver"]]) if stats["tolerance_m"] > 0 else None
    sres = sensitive.analyze_sensitive(town, allf, resp, rules=rules, tolerance_m=stats["tolerance_m"], gaps=gaps,
                                       poi_grid=stats["poi_grid"])
    # 谁主管、谁负责: one owner per finding, decided once, after every check.
    findings = sort_findings(owners.assign_owners(sres.findings, town, resp, default_owner=opts.get("default_owner")))
    sections = sensitive.summarise_sections(sres, town)
    summary, totals = _summary(town, findings, stats, resp, sections)
    return Assessment(town=town, findings=findings, summary=summary, totals=totals, responsibility=resp,
                      sensitive=sres.sections, checkpoints=sres.checkpoints,
                      options={"rules": rules, "assign": opts, "sliver_area_m2": sliver_area_m2,
                               "tolerance_m": stats["tolerance_m"]},
                      as_of=as_of, hygiene=grid_hygiene(town, gdef),
                      defects=gdef[~gdef["sliver"]].reset_index(drop=True))
