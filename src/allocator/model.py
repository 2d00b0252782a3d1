"""Typed boundary objects: locations, stock, orders, and the validated tables behind them.

Two layers, as the design card asks. At the boundary, frozen pydantic models describe one
location, one stock level or one order, for developers who build problems in code. In the batch
path, :class:`Network` and :class:`Orders` hold validated polars frames in the contract's schema;
they are what the compiler turns into the array form (:mod:`allocator.problem`). Both layers meet
in the same validators, so an error reads the same wherever the data came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from allocator.errors import InputError
from allocator.io._schema import check_references, validate_table
from allocator.io.tables import (
    ASSIGNMENTS,
    COSTS,
    ITEMS,
    LOCATIONS,
    ORDERS,
    STOCK,
    find_table,
    read_table,
    validate_costs,
    validate_items,
    validate_locations,
    validate_orders,
    validate_stock,
)

__all__ = [
    "Location",
    "Network",
    "Order",
    "OrderLine",
    "Orders",
    "StockLevel",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Location(_Frozen):
    """A fulfilment location: a warehouse, a store or a drop-ship partner."""

    location_id: str = Field(min_length=1)
    kind: Literal["warehouse", "store", "dropship"] = "warehouse"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    country: str | None = None
    priority: int = 0
    can_ship: bool = True
    can_pickup: bool = False
    capacity_units: int | None = Field(default=None, ge=0)
    capacity_shipments: int | None = Field(default=None, ge=0)
    tags: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


class StockLevel(_Frozen):
    """Units of one SKU at one location."""

    location_id: str = Field(min_length=1)
    sku: str = Field(min_length=1)
    on_hand: int = Field(ge=0)
    reserved: int = Field(default=0, ge=0)
    safety_stock: int = Field(default=0, ge=0)


class OrderLine(_Frozen):
    """One line of an order."""

    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)
    line_id: str | None = None
    unit_price: float | None = Field(default=None, ge=0)


class Order(_Frozen):
    """A customer order with its lines and order-level attributes."""

    order_id: str = Field(min_length=1)
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    country: str | None = None
    channel: str | None = None
    priority: int = 0
    created_at: datetime | None = None
    ship_complete: bool = False
    allow_backorder: bool = True
    fulfillment: Literal["ship", "pickup"] = "ship"
    pickup_location_id: str | None = None
    customer_id: str | None = None
    promised_days: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Order:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        if self.fulfillment == "pickup" and not self.pickup_location_id:
            raise ValueError("a pickup order needs a pickup_location_id")
        return self

    def rows(self) -> list[dict[str, object]]:
        """The order as rows of the contract's orders table."""
        head = self.model_dump(exclude={"lines"})
        return [
            {
                **head,
                "line_id": line.line_id if line.line_id is not None else str(i + 1),
                "sku": line.sku,
                "qty": line.qty,
                "unit_price": line.unit_price,
            }
            for i, line in enumerate(self.lines)
        ]


def _frame(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame({c: [r.get(c) for r in rows] for c in columns}, strict=False)


@dataclass(frozen=True, slots=True)
class Network:
    """Validated network tables: locations, stock, and optional explicit costs and items.

    Build one with :meth:`from_frames`, :meth:`from_models` or :func:`read_network`; the frames
    then have exactly the contract's columns and types.
    """

    locations: pl.DataFrame
    stock: pl.DataFrame
    costs: pl.DataFrame | None = None
    items: pl.DataFrame | None = None

    @classmethod
    def from_frames(
        cls,
        locations: pl.DataFrame,
        stock: pl.DataFrame,
        costs: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
        *,
        sources: dict[str, str] | None = None,
    ) -> Network:
        """Validate polars frames in the contract's schema.

        Parameters
        ----------
        locations, stock, costs, items
            Tables as in ``contract.md`` (costs and items are optional).
        sources
            Names used in error messages per table (file paths when read from disk).

        Raises
        ------
        InputError
            Naming the table, row and column of the first problem.
        """
        src = {"locations": "locations", "stock": "stock", "costs": "costs", "items": "items"}
        src.update(sources or {})
        locs = validate_locations(locations, src["locations"])
        stk = validate_stock(stock, locs, src["stock"])
        cst = validate_costs(costs, locs, src["costs"]) if costs is not None else None
        itm = validate_items(items, src["items"]) if items is not None else None
        if itm is not None:
            check_references(stk["sku"], itm["sku"], source=src["stock"], column="sku", what="sku")
        return cls(locations=locs, stock=stk, costs=cst, items=itm)

    @classmethod
    def from_models(
        cls,
        locations: Iterable[Location],
        stock: Iterable[StockLevel],
    ) -> Network:
        """Build a network from pydantic objects."""
        loc_rows = []
        for loc in locations:
            row = loc.model_dump()
            row["tags"] = ";".join(loc.tags) if loc.tags else None
            loc_rows.append(row)
        stock_rows = [s.model_dump() for s in stock]
        if not loc_rows:
            raise InputError("a network needs at least one location", source="locations")
        if not stock_rows:
            raise InputError("a network needs at least one stock row", source="stock")
        return cls.from_frames(
            _frame(loc_rows, [c.name for c in LOCATIONS]),
            _frame(stock_rows, [c.name for c in STOCK]),
        )

    def with_stock(self, stock: pl.DataFrame) -> Network:
        """The same network with another stock table (for example a ledger snapshot)."""
        return Network.from_frames(self.locations, stock, self.costs, self.items)


@dataclass(frozen=True, slots=True)
class Orders:
    """A validated orders table: one row per order line, in the contract's schema."""

    lines: pl.DataFrame

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, source: str = "orders") -> Orders:
        """Validate a polars frame of order lines."""
        return cls(validate_orders(frame, source))

    @classmethod
    def from_models(cls, orders: Iterable[Order]) -> Orders:
        """Build from pydantic :class:`Order` objects."""
        rows = [row for order in orders for row in order.rows()]
        if not rows:
            raise InputError("no orders given", source="orders")
        return cls.from_frame(_frame(rows, [c.name for c in ORDERS]))

    @property
    def n_orders(self) -> int:
        return int(self.lines["order_id"].n_unique())

    @property
    def n_lines(self) -> int:
        return self.lines.height

    def order_ids(self) -> list[str]:
        """Order ids in first-appearance order."""
        return list(self.lines["order_id"].unique(maintain_order=True))

    def select(self, order_ids: Iterable[str]) -> Orders:
        """The subset of orders with the given ids (already validated)."""
        ids = pl.Series(list(order_ids), dtype=pl.String)
        return Orders(self.lines.filter(pl.col("order_id").is_in(ids.implode())))


