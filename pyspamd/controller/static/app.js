// pyspamd controller page. Plain JavaScript, no build step, no CDN: the admin's machine may
// have no internet. Every value from a message goes into the page as text, never as HTML.
"use strict";

const ACTIONS = ["reject", "discard", "quarantine", "soft reject", "rewrite subject",
                 "add header", "greylist", "no action"];
const COLORS = {"reject": "#d64545", "discard": "#7a7f87", "quarantine": "#8d6e63",
                "soft reject": "#e8833a", "rewrite subject": "#a05cc8", "add header": "#d9a520",
                "greylist": "#5b84c4", "no action": "#3b9b5b"};
const state = {password: sessionStorage.getItem("pyspamd-password") || "", level: "",
               view: "dashboard", history: [], symbols: [], step: "minute", timer: 0,
               sortKey: "hits", sortAsc: false, selected: "", held: []};

function $(sel) { return document.querySelector(sel); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function badge(action) {
  return el("span", {class: "badge", style: {background: COLORS[action] || "#888"}}, action);
}

function fmt(n) { return Number(n).toLocaleString("en-US"); }
function pct(n, total) { return total ? (100 * n / total).toFixed(1) + "%" : "0.0%"; }
function score(s) { return el("span", {class: s > 0 ? "pos" : s < 0 ? "neg" : ""}, s.toFixed(2)); }
function when(t) {
  const d = new Date(t * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

// --- talking to the controller: relative URLs, so a reverse proxy may mount it anywhere ---
class AuthError extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.password) headers["Password"] = state.password;
  const response = await fetch(path, Object.assign({}, options, {headers}));
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  data = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401 || (response.status === 403 && path === "auth")) {
    throw new AuthError((data && data.error) || "password required");
  }
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

function showStatus(text) {
  $("#status").textContent = text;
  if (text) setTimeout(() => { if ($("#status").textContent === text) $("#status").textContent = ""; }, 6000);
}

async function guarded(fn) {
  try { await fn(); }
  catch (e) {
    if (e instanceof AuthError) { showLogin(e.message); return; }
    showStatus(e.message);
  }
}

// --- login ---
function showLogin(message) {
  clearInterval(state.timer);
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("#tabs").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#login-password").focus();
}

async function login(password) {
  state.password = password;
  try {
    const auth = await api("auth");
    state.level = auth.level;
    if (password) sessionStorage.setItem("pyspamd-password", password);
    $("#login").hidden = true; $("#tabs").hidden = false;
    $("#logout").hidden = !password;
    $("#who").textContent = auth.level === "write" ? "read-write" : "read-only";
    for (const b of [$("#learn-spam"), $("#learn-ham")]) {
      b.disabled = auth.level !== "write";
      if (b.disabled) b.title = "Needs the enable (write) password";
    }
    show(location.hash.slice(1) || state.view);
    return true;
  } catch (e) {
    state.password = ""; sessionStorage.removeItem("pyspamd-password");
    if (e instanceof AuthError) { showLogin(password ? "Wrong password" : ""); return false; }
    showLogin(""); $("#login-error").textContent = e.message;
    return false;
  }
}

// --- views ---
function show(view) {
  if (!document.getElementById("view-" + view)) view = "dashboard";
  state.view = view;
  history.replaceState(null, "", "#" + view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("on", t.dataset.view === view);
  clearInterval(state.timer);
  const loaders = {dashboard: loadDashboard, history: loadHistory, symbols: loadSymbols,
                   config: loadConfig, quarantine: loadQuarantine, scan: async () => {}};
  guarded(loaders[view]);
  if (view === "dashboard" || view === "history") {
    state.timer = setInterval(() => { if (!document.hidden) guarded(loaders[view]); }, 5000);
  }
}

async function loadDashboard() {
  const [stat, graph] = await Promise.all([api("stat"), api("graph?type=" + state.step)]);
  const total = stat.scanned;
  $("#stat-scanned").textContent = fmt(total);
  $("#stat-spam").textContent = fmt(stat.spam_count);
  $("#stat-spam-pct").textContent = pct(stat.spam_count, total) + " of scanned";
  $("#stat-ham").textContent = fmt(stat.ham_count);
  $("#stat-ham-pct").textContent = pct(stat.ham_count, total) + " of scanned";
  const learned = stat.bayes.learned;
  $("#stat-learned").textContent = `${fmt(learned.spam)} / ${fmt(learned.ham)}`;
  $("#stat-tokens").textContent = `${fmt(stat.bayes.tokens)} tokens`;
  const since = stat.started || stat.controller_started;
  $("#stat-uptime").textContent = duration(stat.now - since);
  $("#stat-backend").textContent = `storage: ${stat.bayes.backend}`;
  const bars = $("#action-bars");
  bars.replaceChildren();
  const max = Math.max(1, ...Object.values(stat.actions));
  for (const [action, n] of Object.entries(stat.actions)) {
    bars.append(el("span", {}, badge(action)),
                el("div", {class: "track"}, el("div", {class: "fill", style: {
                  width: (100 * n / max) + "%", background: COLORS[action] || "#888"}})),
                el("span", {class: "n", "data-action": action}, `${fmt(n)} · ${pct(n, total)}`));
  }
  const last = graph.starts.length - 1;
  let recent = 0;
  for (const series of Object.values(graph.actions)) recent += series[last] || 0;
  const unit = {minute: "minute", hour: "hour", day: "day"}[state.step];
  $("#stat-rate").textContent = `${fmt(recent)} this ${unit}`;
  drawChart(graph);
}

function drawChart(graph) {
  const canvas = $("#chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = 220;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue("--muted").trim(), line = css.getPropertyValue("--line").trim();
  const n = graph.starts.length;
  const actions = ACTIONS.filter((a) => graph.actions[a]);
  const totals = graph.starts.map((_, i) => actions.reduce((s, a) => s + graph.actions[a][i], 0));
  // Four whole-number ticks of 1, 2 or 5 times a power of ten, so no label repeats.
  const raw = Math.max(1, ...totals) / 4;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const tick = Math.max(1, [1, 2, 5, 10].map((f) => f * magnitude).find((t) => t >= raw));
  const ceiling = tick * 4;
  const left = 44, right = 8, topPad = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - topPad - bottom;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = muted; ctx.strokeStyle = line; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = topPad + plotH - plotH * k / 4;
    ctx.beginPath(); ctx.moveTo(left, y + .5); ctx.lineTo(width - right, y + .5); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(fmt(tick * k), left - 6, y + 4);
  }
  const bw = plotW / n;
  for (let i = 0; i < n; i++) {
    let y = topPad + plotH;
    for (const a of actions) {
      const h = plotH * graph.actions[a][i] / ceiling;
      if (h <= 0) continue;
      ctx.fillStyle = COLORS[a] || "#888";
      ctx.fillRect(left + i * bw + bw * .12, y - h, Math.max(1, bw * .76), h);
      y -= h;
    }
  }
  ctx.fillStyle = muted; ctx.textAlign = "center";
  const labels = 6;
  for (let k = 0; k < labels; k++) {
    const i = Math.round(k * (n - 1) / (labels - 1));
    const d = new Date(graph.starts[i] * 1000);
    const text = state.step === "day" ? `${d.getMonth() + 1}/${d.getDate()}`
      : `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    ctx.fillText(text, left + i * bw + bw / 2, height - 6);
  }
  const legend = $("#legend");
  legend.replaceChildren(...actions.map((a) => el("span", {},
    el("i", {style: {background: COLORS[a]}}), a)));
  if (!actions.length) legend.append(el("span", {}, "no scans in this period"));
}

async function loadHistory() {
  const data = await api("history?limit=1000");
  state.history = data.rows;
  const select = $("#history-action");
  const seen = new Set(state.history.map((r) => r.action));
  for (const a of ACTIONS) {
    if (seen.has(a) && !select.querySelector(`option[value="${a}"]`)) select.append(el("option", {value: a}, a));
  }
  renderHistory();
}

function renderHistory() {
  const words = $("#history-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const action = $("#history-action").value;
  const rows = state.history.filter((r) => {
    if (action && r.action !== action) return false;
    const hay = [r.queue_id, r.ip, r.from, r.subject, r.message_id, ...r.rcpts,
                 ...r.symbols.map((s) => s[0])].join(" ").toLowerCase();
    return words.every((w) => hay.includes(w));
  });
  $("#history-count").textContent = `${rows.length} of ${state.history.length} scans`;
  const body = $("#history-table tbody");
  body.replaceChildren(...rows.slice(0, 500).map((r) => {
    const tr = el("tr", {"data-id": r.id},
      el("td", {}, when(r.time)), el("td", {}, badge(r.action)),
      el("td", {class: "num"}, score(r.score)), el("td", {}, r.queue_id || "–"),
      el("td", {}, r.ip || "–"), el("td", {class: "clip", title: r.from}, r.from || "<>"),
      el("td", {class: "clip", title: r.rcpts.join(", ")},
         r.rcpts[0] ? r.rcpts[0] + (r.rcpt_count > 1 ? ` +${r.rcpt_count - 1}` : "") : "–"),
      el("td", {class: "clip", title: r.subject}, r.subject),
      el("td", {class: "num"}, (r.scan_time * 1000).toFixed(1)));
    if (r.id === state.selected) tr.classList.add("sel");
    tr.addEventListener("click", () => showDetail(r));
    return tr;
  }));
}

function symbolTable(symbols) {
  return el("table", {class: "grid"},
    el("thead", {}, el("tr", {}, el("th", {}, "Symbol"), el("th", {class: "num"}, "Score"),
                     el("th", {}, "Options"))),
    el("tbody", {}, ...symbols.map(([name, s, options]) => el("tr", {},
      el("td", {}, name), el("td", {class: "num"}, score(s)),
      el("td", {class: "opts"}, (options || []).join(", "))))));
}

function showDetail(r) {
  state.selected = r.id;
  for (const tr of document.querySelectorAll("#history-table tbody tr")) {
    tr.classList.toggle("sel", tr.dataset.id === r.id);
  }
  const box = $("#detail");
  const fields = [["Time", when(r.time)], ["Queue id", r.queue_id || "–"], ["Client IP", r.ip || "–"],
    ["HELO", r.helo || "–"], ["User", r.user || "–"], ["From", r.from || "<>"],
    ["Recipients", r.rcpts.join(", ") + (r.rcpt_count > r.rcpts.length ? ` (+${r.rcpt_count - r.rcpts.length} more)` : "")],
    ["Subject", r.subject], ["Message-ID", r.message_id || "–"], ["Size", fmt(r.size) + " bytes"],
    ["Scan time", (r.scan_time * 1000).toFixed(2) + " ms"], ["Scanned by", r.source]];
  if (r.forced_by && r.forced_by.length) fields.push(["Action forced by", r.forced_by.join(", ")]);
  if (r.errors && r.errors.length) fields.push(["Errors", r.errors.join("; ")]);
  box.replaceChildren(
    el("div", {class: "verdict"}, badge(r.action),
       el("span", {class: "score"}, `${r.score.toFixed(2)} / ${r.required_score.toFixed(2)}`),
       el("span", {class: "spacer"}), el("button", {class: "link", onclick: () => { box.hidden = true; }}, "Close")),
    el("dl", {}, ...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    symbolTable(r.symbols));
  box.hidden = false;
  box.scrollIntoView({block: "nearest"});
}

// --- quarantine: release and delete need the enable (write) password ---
async function loadQuarantine() {
  const data = await api("quarantine?limit=1000" + ($("#quarantine-all").checked ? "&all=1" : ""));
  state.held = data.messages;
  renderQuarantine();
}

function renderQuarantine() {
  const words = $("#quarantine-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const rows = state.held.filter((m) => words.every((w) =>
    [m.sender, ...m.rcpts, m.subject, m.reason, m.id].join(" ").toLowerCase().includes(w)));
  $("#quarantine-count").textContent = `${rows.length} of ${state.held.length} messages`;
  const writable = state.level === "write";
  $("#quarantine-table tbody").replaceChildren(...rows.map((m) => {
    const held = m.status === "held";
    const button = (label, cls, what) => el("button", {class: cls, disabled: !writable || !held,
      title: writable ? "" : "Needs the enable (write) password", "data-id": m.id,
      onclick: () => guarded(() => quarantineAct(m.id, what))}, label);
    return el("tr", {"data-id": m.id},
      el("td", {}, when(m.time)), el("td", {class: "num"}, score(m.score)),
      el("td", {class: "clip", title: m.sender}, m.sender || "<>"),
      el("td", {class: "clip", title: m.rcpts.join(", ")}, m.rcpts.join(", ")),
      el("td", {class: "clip", title: m.subject}, m.subject),
      el("td", {class: "clip", title: m.reason}, m.reason),
      el("td", {class: "num"}, fmt(m.size)),
      el("td", {}, held ? button("Release", "good release", "release") : "released by " + m.released_by,
         held ? button("Delete", "danger delete", "delete") : null));
  }));
}

async function quarantineAct(id, what) {
  if (what === "delete" && !confirm("Delete this message for good?")) return;
  const learn = what === "release" && $("#quarantine-learn").checked ? "?learn=ham" : "";
  await api(`quarantine/${encodeURIComponent(id)}/${what}${learn}`, {method: "POST"});
  showStatus(what === "release" ? `${id} released` : `${id} deleted`);
  await loadQuarantine();
}

async function loadSymbols() {
  const data = await api("symbols");
  state.symbols = data.symbols;
  renderSymbols();
}

function renderSymbols() {
  const words = $("#symbols-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const onlyHit = $("#symbols-hit").checked;
  const key = state.sortKey, dir = state.sortAsc ? 1 : -1;
  const rows = state.symbols.filter((s) => (!onlyHit || s.hits) &&
    words.every((w) => (s.name + " " + s.description + " " + s.group).toLowerCase().includes(w)));
  rows.sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : a.name < b.name ? -1 : 1) * dir);
  for (const th of document.querySelectorAll("#symbols-table th")) {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("asc", th.dataset.key === key && state.sortAsc);
  }
  $("#symbols-count").textContent = `${rows.length} of ${state.symbols.length} symbols`;
  $("#symbols-table tbody").replaceChildren(...rows.map((s) => el("tr", {},
    el("td", {}, s.name), el("td", {class: "num"}, score(s.score)),
    el("td", {class: "num"}, fmt(s.hits)), el("td", {}, s.group || ""),
    el("td", {class: "muted"}, s.description || ""))));
}

async function loadConfig() {
  const [config, actions, maps] = await Promise.all([api("config"), api("actions"), api("maps")]);
  $("#config-text").textContent = JSON.stringify(config, null, 2);
  $("#actions-table tbody").replaceChildren(...actions.actions.map((a) => el("tr", {},
    el("td", {}, badge(a.action)), el("td", {class: "num"}, a.threshold.toFixed(2)))));
  const mapRows = maps.maps.map((m) => el("tr", {}, el("td", {}, m.name), el("td", {}, m.type),
    el("td", {}, m.match || "(default)"),
    el("td", {class: "num"}, m.entries === null ? "–" : fmt(m.entries)),
    el("td", {class: "clip", title: m.file}, m.file || "inline values")));
  if (!mapRows.length) mapRows.push(el("tr", {}, el("td", {colSpan: 5, class: "muted"}, "no maps configured")));
  $("#maps-table tbody").replaceChildren(...mapRows);
}

// --- scan and learn ---
function envelopeHeaders() {
  const h = {};
  const add = (name, id) => { const v = $(id).value.trim(); if (v) h[name] = v; };
  add("IP", "#scan-ip"); add("From", "#scan-from"); add("Rcpt", "#scan-rcpt"); add("Helo", "#scan-helo");
  return h;
}

function message() {
  const text = $("#scan-text").value;
  if (!text.trim()) throw new Error("Paste a message or choose a file first");
  // The message goes as typed; the textarea's line ends are LF, which the scanner accepts.
  return new Blob([text], {type: "message/rfc822"});
}

async function scan() {
  const result = await api("checkv2?headers=1", {method: "POST", body: message(), headers: envelopeHeaders()});
  const symbols = Object.entries(result.symbols).map(([name, s]) => [name, s.score, s.options]);
  const parts = [el("div", {class: "verdict"}, badge(result.action),
    el("span", {class: "score", id: "scan-score"}, `${result.score.toFixed(2)} / ${result.required_score.toFixed(2)}`),
    el("span", {class: "muted"}, `${(result.scan_time * 1000).toFixed(1)} ms`))];
  if (result.message) parts.push(el("p", {}, "Reply: " + result.message));
  parts.push(symbolTable(symbols));
  if (result.errors) parts.push(el("p", {class: "error"}, result.errors.join("; ")));
  $("#scan-result").className = "";
  $("#scan-result").replaceChildren(...parts);
}

async function learn(kind) {
  $("#learn-result").textContent = "Learning…";
  const answer = await api("learn" + kind, {method: "POST", body: message()});
  $("#learn-result").textContent = `Learned as ${kind}: ${answer.outcome}`;
}

// --- wiring ---
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("#login-password").value); });
  $("#logout").addEventListener("click", () => {
    state.password = ""; sessionStorage.removeItem("pyspamd-password"); showLogin("");
  });
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => show(t.dataset.view));
  for (const b of document.querySelectorAll("#graph-steps button")) {
    b.addEventListener("click", () => {
      state.step = b.dataset.step;
      for (const o of document.querySelectorAll("#graph-steps button")) o.classList.toggle("on", o === b);
      guarded(loadDashboard);
    });
  }
  $("#history-filter").addEventListener("input", renderHistory);
  $("#history-action").addEventListener("change", renderHistory);
  $("#quarantine-filter").addEventListener("input", renderQuarantine);
  $("#quarantine-all").addEventListener("change", () => guarded(loadQuarantine));
  $("#symbols-filter").addEventListener("input", renderSymbols);
  $("#symbols-hit").addEventListener("change", renderSymbols);
  for (const th of document.querySelectorAll("#symbols-table th")) {
    th.addEventListener("click", () => {
      if (state.sortKey === th.dataset.key) state.sortAsc = !state.sortAsc;
      else { state.sortKey = th.dataset.key; state.sortAsc = th.dataset.key === "name"; }
      renderSymbols();
    });
  }
  $("#scan-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) $("#scan-text").value = await file.text();
  });
  $("#scan-submit").addEventListener("click", () => guarded(scan));
  $("#learn-spam").addEventListener("click", () => guarded(() => learn("spam").catch((e) => {
    $("#learn-result").textContent = e.message; throw e; })));
  $("#learn-ham").addEventListener("click", () => guarded(() => learn("ham").catch((e) => {
    $("#learn-result").textContent = e.message; throw e; })));
  window.addEventListener("resize", () => { if (state.view === "dashboard") guarded(loadDashboard); });
  login(state.password);
});
