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
# # Scaling a policy sweep out with Dask
#
# `compare(..., executor=...)` runs one replay per task through any
# `concurrent.futures.Executor`. A Dask client's `get_executor()` is one, so the same call runs
# on a laptop's cores or on a cluster (`Client("tcp://scheduler:8786")`, or
# `allocator simulate ... --scheduler ADDRESS` from the command line). Results do not depend on
# the executor: the history's random draws come from the seed, never from the order tasks run in.
#
# Here: a sweep of the forward-looking policy's weight, plus two platform rules, on a local
# cluster. `ALLOCATOR_NB_ORDERS` sets the size, `ALLOCATOR_NB_WORKERS` the workers and
# `ALLOCATOR_NB_PROCESSES=0` runs the workers as threads (quicker to start, for tests).

# %%
import os
import time

import polars as pl
from distributed import Client, LocalCluster

from allocator import Network, Orders
from allocator.generate import generate
from allocator.simulate import ForwardLookingPolicy, compare, simulate

N_ORDERS = int(os.environ.get("ALLOCATOR_NB_ORDERS", "4000"))
WORKERS = int(os.environ.get("ALLOCATOR_NB_WORKERS", "2"))
PROCESSES = os.environ.get("ALLOCATOR_NB_PROCESSES", "1") != "0"
SEED = 5
instance = generate(N_ORDERS, 20, max(80, N_ORDERS // 8), seed=SEED, days=10)
network = Network.from_frames(instance.locations, instance.stock)
orders = Orders.from_frame(instance.orders)

if PROCESSES and "__file__" in globals():
    # Run as a plain script, a spawned worker process would re-run this file from the top
    # (multiprocessing imports the main script in each child). In Jupyter the main module has
    # no file; make the script look the same, since nothing defined here runs on the workers.
    import __main__

    del __main__.__file__

cluster = LocalCluster(
    n_workers=WORKERS, threads_per_worker=1, processes=PROCESSES, dashboard_address=":0"
)
client = Client(cluster)
client

# %% [markdown]
# ## A sweep of policies, one task each

# %%
WEIGHTS = [0.0, 0.5, 1.0, 2.0]
policies = [ForwardLookingPolicy(weight=w, name=f"forward_looking_w{w:g}") for w in WEIGHTS]
policies += ["shopify_default", "greedy"]

t0 = time.perf_counter()
sweep = compare(
    policies, network, orders, mode="realtime", ledger=None, executor=client.get_executor()
)
seconds_dask = time.perf_counter() - t0
sweep.kpis.select(
    "policy",
    "cost_per_order",
    "shipping_cost_per_order",
    "penalty_cost_per_order",
    "units_backordered",
    "split_rate",
    "cost_per_order_vs_best_pct",
    "seconds",
)

# %% [markdown]
# ## A grid of settings
#
# For sweeps over settings rather than policies, submit :func:`simulate` calls yourself:
# here each policy under three cancellation rates.

# %%
executor = client.get_executor()
grid = [(p, rate) for p in ("optimize", "shopify_default") for rate in (0.0, 0.05, 0.10)]
futures = [
    executor.submit(
        simulate, network, orders, p, mode="realtime", ledger=None, cancel_rate=rate, seed=SEED
    )
    for p, rate in grid
]
grid_table = pl.concat(
    [
        f.result().kpis.select(
            "policy",
            pl.lit(rate).alias("cancel_rate"),
            "cost_per_order",
            "orders_cancelled",
            "units_backordered",
        )
        for f, (_, rate) in zip(futures, grid, strict=True)
    ]
)
grid_table

# %% [markdown]
# ## The same table without Dask
#
# A serial run of two of the policies gives the same numbers.

# %%
serial = compare([*policies[:1], "shopify_default"], network, orders, mode="realtime", ledger=None)
same = serial.kpis.drop("seconds", "cost_per_order_vs_best", "cost_per_order_vs_best_pct")
dasked = sweep.kpis.filter(pl.col("policy").is_in(same["policy"].implode())).select(same.columns)
print(f"sweep of {len(policies)} policies on {WORKERS} Dask workers: {seconds_dask:.1f} s")

# %%
client.close()
cluster.close()

# %% [markdown]
# ## Sanity checks (run by the tests)

# %%
assert same.equals(dasked)
assert sweep.kpis.height == len(policies)
assert sweep.kpis["cost_per_order"].is_between(1.0, 1_000.0).all()
assert grid_table.filter(pl.col("cancel_rate") == 0.0)["orders_cancelled"].sum() == 0
assert grid_table.filter(pl.col("cancel_rate") == 0.1)["orders_cancelled"].min() > 0
