"""Plans: what a solver decided, what it costs, and the result tables of the contract.

A solver returns a :class:`Solution` (flat arrays over the problem's arcs, lines and orders).
:func:`evaluate` prices it independently of the solver that produced it, and
:func:`check_feasible` lists every rule it breaks, so no solver's word is taken on trust.
:class:`Plan` is the user-facing result: polars frames for assignments, backorders and
rejections, the cost breakdown, the bound and gap, and :meth:`Plan.summary` /
:meth:`Plan.write` for ``summary.json`` and the result folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict

from allocator.errors import InputError
from allocator.problem import Problem

__all__ = [
    "CostBreakdown",
    "Plan",
    "Solution",
    "Status",
    "Summary",
    "check_feasible",
    "cost_quantum",
    "evaluate",
    "round_up_bound",
]

IntArray = npt.NDArray[np.int64]


class Status(StrEnum):
    """How a plan was obtained."""

    OPTIMAL = "optimal"  #: proven optimal (within the solver's gap tolerance)
    FEASIBLE = "feasible"  #: a feasible plan with a proven bound, not proven optimal
    TIME_LIMIT = "time_limit"  #: stopped by the time limit; the best plan found so far
    HEURISTIC = "heuristic"  #: a greedy or rule-based plan; no optimality claim


@dataclass(frozen=True, eq=False)
class Solution:
    """Decisions over a :class:`~allocator.problem.Problem`.

    Attributes
    ----------
    arc_qty
        Units shipped on each arc (line, location).
    line_backorder
        Units of each line promised later.
    order_rejected
        Whether each order is rejected (then nothing of it ships or is backordered).
    """

    arc_qty: IntArray
    line_backorder: IntArray
    order_rejected: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, problem: Problem) -> Solution:
        return cls(
            np.zeros(problem.n_arcs, np.int64),
            problem.line_qty.copy(),
            np.zeros(problem.n_orders, bool),
        )


class CostBreakdown(BaseModel):
    """Cost of a plan, by component."""

    model_config = ConfigDict(frozen=True)

    total: float
    unit: float
    shipment: float
    backorder: float
    rejection: float = 0.0


def pair_used(problem: Problem, solution: Solution) -> npt.NDArray[np.bool_]:
    """Whether each (order, location) pair ships at least one unit."""
    shipped = np.bincount(problem.arc_pair, weights=solution.arc_qty, minlength=problem.n_pairs)
    return np.asarray(shipped > 0)


def evaluate(problem: Problem, solution: Solution) -> CostBreakdown:
    """Price a solution from the problem's cost arrays (independent of any solver)."""
    unit = float(np.dot(solution.arc_qty, problem.arc_unit_cost))
    shipment = float(problem.pair_shipment_cost[pair_used(problem, solution)].sum())
    backorder = float(np.dot(solution.line_backorder, problem.line_backorder_cost))
    rejection = float(problem.order_reject_cost[solution.order_rejected].sum())
    return CostBreakdown(
        total=unit + shipment + backorder + rejection,
        unit=unit,
        shipment=shipment,
        backorder=backorder,
        rejection=rejection,
    )


#: Cost quanta tried, largest first (currency units): see :func:`cost_quantum`.
_QUANTA = (1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.02, 0.01)


def cost_quantum(problem: Problem) -> float | None:
    """The largest of 1, 0.5, ..., 0.01 that divides every cost coefficient, if any.

    A plan's cost (:func:`evaluate`) is a sum of whole multiples of the unit, shipment,
    backorder and rejection costs, so when all of them are whole multiples of ``q`` (prices in
    cents, say) so is every plan's cost, and a lower bound ``b`` on the optimum lifts to the
    next multiple of ``q`` at or above ``b`` (:func:`round_up_bound`).
    """
    p = problem
    coefficients = np.concatenate(
        [p.arc_unit_cost, p.pair_shipment_cost, p.line_backorder_cost, p.order_reject_cost]
    ).astype(np.float64)
    coefficients = coefficients[coefficients != 0.0]
    for q in _QUANTA:
        steps = coefficients / q
        if np.all(np.abs(steps - np.round(steps)) <= 1e-9 * np.maximum(1.0, np.abs(steps))):
            return q
    return None


def round_up_bound(bound: float, quantum: float | None) -> float:
    """``bound`` lifted to the next whole multiple of ``quantum`` (unchanged without one).

    A bound within floating-point noise of a multiple stays at that multiple.
    """
    if quantum is None or not math.isfinite(bound):
        return bound
    steps = bound / quantum
    return max(bound, math.ceil(steps - 1e-9 * max(1.0, abs(steps))) * quantum)


