"""The order lifecycle: a small, exact state machine that drives the ledger and the optimiser.

::

    from allocator.inventory import open_ledger
    from allocator.lifecycle import Lifecycle

    book = Lifecycle(open_ledger("sqlite:///inventory.db"), network, store="sqlite:///orders.db")
    book.capture(order, key="web-123")
    book.allocate(order.order_id, key="web-123/allocate")
    book.release(order.order_id)
    book.ship(order.order_id, key="dispatch-88")

* :mod:`~allocator.lifecycle.machine`: states, events and the transition table (as data);
* :mod:`~allocator.lifecycle.record`: the order record, its history, JSON and replay;
* :mod:`~allocator.lifecycle.service`: :class:`Lifecycle`, the operations;
* :mod:`~allocator.lifecycle.store`: where records are kept (memory or SQLite);
* :mod:`~allocator.lifecycle.views`: frames for operations, service and finance.

See ``docs/lifecycle.md``.
"""

from allocator.lifecycle.machine import (
    GUARDS,
    TERMINAL,
    TRANSITIONS,
    Event,
    OrderTransitionError,
    Quantities,
    State,
    allowed_events,
    mermaid,
    next_state,
)
from allocator.lifecycle.record import (
    Bucket,
    Change,
    FinanceRecord,
    HistoryEntry,
    LineRecord,
    OrderRecord,
    apply,
    capture_record,
    replay,
)
from allocator.lifecycle.service import Lifecycle, OrderBook
from allocator.lifecycle.store import (
    MemoryOrderStore,
    OrderStore,
    SQLiteOrderStore,
    StaleOrderError,
    open_store,
)
from allocator.lifecycle.views import Reconciliation

__all__ = [
    "GUARDS",
    "TERMINAL",
    "TRANSITIONS",
    "Bucket",
    "Change",
    "Event",
    "FinanceRecord",
    "HistoryEntry",
    "Lifecycle",
    "LineRecord",
    "MemoryOrderStore",
    "OrderBook",
    "OrderRecord",
    "OrderStore",
    "OrderTransitionError",
    "Quantities",
    "Reconciliation",
    "SQLiteOrderStore",
    "StaleOrderError",
    "State",
    "allowed_events",
    "apply",
    "capture_record",
    "mermaid",
    "next_state",
    "open_store",
    "replay",
]
