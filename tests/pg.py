"""A throwaway PostgreSQL + PostGIS cluster for the tests and benchmarks (no mocks of the database).

One cluster per test session: ``initdb`` into a temporary folder, ``pg_ctl start`` listening on a unix
socket in that folder only (no TCP port, nothing shared with other sessions), dropped at the end.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user the Debian
package creates. Two roles: the superuser ``gisgrid_admin`` (trust, for the fixtures) and ``reader``,
who must give a password (scram-sha-256), so that wrong credentials can be tested for real.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Set in CI (.ci/run): a missing PostgreSQL or PostGIS is a failure there, not a skip.
REQUIRE_ENV = "GISGRID_REQUIRE_POSTGIS"
ADMIN = "gisgrid_admin"
READER = "reader"
READER_PASSWORD = "s3cret-Pässword"  # never to appear in any output of gisgrid
DBNAME = "gis"
PORT = 5432  # the socket file is .s.PGSQL.5432 in our own folder: no clash with anything


def _bindir() -> Path | None:
    """The folder of initdb/pg_ctl/postgres: PATH first, then Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "postgres").exists():
        return Path(found).resolve().parent
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "pg_ctl").exists() and (cand / "postgres").exists():
            return cand
    return None


def missing_reason() -> str | None:
    """Why no cluster can be started here (None when one can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    bindir = _bindir()
    if bindir is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    share = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False)
    version = bindir.parent.name
    sharedir = Path(share.stdout.strip()) if share.returncode == 0 else Path("/usr/share/postgresql") / version
    if not (sharedir / "extension" / "postgis.control").exists():
        return f"PostGIS is not installed for PostgreSQL {bindir.parent.name}: apt-get install " \
               f"postgresql-{bindir.parent.name}-postgis-3"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@dataclass
class Cluster:
    """A running cluster: its socket folder, and libpq settings to reach it."""

    root: Path
    bindir: Path

    @property
    def host(self) -> str:
        return str(self.root / "sock")

    def env(self, *, user: str = ADMIN, password: str | None = None) -> dict[str, str]:
        """libpq environment for a client (PGHOST/PGPORT/PGUSER, and PGPASSWORD when given)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.host, PGPORT=str(PORT), PGUSER=user, PGDATABASE=DBNAME)
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def conninfo(self, *, dbname: str = DBNAME, user: str = ADMIN) -> str:
        return f"host={self.host} port={PORT} dbname={dbname} user={user}"

    def connect(self, *, dbname: str = DBNAME, autocommit: bool = True) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(dbname=dbname), autocommit=autocommit)

    def run_as_owner(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def start() -> Cluster:
    """initdb + start a cluster in a new temporary folder; create the database ``gis`` with PostGIS."""
    bindir = _bindir()
    assert bindir is not None
    # not under pytest's tmp (mode 0700, owned by root): the server user must reach its folder
    root = Path(tempfile.mkdtemp(prefix="gisgrid-pg-"))
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (root, root / "sock"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    cluster = Cluster(root=root, bindir=bindir)
    res = cluster.run_as_owner("initdb", "-D", str(root / "data"), "-U", ADMIN, "-A", "trust", "-E", "UTF8",
                               "--locale=C.UTF-8", "--no-sync")
    if res.returncode != 0:
        msg = f"initdb failed: {res.stderr[-2000:]}"
        raise RuntimeError(msg)
    (root / "data" / "pg_hba.conf").write_text(
        f"local all {READER} scram-sha-256\nlocal all all trust\n", encoding="utf-8")
    opts = (f"-c listen_addresses='' -c unix_socket_directories={cluster.host} -c port={PORT} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=40")
    res = cluster.run_as_owner("pg_ctl", "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"), "-w",
                               "-t", "60", "start")
    if res.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-2000:] if (root / "log").exists() else ""
        msg = f"pg_ctl start failed: {res.stderr[-1000:]} {log}"
        raise RuntimeError(msg)
    with cluster.connect(dbname="postgres") as conn:
        conn.execute(f"CREATE DATABASE {DBNAME}")
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION postgis")
        conn.execute(f"GRANT CREATE ON DATABASE {DBNAME} TO {READER}")
    return cluster


def stop(cluster: Cluster) -> None:
    """Stop the server at once and remove its folder."""
    cluster.run_as_owner("pg_ctl", "-D", str(cluster.root / "data"), "-m", "immediate", "-w", "stop")
    shutil.rmtree(cluster.root, ignore_errors=True)


@contextlib.contextmanager
def running() -> Iterator[Cluster]:
    """A cluster for the length of the block."""
    cluster = start()
    try:
        yield cluster
    finally:
        stop(cluster)


def load_layer(conn: Any, frame: Any, table: str, *, schema: str = "public", geometry: str = "geom",
               srid: int | None = None) -> None:
    """Write a GeoDataFrame (or a plain DataFrame) into a new table with COPY, as ogr2ogr would load it.

    Text columns become ``text``, integers ``bigint``, floats ``double precision``; the geometry column is
    ``geometry(<type>, srid)`` (``srid=0`` writes an unconstrained SRID-0 column, as a careless import would).
    """
    import numpy as np
    import pandas as pd
    import shapely
    from psycopg import sql

    has_geom = hasattr(frame, "geometry") and "geometry" in frame.columns
    cols = [c for c in frame.columns if c != "geometry"]
    defs = [sql.SQL("ogc_fid serial PRIMARY KEY")]  # as ogr2ogr loads a layer: the features' order kept
    for c in cols:
        kind = frame[c].dtype.kind
        typ = "bigint" if kind in "iu" else "double precision" if kind == "f" else "text"
        defs.append(sql.SQL("{} {}").format(sql.Identifier(str(c)), sql.SQL(typ)))
    if has_geom:
        code = frame.crs.to_epsg() if srid is None else srid
        defs.append(sql.SQL("{} geometry(Geometry, {})").format(sql.Identifier(geometry), sql.Literal(int(code or 0))))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), sql.SQL(", ").join(defs)))
    names = [sql.Identifier(str(c)) for c in cols] + ([sql.Identifier(geometry)] if has_geom else [])
    wkb = None
    if has_geom:
        geoms = shapely.set_srid(np.asarray(frame.geometry.values, dtype=object), int(code or 0))
        wkb = shapely.to_wkb(geoms, hex=True, include_srid=True)
    values = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in cols]
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(schema, table), sql.SQL(", ").join(names))) as copy:
        for i in range(len(frame)):
            row = [v[i] for v in values]
            if wkb is not None:
                row.append(None if pd.isna(wkb[i]) else wkb[i])
            copy.write_row(row)
