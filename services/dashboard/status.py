"""An item's annotation status, derived from the facts the bus has reported about it.

The rules, first match wins:

* ``disputed``: two annotators' latest active labels name different classes;
* ``needs_review``: a review / expert / second opinion was asked after the last label;
* ``labeled``: at least one active (not retracted) label;
* ``dismissed``: dismissed after the last label;
* ``assigned``: a task lease is open (released, expired or labeled tasks are closed);
* ``proposed``: proposed after the last task or label event on it;
* ``unlabeled``: otherwise.

Facts are compared by envelope time, never by arrival order, because the bus delivers
each topic independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

STATUSES = ("unlabeled", "proposed", "assigned", "labeled", "disputed", "needs_review",
            "dismissed")
STATUS = {name: code for code, name in enumerate(STATUSES)}


@dataclass
class ItemFacts:
    """What decides an item's status (times are envelope times, seconds since epoch)."""

    labels: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # id -> (y, who, t)
    tasks: dict[str, str] = field(default_factory=dict)  # open task id -> annotator
    proposed_at: float = -math.inf
    cleared_at: float = -math.inf  # a task or label event consumed the proposal
    review_at: float = -math.inf
    dismissed_at: float = -math.inf
    labeled_at: float = -math.inf


@dataclass(frozen=True)
class Derived:
    status: str
    label: int  # the latest active label's class, -1 when none
    annotator: str  # who gave it, "" when none


def derive(item: ItemFacts) -> Derived:
    active = sorted(item.labels.values(), key=lambda lab: lab[2])
    latest_by_annotator = {who: y for y, who, _ in active}
    if len(set(latest_by_annotator.values())) > 1:
        status = "disputed"
    elif item.review_at > item.labeled_at:
        status = "needs_review"
    elif active:
        status = "labeled"
    elif item.dismissed_at > item.labeled_at:
        status = "dismissed"
    elif item.tasks:
        status = "assigned"
    elif item.proposed_at > item.cleared_at:
        status = "proposed"
    else:
        status = "unlabeled"
    if not active:
        return Derived(status, -1, "")
    return Derived(status, active[-1][0], active[-1][1])
