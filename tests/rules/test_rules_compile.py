"""Each rule kind compiled into the problem, on small hand-built cases."""

from __future__ import annotations

import numpy as np
import polars as pl
from rules_cases import network, orders

from allocator import allocate, compile_problem
from allocator.plan import check_feasible
from allocator.rules import parse_rules

NEAR = {"lat": 40.1, "lon": -75.0}
FAR = {"lat": 45.0, "lon": -75.0}


def _pairs(problem) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {
        (str(problem.order_ids[o]), str(problem.location_ids[loc]))
        for o, loc in zip(problem.pair_order, problem.pair_location, strict=True)
    }


def _excluded(problem) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    ctx = problem.meta["rules"]
    names = ctx.reason_names
    return {
        (str(problem.order_ids[r["ord"]]), str(problem.location_ids[r["loc"]])): names[r["reason"]]
        for r in problem.meta["exclusions"].iter_rows(named=True)
    }


def test_eligibility_by_kind_tags_channel_priority_and_country() -> None:
    net = network(
        [
            {"location_id": "W", **FAR},
            {"location_id": "S", "kind": "store", "tags": "urban", **NEAR},
            {"location_id": "C", "country": "CA", **NEAR},
        ],
        {("W", "X"): 9, ("S", "X"): 9, ("C", "X"): 9},
    )
    batch = orders(
        {"order_id": "web", "lines": [("X", 1)]},
        {"order_id": "mkt", "channel": "marketplace", "lines": [("X", 1)]},
        {"order_id": "vip", "priority": 2, "lines": [("X", 1)]},
    )
    rules = parse_rules(
        """
[[eligibility]]
name = "marketplace-from-warehouses"
when = { channel = "marketplace" }
only = { kind = "warehouse" }
[[eligibility]]
name = "no-urban-stores-for-vip"
when = { priority_min = 2 }
exclude = { tags = ["urban"] }
[[eligibility]]
name = "domestic"
same_country = true
"""
    )
    problem = compile_problem(net, batch, rules)
    assert _pairs(problem) == {("web", "W"), ("web", "S"), ("mkt", "W"), ("vip", "W")}
    excluded = _excluded(problem)
    assert excluded[("mkt", "S")] == "eligibility.marketplace-from-warehouses"
    assert excluded[("vip", "S")] == "eligibility.no-urban-stores-for-vip"
    assert excluded[("web", "C")] == "eligibility.domestic"


def test_eligibility_by_sku_attributes_from_the_items_table() -> None:
    net = network(
        [{"location_id": "W", **FAR}, {"location_id": "S", "kind": "store", **NEAR}],
        {("W", "H"): 9, ("S", "H"): 9, ("W", "P"): 9, ("S", "P"): 9},
        items=[
            {"sku": "H", "weight": 2.0, "tags": "hazmat"},
            {"sku": "P", "weight": 40.0, "tags": None},
        ],
    )
    batch = orders({"order_id": "o", "lines": [("H", 1), ("P", 1)]})
    rules = parse_rules(
        """
[[eligibility]]
name = "hazmat-not-from-stores"
when = { sku_tags = ["hazmat"] }
exclude = { kind = "store" }
[[eligibility]]
name = "heavy-from-warehouses"
when = { weight_min = 30 }
only = { kind = "warehouse" }
"""
    )
    plan = allocate(net, batch, rules=rules)
    assert set(plan.assignments["location_id"]) == {"W"}
    assert plan.summary().units_backordered == 0


def test_max_distance_and_explicit_costs_table() -> None:
    net = network(
        [{"location_id": "N", **NEAR}, {"location_id": "F", **FAR}], {("N", "X"): 9, ("F", "X"): 9}
    )
    rules = parse_rules('[[eligibility]]\nname = "500km"\nmax_distance_km = 500')
    problem = compile_problem(net, orders({"order_id": "o", "lines": [("X", 1)]}), rules)
    assert _pairs(problem) == {("o", "N")}
    assert _excluded(problem)[("o", "F")] == "eligibility.500km"


def test_extra_safety_stock_and_exposure_lower_atp() -> None:
    net = network(
        [{"location_id": "S", "kind": "store"}, {"location_id": "W"}],
        {("S", "X"): 10, ("W", "X"): 10},
    )
    rules = parse_rules(
        """
[[stock.safety_stock]]
name = "display"
where = { kind = "store" }
units = 2
[[stock.exposure]]
name = "half"
where = { kind = "store" }
share = 0.5
[[stock.safety_stock]]
name = "dc-buffer"
where = { kind = "warehouse" }
share = 0.25
"""
    )
    problem = compile_problem(net, orders({"order_id": "o", "lines": [("X", 1)]}), rules)
    s, w = list(problem.location_ids).index("S"), list(problem.location_ids).index("W")
    x = list(problem.sku_ids).index("X")
    assert problem.atp[s, x] == 4  # (10 - 2) * 0.5
    assert problem.atp[w, x] == 7  # 10 - ceil(2.5)


