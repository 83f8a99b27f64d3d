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


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


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
    print(f"{'layer':<10} {'rows':>8} {'GPKG s':>8} {'PostGIS s':>10} {'ratio':>6}  same")
    tot_f = tot_p = 0.0
    for name in layers:
        tf, from_file = _best(lambda n=name: read_layer(gpkg, layer=n), repeat)
        tp, from_db = _best(lambda n=name: read_postgis("postgresql:///gis", table=f"{scale}.{n}", name=n), repeat)
        same = (len(from_file) == len(from_db)
                and bool(shapely.equals_exact(np.asarray(from_file.geometry.values),
                                              np.asarray(from_db.geometry.values),
                                              tolerance=1e-9).all()))
        tot_f, tot_p = tot_f + tf, tot_p + tp
        print(f"{name:<10} {len(from_db):>8,} {tf:>8.3f} {tp:>10.3f} {tp / tf:>6.2f}  {same}")
    print(f"{'all':<10} {'':>8} {tot_f:>8.3f} {tot_p:>10.3f} {tot_p / tot_f:>6.2f}\n")


def _lifecycle(folder: Path) -> gpd.GeoDataFrame:
    """A real lifecycle: the demo town analysed and recorded in a history."""
    from gisgrid import pipeline
    from gisgrid.history import History

    pipeline.write_demo(folder / "town")
    cfg = pipeline.load_config(folder / "town" / "gisgrid.toml")
    assessment = pipeline.analyse_config(cfg)
    return History(folder / "history.sqlite").record(assessment.findings, as_of=dt.date(2026, 11, 2))


def bench_publish(n: int, repeat: int, folder: Path) -> None:
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
    first = publish(big, opts, run_date=day, town="bench", config_hash="x", exit_code=1, reason="bench")
    again, res = _best(lambda: publish(big, opts, run_date=day, town="bench", config_hash="x", exit_code=1,
                                       reason="bench"), repeat)
    print(f"publish {first.rows:,} findings: first (tables created) {first.seconds:.2f} s; "
          f"re-publish of the same date (rows replaced) best of {repeat}: {again:.2f} s "
          f"({res.replaced:,} replaced)")
    print(f"target < 3 s for 20,000: {'met' if max(first.seconds, again) < 3 else 'MISSED'}")


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
        bench_publish(args.findings, args.repeat, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
