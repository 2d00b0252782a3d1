"""Model-based test: the ledger against a plain Python model, step by step.

A Hypothesis state machine drives the ledger through random calls (receipts, expected receipts,
reservations with and without time-to-live, releases, full and partial shipments, returns,
adjustments, transfers, safety stock, the clock moving, expiry sweeps, replays and key
conflicts). A small model predicts every outcome (success or which typed error) and the state
after it. After every step, for every position, on hand, reserved, inbound, safety stock and ATP
(now and forward-looking) must match the model; on hand must equal receipts + restocks +
adjustments - shipments +/- transfers counted from the entries; the entry count must match (so
nothing is applied twice, and replays and failed calls write nothing); and ``verify()`` must be
clean.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from inventory_support import PROFILE, FakeClock, PostgresServer, examples

from allocator.errors import HoldResolvedError, InputError
from allocator.inventory import (
    EntryKind,
    HoldExpiredError,
    HoldStatus,
    IdempotencyConflict,
    InsufficientStock,
    Ledger,
    open_ledger,
)

LOCATIONS = ["L1", "L2", "L3"]
SKUS = ["A", "B"]
ORDERS = ["o1", "o2", "o3"]
PAIRS = [(loc, sku) for loc in LOCATIONS for sku in SKUS]
HORIZON = [date(2026, 1, 1) + timedelta(days=n) for n in range(4)]

locations = st.sampled_from([*LOCATIONS * 4, "L9"])  # now and then an unknown one
skus = st.sampled_from([*SKUS * 6, "Z"])
quantities = st.integers(1, 6)
lines = st.lists(st.tuples(skus, locations, quantities), min_size=1, max_size=3)
ttls = st.sampled_from([None, None, 30, 90])

Pair = tuple[str, str]


@dataclass
class ModelHold:
    hold_id: str
    order_id: str
    lines: dict[Pair, list[int]]  # pair -> [qty, shipped, released]
    status: HoldStatus
    expires: datetime | None
    swept: bool = False  # an expiry the ledger has recorded

    def remaining(self, pair: Pair) -> int:
        qty, shipped, released = self.lines[pair]
        return qty - shipped - released


@dataclass
class Model:
    """What the ledger should be: the rules, written as plainly as possible."""

    clock: FakeClock
    locations: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    on_hand: dict[Pair, int] = field(default_factory=dict)
    safety: dict[Pair, int] = field(default_factory=dict)
    inbound: list[list[Any]] = field(default_factory=list)  # [pair, eta, outstanding]
    holds: list[ModelHold] = field(default_factory=list)
    flow: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # shipped, returned
    entries: int = 0

    # -- derived ---------------------------------------------------------------------------

    def lapsed(self, hold: ModelHold) -> bool:
        return (
            hold.status is HoldStatus.OPEN
            and hold.expires is not None
            and hold.expires <= self.clock.now
        )

    def is_open(self, hold: ModelHold) -> bool:
        return hold.status is HoldStatus.OPEN and not self.lapsed(hold)

    def status(self, hold: ModelHold) -> HoldStatus:
        return HoldStatus.EXPIRED if self.lapsed(hold) else hold.status

    def reserved(self, pair: Pair) -> int:
        return sum(h.remaining(pair) for h in self.holds if self.is_open(h) and pair in h.lines)

    def inbound_total(self, pair: Pair, due: date | None = None) -> int:
        return sum(
            row[2] for row in self.inbound if row[0] == pair and (due is None or row[1] <= due)
        )

    def atp(self, pair: Pair, due: date | None = None) -> int:
        on_hand = self.on_hand.get(pair, 0)
        incoming = self.inbound_total(pair, due) if due is not None else 0
        return max(0, on_hand + incoming - self.reserved(pair) - self.safety.get(pair, 0))

    def known(self, location: str, sku: str) -> bool:
        return location in self.locations and sku in self.skus

    # -- effects ---------------------------------------------------------------------------

    def sweep(self) -> list[ModelHold]:
        """What every successful write does first: record the expiry of lapsed holds."""
        swept = []
        for hold in self.holds:
            if self.lapsed(hold):
                self.entries += sum(1 for pair in hold.lines if hold.remaining(pair))
                hold.status = HoldStatus.EXPIRED
                hold.swept = True
                swept.append(hold)
        return swept

    def targets(self, order_id: str, hold_id: str | None) -> list[ModelHold] | type[Exception]:
        holds = [h for h in self.holds if h.order_id == order_id]
        if not holds:
            return InputError
        if hold_id is not None:
            holds = [h for h in holds if h.hold_id == hold_id]
            if not holds:
                return InputError
        open_holds = [h for h in holds if self.is_open(h)]
        if open_holds:
            return open_holds
        if any(self.status(h) is HoldStatus.EXPIRED for h in holds):
            return HoldExpiredError
        return HoldResolvedError


def merge(raw: list[tuple[str, str, int]]) -> dict[Pair, int]:
    merged: dict[Pair, int] = {}
    for sku, loc, qty in raw:
        merged[(loc, sku)] = merged.get((loc, sku), 0) + qty
    return dict(sorted(merged.items()))


SIGN = {
    EntryKind.RECEIVE: 1,
    EntryKind.RESTOCK: 1,
    EntryKind.ADJUST: 1,
    EntryKind.TRANSFER_IN: 1,
    EntryKind.SHIP: -1,
    EntryKind.TRANSFER_OUT: -1,
}
"""How each kind of entry moves on-hand stock (conservation counts only these)."""


class LedgerMachine(RuleBasedStateMachine):
    """Drives one ledger and the model side by side. ``new_url`` is set by each test."""

    new_url: Callable[[], str] = staticmethod(lambda: "memory://")  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.ledger: Ledger = open_ledger(type(self).new_url(), clock=self.clock)
        self.model = Model(self.clock)
        self.keys = itertools.count()
        self.done: list[tuple[Callable[[], Any], Any]] = []  # successful calls and results

    def teardown(self) -> None:
        self.ledger.close()

    # -- the frame every call goes through -------------------------------------------------

    def call(self, expected: type[Exception] | None, thunk: Callable[[], Any]) -> Any:
        """Run a call the model predicted: ``expected`` is an error class, or None for success."""
        # That a failed call wrote nothing is checked after every step: the model adds no
        # entries for it, and the entry count must match.
        name = thunk.__code__.co_names[-1]
        if expected is not None:
            event(f"{name}: {expected.__name__}")
            with pytest.raises(expected):
                thunk()
            return None
        event(f"{name}: ok")
        result = thunk()
        self.done.append((thunk, result))
        return result

    def key(self) -> str:
        return f"k{next(self.keys)}"

    # -- what to call: mostly calls that can succeed, now and then anything ----------------

    def wild(self, data: st.DataObject) -> bool:
        """Whether to draw arguments blindly (one time in five) rather than from the state."""
        return data.draw(st.integers(0, 4), label="wild") == 4

    def draw_lines(self, data: st.DataObject, choices: list[tuple[Pair, int]]) -> list[Any]:
        """Lines over ``choices`` (position, units): up to all the units, or one more."""
        if not choices or self.wild(data):
            return data.draw(lines, label="lines")
        picked = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
        return [(pair[1], pair[0], data.draw(st.integers(1, units + 1))) for pair, units in picked]

    def draw_order(self, data: st.DataObject, likely: list[str]) -> str:
        if likely and not self.wild(data):
            return data.draw(st.sampled_from(likely), label="order")
        return data.draw(st.sampled_from(ORDERS), label="order")

    def open_orders(self) -> list[str]:
        return sorted({h.order_id for h in self.model.holds if self.model.is_open(h)})

    def pick_hold(self, order: str, pick: int | None) -> str | None:
        holds = [h for h in self.model.holds if h.order_id == order]
        if pick is None or not holds:
            return None
        return holds[pick % len(holds)].hold_id

    @initialize()
    def stock_up(self) -> None:
        for loc, sku in PAIRS[:4]:
            self.receive(loc, sku, 8)

    # -- rules -----------------------------------------------------------------------------

    @rule(location=st.sampled_from(LOCATIONS), sku=st.sampled_from(SKUS), qty=quantities)
    def receive(self, location: str, sku: str, qty: int) -> None:
        model, pair = self.model, (location, sku)
        key = self.key()
        self.call(None, lambda: self.ledger.receive(location, sku, qty, key=key))
        model.sweep()
        model.locations.add(location)
        model.skus.add(sku)
        model.on_hand[pair] = model.on_hand.get(pair, 0) + qty
        left = qty
        for row in sorted(
            (r for r in model.inbound if r[0] == pair and r[2]), key=lambda r: (r[1], r[3])
        ):
            take = min(left, row[2])
            row[2] -= take
            left -= take
        model.entries += 1

    @rule(
        location=st.sampled_from(LOCATIONS),
        sku=st.sampled_from(SKUS),
        qty=quantities,
        eta=st.sampled_from(HORIZON),
    )
    def expect(self, location: str, sku: str, qty: int, eta: date) -> None:
        model = self.model
        key = self.key()
        self.call(None, lambda: self.ledger.expect(location, sku, qty, eta, key=key))
        model.sweep()
        model.locations.add(location)
        model.skus.add(sku)
        model.inbound.append([(location, sku), eta, qty, len(model.inbound)])
        model.entries += 1

    @rule(data=st.data(), ttl=ttls)
    def reserve(self, data: st.DataObject, ttl: int | None) -> None:
        model = self.model
        order = data.draw(st.sampled_from(ORDERS), label="order")
        raw = self.draw_lines(data, [(pair, model.atp(pair)) for pair in PAIRS if model.atp(pair)])
        wanted = merge(raw)
        expected: type[Exception] | None = None
        if not all(model.known(*pair) for pair in wanted):
            expected = InputError
        elif any(qty > model.atp(pair) for pair, qty in wanted.items()):
            expected = InsufficientStock
        key = self.key()
        hold = self.call(expected, lambda: self.ledger.reserve(order, raw, key=key, ttl=ttl))
        if expected is None:
            model.sweep()
            expires = None if ttl is None else self.clock.now + timedelta(seconds=ttl)
            assert hold.expires == expires
            lines_held = {pair: [qty, 0, 0] for pair, qty in wanted.items()}
            model.holds.append(ModelHold(hold.hold_id, order, lines_held, HoldStatus.OPEN, expires))
            model.entries += len(wanted)

    def has_open_holds(self) -> bool:
        return bool(self.open_orders())

    def has_shipments(self) -> bool:
        return any(f[0] > f[1] for f in self.model.flow.values())

    @precondition(has_open_holds)
    @rule(data=st.data(), pick=st.none() | st.integers(0, 5))
    def release(self, data: st.DataObject, pick: int | None) -> None:
        self.do_release(self.draw_order(data, self.open_orders()), pick)

    @rule(data=st.data(), pick=st.none() | st.integers(0, 5), write_off=st.booleans())
    def misuse(self, data: st.DataObject, pick: int | None, write_off: bool) -> None:
        """Release, ship or take back for any order, with any lines (mostly typed errors)."""
        order = data.draw(st.sampled_from(ORDERS), label="order")
        raw = data.draw(lines, label="lines")
        what = data.draw(st.sampled_from(["release", "ship", "restock"]), label="call")
        if what == "release":
            self.do_release(order, pick)
        elif what == "ship":
            self.do_ship(order, raw, pick)
        else:
            self.do_restock(order, raw, write_off)

    def do_release(self, order: str, pick: int | None) -> None:
        model = self.model
        hold_id = self.pick_hold(order, pick)
        targets = model.targets(order, hold_id)
        expected = targets if isinstance(targets, type) else None
        key = self.key()
        self.call(expected, lambda: self.ledger.release(order, key=key, hold=hold_id))
        if expected is None:
            assert isinstance(targets, list)
            model.sweep()
            for hold in targets:
                for pair, line in hold.lines.items():
                    if hold.remaining(pair):
                        model.entries += 1
                        line[2] += hold.remaining(pair)
                hold.status = HoldStatus.RELEASED

    @precondition(has_open_holds)
    @rule(data=st.data(), pick=st.none() | st.integers(0, 5))
    def ship(self, data: st.DataObject, pick: int | None) -> None:
        order = self.draw_order(data, self.open_orders())
        held: dict[Pair, int] = {}
        for hold in self.model.holds:
            if hold.order_id == order and self.model.is_open(hold):
                for pair in hold.lines:
                    held[pair] = held.get(pair, 0) + hold.remaining(pair)
        raw = self.draw_lines(data, sorted((pair, n) for pair, n in held.items() if n))
        self.do_ship(order, raw, pick)

    def do_ship(self, order: str, raw: list[Any], pick: int | None) -> None:
        model = self.model
        hold_id = self.pick_hold(order, pick)
        wanted = merge(raw)
        expected: type[Exception] | None = None
        targets: list[ModelHold] = []
        if not all(model.known(*pair) for pair in wanted):
            expected = InputError
        else:
            found = model.targets(order, hold_id)
            if isinstance(found, type):
                expected = found
            else:
                targets = found
                for pair, qty in wanted.items():
                    if qty > sum(h.remaining(pair) for h in targets if pair in h.lines):
                        expected = InsufficientStock
        key = self.key()
        self.call(expected, lambda: self.ledger.ship(order, raw, key=key, hold=hold_id))
        if expected is None:
            model.sweep()
            for pair, qty in wanted.items():
                left = qty
                for hold in targets:
                    if left and pair in hold.lines and hold.remaining(pair):
                        take = min(left, hold.remaining(pair))
                        left -= take
                        hold.lines[pair][1] += take
                        model.entries += 1
                model.on_hand[pair] -= qty
                model.flow.setdefault((order, pair[1]), [0, 0])[0] += qty
            for hold in targets:
                if not any(hold.remaining(pair) for pair in hold.lines):
                    hold.status = HoldStatus.SHIPPED

    @precondition(has_shipments)
    @rule(data=st.data(), write_off=st.booleans())
    def restock(self, data: st.DataObject, write_off: bool) -> None:
        shipped = {key: f[0] - f[1] for key, f in self.model.flow.items() if f[0] > f[1]}
        order = self.draw_order(data, sorted({order for order, _ in shipped}))
        here = sorted(self.model.locations)
        choices = [
            ((data.draw(st.sampled_from(here)), sku), units)
            for (o, sku), units in sorted(shipped.items())
            if o == order
        ]
        self.do_restock(order, self.draw_lines(data, choices), write_off)

    def do_restock(self, order: str, raw: list[Any], write_off: bool) -> None:
        model = self.model
        shipped = {key: f[0] - f[1] for key, f in model.flow.items() if f[0] > f[1]}
        wanted = merge(raw)
        per_sku: dict[str, int] = {}
        for (_, sku), qty in wanted.items():
            per_sku[sku] = per_sku.get(sku, 0) + qty
        expected: type[Exception] | None = None
        if not all(model.known(*pair) for pair in wanted) or any(
            qty > shipped.get((order, sku), 0) for sku, qty in per_sku.items()
        ):
            expected = InputError
        key = self.key()
        disposition: Any = "write_off" if write_off else "restock"
        self.call(
            expected, lambda: self.ledger.restock(order, raw, key=key, disposition=disposition)
        )
        if expected is None:
            model.sweep()
            for pair, qty in wanted.items():
                if not write_off:
                    model.on_hand[pair] = model.on_hand.get(pair, 0) + qty
                model.entries += 1
            for sku, qty in per_sku.items():
                model.flow[(order, sku)][1] += qty

    @rule(location=locations, sku=skus, delta=st.integers(-6, 6).filter(bool))
    def adjust(self, location: str, sku: str, delta: int) -> None:
        model, pair = self.model, (location, sku)
        expected: type[Exception] | None = None
        if not model.known(location, sku):
            expected = InputError
        elif delta < 0 and model.on_hand.get(pair, 0) + delta < model.reserved(pair):
            expected = InsufficientStock
        key = self.key()
        self.call(
            expected, lambda: self.ledger.adjust(location, sku, delta, reason="count", key=key)
        )
        if expected is None:
            model.sweep()
            model.on_hand[pair] = model.on_hand.get(pair, 0) + delta
            model.entries += 1

    @rule(data=st.data(), qty=quantities)
    def transfer(self, data: st.DataObject, qty: int) -> None:
        model = self.model
        if self.wild(data) or len(model.locations) < 2:
            sku, source, destination = data.draw(st.tuples(skus, locations, locations))
        else:
            sku = data.draw(st.sampled_from(sorted(model.skus)))
            source, destination = data.draw(
                st.lists(st.sampled_from(sorted(model.locations)), min_size=2, max_size=2)
            )
        expected: type[Exception] | None = None
        if source == destination or not (
            model.known(source, sku) and destination in model.locations
        ):
            expected = InputError
        elif qty > model.on_hand.get((source, sku), 0) - model.reserved((source, sku)):
            expected = InsufficientStock
        key = self.key()
        self.call(expected, lambda: self.ledger.transfer(sku, source, destination, qty, key=key))
        if expected is None:
            model.sweep()
            model.on_hand[(source, sku)] -= qty
            model.on_hand[(destination, sku)] = model.on_hand.get((destination, sku), 0) + qty
            model.entries += 2

    @rule(location=locations, sku=skus, qty=st.integers(0, 4))
    def set_safety_stock(self, location: str, sku: str, qty: int) -> None:
        model = self.model
        expected = None if model.known(location, sku) else InputError
        key = self.key()
        self.call(expected, lambda: self.ledger.set_safety_stock(location, sku, qty, key=key))
        if expected is None:
            model.sweep()
            model.safety[(location, sku)] = qty
            model.entries += 1

    @rule(seconds=st.integers(1, 100))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_holds(self) -> None:
        expired = self.ledger.expire_holds()
        swept = self.model.sweep()
        assert sorted(h.hold_id for h in expired) == sorted(h.hold_id for h in swept)

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A call made again with its key returns its first result and changes nothing."""
        if self.done:
            thunk, result = data.draw(st.sampled_from(self.done))
            before = self.ledger.entry_count()
            assert thunk() == result
            assert self.ledger.entry_count() == before

    @rule(data=st.data())
    def reuse_key(self, data: st.DataObject) -> None:
        """A used key with other arguments is a conflict and changes nothing."""
        if self.done:
            _, result = data.draw(st.sampled_from(self.done))
            before = self.ledger.entry_count()
            with pytest.raises(IdempotencyConflict):
                self.ledger.receive("L1", "A", 10_000, key=result.key)
            assert self.ledger.entry_count() == before

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        model, day = self.model, HORIZON[2]
        # Stock per position, now and forward-looking.
        now = {(p.location_id, p.sku): p for p in self.ledger.positions()}
        ahead = {(p.location_id, p.sku): p.available for p in self.ledger.positions(as_of=day)}
        for pair in PAIRS:
            position = now.get(pair)
            have = (0, 0, 0, 0, 0, 0)
            if position is not None:
                have = (
                    position.on_hand,
                    position.reserved,
                    position.inbound,
                    position.safety_stock,
                    position.available,
                    ahead[pair],
                )
            want = (
                model.on_hand.get(pair, 0),
                model.reserved(pair),
                model.inbound_total(pair),
                model.safety.get(pair, 0),
                model.atp(pair),
                model.atp(pair, day),
            )
            assert have == want, f"{pair}: ledger {have} != model {want}"
            assert have[0] >= 0
        # Conservation: on hand = receipts + restocks +/- adjustments - shipments +/- transfers,
        # and exactly the entries the model expects (nothing applied twice, nothing lost).
        entries = self.ledger.entries()
        moved: dict[Pair, int] = {}
        for entry in entries:
            pair = (entry.location_id, entry.sku)
            moved[pair] = moved.get(pair, 0) + SIGN.get(entry.kind, 0) * entry.qty
        for pair in PAIRS:
            assert moved.get(pair, 0) == model.on_hand.get(pair, 0)
        assert len(entries) == model.entries, "entries written != entries expected"
        # Holds: status and shipped units per line.
        for order in ORDERS:
            have_holds = [
                (h.hold_id, h.status, tuple(line.shipped for line in h.lines))
                for h in self.ledger.holds(order)
            ]
            want_holds = [
                (h.hold_id, model.status(h), tuple(line[1] for line in h.lines.values()))
                for h in model.holds
                if h.order_id == order
            ]
            assert have_holds == want_holds
        # Totals agree with the entries, holds and expected receipts.
        assert self.ledger.verify() == []


def run_machine(new_url: Callable[[], str], max_examples: int, steps: int = 50) -> None:
    machine = type("Machine", (LedgerMachine,), {"new_url": staticmethod(new_url)})
    run_state_machine_as_test(
        machine,  # type: ignore[arg-type]
        settings=settings(PROFILE, max_examples=max_examples, stateful_step_count=steps),
    )


@pytest.mark.slow
def test_memory_ledger_matches_model() -> None:
    run_machine(lambda: "memory://", examples(ci=200, dev=40))


@pytest.mark.slow
def test_sqlite_ledger_matches_model(tmp_path: Path) -> None:
    # Every example starts from a copy of one empty ledger file (cheaper than creating the
    # schema 200 times); synchronous=NORMAL gives the same semantics without an fsync per commit.
    template = tmp_path / "empty.db"
    open_ledger(f"sqlite:///{template}").close()
    counter = itertools.count()

    def new_url() -> str:
        path = tmp_path / f"{next(counter)}.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}?synchronous=NORMAL"

    run_machine(new_url, examples(ci=200, dev=25))


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_ledger_matches_model(pg_server: PostgresServer) -> None:
    run_machine(pg_server.reusable_url(), examples(ci=10, dev=4))
