"""Hardening (issue 14): every class of bad input through the CLI, a fault at every stage boundary, a full disk.

Every case is the real command line (``gisgrid.cli.main``, what ``python -m gisgrid`` calls) in a process
of its own, with its own exit code, stdout and stderr. Forty processes that each import geopandas would
take a minute before doing anything, so one server process imports gisgrid once and forks a child per
case (:class:`Cli`): the child is a fresh process as far as the case can tell, it can be killed with
SIGKILL at a pause point, and it can run under a file-size limit.

The corpus is the one place that lists every class of the issue: unmapped must-check kinds, empty layers,
NaN/Inf coordinates, a CRS label that lies, a typo in every config section, bad dates, bad output
locations, long and Windows-reserved names, a TOML backslash path, formula injection, terminal escapes and
absolute server paths. A refusal is exit 2, names what and where, shows no traceback and writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import X0, Y0, box, line

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-01"

# The server: imports once, then forks one child per case read from stdin (one JSON object a line) and
# answers with the child's exit code. A child runs the CLI with fds 1 and 2 on files, in its own folder and
# environment; "kill_when" names a file (a pause marker) at whose appearance the child gets SIGKILL;
# "fsize" is an RLIMIT_FSIZE in bytes (Python ignores SIGXFSZ, so a write past it fails with EFBIG).
SERVER = r"""
import json, os, resource, signal, sys, time, traceback
from gisgrid import cli, pipeline, history, report, maps, analysis  # the imports every case shares
proto = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    case = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.chdir(case["cwd"])
            os.environ.update(case["env"])
            for name, fd in (("stdout", 1), ("stderr", 2)):
                f = os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            if case.get("fsize"):
                resource.setrlimit(resource.RLIMIT_FSIZE, (case["fsize"], case["fsize"]))
            try:
                code = cli.main(case["argv"])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + case.get("timeout", 300)
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        marker = case.get("kill_when")
        if not killed and ((marker and os.path.exists(marker)) or time.monotonic() > deadline):
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    proto.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    proto.flush()
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Cli:
    """``gisgrid`` command lines run by the forking server (see :data:`SERVER`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        env.pop("GISGRID_FAULT", None)
        self.log = (folder / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, text=True, cwd=folder)

    def __call__(self, *argv: object, cwd: Path, env: dict[str, str] | None = None, kill_when: Path | None = None,
                 fsize: int | None = None) -> Result:
        self.count += 1
        out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
        case = {"argv": [str(a) for a in argv], "cwd": str(cwd), "env": env or {}, "stdout": str(out),
                "stderr": str(err), "kill_when": str(kill_when) if kill_when else None, "fsize": fsize}
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the CLI server died: {(self.folder / 'server.log').read_text()}"
        return Result(json.loads(answer)["returncode"], out.read_text(encoding="utf-8"),
                      err.read_text(encoding="utf-8"))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Iterator[Cli]:
    server = Cli(tmp_path_factory.mktemp("cli"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def demo(cli, tmp_path_factory) -> Path:
    """The demo town (``gisgrid demo``), written once; the cases edit copies of its parts."""
    folder = tmp_path_factory.mktemp("hardening") / "geo"
    res = cli("demo", "--out", folder, cwd=folder.parent)
    assert res.returncode == 0, res
    return folder


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time: what a command wrote."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def refused(res: Result, *words: str) -> None:
    """Exit 2, one line naming ``words``, no traceback."""
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr, res
    for word in words:
        assert word in res.stderr, (word, str(res))


# --------------------------------------------------------------------------- the corpus
@dataclass
class Town:
    """A case's town: its config text (every path absolute, into the demo folder) and where to write edits."""

    demo: Path
    folder: Path
    toml: str

    @classmethod
    def of(cls, demo: Path, folder: Path) -> Town:
        text = (demo / "gisgrid.toml").read_text(encoding="utf-8").replace('path = "', f'path = "{demo.as_posix()}/')
        return cls(demo, folder, text)

    def layer(self, name: str) -> gpd.GeoDataFrame:
        return pyogrio.read_dataframe(self.demo / "town.gpkg", layer=name)

    def put(self, name: str, frame: gpd.GeoDataFrame) -> None:
        """Point ``[sources.NAME]`` at ``frame`` written to a GeoPackage of its own."""
        path = self.folder / f"{name}.gpkg"
        pyogrio.write_dataframe(frame, path, layer=name)
        old = f'[sources.{name}]\npath = "{self.demo.as_posix()}/town.gpkg"'
        assert old in self.toml
        self.toml = self.toml.replace(old, f'[sources.{name}]\npath = "{path.as_posix()}"')

    def edit(self, old: str, new: str) -> None:
        assert old in self.toml, old
        self.toml = self.toml.replace(old, new, 1)

    def write(self) -> Path:
        path = self.folder / "gisgrid.toml"
        path.write_text(self.toml, encoding="utf-8")
        return path


