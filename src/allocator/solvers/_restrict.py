"""Sub-problems: some orders free, the rest fixed, as a :class:`~allocator.problem.Problem`.

Fix-and-solve needs the sourcing model of a subset of orders against what the fixed orders leave:
the residual stock, capacities and side limits. :func:`restrict` builds it as an ordinary
:class:`~allocator.problem.Problem` (so :func:`~allocator.solvers.exact.build_milp` and
:func:`~allocator.solvers.exact.solve_exact` apply unchanged) plus the maps back to the full
problem's arcs, pairs, lines and orders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.plan import Solution
from allocator.problem import Problem

__all__ = ["Restricted", "restrict", "sub_problem"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _offsets(group: IntArray, n: int) -> IntArray:
    return np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n))]).astype(np.int64)


def _expand(starts: IntArray, stops: IntArray) -> IntArray:
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    out: IntArray = (np.arange(total, dtype=np.int64) + offsets).astype(np.int64)
    return out


@dataclass(frozen=True, eq=False)
class Restricted:
    """A sub-problem and the maps from its rows to the full problem's."""

    problem: Problem
    orders: IntArray
    lines: IntArray
    pairs: IntArray
    arcs: IntArray

    def lift(self, full: Problem, sub: Solution, base: Solution) -> Solution:
        """The full solution: ``base`` outside the free orders, ``sub`` inside them."""
        arc_qty = base.arc_qty.copy()
        free_line = np.zeros(full.n_lines, bool)
        free_line[self.lines] = True
        arc_qty[free_line[full.arc_line]] = 0
        arc_qty[self.arcs] = sub.arc_qty
        backorder = base.line_backorder.copy()
        backorder[self.lines] = sub.line_backorder
        rejected = base.order_rejected.copy()
        rejected[self.orders] = sub.order_rejected
        return Solution(arc_qty, backorder, rejected)


def restrict(
    problem: Problem,
    orders: IntArray,
    fixed_arc_qty: IntArray,
    *,
    pair_open: BoolArray | None = None,
    pair_extra_cost: FloatArray | None = None,
) -> Restricted:
    """The sourcing problem of ``orders`` against what the other orders leave.

    Parameters
    ----------
    problem
        The full problem.
    orders
        Global indices of the free orders.
    fixed_arc_qty
        Units per arc of the full problem already taken (by orders that stay fixed); entries of
        the free orders are ignored.
    pair_open
        Pairs of the full problem that may be used (default: all).
    pair_extra_cost
        Extra fixed cost per pair of the full problem (a change penalty).

    Returns
    -------
    Restricted
    """
    p = problem
    orders = np.unique(np.asarray(orders, dtype=np.int64))
    free_order = np.zeros(p.n_orders, bool)
    free_order[orders] = True
    free_arc = free_order[p.line_order[p.arc_line]]
    taken = np.where(free_arc, 0, fixed_arc_qty).astype(np.int64)

    # Residual stock, capacities and side limits.
    n_sku = p.atp.shape[1]
    used = np.bincount(
        p.arc_location * n_sku + p.arc_sku(), weights=taken, minlength=p.atp.size
    ).astype(np.int64)
    atp = np.maximum(p.atp - used.reshape(p.atp.shape), 0)
    units = np.bincount(p.arc_location, weights=taken, minlength=p.n_locations)
    cap_units = np.maximum(p.location_capacity_units - units, 0.0)
    pair_taken = np.bincount(p.arc_pair, weights=taken, minlength=p.n_pairs) > 0
    ships = np.bincount(p.pair_location[pair_taken], minlength=p.n_locations)
    cap_ships = np.maximum(p.location_capacity_shipments - ships, 0.0)
    limit_left = np.maximum(p.limit_bound - p.limit_usage(taken), 0.0)

    return sub_problem(
        p,
        orders,
        atp=atp,
        cap_units=cap_units,
        cap_ships=cap_ships,
        limit_left=limit_left,
        pair_open=pair_open,
        pair_extra_cost=pair_extra_cost,
    )


