"""Compiling a rule set into the array form: masks, ATP reductions, side limits, cost terms.

:func:`allocator.problem.compile_problem` calls into this module once per run. Every rule is
evaluated as whole-array operations over locations, SKUs, orders and candidate arcs (a loop over
*rules*, never over order lines):

* selectors become boolean masks over locations, SKUs and orders (:class:`RuleContext`);
* eligibility gives each candidate arc the index of the first rule that excludes it
  (:func:`arc_exclusions`); the compiler keeps the record for explanations;
* the stock policy lowers ATP (extra safety stock, exposure limits for every channel) and
  turns channel ring-fences and per-channel exposure limits into side limits over arcs
  (:func:`stock_policy`, :func:`side_limits`);
* preferences and the tie-break become per-pair cost terms (:func:`pair_cost_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.costs import haversine_km
from allocator.rules.schema import (
    EligibilityRule,
    LocationSelector,
    OrderSelector,
    RuleSet,
    SkuSelector,
)

__all__ = [
    "BUILTIN_REASONS",
    "RuleContext",
    "StockPolicyResult",
    "arc_exclusions",
    "location_mask",
    "order_mask",
    "pair_cost_terms",
    "side_limits",
    "sku_mask",
    "stock_policy",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.object_]

#: Exclusions that come from the data, not from a rule (reason codes 0..2).
BUILTIN_REASONS: tuple[tuple[str, str], ...] = (
    ("network.can_ship", "the location cannot ship parcels (can_ship is false)"),
    (
        "pickup",
        "a pickup order is handed over at its pickup store, and this location may not send it "
        "stock (transfers are off, or it may not ship or send them)",
    ),
    ("costs", "the explicit costs table lists no cost for this order and location"),
)


def _tag_sets(column: pl.Series) -> list[frozenset[str]]:
    return [
        frozenset(t.strip() for t in v.split(";") if t.strip()) if v is not None else frozenset()
        for v in column.to_list()
    ]


def _is_in(values: pl.Series, wanted: tuple[str, ...]) -> BoolArray:
    return np.asarray(
        values.is_in(pl.Series(list(wanted), dtype=pl.String).implode())
        .fill_null(False)
        .to_numpy(),
        dtype=bool,
    )


@dataclass(frozen=True, eq=False)
class RuleContext:
    """The attributes rules match on, as arrays over locations, SKUs and orders.

    Built once by the compiler and kept in ``Problem.meta["rules"]`` so that explanations and
    policies evaluate the same rules the same way.
    """

    rules: RuleSet
    locations: pl.DataFrame  # contract columns, in problem order
    location_tags: list[frozenset[str]]
    sku_ids: StrArray
    sku_tags: list[frozenset[str]]
    sku_weight: FloatArray  # NaN where unknown
    orders: pl.DataFrame  # one row per order: channel, country, priority, fulfillment, ...
    order_pickup: IntArray  # pickup location index, -1 for shipped orders
    order_country_code: IntArray  # country as an integer code shared with locations, -1 unknown
    location_country_code: IntArray
    dest_lat: FloatArray  # where a parcel goes: the ship-to point, or the pickup store
    dest_lon: FloatArray
    costs_listed: pl.DataFrame | None  # (ord, loc) pairs of an explicit costs table
    rule_masks: list[tuple[BoolArray, BoolArray, BoolArray]] = field(default_factory=list)

    @property
    def n_locations(self) -> int:
        return self.locations.height

    @property
    def reason_names(self) -> list[str]:
        """Reason code -> name: the built-in reasons, then ``eligibility.NAME`` per rule."""
        return [name for name, _ in BUILTIN_REASONS] + [
            f"eligibility.{r.name}" for r in self.rules.eligibility
        ]

    def reason_text(self, code: int) -> str:
        """A sentence for a reason code."""
        if code < len(BUILTIN_REASONS):
            return BUILTIN_REASONS[code][1]
        rule = self.rules.eligibility[code - len(BUILTIN_REASONS)]
        return f"excluded by rule '{rule.name}' ({describe_rule(rule)})"


def describe_rule(rule: EligibilityRule) -> str:
    """A short sentence for an eligibility rule."""
    when = _describe_selector(rule.when)
    scope = f"for {when}" if when else "for every order"
    if rule.exclude is not None:
        what = f"no {_describe_selector(rule.exclude) or 'location'}"
    elif rule.only is not None:
        what = f"only {_describe_selector(rule.only) or 'any location'}"
    elif rule.same_country:
        what = "only locations in the ship-to country"
    else:
        what = f"only locations within {rule.max_distance_km:g} km"
    return f"{what} {scope}"


def _describe_selector(sel: LocationSelector | SkuSelector) -> str:
    parts = []
    for name, value in sel.model_dump(exclude_defaults=True).items():
        if isinstance(value, list | tuple):
            value = "|".join(str(v) for v in value)
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def build_context(
    rules: RuleSet,
    locations: pl.DataFrame,
    sku_ids: StrArray,
    items: pl.DataFrame | None,
    heads: pl.DataFrame,
    loc_lat: FloatArray,
    loc_lon: FloatArray,
    costs_listed: pl.DataFrame | None,
) -> RuleContext:
    """Collect the attributes that rules match on (``heads``: one row per order)."""
    n_sku = len(sku_ids)
    if items is not None:
        attrs = pl.DataFrame({"sku": pl.Series(sku_ids, dtype=pl.String)}).join(
            items.select("sku", "weight", "tags"), on="sku", how="left", maintain_order="left"
        )
        sku_tags = _tag_sets(attrs["tags"])
        sku_weight = attrs["weight"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    else:
        sku_tags = [frozenset()] * n_sku
        sku_weight = np.full(n_sku, np.nan)
    loc_index = pl.DataFrame(
        {"pickup_location_id": locations["location_id"], "i": np.arange(locations.height)}
    )
    pickup = (
        heads.select("pickup_location_id")
        .join(loc_index, on="pickup_location_id", how="left", maintain_order="left")["i"]
        .fill_null(-1)
        .to_numpy()
        .astype(np.int64)
    )
    codes = (
        pl.concat([heads["country"], locations["country"]])
        .drop_nulls()
        .unique()
        .sort()
        .to_frame("country")
        .with_row_index("code")
    )

    def country_code(values: pl.Series) -> IntArray:
        coded = values.to_frame("country").join(
            codes, on="country", how="left", maintain_order="left"
        )
        return np.asarray(coded["code"].cast(pl.Int64).fill_null(-1).to_numpy(), dtype=np.int64)

    ord_lat = heads["lat"].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)
    ord_lon = heads["lon"].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)
    is_pickup = pickup >= 0
    safe = np.where(is_pickup, pickup, 0)
    store_known = is_pickup & np.isfinite(loc_lat[safe])
    dest_lat = np.where(store_known, loc_lat[safe], ord_lat)
    dest_lon = np.where(store_known, loc_lon[safe], ord_lon)
    ctx = RuleContext(
        rules=rules,
        locations=locations,
        location_tags=_tag_sets(locations["tags"]),
        sku_ids=np.asarray(sku_ids, dtype=object),
        sku_tags=sku_tags,
        sku_weight=np.asarray(sku_weight, dtype=np.float64),
        orders=heads.select("channel", "country", "priority", "fulfillment"),
        order_pickup=pickup,
        order_country_code=country_code(heads["country"]),
        location_country_code=country_code(locations["country"]),
        dest_lat=dest_lat.astype(np.float64),
        dest_lon=dest_lon.astype(np.float64),
        costs_listed=costs_listed,
    )
    for rule in rules.eligibility:
        ctx.rule_masks.append(
            (order_mask(rule.when, ctx), sku_mask(rule.when, ctx), _rule_location_mask(rule, ctx))
        )
    return ctx


def _rule_location_mask(rule: EligibilityRule, ctx: RuleContext) -> BoolArray:
    if rule.exclude is not None:
        return location_mask(rule.exclude, ctx)
    if rule.only is not None:
        return location_mask(rule.only, ctx)
    return np.ones(ctx.n_locations, bool)


def location_mask(sel: LocationSelector, ctx: RuleContext) -> BoolArray:
    """Locations that match a selector."""
    locs = ctx.locations
    mask = np.ones(locs.height, bool)
    if sel.location_id:
        mask &= _is_in(locs["location_id"], sel.location_id)
    if sel.kind:
        mask &= _is_in(locs["kind"], tuple(sel.kind))
    if sel.country:
        mask &= _is_in(locs["country"], sel.country)
    if sel.tags:
        wanted = frozenset(sel.tags)
        mask &= np.array([bool(t & wanted) for t in ctx.location_tags], dtype=bool)
    return mask


def sku_mask(sel: SkuSelector, ctx: RuleContext) -> BoolArray:
    """SKUs that match the SKU fields of a selector (all when it has none)."""
    n = len(ctx.sku_ids)
    mask = np.ones(n, bool)
    if sel.sku:
        mask &= np.isin(ctx.sku_ids.astype(str), np.asarray(sel.sku, dtype=str))
    if sel.sku_tags:
        wanted = frozenset(sel.sku_tags)
        mask &= np.array([bool(t & wanted) for t in ctx.sku_tags], dtype=bool)
    w = ctx.sku_weight
    with np.errstate(invalid="ignore"):
        if sel.weight_min is not None:
            mask &= np.isfinite(w) & (w >= sel.weight_min)
        if sel.weight_max is not None:
            mask &= np.isfinite(w) & (w <= sel.weight_max)
    return mask


def order_mask(sel: OrderSelector, ctx: RuleContext) -> BoolArray:
    """Orders that match the order-level fields of a selector (all when it has none)."""
    heads = ctx.orders
    mask = np.ones(heads.height, bool)
    if sel.channel:
        mask &= _is_in(heads["channel"], sel.channel)
    if sel.country:
        mask &= _is_in(heads["country"], sel.country)
    priority = heads["priority"].to_numpy()
    if sel.priority_min is not None:
        mask &= priority >= sel.priority_min
    if sel.priority_max is not None:
        mask &= priority <= sel.priority_max
    if sel.fulfillment is not None:
        mask &= (heads["fulfillment"] == sel.fulfillment).fill_null(False).to_numpy()
    return mask


def arc_distance(ctx: RuleContext, ord_: IntArray, loc: IntArray) -> FloatArray:
    """Great-circle km from each location to each order's destination (NaN where unknown)."""
    lat = ctx.locations["lat"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lon = ctx.locations["lon"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return haversine_km(ctx.dest_lat[ord_], ctx.dest_lon[ord_], lat[loc], lon[loc])


def arc_exclusions(
    ctx: RuleContext,
    ord_: IntArray,
    loc: IntArray,
    sku: IntArray,
    distance: FloatArray | None = None,
    listed: BoolArray | None = None,
) -> npt.NDArray[np.int32]:
    """The first reason that excludes each (order, location, SKU) combination; -1 if none.

    Reason codes index :attr:`RuleContext.reason_names`. ``distance`` (km to the destination)
    is computed when a distance rule needs it and it is not given.
    """
    rules = ctx.rules
    n = len(ord_)
    reason = np.full(n, -1, np.int32)

    def mark(mask: BoolArray, code: int) -> None:
        reason[(reason < 0) & mask] = code

    can_ship = ctx.locations["can_ship"].to_numpy().astype(bool)
    pickup = ctx.order_pickup[ord_]
    is_pickup = pickup >= 0
    at_store = is_pickup & (loc == pickup)
    mark(~is_pickup & ~can_ship[loc], 0)
    pick = rules.constraints.pickup
    if pick.allow_transfers:
        from_ok = location_mask(pick.transfer_from, ctx) & can_ship
        mark(is_pickup & ~at_store & ~from_ok[loc], 1)
    else:
        mark(is_pickup & ~at_store, 1)
    if listed is not None:
        mark(~listed & ~at_store, 2)
    for i, rule in enumerate(rules.eligibility):
        if not rule.enabled:
            continue
        o_mask, s_mask, l_mask = ctx.rule_masks[i]
        applies = o_mask[ord_] & s_mask[sku]
        if rule.exclude is not None:
            hit = applies & l_mask[loc]
        elif rule.only is not None:
            hit = applies & ~l_mask[loc]
        elif rule.same_country:
            a, b = ctx.order_country_code[ord_], ctx.location_country_code[loc]
            hit = applies & (a >= 0) & (b >= 0) & (a != b)
        else:
            assert rule.max_distance_km is not None
            if distance is None:
                distance = arc_distance(ctx, ord_, loc)
            with np.errstate(invalid="ignore"):
                hit = applies & np.isfinite(distance) & (distance > rule.max_distance_km)
        mark(hit, len(BUILTIN_REASONS) + i)
    return reason


# ---- stock policy -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StockPolicyResult:
    """ATP after the stock policy, and the specs of the side limits it needs.

    ``limits`` has one row per limit: ``loc``, ``sku_i``, ``channels`` (list), ``inside`` (the
    limit counts orders of ``channels`` when true, of every other channel when false),
    ``bound`` and ``name`` (the rule, for explanations).
    """

    atp: IntArray
    held_back: IntArray  # units held back per stock row by safety stock and exposure
    limits: pl.DataFrame


_LIMIT_SCHEMA: dict[str, pl.DataType] = {
    "loc": pl.Int64(),
    "sku_i": pl.Int64(),
    "channels": pl.List(pl.String()),
    "inside": pl.Boolean(),
    "bound": pl.Int64(),
    "name": pl.String(),
}


def stock_policy(
    ctx: RuleContext, loc: IntArray, sku: IntArray, atp: IntArray
) -> StockPolicyResult:
    """Apply extra safety stock, exposure limits and ring-fences to stock rows.

    Parameters
    ----------
    ctx
        The rule context.
    loc, sku
        Location and SKU index of each stock row.
    atp
        ATP of each stock row from the network (on hand - reserved - safety stock).
    """
    policy = ctx.rules.stock
    atp0 = atp.astype(np.int64)
    extra = np.zeros(len(atp0), np.int64)
    for rule in policy.safety_stock:
        if not rule.enabled:
            continue
        hit = location_mask(rule.where, ctx)[loc] & sku_mask(rule.skus, ctx)[sku]
        amount = _amount(rule.units, rule.share, atp0, round_up=True)
        extra = np.maximum(extra, np.where(hit, amount, 0))
    out = np.maximum(0, atp0 - extra)
    frames: list[pl.DataFrame] = []
    for exposure in policy.exposure:
        if not exposure.enabled:
            continue
        hit = location_mask(exposure.where, ctx)[loc] & sku_mask(exposure.skus, ctx)[sku]
        exposed = np.minimum(out, _amount(exposure.units, exposure.share, out, round_up=False))
        if not exposure.channels:
            out = np.where(hit, exposed, out)
            continue
        rows = np.flatnonzero(hit & (exposed < out))
        frames.append(
            _limit_frame(
                loc[rows], sku[rows], list(exposure.channels), True, exposed[rows], exposure.name
            )
        )
    held_back = atp0 - out
    # Ring-fences: per stock row and channel the largest fence; per row the total is capped.
    fence_rows: list[pl.DataFrame] = []
    for fence in policy.ring_fence:
        if not fence.enabled:
            continue
        hit = location_mask(fence.where, ctx)[loc] & sku_mask(fence.skus, ctx)[sku]
        rows = np.flatnonzero(hit & (out > 0))
        amount = np.minimum(out[rows], _amount(fence.units, fence.share, out[rows], round_up=True))
        fence_rows.append(
            pl.DataFrame(
                {
                    "row": rows.astype(np.int64),
                    "channel": [fence.channel] * len(rows),
                    "reserve": amount.astype(np.int64),
                    "name": [fence.name] * len(rows),
                },
                schema={
                    "row": pl.Int64,
                    "channel": pl.String,
                    "reserve": pl.Int64,
                    "name": pl.String,
                },
            )
        )
    if fence_rows:
        fences = (
            pl.concat(fence_rows)
            .filter(pl.col("reserve") > 0)
            .sort("reserve", descending=True, maintain_order=True)
            .group_by(["row", "channel"], maintain_order=True)
            .agg(pl.col("reserve").first(), pl.col("name").first())
        )
        fences = fences.with_columns(
            pl.Series("loc", loc[fences["row"].to_numpy()]),
            pl.Series("sku_i", sku[fences["row"].to_numpy()]),
            pl.Series("atp", out[fences["row"].to_numpy()]),
        )
        # Orders outside channel C may use ATP - reserve(C).
        frames.append(
            fences.select(
                "loc",
                "sku_i",
                pl.concat_list(pl.col("channel")).alias("channels"),
                pl.lit(False).alias("inside"),
                (pl.col("atp") - pl.col("reserve")).clip(lower_bound=0).alias("bound"),
                "name",
            )
        )
        # Orders of no fenced channel may use ATP - the sum of the fences at that stock row.
        multi = (
            fences.group_by(["row", "loc", "sku_i", "atp"], maintain_order=True)
            .agg(
                pl.col("channel").alias("channels"),
                pl.col("reserve").sum().alias("total"),
                pl.col("name").str.join(" + ").alias("name"),
            )
            .filter(pl.col("channels").list.len() > 1)
        )
        if multi.height:
            frames.append(
                multi.select(
                    "loc",
                    "sku_i",
                    "channels",
                    pl.lit(False).alias("inside"),
                    (pl.col("atp") - pl.col("total")).clip(lower_bound=0).alias("bound"),
                    "name",
                )
            )
    limits = (
        pl.concat([f.cast(_LIMIT_SCHEMA) for f in frames])  # type: ignore[arg-type,unused-ignore]
        if frames
        else pl.DataFrame(schema=_LIMIT_SCHEMA)
    )
    return StockPolicyResult(atp=out, held_back=held_back, limits=limits)


def _amount(units: int | None, share: float | None, base: IntArray, *, round_up: bool) -> IntArray:
    if units is not None:
        return np.full(len(base), units, np.int64)
    assert share is not None
    raw = share * base.astype(np.float64)
    # A small tolerance keeps 0.3 * 10 at 3 under floating point.
    rounded = np.ceil(raw - 1e-9) if round_up else np.floor(raw + 1e-9)
    return rounded.astype(np.int64)


def _limit_frame(
    loc: IntArray, sku: IntArray, channels: list[str], inside: bool, bound: IntArray, name: str
) -> pl.DataFrame:
    n = len(loc)
    return pl.DataFrame(
        {
            "loc": loc.astype(np.int64),
            "sku_i": sku.astype(np.int64),
            "channels": [channels] * n,
            "inside": [inside] * n,
            "bound": bound.astype(np.int64),
            "name": [name] * n,
        },
        schema=_LIMIT_SCHEMA,
    )


def side_limits(
    specs: pl.DataFrame,
    arc_loc: IntArray,
    arc_sku: IntArray,
    arc_channel: pl.Series,
    arc_cap: IntArray,
) -> tuple[IntArray, IntArray, FloatArray, list[str]]:
    """Turn limit specs into the problem's CSR side limits, keeping only those that can bind.

    Returns ``limit_start``, ``limit_arcs``, ``limit_bound`` and the rule name of each limit.
    """
    empty: tuple[IntArray, IntArray, FloatArray, list[str]] = (
        np.zeros(1, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.float64),
        [],
    )
    if specs.height == 0 or len(arc_loc) == 0:
        return empty
    arcs = pl.DataFrame(
        {
            "arc": np.arange(len(arc_loc), dtype=np.int64),
            "loc": arc_loc.astype(np.int64),
            "sku_i": arc_sku.astype(np.int64),
            "channel": arc_channel,
            "cap": arc_cap.astype(np.int64),
        }
    )
    joined = (
        specs.with_row_index("spec")
        .join(arcs, on=["loc", "sku_i"], how="inner")
        .with_columns(
            pl.col("channels").list.contains(pl.col("channel")).fill_null(False).alias("member")
        )
        .filter(pl.col("member") == pl.col("inside"))
    )
    demand = joined.group_by("spec").agg(pl.col("cap").sum().alias("demand"))
    binding = (
        specs.with_row_index("spec")
        .join(demand, on="spec")
        .filter(pl.col("demand") > pl.col("bound"))
        .sort("spec")
    )
    if binding.height == 0:
        return empty
    binding = binding.with_row_index("limit").with_columns(pl.col("limit").cast(pl.Int64))
    members = joined.join(binding.select("spec", "limit"), on="spec").sort(["limit", "arc"])
    counts = np.bincount(members["limit"].to_numpy(), minlength=binding.height)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (
        start,
        members["arc"].to_numpy().astype(np.int64),
        binding["bound"].to_numpy().astype(np.float64),
        binding["name"].to_list(),
    )


# ---- cost terms -------------------------------------------------------------------------------


def pair_cost_terms(
    ctx: RuleContext, pair_order: IntArray, pair_loc: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Preference costs (per unit, per shipment) and the tie-break cost of each pair."""
    objective = ctx.rules.objective
    n = len(pair_order)
    per_unit = np.zeros(n)
    per_ship = np.zeros(n)
    for pref in objective.preferences:
        if not pref.enabled:
            continue
        hit = location_mask(pref.where, ctx)[pair_loc] & order_mask(pref.when, ctx)[pair_order]
        per_unit += np.where(hit, pref.per_unit, 0.0)
        per_ship += np.where(hit, pref.per_shipment, 0.0)
    tie = np.zeros(n)
    if objective.tie_break != "none" and ctx.n_locations:
        rank = location_rank(ctx, objective.tie_break)
        tie = objective.tie_break_cost * (rank[pair_loc] + 1) / (ctx.n_locations + 1)
    return per_unit, per_ship, tie


def location_rank(ctx: RuleContext, by: str) -> IntArray:
    """Rank of each location (0 first) by ``location_id``, ``priority`` (then id) or
    ``position``."""
    locs = ctx.locations
    n = locs.height
    ids = locs["location_id"].to_numpy().astype(str)
    if by == "position":
        order = np.arange(n)
    elif by == "priority":
        order = np.lexsort((ids, locs["priority"].to_numpy()))
    else:
        order = np.argsort(ids, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank
