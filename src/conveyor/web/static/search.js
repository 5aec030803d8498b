// The queue page's job search: a search box (the name) and filters (a JSON path
// of the data, a substring of it, the failed reason, added/finished ranges) over
// GET /queues/{queue}/search. Each request scans a bounded window of the state,
// so the results say how far the scan got and offer to go on.

import { h, fill, fmtNum, apiQueue, stateLabel, table } from "./ui.js";
import { api, requestRefresh } from "./api.js";

const TYPING_MS = 300;
// Requests one search makes by itself before asking the user to go on.
const AUTO_STEPS = 5;
const SCAN = 1000;
const COUNT = 20;

const TEXT_FILTERS = [
  ["data", "Data", "user.id=42", "PATH=VALUE: the data's value at PATH (user.id, items[0].sku) equals VALUE (JSON, or a bare string)"],
  ["data_contains", "Data contains", "\"vip\"", "A substring of the data's JSON text"],
  ["reason", "Failed reason", "timeout", "A substring of the failed reason (any case)"],
];
const TIME_FILTERS = [
  ["created_after", "Added after"], ["created_before", "Added before"],
  ["finished_after", "Finished after"], ["finished_before", "Finished before"],
];

// columns(): the job list's [label, cell(job)] pairs; hide: what the search replaces.
export function jobSearch(queue, state, columns, hide) {
  const name = h("input", { type: "search", name: "name", id: "search-name", placeholder: "Search by name…", "aria-label": "Job name contains" });
  const fields = { name };
  const field = ([key, label, placeholder, title]) => {
    fields[key] = h("input", { type: "text", name: key, id: `search-${key}`, placeholder, title });
    return h("label", { class: "filter" }, h("span", { text: label }), fields[key]);
  };
  const time = ([key, label]) => {
    fields[key] = h("input", { type: "datetime-local", name: key, id: `search-${key}`, step: 1 });
    return h("label", { class: "filter" }, h("span", { text: label }), fields[key]);
  };
  const clear = h("button", { class: "btn", type: "button", id: "search-clear", text: "Clear" });
  const form = h("form", { class: "job-search", role: "search", "aria-label": "Search jobs" },
    h("div", { class: "search" }, name, h("button", { class: "btn", type: "submit", text: "Search" }), clear),
    h("details", { class: "filters" }, h("summary", { text: "Filters" }),
      h("div", { class: "filter-grid" }, TEXT_FILTERS.map(field), TIME_FILTERS.map(time))));
  const status = h("p", { class: "search-status", id: "search-status", role: "status" });
  const results = h("div");
  const more = h("button", { class: "btn", type: "button", id: "search-more", text: "Scan further" });
  const box = h("div", { class: "search-results", hidden: true }, status, results, h("div", { class: "pager" }, more));

  let timer = null;
  let run = 0; // the current search; answers to an older one are dropped
  let found = [];
  let cursor = null;

  // The filters filled in, as query parameters.
  function filters() {
    const out = {};
    for (const [key, input] of Object.entries(fields)) {
      const value = input.value.trim();
      if (!value) continue;
      out[key] = input.type === "datetime-local" ? String(new Date(value).getTime()) : value;
    }
    return out;
  }

  const active = () => Object.keys(filters()).length > 0;

  function show(on) {
    box.hidden = !on;
    for (const el of hide) el.hidden = on;
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function render(page) {
    const cols = columns();
    const rows = found.map((job) => h("tr", { dataset: { jobId: String(job.id) } }, cols.map(([, cell]) => cell(job))));
    fill(results, table(cols.map(([label]) => label), rows, `No ${stateLabel(state)} job matches yet.`));
    const where = `scanned ${fmtNum(page.scanned)} of ${fmtNum(page.total)} ${stateLabel(state)} jobs`;
    const matches = `${fmtNum(found.length)} match${found.length === 1 ? "" : "es"}`;
    say(cursor ? `${matches} so far; ${where}.` : `${matches}; ${where} (all).`);
    more.hidden = !cursor;
  }

  async function step(fresh) {
    const mine = fresh ? ++run : run;
    if (fresh) {
      found = [];
      cursor = null;
    }
    const query = { state, count: COUNT, scan: SCAN, ...filters() };
    if (!active()) {
      show(false);
      return;
    }
    show(true);
    more.disabled = true;
    try {
      for (let n = 0; n < AUTO_STEPS; n += 1) {
        if (cursor) query.cursor = cursor;
        const page = await api(`${apiQueue(queue)}/search?${new URLSearchParams(query)}`);
        if (mine !== run) return;
        found = found.concat(page.jobs || []);
        cursor = page.cursor;
        render(page);
        if (!cursor || found.length >= COUNT) break;
      }
    } catch (error) {
      if (mine !== run) return;
      say(error.message, true);
      fill(results);
      more.hidden = true;
    } finally {
      if (mine === run) more.disabled = false;
    }
  }

  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => step(true), TYPING_MS);
  };
  form.addEventListener("input", soon);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    step(true);
  });
  more.addEventListener("click", () => step(false));
  clear.addEventListener("click", () => {
    for (const input of Object.values(fields)) input.value = "";
    clearTimeout(timer);
    run += 1;
    show(false);
    requestRefresh();
  });

  return { form, box, active };
}
