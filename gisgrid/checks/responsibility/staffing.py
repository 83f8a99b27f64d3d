"""Grid staffing: each grid's chief(s) and members, and who owns it (the one staffing table)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from gisgrid.checks.responsibility._shapes import _person_labels
from gisgrid.findings import (
    OWNER_JOIN,
    group_join,
)
from gisgrid.model import Town
from gisgrid.vocab import village_owner

logger = logging.getLogger(__name__)



# --------------------------------------------------------------------------- staffing
def staffing_table(town: Town) -> pd.DataFrame:
    """The one staffing table: per grid its chief(s), members and owner (:attr:`Responsibility.staffing`).

    Parameters
    ----------
    town
        A validated town.

    Returns
    -------
    DataFrame
        One row per grid: ``grid_id``, ``village_id``, ``chief_id``, ``chief_name``, ``chief_phone``,
        ``members``, ``member_count``, ``staffed``, ``owner`` (the chief(s), or the village that must name one).
    """
    names = dict(zip(town.villages["village_id"], town.villages["name"], strict=True))
    return _staffing(town, _person_labels(town), {v: village_owner(v, n) for v, n in names.items()})


def _staffing(town: Town, labels: Mapping[str, str], vowner: Mapping[str, str | None]) -> pd.DataFrame:
    grids = town.grids
    staff = town.grid_staff
    placed = staff[staff["grid_id"].isin(set(grids["grid_id"]))].drop_duplicates(["grid_id", "person_id", "role"])
    chiefs = placed[placed["role"] == "grid_chief"]
    members = placed[placed["role"] == "grid_member"]
    out = pd.DataFrame({"grid_id": grids["grid_id"].to_numpy(dtype=object),
                        "village_id": grids["village_id"].to_numpy(dtype=object)})
    chief_label = [labels.get(p, n) for p, n in zip(chiefs["person_id"], chiefs["name"], strict=True)]
    for col, frame, values, sep in (
        ("chief_id", chiefs, chiefs["person_id"], ", "), ("chief_name", chiefs, chiefs["name"], ", "),
        ("chief_phone", chiefs, chiefs["phone"], ", "), ("owner", chiefs, chief_label, OWNER_JOIN),
        ("members", members, members["name"], ", "),
    ):
        out[col] = out["grid_id"].map(group_join(frame["grid_id"], values, sep))
    count = members.drop_duplicates(["grid_id", "person_id"])["grid_id"].value_counts()
    out["member_count"] = out["grid_id"].map(count).fillna(0).astype(int)
    out["staffed"] = out["chief_id"].notna().to_numpy(dtype=bool)
    for col in ("chief_id", "chief_name", "chief_phone", "members", "owner"):
        # group_join keeps only present text (the rosters were cleaned by model): missing is NaN, made None
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["owner"] = [o if s else vowner.get(v) or village_owner(v)
                    for o, s, v in zip(out["owner"], out["staffed"], out["village_id"], strict=True)]
    two = chiefs["grid_id"].value_counts()
    if (two > 1).any():
        logger.info("%d grid(s) have more than one grid chief: %s", int((two > 1).sum()),
                    ", ".join(two.index[two > 1][:10]))
    cols = ["grid_id", "village_id", "chief_id", "chief_name", "chief_phone", "members", "member_count",
            "staffed", "owner"]
    return out[cols].reset_index(drop=True)
