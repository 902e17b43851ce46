// The read key (PIXSCAPE_READ_KEY), for a server that asks for one.
//
// Asked for on the first 401, kept for this tab's session (sessionStorage) and
// sent as X-API-Key by api.js. An <img> cannot send a header, so the same key
// also goes into a same-site session cookie: the server takes that cookie for
// GET requests only (thumbnails, atlas sheets, files), never for admin routes.

import { el } from "./ui.js";

const STORE = "pixscape.key";
const COOKIE = "pixscape_key";

function readCookie() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === COOKIE && rest.length) {
      try {
        return decodeURIComponent(rest.join("="));
      } catch {
        return null;
      }
    }
  }
  return null;
}

function writeCookie(key) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  // Percent-encoded (the server decodes it): a key may hold ';' or spaces.
  document.cookie = `${COOKIE}=${encodeURIComponent(key)}; Path=/; SameSite=Strict${secure}`;
}

function stored() {
  try {
    return sessionStorage.getItem(STORE);
  } catch {
    return null; // storage switched off: the key lives in this page only
  }
}

let current = stored() || readCookie() || null;
if (current) writeCookie(current); // a reload keeps <img> loads working

/** The key to send, or null when none has been given. */
export const currentKey = () => current;

function remember(key) {
  current = key;
  try {
    sessionStorage.setItem(STORE, key);
  } catch {
    /* see stored() */
  }
  writeCookie(key);
}

let asking = null; // one dialog for every request that met a 401 meanwhile

/**
 * Ask for the key in a small modal dialog. Resolves with the key entered, or
 * null when the person cancels. `rejected` says the key in use was refused.
 */
export function askForKey(rejected) {
  if (!asking) {
    asking = showDialog(rejected).finally(() => {
      asking = null;
    });
  }
  return asking;
}

function showDialog(rejected) {
  return new Promise((resolve) => {
    const input = el("input", {
      id: "key-input",
      type: "password",
      name: "key",
      required: true,
      autocomplete: "current-password",
      spellcheck: "false",
      "aria-describedby": "key-help",
    });
    const error = el("p", {
      class: "key-error",
      id: "key-error",
      role: "alert",
      text: rejected ? "That key was not accepted. Check it and try again." : "",
      hidden: !rejected,
    });
    const cancel = el("button", { type: "button", class: "button", value: "cancel", text: "Cancel" });
    const form = el(
      "form",
      { method: "dialog" },
      el("h2", { id: "key-title", text: "This collection needs a key" }),
      el("p", {
        id: "key-help",
        class: "key-help",
        text: "Enter the key you were given for this pixscape server. It is kept in this tab until you close it.",
      }),
      el("label", { for: "key-input", text: "Key" }),
      input,
      error,
      el(
        "div",
        { class: "key-actions" },
        cancel,
        el("button", { type: "submit", class: "button primary", text: "Open the collection" }),
      ),
    );
    const dialog = el("dialog", { class: "key-dialog", id: "key-dialog", "aria-labelledby": "key-title" }, form);
    let answer = null;
    form.addEventListener("submit", () => {
      answer = input.value.trim() || null;
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (answer) remember(answer);
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
