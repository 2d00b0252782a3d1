"""``allocator allocate``: source a batch of orders and write the result folder."""

from __future__ import annotations

import argparse
from typing import Any

from allocator.allocate import allocate
from allocator.cli._common import add_input_args, output_format, print_summary
from allocator.errors import InputError
from allocator.model import read_assignments, read_network, read_orders
from allocator.parallel import executor_from_args


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "allocate", help="source orders from the network and write the plan"
    )
    add_input_args(p)
    p.add_argument("--policy", metavar="NAME", help="bundled policy or rule-set name")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="optimiser time limit")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", help="process pool size")
    group.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address")
    p.add_argument("--seed", type=int, default=0, help="solver seed (default 0)")
    p.add_argument(
        "--method",
        choices=("auto", "exact", "decompose"),
        default="auto",
        help="optimiser: the exact MILP, the decomposition, or by size (default auto)",
    )
    p.add_argument(
        "--warm-start",
        metavar="PATH",
        help="re-optimise from a previous plan: its result folder or assignments file",
    )
    p.add_argument(
        "--change-penalty",
        type=float,
        default=0.0,
        metavar="COST",
        help="cost per parcel an order of the previous plan did not use before (default 0)",
    )
    p.add_argument(
        "--prove",
        action="store_true",
        help="spend the whole time limit closing the gap instead of stopping when the "
        "search stalls",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="result folder")
    p.add_argument(
        "--format", choices=("csv", "parquet"), help="result format (default: as orders)"
    )
    p.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.time_limit is not None and not args.time_limit > 0:
        raise InputError("must be > 0 seconds", source="--time-limit")
    if not args.change_penalty >= 0:
        raise InputError("must be >= 0", source="--change-penalty")
    if args.change_penalty > 0 and args.warm_start is None:
        raise InputError("needs --warm-start (the previous plan)", source="--change-penalty")
    fmt = output_format(args.orders, args.format)
    network = read_network(args.network)
    orders = read_orders(args.orders)
    previous = None if args.warm_start is None else read_assignments(args.warm_start)
    with executor_from_args(args.workers, args.scheduler) as executor:
        plan = allocate(
            network,
            orders,
            rules=args.rules,
            policy=args.policy,
            time_limit=args.time_limit,
            seed=args.seed,
            executor=executor,
            method=args.method,
            warm_start=previous,
            change_penalty=args.change_penalty,
            prove=args.prove,
        )
    plan.write(args.out, fmt)
    print_summary(plan.summary(), as_json=args.json)
    return 0
