"""Real-time sourcing: the optimal sourcing of one order in about a millisecond, and its reservation.

The batch path (:func:`allocator.allocate`) compiles tables with polars joins, which costs
10-20 ms even for one order. A checkout or an order-capture service needs an answer in well under
that, so this module keeps a :class:`SourcingIndex` per network (location coordinates, flags,
capacities, the rate card, explicit costs) as plain numpy arrays and sources one order at a time
against it:

1. **costs**: per location, the unit and shipment cost of serving this order, with exactly the
   cost model of :func:`allocator.compile_problem` (distance, zone, rate card, cross-border
   surcharge, lateness against ``promised_days``, split penalty; pickups free at their store);
2. **search**: an exact enumeration of location subsets. For a fixed set of open locations the
   cheapest fill is greedy per SKU (the unit cost depends on the location only, and every unit of
   the order carries the same backorder penalty), so a subset is priced in a few array
   operations. Subsets of size ``k`` are tried for ``k = 1, 2, ...`` only while the lower bound
   ``(k cheapest shipment costs) + (variable cost with every location open)`` is below the best
   plan found, and a location joins size-``k`` subsets only if its own shipment cost leaves room
   under that bound. When capacities could bind or the subsets would be too many, a one-order
   MILP is handed to :func:`allocator.solvers.exact.solve_exact` instead; either way the answer
   is optimal, and equal in cost to ``allocate(network, order)`` on the same stock;
3. **reservation**: :func:`source_and_reserve` reads the ledger's current ATP for the order's SKUs
   in one snapshot, sources, and reserves the chosen lines with one all-or-none
   :meth:`~allocator.inventory.Ledger.reserve`. The reservation re-checks availability inside
   its write transaction, so two processes can never promise the same unit; when stock moved
   between the read and the write, the read and the sourcing are repeated (a bounded number of
   times).

See ``docs/realtime.md`` for the design, the guarantees and the measured latency.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from allocator.costs import haversine_km
from allocator.errors import IdempotencyConflict, InputError, InsufficientStock
from allocator.model import Network, Order, OrderLine
from allocator.plan import CostBreakdown
from allocator.rules.schema import RuleSet

if TYPE_CHECKING:
    from allocator.inventory import Hold, Ledger
    from allocator.problem import Problem

__all__ = [
    "Assignment",
    "Backorder",
    "Sourcing",
    "SourcingIndex",
    "read_atp",
    "source",
    "source_and_reserve",
]

log = logging.getLogger("allocator")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Most location subsets of one size that the enumeration prices before it hands the order to
#: the MILP instead (pricing 20k subsets of 3 locations takes about 1 ms).
MAX_SUBSETS = 20_000

_EPS = 1e-9


# ---------------------------------------------------------------------------------------------
# The per-network index
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SourcingIndex:
    """Everything about a network that sourcing one order needs, as plain arrays.

    Build it once per network and rule set with :meth:`build`; it is immutable and safe to share
    between threads. Stock is not part of the index: it comes from a ledger
    (:func:`source_and_reserve`) or from an explicit ATP mapping (:func:`source`); the network's
    own stock table is kept as the default for :func:`source`.

    Attributes
    ----------
    rules
        The rule set whose cost model and constraints are applied.
    location_ids
        Location ids, in the network's order.
    """

    rules: RuleSet
    location_ids: tuple[str, ...]
    location_index: Mapping[str, int]
    lat: FloatArray
    lon: FloatArray
    country_code: IntArray  # -1 where unknown
    country_codes: Mapping[str, int]
    can_ship: BoolArray
    can_pickup: BoolArray
    capacity_units: FloatArray  # inf where unlimited or capacities are ignored
    capacity_shipments: FloatArray
    zone_limits: FloatArray
    parcel_by_zone: FloatArray
    unit_by_zone: FloatArray
    transit_by_zone: IntArray
    unknown_zone: int
    cross_border_parcel: float
    backorder_penalty: float
    priority_weight: float
    rejection_penalty: float
    split_penalty: float
    lateness_penalty: float
    ship_complete_all: bool
    max_locations: int
    explicit_costs: Mapping[str, tuple[IntArray, FloatArray, FloatArray]] | None = field(
        default=None, repr=False
    )
    stock_atp: Mapping[str, tuple[IntArray, IntArray]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, network: Network, rules: RuleSet | None = None) -> SourcingIndex:
        """Precompute the arrays of ``network`` under ``rules``.

        Parameters
        ----------
        network
            Locations (and optional explicit costs); its stock table becomes the default ATP
            of :func:`source`.
        rules
            The rule set (``RuleSet()`` by default).

        Returns
        -------
        SourcingIndex
        """
        rules = rules or RuleSet()
        objective, constraints = rules.objective, rules.constraints
        card = objective.rate_card
        locs = network.locations
        ids = tuple(str(v) for v in locs["location_id"].to_list())
        index = {loc: i for i, loc in enumerate(ids)}
        countries = locs["country"].to_list()
        codes: dict[str, int] = {}
        for c in countries:
            if c is not None and c not in codes:
                codes[c] = len(codes)
        country_code = np.array(
            [codes[c] if c is not None else -1 for c in countries], dtype=np.int64
        )

        def floats(name: str) -> FloatArray:
            values = locs[name].to_list()
            return np.array([np.nan if v is None else float(v) for v in values], np.float64)

        def capacity(name: str) -> FloatArray:
            if not constraints.respect_capacity:
                return np.full(len(ids), np.inf)
            values = locs[name].to_list()
            return np.array([np.inf if v is None else float(v) for v in values], np.float64)

        explicit: dict[str, tuple[IntArray, FloatArray, FloatArray]] | None = None
        if network.costs is not None:
            grouped: dict[str, list[tuple[int, float, float]]] = {}
            for order_id, loc, unit, ship in network.costs.select(
                "order_id", "location_id", "unit_cost", "shipment_cost"
            ).iter_rows():
                grouped.setdefault(order_id, []).append((index[loc], float(unit), float(ship)))
            explicit = {}
            for order_id, rows in grouped.items():
                rows.sort()
                explicit[order_id] = (
                    np.array([r[0] for r in rows], np.int64),
                    np.array([r[1] for r in rows], np.float64),
                    np.array([r[2] for r in rows], np.float64),
                )
        stock: dict[str, tuple[list[int], list[int]]] = {}
        for loc, sku, on_hand, reserved, safety in network.stock.select(
            "location_id", "sku", "on_hand", "reserved", "safety_stock"
        ).iter_rows():
            atp = max(0, on_hand - reserved - safety)
            if atp > 0:
                entry = stock.setdefault(sku, ([], []))
                entry[0].append(index[loc])
                entry[1].append(atp)
        cap = constraints.max_locations_per_order
        return cls(
            rules=rules,
            location_ids=ids,
            location_index=index,
            lat=floats("lat"),
            lon=floats("lon"),
            country_code=country_code,
            country_codes=codes,
            can_ship=np.array(locs["can_ship"].to_list(), dtype=bool),
            can_pickup=np.array(locs["can_pickup"].to_list(), dtype=bool),
            capacity_units=capacity("capacity_units"),
            capacity_shipments=capacity("capacity_shipments"),
            zone_limits=np.asarray(card.zone_limits_km, np.float64),
            parcel_by_zone=np.asarray(card.parcel_by_zone, np.float64),
            unit_by_zone=np.asarray(card.unit_by_zone, np.float64),
            transit_by_zone=np.asarray(card.transit_days_by_zone, np.int64),
            unknown_zone=card.unknown_distance_zone or card.n_zones,
            cross_border_parcel=card.cross_border_parcel,
            backorder_penalty=objective.backorder_penalty,
            priority_weight=objective.priority_weight,
            rejection_penalty=objective.rejection_penalty,
            split_penalty=objective.split_penalty,
            lateness_penalty=objective.lateness_penalty,
            ship_complete_all=constraints.ship_complete,
            max_locations=len(ids) if cap is None else min(cap, len(ids)),
            explicit_costs=explicit,
            stock_atp={
                sku: (np.array(locs_, np.int64), np.array(atps, np.int64))
                for sku, (locs_, atps) in stock.items()
            },
        )

    @property
    def n_locations(self) -> int:
        """Number of locations."""
        return len(self.location_ids)

    def stock_matrix(self, skus: Sequence[str]) -> IntArray:
        """ATP of the network's own stock table, one row per SKU, one column per location."""
        atp = np.zeros((len(skus), self.n_locations), np.int64)
        for row, sku in enumerate(skus):
            held = self.stock_atp.get(sku)
            if held is not None:
                atp[row, held[0]] = held[1]
        return atp

    def atp_matrix(self, skus: Sequence[str], atp: Mapping[tuple[str, str], int]) -> IntArray:
        """Turn a ``{(location_id, sku): units}`` mapping into the matrix :func:`source` uses.

        Positions at locations outside the network are ignored.
        """
        row_of = {sku: i for i, sku in enumerate(skus)}
        out = np.zeros((len(skus), self.n_locations), np.int64)
        for (loc, sku), units in atp.items():
            row = row_of.get(sku)
            col = self.location_index.get(loc)
            if row is not None and col is not None and units > 0:
                out[row, col] = units
        return out


