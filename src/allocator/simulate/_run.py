"""The public entry points: :func:`simulate` one policy, :func:`compare` several."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from allocator.errors import InputError
from allocator.model import Network, Orders
from allocator.rules.schema import RuleSet
from allocator.simulate._config import SimulationConfig
from allocator.simulate._engine import Replay
from allocator.simulate._history import History, prepare_history
from allocator.simulate._kpi import (
    aggregate,
    by_location,
    daily_backlog,
    order_frame,
    overall,
    shipment_frame,
    zone_mix,
)
from allocator.simulate._policies import Policy, resolve_policy
from allocator.simulate._pricing import Pricer

__all__ = ["Comparison", "SimulationResult", "compare", "simulate"]

log = logging.getLogger("allocator")

PolicySpec = str | Path | RuleSet | Policy
TableArg = pl.DataFrame | str | Path | None


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """One policy's replay of a history, as polars frames.

    Attributes
    ----------
    policy
        The policy's name.
    config
        The settings of the run.
    kpis
        One row: the summary (columns described in :data:`allocator.simulate.KPI_COLUMNS`).
    orders
        One row per order: units sourced at order time, backordered, filled later, parcels,
        shipping and penalty cost, distance, cancellation, returns.
    shipments
        One row per parcel: order, location, time, units, distance, zone, cost.
    locations
        One row per location: parcels, units, cost, capacity utilisation.
    backlog
        Units waiting for stock at the end of each day.
    flows
        Units from each location to each demand area (a one-degree grid cell), for maps.
    seconds
        Wall time of the replay.
    info
        Counters of the replay (decisions, retries, nights, ledger calls...).
    """

    policy: str
    config: SimulationConfig
    kpis: pl.DataFrame
    orders: pl.DataFrame
    shipments: pl.DataFrame
    locations: pl.DataFrame
    backlog: pl.DataFrame
    flows: pl.DataFrame
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def by_day(self) -> pl.DataFrame:
        """KPIs per day of order creation, with the backlog at the end of the day."""
        return aggregate(self.orders, "day").join(self.backlog, on="day", how="full", coalesce=True)

    def by_channel(self) -> pl.DataFrame:
        """KPIs per sales channel."""
        return aggregate(self.orders, "channel")

    def zone_mix(self) -> pl.DataFrame:
        """Parcels and units by zone (0: picked up at the order's own store)."""
        return zone_mix(self.shipments)

    @property
    def cost_per_order(self) -> float:
        """Shipping plus penalty cost per order."""
        return float(self.kpis["cost_per_order"][0])


def _flows(shipments: pl.DataFrame, history: History) -> pl.DataFrame:
    locs = history.network.locations.select("location_id", "kind", "lat", "lon")
    heads = history.order_line_start[:-1]
    lines = history.lines
    dest = pl.DataFrame(
        {
            "order_id": history.order_ids.astype(str),
            "dest_lat": lines["lat"].to_numpy()[heads],
            "dest_lon": lines["lon"].to_numpy()[heads],
        },
        schema={"order_id": pl.String, "dest_lat": pl.Float64, "dest_lon": pl.Float64},
    )
    return (
        shipments.select("order_id", "location_id", "units")
        .join(dest, on="order_id", how="left")
        .drop_nulls(["dest_lat", "dest_lon"])
        .with_columns(
            pl.col("dest_lat").round(0).alias("cell_lat"),
            pl.col("dest_lon").round(0).alias("cell_lon"),
        )
        .group_by("location_id", "cell_lat", "cell_lon")
        .agg(
            pl.col("units").sum(),
            pl.len().alias("shipments"),
            (pl.col("dest_lat") * pl.col("units")).sum().alias("_lat"),
            (pl.col("dest_lon") * pl.col("units")).sum().alias("_lon"),
        )
        .with_columns(
            (pl.col("_lat") / pl.col("units")).alias("dest_lat"),
            (pl.col("_lon") / pl.col("units")).alias("dest_lon"),
        )
        .drop("_lat", "_lon", "cell_lat", "cell_lon")
        .join(locs, on="location_id", how="left")
        .sort(["location_id", "units"], descending=[False, True])
    )


def _settings(config: SimulationConfig | None, settings: dict[str, Any]) -> SimulationConfig:
    base = config or SimulationConfig()
    if not settings:
        return base
    try:
        return SimulationConfig.model_validate({**base.model_dump(), **settings})
    except ValueError as exc:
        raise InputError(f"bad simulation setting: {exc}", source="settings") from exc


def _bar(config: SimulationConfig, total: int, desc: str) -> Any:
    show = config.progress
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - the progress extra is missing
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=None)


