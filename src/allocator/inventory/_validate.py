"""Argument checks of the ledger's public calls.

Every check raises :class:`~allocator.errors.InputError` whose ``source`` is the argument's name
(and, inside ``lines``, ``row`` is the 1-based line and ``column`` the field), before anything is
read or written. They return the value in the form the ledger stores.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from allocator.errors import InputError
from allocator.inventory._types import Hold, Pair

__all__ = [
    "INT64_MAX",
    "MAX_ID_LENGTH",
    "check_choice",
    "check_date",
    "check_hold_ref",
    "check_id",
    "check_lines",
    "check_now",
    "check_pairs",
    "check_qty",
    "check_text",
    "check_ttl",
    "describe",
]

INT64_MAX = 2**63 - 1
"""Largest quantity (and total) the stores can hold."""

MAX_ID_LENGTH = 200
"""Longest identifier (location, SKU, order, hold, idempotency key)."""

MAX_LINES = 10_000
"""Most lines one call may name."""

_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""The characters an identifier must not contain: Unicode's categories Cc (control characters,
a fixed set) and Cs (lone surrogates), which are exactly these ranges."""

_VALID_IDS: set[str] = set()
"""Strings already found to be valid identifiers (of at most ``MAX_ID_LENGTH`` characters).

Reads and reservations name the same locations and SKUs over and over; remembering them makes
the check of a known id one set lookup. Only exact ``str`` objects are remembered."""
_VALID_IDS_MAX = 100_000


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_id(
    value: object,
    source: str,
    *,
    row: int | None = None,
    column: str | None = None,
    max_length: int = MAX_ID_LENGTH,
) -> str:
    """Check an identifier: a non-empty, NFC-normalised str without control characters.

    Parameters
    ----------
    value
        The argument as given.
    source, row, column
        Where it came from, for the error.
    max_length
        Longest allowed length in characters.

    Returns
    -------
    str
        The identifier, unchanged.

    Raises
    ------
    InputError
        When the value is not a valid identifier.
    """

    if value.__class__ is str and value in _VALID_IDS and len(value) <= max_length:
        return value

    def fail(why: str) -> InputError:
        return InputError(why, source=source, row=row, column=column)

    if not isinstance(value, str):
        raise fail(f"expected a string identifier, got {_describe(value)}")
    if not value:
        raise fail("must not be empty")
    if len(value) > max_length:
        raise fail(f"must be at most {max_length} characters, got {len(value)}")
    bad = _BAD_CHAR.search(value)
    if bad is not None:
        raise fail(f"contains a control character {bad.group()!r} at position {bad.start()}")
    if not unicodedata.is_normalized("NFC", value):
        raise fail("must be NFC-normalised unicode (normalise it with unicodedata.normalize)")
    if value.__class__ is str and len(value) <= MAX_ID_LENGTH:
        if len(_VALID_IDS) >= _VALID_IDS_MAX:
            _VALID_IDS.clear()
        _VALID_IDS.add(value)
    return value


