"""The prepared model: every layer of an assessment made ready for the page once, then drawn per scope.

:func:`_prepare` builds the layers (escaped, formatted, encoded) for the whole town; the town,
village and owner maps only select features from them (:mod:`gisgrid.maps.scopes`).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.findings import id_list, validate_findings
from gisgrid.maps.colouring import grid_colours
from gisgrid.maps.layers import _arr, _build_layer, _Layer, _tolerance
from gisgrid.maps.styles import PALETTE, _road_label
from gisgrid.maps.text import _fmt_measure, _fmt_num, _fmt_pct, _text, esc, mask_phone
from gisgrid.vocab import KINDS, POI_KIND_LABELS, SEVERITY_LABELS, kind_label

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _grid_staff(assessment: Assessment) -> pd.DataFrame:
    """Chief, phone, members and owner (the village when there is no chief), indexed by grid id.

    The responsibility analysis's staffing table, under the names the map uses; never derived again here.
    """
    if assessment.responsibility is None:
        msg = "the assessment has no responsibility analysis: maps show each grid's chief from its staffing table"
        raise ValueError(msg)
    st = assessment.responsibility.staffing.drop_duplicates("grid_id").set_index("grid_id")
    return st[["chief_name", "chief_phone", "members", "owner"]].set_axis(["chief", "phone", "members", "owner"],
                                                                         axis=1)


def _owners_of(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [p.strip() for p in str(value).split(" / ") if p.strip()]


@dataclass
class _Model:
    """Everything a map needs, prepared once per assessment (and basemap shift)."""

    town_name: str
    layers: dict[str, _Layer]
    totals: dict[str, Any]
    as_of: str
    village_names: dict[str, str]
    sources: dict[str, np.ndarray]
    grid_owner: np.ndarray
    owners: list[str]
    dropped_findings: int = 0
    _relations: _Relations | None = None

    def relations(self) -> _Relations:
        """Which roads, points and findings touch which village and grid (STRtree queries, cached)."""
        if self._relations is None:
            src = self.sources
            pg = _pairs(src["pois"], src["grids"])
            pv = _pairs(src["pois"], src["villages"])
            poi_grid = np.full(len(src["pois"]), -1, dtype=np.int64)
            poi_grid[pg[0]] = pg[1]
            poi_village = np.full(len(src["pois"]), -1, dtype=np.int64)
            poi_village[pv[0]] = pv[1]
            self._relations = _Relations(
                road_village=_pairs(src["roads"], src["villages"]), road_grid=_pairs(src["roads"], src["grids"]),
                poi_grid=poi_grid, poi_village=poi_village, finding_village=_pairs(src["findings"], src["villages"]),
                village_neighbours=_pairs(src["villages"], src["villages"]))
        return self._relations


@dataclass
class _Relations:
    road_village: tuple[np.ndarray, np.ndarray]
    road_grid: tuple[np.ndarray, np.ndarray]
    poi_grid: np.ndarray
    poi_village: np.ndarray
    finding_village: tuple[np.ndarray, np.ndarray]
    village_neighbours: tuple[np.ndarray, np.ndarray]


def _pairs(a: np.ndarray, b: np.ndarray, predicate: str = "intersects") -> tuple[np.ndarray, np.ndarray]:
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ok = ~(shapely.is_missing(a) | shapely.is_empty(a))
    tree = shapely.STRtree(b)
    idx = np.flatnonzero(ok)
    p = tree.query(a[ok], predicate=predicate)
    return idx[p[0]], p[1]


def _as_of(assessment: Assessment) -> str:
    for value in (getattr(assessment, "as_of", None), (getattr(assessment, "options", None) or {}).get("as_of")):
        if value:
            return str(value)[:10]
    return _dt.date.today().isoformat()


#: How a patrol track's validity reads on the map (the key its style is chosen by).
PATROL_VALIDITY = {True: "有效 valid", False: "可疑 suspect"}


def _patrol_layer(tracks: gpd.GeoDataFrame, villages: gpd.GeoDataFrame, *, crs: Any, gcj: bool) -> _Layer:
    """The month's patrol tracks (simplified), each with who walked it, when, how far and whether it counts."""
    geoms = _arr(tracks)
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    # the village a track is in: where its middle lies (for the village maps)
    vg = _arr(villages)
    vid = np.full(len(tracks), None, dtype=object)
    ti, vi = shapely.STRtree(vg).query(mid, predicate="within") if len(vg) else (np.zeros(0, int), np.zeros(0, int))
    vid[ti] = villages["village_id"].to_numpy(dtype=object)[vi]
    valid = _col(tracks, "valid").fillna(False).astype(bool).to_numpy()
    names, people = _col(tracks, "name"), _col(tracks, "person_id")
    start = [str(v)[:16].replace("T", " ") if v is not None and v == v else None for v in _col(tracks, "start")]
    cols: dict[str, list[Any]] = {
        "nm": _text(names), "p": _text(people), "lv": _text(_col(tracks, "level")), "t0": _text(start),
        "d": [None if v != v else f"{float(v):,.0f} min" for v in _col(tracks, "duration_min")],
        "l": [_fmt_measure(v, "m") for v in _col(tracks, "length_m")],
        "sp": [None if v != v else f"{float(v):,.1f} km/h" for v in _col(tracks, "speed_kmh")],
        "ok": [esc(PATROL_VALIDITY[bool(v)]) for v in valid],
        "r": _text(pd.Series([v if isinstance(v, str) and v else None for v in _col(tracks, "reasons")],
                             dtype=object)),
    }
    owners = [(str(n), f"{n} ({p})") for n, p in zip(names, people, strict=True)]
    attrs = pd.DataFrame({"village_id": vid, "owners": owners, "valid": valid})
    return _build_layer("patrols", tracks, cols, crs=crs, gcj=gcj, attrs=attrs)


