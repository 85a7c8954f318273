// The dashboard (GET /): topics, subscriptions, a message browser and a live tail, all
// through the public HTTP API (docs/DASHBOARD.md). Every SAMPLE_MS the page reads /topics
// and each readable topic's subscriptions; rates and charts come from those samples.

import { call, path, signIn, signOut, may, tail } from "./api.js";
import { sparkline, draw, formatNumber } from "./charts.js";

const SAMPLE_MS = 2000;
const KEEP_SAMPLES = 150; // five minutes of samples
const RATE_TOPICS = 50; // topics whose subscriptions are sampled (for acked/s)
const PAGE = 50; // messages per page of the browser
const SEARCH_PAGE = 500; // messages per request while searching
const SEARCH_SCAN = 10000; // messages searched per click of Show / More
const TAIL_ROWS = 500;

const $ = (id) => document.getElementById(id);

let grant = null;
const topics = new Map(); // id -> {info, row, cells, history}
const subHistory = new Map(); // "topic\0sub" -> {lag: [], pending: [], floor: [], acked}
let subRows = new Map(); // name -> row parts, for the selected topic
let selected = null;
let tab = "subscriptions";
let tailStop = null;
let browse = null;
let detail = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

let statusTimer = null;
function say(text, isError = false) {
  const line = $("status");
  line.textContent = text;
  line.className = isError ? "error" : "";
  line.hidden = false;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => (line.hidden = true), isError ? 10000 : 4000);
}

// Run an action of a button or form; a refusal shows the server's message.
async function act(what, fn) {
  try {
    await fn();
  } catch (error) {
    say(`${what}: ${error.message}`, true);
  }
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function duration(ms) {
  const steps = [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]];
  for (const [unit, size] of steps) if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  return `${ms} ms`;
}

function retention(info) {
  const parts = [];
  if (info.retention_ms) parts.push(duration(info.retention_ms));
  if (info.retention_bytes) parts.push(bytes(info.retention_bytes));
  return parts.length ? parts.join(", ") : "forever";
}

