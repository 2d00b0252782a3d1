"""Bad arguments to every mutating call: a typed error naming the argument, and nothing written.

For each public mutating call, Hypothesis starts from a valid call and spoils exactly one
argument: a wrong type, an empty, over-long, control-character or non-NFC identifier, an unknown
location, SKU, order or hold where one must exist, a zero, negative, fractional, boolean, NaN or
past-64-bit quantity, malformed lines, a bad time-to-live or date. The call must raise
:class:`~allocator.errors.InputError` whose ``source`` names the argument, and the ledger must
have exactly as many entries as before.
"""

from __future__ import annotations

import math
import string
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inventory_support import PROFILE, FakeClock, examples

from allocator.errors import InputError
from allocator.inventory import Ledger, open_ledger

KNOWN_LOCATIONS = {"L1", "L2"}
KNOWN_SKUS = {"SKU1", "SKU2"}
INT64_MAX = 2**63 - 1

# --- bad values ------------------------------------------------------------------------------

plain = st.text(string.ascii_letters + string.digits + "-_/", min_size=1, max_size=30)
non_strings = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(min_size=1, max_size=10),
    st.lists(st.integers(), max_size=3),
    st.booleans(),
)
with_control = st.builds(
    lambda a, c, b: a + c + b, st.text(max_size=10), st.characters(categories=["Cc"]), plain
).filter(lambda s: len(s) <= 200)
not_nfc = st.builds(
    lambda a, b: a + "e\u0301" + b, st.text(max_size=20), st.text(max_size=20)
).filter(lambda s: not unicodedata.is_normalized("NFC", s))
too_long = st.text(min_size=201, max_size=260)
bad_ids = st.one_of(non_strings, st.just(""), with_control, not_nfc, too_long)
bad_reasons = st.one_of(
    non_strings.filter(lambda v: v is not None),
    st.just(""),
    with_control,
    not_nfc,
    st.text(min_size=1001, max_size=1100),
)


def unknown(known: set[str]) -> st.SearchStrategy[str]:
    return plain.filter(lambda s: s not in known)


bad_quantities = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=INT64_MAX + 1),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(math.nan),
    st.just(2.0),
    st.builds(Decimal, st.integers(1, 10)),
    st.builds(Fraction, st.integers(1, 9), st.integers(2, 9)),
    st.text(max_size=5),
    st.none(),
    st.builds(np.float64, st.floats(0.5, 10)),
    st.just(np.bool_(True)),
)
bad_deltas = st.one_of(
    st.just(0),
    st.integers(min_value=INT64_MAX + 1),
    st.integers(max_value=-INT64_MAX - 1),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
)
bad_levels = st.one_of(  # a safety-stock level may be zero, not negative
    st.integers(max_value=-1),
    st.integers(min_value=INT64_MAX + 1),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
)
bad_ttls = st.one_of(
    st.integers(max_value=0),
    st.floats(max_value=0.0),
    st.just(math.nan),
    st.just(math.inf),
    st.just(1e300),
    st.builds(timedelta, seconds=st.integers(-(10**6), 0)),
    st.just(timedelta.max),
    st.booleans(),
    st.text(max_size=5),
)
bad_dates = st.one_of(
    st.text(max_size=10), st.integers(), st.none(), st.floats(), st.builds(lambda: (2026, 1, 1))
)
bad_nows = st.one_of(
    st.datetimes(),  # naive
    st.dates(),
    st.text(max_size=10),
    st.integers(),
    st.floats(),
)


