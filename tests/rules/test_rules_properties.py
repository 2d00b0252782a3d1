"""Property tests: plans obey every rule kind, and the optimiser never costs more than a greedy
policy under the same rules and objective."""

from __future__ import annotations

import math

from hypothesis import given, settings
from rules_oracle import violations

from allocator import compile_problem
from allocator.plan import Plan, Status, check_feasible, evaluate
from allocator.policies import run_greedy
from allocator.rules import PEER_POLICIES, load_rules
from allocator.solvers.exact import solve_exact
from allocator.testing import instances, rule_sets


@settings(max_examples=60)
@given(instances(rules=rule_sets(greedy=True)))
def test_plans_obey_the_rules_and_the_optimiser_is_never_dearer(instance) -> None:  # type: ignore[no-untyped-def]
    network, orders, rules = instance
    problem = compile_problem(network, orders, rules)
    greedy = run_greedy(problem)
    assert check_feasible(problem, greedy.solution) == []
    assert violations(network, orders, rules, greedy.assignments) == []
    exact = solve_exact(problem)
    assert exact.solution is not None
    assert exact.optimal
    assert check_feasible(problem, exact.solution) == []
    optimal = Plan(problem, exact.solution, Status.OPTIMAL, "opt")
    assert violations(network, orders, rules, optimal.assignments) == []
    g, o = evaluate(problem, greedy.solution).total, evaluate(problem, exact.solution).total
    assert o <= g + 1e-6 * max(1.0, abs(g)), (o, g)
    assert math.isfinite(o)


@settings(max_examples=30)
@given(instances(rules=rule_sets(greedy=False, strategy="greedy")))
def test_baseline_greedy_obeys_the_rules(instance) -> None:  # type: ignore[no-untyped-def]
    network, orders, rules = instance
    problem = compile_problem(network, orders, rules)
    plan = run_greedy(problem)
    assert check_feasible(problem, plan.solution) == []
    assert violations(network, orders, rules, plan.assignments) == []


@settings(max_examples=15)
@given(instances(rules=rule_sets(greedy=False)))
def test_the_optimiser_is_never_dearer_than_any_peer_policy_under_the_same_rules(
    instance,  # type: ignore[no-untyped-def]
) -> None:
    network, orders, base = instance
    for name in PEER_POLICIES:
        peer = load_rules(name)
        rules = base.model_copy(
            update={
                "strategy": "greedy",
                "greedy": peer.greedy,
                "constraints": base.constraints.model_copy(
                    update={
                        "max_locations_per_order": base.constraints.max_locations_per_order
                        or peer.constraints.max_locations_per_order
                    }
                ),
            }
        )
        problem = compile_problem(network, orders, rules)
        greedy = run_greedy(problem)
        assert check_feasible(problem, greedy.solution) == [], name
        assert violations(network, orders, rules, greedy.assignments) == [], name
        exact = solve_exact(problem)
        assert exact.solution is not None
        assert exact.optimal
        g, o = evaluate(problem, greedy.solution).total, evaluate(problem, exact.solution).total
        assert o <= g + 1e-6 * max(1.0, abs(g)), (name, o, g)


def test_the_example_of_every_rule_kind_compiles_and_is_obeyed() -> None:
    from pathlib import Path

    from allocator.demo_data import default_instance
    from allocator.model import Network, Orders

    path = Path(__file__).parents[2] / "rules" / "examples" / "every_rule_kind.toml"
    rules = load_rules(path)
    inst = default_instance()
    network = Network.from_frames(inst.locations, inst.stock)
    every = Orders.from_frame(inst.orders)
    orders = every.select(every.order_ids()[:80])
    for strategy in ("greedy", "optimize"):
        problem = compile_problem(network, orders, rules.model_copy(update={"strategy": strategy}))
        assert problem.n_limits > 0
        plan = run_greedy(problem) if strategy == "greedy" else None
        if plan is None:
            exact = solve_exact(problem, time_limit=20)
            assert exact.solution is not None
            plan = Plan(problem, exact.solution, Status.TIME_LIMIT, "opt")
        assert check_feasible(problem, plan.solution) == []
        assert violations(network, orders, rules, plan.assignments) == []
