"""The PostgreSQL store: one ledger shared by many machines (needs ``allocator[postgres]``).

How it stays correct under concurrency:

- transactions run at READ COMMITTED and lock what they change with ``SELECT ... FOR UPDATE``
  in one fixed order: the idempotency key (a transaction-scoped advisory lock, so two calls
  with the same key run one after the other), then holds (in creation order), then totals (in
  sorted ``(location_id, sku)`` order), then expected receipts. A locked row is re-read after the
  lock is granted, so every check sees the latest committed stock;
- a transient failure (serialization failure, deadlock, lock timeout, a lost connection) rolls
  the transaction back and runs it again, a bounded number of times with jittered back-off;
  the idempotency key makes running a call again harmless even when the first commit's
  acknowledgement was lost;
- CHECK constraints repeat the invariants (on_hand >= 0, 0 <= reserved <= on_hand, ...) and a
  trigger refuses to update or delete an entry;
- reads run in a READ ONLY, REPEATABLE READ transaction: one consistent snapshot, no locks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from allocator.errors import LedgerError
from allocator.inventory._sql import KINDS_SQL, STATUSES_SQL, SQLTx
from allocator.inventory._store import ReadTx, Store, WriteTx, chunks
from allocator.inventory._types import Entry, KeyRecord, Pair, Totals

__all__ = ["SCHEMA", "PostgresStore"]

logger = logging.getLogger("allocator").getChild("inventory")

R = TypeVar("R")

_SCHEMA_LOCK = 7_411_000  # advisory lock id held while creating the schema
_KEY_LOCK_SEED = 7_411  # seed of the hash that turns an idempotency key into an advisory lock id

SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS allocator_meta (name text PRIMARY KEY, value text NOT NULL)",
    "INSERT INTO allocator_meta (name, value) VALUES ('schema_version', '1')"
    " ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS locations (location_id text PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS skus (sku text PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS totals (
        location_id text NOT NULL,
        sku text NOT NULL,
        on_hand bigint NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
        reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
        inbound bigint NOT NULL DEFAULT 0 CHECK (inbound >= 0),
        safety_stock bigint NOT NULL DEFAULT 0 CHECK (safety_stock >= 0),
        PRIMARY KEY (location_id, sku))""",
    f"""CREATE TABLE IF NOT EXISTS entries (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        kind text NOT NULL CHECK (kind IN ({KINDS_SQL})),
        location_id text NOT NULL,
        sku text NOT NULL,
        qty bigint NOT NULL,
        d_on_hand bigint NOT NULL,
        d_reserved bigint NOT NULL,
        d_inbound bigint NOT NULL,
        d_safety bigint NOT NULL,
        reason text,
        order_id text,
        hold_id text,
        key text)""",
    "CREATE INDEX IF NOT EXISTS entries_order ON entries (order_id) WHERE order_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS entries_key ON entries (key) WHERE key IS NOT NULL",
    """CREATE OR REPLACE FUNCTION allocator_entries_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$""",
    "CREATE OR REPLACE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries"
    " FOR EACH ROW EXECUTE FUNCTION allocator_entries_append_only()",
    f"""CREATE TABLE IF NOT EXISTS holds (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        hold_id text NOT NULL UNIQUE,
        order_id text NOT NULL,
        status text NOT NULL CHECK (status IN ({STATUSES_SQL})),
        created timestamptz NOT NULL,
        expires timestamptz,
        key text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS holds_order ON holds (order_id)",
    "CREATE INDEX IF NOT EXISTS holds_lapse ON holds (expires)"
    " WHERE status = 'open' AND expires IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS hold_lines (
        hold_id text NOT NULL REFERENCES holds (hold_id),
        line integer NOT NULL,
        sku text NOT NULL,
        location_id text NOT NULL,
        qty bigint NOT NULL CHECK (qty > 0),
        shipped bigint NOT NULL DEFAULT 0 CHECK (shipped >= 0),
        released bigint NOT NULL DEFAULT 0 CHECK (released >= 0),
        CHECK (shipped <= qty - released),
        PRIMARY KEY (hold_id, line))""",
    """CREATE TABLE IF NOT EXISTS inbound (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        inbound_id text NOT NULL UNIQUE,
        location_id text NOT NULL,
        sku text NOT NULL,
        qty bigint NOT NULL CHECK (qty > 0),
        eta date NOT NULL,
        received bigint NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= qty),
        key text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS inbound_position ON inbound (location_id, sku, eta)",
    """CREATE TABLE IF NOT EXISTS idempotency (
        key text PRIMARY KEY,
        op text NOT NULL,
        fingerprint text NOT NULL,
        result text NOT NULL,
        at timestamptz NOT NULL)""",
)
"""The PostgreSQL schema (created on first open, in the connection's current schema)."""


class _PostgresTx(SQLTx):
    for_update = " FOR UPDATE"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def from_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def find_key(self, key: str) -> KeyRecord | None:
        # Two calls with one key queue here; the second then finds the first one's record.
        self.run("SELECT pg_advisory_xact_lock(hashtextextended(?, ?))", [key, _KEY_LOCK_SEED])
        return super().find_key(key)

    def lock_totals(self, pairs: Sequence[Pair]) -> dict[Pair, Totals]:
        # Create missing rows first (a row that does not exist cannot be locked), then lock
        # all of them in sorted order; "C" collation sorts as Python sorts str.
        out: dict[Pair, Totals] = {}
        for part in chunks(sorted(set(pairs)), 400):
            values = ", ".join(["(?, ?)"] * len(part))
            flat = [value for pair in part for value in pair]
            self.run(
                f"INSERT INTO totals (location_id, sku) VALUES {values} ON CONFLICT DO NOTHING",
                flat,
            )
            for row in self.rows(
                "SELECT location_id, sku, on_hand, reserved, inbound, safety_stock FROM totals"
                f" WHERE (location_id, sku) IN (VALUES {values})"
                ' ORDER BY location_id COLLATE "C", sku COLLATE "C" FOR UPDATE',
                flat,
            ):
                out[(row[0], row[1])] = Totals(int(row[2]), int(row[3]), int(row[4]), int(row[5]))
        return {pair: out[pair] for pair in pairs}

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        if not entries:
            return []
        cursor = self.cursor.connection.cursor()  # its own cursor: it must own the results
        cursor.executemany(
            self.sql(self.INSERT_ENTRY), [self.entry_params(e) for e in entries], returning=True
        )
        seqs = []
        while True:
            seqs.append(int(cursor.fetchone()[0]))
            if not cursor.nextset():
                break
        return [replace(entry, seq=seq) for entry, seq in zip(entries, seqs, strict=True)]


class PostgresStore(Store):
    """Ledger data in a PostgreSQL database.

    Parameters
    ----------
    url
        A libpq connection URL, ``postgresql://user@host:port/dbname``.
    lock_timeout
        Seconds a statement waits for a row lock before the attempt fails (and is retried).
    max_attempts
        Attempts at a write that meets a transient failure before a
        :class:`~allocator.errors.LedgerError` reaches the caller.
    """

    name = "postgresql"

    def __init__(self, url: str, *, lock_timeout: float = 30.0, max_attempts: int = 12) -> None:
        try:
            import psycopg
        except ModuleNotFoundError as error:  # pragma: no cover - depends on the install
            raise ModuleNotFoundError(
                "the PostgreSQL ledger needs psycopg: pip install 'allocator[postgres]'"
            ) from error
        self._psycopg = psycopg
        errors = psycopg.errors
        self._transient: tuple[type[Exception], ...] = (
            errors.SerializationFailure,
            errors.DeadlockDetected,
            errors.LockNotAvailable,
            errors.UniqueViolation,
        )
        self._url = url
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Any = self._open_connection()
        with self._conn.transaction():
            # One opener at a time creates the schema; later ones find it and take no locks
            # that writers would wait for.
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
            found = self._conn.execute("SELECT to_regclass('allocator_meta')").fetchone()[0]
            if found is None:
                for statement in SCHEMA:
                    self._conn.execute(statement)

    def _open_connection(self) -> Any:
        conn = self._psycopg.connect(self._url, autocommit=True)
        conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{self._lock_timeout_ms}ms"])
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError("the ledger is closed")
        if self._conn.broken:
            logger.warning("PostgreSQL connection lost; reconnecting")
            self._conn.close()
            self._conn = self._open_connection()

    @contextmanager
    def read(self) -> Iterator[ReadTx]:
        # Pipeline mode sends queued statements together and waits only when a result is
        # needed: on a slow network that saves most round trips.
        with self._lock:
            self._check_open()
            with self._conn.pipeline(), self._conn.transaction():
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield _PostgresTx(self._conn.cursor())

    def write(self, body: Callable[[WriteTx], R]) -> R:
        operational = self._psycopg.OperationalError
        for attempt in range(1, self._max_attempts + 1):
            try:
                with self._lock:
                    self._check_open()
                    with self._conn.pipeline(), self._conn.transaction():
                        return body(_PostgresTx(self._conn.cursor()))
            except self._transient as error:
                problem: Exception = error
            except operational as error:
                if not self._conn.broken:
                    raise
                problem = error
            if attempt == self._max_attempts:
                raise LedgerError(
                    f"PostgreSQL write failed {attempt} times in a row; last: {problem}"
                ) from problem
            delay = min(1.0, 0.002 * 2**attempt) * (0.5 + random.random())
            logger.debug("transient PostgreSQL failure (%s); retry in %.3f s", problem, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()
