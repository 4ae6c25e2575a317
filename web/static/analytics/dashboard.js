// The live analytics dashboard: the summary of the chosen window, drawn from the SSE feed
// (10 minutes) or polled (other windows), with the top products and categories.
import {
  NotSignedIn, element, getJson, money, number, readEvents, setStatus, showNotice,
  signInNotice, sleep,
} from "./api.js";
import { barChart, funnelChart, lineChart } from "./charts.js";

const COLORS = { views: "#2f6fde", carts: "#e08a1e", purchases: "#1f9d55", revenue: "#7a4fd6" };
const state = { window: "10m", by: "views", summary: null };

function minuteLabel(iso) {
  const at = new Date(iso);
  return `${String(at.getUTCHours()).padStart(2, "0")}:${String(at.getUTCMinutes()).padStart(2, "0")}`;
}

function drawSummary(summary) {
  state.summary = summary;
  for (const name of ["product_views", "add_to_carts", "purchases", "active_users"]) {
    document.getElementById(name).textContent = number(summary[name]);
  }
  document.getElementById("revenue_cents").textContent = money(summary.revenue_cents);
  document.getElementById("span").textContent =
    `${minuteLabel(summary.since)}–${minuteLabel(summary.until)} UTC`;
  const labels = summary.series.map((p) => minuteLabel(p.at));
  lineChart(document.getElementById("series"), [
    { values: summary.series.map((p) => p.product_views), color: COLORS.views },
    { values: summary.series.map((p) => p.add_to_carts), color: COLORS.carts },
    { values: summary.series.map((p) => p.purchases), color: COLORS.purchases },
  ], labels);
  barChart(document.getElementById("revenue"), summary.series.map((p) => p.revenue_cents),
           COLORS.revenue, money);
  funnelChart(document.getElementById("funnel"), [
    { label: "viewed", value: summary.funnel.viewed, color: COLORS.views },
    { label: "carted", value: summary.funnel.carted, color: COLORS.carts },
    { label: "purchased", value: summary.funnel.purchased, color: COLORS.purchases },
  ]);
}

function drawTop(top) {
  const products = document.getElementById("products");
  products.replaceChildren(...top.products.map((p) => {
    const row = element("tr");
    row.append(element("td", { title: p.sku }, p.name), element("td", {}, p.category),
               element("td", { class: "num" }, number(p.views)),
               element("td", { class: "num" }, number(p.add_to_carts)),
               element("td", { class: "num" }, number(p.purchases)),
               element("td", { class: "num" }, money(p.revenue_cents)));
    return row;
  }));
  const categories = document.getElementById("categories");
  categories.replaceChildren(...top.categories.map((c) => {
    const row = element("tr");
    row.append(element("td", {}, c.category), element("td", { class: "num" }, number(c.views)),
               element("td", { class: "num" }, number(c.add_to_carts)),
               element("td", { class: "num" }, number(c.purchases)),
               element("td", { class: "num" }, money(c.revenue_cents)));
    return row;
  }));
}

let lastTop = 0;
async function refreshTop(force = false) {
  if (!force && Date.now() - lastTop < 2000) return;
  lastTop = Date.now();
  drawTop(await getJson(`/api/analytics/products/top?window=${state.window}&by=${state.by}&limit=10`));
}

async function follow() {
  // The 10-minute summary from the live feed; reconnects when the stream ends or breaks.
  for (;;) {
    try {
      setStatus("live", true);
      await readEvents("/api/analytics/stream", (name, data) => {
        if (name !== "summary" || state.window !== "10m") return;
        drawSummary(JSON.parse(data));
        refreshTop().catch(report);
      });
      setStatus("reconnecting…");
    } catch (error) {
      if (error instanceof NotSignedIn) throw error;
      setStatus("reconnecting…");
      await sleep(2000);
    }
  }
}

async function poll() {
  // Windows other than 10 minutes: read every 5 s.
  for (;;) {
    if (state.window !== "10m") {
      try {
        drawSummary(await getJson(`/api/analytics/summary?window=${state.window}`));
        await refreshTop(true);
      } catch (error) {
        if (error instanceof NotSignedIn) throw error;
      }
    }
    await sleep(5000);
  }
}

function report(error) {
  if (error instanceof NotSignedIn) {
    signInNotice();
    setStatus("not signed in");
  } else {
    showNotice(`Could not load the figures: ${error.message}`);
  }
}

function chooseWindow(button) {
  state.window = button.dataset.window;
  for (const other of document.querySelectorAll("#windows button")) {
    other.setAttribute("aria-pressed", String(other === button));
  }
  getJson(`/api/analytics/summary?window=${state.window}`).then(drawSummary)
    .then(() => refreshTop(true)).catch(report);
}

document.getElementById("windows").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-window]");
  if (button) chooseWindow(button);
});
document.getElementById("by").addEventListener("change", (event) => {
  state.by = event.target.value;
  refreshTop(true).catch(report);
});

getJson("/api/analytics/summary?window=10m").then(drawSummary)
  .then(() => refreshTop(true))
  .then(() => Promise.all([follow(), poll()]))
  .catch(report);
