"""Greedy policies: rule sets with ``strategy = "greedy"``, and today's platforms as baselines.

:func:`run_greedy` runs the policy that a compiled problem's rule set describes: its ranking
chain, fill and shortfall behaviour (:mod:`allocator.policies.fill`), or the built-in baseline
when the rule set has no ``[greedy]`` section. The baseline policies of today's platforms
(``peers.md``) are rule files in ``rules/peers/``; :data:`PEER_POLICIES` lists their names.
"""

from __future__ import annotations

import time

from allocator.plan import Plan, Status
from allocator.policies.fill import FillResult, backorder_frame, fill_orders
from allocator.problem import Problem
from allocator.rules.load import PEER_POLICIES
from allocator.solvers.greedy import greedy_baseline

__all__ = ["PEER_POLICIES", "FillResult", "fill_orders", "run_greedy"]


def run_greedy(problem: Problem) -> Plan:
    """Run the greedy policy of ``problem.rules`` and return its plan.

    The plan's ``info["backorder_locations"]`` (a polars frame: order_id, line_id, sku,
    location_id, qty) says where each backordered line waits, for policies that record it.
    """
    rules = problem.rules
    t0 = time.perf_counter()
    if rules.greedy is None:
        plan = greedy_baseline(problem)
        plan.policy = rules.name
        return plan
    result = fill_orders(problem, rules.greedy)
    info: dict[str, object] = {"solver": "greedy", "fill": rules.greedy.fill}
    if rules.greedy.backorder_at != "none":
        info["backorder_locations"] = backorder_frame(
            problem, result.solution, result.backorder_location
        )
    return Plan(
        problem,
        result.solution,
        Status.HEURISTIC,
        rules.name,
        lower_bound=None,
        seconds=time.perf_counter() - t0,
        info=info,
    )
