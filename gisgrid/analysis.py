"""``analyze()``: every check in order, one findings table, one summary.

The order is coverage (gaps, overlaps, uncovered roads and points, input
repairs), then responsibility (staffing, river chiefs, owners), then the
sensitive-section rules, which may raise severities. The result is an
:class:`Assessment`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import owners, settings
from gisgrid.checks import responsibility as assign
from gisgrid.checks import sensitive
from gisgrid.checks.coverage import border_mismatch, coverage_findings, grid_hygiene, zone_of
from gisgrid.checks.patrols import PatrolResult, analyze_patrols
from gisgrid.findings import LIFECYCLE_COLUMNS, concat_findings, explode_ids, id_list, sort_findings
from gisgrid.geometry import tolerance
from gisgrid.model import Town
from gisgrid.vocab import METRIC_LABELS, percent

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
    responsibility : Responsibility
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
        (:func:`gisgrid.geometry.coverage.partition_defects`; the slivers are summed
        up in ``hygiene`` and ``totals``).
    """

    town: Town
    findings: gpd.GeoDataFrame
    summary: pd.DataFrame
    totals: dict[str, Any]
    responsibility: assign.Responsibility | None = None
    sensitive: gpd.GeoDataFrame | None = None
    checkpoints: gpd.GeoDataFrame | None = None
    options: dict[str, Any] = field(default_factory=dict)
    as_of: dt.date | None = None
    hygiene: pd.DataFrame | None = None
    defects: gpd.GeoDataFrame | None = None
    patrols: PatrolResult | None = None

    @property
    def workload(self) -> pd.DataFrame | None:
        """Per grid chief: grids, area, road length by class, households, must-check points."""
        return None if self.responsibility is None else self.responsibility.workload

    def explore(self, **kwargs: Any) -> Any:
        """Return the command-center map (a ``folium.Map``); keywords go to :func:`gisgrid.maps.command_center_map`."""
        from gisgrid.maps import command_center_map  # folium only in maps; lazy like GeoDataFrame.explore

        return command_center_map(self, **kwargs)

    def with_lifecycle(self, lifecycle: pd.DataFrame | None) -> Assessment:
        """A new assessment whose findings carry their history: ``status``, ``first_seen``, ``deadline``, ...

        Parameters
        ----------
        lifecycle
            The table :meth:`gisgrid.history.History.record` returned (None: this assessment).

        Returns
        -------
        Assessment
            The same analysis; only ``findings`` gains the lifecycle columns (this one is not changed).
        """
        if lifecycle is None:
            return self
        cols = [c for c in ("finding_id", *LIFECYCLE_COLUMNS) if c in lifecycle.columns and
                (c == "finding_id" or c not in self.findings.columns)]
        merged = self.findings.merge(pd.DataFrame(lifecycle[cols]), on="finding_id", how="left")
        return dataclasses.replace(self, findings=merged)

    def owners(self) -> dict[str, pd.DataFrame]:
        """The responsibility list (责任清单) of each owner, see :func:`gisgrid.owners.task_lists`."""
        return owners.task_lists(self)

    def __repr__(self) -> str:
        t = self.totals
        sev = t.get("by_severity", {})
        extra = f", {sev['high']} high" if sev.get("high") else ""
        return (f"<Assessment {self.town.name!r}: area coverage {percent(t['area_coverage'])}, "
                f"roads {percent(t.get('road_coverage'))}, {len(self.findings)} findings "
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
            (METRIC_LABELS["area_coverage"], percent(t["area_coverage"])),
            (METRIC_LABELS["effective_coverage"], percent(t["effective_coverage"])),
            (METRIC_LABELS["road_coverage"], f"{percent(t['road_coverage'])} of {t.get('road_m', 0) / 1000:,.1f} km"),
            (METRIC_LABELS["uncovered_lane_m"], f"{t['uncovered_lane_m']:,.0f} m"),
            ("grids without a chief 无网格长", f"{t.get('grids_unstaffed', 0)} of {t.get('grids', 0)}"),
            ("reaches without a chief 无河长河段", str(kinds.get("river_unassigned", 0))),
            ("must-check points in no grid 必查点位未覆盖", str(kinds.get("poi_uncovered", 0))),
        ]
        if "patrol_month" in t:  # effective coverage: looked after in the month, not only assigned
            rows.append((f"巡查覆盖 patrolled in {t['patrol_month']}",
                         f"reaches {percent(t['river_patrolled'])}, grids {percent(t['grid_patrolled'])}"))
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
def _geoms(gdf: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    return np.asarray(gdf.geometry.values if isinstance(gdf, gpd.GeoDataFrame) else gdf.values, dtype=object)


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
    geoms = _geoms(grids)
    keep: list[tuple[int, shapely.Geometry]] = []
    defects = assessment.defects
    if defects is not None and len(defects):
        over = defects[(defects["kind"] == "overlap") & ~defects["sliver"]]
        pos = {str(g): i for i, g in enumerate(grids["grid_id"])}
        for ids, geom in zip(over["zone_ids"], _geoms(over), strict=True):
            keep += [(pos[g], geom) for g in id_list(ids) if g in pos]
    cleaned = tolerance.clean_coverage(geoms, grids["village_id"].astype(str).to_numpy(), tol, keep=keep,
                                       workers=settings.thread_count(workers))
    out = grids.copy()
    out["area_m2"] = shapely.area(geoms)
    out["cleaned_area_m2"] = shapely.area(cleaned)
    out["area_change_m2"] = out["cleaned_area_m2"] - out["area_m2"]
    return out.set_geometry(gpd.GeoSeries(cleaned, crs=town.crs).array)


def _area_by_village(geoms: np.ndarray, villages: gpd.GeoDataFrame) -> pd.Series:
    """Area of ``geoms`` inside each village (vectorised over intersecting pairs)."""
    vid = villages["village_id"].to_numpy(dtype=object)
    if not len(geoms):
        return pd.Series(0.0, index=pd.Index(vid, name="village_id"))
    tree = shapely.STRtree(geoms)
    vi, gi = tree.query(_geoms(villages), predicate="intersects")
    areas = shapely.area(shapely.intersection(_geoms(villages)[vi], geoms[gi]))
    return pd.Series(areas).groupby(vid[vi]).sum().reindex(vid, fill_value=0.0).rename_axis("village_id")


def _length_by_village(lines: gpd.GeoDataFrame, villages: gpd.GeoDataFrame) -> pd.DataFrame:
    """Road length per village and class; lines wholly inside one village are not cut."""
    vid = villages["village_id"].to_numpy(dtype=object)
    out = pd.DataFrame(0.0, index=pd.Index(vid, name="village_id"), columns=list(settings.road_classes))
    if not len(lines):
        return out
    lg = _geoms(lines)
    vg = _geoms(villages)
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
    varea = shapely.area(shapely.intersection(_geoms(villages), extent))
    s["area_m2"] = varea
    gdef = stats["grid_defects"]
    gaps = gdef[gdef["kind"] == "gap"]
    if stats.get("tolerance_m", 0) > 0:  # slivers are absorbed; real gaps are already split by village
        real = gaps[~gaps["sliver"]]
        gap_area = real.groupby("split_id")["area_m2"].sum().reindex(vid, fill_value=0.0)
        gap_area.index.name = "village_id"
    else:
        gap_area = _area_by_village(_geoms(gaps), villages)
    s["grid_area_m2"] = (s["area_m2"] - gap_area.to_numpy()).clip(lower=0.0)
    # a ratio over nothing is no ratio: shown as n/a, never 100%
    s["area_coverage"] = np.where(s["area_m2"] > 0, s["grid_area_m2"] / s["area_m2"].where(s["area_m2"] > 0), np.nan)
    slivers = gdef[gdef["sliver"]]
    if stats.get("tolerance_m", 0) > 0:
        sv = slivers["split_id"].to_numpy(dtype=object)
    else:
        sv = zone_of(_geoms(slivers), villages, "village_id")
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
        un_union = shapely.union_all(_geoms(un))
        near = _geoms(staffed)[shapely.STRtree(_geoms(staffed)).query(un_union, predicate="intersects")] if len(
            staffed) else np.array([], dtype=object)
        rest = shapely.difference(un_union, shapely.union_all(near)) if len(near) else un_union
        un_only = np.array([rest], dtype=object)
    s["staffed_area_m2"] = (s["grid_area_m2"] - _area_by_village(un_only, villages)).clip(lower=0.0)
    s["effective_coverage"] = np.where(s["area_m2"] > 0, s["staffed_area_m2"] / s["area_m2"].where(s["area_m2"] > 0),
                                       np.nan)
    # Roads.
    roads_in = town.roads
    by_class = _length_by_village(roads_in, villages)
    unc = stats["uncovered"]
    unc_v = zone_of(_geoms(unc), villages, "village_id") if len(unc) else np.array([], dtype=object)
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
    s["road_coverage"] = np.where(s["road_m"] > 0, 1 - s["uncovered_road_m"] / s["road_m"].where(s["road_m"] > 0),
                                  np.nan)
    if len(un_only) and len(roads_in):
        r_un = roads_in.copy()
        r_un = r_un.set_geometry(shapely.intersection(_geoms(r_un), un_only[0]))
        r_un = r_un[~r_un.geometry.is_empty]
        un_road = _length_by_village(r_un, villages).sum(axis=1)
    else:
        un_road = pd.Series(0.0, index=idx)
    s["staffed_road_m"] = (s["road_m"] - s["uncovered_road_m"] - un_road.reindex(idx, fill_value=0.0)).clip(lower=0)
    s["effective_road_coverage"] = np.where(s["road_m"] > 0, s["staffed_road_m"] / s["road_m"].where(s["road_m"] > 0),
                                            np.nan)
    # Points.
    if len(town.pois):
        pv = zone_of(_geoms(town.pois), villages, "village_id")
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
    # a finding about two villages counts in both
    sev = explode_ids(pd.DataFrame(findings[["village_id", "severity"]]), "village_id").groupby(
        ["village_id", "severity"]).size().unstack(fill_value=0) if len(findings) else None
    for level in settings.severities:
        s[level] = (sev[level].reindex(idx, fill_value=0).to_numpy() if sev is not None and level in sev.columns
                    else 0)
    s["findings"] = s[list(settings.severities)].sum(axis=1)
    total_area = float(s["area_m2"].sum())
    total_road = float(s["road_m"].sum())
    totals = {
        "area_m2": total_area,
        "area_coverage": float(s["grid_area_m2"].sum() / total_area) if total_area else float("nan"),
        "effective_coverage": float(s["staffed_area_m2"].sum() / total_area) if total_area else float("nan"),
        "road_m": total_road,
        "uncovered_road_m": float(s["uncovered_road_m"].sum()),
        "road_coverage": float(1 - s["uncovered_road_m"].sum() / total_road) if total_road else float("nan"),
        "effective_road_coverage": float(s["staffed_road_m"].sum() / total_road) if total_road else float("nan"),
        "uncovered_lane_m": float(s["uncovered_m_lane"].sum()),
        "slivers": int(gdef["sliver"].sum()),
        "sliver_area_m2": float(gdef.loc[gdef["sliver"], "area_m2"].sum()),
        "sliver_gap_area_m2": float(gdef.loc[gdef["sliver"] & (gdef["kind"] == "gap"), "area_m2"].sum()),
        "sliver_overlap_area_m2": float(gdef.loc[gdef["sliver"] & (gdef["kind"] == "overlap"), "area_m2"].sum()),
        "village_slivers": int(stats["village_defects"]["sliver"].sum()),
        "village_sliver_area_m2": float(stats["village_defects"].loc[stats["village_defects"]["sliver"],
                                                                     "area_m2"].sum()),
        "tolerance_m": float(stats.get("tolerance_m", 0.0)),
        "outside": dict(stats.get("outside", {})),
        "derived": {f"{lay}.{col}": int(n) for (lay, col), n in
                    town.derived.groupby(["layer", "column"]).size().items()},
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


def _patrol_summary(summary: pd.DataFrame, totals: dict[str, Any], town: Town, resp: Any, pres: PatrolResult
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Effective coverage: reach length and grids patrolled by a valid patrol in the judged month, per village."""
    s = summary.copy()
    idx = s.index
    reaches = resp.reaches
    length = reaches.groupby("village_id")["length_m"].sum().reindex(idx, fill_value=0.0)
    walked = reaches["reach_id"].map(pres.reach_patrolled).fillna(0.0).clip(upper=reaches["length_m"])
    done = walked.groupby(reaches["village_id"]).sum().reindex(idx, fill_value=0.0)
    s["river_m"] = length.to_numpy()
    s["river_patrolled_m"] = done.to_numpy()
    s["river_patrolled"] = np.where(s["river_m"] > 0, s["river_patrolled_m"] / s["river_m"].where(s["river_m"] > 0),
                                    np.nan)
    ok = town.grids["grid_id"].map(pres.grid_patrolled).fillna(False).astype(bool)
    s["grids_patrolled"] = ok.groupby(town.grids["village_id"]).sum().reindex(idx, fill_value=0).to_numpy()
    s["grid_patrolled"] = np.where(s["grids"] > 0, s["grids_patrolled"] / s["grids"].where(s["grids"] > 0), np.nan)
    t = dict(totals)
    river_m = float(s["river_m"].sum())
    t["patrol_month"] = f"{pres.month[0]}-{pres.month[1]:02d}"
    t["river_patrolled"] = float(s["river_patrolled_m"].sum() / river_m) if river_m else float("nan")
    t["grid_patrolled"] = float(ok.mean()) if len(ok) else float("nan")
    t["patrols"] = len(pres.patrols)
    t["patrols_valid"] = int(pres.patrols["valid"].sum()) if len(pres.patrols) else 0
    t["patrol_fixes"] = pres.points
    t["patrol_rows_refused"] = len(pres.issues)
    return s, t


# ----------------------------------------------------------------------------- analyze
def analyze(
    town: Town,
    *,
    rules: Mapping[str, Any] | None = None,
    options: assign.AssignOptions | Mapping[str, Any] | None = None,
    sliver_area_m2: float | None = None,
    tolerance_m: float | None = None,
    workers: int | None = None,
    outside_town: bool = True,
    as_of: dt.date | None = None,
    patrols: Iterable[Any] | None = None,
    patrol_options: Mapping[str, Any] | None = None,
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
    outside_town
        Report roads and grid parts outside the town as ``outside_town``
        findings (they are counted in the totals either way).
    as_of
        The date the data describes, shown on maps and reports.
    patrols
        Batches of GPS fixes of the chiefs' patrols (:func:`gisgrid.io.tracks.iter_track_batches`), or None:
        no patrol check (:mod:`gisgrid.checks.patrols`).
    patrol_options
        The ``[patrols]`` config table (the judged month, rules per level, distances).

    Returns
    -------
    Assessment
    """
    opts = dict(options or {})
    logger.info("coverage: %s", town.name)
    found, stats = coverage_findings(town, sliver_area_m2=sliver_area_m2, tolerance_m=tolerance_m, workers=workers,
                                     outside_town=outside_town)
    logger.info("responsibility: staffing, river chiefs, owners")
    resp = assign.analyze_responsibility(town, options=opts, tolerance_m=stats["tolerance_m"])
    allf = concat_findings([found, resp.findings], crs=town.crs)
    logger.info("sensitive sections and must-check points")
    gdef = stats["grid_defects"]
    gaps = _geoms(gdef[(gdef["kind"] == "gap") & ~gdef["sliver"]]) if stats["tolerance_m"] > 0 else None
    sres = sensitive.analyze_sensitive(town, allf, resp, rules=rules, tolerance_m=stats["tolerance_m"], gaps=gaps,
                                       poi_grid=stats["poi_grid"])
    found_all = sres.findings
    pres = None
    if patrols is not None:
        logger.info("patrols: tracks against reaches and grids")
        pres = analyze_patrols(town, resp.reaches, patrols, options=patrol_options, as_of=as_of)
        found_all = concat_findings([found_all, pres.findings], crs=town.crs)
    # 谁主管、谁负责: one owner per finding, decided once, after every check.
    findings = sort_findings(owners.assign_owners(found_all, town, resp, default_owner=opts.get("default_owner")))
    sections = sensitive.summarise_sections(sres, town)
    summary, totals = _summary(town, findings, stats, resp, sections)
    if pres is not None:
        summary, totals = _patrol_summary(summary, totals, town, resp, pres)
    return Assessment(town=town, findings=findings, summary=summary, totals=totals, responsibility=resp,
                      sensitive=sres.sections, checkpoints=sres.checkpoints,
                      options={"rules": rules, "assign": opts, "sliver_area_m2": sliver_area_m2,
                               "tolerance_m": stats["tolerance_m"], "outside_town": outside_town},
                      as_of=as_of, hygiene=grid_hygiene(town, gdef),
                      defects=gdef[~gdef["sliver"]].reset_index(drop=True), patrols=pres)
