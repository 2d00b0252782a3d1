"""What each store promises on its own: schema guards, retries, URLs, same-key races."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inventory_support import PostgresServer

import allocator.errors
import allocator.inventory
from allocator.errors import LedgerError
from allocator.inventory import HoldStatus, Ledger, open_ledger
from allocator.inventory.memory import MemoryStore
from allocator.inventory.sqlite import SQLiteStore


def test_contract_names_are_reexported() -> None:
    from allocator.inventory import IdempotencyConflict, InsufficientStock, open_ledger

    assert InsufficientStock is allocator.errors.InsufficientStock
    assert IdempotencyConflict is allocator.errors.IdempotencyConflict
    assert callable(open_ledger)
    assert set(allocator.inventory.__all__) >= {
        "open_ledger",
        "InsufficientStock",
        "IdempotencyConflict",
        "Ledger",
        "Hold",
    }


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_ledger("memory://") as ledger:
        assert isinstance(ledger.store, MemoryStore)
    with open_ledger("sqlite:///relative.db") as ledger:
        assert isinstance(ledger.store, SQLiteStore)
    assert (tmp_path / "relative.db").exists()
    with open_ledger(f"sqlite:///{tmp_path / 'absolute.db'}") as ledger:
        ledger.receive("L1", "A", 1, key="a")
    with open_ledger(tmp_path / "absolute.db") as ledger:  # a plain path is SQLite too
        assert ledger.available("A", "L1") == 1


def test_the_library_never_prints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with open_ledger(f"sqlite:///{tmp_path / 'x.db'}") as ledger:
        ledger.receive("L1", "A", 3, key="a")
        ledger.reserve("o", [("A", "L1", 1)], key="r", ttl=0.001)
        ledger.expire_holds()
        assert ledger.verify(database=True) == []
    assert capsys.readouterr() == ("", "")


# --- SQLite ----------------------------------------------------------------------------------


def test_sqlite_settings_and_guards(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with open_ledger(f"sqlite:///{path}") as ledger:
        ledger.receive("L1", "A", 3, key="a")
        conn = ledger.store._conn  # type: ignore[attr-defined]
        assert conn.isolation_level is None
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    raw = sqlite3.connect(path, isolation_level=None)
    tables = dict(raw.execute("SELECT name, strict FROM pragma_table_list").fetchall())
    assert all(tables[name] for name in ("totals", "entries", "holds", "hold_lines", "inbound"))
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE totals SET on_hand = -1")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE totals SET reserved = on_hand + 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE entries SET qty = 99")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM entries")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE totals SET on_hand = 'many'")  # STRICT: no text in an INTEGER
    raw.close()


def test_sqlite_durability_option(tmp_path: Path) -> None:
    def level(ledger: Ledger) -> int:
        conn = ledger.store._conn  # type: ignore[attr-defined]
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    path = tmp_path / "ledger.db"
    with open_ledger(f"sqlite:///{path}?synchronous=normal") as ledger:
        assert level(ledger) == 1  # NORMAL
    with open_ledger(path, synchronous="NORMAL") as ledger:
        assert level(ledger) == 1
    with open_ledger(f"sqlite:///{path}?synchronous=NORMAL", synchronous="normal") as ledger:
        assert level(ledger) == 1
    with open_ledger(f"sqlite:///{path}", synchronous="EXTRA") as ledger:
        assert level(ledger) == 3
    for url, value in [
        (f"sqlite:///{path}", "OFF"),
        (f"sqlite:///{path}", 1),
        (f"sqlite:///{path}?synchronous=FULL", "NORMAL"),
        ("memory://", "NORMAL"),
    ]:
        with pytest.raises(allocator.errors.InputError) as error:
            open_ledger(url, synchronous=value)  # type: ignore[arg-type]
        assert error.value.source == "synchronous"


def test_sqlite_busy_is_retried(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "x.db"), max_attempts=3)
    calls = []

    def body(tx: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert store.write(body) == "done"
    calls.clear()

    def always(tx: Any) -> str:
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        store.write(always)
    assert len(calls) == 3
    store.close()


def test_sqlite_waits_for_a_writer_in_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    ledger = open_ledger(f"sqlite:///{path}")
    ledger.receive("L1", "A", 3, key="a")
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    timer.start()
    ledger.receive("L1", "A", 1, key="b")  # waits for the write lock instead of failing
    timer.join()
    assert ledger.available("A", "L1") == 4
    blocker.close()
    ledger.close()


@pytest.mark.parametrize("background", [True, False])
def test_sqlite_checkpoints_off_the_writers_path(tmp_path: Path, background: bool) -> None:
    path = tmp_path / "x.db"
    store = SQLiteStore(str(path), background_checkpoint=background)
    with Ledger(store) as ledger:
        ledger.receive("L1", "A", 10**6, key="stock")
        empty = path.stat().st_size
        for n in range(250):  # about 2,000 WAL pages: under the 4,000-page automatic backstop
            hold = ledger.reserve(f"o{n}", [("A", "L1", 1)], key=f"r{n}")
            if n % 2:
                ledger.release(f"o{n}", key=f"c{n}", hold=hold)
        checkpointer = store._checkpointer
        if background:
            assert checkpointer is not None
            deadline = time.monotonic() + 30
            while path.stat().st_size == empty and time.monotonic() < deadline:
                time.sleep(0.01)
            assert path.stat().st_size > empty  # pages were copied from the WAL by the thread
        else:
            assert checkpointer is None
        entries = ledger.entries()
        assert [e.seq for e in entries] == sorted({e.seq for e in entries})
        assert ledger.verify(database=True) == []
        assert ledger.position("A", "L1").reserved == 125
    if checkpointer is not None:
        assert not checkpointer._thread.is_alive()  # close() stopped it


def test_reopened_sqlite_ledger_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_ledger(url) as ledger:
        ledger.receive("L1", "A", 3, key="a")
        hold = ledger.reserve("o", [("A", "L1", 2)], key="r", ttl=3600)
    with open_ledger(url) as ledger:
        assert ledger.holds("o") == (hold,)
        assert ledger.reserve("o", [("A", "L1", 2)], key="r", ttl=3600) == hold
        assert ledger.available("A", "L1") == 1


# --- the same key from many threads at once ------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_same_key_at_once_is_applied_once(store: str, make_url: Callable[[str], str]) -> None:
    url = make_url(store)
    with open_ledger(url) as ledger:
        ledger.receive("L1", "A", 100, key="stock")
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        with open_ledger(url) as own:
            barrier.wait()
            results.append(own.reserve("o", [("A", "L1", 5)], key="same"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result == results[0] for result in results)
    with open_ledger(url) as ledger:
        assert ledger.position("A", "L1").reserved == 5
        assert [h.status for h in ledger.holds("o")] == [HoldStatus.OPEN]
        assert ledger.entry_count() == 2


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_guards(pg_server: PostgresServer) -> None:
    import psycopg

    url = pg_server.fresh_url()
    with open_ledger(url) as ledger:
        ledger.receive("L1", "A", 3, key="a")
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE totals SET on_hand = -1")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE totals SET reserved = on_hand + 1")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE entries SET qty = 99")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM entries")


@pytest.mark.postgres
def test_postgres_transient_failures_are_retried(pg_server: PostgresServer) -> None:
    import psycopg

    from allocator.inventory.postgres import PostgresStore

    store = PostgresStore(pg_server.fresh_url(), max_attempts=3)
    failures = [psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure]

    def body(tx: Any) -> str:
        if failures:
            raise failures.pop()("simulated")
        return "done"

    assert store.write(body) == "done"

    def always(tx: Any) -> str:
        raise psycopg.errors.SerializationFailure("simulated")

    with pytest.raises(LedgerError, match="3 times"):
        store.write(always)
    store.close()


@pytest.mark.postgres
def test_postgres_reconnects_after_losing_the_connection(pg_server: PostgresServer) -> None:
    import psycopg

    url = pg_server.fresh_url()
    ledger: Ledger = open_ledger(url)
    ledger.receive("L1", "A", 3, key="a")
    pid = ledger.store._conn.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    ledger.receive("L1", "A", 1, key="b")
    assert ledger.available("A", "L1") == 4
    ledger.close()
