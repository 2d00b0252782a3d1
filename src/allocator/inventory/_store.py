"""The storage interface behind :class:`~allocator.inventory.Ledger`.

A store keeps five things: the append-only entries, the derived totals per position, the holds,
the expected receipts and the idempotency keys. It knows nothing of the ledger's rules; it offers
transactions. The ledger core (:mod:`allocator.inventory.ledger`) runs every mutating call as one
write transaction in three phases:

1. look up the idempotency key;
2. read and lock what the call needs: holds first (in hold order), then totals (in sorted
   ``(location_id, sku)`` order), then expected receipts; this fixed order is what keeps
   concurrent writers on PostgreSQL free of deadlocks;
3. write the new entries, totals, holds and receipts, and the key with the call's result.

Any exception rolls the whole transaction back, so a call either happens completely or not at all.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Protocol, TypeVar

from allocator.inventory._types import Entry, Hold, Inbound, KeyRecord, Pair, Totals

__all__ = ["ReadTx", "Store", "WriteTx"]

R = TypeVar("R")


class ReadTx(Protocol):
    """Reads inside one consistent snapshot."""

    def totals(self, pairs: Sequence[Pair] | None = None) -> dict[Pair, Totals]:
        """Stored totals of the given positions (all when ``None``); unknown ones are absent."""
        ...

    def lapsed(self, now: datetime, pairs: Sequence[Pair] | None = None) -> dict[Pair, int]:
        """Units still reserved by open holds whose time-to-live elapsed at ``now``."""
        ...

    def inbound(
        self, pairs: Sequence[Pair] | None = None, due_by: date | None = None
    ) -> list[Inbound]:
        """Outstanding expected receipts, by eta then creation."""
        ...

    def holds(self, order_id: str) -> list[Hold]:
        """The holds of an order as stored, in creation order."""
        ...

    def entries(self, order_id: str | None = None, key: str | None = None) -> list[Entry]:
        """Entries in ledger order, optionally only those of one order or one key."""
        ...

    def entry_count(self) -> int:
        """Number of entries."""
        ...

    def entry_sums(self) -> dict[Pair, Totals]:
        """Per position, the sums of the entries' deltas (what the totals must equal)."""
        ...

    def open_hold_units(self) -> dict[Pair, int]:
        """Per position, units reserved by holds stored as open."""
        ...

    def order_flow(self, order_id: str) -> dict[str, tuple[int, int]]:
        """Per SKU, units shipped to the order and units of it restocked or written off."""
        ...

    def all_holds(self) -> Iterator[Hold]:
        """Every hold as stored."""
        ...


class WriteTx(ReadTx, Protocol):
    """A write transaction: reads that lock, then writes. Commits when the callback returns."""

    def find_key(self, key: str) -> KeyRecord | None:
        """The record of an idempotency key, if it was used."""
        ...

    def known(self, locations: Collection[str], skus: Collection[str]) -> tuple[set[str], set[str]]:
        """Which of the given locations and SKUs the ledger knows."""
        ...

    def lock_holds(self, order_id: str | None, lapsed_at: datetime) -> list[Hold]:
        """Lock and return the holds of ``order_id`` and every open hold lapsed at ``lapsed_at``."""
        ...

    def lock_totals(self, pairs: Sequence[Pair]) -> dict[Pair, Totals]:
        """Lock and return the totals of the positions (sorted); new positions read as zeros."""
        ...

    def lock_inbound(self, pair: Pair) -> list[Inbound]:
        """Lock and return the outstanding expected receipts of one position, by eta."""
        ...

    def add_ids(self, locations: Collection[str], skus: Collection[str]) -> None:
        """Make locations and SKUs known."""
        ...

    def put_totals(self, totals: Mapping[Pair, Totals]) -> None:
        """Write new totals of positions."""
        ...

    def put_holds(self, holds: Sequence[Hold], *, new: bool) -> None:
        """Insert new holds (``new``) or update the lines and status of existing ones."""
        ...

    def put_inbound(self, rows: Sequence[Inbound], *, new: bool) -> None:
        """Insert new expected receipts (``new``) or update how much of them was received."""
        ...

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        """Append entries; return them with their ledger sequence numbers."""
        ...

    def save_key(self, record: KeyRecord) -> None:
        """Remember an idempotency key with its call and first result."""
        ...


class Store(abc.ABC):
    """Base class of the ledger's stores: memory, SQLite and PostgreSQL."""

    name: str = "store"

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[ReadTx]:
        """A read-only snapshot (never blocks writers on SQLite or PostgreSQL)."""

    @abc.abstractmethod
    def write(self, body: Callable[[WriteTx], R]) -> R:
        """Run ``body`` in one write transaction and commit; roll back if it raises.

        Stores that can meet transient conflicts (a busy SQLite file, a PostgreSQL deadlock or
        serialization failure) run ``body`` again, a bounded number of times, on a fresh
        transaction; ``body`` must therefore do nothing outside the transaction.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    def integrity_problems(self) -> list[str]:
        """Problems found by the database's own consistency check (none for most stores)."""
        return []


def chunks(items: Sequence[R], size: int) -> Iterator[Sequence[R]]:
    """Split ``items`` into slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
