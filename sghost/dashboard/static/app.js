// sghost dashboard: rows from /api/events, plots as SVG, output from the logs API.
// Every text that comes from the host or a resource is set with textContent, never as markup.
"use strict";

const STATES = ["running", "starting", "waiting", "backoff", "fatal", "stopped", "stopping"];
const SVG = "http://www.w3.org/2000/svg";
const PLOT_W = 600, PLOT_H = 120;
const MAX_LOG_LINES = 1000;

const page = {
  settings: { control: false, login: false, history_seconds: 3600, sample_interval: 5 },
  status: null,
  points: {},       // newest sample point per resource: [cpu, memory, restarts]
  rows: new Map(),  // resource name -> {row, cells}
  selected: null,
  history: null,    // {t, cpu, memory, restarts} of the selected resource
  follow: null,     // EventSource of the followed log
};

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setText(node, text, full) {
  const empty = text === undefined || text === null || text === "";
  const shown = empty ? "—" : String(text);
  if (node.textContent !== shown) node.textContent = shown;
  node.classList.toggle("empty", empty);
  const title = full === undefined ? "" : String(full);
  if (node.title !== title) node.title = title;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function number(value, unit) {
  return typeof value === "number" ? `${value.toFixed(1)}${unit}` : "—";
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { window.location.reload(); throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || body.message || response.statusText);
  return body;
}

function notice(text) {
  const node = document.getElementById("notice");
  node.hidden = !text;
  node.textContent = text || "";
}

// ---------------------------------------------------------------- host

function renderHost(status) {
  setText(document.getElementById("host-name"), status.host);
  document.title = `sghost: ${status.host}`;
  const facts = [
    ["version", status.version],
    ["uptime", duration(status.uptime)],
    ["broker", status.broker_connected ? `connected ${status.broker || ""}`.trim() : "not connected"],
  ];
  if (status.uplink) {
    const u = status.uplink;
    facts.push(["uplink", `${u.state}, queued ${u.queued ?? "—"}, dropped ${u.dropped ?? 0}`]);
  }
  const deployment = status.deployment || status.deployments;
  if (deployment && typeof deployment === "object") {
    const generation = deployment.generation ?? deployment.current_generation;
    const state = deployment.state ?? (deployment.last && deployment.last.state);
    facts.push(["deployment", `generation ${generation ?? "—"}, last ${state ?? "—"}`]);
  }
  if (typeof status.deploy_rejected === "number") facts.push(["deployments refused", status.deploy_rejected]);
  const list = document.getElementById("host-facts");
  list.replaceChildren(...facts.flatMap(([key, value]) => [el("dt", key), el("dd", value)]));
}

// ---------------------------------------------------------------- rows

const COLUMNS = ["name", "state", "presence", "pid", "restarts", "uptime", "cpu", "memory", "error", "waiting"];

function makeRow(name) {
  const row = el("tr");
  row.dataset.resource = name;
  const cells = {};
  for (const column of COLUMNS) {
    cells[column] = el("td", null, `col-${column}`);
    row.append(cells[column]);
  }
  setText(cells.name, name, name);
  if (page.settings.control) {
    const actions = el("td", null, "actions");
    for (const op of ["restart", "stop", "start"]) {
      const button = el("button", op);
      button.type = "button";
      button.dataset.op = op;
      button.addEventListener("click", (event) => { event.stopPropagation(); command(op, name); });
      actions.append(button);
    }
    row.append(actions);
  }
  row.addEventListener("click", () => select(name));
  return { row, cells };
}

function renderRow(name, values) {
  let entry = page.rows.get(name);
  if (!entry) {
    entry = makeRow(name);
    page.rows.set(name, entry);
    document.querySelector("#resources tbody").append(entry.row);
  }
  const { row, cells } = entry;
  const state = String(values.state ?? "");
  setText(cells.state, state, state);
  cells.state.className = "col-state state " + (STATES.includes(state) ? `state-${state}` : "state-other");
  row.dataset.state = state;
  const presence = values.connected === true ? "online" : values.connected === false ? "offline" : "";
  setText(cells.presence, presence);
  setText(cells.pid, values.pid);
  setText(cells.restarts, values.restarts ?? 0);
  setText(cells.uptime, values.pid ? duration(values.uptime) : "");
  const point = page.points[name];
  setText(cells.cpu, values.pid ? number(point ? point[0] : values.cpu, " %") : "");
  setText(cells.memory, values.pid ? number(point ? point[1] : values.memory, " MiB") : "");
  const error = values.error ?? "";
  setText(cells.error, error, error);
  const waiting = (values.waiting_for || []).join(", ");
  setText(cells.waiting, waiting, waiting);
  if (name === page.selected) setText(document.getElementById("detail-name"), `${name}: ${state}`);
}

function renderStatus(status) {
  page.status = status;
  renderHost(status);
  const names = Object.keys(status.resources || {});
  for (const name of names) renderRow(name, status.resources[name]);
  for (const [name, entry] of page.rows) {
    if (!names.includes(name)) { entry.row.remove(); page.rows.delete(name); }
  }
}

// ---------------------------------------------------------------- events

function connect() {
  const source = new EventSource("/api/events");
  const badge = document.getElementById("connection");
  source.addEventListener("open", () => { setText(badge, "live"); badge.className = "badge live"; });
  source.addEventListener("error", () => {
    setText(badge, "reconnecting");
    badge.className = "badge down";
    // A refused stream (the session ended: 401) is not retried by the browser: find out why, then reconnect.
    if (source.readyState === EventSource.CLOSED) setTimeout(reconnect, 5000);
  });
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    page.points = data.sample.points || {};
    notice(data.error ? `sghost does not answer: ${data.error}` : "");
    renderStatus(data.status);
    addSample(data.sample);
  });
  source.addEventListener("state", (event) => {
    const data = JSON.parse(event.data);
    if (!page.status) return;
    const resources = page.status.resources || (page.status.resources = {});
    resources[data.resource] = { ...(resources[data.resource] || {}), ...data.values };
    renderRow(data.resource, resources[data.resource]);
  });
  source.addEventListener("unreachable", (event) => {
    notice(`sghost does not answer: ${JSON.parse(event.data).error}`);
  });
}

