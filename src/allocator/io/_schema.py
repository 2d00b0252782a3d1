"""Column specifications and a vectorised validator for the contract's tables.

Every table of ``contract.md`` is described by a tuple of :class:`Column`. :func:`validate_table`
casts a raw polars frame (CSV read as strings, or typed Parquet) to the declared types and raises
an :class:`~allocator.errors.InputError` naming the source, the 1-based data row and the column of
the first bad value. The work is columnar: no Python loop per row.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from allocator.errors import InputError

__all__ = ["Column", "UnknownColumnWarning", "validate_table"]

Kind = Literal["str", "int", "float", "bool", "datetime"]

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_DTYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us"),
}


class UnknownColumnWarning(UserWarning):
    """A table has a column the contract does not define; it is ignored."""


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Parameters
    ----------
    name
        Column name (lower case).
    kind
        Logical type.
    required
        Whether the column must be present (and non-null).
    default
        Value used when an optional column is absent or null.
    min_value
        Inclusive lower bound for numbers.
    strictly_positive
        Numbers must be > 0.
    choices
        Allowed values for strings.
    """

    name: str
    kind: Kind
    required: bool = False
    default: object = None
    min_value: float | None = None
    strictly_positive: bool = False
    choices: tuple[str, ...] | None = None
    finite: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def dtype(self) -> pl.DataType:
        return _DTYPES[self.kind]


def _first_row(mask: pl.Series) -> int:
    """1-based data row of the first True in ``mask``."""
    return int(mask.arg_true()[0]) + 1


