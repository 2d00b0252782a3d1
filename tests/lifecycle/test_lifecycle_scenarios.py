"""Scenario tests: each lifecycle operation, with the ledger checked after every step."""

from __future__ import annotations

import pytest
from lifecycle_support import Clock, check_consistent, order

from allocator import OrderLine
from allocator.errors import (
    IdempotencyConflict,
    InputError,
    InsufficientStock,
    InvalidTransition,
)
from allocator.lifecycle import (
    Lifecycle,
    OrderRecord,
    OrderTransitionError,
    StaleOrderError,
    State,
    replay,
)


def _alloc(record: OrderRecord) -> dict[str, dict[str, int]]:
    return {line.line_id: dict(line.allocated) for line in record.lines if line.allocated}


def test_capture_and_allocate(book: Lifecycle) -> None:
    o = order("o1", ("A", 2), ("B", 1), channel="web", customer_id="c1")
    record = book.capture(o, key="web-1")
    assert record.state is State.CREATED
    assert book.capture(o, key="web-1") == record  # a replay changes nothing
    with pytest.raises(IdempotencyConflict):
        book.capture(order("o1", ("A", 1)), key="web-1")
    record = book.allocate("o1", key="alloc-1")
    assert record.state is State.ALLOCATED
    assert _alloc(record) == {"1": {"W1": 2}, "2": {"W1": 1}}
    assert book.allocate("o1", key="alloc-1") == record
    check_consistent(book)
    assert [e.event.value for e in record.history] == ["capture", "allocate"]


def test_short_stock_backorders_then_fills_on_receipt(book: Lifecycle, clock: Clock) -> None:
    record = book.place(order("o1", ("C", 5)), key="p1")
    assert record.state is State.PARTIALLY_ALLOCATED
    assert record.lines[0].backordered == 3
    assert _alloc(record) == {"1": {"W2": 2}}
    check_consistent(book)
    clock.advance(hours=5)
    served = book.receive("W1", "C", 10, key="po-1")
    assert [r.order_id for r in served] == ["o1"]
    record = book.get("o1")
    assert record.state is State.ALLOCATED
    assert record.lines[0].backordered == 0
    assert sum(record.lines[0].allocated.values()) == 5
    check_consistent(book)


def test_backorders_filled_by_priority_then_age(book: Lifecycle, clock: Clock) -> None:
    book.ledger.receive("W1", "D", 1, key="d0")
    book.place(order("first", ("D", 1)), key="a")  # takes the only unit
    book.place(order("old", ("D", 1)), key="b")
    clock.advance(minutes=1)
    book.place(order("new-urgent", ("D", 1), priority=2), key="c")
    clock.advance(minutes=1)
    book.place(order("newer", ("D", 1)), key="d")
    assert book.get("old").state is State.BACKORDERED
    served = book.receive("W1", "D", 2, key="po-d")
    assert [r.order_id for r in served] == ["new-urgent", "old"]
    assert book.get("newer").state is State.BACKORDERED
    check_consistent(book)


def test_no_backorder_order_is_rejected_and_rejected_absorbs(book: Lifecycle) -> None:
    record = book.place(order("o1", ("C", 9), allow_backorder=False), key="p")
    assert record.state is State.REJECTED
    assert book.ledger.holds("o1") == ()
    for attempt in (
        lambda: book.allocate("o1"),
        lambda: book.cancel("o1"),
        lambda: book.ship("o1"),
        lambda: book.release("o1"),
    ):
        with pytest.raises(InvalidTransition):
            attempt()
    assert book.get("o1") == record
    check_consistent(book)


def test_ship_complete_waits_whole(book: Lifecycle) -> None:
    # A and C are together only at W2, which has 2 C: 3 C cannot ship in one parcel.
    record = book.place(order("o1", ("A", 1), ("C", 3), ship_complete=True), key="p")
    assert record.state is State.BACKORDERED
    assert [line.backordered for line in record.lines] == [1, 3]
    book.receive("W2", "C", 1, key="po")
    record = book.get("o1")
    assert record.state is State.ALLOCATED
    assert _alloc(record) == {"1": {"W2": 1}, "2": {"W2": 3}}
    check_consistent(book)


