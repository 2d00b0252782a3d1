"""Each peer policy's documented behaviour (``peers.md``) on small hand-built cases."""

from __future__ import annotations

import polars as pl
import pytest
from rules_cases import backordered, network, orders, rejected, run, shipped

from allocator import allocate
from allocator.rules import PEER_POLICIES, load_rules, parse_rules

NEAR = {"lat": 40.1, "lon": -75.0}  # ~11 km from the default ship-to point (40, -75)
MID = {"lat": 41.0, "lon": -75.0}  # ~111 km
FAR = {"lat": 45.0, "lon": -75.0}  # ~556 km


def test_every_peer_policy_is_bundled_and_greedy() -> None:
    for name in PEER_POLICIES:
        rules = load_rules(name)
        assert rules.name == name
        assert rules.strategy == "greedy"
        assert rules.greedy is not None
        assert rules.description


# ---- saleor -----------------------------------------------------------------------------------


def test_saleor_sorting_order_walks_priority_then_id() -> None:
    net = network(
        [{"location_id": "A", "priority": 1}, {"location_id": "C"}, {"location_id": "B"}],
        {("A", "X"): 5, ("B", "X"): 2, ("C", "X"): 2},
    )
    plan = run(net, orders({"order_id": "o1", "lines": [("X", 3)]}), "saleor_sorting_order")
    assert shipped(plan) == {"o1": [("X", "B", 2), ("X", "C", 1)]}


def test_saleor_short_line_refuses_the_whole_order_and_reserves_nothing() -> None:
    net = network([{"location_id": "A"}, {"location_id": "B"}], {("A", "X"): 2, ("A", "Y"): 1})
    batch = orders(
        {"order_id": "o1", "lines": [("X", 2), ("Y", 2)]},  # Y is short: refused
        {"order_id": "o2", "lines": [("X", 2)]},  # gets what o1 would have taken
    )
    for policy in ("saleor_sorting_order", "saleor_high_stock"):
        plan = run(net, batch, policy)
        assert rejected(plan) == ["o1"]
        assert backordered(plan) == {}
        assert shipped(plan) == {"o2": [("X", "A", 2)]}


def test_saleor_serves_pickup_orders_from_the_collection_point_first() -> None:
    net = network(
        [
            {"location_id": "A"},
            {"location_id": "S", "kind": "store", "can_pickup": True, "priority": 5, **NEAR},
        ],
        {("A", "X"): 5, ("S", "X"): 1},
    )
    batch = orders(
        {"order_id": "p", "fulfillment": "pickup", "pickup_location_id": "S", "lines": [("X", 3)]}
    )
    plan = run(net, batch, "saleor_sorting_order")
    assert shipped(plan) == {"p": [("X", "A", 2), ("X", "S", 1)]}
    # The default rules serve a pickup order from its store only.
    default = allocate(net, batch)
    assert default.assignments["location_id"].to_list() == ["S"]
    assert default.summary().units_backordered == 2


def test_saleor_high_stock_sorts_ignoring_holds_but_takes_within_them() -> None:
    # A: 5 on hand but 4 held as safety stock -> sorts first (5 > 3) yet can give only 1.
    net = network(
        [{"location_id": "A"}, {"location_id": "B"}], {("A", "X"): (5, 0, 4), ("B", "X"): 3}
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 2)]}), "saleor_high_stock")
    assert shipped(plan) == {"o": [("X", "A", 1), ("X", "B", 1)]}


def test_saleor_high_stock_ranks_each_line_by_its_own_sku() -> None:
    net = network(
        [{"location_id": "A"}, {"location_id": "B"}],
        {("A", "X"): 1, ("B", "X"): 9, ("A", "Y"): 9, ("B", "Y"): 1},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 1), ("Y", 1)]}), "saleor_high_stock")
    assert shipped(plan) == {"o": [("X", "B", 1), ("Y", "A", 1)]}


# ---- solidus and spree ------------------------------------------------------------------------


def test_solidus_takes_on_hand_everywhere_in_database_order_before_backordering() -> None:
    net = network(
        [{"location_id": "B"}, {"location_id": "A", **NEAR}], {("B", "X"): 1, ("A", "X"): 1}
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 4)]}), "solidus_on_hand_first")
    assert shipped(plan) == {"o": [("X", "A", 1), ("X", "B", 1)]}  # a split, not a backorder
    assert backordered(plan) == {"o": 2}
    where = plan.info["backorder_locations"]
    assert isinstance(where, pl.DataFrame)
    assert where.select("location_id", "qty").rows() == [("B", 2)]  # first in table order


def test_solidus_backorders_at_the_first_location_that_allows_it() -> None:
    net = network([{"location_id": "B"}, {"location_id": "A", "tags": "bo"}], {("B", "X"): 1})
    rules = parse_rules(
        'extends = "solidus_on_hand_first"\n[greedy]\nbackorderable = { tags = ["bo"] }'
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 3)]}), rules)
    assert shipped(plan) == {"o": [("X", "B", 1)]}
    assert plan.info["backorder_locations"]["location_id"].to_list() == ["A"]  # type: ignore[index]
    # No location accepts backorders: the order cannot go ahead and waits whole.
    nobody = parse_rules(
        'extends = "solidus_on_hand_first"\n[greedy]\nbackorderable = { tags = ["none"] }'
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 3)]}), nobody)
    assert shipped(plan) == {}
    assert backordered(plan) == {"o": 3}


