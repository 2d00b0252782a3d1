"""The SQLite store: the default embedded ledger, safe for many processes on one machine.

How it stays correct under concurrency and crashes:

- WAL journal, so readers never block the writer and a killed process loses nothing committed;
  ``synchronous=FULL`` by default, so a commit also survives power loss;
- writers open their transaction with ``BEGIN IMMEDIATE``: the write lock is taken first, so a
  transaction never has to upgrade a read lock (which SQLite cannot wait for) and two writers
  are simply serialised; the busy timeout makes the second wait, and the rare attempt that still
  finds the database busy is retried a bounded number of times;
- Python's driver runs with ``isolation_level=None``: the store issues BEGIN and COMMIT itself;
- STRICT tables with CHECK constraints (on_hand >= 0, 0 <= reserved <= on_hand, ...) and
  triggers that refuse to update or delete an entry; the derived totals change in the same
  transaction as the entries that explain them.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from allocator.errors import LedgerError
from allocator.inventory._sql import KINDS_SQL, STATUSES_SQL, SQLTx
from allocator.inventory._store import ReadTx, Store, WriteTx, chunks
from allocator.inventory._types import Entry

__all__ = ["SCHEMA", "SQLiteStore"]

logger = logging.getLogger("allocator").getChild("inventory")

R = TypeVar("R")


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS locations (location_id TEXT PRIMARY KEY) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skus (sku TEXT PRIMARY KEY) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    location_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    on_hand INTEGER NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    inbound INTEGER NOT NULL DEFAULT 0 CHECK (inbound >= 0),
    safety_stock INTEGER NOT NULL DEFAULT 0 CHECK (safety_stock >= 0),
    PRIMARY KEY (location_id, sku)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ({KINDS_SQL})),
    location_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    d_on_hand INTEGER NOT NULL,
    d_reserved INTEGER NOT NULL,
    d_inbound INTEGER NOT NULL,
    d_safety INTEGER NOT NULL,
    reason TEXT,
    order_id TEXT,
    hold_id TEXT,
    key TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS entries_order ON entries (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_key ON entries (key) WHERE key IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS entries_append_only_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TABLE IF NOT EXISTS holds (
    seq INTEGER PRIMARY KEY,
    hold_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({STATUSES_SQL})),
    created TEXT NOT NULL,
    expires TEXT,
    key TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS holds_order ON holds (order_id);
CREATE INDEX IF NOT EXISTS holds_lapse ON holds (expires)
    WHERE status = 'open' AND expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS hold_lines (
    hold_id TEXT NOT NULL REFERENCES holds (hold_id),
    line INTEGER NOT NULL,
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    shipped INTEGER NOT NULL DEFAULT 0 CHECK (shipped >= 0),
    released INTEGER NOT NULL DEFAULT 0 CHECK (released >= 0),
    CHECK (shipped <= qty - released),
    PRIMARY KEY (hold_id, line)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound (
    seq INTEGER PRIMARY KEY,
    inbound_id TEXT NOT NULL UNIQUE,
    location_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    eta TEXT NOT NULL,
    received INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= qty),
    key TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS inbound_position ON inbound (location_id, sku, eta);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result TEXT NOT NULL,
    at TEXT NOT NULL
) STRICT, WITHOUT ROWID;
"""
"""The SQLite schema (created on first open; ``PRAGMA user_version`` records its version)."""

_TRANSIENT = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_ENTRY_INSERT_COLUMNS = (
    "at, kind, location_id, sku, qty, d_on_hand, d_reserved, d_inbound, d_safety, reason,"
    " order_id, hold_id, key"
)
_ENTRY_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CHECKPOINT_EVERY = 100  # commits of one store between background checkpoints
_BACKSTOP_PAGES = 4_000  # WAL pages at which a commit checkpoints by itself after all
_SCHEMA_VERSION = 1


