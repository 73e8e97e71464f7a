// axes.js: the text and scales around the map: title and note, tick labels (tokens once they fit, else
// positions), the colour bar with its masked swatch, the cell grid. Functions take the canvas (`ac`) first.

function font(ac, px, weight = 400) {
  return `${weight} ${px}px ${ac.fontFamily || "sans-serif"}`;
}

function tickText(v) {
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

// "12·the", and "→ next" where the overview says what each row produces
function rowLabel(ov, i) {
  const t = ov.rowTokens ? ov.rowTokens[i] : undefined;
  let s = t === undefined ? String(i) : `${i}·${t}`;
  if (ov.produces && ov.produces[i] !== undefined) s += ` → ${ov.produces[i]}`;
  return s;
}

function colLabel(ov, j) {
  const t = ov.colTokens ? ov.colTokens[j] : undefined;
  return t === undefined ? String(j) : `${j}·${t}`;
}

// the page's font and text colour (the host themes .attn), and per overview (once) the width of the widest labels:
// ac.LW (rows, CSS px); ov.BH (keys standing up), ov.flatBH and ov.colW (keys lying flat, if they are short)
function measureLabels(ac) {
  if (!ac.fontFamily) {
    const css = getComputedStyle(ac.root);
    ac.fontFamily = css.fontFamily || "sans-serif";
    ac.textColour = css.color || "#31333f";
  }
  const ov = ac.ov;
  if (ov.LW === undefined) {
    const ctx = ac.ctx;
    ctx.font = font(ac, 11);
    const widest = (n, label) => {
      const step = Math.max(1, Math.floor(n / 1500));
      let w = ctx.measureText(String(n)).width;
      for (let i = 0; i < n; i += step) w = Math.max(w, ctx.measureText(label(i)).width);
      return w;
    };
    ov.LW = clamp(Math.ceil(widest(ov.n_rows, (i) => rowLabel(ov, i))) + 12, 44, 190);
    const colW = Math.ceil(widest(ov.n_cols, (j) => colLabel(ov, j)));
    ov.BH = clamp(colW + 10, 30, 120) + 4;
    ov.colW = colW;
    ov.flatBH = ov.n_cols <= ov.exactMax ? 22 : 0; // flat labels are tried on maps labelled token by token
  }
  ac.LW = ov.LW;
}

// text cut to maxW CSS px in the current font, with "…" (cached)
function fit(ac, text, maxW) {
  const key = ac.ctx.font + "|" + maxW + "|" + text;
  let out = ac.fitCache.get(key);
  if (out !== undefined) return out;
  const ctx = ac.ctx;
  out = text;
  if (ctx.measureText(text).width > maxW) {
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid;
      else hi = mid - 1;
    }
    out = text.slice(0, lo) + "…";
  }
  if (ac.fitCache.size > 5000) ac.fitCache.clear();
  ac.fitCache.set(key, out);
  return out;
}

