"""The decomposition: feasible plans, certified bounds, determinism, time limits, warm starts."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from solvers_support import generated

from allocator import Network, Orders, compile_problem, solve
from allocator.plan import check_feasible, evaluate
from allocator.solvers._prove import prove
from allocator.solvers.decompose import lagrangian_bound, solve_decomposed
from allocator.solvers.exact import solve_exact
from allocator.solvers.lagrangian import coupling_rows
from allocator.testing import instances, rule_sets
from tests.helpers import brute_force, small_instances


@given(small_instances(max_lines=4))
def test_plans_feasible_and_bound_below_optimum(instance) -> None:  # type: ignore[no-untyped-def]
    network, orders = instance
    problem = compile_problem(network, orders)
    plan = solve(problem, method="decompose")
    assert not check_feasible(problem, plan.solution)
    best, _ = brute_force(problem)
    assert plan.lower_bound is not None
    assert plan.lower_bound <= best + 1e-6
    assert plan.lower_bound <= plan.cost.total + 1e-6
    assert plan.cost.total >= best - 1e-6
    # The same with the prices of large problems (the ascent, no master LP).
    ascent = solve_decomposed(problem, prices="ascent")
    assert not check_feasible(problem, ascent.solution)
    assert ascent.lower_bound <= best + 1e-6
    assert ascent.cost >= best - 1e-6


@given(instances(rules=rule_sets(strategy="optimize"), max_orders=4))
@settings(max_examples=40)
def test_plans_feasible_under_rules(instance) -> None:  # type: ignore[no-untyped-def]
    network, orders, rules = instance
    problem = compile_problem(network, orders, rules)
    plan = solve(problem, method="decompose")
    assert not check_feasible(problem, plan.solution)
    exact = solve_exact(problem, mip_gap=0.0)
    assert exact.optimal
    assert plan.lower_bound is not None
    assert plan.lower_bound <= exact.objective + 1e-6 * max(1.0, abs(exact.objective))


@pytest.fixture(scope="module", params=[0, 1])
def solved_generated(request: pytest.FixtureRequest) -> tuple:  # type: ignore[type-arg]
    """A generated instance, its exact optimum and the decomposition's result."""
    problem = generated(120, 8, 60, seed=request.param)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    return problem, exact, solve_decomposed(problem)


def test_bound_below_exact_optimum_on_generated(solved_generated) -> None:  # type: ignore[no-untyped-def]
    problem, exact, res = solved_generated
    assert not check_feasible(problem, res.solution)
    assert res.lower_bound <= exact.objective + 1e-6 * abs(exact.objective)
    assert res.cost >= exact.objective - 1e-6 * abs(exact.objective)
    # The pattern bound is far above the compact LP bound and close to the optimum.
    assert res.lower_bound >= 0.97 * exact.objective


def test_lagrangian_bound_at_any_prices_is_valid() -> None:
    problem = generated(120, 8, 60, seed=3)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    coupling = coupling_rows(problem)
    rng = np.random.default_rng(0)
    for scale in (0.0, 1.0, 10.0, 100.0):
        unit = rng.random(coupling.n_unit) * scale
        ship = rng.random(coupling.n_ship) * scale
        assert lagrangian_bound(problem, unit, ship) <= exact.objective + 1e-6


def _plans_equal(a, b) -> bool:  # type: ignore[no-untyped-def]
    return (
        np.array_equal(a.arc_qty, b.arc_qty)
        and np.array_equal(a.line_backorder, b.line_backorder)
        and np.array_equal(a.order_rejected, b.order_rejected)
    )


@pytest.fixture(scope="module")
def medium_problem():  # type: ignore[no-untyped-def]
    return generated(400, 12, 200, seed=5)


def test_same_plan_serial_and_process_pool(medium_problem) -> None:  # type: ignore[no-untyped-def]
    serial = solve_decomposed(medium_problem, partition_arcs=800, seed=3)
    assert len(serial.history) > 1
    with ProcessPoolExecutor(2) as pool:
        pooled = solve_decomposed(medium_problem, partition_arcs=800, seed=3, executor=pool)
    assert _plans_equal(serial.solution, pooled.solution)
    assert serial.lower_bound == pooled.lower_bound
    assert not check_feasible(medium_problem, pooled.solution)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize(("processes", "prices"), [(False, "lp"), (True, "lp"), (True, "ascent")])
