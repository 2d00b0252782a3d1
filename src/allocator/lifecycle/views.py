"""Read models for operations, customer service and finance, as polars frames.

Every function here reads order records (and, for reconciliation, the ledger's holds) and
returns a frame with a fixed schema, also when empty, so dashboards and notebooks can rely on the
columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from allocator.lifecycle.machine import TERMINAL, State
from allocator.lifecycle.record import Bucket, OrderRecord

if TYPE_CHECKING:
    from allocator.inventory import Hold
    from allocator.realtime import SourcingIndex

__all__ = [
    "DONE",
    "Reconciliation",
    "backlog",
    "backorder_ageing",
    "history_frame",
    "orders_frame",
    "reconcile",
    "waiting",
    "workload",
]

#: States in which an order needs nothing more from operations.
DONE: frozenset[State] = TERMINAL | {
    State.SHIPPED,
    State.DELIVERED,
    State.RETURNED,
    State.EXCHANGED,
}

_TIME = pl.Datetime("us", "UTC")


def history_frame(record: OrderRecord) -> pl.DataFrame:
    """An order's history: one row per event."""
    return pl.DataFrame(
        {
            "seq": [e.seq for e in record.history],
            "event": [e.event.value for e in record.history],
            "at": [e.at for e in record.history],
            "state": [e.state.value for e in record.history],
            "key": [e.key for e in record.history],
            "actor": [e.actor for e in record.history],
            "reason": [e.reason for e in record.history],
            "changes": [
                "; ".join(
                    f"{c.line_id} {c.bucket.value} {c.qty:+d}"
                    + (f" @{c.location_id}" if c.location_id else "")
                    for c in e.changes
                )
                for e in record.history
            ],
        },
        schema={
            "seq": pl.Int64,
            "event": pl.String,
            "at": _TIME,
            "state": pl.String,
            "key": pl.String,
            "actor": pl.String,
            "reason": pl.String,
            "changes": pl.String,
        },
    )


_ORDER_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "order_id": pl.String,
    "state": pl.String,
    "customer_id": pl.String,
    "channel": pl.String,
    "priority": pl.Int64,
    "captured": _TIME,
    "since": _TIME,
    "ordered": pl.Int64,
    "cancelled": pl.Int64,
    "allocated": pl.Int64,
    "backordered": pl.Int64,
    "shipped": pl.Int64,
    "delivered": pl.Int64,
    "returned": pl.Int64,
}


def orders_frame(records: Iterable[OrderRecord]) -> pl.DataFrame:
    """One row per order: state, who, where from, and units per bucket."""
    rows = []
    for r in records:
        q = r.quantities()
        rows.append(
            {
                "order_id": r.order_id,
                "state": r.state.value,
                "customer_id": r.customer_id,
                "channel": r.order.channel,
                "priority": r.order.priority,
                "captured": r.created_at,
                "since": r.since,
                "ordered": q.ordered,
                "cancelled": q.cancelled,
                "allocated": q.allocated,
                "backordered": q.backordered,
                "shipped": q.shipped,
                "delivered": q.delivered,
                "returned": q.returned,
            }
        )
    return pl.DataFrame(rows, schema=_ORDER_SCHEMA)


@dataclass(slots=True)
class _Work:
    allocated: int = 0
    released: int = 0
    picked: int = 0
    backordered: int = 0
    orders: set[str] | None = None

    def add(self, order_id: str) -> None:
        if self.orders is None:
            self.orders = set()
        self.orders.add(order_id)


def backlog(records: Iterable[OrderRecord]) -> pl.DataFrame:
    """Open work per (location, SKU): reserved, released and picked units, and order counts.

    Backordered units have no location yet: they are listed with ``location_id`` null.
    """
    acc: dict[tuple[str | None, str], _Work] = {}
    for r in records:
        if r.state in TERMINAL:
            continue
        for line in r.lines:
            for loc, units in line.allocated.items():
                work = acc.setdefault((loc, line.sku), _Work())
                work.allocated += units
                work.released += line.released.get(loc, 0)
                work.picked += line.picked.get(loc, 0)
                work.add(r.order_id)
            if line.backordered:
                work = acc.setdefault((None, line.sku), _Work())
                work.backordered += line.backordered
                work.add(r.order_id)
    keys = sorted(acc, key=lambda k: (k[0] is None, k[0] or "", k[1]))
    return pl.DataFrame(
        {
            "location_id": [k[0] for k in keys],
            "sku": [k[1] for k in keys],
            "allocated": [acc[k].allocated for k in keys],
            "released": [acc[k].released for k in keys],
            "picked": [acc[k].picked for k in keys],
            "backordered": [acc[k].backordered for k in keys],
            "orders": [len(acc[k].orders or ()) for k in keys],
        },
        schema={
            "location_id": pl.String,
            "sku": pl.String,
            "allocated": pl.Int64,
            "released": pl.Int64,
            "picked": pl.Int64,
            "backordered": pl.Int64,
            "orders": pl.Int64,
        },
    )


