"""Executor plumbing: ``None`` is serial and deterministic; pools and Dask scale out.

Two pieces:

* :func:`executor_from_args` turns the command line's ``--workers N`` / ``--scheduler ADDRESS``
  into a :class:`concurrent.futures.Executor` (a process pool, or a Dask cluster's
  ``Client.get_executor()``), or ``None`` for serial work;
* :class:`BlockRunner` runs a function over a fixed list of data blocks, many times, on any
  executor. A worker that was forked from this process after the runner was made (a
  ``ProcessPoolExecutor`` with the ``fork`` start method starts its workers at the first
  submit) reads the blocks from the memory it shares with this process; any other worker (Dask,
  ``spawn``) gets each block pickled once and keeps it in a small cache, so repeated rounds only
  ship the round's arguments. The protocol needs nothing from the executor beyond ``submit``: a
  worker that has not seen a block answers "missing" and gets the data on a second try.
  Results come back in block order, so the outcome does not depend on which worker ran what.

  Measured on 100,000 orders (38 blocks, 817 MB) with a pool of two in a 180 s run: with every
  block pickled to the workers, all processes together peaked at 5.0 GB (PSS; tasks land on
  either worker, so each came to cache most blocks); read from the forked memory, 3.6 GB, and
  the first round ended 7 s earlier.

  On Dask each block has a home worker (blocks dealt out in turn over the cluster's workers, by
  address), and its tasks ask for it (``workers=``, with ``allow_other_workers`` so that a
  task still runs if its home is gone: the other worker answers "missing" and caches the
  block). Each worker then holds about its share of the blocks instead of, after a few rounds,
  nearly all of them.

A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_`` set (65,536 by default, so that
freed memory goes back to the system). Setting it switches off glibc's sliding ``mmap``
threshold, which otherwise rises to 32 MiB as large blocks are freed: every array above
128 KiB then gets fresh pages from the kernel. The pricing allocates many such arrays, and
ran at half speed there (100,000 orders: 6.9 s a round in one process with that variable,
3.8 s without). :func:`tune_worker_malloc` puts the threshold where glibc would have slid it,
once per worker, when the trim threshold is set and the ``mmap`` threshold is not; the trim
threshold stays as set.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

from allocator.errors import InputError

__all__ = ["BlockRunner", "executor_from_args", "tune_worker_malloc"]

B = TypeVar("B")
R = TypeVar("R")


@contextlib.contextmanager
def executor_from_args(workers: int | None, scheduler: str | None) -> Iterator[Executor | None]:
    """An executor for ``--workers N`` (process pool) or ``--scheduler ADDRESS`` (Dask)."""
    if workers is not None and scheduler is not None:
        raise InputError("give --workers or --scheduler, not both", source="--workers")
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise InputError(
                "--scheduler needs Dask: pip install 'allocator[dask]'", source="--scheduler"
            ) from exc
        client: Any = Client(scheduler)  # type: ignore[no-untyped-call]
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    if workers is None or workers == 1:
        yield None
        return
    if workers < 1:
        raise InputError(f"must be >= 1, got {workers}", source="--workers")
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield pool


def _dask_workers(executor: Executor) -> list[str]:
    """The worker addresses of a Dask ``Client.get_executor()`` (sorted), else ``[]``."""
    module = sys.modules.get("distributed.cfexecutor")
    if module is None or not isinstance(executor, module.ClientExecutor):
        return []
    client: Any = executor._client
    # ``nthreads()`` lists every worker (``scheduler_info()`` listed at most five in some
    # releases of 2025-2026).
    return sorted(client.nthreads())


#: glibc's ``mallopt`` parameter for the ``mmap`` threshold, and the value its sliding threshold
#: reaches at most on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_MALLOC_TUNED: list[bool | None] = [None]


def tune_worker_malloc() -> bool:
    """Restore glibc's large ``mmap`` threshold in a worker started with a malloc trim threshold.

    Runs once per process (later calls return the first call's answer). Does nothing unless
    ``MALLOC_TRIM_THRESHOLD_`` is set, ``MALLOC_MMAP_THRESHOLD_`` is not, and ``mallopt`` is
    found (glibc). Returns whether the threshold was set.
    """
    if _MALLOC_TUNED[0] is not None:
        return _MALLOC_TUNED[0]
    env = os.environ
    tuned = False
    if "MALLOC_TRIM_THRESHOLD_" in env and "MALLOC_MMAP_THRESHOLD_" not in env:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            tuned = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    _MALLOC_TUNED[0] = tuned
    return tuned


class _Missing:
    """Returned by a worker that does not hold the block it was asked to work on."""


# Worker-side cache: blocks of the most recent run only (a new run token clears it).
_CACHE: dict[tuple[str, int], Any] = {}
_CACHE_TOKEN: list[str] = [""]
_CACHE_LOCK = threading.Lock()
# The runners alive in this process, by token: a forked worker finds its parent's blocks here.
_RUNNERS: dict[str, weakref.ref[BlockRunner[Any]]] = {}


def _cached_call(
    token: str, index: int, block: Any, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """Run ``fn(block, *args)`` in a worker, keeping ``block`` for later rounds."""
    ref = _RUNNERS.get(token)
    runner = ref() if ref is not None else None
    if runner is not None:  # forked from the process that made the runner: no copy needed
        return fn(runner.blocks[index], *args)
    tune_worker_malloc()
    with _CACHE_LOCK:
        if block is not None:
            if _CACHE_TOKEN[0] != token:
                _CACHE.clear()
                _CACHE_TOKEN[0] = token
            _CACHE[(token, index)] = block
        data = _CACHE.get((token, index))
    if data is None:
        return _Missing()
    return fn(data, *args)


class BlockRunner(Generic[B]):
    """Map a function over fixed data blocks, serially or on an executor.

    Parameters
    ----------
    blocks
        The data blocks (picklable).
    executor
        ``None`` runs in this process, in order.
    """

    def __init__(self, blocks: Sequence[B], executor: Executor | None = None) -> None:
        self.blocks = list(blocks)
        self.executor = executor
        self.token = uuid.uuid4().hex
        token = self.token
        _RUNNERS[token] = weakref.ref(self, lambda _: _RUNNERS.pop(token, None))

    def _submit(
        self,
        index: int,
        block: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        homes: Sequence[str],
    ) -> Any:
        executor: Any = self.executor
        if homes:
            return executor.submit(
                _cached_call,
                self.token,
                index,
                block,
                fn,
                args,
                workers=[homes[index % len(homes)]],
                allow_other_workers=True,
            )
        return executor.submit(_cached_call, self.token, index, block, fn, args)

    def map(self, fn: Callable[..., R], *args: Any) -> list[R]:
        """``[fn(block, *args) for block in blocks]``, in block order."""
        if self.executor is None or len(self.blocks) == 0:
            return [fn(block, *args) for block in self.blocks]
        # Blocks go out only to workers that answer "missing" (forked workers never do).
        homes = _dask_workers(self.executor)
        futures = [self._submit(i, None, fn, args, homes) for i in range(len(self.blocks))]
        results: list[Any] = [f.result() for f in futures]
        for _ in range(8):
            missing = [i for i, r in enumerate(results) if isinstance(r, _Missing)]
            if not missing:
                break
            retry = {i: self._submit(i, self.blocks[i], fn, args, homes) for i in missing}
            for i, f in retry.items():
                results[i] = f.result()
        if any(isinstance(r, _Missing) for r in results):  # pragma: no cover - defensive
            raise RuntimeError("a worker lost its data block twice in a row")
        return results

    def map_items(self, fn: Callable[..., R], items: Sequence[Any], *args: Any) -> list[R]:
        """``[fn(item, *args) for item in items]`` on the executor (no caching), in order."""
        if self.executor is None or len(items) <= 1:
            return [fn(item, *args) for item in items]
        futures = [self.executor.submit(fn, item, *args) for item in items]
        return [f.result() for f in futures]
