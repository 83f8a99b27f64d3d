"""PostGIS as a source and a publish sink, against a real PostgreSQL + PostGIS (tests/pg.py starts one).

No mocks of the database: one throwaway cluster per session on a unix socket in a temporary folder.
Locally the tests skip when the server binaries or PostGIS are missing; CI sets GISGRID_REQUIRE_POSTGIS=1
and then a missing server fails.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pg
import pytest
import shapely
import tomli_w

from gisgrid import pipeline
from gisgrid._errors import ConfigError, CRSError, GisgridError, HistoryError, InputError
from gisgrid.crs import wgs84_to_gcj02
from gisgrid.findings import OPEN_STATUSES, show_ids
from gisgrid.history import History
from gisgrid.io import read_config, read_layer, read_postgis, read_table
from gisgrid.publish import SCHEMA_VERSION, PublishOptions, publish

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
URL = "postgresql:///gis"  # host, port and user from the libpq environment (PGHOST...), as in production
LAYERS = ("boundary", "villages", "grids", "roads", "rivers", "pois")


@pytest.fixture(scope="session", autouse=True)
def _libpq(libpq_env):
    """Every test here reads libpq's environment (tests/conftest.py starts the cluster)."""
    return libpq_env


@pytest.fixture(scope="session")
def demo(cluster, tmp_path_factory):
    """The demo town as files, and the same layers (and the GBK grid-staff roster) in PostGIS schema wangge.

    Returns the folder, the file config and the PostGIS config (layers and grid_staff from the database,
    river_chiefs still from its XLSX).
    """
    folder = tmp_path_factory.mktemp("demo")
    pipeline.write_demo(folder)
    with cluster.connect() as conn:
        for name in LAYERS:
            pg.load_layer(conn, gpd.read_file(folder / "town.gpkg", layer=name), name, schema="wangge")
        pg.load_layer(conn, read_table(folder / "grid_staff.csv"), "grid_staff", schema="wangge")
        conn.execute("GRANT USAGE ON SCHEMA wangge TO reader")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA wangge TO reader")
    data = read_config(folder / "gisgrid.toml")
    data.pop("_path"), data.pop("_dir")
    data["coverage"]["cleaned_grids"] = False  # GEOS work these tests do not look at
    for d in (data, data["sources"]):  # GPS tracks are a file stream of their own, not a layer: not compared here
        d.pop("patrols", None)
    for name, spec in data["sources"].items():
        if name in (*LAYERS, "grid_staff"):
            for key in ("path", "layer", "encoding"):
                spec.pop(key, None)
            spec.update(url=URL, table=f"wangge.{name}")
        else:
            spec["path"] = str(folder / spec["path"])
    pg_cfg = folder / "pg.toml"
    pg_cfg.write_text(tomli_w.dumps(data), encoding="utf-8")
    file_data = read_config(folder / "gisgrid.toml")
    file_data.pop("_path"), file_data.pop("_dir")
    file_data["coverage"]["cleaned_grids"] = False
    for d in (file_data, file_data["sources"]):
        d.pop("patrols", None)
    for spec in file_data["sources"].values():
        spec["path"] = str(folder / spec["path"])
    file_cfg = folder / "files.toml"
    file_cfg.write_text(tomli_w.dumps(file_data), encoding="utf-8")
    return {"folder": folder, "files": file_cfg, "pg": pg_cfg, "data": data}


def _tiny(cluster, frames: dict, schema: str, folder: Path, **extra: dict) -> Path:
    """The hand-built 4-grid town of conftest, every layer and roster in PostGIS ``schema``; its config."""
    with cluster.connect() as conn:
        for name, frame in frames.items():
            pg.load_layer(conn, frame, name, schema=schema)
    data = {"town": {"name": "测试镇"}, "coverage": {"cleaned_grids": False},
            "sources": {name: {"url": URL, "table": f"{schema}.{name}"} for name in frames}, **extra}
    return _write_cfg(folder, f"{schema}.toml", data)


