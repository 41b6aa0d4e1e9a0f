"""The event bus port.

Semantics every adapter keeps (in-process SQLite log, Kafka):

* ``publish`` appends envelopes to a topic; the key is the envelope ``subject`` (the item
  id), and events with one key are delivered in the order they were published.
* ``subscribe`` joins a consumer *group*: each event of the topic reaches one member of
  each group. Delivery is at least once: the group's offset is committed only after the
  handler returned, so a crash re-delivers the uncommitted tail. Handlers must therefore
  be idempotent (dedupe by ``Envelope.id`` or upsert by id + model version).
* ``from_beginning=True`` with ``commit=False`` reads the whole retained log on every
  start (used by in-memory views such as the dashboard).
* A malformed record never reaches a handler: it is counted and parked on
  ``<topic>.dlq``; a handler that keeps failing parks its batch there after
  ``max_attempts`` and the consumer moves on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fogmap.core.events import Envelope

Handler = Callable[[list[Envelope]], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    topics: tuple[str, ...]
    group: str
    handler: Handler
    batch_size: int = 1000
    from_beginning: bool = True
    commit: bool = True
    max_attempts: int = 5


class Bus(Protocol):
    """Publish/subscribe with consumer groups and committed offsets."""

    async def publish(self, events: Sequence[Envelope]) -> None:
        """Append events (each to its type's topic). Returns once they are durable."""
        ...

    def subscribe(self, subscription: Subscription) -> None:
        """Register a consumer; it starts with :meth:`start` (or at once if running)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def lag(self, group: str) -> int:
        """Events not yet committed by ``group`` over its topics (0 when caught up)."""
        ...
