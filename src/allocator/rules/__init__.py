"""Rule sets: eligibility, stock policy, constraints, objective and greedy ranking chains.

Rule files are TOML (``docs/rules.md``); :func:`load_rules` reads one by bundled name or path.
"""

from allocator.rules.load import (
    BUILTIN_POLICIES,
    PEER_POLICIES,
    bundled_rule_sets,
    load_rules,
    parse_rules,
)
from allocator.rules.schema import (
    Constraints,
    Criterion,
    EligibilityRule,
    GreedyConfig,
    LocationSelector,
    Objective,
    OrderSelector,
    RuleSet,
    StockPolicy,
)

__all__ = [
    "BUILTIN_POLICIES",
    "PEER_POLICIES",
    "Constraints",
    "Criterion",
    "EligibilityRule",
    "GreedyConfig",
    "LocationSelector",
    "Objective",
    "OrderSelector",
    "RuleSet",
    "StockPolicy",
    "bundled_rule_sets",
    "load_rules",
    "parse_rules",
]
