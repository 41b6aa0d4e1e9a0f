"""The websocket event stream: bus events fanned out to authorized subscribers.

One bus subscription (no committed offsets, from the live head) feeds every connection.
Each connection has a bounded queue; a client too slow to keep up is disconnected
(close code 1013) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import uuid

from fogmap.bus.port import Subscription
from fogmap.core.events import TOPICS, Envelope

# Which topics each role may subscribe to; heavy topics only when asked for by name.
ALLOWED = {
    "annotator": {"fogmap.models", "fogmap.proposals"},
    "expert": {"fogmap.models", "fogmap.proposals", "fogmap.labels", "fogmap.tasks"},
    "reviewer": {"fogmap.models", "fogmap.proposals", "fogmap.labels", "fogmap.tasks"},
    "ops": set(TOPICS),
    "admin": set(TOPICS),
}
HEAVY = {"fogmap.predictions", "fogmap.projections", "fogmap.images"}
QUEUE = 2000


class EventHub:
    def __init__(self) -> None:
        self._clients: dict[int, tuple[frozenset[str], asyncio.Queue[Envelope | None]]] = {}

    def subscription(self) -> Subscription:
        return Subscription(tuple(sorted(TOPICS)), f"api-stream-{uuid.uuid4().hex[:8]}",
                            self.on_events, batch_size=2000, from_beginning=False,
                            commit=False)

    @staticmethod
    def topics_for(role: str, asked: list[str] | None) -> frozenset[str]:
        """The topics a role gets; raises PermissionError for a topic it may not read."""
        allowed = ALLOWED.get(role, set())
        if asked:
            refused = [t for t in asked if t not in allowed]
            if refused:
                raise PermissionError(f"role {role!r} may not read {', '.join(refused)}")
            return frozenset(asked)
        return frozenset(allowed - HEAVY)

    def join(self, topics: frozenset[str]) -> tuple[int, asyncio.Queue[Envelope | None]]:
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue(QUEUE)
        key = id(queue)
        self._clients[key] = (topics, queue)
        return key, queue

    def leave(self, key: int) -> None:
        self._clients.pop(key, None)

    async def on_events(self, events: list[Envelope]) -> None:
        for key, (topics, queue) in list(self._clients.items()):
            for event in events:
                if event.topic not in topics:
                    continue
                if queue.full():
                    self._clients.pop(key, None)
                    queue.put_nowait(None) if not queue.full() else None
                    break
                queue.put_nowait(event)