def test_same_plan_on_dask_local_cluster(medium_problem, processes: bool, prices: str) -> None:  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    serial = solve_decomposed(medium_problem, partition_arcs=800, seed=3, prices=prices)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = solve_decomposed(
            medium_problem,
            partition_arcs=800,
            seed=3,
            executor=client.get_executor(),
            prices=prices,
        )
    assert _plans_equal(serial.solution, on_dask.solution)
    assert serial.lower_bound == on_dask.lower_bound


def test_time_limit_is_honoured() -> None:
    problem = generated(3000, 30, 1500, seed=2)
    limit = 1.5
    t0 = time.perf_counter()
    plan = solve(problem, method="decompose", time_limit=limit)
    elapsed = time.perf_counter() - t0
    assert elapsed <= limit + 2.5
    assert plan.is_feasible()
    assert plan.lower_bound is not None
    assert plan.lower_bound <= plan.cost.total + 1e-6
    assert plan.status.value in ("time_limit", "feasible", "optimal")


def test_plan_info_summary_and_no_output(medium_problem, capfd) -> None:  # type: ignore[no-untyped-def]
    plan = solve(medium_problem, method="decompose")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""  # no progress bar without a terminal, and HiGHS kept quiet
    assert plan.cost.total == pytest.approx(evaluate(medium_problem, plan.solution).total)
    summary = plan.summary()
    assert summary.lower_bound is not None
    assert summary.gap is not None
    assert 0.0 <= summary.gap < 0.05
    assert plan.info["solver"] == "decompose"
    history = plan.info["history"]
    assert isinstance(history, list)
    assert history
    assert all("bound" in h for h in history)


