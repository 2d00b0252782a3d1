"""Fixed-charge transportation problem (FCTP) instances as allocation problems.

A single-SKU network with explicit costs *is* the FCTP: suppliers are locations holding stock of
one SKU, customers are one-line orders that may not be backordered, ``unit_cost`` is c_ij and
``shipment_cost`` is the fixed charge f_ij. The file format (Glover et al. set, one number per
token) is ``m n``, then m supplies, n demands, m x n unit costs and m x n fixed costs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from allocator.errors import InputError
from allocator.model import Network, Orders

__all__ = ["fctp_tables", "read_fctp"]


def fctp_tables(path: str | Path) -> dict[str, pl.DataFrame]:
    """The contract tables (locations, stock, orders, costs) of an FCTP instance file."""
    path = Path(path)
    try:
        tokens = path.read_text().split()
        m, n = int(tokens[0]), int(tokens[1])
        values = np.asarray(tokens[2:], dtype=np.float64)
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"not an FCTP instance file: {exc}", source=str(path)) from exc
    if len(values) != m + n + 2 * m * n:
        raise InputError(
            f"expected {m + n + 2 * m * n} numbers after 'm n', found {len(values)}",
            source=str(path),
        )
    supply, demand = values[:m], values[m : m + n]
    unit = values[m + n : m + n + m * n].reshape(m, n)
    fixed = values[m + n + m * n :].reshape(m, n)
    loc_ids = [f"S{i + 1:03d}" for i in range(m)]
    order_ids = [f"C{j + 1:03d}" for j in range(n)]
    return {
        "locations": pl.DataFrame({"location_id": loc_ids}),
        "stock": pl.DataFrame(
            {"location_id": loc_ids, "sku": ["X"] * m, "on_hand": supply.astype(np.int64)}
        ),
        "orders": pl.DataFrame(
            {
                "order_id": order_ids,
                "sku": ["X"] * n,
                "qty": demand.astype(np.int64),
                "allow_backorder": [False] * n,
            }
        ),
        "costs": pl.DataFrame(
            {
                "order_id": np.tile(order_ids, m),
                "location_id": np.repeat(loc_ids, n),
                "unit_cost": unit.ravel(),
                "shipment_cost": fixed.ravel(),
            }
        ),
    }


def read_fctp(path: str | Path) -> tuple[Network, Orders]:
    """Read an FCTP instance as a network (with explicit costs) and orders."""
    t = fctp_tables(path)
    network = Network.from_frames(t["locations"], t["stock"], costs=t["costs"])
    return network, Orders.from_frame(t["orders"], source=str(path))
