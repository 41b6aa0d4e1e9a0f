"""What a service looks like to the composition root.

A service declares the bus subscriptions it handles and, optionally, background work
(lease sweeps, timers). It publishes through a :class:`Publisher` and never touches
another service's store: everything it learns arrives as events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fogmap.bus.port import Bus, Subscription
from fogmap.core.events import Envelope, EventData, wrap


class Service(Protocol):
    name: str

    def subscriptions(self) -> list[Subscription]: ...

    async def run(self) -> None:
        """Background work until cancelled; return at once when there is none."""
        ...


class Publisher:
    """Wraps payloads in envelopes stamped with this service as their source."""

    def __init__(self, bus: Bus, source: str) -> None:
        self.bus = bus
        self.source = source

    def envelope(self, data: EventData, event_id: str | None = None) -> Envelope:
        return wrap(data, f"/fogmap/{self.source}", event_id)

    async def emit(self, items: Sequence[EventData], ids: Sequence[str] | None = None) -> None:
        envs = [self.envelope(d, ids[i] if ids else None) for i, d in enumerate(items)]
        await self.bus.publish(envs)


def payloads(events: Sequence[Envelope], *names: str) -> list[tuple[Envelope, EventData]]:
    """The typed payloads of the events whose type is one of ``names``."""
    return [(e, e.payload()) for e in events if e.name in names]
