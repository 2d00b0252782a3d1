"""Sub-problems: some orders free, the rest fixed, as a :class:`~allocator.problem.Problem`.

Fix-and-solve needs the sourcing model of a subset of orders against what the fixed orders leave:
the residual stock, capacities and side limits. :func:`restrict` builds it as an ordinary
:class:`~allocator.problem.Problem` (so :func:`~allocator.solvers.exact.build_milp` and
:func:`~allocator.solvers.exact.solve_exact` apply unchanged) plus the maps back to the full
problem's arcs, pairs, lines and orders.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.plan import Solution
from allocator.problem import Problem

__all__ = ["PlanUsage", "Restricted", "plan_usage", "restrict", "sub_problem"]

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
        arc_qty[_expand(full.line_arc_start[self.lines], full.line_arc_start[self.lines + 1])] = 0
        arc_qty[self.arcs] = sub.arc_qty
        backorder = base.line_backorder.copy()
        backorder[self.lines] = sub.line_backorder
        rejected = base.order_rejected.copy()
        rejected[self.orders] = sub.order_rejected
        return Solution(arc_qty, backorder, rejected)


@dataclass(frozen=True, eq=False)
class PlanUsage:
    """What a plan takes from the shared rows: stock per (location, SKU), capacities, limits.

    Computed once per plan over every arc (:func:`plan_usage`) and carried from plan to plan
    (:func:`record_change`); a neighbourhood then only adds back what its own orders take, so
    building a sub-problem costs the neighbourhood's size, not the whole problem's. Measured: 15
    to 6 ms per sub-problem on 10,000 orders; on 100,000 orders (9.4 million arcs) a pass of
    rescue neighbourhoods gained 24,200 in 48 s, where it had gained 2,700 in 16 s.
    """

    arc_qty: IntArray  # the plan's units per arc (the usage is of exactly this array)
    stock: FloatArray  # units per location * n_sku + sku
    units: FloatArray  # units per location
    pair_units: FloatArray  # units per pair
    ships: FloatArray  # shipping pairs per location
    limits: FloatArray  # units per side limit


# The most recent plan's usage per problem (fix-and-solve asks about the same plan many times),
# recognised by the identity of its ``arc_qty`` array: plans are never changed in place.
_USAGE: weakref.WeakKeyDictionary[Problem, PlanUsage] = weakref.WeakKeyDictionary()


def _stock_key(problem: Problem, arcs: IntArray | slice) -> IntArray:
    p = problem
    key: IntArray = p.arc_location[arcs] * p.atp.shape[1] + p.line_sku[p.arc_line[arcs]]
    return key


def plan_usage(problem: Problem, arc_qty: IntArray) -> PlanUsage:
    """The usage of the plan ``arc_qty`` (cached for the most recent plan of each problem)."""
    cached = _USAGE.get(problem)
    if cached is not None and cached.arc_qty is arc_qty:
        return cached
    p = problem
    qty = arc_qty.astype(np.float64)
    pair_units = np.bincount(p.arc_pair, weights=qty, minlength=p.n_pairs).astype(np.float64)
    usage = PlanUsage(
        arc_qty=arc_qty,
        stock=np.bincount(_stock_key(p, slice(None)), weights=qty, minlength=p.atp.size).astype(
            np.float64
        ),
        units=np.bincount(p.arc_location, weights=qty, minlength=p.n_locations).astype(np.float64),
        pair_units=pair_units,
        ships=np.bincount(p.pair_location[pair_units > 0], minlength=p.n_locations).astype(
            np.float64
        ),
        limits=p.limit_usage(arc_qty),
    )
    _USAGE[problem] = usage
    return usage


def _group_usage(
    problem: Problem, arcs: IntArray, pairs: IntArray, arc_qty: IntArray
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Usage of ``arcs`` only: stock keys and units (sparse, sorted keys), units per location,
    units per pair of ``pairs``, shipments per location and units per side limit."""
    p = problem
    qty = arc_qty[arcs].astype(np.float64)
    keys, where = np.unique(_stock_key(p, arcs), return_inverse=True)
    stock = np.bincount(where, weights=qty, minlength=len(keys)).astype(np.float64)
    units = np.bincount(p.arc_location[arcs], weights=qty, minlength=p.n_locations).astype(
        np.float64
    )
    pair_index = np.searchsorted(pairs, p.arc_pair[arcs])
    pair_units = np.bincount(pair_index, weights=qty, minlength=len(pairs)).astype(np.float64)
    ships = np.bincount(p.pair_location[pairs[pair_units > 0]], minlength=p.n_locations)
    limits = np.zeros(p.n_limits)
    if p.n_limits:
        only = np.zeros(p.n_arcs, np.int64)
        only[arcs] = arc_qty[arcs]
        limits = p.limit_usage(only)
    return keys, stock, units, pair_units, ships.astype(np.float64), limits


