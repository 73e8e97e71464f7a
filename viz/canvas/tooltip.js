// tooltip.js: the hover's text (the exact value and both tokens, from the finest tile under the pointer) and the
// tooltip element. Functions take the canvas (`ac`) first.

function fmt(v) {
  if (v === Infinity) return "+∞";
  if (v === -Infinity) return "−∞";
  if (Number.isNaN(v)) return "NaN";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-4) ? v.toExponential(3) : v.toFixed(4);
}

// reason bits -> "causal + padding" (names from the overview's reason_table, lowest bit first)
function reasonText(reasonTable, bits) {
  return reasonTable.filter((r) => bits & r.bit).sort((a, b) => a.bit - b.bit).map((r) => r.name).join(" + ") ||
    "masked";
}

// cell (r, c) -> [first line, second line]
function describe(ac, r, c) {
  const ov = ac.ov;
  const reasons = (bits) => reasonText(ov.reason_table || [], bits);
  const vname = ov.value_name || "value";
  const rowText = (x) => (ov.produces ? `${x}·${ov.rowTokens[x]} (→ ${ov.produces[x]})` : rowLabel(ov, x));
  const all = layers(ac);
  for (let li = all.length - 1; li >= 0; li--) {
    const t = all[li];
    const i = Math.floor((r - t.r0) / t.pool);
    const j = Math.floor((c - t.c0) / t.pool);
    if (i < 0 || j < 0 || i >= t.rows || j >= t.cols) continue;
    const k = i * t.cols + j;
    const bits = t.m ? t.m[k] : 0;
    if (!t.values) continue; // uint8 tiles only if no detail covers the cell (below)
    if (t.pool === 1) {
      const v = t.values[k];
      const cell = `query ${rowText(r)} → key ${colLabel(ov, c)}`;
      if (bits) return [`${cell}: masked: ${reasons(bits)}`, `${vname} ${fmt(v)}`];
      return [`${cell}: ${fmt(v)}`, `${vname} · exact cell`];
    }
    const p = t.pool;
    const br0 = t.r0 + i * p;
    const bc0 = t.c0 + j * p;
    const block = `the ${p} × ${p} block at queries ${br0}–${Math.min(ov.n_rows, br0 + p) - 1}, ` +
      `keys ${bc0}–${Math.min(ov.n_cols, bc0 + p) - 1}`;
    if (bits) return [`${block}: masked: ${reasons(bits)}`, `every cell of the block is masked`];
    const a = t.argmax ? t.argmax[k] : 0;
    const argRow = br0 + Math.floor(a / p);
    const argCol = bc0 + (a % p);
    return [`max over ${block}: ${fmt(t.values[k])}`,
      `at query ${rowText(argRow)} → key ${colLabel(ov, argCol)} (${vname})`];
  }
  // no float tile covers it yet: the uint8 overview says roughly, the exact value is on its way
  const t = all.filter((x) => !x.values).pop();
  const p = t.pool;
  const i = Math.floor(r / p);
  const j = Math.floor(c / p);
  const k = i * t.cols + j;
  const cells = p === 1 ? `query ${rowLabel(ov, r)} → key ${colLabel(ov, c)}` :
    `max over the ${p} × ${p} block at queries ${i * p}–${Math.min(ov.n_rows, i * p + p) - 1}, ` +
    `keys ${j * p}–${Math.min(ov.n_cols, j * p + p) - 1}`;
  const sk = ac.skipped;
  const coarse = sk && sk.overview === ov.id && sk.head === ac.head; // cleared when a new view is reported
  const side = coarse ? Math.floor(Math.sqrt(sk.maxCells || 0)).toLocaleString("en-US") : "";
  if (t.m && t.m[k]) {
    return [`${cells}: masked: ${reasons(t.m[k])}`, coarse ? "from the overview" :
      "from the overview; the exact values are on their way"];
  }
  const approx = ov.lo + (t.q[k] / 255) * (ov.hi - ov.lo);
  return [`${cells}: ≈ ${tickText(approx)}`, coarse ? (sk.note ? `${vname}, from the uint8 overview; ${sk.note}` :
    `${vname}, from the uint8 overview; zoom in to at most ${side} × ${side} cells for exact values`) :
    `${vname}, from the uint8 overview; the exact value is on its way`];
}

// the tooltip for the cell under canvas CSS px (x, y), and that cell outlined
function showTip(ac, x, y) {
  const cell = toCell(ac.map, ac.view, x, y);
  const r = clamp(Math.floor(cell.r), 0, ac.ov.n_rows - 1);
  const c = clamp(Math.floor(cell.c), 0, ac.ov.n_cols - 1);
  ac.hover = { r, c };
  ac.stat.hover = { r, c };
  const lines = describe(ac, r, c);
  const tip = ac.tip;
  tip.replaceChildren(...lines.map((s, i) => {
    const div = document.createElement("div");
    div.textContent = s;
    if (i) div.className = "attn-tip-sub";
    return div;
  }));
  tip.hidden = false;
  const left = x + 14 + tip.offsetWidth > ac.W ? Math.max(0, x - 14 - tip.offsetWidth) : x + 14;
  tip.style.left = `${left}px`;
  tip.style.top = `${y + 16}px`;
  drawOverlay(ac);
}

function hideTip(ac) {
  ac.hover = null;
  ac.pointer = null;
  ac.stat.hover = null;
  ac.tip.hidden = true;
  drawOverlay(ac);
}
