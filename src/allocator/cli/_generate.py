"""``allocator generate``: write a synthetic but realistic instance."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate", help="write a synthetic instance (network tables and orders)"
    )
    p.add_argument("--orders", type=int, required=True, metavar="N", help="number of orders")
    p.add_argument("--locations", type=int, required=True, metavar="L", help="number of locations")
    p.add_argument("--skus", type=int, required=True, metavar="S", help="number of SKUs")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default 0)")
    p.add_argument("--days", type=int, default=30, help="days of order history (default 30)")
    p.add_argument(
        "--region", default="us", choices=("us", "ca", "na", "eu"), help="geography (default us)"
    )
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.generate import generate, write

    instance = generate(
        args.orders, args.locations, args.skus, seed=args.seed, region=args.region, days=args.days
    )
    write(instance, args.out, fmt=args.format)
    print(
        f"wrote {instance.locations.height} locations, {instance.stock.height} stock rows and "
        f"{instance.orders.height} order lines to {args.out}"
    )
    print(
        f"next: allocator allocate --network {args.out} --orders {args.out}/orders.{args.format} --out RESULT_DIR"
    )
    return 0
