"""The public entry point: rules + problem -> the right solver -> a plan."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from allocator.errors import InputError
from allocator.model import Network, Order, Orders, read_assignments
from allocator.plan import Plan, Status, check_feasible, cost_quantum, evaluate, round_up_bound
from allocator.problem import Problem, compile_problem
from allocator.rules.schema import RuleSet
from allocator.solvers.exact import solve_exact
from allocator.solvers.greedy import greedy_baseline

__all__ = ["allocate", "solve"]

log = logging.getLogger("allocator")


def _as_orders(orders: Orders | Order | list[Order]) -> Orders:
    if isinstance(orders, Orders):
        return orders
    if isinstance(orders, Order):
        return Orders.from_models([orders])
    if isinstance(orders, list) and all(isinstance(o, Order) for o in orders):
        return Orders.from_models(orders)
    raise InputError(
        f"expected Orders, an Order or a list of Order, got {type(orders).__name__}",
        source="orders",
    )


def _resolve_rules(rules: RuleSet | str | Path | None, policy: str | None) -> RuleSet:
    """The rule set named by ``rules`` or ``policy``.

    ``"optimize"``, ``"greedy"`` and ``"baseline"`` are built in; any other name is a bundled
    rule set (``rules/*.toml``, ``rules/peers/*.toml``) and a path is a rule file.
    """
    if rules is not None and policy is not None:
        raise InputError("give either rules or policy, not both", source="policy")
    if isinstance(rules, RuleSet):
        return rules
    name = policy if policy is not None else rules
    if name is None:
        return RuleSet()
    if str(name) in ("greedy", "baseline"):
        return RuleSet(name="greedy", strategy="greedy")
    if str(name) == "optimize":
        return RuleSet(name="optimize")
    from allocator.rules.load import load_rules

    return load_rules(name)


#: Problems with at most this many arcs go to the exact MILP under ``method="auto"``: measured on
#: generated instances, the MILP proves optimality in about 1.5 s at 2,000 arcs (200 orders) and
#: needs about 10 s at 5,500 arcs, while the decomposition reaches a certified gap below 1 %
#: within a few seconds at any size (``benchmarks/RESULTS.md``).
EXACT_MAX_ARCS = 4_000
#: Under ``method="auto"`` without a time limit, a decomposition plan of a problem with at most
#: this many arcs that is not proven optimal is handed, as a starting plan, to the exact MILP, so
#: that batches of about 1,000 orders end at a proven optimum. (With a time limit the
#: decomposition's plan and certified bound are returned as soon as it stalls: simulations and
#: nightly jobs that set a limit keep its speed.) Measured
#: (``benchmarks/RESULTS.md``): on 1,000 orders / 20 locations (19,206 arcs) the decomposition
#: stalls at a 0.18 % gap after 7.5 s, and HiGHS started from its plan proves the optimum in
#: about 30 s (SCIP took 66 s from the same plan).
EXACT_FINISH_MAX_ARCS = 50_000

#: With ``prove=True``, how many times larger the decomposition's groups are taken in each round
#: after its search stalls (measured on 1,000 orders: 8 reaches the one group of every contested
#: order at once, and the proof, in 7.6-7.9 s on a quiet pool of two, 17.5-20 s under load; 4
#: took three rounds and did not finish in 30 s).
PROVE_GROWTH = 8
#: With ``prove=True``, a problem of at most :data:`EXACT_FINISH_MAX_ARCS` arcs whose
#: decomposition returns unproven with more than this many seconds left spends them in the exact
#: MILP, started from the plan (the groups cannot close every gap: a stock row the master LP
#: leaves unpriced may still bind among the orders that share it).
PROVE_MIN_SECONDS = 0.5

Method = Literal["auto", "exact", "decompose"]


def solve(
    problem: Problem,
    *,
    time_limit: float | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    method: Method = "auto",
    warm_start: Plan | pl.DataFrame | str | Path | None = None,
    change_penalty: float = 0.0,
    prove: bool = False,
) -> Plan:
    """Solve a compiled problem with the strategy its rule set names.

    ``optimize`` runs the exact MILP on small problems and the decomposition
    (:func:`allocator.solvers.decompose.optimize`) on large ones. When the time limit stops the
    MILP before any plan, or its plan is worse, the greedy baseline is returned instead, with
    the solver's bound.

    Parameters
    ----------
    problem
        The compiled problem.
    time_limit
        Seconds for the optimiser.
    seed
        Solver seed.
    executor
        Runs the decomposition's partitions in parallel (``None``: serial).
    method
        ``"auto"`` (exact up to :data:`EXACT_MAX_ARCS` arcs, else decompose; without a time
        limit, a decomposition plan of up to :data:`EXACT_FINISH_MAX_ARCS` arcs that is not
        proven optimal is finished by the exact MILP), ``"exact"`` or ``"decompose"``.
    warm_start
        A previous plan, its assignments table, or the path of a result folder or assignments
        file (:func:`~allocator.model.read_assignments`) to re-optimise from (decomposition
        only).
    change_penalty
        Cost per parcel that an order which had a plan in ``warm_start`` did not use before.
    prove
        Spend the time limit on the certificate instead of returning when the decomposition's
        search stalls: its bound is taken again over larger groups of contested orders (eight
        times larger each round, up to :data:`~allocator.solvers.decompose.GROUP_MAX_ORDERS`
        orders), each group's plan re-sourced against the incumbent; then, for problems of up to
        :data:`EXACT_FINISH_MAX_ARCS` arcs still unproven, the time left goes to the exact MILP
        started from the plan. Without a time limit the decomposition is unchanged and such
        problems are finished by the exact MILP (as under ``method="auto"``). The exact MILP
        proves anyway. Measured on 1,000 orders / 20 locations: proven optimal in about 8 s on
        two workers of a quiet machine (18 s under load), where a 5 s run stops at a 0.03 % gap
        (``benchmarks/RESULTS.md``).

    The time limit counts from this call (loading the solver modules included).
    """
    rules = problem.rules
    t0 = time.perf_counter()
    optimising = warm_start is not None or change_penalty != 0.0 or prove
    if rules.strategy == "greedy":
        if optimising:
            raise InputError(
                f"rule set {rules.name!r} is a greedy policy: warm_start, change_penalty and "
                "prove need an optimising one",
                source="policy",
            )
        from allocator.policies import run_greedy

        return run_greedy(problem)
    if method not in ("auto", "exact", "decompose"):
        raise InputError(
            f"method must be 'auto', 'exact' or 'decompose', got {method!r}", source="method"
        )
    if change_penalty < 0 or not np.isfinite(change_penalty):
        raise InputError(
            f"change_penalty must be >= 0, got {change_penalty}", source="change_penalty"
        )
    if isinstance(warm_start, str | Path):
        warm_start = read_assignments(warm_start)
    if change_penalty > 0 and warm_start is None:
        raise InputError(
            "change_penalty needs warm_start (the previous plan whose changes it prices)",
            source="change_penalty",
        )
    stable = warm_start is not None or change_penalty > 0
    if method == "exact" and stable:
        raise InputError(
            "warm_start and change_penalty need method 'auto' or 'decompose'", source="method"
        )
    if method == "decompose" or (method == "auto" and (stable or problem.n_arcs > EXACT_MAX_ARCS)):
        from allocator.solvers.decompose import optimize

        plan = optimize(
            problem,
            time_limit=time_limit,
            seed=seed,
            executor=executor,
            warm_start=warm_start,
            change_penalty=change_penalty,
            group_growth=PROVE_GROWTH if prove else 0,
            started=t0,
        )
        if __debug__:
            problems = check_feasible(problem, plan.solution)
            if problems:  # pragma: no cover - a solver bug, never expected
                raise AssertionError(
                    "decomposition returned an infeasible plan: " + "; ".join(problems)
                )
        small = not stable and problem.n_arcs <= EXACT_FINISH_MAX_ARCS
        if small and time_limit is None and (method == "auto" or prove):
            plan = _finish_exactly(problem, plan, seed, t0, None)
        elif small and prove and time_limit is not None:
            left = time_limit - (time.perf_counter() - t0)
            if left > PROVE_MIN_SECONDS:
                plan = _finish_exactly(problem, plan, seed, t0, left)
        return plan
    result = solve_exact(problem, time_limit=time_limit, seed=seed)
    bound = result.lower_bound
    if result.solution is None:
        fallback = greedy_baseline(problem)
        return Plan(
            problem,
            fallback.solution,
            Status.TIME_LIMIT,
            rules.name,
            lower_bound=bound,
            seconds=time.perf_counter() - t0,
            info={"solver": result.backend, "solver_status": result.status, "fallback": "greedy"},
        )
    status = Status.OPTIMAL if result.optimal else Status.TIME_LIMIT
    solution = result.solution
    if not result.optimal:
        # A time-limited incumbent may be poor: keep whichever plan is cheaper.
        fallback = greedy_baseline(problem)
        if evaluate(problem, fallback.solution).total < evaluate(problem, solution).total:
            solution = fallback.solution
    if __debug__:
        problems = check_feasible(problem, solution)
        if problems:  # pragma: no cover - a solver bug, never expected
            raise AssertionError("solver returned an infeasible plan: " + "; ".join(problems))
    return Plan(
        problem,
        solution,
        status,
        rules.name,
        lower_bound=bound,
        seconds=time.perf_counter() - t0,
        info={
            "solver": result.backend,
            "solver_status": result.status,
            "build_seconds": result.build_seconds,
        },
    )


def _finish_exactly(
    problem: Problem, plan: Plan, seed: int, t0: float, time_limit: float | None
) -> Plan:
    """Hand a decomposition plan that is not proven optimal to the exact MILP.

    HiGHS starts from the plan as its first incumbent (:func:`~allocator.solvers._prove.
    prove`); the cheaper plan and the stronger bound are kept. Measured on 1,000 orders / 20
    locations: HiGHS proves the optimum in about 30 s from the plan, SCIP with the plan as a
    hint in 66 s (``benchmarks/RESULTS.md``). With ``time_limit`` the MILP stops then, and its
    bound counts if it is the stronger.
    """
    if plan.status == Status.OPTIMAL:
        return plan
    from allocator.solvers._prove import prove

    start_cost = evaluate(problem, plan.solution).total
    result = prove(problem, plan.solution, start_cost, seed=seed, time_limit=time_limit)
    solution, cost = plan.solution, start_cost
    if result.solution is not None and not check_feasible(problem, result.solution):
        better = evaluate(problem, result.solution).total
        if better < cost - 1e-9 * max(1.0, abs(cost)):
            solution, cost = result.solution, better
    bound = max(plan.lower_bound or -math.inf, result.bound)
    bound = min(cost, round_up_bound(bound, cost_quantum(problem)))
    gap = (cost - bound) / max(abs(cost), 1e-9)
    if gap <= 1e-6:
        status = Status.OPTIMAL
    elif time_limit is not None and not result.optimal:
        status = Status.TIME_LIMIT
    else:
        status = plan.status
    info = dict(plan.info)
    info.update(
        solver="decompose+highs",
        solver_status="optimal" if result.optimal else "stopped",
        decompose_cost=start_cost,
        decompose_bound=plan.lower_bound,
    )
    return Plan(
        problem,
        solution,
        status,
        problem.rules.name,
        lower_bound=bound,
        seconds=time.perf_counter() - t0,
        info=info,
    )


def allocate(
    network: Network,
    orders: Orders | Order | list[Order],
    *,
    rules: RuleSet | str | Path | None = None,
    policy: str | None = None,
    time_limit: float | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    method: Method = "auto",
    warm_start: Plan | pl.DataFrame | str | Path | None = None,
    change_penalty: float = 0.0,
    prove: bool = False,
) -> Plan:
    """Source orders from a network.

    Parameters
    ----------
    network
        Locations and stock (see :func:`allocator.read_network` or :meth:`Network.from_frames`).
    orders
        An :class:`Orders` table, one :class:`Order`, or a list of them.
    rules
        A :class:`RuleSet`, or the name or path of a rule file.
    policy
        Name of a bundled policy (``"optimize"``, ``"greedy"``, or a peer policy such as
        ``"shopify_default"``). Give ``rules`` or ``policy``, not both.
    time_limit
        Seconds for the optimiser; the best plan found so far is returned with its bound.
    seed
        Seed for the solver (the same input, rules and seed give the same plan).
    executor
        Runs independent pieces of work in parallel (``None``: serial and deterministic): a
        ``ProcessPoolExecutor`` or a Dask ``Client.get_executor()``.
    method
        ``"auto"`` (the exact MILP for small problems, the decomposition for large ones),
        ``"exact"`` or ``"decompose"``.
    warm_start
        Yesterday's plan, its assignments table, or the path of its result folder (or
        assignments file) to re-optimise from.
    change_penalty
        Cost per parcel (order, location) that an order which had a plan in ``warm_start`` did
        not use before, so that plans do not churn.
    prove
        Spend the whole time limit closing the gap rather than returning when the search
        stalls (see :func:`solve`).

    Returns
    -------
    Plan
        Assignments, backorders, rejections, cost, bound and gap.

    Examples
    --------
    >>> from allocator import Location, StockLevel, Order, OrderLine, Network, allocate
    >>> net = Network.from_models(
    ...     [Location(location_id="A", lat=40.7, lon=-74.0), Location(location_id="B", lat=34.1, lon=-118.2)],
    ...     [StockLevel(location_id="A", sku="mug", on_hand=1), StockLevel(location_id="B", sku="mug", on_hand=5)],
    ... )
    >>> plan = allocate(net, Order(order_id="o1", lat=40.6, lon=-73.9, lines=(OrderLine(sku="mug", qty=2),)))
    >>> plan.assignments.select("location_id", "qty").rows()
    [('B', 2)]
    """
    if time_limit is not None and not time_limit > 0:
        raise InputError(f"time_limit must be > 0 seconds, got {time_limit}", source="time_limit")
    rule_set = _resolve_rules(rules, policy)
    problem = compile_problem(network, _as_orders(orders), rule_set)
    return solve(
        problem,
        time_limit=time_limit,
        seed=seed,
        executor=executor,
        method=method,
        warm_start=warm_start,
        change_penalty=change_penalty,
        prove=prove,
    )
