"""Patrols (issue 18): hand-computable tracks, real GPX/CSV files with their quirks, rules per level, the demo truth."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gisgrid._errors import ConfigError, InputError
from gisgrid.checks.patrols import analyze_patrols, judged_month, periods_of, resolve_patrol_options
from gisgrid.checks.responsibility import analyze_responsibility
from gisgrid.demo import make_demo
from gisgrid.demo.patrols import PLANTED, make_patrols
from gisgrid.geometry.linework import Lines
from gisgrid.geometry.tracks import clean_tracks, cover
from gisgrid.io.tracks import iter_track_batches, read_gpx
from gisgrid.model import Town
from gisgrid.vocab import percent

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_793_664_000  # 2026-11-03 00:00 UTC (08:00 in Beijing), a Tuesday


# --------------------------------------------------------------------------- the engine, by hand
def _walk(length_m: float, speed: float, dt_s: float = 10.0, y: float = 5.0):
    t = np.arange(0.0, length_m / speed + 1e-9, dt_s)
    return t.astype(np.int64) + T0, speed * t, np.full(len(t), y)


def test_straight_walk_along_a_straight_reach_covers_it_all():
    t, x, y = _walk(1000.0, 1.25)  # 800 s, a fix every 10 s, 5 m off the centreline
    track = clean_tracks(np.zeros(len(t), int), t, x, y)
    assert len(track.patrols) == 1
    p = track.patrols.iloc[0]
    assert p["duration_s"] == 800
    assert p["length_m"] == pytest.approx(1000.0)
    assert p["median_speed_mps"] == pytest.approx(1.25)
    reach = Lines(np.array([shapely.LineString([(0, 0), (1000, 0)])]))
    c = cover(reach, *track.segments(), 1, 50.0)
    # the whole reach: the walk runs its full length 5 m away, well within 50 m
    assert list(c.start) == [0.0]
    assert c.end[0] == pytest.approx(1000.0)
    assert c.near_m[0] == pytest.approx(1000.0)


def test_a_walk_along_half_the_reach_covers_half_plus_the_distance():
    t, x, y = _walk(500.0, 1.25, y=0.0)
    track = clean_tracks(np.zeros(len(t), int), t, x, y)
    reach = Lines(np.array([shapely.LineString([(0, 0), (1000, 0)])]))
    c = cover(reach, *track.segments(), 1, 50.0)
    # covered: [0, 500 + 50] (the 50 m disc round the last fix reaches 50 m further along the line)
    assert c.start[0] == pytest.approx(0.0)
    assert c.end[0] == pytest.approx(550.0)


def test_a_walk_30_m_off_and_one_80_m_off():
    reach = Lines(np.array([shapely.LineString([(0, 0), (1000, 0)])]))
    t, x, y = _walk(1000.0, 1.25, y=80.0)
    track = clean_tracks(np.zeros(len(t), int), t, x, y)
    c = cover(reach, *track.segments(), 1, 50.0)
    assert len(c.start) == 0
    assert c.near_m[0] == 0.0
    t, x, y = _walk(1000.0, 1.25, y=30.0)
    c = cover(reach, *clean_tracks(np.zeros(len(t), int), t, x, y).segments(), 1, 50.0)
    # within 50 m of a line 30 m away: the walk's ends reach sqrt(50² - 30²) = 40 m further
    assert c.end[0] == pytest.approx(1000.0)
    assert c.start[0] == pytest.approx(0.0)


def test_car_speed_and_time_gaps_and_spikes():
    t, x, y = _walk(5000.0, 11.0, dt_s=5.0)  # 40 km/h
    car = clean_tracks(np.zeros(len(t), int), t, x, y).patrols.iloc[0]
    assert car["median_speed_mps"] * 3.6 == pytest.approx(39.6)
    # a 20-minute pause cuts the walk in two patrols (gap 10 min)
    t, x, y = _walk(1000.0, 1.25)
    t2 = np.concatenate([t, t + 2000])
    x2, y2 = np.concatenate([x, x]), np.concatenate([y, y])
    assert len(clean_tracks(np.zeros(len(t2), int), t2, x2, y2, gap_s=600).patrols) == 2
    # one fix 5 km off and back (500 m/s both ways): dropped; a jump that stays is a teleport, kept
    xs = x.copy()
    xs[40] += 5000.0
    tr = clean_tracks(np.zeros(len(t), int), t, xs, y)
    assert list(tr.dropped) == [40]
    assert tr.patrols["spikes"].iloc[0] == 1
    assert tr.patrols["teleports"].iloc[0] == 0
    assert tr.patrols["length_m"].iloc[0] == pytest.approx(1000.0)
    xj = x.copy()
    xj[40:] += 5000.0
    tj = clean_tracks(np.zeros(len(t), int), t, xj, y).patrols.iloc[0]
    assert tj["teleports"] == 1
    assert tj["max_jump_m"] == pytest.approx(5012.5)
    assert tj["length_m"] == pytest.approx(1000.0 - 12.5)  # the jump step is left out of the length


def test_periods_weeks_by_their_thursday_dekads_quarters():
    weeks = periods_of("week", 2026, 11)
    assert [w[0] for w in weeks] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert weeks[0][1] == dt.date(2026, 11, 2)
    assert weeks[-1][2] == dt.date(2026, 11, 29)
    assert [p[1].day for p in periods_of("dekad", 2026, 2)] == [1, 11, 21]
    assert periods_of("dekad", 2026, 2)[-1][2] == dt.date(2026, 2, 28)
    assert periods_of("quarter", 2026, 11) == []
    assert periods_of("quarter", 2026, 12)[0][1:] == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert judged_month(dt.date(2026, 12, 1)) == (2026, 11)
    assert judged_month(dt.date(2027, 1, 15)) == (2026, 12)
    assert judged_month(dt.date(2027, 1, 15), "2026-03") == (2026, 3)


def test_options_refused_with_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean river_distance_m"):
        resolve_patrol_options({"river_distanc_m": 40})
    with pytest.raises(ConfigError, match="did you mean week"):
        resolve_patrol_options({"rules": {"village": {"period": "weak"}}})
    with pytest.raises(ConfigError, match="did you mean village"):
        resolve_patrol_options({"rules": {"vilage": {"period": "week"}}})
    with pytest.raises(ConfigError, match="share between 0 and 1"):
        resolve_patrol_options({"rules": {"town": {"min_share": 80}}})
    opts = resolve_patrol_options({"rules": {"village": {"period": "dekad", "times": 2, "months": [3, 4]}}})
    assert opts["rules"]["village"] == {**opts["rules"]["village"], "period": "dekad", "times": 2, "months": [3, 4]}
    assert opts["rules"]["town"]["period"] == "month"
    assert resolve_patrol_options(opts) == opts


# --------------------------------------------------------------------------- a small town, by hand
def _town() -> Town:
    """Two villages side by side, one straight river of 2 km across both, a town chief and two village chiefs."""
    crs = "EPSG:4549"
    west, east = shapely.box(500_000, 3_550_000, 501_000, 3_551_000), shapely.box(501_000, 3_550_000, 502_000,
                                                                                  3_551_000)
    villages = gpd.GeoDataFrame({"village_id": ["V1", "V2"], "name": ["西村", "东村"]}, geometry=[west, east], crs=crs)
    grids = gpd.GeoDataFrame({"grid_id": ["G1", "G2"], "village_id": ["V1", "V2"]}, geometry=[west, east], crs=crs)
    rivers = gpd.GeoDataFrame({"river_id": ["H1"], "name": ["清河"]},
                              geometry=[shapely.LineString([(500_000, 3_550_500), (502_000, 3_550_500)])], crs=crs)
    chiefs = pd.DataFrame({"person_id": ["T1", "A1", "B1"], "name": ["镇河长", "西河长", "东河长"],
                           "phone": ["13800000001", "13800000002", "13800000003"],
                           "level": ["town", "village", "village"], "river_id": ["H1", "H1", "H1"],
                           "village_id": [None, "V1", "V2"]})
    staff = pd.DataFrame({"person_id": ["S1", "S2"], "name": ["甲", "乙"], "phone": ["13900000001", "13900000002"],
                          "role": ["grid_chief", "grid_chief"], "grid_id": ["G1", "G2"]})
    return Town.from_frames(villages=villages, grids=grids, rivers=rivers, river_chiefs=chiefs, grid_staff=staff,
                            crs=crs)


def _fixes(town: Town, person: str, start: dt.datetime, xy: np.ndarray, dt_s: float) -> pd.DataFrame:
    pts = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=town.crs).to_crs(4326)
    t = int(start.timestamp()) + (np.arange(len(xy)) * dt_s).astype(np.int64)
    return pd.DataFrame({"person_id": person, "t": t, "lon": pts.x.to_numpy(), "lat": pts.y.to_numpy()})


def _line(x0: float, x1: float, step: float, y: float = 3_550_510.0) -> np.ndarray:
    x = np.arange(x0, x1 + 1e-9, step) if x1 > x0 else np.arange(x0, x1 - 1e-9, -step)
    return np.column_stack([x, np.full(len(x), y)])


def test_rules_per_level_on_a_hand_made_town():
    town = _town()
    reaches = analyze_responsibility(town).reaches
    bj = dt.timezone(dt.timedelta(hours=8))
    parts = []
    # the west chief walks his whole reach (1 km, 10 m off) every week of November at 1.25 m/s
    for day in (3, 10, 17, 24):
        parts.append(_fixes(town, "A1", dt.datetime(2026, 11, day, 9, tzinfo=bj), _line(500_000, 501_000, 25), 20))
    # the east chief walks the first 400 m of his, weeks 1 and 3 only
    for day in (4, 18):
        parts.append(_fixes(town, "B1", dt.datetime(2026, 11, day, 9, tzinfo=bj), _line(501_000, 501_400, 25), 20))
    # and drives the whole river once at 36 km/h (10 m/s), in week 2
    parts.append(_fixes(town, "B1", dt.datetime(2026, 11, 12, 17, tzinfo=bj), _line(502_000, 500_000, 100), 10))
    # the town chief walks the whole river once (a monthly rule)
    parts.append(_fixes(town, "T1", dt.datetime(2026, 11, 20, 9, tzinfo=bj), _line(500_000, 502_000, 25), 20))
    # grid chief S1 walks 600 m inside his grid (no lanes: a valid patrol in the grid counts); S2 never patrols
    parts.append(_fixes(town, "S1", dt.datetime(2026, 11, 6, 9, tzinfo=bj), _line(500_100, 500_700, 25,
                                                                                  y=3_550_200), 20))
    fixes = pd.concat(parts, ignore_index=True)
    res = analyze_patrols(town, reaches, [fixes], options={"month": "2026-11"}, as_of=dt.date(2026, 12, 1))
    f = res.findings.set_index(["kind", "person_id"])
    kinds = sorted(zip(res.findings["kind"], res.findings["person_id"], strict=True))
    assert kinds == [("patrol_missing", "B1"), ("patrol_missing", "S2"), ("patrol_partial", "B1"),
                     ("patrol_suspect", "B1")]
    miss = f.loc[("patrol_missing", "B1")]
    assert miss["measure"] == 2
    assert "2026-W46 (0)" in miss["message"]
    assert "2026-W48 (0)" in miss["message"]
    assert miss["owner"] == "东河长"
    assert miss["severity"] == "medium"
    assert f.loc[("patrol_missing", "S2"), "severity"] == "high"  # never: every period short
    partial = f.loc[("patrol_partial", "B1")]
    # covered 0..450 m of the 1 km reach (400 m walked, 10 m off: sqrt(50² - 10²) ≈ 49 m further): 551 m left
    assert partial["measure"] == pytest.approx(1000 - 400 - np.sqrt(50**2 - 10**2), abs=0.5)
    assert partial.geometry.length == pytest.approx(partial["measure"], abs=0.01)
    assert partial.geometry.bounds[2] == pytest.approx(502_000)
    car = f.loc[("patrol_suspect", "B1")]
    # 2 km at 36 km/h lasts 200 s: a vehicle, and shorter than the 5 minutes a patrol needs
    assert car["unit"] == "km/h"
    assert car["measure"] == pytest.approx(36.0)
    assert car["reasons"] == "short,vehicle"
    assert "36 km/h" in car["message"]
    people = res.people.set_index("person_id")
    assert people.loc["A1", "status"] == "ok"
    assert people.loc["A1", "periods_met"] == 4
    assert people.loc["T1", "status"] == "ok"
    assert people.loc["T1", "share"] == pytest.approx(1.0)
    assert res.reach_patrolled.sum() == pytest.approx(1000 + 1000)  # the town chief walked it all
    assert bool(res.grid_patrolled["G1"])
    assert not bool(res.grid_patrolled["G2"])
    # without the town chief's walk, the east reach is patrolled only where its village chief walked (the drive
    # along it is suspect and covers nothing)
    no_town = fixes[fixes["person_id"] != "T1"]
    alone = analyze_patrols(town, reaches, [no_town], options={"month": "2026-11"}, as_of=dt.date(2026, 12, 1))
    assert alone.reach_patrolled["H1-V2-1"] == pytest.approx(400 + np.sqrt(50**2 - 10**2), abs=0.01)
    assert alone.reach_patrolled["H1-V1-1"] == pytest.approx(1000.0)
    # on 17 November only the weeks over by then are judged (W45, W46), and no month yet
    mid = analyze_patrols(town, reaches, [fixes], options={"month": "2026-11"}, as_of=dt.date(2026, 11, 17))
    missing = mid.findings[mid.findings["kind"] == "patrol_missing"]
    assert list(missing["person_id"]) == ["B1"]
    assert missing["measure"].iloc[0] == 1
    assert "2026-W46 (0)" in missing["message"].iloc[0]
    assert mid.people.set_index("person_id").loc["T1", "status"] == "not judged"


# --------------------------------------------------------------------------- files
GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="巡河通" xmlns="http://www.topografix.com/GPX/1/1">
 <metadata><name>export</name></metadata>
 <trk><name>{name}</name>
  <trkseg>
   <trkpt lat="32.10000" lon="121.20000"><time>2026-11-03T08:00:00+08:00</time></trkpt>
   <trkpt lat="32.10010" lon="121.20000"><ele>3.2</ele><time>2026-11-03T00:00:10Z</time></trkpt>
  </trkseg>
  <trkseg>
   <trkpt lat="32.10020" lon="121.20000"><time>2026-11-03T08:00:20</time>
    <extensions><speed>1</speed></extensions></trkpt>
   <trkpt lat="0" lon="0"><time>2026-11-03T08:00:30+08:00</time></trkpt>
   <trkpt lat="32.10030" lon="121.20000"></trkpt>
  </trkseg>
 </trk>
</gpx>
"""


