"""Per-order pricing: each order's cheapest sourcing pattern at given resource prices.

With the coupling rows (stock, capacities, side limits) moved into the objective at prices
``lambda >= 0``, the sourcing problem falls apart into one small problem per order:

* a **ship-complete** order picks one covering location (its parcel cost plus every unit at the
  priced unit cost) or waits / is rejected whole;
* an order that **may split** opens a set ``S`` of at most ``max_locations`` locations, pays
  their priced parcel costs, and fills each line from the opened locations in increasing priced
  unit cost up to the arc caps; a unit left over is backordered at the line's backorder cost. An
  order that may not be backordered is either filled completely or rejected (a shortfall is
  priced just above the rejection cost, so it never wins).

For a fixed ``S`` each line's fill is greedy, so the order's cost is
``BO - sum_l saving(S) + sum_{l in S} f_l`` where ``BO`` is the cost of backordering everything
and ``saving`` is a max-weight fill: a submodular function of ``S``. Hence in a cheapest ``S``
every location saves at least its own parcel cost on its own ("useful" locations), and a set of
``j`` locations costs at least ``BO + (j smallest parcel costs) - saving(all useful)``. Single
locations are priced for every order at once with ``bincount``; the few orders where that bound
says a split could pay are enumerated over subsets of useful locations, vectorised over orders
of the same shape. Where enumeration would be too large, a dynamic programme over the order's
locations solves it when its state space is small, else a small MILP over the same candidate
locations (at most :data:`MILP_ORDERS` per call); only beyond those the bound is used, so the
value stays a valid lower bound (and the order is flagged as not solved exactly). On 10,000
orders, 8 orders of 5-6 lines and 41-45 candidate locations reached the bound, and their slack
alone held the Lagrangian bound 0.27 % below the pattern LP; solved as MILPs (milliseconds each)
the bound converges to the LP.

Everything here is plain numpy on a :class:`OrderBlock` (a partition of the orders with local
indices), so blocks can be priced in worker processes.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.problem import Problem
from allocator.solvers.exact import _quiet_native_stdout

__all__ = ["OrderBlock", "Priced", "make_block", "price_block"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Relative tolerance below which a candidate must beat the incumbent to replace it.
_TOL = 1e-9
#: Most (order, subset, line, member) entries evaluated in one numpy chunk.
_CHUNK = 2_000_000
_STATS: list[tuple[int, int, int, int, int]] | None = None
#: Default most orders per pricing call solved as small MILPs (see :func:`_milp_order`).
MILP_ORDERS = 64
#: Slot counts that enumeration groups are padded to.
_LINE_BUCKETS = np.array([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 1 << 40], dtype=np.int64)
_BUCKETS = np.array(
    [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        10,
        12,
        14,
        16,
        20,
        24,
        28,
        32,
        40,
        48,
        56,
        64,
        80,
        96,
        128,
        160,
        192,
        256,
        384,
        512,
        1024,
        1 << 40,
    ],
    dtype=np.int64,
)


@dataclass(frozen=True, eq=False)
class OrderBlock:
    """The arrays of a set of orders, re-indexed locally (picklable; no Problem inside).

    ``orders``, ``lines``, ``pairs`` and ``arcs`` hold the global indices of the block's rows;
    every other index array is local to the block.
    """

    orders: IntArray
    lines: IntArray
    pairs: IntArray
    arcs: IntArray
    ship_complete: BoolArray
    allow_backorder: BoolArray
    reject_cost: FloatArray
    max_locations: IntArray
    line_start: IntArray
    pair_start: IntArray
    line_order: IntArray
    line_qty: IntArray
    line_backorder_cost: FloatArray
    pair_order: IntArray
    pair_location: IntArray
    pair_cost: FloatArray
    pair_price_row: IntArray  # shipment-capacity row of the pair's location, or -1
    line_arc_start: IntArray
    arc_line: IntArray
    arc_pair: IntArray
    arc_cap: IntArray
    arc_cost: FloatArray
    arc_rows: sp.csr_matrix  # (block arcs x unit rows), 0/1: the unit rows each arc counts in

    @property
    def n_orders(self) -> int:
        return len(self.orders)

    def nbytes(self) -> int:
        total = sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
        m = self.arc_rows
        return int(total + m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def _expand(starts: IntArray, stops: IntArray) -> IntArray:
    """Concatenated ``arange(starts[i], stops[i])`` without a Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    out: IntArray = (np.arange(total, dtype=np.int64) + offsets).astype(np.int64)
    return out


