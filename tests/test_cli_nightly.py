"""The nightly job from the command line: re-optimising from yesterday's result folder, and
spending a time limit on the proof (``--warm-start``, ``--change-penalty``, ``--prove``)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from allocator import (
    RuleSet,
    Status,
    compile_problem,
    read_assignments,
    read_network,
    read_orders,
    solve,
)
from allocator.cli import main
from allocator.errors import InputError
from allocator.solvers.exact import solve_exact
from tests.solvers.solvers_support import generated


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Yesterday's network, backlog and result folder; tonight's network and backlog.

    Tonight 40 of yesterday's orders have shipped and every location holds 20 % less stock, so
    part of yesterday's plan no longer fits.
    """
    root = tmp_path_factory.mktemp("nightly")
    day0 = root / "day0"
    code = main(
        [
            "generate",
            "--orders",
            "240",
            "--locations",
            "8",
            "--skus",
            "80",
            "--seed",
            "3",
            "--out",
            str(day0),
        ]
    )
    assert code == 0
    day1 = root / "day1"
    day1.mkdir()
    for table in ("locations.csv", "stock.csv"):
        (day1 / table).write_bytes((day0 / table).read_bytes())
    orders = pl.read_csv(day0 / "orders.csv", infer_schema=False)
    shipped = orders["order_id"].unique(maintain_order=True).head(40)
    orders.filter(~pl.col("order_id").is_in(shipped.implode())).write_csv(day1 / "orders.csv")
    stock = pl.read_csv(day0 / "stock.csv")
    stock.with_columns((pl.col("on_hand") * 0.8).round().cast(pl.Int64)).write_csv(
        day1 / "stock.csv"
    )
    yesterday = root / "yesterday"
    code = main(
        [
            "allocate",
            "--network",
            str(day0),
            "--orders",
            str(day0 / "orders.csv"),
            "--method",
            "decompose",
            "--time-limit",
            "3",
            "--out",
            str(yesterday),
        ]
    )
    assert code == 0
    return {"day0": day0, "day1": day1, "yesterday": yesterday, "root": root}


def _tonight(nights: dict[str, Path], out: Path, *extra: str) -> int:
    day1 = nights["day1"]
    return main(
        [
            "allocate",
            "--network",
            str(day1),
            "--orders",
            str(day1 / "orders.csv"),
            "--time-limit",
            "3",
            "--out",
            str(out),
            *extra,
        ]
    )


