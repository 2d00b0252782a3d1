"""Bad input: every case is a typed error naming the table, row and column."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from allocator import InputError, Network, Orders, allocate, read_network, read_orders
from allocator.errors import AllocatorError
from allocator.io._schema import UnknownColumnWarning

LOCATIONS = pl.DataFrame({"location_id": ["A", "B"], "kind": ["warehouse", "store"]})
STOCK = pl.DataFrame({"location_id": ["A", "B"], "sku": ["x", "x"], "on_hand": [3, 1]})
ORDERS = pl.DataFrame({"order_id": ["o1", "o1", "o2"], "sku": ["x", "y", "x"], "qty": [1, 2, 1]})


def test_valid_tables_round_trip() -> None:
    net = Network.from_frames(LOCATIONS, STOCK)
    orders = Orders.from_frame(ORDERS)
    assert net.locations["can_ship"].to_list() == [True, True]
    assert orders.lines["line_id"].to_list() == ["1", "2", "1"]
    assert orders.lines["allow_backorder"].all()


@pytest.mark.parametrize(
    ("frame", "row", "column", "text"),
    [
        (ORDERS.with_columns(qty=pl.Series([1, -2, 1])), 2, "qty", "> 0"),
        (ORDERS.with_columns(qty=pl.Series([1, 0, 1])), 2, "qty", "> 0"),
        (ORDERS.with_columns(qty=pl.Series([1.0, 2.5, 1.0])), 2, "qty", "whole number"),
        (ORDERS.with_columns(qty=pl.Series(["1", "two", "1"])), 2, "qty", "expected a number"),
        (ORDERS.with_columns(qty=pl.Series([1.0, math.nan, 1.0])), 2, "qty", "finite"),
        (ORDERS.with_columns(qty=pl.Series([True, False, True])), None, "qty", "booleans"),
        (
            ORDERS.with_columns(qty=pl.Series(["1", "99999999999999999999999", "1"])),
            2,
            "qty",
            "out of range",
        ),
        (ORDERS.drop("sku"), None, "sku", "missing"),
        (ORDERS.with_columns(sku=pl.Series(["x", None, "x"])), 2, "sku", "missing"),
        (ORDERS.with_columns(line_id=pl.Series(["1", "1", "1"])), 2, "line_id", "duplicate line"),
        (ORDERS.with_columns(priority=pl.Series([0, 1, 0])), 2, "priority", "disagree"),
        (
            ORDERS.with_columns(ship_complete=pl.Series(["true", "maybe", "no"])),
            2,
            "ship_complete",
            "true or false",
        ),
        (
            ORDERS.with_columns(fulfillment=pl.Series(["ship", "ship", "pickup"])),
            3,
            "pickup_location_id",
            "pickup",
        ),
        (
            ORDERS.with_columns(fulfillment=pl.Series(["ship", "ship", "drone"])),
            3,
            "fulfillment",
            "one of",
        ),
        (
            ORDERS.with_columns(created_at=pl.Series(["2026-01-01", "2026-01-01", "yesterday"])),
            3,
            "created_at",
            "ISO 8601",
        ),
        (
            ORDERS.with_columns(lat=pl.Series([95.0, 95.0, 1.0]), lon=pl.Series([1.0, 1.0, 1.0])),
            1,
            "lat",
            "<= 90",
        ),
        (ORDERS.head(0), None, None, "empty"),
    ],
)
def test_bad_orders(frame: pl.DataFrame, row: int | None, column: str | None, text: str) -> None:
    with pytest.raises(InputError) as info:
        Orders.from_frame(frame, source="orders.csv")
    err = info.value
    assert isinstance(err, AllocatorError)
    assert err.source == "orders.csv"
    assert err.row == row
    assert err.column == column
    assert text in str(err)


@pytest.mark.parametrize(
    ("locations", "stock", "costs", "table", "row", "column", "text"),
    [
        (
            LOCATIONS.with_columns(location_id=pl.Series(["A", "A"])),
            STOCK,
            None,
            "locations",
            2,
            "location_id",
            "duplicate",
        ),
        (
            LOCATIONS.with_columns(kind=pl.Series(["warehouse", "shop"])),
            STOCK,
            None,
            "locations",
            2,
            "kind",
            "one of",
        ),
        (
            LOCATIONS,
            STOCK.with_columns(on_hand=pl.Series([3, -1])),
            None,
            "stock",
            2,
            "on_hand",
            ">= 0",
        ),
        (
            LOCATIONS,
            STOCK.with_columns(location_id=pl.Series(["A", "Z"])),
            None,
            "stock",
            2,
            "location_id",
            "unknown location",
        ),
        (LOCATIONS, pl.concat([STOCK, STOCK.head(1)]), None, "stock", 3, "sku", "duplicate key"),
        (
            LOCATIONS,
            STOCK,
            pl.DataFrame(
                {
                    "order_id": ["o1"],
                    "location_id": ["A"],
                    "unit_cost": [math.nan],
                    "shipment_cost": [1.0],
                }
            ),
            "costs",
            1,
            "unit_cost",
            "finite",
        ),
        (
            LOCATIONS,
            STOCK,
            pl.DataFrame(
                {
                    "order_id": ["o1"],
                    "location_id": ["A"],
                    "unit_cost": [math.inf],
                    "shipment_cost": [1.0],
                }
            ),
            "costs",
            1,
            "unit_cost",
            "finite",
        ),
        (
            LOCATIONS,
            STOCK,
            pl.DataFrame(
                {
                    "order_id": ["o1"],
                    "location_id": ["A"],
                    "unit_cost": [1.0],
                    "shipment_cost": [-1.0],
                }
            ),
            "costs",
            1,
            "shipment_cost",
            ">= 0",
        ),
        (
            LOCATIONS,
            STOCK,
            pl.DataFrame(
                {
                    "order_id": ["o1"],
                    "location_id": ["Q"],
                    "unit_cost": [1.0],
                    "shipment_cost": [1.0],
                }
            ),
            "costs",
            1,
            "location_id",
            "unknown location",
        ),
    ],
)
def test_bad_network(
    locations: pl.DataFrame,
    stock: pl.DataFrame,
    costs: pl.DataFrame | None,
    table: str,
    row: int,
    column: str,
    text: str,
) -> None:
    with pytest.raises(InputError) as info:
        Network.from_frames(locations, stock, costs)
    assert info.value.source == table
    assert info.value.row == row
    assert info.value.column == column
    assert text in str(info.value)


def test_unknown_sku_in_stock_with_items_table() -> None:
    items = pl.DataFrame({"sku": ["x"]})
    stock = STOCK.with_columns(sku=pl.Series(["x", "nope"]))
    with pytest.raises(InputError, match="unknown sku 'nope'"):
        Network.from_frames(LOCATIONS, stock, items=items)


def test_costs_referencing_unknown_order_and_unknown_pickup_location() -> None:
    costs = pl.DataFrame(
        {"order_id": ["ghost"], "location_id": ["A"], "unit_cost": [1.0], "shipment_cost": [1.0]}
    )
    net = Network.from_frames(LOCATIONS, STOCK, costs)
    with pytest.raises(InputError, match="unknown order 'ghost'"):
        allocate(net, Orders.from_frame(ORDERS))
    pickup = ORDERS.with_columns(fulfillment=pl.lit("pickup"), pickup_location_id=pl.lit("A"))
    with pytest.raises(InputError, match="cannot hand over pickup orders"):
        allocate(Network.from_frames(LOCATIONS, STOCK), Orders.from_frame(pickup))


def test_unknown_column_warns() -> None:
    with pytest.warns(UnknownColumnWarning, match="colour"):
        Orders.from_frame(ORDERS.with_columns(colour=pl.lit("red")))


def write(frame: pl.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_files(tmp_path: Path, suffix: str) -> None:
    write(LOCATIONS, tmp_path / f"locations{suffix}")
    write(STOCK, tmp_path / f"stock{suffix}")
    orders = write(ORDERS, tmp_path / f"orders{suffix}")
    net = read_network(tmp_path)
    assert net.stock["on_hand"].to_list() == [3, 1]
    assert read_orders(orders).n_orders == 2


def test_file_errors(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_orders(tmp_path / "orders.csv")
    (tmp_path / "orders.csv").write_text("order_id,sku,qty\n")
    with pytest.raises(InputError, match="empty"):
        read_orders(tmp_path / "orders.csv")
    with pytest.raises(InputError, match="unsupported file type"):
        read_orders(tmp_path / "orders.xlsx")
    with pytest.raises(InputError, match="not found"):
        read_orders(tmp_path / "missing.csv")
    write(LOCATIONS, tmp_path / "locations.csv")
    with pytest.raises(InputError, match=r"missing table stock\.csv"):
        read_network(tmp_path)
    write(STOCK, tmp_path / "stock.csv")
    write(STOCK, tmp_path / "stock.parquet")
    with pytest.raises(InputError, match="keep one"):
        read_network(tmp_path)


def test_csv_error_names_file_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,sku,qty\no1,x,1\no2,x,-3\n")
    with pytest.raises(InputError) as info:
        read_orders(path)
    assert str(info.value).startswith(f"{path}, row 2, column 'qty'")
