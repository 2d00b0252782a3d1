"""The ledger's behaviour, the same on every store (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from inventory_support import FakeClock

from allocator.errors import AllocatorError, HoldResolvedError, InputError, LedgerError
from allocator.inventory import (
    EntryKind,
    HoldExpiredError,
    HoldStatus,
    IdempotencyConflict,
    InsufficientStock,
    Ledger,
)


def test_contract_walkthrough(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po-77")
    hold = ledger.reserve("order-1", [("SKU1", "L1", 2)], key="order-1/r1", ttl=None)
    assert hold.status is HoldStatus.OPEN
    assert hold.remaining == 2
    assert ledger.available("SKU1", "L1") == 8
    ledger.ship("order-1", [("SKU1", "L1", 2)], key="order-1/s1")
    assert ledger.holds("order-1")[0].status is HoldStatus.SHIPPED
    ledger.restock("order-1", [("SKU1", "L1", 1)], key="order-1/rma1")
    ledger.adjust("L1", "SKU1", -1, reason="damaged", key="count-9")
    assert ledger.available("SKU1", "L1") == 8
    assert ledger.verify() == []
    stock = ledger.snapshot()
    assert stock.schema == pl.Schema(
        {
            "location_id": pl.String,
            "sku": pl.String,
            "on_hand": pl.Int64,
            "reserved": pl.Int64,
            "safety_stock": pl.Int64,
        }
    )
    assert stock.rows() == [("L1", "SKU1", 8, 0, 0)]


def test_errors_belong_to_the_hierarchy() -> None:
    assert issubclass(InsufficientStock, LedgerError)
    assert issubclass(IdempotencyConflict, LedgerError)
    assert issubclass(HoldExpiredError, HoldResolvedError)
    assert issubclass(LedgerError, AllocatorError)


def test_reserve_is_all_or_nothing(ledger: Ledger) -> None:
    ledger.receive("L1", "A", 5, key="a")
    ledger.receive("L1", "B", 1, key="b")
    with pytest.raises(InsufficientStock, match="'B'"):
        ledger.reserve("o1", [("A", "L1", 2), ("B", "L1", 2)], key="o1/r")
    assert ledger.available("A", "L1") == 5
    assert ledger.holds("o1") == ()
    assert ledger.entry_count() == 2
    # The failed call did not use its key.
    ledger.receive("L1", "B", 1, key="b2")
    hold = ledger.reserve("o1", [("A", "L1", 2), ("B", "L1", 2)], key="o1/r")
    assert {(line.sku, line.qty) for line in hold.lines} == {("A", 2), ("B", 2)}


def test_lines_for_one_position_add_up(ledger: Ledger) -> None:
    ledger.receive("L1", "A", 5, key="a")
    hold = ledger.reserve("o1", [("A", "L1", 2), ("A", "L1", 1)], key="r")
    assert [(line.sku, line.qty) for line in hold.lines] == [("A", 3)]
    assert ledger.position("A", "L1").reserved == 3


def test_replay_returns_first_result_and_writes_nothing(ledger: Ledger) -> None:
    first = ledger.receive("L1", "SKU1", 10, key="po-77")
    hold = ledger.reserve("o1", [("SKU1", "L1", 4)], key="o1/r")
    count = ledger.entry_count()
    assert ledger.receive("L1", "SKU1", 10, key="po-77") == first
    assert ledger.reserve("o1", [("SKU1", "L1", 4)], key="o1/r") == hold
    assert ledger.entry_count() == count
    assert ledger.position("SKU1", "L1").on_hand == 10
    # The first result is returned even after the hold changed.
    ledger.ship("o1", [("SKU1", "L1", 4)], key="o1/s")
    assert ledger.reserve("o1", [("SKU1", "L1", 4)], key="o1/r") == hold


def test_used_key_with_other_arguments_conflicts(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po-77")
    count = ledger.entry_count()
    with pytest.raises(IdempotencyConflict, match="po-77"):
        ledger.receive("L1", "SKU1", 11, key="po-77")
    with pytest.raises(IdempotencyConflict):
        ledger.adjust("L1", "SKU1", 1, reason="count", key="po-77")
    assert ledger.entry_count() == count


def test_release_gives_units_back_and_resolves_once(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 2)], key="o1/r1")
    ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r2")
    posting = ledger.release("o1", key="o1/cancel")
    assert [entry.kind for entry in posting.entries] == [EntryKind.RELEASE] * 2
    assert {h.status for h in posting.holds} == {HoldStatus.RELEASED}
    assert ledger.available("SKU1", "L1") == 10
    with pytest.raises(HoldResolvedError):
        ledger.release("o1", key="o1/cancel-again")
    with pytest.raises(HoldResolvedError):
        ledger.ship("o1", [("SKU1", "L1", 1)], key="o1/ship")
    # The replay of the release that succeeded still answers.
    assert ledger.release("o1", key="o1/cancel") == posting


def test_release_one_hold(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po")
    first = ledger.reserve("o1", [("SKU1", "L1", 2)], key="o1/r1")
    second = ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r2")
    ledger.release("o1", key="o1/c1", hold=first)
    statuses = {h.hold_id: h.status for h in ledger.holds("o1")}
    assert statuses == {first.hold_id: HoldStatus.RELEASED, second.hold_id: HoldStatus.OPEN}
    with pytest.raises(HoldResolvedError):
        ledger.release("o1", key="o1/c2", hold=first.hold_id)
    with pytest.raises(InputError) as error:
        ledger.release("o1", key="o1/c3", hold="hold-of-someone-else")
    assert error.value.source == "hold"


def test_partial_shipments(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r1")
    ledger.reserve("o1", [("SKU1", "L1", 2)], key="o1/r2")
    ledger.ship("o1", [("SKU1", "L1", 4)], key="o1/s1")
    first, second = ledger.holds("o1")
    assert first.status is HoldStatus.SHIPPED  # the oldest hold is consumed first
    assert (second.status, second.remaining) == (HoldStatus.OPEN, 1)
    with pytest.raises(InsufficientStock):
        ledger.ship("o1", [("SKU1", "L1", 2)], key="o1/s2")
    ledger.ship("o1", [("SKU1", "L1", 1)], key="o1/s3")
    assert ledger.position("SKU1", "L1").on_hand == 5
    assert ledger.position("SKU1", "L1").reserved == 0
    with pytest.raises(HoldResolvedError):
        ledger.ship("o1", [("SKU1", "L1", 1)], key="o1/s4")
    assert ledger.verify() == []


def test_ship_from_a_position_the_order_does_not_hold(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po1")
    ledger.receive("L2", "SKU1", 10, key="po2")
    ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r")
    with pytest.raises(InsufficientStock):
        ledger.ship("o1", [("SKU1", "L2", 1)], key="o1/s")
    with pytest.raises(InputError) as error:
        ledger.ship("nobody", [("SKU1", "L2", 1)], key="x/s")
    assert error.value.source == "order_id"


def test_restock_and_write_off(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 10, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r")
    ledger.ship("o1", [("SKU1", "L1", 3)], key="o1/s")
    ledger.restock("o1", [("SKU1", "L1", 1)], key="o1/rma1")
    posting = ledger.restock(
        "o1", [("SKU1", "L1", 1)], key="o1/rma2", disposition="write_off", reason="torn"
    )
    assert posting.entries[0].kind is EntryKind.WRITE_OFF
    assert ledger.position("SKU1", "L1").on_hand == 8
    with pytest.raises(InputError) as error:
        ledger.restock("o1", [("SKU1", "L1", 2)], key="o1/rma3")
    assert (error.value.source, error.value.column) == ("lines", "qty")
    ledger.restock("o1", [("SKU1", "L1", 1)], key="o1/rma4")
    assert ledger.position("SKU1", "L1").on_hand == 9


def test_entries_of_an_order_in_sequence(ledger: Ledger) -> None:
    # Entries of several orders interleave; an order's entries (and its flow, which returns
    # check) come back in sequence and match a scan of the whole ledger.
    ledger.receive("L1", "SKU1", 10, key="po")
    for n in (1, 2, 3):
        ledger.reserve(f"o{n}", [("SKU1", "L1", 2)], key=f"o{n}/r")
    for n in (3, 1, 2):
        ledger.ship(f"o{n}", [("SKU1", "L1", 2)], key=f"o{n}/s")
    ledger.restock("o2", [("SKU1", "L1", 1)], key="o2/rma")
    everything = ledger.entries()
    for n in (1, 2, 3):
        mine = ledger.entries(order_id=f"o{n}")
        assert mine == tuple(e for e in everything if e.order_id == f"o{n}")
        assert [e.seq for e in mine] == sorted(e.seq for e in mine)
    assert ledger.entries(order_id="o2", key="o2/rma") == ledger.entries(key="o2/rma")
    assert ledger.entries(order_id="nobody") == ()
    with pytest.raises(InputError):
        ledger.restock("o2", [("SKU1", "L1", 2)], key="o2/rma2")  # only one unit left to return
    ledger.restock("o2", [("SKU1", "L1", 1)], key="o2/rma3")


def test_adjust_cannot_take_promised_units(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 4)], key="o1/r")
    with pytest.raises(InsufficientStock):
        ledger.adjust("L1", "SKU1", -2, reason="damaged", key="c1")
    ledger.adjust("L1", "SKU1", -1, reason="damaged", key="c2")
    ledger.adjust("L1", "SKU1", 3, reason="found", key="c3")
    assert ledger.position("SKU1", "L1").on_hand == 7
    [entry] = ledger.entries(key="c2")
    assert (entry.kind, entry.qty, entry.reason) == (EntryKind.ADJUST, -1, "damaged")


def test_transfer(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    ledger.receive("L2", "OTHER", 1, key="po2")
    ledger.reserve("o1", [("SKU1", "L1", 2)], key="o1/r")
    with pytest.raises(InsufficientStock):
        ledger.transfer("SKU1", "L1", "L2", 4, key="t1")
    posting = ledger.transfer("SKU1", "L1", "L2", 3, key="t2")
    assert [e.kind for e in posting.entries] == [EntryKind.TRANSFER_OUT, EntryKind.TRANSFER_IN]
    assert posting.entries == ledger.entries(key="t2")  # with the sequence numbers stored
    assert ledger.position("SKU1", "L1").on_hand == 2
    assert ledger.position("SKU1", "L2").on_hand == 3
    with pytest.raises(InputError) as error:
        ledger.transfer("SKU1", "L1", "L1", 1, key="t3")
    assert error.value.source == "to_location"
    with pytest.raises(InputError) as error:
        ledger.transfer("SKU1", "L1", "NOWHERE", 1, key="t4")
    assert error.value.source == "to_location"
    assert ledger.verify() == []


def test_safety_stock_is_never_promised(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    ledger.set_safety_stock("L1", "SKU1", 3, key="ss")
    assert ledger.available("SKU1", "L1") == 2
    with pytest.raises(InsufficientStock):
        ledger.reserve("o1", [("SKU1", "L1", 3)], key="o1/r")
    ledger.set_safety_stock("L1", "SKU1", 9, key="ss2")
    assert ledger.available("SKU1", "L1") == 0  # max(0, ...)
    assert ledger.snapshot()["safety_stock"].to_list() == [9]
    ledger.set_safety_stock("L1", "SKU1", 0, key="ss3")
    assert ledger.available("SKU1", "L1") == 5
    assert ledger.verify() == []


def test_expected_receipts_and_forward_availability(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 2, key="po")
    ledger.expect("L1", "SKU1", 5, date(2026, 2, 1), key="asn-1")
    ledger.expect("L1", "SKU1", 7, date(2026, 3, 1), key="asn-2")
    assert ledger.available("SKU1", "L1") == 2
    assert ledger.available("SKU1", "L1", as_of=date(2026, 1, 31)) == 2
    assert ledger.available("SKU1", "L1", as_of=date(2026, 2, 1)) == 7
    assert ledger.available("SKU1", "L1", as_of=date(2026, 3, 1)) == 14
    # A receipt settles the earliest expected receipt first.
    ledger.receive("L1", "SKU1", 6, key="po-2")
    [left] = ledger.expected("SKU1", "L1")
    assert (left.eta, left.outstanding) == (date(2026, 3, 1), 6)
    assert ledger.position("SKU1", "L1").inbound == 6
    assert ledger.available("SKU1", "L1", as_of=date(2026, 3, 1)) == 14
    ledger.receive("L1", "SKU1", 1, key="po-3", settle=False)
    assert ledger.position("SKU1", "L1").inbound == 6
    assert ledger.verify() == []


def test_holds_lapse_after_their_ttl(ledger: Ledger, clock: FakeClock) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    hold = ledger.reserve("o1", [("SKU1", "L1", 4)], key="o1/r", ttl=timedelta(minutes=15))
    assert hold.expires == clock.now + timedelta(minutes=15)
    clock.advance(15 * 60 - 1)
    assert ledger.available("SKU1", "L1") == 1
    clock.advance(1)
    # Reads honour expiry before anything records it.
    assert ledger.available("SKU1", "L1") == 5
    assert ledger.position("SKU1", "L1").reserved == 0
    assert ledger.snapshot()["reserved"].to_list() == [0]
    assert ledger.holds("o1")[0].status is HoldStatus.EXPIRED
    count = ledger.entry_count()
    with pytest.raises(HoldExpiredError):
        ledger.ship("o1", [("SKU1", "L1", 1)], key="o1/s")
    with pytest.raises(HoldExpiredError):
        ledger.release("o1", key="o1/c")
    assert ledger.entry_count() == count  # a failed call writes nothing
    # The units can be promised again; that write records the expiry.
    ledger.reserve("o2", [("SKU1", "L1", 5)], key="o2/r")
    kinds = [e.kind for e in ledger.entries(order_id="o1")]
    assert kinds == [EntryKind.RESERVE, EntryKind.EXPIRE]
    assert ledger.verify() == []


def test_expire_holds(ledger: Ledger, clock: FakeClock) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 1)], key="o1/r", ttl=60)
    ledger.reserve("o2", [("SKU1", "L1", 1)], key="o2/r", ttl=120)
    ledger.reserve("o3", [("SKU1", "L1", 1)], key="o3/r")
    assert ledger.expire_holds() == ()
    expired = ledger.expire_holds(now=clock.now + timedelta(seconds=90))
    assert [h.order_id for h in expired] == ["o1"]
    assert expired[0].status is HoldStatus.EXPIRED
    clock.advance(500)
    assert [h.order_id for h in ledger.expire_holds()] == ["o2"]
    assert ledger.position("SKU1", "L1").reserved == 1
    assert ledger.verify() == []


def test_a_replay_does_not_sweep(ledger: Ledger, clock: FakeClock) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    ledger.reserve("o1", [("SKU1", "L1", 1)], key="o1/r", ttl=60)
    clock.advance(61)
    count = ledger.entry_count()
    ledger.receive("L1", "SKU1", 5, key="po")
    assert ledger.entry_count() == count


def test_unknown_positions_are_input_errors(ledger: Ledger) -> None:
    ledger.receive("L1", "SKU1", 5, key="po")
    with pytest.raises(InputError) as error:
        ledger.reserve("o1", [("NOPE", "L1", 1)], key="r")
    assert (error.value.source, error.value.column) == ("lines", "sku")
    with pytest.raises(InputError) as error:
        ledger.reserve("o1", [("SKU1", "L9", 1)], key="r")
    assert (error.value.source, error.value.column) == ("lines", "location_id")
    with pytest.raises(InputError) as error:
        ledger.adjust("L9", "SKU1", 1, reason="x", key="a")
    assert error.value.source == "location"
    with pytest.raises(InputError) as error:
        ledger.set_safety_stock("L1", "NOPE", 1, key="s")
    assert error.value.source == "sku"
    assert ledger.available("NOPE", "L1") == 0
    assert ledger.entry_count() == 1


def test_known_location_and_sku_make_a_new_position(ledger: Ledger) -> None:
    ledger.receive("L1", "A", 5, key="a")
    ledger.receive("L2", "B", 5, key="b")
    with pytest.raises(InsufficientStock):
        ledger.reserve("o1", [("B", "L1", 1)], key="r")
    ledger.adjust("L1", "B", 2, reason="found", key="f")
    assert ledger.available("B", "L1") == 2


def test_entries_record_what_where_why_when_and_key(ledger: Ledger, clock: FakeClock) -> None:
    ledger.receive("L1", "SKU1", 5, key="po", reason="PO 77")
    hold = ledger.reserve("o1", [("SKU1", "L1", 2)], key="o1/r")
    receipt, reservation = ledger.entries()
    assert (receipt.kind, receipt.location_id, receipt.sku, receipt.qty) == (
        EntryKind.RECEIVE,
        "L1",
        "SKU1",
        5,
    )
    assert (receipt.reason, receipt.key, receipt.at) == ("PO 77", "po", clock.now)
    assert (reservation.order_id, reservation.hold_id) == ("o1", hold.hold_id)
    assert receipt.seq < reservation.seq


def test_quantities_up_to_64_bits(ledger: Ledger) -> None:
    big = 2**63 - 1
    ledger.receive("L1", "SKU1", big, key="a")
    with pytest.raises(InputError) as error:
        ledger.receive("L1", "SKU1", 1, key="b")
    assert error.value.source == "qty"
    ledger.reserve("o1", [("SKU1", "L1", big)], key="r")
    assert ledger.position("SKU1", "L1").reserved == big
    assert ledger.verify() == []


def test_bad_clock_is_refused_before_writing(store_name: str, make_url) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from allocator.inventory import open_ledger

    with open_ledger(make_url(store_name), clock=lambda: datetime(2026, 1, 1)) as ledger:
        with pytest.raises(InputError) as error:
            ledger.receive("L1", "SKU1", 1, key="a")
        assert error.value.source == "clock"
        assert ledger.entry_count() == 0


def test_positions_of_chosen_pairs(ledger: Ledger, clock: FakeClock) -> None:
    ledger.receive("L1", "A", 5, key="a")
    ledger.receive("L2", "B", 3, key="b")
    ledger.expect("L2", "B", 4, date(2026, 2, 1), key="e")
    ledger.reserve("o1", [("A", "L1", 2)], key="r", ttl=60)
    chosen = ledger.positions([("L1", "A"), ("L2", "B"), ("L9", "A")])
    assert [(p.location_id, p.sku, p.available) for p in chosen] == [("L1", "A", 3), ("L2", "B", 3)]
    ahead = ledger.positions([("L2", "B")], as_of=date(2026, 2, 1))
    assert [p.available for p in ahead] == [7]
    clock.advance(60)
    assert [p.reserved for p in ledger.positions([("L1", "A")])] == [0]
    assert ledger.positions([]) == ()
    with pytest.raises(InputError) as error:
        ledger.positions([("L1",)])  # type: ignore[list-item]
    assert (error.value.source, error.value.row) == ("pairs", 1)


def test_positions_of_many_pairs(ledger: Ledger, clock: FakeClock) -> None:
    # Lists of positions long enough to be read in chunks, padded, and with lapsed holds picked
    # out of all of them; ids checked once are remembered, but each check still holds.
    pairs = [(f"L{n}", sku) for n in range(250) for sku in ("A", "B")]
    for n, (location, sku) in enumerate(pairs[:40]):
        ledger.receive(location, sku, 10, key=f"in-{n}")
    ledger.reserve("o1", [("A", "L1", 2), ("B", "L7", 3)], key="r1", ttl=60)
    ledger.reserve("o2", [("A", "L2", 1)], key="r2")
    asked = [*pairs, ("L999", "A"), ("L1", "A")] * 2  # unknown and repeated positions
    read = ledger.positions(asked)
    assert [(p.location_id, p.sku) for p in read] == sorted(pairs[:40])
    free = {(p.location_id, p.sku): (p.reserved, p.available) for p in read}
    assert free[("L1", "A")] == (2, 8)
    assert free[("L7", "B")] == (3, 7)
    assert free[("L2", "A")] == (1, 9)
    assert free[("L3", "A")] == (0, 10)
    clock.advance(60)
    free = {(p.location_id, p.sku): (p.reserved, p.available) for p in ledger.positions(asked)}
    assert free[("L1", "A")] == (0, 10)
    assert free[("L7", "B")] == (0, 10)
    assert free[("L2", "A")] == (1, 9)
    assert ledger.positions(pairs[:3]) == ledger.positions(asked)[:3]
    for bad, column in [
        (("L1", "A\x00"), "sku"),
        (("", "A"), "location_id"),
        ((1, "A"), "location_id"),
    ]:
        with pytest.raises(InputError) as error:
            ledger.positions([*pairs[:20], bad])
        assert (error.value.source, error.value.row, error.value.column) == ("pairs", 21, column)
