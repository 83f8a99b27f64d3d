"""Must-check points (必查点位): the grid, grid chief and river chief of every POI of a must-check kind.

Each point's problems (in no grid, grid without chief, next to a reach
without a village river chief) are first linked to the findings that already
report them (``poi_uncovered``, ``grid_unstaffed``, ``river_unassigned``),
which are escalated; only a problem no finding reports becomes a
``checkpoint_incomplete`` finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from gisgrid import settings
from gisgrid.checks.sensitive.context import _arr, _column, _Context, _rule_pois, _text
from gisgrid.checks.sensitive.escalation import _Candidates
from gisgrid.checks.sensitive.rules import Rule
from gisgrid.findings import empty_findings, id_list, ids_cell, make_findings, present
from gisgrid.geometry.coverage import zones_at

__all__ = ["CHECKPOINT_COLUMNS"]

#: Columns of :attr:`gisgrid.checks.sensitive.SensitiveResult.checkpoints`.
CHECKPOINT_COLUMNS: tuple[str, ...] = (
    "poi_id", "kind", "name", "village_id", "grid_id", "grid_chief", "river_id", "reach_id", "river_chief", "ok",
    "problem", "severity", "finding_id", "geometry",
)
_NEAR_SLACK_M = 1.0  # a river_unassigned this much farther than the nearest reach still reports a checkpoint's reach


def _grids_of_points(ctx: _Context, pois: gpd.GeoDataFrame, pts: np.ndarray) -> np.ndarray:
    """The grid(s) of each point by the grids' tree (``zones_at``), else the one the coverage check gave."""
    out = np.empty(len(pts), dtype=object)  # filled cell by cell: a cell may be a tuple of grid ids
    out[:] = [ids_cell(z) for z in zones_at(pts, ctx.grid_tree, ctx.grid_id_str)]
    if ctx.poi_grid:  # in a sliver: the grid the coverage check gave it
        none = np.flatnonzero(pd.isna(out))
        out[none] = [ctx.poi_grid.get(str(p)) for p in pois["poi_id"].to_numpy(dtype=object)[none]]
    return out


def _checkpoints(ctx: _Context, kinds: Sequence[str], near_m: float) -> gpd.GeoDataFrame:
    """Grid, grid chief and river chief of every POI of ``kinds``, with its problems (findings linked later)."""
    pois = _rule_pois(ctx, kinds)
    if not len(pois):
        return _empty_checkpoints(ctx.crs)
    pts = _arr(pois)
    n = len(pois)
    grid = _grids_of_points(ctx, pois, pts)
    gvil = dict(zip(ctx.grid_id_str, ctx.grids["village_id"].to_numpy(dtype=object), strict=True))
    village = np.array([gvil.get((id_list(g) or [""])[0]) for g in grid], dtype=object)
    lost = np.array([v is None for v in village], dtype=bool)
    if lost.any():
        village[lost] = ctx.village_at(pts[lost])
    chief = np.array([", ".join(c for c in (ctx.chiefs.get(x) for x in id_list(g)) if c) or None for g in grid],
                     dtype=object)
    # Near a river: within near_m of a centreline, or inside a river corridor (河道管理范围).
    near = np.zeros(n, dtype=bool)
    rivers = ctx.town.rivers
    if len(rivers):
        lines = ctx.lines("rivers")
        p_idx, part = lines.near_pairs(pts, near_m)
        near[p_idx[shapely.dwithin(_arr(rivers)[lines.owner[part]], pts[p_idx], near_m)]] = True
    cor = ctx.corridors
    radius = near_m
    if cor is not None and len(cor) and "geometry" in cor.columns:
        cg = np.asarray(gpd.GeoSeries(cor["geometry"]).values, dtype=object)
        cg = cg[~(shapely.is_missing(cg) | shapely.is_empty(cg))]
        if len(cg):
            shapely.prepare(cg)
            p_idx, c_idx = STRtree(cg).query(pts)
            near[p_idx[shapely.intersects(cg[c_idx], pts[p_idx])]] = True
        if "half_width_m" in cor.columns and cor["half_width_m"].notna().any():
            radius = max(near_m, float(pd.to_numeric(cor["half_width_m"], errors="coerce").max()) + 1.0)
    # The reach next to the point: the nearest reach centreline; its village chief is the river chief.
    river_id = np.full(n, None, dtype=object)
    reach_id = np.full(n, None, dtype=object)
    river_chief = np.full(n, None, dtype=object)
    dist = np.full(n, np.inf)
    reaches = ctx.reaches
    has_reaches = reaches is not None and len(reaches) and "geometry" in reaches.columns
    if has_reaches and reaches is not None:
        rg = np.asarray(gpd.GeoSeries(reaches["geometry"]).values, dtype=object)
        (p_idx, r_idx), dd = STRtree(rg).query_nearest(pts, max_distance=radius, return_distance=True,
                                                       all_matches=False)
        keep = near[p_idx]
        p_idx, r_idx, dd = p_idx[keep], r_idx[keep], dd[keep]
        river_id[p_idx] = [_text(v) for v in _column(reaches, "river_id")[r_idx]]
        reach_id[p_idx] = [_text(v) for v in _column(reaches, "reach_id")[r_idx]]
        river_chief[p_idx] = [_text(v) for v in _column(reaches, "village_chief")[r_idx]]
        dist[p_idx] = dd
    elif len(rivers):
        (p_idx, r_idx), dd = STRtree(_arr(rivers)).query_nearest(pts, max_distance=radius, return_distance=True,
                                                                 all_matches=False)
        keep = near[p_idx]
        river_id[p_idx[keep]] = rivers["river_id"].astype(str).to_numpy(dtype=object)[r_idx[keep]]
        dist[p_idx[keep]] = dd[keep]
    problems: list[list[tuple[str, str]]] = []
    for g, c, r, rc, rr in zip(grid, chief, river_id, river_chief, reach_id, strict=True):
        p: list[tuple[str, str]] = []
        if g is None:
            p.append(("no_grid", "in no grid"))
        elif c is None:
            p.append(("no_chief", f"grid {g} has no grid chief"))
        if r is not None and rc is None and has_reaches:
            p.append(("no_river_chief", f"reach {rr} of river {r} has no village river chief"))
        problems.append(p)
    df = pd.DataFrame({
        "poi_id": pd.Series(pois["poi_id"].astype(str).to_numpy(dtype=object), dtype=object),
        "kind": pd.Series(pois["kind"].to_numpy(dtype=object), dtype=object),
        "name": pd.Series(pois["name"].to_numpy(dtype=object), dtype=object),
        "village_id": pd.Series(village, dtype=object),
        "grid_id": pd.Series(grid, dtype=object),
        "grid_chief": pd.Series(chief, dtype=object),
        "river_id": pd.Series(river_id, dtype=object),
        "reach_id": pd.Series(reach_id, dtype=object),
        "river_chief": pd.Series(river_chief, dtype=object),
        "ok": np.array([not p for p in problems], dtype=bool),
        "problem": pd.Series(["; ".join(t for _, t in p) or None for p in problems], dtype=object),
        "severity": pd.Series([None] * n, dtype=object),
        "finding_id": pd.Series([None] * n, dtype=object),
    })
    df["_problems"] = pd.Series(problems, dtype=object)
    df["_dist"] = dist
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(pts, crs=ctx.crs).values, crs=ctx.crs)


