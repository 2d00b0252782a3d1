"""The optimiser in the simulator: exact per order in real time, never above a greedy policy
when every policy faces the same single decision problem, priced on one scale."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest
from simulate_support import generated

from allocator import Order, OrderLine, RuleSet, allocate, compile_problem
from allocator.plan import check_feasible, evaluate
from allocator.realtime import source
from allocator.rules import PEER_POLICIES
from allocator.simulate import (
    DecisionContext,
    ForwardLookingPolicy,
    SimulationConfig,
    compare,
    prepare_history,
    simulate,
    source_sequentially,
)
from allocator.simulate._pricing import Pricer
from allocator.solvers.exact import solve_exact

GREEDY = ["greedy", *PEER_POLICIES]


def test_sequential_sourcing_is_optimal_for_each_order_alone() -> None:
    network, orders = generated(n_orders=40, n_locations=8, n_skus=25, seed=3)
    for order_id in orders.order_ids()[:25]:
        problem = compile_problem(network, orders.select([order_id]))
        mine = source_sequentially(problem)
        assert not check_feasible(problem, mine.solution)
        exact = solve_exact(problem)
        assert exact.solution is not None
        assert evaluate(problem, mine.solution).total == pytest.approx(
            evaluate(problem, exact.solution).total, abs=1e-6
        )


def _order(lines: pl.DataFrame) -> Order:
    head = lines.row(0, named=True)
    return Order(
        order_id=head["order_id"],
        lat=head["lat"],
        lon=head["lon"],
        country=head["country"],
        channel=head["channel"],
        priority=head["priority"],
        ship_complete=head["ship_complete"],
        allow_backorder=head["allow_backorder"],
        fulfillment=head["fulfillment"],
        pickup_location_id=head["pickup_location_id"],
        lines=tuple(
            OrderLine(sku=r["sku"], qty=r["qty"], line_id=r["line_id"])
            for r in lines.iter_rows(named=True)
        ),
    )


def test_sequential_sourcing_agrees_with_the_realtime_module() -> None:
    network, orders = generated(n_orders=60, n_locations=10, n_skus=25, seed=5)
    for order_id in orders.order_ids()[:40]:
        one = orders.select([order_id])
        problem = compile_problem(network, one)
        mine = evaluate(problem, source_sequentially(problem).solution).total
        theirs = source(_order(one.lines), network).cost.total
        assert mine == pytest.approx(theirs, abs=1e-6), order_id


def _offline(seed: int) -> tuple[dict[str, float], float]:
    network, orders = generated(n_orders=50, n_locations=6, n_skus=20, seed=seed, days=2)
    comparison = compare(["optimize", *GREEDY], network, orders, ledger=None)
    costs = dict(comparison.kpis.select("policy", "cost_per_order").iter_rows())
    plan = allocate(network, orders, policy="optimize")
    assert plan.status.value == "optimal"
    return costs, plan.cost.total / orders.n_orders


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_offline_optimiser_is_never_above_any_greedy_policy(seed: int) -> None:
    costs, optimum = _offline(seed)
    # The simulator prices the optimiser's plan exactly as the optimiser's objective does...
    assert costs["optimize"] == pytest.approx(optimum, rel=1e-9)
    # ...and every greedy plan is a feasible plan of the same problem, so none is cheaper.
    for name in GREEDY:
        assert costs["optimize"] <= costs[name] + 1e-9, (name, costs)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 11))
def test_offline_optimiser_is_never_above_any_greedy_policy_more_seeds(seed: int) -> None:
    costs, _ = _offline(seed)
    assert all(costs["optimize"] <= costs[name] + 1e-9 for name in GREEDY), costs


def test_the_price_list_is_the_optimisers_objective() -> None:
    network, orders = generated(n_orders=80, n_locations=8, n_skus=30, seed=2)
    config = SimulationConfig()
    history = prepare_history(network, orders, config)
    pricer = Pricer(history, RuleSet())
    problem = compile_problem(network, orders)
    order = np.asarray([history.order_index[str(o)] for o in problem.order_ids[problem.pair_order]])
    price = pricer.pairs(order, problem.pair_location)
    np.testing.assert_allclose(price.unit, problem.pair_unit_cost)
    np.testing.assert_allclose(price.parcel, problem.pair_shipment_cost)
    backorder = pricer.order_backorder[
        [history.order_index[str(o)] for o in problem.order_ids[problem.line_order]]
    ]
    np.testing.assert_allclose(backorder, problem.line_backorder_cost)


def test_forward_looking_prices_scarce_stock_and_weight_zero_is_myopic() -> None:
    network, orders = generated(n_orders=150, n_locations=8, n_skus=30, seed=4, days=4)
    myopic = simulate(network, orders, "optimize", mode="realtime", ledger=None)
    zero = simulate(network, orders, ForwardLookingPolicy(weight=0.0), mode="realtime", ledger=None)
    assert zero.orders.drop("order_id").equals(myopic.orders.drop("order_id"))
    policy = ForwardLookingPolicy()
    history = prepare_history(network, orders, SimulationConfig())
    problem = compile_problem(network, orders)
    context = DecisionContext(sequential=True, now=history.t_start, history=history)
    price = policy.opportunity(problem, context)
    loc = np.zeros(5, np.int64)
    sku = np.zeros(5, np.int64)
    prices = price(loc, sku, np.asarray([1, 2, 3, 10, 100]))
    assert np.all(prices >= 0)
    assert np.all(np.diff(prices) <= 1e-12)  # scarcer stock is never cheaper
    with pytest.raises(ValueError, match="weight"):
        ForwardLookingPolicy(weight=-1.0)


def test_executors_give_the_same_table() -> None:
    network, orders = generated()
    policies = ["optimize", "shopify_default", "forward_looking"]
    serial = compare(policies, network, orders, mode="realtime", ledger=None)
    with ThreadPoolExecutor(2) as pool:
        threaded = compare(policies, network, orders, mode="realtime", ledger=None, executor=pool)
    assert serial.kpis.drop("seconds").equals(threaded.kpis.drop("seconds"))


@pytest.mark.slow
def test_process_pool_and_dask_give_the_same_table() -> None:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    distributed = pytest.importorskip("distributed")
    network, orders = generated()
    policies = ["optimize", "saleor_high_stock", "forward_looking"]
    serial = compare(policies, network, orders, mode="realtime", cancel_rate=0.1)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        pooled = compare(policies, network, orders, mode="realtime", cancel_rate=0.1, executor=pool)
    assert serial.kpis.drop("seconds").equals(pooled.kpis.drop("seconds"))
    with distributed.Client(processes=False, n_workers=2, dashboard_address=":0") as client:
        dasked = compare(
            policies,
            network,
            orders,
            mode="realtime",
            cancel_rate=0.1,
            executor=client.get_executor(),
        )
    assert serial.kpis.drop("seconds").equals(dasked.kpis.drop("seconds"))
