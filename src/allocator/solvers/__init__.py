"""Solvers over the compiled array problem: the exact MILP and greedy fills."""

from allocator.solvers.exact import ExactResult, build_milp, solve_exact
from allocator.solvers.greedy import greedy_baseline, ranked_fill

__all__ = ["ExactResult", "build_milp", "greedy_baseline", "ranked_fill", "solve_exact"]
