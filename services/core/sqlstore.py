"""What every service's own SQLite store shares: one connection, transactions, an inbox.

The inbox makes a consumer effectively-once: a handler records the event ids it applied
in the same transaction as their effects, and skips ids it has already recorded, so a
redelivered batch (crash between effect and offset commit) changes nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

INBOX = """
CREATE TABLE IF NOT EXISTS inbox (event_id TEXT PRIMARY KEY);
"""


class SqliteStore:
    def __init__(self, path: Path | str, schema: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(INBOX + schema)
        self.lock = threading.RLock()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, serialized across threads."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, args: Iterable[object] = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, tuple(args)).fetchall()

    def fresh(self, conn: sqlite3.Connection, event_id: str) -> bool:
        """Record ``event_id`` in the inbox; False when it was applied before."""
        cur = conn.execute("INSERT OR IGNORE INTO inbox (event_id) VALUES (?)", (event_id,))
        return cur.rowcount == 1

    def close(self) -> None:
        with self.lock:
            self.db.close()
