// #/queues/NAME : a queue's jobs by state, and its workers (schedulers: schedulers.js).

import {
  PAGE_SIZE, STATES, RETRYABLE_STATES, CLEANABLE_STATES, h, fill, stateLabel, pick, msOf, fmtNum,
  fmtDuration, timeEl, changed, badge, queueHref, jobHref, apiQueue, countsOf, isPaused,
  queueMeta, healthOf, table, notFound, preview,
} from "./ui.js";
import { api, confirmAction, requestRefresh, showBanner } from "./api.js";
import { chartBox, loadChart } from "./chart.js";
import { seriesCard } from "./series.js";
import { jobSearch } from "./search.js";
import { bulkSelection } from "./bulk.js";
import { addJobButton } from "./job_edit.js";

// ---------------------------------------------------------------- queue header (shared by the queue's pages)
export function queueHeader(root, queue, section) {
  const badges = h("span", { class: "actions" });
  const reasons = h("ul", { class: "reasons page-reasons", hidden: true });
  const pauseButton = h("button", { class: "btn", type: "button", id: "pause-toggle", "data-admin": true, disabled: true, text: "Pause" });
  let paused = null;
  pauseButton.addEventListener("click", async () => {
    pauseButton.disabled = true;
    try {
      const summary = await api(`${apiQueue(queue)}/${paused ? "resume" : "pause"}`, { method: "POST" });
      update(summary && typeof summary === "object" && "name" in summary ? summary : await api(apiQueue(queue)));
    } catch (error) {
      showBanner(error.message);
    } finally {
      pauseButton.disabled = false;
    }
  });
  const tab = (key, label, href) =>
    h("a", { class: `tab${section === key ? " active" : ""}`, href, dataset: { section: key }, text: label });
  root.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/", text: "Overview" }), " / queues"),
    h("div", { class: "page-head" },
      h("h1", { text: queue }),
      badges,
      h("span", { class: "spacer" }),
      h("div", { class: "actions" }, pauseButton)),
    reasons,
    h("nav", { class: "tabs subnav", "aria-label": "Queue sections" },
      tab("jobs", "Jobs", queueHref(queue)),
      tab("schedulers", "Schedulers", `${queueHref(queue)}/schedulers`),
      tab("workers", "Workers", `${queueHref(queue)}/workers`)),
  );
  let health = null;
  function update(summary) {
    paused = isPaused(summary);
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.classList.toggle("btn-primary", paused);
    pauseButton.disabled = false;
    fill(badges,
      paused ? badge("paused") : badge("running", "ok"),
      health ? badge(pick(health, "status")) : null);
    const why = pick(health, "reasons") || [];
    fill(reasons, why.map((reason) => h("li", { text: reason })));
    reasons.hidden = !why.length;
  }
  function setHealth(value) {
    health = value;
  }
  return { update, setHealth };
}

// Loads the queue summary; shows "not found" and returns null for an unknown queue.
export async function loadSummary(root, queue) {
  try {
    return await api(apiQueue(queue));
  } catch (error) {
    if (error.status === 404) {
      notFound(root, "Queue not found", `There is no queue named “${queue}”.`);
      return null;
    }
    throw error;
  }
}

