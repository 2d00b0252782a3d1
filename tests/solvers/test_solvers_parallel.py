"""The block runner: cached blocks on any executor, results in block order."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from allocator.errors import InputError
from allocator.parallel import BlockRunner, _cached_call, _Missing, executor_from_args


def _weighted_sum(block: np.ndarray, weight: float) -> float:
    return float(block.sum() * weight)


def test_runner_serial_and_pools_agree() -> None:
    blocks = [np.arange(i, i + 5, dtype=float) for i in range(6)]
    serial = BlockRunner(blocks)
    expected = [serial.map(_weighted_sum, w) for w in (1.0, 2.0, 0.5)]
    for pool in (ThreadPoolExecutor(2), ProcessPoolExecutor(2)):
        with pool:
            runner = BlockRunner(blocks, pool)
            got = [runner.map(_weighted_sum, w) for w in (1.0, 2.0, 0.5)]
        assert got == expected


def test_worker_without_the_block_says_missing() -> None:
    assert isinstance(_cached_call("token-x", 99, None, _weighted_sum, (1.0,)), _Missing)
    assert _cached_call("token-x", 99, np.ones(3), _weighted_sum, (2.0,)) == 6.0
    assert _cached_call("token-x", 99, None, _weighted_sum, (1.0,)) == 3.0
    # A new run token clears the cache.
    _cached_call("token-y", 0, np.ones(1), _weighted_sum, (1.0,))
    assert isinstance(_cached_call("token-x", 99, None, _weighted_sum, (1.0,)), _Missing)


def test_map_items_in_order() -> None:
    with ThreadPoolExecutor(2) as pool:
        runner: BlockRunner[np.ndarray] = BlockRunner([], pool)
        assert runner.map_items(_weighted_sum, [np.ones(2), np.ones(3)], 1.0) == [2.0, 3.0]


def test_executor_from_args() -> None:
    with executor_from_args(None, None) as ex:
        assert ex is None
    with executor_from_args(1, None) as ex:
        assert ex is None
    with executor_from_args(2, None) as ex:
        assert isinstance(ex, ProcessPoolExecutor)
    with pytest.raises(InputError), executor_from_args(2, "tcp://x:1"):
        pass
    with pytest.raises(InputError), executor_from_args(0, None):
        pass
