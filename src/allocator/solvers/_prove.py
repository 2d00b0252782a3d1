"""Proving a plan optimal: the whole model as one MILP, started from the decomposition's plan.

The pattern LP leaves a small gap that column generation cannot close (1,000 orders: the LP is
0.16 % below the optimum). HiGHS's cuts on the compact model (:func:`~allocator.solvers.exact.
build_milp`) lift its bound above the pattern LP once its root is done, and with a near-optimal
plan as its first incumbent the search only has to prove. Measured on the 1,000-order benchmark
(``benchmarks/RESULTS.md``): HiGHS through SciPy's binding, started from the decomposition's
plan, proves the optimum in about 30 s; SCIP through OR-Tools with the same plan as a hint takes
66 s (OR-Tools' HiGHS takes no starting plan).

Measured and not kept: closing (order, location) pairs whose every pattern has a reduced cost
above the gap (a Lagrangian argument; at that gap it closed 2 % of the pairs and saved 2 s of
30), and one row per order holding its priced cost at or above its pricing value (it lifts the
MILP's LP to the pattern LP, but made that LP twelve times slower to solve).
"""

from __future__ import annotations

from dataclasses import dataclass

from allocator.plan import Solution
from allocator.problem import Problem
from allocator.solvers._lp import solve_model
from allocator.solvers.exact import build_milp, milp_values, solution_from_values

__all__ = ["ProofResult", "prove"]


@dataclass(frozen=True, eq=False)
class ProofResult:
    """What the exact MILP found.

    ``bound`` is a lower bound on the problem (``cost`` when ``optimal``); ``solution`` is a
    plan cheaper than the incumbent, or ``None`` when the MILP found none.
    """

    solution: Solution | None
    cost: float
    bound: float
    optimal: bool


def prove(
    problem: Problem,
    incumbent: Solution,
    incumbent_cost: float,
    *,
    time_limit: float | None = None,
    gap: float = 1e-6,
    seed: int = 0,
) -> ProofResult:
    """Solve the whole sourcing model as a MILP, starting from ``incumbent``.

    Parameters
    ----------
    problem
        The compiled problem.
    incumbent
        A feasible plan: HiGHS's first incumbent.
    incumbent_cost
        Its cost.
    time_limit
        Seconds (``None``: until the gap is closed).
    gap
        Relative gap at which the search stops and the plan counts as optimal.
    seed
        HiGHS random seed.

    Returns
    -------
    ProofResult
        Units are rounded from HiGHS's values; callers check the plan before using it.
    """
    p = problem
    model = build_milp(p)
    if model.n_vars == 0:
        return ProofResult(None, incumbent_cost, incumbent_cost, True)
    start = milp_values(p, model, incumbent)
    res = solve_model(model, start, time_limit=time_limit, gap=gap, seed=seed)
    solution = None
    cost = incumbent_cost
    if res.x is not None and res.objective < incumbent_cost:
        solution = solution_from_values(p, model, res.x)
        cost = float(res.objective)
    bound = min(float(res.bound), cost)
    optimal = res.status == "optimal" or cost - bound <= gap * max(1.0, abs(cost))
    return ProofResult(solution, cost, bound, optimal)
