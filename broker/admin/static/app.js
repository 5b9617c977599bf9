// The polymq management page: reads the management API every few seconds and renders nodes,
// alarms, queues and connections. No framework, no build step.
"use strict";

// ?refresh=SECONDS overrides the refresh interval (default 5 s, at least 1 s)
const REFRESH_MS = Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 5) * 1000;
const PROTOCOLS = ["amqp", "mqtt", "stomp", "http"];
const AUTH_KEY = "polymq.auth";

function authHeader() {
  const token = sessionStorage.getItem(AUTH_KEY);
  return token ? { Authorization: "Basic " + token } : {};
}

class Unauthorised extends Error {}

async function api(path) {
  const resp = await fetch(path, { headers: authHeader(), cache: "no-store" });
  if (resp.status === 401) throw new Unauthorised(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

const num = (value) => el("td", { class: "num" }, value ?? "–");

function bytes(n) {
  if (n === null || n === undefined || n < 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fill(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function renderOverview(overview) {
  document.getElementById("identity").textContent =
    `${overview.cluster_name} · node ${overview.node} · ${overview.product_version}`;
  const totals = overview.queue_totals;
  const objects = overview.object_totals;
  const stats = overview.message_stats;
  const items = [
    ["messages", totals.messages], ["ready", totals.messages_ready],
    ["unacked", totals.messages_unacknowledged], ["queues", objects.queues],
    ["consumers", objects.consumers], ["connections", objects.connections],
    ["publish/s", stats.publish_details.rate], ["deliver/s", stats.deliver_get_details.rate],
    ["ack/s", stats.ack_details.rate],
  ];
  document.getElementById("totals").replaceChildren(
    ...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-total": k }, v)]));
  const alarms = overview.alarms || [];
  const box = document.getElementById("alarms");
  box.className = alarms.length ? "alarm" : "ok";
  box.textContent = alarms.length
    ? `resource alarm raised: ${alarms.join(", ")} (publishers are blocked)`
    : "none";
}

function renderNodes(nodes) {
  const leader = nodes.find((n) => n.leader);
  document.getElementById("leader").textContent = leader ? `leader: ${leader.name}` : "no leader";
  fill("nodes", nodes.map((n) => el("tr", { "data-node": n.name, class: n.leader ? "leader" : "" },
    el("td", {}, n.name + (n.leader ? " ★" : "")),
    el("td", { "data-role": n.role }, n.role),
    el("td", { class: n.running ? "" : "down" }, n.running ? "yes" : "no"),
    num(n.term), num(n.commit_index), num(n.lag),
    el("td", { class: n.mem_alarm ? "alarm" : "" },
      n.mem_used === undefined ? "–" : `${bytes(n.mem_used)} / ${bytes(n.mem_limit)}`),
    el("td", { class: n.disk_free_alarm ? "alarm" : "" },
      n.disk_free === undefined ? "–" : bytes(n.disk_free)),
  )));
}

function renderQueues(queues) {
  fill("queues", queues.map((q) => {
    const s = q.message_stats || {};
    const rate = (name) => (s[`${name}_details`] || { rate: 0 }).rate;
    return el("tr", { "data-queue": q.name, "data-vhost": q.vhost },
      el("td", {}, q.vhost), el("td", {}, q.name),
      el("td", { class: "num", "data-field": "messages_ready" }, q.messages_ready),
      el("td", { class: "num", "data-field": "messages_unacknowledged" },
        q.messages_unacknowledged),
      el("td", { class: "num", "data-field": "messages" }, q.messages),
      el("td", { class: "num", "data-field": "consumers" }, q.consumers),
      num(rate("publish")), num(rate("deliver_get")), num(rate("ack")));
  }));
}

function renderConnections(connections) {
  const counts = Object.fromEntries(PROTOCOLS.map((p) => [p, 0]));
  for (const c of connections) counts[c.protocol] = (counts[c.protocol] || 0) + 1;
  document.getElementById("connection-counts").replaceChildren(
    ...Object.entries(counts).map(([p, n]) =>
      el("li", { "data-protocol": p }, el("b", {}, p), " ", el("span", { class: "count" }, n))));
  fill("connections", connections.map((c) => el("tr", { "data-protocol": c.protocol },
    el("td", {}, c.protocol), el("td", {}, `${c.peer_host}:${c.peer_port}`),
    el("td", {}, c.user || "–"), el("td", {}, c.vhost), num(c.channels),
    el("td", {}, new Date(c.connected_at).toLocaleString()))));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [overview, nodes, queues, connections] = await Promise.all([
      api("/api/overview"), api("/api/nodes"), api("/api/queues"), api("/api/connections"),
    ]);
    renderOverview(overview);
    renderNodes(nodes);
    renderQueues(queues);
    renderConnections(connections);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    if (err instanceof Unauthorised) {
      showLogin();
      return;
    }
    status.textContent = `error: ${err.message}`;
  }
}

function showLogin() {
  const dialog = document.getElementById("login");
  if (!dialog.open) dialog.showModal();
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  const form = new FormData(event.target);
  const raw = `${form.get("user")}:${form.get("password")}`;
  sessionStorage.setItem(AUTH_KEY, btoa(unescape(encodeURIComponent(raw))));
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
