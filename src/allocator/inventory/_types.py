"""Value types of the inventory ledger: entries, holds, expected receipts and postings.

Everything here is immutable. The stores turn rows into these objects and back; the JSON codec at
the bottom is how a call's first result is kept beside its idempotency key, so that a replay can
return it unchanged.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from allocator.errors import HoldResolvedError

__all__ = [
    "Entry",
    "EntryKind",
    "Hold",
    "HoldExpiredError",
    "HoldLine",
    "HoldStatus",
    "Inbound",
    "Pair",
    "Posting",
    "Totals",
]

Pair = tuple[str, str]
"""A stock position: ``(location_id, sku)``. Locks are always taken in sorted order of pairs."""


class HoldExpiredError(HoldResolvedError):
    """A hold was released or shipped after its time-to-live had elapsed.

    A lapsed hold is resolved by expiry: its units are available again, so it cannot be released
    or shipped any more. Catching :class:`~allocator.errors.HoldResolvedError` also catches this.
    """


class EntryKind(enum.StrEnum):
    """What a ledger entry records. Each kind moves the per-position totals in a fixed way."""

    RECEIVE = "receive"
    """Units arrived (on hand up; an expected receipt it settles goes down)."""
    EXPECT = "expect"
    """Units are expected to arrive by a date (inbound up)."""
    RESERVE = "reserve"
    """Units promised to an order (reserved up)."""
    RELEASE = "release"
    """A promise given back (reserved down)."""
    EXPIRE = "expire"
    """A promise lapsed when its hold's time-to-live elapsed (reserved down)."""
    SHIP = "ship"
    """Promised units left the building (on hand and reserved down)."""
    RESTOCK = "restock"
    """Returned units back on the shelf (on hand up)."""
    WRITE_OFF = "write_off"
    """Returned units written off as damaged (no change to stock; recorded for the audit)."""
    ADJUST = "adjust"
    """A count correction (on hand up or down)."""
    TRANSFER_OUT = "transfer_out"
    """Units sent to another location (on hand down)."""
    TRANSFER_IN = "transfer_in"
    """Units taken in from another location (on hand up)."""
    SAFETY_STOCK = "safety_stock"
    """The safety stock of a position was set (``qty`` is the new level)."""


class HoldStatus(enum.StrEnum):
    """Where a hold is in its life. Only an ``OPEN`` hold can be shipped or released."""

    OPEN = "open"
    SHIPPED = "shipped"
    """Every unit of the hold was shipped."""
    RELEASED = "released"
    """The hold was released (perhaps after a partial shipment)."""
    EXPIRED = "expired"
    """The hold's time-to-live elapsed before it was resolved."""


@dataclass(slots=True)
class Totals:
    """The derived totals of one position. Mutable: the ledger core updates a working copy."""

    on_hand: int = 0
    reserved: int = 0
    inbound: int = 0
    safety_stock: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        """Return ``(on_hand, reserved, inbound, safety_stock)``."""
        return (self.on_hand, self.reserved, self.inbound, self.safety_stock)


@dataclass(frozen=True, slots=True)
class Entry:
    """One append-only ledger entry: what happened, where, how many, why, when, and under which key.

    Attributes
    ----------
    seq
        Position in the ledger (increasing; assigned by the store).
    at
        When it was written (timezone-aware, UTC).
    kind
        What happened.
    location_id, sku
        The position it concerns.
    qty
        How many units the call named (for ``adjust`` signed; for ``safety_stock`` the new level).
    d_on_hand, d_reserved, d_inbound, d_safety
        How the entry moved each total of the position. The totals are the sums of these.
    reason
        Why (free text), where given.
    order_id, hold_id
        The order and hold it belongs to, where any.
    key
        The idempotency key of the call that wrote it (``None`` for expiry sweeps).
    """

    seq: int
    at: datetime
    kind: EntryKind
    location_id: str
    sku: str
    qty: int
    d_on_hand: int = 0
    d_reserved: int = 0
    d_inbound: int = 0
    d_safety: int = 0
    reason: str | None = None
    order_id: str | None = None
    hold_id: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class HoldLine:
    """One line of a hold: units of one SKU promised at one location.

    ``remaining`` (= qty - shipped - released) units are still reserved while the hold is open.
    Units given back by a release or by expiry both count as ``released``.
    """

    sku: str
    location_id: str
    qty: int
    shipped: int = 0
    released: int = 0

    @property
    def remaining(self) -> int:
        """Units still reserved by this line."""
        return self.qty - self.shipped - self.released

    @property
    def pair(self) -> Pair:
        """The ``(location_id, sku)`` position of the line."""
        return (self.location_id, self.sku)


