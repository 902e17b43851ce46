// The camera: the point of the map at the centre of the canvas (cx, cy in
// world units, the map spanning 0..1) and the zoom z, the target it eases
// toward (wheel, keys, fly-to), and the world <-> screen transform. Screen
// coordinates are device pixels of the canvas. Drags and pinches move it
// instantly; everything else sets the target and lets ease() get there.

export const MIN_Z = 0.5;
export const MAX_Z = 400;
const EASE = 0.22; // share of the way to the target covered per frame

/** `onMove` is called whenever the target changes (the caller asks for a frame). */
export function createCamera(onMove) {
  const cam = { cx: 0.5, cy: 0.5, z: 1 };
  const target = { cx: 0.5, cy: 0.5, z: 1 };
  let width = 1;
  let height = 1;

  const fit = () => Math.min(width, height) * 0.92;
  const scale = (c = cam) => c.z * fit();
  const toScreen = (x, y, c = cam) => [(x - c.cx) * scale(c) + width / 2, (y - c.cy) * scale(c) + height / 2];
  const toWorld = (sx, sy, c = cam) => [(sx - width / 2) / scale(c) + c.cx, (sy - height / 2) / scale(c) + c.cy];

  function set(c, instant = false) {
    target.cx = c.cx;
    target.cy = c.cy;
    target.z = Math.max(MIN_Z, Math.min(MAX_Z, c.z));
    if (instant) Object.assign(cam, target);
    onMove();
  }

  /** Zoom by `factor` keeping the world point under screen (sx, sy) where it is. */
  function zoomAt(factor, sx, sy, instant = false) {
    const base = instant ? cam : target;
    const z = Math.max(MIN_Z, Math.min(MAX_Z, base.z * factor));
    const [wx, wy] = toWorld(sx, sy, base);
    const s = z * fit();
    set({ cx: wx - (sx - width / 2) / s, cy: wy - (sy - height / 2) / s, z }, instant);
  }

  return {
    /** The camera now (read only): {cx, cy, z}. */
    now: cam,
    /** Where it is going (read only): {cx, cy, z}. */
    target,
    get width() {
      return width;
    },
    get height() {
      return height;
    },
    resize(w, h) {
      width = w;
      height = h;
    },
    fit,
    scale,
    toScreen,
    toWorld,
    set,
    zoomAt,
    /** Zoom about the centre of the canvas. */
    zoom(factor) {
      zoomAt(factor, width / 2, height / 2);
    },
    /** Move by a screen offset (device px), at once: the map follows a finger. */
    panBy(dx, dy) {
      const s = scale();
      set({ cx: cam.cx - dx / s, cy: cam.cy - dy / s, z: cam.z }, true);
    },
    /**
     * Fly so that (x, y) is centred with `worldSize` world units `px` device pixels
     * wide (never zooming out), shifted left by `covered` device px of side panel.
     */
    flyTo(x, y, worldSize, px, covered = 0) {
      const z = Math.max(target.z, Math.min(MAX_Z, px / (worldSize * fit())));
      set({ cx: x + covered / 2 / (z * fit()), cy: y, z });
    },
    /** Fly to show the box (x0, y0)-(x1, y1), at least `minSpan` world units across. */
    fitBox(x0, y0, x1, y1, minSpan) {
      const span = Math.max(x1 - x0, y1 - y0, minSpan) * 1.25;
      set({ cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, z: Math.min(MAX_Z, 0.92 / span / 0.92) });
    },
    /** One frame of easing toward the target; true while still on the way. */
    ease() {
      let moving = false;
      for (const key of ["cx", "cy"]) {
        const d = target[key] - cam[key];
        cam[key] = Math.abs(d) * scale() < 0.3 ? target[key] : cam[key] + d * EASE;
        if (cam[key] !== target[key]) moving = true;
      }
      const dz = Math.log(target.z / cam.z);
      cam.z = Math.abs(dz) < 0.002 ? target.z : cam.z * Math.exp(dz * EASE);
      if (cam.z !== target.z) moving = true;
      return moving;
    },
  };
}
