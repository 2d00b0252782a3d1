"""Public Hypothesis strategies for property-testing rule sets against the engine.

Users can check their own rule files the way the project checks its own::

    from hypothesis import given, settings
    from allocator import compile_problem, solve
    from allocator.plan import check_feasible
    from allocator.rules import load_rules
    from allocator.testing import instances

    @settings(settings.get_profile("fast"))
    @given(instances(rules=load_rules("my_rules.toml")))
    def test_my_rules_are_feasible(instance):
        network, orders, rules = instance
        problem = compile_problem(network, orders, rules)
        assert not check_feasible(problem, solve(problem).solution)

:func:`networks`, :func:`orders` and :func:`rule_sets` draw small, valid inputs (sizes an exact
solver handles in milliseconds); :func:`instances` draws all three together. Two settings
profiles are registered: ``"fast"`` (25 examples) and ``"thorough"`` (400 examples); neither has
a deadline. Hypothesis is an optional dependency: ``pip install 'allocator[testing]'`` installs
it (importing this module without it raises an :class:`ImportError` that says so).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - hypothesis is a test dependency
    raise ImportError(
        "allocator.testing needs Hypothesis (hypothesis>=6.100), which is not installed: "
        "pip install 'allocator[testing]'"
    ) from exc

from allocator.model import Network, Orders
from allocator.rules.schema import (
    Capacity,
    Constraints,
    Criterion,
    EligibilityRule,
    ExposureLimit,
    GreedyConfig,
    LocationSelector,
    Objective,
    OrderSelector,
    Pickup,
    Preference,
    RingFence,
    RuleSet,
    SafetyStock,
    SkuSelector,
    StockPolicy,
)

__all__ = [
    "CHANNELS",
    "LOCATION_TAGS",
    "SKU_TAGS",
    "greedy_configs",
    "instances",
    "networks",
    "orders",
    "rule_sets",
]

#: Sales channels that drawn orders and rules use.
CHANNELS: tuple[str, ...] = ("web", "marketplace", "store", "wholesale")
#: Location tags that drawn networks and rules use.
LOCATION_TAGS: tuple[str, ...] = ("main", "preferred", "urban", "regional")
#: SKU tags of the drawn ``items`` table.
SKU_TAGS: tuple[str, ...] = ("hazmat", "oversize", "fragile")

_COUNTRIES = ("US", "CA")
_KINDS = ("warehouse", "store", "dropship")


def _register_profiles() -> None:
    base = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    for name, examples in (("fast", 25), ("thorough", 400)):
        try:
            settings.get_profile(name)
        except Exception:  # not registered yet (hypothesis raises InvalidArgument)
            settings.register_profile(name, max_examples=examples, **base)  # type: ignore[arg-type]


_register_profiles()


@st.composite
def networks(
    draw: st.DrawFn,
    *,
    max_locations: int = 4,
    max_skus: int = 3,
    items: bool = True,
    capacities: bool = True,
) -> Network:
    """Small valid networks: locations (kinds, tags, countries, coordinates, capacities), stock
    (with reserved and safety stock) and, optionally, an ``items`` table with SKU tags."""
    n_loc = draw(st.integers(1, max_locations))
    skus = [f"S{i}" for i in range(draw(st.integers(1, max_skus)))]
    ids = [f"L{i}" for i in range(n_loc)]
    has_coords = [draw(st.booleans()) or i == 0 for i in range(n_loc)]
    locations = pl.DataFrame(
        {
            "location_id": ids,
            "kind": [draw(st.sampled_from(_KINDS)) for _ in ids],
            "lat": [draw(st.floats(30, 48)) if c else None for c in has_coords],
            "lon": [draw(st.floats(-120, -72)) if c else None for c in has_coords],
            "country": [draw(st.sampled_from(_COUNTRIES)) for _ in ids],
            "priority": [draw(st.integers(0, 3)) for _ in ids],
            "can_ship": [draw(st.booleans()) or i == 0 for i in range(n_loc)],
            "can_pickup": [draw(st.booleans()) for _ in ids],
            "capacity_units": [
                draw(st.one_of(st.none(), st.integers(0, 6))) if capacities else None for _ in ids
            ],
            "capacity_shipments": [
                draw(st.one_of(st.none(), st.integers(0, 3))) if capacities else None for _ in ids
            ],
            "tags": [
                ";".join(draw(st.lists(st.sampled_from(LOCATION_TAGS), max_size=2, unique=True)))
                or None
                for _ in ids
            ],
        },
        schema_overrides={
            "lat": pl.Float64,
            "lon": pl.Float64,
            "capacity_units": pl.Int64,
            "capacity_shipments": pl.Int64,
            "tags": pl.String,
        },
    )
    rows = [
        {
            "location_id": loc,
            "sku": sku,
            "on_hand": draw(st.integers(0, 5)),
            "reserved": draw(st.integers(0, 1)),
            "safety_stock": draw(st.integers(0, 1)),
        }
        for loc in ids
        for sku in skus
        if draw(st.booleans())
    ] or [{"location_id": ids[0], "sku": skus[0], "on_hand": 2, "reserved": 0, "safety_stock": 0}]
    item_frame = None
    if items:
        item_frame = pl.DataFrame(
            {
                "sku": skus,
                "weight": [draw(st.one_of(st.none(), st.floats(0.1, 30))) for _ in skus],
                "tags": [
                    ";".join(draw(st.lists(st.sampled_from(SKU_TAGS), max_size=2, unique=True)))
                    or None
                    for _ in skus
                ],
            },
            schema_overrides={"weight": pl.Float64, "tags": pl.String},
        )
    stock_skus = {r["sku"] for r in rows}
    if item_frame is not None:
        item_frame = item_frame.filter(pl.col("sku").is_in(list(stock_skus) + skus))
    return Network.from_frames(locations, pl.DataFrame(rows), items=item_frame)


@st.composite
def orders(draw: st.DrawFn, network: Network, *, max_orders: int = 4, max_lines: int = 2) -> Orders:
    """Small valid orders for ``network``: SKUs of its stock (or items), channels, priorities,
    creation times, ship-complete and no-backorder flags, and pickup orders at stores that can
    hand them over."""
    skus = sorted(set(network.stock["sku"].to_list()))
    if network.items is not None:
        skus = sorted(set(skus) | set(network.items["sku"].to_list()))
    pickup_ok = network.locations.filter(pl.col("can_pickup"))["location_id"].to_list()
    start = datetime(2025, 3, 3, 9, 0)
    rows: list[dict[str, object]] = []
    for i in range(draw(st.integers(1, max_orders))):
        n = draw(st.integers(1, min(max_lines, len(skus))))
        line_skus = draw(st.lists(st.sampled_from(skus), min_size=n, max_size=n, unique=True))
        pickup = bool(pickup_ok) and draw(st.integers(0, 5)) == 0
        head = {
            "order_id": f"O{i}",
            "lat": draw(st.floats(30, 48)),
            "lon": draw(st.floats(-120, -72)),
            "country": draw(st.sampled_from(_COUNTRIES)),
            "channel": draw(st.one_of(st.none(), st.sampled_from(CHANNELS))),
            "priority": draw(st.integers(0, 2)),
            "created_at": start + timedelta(minutes=draw(st.integers(0, 600))),
            "ship_complete": draw(st.integers(0, 4)) == 0,
            "allow_backorder": draw(st.integers(0, 3)) > 0,
            "fulfillment": "pickup" if pickup else "ship",
            "pickup_location_id": draw(st.sampled_from(pickup_ok)) if pickup else None,
        }
        rows.extend(
            {**head, "line_id": str(j + 1), "sku": sku, "qty": draw(st.integers(1, 3))}
            for j, sku in enumerate(line_skus)
        )
    frame = pl.DataFrame(
        rows,
        schema_overrides={"channel": pl.String, "pickup_location_id": pl.String},
    )
    return Orders.from_frame(frame)


_locations = st.builds(
    LocationSelector,
    kind=st.lists(st.sampled_from(_KINDS), max_size=2, unique=True).map(tuple),
    tags=st.lists(st.sampled_from(LOCATION_TAGS), max_size=2, unique=True).map(tuple),
)
_skus = st.builds(SkuSelector, sku_tags=st.lists(st.sampled_from(SKU_TAGS), max_size=1).map(tuple))


@st.composite
def _eligibility(draw: st.DrawFn, index: int) -> EligibilityRule:
    when = OrderSelector(
        channel=tuple(draw(st.lists(st.sampled_from(CHANNELS), max_size=2, unique=True))),
        sku_tags=tuple(draw(st.lists(st.sampled_from(SKU_TAGS), max_size=1))),
        priority_min=draw(st.one_of(st.none(), st.integers(0, 2))),
    )
    kind = draw(st.sampled_from(("exclude", "only", "same_country", "max_distance_km")))
    extra: dict[str, object] = {}
    if kind in ("exclude", "only"):
        extra[kind] = draw(_locations)
    elif kind == "same_country":
        extra["same_country"] = True
    else:
        extra["max_distance_km"] = draw(st.floats(300, 4000))
    return EligibilityRule(name=f"rule-{index}", when=when, **extra)


def _amount(draw: st.DrawFn) -> dict[str, object]:
    if draw(st.booleans()):
        return {"units": draw(st.integers(0, 3))}
    return {"share": draw(st.sampled_from((0.0, 0.25, 0.5, 1.0)))}


@st.composite
def _stock(draw: st.DrawFn) -> StockPolicy:
    safety = [
        SafetyStock(name=f"safety-{i}", where=draw(_locations), skus=draw(_skus), **_amount(draw))
        for i in range(draw(st.integers(0, 1)))
    ]
    fences = [
        RingFence(
            name=f"fence-{i}",
            channel=draw(st.sampled_from(CHANNELS)),
            where=draw(_locations),
            **_amount(draw),
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    shares = [f.share for f in fences if f.share is not None]
    if sum(shares) > 1 and fences[0].where == fences[-1].where:
        fences = fences[:1]
    exposure = [
        ExposureLimit(
            name=f"exposure-{i}",
            where=draw(_locations),
            channels=tuple(draw(st.lists(st.sampled_from(CHANNELS), max_size=2, unique=True))),
            **_amount(draw),
        )
        for i in range(draw(st.integers(0, 1)))
    ]
    return StockPolicy(
        safety_stock=tuple(safety), ring_fence=tuple(fences), exposure=tuple(exposure)
    )


#: Greedy configurations of the bundled peer policies, and a few more.
_GREEDY: tuple[GreedyConfig, ...] = (
    GreedyConfig(ranking=(Criterion(by="priority"),), shortfall="reject"),
    GreedyConfig(
        ranking=(Criterion(by="free_stock", scope="line", ignore_holds=True),), shortfall="reject"
    ),
    GreedyConfig(ranking=(Criterion(by="position"),), backorder_at="first_backorderable"),
    GreedyConfig(ranking=(Criterion(by="position"),), backorder_at="first_stocking"),
    GreedyConfig(
        ranking=(
            Criterion(by="preferred", where=LocationSelector(tags=("preferred",))),
            Criterion(by="lines_covered"),
        )
    ),
    GreedyConfig(ranking=(Criterion(by="priority"),), shortfall="wait"),
    GreedyConfig(ranking=(Criterion(by="distance"),), shortfall="wait"),
    GreedyConfig(ranking=(Criterion(by="position"),), fill="first_location", shortfall="wait"),
    GreedyConfig(
        ranking=(Criterion(by="country"), Criterion(by="distance")), fill="fewest_locations"
    ),
    GreedyConfig(
        ranking=(Criterion(by="distance"),),
        fill="fewest_locations",
        require_full=True,
        shortfall="wait",
    ),
    GreedyConfig(
        ranking=(Criterion(by="score", weights={"distance_miles": 1.0, "priority": 250.0}),)
    ),
    GreedyConfig(sequence="priority", ranking=(Criterion(by="priority"),)),
    GreedyConfig(ranking=(Criterion(by="cost"),), fill="whole_order_first"),
)


def greedy_configs() -> st.SearchStrategy[GreedyConfig]:
    """Greedy sections: those of the bundled peer policies and a few more."""
    return st.sampled_from(_GREEDY)


@st.composite
def rule_sets(
    draw: st.DrawFn, *, strategy: str | None = None, greedy: bool | None = None
) -> RuleSet:
    """Valid rule sets with every rule kind: eligibility, stock policy, constraints (split caps,
    ship-complete channels, capacity overrides, pickup transfers, no-backorder), objective
    (penalties by channel, preferences, tie-break) and, optionally, a greedy section."""
    objective = Objective(
        split_penalty=draw(st.sampled_from((0.0, 5.0))),
        backorder_penalty=draw(st.sampled_from((15.0, 60.0))),
        backorder_penalty_by_channel=draw(
            st.dictionaries(st.sampled_from(CHANNELS), st.sampled_from((5.0, 100.0)), max_size=1)
        ),
        preferences=tuple(
            Preference(name=f"pref-{i}", where=draw(_locations), per_unit=draw(st.floats(0, 2)))
            for i in range(draw(st.integers(0, 1)))
        ),
        tie_break=draw(st.sampled_from(("none", "location_id", "priority"))),
    )
    constraints = Constraints(
        max_locations_per_order=draw(st.one_of(st.none(), st.integers(1, 2))),
        max_locations_by_channel=draw(
            st.dictionaries(st.sampled_from(CHANNELS), st.integers(1, 2), max_size=1)
        ),
        ship_complete_channels=tuple(draw(st.lists(st.sampled_from(CHANNELS), max_size=1))),
        capacity=tuple(
            Capacity(where=draw(_locations), units=draw(st.integers(-1, 4)))
            for _ in range(draw(st.integers(0, 1)))
        ),
        backorders=draw(st.sampled_from(("allow", "allow", "never"))),
        pickup=Pickup(allow_transfers=draw(st.booleans())),
    )
    with_greedy = draw(st.booleans()) if greedy is None else greedy
    return RuleSet(
        name="drawn",
        strategy=strategy or draw(st.sampled_from(("optimize", "greedy"))),
        objective=objective,
        constraints=constraints,
        eligibility=tuple(draw(_eligibility(i)) for i in range(draw(st.integers(0, 2)))),
        stock=draw(_stock()),
        greedy=draw(greedy_configs()) if with_greedy else None,
    )


@st.composite
def instances(
    draw: st.DrawFn,
    *,
    rules: RuleSet | st.SearchStrategy[RuleSet] | None = None,
    max_locations: int = 4,
    max_orders: int = 4,
) -> tuple[Network, Orders, RuleSet]:
    """A network, orders for it and a rule set (drawn, or the one given)."""
    network = draw(networks(max_locations=max_locations))
    batch = draw(orders(network, max_orders=max_orders))
    if rules is None:
        rule_set = draw(rule_sets())
    elif isinstance(rules, RuleSet):
        rule_set = rules
    else:
        rule_set = draw(rules)
    return network, batch, rule_set
