"""Policy simulation: replaying generated histories through the event loop (issue 7).

* ``test_simulate_10k``: 10,000 orders over 30 days, real time, three policies (``make bench``);
* ``test_simulate_100k_30_days``: 100,000 orders over 30 days, 50 locations, 5,000 SKUs, real
  time, through the in-memory inventory ledger and with arrays only (``make bench-large``).

Each replay's wall time, decisions and ledger calls go to ``extra_info``; the figures are in
``benchmarks/RESULTS.md`` (section "Policy simulation").
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from allocator import Network, Orders
from allocator.generate import generate
from allocator.simulate import simulate


def _history(n_orders: int, n_locations: int, n_skus: int) -> tuple[Network, Orders]:
    inst = generate(n_orders, n_locations, n_skus, seed=1, days=30)
    return Network.from_frames(inst.locations, inst.stock), Orders.from_frame(inst.orders)


def _replay(
    benchmark: Any, history: tuple[Network, Orders], policies: list[str], **settings: Any
) -> None:
    times: dict[str, float] = {}

    def run() -> None:
        for policy in policies:
            t0 = time.perf_counter()
            result = simulate(*history, policy, **settings)
            times[policy] = round(time.perf_counter() - t0, 1)
            benchmark.extra_info[policy] = {
                "seconds": times[policy],
                "cost_per_order": round(result.cost_per_order, 4),
                "decisions": result.info["decisions"],
                "ledger_calls": result.info.get("ledger_calls", 0),
            }

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert set(times) == set(policies)


def test_simulate_10k(benchmark: Any) -> None:
    history = _history(10_000, 50, 5_000)
    _replay(
        benchmark,
        history,
        ["shopify_default", "optimize", "forward_looking"],
        mode="realtime",
        cancel_rate=0.02,
        ledger=None,
    )


@pytest.fixture(scope="module")
def month() -> tuple[Network, Orders]:
    return _history(100_000, 50, 5_000)


@pytest.mark.large
@pytest.mark.parametrize("ledger", ["memory://", None], ids=["ledger", "arrays"])
def test_simulate_100k_30_days(
    benchmark: Any, month: tuple[Network, Orders], ledger: str | None
) -> None:
    _replay(
        benchmark,
        month,
        ["shopify_default", "optimize"],
        mode="realtime",
        cancel_rate=0.02,
        ledger=ledger,
    )
