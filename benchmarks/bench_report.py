"""The report folder at 1,000 and 20,000 findings: seconds per output and in total.

Usage::

    python benchmarks/bench_report.py                        # 1,000 and 20,000 findings
    python benchmarks/bench_report.py --findings 500         # one size
    python benchmarks/bench_report.py --xlsx-only            # the workbook alone, openpyxl vs XlsxWriter

The findings are made in code on the demo town (:func:`synthetic_assessment`): its real villages, grids and
grid chiefs, the kinds, severities, messages and id lists of a real run (overlaps between two or three grids,
gaps between up to 40 grids, findings across two villages), and a lifecycle (new, persisting, overdue, back
again, fixed) as a long-running history gives. ``tests/test_report_browser.py`` opens the same report.

Each output of :func:`gisgrid.report.write_report` is timed on its own (report.html, findings.csv,
findings.xlsx, findings.geojson, hygiene.csv), then the whole folder once more through ``write_report``
itself. ``--xlsx-only`` writes the same sheets with openpyxl's write-only mode (the writer before) and with
XlsxWriter (the one writer now, :func:`gisgrid.io.write_xlsx`), to show why one was picked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgrid import io, report
from gisgrid.analysis import Assessment
from gisgrid.findings import make_findings
from gisgrid.model import Town
from gisgrid.vocab import village_owner

#: The day the synthetic history is read on.
AS_OF = dt.date(2026, 11, 30)

# kind: (share of findings, unit, rule); shares as in a hand-drawn county's first runs
_KINDS: dict[str, tuple[float, str, str]] = {
    "road_uncovered": (0.30, "m", "road_lane"),
    "sensitive_section": (0.14, "m", "school_200m"),
    "area_gap": (0.12, "m2", "no_grid"),
    "area_overlap": (0.10, "m2", "grid_overlap"),
    "input_repaired": (0.09, "m2", "make_valid"),
    "road_ambiguous": (0.08, "m", "road_border"),
    "river_unassigned": (0.05, "m", "village_chief"),
    "checkpoint_incomplete": (0.04, "count", "checkpoint_chiefs"),
    "grid_unstaffed": (0.03, "m2", "grid_chief"),
    "grid_overloaded": (0.03, "count", "workload"),
    "poi_uncovered": (0.02, "count", "veto_points"),
}
_STATUSES = {"persisting": 0.42, "new": 0.22, "overdue": 0.16, "resolved": 0.14, "reopened": 0.06}
_DEADLINE_DAYS = {"veto": 3, "high": 7, "medium": 15, "low": 30}
_ROAD_CLASS = {"lane": ("小巷农路", "Lane"), "village": ("村道", "Village road"),
               "secondary": ("次干道", "Secondary road")}


@functools.lru_cache(maxsize=1)
def demo_town() -> Town:
    """The demo town (21 villages, 200 grids, a roster of 600), made once per process."""
    from gisgrid.demo import make_demo

    return make_demo().town()


def synthetic_assessment(n: int, *, seed: int = 13, town: Town | None = None) -> tuple[Assessment, pd.DataFrame]:
    """An assessment of the demo town with ``n`` findings, and their lifecycle as of :data:`AS_OF`.

    Parameters
    ----------
    n
        Findings, open and fixed together.
    seed
        The random draw (the same seed gives the same findings and ids).
    town
        The town (default: :func:`demo_town`).

    Returns
    -------
    tuple
        The :class:`~gisgrid.analysis.Assessment` (findings without lifecycle, a summary per village with
        real area coverage, totals whose ratios sit just below 1, hygiene per grid, the must-check points)
        and the lifecycle table as :meth:`gisgrid.history.History.record` returns it.
    """
    town = demo_town() if town is None else town
    rng = np.random.default_rng(seed)
    grids = town.grids.reset_index(drop=True)
    villages = town.villages.set_index("village_id")
    vnames = villages["name"].astype(str).to_dict()
    chiefs = (town.grid_staff[town.grid_staff["role"] == "grid_chief"].drop_duplicates("grid_id")
              .set_index("grid_id")["name"].astype(str).to_dict())
    by_village = grids.groupby("village_id").indices
    road_names = [str(x) for x in town.roads["name"].dropna().unique()] or ["无名路"]
    rivers = town.rivers[["river_id", "name"]].astype(str).to_numpy().tolist() or [["H01", "无名河"]]
    pois = town.pois[["poi_id", "kind", "name"]].astype(str).to_numpy().tolist() or [["P001", "school", "无名小学"]]
    centre = shapely.get_coordinates(grids.geometry.representative_point().to_numpy())

    kinds = list(_KINDS)
    share = np.array([_KINDS[k][0] for k in kinds])
    kind = rng.choice(kinds, size=n, p=share / share.sum())
    g = rng.integers(0, len(grids), size=n)
    grid_ids = grids["grid_id"].astype(str).to_numpy()
    grid_village = grids["village_id"].astype(str).to_numpy()
    # the neighbour of a grid: the next grid of its village (overlaps and shared borders are between neighbours)
    nxt = np.arange(len(grids))
    for idx in by_village.values():
        nxt[idx] = np.roll(idx, -1)
    xy = centre[g] + rng.normal(0, 60, (n, 2))
    size = rng.uniform(8, 90, n)
    length = rng.lognormal(3.5, 1.0, n) + 1
    u = rng.random((n, 4))
    many = rng.choice([2, 2, 2, 3, 4, 8, 16, 40], size=n)  # a few gaps run along dozens of grids
    area_like = np.isin(kind, ["area_gap", "area_overlap", "grid_unstaffed", "input_repaired"])
    line_like = np.isin(kind, ["road_uncovered", "road_ambiguous", "river_unassigned", "sensitive_section"])
    boxes = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + size, xy[:, 1] + size * (0.2 + 0.8 * u[:, 0]))
    lines = shapely.linestrings(np.stack([xy, xy + np.c_[length * 0.8, length * 0.6]], axis=1))
    points = shapely.points(xy)
    geoms = np.where(area_like, boxes, np.where(line_like, lines, points))
    measures = np.where(area_like, shapely.area(boxes), np.where(line_like, length, 1.0))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        k = str(kind[i])
        gi = int(g[i])
        gid, vid = str(grid_ids[gi]), str(grid_village[gi])
        x, y = xy[i]
        vname = vnames.get(vid, vid)
        unit, rule = _KINDS[k][1], _KINDS[k][2]
        measure = float(measures[i])
        chief = chiefs.get(gid)
        committee = village_owner(vid, vname)
        grid_cell: Any = gid
        village_cell: Any = vid
        owner = chief or committee
        severity = "high"
        road = road_names[i % len(road_names)]
        poi = pois[i % len(pois)]
        if k == "area_gap":
            severity = "high" if measure > 500 else "medium"
            owner, grid_cell = committee, None
            near = [str(grid_ids[j]) for j in by_village[vid]]
            m = int(many[i])
            between = near[:m] if m <= len(near) else near + [str(grid_ids[(gi + j) % len(grids)])
                                                              for j in range(m - len(near))]
            if u[i, 1] < 0.15:  # a gap across a village border
                other = str(grid_village[(gi + 17) % len(grids)])
                if other != vid:
                    village_cell = (vid, other)
            message = (f"{measure:,.0f} m² in village {vname} ({vid}) lies in no grid (between grids "
                       f"{','.join(between)}); add it to a grid.")
        elif k == "area_overlap":
            ids = list(dict.fromkeys([gid, str(grid_ids[nxt[gi]])] + ([str(grid_ids[nxt[nxt[gi]]])]
                                                                       if u[i, 1] < 0.2 else [])))
            grid_cell = tuple(ids) if len(ids) > 1 else gid
            owner = " / ".join(dict.fromkeys(chiefs.get(x) or committee for x in ids))
            message = (f"{measure:,.0f} m² is claimed by grids {','.join(ids)}; one place must have one master "
                       f"— redraw the border.")
        elif k == "road_uncovered":
            cls = "lane" if u[i, 1] < 0.7 else "village" if u[i, 1] < 0.9 else "secondary"
            zh, en = _ROAD_CLASS[cls]
            severity = "medium" if cls == "lane" else "high"
            owner, grid_cell = committee, None
            message = (f"{en} ({zh}) '{road}' (R{(i * 7919) % 60000:05d}) has {measure:,.0f} m outside any grid "
                       f"in village {vname} ({vid}); extend a grid over it.")
        elif k == "road_ambiguous":
            severity = "medium"
            other = str(grid_ids[nxt[gi]])
            grid_cell = tuple(dict.fromkeys([gid, other])) if other != gid else gid
            message = (f"Road '{road}' runs {measure:,.0f} m along the border of grids {gid},{other} and neither "
                       f"is named its owner; settle it in [assign].")
        elif k == "sensitive_section":
            severity = "veto" if u[i, 1] < 0.08 else "high"
            message = (f"Sensitive section near {poi[1]} '{poi[2]}' ({poi[0]}): {measure:,.0f} m of road within "
                       f"200 m in grid {gid} of {vname} ({vid}); patrol it daily.")
        elif k == "river_unassigned":
            river_id, river = rivers[i % len(rivers)]
            grid_cell = None
            a = 5000 * float(u[i, 2])
            message = (f"reach {river_id}-{vid}-{i % 3 + 1} of river {river} ({river_id}) in {vname} "
                       f"({vid}), chainage {a:,.0f}-{a + measure:,.0f} m, has no village-level river chief "
                       f"(村级河长); appoint one in the river_chiefs roster.")
        elif k == "checkpoint_incomplete":
            message = (f"Must-check point {poi[1]} '{poi[2]}' ({poi[0]}) in grid {gid} has no river chief; "
                       f"name one.")
        elif k == "grid_unstaffed":
            owner = committee
            measure = 2e5 + 4e5 * float(u[i, 2])
            message = (f"grid {gid} in {vname} ({vid}) has no grid chief (网格长); name one in the grid_staff "
                       f"roster.")
        elif k == "grid_overloaded":
            severity = "medium"
            measure = float(4 + i % 8)
            message = f"grid chief {chief or '—'} ({gid}) holds {measure:.0f} grids; the limit is 3."
        elif k == "poi_uncovered":
            severity = "veto"
            owner, grid_cell = committee, None
            message = (f"Must-check point {poi[1]} '{poi[2]}' ({poi[0]}) in village {vname} ({vid}) is in no "
                       f"grid; put it in a grid and name its chief. [Veto item (一票否决)]")
        else:  # input_repaired
            severity, owner = "low", "镇指挥中心 (town command center)"
            message = (f"grids {gid}: invalid polygon (Ring Self-intersection[{x:.6f} {y:.6f}]) repaired with "
                       f"make_valid(method='structure'); correct the source data.")
        rows.append({"kind": k, "severity": severity, "village_id": village_cell, "grid_id": grid_cell,
                     "owner": owner, "measure": measure, "unit": unit, "rule": rule, "message": message})
    frame = pd.DataFrame(rows)
    frame["geometry"] = geoms
    findings = make_findings(frame, crs=town.crs, key=[f"synthetic:{seed}:{i}" for i in range(n)])
    life = _lifecycle(findings, rng)
    return _assessment(town, findings, life, rng), life


def _lifecycle(findings: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Statuses and dates a history of weekly runs gives: overdue ones past their deadline, fixed ones dated."""
    n = len(findings)
    statuses = list(_STATUSES)
    status = rng.choice(statuses, size=n, p=list(_STATUSES.values()))
    days = np.array([_DEADLINE_DAYS[s] for s in findings["severity"]])
    age = np.where(status == "new", 0, rng.integers(7, 120, size=n))
    age = np.where(status == "overdue", np.maximum(age, days + 1), np.where(status == "persisting",
                                                                              np.minimum(age, days), age))
    first = [AS_OF - dt.timedelta(days=int(a)) for a in age]
    opened = [AS_OF - dt.timedelta(days=int(a) if s != "reopened" else int(rng.integers(0, 3)))
              for a, s in zip(age, status, strict=True)]
    deadline = [o + dt.timedelta(days=int(d)) for o, d in zip(opened, days, strict=True)]
    life = findings.copy()
    life["status"] = status
    life["first_seen"] = first
    life["last_seen"] = [AS_OF - dt.timedelta(days=7) if s == "resolved" else AS_OF for s in status]
    life["opened_on"] = opened
    life["deadline"] = deadline
    life["days_overdue"] = [max((AS_OF - d).days, 0) if s == "overdue" else 0
                            for d, s in zip(deadline, status, strict=True)]
    life["resolved_on"] = [AS_OF if s == "resolved" else None for s in status]
    life["times_reopened"] = np.where(status == "reopened", rng.integers(1, 4, size=n), 0)
    return life