def _kind(t: Town, value: str) -> None:
    pois = t.layer("pois")
    pois.loc[pois["kind"] == "school", "kind"] = value
    t.put("pois", pois)


def _empty(t: Town, name: str) -> None:
    t.put(name, t.layer(name).iloc[:0])


def _bad_coordinate(t: Town, name: str, value: float) -> None:
    """Give feature 2 (the third) of ``name`` a NaN or infinite coordinate."""
    frame = t.layer(name)
    geom = frame.geometry.iloc[2]
    coords = shapely.get_coordinates(geom)
    coords[min(1, len(coords) - 1), 0] = value  # a middle vertex: a ring stays closed
    frame.loc[frame.index[2], "geometry"] = shapely.set_coordinates(geom, coords)
    t.put(name, frame)


def _relabel(t: Town, name: str, numbers: str, label: str) -> None:
    """Write ``name`` with the coordinates of CRS ``numbers`` but the label ``label``."""
    t.put(name, t.layer(name).to_crs(numbers).set_crs(label, allow_override=True))


def _section(t: Town, text: str) -> None:
    """Add ``[section]\nkeys`` to the config: under that section's header when the config has one."""
    header, _, body = text.partition("\n")
    if f"\n{header}\n" in t.toml and not header.startswith("[["):
        t.edit(f"\n{header}\n", f"\n{header}\n{body}\n")
    else:
        t.toml += f"\n{text}\n"


@dataclass
class Case:
    build: Callable[[Town], object]
    words: tuple[str, ...]
    commands: tuple[str, ...] = ("check", "run")


