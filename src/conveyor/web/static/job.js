// #/queues/NAME/jobs/ID : everything about one job.

import {
  RETRYABLE_STATES, h, fill, pick, msOf, fmtNum, fmtDuration, isoOf, timeEl, changed, fmtJson,
  badge, queueHref, jobHref, apiQueue,
} from "./ui.js";
import { api, confirmAction, requestRefresh } from "./api.js";
import { flowTree } from "./tree.js";
import { jobEditActions } from "./job_edit.js";
import { attemptsTable } from "./attempts.js";

// ---------------------------------------------------------------- job
export function jobView(root, route) {
  const { queue, id } = route;
  document.title = `${id} · ${queue} · conveyor`;
  const head = h("div", { class: "page-head" });
  const notice = h("div", { class: "notice", role: "status", hidden: true });
  const body = h("div", { class: "stack" });
  const retry = h("button", { class: "btn btn-primary", type: "button", id: "job-retry", "data-admin": true, disabled: true, text: "Retry" });
  const promote = h("button", { class: "btn", type: "button", id: "job-promote", "data-admin": true, disabled: true, text: "Promote" });
  const remove = h("button", { class: "btn btn-danger", type: "button", id: "job-remove", "data-admin": true, disabled: true, text: "Remove" });
  root.append(
    h("div", { class: "crumbs" },
      h("a", { href: "#/", text: "Overview" }), " / ",
      h("a", { href: queueHref(queue), text: queue }), " / jobs"),
    head, notice, body);
  let job = null;
  const tree = flowTree(queue, id);
  const edits = jobEditActions(queue, id, (text, isError) => say(text, isError));

  function say(text, isError) {
    notice.textContent = text;
    notice.classList.toggle("error", Boolean(isError));
    notice.hidden = !text;
  }

  async function act(button, path, method, done) {
    button.disabled = true;
    try {
      await api(`${apiQueue(queue)}/jobs/${encodeURIComponent(id)}${path}`, { method });
      say(done);
      requestRefresh();
    } catch (error) {
      say(error.message, true);
      button.disabled = false;
    }
  }

  retry.addEventListener("click", () => act(retry, "/retry", "POST", "Job sent back to the queue."));
  promote.addEventListener("click", () => act(promote, "/promote", "POST", "Job promoted: it runs as soon as a worker is free."));
  remove.addEventListener("click", async () => {
    const ok = await confirmAction("Remove this job?", `Job ${id} of “${queue}” and its logs will be deleted.`, "Remove");
    if (!ok) return;
    remove.disabled = true;
    try {
      await api(`${apiQueue(queue)}/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
      location.hash = queueHref(queue, job ? { state: job.state } : undefined);
    } catch (error) {
      say(error.message, true);
      remove.disabled = false;
    }
  });

  function section(title, ...content) {
    return h("section", { class: "card" }, h("h2", { text: title }), ...content);
  }

  function pre(value, extra) {
    return h("pre", { class: `code ${extra || ""}`, text: typeof value === "string" ? value : fmtJson(value) });
  }

  function progressBlock(progress) {
    if (typeof progress === "number") {
      const pct = Math.max(0, Math.min(100, progress));
      // Set through the CSSOM: the CSP (style-src 'self') refuses a style attribute.
      const bar = h("div", { class: "progress-bar" });
      bar.style.width = `${pct}%`;
      return h("div", { class: "progress-row" },
        h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "Progress" },
          bar),
        h("span", { class: "progress-label", id: "job-progress", text: `${Math.round(progress)}%` }));
    }
    if (progress === null || progress === undefined) return h("p", { class: "muted", id: "job-progress", text: "No progress reported." });
    return h("div", { id: "job-progress" }, pre(progress));
  }

  function summaryList(detail) {
    const rows = [
      ["State", badge(detail.state || "unknown")],
      ["Attempts", `${fmtNum(pick(detail, "attempts_made", "attemptsMade") ?? 0)} of ${fmtNum(pick(detail, "attempts") ?? 1)}`],
      ["Added", timeEl(msOf(detail, "timestamp"))],
      ["Started", timeEl(msOf(detail, "processed_on", "processedOn"))],
      ["Finished", timeEl(msOf(detail, "finished_on", "finishedOn"))],
    ];
    const started = msOf(detail, "processed_on", "processedOn");
    const finished = msOf(detail, "finished_on", "finishedOn");
    if (started && finished) rows.push(["Took", fmtDuration(finished - started)]);
    const delay = pick(detail, "delay");
    if (delay) rows.push(["Delay", fmtDuration(delay)]);
    const priority = pick(detail, "priority");
    if (priority) rows.push(["Priority", fmtNum(priority)]);
    const parent = pick(detail, "parent_key", "parentKey");
    if (parent) {
      // A parent's key is "<prefix>:{<queue>}:job:<id>".
      const match = /^.*:\{([^}]*)\}:job:(.+)$/.exec(parent);
      rows.push(["Parent", match
        ? h("a", { href: jobHref(match[1], match[2]), text: `${match[1]} #${match[2]}` })
        : h("span", { class: "mono", text: parent })]);
    }
    const origin = pick(detail, "dead_letter_of", "deadLetterOf");
    if (origin && typeof origin === "object" && origin.queue && origin.id !== undefined) {
      rows.push(["Dead letter of", h("span", null,
        h("a", { href: jobHref(origin.queue, String(origin.id)), text: `${origin.queue} #${origin.id}` }),
        origin.failed_reason ? h("span", { class: "muted", text: ` — ${origin.failed_reason}` }) : null)]);
    } else if (origin) {
      rows.push(["Dead letter of", h("span", { class: "mono", text: JSON.stringify(origin) })]);
    }
    return h("dl", { class: "kv" }, rows.map(([label, value]) => [h("dt", { text: label }), h("dd", null, value)]));
  }

  function timeline(detail) {
    const events = pick(detail, "timeline") || [];
    if (!events.length) return h("p", { class: "muted", text: "No events recorded." });
    return h("ol", { class: "timeline" }, events.map((event) => {
      const at = msOf(event, "at");
      return h("li", { class: String(event.event || "").split(" ")[0] },
        h("strong", { text: event.event }),
        at ? h("span", { class: "when" }, `${isoOf(at).replace("T", " ").replace("Z", " UTC")} · `, timeEl(at)) : null);
    }));
  }

  function render(detail) {
    job = detail;
    if (!changed(body, detail)) return;
    const state = detail.state || "unknown";
    fill(head, 
      h("h1", null, h("span", { id: "job-name", text: detail.name }), " ", h("span", { class: "muted", text: `#${detail.id}` })),
      h("span", { id: "job-state" }, badge(state)),
      h("span", { class: "spacer" }),
      h("div", { class: "actions" }, retry, promote, ...edits.buttons, remove));
    edits.update(detail);
    retry.disabled = !RETRYABLE_STATES.includes(state);
    retry.title = retry.disabled ? "Only failed or completed jobs can be retried" : "";
    promote.disabled = state !== "delayed";
    promote.title = promote.disabled ? "Only delayed jobs can be promoted" : "";
    remove.disabled = state === "active";
    remove.title = remove.disabled ? "A job a worker is running cannot be removed" : "";

    const logs = pick(detail, "logs") || [];
    const stack = pick(detail, "stacktrace") || [];
    const reason = pick(detail, "failed_reason", "failedReason");
    const parts = [
      h("div", { class: "grid grid-2" },
        section("Summary", summaryList(detail)),
        section("Progress", progressBlock(detail.progress))),
      tree.el,
    ];
    if (reason || stack.length) {
      parts.push(section("Error",
        reason ? h("div", { class: "error-box", id: "job-error", text: reason }) : null,
        // Newest attempt first: its trace is the one that matters.
        [...stack].reverse().map((trace, i) => [
          stack.length > 1 ? h("h3", { text: i === 0 ? "Last attempt" : `Attempt ${stack.length - i}` }) : null,
          pre(trace, "stack"),
        ])));
    }
    const returnValue = pick(detail, "return_value", "returnValue", "returnvalue");
    parts.push(h("div", { class: "grid grid-2" },
      section("Data", pre(detail.data ?? null, "wrap")),
      section("Options", pre(pick(detail, "opts", "options") ?? {}, "wrap"))));
    if (state === "completed" || returnValue !== undefined) parts.push(section("Return value", pre(returnValue ?? null, "wrap")));
    const logsTotal = pick(detail, "logs_total", "logsTotal") ?? logs.length;
    const logsTitle = logsTotal > logs.length
      ? `Logs (newest ${fmtNum(logs.length)} of ${fmtNum(logsTotal)})`
      : `Logs (${fmtNum(logs.length)})`;
    parts.push(section(logsTitle,
      logs.length
        ? h("ol", { class: "logs", id: "job-logs" }, logs.map((line) => h("li", { text: typeof line === "string" ? line : JSON.stringify(line) })))
        : h("p", { class: "muted", text: "No log lines." })));
    parts.push(section("Attempts", attemptsTable(detail)));
    parts.push(section("Timeline", timeline(detail)));
    // Keep the log and stack scroll positions across a refresh.
    const scrolls = [...body.querySelectorAll("pre, ol.logs")].map((el) => el.scrollTop);
    body.replaceChildren(...parts);
    [...body.querySelectorAll("pre, ol.logs")].forEach((el, i) => { if (scrolls[i]) el.scrollTop = scrolls[i]; });
  }

  async function refresh() {
    try {
      render(await api(`${apiQueue(queue)}/jobs/${encodeURIComponent(id)}`));
      await tree.refresh();
    } catch (error) {
      if (error.status === 404) {
        body._shown = null;
        fill(head, h("h1", { text: `Job ${id}` }), badge("gone", "critical"));
        body.replaceChildren(section("Not found", h("p", { class: "muted", text: `There is no job “${id}” in ${queue}: it may have been removed or cleaned.` })));
        for (const button of [retry, promote, remove]) button.disabled = true;
        edits.update(null);
        return;
      }
      throw error;
    }
  }

  return { refresh };
}
