"""The benchmarks stay runnable: each one at its smallest scale, as a smoke test (timings are never asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("bench_coverage.py", ["--scale", "small", "--source", "synthetic"], "speed-up"),
    ("bench_analyze.py", ["--scale", "town", "--run"], "gisgrid run"),
    ("bench_tolerance.py", ["--grids", "300", "--roads", "1500", "--repeat", "1"], "hand-drawn"),
    ("bench_sensitive.py", ["--scale", "town"], "analyze_sensitive"),
    ("bench_report.py", ["--findings", "300"], "write_report (total)"),
    ("bench_patrols.py", ["--chiefs", "20"], "fixes/s"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "expect"), CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs_and_prints_a_table(script, args, expect):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert expect in res.stdout.lower()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mapclassify") is None, reason="explore() needs the bench extra")
def test_map_benchmark_runs_without_browser(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_maps.py"), "--scale", "town",
                          "--no-browser", "--keep", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list(tmp_path.glob("*.html"))