class _SQLiteTx(SQLTx):
    join_pairs = True
    _last_time: datetime | None = None
    _last_text = ""

    def to_time(self, value: datetime | None) -> Any:
        # Fixed-width UTC text, so that comparing strings compares times. A write stores its
        # one "now" several times (entries, hold, key): convert it once.
        if value is None:
            return None
        if value is not self._last_time:
            self._last_time = value
            self._last_text = value.astimezone(UTC).isoformat(timespec="microseconds")
        return self._last_text

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        # One statement per 64 entries. The sequence numbers are the rowids, which SQLite
        # hands out as max + 1 row after row, in the order of the VALUES list (the write lock
        # is held, and entries are never deleted): sorted, they follow the entries.
        out: list[Entry] = []
        for part in chunks(entries, 64):
            values = ", ".join([_ENTRY_VALUES] * len(part))
            seqs = sorted(
                int(row[0])
                for row in self.rows(
                    f"INSERT INTO entries ({_ENTRY_INSERT_COLUMNS}) VALUES {values} RETURNING seq",
                    [value for entry in part for value in self.entry_params(entry)],
                )
            )
            out.extend(replace(entry, seq=seq) for entry, seq in zip(part, seqs, strict=True))
        return out

    def from_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def to_date(self, value: date) -> Any:
        return value.isoformat()

    def from_date(self, value: Any) -> date:
        return date.fromisoformat(value)


class _Checkpointer:
    """Copies the WAL back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the ``COMMIT`` that lets the WAL pass 1,000 pages:
    about one write in a hundred then waits several milliseconds for it (and for its fsyncs).
    Here writers only count their commits and, every ``_CHECKPOINT_EVERY``, wake this thread,
    which runs a ``PASSIVE`` checkpoint on its own connection: it never blocks readers or
    writers (SQLite lets writers append to the WAL meanwhile, and the driver releases the GIL
    while SQLite works). The automatic checkpoint stays on at ``_BACKSTOP_PAGES`` in case this
    thread falls behind or is gone (after a fork).
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path}", daemon=True
        )
        self._thread.start()

    def request(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:  # pragma: no cover - the store's own connect succeeded
            logger.warning("SQLite checkpoint thread could not connect: %s", error)
            return
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # pragma: no cover - busy, or the disk
                    logger.debug("SQLite background checkpoint failed: %s", error)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)


def _transient(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in _TRANSIENT or "locked" in str(error)


class SQLiteStore(Store):
    """Ledger data in one SQLite file.

    Parameters
    ----------
    path
        The database file (created if missing), or ``":memory:"``.
    busy_timeout
        Seconds a writer waits for the write lock before an attempt fails.
    max_attempts
        Attempts at a write that finds the database busy before the error reaches the caller.
    synchronous
        SQLite's ``synchronous`` setting: ``"FULL"`` (durable on power loss) or ``"NORMAL"``
        (durable when the process dies; faster).
    background_checkpoint
        Copy the WAL into the database file from a background thread (started at the first
        write), so that no write waits for a checkpoint; ``False`` leaves it to SQLite's
        automatic checkpoint, inside the commit of every thousandth page or so.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 30.0,
        max_attempts: int = 12,
        synchronous: str = "FULL",
        background_checkpoint: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"Expected synchronous in FULL, NORMAL, EXTRA, got {synchronous!r}.")
        self.path = path
        self._max_attempts = max_attempts
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        self._background = background_checkpoint and path != ":memory:"
        self._commits = 0
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._closed = False
        try:
            self._retrying(lambda: self._setup(busy_timeout, synchronous))
        except BaseException:
            self._conn.close()
            raise

    def _setup(self, busy_timeout: float, synchronous: str) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() not in ("wal", "memory"):
            raise LedgerError(f"SQLite refused WAL mode for {self.path!r} (got {mode!r})")
        if mode.lower() != "wal":
            self._background = False
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self._background:
            conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_PAGES}")
        if conn.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _retrying(self, attempt: Callable[[], R]) -> R:
        for number in range(1, self._max_attempts + 1):
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if not _transient(error) or number == self._max_attempts:
                    raise
                delay = min(0.5, 0.005 * 2**number) * (0.5 + random.random())
                logger.debug("SQLite busy (%s); attempt %d again in %.3f s", error, number, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield _SQLiteTx(self._conn.cursor())
            finally:
                self._conn.execute("COMMIT")

    def write(self, body: Callable[[WriteTx], R]) -> R:
        def attempt() -> R:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(_SQLiteTx(self._conn.cursor()))
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                if self._background:
                    self._commits += 1
                    if self._commits >= _CHECKPOINT_EVERY:
                        self._commits = 0
                        if self._checkpointer is None:
                            self._checkpointer = _Checkpointer(self.path, self._synchronous)
                        self._checkpointer.request()
                return result

        return self._retrying(attempt)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.stop()
            self._conn.close()

    def integrity_problems(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("PRAGMA quick_check").fetchall()
        return [] if [r[0] for r in rows] == ["ok"] else [f"SQLite: {r[0]}" for r in rows]
