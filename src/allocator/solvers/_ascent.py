"""Prices without a master LP: ascent on the Lagrangian restricted to the pooled patterns.

Column generation needs prices for the coupling rows. With a restricted master LP they are its
duals, but at 100,000 orders one solve of that LP takes about 40 s and the early solves' duals
give a Lagrangian value below the zero-price one, so a 180 s run ended with the zero-price bound.
Here the prices come instead from maximising the *restricted Lagrangian*

``L_P(u) = sum_o min_{p in P_o} (c_p + u . A_p) - u . b``

over the pooled patterns ``P_o`` of each order (``A_p``: the pattern's use of the coupling rows,
``b``: their right-hand sides). It is concave and piecewise linear, its maximum is the restricted
master LP's value, and one evaluation is a sparse product and a minimum per order. The ascent is
a projected subgradient method with per-row step sizes (Adam's moment estimates): rows differ by
orders of magnitude in how far their use exceeds their bound, and a common step (Polyak's, or the
volume algorithm's) stalled early.

Each round then prices every order exactly at the ascent's prices (:mod:`._pricing`): that gives
the certified bound ``L(u) <= L_P(u)``, and each order whose exact cheapest pattern beats the
pool's brings it in. Rounds repeat until the two values meet.

The last ascent also gives a primal estimate: the share of its final iterations in which each
pattern was its order's cheapest (an ergodic average, as in the volume algorithm). The plan is
built from it (:func:`plan_from_weights`), contested stock going first to the orders that would
lose most by waiting.

Measured on generated backlogs (seed 1, ``default`` rules, pool of two; ``benchmarks/RESULTS.md``):
10,000 orders, bound 222,880 after 12.7 s (the pattern LP is 223,172; column generation with the
master LP reached 222,581 in a 30 s run); 100,000 orders, 1,914,029 after five rounds (119 s),
where two rounds of the master LP had left the zero-price value 1,771,780.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers._columns import (
    ColumnPool,
    PatternBatch,
    empty_cost,
    pattern_cost,
    pattern_rows,
    select_patterns,
)
from allocator.solvers._primal import complete_from_patterns
from allocator.solvers.lagrangian import Coupling

__all__ = ["Ascent", "PatternDual", "ascend", "initial_step", "plan_from_weights"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: First step of a run, as a share of the problem's typical parcel cost (about one currency
#: unit on generated data, where the median parcel costs 13.2).
STEP_SHARE = 0.075
#: The step halves after this many iterations without a better value.
PATIENCE = 20
#: Adam's decay rates of the first and second moment estimates.
BETA1, BETA2 = 0.9, 0.999


def initial_step(problem: Problem) -> float:
    """A first step proportional to the problem's cost scale (the median parcel cost)."""
    for costs in (problem.pair_shipment_cost, problem.arc_unit_cost, problem.line_backorder_cost):
        positive = costs[costs > 0]
        if len(positive):
            return STEP_SHARE * float(np.median(positive))
    return STEP_SHARE


