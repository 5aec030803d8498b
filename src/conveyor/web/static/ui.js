// Shared building blocks of the dashboard's pages: DOM helpers that only ever
// create text nodes, formatting, and small pieces several pages use.

export const PAGE_SIZE = 20;
export const STATES = ["waiting", "active", "delayed", "prioritized", "waiting-children", "completed", "failed"];
const STATE_LABELS = { "waiting-children": "waiting children" };
export const RETRYABLE_STATES = ["failed", "completed"];
export const CLEANABLE_STATES = ["waiting", "delayed", "prioritized", "completed", "failed"];

// ---------------------------------------------------------------- DOM helpers
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svgEl(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, attrs);
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
}

export const $ = (selector) => document.querySelector(selector);

// replaceChildren() would print "null" for a skipped part: drop them first.
export function fill(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

export function stateLabel(state) {
  return STATE_LABELS[state] || state;
}

// ---------------------------------------------------------------- formatting
// First defined field among several spellings (snake_case, camelCase, *_ms).
export function pick(obj, ...names) {
  if (!obj) return undefined;
  for (const name of names) {
    if (obj[name] !== undefined && obj[name] !== null) return obj[name];
  }
  return undefined;
}

// A list has the first 1 KiB of a long reason or progress: "…" marks one cut short
// (the job's own page has it whole).
export function preview(text, truncated) {
  return truncated ? `${text ?? ""}…` : text;
}

// Epoch ms of a timestamp field: prefers `<name>_ms`, accepts ms numbers and ISO strings.
export function msOf(obj, ...names) {
  for (const name of names) {
    const raw = pick(obj, `${name}_ms`, `${name}Ms`, name);
    if (raw === undefined) continue;
    if (typeof raw === "number") return raw > 0 ? raw : undefined;
    const parsed = Date.parse(raw);
    if (!Number.isNaN(parsed)) return parsed;
  }
  return undefined;
}

// Numbers, times and durations in the browser's own locale (Intl).
const numberFormat = new Intl.NumberFormat();
const oneDecimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const twoDecimals = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

export function fmtNum(n) {
  return typeof n === "number" ? numberFormat.format(n) : "—";
}

export function fmtPercent(ratio) {
  return typeof ratio === "number" ? percent.format(ratio) : "—";
}

function fmtRate(n) {
  if (typeof n !== "number") return "—";
  return n >= 100 ? numberFormat.format(Math.round(n)) : oneDecimal.format(n);
}

export function fmtDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const abs = Math.abs(ms);
  if (abs < 1000) return `${numberFormat.format(Math.round(ms))} ms`;
  if (abs < 60_000) return `${(abs < 10_000 ? twoDecimals : oneDecimal).format(ms / 1000)} s`;
  const seconds = Math.round(abs / 1000);
  const sign = ms < 0 ? "-" : "";
  if (seconds < 3600) return `${sign}${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  if (seconds < 86_400) return `${sign}${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${sign}${numberFormat.format(Math.floor(seconds / 86_400))} d ${Math.floor((seconds % 86_400) / 3600)} h`;
}

const RELATIVE_UNITS = [["day", 86_400_000], ["hour", 3_600_000], ["minute", 60_000], ["second", 1000]];

function fmtRelative(ms) {
  const diff = ms - Date.now();
  if (Math.abs(diff) < 1500) return relative.format(0, "second");
  for (const [unit, size] of RELATIVE_UNITS) {
    if (Math.abs(diff) >= size || unit === "second") return relative.format(Math.round(diff / size), unit);
  }
  return "";
}

export function isoOf(ms) {
  return new Date(ms).toISOString();
}

// A moment as the browser's locale writes it, in its time zone.
export function fmtDateTime(ms) {
  return dateTime.format(new Date(ms));
}

// <time> showing a relative time; the local and the exact UTC time in its tooltip.
export function timeEl(ms) {
  if (ms === undefined) return h("span", { class: "muted", text: "—" });
  const iso = isoOf(ms);
  return h("time", { datetime: iso, title: `${fmtDateTime(ms)} (${iso})`, dataset: { ms }, text: fmtRelative(ms) });
}

// Parts of a page are re-rendered only when their data changed (so a text
// selection survives polling); their relative times still move on.
export function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-ms]")) {
    el.textContent = fmtRelative(Number(el.dataset.ms));
  }
}

// True (and remembers it) when `data` differs from what `el` shows now.
export function changed(el, data) {
  const key = JSON.stringify(data);
  if (el._shown === key) return false;
  el._shown = key;
  return true;
}

export function fmtJson(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}`, text: stateLabel(text) });
}

export function queueHref(queue, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  return `#/queues/${encodeURIComponent(queue)}${query}`;
}

export function jobHref(queue, id) {
  return `#/queues/${encodeURIComponent(queue)}/jobs/${encodeURIComponent(id)}`;
}

export function apiQueue(queue) {
  return `queues/${encodeURIComponent(queue)}`;
}

// ---------------------------------------------------------------- shared bits
export function countsOf(summary) {
  const counts = pick(summary, "counts") || summary || {};
  const get = (state) => {
    const value = pick(counts, state, state.replace("-", "_"));
    return typeof value === "number" ? value : 0;
  };
  return Object.fromEntries(STATES.map((state) => [state, get(state)]));
}

export function isPaused(summary) {
  return Boolean(pick(summary, "is_paused", "paused") ?? pick(pick(summary, "counts"), "paused"));
}

function timing(summary, kind, quantile) {
  // Accepts {wait_ms: {p50, p95}}, {waitMs: {...}} or flat wait_p95_ms.
  const nested = pick(summary, `${kind}_ms`, `${kind}Ms`, kind);
  const value = nested && typeof nested === "object" ? pick(nested, quantile, `${quantile}_ms`) : undefined;
  return value ?? pick(summary, `${kind}_${quantile}_ms`, `${kind}_${quantile}`);
}

export function queueMeta(summary) {
  const workers = pick(summary, "workers");
  return h("div", { class: "queue-meta" },
    h("span", null, `workers ${fmtNum(typeof workers === "number" ? workers : (workers || []).length)}`),
    h("span", null, `${fmtRate(pick(summary, "completed_per_min", "completedPerMinute"))} completed/min`),
    h("span", null, `${fmtRate(pick(summary, "failed_per_min", "failedPerMinute"))} failed/min`),
    h("span", { title: "Time from ready to started (p50 / p95)" },
      `wait ${fmtDuration(timing(summary, "wait", "p50"))} / ${fmtDuration(timing(summary, "wait", "p95"))}`),
    h("span", { title: "Processing time (p50 / p95)" },
      `processing ${fmtDuration(timing(summary, "processing", "p50"))} / ${fmtDuration(timing(summary, "processing", "p95"))}`));
}

export function healthOf(dashboard, queue) {
  const entries = pick(dashboard, "queues") || [];
  return entries.find((entry) => pick(entry, "queueName", "queue", "name") === queue);
}

function emptyRow(columns, text) {
  return h("tr", null, h("td", { class: "empty", colspan: columns, text }));
}

export function table(headers, rows, emptyText) {
  return h("div", { class: "table-wrap" },
    h("table", null,
      h("thead", null, h("tr", null, headers.map((label) => h("th", { class: "nowrap" }, label)))),
      h("tbody", null, rows.length ? rows : emptyRow(headers.length, emptyText))));
}

export function notFound(root, title, text) {
  root.replaceChildren(
    h("div", { class: "crumbs" }, h("a", { href: "#/", text: "Overview" })),
    h("div", { class: "card" }, h("h1", { text: title }), h("p", { class: "muted", text })),
  );
}
