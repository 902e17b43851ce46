// The map view: puts the parts together and answers the page (main.js,
// panel.js, path.js). The parts: camera.js (pan/zoom and easing), input.js
// (pointer, wheel, touch, keys), scene.js (positions, layout transitions,
// picking), draw.js (renderer and frame loop; the drawing itself is gl.js's or
// canvas2d.js's, the overlay's overlay.js's), sprites.js (atlas and thumbnails),
// tooltip.js (hover tip), layouts.js (switcher), urlstate.js (URL state) and
// bench.js (what the benchmark reads).

import { app } from "../app.js";
import { getState } from "../state.js";
import { $ } from "../ui.js";
import { createBenchHooks } from "./bench.js";
import { createCamera } from "./camera.js";
import { placementOn } from "./data.js";
import { createPainter, createRenderer } from "./draw.js";
import { attachInput } from "./input.js";
import { createLayouts } from "./layouts.js";
import { createOverlay } from "./overlay.js";
import { createScene } from "./scene.js";
import { createSprites } from "./sprites.js";
import { createTooltip } from "./tooltip.js";
import { createUrlSync } from "./urlstate.js";

const NO_MAP = "This snapshot has no map yet. Re-index the collection with a pixscape that computes layouts.";

export function createMapView() {
  const stage = $("#map-stage");
  const status = $("#map-status");
  const overlay = createOverlay($("#map-overlay"));
  $("#map-overlay").addEventListener("redraw", () => request());
  const { renderer, canvas } = createRenderer($("#map-canvas"), getState().renderer);
  const dpr = () => window.devicePixelRatio || 1;

  let active = false;
  let started = false;
  let pending = null; // state to apply once data is there
  let selection = { id: null, neighbours: [] };
  let pathIds = null;

  const request = () => painter.request();
  const bench = createBenchHooks(canvas);
  const camera = createCamera(request);
  const scene = createScene();
  const sprites = createSprites(renderer, request, bench);
  const tooltip = createTooltip(stage, $("#map-tip"), canvas, request);
  const here = () => (scene.layout ? placementOn(app.lastUpload, scene.layout.name) : null);
  const painter = createPainter({
    camera, scene, sprites, renderer, overlay, bench, dpr,
    marks: () => ({
      selection, pathIds, hover: tooltip.id, here: here(),
      hereImage: app.lastUpload ? app.lastUpload.url : null,
    }),
    settled: () => url.settled(),
  });

  /** Fly so that (x, y) is centred, its image about `px` CSS pixels wide, clear of the side panel. */
  function flyTo(x, y, px = 150) {
    const panel = $("#panel");
    const covered = !panel.hidden && window.innerWidth > 640 ? panel.getBoundingClientRect().width * dpr() : 0;
    camera.flyTo(x, y, scene.size, px * dpr(), covered);
  }
  function fitIds(list) {
    const box = scene.bounds(list);
    if (box) camera.fitBox(...box, scene.size * 6);
  }
  const url = createUrlSync(camera, {
    layoutName: () => (scene.layout ? scene.layout.name : null),
    shown: () => active,
    flyHere() {
      const p = here();
      if (p) flyTo(p.x, p.y, 110);
    },
    hasPath: () => Boolean(pathIds),
    flyPath: () => fitIds(pathIds),
    flyToId(id) {
      const p = scene.pointOf(id);
      if (p) flyTo(p[0], p[1]);
    },
  });

  function show(data, animate) {
    scene.use(data, animate);
    renderer.setScene(scene.arrays);
    request();
    sprites.startAtlas(data.n, (atlas) => {
      scene.setAtlas(atlas);
      renderer.setScene(scene.arrays);
      request();
    });
  }
  const layouts = createLayouts($("#layout-switch"), status, show, renderer.kind === "canvas2d" ? " · Canvas2D" : "");

  async function init() {
    const index = await layouts.open();
    if (!index) return;
    sprites.setAtlasUrl(index.atlasUrl);
    if (!index.layouts.length) {
      status.textContent = "";
      overlay.message(NO_MAP);
      request();
      return;
    }
    const s = pending || getState();
    try {
      await layouts.switchTo(layouts.initial(s.layout), false);
    } catch (err) {
      status.textContent = err.message;
      return;
    }
    url.applyCamera(s, true);
  }

  function resize() {
    const r = stage.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width * dpr()));
    const h = Math.max(1, Math.round(r.height * dpr()));
    camera.resize(w, h);
    renderer.resize(w, h);
    overlay.resize(w, h);
    request();
  }
  new ResizeObserver(() => active && resize()).observe(stage);

  /** Screen point (device px) to the image under it, -1 for none. */
  function pick(sx, sy) {
    const [wx, wy] = camera.toWorld(sx, sy);
    return scene.nearest(wx, wy, Math.max(scene.size, (2 * dpr()) / camera.scale()) / 2);
  }
  attachInput(
    canvas,
    camera,
    dpr,
    {
      pick,
      click(id) {
        if (id >= 0) app.openPanel(id);
        else if (selection.id !== null) app.closePanel();
      },
      hover: (x, y, e) => tooltip.at(pick(x, y), e.clientX, e.clientY),
      leave: () => tooltip.hide(),
      enter() {
        const id = scene.nearest(camera.now.cx, camera.now.cy, 0.5 / camera.now.z, false);
        if (id >= 0) app.openPanel(id);
      },
    },
    { zoomIn: $("#zoom-in"), zoomOut: $("#zoom-out"), fit: $("#zoom-fit") },
  );

  return {
    setActive(on, state, before) {
      active = on;
      if (!on) {
        tooltip.hide();
        return;
      }
      resize();
      if (!started) {
        started = true;
        pending = state;
        init();
        return;
      }
      if (!scene.layout) return; // the list, then the first layout, are still loading
      if (layouts.isOther(state.layout)) {
        layouts.switchTo(state.layout).catch((err) => (status.textContent = err.message));
      }
      url.follow(state, before);
    },
    showSelection(id, neighbours) {
      selection = { id, neighbours: neighbours.map((r) => r.id) };
      url.applyFlags();
      request();
    },
    showPath(list) {
      pathIds = list && list.filter((i) => Number.isInteger(i));
      url.applyFlags();
      request();
    },
    get renderer() {
      return renderer.kind;
    },
  };
}
