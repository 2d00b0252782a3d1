"""Ranking chains: the criteria of a greedy policy as numbers per (order, location).

A chain is an ordered list of :class:`~allocator.rules.schema.Criterion`; a candidate's key is the
tuple of its values, lower first, so later criteria break the ties of earlier ones. A criterion
that has nothing to say gives every candidate the same value: it *abstains*.

*Static* criteria depend only on the data (priority, distance, cost, id, position, preferred,
country, pickup location, list, score) and are computed for all pairs at once with numpy.
*Dynamic* criteria (``free_stock``, ``lines_covered``) depend on what the run has taken so far,
so the fill evaluates them when it reaches the order (:mod:`allocator.policies.fill`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.problem import Problem
from allocator.rules.compile import (
    RuleContext,
    arc_distance,
    arc_exclusions,
    location_mask,
    location_rank,
)
from allocator.rules.schema import Criterion, GreedyConfig

__all__ = [
    "DYNAMIC",
    "CompiledChain",
    "compile_chain",
    "eligible_locations",
    "order_sequence",
    "static_values",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Criteria that depend on the stock left when the order's turn comes.
DYNAMIC = frozenset({"free_stock", "lines_covered"})

_KM_PER_MILE = 1.609344


def _context(problem: Problem) -> RuleContext:
    ctx = problem.meta.get("rules")
    if not isinstance(ctx, RuleContext):  # pragma: no cover - every compiled problem has one
        raise TypeError("the problem was not compiled by allocator.compile_problem")
    return ctx


def order_sequence(problem: Problem, sequence: str) -> IntArray:
    """Order indices in the sequence a greedy policy serves them.

    ``arrival``: created_at ascending, then input order; ``priority``: priority descending, then
    arrival; ``input``: the input order.
    """
    n = problem.n_orders
    index = np.arange(n)
    if sequence == "input":
        return index.astype(np.int64)
    keys: list[IntArray] = [index, problem.order_created_at]
    if sequence == "priority":
        keys.append(-problem.order_priority)
    return np.lexsort(tuple(keys)).astype(np.int64)


def static_values(
    problem: Problem, criterion: Criterion, ord_: IntArray, loc: IntArray
) -> FloatArray:
    """Values of a static criterion for (order, location) combinations (lower is better)."""
    ctx = _context(problem)
    locs = ctx.locations
    by = criterion.by
    n = len(ord_)
    if by == "priority":
        out = locs["priority"].to_numpy().astype(np.float64)[loc]
    elif by == "distance":
        d = arc_distance(ctx, ord_, loc)
        out = np.where(np.isfinite(d), d, np.inf)
    elif by == "cost":
        out = _combo_cost(problem, ord_, loc)
    elif by == "id":
        out = location_rank(ctx, "location_id").astype(np.float64)[loc]
    elif by == "position":
        out = loc.astype(np.float64)
    elif by == "preferred":
        assert criterion.where is not None
        out = np.where(location_mask(criterion.where, ctx)[loc], 0.0, 1.0)
    elif by == "country":
        ord_country = ctx.order_country_code[ord_]
        out = np.where(
            (ord_country >= 0) & (ord_country != ctx.location_country_code[loc]), 1.0, 0.0
        )
    elif by == "pickup_location":
        out = np.where(ctx.order_pickup[ord_] == loc, 0.0, 1.0)
    elif by == "list":
        out = _list_rank(ctx, criterion, ord_, loc)
    elif by == "score":
        out = np.zeros(n)
        for term, weight in criterion.weights.items():
            if term in ("distance_km", "distance_miles"):
                d = arc_distance(ctx, ord_, loc)
                d = np.where(np.isfinite(d), d, np.inf)
                value = d if term == "distance_km" else d / _KM_PER_MILE
            elif term == "priority":
                value = locs["priority"].to_numpy().astype(np.float64)[loc]
            else:
                value = _combo_cost(problem, ord_, loc)
            with np.errstate(invalid="ignore"):
                out = out + np.where(weight == 0, 0.0, weight * value)
    else:  # pragma: no cover - dynamic criteria are evaluated by the fill
        raise ValueError(f"criterion {by!r} is not static")
    out = np.asarray(out, dtype=np.float64)
    return -out if criterion.descending else out


def _combo_cost(problem: Problem, ord_: IntArray, loc: IntArray) -> FloatArray:
    """Cost of shipping the whole order from the location (inf where no pair exists)."""
    key = problem.pair_order * problem.n_locations + problem.pair_location
    want = ord_ * problem.n_locations + loc
    pos = np.searchsorted(key, want)
    pos_c = np.minimum(pos, max(len(key) - 1, 0))
    found = (pos < len(key)) & (key[pos_c] == want) if len(key) else np.zeros(len(want), bool)
    cost = (
        problem.pair_shipment_cost[pos_c]
        + problem.pair_unit_cost[pos_c] * problem.order_units[ord_]
        if len(key)
        else np.zeros(len(want))
    )
    return np.where(found, cost, np.inf)


def _list_rank(ctx: RuleContext, criterion: Criterion, ord_: IntArray, loc: IntArray) -> FloatArray:
    ids = ctx.locations["location_id"].to_list()
    n_loc = len(ids)

    def ranks(order: tuple[str, ...]) -> FloatArray:
        r = np.full(n_loc, float(len(order)))
        where = {v: i for i, v in enumerate(ids)}
        for i, v in enumerate(order):
            if v in where:
                r[where[v]] = min(r[where[v]], float(i))
        return r

    base = ranks(criterion.ids) if criterion.ids else np.zeros(n_loc)
    out = base[loc]
    if criterion.by_channel:
        channel = ctx.orders["channel"].to_numpy()[ord_]
        for name, order in criterion.by_channel.items():
            hit = channel == name
            out = np.where(hit, ranks(order)[loc], out)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class CompiledChain:
    """A ranking chain with its static criteria evaluated for every pair.

    ``pair_values[i]`` is a per-pair array for a static criterion ``criteria[i]`` and ``None``
    for a dynamic one.
    """

    criteria: tuple[Criterion, ...]
    pair_values: tuple[FloatArray | None, ...]

    @property
    def is_static(self) -> bool:
        return all(v is not None for v in self.pair_values)

    def pair_rank(self) -> FloatArray:
        """One number per pair for an all-static chain: its position in the chain's order."""
        keys = [v for v in self.pair_values if v is not None]
        order = np.lexsort(tuple(reversed(keys))) if keys else np.arange(0)
        rank = np.empty(len(order), np.float64)
        rank[order] = np.arange(len(order), dtype=np.float64)
        return rank


