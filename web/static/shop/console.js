// The admin console (admin and support roles): sign-in gate, sections, routes.

import { claims, field, fill, h, hasRole, login, logout, errorText, toast } from "./api.js";
import { dashboard } from "./console_dashboard.js";
import { catalogSection, ordersSection, promotionsSection } from "./console_shop.js";
import { supportQueue, supportTicket } from "./console_support.js";
import { deadLetters, logsSection, tasksSection, traceSection } from "./console_ops.js";
import { Router, markCurrent } from "./router.js";

const ADMIN_ONLY = new Set(["/admin", "/admin/orders", "/admin/catalog", "/admin/promotions", "/admin/logs", "/admin/trace", "/admin/dead-letters", "/admin/tasks", "/analytics"]);

let router = null;
const navigate = (path, options) => router.go(path, options);

function staff() { return hasRole("admin", "support"); }

function signIn(main) {
  const message = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "stack", id: "console-login" },
    field("Email", { name: "email", type: "email", required: true, autocomplete: "username" }),
    field("Password", { name: "password", type: "password", required: true, autocomplete: "current-password" }),
    message, h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await login(data.get("email"), data.get("password"));
      if (!staff()) message.textContent = "This account is not staff (admin or support).";
    } catch (error) {
      message.textContent = errorText(error);
    }
  });
  fill(main, h("h1", {}, "Console sign-in"), h("p", { class: "muted" }, "For admin and support staff."), form);
}

/** Wrap a section: sign in first; admin-only sections need the admin role. */
function guarded(path, render) {
  return async (main, params, signal) => {
    if (!claims()) return signIn(main);
    if (!staff()) {
      fill(main, h("h1", {}, "Staff only"), h("p", {}, "This console is for admin and support staff. ", h("a", { href: "/" }, "Back to the shop")));
      return undefined;
    }
    if (ADMIN_ONLY.has(path) && !hasRole("admin")) {
      if (path === "/admin") { navigate("/admin/support", { replace: true }); return undefined; }
      fill(main, h("h1", {}, "Admins only"), h("p", {}, "Support staff work in the ", h("a", { href: "/admin/support" }, "support queue"), "."));
      return undefined;
    }
    return render(main, params, signal, navigate);
  };
}

function header() {
  const me = claims();
  const links = document.getElementById("account-links");
  fill(links, me ? [h("span", { class: "muted" }, (me.roles || []).join(", ")), " ",
    h("button", { type: "button", class: "secondary", onclick: async () => { await logout(); toast("Logged out"); } }, "Log out")] : []);
  for (const link of document.querySelectorAll("#sidenav a")) {
    const path = new URL(link.href).pathname;
    link.hidden = !!me && staff() && !hasRole("admin") && ADMIN_ONLY.has(path);
  }
}

function start() {
  const routes = [
    ["/admin", dashboard],
    ["/admin/orders", ordersSection],
    ["/admin/catalog", catalogSection],
    ["/admin/promotions", promotionsSection],
    ["/admin/support", supportQueue],
    ["/admin/support/{ticket_id}", supportTicket],
    ["/admin/logs", logsSection],
    ["/admin/trace", traceSection],
    ["/admin/dead-letters", deadLetters],
    ["/admin/tasks", tasksSection],
  ];
  router = new Router(routes.map(([path, render]) => [path, guarded(path.replace("/{ticket_id}", ""), render)]), {
    owns: (path) => path === "/admin" || path.startsWith("/admin/"),
    notFound: (main) => fill(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/admin" }, "Dashboard"))),
    onChange: (path) => markCurrent(document.getElementById("sidenav"), path, ["/admin"]),
  });
  window.addEventListener("shop:auth", () => { header(); router.render(); });
  header();
  router.start();
}

start();
