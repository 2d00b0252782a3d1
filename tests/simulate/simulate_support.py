"""Small histories for the simulation tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

import polars as pl

from allocator import Network, Orders
from allocator.generate import generate

T0 = datetime(2025, 3, 3)


@lru_cache(maxsize=8)
def generated(
    n_orders: int = 120, n_locations: int = 8, n_skus: int = 30, seed: int = 1, days: int = 3
) -> tuple[Network, Orders]:
    """A generated history (cached: the frames are immutable)."""
    inst = generate(n_orders, n_locations, n_skus, seed=seed, days=days)
    return Network.from_frames(inst.locations, inst.stock), Orders.from_frame(inst.orders)


def tiny_network(
    stock: dict[tuple[str, str], int],
    *,
    locations: tuple[tuple[str, float, float], ...] = (("L1", 40.7, -74.0), ("L2", 34.1, -118.2)),
    capacity_shipments: dict[str, int] | None = None,
) -> Network:
    """Locations at the given points and stock ``{(location, sku): units}``."""
    caps = capacity_shipments or {}
    locs = pl.DataFrame(
        {
            "location_id": [loc for loc, _, _ in locations],
            "lat": [lat for _, lat, _ in locations],
            "lon": [lon for _, _, lon in locations],
            "capacity_shipments": [caps.get(loc) for loc, _, _ in locations],
        },
        schema_overrides={"capacity_shipments": pl.Int64},
    )
    rows = [{"location_id": loc, "sku": sku, "on_hand": qty} for (loc, sku), qty in stock.items()]
    return Network.from_frames(locs, pl.DataFrame(rows))


def tiny_orders(
    rows: list[tuple[str, str, int, float]], lat: float = 40.6, lon: float = -73.9
) -> Orders:
    """Orders ``(order_id, sku, qty, hours after T0)``, all shipped to one point."""
    return Orders.from_frame(
        pl.DataFrame(
            {
                "order_id": [o for o, _, _, _ in rows],
                "sku": [s for _, s, _, _ in rows],
                "qty": [q for _, _, q, _ in rows],
                "lat": [lat] * len(rows),
                "lon": [lon] * len(rows),
                "created_at": [T0 + timedelta(hours=h) for _, _, _, h in rows],
            }
        )
    )
