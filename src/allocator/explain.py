"""Explanations: why one order is served the way it is.

:func:`explain` looks at one order of a finished :class:`~allocator.plan.Plan`, on demand (a batch
never pays for it), and returns an :class:`Explanation`:

* every location of the network with its verdict: used, a candidate not chosen, excluded (and by
  which rule: the same compiled rules the batch used), or holding nothing it may promise;
* the chosen plan for the order, with its cost broken down per shipment;
* the cheapest alternative and its extra cost. Alternatives are priced with the other orders'
  allocations held fixed, by solving the order alone on the stock, capacity and limits they
  leave: the order's best plan, and for each location the best plan without it (if used) or
  with it (if not). The cheapest one that differs from the chosen plan is reported; for a
  greedy policy the extra cost can be negative (the policy left money on the table).

:func:`explain_order` reads, allocates and explains in one call; ``allocator explain`` prints it.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from allocator.errors import InputError
from allocator.plan import CostBreakdown, Plan, Solution, evaluate, pair_used
from allocator.problem import Problem
from allocator.rules.compile import RuleContext, arc_distance, arc_exclusions
from allocator.rules.schema import RuleSet

__all__ = [
    "Explanation",
    "LocationVerdict",
    "OrderPlan",
    "Shipment",
    "ShipmentLine",
    "explain",
    "explain_order",
]

IntArray = npt.NDArray[np.int64]

_FORCE = 1.0e6  # subtracted from a parcel's cost to force a location into the alternative


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ShipmentLine(_Model):
    """Units of one order line in one shipment."""

    line_id: str
    sku: str
    qty: int


class Shipment(_Model):
    """One parcel of the order and what it costs.

    ``unit_cost`` and ``shipment_cost`` are what the plan's cost counts; ``preference`` and
    ``tie_break`` are the parts of them that come from the rule set's preference weights and
    tie-break.
    """

    location_id: str
    units: int
    distance_km: float | None
    unit_cost: float
    shipment_cost: float
    preference: float
    tie_break: float
    total: float
    lines: tuple[ShipmentLine, ...]


class OrderPlan(_Model):
    """A way of serving one order: shipments, backorders, rejection, and the cost."""

    shipments: tuple[Shipment, ...]
    units_backordered: int
    rejected: bool
    cost: CostBreakdown
    summary: str

    @property
    def locations(self) -> tuple[str, ...]:
        return tuple(s.location_id for s in self.shipments)


class LocationVerdict(_Model):
    """What one location means for the order.

    ``status``: ``used`` (ships part of the order), ``candidate`` (eligible, holds stock, not
    chosen), ``excluded`` (every line excluded by a rule or by the data), ``no_stock`` (eligible
    but holds nothing it may promise of the order's SKUs). ``rules`` names the reasons
    (``eligibility.NAME`` for a rule of the rule set, ``network.can_ship``, ``pickup``, ``costs``
    for the data); ``lines_excluded`` lists lines excluded while others are not.
    """

    location_id: str
    status: Literal["used", "candidate", "excluded", "no_stock"]
    rules: tuple[str, ...] = ()
    lines_excluded: tuple[str, ...] = ()
    detail: str = ""


class Explanation(_Model):
    """Why an order is served the way it is (see the module docstring)."""

    order_id: str
    policy: str
    plan_status: str
    outcome: Literal["served", "partly backordered", "backordered", "rejected"]
    order: dict[str, object]
    locations: tuple[LocationVerdict, ...]
    chosen: OrderPlan
    best: OrderPlan | None
    alternative: OrderPlan | None
    extra_cost: float | None

    def to_text(self) -> str:
        """The explanation as plain text (what ``allocator explain`` prints)."""
        o = self.order
        head = (
            f"order {self.order_id}: {o.get('lines')} lines, {o.get('units')} units"
            + (f", channel {o['channel']}" if o.get("channel") else "")
            + f", priority {o.get('priority')}"
            + (", ship-complete" if o.get("ship_complete") else "")
            + (", pickup at " + str(o["pickup_location_id"]) if o.get("pickup_location_id") else "")
            + (", no backorders" if not o.get("allow_backorder", True) else "")
        )
        out = [head, f"policy {self.policy} ({self.plan_status}): {self.outcome}", ""]
        out.append("chosen plan: " + self.chosen.summary)
        out.extend(_plan_lines(self.chosen))
        out.append("")
        if self.alternative is None or self.extra_cost is None:
            out.append("no alternative plan: the rules and the stock leave one way to serve it")
        elif self.extra_cost < -1e-9:
            out.append(
                f"a cheaper plan exists for this order ({-self.extra_cost:,.2f} less, with the "
                f"other orders' allocations held fixed): {self.alternative.summary}"
            )
            out.extend(_plan_lines(self.alternative))
        else:
            out.append(
                f"cheapest alternative (+{self.extra_cost:,.2f}): {self.alternative.summary}"
            )
            out.extend(_plan_lines(self.alternative))
        out.append("")
        out.append("locations:")
        width = max((len(v.location_id) for v in self.locations), default=4)
        out.extend(f"  {v.location_id:<{width}}  {v.status:<9}  {v.detail}" for v in self.locations)
        return "\n".join(out) + "\n"


def _plan_lines(plan: OrderPlan) -> list[str]:
    out = []
    for s in plan.shipments:
        dist = "" if s.distance_km is None else f"{s.distance_km:,.0f} km, "
        extra = ""
        if s.preference:
            extra += f" (preference {s.preference:,.2f})"
        if s.tie_break:
            extra += f" (tie-break {s.tie_break:,.4f})"
        out.append(
            f"  from {s.location_id}: {_units(s.units)}, {dist}units {s.unit_cost:,.2f} "
            f"+ parcel {s.shipment_cost:,.2f} = {s.total:,.2f}{extra}"
        )
    c = plan.cost
    if plan.units_backordered:
        out.append(f"  backordered {_units(plan.units_backordered)}: {c.backorder:,.2f}")
    if plan.rejected:
        out.append(f"  rejected: {c.rejection:,.2f}")
    out.append(
        f"  total {c.total:,.2f} (units {c.unit:,.2f}, parcels {c.shipment:,.2f}, "
        f"backorder {c.backorder:,.2f}, rejection {c.rejection:,.2f})"
    )
    return out


# ---- the order alone, on what the other orders leave ------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Sub:
    problem: Problem
    arcs: IntArray  # full-problem arc index of each sub arc
    pairs: IntArray  # full-problem pair index of each sub pair


def _subproblem(p: Problem, o: int, solution: Solution, skip_pairs: IntArray) -> _Sub:
    """Order ``o`` alone, with the stock, capacities and limits the other orders leave."""
    l0, l1 = int(p.order_line_start[o]), int(p.order_line_start[o + 1])
    q0, q1 = int(p.order_pair_start[o]), int(p.order_pair_start[o + 1])
    own_arc = (p.arc_line >= l0) & (p.arc_line < l1)
    other_qty = np.where(own_arc, 0, solution.arc_qty)
    n_sku = p.atp.shape[1]
    used = np.bincount(
        p.arc_location * n_sku + p.arc_sku(), weights=other_qty, minlength=p.atp.size
    ).reshape(p.atp.shape)
    atp = np.maximum(0, p.atp - used.astype(np.int64))
    loc_units = np.bincount(p.arc_location, weights=other_qty, minlength=p.n_locations)
    other_pair = np.bincount(p.arc_pair, weights=other_qty, minlength=p.n_pairs) > 0
    loc_ships = np.bincount(p.pair_location[other_pair], minlength=p.n_locations)
    pairs = np.array([q for q in range(q0, q1) if q not in set(skip_pairs.tolist())], np.int64)
    keep_arc = own_arc & np.isin(p.arc_pair, pairs)
    arcs = np.flatnonzero(keep_arc)
    pair_new = np.full(p.n_pairs, -1, np.int64)
    pair_new[pairs] = np.arange(len(pairs))
    arc_line = p.arc_line[arcs] - l0
    cap = np.minimum(p.line_qty[p.arc_line[arcs]], atp[p.arc_location[arcs], p.arc_sku()[arcs]])
    full = cap >= p.line_qty[p.arc_line[arcs]]
    n_full = np.bincount(pair_new[p.arc_pair[arcs]], weights=full, minlength=len(pairs))
    covers = n_full == (l1 - l0)
    # Side limits that touch the order's arcs, with the room the others leave.
    arc_new = np.full(p.n_arcs, -1, np.int64)
    arc_new[arcs] = np.arange(len(arcs))
    starts, members, bounds = [0], [], []
    if p.n_limits:
        usage = p.limit_usage(other_qty.astype(np.int64))
        for i in range(p.n_limits):
            mine = arc_new[p.limit_arcs[p.limit_start[i] : p.limit_start[i + 1]]]
            mine = mine[mine >= 0]
            if len(mine):
                members.extend(mine.tolist())
                starts.append(len(members))
                bounds.append(max(0.0, float(p.limit_bound[i] - usage[i])))
    sub = dataclasses.replace(
        p,
        location_capacity_units=np.maximum(0.0, p.location_capacity_units - loc_units),
        location_capacity_shipments=np.maximum(0.0, p.location_capacity_shipments - loc_ships),
        atp=atp,
        order_ids=p.order_ids[o : o + 1],
        order_priority=p.order_priority[o : o + 1],
        order_ship_complete=p.order_ship_complete[o : o + 1],
        order_allow_backorder=p.order_allow_backorder[o : o + 1],
        order_created_at=p.order_created_at[o : o + 1],
        order_lat=p.order_lat[o : o + 1],
        order_lon=p.order_lon[o : o + 1],
        order_line_start=np.array([0, l1 - l0], np.int64),
        order_pair_start=np.array([0, len(pairs)], np.int64),
        order_units=p.order_units[o : o + 1],
        order_reject_cost=p.order_reject_cost[o : o + 1],
        order_max_locations=p.order_max_locations[o : o + 1],
        line_order=np.zeros(l1 - l0, np.int64),
        line_sku=p.line_sku[l0:l1],
        line_qty=p.line_qty[l0:l1],
        line_ids=p.line_ids[l0:l1],
        line_backorder_cost=p.line_backorder_cost[l0:l1],
        pair_order=np.zeros(len(pairs), np.int64),
        pair_location=p.pair_location[pairs],
        pair_unit_cost=p.pair_unit_cost[pairs],
        pair_shipment_cost=p.pair_shipment_cost[pairs],
        pair_distance_km=p.pair_distance_km[pairs],
        pair_covers=covers,
        arc_line=arc_line,
        arc_pair=pair_new[p.arc_pair[arcs]],
        arc_location=p.arc_location[arcs],
        arc_cap=cap.astype(np.int64),
        arc_unit_cost=p.arc_unit_cost[arcs],
        line_arc_start=np.concatenate(
            [[0], np.cumsum(np.bincount(arc_line, minlength=l1 - l0))]
        ).astype(np.int64),
        order_lines=p.order_lines.slice(l0, l1 - l0),
        limit_start=np.asarray(starts, np.int64),
        limit_arcs=np.asarray(members, np.int64),
        limit_bound=np.asarray(bounds, np.float64),
        meta={},
    )
    return _Sub(sub, arcs, pairs)


def _solve_sub(sub: _Sub, force_pair: int | None) -> Solution | None:
    from allocator.solvers.exact import solve_exact

    problem = sub.problem
    if force_pair is not None:
        local = int(np.flatnonzero(sub.pairs == force_pair)[0])
        cost = problem.pair_shipment_cost.copy()
        cost[local] -= _FORCE
        problem = dataclasses.replace(problem, pair_shipment_cost=cost)
    result = solve_exact(problem, time_limit=10.0)
    return result.solution


def _order_plan(p: Problem, sub: _Sub, sol: Solution, meta: dict[str, object]) -> OrderPlan:
    sp = sub.problem
    cost = evaluate(sp, sol)
    units = np.bincount(sp.arc_pair, weights=sol.arc_qty, minlength=sp.n_pairs).astype(np.int64)
    pref_u = meta.get("pair_preference_unit")
    pref_s = meta.get("pair_preference_shipment")
    tie = meta.get("pair_tie_break")
    shipments = []
    for j in np.flatnonzero(units > 0).tolist():
        q = int(sub.pairs[j])
        u = int(units[j])
        d = float(sp.pair_distance_km[j])
        pref = 0.0
        if isinstance(pref_u, np.ndarray) and isinstance(pref_s, np.ndarray):
            pref = float(pref_u[q] * u + pref_s[q])
        tb = float(tie[q]) if isinstance(tie, np.ndarray) else 0.0
        arcs = np.flatnonzero((sp.arc_pair == j) & (sol.arc_qty > 0))
        lines = tuple(
            ShipmentLine(
                line_id=str(sp.line_ids[sp.arc_line[a]]),
                sku=str(sp.sku_ids[sp.line_sku[sp.arc_line[a]]]),
                qty=int(sol.arc_qty[a]),
            )
            for a in arcs.tolist()
        )
        shipments.append(
            Shipment(
                location_id=str(p.location_ids[p.pair_location[q]]),
                units=u,
                distance_km=d if np.isfinite(d) else None,
                unit_cost=float(sp.pair_unit_cost[j] * u),
                shipment_cost=float(sp.pair_shipment_cost[j]),
                preference=round(pref, 10),
                tie_break=round(tb, 10),
                total=float(sp.pair_unit_cost[j] * u + sp.pair_shipment_cost[j]),
                lines=lines,
            )
        )
    rejected = bool(sol.order_rejected[0])
    backordered = int(sol.line_backorder.sum())
    parts = [f"{_units(s.units)} from {s.location_id}" for s in shipments]
    if backordered:
        parts.append(f"{_units(backordered)} backordered")
    if rejected:
        parts.append("rejected")
    return OrderPlan(
        shipments=tuple(shipments),
        units_backordered=backordered,
        rejected=rejected,
        cost=cost,
        summary=(", ".join(parts) or "nothing") + f"; cost {cost.total:,.2f}",
    )


def _signature(plan: OrderPlan) -> tuple[object, ...]:
    return (
        tuple(sorted((s.location_id, s.units) for s in plan.shipments)),
        plan.units_backordered,
        plan.rejected,
    )


# ---- location verdicts ------------------------------------------------------------------------


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _verdicts(p: Problem, o: int, solution: Solution, sub: _Sub) -> tuple[LocationVerdict, ...]:
    ctx = p.meta.get("rules")
    l0, l1 = int(p.order_line_start[o]), int(p.order_line_start[o + 1])
    n_loc = p.n_locations
    lines = np.arange(l0, l1)
    reason = np.full((len(lines), n_loc), -1, np.int32)
    names: list[str] = []
    if isinstance(ctx, RuleContext):
        ord_ = np.full(len(lines) * n_loc, o, np.int64)
        loc = np.tile(np.arange(n_loc, dtype=np.int64), len(lines))
        listed = None
        if ctx.costs_listed is not None:
            mine = set(ctx.costs_listed.filter(ctx.costs_listed["ord"] == o)["loc"].to_list())
            listed = np.array([int(v) in mine for v in loc], dtype=bool)
        reason = arc_exclusions(
            ctx,
            ord_,
            loc,
            np.repeat(p.line_sku[lines], n_loc),
            arc_distance(ctx, ord_, loc),
            listed,
        ).reshape(len(lines), n_loc)
        names = ctx.reason_names
    q0, q1 = int(p.order_pair_start[o]), int(p.order_pair_start[o + 1])
    used = pair_used(p, solution)
    pair_of_loc = {int(p.pair_location[q]): q for q in range(q0, q1)}
    out = []
    for loc_i in range(n_loc):
        lid = str(p.location_ids[loc_i])
        codes = reason[:, loc_i]
        excluded_lines = [str(p.line_ids[l0 + j]) for j in np.flatnonzero(codes >= 0).tolist()]
        rule_names = tuple(dict.fromkeys(names[c] for c in codes[codes >= 0].tolist()))
        texts = (
            tuple(dict.fromkeys(ctx.reason_text(c) for c in codes[codes >= 0].tolist()))
            if isinstance(ctx, RuleContext)
            else ()
        )
        q = pair_of_loc.get(loc_i)
        if len(excluded_lines) == len(lines) and len(lines):
            out.append(
                LocationVerdict(
                    location_id=lid, status="excluded", rules=rule_names, detail="; ".join(texts)
                )
            )
            continue
        partial = ""
        if excluded_lines:
            partial = f"; lines {', '.join(excluded_lines)} excluded: " + "; ".join(texts)
        if q is not None and used[q]:
            units = int(solution.arc_qty[p.arc_pair == q].sum())
            status: Literal["used", "candidate", "no_stock"] = "used"
            detail = f"ships {_units(units)}"
        elif q is not None:
            status = "candidate"
            j = np.flatnonzero(sub.pairs == q)
            left = int(sub.problem.arc_cap[sub.problem.arc_pair == j[0]].sum()) if len(j) else 0
            initially = int(p.arc_cap[p.arc_pair == q].sum())
            detail = (
                f"eligible, not chosen: could give {initially} of the order's "
                f"{_units(int(p.order_units[o]))}; {left} left after the other orders' "
                "allocations"
            )
        else:
            status = "no_stock"
            detail = "eligible, but holds no stock it may promise of the order's SKUs"
        out.append(
            LocationVerdict(
                location_id=lid,
                status=status,
                rules=rule_names,
                lines_excluded=tuple(excluded_lines),
                detail=detail + partial,
            )
        )
    return tuple(out)


# ---- public API -------------------------------------------------------------------------------


def explain(plan: Plan, order_id: str, *, alternatives: bool = True) -> Explanation:
    """Explain how ``plan`` serves one order.

    Parameters
    ----------
    plan
        A plan returned by :func:`allocator.allocate` or :func:`allocator.solve`.
    order_id
        The order to explain.
    alternatives
        Also price the alternatives (a few tiny optimisations of the order alone).

    Returns
    -------
    Explanation

    Raises
    ------
    InputError
        If the order is not in the plan.
    """
    p, s = plan.problem, plan.solution
    hits = np.flatnonzero(p.order_ids == order_id)
    if not len(hits):
        raise InputError(f"order {order_id!r} is not in the plan", source="order")
    o = int(hits[0])
    sub = _subproblem(p, o, s, np.zeros(0, np.int64))
    l0, l1 = int(p.order_line_start[o]), int(p.order_line_start[o + 1])
    own = np.flatnonzero((p.arc_line >= l0) & (p.arc_line < l1))
    chosen_sol = Solution(
        arc_qty=s.arc_qty[sub.arcs],
        line_backorder=s.line_backorder[l0:l1],
        order_rejected=s.order_rejected[o : o + 1],
    )
    assert len(own) == len(sub.arcs)
    meta = p.meta
    chosen = _order_plan(p, sub, chosen_sol, meta)
    best: OrderPlan | None = None
    alternative: OrderPlan | None = None
    if alternatives:
        options: list[OrderPlan] = []
        sol = _solve_sub(sub, None)
        if sol is not None:
            best = _order_plan(p, sub, sol, meta)
            options.append(best)
        used_pairs = [
            int(sub.pairs[j])
            for j in range(len(sub.pairs))
            if chosen_sol.arc_qty[sub.problem.arc_pair == j].sum() > 0
        ]
        for q in sub.pairs.tolist():
            if q in used_pairs:
                variant = _subproblem(p, o, s, np.array([q], np.int64))
                sol = _solve_sub(variant, None)
                if sol is not None:
                    options.append(_order_plan(p, variant, sol, meta))
            else:
                sol = _solve_sub(sub, q)
                if sol is not None:
                    options.append(_order_plan(p, sub, sol, meta))
        mine = _signature(chosen)
        others = [opt for opt in options if _signature(opt) != mine]
        if others:
            alternative = min(others, key=lambda x: (x.cost.total, x.summary))
    extra = None if alternative is None else alternative.cost.total - chosen.cost.total
    backordered = int(s.line_backorder[l0:l1].sum())
    if s.order_rejected[o]:
        outcome: Literal["served", "partly backordered", "backordered", "rejected"] = "rejected"
    elif backordered == int(p.order_units[o]):
        outcome = "backordered"
    elif backordered:
        outcome = "partly backordered"
    else:
        outcome = "served"
    head = p.order_lines.slice(l0, 1).to_dicts()[0]
    order_info: dict[str, object] = {
        "lines": l1 - l0,
        "units": int(p.order_units[o]),
        "channel": head.get("channel"),
        "country": head.get("country"),
        "priority": int(p.order_priority[o]),
        "ship_complete": bool(p.order_ship_complete[o]),
        "allow_backorder": bool(p.order_allow_backorder[o]),
        "pickup_location_id": head.get("pickup_location_id"),
        "max_locations": int(p.order_max_locations[o]),
    }
    return Explanation(
        order_id=order_id,
        policy=plan.policy,
        plan_status=plan.status.value,
        outcome=outcome,
        order=order_info,
        locations=_verdicts(p, o, s, sub),
        chosen=chosen,
        best=best,
        alternative=alternative,
        extra_cost=None if extra is None else round(extra, 6),
    )


def explain_order(
    network: object,
    orders: object,
    order_id: str,
    *,
    rules: RuleSet | str | Path | None = None,
    policy: str | None = None,
    time_limit: float | None = None,
    seed: int = 0,
    executor: Executor | None = None,
) -> Explanation:
    """Allocate the batch and explain one order (see :func:`explain`).

    Parameters are those of :func:`allocator.allocate`, plus ``order_id``.
    """
    from allocator.allocate import allocate
    from allocator.model import Network, Orders

    if not isinstance(network, Network):
        raise InputError("expected a Network", source="network")
    if not isinstance(orders, Orders):
        raise InputError("expected an Orders table", source="orders")
    if order_id not in set(orders.lines["order_id"].to_list()):
        raise InputError(f"order {order_id!r} is not in the orders", source="--order")
    plan = allocate(
        network,
        orders,
        rules=rules,
        policy=policy,
        time_limit=time_limit,
        seed=seed,
        executor=executor,
    )
    return explain(plan, order_id)
