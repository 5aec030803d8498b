// #/queues/NAME/schedulers : a queue's job schedulers, with their next run,
// pattern or interval, time zone and last runs; create, edit, remove, run now.
// Every control that changes something carries data-admin (hidden for a
// read-only token).

import {
  h, fill, pick, msOf, fmtNum, fmtDuration, fmtDateTime, timeEl, changed, badge, jobHref,
  apiQueue, table,
} from "./ui.js";
import { api, confirmAction, requestRefresh } from "./api.js";
import { queueHeader, loadSummary } from "./queue.js";

function schedule(item) {
  const cron = pick(item, "cron", "pattern");
  if (cron) return `cron ${cron}${item.tz ? ` (${item.tz})` : ""}`;
  const every = pick(item, "every_ms", "everyMs", "every");
  return typeof every === "number" ? `every ${fmtDuration(every)}` : "—";
}

function lastRuns(item) {
  const runs = pick(item, "last_runs", "lastRuns") || [];
  if (!runs.length) return h("span", { class: "muted", text: "—" });
  return h("span", { class: "runs" }, runs.map((run) => {
    const slot = msOf(run, "slot");
    const what = run.manual ? "run now" : "slot";
    return h("a", { href: jobHref(item.queue, run.id), title: `${what} ${slot ? fmtDateTime(slot) : ""}: ${run.state || "gone"}` },
      badge(run.state || "gone", run.state || "critical"));
  }));
}

// The form that creates a scheduler, or edits the one whose Edit was clicked.
function schedulerForm(queue, say) {
  const field = (label, input, wide) => h("label", { class: wide ? "wide" : null }, label, input);
  const id = h("input", { name: "id", required: true, maxlength: 200, placeholder: "nightly-report" });
  const kind = h("select", { name: "kind" }, h("option", { value: "every", text: "every (interval)" }), h("option", { value: "cron", text: "cron (pattern)" }));
  const every = h("input", { name: "every", type: "number", min: "0.001", step: "any", value: "60", "aria-label": "Every (seconds)" });
  const cron = h("input", { name: "cron", placeholder: "0 9 * * 1-5", "aria-label": "Cron pattern" });
  const zones = h("datalist", { id: "time-zones" },
    (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : ["UTC"]).map((zone) => h("option", { value: zone })));
  const tz = h("input", { name: "tz", value: "UTC", list: "time-zones" });
  const jobName = h("input", { name: "job_name", placeholder: "(the scheduler's id)" });
  const limit = h("input", { name: "limit", type: "number", min: "1", step: "1", placeholder: "no limit" });
  const data = h("textarea", { name: "data", spellcheck: "false", text: "{}" });
  const save = h("button", { class: "btn btn-primary", type: "submit", id: "scheduler-save", text: "Create scheduler" });
  const cancel = h("button", { class: "btn", type: "button", hidden: true, text: "Cancel edit" });
  const title = h("h2", { text: "New scheduler" });
  let options = {};
  const form = h("form", { class: "card", id: "scheduler-form", "data-admin": true },
    title,
    h("div", { class: "form-grid" },
      field("ID", id), field("Kind", kind), field("Every (seconds)", every), field("Cron pattern", cron),
      field("Time zone", tz), zones, field("Job name", jobName), field("Limit (jobs in all)", limit),
      field("Data (JSON)", data, true)),
    h("div", { class: "form-actions" }, save, cancel));

  function showKind() {
    every.closest("label").hidden = kind.value !== "every";
    cron.closest("label").hidden = kind.value !== "cron";
  }
  kind.addEventListener("change", showKind);

  function reset() {
    form.reset();
    id.readOnly = false;
    options = {};
    title.textContent = "New scheduler";
    save.textContent = "Create scheduler";
    cancel.hidden = true;
    showKind();
  }
  cancel.addEventListener("click", reset);

  function edit(item) {
    id.value = item.id;
    id.readOnly = true;
    const isCron = Boolean(item.cron);
    kind.value = isCron ? "cron" : "every";
    cron.value = item.cron || "";
    every.value = isCron ? "" : String(item.every_ms / 1000);
    tz.value = item.tz || "UTC";
    jobName.value = item.job_name || "";
    limit.value = item.limit ?? "";
    data.value = JSON.stringify(item.data ?? null, null, 2);
    options = item.opts || {};
    title.textContent = `Edit scheduler ${item.id}`;
    save.textContent = "Save changes";
    cancel.hidden = false;
    showKind();
    form.scrollIntoView({ block: "nearest" });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = data.value.trim() ? JSON.parse(data.value) : null;
    } catch (error) {
      say(`data: not valid JSON (${error.message})`, true);
      return;
    }
    const body = { tz: tz.value.trim() || "UTC", data: parsed, options };
    if (kind.value === "cron") body.cron = cron.value.trim();
    else body.every_ms = Math.round(Number(every.value) * 1000);
    if (jobName.value.trim()) body.job_name = jobName.value.trim();
    if (limit.value) body.limit = Number(limit.value);
    save.disabled = true;
    try {
      await api(`${apiQueue(queue)}/schedulers/${encodeURIComponent(id.value.trim())}`, { method: "PUT", body });
      say(`Scheduler ${id.value.trim()} saved.`);
      reset();
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    } finally {
      save.disabled = false;
    }
  });
  showKind();
  return { form, edit };
}