# Each class of the issue, and the words the refusal must contain (the layer, key or value, and the fix).
CORPUS = {
    # must-check kinds that are not mapped (data cases: check reads the data as run does; test_silent_answers
    # runs some of them through run too)
    "kind-chinese-school": Case(lambda t: _kind(t, "学校"), ("pois", "学校", "values = { kind"), ("check",)),
    "kind-chinese-water-intake": Case(lambda t: _kind(t, "取水口"), ("取水口", "values = { kind"), ("check",)),
    # empty layers
    "empty-pois": Case(lambda t: _empty(t, "pois"), ("pois", "no rows", "allow_empty = true"), ("check",)),
    "empty-roads": Case(lambda t: _empty(t, "roads"), ("roads", "no rows", "allow_empty = true"), ("check",)),
    # NaN or Inf coordinates, per layer
    **{f"{v}-in-{name}": Case(lambda t, n=name, x=x: _bad_coordinate(t, n, x),
                             (f"{name} layer has NaN or infinite coordinates in feature 2", f"{name}.gpkg"),
                             ("check",))
       for name in ("roads", "rivers", "pois", "villages", "grids") for v, x in (("nan", np.nan), ("inf", np.inf))},
    # a CRS label that does not fit the numbers
    "crs-neighbouring-zone": Case(lambda t: _relabel(t, "grids", "EPSG:4549", "EPSG:4550"),
                                  ("grids", "km from the villages", "neighbouring Gauss-Kruger zone"), ("check",)),
    "crs-missing-zone-prefix": Case(lambda t: _relabel(t, "grids", "EPSG:4549", "EPSG:4528"),
                                    ("grids", "no zone prefix", 'crs = "EPSG:4549"'), ("check",)),
    "crs-extra-zone-prefix": Case(lambda t: _relabel(t, "villages", "EPSG:4528", "EPSG:4549"),
                                  ("villages", "carry a zone prefix"), ("check",)),
    "crs-degrees-as-metres": Case(lambda t: _relabel(t, "roads", "EPSG:4490", "EPSG:4549"),
                                  ("roads", "look like longitude/latitude degrees"), ("check",)),
    "crs-metres-as-degrees": Case(lambda t: _relabel(t, "pois", "EPSG:4549", "EPSG:4490"),
                                  ("pois", "are not degrees"), ("check",)),
    # a typo or a bad value in every section
    "config-town": Case(lambda t: t.edit('name = "东社镇"', 'nmae = "东社镇"'), ("[town]", "did you mean 'name'")),
    "config-coverage": Case(lambda t: t.edit("tolerance_m = 3.0", "tolerence_m = 3.0"),
                            ("did you mean 'tolerance_m'",)),
    "config-sources": Case(lambda t: t.edit('layer = "roads"', 'layr = "roads"'), ("sources.roads", "'layer'")),
    "config-fields": Case(lambda t: t.edit('road_class = "道路等级"', 'road_clas = "道路等级"'), ("road_clas",)),
    "config-source-name": Case(lambda t: t.edit("[sources.rivers]\n", "[sources.river]\n"), ("sources.rivers",)),
    "config-section": Case(lambda t: _section(t, "[reprot]\nfail_on = {}"), ("reprot", "did you mean 'report'")),
    "config-fail_on-key": Case(lambda t: _section(t, "[report]\nfail_on = { overdu = 1 }"), ("overdu", "overdue")),
    "config-fail_on-value": Case(lambda t: _section(t, '[report]\nfail_on = { veto = "yes" }'), ("fail_on", "veto")),
    "config-deadlines": Case(lambda t: _section(t, "[report]\ndeadlines = { vetoo = 3 }"), ("vetoo", "veto")),
    "config-report": Case(lambda t: _section(t, "[report]\nsliver_area = 5"), ("sliver_area", "sliver_area_m2")),
    "config-basemap": Case(lambda t: _section(t, '[maps]\nbasemap = "gaodee"'), ("basemap", "gaodee", "gaode")),
    "config-basemap-without-key": Case(lambda t: _section(t, '[maps]\nbasemap = "tianditu"'),
                                       ("tianditu", "TIANDITU_KEY"), ("run-with-maps",)),
    "config-maps": Case(lambda t: _section(t, "[maps]\nper_ownr = false"), ("per_ownr", "per_owner")),
    "config-history": Case(lambda t: _section(t, '[history]\npth = "h.sqlite"'), ("pth", "path")),
    "config-rules": Case(lambda t: _section(t, '[[rules]]\nname = "x"\nbufer_m = 5'), ("bufer_m",)),
    "config-assign": Case(lambda t: _section(t, "[assign]\nbuffer_mm = 5"), ("buffer_mm",)),
    "config-scoring": Case(lambda t: _section(t, '[scoring]\nperiod = "quartr"'), ("period", "quarter")),
    "config-patrols": Case(lambda t: _section(t, "[patrols]\nnot_a_key = 1"), ("[patrols]", "not_a_key")),
    "config-dispatch": Case(lambda t: _section(t, "[dispatch]\nnot_a_key = 1"), ("[dispatch]", "not_a_key")),
    "config-publish": Case(lambda t: _section(t, "[publish]\nnot_a_key = 1"), ("[publish]", "not_a_key")),
    # a Windows path that TOML read as a tab
    "toml-backslash-tab": Case(lambda t: t.edit(f'path = "{t.demo.as_posix()}/town.gpkg"', 'path = ".\\town.gpkg"'),
                               ("[sources.boundary] path", "\\town.gpkg", "single quotes")),
    "toml-backslash-escape": Case(lambda t: t.edit(f'path = "{t.demo.as_posix()}/grid_staff.csv"',
                                                   'path = ".\\grid_staff.csv"'), ("line 71", "single quotes")),
}


