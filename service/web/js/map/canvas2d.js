// Canvas2D renderer: the fallback without WebGL2, and the choice where WebGL
// is only emulated on the CPU (SwiftShader, llvmpipe), where it is slower than
// Skia's raster. The images are drawn once into a layer larger than the screen;
// panning blits the layer (one drawImage a frame, whatever the collection's
// size), zooming scales it, and the layer is redrawn once the camera settles.

const MARGIN = 0.5; // the layer reaches this share of the screen beyond each side
const BG = "#15151b";

export function createCanvasRenderer(canvas) {
  const ctx = canvas.getContext("2d", { alpha: false });
  const layer = document.createElement("canvas");
  const lctx = layer.getContext("2d", { alpha: false });
  let scene = null;
  const sheets = new Map();
  const thumbs = new Map();
  let colors = [];
  let version = 0; // bumped whenever what the layer shows changes
  let made = null; // the camera the layer was drawn for

  function paint(g, w, h, cam, t, size, thumbList) {
    g.fillStyle = BG;
    g.fillRect(0, 0, w, h);
    if (!scene || !scene.n) return;
    const px = Math.max(size * cam.scale, 2 * (window.devicePixelRatio || 1));
    const half = px / 2;
    const { fromX, fromY, toX, toY, sheetOf, uv, grid } = scene;
    const x0 = cam.cx - w / 2 / cam.scale;
    const y0 = cam.cy - h / 2 / cam.scale;
    const ids = t === 1 && grid ? grid.query(x0 - size, y0 - size, x0 + w / cam.scale + size, y0 + h / cam.scale + size) : null;
    const n = ids ? ids.length : scene.n;
    g.imageSmoothingEnabled = px > 6;
    const useSheets = sheetOf && px >= 4;
    for (let k = 0; k < n; k++) {
      const i = ids ? ids[k] : k;
      const x = fromX[i] + (toX[i] - fromX[i]) * t;
      const y = fromY[i] + (toY[i] - fromY[i]) * t;
      const sx = (x - cam.cx) * cam.scale + w / 2 - half;
      const sy = (y - cam.cy) * cam.scale + h / 2 - half;
      if (sx > w || sy > h || sx + px < 0 || sy + px < 0) continue;
      const sheet = useSheets ? sheets.get(sheetOf[i]) : null;
      if (sheet) {
        const sw = sheet.naturalWidth;
        const sh = sheet.naturalHeight;
        g.drawImage(sheet, uv[i * 4] * sw, uv[i * 4 + 1] * sh, uv[i * 4 + 2] * sw, uv[i * 4 + 3] * sh, sx, sy, px, px);
      } else {
        g.fillStyle = colors[i];
        g.fillRect(sx, sy, px, px);
      }
    }
    for (const th of thumbList || []) {
      const img = thumbs.get(th.id);
      if (!img) continue;
      const sx = (th.x - cam.cx) * cam.scale + w / 2 - half;
      const sy = (th.y - cam.cy) * cam.scale + h / 2 - half;
      const iw = img.naturalWidth;
      const ih = img.naturalHeight;
      g.drawImage(img, th.u0 * iw, th.v0 * ih, th.du * iw, th.dv * ih, sx, sy, px, px);
    }
  }

  return {
    kind: "canvas2d",
    setScene(s) {
      scene = s;
      colors = new Array(s.n);
      for (let i = 0; i < s.n; i++) {
        colors[i] = `rgb(${s.color[i * 4]},${s.color[i * 4 + 1]},${s.color[i * 4 + 2]})`;
      }
      version += 1;
    },
    setSheet(index, image) {
      sheets.set(index, image);
      version += 1;
    },
    clearSheets() {
      sheets.clear();
      version += 1;
    },
    setThumb(id, image) {
      thumbs.set(id, image);
      version += 1;
    },
    dropThumb(id) {
      thumbs.delete(id);
    },
    resize(w, h) {
      canvas.width = w;
      canvas.height = h;
      made = null;
    },
    /** settled: the camera has stopped, so a stale (scaled) layer should be redrawn now. */
    draw(cam, t, size, thumbList, settled) {
      const w = canvas.width;
      const h = canvas.height;
      if (t !== 1) {
        // A layout transition moves every image: draw straight to the screen.
        paint(ctx, w, h, cam, t, size, null);
        made = null;
        return;
      }
      const mw = Math.round(w * MARGIN);
      const mh = Math.round(h * MARGIN);
      const valid = made && made.version === version && made.w === w && made.h === h;
      if (valid && Math.abs(made.scale - cam.scale) < 1e-9 * cam.scale) {
        const dx = (cam.cx - made.cx) * cam.scale;
        const dy = (cam.cy - made.cy) * cam.scale;
        if (Math.abs(dx) <= mw && Math.abs(dy) <= mh) {
          ctx.drawImage(layer, mw + dx, mh + dy, w, h, 0, 0, w, h);
          return;
        }
      }
      if (valid && !settled) {
        // Zooming: stretch the layer we have; it is redrawn when the camera stops.
        const k = cam.scale / made.scale;
        ctx.fillStyle = BG;
        ctx.fillRect(0, 0, w, h);
        const ox = w / 2 + (made.cx - cam.cx) * cam.scale - (layer.width / 2) * k;
        const oy = h / 2 + (made.cy - cam.cy) * cam.scale - (layer.height / 2) * k;
        ctx.drawImage(layer, ox, oy, layer.width * k, layer.height * k);
        return;
      }
      if (layer.width !== w + 2 * mw || layer.height !== h + 2 * mh) {
        layer.width = w + 2 * mw;
        layer.height = h + 2 * mh;
      }
      paint(lctx, layer.width, layer.height, cam, 1, size, thumbList);
      made = { cx: cam.cx, cy: cam.cy, scale: cam.scale, version, w, h };
      ctx.drawImage(layer, mw, mh, w, h, 0, 0, w, h);
    },
  };
}
