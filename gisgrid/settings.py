"""Typed defaults read at call time.

Functions take ``None`` for an option to mean "use the value here", so an
analyst may change a default for a whole session (``gisgrid.settings.sliver_area_m2 = 5``).

Attributes
----------
analysis_crs : str
    ``"auto"`` picks the CGCS2000 3-degree Gauss-Kruger zone nearest the data
    (UTM outside China); otherwise any CRS string pyproj understands.
tolerance_m : float
    The digitising tolerance: a gap or overlap narrower than this (twice the
    radius of its largest inscribed circle) is the noise of hand-drawn
    borders, counted per grid for the data clerk but never a finding; a road
    crossing such a sliver or running along a border inside it is covered.
    A border traced from 1:2,000-1:10,000 imagery is within about 1.5 m of
    the truth (0.15 mm at 1:10,000); two neighbours' borders drawn apart are
    then up to 3 m apart: the default. 0 turns it off (exact geometry).
workers : int or None
    Threads for the geometry engine (None: one per CPU); shapely releases the GIL.
sliver_area_m2 : float
    Gaps and overlaps smaller than this are counted in the summary, not reported.
sliver_length_m : float
    Uncovered road pieces shorter than this are crumbs: counted in the summary, not listed; river
    pieces shorter than this are no reach.
border_tolerance_m : float
    With exact geometry (``tolerance_m = 0``): a road within this distance of two grids' edges lies on
    their border. With a tolerance, ``tolerance_m`` is that distance.
id_snap_m : float
    Finding locations are snapped to a grid of this size before hashing the id.
severities : tuple of str
    Severity levels, most severe first.
road_classes : tuple of str
    Canonical road classes, most important first.
road_uncovered_severity : dict
    Severity of an uncovered road piece by road class.
deadline_days : dict
    Days allowed to fix a finding, by severity.
default_owner : str
    Owner of findings no named person is responsible for (属地兜底).
must_check_kinds : tuple of str
    POI kinds that are must-check points.
"""

from __future__ import annotations

import os

from gisgrid.vocab import SEVERITIES

analysis_crs: str = "auto"
tolerance_m: float = 3.0
workers: int | None = None
sliver_area_m2: float = 1.0
sliver_length_m: float = 0.5
border_tolerance_m: float = 0.05
id_snap_m: float = 10.0
severities: tuple[str, ...] = SEVERITIES  # the order lives in gisgrid.vocab
road_classes: tuple[str, ...] = ("main", "secondary", "village", "lane")
road_uncovered_severity: dict[str, str] = {
    "lane": "high",
    "village": "medium",
    "secondary": "medium",
    "main": "low",
}
deadline_days: dict[str, int] = {"veto": 3, "high": 7, "medium": 15, "low": 30}
default_owner: str = "镇指挥中心 (town command center)"
must_check_kinds: tuple[str, ...] = (
    "school",
    "kindergarten",
    "market",
    "clinic",
    "water_intake",
    "town_entrance",
)


def thread_count(workers: int | None = None) -> int:
    """Threads to use: ``workers``, else :data:`workers`, else one per CPU."""
    n = workers if workers is not None else globals()["workers"]
    return max(1, int(n or os.cpu_count() or 1))
