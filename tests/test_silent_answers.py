"""Silent wrong answers become refusals: unmapped must-check kinds, empty layers, a lying CRS label, 100% of nothing.

Each case goes through the real CLI on files written by ``gisgrid demo``: exit 2, a message that names the
layer and the fix, no traceback, and nothing written.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from shapely import Point, box

import gisgrid
from gisgrid import CRSError, SchemaError
from gisgrid.report import write_report
from gisgrid.vocab import percent

REPO = Path(__file__).resolve().parents[1]
CRS = "EPSG:4549"
X0, Y0 = 500000.0, 3550000.0


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "gisgrid", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("silent") / "geo"
    res = cli("demo", "--out", out, cwd=out.parent)
    assert res.returncode == 0, res.stderr
    return out


def refused(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr
    for word in words:
        assert word in res.stderr, (word, res.stderr)


def frames(**pois_kinds: str):
    villages = gpd.GeoDataFrame({"village_id": ["V1"], "name": ["东村"]},
                                geometry=[box(X0, Y0, X0 + 1000, Y0 + 1000)], crs=CRS)
    grids = gpd.GeoDataFrame({"grid_id": ["G1"], "village_id": ["V1"]},
                             geometry=[box(X0, Y0, X0 + 600, Y0 + 1000)], crs=CRS)
    pois = gpd.GeoDataFrame({"poi_id": list(pois_kinds), "kind": list(pois_kinds.values())},
                            geometry=[Point(X0 + 800, Y0 + 500)] * len(pois_kinds), crs=CRS)
    return villages, grids, pois


# --------------------------------------------------------------------------- must-check kinds
def test_case_and_spacing_of_a_kind_do_not_lose_the_veto():
    villages, grids, pois = frames(S1="School ", W1="Water intake", T1="toilet")
    town = gisgrid.Town.from_frames(villages=villages, grids=grids, pois=pois, crs=CRS)
    assert list(town.pois["kind"]) == ["school", "water_intake", "toilet"]
    a = gisgrid.analyze(town, tolerance_m=0)
    lost = a.findings[a.findings["kind"] == "poi_uncovered"]
    assert set(lost["poi_id"]) == {"S1", "W1", "T1"}
    assert (a.findings["severity"] == "veto").any()  # the school and the water intake in no grid


@pytest.mark.parametrize("kind", ["学校", "取水口", "幼儿园"])
def test_a_chinese_name_of_a_shipped_kind_is_refused_with_the_mapping(kind):
    villages, grids, pois = frames(S1=kind)
    with pytest.raises(SchemaError, match="values = ") as info:
        gisgrid.Town.from_frames(villages=villages, grids=grids, pois=pois, crs=CRS)
    assert kind in str(info.value)


def test_cli_refuses_unmapped_chinese_kinds_and_writes_nothing(demo, tmp_path):
    pois = pyogrio.read_dataframe(demo / "town.gpkg", layer="pois")
    kind_col = next(c for c in pois.columns if (pois[c] == "school").any())
    pois.loc[pois[kind_col] == "school", kind_col] = "学校"
    pyogrio.write_dataframe(pois, tmp_path / "pois.gpkg", layer="pois")
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8")
    moved = f'[sources.pois]\npath = "{(tmp_path / "pois.gpkg").as_posix()}"'
    cfg = cfg.replace('[sources.pois]\npath = "town.gpkg"', moved)
    assert moved in cfg
    (demo / "kinds.toml").write_text(cfg, encoding="utf-8")
    out = tmp_path / "out"
    for cmd in (("check", demo / "kinds.toml"), ("run", demo / "kinds.toml", "--out", out)):
        refused(cli(*cmd, cwd=tmp_path), "学校", "values = { kind")
    assert not out.exists() or not any(out.rglob("*.html"))


# --------------------------------------------------------------------------- empty layers
def test_an_empty_pois_layer_is_refused_unless_declared_empty(demo, tmp_path):
    pois = pyogrio.read_dataframe(demo / "town.gpkg", layer="pois")
    pyogrio.write_dataframe(pois.iloc[:0], tmp_path / "empty.gpkg", layer="pois")
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8").replace(
        '[sources.pois]\npath = "town.gpkg"', f'[sources.pois]\npath = "{(tmp_path / "empty.gpkg").as_posix()}"')
    (demo / "empty.toml").write_text(cfg, encoding="utf-8")
    out = tmp_path / "out"
    refused(cli("run", demo / "empty.toml", "--out", out, cwd=tmp_path), "pois", "no rows", "allow_empty")
    assert not (out / "reports").exists() or not any((out / "reports").rglob("*.sqlite"))
    (demo / "empty_ok.toml").write_text(cfg.replace(
        f'path = "{(tmp_path / "empty.gpkg").as_posix()}"',
        f'path = "{(tmp_path / "empty.gpkg").as_posix()}"\nallow_empty = true'), encoding="utf-8")
    res = cli("check", demo / "empty_ok.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_ratios_over_nothing_read_n_a_never_100_percent(tmp_path):
    villages, grids, _ = frames()
    town = gisgrid.Town.from_frames(villages=villages, grids=grids, crs=CRS)  # a town without roads
    a = gisgrid.analyze(town, tolerance_m=0)
    assert math.isnan(a.totals["road_coverage"])
    assert percent(a.totals["road_coverage"]) == "n/a"
    assert "n/a" in a._repr_html_()
    write_report(a, tmp_path / "r")
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "n/a" in html


# --------------------------------------------------------------------------- a CRS label that lies
def test_a_layer_labelled_with_the_neighbouring_zone_is_refused():
    villages, grids, _ = frames()
    wrong = grids.set_crs("EPSG:4550", allow_override=True)  # CM 120E numbers labelled CM 123E
    with pytest.raises(CRSError, match="km from the villages") as info:
        gisgrid.Town.from_frames(villages=villages, grids=wrong, crs=CRS)
    assert "neighbouring Gauss-Kruger zone" in info.value.fix


def test_cli_refuses_grids_in_the_wrong_zone_before_writing(demo, tmp_path):
    grids = pyogrio.read_dataframe(demo / "town.gpkg", layer="grids").to_crs("EPSG:4549")
    grids = grids.set_crs("EPSG:4550", allow_override=True)
    pyogrio.write_dataframe(grids, tmp_path / "grids.gpkg", layer="grids")
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8").replace(
        '[sources.grids]\npath = "town.gpkg"', f'[sources.grids]\npath = "{(tmp_path / "grids.gpkg").as_posix()}"')
    (demo / "zone.toml").write_text(cfg, encoding="utf-8")
    out = tmp_path / "out"
    refused(cli("run", demo / "zone.toml", "--out", out, cwd=tmp_path), "grids", "km from the villages")
    assert not (out / "reports").exists() or not any((out / "reports").rglob("*.sqlite"))


# --------------------------------------------------------------------------- phones Excel damaged
def test_check_flags_phones_a_spreadsheet_damaged_with_file_and_line(demo, tmp_path):
    lines = (demo / "grid_staff.csv").read_bytes().decode("gbk").splitlines()
    head, rows = lines[0], lines[1:]
    cells = rows[0].split(",")
    cells[2] = "1.91957E+10"  # what Excel shows, and saves, for a long number
    rows[0] = ",".join(cells)
    cells = rows[4].split(",")
    cells[2] = "51386123456"  # a landline whose leading 0 was dropped
    rows[4] = ",".join(cells)
    staff = tmp_path / "staff.csv"
    staff.write_bytes(("\n".join([head, *rows]) + "\n").encode("gbk"))
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8").replace(
        'path = "grid_staff.csv"', f'path = "{staff.as_posix()}"')
    assert staff.as_posix() in cfg
    (demo / "phones.toml").write_text(cfg, encoding="utf-8")
    res = cli("check", demo / "phones.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "issue grid_staff line 2: phone='1.91957E+10'" in res.stdout
    assert "scientific notation" in res.stdout
    assert "issue grid_staff line 6: phone='51386123456'" in res.stdout
    assert "leading 0" in res.stdout


# --------------------------------------------------------------------------- no server paths in what is published
def test_published_outputs_never_show_the_servers_folders(demo, tmp_path):
    import zipfile

    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8")
    # a roster person on a grid that does not exist: a finding whose message names the roster's file and line
    lines = (demo / "grid_staff.csv").read_bytes().decode("gbk").splitlines()
    lines.append("S9999,测试员,13800000000,网格员,NO-SUCH-GRID")
    (tmp_path / "staff.csv").write_bytes(("\n".join(lines) + "\n").encode("gbk"))
    cfg = cfg.replace('path = "grid_staff.csv"', f'path = "{(tmp_path / "staff.csv").as_posix()}"')
    (demo / "paths.toml").write_text(cfg, encoding="utf-8")
    out = tmp_path / "out"
    res = cli("run", demo / "paths.toml", "--out", out, "--no-maps", "--as-of", "2026-11-01", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr
    folders = {str(tmp_path), tmp_path.as_posix(), str(demo), demo.as_posix()}
    report = out / "reports" / "2026-11-01"
    texts = []
    for f in report.rglob("*"):
        if f.suffix in (".csv", ".json", ".geojson", ".html"):
            texts.append((f, f.read_text(encoding="utf-8-sig")))
        elif f.suffix == ".xlsx":
            with zipfile.ZipFile(f) as z:
                texts += [(f, z.read(n).decode("utf-8")) for n in z.namelist() if n.endswith(".xml")]
    assert any("line " in t and "staff.csv" in t for _, t in texts)  # the file is still named, by its name
    leaks = [str(f) for f, t in texts if any(d in t for d in folders)]
    assert leaks == []


# --------------------------------------------------------------------------- backfill
def test_a_backfill_keeps_the_live_maps_at_the_newest_state(demo, tmp_path):
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8") + "\n[maps]\nper_owner = false\nper_village = false\n"
    (demo / "backfill.toml").write_text(cfg, encoding="utf-8")
    out = tmp_path / "out"
    res = cli("run", demo / "backfill.toml", "--out", out, "--as-of", "2026-11-03", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr
    live = (out / "maps" / "command_center.html").read_bytes()
    assert "2026-11-03" in live.decode("utf-8")
    res = cli("run", demo / "backfill.toml", "--out", out, "--as-of", "2026-11-01", "--force", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr
    assert (out / "reports" / "2026-11-01" / "report.html").exists()  # the backfilled report is written
    assert (out / "maps" / "command_center.html").read_bytes() == live  # the live map still shows 11-03
    assert "backfill" in res.stderr


# --------------------------------------------------------------------------- undo a run recorded by mistake
def test_history_undo_removes_a_mistaken_run_and_its_report(demo, tmp_path):
    out = tmp_path / "out"
    for day in ("2026-11-01", "2026-11-03"):
        res = cli("run", demo / "gisgrid.toml", "--out", out, "--no-maps", "--as-of", day, cwd=tmp_path)
        assert res.returncode in (0, 1), res.stderr
    listed = cli("history", "list", demo / "gisgrid.toml", "--out", out, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "2026-11-01" in listed.stdout
    assert "2026-11-03" in listed.stdout
    res = cli("history", "undo", "2026-11-03", demo / "gisgrid.toml", "--out", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "removed the run of 2026-11-03" in res.stdout
    assert not (out / "reports" / "2026-11-03").exists()
    assert (out / "reports" / "2026-11-01" / "report.html").exists()
    listed = cli("history", "list", demo / "gisgrid.toml", "--out", out, cwd=tmp_path)
    assert "2026-11-03" not in listed.stdout
    refused(cli("history", "undo", "2026-11-03", demo / "gisgrid.toml", "--out", out, cwd=tmp_path),
            "no run is recorded on 2026-11-03")
    refused(cli("history", "undo", "yesterday", demo / "gisgrid.toml", "--out", out, cwd=tmp_path), "YYYY-MM-DD")
    # the next night runs on as usual
    res = cli("run", demo / "gisgrid.toml", "--out", out, "--no-maps", "--as-of", "2026-11-02", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr


# --------------------------------------------------------------------------- the history and the report move together
# A fault or a kill after the history commit (and at every other stage boundary): tests/test_hardening.py.


def test_allow_empty_must_be_true_or_false_and_history_needs_a_history(demo, tmp_path):
    cfg = (demo / "gisgrid.toml").read_text(encoding="utf-8").replace(
        '[sources.pois]\npath = "town.gpkg"', '[sources.pois]\npath = "town.gpkg"\nallow_empty = "yes"')
    (demo / "allow.toml").write_text(cfg, encoding="utf-8")
    refused(cli("check", demo / "allow.toml", cwd=tmp_path), "[sources.pois] allow_empty must be true or false")
    refused(cli("history", "list", demo / "gisgrid.toml", "--out", tmp_path / "nowhere", cwd=tmp_path),
            "there is no run history at", "--out")
    assert not (tmp_path / "nowhere").exists()  # asking never creates an empty history
