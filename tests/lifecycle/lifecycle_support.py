"""Shared builders of the lifecycle tests: a small network, a stocked ledger, a fake clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from allocator import Network, Order, OrderLine
from allocator.inventory import Ledger
from allocator.lifecycle import TERMINAL, Lifecycle, OrderRecord

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

#: Three locations around New York and one in Los Angeles.
LOCATIONS = pl.DataFrame(
    {
        "location_id": ["W1", "S1", "S2", "W2"],
        "kind": ["warehouse", "store", "store", "warehouse"],
        "lat": [40.71, 40.76, 40.65, 34.05],
        "lon": [-74.00, -73.98, -73.95, -118.24],
        "country": ["US", "US", "US", "US"],
        "can_pickup": [False, True, True, False],
        "capacity_units": [None, 50, 50, None],
    },
    schema_overrides={"capacity_units": pl.Int64},
)

#: Initial stock per (location, sku).
STOCK = {
    ("W1", "A"): 4,
    ("W1", "B"): 2,
    ("S1", "A"): 2,
    ("S2", "A"): 3,
    ("S2", "B"): 1,
    ("W2", "A"): 6,
    ("W2", "B"): 5,
    ("W2", "C"): 2,
}


@dataclass
class Clock:
    """A clock that moves only when told to."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def network() -> Network:
    """The test network (its own stock table is not used: stock lives in the ledger)."""
    stock = pl.DataFrame(
        {
            "location_id": [loc for loc, _ in STOCK],
            "sku": [sku for _, sku in STOCK],
            "on_hand": list(STOCK.values()),
        }
    )
    return Network.from_frames(LOCATIONS, stock)


def stock_ledger(ledger: Ledger, stock: dict[tuple[str, str], int] | None = None) -> Ledger:
    """Receive the initial stock (every location also gets a zero-stock SKU 'Z' so it is known)."""
    for (loc, sku), qty in (stock or STOCK).items():
        ledger.receive(loc, sku, qty, key=f"init/{loc}/{sku}")
    return ledger


def order(
    order_id: str,
    *lines: tuple[str, int] | tuple[str, int, float],
    **head: object,
) -> Order:
    """An order shipping to Manhattan, with ``(sku, qty[, unit_price])`` lines."""
    built = tuple(
        OrderLine(sku=line[0], qty=line[1], unit_price=line[2] if len(line) > 2 else None)
        for line in lines
    )
    values: dict[str, object] = {"lat": 40.74, "lon": -73.99, "country": "US"}
    values.update(head)
    return Order(order_id=order_id, lines=built, **values)  # type: ignore[arg-type]


def reserved_by_ledger(ledger: Ledger) -> dict[tuple[str, str], int]:
    """Reserved units per (location, sku), as the ledger's totals say."""
    snap = ledger.snapshot()
    return {
        (loc, sku): reserved
        for loc, sku, reserved in snap.select("location_id", "sku", "reserved").iter_rows()
        if reserved
    }


def allocated_by_orders(records: Iterable[OrderRecord]) -> dict[tuple[str, str], int]:
    """Allocated-but-unshipped units of open orders per (location, sku)."""
    out: dict[tuple[str, str], int] = {}
    for record in records:
        if record.state in TERMINAL:
            continue
        for pair, units in record.allocated_positions().items():
            out[pair] = out.get(pair, 0) + units
    return out


def check_consistent(book: Lifecycle) -> None:
    """The ledger is clean and holds exactly what the open orders have allocated."""
    assert book.ledger.verify() == []
    assert reserved_by_ledger(book.ledger) == allocated_by_orders(book.records())