export function schedulersView(root, route) {
  const { queue } = route;
  document.title = `Schedulers · ${queue} · conveyor`;
  const header = queueHeader(root, queue, "schedulers");
  const notice = h("div", { class: "notice", role: "status", hidden: true });
  const box = h("div");

  function say(text, isError, link) {
    fill(notice, text, link || null);
    notice.classList.toggle("error", Boolean(isError));
    notice.hidden = !text;
  }
  const { form, edit } = schedulerForm(queue, say);
  root.append(notice, box, form);

  async function runNow(item, button) {
    button.disabled = true;
    try {
      const ran = await api(`${apiQueue(queue)}/schedulers/${encodeURIComponent(item.id)}/run`, { method: "POST" });
      say(`Scheduler ${item.id} made job `, false, h("a", { href: jobHref(queue, ran.job_id), text: ran.job_id }));
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function remove(item) {
    const ok = await confirmAction("Remove this scheduler?",
      `Scheduler ${item.id} of “${queue}” stops; its next job is withdrawn if it has not started.`, "Remove");
    if (!ok) return;
    try {
      await api(`${apiQueue(queue)}/schedulers/${encodeURIComponent(item.id)}`, { method: "DELETE" });
      say(`Scheduler ${item.id} removed.`);
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    }
  }

  // The next slot's job already exists, delayed, as "sched-<scheduler id>-<slot ms>".
  function nextRunCell(item) {
    const next = msOf(item, "next_run", "nextRun");
    if (next === undefined) return timeEl(next);
    return h("a", { href: jobHref(queue, `sched-${item.id}-${next}`), title: "Open the job of the next run" }, timeEl(next));
  }

  function row(item) {
    const limit = pick(item, "limit");
    const made = fmtNum(pick(item, "count") ?? 0);
    const run = h("button", { class: "btn", type: "button", "data-admin": true, text: "Run now" });
    run.addEventListener("click", () => runNow(item, run));
    const change = h("button", { class: "btn", type: "button", "data-admin": true, text: "Edit" });
    change.addEventListener("click", () => edit(item));
    const drop = h("button", { class: "btn btn-danger", type: "button", "data-admin": true, text: "Remove" });
    drop.addEventListener("click", () => remove(item));
    return h("tr", { dataset: { scheduler: item.id } },
      h("td", { class: "nowrap mono", text: item.id }),
      h("td", { text: schedule(item) }),
      h("td", { class: "nowrap" }, nextRunCell(item)),
      h("td", null, lastRuns({ ...item, queue })),
      h("td", { class: "num", text: limit ? `${made} / ${fmtNum(limit)}` : made }),
      h("td", { text: pick(item, "job_name", "jobName", "name") || "" }),
      h("td", { class: "wrap mono", text: item.data === undefined ? "" : JSON.stringify(item.data) }),
      h("td", null, h("div", { class: "actions row-actions" }, run, change, drop)));
  }

  async function refresh() {
    const summary = await loadSummary(root, queue);
    if (!summary) return;
    header.update(summary);
    const items = await api(`${apiQueue(queue)}/schedulers`);
    const list = Array.isArray(items) ? items : pick(items, "schedulers") || [];
    if (!changed(box, list)) return;
    box.replaceChildren(table(["ID", "Schedule", "Next run", "Last runs", "Jobs made", "Job name", "Data", ""],
      list.map(row), "No job schedulers on this queue."));
  }

  return { refresh };
}
