// The raftkv dashboard: polls GET /v1/cluster/overview on the node that
// served this page and redraws everything from each answer, and follows
// that node's event stream (GET /v1/events) in the live events table. Text from the
// server only ever goes in through textContent, never as markup.
"use strict";

const REFRESH_MS = 1000; // a killed node shows as down within about this
const FETCH_TIMEOUT_MS = 2000;
const SAMPLES = 120; // two minutes of plot at one sample a second
const EVENTS_SHOWN = 20;
const LIVE_EVENTS_SHOWN = 40;
const LIVE_RECONNECT_MS = 1000;

let token = sessionStorage.getItem("raftkv-token") || "";
let previous = null; // the last sample's time and per-node apply totals
const rates = [];
const latencies = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function replaceRows(table, rows) {
  table.tBodies[0].replaceChildren(...rows);
}

function setFreshness(text, stale) {
  const f = document.getElementById("freshness");
  f.textContent = text;
  f.className = stale ? "stale" : "muted";
}

function groupOrder(a, b) {
  const rank = (name) => (name === "meta" ? -1 : parseInt(name.replace(/^\D+/, ""), 10) || 0);
  return rank(a) - rank(b) || a.localeCompare(b);
}

// leaders finds, for each group, the reachable replica that says it leads,
// the highest term winning if two do (an old leader that has not heard yet).
function leaders(nodes) {
  const out = {};
  for (const n of nodes) {
    if (!n.status) continue;
    for (const g of n.status.groups || []) {
      if (g.state !== "Leader") continue;
      if (!out[g.name] || g.term > out[g.name].group.term) out[g.name] = { node: n.id, group: g };
    }
  }
  return out;
}

// memberInfo finds each node's stage and health in the answer of the node
// leading the meta group, the one that watches every member's health.
function memberInfo(nodes, led) {
  const meta = led.meta && nodes.find((n) => n.id === led.meta.node);
  const source = (meta && meta.status) || (nodes.find((n) => n.status) || {}).status;
  const out = {};
  for (const m of (source && source.nodes) || []) out[m.id] = m;
  return out;
}

function healthText(h) {
  if (!h) return "–";
  if (h.status !== "alive") return `${h.status} (${Math.round(h.last_seen_ms / 1000)} s)`;
  return h.healthy ? "healthy" : "alive, unhealthy";
}

function renderNodes(nodes, led) {
  const proto = location.protocol;
  const info = memberInfo(nodes, led);
  replaceRows(document.getElementById("nodes"), nodes.map((n) => {
    const m = info[n.id] || {};
    const leads = Object.values(led).filter((l) => l.node === n.id).length;
    const state = n.reachable ? "up" : "down";
    const link = el("a", { href: `${proto}//${n.http_addr}/ui/` }, n.http_addr);
    return el("tr", { "data-node": n.id, "data-state": state },
      el("td", {}, n.id),
      el("td", { class: state }, state),
      el("td", {}, m.stage || "–"),
      el("td", { class: m.health && !m.health.healthy ? "down" : "" }, healthText(m.health)),
      el("td", {}, link),
      el("td", {}, n.raft_addr),
      el("td", {}, n.reachable ? leads : "–"),
      el("td", {}, n.status && n.status.log ? n.status.log.segments : "–"),
      el("td", { class: "muted" }, n.error || ""));
  }));
}

// followerSeen is what the group's leader says of follower id: its lag in
// entries, and, when the leader's heartbeats do not reach it, how long
// since the leader last heard from it. null when the leader does not say.
function followerSeen(leader, id) {
  const f = leader && (leader.group.followers || []).find((x) => x.id === id);
  if (!f) return null;
  const lag = f.lag_entries < 0 ? "?" : f.lag_entries;
  let text = `lag ${lag}`;
  if (!f.reachable) text += ` · unreachable, last contact ${(f.last_contact_ms / 1000).toFixed(1)} s ago`;
  const behind = !f.reachable || f.lag_entries > 1000;
  return el("div", { class: behind ? "lag behind" : "lag", "data-lag": String(f.lag_entries), "data-reachable": String(f.reachable) }, text);
}