_AGE_BUCKETS = ((1.0, "<1d"), (3.0, "1-3d"), (7.0, "3-7d"), (float("inf"), "7d+"))


def _age_bucket(days: float) -> str:
    for limit, name in _AGE_BUCKETS:
        if days < limit:
            return name
    return _AGE_BUCKETS[-1][1]  # pragma: no cover


def backorder_ageing(records: Iterable[OrderRecord], now: datetime) -> pl.DataFrame:
    """Backordered lines: since when they wait (the last event that backordered units)."""
    rows = []
    for r in records:
        if r.state in TERMINAL:
            continue
        for line in r.lines:
            if not line.backordered:
                continue
            since = r.created_at
            for entry in r.history:
                if any(
                    c.line_id == line.line_id and c.bucket is Bucket.BACKORDERED and c.qty > 0
                    for c in entry.changes
                ):
                    since = entry.at
            days = (now - since) / timedelta(days=1)
            rows.append(
                {
                    "order_id": r.order_id,
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "qty": line.backordered,
                    "priority": r.order.priority,
                    "since": since,
                    "age_days": days,
                    "bucket": _age_bucket(days),
                }
            )
    rows.sort(key=lambda row: (-float(str(row["age_days"])), str(row["order_id"])))
    return pl.DataFrame(
        rows,
        schema={
            "order_id": pl.String,
            "line_id": pl.String,
            "sku": pl.String,
            "qty": pl.Int64,
            "priority": pl.Int64,
            "since": _TIME,
            "age_days": pl.Float64,
            "bucket": pl.String,
        },
    )


def waiting(records: Iterable[OrderRecord], threshold: timedelta, now: datetime) -> pl.DataFrame:
    """Orders still needing work whose state has not changed for longer than ``threshold``."""
    frame = orders_frame(r for r in records if r.state not in DONE and now - r.since > threshold)
    hours = [(now - since) / timedelta(hours=1) for since in frame["since"].to_list()]
    return frame.with_columns(pl.Series("waiting_hours", hours, dtype=pl.Float64)).sort(
        ["waiting_hours", "order_id"], descending=[True, False]
    )


def workload(records: Iterable[OrderRecord], index: SourcingIndex) -> pl.DataFrame:
    """Per location: open units and shipments (orders) against its capacity.

    ``units`` are reserved and not yet shipped; ``shipments`` count orders with such units.
    Utilisation is null where the location has no capacity limit.
    """
    n = index.n_locations
    units = np.zeros(n, np.int64)
    released = np.zeros(n, np.int64)
    shipments = np.zeros(n, np.int64)
    for r in records:
        if r.state in TERMINAL:
            continue
        used: set[int] = set()
        for line in r.lines:
            for loc, qty in line.allocated.items():
                pos = index.location_index.get(loc)
                if pos is None:
                    continue
                units[pos] += qty
                released[pos] += line.released.get(loc, 0)
                used.add(pos)
        for pos in used:
            shipments[pos] += 1
    cap_u = [None if not np.isfinite(v) else int(v) for v in index.capacity_units]
    cap_s = [None if not np.isfinite(v) else int(v) for v in index.capacity_shipments]

    def ratio(used: np.ndarray, caps: Sequence[int | None]) -> list[float | None]:
        return [
            None if cap is None else (float(u) / cap if cap else float("inf"))
            for u, cap in zip(used.tolist(), caps, strict=True)
        ]

    return pl.DataFrame(
        {
            "location_id": list(index.location_ids),
            "units": units,
            "released": released,
            "shipments": shipments,
            "capacity_units": cap_u,
            "capacity_shipments": cap_s,
            "units_utilisation": ratio(units, cap_u),
            "shipments_utilisation": ratio(shipments, cap_s),
        },
        schema={
            "location_id": pl.String,
            "units": pl.Int64,
            "released": pl.Int64,
            "shipments": pl.Int64,
            "capacity_units": pl.Int64,
            "capacity_shipments": pl.Int64,
            "units_utilisation": pl.Float64,
            "shipments_utilisation": pl.Float64,
        },
    )