def test_pickup_is_sourced_at_its_store_only(book: Lifecycle) -> None:
    record = book.place(
        order("o1", ("A", 2), fulfillment="pickup", pickup_location_id="S1"), key="p"
    )
    assert _alloc(record) == {"1": {"S1": 2}}
    with pytest.raises(InputError, match="pickup"):
        book.capture(order("o2", ("A", 1), fulfillment="pickup", pickup_location_id="W1"))
    check_consistent(book)


def test_release_pick_ship_deliver_with_invoices(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 2, 12.5), ("B", 1, 4.0)), key="p")
    assert book.release("o1", key="r").state is State.RELEASED
    assert book.pick("o1", key="k").state is State.PICKED
    record = book.ship("o1", key="s")
    assert record.state is State.SHIPPED
    assert book.ledger.snapshot().filter(book.ledger.snapshot()["reserved"] > 0).is_empty()
    assert [(f.kind, f.qty, f.amount) for f in record.finance] == [
        ("invoice", 2, 25.0),
        ("invoice", 1, 4.0),
    ]
    record = book.deliver("o1", [("1", 2)], key="d1")
    assert record.state is State.SHIPPED
    record = book.deliver("o1", key="d2")
    assert record.state is State.DELIVERED
    check_consistent(book)
    assert book.reconciliation().clean


def test_store_rejects_a_released_order_and_it_is_resourced(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 2), ("B", 1)), key="p")
    book.release("o1", key="r")
    record = book.reject_at_location("o1", "W1", key="no-staff", reason="store closed")
    assert record.state is State.ALLOCATED
    assert record.excluded == ("W1",)
    assert _alloc(record) == {"1": {"S2": 2}, "2": {"S2": 1}}
    assert record.history[-1].reason == "store closed"
    check_consistent(book)
    # The refusing location is never used again for this order, even when it is cheapest.
    book.release("o1", key="r2")
    record = book.reject_at_location("o1", "S2", key="no-staff-2")
    assert "W1" not in {loc for per in _alloc(record).values() for loc in per}
    check_consistent(book)


def test_location_reject_without_backorders_cancels_what_cannot_move(book: Lifecycle) -> None:
    book.place(order("o1", ("C", 2), allow_backorder=False), key="p")
    record = book.reject_at_location("o1", "W2", key="x")
    assert record.state is State.CANCELLED
    assert record.lines[0].cancelled == 2
    check_consistent(book)


def test_partial_shipment_then_cancel_rest(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 3), ("B", 2)), key="p")
    record = book.ship("o1", [("1", "W1", 2)], key="s1")
    assert record.state is State.PARTIALLY_SHIPPED
    check_consistent(book)
    record = book.cancel("o1", key="c", reason="customer changed mind")
    assert record.state is State.SHIPPED
    assert [(line.shipped_units, line.cancelled) for line in record.lines] == [(2, 1), (0, 2)]
    assert book.ledger.snapshot()["reserved"].sum() == 0
    check_consistent(book)
    assert book.deliver("o1").state is State.DELIVERED


def test_ship_from_several_locations(book: Lifecycle) -> None:
    record = book.place(order("o1", ("A", 9)), key="p")  # more than any one location holds
    locations = sorted(loc for per in _alloc(record).values() for loc in per)
    assert len(locations) >= 2
    lines = [("1", loc, units) for loc, units in sorted(record.lines[0].allocated.items())]
    record = book.ship("o1", lines, key="s")
    assert record.state is State.SHIPPED
    assert dict(record.lines[0].shipped) == dict(lines_to_map(lines))
    check_consistent(book)


def lines_to_map(lines: list[tuple[str, str, int]]) -> dict[str, int]:
    return {loc: qty for _, loc, qty in lines}


