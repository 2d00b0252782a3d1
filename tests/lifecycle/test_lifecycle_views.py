"""Operations, service and finance views."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from lifecycle_support import Clock, order

from allocator.lifecycle import Lifecycle, State


def test_customer_orders_and_status(book: Lifecycle, clock: Clock) -> None:
    book.place(order("a", ("A", 1), customer_id="c1", channel="web"), key="a")
    clock.advance(minutes=5)
    book.place(order("b", ("B", 1), customer_id="c2", channel="store"), key="b")
    clock.advance(minutes=5)
    book.capture(order("c", ("A", 1), customer_id="c1", channel="marketplace"), key="c")
    assert [r.order_id for r in book.orders_of("c1")] == ["a", "c"]
    assert book.orders_of("nobody") == []
    assert book.status("c") is State.CREATED
    frame = book.orders_frame()
    assert frame.columns[:4] == ["order_id", "state", "customer_id", "channel"]
    assert frame.filter(pl.col("order_id") == "b")["channel"].item() == "store"


def test_backlog_and_workload(book: Lifecycle) -> None:
    book.place(order("a", ("A", 2), ("B", 1)), key="a")
    book.place(order("b", ("C", 3)), key="b")  # 2 from W2, 1 backordered
    book.release("a")
    backlog = book.backlog()
    w1 = backlog.filter((pl.col("location_id") == "W1") & (pl.col("sku") == "A"))
    assert w1.select("allocated", "released", "orders").row(0) == (2, 2, 1)
    waiting = backlog.filter(pl.col("location_id").is_null())
    assert waiting.select("sku", "backordered").rows() == [("C", 1)]
    load = book.workload()
    row = load.filter(pl.col("location_id") == "W1")
    assert row.select("units", "released", "shipments").row(0) == (3, 3, 1)
    assert row["units_utilisation"].item() is None  # no capacity limit at W1
    store = load.filter(pl.col("location_id") == "S1")
    assert store["capacity_units"].item() == 50


def test_backorder_ageing_and_waiting(book: Lifecycle, clock: Clock) -> None:
    book.place(order("old", ("C", 3)), key="a")
    clock.advance(days=2)
    book.place(order("new", ("A", 1)), key="b")
    clock.advance(hours=3)
    ageing = book.backorder_ageing()
    assert ageing.select("order_id", "qty", "bucket").rows() == [("old", 1, "1-3d")]
    late = book.waiting(timedelta(days=1))
    assert late["order_id"].to_list() == ["old"]
    assert late["waiting_hours"].item() == 51.0
    assert book.waiting(timedelta(hours=1))["order_id"].to_list() == ["old", "new"]
    book.ship("new")
    assert book.waiting(timedelta(hours=1))["order_id"].to_list() == ["old"]


def test_reconciliation(book: Lifecycle, clock: Clock) -> None:
    book.place(order("paid", ("A", 2, 5.0)), key="a")
    book.ship("paid")
    book.deliver("paid")
    book.return_items("paid", [("1", 1)], location="W1")
    book.place(order("unpriced", ("B", 1)), key="b")
    book.ship("unpriced")
    book.place(order("hanging", ("A", 1, 3.0)), key="c")
    clock.advance(days=10)
    report = book.reconciliation(older_than=timedelta(days=7))
    assert report.orders.select("order_id", "reasons").rows() == [
        ("unpriced", "a shipped or returned line has no unit_price")
    ]
    assert report.reservations.select("order_id", "sku", "qty").rows() == [("hanging", "A", 1)]
    assert not report.clean
    external = pl.DataFrame(
        {
            "order_id": ["paid", "paid", "hanging"],
            "kind": ["invoice", "credit", "invoice"],
            "amount": [10.0, 4.0, 3.0],
        }
    )
    report = book.reconciliation(external=external)
    rows = {r[0]: r[1] for r in report.orders.select("order_id", "reasons").rows()}
    assert rows["paid"] == "refunded differs from returned"
    assert rows["hanging"] == "invoiced differs from shipped"
    paid = report.orders.filter(pl.col("order_id") == "paid").row(0, named=True)
    assert (paid["shipped"], paid["invoiced"], paid["returned"], paid["refunded"]) == (
        10.0,
        10.0,
        5.0,
        4.0,
    )


def test_empty_views_keep_their_columns(book: Lifecycle) -> None:
    assert book.backlog().columns == [
        "location_id",
        "sku",
        "allocated",
        "released",
        "picked",
        "backordered",
        "orders",
    ]
    assert book.backorder_ageing().is_empty()
    assert book.waiting(timedelta(0)).is_empty()
    assert book.orders_frame().is_empty()
    assert book.reconciliation().clean
