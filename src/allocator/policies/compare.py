"""Side-by-side runs of several policies on one instance (``docs/policies.md``).

Every policy compiles its own rule set (eligibility, stock policy, constraints differ) over the
same network and orders; all bundled peer policies extend ``default``, so every plan is priced
with the same cost model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor

import polars as pl

from allocator.allocate import Method, _resolve_rules, solve
from allocator.model import Network, Orders
from allocator.plan import check_feasible
from allocator.problem import compile_problem

__all__ = ["compare_policies", "markdown_table"]


def compare_policies(
    network: Network,
    orders: Orders,
    policies: Sequence[str],
    *,
    time_limit: float | None = None,
    seed: int = 0,
    method: Method = "auto",
    executor: Executor | None = None,
) -> pl.DataFrame:
    """Run each policy (bundled name or rule file) and tabulate the results.

    Every policy goes through :func:`allocator.solve`: heuristic policies run their greedy fill,
    ``optimize`` (and any optimising rule set) the solver that ``method`` picks — under
    ``"auto"`` the exact MILP for small problems and the decomposition for large ones.

    Parameters
    ----------
    network, orders
        The instance, shared by every policy.
    policies
        Bundled policy names or rule-file paths.
    time_limit
        Seconds for each optimising policy (heuristics ignore it).
    seed
        Solver seed.
    method
        ``"auto"``, ``"exact"`` or ``"decompose"`` (see :func:`allocator.solve`).
    executor
        Runs the decomposition's partitions in parallel (``None``: serial).

    Returns
    -------
    polars.DataFrame
        One row per policy: policy, solver (``plan.info["solver"]``: ``greedy``, the exact
        MILP's backend, ``decompose``; null when the plan does not record it), status, cost,
        unit, shipment, backorder, rejection, shipments, split_orders, units_backordered,
        orders_rejected, lower_bound, gap, seconds, feasible.
    """
    rows = []
    for name in policies:
        rules = _resolve_rules(None, name)
        problem = compile_problem(network, orders, rules)
        plan = solve(problem, time_limit=time_limit, seed=seed, method=method, executor=executor)
        s = plan.summary()
        rows.append(
            {
                "policy": name,
                "solver": None if plan.info.get("solver") is None else str(plan.info["solver"]),
                "status": s.status,
                "cost": s.cost.total,
                "unit": s.cost.unit,
                "shipment": s.cost.shipment,
                "backorder": s.cost.backorder,
                "rejection": s.cost.rejection,
                "shipments": s.shipments,
                "split_orders": s.split_orders,
                "units_backordered": s.units_backordered,
                "orders_rejected": s.orders_rejected,
                "lower_bound": s.lower_bound,
                "gap": s.gap,
                "seconds": s.seconds,
                "feasible": not check_feasible(problem, plan.solution),
            }
        )
    return pl.DataFrame(rows)


def markdown_table(table: pl.DataFrame, *, reference: str | None = None) -> str:
    """A markdown table of :func:`compare_policies`, with cost relative to ``reference``.

    A plan with a positive gap shows its lower bound and gap next to its status; a bound that
    is not positive is shown as "no useful bound".
    """
    ref = None
    if reference is not None:
        hit = table.filter(pl.col("policy") == reference)
        ref = float(hit["cost"][0]) if hit.height else None
    head = (
        "| policy | status | total cost | vs optimiser | shipping | backorder + rejection "
        "| shipments | split orders | units backordered | orders rejected | seconds |"
    )
    out = [head, "|" + "---|" * 11]
    for r in table.iter_rows(named=True):
        rel = "" if ref is None or ref <= 0 else f"{(r['cost'] - ref) / ref:+.1%}"
        gap, bound = r.get("gap"), r.get("lower_bound")
        status = r["status"]
        if bound is not None and (not math.isfinite(bound) or bound <= 0) and r["cost"] > 0:
            status += " (no useful bound)"
        elif gap is not None and math.isfinite(gap) and gap > 0:
            status += f" (bound {bound:,.2f}, gap {gap:.2%})"
        out.append(
            f"| {r['policy']} | {status} | {r['cost']:,.2f} | {rel} "
            f"| {r['unit'] + r['shipment']:,.2f} | {r['backorder'] + r['rejection']:,.2f} "
            f"| {r['shipments']:,} | {r['split_orders']:,} | {r['units_backordered']:,} "
            f"| {r['orders_rejected']:,} | {r['seconds']:.1f} |"
        )
    return "\n".join(out) + "\n"
