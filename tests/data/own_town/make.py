"""Make the "own data" town in this folder: files shaped the way a town's own GIS staff hand them over.

Run ``python tests/data/own_town/make.py`` to regenerate (the files are committed; the test reads them).
Four villages of the demo town (东社镇), with what the demo's tidy files have and real ones often lack:

- ``村界.shp`` (GBK): villages with Chinese column names (``村代码``, ``村名``).
- ``网格.shp`` (GBK): grids with their own id column (``网格编码``) and **no village column**.
- ``道路.geojson`` (WGS84): roads with **no id**, Chinese classes, one class the config does not map
  (``机耕路``), some without a class, and one road that runs far beyond the town.
- ``必查点位.csv`` (GBK): points as 经度/纬度 columns with Chinese kinds.
- ``网格员.csv`` (GBK): the grid staff roster with Chinese headers and roles.
- ``gisgrid.toml``: the config a new user writes from docs/data.md: fields, values, a road_class default.

``truth.json`` records what the derivations must give: each grid's village (from the demo's own data).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
VILLAGES = ("V01", "V02", "V03", "V04")
CLASS_ZH = {"main": "主干道", "secondary": "次干道", "village": "村道", "lane": "小巷"}

CONFIG = """\
# The config a new analyst writes for their own files (see docs/data.md).
[town]
name = "东社镇(四村)"

[sources.villages]
path = "村界.shp"
encoding = "gbk"
fields = { village_id = "村代码", name = "村名" }

[sources.grids]
path = "网格.shp"
encoding = "gbk"
fields = { grid_id = "网格编码", name = "网格名称" }   # no village column: gisgrid derives it

[sources.roads]
path = "道路.geojson"
fields = { road_class = "等级", name = "路名" }          # no id column: gisgrid derives it
values = { road_class = { "主干道" = "main", "次干道" = "secondary", "村道" = "village", "小巷" = "lane" } }
defaults = { road_class = "lane" }                       # 机耕路 and blanks count as lanes

[sources.pois]
path = "必查点位.csv"
encoding = "gbk"
crs = "EPSG:4490"
fields = { poi_id = "编号", kind = "类型", name = "名称" }

[sources.pois.values.kind]              # the same as values = { kind = { ... } }, one per line
"学校" = "school"
"市场" = "market"
"卫生院" = "clinic"
"幼儿园" = "kindergarten"
"取水口" = "water_intake"
"镇入口" = "town_entrance"

[sources.grid_staff]
path = "网格员.csv"
encoding = "gbk"
fields = { person_id = "工号", name = "姓名", role = "职务", grid_id = "网格编码", phone = "手机" }
values = { role = { "网格长" = "grid_chief", "网格员" = "grid_member" } }
"""


def main() -> None:
    import gisgrid

    town = gisgrid.load_town(ROOT / "data" / "geo" / "gisgrid.toml")
    villages = town.villages[town.villages["village_id"].isin(VILLAGES)]
    area = shapely.union_all(villages.geometry.values)
    grids = town.grids[town.grids["village_id"].isin(VILLAGES)]
    roads = town.roads[town.roads.geometry.intersects(area)].copy()
    roads = roads[roads.geometry.within(area.buffer(-5)) | (np.arange(len(roads)) % 7 == 0)]
    roads = roads.set_geometry(roads.geometry.intersection(area)).explode(index_parts=False)
    roads = roads[roads.geometry.geom_type == "LineString"]
    cls = roads["road_class"].map(CLASS_ZH).to_numpy(dtype=object)
    cls[3::41] = "机耕路"
    cls[5::53] = None
    # one road that leaves the town: the kind of extract a county GIS hands over
    x0, y0, x1, y1 = area.bounds
    far = shapely.LineString([((x0 + x1) / 2, (y0 + y1) / 2), (x1 + 1500.0, y1 + 1500.0)])
    roads_out = gpd.GeoDataFrame(
        {"等级": [*cls, "主干道"], "路名": [*roads["name"].fillna("").to_numpy(dtype=object), "过境公路"]},
        geometry=[*roads.geometry.to_numpy(), far], crs=town.crs).to_crs("EPSG:4326")
    pois = town.pois[town.pois.geometry.within(area)]
    kind_zh = {"school": "学校", "market": "市场", "clinic": "卫生院", "kindergarten": "幼儿园",
               "water_intake": "取水口", "town_entrance": "镇入口"}
    ll = pois.to_crs("EPSG:4490")
    pois_out = pd.DataFrame({"编号": ll["poi_id"], "类型": ll["kind"].map(kind_zh), "名称": ll["name"],
                             "经度": ll.geometry.x.round(7), "纬度": ll.geometry.y.round(7)})
    staff = town.grid_staff[town.grid_staff["grid_id"].isin(set(grids["grid_id"]))]
    staff_out = pd.DataFrame({"工号": staff["person_id"], "姓名": staff["name"],
                              "职务": staff["role"].map({"grid_chief": "网格长", "grid_member": "网格员"}),
                              "网格编码": staff["grid_id"], "手机": staff["phone"]})
    for old in HERE.glob("*"):
        if old.name not in {"make.py"}:
            old.unlink()
    gpd.GeoDataFrame({"村代码": villages["village_id"], "村名": villages["name"]}, geometry=villages.geometry,
                     crs=town.crs).to_crs("EPSG:4490").to_file(HERE / "村界.shp", encoding="gbk")
    gpd.GeoDataFrame({"网格编码": grids["grid_id"], "网格名称": grids["name"]}, geometry=grids.geometry,
                     crs=town.crs).to_crs("EPSG:4490").to_file(HERE / "网格.shp", encoding="gbk")
    roads_out.to_file(HERE / "道路.geojson", driver="GeoJSON", COORDINATE_PRECISION=7)
    pois_out.to_csv(HERE / "必查点位.csv", index=False, encoding="gbk")
    staff_out.to_csv(HERE / "网格员.csv", index=False, encoding="gbk")
    (HERE / "gisgrid.toml").write_text(CONFIG, encoding="utf-8")
    truth = {"grid_village": dict(zip(grids["grid_id"], grids["village_id"], strict=True)),
             "roads": len(roads_out), "outside_road": "过境公路"}
    (HERE / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
