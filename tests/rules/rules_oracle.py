"""An independent, loop-based check of a plan against a rule set (small instances only).

It re-reads the rules from the input tables with plain Python, so a bug in the vectorised
compiler cannot hide behind itself.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import polars as pl

from allocator import Network, Orders
from allocator.costs import haversine_km
from allocator.rules.schema import LocationSelector, OrderSelector, RuleSet, SkuSelector


def _tags(value: str | None) -> set[str]:
    return {t for t in (value or "").split(";") if t}


def loc_matches(sel: LocationSelector, loc: dict[str, object]) -> bool:
    if sel.location_id and loc["location_id"] not in sel.location_id:
        return False
    if sel.kind and loc["kind"] not in sel.kind:
        return False
    if sel.country and loc["country"] not in sel.country:
        return False
    return not (sel.tags and not (_tags(loc["tags"]) & set(sel.tags)))  # type: ignore[arg-type]


def sku_matches(sel: SkuSelector, sku: str, items: dict[str, dict[str, object]]) -> bool:
    item = items.get(sku, {})
    if sel.sku and sku not in sel.sku:
        return False
    if sel.sku_tags and not (_tags(item.get("tags")) & set(sel.sku_tags)):  # type: ignore[arg-type]
        return False
    w = item.get("weight")
    if sel.weight_min is not None and (w is None or w < sel.weight_min):  # type: ignore[operator]
        return False
    return not (sel.weight_max is not None and (w is None or w > sel.weight_max))  # type: ignore[operator]


def order_matches(sel: OrderSelector, order: dict[str, object]) -> bool:
    if sel.channel and order["channel"] not in sel.channel:
        return False
    if sel.country and order["country"] not in sel.country:
        return False
    p = int(order["priority"])  # type: ignore[call-overload]
    if sel.priority_min is not None and p < sel.priority_min:
        return False
    if sel.priority_max is not None and p > sel.priority_max:
        return False
    return not (sel.fulfillment is not None and order["fulfillment"] != sel.fulfillment)


def _amount(units: int | None, share: float | None, base: int, up: bool) -> int:
    if units is not None:
        return units
    assert share is not None
    raw = share * base
    return math.ceil(raw - 1e-9) if up else math.floor(raw + 1e-9)


def violations(
    network: Network, orders: Orders, rules: RuleSet, assignments: pl.DataFrame
) -> list[str]:
    """Every rule the assignments break, as sentences."""
    out: list[str] = []
    locs = {r["location_id"]: r for r in network.locations.to_dicts()}
    items = {r["sku"]: r for r in network.items.to_dicts()} if network.items is not None else {}
    heads = {r["order_id"]: r for r in orders.lines.unique("order_id", keep="first").to_dicts()}
    cons = rules.constraints

    # Eligibility.
    for row in assignments.to_dicts():
        o, loc = heads[row["order_id"]], locs[row["location_id"]]
        pickup = o["pickup_location_id"]
        if pickup is not None and loc["location_id"] != pickup:
            if not cons.pickup.allow_transfers:
                out.append(f"pickup order {o['order_id']} served from {loc['location_id']}")
            elif not loc["can_ship"] or not loc_matches(cons.pickup.transfer_from, loc):
                out.append(f"transfer from {loc['location_id']} not allowed")
        if pickup is None and not loc["can_ship"]:
            out.append(f"{loc['location_id']} cannot ship")
        dest = locs[pickup] if pickup is not None and locs[pickup]["lat"] is not None else o
        for rule in rules.eligibility:
            if not rule.enabled or not order_matches(rule.when, o):
                continue
            if not sku_matches(rule.when, row["sku"], items):
                continue
            bad = False
            if rule.exclude is not None:
                bad = loc_matches(rule.exclude, loc)
            elif rule.only is not None:
                bad = not loc_matches(rule.only, loc)
            elif rule.same_country:
                bad = None not in (o["country"], loc["country"]) and o["country"] != loc["country"]
            elif None not in (dest["lat"], loc["lat"]):
                d = float(
                    haversine_km(
                        np.array([dest["lat"]]),
                        np.array([dest["lon"]]),
                        np.array([loc["lat"]]),
                        np.array([loc["lon"]]),
                    )[0]
                )
                bad = d > rule.max_distance_km  # type: ignore[operator]
            if bad:
                out.append(f"{row['order_id']} uses {loc['location_id']} excluded by {rule.name}")

    # Split caps.
    per_order = assignments.group_by("order_id").agg(pl.col("location_id").n_unique().alias("n"))
    for r in per_order.to_dicts():
        o = heads[r["order_id"]]
        cap = cons.max_locations_by_channel.get(o["channel"], cons.max_locations_per_order)  # type: ignore[arg-type]
        if cap is not None and r["n"] > cap:
            out.append(f"{r['order_id']} ships from {r['n']} locations, cap {cap}")

    # Stock: ATP after safety stock and exposure, ring-fences and channel exposure.
    used: dict[tuple[str, str], list[tuple[object, int]]] = defaultdict(list)
    for row in assignments.to_dicts():
        used[(row["location_id"], row["sku"])].append(
            (heads[row["order_id"]]["channel"], row["qty"])
        )
    policy = rules.stock
    for s in network.stock.to_dicts():
        key = (s["location_id"], s["sku"])
        loc = locs[s["location_id"]]
        atp = max(0, s["on_hand"] - s["reserved"] - s["safety_stock"])
        extra = 0
        for rule in policy.safety_stock:
            if (
                rule.enabled
                and loc_matches(rule.where, loc)
                and sku_matches(rule.skus, s["sku"], items)
            ):
                extra = max(extra, _amount(rule.units, rule.share, atp, True))
        atp = max(0, atp - extra)
        for rule in policy.exposure:
            if (
                rule.enabled
                and not rule.channels
                and loc_matches(rule.where, loc)
                and sku_matches(rule.skus, s["sku"], items)
            ):
                atp = min(atp, _amount(rule.units, rule.share, atp, False))
        rows = used.get(key, [])
        total = sum(q for _, q in rows)
        if total > atp:
            out.append(f"{key} ships {total} > ATP {atp}")
        fences: dict[str, int] = {}
        for rule in policy.ring_fence:
            if (
                rule.enabled
                and loc_matches(rule.where, loc)
                and sku_matches(rule.skus, s["sku"], items)
            ):
                fences[rule.channel] = max(
                    fences.get(rule.channel, 0),
                    min(atp, _amount(rule.units, rule.share, atp, True)),
                )
        for channel, reserve in fences.items():
            others = sum(q for c, q in rows if c != channel)
            if others > atp - reserve:
                out.append(
                    f"{key}: {others} units to other channels than {channel}, fence leaves {atp - reserve}"
                )
        if len(fences) > 1:
            none = sum(q for c, q in rows if c not in fences)
            if none > max(0, atp - sum(fences.values())):
                out.append(f"{key}: unfenced channels exceed what the fences leave")
        for rule in policy.exposure:
            if (
                rule.enabled
                and rule.channels
                and loc_matches(rule.where, loc)
                and sku_matches(rule.skus, s["sku"], items)
            ):
                exposed = min(atp, _amount(rule.units, rule.share, atp, False))
                inside = sum(q for c, q in rows if c in rule.channels)
                if inside > exposed:
                    out.append(f"{key}: {inside} units to {rule.channels}, exposure {exposed}")

    # Capacities.
    units = assignments.group_by("location_id").agg(pl.col("qty").sum())
    ships = assignments.unique(["order_id", "location_id"]).group_by("location_id").len()
    for name, frame, column, value in (
        ("units", units, "capacity_units", "qty"),
        ("shipments", ships, "capacity_shipments", "len"),
    ):
        for r in frame.to_dicts():
            loc = locs[r["location_id"]]
            cap = loc[column]
            for override in cons.capacity:
                setting = getattr(override, name)
                if setting is not None and loc_matches(override.where, loc):
                    cap = None if setting < 0 else setting
            if not cons.respect_capacity:
                cap = None
            if cap is not None and r[value] > cap:
                out.append(f"{r['location_id']} {name} {r[value]} > capacity {cap}")
    return out