@pytest.mark.parametrize("name", CORPUS)
def test_bad_input_is_refused_naming_it_and_nothing_is_written(cli, demo, tmp_path, name):
    case = CORPUS[name]
    town = Town.of(demo, tmp_path)
    case.build(town)
    config = town.write()
    out = tmp_path / "out"
    out.mkdir()
    before = tree(tmp_path), tree(demo)
    for command in case.commands:
        args = {"check": ("check", config), "run": ("run", config, "--out", out, "--no-maps", "--as-of", DAY),
                "run-with-maps": ("run", config, "--out", out, "--as-of", DAY)}[command]
        res = cli(*args, cwd=tmp_path, env={"TIANDITU_KEY": ""})
        refused(res, *case.words)
        assert len(res.stderr.strip().splitlines()) == 1, res
    assert (tree(tmp_path), tree(demo)) == before


# --------------------------------------------------------------------------- dates
@pytest.mark.parametrize(("args", "words"), [
    (("--as-of", "9999-12-31"), ("9999-12-31", "--force")),
    (("--as-of", "2026-02-30"), ("--as-of", "not a date: '2026-02-30'")),
    (("--as-of", "yesterday"), ("--as-of", "YYYY-MM-DD")),
], ids=["far-future", "no-such-day", "not-a-date"])
def test_a_bad_date_is_refused_before_anything_is_written(cli, demo, tmp_path, args, words):
    out = tmp_path / "out"
    out.mkdir()
    before = tree(tmp_path)
    refused(cli("run", demo / "gisgrid.toml", "--out", out, "--no-maps", *args, cwd=tmp_path), *words)
    assert tree(tmp_path) == before
    if args[1] == "yesterday":
        refused(cli("history", "undo", "yesterday", demo / "gisgrid.toml", "--out", out, cwd=tmp_path), "YYYY-MM-DD")