def test_cancel_lines_and_whole(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 3), ("B", 2)), key="p")
    record = book.cancel("o1", [("1", 1)], key="c1")
    assert record.state is State.ALLOCATED
    assert record.lines[0].cancelled == 1
    assert sum(record.lines[0].allocated.values()) == 2
    check_consistent(book)
    with pytest.raises(InputError):
        book.cancel("o1", [("1", 3)], key="c2")
    record = book.cancel("o1", key="c3")
    assert record.state is State.CANCELLED
    check_consistent(book)
    with pytest.raises(OrderTransitionError) as info:
        book.ship("o1")
    assert info.value.state is State.CANCELLED
    assert info.value.event.value == "ship"


def test_quantity_change(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 2)), key="p")
    record = book.change_quantity("o1", "1", 5, key="q1")
    assert record.lines[0].ordered == 5
    assert sum(record.lines[0].allocated.values()) == 5
    check_consistent(book)
    record = book.change_quantity("o1", "1", 1, key="q2")
    assert sum(record.lines[0].allocated.values()) == 1
    check_consistent(book)
    created = book.capture(order("o2", ("B", 1)))
    assert book.change_quantity("o2", "1", 3).lines[0].ordered == 3
    assert created.lines[0].ordered == 1


def test_quantity_increase_refused_without_backorders(book: Lifecycle) -> None:
    record = book.place(order("o1", ("C", 2), allow_backorder=False), key="p")
    entries = book.ledger.entry_count()
    with pytest.raises(InsufficientStock):
        book.change_quantity("o1", "1", 4, key="q")
    assert book.get("o1") == record
    assert book.ledger.entry_count() == entries


def test_ship_complete_quantity_change_moves_the_whole_order(book: Lifecycle) -> None:
    record = book.place(order("o1", ("A", 2), ("B", 1), ship_complete=True), key="p")
    assert _alloc(record) == {"1": {"W1": 2}, "2": {"W1": 1}}
    record = book.change_quantity("o1", "2", 4, key="q")  # only W2 has 4 B (and A)
    assert _alloc(record) == {"1": {"W2": 2}, "2": {"W2": 4}}
    check_consistent(book)


def test_return_restock_and_write_off(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 2, 10.0), ("B", 1, 3.0)), key="p")
    book.ship("o1", key="s")
    book.deliver("o1", key="d")
    record = book.request_return("o1", [("1", 2)], key="rr")
    assert record.state is State.RETURN_REQUESTED
    atp = book.ledger.available("A", "S1")
    record = book.return_items("o1", [("1", 1)], location="S1", key="ret1")
    assert record.state is State.RETURN_REQUESTED
    assert book.ledger.available("A", "S1") == atp + 1
    record = book.return_items("o1", location="S1", disposition="write_off", key="ret2")
    assert record.state is State.RETURNED
    assert book.ledger.available("A", "S1") == atp + 1
    assert [(f.kind, f.amount) for f in record.finance if f.kind == "credit"] == [
        ("credit", 10.0),
        ("credit", 10.0),
    ]
    record = book.return_items("o1", location="W1", key="ret3")  # the last unit, unasked
    assert record.lines[1].returned == 1
    with pytest.raises(InputError):
        book.request_return("o1", key="rr2")
    check_consistent(book)
    assert book.reconciliation().orders.is_empty()


def test_exchange(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 1, 20.0), customer_id="c9"), key="p")
    book.ship("o1", key="s")
    book.deliver("o1", key="d")
    original, replacement = book.exchange(
        "o1", [("1", 1)], [OrderLine(sku="B", qty=1, unit_price=20.0)], location="W1", key="x"
    )
    assert original.state is State.EXCHANGED
    assert original.replacements == ("o1-x1",)
    assert replacement.exchange_of == "o1"
    assert replacement.state is State.ALLOCATED
    assert replacement.customer_id == "c9"
    assert [r.order_id for r in book.orders_of("c9")] == ["o1", "o1-x1"]
    again = book.exchange(
        "o1", [("1", 1)], [OrderLine(sku="B", qty=1, unit_price=20.0)], location="W1", key="x"
    )
    assert again == (original, replacement)
    check_consistent(book)


