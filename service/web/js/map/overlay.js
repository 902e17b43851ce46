// The 2D overlay above the images: cluster names, the selection and its
// neighbours, the path, "you are here", the hovered image. A few dozen shapes
// per frame, so plain Canvas2D is plenty.

export function createOverlay(canvas) {
  const ctx = canvas.getContext("2d");
  let note = null;
  const hereImg = new Image();

  function pill(text, x, y, d, { bg = "rgba(20,20,26,0.82)", fg = "#f2f2f7", weight = 600, size = 12 } = {}) {
    ctx.font = `${weight} ${size * d}px system-ui, sans-serif`;
    const w = ctx.measureText(text).width + 12 * d;
    const h = (size + 8) * d;
    ctx.fillStyle = bg;
    ctx.beginPath();
    ctx.roundRect(x - w / 2, y - h / 2, w, h, h / 2);
    ctx.fill();
    ctx.fillStyle = fg;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, x, y + 0.5 * d);
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2];
  }

  function ring(x, y, r, colour, width) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.strokeRect(x - r, y - r, 2 * r, 2 * r);
  }

  return {
    resize(w, h) {
      canvas.width = w;
      canvas.height = h;
    },
    message(text) {
      note = text;
    },
    draw(v) {
      const { width, height, dpr: d, toScreen, posX, posY, camera, size } = v;
      ctx.clearRect(0, 0, width, height);
      if (note) {
        pill(note, width / 2, height / 2, d, { size: 14, weight: 500 });
        return;
      }
      const px = Math.max(size * camera.scale, 2 * d);
      const half = px / 2 + 2 * d;
      const at = (i) => toScreen(posX(i), posY(i));

      // Cluster names while the images are too small to read.
      if (v.clusters.length && px < 40 * d) {
        const placed = [];
        const sorted = [...v.clusters].sort((a, b) => b.size - a.size);
        for (const c of sorted) {
          if (!c.label || !Number.isFinite(c.x)) continue;
          const [x, y] = toScreen(c.x, c.y);
          if (x < 0 || y < 0 || x > width || y > height) continue;
          ctx.font = `650 ${13 * d}px system-ui, sans-serif`;
          const w = ctx.measureText(c.label).width + 14 * d;
          const box = [x - w / 2, y - 11 * d, x + w / 2, y + 11 * d];
          if (placed.some((b) => b[0] < box[2] && box[0] < b[2] && b[1] < box[3] && box[1] < b[3])) continue;
          placed.push(pill(c.label, x, y, d, { size: 13, weight: 650 }));
        }
      }

      // The path: a line through the chain, start and end marked.
      if (v.pathIds && v.pathIds.length > 1) {
        ctx.lineJoin = "round";
        ctx.lineCap = "round";
        for (const [colour, w] of [["rgba(0,0,0,0.55)", 6], ["#ffc53d", 3]]) {
          ctx.strokeStyle = colour;
          ctx.lineWidth = w * d;
          ctx.beginPath();
          v.pathIds.forEach((id, k) => {
            const [x, y] = at(id);
            if (k === 0) ctx.moveTo(x, y);
            else ctx.lineTo(x, y);
          });
          ctx.stroke();
        }
        v.pathIds.forEach((id, k) => {
          const [x, y] = at(id);
          const end = k === 0 || k === v.pathIds.length - 1;
          ctx.fillStyle = end ? "#ffc53d" : "#fff3c4";
          ctx.beginPath();
          ctx.arc(x, y, (end ? 6 : 3.5) * d, 0, Math.PI * 2);
          ctx.fill();
          ctx.strokeStyle = "#1b1b21";
          ctx.lineWidth = 1.5 * d;
          ctx.stroke();
        });
        const [sx, sy] = at(v.pathIds[0]);
        const [ex, ey] = at(v.pathIds[v.pathIds.length - 1]);
        pill("start", sx, sy - half - 12 * d, d, { bg: "#ffc53d", fg: "#1b1b21" });
        pill("end", ex, ey - half - 12 * d, d, { bg: "#ffc53d", fg: "#1b1b21" });
      }

      // The selection: lines to where its nearest neighbours really are.
      if (v.selection.id !== null && v.selection.id >= 0) {
        const [x, y] = at(v.selection.id);
        ctx.lineCap = "round";
        for (const [colour, w] of [["rgba(0,0,0,0.6)", 4], ["#8ab4ff", 2]]) {
          ctx.strokeStyle = colour;
          ctx.lineWidth = w * d;
          ctx.beginPath();
          for (const id of v.selection.neighbours) {
            const [nx, ny] = at(id);
            ctx.moveTo(x, y);
            ctx.lineTo(nx, ny);
          }
          ctx.stroke();
        }
        for (const id of v.selection.neighbours) {
          const [nx, ny] = at(id);
          ring(nx, ny, half, "#8ab4ff", 2 * d);
        }
        ring(x, y, half + 2 * d, "#000", 5 * d);
        ring(x, y, half + 2 * d, "#ffffff", 2.5 * d);
      }

      if (v.hover >= 0) {
        const [x, y] = at(v.hover);
        ring(x, y, half, "#ffffff", 2 * d);
      }

      // "You are here": the last uploaded image where it falls on this map.
      if (v.here) {
        const [x, y] = toScreen(v.here.x, v.here.y);
        const r = 22 * d;
        if (v.hereImage && hereImg.src !== v.hereImage) hereImg.src = v.hereImage;
        ctx.save();
        ctx.shadowColor = "rgba(0,0,0,0.6)";
        ctx.shadowBlur = 10 * d;
        ctx.fillStyle = "#e5484d";
        ctx.beginPath();
        ctx.moveTo(x, y);
        ctx.lineTo(x - 9 * d, y - r);
        ctx.lineTo(x + 9 * d, y - r);
        ctx.fill();
        ctx.beginPath();
        ctx.arc(x, y - r - r * 0.6, r, 0, Math.PI * 2);
        ctx.fill();
        ctx.restore();
        if (hereImg.complete && hereImg.naturalWidth) {
          ctx.save();
          ctx.beginPath();
          ctx.arc(x, y - r * 1.6, r - 3 * d, 0, Math.PI * 2);
          ctx.clip();
          const m = Math.min(hereImg.naturalWidth, hereImg.naturalHeight);
          ctx.drawImage(hereImg, (hereImg.naturalWidth - m) / 2, (hereImg.naturalHeight - m) / 2, m, m, x - r, y - r * 2.6, 2 * r, 2 * r);
          ctx.restore();
        } else if (v.hereImage) hereImg.onload = () => canvas.dispatchEvent(new Event("redraw"));
        pill("you are here", x, y - r * 3.1, d, { bg: "#e5484d" });
      }
    },
  };
}
