"""The compiled array form of a sourcing problem.

:func:`compile_problem` turns a validated :class:`~allocator.model.Network`, an
:class:`~allocator.model.Orders` table and a :class:`~allocator.rules.RuleSet` into a
:class:`Problem`: flat numpy arrays that every solver reads, built once with columnar polars
joins (no Python loop per order line) and reused.

The shape is sparse on purpose. Nothing is ever indexed orders x locations x SKUs:

* **lines** are grouped by order (``order_line_start`` is a CSR offset array);
* **pairs** are the (order, location) combinations that may ship something: the location is
  eligible for the order and holds available stock of at least one of its SKUs. Each pair has
  a per-unit and a per-shipment cost;
* **arcs** are the (line, location) combinations with a positive cap ``min(qty, ATP)``; each
  arc belongs to one pair. Using the cap instead of the line quantity as the big-M of the
  linking row keeps the LP bound tight (``measurements.md``: 0.7 % below the optimum instead
  of 8.5 %);
* **ATP** is a dense (locations x SKUs) array, small next to the arcs.

The rule set is compiled in the same pass (:mod:`allocator.rules.compile`): eligibility rules
drop candidate arcs (the record of which rule excluded which (order, location) is kept in
``meta["exclusions"]`` for explanations), the stock policy lowers ATP and adds *side limits*
(ring-fences, per-channel exposure), and constraints and objective terms (split caps by channel,
ship-complete channels, capacity overrides, pickup transfers, penalties by priority or channel,
preferences, tie-break) become the per-order, per-location and per-pair arrays below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.model import Network, Orders, check_orders_against_network
from allocator.rules.compile import (
    arc_distance,
    arc_exclusions,
    build_context,
    location_mask,
    pair_cost_terms,
    side_limits,
    stock_policy,
)
from allocator.rules.schema import RuleSet

__all__ = ["Problem", "compile_problem"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.object_]


@dataclass(frozen=True, eq=False)
class Problem:
    """A compiled sourcing problem (read-only arrays; see the module docstring)."""

    rules: RuleSet
    location_ids: StrArray
    location_kind: StrArray
    location_lat: FloatArray
    location_lon: FloatArray
    location_capacity_units: FloatArray  # inf where unlimited
    location_capacity_shipments: FloatArray
    sku_ids: StrArray
    atp: IntArray  # (n_locations, n_skus)

    order_ids: StrArray
    order_priority: IntArray
    order_ship_complete: BoolArray
    order_allow_backorder: BoolArray
    order_created_at: IntArray  # microseconds since epoch; min int64 when unknown
    order_lat: FloatArray
    order_lon: FloatArray
    order_line_start: IntArray  # (n_orders + 1)
    order_pair_start: IntArray  # (n_orders + 1)
    order_units: IntArray
    order_reject_cost: FloatArray  # cost of rejecting the whole order
    order_max_locations: IntArray  # split cap per order (n_locations when uncapped)

    line_order: IntArray
    line_sku: IntArray
    line_qty: IntArray
    line_ids: StrArray
    line_backorder_cost: FloatArray  # per unit

    pair_order: IntArray
    pair_location: IntArray
    pair_unit_cost: FloatArray
    pair_shipment_cost: FloatArray
    pair_distance_km: FloatArray  # NaN where unknown
    pair_covers: BoolArray  # the location alone can ship every line of the order in full

    arc_line: IntArray
    arc_pair: IntArray
    arc_location: IntArray
    arc_cap: IntArray
    arc_unit_cost: FloatArray
    line_arc_start: IntArray  # (n_lines + 1)

    order_lines: pl.DataFrame = field(repr=False)  # validated lines in problem order
    # Side limits: for each limit i, sum of x over arcs limit_arcs[limit_start[i]:limit_start[i+1]]
    # must stay <= limit_bound[i]. Rules use them for channel ring-fencing and exposure caps.
    limit_start: IntArray = field(default_factory=lambda: np.zeros(1, np.int64), repr=False)
    limit_arcs: IntArray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    limit_bound: FloatArray = field(default_factory=lambda: np.zeros(0, np.float64), repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_orders(self) -> int:
        return len(self.order_ids)

    @property
    def n_lines(self) -> int:
        return len(self.line_qty)

    @property
    def n_locations(self) -> int:
        return len(self.location_ids)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_order)

    @property
    def n_arcs(self) -> int:
        return len(self.arc_line)

    @property
    def n_limits(self) -> int:
        return len(self.limit_bound)

    def limit_usage(self, arc_qty: IntArray) -> FloatArray:
        """Units counted against each side limit by a plan's arc quantities."""
        if not self.n_limits:
            return np.zeros(0)
        owner = np.repeat(np.arange(self.n_limits), np.diff(self.limit_start))
        usage = np.bincount(owner, weights=arc_qty[self.limit_arcs], minlength=self.n_limits)
        return usage.astype(np.float64)

    def arc_sku(self) -> IntArray:
        return self.line_sku[self.arc_line]

    def pair_units_if_covering(self) -> IntArray:
        """Units the pair ships when it serves its whole order (ship-complete)."""
        return self.order_units[self.pair_order]

    def nbytes(self) -> int:
        """Memory held by the arrays (not counting the frame)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def _offsets(group: IntArray, n: int) -> IntArray:
    """CSR offsets of a sorted group index with ``n`` groups."""
    return np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n))]).astype(np.int64)


def _np(series: pl.Series) -> Any:
    return series.to_numpy()


def _in(values: pl.Series, wanted: tuple[str, ...]) -> BoolArray:
    """Whether each value is one of ``wanted`` (nulls are not)."""
    if not wanted:
        return np.zeros(len(values), dtype=bool)
    hit = values.is_in(pl.Series(list(wanted), dtype=pl.String).implode()).fill_null(False)
    return np.asarray(hit.to_numpy(), dtype=bool)


def _country_codes(*columns: pl.Series) -> list[IntArray]:
    """Integer codes for country columns (-1 where unknown), shared across the columns."""
    names = pl.concat([c.cast(pl.String) for c in columns]).drop_nulls().unique().sort()
    codes = {name: i for i, name in enumerate(names.to_list())}
    return [
        _np(c.cast(pl.String).replace_strict(codes, default=-1, return_dtype=pl.Int64)).astype(
            np.int64
        )
        for c in columns
    ]


def compile_problem(network: Network, orders: Orders, rules: RuleSet | None = None) -> Problem:
    """Compile validated tables and a rule set into the array form.

    Parameters
    ----------
    network
        Locations, stock and optional explicit costs.
    orders
        Order lines.
    rules
        The rule set (defaults to ``RuleSet()``).

    Returns
    -------
    Problem

    Raises
    ------
    InputError
        If orders reference unknown pickup locations or costs reference unknown orders.
    """
    rules = rules or RuleSet()
    objective = rules.objective
    check_orders_against_network(orders, network)

    # ---- index maps -------------------------------------------------------------------------
    locs = network.locations
    n_loc = locs.height
    loc_index = pl.DataFrame(
        {"location_id": locs["location_id"], "loc": np.arange(n_loc, dtype=np.int64)}
    )
    sku_ids = pl.concat([network.stock["sku"], orders.lines["sku"]]).unique().sort().to_numpy()
    sku_index = pl.DataFrame({"sku": sku_ids, "sku_i": np.arange(len(sku_ids), dtype=np.int64)})

    lines = orders.lines.with_row_index("row")
    order_ids = lines["order_id"].unique(maintain_order=True)
    order_index = pl.DataFrame(
        {"order_id": order_ids, "ord": np.arange(len(order_ids), dtype=np.int64)}
    )
    lines = (
        lines.join(order_index, on="order_id", how="left")
        .join(sku_index, on="sku", how="left")
        .sort(["ord", "row"])
        .with_row_index("line")
        .with_columns(pl.col("line").cast(pl.Int64))
    )
    n_orders, n_lines = len(order_ids), lines.height

    # ---- orders --------------------------------------------------------------------------------
    heads = lines.group_by("ord", maintain_order=True).agg(
        pl.col("priority").first(),
        pl.col("ship_complete").first(),
        pl.col("allow_backorder").first(),
        pl.col("created_at").first(),
        pl.col("lat").first(),
        pl.col("lon").first(),
        pl.col("country").first(),
        pl.col("channel").first(),
        pl.col("fulfillment").first(),
        pl.col("pickup_location_id").first(),
        pl.col("promised_days").first(),
        pl.col("qty").sum().alias("units"),
        pl.len().alias("n_lines"),
    )
    loc_lat = _np(locs["lat"].fill_null(np.nan)).astype(np.float64)
    loc_lon = _np(locs["lon"].fill_null(np.nan)).astype(np.float64)
    ord_lat = _np(heads["lat"].fill_null(np.nan)).astype(np.float64)
    ord_lon = _np(heads["lon"].fill_null(np.nan)).astype(np.float64)
    listed: pl.DataFrame | None = None
    if network.costs is not None:
        listed = (
            network.costs.join(order_index, on="order_id")
            .join(loc_index, on="location_id")
            .select("ord", "loc", "unit_cost", "shipment_cost")
        )
    ctx = build_context(rules, locs, sku_ids, network.items, heads, loc_lat, loc_lon, listed)

    # ---- stock: available to promise, less what the rules hold back --------------------------
    stock = network.stock.join(loc_index, on="location_id").join(sku_index, on="sku")
    stock_loc = _np(stock["loc"]).astype(np.int64)
    stock_sku = _np(stock["sku_i"]).astype(np.int64)
    on_hand = _np(stock["on_hand"]).astype(np.int64)
    reserved = _np(stock["reserved"]).astype(np.int64)
    network_atp = np.maximum(0, on_hand - reserved - _np(stock["safety_stock"]))
    policy = stock_policy(ctx, stock_loc, stock_sku, network_atp)
    atp_values = policy.atp
    atp = np.zeros((n_loc, len(sku_ids)), dtype=np.int64)
    atp[stock_loc, stock_sku] = atp_values
    stocked = np.zeros(atp.shape, dtype=bool)
    stocked[stock_loc, stock_sku] = True
    free_ignoring_holds = np.zeros(atp.shape, dtype=np.int64)
    free_ignoring_holds[stock_loc, stock_sku] = np.maximum(0, on_hand - reserved)

    priority = _np(heads["priority"]).astype(np.int64)
    weight = (1.0 + objective.priority_weight) ** priority.astype(np.float64)
    cons = rules.constraints
    channel = heads["channel"]
    is_pickup_order = ctx.order_pickup >= 0
    ship_complete = (
        _np(heads["ship_complete"]).astype(bool)
        | cons.ship_complete
        | _in(channel, cons.ship_complete_channels)
        | (is_pickup_order & cons.pickup.ship_complete)
    )
    allow_backorder = _np(heads["allow_backorder"]).astype(bool) & rules.backorders_allowed
    created = heads["created_at"].cast(pl.Int64).fill_null(np.iinfo(np.int64).min)
    units = _np(heads["units"]).astype(np.int64)

    line_order = _np(lines["ord"]).astype(np.int64)
    line_qty = _np(lines["qty"]).astype(np.int64)
    line_sku = _np(lines["sku_i"]).astype(np.int64)

    # ---- candidate arcs: the line's SKU has ATP at the location, and no rule excludes it ------
    held = pl.DataFrame({"loc": stock_loc, "sku_i": stock_sku, "atp": atp_values}).filter(
        pl.col("atp") > 0
    )
    arcs = lines.select("line", "ord", "sku_i", "qty").join(held, on="sku_i", how="inner")
    if listed is not None:
        # An explicit costs table is authoritative: unlisted pairs are not eligible (but a
        # pickup order is always served at its own store, free of shipping).
        arcs = arcs.join(listed, on=["ord", "loc"], how="left")
    a_ord = _np(arcs["ord"]).astype(np.int64)
    a_loc = _np(arcs["loc"]).astype(np.int64)
    reason = arc_exclusions(
        ctx,
        a_ord,
        a_loc,
        _np(arcs["sku_i"]).astype(np.int64),
        None,
        None if listed is None else _np(arcs["unit_cost"].is_not_null()).astype(bool),
    )
    arcs = arcs.with_columns(pl.Series("reason", reason))
    exclusions = arcs.filter(pl.col("reason") >= 0).select("ord", "loc", "line", "reason")
    arcs = arcs.filter(pl.col("reason") < 0).sort(["line", "loc"])

    # ---- pairs -------------------------------------------------------------------------------
    arc_cap_all = np.minimum(_np(arcs["qty"]), _np(arcs["atp"])).astype(np.int64)
    arcs = arcs.with_columns(
        pl.Series("cap", arc_cap_all), (pl.col("atp") >= pl.col("qty")).alias("full")
    )
    pairs = (
        arcs.group_by(["ord", "loc"])
        .agg(pl.col("full").sum().alias("n_full"))
        .sort(["ord", "loc"])
        .with_row_index("pair")
        .with_columns(pl.col("pair").cast(pl.Int64))
    )
    pair_order = _np(pairs["ord"]).astype(np.int64)
    pair_loc = _np(pairs["loc"]).astype(np.int64)
    n_lines_per_order = _np(heads["n_lines"]).astype(np.int64)
    pair_covers = _np(pairs["n_full"]).astype(np.int64) == n_lines_per_order[pair_order]
    # Handing a pickup order over at its own store ships no parcel.
    at_store = ctx.order_pickup[pair_order] == pair_loc

    # Costs per pair: explicit table, or distance -> zone -> rate card. Distances run to the
    # ship-to point, or to the pickup store for transfers.
    distance = arc_distance(ctx, pair_order, pair_loc)
    card = objective.rate_card
    zone = card.zone(distance)
    if listed is not None:
        listed_pairs = pairs.join(
            arcs.group_by(["ord", "loc"]).agg(
                pl.col("unit_cost").first(), pl.col("shipment_cost").first()
            ),
            on=["ord", "loc"],
            how="left",
        ).sort("pair")
        unit_cost = _np(listed_pairs["unit_cost"].fill_null(0.0)).astype(np.float64)
        shipment_cost = _np(listed_pairs["shipment_cost"].fill_null(0.0)).astype(np.float64)
    else:
        unit_cost = card.unit_cost(zone)
        shipment_cost = card.parcel_cost(zone)
        loc_country = _np(locs["country"])
        ord_country = _np(heads["country"])
        a, b = ord_country[pair_order], loc_country[pair_loc]
        known = np.array([x is not None for x in a], dtype=bool) & np.array(
            [x is not None for x in b], dtype=bool
        )
        cross = known & (a != b)
        shipment_cost = shipment_cost + card.cross_border_parcel * cross
    promised = heads["promised_days"].fill_null(-1).to_numpy().astype(np.int64)
    late_days = np.where(
        promised[pair_order] >= 0,
        np.maximum(0, card.transit_days(zone) - promised[pair_order]),
        0,
    )
    unit_cost = unit_cost + objective.lateness_penalty * late_days
    shipment_cost = shipment_cost + objective.split_penalty
    pref_unit, pref_ship, tie = pair_cost_terms(ctx, pair_order, pair_loc)
    pref_unit, pref_ship, tie = (np.where(at_store, 0.0, v) for v in (pref_unit, pref_ship, tie))
    unit_cost = np.where(at_store, 0.0, unit_cost + pref_unit)
    shipment_cost = np.where(at_store, 0.0, shipment_cost + pref_ship + tie)

    # ---- arcs -> pairs -----------------------------------------------------------------------
    # The arcs are sorted by (line, location) and the pairs by (order, location): each arc finds
    # its pair by binary search on the pairs' keys. (A join and a re-sort of the arcs' frame had
    # taken compiling 100,000 orders from 2.0 to 3.5 GB, the peak of a whole 180 s run.)
    arc_pair = np.searchsorted(
        pair_order * n_loc + pair_loc,
        _np(arcs["ord"]).astype(np.int64) * n_loc + _np(arcs["loc"]).astype(np.int64),
    ).astype(np.int64)
    arc_line = _np(arcs["line"]).astype(np.int64)
    arc_cap = _np(arcs["cap"]).astype(np.int64)
    del arcs

    # ---- capacities, split caps, penalties -----------------------------------------------------
    capacity_units = _np(locs["capacity_units"].cast(pl.Float64).fill_null(np.inf)).copy()
    capacity_shipments = _np(locs["capacity_shipments"].cast(pl.Float64).fill_null(np.inf)).copy()
    for override in cons.capacity:
        hit = location_mask(override.where, ctx)
        for target, setting in (
            (capacity_units, override.units),
            (capacity_shipments, override.shipments),
        ):
            if setting is not None:
                target[hit] = np.inf if setting < 0 else float(setting)
    if not cons.respect_capacity:
        capacity_units = np.full(n_loc, np.inf)
        capacity_shipments = np.full(n_loc, np.inf)
    cap = cons.max_locations_per_order
    max_locations = np.full(n_orders, n_loc if cap is None else min(cap, n_loc), dtype=np.int64)
    for name, value in cons.max_locations_by_channel.items():
        max_locations[_in(channel, (name,))] = min(value, n_loc)

    order_backorder = objective.backorder_penalty * weight
    for level, penalty in objective.backorder_penalty_by_priority.items():
        order_backorder = np.where(priority == level, penalty, order_backorder)
    for name, penalty in objective.backorder_penalty_by_channel.items():
        order_backorder = np.where(_in(channel, (name,)), penalty, order_backorder)

    limit_start, limit_arcs, limit_bound, limit_names = side_limits(
        policy.limits,
        pair_loc[arc_pair],
        line_sku[arc_line],
        channel.gather(line_order[arc_line]),
        arc_cap,
    )
    meta: dict[str, Any] = {
        "rules": ctx,
        "exclusions": exclusions,
        "stocked": stocked,
        "free_ignoring_holds": free_ignoring_holds,
        "pair_preference_unit": pref_unit,
        "pair_preference_shipment": pref_ship,
        "pair_tie_break": tie,
        "limit_names": limit_names,
    }

    return Problem(
        rules=rules,
        location_ids=_np(locs["location_id"]).astype(object),
        location_kind=_np(locs["kind"]).astype(object),
        location_lat=loc_lat,
        location_lon=loc_lon,
        location_capacity_units=np.asarray(capacity_units, dtype=np.float64),
        location_capacity_shipments=np.asarray(capacity_shipments, dtype=np.float64),
        sku_ids=np.asarray(sku_ids, dtype=object),
        atp=atp,
        order_ids=_np(order_ids).astype(object),
        order_priority=priority,
        order_ship_complete=ship_complete,
        order_allow_backorder=allow_backorder,
        order_created_at=_np(created).astype(np.int64),
        order_lat=ord_lat,
        order_lon=ord_lon,
        order_line_start=_offsets(line_order, n_orders),
        order_pair_start=_offsets(pair_order, n_orders),
        order_units=units,
        order_reject_cost=objective.rejection_penalty * weight * units,
        order_max_locations=max_locations,
        line_order=line_order,
        line_sku=line_sku,
        line_qty=line_qty,
        line_ids=_np(lines["line_id"]).astype(object),
        line_backorder_cost=order_backorder[line_order].astype(np.float64),
        pair_order=pair_order,
        pair_location=pair_loc,
        pair_unit_cost=unit_cost.astype(np.float64),
        pair_shipment_cost=shipment_cost.astype(np.float64),
        pair_distance_km=distance.astype(np.float64),
        pair_covers=pair_covers,
        arc_line=arc_line,
        arc_pair=arc_pair,
        arc_location=pair_loc[arc_pair],
        arc_cap=arc_cap,
        arc_unit_cost=unit_cost[arc_pair].astype(np.float64),
        line_arc_start=_offsets(arc_line, n_lines),
        order_lines=lines.drop("row", "ord", "sku_i", "line"),
        limit_start=limit_start,
        limit_arcs=limit_arcs,
        limit_bound=limit_bound,
        meta=meta,
    )