_INDEX_CACHE: dict[tuple[int, int], tuple[Network, RuleSet | None, SourcingIndex]] = {}


def _index_for(network: Network | SourcingIndex, rules: RuleSet | None) -> SourcingIndex:
    """The index of ``network`` (built once per network object and rule set, then reused)."""
    if isinstance(network, SourcingIndex):
        if rules is not None and rules != network.rules:
            raise InputError(
                "the sourcing index was built with other rules; build a new index",
                source="rules",
            )
        return network
    key = (id(network), id(rules))
    hit = _INDEX_CACHE.get(key)
    if hit is not None and hit[0] is network and hit[1] is rules:
        return hit[2]
    index = SourcingIndex.build(network, rules)
    if len(_INDEX_CACHE) >= 16:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    _INDEX_CACHE[key] = (network, rules, index)
    return index


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """Units of one order line sourced from one location."""

    line_id: str
    sku: str
    location_id: str
    qty: int


@dataclass(frozen=True, slots=True)
class Backorder:
    """Units of one order line promised later."""

    line_id: str
    sku: str
    qty: int


@dataclass(frozen=True)
class Sourcing:
    """The sourcing decision for one order.

    Attributes
    ----------
    order_id
        The order.
    assignments
        Units per (line, location), ordered by line then location.
    backorders
        Units per line that wait for stock.
    rejected
        The order cannot be served under its constraints (it does not allow backorders); then
        nothing is assigned or backordered.
    cost
        Cost of the decision under the rule set, priced as :func:`allocator.plan.evaluate`
        prices a plan.
    method
        How it was found: ``"enumeration"`` or ``"milp"``.
    hold
        The ledger reservation (:func:`source_and_reserve` only; ``None`` when nothing was
        reserved).
    attempts
        How many read-source-reserve rounds it took (stock moving between the read and the
        write costs a round).
    seconds
        Wall time of the decision (without the ledger).
    """

    order_id: str
    assignments: tuple[Assignment, ...]
    backorders: tuple[Backorder, ...]
    rejected: bool
    cost: CostBreakdown
    method: Literal["enumeration", "milp"]
    hold: Hold | None = None
    attempts: int = 1
    seconds: float = 0.0

    @property
    def locations(self) -> tuple[str, ...]:
        """Locations that ship something, sorted."""
        return tuple(sorted({a.location_id for a in self.assignments}))

    @property
    def shipments(self) -> int:
        """Number of shipments (locations)."""
        return len(self.locations)

    @property
    def units_assigned(self) -> int:
        """Units assigned to locations."""
        return sum(a.qty for a in self.assignments)

    @property
    def units_backordered(self) -> int:
        """Units backordered."""
        return sum(b.qty for b in self.backorders)

    def reservation(self) -> list[tuple[str, str, int]]:
        """The assignments as ledger lines ``(sku, location_id, qty)``, summed per position."""
        per: dict[tuple[str, str], int] = {}
        for a in self.assignments:
            per[(a.sku, a.location_id)] = per.get((a.sku, a.location_id), 0) + a.qty
        return [(sku, loc, qty) for (sku, loc), qty in sorted(per.items())]


