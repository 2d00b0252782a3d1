"""Fixtures of the lifecycle tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lifecycle_support import Clock, network, stock_ledger

from allocator import Network
from allocator.inventory import Ledger, open_ledger
from allocator.lifecycle import Lifecycle


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def net() -> Network:
    return network()


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_ledger(url, clock=clock) as opened:
        yield stock_ledger(opened)


@pytest.fixture
def book(ledger: Ledger, net: Network, clock: Clock, tmp_path: Path) -> Iterator[Lifecycle]:
    store = "memory://" if ledger.store.name == "memory" else f"sqlite:///{tmp_path / 'orders.db'}"
    lifecycle = Lifecycle(ledger, net, store=store, clock=clock)
    yield lifecycle
    lifecycle.store.close()
