"""Scopes: which features the town, a village's or an owner's map shows, as masks over the prepared layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gisgrid import settings
from gisgrid._errors import ConfigError
from gisgrid.findings import id_list
from gisgrid.maps.layers import _Layer
from gisgrid.maps.prepare import _Model

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment


@dataclass
class _Scope:
    """Which features one map shows (None: all) and what it is called."""

    kind: str  # "town", "village", "owner"
    label: str
    masks: dict[str, np.ndarray | None]


def _road_masks(model: _Model, road_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class masks from row positions in the town's roads table."""
    out = {}
    for cls in settings.road_classes:
        lay = model.layers[f"roads_{cls}"]
        pos = lay.attrs["pos"].to_numpy() if len(lay) else np.zeros(0, np.int64)
        out[f"roads_{cls}"] = np.isin(pos, road_rows)
    return out


def _village_scope(model: _Model, assessment: Assessment, village: str) -> _Scope:
    town = assessment.town
    vids = town.villages["village_id"].astype(str).to_numpy()
    hit = np.flatnonzero(vids == str(village))
    if not len(hit):
        msg = f"no village with id {village!r}."
        raise ConfigError(msg, fix=f"use one of {sorted(vids)[:10]} …")
    v = int(hit[0])
    L = model.layers
    rel = model.relations()
    vmask = np.zeros(len(vids), bool)
    vmask[rel.village_neighbours[1][rel.village_neighbours[0] == v]] = True
    vmask[v] = True
    # Road positions in the full roads table that touch this village; the class layers hold positions per class.
    road_rows = rel.road_village[0][rel.road_village[1] == v]
    fat = L["findings"].attrs
    near = np.isin(fat["pos"].to_numpy(), rel.finding_village[0][rel.finding_village[1] == v])
    # a finding about several villages shows on each of their maps
    fmask = np.array([str(village) in id_list(v) for v in fat["village_id"]], dtype=bool) | (
        fat["village_id"].isna().to_numpy() & near)
    masks: dict[str, np.ndarray | None] = {
        "boundary": None,
        "villages": np.isin(L["villages"].attrs["village_id"].to_numpy(), vids[vmask]),
        "grids": (L["grids"].attrs["village_id"].astype(object) == str(village)).to_numpy(),
        "pois": _full(L["pois"], rel.poi_village == v),
        "findings": fmask,
    }
    masks.update(_road_masks(model, road_rows))
    for key in ("rivers", "corridors", "sensitive", "patrols"):
        if key in L:
            masks[key] = (L[key].attrs["village_id"].astype(object) == str(village)).to_numpy()
    name = model.village_names.get(str(village), str(village))
    return _Scope("village", f"{name} ({village})", masks)


def _full(layer: _Layer, full_mask: np.ndarray) -> np.ndarray:
    """A mask over the source frame's rows, as a mask over the layer's (located) features."""
    pos = layer.attrs["pos"].to_numpy(dtype=np.int64) if len(layer) else np.zeros(0, np.int64)
    return full_mask[pos] if len(full_mask) else np.zeros(0, dtype=bool)


def _owner_scope(model: _Model, assessment: Assessment, owner: str) -> _Scope:
    L = model.layers
    rel = model.relations()
    gmask = np.array([str(o) == owner for o in model.grid_owner], dtype=bool)
    fat = L["findings"].attrs
    fmask = np.array([owner in o for o in fat["owners"]], dtype=bool)
    if not gmask.any() and not fmask.any() and not any(
            owner in o for k in ("rivers", "sensitive") if k in L for o in L[k].attrs["owners"]):
        msg = f"no grid, reach or finding belongs to {owner!r}."
        raise ConfigError(msg, fix=f"use an owner named in the findings, e.g. {model.owners[:5]}")
    gidx = np.flatnonzero(gmask)
    road_rows = np.unique(rel.road_grid[0][np.isin(rel.road_grid[1], gidx)])
    pmask = np.isin(rel.poi_grid, gidx)
    # Villages: those of the owner's grids and findings.
    vil_ids = set(L["grids"].attrs["village_id"][gmask].astype(str))
    vil_ids.update(i for v in fat["village_id"][fmask] for i in id_list(v))
    masks: dict[str, np.ndarray | None] = {
        "boundary": None,
        "villages": np.isin(L["villages"].attrs["village_id"].to_numpy(), list(vil_ids)),
        "grids": gmask,
        "pois": _full(L["pois"], pmask),
        "findings": fmask,
    }
    masks.update(_road_masks(model, road_rows))
    if "rivers" in L:
        masks["rivers"] = np.array([owner in o for o in L["rivers"].attrs["owners"]], dtype=bool)
        vil_ids.update(str(v) for v in L["rivers"].attrs["village_id"][masks["rivers"]] if isinstance(v, str))
        masks["villages"] = np.isin(L["villages"].attrs["village_id"].to_numpy(), list(vil_ids))
    if "corridors" in L:
        masks["corridors"] = (L["corridors"].attrs["owner"].astype(object) == owner).to_numpy()
    if "sensitive" in L:
        masks["sensitive"] = np.array([owner in o for o in L["sensitive"].attrs["owners"]], dtype=bool)
    if "patrols" in L:  # a chief's own walks
        masks["patrols"] = np.array([owner in o for o in L["patrols"].attrs["owners"]], dtype=bool)
    return _Scope("owner", owner, masks)


def _scope_for(model: _Model, assessment: Assessment, *, village: str | None, owner: str | None) -> _Scope:
    if village is not None:
        return _village_scope(model, assessment, str(village))
    if owner is not None:
        return _owner_scope(model, assessment, str(owner))
    return _Scope("town", model.town_name, {})