def make_block(
    problem: Problem,
    orders: IntArray,
    arc_rows: sp.csr_matrix,
    pair_price_row: IntArray,
    *,
    pair_extra_cost: FloatArray | None = None,
) -> OrderBlock:
    """Cut the arrays of ``orders`` (sorted global indices) out of ``problem``.

    Parameters
    ----------
    problem
        The compiled problem.
    orders
        Sorted global order indices.
    arc_rows
        The (all arcs x unit rows) incidence of the coupling rows.
    pair_price_row
        Shipment-capacity row of each pair (``-1`` where none).
    pair_extra_cost
        An extra fixed cost per pair (e.g. a change penalty), added to the parcel cost.
    """
    p = problem
    orders = np.asarray(orders, dtype=np.int64)
    lines = _expand(p.order_line_start[orders], p.order_line_start[orders + 1])
    pairs = _expand(p.order_pair_start[orders], p.order_pair_start[orders + 1])
    arcs = _expand(p.line_arc_start[lines], p.line_arc_start[lines + 1])
    n_lines_per = p.order_line_start[orders + 1] - p.order_line_start[orders]
    n_pairs_per = p.order_pair_start[orders + 1] - p.order_pair_start[orders]
    local_order = np.repeat(np.arange(len(orders), dtype=np.int64), n_lines_per)
    # A run of consecutive orders (the decomposition's partitions) has consecutive lines, pairs
    # and arcs: its arrays are then read-only views of the problem's, not copies (100,000
    # orders: the blocks took 780 MB as copies, 496 MB so).
    run = len(orders) > 0 and int(orders[-1]) - int(orders[0]) + 1 == len(orders)
    arc_range = slice(int(arcs[0]), int(arcs[-1]) + 1) if run and len(arcs) else arcs
    pair_range = slice(int(pairs[0]), int(pairs[-1]) + 1) if run and len(pairs) else pairs
    # Local maps by searchsorted (global indices are sorted within the block).
    line_local = np.searchsorted(lines, p.arc_line[arc_range]).astype(np.int64)
    pair_local = np.searchsorted(pairs, p.arc_pair[arc_range]).astype(np.int64)
    pair_cost = _take(p.pair_shipment_cost, pair_range, np.float64)
    if pair_extra_cost is not None:
        pair_cost = pair_cost + pair_extra_cost[pairs]
    if isinstance(arc_range, slice):
        ptr = arc_rows.indptr[arc_range.start : arc_range.stop + 1]
        entries = slice(int(ptr[0]), int(ptr[-1]))
        block_rows = sp.csr_matrix(
            (_view(arc_rows.data[entries]), _view(arc_rows.indices[entries]), ptr - ptr[0]),
            shape=(len(arcs), arc_rows.shape[1]),
            copy=False,
        )
    else:
        block_rows = sp.csr_matrix(arc_rows[arcs])
    return OrderBlock(
        orders=orders,
        lines=lines,
        pairs=pairs,
        arcs=arcs,
        ship_complete=p.order_ship_complete[orders],
        allow_backorder=p.order_allow_backorder[orders],
        reject_cost=p.order_reject_cost[orders].astype(np.float64),
        max_locations=p.order_max_locations[orders].astype(np.int64),
        line_start=np.concatenate([[0], np.cumsum(n_lines_per)]).astype(np.int64),
        pair_start=np.concatenate([[0], np.cumsum(n_pairs_per)]).astype(np.int64),
        line_order=local_order,
        line_qty=p.line_qty[lines].astype(np.int64),
        line_backorder_cost=p.line_backorder_cost[lines].astype(np.float64),
        pair_order=np.repeat(np.arange(len(orders), dtype=np.int64), n_pairs_per),
        pair_location=_take(p.pair_location, pair_range, np.int64),
        pair_cost=pair_cost,
        pair_price_row=_take(pair_price_row, pair_range, np.int64),
        line_arc_start=np.concatenate(
            [[0], np.cumsum(p.line_arc_start[lines + 1] - p.line_arc_start[lines])]
        ).astype(np.int64),
        arc_line=line_local,
        arc_pair=pair_local,
        arc_cap=_take(p.arc_cap, arc_range, np.int64),
        arc_cost=_take(p.arc_unit_cost, arc_range, np.float64),
        arc_rows=block_rows,
    )