async function reconnect() {
  try {
    await api("/api/dashboard");  // on 401 this shows the login form
    connect();
  } catch (error) {
    setTimeout(reconnect, 5000);
  }
}

async function command(op, name) {
  try {
    const answer = await api(`/api/resources/${encodeURIComponent(name)}/${op}`, { method: "POST" });
    notice(answer.message);
  } catch (error) {
    notice(`${op} ${name}: ${error.message}`);
  }
}

// ---------------------------------------------------------------- detail: plots

async function select(name) {
  page.selected = name;
  document.getElementById("detail").hidden = false;
  for (const [other, entry] of page.rows) entry.row.classList.toggle("selected", other === name);
  setText(document.getElementById("detail-name"), name);
  page.history = null;
  drawPlots();
  try {
    page.history = await api(`/api/resources/${encodeURIComponent(name)}/history`);
  } catch (error) {
    page.history = { t: [], cpu: [], memory: [], restarts: [] };
  }
  drawPlots();
  showLogs();
}

function addSample(sample) {
  const history = page.history;
  if (!history || !page.selected || !sample) return;
  const point = (sample.points || {})[page.selected];
  if (!point || history.t[history.t.length - 1] === sample.t) return;
  history.t.push(sample.t);
  history.cpu.push(point[0]);
  history.memory.push(point[1]);
  history.restarts.push(point[2]);
  const oldest = sample.t - page.settings.history_seconds;
  while (history.t.length && history.t[0] < oldest) {
    for (const key of ["t", "cpu", "memory", "restarts"]) history[key].shift();
  }
  drawPlots();
}