function time(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// Two clicks to delete: the first arms the button for three seconds.
function deleteButton(label, onConfirm) {
  const button = el("button", { type: "button", class: "danger", text: "Delete" });
  button.setAttribute("aria-label", label);
  let armed = null;
  button.addEventListener("click", () => {
    if (armed) {
      clearTimeout(armed);
      armed = null;
      act(label, onConfirm);
      return;
    }
    button.textContent = "Confirm delete";
    armed = setTimeout(() => {
      armed = null;
      button.textContent = "Delete";
    }, 3000);
  });
  return button;
}

// --- sampling -------------------------------------------------------------------------------

function push(series, value) {
  series.push(value);
  if (series.length > KEEP_SAMPLES) series.shift();
}

let sampling = Promise.resolve();
function refresh() {
  sampling = sampling.then(sample).catch((error) => say(`Refresh failed: ${error.message}`, true));
  return sampling;
}

async function sample() {
  const now = Date.now();
  const listed = (await call("GET", "/topics")).topics;
  const readable = listed.filter((t) => may(grant, "subscribe", t.id));
  const sampled = readable.slice(0, RATE_TOPICS);
  if (selected && !sampled.some((t) => t.id === selected) && readable.some((t) => t.id === selected)) {
    sampled.push(readable.find((t) => t.id === selected));
  }
  const subscriptions = new Map();
  await Promise.all(sampled.map(async (t) => {
    try {
      subscriptions.set(t.id, (await call("GET", path("topics", t.id, "subscriptions"))).subscriptions);
    } catch (error) {
      if (error.status !== 404) throw error; // deleted between the two calls
    }
  }));
  for (const info of listed) recordTopic(info, subscriptions.get(info.id), now);
  for (const [id, topic] of topics) {
    if (!listed.some((t) => t.id === id)) {
      topic.row.remove();
      topics.delete(id);
      if (selected === id) select(null);
    }
  }
  renderTopicsEmpty();
  if (selected && subscriptions.has(selected)) renderSubscriptions(subscriptions.get(selected));
  $("updated").textContent = `updated ${time(now).slice(11, 19)}, every ${SAMPLE_MS / 1000} s`;
}

function recordTopic(info, subs, now) {
  let topic = topics.get(info.id);
  if (!topic || topic.info.created_at !== info.created_at) {
    if (topic) topic.row.remove();
    topic = { history: { pub: [], acked: [] }, last: null };
    topic.row = topicRow(info, topic);
    topics.set(info.id, topic);
    insertSorted($("topics").tBodies[0], topic.row, info.id);
  }
  let ackedNow = null;
  const ackedBySub = new Map();
  for (const s of subs || []) {
    const key = `${info.id}\0${s.name}`;
    let h = subHistory.get(key);
    if (!h || h.created !== s.created_at) {
      h = { lag: [], pending: [], floor: [], created: s.created_at };
      subHistory.set(key, h);
    }
    push(h.lag, s.lag);
    push(h.pending, s.pending);
    push(h.floor, s.ack_floor);
    ackedBySub.set(s.name, info.end_offset - s.lag);
  }
  const last = topic.last;
  if (last) {
    const seconds = (now - last.now) / 1000;
    push(topic.history.pub, Math.max(0, info.end_offset - last.end) / seconds);
    if (subs) {
      let acked = 0;
      for (const [name, value] of ackedBySub) {
        if (last.acked.has(name)) acked += Math.max(0, value - last.acked.get(name));
      }
      ackedNow = acked / seconds;
      push(topic.history.acked, ackedNow);
    }
  }
  topic.last = { now, end: info.end_offset, acked: ackedBySub };
  topic.info = info;
  const c = topic.cells;
  c.name.textContent = info.name;
  c.size.textContent = bytes(info.size_bytes);
  c.start.textContent = formatNumber(info.start_offset);
  c.end.textContent = formatNumber(info.end_offset);
  c.retention.textContent = retention(info);
  c.pubValue.textContent = topic.history.pub.length ? formatNumber(topic.history.pub.at(-1)) : "…";
  draw(c.pubChart, topic.history.pub, "/s");
  if (subs) {
    c.ackValue.textContent = ackedNow === null ? "…" : formatNumber(ackedNow);
    draw(c.ackChart, topic.history.acked, "/s");
  } else {
    c.ackValue.textContent = "-";
    c.ackValue.title = may(grant, "subscribe", info.id)
      ? `not sampled: the page reads the subscriptions of ${RATE_TOPICS} topics`
      : "this token may not read the topic's subscriptions";
  }
}

function insertSorted(body, row, key) {
  const after = [...body.rows].find((r) => r.dataset.key > key);
  body.insertBefore(row, after || null);
}

function renderTopicsEmpty() {
  const body = $("topics").tBodies[0];
  const empty = body.querySelector(".empty");
  if (topics.size === 0 && !empty) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: 9, text: "No topics yet." })));
  } else if (topics.size && empty) {
    empty.remove();
  }
}

// --- topics -----------------------------------------------------------------------------------

function topicRow(info, topic) {
  const cells = {
    name: el("td"),
    size: el("td", { class: "num" }),
    start: el("td", { class: "num" }),
    end: el("td", { class: "num" }),
    retention: el("td"),
    pubValue: el("span", { class: "rate" }),
    pubChart: sparkline(`messages published per second, topic ${info.id}`),
    ackValue: el("span", { class: "rate" }),
    ackChart: sparkline(`messages acknowledged per second, topic ${info.id}`),
  };
  topic.cells = cells;
  const open = el("button", { type: "button", class: "link", text: info.id, onclick: () => select(info.id) });
  const row = el("tr", { "data-key": info.id, "data-topic": info.id, class: info.id === selected ? "selected" : "" },
    el("td", {}, open), cells.name, cells.size, cells.start, cells.end, cells.retention,
    el("td", { class: "chart" }, cells.pubChart, cells.pubValue),
    el("td", { class: "chart" }, cells.ackChart, cells.ackValue));
  if (grant.admin) {
    row.append(el("td", {}, deleteButton(`Delete topic ${info.id}`, async () => {
      await call("DELETE", path("topics", info.id));
      say(`Deleted topic ${info.id}.`);
      await refresh();
    })));
  }
  return row;
}

