"""Write the demo district (:func:`gisgrid.demo.district.make_district`) as an office would deliver it."""

from __future__ import annotations

import os
from pathlib import Path

import tomli_w
import tomllib

from gisgrid import io
from gisgrid.demo.district import make_district

__all__ = ["write_district_demo"]


def _town_toml(text: str) -> str:
    """The demo town's config without its patrol tracks (the district demo writes none)."""
    data = tomllib.loads(text)
    data["sources"].pop("patrols", None)
    data.pop("patrols", None)
    return tomli_w.dumps(data)


def write_district_demo(out: str | os.PathLike[str], *, towns: int = 24, grids: int = 60,
                        hand_drawn: bool = True) -> list[Path]:
    """Write the demo district to ``out`` and return the files written.

    ``district.toml``, ``district.gpkg`` (its boundary), ``district_truth.geojson`` (and ``.csv``) and one
    folder per town under ``towns/<id>/`` (``town.gpkg``, ``grid_staff.csv`` in GBK, ``river_chiefs.xlsx``,
    ``truth.geojson``, ``gisgrid.toml`` without patrol tracks).
    """
    demo = make_district(towns=towns, grids=grids, hand_drawn=hand_drawn)
    folder = Path(out)
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
