"""The command line, end to end, as a batch job would call it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from allocator.cli import main


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    net = tmp_path / "net"
    net.mkdir()
    pl.DataFrame(
        {
            "location_id": ["NYC", "LA"],
            "lat": [40.71, 34.05],
            "lon": [-74.0, -118.24],
            "country": ["US", "US"],
        }
    ).write_csv(net / "locations.csv")
    pl.DataFrame(
        {"location_id": ["NYC", "LA", "LA"], "sku": ["mug", "mug", "cap"], "on_hand": [1, 5, 2]}
    ).write_csv(net / "stock.csv")
    orders = tmp_path / "orders.csv"
    pl.DataFrame(
        {
            "order_id": ["o1", "o1", "o2", "o3"],
            "sku": ["mug", "cap", "mug", "cap"],
            "qty": [1, 1, 2, 5],
            "lat": [40.7, 40.7, 40.6, 34.0],
            "lon": [-73.9, -73.9, -74.1, -118.0],
            "allow_backorder": [True, True, True, False],
        }
    ).write_csv(orders)
    return net, orders


def test_allocate_writes_contract_files(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, orders = inputs
    out = tmp_path / "out"
    code = main(["allocate", "--network", str(net), "--orders", str(orders), "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.csv",
        "backorders.csv",
        "rejections.csv",
        "summary.json",
    ]
    assignments = pl.read_csv(out / "assignments.csv", schema_overrides={"line_id": pl.String})
    assert assignments.columns == ["order_id", "line_id", "sku", "location_id", "qty"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {
        "status",
        "policy",
        "orders",
        "lines",
        "units",
        "units_assigned",
        "units_backordered",
        "orders_rejected",
        "shipments",
        "split_orders",
        "cost",
        "lower_bound",
        "gap",
        "seconds",
    }
    assert set(summary["cost"]) >= {"total", "unit", "shipment", "backorder"}
    assert summary["status"] == "optimal"
    assert summary["orders_rejected"] == 1  # o3 wants 5 caps, 2 exist, no backorders allowed
    assert pl.read_csv(out / "rejections.csv")["order_id"].to_list() == ["o3"]
    assert summary["units"] == summary["units_assigned"] + summary["units_backordered"] + 5
    assert "optimal" in capsys.readouterr().out


def test_allocate_parquet_in_parquet_out(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    net, orders = inputs
    pq = tmp_path / "orders.parquet"
    pl.read_csv(orders).write_parquet(pq)
    out = tmp_path / "out"
    assert (
        main(["allocate", "--network", str(net), "--orders", str(pq), "--out", str(out), "--json"])
        == 0
    )
    assert (out / "assignments.parquet").exists()
    assert pl.read_parquet(out / "assignments.parquet")["qty"].dtype == pl.Int64


def test_greedy_policy_and_time_limit(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    net, orders = inputs
    out = tmp_path / "g"
    assert (
        main(
            [
                "allocate",
                "--network",
                str(net),
                "--orders",
                str(orders),
                "--policy",
                "greedy",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["status"] == "heuristic"
    out = tmp_path / "t"
    assert (
        main(
            [
                "allocate",
                "--network",
                str(net),
                "--orders",
                str(orders),
                "--time-limit",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda net, orders: orders.write_text("order_id,sku,qty\no1,mug,-1\n"),
            "row 1, column 'qty'",
        ),
        (lambda net, orders: orders.write_text("order_id,sku,qty\no1,mug,1.5\n"), "whole number"),
        (lambda net, orders: orders.write_text(""), "empty"),
        (
            lambda net, orders: (net / "stock.csv").write_text(
                "location_id,sku,on_hand\nNYC,mug,1\nNYC,mug,2\n"
            ),
            "duplicate key",
        ),
        (
            lambda net, orders: (net / "stock.csv").write_text(
                "location_id,sku,on_hand\nMARS,mug,1\n"
            ),
            "unknown location 'MARS'",
        ),
        (
            lambda net, orders: (net / "costs.csv").write_text(
                "order_id,location_id,unit_cost,shipment_cost\no1,NYC,nan,1\n"
            ),
            "finite",
        ),
        (
            lambda net, orders: (net / "costs.csv").write_text(
                "order_id,location_id,unit_cost,shipment_cost\no1,NYC,1,-2\n"
            ),
            ">= 0",
        ),
        (
            lambda net, orders: orders.write_text(
                "order_id,sku,qty,priority\no1,mug,1,0\no1,cap,1,3\n"
            ),
            "disagree",
        ),
        (
            lambda net, orders: orders.write_text(
                "order_id,sku,qty,fulfillment\no1,mug,1,pickup\n"
            ),
            "pickup_location_id",
        ),
        (
            lambda net, orders: orders.write_text("order_id,sku,qty\no1,mug,lots\n"),
            "expected a number",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    inputs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate,
    message: str,
) -> None:
    net, orders = inputs
    mutate(net, orders)
    out = tmp_path / "out"
    code = main(["allocate", "--network", str(net), "--orders", str(orders), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("allocator: error:")
    assert not out.exists()


def test_validate(inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    net, orders = inputs
    assert main(["validate", "--network", str(net), "--orders", str(orders)]) == 0
    assert "ok:" in capsys.readouterr().out
    orders.write_text("order_id,sku\no1,mug\n")
    assert main(["validate", "--network", str(net), "--orders", str(orders)]) == 2
    assert "required column is missing" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["allocate"]) == 2
    assert main(["no-such-command"]) == 2
    assert (
        main(
            ["allocate", "--network", "x", "--orders", "y.csv", "--out", "o", "--time-limit", "-1"]
        )
        == 2
    )


def test_unknown_column_is_a_warning_not_an_error(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, orders = inputs
    pl.read_csv(orders).with_columns(pl.lit("x").alias("colour")).write_csv(orders)
    assert (
        main(
            [
                "allocate",
                "--network",
                str(net),
                "--orders",
                str(orders),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert "ignoring unknown column(s) colour" in capsys.readouterr().err