function select(id) {
  stopTail();
  selected = id;
  subRows = new Map();
  $("subscriptions").tBodies[0].replaceChildren();
  $("messages").tBodies[0].replaceChildren();
  $("tail").tBodies[0].replaceChildren();
  $("browse-summary").textContent = "";
  $("browse-more").hidden = true;
  $("message-detail").hidden = true;
  browse = null;
  for (const row of $("topics").tBodies[0].rows) row.classList.toggle("selected", row.dataset.topic === id);
  $("topic-view").hidden = id === null;
  if (id === null) return;
  $("topic-title").textContent = id;
  const readable = may(grant, "subscribe", id);
  $("topic-no-read").hidden = readable;
  $("tabs").hidden = !readable;
  for (const name of ["subscriptions", "browser", "tail"]) $(`tab-${name}`).hidden = !readable || name !== tab;
  if (readable) {
    showTab(tab);
    refresh();
  }
}

function showTab(name) {
  tab = name;
  for (const button of $("tabs").querySelectorAll("button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const other of ["subscriptions", "browser", "tail"]) $(`tab-${other}`).hidden = other !== name;
  if (name === "tail") startTail();
  else stopTail();
}

// --- subscriptions ----------------------------------------------------------------------------

function renderSubscriptions(list) {
  const body = $("subscriptions").tBodies[0];
  const names = new Set(list.map((s) => s.name));
  for (const [name, parts] of subRows) {
    if (!names.has(name)) {
      parts.row.remove();
      subRows.delete(name);
    }
  }
  for (const info of list) {
    let parts = subRows.get(info.name);
    if (!parts) {
      parts = subscriptionRow(info);
      subRows.set(info.name, parts);
      insertSorted(body, parts.row, info.name);
    }
    updateSubscription(info);
  }
  const empty = body.querySelector(".empty");
  if (!list.length && !empty) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: 9, text: "No subscriptions." })));
  } else if (list.length && empty) {
    empty.remove();
  }
}

function updateSubscription(info) {
  const parts = subRows.get(info.name);
  if (!parts) return;
  parts.floor.textContent = formatNumber(info.ack_floor);
  parts.pending.textContent = formatNumber(info.pending);
  parts.lag.textContent = formatNumber(info.lag);
  const h = subHistory.get(`${info.topic}\0${info.name}`);
  if (h) {
    draw(parts.lagChart, h.lag, "");
    draw(parts.pendingChart, h.pending, "");
    draw(parts.floorChart, h.floor, "");
  }
}

