// The storefront: routes, the header (search, categories, cart, bell, account), tracking.

import { claims, fill, h } from "./api.js";
import { startBell } from "./bell.js";
import * as cart from "./cart.js";
import { cartPage, categories, home, listing, product } from "./catalog_pages.js";
import { checkout, order, orders } from "./order_pages.js";
import { accountPage, loginPage, notificationsPage, registerPage, supportPage, ticketPage } from "./account_pages.js";
import { Router, markCurrent } from "./router.js";
import { track } from "./tracking.js";

const STOREFRONT = /^\/(products|cart|checkout|orders|support|notifications|account|login|register)?(\/|$)/;

let router = null;
const navigate = (path, options) => router.go(path, options);
const withNavigate = (render) => (main, params, signal) => render(main, params, signal, navigate);

function accountLinks() {
  const me = claims();
  const links = document.getElementById("account-links");
  const staff = me && Array.isArray(me.roles) && (me.roles.includes("admin") || me.roles.includes("support"));
  fill(links, ...(me
    ? [h("a", { href: "/orders" }, "Orders"), " ", h("a", { href: "/support" }, "Support"), " ",
      staff ? h("a", { href: "/admin" }, "Console") : "", staff ? " " : "", h("a", { href: "/account" }, "Account")]
    : [h("a", { href: "/login" }, "Log in"), " ", h("a", { href: "/register" }, "Register")]));
}

function cartBadge() {
  const n = cart.count();
  const badge = document.getElementById("cart-count");
  badge.textContent = String(n);
  badge.setAttribute("aria-label", `${n} item${n === 1 ? "" : "s"} in cart`);
}

async function categoryBar() {
  const bar = document.getElementById("categories");
  try {
    const names = await categories();
    fill(bar, h("a", { href: "/products" }, "All"),
      ...names.map((name) => h("a", { href: `/products?category=${encodeURIComponent(name)}`, "data-category": name }, name.replace(/-/g, " "))));
    markCategory();
  } catch {
    fill(bar, );
  }
}

function markCategory() {
  const query = new URLSearchParams(location.search);
  const current = location.pathname === "/products" && !query.get("q") ? query.get("category") || "" : null;
  for (const link of document.querySelectorAll("#categories a")) {
    if ((link.dataset.category || "") === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function notFound(main) {
  fill(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "/" }, "Back to the shop")));
}

function start() {
  router = new Router([
    ["/", home],
    ["/products", listing],
    ["/products/{sku}", product],
    ["/cart", cartPage],
    ["/checkout", withNavigate(checkout)],
    ["/orders", orders],
    ["/orders/{order_id}", order],
    ["/support", withNavigate(supportPage)],
    ["/support/tickets/{ticket_id}", ticketPage],
    ["/notifications", notificationsPage],
    ["/account", withNavigate(accountPage)],
    ["/login", withNavigate(loginPage)],
    ["/register", withNavigate(registerPage)],
  ], {
    owns: (path) => STOREFRONT.test(path),
    notFound,
    onChange: (path) => {
      markCurrent(document.querySelector(".topnav"), path, ["/"]);
      markCategory();
      const q = path === "/products" ? new URLSearchParams(location.search).get("q") || "" : "";
      document.getElementById("search-q").value = q;
      track("page_view", { path: location.pathname + location.search });
    },
  });
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = document.getElementById("search-q").value.trim();
    navigate(q ? `/products?q=${encodeURIComponent(q)}` : "/products");
  });
  window.addEventListener("shop:cart", cartBadge);
  window.addEventListener("shop:auth", accountLinks);
  accountLinks();
  cartBadge();
  categoryBar();
  startBell(navigate);
  router.start();
}

start();
