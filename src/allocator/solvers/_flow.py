"""An exact neighbourhood by min-cost flow: every one-unit order re-sourced at once.

An order of one line and one unit ships from exactly one location or from none, so it uses one
unit of one stock row, one unit of its location's unit capacity and one parcel of its location's
shipment capacity, and costs ``unit cost + parcel cost`` there, or its wait / rejection cost.
With every other order fixed, choosing the sources of *all* such orders together is therefore a
transportation problem:

``order -> (location, SKU) stock node -> location node -> sink``, or ``order -> sink`` (not shipped),

with the residual stock on the stock nodes and ``min(units left, parcels left)`` on the location
nodes. OR-Tools' min-cost flow solves it exactly in about a second for 10,000 orders, which makes
it a very large neighbourhood for the plan search: it finds the chains of moves (one order takes
another's unit, which moves to a third location ...) that single-order moves cannot, and on
scarce stock each chain that ships one more unit saves a backorder.

Orders with an arc in a side limit (ring-fencing, exposure caps) stay fixed: a side limit is not
a network row. Costs are scaled to integers (``1e-4`` precision); the caller keeps the new plan
only if its exact cost is lower.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers._columns import empty_cost, plan_from_arc_qty
from allocator.solvers._primal import usage_of
from allocator.solvers.lagrangian import Coupling

__all__ = ["improve_single_units", "single_unit_orders"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Cost units per currency unit in the integer flow problem.
_SCALE = 10_000.0
#: Capacity standing for "unlimited" in the flow problem.
_BIG = 1 << 40


def single_unit_orders(problem: Problem, coupling: Coupling) -> IntArray:
    """Orders of one line and one unit none of whose arcs counts in a side limit."""
    p = problem
    one_line = np.diff(p.order_line_start) == 1
    one_unit = p.order_units == 1
    ok = one_line & one_unit
    limited = coupling.unit_kind == 2
    if limited.any():
        hits = np.asarray(coupling.arc_rows[:, np.flatnonzero(limited)].sum(axis=1)).ravel() > 0
        bad = np.zeros(p.n_orders, bool)
        bad[p.line_order[p.arc_line[hits]]] = True
        ok &= ~bad
    return np.flatnonzero(ok).astype(np.int64)


def improve_single_units(
    problem: Problem,
    coupling: Coupling,
    solution: Solution,
    orders: IntArray,
    *,
    pair_extra: FloatArray | None = None,
) -> Solution:
    """Re-source the one-unit ``orders`` optimally beside the rest of ``solution``.

    Parameters
    ----------
    problem, coupling
        The problem and its coupling rows.
    solution
        A feasible plan.
    orders
        One-unit orders (from :func:`single_unit_orders`).
    pair_extra
        Extra cost per pair (change penalties), added to the parcel cost.

    Returns
    -------
    Solution
        A feasible plan whose cost is optimal over the sources of ``orders`` with every other
        order as in ``solution`` (up to the integer scaling of costs).
    """
    from ortools.graph.python import min_cost_flow

    p = problem
    orders = np.unique(np.asarray(orders, dtype=np.int64))
    if len(orders) == 0:
        return solution
    free = np.zeros(p.n_orders, bool)
    free[orders] = True
    arc_free = free[p.line_order[p.arc_line]]
    fixed_qty = np.where(arc_free, 0, solution.arc_qty).astype(np.int64)
    unit_used, ship_used = usage_of(coupling, p, fixed_qty)
    unit_left = np.maximum(np.floor(coupling.unit_bound - unit_used + 1e-9), 0).astype(np.int64)
    ship_left = np.maximum(np.floor(coupling.ship_bound - ship_used + 1e-9), 0).astype(np.int64)

    arcs = np.flatnonzero(arc_free & (p.arc_cap > 0))
    # The unit rows of each free arc: at most one stock row and one unit-capacity row (side
    # limits are excluded by the choice of orders).
    sub = coupling.arc_rows[arcs].tocoo()
    kind = coupling.unit_kind[sub.col]
    stock_row = np.full(len(arcs), -1, np.int64)
    stock_row[sub.row[kind == 0]] = sub.col[kind == 0]
    loc = p.arc_location[arcs]
    unit_cap_row = np.full(p.n_locations, -1, np.int64)
    capped = coupling.unit_kind == 1
    unit_cap_row[coupling.unit_location[capped]] = np.flatnonzero(capped)
    ship_row_of_loc = np.full(p.n_locations, -1, np.int64)
    ship_row_of_loc[coupling.ship_location] = np.arange(coupling.n_ship)

    # Nodes: the free orders, the stock rows they touch, the locations, one sink.
    n_ord = len(orders)
    order_node = np.searchsorted(orders, p.line_order[p.arc_line[arcs]])
    rows_used = np.unique(stock_row[stock_row >= 0])
    stock_node = n_ord + np.searchsorted(rows_used, np.maximum(stock_row, 0))
    loc_node = n_ord + len(rows_used) + np.arange(p.n_locations)
    sink = n_ord + len(rows_used) + p.n_locations

    cap_loc = np.full(p.n_locations, _BIG, np.int64)
    has_u = unit_cap_row >= 0
    cap_loc[has_u] = np.minimum(cap_loc[has_u], unit_left[unit_cap_row[has_u]])
    has_s = ship_row_of_loc >= 0
    cap_loc[has_s] = np.minimum(cap_loc[has_s], ship_left[ship_row_of_loc[has_s]])

    parcel = p.pair_shipment_cost[p.arc_pair[arcs]]
    if pair_extra is not None:
        parcel = parcel + pair_extra[p.arc_pair[arcs]]
    ship_cost = np.rint((p.arc_unit_cost[arcs] + parcel) * _SCALE).astype(np.int64)
    wait_cost = np.rint(empty_cost(p)[orders] * _SCALE).astype(np.int64)

    through_stock = stock_row >= 0
    tails = [
        order_node,  # order -> its stock node, or straight to its location
        n_ord + np.arange(len(rows_used)),  # stock node -> location
        loc_node,  # location -> sink
        np.arange(n_ord),  # order -> sink: not shipped
    ]
    heads = [
        np.where(through_stock, stock_node, loc_node[loc]),
        loc_node[coupling.unit_location[rows_used]],
        np.full(p.n_locations, sink),
        np.full(n_ord, sink),
    ]
    caps = [
        np.ones(len(arcs), np.int64),
        unit_left[rows_used],
        cap_loc,
        np.ones(n_ord, np.int64),
    ]
    costs = [
        ship_cost,
        np.zeros(len(rows_used), np.int64),
        np.zeros(p.n_locations, np.int64),
        wait_cost,
    ]
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(
        np.concatenate(tails).astype(np.int32),
        np.concatenate(heads).astype(np.int32),
        np.concatenate(caps),
        np.concatenate(costs),
    )
    flow.set_nodes_supplies(
        np.array([*range(n_ord), sink], dtype=np.int32),
        np.array([*([1] * n_ord), -n_ord], dtype=np.int64),
    )
    if flow.solve() != flow.OPTIMAL:
        return solution
    shipped = flow.flows(np.arange(len(arcs), dtype=np.int32)) > 0
    arc_qty = fixed_qty.copy()
    arc_qty[arcs[shipped]] = 1
    return plan_from_arc_qty(p, arc_qty)
