"""Latency of the inventory ledger's hot path on SQLite (the default embedded store).

One round reserves one unit of one SKU under a fresh idempotency key and releases it again:
two write transactions, each with its key lookup, locks, entries, derived totals and stored
result. ``durable`` is the default (``synchronous=FULL``: an fsync per commit, so the number
mostly measures the disk); ``normal`` is ``synchronous=NORMAL`` (durable when the process dies,
not on power loss), which shows the ledger's own cost. The memory store is the floor.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from allocator.inventory import Ledger, open_ledger

URLS = {
    "sqlite-durable": "sqlite:///{folder}/ledger.db",
    "sqlite-normal": "sqlite:///{folder}/ledger.db?synchronous=NORMAL",
    "memory": "memory://",
}


@pytest.fixture(params=sorted(URLS))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(URLS[request.param].format(folder=tmp_path)) as opened:
        opened.receive("L1", "SKU1", 10**12, key="stock")
        # Some history, so that lookups do not run on empty tables.
        for n in range(500):
            opened.reserve(f"warm-{n}", [("SKU1", "L1", 1)], key=f"warm-{n}/r")
            opened.release(f"warm-{n}", key=f"warm-{n}/c")
        yield opened


def test_reserve_release(benchmark: Any, ledger: Ledger) -> None:
    counter = itertools.count()

    def reserve_release() -> None:
        n = next(counter)
        ledger.reserve(f"o-{n}", [("SKU1", "L1", 1)], key=f"o-{n}/r")
        ledger.release(f"o-{n}", key=f"o-{n}/c")

    benchmark.pedantic(reserve_release, rounds=300, warmup_rounds=20)
    assert ledger.position("SKU1", "L1").reserved == 0
    assert ledger.verify() == []


def test_replay(benchmark: Any, ledger: Ledger) -> None:
    ledger.reserve("o-replayed", [("SKU1", "L1", 1)], key="o-replayed/r")
    before = ledger.entry_count()
    benchmark(ledger.reserve, "o-replayed", [("SKU1", "L1", 1)], key="o-replayed/r")
    assert ledger.entry_count() == before


def test_available(benchmark: Any, ledger: Ledger) -> None:
    assert benchmark(ledger.available, "SKU1", "L1") == 10**12