def test_gpx_with_segments_no_elevation_and_time_zones(tmp_path):
    (tmp_path / "C001_2026-11-03.gpx").write_text(GPX.format(name="C009"), encoding="utf-8")
    raw, _ = read_gpx(tmp_path / "C001_2026-11-03.gpx")
    assert list(raw["person_id"].unique()) == ["C001"]
    assert len(raw) == 5
    assert list(read_gpx(tmp_path / "C001_2026-11-03.gpx", person_from="name")[0]["person_id"].unique()) == ["C009"]
    (batch,) = list(iter_track_batches({"path": str(tmp_path)}))
    # +08:00, Z and no zone (read as Beijing time) are the same clock: 10 s apart, both segments read
    assert list(batch.fixes["t"] - batch.fixes["t"].iloc[0]) == [0, 10, 20]
    assert list(batch.fixes["line"]) == [6, 7, 10]
    problems = sorted((i.line, i.problem.split(" (")[0]) for i in batch.issues)
    assert problems == [(12, "zero, missing or impossible position"), (13, "no time")]
    assert all(i.file == "C001_2026-11-03.gpx" for i in batch.issues)


def test_gcj02_tracks_are_converted(tmp_path):
    from gisgrid.crs import wgs84_to_gcj02

    lon, lat = wgs84_to_gcj02(np.array([121.2]), np.array([32.1]))
    (tmp_path / "t.csv").write_text(f"person_id,timestamp,lon,lat\nA,2026-11-03 08:00:00,{lon[0]:.8f},{lat[0]:.8f}\n",
                                    encoding="utf-8")
    (batch,) = list(iter_track_batches({"path": str(tmp_path / "t.csv"), "crs": "GCJ-02"}))
    assert batch.fixes["lon"].iloc[0] == pytest.approx(121.2, abs=1e-6)
    assert batch.fixes["lat"].iloc[0] == pytest.approx(32.1, abs=1e-6)
    assert batch.fixes["t"].iloc[0] == T0


