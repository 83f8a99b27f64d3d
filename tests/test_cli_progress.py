"""What `gisgrid run` prints where: progress per stage on a terminal, nothing extra in cron mail or a pipe.

The terminal is a real pseudo-terminal (``pty``), so the CLI sees ``isatty()`` as it does for an analyst.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("load", "analyse", "history", "report")


def _on_a_terminal(args: list[str], cwd: Path, timeout_s: float = 240) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "gisgrid", *args], cwd=cwd, stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("progress") / "town"
    subprocess.run([sys.executable, "-m", "gisgrid", "demo", "--out", str(out), "-q"], check=True, timeout=300)
    return out


def test_a_terminal_shows_each_stage(town):
    code, text = _on_a_terminal(["run", "--no-maps", "--as-of", "2026-11-02"], cwd=town)
    assert code in (0, 1), text
    shown = [s for s in STAGES if s in text]
    assert shown == list(STAGES), f"stages on the terminal: {shown}\n{text[-2000:]}"
    assert "step" in text  # the bar's unit: the stages are counted, not just named
    assert "Traceback" not in text


def test_quiet_is_one_line_even_on_a_terminal(town):
    # (a pipe gets no bar and no log lines: tests/test_cli_run.py::test_run_on_written_config_gives_the_same_findings)
    code, text = _on_a_terminal(["run", "-q", "--no-maps", "--as-of", "2026-11-04"], cwd=town)
    assert code in (0, 1)
    assert "step" not in text
    assert len(text.strip().splitlines()) == 1  # -q is quiet on a terminal too


def test_verbose_logs_what_it_reads(town):
    res = subprocess.run([sys.executable, "-m", "gisgrid", "check", "-v"], cwd=town, capture_output=True, text=True,
                         encoding="utf-8", timeout=300)
    assert res.returncode == 0, res.stderr
    assert "INFO gisgrid" in res.stderr
    assert "reading grids" in res.stderr
