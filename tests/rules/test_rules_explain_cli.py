"""Explanations (API and ``allocator explain``), ``allocator validate --rules``, and every peer
policy through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rules_cases import network, orders

from allocator import allocate, compile_problem, read_network, read_orders
from allocator.cli import main
from allocator.errors import InputError
from allocator.explain import Explanation, explain
from allocator.plan import Solution, check_feasible, evaluate
from allocator.problem import Problem
from allocator.rules import PEER_POLICIES, load_rules, parse_rules

NEAR = {"lat": 40.1, "lon": -75.0}
MID = {"lat": 41.0, "lon": -75.0}


def _case():  # type: ignore[no-untyped-def]
    net = network(
        [
            {"location_id": "N", **NEAR},
            {"location_id": "M", **MID},
            {"location_id": "S", "kind": "store", **NEAR},
            {"location_id": "D", "can_ship": False, **NEAR},
            {"location_id": "E", **NEAR},
        ],
        {("N", "X"): 5, ("M", "X"): 5, ("S", "X"): 5, ("D", "X"): 5},
    )
    batch = orders({"order_id": "o1", "lines": [("X", 2)]}, {"order_id": "o2", "lines": [("X", 1)]})
    rules = parse_rules(
        '[[eligibility]]\nname = "no-stores"\nexclude = { kind = "store" }', source="r.toml"
    )
    return net, batch, rules


def test_explanation_names_rules_prices_the_plan_and_the_alternative() -> None:
    net, batch, rules = _case()
    plan = allocate(net, batch, rules=rules)
    ex = explain(plan, "o1")
    assert isinstance(ex, Explanation)
    verdict = {v.location_id: v for v in ex.locations}
    assert verdict["S"].status == "excluded"
    assert verdict["S"].rules == ("eligibility.no-stores",)
    assert "no-stores" in verdict["S"].detail
    assert verdict["D"].status == "excluded"
    assert verdict["D"].rules == ("network.can_ship",)
    assert verdict["E"].status == "no_stock"
    assert verdict["N"].status == "used"
    assert verdict["M"].status == "candidate"
    assert ex.outcome == "served"
    assert ex.chosen.locations == ("N",)
    # The per-order costs add up to the plan's cost.
    total = sum(explain(plan, o).chosen.cost.total for o in ("o1", "o2"))
    assert total == pytest.approx(evaluate(plan.problem, plan.solution).total)
    assert ex.alternative is not None
    assert ex.alternative.locations == ("M",)
    assert ex.extra_cost is not None
    assert ex.extra_cost > 0
    text = ex.to_text()
    assert "cheapest alternative" in text
    assert "excluded by rule 'no-stores'" in text
    round_trip = Explanation.model_validate_json(ex.model_dump_json())
    assert round_trip.chosen == ex.chosen


def test_explaining_a_greedy_plan_can_show_a_cheaper_plan() -> None:
    net, batch, _ = _case()
    plan = allocate(net, batch, policy="magento_priority")  # priority ties -> id order: D, E, M
    ex = explain(plan, "o1")
    assert ex.best is not None
    assert ex.best.cost.total <= ex.chosen.cost.total + 1e-9
    with pytest.raises(InputError, match="not in the plan"):
        explain(plan, "nope")


def _write(tmp_path: Path) -> tuple[Path, Path]:
    net, batch, _ = _case()
    folder = tmp_path / "net"
    folder.mkdir()
    net.locations.write_csv(folder / "locations.csv")
    net.stock.write_csv(folder / "stock.csv")
    path = tmp_path / "orders.csv"
    batch.lines.write_csv(path)
    return folder, path


def test_cli_explain_prints_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, path = _write(tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[eligibility]]\nname = "no-stores"\nexclude = { kind = "store" }\n')
    args = ["explain", "--network", str(folder), "--orders", str(path), "--order", "o1"]
    assert main([*args, "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    assert "order o1" in out
    assert "no-stores" in out
    assert "chosen plan" in out
    assert main([*args, "--policy", "shopify_default", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["order_id"] == "o1"
    assert data["policy"] == "shopify_default"
    assert main([*args[:-1], "missing"]) == 2
    assert "not in the orders" in capsys.readouterr().err


def test_cli_validate_a_rule_file_alone_and_against_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, path = _write(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text('extends = "default"\n[[eligibility]]\nname = "x"\nsame_country = true\n')
    assert main(["validate", "--rules", str(good)]) == 0
    assert "rules ok" in capsys.readouterr().out
    assert (
        main(["validate", "--rules", str(good), "--network", str(folder), "--orders", str(path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "ok:" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[constraints]\nmax_locations_per_order = 0\n")
    assert main(["validate", "--rules", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err
    assert "constraints.max_locations_per_order" in err


def _solution_from_files(problem: Problem, out: Path) -> Solution:
    """The plan the CLI wrote to ``out``, mapped back onto ``problem``'s arrays."""
    p = problem
    arcs = pl.DataFrame(
        {
            "order_id": p.order_ids[p.line_order[p.arc_line]].astype(str),
            "line_id": p.line_ids[p.arc_line].astype(str),
            "location_id": p.location_ids[p.arc_location].astype(str),
            "arc": np.arange(p.n_arcs),
        }
    )
    lines = pl.DataFrame(
        {
            "order_id": p.order_ids[p.line_order].astype(str),
            "line_id": p.line_ids.astype(str),
            "line": np.arange(p.n_lines),
        }
    )
    keys = {"order_id": pl.String, "line_id": pl.String, "location_id": pl.String}
    assigned = pl.read_csv(out / "assignments.csv", schema_overrides=keys)
    backordered = pl.read_csv(out / "backorders.csv", schema_overrides=keys)
    rejected = pl.read_csv(out / "rejections.csv", schema_overrides=keys)
    on_arcs = assigned.join(arcs, on=["order_id", "line_id", "location_id"], how="left")
    assert on_arcs["arc"].null_count() == 0, "an assignment on an arc the rules do not allow"
    on_lines = backordered.join(lines, on=["order_id", "line_id"], how="left")
    assert on_lines["line"].null_count() == 0, "a backorder of an unknown line"
    arc_qty = np.zeros(p.n_arcs, np.int64)
    np.add.at(arc_qty, on_arcs["arc"].to_numpy(), on_arcs["qty"].to_numpy())
    line_backorder = np.zeros(p.n_lines, np.int64)
    np.add.at(line_backorder, on_lines["line"].to_numpy(), on_lines["qty"].to_numpy())
    order_rejected = np.isin(p.order_ids.astype(str), rejected["order_id"].to_numpy())
    return Solution(arc_qty, line_backorder, order_rejected)


