"""The source form: field names and values as a township office delivers them.

Also the ``gisgrid.toml`` that maps the source form back to canonical.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import tomli_w

from gisgrid import settings
from gisgrid.demo.patrols import MONTH as PATROL_MONTH
from gisgrid.demo.patrols import SOURCE_FIELDS as PATROL_FIELDS

LAYER_KEYS: tuple[str, ...] = ("boundary", "villages", "grids", "roads", "rivers", "pois")
ROSTER_KEYS: tuple[str, ...] = ("grid_staff", "river_chiefs")

#: Source (delivered) field names per layer/roster: canonical -> source.
SOURCE_FIELDS: dict[str, dict[str, str]] = {
    "boundary": {"name": "name", "town_id": "town_id"},
    "villages": {"village_id": "村编码", "name": "村名", "households": "户数", "population": "人口"},
    "grids": {"grid_id": "grid_id", "village_id": "village_id", "name": "name",
              "households": "households"},
    "roads": {"road_id": "道路编号", "road_class": "道路等级", "name": "道路名称"},
    "rivers": {"river_id": "river_id", "name": "name", "level": "level", "width_m": "width_m"},
    "pois": {"poi_id": "poi_id", "kind": "kind", "name": "name"},
    "grid_staff": {"person_id": "人员编号", "name": "姓名", "phone": "电话", "role": "职务",
                   "grid_id": "网格编号"},
    "river_chiefs": {"person_id": "人员编号", "name": "姓名", "phone": "电话", "level": "级别",
                     "river_id": "河道编号", "village_id": "村编码"},
}

#: Source (delivered) values per layer/roster and column: source -> canonical.
SOURCE_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "roads": {"road_class": {"主干道": "main", "次干道": "secondary", "村道": "village",
                             "小巷": "lane"}},
    "grid_staff": {"role": {"网格长": "grid_chief", "网格员": "grid_member"}},
    "river_chiefs": {"level": {"县级": "county", "镇级": "town", "村级": "village"}},
}


# tomli_w writes no comments; this note ends the tolerance line, as readers (and tests) expect
_TOLERANCE_NOTE = "gaps and overlaps narrower than this are digitising noise"


def _to_source(key: str, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col, mapping in SOURCE_VALUES.get(key, {}).items():
        reverse = {canonical: source for source, canonical in mapping.items()}
        out[col] = out[col].map(reverse).astype(out[col].dtype)
    return out.rename(columns=SOURCE_FIELDS[key])


def _config_toml(name: str, *, gpkg: str, staff_csv: str, chiefs_xlsx: str) -> str:
    """The ``gisgrid.toml`` text of :meth:`gisgrid.demo.DemoData.config_toml`."""
    sources: dict[str, dict[str, Any]] = {}
    for key in (*LAYER_KEYS, *ROSTER_KEYS):
        if key in LAYER_KEYS:
            source: dict[str, Any] = {"path": gpkg, "layer": key}
        elif key == "grid_staff":
            source = {"path": staff_csv, "encoding": "gbk"}
        else:
            source = {"path": chiefs_xlsx}
        source["fields"] = SOURCE_FIELDS[key]
        if key in SOURCE_VALUES:
            source["values"] = SOURCE_VALUES[key]
        sources[key] = source
    # the coverage table is one line long, so its note goes at the end of the dump
    coverage = tomli_w.dumps({"coverage": {"tolerance_m": float(settings.tolerance_m)}}).rstrip("\n")
    # a month of patrol tracks as a phone app exports them (GCJ-02, Chinese headers), judged for that month
    sources["patrols"] = {"path": "patrols.csv", "crs": "GCJ-02", "fields": PATROL_FIELDS}
    return "\n".join([
        tomli_w.dumps({"town": {"name": name, "crs": "auto"}}),
        f"{coverage}  # {_TOLERANCE_NOTE}\n",
        tomli_w.dumps({"sources": sources}),
        tomli_w.dumps({"patrols": {"month": PATROL_MONTH}}),
    ])
