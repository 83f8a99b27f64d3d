"""The rule config: the ``[rules]`` table of ``gisgrid.toml``, validated into :class:`Rule` objects.

The rule types, their keys and the shipped rules are documented in
:mod:`gisgrid.checks.sensitive`. Every mistake in the table is a
:class:`~gisgrid._errors.RuleError` naming the rule and the fix, with a
did-you-mean for a misspelt type, key, severity or kind.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import shapely

from gisgrid import settings
from gisgrid._errors import RuleError
from gisgrid.findings import KINDS, SEVERITY_RANK
from gisgrid.vocab import nearest

__all__ = ["DEFAULT_RULES", "POI_KINDS", "RULE_TYPES", "Rule", "parse_rules"]

#: POI kinds gisgrid knows besides ``settings.must_check_kinds``.
POI_KINDS: tuple[str, ...] = ("school", "kindergarten", "market", "clinic", "water_intake", "town_entrance")

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

_LAYER_NAMES = ("roads", "rivers")


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
    close = nearest(values, choices)
    return f" (did you mean {close!r}?)" if close else ""


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
        raise RuleError(msg, fix="write [rules.NAME] tables (see gisgrid.checks.sensitive.DEFAULT_RULES)")
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
