"""Published fixed-charge transportation optima, reached through the public API.

A single-SKU network with explicit costs is the FCTP; ``../shared/benchmarks/fctp/`` holds eight
Glover et al. instances with proven optima. Each case reads the instance into the contract's
tables, calls ``allocator.allocate`` exactly as a user would, and checks the optimum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from allocator import RuleSet, allocate
from allocator.io.fctp import read_fctp
from allocator.rules import Objective

FCTP = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "fctp"
OPTIMA = {
    "N104": 40258,
    "N107": 42029,
    "N204": 54502,
    "N207": 53596,
    "N304": 56366,
    "N307": 49742,
    "N504": 57130,
    "N507": 52903,
}
# Customers may not be backordered; a large rejection price makes serving everyone optimal
# (supply equals demand in every instance), so the plan is a true FCTP solution.
RULES = RuleSet(name="fctp", objective=Objective(rejection_penalty=1e4))


@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_fctp_optimum(benchmark: Any, name: str) -> None:
    network, orders = read_fctp(FCTP / f"{name}.FCTP")
    plan = benchmark.pedantic(
        allocate, args=(network, orders), kwargs={"rules": RULES}, rounds=1, iterations=1
    )
    summary = plan.summary()
    benchmark.extra_info.update(
        {"optimum": OPTIMA[name], "cost": summary.cost.total, "status": summary.status}
    )
    assert summary.orders_rejected == 0
    assert summary.status == "optimal"
    assert summary.cost.total == pytest.approx(OPTIMA[name], abs=1e-6)
