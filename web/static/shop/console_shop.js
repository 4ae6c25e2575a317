// Console sections of the shop: orders (find, ship, deliver, cancel), the catalog (stock,
// restock, new products), promotions (list, create, delete).

import { api, errorText, field, fill, h, money, statusBadge, toast, when } from "./api.js";

const FINAL = new Set(["delivered", "cancelled", "rejected", "payment_failed", "expired"]);

function onSubmit(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const message = form.querySelector("[role=alert]");
    if (button) button.disabled = true;
    if (message) message.textContent = "";
    try {
      await action(new FormData(form));
    } catch (error) {
      if (message) message.textContent = errorText(error);
      else toast(errorText(error));
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

const alertLine = () => h("p", { class: "error", role: "alert" });

// -- orders ---------------------------------------------------------------------------------

export async function ordersSection(main, { query }, signal) {
  const detail = h("section", { id: "order-detail", "aria-live": "polite" });
  const list = h("section", { id: "customer-orders" });
  const showOrder = async (orderId) => {
    const order = await api(`/api/orders/${encodeURIComponent(orderId)}`, { signal });
    const act = (action, label) => h("button", {
      type: "button", class: action === "cancel" ? "danger" : "", "data-action": action, onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api(`/api/orders/${encodeURIComponent(order.id)}/${action}`, { method: "POST" });
          toast(`${label}: done`);
          await showOrder(order.id);
        } catch (error) {
          toast(errorText(error));
          event.target.disabled = false;
        }
      },
    }, label);
    fill(detail, h("h2", {}, `Order ${order.id}`),
      h("p", { id: "admin-order-status" }, statusBadge(order.status), " ", order.reason || "",
        " \u00b7 customer ", h("a", { href: `/admin/orders?user_id=${encodeURIComponent(order.user_id)}` }, order.user_id)),
      h("ul", {}, order.items.map((l) => h("li", {}, `${l.quantity} \u00d7 ${l.sku} at ${money(l.unit_price_cents)}`))),
      h("p", {}, `Total ${money(order.total_cents)}`, order.discount_cents ? ` (discount ${money(order.discount_cents)}, code ${order.promotion_code})` : "", ` \u00b7 ${order.payment_method}`),
      h("ol", { class: "history" }, (order.history || []).map((s) => h("li", {}, statusBadge(s.status), " ", h("small", { class: "muted" }, when(s.at))))),
      h("p", {}, order.status === "confirmed" ? act("ship", "Ship") : "", " ",
        order.status === "shipped" ? act("deliver", "Mark delivered") : "", " ",
        ["placed", "reserved", "confirmed"].includes(order.status) ? act("cancel", "Cancel") : ""));
  };
  const listOf = async (userId) => {
    const page = await api(`/api/orders?user_id=${encodeURIComponent(userId)}&per_page=50`, { signal });
    fill(list, h("h2", {}, `Orders of ${userId}`), page.items.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Order", "Status", "Total"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((o) => h("tr", {},
        h("td", {}, h("a", { href: `/admin/orders?order_id=${o.id}` }, o.id.slice(0, 8))),
        h("td", {}, statusBadge(o.status)), h("td", {}, money(o.total_cents)))))))
      : h("p", { class: "muted" }, "No orders."));
  };
  const byId = onSubmit(h("form", { class: "row", id: "find-order" },
    h("div", {}, field("Order id", { name: "order_id", required: true, value: query.get("order_id") || "" })),
    h("button", { type: "submit" }, "Open order"), alertLine()), async (data) => {
    history.replaceState(null, "", `/admin/orders?order_id=${encodeURIComponent(data.get("order_id"))}`);
    await showOrder(data.get("order_id").trim());
  });
  const byUser = onSubmit(h("form", { class: "row", id: "find-customer" },
    h("div", {}, field("Customer user id", { name: "user_id", required: true, value: query.get("user_id") || "" })),
    h("button", { type: "submit" }, "List orders"), alertLine()), async (data) => {
    await listOf(data.get("user_id").trim());
  });
  fill(main, h("h1", {}, "Orders"),
    h("p", { class: "muted" }, "Open an order by its id (tickets and notifications name it), or list a customer's orders."),
    byId, byUser, detail, list);
  if (query.get("order_id")) await showOrder(query.get("order_id")).catch((e) => fill(detail, h("p", { class: "error" }, errorText(e))));
  if (query.get("user_id")) await listOf(query.get("user_id")).catch((e) => fill(list, h("p", { class: "error" }, errorText(e))));
}

