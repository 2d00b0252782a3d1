"""Exact sourcing of one order at a time against running stock: the real-time optimiser.

A real-time policy decides each order alone, when it arrives, against the stock left by the
orders before it. :func:`source_sequentially` does exactly that over a compiled
:class:`~allocator.problem.Problem` whose orders are in arrival order: for each order it finds the
cheapest plan under the problem's own costs and rules (every eligibility rule, side limit and
capacity compiled into the arrays applies), commits it to the running stock, and moves on.

Why not call :mod:`allocator.realtime` per order: that module sources a pydantic ``Order`` against
a ledger, with the core cost model only. Here the orders are already compiled (so rule sets with
eligibility rules, ring-fences and preference costs apply unchanged), no per-order object is
built, and the forward-looking policy needs a price on every unit taken from a position
(``opportunity``), which is a term of the search itself. The tests check that both agree on cost
for the default rules.

The search, for one order
-------------------------
For a fixed set ``S`` of open locations the cheapest fill is greedy per line: the unit cost of an
arc depends on its location (and, with opportunity prices, rises with every unit taken from a
position, which keeps the per-line problem convex), so each unit goes to the cheapest open source
while that is below the line's backorder penalty. Sets are enumerated depth first with locations
in ascending shipment cost, and a branch stops as soon as its shipment costs plus a lower bound
on the variable cost (every line at its cheapest unit price, or its backorder penalty) reach the
best plan found. The answer is optimal except in two cases that the result counts: the node cap
was reached, or a location's remaining unit capacity was smaller than the order (then lines share
it greedily, in line order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from allocator.plan import Solution
from allocator.problem import Problem

__all__ = ["Opportunity", "SequentialResult", "source_sequentially"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: ``opportunity(locations, skus, levels)`` -> the price of taking the unit that brings each
#: position (problem location index, problem SKU index) down from ``level`` to ``level - 1``.
#: It must not decrease as the level falls (scarcer stock is never cheaper).
Opportunity = Callable[[IntArray, IntArray, IntArray], FloatArray]

_EPS = 1e-9
_INF = float("inf")


@dataclass(frozen=True, eq=False)
class SequentialResult:
    """Decisions of :func:`source_sequentially`.

    Attributes
    ----------
    solution
        Arc quantities, backorders and rejections over the problem.
    inexact_orders
        Orders whose plan may not be optimal (node cap reached, or unit capacity shared).
    """

    solution: Solution
    inexact_orders: int


def source_sequentially(
    problem: Problem,
    order_sequence: IntArray | None = None,
    *,
    opportunity: Opportunity | None = None,
    max_nodes: int = 4000,
) -> SequentialResult:
    """Source each order alone, in sequence, against the stock the earlier ones left.

    Parameters
    ----------
    problem
        The compiled problem; its ``atp``, capacities and side limits are the stock at the start.
    order_sequence
        Order indices in the sequence to serve them (default: problem order, which is arrival
        order when the orders table is sorted by ``created_at``).
    opportunity
        Optional price per unit taken from a position on top of the problem's costs (see
        :data:`Opportunity`); ``None`` is the myopic optimiser.
    max_nodes
        Most location sets priced for one order before the best found is kept.

    Returns
    -------
    SequentialResult
    """
    p = problem
    seq = np.arange(p.n_orders, dtype=np.int64) if order_sequence is None else order_sequence
    atp = p.atp.copy()
    cap_units = p.location_capacity_units.astype(np.float64).tolist()
    cap_ships = p.location_capacity_shipments.astype(np.float64).tolist()
    arc_qty = np.zeros(p.n_arcs, np.int64)
    backorder = np.zeros(p.n_lines, np.int64)
    rejected = np.zeros(p.n_orders, bool)

    ols = p.order_line_start.tolist()
    las = p.line_arc_start.tolist()
    pair_ship = p.pair_shipment_cost.tolist()
    arc_pair, arc_loc = p.arc_pair.tolist(), p.arc_location.tolist()
    arc_unit = p.arc_unit_cost.tolist()
    line_sku, line_qty = p.line_sku.tolist(), p.line_qty.tolist()
    line_bo = p.line_backorder_cost.tolist()
    sc_flags, bo_flags = p.order_ship_complete.tolist(), p.order_allow_backorder.tolist()
    max_locs = p.order_max_locations.tolist()
    reject_cost = p.order_reject_cost.tolist()
    limit_left = p.limit_bound.astype(np.float64).tolist()
    arc_limits: dict[int, list[int]] = {}
    for i in range(p.n_limits):
        for a in p.limit_arcs[p.limit_start[i] : p.limit_start[i + 1]].tolist():
            arc_limits.setdefault(a, []).append(i)
    inexact = 0

    for o in seq.tolist():
        l0, l1 = ols[o], ols[o + 1]
        allow_bo = bool(bo_flags[o])
        ship_complete = bool(sc_flags[o])
        # Candidate arcs per line, with what each could give now.
        lines: list[tuple[int, int, float, list[tuple[int, int, int, list[float]]]]] = []
        loc_pair: dict[int, int] = {}
        order_units = 0
        for k in range(l0, l1):
            need = line_qty[k]
            order_units += need
            sku = line_sku[k]
            arcs: list[tuple[int, int, int, list[float]]] = []
            for a in range(las[k], las[k + 1]):
                loc = arc_loc[a]
                q = arc_pair[a]
                if cap_ships[loc] < 1 or cap_units[loc] < 1:
                    continue
                room = int(atp[loc, sku])
                limits = arc_limits.get(a)
                if limits:
                    room = min(room, int(min(limit_left[i] for i in limits)))
                room = min(room, need)
                if room <= 0:
                    continue
                loc_pair[loc] = q
                arcs.append((a, loc, room, [arc_unit[a]] * room))
            lines.append((k, need, line_bo[k] if allow_bo else _INF, arcs))
        if opportunity is not None:
            _price_opportunity(lines, line_sku, atp, opportunity)
        best = _search(
            lines,
            loc_pair,
            pair_ship,
            cap_units,
            order_units,
            allow_bo=allow_bo,
            ship_complete=ship_complete,
            max_locations=int(max_locs[o]),
            reject_cost=reject_cost[o],
            max_nodes=max_nodes,
        )
        if best.inexact:
            inexact += 1
        if best.reject:
            rejected[o] = True
            continue
        opened: set[int] = set()
        for k, take in best.takes:
            line_taken = 0
            for a, loc, qty in take:
                arc_qty[a] += qty
                atp[loc, line_sku[k]] -= qty
                cap_units[loc] -= qty
                for i in arc_limits.get(a, ()):
                    limit_left[i] -= qty
                opened.add(loc)
                line_taken += qty
            backorder[k] = line_qty[k] - line_taken
        for k in range(l0, l1):
            if k not in best.touched:
                backorder[k] = line_qty[k]
        for loc in opened:
            cap_ships[loc] -= 1
    return SequentialResult(Solution(arc_qty, backorder, rejected), inexact)


def _price_opportunity(
    lines: list[tuple[int, int, float, list[tuple[int, int, int, list[float]]]]],
    line_sku: list[int],
    atp: IntArray,
    opportunity: Opportunity,
) -> None:
    """Add the opportunity price of each successive unit to every candidate arc (in place)."""
    locs: list[int] = []
    skus: list[int] = []
    levels: list[int] = []
    for k, _, _, arcs in lines:
        sku = line_sku[k]
        for _, loc, room, _ in arcs:
            level = int(atp[loc, sku])
            for j in range(room):
                locs.append(loc)
                skus.append(sku)
                levels.append(level - j)
    if not locs:
        return
    prices = opportunity(
        np.asarray(locs, np.int64), np.asarray(skus, np.int64), np.asarray(levels, np.int64)
    ).tolist()
    i = 0
    for _, _, _, arcs in lines:
        for _, _, room, marginal in arcs:
            for j in range(room):
                marginal[j] += prices[i]
                i += 1


@dataclass
class _Plan:
    cost: float
    takes: list[tuple[int, list[tuple[int, int, int]]]]
    touched: set[int]
    reject: bool
    inexact: bool = False
    paid: list[list[float]] | None = None  # per line, the price of each unit, dearest first


def _search(
    lines: list[tuple[int, int, float, list[tuple[int, int, int, list[float]]]]],
    loc_pair: dict[int, int],
    pair_ship: list[float],
    cap_units: list[float],
    order_units: int,
    *,
    allow_bo: bool,
    ship_complete: bool,
    max_locations: int,
    reject_cost: float,
    max_nodes: int,
) -> _Plan:
    """The cheapest plan of one order (see the module docstring)."""
    # Doing nothing: every unit waits, or the order is rejected.
    nothing = sum(need * bo for _, need, bo, _ in lines) if allow_bo else reject_cost
    best = _Plan(nothing, [], set(), reject=not allow_bo)
    if not loc_pair:
        return best
    # Lower bound on the variable cost: every unit at its cheapest price (or its backorder).
    lower = 0.0
    for _, need, bo, arcs in lines:
        cheapest = min((m[0] for _, _, _, m in arcs), default=_INF)
        per_unit = min(cheapest, bo)
        if per_unit == _INF:
            # A line that no location can give and that may not wait: the order is rejected.
            return best
        lower += need * per_unit
    locations = sorted(loc_pair, key=lambda loc: (pair_ship[loc_pair[loc]], loc))
    ships = [pair_ship[loc_pair[loc]] for loc in locations]
    # Unit capacity couples the lines only where a location has less room than the order.
    tight = any(cap_units[loc] < order_units for loc in locations)
    nodes = 0
    chosen: list[int] = []

    def price(members: list[int]) -> _Plan | None:
        open_set = set(members)
        room_left = {loc: cap_units[loc] for loc in members} if tight else None
        takes: list[tuple[int, list[tuple[int, int, int]]]] = []
        paid: list[list[float]] = []
        cost = 0.0
        used: set[int] = set()
        for k, need, bo, arcs in lines:
            prices: list[float] = []
            sources = [arc for arc in arcs if arc[1] in open_set]
            taken = [0] * len(sources)
            left = need
            while left > 0:
                pick = -1
                pick_price = bo
                for i, (_, loc, room, marginal) in enumerate(sources):
                    t = taken[i]
                    if t >= room or (room_left is not None and room_left[loc] < 1):
                        continue
                    if marginal[t] < pick_price:
                        pick, pick_price = i, marginal[t]
                if pick < 0:
                    break
                taken[pick] += 1
                left -= 1
                cost += pick_price
                prices.append(pick_price)
                if room_left is not None:
                    room_left[sources[pick][1]] -= 1
            if left:
                if bo == _INF or ship_complete:
                    return None
                cost += left * bo
                prices.extend([bo] * left)
            prices.reverse()  # units are taken cheapest first
            paid.append(prices)
            take = [(a, loc, taken[i]) for i, (a, loc, _, _) in enumerate(sources) if taken[i]]
            used.update(loc for _, loc, _ in take)
            takes.append((k, take))
        if ship_complete and len(used) > 1:
            return None
        cost += sum(pair_ship[loc_pair[loc]] for loc in used)
        return _Plan(cost, takes, {k for k, _ in takes}, reject=False, paid=paid)

    # What each location could give each line: (line index, marginal prices).
    offers: dict[int, list[tuple[int, list[float]]]] = {}
    for j, (_, _, _, arcs) in enumerate(lines):
        for _, loc, _, marginal in arcs:
            offers.setdefault(loc, []).append((j, marginal))

    def worth_adding(plan: _Plan | None, start: int, stop: int) -> list[int]:
        """Locations from ``start`` on that could improve on ``plan`` or on a superset of it.

        A location's saving against a set's plan is at most what its units would save on the
        dearest units of that plan (units waiting count at their backorder price); a superset's
        plan pays no more per unit, so it saves even less there. A location whose best saving
        does not pay its parcel never makes a set better, with or without further locations.
        """
        if plan is None or plan.paid is None:
            return list(range(start, stop))
        keep = []
        for i in range(start, stop):
            gain = 0.0
            for j, marginal in offers.get(locations[i], ()):
                paid = plan.paid[j]
                for u, price in enumerate(marginal):
                    if u >= len(paid) or paid[u] <= price:
                        break
                    gain += paid[u] - price
            if gain > ships[i] + _EPS:
                keep.append(i)
        return keep

    def dive(start: int, ship_sum: float, current: _Plan | None) -> bool:
        """Depth-first over location sets; returns False once the node cap is reached."""
        nonlocal best, nodes
        limit = 1 if ship_complete else max_locations
        # Locations are in ascending parcel cost: only a prefix can still beat the best plan.
        stop = start
        while stop < len(locations) and ship_sum + ships[stop] + lower < best.cost - _EPS:
            stop += 1
        for i in worth_adding(current, start, stop):
            if ship_sum + ships[i] + lower >= best.cost - _EPS:
                break
            nodes += 1
            if nodes > max_nodes:
                return False
            chosen.append(locations[i])
            plan = price(chosen)
            if plan is not None and plan.cost < best.cost - _EPS:
                best = plan
            if len(chosen) < limit and not dive(i + 1, ship_sum + ships[i], plan):
                chosen.pop()
                return False
            chosen.pop()
        return True

    complete = dive(0, 0.0, None)
    best.inexact = (not complete) or tight
    return best
