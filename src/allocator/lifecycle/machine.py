"""The order state machine, as data: states, events, and a table of allowed transitions.

Every transition is a row of :data:`TRANSITIONS`: ``(state, event) -> candidate next states``.
Which candidate is taken depends on the order's quantities *after* the event (how many units are
allocated, backordered, shipped, delivered, cancelled, returned): each state has a guard in
:data:`GUARDS`, and the first candidate whose guard holds is the next state. An event with no row
for the current state, or whose candidates all fail their guards, is refused with
:class:`OrderTransitionError` (a :class:`~allocator.errors.InvalidTransition`) and nothing
changes.

The table is checked by mypy, costs a dictionary lookup and a few integer comparisons per
transition, and draws itself: :func:`mermaid` renders it as the diagram in
``docs/lifecycle.md`` (a test keeps the two equal).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from allocator.errors import InvalidTransition

__all__ = [
    "GUARDS",
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "Guard",
    "OrderTransitionError",
    "Quantities",
    "State",
    "allowed_events",
    "guard_table",
    "mermaid",
    "next_state",
]


class State(enum.StrEnum):
    """Where an order is in its life."""

    CREATED = "created"
    """Captured; nothing sourced yet."""
    ALLOCATED = "allocated"
    """Every open unit is reserved at a location."""
    PARTIALLY_ALLOCATED = "partially_allocated"
    """Some units are reserved, the others wait for stock (backordered)."""
    BACKORDERED = "backordered"
    """Nothing is reserved; every open unit waits for stock."""
    RELEASED = "released"
    """Every reserved unit was released to its location for fulfilment."""
    PICKED = "picked"
    """Every reserved unit was picked at its location."""
    PARTIALLY_SHIPPED = "partially_shipped"
    """Some units left; others are still to ship."""
    SHIPPED = "shipped"
    """Every open unit left (some may be delivered)."""
    DELIVERED = "delivered"
    """Every open unit was delivered."""
    CANCELLED = "cancelled"
    """Every unit was cancelled before it shipped."""
    RETURN_REQUESTED = "return_requested"
    """The customer asked to send delivered units back."""
    RETURNED = "returned"
    """Delivered units came back (restocked or written off)."""
    EXCHANGED = "exchanged"
    """Delivered units came back and a replacement order was placed."""
    REJECTED = "rejected"
    """The order cannot be served under its constraints (no backorders allowed)."""


class Event(enum.StrEnum):
    """What can happen to an order."""

    CAPTURE = "capture"
    ALLOCATE = "allocate"
    REJECT = "reject"
    RELEASE = "release"
    PICK = "pick"
    SHIP = "ship"
    DELIVER = "deliver"
    CANCEL = "cancel"
    CHANGE_QUANTITY = "change_quantity"
    LOCATION_REJECT = "location_reject"
    FILL_BACKORDER = "fill_backorder"
    REQUEST_RETURN = "request_return"
    RETURN = "return"
    EXCHANGE = "exchange"


@dataclass(frozen=True, slots=True)
class Quantities:
    """Units of an order (all lines together) in each bucket.

    ``allocated`` counts units reserved and not yet shipped; ``released`` and ``picked`` are the
    parts of them released to, and picked at, their locations. ``live`` units are those not
    cancelled; ``pending`` ones are live but neither reserved, backordered nor shipped.
    """

    ordered: int = 0
    cancelled: int = 0
    allocated: int = 0
    released: int = 0
    picked: int = 0
    backordered: int = 0
    shipped: int = 0
    delivered: int = 0
    return_requested: int = 0
    returned: int = 0

    @property
    def live(self) -> int:
        """Units not cancelled."""
        return self.ordered - self.cancelled

    @property
    def pending(self) -> int:
        """Live units neither reserved, backordered nor shipped."""
        return self.live - self.allocated - self.backordered - self.shipped

    @property
    def returnable(self) -> int:
        """Delivered units neither returned nor already asked back."""
        return self.delivered - self.returned - self.return_requested


@dataclass(frozen=True, slots=True)
class Guard:
    """The condition under which an order's quantities fit a state."""

    text: str
    test: Callable[[Quantities], bool]


def _unshipped_reserved(q: Quantities) -> bool:
    return q.shipped == 0 and q.allocated > 0


