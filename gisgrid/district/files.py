"""Write the demo district (:func:`gisgrid.demo.district.make_district`) as an office would deliver it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import tomli_w
import tomllib

from gisgrid import io
from gisgrid.demo.district import DemoDistrict, make_district

__all__ = ["TOWN_COLUMN", "write_district_demo"]

#: The town column of the shared demo layers (``--shared``): the town's code, as a district office keeps it.
TOWN_COLUMN = "乡镇代码"


def _town_toml(text: str) -> str:
    """The demo town's config without its patrol tracks (the district demo writes none)."""
    data = tomllib.loads(text)
    data["sources"].pop("patrols", None)
    data.pop("patrols", None)
    return tomli_w.dumps(data)


def write_district_demo(out: str | os.PathLike[str], *, towns: int = 24, grids: int = 60,
                        hand_drawn: bool = True, shared: bool = False) -> list[Path]:
    """Write the demo district to ``out`` and return the files written.

    ``district.toml``, ``district.gpkg`` (its boundary), ``district_truth.geojson`` (and ``.csv``) and one
    folder per town under ``towns/<id>/`` (``town.gpkg``, ``grid_staff.csv`` in GBK, ``river_chiefs.xlsx``,
    ``truth.geojson``, ``gisgrid.toml`` without patrol tracks).

    ``shared``: the same towns as a district office keeps them, every layer and roster once for all towns
    with a town column (:data:`TOWN_COLUMN`, the town's code): ``district_layers.gpkg``, ``grid_staff.csv``,
    ``river_chiefs.xlsx``, ``truth.geojson`` (every town's planted defects, with the column), and a
    ``district.toml`` with ``partition_by`` whose ``[[towns]]`` are the codes (see :func:`_write_shared`).
    """
    demo = make_district(towns=towns, grids=grids, hand_drawn=hand_drawn)
    folder = Path(out)
    if shared:
        return _write_shared(demo, folder)
    written: list[Path] = []
    entries = []
    for tid, town in demo.towns.items():
        sub = folder / "towns" / tid
        rosters = town.source_rosters()
        written += [
            io.write_layers(town.source_layers(), sub / "town.gpkg"),
            io.write_csv(rosters["grid_staff"], sub / "grid_staff.csv", encoding="gbk"),
            io.write_xlsx({"river_chiefs": rosters["river_chiefs"]}, sub / "river_chiefs.xlsx"),
            io.write_geojson(town.truth, sub / "truth.geojson"),
            io.atomic_write_text(sub / "gisgrid.toml", _town_toml(town.config_toml())),
        ]
        entries.append({"id": tid, "name": town.name, "config": f"towns/{tid}/gisgrid.toml"})
    written.append(io.write_layers({"district": demo.boundary}, folder / "district.gpkg"))
    written.append(io.write_geojson(demo.truth[demo.truth.geometry.notna()], folder / "district_truth.geojson"))
    written.append(io.write_csv(demo.truth.drop(columns="geometry"), folder / "district_truth.csv"))
    config = {
        "district": {"name": demo.name, "boundary": {"path": "district.gpkg", "layer": "district"}},
        "compute": {"scheduler": "local"},
        "towns": entries,
    }
    written.append(io.atomic_write_text(folder / "district.toml", tomli_w.dumps(config)))
    return written


def _town_code(town: Any) -> str:
    return str(town.layers["boundary"]["town_id"].iloc[0])


def _stack(frames: dict[str, Any], codes: dict[str, Any]) -> Any:
    """The towns' frames one after the other, each row with its town's code in :data:`TOWN_COLUMN`."""
    parts = [f.drop(columns=["town_id"], errors="ignore").assign(**{TOWN_COLUMN: codes[tid]}) for tid, f in
             frames.items()]
    out = pd.concat(parts, ignore_index=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=parts[0].crs) if "geometry" in out.columns else out


def _write_shared(demo: DemoDistrict, folder: Path) -> list[Path]:
    """The demo district as shared layers with a town column, and its ``partition_by`` district config.

    The rows of each town keep their order, town after town; the roads' town code is a number (as offices
    often store codes), every other layer's and roster's is text: both are read as the same town.
    """
    codes = {tid: _town_code(town) for tid, town in demo.towns.items()}
    layers = {tid: town.source_layers() for tid, town in demo.towns.items()}
    rosters = {tid: town.source_rosters() for tid, town in demo.towns.items()}
    shared = {key: _stack({tid: layers[tid][key] for tid in layers}, codes) for key in next(iter(layers.values()))}
    shared["roads"][TOWN_COLUMN] = shared["roads"][TOWN_COLUMN].astype("int64")
    staff = _stack({tid: rosters[tid]["grid_staff"] for tid in rosters}, codes)
    chiefs = _stack({tid: rosters[tid]["river_chiefs"] for tid in rosters}, codes)
    truth = _stack({tid: town.truth for tid, town in demo.towns.items()}, codes)
    first = next(iter(demo.towns.values()))
    town_cfg = tomllib.loads(_town_toml(first.config_toml()))
    files = {"town.gpkg": "district_layers.gpkg", "grid_staff.csv": "grid_staff.csv",
             "river_chiefs.xlsx": "river_chiefs.xlsx"}
    sources = {key: {**spec, "path": files[spec["path"]], "fields": {**spec.get("fields", {}), "town_id": TOWN_COLUMN}}
               for key, spec in town_cfg["sources"].items()}
    district_truth = demo.truth.assign(towns=[",".join(codes[t] for t in cell.split(",")) for cell in
                                              demo.truth["towns"]])
    config = {
        "district": {"name": demo.name, "partition_by": "town_id",
                     "boundary": {"path": "district.gpkg", "layer": "district"}},
        "town": {k: v for k, v in town_cfg.get("town", {}).items() if k != "name"},
        **{k: v for k, v in town_cfg.items() if k not in ("town", "sources")},
        "sources": sources,
        "towns": [{"id": codes[tid], "name": town.name} for tid, town in demo.towns.items()],
        "compute": {"scheduler": "local"},
    }
    return [
        io.write_layers(shared, folder / "district_layers.gpkg"),
        io.write_csv(staff, folder / "grid_staff.csv", encoding="gbk"),
        io.write_xlsx({"river_chiefs": chiefs}, folder / "river_chiefs.xlsx"),
        io.write_geojson(truth, folder / "truth.geojson"),
        io.write_layers({"district": demo.boundary}, folder / "district.gpkg"),
        io.write_geojson(district_truth[district_truth.geometry.notna()], folder / "district_truth.geojson"),
        io.write_csv(district_truth.drop(columns="geometry"), folder / "district_truth.csv"),
        io.atomic_write_text(folder / "district.toml", tomli_w.dumps(config)),
    ]
