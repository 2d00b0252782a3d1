"""A stronger certificate: the integer Lagrangian over groups of orders linked by contested stock.

At the pattern LP's prices each order prices alone and the Lagrangian bound is the pattern LP.
What that bound cannot see is integrality where several orders contend for the same scarce stock
of a (location, SKU): the LP ships two halves of an order from a location that holds one unit,
and no price on the stock row makes the halves whole. This module keeps some of those rows as
hard constraints instead of pricing them.

The argument. Let ``K`` be a set of stock rows and ``pi >= 0`` prices on every other coupling
row (stock, capacities, side limits, shipments), zero on ``K``. Link two orders when both have
an arc into a row of ``K``; the connected components are the *groups*, so every row of ``K``
lies inside one group. For any feasible plan ``x``, ``c x >= c x + pi (A x - b)``, and the
right-hand side splits into one term per group plus ``-pi b``. Each group's term is at least the
optimum of that group's own sourcing problem, solved with every cost priced at ``pi`` and under
the constraints that hold for its orders alone: the rows of ``K`` exactly, and the whole stock,
capacities and limits for the group by itself (all implied by the full problem). Hence

    sum over groups of (group optimum at prices pi)  -  pi b   <=   optimum,

whatever ``K`` and ``pi >= 0`` are. A group of one order is its pricing problem
(:mod:`._pricing`); larger groups are solved as MILPs (:func:`~allocator.solvers.exact.
build_milp`), and a MILP stopped early contributes its dual bound, which is still a lower bound.
Since every row of ``K`` lies in one group, each group may instead take its own rows of ``K`` at
their prices (its orders' pricing values there, less those rows' priced stock): that too is a
Lagrangian bound, so each group counts with the larger of the two, and a group not solved in
time never takes the bound below the Lagrangian value at the prices given.

Choosing ``K``: the stock rows with a positive price, those the master LP's split orders use
first and within each kind the rows with fewest orders first, each added only while no group
grows past a budget of orders (so every MILP stays small). Measured on the 1,000-order benchmark
(pattern LP 16,660.21, optimum 16,687.25; ``benchmarks/RESULTS.md``), in 5 s runs on a pool of
two: budget 100, 16,682.92; 120, 16,684.78; 150, 16,684.32 (the largest group finishing just at
the limit). Without the preference for the split orders' rows a 150-order budget gave 16,682.92;
every positive-priced row (one group of 718 orders) gives 16,687.21, in 12 s on one core.

The groups' MILPs return their plans as well. A group's plan is optimal at the groups' prices,
which is not the same as feasible beside the rest of the plan, but the orders it sources
differently from the incumbent are where contested stock could be moved: :func:`crossover`
names them, and the decomposition re-sources them together against the rest of its plan.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers._restrict import Restricted, sub_problem
from allocator.solvers.lagrangian import Coupling

__all__ = [
    "GroupBound",
    "GroupJobs",
    "changed_orders",
    "crossover",
    "group_rows",
    "kept_prices",
    "start_group_bound",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Most orders in one group (measured on 1,000 orders: a group of about 150 orders solves in about
#: 2 s, 300 in 2-6 s, the whole 718-order component in 12-14 s).
GROUP_ORDERS = 120
#: Prices at or below this count as zero (the row is not contested).
_PRICE_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class GroupBound:
    """A certified lower bound and how it was obtained."""

    bound: float
    kept_rows: int  # stock rows held as constraints
    groups: int  # groups of two or more orders (solved as MILPs)
    largest: int  # orders in the largest group
    solved: int  # groups whose MILP finished (the others gave their dual bound or floor)
    #: Each group's best plan found by its MILP (at the groups' prices, so not necessarily
    #: feasible alongside the rest of a plan): where it differs from a plan it points at orders
    #: worth re-sourcing together (see :func:`crossover`).
    plans: tuple[tuple[Restricted, Solution], ...] = ()


def group_rows(
    problem: Problem,
    coupling: Coupling,
    unit_price: FloatArray,
    *,
    budget: int = GROUP_ORDERS,
    preferred: BoolArray | None = None,
) -> tuple[BoolArray, IntArray]:
    """Pick the stock rows to keep and label the orders by group.

    Candidates are the stock rows with a positive price: the ``preferred`` ones first (the rows
    the master LP's split orders use), and within each kind those with fewest orders first; a
    row joins ``K`` when the groups it links stay within ``budget`` orders. Returns the mask of
    kept unit rows and each order's group label (``0..n_groups-1``).
    """
    p = problem
    arc_order = p.line_order[p.arc_line]
    rows_arcs = coupling.arc_rows.tocsc()
    stock = coupling.unit_kind == 0
    candidates = np.flatnonzero(stock & (unit_price > _PRICE_TOL))
    members: list[IntArray] = []
    for r in candidates:
        arcs = rows_arcs.indices[rows_arcs.indptr[r] : rows_arcs.indptr[r + 1]]
        members.append(np.unique(arc_order[arcs]))
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    later = np.zeros(len(candidates), dtype=bool)
    if preferred is not None:
        later = ~preferred[candidates]
    by_size = np.lexsort((sizes, later))

    parent = np.arange(p.n_orders, dtype=np.int64)
    group_size = np.ones(p.n_orders, dtype=np.int64)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = int(parent[root])
        while parent[a] != root:  # path compression
            parent[a], a = root, int(parent[a])
        return root

    keep = np.zeros(coupling.n_unit, dtype=bool)
    for i in by_size:
        if sizes[i] > budget:
            continue  # links more orders than the budget on its own
        roots = np.unique(np.array([find(int(o)) for o in members[i]], dtype=np.int64))
        total = int(group_size[roots].sum())
        if total > budget:
            continue
        keep[candidates[i]] = True
        head = int(roots[0])
        parent[roots[1:]] = head
        group_size[head] = total
    labels = np.array([find(o) for o in range(p.n_orders)], dtype=np.int64)
    _, labels = np.unique(labels, return_inverse=True)
    return keep, labels.astype(np.int64)


_Solved = tuple[float, bool, Solution | None]


def _solve_group(sub: Problem, until: float, seed: int) -> _Solved:
    """A group's optimum, or the MILP's dual bound when stopped at ``until``: runs in a worker.

    ``until`` is wall-clock time (``time.time()``), so a MILP that started late in a worker
    still ends with the run; ``inf`` solves to the end. Also returns the best plan the MILP
    found for the group (``None`` if none).
    """
    from allocator.solvers._lp import HighsHandle
    from allocator.solvers.exact import build_milp, solution_from_values

    limit = None if math.isinf(until) else until - time.time()
    if limit is not None and limit <= 0.01:
        return -math.inf, False, None
    model = build_milp(sub)
    if model.n_vars == 0:
        return 0.0, True, None
    handle = HighsHandle(model.row_lower, model.row_upper, seed=seed)
    handle.add_columns(model.objective, model.upper, model.matrix.tocsc())
    res = handle.solve_mip(model.integer, gap=1e-9, time_limit=limit)
    bound = float(res.bound)
    plan = None if res.x is None else solution_from_values(sub, model, res.x)
    return (bound if math.isfinite(bound) else -math.inf), res.status == "optimal", plan


def changed_orders(problem: Problem, before: Solution, after: Solution) -> IntArray:
    """The orders sourced differently in ``after`` than in ``before`` (sorted)."""
    p = problem
    arcs = np.flatnonzero(before.arc_qty != after.arc_qty)
    lines = np.flatnonzero(before.line_backorder != after.line_backorder)
    rejected = np.flatnonzero(before.order_rejected != after.order_rejected)
    return np.unique(
        np.concatenate([p.line_order[p.arc_line[arcs]], p.line_order[lines], rejected])
    ).astype(np.int64)


def crossover(problem: Problem, plan: Solution, found: GroupBound) -> IntArray:
    """The orders whose sourcing in the groups' own plans differs from ``plan``.

    The groups' plans are optimal (or the best found) at the groups' prices, which differ
    from the true costs only by the prices of the rows that stay priced; re-sourcing exactly
    these orders against the rest of ``plan`` is a neighbourhood aimed at the contested stock.
    Measured on the 1,000-order benchmark: the whole 718-order group's plan differs from the
    5 s plan in 110 orders, and re-sourcing them (a MILP of 0.5-0.7 s) finds the optimum
    16,687.25 from 16,689.65, where the decomposition's own neighbourhood search had stalled.
    It is a neighbourhood, not a guarantee: from another plan (16,688.10) the same group's
    plan pointed at 111 orders and re-sourcing them gained nothing.
    """
    mixed = plan
    for sub, solution in found.plans:
        mixed = sub.lift(problem, solution, mixed)
    return changed_orders(problem, plan, mixed)


class GroupJobs:
    """Groups being solved, on an executor or (``None``) one by one when :meth:`result` is called."""

    def __init__(
        self,
        singles: float,
        constant: float,
        groups: list[tuple[Restricted, float]],
        executor: Executor | None,
        seed: int,
        kept: int,
        largest: int,
        time_limit: float | None,
    ) -> None:
        self._singles = singles
        self._constant = constant
        self._groups = groups
        self._executor = executor
        self._seed = seed
        self._kept = kept
        self._largest = largest
        self._futures: list[Future[_Solved]] | None = None
        if executor is not None and groups:
            # Largest first: they take longest, and the small ones fill in behind them.
            # A worker's MILP cannot be cancelled once running: each stops when the limit,
            # counted from now, is up.
            until = math.inf if time_limit is None else time.time() + time_limit
            self._futures = [
                executor.submit(_solve_group, sub.problem, until, seed) for sub, _ in self._groups
            ]

    def ready(self) -> bool:
        """Whether every group on the executor has finished (always false when serial)."""
        return self._futures is not None and all(f.done() for f in self._futures)

    def result(self, deadline: float) -> GroupBound:
        """The bound from what is solved by ``deadline`` (``time.perf_counter()`` seconds).

        A group not finished in time counts with its floor (see :func:`start_group_bound`);
        pooled work still running is cancelled where the executor allows.
        """
        total = self._singles + self._constant
        solved = 0
        plans: list[tuple[Restricted, Solution]] = []
        for i, (sub, fallback) in enumerate(self._groups):
            value, optimal, plan = -math.inf, False, None
            if self._futures is not None:
                future = self._futures[i]
                wait = deadline - time.perf_counter()
                if future.done() or wait > 0:
                    try:
                        timeout = None if math.isinf(wait) else max(wait, 0.0)
                        value, optimal, plan = future.result(timeout=timeout)
                    except TimeoutError:
                        future.cancel()
            else:
                wait = deadline - time.perf_counter()
                if wait > 0.01:
                    until = math.inf if math.isinf(wait) else time.time() + wait
                    value, optimal, plan = _solve_group(sub.problem, until, self._seed)
            solved += optimal
            total += max(value, fallback)  # the better of the group's two bounds
            if plan is not None:
                plans.append((sub, plan))
        if self._futures is not None:
            for future in self._futures:
                future.cancel()
        return GroupBound(total, self._kept, len(self._groups), self._largest, solved, tuple(plans))


def kept_prices(
    problem: Problem,
    coupling: Coupling,
    unit_price: FloatArray,
    *,
    budget: int = GROUP_ORDERS,
    preferred: BoolArray | None = None,
) -> tuple[FloatArray, BoolArray, IntArray]:
    """The unit rows' prices with the kept rows at zero, the kept mask and the group labels."""
    keep, labels = group_rows(problem, coupling, unit_price, budget=budget, preferred=preferred)
    return np.where(keep, 0.0, unit_price), keep, labels


def _kept_row_groups(
    problem: Problem, coupling: Coupling, kept: BoolArray, labels: IntArray
) -> tuple[IntArray, IntArray]:
    """The kept rows and the group each lies in (every arc into a kept row is in that group)."""
    rows = np.flatnonzero(kept)
    by_arc = coupling.arc_rows  # (arcs x rows) CSR: one pass over its entries, no transpose
    hit = kept[by_arc.indices]
    entry_arc = np.repeat(np.arange(by_arc.shape[0]), np.diff(by_arc.indptr))
    some_arc = np.zeros(coupling.n_unit, dtype=np.int64)
    some_arc[by_arc.indices[hit]] = entry_arc[hit]
    arc_order = problem.line_order[problem.arc_line[some_arc[rows]]]
    return rows, labels[arc_order]


def start_group_bound(
    problem: Problem,
    coupling: Coupling,
    kept: BoolArray,
    labels: IntArray,
    unit_price: FloatArray,
    ship_price: FloatArray,
    kept_value: FloatArray,
    priced_value: FloatArray,
    *,
    pair_extra: FloatArray | None = None,
    executor: Executor | None = None,
    time_limit: float | None = None,
    seed: int = 0,
) -> GroupJobs:
    """Build every group's sub-problem and start solving them.

    ``kept`` and ``labels`` come from :func:`kept_prices`; ``unit_price`` and ``ship_price``
    are the rows' prices; ``kept_value`` is every order's pricing value with the kept rows at
    zero, ``priced_value`` at ``unit_price`` itself. With an executor the groups start at once
    and every MILP stops ``time_limit`` seconds from now; without one they are solved when
    :meth:`GroupJobs.result` is called.

    Each group may take its kept rows at zero (its MILP, or failing that its orders' pricing
    values) or at ``unit_price`` (its orders' pricing values there, less those rows' priced
    stock): both are Lagrangian bounds, whichever is larger counts. A group not solved in time
    therefore never takes the bound below the Lagrangian value at ``unit_price``.
    """
    p = problem
    kept_u = np.where(kept, 0.0, unit_price)
    priced = dataclasses.replace(p, arc_unit_cost=p.arc_unit_cost + coupling.arc_rows @ kept_u)
    extra = np.zeros(p.n_pairs)
    shipped = coupling.pair_ship_row >= 0
    extra[shipped] = ship_price[coupling.pair_ship_row[shipped]]
    if pair_extra is not None:
        extra = extra + pair_extra
    constant = -float(kept_u @ coupling.unit_bound) - float(ship_price @ coupling.ship_bound)
    n_groups = int(labels.max(initial=-1)) + 1
    sizes = np.bincount(labels, minlength=n_groups)
    rows, row_group = _kept_row_groups(p, coupling, kept, labels)
    stock_value = np.bincount(
        row_group, weights=unit_price[rows] * coupling.unit_bound[rows], minlength=n_groups
    )
    at_zero = np.bincount(labels, weights=kept_value, minlength=n_groups)
    at_price = np.bincount(labels, weights=priced_value, minlength=n_groups) - stock_value
    floor = np.maximum(at_zero, at_price)
    singles = float(floor[sizes == 1].sum())
    groups: list[tuple[Restricted, float]] = []
    by_label = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for g in np.argsort(-sizes, kind="stable"):
        if sizes[g] < 2:
            break
        orders = np.sort(by_label[starts[g] : starts[g + 1]])
        sub = sub_problem(
            priced,
            orders,
            atp=p.atp,
            cap_units=p.location_capacity_units,
            cap_ships=p.location_capacity_shipments,
            limit_left=p.limit_bound,
            pair_extra_cost=extra,
        )
        groups.append((sub, float(floor[g])))
    largest = int(sizes.max(initial=0))
    return GroupJobs(
        singles, constant, groups, executor, seed, int(kept.sum()), largest, time_limit
    )