def _write_cfg(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gisgrid", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def analysed(demo):
    """The demo analysed from its GeoPackage and from PostGIS (the same day)."""
    day = dt.date(2026, 11, 30)
    out = {}
    for key in ("files", "pg"):
        cfg = pipeline.load_config(demo[key])
        town = pipeline.load_town(cfg)
        out[key] = (town, pipeline.analyse_config(cfg, town, as_of=day))
    return out


# --------------------------------------------------------------------------- sources
def test_demo_town_from_postgis_gives_the_same_findings_with_the_same_ids(analysed):
    (ftown, fa), (ptown, pa) = analysed["files"], analysed["pg"]
    assert len(fa.findings) > 0
    f = fa.findings.sort_values("finding_id").reset_index(drop=True)
    p = pa.findings.sort_values("finding_id").reset_index(drop=True)
    assert list(p["finding_id"]) == list(f["finding_id"])
    cols = [c for c in f.columns if c != "geometry"]
    pd.testing.assert_frame_equal(p[cols].astype(str), f[cols].astype(str))
    assert shapely.equals_exact(p.geometry.values, f.geometry.values, tolerance=1e-6).all()
    # the same validation and repairs on the way in, and the same analysis CRS from the same SRID
    assert ptown.crs == ftown.crs
    pd.testing.assert_frame_equal(ptown.repairs.astype(str), ftown.repairs.astype(str))
    assert len(ptown.grid_staff) == len(ftown.grid_staff)
    assert set(ptown.grid_staff["role"]) == set(ftown.grid_staff["role"]) == {"grid_chief", "grid_member"}
    assert ptown.sources["grids"]["database"]["srid"] == 4490


def _use_libpq(m: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's libpq settings become ``env``'s (no password unless it gives one)."""
    for key, value in env.items():
        if key.startswith("PG"):
            m.setenv(key, value)
    if "PGPASSWORD" not in env:
        m.delenv("PGPASSWORD", raising=False)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (the libpq environment of the test); exit code, stdout, stderr."""
    from gisgrid import cli

    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_against_the_database_names_tables_rows_srid_and_types(cluster, town_frames, tmp_path, capsys):
    frames = dict(town_frames)
    frames["roads"] = frames["roads"].explode(ignore_index=True).set_geometry(  # one road as a MultiLineString
        [shapely.MultiLineString([g]) if i == 0 else g for i, g in enumerate(frames["roads"].geometry)])
    code, out, err = _main(capsys, "check", str(_tiny(cluster, frames, "tiny_check", tmp_path)))
    assert code == 0, err
    assert "postgis grids: tiny_check.grids in postgresql:///gis: 4 rows, SRID 4549, Polygon" in out
    assert "postgis roads: tiny_check.roads in postgresql:///gis: 2 rows, SRID 4549, LineString, MultiLineString" \
        in out
    assert "postgis grid_staff: tiny_check.grid_staff in postgresql:///gis: 4 rows, no geometry" in out
    assert "postgis river_chiefs: tiny_check.river_chiefs in postgresql:///gis: 2 rows, no geometry" in out


def test_check_says_where_run_would_publish_and_refuses_what_it_cannot(cluster, town_frames, tmp_path, capsys):
    cfg = _tiny(cluster, town_frames, "tiny_pub", tmp_path, publish={"url": URL, "schema": "pub_check"})
    code, out, err = _main(capsys, "check", str(cfg), "-q")
    assert code == 0, err
    code, out, err = _main(capsys, "check", str(cfg))
    assert "publish: postgresql:///gis schema 'pub_check': created on the first run (this user may create it)" in out
    assert _query(cluster, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pub_check'") == [(0,)]  # read only
    d1 = dt.date(2026, 11, 2)
    findings = pipeline.analyse_config(pipeline.load_config(cfg), as_of=d1).findings
    lifecycle = History(tmp_path / "history.sqlite").record(findings, as_of=d1)
    publish(lifecycle, PublishOptions(url=URL, schema="pub_check"), run_date=d1, town="测试镇")
    code, out, err = _main(capsys, "check", str(cfg))
    assert f"publish: postgresql:///gis schema 'pub_check': version {SCHEMA_VERSION}, 1 run(s), latest " \
           f"{d1.isoformat()}; this user may write it" in out
    # the reader may read the layers but not write the published tables: exit 2 before any night fails
    with cluster.connect() as conn:
        conn.execute("GRANT USAGE ON SCHEMA tiny_pub, pub_check TO reader")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA tiny_pub TO reader")
    env = cluster.env(user=pg.READER, password=pg.READER_PASSWORD)
    res = _cli("check", str(cfg), "-q", env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "[publish] postgresql:///gis schema 'pub_check': this user may not write" in res.stderr
    assert pg.READER_PASSWORD not in res.stdout + res.stderr


def _small_cfg(demo: dict, **grids: object) -> dict:
    """A config with villages and grids from PostGIS only; ``grids`` overrides keys of [sources.grids]."""
    data = {"town": dict(demo["data"]["town"]), "coverage": {"cleaned_grids": False},
            "sources": {k: dict(demo["data"]["sources"][k]) for k in ("villages", "grids")}}
    data["sources"]["grids"].update(grids)
    for k, v in list(data["sources"]["grids"].items()):
        if v is None:
            del data["sources"]["grids"][k]
    return data


def test_bad_database_sources_are_exit_2_naming_the_source_and_never_the_password(demo, cluster, tmp_path, capsys,
                                                                                   monkeypatch):
    with cluster.connect() as conn:
        pg.load_layer(conn, gpd.read_file(demo["folder"] / "town.gpkg", layer="grids"), "grids_srid0",
                      schema="wangge", srid=0)
        conn.execute("GRANT SELECT ON wangge.grids_srid0 TO reader")
    ok = _write_cfg(tmp_path, "ok.toml", _small_cfg(demo))
    cases = {
        "wrong password": (ok, cluster.env(user=pg.READER, password="not-" + pg.READER_PASSWORD),
                           ["[sources.villages]", "password authentication failed", "~/.pgpass"]),
        "refused": (ok, {**cluster.env(), "PGHOST": str(tmp_path / "no-server-here")},
                    ["[sources.villages]", "cannot connect", "server is running"]),
        "missing table": (_write_cfg(tmp_path, "t.toml", _small_cfg(demo, table="wangge.gridz")), cluster.env(),
                          ["[sources.grids]", "no table 'wangge.gridz'", "did you mean 'wangge.grids'?"]),
        "missing column": (_write_cfg(tmp_path, "c.toml", _small_cfg(
            demo, fields={"grid_id": "wgbm", "village_id": "village_id"})), cluster.env(),
            ["'wgbm'", "[sources.grids] fields"]),
        "missing geometry column": (_write_cfg(tmp_path, "g.toml", _small_cfg(demo, geometry="shape")),
                                    cluster.env(), ["[sources.grids]", "no column 'shape'"]),
        "srid 0": (_write_cfg(tmp_path, "s.toml", _small_cfg(demo, table="wangge.grids_srid0")), cluster.env(),
                   ["[sources.grids]", "SRID 0", 'crs = "EPSG:4490"']),
        "password in the url": (_write_cfg(tmp_path, "p.toml", _small_cfg(
            demo, url=f"postgresql://reader:{pg.READER_PASSWORD}@/gis")), cluster.env(),
            ["[sources.grids] url holds a password", "~/.pgpass"]),
    }
    for case, (cfg, env, expect) in cases.items():
        with monkeypatch.context() as m:
            _use_libpq(m, env)
            code, out, err = _main(capsys, "check", str(cfg), "-q", "-vv")
        assert code == 2, (case, out[-2000:], err[-2000:])
        for text in expect:
            assert text in err, (case, text, err[-2000:])
        assert pg.READER_PASSWORD not in out + err, case
    # the real process too: wrong credentials, then the right ones (from the environment, as libpq takes
    # them): the password is never shown, not even in debug logging
    res = _cli("check", str(ok), "-q", "-vv", env=cases["wrong password"][1])
    assert res.returncode == 2, res.stderr[-2000:]
    assert "password authentication failed" in res.stderr
    assert "Traceback" not in res.stderr
    res = _cli("check", str(ok), "-q", "-vv", env=cluster.env(user=pg.READER, password=pg.READER_PASSWORD))
    assert res.returncode == 0, res.stderr[-2000:]
    assert pg.READER_PASSWORD not in res.stdout + res.stderr
    # or from a password file (~/.pgpass, here named by PGPASSFILE), as libpq reads it
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{pg.READER}:{pg.READER_PASSWORD}\n", encoding="utf-8")
    passfile.chmod(0o600)
    with monkeypatch.context() as m:
        m.setenv("PGUSER", pg.READER)
        m.setenv("PGPASSFILE", str(passfile))
        m.delenv("PGPASSWORD", raising=False)
        assert len(read_postgis(URL, table="wangge.villages", name="villages")) == len(
            gpd.read_file(demo["folder"] / "town.gpkg", layer="villages"))
    # SRID 0 with its CRS declared reads like the constrained table
    declared = pipeline.load_town(pipeline.load_config(_write_cfg(tmp_path, "s2.toml", _small_cfg(
        demo, table="wangge.grids_srid0", crs="EPSG:4490"))))
    assert len(declared.grids) == len(gpd.read_file(demo["folder"] / "town.gpkg", layer="grids"))


def test_hostile_table_names_and_sql_are_harmless(demo, cluster):
    hostile = 'grids"; DROP TABLE wangge.villages; --'
    with cluster.connect() as conn:
        pg.load_layer(conn, gpd.read_file(demo["folder"] / "town.gpkg", layer="grids"), hostile, schema="wangge")
    before = _counts(cluster)
    layer = read_postgis(URL, table=f"wangge.{hostile}", name="grids")
    assert len(layer) == before["grids"]
    assert layer.attrs["source"]["layer"] == f"wangge.{hostile}"
    with pytest.raises(InputError, match="no table"):
        read_postgis(URL, table="wangge.grids; DROP TABLE wangge.villages", name="grids")
    # a sql source is read-only and one statement
    with pytest.raises(InputError, match="read-only"):
        read_postgis(URL, sql="DELETE FROM wangge.villages RETURNING *", name="villages")
    with pytest.raises(InputError, match=r"multiple commands|read-only"):
        read_postgis(URL, sql="SELECT * FROM wangge.grids; DROP TABLE wangge.villages", name="grids")
    with pytest.raises(InputError, match="read-only"):
        read_postgis(URL, sql="WITH d AS (DELETE FROM wangge.villages RETURNING *) SELECT * FROM d",
                     name="villages")
    assert _counts(cluster) == before
    # and an honest query reads what it selects
    some = read_postgis(URL, sql="select * from wangge.grids where village_id = 'V01';", name="grids")
    assert len(some) == int((gpd.read_file(demo["folder"] / "town.gpkg", layer="grids")["village_id"] == "V01")
                            .sum()) > 0


def _counts(cluster) -> dict[str, int]:
    with cluster.connect() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM wangge.{t}").fetchone()[0] for t in LAYERS}


def test_gcj02_conversion_is_the_same_as_from_a_file(demo, tmp_path, cluster):
    pois = gpd.read_file(demo["folder"] / "town.gpkg", layer="pois").to_crs(4326)
    lon, lat = wgs84_to_gcj02(pois.geometry.x.to_numpy(), pois.geometry.y.to_numpy())
    shifted = pois.set_geometry(gpd.points_from_xy(lon, lat), crs=4326)
    shifted.to_file(tmp_path / "pois_gcj.geojson")
    with cluster.connect() as conn:
        pg.load_layer(conn, shifted, "pois_gcj", schema="wangge", srid=0)  # as a web-map export arrives
    from_file = read_layer(tmp_path / "pois_gcj.geojson", crs="GCJ-02")
    from_db = read_postgis(URL, table="wangge.pois_gcj", crs="GCJ-02", name="pois")
    assert from_db.crs == from_file.crs
    assert shapely.equals_exact(from_db.geometry.values, from_file.geometry.values, tolerance=1e-9).all()
    # undone: back within a centimetre of the true WGS84 points
    assert float(from_db.to_crs(4549).distance(pois.to_crs(4549)).max()) < 0.01
    with pytest.raises(CRSError, match="SRID 0"):
        read_postgis(URL, table="wangge.pois_gcj", name="pois")


# --------------------------------------------------------------------------- publish
def _query(cluster, text: str, params: tuple = ()) -> list[tuple]:
    with cluster.connect() as conn:
        return conn.execute(text, params).fetchall()


def _lifecycles(analysed, tmp_path):
    """Three real lifecycles from the history: day 1, day 1 again, day 8 with two findings fixed."""
    findings = analysed["pg"][1].findings
    hist = History(tmp_path / "history.sqlite")
    d1, d8 = dt.date(2026, 11, 2), dt.date(2026, 11, 9)
    first = hist.record(findings, as_of=d1)
    again = hist.record(findings, as_of=d1)
    fixed = findings.sort_values("finding_id").iloc[:2]
    later = hist.record(findings[~findings["finding_id"].isin(fixed["finding_id"])], as_of=d8)
    return (d1, first), (d1, again), (d8, later), set(fixed["finding_id"])


def test_publish_republish_and_next_day(analysed, tmp_path, cluster):
    opts = PublishOptions(url=URL, schema="gisgrid")
    town = analysed["pg"][0].name
    (d1, first), (_, again), (d8, later), fixed = _lifecycles(analysed, tmp_path)
    res = publish(first, opts, run_date=d1, town=town, config_hash="abc", exit_code=1, reason="veto")
    assert res.rows == len(first)
    assert res.replaced == 0
    rows_d1 = _query(cluster, "SELECT finding_id, status, owner, deadline, ST_SRID(geom), ST_SRID(geom_4326) "
                              "FROM gisgrid.findings WHERE run_date = %s ORDER BY 1", (d1,))
    assert [r[0] for r in rows_d1] == sorted(first["finding_id"])
    assert {r[4] for r in rows_d1} == {first.crs.to_epsg()}
    assert {r[5] for r in rows_d1} == {4326}
    # the same date again replaces its rows: nothing doubled
    res = publish(again, opts, run_date=d1, town=town, config_hash="abc", exit_code=1, reason="veto")
    assert res.replaced == len(first)
    assert _query(cluster, "SELECT count(*) FROM gisgrid.findings")[0][0] == len(first)
    assert _query(cluster, "SELECT run_date, exit_code, findings, open FROM gisgrid.runs") == [
        (d1, 1, len(again), int(again["status"].isin(OPEN_STATUSES).sum()))]
    # the next run: current_findings shows its open items with status, owner and deadline
    publish(later, opts, run_date=d8, town=town, config_hash="abc", exit_code=1, reason="overdue")
    current = _query(cluster, "SELECT finding_id, status, owner, deadline, run_date FROM gisgrid.current_findings "
                              "ORDER BY 1")
    want = later[later["status"].isin(OPEN_STATUSES)].sort_values("finding_id")
    assert [r[0] for r in current] == list(want["finding_id"])
    assert [r[1] for r in current] == list(want["status"])
    assert [r[2] for r in current] == list(want["owner"])
    assert [r[3] for r in current] == [pd.Timestamp(d).date() for d in want["deadline"]]
    assert {r[4] for r in current} == {d8}
    assert fixed.isdisjoint(r[0] for r in current)
    resolved = _query(cluster, "SELECT finding_id FROM gisgrid.findings WHERE run_date = %s AND status = 'resolved'",
                      (d8,))
    assert {r[0] for r in resolved} == fixed
    assert "overdue" in set(later["status"])  # a week later the 3-day veto deadline has passed
    # the schema's promises: primary key, spatial indexes, version
    pk = _query(cluster, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                         "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'gisgrid.findings'::regclass "
                         "AND i.indisprimary ORDER BY 1")
    assert [r[0] for r in pk] == ["finding_id", "run_date"]
    gist = _query(cluster, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'gisgrid' AND indexdef LIKE "
                           "'%%USING gist%%'")
    assert {"geom", "geom_4326"} <= {r[0].rsplit("(", 1)[1].rstrip(")") for r in gist}
    assert _query(cluster, "SELECT version FROM gisgrid.schema_version") == [(SCHEMA_VERSION,)]
    # a newer gisgrid's tables are refused, not overwritten
    with cluster.connect() as conn:
        conn.execute("INSERT INTO gisgrid.schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(HistoryError, match="newer gisgrid"):
        publish(later, opts, run_date=d8, town=town)
    with cluster.connect() as conn:
        conn.execute("DELETE FROM gisgrid.schema_version WHERE version > %s", (SCHEMA_VERSION,))


def test_hostile_values_and_schema_name_round_trip(analysed, tmp_path, cluster):
    schema = 'pub"; DROP SCHEMA gisgrid CASCADE; --'
    (d1, first), *_ = _lifecycles(analysed, tmp_path)
    evil = first.copy()
    owner = "张三'); DROP TABLE runs; --\t\\N\n"
    evil["owner"] = owner
    evil.loc[evil.index[0], "message"] = "nul\x00byte \\. end"
    publish(evil, PublishOptions(url=URL, schema=schema), run_date=d1, town="镇'; --")
    rows = _query(cluster, f'SELECT owner, message, town, village_id FROM "{schema.replace(chr(34), 2 * chr(34))}"'
                           '.findings ORDER BY finding_id')
    assert {r[0] for r in rows} == {owner}
    assert "nul\ufffdbyte \\. end" in {r[1] for r in rows}
    assert {r[2] for r in rows} == {"镇'; --"}
    assert sorted(r[3] or "" for r in rows) == sorted(show_ids(v) or "" for v in evil["village_id"])
    assert _query(cluster, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 1


def test_concurrent_publishes_are_serialised_by_the_advisory_lock(analysed, tmp_path, cluster):
    opts = PublishOptions(url=URL, schema="concurrent")  # a fresh schema: both also race to create it
    (d1, first), _, (d8, later), _ = _lifecycles(analysed, tmp_path)
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    done: dict[str, float] = {}

    def slow_commit() -> None:
        holding.set()
        assert release.wait(30)

    def job(key: str, lifecycle, day, hook) -> None:
        try:
            publish(lifecycle, opts, run_date=day, town=key, before_commit=hook)
            done[key] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=job, args=("A", first, d1, slow_commit))
    a.start()
    assert holding.wait(30)
    b = threading.Thread(target=job, args=("B", later, d8, None))
    b.start()
    deadline = time.monotonic() + 20
    waiting = 0
    while time.monotonic() < deadline and not waiting:  # B waits on the advisory lock A holds
        waiting = _query(cluster, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]
        time.sleep(0.05)
    assert waiting == 1
    assert "B" not in done
    released_at = time.monotonic()
    release.set()
    a.join(30)
    b.join(30)
    assert not errors, errors
    assert done["B"] >= released_at
    assert done["A"] <= done["B"]
    counts = dict(_query(cluster, "SELECT town, count(*) FROM concurrent.findings GROUP BY town"))
    assert counts == {"A": len(first), "B": len(later)}


def test_a_run_publishes_and_a_connection_killed_during_publish_leaves_the_previous_one(cluster, town_frames,
                                                                                           tmp_path, capsys):
    frames = dict(town_frames)
    frames["grid_staff"] = frames["grid_staff"].iloc[1:]  # G1 unstaffed: a finding to publish
    cfg = _tiny(cluster, frames, "tiny_run", tmp_path, publish={"url": URL, "schema": "live"})
    out = tmp_path / "out"
    env = cluster.env()
    code, _, err = _main(capsys, "run", str(cfg), "--out", str(out), "--as-of", "2026-11-02", "--no-maps", "-q")
    assert code in (0, 1), err[-2000:]
    published = _query(cluster, "SELECT finding_id FROM live.findings WHERE run_date = '2026-11-02' ORDER BY 1")
    csv = pd.read_csv(out / "reports" / "2026-11-02" / "findings.csv", dtype=str)
    assert [r[0] for r in published] == sorted(csv["finding_id"])
    assert len(published) > 0
    assert _query(cluster, "SELECT exit_code FROM live.runs") == [(code,)]
    # a publish that cannot reach its database: exit 2, no report, and the date is not left in the history
    data = tomllib.loads(cfg.read_text(encoding="utf-8"))
    data["publish"]["url"] = f"postgresql:///gis?host={tmp_path / 'no-server-here'}"
    unreachable = _write_cfg(tmp_path, "unreachable.toml", data)
    code, _, err = _main(capsys, "run", str(unreachable), "--out", str(out), "--as-of", "2026-11-03", "--no-maps")
    assert code == 2, err[-2000:]
    assert "[publish]: cannot connect" in err
    assert not (out / "reports" / "2026-11-03").exists()
    assert History(out / "reports" / "history.sqlite").get_run(dt.date(2026, 11, 3)) is None
    # the next night is paused inside its publish transaction, its connection is killed, then the process
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-m", "gisgrid", "run", str(cfg), "--out", str(out), "--as-of",
                             "2026-11-03", "--no-maps", "-q"],
                            env={**env, "PYTHONPATH": str(ROOT), "GISGRID_FAULT": "pause:publish commit",
                                 "GISGRID_PAUSE_FILE": str(marker)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the run never reached its publish"
        # the new rows are written, uncommitted: the platform still sees only the first night
        assert _query(cluster, "SELECT DISTINCT run_date::text FROM live.findings") == [("2026-11-02",)]
        # ... from a transaction that is open and holds the publish lock
        assert _query(cluster, "SELECT a.state, l.granted FROM pg_stat_activity a JOIN pg_locks l USING (pid) "
                               "WHERE a.application_name = 'gisgrid publish' AND l.locktype = 'advisory'") == [
            ("idle in transaction", True)]
        killed = _query(cluster, "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                                 "WHERE application_name = 'gisgrid publish'")
        assert killed == [(True,)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert _query(cluster, "SELECT DISTINCT run_date::text FROM live.findings") == [("2026-11-02",)]
    assert [r[0] for r in _query(cluster, "SELECT finding_id FROM live.findings ORDER BY 1")] == \
        [r[0] for r in published]
    assert _query(cluster, "SELECT run_date::text FROM live.runs") == [("2026-11-02",)]
    assert _query(cluster, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    assert not (out / "reports" / "2026-11-03").exists()  # no report without its publish
    # the next run undoes the half-recorded night and publishes it whole
    code, _, err = _main(capsys, "run", str(cfg), "--out", str(out), "--as-of", "2026-11-03", "--no-maps", "-q")
    assert code in (0, 1), err[-2000:]
    assert (out / "reports" / "2026-11-03" / "report.html").exists()
    assert _query(cluster, "SELECT run_date::text, count(*) FROM live.findings GROUP BY 1 ORDER BY 1") == [
        ("2026-11-02", len(published)), ("2026-11-03", len(published))]


def test_publish_config_is_checked_before_anything_runs(demo, tmp_path):
    data = tomllib.loads(demo["pg"].read_text(encoding="utf-8"))
    for bad, match in (({"url": "postgresql://u:hunter2@/gis"}, "holds a password"),
                       ({"url": URL, "shcema": "x"}, "unknown key"),
                       ({"schema": "x"}, "no url")):
        data["publish"] = bad
        cfg = pipeline.load_config(_write_cfg(tmp_path, "bad.toml", data))
        with pytest.raises(ConfigError, match=match) as err:
            pipeline.validate(cfg)
        assert "hunter2" not in str(err.value)
    assert issubclass(ConfigError, GisgridError)


def test_a_publish_larger_than_one_copy_chunk_arrives_whole(analysed, tmp_path, cluster):
    from gisgrid.publish import _CHUNK

    (d1, first), *_ = _lifecycles(analysed, tmp_path)
    reps = -(-(2 * _CHUNK + 500) // len(first))
    big = pd.concat([first.assign(finding_id=first["finding_id"] + f"-{i}") for i in range(reps)], ignore_index=True)
    big = gpd.GeoDataFrame(big, crs=first.crs)
    publish(big, PublishOptions(url=URL, schema="chunks"), run_date=d1, town="t")
    rows = _query(cluster, "SELECT finding_id, ST_NPoints(geom) FROM chunks.findings ORDER BY 1")
    assert [r[0] for r in rows] == sorted(big["finding_id"])
    want = dict(zip(big["finding_id"], shapely.get_num_coordinates(big.geometry.values), strict=True))
    assert all(n == want[fid] for fid, n in rows)


# --------------------------------------------------------------------------- the history in PostgreSQL
def _lifecycle_csv(out: Path, day: str) -> pd.DataFrame:
    cols = ["finding_id", "kind", "status", "first_seen", "opened_on", "deadline", "times_reopened"]
    table = pd.read_csv(out / "reports" / day / "findings.csv", dtype=str, keep_default_na=False)
    return table[cols].sort_values("finding_id").reset_index(drop=True)


def test_a_town_keeps_its_history_in_postgresql_exactly_as_in_sqlite(cluster, town_frames, tmp_path, capsys):
    """[history] url: the same nights, the same lifecycle, list, undo and score as the SQLite history beside it."""
    frames = dict(town_frames)
    frames["grid_staff"] = frames["grid_staff"].iloc[1:]  # G1 unstaffed
    in_pg = _tiny(cluster, frames, "tiny_hist", tmp_path, history={"url": URL})
    data = tomllib.loads(in_pg.read_text(encoding="utf-8"))
    del data["history"]
    in_file = _write_cfg(tmp_path, "file_history.toml", data)
    outs = {"pg": tmp_path / "out_pg", "file": tmp_path / "out_file"}
    nights = ["2026-11-02", "2026-11-05", "2026-11-20"]
    staff = {"2026-11-05": "DELETE FROM tiny_hist.grid_staff WHERE grid_id = 'G2'",  # G2 loses its chief
             "2026-11-20": "INSERT INTO tiny_hist.grid_staff (person_id, name, phone, role, grid_id) "
                           "VALUES ('S1', '张三', '13800000001', 'grid_chief', 'G1')"}  # G1 gets one: resolved
    for night in nights:
        if night in staff:
            _query_commit(cluster, staff[night])
        for key, cfg in (("pg", in_pg), ("file", in_file)):
            code, _, err = _main(capsys, "run", str(cfg), "--out", str(outs[key]), "--as-of", night, "--no-maps",
                                 "-q")
            assert code in (0, 1), (key, night, err[-2000:])
        pd.testing.assert_frame_equal(_lifecycle_csv(outs["pg"], night), _lifecycle_csv(outs["file"], night))
    last = _lifecycle_csv(outs["pg"], nights[-1])
    assert "resolved" in set(last["status"])
    assert {"persisting", "overdue"} & set(last["status"])
    assert not (outs["pg"] / "reports" / "history.sqlite").exists()  # nothing of the history in the folder
    schema = "gisgrid_history_测试镇"  # the default: one schema per town name
    assert _query(cluster, f'SELECT as_of FROM "{schema}".runs ORDER BY 1') == [(n,) for n in nights]
    assert _query(cluster, f"SELECT value FROM \"{schema}\".gisgrid_meta WHERE key = 'town'") == [("测试镇",)]

    def listed(key: str, cfg: Path) -> list[str]:
        code, out, err = _main(capsys, "history", "list", str(cfg), "--out", str(outs[key]))
        assert code == 0, err[-2000:]
        return [line.split("recorded")[0] for line in out.splitlines() if line.strip()]

    assert listed("pg", in_pg) == listed("file", in_file)
    assert len(listed("pg", in_pg)) == 3
    for key, cfg in (("pg", in_pg), ("file", in_file)):
        code, _, err = _main(capsys, "history", "undo", nights[1], str(cfg), "--out", str(outs[key]))
        assert code == 0, err[-2000:]
    assert listed("pg", in_pg) == listed("file", in_file)
    assert len(listed("pg", in_pg)) == 2
    for key, cfg in (("pg", in_pg), ("file", in_file)):
        code, _, err = _main(capsys, "score", str(cfg), "--out", str(outs[key]), "--period", "2026-11")
        assert code == 0, err[-2000:]
    ranks = [pd.read_csv(outs[k] / "reports" / "periods" / "2026-11" / "ranking.csv", dtype=str) for k in outs]
    pd.testing.assert_frame_equal(ranks[0], ranks[1])
    code, out, err = _main(capsys, "check", str(in_pg))
    assert code == 0, err[-2000:]
    assert f"history: postgresql:///gis schema {schema}: 2 run(s), latest 2026-11-20" in out


def _query_commit(cluster, text: str) -> None:
    with cluster.connect() as conn:  # autocommit
        conn.execute(text)


def test_history_in_postgresql_refusals_are_exit_2_and_towns_do_not_mix(cluster, town_frames, tmp_path, capsys,
                                                                         monkeypatch):
    data = tomllib.loads(_tiny(cluster, dict(town_frames), "tiny_refuse", tmp_path).read_text(encoding="utf-8"))
    data.update(town={"name": "第三镇"}, history={"url": URL})  # a town of its own: its schema is new
    _query_commit(cluster, "GRANT USAGE ON SCHEMA tiny_refuse TO reader")  # the reader may read the layers
    _query_commit(cluster, "GRANT SELECT ON ALL TABLES IN SCHEMA tiny_refuse TO reader")
    cfg = _write_cfg(tmp_path, "third.toml", data)
    out = tmp_path / "out"
    # nothing recorded yet: the commands that read a history say so, and create nothing
    code, _, err = _main(capsys, "history", "list", str(cfg), "--out", str(out))
    assert code == 2, err[-2000:]
    assert "no run history" in err
    code, text, err = _main(capsys, "check", str(cfg))
    assert code == 0, err[-2000:]
    assert "history: postgresql:///gis schema gisgrid_history_第三镇: started by the first run" in text
    assert _query(cluster, "SELECT count(*) FROM pg_namespace WHERE nspname = 'gisgrid_history_第三镇'") == [(0,)]
    code, _, err = _main(capsys, "run", str(cfg), "--out", str(out), "--as-of", "2026-11-02", "--no-maps", "-q")
    assert code in (0, 1), err[-2000:]
    # another town pointed at this town's schema is refused, not mixed in
    other = {**data, "town": {"name": "第二镇"}, "history": {"url": URL, "schema": "gisgrid_history_第三镇"}}
    code, _, err = _main(capsys, "run", str(_write_cfg(tmp_path, "other.toml", other)), "--out",
                         str(tmp_path / "other"), "--as-of", "2026-11-02", "--no-maps", "-q")
    assert code == 2, err[-2000:]
    assert "history of the town '第三镇', not of '第二镇'" in err
    assert "[history] schema" in err
    # a second town on the same database, by default, has a schema of its own (towns on different machines)
    other["history"] = {"url": URL}
    code, _, err = _main(capsys, "run", str(_write_cfg(tmp_path, "other2.toml", other)), "--out",
                         str(tmp_path / "other"), "--as-of", "2026-11-02", "--no-maps", "-q")
    assert code in (0, 1), err[-2000:]
    assert _query(cluster, 'SELECT count(*) FROM "gisgrid_history_第二镇".runs') == [(1,)]
    assert _query(cluster, 'SELECT count(*) FROM "gisgrid_history_第三镇".runs') == [(1,)]
    # a user without rights, a wrong password, a password in the URL, two places at once, a stray schema key
    bad = {
        "wrong password": ({"url": URL}, cluster.env(user=pg.READER, password="not-" + pg.READER_PASSWORD),
                           ["password authentication failed", "~/.pgpass"]),
        "no rights": ({"url": URL}, cluster.env(user=pg.READER, password=pg.READER_PASSWORD),
                      ["may not read or write", "grant the user"]),
        "password in url": ({"url": f"postgresql://reader:{pg.READER_PASSWORD}@/gis"}, cluster.env(),
                            ["[history] url holds a password"]),
        "path and url": ({"url": URL, "path": "h.sqlite"}, cluster.env(), ["both path", "keep one"]),
        "schema without url": ({"schema": "x"}, cluster.env(), ["no [history] url"]),
        "schema too long": ({"url": URL, "schema": "史" * 30}, cluster.env(), ["1 to 63 bytes"]),
        "a town with no name": ({"url": URL}, cluster.env(), ["no [town] name", "add schema"]),
    }
    for case, (history, env, expect) in bad.items():
        town = {} if case == "a town with no name" else data["town"]  # unnamed towns must not share one schema
        cfg_bad = _write_cfg(tmp_path, "bad.toml", {**data, "town": town, "history": history})
        with monkeypatch.context() as m:
            _use_libpq(m, env)
            check = _main(capsys, "check", str(cfg_bad), "-q")
            code, out_text, err = _main(capsys, "run", str(cfg_bad), "--out", str(tmp_path / "bad"), "--as-of",
                                        "2026-11-03", "--no-maps", "-q")
        assert check[0] == 2, (case, check[2][-2000:])  # gisgrid check finds it first
        assert code == 2, (case, err[-2000:])
        for text in expect:
            assert text in err, (case, text, err[-2000:])
        assert "Traceback" not in err
        assert pg.READER_PASSWORD not in out_text + err, case
        assert not (tmp_path / "bad" / "reports" / "2026-11-03").exists(), case
