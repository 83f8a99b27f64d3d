"""Scheduled runs as cron makes them: repeated dates, two at once, one killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gisgrid.history import History

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "gisgrid", "run", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(*args, cwd):
    p = start(*args, cwd=cwd)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def stray(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".gisgrid.lock")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    code, _, err = run("--help", cwd=d)
    assert code == 0, err
    res = subprocess.run([sys.executable, "-m", "gisgrid", "demo", "--out", str(d)], env=ENV, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    return d / "gisgrid.toml"


@pytest.mark.slow
def test_same_date_twice_replaces_the_run(config, tmp_path):
    for _ in range(2):
        code, _, err = run(config, "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps", cwd=tmp_path)
        assert code == 1, err
    runs = History(tmp_path / "reports" / "history.sqlite").runs()
    assert len(runs) == 1
    findings = pd.read_csv(tmp_path / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    assert set(findings["status"]) == {"new"}
    assert stray(tmp_path / "reports") == []


@pytest.mark.slow
def test_two_runs_at_once_do_not_corrupt_anything(config, tmp_path):
    procs = [start(config, "--out", tmp_path, "--as-of", "2026-11-02", "--no-maps", cwd=tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], results
    runs = History(tmp_path / "reports" / "history.sqlite").runs()
    assert len(runs) == 1
    folder = tmp_path / "reports" / "2026-11-02"
    findings = pd.read_csv(folder / "findings.csv", encoding="utf-8-sig")
    assert len(findings) > 0
    assert (folder / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert stray(tmp_path / "reports") == []


@pytest.mark.slow
def test_killed_run_leaves_the_last_good_report(config, tmp_path):
    code, _, err = run(config, "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps", cwd=tmp_path)
    assert code == 1, err
    folder = tmp_path / "reports" / "2026-11-01"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    t0 = time.monotonic()
    code, _, _ = run(config, "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps", cwd=tmp_path)
    full = time.monotonic() - t0
    # Kill re-runs of the same date at several points of their work; the last complete report must survive whole.
    for frac in (0.3, 0.6, 0.85):
        p = start(config, "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps", cwd=tmp_path)
        time.sleep(full * frac)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        assert folder.exists()
        now = {q.name: q for q in folder.iterdir() if q.is_file()}
        assert set(now) == set(before)
        for name, q in now.items():
            assert q.stat().st_size > 0, name
        findings = pd.read_csv(folder / "findings.csv", encoding="utf-8-sig")
        assert len(findings) == len(pd.read_csv(pd.io.common.BytesIO(before["findings.csv"]), encoding="utf-8-sig"))
        runs = History(tmp_path / "reports" / "history.sqlite").runs()
        assert len(runs) == 1
    # The next run clears what the killed ones left behind.
    code, _, err = run(config, "--out", tmp_path, "--as-of", "2026-11-03", "--no-maps", cwd=tmp_path)
    assert code == 1, err
    assert stray(tmp_path / "reports") == []
    assert len(History(tmp_path / "reports" / "history.sqlite").runs()) == 2