def _summary(folder: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads((folder / "summary.json").read_text())
    return result


@pytest.mark.slow
def test_warm_start_from_yesterdays_folder_limits_churn(nights: dict[str, Path]) -> None:
    root = nights["root"]
    cold = root / "cold"
    assert _tonight(nights, cold, "--method", "decompose") == 0
    assert _summary(cold)["changes"] is None  # no previous plan, nothing to count against

    free, sticky = root / "free", root / "sticky"
    assert _tonight(nights, free, "--warm-start", str(nights["yesterday"])) == 0
    assert (
        _tonight(
            nights,
            sticky,
            "--warm-start",
            str(nights["yesterday"] / "assignments.csv"),  # the file itself also works
            "--change-penalty",
            "100",
        )
        == 0
    )
    s_free, s_sticky = _summary(free), _summary(sticky)
    assert isinstance(s_free["changes"], int)
    assert isinstance(s_sticky["changes"], int)
    assert s_sticky["changes"] <= s_free["changes"]

    # The counts are those of the written folders: parcels tonight's plan adds for orders that
    # yesterday's plan had served.
    def new_parcels(folder: Path) -> int:
        old = read_assignments(nights["yesterday"]).select("order_id", "location_id").unique()
        new = read_assignments(folder).select("order_id", "location_id").unique()
        had = new.filter(pl.col("order_id").is_in(old["order_id"].implode()))
        return had.join(old, on=["order_id", "location_id"], how="anti").height

    assert s_free["changes"] == new_parcels(free)
    assert s_sticky["changes"] == new_parcels(sticky)

    # Both plans are feasible tonight, and their bounds hold for the plain cost.
    network = read_network(nights["day1"])
    orders = read_orders(nights["day1"] / "orders.csv")
    for folder in (free, sticky):
        s = _summary(folder)
        cost = s["cost"]
        assert isinstance(cost, dict)
        assert isinstance(s["lower_bound"], float)
        assert s["lower_bound"] <= cost["total"] + 1e-6
    problem = compile_problem(network, orders, RuleSet())
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    assert _summary(sticky)["lower_bound"] <= exact.objective + 1e-6  # type: ignore[operator]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--change-penalty", "5"), "--change-penalty: needs --warm-start"),
        (("--change-penalty", "-1"), "--change-penalty: must be >= 0"),
        (("--warm-start", "no/such/folder"), "no such result folder or assignments file"),
        (("--warm-start", "{day1}"), "missing table assignments.csv"),
        (("--warm-start", "{yesterday}", "--policy", "greedy"), "need an optimising one"),
        (("--prove", "--policy", "shopify_default"), "need an optimising one"),
        (("--warm-start", "{yesterday}", "--method", "exact"), "need method 'auto' or"),
        (("--warm-start", "{bad}"), "row 2, column 'qty': expected a number, found 'two'"),
        (("--warm-start", "{twice}"), "duplicate key"),
    ],
)
def test_bad_nightly_options_exit_2_and_write_nothing(
    nights: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    rows = (nights["yesterday"] / "assignments.csv").read_text().splitlines()
    bad = tmp_path / "bad"
    bad.mkdir()
    header, first, second, *rest = rows
    broken = ",".join([*second.split(",")[:-1], "two"])
    (bad / "assignments.csv").write_text("\n".join([header, first, broken, *rest]) + "\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([header, first, first]) + "\n")
    paths = {"day1": nights["day1"], "yesterday": nights["yesterday"], "bad": bad, "twice": twice}
    out = tmp_path / "out"
    code = _tonight(nights, out, *(arg.format(**paths) for arg in extra))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("allocator: error:")
    assert message in err
    assert not out.exists()


def test_read_assignments_reads_folders_files_and_parquet(
    nights: dict[str, Path], tmp_path: Path
) -> None:
    from_folder = read_assignments(nights["yesterday"])
    from_file = read_assignments(nights["yesterday"] / "assignments.csv")
    assert from_folder.equals(from_file)
    assert from_folder.columns == ["order_id", "line_id", "sku", "location_id", "qty"]
    assert from_folder["qty"].dtype == pl.Int64
    assert from_folder.height > 0
    assert from_folder["qty"].min() >= 1
    parquet = tmp_path / "assignments.parquet"
    from_folder.write_parquet(parquet)
    assert read_assignments(parquet).equals(from_folder)
    # Only the keys and quantities are needed (sku is written, not read back).
    minimal = tmp_path / "minimal.csv"
    from_folder.drop("sku").write_csv(minimal)
    assert read_assignments(minimal).drop("sku").equals(from_folder.drop("sku"))
    missing = tmp_path / "missing.csv"
    from_folder.drop("qty").write_csv(missing)
    with pytest.raises(InputError, match="qty"):
        read_assignments(missing)


def test_python_api_takes_a_result_folder_as_warm_start(nights: dict[str, Path]) -> None:
    network = read_network(nights["day1"])
    orders = read_orders(nights["day1"] / "orders.csv")
    problem = compile_problem(network, orders, RuleSet())
    by_path = solve(problem, warm_start=nights["yesterday"], change_penalty=50.0, time_limit=2)
    by_table = solve(
        problem,
        warm_start=read_assignments(nights["yesterday"]),
        change_penalty=50.0,
        time_limit=2,
    )
    assert by_path.is_feasible()
    assert by_table.is_feasible()
    assert isinstance(by_path.summary().changes, int)
    assert by_path.info["change_penalty"] == 50.0
    with pytest.raises(InputError, match="needs warm_start"):
        solve(problem, change_penalty=5.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_prove_reaches_the_exact_optimum_where_a_plain_run_stops_short(seed: int) -> None:
    # Generated instances whose decomposition alone stops with a gap: every contested row is
    # already in one group, and rows the master LP left unpriced bind inside it (seed 1:
    # bound 2,525.45, optimum 2,527.55). With prove=True the time left goes to the exact MILP.
    problem = generated(120, 8, 60, seed=seed)
    exact = solve_exact(problem, mip_gap=0.0, time_limit=60)
    assert exact.optimal
    plain = solve(problem, method="decompose", time_limit=20.0)
    assert plain.status != Status.OPTIMAL
    proved = solve(problem, method="decompose", time_limit=20.0, prove=True)
    assert proved.is_feasible()
    assert proved.lower_bound is not None
    assert proved.lower_bound <= exact.objective + 1e-6
    assert proved.status == Status.OPTIMAL
    assert proved.cost.total == pytest.approx(exact.objective, abs=1e-6)
