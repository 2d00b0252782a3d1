"""The replay: modes, stock movements through the ledger, receipts, cancellations, returns."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from simulate_support import T0, generated, tiny_network, tiny_orders

from allocator.errors import InputError, UnknownPolicyError
from allocator.simulate import (
    KPI_COLUMNS,
    Decision,
    DecisionContext,
    PolicyError,
    SimulationConfig,
    compare,
    simulate,
)


def test_realtime_replay_reserves_and_ships_through_the_ledger() -> None:
    network, orders = generated()
    result = simulate(network, orders, "shopify_default", mode="realtime")
    k = result.kpis.row(0, named=True)
    assert k["orders"] == 120
    assert result.info["ledger_calls"] > 2 * 100  # a reservation and a shipment per order
    units = int(orders.lines["qty"].sum())
    shipped = int(result.shipments["units"].sum())
    assert (
        shipped + k["units_unfilled"] + int(result.orders.filter(pl.col("rejected"))["units"].sum())
        == units
    )
    assert 0 < k["fill_rate_at_order"] <= 1
    assert k["cost_per_order"] == pytest.approx(
        k["shipping_cost_per_order"] + k["penalty_cost_per_order"]
    )


def test_ledger_and_arrays_give_the_same_replay() -> None:
    network, orders = generated()
    with_ledger = simulate(network, orders, "optimize", mode="realtime", cancel_rate=0.1)
    arrays = simulate(network, orders, "optimize", mode="realtime", cancel_rate=0.1, ledger=None)
    assert with_ledger.orders.equals(arrays.orders)
    assert with_ledger.shipments.equals(arrays.shipments)


def test_same_seed_same_replay_and_draws_do_not_depend_on_the_policy() -> None:
    network, orders = generated()
    settings = {"mode": "realtime", "cancel_rate": 0.2, "return_rate": 0.3, "ledger": None}
    a = simulate(network, orders, "optimize", **settings)
    b = simulate(network, orders, "optimize", **settings)
    assert a.orders.equals(b.orders)
    assert a.kpis.drop("seconds").equals(b.kpis.drop("seconds"))
    other = simulate(network, orders, "magento_priority", **settings)
    cancelled = a.orders.filter(pl.col("cancelled"))["order_id"]
    assert cancelled.len() > 0
    assert cancelled.equals(other.orders.filter(pl.col("cancelled"))["order_id"])


def test_receipts_fill_backorders_at_the_next_sync() -> None:
    network = tiny_network({("L1", "A"): 1})
    orders = tiny_orders([("o1", "A", 1, 1), ("o2", "A", 1, 2), ("o3", "A", 1, 3)])
    inbound = pl.DataFrame(
        {"location_id": ["L1"], "sku": ["A"], "qty": [5], "eta": [T0 + timedelta(hours=10)]}
    )
    result = simulate(network, orders, "optimize", mode="realtime", inbound=inbound)
    per = {r["order_id"]: r for r in result.orders.iter_rows(named=True)}
    assert per["o1"]["units_filled_at_order"] == 1
    assert per["o2"]["units_backordered"] == 1
    assert per["o2"]["units_filled_later"] == 1
    assert per["o3"]["units_unfilled"] == 0
    # Filled at the sync point at the receipt (10:00): 8 and 7 hours after the orders.
    assert per["o2"]["backorder_days"] == pytest.approx(8 / 24)
    assert per["o3"]["backorder_days"] == pytest.approx(7 / 24)
    k = result.kpis.row(0, named=True)
    assert k["fill_rate_at_order"] == pytest.approx(1 / 3)
    assert k["shipments_per_order"] == 1
    backlog = result.backlog["backlog_units"].to_list()
    assert backlog == [0]  # waiting at 03:00, filled at 10:00: nothing left at midnight


def test_inbound_file_errors_name_the_row() -> None:
    network = tiny_network({("L1", "A"): 1})
    orders = tiny_orders([("o1", "A", 1, 1)])
    bad = pl.DataFrame({"location_id": ["L9"], "sku": ["A"], "qty": [5], "eta": [T0]})
    with pytest.raises(InputError, match="unknown location 'L9'"):
        simulate(network, orders, "optimize", inbound=bad)
    negative = pl.DataFrame({"location_id": ["L1"], "sku": ["A"], "qty": [-1], "eta": [T0]})
    with pytest.raises(InputError, match="qty"):
        simulate(network, orders, "optimize", inbound=negative)


def test_a_cancellation_before_release_gives_the_units_back() -> None:
    network = tiny_network({("L1", "A"): 1})
    orders = tiny_orders([("o1", "A", 1, 1), ("o2", "A", 1, 3)])
    early = pl.DataFrame({"order_id": ["o1"], "cancelled_at": [T0 + timedelta(hours=1.5)]})
    result = simulate(network, orders, "optimize", mode="realtime", cancellations=early)
    per = {r["order_id"]: r for r in result.orders.iter_rows(named=True)}
    assert per["o1"]["cancelled"]
    assert per["o1"]["shipments"] == 0
    assert per["o2"]["units_filled_at_order"] == 1  # the released unit, seen from 02:00
    late = pl.DataFrame({"order_id": ["o1"], "cancelled_at": [T0 + timedelta(hours=5)]})
    result = simulate(network, orders, "optimize", mode="realtime", cancellations=late)
    per = {r["order_id"]: r for r in result.orders.iter_rows(named=True)}
    assert per["o1"]["shipments"] == 1  # released at 03:00, before the cancellation
    assert per["o2"]["units_backordered"] == 1


def test_returns_are_restocked_where_they_shipped_from() -> None:
    network = tiny_network({("L1", "A"): 1})
    orders = tiny_orders([("o1", "A", 1, 1), ("o2", "A", 1, 20)])
    result = simulate(
        network, orders, "optimize", mode="realtime", return_rate=1.0, return_days=0.5
    )
    per = {r["order_id"]: r for r in result.orders.iter_rows(named=True)}
    assert per["o1"]["units_returned"] == 1  # shipped at 03:00, back at 15:00
    assert per["o2"]["units_filled_at_order"] == 1  # the returned unit
    known = pl.DataFrame(
        {"order_id": ["o1"], "sku": ["A"], "qty": [1], "returned_at": [T0 + timedelta(hours=6)]}
    )
    result = simulate(network, orders, "optimize", mode="realtime", returns=known)
    assert result.kpis["units_returned"][0] == 1


def test_batch_mode_decides_at_the_end_of_each_window() -> None:
    network = tiny_network({("L1", "A"): 5})
    orders = tiny_orders([("o1", "A", 1, 0.25), ("o2", "A", 1, 1.5)])
    result = simulate(
        network, orders, "optimize", mode="batch", batch_minutes=60, release_minutes=0
    )
    shipped = sorted(result.shipments["shipped_at"].to_list())
    assert shipped == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]


def test_nightly_mode_ships_at_the_cutoff_and_never_keeps_a_dearer_plan() -> None:
    network, orders = generated()
    result = simulate(network, orders, "optimize", mode="nightly", night_hour=2, ledger=None)
    hours = result.shipments["shipped_at"].dt.hour().unique().to_list()
    assert hours == [2]
    assert result.info["nights"] >= 3
    assert result.info["night_savings"] >= 0
    greedy = simulate(network, orders, "greedy", mode="nightly", ledger=None)
    assert greedy.info["nights_reoptimized"] == 0  # greedy policies keep their choices


def test_daily_capacity_resets_at_midnight() -> None:
    network = tiny_network({("L1", "A"): 10, ("L2", "A"): 10}, capacity_shipments={"L1": 1})
    orders = tiny_orders([("o1", "A", 1, 1), ("o2", "A", 1, 2), ("o3", "A", 1, 26)])
    by_day = simulate(network, orders, "optimize", mode="realtime", capacity_period="day")
    ships = dict(by_day.locations.select("location_id", "shipments").iter_rows())
    assert ships == {"L1": 2, "L2": 1}
    horizon = simulate(network, orders, "optimize", mode="realtime")
    ships = dict(horizon.locations.select("location_id", "shipments").iter_rows())
    assert ships == {"L1": 1, "L2": 2}
    assert horizon.locations.filter(pl.col("location_id") == "L1")[
        "utilisation_shipments"
    ].to_list() == [1.0]


def test_kpi_tables_have_their_columns() -> None:
    network, orders = generated()
    comparison = compare(["optimize", "greedy"], network, orders, ledger=None)
    kpis = comparison.kpis
    assert kpis.columns == list(KPI_COLUMNS)
    assert kpis.height == 2
    assert kpis["cost_per_order_vs_best"].min() == 0
    daily = comparison.by_day()
    assert {"policy", "day", "split_rate", "backlog_units", "fill_rate_at_order"} <= set(
        daily.columns
    )
    assert set(comparison.by_channel()["channel"]) == set(orders.lines["channel"])
    assert comparison.by_location().height == 2 * network.locations.height
    zones = comparison.zone_mix()
    assert zones["share"].sum() == pytest.approx(2.0)
    flows = comparison.flows()
    assert flows["units"].sum() == sum(
        r.shipments["units"].sum() for r in comparison.results.values()
    )


class _Nothing:
    """A policy that never ships anything."""

    name = "nothing"
    reoptimizes = False

    def decide(self, network, orders, context: DecisionContext) -> Decision:  # type: ignore[no-untyped-def]
        n = orders.lines.height
        empty = np.zeros(0, np.int64)
        return Decision(empty, empty, empty, np.zeros(n, bool))


class _Greedy(_Nothing):
    """A policy that promises every line from the first location, stock or not."""

    name = "overpromise"

    def decide(self, network, orders, context: DecisionContext) -> Decision:  # type: ignore[no-untyped-def]
        n = orders.lines.height
        return Decision(
            np.arange(n), np.zeros(n, np.int64), orders.lines["qty"].to_numpy(), np.zeros(n, bool)
        )


def test_a_users_own_policy_plugs_in_and_is_checked() -> None:
    network, orders = generated()
    result = simulate(network, orders, _Nothing(), mode="realtime")
    assert result.kpis["units_backordered"][0] == orders.lines["qty"].sum()
    assert result.shipments.height == 0
    with pytest.raises(PolicyError, match="only"):
        simulate(network, orders, _Greedy(), mode="realtime")


def test_bad_settings_and_names_are_typed_errors() -> None:
    network, orders = generated()
    with pytest.raises(UnknownPolicyError, match="did you mean"):
        simulate(network, orders, "shopify_defualt")
    with pytest.raises(InputError, match="bad simulation setting"):
        simulate(network, orders, "optimize", mode="weekly")
    with pytest.raises(InputError, match="sync_minutes"):
        simulate(network, orders, "optimize", sync_minutes=7)
    with pytest.raises(InputError, match="names must differ"):
        compare(["optimize", "optimize"], network, orders)
    no_time = orders.lines.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("created_at"))
    with pytest.raises(InputError, match="created_at"):
        simulate(network, type(orders)(no_time), "optimize")
    with pytest.raises(ValueError, match="batch_minutes"):
        SimulationConfig(mode="batch", batch_minutes=7)
