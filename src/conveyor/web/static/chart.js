// The throughput chart: per-minute bars drawn as inline SVG, coloured by
// theme.css's variables (classes, not fixed colours: the dark theme swaps them).

import { h, svgEl, pick, msOf, fmtNum, apiQueue } from "./ui.js";
import { api } from "./api.js";

// ---------------------------------------------------------------- chart
// Stacked per-minute bars of completed (bottom) and failed (top) jobs.
function niceMax(value) {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
export function minuteLabel(ms) {
  return clock.format(new Date(ms));
}

function drawChart(box) {
  const points = box._points || [];
  const width = Math.max(260, Math.round(box.clientWidth || 600));
  const height = 130;
  const pad = { left: 34, right: 6, top: 8, bottom: 20 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const totals = points.map((p) => (p.completed || 0) + (p.failed || 0));
  const max = niceMax(Math.max(0, ...totals));
  const y = (v) => pad.top + plotH - (v / max) * plotH;
  const svg = svgEl("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "Jobs completed and failed per minute over the last hour",
  });
  for (const v of [0, max / 2, max]) {
    svg.append(
      svgEl("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid-line", "stroke-width": 1 }),
      svgEl("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmtNum(v)),
    );
  }
  const n = Math.max(points.length, 1);
  const slot = plotW / n;
  const barW = Math.max(1, slot - (slot > 4 ? 1.5 : 0.5));
  points.forEach((point, i) => {
    const completed = point.completed || 0;
    const failed = point.failed || 0;
    const x = pad.left + i * slot;
    const at = msOf(point, "at");
    const group = svgEl("g", { class: "bar" });
    group.append(
      svgEl("title", null, `${at ? minuteLabel(at) : ""} — ${fmtNum(completed)} completed, ${fmtNum(failed)} failed`),
      // An invisible full-height rect so the tooltip works on empty minutes too.
      svgEl("rect", { x, y: pad.top, width: slot, height: plotH, fill: "transparent" }),
    );
    if (completed) {
      group.append(svgEl("rect", { x, y: y(completed), width: barW, height: y(0) - y(completed), class: "completed" }));
    }
    if (failed) {
      group.append(
        svgEl("rect", { x, y: y(completed + failed), width: barW, height: y(completed) - y(completed + failed), class: "failed" }),
      );
    }
    svg.append(group);
  });
  const first = points.length ? msOf(points[0], "at") : undefined;
  const labels = [
    [pad.left, "start", first ? minuteLabel(first) : `−${points.length || 60} min`],
    [width - pad.right, "end", "now"],
  ];
  for (const [x, anchor, text] of labels) {
    svg.append(svgEl("text", { x, y: height - 5, "text-anchor": anchor, class: "axis" }, text));
  }
  if (!totals.some((t) => t > 0)) {
    svg.append(
      svgEl("text", { x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle", class: "axis" },
        "No jobs finished in this period"),
    );
  }
  box.replaceChildren(svg);
}

export function chartBox() {
  const box = h("div", { class: "chart" });
  box._points = null;
  return box;
}

function chartLegend(points) {
  const completed = points.reduce((sum, p) => sum + (p.completed || 0), 0);
  const failed = points.reduce((sum, p) => sum + (p.failed || 0), 0);
  return h("div", { class: "chart-legend" },
    h("span", null, h("span", { class: "swatch completed" }), `completed ${fmtNum(completed)}`),
    h("span", null, h("span", { class: "swatch failed" }), `failed ${fmtNum(failed)}`),
    h("span", null, `last ${points.length || 60} min`));
}

export async function loadChart(queue, box, legend) {
  const data = await api(`${apiQueue(queue)}/throughput?minutes=60`);
  box._points = Array.isArray(data) ? data : pick(data, "minutes", "points") || [];
  drawChart(box);
  if (legend) legend.replaceChildren(chartLegend(box._points));
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const box of document.querySelectorAll(".chart")) if (box._points) drawChart(box);
  }, 150);
});
