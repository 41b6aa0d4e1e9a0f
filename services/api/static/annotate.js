// fogmap annotator page: plain JavaScript, no build step, nothing fetched from elsewhere.
//
// Security rules kept throughout this file:
//   * the token lives in sessionStorage and the Authorization header only, never in a URL;
//   * everything that comes from the server (class names, item ids, rationales, error
//     details) is inserted with textContent / createElement, never as HTML;
//   * no inline handlers or styles (the page's CSP forbids them).
"use strict";

(() => {
  const TOKEN_KEY = "fogmap.token";
  const LEASE_N = 5; // tasks leased at a time (look-alikes come together)
  const POLL_MS = 4000; // queue-empty polling interval
  const THUMB_SCALE = 2;
  const IMAGE_SCALE = 8;
  const IMAGE_CACHE = 80;

  const STRATEGY_TEXT = {
    random: "Random pick: a uniform sample of the pool, a baseline.",
    "least-confidence": "Least confidence: the model's best guess for this image is weak.",
    margin: "Margin: the model is torn between its two most likely classes.",
    entropy: "Entropy: the model's belief is spread over many classes.",
    bald: "BALD: different plausible versions of the model disagree about this image.",
    eig: "Expected information gain: this label should tell the model the most about the "
      + "rest of the unlabeled pool.",
  };
  // The measure a strategy ranks by (mirrors selection.strategies.SCORE_FIELD).
  const SCORE_FIELD = {
    "least-confidence": "least_confidence", margin: "margin", entropy: "entropy",
    bald: "bald", eig: "eig",
  };
  const METRICS = [
    ["entropy", "Entropy",
      "How spread out the model's guess is over all classes (in nats). 0 means sure of one "
      + "class; the maximum means no idea at all."],
    ["margin", "Margin",
      "How close the top two guesses are: 1 − (best − runner-up). Near 1 means the model "
      + "can't decide between two classes."],
    ["least_confidence", "Least confidence",
      "1 − the probability of the best guess. High means even the best guess is weak."],
    ["bald", "BALD",
      "How much sampled versions of the model (MC dropout) disagree. High means the model "
      + "lacks knowledge here, not just that the image is ambiguous."],
    ["eig", "EIG",
      "Expected information gain: how much this one label is expected to teach the model "
      + "about the other unlabeled images (in nats)."],
  ];
  const ACTION_TEXT = {
    dismiss: "Dismissed",
    request_expert: "Sent to an expert",
    mark_review: "Marked for review",
    second_opinion: "Asked for a second opinion on",
  };
  const ACTION_KEYS = { d: "dismiss", e: "request_expert", r: "mark_review", s: "second_opinion" };

  const state = {
    token: null,
    me: null,
    classes: [],
    keyToClass: new Map(), // "1" -> 0 ...
    classToKey: [], // 0 -> "1" ...
    tasks: [], // leased tasks, in the server's order (batch, group, position)
    current: null,
    chosen: null,
    busy: false,
    done: 0,
    history: [], // {label_id, item_id, class_name, rationale, retracted}
    pendingIds: new Map(), // task_id|label -> label_id, reused on retries (idempotent)
    skipped: new Set(), // item ids this session skipped: shown last if they come back
    pollTimer: null,
    images: new Map(), // "item@scale" -> Promise<object URL>, LRU
  };

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  class ApiError extends Error {
    constructor(status, detail, retryable) {
      super(detail);
      this.status = status;
      this.retryable = retryable;
    }
  }

  // --- small DOM helpers -----------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "text") node.textContent = v;
        else if (k === "className") node.className = v;
        else if (k === "dataset") Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    for (const c of children) node.append(c);
    return node;
  }

  function say(message, kind = "info") {
    const s = $("status");
    s.textContent = message;
    s.className = `status status-${kind}`;
  }

  function sayError(err) {
    const detail = err instanceof ApiError ? err.message : String(err && err.message || err);
    const code = err instanceof ApiError && err.status ? ` (${err.status})` : "";
    say(`Error${code}: ${detail}`, "error");
  }

  function fmt(x, digits = 3) {
    if (typeof x !== "number" || !Number.isFinite(x)) return "–";
    // Tiny but non-zero values (EIG often is) keep two significant digits.
    return x !== 0 && Math.abs(x) < 0.01 ? x.toPrecision(2) : x.toFixed(digits);
  }

  function className(idx) {
    if (typeof idx !== "number") return "unknown";
    return state.classes[idx] !== undefined ? state.classes[idx] : `class ${idx}`;
  }

  function newLabelId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- the token ---------------------------------------------------------------------------

  function storage(action, value) {
    try {
      if (action === "get") return sessionStorage.getItem(TOKEN_KEY);
      if (action === "set") sessionStorage.setItem(TOKEN_KEY, value);
      if (action === "del") sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lives in memory only */ }
    return null;
  }

  /** The token from ``#token=...`` (then scrubbed from the address bar) or the session. */
  function takeToken() {
    const hash = location.hash.replace(/^#/, "");
    if (hash) {
      const parts = hash.split("&");
      let found = null;
      const rest = [];
      for (const p of parts) {
        if (p.startsWith("token=")) {
          try { found = decodeURIComponent(p.slice(6)); } catch (_) { found = p.slice(6); }
        } else if (p) {
          rest.push(p);
        }
      }
      if (found !== null) {
        const url = location.pathname + location.search + (rest.length ? `#${rest.join("&")}` : "");
        history.replaceState(history.state, "", url);
        if (found.trim()) {
          storage("set", found.trim());
          return found.trim();
        }
      }
    }
    return storage("get");
  }

  function showTokenForm(message) {
    state.token = null;
    state.me = null;
    storage("del");
    clearTimeout(state.pollTimer);
    $("workspace").hidden = true;
    $("signout").hidden = true;
    $("who").textContent = "";
    $("token-panel").hidden = false;
    if (message) say(message, "error");
    $("token-input").focus();
  }

  // --- the API -----------------------------------------------------------------------------

  function formatDetail(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => {
        const where = Array.isArray(d.loc) ? d.loc.filter((x) => x !== "body").join(".") : "";
        return where ? `${where}: ${d.msg}` : String(d.msg);
      }).join("; ");
    }
    return detail === undefined ? "" : JSON.stringify(detail);
  }

  async function api(method, path, body, raw = false) {
    const headers = { Authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, "could not reach the server (network error)", true);
    }
    if (resp.status === 401) {
      showTokenForm("The token was rejected (401): please sign in again.");
      throw new ApiError(401, "missing or invalid token", false);
    }
    if (!resp.ok) {
      let detail = resp.statusText || "request failed";
      try {
        const j = await resp.json();
        if (j && j.detail !== undefined) detail = formatDetail(j.detail);
      } catch (_) { /* not JSON */ }
      throw new ApiError(resp.status, detail, resp.status >= 500);
    }
    if (raw) return resp;
    if (resp.status === 204) return null;
    return resp.json();
  }

  async function withRetry(call, tries = 3) {
    for (let i = 1; ; i += 1) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof ApiError) || !err.retryable || i >= tries) throw err;
        say(`${err.message}; retrying (${i}/${tries - 1})…`, "error");
        await new Promise((r) => setTimeout(r, 400 * 2 ** i));
      }
    }
  }

  /** An object URL for an item's PNG, fetched with the Authorization header (cached). */
  function imageUrl(itemId, scale) {
    const key = `${itemId}@${scale}`;
    let p = state.images.get(key);
    if (p) {
      state.images.delete(key); // refresh its LRU position
    } else {
      p = api("GET", `/api/items/${enc(itemId)}/image?scale=${scale}`, undefined, true)
        .then((resp) => resp.blob())
        .then((blob) => URL.createObjectURL(blob));
      p.catch(() => state.images.delete(key));
    }
    state.images.set(key, p);
    while (state.images.size > IMAGE_CACHE) {
      const [oldKey, oldP] = state.images.entries().next().value;
      state.images.delete(oldKey);
      oldP.then((u) => URL.revokeObjectURL(u), () => {});
    }
    return p;
  }

  // --- rendering ---------------------------------------------------------------------------

  function buildKeyMap() {
    // Digit data sets (classes named "0".."9") keep the obvious mapping: key 3 = class "3".
    // Otherwise keys 1..9 pick classes 0..8 and 0 picks class 9, like a keyboard row.
    const natural = state.classes.length <= 10
      && state.classes.every((c, i) => String(c).trim() === String(i));
    state.keyToClass = new Map();
    state.classToKey = [];
    for (let i = 0; i < Math.min(10, state.classes.length); i += 1) {
      const key = natural ? String(i) : String((i + 1) % 10);
      state.keyToClass.set(key, i);
      state.classToKey[i] = key;
    }
    const help = $("help-digits");
    help.replaceChildren();
    if (!state.classes.length) {
      help.textContent = "No classes yet.";
      return;
    }
    const mapping = state.classToKey.map((k, i) => `${k} → ${className(i)}`).join(", ");
    help.append(el("kbd", { text: "0" }), "–", el("kbd", { text: "9" }),
      ` choose a class (${mapping})`);
    if (state.classes.length > 10) help.append("; classes past the tenth: click their button");
  }

  function renderClassButtons() {
    const box = $("class-buttons");
    box.replaceChildren();
    state.classes.forEach((name, i) => {
      const key = state.classToKey[i];
      const b = el("button", {
        type: "button", className: "class-button", "aria-pressed": "false",
        dataset: { cls: String(i) },
        "aria-label": key !== undefined ? `${name} (key ${key})` : String(name),
      });
      if (key !== undefined) {
        b.setAttribute("aria-keyshortcuts", key);
        b.append(el("kbd", { text: key }));
      }
      b.append(el("span", { className: "class-name", text: name }));
      b.addEventListener("click", () => choose(i));
      box.append(b);
    });
    if (!state.classes.length) {
      box.append(el("p", { className: "hint", text: "No classes yet: no data set ingested." }));
    }
  }

  function choose(idx) {
    if (!state.current || state.busy || idx < 0 || idx >= state.classes.length) return;
    state.chosen = idx;
    for (const b of $("class-buttons").querySelectorAll(".class-button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.cls) === idx));
    }
    updateButtons();
    say(`Chosen: ${className(idx)}. Press Enter (or click Submit) to label.`);
  }

  function updateButtons() {
    const has = !!state.current;
    $("submit").disabled = state.busy || !has || state.chosen === null;
    $("skip").disabled = state.busy || !has;
    for (const b of document.querySelectorAll("[data-action]")) b.disabled = state.busy || !has;
    for (const b of $("class-buttons").querySelectorAll(".class-button")) {
      b.disabled = state.busy || !has;
    }
    $("undo").disabled = state.busy || !state.history.some((h) => !h.retracted);
    $("done-count").textContent = String(state.done);
    $("queue-info").textContent = state.tasks.length
      ? `${state.tasks.length} task${state.tasks.length === 1 ? "" : "s"} held` : "";
  }

  function setBusy(busy) {
    state.busy = busy;
    document.body.classList.toggle("busy", busy);
    updateButtons();
  }

  function renderLast() {
    const last = state.history[state.history.length - 1];
    $("last").hidden = !last;
    if (!last) return;
    $("last-item").textContent = last.item_id;
    $("last-class").textContent = last.class_name;
    $("last-rationale").textContent = last.rationale || "(none)";
    $("last-state").textContent = last.retracted ? "retracted (undone)" : "saved";
    $("last").classList.toggle("retracted", last.retracted);
  }

  function renderWhy(task) {
    const r = task.reason || {};
    const strategy = String(r.strategy || "unknown");
    const coldStart = !task.model_version && strategy === "random";
    const why = $("why-strategy");
    why.replaceChildren(el("strong", { text: strategy }), " · ");
    if (coldStart) {
      why.append("Cold start: picked at random before any model existed, so the model has "
        + "something to learn from.");
    } else {
      why.append(STRATEGY_TEXT[strategy] || "Proposed by the selection service.");
      if (typeof r.score === "number") why.append(` Score ${fmt(r.score)}.`);
    }
    $("why-predicted").replaceChildren();
    if (typeof r.predicted_class === "number") {
      $("why-predicted").append("The model currently guesses ",
        el("strong", { className: "predicted", text: className(r.predicted_class) }),
        ". Label what you see, not what it guesses.");
    } else {
      $("why-predicted").textContent = "No model guess yet.";
    }
    const dl = $("why-metrics");
    dl.replaceChildren();
    const maxNats = Math.log(Math.max(2, state.classes.length));
    const ranked = SCORE_FIELD[strategy];
    for (const [field, label, help] of METRICS) {
      const v = r[field];
      if (typeof v !== "number") continue;
      const scaled = field === "margin" || field === "least_confidence" ? v : v / maxNats;
      const dt = el("dt", {}, el("span", { text: label }));
      if (field === ranked) dt.append(el("span", { className: "badge", text: "ranked by" }));
      const meter = el("meter", {
        min: "0", max: "1", value: String(Math.max(0, Math.min(1, scaled))),
        "aria-label": `${label} relative to its maximum`,
      });
      const dd = el("dd", {}, el("span", { className: "metric-value", text: fmt(v) }), meter,
        el("span", { className: "metric-help", text: help }));
      dl.append(dt, dd);
    }
    if (!dl.childElementCount) {
      dl.append(el("dd", { className: "hint metrics-empty",
        text: "No uncertainty numbers: no model yet." }));
    }
    const list = $("neighbours");
    list.replaceChildren();
    const neighbours = Array.isArray(r.neighbours) ? r.neighbours : [];
    $("no-neighbours").hidden = neighbours.length > 0;
    for (const n of neighbours) {
      const img = el("img", {
        className: "thumb", alt: `Labeled look-alike ${n.item_id}, class ${className(n.label)}`,
        width: "64", height: "64",
      });
      imageUrl(n.item_id, THUMB_SCALE).then((u) => { img.src = u; }, () => {
        img.alt = `(image of ${n.item_id} unavailable)`;
      });
      const sim = typeof n.similarity === "number" ? `${Math.round(n.similarity * 100)}% similar` : "";
      list.append(el("li", { className: "neighbour" }, img,
        el("span", { className: "neighbour-class", text: className(n.label) }),
        el("span", { className: "neighbour-sim", text: sim }),
        el("span", { className: "neighbour-id", text: n.item_id })));
    }
  }

  function showTask(task) {
    const changed = !state.current || state.current.task_id !== task.task_id;
    state.current = task;
    $("empty").hidden = true;
    $("task").hidden = false;
    if (changed) {
      state.chosen = null;
      // A button clicked for the previous task must not catch this task's keys.
      const active = document.activeElement;
      if (active && active !== document.body && active.closest(".actions")) active.blur();
      $("rationale").value = "";
      for (const b of $("class-buttons").querySelectorAll(".class-button")) {
        b.setAttribute("aria-pressed", "false");
      }
      const img = $("item-image");
      img.removeAttribute("src");
      img.alt = `Item ${task.item_id} to label`;
      imageUrl(task.item_id, IMAGE_SCALE).then((u) => {
        if (state.current === task) img.src = u;
      }, (err) => { if (state.current === task) sayError(err); });
    }
    $("item-id").textContent = task.item_id;
    const same = state.tasks.filter((t) => t.batch_id === task.batch_id && t.group === task.group);
    $("group-info").textContent = `group ${task.group} of batch ${task.batch_id}`;
    if (!task.model_version) {
      $("group-note").textContent = "Cold-start batch: random picks, not yet grouped by look.";
    } else {
      $("group-note").textContent = same.length > 1
        ? `Look-alikes come together: ${same.length} of your tasks are from this group.`
        : "Your last task from this group of look-alikes.";
    }
    $("model-version").textContent = task.model_version || "none yet (cold start)";
    const until = task.lease_expires_at ? new Date(task.lease_expires_at) : null;
    $("lease").textContent = until && !Number.isNaN(until.getTime())
      ? until.toLocaleTimeString() : "–";
    if (state.skipped.has(task.item_id)) say(`You skipped item ${task.item_id} before.`);
    renderWhy(task);
    updateButtons();
  }

  function showEmpty() {
    state.current = null;
    state.chosen = null;
    $("task").hidden = true;
    $("empty").hidden = false;
    $("empty").textContent = "The queue is empty: nothing to label right now. Checking again "
      + `every ${POLL_MS / 1000} s (last check ${new Date().toLocaleTimeString()}).`;
    updateButtons();
  }

  // --- the queue ---------------------------------------------------------------------------

  function schedulePoll() {
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(refill, POLL_MS);
  }

  async function refill() {
    clearTimeout(state.pollTimer);
    if (!state.token) return;
    if (!state.classes.length) await loadClasses();
    let tasks;
    try {
      tasks = await api("POST", "/api/tasks/next", { n: LEASE_N });
    } catch (err) {
      if (err.status !== 401) {
        sayError(err);
        schedulePoll();
      }
      return;
    }
    // Items skipped earlier go last, keeping the server's order otherwise.
    state.tasks = tasks.filter((t) => !state.skipped.has(t.item_id))
      .concat(tasks.filter((t) => state.skipped.has(t.item_id)));
    if (!state.tasks.length) {
      showEmpty();
      schedulePoll();
      return;
    }
    const keep = state.current && state.tasks.find((t) => t.task_id === state.current.task_id);
    showTask(keep || state.tasks[0]);
    for (const t of state.tasks.slice(0, LEASE_N)) imageUrl(t.item_id, IMAGE_SCALE).catch(() => {});
  }

  function finishTask(task) {
    state.tasks = state.tasks.filter((t) => t.task_id !== task.task_id);
    if (state.current && state.current.task_id === task.task_id) state.current = null;
    if (state.tasks.length) {
      showTask(state.tasks[0]);
    } else {
      updateButtons();
      refill();
    }
  }

  function taskError(err, task) {
    sayError(err);
    if (err.status === 404 || err.status === 409) {
      // The lease expired or the task is gone: move on to the next one.
      say(`Error (${err.status}): ${err.message}. Moving on to the next task.`, "error");
      state.tasks = state.tasks.filter((t) => t.task_id !== task.task_id);
      state.current = null;
      updateButtons(); // nothing to act on until the refill below shows a task
      refill(); // ask the server what is still ours (other leases may have lapsed too)
    }
  }

  async function submitLabel() {
    if (state.busy || !state.current || state.chosen === null) return;
    const task = state.current;
    const label = state.chosen;
    const rationale = $("rationale").value;
    const key = `${task.task_id}|${label}`;
    if (!state.pendingIds.has(key)) state.pendingIds.set(key, newLabelId());
    const labelId = state.pendingIds.get(key);
    setBusy(true);
    say(`Saving “${className(label)}” for item ${task.item_id}…`);
    try {
      const out = await withRetry(() => api("POST", `/api/tasks/${enc(task.task_id)}/label`,
        { label, rationale, label_id: labelId }));
      state.pendingIds.delete(key);
      state.skipped.delete(task.item_id);
      state.done += 1;
      state.history.push({ label_id: out.label_id, item_id: out.item_id || task.item_id,
        class_name: className(label), rationale, retracted: false });
      renderLast();
      say(`Labeled item ${task.item_id} as “${className(label)}”.`, "ok");
      setBusy(false);
      finishTask(task);
    } catch (err) {
      setBusy(false);
      taskError(err, task);
    }
  }

  async function quickAction(action) {
    if (state.busy || !state.current) return;
    const task = state.current;
    const rationale = $("rationale").value;
    setBusy(true);
    try {
      await api("POST", `/api/tasks/${enc(task.task_id)}/action`, { action, rationale });
      state.skipped.delete(task.item_id);
      say(`${ACTION_TEXT[action]} item ${task.item_id}.`, "ok");
      setBusy(false);
      finishTask(task);
    } catch (err) {
      setBusy(false);
      taskError(err, task);
    }
  }

  async function skip() {
    if (state.busy || !state.current) return;
    const task = state.current;
    setBusy(true);
    try {
      await api("POST", `/api/tasks/${enc(task.task_id)}/release`);
      state.skipped.add(task.item_id);
      say(`Skipped item ${task.item_id}: it went back to the queue.`);
      setBusy(false);
      finishTask(task);
    } catch (err) {
      setBusy(false);
      taskError(err, task);
    }
  }

  async function undo() {
    if (state.busy) return;
    const last = [...state.history].reverse().find((h) => !h.retracted);
    if (!last) {
      say("Nothing to undo.");
      return;
    }
    setBusy(true);
    try {
      await api("POST", `/api/labels/${enc(last.label_id)}/retract`,
        { reason: "undone by the annotator" });
      last.retracted = true;
      state.done = Math.max(0, state.done - 1);
      say(`Retracted your label “${last.class_name}” for item ${last.item_id}.`, "ok");
    } catch (err) {
      sayError(err);
    } finally {
      setBusy(false);
      renderLast();
    }
  }

  // --- keyboard ----------------------------------------------------------------------------

  function isTyping(target) {
    return !!(target && target.closest
      && target.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])"));
  }

  function onKey(ev) {
    if (ev.defaultPrevented || ev.isComposing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (isTyping(ev.target)) {
      if (ev.key === "Escape" && ev.target === $("rationale")) ev.target.blur();
      return;
    }
    if (!state.token || $("workspace").hidden) return;
    const key = ev.key;
    if (state.keyToClass.has(key)) {
      ev.preventDefault();
      choose(state.keyToClass.get(key));
      return;
    }
    if (key === "Enter") {
      // With a class chosen, Enter always submits (even if, say, Skip still has focus from
      // a click); otherwise a focused button keeps its usual meaning.
      if (state.chosen === null && ev.target.closest && ev.target.closest("button")) return;
      ev.preventDefault();
      if (!ev.repeat) submitLabel();
      return;
    }
    if (ev.repeat) return;
    const lower = key.length === 1 ? key.toLowerCase() : "";
    if (ACTION_KEYS[lower]) {
      ev.preventDefault();
      quickAction(ACTION_KEYS[lower]);
    } else if (lower === "u") {
      ev.preventDefault();
      undo();
    }
  }

  // --- start -------------------------------------------------------------------------------

  async function loadClasses() {
    try {
      state.classes = await api("GET", "/api/classes");
    } catch (err) {
      if (err.status !== 401) sayError(err);
      return;
    }
    buildKeyMap();
    renderClassButtons();
  }

  async function start(token) {
    state.token = token;
    $("token-panel").hidden = true;
    say("Signing in…");
    try {
      state.me = await api("GET", "/api/me");
    } catch (err) {
      if (err.status !== 401) sayError(err);
      return;
    }
    $("who").textContent = `${state.me.name} · ${state.me.role}`;
    $("signout").hidden = false;
    $("workspace").hidden = false;
    await loadClasses();
    say(`Signed in as ${state.me.name}. Leasing tasks…`);
    await refill();
    if (state.current && $("status").textContent.startsWith("Signed in")) {
      say(`Signed in as ${state.me.name}. Pick a class (keys shown on the buttons), then Enter.`);
    }
  }

  function init() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      $("token-input").value = "";
      if (!t) return;
      storage("set", t);
      start(t);
    });
    $("signout").addEventListener("click", () => {
      showTokenForm();
      say("Signed out.");
    });
    $("submit").addEventListener("click", submitLabel);
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    for (const b of document.querySelectorAll("[data-action]")) {
      b.addEventListener("click", () => quickAction(b.dataset.action));
    }
    document.addEventListener("keydown", onKey);
    window.addEventListener("unhandledrejection", (ev) => sayError(ev.reason));
    updateButtons();
    const token = takeToken();
    if (token) {
      start(token);
    } else {
      showTokenForm();
      say("Paste your access token to start labeling.");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
