// The layouts of the snapshot (UMAP, t-SNE, grid): the list from the maps
// index, the switcher (a radio group: click, or arrow keys once focused), each
// layout's data fetched once and kept, and the status line saying what is shown.

import { setState } from "../state.js";
import { el } from "../ui.js";
import { layoutTitle, listLayouts, loadLayout } from "./data.js";

/**
 * `show(data, animate)` puts a layout's data on screen; `note` is appended to
 * the status line (which renderer, where that is worth saying).
 */
export function createLayouts(switcher, status, show, note = "") {
  let layouts = null; // [{name, ...}]
  let current = null; // name of the layout shown
  const cache = new Map(); // name -> layout data

  function mark(data) {
    current = data.name;
    for (const b of switcher.querySelectorAll("button")) {
      b.setAttribute("aria-checked", String(b.dataset.layout === data.name));
      b.tabIndex = b.dataset.layout === data.name ? 0 : -1;
    }
    const q = data.quality;
    const trust = q && Number.isFinite(q.trustworthiness) ? ` · trustworthiness ${q.trustworthiness.toFixed(2)}` : "";
    status.textContent = `${layoutTitle(data.name)} · ${data.count.toLocaleString()} images${trust}${note}`;
  }

  function onKey(e) {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
    e.preventDefault();
    const i = layouts.findIndex((l) => l.name === current);
    const step = e.key === "ArrowLeft" || e.key === "ArrowUp" ? -1 : 1;
    const next = layouts[(i + step + layouts.length) % layouts.length];
    setState({ layout: next.name });
    switcher.querySelector(`[data-layout="${next.name}"]`).focus();
  }

  return {
    /** Read the maps index and build the switcher; the index, or null (and the reason shown) on failure. */
    async open() {
      status.textContent = "Loading the map…";
      let index;
      try {
        index = await listLayouts();
      } catch (err) {
        status.textContent = err.message;
        return null;
      }
      layouts = index.layouts;
      switcher.replaceChildren(
        ...layouts.map((l) =>
          el("button", {
            type: "button",
            role: "radio",
            "aria-checked": "false",
            dataset: { layout: l.name },
            text: layoutTitle(l.name),
            onclick: () => setState({ layout: l.name }),
          }),
        ),
      );
      switcher.addEventListener("keydown", onKey);
      return index;
    },
    /** The layout to start on: `wanted` if there is one by that name, else UMAP, else the first. */
    initial(wanted) {
      const first = layouts.find((l) => l.name === wanted) || layouts.find((l) => l.name === "umap") || layouts[0];
      return first.name;
    },
    /** Whether `name` names a layout other than the one shown. */
    isOther(name) {
      return Boolean(name) && name !== current && layouts.some((l) => l.name === name);
    },
    /** Fetch (once) and show layout `name`. */
    async switchTo(name, animate = true) {
      status.textContent = `Loading ${layoutTitle(name)}…`;
      let data = cache.get(name);
      if (!data) {
        data = await loadLayout(name);
        cache.set(name, data);
      }
      show(data, animate);
      mark(data);
    },
  };
}
