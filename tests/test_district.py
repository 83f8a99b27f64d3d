"""District runs (issue 16): every town a Dask task, district checks against a planted truth, a bad town, a killed
worker, a separate-process scheduler and worker, and results identical to each town run on its own.

One small district (4 demo towns of 40 grids, hand-drawn, plus one town with a missing GeoPackage) is written
once and run once on a 2-worker ``LocalCluster`` while a worker process is killed; the tests read that run.
The same four towns as shared layers with a town column (``gisgrid demo --scale district --shared``,
``partition_by``) are run once through the CLI on a pseudo-terminal (a local cluster: the dashboard link),
and a copy with a blank and an unknown town on the ``threads`` scheduler; both are held to the first run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
from test_cli_progress import _on_a_terminal
from test_maps_browser import driver as chromium  # noqa: F401  the map tests' headless Chromium

from gisgrid._errors import ConfigError, GisgridError, SchemaError

pytest.importorskip("distributed")

AS_OF = dt.date(2026, 11, 30)
TOWNS = ["T01", "T02", "T03", "T04"]


def _add_bad_town(folder: Path) -> None:
    """A fifth town whose config names a GeoPackage that is not there."""
    bad = folder / "towns" / "T05"
    bad.mkdir(parents=True)
    (bad / "gisgrid.toml").write_text((folder / "towns" / "T01" / "gisgrid.toml").read_text(encoding="utf-8"),
                                      encoding="utf-8")
    text = (folder / "district.toml").read_text(encoding="utf-8")
    text = text.replace("\n]\n", '\n    { id = "T05", name = "坏镇", config = "towns/T05/gisgrid.toml" },\n]\n', 1)
    text += "maps = false\n"  # under [compute], the last table: the towns' maps are the slow part
    (folder / "district.toml").write_text(text, encoding="utf-8")


class _Killer(threading.Thread):
    """Kill (SIGKILL) the first worker process seen running a town, once."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.killed: dict[str, Any] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            while not self.stop.is_set() and not self.killed:
                busy = {w: keys for w, keys in client.processing().items()
                        if any("gisgrid-town-T0" in str(k) for k in keys)}
                if busy:
                    worker, keys = next(iter(busy.items()))
                    time.sleep(0.5)  # let the town start its work
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    self.killed = {"pid": pid, "keys": [str(k) for k in keys]}
                    return
                time.sleep(0.05)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from distributed import LocalCluster

    from gisgrid.district import run_district
    from gisgrid.district.files import write_district_demo

    folder = tmp_path_factory.mktemp("district")
    write_district_demo(folder, towns=4, grids=40)
    _add_bad_town(folder)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        killer = _Killer(cluster.scheduler_address)
        killer.start()
        seen: list[tuple[int, int, int, str | None]] = []
        try:
            result = run_district(folder / "district.toml", as_of=AS_OF, scheduler=cluster.scheduler_address,
                                  progress=lambda p: seen.append((p.done, p.total, p.failed,
                                                                  p.town.id if p.town else None)))
        finally:
            killer.stop.set()
            killer.join(timeout=30)
    return {"folder": folder, "result": result, "killed": killer.killed, "progress": seen}


