"""Stock positions of one simulated policy: arrays for speed, the inventory ledger for truth.

Every movement of stock in a simulation (receipt, reservation, release, shipment, restock) goes
through :class:`Book`, which applies it to numpy arrays (what sourcing reads) and, when a ledger
URL is configured, to an :class:`~allocator.inventory.Ledger` with the simulated time as its
clock and an idempotency key per call. The ledger enforces its own rules (all-or-none
reservations, shipments only of reserved units, restocks only of shipped units), so any drift
between the arrays and the ledger surfaces as a typed error, and :meth:`Book.verify` compares
the two at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.inventory import Ledger, open_ledger
from allocator.simulate._history import History

__all__ = ["PRIOR_ORDER", "Book"]

IntArray = npt.NDArray[np.int64]

#: Order id under which the stock table's ``reserved`` units are held in the ledger.
PRIOR_ORDER = "~reserved-before-the-replay"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Line = tuple[int, int, int]  # (location index, SKU index, units)


class Book:
    """Positions of one policy's replay (see the module docstring).

    Parameters
    ----------
    history
        The replayed history (locations, SKUs, stock at the start).
    ledger
        Store URL of the ledger (``"memory://"``...), or ``None`` for arrays only.
    """

    def __init__(self, history: History, ledger: str | None) -> None:
        n_loc, n_sku = history.n_locations, history.n_skus
        self.location_ids = [str(v) for v in history.location_ids]
        self.sku_ids = [str(v) for v in history.sku_ids]
        self.on_hand = np.zeros((n_loc, n_sku), dtype=np.int64)
        self.reserved = np.zeros((n_loc, n_sku), dtype=np.int64)
        self.safety = np.zeros((n_loc, n_sku), dtype=np.int64)
        # Units that became free since the last sync point: sourcing does not see them yet.
        self.hidden = np.zeros((n_loc, n_sku), dtype=np.int64)
        self.known = np.zeros((n_loc, n_sku), dtype=bool)
        self.now = history.t_start
        self.ledger: Ledger | None = None
        self.calls = 0

        stock = history.network.stock
        loc_index = {v: i for i, v in enumerate(self.location_ids)}
        sku_index = {v: i for i, v in enumerate(self.sku_ids)}
        loc = np.asarray(
            stock["location_id"].replace_strict(loc_index, return_dtype=pl.Int64).to_numpy(),
            dtype=np.int64,
        )
        sku = np.asarray(
            stock["sku"].replace_strict(sku_index, return_dtype=pl.Int64).to_numpy(),
            dtype=np.int64,
        )
        on_hand = np.asarray(stock["on_hand"].to_numpy(), dtype=np.int64)
        reserved = np.minimum(np.asarray(stock["reserved"].to_numpy(), dtype=np.int64), on_hand)
        safety = np.asarray(stock["safety_stock"].to_numpy(), dtype=np.int64)
        self.on_hand[loc, sku] = on_hand
        self.reserved[loc, sku] = reserved
        self.safety[loc, sku] = safety
        self.known[loc, sku] = True
        self.known[history.inbound_location, history.inbound_sku] = True
        if ledger is not None:
            self.ledger = open_ledger(ledger, clock=self._clock)
            self._open_ledger(loc, sku, on_hand, reserved, safety, history)

    def _clock(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.now)

    def _open_ledger(
        self,
        loc: IntArray,
        sku: IntArray,
        on_hand: IntArray,
        reserved: IntArray,
        safety: IntArray,
        history: History,
    ) -> None:
        ledger = self.ledger
        assert ledger is not None
        names_l, names_s = self.location_ids, self.sku_ids
        for i in np.flatnonzero(on_hand > 0).tolist():
            ledger.receive(
                names_l[loc[i]], names_s[sku[i]], int(on_hand[i]), key=f"open/{i}", settle=False
            )
        prior = [
            (names_s[sku[i]], names_l[loc[i]], int(reserved[i]))
            for i in np.flatnonzero(reserved > 0).tolist()
        ]
        if prior:
            ledger.reserve(PRIOR_ORDER, prior, key="open/reserved")
        for i in np.flatnonzero((safety > 0) & (on_hand > 0)).tolist():
            ledger.set_safety_stock(
                names_l[loc[i]], names_s[sku[i]], int(safety[i]), key=f"open/safety/{i}"
            )
        for i in range(len(history.inbound_qty)):
            day = (_EPOCH + timedelta(microseconds=int(history.inbound_eta[i]))).date()
            ledger.expect(
                names_l[history.inbound_location[i]],
                names_s[history.inbound_sku[i]],
                int(history.inbound_qty[i]),
                day,
                key=f"expect/{i}",
            )

    # -- reads -------------------------------------------------------------------------------

    def atp(self, skus: IntArray | None = None) -> IntArray:
        """Units available to promise now, as sourcing sees them (hidden units left out);
        all SKUs, or the columns of ``skus``."""
        if skus is None:
            free = self.on_hand - self.reserved - self.safety - self.hidden
        else:
            free = (
                self.on_hand[:, skus]
                - self.reserved[:, skus]
                - self.safety[:, skus]
                - self.hidden[:, skus]
            )
        return np.asarray(np.maximum(0, free), dtype=np.int64)

    def stock_frame(self, skus: IntArray | None = None) -> pl.DataFrame:
        """The contract's stock table as sourcing sees it (hidden units count as reserved);
        every position, or those of ``skus``."""
        if skus is None:
            loc, sku = np.nonzero(self.known)
        else:
            loc, col = np.nonzero(self.known[:, skus])
            sku = np.asarray(skus)[col]
        return pl.DataFrame(
            {
                "location_id": pl.Series(self.location_ids, dtype=pl.String).gather(loc),
                "sku": pl.Series(self.sku_ids, dtype=pl.String).gather(sku),
                "on_hand": self.on_hand[loc, sku],
                "reserved": self.reserved[loc, sku] + self.hidden[loc, sku],
                "safety_stock": self.safety[loc, sku],
            },
            schema={
                "location_id": pl.String,
                "sku": pl.String,
                "on_hand": pl.Int64,
                "reserved": pl.Int64,
                "safety_stock": pl.Int64,
            },
        )

    def sync(self) -> None:
        """Make every unit that became free visible to sourcing."""
        self.hidden[:] = 0

    # -- movements ---------------------------------------------------------------------------

    def _lines(self, lines: list[Line]) -> list[tuple[str, str, int]]:
        return [(self.sku_ids[s], self.location_ids[loc], q) for loc, s, q in lines]

    def receive(self, loc: int, sku: int, qty: int, at: int, key: str) -> None:
        """Units arrive at a location (settling its expected receipts)."""
        self.now = at
        if self.ledger is not None:
            self.ledger.receive(self.location_ids[loc], self.sku_ids[sku], qty, key=key)
            self.calls += 1
        self.on_hand[loc, sku] += qty
        self.hidden[loc, sku] += qty
        self.known[loc, sku] = True

    def reserve(self, order_id: str, lines: list[Line], at: int, key: str) -> str | None:
        """Promise units to an order (all or none); returns the ledger's hold id."""
        self.now = at
        hold_id = None
        if self.ledger is not None:
            hold_id = self.ledger.reserve(order_id, self._lines(lines), key=key).hold_id
            self.calls += 1
        for loc, sku, qty in lines:
            self.reserved[loc, sku] += qty
        return hold_id

    def release(
        self, order_id: str, hold_id: str | None, lines: list[Line], at: int, key: str
    ) -> None:
        """Give a hold's units back (a cancellation, or a re-optimisation)."""
        self.now = at
        if self.ledger is not None:
            self.ledger.release(order_id, key=key, hold=hold_id)
            self.calls += 1
        for loc, sku, qty in lines:
            self.reserved[loc, sku] -= qty

    def unhide(self, lines: list[Line]) -> None:
        """Released units that sourcing may use at once (a re-optimisation's own holds)."""
        for loc, sku, qty in lines:
            self.hidden[loc, sku] = max(0, self.hidden[loc, sku] - qty)

    def hide(self, lines: list[Line]) -> None:
        """Freed units that sourcing sees only from the next sync point."""
        for loc, sku, qty in lines:
            self.hidden[loc, sku] += qty

    def ship(
        self, order_id: str, hold_id: str | None, lines: list[Line], at: int, key: str
    ) -> None:
        """Reserved units leave the building."""
        self.now = at
        if self.ledger is not None:
            self.ledger.ship(order_id, self._lines(lines), key=key, hold=hold_id)
            self.calls += 1
        for loc, sku, qty in lines:
            self.reserved[loc, sku] -= qty
            self.on_hand[loc, sku] -= qty

    def restock(self, order_id: str, lines: list[Line], at: int, key: str) -> None:
        """Returned units go back on the shelf."""
        self.now = at
        if self.ledger is not None:
            self.ledger.restock(order_id, self._lines(lines), key=key)
            self.calls += 1
        for loc, sku, qty in lines:
            self.on_hand[loc, sku] += qty
            self.hidden[loc, sku] += qty

    # -- end of the replay ---------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Problems found: the ledger's own check, then its totals against the arrays."""
        if self.ledger is None:
            bad = np.argwhere((self.on_hand < 0) | (self.reserved < 0))
            return [
                f"negative stock at ({self.location_ids[i]!r}, {self.sku_ids[j]!r})"
                for i, j in bad[:5]
            ]
        problems = list(self.ledger.verify())
        snap = self.ledger.snapshot()
        loc_index = {v: i for i, v in enumerate(self.location_ids)}
        sku_index = {v: i for i, v in enumerate(self.sku_ids)}
        on_hand = np.zeros_like(self.on_hand)
        reserved = np.zeros_like(self.reserved)
        for loc, sku, oh, res, _ in snap.iter_rows():
            on_hand[loc_index[loc], sku_index[sku]] = oh
            reserved[loc_index[loc], sku_index[sku]] = res
        for name, mine, theirs in (
            ("on_hand", self.on_hand, on_hand),
            ("reserved", self.reserved, reserved),
        ):
            for i, j in np.argwhere(mine != theirs)[:5]:
                problems.append(
                    f"({self.location_ids[i]!r}, {self.sku_ids[j]!r}): {name} is "
                    f"{int(mine[i, j])} in the replay but {int(theirs[i, j])} in the ledger"
                )
        return problems

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
