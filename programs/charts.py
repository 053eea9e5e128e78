"""Tonight's plan as one Plotly chart: price, planned power and the SoC path, with the departure
and target marked and the floor shaded (DESIGN.md §7, issue 5)."""

import zoneinfo
from datetime import timedelta

import plotly.graph_objects as go

from programs.models import ChargingPlan

GREEN, BLUE, AMBER, GREY = "#0b6e4f", "#2563a6", "#b7791f", "#9aa8a2"


def plan_figure(*, plan: ChargingPlan, time_zone: str) -> dict:
    zone = zoneinfo.ZoneInfo(time_zone)
    step = timedelta(minutes=plan.slot_minutes)

    def local(index: int) -> str:  # plotly reads offset-less dates as wall-clock time
        return (plan.start + index * step).astimezone(zone).strftime("%Y-%m-%d %H:%M")

    slots = [local(i) for i in range(len(plan.power_kw))]
    edges = [local(i) for i in range(len(plan.soc))]
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=slots,
            y=plan.power_kw,
            name="Planned power (kW)",
            marker={"color": BLUE},
            opacity=0.7,
            yaxis="y2",
            hovertemplate="%{y:.1f} kW<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=edges,
            y=[round(s * 100, 1) for s in plan.soc],
            name="Charge (%)",
            mode="lines",
            line={"color": GREEN, "width": 3},
            hovertemplate="%{y:.0f} %<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=slots,
            y=plan.import_price,
            name="Price ($/kWh)",
            mode="lines",
            yaxis="y3",
            line={"color": AMBER, "shape": "hv", "width": 1.5, "dash": "dot"},
            hovertemplate="$%{y:.2f}/kWh<extra></extra>",
        )
    )
    figure.add_hrect(
        y0=0,
        y1=plan.min_soc_pct,
        fillcolor=GREY,
        opacity=0.18,
        line_width=0,
        annotation_text="floor",
        annotation_position="bottom left",
    )
    departure = local(min(plan.departure_slot, len(plan.soc) - 1))
    figure.add_shape(
        type="line",
        x0=departure,
        x1=departure,
        y0=0,
        y1=100,
        yref="y",
        line={"color": GREEN, "dash": "dash"},
    )
    figure.add_trace(
        go.Scatter(
            x=[departure],
            y=[plan.target_soc_pct],
            mode="markers+text",
            name="Target at departure",
            marker={"color": GREEN, "size": 11, "symbol": "star"},
            text=[f"{plan.target_soc_pct} %"],
            textposition="top left",
            hovertemplate="target %{y} %<extra></extra>",
        )
    )
    figure.update_layout(
        height=300,
        margin={"l": 40, "r": 45, "t": 10, "b": 40},
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.25},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        xaxis={"fixedrange": True},
        yaxis={"range": [0, 105], "ticksuffix": " %", "fixedrange": True},
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "ticksuffix": " kW",
            "fixedrange": True,
            "range": _power_range(plan.power_kw),
        },
        yaxis3={
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "showticklabels": False,
            "fixedrange": True,
            "rangemode": "tozero",
        },
    )
    return figure.to_plotly_json()


def _power_range(power_kw: list[float]) -> list[float]:
    """Power bars use the lower ~60 % of the chart so the SoC line stays readable above them."""
    top = max([1.0, *power_kw])
    bottom = min([0.0, *power_kw])
    return [bottom * 1.7, top * 1.7]


def plan_table(*, plan: ChargingPlan, time_zone: str) -> list[dict]:
    """The plan as rows of contiguous blocks, the chart's text equivalent."""
    zone = zoneinfo.ZoneInfo(time_zone)
    step = timedelta(minutes=plan.slot_minutes)
    rows: list[dict] = []
    for index, power in enumerate(plan.power_kw):
        mode = "charge" if power > 0.05 else "discharge" if power < -0.05 else "idle"
        if rows and rows[-1]["mode"] == mode:
            rows[-1]["end"] = plan.start + (index + 1) * step
            rows[-1]["energy"] += abs(power) * plan.slot_minutes / 60
            continue
        rows.append(
            {
                "mode": mode,
                "start": plan.start + index * step,
                "end": plan.start + (index + 1) * step,
                "energy": abs(power) * plan.slot_minutes / 60,
            }
        )
    for row in rows:
        row["start"] = row["start"].astimezone(zone)
        row["end"] = row["end"].astimezone(zone)
    return [row for row in rows if row["mode"] != "idle"]