def _cast(series: pl.Series, col: Column, source: str) -> pl.Series:
    """Cast one column to its declared type, failing on the first value that does not fit."""
    name = col.name
    present = series.is_not_null()
    if col.kind == "str":
        if series.dtype == pl.String:
            out = series.str.strip_chars()
        elif series.dtype.is_numeric() or series.dtype == pl.Boolean:
            out = series.cast(pl.String)
        else:
            raise InputError(f"expected text, found {series.dtype}", source=source, column=name)
        empty = present & (out.str.len_chars() == 0)
        if empty.any():
            raise InputError("empty text value", source=source, row=_first_row(empty), column=name)
        return out
    if col.kind == "bool":
        if series.dtype == pl.Boolean:
            return series
        text = series.cast(pl.String).str.strip_chars().str.to_lowercase()
        out = (
            pl.select(
                pl.when(text.is_in(_TRUE))
                .then(True)
                .when(text.is_in(_FALSE))
                .then(False)
                .otherwise(None)
                .alias(name)
            )
            .to_series()
            .cast(pl.Boolean)
        )
        bad = present & out.is_null()
        if bad.any():
            value = series.cast(pl.String)[_first_row(bad) - 1]
            raise InputError(
                f"expected true or false, found {value!r}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
        return out
    if col.kind == "datetime":
        if isinstance(series.dtype, pl.Datetime):
            return series.cast(pl.Datetime("us")).dt.replace_time_zone(None)
        if series.dtype == pl.Date:
            return series.cast(pl.Datetime("us"))
        text = series.cast(pl.String).str.strip_chars()
        out = text.str.to_datetime(time_unit="us", strict=False)
        if out.dtype != pl.Datetime("us"):
            out = out.cast(pl.Datetime("us"))
        bad = present & out.is_null()
        if bad.any():
            raise InputError(
                f"expected an ISO 8601 date-time, found {text[_first_row(bad) - 1]!r}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
        return out
    # Numbers: parse through Float64 first so "2.5" in an integer column is reported as
    # fractional rather than as unparseable, then check range and integrality.
    if series.dtype == pl.Boolean:
        raise InputError(
            f"expected a number, found booleans ({series.dtype})", source=source, column=name
        )
    if series.dtype == pl.String:
        text = series.str.strip_chars()
        as_float = text.cast(pl.Float64, strict=False)
        bad = present & as_float.is_null()
        if bad.any():
            raise InputError(
                f"expected a number, found {text[_first_row(bad) - 1]!r}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
    elif series.dtype.is_numeric():
        as_float = series.cast(pl.Float64)
    else:
        raise InputError(f"expected a number, found {series.dtype}", source=source, column=name)
    if col.finite:
        bad = present & ~as_float.is_finite()
        if bad.any():
            raise InputError(
                f"expected a finite number, found {as_float[_first_row(bad) - 1]}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
    if col.min_value is not None:
        bad = present & (as_float < col.min_value)
        if bad.any():
            raise InputError(
                f"must be >= {col.min_value:g}, found {as_float[_first_row(bad) - 1]:g}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
    if col.strictly_positive:
        bad = present & (as_float <= 0)
        if bad.any():
            raise InputError(
                f"must be > 0, found {as_float[_first_row(bad) - 1]:g}",
                source=source,
                row=_first_row(bad),
                column=name,
            )
    if col.kind == "float":
        return as_float
    bad = present & (as_float != as_float.floor())
    if bad.any():
        raise InputError(
            f"must be a whole number, found {as_float[_first_row(bad) - 1]:g}",
            source=source,
            row=_first_row(bad),
            column=name,
        )
    limit = float(2**62)
    bad = present & (as_float.abs() > limit)
    if bad.any():
        raise InputError(
            f"whole number out of range (|value| > 2**62), found {as_float[_first_row(bad) - 1]:g}",
            source=source,
            row=_first_row(bad),
            column=name,
        )
    if series.dtype == pl.String:
        exact = series.str.strip_chars().cast(pl.Int64, strict=False)
        return exact.fill_null(as_float.cast(pl.Int64, strict=False))
    return series.cast(pl.Int64, strict=False)


def validate_table(
    frame: pl.DataFrame,
    columns: Sequence[Column],
    *,
    source: str,
    key: Sequence[str] = (),
) -> pl.DataFrame:
    """Validate and cast ``frame`` to ``columns``.

    Parameters
    ----------
    frame
        Raw table.
    columns
        The table's specification.
    source
        Name used in error messages (a file path or a table name).
    key
        Columns whose combination must be unique.

    Returns
    -------
    polars.DataFrame
        Exactly the declared columns, in order, with declared types and defaults filled in.

    Raises
    ------
    InputError
        On the first problem found, naming source, row and column.
    """
    if frame.height == 0:
        raise InputError("the table is empty (no data rows)", source=source)
    names = {c.name for c in columns}
    lower = {c: c.strip().lower() for c in frame.columns}
    if len(set(lower.values())) != len(lower):
        raise InputError("duplicate column names (case-insensitive)", source=source)
    frame = frame.rename(lower)
    unknown = [c for c in frame.columns if c not in names]
    if unknown:
        warnings.warn(
            f"{source}: ignoring unknown column(s) {', '.join(sorted(unknown))}",
            UnknownColumnWarning,
            stacklevel=3,
        )
    out: list[pl.Series] = []
    for col in columns:
        if col.name not in frame.columns:
            if col.required:
                raise InputError("required column is missing", source=source, column=col.name)
            out.append(pl.Series(col.name, [col.default] * frame.height, dtype=col.dtype))
            continue
        raw = frame.get_column(col.name)
        if raw.dtype == pl.Null:
            raw = raw.cast(pl.String)
        cast = _cast(raw, col, source).alias(col.name)
        missing = cast.is_null()
        if col.required and missing.any():
            raise InputError(
                "required value is missing", source=source, row=_first_row(missing), column=col.name
            )
        if col.choices is not None:
            bad = cast.is_not_null() & ~cast.is_in(list(col.choices))
            if bad.any():
                raise InputError(
                    f"expected one of {', '.join(col.choices)}, found {cast[_first_row(bad) - 1]!r}",
                    source=source,
                    row=_first_row(bad),
                    column=col.name,
                )
        if col.default is not None and missing.any():
            cast = cast.fill_null(col.default)
        out.append(cast)
    result = pl.DataFrame(out)
    if key:
        dup = result.select(~pl.struct(list(key)).is_first_distinct()).to_series()
        if dup.any():
            row = _first_row(dup)
            values = ", ".join(f"{k}={result[k][row - 1]!r}" for k in key)
            raise InputError(
                f"duplicate key ({values}); each ({', '.join(key)}) must appear once",
                source=source,
                row=row,
                column=key[-1],
            )
    return result


def check_references(
    values: pl.Series, known: pl.Series, *, source: str, column: str, what: str
) -> None:
    """Raise if ``values`` holds an id that is not in ``known``."""
    bad = values.is_not_null() & ~values.is_in(known.implode())
    if bad.any():
        row = _first_row(bad)
        raise InputError(
            f"unknown {what} {values[row - 1]!r}", source=source, row=row, column=column
        )


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
