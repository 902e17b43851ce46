// Paths: a chain of images from a start to an end, each a small step from the last.

import { api } from "./api.js";
import { app } from "./app.js";
import { getState, ids, setState } from "./state.js";
import { $, altText, el, fileName, imageCard, pct, showError } from "./ui.js";

const strip = $("#path-strip");
const errorBox = $("#path-error");
const summary = $("#path-summary");
const steps = $("#path-steps");
const smooth = $("#path-smooth");

// An end is {id, ref} for an indexed image or {file, url} for an upload.
const ends = { from: null, to: null };
let chain = null; // [{id, path, label, thumbnail_url, image_url, score}]
let requestKey = "";
let controller = null;

export function initPath() {
  $("#path-form").addEventListener("submit", (e) => {
    e.preventDefault();
    go();
  });
  $("#path-swap").addEventListener("click", () => {
    [ends.from, ends.to] = [ends.to, ends.from];
    writeEnds();
    renderEnds();
    if (ends.from && ends.to) go();
  });
  for (const [input, out, key] of [[steps, "#path-steps-out", "steps"], [smooth, "#path-smooth-out", "smooth"]]) {
    input.addEventListener("input", () => ($(out).textContent = input.value));
    input.addEventListener("change", () => {
      setState({ [key]: input.value }, { silent: true });
      if (chain) go();
    });
  }
  $("#path-play").addEventListener("click", () => playSlideshow());
  $("#path-on-map").addEventListener("click", (e) => {
    e.preventDefault();
    setState({ v: "map", fly: "path" }, { push: true });
  });
  initSlideshow();
  renderEnds();
}

/** From a panel or a result: make `img` the start or the end and go. */
export function setPathEnd(which, img) {
  ends[which] = { id: img.id, ref: img };
  writeEnds();
  renderEnds();
  const other = which === "from" ? "to" : "from";
  setState({ v: "path", sel: null }, { push: true });
  if (ends[other]) go();
  else $(`#path-${other} button`)?.focus();
}

function writeEnds() {
  setState(
    {
      from: ends.from && ends.from.id !== undefined ? ends.from.id : null,
      to: ends.to && ends.to.id !== undefined ? ends.to.id : null,
    },
    { silent: true },
  );
}

export function applyPathState(state) {
  if (state.steps && state.steps !== steps.value) {
    steps.value = state.steps;
    $("#path-steps-out").textContent = steps.value;
  }
  if (state.smooth && state.smooth !== smooth.value) {
    smooth.value = state.smooth;
    $("#path-smooth-out").textContent = smooth.value;
  }
  let changed = false;
  for (const which of ["from", "to"]) {
    const want = state[which] !== undefined ? Number(state[which]) : null;
    const have = ends[which];
    if (want !== null && Number.isInteger(want) && !(have && have.id === want)) {
      ends[which] = { id: want, ref: null };
      changed = true;
      api.image(want).then((ref) => {
        if (ends[which] && ends[which].id === want) {
          ends[which].ref = ref;
          renderEnds();
        }
      }, () => {});
    } else if (want === null && have && have.id !== undefined) {
      ends[which] = null;
      changed = true;
    }
  }
  const via = ids(state.via);
  $("#path-via").hidden = !via.length;
  $("#path-via").textContent = via.length ? `Through ${via.length} waypoint${via.length > 1 ? "s" : ""}: ${via.join(", ")}` : "";
  if (changed) renderEnds();
  if (ends.from && ends.to && key() !== requestKey && (state.v === "path" || state.v === "map")) go();
}

function key() {
  const part = (e) => (e ? (e.id !== undefined ? `i${e.id}` : `f${e.url}`) : "-");
  const s = getState();
  return [part(ends.from), part(ends.to), steps.value, s.smooth || "", s.via || ""].join("|");
}