def _view(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A read-only view (a block never writes; a write would change the problem)."""
    view = values.view()
    view.flags.writeable = False
    return view


def _take(values: npt.NDArray[Any], where: IntArray | slice, dtype: type) -> npt.NDArray[Any]:
    """``values[where]`` as ``dtype``: a read-only view for a slice of the same type."""
    if isinstance(where, slice) and values.dtype == dtype:
        return _view(values[where])
    return np.asarray(values[where], dtype=dtype)


@dataclass(frozen=True, eq=False)
class Priced:
    """The cheapest pattern of every order of a block at given prices.

    Attributes
    ----------
    value
        Per order: the priced cost of its cheapest pattern (a lower bound on it where ``exact``
        is false).
    exact
        Per order: whether the pricing problem was solved exactly.
    arc
        Local arc indices that the chosen patterns ship on.
    qty
        Units on those arcs.
    served
        Per order: the chosen pattern ships something (else the order waits or is rejected).
    alt_order, alt_ptr, alt_arc, alt_qty
        With ``alternatives > 0``: further single-location patterns, pattern ``i`` of order
        ``alt_order[i]`` shipping ``alt_qty`` on ``alt_arc[alt_ptr[i]:alt_ptr[i + 1]]``.
    """

    value: FloatArray
    exact: BoolArray
    arc: IntArray
    qty: IntArray
    served: BoolArray
    alt_order: IntArray | None = None
    alt_ptr: IntArray | None = None
    alt_arc: IntArray | None = None
    alt_qty: IntArray | None = None


def _segment_min(values: FloatArray, starts: IntArray) -> tuple[FloatArray, IntArray]:
    """Minimum and first argmin of each segment ``values[starts[i]:starts[i+1]]``.

    Empty segments give ``inf`` and ``-1``.
    """
    n = len(starts) - 1
    lengths = np.diff(starts)
    mins = np.full(n, np.inf)
    arg = np.full(n, -1, np.int64)
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty) == 0 or len(values) == 0:
        return mins, arg
    mins[nonempty] = np.minimum.reduceat(values, starts[nonempty])
    seg = np.repeat(np.arange(n), lengths)
    hit = np.flatnonzero(values <= mins[seg])
    first = np.unique(seg[hit], return_index=True)
    arg[first[0]] = hit[first[1]]
    mins[arg < 0] = np.inf
    return mins, arg


@functools.lru_cache(maxsize=256)
def _combinations(n: int, k: int) -> IntArray:
    if k > n:
        return np.zeros((0, k), np.int64)
    return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)


def _n_combinations(n: IntArray, k: int) -> FloatArray:
    out = np.ones(len(n))
    for i in range(k):
        out *= np.maximum(n - i, 0) / (i + 1)
    return out


def _smallest_prefix(values: FloatArray, group: IntArray, n_groups: int, k: int) -> FloatArray:
    """``out[j, g]``: sum of the ``j`` smallest values of group ``g`` (``inf`` if it has fewer).

    For ``j = 0..k``.
    """
    order = np.lexsort((values, group))
    g = group[order]
    v = values[order]
    starts = np.searchsorted(g, np.arange(n_groups + 1))
    rank = np.arange(len(g)) - starts[g]
    counts = np.diff(starts)
    out = np.zeros((k + 1, n_groups))
    for j in range(1, k + 1):
        keep = rank == j - 1
        out[j] = out[j - 1]
        out[j, g[keep]] += v[keep]
        out[j, counts < j] = np.inf
    return out


def price_block(
    block: OrderBlock,
    unit_price: FloatArray,
    ship_price: FloatArray,
    *,
    arc_cap: IntArray | None = None,
    pair_open: BoolArray | None = None,
    max_subsets: int = 4096,
    alternatives: int = 0,
    max_milp_orders: int = MILP_ORDERS,
    dynamic: bool = True,
) -> Priced:
    """Solve every order's pricing problem in ``block``.

    Parameters
    ----------
    block
        The orders.
    unit_price
        Price of one unit in each unit row (stock, unit capacity, side limit); ``>= 0``.
    ship_price
        Price of one shipment in each shipment-capacity row; ``>= 0``.
    arc_cap
        Caps to use instead of the block's (residual stock in a repair pass).
    pair_open
        Pairs that may be used (default: all).
    max_subsets
        Most location subsets enumerated per order and subset size; beyond it the subset-size
        bound is used and the order is flagged inexact.
    alternatives
        Also return up to this many further single-location patterns per order (the cheapest
        after the chosen one that beat waiting or rejection), as starting columns.
    max_milp_orders
        Most orders per call whose pricing problem, too large for enumeration and the dynamic
        programme, is solved exactly as a small MILP; beyond it they keep a valid bound and
        are flagged inexact.
    dynamic
        Solve the orders too large to enumerate by the dynamic programme (else they keep their
        best single location or smaller split, and the size bound, flagged inexact): a
        heuristic pass that re-prices the same large orders many times saves most of its time.

    Returns
    -------
    Priced
    """
    b = block
    n_o = b.n_orders
    cap = b.arc_cap if arc_cap is None else np.asarray(arc_cap, dtype=np.int64)
    unit_cost = b.arc_cost + (b.arc_rows @ unit_price if unit_price.size else 0.0)
    fixed = (
        b.pair_cost
        + np.where(b.pair_price_row >= 0, ship_price[np.maximum(b.pair_price_row, 0)], 0.0)
        if ship_price.size
        else b.pair_cost.copy()
    )
    if pair_open is not None:
        fixed = np.where(pair_open, fixed, np.inf)

    sc = b.ship_complete
    bo = b.allow_backorder
    q_line = b.line_qty
    # Per-unit cost of a unit that is not shipped: the backorder cost, or (no backorders) just
    # above the rejection cost, so that a pattern with a shortfall never beats rejecting.
    short_cost = np.where(
        bo[b.line_order], b.line_backorder_cost, b.reject_cost[b.line_order] + 1.0
    ).astype(np.float64)
    all_short: FloatArray = np.bincount(
        b.line_order, weights=short_cost * q_line, minlength=n_o
    ).astype(np.float64)
    wait_cost = np.bincount(b.line_order, weights=b.line_backorder_cost * q_line, minlength=n_o)
    empty_value = np.where(bo, np.where(sc, wait_cost, all_short), b.reject_cost)

    arc_sc = sc[b.line_order[b.arc_line]]
    q_arc = q_line[b.arc_line]
    pair_sc = sc[b.pair_order]

    value = empty_value.copy()
    exact = np.ones(n_o, bool)
    choice = np.full(n_o, -1, np.int64)  # best single pair, or -1
    multi: dict[int, tuple[IntArray, IntArray]] = {}  # order -> (arcs, qty) of a chosen split

    # ---- ship-complete orders: one covering location or nothing ----------------------------
    full = arc_sc & (cap >= q_arc)
    n_full = np.bincount(b.arc_pair[full], minlength=len(b.pairs))
    n_lines_per = np.diff(b.line_start)
    covers = pair_sc & (n_full == n_lines_per[b.pair_order])
    sc_cost = np.bincount(
        b.arc_pair, weights=np.where(arc_sc, q_arc * unit_cost, 0.0), minlength=len(b.pairs)
    )
    pair_value = np.where(covers, fixed + sc_cost, np.inf)

    # ---- orders that may split: single locations for all orders at once ----------------------
    gain = np.where(arc_sc | (cap <= 0), 0.0, np.maximum(short_cost[b.arc_line] - unit_cost, 0.0))
    saving1 = np.bincount(b.arc_pair, weights=cap * gain, minlength=len(b.pairs))
    delta1 = fixed - saving1  # cost of the pair alone, relative to backordering everything
    pair_value = np.where(pair_sc, pair_value, all_short[b.pair_order] + delta1)
    best_single, arg = _segment_min(pair_value, b.pair_start)
    better = best_single < value - _TOL * np.maximum(1.0, np.abs(value))
    value = np.where(better, best_single, value)
    choice = np.where(better, arg, -1)

    # ---- splits: orders where a subset of useful locations might beat the best single --------
    useful = ~pair_sc & (delta1 < 0) & np.isfinite(fixed)
    useful_arc = useful[b.arc_pair] & (gain > 0)
    n_useful = np.bincount(b.pair_order[useful], minlength=n_o)
    # In a cheapest subset every location ships at least one unit on a useful arc.
    ua_line = np.bincount(b.arc_line[useful_arc], minlength=len(b.lines))
    unit_slots = np.bincount(b.line_order, weights=np.minimum(q_line, ua_line), minlength=n_o)
    j_max = np.minimum(np.minimum(b.max_locations, n_useful), unit_slots.astype(np.int64))
    j_max = np.where(sc, 0, j_max)
    candidates = np.flatnonzero(j_max >= 2)
    if len(candidates):
        _price_splits(
            b,
            candidates,
            cap,
            unit_cost,
            fixed,
            gain,
            useful,
            useful_arc,
            all_short,
            short_cost,
            j_max,
            value,
            exact,
            choice,
            multi,
            max_subsets,
            max_milp_orders,
            dynamic,
        )

    # ---- the chosen patterns as arc quantities -----------------------------------------------
    chosen_pair = np.full(len(b.pairs), False)
    single = choice >= 0
    chosen_pair[choice[single]] = True
    on_pair = chosen_pair[b.arc_pair]
    qty_single = np.where(arc_sc, q_arc, np.where(gain > 0, cap, 0)) * on_pair
    sel = np.flatnonzero(qty_single > 0)
    arcs_out = [sel]
    qty_out = [qty_single[sel]]
    served = single.copy()
    for o in sorted(multi):
        a, x = multi[o]
        arcs_out.append(a)
        qty_out.append(x)
        served[o] = True
    arc = np.concatenate(arcs_out).astype(np.int64)
    qty = np.concatenate(qty_out).astype(np.int64)
    order = np.argsort(arc, kind="stable")
    extra: dict[str, IntArray] = {}
    if alternatives > 0:
        ok = np.isfinite(pair_value) & (pair_value < empty_value[b.pair_order]) & ~chosen_pair
        cand = np.flatnonzero(ok)
        cand = cand[np.lexsort((pair_value[cand], b.pair_order[cand]))]
        po = b.pair_order[cand]
        first = np.searchsorted(po, po)
        cand = cand[np.arange(len(cand)) - first < alternatives]
        alt_of_pair = np.full(len(b.pairs), -1, np.int64)
        alt_of_pair[cand] = np.arange(len(cand))
        q_alt = np.where(arc_sc, q_arc, np.where(gain > 0, cap, 0))
        sel_arc = np.flatnonzero((alt_of_pair[b.arc_pair] >= 0) & (q_alt > 0))
        alt = alt_of_pair[b.arc_pair[sel_arc]]
        by_alt = np.argsort(alt, kind="stable")
        sel_arc = sel_arc[by_alt]
        extra = {
            "alt_order": b.pair_order[cand],
            "alt_ptr": np.concatenate([[0], np.cumsum(np.bincount(alt, minlength=len(cand)))]),
            "alt_arc": sel_arc.astype(np.int64),
            "alt_qty": q_alt[sel_arc].astype(np.int64),
        }
    return Priced(
        value=value,
        exact=exact,
        arc=arc[order],
        qty=qty[order],
        served=served,
        **extra,
    )


def _price_splits(
    b: OrderBlock,
    candidates: IntArray,
    cap: IntArray,
    unit_cost: FloatArray,
    fixed: FloatArray,
    gain: FloatArray,
    useful: BoolArray,
    useful_arc: BoolArray,
    base: FloatArray,
    short_cost: FloatArray,
    j_max: IntArray,
    value: FloatArray,
    exact: BoolArray,
    choice: IntArray,
    multi: dict[int, tuple[IntArray, IntArray]],
    max_subsets: int,
    max_milp_orders: int = 0,
    dynamic: bool = True,
) -> None:
    """Subsets of size >= 2 for the orders that might split (updates the arrays in place).

    A subset ``S`` costs ``base + sum_{p in S} fixed_p - saving(S)``.
    """
    n_o = b.n_orders
    is_cand = np.zeros(n_o, bool)
    is_cand[candidates] = True
    # Saving of all useful locations together: a greedy fill of each line in unit-cost order.
    ua = np.flatnonzero(useful_arc & is_cand[b.line_order[b.arc_line]])
    ua = ua[np.lexsort((unit_cost[ua], b.arc_line[ua]))]
    line_of = b.arc_line[ua]
    caps = cap[ua]
    cum = np.cumsum(caps)
    first = np.searchsorted(line_of, line_of)  # first position of the arc's line in ua
    before = cum - caps - np.where(first > 0, cum[np.maximum(first - 1, 0)], 0)
    fill = np.clip(b.line_qty[line_of] - before, 0, caps)
    save_line = np.bincount(line_of, weights=fill * gain[ua], minlength=len(b.lines))
    save_all = np.bincount(b.line_order, weights=save_line, minlength=n_o)

    up = np.flatnonzero(useful & is_cand[b.pair_order])  # useful pairs of candidate orders
    up_order = b.pair_order[up]
    top_j = int(j_max[candidates].max())
    smallest = _smallest_prefix(fixed[up], up_order, n_o, top_j)
    lower_2 = base + smallest[2] - save_all
    hard_any = is_cand & (lower_2 < value - _TOL * np.maximum(1.0, np.abs(value)))
    # Dominance: swapping a location for one at least as good on every line and no dearer
    # never hurts, so a location with j or more such dominators is in no needed j-subset.
    n_dom = np.full(len(up), np.iinfo(np.int64).max, np.int64)
    on = hard_any[up_order]
    n_dom[on] = _dominators(b, up[on], up_order[on], cap, gain, fixed)
    # Orders neither enumeration nor the dynamic programme can take are solved as small MILPs,
    # at most this many per call (a bound on the time; the rest keep the size-j bound).
    milp_left = max_milp_orders

    for j in range(2, top_j + 1):
        lower_j = base + smallest[j] - save_all
        # A subset of size j containing p costs at least base + f_p + (j-1 smallest) - saving.
        pair_lower = base[up_order] + fixed[up] + smallest[j - 1][up_order] - save_all[up_order]
        tol = _TOL * np.maximum(1.0, np.abs(value))
        hard = (j_max >= j) & (lower_j < value - tol)
        if not hard.any():
            break
        keep = (
            hard[up_order]
            & (j_max[up_order] >= j)
            & (n_dom < j)
            & (pair_lower < value[up_order] - tol[up_order])
        )
        n_slots = np.bincount(up_order[keep], minlength=n_o)
        too_many = _n_combinations(n_slots, j) > max_subsets
        enumerated = hard & (n_slots >= j) & ~too_many
        relaxed = np.flatnonzero(hard & too_many)
        if _STATS is not None:
            _STATS.append(
                (j, int(hard.sum()), int(enumerated.sum()), len(relaxed), int(keep.sum()))
            )
        if len(relaxed):
            # Too many subsets to enumerate: a dynamic programme over the order's locations
            # solves it exactly when its state space is small; else the size-j bound.
            for o in relaxed.tolist():
                mask = (up_order == o) & (n_dom < j_max[o])
                found = None
                if dynamic:
                    found = _dp_order(b, o, up[mask], cap, unit_cost, fixed, gain, short_cost)
                if found is None and milp_left > 0:
                    milp_left -= 1
                    found = _milp_order(b, o, up[mask], cap, fixed, gain, base)
                if found is None:
                    value[o] = min(value[o], lower_j[o])
                    exact[o] = False
                    continue
                total, arcs, qty = found
                if total < value[o] - _TOL * max(1.0, abs(value[o])):
                    value[o] = total
                    choice[o] = -1
                    if len(arcs):
                        multi[o] = (arcs, qty)
                    else:
                        multi.pop(o, None)
            j_max[relaxed] = 0
            hard[relaxed] = False
            enumerated[relaxed] = False
        orders = np.flatnonzero(enumerated)
        if len(orders) == 0:
            continue
        sel = keep & enumerated[up_order]
        _enumerate(
            b,
            orders,
            up[sel],
            up_order[sel],
            j,
            cap,
            unit_cost,
            fixed,
            gain,
            base,
            value,
            choice,
            multi,
        )


def _dp_order(
    b: OrderBlock,
    o: int,
    pairs: IntArray,
    cap: IntArray,
    unit_cost: FloatArray,
    fixed: FloatArray,
    gain: FloatArray,
    short_cost: FloatArray,
    max_states: int = 20_000,
    max_work: int = 3_000_000,
) -> tuple[float, IntArray, IntArray] | None:
    """Cheapest pattern of one order by dynamic programming over its locations.

    The state is the vector of units still to place per line; each location either stays
    closed or opens and ships any amount up to its caps. ``None`` when the state space or the
    work would exceed the limits, or when a split cap binds (the enumeration bound is used).
    """
    l0, l1 = int(b.line_start[o]), int(b.line_start[o + 1])
    q = b.line_qty[l0:l1]
    n_lines = l1 - l0
    if int(b.max_locations[o]) < len(pairs):
        return None
    arcs_all = np.arange(b.line_arc_start[l0], b.line_arc_start[l1])
    radix = (q + 1).astype(np.int64)
    n_states = int(np.prod(radix))
    if n_states > max_states:
        return None
    weights = np.concatenate([[1], np.cumprod(radix[:-1])]).astype(np.int64)
    rem = (np.arange(n_states)[:, None] // weights[None, :]) % radix[None, :]
    tables = []
    # The transitions depend on a location's caps only, and many locations of an order have
    # the same ones: computed once per distinct caps vector (the dynamic programme was half of
    # a pricing round at 10,000 orders).
    ships: dict[bytes, IntArray] = {}
    steps: dict[bytes, tuple[IntArray, IntArray, IntArray]] = {}
    work = 0
    arc_pair = b.arc_pair[arcs_all]
    for pair in pairs.tolist():
        a = arcs_all[arc_pair == pair]
        a = a[(gain[a] > 0) & (cap[a] > 0)]
        caps = np.zeros(n_lines, np.int64)
        costs = np.zeros(n_lines)
        arc_of = np.full(n_lines, -1, np.int64)
        k = b.arc_line[a] - l0
        caps[k] = cap[a]
        costs[k] = unit_cost[a]
        arc_of[k] = a
        key = caps.tobytes()
        if key not in ships:
            grids = np.meshgrid(*[np.arange(c + 1) for c in caps.tolist()], indexing="ij")
            ships[key] = np.stack(grids, -1).reshape(-1, n_lines)[1:]
        ship = ships[key]
        tables.append((float(fixed[pair]), ship @ costs, key, arc_of))
        work += len(ship) * n_states
        if work > max_work:
            return None
    value = np.full(n_states, np.inf)
    value[n_states - 1] = 0.0  # everything still to place
    moves = []
    for f, ship_cost, key, _ in tables:
        ship = ships[key]
        if key not in steps:
            # (ship vectors x states): ship w from state s lands in state s - index(w).
            valid = np.all(rem[None, :, :] >= ship[:, None, :], axis=2)
            w_idx, s_idx = np.nonzero(valid)
            steps[key] = (w_idx, s_idx, s_idx - (ship @ weights)[w_idx])
        w_idx, s_idx, dest = steps[key]
        landed = np.full((len(ship), n_states), np.inf)
        landed[w_idx, dest] = value[s_idx] + f + ship_cost[w_idx]
        best_w = np.argmin(landed, axis=0)
        best = landed[best_w, np.arange(n_states)]
        better = best < value
        move = np.where(better, best_w, -1)
        value = np.where(better, best, value)
        moves.append(move)
    final = value + rem @ short_cost[l0:l1]
    state = int(np.argmin(final))
    total = float(final[state])
    if not np.isfinite(total):
        return None
    arcs_out: list[int] = []
    qty_out: list[int] = []
    for t in range(len(tables) - 1, -1, -1):
        w = int(moves[t][state])
        if w < 0:
            continue
        _, _, key, arc_of = tables[t]
        shipped = ships[key][w]
        for k in np.flatnonzero(shipped).tolist():
            arcs_out.append(int(arc_of[k]))
            qty_out.append(int(shipped[k]))
        state += int(shipped @ weights)
    order = np.argsort(arcs_out)
    return total, np.asarray(arcs_out, np.int64)[order], np.asarray(qty_out, np.int64)[order]


def _milp_order(
    b: OrderBlock,
    o: int,
    pairs: IntArray,
    cap: IntArray,
    fixed: FloatArray,
    gain: FloatArray,
    base: FloatArray,
) -> tuple[float, IntArray, IntArray] | None:
    """Cheapest pattern of one order as a small MILP over its candidate locations.

    Binary ``y_p`` opens location ``p``, ``x_a`` ships units on arc ``a`` (up to its cap, only
    from an open location); each line ships at most its quantity, at most ``max_locations``
    locations open. The cost is ``base - sum gain_a x_a + sum fixed_p y_p`` (the same
    decomposition the enumeration uses), so the answer is exact over the same candidates.
    ``None`` when HiGHS does not prove optimality within its time limit (the caller keeps its
    bound; the orders that reach this point are a handful per 10,000, solved in milliseconds).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    l0, l1 = int(b.line_start[o]), int(b.line_start[o + 1])
    arcs_all = np.arange(b.line_arc_start[l0], b.line_arc_start[l1])
    pos = np.full(len(b.pairs), -1, np.int64)
    pos[pairs] = np.arange(len(pairs))
    arcs = arcs_all[(pos[b.arc_pair[arcs_all]] >= 0) & (gain[arcs_all] > 0) & (cap[arcs_all] > 0)]
    n_y, n_x = len(pairs), len(arcs)
    if n_x == 0:
        return None
    c = np.concatenate([fixed[pairs], -gain[arcs]])
    n_lines = l1 - l0
    xi = n_y + np.arange(n_x)
    link = n_lines + np.arange(n_x)
    # Rows: one per line (units shipped <= quantity), one per arc (x_a - cap_a y_p <= 0), and
    # the split cap (sum of y <= max_locations).
    a = sp.csr_matrix(
        (
            np.concatenate(
                [np.ones(n_x), np.ones(n_x), -cap[arcs].astype(np.float64), np.ones(n_y)]
            ),
            (
                np.concatenate([b.arc_line[arcs] - l0, link, link, np.full(n_y, n_lines + n_x)]),
                np.concatenate([xi, xi, pos[b.arc_pair[arcs]], np.arange(n_y)]),
            ),
        ),
        shape=(n_lines + n_x + 1, n_y + n_x),
    )
    upper = np.concatenate(
        [b.line_qty[l0:l1].astype(np.float64), np.zeros(n_x), [float(b.max_locations[o])]]
    )
    with _quiet_native_stdout():  # HiGHS prints some MIP diagnostics natively
        res = milp(
            c,
            integrality=np.concatenate([np.ones(n_y), np.ones(n_x)]),
            bounds=Bounds(
                np.zeros(n_y + n_x), np.concatenate([np.ones(n_y), cap[arcs].astype(np.float64)])
            ),
            constraints=LinearConstraint(a, -np.inf, upper),
            options={"disp": False, "mip_rel_gap": 0.0, "time_limit": 10.0},
        )
    if res.status != 0 or res.x is None:
        return None
    x = np.rint(res.x[n_y:]).astype(np.int64)
    used = x > 0
    opened = np.zeros(n_y, bool)
    opened[pos[b.arc_pair[arcs[used]]]] = True
    # Priced from the rounded units and the locations they actually use (an open location
    # that ships nothing is not paid for).
    total = float(base[o] + fixed[pairs][opened].sum() - gain[arcs] @ x)
    return total, arcs[used].astype(np.int64), x[used]


def _dominators(
    b: OrderBlock,
    pairs: IntArray,
    pair_order: IntArray,
    cap: IntArray,
    gain: FloatArray,
    fixed: FloatArray,
) -> IntArray:
    """For each pair, how many pairs of the same order dominate it.

    ``a`` dominates ``c`` when ``a`` costs no more to open, and on every line saves at least as
    much per unit with at least the cap; among identical pairs the lower index dominates.
    """
    n_o = b.n_orders
    out = np.zeros(len(pairs), np.int64)
    if len(pairs) == 0:
        return out
    starts = np.searchsorted(pair_order, np.arange(n_o + 1))
    slot_of_pair = np.full(len(b.pairs), -1, np.int64)
    slot_of_pair[pairs] = np.arange(len(pairs)) - starts[pair_order]
    u = np.diff(starts)
    n_lines = np.diff(b.line_start)
    orders = np.flatnonzero(u > 0)
    shapes = np.stack([u[orders], n_lines[orders]], axis=1)
    for u_g, l_g in np.unique(shapes, axis=0).tolist():
        group_all = orders[(u[orders] == u_g) & (n_lines[orders] == l_g)]
        chunk = max(1, _CHUNK // max(u_g * u_g * l_g, 1))
        for c0 in range(0, len(group_all), chunk):
            group = group_all[c0 : c0 + chunk]
            table_arc, _, _ = _slot_table(b, group, u_g, l_g, slot_of_pair)
            has = table_arc >= 0
            safe = np.where(has, table_arc, 0)
            g_gain = np.where(has, gain[safe], 0.0)  # (g, L, u)
            g_cap = np.where(has & (g_gain > 0), cap[safe], 0)
            slot_pairs = pairs[starts[group][:, None] + np.arange(u_g)[None, :]]  # (g, u)
            f = fixed[slot_pairs]
            # (g, a, c): does a dominate c?
            ge_gain = (g_gain[:, :, :, None] >= g_gain[:, :, None, :]).all(axis=1)
            ge_cap = (g_cap[:, :, :, None] >= g_cap[:, :, None, :]).all(axis=1)
            le_f = f[:, :, None] <= f[:, None, :]
            weak = ge_gain & ge_cap & le_f
            strict = (
                (g_gain[:, :, :, None] > g_gain[:, :, None, :]).any(axis=1)
                | (g_cap[:, :, :, None] > g_cap[:, :, None, :]).any(axis=1)
                | (f[:, :, None] < f[:, None, :])
            )
            lower_index = np.arange(u_g)[:, None] < np.arange(u_g)[None, :]
            dom = weak & (strict | lower_index[None, :, :])
            dom &= ~np.eye(u_g, dtype=bool)[None, :, :]
            counts = dom.sum(axis=1)  # (g, c)
            out[starts[group][:, None] + np.arange(u_g)[None, :]] = counts
    return out


def _slot_table(
    b: OrderBlock, group: IntArray, u: int, n_lines: int, slot_of_pair: IntArray
) -> tuple[IntArray, IntArray, BoolArray]:
    """Dense (order, line, slot) table of arc indices (-1 where none).

    Orders with fewer than ``n_lines`` lines get padding lines (no arcs). Also returns the line
    indices (g, L; padding lines repeat a real one) and which of them are real.
    """
    g = len(group)
    count = b.line_start[group + 1] - b.line_start[group]
    real = np.arange(n_lines)[None, :] < count[:, None]  # (g, L)
    lines = b.line_start[group][:, None] + np.minimum(
        np.arange(n_lines)[None, :], count[:, None] - 1
    )
    flat_lines = lines[real]
    row_of_line = np.flatnonzero(real.ravel())  # row in the (g*L) table of each real line
    arcs = _lines_arcs(b, flat_lines)
    slot = slot_of_pair[b.arc_pair[arcs]]
    ok = slot >= 0
    arcs, slot = arcs[ok], slot[ok]
    row = row_of_line[np.searchsorted(flat_lines, b.arc_line[arcs])]
    table_arc = np.full((g * n_lines, u), -1, np.int64)
    table_arc[row, slot] = arcs
    return table_arc.reshape(g, n_lines, u), lines, real


def _enumerate(
    b: OrderBlock,
    orders: IntArray,
    cand_pairs: IntArray,
    cand_order: IntArray,
    j: int,
    cap: IntArray,
    unit_cost: FloatArray,
    fixed: FloatArray,
    gain: FloatArray,
    base: FloatArray,
    value: FloatArray,
    choice: IntArray,
    multi: dict[int, tuple[IntArray, IntArray]],
) -> None:
    """Evaluate every ``j``-subset of the candidate locations of ``orders`` (in place)."""
    n_o = b.n_orders
    starts = np.searchsorted(cand_order, np.arange(n_o + 1))
    slot_of_pair = np.full(len(b.pairs), -1, np.int64)
    slot_of_pair[cand_pairs] = np.arange(len(cand_pairs)) - starts[cand_order]
    u = np.diff(starts)
    n_lines = np.diff(b.line_start)
    # Orders are grouped by (slots, lines); slot counts are rounded up to a few sizes (padding
    # slots have no arcs and an infinite parcel cost) to keep the number of groups small.
    # Padding multiplies the subsets by C(u_pad, j) / C(u, j): worth it for small j only.
    u_pad = _BUCKETS[np.searchsorted(_BUCKETS, u)] if j <= 3 else u
    l_pad = _LINE_BUCKETS[np.searchsorted(_LINE_BUCKETS, n_lines)]
    shapes = np.stack([u_pad[orders], l_pad[orders]], axis=1)
    for u_g, l_g in np.unique(shapes, axis=0).tolist():
        group = orders[(u_pad[orders] == u_g) & (l_pad[orders] == l_g)]
        combos = _combinations(u_g, j)
        per_order = len(combos) * l_g * j
        chunk = max(1, _CHUNK // max(per_order, 1))
        for c0 in range(0, len(group), chunk):
            _evaluate_group(
                b,
                group[c0 : c0 + chunk],
                u_g,
                l_g,
                combos,
                cand_pairs,
                starts,
                slot_of_pair,
                cap,
                unit_cost,
                fixed,
                gain,
                base,
                value,
                choice,
                multi,
            )


def _evaluate_group(
    b: OrderBlock,
    group: IntArray,
    u: int,
    n_lines: int,
    combos: IntArray,
    cand_pairs: IntArray,
    starts: IntArray,
    slot_of_pair: IntArray,
    cap: IntArray,
    unit_cost: FloatArray,
    fixed: FloatArray,
    gain: FloatArray,
    base: FloatArray,
    value: FloatArray,
    choice: IntArray,
    multi: dict[int, tuple[IntArray, IntArray]],
) -> None:
    """Subsets of ``u`` candidate locations for orders of ``n_lines`` lines (in place)."""
    g = len(group)
    table_arc, lines, real_line = _slot_table(b, group, u, n_lines, slot_of_pair)
    has = table_arc >= 0
    safe = np.where(has, table_arc, 0)
    t_cost = np.where(has, unit_cost[safe], np.inf)
    t_cap = np.where(has, cap[safe], 0)
    t_gain = np.where(has, gain[safe], 0.0)
    q = np.where(real_line, b.line_qty[lines], 0)  # (g, L)
    width = np.diff(starts)[group]
    real = np.arange(u)[None, :] < width[:, None]  # (g, u): padding slots are not real
    slot_pairs = cand_pairs[np.where(real, starts[group][:, None] + np.arange(u)[None, :], 0)]
    f = np.where(real, fixed[slot_pairs], np.inf)

    # (g, L, C, j): each line's arcs in each subset, filled in unit-cost order. For a few
    # members, the units placed before a member are summed over the members that sort before
    # it (cheaper, or as cheap and earlier), which avoids a sort along a tiny axis.
    j = combos.shape[1]
    c_cost = t_cost[:, :, combos]
    c_cap = t_cap[:, :, combos]
    c_gain = t_gain[:, :, combos]
    if j <= 4:
        idx = np.arange(j)
        earlier = idx[None, :] < idx[:, None]  # [i, m]: m earlier than i
        ci = c_cost[..., :, None]
        cm = c_cost[..., None, :]
        ahead = (cm < ci) | ((cm == ci) & earlier)
        before = (ahead * c_cap[..., None, :]).sum(-1)
        fill = np.clip(q[:, :, None, None] - before, 0, c_cap)
    else:
        order = np.argsort(c_cost, axis=-1, kind="stable")
        s_cap = np.take_along_axis(c_cap, order, -1)
        cum = np.cumsum(s_cap, axis=-1)
        s_fill = np.clip(q[:, :, None, None] - (cum - s_cap), 0, s_cap)
        fill = np.take_along_axis(s_fill, np.argsort(order, axis=-1, kind="stable"), -1)
    fill = np.where(c_gain > 0, fill, 0)
    saving = (fill * c_gain).sum(axis=(1, 3))  # (g, C)
    total = base[group][:, None] + f[:, combos].sum(-1) - saving  # (g, C)
    best_c = np.argmin(total, axis=1)
    best = total[np.arange(g), best_c]
    tol = _TOL * np.maximum(1.0, np.abs(value[group]))
    improved = np.flatnonzero(best < value[group] - tol)
    for i in improved.tolist():
        o = int(group[i])
        c = int(best_c[i])
        members = combos[c]
        arcs_ij = table_arc[i][:, members]  # (L, j)
        x = fill[i, :, c, :]
        sel = (arcs_ij >= 0) & (x > 0)
        value[o] = float(best[i])
        choice[o] = -1
        multi[o] = (arcs_ij[sel].astype(np.int64), x[sel].astype(np.int64))


def _lines_arcs(b: OrderBlock, lines: IntArray) -> IntArray:
    """Local arcs of the given local lines."""
    return _expand(b.line_arc_start[lines], b.line_arc_start[lines + 1])
