// The image panel: the image, its metadata, its nearest neighbours, and actions.

import { api } from "./api.js";
import { app } from "./app.js";
import { getState, setState } from "./state.js";
import { $, altText, el, fileName, imageCard, showError } from "./ui.js";

const panel = $("#panel");
const body = $("#panel-body");
const NEIGHBOURS = 12;
let openId = null;
let returnFocus = null;

export function initPanel() {
  $("#panel-close").addEventListener("click", () => setState({ sel: null }));
}

export function applyPanelState(state) {
  const id = state.sel !== undefined ? Number(state.sel) : null;
  if (id === null || !Number.isInteger(id)) closePanel();
  else if (id !== openId) openPanel(id, { write: false });
}

const formatBytes = (n) =>
  n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(0)} KB` : `${(n / (1 << 20)).toFixed(1)} MB`;

export async function openPanel(id, { write = true } = {}) {
  if (write) {
    setState({ sel: id });
    return; // the state listener calls back with write=false
  }
  if (openId === null) returnFocus = document.activeElement;
  openId = id;
  panel.hidden = false;
  document.body.classList.add("panel-open");
  body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  const error = el("div", { class: "alert", role: "alert", hidden: true });
  try {
    const [info, similar] = await Promise.all([api.image(id), api.similar(id, NEIGHBOURS)]);
    if (openId !== id) return;
    $("#panel-title").textContent = fileName(info.path);
    const actions = el(
      "div",
      { class: "panel-actions" },
      el("button", { type: "button", class: "button primary", text: "More like this", onclick: () => setState({ v: "search", like: id, sel: null }, { push: true }) }),
      getState().v !== "map"
        ? el("button", { type: "button", class: "button", text: "Show on map", onclick: () => setState({ v: "map", sel: id, fly: 1 }, { push: true }) })
        : null,
      el("button", { type: "button", class: "button", text: "Start path here", onclick: () => app.setPathEnd("from", info) }),
      el("button", { type: "button", class: "button", text: "End path here", onclick: () => app.setPathEnd("to", info) }),
      el("a", { class: "button", href: info.image_url, target: "_blank", rel: "noopener", text: "Open original" }),
    );
    const meta = el(
      "dl",
      { class: "meta" },
      el("dt", { text: "File" }),
      el("dd", { text: info.path }),
      info.label ? [el("dt", { text: "Folder" }), el("dd", { text: info.label })] : null,
      el("dt", { text: "Size" }),
      el("dd", { text: `${info.width} × ${info.height} px · ${info.format} · ${formatBytes(info.size)}` }),
      el("dt", { text: "Id" }),
      el("dd", { text: String(info.id) }),
    );
    // What the network sees, best first: each a word to search by.
    const tags = (info.tags || []).length
      ? el(
          "ul",
          { class: "tags", "aria-label": "What the network sees" },
          info.tags.map((t) =>
            el(
              "li",
              {},
              el("button", {
                type: "button",
                class: "tag",
                title: `Search “${t.word}”`,
                text: `${t.word} ${Math.round(t.probability * 100)}%`,
                onclick: () => setState({ v: "search", q: t.word, like: null, sel: null }, { push: true }),
              }),
            ),
          ),
        )
      : null;
    const hero = el("a", { class: "panel-hero", href: info.image_url, target: "_blank", rel: "noopener" }, el("img", { src: info.thumbnail_url, alt: altText(info) }));
    const grid = el(
      "ol",
      { class: "grid tiny", "aria-label": "Nearest neighbours" },
      similar.results.map((r) => imageCard(r, { onOpen: (img) => openPanel(img.id) })),
    );
    body.replaceChildren(hero, tags || "", actions, meta, el("h3", { text: "Nearest neighbours" }), grid, error);
    if (app.map) app.map.showSelection(id, similar.results);
    if (write !== null) $("#panel-close").focus({ preventScroll: true });
  } catch (err) {
    if (openId !== id) return;
    body.replaceChildren(error);
    showError(error, err);
  }
}

export function closePanel() {
  if (openId === null) return;
  openId = null;
  panel.hidden = true;
  document.body.classList.remove("panel-open");
  if (app.map) app.map.showSelection(null, []);
  if (returnFocus && document.contains(returnFocus)) returnFocus.focus({ preventScroll: true });
  returnFocus = null;
}
