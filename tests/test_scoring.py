"""测评 (issue 15): the scheme by hand, a period of runs, ties, no red flag with a veto, [scoring] checked, the demo."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import shapely

from gisgrid import pipeline, scoring
from gisgrid._errors import ConfigError, HistoryError
from gisgrid.findings import make_findings
from gisgrid.history import History
from gisgrid.io.config import SCORING_KEYS, SCORING_PERIODS, SCORING_TIE_BREAKS, ScoringOptions, load_config
from gisgrid.report.points import TOTALS_KEY, period_scores, render_points
from gisgrid.vocab import KINDS

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:4547"
VILLAGES = {"V1": "一村", "V2": "二村", "V3": "三村", "V4": "四村"}


def _findings(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([{"message": r["finding_id"], "geometry": shapely.Point(500000 + 100 * i, 3000000),
                           "unit": "m", **r} for i, r in enumerate(rows)])
    out = make_findings(frame.drop(columns=["finding_id"]), crs=CRS)
    out["finding_id"] = frame["finding_id"].to_numpy()  # ids by construction: the ledger must name them
    return out


# --------------------------------------------------------------------------- the scheme by hand
def test_hand_computable_scheme_on_a_small_town() -> None:
    opts = ScoringOptions.parse({"red": 1, "yellow": 1, "kinds": {"road_uncovered": {"cap": 1}}})
    scheme = scoring.Scheme.from_options(opts)
    deadline = dt.date(2026, 10, 10)
    life = _findings([
        {"finding_id": "F1", "kind": "road_uncovered", "severity": "high", "village_id": "V1", "owner": "张三",
         "measure": 150.0},
        {"finding_id": "F2", "kind": "road_uncovered", "severity": "high", "village_id": "V1", "owner": "张三",
         "measure": 120.0},
        {"finding_id": "F3", "kind": "poi_uncovered", "severity": "veto", "village_id": ("V1", "V2"),
         "owner": "一村村委会 (V1) / 李四", "measure": 1.0, "unit": "count"},
        {"finding_id": "F4", "kind": "grid_unstaffed", "severity": "high", "village_id": "V3",
         "owner": "三村村委会 (V3)", "measure": 5e5, "unit": "m2"},
        {"finding_id": "F5", "kind": "area_gap", "severity": "high", "village_id": "V2", "owner": "二村村委会 (V2)",
         "measure": 3000.0, "unit": "m2"},
        {"finding_id": "F6", "kind": "area_gap", "severity": "high", "village_id": "V3", "owner": "三村村委会 (V3)",
         "measure": 3000.0, "unit": "m2"},
    ])
    life["status"] = ["overdue", "persisting", "new", "reopened", "resolved", "resolved"]
    life["deadline"] = deadline
    life["resolved_on"] = [None, None, None, None, dt.date(2026, 10, 9), dt.date(2026, 10, 20)]
    view = scoring.run_view(life)
    tables = scoring.level_tables(view, scheme, villages=VILLAGES)
    v = tables["village"].set_index("party")
    # V1: F1 0.5 × 150/100 = 0.75 and F2 0.60 capped at 1 → 0.25; F1 overdue 2; F3 poi 2 + veto 10 → 85.00
    # V2: F3 2 + 10; F5 fixed on time +0.5 → 88.50;  V3: F4 2 + reopened 3; F6 fixed late: overdue 2 → 93.00
    assert v["score"].to_dict() == {"V4": 100.0, "V3": 93.0, "V2": 88.5, "V1": 85.0}
    assert v.loc["V1", "lost"] == 15.0
    assert v.loc["V2", "credit"] == 0.5
    dep = tables["department"].set_index("party")
    assert dep["score"].to_dict() == {"张三": 97.0, "李四": 88.0}  # village committees answer as villages
    assert v["flag"].to_dict() == {"V4": "red", "V3": "", "V2": "", "V1": "yellow"}
    book = scoring.ledgers(view, scheme, villages=VILLAGES)
    # every point is traceable to a finding, and the ledger adds up to each score
    assert set(book["finding_id"]) <= set(life["finding_id"])
    sums = book.groupby(["level", "party"])["points"].sum().round(2)
    assert sums[("village", "V1")] == pytest.approx(85.0 - 100)
    assert sums[("department", "李四")] == pytest.approx(-12.0)
    capped = book[(book["finding_id"] == "F2") & book["rule"].str.startswith("kind")]
    assert capped["points"].tolist() == [-0.25, -0.25]
    assert capped["rule"].str.contains("cap 1.00").all()


# --------------------------------------------------------------------------- a period of runs
def _record(hist: History, day: str, rows: list[dict]) -> None:
    hist.record(_findings(rows), as_of=dt.date.fromisoformat(day),
                totals={TOTALS_KEY: {"villages": VILLAGES, "hygiene": {}}})


A = {"finding_id": "A", "kind": "road_uncovered", "severity": "high", "village_id": "V1", "owner": "张三",
     "measure": 200.0}
B = {"finding_id": "B", "kind": "grid_unstaffed", "severity": "high", "village_id": "V2", "owner": "二村村委会 (V2)",
     "measure": 1.0}
C = {"finding_id": "C", "kind": "area_gap", "severity": "high", "village_id": "V3", "owner": "三村村委会 (V3)",
     "measure": 2000.0, "unit": "m2"}
D = {"finding_id": "D", "kind": "poi_uncovered", "severity": "veto", "village_id": "V4", "owner": "李四",
     "measure": 1.0, "unit": "count"}


def test_a_period_with_a_fix_a_relapse_and_an_overdue_item(tmp_path: Path) -> None:
    hist = History(tmp_path / "history.sqlite")
    _record(hist, "2026-09-20", [A])            # Q3: A new
    _record(hist, "2026-10-01", [A, B, C, D])   # A overdue (deadline 09-27); B, C, D new (D: veto, 3 days)
    _record(hist, "2026-10-05", [A, C])         # B fixed on time (10-08); D fixed late (deadline 10-04)
    _record(hist, "2026-10-20", [A, B])         # B back (反弹); C fixed late (deadline 10-08)
    scheme = scoring.Scheme.from_options(ScoringOptions.parse({"red": 1, "yellow": 1}))
    q4 = period_scores(hist, scoring.parse_period("2026Q4"), scheme)
    assert q4.runs == [dt.date(2026, 10, 1), dt.date(2026, 10, 5), dt.date(2026, 10, 20)]
    v = q4.levels["village"].set_index("party")
    # V1: A open, 0.5 × 200/100 = 1 + overdue 2 → 97;  V2: B open 2 + reopened 3, its on-time fix is undone → 95
    # V3: C fixed late: overdue 2 → 98;  V4: D fixed late: overdue 2 → 98, but a veto item in the period
    assert v["score"].to_dict() == {"V3": 98.0, "V4": 98.0, "V1": 97.0, "V2": 95.0}
    assert v["rank"].to_dict() == {"V3": 1, "V4": 2, "V1": 3, "V2": 4}  # tie on 98: fewer veto items first
    assert v.loc["V4", "veto"] == 1
    assert v.loc["V2", "reopened"] == 1
    assert v.loc["V2", "fixed_on_time"] == 0
    assert v["flag"].to_dict() == {"V3": "red", "V4": "", "V1": "", "V2": "yellow"}
    dep = q4.levels["department"].set_index("party")
    assert dep["score"].to_dict() == {"张三": 97.0, "李四": 98.0}
    assert dep.loc["李四", "flag"] != "red"  # the veto item, although 李四 scores best
    trend = q4.trend["village"].set_index("party")
    # Q3: only A (new, 1 point) in V1; the other villages had nothing to lose
    assert trend.loc["V1", "2026Q3"] == 99.0
    assert trend.loc["V1", "change"] == -2.0
    assert trend.loc["V2", "2026Q3"] == 100.0
    assert trend.loc["V2", "change"] == -5.0
    assert pd.isna(trend.loc["V1", "2026Q2"])  # no run then
    # the period to date (as gisgrid run shows it) stops at the run date
    to_date = period_scores(hist, scoring.period_of(dt.date(2026, 10, 5)).to_date(dt.date(2026, 10, 5)), scheme)
    assert to_date.levels["village"].set_index("party").loc["V2", "score"] == 100.0  # B fixed on time: credit
    # capped at what was lost (nothing): a fix never lifts a score above base


# --------------------------------------------------------------------------- ties and the veto
def _table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["party", "score", "veto", "overdue", "reopened", "fixed_on_time", "hygiene"])


def test_tie_breaking_and_shared_ranks() -> None:
    scheme = scoring.Scheme(red=2, yellow=1)
    table = _table([("P1", 90.0, 0, 1, 0, 0, 5.0), ("P2", 90.0, 0, 0, 0, 0, 9.0), ("P3", 90.0, 0, 0, 0, 2, 9.0),
                    ("P4", 90.0, 0, 0, 0, 2, 9.0), ("P5", 80.0, 0, 0, 0, 0, 1.0), ("P6", 90.0, 1, 0, 0, 0, 0.0)])
    ranked = scoring.rank(table, scheme).set_index("party")
    # 90 each: P3 and P4 (2 fixed on time) equal on every key share rank 1; P2; P1 (1 overdue); P6 (veto) last
    assert ranked["rank"].to_dict() == {"P3": 1, "P4": 1, "P2": 3, "P1": 4, "P6": 5, "P5": 6}
    assert list(ranked.loc[["P3", "P4"], "flag"]) == ["red", "red"]
    assert ranked.loc["P5", "flag"] == "yellow"
    # three reds: the tie of two fits; for one red the tie straddles the count: no flag, unless share_ties
    assert (scoring.rank(table, scoring.Scheme(red=1))["flag"] == "red").sum() == 0
    shared = scoring.rank(table, scoring.Scheme(red=1, share_ties=True)).set_index("party")
    assert sorted(shared.index[shared["flag"] == "red"]) == ["P3", "P4"]
    # hygiene breaks what is left: P2 (9.0) against a P2 with less sliver area
    again = scoring.rank(_table([("A", 100.0, 0, 0, 0, 0, 3.0), ("B", 100.0, 0, 0, 0, 0, 1.0)]), scheme)
    assert list(again["party"]) == ["B", "A"]
    assert list(again["rank"]) == [1, 2]
    equal = scoring.rank(_table([("A", 100.0, 0, 0, 0, 0, 1.0), ("B", 100.0, 0, 0, 0, 0, 1.0)]), scheme)
    assert list(equal["rank"]) == [1, 1]
    assert set(equal["flag"]) == {""}


def test_no_red_flag_with_a_veto_item() -> None:
    table = _table([("best", 99.0, 1, 0, 0, 0, 0.0), ("next", 95.0, 0, 0, 0, 0, 0.0), ("last", 80.0, 0, 0, 0, 0, 0.0)])
    ranked = scoring.rank(table, scoring.Scheme(red=1, yellow=1)).set_index("party")
    assert ranked.loc["best", "rank"] == 1
    assert ranked.loc["best", "flag"] == ""
    assert ranked.loc["next", "flag"] == "red"
    assert ranked.loc["last", "flag"] == "yellow"
    vetoed = scoring.rank(table, scoring.Scheme(red=1, yellow=1, veto_yellow=True)).set_index("party")
    assert vetoed.loc["best", "flag"] == "yellow"


# --------------------------------------------------------------------------- [scoring] checked
def test_periods_parse_and_follow_each_other() -> None:
    q = scoring.parse_period("2026Q4")
    assert (q.start, q.end, q.kind) == (dt.date(2026, 10, 1), dt.date(2026, 12, 31), "quarter")
    assert q.previous().label == "2026Q3"
    assert scoring.parse_period("2026-01").previous().label == "2025-12"
    assert scoring.parse_period("2026").end == dt.date(2026, 12, 31)
    with pytest.raises(ConfigError, match="names no period"):
        scoring.parse_period("2026Q5")


def test_scoring_keys_match_the_scheme() -> None:
    # io does not import scoring: its lists of keys must stay the scheme's
    import dataclasses

    assert set(SCORING_KEYS) == {f.name for f in dataclasses.fields(scoring.Scheme)}
    assert SCORING_PERIODS == scoring.PERIODS
    assert tuple(scoring.TIE_BREAKS) == SCORING_TIE_BREAKS
    scheme = scoring.Scheme()
    for kind in KINDS:  # every kind costs something by default (its rule, else its severity's), bar the outside
        assert scheme.rule(kind, "high").points > 0 or kind == "outside_town"


def test_a_kind_with_no_rule_costs_its_severity() -> None:
    opts = ScoringOptions.parse({"kinds": {"grid_unstaffed": {"points": 0}}, "unlisted": {"high": 1.5}})
    scheme = scoring.Scheme.from_options(opts)
    life = _findings([{"finding_id": f"U{i}", "kind": "area_overlap", "severity": "high", "village_id": "V1",
                       "measure": 1e4, "unit": "m2"} for i in range(2)])
    life["status"] = "new"
    # area_overlap keeps its shipped rule: 0.2 per 1000 m² → 2 each
    assert scoring.standings(scoring.run_view(life), scheme)["score"].tolist() == [96.0]
    gone = dict(scheme.kinds)
    del gone["area_overlap"]
    bare = scoring.Scheme(kinds=gone, unlisted={"high": 1.5})
    assert scoring.standings(scoring.run_view(life), bare)["score"].tolist() == [97.0]  # 1.5 each, no rule
    assert scoring.standings(scoring.run_view(life.assign(kind="grid_unstaffed")), scheme)["score"].tolist() == [100.0]


@pytest.mark.parametrize(("toml", "message"), [
    ("redd = 3", "did you mean 'red'"),
    ('period = "quartr"', 'did you mean period = "quarter"'),
    ("red = 1.5", "red must be a whole number"),
    ("overdue = -1", "overdue must be a number >= 0"),
    ('tie_break = ["vetoo"]', "did you mean 'veto'"),
    ("kinds.road_uncoverd = { points = 1 }", "did you mean 'road_uncovered'"),
    ("kinds.road_uncovered = { pts = 1 }", "did you mean 'points'"),
    ('severity = { veto = "ten" }', "severity.veto must be a number"),
    ("unlisted = { hihg = 1 }", "did you mean 'high'"),
])
def test_bad_scoring_is_refused_with_the_fix(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "gisgrid.toml"
    cfg.write_text(f'[sources.villages]\npath = "v.gpkg"\n[sources.grids]\npath = "g.gpkg"\n[scoring]\n{toml}\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(cfg)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gisgrid", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    pipeline.write_demo(folder / "data")
    cfg = folder / "data" / "gisgrid.toml"  # the cleaned-grids proposal is not what these tests look at
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("[coverage]\n", "[coverage]\ncleaned_grids = false\n", 1),
                   encoding="utf-8")
    return folder


def test_check_and_run_refuse_bad_scoring_before_writing(demo_data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gisgrid.toml"
    text = (demo_data / "data" / "gisgrid.toml").read_text(encoding="utf-8")
    cfg.write_text(text.replace('path = "', f'path = "{(demo_data / "data").as_posix()}/')
                   + '\n[scoring]\nperiod = "quartr"\n', encoding="utf-8")
    checked = _cli("check", str(cfg), cwd=tmp_path)
    assert checked.returncode == 2
    assert 'did you mean period = "quarter"' in checked.stderr
    out = tmp_path / "out"
    ran = _cli("run", str(cfg), "--out", str(out), "--no-maps", cwd=tmp_path)
    assert ran.returncode == 2
    assert 'did you mean period = "quarter"' in ran.stderr
    assert not out.exists()  # nothing written


# --------------------------------------------------------------------------- the demo town and the CLI
def test_demo_town_ranking_and_the_score_command(demo_data: Path) -> None:
    cfg, out = demo_data / "data" / "gisgrid.toml", demo_data / "out"
    ran = pipeline.run(cfg, out=out, maps=False, as_of=dt.date(2026, 10, 5))
    assert "period 2026Q4 (2026-10-01 – 2026-10-05), 1 run" in ran.describe()  # gisgrid run shows the period to date
    day = out / "reports" / "2026-10-05"
    ledger = pd.read_csv(day / "points.csv", encoding="utf-8-sig")
    findings = pd.read_csv(day / "findings.csv", encoding="utf-8-sig")
    assert len(ledger)
    assert set(ledger["finding_id"]) <= set(findings["finding_id"])
    html = (day / "report.html").read_text(encoding="utf-8")
    assert "谁丢分、谁担责" in html
    assert ledger["finding_id"].iloc[0] in html
    scored = _cli("score", str(cfg), "--out", str(out), "--period", "2026Q4", cwd=demo_data)
    assert scored.returncode == 0, scored.stderr
    ranking = pd.read_csv(out / "reports" / "periods" / "2026Q4" / "ranking.csv", encoding="utf-8-sig")
    villages = ranking[ranking["level"] == "village"]
    assert len(villages) == 21
    assert villages["rank"].value_counts().max() < 19  # no 19-way tie at the top any more
    assert (villages["flag"] == "red").sum() <= 3
    assert (villages["flag"] == "yellow").sum() <= 3
    assert (villages.loc[villages["veto"] > 0, "flag"] != "red").all()
    assert set(ranking["level"]) == {"village", "department"}
    best = villages.iloc[0]
    assert f"{best['name']} ({best['party']})" in scored.stdout
    with pytest.raises(HistoryError, match="no run in 2025Q1"):
        pipeline.score(cfg, out=out, period="2025Q1")


def test_readme_shows_the_shipped_scheme(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[scoring]" in b)
    cfg = tmp_path / "gisgrid.toml"
    cfg.write_text(f'[sources.villages]\npath = "v.gpkg"\n[sources.grids]\npath = "g.gpkg"\n{block}', encoding="utf-8")
    assert scoring.Scheme.from_options(load_config(cfg).scoring) == scoring.Scheme()  # the example is the default
    rows = re.findall(r"^\| `(\w+)` \| ([\d.]+) \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)
    table = {k: (float(p), per.strip(), cap.strip()) for k, p, per, cap in rows}
    for kind, rule in scoring.DEFAULT_KIND_RULES.items():
        points, per, cap = table[kind]
        assert points == rule.points
        assert per == ("finding" if rule.per == 0 else f"{rule.per:g} {scoring._UNITS[kind]}")
        assert cap == ("—" if rule.cap is None else f"{rule.cap:g}")


def test_the_points_section_escapes_every_name() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    life = _findings([{"finding_id": "F1", "kind": "grid_unstaffed", "severity": "high", "village_id": "V1",
                       "owner": hostile, "measure": 1.0}])
    life["status"] = "new"
    scheme = scoring.Scheme()
    view = scoring.run_view(life)
    period = scoring.period_of(dt.date(2026, 10, 5)).to_date(dt.date(2026, 10, 5))
    scores = period_scores(None, period, scheme, run_view=view, book={"villages": {"V1": hostile}})
    html = render_points(scoring.ledgers(view, scheme, villages={"V1": hostile}), scores, as_of=period.end)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "F1" in html  # the finding id, for the ledger row


def test_score_thresholds_add_to_the_counts() -> None:
    table = _table([("A", 99.0, 0, 0, 0, 0, 0.0), ("B", 97.0, 0, 0, 0, 0, 0.0), ("C", 92.0, 0, 0, 0, 0, 0.0),
                    ("D", 80.0, 0, 0, 0, 0, 0.0)])
    ranked = scoring.rank(table, scoring.Scheme(red=3, yellow=1, red_min=98.0, yellow_below=95.0))
    flags = dict(zip(ranked["party"], ranked["flag"], strict=True))
    assert flags == {"A": "red", "B": "", "C": "yellow", "D": "yellow"}  # B and C below red_min; C below 95


def test_points_workbook_is_formula_safe(tmp_path: Path) -> None:
    import openpyxl

    from gisgrid import io
    from gisgrid.report.points import points_sheets

    life = _findings([{"finding_id": "F1", "kind": "grid_unstaffed", "severity": "high", "village_id": "V1",
                       "owner": '=HYPERLINK("http://x","y")', "measure": 1.0}])
    life["status"] = "new"
    view, scheme = scoring.run_view(life), scoring.Scheme()
    period = scoring.period_of(dt.date(2026, 10, 5)).to_date(dt.date(2026, 10, 5))
    scores = period_scores(None, period, scheme, run_view=view, book={"villages": VILLAGES})
    path = io.write_xlsx(points_sheets(scoring.ledgers(view, scheme, villages=VILLAGES), scores),
                         tmp_path / "points.xlsx")
    book = openpyxl.load_workbook(path)
    cells = [c for sheet in book.worksheets for row in sheet.iter_rows() for c in row]
    assert not [c for c in cells if c.data_type == "f"]
    assert any(str(c.value).startswith("'=HYPERLINK") or str(c.value) == '=HYPERLINK("http://x","y")'
               for c in cells if c.value is not None)