def _assessment(town: Town, findings: gpd.GeoDataFrame, life: gpd.GeoDataFrame,
                rng: np.random.Generator) -> Assessment:
    villages = town.villages.set_index("village_id")
    area = villages.area
    grid_area = town.grids.dissolve("village_id").area.reindex(area.index).fillna(0.0)
    gaps = findings[findings["kind"] == "area_gap"]
    lost = gaps.assign(v=[v[0] if isinstance(v, tuple) else v for v in gaps["village_id"]]).groupby("v")["measure"]
    gap_m2 = lost.sum().reindex(area.index).fillna(0.0) / 50  # most gaps of a long history are fixed ones
    roads = findings[findings["kind"] == "road_uncovered"].groupby("village_id")["measure"].sum()
    road_m = pd.Series(rng.uniform(15_000, 30_000, size=len(area)), index=area.index)
    uncovered = roads.reindex(area.index).fillna(0.0) / 20
    summary = pd.DataFrame({
        "name": villages["name"], "area_m2": area, "grid_area_m2": grid_area - gap_m2,
        "area_coverage": ((grid_area - gap_m2) / area).clip(0, 1), "road_m": road_m,
        "uncovered_road_m": uncovered, "road_coverage": 1 - uncovered / road_m,
    })
    summary.index.name = "village_id"
    sev = findings["severity"].value_counts()
    totals = {
        "area_m2": float(area.sum()),
        "area_coverage": 0.9996,  # a shortfall that must never read 100%
        "effective_coverage": 0.99996,
        "road_coverage": float(1 - uncovered.sum() / road_m.sum()),
        "uncovered_lane_m": float(uncovered.sum()),
        "tolerance_m": 3.0, "slivers": 5494, "sliver_area_m2": 66814.0, "sliver_gap_area_m2": 35691.2,
        "sliver_overlap_area_m2": 31122.9, "village_slivers": 2023, "village_sliver_area_m2": 25265.8,
        "road_crumbs": 13, "road_crumb_m": 4.2,
        "villages": len(area), "grids": len(town.grids), "findings": len(findings),
        "veto": int(sev.get("veto", 0)),
        "by_severity": {s: int(sev.get(s, 0)) for s in ("veto", "high", "medium", "low")},
        "by_kind": {str(k): int(v) for k, v in findings["kind"].value_counts().sort_index().items()},
    }
    slivers = rng.integers(0, 60, size=len(town.grids))
    gap_s, over_s = rng.uniform(0, 500, size=len(town.grids)), rng.uniform(0, 500, size=len(town.grids))
    hygiene = pd.DataFrame({"grid_id": town.grids["grid_id"].to_numpy(), "village_id": town.grids["village_id"]
                            .to_numpy(), "name": None, "slivers": slivers, "gap_sliver_m2": gap_s,
                            "overlap_sliver_m2": over_s, "sliver_m2": gap_s + over_s}
                           ).sort_values("sliver_m2", ascending=False, ignore_index=True)
    pois = town.pois
    checkpoints = gpd.GeoDataFrame({
        "poi_id": pois["poi_id"].to_numpy(), "kind": pois["kind"].to_numpy(), "name": pois["name"].to_numpy(),
        "ok": rng.random(len(pois)) > 0.2, "problem": None}, geometry=pois.geometry.to_numpy(), crs=pois.crs)
    return Assessment(town=town, findings=findings, summary=summary, totals=totals, checkpoints=checkpoints,
                      as_of=AS_OF, hygiene=hygiene)