@pytest.fixture(scope="module", params=["demo", "generated"])
def peer_instance(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo instance (``allocator demo``) and a generated one of the same size."""
    generate = pytest.importorskip("allocator.generate")
    if request.param == "demo":
        from allocator.demo_data import default_instance

        data = default_instance()
    else:  # allocator generate --orders 300 --locations 12 --skus 150 --seed 7
        data = generate.generate(300, 12, 150, seed=7)
    folder: Path = generate.write(data, tmp_path_factory.mktemp(request.param) / "inst")
    return folder


@pytest.mark.parametrize("policy", PEER_POLICIES)
def test_every_peer_policy_runs_through_the_cli(
    policy: str, peer_instance: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = peer_instance, tmp_path / "result"
    capsys.readouterr()
    code = main(
        [
            "allocate",
            "--network",
            str(folder),
            "--orders",
            str(folder / "orders.csv"),
            "--policy",
            policy,
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy"] == policy
    assert summary["status"] == "heuristic"
    assert summary["orders"] == 300
    for name in ("assignments.csv", "backorders.csv", "rejections.csv", "summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    # The written plan, read back onto the policy's own compiled problem, is feasible under the
    # policy's rules and costs what the summary says.
    problem = compile_problem(
        read_network(folder), read_orders(folder / "orders.csv"), load_rules(policy)
    )
    solution = _solution_from_files(problem, out)
    assert check_feasible(problem, solution) == []
    assert evaluate(problem, solution).total == pytest.approx(summary["cost"]["total"], abs=0.01)
