"""Labeling service: the task queue, leases, labels and quick actions.

The HTTP routes and the simulated annotators of ``fogmap simulate`` call the same
methods here. Consumes ``image.ingested`` / ``dataset.registered`` (what may be labeled,
with which classes) and ``batch.proposed`` (new tasks); publishes task, label, review and
dismissal events through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from fogmap.bus.port import Bus, Subscription
from fogmap.core.events import (
    BatchProposed,
    DatasetRegistered,
    Envelope,
    EventData,
    ImageIngested,
    ItemDismissed,
    LabelRetracted,
    LabelSubmitted,
    ReviewRequested,
    TaskAssigned,
    TaskExpired,
    TaskReleased,
    wrap,
)
from fogmap.core.service import payloads
from fogmap.core.settings import LabelingSettings
from fogmap.core.sqlstore import SqliteStore
from fogmap.labeling.store import LABELERS, ROLES, SCHEMA

log = structlog.get_logger(__name__)
SOURCE = "/fogmap/labeling"
QUICK_ACTIONS = ("dismiss", "request_expert", "mark_review", "second_opinion")
# Who may take a task created by a review request.
REVIEW_ROLE = {"request_expert": "expert", "mark_review": "reviewer", "second_opinion": None}


class LabelingError(Exception):
    status = 400


class NotFound(LabelingError):
    status = 404


class Forbidden(LabelingError):
    status = 403


class Conflict(LabelingError):
    status = 409


class Invalid(LabelingError):
    status = 422


@dataclass(frozen=True)
class User:
    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LabelingService:
    name = "labeling"

    def __init__(self, bus: Bus, store: SqliteStore, cfg: LabelingSettings) -> None:
        self.bus, self.store, self.cfg = bus, store, cfg
        self._outbox_ready = asyncio.Event()

    @staticmethod
    def open_store(path: object) -> SqliteStore:
        return SqliteStore(path, SCHEMA)  # type: ignore[arg-type]

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(("fogmap.images",), "labeling", self.on_images, batch_size=5000),
            Subscription(("fogmap.proposals",), "labeling", self.on_proposals, batch_size=50),
        ]

    async def run(self) -> None:
        """Publish the outbox and return expired leases, until cancelled."""
        await asyncio.gather(self._relay(), self._sweeper())

    # --- users --------------------------------------------------------------------------

    def create_user(self, name: str, role: str, token: str | None = None) -> str:
        if role not in ROLES:
            raise Invalid(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        token = token or secrets.token_urlsafe(24)
        try:
            with self.store.tx() as db:
                db.execute("INSERT INTO users VALUES (?, ?, ?, ?, 1)",
                           (name, role, hash_token(token), time.time()))
                self._audit(db, "system", "user.created", name, {"role": role})
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"user {name!r} exists") from exc
        return token

    def ensure_user(self, name: str, role: str, token: str) -> None:
        """Create or re-key a user (the admin token of ``fogmap up``)."""
        with self.store.tx() as db:
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?, 1) ON CONFLICT (name) DO UPDATE "
                       "SET token_hash = excluded.token_hash, role = excluded.role",
                       (name, role, hash_token(token), time.time()))

    def authenticate(self, token: str | None) -> User | None:
        if not token:
            return None
        rows = self.store.query("SELECT name, role FROM users WHERE token_hash = ? AND "
                                "active = 1", (hash_token(token),))
        return User(*rows[0]) if rows else None

    # --- reads --------------------------------------------------------------------------

    def classes(self) -> list[str]:
        return [r[0] for r in self.store.query("SELECT name FROM classes ORDER BY idx")]

    def item_uri(self, user: User, item_id: str) -> str:
        """The image URI of an item ``user`` may see (404 otherwise, never 403)."""
        rows = self.store.query("SELECT uri FROM items WHERE item_id = ?", (item_id,))
        if not rows or not self._may_see(user, item_id):
            raise NotFound(f"no item {item_id!r}")
        return str(rows[0][0])

    def _may_see(self, user: User, item_id: str) -> bool:
        if user.role != "annotator":
            return True
        needle = json.dumps(item_id)
        return bool(self.store.query(
            "SELECT 1 FROM tasks WHERE annotator = ? AND (item_id = ? OR "
            "instr(reason, ?) > 0) LIMIT 1", (user.name, item_id, needle)))

    def my_tasks(self, user: User) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT task_id, item_id, batch_id, grp, model_version, reason, lease_expires "
            "FROM tasks WHERE status = 'leased' AND annotator = ? ORDER BY batch_seq, grp, "
            "position", (user.name,))
        return [_task(r) for r in rows]

    def labels_of(self, user: User, item_id: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT label_id, item_id, task_id, annotator, label, class_name, rationale, "
               "shown_model_version, created, retracted FROM labels WHERE 1 = 1")
        args: list[Any] = []
        if user.role == "annotator":
            sql += " AND annotator = ?"
            args.append(user.name)
        if item_id is not None:
            sql += " AND item_id = ?"
            args.append(item_id)
        keys = ("label_id", "item_id", "task_id", "annotator", "label", "class_name",
                "rationale", "shown_model_version", "created", "retracted")
        return [dict(zip(keys, r, strict=True)) for r in self.store.query(sql + " ORDER BY "
                                                                           "created", args)]

    def stats(self) -> dict[str, int]:
        rows = self.store.query("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        out = {f"tasks_{s}": int(n) for s, n in rows}
        out["labels"] = int(self.store.query(
            "SELECT COUNT(*) FROM labels WHERE retracted IS NULL")[0][0])
        out["outbox_pending"] = int(self.store.query(
            "SELECT COUNT(*) FROM outbox WHERE published = 0")[0][0])
        return out

    # --- the queue ----------------------------------------------------------------------

    def lease_next(self, user: User, n: int = 1) -> list[dict[str, Any]]:
        """The user's leased tasks, topped up to ``n`` from the queue, same group first."""
        if user.role not in LABELERS:
            raise Forbidden(f"role {user.role!r} does not label")
        if not 1 <= n <= 50:
            raise Invalid("n must be between 1 and 50")
        now = time.time()
        expires = now + self.cfg.lease_seconds
        with self.store.tx() as db:
            held = db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'leased' AND "
                              "annotator = ?", (user.name,)).fetchone()[0]
            want = n - held
            if want > 0:
                picked = self._pick(db, user, want)
                for task_id, item_id in picked:
                    db.execute("UPDATE tasks SET status = 'leased', annotator = ?, "
                               "lease_expires = ? WHERE task_id = ?",
                               (user.name, expires, task_id))
                    self._emit(db, TaskAssigned(
                        task_id=task_id, item_id=item_id, annotator=user.name,
                        lease_expires_at=_utc(expires)))
        if want > 0 and picked:
            self._outbox_ready.set()
        return self.my_tasks(user)

    def _pick(self, db: sqlite3.Connection, user: User, want: int) -> list[tuple[str, str]]:
        """Open tasks this user may take: one group of look-alikes at a time."""
        rows = db.execute(
            "SELECT t.task_id, t.item_id, t.batch_seq, t.grp FROM tasks t "
            "WHERE t.status = 'open' AND (t.role IS NULL OR t.role = ? OR ? = 'admin') "
            "AND (t.exclude IS NULL OR t.exclude != ?) AND NOT EXISTS ("
            "  SELECT 1 FROM tasks o WHERE o.item_id = t.item_id AND o.annotator = ? "
            "  AND o.status IN ('leased', 'done')) AND NOT EXISTS ("
            "  SELECT 1 FROM tasks o WHERE o.item_id = t.item_id AND o.status = 'leased' "
            "  AND o.task_id != t.task_id AND ? <= 1) "
            "ORDER BY t.batch_seq, t.grp, t.position LIMIT ?",
            (user.role, user.role, user.name, user.name, self.cfg.overlap, want * 4 + 20),
        ).fetchall()
        if not rows:
            return []
        first = (rows[0][2], rows[0][3])
        same = [r for r in rows if (r[2], r[3]) == first]
        rest = [r for r in rows if (r[2], r[3]) != first]
        seen: set[str] = set()
        out = []
        for r in same + rest:
            if r[1] not in seen:
                seen.add(r[1])
                out.append((r[0], r[1]))
        return out[:want]

    def _held_task(self, db: sqlite3.Connection, user: User, task_id: str) -> tuple[str, str]:
        row = db.execute("SELECT item_id, status, annotator, model_version FROM tasks WHERE "
                         "task_id = ?", (task_id,)).fetchone()
        if row is None or (row[2] != user.name and user.role != "admin"):
            raise NotFound(f"no task {task_id!r}")  # a foreign task is indistinguishable
        if row[1] == "open":
            raise Conflict(f"your lease on task {task_id!r} expired; lease new work")
        if row[1] != "leased":
            raise Conflict(f"task {task_id!r} is {row[1]}, not leased by you")
        return row[0], row[3]

    def submit_label(self, user: User, task_id: str | None, label: int, rationale: str = "",
                     shown_model_version: str | None = None, item_id: str | None = None,
                     label_id: str | None = None) -> dict[str, Any]:
        """Record a label (idempotent on ``label_id``) and announce it."""
        if user.role not in LABELERS:
            raise Forbidden(f"role {user.role!r} does not label")
        classes = self.classes()
        if not 0 <= label < len(classes):
            raise Invalid(f"unknown class {label}; classes are 0..{len(classes) - 1}")
        label_id = label_id or uuid.uuid4().hex
        with self.store.tx() as db:
            prior = db.execute("SELECT item_id, annotator, label FROM labels WHERE "
                               "label_id = ?", (label_id,)).fetchone()
            if prior is not None:  # a retry of an acknowledged label
                if prior[1] != user.name or prior[2] != label:
                    raise Conflict(f"label id {label_id!r} was used for another label")
                return {"label_id": label_id, "item_id": prior[0], "duplicate": True}
            if task_id is not None:
                item_id, task_version = self._held_task(db, user, task_id)
                db.execute("UPDATE tasks SET status = 'done' WHERE task_id = ?", (task_id,))
                shown_model_version = shown_model_version or task_version
            elif user.role in ("expert", "reviewer", "admin") and item_id is not None:
                if not db.execute("SELECT 1 FROM items WHERE item_id = ? AND split = 'pool'",
                                  (item_id,)).fetchone():
                    raise NotFound(f"no item {item_id!r}")
            else:
                raise Invalid("an annotator labels through a task (task_id)")
            assert item_id is not None
            db.execute("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                       (label_id, item_id, task_id, user.name, user.role, label,
                        classes[label], rationale, shown_model_version, time.time()))
            self._emit(db, LabelSubmitted(
                label_id=label_id, item_id=item_id, task_id=task_id, label=label,
                class_name=classes[label], rationale=rationale, annotator=user.name,
                role=user.role, shown_model_version=shown_model_version))
            self._audit(db, user.name, "label.submitted", item_id,
                        {"label": label, "task": task_id})
        self._outbox_ready.set()
        return {"label_id": label_id, "item_id": item_id, "duplicate": False}

    def quick_action(self, user: User, task_id: str, action: str,
                     rationale: str = "") -> dict[str, Any]:
        """Dismiss, request an expert, mark for review, or ask for a second opinion."""
        if action not in QUICK_ACTIONS:
            raise Invalid(f"unknown action {action!r}; actions: {', '.join(QUICK_ACTIONS)}")
        with self.store.tx() as db:
            item_id, version = self._held_task(db, user, task_id)
            db.execute("UPDATE tasks SET status = 'done' WHERE task_id = ?", (task_id,))
            db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (uuid.uuid4().hex, item_id, task_id, user.name, action, rationale,
                        time.time()))
            event: EventData
            if action == "dismiss":
                event = ItemDismissed(item_id=item_id, task_id=task_id, annotator=user.name,
                                      rationale=rationale)
            else:
                event = ReviewRequested(item_id=item_id, task_id=task_id, kind=action,
                                        annotator=user.name, rationale=rationale)
                self._follow_up(db, task_id, action, user)
            self._emit(db, event)
            self._audit(db, user.name, action, item_id, {"task": task_id})
        self._outbox_ready.set()
        return {"task_id": task_id, "item_id": item_id, "action": action}

    def _follow_up(self, db: sqlite3.Connection, task_id: str, action: str, user: User) -> None:
        """A review request becomes a new task for the right role (not the requester)."""
        row = db.execute("SELECT item_id, batch_id, batch_seq, grp, position, model_version, "
                         "reason FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, "
                   "NULL, ?)", (f"{task_id}:{action}", row[0], row[1], row[2], row[3],
                                row[4], row[5], row[6], REVIEW_ROLE[action], user.name,
                                time.time()))

    def release(self, user: User, task_id: str) -> None:
        with self.store.tx() as db:
            item_id, _ = self._held_task(db, user, task_id)
            db.execute("UPDATE tasks SET status = 'open', annotator = NULL, lease_expires = "
                       "NULL WHERE task_id = ?", (task_id,))
            self._emit(db, TaskReleased(task_id=task_id, item_id=item_id, annotator=user.name))
        self._outbox_ready.set()

    def retract(self, user: User, label_id: str, reason: str = "") -> dict[str, Any]:
        """Withdraw a label: its author, a reviewer or an admin may."""
        with self.store.tx() as db:
            row = db.execute("SELECT item_id, annotator, retracted FROM labels WHERE "
                             "label_id = ?", (label_id,)).fetchone()
            if row is None or (row[1] != user.name and user.role == "annotator"):
                raise NotFound(f"no label {label_id!r}")
            if row[1] != user.name and user.role not in ("reviewer", "admin"):
                raise Forbidden("only the author, a reviewer or an admin may retract")
            if row[2] is not None:
                raise Conflict(f"label {label_id!r} is already retracted")
            db.execute("UPDATE labels SET retracted = ?, retracted_by = ? WHERE label_id = ?",
                       (time.time(), user.name, label_id))
            self._emit(db, LabelRetracted(label_id=label_id, item_id=row[0],
                                          retracted_by=user.name, reason=reason))
            self._audit(db, user.name, "label.retracted", row[0], {"label_id": label_id})
        self._outbox_ready.set()
        return {"label_id": label_id, "item_id": row[0]}

    # --- handlers -----------------------------------------------------------------------

    async def on_images(self, events: list[Envelope]) -> None:
        rows = [(p.item_id, p.uri, p.split) for _, p in payloads(events, "image.ingested")
                if isinstance(p, ImageIngested)]
        with self.store.tx() as db:
            db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?)", rows)
            for _, p in payloads(events, "dataset.registered"):
                assert isinstance(p, DatasetRegistered)
                db.execute("DELETE FROM classes")
                db.executemany("INSERT INTO classes VALUES (?, ?)", list(enumerate(p.classes)))

    async def on_proposals(self, events: list[Envelope]) -> None:
        now = time.time()
        with self.store.tx() as db:
            for env, p in payloads(events, "batch.proposed"):
                assert isinstance(p, BatchProposed)
                if not self.store.fresh(db, env.id):
                    continue
                seq = db.execute("SELECT COALESCE(MAX(batch_seq), 0) + 1 FROM tasks"
                                 ).fetchone()[0]
                rows = []
                for pos, item in enumerate(p.items):
                    for slot in range(self.cfg.overlap):
                        rows.append((f"{p.batch_id}:{item.item_id}:{slot}", item.item_id,
                                     p.batch_id, seq, item.group, pos, p.model_version,
                                     item.reason.model_dump_json(), None, None, "open", None,
                                     None, now))
                db.executemany("INSERT OR IGNORE INTO tasks VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # --- outbox and leases --------------------------------------------------------------

    def _emit(self, db: sqlite3.Connection, data: EventData) -> None:
        env = wrap(data, SOURCE)
        db.execute("INSERT INTO outbox (event_id, body) VALUES (?, ?)",
                   (env.id, env.model_dump_json()))

    def _audit(self, db: sqlite3.Connection, actor: str, action: str, target: str,
               detail: dict[str, Any]) -> None:
        db.execute("INSERT INTO audit (ts, actor, action, target, detail) VALUES "
                   "(?, ?, ?, ?, ?)", (time.time(), actor, action, target, json.dumps(detail)))

    async def flush_outbox(self) -> int:
        """Publish every pending outbox row, in order; return how many."""
        rows = self.store.query("SELECT seq, body FROM outbox WHERE published = 0 ORDER BY "
                                "seq LIMIT 1000")
        if not rows:
            return 0
        await self.bus.publish([Envelope.model_validate_json(b) for _, b in rows])
        with self.store.tx() as db:
            db.execute("UPDATE outbox SET published = 1 WHERE seq <= ? AND published = 0",
                       (rows[-1][0],))
        return len(rows)

    async def _relay(self) -> None:
        while True:
            self._outbox_ready.clear()
            try:
                if await self.flush_outbox():
                    continue
            except Exception:  # noqa: BLE001 - the bus may be down; retry with backoff
                log.warning("outbox relay failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_ready.wait(), 0.5)

    def expire_leases(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.store.tx() as db:
            rows = db.execute("SELECT task_id, item_id, annotator FROM tasks WHERE status = "
                              "'leased' AND lease_expires < ?", (now,)).fetchall()
            for task_id, item_id, annotator in rows:
                # The annotator stays on the row so a late submit hears "expired".
                db.execute("UPDATE tasks SET status = 'open', lease_expires = NULL "
                           "WHERE task_id = ?", (task_id,))
                self._emit(db, TaskExpired(task_id=task_id, item_id=item_id,
                                           annotator=annotator))
        if rows:
            self._outbox_ready.set()
        return len(rows)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.lease_seconds / 4))
            self.expire_leases()


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


def _task(row: tuple) -> dict[str, Any]:
    task_id, item_id, batch_id, grp, version, reason, expires = row
    return {"task_id": task_id, "item_id": item_id, "batch_id": batch_id, "group": grp,
            "model_version": version, "reason": json.loads(reason),
            "lease_expires_at": _utc(expires).isoformat() if expires else None}
