// WebGL2 renderer: every image is one instanced quad. Positions for the layout
// we come from and the one we go to are both on the GPU, so a layout switch is
// a single uniform animated from 0 to 1. Thumbnails come from atlas sheets
// (one draw call per sheet) and, when zoomed in, from individual thumbnails.

const VS = `#version 300 es
precision highp float;
layout(location = 0) in vec2 aCorner;
layout(location = 1) in vec4 aPos;    // from.xy, to.xy
layout(location = 2) in vec4 aUV;     // u0, v0, du, dv in the sheet
layout(location = 3) in vec4 aColor;  // placeholder colour
uniform vec2 uCenter;
uniform float uScale;
uniform vec2 uViewport;
uniform float uT;
uniform float uSize;
uniform float uMinPx;
out vec2 vUV;
out vec4 vColor;
void main() {
  vec2 p = mix(aPos.xy, aPos.zw, uT);
  float px = max(uSize * uScale, uMinPx);
  vec2 s = (p - uCenter) * uScale + aCorner * px;
  gl_Position = vec4(s.x * 2.0 / uViewport.x, -s.y * 2.0 / uViewport.y, 0.0, 1.0);
  vUV = aUV.xy + (aCorner + 0.5) * aUV.zw;
  vColor = aColor;
}`;

const FS = `#version 300 es
precision mediump float;
in vec2 vUV;
in vec4 vColor;
uniform sampler2D uTex;
uniform float uUseTex;
out vec4 outColor;
void main() {
  outColor = uUseTex > 0.5 ? vec4(texture(uTex, vUV).rgb, 1.0) : vColor;
}`;

const STRIDE = 12; // floats per instance: pos 4, uv 4, colour 4

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
  return s;
}

/** True where WebGL is emulated on the CPU: Canvas2D is faster there. */
function isSoftware(gl) {
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  return /swiftshader|llvmpipe|softpipe|software/i.test(String(name));
}