def _prepare(assessment: Assessment, *, gcj: bool, show_phones: bool) -> _Model:
    town = assessment.town
    crs = town.crs
    layers: dict[str, _Layer] = {}
    vnames = dict(zip(town.villages["village_id"].astype(str), town.villages["name"].astype(str), strict=False))

    def vname(ids: pd.Series) -> list[str | None]:
        return _text([", ".join(vnames.get(i, i) for i in id_list(v)) or None for v in ids])

    # Town boundary (or the villages' outline).
    if len(town.boundary):
        bnd = town.boundary
    else:
        bnd = gpd.GeoDataFrame({"name": [town.name]}, geometry=[town.extent], crs=crs)
    layers["boundary"] = _build_layer("boundary", bnd, {"n": _text(_col(bnd, "name"))}, crs=crs, gcj=gcj,
                                      simplify=_tolerance(len(town.grids)))

    # Villages, with their summary line.
    vil = town.villages.reset_index(drop=True)
    summary = getattr(assessment, "summary", None)
    srow = (pd.DataFrame(summary).reindex(vil["village_id"].to_numpy(dtype=object))
            if summary is not None and len(summary) else pd.DataFrame(index=vil["village_id"]))
    vcols: dict[str, list[Any]] = {
        "n": _text(vil["name"]), "i": _text(vil["village_id"]),
        "h": [_fmt_num(v) for v in _col(vil, "households")],
        "a": [_fmt_pct(v) for v in _col(srow, "area_coverage")],
        "e": [_fmt_pct(v) for v in _col(srow, "effective_coverage")],
        "r": [_fmt_pct(v) for v in _col(srow, "road_coverage")],
        "g": [_fmt_num(v) for v in _col(srow, "grids")],
        "u": [_fmt_num(v) for v in _col(srow, "grids_unstaffed")],
        "f": [_fmt_num(v) for v in _col(srow, "findings")],
        "x": [_fmt_num(v) for v in _col(srow, "veto")],
    }
    # coverage_simplify keeps shared edges shared, but hand-drawn borders share none: simplify each polygon
    totals = getattr(assessment, "totals", None) or {}
    exact_villages = not totals.get("village_slivers")
    exact_grids = not totals.get("slivers")
    layers["villages"] = _build_layer("villages", vil, vcols, crs=crs, gcj=gcj, simplify=_tolerance(len(town.grids)),
                                      coverage=exact_villages, label_points=True,
                                      attrs=pd.DataFrame({"village_id": vil["village_id"].astype(str)}))

    # Grids, coloured, with staffing.
    grids = town.grids.reset_index(drop=True)
    st = _grid_staff(assessment).reindex(grids["grid_id"].to_numpy(dtype=object))
    phones = st["phone"] if show_phones else st["phone"].map(mask_phone)
    colours = grid_colours(_arr(grids)) % len(PALETTE)
    chief = [esc(c) or "— 无网格长 none" for c in st["chief"].astype(object)]
    gcols: dict[str, list[Any]] = {
        "g": _text(grids["grid_id"]), "v": vname(grids["village_id"]), "c": chief,
        "m": _text(st["members"]), "p": _text(phones), "nm": _text(_col(grids, "name")),
        "h": [_fmt_num(v) for v in _col(grids, "households")], "_k": [int(c) for c in colours],
    }
    gattrs = pd.DataFrame({"village_id": grids["village_id"].astype(object).to_numpy(),
                           "grid_id": grids["grid_id"].astype(str).to_numpy(),
                           "owner": st["owner"].astype(object).to_numpy()})
    layers["grids"] = _build_layer("grids", grids, gcols, crs=crs, gcj=gcj, simplify=_tolerance(len(grids)),
                                   coverage=exact_grids, attrs=gattrs)

    # Roads, one layer per class.
    roads = town.roads.reset_index(drop=True)
    tol_line = 0.5 if len(roads) < 20000 else 1.0
    for cls in settings.road_classes:
        in_class = (roads["road_class"] == cls).to_numpy()
        sub = roads[in_class].reset_index(drop=True)
        rcols: dict[str, list[Any]] = {"i": _text(sub["road_id"]), "n": _text(_col(sub, "name")),
                                       "c": [esc(_road_label(cls))] * len(sub)}
        layers[f"roads_{cls}"] = _build_layer(f"roads_{cls}", sub, rcols, crs=crs, gcj=gcj, simplify=tol_line,
                                              attrs=pd.DataFrame({"pos": np.flatnonzero(in_class)}))

    # Rivers by reach (with chiefs) when the responsibility analysis ran, else whole rivers.
    resp = getattr(assessment, "responsibility", None)
    reaches = getattr(resp, "reaches", None) if resp is not None else None
    if reaches is not None and len(reaches):
        rch = reaches.reset_index(drop=True)
        rcols = {"n": _text(_col(rch, "river_name")), "i": _text(_col(rch, "reach_id")),
                 "v": vname(_col(rch, "village_id")), "t": _text(_col(rch, "town_chief")),
                 "c": _text(_col(rch, "village_chief")), "l": [_fmt_measure(v, "m") for v in _col(rch, "length_m")]}
        rattrs = pd.DataFrame({"village_id": _col(rch, "village_id").to_numpy(dtype=object),
                               "owners": [tuple(x for x in (a, b) if isinstance(x, str))
                                          for a, b in zip(_col(rch, "town_chief"), _col(rch, "village_chief"),
                                                          strict=True)]})
        layers["rivers"] = _build_layer("rivers", rch, rcols, crs=crs, gcj=gcj, simplify=0.5, attrs=rattrs)
    else:
        riv = town.rivers.reset_index(drop=True)
        rcols = {"n": _text(_col(riv, "name")), "i": _text(_col(riv, "river_id")), "lv": _text(_col(riv, "level"))}
        layers["rivers"] = _build_layer("rivers", riv, rcols, crs=crs, gcj=gcj, simplify=0.5,
                                        attrs=pd.DataFrame({"village_id": [None] * len(riv),
                                                            "owners": [()] * len(riv)}))

    corridors = getattr(resp, "corridors", None) if resp is not None else None
    if corridors is not None and len(corridors):
        cor = corridors.reset_index(drop=True)
        ccols: dict[str, list[Any]] = {
            "c": _text(_col(cor, "name")), "lv": _text(_col(cor, "level")), "r": _text(_col(cor, "river_id")),
            "v": vname(_col(cor, "village_id")), "a": [_fmt_measure(v, "m2") for v in _col(cor, "area_m2")]}
        layers["corridors"] = _build_layer("corridors", cor, ccols, crs=crs, gcj=gcj, simplify=0.5,
                                           attrs=pd.DataFrame({"village_id": _col(cor, "village_id").to_numpy(object),
                                                               "owner": _col(cor, "name").to_numpy(object)}))

    # Must-check points with their checkpoint status.
    pois = town.pois.reset_index(drop=True)
    cps = getattr(assessment, "checkpoints", None)
    cp = (pd.DataFrame(cps).drop_duplicates("poi_id").set_index("poi_id").reindex(pois["poi_id"].to_numpy(object))
          if cps is not None and len(cps) and "poi_id" in cps.columns else pd.DataFrame(index=pois["poi_id"]))
    ok = _col(cp, "ok")
    status = [None if v is None or v != v else ("✔ 正常 ok" if bool(v) else "✘ " + (esc(p) or "problem"))
              for v, p in zip(ok.astype(object), _col(cp, "problem").astype(object), strict=True)]
    pcols: dict[str, list[Any]] = {"n": _text(_col(pois, "name")), "i": _text(pois["poi_id"]),
             "k": [esc(POI_KIND_LABELS.get(str(k), k)) for k in pois["kind"]],
             "kk": [esc(k) for k in pois["kind"]],
             "g": _text(_col(cp, "grid_id")), "c": _text(_col(cp, "grid_chief")),
             "rc": _text(_col(cp, "river_chief")), "s": status}
    layers["pois"] = _build_layer("pois", pois, pcols, crs=crs, gcj=gcj)

    # Findings.
    fnd = validate_findings(assessment.findings, where="the map").reset_index(drop=True)
    fgeo = _arr(fnd) if len(fnd) else np.array([], dtype=object)
    located = ~(shapely.is_missing(fgeo) | shapely.is_empty(fgeo)) if len(fgeo) else np.zeros(0, bool)
    dropped = int((~located).sum())
    fnd = fnd[located].reset_index(drop=True)
    fcols: dict[str, list[Any]] = {
        "k": [esc(kind_label(k)) for k in fnd["kind"]],
        "s": [esc(SEVERITY_LABELS.get(str(s), s)) for s in fnd["severity"]],
        "sv": [esc(s) for s in fnd["severity"]],
        "z": [_fmt_measure(m, u) for m, u in zip(fnd["measure"], fnd["unit"], strict=True)],
        "o": _text(_col(fnd, "owner")), "v": vname(_col(fnd, "village_id")), "g": _text(_col(fnd, "grid_id")),
        "r": _text(_col(fnd, "rule")), "m": _text(_col(fnd, "message")), "i": _text(fnd["finding_id"]),
        "w": [esc(KINDS.get(str(k), "")) or None for k in fnd["kind"]],
    }
    for extra, key in (("first_seen", "fs"), ("status", "st"), ("deadline", "dl")):
        if extra in fnd.columns:
            fcols[key] = [esc(str(v)[:10]) or None if v is not None and v == v else None for v in fnd[extra]]
    fattrs = pd.DataFrame({"kind": fnd["kind"].astype(str).to_numpy(),
                           "severity": fnd["severity"].astype(str).to_numpy(),
                           "village_id": _col(fnd, "village_id").to_numpy(object),
                           "owners": [tuple(_owners_of(o)) for o in _col(fnd, "owner")]})
    layers["findings"] = _build_layer("findings", fnd, fcols, crs=crs, gcj=gcj, attrs=fattrs)

    sens = getattr(assessment, "sensitive", None)
    if sens is not None and len(sens):
        sen = sens.reset_index(drop=True)
        yes_no = {True: "是 yes", False: "否 no"}
        scols: dict[str, list[Any]] = {"i": _text(_col(sen, "section_id")), "r": _text(_col(sen, "rule")),
                 "s": [esc(SEVERITY_LABELS.get(str(s), s)) or None for s in _col(sen, "severity")],
                 "t": _text(_col(sen, "trigger")), "v": vname(_col(sen, "village_id")),
                 "g": _text(_col(sen, "grid_id")),
                 "o": _text(_col(sen, "owner")), "d": _text(_col(sen, "detail")), "nm": _text(_col(sen, "name")),
                 "rc": _text(_col(sen, "river_chief")),
                 "cv": [yes_no.get(bool(v)) if v is not None and v == v else None for v in _col(sen, "covered")],
                 "sf": [yes_no.get(bool(v)) if v is not None and v == v else None for v in _col(sen, "staffed")],
                 "l": [_fmt_measure(v, "m") for v in _col(sen, "length_m")]}
        layers["sensitive"] = _build_layer("sensitive", sen, scols, crs=crs, gcj=gcj,
                                           attrs=pd.DataFrame({"village_id": _col(sen, "village_id").to_numpy(object),
                                                               "owners": [tuple(_owners_of(o))
                                                                          for o in _col(sen, "owner")]}))

    pres = getattr(assessment, "patrols", None)
    tracks = getattr(pres, "patrols", None)
    if tracks is not None and len(tracks):
        layers["patrols"] = _patrol_layer(tracks.reset_index(drop=True), vil, crs=crs, gcj=gcj)

    # Relations for the village and owner maps (metric CRS, unsimplified geometry), computed when first needed.
    sources = {"villages": _arr(vil), "grids": _arr(grids),
               "roads": _arr(roads) if len(roads) else np.array([], dtype=object),
               "pois": _arr(pois) if len(pois) else np.array([], dtype=object),
               "findings": _arr(fnd) if len(fnd) else np.array([], dtype=object)}
    owners: set[str] = set()
    for o in layers["findings"].attrs["owners"]:
        owners.update(o)
    owners.update(str(o) for o in st["owner"].dropna())
    totals = dict(getattr(assessment, "totals", None) or {})
    return _Model(
        town_name=str(town.name), layers=layers, totals=totals, as_of=_as_of(assessment), village_names=vnames,
        sources=sources, grid_owner=st["owner"].to_numpy(dtype=object), owners=sorted(owners),
        dropped_findings=dropped,
    )
