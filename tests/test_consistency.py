"""One town, one set of numbers and words: the report, the command-center map and the quickstart notebook agree.

The demo town is analysed once; the report folder and the maps are written to real files and read back as
HTML. Each must show the area coverage as `gisgrid.vocab.percent` writes it, the same findings (by id) with
the same severities, the same veto count, and every finding kind and severity in the words of `gisgrid.vocab`.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

import gisgrid
from gisgrid import maps, report
from gisgrid.demo import make_demo
from gisgrid.vocab import KIND_ZH, SEVERITY_LABELS, kind_label, percent

ROOT = Path(__file__).resolve().parents[1]
FINDING_ID = re.compile(r"\b([a-z_]+)-[0-9a-f]{12}(?:~\d+)?\b")
#: The area coverage after its label: 面积覆盖 (map, report) or 网格覆盖 (the assessment's own summary);
#: the label and the number may be apart by a few words ("area in a grid") but by nothing numeric or quoted.
AREA = re.compile(r"(?:面积覆盖率?|网格覆盖)[^\d%\"\[\]{}]{0,24}?(<?\d+\.\d+%|n/a)")
VETO = re.compile(r"一票否决 veto[^\d\"\[\]{}]{0,12}?(\d+)")


def plain(text: str) -> str:
    """Text as a reader sees it: JSON \\u escapes and HTML entities decoded, tags dropped, spaces collapsed."""
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = html.unescape(text).replace('\\"', '"')
    text = re.sub(r"<(style)[^>]*>.*?</\1>", " ", text, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


class _Rows(HTMLParser):
    """Table rows as lists of cells ``{"class": ..., "text": ...}`` (``<br>`` kept as a line break)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[dict[str, str]]] = []
        self._row: list[dict[str, str]] | None = None
        self._cell: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"class": dict(attrs).get("class") or "", "text": ""}
        elif tag == "br" and self._cell is not None:
            self._cell["text"] += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def report_findings(page: str) -> dict[str, dict]:
    """Every finding row of the report: ``{finding_id: {"kind_lines": [...], "severity": label}}``."""
    parser = _Rows()
    parser.feed(page)
    found: dict[str, dict] = {}
    severity_words = set(SEVERITY_LABELS.values())
    for row in parser.rows:
        ids = {m.group(0) for cell in row for m in FINDING_ID.finditer(cell["text"])}
        if len(ids) != 1:
            continue
        (fid,) = ids
        sev = [c["text"].strip() for c in row if c["text"].strip() in severity_words]
        assert len(sev) == 1, f"report row of {fid}: severity cells {sev}"
        lines = [line.strip() for c in row for line in c["text"].split("\n") if line.strip()]
        entry = {"lines": lines, "severity": sev[0]}
        if fid in found:  # listed twice (a veto item is also new): the same words both times
            assert found[fid]["severity"] == entry["severity"], fid
        found.setdefault(fid, entry)
    return found


def map_findings(page: str) -> dict[str, dict]:
    """The findings the map embeds (its JSON data blocks): ``{finding_id: {"kind": ..., "severity": ...}}``."""
    found: dict[str, dict] = {}
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, flags=re.S):
        data = json.loads(block)
        keys = data.get("k") if isinstance(data, dict) else None
        if not isinstance(keys, list) or not {"i", "k", "s", "sv"} <= set(keys):
            continue
        for row in zip(*data["c"], strict=True):
            rec = dict(zip(keys, row, strict=True))
            entry = {"kind": html.unescape(rec["k"]), "severity": html.unescape(rec["s"]), "sv": rec["sv"]}
            assert found.setdefault(rec["i"], entry) == entry, f"the map shows {rec['i']} in two ways"
    return found


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    assessment = gisgrid.analyze(make_demo().town())
    out = tmp_path_factory.mktemp("consistency")
    written = report.write_report(assessment, out / "report")
    assert out / "report" / "report.html" in written
    maps.write_maps(assessment, out, per_owner=False, per_village=False)
    return {
        "assessment": assessment,
        "findings": assessment.findings,
        "report": (out / "report" / "report.html").read_text(encoding="utf-8"),
        "map": (out / "maps" / "command_center.html").read_text(encoding="utf-8"),
    }


