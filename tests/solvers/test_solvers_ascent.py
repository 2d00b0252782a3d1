"""The ascent that prices the coupling rows without a master LP (``solvers/_ascent.py``)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from solvers_support import generated

from allocator import Network, Orders, compile_problem
from allocator.errors import InputError
from allocator.parallel import BlockRunner
from allocator.plan import check_feasible
from allocator.solvers._ascent import PatternDual, _fits_in_order, ascend, plan_from_weights
from allocator.solvers._columns import (
    PatternBatch,
    empty_cost,
    pattern_cost,
    pattern_rows,
    patterns_of_solution,
    plan_from_arc_qty,
)
from allocator.solvers._pricing import make_block
from allocator.solvers.decompose import _price_all, _select, solve_decomposed
from allocator.solvers.exact import solve_exact
from allocator.solvers.lagrangian import coupling_rows


def _pool(problem, alternatives: int = 4):  # type: ignore[no-untyped-def]
    """A pattern pool as the decomposition starts it: empties, cheapest, alternatives."""
    coupling = coupling_rows(problem)
    dual = PatternDual(problem, coupling)
    n = problem.n_orders
    empties = PatternBatch(
        np.arange(n, dtype=np.int64),
        np.zeros(n + 1, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )
    dual.add(empties, empty_cost(problem))
    blocks = [make_block(problem, np.arange(n), coupling.arc_rows, coupling.pair_ship_row)]
    first = _price_all(
        BlockRunner(blocks, None),
        blocks,
        n,
        np.zeros(coupling.n_unit),
        np.zeros(coupling.n_ship),
        alternatives,
    )
    best = _select(first.best, np.flatnonzero(np.diff(first.best.ptr) > 0))
    dual.add(best, pattern_cost(problem, best, None))
    if first.alternatives is not None:
        dual.add(first.alternatives, pattern_cost(problem, first.alternatives, None))
    return coupling, dual


def _dense(problem, coupling, dual):  # type: ignore[no-untyped-def]
    pool = dual.pool.all()
    unit, ship = pattern_rows(problem, coupling, pool)
    use = np.vstack([unit.toarray(), ship.toarray()])  # rows x patterns
    return pool, dual.pool.costs(), use


def test_restricted_value_matches_a_direct_computation() -> None:
    problem = generated(60, 6, 30, seed=4)
    coupling, dual = _pool(problem)
    pool, cost, use = _dense(problem, coupling, dual)
    rng = np.random.default_rng(1)
    for scale in (0.0, 1.0, 20.0):
        price = rng.random(dual.n_rows) * scale
        priced = cost + price @ use
        least = np.full(problem.n_orders, np.inf)
        np.minimum.at(least, pool.order, priced)
        value, per_order, chosen = dual.value(price)
        assert value == pytest.approx(least.sum() - price @ dual.bound, rel=1e-12, abs=1e-9)
        assert np.allclose(per_order, least)
        # The chosen patterns are the orders' cheapest, one per order.
        picked = dual.pool_index(chosen)
        assert np.array_equal(pool.order[picked], np.arange(problem.n_orders))
        assert np.allclose(priced[picked], least)
        assert np.allclose(dual.usage(chosen), use[:, picked].sum(axis=1))


def test_ascent_approaches_the_restricted_master_lp_from_below() -> None:
    problem = generated(120, 8, 60, seed=2)
    coupling, dual = _pool(problem)
    pool, cost, use = _dense(problem, coupling, dual)
    # The restricted master LP: one convex combination per order, coupling rows <= bound.
    convexity = np.zeros((problem.n_orders, pool.n))
    convexity[pool.order, np.arange(pool.n)] = 1.0
    lp = linprog(
        cost,
        A_ub=use,
        b_ub=dual.bound,
        A_eq=convexity,
        b_eq=np.ones(problem.n_orders),
        bounds=(0, None),
        method="highs",
    )
    assert lp.status == 0
    start_value = dual.value(np.zeros(dual.n_rows))[0]
    asc = ascend(dual, np.zeros(dual.n_rows), iterations=600, step=1.0)
    # Weak duality: no price beats the LP; the ascent closes most of the zero-price gap.
    assert asc.value <= lp.fun + 1e-6 * abs(lp.fun)
    assert asc.value == pytest.approx(dual.value(asc.price)[0])
    assert lp.fun - asc.value <= 0.05 * (lp.fun - start_value) + 1e-6
    assert np.all(asc.price >= 0)


def test_recorded_weights_are_shares_per_order() -> None:
    problem = generated(60, 6, 30, seed=5)
    _, dual = _pool(problem)
    asc = ascend(dual, np.zeros(dual.n_rows), iterations=50, step=1.0, record=10)
    assert asc.weights is not None
    per_order = np.bincount(dual.pool.all().order, weights=asc.weights)
    assert np.allclose(per_order, 1.0)


@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.integers(1, 3)), min_size=1, max_size=3),
        max_size=12,
    ),
    st.lists(st.integers(0, 5), min_size=5, max_size=5),
)
def test_columns_kept_in_order_fit_together(columns, bound) -> None:  # type: ignore[no-untyped-def]
    use = np.zeros((5, len(columns)))
    for j, entries in enumerate(columns):
        for row, amount in entries:
            use[row, j] += amount
    from scipy import sparse

    keep = _fits_in_order(sparse.csc_matrix(use), np.asarray(bound, float))
    assert np.all(use[:, keep].sum(axis=1) <= np.asarray(bound) + 1e-9)
    # A column is kept when, in each row it uses, it and every column before it (kept or not)
    # stay within the bound.
    within = np.cumsum(use, axis=1) <= np.asarray(bound)[:, None] + 1e-9
    assert np.array_equal(keep, np.all(within | (use == 0), axis=0))


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None)
def test_plan_from_any_weights_is_feasible(seed: int) -> None:
    problem = generated(80, 6, 40, seed=seed % 7)
    coupling, dual = _pool(problem)
    pool = dual.pool.all()
    rng = np.random.default_rng(seed)
    weights = rng.random(pool.n) * (rng.random(pool.n) < 0.5)
    prices = (rng.random(coupling.n_unit), rng.random(coupling.n_ship))
    plan = plan_from_weights(problem, coupling, pool, weights, prices)
    assert not check_feasible(problem, plan)


def test_plan_from_weights_gives_contested_stock_to_the_order_that_cannot_split() -> None:
    # "flex" and "whole" both want A's two units of x in their heaviest pattern. "whole" must
    # ship complete and only A has its y; "flex" can ship from B. Heaviest first (a tie, so by
    # index) gave A to "flex" and left "whole" waiting; the regret order places both.
    locations = pl.DataFrame(
        {"location_id": ["A", "B"], "lat": [40.7, 41.9], "lon": [-74.0, -87.6]}
    )
    stock = pl.DataFrame(
        {"location_id": ["A", "A", "B"], "sku": ["x", "y", "x"], "on_hand": [2, 1, 2]}
    )
    orders = pl.DataFrame(
        {
            "order_id": ["flex", "whole", "whole"],
            "sku": ["x", "x", "y"],
            "qty": [2, 2, 1],
            "ship_complete": [False, True, True],
            "lat": [40.7] * 3,
            "lon": [-74.0] * 3,
        }
    )
    problem = compile_problem(Network.from_frames(locations, stock), Orders.from_frame(orders))
    assert problem.order_ids.tolist() == ["flex", "whole"]
    coupling = coupling_rows(problem)
    at_a = problem.arc_location == problem.location_ids.tolist().index("A")
    both_at_a = np.where(at_a, problem.line_qty[problem.arc_line], 0).astype(np.int64)
    pool = patterns_of_solution(
        problem, plan_from_arc_qty(problem, both_at_a), np.arange(problem.n_orders)
    )
    no_prices = (np.zeros(coupling.n_unit), np.zeros(coupling.n_ship))
    plan = plan_from_weights(problem, coupling, pool, np.ones(pool.n), no_prices)
    assert not check_feasible(problem, plan)
    assert plan.line_backorder.sum() == 0
    where = problem.location_ids[problem.arc_location[plan.arc_qty > 0]]
    owner = problem.order_ids[problem.line_order[problem.arc_line[plan.arc_qty > 0]]]
    assert sorted(zip(owner.tolist(), where.tolist(), strict=True)) == [
        ("flex", "B"),
        ("whole", "A"),
        ("whole", "A"),
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_ascent_bound_near_the_pattern_lp_and_below_the_optimum(seed: int) -> None:
    problem = generated(120, 8, 60, seed=seed)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    lp = solve_decomposed(problem, prices="lp", group_orders=0)  # the pattern LP's bound
    asc = solve_decomposed(problem, prices="ascent")
    assert not check_feasible(problem, asc.solution)
    assert asc.lower_bound <= exact.objective + 1e-6 * abs(exact.objective)
    # The LP route converges to the pattern LP; the ascent gets within 0.1 % of it.
    assert asc.lower_bound <= lp.lower_bound + 1e-6 * abs(lp.lower_bound)
    assert asc.lower_bound >= lp.lower_bound - 1e-3 * abs(lp.lower_bound)
    assert asc.cost <= 1.01 * exact.objective


def test_ascent_same_plan_serial_and_process_pool() -> None:
    problem = generated(400, 12, 200, seed=5)
    serial = solve_decomposed(problem, partition_arcs=800, seed=3, prices="ascent")
    with ProcessPoolExecutor(2) as pool:
        pooled = solve_decomposed(
            problem, partition_arcs=800, seed=3, prices="ascent", executor=pool
        )
    assert np.array_equal(serial.solution.arc_qty, pooled.solution.arc_qty)
    assert np.array_equal(serial.solution.line_backorder, pooled.solution.line_backorder)
    assert serial.lower_bound == pooled.lower_bound
    assert serial.prices[0].tolist() == pooled.prices[0].tolist()


def test_ascent_honours_a_time_limit_and_its_bound_holds() -> None:
    import time

    problem = generated(3000, 30, 1500, seed=2)
    t0 = time.perf_counter()
    res = solve_decomposed(problem, time_limit=1.5, prices="ascent")
    assert time.perf_counter() - t0 <= 1.5 + 1.0
    assert not check_feasible(problem, res.solution)
    assert res.lower_bound <= res.cost + 1e-6


def test_prices_option_is_validated() -> None:
    problem = generated(30, 5, 20, seed=1)
    with pytest.raises(InputError, match="prices"):
        solve_decomposed(problem, prices="simplex")


def test_an_ascent_past_its_deadline_stops_with_the_cheapest_patterns_as_weights() -> None:
    import time

    problem = generated(60, 6, 30, seed=5)
    _, dual = _pool(problem)
    asc = ascend(
        dual,
        np.zeros(dual.n_rows),
        iterations=10_000,
        step=1.0,
        record=10,
        deadline=time.perf_counter(),
    )
    assert asc.weights is not None
    assert sorted(np.unique(asc.weights).tolist()) == [0.0, 1.0]
    chosen = dual.pool_index(dual.value(asc.price)[2])
    assert np.flatnonzero(asc.weights).tolist() == sorted(chosen.tolist())
