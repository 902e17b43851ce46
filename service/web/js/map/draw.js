// Drawing the map: which renderer draws the images (gl.js with WebGL2 where
// the GPU draws; canvas2d.js where there is no WebGL2 or it is only emulated on
// the CPU; #renderer=webgl or #renderer=canvas forces one), and the frame loop
// that moves the camera and the layout transition on, picks the thumbnails,
// and draws the images, then the overlay above them.

import { createCanvasRenderer } from "./canvas2d.js";
import { createGLRenderer } from "./gl.js";
import { THUMB_PX } from "./sprites.js";

/** The renderer for `canvas`, and the canvas it draws on (a fresh one where WebGL was tried and failed). */
export function createRenderer(canvas, wanted) {
  let renderer = wanted === "canvas" ? null : createGLRenderer(canvas, { allowSoftware: wanted === "webgl" });
  if (!renderer) {
    // A canvas that already holds a (failed) WebGL context cannot give a 2D one.
    const fresh = canvas.cloneNode(false);
    canvas.replaceWith(fresh);
    canvas = fresh;
    renderer = createCanvasRenderer(canvas);
  }
  canvas.dataset.renderer = renderer.kind;
  return { renderer, canvas };
}

/**
 * The frame loop. `p` is {camera, scene, sprites, renderer, overlay, bench, dpr,
 * marks() -> {selection, pathIds, hover, here, hereImage} for the overlay,
 * settled() when a frame leaves nothing moving}. request() asks for a frame.
 */
export function createPainter(p) {
  const { camera, scene, sprites, renderer, overlay, bench, dpr } = p;
  let frame = 0;

  function request() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function visibleIds() {
    const [x0, y0] = camera.toWorld(0, 0);
    const [x1, y1] = camera.toWorld(camera.width, camera.height);
    return scene.visibleIds(x0, y0, x1, y1);
  }

  function draw(now) {
    frame = 0;
    let again = camera.ease();
    if (scene.advance(now)) again = true;
    const s = camera.scale();
    const view = { cx: camera.now.cx, cy: camera.now.cy, scale: s };
    const { n, size, t, layout } = scene;
    sprites.sheetsIfWorth(n, size * s, dpr());
    const visible = n && size * s >= THUMB_PX ? visibleIds() : null;
    const thumbs = n && t === 1 ? sprites.thumbsFor(visible, size * s, scene.arrays.toX, scene.arrays.toY) : [];
    const t0 = performance.now();
    renderer.draw(view, t, size, thumbs, !again);
    const t1 = performance.now();
    overlay.draw({
      camera: view,
      width: camera.width,
      height: camera.height,
      dpr: dpr(),
      size,
      toScreen: camera.toScreen,
      posX: scene.posX,
      posY: scene.posY,
      clusters: layout && t === 1 ? layout.clusters : [],
      ...p.marks(),
    });
    bench.frame(t0, t1, n);
    if (again) request();
    else p.settled();
  }

  return { request };
}
