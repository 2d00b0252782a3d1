"""allocator: decide where every order is fulfilled from.

Read a network and orders, allocate, and read the plan::

    import allocator
    network = allocator.read_network("network/")
    orders = allocator.read_orders("orders.csv")
    plan = allocator.allocate(network, orders)
    print(plan.summary())
    print(allocator.explain(plan, "O0000042").to_text())   # why one order is served that way

Rule sets are read with :func:`load_rules` (a bundled name or a TOML path).
"""

import logging
from importlib.metadata import PackageNotFoundError, version

from allocator.allocate import allocate, solve
from allocator.errors import AllocatorError, InputError
from allocator.explain import Explanation, explain, explain_order
from allocator.model import (
    Location,
    Network,
    Order,
    OrderLine,
    Orders,
    StockLevel,
    read_assignments,
    read_network,
    read_orders,
)
from allocator.plan import Plan, Status, Summary
from allocator.problem import Problem, compile_problem
from allocator.rules.load import load_rules
from allocator.rules.schema import RuleSet

try:
    __version__ = version("allocator")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

logging.getLogger("allocator").addHandler(logging.NullHandler())

__all__ = [
    "AllocatorError",
    "Explanation",
    "InputError",
    "Location",
    "Network",
    "Order",
    "OrderLine",
    "Orders",
    "Plan",
    "Problem",
    "RuleSet",
    "Status",
    "StockLevel",
    "Summary",
    "__version__",
    "allocate",
    "compile_problem",
    "explain",
    "explain_order",
    "load_rules",
    "read_assignments",
    "read_network",
    "read_orders",
    "solve",
]
