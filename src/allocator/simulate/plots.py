"""Charts of a comparison with altair, saved as static PNG or SVG through vl-convert.

Needs the ``plot`` extra (``pip install 'allocator[plot]'``); altair is imported only when a
chart is drawn, so ``import allocator.simulate`` stays light. No browser is involved: vl-convert
renders the Vega-Lite specification in process.

* :func:`cost_chart`: cost per order by policy, shipping and penalties stacked;
* :func:`split_rate_chart`: share of orders shipped in more than one parcel, per day;
* :func:`backorder_chart`: units waiting for stock at the end of each day;
* :func:`flow_map`: units from each location to the demand areas it served, per policy;
* :func:`write_report`: all of the above as image files plus ``report.html`` (the KPI table and
  the charts inline as SVG, readable offline).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from allocator.errors import AllocatorError

if TYPE_CHECKING:
    from allocator.simulate._run import Comparison

__all__ = [
    "PlotDependencyError",
    "backorder_chart",
    "cost_chart",
    "flow_map",
    "save_chart",
    "split_rate_chart",
    "write_report",
]

#: Most flows drawn per policy on a map (the heaviest ones).
MAX_FLOWS = 300

_WIDTH = 520


class PlotDependencyError(AllocatorError, ImportError):
    """altair or vl-convert is missing (install ``allocator[plot]``)."""


def _altair() -> Any:
    try:
        import altair as alt
    except ImportError as exc:  # pragma: no cover - depends on the extras installed
        raise PlotDependencyError(
            "charts need altair and vl-convert: pip install 'allocator[plot]'"
        ) from exc
    return alt


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        for row in frame.iter_rows(named=True)
    ]


def cost_chart(kpis: pl.DataFrame) -> Any:
    """Cost per order by policy: shipping and penalties stacked, cheapest first.

    Parameters
    ----------
    kpis
        The comparison's one table (:attr:`Comparison.kpis`).

    Returns
    -------
    altair.Chart
    """
    alt = _altair()
    order = kpis.sort("cost_per_order")["policy"].to_list()
    long = pl.concat(
        [
            kpis.select(
                "policy",
                pl.lit(label).alias("component"),
                pl.col(column).alias("per_order"),
                pl.col("cost_per_order").alias("total"),
            )
            for label, column in (
                ("shipping", "shipping_cost_per_order"),
                ("backorder and rejection penalties", "penalty_cost_per_order"),
            )
        ]
    )
    base = alt.Chart(alt.Data(values=_records(long)))
    bars = base.mark_bar().encode(
        y=alt.Y("policy:N", sort=order, title=None),
        x=alt.X("sum(per_order):Q", title="cost per order"),
        color=alt.Color(
            "component:N",
            scale=alt.Scale(
                domain=["shipping", "backorder and rejection penalties"],
                range=["#4c78a8", "#e45756"],
            ),
            legend=alt.Legend(orient="bottom", title=None),
        ),
        tooltip=["policy:N", "component:N", alt.Tooltip("per_order:Q", format=".2f")],
    )
    labels = (
        alt.Chart(alt.Data(values=_records(kpis.select("policy", "cost_per_order"))))
        .mark_text(align="left", dx=4)
        .encode(
            y=alt.Y("policy:N", sort=order),
            x="cost_per_order:Q",
            text=alt.Text("cost_per_order:Q", format=".2f"),
        )
    )
    mode = kpis["mode"][0] if "mode" in kpis.columns else ""
    return (bars + labels).properties(
        width=_WIDTH,
        height=max(80, 28 * kpis.height),
        title=f"Cost per order by policy ({mode})",
    )


def _daily_line(daily: pl.DataFrame, column: str, title: str, axis: str, fmt: str) -> Any:
    alt = _altair()
    data = daily.select("policy", "day", column).drop_nulls("day")
    return (
        alt.Chart(alt.Data(values=_records(data)))
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day", axis=alt.Axis(format="%b %d", tickCount="day")),
            y=alt.Y(f"{column}:Q", title=axis, axis=alt.Axis(format=fmt)),
            color=alt.Color("policy:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["policy:N", "day:T", alt.Tooltip(f"{column}:Q", format=fmt)],
        )
        .properties(width=_WIDTH, height=240, title=title)
    )


def split_rate_chart(daily: pl.DataFrame) -> Any:
    """Split rate per day of order creation, one line per policy (:meth:`Comparison.by_day`)."""
    return _daily_line(
        daily, "split_rate", "Split rate over time", "orders shipped in 2+ parcels", ".1%"
    )


def backorder_chart(daily: pl.DataFrame) -> Any:
    """Units waiting for stock at the end of each day, one line per policy."""
    return _daily_line(
        daily, "backlog_units", "Backorders over time", "units waiting at end of day", ",d"
    )


def flow_map(flows: pl.DataFrame, *, policies: list[str] | None = None) -> Any:
    """Units from locations to demand areas, one small map per policy.

    Parameters
    ----------
    flows
        :meth:`Comparison.flows` (location and destination coordinates, units).
    policies
        Which policies to draw (default: all, at most four).

    Returns
    -------
    altair.ConcatChart
    """
    alt = _altair()
    names = policies or list(dict.fromkeys(flows["policy"].to_list()))[:4]
    located = flows.drop_nulls(["lat", "lon", "dest_lat", "dest_lon"])
    lon, lat = located["lon"], located["lat"]
    in_us = (
        located.height > 0
        and float(lat.min()) > 18  # type: ignore[arg-type]
        and float(lat.max()) < 72  # type: ignore[arg-type]
        and float(lon.max()) < -50  # type: ignore[arg-type]
    )
    projection = "albersUsa" if in_us else "mercator"
    charts = []
    for name in names:
        mine = located.filter(pl.col("policy") == name)
        top = mine.sort("units", descending=True).head(MAX_FLOWS)
        demand = mine.group_by("dest_lat", "dest_lon").agg(pl.col("units").sum())
        sources = mine.group_by("location_id", "kind", "lat", "lon").agg(pl.col("units").sum())
        demand_layer = (
            alt.Chart(alt.Data(values=_records(demand)))
            .mark_circle(color="#bbbbbb", opacity=0.5)
            .encode(
                longitude="dest_lon:Q",
                latitude="dest_lat:Q",
                size=alt.Size("units:Q", legend=None, scale=alt.Scale(range=[5, 200])),
            )
        )
        flow_layer = (
            alt.Chart(alt.Data(values=_records(top)))
            .mark_rule(opacity=0.35)
            .encode(
                longitude="lon:Q",
                latitude="lat:Q",
                longitude2="dest_lon:Q",
                latitude2="dest_lat:Q",
                strokeWidth=alt.StrokeWidth(
                    "units:Q", legend=None, scale=alt.Scale(range=[0.3, 4])
                ),
                color=alt.Color(
                    "kind:N",
                    scale=alt.Scale(
                        domain=["warehouse", "store", "dropship"],
                        range=["#4c78a8", "#f58518", "#54a24b"],
                    ),
                    legend=alt.Legend(orient="bottom", title="shipped from"),
                ),
            )
        )
        source_layer = (
            alt.Chart(alt.Data(values=_records(sources)))
            .mark_point(filled=True, opacity=0.9, shape="triangle-up")
            .encode(
                longitude="lon:Q",
                latitude="lat:Q",
                size=alt.Size("units:Q", legend=None, scale=alt.Scale(range=[20, 300])),
                color=alt.Color("kind:N"),
                tooltip=["location_id:N", "kind:N", "units:Q"],
            )
        )
        charts.append(
            (demand_layer + flow_layer + source_layer)
            .project(type=projection)
            .properties(width=380, height=250, title=f"Flows: {name}")
        )
    return alt.concat(*charts, columns=2).resolve_scale(color="shared")


def save_chart(chart: Any, path: str | Path, *, scale: float = 2.0) -> Path:
    """Save a chart as PNG or SVG (by the suffix) through vl-convert, without a browser."""
    _altair()
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - depends on the extras installed
        raise PlotDependencyError(
            "static charts need vl-convert: pip install 'allocator[plot]'"
        ) from exc
    target = Path(path)
    spec = chart.to_json()
    if target.suffix.lower() == ".svg":
        target.write_text(vlc.vegalite_to_svg(spec), encoding="utf-8")
    elif target.suffix.lower() == ".png":
        target.write_bytes(vlc.vegalite_to_png(spec, scale=scale))
    else:
        raise AllocatorError(f"unknown image format {target.suffix!r}; use .png or .svg")
    return target


def _table_html(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for value in row:
            if isinstance(value, float):
                text = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
            else:
                text = "" if value is None else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } td:first-child { text-align: left; }
.chart { margin: 1.5em 0; } .note { color: #666; font-size: 13px; }
"""


