// A job's flow as a tree on its page: its parents up to the root, the job, and
// its children (a page at a time) with their states and the values the job
// reads from them (GET queues/Q/tree/ID). Hidden for a job outside a flow.

import { h, fill, fmtNum, badge, jobHref, apiQueue, changed } from "./ui.js";
import { api } from "./api.js";

const PAGE = 50;

function shortJson(value) {
  const text = JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function nodeEl(node, current) {
  const many = node.children_total;
  return h("div", { class: `node${current ? " current" : ""}`, dataset: { id: node.id, queue: node.queue } },
    current
      ? h("span", { class: "node-name", text: `${node.name ?? "(gone)"} #${node.id}` })
      : h("a", { class: "node-name", href: jobHref(node.queue, node.id), text: `${node.name ?? "(gone)"} #${node.id}` }),
    h("span", { class: "muted", text: node.queue }),
    badge(node.state || "gone", node.state || "critical"),
    many && !current ? h("span", { class: "muted", text: `${fmtNum(many)} ${many === 1 ? "child" : "children"}` }) : null,
    node.value !== null && node.value !== undefined
      ? h("span", { class: "node-value", title: "The value its parent reads", text: `→ ${shortJson(node.value)}` }) : null,
    node.ignored_failure ? h("span", { class: "error-text", text: `ignored failure: ${node.ignored_failure}` }) : null);
}

export function flowTree(queue, id) {
  const list = h("div");
  const pager = h("div", { class: "pager" });
  const el = h("section", { class: "card", id: "flow-tree", hidden: true }, h("h2", { text: "Flow" }), list, pager);
  let start = 0;

  function render(tree) {
    const children = tree.children.map((child) => h("li", null, nodeEl(child, false)));
    let inner = h("li", null, nodeEl(tree.job, true), children.length ? h("ul", null, children) : null);
    for (const parent of [...tree.ancestors].reverse()) {
      inner = h("li", null, nodeEl(parent, false), h("ul", null, inner));
    }
    fill(list, h("ul", { class: "tree" }, inner));
    const total = tree.children_total;
    if (total <= PAGE) {
      pager.replaceChildren();
      return;
    }
    const prev = h("button", { class: "btn", type: "button", text: "‹ Previous", disabled: start === 0 });
    const next = h("button", { class: "btn", type: "button", text: "Next ›", disabled: start + PAGE >= total });
    prev.addEventListener("click", () => { start = Math.max(0, start - PAGE); refresh(); });
    next.addEventListener("click", () => { start += PAGE; refresh(); });
    fill(pager, h("span", { class: "muted", text: `children ${fmtNum(start + 1)}–${fmtNum(Math.min(start + PAGE, total))} of ${fmtNum(total)}` }),
      h("span", { class: "actions" }, prev, next));
  }

  async function refresh() {
    let tree;
    try {
      tree = await api(`${apiQueue(queue)}/tree/${encodeURIComponent(id)}?start=${start}&count=${PAGE}`);
    } catch (error) {
      if (error.status === 404) {
        el.hidden = true;
        return;
      }
      throw error;
    }
    el.hidden = !tree.ancestors.length && !tree.children_total;
    if (!el.hidden && changed(list, [tree, start])) render(tree);
  }

  return { el, refresh };
}
