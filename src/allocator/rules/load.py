"""Reading rule files: TOML -> merged dict -> validated, frozen :class:`RuleSet`.

A rule file is TOML (``docs/rules.md``). ``extends = "NAME"`` (a bundled rule set) or
``extends = "relative/path.toml"`` (next to the extending file) merges the file over its parent:
tables merge key by key, lists of named rules (eligibility, stock rules, preferences) merge by
``name`` (same name replaces, new names append; ``enabled = false`` switches one off), other values
replace. Every error is a :class:`~allocator.errors.RulesError` naming the file, the key path and
what was expected; unknown keys come with a "did you mean".
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from allocator.errors import RulesError, UnknownPolicyError
from allocator.rules.schema import RuleSet

__all__ = [
    "BUILTIN_POLICIES",
    "PEER_POLICIES",
    "bundled_rule_sets",
    "load_rules",
    "parse_rules",
]

#: Names handled in code, not by a file.
BUILTIN_POLICIES: tuple[str, ...] = ("optimize", "greedy", "baseline")

#: Baseline policies of today's platforms (``rules/peers/NAME.toml``; see ``docs/rules.md``).
PEER_POLICIES: tuple[str, ...] = (
    "saleor_sorting_order",
    "saleor_high_stock",
    "solidus_on_hand_first",
    "spree_legacy",
    "spree_rules",
    "magento_priority",
    "magento_distance",
    "medusa_first_location",
    "shopify_default",
    "salesforce_fewest_splits",
    "sterling_weighted",
    "oca_fcfs",
)

#: Lists of rule tables that merge by ``name`` under ``extends``.
_NAMED_LISTS = frozenset(
    {
        ("eligibility",),
        ("stock", "safety_stock"),
        ("stock", "ring_fence"),
        ("stock", "exposure"),
        ("objective", "preferences"),
    }
)


def _bundle() -> Traversable:
    return files("allocator") / "_rulesets"


def bundled_rule_sets() -> dict[str, str]:
    """Bundled rule sets: name -> first line of the description (``rules/`` and ``peers/``)."""
    out: dict[str, str] = {}
    root = _bundle()
    for folder in (root, root / "peers"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda t: t.name):
            if entry.name.endswith(".toml"):
                try:
                    raw = tomllib.loads(entry.read_text(encoding="utf-8"))
                except tomllib.TOMLDecodeError:
                    raw = {}
                desc = str(raw.get("description", "")).strip().splitlines()
                out[entry.name[: -len(".toml")]] = desc[0] if desc else ""
    return out


def _find_bundled(name: str) -> Traversable | None:
    root = _bundle()
    for candidate in (root / f"{name}.toml", root / "peers" / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_rules(name_or_path: str | Path) -> RuleSet:
    """Load a rule set by bundled name (``"min_splits"``, ``"shopify_default"``...) or file path.

    Parameters
    ----------
    name_or_path
        A bundled name (see :func:`bundled_rule_sets`) or the path of a ``.toml`` file.

    Returns
    -------
    RuleSet

    Raises
    ------
    RulesError
        If the file is not valid TOML or breaks a rule (names the file and the key path).
    UnknownPolicyError
        If the name is neither a bundled rule set nor an existing file.
    """
    text = str(name_or_path)
    path = Path(text)
    if isinstance(name_or_path, Path) or path.suffix.lower() == ".toml" or "/" in text:
        if not path.is_file():
            raise UnknownPolicyError("rule file not found", source=text)
        return _validate(_load_raw(path, ()), str(path))
    bundled = _find_bundled(text)
    if bundled is None:
        known = sorted([*bundled_rule_sets(), "default", *BUILTIN_POLICIES])
        close = difflib.get_close_matches(text, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownPolicyError(
            f"unknown policy or rule set {text!r}{hint} (bundled: {', '.join(known)}; "
            "or give the path of a .toml file)",
            source="policy",
        )
    return _validate(_load_raw(bundled, ()), _display(bundled))


def parse_rules(
    text: str, *, source: str = "<rules>", base_dir: str | Path | None = None
) -> RuleSet:
    """Parse a rule set from TOML text (``extends`` paths are relative to ``base_dir``)."""
    raw = _parse_toml(text, source)
    anchor = Path(base_dir) if base_dir is not None else Path.cwd()
    merged = _resolve_extends(raw, anchor / "<text>", source, (source,))
    return _validate(merged, source)


def _display(src: Traversable | Path) -> str:
    return str(src)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"not valid TOML: {exc}", source=source) from None


def _load_raw(src: Traversable | Path, chain: tuple[str, ...]) -> dict[str, Any]:
    """Read one file and everything it extends, merged (validated file by file)."""
    shown = _display(src)
    key = str(Path(shown).resolve()) if isinstance(src, Path) else shown
    if key in chain:
        raise RulesError(
            "a rule set may not extend itself (cycle: "
            + " -> ".join(Path(c).name for c in (*chain, key))
            + ")",
            source=shown,
            key="extends",
        )
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read the rule file: {exc}", source=shown) from None
    raw = _parse_toml(text, shown)
    stem = src.name[: -len(".toml")] if src.name.endswith(".toml") else src.name
    raw.setdefault("name", stem)
    return _resolve_extends(raw, src, shown, (*chain, key))


def _resolve_extends(
    raw: dict[str, Any], src: Traversable | Path, shown: str, chain: tuple[str, ...]
) -> dict[str, Any]:
    parent_ref = raw.pop("extends", None)
    if parent_ref is None:
        return raw
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise RulesError(
            "expected the name of a bundled rule set or a relative path to a .toml file",
            source=shown,
            key="extends",
        )
    parent: Traversable | Path | None
    if parent_ref.endswith(".toml") or "/" in parent_ref:
        base = src.parent if isinstance(src, Path) else None
        # A bundled file extending by path resolves inside the bundle.
        parent = _bundle() / parent_ref if base is None else (base / parent_ref).resolve()
        if not parent.is_file():
            raise RulesError(f"extends {parent_ref!r}: file not found", source=shown, key="extends")
    else:
        parent = _find_bundled(parent_ref)
        if parent is None:
            close = difflib.get_close_matches(parent_ref, list(bundled_rule_sets()), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RulesError(
                f"extends {parent_ref!r}: no such bundled rule set{hint}",
                source=shown,
                key="extends",
            )
    base_raw = _load_raw(parent, chain)
    # The parent must be valid on its own, so any error left is the extending file's.
    _validate(dict(base_raw), _display(parent))
    base_raw.pop("description", None)
    return _merge(base_raw, raw, ())


def _merge(
    base: Mapping[str, Any], over: Mapping[str, Any], path: tuple[str, ...]
) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        here = (*path, key)
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value, here)
        elif here in _NAMED_LISTS and isinstance(old, list) and isinstance(value, list):
            merged = list(old)
            index = {r.get("name"): i for i, r in enumerate(merged) if isinstance(r, Mapping)}
            for rule in value:
                name = rule.get("name") if isinstance(rule, Mapping) else None
                if name is not None and name in index:
                    merged[index[name]] = rule
                else:
                    merged.append(rule)
            out[key] = merged
        else:
            out[key] = value
    return out


# ---- pydantic errors -> RulesError ------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-before", "function-after") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that the key path ``loc`` points into."""
    model: type[BaseModel] | None = RuleSet
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        models = _models_in(field.annotation)
        model = models[0] if models else None
    return model


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    msg = str(error["msg"])
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        known = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        allowed = f" (allowed here: {', '.join(known)})" if known else ""
        return f"unknown key '{loc[-1]}'{hint}{allowed}"
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        got = error.get("input")
        close = difflib.get_close_matches(str(got), expected, n=1) if expected else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"expected one of {', '.join(repr(e) for e in expected)}, got {got!r}{hint}"
    if kind == "missing":
        return "this key is required"
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
        for words, sign in (
            ("greater than or equal to", ">="),
            ("less than or equal to", "<="),
            ("greater than", ">"),
            ("less than", "<"),
        ):
            msg = msg.replace(f"expected {words} ", f"expected a value {sign} ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        got = error["input"]
        if not isinstance(got, dict | list):
            msg = f"{msg} (got {got!r})"
    return msg


def _validate(raw: dict[str, Any], source: str) -> RuleSet:
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        message = _describe(first)
        if len(errors) > 1:
            rest = "; ".join(
                f"{_key_path(tuple(e['loc'])) or '(top level)'}: {_describe(e)}"
                for e in errors[1:4]
            )
            more = f" (and {len(errors) - 4} more)" if len(errors) > 4 else ""
            message = f"{message} [also: {rest}{more}]"
        raise RulesError(
            message, source=source, key=_key_path(tuple(first["loc"])) or None
        ) from None
