"""Builders for small hand-made instances."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from allocator import Network, Orders, compile_problem
from allocator.allocate import _resolve_rules
from allocator.plan import Plan, check_feasible
from allocator.policies import run_greedy
from allocator.rules.schema import RuleSet

LOCATION_DEFAULTS: dict[str, object] = {
    "kind": "warehouse",
    "lat": None,
    "lon": None,
    "country": "US",
    "priority": 0,
    "can_ship": True,
    "can_pickup": False,
    "capacity_units": None,
    "capacity_shipments": None,
    "tags": None,
}

ORDER_DEFAULTS: dict[str, object] = {
    "lat": 40.0,
    "lon": -75.0,
    "country": "US",
    "channel": "web",
    "priority": 0,
    "ship_complete": False,
    "allow_backorder": True,
    "fulfillment": "ship",
    "pickup_location_id": None,
}


def network(
    locations: list[dict[str, object]],
    stock: dict[tuple[str, str], int | tuple[int, int, int]],
    items: list[dict[str, object]] | None = None,
) -> Network:
    """Locations as dicts (defaults above); stock as {(location, sku): on_hand or
    (on_hand, reserved, safety_stock)}."""
    locs = [{**LOCATION_DEFAULTS, **loc} for loc in locations]
    frame = pl.DataFrame(
        locs,
        schema_overrides={
            "lat": pl.Float64,
            "lon": pl.Float64,
            "capacity_units": pl.Int64,
            "capacity_shipments": pl.Int64,
            "tags": pl.String,
        },
    )
    rows = []
    for (loc, sku), v in stock.items():
        on_hand, reserved, safety = (v, 0, 0) if isinstance(v, int) else v
        rows.append(
            {
                "location_id": loc,
                "sku": sku,
                "on_hand": on_hand,
                "reserved": reserved,
                "safety_stock": safety,
            }
        )
    item_frame = (
        pl.DataFrame(items, schema_overrides={"weight": pl.Float64, "tags": pl.String})
        if items
        else None
    )
    return Network.from_frames(frame, pl.DataFrame(rows), items=item_frame)


def orders(*specs: dict[str, object]) -> Orders:
    """Each spec: order-level fields plus ``lines`` = [(sku, qty), ...]; created_at follows the
    argument order unless given."""
    rows = []
    t0 = datetime(2025, 3, 3, 9)
    for i, spec in enumerate(specs):
        spec = dict(spec)
        lines = spec.pop("lines")
        head = {**ORDER_DEFAULTS, "created_at": t0 + timedelta(minutes=i), **spec}
        for j, (sku, qty) in enumerate(lines):  # type: ignore[attr-defined]
            rows.append({**head, "line_id": str(j + 1), "sku": sku, "qty": qty})
    return Orders.from_frame(
        pl.DataFrame(rows, schema_overrides={"channel": pl.String, "pickup_location_id": pl.String})
    )


def run(net: Network, batch: Orders, policy: str | RuleSet) -> Plan:
    rules = policy if isinstance(policy, RuleSet) else _resolve_rules(None, policy)
    problem = compile_problem(net, batch, rules)
    plan = run_greedy(problem)
    assert check_feasible(problem, plan.solution) == []
    return plan


def shipped(plan: Plan) -> dict[str, list[tuple[str, str, int]]]:
    """order -> sorted (sku, location, qty)."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    for r in plan.assignments.sort(["order_id", "sku", "location_id"]).iter_rows(named=True):
        out.setdefault(r["order_id"], []).append((r["sku"], r["location_id"], r["qty"]))
    return out


def backordered(plan: Plan) -> dict[str, int]:
    b = plan.backorders.group_by("order_id").agg(pl.col("qty").sum())
    return dict(zip(b["order_id"].to_list(), b["qty"].to_list(), strict=True))


def rejected(plan: Plan) -> list[str]:
    return sorted(plan.rejections["order_id"].to_list())