def _empty_checkpoints(crs: Any) -> gpd.GeoDataFrame:
    """A checkpoints table with no rows (and the helper columns ``_problems`` and ``_dist``)."""
    data: dict[str, Any] = {c: pd.Series([], dtype=object) for c in CHECKPOINT_COLUMNS if c != "geometry"}
    data["ok"] = pd.Series([], dtype=bool)
    data["_problems"] = pd.Series([], dtype=object)
    data["_dist"] = pd.Series([], dtype=float)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _reporters_of_checkpoints(cp: gpd.GeoDataFrame, findings: gpd.GeoDataFrame) -> dict[tuple[int, str], list[int]]:
    """(checkpoint row, problem code) -> positions of the findings that already report it."""
    out: dict[tuple[int, str], list[int]] = {}
    if not len(cp) or not len(findings):
        return out
    fkind = findings["kind"].to_numpy(dtype=object)
    fgeoms = _arr(findings)
    fok = ~(shapely.is_missing(fgeoms) | shapely.is_empty(fgeoms))
    cpg = _arr(cp)
    # in no grid: the poi_uncovered about the POI (by poi_id, else at the same place)
    fpos = np.flatnonzero(fkind == "poi_uncovered")
    fid = _column(findings, "poi_id")
    by_id: dict[str, list[int]] = {}
    for p in fpos:
        if present(fid[p]):
            by_id.setdefault(str(fid[p]), []).append(int(p))
    for i, pid in enumerate(cp["poi_id"]):
        if str(pid) in by_id:
            out[(i, "no_grid")] = by_id[str(pid)]
    rest = np.array([p for p in fpos if not present(fid[p]) and fok[p]], dtype=np.intp)
    if len(rest):
        c_i, f_i = STRtree(fgeoms[rest]).query(cpg, predicate="dwithin", distance=0.01)
        for c, f in zip(c_i, f_i, strict=True):
            out.setdefault((int(c), "no_grid"), []).append(int(rest[f]))
    # no grid chief: the grid_unstaffed of its grid
    by_grid: dict[str, list[int]] = {}
    for p in np.flatnonzero(fkind == "grid_unstaffed"):
        for g in id_list(findings["grid_id"].iat[p]):
            by_grid.setdefault(g, []).append(int(p))
    for i, g in enumerate(cp["grid_id"]):
        found = [p for x in id_list(g) for p in by_grid.get(x, [])]
        if found:
            out[(i, "no_chief")] = found
    # no river chief: the river_unassigned of its reach (by reach_id, else the one along the nearest reach)
    rpos = np.flatnonzero((fkind == "river_unassigned") & fok)
    if len(rpos):
        frr = _column(findings, "reach_id")[rpos]
        frv = _column(findings, "river_id")[rpos]
        reach = cp["reach_id"].to_numpy(dtype=object)
        dist = cp["_dist"].to_numpy(dtype=float)
        finite = np.isfinite(dist)
        radius = float(dist[finite].max()) + _NEAR_SLACK_M if finite.any() else 0.0
        c_i, f_i = STRtree(fgeoms[rpos]).query(cpg, predicate="dwithin", distance=radius)
        same_reach = np.array([present(frr[f]) and frr[f] == reach[c] for c, f in zip(c_i, f_i,
                                                                                                 strict=True)],
                              dtype=bool)
        close = shapely.distance(cpg[c_i], fgeoms[rpos][f_i]) <= dist[c_i] + _NEAR_SLACK_M
        same_river = np.array([not present(frv[f]) or frv[f] == cp["river_id"].iat[c]
                               for c, f in zip(c_i, f_i, strict=True)], dtype=bool)
        no_reach_id = np.array([not present(frr[f]) for f in f_i], dtype=bool)
        # the finding about the point's own reach; only when none names it, one along that reach
        exact = np.zeros(len(cp), dtype=bool)
        exact[c_i[same_reach]] = True
        ok = same_reach | (~exact[c_i] & no_reach_id & close & same_river)
        for c, f in zip(c_i[ok], f_i[ok], strict=True):
            out.setdefault((int(c), "no_river_chief"), []).append(int(rpos[f]))
    return out