def test_district_truth_found_exactly(district: dict[str, Any]) -> None:
    folder, found = district["folder"], district["result"].findings
    truth = gpd.read_file(folder / "district_truth.geojson")
    rosters = pd.read_csv(folder / "district_truth.csv", dtype=str)
    owned = ["town_river_section", "town_border_road"]  # sections have owners; they are not defects
    defects = rosters[~rosters["kind"].isin(owned)]
    assert sorted(found["kind"]) == sorted(defects["kind"])  # each planted defect once, nothing else
    towns_of = {k: set(t.split(",")) for k, t in zip(rosters["kind"], rosters["towns"], strict=True)}
    for rec in found.to_dict("records"):
        cell = rec["town"]
        assert set(cell if isinstance(cell, tuple) else [cell]) == towns_of[rec["kind"]], rec["message"]
    for kind in ("town_gap", "town_overlap"):  # the found piece is the planted one (hand-drawing noise aside)
        want = truth[truth["kind"] == kind].to_crs(found.crs).geometry.iloc[0]
        got = found[found["kind"] == kind].geometry.iloc[0]
        assert got.intersection(want).area / got.union(want).area > 0.9, kind
        assert got.area == pytest.approx(want.area, rel=0.05)
    for rec in rosters[rosters["kind"].isin(["person_two_towns", "phone_two_names"])].to_dict("records"):
        message = found.loc[found["kind"] == rec["kind"], "message"].iloc[0]
        assert rec["phone"] in message
        for person in rec["person"].split(","):
            assert person in message
    # the river planted across a town border: one section (跨镇交界断面), the town-level chiefs of both sides
    planted = rosters[rosters["kind"] == "town_river_section"].iloc[0]
    sections = pd.read_csv(folder / "reports" / AS_OF.isoformat() / "border_sections.csv", dtype=str)
    assert len(sections) == 1
    sec = sections.iloc[0]
    assert {sec["town_a"], sec["town_b"]} == set(planted["towns"].split(","))
    assert sec["river"] == "跨镇河"
    chiefs = {sec["chiefs_a"], sec["chiefs_b"]}
    assert chiefs == set(planted["person"].split(","))
    assert all(c in sec["owner"] for c in chiefs)
    # the road planted along a town border, in one town's roads only: one border road, both towns own it
    road = rosters[rosters["kind"] == "town_border_road"].iloc[0]
    roads = pd.read_csv(folder / "reports" / AS_OF.isoformat() / "border_roads.csv", dtype={"owner_town": str})
    assert list(roads["road"]) == ["界路"]
    assert set(roads["owner_town"].iloc[0].split(",")) == set(road["towns"].split(","))  # rule "both"
    lengths = sorted([roads["length_a_m"].iloc[0], roads["length_b_m"].iloc[0]])
    assert lengths[0] == 0
    assert lengths[1] == pytest.approx(float(road["measure"]), rel=0.02)
    owners = dict(zip(found["kind"], found["owner"], strict=True))
    assert "district" in owners["town_gap"]
    assert "网格办" in owners["phone_two_names"]


def test_bad_town_reported_while_the_others_complete(district: dict[str, Any]) -> None:
    result, folder = district["result"], district["folder"]
    status = {t.id: t.status for t in result.towns}
    assert status == {**dict.fromkeys(TOWNS, "ok"), "T05": "bad_input"}
    bad = next(t for t in result.towns if t.id == "T05")
    assert "town.gpkg" in bad.error
    assert result.exit_code == 2  # bad input beats the thresholds (docs/district.md)
    page = (folder / "reports" / AS_OF.isoformat() / "district.html").read_text(encoding="utf-8")
    assert "坏镇" in page
    assert "bad_input" in page
    for tid in TOWNS:  # each town's own outputs, in the usual layout
        assert (folder / "towns" / tid / "reports" / AS_OF.isoformat() / "report.html").is_file()
        assert f"../../towns/{tid}/reports/{AS_OF.isoformat()}/report.html" in page


def test_progress_per_town(district: dict[str, Any]) -> None:
    seen = district["progress"]
    assert [s[0] for s in seen] == list(range(6))  # the start, then each town once as it completes
    assert {s[1] for s in seen} == {5}
    assert sorted(s[3] for s in seen[1:]) == [*TOWNS, "T05"]
    assert seen[-1][2] == 1  # one failure: the bad town