// ---------------------------------------------------------------- queue: jobs
export function queueView(root, route) {
  const { queue } = route;
  const state = STATES.includes(route.state) ? route.state : "waiting";
  const page = Math.max(1, route.page || 1);
  document.title = `${queue} · conveyor`;
  const header = queueHeader(root, queue, "jobs");
  const chart = chartBox();
  const series = seriesCard(queue);
  const legend = h("div");
  const meta = h("div");
  const tabs = h("nav", { class: "tabs", "aria-label": "Job states" });
  const notice = h("div", { class: "notice", role: "status", hidden: true });
  const searchInput = h("input", { type: "search", name: "job-id", placeholder: "Find a job by id", "aria-label": "Job id" });
  const searchForm = h("form", { class: "search", role: "search" },
    searchInput, h("button", { class: "btn", type: "submit", text: "Find" }));
  const retryAll = h("button", { class: "btn", type: "button", id: "retry-all", "data-admin": true, text: "Retry all" });
  const cleanAll = h("button", { class: "btn btn-danger", type: "button", id: "clean-all", "data-admin": true, text: "Clean" });
  const tableBox = h("div");
  const pager = h("div", { class: "pager" });
  const search = jobSearch(queue, state, () => columns(), [tableBox, pager]);
  const bulk = bulkSelection(queue, state, (text, isError) => say(text, isError));
  root.append(
    h("section", { class: "card" }, h("h3", { text: "Throughput, last 60 minutes" }), chart, legend,
      h("div", { class: "meta-row" }, meta)),
    series.el,
    h("div", { class: "tabs-row" }, tabs),
    h("div", { class: "toolbar" }, searchForm, h("span", { class: "spacer" }), ...bulk.controls,
      addJobButton(queue),
      RETRYABLE_STATES.includes(state) ? retryAll : null,
      CLEANABLE_STATES.includes(state) ? cleanAll : null),
    notice,
    search.form,
    search.box,
    tableBox,
    pager,
  );
  let total = 0;
  let tabsScrolled = false;
  const alive = () => root.contains(tableBox) && document.body.contains(root);

  function say(text, isError) {
    notice.textContent = text;
    notice.classList.toggle("error", Boolean(isError));
    notice.hidden = !text;
  }

  searchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = searchInput.value.trim();
    if (!id) return;
    try {
      await api(`${apiQueue(queue)}/jobs/${encodeURIComponent(id)}`);
      location.hash = jobHref(queue, id);
    } catch (error) {
      say(error.status === 404 ? `No job with id “${id}” in ${queue}.` : error.message, true);
    }
  });

  retryAll.addEventListener("click", async () => {
    const ok = await confirmAction(`Retry all ${stateLabel(state)} jobs?`,
      `${fmtNum(total)} ${stateLabel(state)} job(s) of “${queue}” go back to waiting.`, "Retry all", { danger: false });
    if (!ok) return;
    try {
      const result = await api(`${apiQueue(queue)}/retry`, { method: "POST", body: { state } });
      say(`Retried ${fmtNum(pick(result, "retried", "count") ?? 0)} job(s).`);
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    }
  });

  cleanAll.addEventListener("click", async () => {
    const ok = await confirmAction(`Remove all ${stateLabel(state)} jobs?`,
      `${fmtNum(total)} ${stateLabel(state)} job(s) of “${queue}” will be deleted. This cannot be undone.`, "Remove");
    if (!ok) return;
    try {
      const result = await api(`${apiQueue(queue)}/clean`, { method: "POST", body: { state, grace_ms: 0 } });
      say(`Removed ${fmtNum(pick(result, "removed", "count") ?? 0)} job(s).`);
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    }
  });

  function renderTabs(counts) {
    tabs.replaceChildren(...STATES.map((key) =>
      h("a", { class: `tab${key === state ? " active" : ""}`, href: queueHref(queue, { state: key }), dataset: { state: key },
        "aria-current": key === state ? "page" : null },
      stateLabel(key), h("span", { class: "tab-count", text: fmtNum(counts[key]) }))));
    if (!tabsScrolled) {
      // On a narrow screen the chosen state's tab may start out of sight.
      tabsScrolled = true;
      const active = tabs.querySelector(".tab.active");
      if (active && active.offsetLeft + active.offsetWidth > tabs.clientWidth) {
        tabs.scrollLeft = active.offsetLeft - 16;
      }
    }
  }

  function columns() {
    const cols = [
      bulk.column,
      ["ID", (job) => h("td", { class: "nowrap" }, h("a", { href: jobHref(queue, job.id), class: "job-link", text: String(job.id) }))],
      ["Name", (job) => h("td", { class: "name", title: job.name, text: job.name })],
      ["Added", (job) => h("td", { class: "nowrap" }, timeEl(msOf(job, "timestamp")))],
    ];
    if (state === "active") {
      cols.push(["Started", (job) => h("td", { class: "nowrap" }, timeEl(msOf(job, "processed_on", "processedOn")))]);
      cols.push(["Progress", (job) => h("td", { class: "nowrap", text: progressText(job.progress, pick(job, "progress_truncated", "progressTruncated")) })]);
    }
    if (state === "delayed") {
      cols.push(["Runs", (job) => {
        const due = msOf(job, "due");
        const added = msOf(job, "timestamp");
        const delay = pick(job, "delay");
        if (due !== undefined) return h("td", { class: "nowrap" }, timeEl(due));
        return h("td", { class: "nowrap" }, added !== undefined && delay ? timeEl(added + delay) : "—");
      }]);
    }
    if (state === "prioritized") cols.push(["Priority", (job) => h("td", { class: "num", text: fmtNum(pick(job, "priority")) })]);
    if (state === "completed" || state === "failed") {
      cols.push(["Finished", (job) => h("td", { class: "nowrap" }, timeEl(msOf(job, "finished_on", "finishedOn")))]);
      cols.push(["Took", (job) => {
        const start = msOf(job, "processed_on", "processedOn");
        const end = msOf(job, "finished_on", "finishedOn");
        return h("td", { class: "nowrap", text: start && end ? fmtDuration(end - start) : "—" });
      }]);
    }
    if (state === "failed") {
      cols.push(["Reason", (job) => {
        const reason = preview(pick(job, "failed_reason", "failedReason"), pick(job, "failed_reason_truncated", "failedReasonTruncated"));
        return h("td", { class: "wrap" }, h("span", { class: "reason", title: reason, text: reason || "" }));
      }]);
    }
    cols.push(["Attempts", (job) => h("td", { class: "num", text: `${fmtNum(pick(job, "attempts_made", "attemptsMade") ?? 0)} / ${fmtNum(pick(job, "attempts") ?? 1)}` })]);
    return cols;
  }

  function renderJobs(jobPage) {
    const jobs = pick(jobPage, "jobs") || [];
    total = pick(jobPage, "total") ?? jobs.length;
    bulk.update(jobs);
    if (!changed(tableBox, jobPage)) return;
    const cols = columns();
    const rows = jobs.map((job) => h("tr", { dataset: { jobId: String(job.id) } }, cols.map(([, cell]) => cell(job))));
    tableBox.replaceChildren(table(cols.map(([label]) => label), rows, `No ${stateLabel(state)} jobs.`));
    const start = (page - 1) * PAGE_SIZE;
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const go = (target) => { location.hash = queueHref(queue, { state, page: target }); };
    if (!jobs.length && page > pages) {
      go(pages); // past the end (jobs were cleaned or ran meanwhile): show the last page
      return;
    }
    const prev = h("button", { class: "btn", type: "button", id: "page-prev", disabled: page <= 1, text: "← Previous", onclick: () => go(page - 1) });
    const next = h("button", { class: "btn", type: "button", id: "page-next", disabled: page >= pages, text: "Next →", onclick: () => go(page + 1) });
    const range = total ? `${fmtNum(start + 1)}–${fmtNum(Math.min(start + jobs.length, total))} of ${fmtNum(total)}` : "0 jobs";
    fill(pager, 
      h("span", { class: "muted", id: "page-range", text: `${range} · page ${fmtNum(page)} of ${fmtNum(pages)}` }),
      h("span", { class: "actions" }, prev, next));
    retryAll.disabled = total === 0;
    cleanAll.disabled = total === 0;
  }

  async function refresh() {
    const slow = true; // one queue: its chart and health are cheap enough for every poll
    const summary = await loadSummary(root, queue);
    if (!summary || !alive()) return;
    const [jobPage] = await Promise.all([
      search.active() ? null : api(`${apiQueue(queue)}/jobs?${new URLSearchParams({ state, start: (page - 1) * PAGE_SIZE, count: PAGE_SIZE })}`),
      slow ? loadChart(queue, chart, legend).catch(() => undefined) : null,
      series.load().catch(() => undefined),
      slow ? api("queue/dashboard").then((d) => header.setHealth(healthOf(d, queue))).catch(() => undefined) : null,
    ]);
    header.update(summary);
    meta.replaceChildren(queueMeta(summary));
    renderTabs(countsOf(summary));
    if (jobPage) renderJobs(jobPage);
  }

  return { refresh };
}

