"""A small incremental LP/MILP handle on HiGHS, for column generation and sub-MILPs.

Column generation re-solves the same master LP after adding a few columns; re-starting the
simplex from the previous basis makes each re-solve a fraction of a cold solve. OR-Tools'
``model_builder`` cannot do that (and, as bundled with HiGHS 1.12, reports row activities where
duals are asked for), so this module talks to the HiGHS binding that SciPy ships
(``scipy.optimize._highspy``). That module is private to SciPy; when it is missing the handle
falls back to cold solves through :func:`scipy.optimize.linprog` / :func:`scipy.optimize.milp`,
which give the same answers more slowly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.solvers.exact import MilpModel, _quiet_native_stdout

__all__ = ["HighsHandle", "LpResult", "is_plan", "solve_model"]

FloatArray = npt.NDArray[np.float64]

#: HiGHS's primal solution status of a feasible point (0: none, 1: an infeasible point).
_FEASIBLE = 2

try:  # pragma: no cover - depends on the SciPy build
    from scipy.optimize._highspy import _core as _hc

    _HAVE_CORE = hasattr(_hc, "_Highs") and hasattr(_hc, "HighsLp")
except ImportError:  # pragma: no cover
    _hc = None
    _HAVE_CORE = False


@dataclass(frozen=True, eq=False)
class LpResult:
    """The outcome of one solve.

    Attributes
    ----------
    status
        ``"optimal"``, ``"time_limit"``, ``"infeasible"`` or ``"other"``.
    objective
        Objective value of ``x`` (``inf`` without a solution).
    bound
        Proven lower bound (the objective for an optimal LP; the dual bound for a MILP).
    x
        Column values (``None`` without a solution).
    row_dual
        Row duals of an LP (``d objective / d row bound``; ``None`` for a MILP).
    """

    status: str
    objective: float
    bound: float
    x: FloatArray | None
    row_dual: FloatArray | None


class HighsHandle:
    """An LP (or MILP) over fixed rows, to which columns can be added.

    Parameters
    ----------
    row_lower, row_upper
        Row bounds.
    threads
        HiGHS threads (1 inside worker pools and for determinism).
    seed
        HiGHS random seed.
    """

    def __init__(
        self, row_lower: FloatArray, row_upper: FloatArray, *, threads: int = 1, seed: int = 0
    ) -> None:
        self.row_lower = np.asarray(row_lower, dtype=np.float64)
        self.row_upper = np.asarray(row_upper, dtype=np.float64)
        self.n_rows = len(self.row_lower)
        self.threads = threads
        self.seed = seed
        self._cost: list[FloatArray] = []
        self._upper: list[FloatArray] = []
        self._blocks: list[sp.csc_matrix] = []
        self._integer: FloatArray | None = None
        self._n_cols = 0
        self._blocks_passed = 0  # blocks already passed to HiGHS (the rest are pending)
        self._bounds_override: dict[int, tuple[float, float]] = {}
        self._highs: Any = None

    @property
    def n_cols(self) -> int:
        return self._n_cols

    def add_columns(self, cost: FloatArray, upper: FloatArray, matrix: sp.spmatrix) -> None:
        """Append columns (``matrix`` is rows x new columns; lower bounds are 0)."""
        block = sp.csc_matrix(matrix, dtype=np.float64)
        if block.shape[0] != self.n_rows:
            raise ValueError(f"Expected {self.n_rows} rows, got {block.shape[0]}.")
        block.sort_indices()
        self._cost.append(np.asarray(cost, dtype=np.float64))
        self._upper.append(np.asarray(upper, dtype=np.float64))
        self._blocks.append(block)
        self._n_cols += block.shape[1]

    def set_column_bounds(self, columns: npt.NDArray[np.int64], lower: float, upper: float) -> None:
        """Set the bounds of some columns (e.g. fix them at 1 while diving)."""
        if len(columns) == 0:
            return
        if _HAVE_CORE:
            highs = self._sync()
            idx = np.asarray(columns, dtype=np.int32)
            highs.changeColsBounds(
                len(idx), idx, np.full(len(idx), float(lower)), np.full(len(idx), float(upper))
            )
        for c in np.asarray(columns).tolist():
            self._bounds_override[int(c)] = (float(lower), float(upper))

    def set_row_upper(self, upper: FloatArray) -> None:
        """Change the upper bounds of all rows."""
        self.row_upper = np.asarray(upper, dtype=np.float64)
        if self._highs is not None:
            idx = np.arange(self.n_rows, dtype=np.int32)
            self._highs.changeRowsBounds(self.n_rows, idx, self.row_lower, self.row_upper)

    def _options(self, highs: Any, time_limit: float | None, mip: bool, gap: float) -> None:
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("threads", int(self.threads))
        highs.setOptionValue("random_seed", int(self.seed))
        # HiGHS 1.x compares ``time_limit`` with the run time accumulated over every ``run()``
        # of this object (ERGO-Code/HiGHS#1477), so a limit for this run is added to it: in
        # column generation a re-solve with 6 s left had stopped at once, 10 s already spent.
        limit = math.inf if not time_limit else highs.getRunTime() + float(time_limit)
        highs.setOptionValue("time_limit", limit)
        if mip:
            highs.setOptionValue("mip_rel_gap", float(gap))

    def _sync(self) -> Any:
        """Pass pending columns to the HiGHS object (created on first use)."""
        assert _hc is not None
        if self._highs is None:
            highs = _hc._Highs()
            highs.setOptionValue("output_flag", False)
            lp = _hc.HighsLp()
            lp.num_col_ = 0
            lp.num_row_ = self.n_rows
            lp.row_lower_ = self.row_lower
            lp.row_upper_ = self.row_upper
            lp.col_cost_ = np.zeros(0)
            lp.col_lower_ = np.zeros(0)
            lp.col_upper_ = np.zeros(0)
            lp.a_matrix_.format_ = _hc.MatrixFormat.kColwise
            lp.a_matrix_.start_ = np.zeros(1, np.int32)
            lp.a_matrix_.index_ = np.zeros(0, np.int32)
            lp.a_matrix_.value_ = np.zeros(0)
            lp.a_matrix_.num_col_ = 0
            lp.a_matrix_.num_row_ = self.n_rows
            highs.passModel(lp)
            self._highs = highs
        highs = self._highs
        first = self._blocks_passed
        if any(b.shape[1] for b in self._blocks[first:]):
            cost = np.concatenate(self._cost[first:])
            upper = np.concatenate(self._upper[first:])
            block = sp.csc_matrix(sp.hstack(self._blocks[first:], format="csc"))
            highs.addCols(
                block.shape[1],
                cost,
                np.zeros(block.shape[1]),
                upper,
                block.nnz,
                block.indptr[:-1].astype(np.int32),
                block.indices.astype(np.int32),
                block.data,
            )
            self._blocks_passed = len(self._blocks)
        return highs

    def solve_lp(self, *, time_limit: float | None = None) -> LpResult:
        """Solve the LP relaxation (warm-started from the previous basis when possible)."""
        if _HAVE_CORE:
            highs = self._sync()
            self._options(highs, time_limit, False, 0.0)
            if self._integer is not None:
                idx = np.arange(self._n_cols, dtype=np.int32)
                highs.changeColsIntegrality(
                    self._n_cols, idx, np.zeros(self._n_cols, dtype=np.uint8)
                )
                self._integer = None
            with _quiet_native_stdout():
                highs.run()
            # Re-solves keep presolve on: without it a warm start was twice as fast on some
            # generated instances and more than ten times slower on others (measured at 10,000
            # orders); HiGHS still reuses the basis where it can.
            return self._result(highs, mip=False)
        return self._fallback(mip=False, time_limit=time_limit, gap=0.0, start=None)

    def solve_mip(
        self,
        integer: npt.NDArray[np.bool_],
        *,
        time_limit: float | None = None,
        gap: float = 1e-6,
        start: FloatArray | None = None,
        node_limit: int | None = None,
        cutoff: float | None = None,
        heuristic_effort: float | None = None,
    ) -> LpResult:
        """Solve with the flagged columns integer.

        ``start`` is a feasible MIP start, ``node_limit`` caps the branch-and-bound nodes (a
        deterministic limit, unlike time), ``cutoff`` discards plans not below it.
        """
        if _HAVE_CORE:
            highs = self._sync()
            self._options(highs, time_limit, True, gap)
            idx = np.arange(self._n_cols, dtype=np.int32)
            highs.changeColsIntegrality(self._n_cols, idx, np.asarray(integer, dtype=np.uint8))
            self._integer = np.asarray(integer, dtype=np.float64)
            highs.setOptionValue("presolve", "on")
            highs.setOptionValue("mip_max_nodes", int(node_limit) if node_limit else 2**31 - 1)
            if heuristic_effort is not None:
                highs.setOptionValue("mip_heuristic_effort", float(heuristic_effort))
            highs.setOptionValue(
                "objective_bound", float(cutoff) if cutoff is not None else math.inf
            )
            if start is not None:
                sol = _hc.HighsSolution()
                sol.col_value = np.asarray(start, dtype=np.float64)
                sol.value_valid = True
                highs.setSolution(sol)
            with _quiet_native_stdout():
                highs.run()
            return self._result(highs, mip=True)
        return self._fallback(
            mip=True, time_limit=time_limit, gap=gap, start=start, integer=integer
        )

    def _result(self, highs: Any, *, mip: bool) -> LpResult:
        status = highs.getModelStatus()
        ms = _hc.HighsModelStatus
        name = {
            ms.kOptimal: "optimal",
            ms.kTimeLimit: "time_limit",
            ms.kInfeasible: "infeasible",
            ms.kInterrupt: "time_limit",
        }.get(status, "other")
        info = highs.getInfo()
        sol = highs.getSolution()
        # A MIP stopped early may hold a point that is not a plan (primal status 1,
        # "infeasible"); only a feasible one counts.
        has_x = bool(getattr(sol, "value_valid", False)) and (
            name == "optimal" or (mip and info.primal_solution_status == _FEASIBLE)
        )
        x = np.asarray(sol.col_value, dtype=np.float64) if has_x else None
        objective = float(info.objective_function_value) if has_x else math.inf
        if mip:
            bound = float(info.mip_dual_bound)
            if name == "optimal" and not math.isfinite(bound):
                bound = objective
            duals = None
        else:
            bound = objective if name == "optimal" else -math.inf
            duals = np.asarray(sol.row_dual, dtype=np.float64) if has_x else None
        return LpResult(name, objective, bound, x, duals)

    def _fallback(
        self,
        *,
        mip: bool,
        time_limit: float | None,
        gap: float,
        start: FloatArray | None,
        integer: npt.NDArray[np.bool_] | None = None,
    ) -> LpResult:  # pragma: no cover - only without SciPy's HiGHS binding
        from scipy.optimize import Bounds, LinearConstraint, linprog, milp

        cost = np.concatenate(self._cost) if self._cost else np.zeros(0)
        upper = np.concatenate(self._upper) if self._upper else np.zeros(0)
        lower = np.zeros(len(cost))
        for c, (lo, hi) in self._bounds_override.items():
            lower[c], upper[c] = lo, hi
        matrix = sp.hstack(self._blocks, format="csr") if self._blocks else None
        options: dict[str, Any] = {"disp": False}
        if time_limit:
            options["time_limit"] = float(time_limit)
        if mip:
            with _quiet_native_stdout():
                res = milp(
                    cost,
                    integrality=np.asarray(integer, dtype=np.int64),
                    bounds=Bounds(lower, upper),
                    constraints=LinearConstraint(matrix, self.row_lower, self.row_upper),
                    options={**options, "mip_rel_gap": gap},
                )
            ok = res.x is not None
            bound = float(getattr(res, "mip_dual_bound", -math.inf) or -math.inf)
            status = "optimal" if res.status == 0 else "time_limit" if ok else "other"
            return LpResult(
                status, float(res.fun) if ok else math.inf, bound, res.x if ok else None, None
            )
        eq = self.row_lower == self.row_upper
        assert matrix is not None
        res = linprog(
            cost,
            A_ub=matrix[~eq] if (~eq).any() else None,
            b_ub=self.row_upper[~eq] if (~eq).any() else None,
            A_eq=matrix[eq] if eq.any() else None,
            b_eq=self.row_upper[eq] if eq.any() else None,
            bounds=list(zip(lower, upper, strict=True)),
            method="highs",
            options=options,
        )
        if res.status != 0:
            return LpResult("other", math.inf, -math.inf, None, None)
        duals = np.zeros(self.n_rows)
        if eq.any():
            duals[eq] = res.eqlin.marginals
        if (~eq).any():
            duals[~eq] = res.ineqlin.marginals
        return LpResult("optimal", float(res.fun), float(res.fun), res.x, duals)


def solve_model(
    model: MilpModel,
    start: FloatArray,
    *,
    time_limit: float | None = None,
    gap: float = 1e-6,
    node_limit: int | None = None,
    seed: int = 0,
) -> LpResult:
    """Solve a sourcing MILP (:func:`~allocator.solvers.exact.build_milp`) with HiGHS from the
    feasible values ``start``, single-threaded."""
    handle = HighsHandle(model.row_lower, model.row_upper, seed=seed)
    handle.add_columns(model.objective, model.upper, model.matrix.tocsc())
    res = handle.solve_mip(
        model.integer, time_limit=time_limit, gap=gap, start=start, node_limit=node_limit
    )
    if res.x is not None:
        res = _integral_units(handle, model, res)
    if res.x is not None and not is_plan(model, res.x):
        return LpResult(res.status, math.inf, res.bound, None, None)
    return res


def _integral_units(handle: HighsHandle, model: MilpModel, res: LpResult) -> LpResult:
    """Move a MIP solution's units (continuous in the model) to an integral vertex.

    HiGHS may return an incumbent whose units are not at a vertex, above all one found by a
    heuristic before a time limit: rounding them had shipped 1 + 1 + 1 units of a 2-unit line
    (0.67 on each of three arcs) in a rescue group at 100,000 orders. With the integer columns
    fixed the unit polytope is integral (:func:`~allocator.solvers.exact.build_milp`), so
    re-solving with every integer column fixed and the units integer is a tiny, LP-easy problem
    that never costs more: the repair the exact solver makes on its OR-Tools model
    (:func:`~allocator.solvers.exact._integral_units`), here on the HiGHS handle that solved.
    """
    assert res.x is not None
    ox, oy, _, _ = model.offsets
    units = res.x[ox:oy]
    if len(units) == 0 or np.abs(units - np.rint(units)).max() <= 1e-6:
        return res
    fixed = np.flatnonzero(model.integer)
    values = np.rint(res.x[fixed])
    for value in np.unique(values).tolist():
        handle.set_column_bounds(fixed[values == value], value, value)
    integer = model.integer.copy()
    integer[ox:oy] = True
    repaired = handle.solve_mip(integer, gap=0.0)
    if repaired.x is None or repaired.objective > res.objective + 1e-6 * max(
        1.0, abs(res.objective)
    ):  # pragma: no cover - the fixed problem contains the rounded-to-vertex solution
        return LpResult(res.status, math.inf, res.bound, None, None)
    return LpResult(res.status, repaired.objective, res.bound, repaired.x, None)


def is_plan(model: MilpModel, x: FloatArray, tol: float = 1e-6) -> bool:
    """Whether ``x`` is integral where it must be and within the rows and bounds (to ``tol``)."""
    integer = model.integer
    if np.any(np.abs(x[integer] - np.rint(x[integer])) > tol):
        return False
    if np.any(x < model.lower - tol) or np.any(x > model.upper + tol):
        return False
    rows = model.matrix @ x
    scale = tol * np.maximum(1.0, np.abs(rows))
    return bool(np.all(rows >= model.row_lower - scale) and np.all(rows <= model.row_upper + scale))
