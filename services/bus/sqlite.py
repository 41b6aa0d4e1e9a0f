"""The embedded bus adapter: an append-only log in SQLite, consumer groups, offsets.

One table holds every topic's log (the offset is global, so per-key order within a topic
is the publish order); a second table holds each group's committed offset per topic. The
event id is unique in the log, so republishing an event (an outbox relay retrying after a
crash) appends nothing. Publishing wakes in-process consumers at once; consumers also poll
so that publishers in other processes (``fogmap ingest`` beside ``fogmap up``) are seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog
from pydantic import ValidationError

from fogmap.bus.port import Subscription
from fogmap.core.events import Envelope

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    off INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_topic_off ON log (topic, off);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
"""


class SqliteBus:
    """In-process bus whose log survives restarts (see :mod:`fogmap.bus.port`)."""

    def __init__(self, path: Path, poll_seconds: float = 0.5) -> None:
        self._path = path
        self._poll = poll_seconds
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}
        self._running = False
        self.dead_letters = 0

    # --- publishing ---------------------------------------------------------------------

    async def publish(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        rows = await asyncio.to_thread(
            lambda: [(e.topic, e.id, e.subject, e.model_dump_json()) for e in events])
        await asyncio.to_thread(self._append, rows)
        for topic in {r[0] for r in rows}:
            if topic in self._wake:
                self._wake[topic].set()

    def _append(self, rows: list[tuple[str, str, str, str]]) -> None:
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO log (topic, event_id, key, body) VALUES (?, ?, ?, ?)",
                rows,
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- consuming ----------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        self._subs.append(subscription)
        if self._running:
            self._launch(subscription)

    async def start(self) -> None:
        self._running = True
        for sub in self._subs:
            self._launch(sub)

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _launch(self, sub: Subscription) -> None:
        for topic in sub.topics:
            self._wake.setdefault(topic, asyncio.Event())
            name = f"bus:{sub.group}:{topic}"
            self._tasks.append(asyncio.create_task(self._supervise(sub, topic), name=name))

    async def _supervise(self, sub: Subscription, topic: str) -> None:
        """Keep a consumer alive: an unexpected error restarts it from its last commit."""
        while True:
            try:
                await self._consume(sub, topic)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer crashed; restarting", group=sub.group, topic=topic)
                await asyncio.sleep(1.0)

    async def _consume(self, sub: Subscription, topic: str) -> None:
        offset = self._committed(sub.group, topic) if sub.commit else 0
        if not sub.from_beginning and offset == 0:
            offset = self.head(topic)
        wake = self._wake[topic]
        while True:
            wake.clear()
            rows = await asyncio.to_thread(self._read, topic, offset, sub.batch_size)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._poll)
                continue
            events, bad = await asyncio.to_thread(_decode, rows)
            if bad:
                await self._dead_letter(topic, bad, "malformed record")
            if events:
                await self._deliver(sub, topic, events)
            offset = rows[-1][0]
            if sub.commit:
                await asyncio.to_thread(self._commit, sub.group, topic, offset)

    async def _deliver(self, sub: Subscription, topic: str, events: list[Envelope]) -> None:
        """Run the handler; on failure retry one by one, parking poison events in the DLQ."""
        try:
            await sub.handler(events)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("handler failed; retrying one by one", group=sub.group, topic=topic,
                        exc_info=True)
        for event in events:
            for attempt in range(sub.max_attempts):
                try:
                    await sub.handler([event])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any handler error is retried
                    if attempt + 1 == sub.max_attempts:
                        log.error("event dead-lettered", group=sub.group, event_id=event.id,
                                  type=event.type, error=repr(exc))
                        await self._dead_letter(topic, [event.model_dump_json()], repr(exc))
                    else:
                        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))

    async def _dead_letter(self, topic: str, bodies: list[str], error: str) -> None:
        self.dead_letters += len(bodies)
        rows = [(f"{topic}.dlq", f"dlq-{hash((topic, b, error)) & 0xFFFFFFFFFFFF:x}",
                 "dlq", b) for b in bodies]
        await asyncio.to_thread(self._append, rows)

    # --- reads --------------------------------------------------------------------------

    def _read(self, topic: str, after: int, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT off, body FROM log WHERE topic = ? AND off > ? ORDER BY off LIMIT ?",
                (topic, after, limit),
            )
            return cur.fetchall()

    def _committed(self, group: str, topic: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT off FROM offsets WHERE grp = ? AND topic = ?", (group, topic)
            ).fetchone()
        return int(row[0]) if row else 0

    def head(self, topic: str) -> int:
        """The newest offset of a topic (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(off) FROM log WHERE topic = ?", (topic,))
            value = row.fetchone()[0]
        return int(value or 0)

    def _commit(self, group: str, topic: str, offset: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO offsets (grp, topic, off) VALUES (?, ?, ?) "
                "ON CONFLICT (grp, topic) DO UPDATE SET off = excluded.off",
                (group, topic, offset),
            )

    async def lag(self, group: str) -> int:
        topics = {t for s in self._subs if s.group == group for t in s.topics}
        total = 0
        for topic in topics:
            committed = self._committed(group, topic)
            with self._lock:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM log WHERE topic = ? AND off > ?", (topic, committed)
                ).fetchone()
            total += int(row[0])
        return total

    def read(self, topic: str, after: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        """Raw ``(offset, json)`` rows of a topic, for ``fogmap events tail`` and tests."""
        return self._read(topic, after, limit)

    def count(self, topic: str | None = None) -> int:
        with self._lock:
            if topic is None:
                return int(self._db.execute("SELECT COUNT(*) FROM log").fetchone()[0])
            q = "SELECT COUNT(*) FROM log WHERE topic = ?"
            return int(self._db.execute(q, (topic,)).fetchone()[0])


def _decode(rows: list[tuple[int, str]]) -> tuple[list[Envelope], list[str]]:
    events, bad = [], []
    for _, body in rows:
        try:
            events.append(Envelope.model_validate_json(body))
        except ValidationError:
            bad.append(body)
    return events, bad
