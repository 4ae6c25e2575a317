// Console operations: the central log with filters (and alerts), a request's or an order's
// trace as a timeline, dead letters, task queues.

import { api, errorText, field, fill, h, hasEndpoint, when } from "./api.js";

const LEVELS = [["", "Any level"], ["DEBUG", "DEBUG"], ["INFO", "INFO and above"], ["WARNING", "WARNING and above"], ["ERROR", "ERROR and above"], ["CRITICAL", "CRITICAL"]];

export async function logsSection(main, { query }, signal) {
  const results = h("div", { id: "log-results", "aria-live": "polite" });
  const alerts = h("section", { id: "alerts", "aria-label": "Alerts" });
  const [, level] = field("Level", { name: "level", options: LEVELS, id: "log-level" }, "select");
  level.value = query.get("level") || "";
  const form = h("form", { class: "row", id: "log-filters" },
    h("div", {}, field("Service", { name: "service", value: query.get("service") || "", pattern: "[a-z0-9_\\-]{1,64}", placeholder: "e.g. orders" })),
    h("div", {}, h("label", { for: "log-level" }, "Level"), level),
    h("div", {}, field("Since", { name: "since", type: "datetime-local", value: query.get("since") || "" })),
    h("div", {}, field("Message contains", { name: "q", value: query.get("q") || "" })),
    h("div", {}, field("Request, order, ticket or user id", { name: "about", value: query.get("about") || "", pattern: "[A-Za-z0-9._:\\-]{1,128}" })),
    h("button", { type: "submit" }, "Search logs"));
  const search = async () => {
    const data = new FormData(form);
    const params = new URLSearchParams({ limit: 200 });
    for (const key of ["service", "level", "q", "about"]) if (data.get(key)) params.set(key, data.get(key));
    if (data.get("since")) params.set("since", new Date(data.get("since")).toISOString());
    try {
      const page = await api(`/api/admin/logs?${params}`, { signal });
      fill(results,
        page.complete ? "" : h("p", { class: "error" }, "Some workers did not answer: the list may be incomplete."),
        h("p", { class: "muted" }, `${page.items.length} record${page.items.length === 1 ? "" : "s"}`),
        h("div", { class: "table-wrap" }, h("table", { id: "logs" },
          h("thead", {}, h("tr", {}, ["Time", "Service", "Level", "Message", "Request"].map((t) => h("th", {}, t)))),
          h("tbody", {}, page.items.map((r) => h("tr", {},
            h("td", {}, when(r.time)), h("td", {}, r.service), h("td", { class: `level-${r.level}` }, r.level),
            h("td", {}, h("pre", { class: "log" }, r.message + (r.exception ? `\n${r.exception}` : ""))),
            h("td", {}, r.request_id ? h("a", { href: `/admin/trace?id=${encodeURIComponent(r.request_id)}` }, h("small", {}, r.request_id))
              : h("small", {}, r.correlation_id || ""))))))));
    } catch (error) {
      fill(results, h("p", { class: "error", role: "alert" }, errorText(error)));
    }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); search(); });
  fill(main, h("h1", {}, "Central logs"), alerts, form, results);
  await Promise.all([search(), api("/api/admin/alerts?limit=10", { signal }).then((answer) => {
    if (answer.items.length) {
      fill(alerts, h("h2", {}, "Latest alerts"), h("ul", { class: "feed" }, answer.items.map((a) =>
        h("li", { class: `level-${a.level}` }, when(a.time), ` ${a.service}: ${a.message}`))));
    }
  }).catch(() => {})]);
}

const KINDS = { http: "HTTP request", event: "Event handled", mail: "Mail sent", log: "Log record" };

