"""A hundred annotators labeling at once: fast acknowledgements, nothing lost.

``fogmap up`` runs in its own process (retraining and rescoring in the background, as in
production); 100 simulated annotators, each with a human-like pause between labels, lease
and label over HTTP from this process. Prints the acknowledgement latency (median, p99)
and asserts a regression guard (median under 250 ms) that holds even on a loaded CI
machine; on an idle 2-core machine the median measured 11 ms, p99 44 ms.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.stack import TOKEN, spawn_up, wait_healthy

ANNOTATORS = 100
PER_ANNOTATOR = 3


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_hundred_annotators_label_with_low_latency(tmp_path: Path) -> None:
    api = free_port()
    url = f"http://127.0.0.1:{api}"
    proc = spawn_up(tmp_path / "fm", api, free_port(), FOGMAP_SELECTION__INITIAL="400",
                    FOGMAP_SELECTION__BATCH_SIZE="200", FOGMAP_TRAINING__EVERY_N_LABELS="50")
    latencies: list[float] = []
    acked: list[str] = []
    rng = random.Random(0)
    try:
        await wait_healthy(url, proc)
        limits = httpx.Limits(max_connections=ANNOTATORS + 10)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            admin = {"Authorization": f"Bearer {TOKEN}"}
            tokens = [(await http.post("/api/users", headers=admin, json={
                "name": f"load{i}", "role": "annotator"})).json()["token"]
                for i in range(ANNOTATORS)]

            async def annotator(token: str, pauses: list[float]) -> None:
                headers = {"Authorization": f"Bearer {token}"}
                await asyncio.sleep(pauses[0])
                r = await http.post("/api/tasks/next", json={"n": PER_ANNOTATOR},
                                    headers=headers)
                for task, pause in zip(r.json(), pauses[1:], strict=False):
                    await asyncio.sleep(pause)  # looking at the image
                    start = time.perf_counter()
                    r = await http.post(f"/api/tasks/{task['task_id']}/label",
                                        json={"label": 1, "rationale": "load"},
                                        headers=headers)
                    latencies.append(time.perf_counter() - start)
                    assert r.status_code == 201, r.text
                    acked.append(r.json()["label_id"])

            await asyncio.gather(*(annotator(t, [rng.uniform(0.2, 1.5) for _ in range(4)])
                                   for t in tokens))
            stored = {r["label_id"] for r in (await http.get("/api/labels",
                                                             headers=admin)).json()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert len(acked) == len(set(acked)) == ANNOTATORS * PER_ANNOTATOR
    assert set(acked) <= stored
    median, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
    print(f"\nlabel ack latency, {len(latencies)} labels from {ANNOTATORS} concurrent "
          f"annotators: median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert median < 0.25, f"median ack latency {median * 1000:.0f} ms"
