"""The package's top-level names and the optional ``testing`` extra."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

import allocator

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_exports() -> None:
    from allocator.explain import explain, explain_order
    from allocator.rules import load_rules

    assert allocator.load_rules is load_rules
    assert allocator.explain is explain
    assert allocator.explain_order is explain_order
    assert {"load_rules", "explain", "explain_order", "Explanation"} <= set(allocator.__all__)
    for name in allocator.__all__:
        assert hasattr(allocator, name), name


def test_testing_extra_is_declared() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("hypothesis") for dep in extras["testing"])
    assert "testing" in extras["all"][0]
    assert "allocator[testing]" in extras["dev"]


def test_testing_module_says_how_to_install_hypothesis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "allocator.testing", raising=False)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'allocator\[testing\]'"):
        importlib.import_module("allocator.testing")