#: The guard of each state: when the quantities after an event fit it.
GUARDS: Mapping[State, Guard] = MappingProxyType(
    {
        State.CREATED: Guard(
            "nothing reserved, backordered or shipped",
            lambda q: q.live > 0 and q.pending == q.live,
        ),
        State.ALLOCATED: Guard(
            "all open units reserved",
            lambda q: _unshipped_reserved(q) and q.backordered == 0 and q.pending == 0,
        ),
        State.PARTIALLY_ALLOCATED: Guard(
            "some units reserved, some waiting",
            lambda q: _unshipped_reserved(q) and q.backordered + q.pending > 0,
        ),
        State.BACKORDERED: Guard(
            "nothing reserved, units waiting",
            lambda q: q.shipped == 0 and q.allocated == 0 and q.backordered > 0,
        ),
        State.RELEASED: Guard(
            "every reserved unit released",
            lambda q: _unshipped_reserved(q) and q.released == q.allocated,
        ),
        State.PICKED: Guard(
            "every reserved unit picked",
            lambda q: _unshipped_reserved(q) and q.picked == q.allocated,
        ),
        State.PARTIALLY_SHIPPED: Guard(
            "some units shipped, others open",
            lambda q: 0 < q.shipped < q.live,
        ),
        State.SHIPPED: Guard(
            "every open unit shipped",
            lambda q: q.shipped == q.live > 0 and q.delivered < q.shipped,
        ),
        State.DELIVERED: Guard(
            "every open unit delivered",
            lambda q: (
                q.delivered == q.live > 0
                and q.shipped == q.live
                and q.return_requested == 0
                and q.returned == 0
            ),
        ),
        State.CANCELLED: Guard("every unit cancelled", lambda q: q.live == 0),
        State.RETURN_REQUESTED: Guard("units asked back", lambda q: q.return_requested > 0),
        State.RETURNED: Guard(
            "units returned, none asked back",
            lambda q: q.returned > 0 and q.return_requested == 0,
        ),
        State.EXCHANGED: Guard(
            "units returned, none asked back",
            lambda q: q.returned > 0 and q.return_requested == 0,
        ),
        State.REJECTED: Guard("always", lambda q: True),
    }
)

#: States no event leaves.
TERMINAL: frozenset[State] = frozenset({State.CANCELLED, State.REJECTED})

_S = State
_E = Event
_SOURCED = (_S.ALLOCATED, _S.PARTIALLY_ALLOCATED, _S.BACKORDERED)
_RESERVED = (_S.ALLOCATED, _S.PARTIALLY_ALLOCATED)
_AFTER_SHIP = (_S.DELIVERED, _S.SHIPPED, _S.PARTIALLY_SHIPPED)
_RETURN_FROM = (_S.DELIVERED, _S.RETURNED, _S.EXCHANGED)


def _rows() -> dict[tuple[State, Event], tuple[State, ...]]:
    rows: dict[tuple[State, Event], tuple[State, ...]] = {
        (_S.CREATED, _E.ALLOCATE): _SOURCED,
        (_S.CREATED, _E.REJECT): (_S.REJECTED,),
        (_S.CREATED, _E.CANCEL): (_S.CANCELLED, _S.CREATED),
        (_S.CREATED, _E.CHANGE_QUANTITY): (_S.CREATED,),
        (_S.RELEASED, _E.PICK): (_S.PICKED, _S.RELEASED),
        (_S.RELEASED, _E.CANCEL): (_S.CANCELLED, _S.PICKED, _S.RELEASED),
        (_S.PICKED, _E.CANCEL): (_S.CANCELLED, _S.PICKED),
        (_S.PARTIALLY_SHIPPED, _E.CANCEL): _AFTER_SHIP,
        (_S.PARTIALLY_SHIPPED, _E.DELIVER): _AFTER_SHIP,
        (_S.SHIPPED, _E.DELIVER): (_S.DELIVERED, _S.SHIPPED),
        (_S.RETURN_REQUESTED, _E.RETURN): (_S.RETURNED, _S.RETURN_REQUESTED),
        (_S.RETURN_REQUESTED, _E.REQUEST_RETURN): (_S.RETURN_REQUESTED,),
        (_S.RETURN_REQUESTED, _E.EXCHANGE): (_S.EXCHANGED, _S.RETURN_REQUESTED),
    }
    for state in _SOURCED:
        rows[(state, _E.CANCEL)] = (_S.CANCELLED, *_SOURCED)
        rows[(state, _E.CHANGE_QUANTITY)] = _SOURCED
    rows[(_S.BACKORDERED, _E.CANCEL)] = (_S.CANCELLED, _S.BACKORDERED)
    for state in (_S.PARTIALLY_ALLOCATED, _S.BACKORDERED):
        rows[(state, _E.FILL_BACKORDER)] = _SOURCED
    for state in _RESERVED:
        rows[(state, _E.RELEASE)] = (_S.RELEASED, state)
        rows[(state, _E.LOCATION_REJECT)] = (_S.CANCELLED, *_SOURCED)
    for state in (_S.RELEASED, _S.PICKED):
        rows[(state, _E.LOCATION_REJECT)] = (_S.CANCELLED, _S.PICKED, _S.RELEASED, *_SOURCED)
        rows[(state, _E.FILL_BACKORDER)] = _RESERVED
    for state in (*_RESERVED, _S.RELEASED, _S.PICKED, _S.PARTIALLY_SHIPPED):
        rows[(state, _E.SHIP)] = (_S.SHIPPED, _S.PARTIALLY_SHIPPED)
    rows[(_S.PARTIALLY_SHIPPED, _E.RELEASE)] = (_S.PARTIALLY_SHIPPED,)
    rows[(_S.PARTIALLY_SHIPPED, _E.PICK)] = (_S.PARTIALLY_SHIPPED,)
    rows[(_S.PARTIALLY_SHIPPED, _E.LOCATION_REJECT)] = _AFTER_SHIP
    rows[(_S.PARTIALLY_SHIPPED, _E.FILL_BACKORDER)] = (_S.PARTIALLY_SHIPPED,)
    for state in _RETURN_FROM:
        rows[(state, _E.REQUEST_RETURN)] = (_S.RETURN_REQUESTED,)
        rows[(state, _E.RETURN)] = (_S.RETURNED,)
        rows[(state, _E.EXCHANGE)] = (_S.EXCHANGED,)
    return rows