def test_spree_legacy_leaves_the_backorder_at_the_first_stocking_location() -> None:
    # P1 stocks X (a stock row) but has none on hand; the on-hand units come from P2.
    net = network(
        [{"location_id": "P1"}, {"location_id": "P2"}, {"location_id": "P3"}],
        {("P1", "X"): 0, ("P2", "X"): 2},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 3)]}), "spree_legacy")
    assert shipped(plan) == {"o": [("X", "P2", 2)]}
    assert plan.info["backorder_locations"].select("location_id", "qty").rows() == [("P1", 1)]  # type: ignore[union-attr]


def test_spree_rules_chain_preferred_then_fewest_splits_then_default_then_id() -> None:
    locs = [
        {"location_id": "A"},  # first by id, covers X only
        {"location_id": "B"},  # covers both lines
        {"location_id": "C", "tags": "main"},  # covers both lines, the default location
    ]
    stock = {("A", "X"): 5, ("B", "X"): 5, ("B", "Y"): 5, ("C", "X"): 5, ("C", "Y"): 5}
    batch = orders({"order_id": "o", "lines": [("X", 1), ("Y", 1)]})
    # Fewest splits beats id; the default location breaks the tie between B and C.
    assert shipped(run(network(locs, stock), batch, "spree_rules")) == {
        "o": [("X", "C", 1), ("Y", "C", 1)]
    }
    # A preferred location comes first even though it covers less.
    locs[0]["tags"] = "preferred"
    assert shipped(run(network(locs, stock), batch, "spree_rules")) == {
        "o": [("X", "A", 1), ("Y", "C", 1)]
    }


# ---- magento ----------------------------------------------------------------------------------


def test_magento_priority_ranks_by_source_priority() -> None:
    net = network(
        [{"location_id": "A", "priority": 2}, {"location_id": "B", "priority": 1}],
        {("A", "X"): 5, ("B", "X"): 1},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 3)]}), "magento_priority")
    assert shipped(plan) == {"o": [("X", "A", 2), ("X", "B", 1)]}


def test_magento_short_order_is_not_shippable_and_waits_whole() -> None:
    net = network([{"location_id": "A"}], {("A", "X"): 5, ("A", "Y"): 1})
    batch = orders(
        {"order_id": "o1", "lines": [("X", 1), ("Y", 2)]},
        {"order_id": "o2", "allow_backorder": False, "lines": [("Y", 2)]},
    )
    for policy in ("magento_priority", "magento_distance"):
        plan = run(net, batch, policy)
        assert shipped(plan) == {}
        assert backordered(plan) == {"o1": 3}
        assert rejected(plan) == ["o2"]


def test_magento_distance_ranks_nearest_first_and_unknown_coordinates_last() -> None:
    net = network(
        [
            {"location_id": "A", "priority": 0},  # no coordinates
            {"location_id": "B", **FAR},
            {"location_id": "C", **MID},
        ],
        {("A", "X"): 9, ("B", "X"): 9, ("C", "X"): 1},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 2)]}), "magento_distance")
    assert shipped(plan) == {"o": [("X", "B", 1), ("X", "C", 1)]}


# ---- medusa -----------------------------------------------------------------------------------


def test_medusa_reserves_everything_at_the_first_location_or_fails() -> None:
    locs = [{"location_id": "Z"}, {"location_id": "A"}]  # list order: Z first
    batch = orders({"order_id": "o", "lines": [("X", 2), ("Y", 1)]})
    # Z lacks Y: the order fails although A has everything.
    lacking = network(locs, {("Z", "X"): 5, ("A", "X"): 5, ("A", "Y"): 5})
    plan = run(lacking, batch, "medusa_first_location")
    assert shipped(plan) == {}
    assert backordered(plan) == {"o": 3}
    # Z has everything: the whole order goes there.
    full = network(locs, {("Z", "X"): 5, ("Z", "Y"): 1, ("A", "X"): 5, ("A", "Y"): 5})
    assert shipped(run(full, batch, "medusa_first_location")) == {
        "o": [("X", "Z", 2), ("Y", "Z", 1)]
    }


# ---- shopify and salesforce -------------------------------------------------------------------


def test_shopify_prefers_fewer_locations_over_nearer_ones() -> None:
    net = network(
        [{"location_id": "A", **NEAR}, {"location_id": "B", **NEAR}, {"location_id": "C", **FAR}],
        {("A", "X"): 5, ("B", "Y"): 5, ("C", "X"): 5, ("C", "Y"): 5},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 1), ("Y", 1)]}), "shopify_default")
    assert shipped(plan) == {"o": [("X", "C", 1), ("Y", "C", 1)]}