def test_invalid_event_changes_nothing(book: Lifecycle) -> None:
    record = book.capture(order("o1", ("A", 1)))
    entries = book.ledger.entry_count()
    for attempt in (
        lambda: book.ship("o1"),
        lambda: book.deliver("o1"),
        lambda: book.release("o1"),
        lambda: book.return_items("o1", location="W1"),
        lambda: book.fill_backorder("o1"),
    ):
        with pytest.raises(OrderTransitionError, match="'created'"):
            attempt()
    assert book.get("o1") == record
    assert book.ledger.entry_count() == entries


def test_bad_arguments_change_nothing(book: Lifecycle) -> None:
    record = book.place(order("o1", ("A", 2)), key="p")
    entries = book.ledger.entry_count()
    for attempt in (
        lambda: book.ship("o1", [("1", "W1", 3)]),
        lambda: book.ship("o1", [("9", "W1", 1)]),
        lambda: book.ship("o1", [("1", "W1", 0)]),
        lambda: book.ship("o1", [("1", "W1", True)]),  # type: ignore[list-item]
        lambda: book.cancel("o1", [("1", 5)]),
        lambda: book.change_quantity("o1", "1", 0),
        lambda: book.change_quantity("o1", "1", 2),
        lambda: book.release("o1", "W2"),
        lambda: book.reject_at_location("o1", "W2"),
    ):
        with pytest.raises(InputError):
            attempt()
    assert book.get("o1") == record
    assert book.ledger.entry_count() == entries
    with pytest.raises(InputError):
        book.get("nope")


def test_same_key_other_arguments_conflict(book: Lifecycle) -> None:
    book.place(order("o1", ("A", 3)), key="p")
    book.ship("o1", [("1", "W1", 1)], key="s")
    with pytest.raises(IdempotencyConflict):
        book.ship("o1", [("1", "W1", 2)], key="s")


def test_retry_after_a_crash_between_ledger_and_store(
    book: Lifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    book.capture(order("o1", ("A", 2), ("B", 1)), key="c")
    real_put = book.store.put
    calls = {"n": 0}

    def crashing_put(record: OrderRecord, *, expected_version: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("power cut")
        real_put(record, expected_version=expected_version)

    monkeypatch.setattr(book.store, "put", crashing_put)
    with pytest.raises(OSError, match="power cut"):
        book.allocate("o1", key="a")
    assert book.get("o1").state is State.CREATED  # the order did not move...
    assert book.ledger.holds("o1")  # ...but the ledger did
    record = book.allocate("o1", key="a")  # the retry completes it, reserving nothing twice
    assert record.state is State.ALLOCATED
    assert len(book.ledger.holds("o1")) == 1
    check_consistent(book)


def test_stale_write_is_refused(book: Lifecycle) -> None:
    record = book.capture(order("o1", ("A", 1)))
    book.allocate("o1")
    with pytest.raises(StaleOrderError):
        book.store.put(record, expected_version=1)


def test_history_replays_and_round_trips(book: Lifecycle, clock: Clock) -> None:
    placed = book.place(order("o1", ("A", 3, 1.25), ("C", 4, 2.5)), key="p", actor="web")
    clock.advance(minutes=3)
    book.release("o1", actor="ops")
    where = next(iter(placed.lines[0].allocated))
    book.ship("o1", [("1", where, 1)], key="s1")
    book.cancel("o1", [("2", 1)], reason="oos")
    record = book.get("o1")
    assert replay(record.history, record.order) == record
    assert OrderRecord.from_json(record.to_json()) == record
    frame = book.history("o1")
    assert frame["event"].to_list() == ["capture", "allocate", "release", "ship", "cancel"]
    assert frame["actor"].to_list()[:3] == ["web", "web", "ops"]


def test_threads_share_a_lifecycle(book: Lifecycle) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for n in range(6):
        book.place(order(f"t{n}", ("A", 1), ("B", 1)), key=f"p{n}")

    def work(n: int) -> State:
        order_id = f"t{n % 6}"
        record = book.get(order_id)
        line = record.lines[n // 6]
        where = next(iter(line.allocated))
        return book.ship(order_id, [(line.line_id, where, 1)], key=f"s{n}").state

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(12)))
    assert {r.state for r in book.records()} == {State.SHIPPED}
    check_consistent(book)
