"""How a simulation runs: the mode, its clock, the exogenous events and the ledger."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from allocator.rules.schema import RuleSet

__all__ = ["Mode", "SimulationConfig"]

Mode = Literal["realtime", "batch", "nightly", "offline"]


class SimulationConfig(BaseModel):
    """Settings of one simulation run (shared by every policy of a comparison).

    Parameters
    ----------
    mode
        When orders are decided:

        - ``realtime``: each order when it arrives, against the stock the orders before it
          left (greedy policies fill one order at a time; ``optimize`` sources each order
          optimally on its own);
        - ``batch``: every ``batch_minutes``, the orders that arrived in the window together
          (``optimize`` solves the window jointly);
        - ``nightly``: in real time as they arrive, and every night at ``night_hour`` everything
          not yet released to the warehouses is released from its holds and re-allocated
          jointly (policies that optimise re-optimise; greedy policies keep their choices),
          then released;
        - ``offline``: all orders at once after the last one arrived, with every receipt in
          stock (hindsight; the mode in which the optimiser provably never costs more than
          any greedy policy).
    batch_minutes
        Window length in ``batch`` mode.
    sync_minutes
        Stock that becomes free (receipts, returns, cancelled holds) is seen by real-time
        sourcing at the next sync point, every this many minutes (stock sync of an order
        management system). Backorders are retried at sync points where stock of their SKU
        came in.
    night_hour
        Hour of the nightly re-optimisation and release (``nightly`` mode).
    release_minutes
        Minutes from a decision until the order is released to the warehouse and ships
        (``realtime`` and ``batch``); until then a cancellation gives its units back.
    capacity_period
        What ``capacity_units`` and ``capacity_shipments`` limit: the whole replay
        (``horizon``: the network file describes one allocation run, as ``allocator generate``
        writes it) or each calendar day (``day``).
    cancel_rate
        Share of orders cancelled, drawn per order from ``seed`` (the same orders for every
        policy); the cancellation comes an exponential time with mean ``cancel_after_hours``
        after the order.
    cancel_after_hours
        Mean delay of a cancellation.
    return_rate
        Share of shipped lines returned ``return_days`` after shipping, restocked at the
        location that shipped them (drawn per order line from ``seed``).
    return_days
        Days from shipment to restock.
    seed
        Seed of the exogenous draws and of the solvers.
    time_limit
        Seconds per joint solve (batch windows, nights, offline); the best plan found is used.
    ledger
        Store URL of the inventory ledger every reservation, shipment, receipt, cancellation
        and return goes through (``"memory://"``, or ``"sqlite:///path.db"``; one ledger per
        policy), or ``None`` to keep stock only in arrays (faster, for sweeps).
    reference_rules
        The cost model and penalties every policy's outcome is priced with, so that policies
        with their own rule sets are compared on one scale (the optimiser's default rules).
    max_segment_orders
        Most orders compiled at once in real time (bounds memory on long replays).
    progress
        Show a progress bar (``None``: only on a terminal, when tqdm is installed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "offline"
    batch_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    sync_minutes: int = Field(default=60, ge=1, le=24 * 60)
    night_hour: int = Field(default=2, ge=0, le=23)
    release_minutes: float = Field(default=120.0, ge=0)
    capacity_period: Literal["horizon", "day"] = "horizon"
    cancel_rate: float = Field(default=0.0, ge=0, le=1)
    cancel_after_hours: float = Field(default=2.0, gt=0)
    return_rate: float = Field(default=0.0, ge=0, le=1)
    return_days: float = Field(default=14.0, ge=0)
    seed: int = Field(default=0, ge=0)
    time_limit: float | None = Field(default=60.0, gt=0)
    ledger: str | None = "memory://"
    reference_rules: RuleSet = RuleSet()
    max_segment_orders: int = Field(default=5000, ge=1)
    progress: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        if 24 * 60 % self.sync_minutes:
            raise ValueError("sync_minutes must divide a day (1440 minutes)")
        minutes = self.batch_minutes
        if self.mode == "batch" and 24 * 60 % minutes and minutes % (24 * 60):
            raise ValueError("batch_minutes must divide a day (1440 minutes) or be whole days")
        return self
