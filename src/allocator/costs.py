"""The shipping cost model: great-circle distance, parcel zones, and a rate card.

When the network has no explicit ``costs`` table, the cost of sending a parcel from a location to
an order's ship-to point comes from the distance between them:

1. the great-circle (haversine) distance in km, on a sphere of radius 6371.0088 km;
2. a parcel *zone* from distance bands (like the zone charts of parcel carriers: zone 1 is local,
   each band further is one zone up);
3. a *rate card*: a charge per parcel by zone, plus a charge per unit by zone (handling and the
   weight-driven part of the rate), plus a surcharge when the parcel crosses a border.

The default bands and rates below are round numbers of the order of 2025 US ground-parcel list
prices for a small parcel (about 8 USD local, about 14 USD coast to coast) and are meant as a
realistic starting point, not as any carrier's tariff. Every number can be overridden in a rule
file (``[objective.rate_card]``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["EARTH_RADIUS_KM", "RateCard", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088

FloatArray = npt.NDArray[np.float64]


def haversine_km(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> FloatArray:
    """Great-circle distance in km between points given in degrees (broadcasts like numpy)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return np.asarray(2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


class RateCard(BaseModel):
    """Distance bands, zone rates and transit times.

    Parameters
    ----------
    zone_limits_km
        Upper distance of each zone but the last, ascending. ``n`` limits make ``n + 1`` zones.
    parcel_by_zone
        Charge per parcel (shipment) in each zone.
    unit_by_zone
        Charge per unit in each zone.
    transit_days_by_zone
        Days in transit in each zone (used for lateness against ``promised_days``).
    cross_border_parcel
        Extra charge per parcel when the location's and the order's countries differ.
    unknown_distance_zone
        Zone (1-based) used when the location or the order has no coordinates. Defaults to the
        last zone, so a pair of unknown distance is never preferred on cost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone_limits_km: tuple[float, ...] = (80.0, 250.0, 500.0, 1000.0, 1600.0, 2400.0)
    parcel_by_zone: tuple[float, ...] = (7.90, 8.60, 9.40, 10.50, 11.80, 13.20, 14.90)
    unit_by_zone: tuple[float, ...] = (0.60, 0.70, 0.85, 1.05, 1.30, 1.55, 1.85)
    transit_days_by_zone: tuple[int, ...] = (1, 2, 2, 3, 4, 5, 5)
    cross_border_parcel: float = Field(default=12.0, ge=0)
    unknown_distance_zone: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RateCard:
        n = len(self.zone_limits_km) + 1
        limits = np.asarray(self.zone_limits_km)
        if len(limits) and (np.any(limits <= 0) or np.any(np.diff(limits) <= 0)):
            raise ValueError("zone_limits_km must be positive and strictly ascending")
        for name in ("parcel_by_zone", "unit_by_zone", "transit_days_by_zone"):
            values = getattr(self, name)
            if len(values) != n:
                raise ValueError(
                    f"{name} needs {n} values (one per zone: len(zone_limits_km) + 1), got {len(values)}"
                )
            if any((not np.isfinite(v)) or v < 0 for v in values):
                raise ValueError(f"{name} values must be finite and >= 0")
        if self.unknown_distance_zone is not None and self.unknown_distance_zone > n:
            raise ValueError(f"unknown_distance_zone must be between 1 and {n}")
        return self

    @property
    def n_zones(self) -> int:
        return len(self.zone_limits_km) + 1

    def zone(self, distance_km: FloatArray) -> npt.NDArray[np.int64]:
        """1-based zone of each distance; NaN distances get the unknown-distance zone."""
        distance_km = np.asarray(distance_km, dtype=np.float64)
        zone = np.searchsorted(np.asarray(self.zone_limits_km), distance_km, side="left") + 1
        unknown = self.unknown_distance_zone or self.n_zones
        return np.where(np.isnan(distance_km), unknown, zone).astype(np.int64)

    def parcel_cost(self, zone: npt.NDArray[np.int64]) -> FloatArray:
        return np.asarray(self.parcel_by_zone, dtype=np.float64)[zone - 1]

    def unit_cost(self, zone: npt.NDArray[np.int64]) -> FloatArray:
        return np.asarray(self.unit_by_zone, dtype=np.float64)[zone - 1]

    def transit_days(self, zone: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.asarray(self.transit_days_by_zone, dtype=np.int64)[zone - 1]
