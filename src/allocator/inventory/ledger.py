"""The inventory ledger: stock promised exactly once, over any of the three stores.

:class:`Ledger` holds the rules; a :class:`~allocator.inventory._store.Store` holds the data. Every
mutating call

1. checks its arguments (an :class:`~allocator.errors.InputError` naming the argument, before
   anything is read or written);
2. runs as one write transaction: looks up its idempotency key (a replay returns the first result;
   other arguments under a used key raise :class:`~allocator.errors.IdempotencyConflict`), locks
   what it touches in a fixed order, expires lapsed holds, checks stock, and appends entries,
   updates the derived totals and stores the key with its result, all or nothing.

Reads honour holds' time-to-live without writing: an open hold whose time elapsed no longer
counts as reserved, and the next write records its expiry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from hashlib import blake2b
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from allocator.errors import (
    HoldResolvedError,
    IdempotencyConflict,
    InputError,
    InsufficientStock,
)
from allocator.inventory._store import Store, WriteTx
from allocator.inventory._types import (
    Entry,
    EntryKind,
    Hold,
    HoldExpiredError,
    HoldLine,
    HoldStatus,
    Inbound,
    KeyRecord,
    Pair,
    Posting,
    Totals,
    hold_from_json,
    hold_to_json,
    posting_from_json,
    posting_to_json,
)
from allocator.inventory._validate import (
    INT64_MAX,
    check_choice,
    check_date,
    check_hold_ref,
    check_id,
    check_lines,
    check_now,
    check_pairs,
    check_qty,
    check_text,
    check_ttl,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Clock", "Ledger", "Position"]

logger = logging.getLogger("allocator").getChild("inventory")

Clock = Callable[[], datetime]
"""A callable returning the current time as a timezone-aware datetime."""


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Position:
    """The stock of one SKU at one location, as the ledger sees it now.

    ``reserved`` leaves out holds whose time-to-live elapsed; ``available`` is the ATP,
    ``max(0, on_hand - reserved - safety_stock)`` (plus expected receipts due by the day asked
    for, from :meth:`Ledger.positions` with ``as_of``).
    """

    location_id: str
    sku: str
    on_hand: int
    reserved: int
    inbound: int
    safety_stock: int
    available: int


def _derive_id(prefix: str, key: str) -> str:
    """A stable identifier for the object a keyed call creates (so a replay names the same one)."""
    return f"{prefix}-{blake2b(key.encode(), digest_size=10).hexdigest()}"


def _atp(totals: Totals, lapsed: int = 0, inbound: int = 0) -> int:
    return max(0, totals.on_hand + inbound - (totals.reserved - lapsed) - totals.safety_stock)


class _Work:
    """The working state of one write transaction: locked totals and holds, and what to write."""

    def __init__(self, tx: WriteTx, now: datetime, key: str | None) -> None:
        self.tx = tx
        self.now = now
        self.key = key
        self.totals: dict[Pair, Totals] = {}
        self.entries: list[Entry] = []
        self.written: list[Entry] = []
        self.new_holds: list[Hold] = []
        self.changed_holds: dict[str, Hold] = {}
        self.new_inbound: list[Inbound] = []
        self.changed_inbound: list[Inbound] = []
        self.new_locations: set[str] = set()
        self.new_skus: set[str] = set()
        self.expired: list[Hold] = []

    # -- phase 2: lock ---------------------------------------------------------------------

    def lock(self, pairs: Sequence[Pair], order_id: str | None = None) -> list[Hold]:
        """Lock the order's holds and every lapsed hold, then the totals; expire lapsed holds.

        The totals locked are those of ``pairs``, of the order's open holds and of the lapsed
        holds, in sorted order. Returns the order's holds (after expiry), oldest first.
        """
        holds = self.tx.lock_holds(order_id, self.now)
        wanted = set(pairs)
        for hold in holds:
            if hold.order_id == order_id or hold.lapsed(self.now):
                wanted.update(line.pair for line in hold.lines if line.remaining)
        self.totals = self.tx.lock_totals(sorted(wanted))
        for hold in holds:
            if hold.lapsed(self.now):
                self._expire(hold)
        own = [hold for hold in holds if hold.order_id == order_id]
        return [self.changed_holds.get(hold.hold_id, hold) for hold in own]

    def _expire(self, hold: Hold) -> None:
        expired = self.give_back(hold, EntryKind.EXPIRE, HoldStatus.EXPIRED)
        self.expired.append(expired)
        logger.info("hold %s of order %s expired", hold.hold_id, hold.order_id)

    def give_back(self, hold: Hold, kind: EntryKind, status: HoldStatus) -> Hold:
        """Return what a hold still reserves (a release or an expiry); resolve it as ``status``."""
        lines = []
        for line in hold.lines:
            if line.remaining:
                self.totals[line.pair].reserved -= line.remaining
                self.entry(
                    kind,
                    line.pair,
                    line.remaining,
                    d_reserved=-line.remaining,
                    reason="time-to-live elapsed" if kind is EntryKind.EXPIRE else None,
                    order_id=hold.order_id,
                    hold_id=hold.hold_id,
                    key=None if kind is EntryKind.EXPIRE else self.key,
                )
            lines.append(replace(line, released=line.released + line.remaining))
        resolved = replace(hold, lines=tuple(lines), status=status)
        self.changed_holds[hold.hold_id] = resolved
        return resolved

    # -- phase 3: record -------------------------------------------------------------------

    def entry(
        self,
        kind: EntryKind,
        pair: Pair,
        qty: int,
        *,
        d_on_hand: int = 0,
        d_reserved: int = 0,
        d_inbound: int = 0,
        d_safety: int = 0,
        reason: str | None = None,
        order_id: str | None = None,
        hold_id: str | None = None,
        key: str | Literal[False] | None = False,
    ) -> None:
        """Queue an entry (``key`` defaults to the call's key)."""
        self.entries.append(
            Entry(
                seq=0,
                at=self.now,
                kind=kind,
                location_id=pair[0],
                sku=pair[1],
                qty=qty,
                d_on_hand=d_on_hand,
                d_reserved=d_reserved,
                d_inbound=d_inbound,
                d_safety=d_safety,
                reason=reason,
                order_id=order_id,
                hold_id=hold_id,
                key=self.key if key is False else key,
            )
        )

    def add(self, pair: Pair, field: str, delta: int, source: str) -> None:
        """Add ``delta`` to one total, refusing a total past 64 bits."""
        totals = self.totals[pair]
        value = getattr(totals, field) + delta
        if value > INT64_MAX:
            raise InputError(
                f"would take {field} of ({pair[0]!r}, {pair[1]!r}) past 64 bits", source=source
            )
        setattr(totals, field, value)

    def flush(self) -> None:
        """Write everything queued, in a fixed order."""
        tx = self.tx
        if self.new_locations or self.new_skus:
            tx.add_ids(sorted(self.new_locations), sorted(self.new_skus))
        if self.totals:
            tx.put_totals(self.totals)
        if self.new_holds:
            tx.put_holds(self.new_holds, new=True)
        if self.changed_holds:
            tx.put_holds(list(self.changed_holds.values()), new=False)
        if self.new_inbound:
            tx.put_inbound(self.new_inbound, new=True)
        if self.changed_inbound:
            tx.put_inbound(self.changed_inbound, new=False)
        if self.entries:
            self.written = tx.append(self.entries)

    def posting(self, holds: Sequence[Hold] = ()) -> str:
        """The call's result: its own entries (not the expiry sweep's) and the holds it changed."""
        own = tuple(entry for entry in self.written if entry.key == self.key)
        return posting_to_json(Posting(key=self.key or "", entries=own, holds=tuple(holds)))


class Ledger:
    """An append-only inventory ledger in which a promise of stock is made exactly once.

    Create one with :func:`~allocator.inventory.open_ledger`. Every mutating call takes a
    required ``key``: the same key with the same arguments returns the first result and writes
    nothing; the same key with other arguments raises
    :class:`~allocator.errors.IdempotencyConflict`. A call that fails writes nothing and leaves
    its key unused.

    Parameters
    ----------
    store
        Where entries, totals, holds and keys are kept.
    clock
        Returns the current time (timezone-aware); the wall clock in UTC by default. Tests pass
        a fake clock to move time forward.

    Notes
    -----
    Quantities are whole numbers of units within 64 bits; identifiers are non-empty,
    NFC-normalised strings of at most 200 characters without control characters. Lines are
    ``(sku, location_id, qty)`` tuples; lines naming the same position are added together.
    """

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self._store = store
        self._clock: Clock = clock if clock is not None else system_clock

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store behind the ledger."""
        return self._store

    def close(self) -> None:
        """Close the store's connection."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(store={self._store.name})"

    def _now(self) -> datetime:
        return check_now(self._clock(), "clock")

    # -- the transaction frame -------------------------------------------------------------

    def _mutate(
        self,
        op: str,
        key: str,
        args: dict[str, Any],
        body: Callable[[_Work], str],
    ) -> str:
        fingerprint = json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)

        def transaction(tx: WriteTx) -> str:
            record = tx.find_key(key)
            if record is not None:
                if record.op != op or record.fingerprint != fingerprint:
                    raise IdempotencyConflict(
                        f"key {key!r} was already used by {record.op}() with other arguments"
                        f" at {record.at.isoformat()}; use a new key for a new call"
                    )
                logger.debug("replay of %s under key %r", op, key)
                return record.result
            work = _Work(tx, self._now(), key)
            result = body(work)
            tx.save_key(KeyRecord(key, op, fingerprint, result, work.now))
            return result

        return self._store.write(transaction)

    def _post(
        self, op: str, key: str, args: dict[str, Any], body: Callable[[_Work], Sequence[Hold]]
    ) -> Posting:
        """Run a call whose result is a :class:`Posting` (``body`` returns the holds changed)."""

        def record(work: _Work) -> str:
            holds = body(work)
            work.flush()
            return work.posting(holds)

        return posting_from_json(self._mutate(op, key, args, record))

    def _check_known(
        self,
        tx: WriteTx,
        locations: dict[str, str],
        skus: dict[str, str],
    ) -> None:
        """Raise InputError unless every location and SKU is known (values name the argument)."""
        known_locations, known_skus = tx.known(locations, skus)
        for location, source in locations.items():
            if location not in known_locations:
                raise _unknown("location", location, source)
        for sku, source in skus.items():
            if sku not in known_skus:
                raise _unknown("SKU", sku, source)

    def _check_lines_known(
        self, tx: WriteTx, lines: dict[Pair, int], totals: dict[Pair, Totals] | None = None
    ) -> None:
        """Raise InputError for the first line naming an unknown location or SKU.

        ``totals`` (locked already) saves the lookup: a position with a non-zero total is known,
        as its location and SKU were recorded when it got one.
        """
        sure: list[Pair] = []
        unsure = list(lines)
        if totals is not None:
            zero = Totals()
            sure = [pair for pair in lines if totals.get(pair, zero) != zero]
            if len(sure) == len(lines):
                return
            unsure = [pair for pair in lines if totals.get(pair, zero) == zero]
        known_locations, known_skus = tx.known({p[0] for p in unsure}, {p[1] for p in unsure})
        known_locations.update(p[0] for p in sure)
        known_skus.update(p[1] for p in sure)
        for index, (location, sku) in enumerate(lines, start=1):
            if location not in known_locations:
                raise _unknown("location", location, "lines", row=index, column="location_id")
            if sku not in known_skus:
                raise _unknown("SKU", sku, "lines", row=index, column="sku")

    # -- stock arrives ---------------------------------------------------------------------

    def receive(
        self,
        location: str,
        sku: str,
        qty: int,
        *,
        key: str,
        reason: str | None = None,
        settle: bool = True,
    ) -> Posting:
        """Record units that arrived at a location (a new location or SKU becomes known).

        Parameters
        ----------
        location, sku
            Where, and what.
        qty
            Units received (> 0).
        key
            Idempotency key.
        reason
            Why, for the audit (a purchase order, say).
        settle
            Count the units against the position's expected receipts (earliest eta first).

        Returns
        -------
        Posting
            The entry written.
        """
        location = check_id(location, "location")
        sku = check_id(sku, "sku")
        qty = check_qty(qty, "qty")
        key = check_id(key, "key")
        reason = check_text(reason, "reason", optional=True)
        settle = _check_bool(settle, "settle")
        pair = (location, sku)

        def body(work: _Work) -> Sequence[Hold]:
            work.lock([pair])
            work.new_locations.add(location)
            work.new_skus.add(sku)
            work.add(pair, "on_hand", qty, "qty")
            settled = 0
            if settle:
                for inbound in work.tx.lock_inbound(pair):
                    take = min(qty - settled, inbound.outstanding)
                    if take <= 0:
                        break
                    settled += take
                    work.changed_inbound.append(replace(inbound, received=inbound.received + take))
                work.totals[pair].inbound -= settled
            work.entry(
                EntryKind.RECEIVE, pair, qty, d_on_hand=qty, d_inbound=-settled, reason=reason
            )
            return ()

        args = {"location": location, "sku": sku, "qty": qty, "reason": reason, "settle": settle}
        return self._post("receive", key, args, body)

    def expect(
        self,
        location: str,
        sku: str,
        qty: int,
        eta: date,
        *,
        key: str,
        reason: str | None = None,
    ) -> Posting:
        """Record units expected to arrive at a location by ``eta`` (inbound stock).

        Expected units count towards ``available(..., as_of=day)`` for any ``day >= eta`` until
        :meth:`receive` settles them.

        Parameters
        ----------
        location, sku
            Where, and what (a new location or SKU becomes known).
        qty
            Units expected (> 0).
        eta
            The day they are due.
        key
            Idempotency key.
        reason
            Why, for the audit.

        Returns
        -------
        Posting
            The entry written.
        """
        location = check_id(location, "location")
        sku = check_id(sku, "sku")
        qty = check_qty(qty, "qty")
        eta = check_date(eta, "eta")
        key = check_id(key, "key")
        reason = check_text(reason, "reason", optional=True)
        pair = (location, sku)

        def body(work: _Work) -> Sequence[Hold]:
            work.lock([pair])
            work.new_locations.add(location)
            work.new_skus.add(sku)
            work.add(pair, "inbound", qty, "qty")
            work.new_inbound.append(
                Inbound(_derive_id("in", key), location, sku, qty, eta, received=0, key=key)
            )
            work.entry(EntryKind.EXPECT, pair, qty, d_inbound=qty, reason=reason)
            return ()

        args = {"location": location, "sku": sku, "qty": qty, "eta": eta.isoformat()}
        args["reason"] = reason
        return self._post("expect", key, args, body)

    # -- promises --------------------------------------------------------------------------

    def reserve(
        self,
        order_id: str,
        lines: Sequence[tuple[str, str, int]],
        *,
        key: str,
        ttl: timedelta | float | None = None,
    ) -> Hold:
        """Promise stock to an order: every line or none.

        Parameters
        ----------
        order_id
            The order.
        lines
            ``[(sku, location_id, qty), ...]``; each position must be known.
        key
            Idempotency key (it also fixes the hold's id).
        ttl
            Time-to-live (a ``timedelta`` or seconds): after it the hold lapses and its units
            are available again. ``None`` holds until released or shipped.

        Returns
        -------
        Hold
            The new hold (as it was made, also on a replay).

        Raises
        ------
        InsufficientStock
            When any line asks for more than the position's ATP; nothing is reserved.
        """
        order_id = check_id(order_id, "order_id")
        wanted = check_lines(lines)
        key = check_id(key, "key")
        check_ttl(ttl, self._now())
        seconds = None if ttl is None else _ttl_seconds(ttl)

        def body(work: _Work) -> str:
            work.lock(list(wanted))
            self._check_lines_known(work.tx, wanted, work.totals)
            expires = check_ttl(ttl, work.now)
            short = []
            for pair, qty in wanted.items():
                free = _atp(work.totals[pair])
                if qty > free:
                    short.append(f"{qty} of {pair[1]!r} at {pair[0]!r} (available {free})")
            if short:
                raise InsufficientStock(f"order {order_id!r} asks for " + "; ".join(short))
            hold = Hold(
                hold_id=_derive_id("hold", key),
                order_id=order_id,
                lines=tuple(HoldLine(sku, loc, qty) for (loc, sku), qty in wanted.items()),
                status=HoldStatus.OPEN,
                created=work.now,
                expires=expires,
                key=key,
            )
            for pair, qty in wanted.items():
                work.totals[pair].reserved += qty
                work.entry(
                    EntryKind.RESERVE,
                    pair,
                    qty,
                    d_reserved=qty,
                    order_id=order_id,
                    hold_id=hold.hold_id,
                )
            work.new_holds.append(hold)
            work.flush()
            return json.dumps(hold_to_json(hold))

        args = {"order_id": order_id, "lines": _lines_arg(wanted), "ttl": seconds}
        return hold_from_json(json.loads(self._mutate("reserve", key, args, body)))

    def _targets(self, holds: list[Hold], order_id: str, hold_id: str | None) -> list[Hold]:
        """The open holds a release or shipment acts on, or the typed error why there are none."""
        if not holds:
            raise InputError(f"order {order_id!r} has no holds", source="order_id")
        if hold_id is not None:
            holds = [hold for hold in holds if hold.hold_id == hold_id]
            if not holds:
                raise InputError(
                    f"hold {hold_id!r} is not a hold of order {order_id!r}", source="hold"
                )
        open_holds = [hold for hold in holds if hold.status is HoldStatus.OPEN]
        if open_holds:
            return open_holds
        what = f"hold {hold_id!r}" if hold_id is not None else f"every hold of order {order_id!r}"
        if any(hold.status is HoldStatus.EXPIRED for hold in holds):
            raise HoldExpiredError(f"{what} lapsed: its time-to-live elapsed")
        statuses = ", ".join(sorted({hold.status.value for hold in holds}))
        raise HoldResolvedError(f"{what} is already resolved ({statuses})")

    def release(self, order_id: str, *, key: str, hold: Hold | str | None = None) -> Posting:
        """Give back the units an order still holds.

        Parameters
        ----------
        order_id
            The order.
        key
            Idempotency key.
        hold
            Release only this hold (a :class:`Hold` or its id); by default every open hold of
            the order.

        Returns
        -------
        Posting
            The entries written and the released holds.

        Raises
        ------
        HoldResolvedError
            When no hold is open any more (:class:`HoldExpiredError` when one of them lapsed).
        """
        order_id = check_id(order_id, "order_id")
        key = check_id(key, "key")
        hold_id = check_hold_ref(hold)

        def body(work: _Work) -> Sequence[Hold]:
            holds = work.lock([], order_id)
            targets = self._targets(holds, order_id, hold_id)
            return [
                work.give_back(target, EntryKind.RELEASE, HoldStatus.RELEASED) for target in targets
            ]

        args = {"order_id": order_id, "hold": hold_id}
        return self._post("release", key, args, body)

    def ship(
        self,
        order_id: str,
        lines: Sequence[tuple[str, str, int]],
        *,
        key: str,
        hold: Hold | str | None = None,
    ) -> Posting:
        """Ship reserved units: they leave on-hand stock and the order's holds.

        Units are taken from the order's open holds, oldest first; a hold whose every unit has
        shipped is resolved (``SHIPPED``). Partial shipments are fine.

        Parameters
        ----------
        order_id
            The order.
        lines
            ``[(sku, location_id, qty), ...]`` shipped.
        key
            Idempotency key.
        hold
            Ship only from this hold (a :class:`Hold` or its id).

        Returns
        -------
        Posting
            The entries written and the holds shipped from.

        Raises
        ------
        InsufficientStock
            When a line ships more than the order holds at that position; nothing is shipped.
        HoldResolvedError
            When no hold of the order is open any more.
        """
        order_id = check_id(order_id, "order_id")
        wanted = check_lines(lines)
        key = check_id(key, "key")
        hold_id = check_hold_ref(hold)

        def body(work: _Work) -> Sequence[Hold]:
            self._check_lines_known(work.tx, wanted)
            holds = work.lock(list(wanted), order_id)
            targets = self._targets(holds, order_id, hold_id)
            current = {hold.hold_id: list(hold.lines) for hold in targets}
            short = []
            for pair, qty in wanted.items():
                held = sum(
                    line.remaining
                    for lines in current.values()
                    for line in lines
                    if line.pair == pair
                )
                if qty > held:
                    short.append(f"{qty} of {pair[1]!r} at {pair[0]!r} (reserved {held})")
                    continue
                left = qty
                for hold_lines in current.values():
                    for index, line in enumerate(hold_lines):
                        if left and line.pair == pair and line.remaining:
                            take = min(left, line.remaining)
                            left -= take
                            hold_lines[index] = replace(line, shipped=line.shipped + take)
            if short:
                raise InsufficientStock(
                    f"order {order_id!r} ships more than it holds: " + "; ".join(short)
                )
            shipped = []
            for target in targets:
                lines_after = tuple(current[target.hold_id])
                if lines_after == target.lines:
                    continue
                for before, after in zip(target.lines, lines_after, strict=True):
                    units = after.shipped - before.shipped
                    if units:
                        work.totals[after.pair].on_hand -= units
                        work.totals[after.pair].reserved -= units
                        work.entry(
                            EntryKind.SHIP,
                            after.pair,
                            units,
                            d_on_hand=-units,
                            d_reserved=-units,
                            order_id=order_id,
                            hold_id=target.hold_id,
                        )
                status = (
                    HoldStatus.SHIPPED
                    if not any(line.remaining for line in lines_after)
                    else HoldStatus.OPEN
                )
                done = replace(target, lines=lines_after, status=status)
                work.changed_holds[target.hold_id] = done
                shipped.append(done)
            return shipped

        args = {"order_id": order_id, "lines": _lines_arg(wanted), "hold": hold_id}
        return self._post("ship", key, args, body)

    def restock(
        self,
        order_id: str,
        lines: Sequence[tuple[str, str, int]],
        *,
        key: str,
        disposition: Literal["restock", "write_off"] = "restock",
        reason: str | None = None,
    ) -> Posting:
        """Take returned units of a shipped order back on the shelf, or write them off.

        Parameters
        ----------
        order_id
            The order the units were shipped to.
        lines
            ``[(sku, location_id, qty), ...]``: where the returns arrive (any known location).
        key
            Idempotency key.
        disposition
            ``"restock"`` puts the units back on hand; ``"write_off"`` records them as
            damaged without changing stock.
        reason
            Why, for the audit.

        Returns
        -------
        Posting
            The entries written.

        Raises
        ------
        InputError
            When the order would get back more units of a SKU than were shipped to it.
        """
        order_id = check_id(order_id, "order_id")
        wanted = check_lines(lines)
        key = check_id(key, "key")
        mode = check_choice(disposition, "disposition", ("restock", "write_off"))
        reason = check_text(reason, "reason", optional=True)

        def body(work: _Work) -> Sequence[Hold]:
            self._check_lines_known(work.tx, wanted)
            # Locking the order's holds serialises calls on one order.
            work.lock(list(wanted), order_id)
            flow = work.tx.order_flow(order_id)
            per_sku: dict[str, int] = {}
            for (_, sku), qty in wanted.items():
                per_sku[sku] = per_sku.get(sku, 0) + qty
            for index, ((_, sku), _qty) in enumerate(wanted.items(), start=1):
                shipped, returned = flow.get(sku, (0, 0))
                if per_sku[sku] > shipped - returned:
                    raise InputError(
                        f"order {order_id!r} would get back {per_sku[sku]} of {sku!r}, but only"
                        f" {shipped - returned} were shipped and not yet returned",
                        source="lines",
                        row=index,
                        column="qty",
                    )
            for pair, qty in wanted.items():
                if mode == "restock":
                    work.add(pair, "on_hand", qty, "lines")
                    work.entry(
                        EntryKind.RESTOCK,
                        pair,
                        qty,
                        d_on_hand=qty,
                        reason=reason,
                        order_id=order_id,
                    )
                else:
                    work.entry(EntryKind.WRITE_OFF, pair, qty, reason=reason, order_id=order_id)
            return ()

        args = {
            "order_id": order_id,
            "lines": _lines_arg(wanted),
            "disposition": mode,
            "reason": reason,
        }
        return self._post("restock", key, args, body)

    # -- corrections and moves -------------------------------------------------------------

    def adjust(self, location: str, sku: str, delta: int, *, reason: str, key: str) -> Posting:
        """Correct the on-hand count of a known position (a stock count, damage, a find).

        Parameters
        ----------
        location, sku
            The position (both must be known).
        delta
            Units to add (positive) or remove (negative); not zero.
        reason
            Why (required).
        key
            Idempotency key.

        Returns
        -------
        Posting
            The entry written.

        Raises
        ------
        InsufficientStock
            When removing units that are not there or are promised to orders.
        """
        location = check_id(location, "location")
        sku = check_id(sku, "sku")
        delta = check_qty(delta, "delta", allow_negative=True)
        reason_text = check_text(reason, "reason")
        key = check_id(key, "key")
        pair = (location, sku)

        def body(work: _Work) -> Sequence[Hold]:
            self._check_known(work.tx, {location: "location"}, {sku: "sku"})
            work.lock([pair])
            totals = work.totals[pair]
            if delta < 0 and totals.on_hand + delta < totals.reserved:
                raise InsufficientStock(
                    f"cannot remove {-delta} of {sku!r} at {location!r}: {totals.on_hand} on"
                    f" hand, {totals.reserved} of them reserved"
                )
            work.add(pair, "on_hand", delta, "delta")
            work.entry(EntryKind.ADJUST, pair, delta, d_on_hand=delta, reason=reason_text)
            return ()

        args = {"location": location, "sku": sku, "delta": delta, "reason": reason_text}
        return self._post("adjust", key, args, body)

    def transfer(
        self,
        sku: str,
        from_location: str,
        to_location: str,
        qty: int,
        *,
        key: str,
        reason: str | None = None,
    ) -> Posting:
        """Move unreserved units between two known locations.

        Safety stock may be moved (it is a selling buffer); reserved units may not.

        Parameters
        ----------
        sku
            What moves.
        from_location, to_location
            From where to where (different known locations).
        qty
            Units moved (> 0).
        key
            Idempotency key.
        reason
            Why, for the audit.

        Returns
        -------
        Posting
            The two entries written (out and in).

        Raises
        ------
        InsufficientStock
            When the source has fewer unreserved units.
        """
        sku = check_id(sku, "sku")
        from_location = check_id(from_location, "from_location")
        to_location = check_id(to_location, "to_location")
        qty = check_qty(qty, "qty")
        key = check_id(key, "key")
        reason = check_text(reason, "reason", optional=True)
        if from_location == to_location:
            raise InputError("must differ from from_location", source="to_location")
        source, target = (from_location, sku), (to_location, sku)

        def body(work: _Work) -> Sequence[Hold]:
            self._check_known(
                work.tx, {from_location: "from_location", to_location: "to_location"}, {sku: "sku"}
            )
            work.lock([source, target])
            totals = work.totals[source]
            if qty > totals.on_hand - totals.reserved:
                raise InsufficientStock(
                    f"cannot move {qty} of {sku!r} from {from_location!r}: {totals.on_hand} on"
                    f" hand, {totals.reserved} of them reserved"
                )
            totals.on_hand -= qty
            work.add(target, "on_hand", qty, "qty")
            work.entry(EntryKind.TRANSFER_OUT, source, qty, d_on_hand=-qty, reason=reason)
            work.entry(EntryKind.TRANSFER_IN, target, qty, d_on_hand=qty, reason=reason)
            return ()

        args = {"sku": sku, "from": from_location, "to": to_location, "qty": qty}
        args["reason"] = reason
        return self._post("transfer", key, args, body)

    def set_safety_stock(self, location: str, sku: str, qty: int, *, key: str) -> Posting:
        """Set the units of a known position that are never promised.

        Parameters
        ----------
        location, sku
            The position (both must be known).
        qty
            The new safety stock (>= 0).
        key
            Idempotency key.

        Returns
        -------
        Posting
            The entry written.
        """
        location = check_id(location, "location")
        sku = check_id(sku, "sku")
        qty = check_qty(qty, "qty", minimum=0)
        key = check_id(key, "key")
        pair = (location, sku)

        def body(work: _Work) -> Sequence[Hold]:
            self._check_known(work.tx, {location: "location"}, {sku: "sku"})
            work.lock([pair])
            totals = work.totals[pair]
            change = qty - totals.safety_stock
            totals.safety_stock = qty
            work.entry(EntryKind.SAFETY_STOCK, pair, qty, d_safety=change)
            return ()

        args = {"location": location, "sku": sku, "qty": qty}
        return self._post("set_safety_stock", key, args, body)

    def expire_holds(self, now: datetime | None = None) -> tuple[Hold, ...]:
        """Record the expiry of every open hold whose time-to-live elapsed by ``now``.

        Reads already leave lapsed holds out and every write expires them first, so calling this
        is never needed for correctness; it keeps the stored totals tidy (a periodic job).

        Parameters
        ----------
        now
            The moment to expire at (timezone-aware); the ledger's clock by default.

        Returns
        -------
        tuple of Hold
            The holds it expired.
        """
        at = self._now() if now is None else check_now(now, "now")

        def transaction(tx: WriteTx) -> tuple[Hold, ...]:
            work = _Work(tx, at, None)
            work.lock([])
            work.flush()
            return tuple(work.expired)

        return self._store.write(transaction)

    # -- reads -----------------------------------------------------------------------------

    def position(self, sku: str, location: str) -> Position:
        """The stock of one position now (zeros for an unknown one).

        Parameters
        ----------
        sku, location
            The position.

        Returns
        -------
        Position
            On hand, reserved (lapsed holds left out), inbound, safety stock and ATP.
        """
        sku = check_id(sku, "sku")
        location = check_id(location, "location")
        pair = (location, sku)
        now = self._now()
        with self._store.read() as reader:
            totals = reader.totals([pair]).get(pair, Totals())
            lapsed = reader.lapsed(now, [pair]).get(pair, 0) if totals.reserved else 0
        return _position(pair, totals, lapsed, 0)

    def positions(
        self,
        pairs: Sequence[tuple[str, str]] | None = None,
        *,
        as_of: date | None = None,
    ) -> tuple[Position, ...]:
        """The stock of many positions, read in one consistent snapshot.

        Parameters
        ----------
        pairs
            ``[(location_id, sku), ...]`` to read; every position the ledger has seen by default.
            Positions it has never seen are left out.
        as_of
            Look forward: ``available`` also counts expected receipts due by this day.

        Returns
        -------
        tuple of Position
            Sorted by location and SKU.
        """
        wanted = None if pairs is None else check_pairs(pairs)
        day = None if as_of is None else check_date(as_of, "as_of")
        now = self._now()
        due: dict[Pair, int] = {}
        with self._store.read() as reader:
            totals = reader.totals(wanted)
            # Only reserved units can lapse: look up lapsed holds of those positions alone.
            held = None if wanted is None else [pair for pair in totals if totals[pair].reserved]
            lapsed = reader.lapsed(now, held) if held is None or held else {}
            if day is not None:
                for row in reader.inbound(wanted, due_by=day):
                    pair = (row.location_id, row.sku)
                    due[pair] = due.get(pair, 0) + row.outstanding
        return tuple(
            _position(pair, totals[pair], lapsed.get(pair, 0), due.get(pair, 0))
            for pair in sorted(totals)
        )

    def available(self, sku: str, location: str, *, as_of: date | None = None) -> int:
        """Units available to promise (ATP) at one position.

        Parameters
        ----------
        sku, location
            The position (an unknown one has none).
        as_of
            Look forward: also count expected receipts due by this day.

        Returns
        -------
        int
            ``max(0, on_hand [+ inbound due by as_of] - reserved - safety_stock)``.
        """
        sku = check_id(sku, "sku")
        location = check_id(location, "location")
        day = None if as_of is None else check_date(as_of, "as_of")
        pair = (location, sku)
        now = self._now()
        with self._store.read() as reader:
            totals = reader.totals([pair]).get(pair)
            if totals is None:
                return 0
            lapsed = reader.lapsed(now, [pair]).get(pair, 0) if totals.reserved else 0
            due = 0
            if day is not None and totals.inbound:
                due = sum(row.outstanding for row in reader.inbound([pair], due_by=day))
        return _atp(totals, lapsed, due)

    def snapshot(self) -> pl.DataFrame:
        """The stock table of the data contract, for allocation.

        Returns
        -------
        polars.DataFrame
            One row per position, sorted: ``location_id``, ``sku`` (String), ``on_hand``,
            ``reserved`` (lapsed holds left out), ``safety_stock`` (Int64).
        """
        import polars as pl

        rows = self.positions()
        return pl.DataFrame(
            {
                "location_id": [p.location_id for p in rows],
                "sku": [p.sku for p in rows],
                "on_hand": [p.on_hand for p in rows],
                "reserved": [p.reserved for p in rows],
                "safety_stock": [p.safety_stock for p in rows],
            },
            schema={
                "location_id": pl.String,
                "sku": pl.String,
                "on_hand": pl.Int64,
                "reserved": pl.Int64,
                "safety_stock": pl.Int64,
            },
        )

    def holds(self, order_id: str) -> tuple[Hold, ...]:
        """The holds of an order, oldest first; a lapsed open hold reads as ``EXPIRED``."""
        order_id = check_id(order_id, "order_id")
        now = self._now()
        with self._store.read() as reader:
            holds = reader.holds(order_id)
        return tuple(
            replace(hold, status=HoldStatus.EXPIRED) if hold.lapsed(now) else hold for hold in holds
        )

    def expected(self, sku: str, location: str) -> tuple[Inbound, ...]:
        """Outstanding expected receipts of one position, by eta."""
        sku = check_id(sku, "sku")
        location = check_id(location, "location")
        with self._store.read() as reader:
            return tuple(reader.inbound([(location, sku)]))

    def entries(self, *, order_id: str | None = None, key: str | None = None) -> tuple[Entry, ...]:
        """Ledger entries in order: all of them, or those of one order or one key."""
        order_id = None if order_id is None else check_id(order_id, "order_id")
        key = None if key is None else check_id(key, "key")
        with self._store.read() as reader:
            return tuple(reader.entries(order_id=order_id, key=key))

    def entry_count(self) -> int:
        """Number of entries in the ledger."""
        with self._store.read() as reader:
            return reader.entry_count()

    def verify(self, *, database: bool = False) -> list[str]:
        """Check every derived total against the entries, and the holds against the totals.

        Parameters
        ----------
        database
            Also run the database's own consistency check (SQLite's ``PRAGMA quick_check``).

        Returns
        -------
        list of str
            One line per problem; empty when the ledger is consistent.
        """
        with self._store.read() as reader:
            totals = reader.totals()
            sums = reader.entry_sums()
            held = reader.open_hold_units()
            inbound: dict[Pair, int] = {}
            for row in reader.inbound():
                inbound[(row.location_id, row.sku)] = (
                    inbound.get((row.location_id, row.sku), 0) + row.outstanding
                )
            problems = [_hold_problem(hold) for hold in reader.all_holds()]
        problems = [p for p in problems if p]
        names = ("on_hand", "reserved", "inbound", "safety_stock")
        for pair in sorted(set(totals) | set(sums) | set(held) | set(inbound)):
            where = f"({pair[0]!r}, {pair[1]!r})"
            stored = totals.get(pair, Totals())
            added = sums.get(pair, Totals())
            for name, have, want in zip(names, stored.as_tuple(), added.as_tuple(), strict=True):
                if have != want:
                    problems.append(f"{where}: {name} is {have} but the entries add up to {want}")
            if held.get(pair, 0) != stored.reserved:
                problems.append(
                    f"{where}: reserved is {stored.reserved} but open holds"
                    f" reserve {held.get(pair, 0)}"
                )
            if inbound.get(pair, 0) != stored.inbound:
                problems.append(
                    f"{where}: inbound is {stored.inbound} but expected receipts"
                    f" outstanding are {inbound.get(pair, 0)}"
                )
            if min(stored.as_tuple()) < 0 or stored.reserved > stored.on_hand:
                problems.append(f"{where}: impossible totals {stored.as_tuple()}")
        if database:
            problems.extend(self._store.integrity_problems())
        return problems