def bad_lines(known_pairs: bool = True) -> st.SearchStrategy[Any]:
    """Lines that are malformed, or name an unknown location or SKU."""
    good_line = st.tuples(st.sampled_from(sorted(KNOWN_SKUS)), st.just("L1"), st.just(1))
    spoiled_line = st.one_of(
        st.tuples(bad_ids, st.just("L1"), st.just(1)),
        st.tuples(st.just("SKU1"), bad_ids, st.just(1)),
        st.tuples(st.just("SKU1"), st.just("L1"), bad_quantities),
        st.tuples(unknown(KNOWN_SKUS), st.just("L1"), st.just(1)),
        st.tuples(st.just("SKU1"), unknown(KNOWN_LOCATIONS), st.just(1)),
        st.lists(st.just("SKU1"), max_size=5).filter(lambda v: len(v) != 3),
        non_strings,
        st.text(max_size=5),
    )
    return st.one_of(
        st.just([]),
        st.just(()),
        non_strings.filter(lambda v: not isinstance(v, list)),
        st.text(max_size=5),
        st.builds(
            lambda before, bad, after: [*before, bad, *after],
            st.lists(good_line, max_size=2),
            spoiled_line,
            st.lists(good_line, max_size=2),
        ),
    )


# --- the calls, each with valid arguments and what may spoil each argument ---------------------

Spoilers = dict[str, st.SearchStrategy[Any]]

CALLS: dict[str, tuple[dict[str, Any], Spoilers]] = {
    "receive": (
        {"location": "L1", "sku": "SKU1", "qty": 1, "key": "fresh", "reason": None},
        {
            "location": bad_ids,
            "sku": bad_ids,
            "qty": bad_quantities,
            "key": bad_ids,
            "reason": bad_reasons,
            "settle": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
        },
    ),
    "expect": (
        {"location": "L1", "sku": "SKU1", "qty": 1, "eta": date(2026, 2, 1), "key": "fresh"},
        {
            "location": bad_ids,
            "sku": bad_ids,
            "qty": bad_quantities,
            "eta": bad_dates,
            "key": bad_ids,
            "reason": bad_reasons,
        },
    ),
    "reserve": (
        {"order_id": "o-new", "lines": [("SKU1", "L1", 1)], "key": "fresh", "ttl": None},
        {"order_id": bad_ids, "lines": bad_lines(), "key": bad_ids, "ttl": bad_ttls},
    ),
    "release": (
        {"order_id": "o-held", "key": "fresh"},
        {
            "order_id": st.one_of(bad_ids, unknown({"o-held", "o-shipped"})),
            "key": bad_ids,
            "hold": st.one_of(bad_ids.filter(lambda v: v is not None), plain),
        },
    ),
    "ship": (
        {"order_id": "o-held", "lines": [("SKU1", "L1", 1)], "key": "fresh"},
        {
            "order_id": st.one_of(bad_ids, unknown({"o-held", "o-shipped"})),
            "lines": bad_lines(),
            "key": bad_ids,
            "hold": st.one_of(bad_ids.filter(lambda v: v is not None), plain),
        },
    ),
    "restock": (
        {"order_id": "o-shipped", "lines": [("SKU1", "L1", 1)], "key": "fresh"},
        {
            "order_id": bad_ids,
            "lines": bad_lines(),
            "key": bad_ids,
            "disposition": st.one_of(st.text(max_size=10), non_strings).filter(
                lambda v: v not in ("restock", "write_off")
            ),
            "reason": bad_reasons,
        },
    ),
    "adjust": (
        {"location": "L1", "sku": "SKU1", "delta": -1, "reason": "count", "key": "fresh"},
        {
            "location": st.one_of(bad_ids, unknown(KNOWN_LOCATIONS)),
            "sku": st.one_of(bad_ids, unknown(KNOWN_SKUS)),
            "delta": bad_deltas,
            "reason": st.one_of(st.none(), bad_reasons),
            "key": bad_ids,
        },
    ),
    "transfer": (
        {"sku": "SKU1", "from_location": "L1", "to_location": "L2", "qty": 1, "key": "fresh"},
        {
            "sku": st.one_of(bad_ids, unknown(KNOWN_SKUS)),
            "from_location": st.one_of(bad_ids, unknown(KNOWN_LOCATIONS)),
            "to_location": st.one_of(bad_ids, unknown(KNOWN_LOCATIONS), st.just("L1")),
            "qty": bad_quantities,
            "key": bad_ids,
            "reason": bad_reasons,
        },
    ),
    "set_safety_stock": (
        {"location": "L1", "sku": "SKU1", "qty": 1, "key": "fresh"},
        {
            "location": st.one_of(bad_ids, unknown(KNOWN_LOCATIONS)),
            "sku": st.one_of(bad_ids, unknown(KNOWN_SKUS)),
            "qty": bad_levels,
            "key": bad_ids,
        },
    ),
    "expire_holds": ({}, {"now": bad_nows}),
}