def record_change(problem: Problem, old: IntArray, new: IntArray, orders: IntArray) -> None:
    """Derive the usage of plan ``new`` from plan ``old``'s, where only ``orders`` changed.

    The arrays are updated in place (only the most recent plan's usage is kept), so the cost is
    the group's size: copying the per-pair and per-(location, SKU) arrays had taken 2.8 s in 58
    changes on 100,000 orders.
    """
    before = _USAGE.get(problem)
    if before is None or before.arc_qty is not old:
        return
    p = problem
    lines = _expand(p.order_line_start[orders], p.order_line_start[orders + 1])
    arcs = _expand(p.line_arc_start[lines], p.line_arc_start[lines + 1])
    pairs = _expand(p.order_pair_start[orders], p.order_pair_start[orders + 1])
    k0, s0, u0, _, sh0, l0 = _group_usage(p, arcs, pairs, old)
    k1, s1, u1, pu1, sh1, l1 = _group_usage(p, arcs, pairs, new)
    stock = before.stock
    stock[k0] -= s0  # keys are unique within each group
    stock[k1] += s1
    pair_units = before.pair_units
    pair_units[pairs] = pu1
    _USAGE[problem] = PlanUsage(
        arc_qty=new,
        stock=stock,
        units=before.units - u0 + u1,
        pair_units=pair_units,
        ships=before.ships - sh0 + sh1,
        limits=before.limits - l0 + l1,
    )


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
    usage = plan_usage(p, fixed_arc_qty)
    lines = _expand(p.order_line_start[orders], p.order_line_start[orders + 1])
    arcs = _expand(p.line_arc_start[lines], p.line_arc_start[lines + 1])
    pairs = _expand(p.order_pair_start[orders], p.order_pair_start[orders + 1])
    keys, stock, units, _, ships, limits = _group_usage(p, arcs, pairs, fixed_arc_qty)

    # Residual stock, capacities and side limits: the plan's usage less the free orders' own.
    # Stock is filled in only where the free orders have arcs: the sub-problem reads nothing
    # else, and the rest of the zero array is never touched (a dense residual had cost two
    # passes over 2 million (location, SKU) entries per sub-problem on 100,000 orders).
    atp = np.zeros(p.atp.shape, np.int64)
    atp.ravel()[keys] = np.maximum(p.atp.ravel()[keys] - (usage.stock[keys] - stock), 0)
    cap_units = np.maximum(p.location_capacity_units - (usage.units - units), 0.0)
    cap_ships = np.maximum(p.location_capacity_shipments - (usage.ships - ships), 0.0)
    limit_left = np.maximum(p.limit_bound - (usage.limits - limits), 0.0)

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

    # Re-index by binary search in the sorted global indices (maps as long as the full problem's
    # arrays had cost 2 s in 77 sub-problems of 100,000 orders).
    line_order = np.searchsorted(orders, p.line_order[lines]).astype(np.int64)
    pair_order = np.searchsorted(orders, p.pair_order[pairs]).astype(np.int64)
    arc_line = np.searchsorted(lines, p.arc_line[arcs]).astype(np.int64)
    arc_pair = np.searchsorted(pairs, p.arc_pair[arcs]).astype(np.int64)
    full = cap >= p.line_qty[p.arc_line[arcs]]
    n_full = np.bincount(arc_pair[full], minlength=len(pairs))
    n_lines = np.diff(p.order_line_start)[orders]
    covers = n_full == n_lines[pair_order]
    shipment_cost = p.pair_shipment_cost[pairs].astype(np.float64)
    if pair_extra_cost is not None:
        shipment_cost = shipment_cost + pair_extra_cost[pairs]

    if p.n_limits:
        owner = np.repeat(np.arange(p.n_limits), np.diff(p.limit_start))
        mapped = np.searchsorted(arcs, p.limit_arcs)
        ok = mapped < len(arcs)
        ok[ok] = arcs[mapped[ok]] == p.limit_arcs[ok]
        limit_arcs = mapped[ok].astype(np.int64)
        limit_start = _offsets(owner[ok], p.n_limits)
    else:
        limit_arcs = np.zeros(0, np.int64)
        limit_start = np.zeros(1, np.int64)

    sub = dataclasses.replace(
        p,
        location_capacity_units=cap_units.astype(np.float64),
        location_capacity_shipments=cap_ships.astype(np.float64),
        atp=np.asarray(atp, dtype=np.int64),
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
