"""SVG charts: well-formed, escaped, and drawing what they are given."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dbflywheel import charts

NS = "{http://www.w3.org/2000/svg}"


def test_line_chart_draws_one_path_per_series_and_escapes_text() -> None:
    svg = charts.line_chart("pass <rate>", ["w1", "w2", "w3"], {"v1 & co": [0.5, None, 0.9], "v2": [0.1, 0.2, 0.3]})
    root = ET.fromstring(svg)  # raises if the markup is broken
    assert len(root.findall(f"{NS}path")) == 2
    assert len(root.findall(f"{NS}circle")) == 5  # the None is a gap, not a point
    assert "pass <rate>" in [t.text for t in root.iter(f"{NS}text")]


def test_bar_chart_bar_widths_are_proportional() -> None:
    root = ET.fromstring(charts.bar_chart("ranking", [("a", 2.0), ("b", 1.0)]))
    widths = [float(r.get("width", 0)) for r in root.findall(f"{NS}rect")]
    assert widths[0] == 2 * widths[1] > 0


def test_empty_data_says_so() -> None:
    assert "no data" in charts.line_chart("x", [], {})
    assert "no data" in charts.bar_chart("x", [])
    assert "no data" in charts.paired_bar_chart("x", [], ("a", "b"))