#: ``(state, event) -> candidate next states``, tried in order against :data:`GUARDS`.
TRANSITIONS: Mapping[tuple[State, Event], tuple[State, ...]] = MappingProxyType(_rows())


class OrderTransitionError(InvalidTransition):
    """An event that the order's state does not allow; nothing was changed.

    Attributes
    ----------
    state
        The order's state.
    event
        The refused event.
    order_id
        The order, where known.
    """

    def __init__(self, state: State, event: Event, order_id: str | None = None, why: str = ""):
        self.state = state
        self.event = event
        self.order_id = order_id
        who = f"order {order_id!r}" if order_id else "an order"
        text = f"cannot {event.value} {who} in state {state.value!r}"
        super().__init__(f"{text}: {why}" if why else text)


def allowed_events(state: State) -> tuple[Event, ...]:
    """Events that have a row for ``state`` (their guards may still refuse them)."""
    return tuple(e for e in Event if (state, e) in TRANSITIONS)


def next_state(state: State, event: Event, after: Quantities, order_id: str | None = None) -> State:
    """The state an order moves to when ``event`` leaves it with quantities ``after``.

    Raises
    ------
    OrderTransitionError
        When the table has no row for ``(state, event)`` or no candidate's guard holds.
    """
    candidates = TRANSITIONS.get((state, event))
    if candidates is None:
        raise OrderTransitionError(state, event, order_id)
    for target in candidates:
        if GUARDS[target].test(after):
            return target
    raise OrderTransitionError(
        state,
        event,
        order_id,
        "the quantities fit none of " + ", ".join(t.value for t in candidates),
    )


def mermaid() -> str:
    """The transition table as a mermaid state diagram (edges labelled with their events)."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (source, event), targets in TRANSITIONS.items():
        for target in targets:
            edges.setdefault((source, target), []).append(event.value)
    order = list(State)
    lines = ["stateDiagram-v2", f"    [*] --> {State.CREATED.value}: {Event.CAPTURE.value}"]
    for (source, target), events in sorted(
        edges.items(), key=lambda item: (order.index(item[0][0]), order.index(item[0][1]))
    ):
        rank = {event: i for i, event in enumerate(Event)}
        label = ", ".join(sorted(set(events), key=lambda e: rank[Event(e)]))
        lines.append(f"    {source.value} --> {target.value}: {label}")
    lines.extend(f"    {state.value} --> [*]" for state in order if state in TERMINAL)
    return "\n".join(lines) + "\n"


def guard_table() -> str:
    """The guards as a markdown table (state, condition), for the docs."""
    rows = ["| state | its quantities after an event |", "|---|---|"]
    rows.extend(f"| `{state.value}` | {GUARDS[state].text} |" for state in State)
    return "\n".join(rows) + "\n"
