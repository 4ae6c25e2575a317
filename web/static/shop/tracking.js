// Behaviour tracking: events gathered in batches to POST /api/events with the browsing
// session's id (localStorage "shop.session_id"). A signed-in caller's events carry their user.

import { accessToken, newId } from "./api.js";

const SESSION_KEY = "shop.session_id";
const FLUSH_MS = 1500;
const MAX_BATCH = 100;
let queue = [];
let timer = null;

export function sessionId() {
  let id = localStorage.getItem(SESSION_KEY);
  if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
    id = newId().slice(0, 32);
    localStorage.setItem(SESSION_KEY, id);
  }
  return id;
}

/** Track one behaviour: track("product_view", {sku}); sent within FLUSH_MS. */
export function track(type, detail = {}) {
  const event = { type, at: new Date().toISOString() };
  for (const [key, value] of Object.entries(detail)) {
    if (value !== undefined && value !== null && value !== "") event[key] = String(value).slice(0, key === "path" ? 500 : 200);
  }
  queue.push(event);
  if (queue.length >= MAX_BATCH) flush();
  else if (!timer) timer = setTimeout(flush, FLUSH_MS);
}

/** Send what is queued now (keepalive: it also leaves with the page). */
export function flush() {
  clearTimeout(timer);
  timer = null;
  if (!queue.length) return;
  const events = queue.splice(0, MAX_BATCH);
  const headers = { "Content-Type": "application/json" };
  const token = accessToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  fetch("/api/events", {
    method: "POST", headers, keepalive: true,
    body: JSON.stringify({ session_id: sessionId(), events }),
  }).catch(() => { /* tracking is best effort */ });
}

window.addEventListener("pagehide", flush);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flush(); });