def check_feasible(problem: Problem, solution: Solution) -> list[str]:
    """Every rule the solution breaks, as sentences (empty when feasible)."""
    errors: list[str] = []
    p, s = problem, solution
    if np.any(s.arc_qty < 0) or np.any(s.arc_qty > p.arc_cap):
        errors.append("an arc ships a negative quantity or more than min(qty, ATP)")
    if np.any(s.line_backorder < 0):
        errors.append("a negative backorder")
    shipped = np.bincount(p.arc_line, weights=s.arc_qty, minlength=p.n_lines).astype(np.int64)
    rejected_line = s.order_rejected[p.line_order]
    accounted = shipped + s.line_backorder
    if np.any(rejected_line & (accounted != 0)):
        errors.append("a rejected order ships or backorders units")
    if np.any(~rejected_line & (accounted != p.line_qty)):
        k = int(np.flatnonzero(~rejected_line & (accounted != p.line_qty))[0])
        errors.append(
            f"line {k} (order {p.order_ids[p.line_order[k]]}): shipped + backordered = "
            f"{accounted[k]} but the line has {p.line_qty[k]} units"
        )
    if np.any((s.line_backorder > 0) & ~p.order_allow_backorder[p.line_order]):
        errors.append("backorder on an order that does not allow backorders")
    if np.any(s.order_rejected & p.order_allow_backorder):
        errors.append("an order that allows backorders was rejected")
    # Stock: per (location, sku) never more than ATP.
    n_sku = p.atp.shape[1]
    used = np.bincount(
        p.arc_location * n_sku + p.arc_sku(), weights=s.arc_qty, minlength=p.atp.size
    ).reshape(p.atp.shape)
    if np.any(used > p.atp):
        loc, sku = np.argwhere(used > p.atp)[0]
        errors.append(
            f"location {p.location_ids[loc]} ships {int(used[loc, sku])} of {p.sku_ids[sku]} "
            f"but has {int(p.atp[loc, sku])} available"
        )
    usedp = pair_used(p, s)
    per_order = np.bincount(p.pair_order[usedp], minlength=p.n_orders)
    if np.any(per_order > p.order_max_locations):
        errors.append("an order ships from more locations than its split cap")
    # Ship-complete: a served order ships everything from exactly one covering location.
    sc = p.order_ship_complete
    line_short = s.line_backorder > 0
    order_short = np.bincount(p.line_order, weights=line_short, minlength=p.n_orders) > 0
    if np.any(sc & (per_order > 1)):
        errors.append("a ship-complete order ships from more than one location")
    if np.any(sc & (per_order == 1) & order_short):
        errors.append("a ship-complete order ships part and backorders the rest")
    if p.n_limits and np.any(p.limit_usage(s.arc_qty) > p.limit_bound + 1e-9):
        errors.append("a plan exceeds a side limit (ring-fenced or exposure-capped stock)")
    # Capacities.
    loc_units = np.bincount(p.arc_location, weights=s.arc_qty, minlength=p.n_locations)
    if np.any(loc_units > p.location_capacity_units + 1e-9):
        errors.append("a location ships more units than its capacity")
    loc_ships = np.bincount(p.pair_location[usedp], minlength=p.n_locations)
    if np.any(loc_ships > p.location_capacity_shipments + 1e-9):
        errors.append("a location sends more shipments than its capacity")
    return errors


class Summary(BaseModel):
    """The contract's ``summary.json``."""

    model_config = ConfigDict(frozen=True)

    status: Literal["optimal", "feasible", "time_limit", "heuristic"]
    policy: str
    orders: int
    lines: int
    units: int
    units_assigned: int
    units_backordered: int
    orders_rejected: int
    shipments: int
    split_orders: int
    cost: CostBreakdown
    lower_bound: float | None
    gap: float | None
    seconds: float
    #: With a warm start: the parcels (order, location) this plan adds for orders the previous
    #: plan had served (an extension of the contract; ``null`` without a warm start).
    changes: int | None = None


