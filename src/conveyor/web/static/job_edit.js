// Adding, duplicating, editing and cancelling jobs: the "Add job" button of a
// queue page, the job page's Duplicate / Edit data / Cancel buttons, and the
// form they share. JSON is checked here first; the server's refusals (the
// library's ValidationError messages) are shown as they come.

import { h, jobHref, apiQueue, fmtJson } from "./ui.js";
import { api, requestRefresh } from "./api.js";

// JSON.parse with an empty text as `empty`; throws an Error naming the field.
function parseJson(label, text, empty) {
  if (!text.trim()) return empty;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${label} is not valid JSON: ${error.message}`);
  }
}

// A modal form: an optional name, a data editor, an optional options editor.
// `submit(values)` returns a promise; a rejection's message stays in the form.
function openForm({ title, name, data, options, okLabel, submit }) {
  const field = (label, input) => h("div", { class: "form-field" }, h("label", { for: input.id, text: label }), input);
  const nameInput = name === undefined ? null
    : h("input", { type: "text", id: "job-form-name", name: "name", required: true, autocomplete: "off" });
  const dataInput = h("textarea", { id: "job-form-data", name: "data", rows: 8, spellcheck: "false", class: "json" });
  const optionsInput = options === undefined ? null
    : h("textarea", { id: "job-form-options", name: "options", rows: 4, spellcheck: "false", class: "json",
      placeholder: '{"delay": 5000, "priority": 1, "attempts": 3}' });
  const problem = h("p", { class: "error-text", id: "job-form-error", role: "alert", hidden: true });
  const ok = h("button", { class: "btn btn-primary", type: "submit", id: "job-form-ok", text: okLabel });
  const cancel = h("button", { class: "btn", type: "button", text: "Cancel" });
  const form = h("form", { method: "dialog" },
    h("h2", { text: title }),
    nameInput ? field("Name", nameInput) : null,
    field("Data (JSON)", dataInput),
    optionsInput ? field("Options (JSON: delay, priority, attempts, backoff, job_id, …)", optionsInput) : null,
    problem,
    h("div", { class: "dialog-actions" }, cancel, ok));
  const dialog = h("dialog", { class: "dialog dialog-wide", id: "job-form" }, form);
  if (nameInput) nameInput.value = name;
  dataInput.value = data;
  if (optionsInput) optionsInput.value = options;
  const show = (text) => {
    problem.textContent = text;
    problem.hidden = !text;
  };
  // Checked as one types, so a bad bracket is seen before sending.
  for (const [input, label] of [[dataInput, "Data"], [optionsInput, "Options"]]) {
    input?.addEventListener("input", () => {
      try {
        parseJson(label, input.value, null);
        show("");
      } catch (error) {
        show(error.message);
      }
    });
  }
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let values;
    try {
      values = {
        name: nameInput ? nameInput.value : undefined,
        data: parseJson("Data", dataInput.value, null),
        options: optionsInput ? parseJson("Options", optionsInput.value, {}) : undefined,
      };
    } catch (error) {
      show(error.message);
      return;
    }
    ok.disabled = true;
    try {
      await submit(values);
      dialog.close();
    } catch (error) {
      show(error.message);
    } finally {
      ok.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  (nameInput || dataInput).focus();
}

// The queue page's "Add job" button: the new job's page opens once it is added.
export function addJobButton(queue) {
  const button = h("button", { class: "btn btn-primary", type: "button", id: "add-job", "data-admin": true, text: "Add job" });
  button.addEventListener("click", () => openForm({
    title: `Add a job to “${queue}”`, name: "", data: "{}", options: "{}", okLabel: "Add",
    submit: async ({ name, data, options }) => {
      const job = await api(`${apiQueue(queue)}/jobs`, { method: "POST", body: { name, data, options } });
      location.hash = jobHref(queue, job.id);
    },
  }));
  return button;
}

// The job page's buttons; update(detail) enables those that fit the job's state.
export function jobEditActions(queue, id, say) {
  const path = `${apiQueue(queue)}/jobs/${encodeURIComponent(id)}`;
  const duplicate = h("button", { class: "btn", type: "button", id: "job-duplicate", "data-admin": true, disabled: true, text: "Run again" });
  const edit = h("button", { class: "btn", type: "button", id: "job-edit", "data-admin": true, disabled: true, text: "Edit data" });
  const cancel = h("button", { class: "btn btn-danger", type: "button", id: "job-cancel", "data-admin": true, disabled: true, text: "Cancel" });
  let detail = null;

  duplicate.title = "Add a new job with the same name, data and options";
  duplicate.addEventListener("click", async () => {
    duplicate.disabled = true;
    try {
      const copy = await api(`${path}/duplicate`, { method: "POST" });
      location.hash = jobHref(queue, copy.id);
    } catch (error) {
      say(error.message, true);
      duplicate.disabled = false;
    }
  });
  edit.addEventListener("click", () => openForm({
    title: `Edit the data of job ${id}`, data: fmtJson(detail ? detail.data ?? null : null), okLabel: "Save",
    submit: async ({ data }) => {
      await api(`${path}/data`, { method: "PUT", body: { data } });
      say("Data saved.");
      requestRefresh();
    },
  }));
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api(`${path}/cancel`, { method: "POST", body: { reason: "cancelled from the dashboard" } });
      say("Cancel sent: the worker stops the job.");
      requestRefresh();
    } catch (error) {
      say(error.message, true);
      cancel.disabled = false;
    }
  });

  function update(value) {
    detail = value;
    const state = value ? value.state : null;
    duplicate.disabled = !value;
    edit.disabled = !["waiting", "delayed", "prioritized", "waiting-children"].includes(state);
    edit.title = edit.disabled ? "Only a job that has not started can be edited" : "";
    cancel.disabled = state !== "active";
    cancel.title = cancel.disabled ? "Only a running job can be cancelled" : "Stop the running job; it fails for good";
  }

  return { buttons: [duplicate, edit, cancel], update };
}
