"""Fixtures of the inventory-ledger tests: one ledger per store, and a throwaway PostgreSQL.

The PostgreSQL server is started once per test session (per xdist worker) in a temporary folder,
on a private port on 127.0.0.1, as an unprivileged user when the tests run as root, and stopped
afterwards. Without PostgreSQL binaries its tests skip, except under ``CI=true``, where a server
that cannot start fails them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from inventory_support import IN_CI, FakeClock, PostgresServer, find_postgres_bin, postgres_server

from allocator.inventory import Ledger, open_ledger

STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session."""
    if find_postgres_bin() is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl) not found; install PostgreSQL to run these"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        with postgres_server() as server:
            yield server
    except (OSError, RuntimeError) as error:
        message = f"could not start a throwaway PostgreSQL server: {error}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test moves it."""
    return FakeClock()


@pytest.fixture
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Build the URL of a new, empty ledger in the named store."""
    counter = iter(range(1_000_000))

    def make(store: str) -> str:
        if store == "memory":
            return "memory://"
        if store == "sqlite":
            return f"sqlite:///{tmp_path / f'ledger-{next(counter)}.db'}"
        if store == "postgres":
            server: PostgresServer = request.getfixturevalue("pg_server")
            return server.fresh_url()
        raise ValueError(store)

    return make


@pytest.fixture(params=STORES)
def store_name(request: pytest.FixtureRequest) -> str:
    """Each of the three stores in turn."""
    return str(request.param)


@pytest.fixture
def ledger(store_name: str, make_url: Callable[[str], str], clock: FakeClock) -> Iterator[Ledger]:
    """An empty ledger in each store, on the fake clock."""
    with open_ledger(make_url(store_name), clock=clock) as opened:
        yield opened
