"""``allocator simulate`` and the charts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from simulate_support import generated

from allocator.cli import main
from allocator.generate import generate, write
from allocator.simulate import compare
from allocator.simulate.plots import (
    backorder_chart,
    cost_chart,
    flow_map,
    save_chart,
    split_rate_chart,
)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("history")
    write(generate(150, 8, 40, seed=7, days=3), folder)
    return folder


def test_acceptance_command_writes_the_table_and_charts(
    instance: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "simulate",
            "--network",
            str(instance),
            "--orders",
            str(instance / "orders.csv"),
            "--policies",
            "optimize,shopify_default,saleor_high_stock",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    kpis = pl.read_csv(out / "kpis.csv")
    assert kpis["policy"].to_list() == ["optimize", "shopify_default", "saleor_high_stock"]
    cost = dict(kpis.select("policy", "cost_per_order").iter_rows())
    assert cost["optimize"] <= min(cost["shopify_default"], cost["saleor_high_stock"])
    for name in ("cost_per_order", "split_rate", "backorders", "flows"):
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
        assert len(png) > 5_000
    report = (out / "report.html").read_text()
    assert "<svg" in report
    assert "shopify_default" in report
    daily = pl.read_csv(out / "daily.csv")
    assert set(daily["policy"]) == set(cost)
    assert (out / "by_channel.csv").exists()
    assert (out / "by_location.csv").exists()
    assert "optimize" in capsys.readouterr().out


def test_time_modes_inbound_and_workers(instance: Path, tmp_path: Path) -> None:
    inbound = tmp_path / "inbound.csv"
    pl.DataFrame(
        {"location_id": ["L001"], "sku": ["SKU00001"], "qty": [50], "eta": ["2025-03-04"]}
    ).write_csv(inbound)
    out = tmp_path / "out"
    code = main(
        [
            "simulate",
            "--network",
            str(instance),
            "--orders",
            str(instance / "orders.csv"),
            "--policies",
            "optimize,greedy",
            "--out",
            str(out),
            "--mode",
            "batch",
            "--batch-minutes",
            "120",
            "--inbound",
            str(inbound),
            "--cancel-rate",
            "0.1",
            "--ledger",
            "none",
            "--no-charts",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    kpis = pl.read_csv(out / "kpis.csv")
    assert kpis["mode"].to_list() == ["batch", "batch"]
    assert not (out / "report.html").exists()


def test_bad_input_exits_2(
    instance: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--network", str(instance), "--orders", str(instance / "orders.csv")]
    out = ["--out", str(tmp_path / "out")]
    assert main([*args, "--policies", "nonsense", *out]) == 2
    assert "unknown policy" in capsys.readouterr().err
    assert main([*args, "--policies", "optimize", "--cancel-rate", "2", *out]) == 2
    assert main([*args, "--policies", "optimize", "--time-limit", "0", *out]) == 2
    assert main([*args, "--policies", ",", *out]) == 2
    assert not (tmp_path / "out").exists()


def test_charts_render_as_svg(tmp_path: Path) -> None:
    network, orders = generated()
    comparison = compare(["optimize", "magento_priority"], network, orders, ledger=None)
    daily = comparison.by_day()
    for chart, name in (
        (cost_chart(comparison.kpis), "cost"),
        (split_rate_chart(daily), "split"),
        (backorder_chart(daily), "backorders"),
        (flow_map(comparison.flows()), "flows"),
    ):
        path = save_chart(chart, tmp_path / f"{name}.svg")
        assert path.read_text().lstrip().startswith("<svg")
