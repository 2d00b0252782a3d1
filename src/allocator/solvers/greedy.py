"""Greedy fills: the naive baseline, and the ranked fill that rule-based policies build on.

Every greedy policy of today's platforms is the same loop (``peers.md``): take the orders one at a
time, rank the candidate locations, walk the ranking and take ``min(remaining, free)`` at each.
:func:`ranked_fill` is that loop over the compiled problem, with the ranking given as one number
per (order, location) pair (lower is better) and the order sequence given as an array, so
policies differ only in the arrays they pass. It honours ATP, capacities, ship-complete, the split
cap and no-backorder orders (an order that cannot be filled in full is rolled back and rejected).

:func:`greedy_baseline` is the baseline every result is compared with: the nearest location that
covers the whole order, else fill line by line from the nearest.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from allocator.plan import Plan, Solution, Status
from allocator.problem import Problem

__all__ = ["default_order_sequence", "greedy_baseline", "ranked_fill"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def default_order_sequence(problem: Problem) -> IntArray:
    """Orders by priority (high first), then creation time (old first), then input order."""
    return np.lexsort(
        (np.arange(problem.n_orders), problem.order_created_at, -problem.order_priority)
    ).astype(np.int64)


def distance_rank(problem: Problem) -> FloatArray:
    """Per-pair rank by distance; pairs of unknown distance rank after all known ones, by cost."""
    d = problem.pair_distance_km
    known = np.isfinite(d)
    big = (np.nanmax(d) if known.any() else 0.0) + 1.0
    return np.where(known, d, big + problem.pair_shipment_cost + problem.pair_unit_cost)


def ranked_fill(
    problem: Problem,
    pair_rank: FloatArray,
    order_sequence: IntArray | None = None,
    *,
    whole_order_first: bool = True,
) -> Solution:
    """Fill orders one at a time from ranked locations.

    Parameters
    ----------
    problem
        The compiled problem.
    pair_rank
        One number per pair; lower is tried first. Ties go to the lower location index.
    order_sequence
        Order indices in the sequence to serve them (default: :func:`default_order_sequence`).
    whole_order_first
        First look for the best-ranked location that can ship the whole order alone; only if
        there is none, fill line by line. Ship-complete orders always need such a location.

    Returns
    -------
    Solution
    """
    p = problem
    seq = default_order_sequence(p) if order_sequence is None else order_sequence
    atp = p.atp.copy()
    cap_units = p.location_capacity_units.copy()
    cap_ships = p.location_capacity_shipments.copy()
    arc_qty = np.zeros(p.n_arcs, np.int64)
    backorder = np.zeros(p.n_lines, np.int64)
    rejected = np.zeros(p.n_orders, bool)

    # Python lists are much faster than numpy for the tiny per-order slices of this loop.
    ols, ops = p.order_line_start.tolist(), p.order_pair_start.tolist()
    las = p.line_arc_start.tolist()
    pair_loc = p.pair_location.tolist()
    arc_pair, arc_loc = p.arc_pair.tolist(), p.arc_location.tolist()
    arc_line = p.arc_line.tolist()
    line_sku, line_qty = p.line_sku.tolist(), p.line_qty.tolist()
    rank = np.asarray(pair_rank, dtype=np.float64).tolist()
    sc_flags, bo_flags = p.order_ship_complete.tolist(), p.order_allow_backorder.tolist()
    max_locs = p.order_max_locations.tolist()
    # Side limits (ring-fencing, exposure caps): remaining room per limit, and each arc's limits.
    limit_left = p.limit_bound.astype(np.float64).tolist()
    arc_limits: dict[int, list[int]] = {}
    for i in range(p.n_limits):
        for a in p.limit_arcs[p.limit_start[i] : p.limit_start[i + 1]].tolist():
            arc_limits.setdefault(a, []).append(i)

    def room(a: int) -> float:
        limits = arc_limits.get(a)
        return min(limit_left[i] for i in limits) if limits else float("inf")

    def consume(a: int, qty: int) -> None:
        for i in arc_limits.get(a, ()):
            limit_left[i] -= qty

    for o in seq.tolist():
        l0, l1 = ols[o], ols[o + 1]
        pairs = [
            q for _, _, q in sorted((rank[q], pair_loc[q], q) for q in range(ops[o], ops[o + 1]))
        ]
        if not pairs:
            _shortfall(o, l0, l1, line_qty, backorder, rejected, bo_flags)
            continue
        units = sum(line_qty[l0:l1])
        # Arcs of this order by pair, for the whole-order check.
        arcs_by_pair: dict[int, list[int]] = {}
        for k in range(l0, l1):
            for a in range(las[k], las[k + 1]):
                arcs_by_pair.setdefault(arc_pair[a], []).append(a)
        whole = None
        if whole_order_first or sc_flags[o]:
            for q in pairs:
                arcs = arcs_by_pair.get(q, [])
                loc = pair_loc[q]
                if (
                    len(arcs) == l1 - l0
                    and cap_units[loc] >= units
                    and cap_ships[loc] >= 1
                    and all(atp[loc, line_sku[arc_line[a]]] >= line_qty[arc_line[a]] for a in arcs)
                    and all(room(a) >= line_qty[arc_line[a]] for a in arcs)
                ):
                    whole = q
                    break
        if whole is not None:
            loc = pair_loc[whole]
            for a in arcs_by_pair[whole]:
                k = arc_line[a]
                arc_qty[a] = line_qty[k]
                atp[loc, line_sku[k]] -= line_qty[k]
                consume(a, line_qty[k])
            cap_units[loc] -= units
            cap_ships[loc] -= 1
            continue
        if sc_flags[o]:
            _shortfall(o, l0, l1, line_qty, backorder, rejected, bo_flags)
            continue
        # Line-by-line fill from the best-ranked location, opening at most max_locs locations.
        order_rank = {q: i for i, q in enumerate(pairs)}
        opened: set[int] = set()
        taken: list[tuple[int, int, int]] = []  # (arc, loc, qty) for rollback
        short = False
        for k in range(l0, l1):
            need = line_qty[k]
            for _, a in sorted((order_rank[arc_pair[a]], a) for a in range(las[k], las[k + 1])):
                if need == 0:
                    break
                loc = arc_loc[a]
                new = loc not in opened
                if new and (len(opened) >= max_locs[o] or cap_ships[loc] < 1):
                    continue
                take = int(min(need, atp[loc, line_sku[k]], cap_units[loc], room(a)))
                if take <= 0:
                    continue
                consume(a, take)
                arc_qty[a] += take
                atp[loc, line_sku[k]] -= take
                cap_units[loc] -= take
                if new:
                    opened.add(loc)
                    cap_ships[loc] -= 1
                taken.append((a, loc, take))
                need -= take
            if need:
                short = True
                backorder[k] = need
        if short and not bo_flags[o]:
            for a, loc, take in taken:
                arc_qty[a] -= take
                consume(a, -take)
                atp[loc, line_sku[arc_line[a]]] += take
                cap_units[loc] += take
            for loc in opened:
                cap_ships[loc] += 1
            backorder[l0:l1] = 0
            rejected[o] = True
    return Solution(arc_qty=arc_qty, line_backorder=backorder, order_rejected=rejected)


def _shortfall(
    o: int,
    l0: int,
    l1: int,
    line_qty: list[int],
    backorder: IntArray,
    rejected: npt.NDArray[np.bool_],
    bo_flags: list[bool],
) -> None:
    if bo_flags[o]:
        backorder[l0:l1] = line_qty[l0:l1]
    else:
        rejected[o] = True


def greedy_baseline(problem: Problem) -> Plan:
    """The naive baseline: nearest whole-order location, else line by line from the nearest."""
    t0 = time.perf_counter()
    solution = ranked_fill(problem, distance_rank(problem))
    return Plan(
        problem=problem,
        solution=solution,
        status=Status.HEURISTIC,
        policy="greedy",
        lower_bound=None,
        seconds=time.perf_counter() - t0,
    )
