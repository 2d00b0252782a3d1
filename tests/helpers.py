"""Small-instance builders and a brute-force optimum for checking the solvers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import polars as pl
from hypothesis import strategies as st

from allocator import Network, Orders
from allocator.plan import Solution, check_feasible, evaluate
from allocator.problem import Problem


def compositions(total_max: int, caps: list[int]) -> Iterator[tuple[int, ...]]:
    """Every vector x with 0 <= x_i <= caps[i] and sum(x) <= total_max."""
    for x in itertools.product(*(range(c + 1) for c in caps)):
        if sum(x) <= total_max:
            yield x


def brute_force(problem: Problem) -> tuple[float, Solution]:
    """The cheapest feasible solution by enumerating every arc quantity and rejection."""
    p = problem
    per_line = []
    for k in range(p.n_lines):
        arcs = list(range(p.line_arc_start[k], p.line_arc_start[k + 1]))
        caps = [int(p.arc_cap[a]) for a in arcs]
        per_line.append((arcs, list(compositions(int(p.line_qty[k]), caps))))
    best: tuple[float, Solution] | None = None
    rejectable = [o for o in range(p.n_orders) if not p.order_allow_backorder[o]]
    for choice in itertools.product(*(opts for _, opts in per_line)):
        arc_qty = np.zeros(p.n_arcs, np.int64)
        for (arcs, _), x in zip(per_line, choice, strict=True):
            arc_qty[arcs] = x
        shipped = np.bincount(p.arc_line, weights=arc_qty, minlength=p.n_lines).astype(np.int64)
        for mask in itertools.product((False, True), repeat=len(rejectable)):
            rejected = np.zeros(p.n_orders, bool)
            rejected[rejectable] = mask
            if np.any(rejected[p.line_order] & (shipped > 0)):
                continue
            backorder = np.where(rejected[p.line_order], 0, p.line_qty - shipped).astype(np.int64)
            sol = Solution(arc_qty, backorder, rejected)
            if check_feasible(p, sol):
                continue
            cost = evaluate(p, sol).total
            if best is None or cost < best[0] - 1e-9:
                best = (cost, sol)
    assert best is not None, "the all-backorder/reject plan is always feasible"
    return best


@st.composite
def small_instances(draw: st.DrawFn, max_lines: int = 4) -> tuple[Network, Orders]:
    """Tiny networks and orders that brute force can solve."""
    n_loc = draw(st.integers(1, 3))
    skus = ["A", "B", "C"][: draw(st.integers(1, 3))]
    locations = pl.DataFrame(
        {
            "location_id": [f"L{i}" for i in range(n_loc)],
            "kind": [draw(st.sampled_from(["warehouse", "store"])) for _ in range(n_loc)],
            "lat": [draw(st.floats(25, 48)) for _ in range(n_loc)],
            "lon": [draw(st.floats(-122, -70)) for _ in range(n_loc)],
            "can_pickup": [True] * n_loc,
            "capacity_units": [draw(st.one_of(st.none(), st.integers(0, 4))) for _ in range(n_loc)],
            "capacity_shipments": [
                draw(st.one_of(st.none(), st.integers(0, 2))) for _ in range(n_loc)
            ],
        },
        schema_overrides={"capacity_units": pl.Int64, "capacity_shipments": pl.Int64},
    )
    stock_rows = [
        {"location_id": f"L{i}", "sku": s, "on_hand": draw(st.integers(0, 3))}
        for i in range(n_loc)
        for s in skus
        if draw(st.booleans())
    ] or [{"location_id": "L0", "sku": skus[0], "on_hand": 1}]
    n_lines = draw(st.integers(1, max_lines))
    rows = []
    order = 0
    while len(rows) < n_lines:
        k = draw(st.integers(1, min(2, n_lines - len(rows), len(skus))))
        flags = {
            "lat": draw(st.floats(25, 48)),
            "lon": draw(st.floats(-122, -70)),
            "priority": draw(st.integers(0, 2)),
            "ship_complete": draw(st.booleans()),
            "allow_backorder": draw(st.booleans()),
        }
        line_skus = draw(st.lists(st.sampled_from(skus), min_size=k, max_size=k, unique=True))
        for s in line_skus:
            rows.append(
                {"order_id": f"O{order}", "sku": s, "qty": draw(st.integers(1, 2)), **flags}
            )
        order += 1
    network = Network.from_frames(locations, pl.DataFrame(stock_rows))
    return network, Orders.from_frame(pl.DataFrame(rows))


def is_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-6)