def sub_problem(
    problem: Problem,
    orders: IntArray,
    *,
    atp: npt.NDArray[np.int64],
    cap_units: FloatArray,
    cap_ships: FloatArray,
    limit_left: FloatArray,
    pair_open: BoolArray | None = None,
    pair_extra_cost: FloatArray | None = None,
) -> Restricted:
    """The sourcing problem of ``orders`` (sorted, unique) with the given stock and capacities.

    Arc caps are cut to ``atp``; arcs left without stock (or of closed pairs) are dropped.
    """
    p = problem
    lines = _expand(p.order_line_start[orders], p.order_line_start[orders + 1])
    arcs = _expand(p.line_arc_start[lines], p.line_arc_start[lines + 1])
    cap = np.minimum(p.arc_cap[arcs], atp[p.arc_location[arcs], p.line_sku[p.arc_line[arcs]]])
    keep = cap > 0
    if pair_open is not None:
        keep &= pair_open[p.arc_pair[arcs]]
    arcs, cap = arcs[keep], cap[keep]
    pairs = np.unique(p.arc_pair[arcs])

    # Re-index.
    order_new = np.full(p.n_orders, -1, np.int64)
    order_new[orders] = np.arange(len(orders))
    line_new = np.full(p.n_lines, -1, np.int64)
    line_new[lines] = np.arange(len(lines))
    pair_new = np.full(p.n_pairs, -1, np.int64)
    pair_new[pairs] = np.arange(len(pairs))
    arc_new = np.full(p.n_arcs, -1, np.int64)
    arc_new[arcs] = np.arange(len(arcs))

    line_order = order_new[p.line_order[lines]]
    pair_order = order_new[p.pair_order[pairs]]
    arc_line = line_new[p.arc_line[arcs]]
    arc_pair = pair_new[p.arc_pair[arcs]]
    full = cap >= p.line_qty[p.arc_line[arcs]]
    n_full = np.bincount(arc_pair[full], minlength=len(pairs))
    n_lines = np.diff(p.order_line_start)[orders]
    covers = n_full == n_lines[pair_order]
    shipment_cost = p.pair_shipment_cost[pairs].astype(np.float64)
    if pair_extra_cost is not None:
        shipment_cost = shipment_cost + pair_extra_cost[pairs]

    if p.n_limits:
        owner = np.repeat(np.arange(p.n_limits), np.diff(p.limit_start))
        mapped = arc_new[p.limit_arcs]
        ok = mapped >= 0
        limit_arcs = mapped[ok]
        limit_start = _offsets(owner[ok], p.n_limits)
    else:
        limit_arcs = np.zeros(0, np.int64)
        limit_start = np.zeros(1, np.int64)

    sub = dataclasses.replace(
        p,
        location_capacity_units=cap_units.astype(np.float64),
        location_capacity_shipments=cap_ships.astype(np.float64),
        atp=atp.astype(np.int64),
        order_ids=p.order_ids[orders],
        order_priority=p.order_priority[orders],
        order_ship_complete=p.order_ship_complete[orders],
        order_allow_backorder=p.order_allow_backorder[orders],
        order_created_at=p.order_created_at[orders],
        order_lat=p.order_lat[orders],
        order_lon=p.order_lon[orders],
        order_line_start=_offsets(line_order, len(orders)),
        order_pair_start=_offsets(pair_order, len(orders)),
        order_units=p.order_units[orders],
        order_reject_cost=p.order_reject_cost[orders],
        order_max_locations=p.order_max_locations[orders],
        line_order=line_order,
        line_sku=p.line_sku[lines],
        line_qty=p.line_qty[lines],
        line_ids=p.line_ids[lines],
        line_backorder_cost=p.line_backorder_cost[lines],
        pair_order=pair_order,
        pair_location=p.pair_location[pairs],
        pair_unit_cost=p.pair_unit_cost[pairs],
        pair_shipment_cost=shipment_cost,
        pair_distance_km=p.pair_distance_km[pairs],
        pair_covers=covers,
        arc_line=arc_line,
        arc_pair=arc_pair,
        arc_location=p.arc_location[arcs],
        arc_cap=cap.astype(np.int64),
        arc_unit_cost=p.arc_unit_cost[arcs],
        line_arc_start=_offsets(arc_line, len(lines)),
        order_lines=p.order_lines.select(pl.all().gather(lines)),
        limit_start=limit_start,
        limit_arcs=limit_arcs,
        limit_bound=limit_left.astype(np.float64),
        meta={},
    )
    return Restricted(sub, orders, lines, pairs, arcs)
