// The map's share of the URL state (state.js): the layout and camera are
// written back, replacing the history entry, once the camera has settled; a
// camera in the state is gone to; and one-shot flags are acted on, then
// cleared: here=1 flies to "you are here", fly=path to the path, fly=1 with
// sel=ID to that image.
//
// `view` is {layoutName() -> the name shown, or null while there is none;
// shown() -> whether the map is on screen; flyHere(); hasPath(); flyPath();
// flyToId(id)}.

import { getState, setState } from "../state.js";

const SETTLE_MS = 250;

export function createUrlSync(camera, view) {
  let timer = 0;

  function applyFlags(s) {
    if (view.layoutName() === null) return;
    if (s.here) {
      view.flyHere();
      setState({ here: null }, { silent: true });
    }
    if (s.fly === "path" && view.hasPath()) {
      view.flyPath();
      setState({ fly: null }, { silent: true });
    } else if (s.fly && s.sel !== undefined) {
      view.flyToId(Number(s.sel));
      setState({ fly: null }, { silent: true });
    }
  }

  function applyCamera(s, instant) {
    const x = Number(s.x);
    const y = Number(s.y);
    const z = Number(s.z);
    if (Number.isFinite(x) && Number.isFinite(y) && Number.isFinite(z)) camera.set({ cx: x, cy: y, z }, instant);
    applyFlags(s);
  }

  return {
    applyCamera,
    /** Act on the flags of the current state (a selection or a path just arrived). */
    applyFlags() {
      applyFlags(getState());
    },
    /** The state changed from `before` to `state` while the map is shown. */
    follow(state, before) {
      if (before.v !== "map" || state.x !== before.x || state.here || state.fly) {
        const moved = state.x !== before.x || state.y !== before.y || state.z !== before.z;
        if (state.x !== undefined && moved && before.v === "map") applyCamera(state, false);
        else applyFlags(state);
      }
    },
    /** The camera stopped moving: write it to the URL after a pause. */
    settled() {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const name = view.layoutName();
        if (!view.shown() || name === null) return;
        const r = (v, d) => Number(v.toFixed(d));
        const cam = camera.now;
        setState({ layout: name, x: r(cam.cx, 4), y: r(cam.cy, 4), z: r(cam.z, 3) }, { silent: true });
      }, SETTLE_MS);
    },
  };
}