export function createGLRenderer(canvas, { allowSoftware = false } = {}) {
  const gl = canvas.getContext("webgl2", { antialias: false, alpha: false, premultipliedAlpha: false, powerPreference: "high-performance" });
  if (!gl) return null;
  if (!allowSoftware && isSoftware(gl)) return null;
  let program;
  try {
    program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  } catch (err) {
    console.warn("WebGL2 shaders failed, using Canvas2D:", err);
    return null;
  }
  const loc = {};
  for (const name of ["uCenter", "uScale", "uViewport", "uT", "uSize", "uMinPx", "uTex", "uUseTex"]) {
    loc[name] = gl.getUniformLocation(program, name);
  }
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const corners = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, corners);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5]), gl.STATIC_DRAW);
  gl.enableVertexAttribArray(0);
  gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
  const instances = gl.createBuffer();
  const single = gl.createBuffer(); // one instance at a time: zoomed-in thumbnails
  for (const i of [1, 2, 3]) {
    gl.enableVertexAttribArray(i);
    gl.vertexAttribDivisor(i, 1);
  }
  const bindInstances = (buffer, first) => {
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    const base = first * STRIDE * 4;
    gl.vertexAttribPointer(1, 4, gl.FLOAT, false, STRIDE * 4, base);
    gl.vertexAttribPointer(2, 4, gl.FLOAT, false, STRIDE * 4, base + 16);
    gl.vertexAttribPointer(3, 4, gl.FLOAT, false, STRIDE * 4, base + 32);
  };

  let count = 0;
  let runs = []; // [{sheet, first, count}] instances grouped by atlas sheet
  const sheetTex = new Map(); // sheet index -> texture
  const thumbTex = new Map(); // image id -> texture
  const singleData = new Float32Array(STRIDE);

  function texture(image) {
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, image);
    gl.generateMipmap(gl.TEXTURE_2D);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR_MIPMAP_LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    return t;
  }

  return {
    kind: "webgl2",
    /** scene: {n, fromX, fromY, toX, toY, color (Uint8 n*4), sheetOf (Int32 n|null), uv (Float32 n*4|null)} */
    setScene(scene) {
      const n = scene.n;
      // Order instances by sheet so each sheet is one contiguous draw.
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      if (scene.sheetOf) order.sort((a, b) => scene.sheetOf[a] - scene.sheetOf[b]);
      const data = new Float32Array(n * STRIDE);
      runs = [];
      for (let j = 0; j < n; j++) {
        const i = order[j];
        const o = j * STRIDE;
        data[o] = scene.fromX[i];
        data[o + 1] = scene.fromY[i];
        data[o + 2] = scene.toX[i];
        data[o + 3] = scene.toY[i];
        if (scene.uv) {
          data[o + 4] = scene.uv[i * 4];
          data[o + 5] = scene.uv[i * 4 + 1];
          data[o + 6] = scene.uv[i * 4 + 2];
          data[o + 7] = scene.uv[i * 4 + 3];
        }
        data[o + 8] = scene.color[i * 4] / 255;
        data[o + 9] = scene.color[i * 4 + 1] / 255;
        data[o + 10] = scene.color[i * 4 + 2] / 255;
        data[o + 11] = 1;
        const sheet = scene.sheetOf ? scene.sheetOf[i] : -1;
        const last = runs[runs.length - 1];
        if (last && last.sheet === sheet) last.count += 1;
        else runs.push({ sheet, first: j, count: 1 });
      }
      count = n;
      gl.bindBuffer(gl.ARRAY_BUFFER, instances);
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    },
    setSheet(index, image) {
      if (sheetTex.has(index)) gl.deleteTexture(sheetTex.get(index));
      sheetTex.set(index, texture(image));
    },
    clearSheets() {
      for (const t of sheetTex.values()) gl.deleteTexture(t);
      sheetTex.clear();
    },
    setThumb(id, image) {
      thumbTex.set(id, texture(image));
    },
    dropThumb(id) {
      const t = thumbTex.get(id);
      if (t) gl.deleteTexture(t);
      thumbTex.delete(id);
    },
    resize(w, h) {
      canvas.width = w;
      canvas.height = h;
    },
    /** cam: {cx, cy, scale (device px per world unit)}; t: transition; size: world sprite size */
    draw(cam, t, size, thumbs) {
      const w = canvas.width;
      const h = canvas.height;
      gl.viewport(0, 0, w, h);
      gl.clearColor(0.082, 0.082, 0.106, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      if (!count) return;
      gl.useProgram(program);
      gl.bindVertexArray(vao);
      gl.uniform2f(loc.uCenter, cam.cx, cam.cy);
      gl.uniform1f(loc.uScale, cam.scale);
      gl.uniform2f(loc.uViewport, w, h);
      gl.uniform1f(loc.uT, t);
      gl.uniform1f(loc.uSize, size);
      gl.uniform1f(loc.uMinPx, 2.0 * (window.devicePixelRatio || 1));
      gl.uniform1i(loc.uTex, 0);
      gl.activeTexture(gl.TEXTURE0);
      for (const run of runs) {
        const tex = run.sheet >= 0 ? sheetTex.get(run.sheet) : null;
        gl.uniform1f(loc.uUseTex, tex ? 1 : 0);
        if (tex) gl.bindTexture(gl.TEXTURE_2D, tex);
        bindInstances(instances, run.first);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, run.count);
      }
      // Zoomed in: the visible images again, from their own sharper thumbnails.
      if (thumbs && thumbs.length) {
        gl.uniform1f(loc.uUseTex, 1);
        gl.uniform1f(loc.uT, 1);
        for (const th of thumbs) {
          const tex = thumbTex.get(th.id);
          if (!tex) continue;
          singleData.set([th.x, th.y, th.x, th.y, th.u0, th.v0, th.du, th.dv, 0, 0, 0, 1]);
          gl.bindBuffer(gl.ARRAY_BUFFER, single);
          gl.bufferData(gl.ARRAY_BUFFER, singleData, gl.STREAM_DRAW);
          bindInstances(single, 0);
          gl.bindTexture(gl.TEXTURE_2D, tex);
          gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, 1);
        }
      }
    },
  };
}