@pytest.mark.parametrize("stage", ["district report", "district history"])
def test_history_never_records_half_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """A fault before the report is published, or before the history records it: no run in the history."""
    from gisgrid.district import run_district
    from gisgrid.pipeline import FAULT_ENV

    bad = tmp_path / "towns" / "B1"  # a town that fails at once: this test is about the district's own steps
    bad.mkdir(parents=True)
    (bad / "gisgrid.toml").write_text('[town]\nname = "坏镇"\n[sources.grids]\npath = "none.gpkg"\n',
                                      encoding="utf-8")
    (tmp_path / "district.toml").write_text('[[towns]]\nconfig = "towns/B1/gisgrid.toml"\n', encoding="utf-8")
    monkeypatch.setenv(FAULT_ENV, stage)
    with pytest.raises(RuntimeError, match="fault injected"):
        run_district(tmp_path / "district.toml", as_of=AS_OF, scheduler="sync")
    db = tmp_path / "reports" / "district.sqlite"
    assert not db.exists() or sqlite3.connect(db).execute("SELECT count(*) FROM district_runs").fetchone() == (0,)
    published = (tmp_path / "reports" / AS_OF.isoformat() / "district.html").exists()
    assert published == (stage == "district history")  # a report never appears half-written
    monkeypatch.delenv(FAULT_ENV)
    result = run_district(tmp_path / "district.toml", as_of=AS_OF, scheduler="sync")  # run again: recorded
    assert result.exit_code == 2
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT as_of, failed FROM district_runs").fetchall() == [(AS_OF.isoformat(), 1)]


def test_killed_worker_is_retried(district: dict[str, Any]) -> None:
    killed, result = district["killed"], district["result"]
    assert killed, "no worker was seen running a town"
    town = killed["keys"][0].split("-")[2]
    outcome = next(t for t in result.towns if t.id == town)
    assert outcome.status == "ok"
    assert outcome.pid != killed["pid"]  # run again, by a live worker
    assert len(outcome.lifecycle) > 0


def test_towns_identical_to_running_each_alone(district: dict[str, Any], tmp_path: Path) -> None:
    from gisgrid import pipeline

    folder, result = district["folder"], district["result"]
    alone = pipeline.run(folder / "towns" / "T02" / "gisgrid.toml", out=tmp_path, as_of=AS_OF, maps=False)
    in_district = next(t for t in result.towns if t.id == "T02").lifecycle
    cols = ["finding_id", "kind", "severity", "owner", "measure", "status"]
    a = pd.DataFrame(alone.lifecycle)[cols].sort_values("finding_id").reset_index(drop=True)
    b = pd.DataFrame(in_district)[cols].sort_values("finding_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    rows = pd.read_csv(folder / "reports" / AS_OF.isoformat() / "district_findings.csv", dtype=str)
    assert sorted(rows.loc[rows["town"] == "T02", "finding_id"]) == sorted(a["finding_id"])


def test_district_outputs_and_history(district: dict[str, Any]) -> None:
    folder, result = district["folder"], district["result"]
    day = folder / "reports" / AS_OF.isoformat()
    rows = pd.read_csv(day / "district_findings.csv", dtype=str)
    assert set(rows["town"].dropna()) >= set(TOWNS)
    xlsx = pd.read_excel(day / "district_findings.xlsx", sheet_name=None)
    assert len(xlsx["findings"]) == len(rows)
    assert "town" in xlsx["findings"].columns
    geo = json.loads((day / "district_findings.geojson").read_text(encoding="utf-8"))
    assert {f["properties"]["kind"] for f in geo["features"]} >= {"town_gap", "town_overlap", "area_gap"}
    # the ranking is gisgrid.scoring's standings with town as the party: recompute it from the files
    from gisgrid import scoring

    towns_csv = pd.read_csv(day / "towns.csv", dtype={"party": str})
    assert list(towns_csv["party"]) == list(result.standings["party"])
    assert set(towns_csv["party"]) == set(TOWNS)
    assert towns_csv["score"].is_monotonic_decreasing
    assert set(towns_csv["flag"].fillna("")) <= {"", "red", "yellow"}
    assert scoring.Scheme().base >= towns_csv["score"].max()
    page = (folder / "maps" / "district.html").read_text(encoding="utf-8")
    assert "towns/T01/maps" not in page  # the towns ran without maps: no dead links
    with sqlite3.connect(folder / "reports" / "district.sqlite") as con:
        runs = con.execute("SELECT as_of, towns, failed, exit_code FROM district_runs").fetchall()
        scores = con.execute("SELECT town, status FROM district_scores ORDER BY town").fetchall()
    assert runs == [(AS_OF.isoformat(), 5, 1, 2)]
    assert scores == [*((t, "ok") for t in TOWNS), ("T05", "bad_input")]


def test_separate_scheduler_and_worker_processes(district: dict[str, Any], tmp_path: Path) -> None:
    """The same code against `dask scheduler` and `dask worker` started on their own, through the CLI."""
    folder = district["folder"]
    one = tmp_path / "one.toml"
    one.write_text(f'[[towns]]\nid = "T03"\nconfig = "{(folder / "towns" / "T03" / "gisgrid.toml").as_posix()}"\n'
                   "[compute]\nmaps = false\n", encoding="utf-8")
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(sched_file), "--port", "0", "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers",
                                       "1", "--nthreads", "1", "--no-dashboard", "--preload", "gisgrid.pipeline"],
                                      env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        res = subprocess.run([sys.executable, "-m", "gisgrid", "run", str(one), "--out", str(tmp_path / "out"),
                              "--as-of", AS_OF.isoformat(), "--scheduler", address], capture_output=True, text=True,
                             timeout=300, check=False)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
    assert res.returncode == 1, res.stdout + res.stderr  # the demo town has veto items: exit 1, not 2 or 3
    assert f"on {address}" in res.stdout
    rows = pd.read_csv(tmp_path / "out" / "reports" / AS_OF.isoformat() / "district_findings.csv", dtype=str)
    ours = next(t for t in district["result"].towns if t.id == "T03").lifecycle
    assert sorted(rows["finding_id"]) == sorted(ours["finding_id"])


