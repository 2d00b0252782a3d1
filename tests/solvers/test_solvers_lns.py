"""Neighbourhoods for fix-and-solve, and time limits of the LP handle across re-solves."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from solvers_support import generated

from allocator import compile_problem
from allocator.plan import Solution
from allocator.solvers import _restrict
from allocator.solvers._columns import pattern_cost, patterns_of_solution
from allocator.solvers._lns import improve_neighbourhood, neighbourhoods, order_links
from allocator.solvers._lp import _HAVE_CORE, HighsHandle
from allocator.solvers._restrict import plan_usage, restrict
from allocator.solvers.greedy import greedy_baseline
from allocator.solvers.lagrangian import coupling_rows
from allocator.testing import instances, rule_sets


@pytest.fixture(scope="module")
def priced() -> tuple:  # type: ignore[type-arg]
    problem = generated(600, 12, 150, seed=4)
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(0)
    unit = np.where(rng.random(coupling.n_unit) < 0.3, 1.0, 0.0)
    ship = np.zeros(coupling.n_ship)
    return problem, coupling, unit, ship


def _groups(problem, coupling, seeds, unit, ship, **options) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return list(
        neighbourhoods(problem, coupling, seeds, Solution.empty(problem), unit, ship, **options)
    )


def test_groups_are_disjoint_small_and_linked(priced) -> None:  # type: ignore[no-untyped-def]
    problem, coupling, unit, ship = priced
    seeds = np.arange(0, problem.n_orders, 3)
    size = 25
    groups = _groups(problem, coupling, seeds, unit, ship, size=size, rng=np.random.default_rng(1))
    members = np.concatenate(groups)
    assert len(members) == len(np.unique(members))  # disjoint
    assert all(1 <= len(g) <= size for g in groups)
    assert np.isin(seeds, members).all()  # every seed lands in some group
    m, _ = order_links(problem, coupling, unit, ship)  # type: ignore[misc]
    rows_of = [set(m[int(o)].indices.tolist()) for o in range(problem.n_orders)]
    for g in groups:
        # Every order after the seed shares a priced row with an order of the group.
        shared = [any(rows_of[a] & rows_of[b] for b in g if b != a) for a in g]
        assert len(g) == 1 or all(shared)


def test_groups_come_one_at_a_time_and_links_can_be_shared(priced) -> None:  # type: ignore[no-untyped-def]
    problem, coupling, unit, ship = priced
    seeds = np.arange(problem.n_orders)
    args = (problem, coupling, seeds, Solution.empty(problem), unit, ship)
    lazy = neighbourhoods(*args, size=40, rng=np.random.default_rng(7))
    assert inspect.isgenerator(lazy)
    first = next(lazy)
    links = order_links(problem, coupling, unit, ship)
    shared = list(neighbourhoods(*args, size=40, rng=np.random.default_rng(7), links=links))
    assert np.array_equal(shared[0], first)
    assert [g.tolist() for g in shared[1:]] == [g.tolist() for g in lazy]


def test_without_prices_groups_are_slices_of_the_seeds(priced) -> None:  # type: ignore[no-untyped-def]
    problem, coupling, _, _ = priced
    seeds = np.arange(10, 95)
    groups = _groups(
        problem, coupling, seeds, np.zeros(coupling.n_unit), np.zeros(coupling.n_ship), size=30
    )
    assert [len(g) for g in groups] == [30, 30, 25]
    assert np.array_equal(np.concatenate(groups), seeds)


@pytest.mark.skipif(not _HAVE_CORE, reason="needs SciPy's HiGHS binding")
def test_each_resolve_gets_its_own_time_limit() -> None:
    """HiGHS counts its time limit over all runs of one object; the handle offsets it."""
    rng = np.random.default_rng(3)
    n_rows, n_cols = 300, 900
    handle = HighsHandle(np.full(n_rows, 1.0), np.full(n_rows, np.inf))
    # Rows x >= 1 (covering); an identity block keeps the LP feasible.
    matrix = sp.hstack(
        [sp.identity(n_rows), sp.random(n_rows, n_cols - n_rows, density=0.02, random_state=3)],
        format="csc",
    )
    handle.add_columns(rng.random(n_cols) + 0.1, np.full(n_cols, np.inf), matrix)
    first = handle.solve_lp(time_limit=30.0)
    assert first.status == "optimal"
    highs = handle._highs
    spent = highs.getRunTime()
    assert spent > 0
    handle.add_columns(rng.random(50), np.full(50, np.inf), sp.random(n_rows, 50, density=0.05))
    second = handle.solve_lp(time_limit=30.0)
    assert second.status == "optimal"
    _, limit = highs.getOptionValue("time_limit")
    assert limit >= 30.0 + spent


def _residual_from_scratch(problem, orders, arc_qty):  # type: ignore[no-untyped-def]
    """What the other orders leave, computed over every arc (the definition)."""
    p = problem
    free = np.zeros(p.n_orders, bool)
    free[orders] = True
    taken = np.where(free[p.line_order[p.arc_line]], 0, arc_qty)
    n_sku = p.atp.shape[1]
    used = np.bincount(
        p.arc_location * n_sku + p.arc_sku(), weights=taken, minlength=p.atp.size
    ).reshape(p.atp.shape)
    units = np.bincount(p.arc_location, weights=taken, minlength=p.n_locations)
    shipping = np.bincount(p.arc_pair, weights=taken, minlength=p.n_pairs) > 0
    ships = np.bincount(p.pair_location[shipping], minlength=p.n_locations)
    return (
        np.maximum(p.atp - used, 0),
        np.maximum(p.location_capacity_units - units, 0.0),
        np.maximum(p.location_capacity_shipments - ships, 0.0),
        np.maximum(p.limit_bound - p.limit_usage(taken), 0.0),
    )


def _assert_stock_matches(problem, sub_atp, free, expected) -> None:  # type: ignore[no-untyped-def]
    """The sub-problem's stock equals ``expected`` at every (location, SKU) the free orders
    have an arc for (all it reads) and is zero elsewhere."""
    p = problem
    free_arc = np.isin(p.line_order[p.arc_line], free)
    mask = np.zeros(p.atp.shape, bool)
    mask[p.arc_location[free_arc], p.arc_sku()[free_arc]] = True
    assert np.array_equal(sub_atp[mask], expected[mask])
    assert not sub_atp[~mask].any()


@given(instances(rules=rule_sets(strategy="optimize"), max_orders=6), st.data())
@settings(max_examples=40, deadline=None)
def test_restrict_leaves_what_the_other_orders_leave(instance, data) -> None:  # type: ignore[no-untyped-def]
    network, orders, rules = instance
    problem = compile_problem(network, orders, rules)
    plan = greedy_baseline(problem).solution
    free = np.array(
        sorted(data.draw(st.sets(st.integers(0, problem.n_orders - 1), max_size=3))), np.int64
    )
    sub = restrict(problem, free, plan.arc_qty).problem
    atp, cap_units, cap_ships, limits = _residual_from_scratch(problem, free, plan.arc_qty)
    _assert_stock_matches(problem, sub.atp, free, atp)
    assert np.array_equal(sub.location_capacity_units, cap_units)
    assert np.array_equal(sub.location_capacity_shipments, cap_ships)
    assert np.array_equal(sub.limit_bound, limits)


def test_usage_follows_the_improved_plans() -> None:
    # improve_neighbourhood derives each new plan's usage from the old one's; it must equal
    # the usage computed from scratch, and the sub-problems built from it the definition's.
    problem = generated(300, 10, 80, seed=2)
    plan = greedy_baseline(problem).solution
    groups = list(
        neighbourhoods(
            problem,
            coupling_rows(problem),
            np.arange(problem.n_orders),
            plan,
            np.zeros(coupling_rows(problem).n_unit),
            np.zeros(coupling_rows(problem).n_ship),
            size=20,
        )
    )
    gains = 0
    for group in groups[:12]:
        plan, gain = improve_neighbourhood(problem, plan, group)
        gains += gain > 0
        derived = _restrict._USAGE[problem]
        assert derived.arc_qty is plan.arc_qty
        _restrict._USAGE.pop(problem)
        fresh = plan_usage(problem, plan.arc_qty)
        for name in ("stock", "units", "pair_units", "ships", "limits"):
            assert np.allclose(getattr(derived, name), getattr(fresh, name)), name
        free = groups[-1]
        sub = restrict(problem, free, plan.arc_qty).problem
        expected = _residual_from_scratch(problem, free, plan.arc_qty)[0]
        _assert_stock_matches(problem, sub.atp, free, expected)
    assert gains > 0  # the derivation was exercised


def _fractional_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every MILP "stop at its time limit" holding half of each column: a point that
    rounds to more units than a line has, at a lower objective than any plan."""
    from allocator.solvers import _lp

    def cut_short(self, integer, **_):  # type: ignore[no-untyped-def]
        x = np.full(self._n_cols, 0.5)
        return _lp.LpResult("time_limit", -1e9, -math.inf, x, None)

    monkeypatch.setattr(_lp.HighsHandle, "solve_mip", cut_short)


