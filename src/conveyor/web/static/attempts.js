// A job's attempts, one row each: when it started and ended, how long it took,
// how it ended and why it failed (the REST detail's attempt_timeline).

import { h, msOf, fmtNum, fmtDuration, timeEl, badge, table } from "./ui.js";

// Badge colours: a running attempt as an active job, a stalled one as a warning.
const KINDS = { running: "active", stalled: "warning" };

export function attemptsTable(detail) {
  const attempts = detail.attempt_timeline || [];
  const rows = attempts.map((attempt) => {
    const start = msOf(attempt, "started_on");
    const end = msOf(attempt, "finished_on");
    return h("tr", { dataset: { outcome: attempt.outcome } },
      h("td", { class: "num", text: fmtNum(attempt.attempt) }),
      h("td", { class: "nowrap" }, timeEl(start)),
      h("td", { class: "nowrap" }, timeEl(end)),
      h("td", { class: "nowrap", text: start && end ? fmtDuration(end - start) : "—" }),
      h("td", { class: "nowrap" }, badge(attempt.outcome, KINDS[attempt.outcome])),
      h("td", { class: "wrap" }, h("span", { class: "reason", text: attempt.error || "" })));
  });
  const box = table(["#", "Started", "Ended", "Took", "Outcome", "Error"], rows, "Not run yet.");
  box.id = "job-attempts";
  return box;
}