def spoiled_call(name: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """A valid call of ``name`` with one argument replaced by a bad value."""
    valid, spoilers = CALLS[name]
    return st.sampled_from(sorted(spoilers)).flatmap(
        lambda arg: spoilers[arg].map(lambda bad: (arg, {**valid, arg: bad}))
    )


@pytest.fixture(scope="module")
def ledgers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Ledger]]:
    """One ledger per store with a little history, shared by all examples of the module."""
    opened: dict[str, Ledger] = {}

    def get(store: str, url: Callable[[], str]) -> Ledger:
        if store not in opened:
            ledger = open_ledger(url(), clock=FakeClock())
            ledger.receive("L1", "SKU1", 10, key="seed-1")
            ledger.receive("L2", "SKU2", 10, key="seed-2")
            ledger.reserve("o-held", [("SKU1", "L1", 2)], key="seed-3")
            ledger.reserve("o-shipped", [("SKU1", "L1", 2)], key="seed-4")
            ledger.ship("o-shipped", [("SKU1", "L1", 2)], key="seed-5")
            opened[store] = ledger
        return opened[store]

    folder = tmp_path_factory.mktemp("bad-input")
    yield lambda store: get(
        store,
        {
            "memory": lambda: "memory://",
            "sqlite": lambda: f"sqlite:///{folder / 'ledger.db'}?synchronous=NORMAL",
        }[store],
    )
    for ledger in opened.values():
        ledger.close()


def check_refused(ledger: Ledger, name: str, arg: str, kwargs: dict[str, Any]) -> None:
    before = ledger.entry_count()
    with pytest.raises(InputError) as error:
        getattr(ledger, name)(**kwargs)
    assert error.value.source == arg, f"{name}({arg}=...) blamed {error.value.source!r}"
    assert str(error.value)
    assert ledger.entry_count() == before


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    ("store", "ci_examples"), [("memory", 1000), ("sqlite", 100)], ids=["memory", "sqlite"]
)
def test_bad_argument_is_refused_before_any_write(
    ledgers: Callable[[str], Ledger], store: str, ci_examples: int, name: str
) -> None:
    ledger = ledgers(store)

    @settings(PROFILE, max_examples=examples(ci=ci_examples, dev=ci_examples // 10))
    @given(call=spoiled_call(name))
    def check(call: tuple[str, dict[str, Any]]) -> None:
        arg, kwargs = call
        check_refused(ledger, name, arg, kwargs)

    check()


def test_the_valid_calls_are_valid() -> None:
    """The base calls above succeed, so each failure is the spoiled argument's doing."""
    ledger = open_ledger("memory://", clock=FakeClock())
    ledger.receive("L1", "SKU1", 10, key="seed-1")
    ledger.receive("L2", "SKU2", 10, key="seed-2")
    ledger.reserve("o-held", [("SKU1", "L1", 2)], key="seed-3")
    ledger.reserve("o-shipped", [("SKU1", "L1", 2)], key="seed-4")
    ledger.ship("o-shipped", [("SKU1", "L1", 2)], key="seed-5")
    for name in ("restock", "receive", "expect", "adjust", "transfer", "set_safety_stock"):
        valid, _ = CALLS[name]
        getattr(ledger, name)(**{**valid, "key": f"ok-{name}"})
    ledger.reserve(**{**CALLS["reserve"][0], "key": "ok-reserve"})
    ledger.ship(**{**CALLS["ship"][0], "key": "ok-ship"})
    ledger.release(**{**CALLS["release"][0], "key": "ok-release"})
    ledger.expire_holds(now=datetime(2026, 1, 2, tzinfo=FakeClock().now.tzinfo))
    assert ledger.verify() == []


def test_bad_store_url() -> None:
    for url in ("mysql://x", "sqlite://relative.db", "", "sqlite:///x.db?journal=off"):
        with pytest.raises(InputError):
            open_ledger(url)