def test_district_config_refused_with_did_you_mean(tmp_path: Path) -> None:
    from gisgrid.district import load_district

    path = tmp_path / "district.toml"
    path.write_text('[[towns]]\nconfig = "a/gisgrid.toml"\n[compute]\nschedular = "local"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'scheduler'"):
        load_district(path)
    path.write_text('[[towns]]\nconfig = "a/gisgrid.toml"\n[compute]\nscheduler = "lcoal"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match='did you mean "local"'):
        load_district(path)
    path.write_text('[[towns]]\nconfig = "a/gisgrid.toml"\n[[towns]]\nconfig = "a/gisgrid.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="two towns have the id 'a'"):
        load_district(path)


@pytest.mark.browser
def test_district_map_in_a_browser(district: dict[str, Any], chromium: Any) -> None:  # noqa: F811
    """maps/district.html loads offline in headless Chromium: one shape per town, the district findings, no error."""
    driver = chromium
    page = district["folder"] / "maps" / "district.html"
    assert (page.parent / "assets" / "leaflet.js").is_file()
    driver.get(page.as_uri())
    shapes = 0
    for _ in range(200):
        shapes = driver.execute_script("return document.querySelectorAll('path.leaflet-interactive').length")
        if shapes:
            break
        time.sleep(0.05)
    # four towns, the gap and the overlap drawn as areas, the two roster findings as circle markers
    assert shapes == len(TOWNS) + 4
    assert not driver.execute_script("return window.__errors")
    labels = driver.execute_script("return [...document.querySelectorAll('.leaflet-control-layers label')]"
                                   ".map(e => e.textContent.trim())")
    assert labels == ["镇街得分 towns by score", "区级问题 district findings"]


def test_river_section_owners_by_hand() -> None:
    """Two square towns meeting at x = 1000; a river of one name crosses, its ends 0.8 m apart (two offices'
    drawings); another river ends at the border with no continuation; only town A has a town-level chief."""
    from shapely.geometry import LineString, box

    from gisgrid.district.checks import river_sections

    crs = "EPSG:4549"
    towns = gpd.GeoDataFrame({"town": ["A", "B"]}, geometry=[box(0, 0, 1000, 1000), box(1000, 0, 2000, 1000)],
                             crs=crs)
    rivers = {
        "A": gpd.GeoDataFrame({"river_id": ["H01", "H02"], "name": ["界河", "小河"]},
                              geometry=[LineString([(200, 500), (999.6, 500)]), LineString([(500, 100), (1000, 100)])],
                              crs=crs),
        "B": gpd.GeoDataFrame({"river_id": ["H07"], "name": ["界河"]},
                              geometry=[LineString([(1000.4, 500.3), (1800, 520)])], crs=crs),
    }
    chiefs = {"A": pd.DataFrame({"name": ["甲河长", "村河长"], "level": ["town", "village"],
                                 "river_id": ["H01", "H01"]}),
              "B": pd.DataFrame({"name": ["乙村长"], "level": ["village"], "river_id": ["H07"]})}
    sections, unowned = river_sections(rivers, chiefs, towns, names={"A": "甲镇", "B": "乙镇"})
    assert len(sections) == 1
    sec = sections.iloc[0]
    assert (sec["town_a"], sec["town_b"], sec["river_id_a"], sec["river_id_b"]) == ("A", "B", "H01", "H07")
    assert (sec["chiefs_a"], sec["chiefs_b"]) == ("甲河长", "")
    assert sec["gap_m"] == pytest.approx(((0.8**2) + (0.3**2)) ** 0.5, abs=0.01)
    assert list(unowned["kind"]) == ["section_unowned"]
    assert unowned["town"].iloc[0] == "B"
    assert "乙镇" in unowned["owner"].iloc[0]


# --------------------------------------------------------------------------- shared layers (partition_by)
#: The demo towns' codes: their values in the shared layers' town column (乡镇代码).
CODES = {"T01": "320612101", "T02": "320612102", "T03": "320612103", "T04": "320612104"}
_COMPARED = ["finding_id", "kind", "severity", "owner", "measure", "status", "message"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same four towns as shared layers with a town column, run by the CLI on a terminal (local cluster)."""
    folder = tmp_path_factory.mktemp("shared")
    subprocess.run([sys.executable, "-m", "gisgrid", "demo", "--scale", "district", "--shared", "--towns", "4",
                    "--town-grids", "40", "--out", str(folder), "-q"], check=True, timeout=300)
    code, text = _on_a_terminal(["run", str(folder / "district.toml"), "--as-of", AS_OF.isoformat(), "--no-maps",
                                 "--workers", "2"], cwd=folder, timeout_s=600)
    return {"folder": folder, "code": code, "text": text}


def _town_findings(rows: pd.DataFrame, town: str) -> pd.DataFrame:
    """The town's own findings in district_findings.csv (not the district's that concern it alone)."""
    from gisgrid.district.checks import DISTRICT_KINDS

    mine = (rows["town"] == town) & ~rows["kind"].isin(list(DISTRICT_KINDS))
    return rows.loc[mine, _COMPARED].sort_values("finding_id").reset_index(drop=True)


def test_shared_layers_give_each_town_its_own_findings(district: dict[str, Any], shared: dict[str, Any]) -> None:
    """Each town cut from the shared layers finds exactly what its own config finds: ids, owners, messages."""
    assert shared["code"] == 1, shared["text"][-3000:]  # the demo towns' veto items, as the town configs' run
    day = AS_OF.isoformat()
    ours = pd.read_csv(shared["folder"] / "reports" / day / "district_findings.csv", dtype=str)
    theirs = pd.read_csv(district["folder"] / "reports" / day / "district_findings.csv", dtype=str)
    for tid, code in CODES.items():
        a, b = _town_findings(theirs, tid), _town_findings(ours, code)
        assert len(a) > 5
        pd.testing.assert_frame_equal(a, b)
        assert (shared["folder"] / "towns" / code / "reports" / day / "report.html").is_file()
    towns = pd.read_csv(shared["folder"] / "reports" / day / "towns.csv", dtype={"party": str})
    before = pd.read_csv(district["folder"] / "reports" / day / "towns.csv", dtype={"party": str})
    assert list(towns["party"]) == [CODES[t] for t in before["party"]]
    assert list(towns["name"]) == list(before["name"])  # [[towns]] name, as each town config's [town] name
    assert list(towns["score"]) == list(before["score"])


def test_shared_layers_find_the_planted_district_defects(district: dict[str, Any], shared: dict[str, Any]) -> None:
    folder, day = shared["folder"], AS_OF.isoformat()
    rows = pd.read_csv(folder / "reports" / day / "district_findings.csv", dtype=str)
    found = rows[rows["town"].isna() | ~rows["town"].isin(CODES.values())]  # the district's own findings
    truth = pd.read_csv(folder / "district_truth.csv", dtype=str)  # written with the towns' codes
    defects = truth[~truth["kind"].isin(["town_river_section", "town_border_road"])]
    assert sorted(found["kind"]) == sorted(defects["kind"])  # each planted defect once, no row of no town
    want = {k: set(t.split(",")) for k, t in zip(truth["kind"], truth["towns"], strict=True)}
    for rec in found.to_dict("records"):
        assert set(rec["town"].split(", ")) == want[rec["kind"]], rec["message"]
    # the same pieces, messages and owners as the town configs' run (whose shapes test_district_truth_found_exactly
    # holds to the truth)
    same = district["result"].findings
    for kind in defects["kind"]:
        a = found[found["kind"] == kind].iloc[0]
        b = same[same["kind"] == kind].iloc[0]
        assert (a["message"], a["owner"]) == (b["message"], b["owner"])
        assert float(a["measure"]) == pytest.approx(b["measure"])
    code_of = {**CODES, "": ""}
    for name in ("border_sections.csv", "border_roads.csv"):
        a = pd.read_csv(folder / "reports" / day / name, dtype=str)
        b = pd.read_csv(district["folder"] / "reports" / day / name, dtype=str)
        for col in ("town_a", "town_b", "owner_town"):
            if col in b.columns:
                b[col] = b[col].map(lambda v: ",".join(code_of[t] for t in str(v).split(",")) if isinstance(v, str)
                                    else v)
        pd.testing.assert_frame_equal(a, b)


def test_dashboard_link_once_on_a_terminal(shared: dict[str, Any]) -> None:
    """A local cluster on a terminal: the Dask dashboard's link once (bokeh is installed), then a line per town."""
    text = shared["text"]
    assert text.count("Dask dashboard: http://") == 1, text[-3000:]
    assert text.index("Dask dashboard:") < text.index("[1/4]")
    assert all(f"[{k}/4]" in text for k in range(1, 5))
    assert "Traceback" not in text


def _copy_shared(src: Path, dst: Path) -> None:
    for name in ("district_layers.gpkg", "grid_staff.csv", "river_chiefs.xlsx", "district.gpkg", "district.toml"):
        (dst / name).write_bytes((src / name).read_bytes())


def test_blank_and_unknown_towns_reported_on_threads(district: dict[str, Any], shared: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """A grid and a roster row with a blank town, two towns not listed, a listed town with no rows: every row is
    reported (town_unassigned), the empty town is a bad town, and the others complete on the threads scheduler with
    the findings of the LocalCluster run."""
    import pyogrio

    from gisgrid import io
    from gisgrid.district import run_district

    _copy_shared(shared["folder"], tmp_path)
    gpkg = tmp_path / "district_layers.gpkg"
    layers = {str(n): pyogrio.read_dataframe(gpkg, layer=str(n)) for n in pyogrio.list_layers(gpkg)[:, 0]}
    grids = layers["grids"]
    blank_grid = int(grids.index[grids["乡镇代码"] == CODES["T03"]][3])
    grids.loc[blank_grid, "乡镇代码"] = None
    io.write_layers(layers, gpkg)
    staff = io.read_table(tmp_path / "grid_staff.csv")
    blank_line = int(staff.index[staff["乡镇代码"] == CODES["T04"]][0])
    staff.loc[blank_line, "乡镇代码"] = "  "  # blank but for spaces
    io.write_csv(staff, tmp_path / "grid_staff.csv", encoding="gbk")
    text = (tmp_path / "district.toml").read_text(encoding="utf-8")
    start = text.index("towns = [")
    listed = (f'towns = [\n    {{ id = "{CODES["T01"]}", name = "东社镇" }},\n    {{ id = {CODES["T02"]} }},\n'
              '    { id = "320612109", name = "无此镇" },\n]\n')  # an integer id is read as its text
    (tmp_path / "district.toml").write_text(text[:start] + listed + text[text.index("]\n", start) + 2:],
                                            encoding="utf-8")
    result = run_district(tmp_path / "district.toml", as_of=AS_OF, scheduler="threads", workers=2, maps=False)
    status = {t.id: t.status for t in result.towns}
    assert status == {CODES["T01"]: "ok", CODES["T02"]: "ok", "320612109": "bad_input"}, \
        [(t.id, t.error) for t in result.towns]
    bad = next(t for t in result.towns if t.status != "ok")
    assert "乡镇代码 = '320612109'" in bad.error
    assert "district_layers.gpkg" in bad.error
    assert "did you mean" in bad.fix
    assert result.exit_code == 2  # a bad town
    named = next(t for t in result.towns if t.id == CODES["T02"])
    assert named.name == "西亭镇"  # no [[towns]] name: the boundary layer's
    # the threads scheduler finds what the LocalCluster found, town by town
    theirs = pd.read_csv(district["folder"] / "reports" / AS_OF.isoformat() / "district_findings.csv", dtype=str)
    ours = pd.read_csv(result.report_dir / "district_findings.csv", dtype=str)
    for tid in ("T01", "T02"):
        pd.testing.assert_frame_equal(_town_findings(theirs, tid), _town_findings(ours, CODES[tid]))
    # every row of no town reported: one finding per source of blank rows, one per value that is not a town
    stray = result.findings[result.findings["kind"] == "town_unassigned"]
    by_message = {("blank grids" if "grids layer" in m and "is blank" in m else "blank staff" if "is blank" in m
                   else m.split("'")[1]): rec for m, rec in zip(stray["message"], stray.to_dict("records"),
                                                                   strict=True)}
    assert set(by_message) == {"blank grids", "blank staff", CODES["T03"], CODES["T04"]}
    grid_id = grids.loc[blank_grid, "grid_id"]
    assert f"feature {blank_grid} (grid_id {grid_id})" in by_message["blank grids"]["message"]
    assert by_message["blank grids"]["geometry"] is not None  # drawn where the grid is
    assert f"line {blank_line + 2} (姓名 {staff.loc[blank_line, '姓名']})" in by_message["blank staff"]["message"]
    assert "fill in 乡镇代码" in by_message["blank staff"]["message"]
    for tid in ("T03", "T04"):  # every row of the towns not listed, over every source
        counted = sum(int((layer["乡镇代码"].astype(str) == CODES[tid]).sum()) for layer in layers.values())
        counted += int((staff["乡镇代码"] == CODES[tid]).sum())
        counted += int((io.read_table(tmp_path / "river_chiefs.xlsx")["乡镇代码"] == CODES[tid]).sum())
        rec = by_message[CODES[tid]]
        assert rec["measure"] == counted
        assert f"list the town under [[towns]] (id = '{CODES[tid]}')" in rec["message"]
        assert rec["owner"] == result.findings.loc[result.findings["kind"] == "town_gap", "owner"].iloc[0]
    assert set(stray["severity"]) == {"high"}


def test_partition_column_refused_before_any_town(shared: dict[str, Any], tmp_path: Path) -> None:
    """A town column the layers lack, a typo in partition_by, configs or [history] in a shared district: refused with
    the layer and a did-you-mean before any town runs; gisgrid check says the same (exit 2) and lists a good one."""
    from gisgrid.district import load_district

    _copy_shared(shared["folder"], tmp_path)
    good = (tmp_path / "district.toml").read_text(encoding="utf-8")
    path = tmp_path / "district.toml"
    cases = [
        (good.replace('town_id = "乡镇代码"\n\n[sources.roads', 'town_id = "乡镇代玛"\n\n[sources.roads', 1),
         SchemaError, ["grids layer has no column '乡镇代玛'", "did you mean '乡镇代码'?"]),
        (good.replace('partition_by = "town_id"', 'partition_by = "twon_id"'),
         SchemaError, ["boundary layer has no column 'twon_id'", 'did you mean partition_by = "town_id"?']),
        (good.replace('{ id = "320612101", name = "东社镇" }', '{ id = "320612101", config = "towns/T01" }'),
         ConfigError, ["has a config, but the district has partition_by"]),
        (good + '\n[history]\npath = "h.sqlite"\n', ConfigError, ["[history] cannot be shared"]),
        (good.replace('[compute]\nscheduler = "local"', '[compute]\nscheduler = "local"\n[coverag]\n'),
         ConfigError, ["did you mean 'coverage'?"]),
    ]
    for text, error, said in cases:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(error) as caught:
            load_district(path)
        for part in said:
            assert part in str(caught.value), str(caught.value)
        assert isinstance(caught.value, GisgridError)
    path.write_text(cases[0][0], encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gisgrid", "check", str(path)], capture_output=True, text=True,
                         encoding="utf-8", timeout=300, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "layer 'grids'" in res.stderr
    assert "did you mean '乡镇代码'?" in res.stderr
    path.write_text(good, encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gisgrid", "check", str(path)], capture_output=True, text=True,
                         encoding="utf-8", timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(code in res.stdout for code in CODES.values())
    assert "usable: yes" in res.stdout
    assert not (tmp_path / "towns").exists()  # nothing ran
    assert not (tmp_path / "reports").exists()


def test_rows_of_a_layer_keep_their_feature_numbers(shared: dict[str, Any]) -> None:
    """A town's share of a shared layer is read by feature id and keeps the feature numbers of the whole file."""
    from gisgrid import io

    gpkg = shared["folder"] / "district_layers.gpkg"
    whole = io.read_layer(gpkg, layer="grids")
    values = io.read_values(gpkg, ["乡镇代码", "nothing"], layer="grids")
    assert list(values.columns) == ["乡镇代码", "fid"]
    assert "grid_id" in values.attrs["columns"]
    mine = values.index[values["乡镇代码"] == CODES["T02"]]
    part = io.read_layer(gpkg, layer="grids", rows=io.Rows(tuple(mine), tuple(values.loc[mine, "fid"])))
    assert list(part.index) == list(mine)
    assert list(part["grid_id"]) == list(whole.loc[mine, "grid_id"])
    assert part.geometry.geom_equals(whole.loc[mine].geometry).all()


def test_shared_layers_keep_each_towns_history_in_postgresql(shared: dict[str, Any], libpq_env: str,
                                                              tmp_path: Path) -> None:
    """[history] url in a district of shared layers: one schema per town id; a second night continues it."""
    import psycopg

    from gisgrid._errors import ConfigError
    from gisgrid.district import load_district, run_district

    _copy_shared(shared["folder"], tmp_path)
    text = (tmp_path / "district.toml").read_text(encoding="utf-8")
    start = text.index("towns = [")
    listed = f'towns = [\n    {{ id = "{CODES["T01"]}" }},\n    {{ id = "{CODES["T02"]}" }},\n]\n'
    text = text[:start] + listed + text[text.index("]\n", start) + 2:]
    (tmp_path / "district.toml").write_text(text + f'\n[history]\nurl = "{libpq_env}"\n', encoding="utf-8")
    nights = [AS_OF - dt.timedelta(days=7), AS_OF]
    for night in nights:
        result = run_district(tmp_path / "district.toml", as_of=night, scheduler="sync", maps=False)
        assert [t.status for t in result.towns] == ["ok", "ok"], [(t.id, t.error) for t in result.towns]
    last = pd.read_csv(result.report_dir / "district_findings.csv", dtype=str)
    for code in (CODES["T01"], CODES["T02"]):
        assert not (tmp_path / "towns" / code / "reports" / "history.sqlite").exists()
        with psycopg.connect("", autocommit=True) as conn:
            runs = conn.execute(f'SELECT as_of FROM "gisgrid_history_{code}".runs ORDER BY 1').fetchall()
        assert [r[0] for r in runs] == [n.isoformat() for n in nights]
        mine = last[last["town"] == code]
        assert len(mine) > 0
        assert "new" not in set(mine["status"])  # the same findings, a week on: persisting or overdue
    # only url can be shared: a path or one schema for every town is refused before any town runs
    for history in ('path = "h.sqlite"', f'url = "{libpq_env}"\nschema = "one"'):
        (tmp_path / "bad.toml").write_text(text + f"\n[history]\n{history}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"each town gets its own schema"):
            load_district(tmp_path / "bad.toml")
