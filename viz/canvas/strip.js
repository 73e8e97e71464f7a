// strip.js: the query strip under the map: one query's weight on every key, from a "row" part (viz/map_parts.py
// row_part: float32 weights, uint8 allowed, the strongest keys), drawn as bars on a <canvas> (several keys per
// pixel: their largest weight) with the strongest keys as text. Keys the query may not attend get a grey tick.

const STRIP_H = 84; // CSS px of the bars

function stripElement() {
  const root = document.createElement("div");
  root.className = "attn-strip";
  root.hidden = true;
  root.innerHTML = `<div class="attn-strip-title"></div><canvas aria-label="query strip"></canvas>
    <div class="attn-strip-top"></div>`;
  return { root, canvas: root.querySelector("canvas"), title: root.querySelector(".attn-strip-title"),
    top: root.querySelector(".attn-strip-top"), row: null };
}

// strip: from stripElement; ov: the overview (labels, colour map); row: the unpacked "row" part
function drawStrip(strip, ov, row, width) {
  strip.row = row;
  strip.root.hidden = false;
  const label = (i, tokens) => `${i}·${tokens && tokens[i] !== undefined ? tokens[i] : ""}`;
  strip.title.textContent = `query ${label(row.query, ov.rowTokens)}: its weight on every key (head ` +
    `${(ov.heads || [])[row.head] ?? row.head})`;
  strip.top.textContent = "strongest keys: " + Array.from(row.top_keys, (k, i) =>
    `${label(k, ov.colTokens)} ${fmt(row.top_weights[i])}`).join(" · ");
  const dpr = window.devicePixelRatio || 1;
  const W = Math.max(120, Math.floor(width));
  const cv = strip.canvas;
  cv.width = Math.round(W * dpr);
  cv.height = Math.round(STRIP_H * dpr);
  cv.style.width = `${W}px`;
  cv.style.height = `${STRIP_H}px`;
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, STRIP_H);
  const n = row.weights.length;
  const lut = LUTS.viridis;
  const base = STRIP_H - 6;
  for (let x = 0; x < W; x++) {
    const k0 = Math.floor((x / W) * n);
    const k1 = Math.max(k0 + 1, Math.floor(((x + 1) / W) * n));
    let best = -1;
    let masked = false;
    for (let k = k0; k < k1 && k < n; k++) {
      if (!row.allowed[k]) masked = true;
      else if (row.weights[k] > best) best = row.weights[k];
    }
    if (best >= 0) {
      const q = clamp(Math.round(best * 255), 0, 255);
      ctx.fillStyle = `rgb(${lut[q * 3]},${lut[q * 3 + 1]},${lut[q * 3 + 2]})`;
      const h = Math.max(1, best * (base - 2));
      ctx.fillRect(x, base - h, 1, h);
    } else if (masked) {
      ctx.fillStyle = MASK_GREY;
      ctx.fillRect(x, base + 2, 1, 4);
    }
  }
}
