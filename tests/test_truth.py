"""The demo town's planted defects are found, each with the right kind, place and size, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from gisgrid import settings
from gisgrid.analysis import analyze
from gisgrid.demo import HAND_MAX_M, make_demo
from gisgrid.findings import id_list


@pytest.fixture(scope="module", params=["hand-drawn", "exact"])
def drawn(request):
    """The hand-drawn demo with the default tolerance, and the exact partition with tolerance 0."""
    return request.param


@pytest.fixture(scope="module")
def demo(drawn):
    return make_demo(hand_drawn=drawn == "hand-drawn")


@pytest.fixture(scope="module")
def assessment(demo, drawn):
    return analyze(demo.town(), tolerance_m=None if drawn == "hand-drawn" else 0)


def _noise(geom) -> float:
    """How far a hand-drawn border may move a measured area: its perimeter times the largest offset."""
    return geom.length * 2 * HAND_MAX_M


def _matches(finding, truth_row) -> bool:
    if finding["kind"] != truth_row["kind"]:
        return False
    for col in ("road_id", "poi_id", "river_id"):
        want = truth_row.get(col)
        if want is not None and isinstance(want, str) and finding.get(col) not in (None, want):
            return False
    fg, tg = finding.geometry, truth_row.geometry
    kind = truth_row["kind"]
    if kind in ("grid_unstaffed",):
        return finding["grid_id"] == truth_row["grid_id"]
    if kind == "input_repaired":
        return finding["grid_id"] == truth_row["grid_id"]
    if kind == "river_unassigned":
        return (finding["village_id"] == truth_row["village_id"]
                and finding.get("river_id") in (None, truth_row["river_id"])
                and abs(finding["measure"] - truth_row["measure"]) <= 1.0)
    if tg is None or fg is None or fg.is_empty:
        return False
    if tg.geom_type.endswith("Polygon"):  # exact on the exact partition; within the noise when hand-drawn
        return (shapely.symmetric_difference(fg, tg).area <= 0.01 * tg.area + _noise(tg)
                and finding["measure"] == pytest.approx(truth_row["measure"], rel=0.01, abs=_noise(tg)))
    if tg.geom_type.endswith("LineString"):
        return (shapely.hausdorff_distance(fg, tg) <= 1.0 + 2 * HAND_MAX_M
                and finding["measure"] == pytest.approx(truth_row["measure"], abs=1.0 + 2 * HAND_MAX_M))
    return fg.distance(tg) <= 0.5


def test_every_planted_defect_found_and_nothing_else(demo, assessment):
    truth = demo.truth.to_crs(assessment.town.crs)
    findings = assessment.findings
    unmatched_truth = []
    used: set[int] = set()
    for _, t in truth.iterrows():
        hits = [i for i, f in findings.iterrows() if i not in used and _matches(f, t)]
        if hits:
            used.add(hits[0])
        else:
            unmatched_truth.append((t["kind"], t.get("note")))
    extra = findings.drop(index=list(used))
    assert not unmatched_truth, f"planted but not found: {unmatched_truth}"
    assert extra.empty, f"found but not planted:\n{extra[['kind', 'severity', 'message']].to_string()}"


def test_kinds_cover_the_issue_list(demo):
    kinds = set(demo.truth["kind"])
    assert {"area_gap", "area_overlap", "road_uncovered", "grid_unstaffed", "river_unassigned",
            "poi_uncovered", "input_repaired"} <= kinds


def test_school_in_gap_is_veto_and_everything_has_an_owner(assessment):
    f = assessment.findings
    school = f[(f["kind"] == "poi_uncovered")]
    assert (school["severity"] == "veto").all()
    assert f["owner"].notna().all()
    assert (f["owner"].str.len() > 0).all()


def test_coverage_ratios_agree_with_plain_shapely(demo, assessment, drawn):
    town = assessment.town
    if drawn == "exact":
        grid_union = shapely.union_all(np.asarray(town.grids.geometry.values))
        expected = shapely.intersection(town.extent, grid_union).area / town.extent.area
    else:  # the slivers are absorbed: only the real gaps count
        gaps = assessment.findings[(assessment.findings["kind"] == "area_gap")]
        expected = 1 - gaps["measure"].sum() / assessment.summary["area_m2"].sum()
    assert assessment.totals["area_coverage"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_hand_drawn_demo_is_hand_drawn(demo, assessment, drawn):
    grids = np.asarray(assessment.town.grids.geometry.values)
    vertices = shapely.get_num_coordinates(grids)
    if drawn == "exact":
        assert bool(shapely.coverage_is_valid(grids[~assessment.town.grids["grid_id"].isin(
            assessment.findings["grid_id"].dropna().map(id_list).explode())]))
        return
    assert np.median(vertices) >= 100  # hundreds of vertices, not seven
    assert assessment.totals["slivers"] > 1000  # no two neighbours share a border
    assert assessment.totals["tolerance_m"] == settings.tolerance_m


def _white_noise(frame, rng, draw):
    """Each polygon drawn again: a vertex every 10 m, each vertex moved on its own (no smoothing)."""
    out = []
    for geom in np.asarray(frame.geometry.values, dtype=object):
        if not geom.is_valid or geom.geom_type != "Polygon":  # the planted invalid grid stays as stored
            out.append(geom)
            continue
        ring = np.asarray(shapely.segmentize(geom, 10.0).exterior.coords)[:-1]
        moved = shapely.Polygon(np.round(ring + draw(rng, ring.shape), 2))
        out.append(moved if moved.is_valid else geom)
    return frame.set_geometry(out)


@pytest.mark.parametrize("noise", [
    pytest.param(lambda rng, shape: rng.normal(0.0, 0.5, shape), id="each-vertex-about-0.5m"),
    pytest.param(lambda rng, shape: rng.uniform(-1.5, 1.5, shape), id="each-border-off-up-to-1.5m"),
])
def test_independently_jittered_vertices_raise_nothing_new(noise):
    """The trial of the issue: the demo redrawn grid by grid, every vertex off on its own."""
    from gisgrid.demo import _generate
    from gisgrid.model import Town

    built = _generate("town", 20261129, hand_drawn=False)
    rng = np.random.default_rng(17)
    layers = dict(built.layers)
    for key in ("grids", "villages", "boundary"):
        layers[key] = _white_noise(layers[key], rng, noise)
    town = Town.from_frames(**layers, **built.rosters, name=built.name, crs="EPSG:4549")
    found = analyze(town).findings
    assert sorted(found["kind"]) == sorted(built.truth["kind"]), found[["kind", "measure", "message"]].to_string()
