"""The event loop of one policy's replay.

Time moves from decision point to decision point (sync points every ``sync_minutes`` in real
time, window ends in ``batch`` mode, the nightly cut-off, or one point after the last order
``offline``). Between two points, stock movements are *operations* on a time-ordered queue,
applied to the :class:`~allocator.simulate._book.Book` (and its ledger) in time order: receipts,
returns, cancellations, reservations of real-time decisions at each order's own arrival time,
and shipments when orders are released to the warehouses.

At each point:

1. every operation up to the point is applied; units that became free since the last point
   become visible to sourcing (a stock sync), and capacities reset at midnight when they are
   daily;
2. backorders whose SKU received stock are retried (oldest first);
3. in ``nightly`` mode, at the cut-off: everything reserved but not yet released, and every open
   backorder, is released and allocated again jointly (kept when that is not cheaper), then
   released to the warehouses;
4. orders are decided: in real time the orders arriving before the next point, one at a time
   in arrival order (their reservations are queued at their arrival times); in ``batch`` mode
   the orders that arrived in the window just ended, jointly; ``offline`` all orders at once.

Real-time decisions for the interval are made at its start: nothing that happens inside the
interval (a receipt, a cancellation) is visible to them, exactly as with a periodic stock sync.
Only the policy's own reservations move stock down, so every reservation the loop queues is
covered by stock when the ledger applies it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.errors import AllocatorError
from allocator.model import Network, Orders
from allocator.simulate._book import Book
from allocator.simulate._config import SimulationConfig
from allocator.simulate._history import US_PER_DAY, US_PER_HOUR, US_PER_MINUTE, History
from allocator.simulate._policies import Decision, DecisionContext, Policy
from allocator.simulate._pricing import Pricer

__all__ = ["PolicyError", "Replay", "ReplayRecord"]

log = logging.getLogger("allocator")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Operation kinds, in the order they apply at equal times.
_RECEIVE, _RESTOCK, _RETURN, _CANCEL, _RESERVE, _SHIP = range(6)

# Hold states.
_PLANNED, _OPEN, _SHIPPED, _RELEASED = range(4)


class PolicyError(AllocatorError):
    """A policy's decision breaks the simulation's rules (more units than a line or than stock)."""


@dataclass
class _Hold:
    order: int
    lines: list[tuple[int, int, int]]  # (history line, location, units)
    state: int = _PLANNED
    hold_id: str | None = None
    index: int = 0


@dataclass
class ReplayRecord:
    """Everything a replay produced, as arrays (turned into frames by :mod:`._kpi`)."""

    history: History
    policy: str
    config: SimulationConfig
    line_first_filled: IntArray
    line_first_backordered: IntArray
    line_filled_later: IntArray
    line_unfilled: IntArray
    line_backorder_days: FloatArray
    order_decided_at: IntArray
    order_rejected: BoolArray
    order_cancelled: BoolArray
    order_cancelled_after_shipping: BoolArray
    order_returned_units: IntArray
    ship_order: IntArray
    ship_location: IntArray
    ship_units: IntArray
    ship_time: IntArray
    backlog_time: IntArray
    backlog_delta: IntArray
    used_units: FloatArray  # per location: in the replay, or on its busiest day
    used_shipments: FloatArray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class Replay:
    """One policy's replay of a history (see the module docstring).

    Parameters
    ----------
    history
        The history.
    policy
        The policy.
    config
        The run's settings.
    pricer
        Reference prices (used to keep the cheaper plan at a nightly re-optimisation).
    """

    def __init__(
        self, history: History, policy: Policy, config: SimulationConfig, pricer: Pricer
    ) -> None:
        self.h = history
        self.policy = policy
        self.cfg = config
        self.pricer = pricer
        h = history
        self.book = Book(history, config.ledger)
        self.heap: list[tuple[int, int, int, Any]] = []
        self.freeing: list[int] = []  # times of queued receipts, returns, cancellations
        self._seq = itertools.count()
        self.line_open = np.zeros(h.n_lines, np.int64)
        self.line_first_filled = np.zeros(h.n_lines, np.int64)
        self.line_first_backordered = np.zeros(h.n_lines, np.int64)
        self.line_filled_later = np.zeros(h.n_lines, np.int64)
        self.line_backorder_days = np.zeros(h.n_lines, np.float64)
        self.order_decided_at = np.full(h.n_orders, -1, np.int64)
        self.order_rejected = np.zeros(h.n_orders, bool)
        self.order_cancelled = np.zeros(h.n_orders, bool)
        self.order_cancelled_late = np.zeros(h.n_orders, bool)
        self.order_returned = np.zeros(h.n_orders, np.int64)
        self.order_holds: dict[int, list[int]] = {}
        self.holds: list[_Hold] = []
        self.shipped_lines: dict[int, list[list[int]]] = {}  # order -> [loc, sku, units left]
        self.ships: list[tuple[int, int, int, int]] = []
        self.backlog: list[tuple[int, int]] = []
        self.increased: set[int] = set()
        locs = h.network.locations
        self.capacity_units = (
            locs["capacity_units"].cast(pl.Float64).fill_null(np.inf).to_numpy().copy()
        )
        self.capacity_shipments = (
            locs["capacity_shipments"].cast(pl.Float64).fill_null(np.inf).to_numpy().copy()
        )
        self.cap_units = self.capacity_units.copy()
        self.cap_ships = self.capacity_shipments.copy()
        self.used_units = np.zeros(h.n_locations)  # in the current capacity period
        self.used_ships = np.zeros(h.n_locations)
        self.peak_units = np.zeros(h.n_locations)
        self.peak_ships = np.zeros(h.n_locations)
        self.release_us = round(config.release_minutes * US_PER_MINUTE)
        self.stats: dict[str, Any] = {
            "decisions": 0,
            "decide_seconds": 0.0,
            "ledger_seconds": 0.0,
            "retries": 0,
            "nights": 0,
            "nights_reoptimized": 0,
            "night_savings": 0.0,
            "returns_skipped": 0,
            "dropped_events": 0,
        }

    # -- the queue ---------------------------------------------------------------------------

    def push(self, at: int, kind: int, payload: Any) -> None:
        heapq.heappush(self.heap, (at, kind, next(self._seq), payload))
        if kind <= _CANCEL:  # the operation may free stock
            heapq.heappush(self.freeing, at)

    def next_freeing(self, after: int) -> int | None:
        """Time of the first queued operation after ``after`` that may free stock."""
        freeing = self.freeing
        while freeing and freeing[0] <= after:
            heapq.heappop(freeing)
        return freeing[0] if freeing else None

    def flush(self, until: int) -> None:
        """Apply every queued operation up to ``until`` (inclusive), in time order."""
        heap = self.heap
        t0 = time.perf_counter()
        while heap and heap[0][0] <= until:
            at, kind, _, payload = heapq.heappop(heap)
            if kind == _RESERVE:
                self._on_reserve(at, payload)
            elif kind == _SHIP:
                self._on_ship(at, payload)
            elif kind == _CANCEL:
                self._on_cancel(at, payload)
            elif kind == _RECEIVE:
                self._on_receive(at, payload)
            elif kind == _RESTOCK:
                self._on_restock(at, payload)
            else:
                self._on_return(at, payload)
        self.stats["ledger_seconds"] += time.perf_counter() - t0

    # -- operations --------------------------------------------------------------------------

    def _book_lines(self, hold: _Hold) -> list[tuple[int, int, int]]:
        sku = self.h.line_sku
        return [(loc, int(sku[k]), q) for k, loc, q in hold.lines]

    def _oid(self, order: int) -> str:
        return str(self.h.order_ids[order])

    def _on_reserve(self, at: int, hold: _Hold) -> None:
        if self.order_cancelled[hold.order]:  # cancelled the moment it was placed
            self._give_back(hold)
            hold.state = _RELEASED
            return
        oid = self._oid(hold.order)
        hold.hold_id = self.book.reserve(
            oid, self._book_lines(hold), at, key=f"{oid}/hold{hold.index}"
        )
        hold.state = _OPEN

    def _on_ship(self, at: int, hold: _Hold) -> None:
        if hold.state != _OPEN:
            return
        h = self.h
        oid = self._oid(hold.order)
        lines = self._book_lines(hold)
        self.book.ship(oid, hold.hold_id, lines, at, key=f"{oid}/ship{hold.index}")
        hold.state = _SHIPPED
        per_loc: dict[int, int] = {}
        shipped = self.shipped_lines.setdefault(hold.order, [])
        back: list[tuple[int, int, int]] = []
        for (k, loc, q), (_, sku, _) in zip(hold.lines, lines, strict=True):
            per_loc[loc] = per_loc.get(loc, 0) + q
            shipped.append([loc, sku, q])
            if h.line_returned[k]:
                back.append((loc, sku, q))
        for loc, units in per_loc.items():
            self.ships.append((hold.order, loc, units, at))
        if back:
            when = at + round(self.cfg.return_days * US_PER_DAY)
            self.push(when, _RESTOCK, (hold.order, back))

    def _on_cancel(self, at: int, order: int) -> None:
        self.order_cancelled[order] = True
        oid = self._oid(order)
        for index in self.order_holds.get(order, []):
            hold = self.holds[index]
            if hold.state == _SHIPPED:
                self.order_cancelled_late[order] = True
            elif hold.state == _OPEN:
                lines = self._book_lines(hold)
                self.book.release(oid, hold.hold_id, lines, at, key=f"{oid}/cancel{hold.index}")
                self.book.hide(lines)
                self.increased.update(sku for _, sku, _ in lines)
                self._give_back(hold)
                hold.state = _RELEASED
        h = self.h
        rows = slice(h.order_line_start[order], h.order_line_start[order + 1])
        waiting = int(self.line_open[rows].sum())
        if waiting:
            self.backlog.append((at, -waiting))
            self.line_open[rows] = 0

    def _on_receive(self, at: int, i: int) -> None:
        h = self.h
        loc, sku, qty = int(h.inbound_location[i]), int(h.inbound_sku[i]), int(h.inbound_qty[i])
        self.book.receive(loc, sku, qty, at, key=f"inbound/{i}")
        self.increased.add(sku)

    def _on_restock(self, at: int, payload: tuple[int, list[tuple[int, int, int]]]) -> None:
        order, lines = payload
        oid = self._oid(order)
        n = self.order_returned[order]
        self.book.restock(oid, lines, at, key=f"{oid}/return{n}")
        self.order_returned[order] += sum(q for _, _, q in lines)
        self.increased.update(sku for _, sku, _ in lines)
        left = {(loc, sku): q for loc, sku, q in lines}
        for entry in self.shipped_lines.get(order, []):
            take = min(entry[2], left.get((entry[0], entry[1]), 0))
            if take:
                entry[2] -= take
                left[(entry[0], entry[1])] -= take

    def _on_return(self, at: int, i: int) -> None:
        h = self.h
        order, sku, qty = int(h.return_order[i]), int(h.return_sku[i]), int(h.return_qty[i])
        lines: list[tuple[int, int, int]] = []
        for loc, s, left in self.shipped_lines.get(order, []):
            if s == sku and left and qty:
                take = min(left, qty)
                lines.append((loc, sku, take))
                qty -= take
        if not lines:
            self.stats["returns_skipped"] += 1
            return
        self._on_restock(at, (order, lines))

    # -- capacity ----------------------------------------------------------------------------

    def _use(self, hold: _Hold, sign: int) -> None:
        for loc in {loc for _, loc, _ in hold.lines}:
            self.cap_ships[loc] -= sign
            self.used_ships[loc] += sign
        for _, loc, q in hold.lines:
            self.cap_units[loc] -= sign * q
            self.used_units[loc] += sign * q
        np.maximum(self.peak_units, self.used_units, out=self.peak_units)
        np.maximum(self.peak_ships, self.used_ships, out=self.peak_ships)

    def _give_back(self, hold: _Hold) -> None:
        self._use(hold, -1)

    def _new_day(self) -> None:
        self.cap_units = self.capacity_units.copy()
        self.cap_ships = self.capacity_shipments.copy()
        self.used_units[:] = 0
        self.used_ships[:] = 0

    def _locations(self) -> pl.DataFrame:
        locs = self.h.network.locations

        def left(values: FloatArray) -> pl.Series:
            finite = np.isfinite(values)
            return (
                pl.Series(np.where(finite, np.maximum(0.0, np.floor(values)), 0.0))
                .cast(pl.Int64)
                .scatter(np.flatnonzero(~finite), None)
            )

        return locs.with_columns(
            left(self.cap_units).alias("capacity_units"),
            left(self.cap_ships).alias("capacity_shipments"),
        )

    # -- decisions ---------------------------------------------------------------------------

    def _decide(self, rows: IntArray, qty: IntArray, now: int, sequential: bool) -> Decision:
        """Ask the policy about history lines ``rows`` (whole orders, in arrival order)."""
        h = self.h
        frame = h.lines[rows]
        if not np.array_equal(qty, h.line_qty[rows]):
            frame = frame.with_columns(pl.Series("qty", qty, dtype=pl.Int64))
        network = Network(
            locations=self._locations(),
            stock=self.book.stock_frame(np.unique(h.line_sku[rows])),
            costs=h.network.costs,
            items=h.network.items,
        )
        context = DecisionContext(
            sequential=sequential,
            now=now,
            history=h,
            seed=self.cfg.seed,
            time_limit=self.cfg.time_limit,
        )
        t0 = time.perf_counter()
        decision = self.policy.decide(network, Orders(frame), context)
        self.stats["decide_seconds"] += time.perf_counter() - t0
        self.stats["decisions"] += 1
        for name, value in decision.info.items():
            self.stats[name] = self.stats.get(name, 0) + value
        self._check(decision, rows, qty)
        return decision

    def _check(self, decision: Decision, rows: IntArray, qty: IntArray) -> None:
        n = len(rows)
        line, loc, units = decision.line, decision.location, decision.qty
        name = self.policy.name
        if len(decision.rejected) != n:
            raise PolicyError(
                f"policy {name!r} returned {len(decision.rejected)} flags for {n} lines"
            )
        if len(line) and (
            line.min() < 0 or line.max() >= n or loc.min() < 0 or loc.max() >= self.h.n_locations
        ):
            raise PolicyError(f"policy {name!r} named a line or location outside the batch")
        if np.any(units <= 0):
            raise PolicyError(f"policy {name!r} assigned a quantity <= 0")
        per_line = np.bincount(line, weights=units, minlength=n)
        if np.any(per_line > qty):
            k = int(np.argmax(per_line > qty))
            raise PolicyError(
                f"policy {name!r} assigned {int(per_line[k])} units to a line of {int(qty[k])}"
            )
        skus, sku = np.unique(self.h.line_sku[rows[line]], return_inverse=True)
        n_sku = len(skus)
        used = np.bincount(loc * n_sku + sku, weights=units, minlength=self.h.n_locations * n_sku)
        atp = self.book.atp(skus).reshape(-1)
        if np.any(used > atp):
            flat = int(np.argmax(used > atp))
            raise PolicyError(
                f"policy {name!r} promised {int(used[flat])} units of "
                f"{self.h.sku_ids[skus[flat % n_sku]]!r} at "
                f"{self.h.location_ids[flat // n_sku]!r}, but only {int(atp[flat])} are available"
            )

    def _holds(
        self, decision: Decision, rows: IntArray
    ) -> tuple[dict[int, _Hold], IntArray, BoolArray]:
        """New holds per order, units assigned per row, and rejected rows."""
        assigned = np.bincount(decision.line, weights=decision.qty, minlength=len(rows)).astype(
            np.int64
        )
        by_order: dict[int, _Hold] = {}
        line_order = self.h.line_order
        for r, loc, q in zip(
            decision.line.tolist(), decision.location.tolist(), decision.qty.tolist(), strict=True
        ):
            k = int(rows[r])
            o = int(line_order[k])
            hold = by_order.get(o)
            if hold is None:
                hold = by_order[o] = _Hold(order=o, lines=[])
            hold.lines.append((k, loc, q))
        return by_order, assigned, decision.rejected.astype(bool)

    def _register(self, hold: _Hold, at: int) -> None:
        hold.index = len(self.holds)
        self.holds.append(hold)
        self.order_holds.setdefault(hold.order, []).append(hold.index)
        self._use(hold, +1)
        self.push(at, _RESERVE, hold)
        if self.cfg.mode != "nightly":
            self.push(at + self.release_us, _SHIP, hold)

    def decide(
        self, first: int, last: int, now: int, sequential: bool, *, retry: bool = True
    ) -> None:
        """Decide orders ``first..last-1`` (arrival order, not cancelled) for the first time,
        together with the open backorders whose SKU received stock (older orders first)."""
        h = self.h
        orders = np.arange(first, last, dtype=np.int64)
        orders = orders[~self.order_cancelled[orders]]
        new_rows = self._rows(orders)
        old_rows = self._retry_rows() if retry else np.zeros(0, np.int64)
        if not len(new_rows) and not len(old_rows):
            return
        rows = np.concatenate([old_rows, new_rows])
        qty = np.concatenate([self.line_open[old_rows], h.line_qty[new_rows]])
        decision = self._decide(rows, qty, now, sequential)
        holds, assigned, rejected = self._holds(decision, rows)
        n_old = len(old_rows)
        if n_old:
            self.stats["retries"] += 1
            self._filled(old_rows, assigned[:n_old], now)
        created = h.order_created
        if len(new_rows):
            assigned, rejected, qty = assigned[n_old:], rejected[n_old:], qty[n_old:]
            line_order = h.line_order[new_rows]
            # Offline is hindsight: each order is served as if decided when it was placed.
            at_arrival = sequential or self.cfg.mode == "offline"
            when = created[line_order] if at_arrival else np.full(len(new_rows), now, np.int64)
            self.line_first_filled[new_rows] = assigned
            waiting = np.where(rejected, 0, qty - assigned)
            self.line_first_backordered[new_rows] = waiting
            self.line_open[new_rows] = waiting
            self.order_rejected[line_order[rejected]] = True
            decided = created[orders] if at_arrival else np.full(len(orders), now, np.int64)
            self.order_decided_at[orders] = decided
            for t, w in zip(when[waiting > 0].tolist(), waiting[waiting > 0].tolist(), strict=True):
                self.backlog.append((t, w))
        new_orders = set(orders.tolist())
        for o, hold in holds.items():
            self._register(hold, int(created[o]) if sequential and o in new_orders else now)
        if n_old:
            self.flush(now)  # later decisions at this point see the retries' reservations

    def _rows(self, orders: IntArray) -> IntArray:
        """History lines of ``orders``, in order."""
        h = self.h
        if not len(orders):
            return np.zeros(0, np.int64)
        starts, ends = h.order_line_start[orders], h.order_line_start[orders + 1]
        return np.concatenate(
            [np.arange(a, b, dtype=np.int64) for a, b in zip(starts, ends, strict=True)]
        )

    def _retry_rows(self) -> IntArray:
        """Open backorder lines of orders with a waiting SKU that received stock since the
        last retry (every open line of such an order: ship-complete orders stay whole)."""
        none = np.zeros(0, np.int64)
        if not self.increased:
            return none
        skus = np.fromiter(self.increased, dtype=np.int64)
        self.increased = set()
        h = self.h
        waiting = np.flatnonzero(self.line_open > 0)
        if not len(waiting):
            return none
        sku = h.line_sku[waiting]
        hit = np.isin(sku, skus)
        if not hit.any():
            return none
        unique = np.unique(sku[hit])
        has_stock = np.zeros(h.n_skus, bool)
        has_stock[unique] = self.book.atp(unique).sum(axis=0) > 0
        hit &= has_stock[sku]
        if not hit.any():
            return none
        orders = np.unique(h.line_order[waiting[hit]])
        orders = orders[~self.order_cancelled[orders] & ~self.order_rejected[orders]]
        rows = self._rows(orders)
        return np.asarray(rows[self.line_open[rows] > 0], dtype=np.int64)

    def _filled(self, rows: IntArray, assigned: IntArray, now: int) -> None:
        """Waiting units of ``rows`` got stock at ``now``."""
        got = assigned > 0
        if not got.any():
            return
        r, a = rows[got], assigned[got]
        self.line_open[r] -= a
        self.line_filled_later[r] += a
        age = (now - self.h.order_created[self.h.line_order[r]]) / US_PER_DAY
        self.line_backorder_days[r] += a * age
        self.backlog.append((now, -int(a.sum())))

    def night(self, now: int) -> None:
        """The nightly cut-off: re-allocate what is not yet released (if the policy optimises),
        then release everything held to the warehouses."""
        self.stats["nights"] += 1
        h = self.h
        held_orders = [
            o
            for o, indices in self.order_holds.items()
            if any(self.holds[i].state == _OPEN for i in indices)
        ]
        if self.policy.reoptimizes:
            waiting = np.unique(h.line_order[self.line_open > 0])
            orders = np.unique(np.concatenate([np.asarray(held_orders, np.int64), waiting]))
            orders = orders[~self.order_cancelled[orders] & ~self.order_rejected[orders]]
            if len(orders):
                self._reoptimize(orders, now)
        for o in sorted(self.order_holds):
            for index in self.order_holds[o]:
                hold = self.holds[index]
                if hold.state == _OPEN:
                    self.push(now, _SHIP, hold)
        self.flush(now)

    def _reoptimize(self, orders: IntArray, now: int) -> None:
        h = self.h
        rows = np.concatenate(
            [np.arange(h.order_line_start[o], h.order_line_start[o + 1]) for o in orders.tolist()]
        )
        held = np.zeros(len(rows), np.int64)
        position = {int(k): i for i, k in enumerate(rows.tolist())}
        old: list[_Hold] = []
        keep_line: list[int] = []
        keep_loc: list[int] = []
        keep_qty: list[int] = []
        for o in orders.tolist():
            for index in self.order_holds.get(o, []):
                hold = self.holds[index]
                if hold.state != _OPEN:
                    continue
                old.append(hold)
                for k, loc, q in hold.lines:
                    held[position[k]] += q
                    keep_line.append(position[k])
                    keep_loc.append(loc)
                    keep_qty.append(q)
        units = held + self.line_open[rows]
        mask = units > 0
        rows, units, held = rows[mask], units[mask], held[mask]
        remap = np.cumsum(mask) - 1
        keep = Decision(
            line=remap[np.asarray(keep_line, np.int64)] if keep_line else np.zeros(0, np.int64),
            location=np.asarray(keep_loc, np.int64),
            qty=np.asarray(keep_qty, np.int64),
            rejected=np.zeros(len(rows), bool),
        )
        # Give every held unit back, so the joint allocation may move it.
        for hold in old:
            oid = self._oid(hold.order)
            lines = self._book_lines(hold)
            self.book.release(oid, hold.hold_id, lines, now, key=f"{oid}/night{hold.index}")
            self._give_back(hold)
            hold.state = _RELEASED
        new = self._decide(rows, units, now, sequential=False)
        cost_new = self._cost(new, rows, units)
        cost_keep = self._cost(keep, rows, units)
        chosen = keep
        if cost_new < cost_keep - 1e-6:
            chosen = new
            self.stats["nights_reoptimized"] += 1
            self.stats["night_savings"] += cost_keep - cost_new
        holds, assigned, _ = self._holds(chosen, rows)
        before = self.line_open[rows].copy()
        # An order accepted earlier is not rejected at night: what is not assigned waits.
        after = units - assigned
        # Lines that waited and now got units are filled; units that lose their hold wait.
        filled = np.maximum(0, before - after)
        self._filled(rows, filled, now)
        again = np.maximum(0, after - before)
        self.line_open[rows] = after
        if again.any():
            self.backlog.append((now, int(again.sum())))
        for hold in holds.values():
            self._register(hold, now)
        self.flush(now)

    def _cost(self, decision: Decision, rows: IntArray, units: IntArray) -> float:
        """Reference cost of a decision over ``rows``: shipments, then units left waiting."""
        h = self.h
        orders = h.line_order[rows[decision.line]]
        pairs = np.unique(np.stack([orders, decision.location]), axis=1)
        price = self.pricer.pairs(pairs[0], pairs[1])
        unit_price = self.pricer.pairs(orders, decision.location).unit
        assigned = np.bincount(decision.line, weights=decision.qty, minlength=len(rows))
        short = np.maximum(0.0, units - assigned)
        penalty = self.pricer.order_backorder[h.line_order[rows]]
        return float(price.parcel.sum() + np.dot(unit_price, decision.qty) + np.dot(short, penalty))

    # -- the loop ----------------------------------------------------------------------------

    def points(self) -> list[tuple[int, bool]]:
        """Decision points: (time, is it a nightly cut-off)."""
        h, cfg = self.h, self.cfg
        start, end = h.t_start, h.t_end
        if cfg.mode == "offline":
            return [(end, False)]
        if cfg.mode == "batch":
            step = cfg.batch_minutes * US_PER_MINUTE
            n = -(-(end - start) // step)
            return [(start + i * step, False) for i in range(1, n + 1)]
        step = cfg.sync_minutes * US_PER_MINUTE
        grid = {start + i * step for i in range((end - start) // step + 1)}
        if cfg.mode != "nightly":
            return [(t, False) for t in sorted(grid)]
        last = int(h.order_created.max())
        cutoffs = set()
        day = start + cfg.night_hour * US_PER_HOUR
        while True:
            cutoffs.add(day)
            if day > last:
                break
            day += US_PER_DAY
        return [(t, t in cutoffs) for t in sorted(grid | cutoffs)]

    def _segment_end(self, now: int, times: IntArray, fixed: list[int]) -> int:
        """End of the real-time segment from ``now``: the next point at which stock may
        become visible (after a queued receipt, return or cancellation), or a fixed point."""
        end = max(int(times[-1]), self.h.t_end) + 1
        i = bisect.bisect_right(fixed, now)
        if i < len(fixed):
            end = min(end, fixed[i])
        freeing = self.next_freeing(now)
        if self.cfg.return_rate > 0:
            # Orders decided now may ship and come back within the segment.
            back = now + self.release_us + round(self.cfg.return_days * US_PER_DAY)
            freeing = back if freeing is None else min(freeing, back)
        if freeing is not None:
            j = int(np.searchsorted(times, freeing, side="left"))
            if j < len(times):
                end = min(end, int(times[j]))
        return end

    def run(self, progress: Any = None) -> ReplayRecord:
        """Replay the history; ``progress`` is an optional tqdm-like bar over decision points."""
        t0 = time.perf_counter()
        h, cfg = self.h, self.cfg
        for i in range(len(h.inbound_qty)):
            self.push(int(h.inbound_eta[i]), _RECEIVE, i)
        for o in np.flatnonzero(h.cancel_at >= 0).tolist():
            self.push(int(h.cancel_at[o]), _CANCEL, o)
        for i in range(len(h.return_qty)):
            self.push(int(h.return_at[i]), _RETURN, i)
        points = self.points()
        created = h.order_created
        mode = cfg.mode
        sequential = mode in ("realtime", "nightly")
        previous = h.t_start
        times = np.asarray([t for t, _ in points], dtype=np.int64)
        # Points where something besides arrivals happens (a cut-off, a capacity reset).
        fixed = [
            t
            for t, cutoff in points
            if cutoff or (cfg.capacity_period == "day" and t % US_PER_DAY == 0)
        ]
        skip_until = -1
        for now, cutoff in points:
            if progress is not None:
                progress.update(1)
            if now < skip_until:
                continue  # nothing becomes visible here: the real-time segment goes on
            self.flush(now)
            self.book.sync()
            if cfg.capacity_period == "day" and now % US_PER_DAY == 0 and now > h.t_start:
                self._new_day()
            if cutoff:
                self.decide(0, 0, now, sequential)  # backorders first, to ship tonight
                self.night(now)
            if sequential:
                after = self._segment_end(now, times, fixed)
                skip_until = after
                first = int(np.searchsorted(created, now, side="left"))
                last = int(np.searchsorted(created, after, side="left"))
                if first == last:
                    self.decide(0, 0, now, sequential=True)
                for a in range(first, last, cfg.max_segment_orders):
                    b = min(last, a + cfg.max_segment_orders)
                    if a > first:
                        self.flush(int(created[a]))
                    self.decide(a, b, now, sequential=True, retry=a == first)
            elif mode == "batch":
                first = int(np.searchsorted(created, previous, side="left"))
                last = int(np.searchsorted(created, now, side="left"))
                self.decide(first, last, now, sequential=False)
                self.flush(now)
            else:
                self.decide(0, h.n_orders, now, sequential=False)
                self.flush(now)
            previous = now
        final = points[-1][0] + self.release_us
        self.flush(final)
        self.stats["dropped_events"] = len(self.heap)
        open_rows = np.flatnonzero(self.line_open > 0)
        age = (final - created[h.line_order[open_rows]]) / US_PER_DAY
        self.line_backorder_days[open_rows] += self.line_open[open_rows] * age
        problems = self.book.verify()
        if problems:
            raise AllocatorError("the replay and its ledger disagree: " + "; ".join(problems[:5]))
        self.stats["ledger_calls"] = self.book.calls
        self.book.close()
        ships = np.asarray(self.ships, dtype=np.int64).reshape(-1, 4)
        backlog = np.asarray(self.backlog, dtype=np.int64).reshape(-1, 2)
        if cfg.capacity_period == "horizon":
            peak_units, peak_ships = self.used_units, self.used_ships
        else:
            peak_units, peak_ships = self.peak_units, self.peak_ships
        return ReplayRecord(
            history=h,
            policy=self.policy.name,
            config=cfg,
            line_first_filled=self.line_first_filled,
            line_first_backordered=self.line_first_backordered,
            line_filled_later=self.line_filled_later,
            line_unfilled=self.line_open,
            line_backorder_days=self.line_backorder_days,
            order_decided_at=self.order_decided_at,
            order_rejected=self.order_rejected,
            order_cancelled=self.order_cancelled,
            order_cancelled_after_shipping=self.order_cancelled_late,
            order_returned_units=self.order_returned,
            ship_order=ships[:, 0],
            ship_location=ships[:, 1],
            ship_units=ships[:, 2],
            ship_time=ships[:, 3],
            backlog_time=backlog[:, 0],
            backlog_delta=backlog[:, 1],
            used_units=peak_units.copy(),
            used_shipments=peak_ships.copy(),
            seconds=time.perf_counter() - t0,
            info=dict(self.stats),
        )
