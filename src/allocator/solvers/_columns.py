"""Sourcing patterns as columns: their cost, their use of the coupling rows, and plans from them.

A *pattern* is one order's complete decision: the units it ships on each arc (the rest of its
units are backordered, or, for an order that may not be backordered, the order is rejected when
it ships nothing). Column generation, the restricted master and the repair heuristics all trade
in patterns; this module prices them against the true cost model and turns a choice of one
pattern per order into a :class:`~allocator.plan.Solution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers.lagrangian import Coupling

__all__ = ["ColumnPool", "PatternBatch", "empty_cost", "solution_from_patterns"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class PatternBatch:
    """Patterns ``i = 0..n-1`` of orders ``order[i]``, shipping ``qty`` on ``arc[ptr[i]:ptr[i+1]]``."""

    order: IntArray
    ptr: IntArray
    arc: IntArray
    qty: IntArray

    @property
    def n(self) -> int:
        return len(self.order)

    @classmethod
    def from_arcs(
        cls, orders: IntArray, arc_order: IntArray, arc: IntArray, qty: IntArray
    ) -> PatternBatch:
        """One pattern per entry of ``orders`` (unique), from arcs tagged with their order."""
        orders = np.asarray(orders, dtype=np.int64)
        idx = np.searchsorted(orders, arc_order)
        ok = (idx < len(orders)) & (orders[np.minimum(idx, len(orders) - 1)] == arc_order)
        idx, arc, qty = idx[ok], arc[ok], qty[ok]
        by = np.argsort(idx, kind="stable")
        counts = np.bincount(idx, minlength=len(orders))
        return cls(
            orders,
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            arc[by].astype(np.int64),
            qty[by].astype(np.int64),
        )

    def column_of_entry(self) -> IntArray:
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.ptr))


def empty_cost(problem: Problem) -> FloatArray:
    """Cost of each order's empty pattern: wait / backorder everything, or reject."""
    p = problem
    wait = np.bincount(
        p.line_order, weights=p.line_qty * p.line_backorder_cost, minlength=p.n_orders
    )
    return np.where(p.order_allow_backorder, wait, p.order_reject_cost).astype(np.float64)


def pattern_cost(
    problem: Problem, batch: PatternBatch, pair_extra: FloatArray | None
) -> FloatArray:
    """True cost of each pattern (units, parcels, backorders; empty patterns wait or reject)."""
    p = problem
    col = batch.column_of_entry()
    unit = np.bincount(col, weights=batch.qty * p.arc_unit_cost[batch.arc], minlength=batch.n)
    pairs = p.arc_pair[batch.arc]
    key = np.unique(col * p.n_pairs + pairs)
    pc, pp = key // p.n_pairs, key % p.n_pairs
    fixed = p.pair_shipment_cost[pp]
    if pair_extra is not None:
        fixed = fixed + pair_extra[pp]
    ship = np.bincount(pc, weights=fixed, minlength=batch.n)
    shipped_value = np.bincount(
        col, weights=batch.qty * p.line_backorder_cost[p.arc_line[batch.arc]], minlength=batch.n
    )
    empty = empty_cost(p)[batch.order]
    wait = np.bincount(
        p.line_order, weights=p.line_qty * p.line_backorder_cost, minlength=p.n_orders
    )
    served = np.diff(batch.ptr) > 0
    backorder = wait[batch.order] - shipped_value
    return np.where(served, unit + ship + backorder, empty).astype(np.float64)


def pattern_rows(
    problem: Problem, coupling: Coupling, batch: PatternBatch
) -> tuple[sp.csc_matrix, sp.csc_matrix]:
    """Use of the unit rows and the shipment rows by each pattern (rows x patterns)."""
    p = problem
    col = batch.column_of_entry()
    weights = sp.csr_matrix(
        (batch.qty.astype(np.float64), (col, np.arange(len(col)))), shape=(batch.n, len(col))
    )
    unit = sp.csc_matrix((weights @ coupling.arc_rows[batch.arc]).T)
    key = np.unique(col * p.n_pairs + p.arc_pair[batch.arc])
    pc, pp = key // p.n_pairs, key % p.n_pairs
    srow = coupling.pair_ship_row[pp]
    ok = srow >= 0
    ship = sp.csc_matrix(
        (np.ones(int(ok.sum())), (srow[ok], pc[ok])), shape=(coupling.n_ship, batch.n)
    )
    return unit, ship


