// A live analytics table page: the table's rows and window values, read every 2 s; cells
// that changed since the last read are highlighted.
import { NotSignedIn, element, getJson, setStatus, showNotice, signInNotice, sleep } from "./api.js";

const name = document.body.dataset.table;
const table = document.getElementById("rows");
let previous = new Map();

function rowKey(row) {
  return [row.window_start, row.source, row.session_id].filter(Boolean).join("|");
}

function draw(body) {
  document.getElementById("description").textContent = body.description;
  const head = element("tr");
  head.append(...body.columns.map((c) => element("th", { scope: "col" }, c)));
  table.tHead.replaceChildren(head);
  const seen = new Map();
  table.tBodies[0].replaceChildren(...body.rows.map((row) => {
    const key = rowKey(row);
    const before = previous.get(key);
    seen.set(key, row);
    const tr = element("tr");
    for (const column of body.columns) {
      const value = row[column];
      const cell = element("td", typeof value === "number" ? { class: "num" } : {},
                           value === null || value === undefined ? "" : String(value));
      if (before && before[column] !== value) cell.classList.add("changed");
      tr.append(cell);
    }
    return tr;
  }));
  previous = seen;
  setStatus(`${body.rows.length} rows · updated ${new Date().toLocaleTimeString()}`, true);
}

async function run() {
  for (;;) {
    try {
      draw(await getJson(`/api/analytics/tables/${encodeURIComponent(name)}`));
      showNotice("");
    } catch (error) {
      if (error instanceof NotSignedIn) {
        signInNotice();
        setStatus("not signed in");
        return;
      }
      showNotice(`Could not read the table: ${error.message}`);
    }
    await sleep(2000);
  }
}

run();
