"""KPIs of a replay as polars frames: per order, per parcel, and aggregated.

Every money figure is priced with the reference rules (:mod:`._pricing`), so policies with
different rule sets are compared on one scale:

* ``shipping_cost``: parcels and units shipped (rate card or explicit costs, cross-border,
  lateness, split penalty), including later shipments that fill backorders;
* ``penalty_cost``: the backorder penalty for each unit that could not be sourced when the order
  was decided, and the rejection penalty for each rejected order;
* ``cost`` = shipping + penalty: the objective the optimiser minimises, per order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from allocator.simulate._engine import ReplayRecord
from allocator.simulate._history import US_PER_DAY
from allocator.simulate._pricing import Pricer

__all__ = [
    "KPI_COLUMNS",
    "aggregate",
    "by_location",
    "daily_backlog",
    "order_frame",
    "overall",
    "shipment_frame",
    "zone_mix",
]

#: Columns of the one-row summary of a replay (``kpis.csv``), in order, with their meaning.
KPI_COLUMNS: dict[str, str] = {
    "policy": "policy name",
    "mode": "realtime, batch, nightly or offline",
    "orders": "orders in the history",
    "units": "units ordered",
    "cost_per_order": "shipping + penalty cost per order (the optimiser's objective)",
    "shipping_cost_per_order": "parcel and unit cost per order, later shipments included",
    "penalty_cost_per_order": "backorder and rejection penalties per order",
    "shipments_per_order": "parcels per order that shipped anything",
    "split_rate": "share of shipped orders that left in more than one parcel",
    "fill_rate_at_order": "share of units sourced when their order was decided",
    "units_backordered": "units that waited for stock when their order was decided",
    "backorder_days_per_unit": "mean days a backordered unit waited (open ones until the end)",
    "units_unfilled": "backordered units still waiting at the end",
    "orders_rejected": "orders rejected (no backorders allowed and not enough stock)",
    "orders_cancelled": "orders cancelled",
    "units_returned": "units returned and restocked",
    "km_per_unit": "mean distance a shipped unit travelled",
    "local_share": "share of parcels in zone 1 (or picked up at the store)",
    "utilisation_units": "highest units-capacity utilisation of any capacitated location",
    "utilisation_shipments": "highest shipments-capacity utilisation of any capacitated location",
    "cost_per_order_vs_best": "cost per order minus the best policy's (compare only)",
    "cost_per_order_vs_best_pct": "the same, in percent of the best (compare only)",
    "seconds": "wall time of the replay",
}


def _day(micros: np.ndarray[Any, Any]) -> pl.Series:
    return pl.Series(micros, dtype=pl.Int64).cast(pl.Datetime("us")).dt.date()


def shipment_frame(record: ReplayRecord, pricer: Pricer) -> pl.DataFrame:
    """One row per parcel: an order's units leaving one location at one time."""
    h = record.history
    raw = pl.DataFrame(
        {
            "order": record.ship_order,
            "loc": record.ship_location,
            "at": record.ship_time,
            "units": record.ship_units,
        },
        schema={"order": pl.Int64, "loc": pl.Int64, "at": pl.Int64, "units": pl.Int64},
    )
    parcels = raw.group_by(["order", "loc", "at"], maintain_order=True).agg(pl.col("units").sum())
    order = parcels["order"].to_numpy().astype(np.int64)
    loc = parcels["loc"].to_numpy().astype(np.int64)
    units = parcels["units"].to_numpy().astype(np.int64)
    price = pricer.pairs(order, loc)
    unit_cost = price.unit * units
    return pl.DataFrame(
        {
            "order_id": pl.Series(h.order_ids.astype(str)).gather(order),
            "location_id": pl.Series(h.location_ids.astype(str)).gather(loc),
            "shipped_at": parcels["at"].cast(pl.Datetime("us")),
            "units": units,
            "distance_km": price.distance_km,
            "zone": price.zone,
            "parcel_cost": price.parcel,
            "unit_cost": unit_cost,
            "cost": price.parcel + unit_cost,
            "order": order,
            "loc": loc,
        },
        schema_overrides={"order_id": pl.String, "location_id": pl.String},
    )