@dataclass(frozen=True)
class Reconciliation:
    """What finance should look at.

    Attributes
    ----------
    orders
        Orders whose ordered, shipped, invoiced, returned and refunded amounts do not tie out,
        with the reasons.
    reservations
        Reservations older than the threshold from which nothing was shipped and that were
        never released.
    """

    orders: pl.DataFrame
    reservations: pl.DataFrame

    @property
    def clean(self) -> bool:
        """Nothing to look at."""
        return self.orders.is_empty() and self.reservations.is_empty()


_CENT = 0.005


def reconcile(
    records: Sequence[OrderRecord],
    holds: Iterable[Hold],
    now: datetime,
    older_than: timedelta,
    external: pl.DataFrame | None = None,
) -> Reconciliation:
    """Tie out each order's amounts, and list reservations left hanging.

    Per order (lines with a ``unit_price`` only): ordered = live units x price, shipped, returned
    likewise; invoiced and refunded come from the order's invoice and credit records, or from
    ``external`` (``order_id``, ``kind``, ``amount``) when given. An order is listed when
    invoiced differs from shipped, refunded from returned, more was shipped than ordered or more
    returned than shipped, a shipped or returned line has no price, or a finished order did not
    ship what it kept (ordered differs from shipped).
    """
    billed: dict[tuple[str, str], float] = {}
    if external is not None:
        for order_id, kind, amount in external.select("order_id", "kind", "amount").iter_rows():
            key = (str(order_id), str(kind))
            billed[key] = billed.get(key, 0.0) + float(amount or 0.0)
    rows = []
    for r in records:
        ordered = shipped = returned = 0.0
        unpriced = False
        for line in r.lines:
            moved = line.shipped_units or line.returned
            if line.unit_price is None:
                unpriced = unpriced or bool(moved)
                continue
            ordered += line.live * line.unit_price
            shipped += line.shipped_units * line.unit_price
            returned += line.returned * line.unit_price
        if external is None:
            invoiced = sum(f.amount or 0.0 for f in r.finance if f.kind == "invoice")
            refunded = sum(f.amount or 0.0 for f in r.finance if f.kind == "credit")
        else:
            invoiced = billed.get((r.order_id, "invoice"), 0.0)
            refunded = billed.get((r.order_id, "credit"), 0.0)
        reasons = []
        if abs(invoiced - shipped) > _CENT:
            reasons.append("invoiced differs from shipped")
        if abs(refunded - returned) > _CENT:
            reasons.append("refunded differs from returned")
        if shipped > ordered + _CENT:
            reasons.append("shipped more than ordered")
        if returned > shipped + _CENT:
            reasons.append("returned more than shipped")
        if unpriced:
            reasons.append("a shipped or returned line has no unit_price")
        finished = r.state in DONE and r.state is not State.REJECTED
        if finished and abs(ordered - shipped) > _CENT:
            reasons.append("finished but shipped differs from ordered")
        if reasons:
            rows.append(
                {
                    "order_id": r.order_id,
                    "state": r.state.value,
                    "ordered": ordered,
                    "shipped": shipped,
                    "invoiced": invoiced,
                    "returned": returned,
                    "refunded": refunded,
                    "reasons": "; ".join(reasons),
                }
            )
    orders = pl.DataFrame(
        rows,
        schema={
            "order_id": pl.String,
            "state": pl.String,
            "ordered": pl.Float64,
            "shipped": pl.Float64,
            "invoiced": pl.Float64,
            "returned": pl.Float64,
            "refunded": pl.Float64,
            "reasons": pl.String,
        },
    )
    stale: list[dict[str, object]] = []
    for hold in holds:
        if hold.status.value != "open" or any(line.shipped for line in hold.lines):
            continue
        if now - hold.created <= older_than:
            continue
        stale.extend(
            {
                "order_id": hold.order_id,
                "hold_id": hold.hold_id,
                "location_id": held.location_id,
                "sku": held.sku,
                "qty": held.remaining,
                "created": hold.created,
                "age_days": (now - hold.created) / timedelta(days=1),
            }
            for held in hold.lines
        )
    reservations = pl.DataFrame(
        stale,
        schema={
            "order_id": pl.String,
            "hold_id": pl.String,
            "location_id": pl.String,
            "sku": pl.String,
            "qty": pl.Int64,
            "created": _TIME,
            "age_days": pl.Float64,
        },
    )
    return Reconciliation(orders=orders, reservations=reservations)
