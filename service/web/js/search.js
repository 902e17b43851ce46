// Search: type a word (with completion), drop, pick or paste an image, or start
// from an indexed one.

import { api } from "./api.js";
import { app } from "./app.js";
import { getState, setState } from "./state.js";
import { $, altText, el, imageCard, showError } from "./ui.js";

const MAX_K = 200;
const results = $("#results");
const head = $("#results-head");
const errorBox = $("#search-error");
const kSelect = $("#k-select");

let query = null; // {file, url} for an upload, {id, ref} for an indexed image, {words} for words
let shown = []; // results on screen, in order
let k = 20;
let loading = null; // AbortController of the request in flight
let exhausted = false;
let observer = null;

export function initSearch() {
  const input = $("#file-input");
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) searchFile(input.files[0]);
    input.value = "";
  });
  kSelect.addEventListener("change", () => {
    k = Number(kSelect.value);
    setState({ k: k === 20 ? null : k }, { silent: true });
    rerun();
  });
  $("#search-clear").addEventListener("click", () => {
    clear();
    setState({ like: null }, { push: true });
  });
  setupDropAndPaste();
  setupWords();
  observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "400px" });
  observer.observe($("#results-more"));
}

/** Apply the URL's search state (k, like=ID, q=words). */
export function applySearchState(state) {
  const wantK = clampK(Number(state.k) || 20);
  const like = state.like !== undefined ? Number(state.like) : null;
  const words = state.q || null;
  if (wantK !== k) {
    k = wantK;
    if (![...kSelect.options].some((o) => Number(o.value) === k)) kSelect.append(el("option", { value: k, text: k }));
    kSelect.value = String(k);
    if (query) rerun();
  }
  if (like !== null && Number.isInteger(like) && !(query && query.id === like)) searchId(like, { write: false });
  if (like === null && query && query.id !== undefined) clear();
  if (words && !(query && query.words === words)) searchWords(words, { write: false });
  if (!words && query && query.words !== undefined) clear();
  if (!query) showSamples();
}

function setupWords() {
  const form = $("#word-form");
  const input = $("#word-input");
  const list = $("#word-list");
  let pending = null;
  let timer = 0;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (text) searchWords(text);
  });
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const prefix = input.value.trim();
      if (pending) pending.abort();
      if (prefix.length < 2) return list.replaceChildren();
      pending = new AbortController();
      try {
        const body = await api.concepts(prefix, pending.signal);
        // Words this collection has images of first; the server orders the rest.
        const words = [...body.words].sort((a, b) => (b.images > 0) - (a.images > 0));
        list.replaceChildren(
          ...words.map((w) => el("option", { value: w.word, label: w.images ? `${w.images} here` : "none here" })),
        );
      } catch {
        /* completion is a help, never an error */
      }
    }, 120);
  });
}

/** Search by words (a word, a phrase, or several separated by commas). */
export function searchWords(text, { write = true } = {}) {
  if (query && query.url) URL.revokeObjectURL(query.url);
  query = { words: text };
  $("#word-input").value = text;
  if (write) setState({ v: "search", q: text, like: null, sel: null }, { push: true });
  showQuery(null, "", "");
  shown = [];
  results.replaceChildren();
  run();
}

const clampK = (n) => Math.max(1, Math.min(MAX_K, Math.round(n)));

function setupDropAndPaste() {
  const overlay = $("#drop-overlay");
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth += 1;
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  document.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    depth = 0;
    overlay.hidden = true;
    if (!hasFiles(e)) return;
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) searchFile(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === "file");
    if (!item) return;
    const file = item.getAsFile();
    if (file) {
      e.preventDefault();
      searchFile(file);
    }
  });
}

export function searchFile(file) {
  if (query && query.url) URL.revokeObjectURL(query.url);
  query = { file, url: URL.createObjectURL(file) };
  app.lastUpload = { file, url: query.url, placement: null };
  if (getState().v !== "search" || getState().like || getState().q) setState({ v: "search", like: null, q: null, sel: null }, { push: true });
  $("#word-input").value = "";
  showQuery(query.url, file.name ? `Your image: ${file.name}` : "Your image", "Your query image");
  run();
}

export function searchId(id, { write = true } = {}) {
  if (query && query.url) URL.revokeObjectURL(query.url);
  query = { id };
  $("#word-input").value = "";
  if (write) setState({ v: "search", like: id, q: null }, { push: true });
  api
    .image(id)
    .then((ref) => {
      if (query && query.id === id) {
        query.ref = ref;
        showQuery(ref.thumbnail_url, `Like ${ref.path}`, `Query: ${altText(ref)}`);
      }
    })
    .catch(() => {});
  showQuery(null, "", "");
  run();
}

