"""One price list for every policy: shipments, backorders and rejections under reference rules.

Policies of a comparison may bring their own rule sets (a peer policy ranks by priority, not by
cost). Their outcomes are priced here with one reference rule set, with the cost model of
:func:`allocator.compile_problem`: great-circle distance, zone, rate card (or the network's
explicit ``costs`` table), cross-border surcharge, lateness against ``promised_days``, the split
penalty, free pickups at the order's own store, and the backorder and rejection penalties by
priority and channel. Preference terms and tie-breaks of rule sets steer decisions; they are not
costs and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.costs import haversine_km
from allocator.rules.schema import RuleSet
from allocator.simulate._history import History

__all__ = ["Pricer"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PairPrice:
    """Prices of (order, location) pairs."""

    unit: FloatArray  # per unit
    parcel: FloatArray  # per shipment
    distance_km: FloatArray
    zone: IntArray


class Pricer:
    """Prices outcomes of a history under reference rules.

    Parameters
    ----------
    history
        The replayed history.
    rules
        The reference rule set (cost model and penalties).
    """

    def __init__(self, history: History, rules: RuleSet) -> None:
        self.rules = rules
        objective = rules.objective
        lines = history.lines
        heads = history.order_line_start[:-1]
        locs = history.network.locations
        self._loc_lat = locs["lat"].fill_null(np.nan).to_numpy().astype(np.float64)
        self._loc_lon = locs["lon"].fill_null(np.nan).to_numpy().astype(np.float64)
        loc_index = {str(v): i for i, v in enumerate(history.location_ids)}
        pickup = lines["pickup_location_id"].to_numpy()[heads]
        self._order_pickup = np.asarray(
            [loc_index.get(str(v), -1) if v is not None else -1 for v in pickup], dtype=np.int64
        )
        lat = lines["lat"].fill_null(np.nan).to_numpy().astype(np.float64)[heads]
        lon = lines["lon"].fill_null(np.nan).to_numpy().astype(np.float64)[heads]
        self._order_lat, self._order_lon = lat, lon
        countries = pl.concat(
            [locs["country"].cast(pl.String), lines["country"].cast(pl.String)]
        ).unique()
        codes = {str(c): i for i, c in enumerate(countries.drop_nulls().sort().to_list())}
        self._loc_country = np.asarray(
            locs["country"].replace_strict(codes, default=-1, return_dtype=pl.Int64).to_numpy(),
            dtype=np.int64,
        )
        self._order_country = np.asarray(
            lines["country"]
            .replace_strict(codes, default=-1, return_dtype=pl.Int64)
            .to_numpy()[heads],
            dtype=np.int64,
        )
        promised = (
            lines["promised_days"].fill_null(-1).to_numpy().astype(np.int64)[heads]
            if "promised_days" in lines.columns
            else np.full(len(heads), -1, dtype=np.int64)
        )
        self._promised = promised
        self._explicit: dict[tuple[int, int], tuple[float, float]] | None = None
        costs = history.network.costs
        if costs is not None:
            self._explicit = {}
            for order_id, loc_id, unit, ship in costs.select(
                "order_id", "location_id", "unit_cost", "shipment_cost"
            ).iter_rows():
                o = history.order_index.get(str(order_id))
                if o is not None:
                    self._explicit[(o, loc_index[str(loc_id)])] = (float(unit), float(ship))
        # Penalties per order (backorder per unit, rejection per unit).
        priority = history.order_priority
        weight = (1.0 + objective.priority_weight) ** priority.astype(np.float64)
        backorder = objective.backorder_penalty * weight
        for level, penalty in objective.backorder_penalty_by_priority.items():
            backorder = np.where(priority == level, penalty, backorder)
        channel = history.order_channel.astype(str)
        for name, penalty in objective.backorder_penalty_by_channel.items():
            backorder = np.where(channel == name, penalty, backorder)
        self.order_backorder = np.asarray(backorder, dtype=np.float64)
        self.order_reject_per_unit = np.asarray(
            objective.rejection_penalty * weight, dtype=np.float64
        )

    def pairs(self, order: IntArray, location: IntArray) -> PairPrice:
        """Unit and parcel price, distance and zone of each (order, location) pair."""
        objective = self.rules.objective
        card = objective.rate_card
        pickup = self._order_pickup[order]
        to_store = pickup >= 0
        # A pickup order served away from its store travels to the store (a transfer).
        lat = np.where(to_store, self._loc_lat[np.maximum(pickup, 0)], self._order_lat[order])
        lon = np.where(to_store, self._loc_lon[np.maximum(pickup, 0)], self._order_lon[order])
        distance = haversine_km(lat, lon, self._loc_lat[location], self._loc_lon[location])
        zone = card.zone(distance)
        if self._explicit is not None:
            listed = [
                self._explicit.get((int(o), int(loc)), (0.0, 0.0))
                for o, loc in zip(order.tolist(), location.tolist(), strict=True)
            ]
            unit = np.asarray([u for u, _ in listed], dtype=np.float64)
            parcel = np.asarray([s for _, s in listed], dtype=np.float64)
        else:
            unit = card.unit_cost(zone)
            parcel = card.parcel_cost(zone)
            a, b = self._order_country[order], self._loc_country[location]
            parcel = parcel + card.cross_border_parcel * ((a >= 0) & (b >= 0) & (a != b))
        promised = self._promised[order]
        late = np.where(promised >= 0, np.maximum(0, card.transit_days(zone) - promised), 0)
        unit = unit + objective.lateness_penalty * late
        parcel = parcel + objective.split_penalty
        at_store = pickup == location
        return PairPrice(
            unit=np.where(at_store, 0.0, unit).astype(np.float64),
            parcel=np.where(at_store, 0.0, parcel).astype(np.float64),
            distance_km=np.where(at_store, 0.0, distance).astype(np.float64),
            zone=np.where(at_store, 0, zone).astype(np.int64),
        )
