"""Transactions over a SQL database: what the SQLite and PostgreSQL stores have in common.

The queries are written once, with ``?`` placeholders; a dialect subclass converts them and
supplies the differences: how times are stored, and how rows are locked (PostgreSQL takes
``SELECT ... FOR UPDATE`` locks in a fixed order; SQLite needs none, as ``BEGIN IMMEDIATE``
already gives one writer the whole file).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from allocator.inventory._store import chunks
from allocator.inventory._types import (
    Entry,
    EntryKind,
    Hold,
    HoldLine,
    HoldStatus,
    Inbound,
    KeyRecord,
    Pair,
    Totals,
)

__all__ = ["KINDS_SQL", "STATUSES_SQL", "SQLTx"]

KINDS_SQL = ", ".join(f"'{kind.value}'" for kind in EntryKind)
"""The entry kinds, as a SQL list for CHECK constraints."""
STATUSES_SQL = ", ".join(f"'{status.value}'" for status in HoldStatus)
"""The hold statuses, as a SQL list for CHECK constraints."""

_CHUNK = 400  # rows per IN (...) list: well below both databases' parameter limits
_FEW_PAIRS = 8  # up to this many positions, lapsed() filters them in SQL

_ENTRY_COLUMNS = (
    "seq, at, kind, location_id, sku, qty, d_on_hand, d_reserved, d_inbound, d_safety,"
    " reason, order_id, hold_id, key"
)
_HOLD_COLUMNS = "hold_id, order_id, status, created, expires, key"
_INBOUND_COLUMNS = "inbound_id, location_id, sku, qty, eta, received, key"
_TOTALS_COLUMNS = "location_id, sku, on_hand, reserved, inbound, safety_stock"
_TOTALS_SELECT = "t.location_id, t.sku, t.on_hand, t.reserved, t.inbound, t.safety_stock"
_INBOUND_SELECT = "t.inbound_id, t.location_id, t.sku, t.qty, t.eta, t.received, t.key, t.seq"

Row = tuple[Any, ...]


_NO_PAIR = ("", "")
"""Pads lists of positions: identifiers are never empty, so it matches no row."""


def _padded(pairs: Sequence[Pair]) -> Sequence[Pair]:
    """``pairs`` padded to a power of two (at most ``_CHUNK``) with a position that never exists.

    Queries over lists of positions are then one of a few texts, which the driver's statement
    cache keeps prepared: preparing a query over 150 positions costs SQLite more (0.2 ms) than
    running it.
    """
    size = 1 << (len(pairs) - 1).bit_length()
    if size > _CHUNK:
        size = _CHUNK
    if size <= len(pairs):
        return pairs
    return [*pairs, *([_NO_PAIR] * (size - len(pairs)))]


def _pairs_filter(pairs: Sequence[Pair], prefix: str = "") -> tuple[str, list[str]]:
    """SQL condition matching the positions in ``pairs`` and its parameters.

    Fine as a filter on rows found otherwise (PostgreSQL also plans it as a join); to *find*
    rows of a table keyed by position on SQLite, use :meth:`SQLTx._select_pairs`, which joins.
    """
    if len(pairs) == 1:
        return f"({prefix}location_id = ? AND {prefix}sku = ?)", list(pairs[0])
    pairs = _padded(pairs)
    values = ", ".join(["(?, ?)"] * len(pairs))
    return f"({prefix}location_id, {prefix}sku) IN (VALUES {values})", [
        part for pair in pairs for part in pair
    ]


class SQLTx:
    """One transaction on a DB-API cursor; implements both ``ReadTx`` and ``WriteTx``."""

    for_update = ""
    """Suffix that locks the selected rows (``" FOR UPDATE"`` on PostgreSQL)."""

    join_pairs = False
    """Find chosen positions by joining a ``VALUES`` list to the table, not with ``IN``.

    SQLite plans ``(location_id, sku) IN (VALUES ...)`` as a scan of the whole table (1.5 ms for
    150 positions of 15,000), but ``FROM (VALUES ...) v CROSS JOIN t ON ...`` as one primary-key
    search per position (0.2 ms). PostgreSQL turns the ``IN`` list into a join by itself.
    """

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    # -- dialect hooks ---------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """Convert a query written with ``?`` placeholders to the driver's style."""
        return text

    def to_time(self, value: datetime | None) -> Any:
        return value

    def from_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value

    def to_date(self, value: date) -> Any:
        return value

    def from_date(self, value: Any) -> date:
        assert isinstance(value, date)
        return value

    # -- helpers ---------------------------------------------------------------------------

    def run(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(self.sql(text), params)

    def rows(self, text: str, params: Sequence[Any] = ()) -> list[Row]:
        self.run(text, params)
        return list(self.cursor.fetchall())

    def many(self, text: str, params: Sequence[Sequence[Any]]) -> None:
        if params:
            self.cursor.executemany(self.sql(text), params)

    def _select_pairs(
        self,
        columns: str,
        table: str,
        pairs: Sequence[Pair] | None,
        where: str = "TRUE",
        params: Sequence[Any] = (),
        tail: str = "",
    ) -> list[Row]:
        """``SELECT columns FROM table WHERE where tail`` for all positions or chosen ones.

        ``table`` is keyed (or indexed) by ``(location_id, sku)``; the chosen positions are
        found through that key, in chunks. ``columns`` and ``where`` name the table's columns
        unqualified (or as ``t.column``).
        """
        if pairs is None:
            return self.rows(f"SELECT {columns} FROM {table} AS t WHERE {where} {tail}", params)
        out: list[Row] = []
        for part in chunks(list(dict.fromkeys(pairs)), _CHUNK):
            if self.join_pairs and len(part) > 1:
                part = _padded(part)
                values = ", ".join(["(?, ?)"] * len(part))
                out.extend(
                    self.rows(
                        f"SELECT {columns} FROM (VALUES {values}) AS v CROSS JOIN {table} AS t"
                        f" ON t.location_id = v.column1 AND t.sku = v.column2"
                        f" WHERE {where} {tail}",
                        [value for pair in part for value in pair] + list(params),
                    )
                )
            else:
                condition, extra = _pairs_filter(part, "t.")
                out.extend(
                    self.rows(
                        f"SELECT {columns} FROM {table} AS t WHERE {where} AND {condition} {tail}",
                        [*params, *extra],
                    )
                )
        return out

    def _hold_rows(self, rows: list[Row]) -> list[Hold]:
        """Turn hold rows (in order) into holds, loading their lines."""
        lines: dict[str, list[HoldLine]] = {}
        for part in chunks([str(row[0]) for row in rows], _CHUNK):
            marks = ", ".join(["?"] * len(part))
            self._add_lines(lines, f" WHERE hold_id IN ({marks})", part)
        return self._holds(rows, lines)

    def _add_lines(
        self, lines: dict[str, list[HoldLine]], where: str, params: Sequence[Any] = ()
    ) -> None:
        for hold_id, sku, location, qty, shipped, released in self.rows(
            "SELECT hold_id, sku, location_id, qty, shipped, released FROM hold_lines"
            f"{where} ORDER BY hold_id, line",
            params,
        ):
            lines.setdefault(hold_id, []).append(
                HoldLine(sku, location, int(qty), int(shipped), int(released))
            )

    def _holds(self, rows: list[Row], lines: dict[str, list[HoldLine]]) -> list[Hold]:
        return [
            Hold(
                hold_id=hold_id,
                order_id=order_id,
                lines=tuple(lines.get(hold_id, ())),
                status=HoldStatus(status),
                created=self.from_time(created),
                expires=None if expires is None else self.from_time(expires),
                key=key,
            )
            for hold_id, order_id, status, created, expires, key in rows
        ]

    def _entry(self, row: Row) -> Entry:
        seq, at, kind, location, sku, qty, d_on, d_res, d_in, d_safe, reason, order, hold, key = row
        return Entry(
            seq=int(seq),
            at=self.from_time(at),
            kind=EntryKind(kind),
            location_id=location,
            sku=sku,
            qty=int(qty),
            d_on_hand=int(d_on),
            d_reserved=int(d_res),
            d_inbound=int(d_in),
            d_safety=int(d_safe),
            reason=reason,
            order_id=order,
            hold_id=hold,
            key=key,
        )

    def _inbound(self, row: Row) -> Inbound:
        inbound_id, location, sku, qty, eta, received, key = row
        return Inbound(
            inbound_id=inbound_id,
            location_id=location,
            sku=sku,
            qty=int(qty),
            eta=self.from_date(eta),
            received=int(received),
            key=key,
        )

    # -- ReadTx ----------------------------------------------------------------------------

    def totals(self, pairs: Sequence[Pair] | None = None) -> dict[Pair, Totals]:
        rows = self._select_pairs(_TOTALS_SELECT, "totals", pairs)
        # Integer columns come back as int from both drivers.
        return {(r[0], r[1]): Totals(r[2], r[3], r[4], r[5]) for r in rows}

    def lapsed(self, now: datetime, pairs: Sequence[Pair] | None = None) -> dict[Pair, int]:
        # Start from the (small) set of lapsed open holds, found through a partial index.
        select = (
            "SELECT location_id, sku, SUM(qty - shipped - released) FROM hold_lines"
            " WHERE hold_id IN (SELECT hold_id FROM holds"
            " WHERE status = 'open' AND expires IS NOT NULL AND expires <= ?) AND"
        )
        params: list[Any] = [self.to_time(now)]
        if pairs is None or len(pairs) > _FEW_PAIRS:
            # Lapsed holds are few (every write expires them all), so for many positions it is
            # cheaper to read them all and pick in Python than to send the list of positions.
            rows = self.rows(f"{select} TRUE GROUP BY location_id, sku", params)
            if pairs is not None:
                wanted = set(pairs)
                rows = [row for row in rows if (row[0], row[1]) in wanted]
        else:
            rows = []
            for part in chunks(sorted(set(pairs)), _CHUNK):
                condition, extra = _pairs_filter(part)
                rows += self.rows(f"{select} {condition} GROUP BY location_id, sku", params + extra)
        return {(location, sku): int(units) for location, sku, units in rows if units}

    def inbound(
        self, pairs: Sequence[Pair] | None = None, due_by: date | None = None
    ) -> list[Inbound]:
        due = "" if due_by is None else " AND t.eta <= ?"
        params: list[Any] = [] if due_by is None else [self.to_date(due_by)]
        rows = self._select_pairs(
            _INBOUND_SELECT,
            "inbound",
            pairs,
            f"t.received < t.qty{due}",
            params,
            "ORDER BY t.eta, t.seq" if pairs is None else "",
        )
        if pairs is not None:
            rows.sort(key=lambda row: (row[4], row[-1]))
        return [self._inbound(row[:7]) for row in rows]

    def holds(self, order_id: str) -> list[Hold]:
        rows = self.rows(
            f"SELECT {_HOLD_COLUMNS} FROM holds WHERE order_id = ? ORDER BY seq", [order_id]
        )
        return self._hold_rows(rows)

    def entries(self, order_id: str | None = None, key: str | None = None) -> list[Entry]:
        conditions, params = ["TRUE"], []
        if order_id is not None:
            conditions.append("order_id = ?")
            params.append(order_id)
        if key is not None:
            conditions.append("key = ?")
            params.append(key)
        rows = self.rows(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {' AND '.join(conditions)} ORDER BY seq",
            params,
        )
        return [self._entry(row) for row in rows]

    def entry_count(self) -> int:
        return int(self.rows("SELECT COUNT(*) FROM entries")[0][0])

    def entry_sums(self) -> dict[Pair, Totals]:
        rows = self.rows(
            "SELECT location_id, sku, SUM(d_on_hand), SUM(d_reserved), SUM(d_inbound),"
            " SUM(d_safety) FROM entries GROUP BY location_id, sku"
        )
        return {(r[0], r[1]): Totals(int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows}

    def open_hold_units(self) -> dict[Pair, int]:
        rows = self.rows(
            "SELECT l.location_id, l.sku, SUM(l.qty - l.shipped - l.released)"
            " FROM holds h JOIN hold_lines l ON l.hold_id = h.hold_id"
            " WHERE h.status = 'open' GROUP BY l.location_id, l.sku"
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def order_flow(self, order_id: str) -> dict[str, tuple[int, int]]:
        rows = self.rows(
            "SELECT sku, SUM(CASE WHEN kind = 'ship' THEN qty ELSE 0 END),"
            " SUM(CASE WHEN kind IN ('restock', 'write_off') THEN qty ELSE 0 END)"
            " FROM entries WHERE order_id = ? GROUP BY sku",
            [order_id],
        )
        return {sku: (int(shipped), int(returned)) for sku, shipped, returned in rows}

    def all_holds(self) -> Iterator[Hold]:
        lines: dict[str, list[HoldLine]] = {}
        self._add_lines(lines, "")
        return iter(
            self._holds(self.rows(f"SELECT {_HOLD_COLUMNS} FROM holds ORDER BY seq"), lines)
        )

    # -- WriteTx: reads that lock ----------------------------------------------------------

    def find_key(self, key: str) -> KeyRecord | None:
        rows = self.rows(
            "SELECT key, op, fingerprint, result, at FROM idempotency WHERE key = ?", [key]
        )
        if not rows:
            return None
        key, op, fingerprint, result, at = rows[0]
        return KeyRecord(key, op, fingerprint, result, self.from_time(at))

    def known(self, locations: Collection[str], skus: Collection[str]) -> tuple[set[str], set[str]]:
        found: tuple[set[str], set[str]] = (set(), set())
        ids = [(0, loc) for loc in sorted(set(locations))] + [(1, sku) for sku in sorted(set(skus))]
        for part in chunks(ids, _CHUNK):
            locs = [value for kind, value in part if kind == 0] or [""]
            names = [value for kind, value in part if kind == 1] or [""]
            rows = self.rows(
                "SELECT 0, location_id FROM locations"
                f" WHERE location_id IN ({', '.join(['?'] * len(locs))})"
                " UNION ALL SELECT 1, sku FROM skus"
                f" WHERE sku IN ({', '.join(['?'] * len(names))})",
                [*locs, *names],
            )
            for kind, value in rows:
                found[int(kind)].add(value)
        return found

    def lock_holds(self, order_id: str | None, lapsed_at: datetime) -> list[Hold]:
        # One statement, so that PostgreSQL locks the rows in one fixed (creation) order.
        rows = self.rows(
            f"SELECT {_HOLD_COLUMNS} FROM holds WHERE hold_id IN ("
            " SELECT hold_id FROM holds WHERE order_id = ?"
            " UNION ALL SELECT hold_id FROM holds"
            " WHERE status = 'open' AND expires IS NOT NULL AND expires <= ?"
            f") ORDER BY seq{self.for_update}",
            [order_id if order_id is not None else "", self.to_time(lapsed_at)],
        )
        return self._hold_rows(rows)

    def lock_totals(self, pairs: Sequence[Pair]) -> dict[Pair, Totals]:
        found = self.totals(pairs) if pairs else {}
        return {pair: found.get(pair, Totals()) for pair in pairs}

    def lock_inbound(self, pair: Pair) -> list[Inbound]:
        rows = self.rows(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound"
            " WHERE location_id = ? AND sku = ? AND received < qty"
            f" ORDER BY eta, seq{self.for_update}",
            list(pair),
        )
        return [self._inbound(row) for row in rows]

    # -- WriteTx: writes -------------------------------------------------------------------

    def add_ids(self, locations: Collection[str], skus: Collection[str]) -> None:
        self.many(
            "INSERT INTO locations (location_id) VALUES (?) ON CONFLICT DO NOTHING",
            [[loc] for loc in locations],
        )
        self.many(
            "INSERT INTO skus (sku) VALUES (?) ON CONFLICT DO NOTHING", [[sku] for sku in skus]
        )

    def put_totals(self, totals: Mapping[Pair, Totals]) -> None:
        self.many(
            f"INSERT INTO totals ({_TOTALS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (location_id, sku) DO UPDATE SET on_hand = excluded.on_hand,"
            " reserved = excluded.reserved, inbound = excluded.inbound,"
            " safety_stock = excluded.safety_stock",
            [[pair[0], pair[1], *totals[pair].as_tuple()] for pair in sorted(totals)],
        )

    def put_holds(self, holds: Sequence[Hold], *, new: bool) -> None:
        if new:
            self.many(
                f"INSERT INTO holds ({_HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    [
                        h.hold_id,
                        h.order_id,
                        h.status.value,
                        self.to_time(h.created),
                        self.to_time(h.expires),
                        h.key,
                    ]
                    for h in holds
                ],
            )
            self.many(
                "INSERT INTO hold_lines"
                " (hold_id, line, sku, location_id, qty, shipped, released)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [h.hold_id, n, li.sku, li.location_id, li.qty, li.shipped, li.released]
                    for h in holds
                    for n, li in enumerate(h.lines)
                ],
            )
            return
        self.many(
            "UPDATE holds SET status = ? WHERE hold_id = ?",
            [[h.status.value, h.hold_id] for h in holds],
        )
        self.many(
            "UPDATE hold_lines SET shipped = ?, released = ? WHERE hold_id = ? AND line = ?",
            [
                [li.shipped, li.released, h.hold_id, n]
                for h in holds
                for n, li in enumerate(h.lines)
            ],
        )

    def put_inbound(self, rows: Sequence[Inbound], *, new: bool) -> None:
        if new:
            self.many(
                f"INSERT INTO inbound ({_INBOUND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self._inbound_params(r) for r in rows],
            )
        else:
            self.many(
                "UPDATE inbound SET received = ? WHERE inbound_id = ?",
                [[r.received, r.inbound_id] for r in rows],
            )

    def _inbound_params(self, row: Inbound) -> list[Any]:
        eta = self.to_date(row.eta)
        return [row.inbound_id, row.location_id, row.sku, row.qty, eta, row.received, row.key]

    def entry_params(self, entry: Entry) -> list[Any]:
        return [
            self.to_time(entry.at),
            entry.kind.value,
            entry.location_id,
            entry.sku,
            entry.qty,
            entry.d_on_hand,
            entry.d_reserved,
            entry.d_inbound,
            entry.d_safety,
            entry.reason,
            entry.order_id,
            entry.hold_id,
            entry.key,
        ]

    INSERT_ENTRY = (
        "INSERT INTO entries (at, kind, location_id, sku, qty, d_on_hand, d_reserved,"
        " d_inbound, d_safety, reason, order_id, hold_id, key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq"
    )

    def append(self, entries: Sequence[Entry]) -> list[Entry]:
        out = []
        for entry in entries:
            seq = self.rows(self.INSERT_ENTRY, self.entry_params(entry))[0][0]
            out.append(replace(entry, seq=int(seq)))
        return out

    def save_key(self, record: KeyRecord) -> None:
        self.run(
            "INSERT INTO idempotency (key, op, fingerprint, result, at) VALUES (?, ?, ?, ?, ?)",
            [record.key, record.op, record.fingerprint, record.result, self.to_time(record.at)],
        )