def test_shopify_stays_in_market_then_goes_closest() -> None:
    net = network(
        [
            {"location_id": "CA1", "country": "CA", **NEAR},
            {"location_id": "US1", **FAR},
            {"location_id": "US2", **MID},
        ],
        {("CA1", "X"): 5, ("US1", "X"): 5, ("US2", "X"): 5},
    )
    plan = run(net, orders({"order_id": "o", "lines": [("X", 1)]}), "shopify_default")
    assert shipped(plan) == {"o": [("X", "US2", 1)]}


def test_shopify_ships_what_it_can_and_unfulfillable_units_wait() -> None:
    net = network([{"location_id": "A"}], {("A", "X"): 5, ("A", "Y"): 1})
    plan = run(net, orders({"order_id": "o", "lines": [("X", 2), ("Y", 3)]}), "shopify_default")
    assert shipped(plan) == {"o": [("X", "A", 2), ("Y", "A", 1)]}
    assert backordered(plan) == {"o": 2}


def test_salesforce_smallest_covering_set_with_least_average_distance() -> None:
    net = network(
        [
            {"location_id": "A", **NEAR},
            {"location_id": "B", **FAR},
            {"location_id": "C", **MID},
            {"location_id": "D", **FAR},
        ],
        {("A", "X"): 5, ("B", "Y"): 5, ("C", "Y"): 5, ("D", "X"): 5, ("D", "Y"): 1},
    )
    batch = orders({"order_id": "o", "lines": [("X", 1), ("Y", 2)]})
    plan = run(net, batch, "salesforce_fewest_splits")
    # No single location covers; {A, C} is the nearest pair.
    assert shipped(plan) == {"o": [("X", "A", 1), ("Y", "C", 2)]}


def test_salesforce_order_waits_when_no_set_within_the_split_cap_covers() -> None:
    locs = [{"location_id": f"L{i}"} for i in range(4)]
    stock = {(f"L{i}", sku): 1 for i, sku in enumerate("WXYZ")}
    batch = orders({"order_id": "o", "lines": [("W", 1), ("X", 1), ("Y", 1), ("Z", 1)]})
    plan = run(network(locs, stock), batch, "salesforce_fewest_splits")
    assert shipped(plan) == {}
    assert backordered(plan) == {"o": 4}
    # With a cap of four the same order ships from four locations.
    rules = parse_rules(
        'extends = "salesforce_fewest_splits"\n[constraints]\nmax_locations_per_order = 4\n'
        "[greedy]\nmax_set_size = 4"
    )
    assert len(shipped(run(network(locs, stock), batch, rules))["o"]) == 4


# ---- sterling and oca ---------------------------------------------------------------------------


def test_sterling_weighs_miles_against_node_priority() -> None:
    net = network(
        [{"location_id": "A", "priority": 1, **MID}, {"location_id": "B", "priority": 0, **FAR}],
        {("A", "X"): 5, ("B", "X"): 5},
    )
    # A: 69 miles + 250 * 1 = 319; B: 345 miles + 0 = 345 -> A. With priority 2, A scores 569.
    plan = run(net, orders({"order_id": "o", "lines": [("X", 1)]}), "sterling_weighted")
    assert shipped(plan) == {"o": [("X", "A", 1)]}
    net2 = network(
        [{"location_id": "A", "priority": 2, **MID}, {"location_id": "B", "priority": 0, **FAR}],
        {("A", "X"): 5, ("B", "X"): 5},
    )
    assert shipped(
        run(net2, orders({"order_id": "o", "lines": [("X", 1)]}), "sterling_weighted")
    ) == {"o": [("X", "B", 1)]}


def test_oca_fcfs_serves_by_priority_then_age_while_others_serve_by_arrival() -> None:
    net = network([{"location_id": "A"}], {("A", "X"): 1})
    batch = orders(
        {"order_id": "old", "priority": 0, "lines": [("X", 1)]},
        {"order_id": "urgent", "priority": 2, "lines": [("X", 1)]},
    )
    fcfs = run(net, batch, "oca_fcfs")
    assert shipped(fcfs) == {"urgent": [("X", "A", 1)]}
    assert backordered(fcfs) == {"old": 1}
    arrival = run(net, batch, "spree_legacy")
    assert shipped(arrival) == {"old": [("X", "A", 1)]}


@pytest.mark.parametrize("policy", PEER_POLICIES)
def test_peer_policies_respect_ship_complete_and_no_backorder_orders(policy: str) -> None:
    net = network(
        [{"location_id": "A"}, {"location_id": "B"}], {("A", "X"): 1, ("B", "X"): 1, ("B", "Y"): 1}
    )
    batch = orders(
        {"order_id": "sc", "ship_complete": True, "lines": [("X", 2)]},
        {"order_id": "nb", "allow_backorder": False, "lines": [("Y", 2)]},
    )
    plan = run(net, batch, policy)
    assert "sc" not in shipped(plan)
    assert "nb" in rejected(plan)