def _checkpoint_findings(ctx: _Context, cp: gpd.GeoDataFrame, findings: gpd.GeoDataFrame, check: Rule | None,
                         veto: Rule | None, rules: Mapping[str, tuple[int, Rule]],
                         cand: _Candidates) -> gpd.GeoDataFrame:
    """Link each incomplete checkpoint to the findings that report it (escalating them); the rest become findings."""
    if not len(cp):
        return empty_findings(ctx.crs)
    reporters = _reporters_of_checkpoints(cp, findings)
    veto_kinds = set(veto.kinds) if veto is not None else set()
    check_kinds = set(check.kinds or settings.must_check_kinds) if check is not None else set()
    fids = findings["finding_id"].to_numpy(dtype=object) if len(findings) else np.empty(0, dtype=object)
    sev_out = np.full(len(cp), None, dtype=object)
    fid_out = np.full(len(cp), None, dtype=object)
    rows: list[dict[str, Any]] = []
    at: list[int] = []
    cpg = _arr(cp)
    all_problems = cp["_problems"].to_numpy(dtype=object)
    all_kinds = cp["kind"].to_numpy(dtype=object)
    for i in range(len(cp)):
        problems = all_problems[i]
        kind = all_kinds[i]
        rule = veto if kind in veto_kinds else (check if kind in check_kinds else None)
        if not problems or rule is None:
            continue
        order = rules[rule.name][0]
        label = f"{kind} {cp['name'].iat[i] + ' ' if present(cp['name'].iat[i]) else ''}({cp['poi_id'].iat[i]})"
        linked: list[int] = []
        left: list[str] = []
        for code, text in problems:
            found = reporters.get((i, code), [])
            if found:
                linked += found
                cand.add(found, rule, order, [f"must-check point {label}: {text}"] * len(found))
            else:
                left.append(text)
        sev_out[i] = rule.effective_severity
        if linked:
            fid_out[i] = ",".join(dict.fromkeys(str(fids[p]) for p in linked))
        if left:
            head = "Veto item (一票否决): m" if rule.effective_severity == "veto" else "M"
            owner = ctx.grid_owner.get((id_list(cp["grid_id"].iat[i]) or [""])[0])
            rows.append({
                "kind": "checkpoint_incomplete", "severity": rule.effective_severity,
                "village_id": cp["village_id"].iat[i], "grid_id": cp["grid_id"].iat[i],
                "owner": owner if "no_grid" not in {c for c, _ in problems} else None,
                "measure": 1.0, "unit": "count", "rule": rule.name,
                "message": f"{head}ust-check point {label} in {ctx.village_label(cp['village_id'].iat[i])}: "
                           f"{'; '.join(left)}; name who is responsible.",
                "geometry": cpg[i], "poi_id": cp["poi_id"].iat[i], "poi_kind": kind,
                "river_id": cp["river_id"].iat[i], "reach_id": cp["reach_id"].iat[i],
            })
            at.append(i)
    cp["severity"] = pd.Series(sev_out, index=cp.index, dtype=object)
    out = empty_findings(ctx.crs)
    if rows:
        out = make_findings(pd.DataFrame(rows), crs=ctx.crs, key=[f"checkpoint:{r['poi_id']}" for r in rows])
        for i, fid in zip(at, out["finding_id"], strict=True):
            fid_out[i] = fid if fid_out[i] is None else f"{fid_out[i]},{fid}"
    cp["finding_id"] = pd.Series(fid_out, index=cp.index, dtype=object)
    return out