function renderGroups(nodes, led) {
  const names = new Set();
  for (const n of nodes) for (const g of (n.status && n.status.groups) || []) names.add(g.name);
  const table = document.getElementById("groups");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "group"), el("th", {}, "leader"),
    ...nodes.map((n) => el("th", {}, n.id))));
  replaceRows(table, [...names].sort(groupOrder).map((name) => {
    const leader = led[name];
    const cells = nodes.map((n) => {
      const attrs = { "data-group": name, "data-node": n.id };
      const seen = followerSeen(leader, n.id);
      if (!n.reachable) {
        const cell = el("td", { ...attrs, "data-role": "down", class: "unreachable" }, el("span", { class: "role" }, "down"));
        if (seen) cell.append(seen);
        return cell;
      }
      const g = (n.status.groups || []).find((x) => x.name === name);
      if (!g) return el("td", { ...attrs, "data-role": "absent", class: "absent" }, "not a member");
      const role = g.state.toLowerCase();
      const cell = el("td", { ...attrs, "data-role": role, class: role },
        el("span", { class: "role" }, role),
        el("div", { class: "detail" }, `term ${g.term} · ${g.commit_index} / ${g.applied_index}`));
      if (seen && role !== "leader") cell.append(seen);
      if ((g.nonvoters || []).includes(n.id)) cell.append(el("div", { class: "detail" }, "nonvoter"));
      return cell;
    });
    return el("tr", { "data-group": name, "data-leader": leader ? leader.node : "" },
      el("td", {}, name),
      el("td", { class: leader ? "" : "down" }, leader ? `${leader.node} (term ${leader.group.term})` : "none"),
      ...cells);
  }));
}

// sample turns the nodes' cumulative apply counters into one point of each
// plot: writes/s and mean latency since the previous answer. A node that
// was down, or restarted (its counters went back), adds nothing.
function sample(at, nodes) {
  const totals = {};
  for (const n of nodes) {
    if (!n.status) continue;
    let applies = 0, seconds = 0;
    for (const g of n.status.groups || []) {
      applies += g.applies || 0;
      seconds += g.apply_seconds || 0;
    }
    totals[n.id] = { applies, seconds };
  }
  if (previous && at > previous.at) {
    let dApplies = 0, dSeconds = 0;
    for (const [id, t] of Object.entries(totals)) {
      const p = previous.totals[id];
      if (!p || t.applies < p.applies) continue;
      dApplies += t.applies - p.applies;
      dSeconds += t.seconds - p.seconds;
    }
    const dt = (at - previous.at) / 1000;
    push(rates, dApplies / dt);
    push(latencies, dApplies > 0 ? (1000 * dSeconds) / dApplies : null);
  }
  previous = { at, totals };
}

function push(series, v) {
  series.push(v);
  if (series.length > SAMPLES) series.shift();
}

function plot(id, series, nowId, unit, digits) {
  const svg = document.getElementById(id);
  const W = 360, H = 90, top = 12;
  const values = series.filter((v) => v !== null);
  const max = Math.max(1, ...values) * 1.1;
  const ns = "http://www.w3.org/2000/svg";
  const parts = [];
  let points = [];
  const flush = () => {
    if (points.length) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      parts.push(line);
    }
    points = [];
  };
  series.forEach((v, i) => {
    if (v === null) return flush();
    const x = (W * (SAMPLES - series.length + i)) / (SAMPLES - 1);
    const y = H - ((H - top) * v) / max;
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  flush();
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "3");
  label.setAttribute("y", "9");
  label.textContent = `max ${(max / 1.1).toFixed(digits)} ${unit} · last ${SAMPLES} s`;
  parts.push(label);
  svg.replaceChildren(...parts);
  const last = series.length ? series[series.length - 1] : null;
  document.getElementById(nowId).textContent = last === null ? "" : `now ${last.toFixed(digits)}`;
}

function renderEvents(nodes) {
  const events = [];
  for (const n of nodes) for (const e of (n.status && n.status.recent_elections) || []) events.push({ ...e, node: n.id });
  events.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  replaceRows(document.getElementById("events"), events.slice(0, EVENTS_SHOWN).map((e) =>
    el("tr", { "data-event": e.event, "data-group": e.group, "data-node": e.node },
      el("td", {}, clock(e.at)),
      el("td", {}, e.group), el("td", {}, e.node), el("td", {}, e.event.replace("_", " ")),
      el("td", {}, e.cause.replaceAll("_", " ")), el("td", {}, e.term))));
}

function renderTxnRecoveries(nodes) {
  const events = [];
  for (const n of nodes) for (const e of (n.status && n.status.recent_txn_recoveries) || []) events.push({ ...e, node: n.id });
  events.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  replaceRows(document.getElementById("txn-recoveries"), events.slice(0, EVENTS_SHOWN).map((e) =>
    el("tr", { "data-txn": e.txn },
      el("td", {}, clock(e.at)), el("td", {}, e.group), el("td", {}, e.node), el("td", {}, e.txn),
      el("td", {}, e.cause.replaceAll("_", " ")), el("td", {}, e.outcome), el("td", { class: "muted" }, e.error || ""))));
}