def replay(history: History, policy: Policy, config: SimulationConfig) -> SimulationResult:
    """Replay a prepared history under one policy (the unit of work of :func:`compare`)."""
    t0 = time.perf_counter()
    pricer = Pricer(history, config.reference_rules)
    engine = Replay(history, policy, config, pricer)
    bar = _bar(config, len(engine.points()), policy.name)
    try:
        record = engine.run(bar)
    finally:
        if bar is not None:
            bar.close()
    shipments = shipment_frame(record, pricer)
    orders = order_frame(record, pricer, shipments)
    locations = by_location(record, shipments)
    kpis = overall(record, orders, shipments, locations)
    log.info("simulated %s: %d orders in %.1fs", policy.name, history.n_orders, record.seconds)
    return SimulationResult(
        policy=policy.name,
        config=config,
        kpis=kpis,
        orders=orders,
        shipments=shipments.drop("order", "loc"),
        locations=locations,
        backlog=daily_backlog(record),
        flows=_flows(shipments, history),
        seconds=time.perf_counter() - t0,
        info=record.info,
    )


def simulate(
    network: Network,
    orders: Orders,
    policy: PolicySpec = "optimize",
    *,
    config: SimulationConfig | None = None,
    inbound: TableArg = None,
    cancellations: TableArg = None,
    returns: TableArg = None,
    **settings: Any,
) -> SimulationResult:
    """Replay an order history under one policy.

    Parameters
    ----------
    network
        Locations and the stock at the start of the history.
    orders
        Order lines with ``created_at``.
    policy
        ``"optimize"``, ``"forward_looking"``, ``"greedy"``, a bundled rule set or peer policy
        name, a rule file, a :class:`~allocator.rules.RuleSet` or a :class:`Policy`.
    config
        Settings (:class:`SimulationConfig`); keyword ``settings`` override single fields, for
        example ``mode="nightly"``.
    inbound
        Expected receipts ``location_id, sku, qty, eta`` (frame or CSV/Parquet path): they
        arrive at ``eta`` and fill backorders.
    cancellations
        Known cancellations ``order_id, cancelled_at``.
    returns
        Known returns ``order_id, sku, qty, returned_at``.

    Returns
    -------
    SimulationResult

    Raises
    ------
    InputError
        On bad input or settings.

    Examples
    --------
    >>> from allocator.generate import generate
    >>> from allocator import Network, Orders
    >>> from allocator.simulate import simulate
    >>> inst = generate(200, 8, 40, seed=1, days=3)
    >>> net = Network.from_frames(inst.locations, inst.stock)
    >>> result = simulate(net, Orders.from_frame(inst.orders), "optimize", ledger=None)
    >>> result.kpis["orders"][0]
    200
    """
    cfg = _settings(config, settings)
    history = prepare_history(
        network, orders, cfg, inbound=inbound, cancellations=cancellations, returns=returns
    )
    return replay(history, resolve_policy(policy), cfg)


def _task(history: History, policy: Policy, config: SimulationConfig) -> SimulationResult:
    return replay(history, policy, config)