def order_frame(record: ReplayRecord, pricer: Pricer, shipments: pl.DataFrame) -> pl.DataFrame:
    """One row per order: what happened to it and what it cost."""
    h = record.history
    n = h.n_orders
    lo = h.line_order

    def per_order(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.bincount(lo, weights=values, minlength=n)

    units = per_order(h.line_qty).astype(np.int64)
    filled = per_order(record.line_first_filled).astype(np.int64)
    backordered = per_order(record.line_first_backordered).astype(np.int64)
    order = shipments["order"].to_numpy().astype(np.int64)
    parcels = np.bincount(order, minlength=n).astype(np.int64)
    shipped = np.bincount(order, weights=shipments["units"].to_numpy(), minlength=n).astype(
        np.int64
    )
    shipping = np.bincount(order, weights=shipments["cost"].to_numpy(), minlength=n)
    km_units = np.bincount(
        order,
        weights=shipments["distance_km"].fill_nan(0.0).to_numpy() * shipments["units"].to_numpy(),
        minlength=n,
    )
    rejected = record.order_rejected
    penalty = backordered * pricer.order_backorder + np.where(
        rejected, units * pricer.order_reject_per_unit, 0.0
    )
    created = h.order_created
    return pl.DataFrame(
        {
            "order_id": h.order_ids.astype(str),
            "created_at": pl.Series(created, dtype=pl.Int64).cast(pl.Datetime("us")),
            "day": _day(created),
            "channel": h.order_channel.astype(str),
            "priority": h.order_priority,
            "lines": np.diff(h.order_line_start),
            "units": units,
            "units_filled_at_order": filled,
            "units_backordered": backordered,
            "units_filled_later": per_order(record.line_filled_later).astype(np.int64),
            "units_unfilled": per_order(record.line_unfilled).astype(np.int64),
            "backorder_days": per_order(record.line_backorder_days),
            "rejected": rejected,
            "cancelled": record.order_cancelled,
            "decided": record.order_decided_at >= 0,
            "shipments": parcels,
            "units_shipped": shipped,
            "units_returned": record.order_returned_units,
            "shipping_cost": shipping,
            "penalty_cost": penalty,
            "cost": shipping + penalty,
            "km_per_unit": np.divide(km_units, shipped, out=np.full(n, np.nan), where=shipped > 0),
        }
    )


def _metrics(frame: pl.DataFrame | pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """The per-order KPIs aggregated over groups (``by`` empty: one row)."""
    shipped = pl.col("shipments") > 0
    exprs = [
        pl.len().alias("orders"),
        pl.col("units").sum().alias("units"),
        pl.col("cost").mean().alias("cost_per_order"),
        pl.col("shipping_cost").mean().alias("shipping_cost_per_order"),
        pl.col("penalty_cost").mean().alias("penalty_cost_per_order"),
        (pl.col("shipments").sum() / shipped.sum()).alias("shipments_per_order"),
        ((pl.col("shipments") > 1).sum() / shipped.sum()).alias("split_rate"),
        (
            pl.col("units_filled_at_order").filter(pl.col("decided")).sum()
            / pl.col("units").filter(pl.col("decided")).sum()
        ).alias("fill_rate_at_order"),
        pl.col("units_backordered").sum().alias("units_backordered"),
        (pl.col("backorder_days").sum() / pl.col("units_backordered").sum()).alias(
            "backorder_days_per_unit"
        ),
        pl.col("units_unfilled").sum().alias("units_unfilled"),
        pl.col("rejected").sum().alias("orders_rejected"),
        pl.col("cancelled").sum().alias("orders_cancelled"),
        pl.col("units_returned").sum().alias("units_returned"),
    ]
    lazy = frame.lazy()
    out = lazy.group_by(by, maintain_order=True).agg(exprs) if by else lazy.select(exprs)
    ratios = ("shipments_per_order", "split_rate", "fill_rate_at_order", "backorder_days_per_unit")
    return out.collect().with_columns(pl.col(c).fill_nan(None) for c in ratios)


def aggregate(orders: pl.DataFrame, by: str) -> pl.DataFrame:
    """KPIs per value of an order column (``"day"``, ``"channel"``, ``"priority"``...)."""
    return _metrics(orders, [by]).sort(by)


def daily_backlog(record: ReplayRecord) -> pl.DataFrame:
    """Units waiting for stock at the end of each day of the replay."""
    h = record.history
    days = np.arange(h.t_start, h.t_end + 1, US_PER_DAY, dtype=np.int64)[1:]
    order = np.argsort(record.backlog_time, kind="stable")
    times = record.backlog_time[order]
    level = np.cumsum(record.backlog_delta[order])
    idx = np.searchsorted(times, days, side="left") - 1
    at_end = np.where(idx >= 0, level[np.maximum(idx, 0)] if len(level) else 0, 0)
    return pl.DataFrame(
        {"day": _day(days - US_PER_DAY), "backlog_units": np.asarray(at_end, dtype=np.int64)}
    )


def by_location(record: ReplayRecord, shipments: pl.DataFrame) -> pl.DataFrame:
    """Parcels, units, cost and capacity utilisation per location."""
    h = record.history
    n = h.n_locations
    loc = shipments["loc"].to_numpy().astype(np.int64)
    units = np.bincount(loc, weights=shipments["units"].to_numpy(), minlength=n)
    locs = h.network.locations
    cap_u = locs["capacity_units"].cast(pl.Float64).to_numpy()
    cap_s = locs["capacity_shipments"].cast(pl.Float64).to_numpy()
    total = max(1.0, float(units.sum()))
    return pl.DataFrame(
        {
            "location_id": h.location_ids.astype(str),
            "kind": locs["kind"],
            "shipments": np.bincount(loc, minlength=n).astype(np.int64),
            "units": units.astype(np.int64),
            "unit_share": units / total,
            "shipping_cost": np.bincount(loc, weights=shipments["cost"].to_numpy(), minlength=n),
            "km_per_unit": np.divide(
                np.bincount(
                    loc,
                    weights=shipments["distance_km"].fill_nan(0.0).to_numpy()
                    * shipments["units"].to_numpy(),
                    minlength=n,
                ),
                units,
                out=np.full(n, np.nan),
                where=units > 0,
            ),
            "capacity_units": locs["capacity_units"],
            "capacity_shipments": locs["capacity_shipments"],
            "utilisation_units": record.used_units / cap_u,
            "utilisation_shipments": record.used_shipments / cap_s,
        }
    ).with_columns(pl.col("utilisation_units", "utilisation_shipments").fill_nan(None))


def overall(
    record: ReplayRecord,
    orders: pl.DataFrame,
    shipments: pl.DataFrame,
    locations: pl.DataFrame,
) -> pl.DataFrame:
    """The one-row summary of a replay (columns of :data:`KPI_COLUMNS`)."""
    row = _metrics(orders, [])
    units_shipped = float(shipments["units"].sum())
    km = float((shipments["distance_km"].fill_nan(0.0) * shipments["units"]).sum())
    local = float((shipments["zone"] <= 1).sum()) / max(1, shipments.height)
    return row.select(
        pl.lit(record.policy).alias("policy"),
        pl.lit(record.config.mode).alias("mode"),
        pl.all(),
        pl.lit(km / units_shipped if units_shipped else None, dtype=pl.Float64).alias(
            "km_per_unit"
        ),
        pl.lit(local if shipments.height else None, dtype=pl.Float64).alias("local_share"),
        pl.lit(locations["utilisation_units"].max(), dtype=pl.Float64).alias("utilisation_units"),
        pl.lit(locations["utilisation_shipments"].max(), dtype=pl.Float64).alias(
            "utilisation_shipments"
        ),
        pl.lit(round(record.seconds, 3)).alias("seconds"),
    )


def zone_mix(shipments: pl.DataFrame) -> pl.DataFrame:
    """Parcels and units by zone (0: picked up at the order's store)."""
    total = max(1, shipments.height)
    return (
        shipments.group_by("zone")
        .agg(pl.len().alias("shipments"), pl.col("units").sum(), pl.col("distance_km").mean())
        .with_columns((pl.col("shipments") / total).alias("share"))
        .sort("zone")
    )
