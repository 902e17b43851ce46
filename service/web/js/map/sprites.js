// Image pixels for the sprites: the atlas (sheets of small thumbnails, one
// cell per image) and, once zoomed in far enough, each visible image's own
// thumbnail, kept in a small least-recently-used cache. The renderer is
// handed the images; the caller is asked for a frame when one arrives.

import { loadAtlas } from "./data.js";

export const THUMB_PX = 56; // sprites this large (device px) get their own thumbnail
const MAX_THUMBS = 240;
const SHEETS_AT_ONCE = 3;

/** `hooks.sheetsDone()` is called once every sheet has loaded or failed. */
export function createSprites(renderer, request, hooks) {
  let atlasUrl = null;
  let atlas = null;
  let atlasStarted = false;
  let sheetsWanted = false;
  const thumbs = new Map(); // id -> {img, u0, v0, du, dv, used, loading}

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
        if (done === atlas.sheets.length) hooks.sheetsDone();
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
    for (let k = 0; k < SHEETS_AT_ONCE; k++) one();
  }

  function loadThumb(id, th) {
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

  function evict() {
    if (thumbs.size <= MAX_THUMBS * 3) return;
    const old = [...thumbs.entries()].sort((a, b) => a[1].used - b[1].used).slice(0, thumbs.size - MAX_THUMBS * 2);
    for (const [id, th] of old) {
      if (th.loading) continue;
      renderer.dropThumb(id);
      thumbs.delete(id);
    }
  }

  return {
    /** Where the atlas index is (from the maps index); null when the snapshot has none. */
    setAtlasUrl(url) {
      atlasUrl = url;
    },
    /** Fetch the atlas index for `n` ids, once; `onAtlas(atlas)` when it is there. */
    async startAtlas(n, onAtlas) {
      if (atlas || atlasStarted || !atlasUrl) return;
      atlasStarted = true;
      try {
        atlas = await loadAtlas(atlasUrl, n);
      } catch (err) {
        console.warn("no atlas:", err);
        return;
      }
      if (!atlas) return;
      onAtlas(atlas);
    },
    /** Start loading the sheets when there are few images or sprites of `spritePx` device px show them. */
    sheetsIfWorth(n, spritePx, dpr) {
      if (atlas && !sheetsWanted && (n <= 30000 || spritePx >= 4 * dpr)) loadSheets();
    },
    /**
     * The thumbnails to draw over the `visible` ids (sprites `spritePx` device px,
     * at `toX`, `toY`): those loaded; the others start loading.
     */
    thumbsFor(visible, spritePx, toX, toY) {
      if (!visible || spritePx < THUMB_PX || visible.length > MAX_THUMBS) return [];
      const out = [];
      const stamp = performance.now();
      for (const id of visible) {
        let th = thumbs.get(id);
        if (!th) {
          th = { img: null, used: stamp, loading: true };
          thumbs.set(id, th);
          loadThumb(id, th);
        }
        th.used = stamp;
        if (th.img) out.push({ id, x: toX[id], y: toY[id], u0: th.u0, v0: th.v0, du: th.du, dv: th.dv });
      }
      evict();
      return out;
    },
  };
}