def write_report(
    comparison: Comparison, out_dir: str | Path, *, image_format: str = "png"
) -> list[Path]:
    """Write the four charts (``.png`` or ``.svg``) and ``report.html``.

    Parameters
    ----------
    comparison
        The comparison to draw.
    out_dir
        Folder for the files.
    image_format
        ``"png"`` or ``"svg"`` for the chart files (the report embeds SVG either way).

    Returns
    -------
    list of Path
        The files written.
    """
    alt = _altair()
    if image_format not in ("png", "svg"):
        raise AllocatorError(f"unknown image format {image_format!r}; use png or svg")
    import vl_convert as vlc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kpis = comparison.kpis
    daily = comparison.by_day()
    charts = {
        "cost_per_order": cost_chart(kpis),
        "split_rate": split_rate_chart(daily),
        "backorders": backorder_chart(daily),
        "flows": flow_map(comparison.flows()),
    }
    written = [save_chart(chart, out / f"{name}.{image_format}") for name, chart in charts.items()]
    first = next(iter(comparison.results.values()))
    cfg = first.config
    orders = int(kpis["orders"][0])
    sections = [
        f"<h1>Policy simulation: {html.escape(', '.join(comparison.results))}</h1>",
        f"<p class='note'>{orders:,} orders, mode <b>{html.escape(cfg.mode)}</b>, seed "
        f"{cfg.seed}, costs priced with the rule set "
        f"<b>{html.escape(cfg.reference_rules.name)}</b>. Generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by allocator "
        f"(altair {alt.__version__}).</p>",
        "<h2>KPIs</h2>",
        _table_html(kpis),
    ]
    for name, chart in charts.items():
        svg = vlc.vegalite_to_svg(chart.to_json())
        sections.append(f"<div class='chart' id='{name}'>{svg}</div>")
    sections += ["<h2>By channel</h2>", _table_html(comparison.by_channel())]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>allocator simulation</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    written.append(report)
    return written