@pytest.fixture(scope="module")
def expected(town):
    f = town["findings"]
    assert len(f) > 0, "the demo town has findings"
    assert (f["severity"] == "veto").any(), "the demo town has a veto item"
    return {
        "area": percent(town["assessment"].totals["area_coverage"]),
        "ids": set(f["finding_id"]),
        "severity": dict(zip(f["finding_id"], f["severity"], strict=True)),
        "kind": dict(zip(f["finding_id"], f["kind"], strict=True)),
        "by_severity": Counter(f["severity"]),
        "veto": int((f["severity"] == "veto").sum()),
    }


# ----------------------------------------------------------------------------- headline numbers
def test_the_assessment_counts_its_vetoes_as_its_findings_do(town, expected):
    assert town["assessment"].totals["veto"] == expected["veto"]
    assert town["assessment"].totals["findings"] == len(town["findings"])


def test_report_headline_numbers(town, expected):
    m = re.search(r'<section id="headline">(.*?)</section>', town["report"], flags=re.S)
    assert m, "the report has a headline section"
    head = plain(m.group(1))
    assert AREA.findall(head) == [expected["area"]], head
    assert VETO.findall(head) == [str(expected["veto"])], head
    assert re.findall(r"未整改问题[^\d]{0,30}?(\d+)", head) == [str(len(expected["ids"]))], head


def test_map_headline_numbers(town, expected):
    text = plain(town["map"])
    areas = AREA.findall(text)
    assert areas, "the map shows the area coverage"
    assert set(areas) == {expected["area"]}
    vetoes = VETO.findall(text)
    assert vetoes, "the map shows the veto count"
    assert set(vetoes) == {str(expected["veto"])}


def test_report_and_map_list_the_same_findings_by_severity(town, expected):
    in_report = report_findings(town["report"])
    on_map = map_findings(town["map"])
    assert set(in_report) == expected["ids"]
    assert set(on_map) == expected["ids"]
    want = {SEVERITY_LABELS[s]: n for s, n in expected["by_severity"].items()}
    assert Counter(r["severity"] for r in in_report.values()) == want
    assert Counter(r["severity"] for r in on_map.values()) == want
    assert Counter(r["sv"] for r in on_map.values()) == expected["by_severity"]


# ----------------------------------------------------------------------------- words
def test_report_words_come_from_vocab(town, expected):
    for fid, row in report_findings(town["report"]).items():
        kind, sev = expected["kind"][fid], expected["severity"][fid]
        assert row["severity"] == SEVERITY_LABELS[sev], fid
        assert KIND_ZH[kind] in row["lines"] or kind_label(kind) in row["lines"], (fid, row["lines"])


def test_map_words_come_from_vocab(town, expected):
    for fid, shown in map_findings(town["map"]).items():
        kind, sev = expected["kind"][fid], expected["severity"][fid]
        assert shown["kind"] == kind_label(kind), fid
        assert shown["severity"] == SEVERITY_LABELS[sev], fid
    # the layers of the kinds that have their own: named in vocab's words, with the right number of findings
    overlays = [plain(m) for m in re.findall(r'"((?:[^"\\\n]|\\.)*)"\s*:\s*geo_layer_', town["map"])]
    counts = Counter(expected["kind"].values())
    for kind in ("area_gap", "area_overlap", "road_uncovered", "river_unassigned"):
        if counts[kind]:
            named = [o for o in overlays if o.strip().startswith(KIND_ZH[kind] + " ")]
            assert len(named) == 1, (kind, overlays)
            assert re.search(rf"\({counts[kind]}\)\s*$", named[0]), named[0]


# ----------------------------------------------------------------------------- the notebook
@pytest.mark.slow
def test_quickstart_notebook_shows_the_same_area_coverage(town, expected, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4)
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    shown = [plain(str(v)) for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
             for mime, v in out.get("data", {}).items() if mime in ("text/html", "text/plain")]
    text = " ".join(shown)
    # the assessment's summary and the command-center map's title: the report's words exactly
    areas = AREA.findall(text)
    assert len(areas) >= 2, "the notebook shows the area coverage in the assessment and on its map"
    assert set(areas) == {expected["area"]}
    assert set(AREA.findall(plain(town["report"]))) == {expected["area"]}
    # the headline table (three decimals) truncates to the same text, never rounds past it
    three = set(re.findall(r"\barea_coverage\W{0,40}?(\d+\.\d+%)", text))
    assert three == {percent(town["assessment"].totals["area_coverage"], 3)}
    (value,) = three
    assert value[:-2] + "%" == expected["area"]