# --------------------------------------------------------------------------- output locations
@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` (a folder or a file) read-only even for root: a read-only bind mount of itself.

    Another user gets ``chmod a-w``. Root ignores file modes, so the test must mount; where mounting is not
    permitted (a container without CAP_SYS_ADMIN) the test is skipped, except in CI, where it must run.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    done = _mount("--bind", str(path), str(path))
    if done.returncode == 0:
        done = _mount("-o", "remount,bind,ro", str(path))
        if done.returncode != 0:
            subprocess.run(["umount", str(path)], check=False)
    if done.returncode != 0:
        reason = f"root cannot be refused a write without a read-only mount, and mount failed: {done.stderr}"
        if os.environ.get("CI") or os.environ.get("GISGRID_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _mount(*args: str) -> subprocess.CompletedProcess:
    """``mount ARGS`` (a missing mount program counts as a refusal)."""
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(["mount", *args], 127, "", "no mount program")


def _out_file(out: Path, where: str) -> Path:
    blocker = out if where == "out" else out / where
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder", encoding="utf-8")
    return blocker


OUTPUTS = {
    "run-out-is-a-file": ("run", "out"),
    "run-reports-is-a-file": ("run", "reports"),
    "run-maps-is-a-file": ("run", "maps"),
    "map-out-is-a-file": ("map", "out"),
    "map-maps-is-a-file": ("map", "maps"),
    "demo-out-is-a-file": ("demo", "out"),
    "run-read-only-folder": ("run", "read-only"),
    "map-read-only-folder": ("map", "read-only"),
    "demo-read-only-folder": ("demo", "read-only"),
}


@pytest.mark.parametrize("name", OUTPUTS)
def test_an_output_location_that_cannot_be_written_exits_2_naming_it(cli, demo, tmp_path, name):
    command, where = OUTPUTS[name]
    out = tmp_path / "out"
    if where != "out":
        out.mkdir()
    blocker = out if where == "read-only" else _out_file(out, where)
    args = {"run": ("run", demo / "gisgrid.toml", "--no-maps", "--as-of", DAY), "map": ("map", demo / "gisgrid.toml"),
            "demo": ("demo",)}[command]
    before = tree(tmp_path)
    with read_only(out) if where == "read-only" else contextlib.nullcontext():
        res = cli(*args, "--out", out, cwd=tmp_path)
    refused(res, str(blocker), "not writable" if where == "read-only" else "is a file")
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- a tiny town for whole runs
def write_tiny(folder: Path, *, town: str = "测试镇", villages: tuple[str, str] = ("东社村", "西亭村"),
               chiefs: tuple[str, str] = ("钱七", "孙八"), river: str = "通吕运河", extra: str = "") -> Path:
    """A 400 m x 200 m town (the conftest town) as files: two villages, four grids, a 5 m gap in V2, a river.

    Its run takes about a second, so a test can afford twenty of them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    crs = "EPSG:4549"
    layers = {
        "boundary": gpd.GeoDataFrame({"name": [town]}, geometry=[box(0, 0, 400, 200)], crs=crs),
        "villages": gpd.GeoDataFrame({"village_id": ["V1", "V2"], "name": list(villages)},
                                     geometry=[box(0, 0, 200, 200), box(200, 0, 400, 200)], crs=crs),
        "grids": gpd.GeoDataFrame({"grid_id": ["G1", "G2", "G3", "G4"], "village_id": ["V1", "V1", "V2", "V2"]},
                                  geometry=[box(0, 0, 200, 100), box(0, 100, 200, 200), box(200, 0, 400, 100),
                                            box(200, 100, 395, 200)], crs=crs),
        "roads": gpd.GeoDataFrame({"road_id": ["R1", "R2"], "road_class": ["main", "lane"]},
                                  geometry=[line((0, 50), (400, 50)), line((100, 0), (100, 200))], crs=crs),
        "rivers": gpd.GeoDataFrame({"river_id": ["H1"], "name": [river]}, geometry=[line((0, 150), (400, 150))],
                                   crs=crs),
        "pois": gpd.GeoDataFrame({"poi_id": ["P1"], "kind": ["school"], "name": ["东社小学"]},
                                 geometry=[shapely.Point(X0 + 50, Y0 + 30)], crs=crs),
    }
    for name, frame in layers.items():
        pyogrio.write_dataframe(frame, folder / "town.gpkg", layer=name)
    pd.DataFrame({"person_id": ["S1", "S2", "S3", "S4", "S5"], "name": ["张三", "李四", "王五", "赵六", "周九"],
                  "phone": ["13800000001", "13800000002", "13800000003", "13800000004", "13800000005"],
                  "role": ["grid_chief"] * 5, "grid_id": ["G1", "G2", "G3", "G4", "G9"]}  # G9: no such grid
                 ).to_csv(folder / "grid_staff.csv", index=False)
    pd.DataFrame({"person_id": ["C1", "C2"], "name": list(chiefs), "phone": ["13900000001", "13900000002"],
                  "level": ["town", "village"], "river_id": ["H1", "H1"], "village_id": ["", "V1"]}
                 ).to_csv(folder / "river_chiefs.csv", index=False)
    toml = (f"[town]\nname = {json.dumps(town, ensure_ascii=True)}\n\n"
            + "".join(f'[sources.{k}]\npath = "town.gpkg"\nlayer = "{k}"\n\n' for k in layers)
            + '[sources.grid_staff]\npath = "grid_staff.csv"\n\n[sources.river_chiefs]\npath = "river_chiefs.csv"\n\n'
            + "[maps]\nper_owner = false\nper_village = false\n" + extra)
    (folder / "gisgrid.toml").write_text(toml, encoding="utf-8")
    return folder / "gisgrid.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny"))


def _recorded(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT as_of FROM runs ORDER BY as_of")]


# --------------------------------------------------------------------------- hostile content in a whole run
LONG = "\U00020000" * 70  # 280 bytes of UTF-8: over the 255-byte file-name limit in 70 characters
FORMULAS = ('+HYPERLINK("http://evil.example","镇")', "-2+3+cmd|' /C calc'!A0")
ESCAPES = "\x1b[2J\x1b]0;pwned\x07"


@pytest.fixture(scope="module")
def hostile(cli, tmp_path_factory) -> tuple[Path, Path, Result, Result]:
    """The tiny town with hostile names, checked and run once: (its folder, the output folder, check, run -q)."""
    folder = tmp_path_factory.mktemp("hostile")
    config = write_tiny(folder / "town", town=f"东社镇{ESCAPES}", villages=(FORMULAS[0], LONG + ESCAPES),
                        chiefs=("CON", "孙八"), river=FORMULAS[1])
    out = folder / "out"
    check = cli("check", config, cwd=folder)
    run = cli("run", config, "--out", out, "--as-of", DAY, "--quiet", cwd=folder)
    assert run.returncode in (0, 1), run
    return folder, out, check, run


def _texts(out: Path) -> dict[str, str]:
    """The text of every file a run published: CSV, JSON, GeoJSON, HTML, and the cells of every XLSX."""
    import openpyxl

    texts: dict[str, str] = {}
    for f in sorted(out.rglob("*")):
        rel = str(f.relative_to(out))
        if f.suffix in (".csv", ".json", ".geojson", ".html", ".js", ".css"):
            texts[rel] = f.read_text(encoding="utf-8-sig")
        elif f.suffix == ".xlsx":
            book = openpyxl.load_workbook(f, read_only=True)  # read-only books keep the file open until closed
            texts[rel] = "\n".join("\t".join("" if v is None else str(v) for v in row)
                                   for sheet in book for row in sheet.iter_rows(values_only=True))
            book.close()
    return texts


def _cells(out: Path) -> list[tuple[str, str]]:
    import openpyxl

    cells: list[tuple[str, str]] = []
    for f in sorted(out.rglob("*.csv")):
        frame = pd.read_csv(f, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        cells += [(f.name, str(v)) for v in [*frame.columns, *frame.to_numpy().ravel()]]
    for f in sorted(out.rglob("*.xlsx")):
        book = openpyxl.load_workbook(f, read_only=True)
        for sheet in book:
            cells += [(f"{f.name}:{sheet.title}", v) for row in sheet.iter_rows(values_only=True) for v in row
                      if isinstance(v, str)]
        book.close()
    return cells


def test_hostile_formula_injection_no_cell_a_spreadsheet_would_run(hostile):
    _, out, _, _ = hostile
    cells = _cells(out)
    assert any("HYPERLINK" in v for _, v in cells)  # the names are still there, as text
    assert any("cmd|" in v for _, v in cells)
    assert [(f, v) for f, v in cells if v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(v)] == []


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_hostile_terminal_escapes_are_shown_not_obeyed(hostile):
    _, _, check, run = hostile
    assert check.returncode == 0, check
    assert "东社镇\\x1b[2J" in check.stdout
    assert "东社镇\\x1b[2J" in run.stdout
    assert len(run.stdout.strip().splitlines()) == 1  # the cron mail line
    for res in (check, run):
        for stream in (res.stdout, res.stderr):
            assert not [ch for ch in stream if ord(ch) < 32 and ch not in "\n"], stream


def test_hostile_no_control_characters_in_published_files(hostile):
    _, out, _, _ = hostile
    bad = {rel: sorted({hex(ord(ch)) for ch in text if ord(ch) < 32 and ch not in "\t\n\r"})
           for rel, text in _texts(out).items()}
    assert {rel: chars for rel, chars in bad.items() if chars} == {}


def test_hostile_long_and_windows_reserved_names_make_safe_unique_files(hostile):
    _, out, _, _ = hostile
    names = [p.name for p in out.rglob("*")]
    assert max(len(n.encode("utf-8")) for n in names) <= 255
    stems = {n.split(".")[0].upper() for n in names}
    assert not stems & {"CON", "PRN", "AUX", "NUL"}
    owners = sorted(p.name for p in (out / "reports" / DAY / "owners").iterdir())
    assert any(n.startswith("\U00020000") for n in owners), owners  # the long name, capped
    assert any(n.startswith("_CON") for n in owners), owners


def test_hostile_published_files_never_show_the_servers_folders(hostile):
    folder, out, _, _ = hostile
    texts = _texts(out / "reports")
    assert any("grid_staff.csv" in t for t in texts.values())  # the roster file is named, by its name
    assert [rel for rel, t in texts.items() if str(folder) in t or folder.as_posix() in t] == []


# --------------------------------------------------------------------------- a fault at every stage boundary
#: The boundaries of a run (issue 14) and the stage hook of ``GISGRID_FAULT`` that each one is.
BOUNDARIES = {
    "after load": "analyse",
    "after analysis": "history",
    "after the history commit": "maps",
    "after the report is staged": "staged",
    "after the swap": "published",
}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(reports: Path) -> list[str]:
    return sorted(p.name for p in reports.iterdir() if p.name.startswith(".") and p.name != ".gisgrid.lock")


def agree(reports: Path, listed: Result | None = None) -> list[str]:
    """Every recorded run has its whole report folder and every report folder its recorded run; the runs."""
    recorded = _recorded(reports / "history.sqlite")
    folders = sorted(p.name for p in reports.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert recorded == folders, (recorded, folders)
    assert all((reports / d / "report.html").read_bytes().rstrip().endswith(b"</html>") for d in folders)
    if listed is not None:
        assert listed.returncode == 0, listed
        assert [ln.split()[0] for ln in listed.stdout.splitlines() if ln[:2] == "20"] == recorded, listed
    return recorded


def test_a_fault_or_a_kill_at_every_stage_boundary_leaves_history_and_reports_agreeing(cli, tiny, tmp_path):
    out = tmp_path / "out"
    reports = out / "reports"

    def run(day: str, **kw: object) -> Result:
        return cli("run", tiny, "--out", out, "--as-of", day, cwd=tmp_path, **kw)

    def listed() -> Result:
        return cli("history", "list", tiny, "--out", out, cwd=tmp_path)

    assert run(DAY).returncode in (0, 1)
    good = {DAY: files(reports / DAY)}
    days = iter(f"2026-11-{d:02d}" for d in range(2, 29))
    for boundary, stage in BOUNDARIES.items():
        for mode in ("fault", "kill"):
            day = next(days)
            where = f"{mode} {boundary} (stage {stage!r}, {day})"
            maps = files(out / "maps")
            if mode == "fault":
                res = run(day, env={"GISGRID_FAULT": stage})
                assert res.returncode == 3, f"{where}: {res}"
                lines = res.stderr.strip().splitlines()
                assert len(lines) == 1, f"{where}: {res}"
                assert f"stage {stage!r}" in lines[0], f"{where}: {res}"
                assert "Traceback" not in res.stderr
            else:
                marker = tmp_path / f"paused-{day}"
                res = run(day, env={"GISGRID_FAULT": f"pause:{stage}", "GISGRID_PAUSE_FILE": str(marker)},
                          kill_when=marker)
                assert res.returncode == -signal.SIGKILL, f"{where}: {res}"
                assert marker.read_text().splitlines()[0] == stage
            for d, before in good.items():  # the last good reports are intact
                assert files(reports / d) == before, f"{where}: the report of {d} changed"
            published = stage == "published"  # the report was swapped in before the fault: the run is complete
            if not published:  # the live maps still show the last recorded run
                assert files(out / "maps") == maps, f"{where}: the live maps changed"
            if mode == "kill" and stage == "maps":
                again = run(day)  # the next run undoes the half-recorded run (and says so), then redoes the day
                assert again.returncode in (0, 1), f"{where}: {again}"
                assert f"the run of {day} was recorded" in again.stderr, again
                assert agree(reports, listed())[-1] == day, where
            else:  # history list starts like a run: a killed run is undone first (and said)
                now = listed()
                undone = mode == "kill" and stage == "staged"
                assert undone == (f"the run of {day} was recorded" in now.stderr), f"{where}: {now}"
                assert agree(reports, now)[-1] == (day if published else max(good)), where
            assert leftovers(reports) == [], where
            if (reports / day).exists():
                good[day] = files(reports / day)
    assert sorted(good) == [DAY, "2026-11-07", "2026-11-10", "2026-11-11"]  # the redone day, the two complete


# --------------------------------------------------------------------------- a full disk
@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int) -> Iterator[Path]:
    """A real small file system (tmpfs) at ``folder``: root only, unmounted after; skipped where mount is refused.

    In CI (``CI`` or ``GISGRID_REQUIRE_BROWSER`` set) a refused mount fails the test instead: the full-disk
    behaviour must be tested there. The file-size-limit test below needs no root.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)) if os.geteuid() == 0 else None
    if done is None or done.returncode != 0:
        reason = f"a tmpfs cannot be mounted here ({'not root' if done is None else done.stderr.strip()})"
        if os.environ.get("CI") or os.environ.get("GISGRID_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` bytes of free space with one file; return it."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with filler.open("ab") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def _full(res: Result, reports: Path, *words: str) -> None:
    refused(res, *words)
    assert len(res.stderr.strip().splitlines()) == 1, res