/** A step's time to the millisecond (steps of one request are milliseconds apart). */
function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso || "");
  return `${date.toLocaleDateString()} ${date.toLocaleTimeString([], { hour12: false })}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

/** A request's (or an order's) steps across every worker, oldest first. */
export async function traceSection(main, { query }, signal, navigate) {
  const results = h("div", { id: "trace-results", "aria-live": "polite" });
  const form = h("form", { class: "row", id: "trace-search" },
    h("div", {}, field("Request id or order id", { name: "id", value: query.get("id") || "", required: true, pattern: "[A-Za-z0-9._:\\-]{1,128}" })),
    h("button", { type: "submit" }, "Follow"));
  const show = async (id) => {
    fill(results, h("p", { class: "muted" }, "Gathering the steps from every worker\u2026"));
    try {
      const trace = await api(`/api/admin/trace/${encodeURIComponent(id)}`, { signal });
      const steps = trace.steps;
      fill(results,
        trace.complete ? "" : h("p", { class: "error" }, "Some workers did not answer: the trace may be incomplete."),
        h("p", { class: "muted", id: "trace-summary" }, `${steps.length} step${steps.length === 1 ? "" : "s"}`,
          trace.requests.length ? ` of request${trace.requests.length === 1 ? "" : "s"} ${trace.requests.join(", ")}` : ""),
        steps.length ? h("div", { class: "table-wrap" }, h("table", { id: "trace" },
          h("thead", {}, h("tr", {}, ["Time", "Worker", "Kind", "Topic / path", "Summary"].map((t) => h("th", {}, t)))),
          h("tbody", {}, steps.map((s) => h("tr", { "data-kind": s.kind, "data-type": s.type || null, class: `level-${s.level}` },
            h("td", {}, h("time", { datetime: s.at }, clock(s.at))), h("td", {}, h("small", {}, s.worker)),
            h("td", {}, KINDS[s.kind] || s.kind), h("td", {}, h("code", {}, s.what)),
            h("td", {}, h("pre", { class: "log" }, s.summary)))))))
          : h("p", { class: "muted", id: "trace-empty" }, "Nothing logged for this id (yet: records reach the central log within a second or two)."));
    } catch (error) {
      fill(results, h("p", { class: "error", role: "alert" }, errorText(error)));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = new FormData(form).get("id").trim();
    if (id) navigate(`/admin/trace?id=${encodeURIComponent(id)}`);
  });
  fill(main, h("h1", {}, "Trace"), h("p", { class: "muted" },
    "Follow one request (its X-Request-Id) or one order's whole life through the gateway, the agents and the mail: every worker's steps, oldest first."),
    form, results);
  if (query.get("id")) await show(query.get("id"));
}

export async function deadLetters(main, params, signal) {
  fill(main, h("h1", {}, "Dead letters"));
  if (await hasEndpoint("/api/admin/dead-letters")) {
    const answer = await api("/api/admin/dead-letters?limit=100", { signal });
    const items = answer.items || [];
    main.append(items.length ? h("div", { class: "table-wrap" }, h("table", { id: "dead-letters" },
      h("thead", {}, h("tr", {}, ["When", "Agent", "Source", "Error", "Event"].map((t) => h("th", {}, t)))),
      h("tbody", {}, items.map((d) => h("tr", {},
        h("td", {}, when(d.failed_at)), h("td", {}, `${d.agent} (${d.stage})`),
        h("td", {}, `${d.source_topic}[${d.partition}]@${d.offset}`),
        h("td", {}, `${d.error_type}: ${d.error}`),
        h("td", {}, h("pre", { class: "log" }, d.value_encoding === "base64" ? `(base64) ${d.value}` : (d.value || ""))))))))
      : h("p", { class: "muted" }, "No dead letters."));
    main.append(h("h2", {}, "Task messages that ran out of attempts"));
  } else {
    main.append(h("p", { class: "muted", id: "dead-letters-missing" },
      "This worker has no dead-letter endpoint (GET /api/admin/dead-letters); events that failed are on the dead-letters topic. Task messages that ran out of attempts:"));
  }
  const tasks = await api("/api/admin/tasks", { signal });
  main.append(h("div", { class: "table-wrap" }, h("table", { id: "dead-tasks" },
    h("thead", {}, h("tr", {}, ["Task", "In its dead-letter queue", "Dead-lettered (total)", "Last error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, tasks.tasks.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.dead ?? "\u2013"), h("td", {}, t.dead_lettered),
      h("td", {}, (t.recent_runs || []).map((r) => r.error).filter(Boolean)[0] || "")))))));
}

export async function tasksSection(main, params, signal) {
  const body = h("div", { id: "task-list" });
  const load = async () => {
    const answer = await api("/api/admin/tasks", { signal });
    fill(body, h("p", { class: "muted" }, `Scope: ${answer.scope}`), h("div", { class: "table-wrap" }, h("table", { id: "tasks" },
      h("thead", {}, h("tr", {}, ["Task", "Schedule", "Next run", "Queued", "Retrying", "Dead", "Done", "Failures", "Last run"].map((t) => h("th", {}, t)))),
      h("tbody", {}, answer.tasks.map((t) => h("tr", { "data-task": t.name },
        h("td", {}, h("strong", {}, t.name), h("br"), h("small", { class: "muted" }, t.description)),
        h("td", {}, t.schedule), h("td", {}, when(t.next_run)),
        h("td", {}, t.queued ?? "\u2013"), h("td", {}, t.retrying ?? "\u2013"), h("td", {}, t.dead ?? "\u2013"),
        h("td", {}, t.done), h("td", {}, t.failures),
        h("td", {}, t.last_run ? [t.last_run.outcome, " ", h("small", { class: "muted" }, when(t.last_run.at))] : "\u2013")))))));
  };
  fill(main, h("h1", {}, "Task queues"), body);
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