@dataclass(frozen=True, slots=True)
class Hold:
    """A promise of stock to one order: all its lines were reserved together.

    Attributes
    ----------
    hold_id
        Identifier (derived from the idempotency key of the reservation).
    order_id
        The order the units are promised to.
    lines
        What is promised, where, and how much of it was shipped or given back.
    status
        See :class:`HoldStatus`. Reads report an open hold whose time-to-live elapsed as
        ``EXPIRED`` even before :meth:`~allocator.inventory.Ledger.expire_holds` records it.
    created
        When the hold was made.
    expires
        When it lapses, or ``None`` for a hold without time-to-live.
    key
        The idempotency key of the reservation.
    """

    hold_id: str
    order_id: str
    lines: tuple[HoldLine, ...]
    status: HoldStatus
    created: datetime
    expires: datetime | None
    key: str

    @property
    def remaining(self) -> int:
        """Units the hold still reserves."""
        return sum(line.remaining for line in self.lines)

    def lapsed(self, now: datetime) -> bool:
        """Whether the hold is open but its time-to-live has elapsed at ``now``."""
        return self.status is HoldStatus.OPEN and self.expires is not None and self.expires <= now


@dataclass(frozen=True, slots=True)
class Inbound:
    """An expected receipt: ``qty`` units of ``sku`` due at ``location_id`` by ``eta``.

    ``received`` units of it have arrived; the rest (``outstanding``) counts towards
    forward-looking availability from ``eta`` on.
    """

    inbound_id: str
    location_id: str
    sku: str
    qty: int
    eta: date
    received: int = 0
    key: str = ""

    @property
    def outstanding(self) -> int:
        """Units still expected."""
        return self.qty - self.received


@dataclass(frozen=True, slots=True)
class Posting:
    """What one mutating call wrote: its key, its entries and the holds it changed.

    A replay of the call (same key, same arguments) returns the first posting unchanged.
    """

    key: str
    entries: tuple[Entry, ...]
    holds: tuple[Hold, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An idempotency key with the call it belongs to and that call's first result (JSON)."""

    key: str
    op: str
    fingerprint: str
    result: str
    at: datetime


# --- JSON codec for stored results ------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _untime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """Encode an entry as a JSON-able dict."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "kind": entry.kind.value,
        "location_id": entry.location_id,
        "sku": entry.sku,
        "qty": entry.qty,
        "d": [entry.d_on_hand, entry.d_reserved, entry.d_inbound, entry.d_safety],
        "reason": entry.reason,
        "order_id": entry.order_id,
        "hold_id": entry.hold_id,
        "key": entry.key,
    }


def entry_from_json(data: dict[str, Any]) -> Entry:
    """Decode :func:`entry_to_json`."""
    d_on_hand, d_reserved, d_inbound, d_safety = data["d"]
    return Entry(
        seq=data["seq"],
        at=datetime.fromisoformat(data["at"]),
        kind=EntryKind(data["kind"]),
        location_id=data["location_id"],
        sku=data["sku"],
        qty=data["qty"],
        d_on_hand=d_on_hand,
        d_reserved=d_reserved,
        d_inbound=d_inbound,
        d_safety=d_safety,
        reason=data["reason"],
        order_id=data["order_id"],
        hold_id=data["hold_id"],
        key=data["key"],
    )


def hold_to_json(hold: Hold) -> dict[str, Any]:
    """Encode a hold as a JSON-able dict."""
    return {
        "hold_id": hold.hold_id,
        "order_id": hold.order_id,
        "lines": [
            [line.sku, line.location_id, line.qty, line.shipped, line.released]
            for line in hold.lines
        ],
        "status": hold.status.value,
        "created": _time(hold.created),
        "expires": _time(hold.expires),
        "key": hold.key,
    }


def hold_from_json(data: dict[str, Any]) -> Hold:
    """Decode :func:`hold_to_json`."""
    created = _untime(data["created"])
    assert created is not None
    return Hold(
        hold_id=data["hold_id"],
        order_id=data["order_id"],
        lines=tuple(HoldLine(*line) for line in data["lines"]),
        status=HoldStatus(data["status"]),
        created=created,
        expires=_untime(data["expires"]),
        key=data["key"],
    )


def posting_to_json(posting: Posting) -> str:
    """Encode a posting as JSON text."""
    return json.dumps(
        {
            "key": posting.key,
            "entries": [entry_to_json(e) for e in posting.entries],
            "holds": [hold_to_json(h) for h in posting.holds],
        },
        separators=(",", ":"),
    )


def posting_from_json(text: str) -> Posting:
    """Decode :func:`posting_to_json`."""
    data = json.loads(text)
    return Posting(
        key=data["key"],
        entries=tuple(entry_from_json(e) for e in data["entries"]),
        holds=tuple(hold_from_json(h) for h in data["holds"]),
    )