def solution_from_patterns(problem: Problem, batch: PatternBatch, chosen: IntArray) -> Solution:
    """The plan that gives every order its pattern ``chosen[o]`` (an index into ``batch``).

    Orders whose pattern ships nothing wait (backorders) or are rejected.
    """
    p = problem
    starts, stops = batch.ptr[chosen], batch.ptr[chosen + 1]
    lengths = stops - starts
    entries = np.repeat(
        starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths
    ) + np.arange(int(lengths.sum()))
    arc_qty = np.zeros(p.n_arcs, np.int64)
    np.add.at(arc_qty, batch.arc[entries], batch.qty[entries])
    shipped = np.bincount(p.arc_line, weights=arc_qty, minlength=p.n_lines).astype(np.int64)
    served = np.bincount(p.line_order, weights=shipped, minlength=p.n_orders) > 0
    rejected = ~served & ~p.order_allow_backorder
    backorder = np.where(rejected[p.line_order], 0, p.line_qty - shipped).astype(np.int64)
    return Solution(arc_qty, backorder, rejected)


def patterns_of_solution(problem: Problem, solution: Solution, orders: IntArray) -> PatternBatch:
    """The patterns that ``solution`` gives to ``orders`` (sorted, unique)."""
    p = problem
    nz = np.flatnonzero(solution.arc_qty > 0)
    return PatternBatch.from_arcs(
        np.asarray(orders, dtype=np.int64), p.line_order[p.arc_line[nz]], nz, solution.arc_qty[nz]
    )


@dataclass(eq=False)
class ColumnPool:
    """All patterns generated so far, in the order they were added."""

    order: list[IntArray] = field(default_factory=list)
    cost: list[FloatArray] = field(default_factory=list)
    ptr: list[IntArray] = field(default_factory=list)
    arc: list[IntArray] = field(default_factory=list)
    qty: list[IntArray] = field(default_factory=list)
    n: int = 0
    _cache: PatternBatch | None = None

    def add(self, batch: PatternBatch, cost: FloatArray) -> IntArray:
        """Append a batch; returns the new columns' indices."""
        self.order.append(batch.order)
        self.cost.append(cost)
        self.ptr.append(np.diff(batch.ptr))
        self.arc.append(batch.arc)
        self.qty.append(batch.qty)
        first = self.n
        self.n += batch.n
        self._cache = None
        return np.arange(first, self.n, dtype=np.int64)

    def all(self) -> PatternBatch:
        if self._cache is None:
            counts = np.concatenate(self.ptr) if self.ptr else np.zeros(0, np.int64)
            self._cache = PatternBatch(
                np.concatenate(self.order) if self.order else np.zeros(0, np.int64),
                np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                np.concatenate(self.arc) if self.arc else np.zeros(0, np.int64),
                np.concatenate(self.qty) if self.qty else np.zeros(0, np.int64),
            )
        return self._cache

    def costs(self) -> FloatArray:
        return np.concatenate(self.cost) if self.cost else np.zeros(0)


def select_patterns(batch: PatternBatch, which: IntArray) -> PatternBatch:
    """The patterns ``which`` of ``batch``, in that order."""
    which = np.asarray(which, dtype=np.int64)
    starts, stops = batch.ptr[which], batch.ptr[which + 1]
    lengths = stops - starts
    entries = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    entries = entries + np.arange(int(lengths.sum()))
    return PatternBatch(
        batch.order[which],
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        batch.arc[entries],
        batch.qty[entries],
    )


def concat_patterns(*batches: PatternBatch) -> PatternBatch:
    """One batch with the patterns of all ``batches``, in order."""
    counts = np.concatenate([np.diff(b.ptr) for b in batches])
    return PatternBatch(
        np.concatenate([b.order for b in batches]),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.concatenate([b.arc for b in batches]),
        np.concatenate([b.qty for b in batches]),
    )


def plan_from_arc_qty(problem: Problem, arc_qty: IntArray) -> Solution:
    """The plan that ships ``arc_qty``: the rest backordered, or rejected where not allowed."""
    p = problem
    shipped = np.bincount(p.arc_line, weights=arc_qty, minlength=p.n_lines).astype(np.int64)
    served = np.bincount(p.line_order, weights=shipped, minlength=p.n_orders) > 0
    rejected = ~served & ~p.order_allow_backorder
    backorder = np.where(rejected[p.line_order], 0, p.line_qty - shipped).astype(np.int64)
    return Solution(arc_qty.astype(np.int64), backorder, rejected)