// -- catalog --------------------------------------------------------------------------------

export async function catalogSection(main, { query }, signal) {
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const q = query.get("q") || "";
  const listing = await api(`/api/products?per_page=25&page=${page}${q ? `&q=${encodeURIComponent(q)}` : ""}`, { signal });
  const rows = listing.items.map((p) => {
    const stock = h("td", { class: "stock-cell", "data-stock-of": p.sku }, "\u2026");
    const form = onSubmit(h("form", { class: "row restock", "data-sku": p.sku },
      h("div", {}, field(`Units to add to ${p.name}`, { name: "quantity", type: "number", min: 1, max: 1000000, required: true, size: 6 })),
      h("button", { type: "submit", "aria-label": `Restock ${p.name}` }, "Restock")), async (data) => {
      await api(`/api/inventory/${encodeURIComponent(p.sku)}/restock`, { method: "POST", body: { quantity: parseInt(data.get("quantity"), 10) } });
      toast(`Restocked ${p.name}`);
      form.reset();
      drawStock(stock, await api(`/api/inventory/${encodeURIComponent(p.sku)}`, { signal }));
    });
    return [p, stock, h("tr", { "data-sku": p.sku },
      h("td", {}, h("strong", {}, p.name), h("br"), h("small", { class: "muted" }, `${p.sku} \u00b7 ${p.category}`)),
      h("td", {}, money(p.price_cents)), stock, h("td", {}, form))];
  });
  const message = alertLine();
  const create = onSubmit(h("form", { class: "stack", id: "new-product" },
    field("SKU", { name: "sku", required: true, pattern: "[A-Za-z0-9_.\\-]+" }),
    field("Name", { name: "name", required: true }),
    field("Category", { name: "category", required: true, pattern: "[a-z0-9\\-]+" }),
    field("Price (cents)", { name: "price_cents", type: "number", min: 0, required: true }),
    field("Initial stock", { name: "initial_stock", type: "number", min: 0, value: 0 }),
    field("Description", { name: "description" }, "textarea"),
    message, h("button", { type: "submit" }, "Create product")), async (data) => {
    await api("/api/products", { method: "POST", body: {
      sku: data.get("sku"), name: data.get("name"), category: data.get("category"),
      price_cents: parseInt(data.get("price_cents"), 10), initial_stock: parseInt(data.get("initial_stock") || "0", 10),
      description: data.get("description") || "" } });
    toast("Product created");
    create.reset();
  });
  const pages = Math.max(1, Math.ceil(listing.total / 25));
  fill(main, h("h1", {}, "Catalog and stock"),
    h("form", { class: "row", role: "search", action: "/admin/catalog" },
      h("div", {}, field("Find products", { name: "q", type: "search", value: q })), h("button", { type: "submit" }, "Find")),
    h("div", { class: "table-wrap" }, h("table", { id: "catalog" },
      h("thead", {}, h("tr", {}, ["Product", "Price", "Stock (available / reserved / sold)", "Restock"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map((r) => r[2])))),
    pages > 1 ? h("p", { class: "pager" }, page > 1 ? h("a", { href: `/admin/catalog?page=${page - 1}` }, "Previous") : "",
      ` Page ${page} of ${pages} `, page < pages ? h("a", { href: `/admin/catalog?page=${page + 1}` }, "Next") : "") : "",
    h("h2", {}, "New product"), create);
  await Promise.all(rows.map(([p, cell]) => api(`/api/inventory/${encodeURIComponent(p.sku)}`, { signal })
    .then((stock) => drawStock(cell, stock)).catch(() => fill(cell, "unknown"))));
}

function drawStock(cell, stock) {
  cell.dataset.available = stock.available;
  fill(cell, h("span", { class: "available" }, String(stock.available)), ` / ${stock.reserved} / ${stock.sold}`);
}

// -- promotions -----------------------------------------------------------------------------

export async function promotionsSection(main, params, signal) {
  const list = h("div", { class: "table-wrap", id: "promotions" });
  const load = async () => {
    const answer = await api("/api/promotions", { signal });
    fill(list, answer.items.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Code", "Offer", "Window", "Used", "Status", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, answer.items.map((p) => h("tr", { "data-code": p.code },
        h("td", {}, h("strong", {}, p.code)),
        h("td", {}, p.kind === "percent" ? `${p.value}% off` : `${money(p.value)} off`, p.min_order_cents ? ` from ${money(p.min_order_cents)}` : "",
          p.categories && p.categories.length ? ` (${p.categories.join(", ")})` : ""),
        h("td", {}, when(p.starts_at), p.ends_at ? ` \u2013 ${when(p.ends_at)}` : ""),
        h("td", {}, `${p.used ?? 0}${p.usage_limit ? ` / ${p.usage_limit}` : ""}`),
        h("td", {}, statusBadge(p.status)),
        h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Delete promotion ${p.code}`, onclick: async () => {
          if (!window.confirm(`Delete ${p.code}? It can no longer be redeemed.`)) return;
          try { await api(`/api/promotions/${encodeURIComponent(p.code)}`, { method: "DELETE" }); toast("Deleted"); await load(); } catch (error) { toast(errorText(error)); }
        } }, "Delete"))))))
      : h("p", { class: "muted" }, "No promotions."));
  };
  const iso = (value) => (value ? new Date(value).toISOString() : undefined);
  const number = (value) => (value ? parseInt(value, 10) : undefined);
  const form = onSubmit(h("form", { class: "stack", id: "new-promotion" },
    field("Code", { name: "code", required: true, pattern: "[A-Za-z0-9_\\-]{3,32}" }),
    field("Kind", { name: "kind", options: [["percent", "Percent off"], ["fixed", "Amount off (cents)"]] }, "select"),
    field("Value (percent, or cents off)", { name: "value", type: "number", min: 1, required: true }),
    field("Minimum order (cents)", { name: "min_order_cents", type: "number", min: 0, value: 0 }),
    field("Starts (empty: now)", { name: "starts_at", type: "datetime-local" }),
    field("Ends (optional)", { name: "ends_at", type: "datetime-local" }),
    field("Usage limit (optional)", { name: "usage_limit", type: "number", min: 1 }),
    field("Per customer limit (optional)", { name: "per_customer_limit", type: "number", min: 1 }),
    field("Categories (comma-separated; empty: all)", { name: "categories" }),
    alertLine(), h("button", { type: "submit" }, "Create promotion")), async (data) => {
    const body = {
      code: data.get("code"), kind: data.get("kind"), value: number(data.get("value")),
      min_order_cents: number(data.get("min_order_cents")) || 0,
      starts_at: iso(data.get("starts_at")), ends_at: iso(data.get("ends_at")),
      usage_limit: number(data.get("usage_limit")), per_customer_limit: number(data.get("per_customer_limit")),
      categories: (data.get("categories") || "").split(",").map((c) => c.trim()).filter(Boolean),
    };
    const created = await api("/api/promotions", { method: "POST", body });
    toast(`Promotion ${created.code || body.code} created`);
    form.reset();
    await load();
  });
  fill(main, h("h1", {}, "Promotions"), list, h("h2", {}, "New promotion"), form);
  await load();
}