# ---------------------------------------------------------------------------------------------
# One order as arrays
# ---------------------------------------------------------------------------------------------


def line_ids(order: Order) -> list[str]:
    """Line ids of an order, defaulting to the 1-based line number as the contract does."""
    return [
        line.line_id if line.line_id is not None else str(i + 1)
        for i, line in enumerate(order.lines)
    ]


@dataclass(slots=True)
class _View:
    """One order as arrays (internal)."""

    skus: list[str]  # distinct SKUs, first-appearance order
    line_sku: list[int]
    line_qty: list[int]
    demand: IntArray  # per SKU
    units: int
    weight: float
    backorder_cost: float  # per unit
    reject_cost: float  # whole order
    ship_complete: bool
    allow_backorder: bool
    pickup: int  # location index, -1 for a shipping order


def _view(order: Order, index: SourcingIndex) -> _View:
    skus: list[str] = []
    row_of: dict[str, int] = {}
    line_sku, line_qty = [], []
    for line in order.lines:
        row = row_of.get(line.sku)
        if row is None:
            row = row_of[line.sku] = len(skus)
            skus.append(line.sku)
        line_sku.append(row)
        line_qty.append(line.qty)
    demand = np.zeros(len(skus), np.int64)
    np.add.at(demand, line_sku, line_qty)
    units = int(demand.sum())
    weight = (1.0 + index.priority_weight) ** float(order.priority)
    pickup = -1
    if order.fulfillment == "pickup":
        assert order.pickup_location_id is not None
        pickup = index.location_index.get(order.pickup_location_id, -1)
        if pickup < 0:
            raise InputError(
                f"unknown location {order.pickup_location_id!r}",
                source="order",
                column="pickup_location_id",
            )
        if not index.can_pickup[pickup]:
            raise InputError(
                f"location {order.pickup_location_id!r} cannot hand over pickup orders "
                "(can_pickup is false)",
                source="order",
                column="pickup_location_id",
            )
    return _View(
        skus=skus,
        line_sku=line_sku,
        line_qty=line_qty,
        demand=demand,
        units=units,
        weight=weight,
        backorder_cost=index.backorder_penalty * weight,
        reject_cost=index.rejection_penalty * weight * units,
        ship_complete=bool(order.ship_complete or index.ship_complete_all),
        allow_backorder=bool(order.allow_backorder),
        pickup=pickup,
    )


