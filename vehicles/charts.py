"""Plotly figures of a car's last 24 hours (SoC and charging power), as JSON for the page.

Built server-side with plotly's Python API; static/js/charts.js draws them with the locally served
plotly.js. Each figure comes with a one-line text summary for screen readers and small screens.
"""

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from vehicles.models import VehicleReading

GREEN, BLUE = "#0b6e4f", "#2563a6"


@dataclass(frozen=True)
class Chart:
    figure: dict | None
    summary: str


def vehicle_day_chart(*, readings: Sequence[VehicleReading], time_zone: str) -> Chart:
    with_soc = [r for r in readings if r.soc_pct is not None]
    if not with_soc:
        return Chart(figure=None, summary="No readings in the last 24 hours yet.")
    zone = zoneinfo.ZoneInfo(time_zone)

    def local(reading: VehicleReading) -> str:
        # plotly.js reads dates without an offset as wall-clock time: show the owner's clock.
        return reading.recorded_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    times = [local(r) for r in with_soc]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[r.soc_pct for r in with_soc],
            name="Charge (%)",
            mode="lines",
            line={"color": GREEN, "width": 3},
            hovertemplate="%{y:.0f} %<extra></extra>",
        )
    )
    powered = [r for r in with_soc if r.power_kw is not None]
    if powered:
        figure.add_trace(
            go.Bar(
                x=[local(r) for r in powered],
                y=[r.power_kw for r in powered],
                name="Power (kW)",
                yaxis="y2",
                marker={"color": BLUE},
                opacity=0.5,
                hovertemplate="%{y:.1f} kW<extra></extra>",
            )
        )
    figure.update_layout(
        margin={"l": 40, "r": 40, "t": 10, "b": 30},
        height=260,
        legend={"orientation": "h", "y": -0.2},
        hovermode="x unified",
        yaxis={"range": [0, 100], "ticksuffix": " %", "fixedrange": True},
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "ticksuffix": " kW",
            "showgrid": False,
            "fixedrange": True,
        },
        xaxis={"fixedrange": True},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    first, last = with_soc[0], with_soc[-1]
    low = min(with_soc, key=lambda r: r.soc_pct)
    summary = (
        f"Charge went from {first.soc_pct:.0f} % to {last.soc_pct:.0f} % over the last 24 hours "
        f"(lowest {low.soc_pct:.0f} % at {low.recorded_at.astimezone(zone):%H:%M})."
    )
    return Chart(figure=figure.to_plotly_json(), summary=summary)
