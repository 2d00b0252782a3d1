"""Tests of the synthetic instance generator (:mod:`allocator.generate`) and the demo data."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from allocator.demo_data import default_instance
from allocator.errors import InputError
from allocator.generate import (
    DEFAULT_START,
    REGIONS,
    Instance,
    _cities,
    generate,
    write,
)

# The contract's columns and types, in order (contract.md, "Network folder" and "Orders file").
LOCATIONS_SCHEMA = {
    "location_id": pl.String,
    "kind": pl.String,
    "lat": pl.Float64,
    "lon": pl.Float64,
    "country": pl.String,
    "priority": pl.Int64,
    "can_ship": pl.Boolean,
    "can_pickup": pl.Boolean,
    "capacity_units": pl.Int64,
    "capacity_shipments": pl.Int64,
    "tags": pl.String,
}
STOCK_SCHEMA = {
    "location_id": pl.String,
    "sku": pl.String,
    "on_hand": pl.Int64,
    "reserved": pl.Int64,
    "safety_stock": pl.Int64,
}
ORDERS_SCHEMA = {
    "order_id": pl.String,
    "line_id": pl.String,
    "sku": pl.String,
    "qty": pl.Int64,
    "lat": pl.Float64,
    "lon": pl.Float64,
    "country": pl.String,
    "channel": pl.String,
    "priority": pl.Int64,
    "created_at": pl.Datetime("us"),
    "ship_complete": pl.Boolean,
    "allow_backorder": pl.Boolean,
    "fulfillment": pl.String,
    "pickup_location_id": pl.String,
}
ORDER_LEVEL = [
    "lat",
    "lon",
    "country",
    "channel",
    "priority",
    "created_at",
    "ship_complete",
    "allow_backorder",
    "fulfillment",
    "pickup_location_id",
]


@pytest.fixture(scope="module")
def medium() -> Instance:
    return generate(20_000, 40, 2_000, seed=3)


@pytest.fixture(scope="module")
def small() -> Instance:
    return generate(500, 12, 200, seed=11, region="eu")


def _orders(instance: Instance) -> pl.DataFrame:
    """One row per order with its number of lines."""
    return instance.orders.group_by("order_id", maintain_order=True).agg(
        pl.len().alias("n_lines"), *(pl.first(c) for c in ORDER_LEVEL)
    )


# --- shape of the tables ----------------------------------------------------------------------


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_schemas_match_the_contract(region: str) -> None:
    inst = generate(300, 15, 100, seed=1, region=region)
    assert dict(inst.locations.schema) == LOCATIONS_SCHEMA
    assert dict(inst.stock.schema) == STOCK_SCHEMA
    assert dict(inst.orders.schema) == ORDERS_SCHEMA
    countries = REGIONS[region][0]
    assert set(inst.locations["country"]) <= countries
    assert set(inst.orders["country"]) <= countries


def test_sizes_and_id_formats(small: Instance) -> None:
    assert small.locations.height == 12
    assert small.orders["order_id"].n_unique() == 500
    assert small.locations["location_id"].str.contains(r"^L\d{3}$").all()
    assert small.orders["order_id"].str.contains(r"^O\d{7}$").all()
    assert small.orders["sku"].str.contains(r"^SKU\d{5}$").all()
    assert small.stock["sku"].str.contains(r"^SKU\d{5}$").all()
    sku_numbers = pl.concat([small.orders["sku"], small.stock["sku"]]).str.slice(3).cast(pl.Int64)
    assert sku_numbers.is_between(1, 200).all()
    assert small.orders["line_id"].str.contains(r"^[1-6]$").all()
    # Ids widen when the counts need more digits.
    assert generate(3, 1_200, 10, seed=0).locations["location_id"][-1] == "L1200"
    wide = generate(3, 2, 123_456, seed=0)
    assert wide.orders["sku"].str.len_chars().unique().to_list() == [9]
    assert wide.stock["sku"].str.len_chars().unique().to_list() == [9]


def test_ids_are_unique(medium: Instance) -> None:
    assert medium.locations["location_id"].is_unique().all()
    assert not medium.stock.select(["location_id", "sku"]).is_duplicated().any()
    assert not medium.orders.select(["order_id", "line_id"]).is_duplicated().any()
    assert not medium.orders.select(["order_id", "sku"]).is_duplicated().any()


def test_orders_sorted_and_numbered_in_time_order(medium: Instance) -> None:
    o = medium.orders
    assert o["order_id"].is_sorted()
    assert (
        o.select(pl.col("line_id").cast(pl.Int64).diff().over("order_id"))
        .drop_nulls()["line_id"]
        .eq(1)
        .all()
    )
    per_order = _orders(medium)
    assert per_order["created_at"].is_sorted()


def test_order_level_columns_agree_within_an_order(medium: Instance) -> None:
    distinct = medium.orders.group_by("order_id").agg(
        pl.col(c).n_unique().alias(c) for c in ORDER_LEVEL
    )
    assert all(distinct[c].max() == 1 for c in ORDER_LEVEL)


def test_values_are_in_range(medium: Instance) -> None:
    o, s, loc = medium.orders, medium.stock, medium.locations
    assert (o["qty"] > 0).all()
    assert o["lat"].is_between(-90, 90).all()
    assert o["lon"].is_between(-180, 180).all()
    assert set(o["channel"]) == {"web", "marketplace", "store", "call-centre", "wholesale"}
    assert set(o["priority"]) <= {0, 1, 2}
    assert set(o["fulfillment"]) == {"ship", "pickup"}
    assert (s["on_hand"] > 0).all()
    assert (s["reserved"] >= 0).all()
    assert (s["reserved"] <= s["on_hand"]).all()
    assert (s["safety_stock"] >= 0).all()
    assert set(loc["kind"]) == {"warehouse", "store", "dropship"}
    no_nulls = [c for c in LOCATIONS_SCHEMA if not c.startswith("capacity")]
    assert loc.select(no_nulls).null_count().sum_horizontal().item() == 0


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables() -> None:
    a = generate(2_000, 20, 300, seed=42, region="na")
    b = generate(2_000, 20, 300, seed=42, region="na")
    assert a.locations.equals(b.locations)
    assert a.stock.equals(b.stock)
    assert a.orders.equals(b.orders)
    assert dict(a.parameters) == dict(b.parameters)


def test_different_seed_gives_different_tables() -> None:
    a = generate(2_000, 20, 300, seed=1)
    b = generate(2_000, 20, 300, seed=2)
    assert not a.orders.equals(b.orders)
    assert not a.stock.equals(b.stock)
    assert not a.locations.equals(b.locations)


def test_more_orders_keep_the_network() -> None:
    a = generate(100, 20, 300, seed=5)
    b = generate(5_000, 20, 300, seed=5)
    assert a.locations.drop("capacity_units", "capacity_shipments").equals(
        b.locations.drop("capacity_units", "capacity_shipments")
    )


# --- realism ----------------------------------------------------------------------------------


def test_network_composition() -> None:
    inst = default_instance()
    loc = inst.locations
    assert loc["kind"].to_list() == ["warehouse"] * 3 + ["store"] * 8 + ["dropship"]
    assert loc["priority"].to_list() == [0, 1, 1] + [2] * 8 + [3]
    # The first warehouse is at the first hub (Memphis, TN).
    assert _km(loc["lat"][0], loc["lon"][0], 35.1495, -90.0490) < 50
    wh = loc.filter(pl.col("kind") == "warehouse")
    stores = loc.filter(pl.col("kind") == "store")
    assert wh["capacity_units"].is_null().all()
    assert wh["capacity_shipments"].is_null().all()
    assert wh["tags"].str.contains("hub").all()
    assert stores["can_pickup"].all()
    assert not loc.filter(pl.col("kind") != "store")["can_pickup"].any()
    assert stores["capacity_shipments"].is_not_null().all()
    assert stores["tags"].str.contains("store").all()
    assert (stores["capacity_shipments"] > 0).all()


def test_smallest_network_has_a_warehouse_and_a_store() -> None:
    inst = generate(50, 2, 1, seed=0)
    assert inst.locations["kind"].to_list() == ["warehouse", "store"]
    assert inst.orders["line_id"].unique().to_list() == ["1"]
    assert inst.orders["sku"].unique().to_list() == ["SKU00001"]


def test_every_hub_is_a_known_city() -> None:
    for region, (_, hubs) in REGIONS.items():
        cities = _cities(region)
        found = {cities.find(hub) for hub in hubs}
        assert len(found) == len(hubs), region


def test_many_locations_reuse_cities_for_stores() -> None:
    inst = generate(20, 500, 10, seed=0, region="ca")
    assert inst.locations.height == 500
    assert (inst.locations["kind"] == "warehouse").sum() == len(REGIONS["ca"][1])


def test_every_stock_row_references_a_location(medium: Instance) -> None:
    ids = set(medium.locations["location_id"])
    assert set(medium.stock["location_id"]) <= ids


def test_stock_is_spread_unevenly(medium: Instance) -> None:
    listed = medium.stock.group_by("location_id").agg(pl.len().alias("skus"))
    kinds = medium.locations.select("location_id", "kind").join(listed, on="location_id")
    main = kinds.filter(pl.col("location_id") == "L001")["skus"].item()
    store_mean = kinds.filter(pl.col("kind") == "store")["skus"].mean()
    assert isinstance(store_mean, float)
    assert main > 0.8 * 2_000
    assert store_mean < 0.5 * main
    reserved_share = (medium.stock["reserved"] > 0).mean()
    safety_share = (medium.stock["safety_stock"] > 0).mean()
    assert isinstance(reserved_share, float)
    assert isinstance(safety_share, float)
    assert 0 < reserved_share < 0.2
    assert 0 < safety_share < 0.3


def test_some_units_cannot_be_sourced(medium: Instance) -> None:
    atp = (
        medium.stock.join(medium.locations.select("location_id", "can_ship"), on="location_id")
        .filter("can_ship")
        .group_by("sku")
        .agg((pl.col("on_hand") - pl.col("reserved") - pl.col("safety_stock")).clip(0).sum())
    )
    demand = medium.orders.group_by("sku").agg(pl.col("qty").sum())
    short = (
        demand.join(atp, on="sku", how="left")
        .fill_null(0)
        .select((pl.col("qty") - pl.col("on_hand")).clip(0).sum())
        .item()
    )
    share = short / demand["qty"].sum()
    assert 0.002 < share < 0.05


def test_pickup_stores_hold_what_their_orders_ask(medium: Instance) -> None:
    asked = (
        medium.orders.filter(pl.col("fulfillment") == "pickup")
        .group_by("pickup_location_id", "sku")
        .agg(pl.col("qty").sum())
        .rename({"pickup_location_id": "location_id"})
    )
    held = asked.join(medium.stock, on=["location_id", "sku"], how="left").fill_null(0)
    atp = held["on_hand"] - held["reserved"] - held["safety_stock"]
    assert (atp >= held["qty"]).all()


def test_stock_ratio_scales_stock() -> None:
    low = generate(5_000, 12, 500, seed=1, stock_ratio=0.5)
    high = generate(5_000, 12, 500, seed=1, stock_ratio=2.0)
    assert 3 * low.stock["on_hand"].sum() < high.stock["on_hand"].sum()
    empty = generate(100, 12, 50, seed=1, stock_ratio=0.0)
    assert empty.stock.height == 0
    assert dict(empty.stock.schema) == STOCK_SCHEMA


def test_pickup_orders_reference_a_pickup_store(medium: Instance) -> None:
    o = medium.orders
    pickup = o.filter(pl.col("fulfillment") == "pickup")
    assert pickup.height > 0
    assert pickup["pickup_location_id"].is_not_null().all()
    assert o.filter(pl.col("fulfillment") == "ship")["pickup_location_id"].is_null().all()
    stores = medium.locations.filter(pl.col("kind") == "store", pl.col("can_pickup"))
    assert set(pickup["pickup_location_id"]) <= set(stores["location_id"])
    assert set(pickup["channel"]) <= {"web", "store"}
    # Close to the customer.
    joined = pickup.join(
        stores.select(
            pl.col("location_id").alias("pickup_location_id"),
            pl.col("lat").alias("s_lat"),
            pl.col("lon").alias("s_lon"),
        ),
        on="pickup_location_id",
    )
    distances = [_km(*row) for row in joined.select("lat", "lon", "s_lat", "s_lon").iter_rows()]
    assert sorted(distances)[len(distances) // 2] < 40
    share = (_orders(medium)["fulfillment"] == "pickup").mean()
    assert isinstance(share, float)
    assert 0.02 < share < 0.06


def test_pickup_share_zero_gives_no_pickups() -> None:
    inst = generate(2_000, 12, 100, seed=1, pickup_share=0.0)
    assert (inst.orders["fulfillment"] == "ship").all()


def test_zipf_skew_is_visible(medium: Instance) -> None:
    def top_decile_share(inst: Instance, n_skus: int) -> float:
        counts = inst.orders["sku"].value_counts().sort("count", descending=True)["count"]
        return int(counts.head(n_skus // 10).sum()) / int(counts.sum())

    assert top_decile_share(medium, 2_000) > 0.6
    flat = generate(20_000, 12, 2_000, seed=3, zipf_exponent=0.0)
    assert top_decile_share(flat, 2_000) < 0.2
    # Popularity ranks are shuffled over the ids: SKU00001 is not always the best seller.
    top = medium.orders["sku"].value_counts().sort("count", descending=True)["sku"][0]
    assert top != "SKU00001"


def test_multi_line_mix(medium: Instance) -> None:
    per_order = _orders(medium)
    shares = per_order["n_lines"].value_counts(normalize=True).sort("n_lines")
    share = dict(zip(shares["n_lines"], shares["proportion"], strict=True))
    assert share[1] == pytest.approx(0.60, abs=0.02)
    assert share[2] == pytest.approx(0.25, abs=0.02)
    assert share[3] == pytest.approx(0.10, abs=0.015)
    assert sum(share.get(k, 0.0) for k in (4, 5, 6)) == pytest.approx(0.05, abs=0.01)
    assert max(share) <= 6


def test_distinct_skus_even_in_a_tiny_assortment() -> None:
    inst = generate(3_000, 5, 3, seed=9)
    assert not inst.orders.select(["order_id", "sku"]).is_duplicated().any()
    assert inst.orders.group_by("order_id").len()["len"].max() == 3


def test_quantities_and_order_attributes(medium: Instance) -> None:
    o = medium.orders
    retail = o.filter(pl.col("channel") != "wholesale")["qty"]
    assert (retail == 1).mean() == pytest.approx(0.82, abs=0.02)
    assert retail.le(5).all()
    wholesale_qty = o.filter(pl.col("channel") == "wholesale")["qty"].mean()
    assert isinstance(wholesale_qty, float)
    assert wholesale_qty > 3
    per_order = _orders(medium)
    channel = per_order["channel"].value_counts(normalize=True)
    web = channel.filter(pl.col("channel") == "web")["proportion"].item()
    assert web == pytest.approx(0.58, abs=0.02)
    priority_zero = (per_order["priority"] == 0).mean()
    ship_complete = per_order["ship_complete"].mean()
    no_backorder = (~per_order["allow_backorder"]).mean()
    assert isinstance(priority_zero, float)
    assert isinstance(ship_complete, float)
    assert isinstance(no_backorder, float)
    assert 0.8 < priority_zero < 0.95
    assert 0.03 < ship_complete < 0.1
    assert 0.02 < no_backorder < 0.1
    wholesale = per_order.filter(pl.col("channel") == "wholesale")["ship_complete"].mean()
    assert isinstance(wholesale, float)
    assert wholesale > 0.3


def test_created_at_window_and_pattern(medium: Instance) -> None:
    created = _orders(medium)["created_at"]
    assert created.min() >= DEFAULT_START  # type: ignore[operator]
    assert created.max() < DEFAULT_START + timedelta(days=30)  # type: ignore[operator]
    hours = created.dt.hour()
    night = hours.is_between(1, 5).mean()
    evening = hours.is_between(18, 22).mean()
    assert isinstance(night, float)
    assert isinstance(evening, float)
    assert night < 0.08 < evening


def test_start_and_days() -> None:
    start = datetime(2024, 11, 25, 15, 30, tzinfo=timezone(timedelta(hours=-5)))
    inst = generate(500, 5, 20, seed=1, start=start, days=7)
    created = inst.orders["created_at"]
    assert created.min() >= datetime(2024, 11, 25)  # type: ignore[operator]
    assert created.max() < datetime(2024, 12, 2)  # type: ignore[operator]
    assert inst.parameters["start"] == "2024-11-25"


def test_default_instance_is_small_and_deterministic() -> None:
    a, b = default_instance(), default_instance()
    assert a.orders.equals(b.orders)
    assert a.stock.equals(b.stock)
    summary = a.summary()
    assert summary["locations"] == 12
    assert summary["orders"] == 300
    assert summary["lines"] < 600
    assert (a.orders["fulfillment"] == "pickup").any()
    assert a.parameters["seed"] == 0


# --- writing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_round_trip(small: Instance, tmp_path: Path, fmt: Any) -> None:
    out = write(small, tmp_path / "inst", fmt)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.txt", "instance.json", f"locations.{fmt}", f"orders.{fmt}", f"stock.{fmt}"]
    )
    tables: list[tuple[str, pl.DataFrame, dict[str, Any]]] = [
        ("locations", small.locations, LOCATIONS_SCHEMA),
        ("stock", small.stock, STOCK_SCHEMA),
        ("orders", small.orders, ORDERS_SCHEMA),
    ]
    for name, frame, schema in tables:
        path = out / f"{name}.{fmt}"
        back = pl.read_csv(path, schema=schema) if fmt == "csv" else pl.read_parquet(path)
        assert back.equals(frame), name
    manifest = json.loads((out / "instance.json").read_text(encoding="utf-8"))
    assert manifest["parameters"] == dict(small.parameters)
    assert manifest["parameters"]["seed"] == 11
    assert manifest["counts"]["orders"] == 500
    assert "seed 11" in (out / "README.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_is_byte_identical(tmp_path: Path, fmt: Any) -> None:
    for name in ("a", "b"):
        write(generate(400, 10, 80, seed=4), tmp_path / name, fmt)
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_csv_datetimes_are_iso_seconds(small: Instance, tmp_path: Path) -> None:
    write(small, tmp_path, "csv")
    first = (tmp_path / "orders.csv").read_text(encoding="utf-8").splitlines()[1]
    assert ",2025-03-0" in first
    assert "T" in first.split(",")[9]
    assert len(first.split(",")[9]) == len("2025-03-03T00:00:00")


def test_write_refuses_a_second_format(small: Instance, tmp_path: Path) -> None:
    write(small, tmp_path, "csv")
    with pytest.raises(InputError, match=r"locations\.csv already exists"):
        write(small, tmp_path, "parquet")
    write(small, tmp_path, "csv")  # the same format is simply replaced


def test_write_accepts_a_hand_made_instance(small: Instance, tmp_path: Path) -> None:
    bare = Instance(locations=small.locations, stock=small.stock, orders=small.orders)
    write(bare, tmp_path, "csv")
    assert json.loads((tmp_path / "instance.json").read_text(encoding="utf-8"))["parameters"] == {}
    assert "500 orders" in (tmp_path / "README.txt").read_text(encoding="utf-8")


def test_write_rejects_unknown_format(small: Instance, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fmt") as info:
        write(small, tmp_path, "xlsx")  # type: ignore[arg-type]
    assert info.value.column == "fmt"
    assert not any(tmp_path.iterdir())


# --- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "column"),
    [
        ({"n_orders": 0}, "n_orders"),
        ({"n_orders": 2.5}, "n_orders"),
        ({"n_orders": True}, "n_orders"),
        ({"n_locations": 1}, "n_locations"),
        ({"n_skus": 0}, "n_skus"),
        ({"seed": -1}, "seed"),
        ({"region": "mars"}, "region"),
        ({"region": ["us"]}, "region"),
        ({"days": 0}, "days"),
        ({"start": "2025-01-01"}, "start"),
        ({"stock_ratio": -0.1}, "stock_ratio"),
        ({"stock_ratio": math.nan}, "stock_ratio"),
        ({"stock_ratio": math.inf}, "stock_ratio"),
        ({"zipf_exponent": -1.0}, "zipf_exponent"),
        ({"pickup_share": 1.5}, "pickup_share"),
        ({"pickup_share": "lots"}, "pickup_share"),
        ({"n_dropship": 11}, "n_dropship"),
        ({"n_dropship": -1}, "n_dropship"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict[str, Any], column: str) -> None:
    args: dict[str, Any] = {"n_orders": 10, "n_locations": 12, "n_skus": 5, **kwargs}
    with pytest.raises(InputError) as info:
        generate(**args)
    assert info.value.column == column
    assert info.value.message.startswith("Expected ")
    assert info.value.message.endswith(".")


def test_explicit_dropship_count() -> None:
    inst = generate(100, 12, 50, seed=1, n_dropship=3)
    assert (inst.locations["kind"] == "dropship").sum() == 3
    assert (
        generate(100, 12, 50, seed=1, n_dropship=0)
        .locations["kind"]
        .is_in(["warehouse", "store"])
        .all()
    )


# --- bundled data -----------------------------------------------------------------------------


def test_bundled_city_table_is_small_and_attributed() -> None:
    data = resources.files("allocator").joinpath("data")
    raw = data.joinpath("cities.csv").read_bytes()
    assert len(raw) < 1_000_000
    cities = pl.read_csv(raw, schema_overrides={"admin1": pl.String})
    assert cities.columns == ["name", "country", "admin1", "lat", "lon", "population"]
    assert 500 < cities.height < 5_000
    assert cities["population"].ge(100_000).all()
    assert {"US", "CA", "DE", "GB", "FR"} <= set(cities["country"])
    attribution = data.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "GeoNames" in attribution
    assert "CC BY 4.0" in attribution


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))
