import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gisgrid import SchemaError
from gisgrid.findings import COLUMNS, concat_findings, empty_findings, make_findings, sort_findings

X0, Y0 = 500000.0, 3550000.0


def _frame(geoms, kinds=None, severities=None):
    n = len(geoms)
    return pd.DataFrame({
        "kind": kinds or ["area_gap"] * n,
        "severity": severities or ["high"] * n,
        "message": ["m"] * n,
        "measure": [shapely.area(g) for g in geoms],
        "geometry": geoms,
    })


def test_schema_columns_in_order_and_extras_kept():
    f = make_findings(_frame([shapely.box(X0, Y0, X0 + 10, Y0 + 10)]).assign(road_class="lane"), crs=4549)
    assert tuple(f.columns[: len(COLUMNS)]) == COLUMNS
    assert f["road_class"].iloc[0] == "lane"
    assert f.crs.to_epsg() == 4549


def test_ids_survive_centimetre_noise_but_not_a_move():
    box = shapely.box(X0 + 100, Y0 + 50, X0 + 150, Y0 + 100)
    a = make_findings(_frame([box]), crs=4549, key=["gap:V1"])
    noisy = shapely.affinity.translate(box, 0.03, -0.02)
    b = make_findings(_frame([noisy]), crs=4549, key=["gap:V1"])
    moved = make_findings(_frame([shapely.affinity.translate(box, 200, 0)]), crs=4549, key=["gap:V1"])
    other_key = make_findings(_frame([box]), crs=4549, key=["gap:V2"])
    assert a["finding_id"].iloc[0] == b["finding_id"].iloc[0]
    assert a["finding_id"].iloc[0] != moved["finding_id"].iloc[0]
    assert a["finding_id"].iloc[0] != other_key["finding_id"].iloc[0]
    assert a["finding_id"].iloc[0].startswith("area_gap-")


def test_colliding_ids_are_told_apart_deterministically():
    g1 = shapely.box(X0, Y0, X0 + 2, Y0 + 2)
    g2 = shapely.box(X0 + 1, Y0, X0 + 2, Y0 + 1)
    f1 = make_findings(_frame([g1, g2]), crs=4549, key=["k", "k"])
    f2 = make_findings(_frame([g2, g1]), crs=4549, key=["k", "k"])
    assert f1["finding_id"].is_unique
    assert dict(zip(f1["finding_id"], f1["measure"], strict=True)) == dict(
        zip(f2["finding_id"], f2["measure"], strict=True))


def test_unknown_severity_refused():
    with pytest.raises(SchemaError, match="severity"):
        make_findings(_frame([shapely.Point(X0, Y0)], severities=["urgent"]), crs=4549)


def test_sort_and_concat():
    f = make_findings(_frame([shapely.box(X0, Y0, X0 + 1, Y0 + 1), shapely.box(X0, Y0, X0 + 5, Y0 + 5),
                              shapely.Point(X0, Y0)], kinds=["area_gap", "area_gap", "poi_uncovered"],
                             severities=["low", "high", "veto"]), crs=4549)
    s = sort_findings(f)
    assert list(s["severity"]) == ["veto", "high", "low"]
    both = concat_findings([f, empty_findings(4549)], crs=4549)
    assert len(both) == 3
    assert isinstance(both, gpd.GeoDataFrame)
    assert len(concat_findings([], crs=4549)) == 0
    assert np.isnan(concat_findings([f], crs=4549)["measure"]).sum() == 0
