"""The one vocabulary of what people read: kinds, severities, statuses, their order, colours and words.

Maps, report, XLSX sheets, notebooks and the terminal all read these tables, so
a gap is 覆盖空白 everywhere and "high" is the same red on the map and in the
charts. Each label is Chinese first, then English (``"覆盖空白 area gap"``);
:func:`label` gives one, :data:`KIND_ZH` the Chinese alone.

A ratio is shown truncated, never rounded up: 0.99996 of the town in a grid
reads 99.99%, never 100% (a shortfall must not read as full coverage), and a
ratio over nothing (no roads to cover) reads "n/a", never 100%.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = [
    "KINDS",
    "KIND_ZH",
    "METRIC_LABELS",
    "POI_KIND_LABELS",
    "ROAD_CLASS_EN",
    "ROAD_CLASS_ZH",
    "SEVERITIES",
    "SEVERITY_COLOURS",
    "SEVERITY_LABELS",
    "STATUSES",
    "STATUS_COLOURS",
    "STATUS_LABELS",
    "as_number",
    "as_shown",
    "is_missing",
    "kind_label",
    "label",
    "nearest",
    "percent",
    "village_owner",
]

#: Severities, most severe first (their order is the order of every sort and legend).
SEVERITIES: tuple[str, ...] = ("veto", "high", "medium", "low")
SEVERITY_LABELS: dict[str, str] = {"veto": "一票否决 veto", "high": "高 high", "medium": "中 medium", "low": "低 low"}
#: One palette for maps, charts and tables: darkest for the veto.
SEVERITY_COLOURS: dict[str, str] = {"veto": "#67000d", "high": "#d7301f", "medium": "#fc8d59", "low": "#fdcc8a"}

#: Every finding kind with a one-line meaning in English.
KINDS: dict[str, str] = {
    "area_gap": "area in no grid (or in no village)",
    "area_overlap": "area claimed by two or more grids (or villages)",
    "road_uncovered": "road section in no grid",
    "road_ambiguous": "road on a grid border with no clear owner",
    "river_unassigned": "river reach with no river chief",
    "grid_unstaffed": "grid with no grid chief",
    "grid_overloaded": "grid chief with more work than the limit",
    "staff_unplaced": "roster person whose grid does not exist",
    "chief_unplaced": "river chief whose river or village does not exist",
    "poi_uncovered": "must-check point in no grid",
    "checkpoint_incomplete": "must-check point missing its grid chief or river chief",
    "sensitive_section": "sensitive section (near a must-check point or border)",
    "input_repaired": "input geometry repaired or removed on load",
    "patrol_missing": "river chief or grid staff with too few valid patrols in a period",
    "patrol_partial": "patrols cover only part of the assigned reach or grid",
    "patrol_suspect": "patrol too short, too fast (a vehicle), off its route or teleporting",
    "grid_straddles": "grid lying in two or more villages (its village was taken from the largest share)",
    "outside_town": "roads or grid parts outside the town's boundary and villages (not checked)",
    # district runs (gisgrid.district.checks): between towns
    "town_gap": "land in the district in no town",
    "town_overlap": "land claimed by two or more towns",
    "person_two_towns": "one person (name and phone) grid chief in two or more towns",
    "phone_two_names": "one phone number under different names in two or more towns",
    "section_unowned": "river section between two towns (跨镇交界断面) with no town-level river chief on a side",
    "town_unassigned": "rows of a shared layer or roster whose town is blank or not a town of the district",
}
#: The Chinese name of every finding kind.
KIND_ZH: dict[str, str] = {
    "area_gap": "覆盖空白",
    "area_overlap": "多头管理(重叠)",
    "road_uncovered": "道路未覆盖",
    "road_ambiguous": "道路归属不清",
    "river_unassigned": "河段无河长",
    "grid_unstaffed": "网格无网格长",
    "grid_overloaded": "网格长超负荷",
    "staff_unplaced": "人员所在网格不存在",
    "chief_unplaced": "河长所在河段不存在",
    "poi_uncovered": "必查点位无网格",
    "checkpoint_incomplete": "必查点位责任人不全",
    "sensitive_section": "敏感地段",
    "input_repaired": "输入数据已修复",
    "patrol_missing": "巡查次数不足",
    "patrol_partial": "巡查未全覆盖",
    "patrol_suspect": "疑似虚假巡查",
    "grid_straddles": "网格跨村",
    "outside_town": "镇域外要素",
    "town_gap": "镇际空白",
    "town_overlap": "镇际重叠",
    "person_two_towns": "一人跨镇任网格长",
    "phone_two_names": "同号不同名",
    "section_unowned": "跨镇断面缺河长",
    "town_unassigned": "数据未归属镇街",
}

#: The headline numbers, as the report, the maps and the notebooks name them.
METRIC_LABELS: dict[str, str] = {
    "area_coverage": "面积覆盖率 area in a grid",
    "effective_coverage": "有人负责 staffed area",
    "road_coverage": "道路覆盖率 roads in a grid",
    "uncovered_lane_m": "未覆盖小巷农路 lanes in no grid",
}

#: Lifecycle statuses, most urgent first.
STATUSES: tuple[str, ...] = ("overdue", "reopened", "new", "persisting", "resolved")
STATUS_LABELS: dict[str, str] = {
    "overdue": "逾期 overdue",
    "reopened": "反弹 back again",
    "new": "新发现 new",
    "persisting": "未整改 persisting",
    "resolved": "已整改 fixed",
}
STATUS_COLOURS: dict[str, str] = {"overdue": "#b30000", "reopened": "#7a0177", "new": "#e34a33",
                                  "persisting": "#fdbb84", "resolved": "#31a354"}

#: Road classes, most important first, in Chinese and English.
ROAD_CLASS_ZH: dict[str, str] = {"main": "主干道", "secondary": "次干道", "village": "村道", "lane": "小巷农路"}
ROAD_CLASS_EN: dict[str, str] = {"main": "Main road", "secondary": "Secondary road", "village": "Village road",
                                 "lane": "Lane"}
#: Must-check point kinds shipped with gisgrid.
POI_KIND_LABELS: dict[str, str] = {"school": "学校 school", "kindergarten": "幼儿园 kindergarten",
                                   "market": "市场 market", "clinic": "卫生院 clinic",
                                   "water_intake": "取水口 water intake", "town_entrance": "镇入口 town entrance"}


def kind_label(kind: Any) -> str:
    """A finding kind as people read it: ``"覆盖空白 · area_gap"``; an unknown kind as itself."""
    text = str(kind)
    return f"{KIND_ZH[text]} · {text}" if text in KIND_ZH else text


def label(table: dict[str, str], key: Any) -> str:
    """The label of ``key`` in one of the label tables; the key itself when it has none."""
    text = "" if key is None else str(key)
    return table.get(text, text)


def percent(value: Any, digits: int = 2) -> str:
    """A ratio (0..1) as a percentage that never rounds a shortfall up to 100% nor a trace down to 0%.

    Parameters
    ----------
    value
        The ratio; None or NaN for "no data".
    digits
        Decimals of the percentage.

    Returns
    -------
    str
        e.g. ``"99.99%"`` for 0.99996, ``"100.00%"`` for 1, ``"<0.01%"`` for
        0.00001, ``"n/a"`` for None or NaN.
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(x):
        return "n/a"
    scale = 10.0**digits
    shown = math.floor(x * 100 * scale + 1e-9) / scale  # truncate, with a hair for binary fractions like 0.29
    if x < 1 and shown >= 100:  # the hair must not lift a shortfall to 100%
        shown = (100 * scale - 1) / scale
    if shown <= 0 < x:
        return f"<{1 / scale:.{digits}f}%"
    return f"{shown:.{digits}f}%"


