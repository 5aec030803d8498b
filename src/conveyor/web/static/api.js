// The REST API client (relative to the page's base path), the token prompt,
// the confirm dialog and the live indicator.

import { $ } from "./ui.js";

const TOKEN_KEY = "conveyor.token";

// ---------------------------------------------------------------- base path
// The app may be mounted under a prefix (/jobs/): API URLs are resolved
// against the page's own directory, or against <base href> if the server set one.
function pageBase() {
  if (document.querySelector("base[href]")) return new URL(".", document.baseURI);
  const path = location.pathname;
  if (path.endsWith("/")) return new URL(path, location.origin);
  const last = path.slice(path.lastIndexOf("/") + 1);
  return new URL(last.includes(".") ? path.slice(0, path.lastIndexOf("/") + 1) : `${path}/`, location.origin);
}
const API_BASE = new URL("api/v1/", pageBase());

// ---------------------------------------------------------------- API client
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    memoryToken = token;
  }
}
let memoryToken = null;

export async function api(path, { method = "GET", body } = {}) {
  const token = readToken() || memoryToken;
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "Cannot reach the conveyor server.");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (response.status === 401) {
    await askForToken(Boolean(token));
    return api(path, { method, body });
  }
  if (!response.ok || (payload && payload.success === false)) {
    const error = (payload && payload.error) || {};
    const detail = payload && typeof payload.detail === "string" ? payload.detail : "";
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || detail || `${response.status} ${response.statusText}`,
    );
  }
  return payload && typeof payload === "object" && "data" in payload ? payload.data : payload;
}

// One prompt at a time, however many requests were refused meanwhile.
let tokenPrompt = null;
function askForToken(refused) {
  if (tokenPrompt) return tokenPrompt;
  setLive("locked");
  tokenPrompt = new Promise((resolve) => {
    const dialog = $("#token-dialog");
    const input = $("#token-input");
    $("#token-error").hidden = !refused;
    input.value = "";
    const onCancel = (event) => event.preventDefault(); // the token is not optional
    dialog.addEventListener("cancel", onCancel);
    dialog.addEventListener(
      "close",
      () => {
        dialog.removeEventListener("cancel", onCancel);
        storeToken(input.value.trim());
        tokenPrompt = null;
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
  return tokenPrompt;
}

export function confirmAction(title, text, okLabel, { danger = true } = {}) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  const ok = $("#confirm-ok");
  ok.textContent = okLabel;
  ok.className = `btn ${danger ? "btn-danger" : "btn-primary"}`;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("#confirm-cancel").focus();
  });
}

// ---------------------------------------------------------------- live status
export function setLive(state) {
  const live = $("#live");
  live.classList.toggle("paused", state === "paused" || state === "locked");
  live.classList.toggle("error", state === "error");
  $("#live-text").textContent =
    { live: "live", paused: "paused", error: "offline", locked: "locked" }[state] || state;
}

export function showBanner(message) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.hidden = !message;
}

// Views ask for a poll right away after an action; app.js does the polling.
export function requestRefresh() {
  document.dispatchEvent(new Event("conveyor:refresh"));
}
