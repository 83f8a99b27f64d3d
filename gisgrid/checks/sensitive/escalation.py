"""Escalation: findings that lie where a rule applies take its severity, and section defects find their reporters.

A finding of a place kind (:data:`ESCALATED_KINDS`) that meets a rule's
footprint becomes a candidate for the rule's severity (:class:`_Candidates`);
:func:`_apply` then raises each finding to its most severe candidate, never
lowering one, keeping its id. A defect of a section row (in no grid, grid
without chief, no river chief) that a finding already reports escalates that
finding; the rest become ``sensitive_section`` findings, one per (defect, road
or river, grid).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from gisgrid.checks.sensitive.context import _arr, _Context
from gisgrid.checks.sensitive.rules import Rule
from gisgrid.findings import SEVERITY_RANK, empty_findings, make_findings, present
from gisgrid.geometry.linework import grouped, union_lines

__all__ = ["ESCALATED_KINDS"]

logger = logging.getLogger(__name__)

#: Finding kinds that are about a place and can be escalated by a rule.
ESCALATED_KINDS: frozenset[str] = frozenset({
    "area_gap", "area_overlap", "road_uncovered", "road_ambiguous", "river_unassigned", "grid_unstaffed",
    "poi_uncovered", "checkpoint_incomplete", "sensitive_section",
})


_SHARE_TOL_M = 0.05  # a line finding within this of a section lies on it
_MIN_SHARED_M = 1.0  # a finding meets a line footprint when they share this much


@dataclass
class _Footprint:
    """Where a rule applies, for escalation: POIs and a radius, a polygon, or section lines."""

    rule: Rule
    points: np.ndarray | None = None
    polygon: shapely.Geometry | None = None
    lines: np.ndarray | None = None
    texts: np.ndarray | None = None  # per point or per line


def _shares(fgeoms: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Length each finding geometry shares with the line piece beside it (pairwise)."""
    out = np.zeros(len(fgeoms))
    if not len(fgeoms):
        return out
    dim = shapely.get_dimensions(fgeoms)
    out[dim == 0] = np.inf
    lin = np.flatnonzero(dim == 1)
    if len(lin):
        out[lin] = shapely.length(shapely.intersection(pieces[lin], shapely.buffer(fgeoms[lin], _SHARE_TOL_M)))
    poly = np.flatnonzero(dim == 2)
    if len(poly):
        out[poly] = shapely.length(shapely.intersection(pieces[poly], fgeoms[poly]))
    return out


