"""The vocabulary people read: a shortfall never shows as 100%, a trace never as 0%, nothing as n/a."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gisgrid.vocab import percent


@pytest.mark.parametrize(("value", "digits", "shown"), [
    (0.99996, 2, "99.99%"), (0.9996, 1, "99.9%"), (0.999996, 3, "99.999%"), (1.0, 2, "100.00%"),
    (0.29, 2, "29.00%"), (0.5, 0, "50%"), (0.0, 2, "0.00%"), (1e-7, 2, "<0.01%"),
    (None, 2, "n/a"), (math.nan, 2, "n/a"), ("x", 2, "n/a"),
])
def test_percent(value, digits, shown):
    assert percent(value, digits) == shown


@given(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 4))
def test_a_ratio_below_one_never_reads_100_percent(value, digits):
    assert not percent(value, digits).startswith("100")


def test_nearest_is_the_one_did_you_mean():
    from gisgrid.vocab import nearest

    assert nearest("overdu", ["overdue", "veto"]) == "overdue"
    assert nearest(["zzz", "tolerance_n"], ["tolerance_m", "workers"]) == "tolerance_m"
    assert nearest("qqqq", ["tolerance_m"]) is None