function drawAxes(ac, note) {
  const ctx = ac.ctx;
  const ov = ac.ov;
  const m = ac.map;
  const v = ac.view;
  const fg = ac.textColour;
  ctx.fillStyle = fg;
  ctx.textBaseline = "alphabetic";
  ctx.textAlign = "left";
  const name = (ov.heads && ov.heads[ac.head]) || String(ac.head);
  ctx.font = font(ac, 14, 600);
  const title = fit(ac, `${ov.title ? ov.title + " · " : ""}head ${name}`, ac.W - 8);
  ctx.fillText(title, 4, 15);
  const after = 4 + ctx.measureText(title).width + 12;
  ctx.font = font(ac, 12);
  ctx.globalAlpha = 0.75;
  const r1 = Math.ceil(v.r1) - 1;
  const c1 = Math.ceil(v.c1) - 1;
  const range = `queries ${Math.floor(v.r0)}–${r1} × keys ${Math.floor(v.c0)}–${c1} ` +
    `of ${ov.n_rows} × ${ov.n_cols}`;
  if (ac.W - after > 60) ctx.fillText(fit(ac, `${note.text} · ${range}`, ac.W - after - 4), after, 15);
  ctx.globalAlpha = 1;

  // axis names in the free corners
  ctx.font = font(ac, 11, 600);
  ctx.textAlign = "right";
  ctx.fillText("query ↓", m.x - 4, m.y - 6);
  ctx.textAlign = "left";
  ctx.fillText("key →", 4, m.y + m.h + 14);

  // ticks: tokens when the view is exact enough to read them, positions otherwise
  ctx.font = font(ac, 11);
  ctx.fillStyle = fg;
  const rowsSpan = v.r1 - v.r0;
  const colsSpan = v.c1 - v.c0;
  const rowPx = m.h / rowsSpan;
  const colPx = m.w / colsSpan;
  const tokensRows = rowsSpan <= ov.exactMax;
  const tokensCols = colsSpan <= ov.exactMax;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const rowStep = tokensRows ? niceStep(13 / rowPx) : niceStep(36 / rowPx);
  const rowRects = [];
  for (let i = Math.ceil(v.r0 / rowStep) * rowStep; i < v.r1; i += rowStep) {
    const y = m.y + ((tokensRows ? i + 0.5 : i) - v.r0) * rowPx;
    if (y < m.y - 0.5 || y > m.y + m.h + 0.5) continue;
    const text = fit(ac, tokensRows ? rowLabel(ov, i) : String(i), ac.LW - 10);
    ctx.fillText(text, m.x - 5, y);
    ctx.fillRect(m.x - 3, y - 0.5, 3, 1);
    const w = ctx.measureText(text).width;
    rowRects.push({ i, text, x: m.x - 5 - w, y: y - 6.5, w, h: 13 });
  }
  // keys: flat under their column when each fits it (short maps), else standing up, every colStep-th
  const flat = ac.flatCols && tokensCols;
  const colStep = flat ? 1 : tokensCols ? niceStep(13 / colPx) : niceStep(48 / colPx);
  const colRects = [];
  ctx.save();
  for (let j = Math.ceil(v.c0 / colStep) * colStep; j < v.c1; j += colStep) {
    const x = m.x + ((tokensCols ? j + 0.5 : j) - v.c0) * colPx;
    if (x < m.x - 0.5 || x > m.x + m.w + 0.5) continue;
    ctx.fillRect(x - 0.5, m.y + m.h, 1, 3);
    if (flat) {
      const text = fit(ac, colLabel(ov, j), colPx - 4);
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.fillText(text, x, m.y + m.h + 5);
      const w = ctx.measureText(text).width;
      colRects.push({ j, text, x: x - w / 2, y: m.y + m.h + 5, w, h: 13 });
      continue;
    }
    const text = fit(ac, tokensCols ? colLabel(ov, j) : String(j), ac.BH - 10);
    ctx.setTransform(ac.dpr, 0, 0, ac.dpr, 0, 0);
    ctx.translate(x, m.y + m.h + 5);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(text, 0, 0);
    ctx.setTransform(ac.dpr, 0, 0, ac.dpr, 0, 0);
    const w = ctx.measureText(text).width;
    colRects.push({ j, text, x: x - 6.5, y: m.y + m.h + 5, w: 13, h: w });
  }
  ctx.restore();
  ac.stat.labels = { rows: rowRects, cols: colRects, flat };
  drawColourBar(ac);
}

// the reason bits of the shown head's masked cells (its tiles and details)
function maskBits(ac) {
  let bits = ac.ov.reasonBits || 0;
  const ht = ac.headTiles.get(`${ac.ov.id}:${ac.head}`);
  for (const t of [ht, ...ac.details.filter((d) => d.head === ac.head)]) {
    if (t && t.m && !t.bitsOf) { let b = 0; for (let i = 0; i < t.m.length; i++) b |= t.m[i]; t.bitsOf = b | 256; }
    if (t && t.bitsOf) bits |= t.bitsOf & 255;
  }
  return bits;
}

