"""Shared benchmark configuration: the ``large`` marker (run with ``make bench-large``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "large: long benchmark at production scale (make bench-large; not in make bench)"
    )
