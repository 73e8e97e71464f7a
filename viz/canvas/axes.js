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

// the page's font and text colour (the host themes .attn), and the width of the widest labels: LW, BH in CSS px
function measureLabels(ac) {
  const css = getComputedStyle(ac.root);
  ac.fontFamily = css.fontFamily || "sans-serif";
  ac.textColour = css.color || "#31333f";
  const ctx = ac.ctx;
  const ov = ac.ov;
  ctx.font = font(ac, 11);
  const widest = (n, label) => {
    const step = Math.max(1, Math.floor(n / 1500));
    let w = ctx.measureText(String(n)).width;
    for (let i = 0; i < n; i += step) w = Math.max(w, ctx.measureText(label(i)).width);
    return w;
  };
  ac.LW = clamp(Math.ceil(widest(ov.n_rows, (i) => rowLabel(ov, i))) + 12, 44, 190);
  ac.BH = clamp(Math.ceil(widest(ov.n_cols, (j) => colLabel(ov, j))) + 10, 30, 120) + 4;
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
  ctx.fillText(fit(ac, `${ov.title ? ov.title + " · " : ""}head ${name}`, ac.W - 8), 4, 16);
  ctx.font = font(ac, 12);
  ctx.globalAlpha = 0.75;
  const r1 = Math.ceil(v.r1) - 1;
  const c1 = Math.ceil(v.c1) - 1;
  const range = `queries ${Math.floor(v.r0)}–${r1} × keys ${Math.floor(v.c0)}–${c1} ` +
    `of ${ov.n_rows} × ${ov.n_cols}`;
  ctx.fillText(fit(ac, `${note.text} · ${range}`, ac.W - 8), 4, 34);
  ctx.globalAlpha = 1;

  // axis names in the free corners
  ctx.font = font(ac, 11, 600);
  ctx.textAlign = "right";
  ctx.fillText("query ↓", m.x - 4, m.y - 9);
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
  for (let i = Math.ceil(v.r0 / rowStep) * rowStep; i < v.r1; i += rowStep) {
    const y = m.y + ((tokensRows ? i + 0.5 : i) - v.r0) * rowPx;
    if (y < m.y - 0.5 || y > m.y + m.h + 0.5) continue;
    ctx.fillText(fit(ac, tokensRows ? rowLabel(ov, i) : String(i), ac.LW - 10), m.x - 5, y);
    ctx.fillRect(m.x - 3, y - 0.5, 3, 1);
  }
  const colStep = tokensCols ? niceStep(13 / colPx) : niceStep(48 / colPx);
  ctx.save();
  for (let j = Math.ceil(v.c0 / colStep) * colStep; j < v.c1; j += colStep) {
    const x = m.x + ((tokensCols ? j + 0.5 : j) - v.c0) * colPx;
    if (x < m.x - 0.5 || x > m.x + m.w + 0.5) continue;
    ctx.fillRect(x - 0.5, m.y + m.h, 1, 3);
    ctx.setTransform(ac.dpr, 0, 0, ac.dpr, 0, 0);
    ctx.translate(x, m.y + m.h + 5);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "right";
    ctx.fillText(fit(ac, tokensCols ? colLabel(ov, j) : String(j), ac.BH - 10), 0, 0);
    ctx.setTransform(ac.dpr, 0, 0, ac.dpr, 0, 0);
  }
  ctx.restore();
  drawColourBar(ac);
}

function hasMasks(ac) {
  const ht = ac.headTiles.get(`${ac.ov.id}:${ac.head}`);
  return !!(ht && ht.m) || ac.details.some((d) => d.m && d.head === ac.head);
}

// right of the map: lo at the bottom, hi at the top, the value's name; a hatched "masked" swatch below
function drawColourBar(ac) {
  const ctx = ac.ctx;
  const ov = ac.ov;
  const m = ac.map;
  const x = m.x + m.w + 14;
  const w = 12;
  const masked = ov.reasons || hasMasks(ac);
  const h = Math.max(40, m.h - (masked ? 30 : 0));
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
  if (masked) {
    const y = m.y + h + 12;
    ctx.fillStyle = MASK_GREY;
    ctx.fillRect(x, y, w, 12);
    ctx.strokeStyle = HATCH_LINE;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let k = -12; k < 12; k += 4) { ctx.moveTo(x + k, y + 12); ctx.lineTo(x + k + 12, y); }
    ctx.save();
    ctx.rect(x, y, w, 12);
    ctx.clip();
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = ac.textColour;
    ctx.fillText("masked", x + w + 5, y + 6);
  }
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
