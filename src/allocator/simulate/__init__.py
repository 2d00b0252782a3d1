"""Policy simulation: replay an order history under any policy, compare, and plot.

Analysts decide routing policy from evidence: what would last month have cost under the
platform's rule, under ship-from-store, under the optimiser, and what if we re-optimised every
night? :func:`simulate` replays a history (orders arriving at their ``created_at``, stock
reserved and shipped through the inventory ledger, receipts, cancellations and returns) under
one policy; :func:`compare` replays it under several, in parallel through any
``concurrent.futures.Executor`` (Dask included), and returns one table::

    from allocator import read_network, read_orders
    from allocator.simulate import compare

    result = compare(["optimize", "shopify_default", "saleor_high_stock"],
                     read_network("network/"), read_orders("orders.csv"), mode="realtime")
    result.kpis            # one row per policy
    result.write("out/")   # kpis.csv, daily.csv, charts, report.html

See ``docs/simulate.md`` for the modes, the KPIs and how "the same history" is kept the same.
"""

from allocator.simulate._config import Mode, SimulationConfig
from allocator.simulate._engine import PolicyError
from allocator.simulate._history import CANCELLATIONS, INBOUND, RETURNS, History, prepare_history
from allocator.simulate._kpi import KPI_COLUMNS
from allocator.simulate._policies import (
    Decision,
    DecisionContext,
    ForwardLookingPolicy,
    Policy,
    RulePolicy,
    resolve_policy,
)
from allocator.simulate._run import Comparison, SimulationResult, compare, replay, simulate
from allocator.simulate._sequential import source_sequentially

__all__ = [
    "CANCELLATIONS",
    "INBOUND",
    "KPI_COLUMNS",
    "RETURNS",
    "Comparison",
    "Decision",
    "DecisionContext",
    "ForwardLookingPolicy",
    "History",
    "Mode",
    "Policy",
    "PolicyError",
    "RulePolicy",
    "SimulationConfig",
    "SimulationResult",
    "compare",
    "prepare_history",
    "replay",
    "resolve_policy",
    "simulate",
    "source_sequentially",
]