function endCard(which) {
  const end = ends[which];
  const label = which === "from" ? "start" : "end";
  const input = el("input", { type: "file", accept: "image/*", class: "visually-hidden", id: `path-${which}-file` });
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    if (!file) return;
    if (ends[which] && ends[which].url) URL.revokeObjectURL(ends[which].url);
    ends[which] = { file, url: URL.createObjectURL(file) };
    writeEnds();
    renderEnds();
    if (ends.from && ends.to) go();
  });
  const buttons = el(
    "div",
    { class: "end-buttons" },
    input,
    el("label", { class: "button small", for: `path-${which}-file`, text: "Upload…" }),
    el("button", { type: "button", class: "button small", text: "Random", onclick: () => randomEnd(which) }),
  );
  if (!end) {
    return [el("div", { class: "end-empty" }, el("p", { text: `Choose the ${label}: upload an image, pick a random one, or use “${which === "from" ? "Start" : "End"} path here” on any image.` })), buttons];
  }
  const src = end.url || (end.ref && end.ref.thumbnail_url);
  const name = end.file ? `Your image: ${end.file.name || "upload"}` : end.ref ? altText(end.ref) : `Image ${end.id}`;
  return [
    el("div", { class: "end-chosen" }, src ? el("img", { src, alt: name }) : el("div", { class: "img-placeholder" }), el("p", { class: "end-name", text: name })),
    buttons,
  ];
}

function renderEnds() {
  $("#from-card").replaceChildren(...endCard("from"));
  $("#to-card").replaceChildren(...endCard("to"));
  $("#path-go").disabled = !(ends.from && ends.to);
}

async function randomEnd(which) {
  const stats = await app.statsReady;
  if (!stats || !stats.count) return;
  const other = ends[which === "from" ? "to" : "from"];
  let ref = null;
  for (let attempt = 0; attempt < 3 && (!ref || (other && other.id === ref.id)); attempt++) {
    try {
      ref = await api.imageAt(Math.floor(Math.random() * stats.count));
    } catch {
      ref = null;
    }
  }
  if (!ref) return;
  ends[which] = { id: ref.id, ref };
  writeEnds();
  renderEnds();
  if (ends.from && ends.to) go();
}

// The service answers with a chain of images; read it tolerantly so that a
// field renamed on the server degrades to missing numbers, not a broken page.
function readChain(body) {
  const list = body.chain || body.steps || body.images || body.path || [];
  return list.map((item, i) => {
    const img = item.image ? { ...item.image, ...item } : item;
    const score = img.similarity ?? img.score ?? undefined;
    return { ...img, score: i === 0 || score === null ? undefined : score, stop: Boolean(item.stop) };
  });
}

async function go() {
  if (!(ends.from && ends.to)) return;
  requestKey = key();
  if (controller) controller.abort();
  const mine = new AbortController();
  controller = mine;
  showError(errorBox, null);
  summary.textContent = "Finding a path…";
  document.body.classList.add("busy");
  const s = getState();
  // Smoothness is the snapshot's own default until someone moves the slider.
  const params = { max_steps: steps.value, smoothness: s.smooth, via: ids(s.via), avoid: ids(s.avoid) };
  try {
    let body;
    if (ends.from.file || ends.to.file) {
      const files = {};
      for (const which of ["from", "to"]) {
        const end = ends[which];
        const name = which === "from" ? "source" : "target";
        if (end.file) files[`${name}_file`] = end.file;
        else params[name] = end.id;
      }
      body = await api.pathUpload(params, files, mine.signal);
    } else {
      body = await api.path({ source: ends.from.id, target: ends.to.id, ...params }, mine.signal);
    }
    if (controller !== mine) return;
    chain = readChain(body);
    renderChain(body);
  } catch (err) {
    if (err.name === "AbortError") return;
    chain = null;
    strip.replaceChildren();
    summary.textContent = "";
    $("#path-after").hidden = true;
    showError(errorBox, err);
    if (app.map) app.map.showPath(null);
  } finally {
    if (controller === mine) {
      controller = null;
      document.body.classList.remove("busy");
    }
  }
}

