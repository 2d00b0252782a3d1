"""The order record: lines with their quantities, the state, and the history that produced them.

An :class:`OrderRecord` is immutable. :func:`apply` turns a record and one event with its
quantity :class:`Change` s into the next record, after checking the transition table
(:mod:`allocator.lifecycle.machine`) and the invariants of every line; a refused event raises
and the record is untouched. The history keeps each event with its time, quantities, actor,
reason and idempotency key, so :func:`replay` rebuilds the record from the history alone, and
:meth:`OrderRecord.to_json` / :meth:`OrderRecord.from_json` round-trip exactly.

Invoice and credit records for finance are derived here too: every shipped unit of a priced line
produces an invoice line, every returned unit a credit line.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from allocator.errors import InputError
from allocator.lifecycle.machine import (
    TRANSITIONS,
    Event,
    OrderTransitionError,
    Quantities,
    State,
    next_state,
)
from allocator.model import Order

__all__ = [
    "Bucket",
    "Change",
    "FinanceRecord",
    "HistoryEntry",
    "LineRecord",
    "OrderRecord",
    "apply",
    "capture_record",
    "replay",
]

JSON = Any


class Bucket(enum.StrEnum):
    """A quantity kept per order line; the first four are kept per location."""

    ALLOCATED = "allocated"
    RELEASED = "released"
    PICKED = "picked"
    SHIPPED = "shipped"
    ORDERED = "ordered"
    BACKORDERED = "backordered"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"


_LOCATED = (Bucket.ALLOCATED, Bucket.RELEASED, Bucket.PICKED, Bucket.SHIPPED)


@dataclass(frozen=True, slots=True)
class Change:
    """Units added to (or, negative, taken from) one bucket of one line."""

    line_id: str
    bucket: Bucket
    qty: int
    location_id: str | None = None

    def to_json(self) -> list[JSON]:
        return [self.line_id, self.bucket.value, self.qty, self.location_id]

    @classmethod
    def from_json(cls, data: Sequence[JSON]) -> Change:
        return cls(str(data[0]), Bucket(data[1]), int(data[2]), data[3])


def _counts(values: Mapping[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(values.items()) if v}


@dataclass(frozen=True, slots=True)
class LineRecord:
    """Quantities of one order line.

    Per location: ``allocated`` (reserved, not shipped), ``released`` and ``picked`` (parts of
    the allocated units), ``shipped``. Per line: ``ordered`` (after quantity changes),
    ``backordered``, ``delivered``, ``cancelled``, ``return_requested``, ``returned``.
    """

    line_id: str
    sku: str
    ordered: int
    unit_price: float | None = None
    allocated: Mapping[str, int] = field(default_factory=dict)
    released: Mapping[str, int] = field(default_factory=dict)
    picked: Mapping[str, int] = field(default_factory=dict)
    shipped: Mapping[str, int] = field(default_factory=dict)
    backordered: int = 0
    delivered: int = 0
    cancelled: int = 0
    return_requested: int = 0
    returned: int = 0

    @property
    def allocated_units(self) -> int:
        return sum(self.allocated.values())

    @property
    def shipped_units(self) -> int:
        return sum(self.shipped.values())

    @property
    def live(self) -> int:
        """Units not cancelled."""
        return self.ordered - self.cancelled

    @property
    def unshipped(self) -> int:
        """Live units not shipped yet."""
        return self.live - self.shipped_units

    @property
    def pending(self) -> int:
        """Live units neither reserved, backordered nor shipped."""
        return self.unshipped - self.allocated_units - self.backordered

    @property
    def returnable(self) -> int:
        """Delivered units neither returned nor asked back."""
        return self.delivered - self.returned - self.return_requested

    def problems(self) -> list[str]:
        """Broken invariants of the line (empty when sound)."""
        out = [
            f"{name} is negative"
            for name in ("ordered", "backordered", "delivered", "cancelled")
            if getattr(self, name) < 0
        ]
        if self.return_requested < 0 or self.returned < 0:
            out.append("returns are negative")
        out.extend(
            f"{bucket.value} is negative at a location"
            for bucket in _LOCATED
            if any(v < 0 for v in getattr(self, bucket.value).values())
        )
        for loc, units in self.released.items():
            if units > self.allocated.get(loc, 0):
                out.append(f"more released than allocated at {loc}")
        for loc, units in self.picked.items():
            if units > self.released.get(loc, 0):
                out.append(f"more picked than released at {loc}")
        if self.pending < 0:
            out.append("allocated + backordered + shipped + cancelled exceed the ordered units")
        if self.delivered > self.shipped_units:
            out.append("more delivered than shipped")
        if self.returned + self.return_requested > self.delivered:
            out.append("more returned than delivered")
        return out

    def to_json(self) -> dict[str, JSON]:
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "ordered": self.ordered,
            "unit_price": self.unit_price,
            "allocated": dict(self.allocated),
            "released": dict(self.released),
            "picked": dict(self.picked),
            "shipped": dict(self.shipped),
            "backordered": self.backordered,
            "delivered": self.delivered,
            "cancelled": self.cancelled,
            "return_requested": self.return_requested,
            "returned": self.returned,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> LineRecord:
        return cls(
            line_id=data["line_id"],
            sku=data["sku"],
            ordered=int(data["ordered"]),
            unit_price=None if data["unit_price"] is None else float(data["unit_price"]),
            allocated=_counts(data["allocated"]),
            released=_counts(data["released"]),
            picked=_counts(data["picked"]),
            shipped=_counts(data["shipped"]),
            backordered=int(data["backordered"]),
            delivered=int(data["delivered"]),
            cancelled=int(data["cancelled"]),
            return_requested=int(data["return_requested"]),
            returned=int(data["returned"]),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in an order's life.

    Attributes
    ----------
    seq
        1-based position in the history.
    event
        What happened.
    at
        When (timezone-aware).
    state
        The state the event left the order in.
    changes
        The quantities it moved.
    key
        Idempotency key of the operation.
    actor, reason
        Who did it, and why (free text).
    fingerprint
        The operation's arguments, to recognise a replay of the same key.
    details
        Operation-specific facts (JSON values): a location, a disposition, a replacement order.
    """

    seq: int
    event: Event
    at: datetime
    state: State
    changes: tuple[Change, ...] = ()
    key: str | None = None
    actor: str | None = None
    reason: str | None = None
    fingerprint: str | None = None
    details: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        return {
            "seq": self.seq,
            "event": self.event.value,
            "at": self.at.isoformat(),
            "state": self.state.value,
            "changes": [c.to_json() for c in self.changes],
            "key": self.key,
            "actor": self.actor,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> HistoryEntry:
        return cls(
            seq=int(data["seq"]),
            event=Event(data["event"]),
            at=datetime.fromisoformat(data["at"]),
            state=State(data["state"]),
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            key=data["key"],
            actor=data["actor"],
            reason=data["reason"],
            fingerprint=data["fingerprint"],
            details=dict(data["details"]),
        )


@dataclass(frozen=True, slots=True)
class FinanceRecord:
    """An invoice line (units shipped) or a credit line (units returned) of a priced order line.

    ``amount`` is ``qty * unit_price``, or ``None`` when the line has no price.
    """

    kind: str  # "invoice" or "credit"
    order_id: str
    line_id: str
    sku: str
    qty: int
    unit_price: float | None
    amount: float | None
    at: datetime
    seq: int  # the history entry that produced it
    location_id: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {
            "kind": self.kind,
            "order_id": self.order_id,
            "line_id": self.line_id,
            "sku": self.sku,
            "qty": self.qty,
            "unit_price": self.unit_price,
            "amount": self.amount,
            "at": self.at.isoformat(),
            "seq": self.seq,
            "location_id": self.location_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> FinanceRecord:
        return cls(
            kind=data["kind"],
            order_id=data["order_id"],
            line_id=data["line_id"],
            sku=data["sku"],
            qty=int(data["qty"]),
            unit_price=data["unit_price"],
            amount=data["amount"],
            at=datetime.fromisoformat(data["at"]),
            seq=int(data["seq"]),
            location_id=data["location_id"],
        )


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order as the lifecycle tracks it.

    Attributes
    ----------
    order
        The order as captured.
    state
        Its state now.
    lines
        Quantities per line, in the order's line order.
    history
        Every event so far, the capture first.
    excluded
        Locations that refused the order (never sourced from again).
    finance
        Invoice and credit lines, oldest first.
    exchange_of
        The order this one replaces, for an exchange's replacement order.
    replacements
        Replacement orders placed by exchanges of this one.
    """

    order: Order
    state: State
    lines: tuple[LineRecord, ...]
    history: tuple[HistoryEntry, ...]
    excluded: tuple[str, ...] = ()
    finance: tuple[FinanceRecord, ...] = ()
    exchange_of: str | None = None
    replacements: tuple[str, ...] = ()

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def version(self) -> int:
        """Number of events so far (the capture is 1)."""
        return len(self.history)

    @property
    def customer_id(self) -> str | None:
        return self.order.customer_id

    def line(self, line_id: str) -> LineRecord:
        """The line with this id.

        Raises
        ------
        InputError
            When the order has no such line.
        """
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise InputError(
            f"order {self.order_id!r} has no line {line_id!r}", source="lines", column="line_id"
        )

    def quantities(self) -> Quantities:
        """Units of all lines in each bucket."""
        return _quantities(self.lines)

    def allocated_positions(self) -> dict[tuple[str, str], int]:
        """Units reserved and not shipped, per ``(location_id, sku)``."""
        out: dict[tuple[str, str], int] = {}
        for line in self.lines:
            for loc, units in line.allocated.items():
                out[(loc, line.sku)] = out.get((loc, line.sku), 0) + units
        return out

    def entry_for_key(self, key: str) -> HistoryEntry | None:
        """The history entry written under an idempotency key, if any."""
        for entry in reversed(self.history):
            if entry.key == key:
                return entry
        return None

    @property
    def created_at(self) -> datetime:
        """When the order was captured."""
        return self.history[0].at

    @property
    def since(self) -> datetime:
        """When the order last changed state."""
        at = self.history[-1].at
        for entry in reversed(self.history):
            if entry.state is not self.state:
                break
            at = entry.at
        return at

    def to_json(self) -> str:
        """The record as JSON text (exact: :meth:`from_json` gives an equal record)."""
        return json.dumps(
            {
                "order": self.order.model_dump(mode="json"),
                "state": self.state.value,
                "lines": [line.to_json() for line in self.lines],
                "history": [entry.to_json() for entry in self.history],
                "excluded": list(self.excluded),
                "finance": [f.to_json() for f in self.finance],
                "exchange_of": self.exchange_of,
                "replacements": list(self.replacements),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> OrderRecord:
        """Decode :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            order=Order.model_validate(data["order"]),
            state=State(data["state"]),
            lines=tuple(LineRecord.from_json(line) for line in data["lines"]),
            history=tuple(HistoryEntry.from_json(e) for e in data["history"]),
            excluded=tuple(data["excluded"]),
            finance=tuple(FinanceRecord.from_json(f) for f in data["finance"]),
            exchange_of=data["exchange_of"],
            replacements=tuple(data["replacements"]),
        )


def _quantities(lines: Iterable[LineRecord]) -> Quantities:
    ordered = cancelled = allocated = released = picked = 0
    backordered = shipped = delivered = requested = returned = 0
    for line in lines:
        ordered += line.ordered
        cancelled += line.cancelled
        allocated += sum(line.allocated.values())
        released += sum(line.released.values())
        picked += sum(line.picked.values())
        shipped += sum(line.shipped.values())
        backordered += line.backordered
        delivered += line.delivered
        requested += line.return_requested
        returned += line.returned
    return Quantities(
        ordered=ordered,
        cancelled=cancelled,
        allocated=allocated,
        released=released,
        picked=picked,
        backordered=backordered,
        shipped=shipped,
        delivered=delivered,
        return_requested=requested,
        returned=returned,
    )


def capture_record(
    order: Order,
    at: datetime,
    *,
    key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    fingerprint: str | None = None,
    exchange_of: str | None = None,
) -> OrderRecord:
    """The record of a newly captured order (state ``created``, its capture in the history)."""
    from allocator.realtime import line_ids

    ids = line_ids(order)
    if len(set(ids)) != len(ids):
        raise InputError(f"order {order.order_id!r} repeats a line id", source="order")
    lines = tuple(
        LineRecord(line_id=lid, sku=line.sku, ordered=line.qty, unit_price=line.unit_price)
        for lid, line in zip(ids, order.lines, strict=True)
    )
    details: dict[str, JSON] = {"exchange_of": exchange_of} if exchange_of else {}
    entry = HistoryEntry(
        seq=1,
        event=Event.CAPTURE,
        at=at,
        state=State.CREATED,
        key=key,
        actor=actor,
        reason=reason,
        fingerprint=fingerprint,
        details=details,
    )
    return OrderRecord(
        order=order,
        state=State.CREATED,
        lines=lines,
        history=(entry,),
        exchange_of=exchange_of,
    )


#: Position of each bucket in the working list of :func:`_apply_changes`.
_SLOT = {
    Bucket.ALLOCATED: 0,
    Bucket.RELEASED: 1,
    Bucket.PICKED: 2,
    Bucket.SHIPPED: 3,
    Bucket.ORDERED: 4,
    Bucket.BACKORDERED: 5,
    Bucket.DELIVERED: 6,
    Bucket.CANCELLED: 7,
    Bucket.RETURN_REQUESTED: 8,
    Bucket.RETURNED: 9,
}


def _sound(line: LineRecord) -> bool:
    """Whether a line keeps its invariants (a fast check; :meth:`LineRecord.problems` says why)."""
    if (
        line.ordered < 0
        or line.backordered < 0
        or line.delivered < 0
        or line.cancelled < 0
        or line.return_requested < 0
        or line.returned < 0
    ):
        return False
    allocated, released, picked = line.allocated, line.released, line.picked
    for counts in (allocated, released, picked, line.shipped):
        for units in counts.values():
            if units < 0:
                return False
    for loc, units in released.items():
        if units > allocated.get(loc, 0):
            return False
    for loc, units in picked.items():
        if units > released.get(loc, 0):
            return False
    shipped = sum(line.shipped.values())
    return (
        line.ordered - line.cancelled - shipped - sum(allocated.values()) - line.backordered >= 0
        and line.delivered <= shipped
        and line.returned + line.return_requested <= line.delivered
    )


def _apply_changes(lines: tuple[LineRecord, ...], changes: Sequence[Change]) -> list[LineRecord]:
    by_line: dict[str, list[Change]] = {}
    for change in changes:
        by_line.setdefault(change.line_id, []).append(change)
    out = []
    seen = 0
    for line in lines:
        mine = by_line.get(line.line_id)
        if mine is None:
            out.append(line)
            continue
        seen += 1
        slots: list[Any] = [
            line.allocated,
            line.released,
            line.picked,
            line.shipped,
            line.ordered,
            line.backordered,
            line.delivered,
            line.cancelled,
            line.return_requested,
            line.returned,
        ]
        copied = [False, False, False, False]
        for change in mine:
            slot = _SLOT[change.bucket]
            if slot < 4:
                loc = change.location_id
                if loc is None:
                    raise InputError(
                        f"{change.bucket.value} changes need a location", source="changes"
                    )
                if not copied[slot]:
                    slots[slot] = dict(slots[slot])
                    copied[slot] = True
                counts = slots[slot]
                units = counts.get(loc, 0) + change.qty
                if units:
                    counts[loc] = units
                else:
                    counts.pop(loc, None)
            else:
                slots[slot] += change.qty
        for slot in range(4):
            if copied[slot]:
                slots[slot] = dict(sorted(slots[slot].items()))
        new = LineRecord(
            line.line_id,
            line.sku,
            slots[4],
            line.unit_price,
            slots[0],
            slots[1],
            slots[2],
            slots[3],
            slots[5],
            slots[6],
            slots[7],
            slots[8],
            slots[9],
        )
        if not _sound(new):
            problems = "; ".join(new.problems())
            raise InputError(f"line {line.line_id!r}: {problems}", source="changes")
        out.append(new)
    if seen != len(by_line):
        known = {line.line_id for line in lines}
        unknown = next(lid for lid in by_line if lid not in known)
        raise InputError(f"no line {unknown!r}", source="changes", column="line_id")
    return out


def apply(
    record: OrderRecord,
    event: Event,
    changes: Sequence[Change] = (),
    *,
    at: datetime,
    key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    fingerprint: str | None = None,
    details: Mapping[str, JSON] | None = None,
) -> OrderRecord:
    """The record after ``event`` moved ``changes``; ``record`` itself is never modified.

    Raises
    ------
    OrderTransitionError
        When the state does not allow the event, or the quantities after it fit none of the
        candidate states.
    InputError
        When the changes break a line's invariants (more shipped than allocated, say).
    """
    if event is Event.CAPTURE:
        raise InputError("an order is captured once", source="event")
    # A cheap table check first, so that a refused event costs no copying.
    if (record.state, event) not in TRANSITIONS:
        raise OrderTransitionError(record.state, event, record.order_id)
    lines = tuple(_apply_changes(record.lines, changes))
    state = next_state(record.state, event, _quantities(lines), record.order_id)
    seq = len(record.history) + 1
    info = dict(details or {})
    entry = HistoryEntry(
        seq=seq,
        event=event,
        at=at,
        state=state,
        changes=tuple(changes),
        key=key,
        actor=actor,
        reason=reason,
        fingerprint=fingerprint,
        details=info,
    )
    finance = record.finance + _finance(record, lines, changes, at, seq)
    excluded = record.excluded
    if event is Event.LOCATION_REJECT and "location" in info:
        excluded = tuple(sorted({*excluded, str(info["location"])}))
    replacements = record.replacements
    if event is Event.EXCHANGE and "replacement" in info:
        replacements = (*replacements, str(info["replacement"]))
    return OrderRecord(
        order=record.order,
        state=state,
        lines=lines,
        history=(*record.history, entry),
        excluded=excluded,
        finance=finance,
        exchange_of=record.exchange_of,
        replacements=replacements,
    )


def _finance(
    record: OrderRecord,
    lines: Sequence[LineRecord],
    changes: Sequence[Change],
    at: datetime,
    seq: int,
) -> tuple[FinanceRecord, ...]:
    out = []
    by_id = {line.line_id: line for line in lines}
    for change in changes:
        if change.bucket is Bucket.SHIPPED and change.qty > 0:
            kind = "invoice"
        elif change.bucket is Bucket.RETURNED and change.qty > 0:
            kind = "credit"
        else:
            continue
        line = by_id[change.line_id]
        price = line.unit_price
        out.append(
            FinanceRecord(
                kind=kind,
                order_id=record.order_id,
                line_id=line.line_id,
                sku=line.sku,
                qty=change.qty,
                unit_price=price,
                amount=None if price is None else change.qty * price,
                at=at,
                seq=seq,
                location_id=change.location_id,
            )
        )
    return tuple(out)


def replay(history: Sequence[HistoryEntry], order: Order) -> OrderRecord:
    """Rebuild a record from its captured order and its history.

    Raises
    ------
    InputError
        When the history does not start with the capture.
    OrderTransitionError
        When an entry is not a valid transition (a tampered history).
    """
    if not history or history[0].event is not Event.CAPTURE:
        raise InputError("a history starts with the capture", source="history")
    first = history[0]
    record = capture_record(
        order,
        first.at,
        key=first.key,
        actor=first.actor,
        reason=first.reason,
        fingerprint=first.fingerprint,
        exchange_of=first.details.get("exchange_of"),
    )
    for entry in history[1:]:
        record = apply(
            record,
            entry.event,
            entry.changes,
            at=entry.at,
            key=entry.key,
            actor=entry.actor,
            reason=entry.reason,
            fingerprint=entry.fingerprint,
            details=entry.details,
        )
        if record.state is not entry.state:
            raise InputError(
                f"history entry {entry.seq} records state {entry.state.value!r} but replaying"
                f" it gives {record.state.value!r}",
                source="history",
            )
    return record
