"""Order lifecycle (issue 6): the cost of one transition, and of whole operations.

* ``apply``: one event on a 3-line order (table lookup, copy of the touched lines, invariants,
  guards, history entry, invoice lines) — the state machine alone, aim well under 100 µs;
* ``next_state``: the table lookup and guards only;
* JSON round trip of an order with a 6-event history;
* whole operations over an in-memory ledger: place (capture + source + reserve), release, ship,
  deliver; and the same on SQLite (ledger and order store).

Run: ``pytest benchmarks/bench_lifecycle.py --benchmark-columns=min,median,max``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from allocator import Network, Order, OrderLine
from allocator.inventory import open_ledger
from allocator.lifecycle import (
    Bucket,
    Change,
    Event,
    Lifecycle,
    OrderRecord,
    Quantities,
    State,
    apply,
    capture_record,
    next_state,
)

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _order(order_id: str = "o1") -> Order:
    return Order(
        order_id=order_id,
        lat=40.74,
        lon=-73.99,
        lines=(
            OrderLine(sku="A", qty=2, unit_price=9.5),
            OrderLine(sku="B", qty=1, unit_price=4.0),
            OrderLine(sku="C", qty=3, unit_price=1.25),
        ),
    )


def _allocated() -> OrderRecord:
    record = capture_record(_order(), AT, key="c")
    return apply(
        record,
        Event.ALLOCATE,
        [
            Change("1", Bucket.ALLOCATED, 2, "W1"),
            Change("2", Bucket.ALLOCATED, 1, "W1"),
            Change("3", Bucket.ALLOCATED, 3, "W2"),
        ],
        at=AT,
        key="a",
    )


def test_transition_release(benchmark: Any) -> None:
    record = _allocated()
    changes = [
        Change("1", Bucket.RELEASED, 2, "W1"),
        Change("2", Bucket.RELEASED, 1, "W1"),
        Change("3", Bucket.RELEASED, 3, "W2"),
    ]
    result = benchmark(apply, record, Event.RELEASE, changes, at=AT, key="r")
    assert result.state is State.RELEASED


def test_transition_ship_with_invoices(benchmark: Any) -> None:
    record = _allocated()
    changes = [
        Change("1", Bucket.ALLOCATED, -2, "W1"),
        Change("1", Bucket.SHIPPED, 2, "W1"),
        Change("2", Bucket.ALLOCATED, -1, "W1"),
        Change("2", Bucket.SHIPPED, 1, "W1"),
    ]
    result = benchmark(apply, record, Event.SHIP, changes, at=AT, key="s")
    assert result.state is State.PARTIALLY_SHIPPED
    assert len(result.finance) == 2


def test_next_state(benchmark: Any) -> None:
    after = Quantities(ordered=6, allocated=4, backordered=2)
    assert benchmark(next_state, State.CREATED, Event.ALLOCATE, after) is (
        State.PARTIALLY_ALLOCATED
    )


def test_json_round_trip(benchmark: Any) -> None:
    record = _allocated()
    for event, changes in (
        (Event.RELEASE, [Change("1", Bucket.RELEASED, 2, "W1")]),
        (
            Event.RELEASE,
            [Change("2", Bucket.RELEASED, 1, "W1"), Change("3", Bucket.RELEASED, 3, "W2")],
        ),
        (
            Event.SHIP,
            [
                Change("1", Bucket.ALLOCATED, -2, "W1"),
                Change("1", Bucket.RELEASED, -2, "W1"),
                Change("1", Bucket.SHIPPED, 2, "W1"),
            ],
        ),
        (
            Event.CANCEL,
            [
                Change("2", Bucket.ALLOCATED, -1, "W1"),
                Change("2", Bucket.RELEASED, -1, "W1"),
                Change("2", Bucket.CANCELLED, 1),
            ],
        ),
    ):
        record = apply(record, event, changes, at=AT)
    result = benchmark(lambda: OrderRecord.from_json(record.to_json()))
    assert result == record


def _network() -> Network:
    locations = pl.DataFrame(
        {
            "location_id": ["W1", "W2", "S1"],
            "lat": [40.71, 34.05, 40.76],
            "lon": [-74.0, -118.24, -73.98],
            "can_pickup": [False, False, True],
        }
    )
    stock = pl.DataFrame({"location_id": ["W1"], "sku": ["A"], "on_hand": [1]})
    return Network.from_frames(locations, stock)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_operations_place_release_ship_deliver(benchmark: Any, store: str, tmp_path: Path) -> None:
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"
    orders = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'orders.db'}"
    with open_ledger(url) as ledger:
        for n, (loc, sku) in enumerate(itertools.product(["W1", "W2", "S1"], "ABC")):
            ledger.receive(loc, sku, 1_000_000, key=f"init-{n}")
        book = Lifecycle(ledger, _network(), store=orders)
        counter = itertools.count()

        def life() -> State:
            order_id = f"o{next(counter)}"
            book.place(_order(order_id), key=order_id)
            book.release(order_id)
            book.ship(order_id)
            return book.deliver(order_id).state

        assert benchmark.pedantic(life, rounds=100, warmup_rounds=3) is State.DELIVERED
        assert ledger.verify() == []
        book.store.close()
