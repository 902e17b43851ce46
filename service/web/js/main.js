// Boot: header statistics, view switching from the URL, and the views.

import { api } from "./api.js";
import { app } from "./app.js";
import { createMapView } from "./map/view.js";
import { applyPanelState, initPanel, openPanel } from "./panel.js";
import { applyPathState, initPath, setPathEnd } from "./path.js";
import { applySearchState, initSearch } from "./search.js";
import { getState, onState, setState } from "./state.js";
import { $ } from "./ui.js";

const VIEWS = ["search", "map", "path"];

function showStats(stats) {
  const date = new Date(stats.created);
  const when = Number.isNaN(date.getTime())
    ? stats.created
    : date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  const box = $("#stats");
  box.textContent = "";
  const count = document.createElement("strong");
  count.textContent = `${stats.count.toLocaleString()} images`;
  box.append(count, ` · ${stats.model.id} · snapshot of ${when}`);
  box.title = `snapshot ${stats.snapshot}, ${stats.dim}-d vectors, ${stats.index_type} index`;
}

function loadStats() {
  app.statsReady = api
    .stats()
    .then((stats) => {
      app.stats = stats;
      showStats(stats);
      return stats;
    })
    .catch((err) => {
      $("#stats").textContent = err.message;
      return null;
    });
}

let mapView = null;
function applyView(state, before = {}) {
  const view = VIEWS.includes(state.v) ? state.v : "search";
  for (const v of VIEWS) {
    $(`#view-${v}`).hidden = v !== view;
    const tab = $(`#tab-${v}`);
    if (v === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
  if (view === "map" && !mapView) {
    mapView = createMapView();
    app.map = mapView;
  }
  if (mapView) mapView.setActive(view === "map", state, before);
  if (view !== (before.v || "search")) {
    const titles = { search: "Search", map: "Map", path: "Path" };
    document.title = `${titles[view]} · pixscape`;
  }
}

function applyAll(state, before) {
  applyView(state, before);
  applySearchState(state);
  applyPathState(state, before);
  applyPanelState(state);
}

function main() {
  app.openPanel = (id) => openPanel(id);
  app.closePanel = () => setState({ sel: null });
  app.setPathEnd = setPathEnd;
  loadStats();
  initPanel();
  initSearch();
  initPath();
  // Tabs are links to "#v=...": keep the rest of the state (selection, path) on switch.
  for (const tab of document.querySelectorAll(".tabs a")) {
    tab.addEventListener("click", (e) => {
      e.preventDefault();
      const v = tab.dataset.view;
      if (getState().v !== v) setState({ v, here: null, fly: null }, { push: true });
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("#panel").hidden && !e.defaultPrevented && !$("#slideshow").open) setState({ sel: null });
  });
  onState(applyAll);
  applyAll(getState(), {});
}

main();
