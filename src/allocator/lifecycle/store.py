"""Where order records live: in memory, or in a SQLite file.

A store keeps one :class:`~allocator.lifecycle.record.OrderRecord` per order with its version
(the length of its history). :meth:`OrderStore.put` is a compare-and-set on that version, so two
processes that change the same order at once cannot both win: the second gets
:class:`StaleOrderError` and retries on the fresh record.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import threading
from collections.abc import Iterator

from allocator.errors import AllocatorError, InputError
from allocator.lifecycle.machine import TERMINAL
from allocator.lifecycle.record import OrderRecord

__all__ = ["MemoryOrderStore", "OrderStore", "SQLiteOrderStore", "StaleOrderError", "open_store"]


class StaleOrderError(AllocatorError):
    """An order changed since it was read (another writer won); read it again and retry."""


def _has_backorders(record: OrderRecord) -> bool:
    return record.state not in TERMINAL and any(line.backordered for line in record.lines)


class OrderStore(abc.ABC):
    """Base class of order stores."""

    @abc.abstractmethod
    def get(self, order_id: str) -> OrderRecord | None:
        """The record of an order, or ``None``."""

    @abc.abstractmethod
    def put(self, record: OrderRecord, *, expected_version: int) -> None:
        """Store ``record`` if the stored version is ``expected_version`` (0: a new order).

        Raises
        ------
        StaleOrderError
            When another writer changed (or created) the order in between.
        """

    @abc.abstractmethod
    def records(self) -> Iterator[OrderRecord]:
        """Every record, by order id."""

    @abc.abstractmethod
    def by_customer(self, customer_id: str) -> list[OrderRecord]:
        """A customer's orders, oldest capture first."""

    @abc.abstractmethod
    def with_backorders(self) -> list[OrderRecord]:
        """Open orders with backordered units, by order id."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (idempotent)."""


class MemoryOrderStore(OrderStore):
    """Records in a dictionary (records are immutable, so nothing is copied)."""

    def __init__(self) -> None:
        self._records: dict[str, OrderRecord] = {}
        self._lock = threading.Lock()

    def get(self, order_id: str) -> OrderRecord | None:
        return self._records.get(order_id)

    def put(self, record: OrderRecord, *, expected_version: int) -> None:
        with self._lock:
            current = self._records.get(record.order_id)
            version = 0 if current is None else current.version
            if version != expected_version:
                raise StaleOrderError(
                    f"order {record.order_id!r} is at version {version}, not {expected_version}"
                )
            self._records[record.order_id] = record

    def records(self) -> Iterator[OrderRecord]:
        for order_id in sorted(self._records):
            yield self._records[order_id]

    def by_customer(self, customer_id: str) -> list[OrderRecord]:
        found = [r for r in self._records.values() if r.customer_id == customer_id]
        return sorted(found, key=lambda r: (r.created_at, r.order_id))

    def with_backorders(self) -> list[OrderRecord]:
        return [r for r in self.records() if _has_backorders(r)]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT,
    state TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    backorders INTEGER NOT NULL CHECK (backorders IN (0, 1)),
    captured TEXT NOT NULL,
    body TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id, captured)
    WHERE customer_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_backorders ON orders (order_id) WHERE backorders = 1
"""


class SQLiteOrderStore(OrderStore):
    """Records as JSON in one SQLite table (WAL; safe for several processes on one machine).

    Parameters
    ----------
    path
        The database file (created if missing). It may be the ledger's own file: the table
        names do not clash.
    busy_timeout
        Seconds a writer waits for the write lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        for statement in _SCHEMA.split(";\n"):
            if statement.strip():
                self._conn.execute(statement)
        self._closed = False

    def get(self, order_id: str) -> OrderRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM orders WHERE order_id = ?", (order_id,)
            ).fetchone()
        return None if row is None else OrderRecord.from_json(row[0])

    def put(self, record: OrderRecord, *, expected_version: int) -> None:
        params = (
            record.customer_id,
            record.state.value,
            record.version,
            int(_has_backorders(record)),
            record.created_at.isoformat(),
            record.to_json(),
            record.order_id,
        )
        with self._lock:
            if expected_version == 0:
                try:
                    self._conn.execute(
                        "INSERT INTO orders (customer_id, state, version, backorders, captured,"
                        " body, order_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        params,
                    )
                except sqlite3.IntegrityError:
                    raise StaleOrderError(f"order {record.order_id!r} already exists") from None
                return
            cursor = self._conn.execute(
                "UPDATE orders SET customer_id = ?, state = ?, version = ?, backorders = ?,"
                " captured = ?, body = ? WHERE order_id = ? AND version = ?",
                (*params, expected_version),
            )
            if cursor.rowcount != 1:
                raise StaleOrderError(
                    f"order {record.order_id!r} is no longer at version {expected_version}"
                )

    def _select(self, where: str, params: tuple[object, ...] = ()) -> list[OrderRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT body FROM orders {where}", params).fetchall()
        return [OrderRecord.from_json(row[0]) for row in rows]

    def records(self) -> Iterator[OrderRecord]:
        yield from self._select("ORDER BY order_id")

    def by_customer(self, customer_id: str) -> list[OrderRecord]:
        return self._select("WHERE customer_id = ? ORDER BY captured, order_id", (customer_id,))

    def with_backorders(self) -> list[OrderRecord]:
        return self._select("WHERE backorders = 1 ORDER BY order_id")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()


def open_store(url: str | os.PathLike[str] | None) -> OrderStore:
    """Open an order store: ``None`` or ``"memory://"`` in memory; ``"sqlite:///path"``.

    Raises
    ------
    InputError
        When the URL names no known store.
    """
    text = "memory://" if url is None else os.fspath(url)
    if text.startswith("memory:"):
        return MemoryOrderStore()
    if text.startswith("sqlite:///"):
        path = text[len("sqlite:///") :]
        if path:
            return SQLiteOrderStore(path)
    raise InputError(
        f"unknown order store {text!r}; use memory:// or sqlite:///path.db", source="store"
    )
