"""``allocator simulate``: replay an order history under several policies and compare them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from allocator.cli._common import add_input_args
from allocator.errors import InputError
from allocator.model import read_network, read_orders
from allocator.parallel import executor_from_args

_MODES = ("offline", "realtime", "batch", "nightly")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="replay order history under several policies and compare them",
        description=(
            "Replay the orders under each policy and write kpis.csv (one row per policy), "
            "daily.csv, by_channel.csv, by_location.csv, charts and report.html. "
            "Mode offline (the default) lets every policy allocate the whole history at once: "
            "greedy policies in their own order (a real-time replay for arrival-order rules), "
            "the optimiser jointly, so its cost is never above a greedy policy's. The other "
            "modes replay time: realtime (each order as it arrives), batch (every "
            "--batch-minutes), nightly (real time, re-optimised every night before release)."
        ),
    )
    add_input_args(p, rules=False)
    p.add_argument(
        "--policies",
        required=True,
        metavar="A,B,...",
        help="policies: optimize, forward_looking, greedy, peer names, rule files",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="result folder")
    p.add_argument("--mode", choices=_MODES, default="offline", help="when orders are decided")
    p.add_argument("--batch-minutes", type=int, default=60, metavar="N", help="batch window")
    p.add_argument("--inbound", metavar="FILE", help="expected receipts: location_id,sku,qty,eta")
    p.add_argument("--cancellations", metavar="FILE", help="order_id,cancelled_at")
    p.add_argument("--returns", metavar="FILE", help="order_id,sku,qty,returned_at")
    p.add_argument("--cancel-rate", type=float, default=0.0, help="share of orders cancelled")
    p.add_argument("--return-rate", type=float, default=0.0, help="share of lines returned")
    p.add_argument(
        "--capacity-period",
        choices=("horizon", "day"),
        default="horizon",
        help="capacities limit the whole replay or each day",
    )
    p.add_argument(
        "--time-limit", type=float, default=60.0, metavar="SECONDS", help="per joint solve"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of draws and solvers (default 0)")
    p.add_argument(
        "--ledger",
        default="memory://",
        metavar="URL",
        help="inventory ledger store per policy (memory://, sqlite:///FILE) or 'none'",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", help="process pool size")
    group.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address")
    p.add_argument("--no-charts", action="store_true", help="write the tables only")
    p.add_argument("--image-format", choices=("png", "svg"), default="png", help="chart files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.simulate import SimulationConfig, compare
    from allocator.simulate.plots import PlotDependencyError

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise InputError("name at least one policy", source="--policies")
    if args.time_limit is not None and not args.time_limit > 0:
        raise InputError("must be > 0 seconds", source="--time-limit")
    try:
        config = SimulationConfig(
            mode=args.mode,
            batch_minutes=args.batch_minutes,
            cancel_rate=args.cancel_rate,
            return_rate=args.return_rate,
            capacity_period=args.capacity_period,
            time_limit=args.time_limit,
            seed=args.seed,
            ledger=None if args.ledger.lower() == "none" else args.ledger,
        )
    except ValueError as exc:
        raise InputError(str(exc), source="simulate") from exc
    network = read_network(args.network)
    orders = read_orders(args.orders)
    with executor_from_args(args.workers, args.scheduler) as executor:
        comparison = compare(
            policies,
            network,
            orders,
            executor=executor,
            config=config,
            inbound=args.inbound,
            cancellations=args.cancellations,
            returns=args.returns,
        )
    try:
        written = comparison.write(
            args.out, charts=not args.no_charts, image_format=args.image_format
        )
    except PlotDependencyError as exc:
        written = comparison.write(args.out, charts=False)
        print(f"allocator: warning: charts skipped: {exc}", file=sys.stderr)
    table = comparison.kpis.select(
        "policy",
        "cost_per_order",
        "shipping_cost_per_order",
        "shipments_per_order",
        "split_rate",
        "fill_rate_at_order",
        "units_backordered",
        "cost_per_order_vs_best_pct",
    )
    lines = [f"simulated {int(comparison.kpis['orders'][0]):,} orders, mode {config.mode}"]
    lines.append(
        f"  {'policy':<28}{'cost/order':>11}{'ship/order':>11}{'parcels':>9}{'split':>8}"
        f"{'fill':>8}{'backord.':>10}{'vs best':>9}"
    )
    lines.extend(
        f"  {row['policy']:<28}{row['cost_per_order']:>11.2f}"
        f"{row['shipping_cost_per_order']:>11.2f}{row['shipments_per_order'] or 0:>9.3f}"
        f"{row['split_rate'] or 0:>8.1%}{row['fill_rate_at_order'] or 0:>8.1%}"
        f"{row['units_backordered']:>10,}{row['cost_per_order_vs_best_pct'] or 0:>8.2f}%"
        for row in table.iter_rows(named=True)
    )
    lines.append(f"wrote {len(written)} files to {args.out}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
