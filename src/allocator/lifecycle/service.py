"""The order book: operations that move an order and the inventory ledger together.

:class:`Lifecycle` holds the orders (in an :class:`~allocator.lifecycle.store.OrderStore`), the
ledger, and a sourcing index of the network. Each operation

1. reads the order and, when its key was already used, returns the recorded result (the same
   key with other arguments raises :class:`~allocator.errors.IdempotencyConflict`);
2. checks the transition table and the arguments; a refused operation raises before anything is
   written (:class:`~allocator.lifecycle.machine.OrderTransitionError` for the state,
   :class:`~allocator.errors.InputError` for the arguments);
3. makes its ledger calls, each under a key derived from the operation's key, so a retry after a
   crash replays them instead of repeating them;
4. reconciles the order's reserved units with what the ledger holds for it, applies the event,
   and stores the record with a compare-and-set on its version.

Between steps 3 and 4 the ledger is ahead of the order; retrying the operation with the same key
(or, with no key, the next operation of the same kind) completes it. Reserved stock therefore
always equals the allocated-but-unshipped units of the orders once operations have completed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from allocator.errors import IdempotencyConflict, InputError, InsufficientStock
from allocator.inventory import HoldStatus, Ledger
from allocator.lifecycle import views
from allocator.lifecycle.machine import TRANSITIONS, Event, OrderTransitionError, State
from allocator.lifecycle.record import Bucket, Change, OrderRecord, apply, capture_record
from allocator.lifecycle.store import OrderStore, StaleOrderError, open_store
from allocator.model import Network, Order, OrderLine
from allocator.realtime import (
    Sourcing,
    SourcingIndex,
    _index_for,
    read_atp,
    source,
    source_and_reserve,
    suborder,
)
from allocator.rules.schema import RuleSet

__all__ = ["Lifecycle", "OrderBook"]

log = logging.getLogger("allocator").getChild("lifecycle")

Clock = Callable[[], datetime]
Pair = tuple[str, str]  # (location_id, sku), as in the ledger
LineQty = tuple[str, int]  # (line_id, qty)
Shipment = tuple[str, str, int]  # (line_id, location_id, qty)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _fingerprint(op: str, args: Mapping[str, Any]) -> str:
    text = json.dumps({"op": op, **args}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _ledger_key(order_id: str, key: str, step: str) -> str:
    text = f"lc/{order_id}/{key}/{step}"
    if len(text) <= 200:
        return text
    return "lc/" + hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _positive(value: object, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"expected a whole number of units > 0, got {value!r}", source=source)
    return value


@dataclass(slots=True)
class _Outcome:
    """What an operation decided: the event to record, its changes and details."""

    event: Event
    changes: list[Change] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Target:
    """Per line, the allocation and backorder an operation leaves (internal)."""

    allocated: dict[str, dict[str, int]]
    backordered: dict[str, int]
    cancelled: dict[str, int]


class Lifecycle:
    """Orders from capture to delivery and back, over an inventory ledger.

    Parameters
    ----------
    ledger
        The inventory ledger that holds the stock.
    network
        The network (locations, capacities and cost model) or a prebuilt
        :class:`~allocator.realtime.SourcingIndex`.
    rules
        The rule set sourcing obeys (``RuleSet()`` by default).
    store
        Where orders are kept: an :class:`~allocator.lifecycle.store.OrderStore` or a URL
        (``"memory://"``, the default, or ``"sqlite:///orders.db"``).
    clock
        Returns the current time (timezone-aware); the wall clock by default. Share one clock
        with the ledger in simulations.

    Notes
    -----
    Threads of one process may share a lifecycle (operations on one order are serialised).
    Processes sharing a SQLite order store are kept apart by the version check: the loser of a
    race on one order gets :class:`~allocator.lifecycle.store.StaleOrderError` after its ledger
    calls, and must call the same operation again with the same key, which replays those calls
    and stores the order.

    Examples
    --------
    >>> book = Lifecycle(ledger, network)                          # doctest: +SKIP
    >>> book.capture(order, key="web-123")                         # doctest: +SKIP
    >>> book.allocate("o1", key="alloc-1").state                   # doctest: +SKIP
    <State.ALLOCATED: 'allocated'>
    """

    def __init__(
        self,
        ledger: Ledger,
        network: Network | SourcingIndex,
        *,
        rules: RuleSet | None = None,
        store: OrderStore | str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.ledger = ledger
        self.index = _index_for(network, rules)
        self.store = store if isinstance(store, OrderStore) else open_store(store)
        self._clock: Clock = clock if clock is not None else _utc_now
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, order_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(order_id)
            if lock is None:
                lock = self._locks[order_id] = threading.Lock()
            return lock

    def now(self) -> datetime:
        """The lifecycle's clock."""
        value = self._clock()
        if value.tzinfo is None:
            raise InputError("the clock must return timezone-aware datetimes", source="clock")
        return value

    # -- reading ------------------------------------------------------------------------------

    def get(self, order_id: str) -> OrderRecord:
        """The record of an order.

        Raises
        ------
        InputError
            When the order is unknown.
        """
        record = self.store.get(order_id)
        if record is None:
            raise InputError(f"unknown order {order_id!r}", source="order_id")
        return record

    def status(self, order_id: str) -> State:
        """The state of an order."""
        return self.get(order_id).state

    def history(self, order_id: str) -> pl.DataFrame:
        """An order's history as a frame: seq, event, at, state, key, actor, reason, changes."""
        return views.history_frame(self.get(order_id))

    def orders_of(self, customer_id: str) -> list[OrderRecord]:
        """A customer's orders (by ``Order.customer_id``), oldest first."""
        return self.store.by_customer(customer_id)

    def records(self) -> list[OrderRecord]:
        """Every order, by id."""
        return list(self.store.records())

    # -- the operation frame ------------------------------------------------------------------

    def _run(
        self,
        order_id: str,
        op: Event,
        args: Mapping[str, Any],
        body: Callable[[OrderRecord, Callable[[str], str]], _Outcome],
        *,
        key: str | None,
        actor: str | None,
        reason: str | None,
    ) -> OrderRecord:
        with self._lock(order_id):
            return self._run_locked(order_id, op, args, body, key=key, actor=actor, reason=reason)

    def _run_locked(
        self,
        order_id: str,
        op: Event,
        args: Mapping[str, Any],
        body: Callable[[OrderRecord, Callable[[str], str]], _Outcome],
        *,
        key: str | None,
        actor: str | None,
        reason: str | None,
    ) -> OrderRecord:
        record = self.get(order_id)
        fingerprint = _fingerprint(op.value, args)
        if key is not None:
            prior = record.entry_for_key(key)
            if prior is not None:
                if prior.fingerprint != fingerprint:
                    raise IdempotencyConflict(
                        f"key {key!r} was already used on order {order_id!r} for"
                        f" {prior.event.value} with other arguments"
                    )
                return record
        if (record.state, op) not in TRANSITIONS:
            raise OrderTransitionError(record.state, op, order_id)
        base = key if key is not None else f"v{record.version + 1}-{op.value}"

        def ledger_key(step: str) -> str:
            return _ledger_key(order_id, base, step)

        outcome = body(record, ledger_key)
        new = apply(
            record,
            outcome.event,
            outcome.changes,
            at=self.now(),
            key=key,
            actor=actor,
            reason=reason,
            fingerprint=fingerprint,
            details=outcome.details,
        )
        self.store.put(new, expected_version=record.version)
        log.debug("order %s: %s -> %s", order_id, outcome.event.value, new.state.value)
        return new

    # -- ledger helpers -----------------------------------------------------------------------

    def _held(self, order_id: str) -> dict[Pair, int]:
        """Units the ledger holds for the order now, per (location, sku)."""
        out: dict[Pair, int] = {}
        for hold in self.ledger.holds(order_id):
            if hold.status is HoldStatus.OPEN:
                for line in hold.lines:
                    if line.remaining:
                        out[line.pair] = out.get(line.pair, 0) + line.remaining
        return out

    def _atp(self, skus: Iterable[str]) -> dict[Pair, int]:
        return read_atp(self.ledger, list(dict.fromkeys(skus)), self.index.location_ids)

    def _settle(
        self,
        record: OrderRecord,
        keep: Mapping[str, Mapping[str, int]],
        wanted: Mapping[str, int],
        ledger_key: Callable[[str], str],
        *,
        from_backorder: Mapping[str, int] | None = None,
        exclude: Collection[str] = (),
        refuse_rejection: bool = False,
    ) -> _Target:
        """Keep some reserved units where they are, source ``wanted`` more, and reserve.

        ``keep`` is per line the units that stay reserved per location (every other reserved
        unit of the order is given back); ``wanted`` is per line the units to source now, of
        which ``from_backorder`` were backordered. The ledger ends up holding exactly the kept
        and the newly sourced units, and the returned target says per line where they are;
        units that found no stock are backordered (or, for an order without backorders,
        cancelled).

        Raises
        ------
        InsufficientStock
            With ``refuse_rejection``, when an order that allows no backorders cannot get its
            wanted units; then nothing was written.
        """
        order = record.order
        excluded = {*record.excluded, *exclude}
        held = record.allocated_positions()
        skus = {line.sku for line in record.lines}
        kept: dict[Pair, int] = {}
        committed: set[str] = set()
        for line in record.lines:
            for loc, units in keep.get(line.line_id, {}).items():
                if units > 0:
                    kept[(loc, line.sku)] = kept.get((loc, line.sku), 0) + units
                    committed.add(loc)
        decision: Sourcing | None = None
        if any(v > 0 for v in wanted.values()):
            atp = self._atp(skus)
            for pair, units in held.items():  # what the order gives back is available to it
                freed = units - kept.get(pair, 0)
                if freed > 0:
                    atp[pair] = atp.get(pair, 0) + freed
            decision = source(
                suborder(order, wanted),
                self.index,
                atp=atp,
                exclude=excluded,
                committed=() if self._ship_complete(order) else committed,
            )
            if decision.rejected and refuse_rejection:
                raise InsufficientStock(
                    f"order {order.order_id!r} allows no backorders and its units cannot all"
                    " be sourced now; nothing was changed"
                )
        target: dict[Pair, int] = dict(kept)
        if decision is not None:
            for sku, loc, qty in decision.reservation():
                target[(loc, sku)] = target.get((loc, sku), 0) + qty
        needed = {
            line.line_id: sum(keep.get(line.line_id, {}).values()) + wanted.get(line.line_id, 0)
            for line in record.lines
        }
        self._reserve_exactly(record, held, target, ledger_key, wanted, needed, excluded, committed)
        now_held = self._held(order.order_id)
        preferred: dict[str, dict[str, int]] = {lid: dict(per) for lid, per in keep.items() if per}
        if decision is not None:
            for a in decision.assignments:
                per = preferred.setdefault(a.line_id, {})
                per[a.location_id] = per.get(a.location_id, 0) + a.qty
        return self._distribute(record, now_held, keep, wanted, preferred, from_backorder)

    @staticmethod
    def _ship_complete(order: Order) -> bool:
        return bool(order.ship_complete)

    def _reserve_exactly(
        self,
        record: OrderRecord,
        held: Mapping[Pair, int],
        target: Mapping[Pair, int],
        ledger_key: Callable[[str], str],
        wanted: Mapping[str, int],
        needed: Mapping[str, int],
        excluded: Collection[str],
        committed: Collection[str],
    ) -> None:
        """Make the ledger hold ``target`` for the order (it holds ``held`` now).

        When stock moved since it was read, the units that could not be reserved as planned are
        sourced again for real (``wanted`` when only more were asked for; else ``needed``, every
        unit the order should hold).
        """
        order_id = record.order_id
        target = {p: q for p, q in target.items() if q > 0}
        if dict(held) == target:
            return
        only_more = all(target.get(p, 0) >= q for p, q in held.items())
        if only_more:
            extra = [
                (sku, loc, q - held.get((loc, sku), 0))
                for (loc, sku), q in sorted(target.items())
                if q > held.get((loc, sku), 0)
            ]
            try:
                self.ledger.reserve(order_id, extra, key=ledger_key("reserve"))
            except InsufficientStock:
                # Stock moved since it was read: source the wanted units again, for real.
                self._recover(record, wanted, ledger_key, excluded, committed)
            except IdempotencyConflict:
                pass  # a replay whose sourcing came out differently: the first hold stands
            return
        if held:
            self.ledger.release(order_id, key=ledger_key("release"))
        lines = [(sku, loc, q) for (loc, sku), q in sorted(target.items())]
        if not lines:
            return
        try:
            self.ledger.reserve(order_id, lines, key=ledger_key("reserve"))
        except InsufficientStock:
            self._recover(record, needed, ledger_key, excluded, ())
        except IdempotencyConflict:
            pass

    def _recover(
        self,
        record: OrderRecord,
        units: Mapping[str, int],
        ledger_key: Callable[[str], str],
        excluded: Collection[str],
        committed: Collection[str],
    ) -> None:
        if not any(v > 0 for v in units.values()):
            return
        source_and_reserve(
            suborder(record.order, units),
            self.ledger,
            network=self.index,
            key=ledger_key("recover"),
            exclude=excluded,
            committed=committed,
        )

    def _distribute(
        self,
        record: OrderRecord,
        held: Mapping[Pair, int],
        keep: Mapping[str, Mapping[str, int]],
        wanted: Mapping[str, int],
        preferred: Mapping[str, Mapping[str, int]],
        from_backorder: Mapping[str, int] | None = None,
    ) -> _Target:
        """Spread the units the ledger holds over the lines: preferred places first.

        Units of a line that were kept or wanted but are not held end up backordered (or
        cancelled, for an order without backorders); ``from_backorder`` units of the wanted
        ones were backordered before.
        """
        left = dict(held)
        allocated: dict[str, dict[str, int]] = {}
        need: dict[str, int] = {}
        for line in record.lines:
            lid = line.line_id
            need[lid] = sum(keep.get(lid, {}).values()) + wanted.get(lid, 0)
            per: dict[str, int] = {}
            for loc, units in sorted(preferred.get(lid, {}).items()):
                take = min(units, left.get((loc, line.sku), 0), need[lid])
                if take > 0:
                    per[loc] = per.get(loc, 0) + take
                    left[(loc, line.sku)] -= take
                    need[lid] -= take
            allocated[lid] = per
        for line in record.lines:
            lid = line.line_id
            for (loc, sku), units in sorted(left.items()):
                if need[lid] <= 0:
                    break
                if sku == line.sku and units > 0:
                    take = min(units, need[lid])
                    allocated[lid][loc] = allocated[lid].get(loc, 0) + take
                    left[(loc, sku)] -= take
                    need[lid] -= take
        stray = {p: q for p, q in left.items() if q > 0}
        if stray:  # pragma: no cover - the ledger holds more than the order wants
            log.warning("order %s: the ledger holds %s beyond the order", record.order_id, stray)
        backordered: dict[str, int] = {}
        cancelled: dict[str, int] = {}
        allow = record.order.allow_backorder
        taken = from_backorder or {}
        for line in record.lines:
            lid = line.line_id
            short = need[lid]
            backordered[lid] = line.backordered - taken.get(lid, 0) + (short if allow else 0)
            cancelled[lid] = 0 if allow else short
        return _Target(allocated, backordered, cancelled)

    @staticmethod
    def _changes_to(record: OrderRecord, target: _Target) -> list[Change]:
        """The changes that move each line's allocation and backorder to ``target``."""
        changes: list[Change] = []
        for line in record.lines:
            lid = line.line_id
            if lid not in target.allocated:
                continue
            new_alloc = target.allocated[lid]
            locations = sorted(set(line.allocated) | set(new_alloc))
            for loc in locations:
                before = line.allocated.get(loc, 0)
                after = new_alloc.get(loc, 0)
                rel = line.released.get(loc, 0)
                pick = line.picked.get(loc, 0)
                new_rel = min(rel, after)
                new_pick = min(pick, new_rel)
                if after != before:
                    changes.append(Change(lid, Bucket.ALLOCATED, after - before, loc))
                if new_rel != rel:
                    changes.append(Change(lid, Bucket.RELEASED, new_rel - rel, loc))
                if new_pick != pick:
                    changes.append(Change(lid, Bucket.PICKED, new_pick - pick, loc))
            if lid in target.backordered and target.backordered[lid] != line.backordered:
                changes.append(
                    Change(lid, Bucket.BACKORDERED, target.backordered[lid] - line.backordered)
                )
            if target.cancelled.get(lid):
                changes.append(Change(lid, Bucket.CANCELLED, target.cancelled[lid]))
        return changes

    # -- capture and allocate -----------------------------------------------------------------

    def capture(
        self,
        order: Order,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        allocate: bool = False,
        exchange_of: str | None = None,
    ) -> OrderRecord:
        """Take in a new order from any channel (``order.channel`` says which).

        Parameters
        ----------
        order
            The order (its id must be new, unless this is a replay of the same capture).
        key
            Idempotency key.
        actor, reason
            Who captured it, and a note.
        allocate
            Source and reserve it straight away (see :meth:`allocate`).
        exchange_of
            The order this one replaces (set by :meth:`exchange`).

        Returns
        -------
        OrderRecord

        Raises
        ------
        IdempotencyConflict
            When an order with this id was captured with other contents.
        InputError
            When a pickup order names an unknown store or one that cannot hand orders over.
        """
        if not isinstance(order, Order):
            raise InputError(f"expected an Order, got {type(order).__name__}", source="order")
        fingerprint = _fingerprint("capture", {"order": order.model_dump(mode="json")})
        existing = self.store.get(order.order_id)
        if existing is None:
            self._check_pickup(order)
            record = capture_record(
                order,
                self.now(),
                key=key,
                actor=actor,
                reason=reason,
                fingerprint=fingerprint,
                exchange_of=exchange_of,
            )
            try:
                self.store.put(record, expected_version=0)
            except StaleOrderError:
                existing = self.store.get(order.order_id)
                if existing is None:  # pragma: no cover - a store that lost a write
                    raise
        if existing is not None:
            if existing.history[0].fingerprint != fingerprint:
                raise IdempotencyConflict(
                    f"order {order.order_id!r} was already captured with other contents"
                )
            record = existing
        if allocate and record.state is State.CREATED:
            return self.allocate(
                order.order_id, key=None if key is None else f"{key}/allocate", actor=actor
            )
        return record

    def _check_pickup(self, order: Order) -> None:
        if order.fulfillment == "pickup":
            pos = self.index.location_index.get(order.pickup_location_id or "")
            if pos is None or not self.index.can_pickup[pos]:
                raise InputError(
                    f"location {order.pickup_location_id!r} is unknown or cannot hand over"
                    " pickup orders",
                    source="order",
                    column="pickup_location_id",
                )

    def place(
        self, order: Order, *, key: str | None = None, actor: str | None = None
    ) -> OrderRecord:
        """Capture an order and allocate it (:meth:`capture` with ``allocate=True``)."""
        return self.capture(order, key=key, actor=actor, allocate=True)

    def allocate(
        self,
        order_id: str,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Source a captured order optimally against current stock and reserve it.

        Units that find no stock are backordered; an order that allows no backorders and cannot
        be served in full is rejected (state ``rejected``, nothing reserved).
        """

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            wanted = {line.line_id: line.pending for line in record.lines if line.pending > 0}
            result = source_and_reserve(
                suborder(record.order, wanted),
                self.ledger,
                network=self.index,
                key=ledger_key("reserve"),
                exclude=record.excluded,
            )
            if result.rejected:
                return _Outcome(Event.REJECT, details={"why": "cannot be served in full"})
            target = self._distribute(
                record, self._held(record.order_id), {}, wanted, _by_line(result)
            )
            details = {"cost": round(result.cost.total, 6), "locations": list(result.locations)}
            return _Outcome(Event.ALLOCATE, self._changes_to(record, target), details)

        return self._run(order_id, Event.ALLOCATE, {}, body, key=key, actor=actor, reason=reason)

    # -- fulfilment ---------------------------------------------------------------------------

    def release(
        self,
        order_id: str,
        location: str | None = None,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Release reserved units to their location (all locations, or one) for fulfilment."""

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            changes = []
            for line in record.lines:
                for loc, units in sorted(line.allocated.items()):
                    if location is not None and loc != location:
                        continue
                    more = units - line.released.get(loc, 0)
                    if more > 0:
                        changes.append(Change(line.line_id, Bucket.RELEASED, more, loc))
            if not changes:
                raise InputError(
                    f"order {order_id!r} has no reserved units to release"
                    + (f" at {location!r}" if location else ""),
                    source="location",
                )
            return _Outcome(Event.RELEASE, changes, {"location": location})

        return self._run(
            order_id,
            Event.RELEASE,
            {"location": location},
            body,
            key=key,
            actor=actor,
            reason=reason,
        )

    def pick(
        self,
        order_id: str,
        location: str | None = None,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Record that released units were picked at their location (all, or one location)."""

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            changes = []
            for line in record.lines:
                for loc, units in sorted(line.released.items()):
                    if location is not None and loc != location:
                        continue
                    more = units - line.picked.get(loc, 0)
                    if more > 0:
                        changes.append(Change(line.line_id, Bucket.PICKED, more, loc))
            if not changes:
                raise InputError(
                    f"order {order_id!r} has no released units to pick", source="location"
                )
            return _Outcome(Event.PICK, changes, {"location": location})

        return self._run(
            order_id, Event.PICK, {"location": location}, body, key=key, actor=actor, reason=reason
        )

    def ship(
        self,
        order_id: str,
        lines: Sequence[Shipment] | None = None,
        *,
        location: str | None = None,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Ship reserved units (full or partial, from one location or several).

        Parameters
        ----------
        order_id
            The order.
        lines
            ``[(line_id, location_id, qty), ...]``; by default every reserved unit (at
            ``location`` only, when given).
        location
            With ``lines=None``: ship only what is reserved at this location.
        key, actor, reason
            Idempotency key, who, why.

        Raises
        ------
        InputError
            When a line ships more than it has reserved at the location.
        """
        wanted = _shipments(lines)

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            plan = wanted
            if plan is None:
                plan = [
                    (line.line_id, loc, units)
                    for line in record.lines
                    for loc, units in sorted(line.allocated.items())
                    if location is None or loc == location
                ]
            if not plan:
                raise InputError(f"order {order_id!r} has nothing reserved to ship", source="lines")
            per_line: dict[tuple[str, str], int] = {}
            for lid, loc, qty in plan:
                per_line[(lid, loc)] = per_line.get((lid, loc), 0) + qty
            changes: list[Change] = []
            ledger_lines: dict[Pair, int] = {}
            for row, ((lid, loc), qty) in enumerate(per_line.items(), start=1):
                line = record.line(lid)
                have = line.allocated.get(loc, 0)
                if qty > have:
                    raise InputError(
                        f"line {lid!r} has {have} reserved at {loc!r}, cannot ship {qty}",
                        source="lines",
                        row=row,
                        column="qty",
                    )
                rel = line.released.get(loc, 0)
                pick = line.picked.get(loc, 0)
                changes.append(Change(lid, Bucket.ALLOCATED, -qty, loc))
                if rel:
                    changes.append(Change(lid, Bucket.RELEASED, -min(rel, qty), loc))
                if pick:
                    changes.append(Change(lid, Bucket.PICKED, -min(pick, qty), loc))
                changes.append(Change(lid, Bucket.SHIPPED, qty, loc))
                ledger_lines[(loc, line.sku)] = ledger_lines.get((loc, line.sku), 0) + qty
            self.ledger.ship(
                order_id,
                [(sku, loc, q) for (loc, sku), q in sorted(ledger_lines.items())],
                key=ledger_key("ship"),
            )
            return _Outcome(Event.SHIP, changes)

        args = {"lines": wanted, "location": location}
        return self._run(order_id, Event.SHIP, args, body, key=key, actor=actor, reason=reason)

    def deliver(
        self,
        order_id: str,
        lines: Sequence[LineQty] | None = None,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Record delivery of shipped units (``[(line_id, qty)]``; by default all of them)."""
        wanted = _line_qtys(lines)

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            plan = wanted
            if plan is None:
                plan = [
                    (line.line_id, line.shipped_units - line.delivered)
                    for line in record.lines
                    if line.shipped_units > line.delivered
                ]
            if not plan:
                raise InputError(
                    f"order {order_id!r} has nothing shipped to deliver", source="lines"
                )
            changes = []
            for row, (lid, qty) in enumerate(plan, start=1):
                line = record.line(lid)
                if qty > line.shipped_units - line.delivered:
                    raise InputError(
                        f"line {lid!r} has {line.shipped_units - line.delivered} units shipped"
                        f" and not delivered, cannot deliver {qty}",
                        source="lines",
                        row=row,
                        column="qty",
                    )
                changes.append(Change(lid, Bucket.DELIVERED, qty))
            return _Outcome(Event.DELIVER, changes)

        return self._run(
            order_id, Event.DELIVER, {"lines": wanted}, body, key=key, actor=actor, reason=reason
        )

    # -- changes --------------------------------------------------------------------------------

    def _take_units(
        self, record: OrderRecord, cuts: Mapping[str, int]
    ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """Where ``cuts`` units per line come from: pending, then backorders, then reservations.

        Reserved units are taken from locations not yet released first (then not picked), each
        in location order. Returns the reservations kept per line and backorders taken per line.
        """
        keep: dict[str, dict[str, int]] = {}
        from_backorder: dict[str, int] = {}
        for line in record.lines:
            lid = line.line_id
            keep[lid] = dict(line.allocated)
            cut = cuts.get(lid, 0)
            if not cut:
                continue
            cut -= min(cut, line.pending)
            take_bo = min(cut, line.backordered)
            from_backorder[lid] = take_bo
            cut -= take_bo
            order = sorted(
                line.allocated,
                key=lambda loc: (line.released.get(loc, 0) > 0, line.picked.get(loc, 0) > 0, loc),
            )
            for loc in order:
                if cut <= 0:
                    break
                take = min(cut, keep[lid][loc])
                keep[lid][loc] -= take
                cut -= take
        return keep, from_backorder

    def cancel(
        self,
        order_id: str,
        lines: Sequence[LineQty] | None = None,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Cancel the whole order or some units of its lines; their reservations are released.

        Parameters
        ----------
        lines
            ``[(line_id, qty), ...]`` to cancel; by default every unit not shipped yet.
        """
        wanted = _line_qtys(lines)

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            plan = wanted
            if plan is None:
                plan = [(line.line_id, line.unshipped) for line in record.lines if line.unshipped]
            cuts: dict[str, int] = {}
            for row, (lid, qty) in enumerate(plan, start=1):
                line = record.line(lid)
                cuts[lid] = cuts.get(lid, 0) + qty
                if cuts[lid] > line.unshipped:
                    raise InputError(
                        f"line {lid!r} has {line.unshipped} units not shipped, cannot cancel"
                        f" {cuts[lid]}",
                        source="lines",
                        row=row,
                        column="qty",
                    )
            if not cuts:
                raise InputError(f"order {order_id!r} has nothing left to cancel", source="lines")
            keep, from_bo = self._take_units(record, cuts)
            target = self._settle(record, keep, {}, ledger_key, from_backorder=from_bo)
            changes = self._changes_to(record, target)
            changes += [Change(lid, Bucket.CANCELLED, qty) for lid, qty in cuts.items()]
            return _Outcome(Event.CANCEL, changes)

        return self._run(
            order_id, Event.CANCEL, {"lines": wanted}, body, key=key, actor=actor, reason=reason
        )

    def change_quantity(
        self,
        order_id: str,
        line_id: str,
        qty: int,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Set how many units a line asks for (before it is released to a location).

        Fewer units give reservations back; more are sourced at once (for a ship-complete order
        the whole order is sourced again, as one shipment).

        Raises
        ------
        InsufficientStock
            When an order that allows no backorders cannot get the extra units; nothing changes.
        """
        qty = _positive(qty, "qty")

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            line = record.line(line_id)
            if qty < line.shipped_units:
                raise InputError(
                    f"line {line_id!r} already shipped {line.shipped_units} units", source="qty"
                )
            delta = qty - line.live
            if delta == 0:
                raise InputError(f"line {line_id!r} already asks for {qty} units", source="qty")
            ordered = [Change(line_id, Bucket.ORDERED, delta)]
            if record.state is State.CREATED:
                return _Outcome(Event.CHANGE_QUANTITY, ordered, {"line_id": line_id, "qty": qty})
            grown = _grow(record, line_id, delta)
            if delta < 0:
                keep, from_bo = self._take_units(record, {line_id: -delta})
                target = self._settle(record, keep, {}, ledger_key, from_backorder=from_bo)
            elif self._ship_complete(record.order):
                wanted = {ln.line_id: ln.unshipped for ln in grown.lines if ln.unshipped}
                from_bo = {ln.line_id: ln.backordered for ln in grown.lines}
                target = self._settle(
                    grown, {}, wanted, ledger_key, from_backorder=from_bo, refuse_rejection=True
                )
            else:
                keep = {ln.line_id: dict(ln.allocated) for ln in record.lines}
                target = self._settle(
                    grown, keep, {line_id: delta}, ledger_key, refuse_rejection=True
                )
            changes = ordered + self._changes_to(grown, target)
            return _Outcome(Event.CHANGE_QUANTITY, changes, {"line_id": line_id, "qty": qty})

        args = {"line_id": line_id, "qty": qty}
        return self._run(
            order_id, Event.CHANGE_QUANTITY, args, body, key=key, actor=actor, reason=reason
        )

    def reject_at_location(
        self,
        order_id: str,
        location: str,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """A location cannot fulfil its part: exclude it and source those units elsewhere.

        The location's reserved units are given back and sourced again among the remaining
        locations (it is never used for this order again). Units that find no stock are
        backordered; for an order that allows no backorders they are cancelled.
        """

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            there = {
                line.line_id: line.allocated.get(location, 0)
                for line in record.lines
                if line.allocated.get(location, 0)
            }
            if not there:
                raise InputError(
                    f"order {order_id!r} has no units reserved at {location!r}", source="location"
                )
            if self._ship_complete(record.order) and not record.quantities().shipped:
                wanted = {ln.line_id: ln.unshipped for ln in record.lines if ln.unshipped}
                from_bo = {ln.line_id: ln.backordered for ln in record.lines}
                target = self._settle(
                    record, {}, wanted, ledger_key, from_backorder=from_bo, exclude={location}
                )
            else:
                keep = {ln.line_id: dict(ln.allocated) for ln in record.lines}
                for lid in there:
                    keep[lid].pop(location)
                target = self._settle(record, keep, there, ledger_key, exclude={location})
            details = {"location": location, "units": sum(there.values())}
            return _Outcome(Event.LOCATION_REJECT, self._changes_to(record, target), details)

        return self._run(
            order_id,
            Event.LOCATION_REJECT,
            {"location": location},
            body,
            key=key,
            actor=actor,
            reason=reason,
        )

    # -- backorders ---------------------------------------------------------------------------

    def fill_backorder(
        self,
        order_id: str,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Source an order's backordered units against current stock (what is found is reserved).

        Raises
        ------
        InputError
            When the order has no backorders or none of them can be sourced now (nothing
            changes then).
        """

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            wanted = {ln.line_id: ln.backordered for ln in record.lines if ln.backordered}
            if not wanted:
                raise InputError(f"order {order_id!r} has no backorders", source="order_id")
            from_bo = dict(wanted)
            keep = {ln.line_id: dict(ln.allocated) for ln in record.lines}
            if self._ship_complete(record.order):
                wanted = {ln.line_id: ln.unshipped for ln in record.lines if ln.unshipped}
                keep = {}
            skus = {ln.sku for ln in record.lines}
            probe = source(
                suborder(record.order, wanted),
                self.index,
                atp=self._atp(skus),
                exclude=record.excluded,
                committed=()
                if self._ship_complete(record.order)
                else {loc for per in keep.values() for loc in per},
            )
            if not probe.assignments:
                raise InputError(
                    f"no backordered unit of order {order_id!r} can be sourced now",
                    source="order_id",
                )
            target = self._settle(record, keep, wanted, ledger_key, from_backorder=from_bo)
            return _Outcome(Event.FILL_BACKORDER, self._changes_to(record, target))

        return self._run(
            order_id, Event.FILL_BACKORDER, {}, body, key=key, actor=actor, reason=reason
        )

    def fill_backorders(
        self,
        *,
        skus: Collection[str] | None = None,
        key: str | None = None,
        actor: str | None = None,
    ) -> list[OrderRecord]:
        """Source backorders against current stock, highest priority first, then oldest.

        Parameters
        ----------
        skus
            Only orders waiting for these SKUs (all by default).
        key
            Idempotency key of the run (each order's fill gets ``key/order_id``).

        Returns
        -------
        list of OrderRecord
            The orders that got units, in the order they were served.
        """
        waiting = [
            r
            for r in self.store.with_backorders()
            if (r.state, Event.FILL_BACKORDER) in TRANSITIONS
            and (skus is None or any(ln.backordered and ln.sku in skus for ln in r.lines))
        ]
        waiting.sort(key=_queue_rank)
        served = []
        for record in waiting:
            try:
                served.append(
                    self.fill_backorder(
                        record.order_id,
                        key=None if key is None else f"{key}/{record.order_id}",
                        actor=actor,
                        reason="stock received",
                    )
                )
            except InputError:
                continue
        return served

    def receive(
        self,
        location: str,
        sku: str,
        qty: int,
        *,
        key: str,
        reason: str | None = None,
        fill: bool = True,
    ) -> list[OrderRecord]:
        """Stock arrived: record it in the ledger, then fill backorders of that SKU.

        Returns
        -------
        list of OrderRecord
            Orders whose backorders got units.
        """
        self.ledger.receive(location, sku, qty, key=key, reason=reason)
        return self.fill_backorders(skus={sku}, key=key) if fill else []

    # -- returns ------------------------------------------------------------------------------

    def request_return(
        self,
        order_id: str,
        lines: Sequence[LineQty] | None = None,
        *,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """The customer asks to send delivered units back (``[(line_id, qty)]``; default all)."""
        wanted = _line_qtys(lines)

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            plan = wanted
            if plan is None:
                plan = [(ln.line_id, ln.returnable) for ln in record.lines if ln.returnable]
            changes = []
            for row, (lid, qty) in enumerate(plan, start=1):
                line = record.line(lid)
                if qty > line.returnable:
                    raise InputError(
                        f"line {lid!r} has {line.returnable} delivered units to return, not {qty}",
                        source="lines",
                        row=row,
                        column="qty",
                    )
                changes.append(Change(lid, Bucket.RETURN_REQUESTED, qty))
            if not changes:
                raise InputError(f"order {order_id!r} has nothing to return", source="lines")
            return _Outcome(Event.REQUEST_RETURN, changes)

        return self._run(
            order_id,
            Event.REQUEST_RETURN,
            {"lines": wanted},
            body,
            key=key,
            actor=actor,
            reason=reason,
        )

    def _return_changes(
        self, record: OrderRecord, wanted: Sequence[LineQty] | None
    ) -> tuple[list[Change], dict[str, int]]:
        plan = wanted
        if plan is None:
            plan = [(ln.line_id, ln.return_requested) for ln in record.lines if ln.return_requested]
            if not plan:
                plan = [(ln.line_id, ln.returnable) for ln in record.lines if ln.returnable]
        changes: list[Change] = []
        per_sku: dict[str, int] = {}
        for row, (lid, qty) in enumerate(plan, start=1):
            line = record.line(lid)
            if qty > line.return_requested + line.returnable:
                raise InputError(
                    f"line {lid!r} has {line.return_requested + line.returnable} delivered units"
                    f" to return, not {qty}",
                    source="lines",
                    row=row,
                    column="qty",
                )
            requested = min(qty, line.return_requested)
            if requested:
                changes.append(Change(lid, Bucket.RETURN_REQUESTED, -requested))
            changes.append(Change(lid, Bucket.RETURNED, qty))
            per_sku[line.sku] = per_sku.get(line.sku, 0) + qty
        if not changes:
            raise InputError(f"order {record.order_id!r} has nothing to return", source="lines")
        return changes, per_sku

    def return_items(
        self,
        order_id: str,
        lines: Sequence[LineQty] | None = None,
        *,
        location: str,
        disposition: Literal["restock", "write_off"] = "restock",
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        """Returned units arrived at ``location``: put them back on the shelf or write them off.

        Parameters
        ----------
        lines
            ``[(line_id, qty), ...]``; by default the units asked back, or else every delivered
            unit not returned yet.
        location
            Where the units arrived (any location the ledger knows).
        disposition
            ``"restock"`` (back into available stock) or ``"write_off"`` (damaged).
        """
        wanted = _line_qtys(lines)
        if disposition not in ("restock", "write_off"):
            raise InputError("expected 'restock' or 'write_off'", source="disposition")

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            changes, per_sku = self._return_changes(record, wanted)
            self.ledger.restock(
                order_id,
                [(sku, location, q) for sku, q in sorted(per_sku.items())],
                key=ledger_key("restock"),
                disposition=disposition,
                reason=reason,
            )
            return _Outcome(
                Event.RETURN, changes, {"location": location, "disposition": disposition}
            )

        args = {"lines": wanted, "location": location, "disposition": disposition}
        return self._run(order_id, Event.RETURN, args, body, key=key, actor=actor, reason=reason)

    def exchange(
        self,
        order_id: str,
        returns: Sequence[LineQty],
        new_lines: Sequence[OrderLine],
        *,
        location: str,
        disposition: Literal["restock", "write_off"] = "restock",
        replacement_id: str | None = None,
        key: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> tuple[OrderRecord, OrderRecord]:
        """Take delivered units back and place a replacement order, sourced like any order.

        Parameters
        ----------
        returns
            ``[(line_id, qty), ...]`` coming back.
        new_lines
            The lines of the replacement order (another size, another colour...).
        location, disposition
            Where the returned units arrive, and whether they are restocked or written off.
        replacement_id
            Id of the replacement order (default ``"{order_id}-x{n}"``).

        Returns
        -------
        tuple of OrderRecord
            The original order (state ``exchanged``) and the allocated replacement.
        """
        wanted = _line_qtys(returns)
        if not wanted:
            raise InputError("an exchange returns at least one unit", source="returns")
        if not new_lines or not all(isinstance(x, OrderLine) for x in new_lines):
            raise InputError("an exchange needs one or more OrderLine", source="new_lines")
        if disposition not in ("restock", "write_off"):
            raise InputError("expected 'restock' or 'write_off'", source="disposition")
        original = self.get(order_id)
        prior = original.entry_for_key(key) if key is not None else None
        if prior is not None and "replacement" in prior.details:
            new_id = replacement_id or str(prior.details["replacement"])
        else:
            new_id = replacement_id or f"{order_id}-x{len(original.replacements) + 1}"
        replacement = original.order.model_copy(
            update={"order_id": new_id, "lines": tuple(new_lines), "created_at": None}
        )
        replacement = Order.model_validate(replacement.model_dump())
        holder: dict[str, OrderRecord] = {}

        def body(record: OrderRecord, ledger_key: Callable[[str], str]) -> _Outcome:
            changes, per_sku = self._return_changes(record, wanted)
            existing = self.store.get(new_id)
            if existing is not None and existing.exchange_of != order_id:
                raise InputError(f"order {new_id!r} already exists", source="replacement_id")
            self._check_pickup(replacement)
            self.ledger.restock(
                order_id,
                [(sku, location, q) for sku, q in sorted(per_sku.items())],
                key=ledger_key("restock"),
                disposition=disposition,
                reason=reason,
            )
            holder["new"] = self.capture(
                replacement,
                key=ledger_key("replacement"),
                actor=actor,
                reason=f"exchange of {order_id}",
                allocate=True,
                exchange_of=order_id,
            )
            details = {"location": location, "disposition": disposition, "replacement": new_id}
            return _Outcome(Event.EXCHANGE, changes, details)

        args = {
            "returns": wanted,
            "new_lines": [line.model_dump(mode="json") for line in new_lines],
            "location": location,
            "disposition": disposition,
            "replacement": new_id,
        }
        record = self._run(
            order_id, Event.EXCHANGE, args, body, key=key, actor=actor, reason=reason
        )
        return record, holder.get("new") or self.get(new_id)

    # -- visibility ---------------------------------------------------------------------------

    def orders_frame(self) -> pl.DataFrame:
        """One row per order: state, customer, channel, units per bucket, since when."""
        return views.orders_frame(self.store.records())

    def backlog(self) -> pl.DataFrame:
        """Open work per location and SKU: reserved, released and picked units, and backorders."""
        return views.backlog(self.store.records())

    def backorder_ageing(self, now: datetime | None = None) -> pl.DataFrame:
        """Backordered lines with how long they have waited."""
        return views.backorder_ageing(self.store.records(), now or self.now())

    def waiting(self, threshold: timedelta, now: datetime | None = None) -> pl.DataFrame:
        """Open orders that have not moved for longer than ``threshold``."""
        return views.waiting(self.store.records(), threshold, now or self.now())

    def workload(self) -> pl.DataFrame:
        """Per location, open units and shipments against its capacity."""
        return views.workload(self.store.records(), self.index)

    def reconciliation(
        self,
        *,
        older_than: timedelta = timedelta(days=7),
        now: datetime | None = None,
        external: pl.DataFrame | None = None,
    ) -> views.Reconciliation:
        """Orders whose amounts do not tie out, and reservations left hanging.

        Parameters
        ----------
        older_than
            A reservation older than this, never shipped from nor released, is listed.
        now
            The moment to age reservations at (the lifecycle's clock by default).
        external
            Invoices and credits as finance recorded them (``order_id``, ``kind`` in
            ``invoice``/``credit``, ``amount``); by default the lifecycle's own records.
        """
        at = now or self.now()
        records = list(self.store.records())
        holds = [h for r in records for h in self.ledger.holds(r.order_id)]
        return views.reconcile(records, holds, at, older_than, external)


#: The lifecycle is also the order book.
OrderBook = Lifecycle


def _by_line(result: Sourcing) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for a in result.assignments:
        per = out.setdefault(a.line_id, {})
        per[a.location_id] = per.get(a.location_id, 0) + a.qty
    return out


def _grow(record: OrderRecord, line_id: str, delta: int) -> OrderRecord:
    """The record with ``delta`` more units ordered on a line (for sourcing them)."""
    from dataclasses import replace

    lines = tuple(
        replace(ln, ordered=ln.ordered + delta) if ln.line_id == line_id else ln
        for ln in record.lines
    )
    return replace(record, lines=lines)


def _queue_rank(record: OrderRecord) -> tuple[int, datetime, str]:
    placed = record.order.created_at
    if placed is not None and placed.tzinfo is None:
        placed = placed.replace(tzinfo=UTC)
    return (-record.order.priority, placed or record.created_at, record.order_id)


def _line_qtys(lines: Sequence[LineQty] | None) -> list[LineQty] | None:
    if lines is None:
        return None
    out = []
    for row, item in enumerate(lines, start=1):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InputError("expected (line_id, qty)", source="lines", row=row)
        lid, qty = item
        if not isinstance(lid, str):
            raise InputError("expected a line id", source="lines", row=row, column="line_id")
        out.append((lid, _positive(qty, f"lines row {row} qty")))
    return out


def _shipments(lines: Sequence[Shipment] | None) -> list[Shipment] | None:
    if lines is None:
        return None
    out = []
    for row, item in enumerate(lines, start=1):
        if not isinstance(item, tuple | list) or len(item) != 3:
            raise InputError("expected (line_id, location_id, qty)", source="lines", row=row)
        lid, loc, qty = item
        if not isinstance(lid, str) or not isinstance(loc, str):
            raise InputError("expected text ids", source="lines", row=row)
        out.append((lid, loc, _positive(qty, f"lines row {row} qty")))
    return out