// right of the map: lo at the bottom, hi at the top, the value's name; below it one hatched swatch per reason the
// map's masked cells have (its hatch and its name, from the overview's reason table)
function drawColourBar(ac) {
  const ctx = ac.ctx;
  const ov = ac.ov;
  const m = ac.map;
  const x = m.x + m.w + 14;
  const w = 12;
  const bits = maskBits(ac);
  const present = (ov.reason_table || []).filter((r) => bits & r.bit);
  if (bits && !present.length) present.push({ bit: 0, name: "masked", hatch: "-" });
  const legend = present.length ? 8 + 17 * present.length : 0;
  const h = Math.max(40, m.h - legend);
  if (!ac.bar || ac.bar.name !== ov.colormap) { // 1 x 256 pixels, top = hi, drawn scaled
    const bar = document.createElement("canvas");
    bar.width = 1;
    bar.height = 256;
    const img = bar.getContext("2d").createImageData(1, 256);
    new Uint32Array(img.data.buffer).set(ov.lut.slice().reverse());
    bar.getContext("2d").putImageData(img, 0, 0);
    ac.bar = { name: ov.colormap, canvas: bar };
  }
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(ac.bar.canvas, 0, 0, 1, 256, x, m.y, w, h);
  ctx.strokeStyle = ac.textColour;
  ctx.globalAlpha = 0.4;
  ctx.strokeRect(x - 0.5, m.y - 0.5, w + 1, h + 1);
  ctx.globalAlpha = 1;
  ctx.fillStyle = ac.textColour;
  ctx.font = font(ac, 11);
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const ticks = [ov.lo, ov.hi];
  if (ov.lo < 0 && ov.hi > 0) ticks.push(0);
  else ticks.push((ov.lo + ov.hi) / 2);
  for (const t of ticks) {
    const y = m.y + h - ((t - ov.lo) / (ov.hi - ov.lo || 1)) * h;
    ctx.fillRect(x + w, y - 0.5, 3, 1);
    ctx.fillText(tickText(t), x + w + 5, y);
  }
  ctx.save();
  ctx.translate(x + w + 46 + 8, m.y + h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(fit(ac, ov.value_name || "value", h), 0, 0);
  ctx.restore();
  const { table, size } = hatchTable(ac);
  present.forEach((r, i) => {
    const y = m.y + h + 10 + 17 * i;
    swatch(ac, table[ac.ov.hatchKinds.kinds.indexOf(r.hatch)] || table[0], size, x, y, w, 12);
    ctx.fillStyle = ac.textColour;
    ctx.fillText(fit(ac, r.name, BAR_W - w - 20), x + w + 5, y + 6);
  });
  ac.stat.legend = present.map((r) => r.name);
}

// a hatch tile (device pixels, hatchTable) repeated over a CSS px rectangle, pixel for pixel as the map draws it
function swatch(ac, tile, size, x, y, w, h) {
  const X = Math.round(x * ac.dpr);
  const Y = Math.round(y * ac.dpr);
  const W = Math.round(w * ac.dpr);
  const H = Math.round(h * ac.dpr);
  const img = ac.ctx.createImageData(W, H);
  const out = new Uint32Array(img.data.buffer);
  for (let j = 0; j < H; j++) {
    for (let i = 0; i < W; i++) out[j * W + i] = tile[((Y + j) % size) * size + ((X + i) % size)];
  }
  ac.ctx.putImageData(img, X, Y);
}

// cell borders once cells are at least 12 CSS px
function drawGrid(ac) {
  const ctx = ac.ctx;
  const m = ac.map;
  const v = ac.view;
  const rowPx = m.h / (v.r1 - v.r0);
  const colPx = m.w / (v.c1 - v.c0);
  if (Math.min(rowPx, colPx) < 12) return;
  ctx.fillStyle = "rgba(255,255,255,0.35)";
  for (let i = Math.ceil(v.r0); i <= v.r1; i++) ctx.fillRect(m.x, m.y + (i - v.r0) * rowPx - 0.5, m.w, 1);
  for (let j = Math.ceil(v.c0); j <= v.c1; j++) ctx.fillRect(m.x + (j - v.c0) * colPx - 0.5, m.y, 1, m.h);
}
