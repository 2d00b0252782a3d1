# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Today's platforms versus the optimiser, on one generated history
#
# Each platform our users come from routes orders with a greedy rule (`shared/peers.md`): rank
# the candidate locations, walk the ranking, take what is free. Each is a rule file in
# `rules/peers/`, so it can be replayed by name. Here all twelve, the naive `greedy` baseline,
# the optimiser (`optimize`) and the forward-looking real-time optimiser replay the same history
# twice:
#
# * **offline**: every policy allocates the whole history at once. For the greedy rules that is
#   their real-time replay (they fill orders one at a time in arrival order); the optimiser plans
#   all orders jointly. This is the fair comparison of *rules*: every greedy plan is a feasible
#   plan of the optimiser's problem, priced on the same scale, so the optimiser is never above.
# * **realtime**: every policy decides each order when it arrives. The optimiser then sources
#   each order optimally *on its own* (myopic): nothing guarantees it beats a rule that happens
#   to keep stock where later orders need it.
#
# Costs are priced with one reference rule set (the default): rate card, backorder and
# rejection penalties. `ALLOCATOR_NB_ORDERS` sets the size.

# %%
import os

import polars as pl

from allocator import Network, Orders
from allocator.generate import generate
from allocator.rules import PEER_POLICIES
from allocator.simulate import compare

N_ORDERS = int(os.environ.get("ALLOCATOR_NB_ORDERS", "3000"))
N_LOCATIONS = 25
SEED = 3
instance = generate(N_ORDERS, N_LOCATIONS, max(80, N_ORDERS // 8), seed=SEED, days=10)
network = Network.from_frames(instance.locations, instance.stock)
orders = Orders.from_frame(instance.orders)
GREEDY = ["greedy", *PEER_POLICIES]
POLICIES = ["optimize", "forward_looking", *GREEDY]
COLUMNS = [
    "policy",
    "cost_per_order",
    "shipping_cost_per_order",
    "penalty_cost_per_order",
    "shipments_per_order",
    "split_rate",
    "fill_rate_at_order",
    "units_backordered",
    "orders_rejected",
    "km_per_unit",
    "cost_per_order_vs_best_pct",
]
print(
    f"instance: generate({N_ORDERS}, {N_LOCATIONS}, {max(80, N_ORDERS // 8)}, seed={SEED}, days=10)"
)

# %% [markdown]
# ## Offline: the whole history as one allocation run

# %%
offline = compare(POLICIES, network, orders, mode="offline", ledger=None)
offline_table = offline.kpis.select(COLUMNS).sort("cost_per_order")
offline_table

# %% [markdown]
# Where the money goes: shipping (parcels and units) and penalties (units that had to wait for
# stock, orders rejected). Rules that consolidate (`shopify_default`, `salesforce_fewest_splits`)
# ship fewer parcels; rules that reject short orders (`saleor_*`) pay for every rejection;
# rules that rank by a fixed location order (`*_priority`, `spree_legacy`, `medusa_*`) ship far.

# %%
offline.zone_mix().filter(pl.col("policy").is_in(["optimize", "shopify_default"]))

# %% [markdown]
# ## Real time: every order decided on arrival

# %%
realtime = compare(POLICIES, network, orders, mode="realtime", ledger=None)
realtime_table = realtime.kpis.select(COLUMNS).sort("cost_per_order")
realtime_table

# %% [markdown]
# In real time the myopic optimiser spends the stock nearest to each customer on that customer.
# Large ship-complete (wholesale) orders need one location holding every line in full; rules
# that send each order whole to one location keep such locations intact more often. The
# forward-looking policy prices each unit by the chance that the location's own customers need
# it before it is replenished, and recovers most of that gap.


# %%
def ship_complete_backorders(result_orders: pl.DataFrame) -> int:
    flags = orders.lines.group_by("order_id").agg(pl.col("ship_complete").first())
    joined = result_orders.join(flags, on="order_id")
    return int(joined.filter(pl.col("ship_complete"))["units_backordered"].sum())


pl.DataFrame(
    {
        "policy": ["optimize", "forward_looking", "shopify_default"],
        "ship_complete_units_backordered": [
            ship_complete_backorders(realtime.results[p].orders)
            for p in ("optimize", "forward_looking", "shopify_default")
        ],
    }
)

# %% [markdown]
# ## Sanity checks (run by the tests)

# %%
off = dict(offline_table.select("policy", "cost_per_order").iter_rows())
assert all(off["optimize"] <= off[name] + 1e-9 for name in GREEDY), off
rt = dict(realtime_table.select("policy", "cost_per_order").iter_rows())
assert all(0 < cost < 1_000 for cost in rt.values())
assert realtime.kpis["fill_rate_at_order"].is_between(0.3, 1.0).all()
# The hindsight plan is never dearer than the myopic real-time optimiser's replay.
assert off["optimize"] <= rt["optimize"] + 1e-9
