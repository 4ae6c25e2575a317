// Console dashboard: live analytics (summary, series, funnel, top products) from
// /api/analytics/*, kept live by the SSE stream /api/analytics/stream; on a worker without
// those endpoints, today's sales report (/api/admin/reports/daily), polled.

import { api, field, fill, follow, h, hasEndpoint, money } from "./api.js";
import { barChart, legend, lineChart } from "./charts.js";

const WINDOWS = [["10m", "Last 10 minutes"], ["1m", "Last minute"], ["1h", "Last hour"], ["24h", "Last 24 hours"]];
const RANKS = [["purchases", "Purchases"], ["revenue", "Revenue"], ["views", "Views"], ["carts", "Add to carts"]];
const COUNTS = [
  { key: "product_views", label: "Product views" },
  { key: "add_to_carts", label: "Add to carts" },
  { key: "purchases", label: "Purchases" },
];
const POLL_MS = 3000;

function kpi(id, label, value) {
  return h("div", { class: "kpi" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
}

export async function dashboard(main, params, signal) {
  const hasSummary = await hasEndpoint("/api/analytics/summary");
  const analytics = h("section", { id: "analytics", "aria-label": "Live analytics" });
  const report = h("section", { id: "sales-report", "aria-label": "Today's sales" });
  const live = h("span", { class: "live", id: "live-dot", title: "live" });
  fill(main, h("h1", {}, live, "Dashboard"), analytics, report);
  const stops = [];
  signal.addEventListener("abort", () => stops.forEach((stop) => stop()));
  if (hasSummary) {
    await analyticsPanel(analytics, signal, stops, live);
  } else {
    fill(analytics, h("p", { class: "muted", id: "analytics-missing" },
      "Live analytics are not served by this worker yet (no /api/analytics/summary); today's sales report follows the orders."));
    await salesReport(report, signal, stops);
  }
}

async function analyticsPanel(section, signal, stops, live) {
  const [, windowSelect] = field("Window", { name: "window", options: WINDOWS, id: "window" }, "select");
  const [, rankSelect] = field("Top products by", { name: "by", options: RANKS, id: "rank" }, "select");
  const kpis = h("div", { class: "kpis", id: "kpis" });
  const charts = h("div", { class: "charts" });
  const top = h("div", { class: "table-wrap", id: "top-products" });
  fill(section,
    h("form", { class: "row", onsubmit: (e) => e.preventDefault() },
      h("div", {}, h("label", { for: "window" }, "Window"), windowSelect),
      h("div", {}, h("label", { for: "rank" }, "Top products by"), rankSelect)),
    kpis, charts, h("h2", {}, "Top products"), top);
  let stopStream = null;
  const drawSummary = (summary) => {
    fill(kpis,
      kpi("kpi-views", "Product views", summary.product_views),
      kpi("kpi-carts", "Add to carts", summary.add_to_carts),
      kpi("kpi-purchases", "Purchases", summary.purchases),
      kpi("kpi-revenue", "Revenue", money(summary.revenue_cents)),
      kpi("kpi-users", "Active users", summary.active_users));
    const funnel = summary.funnel || {};
    fill(charts,
      h("figure", { class: "card" }, h("figcaption", {}, "Activity per minute"),
        lineChart(summary.series || [], COUNTS, { title: "Product views, add to carts and purchases per minute" }), legend(COUNTS)),
      h("figure", { class: "card" }, h("figcaption", {}, "Revenue per minute"),
        lineChart(summary.series || [], [{ key: "revenue_cents", label: "Revenue", color: "#1b7a3a" }],
          { title: "Revenue per minute", format: (c) => money(c).replace(/\.00$/, "") })),
      h("figure", { class: "card" }, h("figcaption", {}, "Funnel (visitors)"),
        barChart([{ label: "Viewed", value: funnel.viewed || 0 }, { label: "Carted", value: funnel.carted || 0 },
          { label: "Purchased", value: funnel.purchased || 0 }], { title: "Funnel: viewed, carted, purchased" })));
  };
  const loadTop = async () => {
    const answer = await api(`/api/analytics/products/top?window=${windowSelect.value}&by=${rankSelect.value}&limit=10`, { signal });
    fill(top, answer.products.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Product", "Category", "Views", "Carts", "Purchases", "Revenue"].map((t) => h("th", {}, t)))),
      h("tbody", {}, answer.products.map((p) => h("tr", { "data-sku": p.sku },
        h("td", {}, p.name || p.sku), h("td", {}, p.category || ""), h("td", {}, p.views),
        h("td", {}, p.add_to_carts), h("td", {}, p.purchases), h("td", {}, money(p.revenue_cents))))))
      : h("p", { class: "muted" }, "No product activity in this window."));
  };
  const load = async () => {
    drawSummary(await api(`/api/analytics/summary?window=${windowSelect.value}`, { signal }));
    await loadTop();
  };
  // The stream sends the 10-minute summary; other windows are polled.
  const watch = async () => {
    if (stopStream) { stopStream(); stopStream = null; }
    if (windowSelect.value === "10m" && await hasEndpoint("/api/analytics/stream")) {
      stopStream = follow("/api/analytics/stream", (name, data) => {
        if (name === "summary" && windowSelect.value === "10m") drawSummary(data);
      }, { onState: (on) => live.classList.toggle("on", on) });
    }
  };
  windowSelect.addEventListener("change", () => { load().catch(() => {}); watch(); });
  rankSelect.addEventListener("change", () => loadTop().catch(() => {}));
  await load();
  await watch();
  const timer = setInterval(() => {
    const polls = [loadTop()];
    if (!stopStream) polls.push(api(`/api/analytics/summary?window=${windowSelect.value}`, { signal }).then(drawSummary));
    Promise.all(polls).catch(() => {});
  }, POLL_MS);
  stops.push(() => clearInterval(timer), () => stopStream && stopStream());
}

async function salesReport(section, signal, stops) {
  const draw = (day) => {
    const statuses = Object.entries(day.orders_by_status || {}).sort();
    fill(section, h("h2", {}, `Today's sales (${day.day}, UTC)`),
      h("div", { class: "kpis" },
        kpi("report-confirmed", "Confirmed orders", day.confirmed_orders),
        kpi("report-revenue", "Revenue", money(day.revenue_cents))),
      statuses.length ? h("div", { class: "charts" }, h("figure", { class: "card" }, h("figcaption", {}, "Orders by status"),
        barChart(statuses.map(([status, total]) => ({ label: status.replace(/_/g, " "), value: total.orders ?? total })),
          { title: "Orders by status today" }))) : h("p", { class: "muted" }, "No orders yet today."));
  };
  const today = () => new Date().toISOString().slice(0, 10);
  // 404: no sale counted today yet.
  const load = () => api(`/api/admin/reports/daily?day=${today()}`, { signal }).then(draw).catch((error) => {
    if (error.status !== 404) throw error;
    draw({ day: today(), confirmed_orders: 0, revenue_cents: 0, orders_by_status: {} });
  });
  await load().catch((error) => fill(section, h("p", { class: "muted" }, `Sales report unavailable: ${error.message}`)));
  const timer = setInterval(() => load().catch(() => {}), POLL_MS);
  stops.push(() => clearInterval(timer));
}