class PatternDual:
    """The column pool with each pattern's use of the coupling rows, for the ascent.

    Patterns are added in batches; :meth:`value` and :func:`ascend` work on the pool sorted by
    order (rebuilt after an addition). Every order must have a pattern before the first
    evaluation (the empty one is enough).
    """

    def __init__(self, problem: Problem, coupling: Coupling) -> None:
        self.problem = problem
        self.coupling = coupling
        self.pool = ColumnPool()
        self.bound = np.concatenate([coupling.unit_bound, coupling.ship_bound])
        self._use: list[sp.csr_matrix] = []
        self._sorted: tuple[FloatArray, sp.csr_matrix, IntArray, IntArray, IntArray] | None
        self._sorted = None

    @property
    def n_rows(self) -> int:
        return len(self.bound)

    def add(self, batch: PatternBatch, cost: FloatArray) -> None:
        if batch.n == 0:
            return
        unit, ship = pattern_rows(self.problem, self.coupling, batch)
        self._use.append(sp.csr_matrix(sp.vstack([unit, ship]).T))
        self.pool.add(batch, cost)
        self._sorted = None

    def _arrays(self) -> tuple[FloatArray, sp.csr_matrix, IntArray, IntArray, IntArray]:
        """Costs, use (patterns x rows), each order's first pattern, each pattern's order, and
        the pool index of each sorted pattern."""
        if self._sorted is None:
            pool = self.pool.all()
            index = np.argsort(pool.order, kind="stable")
            use = sp.csr_matrix(sp.vstack(self._use, format="csr")[index])
            order = pool.order[index]
            starts = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])
            if len(starts) != self.problem.n_orders:
                raise ValueError("every order needs a pattern in the pool")
            segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
            self._sorted = (self.pool.costs()[index], use, starts, segment, index)
        return self._sorted

    def value(self, price: FloatArray) -> tuple[float, FloatArray, IntArray]:
        """``L_P(price)``, each order's least priced cost, and its cheapest pattern (sorted index)."""
        cost, use, starts, segment, _ = self._arrays()
        priced = cost + use @ price
        least = np.minimum.reduceat(priced, starts)
        # The first pattern of each order at its least cost (an order's patterns are
        # contiguous; indexing by pattern order replaced a binary search, 10 % of a step).
        ties = np.flatnonzero(priced <= least[segment])
        owner = segment[ties]
        first = ties[np.r_[True, owner[1:] != owner[:-1]]]
        return float(least.sum() - price @ self.bound), least, first

    def usage(self, chosen: IntArray) -> FloatArray:
        """Use of each row by the sorted patterns ``chosen``."""
        # Summed over the chosen rows only (a product of the whole transposed pool with a 0/1
        # vector took 6.3 ms per step at 100,000 orders, this 4.7 ms).
        sub = self._arrays()[1][chosen]
        use = np.bincount(sub.indices, weights=sub.data, minlength=self.n_rows)
        return use.astype(np.float64, copy=False)

    def pool_index(self, sorted_index: IntArray) -> IntArray:
        return self._arrays()[4][sorted_index]


@dataclass(frozen=True, eq=False)
class Ascent:
    """Where an ascent ended: its best prices, their restricted value and the step reached."""

    price: FloatArray
    value: float
    step: float
    weights: FloatArray | None  # per pool pattern, when recorded


def ascend(
    dual: PatternDual,
    start: FloatArray,
    *,
    iterations: int,
    step: float,
    record: int = 0,
    deadline: float = math.inf,
) -> Ascent:
    """Maximise the restricted Lagrangian from ``start`` (see the module docstring).

    Parameters
    ----------
    dual
        The pool and its row use.
    start
        Prices to start from (``>= 0``, one per unit row then per shipment row).
    iterations
        Subgradient steps.
    step
        First step size (currency units per row); it halves after :data:`PATIENCE` steps
        without a better value.
    record
        Over this many final iterations, count how often each pattern is its order's cheapest
        (returned as ``weights``, a share per pool pattern).
    deadline
        A :func:`time.perf_counter` time at which to stop early; the weights are then those of
        the cheapest patterns at the best prices.
    """
    price = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    best_price, best_value = price, -math.inf
    m1 = np.zeros(dual.n_rows)
    m2 = np.zeros(dual.n_rows)
    weights = np.zeros(dual.pool.n) if record else None
    since = 0
    for it in range(iterations):
        if time.perf_counter() >= deadline:
            if weights is not None:
                weights = np.zeros(dual.pool.n)
                weights[dual.pool_index(dual.value(best_price)[2])] = 1.0
            break
        value, _, chosen = dual.value(price)
        if weights is not None and it >= iterations - record:
            weights[dual.pool_index(chosen)] += 1.0 / record
        if value > best_value:
            best_price, best_value, since = price, value, 0
        else:
            since += 1
            if since >= PATIENCE:
                step, since = 0.5 * step, 0
        grad = dual.usage(chosen) - dual.bound
        m1 = BETA1 * m1 + (1 - BETA1) * grad
        m2 = BETA2 * m2 + (1 - BETA2) * grad * grad
        m1_hat = m1 / (1 - BETA1 ** (it + 1))
        m2_hat = m2 / (1 - BETA2 ** (it + 1))
        price = np.maximum(price + step * m1_hat / (np.sqrt(m2_hat) + 1e-8), 0.0)
    return Ascent(best_price, best_value, step, weights)