function renderChain(body) {
  if (!getState().smooth && Number.isFinite(body.smoothness)) {
    smooth.value = String(body.smoothness);
    $("#path-smooth-out").textContent = smooth.value;
  }
  const items = [];
  const weakestAt = body.weakest_step ?? null;
  chain.forEach((img, i) => {
    if (i > 0) {
      const weak = i === weakestAt;
      items.push(
        el(
          "li",
          { class: `step${weak ? " weakest" : ""}`, "aria-hidden": "true", title: weak ? "The weakest step" : "Similarity to the previous image" },
          el("span", { text: img.score !== undefined && img.score !== null ? pct(img.score) : "→" }),
        ),
      );
    }
    const isEnd = i === 0 || i === chain.length - 1;
    const badge = i === 0 ? "start" : i === chain.length - 1 ? "end" : String(i);
    const uploaded = img.id === undefined || img.id === null || img.id < 0;
    if (uploaded) {
      const end = i === 0 ? ends.from : ends.to;
      items.push(el("li", { class: "card path-card upload", dataset: { index: i } }, el("div", { class: "card-main" }, el("img", { src: end && end.url, alt: "Your uploaded image" })), el("div", { class: "card-meta" }, el("span", { class: "badge", text: badge }), el("span", { class: "name", text: "your image" }))));
    } else {
      const card = imageCard(img, { onOpen: (x) => app.openPanel(x.id), score: undefined, badge });
      card.classList.add("path-card");
      if (isEnd) card.classList.add("end");
      card.dataset.index = i;
      card.querySelector(".card-main").setAttribute("aria-label", `Step ${i + 1} of ${chain.length}: ${altText(img)}${img.score !== undefined ? `, ${pct(img.score)} like the previous` : ""}. Open details`);
      card.querySelector(".card-main").title = `${img.path}\nOpen details`;
      items.push(card);
    }
  });
  strip.replaceChildren(...items);
  const scores = chain.map((c) => c.score).filter((x) => x !== undefined);
  const weakest = scores.length ? Math.min(...scores) : null;
  const mean = scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null;
  summary.textContent =
    `${chain.length} images` +
    (mean !== null ? ` · steps ${pct(mean)} alike on average, weakest ${pct(weakest)}` : "") +
    (body.took_ms !== undefined ? ` · ${Math.round(body.took_ms)} ms` : "");
  $("#path-after").hidden = false;
  if (app.map) app.map.showPath(chain.map((c) => c.id));
}

export function currentChain() {
  return chain;
}

// ---------------------------------------------------------------- slideshow

const dialog = $("#slideshow");
let slide = 0;
let timer = 0;
let playing = true;

function initSlideshow() {
  $("#slide-prev").addEventListener("click", () => show(slide - 1, true));
  $("#slide-next").addEventListener("click", () => show(slide + 1, true));
  $("#slide-pause").addEventListener("click", () => {
    playing = !playing;
    $("#slide-pause").textContent = playing ? "❚❚" : "▶";
    $("#slide-pause").setAttribute("aria-label", playing ? "Pause" : "Play");
    schedule();
  });
  $("#slide-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => clearTimeout(timer));
  dialog.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") show(slide - 1, true);
    if (e.key === "ArrowRight") show(slide + 1, true);
  });
}

function playSlideshow() {
  if (!chain || !chain.length) return;
  playing = true;
  dialog.showModal();
  show(0);
}

function show(i, manual = false) {
  if (!chain) return;
  slide = Math.max(0, Math.min(chain.length - 1, i));
  const img = chain[slide];
  const end = slide === 0 ? ends.from : slide === chain.length - 1 ? ends.to : null;
  const uploaded = img.id === undefined || img.id === null || img.id < 0;
  const pic = $("#slide-img");
  pic.src = uploaded ? end && end.url : img.thumbnail_url;
  if (!uploaded && img.image_url) {
    // Sharpen to the original once it has loaded; the thumbnail shows at once.
    const full = new Image();
    full.onload = () => {
      if (chain && chain[slide] === img) pic.src = img.image_url;
    };
    full.src = img.image_url;
  }
  pic.alt = uploaded ? "Your uploaded image" : altText(img);
  $("#slide-caption").textContent = `${slide + 1} / ${chain.length} · ${uploaded ? "your image" : fileName(img.path)}${img.score !== undefined ? ` · ${pct(img.score)} like the previous` : ""}`;
  if (manual) clearTimeout(timer);
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (!playing || !dialog.open || !chain) return;
  timer = setTimeout(() => {
    if (slide < chain.length - 1) show(slide + 1);
    else {
      playing = false;
      $("#slide-pause").textContent = "▶";
    }
  }, 1800);
}