@dataclass(eq=False)
class Plan:
    """The result of an allocation run.

    Attributes
    ----------
    problem
        The compiled problem the plan answers.
    solution
        The decisions, as arrays.
    status
        How the plan was obtained.
    policy
        Name of the policy or rule set.
    lower_bound
        A proven lower bound on the cost of any plan under the same rules, or ``None``.
    seconds
        Wall time of the solve.
    """

    problem: Problem
    solution: Solution
    status: Status
    policy: str
    lower_bound: float | None = None
    seconds: float = 0.0
    info: dict[str, object] = field(default_factory=dict)

    @property
    def cost(self) -> CostBreakdown:
        return evaluate(self.problem, self.solution)

    @property
    def gap(self) -> float | None:
        """(total - lower_bound) / total; 0 when both are 0; ``None`` without a bound."""
        if self.lower_bound is None:
            return None
        total = self.cost.total
        if total <= 1e-9:
            return 0.0
        return max(0.0, (total - self.lower_bound) / total)

    def is_feasible(self) -> bool:
        return not check_feasible(self.problem, self.solution)

    @property
    def assignments(self) -> pl.DataFrame:
        """order_id, line_id, sku, location_id, qty: one row per (line, location) with qty > 0."""
        p, s = self.problem, self.solution
        nz = np.flatnonzero(s.arc_qty > 0)
        lines = p.arc_line[nz]
        return pl.DataFrame(
            {
                "order_id": p.order_ids[p.line_order[lines]].astype(str),
                "line_id": p.line_ids[lines].astype(str),
                "sku": p.sku_ids[p.line_sku[lines]].astype(str),
                "location_id": p.location_ids[p.arc_location[nz]].astype(str),
                "qty": s.arc_qty[nz].astype(np.int64),
            },
            schema={
                "order_id": pl.String,
                "line_id": pl.String,
                "sku": pl.String,
                "location_id": pl.String,
                "qty": pl.Int64,
            },
        )

    @property
    def backorders(self) -> pl.DataFrame:
        """order_id, line_id, sku, qty: units promised later."""
        p, s = self.problem, self.solution
        nz = np.flatnonzero(s.line_backorder > 0)
        return pl.DataFrame(
            {
                "order_id": p.order_ids[p.line_order[nz]].astype(str),
                "line_id": p.line_ids[nz].astype(str),
                "sku": p.sku_ids[p.line_sku[nz]].astype(str),
                "qty": s.line_backorder[nz].astype(np.int64),
            },
            schema={"order_id": pl.String, "line_id": pl.String, "sku": pl.String, "qty": pl.Int64},
        )

    @property
    def rejections(self) -> pl.DataFrame:
        """order_id, reason: orders that cannot be served under their constraints."""
        p, s = self.problem, self.solution
        nz = np.flatnonzero(s.order_rejected)
        reasons = [
            "no single location can ship the complete order and backorders are not allowed"
            if p.order_ship_complete[o]
            else "not enough available stock to fill every line and backorders are not allowed"
            for o in nz
        ]
        return pl.DataFrame(
            {"order_id": p.order_ids[nz].astype(str), "reason": reasons},
            schema={"order_id": pl.String, "reason": pl.String},
        )

    def shipments(self) -> pl.DataFrame:
        """order_id, location_id, units, unit_cost, shipment_cost: one row per parcel."""
        p, s = self.problem, self.solution
        units = np.bincount(p.arc_pair, weights=s.arc_qty, minlength=p.n_pairs).astype(np.int64)
        nz = np.flatnonzero(units > 0)
        return pl.DataFrame(
            {
                "order_id": p.order_ids[p.pair_order[nz]].astype(str),
                "location_id": p.location_ids[p.pair_location[nz]].astype(str),
                "units": units[nz],
                "unit_cost": p.pair_unit_cost[nz] * units[nz],
                "shipment_cost": p.pair_shipment_cost[nz],
                "distance_km": p.pair_distance_km[nz],
            }
        )

    def summary(self) -> Summary:
        """The contract's summary (``summary.json``)."""
        p, s = self.problem, self.solution
        usedp = pair_used(p, s)
        per_order = np.bincount(p.pair_order[usedp], minlength=p.n_orders)
        lb = self.lower_bound
        gap = self.gap
        changes = self.info.get("changes")
        return Summary(
            status=self.status.value,
            policy=self.policy,
            orders=p.n_orders,
            lines=p.n_lines,
            units=int(p.line_qty.sum()),
            units_assigned=int(s.arc_qty.sum()),
            units_backordered=int(s.line_backorder.sum()),
            orders_rejected=int(s.order_rejected.sum()),
            shipments=int(usedp.sum()),
            split_orders=int((per_order > 1).sum()),
            cost=self.cost,
            lower_bound=None if lb is None or not math.isfinite(lb) else round(lb, 6),
            gap=None if gap is None else round(gap, 8),
            seconds=round(self.seconds, 4),
            changes=changes if isinstance(changes, int) else None,
        )

    def write(self, out_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv") -> list[Path]:
        """Write the result folder of the contract; returns the files written."""
        if fmt not in ("csv", "parquet"):
            raise InputError(f"unknown output format {fmt!r}; use csv or parquet", source="fmt")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in (
            ("assignments", self.assignments),
            ("backorders", self.backorders),
            ("rejections", self.rejections),
        ):
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                frame.write_csv(path)
            else:
                frame.write_parquet(path)
            written.append(path)
        path = out / "summary.json"
        path.write_text(json.dumps(self.summary().model_dump(mode="json"), indent=2) + "\n")
        written.append(path)
        return written
