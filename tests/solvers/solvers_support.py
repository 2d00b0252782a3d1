"""Helpers for the solver tests: brute-force pricing, small generated instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import scipy.sparse as sp

from allocator import Network, Orders, compile_problem
from allocator.problem import Problem
from allocator.rules.schema import RuleSet


def per_arc_rows(problem: Problem) -> tuple[sp.csr_matrix, np.ndarray]:
    """An incidence where every arc is its own unit row, and every location a shipment row."""
    n = problem.n_arcs
    rows = sp.csr_matrix((np.ones(n), (np.arange(n), np.arange(n))), shape=(n, n))
    return rows, problem.pair_location.astype(np.int64)


def brute_force_order(
    problem: Problem,
    o: int,
    arc_price: np.ndarray,
    pair_price: np.ndarray,
) -> float:
    """Cheapest priced decision of order ``o`` alone (no coupling rows), by enumeration."""
    p = problem
    lines = range(int(p.order_line_start[o]), int(p.order_line_start[o + 1]))
    per_line = []
    for k in lines:
        arcs = list(range(int(p.line_arc_start[k]), int(p.line_arc_start[k + 1])))
        caps = [int(p.arc_cap[a]) for a in arcs]
        options = [
            x for x in itertools.product(*(range(c + 1) for c in caps)) if sum(x) <= p.line_qty[k]
        ]
        per_line.append((k, arcs, options))
    reject = float(p.order_reject_cost[o])
    wait = float(sum(p.line_qty[k] * p.line_backorder_cost[k] for k in lines))
    best = wait if p.order_allow_backorder[o] else reject
    for choice in itertools.product(*(opts for _, _, opts in per_line)):
        cost = 0.0
        used_pairs: set[int] = set()
        short = False
        for (k, arcs, _), x in zip(per_line, choice, strict=True):
            shipped = sum(x)
            for a, q in zip(arcs, x, strict=True):
                if q:
                    cost += q * (p.arc_unit_cost[a] + arc_price[a])
                    used_pairs.add(int(p.arc_pair[a]))
            if shipped < p.line_qty[k]:
                short = True
                cost += (p.line_qty[k] - shipped) * p.line_backorder_cost[k]
        if not used_pairs:
            continue
        if len(used_pairs) > p.order_max_locations[o]:
            continue
        if p.order_ship_complete[o] and (len(used_pairs) > 1 or short):
            continue
        if not p.order_allow_backorder[o] and short:
            continue
        cost += sum(p.pair_shipment_cost[q] + pair_price[q] for q in used_pairs)
        best = min(best, cost)
    return best


def generated(
    n_orders: int, n_locations: int, n_skus: int, seed: int = 0, rules: RuleSet | None = None
) -> Problem:
    """A compiled generated instance (the generator when present, else a small local one)."""
    try:
        from allocator.generate import generate

        inst = generate(n_orders, n_locations, n_skus, seed=seed)
        return compile_problem(
            Network.from_frames(inst.locations, inst.stock), Orders.from_frame(inst.orders), rules
        )
    except ImportError:  # pragma: no cover - the generator ships with the package
        return local_instance(n_orders, n_locations, n_skus, seed, rules)


def local_instance(
    n_orders: int, n_locations: int, n_skus: int, seed: int = 0, rules: RuleSet | None = None
) -> Problem:
    """Random network and orders with thin stock, capacities and mixed order flags."""
    rng = np.random.default_rng(seed)
    loc_ids = [f"L{i}" for i in range(n_locations)]
    locations = pl.DataFrame(
        {
            "location_id": loc_ids,
            "lat": rng.uniform(30, 47, n_locations),
            "lon": rng.uniform(-120, -75, n_locations),
            "capacity_shipments": [
                int(rng.integers(2, 2 + n_orders // max(n_locations, 1) + 1))
                if rng.random() < 0.4
                else None
                for _ in loc_ids
            ],
        },
        schema_overrides={"capacity_shipments": pl.Int64},
    )
    popularity = rng.zipf(1.6, n_skus).astype(float)
    popularity /= popularity.sum()
    stock_rows = []
    for i in loc_ids:
        for s in range(n_skus):
            if rng.random() < 0.5:
                stock_rows.append(
                    {"location_id": i, "sku": f"S{s}", "on_hand": int(rng.integers(0, 4))}
                )
    rows = []
    for o in range(n_orders):
        n_lines = int(rng.choice([1, 1, 1, 2, 2, 3]))
        skus = rng.choice(n_skus, size=min(n_lines, n_skus), replace=False, p=popularity)
        lat, lon = rng.uniform(30, 47), rng.uniform(-120, -75)
        sc = bool(rng.random() < 0.1)
        bo = bool(rng.random() > 0.1)
        for s in skus:
            rows.append(
                {
                    "order_id": f"O{o}",
                    "sku": f"S{s}",
                    "qty": int(rng.choice([1, 1, 1, 2, 3])),
                    "lat": lat,
                    "lon": lon,
                    "ship_complete": sc,
                    "allow_backorder": bo,
                }
            )
    network = Network.from_frames(locations, pl.DataFrame(stock_rows))
    return compile_problem(network, Orders.from_frame(pl.DataFrame(rows)), rules)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-7)
