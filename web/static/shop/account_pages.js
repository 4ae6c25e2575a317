// Storefront pages of the account: log in, register, profile and mail preferences,
// support tickets, notifications.

import { api, claims, errorText, field, fill, h, login, logout, statusBadge, toast, when } from "./api.js";
import { markRead } from "./bell.js";
import { needSignIn } from "./order_pages.js";

function safeNext(query, fallback = "/") {
  const next = query.get("next") || fallback;
  return next.startsWith("/") && !next.startsWith("//") ? next : fallback;
}

function submitting(form, message, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    message.textContent = "";
    try {
      await action(new FormData(form));
    } catch (error) {
      message.textContent = errorText(error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export function loginPage(main, { query }, signal, navigate) {
  const message = h("p", { class: "error", role: "alert" });
  fill(main, h("h1", {}, "Log in"), submitting(h("form", { class: "stack", id: "login-form" },
    field("Email", { name: "email", type: "email", required: true, autocomplete: "email" }),
    field("Password", { name: "password", type: "password", required: true, autocomplete: "current-password" }),
    message, h("button", { type: "submit" }, "Log in")), message, async (data) => {
    await login(data.get("email"), data.get("password"));
    toast("Welcome back");
    navigate(safeNext(query), { replace: true });
  }), h("p", {}, "New here? ", h("a", { href: `/register${location.search}` }, "Create an account")));
}

export function registerPage(main, { query }, signal, navigate) {
  const message = h("p", { class: "error", role: "alert" });
  fill(main, h("h1", {}, "Create an account"), submitting(h("form", { class: "stack", id: "register-form" },
    field("Name", { name: "name", required: true, maxlength: 100, autocomplete: "name" }),
    field("Email", { name: "email", type: "email", required: true, autocomplete: "email" }),
    field("Password", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password" }),
    message, h("button", { type: "submit" }, "Create account")), message, async (data) => {
    const body = { name: data.get("name"), email: data.get("email"), password: data.get("password") };
    await api("/api/users", { method: "POST", body });
    await login(body.email, body.password);
    toast("Your account is ready");
    navigate(safeNext(query), { replace: true });
  }), h("p", {}, "Have an account? ", h("a", { href: `/login${location.search}` }, "Log in")));
}

export async function accountPage(main, params, signal, navigate) {
  if (!claims()) return needSignIn(main, "/account");
  const [me, prefs] = await Promise.all([
    api("/api/users/me", { signal }),
    api("/api/notifications/preferences", { signal }).catch(() => ({ marketing: false, digest: false })),
  ]);
  const profileMessage = h("p", { role: "status" });
  const prefsMessage = h("p", { role: "status" });
  const checkbox = (name, label, checked) => {
    const id = `pref-${name}`;
    return h("div", {}, h("input", { type: "checkbox", id, name, checked }), " ", h("label", { for: id, class: "inline" }, label));
  };
  fill(main, 
    h("h1", {}, "Your account"),
    h("p", {}, `Signed in as ${me.email}`, h("br"), h("small", { class: "muted" }, `Roles: ${me.roles.join(", ")}`)),
    h("h2", {}, "Profile"),
    submitting(h("form", { class: "stack", id: "profile-form" },
      field("Name", { name: "name", value: me.name, maxlength: 100, autocomplete: "name" }),
      field("New password (leave empty to keep it)", { name: "password", type: "password", minlength: 8, autocomplete: "new-password" }),
      profileMessage, h("button", { type: "submit" }, "Save profile")), profileMessage, async (data) => {
      const body = { name: data.get("name") };
      if (data.get("password")) body.password = data.get("password");
      await api("/api/users/me", { method: "PATCH", body });
      profileMessage.textContent = "Saved.";
    }),
    h("h2", {}, "Mail preferences"),
    submitting(h("form", { class: "stack", id: "preferences-form" },
      checkbox("marketing", "Promotions and offers by mail", prefs.marketing),
      checkbox("digest", "Weekly digest by mail", prefs.digest),
      prefsMessage, h("button", { type: "submit" }, "Save preferences")), prefsMessage, async (data) => {
      await api("/api/notifications/preferences", { method: "PUT", body: { marketing: data.has("marketing"), digest: data.has("digest") } });
      prefsMessage.textContent = "Saved.";
    }),
    h("h2", {}, "Session"),
    h("button", { type: "button", class: "secondary", onclick: async () => { await logout(); toast("Logged out"); navigate("/"); } }, "Log out"));
}

export async function supportPage(main, { query }, signal, navigate) {
  if (!claims()) return needSignIn(main, "/support");
  const tickets = await api("/api/support/tickets?per_page=50", { signal });
  const message = h("p", { class: "error", role: "alert" });
  fill(main, 
    h("h1", {}, "Support"),
    h("h2", {}, "Open a ticket"),
    submitting(h("form", { class: "stack", id: "ticket-form" },
      field("Subject", { name: "subject", required: true, maxlength: 200 }),
      field("How can we help?", { name: "body", required: true }, "textarea"),
      field("Order (optional)", { name: "order_id", value: query.get("order_id") || "", pattern: "[A-Za-z0-9_\\-]+" }),
      message, h("button", { type: "submit" }, "Open ticket")), message, async (data) => {
      const body = { subject: data.get("subject"), body: data.get("body") };
      if (data.get("order_id")) body.order_id = data.get("order_id");
      const ticket = await api("/api/support/tickets", { method: "POST", body });
      toast("Ticket opened");
      navigate(`/support/tickets/${encodeURIComponent(ticket.id)}`);
    }),
    h("h2", {}, "Your tickets"),
    tickets.items.length ? h("ul", { id: "tickets" }, tickets.items.map((t) => h("li", {},
      h("a", { href: `/support/tickets/${encodeURIComponent(t.id)}` }, t.subject), " ", statusBadge(t.status),
      " ", h("small", { class: "muted" }, when(t.updated_at)))))
      : h("p", { class: "muted" }, "No tickets."));
}

export async function ticketPage(main, params, signal, { follow = true } = {}) {
  const ticketId = params.ticket_id;
  if (!claims()) return needSignIn(main, `/support/tickets/${ticketId}`);
  if (follow) {
    // Support answered or resolved it (a notification): show the ticket as it is now.
    const onNotice = (event) => {
      if (event.detail.link !== `/support/tickets/${ticketId}`) return;
      const draft = main.querySelector("#comment-form textarea");
      const text = draft ? draft.value : "";
      ticketPage(main, params, signal, { follow: false }).then(() => {
        const again = main.querySelector("#comment-form textarea");
        if (again && text) again.value = text;
      }).catch(() => {});
    };
    window.addEventListener("shop:notification", onNotice);
    signal.addEventListener("abort", () => window.removeEventListener("shop:notification", onNotice));
  }
  const path = `/api/support/tickets/${encodeURIComponent(ticketId)}`;
  const ticket = await api(path, { signal });
  const message = h("p", { class: "error", role: "alert" });
  const me = claims().sub;
  fill(main, 
    h("h1", {}, ticket.subject),
    h("p", {}, statusBadge(ticket.status), " ", h("small", { class: "muted" }, `opened ${when(ticket.opened_at)}`),
      ticket.order_id ? h("span", {}, " \u00b7 order ", h("a", { href: `/orders/${ticket.order_id}` }, ticket.order_id.slice(0, 8))) : null),
    h("p", {}, ticket.body),
    ticket.resolution ? h("p", {}, h("strong", {}, "Resolution: "), ticket.resolution) : null,
    h("h2", {}, "Conversation"),
    h("ul", { class: "comments", id: "comments" }, ticket.comments.map((c) => h("li", { class: c.author_id === me ? "" : "staff" },
      h("strong", {}, c.author_id === me ? "You" : `Support (${c.author_role})`), " ",
      h("small", { class: "muted" }, when(c.at)), h("div", {}, c.body)))),
    submitting(h("form", { class: "stack", id: "comment-form" },
      field("Your reply", { name: "body", required: true }, "textarea"),
      message, h("button", { type: "submit" }, "Send reply")), message, async (data) => {
      await api(`${path}/comments`, { method: "POST", body: { body: data.get("body") } });
      toast("Reply sent");
      main.querySelector("#comments").append(h("li", {}, h("strong", {}, "You"), h("div", {}, data.get("body"))));
      main.querySelector("#comment-form").reset();
    }),
    ticket.status === "resolved" ? h("button", {
      type: "button", class: "secondary", onclick: async () => {
        try { await api(`${path}/reopen`, { method: "POST" }); toast("Ticket reopened"); } catch (error) { toast(errorText(error)); }
      },
    }, "Reopen ticket") : null);
}

export async function notificationsPage(main, params, signal) {
  if (!claims()) return needSignIn(main, "/notifications");
  const page = await api("/api/notifications?limit=100", { signal });
  fill(main, h("h1", {}, "Notifications"),
    page.items.length ? h("ul", { class: "comments", id: "notifications" }, page.items.map((n) => h("li", { class: n.read ? "" : "staff" },
      h("a", { href: n.link || "#" }, h("strong", {}, n.title)), " ", h("small", { class: "muted" }, when(n.created_at)),
      h("div", {}, n.body),
      n.read ? null : h("button", {
        type: "button", class: "secondary", "aria-label": `Mark \u201c${n.title}\u201d read`, onclick: async (event) => {
          event.target.disabled = true;
          await api(`/api/notifications/${encodeURIComponent(n.id)}/read`, { method: "POST" }).catch(() => {});
          markRead(n.id);
          event.target.remove();
        },
      }, "Mark read"))))
      : h("p", { class: "muted" }, "No notifications yet."));
}
