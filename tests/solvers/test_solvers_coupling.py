"""The coupling rows: every arc counts in exactly the rows the model says, once per listing."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from solvers_support import generated

from allocator import compile_problem
from allocator.problem import Problem
from allocator.solvers.lagrangian import coupling_rows
from allocator.testing import instances, rule_sets


def reference_rows(problem: Problem) -> np.ndarray:
    """The (arcs x rows) incidence, arc by arc, in the row order ``coupling_rows`` documents."""
    p = problem
    n_sku = p.atp.shape[1]
    key = p.arc_location * n_sku + p.line_sku[p.arc_line]
    demand: dict[int, int] = {}
    for a in range(p.n_arcs):
        demand[int(key[a])] = demand.get(int(key[a]), 0) + int(p.arc_cap[a])
    binding = sorted(k for k, d in demand.items() if d > p.atp.ravel()[k])
    loc_units = np.bincount(p.arc_location, weights=p.arc_cap, minlength=p.n_locations)
    capped = [
        loc
        for loc in range(p.n_locations)
        if np.isfinite(p.location_capacity_units[loc])
        and loc_units[loc] > p.location_capacity_units[loc]
    ]
    n_rows = len(binding) + len(capped) + p.n_limits
    dense = np.zeros((p.n_arcs, n_rows))
    for a in range(p.n_arcs):
        if int(key[a]) in binding:
            dense[a, binding.index(int(key[a]))] += 1
        if int(p.arc_location[a]) in capped:
            dense[a, len(binding) + capped.index(int(p.arc_location[a]))] += 1
    for i in range(p.n_limits):
        for a in p.limit_arcs[p.limit_start[i] : p.limit_start[i + 1]]:
            dense[a, len(binding) + len(capped) + i] += 1
    return dense


def check(problem: Problem) -> None:
    matrix = coupling_rows(problem).arc_rows
    assert matrix.has_canonical_format
    np.testing.assert_array_equal(matrix.toarray(), reference_rows(problem))


@given(instances(rules=rule_sets(strategy="optimize"), max_orders=6))
@settings(max_examples=40)
def test_rows_of_every_arc_under_rules(instance) -> None:  # type: ignore[no-untyped-def]
    network, orders, rules = instance
    check(compile_problem(network, orders, rules))


def test_rows_where_side_limits_overlap() -> None:
    """An arc in several limits counts in each; listed twice in one, it counts twice."""
    problem = generated(40, 5, 20, seed=3)
    tight = np.maximum(problem.atp // 2, 0)
    n = problem.n_arcs
    # Limit 0: every third arc; limit 1: every arc (so arcs appear in two limits); limit 2:
    # arc 1 twice, then arcs in descending order.
    lists = [np.arange(0, n, 3), np.arange(n), np.r_[1, np.arange(n - 1, 0, -1)]]
    problem = dataclasses.replace(
        problem,
        atp=tight,
        limit_start=np.r_[0, np.cumsum([len(x) for x in lists])].astype(np.int64),
        limit_arcs=np.concatenate(lists).astype(np.int64),
        limit_bound=np.array([5.0, 9.0, 2.0]),
    )
    check(problem)
    assert coupling_rows(problem).arc_rows[1].sum() >= 4  # limits 1 and 2, the latter twice


def test_rows_of_a_generated_backlog() -> None:
    check(generated(200, 10, 80, seed=1))
