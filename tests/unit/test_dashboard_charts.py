"""The dashboard's server-drawn charts: well-formed SVG, no inline style (the CSP would
block it), text escaped, gaps where nothing was attempted; and where sign-in may lead."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from paymentd.dashboard import charts
from paymentd.dashboard.web import safe_next

SVG = "{http://www.w3.org/2000/svg}"


def days() -> list[charts.Day]:
    return [
        charts.Day("2026-12-01", 4, 3, 4, "0.7500"),
        charts.Day("2026-12-02", 0, 0, 0, None),
        charts.Day("2026-12-03", 2, 2, 2, "1.0000"),
        charts.Day("2026-12-04", 1, 0, 1, "0.0000"),
    ]


def test_volume_bars_scale_to_the_busiest_day() -> None:
    svg = ET.fromstring(str(charts.volume(days())))
    totals = svg.findall(f"{SVG}rect[@class='bar-total']")
    ok = svg.findall(f"{SVG}rect[@class='bar-ok']")
    assert len(totals) == 3 and len(ok) == 2  # no bar for an empty day or a zero count
    heights = [float(r.get("height")) for r in totals]
    assert heights[0] == max(heights) and heights[1] == heights[0] / 2
    assert totals[0].find(f"{SVG}title").text == "2026-12-01: 4 payments, 3 succeeded"
    assert "style" not in str(charts.volume(days()))


def test_success_rate_line_breaks_where_nothing_was_attempted() -> None:
    svg = ET.fromstring(str(charts.success_rate(days())))
    dots = svg.findall(f"{SVG}circle")
    assert [d.find(f"{SVG}title").text for d in dots] == [
        "2026-12-01: 75.0% of 4 attempted", "2026-12-03: 100.0% of 2 attempted", "2026-12-04: 0.0% of 1 attempted"]
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 1 and len(lines[0].get("points").split()) == 2  # 12-03 to 12-04; 12-01 stands alone
    top, bottom = 10, 180 - 22
    assert float(dots[1].get("cy")) == top and float(dots[2].get("cy")) == bottom


def test_empty_and_hostile_inputs() -> None:
    assert ET.fromstring(str(charts.volume([]))) is not None
    assert ET.fromstring(str(charts.success_rate([]))) is not None
    hostile = [charts.Day("<script>x</script>", 1, 1, 1, "1.0000")]
    drawn = str(charts.volume(hostile)) + str(charts.success_rate(hostile))
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn


def test_sign_in_leads_only_into_the_dashboard() -> None:
    assert safe_next("/dashboard/payments") == "/dashboard/payments"
    for hostile in (None, "", "https://evil.example", "//evil.example", "/dashboard/../api", "/dashboardx",
                    "/dashboard?x=https://evil", "/dashboard/\\evil", "javascript:alert(1)"):
        assert safe_next(hostile) == "/dashboard", hostile