@dataclass(frozen=True, eq=False)
class Comparison:
    """Several policies replayed on the same history.

    Attributes
    ----------
    results
        Each policy's :class:`SimulationResult`, in the order asked.
    """

    results: dict[str, SimulationResult]

    @property
    def kpis(self) -> pl.DataFrame:
        """One row per policy, with each policy's cost per order above the best one's."""
        table = pl.concat([r.kpis for r in self.results.values()], how="vertical_relaxed")
        best = table["cost_per_order"].min()
        return table.with_columns(
            (pl.col("cost_per_order") - best).alias("cost_per_order_vs_best"),
            (
                pl.when(pl.lit(best) > 0)
                .then(100.0 * (pl.col("cost_per_order") - best) / best)
                .otherwise(None)
            ).alias("cost_per_order_vs_best_pct"),
        ).select(
            *(c for c in table.columns if c != "seconds"),
            "cost_per_order_vs_best",
            "cost_per_order_vs_best_pct",
            "seconds",
        )

    def _stack(self, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(
            [f.select(pl.lit(name).alias("policy"), pl.all()) for name, f in frames.items()],
            how="vertical_relaxed",
        )

    def by_day(self) -> pl.DataFrame:
        """Per-day KPIs of every policy (a ``policy`` column first)."""
        return self._stack({n: r.by_day() for n, r in self.results.items()})

    def by_channel(self) -> pl.DataFrame:
        """Per-channel KPIs of every policy."""
        return self._stack({n: r.by_channel() for n, r in self.results.items()})

    def by_location(self) -> pl.DataFrame:
        """Per-location KPIs of every policy."""
        return self._stack({n: r.locations for n, r in self.results.items()})

    def flows(self) -> pl.DataFrame:
        """Units from locations to demand areas, for every policy."""
        return self._stack({n: r.flows for n, r in self.results.items()})

    def zone_mix(self) -> pl.DataFrame:
        """Parcels by zone for every policy."""
        return self._stack({n: r.zone_mix() for n, r in self.results.items()})

    def write(
        self, out_dir: str | Path, *, charts: bool = True, image_format: str = "png"
    ) -> list[Path]:
        """Write ``kpis.csv``, ``daily.csv``, ``by_channel.csv``, ``by_location.csv`` and,
        with ``charts``, the charts and ``report.html`` (needs the ``plot`` extra).

        Returns
        -------
        list of Path
            The files written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in (
            ("kpis", self.kpis),
            ("daily", self.by_day()),
            ("by_channel", self.by_channel()),
            ("by_location", self.by_location()),
        ):
            path = out / f"{name}.csv"
            frame.write_csv(path)
            written.append(path)
        if charts:
            from allocator.simulate.plots import write_report

            written.extend(write_report(self, out, image_format=image_format))
        return written


def compare(
    policies: Sequence[PolicySpec],
    network: Network,
    orders: Orders,
    *,
    executor: Executor | None = None,
    config: SimulationConfig | None = None,
    inbound: TableArg = None,
    cancellations: TableArg = None,
    returns: TableArg = None,
    **settings: Any,
) -> Comparison:
    """Replay the same history under several policies (in parallel through ``executor``).

    Every policy faces the same history: the same orders at the same times, the same stock at
    the start, the same receipts, and the same cancellations and returns (drawn per order and
    line from the seed, never from a policy's decisions), in the same mode.

    Parameters
    ----------
    policies
        Policy names, rule files, rule sets or :class:`Policy` objects (names must differ).
    network, orders
        The history (see :func:`simulate`).
    executor
        Runs one replay per task: ``None`` runs them one after another; a
        ``ProcessPoolExecutor`` or a Dask ``Client.get_executor()`` runs them in parallel.
        The results do not depend on the executor.
    config, inbound, cancellations, returns, settings
        As for :func:`simulate`.

    Returns
    -------
    Comparison
        ``.kpis`` is the one table (one row per policy); per-day, per-channel and
        per-location tables and each policy's full result are there too.
    """
    if isinstance(policies, str | Path | RuleSet):
        policies = [policies]
    resolved = [resolve_policy(p) for p in policies]
    if not resolved:
        raise InputError("name at least one policy", source="policies")
    names = [p.name for p in resolved]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two policies are named {dup[0]!r}; names must differ", source="policies")
    cfg = _settings(config, settings)
    history = prepare_history(
        network, orders, cfg, inbound=inbound, cancellations=cancellations, returns=returns
    )
    if executor is None:
        results = [replay(history, policy, cfg) for policy in resolved]
    else:
        quiet = cfg.model_copy(update={"progress": False})
        futures = [executor.submit(_task, history, policy, quiet) for policy in resolved]
        results = [f.result() for f in futures]
    return Comparison({r.policy: r for r in results})
