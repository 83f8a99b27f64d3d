"""Sensitive sections (敏感地段) and must-check points (必查点位): a rule engine the town configures.

A gap next to a school is worse than a gap in a field. The rules here find the
*places* that matter (the road and river sections near schools, markets,
clinics and water intakes, the town entrances, the village borders, the
cross-boundary river sections, the main roads and the market-town core) and
then do three things with them:

1. **Sections layer.** Every place a rule selects becomes one or more rows of
   :attr:`SensitiveResult.sections`: the exact piece of road or river, cut at
   grid borders (each row lies in one grid, or in none; a piece along the
   shared edge of two grids, or in their overlap, is a row for each), with the
   rule, its severity, its ``trigger`` (POI ids, the ids of the villages whose
   border it is, ``town_boundary``, the road class, ``core`` or the
   cross-section id) and ``detail`` (the same in words), village, grid,
   ``owner`` (the grid chief, or who must name one, from
   ``responsibility.staffing``), ``river_chief`` (river rows), and whether it
   is ``covered`` (inside a grid) and ``staffed`` (that grid has a grid chief).
2. **Escalation.** A finding of another kind that lies in a rule's footprint
   takes the rule's severity when that is higher, and the rule's name in
   ``rule``. Its kind, ``finding_id`` and everything else stay; the original
   severity is kept in an extra ``base_severity`` column and the reason is
   appended to ``message``.
3. **Must-check points.** Every POI of a must-check kind gets its grid, grid
   chief and, when it is near a river, its village river chief, in
   :attr:`SensitiveResult.checkpoints`.

Findings are problems, not places
---------------------------------
A sensitive section is *not* a finding because it is sensitive. It becomes a
``sensitive_section`` finding only when something in it is wrong **and** no
finding passed in already says so. A section row has a defect when

* it is not covered (in no grid);
* it is covered by a grid that has no grid chief (not staffed);
* it is a river section whose reach has no village river chief (only when the
  responsibility gives reaches); or
* it is a cross-boundary section one of whose sides has no village river chief.

The defect is already reported when a finding passed in says so at that place:

=====================  ==============================================================
defect                 reported by
=====================  ==============================================================
in no grid             a ``road_uncovered`` or ``area_gap`` sharing at least 1 m
                       (or half the piece, if shorter) with the piece
grid without chief     the ``grid_unstaffed`` of the same ``grid_id``
no river chief         a ``river_unassigned`` sharing at least 1 m with the piece
=====================  ==============================================================

A reported defect escalates the reporting finding instead (the rule's severity
and name). Unreported defects are grouped by (defect, road or river, grid)
across rules, so a place two rules select is still one finding, with the
highest severity of those rules.

The same holds for must-check points: a point in no grid is already a
``poi_uncovered``; a point whose grid has no chief is already a
``grid_unstaffed``; a point next to a reach without a village river chief is
already a ``river_unassigned`` (same ``reach_id`` when the finding has one).
Those findings are escalated (to the ``must_check`` severity, or to ``veto``
for veto kinds) and the checkpoint row names them in ``finding_id``. Only a
problem no finding reports becomes a ``checkpoint_incomplete`` finding.

Escalation footprints
---------------------
A finding of a place kind (:data:`ESCALATED_KINDS`) meets a rule when its
geometry

* ``proximity``, or ``core`` around POIs: comes within ``distance_m`` of one of
  the POIs (an area gap, an unstaffed grid, an uncovered lane near the school);
* ``core`` with a polygon: shares interior with the polygon;
* ``along_river``, ``cross_boundary``, ``road_class``, ``town_border``,
  ``village_border``: shares at least 1 m with one of the rule's sections (a
  line finding lying within 5 cm of it, or a polygon finding containing it);
  a lane merely crossing a main road does not count;
* ``escalate``: is of one of the rule's ``finding_kinds``.

Of all the rules a finding meets, the most severe wins (ties: the first in
rule order); severities are only ever raised.

Veto items (一票否决)
---------------------
A finding becomes ``severity = "veto"`` (and ``gisgrid run`` exits 1) when

* it reports that a POI of a ``veto`` rule's kinds (default ``school`` and
  ``water_intake``) is in no grid or has no grid chief or river chief: the
  ``poi_uncovered``, the ``grid_unstaffed`` of its grid, the
  ``river_unassigned`` of the reach next to it, or the ``checkpoint_incomplete``; or
* it meets a rule named in ``veto_rules`` (default: none).

Rule catalogue (``DEFAULT_RULES``)
----------------------------------
======================  ==============  =====================================================  ========
name                    type            selects                                                severity
======================  ==============  =====================================================  ========
``school_200m``         proximity       roads and rivers within 200 m of a school or           high
                                        kindergarten
``market_clinic_100m``  proximity       roads and rivers within 100 m of a market or clinic    medium
``water_intake_500m``   along_river     the river 500 m up- and downstream of a water intake   high
                                        (chainage along the nearest river within 200 m)
``town_entrance_200m``  town_border     road pieces within 200 m of the town boundary that     medium
                                        reach it (town entrances, 出入口)
``village_border_50m``  village_border  road pieces within 50 m of a border between villages   low
``cross_boundary``      cross_boundary  the river 100 m each side of a cross-boundary section  high
                                        (交界断面, ``responsibility.cross_sections``)
``two_masters``         escalate        ``area_overlap`` and ``road_ambiguous`` findings        high
``main_roads``          road_class      main and secondary roads (主次干道)                     medium
``market_core``         core            roads in the market-town core (集镇): 300 m around     medium
                                        markets, or a polygon (``wkt`` / ``lonlat``)
``must_check``          checkpoint      every POI of ``settings.must_check_kinds``; within 50  high
                                        m of a river or in its corridor it needs a river chief
``veto_points``         veto            schools and water intakes in no grid or without chief  veto
======================  ==============  =====================================================  ========

Keys of a rule table: ``type``, ``severity`` (``veto``/``high``/``medium``/``low``),
``enabled`` (default true), ``description``, and by type:

* ``proximity``: ``kinds``, ``distance_m``, ``layers`` (``roads``/``rivers``, default both);
* ``along_river``: ``kinds``, ``distance_m``, ``snap_m`` (how far a POI may be from its river);
* ``town_border``: ``distance_m``, ``entrances_only`` (only pieces reaching the boundary), ``layers``;
* ``village_border``: ``distance_m``, ``layers``;
* ``cross_boundary``: ``distance_m`` (along the river, each side of the crossing);
* ``escalate``: ``finding_kinds``;
* ``road_class``: ``classes``;
* ``core``: ``kinds`` and ``distance_m`` (around POIs), or ``wkt`` (polygon in the
  analysis CRS) or ``lonlat`` (``[[lon, lat], ...]`` ring in CGCS2000/WGS84), ``layers``;
* ``checkpoint``: ``kinds`` (default ``settings.must_check_kinds``), ``distance_m``
  (nearer a river than this, a point needs a river chief);
* ``veto``: ``kinds``.

Top-level keys of ``[rules]``: ``defaults`` (false: start from no rules) and
``veto_rules`` (rule names). A table named like a shipped rule changes only the
keys it gives (``enabled = false`` switches it off); other names add rules.
POI kinds must be ones gisgrid knows (:data:`POI_KINDS`, ``settings.must_check_kinds``)
or be listed in a ``checkpoint`` rule's ``kinds``.

Example (``gisgrid.toml``)::

    [rules]
    veto_rules = ["water_intake_500m"]   # anything wrong near a water intake fails the assessment

    [rules.school_200m]                  # 学校、幼儿园周边: a wider ring
    distance_m = 300

    [rules.village_border_50m]           # switch a shipped rule off
    enabled = false

    [rules.market_core]                  # 集镇: the town's own outline instead of 300 m around markets
    lonlat = [[121.195, 32.095], [121.207, 32.095], [121.207, 32.104], [121.195, 32.104]]

    [rules.nursing_home_100m]            # a rule of your own
    type = "proximity"
    kinds = ["nursing_home"]
    distance_m = 100
    severity = "medium"

    [rules.must_check]                   # 必查点位, including the new kind
    kinds = ["school", "kindergarten", "market", "clinic", "water_intake", "town_entrance",
             "nursing_home"]

Geometry
--------
Distances are exact: the part of a road or river within ``d`` of a point or a
border is computed per segment in closed form (the segment against the disc
around a point, or the capsule around each nearby border segment), merged
along the line's chainage and cut out as a substring, so a lane 150 m from a
school has a 200 m section of length ``2 * sqrt(200**2 - 150**2)``. Sections
are cut at grid borders the same way: at the chainages where their segments
meet grid edges, each part then placed by its middle point. Candidate pairs
come from box queries of one ``STRtree`` per layer (of its parts, or runs of
up to 16 segments of long ones), narrowed by comparing boxes in numpy before
the exact tests (:mod:`gisgrid.geometry.linework`): no Python loop runs over
features, or pairs of them, in the geometry. The Python loops that remain keep
the books, row by row: over staffing and reach rows, cross-boundary sections,
must-check points and the findings near them, river section rows (their river
chief), section rows (the hash of their ids) and the findings raised or made;
details are made once per distinct trigger. A county (~20k grids, ~50k roads)
takes about as long as the coverage engine, well under a second: see ``benchmarks/bench_sensitive.py``.
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

from gisgrid import settings
from gisgrid.checks.sensitive.checkpoints import CHECKPOINT_COLUMNS, _checkpoint_findings, _checkpoints
from gisgrid.checks.sensitive.context import _arr, _Context, _poi_texts, _rule_pois
from gisgrid.checks.sensitive.escalation import (
    ESCALATED_KINDS,
    _apply,
    _Candidates,
    _defects,
    _Footprint,
    _meets,
    _section_findings,
)
from gisgrid.checks.sensitive.rules import DEFAULT_RULES, POI_KINDS, RULE_TYPES, Rule, parse_rules
from gisgrid.checks.sensitive.sections import SECTION_COLUMNS, _sections
from gisgrid.checks.sensitive.selectors import _BUILDERS, _clip, _core, _Raw
from gisgrid.findings import concat_findings, empty_findings
from gisgrid.geometry.tolerance import Clock
from gisgrid.model import Town

__all__ = [
    "CHECKPOINT_COLUMNS",
    "DEFAULT_RULES",
    "ESCALATED_KINDS",
    "POI_KINDS",
    "RULE_TYPES",
    "SECTION_COLUMNS",
    "Rule",
    "SensitiveResult",
    "analyze_sensitive",
    "parse_rules",
    "summarise_sections",
]

logger = logging.getLogger(__name__)


@dataclass
class SensitiveResult:
    """What :func:`analyze_sensitive` returns.

    Attributes
    ----------
    sections : GeoDataFrame
        One row per piece of road or river a rule selects, cut at grid borders
        (:data:`SECTION_COLUMNS`). A piece on the shared edge of two grids, or
        in their overlap, appears once per grid; pieces two rules select
        appear once per rule.
    findings : GeoDataFrame
        The findings passed in after escalation (same ids; ``base_severity``
        added) plus the new ``sensitive_section`` and ``checkpoint_incomplete``
        rows, sorted.
    checkpoints : GeoDataFrame
        One row per must-check point (:data:`CHECKPOINT_COLUMNS`).
    rules : list of Rule
        The rules applied (disabled ones included).
    """

    sections: gpd.GeoDataFrame
    findings: gpd.GeoDataFrame
    checkpoints: gpd.GeoDataFrame
    rules: list[Rule] = field(default_factory=list)

    def __repr__(self) -> str:
        f = self.findings
        veto = int((f["severity"] == "veto").sum()) if len(f) else 0
        raised = int((f["severity"] != f["base_severity"]).sum()) if "base_severity" in f.columns else 0
        bad = int((~self.checkpoints["ok"].astype(bool)).sum()) if len(self.checkpoints) else 0
        return (f"<SensitiveResult: {len(self.sections)} sections, {raised} findings raised, {veto} veto, "
                f"{len(self.checkpoints)} checkpoints ({bad} incomplete)>")



def analyze_sensitive(
    town: Town,
    findings: gpd.GeoDataFrame | None,
    responsibility: Any,
    *,
    rules: Mapping[str, Any] | Sequence[Rule] | None = None,
    tolerance_m: float = 0.0,
    gaps: np.ndarray | None = None,
    poi_grid: pd.Series | None = None,
) -> SensitiveResult:
    """Apply the sensitive-section rules and the must-check points to a town's findings.

    Parameters
    ----------
    town
        A validated :class:`~gisgrid.model.Town`.
    findings
        Findings of the other checks (the finding schema; the extra columns
        ``poi_id``, ``river_id`` and ``reach_id`` are used when present). Not
        modified.
    responsibility
        A :class:`gisgrid.checks.responsibility.Responsibility` (``staffing``,
        ``reaches``, ``cross_sections`` and ``corridors`` are read). None: the
        staffing table is made from ``town.grid_staff``
        (:func:`~gisgrid.checks.responsibility.staffing_table`), and no river
        chief is checked.
    rules
        The ``[rules]`` config table, or parsed rules; None for :data:`DEFAULT_RULES`.
    tolerance_m
        The digitising tolerance: a section part in no grid but not in one of
        the real ``gaps`` lies in a sliver between hand-drawn grids and belongs
        to the nearest grid within this distance. 0: exact geometry.
    gaps
        The real gaps (polygons) of the grids.
    poi_grid
        The grid of each POI as the coverage check decided it (index like
        ``town.pois``; a POI in a sliver has its nearest grid): used where a
        POI lies in no grid.

    Returns
    -------
    SensitiveResult
        ``sections`` (the layer), ``findings`` (escalated, with the ids they
        came with, plus new ``sensitive_section`` and ``checkpoint_incomplete``
        rows; an extra ``base_severity`` column), ``checkpoints``.

    Raises
    ------
    RuleError
        An invalid rule.
    """
    parsed = parse_rules(rules)
    clock = Clock(logger)
    active = [r for r in parsed if r.enabled]
    order = {r.name: (i, r) for i, r in enumerate(parsed)}
    ctx = _Context(town, responsibility)
    ctx.tolerance_m = float(tolerance_m)
    ctx.gaps = np.empty(0, dtype=object) if gaps is None else np.asarray(gaps, dtype=object)
    if poi_grid is not None and len(poi_grid):
        ctx.poi_grid = {str(p): g for p, g in zip(town.pois["poi_id"], poi_grid.to_numpy(dtype=object), strict=True)
                        if g is not None}
    clock.lap("context: grids, staffing, reaches")
    crs = town.crs
    fin = findings.copy() if findings is not None and len(findings) else empty_findings(crs)
    fin = fin.reset_index(drop=True)
    if fin.crs is not None and not fin.crs.equals(crs):
        fin = fin.to_crs(crs)

    raws: list[_Raw] = []
    footprints: list[_Footprint] = []
    for rule in active:
        poly = None
        if rule.type in _BUILDERS:
            raw = _clip(ctx, _BUILDERS[rule.type](ctx, rule))
        elif rule.type == "core":
            raw, poly = _core(ctx, rule)
            raw = _clip(ctx, raw)
        else:
            continue
        raws.append(raw)
        if rule.type == "proximity" or (rule.type == "core" and poly is None):
            pois = _rule_pois(ctx, rule.kinds)
            texts = _poi_texts(pois)
            footprints.append(_Footprint(rule, points=_arr(pois), texts=np.array(
                [f"within {rule.distance_m:g} m of {texts[str(p)]}" for p in pois["poi_id"]], dtype=object)))
        elif poly is not None:
            footprints.append(_Footprint(rule, polygon=poly))
        else:
            footprints.append(_Footprint(rule, lines=raw.geoms, texts=raw.detail))
        clock.lap(f"rule {rule.name}: {len(raw.geoms)} piece(s), "
                  f"{float(shapely.length(raw.geoms).sum()) if len(raw.geoms) else 0.0:.0f} m")
    sections, missing = _sections(ctx, raws)
    clock.lap(f"{len(sections)} section rows cut at grid borders")

    cand = _Candidates()
    fkind = fin["kind"].to_numpy(dtype=object)
    place = np.flatnonzero(np.isin(fkind, list(ESCALATED_KINDS)))
    pgeoms = _arr(fin)[place]
    pok = ~(shapely.is_missing(pgeoms) | shapely.is_empty(pgeoms))
    place, pgeoms = place[pok], pgeoms[pok]
    for fp in footprints:
        f_idx, reasons = _meets(fp, pgeoms)
        cand.add(place[f_idx], fp.rule, order[fp.rule.name][0], list(reasons))
    for rule in active:
        if rule.type == "escalate":
            hit = np.flatnonzero(np.isin(fkind, list(rule.finding_kinds)))
            cand.add(hit, rule, order[rule.name][0], [rule.description or rule.label()] * len(hit))
    clock.lap("footprints met")

    defects = _defects(ctx, sections, missing, fin, order, cand)
    new_sections = _section_findings(ctx, sections, defects, order)
    clock.lap(f"{len(defects)} unreported section defect(s)")

    check = next((r for r in active if r.type == "checkpoint"), None)
    veto = next((r for r in active if r.type == "veto"), None)
    kinds = list(dict.fromkeys([*((check.kinds or settings.must_check_kinds) if check else ()),
                                *(veto.kinds if veto else ())]))
    near_m = check.distance_m if check is not None and check.distance_m is not None else 50.0
    cp = _checkpoints(ctx, kinds, near_m)
    new_cp = _checkpoint_findings(ctx, cp, fin, check, veto, order, cand)
    clock.lap(f"{len(cp)} checkpoint(s)")

    escalated = _apply(fin, cand)
    for part in (new_sections, new_cp):
        part["base_severity"] = part["severity"].astype(object)
    out = concat_findings([escalated, new_sections, new_cp], crs=crs)
    cp = gpd.GeoDataFrame(cp.drop(columns=["_problems", "_dist"])[list(CHECKPOINT_COLUMNS)], geometry="geometry",
                          crs=crs)
    clock.lap("findings gathered")
    logger.info("sensitive: %d section(s) from %d rule(s), %d new sensitive_section, %d checkpoint(s) "
                "(%d incomplete, %d new checkpoint_incomplete), %d veto item(s)",
                len(sections), len(active), len(new_sections), len(cp), int((~cp["ok"].astype(bool)).sum()),
                len(new_cp), int((out["severity"] == "veto").sum()))
    return SensitiveResult(sections=sections, findings=out, checkpoints=cp, rules=parsed)


def summarise_sections(result: SensitiveResult, town: Town) -> pd.DataFrame:
    """Per village: sensitive sections, how many are covered and staffed, their length, and veto items.

    Parameters
    ----------
    result
        What :func:`analyze_sensitive` returned.
    town
        The town (its villages give the index).

    Returns
    -------
    DataFrame
        Index ``village_id`` (every village), columns ``sections``, ``covered``
        and ``staffed`` (counts of section rows), ``length_m`` (their length)
        and ``veto`` (findings of severity veto in the village).
    """
    idx = pd.Index(town.villages["village_id"].to_numpy(dtype=object), name="village_id")
    s = result.sections
    g = pd.DataFrame({"village_id": s["village_id"].to_numpy(dtype=object), "sections": 1,
                      "covered": s["covered"].astype(int).to_numpy(), "staffed": s["staffed"].astype(int).to_numpy(),
                      "length_m": s["length_m"].astype(float).to_numpy()})
    out = g.groupby("village_id").sum().reindex(idx, fill_value=0)
    out = out.astype({"sections": int, "covered": int, "staffed": int, "length_m": float})
    f = result.findings
    veto = f[f["severity"] == "veto"]
    out["veto"] = veto.groupby("village_id").size().reindex(idx, fill_value=0).astype(int).to_numpy() \
        if len(veto) else 0
    return out[["sections", "covered", "staffed", "length_m", "veto"]]
