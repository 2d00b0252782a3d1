"""``allocator validate``: check a network, orders and rules without allocating."""

from __future__ import annotations

import argparse
from typing import Any

from allocator.model import read_network, read_orders
from allocator.problem import compile_problem


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate", help="check input tables (and a rule file) against the contract"
    )
    p.add_argument("--network", metavar="DIR", help="network folder")
    p.add_argument("--orders", metavar="FILE", help="orders CSV or Parquet")
    p.add_argument("--rules", metavar="FILE", help="rule file (TOML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.allocate import _resolve_rules
    from allocator.errors import InputError

    if not (args.network or args.orders or args.rules):
        raise InputError("give --network and --orders, --rules, or all three", source="validate")
    if bool(args.network) != bool(args.orders):
        raise InputError("--network and --orders go together", source="validate")
    rules = _resolve_rules(args.rules, None) if args.rules else None
    if rules is not None:
        print(f"rules ok: {rules.name} (strategy {rules.strategy})")
    if args.network:
        network = read_network(args.network)
        orders = read_orders(args.orders)
        problem = compile_problem(network, orders, rules)
        print(
            f"ok: {network.locations.height} locations, {network.stock.height} stock rows, "
            f"{problem.n_orders} orders, {problem.n_lines} lines, "
            f"{problem.n_pairs} candidate shipments"
        )
        if rules is not None:
            _print_rule_effects(problem)
    return 0


def _print_rule_effects(problem: object) -> None:
    """How the rules bite on this data: exclusions per rule, side limits."""
    from allocator.problem import Problem
    from allocator.rules.compile import RuleContext

    assert isinstance(problem, Problem)
    ctx = problem.meta.get("rules")
    exclusions = problem.meta.get("exclusions")
    if not isinstance(ctx, RuleContext) or exclusions is None:
        return
    names = ctx.reason_names
    counts = exclusions.unique(["ord", "loc", "reason"]).group_by("reason").len().sort("reason")
    for reason, n in counts.iter_rows():
        print(f"  {names[reason]}: excludes {n} (order, location) pairs that hold stock")
    biting = {names[r] for r in counts["reason"].to_list()}
    for rule in ctx.rules.eligibility:
        if not rule.enabled:
            print(f"  eligibility.{rule.name}: switched off")
        elif f"eligibility.{rule.name}" not in biting:
            print(f"  eligibility.{rule.name}: excludes nothing (that no earlier reason excludes)")
    if problem.n_limits:
        print(f"  {problem.n_limits} ring-fence / exposure limits can bind")
