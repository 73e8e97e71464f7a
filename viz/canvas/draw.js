// draw.js: the map's pixels (the tiles the page holds, coarse to fine, masked cells hatched by reason) and the
// overlay canvas (query row, selection, hover, drag box). Functions take the canvas (`ac`, canvas.js) first.
//
// A tile: {r0, c0, pool, rows, cols, q (uint8 colour index) or values (float32), m (reason bits) or null};
// cell (i, j) of a tile covers cells [r0 + i * pool, r0 + (i + 1) * pool) x [c0 + j * pool, ...).

// From the overview's reason_table ([{bit, name, hatch}], in the order a cell with several reasons picks its
// hatch): the hatch kinds ("/", "\\", "x", ".", "-"; kind 0: "-" for bits outside the table) and, per uint8 of
// reason bits, its kind.
function hatchKinds(reasonTable) {
  const kinds = ["-", ...reasonTable.map((r) => r.hatch)];
  const kindOf = new Uint8Array(256).map((_, bits) => {
    const i = reasonTable.findIndex((r) => bits & r.bit);
    return i < 0 ? 0 : i + 1;
  });
  return { kinds, kindOf };
}

// what is drawn: the head's held tile, its finer tile, then detail tiles, coarse to fine (oldest first per pool)
function layers(ac) {
  const ov = ac.ov;
  const h = ac.head;
  const out = [ov.held[h]];
  const ht = ac.headTiles.get(`${ov.id}:${h}`);
  if (ht) out.push(ht);
  const ds = ac.details.filter((d) => d.overview === ov.id && d.head === h).reverse(); // oldest first
  out.push(...ds);
  for (const t of out) colourIndex(ov, t);
  return out.map((t, i) => [t, i]).sort((a, b) => b[0].pool - a[0].pool || a[1] - b[1]).map((x) => x[0]);
}

// a float tile's colour indices on the overview's value range (once per overview)
function colourIndex(ov, t) {
  if (t.q && t.qFor !== undefined && t.qFor !== ov.id) t.q = null;
  if (t.q || !t.values) return;
  const { lo, hi } = ov;
  const s = hi > lo ? 255 / (hi - lo) : 0;
  const q = new Uint8Array(t.values.length);
  for (let i = 0; i < q.length; i++) {
    const v = t.values[i];
    q[i] = v !== v ? 0 : clamp(Math.round((v - lo) * s), 0, 255);
  }
  t.q = q;
  t.qFor = ov.id;
}

function covers(v, t) {
  return t.r0 <= v.r0 && t.c0 <= v.c0 && t.r0 + t.rows * t.pool >= v.r1 && t.c0 + t.cols * t.pool >= v.c1;
}

// the pool of the finest tile that covers the whole view, times what the screen pools on top of it
function poolNote(v, dev, layers) {
  let best = null;
  for (const t of layers) if (covers(v, t)) best = t;
  best = best || layers[0];
  const perPx = Math.max((v.r1 - v.r0) / dev.H, (v.c1 - v.c0) / dev.W);
  if (perPx > best.pool * 1.0001) { // the screen pools several of the tile's cells or blocks into one pixel
    const n = Math.round(perPx);
    return { pool: best.pool * Math.ceil(perPx / best.pool - 1e-9), exact: false,
      text: `max over ${n} × ${n} cells per pixel` };
  }
  return { pool: best.pool, exact: best.pool === 1,
    text: best.pool === 1 ? "exact" : `max over ${best.pool} × ${best.pool} blocks` };
}

function paintMap(ac, layers) {
  const d = ac.dev;
  const v = ac.view;
  const out = new Uint32Array(ac.image.data.buffer);
  out.fill(0);
  const lut = ac.ov.lut;
  const { table, size, kindOf } = hatchTable(ac);
  const hatch = (bits, x, y) => table[kindOf[bits]][(y % size) * size + (x % size)];
  const cr = (v.r1 - v.r0) / d.H;
  const cc = (v.c1 - v.c0) / d.W;
  let first = 0; // layers under one that covers the whole view are not drawn
  layers.forEach((t, i) => { if (covers(v, t)) first = i; });
  for (const t of layers.slice(first)) {
    // per device column / row: the tile's first index and how many it spans (0: not covered)
    const span = (n, cells, a0, t0, pool, count) => {
      const first = new Int32Array(n);
      const len = new Int32Array(n);
      for (let x = 0; x < n; x++) {
        const lo = a0 + x * cells;
        const mid = lo + cells / 2;
        if (mid < t0 || mid >= t0 + count * pool) continue;
        if (cells <= pool) { first[x] = Math.floor((mid - t0) / pool); len[x] = 1; continue; }
        const i0 = clamp(Math.floor((lo - t0) / pool + 1e-9), 0, count - 1); // no neighbour by rounding
        const i1 = clamp(Math.ceil((lo + cells - t0) / pool - 1e-9), i0 + 1, count);
        first[x] = i0;
        len[x] = i1 - i0;
      }
      return [first, len];
    };
    const [fx, nx] = span(d.W, cc, v.c0, t.c0, t.pool, t.cols);
    const [fy, ny] = span(d.H, cr, v.r0, t.r0, t.pool, t.rows);
    const q = t.q;
    const m = t.m;
    const cols = t.cols;
    for (let y = 0; y < d.H; y++) {
      const hy = ny[y];
      if (!hy) continue;
      const row = y * d.W;
      const base = fy[y] * cols;
      for (let x = 0; x < d.W; x++) {
        const hx = nx[x];
        if (!hx) continue;
        if (hy === 1 && hx === 1) {
          const k = base + fx[x];
          out[row + x] = m && m[k] ? hatch(m[k], x, y) : lut[q[k]];
          continue;
        }
        // the screen pools several tile cells into this pixel: max over the unmasked ones
        let best = -1;
        let bits = 0;
        for (let i = 0; i < hy; i++) {
          const rk = base + i * cols + fx[x];
          for (let j = 0; j < hx; j++) {
            const k = rk + j;
            if (m && m[k]) bits |= m[k];
            else if (q[k] > best) best = q[k];
          }
        }
        out[row + x] = best >= 0 ? lut[best] : hatch(bits, x, y);
      }
    }
  }
  ac.ctx.putImageData(ac.image, d.X, d.Y);
}

