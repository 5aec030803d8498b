// Acting on a selection of a queue page's jobs: a checkbox per row (and one for
// the page), Retry / Remove / Promote / Cancel for the selected in one request that
// answers per id, and "Promote all" on the delayed tab.

import { h, fmtNum, apiQueue, stateLabel } from "./ui.js";
import { api, confirmAction, requestRefresh } from "./api.js";

// Which bulk actions fit the jobs of a state.
const ACTIONS = {
  retry: ["failed", "completed"],
  promote: ["delayed"],
  remove: ["waiting", "delayed", "prioritized", "completed", "failed", "waiting-children"],
  cancel: ["active"],
};
const LABELS = { retry: "Retry", promote: "Promote", remove: "Remove", cancel: "Cancel" };
const DONE = { retry: "Retried", promote: "Promoted", remove: "Removed", cancel: "Cancelled" };
// Asked first: what cannot be undone.
const CONFIRM = {
  remove: (n, state, queue) => [`Remove ${n} job(s)?`, `The selected ${stateLabel(state)} job(s) of “${queue}” will be deleted.`],
  cancel: (n, state, queue) => [`Cancel ${n} running job(s)?`, `Their workers stop them and they fail for good in “${queue}”.`],
};

export function bulkSelection(queue, state, say) {
  const selected = new Set();
  let shown = []; // the ids of the page's rows
  const count = h("span", { class: "muted", id: "bulk-count" });
  const buttons = Object.keys(ACTIONS).filter((action) => ACTIONS[action].includes(state)).map((action) =>
    h("button", { class: `btn${CONFIRM[action] ? " btn-danger" : ""}`, type: "button", id: `bulk-${action}`,
      "data-admin": true, disabled: true, text: `${LABELS[action]} selected`, onclick: () => run(action) }));
  const pageBox = h("input", { type: "checkbox", id: "bulk-page", "aria-label": "Select every job of this page", "data-admin": true });
  pageBox.addEventListener("change", () => {
    for (const id of shown) {
      if (pageBox.checked) selected.add(id);
      else selected.delete(id);
    }
    for (const box of document.querySelectorAll("input.bulk-one")) box.checked = pageBox.checked;
    sync();
  });
  const promoteAll = state === "delayed"
    ? h("button", { class: "btn", type: "button", id: "promote-all", "data-admin": true, text: "Promote all", onclick: promoteEvery })
    : null;

  function sync() {
    for (const id of [...selected]) if (!shown.includes(id)) selected.delete(id); // gone from the page
    count.textContent = selected.size ? `${fmtNum(selected.size)} selected` : "";
    for (const button of buttons) button.disabled = !selected.size;
    pageBox.checked = shown.length > 0 && shown.every((id) => selected.has(id));
  }

  async function run(action) {
    const ids = [...selected];
    if (CONFIRM[action]) {
      const [title, text] = CONFIRM[action](fmtNum(ids.length), state, queue);
      if (!(await confirmAction(title, text, LABELS[action]))) return;
    }
    for (const button of buttons) button.disabled = true;
    try {
      const answer = await api(`${apiQueue(queue)}/jobs/bulk`, { method: "POST", body: { action, ids } });
      const refused = answer.results.filter((result) => !result.ok);
      const why = refused.slice(0, 3).map((result) => `${result.id}: ${result.error.message}`).join("; ");
      say(`${DONE[action]} ${fmtNum(answer.done)} of ${fmtNum(ids.length)} job(s).${refused.length ? ` Refused: ${why}` : ""}`,
        refused.length > 0);
      selected.clear();
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    } finally {
      sync();
    }
  }

  async function promoteEvery() {
    const ok = await confirmAction("Promote every delayed job?", `Every delayed job of “${queue}” becomes ready now.`,
      "Promote all", { danger: false });
    if (!ok) return;
    try {
      const answer = await api(`${apiQueue(queue)}/promote`, { method: "POST" });
      say(`Promoted ${fmtNum(answer.promoted)} job(s).`);
      requestRefresh();
    } catch (error) {
      say(error.message, true);
    }
  }

  // The table's first column: a checkbox per job, kept checked across refreshes.
  const column = [pageBox, (job) => {
    const id = String(job.id);
    const box = h("input", { type: "checkbox", class: "bulk-one", "aria-label": `Select job ${id}`, "data-admin": true,
      checked: selected.has(id) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(id);
      else selected.delete(id);
      sync();
    });
    return h("td", { class: "select" }, box);
  }];

  function update(jobs) {
    shown = jobs.map((job) => String(job.id));
    sync();
  }

  return { column, controls: buttons.length || promoteAll ? [count, ...buttons, promoteAll] : [], update };
}
