// What the map tells the benchmark (bench/web_fps.py) and the browser tests
// about its drawing, on the canvas's data attributes and as performance marks:
//   data-draw-ms   time spent in the renderer and the overlay in the last frame
//   data-painted   "1" from the first frame with images in it
//   data-frames    frames drawn so far
//   pixscape-map-first-paint, pixscape-map-sheets   performance marks

export function createBenchHooks(canvas) {
  let painted = false;
  return {
    /** A frame was drawn: renderer from t0 to t1, the overlay from t1 to now; `hasImages` when any were. */
    frame(t0, t1, hasImages) {
      canvas.dataset.drawMs = `${(t1 - t0).toFixed(2)},${(performance.now() - t1).toFixed(2)}`;
      if (hasImages && !painted) {
        painted = true;
        performance.mark("pixscape-map-first-paint");
        canvas.dataset.painted = "1";
      }
      canvas.dataset.frames = String((Number(canvas.dataset.frames) || 0) + 1);
    },
    /** Every atlas sheet has loaded (or failed). */
    sheetsDone() {
      performance.mark("pixscape-map-sheets");
    },
  };
}