def village_owner(village_id: str | None, name: str | None = None) -> str | None:
    """Return the owner string of a village: ``"<name>村委会 (<village_id>)"``.

    A name ending in 社区 gets 居委会; a name already ending in 村委会 or 居委会
    is kept as it is. None when ``village_id`` is None.
    """
    if village_id is None:
        return None
    if not name:
        return f"村委会 ({village_id})"
    if name.endswith(("村委会", "居委会")):
        body = name
    elif name.endswith("社区"):
        body = f"{name}居委会"
    else:
        body = f"{name}村委会"
    return f"{body} ({village_id})"


def as_number(value: Any) -> float | None:
    """A loose value as a finite float; None for missing, text, NaN or infinity."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def is_missing(value: Any) -> bool:
    """True for None, NaN, ``pd.NA`` and ``pd.NaT``: the one test for a missing cell (blank text is not missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def as_shown(value: Any) -> str:
    """A loose value as text to show: ``""`` for a missing one."""
    return "" if is_missing(value) else str(value)


def nearest(values: Any, choices: Iterable[str]) -> str | None:
    """The choice nearest the first of ``values`` that is close to one: the one did-you-mean of the package."""
    options = [str(c) for c in choices]
    for value in [values] if isinstance(values, str) else values:
        close = difflib.get_close_matches(str(value), options, n=1)
        if close:
            return close[0]
    return None
