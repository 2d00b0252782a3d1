"""Open a ledger from a URL naming its store."""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from allocator.errors import InputError
from allocator.inventory.ledger import Clock, Ledger

__all__ = ["open_ledger"]


_LEVELS = ("FULL", "NORMAL", "EXTRA")
"""SQLite's durability levels that a ledger accepts."""


def open_ledger(
    url: str | os.PathLike[str],
    *,
    clock: Clock | None = None,
    timeout: float = 30.0,
    max_attempts: int = 12,
    synchronous: str | None = None,
) -> Ledger:
    """Open (and create, if new) an inventory ledger.

    Parameters
    ----------
    url
        Which store:

        - ``"sqlite:///inventory.db"`` (relative path), ``"sqlite:////var/lib/inv.db"`` (absolute)
          or a plain path: the embedded SQLite store, safe for many processes on one machine.
          ``?synchronous=NORMAL`` trades durability on power loss (not on a crash of the
          process) for faster commits; the default is ``FULL`` (see ``synchronous``);
        - ``"memory://"``: in process memory, for tests and simulations;
        - ``"postgresql://user@host:port/db"``: PostgreSQL (needs ``allocator[postgres]``).
    clock
        Returns the current time (timezone-aware); the wall clock by default.
    timeout
        Seconds a writer waits for a lock (SQLite busy timeout, PostgreSQL ``lock_timeout``)
        before the attempt counts as failed and is retried.
    max_attempts
        How many times a write that meets a transient conflict (a busy database, a deadlock,
        a serialization failure) is tried before the error reaches the caller.
    synchronous
        SQLite only (the same as ``?synchronous=`` in the URL): ``"FULL"`` (the default) makes
        every commit wait for an fsync of the write-ahead log, so that it survives a power
        cut; ``"NORMAL"`` skips that wait: a commit still survives a crash of the process (or
        of every process), but the last commits before a power cut or an operating-system
        crash may be lost (never half of one: the ledger stays consistent). ``"EXTRA"`` also
        syncs the directory.

    Returns
    -------
    Ledger
        The ledger; close it with :meth:`Ledger.close` or use it as a context manager.

    Raises
    ------
    InputError
        When the URL names no known store.
    """
    if timeout <= 0 or max_attempts < 1:
        raise InputError("timeout must be > 0 and max_attempts >= 1", source="open_ledger")
    text = os.fspath(url)
    if not isinstance(text, str) or not text:
        raise InputError(f"expected a store URL, got {url!r}", source="url")
    if synchronous is not None and (
        not isinstance(synchronous, str) or synchronous.upper() not in _LEVELS
    ):
        raise InputError(
            f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}", source="synchronous"
        )
    if synchronous is not None and not (text.startswith("sqlite:") or "://" not in text):
        raise InputError("synchronous applies to a SQLite store only", source="synchronous")
    if text.startswith("memory:"):
        from allocator.inventory.memory import MemoryStore

        return Ledger(MemoryStore(), clock=clock)
    if text.startswith(("postgresql://", "postgres://")):
        from allocator.inventory.postgres import PostgresStore

        return Ledger(
            PostgresStore(text, lock_timeout=timeout, max_attempts=max_attempts), clock=clock
        )
    options: dict[str, str] = {}
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise InputError(
                "a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db",
                source="url",
            )
        path, _, query = text[len("sqlite:///") :].partition("?")
        options = {name: values[-1] for name, values in parse_qs(query).items()}
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise InputError(f"unknown SQLite option(s) {sorted(unknown)}", source="url")
    elif "://" in text:
        raise InputError(
            f"unknown store {text.split('://', 1)[0]!r}; use sqlite, memory or postgresql",
            source="url",
        )
    else:
        path = text
    if not path:
        raise InputError("the SQLite URL names no file", source="url")
    from allocator.inventory.sqlite import SQLiteStore

    level = options.get("synchronous", "FULL").upper()
    if level not in _LEVELS:
        raise InputError(f"synchronous must be FULL, NORMAL or EXTRA, got {level!r}", source="url")
    if synchronous is not None:
        if "synchronous" in options and synchronous.upper() != level:
            raise InputError(
                f"the URL says synchronous={level} but the argument says {synchronous!r}",
                source="synchronous",
            )
        level = synchronous.upper()
    store = SQLiteStore(path, busy_timeout=timeout, max_attempts=max_attempts, synchronous=level)
    return Ledger(store, clock=clock)
