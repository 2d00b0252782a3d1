"""Property tests: plans obey every rule kind, and the optimiser never costs more than a greedy
policy under the same rules and objective."""

from __future__ import annotations

import math

from hypothesis import given, settings
from rules_oracle import violations

from allocator import compile_problem
from allocator.plan import Plan, Status, check_feasible, evaluate
from allocator.policies import run_greedy
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
