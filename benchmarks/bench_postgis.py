"""Benchmark PostGIS as a source and as a publish sink, on a throwaway local server.

Usage::

    python benchmarks/bench_postgis.py [--scale county|town] [--findings 20000] [--repeat 3]

Needs PostgreSQL with PostGIS installed (Debian: ``postgresql postgresql-15-postgis-3``); it starts its
own cluster with ``tests/pg.py`` (a temporary folder, a unix socket, no TCP port) and removes it.

1. **Read**: the demo's layers (county scale: ~20k grids, ~50k roads, hand-drawn) written once to a
   GeoPackage and loaded once into PostGIS (as ogr2ogr would, with a primary key); then each layer read
   ``--repeat`` times through :func:`gisgrid.io.read_layer` (pyogrio/GDAL) and through
   :func:`gisgrid.io.read_postgis` (psycopg, binary EWKB). Both end in the same post-read path, so the
   difference is the transport. The frames are compared (rows and geometries equal).
2. **Publish**: a run's real lifecycle table (the town analysed and recorded in a history), tiled to
   ``--findings`` rows with distinct ids, published with :func:`gisgrid.publish.publish`: the first
   publish (schema created), then the same date again (its rows replaced), best of ``--repeat``.
   The target is under 3 s for 20,000 findings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pg  # noqa: E402 - tests/pg.py: the throwaway cluster


def server_cpu(cluster: pg.Cluster) -> float:
    """CPU seconds the whole cluster has used: the postmaster, its reaped backends (cutime) and its live children.

    On a shared machine the wall time of a publish depends on the neighbours; client CPU plus server CPU
    does not.
    """
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    main = fields(pid)
    total = sum(int(x) for x in main[11:15])  # utime, stime, cutime, cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[1]) == pid:
            total += int(f[11]) + int(f[12])
    return total / tick


def bench_read(cluster: pg.Cluster, scale: str, repeat: int, folder: Path) -> None:
    from gisgrid.demo import make_demo
    from gisgrid.io import read_layer, read_postgis, write_layers

    t = time.perf_counter()
    layers = make_demo(scale=scale).source_layers()
    print(f"demo {scale}: made in {time.perf_counter() - t:.1f} s: "
          + ", ".join(f"{k} {len(v):,}" for k, v in layers.items()))
    gpkg = write_layers(layers, folder / f"{scale}.gpkg")
    t = time.perf_counter()
    with cluster.connect() as conn:
        for name, frame in layers.items():
            pg.load_layer(conn, frame, name, schema=scale)
    print(f"loaded into PostGIS (COPY) in {time.perf_counter() - t:.1f} s\n")
    print(f"{'layer':<10} {'rows':>8} {'GPKG s':>8} {'CPU s':>6} {'PostGIS s':>10} {'client CPU':>10} "
          f"{'server CPU':>10}  same")
    tot = np.zeros(5)
    for name in layers:
        f_wall, f_cpu, p_wall, p_cpu, p_srv = (float("inf"),) * 5
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            from_file = read_layer(gpkg, layer=name)
            f_wall, f_cpu = min(f_wall, time.perf_counter() - t), min(f_cpu, time.process_time() - c)
            t, c, srv = time.perf_counter(), time.process_time(), server_cpu(cluster)
            from_db = read_postgis("postgresql:///gis", table=f"{scale}.{name}", name=name)
            p_wall, p_cpu = min(p_wall, time.perf_counter() - t), min(p_cpu, time.process_time() - c)
            p_srv = min(p_srv, server_cpu(cluster) - srv)
        same = len(from_file) == len(from_db) and bool(shapely.equals_exact(
            np.asarray(from_file.geometry.values), np.asarray(from_db.geometry.values), tolerance=1e-9).all())
        tot += (f_wall, f_cpu, p_wall, p_cpu, p_srv)
        print(f"{name:<10} {len(from_db):>8,} {f_wall:>8.3f} {f_cpu:>6.2f} {p_wall:>10.3f} {p_cpu:>10.2f} "
              f"{p_srv:>10.2f}  {same}")
    print(f"{'all':<10} {'':>8} {tot[0]:>8.3f} {tot[1]:>6.2f} {tot[2]:>10.3f} {tot[3]:>10.2f} {tot[4]:>10.2f}")
    print(f"PostGIS / GPKG: wall {tot[2] / tot[0]:.2f}x, CPU (client + server) {(tot[3] + tot[4]) / tot[1]:.2f}x "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")


def _lifecycle(folder: Path) -> gpd.GeoDataFrame:
    """A real lifecycle: the demo town analysed and recorded in a history."""
    from gisgrid import pipeline
    from gisgrid.history import History

    pipeline.write_demo(folder / "town")
    cfg = pipeline.load_config(folder / "town" / "gisgrid.toml")
    assessment = pipeline.analyse_config(cfg)
    return History(folder / "history.sqlite").record(assessment.findings, as_of=dt.date(2026, 11, 2))


def bench_publish(cluster: pg.Cluster, n: int, repeat: int, folder: Path) -> None:
    from gisgrid.publish import PublishOptions, publish

    life = _lifecycle(folder)
    reps = -(-n // len(life))
    parts = []
    for i in range(reps):  # distinct ids and places: the same findings repeated across a district
        part = life.copy()
        part["finding_id"] = part["finding_id"] + f"-{i:05d}"
        part = part.set_geometry(part.geometry.translate(xoff=(i % 100) * 50.0, yoff=(i // 100) * 50.0))
        parts.append(part)
    big = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True).iloc[:n], crs=life.crs)
    opts = PublishOptions(url="postgresql:///gis", schema="bench")
    day = dt.date(2026, 11, 2)
    print(f"{'publish ' + format(n, ',') + ' findings':<34} {'wall s':>7} {'client CPU s':>13} {'server CPU s':>13}")
    walls = []
    for i in range(1 + repeat):
        c0, s0 = time.process_time(), server_cpu(cluster)
        res = publish(big, opts, run_date=day, town="bench", config_hash="x", exit_code=1, reason="bench")
        client, server = time.process_time() - c0, server_cpu(cluster) - s0
        walls.append(res.seconds)
        what = "first (tables created)" if i == 0 else f"again, {res.replaced:,} rows replaced"
        print(f"{what:<34} {res.seconds:>7.2f} {client:>13.2f} {server:>13.2f}")
    print(f"target < 3 s wall for 20,000: {'met' if min(walls) < 3 else 'missed'} (best {min(walls):.2f} s; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=["town", "county"], default="county")
    ap.add_argument("--findings", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    reason = pg.missing_reason()
    if reason is not None:
        print(f"cannot benchmark PostGIS here: {reason}", file=sys.stderr)
        return 2
    with pg.running() as cluster, tempfile.TemporaryDirectory(prefix="gisgrid-bench-pg-") as tmp:
        os.environ.update({k: v for k, v in cluster.env().items() if k.startswith("PG")})
        bench_read(cluster, args.scale, args.repeat, Path(tmp))
        bench_publish(cluster, args.findings, args.repeat, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