# --------------------------------------------------------------------------- timing
class Clock:
    """Wall and CPU seconds of named steps (on a busy machine a single-threaded step's wall time grows with the
    load; its CPU time much less: the table shows both)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str, fn: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        self.rows[name] = min(took, self.rows.get(name, took))  # a step run twice: its better run
        return out


def per_output(a: Assessment, life: pd.DataFrame, folder: Path, clock: Clock) -> None:
    """Each output of write_report, made the way write_report makes it."""
    from gisgrid.findings import lifecycle_as_of, with_lifecycle
    from gisgrid.report import html as report_html
    from gisgrid.report import points, tables

    day = lifecycle_as_of(life)
    clock("  of which points (scoring)", lambda: points.run_points(
        a, with_lifecycle(a, life, day), history=None, scheme=None, as_of=day))
    built = clock("report.html (render)", lambda: report_html._build(
        a, life, history=None, map_href="../../maps/command_center.html", fail_on=None, as_of=None))
    clock("report.html (write)", lambda: io.atomic_write_text(folder / "report.html", built["html"]))
    table = clock("table (build)", lambda: tables._finding_table(built["life"], built["names"]))
    clock("findings.csv", lambda: io.write_csv(table, folder / "findings.csv"))
    sheets = clock("xlsx sheets (build)", lambda: tables._sheets(table, built["card"], a))
    clock("findings.xlsx", lambda: io.write_xlsx(sheets, folder / "findings.xlsx"))
    clock("findings.geojson", lambda: io.write_geojson(tables._geojson_frame(built["life"], built["names"]),
                                                       folder / "findings.geojson"))
    hygiene = tables._hygiene_table(a)
    if hygiene is not None:
        clock("hygiene.csv", lambda: io.write_csv(hygiene, folder / "hygiene.csv"))


def openpyxl_write_only(sheets: dict[str, pd.DataFrame], path: Path) -> None:
    """The workbook as the openpyxl write-only writer made it before (same cells, same defusing)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    from gisgrid.io import tables as io_tables

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    used: set[str] = set()
    for name, frame in sheets.items():
        df = io_tables._defused(pd.DataFrame(frame).drop(columns=["geometry"], errors="ignore"))
        sheet = book.create_sheet(io_tables._sheet_title(name, used))
        sheet.freeze_panes = "A2"
        header = []
        for col in df.columns:
            cell = WriteOnlyCell(sheet, value=str(col))
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for rec in df.itertuples(index=False, name=None):
            row = []
            for v in rec:
                v = io_tables._xlsx_value(v)
                if isinstance(v, str) and v.startswith("="):
                    v = WriteOnlyCell(sheet, value=v)
                    v.data_type = "s"
                row.append(v)
            sheet.append(row)
    book.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--xlsx-only", action="store_true", help="only the workbook: openpyxl vs XlsxWriter")
    parser.add_argument("--keep", type=Path, help="write the report folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        start = time.perf_counter()
        demo_town()
        print(f"demo town made in {time.perf_counter() - start:.1f} s; findings made in code "
              f"(benchmarks/bench_report.py)")
        results: list[tuple[int, Clock, dict[str, float]]] = []
        for n in args.findings:
            clock, sizes = Clock(), {}
            a, life = clock("make findings", lambda n=n: synthetic_assessment(n))
            folder = root / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            if args.xlsx_only:
                from gisgrid.report import tables

                built = report.html._build(a, life, history=None, map_href=None, fail_on=None, as_of=None)
                table = tables._finding_table(built["life"], built["names"])
                sheets = tables._sheets(table, built["card"], a)
                sizes["cells"] = float(sum(f.shape[0] * f.shape[1] for f in sheets.values()))
                sizes["sheets"] = float(len(sheets))
                for _ in range(2):  # interleaved, twice: the load of a shared machine hits both alike
                    clock("openpyxl write-only", lambda s=sheets, f=folder: openpyxl_write_only(s, f / "o.xlsx"))
                    clock("XlsxWriter (gisgrid.io.write_xlsx)", lambda s=sheets, f=folder: io.write_xlsx(
                        s, f / "findings.xlsx"))
            else:
                per_output(a, life, folder, clock)
                whole = root / f"n{n}-write_report"
                clock("write_report (total)", lambda a=a, life=life, w=whole: report.write_report(
                    a, w, life, map_href="../../maps/command_center.html"))
                sizes["report.html MB"] = (whole / "report.html").stat().st_size / 1e6
                sizes["findings.xlsx MB"] = (whole / "findings.xlsx").stat().st_size / 1e6
            results.append((n, clock, sizes))
        keys = list(dict.fromkeys(k for _, c, _ in results for k in c.rows))
        extra = list(dict.fromkeys(k for _, _, s in results for k in s))
        width = max(len(k) for k in keys + extra) + 2
        print(f"\n{'seconds: wall / cpu':<{width}}" + "".join(f"{n:>16,d} findings" for n, _, _ in results))
        for k in keys:
            print(f"{k:<{width}}" + "".join(
                f"{c.rows[k][0]:>15.2f} / {c.rows[k][1]:<6.2f}" if k in c.rows else f"{'':>24}" for _, c, _ in results))
        for k in extra:
            digits = 2 if k.endswith("MB") else 0
            print(f"{k:<{width}}" + "".join(f"{s.get(k, float('nan')):>15,.{digits}f}{'':9}" for _, _, s in results))
        print(f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
              + (f"; the folders are in {root})" if args.keep else ")"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
