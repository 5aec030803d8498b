// A queue's failure rate and wait/processing time (p50/p95) per minute, as
// line charts in inline SVG; colours come from theme.css's CSS variables.

import { h, svgEl, msOf, fmtDuration, fmtPercent, apiQueue, changed } from "./ui.js";
import { api } from "./api.js";
import { minuteLabel } from "./chart.js";

const MINUTES = 60;
const TIMINGS = [
  ["wait_p50_ms", "wait-p50", "wait p50"],
  ["wait_p95_ms", "wait-p95", "wait p95"],
  ["processing_p50_ms", "proc-p50", "processing p50"],
  ["processing_p95_ms", "proc-p95", "processing p95"],
];

function niceCeil(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

// One chart: `lines` = [[field, class, label]]; a minute without a value breaks
// the line; every value is a point with its tooltip.
function lineChart(points, lines, { max, format, label }) {
  const width = 560;
  const height = 150;
  const pad = { left: 52, right: 8, top: 8, bottom: 20 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const top = max ?? niceCeil(Math.max(0, ...points.flatMap((p) => lines.map(([f]) => p[f] ?? 0))));
  const x = (i) => pad.left + (points.length > 1 ? (i / (points.length - 1)) * plotW : plotW / 2);
  const y = (v) => pad.top + plotH - (Math.min(v, top) / top) * plotH;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  for (const v of [0, top / 2, top]) {
    svg.append(
      svgEl("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }),
      svgEl("text", { class: "axis", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const first = points.length ? msOf(points[0], "at") : undefined;
  svg.append(
    svgEl("text", { class: "axis", x: pad.left, y: height - 5 }, first ? minuteLabel(first) : ""),
    svgEl("text", { class: "axis", x: width - pad.right, y: height - 5, "text-anchor": "end" }, minuteLabel(Date.now())));
  let drawn = 0;
  for (const [field, cls, name] of lines) {
    let d = "";
    let pen = false;
    const dots = [];
    points.forEach((point, i) => {
      const value = point[field];
      if (typeof value !== "number") {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(value).toFixed(1)}`;
      pen = true;
      const at = msOf(point, "at");
      dots.push(svgEl("circle", { class: `point ${cls}`, cx: x(i), cy: y(value), r: 2.2 },
        svgEl("title", null, `${at ? minuteLabel(at) : ""} — ${name} ${format(value)}`)));
    });
    if (d) svg.append(svgEl("path", { class: `series ${cls}`, d }));
    svg.append(...dots);
    drawn += dots.length;
  }
  if (!drawn) {
    svg.append(svgEl("text", { class: "axis", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" },
      "No jobs finished in this period"));
  }
  return svg;
}

function legend(lines) {
  return h("div", { class: "chart-legend" },
    lines.map(([, cls, name]) => h("span", null, h("span", { class: `swatch ${cls}` }), name)));
}

// A card with both charts; `load()` fetches the last hour and redraws on change.
export function seriesCard(queue) {
  const rate = h("div", { class: "chart", id: "failure-rate-chart" });
  const timings = h("div", { class: "chart", id: "timings-chart" });
  const el = h("section", { class: "card" },
    h("div", { class: "grid grid-2" },
      h("div", null, h("h3", { text: `Failure rate, last ${MINUTES} minutes` }), rate,
        legend([[null, "rate", "failed / finished, per minute"]])),
      h("div", null, h("h3", { text: `Wait and processing time, last ${MINUTES} minutes` }), timings,
        legend(TIMINGS))));

  async function load() {
    const data = await api(`${apiQueue(queue)}/series?minutes=${MINUTES}`);
    const points = (data && data.minutes) || [];
    if (!changed(el, points)) return;
    rate.replaceChildren(lineChart(points, [["failure_rate", "rate", "failure rate"]],
      { max: 1, format: fmtPercent, label: "Failure rate per minute" }));
    timings.replaceChildren(lineChart(points, TIMINGS,
      { format: fmtDuration, label: "Wait and processing time p50 and p95 per minute" }));
  }

  return { el, load };
}