def test_a_full_disk_records_nothing_and_the_next_run_after_freeing_space_succeeds(cli, tiny, tmp_path):
    with small_disk(tmp_path / "disk", 4096) as disk:
        out = disk / "out"
        reports = out / "reports"

        def run(day: str) -> Result:
            return cli("run", tiny, "--out", out, "--as-of", day, cwd=tmp_path)

        assert run(DAY).returncode in (0, 1)
        good = files(reports / DAY)
        maps = files(out / "maps")
        # room for the history commit, not for the report (about 300 kB)
        filler = _fill(disk, 160_000)
        _full(run("2026-11-02"), reports, "is full", str(reports), "not recorded")
        filler.unlink()  # the history is read after space is freed: SQLite needs room for its -shm file to read
        assert agree(reports) == [DAY]
        assert (files(reports / DAY), files(out / "maps")) == (good, maps)
        assert leftovers(reports) == []
        # no room for the history commit itself
        filler = _fill(disk, 12_000)
        _full(run("2026-11-02"), reports, "history", "full", "not damaged")
        filler.unlink()
        assert agree(reports) == [DAY]
        assert (files(reports / DAY), files(out / "maps")) == (good, maps)
        assert run("2026-11-02").returncode in (0, 1)  # space freed: the next run succeeds
        assert agree(reports) == [DAY, "2026-11-02"]
        assert leftovers(reports) == []


