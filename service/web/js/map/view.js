// The map view: camera, input (mouse, trackpad, touch, keyboard), layout
// transitions, hover and click, and the overlay (clusters, selection, path,
// "you are here"). Drawing itself is the renderer's (gl.js or canvas2d.js).

import { app } from "../app.js";
import { getState, setState } from "../state.js";
import { $, el } from "../ui.js";
import { createCanvasRenderer } from "./canvas2d.js";
import { layoutTitle, listLayouts, loadAtlas, loadLayout, placementOn } from "./data.js";
import { createGLRenderer } from "./gl.js";
import { createOverlay } from "./overlay.js";
import { SpatialGrid } from "./spatial.js";

const MIN_Z = 0.5;
const MAX_Z = 400;
const THUMB_PX = 56; // sprites this large (device px) get their own thumbnail
const MAX_THUMBS = 240;
const TRANSITION_MS = 750;
const PALETTE = [
  [91, 91, 214], [229, 72, 77], [48, 164, 108], [247, 107, 21], [0, 144, 255], [214, 64, 159],
  [255, 197, 61], [18, 165, 148], [142, 78, 198], [143, 177, 64], [230, 126, 34], [120, 144, 156],
];

export function createMapView() {
  const stage = $("#map-stage");
  let canvas = $("#map-canvas");
  const status = $("#map-status");
  const tip = $("#map-tip");
  const overlay = createOverlay($("#map-overlay"));
  $("#map-overlay").addEventListener("redraw", () => request());
  // WebGL2 where the GPU draws; Canvas2D where there is no WebGL2 or it is only
  // emulated on the CPU. #renderer=webgl or #renderer=canvas forces one.
  const wanted = getState().renderer;
  let renderer = wanted === "canvas" ? null : createGLRenderer(canvas, { allowSoftware: wanted === "webgl" });
  if (!renderer) {
    // A canvas that already holds a (failed) WebGL context cannot give a 2D one.
    const fresh = canvas.cloneNode(false);
    canvas.replaceWith(fresh);
    canvas = fresh;
    renderer = createCanvasRenderer(canvas);
  }
  canvas.dataset.renderer = renderer.kind;

  const dpr = () => window.devicePixelRatio || 1;
  let width = 1;
  let height = 1;
  let active = false;
  let layouts = null; // [{name, ...}]
  const cache = new Map(); // name -> layout data
  let layout = null; // current layout data
  let atlas = null;
  let atlasUrl = null;
  let sheetsWanted = false;
  let grid = null;
  // Scene: where each image comes from and goes to during a layout switch.
  const scene = { n: 0, fromX: null, fromY: null, toX: null, toY: null, color: null, sheetOf: null, uv: null };
  let t = 1;
  let transition = null; // {start}
  let size = 0.01; // sprite size, world units
  const cam = { cx: 0.5, cy: 0.5, z: 1 };
  const target = { cx: 0.5, cy: 0.5, z: 1 };
  let frame = 0;
  let firstPaint = false;
  let selection = { id: null, neighbours: [] };
  let pathIds = null;
  let hover = -1;
  let pending = null; // state to apply once data is there
  const thumbs = new Map(); // id -> {img, u0, v0, du, dv, used}
  let shownThumbs = [];

  const fit = () => Math.min(width, height) * 0.92;
  const scale = (c = cam) => c.z * fit();
  const toScreen = (x, y, c = cam) => [(x - c.cx) * scale(c) + width / 2, (y - c.cy) * scale(c) + height / 2];
  const toWorld = (sx, sy, c = cam) => [(sx - width / 2) / scale(c) + c.cx, (sy - height / 2) / scale(c) + c.cy];
  const posX = (i) => scene.fromX[i] + (scene.toX[i] - scene.fromX[i]) * t;
  const posY = (i) => scene.fromY[i] + (scene.toY[i] - scene.fromY[i]) * t;

  // ------------------------------------------------------------ sizing and drawing

  function resize() {
    const r = stage.getBoundingClientRect();
    width = Math.max(1, Math.round(r.width * dpr()));
    height = Math.max(1, Math.round(r.height * dpr()));
    renderer.resize(width, height);
    overlay.resize(width, height);
    request();
  }
  new ResizeObserver(() => active && resize()).observe(stage);

  function request() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function draw(now) {
    frame = 0;
    let again = false;
    // Ease the camera toward its target (wheel, keys, fly-to).
    const k = 0.22;
    for (const key of ["cx", "cy"]) {
      const d = target[key] - cam[key];
      cam[key] = Math.abs(d) * scale() < 0.3 ? target[key] : cam[key] + d * k;
      if (cam[key] !== target[key]) again = true;
    }
    const dz = Math.log(target.z / cam.z);
    cam.z = Math.abs(dz) < 0.002 ? target.z : cam.z * Math.exp(dz * k);
    if (cam.z !== target.z) again = true;
    if (transition) {
      const u = Math.min(1, (now - transition.start) / TRANSITION_MS);
      t = u < 0.5 ? 4 * u * u * u : 1 - (-2 * u + 2) ** 3 / 2;
      if (u >= 1) {
        transition = null;
        t = 1;
      } else again = true;
    }
    const s = scale();
    const camera = { cx: cam.cx, cy: cam.cy, scale: s };
    if (atlas && !sheetsWanted && (scene.n <= 30000 || size * s >= 4 * dpr())) loadSheets();
    const visible = scene.n && size * s >= THUMB_PX ? visibleIds() : null;
    shownThumbs = scene.n && t === 1 ? thumbsFor(visible) : [];
    const t0 = performance.now();
    renderer.draw(camera, t, size, shownThumbs, !again);
    const t1 = performance.now();
    overlay.draw({
      camera, width, height, dpr: dpr(), size, toScreen, posX, posY,
      clusters: layout && t === 1 ? layout.clusters : [],
      selection, pathIds, hover,
      here: layout ? placementOn(app.lastUpload, layout.name) : null,
      hereImage: app.lastUpload ? app.lastUpload.url : null,
    });
    // Time spent drawing the last frame, for the benchmark (bench/web_fps.py).
    canvas.dataset.drawMs = `${(t1 - t0).toFixed(2)},${(performance.now() - t1).toFixed(2)}`;
    if (scene.n && !firstPaint) {
      firstPaint = true;
      performance.mark("pixscape-map-first-paint");
      canvas.dataset.painted = "1";
    }
    canvas.dataset.frames = String((Number(canvas.dataset.frames) || 0) + 1);
    if (again) request();
    else settled();
  }

  let settleTimer = 0;
  function settled() {
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => {
      if (!active || !layout) return;
      const r = (v, d) => Number(v.toFixed(d));
      setState({ layout: layout.name, x: r(cam.cx, 4), y: r(cam.cy, 4), z: r(cam.z, 3) }, { silent: true });
    }, 250);
  }

  // ------------------------------------------------------------ visible set and thumbnails

  function visibleIds() {
    if (!grid) return null;
    const [x0, y0] = toWorld(0, 0);
    const [x1, y1] = toWorld(width, height);
    const pad = size;
    // Everything is visible when zoomed out: no need to gather ids.
    if (x0 <= -pad && y0 <= -pad && x1 >= 1 + pad && y1 >= 1 + pad) return null;
    return grid.query(x0 - pad, y0 - pad, x1 + pad, y1 + pad);
  }

  function thumbsFor(visible) {
    if (!visible || size * scale() < THUMB_PX || visible.length > MAX_THUMBS) return [];
    const out = [];
    const stamp = performance.now();
    for (const id of visible) {
      let th = thumbs.get(id);
      if (!th) {
        th = { img: null, used: stamp, loading: true };
        thumbs.set(id, th);
        const img = new Image();
        img.decoding = "async";
        img.onload = () => {
          const w = img.naturalWidth;
          const h = img.naturalHeight;
          const m = Math.min(w, h);
          Object.assign(th, { img, loading: false, u0: (w - m) / 2 / w, v0: (h - m) / 2 / h, du: m / w, dv: m / h });
          renderer.setThumb(id, img);
          request();
        };
        img.onerror = () => (th.loading = false);
        img.src = `/api/images/${id}/thumbnail`;
      }
      th.used = stamp;
      if (th.img) out.push({ id, x: scene.toX[id], y: scene.toY[id], u0: th.u0, v0: th.v0, du: th.du, dv: th.dv });
    }
    if (thumbs.size > MAX_THUMBS * 3) {
      const old = [...thumbs.entries()].sort((a, b) => a[1].used - b[1].used).slice(0, thumbs.size - MAX_THUMBS * 2);
      for (const [id, th] of old) {
        if (th.loading) continue;
        renderer.dropThumb(id);
        thumbs.delete(id);
      }
    }
    return out;
  }

  // ------------------------------------------------------------ data

  function colours(data) {
    const c = new Uint8Array(data.n * 4);
    for (let i = 0; i < data.n; i++) {
      const k = data.cluster && data.cluster[i] >= 0 ? data.cluster[i] : i;
      const [r, g, b] = PALETTE[k % PALETTE.length];
      c.set([r, g, b, 255], i * 4);
    }
    return c;
  }

  function spriteSize(data) {
    // The grid layout says its cell; the others get the cell of a grid as dense.
    if (data.cell) return data.cell * 0.94;
    return 0.94 / Math.ceil(Math.sqrt(Math.max(1, data.count)));
  }

  function useLayout(data, animate) {
    const n = data.n;
    const toX = new Float32Array(n);
    const toY = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const ok = Number.isFinite(data.x[i]) && Number.isFinite(data.y[i]);
      toX[i] = ok ? data.x[i] : -10;
      toY[i] = ok ? data.y[i] : -10;
    }
    let fromX = toX;
    let fromY = toY;
    if (animate && scene.n === n) {
      fromX = new Float32Array(n);
      fromY = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        fromX[i] = posX(i);
        fromY[i] = posY(i);
      }
    }
    Object.assign(scene, { n, fromX, fromY, toX, toY });
    if (!scene.color || scene.color.length !== n * 4 || layout !== data) scene.color = colours(data);
    layout = data;
    size = spriteSize(data);
    grid = new SpatialGrid(toX, toY);
    scene.grid = grid;
    renderer.setScene(scene);
    if (fromX !== toX) {
      t = 0;
      transition = { start: performance.now() };
    } else t = 1;
    for (const b of $("#layout-switch").querySelectorAll("button")) {
      b.setAttribute("aria-checked", String(b.dataset.layout === data.name));
      b.tabIndex = b.dataset.layout === data.name ? 0 : -1;
    }
    const q = data.quality;
    const trust = q && Number.isFinite(q.trustworthiness) ? ` · trustworthiness ${q.trustworthiness.toFixed(2)}` : "";
    status.textContent = `${layoutTitle(data.name)} · ${data.count.toLocaleString()} images${trust}${renderer.kind === "canvas2d" ? " · Canvas2D" : ""}`;
    request();
  }

  async function switchLayout(name, { animate = true } = {}) {
    status.textContent = `Loading ${layoutTitle(name)}…`;
    let data = cache.get(name);
    if (!data) {
      data = await loadLayout(name);
      cache.set(name, data);
    }
    useLayout(data, animate);
    if (!atlas) startAtlas(data.n);
  }

  let atlasStarted = false;
  async function startAtlas(n) {
    if (atlasStarted || !atlasUrl) return;
    atlasStarted = true;
    try {
      atlas = await loadAtlas(atlasUrl, n);
    } catch (err) {
      console.warn("no atlas:", err);
      return;
    }
    if (!atlas) return;
    scene.sheetOf = atlas.sheetOf;
    scene.uv = atlas.uv;
    renderer.setScene(scene);
    request();
  }

  // The sheets themselves load once sprites are big enough to show them; at
  // 100k images and full view each is ~2 px, and coloured squares say as much.
  function loadSheets() {
    if (sheetsWanted || !atlas) return;
    sheetsWanted = true;
    let next = 0;
    let done = 0;
    const one = () => {
      const index = next++;
      if (index >= atlas.sheets.length) return;
      const finished = () => {
        done += 1;
        if (done === atlas.sheets.length) performance.mark("pixscape-map-sheets");
      };
      const img = new Image();
      img.decoding = "async";
      img.onload = () => {
        renderer.setSheet(index, img);
        finished();
        request();
        one();
      };
      img.onerror = () => {
        finished();
        one();
      };
      img.src = atlas.sheets[index].url;
    };
    for (let k = 0; k < 3; k++) one(); // three at a time
  }

  async function init() {
    status.textContent = "Loading the map…";
    try {
      const index = await listLayouts();
      layouts = index.layouts;
      atlasUrl = index.atlasUrl;
    } catch (err) {
      status.textContent = err.message;
      return;
    }
    const sw = $("#layout-switch");
    sw.replaceChildren(
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
    sw.addEventListener("keydown", (e) => {
      if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
      e.preventDefault();
      const i = layouts.findIndex((l) => layout && l.name === layout.name);
      const step = e.key === "ArrowLeft" || e.key === "ArrowUp" ? -1 : 1;
      const next = layouts[(i + step + layouts.length) % layouts.length];
      setState({ layout: next.name });
      sw.querySelector(`[data-layout="${next.name}"]`).focus();
    });
    if (!layouts.length) {
      status.textContent = "";
      overlay.message("This snapshot has no map yet. Re-index the collection with a pixscape that computes layouts.");
      request();
      return;
    }
    const s = pending || getState();
    const first = layouts.find((l) => l.name === s.layout) || layouts.find((l) => l.name === "umap") || layouts[0];
    try {
      await switchLayout(first.name, { animate: false });
    } catch (err) {
      status.textContent = err.message;
      return;
    }
    applyCamera(s, true);
  }

  // ------------------------------------------------------------ camera

  function setCamera(c, instant = false) {
    target.cx = c.cx;
    target.cy = c.cy;
    target.z = Math.max(MIN_Z, Math.min(MAX_Z, c.z));
    if (instant) Object.assign(cam, target);
    request();
  }

  function zoomAt(factor, sx, sy, instant = false) {
    const base = instant ? cam : target;
    const z = Math.max(MIN_Z, Math.min(MAX_Z, base.z * factor));
    const [wx, wy] = toWorld(sx, sy, base);
    const s = z * fit();
    setCamera({ cx: wx - (sx - width / 2) / s, cy: wy - (sy - height / 2) / s, z }, instant);
  }

  /** Fly so that (x, y) is centred, its image about `px` CSS pixels wide (never zooming out). */
  function flyTo(x, y, px = 150) {
    const z = Math.max(target.z, Math.min(MAX_Z, (px * dpr()) / (size * fit())));
    // Keep the spot clear of the side panel, where there is room beside it.
    const panel = $("#panel");
    const covered = !panel.hidden && window.innerWidth > 640 ? panel.getBoundingClientRect().width * dpr() : 0;
    setCamera({ cx: x + covered / 2 / (z * fit()), cy: y, z });
  }

  function fitIds(list) {
    const pts = list.filter((i) => i >= 0 && i < scene.n);
    if (!pts.length) return;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const i of pts) {
      x0 = Math.min(x0, scene.toX[i]);
      x1 = Math.max(x1, scene.toX[i]);
      y0 = Math.min(y0, scene.toY[i]);
      y1 = Math.max(y1, scene.toY[i]);
    }
    const span = Math.max(x1 - x0, y1 - y0, size * 6) * 1.25;
    setCamera({ cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, z: Math.min(MAX_Z, 0.92 / span / 0.92) });
  }

  function applyCamera(s, instant) {
    const x = Number(s.x);
    const y = Number(s.y);
    const z = Number(s.z);
    if (Number.isFinite(x) && Number.isFinite(y) && Number.isFinite(z)) setCamera({ cx: x, cy: y, z }, instant);
    applyFlags(s);
  }

  function applyFlags(s) {
    if (!layout) return;
    if (s.here) {
      const p = placementOn(app.lastUpload, layout.name);
      if (p) flyTo(p.x, p.y, 110);
      setState({ here: null }, { silent: true });
    }
    if (s.fly === "path" && pathIds) {
      fitIds(pathIds);
      setState({ fly: null }, { silent: true });
    } else if (s.fly && s.sel !== undefined) {
      const id = Number(s.sel);
      if (id >= 0 && id < scene.n) flyTo(scene.toX[id], scene.toY[id]);
      setState({ fly: null }, { silent: true });
    }
  }

  // ------------------------------------------------------------ input

  const pointers = new Map();
  let drag = null; // {x, y, moved, time}
  let pinch = null;

  const local = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * dpr(), (e.clientY - r.top) * dpr()];
  };

  function pick(sx, sy) {
    if (!grid || t !== 1) return -1;
    const [wx, wy] = toWorld(sx, sy);
    const half = Math.max(size, (2 * dpr()) / scale()) / 2;
    return grid.nearest(wx, wy, half);
  }

  function onPointerDown(e) {
    try {
      canvas.setPointerCapture(e.pointerId);
    } catch {
      /* synthetic events (tests, benchmarks) have no real pointer to capture */
    }
    pointers.set(e.pointerId, local(e));
    if (pointers.size === 1) {
      const [x, y] = local(e);
      drag = { x, y, sx: x, sy: y, moved: 0, time: performance.now() };
    } else if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { d: Math.hypot(a[0] - b[0], a[1] - b[1]), mx: (a[0] + b[0]) / 2, my: (a[1] + b[1]) / 2 };
      drag = null;
    }
    hideTip();
  }

  function onPointerMove(e) {
    const p = local(e);
    if (!pointers.has(e.pointerId)) {
      hoverAt(p[0], p[1], e);
      return;
    }
    pointers.set(e.pointerId, p);
    if (pinch && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const d = Math.hypot(a[0] - b[0], a[1] - b[1]);
      const mx = (a[0] + b[0]) / 2;
      const my = (a[1] + b[1]) / 2;
      const s = scale();
      setCamera({ cx: cam.cx - (mx - pinch.mx) / s, cy: cam.cy - (my - pinch.my) / s, z: cam.z }, true);
      zoomAt(d / Math.max(1, pinch.d), mx, my, true);
      pinch = { d, mx, my };
      return;
    }
    if (drag) {
      const dx = p[0] - drag.x;
      const dy = p[1] - drag.y;
      drag.moved = Math.max(drag.moved, Math.hypot(p[0] - drag.sx, p[1] - drag.sy));
      drag.x = p[0];
      drag.y = p[1];
      if (drag.moved > 4 * dpr()) canvas.classList.add("dragging");
      const s = scale();
      setCamera({ cx: cam.cx - dx / s, cy: cam.cy - dy / s, z: cam.z }, true);
    }
  }

  function onPointerUp(e) {
    const wasDrag = drag;
    pointers.delete(e.pointerId);
    if (pointers.size < 2) pinch = null;
    canvas.classList.remove("dragging");
    if (pointers.size === 0) drag = null;
    if (wasDrag && e.type === "pointerup" && wasDrag.moved < 5 * dpr()) {
      const [x, y] = local(e);
      const id = pick(x, y);
      if (id >= 0) app.openPanel(id);
      else if (selection.id !== null) app.closePanel();
    }
  }

  function onWheel(e) {
    e.preventDefault();
    const [x, y] = local(e);
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    // Trackpad pinch arrives as ctrl+wheel with small deltas: zoom faster.
    const k = e.ctrlKey ? 0.01 : 0.0015;
    zoomAt(Math.exp(-e.deltaY * unit * k), x, y);
    hideTip();
  }

  function onKey(e) {
    const step = 0.15 / target.z;
    const keys = {
      ArrowLeft: () => setCamera({ ...target, cx: target.cx - step }),
      ArrowRight: () => setCamera({ ...target, cx: target.cx + step }),
      ArrowUp: () => setCamera({ ...target, cy: target.cy - step }),
      ArrowDown: () => setCamera({ ...target, cy: target.cy + step }),
      "+": () => zoomAt(1.5, width / 2, height / 2),
      "=": () => zoomAt(1.5, width / 2, height / 2),
      "-": () => zoomAt(1 / 1.5, width / 2, height / 2),
      0: () => setCamera({ cx: 0.5, cy: 0.5, z: 1 }),
      Enter: () => {
        const id = grid ? grid.nearest(cam.cx, cam.cy, 0.5 / cam.z) : -1;
        if (id >= 0) app.openPanel(id);
      },
    };
    const fn = keys[e.key];
    if (fn && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      fn();
    }
  }

  // Hover: label and file name of the image under the pointer.
  const infoCache = new Map();
  let hoverTimer = 0;
  function hoverAt(x, y, e) {
    const id = pick(x, y);
    canvas.classList.toggle("pointing", id >= 0);
    if (id !== hover) {
      hover = id;
      request();
    }
    if (id < 0) {
      hideTip();
      return;
    }
    const r = stage.getBoundingClientRect();
    tip.style.left = `${Math.min(e.clientX - r.left + 14, r.width - 200)}px`;
    tip.style.top = `${e.clientY - r.top + 16}px`;
    const info = infoCache.get(id);
    if (info) showTip(info);
    else {
      clearTimeout(hoverTimer);
      hoverTimer = setTimeout(async () => {
        try {
          const res = await fetch(`/api/images/${id}`);
          if (!res.ok) return;
          const body = await res.json();
          infoCache.set(id, body);
          if (hover === id) showTip(body);
        } catch {
          /* the tip is a nicety */
        }
      }, 60);
    }
  }
  function showTip(info) {
    const name = info.path.split("/").pop();
    tip.replaceChildren(info.label ? el("strong", { text: `${info.label} · ` }) : "", name);
    tip.hidden = false;
  }
  function hideTip() {
    tip.hidden = true;
    if (hover !== -1) {
      hover = -1;
      request();
    }
  }

  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", (e) => !pointers.has(e.pointerId) && hideTip());
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("keydown", onKey);
  $("#zoom-in").addEventListener("click", () => zoomAt(1.6, width / 2, height / 2));
  $("#zoom-out").addEventListener("click", () => zoomAt(1 / 1.6, width / 2, height / 2));
  $("#zoom-fit").addEventListener("click", () => setCamera({ cx: 0.5, cy: 0.5, z: 1 }));

  let started = false;

  return {
    setActive(on, state, before) {
      active = on;
      if (!on) {
        hideTip();
        return;
      }
      resize();
      if (!started) {
        started = true;
        pending = state;
        init();
        return;
      }
      if (!layouts || !layout) return;
      if (state.layout && state.layout !== layout.name && layouts.some((l) => l.name === state.layout)) {
        switchLayout(state.layout).catch((err) => (status.textContent = err.message));
      }
      if (before.v !== "map" || state.x !== before.x || state.here || state.fly) {
        if (state.x !== undefined && (state.x !== before.x || state.y !== before.y || state.z !== before.z) && before.v === "map") {
          applyCamera(state, false);
        } else applyFlags(state);
      }
    },
    showSelection(id, neighbours) {
      selection = { id, neighbours: neighbours.map((r) => r.id) };
      applyFlags(getState());
      request();
    },
    showPath(list) {
      pathIds = list && list.filter((i) => Number.isInteger(i));
      applyFlags(getState());
      request();
    },
    get renderer() {
      return renderer.kind;
    },
  };
}
