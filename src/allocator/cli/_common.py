"""Helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

from allocator.errors import InputError
from allocator.plan import Plan, Summary

__all__ = ["add_input_args", "output_format", "print_summary", "write_plan"]


def add_input_args(parser: argparse.ArgumentParser, *, rules: bool = True) -> None:
    parser.add_argument("--network", required=True, metavar="DIR", help="network folder")
    parser.add_argument("--orders", required=True, metavar="FILE", help="orders CSV or Parquet")
    if rules:
        parser.add_argument("--rules", metavar="FILE", help="rule file (TOML)")


def output_format(orders_path: str, requested: str | None) -> Literal["csv", "parquet"]:
    """The result format: as asked, else the orders file's suffix."""
    if requested is not None:
        if requested not in ("csv", "parquet"):
            raise InputError(f"unknown format {requested!r}; use csv or parquet", source="--format")
        return "csv" if requested == "csv" else "parquet"
    return "parquet" if Path(orders_path).suffix.lower() == ".parquet" else "csv"


def write_plan(plan: Plan, out: str, fmt: Literal["csv", "parquet"]) -> None:
    plan.write(out, fmt)


def print_summary(summary: Summary, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(summary.model_dump(mode="json"), indent=2))
        return
    c = summary.cost
    gap = "n/a" if summary.gap is None else f"{summary.gap:.4%}"
    bound = "n/a" if summary.lower_bound is None else f"{summary.lower_bound:,.2f}"
    lines = [
        f"policy {summary.policy}: {summary.status} in {summary.seconds:.2f}s",
        f"  orders {summary.orders:,}  lines {summary.lines:,}  units {summary.units:,}",
        f"  assigned {summary.units_assigned:,}  backordered {summary.units_backordered:,}  "
        f"rejected orders {summary.orders_rejected:,}",
        f"  shipments {summary.shipments:,}  split orders {summary.split_orders:,}",
        f"  cost {c.total:,.2f} (unit {c.unit:,.2f}, shipment {c.shipment:,.2f}, "
        f"backorder {c.backorder:,.2f}, rejection {c.rejection:,.2f})",
        f"  lower bound {bound}  gap {gap}",
    ]
    if summary.changes is not None:
        lines.append(f"  new parcels against the warm start {summary.changes:,}")
    sys.stdout.write("\n".join(lines) + "\n")