_SET_POSITION = tuple(getattr(Position, f.name).__set__ for f in fields(Position))


def _new_position(
    location_id: str,
    sku: str,
    on_hand: int,
    reserved: int,
    inbound: int,
    safety_stock: int,
    available: int,
) -> Position:
    """``Position(...)`` at half the cost (a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``; this sets the slots directly): reads build hundreds."""
    position: Position = object.__new__(Position)
    s0, s1, s2, s3, s4, s5, s6 = _SET_POSITION
    s0(position, location_id)
    s1(position, sku)
    s2(position, on_hand)
    s3(position, reserved)
    s4(position, inbound)
    s5(position, safety_stock)
    s6(position, available)
    return position


def _position(pair: Pair, totals: Totals, lapsed: int, due: int) -> Position:
    return _new_position(
        pair[0],
        pair[1],
        totals.on_hand,
        totals.reserved - lapsed,
        totals.inbound,
        totals.safety_stock,
        _atp(totals, lapsed, due),
    )


def _hold_problem(hold: Hold) -> str:
    for line in hold.lines:
        if line.qty <= 0 or line.shipped < 0 or line.released < 0 or line.remaining < 0:
            return f"hold {hold.hold_id}: impossible line {line}"
    if (hold.status is HoldStatus.OPEN) != (hold.remaining > 0):
        return f"hold {hold.hold_id}: status {hold.status.value} with {hold.remaining} remaining"
    return ""


def _unknown(
    what: str, value: str, source: str, *, row: int | None = None, column: str | None = None
) -> InputError:
    return InputError(
        f"unknown {what} {value!r} (receive or expect stock there first)",
        source=source,
        row=row,
        column=column,
    )


def _check_bool(value: object, source: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"expected True or False, got {value!r}", source=source)
    return value


def _ttl_seconds(ttl: timedelta | float) -> float:
    return ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)


def _lines_arg(lines: dict[Pair, int]) -> list[list[object]]:
    return [[loc, sku, qty] for (loc, sku), qty in lines.items()]
