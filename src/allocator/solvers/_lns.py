"""Fix-and-solve: re-optimise small neighbourhoods of a plan exactly with HiGHS.

A neighbourhood is a set of orders; every other order keeps its sourcing, and the chosen orders
are re-sourced by the exact MILP (:func:`~allocator.solvers.exact.build_milp`) against what the
others leave (:func:`._restrict.restrict`), starting from their current sourcing, under a node
limit (deterministic, unlike a time limit). A better sub-plan replaces the old one; the full plan
stays feasible by construction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers._lp import HighsHandle
from allocator.solvers._restrict import Restricted, restrict
from allocator.solvers.exact import MilpModel, build_milp, solution_from_values
from allocator.solvers.lagrangian import Coupling

__all__ = ["improve_neighbourhood", "neighbourhoods"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _sub_solution(full: Problem, sub: Restricted, solution: Solution) -> Solution:
    return Solution(
        solution.arc_qty[sub.arcs].astype(np.int64),
        solution.line_backorder[sub.lines].astype(np.int64),
        solution.order_rejected[sub.orders].copy(),
    )


def _start_vector(problem: Problem, model: MilpModel, sol: Solution) -> FloatArray:
    """MILP variable values of a plan of ``problem`` (the sub-problem)."""
    p = problem
    shipped_pair = np.bincount(p.arc_pair, weights=sol.arc_qty, minlength=p.n_pairs) > 0
    shipped_order = np.bincount(p.pair_order[shipped_pair], minlength=p.n_orders) > 0
    waiting = p.order_ship_complete & p.order_allow_backorder & ~shipped_order
    r = sol.order_rejected | waiting
    return np.concatenate(
        [
            sol.arc_qty[model.x_arcs].astype(np.float64),
            shipped_pair[model.y_pairs].astype(np.float64),
            sol.line_backorder[model.b_lines].astype(np.float64),
            r[model.r_orders].astype(np.float64),
        ]
    )


def improve_neighbourhood(
    problem: Problem,
    solution: Solution,
    orders: IntArray,
    *,
    pair_extra: FloatArray | None = None,
    node_limit: int = 500,
    time_limit: float | None = None,
    seed: int = 0,
) -> tuple[Solution, float]:
    """Re-source ``orders`` exactly against the rest of ``solution``.

    Returns
    -------
    (Solution, float)
        The (possibly) improved plan and the improvement in cost (``0`` if none).
    """
    sub = restrict(problem, orders, solution.arc_qty, pair_extra_cost=pair_extra)
    sp_ = sub.problem
    if sp_.n_orders == 0:
        return solution, 0.0
    model = build_milp(sp_)
    if model.n_vars == 0:
        return solution, 0.0
    current = _sub_solution(problem, sub, solution)
    start = _start_vector(sp_, model, current)
    current_cost = float(model.objective @ start)
    handle = HighsHandle(model.row_lower, model.row_upper, seed=seed)
    handle.add_columns(model.objective, model.upper, model.matrix.tocsc())
    res = handle.solve_mip(
        model.integer,
        time_limit=time_limit,
        gap=1e-6,
        start=start,
        node_limit=node_limit,
    )
    if res.x is None or not res.objective < current_cost - 1e-6 * max(1.0, abs(current_cost)):
        return solution, 0.0
    better = solution_from_values(sp_, model, res.x)
    return sub.lift(problem, better, solution), current_cost - res.objective


def neighbourhoods(
    problem: Problem,
    coupling: Coupling,
    seeds: IntArray,
    solution: Solution,
    unit_price: FloatArray,
    ship_price: FloatArray,
    *,
    size: int = 120,
    rng: np.random.Generator | None = None,
) -> list[IntArray]:
    """Groups of at most ``size`` orders around ``seeds``, linked by priced rows they could use.

    Orders are linked through the priced coupling rows (stock, capacities) that any of their
    arcs counts in; each group grows breadth-first from an unvisited seed.
    """
    p = problem
    priced_unit = unit_price > 1e-9
    arc_rows = coupling.arc_rows.tocsc()[:, priced_unit] if priced_unit.any() else None
    arc_order = p.line_order[p.arc_line]
    incidence = []
    if arc_rows is not None and arc_rows.nnz:
        coo = arc_rows.tocoo()
        incidence.append((arc_order[coo.row], coo.col.astype(np.int64)))
    priced_ship = ship_price > 1e-9
    if priced_ship.any():
        srow = coupling.pair_ship_row
        sel = (srow >= 0) & priced_ship[np.maximum(srow, 0)]
        offset = int(priced_unit.sum())
        incidence.append((p.pair_order[sel], offset + srow[sel]))
    if not incidence:
        return [np.asarray(seeds, dtype=np.int64)[i : i + size] for i in range(0, len(seeds), size)]
    o = np.concatenate([a for a, _ in incidence])
    r = np.concatenate([b for _, b in incidence])
    key = np.unique(o * (r.max() + 1) + r)
    o, r = key // (r.max() + 1), key % (r.max() + 1)
    import scipy.sparse as sp

    n_rows = int(r.max()) + 1 if len(r) else 0
    m = sp.csr_matrix((np.ones(len(o)), (o, r)), shape=(p.n_orders, n_rows))
    mt = sp.csr_matrix(m.T)
    visited = np.zeros(p.n_orders, bool)
    groups: list[IntArray] = []
    order_seeds = list(np.asarray(seeds, dtype=np.int64))
    if rng is not None:
        rng.shuffle(order_seeds)
    for s in order_seeds:
        if visited[s]:
            continue
        group = [int(s)]
        visited[s] = True
        frontier = [int(s)]
        while frontier and len(group) < size:
            rows = np.unique(m[frontier].indices)
            nxt = np.unique(mt[rows].indices)
            nxt = nxt[~visited[nxt]]
            if len(nxt) == 0:
                break
            take = nxt[: size - len(group)]
            visited[take] = True
            group.extend(take.tolist())
            frontier = take.tolist()
        groups.append(np.sort(np.asarray(group, dtype=np.int64)))
    return groups
