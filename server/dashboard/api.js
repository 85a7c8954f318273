// The public HTTP API as the pages use it: the token, JSON calls, the event stream, and
// what the token's grant allows. Shared by the dashboard (dashboard.js) and the HTTP
// reference page (docs.js).

const TOKEN_KEY = "logstore.token";

// sessionStorage: the token lives as long as this tab, and no other tab or window sees it.
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

function headers(extra) {
  const all = { ...extra };
  const t = token();
  if (t) all.Authorization = `Bearer ${t}`;
  return all;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const doc = await response.json();
    code = doc.error || code;
    message = doc.message || message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message);
}

// One API call: the parsed JSON answer (null for 204), or an ApiError with the server's
// message. A 401 after signing in means the token stopped working: ask for one again.
export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && token()) signOut();
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

export function path(...parts) {
  return "/" + parts.map(encodeURIComponent).join("/");
}

// The page's sign-in: with an auth file (the server marks <body data-auth="on">) it asks
// for a token until GET /whoami accepts one; the grant it answers decides what is shown.
export async function signIn(form, field, errorLine) {
  if (document.body.dataset.auth !== "on") return call("GET", "/whoami");
  for (;;) {
    if (token()) {
      try {
        const grant = await fetchGrant();
        form.hidden = true;
        return grant;
      } catch (error) {
        sessionStorage.removeItem(TOKEN_KEY);
        errorLine.textContent = error.status === 401 ? "That token was refused." : error.message;
      }
    }
    form.hidden = false;
    field.focus();
    await new Promise((resolve) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, field.value.trim());
        field.value = "";
        resolve();
      }, { once: true });
    });
  }
}

async function fetchGrant() {
  const response = await fetch("/whoami", { headers: headers({}) });
  if (!response.ok) throw await failure(response);
  return response.json();
}

function globMatches(glob, topic) {
  const escaped = glob.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`, "s").test(topic);
}

// What the server's auth.Grant.may answers, so the page hides what would be refused.
export function may(grant, action, topic) {
  if (grant.admin) return true;
  return (grant[action] || []).some((glob) => globMatches(glob, topic));
}

// GET /topics/{topic}/events read with fetch() rather than EventSource, which cannot send an
// Authorization header. Calls onEvent(message) for each event; reconnects after a failure
// with Last-Event-ID, so no message is skipped or repeated; stops when `signal` aborts.
export async function tail(topic, onEvent, onStatus, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const extra = lastId === null ? {} : { "Last-Event-ID": lastId };
      const response = await fetch(path("topics", topic, "events"), { headers: headers(extra), signal });
      if (!response.ok) {
        const error = await failure(response);
        if (response.status < 500 && response.status !== 429) {
          onStatus(`stopped: ${error.message}`, true);
          return;
        }
        throw error;
      }
      onStatus("live", false);
      for await (const event of sseEvents(response.body)) {
        if (event.event === "error") {
          onStatus(`stopped: ${JSON.parse(event.data).message}`, true);
          return;
        }
        if (event.id !== undefined) lastId = event.id;
        onEvent(JSON.parse(event.data));
      }
    } catch (error) {
      if (signal.aborted) return;
      onStatus(`reconnecting: ${error.message}`, true);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// The events of a text/event-stream body (the WHATWG format: fields up to a blank line).
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = {};
      const data = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(text);
        else if (field === "id" || field === "event") event[field] = text;
      }
      if (data.length) {
        event.data = data.join("\n");
        yield event;
      }
    }
  }
}
