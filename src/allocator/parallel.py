"""Executor plumbing: ``None`` is serial and deterministic; pools and Dask scale out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from allocator.errors import InputError

__all__ = ["executor_from_args"]


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