// per hatch kind, one size x size tile of colours in device pixels (grey, white lines); kept until the pixel
// ratio or the overview's reason table changes
function hatchTable(ac) {
  const size = Math.max(4, Math.round(6 * ac.dpr));
  const { kinds, kindOf } = ac.ov.hatchKinds;
  const key = `${size}:${kinds.join(" ")}`;
  if (ac.hatch && ac.hatch.key === key) return ac.hatch;
  const lw = Math.max(1, Math.round(ac.dpr));
  const grey = packRgb(...hexRgb(MASK_GREY));
  const white = packRgb(...hexRgb(HATCH_LINE));
  const table = kinds.map((kind) => {
    const t = new Uint32Array(size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const a = (x + y) % size < lw;
        const b = (((x - y) % size) + size) % size < lw;
        const on = kind === "/" ? a : kind === "\\" ? b : kind === "x" ? a || b :
          kind === "." ? x < lw * 2 && y < lw * 2 : y < lw;
        t[y * size + x] = on ? white : grey;
      }
    }
    return t;
  });
  ac.hatch = { key, size, table, kindOf };
  return ac.hatch;
}

// the overlay canvas: the query row, the selection, the box being dragged, the hovered cell
function drawOverlay(ac) {
  const ctx = ac.octx;
  if (!ac.map) return;
  const m = ac.map;
  const v = ac.view;
  const rect = (r0, r1, c0, c1) => cellRect(m, v, r0, r1, c0, c1);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ac.over.width, ac.over.height);
  ctx.setTransform(ac.dpr, 0, 0, ac.dpr, 0, 0);
  ctx.save();
  ctx.beginPath();
  ctx.rect(m.x, m.y, m.w, m.h);
  ctx.clip();
  const outline = (box, colour, width, dash = []) => {
    ctx.setLineDash(dash);
    ctx.lineWidth = width + 2;
    ctx.strokeStyle = "rgba(0,0,0,0.55)";
    ctx.strokeRect(...box);
    ctx.lineWidth = width;
    ctx.strokeStyle = colour;
    ctx.strokeRect(...box);
    ctx.setLineDash([]);
  };
  const ov = ac.ov;
  if (ac.query !== null && ac.query < ov.n_rows) outline(rect(ac.query, ac.query + 1, 0, ov.n_cols), "#ffffff", 1.5);
  const s = ac.selection;
  if (s) {
    if (s.kind === "cells") for (const [r, c] of s.cells) outline(rect(r, r + 1, c, c + 1), SEL_COLOUR, 2);
    if (s.kind === "row") outline(rect(s.row, s.row + 1, 0, ov.n_cols), SEL_COLOUR, 2);
    if (s.kind === "column") outline(rect(0, ov.n_rows, s.col, s.col + 1), SEL_COLOUR, 2);
    if (s.kind === "rect") outline(rect(s.r0, s.r1, s.c0, s.c1), SEL_COLOUR, 2, [5, 3]);
  }
  const d = ac.drag;
  if (d && d.box && d.moved) {
    const [r0, r1, c0, c1] = boxCells(ov, toCell(m, v, d.x0, d.y0), toCell(m, v, d.x, d.y));
    outline(rect(r0, r1, c0, c1), d.box === "zoom" ? "#ffffff" : SEL_COLOUR, 1.5, [4, 3]);
  }
  if (ac.hover) outline(rect(ac.hover.r, ac.hover.r + 1, ac.hover.c, ac.hover.c + 1), "#ffffff", 1);
  ctx.restore();
}
