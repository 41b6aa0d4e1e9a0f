"""The labeling service's own store: users, items, tasks with leases, labels, outbox, audit.

Every state change and the events announcing it are written in one transaction (the
outbox); a relay publishes the outbox afterwards. So a 2xx means the label is durable,
and its event reaches the bus even if the process dies right after answering.

Leasing relies on SQLite's single writer (``BEGIN IMMEDIATE``): two annotators can never
take the same task. The PostgreSQL adapter does the same with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS classes (idx INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, uri TEXT NOT NULL, split TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    position INTEGER NOT NULL,
    model_version TEXT,
    reason TEXT NOT NULL,
    role TEXT,                       -- only this role may take it (NULL: any labeler)
    exclude TEXT,                    -- this annotator may not (second opinions)
    status TEXT NOT NULL,            -- open | leased | done
    annotator TEXT,
    lease_expires REAL,
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (status, batch_seq, grp, position);
CREATE INDEX IF NOT EXISTS tasks_item ON tasks (item_id);
CREATE TABLE IF NOT EXISTS labels (
    label_id TEXT PRIMARY KEY, item_id TEXT NOT NULL, task_id TEXT,
    annotator TEXT NOT NULL, role TEXT NOT NULL, label INTEGER NOT NULL,
    class_name TEXT NOT NULL, rationale TEXT NOT NULL, shown_model_version TEXT,
    created REAL NOT NULL, retracted REAL, retracted_by TEXT);
CREATE INDEX IF NOT EXISTS labels_item ON labels (item_id);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, item_id TEXT NOT NULL, task_id TEXT,
    annotator TEXT NOT NULL, action TEXT NOT NULL, rationale TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published, seq);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
"""

ROLES = ("annotator", "expert", "reviewer", "ops", "admin")
LABELERS = ("annotator", "expert", "reviewer", "admin")
