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
up to 16 segments of long ones), narrowed by comparing boxes in numpy before the exact
tests; there is no loop over features, and text (details, messages) is made
once per distinct trigger or only for the rows that become findings. A county
(~20k grids, ~50k roads) takes about as long as the coverage engine, well
under a second: see ``benchmarks/bench_sensitive.py``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely import STRtree

from gisgrid import settings
from gisgrid._errors import RuleError
from gisgrid.findings import KINDS, SEVERITY_RANK, concat_findings, empty_findings, make_findings
from gisgrid.geometry import coverage
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

#: POI kinds gisgrid knows besides ``settings.must_check_kinds``.
POI_KINDS: tuple[str, ...] = ("school", "kindergarten", "market", "clinic", "water_intake", "town_entrance")

#: Finding kinds that are about a place and can be escalated by a rule.
ESCALATED_KINDS: frozenset[str] = frozenset({
    "area_gap", "area_overlap", "road_uncovered", "road_ambiguous", "river_unassigned", "grid_unstaffed",
    "poi_uncovered", "checkpoint_incomplete", "sensitive_section",
})

_COMMON_KEYS = ("type", "severity", "enabled", "description")

#: Rule type -> (keys it accepts besides type/severity/enabled/description, keys it requires).
RULE_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "proximity": (("kinds", "distance_m", "layers"), ("kinds", "distance_m")),
    "along_river": (("kinds", "distance_m", "snap_m"), ("kinds", "distance_m")),
    "town_border": (("distance_m", "entrances_only", "layers"), ("distance_m",)),
    "village_border": (("distance_m", "layers"), ("distance_m",)),
    "cross_boundary": (("distance_m",), ("distance_m",)),
    "escalate": (("finding_kinds",), ("finding_kinds",)),
    "road_class": (("classes",), ("classes",)),
    "core": (("kinds", "distance_m", "wkt", "lonlat", "layers"), ()),
    "checkpoint": (("kinds", "distance_m"), ()),
    "veto": (("kinds",), ("kinds",)),
}

#: The shipped rules, in the shape of the config's ``[rules]`` table.
DEFAULT_RULES: dict[str, Any] = {
    "veto_rules": [],
    "school_200m": {"type": "proximity", "kinds": ["school", "kindergarten"], "distance_m": 200.0,
                    "layers": ["roads", "rivers"], "severity": "high", "enabled": True,
                    "description": "学校、幼儿园周边 200 米"},
    "market_clinic_100m": {"type": "proximity", "kinds": ["market", "clinic"], "distance_m": 100.0,
                           "layers": ["roads", "rivers"], "severity": "medium", "enabled": True,
                           "description": "农贸市场、卫生室周边 100 米"},
    "water_intake_500m": {"type": "along_river", "kinds": ["water_intake"], "distance_m": 500.0,
                          "snap_m": 200.0, "severity": "high", "enabled": True,
                          "description": "取水口上下游 500 米"},
    "town_entrance_200m": {"type": "town_border", "distance_m": 200.0, "entrances_only": True,
                           "layers": ["roads"], "severity": "medium", "enabled": True,
                           "description": "镇出入口 200 米"},
    "village_border_50m": {"type": "village_border", "distance_m": 50.0, "layers": ["roads"],
                           "severity": "low", "enabled": True, "description": "村界两侧 50 米"},
    "cross_boundary": {"type": "cross_boundary", "distance_m": 100.0, "severity": "high", "enabled": True,
                       "description": "交界断面上下游 100 米"},
    "two_masters": {"type": "escalate", "finding_kinds": ["area_overlap", "road_ambiguous"],
                    "severity": "high", "enabled": True, "description": "一地两主等同无主"},
    "main_roads": {"type": "road_class", "classes": ["main", "secondary"], "severity": "medium",
                   "enabled": True, "description": "主次干道"},
    "market_core": {"type": "core", "kinds": ["market"], "distance_m": 300.0, "layers": ["roads"],
                    "severity": "medium", "enabled": True, "description": "集镇核心区"},
    "must_check": {"type": "checkpoint", "distance_m": 50.0, "severity": "high", "enabled": True,
                   "description": "必查点位: 网格、网格长、河长"},
    "veto_points": {"type": "veto", "kinds": ["school", "water_intake"], "severity": "veto", "enabled": True,
                    "description": "一票否决: 学校、取水口无网格或无责任人"},
}

#: Columns of :attr:`SensitiveResult.sections`.
SECTION_COLUMNS: tuple[str, ...] = (
    "section_id", "rule", "severity", "trigger", "detail", "layer", "feature_id", "name", "road_class",
    "village_id", "grid_id", "owner", "river_chief", "covered", "staffed", "length_m", "geometry",
)
#: Columns of :attr:`SensitiveResult.checkpoints`.
CHECKPOINT_COLUMNS: tuple[str, ...] = (
    "poi_id", "kind", "name", "village_id", "grid_id", "grid_chief", "river_id", "reach_id", "river_chief", "ok",
    "problem", "severity", "finding_id", "geometry",
)

_LAYER_NAMES = ("roads", "rivers")
_SHARE_TOL_M = 0.05  # a line finding within this of a section lies on it
_MIN_SHARED_M = 1.0  # a finding meets a line footprint when they share this much
_TOUCH_M = 1.0  # a piece reaching within this of the town boundary is an entrance
_ON_BORDER_M = 1.0  # a village border segment this close to the town boundary is the town boundary
_NEAR_SLACK_M = 1.0  # a river_unassigned this much farther than the nearest reach still reports a checkpoint's reach
_RUN = 4  # connected target segments queried as one box in _Lines.within
_CHUNK = 16  # consecutive segments of a line indexed as one box (_Lines.chunks)
_BOX_SLACK_M = 1e-6  # boxes grown by this before they are compared: candidate pairs are never lost to rounding
_LAYER_LABEL = {"roads": "road", "rivers": "river"}
_CLASS_ZH = {"main": "主干道", "secondary": "次干道", "village": "村道", "lane": "小巷农路"}


# ============================================================================ rules
@dataclass(frozen=True)
class Rule:
    """One sensitive-section rule, validated.

    Attributes
    ----------
    name : str
        The rule's name (its key under ``[rules]``); written in ``rule`` of findings and sections.
    type : str
        One of :data:`RULE_TYPES`.
    severity : str
        Severity of what it selects (``veto`` > ``high`` > ``medium`` > ``low``).
    enabled : bool
        False switches the rule off.
    distance_m : float or None
        Radius, distance along the river, or border width, in metres.
    kinds : tuple of str
        POI kinds it is about (empty for a ``checkpoint`` rule: ``settings.must_check_kinds``).
    layers : tuple of str
        ``roads`` and/or ``rivers``: the lines it selects sections of.
    classes : tuple of str
        Road classes (``road_class`` rules).
    finding_kinds : tuple of str
        Finding kinds it escalates (``escalate`` rules).
    entrances_only : bool
        ``town_border``: keep only pieces that reach the boundary.
    snap_m : float or None
        ``along_river``: the farthest a POI may be from its river (default 200 m).
    polygon_wkt : str or None
        ``core``: the polygon, as WKT in the analysis CRS.
    lonlat : tuple of (lon, lat) or None
        ``core``: the polygon's ring in CGCS2000 / WGS84 degrees.
    veto : bool
        Named in ``veto_rules``: whatever it meets becomes a veto item.
    description : str
        Free text for reports.
    """

    name: str
    type: str
    severity: str
    enabled: bool = True
    distance_m: float | None = None
    kinds: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    finding_kinds: tuple[str, ...] = ()
    entrances_only: bool = True
    snap_m: float | None = None
    polygon_wkt: str | None = None
    lonlat: tuple[tuple[float, float], ...] | None = None
    veto: bool = False
    description: str = ""

    @property
    def effective_severity(self) -> str:
        """``veto`` for a rule in ``veto_rules``, else :attr:`severity`."""
        return "veto" if self.veto else self.severity

    def label(self) -> str:
        """A short human description, e.g. ``'within 200 m of school/kindergarten'``."""
        d = f"{self.distance_m:g} m" if self.distance_m is not None else ""
        kinds = "/".join(self.kinds)
        return {
            "proximity": f"within {d} of {kinds}",
            "along_river": f"within {d} along the river of {kinds}",
            "town_border": f"within {d} of the town boundary (town entrance, 出入口)",
            "village_border": f"within {d} of a village border",
            "cross_boundary": f"within {d} of a cross-boundary river section (交界断面)",
            "escalate": f"{'/'.join(self.finding_kinds)}: two masters is as bad as none",
            "road_class": f"on a {'/'.join(self.classes)} road (主次干道)",
            "core": "in the market-town core (集镇)",
            "checkpoint": "must-check point (必查点位)",
            "veto": "veto item (一票否决)",
        }[self.type]


def _fail(name: str, what: str, fix: str) -> RuleError:
    return RuleError(f"[rules.{name}] {what}", fix=fix)