function showQuery(src, caption, alt) {
  const preview = $("#query-preview");
  const img = $("#query-img");
  if (src) {
    img.src = src;
    img.alt = alt;
  }
  preview.hidden = !src;
  $("#query-caption").textContent = caption;
  $("#dropzone").classList.toggle("has-query", Boolean(src));
  $("#search-clear").hidden = false;
  $("#search-empty").hidden = true;
}

function clear() {
  if (loading) loading.abort();
  if (query && query.url) URL.revokeObjectURL(query.url);
  query = null;
  shown = [];
  results.replaceChildren();
  head.textContent = "";
  showError(errorBox, null);
  $("#query-preview").hidden = true;
  $("#dropzone").classList.remove("has-query");
  $("#search-clear").hidden = true;
  $("#word-input").value = "";
  showSamples();
}

function rerun() {
  if (!query) return;
  shown = [];
  results.replaceChildren();
  run();
}

async function run(wanted = k) {
  if (!query) return;
  if (loading) loading.abort();
  const controller = new AbortController();
  loading = controller;
  const q = query;
  showError(errorBox, null);
  document.body.classList.add("busy");
  if (!shown.length) head.textContent = "Searching…";
  try {
    const body = q.file
      ? await api.search(q.file, wanted, controller.signal)
      : q.words !== undefined
        ? await api.words(q.words, wanted, controller.signal)
        : await api.similar(q.id, wanted, controller.signal);
    if (q !== query) return;
    if (q.file) app.lastUpload = { file: q.file, url: q.url, placement: body.placement || body.map || null, response: body };
    exhausted = body.results.length < wanted || wanted >= MAX_K;
    render(body);
  } catch (err) {
    if (err.name === "AbortError") return;
    if (q !== query) return;
    head.textContent = "";
    showError(errorBox, err);
    if (q.file) $("#query-caption").textContent = "This image could not be searched.";
  } finally {
    if (loading === controller) {
      loading = null;
      document.body.classList.remove("busy");
    }
  }
}

function render(body) {
  const seen = new Set(shown.map((r) => r.id));
  const fresh = body.results.filter((r) => !seen.has(r.id));
  shown.push(...fresh);
  const cards = fresh.map((r) =>
    imageCard(r, {
      onOpen: (img) => searchId(img.id),
      onDetails: (img) => app.openPanel(img.id),
      // For words: what the network saw, and how sure it is.
      ...(r.match ? { badge: r.match.concept, scoreWord: "sure" } : {}),
    }),
  );
  results.append(...cards);
  // Observe afresh: if the end of the grid is still in view, this loads more.
  const sentinel = $("#results-more");
  observer.unobserve(sentinel);
  requestAnimationFrame(() => observer.observe(sentinel));
  const took = body.took_ms !== undefined ? ` in ${Math.round(body.took_ms)} ms` : "";
  if (body.words && !body.query) return wordsHead(body.words, took);
  const where = app.lastUpload && query && query.file && app.lastUpload.placement ? " · " : "";
  head.replaceChildren(
    `${shown.length} most similar image${shown.length === 1 ? "" : "s"}${took}`,
    where,
    where ? el("a", { href: "#v=map&here=1", class: "link", text: "Show where it falls on the map" }) : "",
  );
}

function wordsHead(words, took) {
  const said = `“${words.words.join("”, “")}”`;
  const parts = [];
  if (shown.length) parts.push(`${shown.length} image${shown.length === 1 ? "" : "s"} the network calls ${said}${took}`);
  else if (words.words.length) parts.push(`No image here looks like ${said} to the network.`);
  else parts.push(`“${words.text}” is not among the network’s 1,000 concepts.`);
  if (words.unknown.length && words.words.length) parts.push(` Not known: ${words.unknown.join(", ")}.`);
  if (words.suggestions.length) {
    parts.push(" Try ");
    words.suggestions.forEach((w, i) => {
      if (i) parts.push(", ");
      parts.push(el("button", { type: "button", class: "link", text: w, onclick: () => searchWords(w) }));
    });
    parts.push(".");
  }
  head.replaceChildren(...parts);
}

function loadMore() {
  if (!query || loading || exhausted || !shown.length) return;
  const next = clampK(shown.length + Math.max(20, k));
  if (next <= shown.length) return;
  run(next);
}

let samplesShown = false;
async function showSamples() {
  $("#search-empty").hidden = false;
  if (samplesShown) return;
  const stats = await app.statsReady;
  if (!stats || !stats.count) return;
  samplesShown = true;
  const n = Math.min(12, stats.count);
  const picks = [...new Set(Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * stats.count) / n)))];
  const refs = await Promise.all(picks.map((at) => api.imageAt(at).catch(() => null)));
  $("#samples").replaceChildren(
    ...refs.filter(Boolean).map((r) => imageCard(r, { onOpen: (img) => searchId(img.id), onDetails: (img) => app.openPanel(img.id) })),
  );
}
