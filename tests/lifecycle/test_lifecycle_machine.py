"""The transition table, guards, records and their JSON, independent of the ledger."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from lifecycle_support import START, order

from allocator.errors import InputError, InvalidTransition
from allocator.lifecycle import (
    GUARDS,
    TERMINAL,
    TRANSITIONS,
    Bucket,
    Change,
    Event,
    OrderRecord,
    OrderTransitionError,
    Quantities,
    State,
    allowed_events,
    apply,
    capture_record,
    mermaid,
    next_state,
    replay,
)
from allocator.lifecycle.machine import guard_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def test_table_is_well_formed() -> None:
    assert set(GUARDS) == set(State)
    for (state, event), targets in TRANSITIONS.items():
        assert state not in TERMINAL, "terminal states absorb"
        assert event is not Event.CAPTURE
        assert targets, (state, event)
        assert len(set(targets)) == len(targets)
    reachable = {State.CREATED} | {t for targets in TRANSITIONS.values() for t in targets}
    assert reachable == set(State)
    for state in TERMINAL:
        assert allowed_events(state) == ()


def test_next_state_follows_guards() -> None:
    all_reserved = Quantities(ordered=3, allocated=3)
    some_waiting = Quantities(ordered=3, allocated=1, backordered=2)
    assert next_state(State.CREATED, Event.ALLOCATE, all_reserved) is State.ALLOCATED
    assert next_state(State.CREATED, Event.ALLOCATE, some_waiting) is State.PARTIALLY_ALLOCATED
    nothing = Quantities(ordered=3, backordered=3)
    assert next_state(State.CREATED, Event.ALLOCATE, nothing) is State.BACKORDERED
    shipped_part = Quantities(ordered=3, allocated=1, shipped=2)
    assert next_state(State.RELEASED, Event.SHIP, shipped_part) is State.PARTIALLY_SHIPPED
    rest_cancelled = Quantities(ordered=3, cancelled=1, shipped=2)
    assert next_state(State.PARTIALLY_SHIPPED, Event.CANCEL, rest_cancelled) is State.SHIPPED


def test_refused_transition_names_state_and_event() -> None:
    with pytest.raises(OrderTransitionError) as info:
        next_state(State.CREATED, Event.SHIP, Quantities(ordered=1), "o7")
    error = info.value
    assert isinstance(error, InvalidTransition)
    assert (error.state, error.event, error.order_id) == (State.CREATED, Event.SHIP, "o7")
    assert "'created'" in str(error)
    assert "ship" in str(error)
    with pytest.raises(OrderTransitionError, match="fit none"):
        next_state(State.CREATED, Event.ALLOCATE, Quantities(ordered=2))  # nothing sourced


def _record() -> OrderRecord:
    placed = datetime(2026, 3, 1, 23, 59, 59, 123456)
    return capture_record(
        order("o1", ("A", 2, 9.99), ("B", 1, 0.1), created_at=placed, customer_id="c"),
        START,
        key="c",
    )


def test_apply_never_modifies_its_input() -> None:
    record = _record()
    text = record.to_json()
    with pytest.raises(OrderTransitionError):
        apply(record, Event.SHIP, [Change("1", Bucket.SHIPPED, 1, "W1")], at=START)
    with pytest.raises(InputError, match="more released than allocated"):
        apply(
            record,
            Event.ALLOCATE,
            [Change("1", Bucket.ALLOCATED, 2, "W1"), Change("1", Bucket.RELEASED, 3, "W1")],
            at=START,
        )
    with pytest.raises(InputError, match="no line"):
        apply(record, Event.ALLOCATE, [Change("9", Bucket.ALLOCATED, 1, "W1")], at=START)
    with pytest.raises(InputError, match="captured once"):
        apply(record, Event.CAPTURE, at=START)
    assert record.to_json() == text


def test_json_round_trip_and_replay() -> None:
    record = _record()
    record = apply(
        record,
        Event.ALLOCATE,
        [Change("1", Bucket.ALLOCATED, 2, "W1"), Change("2", Bucket.BACKORDERED, 1)],
        at=START,
        key="a",
        actor="svc",
        details={"cost": 9.1},
    )
    record = apply(
        record,
        Event.SHIP,
        [Change("1", Bucket.ALLOCATED, -2, "W1"), Change("1", Bucket.SHIPPED, 2, "W1")],
        at=START,
        key="s",
    )
    assert record.state is State.PARTIALLY_SHIPPED
    assert record.finance[0].amount == pytest.approx(2 * 9.99)
    assert OrderRecord.from_json(record.to_json()) == record
    assert replay(record.history, record.order) == record
    with pytest.raises(InputError):
        replay(record.history[1:], record.order)


def test_transition_is_fast() -> None:
    record = apply(
        _record(),
        Event.ALLOCATE,
        [Change("1", Bucket.ALLOCATED, 2, "W1"), Change("2", Bucket.ALLOCATED, 1, "W1")],
        at=START,
    )
    release = [Change("1", Bucket.RELEASED, 2, "W1"), Change("2", Bucket.RELEASED, 1, "W1")]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            apply(record, Event.RELEASE, release, at=START)
        best = min(best, (time.perf_counter() - t0) / 200)
    assert best < 100e-6  # generous: measured ~15 us (benchmarks/bench_lifecycle.py)


def _block(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    match = re.search(r"```(?:mermaid|markdown)?\n(.*?)```", section, re.S)
    assert match, heading
    return match.group(1)


def test_docs_show_the_generated_diagram() -> None:
    text = DOC.read_text()
    assert _block(text, "## The state machine") == mermaid()
    assert guard_table() in text
