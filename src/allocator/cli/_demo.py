"""``allocator demo``: the main job on the bundled default instance, optimiser vs greedy."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="allocate the bundled default instance; compare the optimiser with greedy"
    )
    p.add_argument("--out", metavar="DIR", help="also write the optimiser's result folder here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allocator.allocate import solve
    from allocator.demo_data import default_instance
    from allocator.model import Network, Orders
    from allocator.problem import compile_problem
    from allocator.rules.schema import RuleSet
    from allocator.solvers.greedy import greedy_baseline

    inst = default_instance()
    network = Network.from_frames(inst.locations, inst.stock)
    orders = Orders.from_frame(inst.orders)
    problem = compile_problem(network, orders, RuleSet(name="optimize"))
    best = solve(problem)
    greedy = greedy_baseline(problem)
    s_opt, s_gr = best.summary(), greedy.summary()
    print(
        f"allocator demo: {s_opt.orders} orders ({s_opt.lines} lines, {s_opt.units} units) "
        f"from {problem.n_locations} locations, {len(problem.sku_ids)} SKUs\n"
    )
    rows = [
        ("status", s_opt.status, s_gr.status),
        ("total cost", f"{s_opt.cost.total:,.2f}", f"{s_gr.cost.total:,.2f}"),
        (
            "  shipping (unit + parcel)",
            f"{s_opt.cost.unit + s_opt.cost.shipment:,.2f}",
            f"{s_gr.cost.unit + s_gr.cost.shipment:,.2f}",
        ),
        (
            "  backorder + rejection",
            f"{s_opt.cost.backorder + s_opt.cost.rejection:,.2f}",
            f"{s_gr.cost.backorder + s_gr.cost.rejection:,.2f}",
        ),
        ("shipments", f"{s_opt.shipments:,}", f"{s_gr.shipments:,}"),
        ("split orders", f"{s_opt.split_orders:,}", f"{s_gr.split_orders:,}"),
        ("units backordered", f"{s_opt.units_backordered:,}", f"{s_gr.units_backordered:,}"),
        ("orders rejected", f"{s_opt.orders_rejected:,}", f"{s_gr.orders_rejected:,}"),
        ("lower bound", "n/a" if s_opt.lower_bound is None else f"{s_opt.lower_bound:,.2f}", "-"),
        ("seconds", f"{s_opt.seconds:.2f}", f"{s_gr.seconds:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'optimiser':>14}  {'greedy':>14}")
    for name, a, b in rows:
        print(f"{name:{width}}  {a:>14}  {b:>14}")
    saving = s_gr.cost.total - s_opt.cost.total
    if s_gr.cost.total > 0:
        print(
            f"\nThe optimiser saves {saving:,.2f} ({saving / s_gr.cost.total:.1%}) against greedy."
        )
    if args.out:
        best.write(args.out, "csv")
        print(f"wrote the optimiser's plan to {args.out}")
    return 0