def read_network(folder: str | Path) -> Network:
    """Read and validate a network folder (``locations``, ``stock``, optional ``costs``/``items``).

    Raises
    ------
    InputError
        If a table is missing or bad; the message names the file, row and column.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("network folder not found", source=str(folder))
    paths = {
        stem: find_table(folder, stem, required=stem in ("locations", "stock"))
        for stem in ("locations", "stock", "costs", "items")
    }
    frames = {stem: read_table(p) if p is not None else None for stem, p in paths.items()}
    locations, stock = frames["locations"], frames["stock"]
    assert locations is not None
    assert stock is not None
    return Network.from_frames(
        locations,
        stock,
        frames["costs"],
        frames["items"],
        sources={stem: str(p) for stem, p in paths.items() if p is not None},
    )


def read_orders(path: str | Path) -> Orders:
    """Read and validate an orders file (CSV or Parquet)."""
    return Orders.from_frame(read_table(path), source=str(path))


def read_assignments(path: str | Path) -> pl.DataFrame:
    """Read a previous plan's assignments, to re-optimise from (``warm_start=``).

    Parameters
    ----------
    path
        A result folder written by :meth:`Plan.write` or ``allocator allocate --out`` (its
        ``assignments.csv`` or ``assignments.parquet`` is read), or an assignments file itself.

    Returns
    -------
    polars.DataFrame
        ``order_id``, ``line_id``, ``sku``, ``location_id``, ``qty``: one row per (line,
        location), as the contract's result folder has them.

    Raises
    ------
    InputError
        If the folder or file is missing, or a row is bad (a missing id, a quantity that is not
        a positive whole number, a (order, line, location) given twice); the message names the
        file, row and column.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such result folder or assignments file", source=str(path))
    if path.is_dir():
        found = find_table(path, "assignments", required=True)
        assert found is not None
        path = found
    return validate_table(
        read_table(path),
        ASSIGNMENTS,
        source=str(path),
        key=("order_id", "line_id", "location_id"),
    )


def check_orders_against_network(orders: Orders, network: Network, source: str = "orders") -> None:
    """Cross-table checks: pickup locations exist and can hand over; costs name known orders.

    Raises
    ------
    InputError
        Naming the table, row and column of the first bad reference.
    """
    lines = orders.lines
    check_references(
        lines["pickup_location_id"],
        network.locations["location_id"],
        source=source,
        column="pickup_location_id",
        what="location",
    )
    pickup_ok = network.locations.filter(pl.col("can_pickup"))["location_id"]
    bad = lines["pickup_location_id"].is_not_null() & ~lines["pickup_location_id"].is_in(
        pickup_ok.implode()
    )
    if bad.any():
        row = int(bad.arg_true()[0]) + 1
        raise InputError(
            f"location {lines['pickup_location_id'][row - 1]!r} cannot hand over pickup orders "
            "(can_pickup is false)",
            source=source,
            row=row,
            column="pickup_location_id",
        )
    if network.items is not None:
        check_references(
            lines["sku"], network.items["sku"], source=source, column="sku", what="sku"
        )
    if network.costs is not None:
        check_references(
            network.costs["order_id"],
            lines["order_id"],
            source="costs",
            column="order_id",
            what="order",
        )


__all__ += [
    "COSTS",
    "ITEMS",
    "check_orders_against_network",
    "read_assignments",
    "read_network",
    "read_orders",
]
