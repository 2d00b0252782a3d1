"""The public test helpers and the policy comparison."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from rules_cases import network, orders

from allocator.model import Network, Orders
from allocator.policies.compare import compare_policies, markdown_table
from allocator.rules import RuleSet
from allocator.testing import instances, networks, rule_sets


def test_profiles_are_registered() -> None:
    assert settings.get_profile("fast").max_examples == 25
    assert settings.get_profile("thorough").max_examples == 400
    assert settings.get_profile("fast").deadline is None


@settings(settings.get_profile("fast"), max_examples=10)
@given(instances())
def test_strategies_draw_valid_inputs(instance) -> None:  # type: ignore[no-untyped-def]
    network_, orders_, rules = instance
    assert isinstance(network_, Network)
    assert isinstance(orders_, Orders)
    assert isinstance(rules, RuleSet)
    assert network_.items is not None
    assert set(orders_.lines["sku"]) <= set(network_.items["sku"]) | set(network_.stock["sku"])


@settings(max_examples=10)
@given(networks(items=False, capacities=False), rule_sets(strategy="optimize", greedy=False))
def test_strategy_options(network_: Network, rules: RuleSet) -> None:
    assert network_.items is None
    assert network_.locations["capacity_units"].null_count() == network_.locations.height
    assert rules.strategy == "optimize"
    assert rules.greedy is None


def test_compare_policies_tabulates_each_policy() -> None:
    net = network(
        [{"location_id": "A"}, {"location_id": "B", "priority": 1}], {("A", "X"): 1, ("B", "X"): 5}
    )
    batch = orders({"order_id": "o1", "lines": [("X", 2)]}, {"order_id": "o2", "lines": [("X", 1)]})
    table = compare_policies(net, batch, ["optimize", "magento_priority", "saleor_sorting_order"])
    assert table["policy"].to_list() == ["optimize", "magento_priority", "saleor_sorting_order"]
    assert table["feasible"].all()
    costs = dict(zip(table["policy"], table["cost"], strict=True))
    assert costs["optimize"] <= min(costs.values()) + 1e-9
    text = markdown_table(table, reference="optimize")
    assert text.count("\n") == 5
    assert "| optimize | optimal |" in text
    assert table["solver"][1] == "greedy"
    assert table["solver"][0] not in (None, "greedy", "decompose")  # auto: a small problem -> MILP
    # The method reaches the solver: the decomposition certifies the same optimum here.
    forced = compare_policies(net, batch, ["optimize"], method="decompose")
    assert forced["solver"].to_list() == ["decompose"]
    assert forced["cost"][0] == pytest.approx(costs["optimize"])
    assert forced["feasible"].all()
