"""Rule sets: the objective, constraints and strategy that an allocation run obeys."""

from allocator.rules.schema import Constraints, Objective, RuleSet

__all__ = ["Constraints", "Objective", "RuleSet"]
