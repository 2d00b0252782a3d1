"""Real-time sourcing: agreement with allocate(), the search paths, and reserving in the ledger."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import allocator.realtime as realtime
from allocator import Network, Order, OrderLine, RuleSet, allocate
from allocator.errors import IdempotencyConflict, InputError, InsufficientStock
from allocator.generate import generate
from allocator.inventory import open_ledger
from allocator.realtime import SourcingIndex, read_atp, source, source_and_reserve, suborder

SKUS = ["A", "B", "C"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Network, Order, RuleSet]:
    """A small network, one order and a rule set, covering every order and rule option."""
    n_loc = draw(st.integers(1, 8))
    lat = st.floats(25, 48, allow_nan=False)
    lon = st.floats(-122, -70, allow_nan=False)
    locations = pl.DataFrame(
        {
            "location_id": [f"L{i}" for i in range(n_loc)],
            "lat": [draw(lat) for _ in range(n_loc)],
            "lon": [draw(lon) for _ in range(n_loc)],
            "country": [draw(st.sampled_from(["US", "CA", None])) for _ in range(n_loc)],
            "can_ship": [draw(st.booleans()) or i == 0 for i in range(n_loc)],
            "can_pickup": [draw(st.booleans()) for _ in range(n_loc)],
            "capacity_units": [
                draw(st.one_of(st.none(), st.none(), st.integers(0, 6))) for _ in range(n_loc)
            ],
            "capacity_shipments": [
                draw(st.one_of(st.none(), st.none(), st.integers(0, 2))) for _ in range(n_loc)
            ],
        },
        schema_overrides={
            "capacity_units": pl.Int64,
            "capacity_shipments": pl.Int64,
            "country": pl.String,
        },
    )
    stock = [
        {"location_id": f"L{i}", "sku": sku, "on_hand": draw(st.integers(0, 5))}
        for i in range(n_loc)
        for sku in SKUS
        if draw(st.booleans())
    ] or [{"location_id": "L0", "sku": "A", "on_hand": 1}]
    network = Network.from_frames(locations, pl.DataFrame(stock))
    pickups = locations.filter(pl.col("can_pickup"))["location_id"].to_list()
    pickup = bool(pickups) and draw(st.integers(0, 5)) == 0
    order = Order(
        order_id="o1",
        lines=tuple(
            OrderLine(sku=draw(st.sampled_from(SKUS)), qty=draw(st.integers(1, 4)))
            for _ in range(draw(st.integers(1, 3)))
        ),
        lat=draw(lat),
        lon=draw(lon),
        country=draw(st.sampled_from(["US", "CA", None])),
        priority=draw(st.integers(0, 2)),
        ship_complete=draw(st.integers(0, 3)) == 0,
        allow_backorder=draw(st.integers(0, 2)) > 0,
        fulfillment="pickup" if pickup else "ship",
        pickup_location_id=draw(st.sampled_from(pickups)) if pickup else None,
        promised_days=draw(st.one_of(st.none(), st.integers(0, 4))),
    )
    rules = RuleSet(
        constraints={
            "max_locations_per_order": draw(st.one_of(st.none(), st.integers(1, 3))),
            "ship_complete": draw(st.integers(0, 9)) == 0,
            "respect_capacity": draw(st.integers(0, 5)) > 0,
        },
        objective={
            "backorder_penalty": draw(st.sampled_from([60.0, 8.0, 1.0])),
            "split_penalty": draw(st.sampled_from([0.0, 4.0])),
            "rejection_penalty": draw(st.sampled_from([80.0, 5.0])),
        },
    )
    return network, order, rules


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


@settings(max_examples=40)
@given(case=cases())
def test_same_optimal_cost_as_allocate(case: tuple[Network, Order, RuleSet]) -> None:
    network, order, rules = case
    plan = allocate(network, order, rules=rules)
    result = source(order, network, rules=rules)
    assert _close(result.cost.total, plan.cost.total), (result, plan.cost)
    assert result.rejected == bool(plan.solution.order_rejected[0])
    assert result.units_assigned + result.units_backordered in (0, sum(x.qty for x in order.lines))
    if result.rejected:
        assert not result.assignments
        assert not result.backorders


@pytest.fixture(scope="module")
def fifty() -> tuple[Network, list[Order]]:
    """A generated network of 50 locations and 3-line orders against it."""
    inst = generate(400, 50, 300, seed=11)
    network = Network.from_frames(inst.locations, inst.stock)
    rng = np.random.default_rng(5)
    skus = inst.stock["sku"].unique().sort().to_list()
    heads = inst.orders.unique("order_id", keep="first", maintain_order=True).head(40)
    orders = [
        Order(
            order_id=row["order_id"],
            lat=row["lat"],
            lon=row["lon"],
            country=row["country"],
            lines=tuple(
                OrderLine(sku=str(rng.choice(skus)), qty=int(rng.integers(1, 4))) for _ in range(3)
            ),
        )
        for row in heads.iter_rows(named=True)
    ]
    return network, orders


def test_agrees_on_a_generated_network(fifty: tuple[Network, list[Order]]) -> None:
    network, orders = fifty
    index = SourcingIndex.build(network)
    methods = []
    for order in orders:
        result = source(order, index)
        plan = allocate(network, order)
        assert _close(result.cost.total, plan.cost.total), order.order_id
        methods.append(result.method)
    assert methods.count("enumeration") >= 0.8 * len(methods)


def test_milp_paths_agree(
    fifty: tuple[Network, list[Order]], monkeypatch: pytest.MonkeyPatch
) -> None:
    network, orders = fifty
    index = SourcingIndex.build(network)
    enumerated = [source(order, index) for order in orders[:10]]
    monkeypatch.setattr(realtime, "MAX_SUBSETS", 0)  # every order goes to the MILP
    for order, before in zip(orders[:10], enumerated, strict=True):
        result = source(order, index)
        assert result.method == "milp" or not before.assignments
        assert _close(result.cost.total, before.cost.total)


def test_binding_capacity_uses_the_milp() -> None:
    locations = pl.DataFrame(
        {
            "location_id": ["near", "far"],
            "lat": [40.7, 34.0],
            "lon": [-74.0, -118.2],
            "capacity_units": [2, None],
        },
        schema_overrides={"capacity_units": pl.Int64},
    )
    stock = pl.DataFrame({"location_id": ["near", "far"], "sku": ["A", "A"], "on_hand": [9, 9]})
    network = Network.from_frames(locations, stock)
    order = Order(order_id="o", lat=40.7, lon=-74.0, lines=(OrderLine(sku="A", qty=5),))
    result = source(order, network)
    assert result.method == "milp"
    assert result.locations == ("far",)  # one parcel from afar beats two
    assert _close(result.cost.total, allocate(network, order).cost.total)


def _two_stores() -> Network:
    locations = pl.DataFrame(
        {
            "location_id": ["W", "S", "X"],
            "lat": [40.7, 40.8, 41.0],
            "lon": [-74.0, -73.9, -74.2],
            "can_pickup": [False, True, False],
        }
    )
    stock = pl.DataFrame(
        {"location_id": ["W", "S", "X", "W"], "sku": ["A", "A", "A", "B"], "on_hand": [5, 5, 5, 1]}
    )
    return Network.from_frames(locations, stock)


def test_exclude_committed_and_pickup() -> None:
    network = _two_stores()
    order = Order(
        order_id="o",
        lat=40.7,
        lon=-74.0,
        lines=(OrderLine(sku="A", qty=2), OrderLine(sku="B", qty=1)),
    )
    assert source(order, network).locations == ("W",)
    moved = source(order, network, exclude=["W"])
    assert "W" not in moved.locations
    assert moved.units_backordered == 1  # B is only at W
    only_a = Order(order_id="o", lat=40.7, lon=-74.0, lines=(OrderLine(sku="A", qty=2),))
    fresh = source(only_a, network, exclude=["W"])
    joined = source(only_a, network, exclude=["W"], committed=["X"])
    assert joined.locations == ("X",)
    assert joined.cost.shipment == 0.0  # X already ships to this order
    assert joined.cost.total <= fresh.cost.total
    pickup = Order(
        order_id="p",
        lines=(OrderLine(sku="A", qty=2),),
        fulfillment="pickup",
        pickup_location_id="S",
    )
    result = source(pickup, network)
    assert result.locations == ("S",)
    assert result.cost.total == 0.0
    with pytest.raises(InputError, match="pickup"):
        source(pickup.model_copy(update={"pickup_location_id": "W"}), network)
    with pytest.raises(InputError, match="unknown location"):
        source(pickup.model_copy(update={"pickup_location_id": "nowhere"}), network)


def test_suborder_keeps_the_head() -> None:
    order = Order(
        order_id="o",
        customer_id="c",
        lines=(OrderLine(sku="A", qty=2, unit_price=3.0), OrderLine(sku="B", qty=1)),
    )
    sub = suborder(order, {"1": 1})
    assert [(x.line_id, x.qty, x.unit_price) for x in sub.lines] == [("1", 1, 3.0)]
    assert sub.customer_id == "c"
    with pytest.raises(InputError):
        suborder(order, {})


def _ledger_for(network: Network, url: str) -> Any:
    ledger = open_ledger(url)
    for n, (loc, sku, qty) in enumerate(
        network.stock.select("location_id", "sku", "on_hand").iter_rows()
    ):
        ledger.receive(loc, sku, qty, key=f"init-{n}")
    return ledger


def test_source_and_reserve(tmp_path: Path) -> None:
    network = _two_stores()
    with _ledger_for(network, f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        order = Order(
            order_id="o",
            lat=40.7,
            lon=-74.0,
            lines=(OrderLine(sku="A", qty=2), OrderLine(sku="B", qty=1)),
        )
        result = source_and_reserve(order, ledger, network=network, key="o/1")
        assert result.hold is not None
        assert sorted((x.sku, x.location_id, x.qty) for x in result.hold.lines) == sorted(
            result.reservation()
        )
        assert ledger.available("B", "W") == 0
        assert ledger.verify() == []
        again = source_and_reserve(order, ledger, network=network, key="o/1")
        assert again.hold == result.hold  # replay: the same reservation, nothing new
        assert len(ledger.holds("o")) == 1
        waiting = source_and_reserve(
            Order(order_id="w", lat=40.7, lon=-74.0, lines=(OrderLine(sku="B", qty=1),)),
            ledger,
            network=network,
        )
        assert waiting.hold is None
        assert waiting.units_backordered == 1


def test_replay_after_stock_moved_returns_the_first_hold() -> None:
    network = _two_stores()
    with _ledger_for(network, "memory://") as ledger:
        order = Order(order_id="o", lat=40.7, lon=-74.0, lines=(OrderLine(sku="A", qty=5),))
        first = source_and_reserve(order, ledger, network=network, key="k")
        assert first.locations == ("W",)
        # W's units are now held, so sourcing the same order again would pick another store.
        assert source(order, network, atp=read_atp(ledger, ["A"], ["W", "S", "X"])).locations != (
            "W",
        )
        again = source_and_reserve(order, ledger, network=network, key="k")
        assert again.hold == first.hold
        with pytest.raises(IdempotencyConflict):
            ledger.reserve("o", [("A", "S", 1)], key="k")


def test_retries_when_stock_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _two_stores()
    with _ledger_for(network, "memory://") as ledger:
        real = realtime.read_atp
        reads = {"n": 0}

        def stale(*args: Any, **kwargs: Any) -> dict[tuple[str, str], int]:
            reads["n"] += 1
            atp = real(*args, **kwargs)
            if reads["n"] == 1:  # the first read still shows units another process just took
                atp[("W", "B")] = atp.get(("W", "B"), 0) + 5
            return atp

        monkeypatch.setattr(realtime, "read_atp", stale)
        order = Order(order_id="o", lat=40.7, lon=-74.0, lines=(OrderLine(sku="B", qty=3),))
        result = source_and_reserve(order, ledger, network=network)
        assert result.attempts == 2
        assert result.units_assigned == 1
        assert ledger.verify() == []

        monkeypatch.setattr(
            realtime, "read_atp", lambda *a, **k: {("W", "A"): 99, ("S", "A"): 99, ("X", "A"): 99}
        )
        big = Order(order_id="big", lat=40.7, lon=-74.0, lines=(OrderLine(sku="A", qty=50),))
        with pytest.raises(InsufficientStock, match="3 attempts"):
            source_and_reserve(big, ledger, network=network, max_attempts=3)
        assert ledger.holds("big") == ()


def test_read_atp_counts_lapsed_holds_as_free() -> None:
    now = [datetime(2026, 3, 2, tzinfo=UTC)]
    with open_ledger("memory://", clock=lambda: now[0]) as ledger:
        ledger.receive("W", "A", 5, key="in")
        ledger.reserve("o", [("A", "W", 4)], key="h", ttl=60)
        assert read_atp(ledger, ["A", "Z"], ["W", "S"]) == {("W", "A"): 1}
        now[0] += timedelta(seconds=61)
        assert read_atp(ledger, ["A"], ["W"]) == {("W", "A"): 5}


def _contend(url: str, worker: int, orders: int) -> int:
    """Reserve ``orders`` one-unit orders of the hot SKU; return the units promised."""
    network = _two_stores()
    index = SourcingIndex.build(network)
    promised = 0
    with open_ledger(url) as ledger:
        for n in range(orders):
            order = Order(
                order_id=f"w{worker}-{n}",
                lat=40.7,
                lon=-74.0,
                lines=(OrderLine(sku="B", qty=1), OrderLine(sku="A", qty=1)),
            )
            result = source_and_reserve(order, ledger, network=index, key=order.order_id)
            promised += sum(qty for sku, _, qty in result.reservation() if sku == "B")
    return promised


@pytest.mark.slow
def test_no_oversell_under_contention(tmp_path: Path) -> None:
    network = _two_stores()
    url = f"sqlite:///{tmp_path / 'hot.db'}"
    with _ledger_for(network, url) as ledger:
        ledger.receive("W", "B", 19, key="hot")  # 20 units of B for 60 orders
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        promised = sum(pool.map(_contend, [url] * 3, range(3), [20] * 3))
    with open_ledger(url) as ledger:
        assert ledger.verify() == []
        assert promised == 20
        snap = ledger.snapshot().filter(pl.col("sku") == "B")
        assert snap["reserved"].sum() == 20
        assert (snap["reserved"] <= snap["on_hand"]).all()


def test_explicit_costs_table_agrees() -> None:
    locations = pl.DataFrame(
        {
            "location_id": ["A", "B", "C"],
            "lat": [40.7, 41.9, 34.0],
            "lon": [-74.0, -87.6, -118.2],
            "can_pickup": [False, False, True],
        }
    )
    stock = pl.DataFrame(
        {"location_id": ["A", "B", "C", "B"], "sku": ["x", "x", "x", "y"], "on_hand": [3, 3, 3, 2]}
    )
    costs = pl.DataFrame(
        {
            "order_id": ["o1", "o1", "o2"],
            "location_id": ["A", "B", "C"],
            "unit_cost": [2.0, 0.5, 1.0],
            "shipment_cost": [1.0, 9.0, 3.0],
        }
    )
    network = Network.from_frames(locations, stock, costs)
    index = SourcingIndex.build(network)
    orders = [
        Order(order_id="o1", lat=40.7, lon=-74.0, lines=(OrderLine(sku="x", qty=4),)),
        Order(order_id="o1", lines=(OrderLine(sku="x", qty=2), OrderLine(sku="y", qty=1))),
        Order(
            order_id="o2", lat=40.7, lon=-74.0, promised_days=0, lines=(OrderLine(sku="x", qty=1),)
        ),
        Order(order_id="o3", lines=(OrderLine(sku="x", qty=1),)),  # listed nowhere: waits
        Order(
            order_id="o3",
            lines=(OrderLine(sku="x", qty=1),),
            fulfillment="pickup",
            pickup_location_id="C",
        ),
    ]
    for order in orders[:3]:
        result = source(order, index)
        # allocate() wants every order of the costs table among its orders: give it this one's.
        own = Network.from_frames(
            locations, stock, costs.filter(pl.col("order_id") == order.order_id)
        )
        assert _close(result.cost.total, allocate(own, order).cost.total), order
    unlisted = source(orders[3], index)
    assert unlisted.units_backordered == 1
    assert unlisted.cost.total == RuleSet().objective.backorder_penalty
    pickup = source(orders[4], index)  # a pickup is served at its store, listed or not
    assert (pickup.locations, pickup.cost.total) == (("C",), 0.0)
