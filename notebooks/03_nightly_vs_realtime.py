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
# # Nightly re-optimisation versus purely real-time decisions
#
# Two published results frame the question:
#
# * **Xu, Allgor and Graves** (Amazon data): re-evaluating real-time assignments in an off-peak
#   batch, before the orders are released to the warehouses, removed **40-50 % of the extra
#   shipments** that the real-time decisions had created.
# * **Acimovic and Graves** (2015, a US retailer's data): a **forward-looking** real-time policy,
#   which prices stock by what later orders will need, cut outbound shipping cost by **about
#   1 %** against a myopic one.
#
# We measure both on generated histories:
#
# * `realtime`: the optimiser sources each order alone, optimally, when it arrives (myopic);
#   orders are released to the warehouses two hours later;
# * `nightly`: the same real-time decisions, but orders are released once a night at 02:00, and
#   just before that everything not yet released (and every open backorder) is re-allocated
#   jointly, keeping the real-time plan when the joint one is not cheaper;
# * `forward_looking`: real time, with each unit priced at the expected extra cost that the
#   location's own customers pay if it is gone before the next replenishment;
# * `offline`: the hindsight plan (all orders at once), the floor no policy can beat.
#
# *Extra shipments* are parcels beyond one per shipped order. The size comes from
# `ALLOCATOR_NB_ORDERS`, the seeds from `ALLOCATOR_NB_SEEDS` (comma separated).

# %%
import os

import polars as pl

from allocator import Network, Orders
from allocator.generate import generate
from allocator.simulate import compare

