"""The one-unit-order flow neighbourhood against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from solvers_support import local_instance

from allocator.plan import Solution, check_feasible, evaluate
from allocator.solvers._columns import plan_from_arc_qty
from allocator.solvers._flow import improve_single_units, single_unit_orders
from allocator.solvers.greedy import greedy_baseline
from allocator.solvers.lagrangian import coupling_rows


def _brute_force(problem, base: Solution, orders: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Cheapest feasible plan over every source (or none) of ``orders``, the rest as in ``base``."""
    p = problem
    free = np.zeros(p.n_orders, bool)
    free[orders] = True
    fixed = np.where(free[p.line_order[p.arc_line]], 0, base.arc_qty)
    options = [
        [-1, *np.flatnonzero(p.line_order[p.arc_line] == o).tolist()] for o in orders.tolist()
    ]
    best = np.inf
    for choice in itertools.product(*options):
        arc_qty = fixed.copy()
        for a in choice:
            if a >= 0:
                arc_qty[a] += 1
        shipped = np.bincount(p.arc_line, weights=arc_qty, minlength=p.n_lines).astype(np.int64)
        served = np.bincount(p.line_order, weights=shipped, minlength=p.n_orders) > 0
        rejected = ~served & ~p.order_allow_backorder
        backorder = np.where(rejected[p.line_order], 0, p.line_qty - shipped)
        plan = Solution(arc_qty, backorder.astype(np.int64), rejected)
        if not check_feasible(p, plan):
            best = min(best, evaluate(p, plan).total)
    return float(best)


@pytest.mark.parametrize("start", ["greedy", "empty"])
@pytest.mark.parametrize("seed", range(8))
def test_flow_is_optimal_over_the_one_unit_orders(seed: int, start: str) -> None:
    problem = local_instance(12, 4, 3, seed=seed)
    coupling = coupling_rows(problem)
    singles = single_unit_orders(problem, coupling)[:6]
    assert len(singles) > 0
    if start == "greedy":
        base = greedy_baseline(problem).solution
    else:  # nothing shipped: orders wait, or are rejected where they may not wait
        base = plan_from_arc_qty(problem, np.zeros(problem.n_arcs, np.int64))
    assert check_feasible(problem, base) == []
    better = improve_single_units(problem, coupling, base, singles)
    assert check_feasible(problem, better) == []
    # Untouched orders keep their sourcing.
    others = ~np.isin(problem.line_order[problem.arc_line], singles)
    assert np.array_equal(better.arc_qty[others], base.arc_qty[others])
    optimum = _brute_force(problem, base, singles)
    assert evaluate(problem, better).total == pytest.approx(optimum, abs=1e-3)
    assert evaluate(problem, better).total <= evaluate(problem, base).total + 1e-3


def test_single_unit_orders_are_one_line_of_one_unit() -> None:
    problem = local_instance(40, 5, 6, seed=3)
    singles = single_unit_orders(problem, coupling_rows(problem))
    assert len(singles) > 0
    assert np.all(np.diff(problem.order_line_start)[singles] == 1)
    assert np.all(problem.order_units[singles] == 1)
    lines = np.diff(problem.order_line_start)
    others = np.setdiff1d(np.arange(problem.n_orders), singles)
    assert np.all((lines[others] > 1) | (problem.order_units[others] > 1))
