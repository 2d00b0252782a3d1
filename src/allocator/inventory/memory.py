"""The in-memory store: plain Python containers behind one lock.

For tests, notebooks and simulations that do not need the ledger to outlive the process. A write
transaction queues its writes and applies them only when the ledger's callback returns, so a call
that raises leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TypeVar

from allocator.inventory._store import ReadTx, Store, WriteTx
from allocator.inventory._types import (
    Entry,
    EntryKind,
    Hold,
    HoldStatus,
    Inbound,
    KeyRecord,
    Pair,
    Totals,
)

__all__ = ["MemoryStore"]

R = TypeVar("R")


@dataclass
class _State:
    locations: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    totals: dict[Pair, Totals] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    # The entries of each order, in sequence: an order's flow is read on every return, and a
    # scan of all entries made long replays with returns quadratic.
    order_entries: dict[str, list[Entry]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)  # insertion order = creation order
    order_holds: dict[str, list[str]] = field(default_factory=dict)
    inbound: dict[str, Inbound] = field(default_factory=dict)
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    expiring: dict[str, datetime] = field(default_factory=dict)  # open holds with a ttl
    hold_seq: dict[str, int] = field(default_factory=dict)

    def lapsed_holds(self, now: datetime) -> list[Hold]:
        return [self.holds[h] for h, expires in self.expiring.items() if expires <= now]


def _copy(totals: Totals) -> Totals:
    return Totals(*totals.as_tuple())


class _Reader:
    """Reads over the state (the store's lock is held by the caller)."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def totals(self, pairs: Sequence[Pair] | None = None) -> dict[Pair, Totals]:
        rows = self.state.totals
        if pairs is None:
            return {pair: _copy(t) for pair, t in rows.items()}
        return {pair: _copy(rows[pair]) for pair in pairs if pair in rows}

    def lapsed(self, now: datetime, pairs: Sequence[Pair] | None = None) -> dict[Pair, int]:
        wanted = None if pairs is None else set(pairs)
        out: dict[Pair, int] = {}
        for hold in self.state.lapsed_holds(now):
            for line in hold.lines:
                if line.remaining and (wanted is None or line.pair in wanted):
                    out[line.pair] = out.get(line.pair, 0) + line.remaining
        return out

    def inbound(
        self, pairs: Sequence[Pair] | None = None, due_by: date | None = None
    ) -> list[Inbound]:
        wanted = None if pairs is None else set(pairs)
        rows = [
            row
            for row in self.state.inbound.values()
            if row.outstanding
            and (wanted is None or (row.location_id, row.sku) in wanted)
            and (due_by is None or row.eta <= due_by)
        ]
        order = {inbound_id: n for n, inbound_id in enumerate(self.state.inbound)}
        return sorted(rows, key=lambda row: (row.eta, order[row.inbound_id]))

    def holds(self, order_id: str) -> list[Hold]:
        return [self.state.holds[h] for h in self.state.order_holds.get(order_id, [])]

    def entries(self, order_id: str | None = None, key: str | None = None) -> list[Entry]:
        pool = (
            self.state.entries if order_id is None else self.state.order_entries.get(order_id, [])
        )
        return [entry for entry in pool if key is None or entry.key == key]

    def entry_count(self) -> int:
        return len(self.state.entries)

    def entry_sums(self) -> dict[Pair, Totals]:
        sums: dict[Pair, Totals] = {}
        for entry in self.state.entries:
            totals = sums.setdefault((entry.location_id, entry.sku), Totals())
            totals.on_hand += entry.d_on_hand
            totals.reserved += entry.d_reserved
            totals.inbound += entry.d_inbound
            totals.safety_stock += entry.d_safety
        return sums

    def open_hold_units(self) -> dict[Pair, int]:
        out: dict[Pair, int] = {}
        for hold in self.state.holds.values():
            if hold.status is HoldStatus.OPEN:
                for line in hold.lines:
                    out[line.pair] = out.get(line.pair, 0) + line.remaining
        return out

    def order_flow(self, order_id: str) -> dict[str, tuple[int, int]]:
        flow: dict[str, tuple[int, int]] = {}
        for entry in self.state.order_entries.get(order_id, []):
            shipped, returned = flow.get(entry.sku, (0, 0))
            if entry.kind is EntryKind.SHIP:
                shipped += entry.qty
            elif entry.kind in (EntryKind.RESTOCK, EntryKind.WRITE_OFF):
                returned += entry.qty
            flow[entry.sku] = (shipped, returned)
        return flow

    def all_holds(self) -> Iterator[Hold]:
        return iter(list(self.state.holds.values()))


class _Writer(_Reader):
    """A write transaction: reads see the state as it was; writes wait for :meth:`commit`."""

    def __init__(self, state: _State) -> None:
        super().__init__(state)
        self.pending: list[Callable[[], None]] = []
        self.next_seq = len(state.entries) + 1

    def find_key(self, key: str) -> KeyRecord | None:
        return self.state.keys.get(key)

    def known(self, locations: Collection[str], skus: Collection[str]) -> tuple[set[str], set[str]]:
        return (
            {loc for loc in locations if loc in self.state.locations},
            {sku for sku in skus if sku in self.state.skus},
        )

    def lock_holds(self, order_id: str | None, lapsed_at: datetime) -> list[Hold]:
        chosen = set(self.state.order_holds.get(order_id, [])) if order_id is not None else set()
        chosen.update(hold.hold_id for hold in self.state.lapsed_holds(lapsed_at))
        return sorted((self.state.holds[h] for h in chosen), key=self._hold_order)

    def _hold_order(self, hold: Hold) -> int:
        return self.state.hold_seq[hold.hold_id]

    def lock_totals(self, pairs: Sequence[Pair]) -> dict[Pair, Totals]:
        rows = self.state.totals
        return {pair: _copy(rows[pair]) if pair in rows else Totals() for pair in pairs}

    def lock_inbound(self, pair: Pair) -> list[Inbound]:
        return self.inbound([pair])

    def add_ids(self, locations: Collection[str], skus: Collection[str]) -> None:
        locs, names = set(locations), set(skus)

        def apply() -> None:
            self.state.locations.update(locs)
            self.state.skus.update(names)

        self.pending.append(apply)

    def put_totals(self, totals: Mapping[Pair, Totals]) -> None:
        rows = {pair: _copy(t) for pair, t in totals.items()}
        self.pending.append(lambda: self.state.totals.update(rows))

    def put_holds(self, holds: Sequence[Hold], *, new: bool) -> None:
        rows = list(holds)

        def apply() -> None:
            for hold in rows:
                self.state.holds[hold.hold_id] = hold
                if hold.status is HoldStatus.OPEN and hold.expires is not None:
                    self.state.expiring[hold.hold_id] = hold.expires
                else:
                    self.state.expiring.pop(hold.hold_id, None)
                if new:
                    self.state.hold_seq[hold.hold_id] = len(self.state.hold_seq)
                    self.state.order_holds.setdefault(hold.order_id, []).append(hold.hold_id)

        self.pending.append(apply)

    def put_inbound(self, rows: Sequence[Inbound], *, new: bool) -> None:
        updates = {row.inbound_id: row for row in rows}
        self.pending.append(lambda: self.state.inbound.update(updates))

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        numbered = [replace(entry, seq=self.next_seq + n) for n, entry in enumerate(entries)]
        self.next_seq += len(numbered)

        def apply() -> None:
            self.state.entries.extend(numbered)
            for entry in numbered:
                if entry.order_id is not None:
                    self.state.order_entries.setdefault(entry.order_id, []).append(entry)

        self.pending.append(apply)
        return numbered

    def save_key(self, record: KeyRecord) -> None:
        self.pending.append(lambda: self.state.keys.__setitem__(record.key, record))

    def commit(self) -> None:
        for apply in self.pending:
            apply()


class MemoryStore(Store):
    """Ledger data in process memory (thread-safe; gone when the process ends)."""

    name = "memory"

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.RLock()

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        with self._lock:
            yield _Reader(self._state)

    def write(self, body: Callable[[WriteTx], R]) -> R:
        with self._lock:
            writer = _Writer(self._state)
            result = body(writer)
            writer.commit()
            return result

    def close(self) -> None:
        """Nothing to release."""