def check_pairs(value: object, source: str = "pairs") -> list[Pair]:
    """Check a list of positions ``[(location_id, sku), ...]``.

    Returns
    -------
    list
        The positions as ``(location_id, sku)`` tuples, in the order given.

    Raises
    ------
    InputError
        When ``value`` is not a sequence of pairs, or an identifier is bad (``row`` is the
        1-based position, ``column`` the field).
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InputError("expected a list of (location_id, sku) pairs", source=source)
    valid = _VALID_IDS
    # The common case, checked with loops that run in C: tuples of two exact strs, all of them
    # identifiers seen before (so hashing them cannot fail or lie).
    if set(map(type, value)) == {tuple} and set(map(len, value)) == {2}:
        locations, skus = zip(*value, strict=True)
        if (
            {*map(type, locations), *map(type, skus)} == {str}
            and valid.issuperset(locations)
            and valid.issuperset(skus)
        ):
            return list(value)
    out: list[Pair] = []
    for number, pair in enumerate(value, start=1):
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise InputError("expected a (location_id, sku) pair", source=source, row=number)
        location = check_id(pair[0], source, row=number, column="location_id")
        out.append((location, check_id(pair[1], source, row=number, column="sku")))
    return out


def check_text(value: object, source: str, *, optional: bool = False) -> str | None:
    """Check a free-text reason: like an identifier but up to 1,000 characters.

    ``None`` is accepted when ``optional``.
    """
    if value is None and optional:
        return None
    return check_id(value, source, max_length=1_000)


def check_qty(
    value: object,
    source: str,
    *,
    row: int | None = None,
    column: str | None = None,
    minimum: int = 1,
    allow_negative: bool = False,
) -> int:
    """Check a quantity: a whole number (not a bool, not a float) within 64 bits.

    Parameters
    ----------
    value
        The argument as given. Python and numpy integers are accepted.
    source, row, column
        Where it came from, for the error.
    minimum
        Smallest allowed value (1 for units; 0 for a safety-stock level).
    allow_negative
        Accept any non-zero value down to ``-INT64_MAX`` (for count adjustments); ``minimum`` is
        then ignored.

    Returns
    -------
    int
        The quantity as a Python int.

    Raises
    ------
    InputError
        When the value is not an allowed quantity.
    """

    def fail(why: str) -> InputError:
        return InputError(why, source=source, row=row, column=column)

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and math.isnan(value):
            raise fail("must be a whole number of units, got NaN")
        raise fail(f"must be a whole number of units, got {_describe(value)}")
    qty = int(value)
    if allow_negative:
        if qty == 0:
            raise fail("must not be zero")
        if abs(qty) > INT64_MAX:
            raise fail(f"must be within +/-{INT64_MAX} (64 bits), got {qty}")
        return qty
    if qty < minimum:
        raise fail(f"must be at least {minimum}, got {qty}")
    if qty > INT64_MAX:
        raise fail(f"must be at most {INT64_MAX} (64 bits), got {qty}")
    return qty


def check_lines(value: object, source: str = "lines") -> dict[Pair, int]:
    """Check order lines ``[(sku, location_id, qty), ...]`` and sum them per position.

    Lines naming the same SKU at the same location are added together.

    Returns
    -------
    dict
        ``{(location_id, sku): qty}`` in sorted order of positions.

    Raises
    ------
    InputError
        When ``lines`` is empty, is not a sequence of 3-tuples, or a field is bad (``row`` is the
        1-based line, ``column`` the field).
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InputError(
            f"expected a list of (sku, location_id, qty) tuples, got {_describe(value)}",
            source=source,
        )
    if not value:
        raise InputError("must name at least one line", source=source)
    if len(value) > MAX_LINES:
        raise InputError(f"at most {MAX_LINES} lines, got {len(value)}", source=source)
    merged: dict[Pair, int] = {}
    for index, line in enumerate(value, start=1):
        if not (line.__class__ is tuple and len(line) == 3) and (
            isinstance(line, str | bytes) or not isinstance(line, Sequence) or len(line) != 3
        ):
            raise InputError(
                f"expected a (sku, location_id, qty) tuple, got {_describe(line)}",
                source=source,
                row=index,
            )
        sku = check_id(line[0], source, row=index, column="sku")
        location = check_id(line[1], source, row=index, column="location_id")
        qty = check_qty(line[2], source, row=index, column="qty")
        total = merged.get((location, sku), 0) + qty
        if total > INT64_MAX:
            raise InputError(
                f"lines for ({sku!r}, {location!r}) add up past 64 bits",
                source=source,
                row=index,
                column="qty",
            )
        merged[(location, sku)] = total
    return dict(sorted(merged.items()))


def check_ttl(value: object, now: datetime, source: str = "ttl") -> datetime | None:
    """Check a time-to-live (``None``, a positive ``timedelta`` or positive seconds).

    Returns
    -------
    datetime or None
        When a hold made at ``now`` lapses.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        ttl = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"expected None, a timedelta or seconds, got {_describe(value)}", source=source
        )
    else:
        seconds = float(value)
        if not math.isfinite(seconds):
            raise InputError(f"must be finite, got {seconds}", source=source)
        try:
            ttl = timedelta(seconds=seconds)
        except OverflowError:
            raise InputError(f"is too long: {seconds} s", source=source) from None
    if ttl <= timedelta(0):
        raise InputError(f"must be positive, got {ttl}", source=source)
    try:
        return now + ttl
    except OverflowError:
        raise InputError(f"is too long: {ttl}", source=source) from None


def check_date(value: object, source: str) -> date:
    """Check a calendar date (a ``datetime`` is reduced to its date)."""
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, date):
        raise InputError(f"expected a datetime.date, got {_describe(value)}", source=source)
    return value


def check_now(value: object, source: str) -> datetime:
    """Check a timezone-aware ``datetime`` and return it in UTC."""
    if not isinstance(value, datetime):
        raise InputError(f"expected a datetime, got {_describe(value)}", source=source)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError("must be timezone-aware (for example datetime.now(UTC))", source=source)
    return value.astimezone(UTC)


def check_hold_ref(value: object, source: str = "hold") -> str | None:
    """Check an optional hold reference: a :class:`Hold` or its id."""
    if value is None:
        return None
    if isinstance(value, Hold):
        return value.hold_id
    return check_id(value, source)


def check_choice(value: object, source: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(
            f"expected one of {', '.join(choices)}, got {_describe(value)}", source=source
        )
    return value


def describe(value: Any) -> str:
    """Short printable description of a value for error messages."""
    return _describe(value)
