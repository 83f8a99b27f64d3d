"""Before and after: what a change to the grids or rosters fixed, created and left alone.

A what-if in a notebook edits a town (``town.replace(grids=..., grid_staff=...)``),
analyses it again and asks what changed::

    before = gisgrid.analyze(town)
    after = gisgrid.analyze(town.replace(grids=new_grids))
    diff = gisgrid.compare(before, after)
    diff.fixed, diff.created, diff.persisting, diff.totals

Findings are matched by ``finding_id``, which is stable across runs (the same
problem in the same place keeps its id; see :mod:`gisgrid.findings`). A gap
that was made smaller but not closed moves its centre and so is reported as
one fixed and one created finding: the old gap is gone, a different one is
left.

``gisgrid.compare`` is the function :func:`compare` of this module.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gisgrid import settings
from gisgrid.findings import show_ids, sort_findings, validate_findings
from gisgrid.vocab import is_missing, percent

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment

__all__ = ["CHANGES", "Comparison", "compare"]

#: The change of one finding between two runs, with the words a town uses for it.
CHANGES: dict[str, str] = {
    "fixed": "已整改 fixed: in the first run, gone from the second",
    "created": "新增 created: new in the second run",
    "persisting": "仍存在 persisting: in both runs",
}

#: Headline numbers compared, and which way is better (+1 higher, -1 lower, 0 neither).
_HEADLINES: dict[str, int] = {
    "area_coverage": +1,
    "effective_coverage": +1,
    "road_coverage": +1,
    "effective_road_coverage": +1,
    "uncovered_road_m": -1,
    "uncovered_lane_m": -1,
    "slivers": -1,
    "sliver_area_m2": -1,
    "villages": 0,
    "grids": 0,
    "grids_unstaffed": -1,
    "area_m2": 0,
    "road_m": 0,
    "findings": -1,
    "veto": -1,
}
#: Per-village columns of ``Assessment.summary`` compared in :attr:`Comparison.villages`.
_VILLAGE_METRICS = ("area_coverage", "effective_coverage", "road_coverage", "findings", "veto")
_SHOW = ["kind", "severity", "village_id", "grid_id", "owner", "measure", "unit", "message"]
_HTML_ROWS = 10


@dataclass
class Comparison:
    """What changed between two assessments of a town (see :func:`compare`).

    Attributes
    ----------
    fixed : GeoDataFrame
        Findings of the first run whose ``finding_id`` is gone from the second
        (rows and geometry as they were before), most severe first.
    created : GeoDataFrame
        Findings of the second run whose ``finding_id`` was not in the first.
    persisting : GeoDataFrame
        Findings in both runs, as in the second run, with ``severity_before``,
        ``owner_before`` and ``measure_before`` added.
    changed_severity : GeoDataFrame
        The persisting findings whose severity changed (``severity_before`` to
        ``severity``), e.g. a gap that now touches a school.
    totals : DataFrame
        One row per headline number (index ``metric``: ``area_coverage``,
        ``effective_coverage``, ``road_coverage``, ``uncovered_lane_m``,
        ``grids_unstaffed``, ``findings``, ``veto``, ``by_severity.<level>``,
        ``by_kind.<kind>``, …) with columns ``before``, ``after``, ``delta``
        and ``trend`` (``"better"``, ``"worse"``, ``"same"``, or ``"changed"``
        for numbers that are neither, such as the number of grids).
    villages : DataFrame
        Per village (index ``village_id``): ``name`` and ``<metric>_before``,
        ``<metric>_after``, ``<metric>_delta`` for area, staffed and road
        coverage, findings and veto items; empty when either side has no
        summary.
    before_name, after_name : str
        The towns' names.
    """

    fixed: gpd.GeoDataFrame
    created: gpd.GeoDataFrame
    persisting: gpd.GeoDataFrame
    changed_severity: gpd.GeoDataFrame
    totals: pd.DataFrame
    villages: pd.DataFrame = field(default_factory=pd.DataFrame)
    before_name: str = ""
    after_name: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """Number of findings fixed, created, persisting and with a changed severity."""
        return {"fixed": len(self.fixed), "created": len(self.created), "persisting": len(self.persisting),
                "changed_severity": len(self.changed_severity)}

    @property
    def changes(self) -> gpd.GeoDataFrame:
        """All findings of both runs in one frame with a ``change`` column (for ``.explore(column="change")``).

        Fixed findings keep their old geometry (reprojected to the second
        run's CRS when the two differ); the others have the second run's.
        """
        crs = self.created.crs or self.persisting.crs or self.fixed.crs
        fixed = self.fixed
        if crs is not None and fixed.crs is not None and fixed.crs != crs:
            fixed = fixed.to_crs(crs)
        parts = [frame.assign(change=change) for change, frame in
                 (("fixed", fixed), ("created", self.created), ("persisting", self.persisting)) if len(frame)]
        if not parts:
            empty = self.created.iloc[0:0].assign(change=pd.Series([], dtype=object))
            return gpd.GeoDataFrame(empty, geometry="geometry", crs=crs)
        out = pd.concat(parts, ignore_index=True)
        cols = ["change", *[c for c in out.columns if c != "change"]]
        return gpd.GeoDataFrame(out[cols], geometry="geometry", crs=crs)

    def headline(self) -> str:
        """One line: counts of fixed, created and persisting findings and the main numbers before and after."""
        c = self.counts
        parts = [f"{c['fixed']} fixed, {c['created']} created, {c['persisting']} persisting"]
        if c["changed_severity"]:
            parts[0] += f" ({c['changed_severity']} changed severity)"
        for metric in ("veto", "findings", "area_coverage", "uncovered_lane_m", "grids_unstaffed"):
            if metric in self.totals.index:
                row = self.totals.loc[metric]
                parts.append(f"{metric} {_fmt(metric, row['before'])} → {_fmt(metric, row['after'])}")
        return "; ".join(parts)

    def format_totals(self, *, changed_only: bool = False) -> pd.DataFrame:
        """:attr:`totals` as text a person reads: percentages, metres, counts, signed deltas.

        Parameters
        ----------
        changed_only
            Keep only the numbers that changed (and always the area coverage,
            findings and veto rows).

        Returns
        -------
        DataFrame
            Columns ``before``, ``after``, ``delta``, ``trend`` (all text), index ``metric``.
        """
        shown = self.totals
        if changed_only:
            keep = ["area_coverage", "effective_coverage", "findings", "veto"]
            shown = shown[(shown["delta"].fillna(0) != 0) | shown.index.isin(keep)]
        return pd.DataFrame({
            "before": [_fmt(m, v) for m, v in zip(shown.index, shown["before"], strict=True)],
            "after": [_fmt(m, v) for m, v in zip(shown.index, shown["after"], strict=True)],
            "delta": [_fmt(m, v, signed=True) for m, v in zip(shown.index, shown["delta"], strict=True)],
            "trend": shown["trend"].to_numpy(),
        }, index=shown.index)

    def __repr__(self) -> str:
        names = self.after_name if self.before_name == self.after_name else f"{self.before_name} → {self.after_name}"
        return f"<Comparison {names!r}: {self.headline()}>"

    def _repr_html_(self) -> str:
        esc = html.escape
        names = (self.after_name if self.before_name == self.after_name
                 else f"{self.before_name} → {self.after_name}")
        c = self.counts
        head = (
            f"<h4>{esc(names)} — before and after (整改前后对比)</h4>"
            f"<p><b style='color:#1a7f37'>{c['fixed']} fixed 已整改</b> · "
            f"<b style='color:#cf222e'>{c['created']} created 新增</b> · "
            f"<b>{c['persisting']} persisting 仍存在</b>"
            + (f" ({c['changed_severity']} changed severity 等级变化)" if c["changed_severity"] else "")
            + "</p>"
        )
        table = self.format_totals(changed_only=True)
        body = [head, "<p>Headline numbers that changed (变化的主要指标):</p>",
                table.rename_axis(None).to_html(escape=True, na_rep="")]
        for change, frame in (("fixed", self.fixed), ("created", self.created), ("persisting", self.persisting)):
            if not len(frame):
                continue
            cols = [c for c in _SHOW if c in frame.columns]
            if change == "persisting" and "severity_before" in frame.columns:
                cols.insert(cols.index("severity"), "severity_before")
            more = f" (first {_HTML_ROWS} of {len(frame)})" if len(frame) > _HTML_ROWS else ""
            body.append(f"<p><b>{esc(CHANGES[change])}</b>{esc(more)}</p>")
            body.append(_blank_missing(pd.DataFrame(frame[cols].head(_HTML_ROWS))).to_html(
                index=False, escape=True, na_rep="", float_format=lambda v: f"{v:,.1f}"))
        return "<div>" + "".join(body) + "</div>"


# --------------------------------------------------------------------------- helpers
def _fmt(metric: str, value: Any, *, signed: bool = False) -> str:
    """A headline number as a person reads it (percent, metres, count)."""
    if is_missing(value):
        return ""
    v = float(value)
    sign = "+" if signed and v > 0 else ""
    if metric.endswith("coverage"):
        if signed:
            pp = v * 100
            return f"{sign}{pp:.2f} pp" if pp == 0 or abs(pp) >= 0.005 else f"{sign}{pp:.4f} pp"
        return percent(v)
    if metric.endswith("_m2"):
        return f"{sign}{v:,.0f} m²"
    if metric.endswith("_m"):
        return f"{sign}{v:,.0f} m"
    return f"{sign}{v:,.0f}"


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """None and NaN in text columns shown as empty cells, not as 'None'."""
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            shown = out[col].astype(object).map(lambda v: show_ids(v) if isinstance(v, (list, tuple)) else v)
            out[col] = shown.where(shown.notna(), "")
    return out


def _parts(side: Any, which: str) -> tuple[gpd.GeoDataFrame, dict[str, Any], pd.DataFrame | None, str]:
    """Findings, totals, summary and name of an Assessment (or of a bare findings frame)."""
    if isinstance(side, pd.DataFrame):
        findings, totals, summary, name = side, {}, None, ""
    elif hasattr(side, "findings"):
        findings = side.findings
        totals = dict(getattr(side, "totals", None) or {})
        summary = getattr(side, "summary", None)
        town = getattr(side, "town", None)
        name = str(getattr(town, "name", "") or "")
    else:
        msg = f"compare() needs two Assessments (from gisgrid.analyze) or findings tables; {which} is a " \
              f"{type(side).__name__}."
        raise TypeError(msg)
    return validate_findings(findings, where=f"compare(): the {which} findings"), totals, summary, name


def _flat_totals(totals: dict[str, Any], findings: pd.DataFrame) -> dict[str, float]:
    """Headline numbers of one run as ``metric -> number`` (nested dicts become ``a.b``)."""
    out: dict[str, float] = {}
    for key in _HEADLINES:
        if key in totals and isinstance(totals[key], (int, float, np.integer, np.floating)):
            out[key] = float(totals[key])
    # Counts of findings always come from the table itself, so bare findings frames compare too.
    sev = findings["severity"].astype(str)
    out["findings"] = float(len(findings))
    out["veto"] = float((sev == "veto").sum())
    for level in settings.severities:
        out[f"by_severity.{level}"] = float((sev == level).sum())
    for kind, n in findings["kind"].astype(str).value_counts().items():
        out[f"by_kind.{kind}"] = float(n)
    return out


def _trend(metric: str, delta: float) -> str:
    if pd.isna(delta):
        return "changed"
    if abs(delta) < 1e-12:
        return "same"
    direction = _HEADLINES.get(metric, -1 if metric.startswith(("by_severity.", "by_kind.")) else 0)
    if direction == 0:
        return "changed"
    return "better" if delta * direction > 0 else "worse"


def _totals_frame(before: dict[str, float], after: dict[str, float]) -> pd.DataFrame:
    order = [*_HEADLINES, *(f"by_severity.{lv}" for lv in settings.severities)]
    kinds = sorted({k for k in (*before, *after) if k.startswith("by_kind.")})
    metrics = [m for m in order if m in before or m in after] + kinds
    frame = pd.DataFrame({
        "before": [before.get(m, 0.0 if m.startswith("by_kind.") else np.nan) for m in metrics],
        "after": [after.get(m, 0.0 if m.startswith("by_kind.") else np.nan) for m in metrics],
    }, index=pd.Index(metrics, name="metric"), dtype=float)
    frame["delta"] = frame["after"] - frame["before"]
    frame["trend"] = [_trend(m, d) for m, d in zip(frame.index, frame["delta"], strict=True)]
    return frame


def _villages_frame(before: pd.DataFrame | None, after: pd.DataFrame | None) -> pd.DataFrame:
    if before is None or after is None or not len(before.columns) or not len(after.columns):
        return pd.DataFrame(index=pd.Index([], name="village_id"))
    idx = before.index.union(after.index, sort=False)
    out = pd.DataFrame(index=idx.rename("village_id"))
    if "name" in before.columns or "name" in after.columns:
        names = after["name"] if "name" in after.columns else pd.Series(dtype=object)
        old = before["name"] if "name" in before.columns else pd.Series(dtype=object)
        out["name"] = names.reindex(idx).astype(object).where(names.reindex(idx).notna(), old.reindex(idx))
    for metric in _VILLAGE_METRICS:
        if metric not in before.columns and metric not in after.columns:
            continue
        b = pd.to_numeric(before[metric], errors="coerce").reindex(idx) if metric in before.columns else np.nan
        a = pd.to_numeric(after[metric], errors="coerce").reindex(idx) if metric in after.columns else np.nan
        out[f"{metric}_before"] = b
        out[f"{metric}_after"] = a
        out[f"{metric}_delta"] = out[f"{metric}_after"] - out[f"{metric}_before"]
    return out


def _geo(frame: pd.DataFrame, like: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = gpd.GeoDataFrame(frame, geometry=like.geometry.name if len(like.columns) else None, crs=like.crs)
    if len(out) and {"measure", "finding_id", "severity"} <= set(out.columns):
        out = sort_findings(out)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- compare
def compare(before: Assessment | pd.DataFrame, after: Assessment | pd.DataFrame) -> Comparison:
    """Compare two assessments: what was fixed, what was created, what persists.

    Parameters
    ----------
    before, after
        :class:`~gisgrid.analysis.Assessment` objects (from :func:`gisgrid.analyze`),
        typically of a town and of an edited copy (``town.replace(...)``).
        Bare findings tables are accepted too; then only the finding counts
        are compared.

    Returns
    -------
    Comparison
        ``fixed``, ``created``, ``persisting``, ``changed_severity``
        (GeoDataFrames), ``totals`` (before/after/delta of the headline
        numbers) and ``villages`` (the same per village).

    Raises
    ------
    TypeError
        When an argument is neither an Assessment nor a findings table.
    SchemaError
        When a findings table lacks ``finding_id``, ``kind`` or ``severity``.

    Notes
    -----
    Findings are matched by ``finding_id`` only. A finding whose owner,
    message or measure changed but whose subject and place did not (a chief
    reassigned, a gap's area recomputed) persists; its old owner, severity and
    measure are in ``persisting``'s ``*_before`` columns.
    """
    bf, btot, bsum, bname = _parts(before, "first (before)")
    af, atot, asum, aname = _parts(after, "second (after)")
    bids = bf["finding_id"].astype(str)
    aids = af["finding_id"].astype(str)
    fixed = _geo(bf[~bids.isin(set(aids))], bf)
    created = _geo(af[~aids.isin(set(bids))], af)
    keep = af[aids.isin(set(bids))]
    old = pd.DataFrame(bf).drop_duplicates("finding_id").set_index(bf["finding_id"].astype(str).drop_duplicates())
    ids = keep["finding_id"].astype(str)
    persisting = keep.copy()
    for col in ("severity", "owner", "measure"):
        if col in old.columns:
            persisting[f"{col}_before"] = ids.map(old[col]).to_numpy()
    persisting = _geo(persisting, af)
    if "severity_before" in persisting.columns:
        changed = persisting[persisting["severity"].astype(str) != persisting["severity_before"].astype(str)]
    else:
        changed = persisting.iloc[0:0]
    changed = _geo(changed, af)
    totals = _totals_frame(_flat_totals(btot, bf), _flat_totals(atot, af))
    return Comparison(fixed=fixed, created=created, persisting=persisting, changed_severity=changed,
                      totals=totals, villages=_villages_frame(bsum, asum), before_name=bname, after_name=aname)

