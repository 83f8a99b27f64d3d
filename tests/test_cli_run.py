"""`gisgrid run`, `check`, `demo` and `map` as a user runs them: a subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from gisgrid import settings

ROOT = Path(__file__).resolve().parents[1]


def gisgrid(*args, cwd, check_code=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "gisgrid", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    if check_code is not None:
        assert res.returncode == check_code, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "geo"
    gisgrid("demo", "--out", out, cwd=out.parent, check_code=0)
    return out


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    res = gisgrid("run", "--as-of", "2026-11-01", cwd=work)
    return work, res


def test_demo_writes_real_office_files(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    assert {"town.gpkg", "grid_staff.csv", "river_chiefs.xlsx", "gisgrid.toml"} <= names
    raw = (demo_dir / "grid_staff.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "网格长".encode("gbk") in raw


def test_committed_demo_data_is_what_demo_makes(demo_dir):
    committed = ROOT / "data" / "geo"
    for layer in ("villages", "grids", "roads", "rivers", "pois"):
        a = pyogrio.read_dataframe(committed / "town.gpkg", layer=layer)
        b = pyogrio.read_dataframe(demo_dir / "town.gpkg", layer=layer)
        pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")),
                                      pd.DataFrame(b.drop(columns="geometry")))
        assert a.geometry.geom_equals_exact(b.geometry, 1e-9).all(), layer
    assert (committed / "grid_staff.csv").read_bytes() == (demo_dir / "grid_staff.csv").read_bytes()


def test_run_without_config_finds_the_veto_and_writes_everything(default_run):
    work, res = default_run
    assert res.returncode == 1, res.stderr  # the planted school in a gap is a veto item
    folder = work / "reports" / "2026-11-01"
    for name in ("report.html", "findings.csv", "findings.xlsx", "findings.geojson", "summary.json",
                 "sensitive.geojson", "checkpoints.csv", "reaches.geojson", "cross_sections.geojson"):
        assert (folder / name).stat().st_size > 0, name
    assert (work / "maps" / "command_center.html").stat().st_size > 0
    assert (work / "reports" / "history.sqlite").exists()
    assert list((folder / "owners").glob("*.csv"))
    assert (folder / "findings.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary  # the report tests check its fields
    assert "Traceback" not in res.stderr
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.name != ".gisgrid.lock"]


def test_run_on_written_config_gives_the_same_findings(default_run, demo_dir, tmp_path):
    work, _ = default_run
    res = gisgrid("run", demo_dir / "gisgrid.toml", "--out", tmp_path, "--as-of", "2026-11-01", "--no-maps",
                  cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "step" not in res.stderr  # a pipe (a cron log) gets no progress bar
    assert "\r" not in res.stderr
    assert "INFO" not in res.stderr  # and no log lines unless asked (-v)
    assert str((tmp_path / "reports" / "2026-11-01" / "report.html").resolve()) in res.stdout
    a = pd.read_csv(work / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    b = pd.read_csv(tmp_path / "reports" / "2026-11-01" / "findings.csv", encoding="utf-8-sig")
    assert sorted(a["finding_id"]) == sorted(b["finding_id"])


def test_quiet_prints_one_line(demo_dir, tmp_path):
    res = gisgrid("run", demo_dir, "--out", tmp_path, "--quiet", "--no-maps", "--as-of", "2026-11-02", cwd=tmp_path)
    assert res.returncode == 1
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "veto" in lines[0]
    assert res.stderr == ""


def test_check_ok_and_bad_input_exit_2(demo_dir, tmp_path):
    ok = gisgrid("check", demo_dir / "gisgrid.toml", cwd=tmp_path, check_code=0)
    assert "grids" in ok.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (demo_dir / "town.gpkg").read_bytes()
    (broken / "town.gpkg").write_bytes(data[: len(data) // 3])
    cfg = (demo_dir / "gisgrid.toml").read_text(encoding="utf-8")
    (broken / "gisgrid.toml").write_text(cfg, encoding="utf-8")
    bad = gisgrid("check", broken / "gisgrid.toml", cwd=tmp_path, check_code=2)
    assert "town.gpkg" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_run = gisgrid("run", broken / "gisgrid.toml", "--out", tmp_path / "o", cwd=tmp_path, check_code=2)
    assert "town.gpkg" in bad_run.stderr


def test_earlier_date_refused_then_forced(default_run):
    work, _ = default_run
    res = gisgrid("run", "--as-of", "2026-10-01", "--no-maps", cwd=work, check_code=2)
    assert "force" in res.stderr.lower()
    gisgrid("run", "--as-of", "2026-10-01", "--no-maps", "--force", cwd=work, check_code=1)


def test_map_command_for_one_village(demo_dir, tmp_path):
    res = gisgrid("map", demo_dir / "gisgrid.toml", "--out", tmp_path, "--village", "V01", cwd=tmp_path,
                  check_code=0)
    assert "V01" in res.stdout or list((tmp_path / "maps").glob("village_*V01*.html"))
    bad = gisgrid("map", demo_dir / "gisgrid.toml", "--out", tmp_path, "--village", "NOPE", cwd=tmp_path,
                  check_code=2)
    assert "NOPE" in bad.stderr


def test_run_records_what_the_tolerance_absorbed(default_run):
    work, _ = default_run
    folder = work / "reports" / "2026-11-01"
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    hygiene = summary["hygiene"]
    assert hygiene["tolerance_m"] == settings.tolerance_m
    assert hygiene["slivers"] > 1000
    assert hygiene["sliver_area_m2"] > 0
    table = pd.read_csv(folder / "hygiene.csv", encoding="utf-8-sig", dtype={"grid_id": str})
    assert {"grid_id", "village_id", "slivers", "gap_sliver_m2", "overlap_sliver_m2", "sliver_m2"} <= set(table.columns)
    assert table["sliver_m2"].is_monotonic_decreasing
    assert table["sliver_m2"].sum() >= hygiene["sliver_area_m2"]  # a sliver counts for both its grids
    cleaned = pyogrio.read_dataframe(folder / "cleaned_grids.gpkg", layer="cleaned_grids")
    assert len(cleaned) == len(table)
    assert (cleaned["area_change_m2"] - (cleaned["cleaned_area_m2"] - cleaned["area_m2"])).abs().max() < 1e-6
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "数据质量 Data hygiene" in html
    assert table["grid_id"].iloc[0] in html
    import openpyxl

    book = openpyxl.load_workbook(folder / "findings.xlsx", read_only=True)
    assert "hygiene 数据质量" in book.sheetnames


def test_check_measures_how_the_borders_fit(demo_dir, tmp_path):
    res = gisgrid("check", demo_dir / "gisgrid.toml", cwd=tmp_path, check_code=0)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("border mismatch:"))
    assert "95% of border mismatches are under" in line
    assert f"tolerance_m = {settings.tolerance_m:g}" in line
    assert f"3 piece(s) wider than {settings.tolerance_m:g} m" in line  # the planted gaps and overlap
    assert "widest:" in res.stdout


@pytest.mark.parametrize(("table", "words"), [
    ("[coverage]\ntolerance_m = -1\n", "tolerance_m"),
    ("[coverage]\ntolerence_m = 2\n", "did you mean 'tolerance_m'"),
    ('[coverage]\ncleaned_grids = "no"\n', "cleaned_grids"),
])
def test_bad_coverage_options_exit_2_in_check_and_run_before_anything_is_written(demo_dir, tmp_path, table, words):
    cfg = (demo_dir / "gisgrid.toml").read_text(encoding="utf-8").replace(
        f"[coverage]\ntolerance_m = {float(settings.tolerance_m)!r}  # gaps and overlaps narrower than this are "
        "digitising noise\n", table)
    assert table in cfg
    bad = demo_dir / f"bad_{abs(hash(table))}.toml"
    bad.write_text(cfg, encoding="utf-8")
    for cmd in (["check", bad], ["run", bad, "--out", tmp_path, "--no-maps"]):
        res = gisgrid(*cmd, cwd=tmp_path, check_code=2)
        assert words in res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "reports").exists()


def test_demo_clean_writes_exact_borders(tmp_path):
    import numpy as np
    import shapely

    gisgrid("demo", "--clean", "--out", tmp_path / "clean", cwd=tmp_path, check_code=0)
    gisgrid("demo", "--out", tmp_path / "hand", cwd=tmp_path, check_code=0)
    clean = pyogrio.read_dataframe(tmp_path / "clean" / "town.gpkg", layer="grids").to_crs(4549)
    hand = pyogrio.read_dataframe(tmp_path / "hand" / "town.gpkg", layer="grids").to_crs(4549)
    g = np.asarray(clean.geometry.values)
    g = g[shapely.is_valid(g)]
    assert (~shapely.is_empty(shapely.coverage_invalid_edges(g, gap_width=0.0))).mean() < 0.05  # the planted few
    assert shapely.get_num_coordinates(np.asarray(hand.geometry.values)).mean() > 5 * \
        shapely.get_num_coordinates(np.asarray(clean.geometry.values)).mean()


@pytest.mark.parametrize("stage", ["analyse", "report", "maps"])
def test_a_crash_exits_3_with_one_line_and_a_log_never_1(demo_dir, tmp_path, stage, monkeypatch):
    monkeypatch.setenv("GISGRID_FAULT", stage)
    res = gisgrid("run", demo_dir, "--out", tmp_path, "--as-of", "2026-11-03", cwd=tmp_path, check_code=3)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "unexpected error" in lines[0]
    assert f"stage '{stage}'" in lines[0]
    assert "Traceback" not in res.stderr
    logs = list(tmp_path.glob("gisgrid-error-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in lines[0]
    assert "Traceback" in logs[0].read_text(encoding="utf-8")
    assert not (tmp_path / "reports" / "2026-11-03").exists() or stage == "maps"


def test_without_out_a_crash_log_lands_next_to_the_config_as_the_report_would(demo_dir, tmp_path, monkeypatch):
    import shutil

    town = tmp_path / "town"
    shutil.copytree(demo_dir, town)
    monkeypatch.setenv("GISGRID_FAULT", "analyse")
    res = gisgrid("run", town / "gisgrid.toml", "--no-maps", "--as-of", "2026-11-03", cwd=tmp_path, check_code=3)
    logs = list(town.glob("gisgrid-error-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in res.stderr
    assert not list(tmp_path.glob("gisgrid-error-*.log"))


def test_a_gisgrid_toml_in_the_current_folder_is_used_and_named(demo_dir, tmp_path):
    import shutil

    work = tmp_path / "town"
    shutil.copytree(demo_dir, work)
    (work / "gisgrid.toml").write_text((work / "gisgrid.toml").read_text(encoding="utf-8").replace(
        'name = "东社镇"', 'name = "自己的镇"'), encoding="utf-8")
    res = gisgrid("check", cwd=work, check_code=0)
    first = res.stdout.splitlines()[0]
    assert first.startswith("config: ")
    assert str((work / "gisgrid.toml").resolve()) in first
    assert "自己的镇" in res.stdout
    run = gisgrid("run", "--no-maps", "--as-of", "2026-11-04", cwd=work, check_code=1)
    assert str((work / "gisgrid.toml").resolve()) in run.stdout.splitlines()[0]
    summary = json.loads((work / "reports" / "2026-11-04" / "summary.json").read_text(encoding="utf-8"))
    assert summary["town"] == "自己的镇"
    demo = gisgrid("check", cwd=tmp_path, check_code=0)
    assert "embedded demo town" in demo.stdout.splitlines()[0]


def test_a_date_far_in_the_future_is_refused_before_anything_is_written(demo_dir, tmp_path):
    res = gisgrid("run", demo_dir, "--out", tmp_path, "--as-of", "9999-12-31", "--no-maps", cwd=tmp_path,
                  check_code=2)
    assert "9999-12-31" in res.stderr
    assert "--force" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "reports").exists()


def test_escape_sequences_in_names_are_shown_not_obeyed(demo_dir, tmp_path):
    import shutil

    work = tmp_path / "town"
    shutil.copytree(demo_dir, work)
    cfg = (work / "gisgrid.toml").read_text(encoding="utf-8")
    hostile = 'name = "东社镇\\u001b[2J\\u001b]0;pwned\\u0007"'  # a TOML string: clear screen, window title
    (work / "gisgrid.toml").write_text(cfg.replace('name = "东社镇"', hostile), encoding="utf-8")
    for cmd in (["check", work], ["run", work, "--out", tmp_path, "--quiet", "--no-maps", "--as-of", "2026-11-05"]):
        res = gisgrid(*cmd, cwd=tmp_path)
        assert res.returncode in (0, 1), res.stderr
        for stream in (res.stdout, res.stderr):
            assert "\x1b" not in stream
            assert "\x07" not in stream
        assert "东社镇\\x1b[2J" in res.stdout


@pytest.mark.parametrize("where", ["out", "reports", "maps"])
def test_an_output_path_that_is_a_file_exits_2_naming_it(demo_dir, tmp_path, where):
    out = tmp_path / "out"
    blocker = out if where == "out" else out / where
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder", encoding="utf-8")
    res = gisgrid("run", demo_dir, "--out", out, "--as-of", "2026-11-06", cwd=tmp_path, check_code=2)
    assert str(blocker) in res.stderr
    assert "Traceback" not in res.stderr
    assert blocker.read_text(encoding="utf-8") == "not a folder"
    if where != "out":
        assert sorted(p.name for p in out.iterdir()) == [where]
    for cmd in (["demo", "--out", blocker], ["map", demo_dir, "--out", blocker]):
        if where != "out":
            continue
        res = gisgrid(*cmd, cwd=tmp_path, check_code=2)
        assert str(blocker) in res.stderr
        assert "Traceback" not in res.stderr


def test_no_csv_or_xlsx_cell_a_spreadsheet_would_run(demo_dir, tmp_path):
    import shutil

    import openpyxl

    work = tmp_path / "town"
    shutil.copytree(demo_dir, work)
    staff = pd.read_csv(work / "grid_staff.csv", encoding="gbk", dtype=str)
    payloads = ['+HYPERLINK("http://evil.example","镇")', "-2+3+cmd|' /C calc'!A0", "=1+1", "@SUM(A1)"]
    chiefs = staff.index[staff["职务"] == "网格长"]
    staff.loc[chiefs, "姓名"] = [f"{payloads[i % 4]}{i}" for i in range(len(chiefs))]  # every chief, told apart
    staff.to_csv(work / "grid_staff.csv", index=False, encoding="gbk")
    res = gisgrid("run", work, "--out", tmp_path / "out", "--no-maps", "--as-of", "2026-11-07", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    folder = tmp_path / "out" / "reports" / "2026-11-07"
    cells: list[str] = []
    for path in folder.rglob("*.csv"):
        cells += [str(v) for v in pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
                  .to_numpy().ravel()]
    for path in folder.rglob("*.xlsx"):
        book = openpyxl.load_workbook(path, read_only=True)
        cells += [str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row
                  if isinstance(v, str)]
    assert any("HYPERLINK" in c for c in cells)  # the names are there, as text
    def number(text: str) -> bool:  # a negative number (points lost) is a number to a spreadsheet, not a formula
        try:
            float(text)
        except ValueError:
            return False
        return True

    assert not [c for c in cells if c.startswith(("=", "+", "-", "@")) and not number(c)]


def test_report_folders_follow_the_umask(demo_dir, tmp_path):
    res = subprocess.run(["sh", "-c", f"umask 022 && {sys.executable} -m gisgrid run {demo_dir} --out {tmp_path} "
                          "--no-maps --as-of 2026-11-08 -q"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 1, res.stderr
    folder = tmp_path / "reports" / "2026-11-08"
    assert folder.stat().st_mode & 0o777 == 0o755
    assert (folder / "owners").stat().st_mode & 0o777 == 0o755
