"""Warm starts: yesterday's plan mapped onto tonight's problem, and the cost of changing it.

``allocate(..., warm_start=previous, change_penalty=c)`` re-optimises a backlog from a previous
plan. The previous assignments (a :class:`~allocator.plan.Plan` or its ``assignments`` table) are
matched to tonight's arcs by ``(order_id, line_id, location_id)``. Orders whose previous sourcing
still fits (stock, capacities, rules) keep it as the starting plan; the rest are placed by the
priced greedy completion. With a change penalty, every parcel (order, location) that an order
which already had a plan did not use before costs ``c`` more, so plans only move when the move
saves more than it disturbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.errors import InputError
from allocator.plan import Plan, Solution
from allocator.problem import Problem
from allocator.solvers._columns import PatternBatch
from allocator.solvers._primal import _accept, complete_greedy
from allocator.solvers.lagrangian import Coupling

__all__ = ["WarmStart", "prepare_warm_start"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class WarmStart:
    """A previous plan on tonight's problem.

    Attributes
    ----------
    arc_qty
        Previous units per arc of this problem (clipped to the arc caps).
    had_plan
        Orders that shipped something in the previous plan.
    pair_previous
        Pairs the previous plan used.
    """

    arc_qty: IntArray
    had_plan: BoolArray
    pair_previous: BoolArray

    def pair_extra(self, problem: Problem, change_penalty: float) -> FloatArray | None:
        """Change penalty per pair: new parcels of orders that had a plan."""
        if change_penalty <= 0:
            return None
        new = self.had_plan[problem.pair_order] & ~self.pair_previous
        return np.where(new, float(change_penalty), 0.0)

    def changes(self, problem: Problem, solution: Solution) -> int:
        """Parcels of orders that had a plan which the new plan adds."""
        used = (
            np.bincount(problem.arc_pair, weights=solution.arc_qty, minlength=problem.n_pairs) > 0
        )
        return int((used & self.had_plan[problem.pair_order] & ~self.pair_previous).sum())


def _assignments(previous: Plan | pl.DataFrame) -> pl.DataFrame:
    frame = previous.assignments if isinstance(previous, Plan) else previous
    if not isinstance(frame, pl.DataFrame):
        raise InputError(
            f"warm_start must be a Plan or an assignments DataFrame, got {type(previous).__name__}",
            source="warm_start",
        )
    missing = {"order_id", "line_id", "location_id", "qty"} - set(frame.columns)
    if missing:
        raise InputError(
            f"warm_start assignments miss the column(s) {', '.join(sorted(missing))}",
            source="warm_start",
        )
    return frame.select(
        pl.col("order_id").cast(pl.String),
        pl.col("line_id").cast(pl.String),
        pl.col("location_id").cast(pl.String),
        pl.col("qty").cast(pl.Int64),
    )


def prepare_warm_start(problem: Problem, previous: Plan | pl.DataFrame) -> WarmStart:
    """Match previous assignments to ``problem``'s arcs.

    Parameters
    ----------
    problem
        Tonight's problem.
    previous
        A previous :class:`~allocator.plan.Plan` or its assignments table (``order_id``,
        ``line_id``, ``location_id``, ``qty``).

    Returns
    -------
    WarmStart
    """
    p = problem
    frame = _assignments(previous)
    arcs = pl.DataFrame(
        {
            "order_id": p.order_ids[p.line_order[p.arc_line]].astype(str),
            "line_id": p.line_ids[p.arc_line].astype(str),
            "location_id": p.location_ids[p.arc_location].astype(str),
            "arc": np.arange(p.n_arcs, dtype=np.int64),
        },
        schema={
            "order_id": pl.String,
            "line_id": pl.String,
            "location_id": pl.String,
            "arc": pl.Int64,
        },
    )
    matched = frame.group_by(["order_id", "line_id", "location_id"]).agg(pl.col("qty").sum())
    matched = matched.join(arcs, on=["order_id", "line_id", "location_id"], how="inner")
    arc_qty = np.zeros(p.n_arcs, np.int64)
    idx = matched["arc"].to_numpy()
    arc_qty[idx] = np.minimum(matched["qty"].to_numpy(), p.arc_cap[idx])
    # A line never ships more than its quantity: trim in arc order.
    cum = np.cumsum(arc_qty)
    line_first = p.line_arc_start[p.arc_line]
    before = cum - arc_qty - np.where(line_first > 0, cum[np.maximum(line_first - 1, 0)], 0)
    arc_qty = np.clip(p.line_qty[p.arc_line] - before, 0, arc_qty).astype(np.int64)
    used = np.bincount(p.arc_pair, weights=arc_qty, minlength=p.n_pairs) > 0
    had = np.zeros(p.n_orders, bool)
    order_index = {oid: i for i, oid in enumerate(p.order_ids.astype(str).tolist())}
    for oid in frame.filter(pl.col("qty") > 0)["order_id"].unique().to_list():
        i = order_index.get(oid)
        if i is not None:
            had[i] = True
    return WarmStart(arc_qty=arc_qty, had_plan=had, pair_previous=used)


def warm_solution(
    problem: Problem,
    coupling: Coupling,
    warm: WarmStart,
    *,
    pair_extra: FloatArray | None = None,
) -> Solution:
    """A feasible plan that keeps every previous sourcing that still fits."""
    p = problem
    arc_order = p.line_order[p.arc_line]
    shipped = np.bincount(p.arc_line, weights=warm.arc_qty, minlength=p.n_lines)
    complete_line = shipped == p.line_qty
    complete = np.bincount(p.line_order, weights=~complete_line, minlength=p.n_orders) == 0
    used = np.bincount(p.arc_pair, weights=warm.arc_qty, minlength=p.n_pairs) > 0
    n_used = np.bincount(p.pair_order[used], minlength=p.n_orders)
    any_ship = n_used > 0
    valid = any_ship & (n_used <= p.order_max_locations)
    valid &= ~p.order_ship_complete | ((n_used == 1) & complete)
    valid &= p.order_allow_backorder | complete
    orders = np.flatnonzero(valid)
    keep = valid[arc_order] & (warm.arc_qty > 0)
    nz = np.flatnonzero(keep)
    batch = PatternBatch.from_arcs(orders, arc_order[nz], nz, warm.arc_qty[nz])
    # Keep previous patterns in the usual service order (priority, then age) while they fit.
    from allocator.solvers.greedy import default_order_sequence

    position = np.empty(p.n_orders, np.int64)
    position[default_order_sequence(p)] = np.arange(p.n_orders)
    fits = _accept(
        p, coupling, batch, position[orders], coupling.unit_bound.copy(), coupling.ship_bound.copy()
    )
    kept = orders[fits]
    is_kept = np.zeros(p.n_orders, bool)
    is_kept[kept] = True
    committed = Solution(
        np.where(is_kept[arc_order], warm.arc_qty, 0).astype(np.int64),
        np.zeros(p.n_lines, np.int64),
        np.zeros(p.n_orders, bool),
    )
    pending = np.flatnonzero(~is_kept)
    return complete_greedy(
        p,
        coupling,
        committed,
        pending,
        position[pending],
        np.zeros(coupling.n_unit),
        np.zeros(coupling.n_ship),
        pair_extra=pair_extra,
    )