def test_bad_rows_refused_and_located_the_rest_read(tmp_path):
    text = ("人员编号,定位时间,经度,纬度\n"
            "A,2026-11-03 08:00:00,121.2,32.1\n"
            "A,,121.2,32.1\n"                      # line 3: no time
            "A,昨天,121.2,32.1\n"                   # line 4: unparseable
            "A,2026-11-03 07:59:00,121.2,32.1\n"   # line 5: backwards
            "A,2026-11-03 08:01:00,0,0\n"          # line 6: zero position
            "A,2026-11-03 08:02:00,,32.1\n"        # line 7: no longitude
            "B,1793664100,121.3,32.2\n")           # epoch seconds
    (tmp_path / "fixes.csv").write_bytes(text.encode("gbk"))
    fields = {"person_id": "人员编号", "timestamp": "定位时间", "lon": "经度", "lat": "纬度"}
    batches = list(iter_track_batches({"path": str(tmp_path / "fixes.csv"), "fields": fields}))
    fixes = pd.concat([b.fixes for b in batches])
    issues = sorted((i.line, i.problem.split(" (")[0]) for b in batches for i in b.issues)
    assert issues == [(3, "no time"), (4, "time cannot be read"), (5, "time goes backwards"),
                      (6, "zero, missing or impossible position"), (7, "zero, missing or impossible position")]
    assert sorted(fixes["line"]) == [2, 8]
    assert set(fixes["file"]) == {"fixes.csv"}
    with pytest.raises(InputError, match="lack the column"):
        list(iter_track_batches({"path": str(tmp_path / "fixes.csv")}))
    (tmp_path / "broken.gpx").write_text("<gpx><trk><trkseg><trkpt lat='1'", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable GPX"):
        read_gpx(tmp_path / "broken.gpx")


def test_a_long_csv_streams_in_batches_without_cutting_a_person(tmp_path):
    rows = ["person_id,timestamp,lon,lat"]
    for p in ("A", "B", "C"):
        rows += [f"{p},{T0 + 10 * k},121.2,{32.1 + k * 1e-5:.6f}" for k in range(7)]
    (tmp_path / "f.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    batches = list(iter_track_batches({"path": str(tmp_path / "f.csv")}, batch_rows=5))
    assert len(batches) > 1
    seen = [sorted(set(b.fixes["person_id"])) for b in batches]
    assert sum(len(s) for s in seen) == 3  # each person in one batch only
    assert sum(len(b.fixes) for b in batches) == 21


# --------------------------------------------------------------------------- the demo's planted month
@pytest.fixture(scope="module")
def demo_result():
    demo = make_demo()
    town = demo.town()
    tracks = make_patrols(demo.layers, demo.rosters)
    res = analyze_patrols(town, analyze_responsibility(town).reaches, [tracks.fixes], options={"month": "2026-11"},
                          as_of=dt.date(2026, 12, 1))
    return tracks, res


def test_demo_planted_cases_found_with_evidence_and_nothing_else(demo_result):
    tracks, res = demo_result
    truth = tracks.truth
    assert sorted(truth["case"]) == sorted(PLANTED)
    f = res.findings
    used: set[int] = set()
    for t in truth.itertuples(index=False):
        hits = f[(f["kind"] == t.kind) & (f["person_id"] == t.person_id)]
        assert len(hits) == 1, (t.case, hits[["kind", "person_id", "message"]])
        hit = hits.iloc[0]
        used.add(int(hits.index[0]))
        if t.kind == "patrol_suspect":
            assert t.reason in hit["reasons"].split(","), (t.case, hit["reasons"])
            evidence = {"vehicle": hit["speed_kmh"], "off_route": hit["off_route_m"], "teleport": hit["max_jump_m"]}
            assert evidence[t.reason] == pytest.approx(t.measure, rel=0.05), (t.case, evidence)
            assert shapely.hausdorff_distance(hit.geometry, t.geometry) < 10.0  # the track itself, simplified
        elif t.kind == "patrol_partial":
            # the unpatrolled half, less the 50 m a walk reaches beyond its last fix (and a little GPS noise)
            assert hit["measure"] == pytest.approx(t.measure - 50.0, abs=15.0)
            assert shapely.hausdorff_distance(hit.geometry, t.geometry) < 65.0
        else:
            assert hit["severity"] == "high"  # never patrolled
            assert hit["grid_id"] == t.grid_id if isinstance(t.grid_id, str) else hit["village_id"] == t.village_id
    extra = f.drop(index=list(used))
    assert extra.empty, extra[["kind", "person_id", "message"]].to_string()


def test_demo_spike_is_dropped_and_every_other_chief_is_compliant(demo_result):
    tracks, res = demo_result
    assert int(res.patrols["spikes"].sum()) == 1
    status = res.people["status"].value_counts().to_dict()
    assert status == {"ok": len(res.people) - 4, "missing": 2, "partial": 1, "not judged": 1}
    assert res.people.loc[res.people["status"] == "not judged", "level"].tolist() == ["county"]  # quarterly
    assert res.points == len(tracks.fixes)
    assert not res.issues


# --------------------------------------------------------------------------- config and a run
def _config(tmp_path, extra: str) -> str:
    geo = (ROOT / "data" / "geo").as_posix()
    path = tmp_path / "gisgrid.toml"
    path.write_text(f'[sources.villages]\npath = "{geo}/town.gpkg"\nlayer = "villages"\n'
                    f'fields = {{ village_id = "村编码", name = "村名" }}\n'
                    f'[sources.grids]\npath = "{geo}/town.gpkg"\nlayer = "grids"\n{extra}', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("extra", "words"), [
    ('[patrols]\nriver_distanc_m = 40\n', "did you mean river_distance_m"),
    ('[patrols.rules.village]\nperiod = "fortnight"\n', "use one of"),
    ('[sources.patrols]\npath = "x.csv"\ntimezon = "Asia/Shanghai"\n', "timezone"),
    ('[sources.patrol]\npath = "x.csv"\n', "did you mean [sources.patrols]"),
])
def test_bad_patrol_config_refused_by_check_and_run_before_anything_is_written(tmp_path, extra, words):
    from gisgrid import pipeline

    cfg = _config(tmp_path, extra)
    with pytest.raises(ConfigError, match=re.escape(words)):
        pipeline.check(cfg)
    with pytest.raises(ConfigError, match=re.escape(words)):
        pipeline.run(cfg, out=tmp_path / "out", as_of=dt.date(2026, 12, 1), maps=False)
    assert not (tmp_path / "out" / "reports").exists()


def test_run_on_the_written_demo_reads_the_gcj02_csv_and_reports_the_patrols(tmp_path):
    from gisgrid import pipeline

    res = pipeline.run(ROOT / "data" / "geo" / "gisgrid.toml", out=tmp_path, as_of=dt.date(2026, 12, 1),
                       maps=False)
    f = res.assessment.findings
    truth = gpd.read_file(ROOT / "data" / "geo" / "patrols_truth.geojson")
    got = sorted(zip(f.loc[f["kind"].str.startswith("patrol_"), "kind"],
                     f.loc[f["kind"].str.startswith("patrol_"), "person_id"], strict=True))
    assert got == sorted(zip(truth["kind"], truth["person_id"], strict=True))
    t = res.assessment.totals
    assert t["patrol_month"] == "2026-11"
    assert t["patrol_fixes"] == len(pd.read_csv(ROOT / "data" / "geo" / "patrols.csv"))
    summary = json.loads((res.report_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["patrols"]["patrol_month"] == "2026-11"
    assert summary["patrols"]["river_patrolled"] == pytest.approx(t["river_patrolled"])
    assert summary["patrols"]["patrols_valid"] == t["patrols_valid"] == t["patrols"] - 3  # the three suspects
    page = (res.report_dir / "report.html").read_text(encoding="utf-8")
    assert "id='patrols'" in page
    assert "网格巡查覆盖" in page
    # the scorecard: every village's row gains its patrolled shares, right before its score
    board = page[page.index('<section id="villages">'):]
    board = board[:board.index("</section>")]
    assert "网格巡查 grids patrolled" in board
    for vid, v in res.assessment.summary.iterrows():
        row = board[board.index(f'<span class="id">{vid}</span>'):]
        row = row[:row.index("</tr>")]
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert cells[-2:] == [percent(v["river_patrolled"], 1) if v["river_m"] > 0 else "—",
                              percent(v["grid_patrolled"], 1)], vid
    never = truth.loc[truth["case"] == "never_patrols", "person_id"].iloc[0]
    name = res.assessment.patrols.people.set_index("person_id").loc[never, "name"]
    assert f"<td>{name}</td>" in page
    assert "patrolled 2026-11" in res.describe()
    assert "巡查覆盖 patrolled in 2026-11" in res.assessment._repr_html_()  # the notebook's headline too
    tracks = gpd.read_file(res.report_dir / "patrols.geojson")  # the month's tracks for a GIS, in lon/lat
    assert len(tracks) == t["patrols"]
    assert int((~tracks["valid"].astype(bool)).sum()) == 3
    assert tracks.total_bounds[0] > 121.0
    chiefs = pd.read_csv(res.report_dir / "patrol_people.csv", dtype=str)
    assert set(chiefs.loc[chiefs["status"] == "missing", "person_id"]) == set(
        truth.loc[truth["kind"] == "patrol_missing", "person_id"])


def test_check_reads_the_tracks_and_names_the_rows_a_run_would_refuse(tmp_path, caplog):
    from gisgrid import pipeline

    (tmp_path / "fixes.csv").write_text("person_id,timestamp,lon,lat\nC003,2026-11-03 08:00:00,121.2,32.1\n"
                                        "C003,,121.2,32.1\nC003,2026-11-03 08:01:00,0,0\n", encoding="utf-8")
    cfg = _config(tmp_path, f'[sources.patrols]\npath = "{(tmp_path / "fixes.csv").as_posix()}"\n')
    with caplog.at_level("WARNING"):
        _, table = pipeline.check(cfg)
    row = table.set_index("layer").loc["patrols"]
    assert (row["rows"], row["issues"]) == (1, 2)
    assert "fixes.csv line 3: no time" in caplog.text
    assert "fixes.csv line 4: zero, missing or impossible position" in caplog.text


def test_a_folder_of_gpx_files_judged_like_a_table(tmp_path):
    """Each weekly walk of the west chief as its own GPX file (two segments, Z times): the same verdict."""
    town = _town()
    reaches = analyze_responsibility(town).reaches
    bj = dt.timezone(dt.timedelta(hours=8))
    folder = tmp_path / "tracks"
    folder.mkdir()
    for day in (3, 10, 17, 24):
        walk = _fixes(town, "A1", dt.datetime(2026, 11, day, 9, tzinfo=bj), _line(500_000, 501_000, 25), 20)
        pts = [f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><time>'
               f'{dt.datetime.fromtimestamp(int(t), dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>'
               for lon, lat, t in zip(walk["lon"], walk["lat"], walk["t"], strict=True)]
        half = len(pts) // 2
        (folder / f"A1_2026-11-{day:02d}.gpx").write_text(
            '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            + "".join(pts[:half]) + "</trkseg><trkseg>" + "".join(pts[half:]) + "</trkseg></trk></gpx>",
            encoding="utf-8")
    res = analyze_patrols(town, reaches, iter_track_batches({"path": str(folder)}),
                          options={"month": "2026-11", "levels": ["village"]}, as_of=dt.date(2026, 12, 1))
    people = res.people.set_index("person_id")
    assert people.loc["A1", "status"] == "ok"
    assert people.loc["A1", "periods_met"] == 4
    assert people.loc["A1", "share"] == pytest.approx(1.0)
    assert list(res.findings["person_id"]) == ["B1"]  # the east chief, who sent nothing
