"""Policies a simulation replays: the protocol, rule-set policies and a forward-looking one.

A policy sees the network as it stands at a decision point (locations with their remaining
capacity, the stock that sourcing may promise) and a batch of orders, and says where each line's
units come from. The simulator compiles nothing itself: :class:`RulePolicy` compiles the batch
with its rule set and runs the matching solver, so any rule file (a peer platform's, or a
merchant's own) can be replayed, and a user's own policy only needs :meth:`Policy.decide`.

Real time is a property of the call, not of the policy: with ``context.sequential`` the policy
must serve the batch's orders one at a time, in the given (arrival) order, each against the stock
the earlier ones left. A greedy fill is sequential by construction, so one call over a batch in
arrival order *is* the real-time replay of that batch; the optimiser sources each order optimally
on its own (:func:`~allocator.simulate._sequential.source_sequentially`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy.special import gammainc

from allocator.allocate import solve
from allocator.costs import haversine_km
from allocator.errors import InputError
from allocator.model import Network, Orders
from allocator.plan import Plan, Solution
from allocator.problem import Problem, compile_problem
from allocator.rules.schema import RuleSet
from allocator.simulate._history import US_PER_DAY, History
from allocator.simulate._sequential import source_sequentially
from allocator.solvers.greedy import distance_rank, ranked_fill

__all__ = [
    "Decision",
    "DecisionContext",
    "ForwardLookingPolicy",
    "Policy",
    "RulePolicy",
    "resolve_policy",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class DecisionContext:
    """What a policy knows besides the network state and the orders.

    Attributes
    ----------
    sequential
        Serve the orders one at a time in the given order (real time), each against the stock
        the earlier ones left; otherwise decide them jointly (a batch).
    now
        The decision time, microseconds since the epoch (for real-time batches: the start of
        the interval; each order is decided at its own ``created_at``).
    history
        The replayed history (for forecasts: arrivals so far, expected receipts).
    seed
        Seed for solvers.
    time_limit
        Seconds for a joint solve.
    """

    sequential: bool
    now: int
    history: History
    seed: int = 0
    time_limit: float | None = None


@dataclass(frozen=True, eq=False)
class Decision:
    """Where the units of a batch come from.

    Attributes
    ----------
    line
        Row of the batch's orders table (its order lines are rows ``0..n-1``).
    location
        Row of the network's locations table.
    qty
        Units of that line from that location (> 0).
    rejected
        One flag per row of the orders table: the line's order is rejected (nothing of it
        ships and nothing waits).
    info
        Counters the simulator adds up over the replay (for example ``inexact_orders``).

    Units of a line that are not assigned and whose order is not rejected are backordered.
    """

    line: IntArray
    location: IntArray
    qty: IntArray
    rejected: BoolArray
    info: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_solution(
        cls, problem: Problem, solution: Solution, info: dict[str, float] | None = None
    ) -> Decision:
        """The decision of a solver over a problem compiled from the batch.

        The compiler keeps an order's lines in table order and orders in first-appearance
        order, so problem line ``k`` is row ``k`` of a table whose orders are contiguous.
        """
        nz = np.flatnonzero(solution.arc_qty > 0)
        return cls(
            line=problem.arc_line[nz].astype(np.int64),
            location=problem.arc_location[nz].astype(np.int64),
            qty=solution.arc_qty[nz].astype(np.int64),
            rejected=solution.order_rejected[problem.line_order].astype(bool),
            info=dict(info or {}),
        )

    @classmethod
    def from_plan(cls, plan: Plan) -> Decision:
        """The decision of a :class:`~allocator.plan.Plan` (from :func:`allocator.allocate`)."""
        return cls.from_solution(plan.problem, plan.solution)


@runtime_checkable
class Policy(Protocol):
    """What the simulator needs from a policy.

    Attributes
    ----------
    name
        Shown in the results.
    reoptimizes
        In ``nightly`` mode, whether the policy re-allocates everything not yet released
        (an optimiser) or keeps its real-time choices (a platform's greedy rule).
    """

    @property
    def name(self) -> str: ...

    @property
    def reoptimizes(self) -> bool: ...

    def decide(self, network: Network, orders: Orders, context: DecisionContext) -> Decision:
        """Source ``orders`` from ``network`` (whose stock is what may be promised now)."""
        ...


def _sequential_rules(rules: RuleSet) -> RuleSet:
    """The same rules with greedy orders served in arrival order (a real-time replay)."""
    if rules.greedy is None or rules.greedy.sequence == "arrival":
        return rules
    greedy = rules.greedy.model_copy(update={"sequence": "arrival"})
    return rules.model_copy(update={"greedy": greedy})


class RulePolicy:
    """Any rule set as a policy: compile the batch with it and run its strategy.

    Parameters
    ----------
    rules
        The rule set (``strategy = "optimize"`` or ``"greedy"``).
    name
        Name in the results (default: the rule set's name).
    """

    def __init__(self, rules: RuleSet, name: str | None = None) -> None:
        self.rules = rules
        self._name = name or rules.name

    def __repr__(self) -> str:
        return f"RulePolicy({self._name!r}, strategy={self.rules.strategy!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def reoptimizes(self) -> bool:
        return self.rules.strategy == "optimize"

    def decide(self, network: Network, orders: Orders, context: DecisionContext) -> Decision:
        if context.sequential:
            rules = _sequential_rules(self.rules)
            problem = compile_problem(network, orders, rules)
            if rules.strategy == "optimize":
                result = source_sequentially(problem)
                return Decision.from_solution(
                    problem, result.solution, {"inexact_orders": result.inexact_orders}
                )
            if rules.greedy is None:
                arrival = np.arange(problem.n_orders, dtype=np.int64)
                solution = ranked_fill(problem, distance_rank(problem), arrival)
            else:
                solution = solve(problem, seed=context.seed).solution
            return Decision.from_solution(problem, solution)
        problem = compile_problem(network, orders, self.rules)
        plan = solve(problem, time_limit=context.time_limit, seed=context.seed)
        return Decision.from_plan(plan)


@dataclass
class _Forecast:
    """What the forward-looking policy expects of the rest of the replay."""

    home_share: FloatArray  # share of orders whose nearest shipping location is each location
    delta: FloatArray  # extra cost of a home order when its home location is out
    sku_rate: FloatArray  # units per day, by global SKU index
    receipts: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    end: int = 0


class ForwardLookingPolicy:
    """The optimiser in real time, with a price on using stock that later orders will need.

    Each unit taken from a position (location, SKU) is charged its expected future value: the
    extra shipping cost that the location's own customers pay if the unit is gone before the
    position is replenished. With ``d`` the demand expected at the location for the SKU until
    its next receipt (or the end of the replay) and ``s`` the units there, the ``s``-th unit is
    needed with probability ``P(D >= s)`` for ``D ~ Poisson(d)``; its price is that probability
    times the average extra cost of serving the location's customers from their next-nearest
    location. This is the opportunity-cost idea of Acimovic and Graves (2015) in its simplest
    form: a myopic sourcing decision plus a scarcity price per unit.

    The forecast is what a planner would have: each SKU's average daily demand over the
    history, spread over locations by the share of customers for whom each is the nearest
    shipping location (not the realised future orders).

    Parameters
    ----------
    rules
        The rule set (``RuleSet()``: the default cost model).
    weight
        Multiplier on the opportunity price (0 gives the myopic optimiser).
    name
        Name in the results.
    """

    def __init__(
        self, rules: RuleSet | None = None, *, weight: float = 1.0, name: str = "forward_looking"
    ) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise InputError(f"weight must be finite and >= 0, got {weight}", source="weight")
        self.rules = rules or RuleSet(name=name)
        self.weight = float(weight)
        self._name = name
        self._forecast: tuple[int, _Forecast] | None = None

    def __repr__(self) -> str:
        return f"ForwardLookingPolicy({self._name!r}, weight={self.weight})"

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_forecast"] = None  # rebuilt where it runs
        return state

    @property
    def name(self) -> str:
        return self._name

    @property
    def reoptimizes(self) -> bool:
        return True

    def decide(self, network: Network, orders: Orders, context: DecisionContext) -> Decision:
        problem = compile_problem(network, orders, self.rules)
        if not context.sequential:
            plan = solve(problem, time_limit=context.time_limit, seed=context.seed)
            return Decision.from_plan(plan)
        opportunity = self.opportunity(problem, context) if self.weight > 0 else None
        result = source_sequentially(problem, opportunity=opportunity)
        return Decision.from_solution(
            problem, result.solution, {"inexact_orders": result.inexact_orders}
        )

    def forecast(self, history: History) -> _Forecast:
        """The forecast for ``history`` (built once and kept)."""
        if self._forecast is not None and self._forecast[0] == id(history):
            return self._forecast[1]
        forecast = _build_forecast(history, self.rules)
        self._forecast = (id(history), forecast)
        return forecast

    def opportunity(
        self, problem: Problem, context: DecisionContext
    ) -> Callable[[IntArray, IntArray, IntArray], FloatArray]:
        """The price per unit taken from a position of ``problem`` at ``context.now``."""
        history = context.history
        forecast = self.forecast(history)
        to_global = np.searchsorted(
            history.sku_ids.astype(str), problem.sku_ids.astype(str)
        ).astype(np.int64)
        now = context.now
        weight = self.weight

        def price(locs: IntArray, skus: IntArray, levels: IntArray) -> FloatArray:
            g = to_global[skus]
            until = np.full(len(locs), forecast.end, dtype=np.int64)
            for i, (loc, sku) in enumerate(zip(locs.tolist(), g.tolist(), strict=True)):
                etas = forecast.receipts.get((loc, sku))
                if etas:
                    j = bisect.bisect_right(etas, now)
                    if j < len(etas):
                        until[i] = min(until[i], etas[j])
            days = np.maximum(0, until - now) / US_PER_DAY
            expected = forecast.home_share[locs] * forecast.sku_rate[g] * days
            need = np.where(
                levels >= 1,
                gammainc(np.maximum(levels, 1).astype(np.float64), expected),
                1.0,
            )
            return np.asarray(weight * forecast.delta[locs] * need, dtype=np.float64)

        return price


def _build_forecast(history: History, rules: RuleSet) -> _Forecast:
    locs = history.network.locations
    n_loc = history.n_locations
    lat_l = locs["lat"].fill_null(np.nan).to_numpy().astype(np.float64)
    lon_l = locs["lon"].fill_null(np.nan).to_numpy().astype(np.float64)
    ships = locs["can_ship"].to_numpy().astype(bool) & np.isfinite(lat_l)
    heads = history.order_line_start[:-1]
    lat_o = history.lines["lat"].fill_null(np.nan).to_numpy().astype(np.float64)[heads]
    lon_o = history.lines["lon"].fill_null(np.nan).to_numpy().astype(np.float64)[heads]
    located = np.isfinite(lat_o)
    card = rules.objective.rate_card
    home_count = np.zeros(n_loc)
    delta_sum = np.zeros(n_loc)
    candidates = np.flatnonzero(ships)
    if len(candidates) >= 2 and located.any():
        idx = np.flatnonzero(located)
        for start in range(0, len(idx), 20_000):
            chunk = idx[start : start + 20_000]
            d = haversine_km(
                lat_o[chunk, None],
                lon_o[chunk, None],
                lat_l[None, candidates],
                lon_l[None, candidates],
            )
            zone = card.zone(d)
            cost = card.parcel_cost(zone) + card.unit_cost(zone)
            order = np.argsort(d, axis=1, kind="stable")[:, :2]
            rows = np.arange(len(chunk))
            first, second = order[:, 0], order[:, 1]
            home = candidates[first]
            np.add.at(home_count, home, 1.0)
            np.add.at(delta_sum, home, cost[rows, second] - cost[rows, first])
    total = max(1.0, float(home_count.sum()))
    delta = np.divide(delta_sum, home_count, out=np.zeros(n_loc), where=home_count > 0)
    days = max(1.0, (history.t_end - history.t_start) / US_PER_DAY)
    sku_units = np.bincount(history.line_sku, weights=history.line_qty, minlength=history.n_skus)
    receipts: dict[tuple[int, int], list[int]] = {}
    for loc, sku, eta in zip(
        history.inbound_location.tolist(),
        history.inbound_sku.tolist(),
        history.inbound_eta.tolist(),
        strict=True,
    ):
        receipts.setdefault((loc, sku), []).append(eta)
    for etas in receipts.values():
        etas.sort()
    return _Forecast(
        home_share=home_count / total,
        delta=delta,
        sku_rate=sku_units / days,
        receipts=receipts,
        end=history.t_end,
    )


#: Policies built into the simulator, by name (rule files are found by :func:`resolve_policy`).
BUILTIN: dict[str, Callable[[], Policy]] = {
    "optimize": lambda: RulePolicy(RuleSet(name="optimize")),
    "greedy": lambda: RulePolicy(RuleSet(name="greedy", strategy="greedy")),
    "forward_looking": lambda: ForwardLookingPolicy(),
}


def resolve_policy(spec: str | Path | RuleSet | Policy) -> Policy:
    """A policy from a name, a rule file, a rule set or a policy object.

    Parameters
    ----------
    spec
        ``"optimize"`` (the optimiser), ``"forward_looking"``, ``"greedy"`` (the naive
        baseline), a bundled rule set or peer policy name (``"shopify_default"``...), the path
        of a rule file, a :class:`~allocator.rules.RuleSet`, or any :class:`Policy`.

    Returns
    -------
    Policy

    Raises
    ------
    UnknownPolicyError
        When a name is neither built in, bundled nor a file.
    """
    if isinstance(spec, RuleSet):
        return RulePolicy(spec)
    if isinstance(spec, str | Path):
        text = str(spec)
        if text in BUILTIN:
            return BUILTIN[text]()
        if text == "baseline":
            return RulePolicy(RuleSet(name="baseline", strategy="greedy"))
        from allocator.rules import load_rules

        rules = load_rules(spec)
        name = Path(text).stem if text.endswith(".toml") else text
        return RulePolicy(rules, name=name)
    if isinstance(spec, Policy):
        return spec
    raise InputError(
        f"expected a policy name, a rule file, a RuleSet or a Policy, got {type(spec).__name__}",
        source="policies",
    )