function subscriptionRow(info) {
  const topic = info.topic;
  const parts = {
    floor: el("td", { class: "num ack-floor" }),
    pending: el("td", { class: "num pending" }),
    lag: el("td", { class: "num lag" }),
    lagChart: sparkline(`lag of ${info.name} over time`),
    pendingChart: sparkline(`pending messages of ${info.name} over time`),
    floorChart: sparkline(`ack floor of ${info.name} over time`),
  };
  const mode = el("select", { class: "seek-mode", "aria-label": `seek ${info.name} to` },
    ...["earliest", "latest", "offset", "time"].map((m) => el("option", { value: m, text: m })));
  const offset = el("input", { class: "seek-offset", type: "number", min: 0, step: 1, placeholder: "offset", hidden: "" });
  const when = el("input", { class: "seek-time", type: "datetime-local", step: 1, hidden: "" });
  mode.addEventListener("change", () => {
    offset.hidden = mode.value !== "offset";
    when.hidden = mode.value !== "time";
  });
  const form = el("form", { class: "inline seek" }, mode, offset, when,
    el("button", { type: "submit", text: "Seek" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(`Seek ${info.name}`, async () => {
      let body = { position: mode.value };
      if (mode.value === "offset") {
        if (offset.value === "") throw new Error("give the offset to seek to");
        body = { offset: Number(offset.value) };
      } else if (mode.value === "time") {
        const ms = new Date(when.value).getTime();
        if (!Number.isFinite(ms)) throw new Error("give the time to seek to");
        body = { timestamp: ms };
      }
      const moved = await call("POST", path("topics", topic, "subscriptions", info.name, "seek"), body);
      updateSubscription(moved);
      say(`${info.name} now starts at ${moved.ack_floor}.`);
    });
  });
  parts.row = el("tr", { "data-key": info.name, "data-sub": info.name },
    el("td", { text: info.name }), parts.floor, parts.pending, parts.lag,
    el("td", { class: "chart" }, parts.lagChart),
    el("td", { class: "chart" }, parts.pendingChart),
    el("td", { class: "chart" }, parts.floorChart),
    el("td", {}, form));
  if (grant.admin) {
    parts.row.append(el("td", {}, deleteButton(`Delete subscription ${info.name}`, async () => {
      await call("DELETE", path("topics", topic, "subscriptions", info.name));
      say(`Deleted subscription ${info.name}.`);
      await refresh();
    })));
  }
  return parts;
}

// --- messages: text, hex, search ----------------------------------------------------------------

function fieldBytes(message, field) {
  if (typeof message[field] === "string") return new TextEncoder().encode(message[field]);
  if (typeof message[`${field}_b64`] === "string") {
    return Uint8Array.from(atob(message[`${field}_b64`]), (c) => c.charCodeAt(0));
  }
  return null;
}

function fieldText(message, field) {
  if (typeof message[field] === "string") return message[field];
  const raw = fieldBytes(message, field);
  return raw === null ? null : new TextDecoder().decode(raw);
}

function hex(raw) {
  const lines = [];
  for (let at = 0; at < raw.length; at += 16) {
    const row = raw.slice(at, at + 16);
    const codes = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = [...row].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${at.toString(16).padStart(8, "0")}  ${codes.padEnd(47)}  ${text}`);
  }
  return lines.join("\n") || "(empty)";
}

function headersText(headers) {
  return Object.entries(headers || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

// Search is over the text of the key, every header name and value, and the value (binary
// values: their UTF-8 reading and their hex digits), case-insensitive.
function matches(message, query) {
  const parts = [fieldText(message, "key") || "", headersText(message.headers), fieldText(message, "value") || ""];
  if (typeof message.value_b64 === "string") {
    parts.push([...fieldBytes(message, "value")].map((b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return parts.join("\n").toLowerCase().includes(query);
}

function preview(text, limit = 120) {
  if (text === null) return "";
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

function messageRow(message, onClick) {
  const row = el("tr", { "data-offset": message.offset },
    el("td", { class: "num", text: message.offset }),
    el("td", { text: time(message.timestamp) }),
    el("td", { class: "mono", text: preview(fieldText(message, "key"), 40) }),
    el("td", { class: "mono", text: preview(headersText(message.headers), 60) }),
    el("td", { class: "mono", text: preview(fieldText(message, "value")) }));
  if (onClick) {
    row.classList.add("clickable");
    row.addEventListener("click", () => onClick(message));
  }
  return row;
}

function showDetail(message) {
  detail = message;
  $("message-detail").hidden = false;
  $("detail-offset").textContent = message.offset;
  const key = fieldText(message, "key");
  const fields = [
    ["time", `${time(message.timestamp)} (${message.timestamp})`],
    ["key", key === null ? "(none)" : key],
    ...Object.entries(message.headers || {}).map(([k, v]) => [`header ${k}`, v]),
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  renderDetailValue(typeof message.value_b64 === "string" ? "hex" : "text");
}

function renderDetailValue(view) {
  $("view-text").setAttribute("aria-selected", String(view === "text"));
  $("view-hex").setAttribute("aria-selected", String(view === "hex"));
  const raw = fieldBytes(detail, "value");
  $("detail-value").textContent = view === "hex" ? hex(raw) : fieldText(detail, "value");
}

async function startBrowse() {
  const query = $("browse-search").value.trim().toLowerCase();
  let start;
  if ($("browse-from").value === "time") {
    const ms = new Date($("browse-time").value).getTime();
    if (!Number.isFinite(ms)) throw new Error("give a time to start from");
    start = `timestamp=${ms}`;
  } else {
    const value = $("browse-offset").value;
    start = value === "" ? "" : `offset=${Number(value)}`;
  }
  browse = { topic: selected, query, start, first: null, last: null, shown: 0, scanned: 0, found: 0 };
  $("messages").tBodies[0].replaceChildren();
  $("message-detail").hidden = true;
  await browseMore();
}

async function browseMore() {
  const b = browse;
  const body = $("messages").tBodies[0];
  let scanned = 0;
  let found = 0;
  let atEnd = false;
  for (;;) {
    const max = b.query ? SEARCH_PAGE : PAGE;
    const query = [b.start, `max=${max}`].filter(Boolean).join("&");
    const page = await call("GET", `${path("topics", b.topic, "messages")}?${query}`);
    if (browse !== b) return; // another search started meanwhile
    for (const message of page.messages) {
      scanned += 1;
      if (b.first === null) b.first = message.offset;
      b.last = message.offset;
      if (!b.query || matches(message, b.query)) {
        found += 1;
        body.append(messageRow(message, showDetail));
      }
    }
    b.start = `offset=${page.next_offset}`;
    atEnd = !page.messages.length || page.next_offset >= page.end_offset;
    if (atEnd || !b.query || found >= PAGE || scanned >= SEARCH_SCAN) break;
  }
  b.scanned += scanned;
  b.found += found;
  const range = b.first === null ? "no messages" : `offsets ${b.first}–${b.last}`;
  const searched = b.query ? `: ${b.found} matching “${b.query}” of ${b.scanned} searched` : `: ${b.found} shown`;
  $("browse-summary").textContent = `${range}${searched}${atEnd ? " (end of the topic)" : ""}`;
  $("browse-more").hidden = atEnd;
}

// --- live tail ----------------------------------------------------------------------------------

function startTail() {
  if (tailStop || !selected) return;
  const controller = new AbortController();
  tailStop = controller;
  const topic = selected;
  const body = $("tail").tBodies[0];
  $("tail-toggle").textContent = "Stop";
  $("tail-status").textContent = "connecting…";
  tail(topic, (message) => {
    body.insertBefore(messageRow(message, null), body.firstChild);
    while (body.rows.length > TAIL_ROWS) body.lastChild.remove();
  }, (text, isError) => {
    $("tail-status").textContent = text;
    $("tail-status").className = isError ? "error" : "live";
    if (text.startsWith("stopped")) stopTail();
  }, controller.signal);
}

function stopTail() {
  if (!tailStop) return;
  tailStop.abort();
  tailStop = null;
  $("tail-toggle").textContent = "Start";
  if (!$("tail-status").textContent.startsWith("stopped")) $("tail-status").textContent = "paused";
}

// --- admin forms --------------------------------------------------------------------------------

function optionalNumber(id, scale) {
  const text = $(id).value;
  return text === "" ? null : Math.round(Number(text) * scale);
}

async function createTopic() {
  const id = $("new-topic-id").value.trim();
  const body = {
    name: $("new-topic-name").value.trim() || null,
    retention_ms: optionalNumber("new-topic-hours", 3600000),
    retention_bytes: optionalNumber("new-topic-mib", 1048576),
  };
  await call("PUT", path("topics", id), body);
  $("create-topic").reset();
  say(`Created topic ${id}.`);
  await refresh();
  select(id);
}

async function createSubscription() {
  const name = $("new-sub-name").value.trim();
  const body = { start: $("new-sub-start").value, ack_wait: Number($("new-sub-ack-wait").value) };
  await call("PUT", path("topics", selected, "subscriptions", name), body);
  $("new-sub-name").value = "";
  say(`Subscribed ${name}.`);
  await refresh();
}

// --- start --------------------------------------------------------------------------------------

function wire() {
  for (const button of $("tabs").querySelectorAll("button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("browse-from").addEventListener("change", () => {
    $("browse-offset").hidden = $("browse-from").value !== "offset";
    $("browse-time").hidden = $("browse-from").value !== "time";
  });
  $("browse").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Messages", startBrowse);
  });
  $("browse-more").addEventListener("click", () => act("Messages", browseMore));
  $("view-text").addEventListener("click", () => renderDetailValue("text"));
  $("view-hex").addEventListener("click", () => renderDetailValue("hex"));
  $("tail-toggle").addEventListener("click", () => (tailStop ? stopTail() : startTail()));
  if (!grant.admin) return;
  $("create-topic").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Create topic", createTopic);
  });
  $("create-subscription").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Subscribe", createSubscription);
  });
}

async function main() {
  grant = await signIn($("signin"), $("token"), $("signin-error"));
  if (!grant.admin) {
    // Not hidden but gone: the page never shows what this token may not do.
    for (const node of document.querySelectorAll(".admin")) node.remove();
  }
  if (grant.auth) {
    $("who-name").textContent = `signed in as ${grant.name}${grant.admin ? " (admin)" : ""}`;
    $("sign-out").addEventListener("click", signOut);
    $("who").hidden = false;
  } else {
    $("sign-out").remove();
    $("who-name").textContent = "no auth file: anyone who reaches this server may do everything";
    $("who").hidden = false;
  }
  wire();
  $("app").hidden = false;
  const loop = async () => {
    await refresh();
    setTimeout(loop, SAMPLE_MS);
  };
  loop();
}

main().catch((error) => say(`The dashboard could not start: ${error.message}`, true));
