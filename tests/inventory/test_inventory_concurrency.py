"""Many processes, one ledger: no oversell, no deadlock, no busy errors, and crashes lose nothing.

Worker processes come from a ``forkserver`` that has imported the library once, so starting one
is cheap and no test-runner threads are forked.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import pytest
from inventory_support import (
    acknowledged,
    contend,
    crash_worker,
    criss_cross,
    kill,
    scripted_call,
    wait_until,
)

from allocator.inventory import Ledger, open_ledger

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def context() -> BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["allocator.inventory", "inventory_support"])
    return ctx


def run_workers(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Start one process per argument tuple (plus a barrier and a result queue); collect results."""
    ctx = context()
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for process in processes:
        process.start()
    collected = []
    try:
        for _ in processes:
            collected.append(results.get(timeout=240))
    except queue.Empty:  # pragma: no cover - only when a worker hangs or dies
        pytest.fail(f"workers did not finish: exit codes {[p.exitcode for p in processes]}")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():  # pragma: no cover
                kill(process.pid or 0)
    return collected


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_hot_sku_is_never_oversold(store: str, make_url: Callable[[str], str]) -> None:
    url = make_url(store)
    with open_ledger(url) as ledger:
        ledger.receive("L1", "HOT", 100, key="stock")
    results = run_workers(contend, [(url, worker, 50) for worker in range(16)])
    errors = [error for *_, worker_errors in results for error in worker_errors]
    assert errors == []  # no "database is locked", serialization failure or deadlock
    assert sum(won for _, won, _, _ in results) == 100
    assert sum(short for _, _, short, _ in results) == 16 * 50 - 100
    with open_ledger(url) as ledger:
        position = ledger.position("HOT", "L1")
        assert (position.on_hand, position.reserved, position.available) == (100, 100, 0)
        assert ledger.entry_count() == 101
        assert ledger.verify() == []


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_lines_in_opposite_orders_do_not_deadlock(
    store: str, make_url: Callable[[str], str]
) -> None:
    url = make_url(store)
    with open_ledger(url) as ledger:
        for location, sku in (("L1", "A"), ("L1", "B"), ("L2", "A")):
            ledger.receive(location, sku, 10_000, key=f"stock-{location}-{sku}")
    rounds = 12
    results = run_workers(criss_cross, [(url, worker, rounds) for worker in range(16)])
    assert [error for _, _, errors in results for error in errors] == []
    shipped = sum(count for _, count, _ in results)
    assert shipped == 16 * (rounds // 2)
    with open_ledger(url) as ledger:
        assert ledger.position("A", "L1").on_hand == 10_000 - shipped
        assert ledger.position("B", "L1").on_hand == 10_000 - shipped
        assert ledger.position("A", "L2").on_hand == 10_000
        assert sum(p.reserved for p in ledger.positions()) == 0
        assert ledger.verify() == []


def same_state(ledger: Ledger, reference: Ledger) -> None:
    def state(led: Ledger) -> list[tuple[Any, ...]]:
        return [
            (p.location_id, p.sku, p.on_hand, p.reserved, p.inbound, p.safety_stock)
            for p in led.positions()
        ]

    assert state(ledger) == state(reference)
    assert Counter((e.key, e.kind, e.qty) for e in ledger.entries()) == Counter(
        (e.key, e.kind, e.qty) for e in reference.entries()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("store", "kills"), [("sqlite", 32), pytest.param("postgres", 12, marks=pytest.mark.postgres)]
)
def test_killed_writer_loses_nothing_and_applies_nothing_twice(
    store: str, kills: int, make_url: Callable[[str], str], tmp_path: Path
) -> None:
    """SIGKILL a writer at random moments; the client resubmits every unacknowledged call."""
    url = make_url(store)
    acks = str(tmp_path / "acks")
    ctx = context()
    rng = random.Random(20261126)
    for _ in range(kills):
        start = acknowledged(acks)
        process = ctx.Process(target=crash_worker, args=(url, start, 10**9, acks))
        process.start()
        # Kill it while it writes: after it got going, at a random moment.
        assert wait_until(lambda start=start: acknowledged(acks) > start, timeout=60)  # type: ignore[misc]
        time.sleep(rng.uniform(0, 0.02))
        kill(process.pid or 0)
        process.join(timeout=30)
        assert process.exitcode == -9
    start = acknowledged(acks)
    stop = start + 13
    process = ctx.Process(target=crash_worker, args=(url, start, stop, acks))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    assert acknowledged(acks) == stop

    reference = open_ledger("memory://")
    for index in range(stop):
        scripted_call(reference, index)
    with open_ledger(url) as ledger:
        assert ledger.verify(database=True) == []
        same_state(ledger, reference)
    if store == "sqlite":
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
