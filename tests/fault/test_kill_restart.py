"""SIGKILL ``fogmap up`` in the middle of labeling, start it again.

Every acknowledged label is still there; no event's effect is applied twice (each label
is on the bus once, and the training and selection stores hold it once); the loop goes on
(after the restart more labels are taken and a newer model is published).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, until
from tests.stack import TOKEN, spawn_up, wait_healthy


async def label_some(url: str, token: str, name: str, acked: list[dict], stop_after: int
                     ) -> None:
    """Label until ``stop_after`` acks in total; connection errors (the kill) end it."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        try:
            while len(acked) < stop_after:
                tasks = (await http.post("/api/tasks/next", json={"n": 3})).json()
                if not tasks:
                    await asyncio.sleep(0.1)
                    continue
                for t in tasks:
                    label_id = uuid.uuid4().hex
                    r = await http.post(f"/api/tasks/{t['task_id']}/label",
                                        json={"label": 3, "rationale": name,
                                              "label_id": label_id})
                    if r.status_code in (200, 201):
                        acked.append(r.json())
        except httpx.HTTPError:
            return


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkill_mid_labeling_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    data = tmp_path / "fm"
    api, dash = free_port(), free_port()
    url = f"http://127.0.0.1:{api}"
    proc = spawn_up(data, api, dash)
    try:
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(base_url=url, timeout=10,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            tokens = [(await http.post("/api/users", json={"name": f"a{i}",
                                                            "role": "annotator"})).json()
                      ["token"] for i in range(6)]
        acked: list[dict] = []
        workers = [asyncio.create_task(label_some(url, t, f"a{i}", acked, 10**6))
                   for i, t in enumerate(tokens)]
        await until(lambda: len(acked) >= 25, 60, what="labels before the kill")
        children = children_of(proc.pid)  # the training child (and the resource tracker)
        assert children, "expected the training child by now"
        os.kill(proc.pid, signal.SIGKILL)  # mid-labeling: requests are in flight
        proc.wait(10)
        # no orphan: the training child notices its parent is gone and exits
        await until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 15,
                    what="the killed process's children to exit")
        await asyncio.gather(*workers)
        before = len(acked)

        proc = spawn_up(data, api, dash)
        await wait_healthy(url, proc)
        labels = {a["label_id"] for a in acked}
        async with httpx.AsyncClient(base_url=url, timeout=10,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            stored = Counter(r["label_id"] for r in (await http.get("/api/labels")).json())
        assert all(stored[i] == 1 for i in labels), "an acknowledged label was lost"

        # the loop goes on: more labels, a newer model, trained on more labels
        more = [asyncio.create_task(label_some(url, t, f"b{i}", acked, before + 20))
                for i, t in enumerate(tokens)]
        await asyncio.gather(*more)
        labels = {a["label_id"] for a in acked}

        def models() -> list[dict]:
            out = subprocess.run([sys.executable, "-m", "fogmap.cli", "events", "tail",
                                  "--topic", "fogmap.models", "--from-beginning",
                                  "--data-dir", str(data)], capture_output=True, text=True,
                                 check=True).stdout
            return [json.loads(x)["data"] for x in out.splitlines()
                    if '"fogmap.model.published"' in x]

        await until(lambda: any(m["labels"] > before for m in models()), 120, every=1.0,
                    what="a model trained after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    # effectively once: each label is on the bus once and in each consumer's store once
    bus = Counter(json.loads(b)["data"]["label_id"] for (b,) in rows(
        data / "bus.db", "SELECT body FROM log WHERE topic = 'fogmap.labels'"))
    assert all(bus[i] == 1 for i in labels)
    assert all(n == 1 for n in bus.values())
    trained = Counter(r[0] for r in rows(data / "training.db", "SELECT label_id FROM labels"))
    assert set(trained) == set(bus) and all(n == 1 for n in trained.values())
    labeled = {r[0] for r in rows(data / "selection.db",
                                  "SELECT item_id FROM items WHERE state = 'labeled'")}
    items = {json.loads(b)["data"]["item_id"] for (b,) in rows(
        data / "bus.db", "SELECT body FROM log WHERE topic = 'fogmap.labels'")}
    assert labeled == items
