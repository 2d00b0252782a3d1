"""The exact optimiser against brute force, and plan feasibility."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings

from allocator import Network, Orders, RuleSet, allocate, compile_problem, solve
from allocator.io.fctp import read_fctp
from allocator.plan import check_feasible
from allocator.rules import Constraints, Objective
from allocator.solvers.exact import solve_exact
from tests.helpers import brute_force, is_close, small_instances

FCTP = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "fctp"


@given(small_instances())
def test_exact_matches_brute_force(instance: tuple[Network, Orders]) -> None:
    network, orders = instance
    problem = compile_problem(network, orders)
    plan = solve(problem)
    best_cost, _ = brute_force(problem)
    assert plan.status == "optimal"
    assert not check_feasible(problem, plan.solution)
    assert is_close(plan.cost.total, best_cost)
    assert plan.lower_bound is not None
    assert plan.lower_bound <= best_cost + 1e-6


@given(small_instances(max_lines=3))
@settings(max_examples=40)
def test_split_cap_and_penalties_match_brute_force(instance: tuple[Network, Orders]) -> None:
    network, orders = instance
    rules = RuleSet(
        constraints=Constraints(max_locations_per_order=1),
        objective=Objective(split_penalty=3.0, backorder_penalty=9.0, rejection_penalty=11.0),
    )
    problem = compile_problem(network, orders, rules)
    plan = solve(problem)
    best_cost, _ = brute_force(problem)
    assert is_close(plan.cost.total, best_cost)


def test_exact_prefers_one_parcel_over_cheaper_units() -> None:
    locations = pl.DataFrame(
        {"location_id": ["near", "far"], "lat": [40.7, 34.0], "lon": [-74.0, -118.2]}
    )
    stock = pl.DataFrame(
        {
            "location_id": ["near", "near", "far", "far"],
            "sku": ["a", "b", "a", "b"],
            "on_hand": [1, 0, 1, 1],
        }
    )
    orders = pl.DataFrame(
        {
            "order_id": ["o", "o"],
            "sku": ["a", "b"],
            "qty": [1, 1],
            "lat": [40.7, 40.7],
            "lon": [-74.0, -74.0],
        }
    )
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(orders))
    # b is only at "far", so one parcel from "far" beats two parcels.
    assert plan.assignments["location_id"].to_list() == ["far", "far"]
    assert plan.summary().shipments == 1


def test_ship_complete_waits_whole_when_no_location_covers() -> None:
    locations = pl.DataFrame({"location_id": ["A", "B"]})
    stock = pl.DataFrame({"location_id": ["A", "B"], "sku": ["x", "y"], "on_hand": [5, 5]})
    orders = pl.DataFrame(
        {"order_id": ["o", "o"], "sku": ["x", "y"], "qty": [1, 1], "ship_complete": [True, True]}
    )
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(orders))
    assert plan.assignments.height == 0
    assert plan.backorders["qty"].sum() == 2
    no_bo = orders.with_columns(pl.lit(False).alias("allow_backorder"))
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(no_bo))
    assert plan.rejections["order_id"].to_list() == ["o"]


def test_priority_wins_scarce_stock() -> None:
    locations = pl.DataFrame({"location_id": ["A"]})
    stock = pl.DataFrame({"location_id": ["A"], "sku": ["x"], "on_hand": [1]})
    orders = pl.DataFrame(
        {"order_id": ["low", "high"], "sku": ["x", "x"], "qty": [1, 1], "priority": [0, 2]}
    )
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(orders))
    assert plan.assignments["order_id"].to_list() == ["high"]
    assert plan.backorders["order_id"].to_list() == ["low"]


def test_pickup_only_at_its_store_and_free() -> None:
    locations = pl.DataFrame(
        {"location_id": ["W", "S"], "kind": ["warehouse", "store"], "can_pickup": [False, True]}
    )
    stock = pl.DataFrame({"location_id": ["W", "S"], "sku": ["x", "x"], "on_hand": [9, 1]})
    orders = pl.DataFrame(
        {
            "order_id": ["p"],
            "sku": ["x"],
            "qty": [2],
            "fulfillment": ["pickup"],
            "pickup_location_id": ["S"],
        }
    )
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(orders))
    assert plan.assignments.rows() == [("p", "1", "x", "S", 1)]
    assert plan.backorders["qty"].to_list() == [1]
    assert plan.cost.unit == 0
    assert plan.cost.shipment == 0


def test_capacity_in_units_and_shipments() -> None:
    locations = pl.DataFrame(
        {
            "location_id": ["A", "B"],
            "capacity_shipments": [1, None],
            "lat": [40.0, 30.0],
            "lon": [-75.0, -100.0],
        },
        schema_overrides={"capacity_shipments": pl.Int64},
    )
    stock = pl.DataFrame({"location_id": ["A", "B"], "sku": ["x", "x"], "on_hand": [10, 10]})
    orders = pl.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "sku": ["x", "x"],
            "qty": [1, 1],
            "lat": [40.0, 40.0],
            "lon": [-75.0, -75.0],
        }
    )
    plan = allocate(Network.from_frames(locations, stock), Orders.from_frame(orders))
    assert sorted(plan.assignments["location_id"].to_list()) == ["A", "B"]


def test_deterministic() -> None:
    network, orders = read_fctp(FCTP / "N104.FCTP")
    rules = RuleSet(objective=Objective(rejection_penalty=1e4))
    a = allocate(network, orders, rules=rules, seed=3)
    b = allocate(network, orders, rules=rules, seed=3)
    assert a.assignments.equals(b.assignments)


@pytest.mark.slow
def test_fctp_reaches_published_optimum() -> None:
    network, orders = read_fctp(FCTP / "N104.FCTP")
    plan = allocate(network, orders, rules=RuleSet(objective=Objective(rejection_penalty=1e4)))
    assert plan.status == "optimal"
    assert plan.cost.total == pytest.approx(40258, abs=1e-6)
    assert plan.summary().orders_rejected == 0


def test_time_limit_returns_plan_with_bound() -> None:
    network, orders = read_fctp(FCTP / "N204.FCTP")
    rules = RuleSet(objective=Objective(rejection_penalty=1e4))
    plan = allocate(network, orders, rules=rules, time_limit=0.3)
    assert plan.is_feasible()
    assert plan.lower_bound is not None
    assert plan.lower_bound <= 54502 + 1e-6 <= plan.cost.total + 1e-6
    assert plan.status in ("time_limit", "optimal")


def test_exact_result_bound_never_above_optimum_on_fctp() -> None:
    network, orders = read_fctp(FCTP / "N104.FCTP")
    problem = compile_problem(network, orders, RuleSet(objective=Objective(rejection_penalty=1e4)))
    result = solve_exact(problem, time_limit=0.5)
    assert result.lower_bound <= 40258 + 1e-6


def test_fractional_units_are_repaired_to_integral_vertex() -> None:
    import numpy as np
    from ortools.linear_solver.python import model_builder_helper as mbh

    from allocator.solvers.exact import _integral_units, build_milp

    locations = pl.DataFrame(
        {"location_id": ["A", "B"], "lat": [40.0, 41.0], "lon": [-75.0, -75.0]}
    )
    stock = pl.DataFrame({"location_id": ["A", "B"], "sku": ["x", "x"], "on_hand": [3, 3]})
    orders = pl.DataFrame(
        {"order_id": ["o"], "sku": ["x"], "qty": [3], "lat": [40.0], "lon": [-75.0]}
    )
    problem = compile_problem(Network.from_frames(locations, stock), Orders.from_frame(orders))
    model = build_milp(problem)
    assert not model.integer[: len(model.x_arcs)].any()  # units are continuous (TU rows)
    ox, oy, ob, _ = model.offsets
    values = np.zeros(model.n_vars)
    values[ox:oy] = [1.5, 1.5]  # a feasible but fractional split over both open locations
    values[oy:ob] = 1.0
    builder = mbh.ModelBuilderHelper()
    builder.fill_model_from_sparse_data(
        model.lower, model.upper, model.objective, model.row_lower, model.row_upper, model.matrix
    )
    for index in np.flatnonzero(model.integer).tolist():
        builder.set_var_integrality(index, True)
    repaired = _integral_units(builder, model, values, "scip")
    assert np.allclose(repaired[ox:oy], np.rint(repaired[ox:oy]))
    assert repaired[ox:oy].sum() == 3
    assert model.objective @ repaired <= model.objective @ values + 1e-9


def test_native_prints_during_a_solve_are_silenced(capfd: pytest.CaptureFixture[str]) -> None:
    # HiGHS prints some MIP diagnostics with printf, to C's stdout (file descriptor 1) whatever
    # Python's sys.stdout is; under pytest's capture that is another descriptor.
    import ctypes

    from allocator.solvers.exact import _quiet_native_stdout

    libc = ctypes.CDLL(None)
    with _quiet_native_stdout():
        libc.printf(b"native diagnostic\n")
    libc.fflush(None)
    assert "native diagnostic" not in capfd.readouterr().out


def test_overlapping_solves_in_threads_leave_stdout_restored(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Two solves overlapping in threads (HiGHS releases the GIL; a service may allocate on
    # several threads): each restoring the descriptor it had saved left stdout on /dev/null
    # for good when the second saved it after the first had redirected it.
    import threading

    from allocator.solvers.exact import _quiet_native_stdout

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with _quiet_native_stdout():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with _quiet_native_stdout():
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(1, b"still visible\n")  # to the descriptor, as native code writes
    assert "still visible" in capfd.readouterr().out
