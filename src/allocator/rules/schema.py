"""The rule-set model: what a rule file may say, validated by pydantic.

A rule set has a ``strategy`` (``optimize`` sends the compiled rules to the optimiser; ``greedy``
to a ranked fill), an ``objective`` (cost model and penalties), ``constraints``, ``eligibility``
rules (which locations may serve which orders), a ``stock`` policy (extra safety stock,
ring-fencing, exposure limits) and, for greedy policies, a ``greedy`` section (ranking chain,
fill and shortfall behaviour). All models are frozen and reject unknown keys; the file format
and every rule kind are described in ``docs/rules.md``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from allocator.costs import RateCard

__all__ = [
    "CRITERIA",
    "Capacity",
    "Constraints",
    "Criterion",
    "EligibilityRule",
    "ExposureLimit",
    "GreedyConfig",
    "LocationSelector",
    "Objective",
    "OrderSelector",
    "Pickup",
    "Preference",
    "RingFence",
    "RuleSet",
    "SafetyStock",
    "SkuSelector",
    "StockPolicy",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _as_tuple(value: object) -> object:
    """Let a selector field be one string or a list of strings."""
    if isinstance(value, str):
        return (value,)
    return value


Names = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]


def _no_blank(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(not v.strip() for v in values):
        raise ValueError("values must be non-empty strings")
    return values


# ---- selectors --------------------------------------------------------------------------------


class LocationSelector(_Frozen):
    """Which locations a rule is about. Every given field must match (an empty selector matches
    every location); a field given as a list matches any of its values.

    Parameters
    ----------
    location_id
        Location ids.
    kind
        ``warehouse``, ``store`` or ``dropship``.
    tags
        Matches a location that has any of these tags (the ``;``-separated ``tags`` column).
    country
        ISO country codes.
    """

    location_id: Names = ()
    kind: tuple[Literal["warehouse", "store", "dropship"], ...] = ()
    tags: Names = ()
    country: Names = ()

    _kind_as_tuple = field_validator("kind", mode="before")(_as_tuple)
    _blank = field_validator("location_id", "tags", "country")(_no_blank)

    def is_empty(self) -> bool:
        return not (self.location_id or self.kind or self.tags or self.country)


class SkuSelector(_Frozen):
    """Which SKUs a rule is about (attributes come from the network's optional ``items`` table).

    Parameters
    ----------
    sku
        SKU ids.
    sku_tags
        Matches a SKU that has any of these tags (``items.tags``, for example ``hazmat``).
    weight_min, weight_max
        Inclusive bounds on ``items.weight``; a SKU of unknown weight does not match.
    """

    sku: Names = ()
    sku_tags: Names = ()
    weight_min: float | None = Field(default=None, ge=0)
    weight_max: float | None = Field(default=None, ge=0)

    _blank = field_validator("sku", "sku_tags")(_no_blank)

    @model_validator(mode="after")
    def _bounds(self) -> SkuSelector:
        if (
            self.weight_min is not None
            and self.weight_max is not None
            and self.weight_min > self.weight_max
        ):
            raise ValueError("weight_min must not exceed weight_max")
        return self

    def sku_is_empty(self) -> bool:
        return not (
            self.sku or self.sku_tags or self.weight_min is not None or self.weight_max is not None
        )


class OrderSelector(SkuSelector):
    """Which orders (and, through the SKU fields, which of their lines) a rule applies to.

    Parameters
    ----------
    channel
        Sales channels; an order without a channel matches no channel condition.
    country
        Ship-to countries.
    priority_min, priority_max
        Inclusive bounds on the order's priority.
    fulfillment
        ``ship`` or ``pickup``.
    sku, sku_tags, weight_min, weight_max
        Line-level conditions on the SKU (see :class:`SkuSelector`).
    """

    channel: Names = ()
    country: Names = ()
    priority_min: int | None = None
    priority_max: int | None = None
    fulfillment: Literal["ship", "pickup"] | None = None

    _blank2 = field_validator("channel", "country")(_no_blank)

    @model_validator(mode="after")
    def _priority_bounds(self) -> OrderSelector:
        if (
            self.priority_min is not None
            and self.priority_max is not None
            and self.priority_min > self.priority_max
        ):
            raise ValueError("priority_min must not exceed priority_max")
        return self

    def order_is_empty(self) -> bool:
        return not (
            self.channel
            or self.country
            or self.priority_min is not None
            or self.priority_max is not None
            or self.fulfillment is not None
        )


# ---- eligibility ------------------------------------------------------------------------------


class EligibilityRule(_Frozen):
    """Which locations may serve which orders.

    Give ``when`` (the orders or lines the rule applies to; all when omitted) and exactly one of:

    ``exclude``
        matching locations may not serve them;
    ``only``
        only matching locations may serve them;
    ``same_country = true``
        only locations in the order's country (pairs where either country is unknown pass);
    ``max_distance_km``
        only locations within this great-circle distance (unknown distances pass).

    Parameters
    ----------
    name
        Shown in explanations ("excluded by rule 'hazmat-not-from-stores'"); unique per set.
    enabled
        ``false`` switches off a rule inherited through ``extends``.
    """

    name: str = Field(min_length=1)
    enabled: bool = True
    when: OrderSelector = OrderSelector()
    exclude: LocationSelector | None = None
    only: LocationSelector | None = None
    same_country: bool = False
    max_distance_km: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> EligibilityRule:
        given = [
            k
            for k, v in (
                ("exclude", self.exclude is not None),
                ("only", self.only is not None),
                ("same_country", self.same_country),
                ("max_distance_km", self.max_distance_km is not None),
            )
            if v
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of exclude, only, same_country = true or max_distance_km"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self


# ---- stock policy -----------------------------------------------------------------------------


class _Amount(_Frozen):
    """A number of units or a share of a location's available stock (exactly one)."""

    units: int | None = Field(default=None, ge=0)
    share: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_amount(self) -> _Amount:
        if (self.units is None) == (self.share is None):
            raise ValueError("give exactly one of units or share (a fraction between 0 and 1)")
        return self


class SafetyStock(_Amount):
    """Extra safety stock: units (or a share of ATP, rounded up) never promised.

    Where several rules match one (location, SKU), the largest applies.
    """

    name: str = Field(min_length=1)
    enabled: bool = True
    where: LocationSelector = LocationSelector()
    skus: SkuSelector = SkuSelector()


class RingFence(_Amount):
    """Reserve units (or a share of ATP, rounded up) of matching stock for one channel.

    Orders of other channels may use only the rest. Where several fences for the same channel
    match one (location, SKU), the largest applies; fences of different channels add up (capped
    at the available stock).
    """

    name: str = Field(min_length=1)
    enabled: bool = True
    channel: str = Field(min_length=1)
    where: LocationSelector = LocationSelector()
    skus: SkuSelector = SkuSelector()


class ExposureLimit(_Amount):
    """Promise at most units (or a share of ATP, rounded down) of matching stock to ``channels``
    (all channels when omitted), for example half of a store's stock to online orders."""

    name: str = Field(min_length=1)
    enabled: bool = True
    where: LocationSelector = LocationSelector()
    skus: SkuSelector = SkuSelector()
    channels: Names = ()


class StockPolicy(_Frozen):
    """Stock held back from the available-to-promise quantity.

    Parameters
    ----------
    safety_stock
        Extra safety stock by location kind, tag or SKU.
    ring_fence
        Channel ring-fencing.
    exposure
        Exposure limits (for example on store stock offered online).
    """

    safety_stock: tuple[SafetyStock, ...] = ()
    ring_fence: tuple[RingFence, ...] = ()
    exposure: tuple[ExposureLimit, ...] = ()

    @model_validator(mode="after")
    def _fences_fit(self) -> StockPolicy:
        # Fences with identical selectors for different channels must not reserve over 100 %.
        total: dict[str, float] = {}
        for fence in self.ring_fence:
            if fence.enabled and fence.share is not None:
                key = json.dumps(
                    [fence.where.model_dump(), fence.skus.model_dump()], sort_keys=True
                )
                total[key] = total.get(key, 0.0) + fence.share
        if any(v > 1.0 + 1e-12 for v in total.values()):
            raise ValueError("ring-fences on the same stock reserve more than 100 % (share > 1)")
        return self


# ---- constraints ------------------------------------------------------------------------------


class Capacity(_Frozen):
    """Override the network's capacities for matching locations.

    ``units``/``shipments`` set the capacity (``-1`` removes the limit); omitted ones stay.
    """

    where: LocationSelector
    units: int | None = Field(default=None, ge=-1)
    shipments: int | None = Field(default=None, ge=-1)

    @model_validator(mode="after")
    def _something(self) -> Capacity:
        if self.units is None and self.shipments is None:
            raise ValueError("give units, shipments or both")
        return self


class Pickup(_Frozen):
    """How pickup (click-and-collect) orders are served.

    Parameters
    ----------
    allow_transfers
        Other locations may send stock to the pickup store (priced as a parcel to the store);
        otherwise a pickup order is served only from the store's own stock.
    transfer_from
        Which locations may send transfers (all that can ship when empty).
    ship_complete
        A pickup order is handed over complete, from one location.
    """

    allow_transfers: bool = False
    transfer_from: LocationSelector = LocationSelector()
    ship_complete: bool = False


class Constraints(_Frozen):
    """Hard limits on every plan.

    Parameters
    ----------
    max_locations_per_order
        Split cap: the most locations one order may ship from (``None``: no cap).
    max_locations_by_channel
        Split cap per sales channel (overrides ``max_locations_per_order``).
    ship_complete
        Treat every order as ship-complete (one location, all lines), whatever its own flag.
    ship_complete_channels
        Treat the orders of these channels as ship-complete.
    respect_capacity
        Honour the locations' ``capacity_units`` and ``capacity_shipments``.
    capacity
        Capacity overrides by location.
    backorders
        ``allow`` (each order's ``allow_backorder`` flag decides) or ``never`` (a short order is
        rejected, as on platforms that refuse to sell what they cannot ship now).
    pickup
        Pickup rules.
    """

    max_locations_per_order: int | None = Field(default=None, ge=1)
    max_locations_by_channel: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    ship_complete: bool = False
    ship_complete_channels: Names = ()
    respect_capacity: bool = True
    capacity: tuple[Capacity, ...] = ()
    backorders: Literal["allow", "never"] = "allow"
    pickup: Pickup = Pickup()


# ---- objective --------------------------------------------------------------------------------


class Preference(_Frozen):
    """An extra cost on shipping from matching locations (a soft preference).

    For example ``per_unit = 0.5`` on stores protects store stock: a store ships only when it
    saves more than 0.50 per unit. The extra cost is part of the plan's reported cost.
    """

    name: str = Field(min_length=1)
    enabled: bool = True
    where: LocationSelector = LocationSelector()
    when: OrderSelector = OrderSelector()
    per_unit: float = Field(default=0.0, ge=0)
    per_shipment: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _order_level(self) -> Preference:
        if not self.when.sku_is_empty():
            raise ValueError("a preference applies to whole orders: use no sku conditions")
        return self


class Objective(_Frozen):
    """What a plan costs.

    Parameters
    ----------
    rate_card
        Distance-based shipping costs, used when the network has no explicit ``costs`` table.
    backorder_penalty
        Cost of one backordered unit of a priority-0 order. The default (60) is above any
        single-parcel charge of the default rate card, so a unit that can be shipped from
        anywhere is shipped rather than backordered.
    priority_weight
        Each priority level multiplies the backorder and rejection penalty by ``1 + weight``:
        penalty = base * (1 + priority_weight) ** priority. Higher-priority orders are served first
        when stock is short.
    rejection_penalty
        Cost per unit of an order rejected because it may not be backordered.
    split_penalty
        Extra cost per shipment (parcel), on top of the shipping cost: a price on splitting.
    lateness_penalty
        Cost per unit per day that the transit time of a shipment exceeds the order's
        ``promised_days``.
    backorder_penalty_by_priority
        Per-unit backorder penalty for orders of a given priority (replaces the formula above).
    backorder_penalty_by_channel
        Per-unit backorder penalty for orders of a channel (wins over the priority table).
    preferences
        Extra costs by location (and order), see :class:`Preference`.
    tie_break
        Make the choice among equal-cost plans independent of the input order by adding at most
        ``tie_break_cost`` per shipment, growing with the location's rank by ``location_id``,
        ``priority`` (then id) or table ``position``. ``none`` adds nothing (runs are
        deterministic anyway: one solver thread, a fixed seed).
    tie_break_cost
        Largest tie-break addition per shipment.
    """

    rate_card: RateCard = RateCard()
    backorder_penalty: float = Field(default=60.0, ge=0)
    priority_weight: float = Field(default=0.5, ge=0)
    rejection_penalty: float = Field(default=80.0, ge=0)
    split_penalty: float = Field(default=0.0, ge=0)
    lateness_penalty: float = Field(default=2.0, ge=0)
    backorder_penalty_by_priority: dict[int, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    backorder_penalty_by_channel: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    preferences: tuple[Preference, ...] = ()
    tie_break: Literal["none", "location_id", "priority", "position"] = "none"
    tie_break_cost: float = Field(default=0.001, gt=0, le=1)

    @field_validator("backorder_penalty", "rejection_penalty", "split_penalty", "lateness_penalty")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


# ---- greedy policies --------------------------------------------------------------------------

#: Ranking criteria of a greedy chain, with what each prefers.
CRITERIA: dict[str, str] = {
    "priority": "lower location priority first",
    "distance": "nearer first; locations of unknown distance last",
    "free_stock": "more free units of the order's SKUs (or of the line's SKU) first",
    "lines_covered": "locations that can ship more of the order's lines in full first",
    "cost": "cheaper to ship the whole order from first (unit + shipment cost)",
    "id": "location id, ascending",
    "position": "order of the locations table (a platform's 'database order')",
    "preferred": "locations matching 'where' first; abstains when none match",
    "country": "locations in the ship-to country first; abstains when it is unknown",
    "pickup_location": "the order's pickup store first; abstains for shipped orders",
    "list": "the order of 'ids' (or 'by_channel' per channel); unlisted locations last",
    "score": "lowest weighted score first: sum of weights x (distance_km, distance_miles, "
    "priority, cost)",
}

_SCORE_TERMS = ("distance_km", "distance_miles", "priority", "cost")


class Criterion(_Frozen):
    """One criterion of a ranking chain; later criteria break the ties of earlier ones.

    A criterion *abstains* (ranks every candidate equal) when it has nothing to say, for example
    ``preferred`` when no candidate matches.

    Parameters
    ----------
    by
        The criterion (see :data:`CRITERIA`).
    where
        For ``preferred``: the preferred locations.
    ids, by_channel
        For ``list``: location ids in order, or such lists per channel (``ids`` for the rest).
    weights
        For ``score``: weight per term (``distance_km``, ``distance_miles``, ``priority``,
        ``cost``).
    scope
        For ``free_stock``: ``order`` (the order's SKUs, each up to its quantity) or ``line``
        (rank separately for each line, by the free units of its SKU).
    ignore_holds
        For ``free_stock``: rank by on-hand minus reserved minus what this run has taken,
        ignoring safety stock and ring-fences (the take still respects them).
    descending
        Reverse the criterion's order.
    """

    by: str
    where: LocationSelector | None = None
    ids: Names = ()
    by_channel: dict[str, Names] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    scope: Literal["order", "line"] = "order"
    ignore_holds: bool = False
    descending: bool = False

    @field_validator("by")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CRITERIA:
            close = difflib.get_close_matches(v, list(CRITERIA), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"unknown ranking criterion '{v}'{hint} (expected one of {', '.join(CRITERIA)})"
            )
        return v

    @model_validator(mode="after")
    def _options(self) -> Criterion:
        if self.by == "preferred" and self.where is None:
            raise ValueError("criterion 'preferred' needs 'where' (the preferred locations)")
        if self.by == "list" and not (self.ids or self.by_channel):
            raise ValueError("criterion 'list' needs 'ids' or 'by_channel'")
        if self.by == "score":
            if not self.weights:
                raise ValueError("criterion 'score' needs 'weights'")
            for term, w in self.weights.items():
                if term not in _SCORE_TERMS:
                    close = difflib.get_close_matches(term, _SCORE_TERMS, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise ValueError(
                        f"unknown score term '{term}'{hint} (expected {', '.join(_SCORE_TERMS)})"
                    )
                if not math.isfinite(w):
                    raise ValueError(f"score weight of '{term}' must be finite")
        own = {
            "where": "preferred",
            "ids": "list",
            "by_channel": "list",
            "weights": "score",
        }
        for option, owner in own.items():
            if option in self.model_fields_set and self.by != owner:
                raise ValueError(f"'{option}' applies to criterion '{owner}', not '{self.by}'")
        for option in ("scope", "ignore_holds"):
            if option in self.model_fields_set and self.by != "free_stock":
                raise ValueError(f"'{option}' applies to criterion 'free_stock', not '{self.by}'")
        return self


def _criterion(value: object) -> object:
    return {"by": value} if isinstance(value, str) else value


class GreedyConfig(_Frozen):
    """How a greedy policy walks orders and locations.

    Parameters
    ----------
    sequence
        Order in which orders are served: ``arrival`` (created_at, then input order),
        ``priority`` (priority descending, then arrival) or ``input``.
    ranking
        The ranking chain: criteria names or tables (see :class:`Criterion`); ``id`` is always
        appended as the final tie-break.
    fill
        ``line_by_line``: each line walks the ranking, taking ``min(remaining, free)``;
        ``whole_order_first``: the best-ranked location that can ship the whole order, else line
        by line; ``first_location``: the whole order from the first-ranked eligible location
        (whether or not it has stock), else the shortfall applies;
        ``fewest_locations``: the smallest set of locations covering every line (sets of up to
        ``max_set_size`` enumerated, ranked by the chain summed over the set), else see
        ``require_full``.
    shortfall
        What happens to units no location can give: ``backorder`` (they wait, the rest ships),
        ``wait`` (the whole order waits), ``reject`` (the whole order is rejected and nothing is
        reserved: implies ``constraints.backorders = "never"``). Orders that do not allow
        backorders are rejected in every case.
    backorder_at
        Record, for each backordered line, the location it waits at: ``first_stocking`` (the
        first-ranked location with a stock row for the SKU) or ``first_backorderable`` (the
        first-ranked location matching ``backorderable``; if none, the shortfall makes the
        whole order wait). ``none`` records nothing.
    backorderable
        Locations that accept backorders (for ``first_backorderable``; all when empty).
    max_set_size
        For ``fewest_locations``: the largest set enumerated (the split cap, if lower, wins).
    require_full
        For ``fewest_locations``: when no set covers the order, ``true`` makes the whole order
        wait; ``false`` covers what it can with a greedy set cover and backorders the rest.
    """

    sequence: Literal["arrival", "priority", "input"] = "arrival"
    ranking: tuple[Annotated[Criterion, BeforeValidator(_criterion)], ...] = (
        Criterion(by="distance"),
    )
    fill: Literal["line_by_line", "whole_order_first", "first_location", "fewest_locations"] = (
        "line_by_line"
    )
    shortfall: Literal["backorder", "wait", "reject"] = "backorder"
    backorder_at: Literal["none", "first_stocking", "first_backorderable"] = "none"
    backorderable: LocationSelector = LocationSelector()
    max_set_size: int = Field(default=3, ge=1, le=6)
    require_full: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> GreedyConfig:
        if "require_full" in self.model_fields_set and self.fill != "fewest_locations":
            raise ValueError("'require_full' applies to fill = 'fewest_locations' only")
        if "backorderable" in self.model_fields_set and self.backorder_at != (
            "first_backorderable"
        ):
            raise ValueError("'backorderable' applies to backorder_at = 'first_backorderable'")
        return self


# ---- the rule set -----------------------------------------------------------------------------


class RuleSet(_Frozen):
    """A complete rule set.

    Parameters
    ----------
    name
        Shown in results (``summary.json``'s ``policy``).
    description
        Free text.
    strategy
        ``optimize`` (the exact or large-scale optimiser) or ``greedy`` (a ranked fill).
    objective
        Costs and penalties.
    constraints
        Hard limits.
    eligibility
        Which locations may serve which orders.
    stock
        Stock held back from what can be promised.
    greedy
        The greedy policy (ranking chain, fill, shortfall); ``None`` with ``strategy = "greedy"``
        runs the built-in baseline (nearest location that covers the order, else line by line
        from the nearest).
    """

    name: str = "default"
    description: str = ""
    strategy: Literal["optimize", "greedy"] = "optimize"
    objective: Objective = Objective()
    constraints: Constraints = Constraints()
    eligibility: tuple[EligibilityRule, ...] = ()
    stock: StockPolicy = StockPolicy()
    greedy: GreedyConfig | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        groups: dict[str, list[Any]] = {
            "eligibility": list(self.eligibility),
            "stock.safety_stock": list(self.stock.safety_stock),
            "stock.ring_fence": list(self.stock.ring_fence),
            "stock.exposure": list(self.stock.exposure),
            "objective.preferences": list(self.objective.preferences),
        }
        for where, rules in groups.items():
            dup = [n for n, c in Counter(r.name for r in rules).items() if c > 1]
            if dup:
                raise ValueError(f"two rules in {where} are named '{dup[0]}'; names must be unique")
        return self

    @property
    def backorders_allowed(self) -> bool:
        """Whether any order may be backordered under these rules."""
        return self.constraints.backorders == "allow" and not (
            self.greedy is not None and self.greedy.shortfall == "reject"
        )
