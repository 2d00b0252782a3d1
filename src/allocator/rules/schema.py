"""The rule-set model: what a rule file may say, validated by pydantic.

A rule set has a ``strategy`` (``optimize`` sends the compiled rules to the optimiser; ``greedy``
to a ranked fill), an ``objective`` (cost model and penalties) and ``constraints``. All models are
frozen and reject unknown keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from allocator.costs import RateCard

__all__ = ["Constraints", "Objective", "RuleSet"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Objective(_Frozen):
    """What a plan costs.

    Parameters
    ----------
    rate_card
        Distance-based shipping costs, used when the network has no explicit ``costs`` table.
    backorder_penalty
        Cost of one backordered unit of a priority-0 order. The default (60) is above any
        single-parcel charge of the default rate card, so a unit that can be shipped from
        anywhere is shipped rather than backordered.
    priority_weight
        Each priority level multiplies the backorder and rejection penalty by ``1 + weight``:
        penalty = base * (1 + priority_weight) ** priority. Higher-priority orders are served first
        when stock is short.
    rejection_penalty
        Cost per unit of an order rejected because it may not be backordered.
    split_penalty
        Extra cost per shipment (parcel), on top of the shipping cost: a price on splitting.
    lateness_penalty
        Cost per unit per day that the transit time of a shipment exceeds the order's
        ``promised_days``.
    """

    rate_card: RateCard = RateCard()
    backorder_penalty: float = Field(default=60.0, ge=0)
    priority_weight: float = Field(default=0.5, ge=0)
    rejection_penalty: float = Field(default=80.0, ge=0)
    split_penalty: float = Field(default=0.0, ge=0)
    lateness_penalty: float = Field(default=2.0, ge=0)


class Constraints(_Frozen):
    """Hard limits on every plan.

    Parameters
    ----------
    max_locations_per_order
        Split cap: the most locations one order may ship from (``None``: no cap).
    ship_complete
        Treat every order as ship-complete (one location, all lines), whatever its own flag.
    respect_capacity
        Honour the locations' ``capacity_units`` and ``capacity_shipments``.
    """

    max_locations_per_order: int | None = Field(default=None, ge=1)
    ship_complete: bool = False
    respect_capacity: bool = True


class RuleSet(_Frozen):
    """A complete rule set.

    Parameters
    ----------
    name
        Shown in results (``summary.json``'s ``policy``).
    strategy
        ``optimize`` (the exact or large-scale optimiser) or ``greedy`` (a ranked fill).
    objective
        Costs and penalties.
    constraints
        Hard limits.
    """

    name: str = "default"
    description: str = ""
    strategy: Literal["optimize", "greedy"] = "optimize"
    objective: Objective = Objective()
    constraints: Constraints = Constraints()
