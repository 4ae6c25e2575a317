// Console support: the ticket queue, the SLA figures and the live feed
// (/api/support/stream), and one ticket (answer, assign to me, resolve).

import { api, claims, errorText, field, fill, follow, h, statusBadge, toast, when } from "./api.js";

const STATUSES = [["", "Any status"], ["open", "Open"], ["assigned", "Assigned"], ["reopened", "Reopened"], ["resolved", "Resolved"]];
const FEED_TEXT = {
  ticket_opened: "opened", ticket_commented: "commented", ticket_assigned: "assigned",
  ticket_resolved: "resolved", ticket_reopened: "reopened", sla_breach: "breached the first-response target",
};

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "\u2013";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function slaCards(sla) {
  const card = (id, label, value) => h("div", { class: "kpi" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
  return h("div", { class: "kpis", id: "sla" },
    card("sla-open", "Open tickets", sla.open),
    card("sla-waiting", "Waiting for a first response", sla.waiting_for_first_response),
    card("sla-breaching", "Breaching now", sla.breaching_now),
    card("sla-first", "Median first response", duration(sla.first_response && sla.first_response.median_s)),
    card("sla-resolution", "Median resolution", duration(sla.resolution && sla.resolution.median_s)),
    card("sla-target", "First-response target", duration(sla.first_response_target_s)));
}

export async function supportQueue(main, { query }, signal) {
  const status = query.get("status") || "";
  const mine = query.get("assignee") === "me";
  const params = new URLSearchParams({ per_page: 50 });
  if (status) params.set("status", status);
  if (mine) params.set("assignee", claims().sub);
  const [tickets, sla] = await Promise.all([
    api(`/api/support/tickets?${params}`, { signal }),
    api("/api/support/sla", { signal }).catch(() => null),
  ]);
  const slaBox = h("section", { "aria-label": "SLA" }, sla ? slaCards(sla) : "");
  const feed = h("ul", { class: "feed", id: "support-feed", "aria-live": "polite" });
  const table = h("div", { class: "table-wrap" });
  const drawTickets = (items) => fill(table, items.length ? h("table", { id: "tickets" },
    h("thead", {}, h("tr", {}, ["Ticket", "Status", "Assignee", "Opened", "Comments", "SLA"].map((t) => h("th", {}, t)))),
    h("tbody", {}, items.map((t) => h("tr", { "data-ticket": t.id },
      h("td", {}, h("a", { href: `/admin/support/${encodeURIComponent(t.id)}` }, t.subject)),
      h("td", {}, statusBadge(t.status)), h("td", {}, t.assignee || "\u2013"), h("td", {}, when(t.opened_at)),
      h("td", {}, t.comments), h("td", {}, t.breached ? h("span", { class: "error" }, "breached") : "ok")))))
    : h("p", { class: "muted" }, "No tickets."));
  drawTickets(tickets.items);
  const [, statusSelect] = field("Status", { name: "status", options: STATUSES, id: "ticket-status" }, "select");
  statusSelect.value = status;
  const mineBox = h("input", { type: "checkbox", id: "only-mine", name: "assignee", value: "me", checked: mine });
  fill(main, h("h1", {}, "Support queue"), slaBox,
    h("form", { class: "row", action: "/admin/support" },
      h("div", {}, h("label", { for: "ticket-status" }, "Status"), statusSelect),
      h("div", {}, mineBox, " ", h("label", { for: "only-mine", class: "inline" }, "Assigned to me")),
      h("button", { type: "submit" }, "Filter")),
    table, h("h2", {}, h("span", { class: "live", id: "feed-live" }), "Live feed"), feed);
  // The live feed: every change of any ticket, the SLA figures as they move.
  let refreshing = null;
  const refresh = () => Promise.all([
    api(`/api/support/tickets?${params}`, { signal }).then((page) => drawTickets(page.items)),
    api("/api/support/sla", { signal }).then((figures) => fill(slaBox, slaCards(figures))),
  ]).catch(() => {});
  const stop = follow("/api/support/stream", (name, data) => {
    if (name === "sla") { fill(slaBox, slaCards(data)); return; }
    if (name === "workload" || !data || !data.ticket) return;
    const ticket = data.ticket;
    feed.prepend(h("li", { "data-kind": name }, h("small", { class: "muted" }, when(data.at)), " ",
      h("a", { href: `/admin/support/${encodeURIComponent(ticket.id)}` }, ticket.subject || ticket.id), " ",
      FEED_TEXT[name] || name));
    while (feed.children.length > 50) feed.lastChild.remove();
    // The list and the figures are written by the agents a moment after the feed entry.
    clearTimeout(refreshing);
    refreshing = setTimeout(refresh, 300);
    setTimeout(refresh, 1500);
  }, { onState: (on) => { const dot = document.getElementById("feed-live"); if (dot) dot.classList.toggle("on", on); } });
  signal.addEventListener("abort", () => { stop(); clearTimeout(refreshing); });
}

export async function supportTicket(main, { ticket_id: ticketId }, signal) {
  const path = `/api/support/tickets/${encodeURIComponent(ticketId)}`;
  const draw = async () => {
    const ticket = await api(path, { signal });
    const message = h("p", { class: "error", role: "alert" });
    const reply = h("form", { class: "stack", id: "answer-form" },
      field("Answer", { name: "body", required: true }, "textarea"), message, h("button", { type: "submit" }, "Send answer"));
    const resolve = h("form", { class: "stack", id: "resolve-form" },
      field("Resolution", { name: "resolution", required: true }), h("button", { type: "submit" }, "Resolve ticket"));
    const act = (form, call, done) => form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      form.querySelector("button").disabled = true;
      try {
        await call(data);
        toast(done);
        await settle(ticket);
      } catch (error) {
        message.textContent = errorText(error);
        form.querySelector("button").disabled = false;
      }
    });
    act(reply, (data) => api(`${path}/comments`, { method: "POST", body: { body: data.get("body") } }), "Answer sent");
    act(resolve, (data) => api(`${path}/resolve`, { method: "POST", body: { resolution: data.get("resolution") } }), "Ticket resolved");
    fill(main, h("p", {}, h("a", { href: "/admin/support" }, "\u2190 Support queue")),
      h("h1", {}, ticket.subject),
      h("p", {}, statusBadge(ticket.status), " ", h("small", { class: "muted" }, `opened ${when(ticket.opened_at)} by `),
        h("a", { href: `/admin/orders?user_id=${encodeURIComponent(ticket.user_id)}` }, ticket.user_id),
        ticket.order_id ? h("span", {}, " \u00b7 order ", h("a", { href: `/admin/orders?order_id=${encodeURIComponent(ticket.order_id)}` }, ticket.order_id.slice(0, 8))) : "",
        ticket.assignee ? ` \u00b7 assigned to ${ticket.assignee}` : ""),
      h("p", {}, ticket.body),
      ticket.resolution ? h("p", {}, h("strong", {}, "Resolution: "), ticket.resolution) : "",
      h("h2", {}, "Conversation"),
      h("ul", { class: "comments", id: "comments" }, ticket.comments.map((c) => h("li", { class: c.author_role === "customer" ? "" : "staff" },
        h("strong", {}, c.author_role === "customer" ? "Customer" : `${c.author_role} ${c.author_id}`), " ",
        h("small", { class: "muted" }, when(c.at)), h("div", {}, c.body)))),
      ticket.status !== "resolved" ? [
        reply,
        ticket.assignee === claims().sub ? "" : h("p", {}, h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api(`${path}/assign`, { method: "POST", body: { assignee: "me" } }); toast("Assigned to you"); await settle(ticket); } catch (error) { toast(errorText(error)); }
        } }, "Assign to me")),
        resolve]
        : h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api(`${path}/reopen`, { method: "POST" }); toast("Reopened"); await settle(ticket); } catch (error) { toast(errorText(error)); }
        } }, "Reopen"));
  };
  // A change is answered once the support agent applied it: the ticket drawn again shows it.
  const settle = async () => { await draw(); };
  await draw();
}
