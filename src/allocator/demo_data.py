"""The bundled default instance behind ``allocator demo``.

It is not stored as files: :func:`default_instance` generates it on the fly with
:func:`allocator.generate.generate` and fixed arguments, which takes a few milliseconds and gives
the same tables on every call. It is small enough (300 orders, 12 locations, 150 SKUs) that every
policy allocates it in a couple of seconds.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from allocator.generate import Instance, generate

__all__ = ["DEFAULT_INSTANCE_ARGS", "default_instance"]

#: Arguments of :func:`allocator.generate.generate` that define the default instance: the same as
#: ``allocator generate --orders 300 --locations 12 --skus 150 --seed 0``. Seed 0 gives a typical
#: instance of this size (a greedy plan backorders about 6 % of its units, the median over seeds
#: 0-11).
DEFAULT_INSTANCE_ARGS: Final[MappingProxyType[str, Any]] = MappingProxyType(
    {"n_orders": 300, "n_locations": 12, "n_skus": 150, "seed": 0, "region": "us"}
)


def default_instance() -> Instance:
    """The default instance of ``allocator demo``.

    Three warehouses (Memphis, the Inland Empire, the Lehigh Valley), eight stores in large US
    cities, one drop-ship partner, 150 SKUs and 300 orders over 30 days.

    Returns
    -------
    Instance
        A new :class:`~allocator.generate.Instance`, identical on every call.

    Examples
    --------
    >>> from allocator.demo_data import default_instance
    >>> inst = default_instance()
    >>> inst.locations.height, inst.orders["order_id"].n_unique()
    (12, 300)
    """
    return generate(**DEFAULT_INSTANCE_ARGS)