def _fits_in_order(use: sp.csc_matrix, bound: FloatArray) -> npt.NDArray[np.bool_]:
    """Columns (in order) whose use, added to all columns before them, stays within ``bound``.

    Conservative: a column that does not fit still counts for those after it, so the kept
    columns fit together.
    """
    coo = use.tocoo()
    by = np.lexsort((coo.col, coo.row))
    row, col, data = coo.row[by], coo.col[by], coo.data[by]
    total = np.cumsum(data)
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if len(row) else np.zeros(0, int)
    before = np.repeat(total[first] - data[first], np.diff(np.r_[first, len(row)]))
    over = (total - before) > bound[row] + 1e-9
    fits = np.ones(use.shape[1], bool)
    fits[col[over]] = False
    return fits


def plan_from_weights(
    problem: Problem,
    coupling: Coupling,
    pool: PatternBatch,
    weights: FloatArray,
    prices: tuple[FloatArray, FloatArray],
    *,
    threshold: float = 0.5,
    cost: FloatArray | None = None,
    pair_extra: FloatArray | None = None,
    deadline: float = math.inf,
) -> Solution:
    """A feasible plan from pattern weights (an ergodic primal estimate).

    Every order's heaviest pattern that ships and weighs at least ``threshold`` is kept while it
    fits beside those kept before it; the other orders are placed by the priced greedy
    completion against the stock left. Both go in order of *regret*: what the order saves by
    shipping rather than waiting (its empty pattern's cost minus its pattern's), for the others
    weighted by how often the ascent shipped them. Where two orders want the last units, the
    one that would lose more by waiting gets them; the other mostly has another location.

    Measured on two generated backlogs of 10,000 orders (seeds 1 and 2, the 30 s pools): taken
    heaviest first instead, the plans after moves and flow cost 232,081 and 218,828; in regret
    order 225,886 and 215,246 (ship-complete orders, which cannot split, had been left waiting
    by orders that had another location).

    ``cost`` is each pool pattern's cost (with ``pair_extra``), when already known.
    """
    p = problem
    if cost is None:
        cost = pattern_cost(p, pool, pair_extra)
    by = np.lexsort((np.arange(pool.n), -weights, pool.order))
    first = np.r_[True, pool.order[by[1:]] != pool.order[by[:-1]]] if pool.n else np.zeros(0, bool)
    top = by[first]
    owner, weight = pool.order[top], weights[top]
    ships = np.diff(pool.ptr)[top] > 0
    wait = empty_cost(p)
    candidates = np.flatnonzero(ships & (weight >= threshold))
    regret = wait[owner[candidates]] - cost[top[candidates]]
    candidates = candidates[np.lexsort((owner[candidates], -regret))]
    chosen = np.full(p.n_orders, -1, np.int64)
    if len(candidates):
        unit, ship = pattern_rows(p, coupling, select_patterns(pool, top[candidates]))
        keep = _fits_in_order(unit.tocsc(), coupling.unit_bound)
        keep &= _fits_in_order(ship.tocsc(), coupling.ship_bound)
        chosen[owner[candidates[keep]]] = top[candidates[keep]]
    # The rest: regret of the cheapest shipping pattern, times the share of the ascent's
    # iterations in which the order shipped (at least 1 %).
    shipping = np.diff(pool.ptr) > 0
    cheapest = np.full(p.n_orders, np.inf)
    np.minimum.at(cheapest, pool.order[shipping], cost[shipping])
    shipped = np.bincount(pool.order[shipping], weights=weights[shipping], minlength=p.n_orders)
    rank = np.where(np.isfinite(cheapest), wait - cheapest, 0.0) * np.maximum(shipped, 0.01)
    return complete_from_patterns(
        p,
        coupling,
        pool,
        chosen,
        rank,
        prices[0],
        prices[1],
        pair_extra=pair_extra,
        deadline=deadline,
    )
