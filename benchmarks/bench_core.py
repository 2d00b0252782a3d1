"""Compile and solve generated instances through the public API (issue 2's core benchmarks).

* compiling 1k and 10k orders into the array form;
* solving 1k orders to proven optimality and 10k orders within a time limit;
* one order against 50 locations (the real-time shape, through the batch API).
"""

from __future__ import annotations

from typing import Any

import pytest

from allocator import Network, Order, OrderLine, Orders, RuleSet, allocate, compile_problem, solve
from allocator.generate import generate


def _instance(
    n_orders: int, n_locations: int, n_skus: int, seed: int = 1
) -> tuple[Network, Orders]:
    inst = generate(n_orders, n_locations, n_skus, seed=seed)
    return Network.from_frames(inst.locations, inst.stock), Orders.from_frame(inst.orders)


@pytest.fixture(scope="module")
def small() -> tuple[Network, Orders]:
    return _instance(1_000, 20, 500)


@pytest.fixture(scope="module")
def medium() -> tuple[Network, Orders]:
    return _instance(10_000, 50, 5_000)


def test_compile_1k(benchmark: Any, small: tuple[Network, Orders]) -> None:
    problem = benchmark(compile_problem, *small)
    benchmark.extra_info.update(orders=problem.n_orders, pairs=problem.n_pairs, arcs=problem.n_arcs)
    assert problem.n_orders == 1_000


def test_compile_10k(benchmark: Any, medium: tuple[Network, Orders]) -> None:
    problem = benchmark(compile_problem, *medium)
    benchmark.extra_info.update(orders=problem.n_orders, pairs=problem.n_pairs, arcs=problem.n_arcs)
    assert problem.n_orders == 10_000


def test_solve_1k(benchmark: Any, small: tuple[Network, Orders]) -> None:
    problem = compile_problem(*small)
    plan = benchmark.pedantic(solve, args=(problem,), rounds=1, iterations=1)
    s = plan.summary()
    benchmark.extra_info.update(status=s.status, cost=s.cost.total, bound=s.lower_bound, gap=s.gap)
    assert plan.is_feasible()
    assert s.status == "optimal"


def test_solve_10k(benchmark: Any, medium: tuple[Network, Orders]) -> None:
    problem = compile_problem(*medium)
    plan = benchmark.pedantic(
        solve, args=(problem,), kwargs={"time_limit": 60.0}, rounds=1, iterations=1
    )
    s = plan.summary()
    benchmark.extra_info.update(status=s.status, cost=s.cost.total, bound=s.lower_bound, gap=s.gap)
    assert plan.is_feasible()
    assert s.lower_bound is not None


def test_one_order_50_locations(benchmark: Any) -> None:
    network, _ = _instance(10, 50, 200)
    skus = network.stock["sku"].unique().sort().to_list()[:3]
    order = Order(
        order_id="rt-1",
        lat=41.88,
        lon=-87.63,
        country="US",
        lines=tuple(OrderLine(sku=s, qty=1) for s in skus),
    )
    plan = benchmark(allocate, network, order, rules=RuleSet())
    assert plan.status == "optimal"