def _meets(fp: _Footprint, fgeoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the findings meeting the footprint, and a reason for each."""
    none = (np.empty(0, dtype=np.intp), np.empty(0, dtype=object))
    if not len(fgeoms):
        return none
    if fp.points is not None:
        if not len(fp.points):
            return none
        f_idx, p_idx = STRtree(fp.points).query(fgeoms, predicate="dwithin", distance=float(fp.rule.distance_m or 0))
        texts = np.asarray(fp.texts, dtype=object)[p_idx]
    elif fp.polygon is not None:
        f_idx = np.sort(STRtree(fgeoms).query(fp.polygon, predicate="intersects"))
        inner = (shapely.get_dimensions(fgeoms[f_idx]) == 0) | ~shapely.touches(fgeoms[f_idx], fp.polygon)
        f_idx = f_idx[inner]
        texts = np.full(len(f_idx), "in the market-town core (集镇)", dtype=object)
    elif fp.lines is not None and len(fp.lines):
        f_idx, l_idx = STRtree(fp.lines).query(fgeoms, predicate="dwithin", distance=_SHARE_TOL_M)
        ok = _shares(fgeoms[f_idx], fp.lines[l_idx]) >= _MIN_SHARED_M
        f_idx, l_idx = f_idx[ok], l_idx[ok]
        texts = np.asarray(fp.texts, dtype=object)[l_idx]
    else:
        return none
    if not len(f_idx):
        return none
    order = np.argsort(f_idx, kind="stable")
    f_idx, texts = f_idx[order], texts[order]
    first = np.unique(f_idx, return_index=True)[1]
    return f_idx[first], texts[first]


@dataclass
class _Candidates:
    """Escalation candidates: finding position, rule order, severity, rule name, reason."""

    rows: list[tuple[int, int, str, str, str]] = field(default_factory=list)

    def add(self, positions: Sequence[int] | np.ndarray, rule: Rule, order: int, reasons: Sequence[Any],
            severity: str | None = None) -> None:
        """The findings at ``positions`` meet ``rule`` (the ``order``-th), each for its reason."""
        sev = severity or rule.effective_severity
        self.rows.extend((int(p), order, sev, rule.name, str(r) if r else rule.label())
                         for p, r in zip(positions, reasons, strict=True))


def _apply(findings: gpd.GeoDataFrame, cand: _Candidates) -> gpd.GeoDataFrame:
    """Raise each finding to its best candidate when that is more severe; ids stay."""
    out = findings.copy()
    out["base_severity"] = out["severity"].astype(object)
    if not cand.rows:
        return out
    c = pd.DataFrame(cand.rows, columns=["pos", "order", "severity", "rule", "why"])
    c["rank"] = c["severity"].map(SEVERITY_RANK)
    c = c.sort_values(["pos", "rank", "order"], kind="stable").drop_duplicates("pos")
    base_rank = out["severity"].map(SEVERITY_RANK).fillna(len(SEVERITY_RANK)).to_numpy()
    c = c[c["rank"].to_numpy() < base_rank[c["pos"].to_numpy()]]
    if not len(c):
        return out
    sev = out["severity"].to_numpy(dtype=object).copy()
    rule = out["rule"].to_numpy(dtype=object).copy()
    msg = out["message"].to_numpy(dtype=object).copy()
    for p, s, r, why in zip(c["pos"], c["severity"], c["rule"], c["why"], strict=True):
        head = "Veto item (一票否决)" if s == "veto" else f"Raised from {sev[p]} to {s}"
        msg[p] = f"{msg[p] or ''} [{head}, rule {r}: {why}.]".strip()
        sev[p], rule[p] = s, r
    out["severity"] = pd.Series(sev, index=out.index, dtype=object)
    out["rule"] = pd.Series(rule, index=out.index, dtype=object)
    out["message"] = pd.Series(msg, index=out.index, dtype=object)
    logger.info("sensitive: %d finding(s) raised (%s)", len(c),
                ", ".join(f"{k} {v}" for k, v in c["rule"].value_counts().sort_index().items()))
    return out


def _defects(ctx: _Context, sections: gpd.GeoDataFrame, missing: np.ndarray, findings: gpd.GeoDataFrame,
             rules: Mapping[str, tuple[int, Rule]], cand: _Candidates) -> pd.DataFrame:
    """Defects of section rows that no finding reports (row, defect, text); the reporters are escalated."""
    cols = ["row", "defect", "text"]
    if not len(sections):
        return pd.DataFrame(columns=cols)
    covered = sections["covered"].to_numpy(dtype=bool)
    staffed = sections["staffed"].to_numpy(dtype=bool)
    gid = sections["grid_id"].to_numpy(dtype=object)
    rows: list[tuple[np.integer[Any] | int, str, str]] = [(i, "uncovered", "it lies in no grid")
                                                          for i in np.flatnonzero(~covered)]
    rows += [(i, "unstaffed", f"grid {gid[i]} has no grid chief") for i in np.flatnonzero(covered & ~staffed)]
    # a cross-boundary section lacks a chief on the pieces lying in the village without one
    vid = sections["village_id"].to_numpy(dtype=object)
    rows += [(i, "no_river_chief", f"no village river chief on the {ctx.village_label(vid[i])} side of "
                                   f"cross-boundary section {sections['trigger'].iat[i]}")
             for i in np.flatnonzero(pd.notna(missing)) if str(vid[i]) in str(missing[i]).split(",")]
    if ctx.river_chief_of:
        river = (sections["layer"] == "river").to_numpy() & sections["river_chief"].isna().to_numpy()
        rows += [(i, "no_river_chief", f"river {sections['feature_id'].iat[i]} has no village river chief in "
                                       f"{ctx.village_label(vid[i])}")
                 for i in np.flatnonzero(river)]
    if not rows:
        return pd.DataFrame(columns=cols)
    d = pd.DataFrame(rows, columns=cols).drop_duplicates(["row", "defect"]).reset_index(drop=True)
    explained = np.zeros(len(d), dtype=bool)
    pieces = _arr(sections)
    fkind = findings["kind"].to_numpy(dtype=object)
    fgeoms = _arr(findings)
    fok = ~(shapely.is_missing(fgeoms) | shapely.is_empty(fgeoms))
    for defect, kinds in (("uncovered", ("road_uncovered", "area_gap")), ("no_river_chief", ("river_unassigned",))):
        sel = np.flatnonzero(d["defect"].to_numpy() == defect)
        fpos = np.flatnonzero(np.isin(fkind, kinds) & fok)
        if not len(sel) or not len(fpos):
            continue
        srows = d["row"].to_numpy(dtype=np.intp)[sel]
        s_i, f_i = STRtree(fgeoms[fpos]).query(pieces[srows], predicate="dwithin", distance=_SHARE_TOL_M)
        shared = _shares(fgeoms[fpos][f_i], pieces[srows][s_i])
        ok = shared >= np.minimum(_MIN_SHARED_M, 0.5 * shapely.length(pieces[srows][s_i]))
        explained[sel[np.unique(s_i[ok])]] = True
        _escalate_reporters(sections, srows[s_i[ok]], fpos[f_i[ok]], rules, cand)
    sel = np.flatnonzero(d["defect"].to_numpy() == "unstaffed")
    if len(sel):
        by_grid: dict[str, list[int]] = {}
        for p in np.flatnonzero(fkind == "grid_unstaffed"):
            by_grid.setdefault(str(findings["grid_id"].iat[p]), []).append(int(p))
        srows = d["row"].to_numpy(dtype=np.intp)[sel]
        pairs = [(k, p) for k, r in enumerate(srows) for p in by_grid.get(str(gid[r]), [])]
        if pairs:
            k_i, f_i = (np.asarray(x, dtype=np.intp) for x in zip(*pairs, strict=True))
            explained[sel[np.unique(k_i)]] = True
            _escalate_reporters(sections, srows[k_i], f_i, rules, cand)
    return d[~explained].reset_index(drop=True)


def _escalate_reporters(sections: gpd.GeoDataFrame, srows: np.ndarray, fpos: np.ndarray,
                        rules: Mapping[str, tuple[int, Rule]], cand: _Candidates) -> None:
    """Each finding ``fpos[i]`` reports a defect of section row ``srows[i]``: it becomes a candidate of that rule."""
    names = sections["rule"].to_numpy(dtype=object)
    detail = sections["detail"].to_numpy(dtype=object)
    for s, f in zip(srows, fpos, strict=True):
        order, rule = rules[names[s]]
        cand.add([f], rule, order, [detail[s]])


def _section_findings(ctx: _Context, sections: gpd.GeoDataFrame, defects: pd.DataFrame,
                      rules: Mapping[str, tuple[int, Rule]]) -> gpd.GeoDataFrame:
    """One ``sensitive_section`` finding per (defect, road or river, grid) that no other finding reports."""
    if not len(defects):
        return empty_findings(ctx.crs)
    s = sections.iloc[defects["row"].to_numpy(dtype=np.intp)].reset_index(drop=True)
    s["defect"] = defects["defect"].to_numpy(dtype=object)
    s["text"] = defects["text"].to_numpy(dtype=object)
    s["rank"] = s["severity"].map(SEVERITY_RANK)
    s["order"] = s["rule"].map(lambda r: rules[r][0])
    s["place"] = [str(g if g is not None else v) for g, v in zip(s["grid_id"], s["village_id"], strict=True)]
    keys = ["defect", "layer", "feature_id", "place"]
    s = s.sort_values([*keys, "rank", "order"], kind="stable").reset_index(drop=True)
    gid = s.groupby(keys, sort=False).ngroup().to_numpy()
    geoms = grouped(_arr(s), gid, int(gid.max()) + 1, union_lines, shapely.MultiLineString())
    first = s.groupby(gid, sort=False).head(1).reset_index(drop=True)
    also = s.groupby(gid, sort=False)["rule"].agg(lambda v: ", ".join(dict.fromkeys(v))).to_numpy()
    fixes = {"uncovered": "extend a grid over it", "unstaffed": "name a grid chief for the grid",
             "no_river_chief": "name the village river chief"}
    rows = []
    for i, f in first.iterrows():
        length = float(shapely.length(geoms[i]))
        what = f"{f['layer']} {f['name'] + ' ' if present(f['name']) else ''}({f['feature_id']})"
        where = (f"grid {f['grid_id']} of {ctx.village_label(f['village_id'])}" if f["grid_id"] is not None
                 else ctx.village_label(f["village_id"]))
        owner = (f["owner"] if f["defect"] != "no_river_chief" else None) or f["river_chief"] or f["owner"]
        rows.append({
            "kind": "sensitive_section", "severity": f["severity"], "village_id": f["village_id"],
            "grid_id": f["grid_id"], "owner": owner, "measure": length, "unit": "m", "rule": f["rule"],
            "message": f"Sensitive section of {what}, {length:,.0f} m in {where} ({f['detail'] or f['rule']}; "
                       f"rule {also[i]}): {f['text']}; {fixes[f['defect']]}.",
            "geometry": geoms[i], "defect": f["defect"], "feature_id": f["feature_id"],
            "river_id": f["feature_id"] if f["layer"] == "river" else None,
            "road_id": f["feature_id"] if f["layer"] == "road" else None,
        })
    key = [f"sensitive:{r['defect']}:{r['feature_id']}:{r['grid_id'] or r['village_id']}" for r in rows]
    return make_findings(pd.DataFrame(rows), crs=ctx.crs, key=key)