def test_a_milp_cut_short_on_a_point_that_is_no_plan_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from allocator.plan import check_feasible
    from allocator.solvers._lns import improve_with_patterns
    from allocator.solvers._lp import is_plan, solve_model
    from allocator.solvers.decompose import solve_decomposed
    from allocator.solvers.exact import build_milp, milp_values

    problem = generated(150, 8, 60, seed=4)
    res = solve_decomposed(problem, rescue_passes=0, pattern_passes=0, lns_passes=0)
    plan = res.solution
    model = build_milp(problem)
    assert is_plan(model, milp_values(problem, model, plan))
    assert not is_plan(model, np.full(model.n_vars, 0.5))
    _fractional_result(monkeypatch)
    assert solve_model(model, milp_values(problem, model, plan)).x is None
    orders = np.arange(40)
    again, gain = improve_neighbourhood(problem, plan, orders)
    assert gain == 0.0
    assert again is plan
    coupling = coupling_rows(problem)
    pool = patterns_of_solution(problem, plan, np.arange(problem.n_orders))
    again, gain = improve_with_patterns(
        problem, coupling, pool, pattern_cost(problem, pool, None), plan, orders
    )
    assert gain == 0.0
    assert again is plan
    assert not check_feasible(problem, again)


def test_units_off_a_vertex_are_moved_to_an_integral_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # HiGHS may return an incumbent whose (continuous) units are not at a vertex; rounding
    # them shipped 1 + 1 + 1 units of a 2-unit line at 100,000 orders.
    from allocator.solvers import _lp
    from allocator.solvers.exact import build_milp, milp_values

    problem = generated(150, 8, 60, seed=4)
    plan = greedy_baseline(problem).solution
    model = build_milp(problem)
    ox, oy, ob, _ = model.offsets
    exact = milp_values(problem, model, plan)
    # A third of every shipped unit moved to backorder: feasible, units fractional.
    shipped = np.bincount(
        problem.arc_line[model.x_arcs], weights=exact[ox:oy], minlength=problem.n_lines
    )
    # Lines that may wait in part: a backorder column, an order neither ship-complete nor
    # forbidden to wait.
    order = problem.line_order[model.b_lines]
    partial = problem.order_allow_backorder[order] & ~problem.order_ship_complete[order]
    lines = model.b_lines[partial]
    off = exact.copy()
    off[ox:oy] *= np.where(np.isin(problem.arc_line[model.x_arcs], lines), 2.0 / 3.0, 1.0)
    off[ob + np.flatnonzero(partial)] += shipped[lines] / 3.0
    assert _lp.is_plan(model, off)
    assert np.abs(off[ox:oy] - np.rint(off[ox:oy])).max() > 0.1
    original = _lp.HighsHandle.solve_mip
    calls = []

    def first_off_vertex(self, integer, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            return _lp.LpResult("time_limit", float(model.objective @ off), -math.inf, off, None)
        return original(self, integer, **kw)

    monkeypatch.setattr(_lp.HighsHandle, "solve_mip", first_off_vertex)
    res = _lp.solve_model(model, exact)
    assert res.x is not None
    assert np.abs(res.x[ox:oy] - np.rint(res.x[ox:oy])).max() <= 1e-6
    assert _lp.is_plan(model, res.x)
    assert res.objective <= model.objective @ off + 1e-6
    integer = np.flatnonzero(model.integer)
    assert np.array_equal(np.rint(res.x[integer]), np.rint(off[integer]))
