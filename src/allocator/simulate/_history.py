"""The history a simulation replays: orders in arrival order, and the exogenous events.

Everything that does not depend on the policy is fixed here, once, so that every policy of a
comparison faces the *same* history: the orders and their arrival times, the receipts of the
inbound table, which orders are cancelled and when, and which shipped lines come back. Draws use
their own seeded streams (one per kind of event) indexed by order or line, never the policy's
decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.errors import InputError
from allocator.io._schema import Column, check_references, validate_table
from allocator.io.tables import read_table
from allocator.model import Network, Orders, check_orders_against_network
from allocator.simulate._config import SimulationConfig

__all__ = ["CANCELLATIONS", "INBOUND", "RETURNS", "History", "prepare_history"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.object_]

US_PER_MINUTE = 60_000_000
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR

#: Expected receipts: units of a SKU arriving at a location at ``eta``.
INBOUND: tuple[Column, ...] = (
    Column("location_id", "str", required=True),
    Column("sku", "str", required=True),
    Column("qty", "int", required=True, strictly_positive=True),
    Column("eta", "datetime", required=True),
)

#: Known cancellations: the order is cancelled at ``cancelled_at``.
CANCELLATIONS: tuple[Column, ...] = (
    Column("order_id", "str", required=True),
    Column("cancelled_at", "datetime", required=True),
)

#: Known returns: ``qty`` units of ``sku`` of an order come back at ``returned_at``.
RETURNS: tuple[Column, ...] = (
    Column("order_id", "str", required=True),
    Column("sku", "str", required=True),
    Column("qty", "int", required=True, strictly_positive=True),
    Column("returned_at", "datetime", required=True),
)


@dataclass(frozen=True, eq=False)
class History:
    """Orders and exogenous events as arrays (times in microseconds since the epoch).

    Orders are in arrival order (``created_at``, then their first row in the file); lines of
    an order are contiguous, in file order.
    """

    network: Network
    lines: pl.DataFrame  # validated order lines, in arrival order
    location_ids: StrArray
    sku_ids: StrArray  # sorted; every SKU of stock, orders and inbound
    order_ids: StrArray
    order_index: dict[str, int]
    order_created: IntArray
    order_line_start: IntArray
    order_priority: IntArray
    order_channel: StrArray
    line_order: IntArray
    line_sku: IntArray
    line_qty: IntArray
    line_returned: BoolArray  # drawn: the line comes back after it ships
    inbound_location: IntArray  # receipts, by eta
    inbound_sku: IntArray
    inbound_qty: IntArray
    inbound_eta: IntArray
    cancel_at: IntArray  # per order; -1 when it is not cancelled
    return_order: IntArray  # known returns (a table), by time
    return_sku: IntArray
    return_qty: IntArray
    return_at: IntArray
    start: IntArray  # midnight of the first day (0-d array)
    end: IntArray  # midnight after the last order (0-d array)

    @property
    def n_orders(self) -> int:
        return len(self.order_ids)

    @property
    def n_lines(self) -> int:
        return len(self.line_qty)

    @property
    def n_locations(self) -> int:
        return len(self.location_ids)

    @property
    def n_skus(self) -> int:
        return len(self.sku_ids)

    @property
    def t_start(self) -> int:
        return int(self.start)

    @property
    def t_end(self) -> int:
        return int(self.end)


def _table(
    table: pl.DataFrame | str | Path | None, columns: tuple[Column, ...], name: str
) -> pl.DataFrame | None:
    if table is None:
        return None
    if isinstance(table, str | Path):
        return validate_table(read_table(table), columns, source=str(table))
    if not isinstance(table, pl.DataFrame):
        raise InputError(
            f"expected a polars DataFrame or a file path, got {type(table).__name__}", source=name
        )
    return validate_table(table, columns, source=name)


def _micros(series: pl.Series) -> IntArray:
    return np.asarray(series.cast(pl.Datetime("us")).cast(pl.Int64).to_numpy(), dtype=np.int64)


def _index(values: pl.Series, ids: StrArray) -> IntArray:
    """Positions of ``values`` in the sorted id array ``ids`` (every value must be present)."""
    return np.searchsorted(ids.astype(str), values.to_numpy().astype(str)).astype(np.int64)


def prepare_history(
    network: Network,
    orders: Orders,
    config: SimulationConfig,
    *,
    inbound: pl.DataFrame | str | Path | None = None,
    cancellations: pl.DataFrame | str | Path | None = None,
    returns: pl.DataFrame | str | Path | None = None,
) -> History:
    """Fix the history of a simulation.

    Parameters
    ----------
    network
        Locations and the stock at the start.
    orders
        Order lines; every order needs ``created_at``.
    config
        The run's settings (seed, cancellation and return rates).
    inbound
        Expected receipts (``location_id, sku, qty, eta``): a frame or a CSV/Parquet path.
    cancellations
        Known cancellations (``order_id, cancelled_at``), added to the drawn ones.
    returns
        Known returns (``order_id, sku, qty, returned_at``), added to the drawn ones.

    Returns
    -------
    History

    Raises
    ------
    InputError
        When an order has no ``created_at``, or a table is malformed or names an unknown
        location, order or SKU.
    """
    check_orders_against_network(orders, network)
    lines = orders.lines
    missing = lines["created_at"].is_null()
    if missing.any():
        row = int(missing.arg_true()[0]) + 1
        raise InputError(
            "a simulation needs created_at on every order (when it arrives)",
            source="orders",
            row=row,
            column="created_at",
        )
    lines = (
        lines.with_row_index("_row")
        .with_columns(pl.col("_row").min().over("order_id").alias("_first"))
        .sort(["created_at", "_first", "_row"], maintain_order=True)
        .drop("_row", "_first")
    )
    inbound_frame = _table(inbound, INBOUND, "inbound")
    cancel_frame = _table(cancellations, CANCELLATIONS, "cancellations")
    return_frame = _table(returns, RETURNS, "returns")

    location_ids = network.locations["location_id"].to_numpy().astype(object)
    known_locations = network.locations["location_id"]
    sku_parts = [network.stock["sku"], lines["sku"]]
    if inbound_frame is not None:
        check_references(
            inbound_frame["location_id"],
            known_locations,
            source="inbound",
            column="location_id",
            what="location",
        )
        sku_parts.append(inbound_frame["sku"])
    sku_ids = pl.concat(sku_parts).unique().sort().to_numpy().astype(object)

    order_ids_series = lines["order_id"].unique(maintain_order=True)
    order_ids = order_ids_series.to_numpy().astype(object)
    order_index = {str(o): i for i, o in enumerate(order_ids)}
    n_orders = len(order_ids)
    line_order = np.asarray(
        lines["order_id"].replace_strict(order_index, return_dtype=pl.Int64).to_numpy(),
        dtype=np.int64,
    )
    order_line_start = np.concatenate(
        [[0], np.cumsum(np.bincount(line_order, minlength=n_orders))]
    ).astype(np.int64)
    heads = order_line_start[:-1]
    created = _micros(lines["created_at"])
    order_created = created[heads]
    priority = np.asarray(lines["priority"].to_numpy(), dtype=np.int64)[heads]
    channel = lines["channel"].fill_null("unknown").to_numpy().astype(object)[heads]

    start = (int(order_created.min()) // US_PER_DAY) * US_PER_DAY
    end = (int(order_created.max()) // US_PER_DAY + 1) * US_PER_DAY

    # Exogenous draws: one stream per kind, indexed by order or line.
    cancel_rng = np.random.default_rng([config.seed, 1])
    drawn_cancel = cancel_rng.random(n_orders) < config.cancel_rate
    delay = cancel_rng.exponential(config.cancel_after_hours * US_PER_HOUR, n_orders)
    cancel_at = np.where(drawn_cancel, order_created + np.ceil(delay).astype(np.int64), -1)
    if cancel_frame is not None:
        check_references(
            cancel_frame["order_id"],
            order_ids_series,
            source="cancellations",
            column="order_id",
            what="order",
        )
        idx = np.asarray(
            cancel_frame["order_id"].replace_strict(order_index, return_dtype=pl.Int64).to_numpy(),
            dtype=np.int64,
        )
        at = np.maximum(_micros(cancel_frame["cancelled_at"]), order_created[idx])
        known = np.full(n_orders, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(known, idx, at)
        has = known < np.iinfo(np.int64).max
        cancel_at = np.where(
            has & ((cancel_at < 0) | (known < cancel_at)), known, cancel_at
        ).astype(np.int64)
    return_rng = np.random.default_rng([config.seed, 2])
    line_returned = return_rng.random(lines.height) < config.return_rate

    if inbound_frame is not None:
        inbound_frame = inbound_frame.sort("eta", maintain_order=True)
        loc_index = {str(loc): i for i, loc in enumerate(location_ids)}
        inbound_location = np.asarray(
            inbound_frame["location_id"]
            .replace_strict(loc_index, return_dtype=pl.Int64)
            .to_numpy(),
            dtype=np.int64,
        )
        inbound_sku = _index(inbound_frame["sku"], sku_ids)
        inbound_qty = np.asarray(inbound_frame["qty"].to_numpy(), dtype=np.int64)
        inbound_eta = _micros(inbound_frame["eta"])
    else:
        inbound_location = inbound_sku = inbound_qty = inbound_eta = np.zeros(0, np.int64)

    if return_frame is not None:
        check_references(
            return_frame["order_id"],
            order_ids_series,
            source="returns",
            column="order_id",
            what="order",
        )
        check_references(
            return_frame["sku"], lines["sku"], source="returns", column="sku", what="sku"
        )
        return_frame = return_frame.sort("returned_at", maintain_order=True)
        return_order = np.asarray(
            return_frame["order_id"].replace_strict(order_index, return_dtype=pl.Int64).to_numpy(),
            dtype=np.int64,
        )
        return_sku = _index(return_frame["sku"], sku_ids)
        return_qty = np.asarray(return_frame["qty"].to_numpy(), dtype=np.int64)
        return_at = _micros(return_frame["returned_at"])
    else:
        return_order = return_sku = return_qty = return_at = np.zeros(0, np.int64)

    return History(
        network=network,
        lines=lines,
        location_ids=location_ids,
        sku_ids=sku_ids,
        order_ids=order_ids,
        order_index=order_index,
        order_created=order_created,
        order_line_start=order_line_start,
        order_priority=priority,
        order_channel=channel,
        line_order=line_order,
        line_sku=_index(lines["sku"], sku_ids),
        line_qty=np.asarray(lines["qty"].to_numpy(), dtype=np.int64),
        line_returned=line_returned,
        inbound_location=inbound_location,
        inbound_sku=inbound_sku,
        inbound_qty=inbound_qty,
        inbound_eta=inbound_eta,
        cancel_at=cancel_at.astype(np.int64),
        return_order=return_order,
        return_sku=return_sku,
        return_qty=return_qty,
        return_at=return_at,
        start=np.asarray(start, dtype=np.int64),
        end=np.asarray(end, dtype=np.int64),
    )


def to_datetime(micros: int) -> datetime:
    """A naive datetime from microseconds since the epoch."""
    return datetime(1970, 1, 1) + (np.timedelta64(int(micros), "us")).item()
