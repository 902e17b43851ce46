// Input on the map canvas: drag to pan, pinch and wheel (trackpad pinch is
// ctrl+wheel) to zoom, click to pick, hover, the keyboard, and the zoom
// buttons. Everything here turns events into camera moves or callbacks.
//
// `on` is {pick(sx, sy) -> id or -1, click(id), hover(sx, sy, event), leave(),
// enter()}: click gets the id under a click that was not a drag (-1: empty
// map); leave hides the tip; enter is the keyboard's "open what is in the middle".

const KEY_ZOOM = 1.5;
const BUTTON_ZOOM = 1.6;

export function attachInput(canvas, camera, dpr, on, buttons) {
  const pointers = new Map(); // pointerId -> [x, y], device px
  let drag = null; // {x, y, sx, sy, moved, time}
  let pinch = null; // {d, mx, my}

  const local = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * dpr(), (e.clientY - r.top) * dpr()];
  };
  const middle = () => {
    const [a, b] = [...pointers.values()];
    return { d: Math.hypot(a[0] - b[0], a[1] - b[1]), mx: (a[0] + b[0]) / 2, my: (a[1] + b[1]) / 2 };
  };

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
      pinch = middle();
      drag = null;
    }
    on.leave();
  }

  function onPointerMove(e) {
    const p = local(e);
    if (!pointers.has(e.pointerId)) {
      on.hover(p[0], p[1], e);
      return;
    }
    pointers.set(e.pointerId, p);
    if (pinch && pointers.size === 2) {
      const m = middle();
      camera.panBy(m.mx - pinch.mx, m.my - pinch.my);
      camera.zoomAt(m.d / Math.max(1, pinch.d), m.mx, m.my, true);
      pinch = m;
      return;
    }
    if (drag) {
      const dx = p[0] - drag.x;
      const dy = p[1] - drag.y;
      drag.moved = Math.max(drag.moved, Math.hypot(p[0] - drag.sx, p[1] - drag.sy));
      drag.x = p[0];
      drag.y = p[1];
      if (drag.moved > 4 * dpr()) canvas.classList.add("dragging");
      camera.panBy(dx, dy);
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
      on.click(on.pick(x, y));
    }
  }

  function onWheel(e) {
    e.preventDefault();
    const [x, y] = local(e);
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    // Trackpad pinch arrives as ctrl+wheel with small deltas: zoom faster.
    const k = e.ctrlKey ? 0.01 : 0.0015;
    camera.zoomAt(Math.exp(-e.deltaY * unit * k), x, y);
    on.leave();
  }

  function onKey(e) {
    const target = camera.target;
    const step = 0.15 / target.z;
    const keys = {
      ArrowLeft: () => camera.set({ ...target, cx: target.cx - step }),
      ArrowRight: () => camera.set({ ...target, cx: target.cx + step }),
      ArrowUp: () => camera.set({ ...target, cy: target.cy - step }),
      ArrowDown: () => camera.set({ ...target, cy: target.cy + step }),
      "+": () => camera.zoom(KEY_ZOOM),
      "=": () => camera.zoom(KEY_ZOOM),
      "-": () => camera.zoom(1 / KEY_ZOOM),
      0: () => camera.set({ cx: 0.5, cy: 0.5, z: 1 }),
      Enter: () => on.enter(),
    };
    const fn = keys[e.key];
    if (fn && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      fn();
    }
  }

  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", (e) => !pointers.has(e.pointerId) && on.leave());
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("keydown", onKey);
  buttons.zoomIn.addEventListener("click", () => camera.zoom(BUTTON_ZOOM));
  buttons.zoomOut.addEventListener("click", () => camera.zoom(1 / BUTTON_ZOOM));
  buttons.fit.addEventListener("click", () => camera.set({ cx: 0.5, cy: 0.5, z: 1 }));
}
