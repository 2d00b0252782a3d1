"""Reading rule files: format, errors with file and key path, extends, bundled sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocator.allocate import _resolve_rules
from allocator.errors import RulesError, UnknownPolicyError
from allocator.rules import RuleSet, bundled_rule_sets, load_rules, parse_rules


def _error(text: str) -> RulesError:
    with pytest.raises(RulesError) as info:
        parse_rules(text, source="merchant.toml")
    return info.value


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            "[constraints]\nmax_locations_per_order = 0",
            "constraints.max_locations_per_order",
            ">= 1",
        ),
        ("[objective]\nbackorder_penalty = -1", "objective.backorder_penalty", ">= 0"),
        (
            '[[stock.ring_fence]]\nname = "f"\nchannel = "store"\nshare = 1.2',
            "stock.ring_fence[0].share",
            "<= 1",
        ),
        ('[greedy]\nranking = ["distnace"]', "greedy.ranking[0].by", "did you mean 'distance'"),
        (
            "[objective]\nbackorder_penalti = 3",
            "objective.backorder_penalti",
            "did you mean 'backorder_penalty'",
        ),
        ('strategy = "optimise"', "strategy", "did you mean 'optimize'"),
        (
            '[[eligibility]]\nname = "x"\nwhen = { chanel = "web" }\nexclude = { kind = "store" }',
            "eligibility[0].when.chanel",
            "did you mean 'channel'",
        ),
        ('[[eligibility]]\nname = "x"', "eligibility[0]", "exactly one of"),
        (
            '[[stock.safety_stock]]\nname = "s"\nunits = 1\nshare = 0.5',
            "stock.safety_stock[0]",
            "exactly one of units or share",
        ),
        (
            '[[eligibility]]\nname = "x"\nsame_country = true\n'
            '[[eligibility]]\nname = "x"\nsame_country = true',
            None,
            "named 'x'",
        ),
        ('[greedy]\nranking = [{ by = "preferred" }]', "greedy.ranking[0]", "needs 'where'"),
        (
            '[greedy]\nranking = [{ by = "score", weights = { miles = 1 } }]',
            "greedy.ranking[0]",
            "unknown score term",
        ),
        ('[greedy]\nfill = "line_by_line"\nrequire_full = true', "greedy", "fewest_locations"),
        (
            '[[stock.ring_fence]]\nname = "a"\nchannel = "web"\nshare = 0.6\n'
            '[[stock.ring_fence]]\nname = "b"\nchannel = "store"\nshare = 0.6',
            "stock",
            "more than 100 %",
        ),
        ("[objective\n", None, "not valid TOML"),
    ],
)
def test_bad_rules_name_the_file_the_key_and_what_was_expected(
    text: str, key: str | None, words: str
) -> None:
    err = _error(text)
    assert err.source == "merchant.toml"
    assert err.key == key
    assert words in str(err)
    assert str(err).startswith("merchant.toml")


def test_extends_merges_tables_and_named_rules(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(
        'description = "base"\n[objective]\nsplit_penalty = 3.0\nbackorder_penalty = 50\n'
        '[[eligibility]]\nname = "a"\nsame_country = true\n'
        '[[eligibility]]\nname = "b"\nmax_distance_km = 900\n'
    )
    child = tmp_path / "child.toml"
    child.write_text(
        'extends = "base.toml"\n[objective]\nsplit_penalty = 5.0\n'
        '[[eligibility]]\nname = "b"\nmax_distance_km = 500\n'
        '[[eligibility]]\nname = "a"\nsame_country = true\nenabled = false\n'
        '[[eligibility]]\nname = "c"\nexclude = { kind = "store" }\n'
    )
    rules = load_rules(child)
    assert rules.name == "child"
    assert rules.objective.split_penalty == 5.0
    assert rules.objective.backorder_penalty == 50
    assert [(r.name, r.enabled) for r in rules.eligibility] == [
        ("a", False),
        ("b", True),
        ("c", True),
    ]
    assert rules.eligibility[1].max_distance_km == 500
    assert rules.description == ""


def test_a_file_extending_a_bundled_set_holds_only_its_differences(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('extends = "default"\n[constraints]\nmax_locations_per_order = 2\n')
    rules = load_rules(str(path))
    assert rules.constraints.max_locations_per_order == 2
    assert rules.objective == load_rules("default").objective


def test_self_and_cyclic_extends_are_errors(tmp_path: Path) -> None:
    me = tmp_path / "me.toml"
    me.write_text('extends = "me.toml"\n')
    with pytest.raises(RulesError, match="may not extend itself") as info:
        load_rules(me)
    assert info.value.key == "extends"
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(RulesError, match="cycle"):
        load_rules(tmp_path / "a.toml")
    with pytest.raises(RulesError, match="no such bundled rule set; did you mean 'default'"):
        parse_rules('extends = "defualt"')


def test_error_in_the_parent_names_the_parent(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text("[objective]\nsplit_penalty = -2\n")
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\n')
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "child.toml")
    assert info.value.source is not None
    assert info.value.source.endswith("parent.toml")
    assert info.value.key == "objective.split_penalty"


def test_unknown_names_and_missing_files() -> None:
    with pytest.raises(UnknownPolicyError, match="did you mean 'shopify_default'"):
        load_rules("shopify_defualt")
    with pytest.raises(UnknownPolicyError, match="not found"):
        load_rules("missing/rules.toml")
    with pytest.raises(UnknownPolicyError):
        _resolve_rules(None, "nonsense")


def test_bundled_rule_sets_all_load() -> None:
    names = bundled_rule_sets()
    for name in ("default", "ship_from_store", "min_splits", "protect_store_stock"):
        assert name in names
    for name in names:
        assert load_rules(name).name == name


def test_default_file_spells_out_the_built_in_defaults() -> None:
    from_file = load_rules("default")
    built_in = RuleSet()
    assert from_file.model_dump(exclude={"description"}) == built_in.model_dump(
        exclude={"description"}
    )
    assert _resolve_rules(None, "default") == from_file
    assert _resolve_rules(None, "optimize").strategy == "optimize"
    assert _resolve_rules(None, "greedy").greedy is None


def test_rule_sets_are_frozen() -> None:
    rules = load_rules("min_splits")
    with pytest.raises(ValueError, match="frozen"):
        rules.objective.split_penalty = 1.0  # type: ignore[misc]
