"""Warm starts: yesterday's assignments matched onto tonight's problem, whatever they hold.

A nightly job hands over whatever yesterday's plan said: orders that have shipped since, lines
that changed, locations closed, more units than a line now asks for or a location now holds.
The match keeps what still fits and the starting plan is always feasible.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solvers_support import generated

from allocator.plan import check_feasible, evaluate
from allocator.problem import Problem
from allocator.solvers._warm import prepare_warm_start, warm_solution
from allocator.solvers.greedy import greedy_baseline
from allocator.solvers.lagrangian import coupling_rows

PROBLEM: Problem = generated(80, 6, 30, seed=4)
#: A plan for the problem, as its assignments table (order_id, line_id, sku, location_id, qty).
BASE = (
    pl.DataFrame(
        {
            "order_id": PROBLEM.order_ids[PROBLEM.line_order[PROBLEM.arc_line]].astype(str),
            "line_id": PROBLEM.line_ids[PROBLEM.arc_line].astype(str),
            "location_id": PROBLEM.location_ids[PROBLEM.arc_location].astype(str),
            "qty": greedy_baseline(PROBLEM).solution.arc_qty,
        }
    )
    .filter(pl.col("qty") > 0)
    .with_columns(pl.col("qty").cast(pl.Int64))
)


def _line_units(problem: Problem, arc_qty: np.ndarray) -> np.ndarray:
    return np.bincount(problem.arc_line, weights=arc_qty, minlength=problem.n_lines)


def test_a_plan_of_the_same_problem_is_matched_whole_and_kept() -> None:
    warm = prepare_warm_start(PROBLEM, BASE)
    greedy = greedy_baseline(PROBLEM).solution
    assert np.array_equal(warm.arc_qty, greedy.arc_qty)
    order_units = np.bincount(
        PROBLEM.line_order[PROBLEM.arc_line], weights=greedy.arc_qty, minlength=PROBLEM.n_orders
    )
    assert np.array_equal(warm.had_plan, order_units > 0)
    start = warm_solution(PROBLEM, coupling_rows(PROBLEM), warm)
    assert check_feasible(PROBLEM, start) == []
    # Nothing had to move: every previous unit is still where it was.
    assert np.all(start.arc_qty >= greedy.arc_qty)
    assert evaluate(PROBLEM, start).total <= evaluate(PROBLEM, greedy).total + 1e-6


def test_unknown_rows_are_ignored_and_oversized_ones_trimmed() -> None:
    first = BASE.row(0, named=True)
    extra = pl.DataFrame(
        {
            "order_id": ["SHIPPED-LONG-AGO", first["order_id"], first["order_id"]],
            "line_id": ["1", "no-such-line", first["line_id"]],
            "location_id": [first["location_id"], first["location_id"], "CLOSED"],
            "qty": [3, 2, 5],
        },
        schema=BASE.schema,
    )
    bloated = BASE.with_columns(pl.col("qty") * 50)  # more than any line asks for
    warm = prepare_warm_start(PROBLEM, pl.concat([bloated, extra]))
    assert np.all(warm.arc_qty <= PROBLEM.arc_cap)
    assert np.all(_line_units(PROBLEM, warm.arc_qty) <= PROBLEM.line_qty)
    known = set(PROBLEM.order_ids.astype(str).tolist())
    assert (
        int(warm.had_plan.sum())
        == BASE.filter(pl.col("order_id").is_in(known))["order_id"].n_unique()
    )
    start = warm_solution(PROBLEM, coupling_rows(PROBLEM), warm)
    assert check_feasible(PROBLEM, start) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keep=st.lists(st.booleans(), min_size=len(BASE), max_size=len(BASE)),
    scale=st.lists(st.integers(0, 4), min_size=len(BASE), max_size=len(BASE)),
    shift=st.integers(0, PROBLEM.n_locations - 1),
)
def test_any_previous_plan_gives_a_feasible_start(
    keep: list[bool], scale: list[int], shift: int
) -> None:
    # Yesterday's plan, mangled: rows dropped, quantities scaled (0 to 4 times), locations moved
    # (to a location that may not stock the SKU, or may not serve the order).
    locations = PROBLEM.location_ids.astype(str)
    index = {loc: i for i, loc in enumerate(locations.tolist())}
    moved = [locations[(index[loc] + shift) % len(locations)] for loc in BASE["location_id"]]
    previous = (
        BASE.with_columns(
            pl.Series("location_id", moved),
            (pl.col("qty") * pl.Series(scale)).alias("qty"),
        )
        .filter(pl.Series(keep))
        .filter(pl.col("qty") > 0)
    )
    warm = prepare_warm_start(PROBLEM, previous)
    assert np.all((warm.arc_qty >= 0) & (warm.arc_qty <= PROBLEM.arc_cap))
    assert np.all(_line_units(PROBLEM, warm.arc_qty) <= PROBLEM.line_qty)
    extra = warm.pair_extra(PROBLEM, 7.0)
    assert extra is not None
    start = warm_solution(PROBLEM, coupling_rows(PROBLEM), warm, pair_extra=extra)
    assert check_feasible(PROBLEM, start) == []
    # The penalty falls only on parcels new to orders that had a plan.
    new = warm.had_plan[PROBLEM.pair_order] & ~warm.pair_previous
    assert np.array_equal(extra > 0, new)
