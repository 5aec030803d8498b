// conveyor dashboard: a hash-routed single page over the REST API (/api/v1).
// Vanilla JS modules, no build step. Every string from the API reaches the page
// as a text node or an attribute value, never as HTML.

import { $, refreshTimes, notFound } from "./ui.js";
import { setLive, showBanner } from "./api.js";
import { overviewView } from "./overview.js";
import { queueView, workersView } from "./queue.js";
import { schedulersView } from "./schedulers.js";
import { jobView } from "./job.js";
import "./session.js";

const POLL_MS = 2000;

// ---------------------------------------------------------------- router
function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [pathPart, queryPart = ""] = raw.split("?");
  const query = new URLSearchParams(queryPart);
  let parts;
  try {
    parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    return { view: "missing" };
  }
  if (parts.length === 0) return { view: "overview" };
  if (parts[0] === "queues" && parts.length >= 2) {
    const queue = parts[1];
    if (parts.length === 2) {
      return { view: "queue", queue, state: query.get("state") || "waiting", page: Number(query.get("page")) || 1 };
    }
    if (parts[2] === "jobs" && parts.length >= 4) return { view: "job", queue, id: parts.slice(3).join("/") };
    if (parts[2] === "schedulers" && parts.length === 3) return { view: "schedulers", queue };
    if (parts[2] === "workers" && parts.length === 3) return { view: "workers", queue };
  }
  return { view: "missing" };
}

const VIEWS = {
  overview: overviewView,
  queue: queueView,
  job: jobView,
  schedulers: schedulersView,
  workers: workersView,
  missing: (root) => {
    notFound(root, "Page not found", "This address does not match any page of the dashboard.");
    return { refresh: async () => undefined };
  },
};

// ---------------------------------------------------------------- polling
let current = null;
let timer = null;
let inFlight = false;
let again = false;

function navigate() {
  const route = parseRoute();
  const root = $("#app");
  root.replaceChildren();
  showBanner("");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === route.view);
  }
  current = VIEWS[route.view](root, route);
  window.scrollTo(0, 0);
  refreshSoon();
}

function refreshSoon() {
  clearTimeout(timer);
  if (inFlight) {
    again = true;
    return;
  }
  timer = setTimeout(poll, 0);
}

async function poll() {
  clearTimeout(timer);
  if (document.hidden) {
    setLive("paused");
    return; // resumed by visibilitychange
  }
  inFlight = true;
  const view = current;
  try {
    await view.refresh();
    if (view === current) {
      refreshTimes();
      setLive(document.hidden ? "paused" : "live");
      showBanner("");
    }
  } catch (error) {
    if (view === current) {
      setLive("error");
      showBanner(error.status === 0 ? "Cannot reach the conveyor server. Retrying…" : `Error: ${error.message}`);
    }
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      timer = setTimeout(poll, 0);
    } else if (!document.hidden) {
      timer = setTimeout(poll, POLL_MS);
    }
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    setLive("paused");
  } else {
    refreshSoon();
  }
});

document.addEventListener("conveyor:refresh", refreshSoon);
window.addEventListener("hashchange", navigate);
navigate();
