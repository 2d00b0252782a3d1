"""The block runner: cached blocks on any executor, results in block order."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
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


class _CountedBlock:
    """A block that records, in the process that unpickles it, that it crossed a pipe."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.unpickled_in: int | None = None

    def __reduce__(self) -> tuple[object, tuple[np.ndarray]]:
        return (_unpickle_counted, (self.values,))


def _unpickle_counted(values: np.ndarray) -> _CountedBlock:
    block = _CountedBlock(values)
    block.unpickled_in = os.getpid()
    return block


def _sum_and_origin(block: _CountedBlock, weight: float) -> tuple[float, bool]:
    return float(block.values.sum() * weight), block.unpickled_in is not None


def test_forked_workers_read_blocks_without_pickling() -> None:
    blocks = [_CountedBlock(np.arange(i, i + 4, dtype=float)) for i in range(5)]
    expected = [(float(b.values.sum() * 2.0), False) for b in blocks]
    fork = multiprocessing.get_context("fork")
    # Workers forked after the runner exists share its memory: no block is pickled.
    with ProcessPoolExecutor(2, mp_context=fork) as pool:
        runner = BlockRunner(blocks, pool)
        assert runner.map(_sum_and_origin, 2.0) == expected
        assert runner.map(_sum_and_origin, 2.0) == expected
        # A runner made after the workers started: its blocks travel once, then stay cached.
        later = BlockRunner(blocks, pool)
        got = later.map(_sum_and_origin, 2.0)
        assert [value for value, _ in got] == [value for value, _ in expected]
        assert all(pickled for _, pickled in got)


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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_dask_workers_each_keep_their_share_of_the_blocks() -> None:
    # Each block has a home worker on Dask: after several rounds every worker holds about its
    # share of the blocks, not all of them, and the results are those of a serial run.
    distributed = pytest.importorskip("distributed")
    blocks = [np.arange(i, i + 5) for i in range(8)]
    serial = BlockRunner(blocks).map(_total, 2)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        runner = BlockRunner(blocks, client.get_executor())
        for _ in range(4):
            assert runner.map(_total, 2) == serial
        held = client.run(_held_blocks, runner.token)
        # The nanny starts workers with MALLOC_TRIM_THRESHOLD_ set; the first block task put
        # glibc's mmap threshold back where it would have slid (tune_worker_malloc).
        tuned = client.run(_malloc_tuned)
    assert list(tuned.values()) == [True, True]
    assert len(held) == 2  # one entry per worker
    # Without homes both workers came to hold most of the blocks after a few rounds.
    assert sorted(len(v) for v in held.values()) == [4, 4]
    assert sorted(i for v in held.values() for i in v) == list(range(8))


def _total(block: np.ndarray, factor: int) -> int:
    return int(block.sum()) * factor


def _held_blocks(token: str) -> list[int]:
    from allocator import parallel

    return sorted(index for (t, index) in parallel._CACHE if t == token)


def _malloc_tuned() -> bool | None:
    from allocator import parallel

    return parallel._MALLOC_TUNED[0]


# Run in a fresh interpreter: allocate and free 1 MiB arrays, counting the page faults, before
# and after tune_worker_malloc(). With a trim threshold set and no mmap threshold, glibc serves
# each array with fresh pages from the kernel (256 faults a MiB); after tuning it reuses the
# freed space of its heap (a workload's arrays die in any order, so not all at the heap's top).
_FAULTS = """
import json, resource, sys
import numpy as np
from allocator.parallel import tune_worker_malloc

def faults(n=200):
    kept = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a = np.ones(1 << 17)  # 1 MiB, freed while later blocks live above it
        kept.append(np.empty(1 << 12))
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults(5)
untuned = faults()
first = tune_worker_malloc()
second = tune_worker_malloc()
tuned = faults()
json.dump({"untuned": untuned, "tuned": tuned, "first": first, "second": second}, sys.stdout)
"""


def _fault_counts(env: dict[str, str]) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_worker_malloc_restores_large_mmap_threshold() -> None:
    # As in a Dask worker: the trim threshold set, the mmap threshold not.
    trimmed = _fault_counts({"MALLOC_TRIM_THRESHOLD_": "65536"})
    assert trimmed["first"] is True
    assert trimmed["second"] is True
    assert isinstance(trimmed["untuned"], int)
    assert isinstance(trimmed["tuned"], int)
    assert trimmed["untuned"] > 200 * 200  # about 256 fresh pages per MiB array
    assert trimmed["tuned"] < trimmed["untuned"] / 5
    # Nothing set, or both set: left alone.
    assert _fault_counts({})["first"] is False
    both = {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}
    assert _fault_counts(both)["first"] is False
