// Storefront pages of orders: checkout, the order history, one order (live while the saga runs).

import { api, claims, errorText, field, fill, h, money, newId, statusBadge, toast, when } from "./api.js";
import * as cart from "./cart.js";

const SETTLING = new Set(["placed", "reserved"]);
const FINAL = new Set(["delivered", "cancelled", "rejected", "payment_failed", "expired"]);
const CANCELLABLE = new Set(["placed", "reserved", "confirmed"]);
const METHODS = [
  ["pm_card_ok", "Card (test: accepted)"],
  ["pm_card_slow", "Card (test: slow bank)"],
  ["pm_card_declined", "Card (test: declined)"],
  ["pm_card_insufficient_funds", "Card (test: insufficient funds)"],
];

export function needSignIn(main, next) {
  fill(main, h("h1", {}, "Please sign in"),
    h("p", {}, h("a", { href: `/login?next=${encodeURIComponent(next)}` }, "Log in"), " or ",
      h("a", { href: `/register?next=${encodeURIComponent(next)}` }, "create an account"), " to continue."));
}

export async function checkout(main, params, signal, navigate) {
  if (!claims()) return needSignIn(main, "/checkout");
  const lines = cart.items();
  if (!lines.length) { navigate("/cart", { replace: true }); return; }
  const promotions = await api("/api/promotions", { signal }).then((p) => p.items).catch(() => []);
  const code = field("Promotion code", { name: "promotion_code", maxlength: 64, autocomplete: "off", list: "promotion-codes" });
  const method = field("Payment method", { name: "payment_method", options: METHODS }, "select");
  const message = h("p", { role: "alert", class: "error" });
  const button = h("button", { type: "submit" }, "Place order");
  // One key per visit of this page: a double click or a retry places one order.
  const idempotencyKey = newId();
  fill(main, 
    h("h1", {}, "Checkout"),
    h("ul", { id: "checkout-lines" }, lines.map((l) => h("li", {}, `${l.quantity} \u00d7 ${l.name} \u2014 ${money(l.quantity * l.price_cents)}`))),
    h("p", { class: "price" }, "Subtotal: ", money(cart.subtotal())),
    h("datalist", { id: "promotion-codes" }, promotions.map((p) => h("option", { value: p.code }))),
    promotions.length ? h("p", { class: "muted" }, "Current offers: ", promotions.map((p) => p.code).join(", ")) : null,
    h("form", {
      class: "stack", id: "checkout-form", onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        message.textContent = "";
        const body = { items: lines.map((l) => ({ sku: l.sku, quantity: l.quantity })), payment_method: method[1].value };
        if (code[1].value.trim()) body.promotion_code = code[1].value.trim();
        try {
          // Answered once the order is readable (or with a Shop-Position its page sends back).
          const placed = await api("/api/orders", { method: "POST", body, headers: { "Idempotency-Key": idempotencyKey } });
          cart.clear();
          toast("Order placed");
          navigate(`/orders/${encodeURIComponent(placed.id)}`);
        } catch (error) {
          message.textContent = errorText(error);
          button.disabled = false;
        }
      },
    }, code, method, message, button));
}

export async function orders(main, { query }, signal) {
  if (!claims()) return needSignIn(main, "/orders");
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const result = await api(`/api/orders?page=${page}&per_page=20`, { signal });
  fill(main, h("h1", {}, "Your orders"));
  if (!result.items.length) { main.append(h("p", {}, "No orders yet. ", h("a", { href: "/products" }, "Start shopping"))); return; }
  main.append(h("div", { class: "table-wrap" }, h("table", { id: "orders" },
    h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Placed"), h("th", {}, "Total"), h("th", {}, "Status"), h("th", {}, h("span", { class: "sr-only" }, "Actions")))),
    h("tbody", {}, result.items.map((order) => h("tr", { "data-order": order.id },
      h("td", {}, h("a", { href: `/orders/${order.id}` }, order.id.slice(0, 8))),
      h("td", {}, when((order.history && order.history[0] && order.history[0].at) || order.placed_at)),
      h("td", {}, money(order.total_cents)),
      h("td", {}, statusBadge(order.status)),
      h("td", {}, CANCELLABLE.has(order.status) ? cancelButton(order.id, () => orders(main, { query }, signal)) : null)))))));
  if (result.total > page * result.per_page) main.append(h("p", {}, h("a", { href: `/orders?page=${page + 1}` }, "Older orders")));
}

