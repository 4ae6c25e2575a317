// Calls to the admin analytics API with the bearer token the admin console keeps in
// localStorage["shop.access_token"], and a reader of server-sent events over fetch
// (EventSource cannot send an Authorization header).

export const TOKEN_KEY = "shop.access_token";

export class NotSignedIn extends Error {}

function headers(extra = {}) {
  const token = window.localStorage.getItem(TOKEN_KEY);
  if (!token) throw new NotSignedIn("no access token");
  return { Authorization: `Bearer ${token}`, ...extra };
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers({ Accept: "application/json" }) });
  if (response.status === 401 || response.status === 403) {
    throw new NotSignedIn(`the API answered ${response.status}`);
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

// Read server-sent events from `path`, calling onEvent(name, data) for each; resolves when
// the stream ends (the caller reconnects). `signal` aborts it.
export async function readEvents(path, onEvent, signal) {
  const response = await fetch(path, {
    headers: headers({ Accept: "text/event-stream" }), signal, cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    throw new NotSignedIn(`the stream answered ${response.status}`);
  }
  if (!response.ok || !response.body) throw new Error(`${path}: ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue;  // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

export function showNotice(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

export function signInNotice() {
  showNotice("Sign in as an admin in the admin console (/admin) first: these pages read the " +
             "analytics API with the console's access token.");
}

export function setStatus(text, live = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("live", live);
}

export const number = (n) => Number(n || 0).toLocaleString("en-US");
export const money = (cents) =>
  (Number(cents || 0) / 100).toLocaleString("en-US", { style: "currency", currency: "USD" });

export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== "") node.textContent = text;
  return node;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
