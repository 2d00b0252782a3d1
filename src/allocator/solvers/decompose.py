"""The large-scale optimiser: price-directed decomposition with a certified bound.

The sourcing model couples orders only through stock, location capacities and side limits
(:mod:`~allocator.solvers.lagrangian`). With prices on those rows every order solves its own
small problem (:mod:`._pricing`), so the work splits into partitions of orders that run on any
:class:`concurrent.futures.Executor`. The optimiser:

1. **Column generation** (Dantzig-Wolfe). A restricted master LP chooses a convex combination of
   known patterns per order under the coupling rows; its duals price the rows; every order prices
   its cheapest pattern at those prices; patterns with negative reduced cost join the master.
   Dual smoothing (Wentges) keeps the prices from oscillating. Each pricing round gives the
   Lagrangian value ``sum_o Z_o(u, v) - u.b - v.s``, a **certified lower bound**; the best one is
   reported. The bound is at least the LP bound of the compact model and usually well above it,
   since each order's pattern choice is convexified exactly.
   The master's columns are bounded by 1 (implied by the convexity rows): a re-solve after
   new columns then warm-starts the dual simplex by bound flips, about four times faster on
   10,000 orders than with unbounded columns.
   Above :data:`ASCENT_ORDERS` orders the prices come instead from an ascent on the Lagrangian
   restricted to the pooled patterns (:mod:`._ascent`), with no LP at all: one master LP solve
   took about 40 s at 100,000 orders, and the bound there had stayed at its zero-price value.
2. **Primal plans**. With the master LP, a dive rounds the master first: columns of weight at
   least one half are fixed (while their stock fits) and the LP is re-solved, a few times.
   Orders whose master column is then integral and ships something keep it; the others (those
   left waiting included, ranked last) are placed by a priced greedy completion against the
   residual stock (:mod:`._primal`). With the ascent, the plan starts the same way from the
   ascent's pattern weights instead (:func:`._ascent.plan_from_weights`), the orders that would
   lose most by waiting served first (ship-complete orders, which cannot split, had been left
   waiting by orders that had another location). Then best-response moves polish the plan,
   alternated with an exact min-cost flow that re-sources every one-unit order at once
   (:mod:`._flow`: the chains of moves that serve one more unit of scarce stock).
   With time left, neighbourhoods are re-solved exactly, in turns: each order the plan leaves
   short with the orders holding the stock it lacks, as a MILP of the full model (a "rescue");
   contested orders by set partitioning over the pooled patterns; and linked orders as MILPs
   of the full model (fix-and-solve).

Measured choices (``benchmarks/RESULTS.md``): plain subgradient steps on the exact Lagrangian
(one pricing of every order per step) improved the bound by only a few tenths of a percent in
150 rounds on the 1,000-order instance, where column generation converged to the pattern LP in
8 rounds (the ascent takes its hundreds of steps on the pooled patterns, where a step costs a
sparse product, and prices every order once per round); a restricted master MILP over the generated columns
alone was 1-17 % above the best plan (the columns that make an integer plan are rarely
generated at the LP optimum), so primal plans come from priced completion and fix-and-solve.

Determinism: partitions are fixed by the problem size, results are combined in partition order,
HiGHS runs single-threaded with the given seed, so the same input and seed give the same plan
whatever the executor, unless the time limit cuts a phase short.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.errors import InputError
from allocator.plan import (
    Plan,
    Solution,
    Status,
    check_feasible,
    cost_quantum,
    evaluate,
    round_up_bound,
)
from allocator.problem import Problem
from allocator.solvers._ascent import PatternDual, ascend, initial_step, plan_from_weights
from allocator.solvers._columns import (
    ColumnPool,
    PatternBatch,
    empty_cost,
    pattern_cost,
    pattern_rows,
    patterns_of_solution,
    plan_from_arc_qty,
)
from allocator.solvers._flow import improve_single_units, single_unit_orders
from allocator.solvers._groups import (
    GROUP_ORDERS,
    GroupBound,
    GroupJobs,
    crossover,
    kept_prices,
    start_group_bound,
)
from allocator.solvers._lns import (
    improve_neighbourhood,
    improve_with_patterns,
    neighbourhoods,
    order_links,
    rescue_neighbourhoods,
)
from allocator.solvers._lp import HighsHandle
from allocator.solvers._pricing import OrderBlock, Priced, make_block, price_block
from allocator.solvers._primal import complete_from_patterns, complete_greedy, improve_moves
from allocator.solvers.lagrangian import Coupling, coupling_rows

__all__ = [
    "DecomposeResult",
    "group_bound",
    "lagrangian_bound",
    "optimize",
    "solve_decomposed",
]

log = logging.getLogger("allocator")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Arcs per partition of orders: large enough that numpy amortises its overhead, small enough
#: that a process pool balances. Fixed by the problem, never by the executor.
PARTITION_ARCS = 250_000
#: Above this many orders the first master starts from each order's cheapest pattern only.
LARGE_ORDERS = 20_000
#: Under a time limit, most seconds one neighbourhood's MILP may take (one slow neighbourhood
#: took 27 of 46 s in a pass on 10,000 orders; its node limit does not bound the root's time).
NEIGHBOURHOOD_SECONDS = 5.0
#: The same for a group around an order the plan leaves short (most solve in well under 1 s; a
#: few of 150 orders ran to any limit without gain).
RESCUE_SECONDS = 2.0
#: Under a time limit, no neighbourhood starts with less than this left, plus
#: :data:`FINISH_SECONDS_PER_ARC` per arc: building its MILP and HiGHS's own overrun had ended
#: 1,000-order runs 0.1-0.2 s past a 5 s limit.
MIN_NEIGHBOURHOOD_SECONDS = 0.1
#: Seconds per arc kept for work that ends a step of the search and cannot be cut (pricing
#: the plan): 100,000 orders (9.4 million arcs) had ended 0.3 s past the limit in the search.
FINISH_SECONDS_PER_ARC = 3e-8
#: Seconds per arc kept, under a time limit, for pricing and checking the returned plan after
#: the search (at 9.4 million arcs 0.1 s and 0.35-0.9 s: a 180 s run had returned after
#: 180.8 s with 30 ns per arc kept).
CHECK_SECONDS_PER_ARC = 1e-7
#: Most passes of the one-unit-order flow and moves after the greedy completion.
FLOW_PASSES = 4
#: Expected seconds of one flow-and-moves pass per arc of the one-unit orders, before one is
#: measured (about 1 s for 130,000 arcs on 10,000 orders, doubled for slower machines).
FLOW_SECONDS_PER_ARC = 1.5e-5
#: A dive fixes every column whose master weight is at least this ...
DIVE_THRESHOLD = 0.5
#: ... or, where none is, this share of the fractional orders (the heaviest) per step.
DIVE_SHARE = 0.25
#: Above this many orders the rows are priced by the ascent (:mod:`._ascent`), not the master LP.
ASCENT_ORDERS = 5_000
#: Subgradient steps per round of the ascent (about 1.5 ms each at 10,000 orders, 19 ms at 100,000).
ASCENT_ITERATIONS = 300
#: Final iterations of each ascent that count towards the pattern weights the plan starts from.
ASCENT_RECORD = 100
#: Each round's ascent starts with this share of the last round's first step ...
ASCENT_STEP_DECAY = 0.7
#: ... but not below this share of the run's first step.
ASCENT_STEP_FLOOR = 0.05
#: A pricing round at the ascent's prices is expected to take this many times the zero-price
#: round before one is measured (100,000 orders: 16 s against 5.4 s).
ASCENT_PRICING_FACTOR = 3.0
#: Past its share of the limit, the ascent may go on until this share ...
ASCENT_LATE_SHARE = 0.7
#: ... while the last round left the exact Lagrangian this far (relative) below the restricted
#: one: on 100,000 orders the third and fourth rounds (ending at about 90 and 110 s of 180) raised
#: the bound by 6.4 % and 1.2 %, more than any plan step gained in that time.
ASCENT_LATE_GAP = 5e-3
#: Most orders for which a run takes the groups' bound (10,000 orders: its 319 groups took 17 s
#: on two workers for 0.07 % of bound, and none finished inside a 30 s run).
GROUP_MAX_ORDERS = 5_000
#: Share of the time left after column generation that the groups' bound may take: a serial run
#: keeps it at the end of its limit, and after a search that stalled early the groups get at most
#: this much more time (a run with a limit returns soon after its search stalls).
GROUP_SHARE = 0.3
#: With ``group_growth``, the groups are taken again larger while more than this many seconds
#: are left.
GROUP_GROWTH_SECONDS = 1.0
#: Relative gap at which a plan counts as optimal (the MILP solvers' default tolerance).
OPTIMAL_GAP = 1e-6


@dataclass(frozen=True, eq=False)
class DecomposeResult:
    """What the decomposition found (the plan is built by :func:`solve_decomposed`)."""

    solution: Solution
    cost: float
    lower_bound: float
    rounds: int
    history: list[dict[str, float]]
    stopped_by_time: bool
    prices: tuple[FloatArray, FloatArray]


def _partitions(problem: Problem, target_arcs: int = PARTITION_ARCS) -> list[IntArray]:
    """Contiguous ranges of orders with about ``target_arcs`` arcs each."""
    arcs_per_order = np.diff(problem.line_arc_start[problem.order_line_start])
    cum = np.cumsum(arcs_per_order)
    n_parts = max(1, math.ceil(int(cum[-1]) / target_arcs)) if len(cum) else 1
    cuts = np.searchsorted(cum, np.arange(1, n_parts) * (cum[-1] / n_parts))
    bounds = np.unique(np.concatenate([[0], cuts, [problem.n_orders]]))
    return [np.arange(a, b, dtype=np.int64) for a, b in itertools.pairwise(bounds.tolist())]


def _price_task(
    block: OrderBlock, unit_price: FloatArray, ship_price: FloatArray, alternatives: int
) -> Priced:
    """Worker entry point: price one partition (module-level so that it pickles)."""
    return price_block(block, unit_price, ship_price, alternatives=alternatives)


@dataclass(eq=False)
class _Round:
    """One pricing round over all orders, in global indices."""

    value: FloatArray
    exact: npt.NDArray[np.bool_]
    best: PatternBatch  # one pattern per order (empty ones included)
    alternatives: PatternBatch | None


def _price_all(
    runner: Any,
    blocks: list[OrderBlock],
    n_orders: int,
    unit: FloatArray,
    ship: FloatArray,
    alternatives: int,
) -> _Round:
    results: list[Priced] = runner.map(_price_task, unit, ship, alternatives)
    value = np.empty(n_orders)
    exact = np.empty(n_orders, bool)
    arc_parts, qty_parts, ord_parts = [], [], []
    alt_o, alt_cnt, alt_arc, alt_qty = [], [], [], []
    for block, res in zip(blocks, results, strict=True):
        value[block.orders] = res.value
        exact[block.orders] = res.exact
        arcs = block.arcs[res.arc]
        arc_parts.append(arcs)
        qty_parts.append(res.qty)
        ord_parts.append(block.orders[block.line_order[block.arc_line[res.arc]]])
        if alternatives and res.alt_order is not None:
            assert res.alt_ptr is not None
            assert res.alt_arc is not None
            assert res.alt_qty is not None
            alt_o.append(block.orders[res.alt_order])
            alt_cnt.append(np.diff(res.alt_ptr))
            alt_arc.append(block.arcs[res.alt_arc])
            alt_qty.append(res.alt_qty)
    orders = np.arange(n_orders, dtype=np.int64)
    best = PatternBatch.from_arcs(
        orders, np.concatenate(ord_parts), np.concatenate(arc_parts), np.concatenate(qty_parts)
    )
    alts = None
    if alt_o:
        cnt = np.concatenate(alt_cnt)
        alts = PatternBatch(
            np.concatenate(alt_o),
            np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64),
            np.concatenate(alt_arc),
            np.concatenate(alt_qty),
        )
    return _Round(value, exact, best, alts)


class _Master:
    """The restricted master LP over the column pool."""

    def __init__(self, problem: Problem, coupling: Coupling, seed: int) -> None:
        self.problem = problem
        self.coupling = coupling
        n_o = problem.n_orders
        lower = np.concatenate([np.ones(n_o), np.full(coupling.n_unit + coupling.n_ship, -np.inf)])
        upper = np.concatenate([np.ones(n_o), coupling.unit_bound, coupling.ship_bound])
        self.lp = HighsHandle(lower, upper, seed=seed)
        self.pool = ColumnPool()

    def add(self, batch: PatternBatch, cost: FloatArray) -> None:
        if batch.n == 0:
            return
        unit, ship = pattern_rows(self.problem, self.coupling, batch)
        convexity = sp.csc_matrix(
            (np.ones(batch.n), (batch.order, np.arange(batch.n))),
            shape=(self.problem.n_orders, batch.n),
        )
        self.lp.add_columns(cost, np.ones(batch.n), sp.vstack([convexity, unit, ship]))
        self.pool.add(batch, cost)

    def solve(
        self, time_limit: float | None
    ) -> tuple[float, FloatArray, FloatArray, FloatArray, FloatArray] | None:
        res = self.lp.solve_lp(time_limit=time_limit)
        if res.x is None or res.row_dual is None:
            return None
        n_o = self.problem.n_orders
        d = res.row_dual
        sigma = d[:n_o]
        unit = np.maximum(-d[n_o : n_o + self.coupling.n_unit], 0.0)
        ship = np.maximum(-d[n_o + self.coupling.n_unit :], 0.0)
        return res.objective, res.x, sigma, unit, ship


def _priced_cost(
    problem: Problem,
    coupling: Coupling,
    batch: PatternBatch,
    cost: FloatArray,
    unit: FloatArray,
    ship: FloatArray,
) -> FloatArray:
    """Cost of each pattern plus the prices of the rows it uses."""
    use_u, use_s = pattern_rows(problem, coupling, batch)
    return np.asarray(cost + use_u.T @ unit + use_s.T @ ship, dtype=np.float64)


def _progress(enabled: bool | None, total: int) -> Any:
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - optional dependency
        return None
    return tqdm(total=total, desc="decompose", unit="round", leave=False)


def solve_decomposed(
    problem: Problem,
    *,
    time_limit: float | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    warm_start: Solution | None = None,
    pair_extra_cost: FloatArray | None = None,
    gap_target: float = 1e-6,
    max_rounds: int = 60,
    alternatives: int | None = None,
    primal: bool = True,
    max_new: int = 5_000,
    row_scale: float = 1.0,
    cg_share: float = 0.5,
    partition_arcs: int = PARTITION_ARCS,
    pattern_passes: int = 8,
    pattern_size: int = 2500,
    pattern_nodes: int = 200,
    lns_passes: int = 8,
    lns_size: int = 150,
    lns_nodes: int = 500,
    rescue_passes: int = 8,
    rescue_size: int = 150,
    progress: bool | None = None,
    on_round: Callable[[dict[str, float]], None] | None = None,
    dive: bool = True,
    prices: str | None = None,
    ascent_iterations: int = ASCENT_ITERATIONS,
    group_orders: int = GROUP_ORDERS,
    group_growth: int = 0,
) -> DecomposeResult:
    """Optimise ``problem`` by price-directed decomposition.

    Parameters
    ----------
    problem
        The compiled problem.
    time_limit
        Seconds for the whole run; the best plan and bound so far are returned when it expires.
    seed
        HiGHS seed (the run is otherwise deterministic).
    executor
        Runs the pricing partitions (``None``: in this process).
    warm_start
        A feasible plan to start from (e.g. yesterday's, mapped onto this problem).
    pair_extra_cost
        Extra fixed cost per (order, location) pair, added to its parcel cost (change penalties).
    gap_target
        Stop once the plan is within this relative gap of the bound.
    max_rounds
        Most column-generation rounds.
    alternatives
        Single-location patterns per order added to the first master besides the cheapest
        (default: 4 up to :data:`LARGE_ORDERS` orders, none beyond, where the first master LP
        would grow too large).
    max_new
        Most columns added to the master per round.
    row_scale
        Multiplies the bounds of the coupling rows (prices for a sample of the orders; the
        bound and plan then refer to that scaled problem).
    cg_share
        With a time limit, the share of it that column generation may use before the plan is
        built (when it has not converged earlier; all of it when ``primal`` is false).
    partition_arcs
        Target arcs per partition of orders (the unit of parallel work).
    primal
        Build a plan (``False``: only the bound and prices; the plan returned is then the
        empty one, every order waiting or rejected).
    pattern_passes, pattern_size, pattern_nodes
        Passes of re-choosing pooled patterns on neighbourhoods, orders per neighbourhood, and
        the node limit of each set-partitioning MILP.
    lns_passes, lns_size, lns_nodes
        Passes of fix-and-solve with the full model, orders per neighbourhood, node limit.
    rescue_passes, rescue_size
        Passes of fix-and-solve around the orders the plan leaves short (with the orders that
        hold their stock; :func:`._lns.rescue_neighbourhoods`) and the most orders per group.
    progress
        Show a progress bar (``None``: when stderr is a terminal).
    on_round
        Called with each round's record (round, lp, bound, best, seconds).
    dive
        Round the master LP by fixing and re-solving before the greedy completion (``False``:
        the completion starts from the master as the column generation left it).
    prices
        How the coupling rows are priced between pricing rounds: ``"lp"``, by the duals of the
        restricted master LP; ``"ascent"``, by a subgradient ascent on the Lagrangian restricted
        to the pooled patterns (no LP; :mod:`._ascent`), the plan then starting from the ascent's
        pattern weights. ``None``: ``"ascent"`` above :data:`ASCENT_ORDERS` orders.
    ascent_iterations
        Subgradient steps per round of the ascent.
    group_orders
        With the master LP's prices (and at most :data:`GROUP_MAX_ORDERS` orders), the bound is
        also taken over groups of orders linked by contested stock, each group solved whole
        (:mod:`._groups`); the most orders in a group (``0``: no groups). On a pool the groups
        are solved while the plan is searched; a serial run with a time limit solves them in
        the last :data:`GROUP_SHARE` of the time left after column generation.
    group_growth
        With a time limit, take the groups again this many times larger, round after round,
        until the limit or until no row is left to add (``0``: not; 8 measured best): on an
        executor as soon as the last groups are solved, while the plan is searched; serially
        once the search stalls. Runs then use their whole limit for the bound instead of
        returning when the search stalls.

    Returns
    -------
    DecomposeResult
    """
    t0 = time.perf_counter()
    deadline = math.inf if time_limit is None else t0 + time_limit

    def left() -> float:
        return deadline - time.perf_counter()

    p = problem
    if prices is None:
        prices = "ascent" if p.n_orders > ASCENT_ORDERS else "lp"
    if prices not in ("lp", "ascent"):
        raise InputError(f"prices must be 'lp' or 'ascent', got {prices!r}", source="prices")
    use_lp = prices == "lp"
    if alternatives is None:
        # The ascent's pool costs no LP: alternatives only add cheap columns there.
        alternatives = 4 if p.n_orders <= LARGE_ORDERS or not use_lp else 0
    coupling = coupling_rows(p, row_scale)
    parts = _partitions(p, partition_arcs)
    blocks = [
        make_block(
            p, part, coupling.arc_rows, coupling.pair_ship_row, pair_extra_cost=pair_extra_cost
        )
        for part in parts
    ]
    from allocator.parallel import BlockRunner

    runner = BlockRunner(blocks, executor)
    master: _Master | PatternDual = (
        _Master(p, coupling, seed) if use_lp else PatternDual(p, coupling)
    )
    empties = PatternBatch(
        np.arange(p.n_orders, dtype=np.int64),
        np.zeros(p.n_orders + 1, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )
    master.add(empties, empty_cost(p))

    zero_u, zero_s = np.zeros(coupling.n_unit), np.zeros(coupling.n_ship)
    greedy: Future[Solution] | None = None
    started = time.perf_counter()
    if primal and executor is not None:
        # The greedy baseline (below) is built in a thread of this process while the workers
        # price at zero prices and this process only waits for them (100,000 orders: 11.8 s
        # and 5.4 s); the plan does not depend on it.
        from allocator.solvers.greedy import greedy_baseline

        with ThreadPoolExecutor(1) as thread:
            greedy = thread.submit(lambda: greedy_baseline(p).solution)
            first = _price_all(runner, blocks, p.n_orders, zero_u, zero_s, alternatives)
            zero_seconds = time.perf_counter() - started
            greedy.result()
    else:
        first = _price_all(runner, blocks, p.n_orders, zero_u, zero_s, alternatives)
        zero_seconds = time.perf_counter() - started
    best_bound = float(first.value.sum())
    center_u, center_s = zero_u, zero_s
    served = np.diff(first.best.ptr) > 0
    initial = _select(first.best, np.flatnonzero(served))
    master.add(initial, pattern_cost(p, initial, pair_extra_cost))
    if first.alternatives is not None and first.alternatives.n:
        master.add(first.alternatives, pattern_cost(p, first.alternatives, pair_extra_cost))
    incumbent: Solution | None = None
    incumbent_cost = math.inf
    if primal:
        # The greedy baseline is the floor: the result is never worse than it.
        from allocator.solvers.greedy import greedy_baseline

        incumbent = greedy.result() if greedy is not None else greedy_baseline(p).solution
        incumbent_cost = evaluate_with_extra(p, incumbent, pair_extra_cost)
        # Its patterns go into the first master where they differ from the orders' cheapest
        # ones: the master then starts at or below the greedy plan (100,000 orders: first
        # master LP 2.22 million instead of 5.76 million, plan 2.13 instead of 2.20 million).
        mine = patterns_of_solution(p, incumbent, np.arange(p.n_orders))
        differs = (np.diff(mine.ptr) > 0) & (_pattern_keys(mine) != _pattern_keys(first.best))
        mine = _select(mine, np.flatnonzero(differs))
        master.add(mine, pattern_cost(p, mine, pair_extra_cost))
    if warm_start is not None and not check_feasible(p, warm_start):
        warm_cost = evaluate_with_extra(p, warm_start, pair_extra_cost)
        if warm_cost <= incumbent_cost:
            incumbent, incumbent_cost = warm_start, warm_cost
        start_patterns = patterns_of_solution(p, warm_start, np.arange(p.n_orders))
        keep = np.diff(start_patterns.ptr) > 0
        start_patterns = _select(start_patterns, np.flatnonzero(keep))
        master.add(start_patterns, pattern_cost(p, start_patterns, pair_extra_cost))

    history: list[dict[str, float]] = []
    bar = _progress(progress, max_rounds)
    lp_value = math.inf
    x: FloatArray | None = None
    duals: tuple[FloatArray, FloatArray] = (zero_u, zero_s)
    last_priced: tuple[FloatArray, FloatArray] | None = None  # duals priced as they were
    stopped_by_time = False
    rounds = 0
    last_lp_seconds = 0.0
    alpha = 0.5
    # Without a plan to build, column generation may use the whole limit.
    share = cg_share if primal else 1.0
    cg_deadline = t0 + share * time_limit if time_limit is not None else math.inf
    weights: FloatArray | None = None

    def log_round(record: dict[str, float]) -> None:
        history.append(record)
        if on_round is not None:
            on_round(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(lp=f"{record['lp']:.2f}", bound=f"{record['bound']:.2f}")

    if not use_lp:
        assert isinstance(master, PatternDual)
        asc = _ascent_rounds(
            p,
            coupling,
            master,
            runner,
            blocks,
            best_bound,
            deadline=deadline,
            cg_deadline=cg_deadline,
            late_deadline=t0 + max(share, ASCENT_LATE_SHARE) * time_limit
            if time_limit is not None
            else math.inf,
            max_rounds=max_rounds,
            gap_target=gap_target,
            iterations=ascent_iterations,
            pair_extra=pair_extra_cost,
            log_round=log_round,
            t0=t0,
            pricing_seconds=ASCENT_PRICING_FACTOR * zero_seconds,
        )
        rounds, stopped_by_time, weights = asc.rounds, asc.stopped_by_time, asc.weights
        lp_value, best_bound = asc.value, asc.bound
        center_u, center_s = asc.best_price
        duals = asc.price
    for rounds in range(1, max_rounds + 1) if use_lp else ():
        assert isinstance(master, _Master)
        if left() <= 0:
            stopped_by_time = True
            break
        if time.perf_counter() >= cg_deadline and rounds > 1:
            stopped_by_time = True  # the rest of the time goes to the plan
            break
        # A re-solve may use the column generation's share only (the plan keeps the rest): at
        # 10,000 orders one re-solve can take 10-20 s, and a 30 s run spent all of it there.
        lp_limit = None
        if math.isfinite(deadline):
            until = deadline if rounds == 1 else min(deadline, cg_deadline)
            lp_limit = max(until - time.perf_counter(), 0.01)
            if rounds > 1 and lp_limit < last_lp_seconds:
                # The last solve took longer than what is left: a re-solve cut short gives
                # nothing, and the plan can use the time (10,000 orders, 30 s: the first
                # master takes about 10 s, its re-solve did not finish in the 7 s left).
                stopped_by_time = True
                break
        lp_started = time.perf_counter()
        solved = master.solve(lp_limit)
        last_lp_seconds = time.perf_counter() - lp_started
        if solved is None:
            stopped_by_time = lp_limit is not None or left() <= 0
            break
        lp_value, x, sigma, lp_u, lp_s = solved
        duals = (lp_u, lp_s)
        added = 0
        a = alpha
        while True:
            unit = a * center_u + (1 - a) * lp_u
            ship = a * center_s + (1 - a) * lp_s
            rnd = _price_all(runner, blocks, p.n_orders, unit, ship, 0)
            bound = float(rnd.value.sum() - unit @ coupling.unit_bound - ship @ coupling.ship_bound)
            if bound > best_bound:
                best_bound, center_u, center_s = bound, unit, ship
            served_orders = np.flatnonzero(np.diff(rnd.best.ptr) > 0)
            cand = _select(rnd.best, served_orders)
            cand_cost = pattern_cost(p, cand, pair_extra_cost)
            reduced = _priced_cost(p, coupling, cand, cand_cost, lp_u, lp_s) - sigma[cand.order]
            negative = reduced < -1e-7 * np.maximum(1.0, np.abs(sigma[cand.order]))
            if negative.any() or a == 0.0:
                break
            a = 0.0  # mispricing: the smoothed prices found nothing; price at the LP duals
        if a == 0.0:
            last_priced = duals
        if negative.any():
            # The most negative columns first, at most max_new per round: a warm-started LP
            # re-solves quickly after a few thousand new columns, slowly after tens of
            # thousands (the first rounds at 100,000 orders).
            picked = np.flatnonzero(negative)
            if len(picked) > max_new:
                picked = picked[np.argsort(reduced[picked], kind="stable")[:max_new]]
                picked.sort()
            master.add(_select(cand, picked), cand_cost[picked])
            added = len(picked)
        record = {
            "round": float(rounds),
            "lp": float(lp_value),
            "bound": float(best_bound),
            "columns": float(master.pool.n),
            "added": float(added),
            "seconds": time.perf_counter() - t0,
        }
        log_round(record)
        gap_lp = (lp_value - best_bound) / max(abs(lp_value), 1e-9)
        if added == 0 or gap_lp <= gap_target:
            break

    if x is not None and stopped_by_time and duals is not last_priced and left() > 0:
        # Cut short, the rounds priced at smoothed prices; the last master's own duals often
        # give a better Lagrangian value (10,000 orders, 30 s: 220,223 -> 221,106; 0.7-0.9 s).
        rnd = _price_all(runner, blocks, p.n_orders, duals[0], duals[1], 0)
        value = float(rnd.value.sum() - duals[0] @ coupling.unit_bound)
        value -= float(duals[1] @ coupling.ship_bound)
        best_bound = max(best_bound, value)
    # ---- a stronger bound: groups of orders linked by contested stock, each solved whole ----
    group_jobs: GroupJobs | None = None
    group_reserve = 0.0  # kept at the end of a serial run for the groups
    group_time = math.inf  # most time the groups may add after the search
    group_plans: list[GroupBound] = []  # groups' plans not yet crossed with the incumbent

    def fold_groups(until: float, *, last: bool = False) -> None:
        """Take the groups' bound once they are solved (waiting at most ``until``).

        ``last``: take what is solved even if nothing more can be waited for (and cancel the
        groups not started).
        """
        nonlocal best_bound, group_jobs
        if group_jobs is None:
            return
        if not last and until <= time.perf_counter() and not group_jobs.ready():
            return
        found = group_jobs.result(until)
        group_jobs = None
        best_bound = max(best_bound, found.bound)
        if found.plans:
            group_plans.append(found)
        _log(
            history,
            on_round,
            bar,
            _record(len(history) + 1, lp_value, best_bound, incumbent_cost, t0, "groups"),
        )

    groups_on = (
        use_lp
        and x is not None
        and group_orders > 1
        and p.n_orders <= GROUP_MAX_ORDERS
        and left() > 0
    )
    preferred = np.zeros(coupling.n_unit, dtype=bool)
    at_price: FloatArray | None = None
    kept_before = 0  # rows kept by the last groups started

    def start_groups(budget: int) -> GroupJobs | None:
        """Start the groups of at most ``budget`` orders (``None``: no row more than before)."""
        nonlocal at_price, kept_before
        kept_u, kept, labels = kept_prices(
            p, coupling, duals[0], budget=budget, preferred=preferred
        )
        if int(kept.sum()) <= kept_before:
            return None
        kept_before = int(kept.sum())
        at_zero = _price_all(runner, blocks, p.n_orders, kept_u, duals[1], 0).value
        if at_price is None:
            at_price = _price_all(runner, blocks, p.n_orders, duals[0], duals[1], 0).value
        return start_group_bound(
            p,
            coupling,
            kept,
            labels,
            duals[0],
            duals[1],
            at_zero,
            at_price,
            pair_extra=pair_extra_cost,
            executor=executor,
            time_limit=max(left(), 0.01) if math.isfinite(deadline) else None,
            seed=seed,
        )

    group_budget = group_orders  # orders in the largest group of the last groups started
    grown_out = False  # the last groups kept every positive-priced row: nothing left to grow

    def grow() -> bool:
        """Start groups ``group_growth`` times larger (``False``: no row is left to add)."""
        nonlocal group_jobs, group_budget, grown_out
        group_budget *= group_growth
        group_jobs = start_groups(group_budget)
        grown_out = group_jobs is None
        return not grown_out

    def growing() -> bool:
        """Whether larger groups are wanted and have the time (``group_growth``, a limit)."""
        return (
            groups_on
            and group_growth > 1
            and not grown_out
            and math.isfinite(deadline)
            and left() > GROUP_GROWTH_SECONDS
            and _gap(incumbent_cost, best_bound) > gap_target
        )

    if groups_on:
        assert x is not None
        # The rows the LP's split orders use come first (1,000 orders, 150-order groups: bound
        # 16,684.32 against 16,682.92 with every positive-priced row in one queue).
        split = np.flatnonzero((x > 1e-6) & (x < 1 - 1e-6))
        split_use, _ = pattern_rows(p, coupling, _select(master.pool.all(), split))
        preferred[split_use.indices] = True
        group_jobs = start_groups(group_orders)
        grown_out = group_jobs is None
        if group_jobs is not None:
            if math.isfinite(deadline):
                group_time = GROUP_SHARE * left()
            if executor is None and math.isfinite(deadline):
                # Serial: the groups get the end of the run, the plan's first steps (which
                # gain most) the time before it. Measured on three 1,000-order instances, 5 s,
                # groups first: two bounds gained nothing (the largest group was cut short)
                # and one plan lost 17; groups last: all three bounds gained, plans within 2.4.
                group_reserve = group_time
            elif executor is None:
                fold_groups(math.inf)
    end = deadline  # the run's own end: the plan's search stops group_reserve before it
    deadline = end - group_reserve

    # ---- primal plans ------------------------------------------------------------------------
    candidate = None
    fractional = np.zeros(0, np.int64)
    if not primal:
        pattern_passes = lns_passes = rescue_passes = 0
    if primal and weights is not None and left() > 0:
        pool = master.pool.all()
        w = np.concatenate([weights, np.zeros(pool.n - len(weights))])
        fractional = np.unique(pool.order[(w > 1e-9) & (w < 1 - 1e-9)])
        candidate = plan_from_weights(
            p,
            coupling,
            pool,
            w,
            duals,
            cost=master.pool.costs(),
            pair_extra=pair_extra_cost,
            deadline=deadline,
        )
    if primal and x is not None and left() > 0:
        assert isinstance(master, _Master)
        pool = master.pool.all()
        xs = np.concatenate([x, np.zeros(pool.n - len(x))])
        fractional = np.unique(pool.order[(xs > 1e-6) & (xs < 1 - 1e-6)])
        best_greedy: tuple[float, Solution] | None = None
        # With a time limit, the second variant only when half of it is left: the moves and
        # the flow below gain more for the time (10,000 orders, 60 s: the two completions
        # took the 23 s left after column generation and the moves never ran).
        half = 0.5 * time_limit if time_limit is not None else 0.0
        x_dive = x
        if dive:
            # At most half of the time left: the completion and the moves need the rest.
            now = time.perf_counter()
            x_dive = _dive(p, coupling, master, x, now + 0.5 * (deadline - now))
        for scale in (0.5, 1.0) if p.n_orders <= LARGE_ORDERS else (0.5,):
            if best_greedy is not None and left() <= half:
                break
            scaled = (duals[0] * scale, duals[1] * scale)
            sol = _plan_from_master(p, coupling, master, x_dive, scaled, pair_extra_cost, deadline)
            c = evaluate_with_extra(p, sol, pair_extra_cost)
            if best_greedy is None or c < best_greedy[0]:
                best_greedy = (c, sol)
        assert best_greedy is not None
        candidate = best_greedy[1]
    if candidate is not None and left() > 0:
        # Best-response moves for the orders the master left fractional (all orders on
        # small problems).
        movers = fractional if p.n_orders > LARGE_ORDERS else None
        candidate = improve_moves(
            p,
            coupling,
            candidate,
            pair_extra=pair_extra_cost,
            rounds=3,
            orders=movers,
            deadline=deadline,
        )
        candidate = _flow_and_moves(p, coupling, candidate, pair_extra_cost, deadline, movers)
    if candidate is None and not primal:
        candidate = plan_from_arc_qty(p, np.zeros(p.n_arcs, np.int64))
    if candidate is None:
        # No master solution (its first LP used the whole limit, as at 612,000 orders): a greedy
        # completion, unless the time is up; then the greedy baseline stays the plan (this pass
        # over every order had run 130-150 s past a 900 s limit).
        candidate = complete_greedy(
            p,
            coupling,
            Solution.empty(p),
            np.arange(p.n_orders),
            np.arange(p.n_orders),
            zero_u,
            zero_s,
            pair_extra=pair_extra_cost,
            deadline=deadline,
        )
    candidate_cost = evaluate_with_extra(p, candidate, pair_extra_cost)
    if candidate_cost < incumbent_cost:
        incumbent, incumbent_cost = candidate, candidate_cost
    assert incumbent is not None
    if primal:  # a bound-only run builds no plan: nothing to report as one
        _log(
            history,
            on_round,
            bar,
            _record(len(history) + 1, lp_value, best_bound, incumbent_cost, t0, "repair"),
        )

    rng = np.random.default_rng(seed)

    reserve = MIN_NEIGHBOURHOOD_SECONDS + FINISH_SECONDS_PER_ARC * p.n_arcs

    out_of_time = False  # the search ended at the time limit, not because it stalled

    def cross_groups() -> None:
        """Re-source together the orders the groups' own plans source differently."""
        nonlocal incumbent, incumbent_cost
        while group_plans and primal and incumbent is not None:
            found = group_plans.pop(0)
            if _gap(incumbent_cost, best_bound) <= gap_target or left() <= reserve:
                continue
            orders = crossover(p, incumbent, found)
            if not len(orders):
                continue
            budget = None
            if math.isfinite(deadline):
                budget = max(0.01, min(left() - reserve, NEIGHBOURHOOD_SECONDS))
            incumbent, gain = improve_neighbourhood(
                p,
                incumbent,
                orders,
                pair_extra=pair_extra_cost,
                node_limit=lns_nodes,
                time_limit=budget,
                seed=seed,
            )
            if gain > 0:
                incumbent_cost = evaluate_with_extra(p, incumbent, pair_extra_cost)
            _log(
                history,
                on_round,
                bar,
                _record(len(history) + 1, lp_value, best_bound, incumbent_cost, t0, "crossover"),
            )

    def done() -> bool:
        nonlocal out_of_time
        if math.isfinite(deadline):
            fold_groups(0.0)  # the pool's groups, as soon as they are all solved
            if executor is not None and group_jobs is None and growing():
                # On request, the workers go on to larger groups while the plan is searched
                # (1,000 orders: the proof at 17 s instead of 23 s, when growth waited for the
                # search to stall).
                grow()
        else:
            # No limit: wait for them here, so that the crossover meets the same plan (and
            # the run gives the same plan) whatever the executor.
            fold_groups(math.inf, last=True)
        cross_groups()
        if _gap(incumbent_cost, best_bound) <= gap_target:
            return True
        # A neighbourhood needs a moment to build and solve: none starts in the last one.
        out_of_time = left() <= reserve
        return out_of_time

    # ---- neighbourhood search: three kinds take turns, one pass each, while any gains ----
    # A rescue pass re-sources, with the full MILP, each order the plan leaves short together
    # with the orders holding the stock it lacks; a pattern pass re-chooses pooled patterns for
    # thousands of orders at once (set partitioning); a model pass re-sources a hundred or so
    # linked orders with the full MILP, which can find patterns that were never generated.
    # Measured on 10,000 orders, each kind stalled where another still found a percent or more.
    pool = master.pool.all()
    pool_cost = master.pool.costs()
    passes = {"rescue": 0, "patterns": 0, "milp": 0}
    most = {"rescue": rescue_passes, "patterns": pattern_passes, "milp": lns_passes}
    stalled = dict.fromkeys(passes, False)

    def current_plan() -> Solution:
        assert incumbent is not None
        return incumbent

    links = order_links(p, coupling, duals[0], duals[1]) if not done() else None
    while not done() and not all(stalled.values()):
        for kind in passes:
            if passes[kind] >= most[kind]:
                stalled[kind] = True
        for kind in passes:
            if done() or stalled[kind]:
                continue
            rnd_index = passes[kind]
            seeds = fractional if rnd_index == 0 and len(fractional) else np.arange(p.n_orders)
            groups: Iterator[IntArray]
            if kind == "rescue":
                groups = rescue_neighbourhoods(p, current_plan, size=rescue_size)
            else:
                groups = neighbourhoods(
                    p,
                    coupling,
                    seeds,
                    incumbent,
                    duals[0],
                    duals[1],
                    size=pattern_size if kind == "patterns" else lns_size,
                    rng=rng,
                    links=links,
                )
            gained = 0.0
            for group in groups:
                if done():
                    break
                # Without a time limit only node limits apply (deterministic).
                budget = None
                if math.isfinite(deadline):
                    cap = RESCUE_SECONDS if kind == "rescue" else NEIGHBOURHOOD_SECONDS
                    budget = max(0.01, min(left() - reserve, cap))
                if kind == "patterns":
                    incumbent, gain = improve_with_patterns(
                        p,
                        coupling,
                        pool,
                        pool_cost,
                        incumbent,
                        group,
                        pair_extra=pair_extra_cost,
                        time_limit=budget,
                        node_limit=pattern_nodes,
                        seed=seed,
                    )
                else:
                    incumbent, gain = improve_neighbourhood(
                        p,
                        incumbent,
                        group,
                        pair_extra=pair_extra_cost,
                        node_limit=lns_nodes,
                        time_limit=budget,
                        seed=seed,
                    )
                if gain > 0:
                    # The sub-MILP's gain is the plan's (costs are per order); pricing the whole
                    # plan after each gain had taken 0.13 s a time on 9.4 million arcs.
                    gained += gain
                    incumbent_cost -= gain
            if gained > 0:
                incumbent_cost = evaluate_with_extra(p, incumbent, pair_extra_cost)
            passes[kind] += 1
            _log(
                history,
                on_round,
                bar,
                _record(
                    len(history) + 1,
                    lp_value,
                    best_bound,
                    incumbent_cost,
                    t0,
                    f"{kind}{rnd_index + 1}",
                ),
            )
            if gained <= 1e-9 * max(1.0, incumbent_cost):
                stalled[kind] = True
    deadline = end
    # A search that stalled early does not wait for the groups past group_time (unless larger
    # groups were asked for: then the limit is theirs).
    wanted = group_growth > 1 and not grown_out
    fold_groups(deadline if wanted else min(deadline, time.perf_counter() + group_time), last=True)
    cross_groups()
    # On request, larger groups in the time left (1,000 orders, 30 s: the search stalls at 8 s;
    # groups 8 times larger, every row in one group of 718 orders, lift the bound from
    # 16,684.78 to 16,687.21 by 20 s; 4 times larger, 480-order groups gave 16,686.06 by 17 s
    # and the next round did not finish).
    while growing() and grow():
        fold_groups(deadline, last=True)
        cross_groups()
    if bar is not None:
        bar.set_postfix(best=f"{incumbent_cost:.2f}", bound=f"{best_bound:.2f}")
        bar.close()
    return DecomposeResult(
        solution=incumbent,
        cost=incumbent_cost,
        lower_bound=best_bound,
        rounds=rounds,
        history=history,
        stopped_by_time=stopped_by_time or out_of_time or left() <= 0,
        prices=(center_u, center_s),
    )


@dataclass(frozen=True, eq=False)
class _AscentRounds:
    rounds: int
    stopped_by_time: bool
    value: float  # the restricted Lagrangian at the last prices
    bound: float
    best_price: tuple[FloatArray, FloatArray]  # where the bound was reached
    price: tuple[FloatArray, FloatArray]  # the last prices (the plan is priced at them)
    weights: FloatArray | None  # the last ascent's pattern weights (pool order)


def _ascent_rounds(
    p: Problem,
    coupling: Coupling,
    dual: PatternDual,
    runner: Any,
    blocks: list[OrderBlock],
    bound: float,
    *,
    deadline: float,
    cg_deadline: float,
    late_deadline: float,
    max_rounds: int,
    gap_target: float,
    iterations: int,
    pair_extra: FloatArray | None,
    log_round: Callable[[dict[str, float]], None],
    t0: float,
    pricing_seconds: float,
) -> _AscentRounds:
    """Column generation priced by the ascent (:mod:`._ascent`): ascend, price, add, repeat.

    Stops when the restricted and the exact Lagrangian meet (within ``gap_target``), when no
    order finds a better pattern, after ``max_rounds``, or when the next round (expected to take
    as long as the last) would end after ``cg_deadline``; or, while the last round left the two
    more than :data:`ASCENT_LATE_GAP` apart, after ``late_deadline``. Within ``deadline`` the
    ascent leaves the time its pricing is expected to take (``pricing_seconds`` at first, then
    as the last one took); a round whose pricing would not end by then is not priced.
    """
    n_unit = coupling.n_unit
    price = np.zeros(dual.n_rows)
    best_price = price
    first_step = step = initial_step(p)
    value = math.inf
    weights: FloatArray | None = None
    stopped = False
    last_seconds = 0.0
    apart = math.inf  # (restricted - exact) / restricted after the last round
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        now = time.perf_counter()
        until = late_deadline if apart > ASCENT_LATE_GAP else cg_deadline
        if now >= deadline or (rounds > 1 and now + last_seconds > until):
            stopped = True
            break
        asc = ascend(
            dual,
            price,
            iterations=iterations,
            step=step,
            record=ASCENT_RECORD,
            deadline=deadline - pricing_seconds,
        )
        price, value, weights = asc.price, asc.value, asc.weights
        step = max(ASCENT_STEP_DECAY * step, ASCENT_STEP_FLOOR * first_step)
        if time.perf_counter() + pricing_seconds > deadline:
            stopped = True  # no time to price: the plan starts from this ascent's weights
            break
        priced_at = time.perf_counter()
        rnd = _price_all(runner, blocks, p.n_orders, price[:n_unit], price[n_unit:], 0)
        pricing_seconds = time.perf_counter() - priced_at
        exact = float(rnd.value.sum() - price @ dual.bound)
        apart = (value - exact) / max(abs(value), 1e-9)
        if exact > bound:
            bound, best_price = exact, price
        # Orders whose exact cheapest pattern beats the pool's bring it in.
        _, least, _ = dual.value(price)
        better = rnd.value < least - 1e-7 * np.maximum(1.0, np.abs(least))
        better &= np.diff(rnd.best.ptr) > 0
        new = _select(rnd.best, np.flatnonzero(better))
        dual.add(new, pattern_cost(p, new, pair_extra))
        last_seconds = time.perf_counter() - now
        log_round(
            {
                "round": float(rounds),
                "lp": value,
                "bound": bound,
                "columns": float(dual.pool.n),
                "added": float(new.n),
                "seconds": time.perf_counter() - t0,
            }
        )
        if new.n == 0 or (value - bound) <= gap_target * max(abs(value), 1e-9):
            break
    return _AscentRounds(
        rounds,
        stopped,
        value,
        bound,
        (best_price[:n_unit], best_price[n_unit:]),
        (price[:n_unit], price[n_unit:]),
        weights,
    )


def _pattern_keys(batch: PatternBatch) -> npt.NDArray[np.uint64]:
    """A hash of each pattern's arcs and quantities (equal patterns, equal keys)."""
    col = batch.column_of_entry()
    mixed = batch.arc.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= batch.qty.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    mixed ^= mixed >> np.uint64(29)
    keys = np.zeros(batch.n, np.uint64)
    np.add.at(keys, col, mixed)
    return keys + np.diff(batch.ptr).astype(np.uint64)


def _log(
    history: list[dict[str, float]],
    on_round: Callable[[dict[str, float]], None] | None,
    bar: Any,
    record: dict[str, float],
) -> None:
    history.append(record)
    if on_round is not None:
        on_round(record)
    if bar is not None:
        bar.set_postfix(best=f"{record['best']:.2f}", bound=f"{record['bound']:.2f}")


def _gap(cost: float, bound: float) -> float:
    return (cost - bound) / max(abs(cost), 1e-9)


def _record(
    step: int, lp: float, bound: float, best: float, t0: float, phase: str
) -> dict[str, float]:
    return {
        "round": float(step),
        "lp": float(lp),
        "bound": float(bound),
        "best": float(best),
        "gap": _gap(best, bound) if math.isfinite(best) else math.inf,
        "seconds": time.perf_counter() - t0,
        "phase": phase,  # type: ignore[dict-item]
    }


def evaluate_with_extra(
    problem: Problem, solution: Solution, pair_extra: FloatArray | None
) -> float:
    """Plan cost plus the extra pair costs of the pairs it uses."""
    total = evaluate(problem, solution).total
    if pair_extra is None:
        return total
    shipped = np.bincount(problem.arc_pair, weights=solution.arc_qty, minlength=problem.n_pairs)
    return float(total + pair_extra[shipped > 0].sum())


def _select(batch: PatternBatch, which: IntArray) -> PatternBatch:
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


def _flow_and_moves(
    problem: Problem,
    coupling: Coupling,
    solution: Solution,
    pair_extra: FloatArray | None,
    deadline: float,
    movers: IntArray | None,
    passes: int = FLOW_PASSES,
) -> Solution:
    """Alternate the exact one-unit-order flow (:mod:`._flow`) with best-response moves.

    The flow re-sources every one-unit order at once (chains of moves that single-order moves
    cannot find); the moves then let the other orders answer. Stops when a pass gains less than
    0.1 %, after ``passes``, or at the deadline. On 10,000 orders (plan of the master at its
    optimum, 247,736 after the greedy completion): moves alone 239,301; four passes 232,530.
    """
    singles = single_unit_orders(problem, coupling)
    if len(singles) == 0:
        return solution
    cost = evaluate_with_extra(problem, solution, pair_extra)
    # A pass starts only when the time left covers twice its expected length (first from the
    # arc count, then as measured): a flow over millions of arcs cannot be interrupted.
    n_arcs = int(np.diff(problem.line_arc_start)[problem.order_line_start[singles]].sum())
    expected = n_arcs * FLOW_SECONDS_PER_ARC
    for _ in range(passes):
        started = time.perf_counter()
        if started + 2 * expected >= deadline:
            break
        flowed = improve_single_units(problem, coupling, solution, singles, pair_extra=pair_extra)
        if evaluate_with_extra(problem, flowed, pair_extra) > cost:
            flowed = solution  # costs rounded to integers can pick a plan a hair dearer
        moved = improve_moves(
            problem,
            coupling,
            flowed,
            pair_extra=pair_extra,
            rounds=2,
            orders=movers,
            deadline=deadline,
        )
        expected = time.perf_counter() - started
        new_cost = evaluate_with_extra(problem, moved, pair_extra)
        if new_cost < cost:
            solution, gained, cost = moved, cost - new_cost, new_cost
        else:
            break
        if gained < 1e-3 * max(1.0, abs(cost)):
            break
    return solution


def _dive(
    problem: Problem,
    coupling: Coupling,
    master: _Master,
    x: FloatArray,
    deadline: float,
    threshold: float = DIVE_THRESHOLD,
    share: float = DIVE_SHARE,
    max_steps: int = 50,
) -> FloatArray:
    """Round the master towards an integral plan by fixing columns and re-solving (a dive).

    Each step fixes, for every order not yet fixed, its heaviest column if its weight is at
    least ``threshold`` (else, when none is, the heaviest ``share`` of the fractional orders),
    in order of weight, skipping a column whose stock and capacity use would no longer fit
    beside those fixed before it; the master LP is then re-solved from its basis. Stops when
    the master is integral, the LP fails or the deadline passes; the master's columns keep
    their fixed bounds. Returns the last LP solution (over the pool's columns).
    """
    p = problem
    fixed = np.zeros(p.n_orders, bool)
    used_u = np.zeros(coupling.n_unit)
    used_s = np.zeros(coupling.n_ship)
    for _ in range(max_steps):
        if time.perf_counter() >= deadline:
            break
        pool = master.pool.all()
        xs = np.concatenate([x, np.zeros(pool.n - len(x))])
        # Heaviest column per order (ties: the earlier column).
        by = np.lexsort((np.arange(pool.n), -xs, pool.order))
        first = np.ones(pool.n, bool)
        first[1:] = pool.order[by[1:]] != pool.order[by[:-1]]
        top = by[first]
        weight = xs[top]
        owner = pool.order[top]
        free = ~fixed[owner]
        fractional = free & (weight < 1 - 1e-6)
        if not fractional.any():
            break
        pick = free & (weight >= threshold)
        if not (pick & fractional).any():
            ranked = np.flatnonzero(fractional)
            ranked = ranked[np.argsort(-weight[ranked], kind="stable")]
            pick = free & (weight >= 1 - 1e-6)
            pick[ranked[: max(1, math.ceil(share * len(ranked)))]] = True
        chosen = np.flatnonzero(pick)
        chosen = chosen[np.argsort(-weight[chosen], kind="stable")]
        cols = top[chosen]
        use_u, use_s = pattern_rows(p, coupling, _select(pool, cols))
        keep = np.zeros(len(cols), bool)
        # The integral columns fit together (the LP kept them); the others are checked one by
        # one in order of weight against what is already taken.
        whole = weight[chosen] >= 1 - 1e-6
        if whole.any():
            keep[whole] = True
            used_u += np.asarray(use_u[:, whole].sum(axis=1)).ravel()
            used_s += np.asarray(use_s[:, whole].sum(axis=1)).ravel()
        cu, cs = use_u.tocsc(), use_s.tocsc()
        for i in np.flatnonzero(~whole).tolist():
            ru = cu.indices[cu.indptr[i] : cu.indptr[i + 1]]
            vu = cu.data[cu.indptr[i] : cu.indptr[i + 1]]
            rs = cs.indices[cs.indptr[i] : cs.indptr[i + 1]]
            vs = cs.data[cs.indptr[i] : cs.indptr[i + 1]]
            if np.all(used_u[ru] + vu <= coupling.unit_bound[ru] + 1e-9) and np.all(
                used_s[rs] + vs <= coupling.ship_bound[rs] + 1e-9
            ):
                used_u[ru] += vu
                used_s[rs] += vs
                keep[i] = True
        n_fractional = int(fractional.sum())
        if int(keep[~whole].sum()) < max(1, math.ceil(0.01 * n_fractional)):
            break  # stalled: what is left does not fit beside the fixed columns
        master.lp.set_column_bounds(cols[keep], 1.0, 1.0)
        fixed[owner[chosen[keep]]] = True
        solved = master.solve(max(deadline - time.perf_counter(), 0.01))
        if solved is None:
            break
        x = solved[1]
        log.debug(
            "dive: %d orders fixed, %d fractional left, LP %.2f",
            int(fixed.sum()),
            n_fractional - int(keep[~whole].sum()),
            solved[0],
        )
    return x


def _plan_from_master(
    problem: Problem,
    coupling: Coupling,
    master: _Master,
    x: FloatArray,
    duals: tuple[FloatArray, FloatArray],
    pair_extra: FloatArray | None,
    deadline: float = math.inf,
) -> Solution:
    """Keep the master's integral columns; place the other orders by priced greedy completion."""
    p = problem
    pool = master.pool.all()
    x = np.concatenate([x, np.zeros(pool.n - len(x))])  # columns added after the last solve
    # Orders whose column is the empty one are left to the completion, ranked last: the master
    # could only choose among pooled patterns, the completion may find one that fits what is
    # left (10,000 orders, two master states: 242,181 / 245,051 -> 236,589 / 236,775).
    served = np.diff(pool.ptr) > 0
    integral = np.flatnonzero((x > 1 - 1e-6) & served)
    chosen = np.full(p.n_orders, -1, np.int64)
    chosen[pool.order[integral]] = integral
    # The others are ranked by the largest master weight of a pattern that ships (the LP's
    # confidence in serving them), then index.
    weight = np.zeros(p.n_orders)
    np.maximum.at(weight, pool.order[served], x[served])
    return complete_from_patterns(
        p,
        coupling,
        pool,
        chosen,
        weight,
        duals[0],
        duals[1],
        pair_extra=pair_extra,
        deadline=deadline,
    )


def lagrangian_bound(
    problem: Problem,
    unit_price: FloatArray,
    ship_price: FloatArray,
    *,
    executor: Executor | None = None,
    coupling: Coupling | None = None,
) -> float:
    """The Lagrangian value of ``problem`` at the given prices: a certified lower bound.

    Parameters
    ----------
    problem
        The compiled problem.
    unit_price, ship_price
        Prices (``>= 0``) of the unit rows and shipment rows of :func:`coupling_rows`.
    executor
        Runs the pricing partitions.
    coupling
        The problem's coupling rows, when already computed.

    Returns
    -------
    float
        ``sum_o Z_o - unit_price . unit_bound - ship_price . ship_bound``.
    """
    coupling = coupling or coupling_rows(problem)
    (value,) = _order_values(problem, coupling, executor, (unit_price, ship_price))
    return float(value.sum() - unit_price @ coupling.unit_bound - ship_price @ coupling.ship_bound)


def _order_values(
    problem: Problem,
    coupling: Coupling,
    executor: Executor | None,
    *prices: tuple[FloatArray, FloatArray],
) -> list[FloatArray]:
    """Every order's pricing value at each of the given (unit, shipment) prices."""
    from allocator.parallel import BlockRunner

    blocks = [
        make_block(problem, part, coupling.arc_rows, coupling.pair_ship_row)
        for part in _partitions(problem)
    ]
    runner = BlockRunner(blocks, executor)
    return [_price_all(runner, blocks, problem.n_orders, u, s, 0).value for u, s in prices]


def group_bound(
    problem: Problem,
    unit_price: FloatArray,
    ship_price: FloatArray,
    *,
    group_orders: int = GROUP_ORDERS,
    executor: Executor | None = None,
    coupling: Coupling | None = None,
    time_limit: float | None = None,
    seed: int = 0,
) -> GroupBound:
    """The bound over groups of orders linked by contested stock, at the given prices.

    The stock rows with a positive price are kept as constraints (priced at zero) while no group
    of linked orders passes ``group_orders``; each group is solved whole (:mod:`._groups`). The
    result is a certified lower bound, and at least :func:`lagrangian_bound` at the same prices
    (and at the same prices with the kept rows at zero), whether or not the groups finish.

    Parameters
    ----------
    problem
        The compiled problem.
    unit_price, ship_price
        Prices (``>= 0``) of the rows of :func:`coupling_rows`: the master LP's duals give the
        strongest bounds.
    group_orders
        Most orders in one group.
    executor
        Runs the pricing partitions and the groups.
    coupling
        The problem's coupling rows, when already computed.
    time_limit
        Seconds for the groups (``None``: each is solved to the end); a group cut short counts
        with its MILP's dual bound or its floor (:func:`~._groups.start_group_bound`).
    seed
        HiGHS seed.
    """
    t0 = time.perf_counter()
    coupling = coupling or coupling_rows(problem)
    kept_u, kept, labels = kept_prices(problem, coupling, unit_price, budget=group_orders)
    at_zero, at_price = _order_values(
        problem, coupling, executor, (kept_u, ship_price), (unit_price, ship_price)
    )
    left = None if time_limit is None else max(0.01, time_limit - (time.perf_counter() - t0))
    jobs = start_group_bound(
        problem,
        coupling,
        kept,
        labels,
        unit_price,
        ship_price,
        at_zero,
        at_price,
        executor=executor,
        time_limit=left,
        seed=seed,
    )
    until = math.inf if time_limit is None else t0 + time_limit
    return jobs.result(until)


def optimize(
    problem: Problem,
    *,
    time_limit: float | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    warm_start: Plan | Any | None = None,
    change_penalty: float = 0.0,
    progress: bool | None = None,
    group_growth: int = 0,
    started: float | None = None,
) -> Plan:
    """Run the decomposition and return a :class:`~allocator.plan.Plan`.

    Parameters
    ----------
    problem
        The compiled problem.
    time_limit
        Seconds; the best plan and bound so far are returned when it expires.
    seed
        HiGHS seed.
    executor
        Runs the pricing partitions (``None``: serial).
    warm_start
        A previous :class:`~allocator.plan.Plan` or its ``assignments`` table to start from.
    change_penalty
        Cost per parcel (order, location) that an order which had a plan did not use before.
    progress
        Progress bar (``None``: when stderr is a terminal).
    group_growth
        See :func:`solve_decomposed` (``0``: return when the search stalls).
    started
        ``time.perf_counter()`` when the caller's clock started (the time limit and the plan's
        ``seconds`` count from it; ``None``: from this call).

    Returns
    -------
    Plan
        The plan's ``lower_bound`` is certified for the plan's own cost (without the change
        penalty); with a penalty, ``info`` also reports the penalised objective and its bound.
    """
    from allocator.solvers._warm import prepare_warm_start, warm_solution

    t0 = time.perf_counter() if started is None else started
    extra = None
    warm = None
    start = None
    if warm_start is not None:
        warm = prepare_warm_start(problem, warm_start)
        extra = warm.pair_extra(problem, change_penalty)
        start = warm_solution(problem, coupling_rows(problem), warm, pair_extra=extra)
    plain_bound = -math.inf
    if extra is not None:
        # The penalised objective's bound does not bound the plain cost: get the plain bound
        # first from its own (bound-only) column generation, with part of the time.
        first = solve_decomposed(
            problem,
            time_limit=None if time_limit is None else 0.35 * time_limit,
            seed=seed,
            executor=executor,
            primal=False,
            progress=progress,
            group_growth=group_growth,
        )
        plain_bound = first.lower_bound
    # Pricing and checking the plan afterwards take their time too (up to a second at millions
    # of arcs): the search ends that much earlier.
    finish = min(0.05 * (time_limit or 0.0), CHECK_SECONDS_PER_ARC * problem.n_arcs)
    res = solve_decomposed(
        problem,
        time_limit=None
        if time_limit is None
        else max(0.01, time_limit - finish - (time.perf_counter() - t0)),
        seed=seed,
        executor=executor,
        warm_start=start,
        pair_extra_cost=extra,
        progress=progress,
        group_growth=group_growth,
    )
    cost = evaluate(problem, res.solution).total
    info: dict[str, object] = {
        "solver": "decompose",
        "rounds": res.rounds,
        "history": res.history,
        "stopped_by_time": res.stopped_by_time,
    }
    bound = res.lower_bound
    if warm is not None:
        info["changes"] = warm.changes(problem, res.solution)
    if extra is not None:
        info.update(
            change_penalty=change_penalty,
            objective=res.cost,
            objective_bound=res.lower_bound,
        )
        bound = plain_bound
    # Every plan's cost is a whole multiple of the costs' quantum (cents, say): so is the optimum.
    bound = min(round_up_bound(bound, cost_quantum(problem)), cost)
    gap = (cost - bound) / max(abs(cost), 1e-9)
    if gap <= OPTIMAL_GAP:
        status = Status.OPTIMAL
    elif res.stopped_by_time:
        status = Status.TIME_LIMIT
    else:
        status = Status.FEASIBLE
    return Plan(
        problem,
        res.solution,
        status,
        problem.rules.name,
        lower_bound=bound,
        seconds=time.perf_counter() - t0,
        info=info,
    )
