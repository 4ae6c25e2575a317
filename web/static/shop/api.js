// The JSON API from the browser: tokens, one retry after a refresh, the error shape, the
// Shop-Position of a write answered 202 sent back until the API has applied it, server-sent
// events over fetch (EventSource cannot send the Authorization header).

export const ACCESS_KEY = "shop.access_token";
export const REFRESH_KEY = "shop.refresh_token";

/** An answer of the API that is not 2xx, with the shop's error shape. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.details = error.details;
  }
}

export function accessToken() { return localStorage.getItem(ACCESS_KEY); }

export function saveTokens(tokens) {
  localStorage.setItem(ACCESS_KEY, tokens.access_token);
  localStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  window.dispatchEvent(new CustomEvent("shop:auth"));
}

export function clearTokens() {
  const had = accessToken() !== null;
  localStorage.removeItem(ACCESS_KEY);
  localStorage.removeItem(REFRESH_KEY);
  if (had) window.dispatchEvent(new CustomEvent("shop:auth"));
}

/** The claims of the access token ({sub, roles, exp}), or null when signed out. */
export function claims() {
  const token = accessToken();
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + (4 - part.length % 4) % 4, "=")));
  } catch {
    return null;
  }
}

export function hasRole(...roles) {
  const c = claims();
  return !!c && Array.isArray(c.roles) && roles.some((r) => c.roles.includes(r));
}

let refreshing = null;

/** Swap the refresh token for new tokens (once at a time); return true if it worked. */
export function refreshTokens() {
  const refresh = localStorage.getItem(REFRESH_KEY);
  if (!refresh) return Promise.resolve(false);
  if (!refreshing) {
    refreshing = fetch("/api/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    }).then(async (response) => {
      if (!response.ok) { clearTokens(); return false; }
      saveTokens(await response.json());
      return true;
    }).catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

function authHeaders() {
  const token = accessToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A write the API answered 202 (applied later): its Shop-Position goes with the next requests,
// which the API answers once it is applied, so a page shows the write without polling.
let position = null;
const MAX_POSITIONS = 4;

function notePosition(header) {
  if (!header) return;
  const known = new Map((position ? position.split(",") : []).map((p) => [p.split(":").slice(0, 2).join(":"), p]));
  for (const p of header.split(",")) known.set(p.split(":").slice(0, 2).join(":"), p);
  position = [...known.values()].slice(-MAX_POSITIONS).join(",");
}

/** Call the API; return the JSON body; throw ApiError. A 401 refreshes the tokens once. */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const sent = position;
  const send = () => fetch(path, {
    method, signal,
    headers: { Accept: "application/json", ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...authHeaders(), ...(sent ? { "Shop-Position": sent } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let response = await send();
  if (response.status === 401 && accessToken() && await refreshTokens()) response = await send();
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  // Answered with the position (or refused it as foreign): no need to send it again.
  if (sent && position === sent && response.status !== 503) position = null;
  notePosition(response.headers.get("Shop-Position"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function login(email, password) {
  saveTokens(await api("/api/auth/login", { method: "POST", body: { email, password } }));
}

export async function logout() {
  const refresh = localStorage.getItem(REFRESH_KEY);
  try {
    if (refresh) await api("/api/auth/logout", { method: "POST", body: { refresh_token: refresh } });
  } finally {
    clearTokens();
  }
}

let documentPaths = null;

/** Return true if this worker's API has ``path`` (from /api/openapi.json; no 404 probing). */
export async function hasEndpoint(path) {
  if (!documentPaths) {
    documentPaths = api("/api/openapi.json").then((doc) => new Set(Object.keys(doc.paths || {})))
      .catch(() => new Set());
  }
  return (await documentPaths).has(path);
}

/**
 * Follow a server-sent event stream with the Authorization header; call onEvent(name, data,
 * id) per event; reconnect after errors with Last-Event-ID. Returns a function that stops it.
 */
export function follow(path, onEvent, { lastEventId = null, onState = () => {} } = {}) {
  const control = new AbortController();
  let last = lastEventId;
  let delay = 500;
  let refreshed = false;
  (async () => {
    while (!control.signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (last !== null && last !== undefined) headers["Last-Event-ID"] = String(last);
        const response = await fetch(path, { headers, signal: control.signal, cache: "no-store" });
        if (response.status === 401 && !refreshed && await refreshTokens()) { refreshed = true; continue; }
        if (!response.ok || !response.body) throw new ApiError(response.status, null);
        onState(true);
        delay = 500;
        refreshed = false;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let event = { name: "message", data: [], id: null };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let newline;
          while ((newline = buffer.search(/\r?\n/)) >= 0) {
            const line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
            if (line === "") {
              if (event.data.length) {
                if (event.id !== null) last = event.id;
                let data = event.data.join("\n");
                try { data = JSON.parse(data); } catch { /* plain text */ }
                onEvent(event.name, data, event.id);
              }
              event = { name: "message", data: [], id: null };
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") event.name = text;
              else if (field === "data") event.data.push(text);
              else if (field === "id") event.id = text;
            }
          }
        }
      } catch (error) {
        if (control.signal.aborted) break;
      }
      onState(false);
      if (control.signal.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => control.abort();
}

// -- small helpers for the pages ------------------------------------------------------------

/** Build an element: h("a", {href: "/"}, "text", child...). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A labelled form control: field("Email", {name: "email", type: "email"}). */
export function field(label, attrs = {}, tag = "input") {
  const id = attrs.id || `f-${attrs.name}-${Math.random().toString(36).slice(2, 8)}`;
  const control = tag === "select"
    ? h("select", { ...attrs, id, options: null }, (attrs.options || []).map(([value, text]) => h("option", { value }, text)))
    : h(tag, { ...attrs, id });
  return [h("label", { for: id }, label), control];
}

export function money(cents) {
  if (cents === null || cents === undefined) return "";
  return new Intl.NumberFormat("en", { style: "currency", currency: "EUR" }).format(cents / 100);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, String(status).replace(/_/g, " "));
}

export function toast(message) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 3500);
}

/** The message to show for an error of the API (or of the network). */
export function errorText(error) {
  if (error instanceof ApiError) {
    const details = Array.isArray(error.details)
      ? error.details.map((d) => (d.loc ? `${d.loc.join(".")}: ` : "") + (d.msg || JSON.stringify(d))).join("; ")
      : "";
    return details ? `${error.message} (${details})` : error.message;
  }
  return "The shop does not answer; try again in a moment.";
}

export function newId() {
  return (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`).replace(/[^A-Za-z0-9]/g, "");
}

/** Replace the children of ``el`` (null, undefined and false are left out). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}
