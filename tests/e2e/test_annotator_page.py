"""The annotator page in a real headless Chromium, driven over the DevTools protocol.

The real app runs in-process (services, API on a free loopback port); Chromium is
started by process id with a throwaway profile and controlled through CDP with the
``websockets`` package, so the test needs no WebDriver and downloads nothing.

Asserts: the token is taken from ``#token=`` and scrubbed from the address bar; a task
with its image loads; a digit key + Enter lands a label for the right annotator with a
client-chosen idempotency id; shortcuts are ignored while typing the rationale; HTML in
a rationale is shown as text (no element, no script); U retracts, D dismisses; API errors
appear in the status line; the CSP is never violated and no script error is thrown.

``FOGMAP_SCREENSHOT=path.png`` also saves a screenshot of the page with a task loaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets

from fogmap.api.app import create_app
from fogmap.core.settings import Settings
from fogmap.labeling.service import User
from fogmap.runtime.bootstrap import Runtime, bootstrap
from tests.conftest import free_port, until

CHROMIUM = os.environ.get("FOGMAP_CHROMIUM", "/usr/bin/chromium")
PAYLOAD = "<img src=x onerror=alert(1)><b>bold</b>"


# --- a minimal DevTools-protocol client ---------------------------------------------------


class CdpError(RuntimeError):
    pass


class Cdp:
    """One browser websocket; commands go to a flattened page session."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> Cdp:
        ws = await websockets.connect(url, max_size=None, ping_interval=None)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                fut = self.pending.pop(msg["id"], None) if "id" in msg else None
                if fut is None:
                    self.events.append(msg)
                elif not fut.done():
                    if "error" in msg:
                        fut.set_exception(CdpError(f"{msg['error']}"))
                    else:
                        fut.set_result(msg.get("result", {}))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(CdpError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   browser: bool = False, timeout: float = 20.0) -> dict[str, Any]:
        msg: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params or {}}
        if not browser and self.session:
            msg["sessionId"] = self.session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg["id"]] = fut
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def open_page(self) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True},
                                   browser=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")

    async def js(self, expression: str) -> Any:
        out = await self.send("Runtime.evaluate", {"expression": expression,
                                                   "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in out:
            raise CdpError(f"{expression!r} threw: {out['exceptionDetails']}")
        return out["result"].get("value")

    async def wait_js(self, expression: str, timeout: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        while True:
            value = await self.js(guarded)  # the document may still be loading
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.js("document.getElementById('status').textContent")
                raise AssertionError(f"timed out waiting for {what or expression}; "
                                     f"status line: {state!r}")
            await asyncio.sleep(0.05)

    async def key(self, key: str) -> None:
        """Press and release one key, as a person would (keyDown with text, keyUp)."""
        if key == "Enter":
            down = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}
        elif key == "Escape":
            down = {"key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27}
        elif key.isdigit():
            down = {"key": key, "code": f"Digit{key}", "windowsVirtualKeyCode": ord(key),
                    "text": key}
        else:
            down = {"key": key, "code": f"Key{key.upper()}",
                    "windowsVirtualKeyCode": ord(key.upper()), "text": key}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", **down})
        up = {k: v for k, v in down.items() if k != "text"}
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **up})

    def problems(self) -> list[str]:
        """Script errors, CSP violations and dialogs (alert!) seen so far."""
        out = []
        for ev in self.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"exception: {params['exceptionDetails']}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {params.get('message')!r}")
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                text = entry.get("text", "")
                if entry.get("source") == "security" or "Content Security Policy" in text:
                    out.append(f"security: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(f"console.error: {params.get('args')}")
        return out

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Cdp]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"headless Chromium not found at {CHROMIUM}: install it with "
                    "`apt-get install -y chromium` (the browser tests need it)")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--no-default-browser-check", "--mute-audio", "--window-size=1280,1100",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    cdp: Cdp | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None:
                pytest.fail(f"{CHROMIUM} exited with status {proc.returncode} at start")
            if time.monotonic() > deadline:
                pytest.fail(f"{CHROMIUM} did not open its DevTools port within 20 s")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        cdp = await Cdp.connect(f"ws://127.0.0.1:{port}{path}")
        await cdp.open_page()
        yield cdp
    finally:
        if cdp is not None:
            await cdp.close()
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers of that one browser, if any linger


