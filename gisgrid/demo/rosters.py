"""Rosters: grid staff and river chiefs per reach, with deterministic names and phone numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from gisgrid.demo.names import _GIVEN, _PHONE_PREFIXES, _SURNAMES, _width


def _reaches(rivers: np.ndarray, village_polys: np.ndarray) -> pd.DataFrame:
    """Every (river, village) pair with a river part inside the village."""
    tree = shapely.STRtree(village_polys)
    r_idx, v_idx = tree.query(rivers, predicate="intersects")
    parts = shapely.line_merge(shapely.intersection(rivers[r_idx], village_polys[v_idx]))
    length = shapely.length(parts)
    frame = pd.DataFrame({"river": r_idx, "village": v_idx, "length": length,
                          "pieces": shapely.get_num_geometries(parts), "geometry": parts})
    frame = frame[frame["length"] > 0].sort_values(["river", "village"], kind="stable")
    return frame.reset_index(drop=True)


def _people(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """``n`` deterministic Chinese names and distinct 11-digit mobile numbers."""
    surname = rng.integers(len(_SURNAMES), size=n)
    given_len = rng.integers(1, 3, size=n)
    given = rng.integers(len(_GIVEN), size=(n, 2))
    names = [
        _SURNAMES[s] + _GIVEN[g[0]] + (_GIVEN[g[1]] if k == 2 else "")
        for s, g, k in zip(surname, given, given_len, strict=True)
    ]
    prefix = np.asarray(_PHONE_PREFIXES, dtype=object)
    phones = pd.Series(
        prefix[rng.integers(len(prefix), size=n)]
        + np.char.zfill(rng.integers(0, 100_000_000, size=n).astype(str), 8).astype(object),
        dtype=object,
    )
    dup = phones.duplicated()
    while dup.any():
        k = int(dup.sum())
        phones[dup] = (prefix[rng.integers(len(prefix), size=k)]
                       + np.char.zfill(rng.integers(0, 100_000_000, size=k).astype(str), 8)
                       .astype(object))
        dup = phones.duplicated()
    return names, [str(p) for p in phones]


def _grid_staff(rng: np.random.Generator, grid_ids: list[str],
                unstaffed: set[str]) -> pd.DataFrame:
    """One grid chief (except the unstaffed grids) and 1-3 grid members per grid."""
    n_members = rng.integers(1, 4, size=len(grid_ids))
    roles: list[str] = []
    grids: list[str] = []
    for gid, k in zip(grid_ids, n_members, strict=True):
        crew = ([] if gid in unstaffed else ["grid_chief"]) + ["grid_member"] * int(k)
        roles += crew
        grids += [gid] * len(crew)
    names, phones = _people(rng, len(roles))
    width = _width(len(roles), 4)
    return pd.DataFrame(
        {
            "person_id": [f"S{i + 1:0{width}d}" for i in range(len(roles))],
            "name": names,
            "phone": phones,
            "role": roles,
            "grid_id": grids,
        }
    )


def _river_chiefs(rng: np.random.Generator, rivers: np.ndarray, river_ids: list[str],
                  reaches: pd.DataFrame, village_ids: list[str],
                  dropped: list[int]) -> tuple[pd.DataFrame, dict[int, str]]:
    """A county chief for the longest river, a town chief per river, a village chief per reach."""
    rows: list[tuple[str, str, str | None, int | None]] = []
    longest = int(np.argmax(shapely.length(rivers)))
    rows.append(("county", river_ids[longest], None, None))
    for r, rid in enumerate(river_ids):
        rows.append(("town", rid, None, None))
        for i in reaches.index[reaches["river"] == r]:
            vid = village_ids[int(reaches.at[i, "village"])]
            rows.append(("village", rid, vid, int(i)))
    names, phones = _people(rng, len(rows))
    missing = {int(r[3]): names[k] for k, r in enumerate(rows) if r[3] in dropped}
    keep = [k for k, r in enumerate(rows) if r[3] not in dropped]
    width = _width(len(keep), 3)
    frame = pd.DataFrame(
        {
            "person_id": [f"C{i + 1:0{width}d}" for i in range(len(keep))],
            "name": [names[k] for k in keep],
            "phone": [phones[k] for k in keep],
            "level": [rows[k][0] for k in keep],
            "river_id": [rows[k][1] for k in keep],
            "village_id": pd.Series([rows[k][2] for k in keep], dtype=object),
        }
    )
    return frame, missing