def _number(name: str, key: str, value: Any, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        raise _fail(name, f"{key} must be a number of metres, not {shown}.",
                    f"write {key} = {example} (a bare number, no quotes or units) under [rules.{name}]")
    if not math.isfinite(float(value)) or value < 0:
        raise _fail(name, f"{key} must be a distance of 0 m or more, not {value!r}.",
                    f"write {key} = {example} under [rules.{name}]")
    return float(value)


def _names(name: str, key: str, value: Any, allowed: Sequence[str] | None, what: str,
           example: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(name, f"{key} must be a non-empty list of {what}s, not {value!r}.",
                    f"write {key} = {example} under [rules.{name}]")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            hint = _did_you_mean(bad, allowed)
            extra = " or list a kind of your own under [rules.must_check] kinds" if what == "POI kind" else ""
            raise _fail(name, f"unknown {what} {bad} in {key}{hint}.", f"use any of {sorted(allowed)}{extra}")
    return tuple(dict.fromkeys(value))


def _bool(name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"{key} must be true or false, not {value!r}.", f"write {key} = true or {key} = false")
    return value


def _parse_polygon(name: str, spec: Mapping[str, Any]) -> tuple[str | None, tuple[tuple[float, float], ...] | None]:
    wkt, lonlat = spec.get("wkt"), spec.get("lonlat")
    if wkt is not None and lonlat is not None:
        raise _fail(name, "gives both wkt and lonlat.", "keep one of them")
    if wkt is not None:
        example = 'write wkt = "POLYGON ((x1 y1, x2 y2, x3 y3, x1 y1))" in the analysis CRS (metres)'
        try:
            geom = shapely.from_wkt(str(wkt))
        except shapely.errors.GEOSException as exc:
            raise _fail(name, f"wkt is not valid WKT ({exc}).", example) from None
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            raise _fail(name, f"wkt must be a Polygon or MultiPolygon, not {getattr(geom, 'geom_type', None)}.",
                        example)
        return str(wkt), None
    if lonlat is not None:
        ok = isinstance(lonlat, (list, tuple)) and len(lonlat) >= 3 and all(
            isinstance(p, (list, tuple)) and len(p) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p) for p in lonlat)
        ok = ok and all(-180 <= p[0] <= 180 and -90 <= p[1] <= 90 for p in lonlat)
        if not ok:
            raise _fail(name, "lonlat must be a ring of at least 3 [longitude, latitude] pairs in degrees.",
                        "write lonlat = [[121.19, 32.09], [121.21, 32.09], [121.21, 32.11]]")
        ring = tuple((float(p[0]), float(p[1])) for p in lonlat)
        if not shapely.Polygon(ring).is_valid:
            raise _fail(name, "lonlat ring crosses itself.", "list the corners in order around the outline")
        return None, ring
    return None, None


def _did_you_mean(values: Any, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the first of ``values`` close to one of ``choices``; '' when none is."""
    for value in [values] if isinstance(values, str) else values:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return ""


def _parse_one(name: str, spec: Mapping[str, Any], known_kinds: Sequence[str]) -> Rule:
    rtype = spec.get("type")
    if rtype is None:
        raise _fail(name, "has no type.", f'add type = "proximity" (or one of {sorted(RULE_TYPES)})')
    if rtype not in RULE_TYPES:
        hint = _did_you_mean(str(rtype), list(RULE_TYPES))
        raise _fail(name, f"has unknown type {rtype!r}{hint}.", f"use one of {sorted(RULE_TYPES)}")
    accepted, required = RULE_TYPES[rtype]
    unknown = sorted(set(spec) - set(_COMMON_KEYS) - set(accepted))
    if unknown:
        allowed = [*_COMMON_KEYS, *accepted]
        hint = _did_you_mean(unknown, allowed)
        raise _fail(name, f"has unknown key(s) {unknown} for a {rtype} rule{hint}.", f"use only {allowed}")
    missing = [k for k in required if k not in spec]
    if missing:
        raise _fail(name, f"lacks {missing} (a {rtype} rule needs {list(required)}).",
                    f"add {missing[0]} under [rules.{name}]")
    severity = spec.get("severity", "veto" if rtype == "veto" else None)
    if severity is None:
        raise _fail(name, "has no severity.", f'add severity = "high" (one of {list(settings.severities)})')
    if severity not in SEVERITY_RANK:
        hint = _did_you_mean(str(severity), list(SEVERITY_RANK))
        raise _fail(name, f"has unknown severity {severity!r}{hint}.", f"use one of {list(settings.severities)}")
    if rtype == "veto" and severity != "veto":
        raise _fail(name, f"is a veto rule but has severity {severity!r}.", 'remove severity (it is always "veto")')
    kw: dict[str, Any] = {"name": name, "type": rtype, "severity": severity}
    if "enabled" in spec:
        kw["enabled"] = _bool(name, "enabled", spec["enabled"])
    if "description" in spec:
        kw["description"] = str(spec["description"])
    if "distance_m" in spec:
        kw["distance_m"] = _number(name, "distance_m", spec["distance_m"], "200")
    if "snap_m" in spec:
        kw["snap_m"] = _number(name, "snap_m", spec["snap_m"], "200")
    if "kinds" in spec:
        kw["kinds"] = _names(name, "kinds", spec["kinds"], known_kinds, "POI kind", '["school", "kindergarten"]')
    if "layers" in spec:
        kw["layers"] = _names(name, "layers", spec["layers"], _LAYER_NAMES, "layer", '["roads", "rivers"]')
    elif rtype == "proximity":
        kw["layers"] = _LAYER_NAMES
    elif rtype in ("town_border", "village_border", "core"):
        kw["layers"] = ("roads",)
    if "classes" in spec:
        kw["classes"] = _names(name, "classes", spec["classes"], settings.road_classes, "road class",
                               '["main", "secondary"]')
    if "finding_kinds" in spec:
        kw["finding_kinds"] = _names(name, "finding_kinds", spec["finding_kinds"], sorted(KINDS), "finding kind",
                                     '["area_overlap", "road_ambiguous"]')
    if "entrances_only" in spec:
        kw["entrances_only"] = _bool(name, "entrances_only", spec["entrances_only"])
    if rtype == "core":
        kw["polygon_wkt"], kw["lonlat"] = _parse_polygon(name, spec)
        if kw["polygon_wkt"] is None and kw["lonlat"] is None and not ("kinds" in spec and "distance_m" in spec):
            raise _fail(name, "a core rule needs a polygon (wkt or lonlat) or kinds and distance_m.",
                        'write kinds = ["market"] and distance_m = 300, or lonlat = [[lon, lat], ...]')
    return Rule(**kw)


def parse_rules(rules: Mapping[str, Any] | Sequence[Rule] | None) -> list[Rule]:
    """Validate the ``[rules]`` config table and return the rules (disabled ones included).

    Parameters
    ----------
    rules
        The ``[rules]`` table: rule tables by name, plus optional ``defaults``
        (bool, default true: start from :data:`DEFAULT_RULES`) and
        ``veto_rules`` (rule names). A table named like a shipped rule
        overrides only the keys it gives (unless it changes the ``type``). None
        means the shipped rules. A list of :class:`Rule` is returned as is.

    Returns
    -------
    list of Rule
        In table order (shipped rules first).

    Raises
    ------
    RuleError
        Naming the rule and the fix: unknown type, key, severity, POI kind,
        layer, road class or finding kind; a negative or non-numeric distance;
        a bad polygon; a ``veto_rules`` entry that names no rule.
    """
    if rules is not None and not isinstance(rules, Mapping):
        if isinstance(rules, Sequence) and not isinstance(rules, str) and all(isinstance(r, Rule) for r in rules):
            return list(rules)
        msg = f"[rules] must be a table of rules, not {type(rules).__name__}."
        raise RuleError(msg, fix="write [rules.NAME] tables (see gisgrid.sensitive.DEFAULT_RULES)")
    table = dict(rules or {})
    use_defaults = table.pop("defaults", True)
    if not isinstance(use_defaults, bool):
        msg = f"[rules] defaults must be true or false, not {use_defaults!r}."
        raise RuleError(msg, fix="write defaults = false to start from no rules, or leave it out")
    base = copy.deepcopy(DEFAULT_RULES) if use_defaults else {"veto_rules": []}
    veto_names = table.pop("veto_rules", base.pop("veto_rules"))
    if isinstance(veto_names, str):
        veto_names = [veto_names]
    if not isinstance(veto_names, (list, tuple)) or not all(isinstance(v, str) for v in veto_names):
        msg = f"[rules] veto_rules must be a list of rule names, not {veto_names!r}."
        raise RuleError(msg, fix='write veto_rules = ["water_intake_500m"]')
    merged: dict[str, dict[str, Any]] = dict(base)
    for name, spec in table.items():
        if not isinstance(spec, Mapping):
            raise _fail(str(name), f"must be a table, not {spec!r}.",
                        f"write it as a table [rules.{name}] with type, severity and its keys "
                        "(the only other keys of [rules] are defaults and veto_rules)")
        spec = dict(spec)
        old = merged.get(name)
        merged[name] = {**old, **spec} if old is not None and spec.get("type", old["type"]) == old["type"] else spec
    known = set(POI_KINDS) | set(settings.must_check_kinds)
    for spec in merged.values():
        if spec.get("type") == "checkpoint" and isinstance(spec.get("kinds"), (list, tuple)):
            known |= {k for k in spec["kinds"] if isinstance(k, str) and k}
    out = [_parse_one(str(name), spec, sorted(known)) for name, spec in merged.items()]
    names = {r.name for r in out}
    bad = [v for v in veto_names if v not in names]
    if bad:
        msg = f"[rules] veto_rules names {bad}, which are not rules."
        raise RuleError(msg, fix=f"use rule names: {sorted(names)}")
    return [replace(r, veto=True) if r.name in veto_names else r for r in out]


# ============================================================================ result
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


# ============================================================================ line geometry
class _Lines:
    """A line layer exploded into parts and segments, with chainage, for exact distance work."""

    def __init__(self, geoms: np.ndarray) -> None:
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        pos = np.flatnonzero(ok)
        merged = geoms[pos].copy()
        multi = shapely.get_type_id(merged) == 5
        if multi.any():
            merged[multi] = shapely.line_merge(merged[multi], directed=True)
        simple = bool(len(merged)) and bool((shapely.get_type_id(merged) == 1).all()) and not bool(
            (shapely.has_z(merged) | shapely.has_m(merged)).any())
        part_len = None
        if simple:  # plain 2D LineStrings (the usual case): they are their own parts
            length = shapely.length(merged)
            keep = length > 0
            self.owner = pos[keep]
            self.parts = merged[keep]
            part_len = length[keep]
            coords, vpart = shapely.get_coordinates(self.parts, return_index=True)
        else:
            parts, idx = shapely.get_parts(merged, return_index=True)
            keep = np.isin(shapely.get_type_id(parts), (1, 2)) & (shapely.length(parts) > 0)
            self.owner = pos[idx[keep]]
            if keep.any():  # LinearRings become LineStrings
                xy, at = shapely.get_coordinates(parts[keep], return_index=True)
                self.parts = shapely.linestrings(xy, indices=at)
                coords, vpart = xy, at
            else:
                self.parts = np.empty(0, dtype=object)
                coords, vpart = np.empty((0, 2)), np.empty(0, dtype=np.intp)
        self.vxy = coords
        same = vpart[1:] == vpart[:-1]
        step = np.where(same, np.hypot(*(coords[1:] - coords[:-1]).T), 0.0) if len(coords) else np.empty(0)
        cum = np.concatenate([[0.0], np.cumsum(step)])
        # A key increasing along all parts: chainage plus the part number (parts 1 m apart).
        self.vkey = cum + vpart
        first = np.flatnonzero(np.concatenate([[True], ~same])) if len(coords) else np.empty(0, np.intp)
        self.base = self.vkey[first]
        self.part_len = (part_len if part_len is not None else shapely.length(self.parts)).astype(float)
        seg = np.flatnonzero(same & (step > 0))
        self.seg_a = coords[seg]
        self.seg_b = coords[seg + 1]
        self.seg_part = vpart[seg]
        self.seg_ch0 = self.vkey[seg] - self.base[self.seg_part]
        self.seg_len = step[seg]
        self._part_tree: STRtree | None = None
        self._chunks: tuple[STRtree, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._seg_box: np.ndarray | None = None
        self._seg_off: np.ndarray | None = None
        self._seg_n: np.ndarray | None = None

    @property
    def part_tree(self) -> STRtree:
        """STRtree of the parts (built once)."""
        if self._part_tree is None:
            self._part_tree = STRtree(self.parts)
        return self._part_tree

    @property
    def seg_box(self) -> np.ndarray:
        """(xmin, ymin, xmax, ymax) of each segment (computed once)."""
        if self._seg_box is None:
            self._seg_box = np.concatenate([np.minimum(self.seg_a, self.seg_b), np.maximum(self.seg_a, self.seg_b)],
                                           axis=1)
        return self._seg_box

    @property
    def seg_off(self) -> np.ndarray:
        """Position of each part's first segment (segments are grouped by part, in part order)."""
        if self._seg_off is None:
            self._seg_n = np.bincount(self.seg_part, minlength=len(self.parts))
            self._seg_off = np.concatenate([[0], np.cumsum(self._seg_n)[:-1]]).astype(np.intp)
        return self._seg_off

    @property
    def seg_n(self) -> np.ndarray:
        """Number of segments of each part."""
        if self._seg_n is None:
            _ = self.seg_off
        return self._seg_n

    def chunks(self) -> tuple[STRtree, np.ndarray, np.ndarray, np.ndarray]:
        """Runs of at most ``_CHUNK`` consecutive segments of a part: their boxes' tree, first segment, count, box.

        A part of at most ``_CHUNK`` segments is one run, indexed by the part itself.
        """
        if self._chunks is None:
            n = self.seg_n
            k = (n + _CHUNK - 1) // _CHUNK
            if not len(n) or (k <= 1).all():
                first, count = self.seg_off[n > 0], n[n > 0]
                chunk_part = np.flatnonzero(n > 0)
            else:
                chunk_part = np.repeat(np.arange(len(n)), k)
                j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
                first = self.seg_off[chunk_part] + j * _CHUNK
                count = np.minimum(n[chunk_part] - j * _CHUNK, _CHUNK)
            box = self.seg_box
            bounds = np.concatenate([np.minimum.reduceat(box[:, :2], first), np.maximum.reduceat(box[:, 2:], first)],
                                    axis=1) if len(first) else np.empty((0, 4))
            whole = count == self.seg_n[chunk_part]
            geoms = np.empty(len(first), dtype=object)
            geoms[whole] = self.parts[chunk_part[whole]]  # a whole part: its own geometry
            if (~whole).any():  # a run of a long part: the diagonal of its box
                geoms[~whole] = shapely.linestrings(bounds[~whole].reshape(-1, 2, 2))
            tree = self.part_tree if whole.all() and len(first) == len(self.parts) else STRtree(geoms)
            self._chunks = (tree, first, count, bounds)
        return self._chunks

    def near_pairs(self, pts: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
        """(point, part) pairs, sorted, whose boxes come within ``distance``: candidates for a GEOS test.

        Every part within ``distance`` of a point is among them (the boxes are
        those of runs of segments, grown by a hair).
        """
        if not len(pts) or not len(self.seg_a):
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
        ok = np.flatnonzero(~(shapely.is_missing(pts) | shapely.is_empty(pts)))  # the others have no pairs
        x, y = shapely.get_x(pts[ok]), shapely.get_y(pts[ok])
        grow = distance + _BOX_SLACK_M
        tree, c_first, _, _ = self.chunks()
        boxes = shapely.linestrings(np.stack([np.c_[x - grow, y - grow], np.c_[x + grow, y + grow]], axis=1))
        p_idx, c_idx = tree.query(boxes)
        p_idx = ok[p_idx]
        key = np.unique(p_idx.astype(np.int64) * len(self.parts) + self.seg_part[c_first[c_idx]])
        return (key // len(self.parts)).astype(np.intp), (key % len(self.parts)).astype(np.intp)

    def within(self, ca: np.ndarray, cb: np.ndarray, labels: np.ndarray, distance: float) -> _Intervals:
        """Chainage intervals of the parts lying within ``distance`` of the segments ``ca``-``cb``.

        Candidates come from one box query: runs of up to ``_RUN`` connected
        target segments (a point is a run of its own), their box grown by
        ``distance``, against runs of up to ``_CHUNK`` segments of the parts
        (:meth:`chunks`); expanded to (target segment, line segment) pairs
        whose boxes come within ``distance``. Each pair's interval is then
        exact (:func:`_capsule_interval`).

        Parameters
        ----------
        ca, cb
            (n, 2) end points of the target segments; ``ca == cb`` is a point.
        labels
            (n,) label of each target (POI id, village id, ...).
        distance
            Metres.

        Returns
        -------
        _Intervals
            ``part``, ``start``, ``end``, ``trigger`` (sorted unique labels joined with ``','``),
            one per maximal interval.
        """
        if not len(ca) or not len(self.seg_a):
            return _no_intervals()
        ca = np.asarray(ca, dtype=float)
        cb = np.asarray(cb, dtype=float)
        n = len(ca)
        degenerate = np.all(ca == cb, axis=1)
        # runs of connected segments (a point is a run of its own), at most _RUN long
        brk = np.ones(n, dtype=bool)
        brk[1:] = ~np.all(cb[:-1] == ca[1:], axis=1) | degenerate[1:] | degenerate[:-1]
        first = np.flatnonzero(brk)
        k = np.arange(n) - first[np.cumsum(brk) - 1]
        brk |= k % _RUN == 0
        first = np.flatnonzero(brk)
        run_n = np.diff(np.append(first, n))
        # each target's box grown by the distance (and a hair, so that rounding never drops a pair GEOS
        # would call within the distance); each run's box, as a diagonal line: the tree compares boxes only
        grow = distance + _BOX_SLACK_M
        t_box = np.concatenate([np.minimum(ca, cb) - grow, np.maximum(ca, cb) + grow], axis=1)
        lo_run = np.minimum.reduceat(t_box[:, :2], first)
        hi_run = np.maximum.reduceat(t_box[:, 2:], first)
        targets = shapely.linestrings(np.stack([lo_run, hi_run], axis=1))
        tree, c_first, c_count, c_bounds = self.chunks()
        r_idx, c_idx = tree.query(targets)
        if not len(r_idx):
            return _no_intervals()
        # (target segment, run of line segments) pairs whose boxes come within the distance
        t_idx, which = _ranges(first[r_idx], run_n[r_idx])
        c_idx = c_idx[which]
        tb, lb = t_box[t_idx], c_bounds[c_idx]
        near = (lb[:, 0] <= tb[:, 2]) & (lb[:, 1] <= tb[:, 3]) & (tb[:, 0] <= lb[:, 2]) & (tb[:, 1] <= lb[:, 3])
        t_idx, c_idx, tb = t_idx[near], c_idx[near], tb[near]
        # (target segment, line segment) pairs likewise
        cnt = c_count[c_idx]
        s_idx, which = _ranges(c_first[c_idx], cnt)
        sb = self.seg_box[s_idx]
        near = ((sb[:, 0] <= np.repeat(tb[:, 2], cnt)) & (sb[:, 1] <= np.repeat(tb[:, 3], cnt))
                & (np.repeat(tb[:, 0], cnt) <= sb[:, 2]) & (np.repeat(tb[:, 1], cnt) <= sb[:, 3]))
        s_idx, t_idx = s_idx[near], t_idx[which[near]]
        lo, hi = _capsule_interval(self.seg_a[s_idx], self.seg_b[s_idx], ca[t_idx], cb[t_idx], distance)
        ok = np.isfinite(lo) & (hi > lo)
        s_idx, t_idx, lo, hi = s_idx[ok], t_idx[ok], lo[ok], hi[ok]
        start = self.seg_ch0[s_idx] + lo * self.seg_len[s_idx]
        end = self.seg_ch0[s_idx] + hi * self.seg_len[s_idx]
        return self.merge(self.seg_part[s_idx], start, end, np.asarray(labels, dtype=object)[t_idx])

    def merge(self, part: np.ndarray, start: np.ndarray, end: np.ndarray, labels: np.ndarray) -> _Intervals:
        """Merge overlapping or touching intervals per part and join their labels."""
        if not len(part):
            return _no_intervals()
        ks = self.base[part] + start
        ke = self.base[part] + end
        order = np.lexsort((ks, part))
        part, ks, ke, labels = part[order], ks[order], ke[order], labels[order]
        run = np.maximum.accumulate(ke)
        new = np.ones(len(part), dtype=bool)
        new[1:] = (ks[1:] > run[:-1] + 1e-7) | (part[1:] != part[:-1])
        gid = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        g_end = np.maximum.reduceat(ke, starts)
        p0 = part[starts]
        start = np.maximum(ks[starts] - self.base[p0], 0.0)
        end = np.minimum(g_end - self.base[p0], self.part_len[p0])
        trigger = _join_per_group(gid, labels, len(starts))
        keep = (end - start) > 1e-6
        return _Intervals(p0[keep], start[keep], end[keep], trigger[keep])

    def substrings(self, part: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The pieces of ``parts[part]`` between chainages ``start`` < ``end`` (exact, vectorised)."""
        if not len(part):
            return np.empty(0, dtype=object)
        gs = self.base[part] + start
        ge = self.base[part] + end
        last = len(self.vkey) - 1
        a = np.clip(np.searchsorted(self.vkey, gs, side="right"), 1, last)
        b = np.clip(np.searchsorted(self.vkey, ge, side="left"), 1, last)
        ps = _lerp(self.vxy[a - 1], self.vxy[a], self.vkey[a - 1], self.vkey[a], gs)
        pe = _lerp(self.vxy[b - 1], self.vxy[b], self.vkey[b - 1], self.vkey[b], ge)
        k = np.maximum(b - a, 0)
        n = k + 2
        offs = np.concatenate([[0], np.cumsum(n)[:-1]])
        out = np.empty((int(n.sum()), 2))
        out[offs] = ps
        out[offs + k + 1] = pe
        rows = np.repeat(np.arange(len(part)), k)
        within = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
        out[offs[rows] + 1 + within] = self.vxy[a[rows] + within]
        return shapely.linestrings(out, indices=np.repeat(np.arange(len(part)), n))


def _ranges(first: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``first[i], first[i] + 1, ... first[i] + count[i] - 1`` one after another, and the ``i`` of each."""
    which = np.repeat(np.arange(len(count)), count)
    return np.arange(len(which)) + np.repeat(first - (np.cumsum(count) - count), count), which


def _join_per_group(gid: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique labels of each group joined with ``','`` (groups numbered 0..n-1, all non-empty)."""
    codes, uniq = pd.factorize(np.asarray(labels, dtype=object), use_na_sentinel=False)
    # the distinct labels as text, sorted (distinct labels with the same text are one)
    text = np.asarray(uniq, dtype=object).astype(str)
    text_code, text_uniq = pd.factorize(text)
    order = np.argsort(np.asarray(text_uniq, dtype=str), kind="stable")
    m = max(len(order), 1)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    key = np.unique(np.asarray(gid, dtype=np.int64) * m + rank[text_code[codes]])
    g = key // m
    values = np.asarray(text_uniq, dtype=object)[order][key % m]
    counts = np.bincount(g, minlength=n)
    first = np.searchsorted(g, np.arange(n))
    out = values[np.minimum(first, len(values) - 1)].copy()
    for j in range(1, int(counts.max(initial=1))):  # intervals that several POIs or borders reach
        more = np.flatnonzero(counts > j)
        out[more] = out[more] + "," + values[first[more] + j]
    return out


@dataclass
class _Intervals:
    """Chainage intervals ``[start, end]`` of line parts, with the trigger (labels) of each."""

    part: np.ndarray
    start: np.ndarray
    end: np.ndarray
    trigger: np.ndarray

    def __len__(self) -> int:
        return len(self.part)


def _no_intervals() -> _Intervals:
    return _Intervals(np.empty(0, dtype=np.intp), np.empty(0), np.empty(0), np.empty(0, dtype=object))


def _lerp(p0: np.ndarray, p1: np.ndarray, k0: np.ndarray, k1: np.ndarray, k: np.ndarray) -> np.ndarray:
    span = k1 - k0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(span > 0, (k - k0) / np.where(span > 0, span, 1.0), 0.0)
    return p0 + np.clip(t, 0.0, 1.0)[:, None] * (p1 - p0)


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u, v)


def _capsule_interval(A: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray,
                      d: float) -> tuple[np.ndarray, np.ndarray]:
    """Parameter interval ``[lo, hi]`` of the segments A→B lying within ``d`` of the segments C–D.

    The points within ``d`` of a segment form a capsule (two discs and a
    rectangle), which is convex, so its intersection with a segment is one
    interval: the hull of the intervals cut by the discs (a quadratic) and by
    the rectangle (Liang-Barsky). ``lo = inf`` where there is none.
    """
    ax, ay = A[:, 0], A[:, 1]
    abx, aby = B[:, 0] - ax, B[:, 1] - ay
    a = abx * abx + aby * aby
    lo = np.full(len(A), np.inf)
    hi = np.full(len(A), -np.inf)
    two_a = 2.0 * np.where(a > 0, a, 1.0)
    point = (C[:, 0] == D[:, 0]) & (C[:, 1] == D[:, 1])
    for P, rows in ((C, slice(None)), (D, np.flatnonzero(~point))):  # a point target: one disc
        fx, fy = ax[rows] - P[rows, 0], ay[rows] - P[rows, 1]
        ab_x, ab_y, a_, two = abx[rows], aby[rows], a[rows], two_a[rows]
        b = 2.0 * (fx * ab_x + fy * ab_y)
        c = (fx * fx + fy * fy) - d * d
        disc = b * b - 4.0 * a_ * c
        ok = (disc >= 0) & (a_ > 0)
        sq = np.sqrt(np.where(ok, disc, 0.0))
        t1 = np.maximum((-b - sq) / two, 0.0)
        t2 = np.minimum((-b + sq) / two, 1.0)
        hit = ok & (t1 <= t2)
        lo[rows] = np.where(hit, np.minimum(lo[rows], t1), lo[rows])
        hi[rows] = np.where(hit, np.maximum(hi[rows], t2), hi[rows])
    rows = np.flatnonzero(~point)
    cdx, cdy = D[rows, 0] - C[rows, 0], D[rows, 1] - C[rows, 1]
    L = np.hypot(cdx, cdy)
    rows, cdx, cdy, L = rows[L > 0], cdx[L > 0], cdy[L > 0], L[L > 0]
    if not len(rows):
        return lo, hi
    ux, uy = cdx / L, cdy / L
    vx, vy = -uy, ux
    acx, acy = ax[rows] - C[rows, 0], ay[rows] - C[rows, 1]
    ab_x, ab_y = abx[rows], aby[rows]
    u0, du = acx * ux + acy * uy, ab_x * ux + ab_y * uy
    v0, dv = acx * vx + acy * vy, ab_x * vx + ab_y * vy
    tlo = np.zeros(len(rows))
    thi = np.ones(len(rows))
    ok = np.ones(len(rows), dtype=bool)
    for p, q in ((-du, u0), (du, L - u0), (-dv, v0 + d), (dv, d - v0)):
        zero = np.abs(p) < 1e-12
        ok &= ~(zero & (q < 0))
        r = q / np.where(zero, 1.0, p)
        tlo = np.where(~zero & (p < 0), np.maximum(tlo, r), tlo)
        thi = np.where(~zero & (p > 0), np.minimum(thi, r), thi)
    hit = ok & (tlo <= thi)
    lo[rows] = np.where(hit, np.minimum(lo[rows], tlo), lo[rows])
    hi[rows] = np.where(hit, np.maximum(hi[rows], thi), hi[rows])
    return lo, hi


def _segments_of(geom: Any) -> tuple[np.ndarray, np.ndarray]:
    """End points (a, b) of every segment of a linear geometry or array of them."""
    geoms = np.atleast_1d(np.asarray(geom, dtype=object))
    coords, idx = shapely.get_coordinates(shapely.get_parts(geoms), return_index=True)
    if len(coords) < 2:
        return np.empty((0, 2)), np.empty((0, 2))
    same = np.flatnonzero(idx[1:] == idx[:-1])
    return coords[same], coords[same + 1]


def _lines_only(geoms: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explode to LineStrings with length and merge the contiguous ones per owner."""
    if not len(geoms):
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    parts, idx = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) > 0)
    parts, own = parts[keep], np.asarray(owner)[idx[keep]]
    if not len(parts):
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    uniq, inv = np.unique(own, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    merged = shapely.line_merge(shapely.multilinestrings(parts[order], indices=inv[order]))
    pieces, j = shapely.get_parts(merged, return_index=True)
    keep = shapely.length(pieces) > 0
    return pieces[keep], uniq[j[keep]]


def _arr(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    values = frame.geometry.values if isinstance(frame, gpd.GeoDataFrame) else frame.values
    return np.asarray(values, dtype=object)


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _texts(values: np.ndarray) -> np.ndarray:
    """:func:`_text` of each value (vectorised when the values are text)."""
    arr = np.asarray(values, dtype=object)
    if not len(arr) or pd.api.types.infer_dtype(arr, skipna=True) != "string":
        return np.array([_text(v) for v in arr], dtype=object)
    na = pd.isna(arr)
    out = np.full(len(arr), None, dtype=object)
    out[~na] = [v.strip() or None for v in arr[~na].tolist()]
    for i in np.flatnonzero(na):  # None, NaN, NA are None already; anything else missing: as _text says
        v = arr[i]
        if not (v is None or v is pd.NA or isinstance(v, float)):
            out[i] = _text(v)
    return out


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return frame[name].to_numpy(dtype=object)
    return np.full(len(frame), None, dtype=object)


# ============================================================================ context
def _frame(responsibility: Any, name: str) -> pd.DataFrame | None:
    frame = getattr(responsibility, name, None) if responsibility is not None else None
    return frame if isinstance(frame, pd.DataFrame) else None


class _Context:
    """Per-call caches: the town's line layers, grids, staffing and river chiefs."""

    def __init__(self, town: Town, responsibility: Any) -> None:
        self.town = town
        self.crs = town.crs
        self.extent = town.extent
        shapely.prepare(self.extent)
        self._lines: dict[str, _Lines] = {}
        self.pois_of: dict[tuple[str, ...], gpd.GeoDataFrame] = {}
        self.grids = town.grids.reset_index(drop=True)
        self.grid_geoms = _arr(self.grids)
        shapely.prepare(self.grid_geoms)
        self.grid_tree = STRtree(self.grid_geoms)
        if len(self.grid_geoms) and (shapely.get_type_id(self.grid_geoms) == 3).all() and not (
                shapely.get_num_interior_rings(self.grid_geoms) > 0).any():
            # plain polygons (the usual case): their coordinates are their one ring
            xy, at = shapely.get_coordinates(self.grid_geoms, return_index=True)
            ring_grid = np.arange(len(self.grid_geoms))
        else:
            rings, ring_grid = shapely.get_parts(shapely.boundary(self.grid_geoms), return_index=True)
            xy, at = shapely.get_coordinates(rings, return_index=True)
        edge = np.flatnonzero(at[1:] == at[:-1])
        self.grid_edge_a, self.grid_edge_b = xy[edge], xy[edge + 1]  # grouped by grid, in grid order
        self.grid_edge_n = np.bincount(ring_grid[at[edge]], minlength=len(self.grid_geoms))
        self.grid_edge_off = np.concatenate([[0], np.cumsum(self.grid_edge_n)[:-1]])
        self.grid_edge_box_grown = np.concatenate([np.minimum(self.grid_edge_a, self.grid_edge_b),
                                                   np.maximum(self.grid_edge_a, self.grid_edge_b) + 1e-7], axis=1)
        self.grid_bounds = shapely.bounds(self.grid_geoms).reshape(-1, 4)
        self.village_geoms = _arr(town.villages)
        self.village_tree = STRtree(self.village_geoms)
        self.village_ids = town.villages["village_id"].to_numpy(dtype=object)
        self.village_names = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
        self.chiefs, self.staffed, self.grid_owner = _staffing(town, responsibility)
        self.grid_id_str = self.grids["grid_id"].astype(str).to_numpy(dtype=object)
        self.grid_owner_at = _lookup(self.grid_owner, self.grid_id_str, None)
        self.grid_staffed_at = _lookup(self.staffed, self.grid_id_str, False).astype(bool)
        self.reaches = _frame(responsibility, "reaches")
        self.cross_sections = _frame(responsibility, "cross_sections")
        self.corridors = _frame(responsibility, "corridors")
        self.boundary_line = shapely.boundary(self.extent)
        # the town shrunk by 3 * _ON_BORDER_M: whatever lies inside it is farther than _ON_BORDER_M from the
        # boundary (the buffer's arcs and simplification are off by far less than the 2 m to spare)
        self.inner_extent = shapely.buffer(self.extent, -3.0 * _ON_BORDER_M)
        shapely.prepare(self.inner_extent)
        a, b = _segments_of(self.boundary_line)
        self.boundary_tree = STRtree(shapely.linestrings(np.stack([a, b], axis=1)) if len(a)
                                     else np.empty(0, dtype=object))
        self.river_chief_of: dict[tuple[str, str], str | None] = {}
        if self.reaches is not None and len(self.reaches) and {"river_id", "village_id", "village_chief"} <= set(
                self.reaches.columns):
            for rid, vid, chief in zip(self.reaches["river_id"], self.reaches["village_id"],
                                       self.reaches["village_chief"], strict=True):
                key = (str(rid), str(vid))
                name = _text(chief)
                if name or key not in self.river_chief_of:
                    self.river_chief_of[key] = name

    def lines(self, layer: str) -> _Lines:
        if layer not in self._lines:
            self._lines[layer] = _Lines(_arr(getattr(self.town, layer)))
        return self._lines[layer]

    tolerance_m: float = 0.0
    gaps: np.ndarray = np.empty(0, dtype=object)
    poi_grid: dict[str, Any] = {}  # noqa: RUF012 (replaced per call, never mutated)

    def absorb_slivers(self, geoms: np.ndarray, grid_pos: np.ndarray) -> np.ndarray:
        """Parts in no grid but not in a real gap lie in slivers: give each the nearest grid within the tolerance."""
        lost = np.flatnonzero(grid_pos < 0)
        if self.tolerance_m <= 0 or not lost.size or not len(self.grid_geoms):
            return grid_pos
        in_gap = np.zeros(lost.size, dtype=bool)
        if self.gaps.size:
            in_gap[np.unique(STRtree(self.gaps).query(geoms[lost], predicate="intersects")[0])] = True
        cand = lost[~in_gap]
        i, g = self.grid_tree.query_nearest(geoms[cand], max_distance=self.tolerance_m, all_matches=False)
        out = grid_pos.copy()
        out[cand[i]] = g
        return out

    def village_at(self, geoms: np.ndarray) -> np.ndarray:
        """Village id at each geometry's middle (lines) or representative point."""
        out = np.full(len(geoms), None, dtype=object)
        if not len(geoms) or not len(self.village_geoms):
            return out
        lin = np.isin(shapely.get_type_id(geoms), (1, 5))
        dummy = shapely.LineString([(0, 0), (1, 0)])
        mid = shapely.line_interpolate_point(np.where(lin, geoms, dummy), 0.5, normalized=True)
        pts = np.where(lin, mid, shapely.point_on_surface(np.where(lin, shapely.Point(0, 0), geoms)))
        src, tgt = self.village_tree.query(pts, predicate="intersects")
        order = np.lexsort((tgt, src))
        src, tgt = src[order], tgt[order]
        first = np.unique(src, return_index=True)[1]
        out[src[first]] = self.village_ids[tgt[first]]
        return out

    def village_label(self, vid: Any) -> str:
        if vid is None:
            return "no village"
        name = self.village_names.get(vid)
        return f"{name} ({vid})" if name and name != vid else str(vid)


def _lookup(table: Mapping[Any, Any], keys: np.ndarray, default: Any) -> np.ndarray:
    """``table.get(key, default)`` for each key, as an object array."""
    out = np.full(len(keys), default, dtype=object)
    if not table or not len(keys):
        return out
    at = pd.Index(np.fromiter(table, dtype=object, count=len(table))).get_indexer(np.asarray(keys, dtype=object))
    found = at >= 0
    out[found] = np.fromiter(table.values(), dtype=object, count=len(table))[at[found]]
    return out


def _staffing(town: Town, responsibility: Any) -> tuple[dict[str, str | None], dict[str, bool],
                                                        dict[str, str | None]]:
    """Grid id -> chief name(s), -> staffed, -> owner (the chief, or who must name one)."""
    staffing = _frame(responsibility, "staffing")
    if staffing is not None and "grid_id" in staffing.columns:
        gid = staffing["grid_id"].astype(str).to_numpy(dtype=object)
        names = _texts(_column(staffing, "chief_name")).tolist()
        flags = staffing["staffed"].to_numpy() if "staffed" in staffing.columns else np.array(
            [n is not None for n in names])
        if flags.dtype == bool:
            flag_values = flags.tolist()
        else:
            na = pd.isna(flags.astype(object))
            flag_values = [False if n else bool(f) for f, n in zip(flags, na, strict=True)]
        owners = _texts(_column(staffing, "owner")).tolist()
        chiefs = dict(zip(gid, names, strict=True))
        staffed = dict(zip(gid, flag_values, strict=True))
        owner = dict(zip(gid, [o or c for o, c in zip(owners, names, strict=True)], strict=True))
        return chiefs, staffed, owner
    roster = town.grid_staff
    heads = roster[roster["role"] == "grid_chief"]
    joined = heads.groupby("grid_id")["name"].agg(lambda s: ", ".join(str(v) for v in s if v))
    chiefs = {str(g): _text(joined.get(g)) for g in town.grids["grid_id"]}
    return chiefs, {g: c is not None for g, c in chiefs.items()}, dict(chiefs)


# ============================================================================ rule geometry
@dataclass
class _Raw:
    """The pieces a rule selects, before they are cut at grid borders."""

    rule: Rule
    layer: np.ndarray  # "roads"/"rivers" per piece
    pos: np.ndarray  # row position in the layer frame
    geoms: np.ndarray
    trigger: np.ndarray
    detail: np.ndarray
    missing: np.ndarray  # cross-boundary: ids of the villages whose side has no chief (","-joined), else None

    _FIELDS = ("layer", "pos", "geoms", "trigger", "detail", "missing")

    def take(self, idx: np.ndarray) -> _Raw:
        return _Raw(self.rule, *(getattr(self, f)[idx] for f in self._FIELDS))


def _empty_raw(rule: Rule) -> _Raw:
    e = np.empty(0, dtype=object)
    return _Raw(rule, e, np.empty(0, dtype=np.intp), e, e, e, e)


def _concat_raw(rule: Rule, parts: list[_Raw]) -> _Raw:
    parts = [p for p in parts if len(p.geoms)]
    if not parts:
        return _empty_raw(rule)
    return _Raw(rule, *(np.concatenate([getattr(p, f) for p in parts]) for f in _Raw._FIELDS))


def _raw(rule: Rule, layer: str, lines: _Lines, iv: _Intervals, detail: Mapping[str, str] | None = None,
         missing: Mapping[str, str] | None = None) -> _Raw:
    if not len(iv):
        return _empty_raw(rule)
    part = np.asarray(iv.part, dtype=np.intp)
    geoms = lines.substrings(part, np.asarray(iv.start, dtype=float), np.asarray(iv.end, dtype=float))
    trig = np.asarray(iv.trigger, dtype=object)
    codes, uniq = pd.factorize(trig, use_na_sentinel=False)
    det = np.array([_join_texts(t, detail) for t in uniq], dtype=object)[codes]
    miss = np.array([_join_texts(t, missing, ",") for t in uniq], dtype=object)[codes]
    return _Raw(rule, np.full(len(part), layer, dtype=object), lines.owner[part], geoms, trig, det, miss)


def _per_trigger(trigger: np.ndarray, text: Any) -> np.ndarray:
    """``text(t)`` for each trigger, computed once per distinct trigger."""
    if not len(trigger):
        return np.empty(0, dtype=object)
    codes, uniq = pd.factorize(np.asarray(trigger, dtype=object), use_na_sentinel=False)
    return np.array([text(t) for t in uniq], dtype=object)[codes]


def _join_texts(trigger: str, texts: Mapping[str, str] | None, sep: str = "; ") -> str | None:
    if not texts:
        return None
    found = list(dict.fromkeys(texts[t] for t in str(trigger).split(",") if texts.get(t)))
    return sep.join(found) if found else None


def _poi_texts(pois: gpd.GeoDataFrame) -> dict[str, str]:
    return {str(p): f"{k} {n} ({p})" if _text(n) else f"{k} ({p})"
            for p, k, n in zip(pois["poi_id"], pois["kind"], pois["name"], strict=True)}


def _rule_pois(ctx: _Context, kinds: Sequence[str]) -> gpd.GeoDataFrame:
    """The POIs of these kinds (computed once per set of kinds; not to be modified)."""
    key = tuple(kinds)
    if key not in ctx.pois_of:
        pois = ctx.town.pois
        ctx.pois_of[key] = pois[pois["kind"].isin(list(kinds))].reset_index(drop=True)
    return ctx.pois_of[key]


def _proximity(ctx: _Context, rule: Rule) -> _Raw:
    pois = _rule_pois(ctx, rule.kinds)
    if not len(pois):
        return _empty_raw(rule)
    xy = shapely.get_coordinates(_arr(pois))
    ids = pois["poi_id"].astype(str).to_numpy(dtype=object)
    texts = {k: f"within {rule.distance_m:g} m of {v}" for k, v in _poi_texts(pois).items()}
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        iv = lines.within(xy, xy, ids, float(rule.distance_m or 0.0))
        out.append(_raw(rule, layer, lines, iv, texts))
    return _concat_raw(rule, out)


def _along_river(ctx: _Context, rule: Rule) -> _Raw:
    pois = _rule_pois(ctx, rule.kinds)
    lines = ctx.lines("rivers")
    if not len(pois) or not len(lines.parts):
        return _empty_raw(rule)
    pts = _arr(pois)
    snap = rule.snap_m if rule.snap_m is not None else 200.0
    p_idx, part = lines.part_tree.query_nearest(pts, max_distance=snap, all_matches=False)
    lost = np.setdiff1d(np.arange(len(pois)), p_idx)
    if len(lost):
        logger.warning("%s: %d %s point(s) farther than %g m from any river have no section: %s", rule.name,
                       len(lost), "/".join(rule.kinds), snap, ", ".join(pois["poi_id"].astype(str).iloc[lost]))
    ch = shapely.line_locate_point(lines.parts[part], pts[p_idx])
    d = float(rule.distance_m or 0.0)
    ids = pois["poi_id"].astype(str).to_numpy(dtype=object)[p_idx]
    rivers = ctx.town.rivers
    rname = rivers["name"].to_numpy(dtype=object)[lines.owner[part]]
    rid = rivers["river_id"].to_numpy(dtype=object)[lines.owner[part]]
    ptext = _poi_texts(pois)
    texts = {i: f"within {d:g} m along river {n or r} ({r}) of {ptext[i]} (chainage {c:,.0f} m)"
             for i, n, r, c in zip(ids, rname, rid, ch, strict=True)}
    iv = lines.merge(part, np.maximum(ch - d, 0.0), np.minimum(ch + d, lines.part_len[part]), ids)
    return _raw(rule, "rivers", lines, iv, texts)


def _town_border(ctx: _Context, rule: Rule) -> _Raw:
    a, b = _segments_of(ctx.boundary_line)
    text = {"town_boundary": f"within {rule.distance_m:g} m of the town boundary (town entrance, 出入口)"}
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        iv = lines.within(a, b, np.full(len(a), "town_boundary", dtype=object), float(rule.distance_m or 0.0))
        out.append(_raw(rule, layer, lines, iv, text))
    raw = _clip(ctx, _concat_raw(rule, out))
    if rule.entrances_only and len(raw.geoms):
        raw = raw.take(np.unique(ctx.boundary_tree.query(raw.geoms, predicate="dwithin", distance=_TOUCH_M)[0]))
    return raw


def _village_border(ctx: _Context, rule: Rule) -> _Raw:
    villages = ctx.town.villages
    parts, vidx = shapely.get_parts(shapely.boundary(_arr(villages)), return_index=True)
    coords, idx = shapely.get_coordinates(parts, return_index=True)
    if len(coords) < 2:
        return _empty_raw(rule)
    same = np.flatnonzero(idx[1:] == idx[:-1])
    a, b = coords[same], coords[same + 1]
    owner = villages["village_id"].astype(str).to_numpy(dtype=object)[vidx[idx[same]]]
    mid = (a + b) / 2.0
    # the middles well inside the town (in the town shrunk by 3 m) are not near its boundary; the others are tested
    test = np.flatnonzero(~shapely.intersects_xy(ctx.inner_extent, mid[:, 0], mid[:, 1]))
    on_town = test[ctx.boundary_tree.query(shapely.points(mid[test]), predicate="dwithin", distance=_ON_BORDER_M)[0]]
    keep = np.ones(len(a), dtype=bool)
    keep[on_town] = False
    a, b, owner = a[keep], b[keep], owner[keep]
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        out.append(_raw(rule, layer, lines, lines.within(a, b, owner, float(rule.distance_m or 0.0))))
    raw = _concat_raw(rule, out)
    if len(raw.geoms):
        raw.detail = _per_trigger(raw.trigger, lambda t: f"within {rule.distance_m:g} m of the border of villages "
                                  f"{', '.join(ctx.village_label(v) for v in str(t).split(','))}")
    return raw


def _cross_boundary(ctx: _Context, rule: Rule) -> _Raw:
    cs = ctx.cross_sections
    lines = ctx.lines("rivers")
    if cs is None or not len(cs) or not len(lines.parts) or "geometry" not in cs.columns:
        return _empty_raw(rule)
    cs = cs.reset_index(drop=True)
    geoms = np.asarray(gpd.GeoSeries(cs["geometry"]).values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    pos = np.flatnonzero(ok)
    g = geoms[pos]
    # the crossing: the point itself, or the point at chainage_m on a section line
    lin = np.isin(shapely.get_type_id(g), (1, 5))
    at = np.full(len(pos), 0.5)
    rel = False
    if "chainage_m" in cs.columns and "start_m" in cs.columns:
        at = (pd.to_numeric(cs["chainage_m"], errors="coerce") - pd.to_numeric(cs["start_m"], errors="coerce")
              ).to_numpy(dtype=float)[pos]
        rel = True
    bad = ~np.isfinite(at)
    at = np.where(bad, 0.5, at)
    dummy = shapely.LineString([(0, 0), (1, 0)])
    on_line = shapely.line_interpolate_point(np.where(lin, g, dummy), at, normalized=not rel)
    if rel and bad.any():
        on_line[bad] = shapely.line_interpolate_point(np.where(lin, g, dummy)[bad], 0.5, normalized=True)
    pts = np.where(lin, on_line, shapely.point_on_surface(np.where(lin, shapely.Point(0, 0), g)))
    sid = _column(cs, "section_id")
    sid = np.array([str(s) if s is not None else f"X{i}" for i, s in enumerate(sid)], dtype=object)
    rid = np.array([str(r) for r in _column(cs, "river_id")], dtype=object)
    # the part of the same river nearest the crossing
    q_idx, part = lines.near_pairs(pts, 5.0)
    close = shapely.dwithin(lines.parts[part], pts[q_idx], 5.0)
    q_idx, part = q_idx[close], part[close]
    river_of_part = ctx.town.rivers["river_id"].astype(str).to_numpy(dtype=object)[lines.owner[part]]
    same = river_of_part == rid[pos][q_idx]
    dist = shapely.distance(lines.parts[part], pts[q_idx])
    order = np.lexsort((dist, ~same, q_idx))
    q_idx, part = q_idx[order], part[order]
    first = np.unique(q_idx, return_index=True)[1]
    q_idx, part = q_idx[first], part[first]
    if len(q_idx) < len(pos):
        logger.warning("%s: %d cross-boundary section(s) are not on a river line; skipped", rule.name,
                       len(pos) - len(q_idx))
    ch = shapely.line_locate_point(lines.parts[part], pts[q_idx])
    d = float(rule.distance_m or 0.0)
    found = pos[q_idx]
    va, vb = _column(cs, "village_a"), _column(cs, "village_b")
    ca = _column(cs, "chiefs_a") if "chiefs_a" in cs.columns else np.full(len(cs), "?", dtype=object)
    cb = _column(cs, "chiefs_b") if "chiefs_b" in cs.columns else np.full(len(cs), "?", dtype=object)
    rnames = dict(zip(ctx.town.rivers["river_id"].astype(str), ctx.town.rivers["name"], strict=True))
    texts: dict[str, str] = {}
    missing: dict[str, str] = {}
    for i in found:
        sides = [_text(va[i]), _text(vb[i])]
        where = " and ".join(ctx.village_label(v) for v in sides if v) or "the town and outside"
        texts[sid[i]] = (f"within {d:g} m of cross-boundary section {sid[i]} of river "
                         f"{rnames.get(rid[i]) or rid[i]} ({rid[i]}) between {where}")
        lack = [str(v) for v, c in zip(sides, (ca[i], cb[i]), strict=True) if v and not _text(c)]
        if lack:
            missing[sid[i]] = ",".join(lack)
    iv = lines.merge(part, np.maximum(ch - d, 0.0), np.minimum(ch + d, lines.part_len[part]), sid[found])
    return _raw(rule, "rivers", lines, iv, texts, missing)


def _road_class(ctx: _Context, rule: Rule) -> _Raw:
    lines = ctx.lines("roads")
    if not len(lines.parts):
        return _empty_raw(rule)
    cls = ctx.town.roads["road_class"].to_numpy(dtype=object)[lines.owner]
    sel = np.flatnonzero(np.isin(cls, list(rule.classes)))
    iv = _Intervals(sel, np.zeros(len(sel)), lines.part_len[sel], cls[sel].astype(object))
    texts = {c: f"on a {c} road ({_CLASS_ZH.get(c, c)})" for c in rule.classes}
    return _raw(rule, "roads", lines, iv, texts)


def _core_polygon(ctx: _Context, rule: Rule) -> shapely.Geometry | None:
    if rule.polygon_wkt is not None:
        geom = shapely.from_wkt(rule.polygon_wkt)
    elif rule.lonlat is not None:
        tr = pyproj.Transformer.from_crs("EPSG:4490", ctx.crs, always_xy=True)
        xs, ys = tr.transform([p[0] for p in rule.lonlat], [p[1] for p in rule.lonlat])
        geom = shapely.Polygon(list(zip(xs, ys, strict=True)))
    else:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if not geom.intersects(ctx.extent):
        logger.warning("%s: the core polygon lies outside the town (is it in the analysis CRS %s?)", rule.name,
                       ctx.crs.to_string())
    return geom


def _core(ctx: _Context, rule: Rule) -> tuple[_Raw, shapely.Geometry | None]:
    poly = _core_polygon(ctx, rule)
    if poly is None:
        return _proximity(ctx, rule), None
    out = []
    for layer in rule.layers:
        lines = ctx.lines(layer)
        if not len(lines.parts):
            continue
        hit = np.unique(lines.part_tree.query(poly, predicate="intersects"))
        pieces, own = _lines_only(shapely.intersection(lines.parts[hit], poly), hit)
        n = len(pieces)
        out.append(_Raw(rule, np.full(n, layer, dtype=object), lines.owner[own], pieces,
                        np.full(n, "core", dtype=object), np.full(n, "in the market-town core (集镇)", dtype=object),
                        np.full(n, None, dtype=object)))
    return _concat_raw(rule, out), poly


def _clip(ctx: _Context, raw: _Raw) -> _Raw:
    """Keep only what lies in the town."""
    if not len(raw.geoms):
        return raw
    inside = shapely.covers(ctx.extent, raw.geoms)
    if inside.all():
        return raw
    out = np.flatnonzero(~inside)
    pieces, own = _lines_only(shapely.intersection(raw.geoms[out], ctx.extent), out)
    clipped = raw.take(np.concatenate([np.flatnonzero(inside), own]))
    clipped.geoms = np.concatenate([raw.geoms[inside], pieces])
    return clipped


# ============================================================================ sections table
def _sections(ctx: _Context, raws: list[_Raw]) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Cut the rules' pieces at grid borders and describe them; also each row's missing-chief text."""
    raws = [r for r in raws if len(r.geoms)]
    if not raws:
        return _empty_sections(ctx.crs), np.empty(0, dtype=object)
    rule_of = np.concatenate([np.full(len(r.geoms), i) for i, r in enumerate(raws)])
    cat = _concat_raw(raws[0].rule, raws)
    src, geoms, grid_pos = _cut_at_grids(ctx, cat.geoms)
    grid_pos = ctx.absorb_slivers(geoms, grid_pos)
    covered = grid_pos >= 0
    gp = np.maximum(grid_pos, 0)
    grid_id = np.where(covered, ctx.grid_id_str[gp], None)
    village = np.where(covered, ctx.grids["village_id"].to_numpy(dtype=object)[gp], None)
    if (~covered).any():
        village[~covered] = ctx.village_at(geoms[~covered])
    layer, pos = cat.layer[src], cat.pos[src]
    is_road = layer == "roads"
    feature = np.full(len(src), None, dtype=object)
    name = np.full(len(src), None, dtype=object)
    road_class = np.full(len(src), None, dtype=object)
    for mask, frame_, id_col in ((is_road, ctx.town.roads, "road_id"), (~is_road, ctx.town.rivers, "river_id")):
        if mask.any():
            feature[mask] = frame_[id_col].astype(str).to_numpy(dtype=object)[pos[mask]]
            name[mask] = frame_["name"].to_numpy(dtype=object)[pos[mask]]
    if is_road.any():
        road_class[is_road] = ctx.town.roads["road_class"].to_numpy(dtype=object)[pos[is_road]]
    owner = np.where(covered, ctx.grid_owner_at[gp], None)
    staffed = covered & ctx.grid_staffed_at[gp]
    river_chief = np.full(len(src), None, dtype=object)
    if (~is_road).any() and ctx.river_chief_of:
        river_chief[~is_road] = [ctx.river_chief_of.get((f, str(v))) for f, v in
                                 zip(feature[~is_road], village[~is_road], strict=True)]
    rule_names = np.array([r.rule.name for r in raws], dtype=object)[rule_of[src]]
    severity = np.array([r.rule.effective_severity for r in raws], dtype=object)[rule_of[src]]
    layer_label = np.where(is_road, _LAYER_LABEL["roads"], None)
    if (~is_road).any():
        layer_label[~is_road] = [_LAYER_LABEL[x] for x in layer[~is_road]]
    section_id, id_key = _section_ids(rule_names, feature, grid_id, geoms)
    order = np.lexsort((id_key if id_key is not None else _str_rank(section_id), _str_rank(rule_names)))
    columns = {
        "section_id": section_id, "rule": rule_names, "severity": severity, "trigger": cat.trigger[src],
        "detail": cat.detail[src], "layer": layer_label, "feature_id": feature, "name": name,
        "road_class": road_class, "village_id": village, "grid_id": grid_id, "owner": owner,
        "river_chief": river_chief,
    }
    # columns read from the user's layers may hold NaN or NA: None instead (triggers and details are text, or
    # None, by construction)
    from_input = ("feature_id", "name", "road_class", "village_id", "grid_id")
    data: dict[str, Any] = {
        k: pd.Series(_none_for_na(v[order]) if k in from_input else v[order], dtype=object)
        for k, v in ((k, np.asarray(v, dtype=object)) for k, v in columns.items())}
    data["covered"] = covered[order]
    data["staffed"] = staffed[order]
    data["length_m"] = shapely.length(geoms[order]).astype(float)
    data["geometry"] = gpd.GeoSeries(geoms[order], crs=ctx.crs).values
    out = gpd.GeoDataFrame(data, geometry="geometry", crs=ctx.crs)
    return out[list(SECTION_COLUMNS)], cat.missing[src][order]


def _none_for_na(values: np.ndarray) -> np.ndarray:
    """The object array with None for every missing value (None, NaN, NA)."""
    na = pd.isna(values)
    if na.any():
        values = values.copy()
        values[na] = None
    return values


def _str_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each value's ``str`` among the distinct ones (equal strings, equal rank): a sort key."""
    codes, uniq = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    text = np.asarray(uniq, dtype=object).astype(str)
    order = np.argsort(text, kind="stable")
    rank = np.empty(len(text), dtype=np.int64)
    rank[order] = np.arange(len(text))
    # distinct values with the same str (rare: 1 and "1") share the lowest rank
    sorted_text = text[order]
    dup = np.flatnonzero(sorted_text[1:] == sorted_text[:-1]) + 1
    for i in dup:
        rank[order[i]] = rank[order[i - 1]]
    return rank[codes]


def _cut_at_grids(ctx: _Context, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut line pieces where they cross grid edges; say which grid holds each part (-1: none).

    Exact and vectorised. A piece that grids cover whole is kept whole, once per
    such grid. Any other piece is split at the chainages where its segments meet
    the edges of the grids it touches (a crossing, or both ends of a run along
    an edge: closed-form segment intersections over the (segment, edge) pairs of
    each (piece, grid) pair); each part then lies in the grids holding its
    middle point (grids are closed: a part along the shared edge of two grids is
    in both, and appears once for each), or in none. Consecutive parts in the
    same grid are merged again; parts shorter than ``settings.sliver_length_m``
    are dropped.

    Returns
    -------
    src, pieces, grid
        Per output part: index of its piece in ``geoms``, its geometry, and the
        position of its grid in ``ctx.grids`` (-1 when in no grid).
    """
    lines = _Lines(geoms)
    n_parts = len(lines.parts)
    # (part, grid) pairs that meet: of the pairs whose boxes meet, the grids covering the part whole
    # and the others intersecting it (grids are prepared)
    p_idx, g_idx = ctx.grid_tree.query(lines.parts)
    whole = shapely.covers(ctx.grid_geoms[g_idx], lines.parts[p_idx])
    meet = whole.copy()
    rest = np.flatnonzero(~whole)
    meet[rest] = shapely.intersects(ctx.grid_geoms[g_idx[rest]], lines.parts[p_idx[rest]])
    p_idx, g_idx, whole = p_idx[meet], g_idx[meet], whole[meet]
    cut = np.zeros(n_parts, dtype=bool)
    cut[p_idx[~whole]] = True
    keep = ~cut[p_idx]
    met = np.zeros(n_parts, dtype=bool)
    met[p_idx] = True
    out_part = [p_idx[keep], np.flatnonzero(~met)]
    out_grid = [g_idx[keep], np.full(len(out_part[1]), -1)]
    out_geom = [lines.parts[out_part[0]], lines.parts[out_part[1]]]
    if cut.any():
        pp, gg = p_idx[~whole], g_idx[~whole]
        # (segment, grid) pairs whose boxes meet, then (segment, edge) pairs likewise
        seg, pair = _ranges(lines.seg_off[pp], lines.seg_n[pp])
        grid = gg[pair]
        sb = lines.seg_box[seg]  # (xmin, ymin, xmax, ymax) of each segment
        gb = ctx.grid_bounds[grid]
        near = ((sb[:, :2] <= gb[:, 2:] + 1e-7) & (gb[:, :2] <= sb[:, 2:] + 1e-7)).all(1)
        seg, grid, sb = seg[near], grid[near], sb[near]
        count = ctx.grid_edge_n[grid]
        edge, _ = _ranges(ctx.grid_edge_off[grid], count)
        eb = ctx.grid_edge_box_grown[edge]  # the edges' boxes, their high sides grown by 1e-7
        near = ((np.repeat(sb[:, 0], count) <= eb[:, 2]) & (np.repeat(sb[:, 1], count) <= eb[:, 3])
                & (eb[:, 0] <= np.repeat(sb[:, 2] + 1e-7, count)) & (eb[:, 1] <= np.repeat(sb[:, 3] + 1e-7, count)))
        seg, edge = np.repeat(seg, count)[near], edge[near]
        t, at = _segment_hits(lines.seg_a[seg], lines.seg_b[seg], ctx.grid_edge_a[edge], ctx.grid_edge_b[edge])
        seg = seg[at]
        parts = np.flatnonzero(cut)
        part = np.concatenate([lines.seg_part[seg], parts, parts])
        ch = np.concatenate([lines.seg_ch0[seg] + t * lines.seg_len[seg], np.zeros(len(parts)),
                             lines.part_len[parts]])
        key = lines.base[part] + ch
        order = np.argsort(key, kind="stable")
        part, key = part[order], key[order]
        nxt = np.flatnonzero((part[1:] == part[:-1]) & (key[1:] - key[:-1] > 1e-9))
        iv_part, ks, ke = part[nxt], key[nxt], key[nxt + 1]
        # the grids holding each interval's middle: of the grids meeting its part
        by_part = np.argsort(p_idx, kind="stable")
        grid_of = g_idx[by_part]
        off = np.searchsorted(p_idx[by_part], np.arange(n_parts))
        at, i_idx = _ranges(off[iv_part], np.bincount(p_idx, minlength=n_parts)[iv_part])
        i_grid = grid_of[at]
        mid = _lerp_key(lines, (ks + ke) / 2.0)
        gb, mx, my = ctx.grid_bounds[i_grid], mid[i_idx, 0], mid[i_idx, 1]
        box = (gb[:, 0] <= mx) & (mx <= gb[:, 2]) & (gb[:, 1] <= my) & (my <= gb[:, 3])
        i_idx, i_grid, mx, my = i_idx[box], i_grid[box], mx[box], my[box]
        inside = shapely.intersects_xy(ctx.grid_geoms[i_grid], mx, my)
        i_idx, i_grid = i_idx[inside], i_grid[inside]
        held = np.zeros(len(iv_part), dtype=bool)
        held[i_idx] = True
        lost = np.flatnonzero(~held)
        i_all = np.concatenate([i_idx, lost])
        g_all = np.concatenate([i_grid, np.full(len(lost), -1)])
        p_all = iv_part[i_all]
        order = np.lexsort((ks[i_all], g_all, p_all))
        i_all, g_all, p_all = i_all[order], g_all[order], p_all[order]
        s_all, e_all = ks[i_all], ke[i_all]
        new = np.ones(len(i_all), dtype=bool)
        new[1:] = (p_all[1:] != p_all[:-1]) | (g_all[1:] != g_all[:-1]) | (s_all[1:] > e_all[:-1] + 1e-9)
        starts = np.flatnonzero(new)
        m_part = p_all[starts]
        m_start = s_all[starts] - lines.base[m_part]
        m_end = np.maximum.reduceat(e_all, starts) - lines.base[m_part] if len(starts) else np.empty(0)
        out_part.append(m_part)
        out_grid.append(g_all[starts])
        out_geom.append(lines.substrings(m_part, m_start, m_end))
    part = np.concatenate(out_part)
    pieces = np.concatenate(out_geom)
    grid = np.concatenate(out_grid)
    ok = shapely.length(pieces) >= settings.sliver_length_m
    return lines.owner[part[ok]], pieces[ok], grid[ok]


def _segment_hits(A: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where segments A→B meet segments C–D: parameters ``t`` along A→B and the pair of each.

    A crossing or touch gives one ``t``; a collinear overlap gives the ``t`` of
    both ends of the overlap. Pairs that do not meet give nothing.
    """
    r, q, w = B - A, D - C, C - A
    cross = r[:, 0] * q[:, 1] - r[:, 1] * q[:, 0]
    rr, qq = _dot(r, r), _dot(q, q)
    scale = np.sqrt(rr * qq)
    parallel = np.abs(cross) <= 1e-12 * scale
    safe = np.where(parallel, 1.0, cross)
    t = (w[:, 0] * q[:, 1] - w[:, 1] * q[:, 0]) / safe
    u = (w[:, 0] * r[:, 1] - w[:, 1] * r[:, 0]) / safe
    eps = 1e-12
    hit = ~parallel & (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    # collinear: C lies on the line through A and B (within 1e-7 m); the overlap's ends, projected
    off_line = np.abs(w[:, 0] * r[:, 1] - w[:, 1] * r[:, 0]) / np.sqrt(np.where(rr > 0, rr, 1.0))
    tc = _dot(w, r) / np.where(rr > 0, rr, 1.0)
    td = _dot(D - A, r) / np.where(rr > 0, rr, 1.0)
    lo, hi = np.minimum(tc, td), np.maximum(tc, td)
    along = parallel & (off_line <= 1e-7) & (hi >= -eps) & (lo <= 1 + eps)
    ts = np.concatenate([t[hit], lo[along], hi[along]])
    at = np.concatenate([np.flatnonzero(hit), np.flatnonzero(along), np.flatnonzero(along)])
    return np.clip(ts, 0.0, 1.0), at


def _lerp_key(lines: _Lines, key: np.ndarray) -> np.ndarray:
    """Points at global chainage keys (as in :attr:`_Lines.vkey`)."""
    last = len(lines.vkey) - 1
    a = np.clip(np.searchsorted(lines.vkey, key, side="right"), 1, last)
    return _lerp(lines.vxy[a - 1], lines.vxy[a], lines.vkey[a - 1], lines.vkey[a], key)


def _section_ids(rule: np.ndarray, feature: np.ndarray, grid: np.ndarray,
                 geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Stable section ids (``S-`` and 10 hex digits of a SHA-1; ``~2``, ``~3`` ... on repeats).

    Also a sort key in the order of the ids' text (the digits as a number), or None when some id repeats.
    """
    mx, my = _midpoints(geoms)
    snap = settings.id_snap_m
    sx = np.floor(mx / snap + 0.37).astype(np.int64)
    sy = np.floor(my / snap + 0.37).astype(np.int64)
    sha1 = hashlib.sha1
    digest = b"".join([sha1(f"{r}|{f}|{g}|{x}:{y}".encode()).digest()[:5]
                       for r, f, g, x, y in zip(rule.tolist(), feature.tolist(), grid.tolist(), sx.tolist(),
                                                sy.tolist(), strict=True)])
    raw = np.frombuffer(digest, dtype=np.uint8).reshape(-1, 5)
    text = np.empty((len(raw), 12), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("S"), ord("-")
    text[:, 2::2] = _HEX[raw >> 4]
    text[:, 3::2] = _HEX[raw & 15]
    ids = text.view("S12").ravel().astype("U12").astype(object)
    key = (raw.astype(np.int64) << np.array([32, 24, 16, 8, 0])).sum(axis=1)
    if len(np.unique(key)) == len(key):
        return ids, key
    series = pd.Series(ids, dtype=object)
    rank = series.groupby(series, sort=False).cumcount().to_numpy()
    return np.array([i if k == 0 else f"{i}~{k + 1}" for i, k in zip(ids, rank, strict=True)], dtype=object), None


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _midpoints(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The x and y of ``shapely.line_interpolate_point(geoms, 0.5, normalized=True)``, without making points.

    For LineStrings this follows GEOS's own arithmetic step by step (the
    length as a running sum of ``sqrt(dx*dx + dy*dy)``, the first segment
    whose running sum passes half of it, ``(x1 - x0) * frac + x0``), so the
    coordinates are the same to the bit; anything else goes to GEOS.
    """
    if not len(geoms) or not (shapely.get_type_id(geoms) == 1).all() or shapely.is_empty(geoms).any():
        mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
        return shapely.get_x(mid), shapely.get_y(mid)
    xy, idx = shapely.get_coordinates(geoms, return_index=True)
    n_pts = np.bincount(idx, minlength=len(geoms))
    start = np.concatenate([[0], np.cumsum(n_pts)[:-1]])
    n_seg = n_pts - 1
    mx, my = np.empty(len(geoms)), np.empty(len(geoms))
    one = np.flatnonzero(n_seg == 1)  # one segment: half of it is exactly frac 0.5 along it
    x0, y0, x1, y1 = xy[start[one], 0], xy[start[one], 1], xy[start[one] + 1, 0], xy[start[one] + 1, 1]
    mx[one], my[one] = (x1 - x0) * 0.5 + x0, (y1 - y0) * 0.5 + y0
    by_size = np.flatnonzero(n_seg > 1)
    by_size = by_size[np.argsort(n_seg[by_size], kind="stable")]
    cuts = np.searchsorted(n_seg[by_size], [1 << k for k in range(2, 62)], side="right")
    for lo, hi in zip(np.concatenate([[0], cuts[:-1]]), cuts, strict=True):  # lines of similar size together
        rows = by_size[lo:hi]
        if not len(rows):
            continue
        m = int(n_seg[rows].max())
        j = np.arange(m)
        valid = j[None, :] < n_seg[rows][:, None]
        i0 = np.where(valid, start[rows][:, None] + j[None, :], start[rows][:, None])
        i1 = np.where(valid, i0 + 1, i0)
        x0, y0, x1, y1 = xy[i0, 0], xy[i0, 1], xy[i1, 0], xy[i1, 1]
        dx, dy = x1 - x0, y1 - y0
        run = np.cumsum(np.sqrt(dx * dx + dy * dy), axis=1)  # padding adds 0.0: the sums are GEOS's
        half = 0.5 * run[:, -1]
        past = (run > half[:, None]) & valid
        r = np.arange(len(rows))
        k = np.argmax(past, axis=1)
        before = np.where(k > 0, run[r, np.maximum(k - 1, 0)], 0.0)
        seg_len = np.sqrt(dx[r, k] * dx[r, k] + dy[r, k] * dy[r, k])
        frac = (half - before) / np.where(seg_len > 0, seg_len, 1.0)
        px = np.where(frac <= 0.0, x0[r, k], np.where(frac >= 1.0, x1[r, k], dx[r, k] * frac + x0[r, k]))
        py = np.where(frac <= 0.0, y0[r, k], np.where(frac >= 1.0, y1[r, k], dy[r, k] * frac + y0[r, k]))
        end = ~past.any(axis=1)  # half the length at or past the end: the last point
        last = start[rows] + n_pts[rows] - 1
        px, py = np.where(end, xy[last, 0], px), np.where(end, xy[last, 1], py)
        first = half <= 0.0  # no length: the first point
        px, py = np.where(first, xy[start[rows], 0], px), np.where(first, xy[start[rows], 1], py)
        mx[rows], my[rows] = px, py
    return mx, my


def _empty_sections(crs: Any) -> gpd.GeoDataFrame:
    data: dict[str, Any] = {c: pd.Series([], dtype=object) for c in SECTION_COLUMNS if c != "geometry"}
    data["covered"] = pd.Series([], dtype=bool)
    data["staffed"] = pd.Series([], dtype=bool)
    data["length_m"] = pd.Series([], dtype=float)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


# ============================================================================ escalation
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


# ============================================================================ defects of sections
def _defects(ctx: _Context, sections: gpd.GeoDataFrame, missing: np.ndarray, findings: gpd.GeoDataFrame,
             rules: Mapping[str, tuple[int, Rule]], cand: _Candidates) -> pd.DataFrame:
    """Defects of section rows that no finding reports (row, defect, text); the reporters are escalated."""
    cols = ["row", "defect", "text"]
    if not len(sections):
        return pd.DataFrame(columns=cols)
    covered = sections["covered"].to_numpy(dtype=bool)
    staffed = sections["staffed"].to_numpy(dtype=bool)
    gid = sections["grid_id"].to_numpy(dtype=object)
    rows: list[tuple[int, str, str]] = [(i, "uncovered", "it lies in no grid") for i in np.flatnonzero(~covered)]
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
    geoms = _grouped(_arr(s), gid, int(gid.max()) + 1, _union_lines, shapely.MultiLineString())
    first = s.groupby(gid, sort=False).head(1).reset_index(drop=True)
    also = s.groupby(gid, sort=False)["rule"].agg(lambda v: ", ".join(dict.fromkeys(v))).to_numpy()
    fixes = {"uncovered": "extend a grid over it", "unstaffed": "name a grid chief for the grid",
             "no_river_chief": "name the village river chief"}
    rows = []
    for i, f in first.iterrows():
        length = float(shapely.length(geoms[i]))
        what = f"{f['layer']} {f['name'] + ' ' if _text(f['name']) else ''}({f['feature_id']})"
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


def _grouped(geoms: np.ndarray, groups: np.ndarray, n: int, union: Any, empty: shapely.Geometry) -> np.ndarray:
    """``union(members, axis=1)`` of the geometries of each group 0..n-1, vectorised by group size."""
    out = np.full(n, empty, dtype=object)
    if not len(geoms):
        return out
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    items = geoms[order]
    one = np.flatnonzero(counts == 1)
    out[one] = items[starts[one]]
    for k in np.unique(counts[counts > 1]):  # one call per distinct group size
        members = np.flatnonzero(counts == k)
        take = starts[members][:, None] + np.arange(k)[None, :]
        out[members] = union(items[take], axis=1)
    return out


def _union_lines(geoms: np.ndarray, axis: int) -> np.ndarray:
    return shapely.line_merge(shapely.union_all(geoms, axis=axis))


# ============================================================================ checkpoints
def _grids_of_points(ctx: _Context, pois: gpd.GeoDataFrame, pts: np.ndarray) -> np.ndarray:
    """:func:`gisgrid.coverage.points_in_zones` of the points in the grids, by the grids' tree."""
    out = np.full(len(pts), None, dtype=object)
    p_idx, g_idx = ctx.grid_tree.query(pts, predicate="covered_by")
    counts = np.bincount(p_idx, minlength=len(pts))
    one = counts[p_idx] == 1
    out[p_idx[one]] = np.asarray(ctx.grids["grid_id"].tolist(), dtype=object)[g_idx[one]]
    multi = np.flatnonzero(counts > 1)
    if len(multi):  # on a shared edge or in an overlap: the ids joined as points_in_zones joins them
        zones = ctx.grids.iloc[np.unique(g_idx[~one])]
        out[multi] = coverage.points_in_zones(pois.iloc[multi], zones, id_column="grid_id").to_numpy(dtype=object)
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
    village = np.array([gvil.get(str(g).split(",")[0]) if g is not None else None for g in grid], dtype=object)
    lost = np.array([v is None for v in village], dtype=bool)
    if lost.any():
        village[lost] = ctx.village_at(pts[lost])
    chief = np.array([", ".join(c for c in (ctx.chiefs.get(x) for x in str(g).split(",")) if c) or None
                      if g is not None else None for g in grid], dtype=object)
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
    if has_reaches:
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
        if _text(fid[p]) is not None:
            by_id.setdefault(str(fid[p]), []).append(int(p))
    for i, pid in enumerate(cp["poi_id"]):
        if str(pid) in by_id:
            out[(i, "no_grid")] = by_id[str(pid)]
    rest = np.array([p for p in fpos if _text(fid[p]) is None and fok[p]], dtype=np.intp)
    if len(rest):
        c_i, f_i = STRtree(fgeoms[rest]).query(cpg, predicate="dwithin", distance=0.01)
        for c, f in zip(c_i, f_i, strict=True):
            out.setdefault((int(c), "no_grid"), []).append(int(rest[f]))
    # no grid chief: the grid_unstaffed of its grid
    by_grid: dict[str, list[int]] = {}
    for p in np.flatnonzero(fkind == "grid_unstaffed"):
        by_grid.setdefault(str(findings["grid_id"].iat[p]), []).append(int(p))
    for i, g in enumerate(cp["grid_id"]):
        found = [p for x in str(g).split(",") for p in by_grid.get(x, [])] if g is not None else []
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
        same_reach = np.array([_text(frr[f]) is not None and frr[f] == reach[c] for c, f in zip(c_i, f_i,
                                                                                                 strict=True)],
                              dtype=bool)
        close = shapely.distance(cpg[c_i], fgeoms[rpos][f_i]) <= dist[c_i] + _NEAR_SLACK_M
        same_river = np.array([_text(frv[f]) is None or frv[f] == cp["river_id"].iat[c]
                               for c, f in zip(c_i, f_i, strict=True)], dtype=bool)
        no_reach_id = np.array([_text(frr[f]) is None for f in f_i], dtype=bool)
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
        label = f"{kind} {cp['name'].iat[i] + ' ' if _text(cp['name'].iat[i]) else ''}({cp['poi_id'].iat[i]})"
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
            owner = (ctx.grid_owner.get(str(cp["grid_id"].iat[i]).split(",")[0])
                     if cp["grid_id"].iat[i] is not None else None)
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


# ============================================================================ entry points
class _Clock:
    """Debug-log the time each stage took."""

    def __init__(self) -> None:
        self.t = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        logger.debug("%s (%.3f s)", what, now - self.t)
        self.t = now


_BUILDERS = {"proximity": _proximity, "along_river": _along_river, "town_border": _town_border,
             "village_border": _village_border, "cross_boundary": _cross_boundary, "road_class": _road_class}


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
        A :class:`gisgrid.assign.Responsibility` (``staffing``, ``reaches``,
        ``cross_sections`` and ``corridors`` are read). None: grid chiefs come
        from ``town.grid_staff``, and no river chief is checked.
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
    clock = _Clock()
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
        f_idx, texts = _meets(fp, pgeoms)
        cand.add(place[f_idx], fp.rule, order[fp.rule.name][0], list(texts))
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