def test_auto_picks_exact_for_small_and_decompose_for_large() -> None:
    small = generated(30, 5, 20, seed=1)
    assert solve(small).info["solver"] in ("scip", "highs")
    large = generated(800, 20, 400, seed=1)
    assert large.n_arcs > 4000
    assert solve(large, time_limit=3).info["solver"] == "decompose"


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_without_time_limit_finishes_at_the_proven_optimum(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches routed to the decomposition end at the exact optimum when no limit is set."""
    import importlib

    alloc = importlib.import_module("allocator.allocate")  # the module, not the function
    problem = generated(120, 8, 60, seed=seed)
    monkeypatch.setattr(alloc, "EXACT_MAX_ARCS", 0)  # force the decomposition route
    exact = solve_exact(problem, mip_gap=0.0)
    assert exact.optimal
    plan = solve(problem)
    assert plan.info["solver"] in ("decompose", "decompose+highs")
    assert plan.status == "optimal"
    assert not check_feasible(problem, plan.solution)
    assert plan.cost.total == pytest.approx(exact.objective, rel=1e-6)
    assert plan.lower_bound is not None
    assert plan.lower_bound <= exact.objective + 1e-6 * abs(exact.objective)
    # With a time limit the decomposition's own result comes back (no exact finish).
    timed = solve(problem, time_limit=30)
    assert timed.info["solver"] == "decompose"
    # Above the size limit of the finish, the decomposition's plan is returned as it is.
    monkeypatch.setattr(alloc, "EXACT_FINISH_MAX_ARCS", 0)
    assert solve(problem).info["solver"] == "decompose"


def _perturbed(seed: int = 7) -> tuple[Network, Orders, Network, Orders]:
    from allocator.generate import generate

    inst = generate(300, 10, 150, seed=seed)
    network = Network.from_frames(inst.locations, inst.stock)
    orders = Orders.from_frame(inst.orders)
    ids = inst.orders["order_id"].unique(maintain_order=True).to_list()
    tonight = inst.orders.filter(~pl.col("order_id").is_in(ids[:50]))
    stock = inst.stock.with_columns((pl.col("on_hand") * 0.8).round().cast(pl.Int64))
    return network, orders, Network.from_frames(inst.locations, stock), Orders.from_frame(tonight)


@pytest.mark.slow
def test_warm_start_and_change_penalty() -> None:
    from allocator import allocate

    net0, orders0, net1, orders1 = _perturbed()
    yesterday = allocate(net0, orders0, method="decompose", time_limit=4)
    free = allocate(net1, orders1, warm_start=yesterday, change_penalty=0.0, time_limit=4)
    sticky = allocate(net1, orders1, warm_start=yesterday, change_penalty=100.0, time_limit=4)
    from_table = allocate(
        net1, orders1, warm_start=yesterday.assignments, change_penalty=100.0, time_limit=4
    )
    for plan in (free, sticky, from_table):
        assert plan.is_feasible()
        assert plan.lower_bound is not None
        assert plan.lower_bound <= plan.cost.total + 1e-6
    assert sticky.info["changes"] <= _changes(yesterday, free)
    assert from_table.info["changes"] == sticky.info["changes"]
    assert sticky.cost.total >= free.cost.total - 1e-6 * free.cost.total
    # The plain bound stays a bound on the plain cost: the free plan cannot beat it.
    assert free.cost.total >= sticky.lower_bound - 1e-6


def _changes(before, after) -> int:  # type: ignore[no-untyped-def]
    old = before.assignments.select("order_id", "location_id").unique()
    new = after.assignments.select("order_id", "location_id").unique()
    had = old["order_id"].unique()
    moved = new.filter(pl.col("order_id").is_in(had)).join(
        old, on=["order_id", "location_id"], how="anti"
    )
    return moved.height


def test_bound_cut_short_is_priced_at_the_last_master_duals() -> None:
    # Column generation stopped by its share of the limit after one round: the bound is the
    # better of the smoothed rounds' and the last master duals' Lagrangian value, and still
    # below the optimum.
    problem = generated(120, 8, 60, seed=0)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    # (Without the groups' bound, which would lift both to the optimum here.)
    short = solve_decomposed(problem, time_limit=3.0, cg_share=1e-3, group_orders=0)
    assert short.stopped_by_time
    assert short.rounds <= 2
    full = solve_decomposed(problem, max_rounds=1, primal=False, group_orders=0)
    assert full.lower_bound < short.lower_bound  # the duals priced as they are did better
    assert short.lower_bound <= exact.objective + 1e-6 * abs(exact.objective)


def test_a_bound_only_run_spends_its_time_on_the_bound() -> None:
    # primal=False (the plain bound of a run with change penalties): no neighbourhood pass may
    # run on the empty plan, and column generation may use the whole limit (it used to stop
    # at half of it and hand the rest to rescue groups around every order of the empty plan).
    problem = generated(600, 12, 200, seed=5)
    res = solve_decomposed(problem, primal=False)
    # Rounds and the groups' bound only: no plan to report.
    assert {h.get("phase") for h in res.history} <= {None, "groups"}
    assert res.solution.arc_qty.sum() == 0
    assert res.rounds > 2
    timed = solve_decomposed(problem, primal=False, time_limit=60.0, cg_share=1e-3)
    assert {h.get("phase") for h in timed.history} <= {None, "groups"}
    assert timed.rounds == res.rounds  # converged, not cut at 0.06 s
    # The same groups first; the time left then goes to larger groups.
    assert timed.lower_bound >= res.lower_bound - 1e-9 * abs(res.lower_bound)


def test_first_master_starts_at_or_below_the_greedy_plan() -> None:
    # The greedy baseline's patterns are in the first master, so its LP cannot be dearer
    # (without them, and without alternatives, this one's first LP is 7,838 against 5,375).
    from allocator.solvers.greedy import greedy_baseline

    problem = generated(400, 10, 120, seed=3)
    greedy = evaluate(problem, greedy_baseline(problem).solution).total
    res = solve_decomposed(problem, max_rounds=1, alternatives=0, pattern_passes=0, lns_passes=0)
    assert res.history[0]["lp"] <= greedy + 1e-6 * greedy


def test_method_is_validated() -> None:
    from allocator.errors import InputError

    problem = generated(30, 5, 20, seed=1)
    with pytest.raises(InputError, match="method"):
        solve(problem, method="fast")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="change_penalty"):
        solve(problem, change_penalty=-1.0)
    plan = solve(problem)
    with pytest.raises(InputError, match="decompose"):
        solve(problem, method="exact", warm_start=plan)


def test_greedy_completion_and_moves_stop_at_their_deadline() -> None:
    # Past the deadline no pass starts: the pending orders wait (or are rejected), the plan
    # stays feasible, and the moves leave the plan as it is.
    from allocator.plan import Solution
    from allocator.solvers._primal import complete_greedy, improve_moves

    problem = generated(300, 10, 120, seed=4)
    coupling = coupling_rows(problem)
    orders = np.arange(problem.n_orders)
    zero_u, zero_s = np.zeros(coupling.n_unit), np.zeros(coupling.n_ship)
    expired = time.perf_counter() - 1.0
    late = complete_greedy(
        problem, coupling, Solution.empty(problem), orders, orders, zero_u, zero_s,
        deadline=expired,
    )  # fmt: skip
    assert check_feasible(problem, late) == []
    assert late.arc_qty.sum() == 0
    on_time = complete_greedy(
        problem, coupling, Solution.empty(problem), orders, orders, zero_u, zero_s
    )
    assert check_feasible(problem, on_time) == []
    assert on_time.arc_qty.sum() > 0
    assert evaluate(problem, on_time).total < evaluate(problem, late).total
    unmoved = improve_moves(problem, coupling, on_time, deadline=expired)
    assert np.array_equal(unmoved.arc_qty, on_time.arc_qty)
    moved = improve_moves(problem, coupling, on_time)
    assert check_feasible(problem, moved) == []
    assert evaluate(problem, moved).total <= evaluate(problem, on_time).total + 1e-9


def test_moves_do_not_start_a_round_expected_to_end_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A round is expected to take MOVE_SECONDS_PER_ORDER per order: with an hour per order and
    # a minute left, no round starts; with a microsecond per order, the same call moves orders.
    import allocator.solvers._primal as primal
    from allocator.solvers.greedy import greedy_baseline

    problem = generated(300, 10, 120, seed=4)
    coupling = coupling_rows(problem)
    start = greedy_baseline(problem).solution  # moves improve it (7,629.75 -> 7,610.75)
    monkeypatch.setattr(primal, "MOVE_SECONDS_PER_ORDER", 3600.0)
    held = primal.improve_moves(problem, coupling, start, deadline=time.perf_counter() + 60)
    assert np.array_equal(held.arc_qty, start.arc_qty)
    monkeypatch.setattr(primal, "MOVE_SECONDS_PER_ORDER", 1e-6)
    moved = primal.improve_moves(problem, coupling, start, deadline=time.perf_counter() + 60)
    assert not np.array_equal(moved.arc_qty, start.arc_qty)
    assert check_feasible(problem, moved) == []
    assert evaluate(problem, moved).total < evaluate(problem, start).total


@pytest.mark.parametrize("ship_complete", [False, True])
def test_greedy_completion_trims_a_pattern_its_own_lines_overfill(ship_complete: bool) -> None:
    # Each arc fits the unit capacity (1) on its own, the order's two lines together do not:
    # the pattern is cut to what fits instead of stalling every pass and waiting whole.
    from allocator.plan import Solution
    from allocator.solvers._primal import complete_greedy

    locations = pl.DataFrame({"location_id": ["A"], "capacity_units": [1]})
    stock = pl.DataFrame({"location_id": ["A", "A"], "sku": ["x", "y"], "on_hand": [5, 5]})
    orders = pl.DataFrame(
        {
            "order_id": ["o", "o"],
            "sku": ["x", "y"],
            "qty": [1, 1],
            "ship_complete": [ship_complete, ship_complete],
        }
    )
    problem = compile_problem(Network.from_frames(locations, stock), Orders.from_frame(orders))
    coupling = coupling_rows(problem)
    assert coupling.n_unit > 0
    zero_u, zero_s = np.zeros(coupling.n_unit), np.zeros(coupling.n_ship)
    plan = complete_greedy(
        problem, coupling, Solution.empty(problem), np.array([0]), np.array([0]), zero_u, zero_s
    )
    assert check_feasible(problem, plan) == []
    assert int(plan.arc_qty.sum()) == (0 if ship_complete else 1)


def test_dive_rounds_the_master_towards_integral(monkeypatch: pytest.MonkeyPatch) -> None:
    from allocator.solvers import decompose

    problem = generated(600, 12, 200, seed=5)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    original = decompose._dive

    def spy(p, coupling, master, x, deadline, **kwargs):  # type: ignore[no-untyped-def]
        before = x.copy()
        after = original(p, coupling, master, x, deadline, **kwargs)
        seen.append((master.pool.all().order.copy(), before, after))
        return after

    monkeypatch.setattr(decompose, "_dive", spy)
    res = solve_decomposed(problem, lns_passes=0, pattern_passes=0)
    assert seen
    order, before, after = seen[0]

    def fractional(x: np.ndarray) -> int:
        xs = np.concatenate([x, np.zeros(len(order) - len(x))])
        return len(np.unique(order[(xs > 1e-6) & (xs < 1 - 1e-6)]))

    assert fractional(before) > 0  # the instance needs rounding
    assert fractional(after) < fractional(before)
    assert not check_feasible(problem, res.solution)
    assert res.lower_bound <= res.cost + 1e-6


def test_prove_from_a_decomposition_plan_reaches_the_exact_optimum(solved_generated) -> None:  # type: ignore[no-untyped-def]
    problem, exact, res = solved_generated
    proof = prove(problem, res.solution, res.cost)
    assert proof.optimal
    assert proof.cost == pytest.approx(exact.objective, rel=1e-6)
    assert proof.bound == pytest.approx(exact.objective, rel=1e-6)
    if proof.solution is None:  # the decomposition's plan was optimal already
        assert res.cost == pytest.approx(exact.objective, rel=1e-6)
    else:
        assert not check_feasible(problem, proof.solution)
        assert evaluate(problem, proof.solution).total == pytest.approx(proof.cost, rel=1e-9)
    # Cut short, the bound stays valid and the incumbent is kept.
    short = prove(problem, res.solution, res.cost, time_limit=0.01)
    assert short.bound <= exact.objective + 1e-6 * abs(exact.objective)
    assert short.cost <= res.cost


def test_rescue_group_brings_in_the_order_holding_the_stock() -> None:
    # "sc" (ship-complete, x and y) can only be covered at A; "h" holds A's one x although B
    # has one too. Alone, neither order can do better; re-sourced together, h moves to B and
    # sc ships from A.
    from allocator.plan import Solution
    from allocator.solvers._lns import improve_neighbourhood, rescue_neighbourhoods

    locations = pl.DataFrame({"location_id": ["A", "B"]})
    stock = pl.DataFrame(
        {"location_id": ["A", "A", "B"], "sku": ["x", "y", "x"], "on_hand": [1, 1, 1]}
    )
    orders = pl.DataFrame(
        {
            "order_id": ["sc", "sc", "h"],
            "sku": ["x", "y", "x"],
            "qty": [1, 1, 1],
            "ship_complete": [True, True, False],
        }
    )
    costs = pl.DataFrame(
        {
            "order_id": ["sc", "sc", "h", "h"],
            "location_id": ["A", "B", "A", "B"],
            "unit_cost": [1.0, 1.0, 1.0, 2.0],
            "shipment_cost": [5.0, 5.0, 5.0, 6.0],
        }
    )
    problem = compile_problem(
        Network.from_frames(locations, stock, costs=costs), Orders.from_frame(orders)
    )
    sc, h = (problem.order_ids.tolist().index(name) for name in ("sc", "h"))
    # The plan: h ships x from A, sc waits whole.
    arc_qty = np.zeros(problem.n_arcs, np.int64)
    h_at_a = [
        a
        for a in range(problem.n_arcs)
        if problem.line_order[problem.arc_line[a]] == h
        and problem.location_ids[problem.arc_location[a]] == "A"
    ]
    arc_qty[h_at_a] = 1
    backorder = np.where(problem.line_order == sc, problem.line_qty, 0).astype(np.int64)
    plan = Solution(arc_qty, backorder, np.zeros(problem.n_orders, bool))
    assert check_feasible(problem, plan) == []
    before = evaluate(problem, plan).total

    groups = list(rescue_neighbourhoods(problem, lambda: plan))
    assert [g.tolist() for g in groups] == [sorted([sc, h])]
    for alone in ([sc], [h]):
        _, gain = improve_neighbourhood(problem, plan, np.array(alone))
        assert gain == 0.0
    better, gain = improve_neighbourhood(problem, plan, groups[0])
    assert gain > 0
    assert check_feasible(problem, better) == []
    assert evaluate(problem, better).total == pytest.approx(before - gain)
    assert better.line_backorder.sum() == 0