function cancelButton(orderId, after) {
  return h("button", {
    type: "button", class: "danger", "aria-label": `Cancel order ${orderId.slice(0, 8)}`,
    onclick: async (event) => {
      if (!window.confirm("Cancel this order? A paid order is refunded.")) return;
      event.target.disabled = true;
      try {
        await api(`/api/orders/${encodeURIComponent(orderId)}/cancel`, { method: "POST" });
        toast("Order cancelled");
        after();
      } catch (error) {
        toast(errorText(error));
        event.target.disabled = false;
      }
    },
  }, "Cancel");
}

/** One order; its status follows the saga without a reload (long poll, then notifications). */
export async function order(main, { order_id: orderId }, signal) {
  if (!claims()) return needSignIn(main, `/orders/${orderId}`);
  const path = `/api/orders/${encodeURIComponent(orderId)}`;
  let current = await api(path, { signal });
  const status = h("p", { id: "order-status", "aria-live": "polite" });
  const history = h("ol", { class: "history", id: "order-history" });
  const actions = h("p", {});
  const totals = h("div", { class: "totals", id: "order-totals" });
  const draw = () => {
    fill(status, "Status: ", statusBadge(current.status), current.reason ? ` \u2014 ${current.reason}` : "");
    fill(totals, 
      h("span", {}, "Subtotal"), h("span", {}, money(current.subtotal_cents)),
      h("span", {}, "Discount"), h("span", {}, current.discount_cents ? `\u2212${money(current.discount_cents)}` : money(0)),
      h("strong", {}, "Total"), h("strong", { id: "order-total" }, money(current.total_cents)),
      current.promotion_code ? h("span", { class: "muted" }, "Promotion code") : "",
      current.promotion_code ? h("span", { class: "muted" }, current.promotion_code) : "");
    fill(history, ...(current.history || []).map((step) => h("li", {}, statusBadge(step.status), " ", h("small", { class: "muted" }, when(step.at)))));
    fill(actions, 
      CANCELLABLE.has(current.status) ? cancelButton(current.id, refresh) : "", " ",
      h("a", { href: `/support?order_id=${encodeURIComponent(current.id)}` }, "Get help with this order"));
  };
  const refresh = async () => {
    try { current = await api(path, { signal }); draw(); } catch { /* the next event or poll */ }
  };
  fill(main, 
    h("h1", {}, `Order ${orderId.slice(0, 8)}`),
    status,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", {}, "Quantity"), h("th", {}, "Price"))),
      h("tbody", {}, current.items.map((line) => h("tr", {},
        h("td", {}, h("a", { href: `/products/${encodeURIComponent(line.sku)}` }, line.sku)),
        h("td", {}, line.quantity), h("td", {}, money(line.unit_price_cents * line.quantity))))))),
    totals,
    h("h2", {}, "History"), history, actions);
  draw();
  const onNotice = (event) => { if (event.detail.link === `/orders/${orderId}`) refresh(); };
  window.addEventListener("shop:notification", onNotice);
  signal.addEventListener("abort", () => window.removeEventListener("shop:notification", onNotice));
  // Follow the saga: long polls while it settles, then a slow poll until a final status
  // (the notifications stream refreshes the page sooner).
  (async () => {
    while (!signal.aborted && !FINAL.has(current.status)) {
      try {
        if (SETTLING.has(current.status)) {
          current = await api(`${path}?wait=10`, { signal });
        } else {
          await new Promise((resolve) => setTimeout(resolve, 10000));
          if (signal.aborted) break;
          current = await api(path, { signal });
        }
        draw();
      } catch {
        if (signal.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  })();
}
