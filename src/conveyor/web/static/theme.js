// Dark or light: the system's choice (prefers-color-scheme) until the toggle in
// the top bar picks one, kept in localStorage. Sets <html data-theme>, which
// theme.css reads; the charts take their colours from its CSS variables.

(() => {
  "use strict";

  const KEY = "conveyor.theme";
  const system = window.matchMedia("(prefers-color-scheme: dark)");

  function chosen() {
    try {
      const value = localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch {
      return null; // storage disabled: follow the system
    }
  }

  function apply() {
    const theme = chosen() || (system.matches ? "dark" : "light");
    document.documentElement.dataset.theme = theme;
    const button = document.getElementById("theme-toggle");
    if (button) {
      const next = theme === "dark" ? "light" : "dark";
      button.textContent = theme === "dark" ? "☀ Light" : "☾ Dark";
      button.title = `Switch to the ${next} theme (remembered in this browser)`;
      button.setAttribute("aria-pressed", String(theme === "dark"));
    }
  }

  // A classic script in <head>: the theme is set before the first paint (no flash
  // of light for a dark system); the button is wired once the body is parsed.
  apply();
  system.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", () => {
    apply();
    document.getElementById("theme-toggle").addEventListener("click", () => {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      try {
        localStorage.setItem(KEY, next);
      } catch {
        // not kept: this page only
      }
      apply();
    });
  });
})();
