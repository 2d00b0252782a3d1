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
# # Quickstart: replay an order history under a policy
#
# `allocator.simulate` replays orders at their `created_at` against a network's stock, under
# any policy: the optimiser, a platform's rule (`shopify_default`, `saleor_high_stock`, ...), or
# a rule file of your own. Every reservation and shipment goes through the inventory ledger.
#
# This notebook generates a small history, replays it under one policy, then compares three
# policies and writes the charts. Set `ALLOCATOR_NB_ORDERS` for a bigger history.

# %%
import os
import tempfile
from pathlib import Path

import polars as pl

from allocator import Network, Orders
from allocator.generate import generate
from allocator.simulate import compare, simulate

N_ORDERS = int(os.environ.get("ALLOCATOR_NB_ORDERS", "2000"))
SEED = 7
OUT = Path(os.environ.get("ALLOCATOR_NB_OUT") or tempfile.mkdtemp(prefix="quickstart-"))

instance = generate(N_ORDERS, 15, max(60, N_ORDERS // 10), seed=SEED, days=7)
network = Network.from_frames(instance.locations, instance.stock)
orders = Orders.from_frame(instance.orders)
print(f"{orders.n_orders:,} orders, {orders.n_lines:,} lines, {network.locations.height} locations")

# %% [markdown]
# ## One policy, in real time
#
# `mode="realtime"`: each order is decided when it arrives, against the stock the earlier orders
# left. 2 % of the orders are cancelled (drawn from the seed, the same orders for every policy);
# a cancellation before the order is released to the warehouse gives its units back.

# %%
result = simulate(network, orders, "shopify_default", mode="realtime", cancel_rate=0.02)
result.kpis.select(
    "policy",
    "cost_per_order",
    "shipping_cost_per_order",
    "shipments_per_order",
    "split_rate",
    "fill_rate_at_order",
    "units_backordered",
    "orders_cancelled",
)

# %% [markdown]
# Per order, per parcel, per day and per location tables are polars frames:

# %%
result.orders.head()

# %%
result.by_day()

# %%
result.locations.sort("units", descending=True).head(8)

# %% [markdown]
# ## Three policies on the same history
#
# `compare` replays the same history under each policy. In the default `offline` mode every
# policy allocates the whole history at once: greedy rules fill the orders one at a time in
# arrival order (exactly their real-time replay), the optimiser plans them jointly. Every greedy
# plan is a feasible plan of the optimiser's problem, so the optimiser never costs more.

# %%
comparison = compare(["optimize", "shopify_default", "saleor_high_stock"], network, orders)
table = comparison.kpis.select(
    "policy",
    "cost_per_order",
    "shipping_cost_per_order",
    "penalty_cost_per_order",
    "shipments_per_order",
    "split_rate",
    "units_backordered",
    "cost_per_order_vs_best_pct",
)
table

# %% [markdown]
# ## Charts and the HTML report
#
# `Comparison.write` saves the tables as CSV, the charts as PNG (through vl-convert, no browser)
# and `report.html`, which embeds the table and the charts.

# %%
files = comparison.write(OUT)
print("\n".join(str(f) for f in files))

# %% [markdown]
# ## Sanity checks (run by the tests)

# %%
costs = dict(table.select("policy", "cost_per_order").iter_rows())
assert costs["optimize"] <= min(costs["shopify_default"], costs["saleor_high_stock"]) + 1e-9
k = result.kpis.row(0, named=True)
assert k["orders"] == orders.n_orders
assert 0.5 < k["fill_rate_at_order"] <= 1.0
assert 1.0 <= k["shipments_per_order"] < 2.0
assert (OUT / "report.html").exists()
assert pl.read_csv(OUT / "kpis.csv").height == 3
