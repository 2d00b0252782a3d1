"""The contract's tables: their columns, and reading them from CSV or Parquet.

The column lists here are the single source of truth for ``contract.md``'s table formats; the
README's contract section and the tests are checked against them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from allocator.errors import InputError
from allocator.io._schema import Column, check_references, validate_table

__all__ = [
    "ASSIGNMENTS",
    "COSTS",
    "ITEMS",
    "LOCATIONS",
    "ORDERS",
    "ORDER_LEVEL_COLUMNS",
    "STOCK",
    "check_order_consistency",
    "find_table",
    "read_table",
]

LOCATIONS: tuple[Column, ...] = (
    Column("location_id", "str", required=True),
    Column("kind", "str", default="warehouse", choices=("warehouse", "store", "dropship")),
    Column("lat", "float", min_value=-90.0),
    Column("lon", "float", min_value=-180.0),
    Column("country", "str"),
    Column("priority", "int", default=0),
    Column("can_ship", "bool", default=True),
    Column("can_pickup", "bool", default=False),
    Column("capacity_units", "int", min_value=0),
    Column("capacity_shipments", "int", min_value=0),
    Column("tags", "str"),
)

STOCK: tuple[Column, ...] = (
    Column("location_id", "str", required=True),
    Column("sku", "str", required=True),
    Column("on_hand", "int", required=True, min_value=0),
    Column("reserved", "int", default=0, min_value=0),
    Column("safety_stock", "int", default=0, min_value=0),
)

COSTS: tuple[Column, ...] = (
    Column("order_id", "str", required=True),
    Column("location_id", "str", required=True),
    Column("unit_cost", "float", default=0.0, min_value=0.0),
    Column("shipment_cost", "float", default=0.0, min_value=0.0),
)

ITEMS: tuple[Column, ...] = (
    Column("sku", "str", required=True),
    Column("weight", "float", min_value=0.0),
    Column("tags", "str"),
)

ORDERS: tuple[Column, ...] = (
    Column("order_id", "str", required=True),
    Column("line_id", "str"),
    Column("sku", "str", required=True),
    Column("qty", "int", required=True, strictly_positive=True),
    Column("lat", "float", min_value=-90.0),
    Column("lon", "float", min_value=-180.0),
    Column("country", "str"),
    Column("channel", "str"),
    Column("priority", "int", default=0),
    Column("created_at", "datetime"),
    Column("ship_complete", "bool", default=False),
    Column("allow_backorder", "bool", default=True),
    Column("fulfillment", "str", default="ship", choices=("ship", "pickup")),
    Column("pickup_location_id", "str"),
    # Extensions of the contract (optional; documented in the README).
    Column("customer_id", "str"),
    Column("unit_price", "float", min_value=0.0),
    Column("promised_days", "int", min_value=0),
)

#: A result folder's assignments (read back as a warm start); ``sku`` is written but not needed.
ASSIGNMENTS: tuple[Column, ...] = (
    Column("order_id", "str", required=True),
    Column("line_id", "str", required=True),
    Column("sku", "str"),
    Column("location_id", "str", required=True),
    Column("qty", "int", required=True, strictly_positive=True),
)

#: Columns that describe the order, not the line: they repeat on each line and must agree.
ORDER_LEVEL_COLUMNS: tuple[str, ...] = (
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
    "customer_id",
    "promised_days",
)


def _check_coordinates(frame: pl.DataFrame, source: str) -> None:
    for name, limit in (("lat", 90.0), ("lon", 180.0)):
        bad = frame[name].is_not_null() & (frame[name] > limit)
        if bad.any():
            row = int(bad.arg_true()[0]) + 1
            raise InputError(
                f"must be <= {limit:g} degrees, found {frame[name][row - 1]:g}",
                source=source,
                row=row,
                column=name,
            )
    half = frame["lat"].is_null() ^ frame["lon"].is_null()
    if half.any():
        row = int(half.arg_true()[0]) + 1
        raise InputError("lat and lon must be given together", source=source, row=row, column="lat")


def validate_locations(frame: pl.DataFrame, source: str = "locations") -> pl.DataFrame:
    """Validate a locations table (see ``contract.md``)."""
    out = validate_table(frame, LOCATIONS, source=source, key=("location_id",))
    _check_coordinates(out, source)
    return out


def validate_stock(
    frame: pl.DataFrame, locations: pl.DataFrame, source: str = "stock"
) -> pl.DataFrame:
    """Validate a stock table against the locations."""
    out = validate_table(frame, STOCK, source=source, key=("location_id", "sku"))
    check_references(
        out["location_id"],
        locations["location_id"],
        source=source,
        column="location_id",
        what="location",
    )
    return out


def validate_costs(
    frame: pl.DataFrame, locations: pl.DataFrame, source: str = "costs"
) -> pl.DataFrame:
    """Validate an explicit costs table against the locations (orders are checked later)."""
    out = validate_table(frame, COSTS, source=source, key=("order_id", "location_id"))
    check_references(
        out["location_id"],
        locations["location_id"],
        source=source,
        column="location_id",
        what="location",
    )
    return out


def validate_items(frame: pl.DataFrame, source: str = "items") -> pl.DataFrame:
    """Validate an items (SKU attributes) table."""
    return validate_table(frame, ITEMS, source=source, key=("sku",))


def check_order_consistency(frame: pl.DataFrame, source: str) -> None:
    """Raise if an order-level column differs between the lines of one order."""
    first = frame.group_by("order_id", maintain_order=True).first()
    joined = frame.select("order_id", *ORDER_LEVEL_COLUMNS).join(
        first.select("order_id", *ORDER_LEVEL_COLUMNS),
        on="order_id",
        how="left",
        suffix="__first",
        maintain_order="left",
    )
    for name in ORDER_LEVEL_COLUMNS:
        bad = joined.select(
            pl.col(name).ne_missing(pl.col(f"{name}__first")).alias("bad")
        ).to_series()
        if bad.any():
            row = int(bad.arg_true()[0]) + 1
            order_id = joined["order_id"][row - 1]
            raise InputError(
                f"order {order_id!r} has lines that disagree on the order-level column "
                f"'{name}' ({joined[f'{name}__first'][row - 1]!r} vs {joined[name][row - 1]!r})",
                source=source,
                row=row,
                column=name,
            )


def validate_orders(frame: pl.DataFrame, source: str = "orders") -> pl.DataFrame:
    """Validate an orders table (one row per order line)."""
    out = validate_table(frame, ORDERS, source=source)
    _check_coordinates(out, source)
    # line_id defaults to the row number within the order (1, 2, ...).
    if out["line_id"].null_count():
        numbered = out.select(
            pl.int_range(1, pl.len() + 1).over("order_id").cast(pl.String).alias("n")
        ).to_series()
        out = out.with_columns(pl.col("line_id").fill_null(numbered))
    dup = out.select(~pl.struct("order_id", "line_id").is_first_distinct()).to_series()
    if dup.any():
        row = int(dup.arg_true()[0]) + 1
        raise InputError(
            f"duplicate line {out['line_id'][row - 1]!r} in order {out['order_id'][row - 1]!r}",
            source=source,
            row=row,
            column="line_id",
        )
    check_order_consistency(out, source)
    missing_pickup = (out["fulfillment"] == "pickup") & out["pickup_location_id"].is_null()
    if missing_pickup.any():
        row = int(missing_pickup.arg_true()[0]) + 1
        raise InputError(
            "a pickup order needs a pickup_location_id",
            source=source,
            row=row,
            column="pickup_location_id",
        )
    return out


def find_table(folder: Path, stem: str, *, required: bool) -> Path | None:
    """Find ``folder/stem.csv`` or ``folder/stem.parquet``."""
    hits = [p for p in (folder / f"{stem}.csv", folder / f"{stem}.parquet") if p.exists()]
    if len(hits) > 1:
        raise InputError(f"both {stem}.csv and {stem}.parquet exist; keep one", source=str(folder))
    if not hits:
        if required:
            raise InputError(f"missing table {stem}.csv (or {stem}.parquet)", source=str(folder))
        return None
    return hits[0]


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV (all columns as text, cast later) or Parquet file.

    Raises
    ------
    InputError
        If the file is missing, empty, unreadable, or has an unsupported suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(
            f"unsupported file type {suffix!r}; use .csv or .parquet", source=str(path)
        )
    if not path.exists():
        raise InputError("file not found", source=str(path))
    try:
        if suffix == ".csv":
            if path.stat().st_size == 0:
                raise InputError("the file is empty", source=str(path))
            return pl.read_csv(path, infer_schema=False)
        if suffix == ".parquet":
            return pl.read_parquet(path)
    except InputError:
        raise
    except Exception as exc:  # polars raises several types for malformed files
        raise InputError(f"cannot read the file: {exc}", source=str(path)) from exc
    raise InputError(f"unsupported file type {suffix!r}; use .csv or .parquet", source=str(path))
