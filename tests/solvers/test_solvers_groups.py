"""The bound over groups of orders linked by contested stock (``solvers/_groups.py``), and the
bound lifted to the costs' quantum."""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from solvers_support import generated

from allocator import solve
from allocator.parallel import BlockRunner
from allocator.plan import Solution, check_feasible, cost_quantum, evaluate, round_up_bound
from allocator.solvers._groups import (
    changed_orders,
    crossover,
    group_rows,
    kept_prices,
    start_group_bound,
)
from allocator.solvers._lns import improve_neighbourhood
from allocator.solvers._pricing import make_block
from allocator.solvers.decompose import (
    _partitions,
    _price_all,
    group_bound,
    lagrangian_bound,
    solve_decomposed,
)
from allocator.solvers.exact import solve_exact
from allocator.solvers.lagrangian import coupling_rows


@pytest.fixture(scope="module", params=[1, 3])
def instance(request: pytest.FixtureRequest) -> tuple:  # type: ignore[type-arg]
    """A generated instance whose pattern LP is below its optimum, with that optimum."""
    problem = generated(120, 8, 60, seed=request.param)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    return problem, exact.objective


def _lp_prices(problem):  # type: ignore[no-untyped-def]
    """The prices of a converged column generation's best Lagrangian bound (the pattern LP)."""
    res = solve_decomposed(problem, primal=False, group_orders=0)
    return res, res.prices


def test_groups_are_closed_under_the_kept_rows_and_within_budget(instance) -> None:  # type: ignore[no-untyped-def]
    problem, _ = instance
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(0)
    unit = rng.random(coupling.n_unit) * (rng.random(coupling.n_unit) < 0.5)
    arc_order = problem.line_order[problem.arc_line]
    by_row = coupling.arc_rows.tocsc()
    for budget in (2, 5, 20, 60, 1000):
        kept, labels = group_rows(problem, coupling, unit, budget=budget)
        assert kept.any()
        # Only positive-priced stock rows are kept.
        assert np.all(unit[kept] > 0)
        assert np.all(coupling.unit_kind[kept] == 0)
        sizes = np.bincount(labels)
        assert sizes.max() <= budget
        for r in np.flatnonzero(kept):
            orders = arc_order[by_row.indices[by_row.indptr[r] : by_row.indptr[r + 1]]]
            assert len(np.unique(labels[orders])) == 1  # every kept row inside one group
        # A row left out would have linked groups past the budget (or was too wide alone).
        for r in np.flatnonzero(~kept & (unit > 0) & (coupling.unit_kind == 0)):
            orders = arc_order[by_row.indices[by_row.indptr[r] : by_row.indptr[r + 1]]]
            touched = np.unique(labels[orders])
            assert len(touched) > 1
            assert sizes[touched].sum() > budget


def test_preferred_rows_are_chosen_first(instance) -> None:  # type: ignore[no-untyped-def]
    problem, _ = instance
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(2)
    unit = rng.random(coupling.n_unit)
    for budget in (4, 15, 40):
        preferred = rng.random(coupling.n_unit) < 0.3
        kept, _ = group_rows(problem, coupling, unit, budget=budget, preferred=preferred)
        # Among the preferred rows the choice is the one made with no other candidates.
        alone, _ = group_rows(problem, coupling, np.where(preferred, unit, 0.0), budget=budget)
        assert np.array_equal(kept & preferred, alone)
        assert (kept & ~preferred).any()


