// The REST API client (relative to the page's base path), the token prompt and
// log out, the confirm dialog and the live indicator.

import { $ } from "./ui.js";
import { currentInstance } from "./instance.js";

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
// One key per mount: two dashboards on one origin (/a/, /b/) keep their own tokens.
const TOKEN_KEY = `conveyor.token:${pageBase().pathname}`;

// ---------------------------------------------------------------- API client
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- the token
// The server's rules (conveyor/web/tokens.py): fetch() sends a header as Latin-1
// and throws beyond it, other clients send ASCII or UTF-8, so a token is printable
// ASCII; whitespace at either end is a copy-and-paste slip, refused, not trimmed.
export function tokenProblem(token) {
  if (!token.trim()) return "Enter the token.";
  if (token !== token.trim()) {
    return "The token starts or ends with a space or a line break: enter it without them.";
  }
  if (!/^[\x20-\x7e]*$/.test(token)) {
    return "A token holds only printable ASCII (letters, digits, punctuation, inner spaces): this one has other characters.";
  }
  return "";
}

let memoryToken = null; // where the token lives when the browser refuses localStorage

function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return memoryToken;
  }
}

function readToken() {
  const token = storedToken();
  if (token && tokenProblem(token)) {
    forgetToken(); // no server can have issued it, and fetch() may throw on it
    return null;
  }
  return token || null;
}

function storeToken(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    memoryToken = token;
  }
  showLogout();
  document.dispatchEvent(new Event("conveyor:token")); // session.js asks for the role again
}

function forgetToken() {
  memoryToken = null;
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing was stored there
  }
  showLogout();
}

function showLogout() {
  $("#logout").hidden = !storedToken();
}

export async function api(path, { method = "GET", body } = {}) {
  const token = readToken();
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = new URL(path, API_BASE);
  if (currentInstance() && !url.searchParams.has("instance")) url.searchParams.set("instance", currentInstance());
  let response;
  try {
    response = await fetch(url, {
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
    // Sent before a token was entered (several requests start at once): retry with it.
    if (readToken() === token) await askForToken(Boolean(token));
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
    const form = $("#token-form");
    const input = $("#token-input");
    const error = $("#token-error");
    error.textContent = "That token was refused.";
    error.hidden = !refused;
    input.value = "";
    const onCancel = (event) => event.preventDefault(); // the token is not optional
    const onSubmit = (event) => {
      const problem = tokenProblem(input.value);
      if (!problem) return; // the form closes the dialog
      event.preventDefault();
      error.textContent = problem;
      error.hidden = false;
      input.focus();
    };
    dialog.addEventListener("cancel", onCancel);
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener(
      "close",
      () => {
        dialog.removeEventListener("cancel", onCancel);
        form.removeEventListener("submit", onSubmit);
        // A dialog closed another way (a second Escape) leaves nothing to keep.
        if (!tokenProblem(input.value)) storeToken(input.value);
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

// Log out: forget this mount's token and ask for one again.
$("#logout").addEventListener("click", async () => {
  forgetToken();
  await askForToken(false);
  requestRefresh();
});
try {
  localStorage.removeItem("conveyor.token"); // the one key all mounts shared before
} catch {
  // storage disabled
}
showLogout();

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
