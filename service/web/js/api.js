// The HTTP API, in one place. Every call throws ApiError with the server's
// own message ({"detail": ...}) so views can show it as it is.

import { askForKey, currentKey } from "./key.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  // FastAPI's 422: a list of {loc, msg}
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return null;
}

const FRIENDLY = {
  401: "This collection needs a key, and none was accepted.",
  413: "That file is too large for this server.",
  415: "That file is not an image format pixscape accepts (JPEG, PNG, WebP, GIF, BMP or TIFF).",
  503: "The collection is not ready yet: no snapshot has been published.",
};

async function send(url, options, key) {
  const headers = new Headers(options.headers || {});
  if (key) headers.set("X-API-Key", key);
  try {
    return await fetch(url, { ...options, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server cannot be reached. Is pixscape still running?");
  }
}

async function request(url, options = {}) {
  let key = currentKey();
  let res = await send(url, options, key);
  // A read key is set on the server: ask for it (once for all requests in
  // flight), then try again; a refused key asks again, Cancel gives up.
  while (res.status === 401) {
    if (currentKey() === key) {
      const entered = await askForKey(Boolean(key));
      if (!entered) break;
    }
    key = currentKey();
    res = await send(url, options, key);
  }
  if (!res.ok) {
    let detail = null;
    try {
      detail = detailText((await res.json()).detail);
    } catch {
      /* not JSON */
    }
    const friendly = FRIENDLY[res.status];
    const message = friendly && detail ? `${friendly} (${detail})` : friendly || detail || res.statusText;
    throw new ApiError(res.status, message);
  }
  return res;
}

const json = async (url, options) => (await request(url, options)).json();

function form(file) {
  const body = new FormData();
  body.append("file", file, file.name || "query");
  return body;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    p.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

export const api = {
  stats: () => json("/api/stats"),
  image: (id) => json(`/api/images/${id}`),
  // Ids have gaps where images were deleted: pick "the n-th image" by position.
  imageAt: async (offset) => (await json(`/api/images${qs({ offset, limit: 1 })}`)).images[0] || null,
  similar: (id, k, signal) => json(`/api/images/${id}/similar${qs({ k })}`, { signal }),
  search: (file, k, signal) => json(`/api/search${qs({ k })}`, { method: "POST", body: form(file), signal }),
  words: (q, k, signal) => json(`/api/search${qs({ q, k })}`, { signal }),
  concepts: (prefix, signal) => json(`/api/concepts${qs({ prefix, limit: 8 })}`, { signal }),
  maps: () => json("/api/maps"),
  map: (layout, signal) => request(`/api/maps/${encodeURIComponent(layout)}`, { signal }),
  atlasIndex: (url) => request(url),
  path: (params, signal) => json(`/api/path${qs(params)}`, { signal }),
  pathUpload: (params, files, signal) => {
    const body = new FormData();
    for (const [name, file] of Object.entries(files)) if (file) body.append(name, file, file.name || name);
    return json(`/api/path${qs(params)}`, { method: "POST", body, signal });
  },
  request,
};
