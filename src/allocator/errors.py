"""The exception hierarchy of :mod:`allocator`.

Every error the library raises on purpose derives from :class:`AllocatorError`, so a caller can
catch one class. Errors about bad input say *where* the problem is (file, row, column, or a model
field / rule key path) and *what* was expected, and they are raised before anything is written.
"""

from __future__ import annotations

__all__ = [
    "AllocatorError",
    "HoldResolvedError",
    "IdempotencyConflict",
    "InputError",
    "InsufficientStock",
    "InvalidTransition",
    "LedgerError",
    "RulesError",
    "SolverError",
    "UnknownPolicyError",
]


class AllocatorError(Exception):
    """Base class of every error raised by :mod:`allocator`."""


class InputError(AllocatorError, ValueError):
    """Bad input data: a table, a file, an argument or a model field.

    Parameters
    ----------
    message
        What is wrong and what was expected.
    source
        The file (or table / argument name) the bad value came from.
    row
        1-based data row (header excluded) where known.
    column
        Column or field name where known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.row = row
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source is not None:
            where.append(str(self.source))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class RulesError(InputError):
    """A rule set that cannot be loaded: bad syntax, unknown key, contradictory values.

    ``key`` is the dotted key path inside the rule file (for example ``constraints.max_locations``).
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.key = key
        super().__init__(message, source=source, column=key)

    def _render(self) -> str:
        where = [w for w in (self.source, f"key '{self.key}'" if self.key else None) if w]
        return f"{', '.join(where)}: {self.message}" if where else self.message


class UnknownPolicyError(InputError):
    """A policy or rule-set name that is not bundled and not a file."""


class SolverError(AllocatorError, RuntimeError):
    """The optimiser failed for a reason other than the input (a backend error)."""


class LedgerError(AllocatorError):
    """Base class of inventory-ledger errors."""


class InsufficientStock(LedgerError):  # noqa: N818 - contract name
    """A reservation (or shipment) asked for more units than are available."""


class IdempotencyConflict(LedgerError):  # noqa: N818 - contract name
    """An idempotency key was reused with different arguments."""


class HoldResolvedError(LedgerError):
    """A hold was released or shipped after it had already been resolved."""


class InvalidTransition(AllocatorError):  # noqa: N818 - reads better at the call site
    """An order-lifecycle event that is not allowed in the order's current state."""
