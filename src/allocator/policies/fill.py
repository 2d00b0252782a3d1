"""The greedy engine behind every rule-based policy.

Orders are served one at a time in the policy's sequence. For each order the candidate locations
(the order's pairs: eligible under the rules, holding some of its SKUs) are ranked by the chain
(:mod:`allocator.policies.chain`), then filled:

``line_by_line``
    each line walks the ranking and takes ``min(remaining, free)`` at each location;
``whole_order_first``
    the best-ranked location that can ship the whole order alone, else line by line;
``first_location``
    everything from the first-ranked *eligible* location, stock or not (Medusa);
``fewest_locations``
    the smallest set of locations that covers every line, sets ranked by the chain summed over
    their members (Shopify, Salesforce); without a cover, a greedy set cover or the order waits.

Every fill honours ATP, ring-fences and exposure limits (side limits), capacities, the split cap
and ship-complete orders. A shortfall is then settled by the policy: ``backorder`` the missing
units, ``wait`` (the whole order waits), or reject when the order may not be backordered (nothing
it took stays reserved). Where the policy records it, each backordered line is assigned the
location it waits at (Spree: the first location stocking the item; Solidus: the first location
that accepts backorders).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.plan import Solution
from allocator.policies.chain import (
    CompiledChain,
    compile_chain,
    eligible_locations,
    order_sequence,
    static_values,
)
from allocator.problem import Problem
from allocator.rules.compile import RuleContext, location_mask
from allocator.rules.schema import Criterion, GreedyConfig

__all__ = ["FillResult", "fill_orders"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Most location sets of one size that ``fewest_locations`` enumerates for one order.
SET_BUDGET = 20_000
#: Orders per chunk when rules are evaluated against every location.
_CHUNK = 4_096


@dataclass(frozen=True, eq=False)
class FillResult:
    """What the engine decided, and where backordered lines wait (where recorded)."""

    solution: Solution
    backorder_location: IntArray  # per line: location index it waits at, -1 if none


def _ranked_eligible(
    problem: Problem, chain: CompiledChain, orders: IntArray
) -> tuple[BoolArray, IntArray]:
    """For each order: which locations are eligible, and all locations in chain order (static
    criteria only). Returns (eligible (c, n_loc), ranked location indices (c, n_loc))."""
    n_loc = problem.n_locations
    eligible = eligible_locations(problem, orders)
    c = len(orders)
    ord_ = np.repeat(orders, n_loc)
    loc = np.tile(np.arange(n_loc, dtype=np.int64), c)
    keys: list[npt.NDArray[np.float64]] = [
        static_values(problem, crit, ord_, loc)
        for crit in chain.criteria
        if crit.by not in ("free_stock", "lines_covered")
    ]
    row = np.repeat(np.arange(c), n_loc)
    order = np.lexsort((loc, *reversed(keys), row))
    return eligible, loc[order].reshape(c, n_loc)


class _Engine:
    """State of one greedy run (stock, capacities, limits) and the per-order fill."""

    def __init__(self, problem: Problem, greedy: GreedyConfig, chain: CompiledChain) -> None:
        p = self.p = problem
        self.g = greedy
        self.chain = chain
        self.atp = p.atp.copy()
        holds = p.meta.get("free_ignoring_holds")
        self.free_holds = holds if isinstance(holds, np.ndarray) else p.atp
        self.cap_units = p.location_capacity_units.tolist()
        self.cap_ships = p.location_capacity_shipments.tolist()
        self.arc_qty = np.zeros(p.n_arcs, np.int64)
        self.backorder = np.zeros(p.n_lines, np.int64)
        self.rejected = np.zeros(p.n_orders, bool)
        self.ols, self.ops = p.order_line_start.tolist(), p.order_pair_start.tolist()
        self.las = p.line_arc_start.tolist()
        self.pair_loc = p.pair_location.tolist()
        self.arc_pair, self.arc_loc = p.arc_pair.tolist(), p.arc_location.tolist()
        self.arc_line = p.arc_line.tolist()
        self.line_sku, self.line_qty = p.line_sku.tolist(), p.line_qty.tolist()
        self.sc, self.bo = p.order_ship_complete.tolist(), p.order_allow_backorder.tolist()
        self.max_locs = p.order_max_locations.tolist()
        self.static = [v.tolist() if v is not None else None for v in chain.pair_values]
        self.criteria: list[Criterion] = list(chain.criteria)
        self.line_scoped = any(c.by == "free_stock" and c.scope == "line" for c in self.criteria)
        self.limit_left = p.limit_bound.astype(np.float64).tolist()
        self.arc_limits: dict[int, list[int]] = {}
        for i in range(p.n_limits):
            for a in p.limit_arcs[p.limit_start[i] : p.limit_start[i + 1]].tolist():
                self.arc_limits.setdefault(a, []).append(i)
        self.first_loc: list[int] | None = None
        self.can_backorder: list[bool] | None = None

    # ---- state -------------------------------------------------------------------------------

    def free(self, loc: int, sku: int, ignore_holds: bool = False) -> int:
        now = int(self.atp[loc, sku])
        if ignore_holds:
            return int(self.free_holds[loc, sku]) - (int(self.p.atp[loc, sku]) - now)
        return now

    def room(self, a: int) -> float:
        limits = self.arc_limits.get(a)
        return min(self.limit_left[i] for i in limits) if limits else math.inf

    def take(self, a: int, qty: int, journal: list[tuple[int, int]]) -> None:
        loc = self.arc_loc[a]
        self.arc_qty[a] += qty
        self.atp[loc, self.line_sku[self.arc_line[a]]] -= qty
        self.cap_units[loc] -= qty
        for i in self.arc_limits.get(a, ()):
            self.limit_left[i] -= qty
        journal.append((a, qty))

    def open(self, loc: int, opened: set[int], journal: list[tuple[int, int]]) -> None:
        opened.add(loc)
        self.cap_ships[loc] -= 1
        journal.append((-1, loc))

    def rollback(self, journal: list[tuple[int, int]], opened: set[int]) -> None:
        for a, qty in reversed(journal):
            if a < 0:
                self.cap_ships[qty] += 1
                opened.discard(qty)
                continue
            loc = self.arc_loc[a]
            self.arc_qty[a] -= qty
            self.atp[loc, self.line_sku[self.arc_line[a]]] += qty
            self.cap_units[loc] += qty
            for i in self.arc_limits.get(a, ()):
                self.limit_left[i] += qty
        journal.clear()

    # ---- ranking -----------------------------------------------------------------------------

    def pair_key(self, q: int, arcs: list[int]) -> tuple[float, ...]:
        key: list[float] = []
        loc = self.pair_loc[q]
        for i, crit in enumerate(self.criteria):
            values = self.static[i]
            if values is not None:
                key.append(values[q])
                continue
            if crit.by == "free_stock":
                v = sum(
                    min(
                        self.line_qty[self.arc_line[a]],
                        self.free(loc, self.line_sku[self.arc_line[a]], crit.ignore_holds),
                    )
                    for a in arcs
                )
            else:  # lines_covered
                v = sum(
                    1
                    for a in arcs
                    if self.free(loc, self.line_sku[self.arc_line[a]])
                    >= self.line_qty[self.arc_line[a]]
                )
            key.append(float(v) if crit.descending else -float(v))
        key.append(float(loc))
        return tuple(key)

    def arc_key(self, a: int, pair_keys: dict[int, tuple[float, ...]]) -> tuple[float, ...]:
        base = list(pair_keys[self.arc_pair[a]])
        loc, sku = self.arc_loc[a], self.line_sku[self.arc_line[a]]
        for i, crit in enumerate(self.criteria):
            if crit.by == "free_stock" and crit.scope == "line":
                v = float(self.free(loc, sku, crit.ignore_holds))
                base[i] = v if crit.descending else -v
        return tuple(base)

    # ---- fills -------------------------------------------------------------------------------

    def try_whole(
        self, o: int, q: int, arcs: list[int], journal: list[tuple[int, int]], opened: set[int]
    ) -> bool:
        """Ship the whole order from pair ``q`` if it can; otherwise change nothing."""
        l0, l1 = self.ols[o], self.ols[o + 1]
        loc = self.pair_loc[q]
        if len(arcs) != l1 - l0 or self.cap_ships[loc] < 1:
            return False
        mark = len(journal)
        for a in arcs:
            k = self.arc_line[a]
            qty = self.line_qty[k]
            if (
                self.atp[loc, self.line_sku[k]] < qty
                or self.cap_units[loc] < qty
                or self.room(a) < qty
            ):
                part = journal[mark:]
                del journal[mark:]
                self.rollback(part, opened)
                return False
            self.take(a, qty, journal)
        self.open(loc, opened, journal)
        return True

    def line_fill(
        self,
        o: int,
        ranked: list[int],
        pair_keys: dict[int, tuple[float, ...]],
        need: list[int],
        journal: list[tuple[int, int]],
        opened: set[int],
    ) -> None:
        l0 = self.ols[o]
        position = {q: i for i, q in enumerate(ranked)}
        for j, k in enumerate(range(l0, self.ols[o + 1])):
            if need[j] == 0:
                continue
            arcs = [a for a in range(self.las[k], self.las[k + 1]) if self.arc_pair[a] in position]
            if self.line_scoped:
                arcs.sort(key=lambda a: self.arc_key(a, pair_keys))
            else:
                arcs.sort(key=lambda a: position[self.arc_pair[a]])
            sku = self.line_sku[k]
            for a in arcs:
                if need[j] == 0:
                    break
                loc = self.arc_loc[a]
                new = loc not in opened
                if new and (len(opened) >= self.max_locs[o] or self.cap_ships[loc] < 1):
                    continue
                take = int(min(need[j], self.atp[loc, sku], self.cap_units[loc], self.room(a)))
                if take <= 0:
                    continue
                self.take(a, take, journal)
                if new:
                    self.open(loc, opened, journal)
                need[j] -= take

    def fewest(
        self,
        o: int,
        ranked: list[int],
        pair_keys: dict[int, tuple[float, ...]],
        arcs_by_pair: dict[int, list[int]],
        need: list[int],
        journal: list[tuple[int, int]],
        opened: set[int],
    ) -> bool:
        """Fill from the best smallest covering set; False if none covers (nothing taken then,
        unless the greedy cover ran)."""
        l0, l1 = self.ols[o], self.ols[o + 1]
        m = len(ranked)
        if m == 0:
            return False
        avail = np.zeros((m, l1 - l0))
        for i, q in enumerate(ranked):
            loc = self.pair_loc[q]
            if self.cap_ships[loc] < 1:
                continue
            for a in arcs_by_pair[q]:
                k = self.arc_line[a]
                avail[i, k - l0] = min(
                    float(self.atp[loc, self.line_sku[k]]), self.room(a), self.cap_units[loc]
                )
        # Sets of one: the best-ranked location that covers everything (its key is the set's).
        for i in range(m):
            if all(avail[i, j] >= need[j] for j in range(l1 - l0)):
                self.line_fill(o, [ranked[i]], pair_keys, need, journal, opened)
                return True
        qty = np.asarray(need, dtype=np.float64)
        keys = np.array([pair_keys[q] for q in ranked], dtype=np.float64)
        top = min(self.g.max_set_size, self.max_locs[o], m)
        for size in range(2, top + 1):
            pool = m
            while pool > size and math.comb(pool, size) > SET_BUDGET:
                pool -= 1
            idx = np.array(list(itertools.combinations(range(pool), size)), dtype=np.int64)
            if not len(idx):
                continue
            cover = (avail[idx].sum(axis=1) >= qty - 1e-9).all(axis=1)
            if not cover.any():
                continue
            cand = idx[cover]
            sums = np.nan_to_num(keys[cand].sum(axis=1), nan=np.inf)
            best = cand[np.lexsort((np.arange(len(cand)), *reversed(list(sums.T))))[0]]
            members = [ranked[i] for i in sorted(best.tolist())]
            self.line_fill(o, members, pair_keys, need, journal, opened)
            return True
        if self.g.require_full:
            return False
        # Greedy set cover: the location that covers most of what is missing, then the next.
        used: set[int] = set()
        while any(need) and len(opened) < self.max_locs[o]:
            gains = [
                (-float(np.minimum(avail[i], np.asarray(need, np.float64)).sum()), i)
                for i in range(m)
                if i not in used
            ]
            if not gains:
                break
            gain, i = min(gains)
            if gain >= 0:
                break
            used.add(i)
            before = list(need)
            self.line_fill(o, [ranked[i]], pair_keys, need, journal, opened)
            if need == before:
                break
            avail[i] = 0.0
        return True

    # ---- one order ---------------------------------------------------------------------------

    def serve(self, o: int) -> None:
        l0, l1 = self.ols[o], self.ols[o + 1]
        pairs = list(range(self.ops[o], self.ops[o + 1]))
        arcs_by_pair: dict[int, list[int]] = {q: [] for q in pairs}
        for k in range(l0, l1):
            for a in range(self.las[k], self.las[k + 1]):
                arcs_by_pair[self.arc_pair[a]].append(a)
        pair_keys = {q: self.pair_key(q, arcs_by_pair[q]) for q in pairs}
        ranked = sorted(pairs, key=pair_keys.__getitem__)
        need = list(self.line_qty[l0:l1])
        journal: list[tuple[int, int]] = []
        opened: set[int] = set()
        fill = self.g.fill
        wait = False
        if fill == "first_location":
            assert self.first_loc is not None
            chosen = [q for q in ranked if self.pair_loc[q] == self.first_loc[o]]
            if chosen and self.sc[o]:
                if self.try_whole(o, chosen[0], arcs_by_pair[chosen[0]], journal, opened):
                    need = [0] * len(need)
            elif chosen:
                self.line_fill(o, chosen, pair_keys, need, journal, opened)
        elif self.sc[o] or fill == "whole_order_first":
            for q in ranked:
                if self.try_whole(o, q, arcs_by_pair[q], journal, opened):
                    need = [0] * len(need)
                    break
            if any(need) and not self.sc[o]:
                self.line_fill(o, ranked, pair_keys, need, journal, opened)
        elif fill == "fewest_locations":
            wait = not self.fewest(o, ranked, pair_keys, arcs_by_pair, need, journal, opened)
        else:
            self.line_fill(o, ranked, pair_keys, need, journal, opened)
        if not any(need):
            return
        self.settle(o, need, journal, opened, wait=wait)

    def settle(
        self,
        o: int,
        need: list[int],
        journal: list[tuple[int, int]],
        opened: set[int],
        *,
        wait: bool,
    ) -> None:
        l0, l1 = self.ols[o], self.ols[o + 1]
        if not self.bo[o]:
            self.rollback(journal, opened)
            self.rejected[o] = True
            return
        whole = wait or self.sc[o] or self.g.shortfall == "wait"
        if not whole and self.can_backorder is not None and not self.can_backorder[o]:
            whole = True  # no location accepts the backorder: the order cannot go ahead
        if whole:
            self.rollback(journal, opened)
            self.backorder[l0:l1] = self.line_qty[l0:l1]
            return
        self.backorder[l0:l1] = need


def fill_orders(problem: Problem, greedy: GreedyConfig) -> FillResult:
    """Run a greedy policy over a compiled problem.

    Parameters
    ----------
    problem
        The compiled problem (its rules give eligibility, stock policy and constraints).
    greedy
        The ranking chain, fill and shortfall behaviour.

    Returns
    -------
    FillResult
    """
    p = problem
    chain = compile_chain(p, greedy)
    engine = _Engine(p, greedy, chain)
    ctx = p.meta["rules"]
    assert isinstance(ctx, RuleContext)
    needs_eligible = greedy.fill == "first_location" or greedy.backorder_at != "none"
    bo_mask = location_mask(greedy.backorderable, ctx)
    if needs_eligible:
        first = np.full(p.n_orders, -1, np.int64)
        can_bo = np.zeros(p.n_orders, bool)
        for s in range(0, p.n_orders, _CHUNK):
            orders = np.arange(s, min(s + _CHUNK, p.n_orders), dtype=np.int64)
            eligible, ranked = _ranked_eligible(p, chain, orders)
            ok = np.take_along_axis(eligible, ranked, axis=1)
            has = ok.any(axis=1)
            first[orders] = np.where(has, ranked[np.arange(len(orders)), ok.argmax(axis=1)], -1)
            can_bo[orders] = (eligible & bo_mask[None, :]).any(axis=1)
        engine.first_loc = first.tolist()
        if greedy.backorder_at == "first_backorderable":
            engine.can_backorder = can_bo.tolist()
    for o in order_sequence(p, greedy.sequence).tolist():
        engine.serve(o)
    solution = Solution(
        arc_qty=engine.arc_qty, line_backorder=engine.backorder, order_rejected=engine.rejected
    )
    where = np.full(p.n_lines, -1, np.int64)
    if greedy.backorder_at != "none":
        where = _backorder_locations(p, chain, greedy, solution, bo_mask)
    return FillResult(solution=solution, backorder_location=where)


def _backorder_locations(
    problem: Problem,
    chain: CompiledChain,
    greedy: GreedyConfig,
    solution: Solution,
    bo_mask: BoolArray,
) -> IntArray:
    p = problem
    where = np.full(p.n_lines, -1, np.int64)
    lines = np.flatnonzero(solution.line_backorder > 0)
    if not len(lines):
        return where
    stocked = p.meta.get("stocked")
    orders = np.unique(p.line_order[lines])
    for s in range(0, len(orders), _CHUNK):
        chunk = orders[s : s + _CHUNK]
        eligible, ranked = _ranked_eligible(p, chain, chunk)
        row_of = {int(o): i for i, o in enumerate(chunk)}
        for k in lines[np.isin(p.line_order[lines], chunk)].tolist():
            r = row_of[int(p.line_order[k])]
            locs = ranked[r]
            ok = eligible[r][locs]
            if greedy.backorder_at == "first_stocking" and isinstance(stocked, np.ndarray):
                ok = ok & stocked[locs, p.line_sku[k]]
            else:
                ok = ok & bo_mask[locs]
            if ok.any():
                where[k] = int(locs[int(ok.argmax())])
    return where


def backorder_frame(problem: Problem, solution: Solution, where: IntArray) -> pl.DataFrame:
    """order_id, line_id, sku, location_id, qty: where each backordered line waits."""
    p = problem
    k = np.flatnonzero((solution.line_backorder > 0) & (where >= 0))
    return pl.DataFrame(
        {
            "order_id": p.order_ids[p.line_order[k]].astype(str),
            "line_id": p.line_ids[k].astype(str),
            "sku": p.sku_ids[p.line_sku[k]].astype(str),
            "location_id": p.location_ids[where[k]].astype(str),
            "qty": solution.line_backorder[k].astype(np.int64),
        },
        schema={
            "order_id": pl.String,
            "line_id": pl.String,
            "sku": pl.String,
            "location_id": pl.String,
            "qty": pl.Int64,
        },
    )
