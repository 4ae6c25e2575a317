// The notifications bell: the newest notifications and the unread count, kept live by the
// SSE stream /api/notifications/stream (resumed after the newest one listed, so nothing is
// missed between the list and the stream). Each new one is also announced to the page
// ("shop:notification"), so an order page can refresh itself.

import { api, claims, fill, follow, h, toast, when } from "./api.js";

let stop = null;
let items = [];
let unread = 0;

const el = (id) => document.getElementById(id);

export function startBell(navigate) {
  const button = el("bell");
  const panel = el("bell-panel");
  button.addEventListener("click", () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) draw(navigate);
  });
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !el("bell-wrap").contains(event.target)) {
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
    }
  });
  window.addEventListener("shop:auth", () => restart(navigate));
  restart(navigate);
}

async function restart(navigate) {
  if (stop) { stop(); stop = null; }
  items = [];
  unread = 0;
  const signedIn = !!claims();
  el("bell-wrap").hidden = !signedIn;
  badge();
  if (!signedIn) return;
  let after = 0;
  try {
    const page = await api("/api/notifications?limit=20");
    items = page.items;
    unread = page.unread;
    after = items.reduce((max, item) => Math.max(max, item.seq), 0);
  } catch {
    return;
  }
  badge();
  stop = follow("/api/notifications/stream", (name, data) => {
    if (!data || !data.id || items.some((item) => item.id === data.id)) return;
    items.unshift(data);
    items = items.slice(0, 50);
    if (!data.read) unread += 1;
    badge();
    if (!el("bell-panel").hidden) draw(navigate);
    toast(data.title);
    window.dispatchEvent(new CustomEvent("shop:notification", { detail: data }));
  }, { lastEventId: after, onState: (live) => el("bell").classList.toggle("streaming", live) });
}

function badge() {
  const count = el("bell-count");
  count.textContent = String(unread);
  count.hidden = unread === 0;
  el("bell").setAttribute("aria-label", `Notifications, ${unread} unread`);
}

function draw(navigate) {
  const panel = el("bell-panel");
  if (!items.length) {
    fill(panel, h("p", { class: "muted" }, "No notifications yet."));
    return;
  }
  fill(panel, 
    h("ul", {}, items.map((item) => h("li", { class: item.read ? "" : "unread", "data-kind": item.kind },
      h("a", { href: item.link || "/notifications", onclick: (event) => { event.preventDefault(); open(item, navigate); } },
        h("strong", {}, item.title)),
      h("div", {}, item.body),
      h("small", { class: "muted" }, when(item.created_at))))),
    h("p", {}, h("a", { href: "/notifications" }, "All notifications")));
}

async function open(item, navigate) {
  el("bell-panel").hidden = true;
  el("bell").setAttribute("aria-expanded", "false");
  if (!item.read) {
    item.read = true;
    unread = Math.max(0, unread - 1);
    badge();
    api(`/api/notifications/${encodeURIComponent(item.id)}/read`, { method: "POST" }).catch(() => {});
  }
  navigate(item.link || "/notifications");
}

export function markRead(id) {
  const item = items.find((i) => i.id === id);
  if (item && !item.read) { item.read = true; unread = Math.max(0, unread - 1); badge(); }
}
