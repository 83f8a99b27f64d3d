"""谁主管、谁负责: an owner for every finding, decided once, after all checks.

:func:`assign_owners` gives every finding of any check an owner and a village;
:func:`task_lists` splits the open findings into one 责任清单 per owner.

Owner strings
-------------
- a person: the roster ``name``; when two different ``person_id`` share a
  name, ``"name (person_id)"``;
- a village (the village secretary's level): ``"<name>村委会 (<village_id>)"``
  (``"<name>居委会 (...)"`` for a 社区; see :func:`gisgrid.vocab.village_owner`);
- nobody named anywhere: ``default_owner`` (``settings.default_owner``, the
  town command center);
- two or more parties (an overlap of grids A and B, a grid with two chiefs, a
  cross-boundary section): the owners joined with ``" / "``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import settings
from gisgrid.findings import (
    OWNER_JOIN,
    id_list,
    ids_cell,
    join_present,
    names_in,
    present,
    sort_findings,
    split_owner,
    unique_present,
)
from gisgrid.geometry.coverage import zones_at
from gisgrid.vocab import village_owner

if TYPE_CHECKING:
    from gisgrid.analysis import Assessment
    from gisgrid.checks.responsibility import Responsibility
    from gisgrid.model import Town

__all__ = ["DESK_KINDS", "VILLAGE_KINDS", "assign_owners", "task_lists", "village_owner"]

#: Finding kinds whose owner is the village that must name someone.
VILLAGE_KINDS = frozenset({"area_gap", "grid_unstaffed", "grid_overloaded", "grid_straddles"})
#: Finding kinds about rosters or input data: the command center (default owner) fixes them.
DESK_KINDS = frozenset({"staff_unplaced", "chief_unplaced", "input_repaired", "outside_town"})

_TASK_COLUMNS = ("finding_id", "kind", "severity", "village_id", "grid_id", "owner", "measure", "unit",
                 "message")
_CLOSED = frozenset({"fixed", "closed", "resolved", "done"})


class _OwnerBook:
    """Lookups from ids to owner strings, built from a town and its Responsibility."""

    def __init__(self, town: Town, resp: Responsibility, default: str) -> None:
        self.default = default
        names = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
        self.village = {v: village_owner(v, n) for v, n in names.items()}
        st = resp.staffing
        self.grid = dict(zip(st["grid_id"], st["owner"], strict=True)) if len(st) else {}
        self.grid_village = dict(zip(town.grids["grid_id"], town.grids["village_id"], strict=True))
        reaches = resp.reaches
        self.town_chief: dict[str, str] = {}
        self.reach_chief: dict[str, str] = {}
        self.reach_river: dict[str, str] = {}
        self.river_village_chief: dict[tuple[str, str], str] = {}
        self.river_villages: dict[str, list[str]] = {}
        for reach, river, village, tc, vc in reaches[["reach_id", "river_id", "village_id", "town_chief",
                                                      "village_chief"]].itertuples(index=False):
            self.reach_river[reach] = river
            self.river_villages.setdefault(river, [])
            if present(village) and village not in self.river_villages[river]:
                self.river_villages[river].append(village)
            if present(tc):
                self.town_chief[river] = OWNER_JOIN.join(names_in(tc))
            if present(vc):
                self.reach_chief[reach] = OWNER_JOIN.join(names_in(vc))
                self.river_village_chief[(river, village)] = self.reach_chief[reach]
        corr = resp.corridors
        if len(corr):
            town_level = corr[corr["level"] == "town"]
            for river, group in town_level.groupby("river_id")["name"]:
                self.town_chief.setdefault(str(river), OWNER_JOIN.join(unique_present(group)))
        self.section: dict[str, str] = {}
        self.section_villages: dict[str, list[str]] = {}
        sec = resp.cross_sections
        for sid, river, va, vb, ca, cb in sec[["section_id", "river_id", "village_a", "village_b", "chiefs_a",
                                               "chiefs_b"]].itertuples(index=False):
            self.section_villages[sid] = sorted(unique_present([va, vb]))
            sides = []
            for v, c in ((va, ca), (vb, cb)):
                if present(c):
                    sides.append(OWNER_JOIN.join(names_in(c)))
                elif present(v):
                    sides.append(self.village.get(v) or village_owner(v) or str(v))
            self.section[sid] = OWNER_JOIN.join(unique_present(sides)) or self.town_chief.get(river) or default
        self.grid_ids = town.grids["grid_id"].to_numpy(dtype=object)
        self.grid_tree = shapely.STRtree(np.asarray(town.grids.geometry.values, dtype=object))
        self.village_ids = town.villages["village_id"].to_numpy(dtype=object)
        self.village_tree = shapely.STRtree(np.asarray(town.villages.geometry.values, dtype=object))

    def villages(self, ids: Sequence[str]) -> str | None:
        return join_present((self.village.get(v) or village_owner(v) for v in ids), OWNER_JOIN)

    def grids(self, ids: Sequence[str]) -> str | None:
        owners: list[str] = []
        for g in ids:
            o = self.grid.get(g)
            if not present(o):
                v = self.grid_village.get(g)
                o = self.village.get(v) if present(v) else None
            owners.extend(split_owner(o))
        return join_present(owners, OWNER_JOIN)


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    return list(frame[name]) if name in frame.columns else [None] * len(frame)


def assign_owners(findings: gpd.GeoDataFrame, town: Town, responsibility: Responsibility, *,
                  default_owner: str | None = None) -> gpd.GeoDataFrame:
    """Give every finding an owner (谁主管、谁负责) and a village.

    Only rows whose ``owner`` is missing or blank are filled. ``village_id``
    is filled where missing: from the finding's grids, else both sides of its
    cross-boundary section, else the villages a whole river runs through,
    else the village(s) its representative point lies in (a tuple of ids when
    several). Owner rules, first match wins:

    1. ``staff_unplaced``, ``chief_unplaced``, ``input_repaired``,
       ``outside_town`` (roster and data upkeep): ``default_owner``;
    2. ``area_gap``, ``grid_unstaffed``, ``grid_overloaded``, ``grid_straddles``: the village(s)
       (``"<name>村委会 (<id>)"``, the level that must name someone);
    3. ``river_unassigned``: a river without a town chief (rule
       ``town_chief``) goes to ``default_owner``; a reach without a village
       chief to the river's town chief, else its village;
    4. a finding with a ``section_id`` of a cross-boundary section: the chiefs
       of both sides (a side without a chief: its village);
    5. any other finding with a ``reach_id`` or ``river_id``: the reach's
       village chief, else the river's town chief;
    6. a finding with ``grid_id`` (a tuple of ids for two grids): each grid's chief
       (an unstaffed grid: its village), joined with ``" / "``; without
       ``grid_id``, the grids its representative point lies in;
    7. the village(s) of ``village_id``;
    8. ``default_owner``.

    Parameters
    ----------
    findings
        A findings table (any kinds; extra columns kept).
    town
        The town the findings are about.
    responsibility
        The result of :func:`analyze_responsibility` for ``town``.
    default_owner
        Owner where no one is named; default ``responsibility.options["default_owner"]``,
        else ``settings.default_owner``.

    Returns
    -------
    GeoDataFrame
        A new findings table; the input is not changed.
    """
    out = findings.copy()
    if not len(out):
        return out
    default = (default_owner or (responsibility.options or {}).get("default_owner") or settings.default_owner)
    book = _OwnerBook(town, responsibility, default)
    for col in ("owner", "village_id", "grid_id"):
        if col not in out.columns:
            out[col] = None
    reps = shapely.point_on_surface(np.asarray(out.geometry.values, dtype=object))
    in_grids = zones_at(reps, book.grid_tree, book.grid_ids)
    in_villages = zones_at(reps, book.village_tree, book.village_ids)
    owners: list[Any] = []
    villages: list[Any] = []
    for i, (kind, owner, vid, gid, rule, river, reach, section) in enumerate(zip(
            out["kind"], out["owner"], out["village_id"], out["grid_id"], _column(out, "rule"),
            _column(out, "river_id"), _column(out, "reach_id"), _column(out, "section_id"), strict=True)):
        gids = id_list(gid)
        vids = id_list(vid)
        if not vids:
            from_grids = unique_present(book.grid_village.get(g) for g in gids)
            on_river = book.river_villages.get(str(river), []) if present(river) and not present(reach) else []
            on_section = book.section_villages.get(str(section), []) if present(section) else []
            vids = sorted(from_grids or on_section or on_river) or list(in_villages[i])
        villages.append(vid if present(vid) else ids_cell(vids))
        if present(owner):
            owners.append(owner)
            continue
        owners.append(_owner_of(book, kind=kind, rule=rule, vids=vids, gids=gids or list(in_grids[i]),
                                river=river, reach=reach, section=section))
    out["owner"] = pd.Series(owners, index=out.index, dtype=object)
    out["village_id"] = pd.Series(villages, index=out.index, dtype=object)
    return out


def _owner_of(book: _OwnerBook, *, kind: Any, rule: Any, vids: list[str], gids: list[str], river: Any,
              reach: Any, section: Any) -> str:
    if kind in DESK_KINDS:
        return book.default
    if kind in VILLAGE_KINDS:
        return book.villages(vids) or book.default
    if present(reach) and not present(river):
        river = book.reach_river.get(str(reach))
    if kind == "river_unassigned":
        if rule == "town_chief" or not (present(reach) or vids):
            return book.default
        return (book.town_chief.get(str(river)) if present(river) else None) or book.villages(vids) or book.default
    if present(section) and str(section) in book.section:
        return book.section[str(section)]
    if present(reach) or present(river):
        chief = book.reach_chief.get(str(reach)) if present(reach) else None
        if chief is None and present(river):
            chief = join_present((book.river_village_chief.get((str(river), v)) for v in vids), OWNER_JOIN)
        chief = chief or (book.town_chief.get(str(river)) if present(river) else None)
        if chief:
            return chief
    return book.grids(gids) or book.villages(vids) or book.default


# --------------------------------------------------------------------------- task lists
def task_lists(assessment: Assessment | pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split the open findings into one responsibility list (责任清单) per owner.

    Parameters
    ----------
    assessment
        An :class:`~gisgrid.analysis.Assessment` (anything with a
        ``findings`` attribute) or a findings table itself.

    Returns
    -------
    dict of str to DataFrame
        Owner name -> that owner's open findings, most severe first, with
        ``finding_id``, ``kind``, ``severity``, ``village_id``, ``grid_id``,
        ``owner``, ``measure``, ``unit``, ``message`` and ``deadline`` /
        ``status`` when present. A finding owned by ``"A / B"`` is on both A's
        and B's list. Findings whose ``status`` is fixed/closed are left out;
        findings without an owner go to ``settings.default_owner``. Owners are
        in name order.
    """
    findings: pd.DataFrame | None = assessment if isinstance(assessment, pd.DataFrame) else assessment.findings
    if findings is None or not len(findings):
        return {}
    frame = findings
    if "status" in frame.columns:
        frame = frame[~frame["status"].astype(str).str.lower().isin(_CLOSED)]
    if not len(frame):
        return {}
    if "measure" in frame.columns and "finding_id" in frame.columns and "severity" in frame.columns:
        frame = sort_findings(frame) if isinstance(frame, gpd.GeoDataFrame) else frame
    cols = [c for c in (*_TASK_COLUMNS, "deadline", "status") if c in frame.columns]
    table = pd.DataFrame(frame[cols]).reset_index(drop=True)
    owners = [split_owner(o) or [settings.default_owner] for o in _column(table, "owner")]
    exploded = table.assign(_who=owners).explode("_who")
    lists: dict[str, pd.DataFrame] = {}
    for who, group in exploded.groupby("_who", sort=True):
        lists[str(who)] = group.drop(columns="_who").reset_index(drop=True)
    return lists
