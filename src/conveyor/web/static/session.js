// Who is looking and at which Redis: the role (GET whoami) decides whether the
// controls marked data-admin show (app.css hides them until the role is admin),
// and with more than one instance (GET instances) a switcher picks the Redis.

import { h, $ } from "./ui.js";
import { api, requestRefresh } from "./api.js";
import { currentInstance, chooseInstance } from "./instance.js";

async function learnRole() {
  delete document.documentElement.dataset.role; // hidden while unknown
  try {
    const { role } = await api("whoami");
    document.documentElement.dataset.role = role;
  } catch {
    // the poll shows the error; the controls stay hidden
  }
}

function switchTo(name) {
  chooseInstance(name);
  if (location.hash && location.hash !== "#/") location.hash = "#/"; // its queues differ
  requestRefresh();
}

async function offerInstances() {
  let instances;
  try {
    instances = await api("instances");
  } catch {
    return;
  }
  const names = instances.map((instance) => instance.name);
  const chosen = currentInstance();
  if (chosen && !names.includes(chosen)) switchTo(null); // gone since it was chosen
  document.documentElement.dataset.instances = names.length;
  if (names.length < 2) return;
  const select = h("select", { id: "instance", class: "instance-switch", "aria-label": "Redis instance" },
    instances.map((instance) => h("option", { value: instance.name, text: instance.name, title: `prefix ${instance.prefix}` })));
  select.value = names.includes(chosen) ? chosen : names[0];
  select.addEventListener("change", () => switchTo(select.value));
  $("#live").before(select);
}

// A tab opened in the background asks nothing until it is looked at, as app.js polls.
function start() {
  if (document.hidden) {
    document.addEventListener("visibilitychange", start, { once: true });
    return;
  }
  document.addEventListener("conveyor:token", learnRole);
  learnRole();
  offerInstances();
}
start();
