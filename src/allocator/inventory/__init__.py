"""The inventory ledger: an append-only record in which a promise of stock is made exactly once.

Open one with :func:`open_ledger`::

    from allocator.inventory import open_ledger, InsufficientStock, IdempotencyConflict

    ledger = open_ledger("sqlite:///inventory.db")
    ledger.receive("L1", "SKU1", 10, key="po-77")
    hold = ledger.reserve("order-1", [("SKU1", "L1", 2)], key="order-1/r1")
    ledger.ship("order-1", [("SKU1", "L1", 2)], key="order-1/s1")
    ledger.available("SKU1", "L1")      # 8

Three stores sit behind the same :class:`Ledger`: in memory (``memory://``), SQLite (the default
embedded store) and PostgreSQL (``postgresql://...``, needs ``allocator[postgres]``). See
``docs/inventory.md`` for how it works and what it guarantees.
"""

from allocator.errors import (
    HoldResolvedError,
    IdempotencyConflict,
    InputError,
    InsufficientStock,
    LedgerError,
)
from allocator.inventory._open import open_ledger
from allocator.inventory._store import Store
from allocator.inventory._types import (
    Entry,
    EntryKind,
    Hold,
    HoldExpiredError,
    HoldLine,
    HoldStatus,
    Inbound,
    Posting,
)
from allocator.inventory.ledger import Clock, Ledger, Position

__all__ = [
    "Clock",
    "Entry",
    "EntryKind",
    "Hold",
    "HoldExpiredError",
    "HoldLine",
    "HoldResolvedError",
    "HoldStatus",
    "IdempotencyConflict",
    "Inbound",
    "InputError",
    "InsufficientStock",
    "Ledger",
    "LedgerError",
    "Position",
    "Posting",
    "Store",
    "open_ledger",
]