function drawPlots() {
  const history = page.history || { t: [], cpu: [], memory: [], restarts: [] };
  const end = history.t.length ? history.t[history.t.length - 1] : Date.now() / 1000;
  // the hour, or as much of it as there is: a dashboard started a minute ago plots that minute
  const start = Math.max(end - page.settings.history_seconds, Math.min(history.t[0] ?? end, end - 60));
  const span = `last ${duration(end - start)}`;
  drawPlot("cpu", history.t, history.cpu, start, end, " %", false, span);
  drawPlot("memory", history.t, history.memory, start, end, " MiB", false, span);
  const first = history.restarts.length ? history.restarts[0] : 0;
  drawPlot("restarts", history.t, history.restarts.map((value) => value - first), start, end, "", true, span);
}

function drawPlot(key, times, values, start, end, unit, steps, span) {
  const svg = document.getElementById(`plot-${key}`);
  const top = Math.max(1, ...values) * 1.1;
  const x = (t) => ((t - start) / (end - start)) * PLOT_W;
  const y = (v) => PLOT_H - (v / top) * PLOT_H;
  const coordinates = [];
  times.forEach((t, index) => {
    if (steps && index > 0) coordinates.push(`${x(t).toFixed(1)},${y(values[index - 1]).toFixed(1)}`);
    coordinates.push(`${x(t).toFixed(1)},${y(values[index]).toFixed(1)}`);
  });
  const grid = [0.25, 0.5, 0.75].map((fraction) => {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", "0"); line.setAttribute("x2", String(PLOT_W));
    line.setAttribute("y1", String(PLOT_H * fraction)); line.setAttribute("y2", String(PLOT_H * fraction));
    line.setAttribute("class", "grid");
    return line;
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coordinates.join(" "));
  line.setAttribute("class", `line line-${key}`);
  line.dataset.count = String(times.length);
  svg.replaceChildren(...grid, line);
  svg.dataset.count = String(times.length);
  const last = values.length ? values[values.length - 1] : null;
  const scale = document.getElementById(`scale-${key}`);
  const digits = steps ? 0 : 1;
  const now = last === null ? "—" : last.toFixed(digits);
  setText(scale, `${span} · max ${(top / 1.1).toFixed(digits)}${unit} · now ${now}${unit} · ${times.length} samples`);
}

// ---------------------------------------------------------------- detail: output

function logLine(line) {
  const node = el("span", line.text, line.stream === "stderr" ? "stderr" : "stdout");
  node.title = `${new Date(line.at * 1000).toLocaleString()} ${line.stream}`;
  return node;
}

function showLines(lines, replace) {
  const pre = document.getElementById("log");
  const nodes = lines.map(logLine);
  if (replace) pre.replaceChildren(...nodes); else pre.append(...nodes);
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

async function showLogs() {
  stopFollowing();
  const name = page.selected;
  if (!name) return;
  if (document.getElementById("follow").checked) {
    const source = new EventSource(`/api/resources/${encodeURIComponent(name)}/logs/follow?n=200`);
    page.follow = source;
    source.addEventListener("lines", (event) => showLines(JSON.parse(event.data).lines, true));
    source.addEventListener("line", (event) => showLines([JSON.parse(event.data)], false));
    return;
  }
  try {
    const answer = await api(`/api/resources/${encodeURIComponent(name)}/logs?n=200`);
    if (name === page.selected) showLines(answer.lines, true);
  } catch (error) {
    document.getElementById("log").replaceChildren(el("span", error.message, "stderr"));
  }
}

function stopFollowing() {
  if (page.follow) { page.follow.close(); page.follow = null; }
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    page.settings = { ...page.settings, ...(await api("/api/dashboard")) };
  } catch (error) {
    notice(error.message);
  }
  document.getElementById("logout").hidden = !page.settings.login;
  for (const head of document.querySelectorAll("th.actions")) head.hidden = !page.settings.control;
  document.getElementById("follow").addEventListener("change", showLogs);
  connect();
}

document.addEventListener("DOMContentLoaded", start);