N_ORDERS = int(os.environ.get("ALLOCATOR_NB_ORDERS", "4000"))
N_LOCATIONS = 20
N_SKUS = max(80, N_ORDERS // 8)
DAYS = 14
SEEDS = [int(s) for s in os.environ.get("ALLOCATOR_NB_SEEDS", "11,12,13").split(",")]
print(
    f"instances: generate({N_ORDERS}, {N_LOCATIONS}, {N_SKUS}, seed=s, days={DAYS}), s in {SEEDS}"
)


def extra_shipments(result_orders: pl.DataFrame) -> int:
    shipped = result_orders.filter(pl.col("shipments") > 0)
    return int(shipped["shipments"].sum()) - shipped.height


# %% [markdown]
# ## The replays
#
# Every policy sees the same history per seed: the same orders, stock, and 2 % cancellations.

# %%
rows = []
for seed in SEEDS:
    inst = generate(N_ORDERS, N_LOCATIONS, N_SKUS, seed=seed, days=DAYS)
    network = Network.from_frames(inst.locations, inst.stock)
    orders = Orders.from_frame(inst.orders)
    common = {"ledger": None, "cancel_rate": 0.02, "seed": seed}
    realtime = compare(["optimize", "forward_looking"], network, orders, mode="realtime", **common)
    nightly = compare(["optimize"], network, orders, mode="nightly", **common)
    offline = compare(["optimize"], network, orders, mode="offline", **common)
    runs = {
        "realtime": realtime.results["optimize"],
        "forward_looking": realtime.results["forward_looking"],
        "nightly": nightly.results["optimize"],
        "offline": offline.results["optimize"],
    }
    for name, result in runs.items():
        k = result.kpis.row(0, named=True)
        rows.append(
            {
                "seed": seed,
                "run": name,
                "cost_per_order": k["cost_per_order"],
                "shipping_cost_per_order": k["shipping_cost_per_order"],
                "shipments_per_order": k["shipments_per_order"],
                "extra_shipments": extra_shipments(result.orders),
                "units_backordered": k["units_backordered"],
                "nights_reoptimized": result.info["nights_reoptimized"],
            }
        )
runs_table = pl.DataFrame(rows)
runs_table

# %% [markdown]
# ## Our figures beside the literature


# %%
def value(seed: int, run: str, column: str) -> float:
    return float(runs_table.filter((pl.col("seed") == seed) & (pl.col("run") == run))[column][0])


per_seed = []
for seed in SEEDS:
    rt_extra = value(seed, "realtime", "extra_shipments")
    nightly_extra = value(seed, "nightly", "extra_shipments")
    hindsight_extra = value(seed, "offline", "extra_shipments")
    rt_ship = value(seed, "realtime", "shipping_cost_per_order")
    fl_ship = value(seed, "forward_looking", "shipping_cost_per_order")
    per_seed.append(
        {
            "seed": seed,
            "extra_shipments_realtime": int(rt_extra),
            "extra_shipments_nightly": int(nightly_extra),
            "extra_removed_by_nightly_pct": 100 * (rt_extra - nightly_extra) / max(1.0, rt_extra),
            # Extra over the hindsight plan's own splits: the part real time is to blame for.
            "gap_to_hindsight_closed_pct": 100
            * (rt_extra - nightly_extra)
            / max(1.0, rt_extra - hindsight_extra),
            "shipping_saved_by_forward_looking_pct": 100 * (rt_ship - fl_ship) / rt_ship,
            "total_cost_saved_by_forward_looking_pct": 100
            * (
                value(seed, "realtime", "cost_per_order")
                - value(seed, "forward_looking", "cost_per_order")
            )
            / value(seed, "realtime", "cost_per_order"),
        }
    )
figures = pl.DataFrame(per_seed)
figures

# %%
summary = pl.DataFrame(
    {
        "result": [
            "extra shipments removed by an off-peak re-optimisation (over 1 per order)",
            "... (over the hindsight plan's shipments)",
            "outbound shipping cost cut by a forward-looking real-time policy",
        ],
        "literature": [
            "40-50 % (Xu, Allgor and Graves; Amazon data)",
            "40-50 % (Xu, Allgor and Graves; Amazon data)",
            "about 1 % (Acimovic and Graves 2015; US retailer data)",
        ],
        "ours (mean over seeds)": [
            f"{figures['extra_removed_by_nightly_pct'].mean():.1f} % "
            f"(range {figures['extra_removed_by_nightly_pct'].min():.1f} to "
            f"{figures['extra_removed_by_nightly_pct'].max():.1f})",
            f"{figures['gap_to_hindsight_closed_pct'].mean():.1f} % "
            f"(range {figures['gap_to_hindsight_closed_pct'].min():.1f} to "
            f"{figures['gap_to_hindsight_closed_pct'].max():.1f})",
            f"{figures['shipping_saved_by_forward_looking_pct'].mean():.2f} % "
            f"(range {figures['shipping_saved_by_forward_looking_pct'].min():.2f} to "
            f"{figures['shipping_saved_by_forward_looking_pct'].max():.2f})",
        ],
    }
)
summary

# %% [markdown]
# Reading the figures (measured with the defaults: 4,000 orders, 20 locations, 500 SKUs, 14
# days, seeds 11, 12 and 13, 2 % cancellations; the optimiser is the default rule set):
#
# * The nightly batch removed about **a fifth of the extra shipments** (14-22 %, mean 18.5 %),
#   or **30 % of the gap** between the real-time and the hindsight plan's shipments (22-35 %):
#   below the 40-50 % reported on Amazon's data. The batch sees a day of orders together and
#   keeps the real-time plan when the joint one is not cheaper, so it never loses on the night's
#   orders; what it cannot undo is the stock the real-time pass already shipped on earlier days.
#   Generated orders are mostly one-line (60 %), so there are few splits to remove to begin with,
#   and the optimiser's objective is cost, of which parcels are only a part.
# * The forward-looking policy cut outbound shipping cost by **0.3 %** on average (from -0.04 %
#   to 0.7 %), against about 1 % reported: the same direction, smaller. It also lowered the total
#   cost (with backorder penalties) on two seeds of three, by 0.8-1.0 %: its price moves units
#   away from locations whose own customers will need them, so fewer later orders wait. Our
#   forecast is deliberately crude (each SKU's average demand spread by home-location share);
#   Acimovic and Graves price stock with the duals of a transportation LP over forecast demand.
# * `offline` is the hindsight floor; the gap between it and `realtime` (mostly backorders of
#   large ship-complete orders, see notebook 02) is the price of deciding orders one at a time
#   without knowing the future.
#
# The figures move with the instance and the seed: rerun with `ALLOCATOR_NB_SEEDS` to see how
# much.

# %% [markdown]
# ## Sanity checks (run by the tests)

# %%
for row in per_seed:
    assert -100.0 <= row["extra_removed_by_nightly_pct"] <= 100.0
    assert -200.0 <= row["gap_to_hindsight_closed_pct"] <= 200.0
    assert -20.0 <= row["shipping_saved_by_forward_looking_pct"] <= 20.0
for seed in SEEDS:
    assert value(seed, "offline", "cost_per_order") <= value(seed, "realtime", "cost_per_order")
    assert value(seed, "realtime", "shipments_per_order") >= 1.0
assert runs_table["cost_per_order"].is_between(1.0, 1_000.0).all()
