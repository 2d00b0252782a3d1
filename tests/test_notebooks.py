"""Every notebook in ``notebooks/`` runs as a plain script, with small sizes, without error.

The notebooks are jupytext percent scripts; each reads its size from the environment and
asserts that its headline numbers are sane, so running it is the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

#: Small sizes per notebook (environment variables the notebook reads).
SMALL: dict[str, dict[str, str]] = {
    "01_quickstart.py": {"ALLOCATOR_NB_ORDERS": "300"},
    "02_peer_policies_vs_optimiser.py": {"ALLOCATOR_NB_ORDERS": "250"},
    "03_nightly_vs_realtime.py": {"ALLOCATOR_NB_ORDERS": "500", "ALLOCATOR_NB_SEEDS": "11"},
    "05_nightly_churn.py": {"ALLOCATOR_NB_ORDERS": "300"},
    "04_dask_policy_sweep.py": {
        "ALLOCATOR_NB_ORDERS": "300",
        "ALLOCATOR_NB_WORKERS": "2",
        "ALLOCATOR_NB_PROCESSES": "0",
    },
}


def test_every_notebook_has_small_settings() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == sorted(SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    env = {**os.environ, **SMALL[name], "ALLOCATOR_NB_OUT": str(tmp_path / "out")}
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, str(NOTEBOOKS / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
