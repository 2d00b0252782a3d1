"""Random event sequences: what must hold after every event, accepted or refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st
from lifecycle_support import (
    Clock,
    allocated_by_orders,
    network,
    order,
    reserved_by_ledger,
    stock_ledger,
)

from allocator import OrderLine
from allocator.errors import AllocatorError
from allocator.inventory import open_ledger
from allocator.lifecycle import TERMINAL, Lifecycle, OrderRecord, replay

NETWORK = network()
ORDER_IDS = ("o1", "o2", "o3")
LOCATIONS = ("W1", "S1", "S2", "W2")
SKUS = ("A", "B", "C")

_orders = st.builds(
    lambda lines, sc, bo, prio: (lines, sc, bo, prio),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from([True, True, False]),
    st.integers(0, 2),
)

#: Operations, repeated to weight them: whole-order cancels end sequences early, so they are rare.
OPS = (
    *("allocate", "release", "release", "pick", "ship_all", "ship_one", "ship_one"),
    *("deliver", "deliver", "cancel", "cancel_line", "change", "reject_at", "reject_at"),
    *("receive", "receive", "request_return", "request_return", "return", "exchange"),
    "exchange",
)


def _draw_step(data: st.DataObject, book: Lifecycle) -> tuple[Any, ...]:
    """An operation with arguments drawn mostly from the order's current quantities."""
    kind = data.draw(st.sampled_from(OPS), label="op")
    if kind == "receive":
        return (
            kind,
            data.draw(st.sampled_from(LOCATIONS)),
            data.draw(st.sampled_from(SKUS)),
            data.draw(st.integers(1, 4)),
        )
    order_id = data.draw(st.sampled_from([r.order_id for r in book.records()]))
    record = book.get(order_id)
    held = [
        (line.line_id, loc, units)
        for line in record.lines
        for loc, units in sorted(line.allocated.items())
    ]
    any_loc = st.sampled_from(LOCATIONS)
    held_loc = st.sampled_from([h[1] for h in held]) if held else any_loc
    line_id = st.sampled_from([line.line_id for line in record.lines])
    if kind == "release":
        return (kind, order_id, data.draw(st.one_of(st.none(), held_loc)))
    if kind == "ship_one":
        if not held:
            return (kind, order_id, "1", data.draw(any_loc), 1)
        lid, loc, units = data.draw(st.sampled_from(held))
        return (kind, order_id, lid, loc, data.draw(st.integers(1, units + 1)))
    if kind == "cancel_line":
        return (kind, order_id, data.draw(line_id), data.draw(st.integers(1, 3)))
    if kind == "change":
        return (kind, order_id, data.draw(line_id), data.draw(st.integers(1, 6)))
    if kind == "reject_at":
        return (kind, order_id, data.draw(st.one_of(held_loc, any_loc)))
    if kind == "return":
        return (kind, order_id, data.draw(any_loc), data.draw(st.booleans()))
    if kind == "exchange":
        back = [line.line_id for line in record.lines if line.returnable] or ["1"]
        return (kind, order_id, data.draw(st.sampled_from(back)), data.draw(st.sampled_from(SKUS)))
    return (kind, order_id)


def _action(book: Lifecycle, step: tuple[Any, ...], n: int) -> Callable[[], object]:
    kind, *args = step
    key = f"k{n}"
    if kind == "allocate":
        return lambda: book.allocate(args[0], key=key)
    if kind == "release":
        return lambda: book.release(args[0], args[1], key=key)
    if kind == "pick":
        return lambda: book.pick(args[0], key=key)
    if kind == "ship_all":
        return lambda: book.ship(args[0], key=key)
    if kind == "ship_one":
        return lambda: book.ship(args[0], [(args[1], args[2], args[3])], key=key)
    if kind == "deliver":
        return lambda: book.deliver(args[0], key=key)
    if kind == "cancel":
        return lambda: book.cancel(args[0], key=key)
    if kind == "cancel_line":
        return lambda: book.cancel(args[0], [(args[1], args[2])], key=key)
    if kind == "change":
        return lambda: book.change_quantity(args[0], args[1], args[2], key=key)
    if kind == "reject_at":
        return lambda: book.reject_at_location(args[0], args[1], key=key)
    if kind == "receive":
        return lambda: book.receive(args[0], args[1], args[2], key=key)
    if kind == "request_return":
        return lambda: book.request_return(args[0], key=key)
    if kind == "return":
        disposition = "restock" if args[2] else "write_off"
        return lambda: book.return_items(
            args[0], location=args[1], disposition=disposition, key=key
        )
    if kind == "exchange":
        return lambda: book.exchange(
            args[0], [(args[1], 1)], [OrderLine(sku=args[2], qty=1)], location="W1", key=key
        )
    raise AssertionError(kind)


def _state(book: Lifecycle) -> dict[str, str]:
    return {r.order_id: r.to_json() for r in book.records()}


@settings(max_examples=40)
@given(orders=st.lists(_orders, min_size=1, max_size=3), data=st.data())
def test_random_event_sequences(
    orders: list[tuple[list[tuple[str, int]], bool, bool, int]],
    data: st.DataObject,
) -> None:
    clock = Clock()
    with open_ledger("memory://", clock=clock) as ledger:
        stock_ledger(ledger)
        book = Lifecycle(ledger, NETWORK, clock=clock)
        for (lines, ship_complete, backorder, priority), order_id in zip(
            orders, ORDER_IDS, strict=False
        ):
            book.capture(
                allocate=priority != 2,
                order=order(
                    order_id,
                    *lines,
                    ship_complete=ship_complete,
                    allow_backorder=backorder,
                    priority=priority,
                ),
            )
        for n in range(data.draw(st.integers(5, 40), label="steps")):
            step = _draw_step(data, book)
            clock.advance(minutes=1)
            before = _state(book)
            entries = ledger.entry_count()
            target = step[1] if step[0] != "receive" else None
            was_terminal = (
                target is not None
                and book.store.get(target) is not None
                and book.get(target).state in TERMINAL
            )
            try:
                _action(book, step, n)()
                note(f"{step}: accepted")
                assert not was_terminal, f"{step} left a terminal state"
            except AllocatorError as error:
                note(f"{step}: refused ({type(error).__name__}: {error})")
                assert _state(book) == before, "a refused event changed an order"
                assert ledger.entry_count() == entries, "a refused event wrote to the ledger"
            assert ledger.verify() == []
            assert reserved_by_ledger(ledger) == allocated_by_orders(book.records())
            for record in book.records():
                assert replay(record.history, record.order) == record
                assert OrderRecord.from_json(record.to_json()) == record
                for line in record.lines:
                    assert line.problems() == []
