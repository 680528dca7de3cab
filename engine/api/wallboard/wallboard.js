// The wallboard (docs/wallboard.md). Plain JavaScript, no framework and no build step.
//
// Data flow: the event WebSocket is opened first and its messages held, then the snapshot is
// read from the API (agents, queues, campaigns, trunks, today's report); the held messages
// are applied on top. After that every message goes into a queue that is applied once per
// animation frame: the model is updated, and only the rows it touched are written to the
// DOM (keyed rows, never a full re-render). The time each applied batch takes is measured
// (performance.now()) and kept in window.wallboard.metrics for tests and the benchmark.
//
// Resume: the page remembers the last sequence number it applied; after a drop it reconnects
// with ?since=<seq> and the engine sends what it missed. A `gap` notice (history no longer
// retained) makes the page read the snapshot again. No polling: between events nothing is
// fetched; a clock tick only redraws times (time in state, longest wait).
"use strict";
(() => {
  const TOKEN_KEY = "wallboard.token";
  const CONFIG_KEY = "wallboard.config";
  const ENDPOINT_KEY = "wallboard.spy_endpoint";
  // Alert thresholds (docs/wallboard.md "Alerts"); overridable per browser with
  // localStorage["wallboard.config"] = JSON.
  const DEFAULTS = {
    slTargetPct: 80, // a queue's service level below this is an alert
    queueAbandonPct: 10, // a queue's abandon % at or above this is a warning
    abandonNearPct: 80, // a campaign at this share of its abandon limit is a warning
    reconnectMinMs: 250,
    reconnectMaxMs: 10000,
  };
  const config = Object.assign({}, DEFAULTS, readJson(localStorage.getItem(CONFIG_KEY)));
  const RING = 20000; // samples kept per metric

  const $ = (id) => document.getElementById(id);
  const metrics = {
    batches: 0, // applied batches (animation frames with at least one message)
    events: 0, // events applied
    updateMs: [], // time per applied batch, ms (ring)
    batchSizes: [], // events per batch (ring, aligned with updateMs)
    tickMs: [], // time per clock tick (times redrawn), ms
    latencyMs: [], // event ts (engine) -> DOM written (page), ms, agent events
    agentSeen: {}, // agent id -> {state, seq, latencyMs} of its last applied change
    connects: 0,
    reconnects: 0,
    resumes: [], // the `since` of each reconnect that resumed
    gaps: 0,
    missing: 0, // sequence jumps without a gap notice (must stay 0)
    snapshots: 0,
    lastSeq: null,
    ignored: 0,
    historyReads: 0, // interval reports read into the chart (GET /v1/reports/queues)
  };
  const wallboard = { metrics, config, holdReconnect: false };
  window.wallboard = wallboard;

  // ------------------------------------------------------------------ model
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let skewMs = 0; // engine wall clock - this browser's
  const agents = new Map(); // id -> agent
  const queues = new Map(); // name -> queue
  const campaigns = new Map(); // id -> campaign
  const trunks = new Map(); // name -> trunk
  const dirty = { agents: new Set(), queues: new Set(), campaigns: new Set(), trunks: new Set() };
  let alertsDirty = true;
  let chartDirty = true;
  let selected = null;
  const chart = { dayStart: 0, historyUntil: 0, offered: new Array(96).fill(0),
    answered: new Array(96).fill(0), abandoned: new Array(96).fill(0), rects: null };

  const now = () => (Date.now() + skewMs) / 1000; // engine seconds

  function readJson(text) {
    try { return text ? JSON.parse(text) : {}; } catch { return {}; }
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, body, path) {
      super((body && body.message) || `${path}: HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch { data = null; }
    if (!r.ok) throw new ApiError(r.status, data, path);
    return data;
  }

  // ------------------------------------------------------------------ formatting
  function dur(s) {
    if (s == null || !isFinite(s)) return "-";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(2, "0"), rr = String(r).padStart(2, "0");
    return h ? `${h}:${mm}:${rr}` : `${m}:${rr}`;
  }
  const pct = (v) => (v == null ? "-" : `${v.toFixed(1)}%`);
  const secs = (v) => (v == null ? "-" : `${Math.round(v)}s`);
  const STATE_LABEL = { logged_out: "logged out", available: "available", reserved: "ringing",
    on_call: "on call", wrap_up: "wrap-up", paused: "paused" };

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }
  function cell(tr, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  // ------------------------------------------------------------------ agents
  function agentCard(a) {
    const div = document.createElement("div");
    div.className = "agent";
    div.dataset.id = a.id;
    const n = document.createElement("div"); n.className = "n";
    const s = document.createElement("div"); s.className = "s";
    const st = document.createElement("span"), t = document.createElement("span");
    s.append(st, t);
    const i = document.createElement("div"); i.className = "i";
    div.append(n, s, i);
    a.el = { div, n, st, t, i };
    setText(n, a.name === a.id ? a.id : `${a.name} (${a.id})`);
    return div;
  }

  function renderAgent(a) {
    const e = a.el;
    if (!e) return;
    if (e.div.dataset.state !== a.state) e.div.dataset.state = a.state;
    setText(e.st, STATE_LABEL[a.state] || a.state);
    setText(e.t, a.state === "logged_out" ? "" : dur(now() - a.since));
    let info = "";
    if (a.state === "paused") info = a.pause ? `reason: ${a.pause}` : "";
    else if (a.call || a.queue) info = [a.queue, a.call && a.call.slice(0, 8)].filter(Boolean).join(" \u00b7 ");
    setText(e.i, info);
    if (selected === a.id) renderPanel();
  }

  function countIn(q, state, sign) {
    if (state === "available") q.available += sign;
    if (state !== "logged_out") q.staffed += sign;
  }

  function agentChanged(ev, seq) {
    const a = agents.get(ev.agent_id);
    if (!a) return false;
    if (ev.ts < a.since - 1e-6) return false; // older than what the snapshot said
    if (a.state !== ev.state) {
      for (const name of a.queues) {
        const q = queues.get(name);
        if (!q) continue;
        countIn(q, a.state, -1);
        countIn(q, ev.state, +1);
        dirty.queues.add(name);
      }
    }
    a.state = ev.state;
    a.since = ev.ts;
    a.pause = ev.pause_reason || null;
    a.call = ev.call_id || null;
    a.queue = ev.queue || null;
    a.seq = seq;
    a.ts = ev.ts;
    dirty.agents.add(a.id);
    return true;
  }

  function agentMoved(ev) {
    // A supervisor's move (docs/supervisor.md): the agent's queues are its roster from now on,
    // so its state leaves the staffing of the queues it left and joins the new ones'.
    const a = agents.get(ev.agent_id);
    if (!a || !Array.isArray(ev.queues)) return false;
    const next = ev.queues.filter((name) => queues.has(name));
    for (const name of a.queues) {
      if (next.includes(name)) continue;
      countIn(queues.get(name), a.state, -1);
      dirty.queues.add(name);
    }
    for (const name of next) {
      if (a.queues.includes(name)) continue;
      countIn(queues.get(name), a.state, +1);
      dirty.queues.add(name);
    }
    a.queues = next;
    dirty.agents.add(a.id);
    return true;
  }

  function summarizeAgents() {
    const by = {};
    for (const a of agents.values()) by[a.state] = (by[a.state] || 0) + 1;
    const order = ["available", "reserved", "on_call", "wrap_up", "paused", "logged_out"];
    setText($("agent-summary"), order.filter((s) => by[s]).map((s) => `${STATE_LABEL[s]} ${by[s]}`).join(" \u00b7 "));
  }

  // ------------------------------------------------------------------ queues
  function queueRow(q) {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.name;
    q.el = { tr, name: cell(tr), waiting: cell(tr), longest: cell(tr), sl: cell(tr), asa: cell(tr),
      aht: cell(tr), abandon: cell(tr), agents: cell(tr) };
    setText(q.el.name, q.name);
    return tr;
  }

  function longestWait(q) {
    let oldest = Infinity;
    for (const t of q.waiting.values()) if (t < oldest) oldest = t;
    return oldest === Infinity ? 0 : now() - oldest;
  }

  function renderQueue(q) {
    const e = q.el;
    if (!e) return;
    const k = q.kpis;
    setText(e.waiting, String(q.waiting.size));
    setText(e.longest, q.waiting.size ? dur(longestWait(q)) : "-");
    const sl = k.service_level_pct;
    setText(e.sl, sl == null ? `- / ${config.slTargetPct}%` : `${sl.toFixed(0)}% / ${config.slTargetPct}%`);
    e.sl.className = sl == null ? "" : sl < config.slTargetPct ? "bad" : "good";
    setText(e.asa, secs(k.asa_s));
    setText(e.aht, secs(k.aht_s));
    setText(e.abandon, pct(k.abandon_pct));
    e.abandon.className = k.abandon_pct != null && k.abandon_pct >= config.queueAbandonPct ? "warn" : "";
    setText(e.agents, `${q.available} / ${q.staffed}`);
    e.agents.className = q.staffed > 0 && q.available === 0 && q.waiting.size ? "warn" : "";
    alertsDirty = true;
  }

  function queueStats(ev) {
    const q = queues.get(ev.queue);
    if (!q) return;
    q.kpis = ev;
    if (ev.waiting !== q.waiting.size) resyncQueue(q.name); // missed an end we do not model
    dirty.queues.add(q.name);
  }

  const resyncing = new Set();
  async function resyncQueue(name) {
    if (resyncing.has(name)) return;
    resyncing.add(name);
    try {
      const view = await api("GET", `/v1/queues/${encodeURIComponent(name)}`);
      const q = queues.get(name);
      if (q) {
        q.waiting = waitingOf(view);
        dirty.queues.add(name);
        schedule();
      }
    } catch (err) {
      console.warn("queue resync failed", name, err);
    } finally {
      resyncing.delete(name);
    }
  }

  function waitingOf(view) {
    const t = now();
    return new Map(view.waiting.map((w) => [w.entry_id, t - w.wait_s]));
  }

  // ------------------------------------------------------------------ campaigns
  function campaignRow(c) {
    const tr = document.createElement("tr");
    tr.dataset.campaign = c.id;
    c.el = { tr, name: cell(tr), state: cell(tr), level: cell(tr), abandon: cell(tr), left: cell(tr),
      eta: cell(tr), ctl: cell(tr) };
    setText(c.el.name, c.id);
    const g = document.createElement("span");
    g.className = "gauge";
    const bar = document.createElement("i");
    g.appendChild(bar);
    const label = document.createElement("span");
    c.el.abandon.append(g, label);
    c.el.gauge = g; c.el.bar = bar; c.el.abandonLabel = label;
    const btn = document.createElement("button");
    btn.type = "button";
    c.el.ctl.appendChild(btn);
    c.el.button = btn;
    return tr;
  }

  function campaignAbandon(c) {
    // The live estimate of the runner (the legal period) when this engine runs it, else the
    // period's figure from the stats route, kept up to date by the campaign's events.
    if (c.live && c.live.abandon_estimate_pct != null) return c.live.abandon_estimate_pct;
    return c.period.human ? (100 * c.period.abandoned) / c.period.human : 0;
  }

  function eta(c) {
    const t = now();
    c.finishes = c.finishes.filter((x) => x >= t - 900);
    if (c.left === 0) return "done";
    if (c.finishes.length < 2) return "-";
    const span = Math.max(60, t - c.finishes[0]);
    const rate = c.finishes.length / span;
    return dur(c.left / rate);
  }

  function renderCampaign(c) {
    const e = c.el;
    if (!e) return;
    setText(e.state, c.state + (c.live && c.live.guard_tripped ? " (guard)" : ""));
    setText(e.level, c.live ? c.live.dial_level.toFixed(2) : "-");
    const ab = campaignAbandon(c);
    const share = c.limitPct > 0 ? (100 * ab) / c.limitPct : 0;
    e.bar.style.width = `${Math.min(100, share).toFixed(1)}%`;
    e.gauge.className = "gauge" + (share >= 100 ? " bad" : share >= config.abandonNearPct ? " warn" : "");
    setText(e.abandonLabel, `${ab.toFixed(2)}% / ${c.limitPct}%`);
    setText(e.left, c.left == null ? "-" : String(c.left));
    setText(e.eta, c.left == null ? "-" : eta(c));
    const running = c.state === "running";
    e.button.hidden = !(running || c.state === "paused");
    setText(e.button, running ? "Pause" : "Resume");
    e.button.dataset.action = running ? "campaign-pause" : "campaign-resume";
    e.button.dataset.route = running ? "POST /v1/campaigns/{id}/pause" : "POST /v1/campaigns/{id}/start";
    e.button.dataset.campaign = c.id;
    alertsDirty = true;
  }

  async function loadCampaign(row) {
    // The limit from the campaign's spec, so a draft or stopped one (no stats read) does not
    // show "/ 0%"; the stats route's figure replaces it for a running or paused one.
    const limit = row.spec && typeof row.spec.abandon_limit === "number" ? row.spec.abandon_limit : 0;
    const c = {
      id: row.id, state: row.state, limitPct: Math.round(limit * 10000) / 100,
      period: { human: 0, abandoned: 0 }, left: null, finishes: [], live: null, el: null,
    };
    if (row.state === "running" || row.state === "paused") {
      try {
        const s = await api("GET", `/v1/campaigns/${encodeURIComponent(row.id)}/stats`);
        c.limitPct = s.abandon_limit_pct;
        c.period = { human: s.period.human, abandoned: s.period.abandoned };
        let total = 0;
        for (const [st, n] of Object.entries(s.contacts.by_state)) if (st !== "done") total += n;
        c.left = total;
        c.live = s.live;
        c.state = s.state;
      } catch (err) {
        console.warn("campaign stats failed", row.id, err);
      }
    }
    return c;
  }

  // ------------------------------------------------------------------ trunks
  function trunkRow(t) {
    const tr = document.createElement("tr");
    tr.dataset.trunk = t.name;
    t.el = { tr, name: cell(tr), state: cell(tr), channels: cell(tr), cps: cell(tr), failure: cell(tr) };
    setText(t.el.name, t.name);
    return t.el.tr;
  }

  function failureText(f) {
    if (!f) return "-";
    const when = f.at ? new Date(f.at * 1000 - skewMs).toLocaleTimeString() : "";
    const what = [f.sip_code, f.cause_text || f.text || f.cause].filter((x) => x != null && x !== "").join(" ");
    return `${what || "failure"} ${when}`.trim();
  }

  function renderTrunk(t) {
    const e = t.el;
    if (!e) return;
    setText(e.state, t.admin === "drained" ? `${t.state} (drained)` : t.state);
    e.state.className = t.state === "down" ? "bad" : t.state === "up" ? "good" : "warn";
    setText(e.channels, `${t.in_use} / ${t.max_channels}`);
    setText(e.cps, `${t.cps.toFixed(1)} / ${t.max_cps}`);
    setText(e.failure, failureText(t.last_failure));
    alertsDirty = true;
  }

  // ------------------------------------------------------------------ alerts
  let lastAlerts = "";
  function renderAlerts() {
    const list = [];
    for (const q of queues.values()) {
      const sl = q.kpis.service_level_pct;
      if (sl != null && sl < config.slTargetPct)
        list.push(["bad", `queue ${q.name}: service level ${sl.toFixed(0)}% below target ${config.slTargetPct}%`]);
      const ab = q.kpis.abandon_pct;
      if (ab != null && ab >= config.queueAbandonPct)
        list.push(["warn", `queue ${q.name}: abandon ${ab.toFixed(1)}%`]);
    }
    for (const c of campaigns.values()) {
      if (c.limitPct <= 0 || (c.state !== "running" && c.state !== "paused")) continue;
      const ab = campaignAbandon(c);
      const share = (100 * ab) / c.limitPct;
      if (share >= 100) list.push(["bad", `campaign ${c.id}: abandon ${ab.toFixed(2)}% at or over its limit ${c.limitPct}%`]);
      else if (share >= config.abandonNearPct)
        list.push(["warn", `campaign ${c.id}: abandon ${ab.toFixed(2)}% near its limit ${c.limitPct}%`]);
    }
    for (const t of trunks.values()) {
      if (t.state === "down") list.push(["bad", `trunk ${t.name} is down${t.last_failure ? ": " + failureText(t.last_failure) : ""}`]);
    }
    const key = list.map((x) => x.join(":")).join("|");
    if (key === lastAlerts) return;
    lastAlerts = key;
    const ul = $("alert-list");
    const frag = document.createDocumentFragment();
    for (const [level, text] of list) {
      const li = document.createElement("li");
      li.className = level;
      li.textContent = text;
      frag.appendChild(li);
    }
    if (!list.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "none";
      frag.appendChild(li);
    }
    ul.replaceChildren(frag);
    setText($("alert-count"), String(list.length));
    $("alerts").dataset.any = list.length ? "1" : "0";
  }

  // ------------------------------------------------------------------ chart
  function bucketOf(ts) {
    const i = Math.floor((ts * 1000 - chart.dayStart) / 900000);
    return i >= 0 && i < 96 ? i : -1;
  }
  // A wall display runs for days: at local midnight "today" starts again with empty bars.
  // (The chart used to keep yesterday's bars, and every call after midnight fell outside its
  // 96 intervals, until the page was reloaded.) By the clock tick, and by an event's time.
  function rollDay(sec) {
    if (!chart.dayStart) return;
    const d = new Date(sec * 1000);
    d.setHours(0, 0, 0, 0);
    if (d.getTime() <= chart.dayStart) return;
    chart.dayStart = d.getTime();
    for (const k of ["offered", "answered", "abandoned"]) chart[k].fill(0);
    chartDirty = true;
  }
  function countCall(kind, ev) {
    if (ev.ts < chart.historyUntil) return; // already in the report
    rollDay(ev.ts);
    const i = bucketOf(ev.ts);
    if (i < 0) return;
    chart[kind][i] += 1;
    chartDirty = true;
  }

  function renderChart() {
    const svg = $("chart");
    const ns = "http://www.w3.org/2000/svg";
    if (!chart.rects) {
      chart.rects = [];
      for (let i = 0; i < 96; i++) {
        const g = document.createElementNS(ns, "g");
        const r = {};
        for (const k of ["offered", "answered", "abandoned"]) {
          const rect = document.createElementNS(ns, "rect");
          rect.setAttribute("class", k);
          g.appendChild(rect);
          r[k] = rect;
        }
        svg.appendChild(g);
        chart.rects.push(r);
      }
      for (let h = 0; h <= 24; h += 3) {
        const text = document.createElementNS(ns, "text");
        text.setAttribute("x", String(h === 24 ? 958 : h * 40 + 2));
        if (h === 24) text.setAttribute("text-anchor", "end");
        text.setAttribute("y", "158");
        text.textContent = `${String(h).padStart(2, "0")}:00`;
        svg.appendChild(text);
      }
    }
    const max = Math.max(1, ...chart.offered, ...chart.answered.map((a, i) => a + chart.abandoned[i]));
    const H = 145, W = 10;
    for (let i = 0; i < 96; i++) {
      const r = chart.rects[i];
      const x = i * W;
      const o = (chart.offered[i] / max) * H;
      const a = (chart.answered[i] / max) * H;
      const b = (chart.abandoned[i] / max) * H;
      set(r.offered, x + 1, H - o, W - 2, o);
      set(r.answered, x + 3, H - a, W - 6, a);
      set(r.abandoned, x + 3, H - a - b, W - 6, b);
    }
    function set(rect, x, y, w, h) {
      rect.setAttribute("x", x.toFixed(1));
      rect.setAttribute("y", y.toFixed(1));
      rect.setAttribute("width", w.toFixed(1));
      rect.setAttribute("height", h.toFixed(1));
    }
    chartDirty = false;
  }

  // The interval report is another part of the engine (GET /v1/reports/queues, issue 14
  // item 1). Read what it has; without it the chart counts the calls seen since the page
  // opened and says so.
  function reportRows(data) {
    if (Array.isArray(data)) return data;
    for (const k of ["rows", "intervals", "items", "data", "report"]) if (data && Array.isArray(data[k])) return data[k];
    return null;
  }
  function rowTime(row) {
    for (const k of ["interval_start", "start", "from", "bucket", "period_start", "at", "t"]) {
      const v = row[k];
      if (typeof v === "number") return v > 1e11 ? v : v * 1000;
      if (typeof v === "string" && !isNaN(Date.parse(v))) return Date.parse(v);
    }
    return null;
  }
  async function loadHistory() {
    const d = new Date(Date.now() + skewMs);
    d.setHours(0, 0, 0, 0);
    chart.dayStart = d.getTime();
    for (const k of ["offered", "answered", "abandoned"]) chart[k].fill(0);
    const until = Date.now() + skewMs;
    const qs = new URLSearchParams({ from: new Date(chart.dayStart).toISOString(),
      to: new Date(until).toISOString(), interval: "15m" });
    const note = $("chart-note");
    try {
      const data = await api("GET", `/v1/reports/queues?${qs}`);
      const rows = reportRows(data);
      if (!rows) throw new Error("the report has no rows this page understands");
      for (const row of rows) {
        const t = rowTime(row);
        if (t == null) continue;
        const i = Math.floor((t - chart.dayStart) / 900000);
        if (i < 0 || i >= 96) continue;
        for (const k of ["offered", "answered", "abandoned"]) if (typeof row[k] === "number") chart[k][i] += row[k];
      }
      chart.historyUntil = until / 1000;
      metrics.historyReads += 1;
      setText(note, "");
    } catch (err) {
      chart.historyUntil = 0;
      const why = err instanceof ApiError ? `GET /v1/reports/queues answered ${err.status}` : String(err.message || err);
      setText(note, `History report not available (${why}): the chart counts the calls seen since this page opened.`);
    }
    chartDirty = true;
  }

  // ------------------------------------------------------------------ snapshot
  let buffering = false;
  let snapshotAt = 0; // engine seconds when the last snapshot started
  const held = [];

  async function snapshot() {
    buffering = true;
    metrics.snapshots += 1;
    snapshotAt = now();
    try {
      const [ag, qu, ca, tr] = await Promise.allSettled([
        timedAgents(), api("GET", "/v1/queues"), api("GET", "/v1/campaigns"), api("GET", "/v1/trunks"),
      ]);
      if (ag.status === "fulfilled") applyAgents(ag.value.agents);
      if (qu.status === "fulfilled") {
        applyQueues(qu.value.queues);
        fillQueues(qu.value.queues.map((q) => q.name));
      }
      if (ca.status === "fulfilled") {
        const loaded = await Promise.all(ca.value.campaigns.map(loadCampaign));
        applyCampaigns(loaded);
      }
      if (tr.status === "fulfilled") applyTrunks(tr.value.trunks);
      for (const r of [ag, qu, ca, tr]) {
        if (r.status === "rejected" && r.reason instanceof ApiError && r.reason.status === 401) throw r.reason;
      }
      await loadHistory();
      alertsDirty = true;
    } finally {
      buffering = false;
      for (const m of held.splice(0)) enqueue(m);
      schedule();
    }
  }

  // The engine's clock against this browser's, from an agent's `since + time_in_state_s`
  // (the engine's now when it answered), taken at the middle of the round trip. A difference
  // smaller than half the round trip cannot be told from it and counts as none.
  async function timedAgents() {
    const t0 = Date.now();
    const body = await api("GET", "/v1/agents");
    const t1 = Date.now();
    if (body.agents.length) {
      const a0 = body.agents[0];
      const skew = (a0.since + a0.time_in_state_s) * 1000 - (t0 + t1) / 2;
      skewMs = Math.abs(skew) <= (t1 - t0) / 2 + 50 ? 0 : skew;
    }
    return body;
  }

  function applyAgents(list) {
    const grid = $("agent-grid");
    const frag = document.createDocumentFragment();
    for (const v of list) {
      let a = agents.get(v.id);
      if (!a) {
        a = { id: v.id, name: v.name, queues: [], el: null };
        agents.set(v.id, a);
        frag.appendChild(agentCard(a));
      }
      a.state = v.state;
      a.since = v.since;
      a.pause = v.pause_reason;
      a.call = v.call_id;
      a.queue = v.queue;
      a.queues = [];
      dirty.agents.add(a.id);
    }
    grid.appendChild(frag);
  }

  function applyQueues(list) {
    const body = $("queue-rows");
    const frag = document.createDocumentFragment();
    for (const v of list) {
      let q = queues.get(v.name);
      if (!q) {
        q = { name: v.name, el: null };
        queues.set(v.name, q);
        frag.appendChild(queueRow(q));
      }
      q.kpis = v.kpis;
      q.waiting = waitingOf(v);
      q.available = 0;
      q.staffed = 0;
      for (const [state, ids] of Object.entries(v.agents)) {
        for (const id of ids) {
          const a = agents.get(id);
          if (a && !a.queues.includes(v.name)) a.queues.push(v.name);
          countIn(q, state, +1);
        }
      }
      dirty.queues.add(q.name);
    }
    body.appendChild(frag);
  }

  function applyCampaigns(list) {
    const body = $("campaign-rows");
    const frag = document.createDocumentFragment();
    const order = { running: 0, paused: 1, draft: 2, stopped: 3, finished: 4 };
    list.sort((x, y) => (order[x.state] ?? 9) - (order[y.state] ?? 9) || x.id.localeCompare(y.id));
    for (const c of list) {
      const old = campaigns.get(c.id);
      if (old) {
        c.el = old.el;
        c.finishes = old.finishes;
      } else frag.appendChild(campaignRow(c));
      campaigns.set(c.id, c);
      dirty.campaigns.add(c.id);
    }
    body.appendChild(frag);
  }

  async function refreshCampaign(id) {
    const c = campaigns.get(id);
    if (!c || c.refreshing) return;
    c.refreshing = true;
    try {
      const fresh = await loadCampaign({ id, state: c.state, spec: { abandon_limit: c.limitPct / 100 } });
      Object.assign(c, { limitPct: fresh.limitPct, period: fresh.period, left: fresh.left,
        live: fresh.live || c.live, state: fresh.state });
      dirty.campaigns.add(id);
      schedule();
    } finally {
      c.refreshing = false;
    }
  }

  async function addCampaign(id) {
    if (campaigns.has(id)) return;
    campaigns.set(id, { id, state: "?", limitPct: 0, period: { human: 0, abandoned: 0 }, left: null, finishes: [], live: null, el: null });
    try {
      const row = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}`);
      campaigns.delete(id);
      applyCampaigns([await loadCampaign(row)]);
      schedule();
    } catch (err) {
      console.warn("campaign load failed", id, err);
    }
  }

  function applyTrunks(list) {
    const body = $("trunk-rows");
    const frag = document.createDocumentFragment();
    for (const v of list) {
      let t = trunks.get(v.name);
      if (!t) {
        t = { name: v.name, el: null, cps: 0 };
        trunks.set(v.name, t);
        frag.appendChild(trunkRow(t));
      }
      t.state = v.state;
      t.admin = v.admin;
      t.in_use = v.channels.in_use;
      t.max_channels = v.channels.max;
      t.max_cps = v.cps.max;
      t.last_failure = v.last_failure;
      dirty.trunks.add(t.name);
    }
    body.appendChild(frag);
  }

  // ------------------------------------------------------------------ events
  function applyEvent(ev, seq) {
    switch (ev.type) {
      case "AgentStateChanged":
        return agentChanged(ev, seq);
      case "AgentSupervised":
        if (ev.action === "move") return agentMoved(ev);
        metrics.ignored += 1;
        return false;
      case "QueueCallEntered": {
        const q = queues.get(ev.queue);
        if (q) { q.waiting.set(ev.entry_id, ev.ts); dirty.queues.add(q.name); }
        if (ev.ts >= snapshotAt) countCall("offered", ev);
        return true;
      }
      case "QueueCallConnected":
      case "QueueCallAbandoned": {
        const q = queues.get(ev.queue);
        if (q) { q.waiting.delete(ev.entry_id); dirty.queues.add(q.name); }
        if (ev.ts >= snapshotAt) countCall(ev.type === "QueueCallConnected" ? "answered" : "abandoned", ev);
        return true;
      }
      case "QueueCallOverflowed": {
        const q = queues.get(ev.queue);
        if (q && ev.exit) { q.waiting.delete(ev.entry_id); dirty.queues.add(q.name); }
        return true;
      }
      case "QueueStats":
        queueStats(ev);
        return true;
      case "CampaignStateChanged": {
        const c = campaigns.get(ev.campaign_id);
        if (!c) { addCampaign(ev.campaign_id); return true; }
        c.state = ev.state;
        if (ev.state !== "running") c.live = c.live && Object.assign({}, c.live, { dialing: false });
        // Started after the snapshot: its limit and contacts come from the stats route once.
        if ((ev.state === "running" || ev.state === "paused") && c.left == null) refreshCampaign(c.id);
        dirty.campaigns.add(c.id);
        return true;
      }
      case "CampaignStats": {
        const c = campaigns.get(ev.campaign_id);
        if (!c) { addCampaign(ev.campaign_id); return true; }
        c.live = ev;
        dirty.campaigns.add(c.id);
        return true;
      }
      case "ContactFinished": {
        const c = campaigns.get(ev.campaign_id);
        if (!c || ev.ts < snapshotAt) return true;
        if (c.left != null) c.left = Math.max(0, c.left - 1);
        c.finishes.push(ev.ts);
        dirty.campaigns.add(c.id);
        return true;
      }
      case "AttemptEnded": {
        const c = campaigns.get(ev.campaign_id);
        if (c && ev.ts >= snapshotAt && (ev.outcome === "human" || ev.outcome === "abandoned")) {
          c.period.human += 1;
          dirty.campaigns.add(c.id);
        }
        return true;
      }
      case "CallAbandoned": {
        const c = campaigns.get(ev.campaign_id);
        if (c && ev.ts >= snapshotAt) { c.period.abandoned += 1; dirty.campaigns.add(c.id); }
        return true;
      }
      case "TrunkStateChanged":
      case "TrunkStats": {
        const t = trunks.get(ev.trunk);
        if (!t) return true;
        t.state = ev.state;
        if (ev.admin) t.admin = ev.admin;
        if ("last_failure" in ev) t.last_failure = ev.last_failure;
        if (ev.type === "TrunkStats") {
          t.in_use = ev.in_use;
          t.max_channels = ev.max_channels;
          t.cps = ev.cps;
          t.max_cps = ev.max_cps;
        }
        dirty.trunks.add(t.name);
        return true;
      }
      default:
        metrics.ignored += 1;
        return false;
    }
  }

  let resnapshot = false;
  function applyMessage(m) {
    if (m.gap) {
      // History we cannot have: re-read the state instead of trusting a hole.
      metrics.gaps += 1;
      metrics.lastSeq = m.gap.oldest - 1;
      resnapshot = true;
      return 0;
    }
    if (typeof m.seq !== "number") return 0;
    const last = metrics.lastSeq;
    if (last != null && m.seq <= last) return 0; // delivered already
    if (last != null && m.seq !== last + 1) metrics.missing += m.seq - last - 1;
    metrics.lastSeq = m.seq;
    applyEvent(m.event, m.seq);
    return 1;
  }

  // ------------------------------------------------------------------ frame loop
  let pending = [];
  let scheduled = false;
  function enqueue(m) {
    if (buffering) { held.push(m); return; }
    pending.push(m);
    schedule();
  }
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    // Hidden tabs get no animation frames; a timer keeps the model current there.
    if (document.hidden) setTimeout(frame, 100);
    else requestAnimationFrame(frame);
  }

  function push(list, v) {
    if (list.length >= RING) list.shift();
    list.push(v);
  }

  function frame() {
    scheduled = false;
    const t0 = performance.now();
    const batch = pending;
    pending = [];
    let applied = 0;
    for (const m of batch) applied += applyMessage(m);
    const touched = [];
    for (const id of dirty.agents) { const a = agents.get(id); if (a) { renderAgent(a); touched.push(a); } }
    if (dirty.agents.size) summarizeAgents();
    for (const name of dirty.queues) { const q = queues.get(name); if (q) renderQueue(q); }
    for (const id of dirty.campaigns) { const c = campaigns.get(id); if (c) renderCampaign(c); }
    for (const name of dirty.trunks) { const t = trunks.get(name); if (t) renderTrunk(t); }
    dirty.agents.clear(); dirty.queues.clear(); dirty.campaigns.clear(); dirty.trunks.clear();
    if (alertsDirty) { renderAlerts(); alertsDirty = false; }
    const t1 = performance.now();
    if (batch.length) {
      metrics.batches += 1;
      metrics.events += applied;
      push(metrics.updateMs, t1 - t0);
      push(metrics.batchSizes, batch.length);
      const wall = performance.timeOrigin + t1 + skewMs;
      for (const a of touched) {
        if (a.seq == null) continue;
        const lat = wall - a.ts * 1000;
        push(metrics.latencyMs, lat);
        metrics.agentSeen[a.id] = { state: a.state, seq: a.seq, latencyMs: lat };
        a.seq = null;
      }
    }
    if (resnapshot) {
      resnapshot = false;
      snapshot().catch(fatal);
    }
  }

  // Times move with the clock: redraw them once a second (no request is made).
  function tick() {
    const t0 = performance.now();
    const t = now();
    setText($("clock"), new Date(t * 1000 - skewMs).toLocaleTimeString());
    for (const a of agents.values()) {
      if (a.el && a.state !== "logged_out") setText(a.el.t, dur(t - a.since));
    }
    for (const q of queues.values()) if (q.el) setText(q.el.longest, q.waiting.size ? dur(longestWait(q)) : "-");
    for (const c of campaigns.values()) if (c.el && c.left != null) setText(c.el.eta, eta(c));
    rollDay(t);
    if (chartDirty) renderChart();
    push(metrics.tickMs, performance.now() - t0);
  }

  // ------------------------------------------------------------------ socket
  let ws = null;
  let attempt = 0;
  let signedOut = false;

  function setConn(state) {
    const el = $("conn");
    el.dataset.state = state;
    setText(el, state);
  }

  async function connect() {
    if (signedOut) return;
    setConn(metrics.connects ? "reconnecting" : "connecting");
    const params = new URLSearchParams();
    const protocols = ["telephony-engine.v1"];
    try {
      // A single-use ticket: the token never goes into a URL (docs/events.md).
      const t = await api("POST", "/v1/events/ticket");
      params.set("ticket", t.ticket);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return fatal(err);
      // No ticket service: the token as a subprotocol, which browsers may send.
      protocols.push("bearer." + token);
    }
    const resume = metrics.lastSeq;
    if (resume != null) params.set("since", String(resume));
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const sock = new WebSocket(`${scheme}${location.host}/v1/events?${params}`, protocols);
    ws = sock;
    sock.onopen = () => {
      metrics.connects += 1;
      if (metrics.connects > 1) {
        metrics.reconnects += 1;
        if (resume != null) metrics.resumes.push(resume);
      }
      attempt = 0;
      setConn("live");
      // Nothing to resume from (no event came before the drop): read the state again.
      if (resume == null && metrics.connects > 1) snapshot().catch(fatal);
    };
    sock.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      enqueue(m);
    };
    sock.onclose = () => {
      if (ws === sock) ws = null;
      if (signedOut) return;
      setConn("reconnecting");
      reconnectLater();
    };
  }

  function reconnectLater() {
    const base = Math.min(config.reconnectMaxMs, config.reconnectMinMs * 2 ** attempt);
    attempt += 1;
    const wait = base / 2 + Math.random() * (base / 2);
    setTimeout(function again() {
      if (wallboard.holdReconnect) { setTimeout(again, 50); return; }
      connect().catch(() => reconnectLater());
    }, wait);
  }

  // Test and bench hooks (docs/wallboard.md "Measuring").
  wallboard.dropSocket = () => { if (ws) ws.close(4000, "dropped by the page"); };
  wallboard.connected = () => ws !== null && ws.readyState === WebSocket.OPEN;
  wallboard.resetMetrics = () => {
    for (const k of ["updateMs", "batchSizes", "tickMs", "latencyMs", "longFrames"]) metrics[k] = [];
    metrics.batches = 0;
    metrics.events = 0;
    return metrics.lastSeq;
  };
  // Whole frames (script, style, layout, paint) over 50 ms, where the browser reports them
  // (Chromium's Long Animation Frames API): what the batch timing alone does not see.
  metrics.longFrames = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) push(metrics.longFrames, Math.round(e.duration));
    }).observe({ type: "long-animation-frame", buffered: false });
  } catch {
    metrics.longFrames = null; // not supported by this browser
  }

  // ------------------------------------------------------------------ controls
  function renderPanel() {
    const a = agents.get(selected);
    if (!a) return;
    setText($("panel-agent"), a.name === a.id ? a.id : `${a.name} (${a.id})`);
    const parts = [STATE_LABEL[a.state] || a.state];
    if (a.pause) parts.push(`reason ${a.pause}`);
    if (a.queue) parts.push(`queue ${a.queue}`);
    if (a.call) parts.push(`call ${a.call}`);
    if (a.queues.length) parts.push(`serves ${a.queues.join(", ")}`);
    setText($("panel-detail"), parts.join(" \u00b7 "));
  }

  function select(id) {
    const old = selected && agents.get(selected);
    if (old && old.el) old.el.div.classList.remove("selected");
    selected = id;
    const a = agents.get(id);
    if (!a) { $("panel").hidden = true; return; }
    a.el.div.classList.add("selected");
    $("panel").hidden = false;
    setText($("panel-result"), "");
    if (a.queues.length) $("move-from").value = a.queues[0];
    renderPanel();
  }

  // What each panel button sends (docs/wallboard.md "Controls"): [method, path suffix, body].
  const AGENT_ACTIONS = {
    pause: () => ["POST", "/pause", { reason: $("pause-reason").value }],
    ready: () => ["POST", "/ready"],
    logout: () => ["POST", "/logout"],
    "force-pause": () => {
      const note = $("note").value.trim();
      return ["POST", "/force-pause", note ? { reason: $("pause-reason").value, note } : { reason: $("pause-reason").value }];
    },
    "force-logout": () => ["POST", "/force-logout", { reason: $("note").value.trim() || "logged out by a supervisor" }],
    move: () => ["POST", "/move", { from: $("move-from").value, to: $("move-to").value }],
    spy: (button) => ["POST", "/spy", { mode: button.dataset.mode, endpoint: $("spy-endpoint").value.trim() }],
    "spy-stop": () => ["DELETE", "/spy"],
  };

  async function act(button) {
    const action = button.dataset.action;
    const out = $("panel-result");
    try {
      if (action === "campaign-pause" || action === "campaign-resume") {
        const id = encodeURIComponent(button.dataset.campaign);
        await api("POST", `/v1/campaigns/${id}/${action === "campaign-pause" ? "pause" : "start"}`);
        return;
      }
      const build = AGENT_ACTIONS[action];
      if (!selected || !build) return;
      if (action === "spy") {
        const endpoint = $("spy-endpoint").value.trim();
        if (!endpoint) { setText(out, "Give your own endpoint first (what the engine rings)."); return; }
        localStorage.setItem(ENDPOINT_KEY, endpoint);
      }
      const [method, suffix, body] = build(button);
      await api(method, `/v1/agents/${encodeURIComponent(selected)}${suffix}`, body);
      setText(out, action === "spy" ? `${button.dataset.mode}: ringing ${body.endpoint}` : `${action}: done`);
    } catch (err) {
      let text = err.message;
      if (err instanceof ApiError) {
        // The route itself is missing (not an unknown agent, which names itself).
        if ((err.status === 404 || err.status === 405) && (!err.body || err.body.error_id === "not-found" || err.body.error_id === "method-not-allowed"))
          text = `${button.dataset.route} is not available on this engine (${err.status})`;
        if (err.body && err.body.error_id === "unknown-pause-reason") fillReasons(err.body.details.allowed);
      }
      if (action.startsWith("campaign")) alert(text); else setText(out, text);
    }
  }

  function fillQueues(names) {
    for (const id of ["move-from", "move-to"]) {
      const sel = $(id);
      const keep = sel.value;
      sel.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.textContent = n; return o; }));
      if (names.includes(keep)) sel.value = keep;
    }
  }

  function fillReasons(reasons) {
    const sel = $("pause-reason");
    sel.replaceChildren(...reasons.map((r) => { const o = document.createElement("option"); o.textContent = r; return o; }));
  }

  // ------------------------------------------------------------------ start
  function fatal(err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut("The token is no longer accepted; sign in again.");
      return;
    }
    console.error(err);
  }

  function signOut(message) {
    signedOut = true;
    sessionStorage.removeItem(TOKEN_KEY);
    token = "";
    if (ws) ws.close(1000, "signed out");
    location.hash = "";
    $("board").hidden = true;
    $("login").hidden = false;
    setText($("login-error"), message || "");
  }

  let ticking = 0;
  async function start() {
    signedOut = false;
    $("login").hidden = true;
    $("board").hidden = false;
    buffering = true; // hold the socket's messages until the snapshot is in
    await connect();
    await snapshot();
    if (!ticking) ticking = setInterval(tick, 1000);
    tick();
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const given = $("token").value.trim();
    const error = $("login-error");
    setText(error, "");
    token = given;
    try {
      await api("GET", "/v1/agents");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { setText(error, "This token is not accepted."); return; }
      if (err instanceof ApiError && err.status === 403) { setText(error, "This token may not read agents: use a supervisor token."); return; }
      if (!(err instanceof ApiError && err.status === 404)) { setText(error, err.message); return; }
    }
    sessionStorage.setItem(TOKEN_KEY, given);
    $("token").value = "";
    start().catch(fatal);
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("agent-filter").addEventListener("change", (e) => { $("agent-grid").dataset.filter = e.target.value; });
  $("agent-grid").addEventListener("click", (e) => {
    const card = e.target.closest(".agent");
    if (card) select(card.dataset.id);
  });
  $("panel").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (b) act(b);
  });
  $("campaign-rows").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (b) act(b);
  });
  $("panel-close").addEventListener("click", () => select(null));
  $("spy-endpoint").value = localStorage.getItem(ENDPOINT_KEY) || "";

  if (token) start().catch(fatal);
})();
