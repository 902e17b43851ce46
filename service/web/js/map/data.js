// Reading the map endpoints into flat typed arrays indexed by image id.
//
// Internally a map is {name, n (ids: max id + 1), count (images), x: Float32Array, y: Float32Array,
// cluster: Int32Array, clusters: [{id, label, x, y, size}], cell}, and the
// atlas is {cell, sheets: [{url, width, height}], sheetOf: Int32Array, uv: Float32Array}.

import { api, ApiError } from "../api.js";

const NAMES = { tsne: "t-SNE", umap: "UMAP", grid: "Grid" };
export const layoutTitle = (name) => NAMES[name] || name;

/** The maps index: {layouts: [{name, quality, grid}], clusters, atlasUrl}; no layouts when none. */
export async function listLayouts() {
  let body;
  try {
    body = await api.maps();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { layouts: [], clusters: [], atlasUrl: null };
    throw err;
  }
  return { layouts: body.layouts || [], clusters: body.clusters || [], atlasUrl: body.atlas_url || null };
}

const MAGIC = "PXMAP1";
const ARRAYS = { int32: Int32Array, float32: Float32Array, int16: Int16Array };

/** Decode GET /api/maps/{layout} (binary: magic, uint32 header length, JSON header, columns). */
export async function loadLayout(name, signal) {
  const res = await api.map(name, signal);
  const buf = await res.arrayBuffer();
  const bytes = new Uint8Array(buf);
  if (String.fromCharCode(...bytes.subarray(0, 6)) !== MAGIC) throw new Error(`the ${name} map is not in a format this page reads`);
  const size = new DataView(buf).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + size)));
  const count = header.count;
  const col = {};
  for (const c of header.columns) col[c.name] = new ARRAYS[c.dtype](buf, c.offset, count);
  // Arrays are indexed by catalog id. Ids are stable across snapshots, so a
  // collection that lost images has gaps: those ids keep NaN and are not drawn.
  let n = count;
  if (col.id) for (let k = 0; k < count; k++) n = Math.max(n, col.id[k] + 1);
  const x = new Float32Array(n).fill(NaN);
  const y = new Float32Array(n).fill(NaN);
  const cluster = new Int32Array(n).fill(-1);
  for (let k = 0; k < count; k++) {
    const id = col.id ? col.id[k] : k;
    if (id < 0 || id >= n) continue;
    x[id] = col.x[k];
    y[id] = col.y[k];
    if (col.cluster) cluster[id] = col.cluster[k];
  }
  const clusters = (header.clusters || []).map((c) => {
    const at = (c.centers && c.centers[name]) || [NaN, NaN];
    // The region's name in words; snapshots built before names have only the folder.
    const label = c.name || (c.label ? c.label.replaceAll("_", " ") : null);
    return { id: c.id, label, x: at[0], y: at[1], size: c.size, representative: c.representative };
  });
  return { name, n, count, x, y, cluster, clusters, quality: header.quality, cell: header.grid ? header.grid.cell : null };
}

/** Where the last upload falls on `layout`, from the search response, or null. */
export function placementOn(upload, layout) {
  const p = upload && upload.placement && upload.placement[layout];
  return p && Number.isFinite(p.x) && Number.isFinite(p.y) ? { x: p.x, y: p.y } : null;
}

/**
 * The atlas at its smallest cell size, as per-image sheet numbers and UV
 * rectangles (the index is a rule: sheet = id // per_sheet, then row-major
 * cells), or null when the snapshot has no atlas.
 */
export async function loadAtlas(url, n) {
  if (!url) return null;
  const body = await (await api.atlasIndex(url)).json();
  const level = [...body.sizes].sort((a, b) => a.cell - b.cell)[0];
  if (!level || !level.sheets.length) return null;
  const { cell, columns, per_sheet: perSheet } = level;
  const sheetOf = new Int32Array(n).fill(-1);
  const uv = new Float32Array(n * 4);
  const sheets = level.sheets;
  for (let id = 0; id < Math.min(n, body.count); id++) {
    const s = Math.floor(id / perSheet);
    const sheet = sheets[s];
    if (!sheet) continue;
    const i = id % perSheet;
    sheetOf[id] = s;
    uv[id * 4] = ((i % columns) * cell) / sheet.width;
    uv[id * 4 + 1] = (Math.floor(i / columns) * cell) / sheet.height;
    uv[id * 4 + 2] = cell / sheet.width;
    uv[id * 4 + 3] = cell / sheet.height;
  }
  return { cell, sheets: sheets.map((s) => ({ url: s.url, width: s.width, height: s.height })), sheetOf, uv };
}
