"""The exact optimiser: one mixed-integer program, built from arrays, solved by HiGHS.

Formulation (all sums over the sparse arcs and pairs of :class:`~allocator.problem.Problem`):

* ``x[a]`` integer in ``[0, cap_a]``: units of line ``k(a)`` from location ``l(a)``, for orders
  that may split;
* ``y[p]`` binary: order ``o(p)`` ships from location ``l(p)`` (one parcel, its fixed cost).
  For ship-complete orders ``y[p]`` exists only where the location covers every line, and then
  it carries the units too;
* ``b[k]`` >= 0: backordered units of line ``k`` (orders that allow backorders);
* ``r[o]`` binary: order ``o`` is rejected (no backorders allowed) or, for a ship-complete order
  that allows backorders, waits whole.

Rows: every line is shipped, backordered or rejected; ``x[a] <= cap_a * y[p(a)]`` with the tight
``cap_a = min(qty, ATP)``; ATP per (location, SKU); one covering location or ``r`` per
ship-complete order; the split cap; units and shipments capacity per location.

Minimise unit cost + parcel cost + backorder and rejection penalties.

The backend is HiGHS through OR-Tools' ``model_builder`` helper, filled from a scipy CSR matrix
in one call (``measurements.md``: 0.15-0.3 s for a 750k-variable model where scalar APIs take
6-17 s). HiGHS was chosen over CP-SAT (5-8x slower on 2 cores, and it needs integer costs) and
over SCIP (slower on the fixed-charge benchmarks here; see ``benchmarks/RESULTS.md``). It runs
single-threaded with a fixed seed, so the same input gives the same plan.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.errors import InputError, SolverError
from allocator.plan import Solution
from allocator.problem import Problem

__all__ = ["ExactResult", "MilpModel", "build_milp", "solve_exact"]

log = logging.getLogger("allocator")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class MilpModel:
    """The MILP as arrays, plus the maps from variables back to the problem."""

    lower: FloatArray
    upper: FloatArray
    objective: FloatArray
    integer: npt.NDArray[np.bool_]
    row_lower: FloatArray
    row_upper: FloatArray
    matrix: sp.csr_matrix
    x_arcs: IntArray  # arc index of each x variable
    y_pairs: IntArray  # pair index of each y variable
    b_lines: IntArray  # line index of each b variable
    r_orders: IntArray  # order index of each r variable
    sc_pair_mask: npt.NDArray[np.bool_]  # y variables that are ship-complete patterns

    @property
    def n_vars(self) -> int:
        return len(self.objective)

    @property
    def offsets(self) -> tuple[int, int, int, int]:
        nx, ny, nb = len(self.x_arcs), len(self.y_pairs), len(self.b_lines)
        return 0, nx, nx + ny, nx + ny + nb


def build_milp(problem: Problem) -> MilpModel:
    """Build the sourcing MILP of ``problem`` as sparse arrays (no loop per variable)."""
    p = problem
    sc_order = p.order_ship_complete
    arc_sc = sc_order[p.line_order[p.arc_line]]
    pair_sc = sc_order[p.pair_order]

    x_arcs = np.flatnonzero(~arc_sc)
    y_regular = np.flatnonzero(~pair_sc)
    y_sc = np.flatnonzero(pair_sc & p.pair_covers)
    y_pairs = np.concatenate([y_regular, y_sc])
    sc_pair_mask = np.concatenate([np.zeros(len(y_regular), bool), np.ones(len(y_sc), bool)])
    line_regular = ~sc_order[p.line_order]
    b_lines = np.flatnonzero(line_regular & p.order_allow_backorder[p.line_order])
    r_orders = np.flatnonzero(sc_order | ~p.order_allow_backorder)

    nx, ny, nb, nr = len(x_arcs), len(y_pairs), len(b_lines), len(r_orders)
    ox, oy, ob, orr = 0, nx, nx + ny, nx + ny + nb
    n = nx + ny + nb + nr
    # Variable index maps from problem indices.
    y_of_pair = np.full(p.n_pairs, -1, np.int64)
    y_of_pair[y_pairs] = oy + np.arange(ny)
    r_of_order = np.full(p.n_orders, -1, np.int64)
    r_of_order[r_orders] = orr + np.arange(nr)

    lower = np.zeros(n)
    upper = np.concatenate(
        [
            p.arc_cap[x_arcs].astype(np.float64),
            np.ones(ny),
            p.line_qty[b_lines].astype(float),
            np.ones(nr),
        ]
    )
    # Units x are declared continuous when there are no side limits: once the binaries y and r
    # are fixed, the rows left over x (one demand row per line; ATP rows per (location, SKU)
    # nested in capacity rows per location) are two laminar families, so the matrix is totally
    # unimodular and the LP has integral vertices. The relaxation is then stronger and the
    # search much faster (the demo instance: 8.7 s -> 1.9 s with SCIP). solve_exact checks the
    # returned x and repairs any non-vertex value by re-solving with the binaries fixed.
    x_integer = p.n_limits > 0
    integer = np.concatenate(
        [np.full(nx, x_integer), np.ones(ny, bool), np.zeros(nb, bool), np.ones(nr, bool)]
    )

    # Objective.
    sc_units_cost = np.bincount(
        p.arc_pair,
        weights=p.arc_unit_cost * p.line_qty[p.arc_line],
        minlength=p.n_pairs,
    )
    y_cost = p.pair_shipment_cost[y_pairs] + np.where(sc_pair_mask, sc_units_cost[y_pairs], 0.0)
    sc_wait_cost = np.bincount(
        p.line_order, weights=p.line_backorder_cost * p.line_qty, minlength=p.n_orders
    )
    r_cost = np.where(
        p.order_allow_backorder[r_orders] & sc_order[r_orders],
        sc_wait_cost[r_orders],
        p.order_reject_cost[r_orders],
    )
    objective = np.concatenate(
        [p.arc_unit_cost[x_arcs], y_cost, p.line_backorder_cost[b_lines], r_cost]
    )

    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    rlo: list[FloatArray] = []
    rhi: list[FloatArray] = []
    n_rows = 0

    def block(r: IntArray, c: IntArray, v: FloatArray) -> None:
        rows.append(r.astype(np.int64))
        cols.append(c.astype(np.int64))
        vals.append(np.asarray(v, dtype=np.float64))

    # (1) Demand of regular lines: sum_a x + b = q, or sum_a x + q r = q.
    reg_lines = np.flatnonzero(line_regular)
    line_row = np.full(p.n_lines, -1, np.int64)
    line_row[reg_lines] = n_rows + np.arange(len(reg_lines))
    block(line_row[p.arc_line[x_arcs]], ox + np.arange(nx), np.ones(nx))
    block(line_row[b_lines], ob + np.arange(nb), np.ones(nb))
    nob = reg_lines[~p.order_allow_backorder[p.line_order[reg_lines]]]
    block(line_row[nob], r_of_order[p.line_order[nob]], p.line_qty[nob].astype(float))
    q = p.line_qty[reg_lines].astype(float)
    rlo.append(q)
    rhi.append(q)
    n_rows += len(reg_lines)

    # (2) Linking: x_a - cap_a * y_p <= 0.
    link = n_rows + np.arange(nx)
    block(link, ox + np.arange(nx), np.ones(nx))
    block(link, y_of_pair[p.arc_pair[x_arcs]], -p.arc_cap[x_arcs].astype(float))
    rlo.append(np.full(nx, -np.inf))
    rhi.append(np.zeros(nx))
    n_rows += nx

    # (3) Ship-complete: sum of covering y + r = 1.
    sc_orders = np.flatnonzero(sc_order)
    sc_row = np.full(p.n_orders, -1, np.int64)
    sc_row[sc_orders] = n_rows + np.arange(len(sc_orders))
    sc_vars = oy + np.flatnonzero(sc_pair_mask)
    block(sc_row[p.pair_order[y_pairs[sc_pair_mask]]], sc_vars, np.ones(len(sc_vars)))
    block(sc_row[sc_orders], r_of_order[sc_orders], np.ones(len(sc_orders)))
    rlo.append(np.ones(len(sc_orders)))
    rhi.append(np.ones(len(sc_orders)))
    n_rows += len(sc_orders)

    # (4) ATP per (location, sku), only where demand could exceed it.
    n_sku = p.atp.shape[1]
    arc_key = p.arc_location * n_sku + p.arc_sku()
    sc_arc = np.flatnonzero(arc_sc & (y_of_pair[p.arc_pair] >= 0))
    keys = np.concatenate([arc_key[x_arcs], arc_key[sc_arc]])
    coef = np.concatenate([np.ones(nx), p.line_qty[p.arc_line[sc_arc]].astype(float)])
    var = np.concatenate([ox + np.arange(nx), y_of_pair[p.arc_pair[sc_arc]]])
    if len(keys):
        demand = np.bincount(
            keys, weights=coef * np.where(np.arange(len(keys)) < nx, upper[var], 1.0)
        )
        uniq, inverse = np.unique(keys, return_inverse=True)
        binding = demand[uniq] > p.atp.ravel()[uniq]
        keep = binding[inverse]
        stock_row = n_rows + np.cumsum(binding) - 1
        block(stock_row[inverse[keep]], var[keep], coef[keep])
        nbind = int(binding.sum())
        rlo.append(np.full(nbind, -np.inf))
        rhi.append(p.atp.ravel()[uniq[binding]].astype(float))
        n_rows += nbind

    # (5) Split cap on regular orders where it can bind.
    pairs_per_order = np.diff(p.order_pair_start)
    capped = np.flatnonzero(~sc_order & (pairs_per_order > p.order_max_locations))
    if len(capped):
        cap_row = np.full(p.n_orders, -1, np.int64)
        cap_row[capped] = n_rows + np.arange(len(capped))
        yr = np.arange(len(y_regular))
        sel = cap_row[p.pair_order[y_regular]] >= 0
        block(cap_row[p.pair_order[y_regular[sel]]], oy + yr[sel], np.ones(int(sel.sum())))
        rlo.append(np.full(len(capped), -np.inf))
        rhi.append(p.order_max_locations[capped].astype(float))
        n_rows += len(capped)

    # (6) Capacity in units and (7) in shipments per location.
    cap_u = np.flatnonzero(np.isfinite(p.location_capacity_units))
    if len(cap_u):
        row_of = np.full(p.n_locations, -1, np.int64)
        row_of[cap_u] = n_rows + np.arange(len(cap_u))
        xl = row_of[p.arc_location[x_arcs]]
        sel = xl >= 0
        block(xl[sel], ox + np.flatnonzero(sel), np.ones(int(sel.sum())))
        yl = row_of[p.pair_location[y_pairs]]
        sel = (yl >= 0) & sc_pair_mask
        block(
            yl[sel],
            oy + np.flatnonzero(sel),
            p.order_units[p.pair_order[y_pairs[sel]]].astype(float),
        )
        rlo.append(np.full(len(cap_u), -np.inf))
        rhi.append(p.location_capacity_units[cap_u])
        n_rows += len(cap_u)
    cap_s = np.flatnonzero(np.isfinite(p.location_capacity_shipments))
    if len(cap_s):
        row_of = np.full(p.n_locations, -1, np.int64)
        row_of[cap_s] = n_rows + np.arange(len(cap_s))
        yl = row_of[p.pair_location[y_pairs]]
        sel = yl >= 0
        block(yl[sel], oy + np.flatnonzero(sel), np.ones(int(sel.sum())))
        rlo.append(np.full(len(cap_s), -np.inf))
        rhi.append(p.location_capacity_shipments[cap_s])
        n_rows += len(cap_s)

    # (8) Side limits over arcs (ring-fencing, exposure caps): x, or q*y for ship-complete.
    if p.n_limits:
        owner = np.repeat(np.arange(p.n_limits), np.diff(p.limit_start))
        arcs = p.limit_arcs
        x_of_arc = np.full(p.n_arcs, -1, np.int64)
        x_of_arc[x_arcs] = ox + np.arange(nx)
        xv = x_of_arc[arcs]
        yv = y_of_pair[p.arc_pair[arcs]]
        use_x = xv >= 0
        use_y = ~use_x & (yv >= 0) & arc_sc[arcs]
        block(n_rows + owner[use_x], xv[use_x], np.ones(int(use_x.sum())))
        block(n_rows + owner[use_y], yv[use_y], p.line_qty[p.arc_line[arcs[use_y]]].astype(float))
        rlo.append(np.full(p.n_limits, -np.inf))
        rhi.append(p.limit_bound.astype(float))
        n_rows += p.n_limits

    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n),
    )
    return MilpModel(
        lower=lower,
        upper=upper,
        objective=objective,
        integer=integer,
        row_lower=np.concatenate(rlo) if rlo else np.zeros(0),
        row_upper=np.concatenate(rhi) if rhi else np.zeros(0),
        matrix=matrix,
        x_arcs=x_arcs,
        y_pairs=y_pairs,
        b_lines=b_lines,
        r_orders=r_orders,
        sc_pair_mask=sc_pair_mask,
    )


def _integral_units(builder: Any, model: MilpModel, values: FloatArray, backend: str) -> FloatArray:
    """Make the unit variables integral without changing the objective.

    With the binaries fixed the unit polytope is integral (see :func:`build_milp`), so a
    solution whose continuous ``x`` is not at a vertex is repaired by re-solving the model with
    every binary fixed and ``x`` integer: a tiny, LP-easy problem.
    """
    ox, oy, _, _ = model.offsets
    x = values[ox:oy]
    if len(x) == 0 or np.abs(x - np.rint(x)).max() <= 1e-6:
        return values
    from ortools.linear_solver.python import model_builder_helper as mbh

    fixed = np.flatnonzero(model.integer)
    for index, value in zip(fixed.tolist(), np.rint(values[fixed]).tolist(), strict=True):
        builder.set_var_lower_bound(index, value)
        builder.set_var_upper_bound(index, value)
    for index in range(ox, oy):
        builder.set_var_integrality(index, True)
    solver: Any = mbh.ModelSolverHelper(backend)
    with _quiet_native_stdout():
        solver.solve(builder)
    if not solver.has_solution():  # pragma: no cover - the fixed model is always feasible
        raise SolverError("could not repair fractional units after the MILP solve")
    return np.asarray(solver.variable_values(), dtype=np.float64)


class _QuietState:
    """Threads inside :func:`_quiet_native_stdout`, and the real stdout saved by the first."""

    lock = threading.Lock()
    depth = 0
    saved: int | None = None


@contextlib.contextmanager
def _quiet_native_stdout() -> Iterator[None]:
    """Silence C-level writes to stdout during a solve.

    HiGHS as bundled with OR-Tools prints some MIP diagnostics with ``printf`` even with
    ``output_flag=false``; a library must not print, so file descriptor 1 points at
    ``/dev/null`` while any solve runs. Solves may run in several threads at once (HiGHS
    releases the GIL): the first to enter redirects, the last to leave restores. (Each
    restoring its own saved descriptor had left stdout on ``/dev/null`` for good when two
    overlapped.)
    """
    fd = 1  # C's stdout, whatever Python's sys.stdout is (a notebook's, pytest's capture)
    state = _QuietState
    with state.lock:
        if state.depth == 0:
            try:
                saved = os.dup(fd)
            except OSError:
                saved = None
            if saved is not None:
                sys.stdout.flush() if sys.stdout is not None else None
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, fd)
                finally:
                    os.close(devnull)
            state.saved = saved
        state.depth += 1
    try:
        yield
    finally:
        with state.lock:
            state.depth -= 1
            if state.depth == 0 and state.saved is not None:
                # printf output still in the C library's buffer (stdout is fully buffered when
                # it is not a terminal) must go to /dev/null too, not to the real stdout at the
                # next flush.
                _flush_c_stdio()
                os.dup2(state.saved, fd)
                os.close(state.saved)
                state.saved = None


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: write out every C stdio buffer (no-op where libc is not at hand)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - platform dependent
        pass


@dataclass(frozen=True, eq=False)
class ExactResult:
    """What the MILP solve returned."""

    backend: str
    solution: Solution | None
    optimal: bool
    lower_bound: float
    objective: float
    seconds: float
    build_seconds: float
    status: str


def solution_from_values(problem: Problem, model: MilpModel, values: FloatArray) -> Solution:
    """Map MILP variable values back to arc, line and order decisions."""
    p = problem
    ox, oy, ob, orr = model.offsets
    arc_qty = np.zeros(p.n_arcs, np.int64)
    arc_qty[model.x_arcs] = np.rint(values[ox:oy]).astype(np.int64)
    y = np.rint(values[oy:ob]) > 0.5
    # Ship-complete patterns: a chosen covering pair ships every line in full.
    chosen_sc = model.y_pairs[model.sc_pair_mask & y]
    if len(chosen_sc):
        sel = np.isin(p.arc_pair, chosen_sc)
        arc_qty[sel] = p.line_qty[p.arc_line[sel]]
    r = np.zeros(p.n_orders, bool)
    r[model.r_orders] = np.rint(values[orr:]) > 0.5
    shipped = np.bincount(p.arc_line, weights=arc_qty, minlength=p.n_lines).astype(np.int64)
    waiting = r & p.order_allow_backorder  # ship-complete orders that wait whole
    rejected = r & ~p.order_allow_backorder
    backorder = np.where(rejected[p.line_order], 0, p.line_qty - shipped).astype(np.int64)
    backorder = np.where(waiting[p.line_order], p.line_qty, backorder)
    return Solution(arc_qty=arc_qty, line_backorder=backorder, order_rejected=rejected)


def milp_values(problem: Problem, model: MilpModel, solution: Solution) -> FloatArray:
    """The MILP variable values of a plan (the inverse of :func:`solution_from_values`)."""
    p = problem
    shipped_pair = np.bincount(p.arc_pair, weights=solution.arc_qty, minlength=p.n_pairs) > 0
    shipped_order = np.bincount(p.pair_order[shipped_pair], minlength=p.n_orders) > 0
    waiting = p.order_ship_complete & p.order_allow_backorder & ~shipped_order
    r = solution.order_rejected | waiting
    return np.concatenate(
        [
            solution.arc_qty[model.x_arcs].astype(np.float64),
            shipped_pair[model.y_pairs].astype(np.float64),
            solution.line_backorder[model.b_lines].astype(np.float64),
            r[model.r_orders].astype(np.float64),
        ]
    )


def solve_exact(
    problem: Problem,
    *,
    time_limit: float | None = None,
    mip_gap: float = 1e-7,
    seed: int = 0,
    threads: int = 1,
    backend: Literal["scip", "highs"] = "scip",
    hint: Solution | None = None,
) -> ExactResult:
    """Solve ``problem`` as one MILP with SCIP (default) or HiGHS through OR-Tools.

    Parameters
    ----------
    problem
        The compiled problem.
    time_limit
        Seconds; ``None`` for no limit. On expiry the best plan found so far is returned with the
        solver's bound.
    mip_gap
        Relative gap at which HiGHS stops and the plan counts as optimal.
    seed
        HiGHS random seed.
    threads
        HiGHS threads (1 keeps runs deterministic; SCIP is single-threaded).
    backend
        ``"scip"`` (default) or ``"highs"``. Both are bundled with OR-Tools. SCIP is the default
        by measurement (``benchmarks/RESULTS.md``): on this problem it was as fast or faster,
        and through OR-Tools only SCIP returns the incumbent plan and its bound when the time
        limit stops the search (HiGHS 1.12 as bundled reports an unknown status and no plan).
    hint
        A feasible plan to start the search from (e.g. the decomposition's); the solver may
        use it as its first incumbent.

    Returns
    -------
    ExactResult
        ``solution`` is ``None`` when the solver found no plan within the time limit.
    """
    from ortools.linear_solver.python import model_builder_helper as mbh

    t0 = time.perf_counter()
    model = build_milp(problem)
    builder: Any = mbh.ModelBuilderHelper()
    builder.fill_model_from_sparse_data(
        model.lower,
        model.upper,
        model.objective,
        model.row_lower,
        model.row_upper,
        model.matrix,
    )
    for index in np.flatnonzero(model.integer).tolist():
        builder.set_var_integrality(index, True)
    if hint is not None:
        for index, value in enumerate(milp_values(problem, model, hint).tolist()):
            builder.add_hint(index, value)
    build_seconds = time.perf_counter() - t0
    if model.n_vars == 0:
        solution = solution_from_values(problem, model, np.zeros(0))
        return ExactResult(
            backend, solution, True, 0.0, 0.0, time.perf_counter() - t0, build_seconds, "empty"
        )

    if backend not in ("scip", "highs"):
        raise InputError(f"unknown backend {backend!r}; use 'scip' or 'highs'", source="backend")
    solver: Any = mbh.ModelSolverHelper(backend)
    if not solver.solver_is_supported():
        raise SolverError(f"OR-Tools was built without {backend}; cannot run the exact optimiser")
    if backend == "highs":
        params = [
            "output_flag=false",
            "log_to_console=false",
            f"threads={threads}",
            f"random_seed={seed}",
            f"mip_rel_gap={mip_gap}",
            "mip_abs_gap=1e-6",
        ]
    else:
        params = [
            f"limits/gap = {mip_gap}",
            "limits/absgap = 1e-6",
            f"randomization/randomseedshift = {seed}",
        ]
    solver.set_solver_specific_parameters("\n".join(params))
    if time_limit is not None:
        solver.set_time_limit_in_seconds(max(0.01, time_limit - build_seconds))
    with _quiet_native_stdout():
        solver.solve(builder)
    status = solver.status()
    seconds = time.perf_counter() - t0
    name = status.name
    log.debug(
        "%s status %s after %.2fs (%d vars, %d rows)",
        backend,
        name,
        seconds,
        model.n_vars,
        model.matrix.shape[0],
    )
    if status in (mbh.SolveStatus.OPTIMAL, mbh.SolveStatus.FEASIBLE) and solver.has_solution():
        values = np.asarray(solver.variable_values(), dtype=np.float64)
        values = _integral_units(builder, model, values, backend)
        solution = solution_from_values(problem, model, values)
        objective = float(solver.objective_value())
        bound = float(solver.best_objective_bound())
        optimal = status == mbh.SolveStatus.OPTIMAL
        if optimal and not math.isfinite(bound):
            bound = objective
        return ExactResult(
            backend, solution, optimal, bound, objective, seconds, build_seconds, name
        )
    if status in (
        mbh.SolveStatus.FEASIBLE,
        mbh.SolveStatus.NOT_SOLVED,
        mbh.SolveStatus.UNKNOWN_STATUS,
    ):
        bound = float(solver.best_objective_bound()) if solver.has_response() else -math.inf
        return ExactResult(backend, None, False, bound, math.inf, seconds, build_seconds, name)
    raise SolverError(f"HiGHS returned {name}: {solver.status_string()}")