def test_ring_fence_keeps_stock_for_its_channel() -> None:
    net = network([{"location_id": "S", "kind": "store"}], {("S", "X"): 4})
    rules = parse_rules(
        '[[stock.ring_fence]]\nname = "store-only"\nchannel = "store"\nwhere = { kind = "store" }\n'
        "units = 3"
    )
    batch = orders(
        {"order_id": "web", "lines": [("X", 4)]},
        {"order_id": "shop", "channel": "store", "lines": [("X", 3)]},
    )
    plan = allocate(net, batch, rules=rules)
    got = dict(plan.assignments.group_by("order_id").agg(pl.col("qty").sum()).rows())
    assert got == {"web": 1, "shop": 3}
    assert plan.problem.n_limits == 1
    assert plan.problem.meta["limit_names"] == ["store-only"]


def test_channel_exposure_limit() -> None:
    net = network([{"location_id": "S", "kind": "store"}], {("S", "X"): 6})
    rules = parse_rules(
        '[[stock.exposure]]\nname = "online"\nwhere = { kind = "store" }\n'
        'channels = ["web"]\nshare = 0.5'
    )
    batch = orders(
        {"order_id": "web", "lines": [("X", 6)]},
        {"order_id": "shop", "channel": "store", "lines": [("X", 3)]},
    )
    plan = allocate(net, batch, rules=rules)
    got = dict(plan.assignments.group_by("order_id").agg(pl.col("qty").sum()).rows())
    assert got == {"web": 3, "shop": 3}


def test_constraints_split_caps_ship_complete_capacity_and_backorders() -> None:
    net = network(
        [{"location_id": "A", "capacity_units": 1}, {"location_id": "B"}, {"location_id": "C"}],
        {("A", "X"): 9, ("B", "X"): 1, ("C", "Y"): 1},
    )
    batch = orders(
        {"order_id": "w", "channel": "wholesale", "lines": [("X", 2)]},
        {"order_id": "m", "channel": "marketplace", "lines": [("X", 1), ("Y", 1)]},
    )
    rules = parse_rules(
        """
[constraints]
ship_complete_channels = ["wholesale"]
max_locations_by_channel = { marketplace = 1 }
backorders = "never"
[[constraints.capacity]]
where = { location_id = "A" }
units = -1
"""
    )
    problem = compile_problem(net, batch, rules)
    assert problem.order_ship_complete.tolist() == [True, False]
    assert problem.order_max_locations.tolist() == [3, 1]
    assert not problem.order_allow_backorder.any()
    assert np.isinf(problem.location_capacity_units).all()


def test_backorder_penalties_by_priority_and_channel() -> None:
    net = network([{"location_id": "A"}], {("A", "X"): 1})
    batch = orders(
        {"order_id": "p0", "lines": [("X", 1)]},
        {"order_id": "p2", "priority": 2, "lines": [("X", 1)]},
        {"order_id": "ws", "channel": "wholesale", "priority": 2, "lines": [("X", 1)]},
    )
    rules = parse_rules(
        "[objective]\nbackorder_penalty_by_priority = { 2 = 100.0 }\n"
        "backorder_penalty_by_channel = { wholesale = 7.0 }"
    )
    problem = compile_problem(net, batch, rules)
    assert problem.line_backorder_cost.tolist() == [60.0, 100.0, 7.0]


def test_preferences_and_tie_break_are_cost_terms() -> None:
    net = network(
        [
            {"location_id": "B", **NEAR},
            {"location_id": "A", **NEAR},
            {"location_id": "S", "kind": "store", **NEAR},
        ],
        {("A", "X"): 5, ("B", "X"): 5, ("S", "X"): 5},
    )
    batch = orders({"order_id": "o", "lines": [("X", 2)]})
    rules = parse_rules(
        '[objective]\ntie_break = "location_id"\n[[objective.preferences]]\nname = "stores"\n'
        'where = { kind = "store" }\nper_unit = 0.5\nper_shipment = 1.0'
    )
    problem = compile_problem(net, batch, rules)
    pref_u, tie = problem.meta["pair_preference_unit"], problem.meta["pair_tie_break"]
    ids = problem.location_ids[problem.pair_location].tolist()
    assert dict(zip(ids, pref_u.tolist(), strict=True)) == {"A": 0.0, "B": 0.0, "S": 0.5}
    assert tie[ids.index("A")] < tie[ids.index("B")] < tie[ids.index("S")] <= 0.001
    plan = allocate(net, batch, rules=rules)
    assert plan.assignments["location_id"].to_list() == ["A"]  # equal cost: A wins the tie


def test_pickup_transfers_and_pickup_ship_complete() -> None:
    net = network(
        [
            {"location_id": "W", **FAR},
            {"location_id": "S", "kind": "store", "can_pickup": True, **NEAR},
        ],
        {("W", "X"): 5, ("S", "X"): 1},
    )
    batch = orders(
        {"order_id": "p", "fulfillment": "pickup", "pickup_location_id": "S", "lines": [("X", 3)]}
    )
    plain = allocate(net, batch)
    assert plain.summary().units_backordered == 2
    rules = parse_rules("[constraints.pickup]\nallow_transfers = true")
    moved = allocate(net, batch, rules=rules)
    assert moved.summary().units_backordered == 0
    shipments = moved.shipments().sort("location_id")
    assert shipments["shipment_cost"].to_list()[0] == 0.0 or shipments["location_id"][0] == "S"
    whole = allocate(net, batch, rules=parse_rules("[constraints.pickup]\nship_complete = true"))
    assert whole.summary().units_assigned == 0
    assert check_feasible(whole.problem, whole.solution) == []
