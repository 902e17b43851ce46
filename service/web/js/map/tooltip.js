// The hover tip: the label and file name of the image under the pointer,
// fetched once per image (after a short pause, so sweeping across the map
// does not fetch everything it crosses) and kept.

import { el } from "../ui.js";

const FETCH_DELAY_MS = 60;

/** `onHover()` is called when the hovered id changes (the overlay rings it). */
export function createTooltip(stage, tip, canvas, onHover) {
  const infoCache = new Map(); // id -> GET /api/images/{id} body
  let hover = -1;
  let timer = 0;

  function setHover(id) {
    if (id === hover) return;
    hover = id;
    onHover();
  }

  function show(info) {
    const name = info.path.split("/").pop();
    tip.replaceChildren(info.label ? el("strong", { text: `${info.label} · ` }) : "", name);
    tip.hidden = false;
  }

  function hide() {
    tip.hidden = true;
    setHover(-1);
  }

  return {
    /** The id under the pointer, -1 for none. */
    get id() {
      return hover;
    },
    hide,
    /** The pointer is over image `id` (-1: none) at client (clientX, clientY). */
    at(id, clientX, clientY) {
      canvas.classList.toggle("pointing", id >= 0);
      setHover(id);
      if (id < 0) {
        hide();
        return;
      }
      const r = stage.getBoundingClientRect();
      tip.style.left = `${Math.min(clientX - r.left + 14, r.width - 200)}px`;
      tip.style.top = `${clientY - r.top + 16}px`;
      const info = infoCache.get(id);
      if (info) show(info);
      else {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          try {
            const res = await fetch(`/api/images/${id}`);
            if (!res.ok) return;
            const body = await res.json();
            infoCache.set(id, body);
            if (hover === id) show(body);
          } catch {
            /* the tip is a nicety */
          }
        }, FETCH_DELAY_MS);
      }
    },
  };
}
