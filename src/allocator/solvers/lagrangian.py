"""The coupling rows of the sourcing model and the Lagrangian dual that prices them.

Only a few kinds of row tie orders together: the stock of each (location, SKU), the unit and
shipment capacity of each location, and the side limits of a rule set. :class:`Coupling` holds
them as two incidence structures:

* **unit rows** (stock, unit capacity, side limits): every unit shipped on an arc counts once in
  each unit row the arc belongs to (a sparse 0/1 matrix, arcs x rows);
* **shipment rows** (shipment capacity): every parcel (pair used) counts once in its location's
  row.

Rows that no plan can break (their total possible use is within the bound) are left out: their
price would be zero anyway.

With prices ``u >= 0`` on unit rows and ``v >= 0`` on shipment rows the dual function is

``L(u, v) = sum_o Z_o(u, v) - u . unit_bound - v . ship_bound``

where ``Z_o`` is order ``o``'s cheapest pattern at priced costs (:mod:`._pricing`). For any
feasible plan ``x``, ``cost(x) >= cost(x) + u (A x - b) >= L(u, v)``, so every evaluation is a
certified lower bound on the optimum; with an inexact pricing value (a lower bound on ``Z_o``)
the argument is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from allocator.problem import Problem

__all__ = ["Coupling", "coupling_rows"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Coupling:
    """The rows that couple orders (see the module docstring).

    Attributes
    ----------
    arc_rows
        (arcs x unit rows) 0/1 incidence.
    unit_bound
        Right-hand side of each unit row.
    unit_kind
        ``0`` stock, ``1`` unit capacity, ``2`` side limit, per unit row.
    unit_location
        Location of each unit row (``-1`` for side limits).
    unit_sku
        SKU of each stock row (``-1`` otherwise).
    pair_ship_row
        Shipment row of each pair (``-1`` where its location has no binding shipment capacity).
    ship_bound
        Right-hand side of each shipment row.
    ship_location
        Location of each shipment row.
    """

    arc_rows: sp.csr_matrix
    unit_bound: FloatArray
    unit_kind: IntArray
    unit_location: IntArray
    unit_sku: IntArray
    pair_ship_row: IntArray
    ship_bound: FloatArray
    ship_location: IntArray

    @property
    def n_unit(self) -> int:
        return len(self.unit_bound)

    @property
    def n_ship(self) -> int:
        return len(self.ship_bound)

    def unit_usage(self, arc: IntArray, qty: IntArray) -> FloatArray:
        """Units counted in each unit row by sparse arc quantities."""
        if not self.n_unit or len(arc) == 0:
            return np.zeros(self.n_unit)
        sub = self.arc_rows[arc]
        return np.asarray(sub.T @ qty.astype(np.float64), dtype=np.float64)

    def ship_usage(self, pairs: IntArray) -> FloatArray:
        """Shipments counted in each shipment row by the used pairs."""
        rows = self.pair_ship_row[pairs]
        rows = rows[rows >= 0]
        return np.bincount(rows, minlength=self.n_ship).astype(np.float64)


def coupling_rows(problem: Problem, scale: float = 1.0) -> Coupling:
    """The coupling rows of ``problem`` that some plan could break.

    Parameters
    ----------
    problem
        The compiled problem.
    scale
        Multiplies every row's bound (a sample of the orders facing its share of the stock and
        capacities, for estimating prices); bounds may then be fractional.

    Returns
    -------
    Coupling
    """
    p = problem
    n_sku = p.atp.shape[1]
    # Each kind of row adds at most one entry per arc (side limits may add several), in row
    # order, so the arcs x rows matrix is written straight into CSR: counts per arc, then each
    # kind's entries at the next free slot of their arc. Built through COO and SciPy's
    # conversion, the whole function had taken 2.0 s at 9.4 million arcs (4.2 s as the first
    # work of a run), this way 0.9 s (2.4 s).
    arc_blocks: list[tuple[IntArray, IntArray]] = []  # (arcs, rows) per kind, rows ascending
    bound: list[FloatArray] = []
    kind: list[IntArray] = []
    where: list[IntArray] = []
    skus: list[IntArray] = []
    n_rows = 0
    cap = p.arc_cap.astype(np.float64)

    # Stock per (location, SKU), where the arcs could take more than the ATP.
    key = p.arc_location * n_sku + p.arc_sku()
    if p.n_arcs:
        # Counted over the dense (location, SKU) grid, which the ATP array already spans: no
        # sort of the arcs' keys (the whole function 3.8-5.6 s -> 0.6-1.2 s at 9.4 million arcs).
        demand = np.bincount(key, weights=cap, minlength=p.atp.size)
        binding_key = demand > scale * p.atp.ravel()
        uniq = np.flatnonzero(binding_key)
        row_of = np.cumsum(binding_key) - 1
        sel = np.flatnonzero(binding_key[key])
        arc_blocks.append((sel, n_rows + row_of[key[sel]]))
        bound.append(scale * p.atp.ravel()[uniq].astype(np.float64))
        kind.append(np.zeros(len(uniq), np.int64))
        where.append((uniq // n_sku).astype(np.int64))
        skus.append((uniq % n_sku).astype(np.int64))
        n_rows += len(uniq)
    del key

    # Units per location.
    loc_demand = np.bincount(p.arc_location, weights=cap, minlength=p.n_locations)
    capped = np.flatnonzero(
        np.isfinite(p.location_capacity_units) & (loc_demand > scale * p.location_capacity_units)
    )
    if len(capped):
        row_of_loc = np.full(p.n_locations, -1, np.int64)
        row_of_loc[capped] = n_rows + np.arange(len(capped))
        r = row_of_loc[p.arc_location]
        sel = np.flatnonzero(r >= 0)
        arc_blocks.append((sel, r[sel]))
        bound.append(scale * p.location_capacity_units[capped].astype(np.float64))
        kind.append(np.ones(len(capped), np.int64))
        where.append(capped.astype(np.int64))
        skus.append(np.full(len(capped), -1, np.int64))
        n_rows += len(capped)

    # Side limits: an arc may count in several (stably sorted by arc, rows stay ascending).
    if p.n_limits:
        owner = np.repeat(np.arange(p.n_limits), np.diff(p.limit_start))
        by_arc = np.argsort(p.limit_arcs, kind="stable")
        arc_blocks.append((p.limit_arcs[by_arc].astype(np.int64), n_rows + owner[by_arc]))
        bound.append(scale * p.limit_bound.astype(np.float64))
        kind.append(np.full(p.n_limits, 2, np.int64))
        where.append(np.full(p.n_limits, -1, np.int64))
        skus.append(np.full(p.n_limits, -1, np.int64))
        n_rows += p.n_limits

    arc_rows = _arcs_by_rows(p.n_arcs, n_rows, arc_blocks)

    # Shipments per location.
    loc_pairs = np.bincount(p.pair_location, minlength=p.n_locations)
    ship_capped = np.flatnonzero(
        np.isfinite(p.location_capacity_shipments)
        & (loc_pairs > scale * p.location_capacity_shipments)
    )
    ship_row_of_loc = np.full(p.n_locations, -1, np.int64)
    ship_row_of_loc[ship_capped] = np.arange(len(ship_capped))
    return Coupling(
        arc_rows=arc_rows,
        unit_bound=np.concatenate(bound) if bound else np.zeros(0),
        unit_kind=np.concatenate(kind) if kind else np.zeros(0, np.int64),
        unit_location=np.concatenate(where) if where else np.zeros(0, np.int64),
        unit_sku=np.concatenate(skus) if skus else np.zeros(0, np.int64),
        pair_ship_row=ship_row_of_loc[p.pair_location],
        ship_bound=scale * p.location_capacity_shipments[ship_capped].astype(np.float64),
        ship_location=ship_capped.astype(np.int64),
    )


def _arcs_by_rows(
    n_arcs: int, n_rows: int, blocks: list[tuple[IntArray, IntArray]]
) -> sp.csr_matrix:
    """The (arcs x rows) 0/1 CSR matrix with the entries ``blocks`` lists.

    Each block holds (arc, row) entries sorted by arc, an arc's entries in ascending rows, and
    its rows above every row of the blocks before it: slots are then assigned without a sort.
    """
    # An arc's entries in a block are consecutive; their rank among them is 0 in the blocks
    # where every arc appears once (stock, unit capacity).
    ranks: list[IntArray | None] = []
    counts = np.zeros(n_arcs, np.int64)
    for arcs, _ in blocks:
        if len(arcs) and np.any(arcs[1:] == arcs[:-1]):
            first = np.flatnonzero(np.r_[True, arcs[1:] != arcs[:-1]])
            ranks.append(np.arange(len(arcs)) - np.repeat(first, np.diff(np.r_[first, len(arcs)])))
            counts += np.bincount(arcs, minlength=n_arcs)
        else:
            ranks.append(None)
            counts[arcs] += 1
    indptr = np.zeros(n_arcs + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    index_type = np.int32 if max(nnz, n_rows) < np.iinfo(np.int32).max else np.int64
    indices = np.empty(nnz, index_type)
    filled = indptr[:-1].copy()
    for (arcs, rows), rank in zip(blocks, ranks, strict=True):
        if rank is None:
            indices[filled[arcs]] = rows
            filled[arcs] += 1
        else:
            indices[filled[arcs] + rank] = rows
            filled += np.bincount(arcs, minlength=n_arcs)
    matrix = sp.csr_matrix(
        (np.ones(nnz), indices, indptr.astype(index_type)), shape=(n_arcs, n_rows)
    )
    matrix.has_sorted_indices = True
    matrix.sum_duplicates()
    return matrix
