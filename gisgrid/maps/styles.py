"""How each layer looks and what the map calls it: grid palette, road strokes, point icons, the gap hatch.

Words shared with the report (finding kinds, severities, road classes, point kinds) and the severity
colours come from :mod:`gisgrid.vocab`, so the map says what the report says.
"""

from __future__ import annotations

from typing import Any

from gisgrid.vocab import KIND_ZH, ROAD_CLASS_ZH

#: Grid fill colours (no reds or oranges: those mean findings).
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#80b1d3", "#b3de69", "#fccde5", "#d9d9d9", "#ccebc5")

_ROAD_STYLE = {
    "main": {"color": "#5b3a1a", "weight": 4.5},
    "secondary": {"color": "#8c6d46", "weight": 3},
    "village": {"color": "#8f8f8f", "weight": 2},
    "lane": {"color": "#a9a9a9", "weight": 1},
}
# The English half of a road layer's name (plural: a layer holds many); the Chinese half is the vocabulary's.
_ROAD_EN = {"main": "main roads", "secondary": "secondary roads", "village": "village roads", "lane": "lanes"}
#: Road classes drawn but switched off when the map opens.
MINOR_ROAD_CLASSES = ("village", "lane")


def _road_label(cls: Any) -> str:
    """A road class as the map names it: ``"主干道 main roads"``; an unknown class as itself."""
    zh = ROAD_CLASS_ZH.get(cls)
    en = _ROAD_EN.get(cls, cls)
    return f"{zh} {en}" if zh else en


_POI_ICON = {
    "school": ("学", "#1f78b4"), "kindergarten": ("幼", "#6a3d9a"), "market": ("市", "#b15928"),
    "clinic": ("医", "#e31a1c"), "water_intake": ("水", "#1b9e77"), "town_entrance": ("入", "#33a02c"),
}
_POI_OTHER = ("点", "#555555")

#: Findings drawn in layers of their own (key, layer name, kinds); the rest go to "other findings".
_FINDING_LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("gaps", f"{KIND_ZH['area_gap']} gaps", ("area_gap",)),
    ("overlaps", f"{KIND_ZH['area_overlap']} overlaps", ("area_overlap",)),
    ("uncovered", f"{KIND_ZH['road_uncovered']} uncovered roads", ("road_uncovered",)),
    ("unassigned", f"{KIND_ZH['river_unassigned']} unassigned reaches", ("river_unassigned",)),
    ("unpatrolled", f"{KIND_ZH['patrol_partial']} unpatrolled reaches and grids", ("patrol_partial", "patrol_missing")),
)

_TOP_PANE = "ggTop"
_HATCH_ID = "gg-hatch"
_HATCH_SVG = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true" focusable="false"><defs>'
    f'<pattern id="{_HATCH_ID}" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">'
    '<rect width="8" height="8" fill="#ff0000" fill-opacity="0.12"/>'
    '<line x1="0" y1="0" x2="0" y2="8" stroke="#d00000" stroke-width="3"/></pattern></defs></svg>'
)