def test_a_file_size_limit_is_a_full_disk_too_and_a_read_only_history_is_not_damaged(cli, tiny, tmp_path):
    """RLIMIT_FSIZE (EFBIG), which needs no root: the same refusal, nothing half-recorded."""
    out = tmp_path / "out"
    reports = out / "reports"

    def run(day: str, fsize: int | None = None) -> Result:
        return cli("run", tiny, "--out", out, "--as-of", day, "--no-maps", cwd=tmp_path, fsize=fsize)

    assert run(DAY).returncode in (0, 1)
    good = files(reports / DAY)
    biggest = max(len(b) for b in good.values())
    _full(run("2026-11-02", fsize=biggest // 2), reports, "full", str(reports))
    assert agree(reports) == [DAY]
    _full(run("2026-11-02", fsize=8192), reports, "history", "not damaged")
    assert agree(reports) == [DAY]
    assert files(reports / DAY) == good
    # a read-only history is said to be read-only, never "damaged, move it away" (issue 14)
    db = reports / "history.sqlite"
    before = {k: v for k, v in tree(out).items() if not k.endswith(("-wal", "-shm", ".lock")) and v[0] >= 0}
    with read_only(db):
        res = run("2026-11-02")
    refused(res, str(db), "read-only", "not damaged")
    assert "move the file away" not in res.stderr
    assert {k: v for k, v in tree(out).items() if not k.endswith(("-wal", "-shm", ".lock")) and v[0] >= 0} == before
    assert run("2026-11-02").returncode in (0, 1)
    assert agree(reports) == [DAY, "2026-11-02"]
    assert leftovers(reports) == []