function progressText(progress, truncated) {
  if (truncated) return preview(progress, true); // the first bytes of its JSON
  if (typeof progress === "number") return `${Math.round(progress)}%`;
  if (progress === null || progress === undefined || progress === "") return "—";
  return typeof progress === "object" ? JSON.stringify(progress) : String(progress);
}

// ---------------------------------------------------------------- workers
export function workersView(root, route) {
  const { queue } = route;
  document.title = `Workers · ${queue} · conveyor`;
  const header = queueHeader(root, queue, "workers");
  const box = h("div");
  root.append(box);

  async function refresh() {
    const summary = await loadSummary(root, queue);
    if (!summary) return;
    header.update(summary);
    const items = await api(`${apiQueue(queue)}/workers`);
    const list = Array.isArray(items) ? items : pick(items, "workers") || [];
    const rows = list.map((worker) => {
      const running = pick(worker, "running_job_ids", "runningJobIds") || [];
      return h("tr", null,
        h("td", { class: "nowrap mono", text: pick(worker, "id") }),
        h("td", { class: "nowrap", text: `${pick(worker, "hostname") || "?"} · pid ${pick(worker, "pid") ?? "?"}` }),
        h("td", { class: "num", text: `${fmtNum(running.length)} / ${fmtNum(pick(worker, "concurrency"))}` }),
        h("td", { class: "nowrap" }, timeEl(msOf(worker, "started_at", "startedAt"))),
        h("td", { class: "nowrap" }, timeEl(msOf(worker, "last_heartbeat", "lastHeartbeat"))),
        h("td", { class: "wrap" }, running.length
          ? running.map((jobId, i) => [i ? ", " : "", h("a", { href: jobHref(queue, jobId), text: String(jobId) })])
          : h("span", { class: "muted", text: "idle" })));
    });
    box.replaceChildren(table(["Worker", "Host", "Running", "Started", "Heartbeat", "Jobs"], rows, "No live workers on this queue."));
  }

  return { refresh };
}