def _pair_costs(
    order: Order, view: _View, index: SourcingIndex, locs: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Unit cost, shipment cost and distance of ``locs`` for this order (compile_problem's model)."""
    n = len(locs)
    if view.pickup >= 0 or n == 0:
        return np.zeros(n), np.zeros(n), np.full(n, np.nan)
    olat = np.nan if order.lat is None else float(order.lat)
    olon = np.nan if order.lon is None else float(order.lon)
    distance = haversine_km(np.full(n, olat), np.full(n, olon), index.lat[locs], index.lon[locs])
    zone = np.searchsorted(index.zone_limits, distance, side="left") + 1
    zone = np.where(np.isnan(distance), index.unknown_zone, zone).astype(np.int64)
    if index.explicit_costs is not None:
        listed = index.explicit_costs.get(order.order_id)
        assert listed is not None  # candidates were limited to listed locations
        pos = np.searchsorted(listed[0], locs)
        unit = listed[1][pos].copy()
        ship = listed[2][pos].copy()
    else:
        unit = index.unit_by_zone[zone - 1]
        ship = index.parcel_by_zone[zone - 1]
        if order.country is not None:
            code = index.country_codes.get(order.country, -2)
            loc_code = index.country_code[locs]
            ship = ship + index.cross_border_parcel * ((loc_code >= 0) & (loc_code != code))
    if order.promised_days is not None:
        late = np.maximum(0, index.transit_by_zone[zone - 1] - int(order.promised_days))
        unit = unit + index.lateness_penalty * late
    ship = ship + index.split_penalty
    return unit.astype(np.float64), ship.astype(np.float64), distance


def _eligible(order: Order, view: _View, index: SourcingIndex) -> BoolArray:
    """Locations that may serve this order at all (before stock)."""
    if view.pickup >= 0:
        ok = np.zeros(index.n_locations, bool)
        ok[view.pickup] = True
    else:
        ok = index.can_ship.copy()
        if index.explicit_costs is not None:
            listed = index.explicit_costs.get(order.order_id)
            mask = np.zeros(index.n_locations, bool)
            if listed is not None:
                mask[listed[0]] = True
            ok &= mask
    # A location allowed no shipment at all can never ship (its shipments row is 0).
    ok &= index.capacity_shipments >= 1
    return ok


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _combinations(n: int, k: int) -> IntArray:
    """All k-subsets of range(n) in lexicographic order, as an (m, k) array."""
    if k == 0:
        return np.zeros((1, 0), np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), np.int64)
    out = flat.reshape(-1, k)
    out.setflags(write=False)
    return out


@dataclass(slots=True)
class _Choice:
    """The best plan found so far: per (SKU, candidate) units, or waiting, or rejecting."""

    cost: float
    take: IntArray | None  # (S, C) units per SKU per candidate; None: nothing ships
    rejected: bool


def _fill(
    supply: IntArray, unit: FloatArray, demand: IntArray, sets: IntArray
) -> tuple[FloatArray, IntArray]:
    """Greedy fill per SKU for each row of ``sets`` (candidate columns in unit-cost order).

    Each SKU takes what it still needs from the first location of the row, then the next, and so
    on. Returns the variable (unit) cost of each row, and the units left short per row and SKU.
    """
    have = supply[:, sets]  # (S, M, k)
    before = np.cumsum(have, axis=2) - have
    # clip(need, 0, have), as two ufuncs: np.clip's Python wrapper costs more than the work here.
    take = np.minimum(np.maximum(demand[:, None, None] - before, 0), have)
    var = (take.sum(axis=0) * unit[sets]).sum(axis=1)
    return var, (demand[:, None] - take.sum(axis=2)).T


def _take_for(supply: IntArray, demand: IntArray, members: Sequence[int]) -> IntArray:
    """Units per (SKU, candidate) of the greedy fill over ``members`` (in unit-cost order)."""
    take = np.zeros_like(supply)
    rem = demand.copy()
    for c in members:
        t = np.minimum(supply[:, c], rem)
        take[:, c] = t
        rem -= t
    return take


def _search(
    view: _View,
    atp: IntArray,
    unit: FloatArray,
    ship: FloatArray,
    committed: BoolArray,
    max_new: int,
) -> _Choice | None:
    """Exact search over candidate subsets; ``None`` when the MILP should decide instead.

    ``atp`` is (S, C) over candidates; ``committed`` candidates already ship part of the order
    (their shipment is paid and they are always open).
    """
    demand = view.demand
    n_cand = atp.shape[1]
    supply = np.minimum(atp, demand[:, None])
    if view.allow_backorder and not view.ship_complete:
        # A unit whose shipping costs at least its backorder penalty is better left waiting.
        supply = np.where(unit[None, :] < view.backorder_cost, supply, 0)
    wait_cost = view.backorder_cost * view.units if view.allow_backorder else view.reject_cost

    if view.ship_complete:
        covers = np.all(atp >= demand[:, None], axis=0)
        cost = ship + unit * view.units
        cost = np.where(covers, cost, np.inf)
        best = int(np.argmin(cost)) if n_cand else -1
        if best < 0 or not cost[best] < wait_cost - _EPS:
            return _Choice(wait_cost, None, not view.allow_backorder)
        take = np.zeros_like(atp)
        take[:, best] = demand
        return _Choice(float(cost[best]), take, False)

    order = np.lexsort((np.arange(n_cand), unit))  # candidates by unit cost, then position
    fixed = np.where(committed, 0.0, ship)
    base = order[committed[order]].tolist()
    free = order[~committed[order] & supply[:, order].any(axis=0)]

    # Lower bound on the variable part: every candidate open, no shipment charges.
    everyone = order[None, :]
    var_all, short_all = _fill(supply, unit, demand, everyone)
    short_total = int(short_all.sum())
    if not view.allow_backorder and short_total:
        return _Choice(view.reject_cost, None, True)
    var_bound = float(var_all[0]) + view.backorder_cost * short_total * view.allow_backorder

    def price(sets: IntArray) -> FloatArray:
        var, rem = _fill(supply, unit, demand, sets)
        short = rem.sum(axis=1)
        cost = var + fixed[sets].sum(axis=1)
        if view.allow_backorder:
            return np.asarray(cost + view.backorder_cost * short)
        return np.asarray(np.where(short > 0, np.inf, cost))

    def with_base(chosen: IntArray) -> IntArray:
        """Rows of chosen candidates joined with the committed ones, in unit-cost order."""
        if not base:
            return chosen
        rows = np.concatenate(
            [chosen, np.broadcast_to(np.array(base, np.int64), (len(chosen), len(base)))], axis=1
        )
        rank = np.empty(n_cand, np.int64)
        rank[order] = np.arange(n_cand)
        return np.take_along_axis(rows, np.argsort(rank[rows], axis=1, kind="stable"), axis=1)

    best_cost = float(price(with_base(np.zeros((1, 0), np.int64)))[0])
    best_set: list[int] = list(base)
    if not view.allow_backorder and not math.isfinite(best_cost):
        best_cost = view.reject_cost
        best_set = []
        rejected = True
    else:
        rejected = False
    fixed_sorted = np.sort(ship[free]) if len(free) else np.zeros(0)
    for k in range(1, min(max_new, len(free)) + 1):
        smallest = float(fixed_sorted[: k - 1].sum())
        if var_bound + smallest + fixed_sorted[k - 1] >= best_cost - _EPS:
            break
        keep = free[ship[free] + smallest + var_bound < best_cost - _EPS]
        if len(keep) < k:
            break
        if math.comb(len(keep), k) > MAX_SUBSETS:
            return None
        sets = keep[_combinations(len(keep), k)]  # keep is in unit-cost order
        rows = with_base(sets)
        costs = price(rows)
        i = int(np.argmin(costs))
        if costs[i] < best_cost - _EPS:
            best_cost = float(costs[i])
            best_set = [int(c) for c in rows[i]]
            rejected = False
    if rejected:
        return _Choice(view.reject_cost, None, True)
    take = _take_for(supply, demand, best_set)
    return _Choice(best_cost, take if take.any() else None, False)


# ---------------------------------------------------------------------------------------------
# The one-order MILP (capacities that can bind, or too many subsets)
# ---------------------------------------------------------------------------------------------


def _problem(
    order: Order,
    view: _View,
    index: SourcingIndex,
    cand: IntArray,
    atp: IntArray,
    unit: FloatArray,
    ship: FloatArray,
    distance: FloatArray,
    max_locations: int,
) -> Problem:
    """The one-order :class:`~allocator.problem.Problem` over the candidate locations."""
    import polars as pl

    from allocator.problem import Problem

    n_lines = len(view.line_qty)
    line_sku = np.asarray(view.line_sku, np.int64)
    line_qty = np.asarray(view.line_qty, np.int64)
    full_atp = np.zeros((index.n_locations, len(view.skus)), np.int64)
    full_atp[cand, :] = atp.T
    arc_line, arc_pair, arc_cap = [], [], []
    for k in range(n_lines):
        for p in range(len(cand)):
            units = int(atp[line_sku[k], p])
            if units > 0:
                arc_line.append(k)
                arc_pair.append(p)
                arc_cap.append(min(int(line_qty[k]), units))
    arc_line_a = np.asarray(arc_line, np.int64)
    arc_pair_a = np.asarray(arc_pair, np.int64)
    covers = np.all(atp[line_sku, :] >= line_qty[:, None], axis=0)
    one = np.zeros(1, np.int64)
    return Problem(
        rules=index.rules,
        location_ids=np.asarray(index.location_ids, dtype=object),
        location_kind=np.full(index.n_locations, "warehouse", dtype=object),
        location_lat=index.lat,
        location_lon=index.lon,
        location_capacity_units=index.capacity_units,
        location_capacity_shipments=index.capacity_shipments,
        sku_ids=np.asarray(view.skus, dtype=object),
        atp=full_atp,
        order_ids=np.asarray([order.order_id], dtype=object),
        order_priority=np.asarray([order.priority], np.int64),
        order_ship_complete=np.asarray([view.ship_complete]),
        order_allow_backorder=np.asarray([view.allow_backorder]),
        order_created_at=np.asarray([np.iinfo(np.int64).min], np.int64),
        order_lat=np.asarray([np.nan if order.lat is None else order.lat], np.float64),
        order_lon=np.asarray([np.nan if order.lon is None else order.lon], np.float64),
        order_line_start=np.asarray([0, n_lines], np.int64),
        order_pair_start=np.asarray([0, len(cand)], np.int64),
        order_units=np.asarray([view.units], np.int64),
        order_reject_cost=np.asarray([view.reject_cost]),
        order_max_locations=np.asarray([max_locations], np.int64),
        line_order=np.zeros(n_lines, np.int64),
        line_sku=line_sku,
        line_qty=line_qty,
        line_ids=np.asarray(line_ids(order), dtype=object),
        line_backorder_cost=np.full(n_lines, view.backorder_cost),
        pair_order=np.zeros(len(cand), np.int64),
        pair_location=cand.astype(np.int64),
        pair_unit_cost=unit,
        pair_shipment_cost=ship,
        pair_distance_km=distance,
        pair_covers=covers,
        arc_line=arc_line_a,
        arc_pair=arc_pair_a,
        arc_location=cand[arc_pair_a].astype(np.int64) if len(arc_pair) else one[:0],
        arc_cap=np.asarray(arc_cap, np.int64),
        arc_unit_cost=unit[arc_pair_a] if len(arc_pair) else np.zeros(0),
        line_arc_start=np.concatenate(
            [[0], np.cumsum(np.bincount(arc_line_a, minlength=n_lines))]
        ).astype(np.int64),
        order_lines=pl.DataFrame(),
    )


def _milp_choice(
    order: Order,
    view: _View,
    index: SourcingIndex,
    cand: IntArray,
    atp: IntArray,
    unit: FloatArray,
    ship: FloatArray,
    distance: FloatArray,
    committed: BoolArray,
    max_new: int,
) -> _Choice:
    from allocator.plan import evaluate
    from allocator.solvers.exact import solve_exact

    # Committed locations ship free of a new parcel: price them so, and let the split cap count
    # only new ones by raising it by their number.
    ship_eff = np.where(committed, 0.0, ship)
    problem = _problem(
        order, view, index, cand, atp, unit, ship_eff, distance, max_new + int(committed.sum())
    )
    result = solve_exact(problem)
    if result.solution is None:  # pragma: no cover - a one-order MILP always solves
        raise InsufficientStock(f"the optimiser found no plan for order {order.order_id!r}")
    sol = result.solution
    if bool(sol.order_rejected[0]):
        return _Choice(view.reject_cost, None, True)
    take = np.zeros_like(atp)
    line_sku = np.asarray(view.line_sku, np.int64)
    np.add.at(take, (line_sku[problem.arc_line], problem.arc_pair), sol.arc_qty)
    cost = evaluate(problem, sol).total
    return _Choice(cost, take if take.any() else None, False)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _decide(
    order: Order,
    index: SourcingIndex,
    atp_full: IntArray,
    exclude: Collection[str],
    committed_ids: Collection[str],
) -> Sourcing:
    t0 = time.perf_counter()
    view = _view(order, index)
    eligible = _eligible(order, view, index)
    for loc in exclude:
        pos = index.location_index.get(loc)
        if pos is not None:
            eligible[pos] = False
    committed_mask_full = np.zeros(index.n_locations, bool)
    for loc in committed_ids:
        pos = index.location_index.get(loc)
        if pos is not None and eligible[pos]:
            committed_mask_full[pos] = True
    has_stock = (atp_full > 0).any(axis=0)
    cand = np.flatnonzero(eligible & (has_stock | committed_mask_full))
    atp = atp_full[:, cand]
    unit, ship, distance = _pair_costs(order, view, index, cand)
    committed = committed_mask_full[cand]
    max_new = max(0, index.max_locations - int(committed.sum()))
    # A capacity can only bind where the location could supply more units of this order.
    could_supply = np.minimum(atp, view.demand[:, None]).sum(axis=0)
    capacity_binds = bool(np.any(index.capacity_units[cand] < could_supply))
    choice: _Choice | None = None
    method: Literal["enumeration", "milp"] = "enumeration"
    if not capacity_binds:
        choice = _search(view, atp, unit, ship, committed, max_new)
    if choice is None:
        method = "milp"
        choice = _milp_choice(
            order, view, index, cand, atp, unit, ship, distance, committed, max_new
        )
    return _result(order, view, index, cand, unit, ship, committed, choice, method, t0)


def _result(
    order: Order,
    view: _View,
    index: SourcingIndex,
    cand: IntArray,
    unit: FloatArray,
    ship: FloatArray,
    committed: BoolArray,
    choice: _Choice,
    method: Literal["enumeration", "milp"],
    t0: float,
) -> Sourcing:
    ids = line_ids(order)
    assignments: list[Assignment] = []
    backorders: list[Backorder] = []
    unit_total = ship_total = backorder_total = reject_total = 0.0
    if choice.rejected:
        reject_total = view.reject_cost
    else:
        take = choice.take
        # Per SKU, the locations it comes from (by id) and the units each still has to give.
        sources: list[list[str]] = [[] for _ in view.skus]
        units_left: list[list[int]] = [[] for _ in view.skus]
        if take is not None:
            rows, cols = np.nonzero(take)
            picked = sorted(
                (row, index.location_ids[cand[col]], int(take[row, col]))
                for row, col in zip(rows.tolist(), cols.tolist(), strict=True)
            )
            for row, loc, units in picked:
                sources[row].append(loc)
                units_left[row].append(units)
        for k, (row, qty) in enumerate(zip(view.line_sku, view.line_qty, strict=True)):
            need = qty
            for j, loc in enumerate(sources[row]):
                units = min(need, units_left[row][j])
                if units <= 0:
                    continue
                units_left[row][j] -= units
                need -= units
                assignments.append(Assignment(ids[k], view.skus[row], loc, units))
                if not need:
                    break
            if need:
                backorders.append(Backorder(ids[k], view.skus[row], need))
        if take is not None:
            per_cand = take.sum(axis=0)
            used = per_cand > 0
            unit_total = float(np.dot(per_cand, unit))
            ship_total = float(ship[used & ~committed].sum())
        backorder_total = view.backorder_cost * sum(b.qty for b in backorders)
    cost = CostBreakdown(
        total=unit_total + ship_total + backorder_total + reject_total,
        unit=unit_total,
        shipment=ship_total,
        backorder=backorder_total,
        rejection=reject_total,
    )
    return Sourcing(
        order_id=order.order_id,
        assignments=tuple(assignments),
        backorders=tuple(backorders),
        rejected=choice.rejected,
        cost=cost,
        method=method,
        seconds=time.perf_counter() - t0,
    )


def source(
    order: Order,
    network: Network | SourcingIndex,
    *,
    rules: RuleSet | None = None,
    atp: Mapping[tuple[str, str], int] | None = None,
    exclude: Collection[str] = (),
    committed: Collection[str] = (),
) -> Sourcing:
    """Find the optimal sourcing of one order (no reservation).

    Parameters
    ----------
    order
        The order.
    network
        The network, or a prebuilt :class:`SourcingIndex` (an index is built once per network
        object and rule set and cached).
    rules
        The rule set (``RuleSet()`` by default; must match the index's when one is given).
    atp
        Units available to promise, ``{(location_id, sku): units}``; by default the network's
        own stock table.
    exclude
        Locations that must not serve this order (for example a store that refused it).
    committed
        Locations that already ship part of this order: their shipment is already paid, so
        more units from them cost only the unit cost; they count against the split cap.

    Returns
    -------
    Sourcing
        Optimal under the rule set: the same cost as ``allocate(network, order)`` on the same
        stock.

    Raises
    ------
    InputError
        When a pickup order names an unknown store or one that cannot hand orders over.
    """
    index = _index_for(network, rules)
    skus = list(dict.fromkeys(line.sku for line in order.lines))
    matrix = index.stock_matrix(skus) if atp is None else index.atp_matrix(skus, atp)
    return _decide(order, index, matrix, exclude, committed)


def read_atp(
    ledger: Ledger, skus: Sequence[str], locations: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Units available to promise at every (location, SKU) position asked, in one snapshot.

    A thin layer over :meth:`~allocator.inventory.Ledger.positions` (one read transaction for
    all positions; ``ledger.available`` reads one position per transaction). Holds whose
    time-to-live elapsed on the ledger's clock count as free, as in all the ledger's reads.

    Parameters
    ----------
    ledger
        The inventory ledger.
    skus, locations
        The positions: every pair of them.

    Returns
    -------
    dict
        ``{(location_id, sku): units}`` for positions with units available.
    """
    pairs = [(loc, sku) for sku in skus for loc in locations]
    return {(p.location_id, p.sku): p.available for p in ledger.positions(pairs) if p.available > 0}


def _hold_with_key(ledger: Ledger, order_id: str, key: str) -> Hold | None:
    for hold in ledger.holds(order_id):
        if hold.key == key:
            return hold
    return None


def sourcing_from_hold(
    order: Order, network: Network | SourcingIndex, hold: Hold, *, rules: RuleSet | None = None
) -> Sourcing:
    """The sourcing that a hold of ``order`` records (for replays of a keyed reservation)."""
    index = _index_for(network, rules)
    atp = {(line.location_id, line.sku): line.qty for line in hold.lines}
    view = _view(order, index)
    skus = view.skus
    matrix = index.atp_matrix(skus, atp)
    cand = np.flatnonzero(matrix.any(axis=0))
    take = np.minimum(matrix[:, cand], view.demand[:, None])
    # Lines take units of their SKU location by location, as the hold lists them.
    unit, ship, _ = _pair_costs(order, view, index, cand)
    choice = _Choice(0.0, take if take.any() else None, False)
    result = _result(
        order,
        view,
        index,
        cand,
        unit,
        ship,
        np.zeros(len(cand), bool),
        choice,
        "enumeration",
        time.perf_counter(),
    )
    return replace(result, hold=hold)


def source_and_reserve(
    order: Order,
    ledger: Ledger,
    *,
    network: Network | SourcingIndex,
    rules: RuleSet | None = None,
    key: str | None = None,
    ttl: float | None = None,
    exclude: Collection[str] = (),
    committed: Collection[str] = (),
    max_attempts: int = 8,
) -> Sourcing:
    """Source one order against the ledger's current stock and reserve it, all lines or none.

    Parameters
    ----------
    order
        The order.
    ledger
        The inventory ledger (any store).
    network
        The network or a prebuilt :class:`SourcingIndex` (locations and cost model; its stock
        table is not used: availability comes from the ledger).
    rules
        The rule set (``RuleSet()`` by default).
    key
        Idempotency key of the reservation. Calling again with the same key returns the first
        reservation, even when stock moved since. A fresh key is made when ``None``.
    ttl
        Seconds after which the reservation lapses (``None``: held until shipped or released).
    exclude
        Locations that must not serve the order.
    committed
        Locations that already ship part of the order (see :func:`source`).
    max_attempts
        Rounds of read-source-reserve tried when stock moves between the read and the write.

    Returns
    -------
    Sourcing
        The decision, with ``hold`` set when units were reserved (``None`` when the order was
        rejected or wholly backordered).

    Raises
    ------
    InsufficientStock
        When stock kept moving under the order for ``max_attempts`` rounds.
    IdempotencyConflict
        When ``key`` was used for a different call.
    """
    if max_attempts < 1:
        raise InputError("must be >= 1", source="max_attempts")
    index = _index_for(network, rules)
    explicit_key = key is not None
    key = key if key is not None else f"{order.order_id}/{uuid.uuid4().hex}"
    skus = list(dict.fromkeys(line.sku for line in order.lines))
    for attempt in range(1, max_attempts + 1):
        atp = read_atp(ledger, skus, index.location_ids)
        decision = _decide(order, index, index.atp_matrix(skus, atp), exclude, committed)
        lines = decision.reservation()
        if not lines:
            if explicit_key:
                earlier = _hold_with_key(ledger, order.order_id, key)
                if earlier is not None:
                    return sourcing_from_hold(order, index, earlier)
            return replace(decision, attempts=attempt)
        try:
            hold = ledger.reserve(order.order_id, lines, key=key, ttl=ttl)
        except InsufficientStock:
            log.debug("stock moved under order %s (attempt %d)", order.order_id, attempt)
            continue
        except IdempotencyConflict:
            earlier = _hold_with_key(ledger, order.order_id, key)
            if earlier is None:
                raise
            return sourcing_from_hold(order, index, earlier)
        return replace(decision, hold=hold, attempts=attempt)
    raise InsufficientStock(
        f"stock moved under order {order.order_id!r} in each of {max_attempts} attempts"
    )


def suborder(order: Order, quantities: Mapping[str, int], *, order_id: str | None = None) -> Order:
    """The same order with only some units of its lines (by line id), for re-sourcing.

    Lines not named, or named with zero units, are left out. Order-level attributes are kept.
    """
    ids = line_ids(order)
    lines = tuple(
        OrderLine(sku=line.sku, qty=quantities[lid], line_id=lid, unit_price=line.unit_price)
        for lid, line in zip(ids, order.lines, strict=True)
        if quantities.get(lid, 0) > 0
    )
    if not lines:
        raise InputError("no units to source", source="quantities")
    return order.model_copy(update={"lines": lines, "order_id": order_id or order.order_id})
