// Page state lives in the URL hash, so a link reproduces the view, the
// selection and the path. Camera moves replace the entry; view changes push one.

const listeners = new Set();
let current = parse(location.hash);

function parse(hash) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const out = {};
  for (const [k, v] of p) out[k] = v;
  return out;
}

function serialise(state) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (v === undefined || v === null || v === "") continue;
    p.set(k, String(v));
  }
  return p.toString().replaceAll("%2C", ",");
}

export function getState() {
  return { ...current };
}

/** Merge `patch` into the state (null deletes a key) and write the URL. */
export function setState(patch, { push = false, silent = false } = {}) {
  const next = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null || v === undefined || v === "") delete next[k];
    else next[k] = String(v);
  }
  const before = current;
  current = next;
  const url = `#${serialise(next)}`;
  if (url !== location.hash) history[push ? "pushState" : "replaceState"](null, "", url);
  if (!silent) for (const fn of listeners) fn(current, before);
}

export function onState(fn) {
  listeners.add(fn);
}

window.addEventListener("hashchange", () => {
  const before = current;
  current = parse(location.hash);
  for (const fn of listeners) fn(current, before);
});

export const ids = (s) =>
  (s || "")
    .split(",")
    .map((x) => Number.parseInt(x, 10))
    .filter((x) => Number.isInteger(x) && x >= 0);