# --- the app --------------------------------------------------------------------------------


@dataclass
class App:
    runtime: Runtime
    base: str


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[App]:
    runtime = bootstrap(settings)
    await runtime.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(), name="api")
    try:
        await until(lambda: server.started or task.done(), 20, what="the API to start")
        assert not task.done(), "the API server stopped at start"
        await runtime.ingest("digits")
        await until(lambda: runtime.labeling.stats().get("tasks_open", 0) >= 10, 45,
                    what="the cold-start batch")
        yield App(runtime, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await runtime.stop()


# --- the test ---------------------------------------------------------------------------------


def labels(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    return runtime.labeling.labels_of(User(name, "annotator"))


SHOWN_ITEM = "document.getElementById('item-id').textContent"
DONE = "document.getElementById('done-count').textContent"
STATUS = "document.getElementById('status').textContent"
PRESSED = ("[...document.querySelectorAll('.class-button[aria-pressed=true]')]"
           ".map(b => Number(b.dataset.cls))")
# A task is shown, its image decoded, and the page will act on it (not between tasks).
TASK_READY = ("!document.getElementById('task').hidden && "
              "!document.getElementById('skip').disabled && "
              "document.getElementById('item-id').textContent !== '' && "
              "document.getElementById('item-image').complete && "
              "document.getElementById('item-image').naturalWidth > 0")


async def next_item(cdp: Cdp, previous: str) -> str:
    await cdp.wait_js(f"{TASK_READY} && {SHOWN_ITEM} !== {json.dumps(previous)}",
                      what=f"a task other than {previous}")
    return str(await cdp.js(SHOWN_ITEM))


@pytest.mark.browser
@pytest.mark.timeout(120)
async def test_annotator_page_in_headless_chromium(settings: Settings, tmp_path: Path) -> None:
    async with running_app(settings) as app, chromium(tmp_path / "profile") as cdp:
        rt = app.runtime
        token = rt.labeling.create_user("ann1", "annotator")
        await cdp.send("Page.navigate", {"url": f"{app.base}/#token={token}"})

        # The first task: image loaded (blob: URL fetched with the header), token scrubbed.
        await cdp.wait_js(TASK_READY, 20, what="the first task with its image")
        href = await cdp.js("location.href")
        assert token not in href and "token" not in href, href
        assert await cdp.js("document.getElementById('item-image').src.startsWith('blob:')")
        assert await cdp.js("document.getElementById('who').textContent") == "ann1 · annotator"
        # The cold start: typical items of the label-free (PCA) representation.
        assert "typiclust" in await cdp.js("document.getElementById('why-strategy').textContent")
        assert await cdp.js("document.querySelectorAll('.class-button').length") == 10
        held = {t["item_id"] for t in rt.labeling.my_tasks(User("ann1", "annotator"))}
        first = str(await cdp.js(SHOWN_ITEM))
        assert first in held

        # Digit key (digits classes keep their own key: 3 = class "3") + Enter.
        await cdp.key("3")
        assert await cdp.js(PRESSED) == [3]
        await cdp.key("Enter")
        await cdp.wait_js(f"{DONE} === '1'", what="the first label")
        [got] = labels(rt, "ann1")
        assert (got["item_id"], got["label"], got["annotator"]) == (first, 3, "ann1")
        assert got["task_id"] is not None and got["retracted"] is None
        assert re.fullmatch(r"[0-9a-f]{32}", got["label_id"]), got["label_id"]

        # HTML in the rationale; shortcuts are ignored while typing there.
        second = await next_item(cdp, first)
        await cdp.js("document.getElementById('rationale').focus()")
        await cdp.send("Input.insertText", {"text": PAYLOAD})
        await cdp.key("5")
        await cdp.key("d")
        assert await cdp.js("document.getElementById('rationale').value") == PAYLOAD + "5d"
        assert await cdp.js(PRESSED) == []
        assert await cdp.js(SHOWN_ITEM) == second  # "d" did not dismiss
        await cdp.key("Escape")
        await cdp.key("4")
        await cdp.key("Enter")
        await cdp.wait_js(f"{DONE} === '2'", what="the second label")
        got = labels(rt, "ann1")[-1]
        assert (got["item_id"], got["label"], got["rationale"]) == (second, 4, PAYLOAD + "5d")
        shown = await cdp.js("document.getElementById('last-rationale').textContent")
        assert shown == PAYLOAD + "5d"
        assert await cdp.js("document.querySelectorAll('#last b, #last img, b').length") == 0
        assert await cdp.js("document.querySelectorAll('[onerror]').length") == 0
        assert await cdp.js("document.getElementById('last-class').textContent") == "4"

        third = await next_item(cdp, second)
        if path := os.environ.get("FOGMAP_SCREENSHOT"):
            shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
            Path(path).write_bytes(base64.b64decode(shot["data"]))

        # U retracts the last label; D dismisses the current task.
        await cdp.key("u")
        await cdp.wait_js(f"{DONE} === '1'", what="the undo")
        assert labels(rt, "ann1")[-1]["retracted"] is not None
        assert "Retracted" in await cdp.js(STATUS)
        await cdp.key("d")
        fourth = await next_item(cdp, third)
        decisions = rt.labeling.store.query("SELECT item_id, annotator, action FROM decisions")
        assert decisions == [(third, "ann1", "dismiss")]

        # An API error shows its detail: the lease ran out behind the page's back.
        [fourth_task] = [t["task_id"] for t in rt.labeling.my_tasks(User("ann1", "annotator"))
                         if t["item_id"] == fourth]
        rt.labeling.expire_leases(now=time.time() + 10_000)
        await cdp.key("7")
        await cdp.key("Enter")
        await cdp.wait_js(f"{STATUS}.includes({json.dumps(f'task {fourth_task!r} expired')})",
                          what="the API's error detail in the status line")
        assert await cdp.js("document.getElementById('status').classList.contains("
                            "'status-error')")
        assert all(lab["item_id"] != fourth for lab in labels(rt, "ann1"))
        await cdp.wait_js(TASK_READY, what="the page to move on after the error")

        assert await cdp.js("sessionStorage.getItem('fogmap.token')") == token
        assert token not in await cdp.js("location.href")

        # Skip gives the task back to the queue.
        skipped = await cdp.js(SHOWN_ITEM)
        await cdp.js("document.getElementById('skip').click()")
        await next_item(cdp, skipped)
        assert rt.labeling.store.query("SELECT status, annotator FROM tasks WHERE item_id = ?",
                                       (skipped,)) == [("open", None)]

        # Without a token: the form. A bad token is refused visibly; a good one signs in.
        hog = User("hog", "annotator")
        rt.labeling.create_user(hog.name, hog.role)
        rt.labeling.lease_next(hog, 50)
        assert rt.labeling.stats().get("tasks_open", 0) == 0
        await cdp.js("sessionStorage.clear()")
        await cdp.send("Page.navigate", {"url": f"{app.base}/"})
        await cdp.wait_js("!document.getElementById('token-panel').hidden && "
                          "document.activeElement.id === 'token-input'", what="the token form")
        await cdp.send("Input.insertText", {"text": "not-a-token"})
        await cdp.key("Enter")
        await cdp.wait_js(f"{STATUS}.includes('401')", what="the refused token")
        assert await cdp.js("!document.getElementById('token-panel').hidden")
        await cdp.js("document.getElementById('token-input').focus()")
        await cdp.send("Input.insertText", {"text": rt.labeling.create_user("ann2", "annotator")})
        await cdp.key("Enter")
        # The queue is empty (hog holds everything): the page says so and polls.
        await cdp.wait_js("!document.getElementById('empty').hidden", what="the empty queue")
        assert "empty" in await cdp.js("document.getElementById('empty').textContent")
        assert await cdp.js("document.getElementById('who').textContent") == "ann2 · annotator"
        [freed, *_] = rt.labeling.my_tasks(hog)
        rt.labeling.release(hog, freed["task_id"])
        await cdp.wait_js(f"{TASK_READY} && {SHOWN_ITEM} === {json.dumps(freed['item_id'])}",
                          timeout=15, what="the poll to pick up the freed task")
        assert await cdp.js("document.getElementById('empty').hidden")
        assert cdp.problems() == []

