// A uniform grid over [0, 1]^2 in CSR form: hit tests and "what is in view"
// in time proportional to the answer, not to the collection.

export class SpatialGrid {
  constructor(xs, ys) {
    const n = xs.length;
    const g = Math.max(1, Math.ceil(Math.sqrt(n / 4)));
    this.g = g;
    this.xs = xs;
    this.ys = ys;
    const cellOf = new Int32Array(n);
    const counts = new Int32Array(g * g + 1);
    for (let i = 0; i < n; i++) {
      const c = this.cell(xs[i], ys[i]);
      cellOf[i] = c;
      if (c >= 0) counts[c + 1] += 1;
    }
    for (let c = 0; c < g * g; c++) counts[c + 1] += counts[c];
    this.start = counts;
    this.items = new Int32Array(counts[g * g]);
    const fill = counts.slice(0, g * g);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) this.items[fill[cellOf[i]]++] = i;
  }

  cell(x, y) {
    if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) return -1;
    const g = this.g;
    return Math.min(g - 1, Math.floor(y * g)) * g + Math.min(g - 1, Math.floor(x * g));
  }

  /** Ids with a position inside the rectangle. */
  query(x0, y0, x1, y1) {
    const g = this.g;
    const c0 = Math.max(0, Math.floor(x0 * g));
    const c1 = Math.min(g - 1, Math.floor(x1 * g));
    const r0 = Math.max(0, Math.floor(y0 * g));
    const r1 = Math.min(g - 1, Math.floor(y1 * g));
    const out = [];
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * g + c;
        for (let k = this.start[cell]; k < this.start[cell + 1]; k++) {
          const i = this.items[k];
          const x = this.xs[i];
          const y = this.ys[i];
          if (x >= x0 && x <= x1 && y >= y0 && y <= y1) out.push(i);
        }
      }
    }
    return out;
  }

  /** The id whose square of half-side `half` holds (x, y), nearest centre first; -1 if none. */
  nearest(x, y, half) {
    let best = -1;
    let bestD = Infinity;
    for (const i of this.query(x - half, y - half, x + half, y + half)) {
      const d = Math.max(Math.abs(this.xs[i] - x), Math.abs(this.ys[i] - y));
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }
}
