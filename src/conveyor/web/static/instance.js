// Which Redis instance the page shows (several in one dashboard: session.js
// offers them). Kept per mount, like the token; api.js adds it to every call.

const KEY = `conveyor.instance:${new URL(".", document.baseURI).pathname}`;
let memory = null; // where the choice lives when the browser refuses localStorage

export function currentInstance() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return memory;
  }
}

export function chooseInstance(name) {
  memory = name;
  try {
    if (name) localStorage.setItem(KEY, name);
    else localStorage.removeItem(KEY);
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
}
