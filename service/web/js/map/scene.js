// What is drawn: for each image id where it comes from and goes to during a
// layout switch (the layout transition, eased over TRANSITION_MS), its colour,
// the sprite size, and a spatial grid over the final positions for picking and
// for the visible set. `scene.arrays` is the object the renderer reads.

import { SpatialGrid } from "./spatial.js";

const TRANSITION_MS = 750;
const PALETTE = [
  [91, 91, 214], [229, 72, 77], [48, 164, 108], [247, 107, 21], [0, 144, 255], [214, 64, 159],
  [255, 197, 61], [18, 165, 148], [142, 78, 198], [143, 177, 64], [230, 126, 34], [120, 144, 156],
];

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

export function createScene() {
  const arrays = { n: 0, fromX: null, fromY: null, toX: null, toY: null, color: null, sheetOf: null, uv: null };
  let layout = null; // the layout data shown (or arriving)
  let grid = null;
  let size = 0.01; // sprite size, world units
  let t = 1; // 0..1 from the old positions to the new
  let transition = null; // {start}

  const posX = (i) => arrays.fromX[i] + (arrays.toX[i] - arrays.fromX[i]) * t;
  const posY = (i) => arrays.fromY[i] + (arrays.toY[i] - arrays.fromY[i]) * t;

  /** Show `data` (a layout from data.js), moving there from where the images are when `animate`. */
  function use(data, animate) {
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
    if (animate && arrays.n === n) {
      fromX = new Float32Array(n);
      fromY = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        fromX[i] = posX(i);
        fromY[i] = posY(i);
      }
    }
    Object.assign(arrays, { n, fromX, fromY, toX, toY });
    if (!arrays.color || arrays.color.length !== n * 4 || layout !== data) arrays.color = colours(data);
    layout = data;
    size = spriteSize(data);
    grid = new SpatialGrid(toX, toY);
    arrays.grid = grid;
    if (fromX !== toX) {
      t = 0;
      transition = { start: performance.now() };
    } else t = 1;
  }

  return {
    arrays,
    posX,
    posY,
    use,
    get layout() {
      return layout;
    },
    get n() {
      return arrays.n;
    },
    get size() {
      return size;
    },
    get t() {
      return t;
    },
    /** Where the atlas says each image's sprite is. */
    setAtlas(atlas) {
      arrays.sheetOf = atlas.sheetOf;
      arrays.uv = atlas.uv;
    },
    /** Advance the layout transition to time `now`; true while it is still running. */
    advance(now) {
      if (!transition) return false;
      const u = Math.min(1, (now - transition.start) / TRANSITION_MS);
      t = u < 0.5 ? 4 * u * u * u : 1 - (-2 * u + 2) ** 3 / 2;
      if (u >= 1) {
        transition = null;
        t = 1;
        return false;
      }
      return true;
    },
    /** Final position of image `id`, or null when there is none. */
    pointOf(id) {
      return id >= 0 && id < arrays.n ? [arrays.toX[id], arrays.toY[id]] : null;
    },
    /** World box [x0, y0, x1, y1] around the final positions of `ids` that exist; null when none do. */
    bounds(ids) {
      const pts = ids.filter((i) => i >= 0 && i < arrays.n);
      if (!pts.length) return null;
      let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
      for (const i of pts) {
        x0 = Math.min(x0, arrays.toX[i]);
        x1 = Math.max(x1, arrays.toX[i]);
        y0 = Math.min(y0, arrays.toY[i]);
        y1 = Math.max(y1, arrays.toY[i]);
      }
      return [x0, y0, x1, y1];
    },
    /** Ids within the world box, padded by a sprite; null when the box holds everything. */
    visibleIds(x0, y0, x1, y1) {
      if (!grid) return null;
      const pad = size;
      // Everything is visible when zoomed out: no need to gather ids.
      if (x0 <= -pad && y0 <= -pad && x1 >= 1 + pad && y1 >= 1 + pad) return null;
      return grid.query(x0 - pad, y0 - pad, x1 + pad, y1 + pad);
    },
    /** The image nearest world (x, y) within `half`, once settled; -1 when none. */
    nearest(x, y, half, settledOnly = true) {
      if (!grid || (settledOnly && t !== 1)) return -1;
      return grid.nearest(x, y, half);
    },
  };
}
