// #/ : every queue at a glance, and the newest failures.

import {
  STATES, h, fill, stateLabel, pick, msOf, fmtNum, timeEl, badge, queueHref, jobHref, countsOf,
  isPaused, queueMeta, healthOf, table, preview,
} from "./ui.js";
import { api } from "./api.js";
import { chartBox, loadChart } from "./chart.js";

const SLOW_EVERY = 5; // with many queues, charts refresh every 5th poll (10 s)
const FEW_QUEUES = 8; // up to this many, every poll refreshes every chart

// ---------------------------------------------------------------- overview
export function overviewView(root) {
  document.title = "Overview · conveyor";
  const status = h("span");
  const stats = h("div", { class: "stats" });
  const grid = h("div", { class: "grid grid-queues", id: "queues" });
  const alerts = h("div");
  root.append(
    h("div", { class: "page-head" }, h("h1", { text: "Overview" }), status),
    stats,
    h("h2", { class: "section-title", text: "Queues" }),
    grid,
    h("h2", { class: "section-title", text: "Recent failures" }),
    alerts,
  );
  const cards = new Map(); // queue name -> {card, chart, legend}
  let tick = 0;
  let dashboard = null;

  function card(name) {
    let entry = cards.get(name);
    if (!entry) {
      entry = { card: h("article", { class: "card queue-card", dataset: { queue: name } }), chart: chartBox(), legend: h("div") };
      cards.set(name, entry);
    }
    return entry;
  }

  function renderCard(summary) {
    const name = pick(summary, "name", "queueName");
    const entry = card(name);
    const counts = countsOf(summary);
    const health = healthOf(dashboard, name);
    const reasons = pick(health, "reasons") || [];
    fill(entry.card, 
      h("div", { class: "queue-card-head" },
        h("a", { class: "queue-link", href: queueHref(name), text: name }),
        isPaused(summary) ? badge("paused") : null,
        h("span", { class: "spacer" }),
        health ? badge(pick(health, "status")) : null),
      h("div", { class: "counts" },
        STATES.filter((state) => state !== "waiting-children" || counts[state]).map((state) =>
          h("a", { class: `count ${state}${counts[state] ? " nonzero" : ""}`, href: queueHref(name, { state }), dataset: { count: state } },
            h("span", { class: "count-label", text: stateLabel(state) }),
            h("span", { class: "count-value", text: fmtNum(counts[state]) })))),
      queueMeta(summary),
      reasons.length ? h("ul", { class: "reasons" }, reasons.map((reason) => h("li", { text: reason }))) : null,
      entry.chart,
      entry.legend,
    );
    return entry;
  }

  function renderStats(summaries) {
    const totals = Object.fromEntries(STATES.map((state) => [state, 0]));
    let workers = 0;
    for (const summary of summaries) {
      const counts = countsOf(summary);
      for (const state of STATES) totals[state] += counts[state];
      const w = pick(summary, "workers");
      workers += typeof w === "number" ? w : 0;
    }
    const stat = (label, value, kind) =>
      h("div", { class: `stat ${kind || ""}`, dataset: { stat: label } },
        h("div", { class: "stat-label", text: label }),
        h("div", { class: "stat-value", text: fmtNum(value) }));
    stats.replaceChildren(
      stat("queues", summaries.length),
      stat("waiting", totals.waiting + totals.prioritized),
      stat("active", totals.active),
      stat("delayed", totals.delayed),
      stat("completed", totals.completed),
      stat("failed", totals.failed, totals.failed ? "failed" : ""),
      stat("workers", workers),
    );
  }

  function renderAlerts() {
    const list = pick(dashboard, "alerts") || [];
    const rows = list.map((alert) => {
      const queue = pick(alert, "queueName", "queue");
      const id = String(pick(alert, "id", "jobId", "job_id"));
      const reason = preview(pick(alert, "reason"), pick(alert, "reason_truncated", "reasonTruncated"));
      return h("tr", null,
        h("td", { class: "nowrap" }, h("a", { href: queueHref(queue), text: queue })),
        h("td", { class: "nowrap" }, h("a", { href: jobHref(queue, id), text: id })),
        h("td", { class: "nowrap", text: pick(alert, "name") || "" }),
        h("td", { class: "wrap" }, h("span", { class: "reason", title: reason, text: reason || "" })),
        h("td", { class: "nowrap" }, timeEl(msOf(alert, "failed_on", "failedOn", "finished_on", "finishedOn"))));
    });
    alerts.replaceChildren(table(["Queue", "Job", "Name", "Reason", "Failed"], rows, "No failed jobs."));
  }

  async function refresh() {
    const slow = tick++ % SLOW_EVERY === 0 || cards.size <= FEW_QUEUES;
    const [summaries, dash] = await Promise.all([
      api("queues"),
      api("queue/dashboard").catch(() => null),
    ]);
    dashboard = dash;
    const overall = pick(dashboard, "status");
    fill(status, overall ? badge(overall) : "");
    renderStats(summaries);
    const names = new Set();
    const ordered = summaries.map((summary) => {
      names.add(pick(summary, "name", "queueName"));
      return renderCard(summary);
    });
    for (const name of [...cards.keys()]) if (!names.has(name)) cards.delete(name);
    grid.replaceChildren(...ordered.map((entry) => entry.card));
    if (!summaries.length) {
      grid.replaceChildren(h("div", { class: "card muted", text: "No queues yet. Add a job and its queue shows up here." }));
    }
    renderAlerts();
    const charts = [];
    for (const [name, entry] of cards) {
      if (slow || !entry.chart._points) charts.push(loadChart(name, entry.chart, entry.legend).catch(() => undefined));
    }
    await Promise.all(charts);
  }

  return { refresh };
}
