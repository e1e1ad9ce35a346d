"""TechEmpower rules of /queries, /updates and /fortunes that need no database."""

from __future__ import annotations

import pytest

from m2stack.demo.world import EXTRA_FORTUNE, queries_count, render_fortunes, sorted_fortunes


@pytest.mark.parametrize("raw, expected", [
    (None, 1), ("", 1), ("abc", 1), ("1.5", 1), ("0", 1), ("-3", 1), ("7", 7), ("500", 500),
    ("501", 500), ("99999999999999999999", 500),
])
def test_queries_count(raw, expected):
    assert queries_count(raw) == expected


def test_fortunes_sorted_with_the_extra_one_and_escaped():
    rows = sorted_fortunes([(11, '<script>alert("x");</script>'), (12, "フレームワークのベンチマーク"),
                            (1, "fortune: No such file or directory")])
    assert rows[0] == (11, '<script>alert("x");</script>') and EXTRA_FORTUNE in rows
    assert [m for _, m in rows] == sorted(m for _, m in rows)
    page = render_fortunes(rows)
    assert "<script>" not in page
    assert "<tr><td>11</td><td>&lt;script&gt;alert(&quot;x&quot;);&lt;/script&gt;</td></tr>" in page
    assert "<td>フレームワークのベンチマーク</td>" in page