def compile_chain(problem: Problem, greedy: GreedyConfig) -> CompiledChain:
    """Evaluate the static criteria of ``greedy.ranking`` for every pair (``id`` appended)."""
    criteria = tuple(greedy.ranking)
    if not criteria or criteria[-1].by != "id":
        criteria = (*criteria, Criterion(by="id"))
    values: list[FloatArray | None] = []
    for c in criteria:
        if c.by in DYNAMIC:
            values.append(None)
        else:
            values.append(static_values(problem, c, problem.pair_order, problem.pair_location))
    return CompiledChain(criteria, tuple(values))


def eligible_locations(problem: Problem, orders: IntArray) -> BoolArray:
    """Which locations the rules allow for every line of each order, whether or not they hold
    stock: a (len(orders), n_locations) boolean array."""
    ctx = _context(problem)
    p = problem
    n_loc = p.n_locations
    out = np.ones((len(orders), n_loc), dtype=bool)
    if not len(orders):
        return out
    starts, ends = p.order_line_start[orders], p.order_line_start[orders + 1]
    counts = ends - starts
    row = np.repeat(np.arange(len(orders)), counts)
    lines = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
    ord_ = np.repeat(p.line_order[lines], n_loc)
    loc = np.tile(np.arange(n_loc, dtype=np.int64), len(lines))
    listed = None
    if ctx.costs_listed is not None:
        combos = pl.DataFrame({"ord": ord_, "loc": loc})
        hit = combos.join(
            ctx.costs_listed.select("ord", "loc").unique().with_columns(pl.lit(True).alias("in")),
            on=["ord", "loc"],
            how="left",
            maintain_order="left",
        )
        listed = hit["in"].fill_null(False).to_numpy().astype(bool)
    reason = arc_exclusions(
        ctx,
        ord_,
        loc,
        np.repeat(p.line_sku[lines], n_loc),
        arc_distance(ctx, ord_, loc),
        listed,
    )
    bad = (reason >= 0).reshape(len(lines), n_loc)
    np.logical_and.at(out, row, ~bad)
    return out