function clock(at) {
  const d = new Date(at);
  return d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function renderRecovery(nodes) {
  const rows = [];
  for (const n of nodes) {
    for (const g of (n.status && n.status.groups) || []) {
      if (!g.restored_from_snapshot_index && !g.replayed_entries) continue;
      rows.push(el("tr", {}, el("td", {}, n.id), el("td", {}, g.name), el("td", {}, g.restored_from_snapshot_index),
        el("td", {}, g.restored_keys), el("td", {}, g.replayed_entries), el("td", {}, `${g.recovery_ms} ms`)));
    }
  }
  replaceRows(document.getElementById("recovery"), rows);
}

function render(ov) {
  const nodes = [...ov.nodes].sort((a, b) => a.id.localeCompare(b.id));
  const led = leaders(nodes);
  const self = nodes.find((n) => n.id === ov.node);
  if (self && self.status) {
    document.getElementById("cluster").textContent =
      `cluster ${self.status.cluster_id} · ${self.status.shards} shards · ${nodes.length} nodes`;
  }
  const removed = document.getElementById("removed");
  removed.hidden = !ov.removed;
  removed.textContent = ov.removed ? `${ov.node} was removed from the cluster: ${ov.removed.message}. This page shows its stale view; open another node's /ui/.` : "";
  renderNodes(nodes, led);
  renderGroups(nodes, led);
  sample(Date.parse(ov.at), nodes);
  plot("rate-plot", rates, "rate-now", "writes/s", 0);
  plot("latency-plot", latencies, "latency-now", "ms", 2);
  renderEvents(nodes);
  renderTxnRecoveries(nodes);
  renderRecovery(nodes);
}

function showLogin() {
  const form = document.getElementById("login");
  form.hidden = false;
  form.onsubmit = (ev) => {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem("raftkv-token", token);
    form.hidden = true;
  };
}

async function refresh() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const resp = await fetch("/v1/cluster/overview", { headers, signal: ctl.signal, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      showLogin();
      setFreshness(resp.status === 401 ? "needs a token" : "this token may not read the cluster", true);
      return;
    }
    if (!resp.ok) {
      setFreshness(`the node answered HTTP ${resp.status}`, true);
      return;
    }
    const ov = await resp.json();
    render(ov);
    setFreshness(`updated ${new Date(ov.at).toLocaleTimeString(undefined, { hour12: false })} by ${ov.node}`, false);
    document.body.dataset.updated = ov.at;
  } catch (e) {
    // The node that served this page is gone: the nodes table links to the others.
    setFreshness(`cannot reach this node (${e.name === "AbortError" ? "timed out" : e.message}); open another node's /ui/`, true);
  } finally {
    clearTimeout(timer);
    setTimeout(refresh, REFRESH_MS);
  }
}

// describe says in a few words what one event of GET /v1/events reports.
function describe(e) {
  const term = e.term ? ` (term ${e.term})` : "";
  switch (e.type) {
    case "leader": return (e.leader ? `leader is ${e.leader}` : "no leader") + term;
    case "state": return `this node is ${e.state}` + term;
    case "election": return e.event.replaceAll("_", " ") + (e.cause ? `: ${e.cause.replaceAll("_", " ")}` : "") + term;
    case "peer_added": case "peer_removed": return `${e.type === "peer_added" ? "added" : "removed"} ${e.peer}`;
    case "heartbeat_failed": return `cannot reach ${e.peer}`;
    case "heartbeat_resumed": return `reaches ${e.peer} again`;
    case "checkpoint": case "checkpoint_loaded": return `index ${e.index}, ${e.bytes} bytes, ${e.ms} ms`;
    case "txn_recovered": return `${e.txn}: ${e.outcome}` + (e.error ? ` (${e.error})` : "");
    case "overflow": return "this page fell behind; reconnecting";
    default: return "";
  }
}

function addLiveEvent(e) {
  const body = document.getElementById("live-events").tBodies[0];
  body.prepend(el("tr", { "data-type": e.type, "data-group": e.group || "" },
    el("td", {}, clock(e.at)), el("td", {}, e.group || ""), el("td", {}, e.type.replaceAll("_", " ")),
    el("td", {}, describe(e))));
  while (body.rows.length > LIVE_EVENTS_SHOWN) body.deleteRow(body.rows.length - 1);
}

// followEvents reads the serving node's event stream with fetch (unlike
// EventSource, it can send the bearer token) and reconnects when it ends.
async function followEvents() {
  const state = document.getElementById("live-state");
  try {
    const headers = { Accept: "text/event-stream", ...(token ? { Authorization: "Bearer " + token } : {}) };
    const resp = await fetch("/v1/events", { headers, cache: "no-store" });
    if (!resp.ok) {
      state.textContent = `· the node answered HTTP ${resp.status}`;
      return;
    }
    state.textContent = "· connected";
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("data: ")) addLiveEvent(JSON.parse(line.slice(6)));
      }
    }
    state.textContent = "· the stream ended; reconnecting";
  } catch (e) {
    state.textContent = `· cannot reach this node (${e.message}); reconnecting`;
  } finally {
    setTimeout(followEvents, LIVE_RECONNECT_MS);
  }
}

refresh();
followEvents();
