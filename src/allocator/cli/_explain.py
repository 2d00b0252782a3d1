"""``allocator explain``: why one order is served the way it is."""

from __future__ import annotations

import argparse
import json
from typing import Any

from allocator.cli._common import add_input_args


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "explain",
        help="allocate, then explain one order: excluded locations, chosen plan, alternative",
    )
    add_input_args(p)
    p.add_argument("--policy", metavar="NAME", help="bundled policy or rule-set name")
    p.add_argument("--order", required=True, metavar="ID", help="the order to explain")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="optimiser time limit")
    p.add_argument("--seed", type=int, default=0, help="solver seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.errors import InputError
    from allocator.explain import explain_order
    from allocator.model import read_network, read_orders

    if args.time_limit is not None and not args.time_limit > 0:
        raise InputError("must be > 0 seconds", source="--time-limit")
    network = read_network(args.network)
    orders = read_orders(args.orders)
    explanation = explain_order(
        network,
        orders,
        args.order,
        rules=args.rules,
        policy=args.policy,
        time_limit=args.time_limit,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(explanation.model_dump(mode="json"), indent=2))
    else:
        print(explanation.to_text(), end="")
    return 0