def test_bound_at_any_prices_is_below_the_optimum(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(1)
    for scale in (0.5, 3.0, 30.0):
        unit = rng.random(coupling.n_unit) * scale
        ship = rng.random(coupling.n_ship) * scale
        for budget in (3, 40, 1000):
            found = group_bound(problem, unit, ship, group_orders=budget, coupling=coupling)
            assert found.bound <= optimum + 1e-6 * abs(optimum)
            kept_u, _, _ = kept_prices(problem, coupling, unit, budget=budget)
            plain = lagrangian_bound(problem, kept_u, ship, coupling=coupling)
            assert found.bound >= plain - 1e-6 * abs(plain)


def test_groups_lift_the_bound_above_the_pattern_lp(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    res, (unit, ship) = _lp_prices(problem)
    assert res.lower_bound < optimum - 1.0  # the pattern LP leaves a gap on these instances
    found = group_bound(problem, unit, ship)
    assert found.groups > 0
    assert found.solved == found.groups
    assert found.bound <= optimum + 1e-6 * abs(optimum)
    # Measured: 2,502.21 -> 2,525.45 (optimum 2,527.55) and 2,150.43 -> 2,152.50 (the optimum).
    assert found.bound - res.lower_bound >= 0.5 * (optimum - res.lower_bound)


def test_decomposition_reports_the_group_bound(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    without = solve_decomposed(problem, group_orders=0)
    serial = solve_decomposed(problem)
    assert not check_feasible(problem, serial.solution)
    assert serial.lower_bound <= optimum + 1e-6 * abs(optimum)
    assert serial.lower_bound > without.lower_bound + 1.0
    assert any(h.get("phase") == "groups" for h in serial.history)
    with ProcessPoolExecutor(2) as pool:
        pooled = solve_decomposed(problem, executor=pool)
    assert pooled.lower_bound == pytest.approx(serial.lower_bound, rel=1e-9)
    assert np.array_equal(pooled.solution.arc_qty, serial.solution.arc_qty)


def _arguments(problem, coupling, unit, ship, budget):  # type: ignore[no-untyped-def]
    """What :func:`start_group_bound` takes, with both pricing rounds, and the kept prices."""
    kept_u, kept, labels = kept_prices(problem, coupling, unit, budget=budget)
    blocks = [
        make_block(problem, part, coupling.arc_rows, coupling.pair_ship_row)
        for part in _partitions(problem)
    ]
    runner = BlockRunner(blocks, None)
    at_zero = _price_all(runner, blocks, problem.n_orders, kept_u, ship, 0).value
    at_price = _price_all(runner, blocks, problem.n_orders, unit, ship, 0).value
    return (problem, coupling, kept, labels, unit, ship, at_zero, at_price), kept_u


def test_a_group_cut_short_still_bounds(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    coupling = coupling_rows(problem)
    _, (unit, ship) = _lp_prices(problem)
    args, kept_u = _arguments(problem, coupling, unit, ship, 1000)
    at_zero = lagrangian_bound(problem, kept_u, ship, coupling=coupling)
    at_price = lagrangian_bound(problem, unit, ship, coupling=coupling)
    full = group_bound(problem, unit, ship, group_orders=1000, coupling=coupling)
    for seconds in (0.0, 0.02):
        started = time.perf_counter()
        cut = start_group_bound(*args).result(time.perf_counter() + seconds)
        assert time.perf_counter() - started < 2.0
        # Never below either Lagrangian value, never above the groups solved to the end.
        assert cut.bound >= max(at_zero, at_price) - 1e-6 * abs(at_price)
        assert cut.bound <= full.bound + 1e-6 * abs(full.bound)
        assert cut.bound <= optimum + 1e-6 * abs(optimum)
    assert start_group_bound(*args).result(0.0).solved == 0  # no time: nothing solved


def test_unsolved_groups_keep_the_lagrangian_bound_at_their_prices() -> None:
    # With random prices some groups gain from their rows at zero and some lose: unsolved,
    # every group keeps the better of the two, so the bound is at least the priced one.
    problem = generated(150, 6, 30, seed=2)
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(4)
    for _ in range(3):
        unit = rng.random(coupling.n_unit) * 5.0
        ship = rng.random(coupling.n_ship)
        args, kept_u = _arguments(problem, coupling, unit, ship, 30)
        jobs = start_group_bound(*args)
        floor = jobs.result(0.0).bound
        priced = lagrangian_bound(problem, unit, ship, coupling=coupling)
        zeroed = lagrangian_bound(problem, kept_u, ship, coupling=coupling)
        assert floor >= max(priced, zeroed) - 1e-9 * abs(priced)


@pytest.mark.slow
def test_groups_on_a_pool_stop_with_the_run() -> None:
    # 1,000 orders, 2.5 s: column generation ends near 1 s and the largest group needs about
    # 2 s on its own, so some groups are cut short. The run keeps its limit, the bound stays
    # valid, and the workers are free right after (their MILPs stop at the run's end).
    problem = generated(1000, 20, 500, seed=1)
    with ProcessPoolExecutor(2) as pool:
        started = time.perf_counter()
        res = solve_decomposed(problem, executor=pool, time_limit=2.5)
        elapsed = time.perf_counter() - started
        assert elapsed <= 2.5 + 1.0
        assert res.stopped_by_time  # the search was cut at the limit, not stalled
        assert not check_feasible(problem, res.solution)
        assert res.lower_bound <= res.cost
        freed = time.perf_counter()
        assert pool.submit(abs, -1).result(timeout=10) == 1
        assert time.perf_counter() - freed < 1.0


@pytest.mark.slow
def test_a_serial_run_keeps_the_end_of_its_limit_for_the_groups() -> None:
    problem = generated(1000, 20, 500, seed=2)
    started = time.perf_counter()
    res = solve_decomposed(problem, time_limit=5.0)
    assert time.perf_counter() - started <= 5.0 + 1.0
    phases = [h.get("phase") for h in res.history if h.get("phase") != "crossover"]
    assert phases[-1] == "groups"  # solved after the plan's search, in the time kept for them
    without = solve_decomposed(problem, time_limit=5.0, group_orders=0)
    assert res.lower_bound > without.lower_bound


def test_on_request_time_left_after_the_search_goes_to_larger_groups(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    once = solve_decomposed(problem, group_orders=5, time_limit=6.0)  # one round of groups
    grown = solve_decomposed(problem, group_orders=5, group_growth=8, time_limit=6.0)
    rounds = [h for h in grown.history if h.get("phase") == "groups"]
    assert len(rounds) >= 2  # 5, then 40, 320 orders while time is left
    assert [h.get("phase") for h in once.history].count("groups") == 1
    assert [h["bound"] for h in rounds] == sorted(h["bound"] for h in rounds)
    # Measured: 2,511.61 -> 2,525.45 and 2,150.43 -> 2,152.50 (the optimum, and the run stops).
    assert grown.lower_bound > once.lower_bound + 1.0
    assert grown.lower_bound <= optimum + 1e-6 * abs(optimum)
    assert not check_feasible(problem, grown.solution)


def test_grown_groups_on_a_pool_keep_the_bound_rising_and_valid(instance) -> None:  # type: ignore[no-untyped-def]
    # With a pool the workers go on to larger groups while the plan is searched, instead of
    # waiting for the search to stall; the bound still only rises and stays below the optimum.
    problem, optimum = instance
    once = solve_decomposed(problem, group_orders=5, time_limit=6.0)
    with ProcessPoolExecutor(2) as pool:
        grown = solve_decomposed(
            problem, group_orders=5, group_growth=8, time_limit=6.0, executor=pool
        )
    rounds = [h for h in grown.history if h.get("phase") == "groups"]
    assert len(rounds) >= 2
    assert [h["bound"] for h in rounds] == sorted(h["bound"] for h in rounds)
    assert grown.lower_bound > once.lower_bound + 1.0
    assert grown.lower_bound <= optimum + 1e-6 * abs(optimum)
    assert not check_feasible(problem, grown.solution)


def test_changed_orders_names_every_order_sourced_differently() -> None:
    problem = generated(40, 5, 20, seed=4)
    plan = solve_decomposed(problem, group_orders=0).solution
    arc_qty = plan.arc_qty.copy()
    backorder = plan.line_backorder.copy()
    # Order a: one unit moved off an arc to backorder; order b: only its backorder changes.
    a_arcs = np.flatnonzero(arc_qty > 0)
    arc = int(a_arcs[0])
    line = int(problem.arc_line[arc])
    arc_qty[arc] -= 1
    backorder[line] += 1
    other = np.flatnonzero(problem.line_order != problem.line_order[line])[0]
    backorder[other] += 1
    changed = Solution(arc_qty, backorder, plan.order_rejected.copy())
    expected = sorted({int(problem.line_order[line]), int(problem.line_order[other])})
    assert changed_orders(problem, plan, changed).tolist() == expected
    assert len(changed_orders(problem, plan, plan)) == 0


def test_groups_return_plans_feasible_for_their_own_orders(instance) -> None:  # type: ignore[no-untyped-def]
    problem, _ = instance
    _, (unit, ship) = _lp_prices(problem)
    found = group_bound(problem, unit, ship, group_orders=1000)
    assert len(found.plans) == found.groups
    members = np.concatenate([sub.orders for sub, _ in found.plans])
    assert len(np.unique(members)) == len(members)  # the groups are disjoint
    for sub, plan in found.plans:
        assert not check_feasible(sub.problem, plan)
    base = solve_decomposed(problem, group_orders=0).solution
    assert np.isin(crossover(problem, base, found), members).all()


def test_crossover_with_the_groups_plans_reaches_the_optimum(instance) -> None:  # type: ignore[no-untyped-def]
    # The plan before any neighbourhood search, re-sourced on the orders where the groups' own
    # plans differ from it: measured, both instances reach their optimum (2,531.60 -> 2,527.55
    # and 2,160.65 -> 2,152.50, from 19 and 11 orders).
    problem, optimum = instance
    base = solve_decomposed(
        problem, group_orders=0, lns_passes=0, pattern_passes=0, rescue_passes=0
    )
    assert base.cost > optimum + 1.0
    _, (unit, ship) = _lp_prices(problem)
    found = group_bound(problem, unit, ship, group_orders=1000)
    orders = crossover(problem, base.solution, found)
    assert 0 < len(orders) < problem.n_orders // 4
    better, gain = improve_neighbourhood(problem, base.solution, orders, node_limit=500)
    assert not check_feasible(problem, better)
    assert evaluate(problem, better).total == pytest.approx(optimum, abs=1e-6)
    assert gain == pytest.approx(base.cost - optimum, abs=1e-6)
    # The decomposition does the same after its groups are solved.
    run = solve_decomposed(problem)
    assert "crossover" in [h.get("phase") for h in run.history]
    assert run.cost == pytest.approx(optimum, abs=1e-6)


def test_cost_quantum_and_rounding_up() -> None:
    problem = generated(120, 8, 60, seed=1)
    assert cost_quantum(problem) == 0.05  # the generator's costs are in steps of 5 cents
    off = dataclasses.replace(problem, arc_unit_cost=problem.arc_unit_cost + 1e-3)
    assert cost_quantum(off) is None
    assert round_up_bound(16_687.208, 0.05) == pytest.approx(16_687.25)
    assert round_up_bound(16_687.25 + 1e-10, 0.05) == pytest.approx(16_687.25)  # noise stays
    assert round_up_bound(16_687.25 - 1e-10, 0.05) == pytest.approx(16_687.25)
    assert round_up_bound(-3.02, 0.05) == pytest.approx(-3.0)
    assert round_up_bound(12.34, None) == 12.34
    assert round_up_bound(-math.inf, 0.05) == -math.inf


def test_rounded_bound_stays_below_the_optimum(instance) -> None:  # type: ignore[no-untyped-def]
    problem, optimum = instance
    plan = solve(problem, method="decompose", time_limit=6.0)
    assert plan.lower_bound is not None
    q = cost_quantum(problem)
    assert q is not None
    # The reported bound is a whole multiple of the quantum (or the plan's own cost).
    steps = plan.lower_bound / q
    assert abs(steps - round(steps)) < 1e-6 or plan.lower_bound == plan.cost.total
    assert plan.lower_bound <= optimum + 1e-6 * abs(optimum)
    assert round_up_bound(optimum, q) == pytest.approx(optimum)  # the optimum is a multiple
