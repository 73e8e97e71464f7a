// Attention map on a <canvas>, drawn from the uint8 tiles of viz/tiles.py (Streamlit components v2, no library).
//
// A map arrives in parts, each a separate mount of this component whose `data` is one packed part (bytes):
// "overview" (every head's tile, labels, range: the interactive instance), "head" (the selected head's finer
// tile) and "detail" (float32 cells or block maxima of the view the page reported). Parts find their instance
// by the `key` in their header. Every redraw is made from what the page holds, at once; the view, head, query
// and selection go back to Python as component state.

const EXACT_MAX_DEFAULT = 256;
const VIEW_REPORT_MS = 120; // the view is reported this long after the last zoom / pan step
const MASK_GREY = [0x8c, 0x8c, 0x8c]; // one grey for every masked cell (viz/heatmap.py MASK_COLOUR)
const HATCH = [0xff, 0xff, 0xff];
const HATCH_ORDER = [[2, "/"], [1, "\\"], [4, "x"], [8, "."], [128, "-"]]; // padding, causal, window, knocked out
const MIN_SPAN = 2; // cells: the deepest zoom shows 2 x 2 cells
const SEL_COLOUR = "#ff2d95";
const KINDS = ["-", ...HATCH_ORDER.map(([, k]) => k)]; // "-": reasons outside the legend
const KIND_OF = new Uint8Array(256).map((_, bits) => {
  const i = HATCH_ORDER.findIndex(([bit]) => bits & bit);
  return i < 0 ? 0 : i + 1;
});

// Viridis (matplotlib, CC0) and ColorBrewer RdBu (Apache-2.0, see NOTICE.md; reversed: blue below 0, red above),
// evenly spaced stops as in plotly.colors, interpolated linearly in RGB to 256 entries as Plotly does.
const STOPS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
    "#fde725"],
  rdbu_r: ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
    "#b2182b", "#67001f"],
};

function hexRgb(h) {
  const n = parseInt(h.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function buildLut(stops) {
  const rgb = stops.map(hexRgb);
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (rgb.length - 1);
    const a = Math.min(rgb.length - 2, Math.floor(t));
    const f = t - a;
    for (let k = 0; k < 3; k++) lut[i * 3 + k] = Math.round(rgb[a][k] + (rgb[a + 1][k] - rgb[a][k]) * f);
  }
  return lut;
}

const LUTS = Object.fromEntries(Object.entries(STOPS).map(([k, v]) => [k, buildLut(v)]));
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function packRgb(r, g, b) {
  return LITTLE ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
}

function lut32(name) {
  const lut = LUTS[name] || LUTS.viridis;
  const out = new Uint32Array(256);
  for (let i = 0; i < 256; i++) out[i] = packRgb(lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2]);
  return out;
}

// ---- the wire format of viz/tiles.py pack(): b"ATC1", uint32 header length, JSON header, 8-byte aligned buffers
const CTORS = { u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, f4: Float32Array };

function unpack(u8) {
  if (!(u8 instanceof Uint8Array) || u8.length < 8 || u8[0] !== 65 || u8[1] !== 84 || u8[2] !== 67 || u8[3] !== 49) {
    return null;
  }
  const n = new DataView(u8.buffer, u8.byteOffset, 8).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
  const start = Math.ceil((8 + n) / 8) * 8;
  const spans = header.$buffers || [];
  delete header.$buffers;
  const walk = (x) => {
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === "object") {
      if (typeof x.$ === "number" && x.dtype) {
        const [off, size] = spans[x.$];
        const Ctor = CTORS[x.dtype];
        let b = u8.subarray(start + off, start + off + size);
        if (b.byteOffset % Ctor.BYTES_PER_ELEMENT) b = b.slice(); // the message buffer need not be aligned
        const arr = Ctor === Uint8Array ? b : new Ctor(b.buffer, b.byteOffset, size / Ctor.BYTES_PER_ELEMENT);
        arr.shape = x.shape;
        return arr;
      }
      const o = {};
      for (const [k, v] of Object.entries(x)) o[k] = walk(v);
      return o;
    }
    return x;
  };
  return walk(header);
}

const decodeLabels = (blob) => (blob ? new TextDecoder().decode(blob).split("\n") : null);

function clamp(x, lo, hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

function fmt(v) {
  if (v === Infinity) return "+∞";
  if (v === -Infinity) return "−∞";
  if (Number.isNaN(v)) return "NaN";
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-4) ? v.toExponential(3) : v.toFixed(4);
}

function tickText(v) {
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

function niceStep(raw) { // 1, 2, 5, 10, 20, ... cells between ticks, at least raw
  if (raw <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

const instances = new Map(); // key -> AttentionCanvas
const waiting = new Map(); // key -> parts that arrived before their overview

function stats() {
  window.__attnCanvasStats = window.__attnCanvasStats || {};
  return window.__attnCanvasStats;
}

class AttentionCanvas {
  constructor(parent, key) {
    this.parent = parent;
    this.key = key;
    this.setState = () => {};
    this.ov = null;
    this.head = null;
    this.view = null;
    this.mode = "view";
    this.selection = null;
    this.query = null;
    this.headTiles = new Map(); // `${overview}:${head}` -> tile
    this.details = []; // newest first
    this.skipped = null; // {overview, head, maxCells}: the reported view is too big to read exactly
    this.detailRequests = 0; // deferred details asked for (each a new value, so each reruns the script)
    this.reported = {}; // what this page last told Python
    this.touched = false; // the user has moved the view (a fresh page adopts Python's view until then)
    this.history = [];
    this.fitCache = new Map();
    this.draws = 0;
    this.stat = { key, draws: 0, last: null, history: this.history, detail: null };
    stats()[key] = this.stat;
    this.stat.cellToClient = (r, c) => this.cellToClient(r, c);
    this.stat.devicePixel = (r, c) => this.devicePixel(r, c);
    this.stat.lut = (name, q) => Array.from((LUTS[name] || LUTS.viridis).subarray(q * 3, q * 3 + 3));
    this.build();
  }

  // ---- DOM
  build() {
    const root = document.createElement("div");
    root.className = "attn";
    root.innerHTML = `
      <div class="attn-bar">
        <div class="attn-heads" role="group" aria-label="head"></div>
        <div class="attn-tools" role="group" aria-label="zoom and pan">
          <button data-act="in" title="zoom in (+)">+</button>
          <button data-act="out" title="zoom out (−)">−</button>
          <button data-act="reset" title="whole map (0)">reset</button>
          <button data-act="left" title="pan left (←)">←</button>
          <button data-act="up" title="pan up (↑)">↑</button>
          <button data-act="down" title="pan down (↓)">↓</button>
          <button data-act="right" title="pan right (→)">→</button>
        </div>
        <div class="attn-modes" role="group" aria-label="select">
          <span class="attn-label">select</span>
          <button data-mode="view" aria-pressed="true" title="click: pick the query row; drag: pan">off</button>
          <button data-mode="cells" title="click cells to add or remove them">cells</button>
          <button data-mode="row" title="click a query row">row</button>
          <button data-mode="column" title="click a key column">column</button>
          <button data-mode="rect" title="drag a rectangle">rect</button>
          <button data-act="clear" title="clear the selection">clear</button>
        </div>
      </div>
      <div class="attn-stage">
        <canvas class="attn-map" tabindex="0" aria-label="attention map"></canvas>
        <canvas class="attn-over" aria-hidden="true"></canvas>
        <div class="attn-tip" role="tooltip" hidden></div>
      </div>
      <div class="attn-hint">wheel or +/−: zoom · drag: pan · shift+drag: zoom to a box · click: pick the query row ·
        keys ← ↑ ↓ → pan, 0 whole map, [ ] head</div>`;
    this.parent.appendChild(root);
    this.root = root;
    this.canvas = root.querySelector(".attn-map");
    this.over = root.querySelector(".attn-over");
    this.tip = root.querySelector(".attn-tip");
    this.headBox = root.querySelector(".attn-heads");
    this.ctx = this.canvas.getContext("2d");
    this.octx = this.over.getContext("2d");
    root.querySelector(".attn-tools").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (b) this.act(b.dataset.act, e.timeStamp);
    });
    root.querySelector(".attn-modes").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      if (b.dataset.act === "clear") this.setSelection(null);
      else this.setMode(b.dataset.mode);
    });
    this.headBox.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (b) this.setHead(Number(b.dataset.head), e.timeStamp);
    });
    this.headBox.addEventListener("change", (e) => this.setHead(Number(e.target.value), e.timeStamp));
    root.addEventListener("keydown", (e) => this.onKey(e));
    const c = this.canvas;
    c.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    c.addEventListener("pointerdown", (e) => this.onDown(e));
    c.addEventListener("pointermove", (e) => this.onMove(e));
    c.addEventListener("pointerup", (e) => this.onUp(e));
    c.addEventListener("pointercancel", () => { this.drag = null; this.drawOverlay(); });
    c.addEventListener("pointerleave", () => this.hideTip());
    this.resize = new ResizeObserver(() => { if (this.ov && this.layout()) this.draw("resize"); });
    this.resize.observe(root);
  }

  destroy() {
    this.resize.disconnect();
    clearTimeout(this.viewTimer);
    this.root.remove();
    if (instances.get(this.key) === this) instances.delete(this.key);
    if (stats()[this.key] === this.stat) delete stats()[this.key];
  }

  // ---- parts
  setOverview(ov, t0) {
    if (this.ov && this.ov.id === ov.id) return;
    const old = this.ov;
    const [H, r, c] = ov.tiles.shape;
    const reasons = ov.reasons || null;
    ov.held = [];
    for (let h = 0; h < H; h++) {
      const m = !reasons ? null : reasons.shape.length === 3 ? reasons.subarray(h * r * c, (h + 1) * r * c) : reasons;
      ov.held.push({ kind: "held", r0: 0, c0: 0, pool: ov.pool, rows: r, cols: c,
        q: ov.tiles.subarray(h * r * c, (h + 1) * r * c), m });
    }
    ov.rowTokens = decodeLabels(ov.rows);
    ov.colTokens = ov.cols ? decodeLabels(ov.cols) : ov.rowTokens;
    ov.produces = decodeLabels(ov.produces);
    ov.lut = lut32(ov.colormap);
    ov.exactMax = ov.exact_max || EXACT_MAX_DEFAULT;
    this.ov = ov;
    this.fitCache.clear();
    if (!old || old.n_rows !== ov.n_rows || old.n_cols !== ov.n_cols) {
      this.view = this.fullView();
      if (old) this.viewTimer = setTimeout(() => this.reportView(), VIEW_REPORT_MS); // Python's view was the old map's
    }
    if (this.head === null || this.head >= H) this.head = clamp(ov.head || 0, 0, H - 1);
    this.headTiles = new Map([...this.headTiles].filter(([k]) => k.startsWith(ov.id + ":")));
    this.details = this.details.filter((d) => d.overview === ov.id);
    this.buildHeads();
    this.measureLabels();
    this.layout();
    this.draw("overview", t0);
    const queued = waiting.get(this.key) || [];
    waiting.delete(this.key);
    for (const p of queued) this.addPart(p, t0);
  }

  addPart(p, t0) {
    if (!this.ov) {
      const q = waiting.get(this.key) || [];
      q.push(p);
      waiting.set(this.key, q.slice(-4));
      return;
    }
    if (p.part === "sync") {
      if (this.sync(p)) this.draw("sync", t0);
      return;
    }
    if (p.part === "detail" && p.skipped) { // a view too big to read exactly: the overview's values, and say so
      this.skipped = { overview: p.overview, head: p.head, maxCells: p.max_cells };
      this.stat.skipped = { ...this.skipped };
      return;
    }
    if (p.part === "detail" && p.deferred) { // a new overview went first: ask for its detail (a rerun computes it)
      if (p.overview === this.ov.id) {
        this.detailRequests += 1;
        this.stat.detailRequests = this.detailRequests;
        this.setState("detail_request", { overview: p.overview, head: p.head, view: p.view, n: this.detailRequests });
      }
      return;
    }
    const tile = p.tile;
    if (!tile) return;
    tile.kind = p.part;
    tile.head = p.head;
    tile.overview = p.overview;
    tile.m = tile.reasons || null;
    if (p.part === "head") {
      this.headTiles.set(`${p.overview}:${p.head}`, tile);
      if (this.headTiles.size > 8) this.headTiles.delete(this.headTiles.keys().next().value);
    } else {
      tile.view = p.view || null;
      tile.arrived = t0;
      this.details = [tile, ...this.details.filter((d) => d !== tile)].slice(0, 6);
    }
    if (p.overview === this.ov.id && p.head === this.head) {
      this.draw(p.part, t0, p.part === "detail" ? tile : null);
    }
  }

  // A fresh page (or Python choosing another head) takes the head and view Python drew the detail for.
  sync(p) {
    const seen = p.seen || {};
    let changed = false;
    if (typeof p.head === "number" && p.head !== this.head && p.head < this.ov.n_heads &&
        (this.reported.head === undefined || seen.head === this.reported.head)) {
      this.head = p.head; // Python chose another head (its widget, not this page): follow, and say so
      this.buildHeads();
      if (seen.head !== p.head) {
        this.reported.head = p.head;
        this.setState("head", p.head);
      }
      changed = true;
    }
    if (p.goto && p.goto.nonce !== this.gotoNonce && p.overview === this.ov.id) {
      // Python asked to show a region ("find in text"): jump there even after the user moved the view
      this.gotoNonce = p.goto.nonce;
      this.view = this.clampView({ r0: p.goto.r0, r1: p.goto.r1, c0: p.goto.c0, c1: p.goto.c1 });
      this.touched = true;
      this.reportView();
      changed = true;
    } else if (!this.touched && p.view && p.overview === this.ov.id) {
      const v = p.view;
      const full = this.fullView();
      if (v.r1 - v.r0 < full.r1 || v.c1 - v.c0 < full.c1) {
        this.view = this.clampView({ r0: v.r0, r1: v.r1, c0: v.c0, c1: v.c1 });
        this.reported.view = JSON.stringify(v);
        changed = true;
      }
    }
    if (this.selection === null && seen.selection) {
      this.selection = seen.selection;
      changed = true;
    }
    if (this.query === null && typeof seen.query === "number") {
      this.query = seen.query;
      changed = true;
    }
    return changed;
  }

  buildHeads() {
    const ov = this.ov;
    const box = this.headBox;
    const names = ov.heads || [];
    if (box.dataset.for !== ov.id + ":" + names.length) {
      box.dataset.for = ov.id + ":" + names.length;
      if (names.length <= 48) {
        box.innerHTML = `<span class="attn-label">head</span>` + names.map((n, h) =>
          `<button data-head="${h}" aria-pressed="false">${String(n).replace(/[<&>"]/g, "")}</button>`).join("");
      } else {
        box.innerHTML = `<span class="attn-label">head</span><select>${names.map((n, h) =>
          `<option value="${h}">${String(n).replace(/[<&>"]/g, "")}</option>`).join("")}</select>`;
      }
    }
    for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.head) === this.head));
    const s = box.querySelector("select");
    if (s) s.value = String(this.head);
  }

  // ---- geometry
  fullView() {
    return { r0: 0, r1: this.ov.n_rows, c0: 0, c1: this.ov.n_cols };
  }

  clampView(v) {
    const ov = this.ov;
    const fix = (a, b, n) => {
      let span = clamp(b - a, Math.min(MIN_SPAN, n), n);
      a = clamp(a, 0, n - span);
      return [a, a + span];
    };
    const [r0, r1] = fix(v.r0, v.r1, ov.n_rows);
    const [c0, c1] = fix(v.c0, v.c1, ov.n_cols);
    return { r0, r1, c0, c1 };
  }

  rowLabel(i) {
    const ov = this.ov;
    const t = ov.rowTokens ? ov.rowTokens[i] : undefined;
    let s = t === undefined ? String(i) : `${i}·${t}`;
    if (ov.produces && ov.produces[i] !== undefined) s += ` → ${ov.produces[i]}`;
    return s;
  }

  colLabel(j) {
    const t = this.ov.colTokens ? this.ov.colTokens[j] : undefined;
    return t === undefined ? String(j) : `${j}·${t}`;
  }

  font(px, weight = 400) {
    return `${weight} ${px}px ${this.fontFamily || "sans-serif"}`;
  }

  measureLabels() {
    const css = getComputedStyle(this.root);
    this.fontFamily = (css.getPropertyValue("--st-font") || "").trim() || "\"Source Sans Pro\", sans-serif";
    this.textColour = (css.getPropertyValue("--st-text-color") || "").trim() || "#31333f";
    const ctx = this.ctx;
    ctx.font = this.font(11);
    const widest = (n, label) => {
      const step = Math.max(1, Math.floor(n / 1500));
      let w = ctx.measureText(String(n)).width;
      for (let i = 0; i < n; i += step) w = Math.max(w, ctx.measureText(label(i)).width);
      return w;
    };
    this.LW = clamp(Math.ceil(widest(this.ov.n_rows, (i) => this.rowLabel(i))) + 12, 44, 190);
    this.BH = clamp(Math.ceil(widest(this.ov.n_cols, (j) => this.colLabel(j))) + 10, 30, 120) + 4;
  }

  layout() {
    const ov = this.ov;
    const W = Math.max(240, Math.floor(this.root.clientWidth || 600));
    const dpr = window.devicePixelRatio || 1;
    const TOP = 60;
    const CBW = 92;
    const availW = Math.max(60, W - this.LW - CBW);
    const maxH = clamp((window.innerHeight || 900) - 360, 220, 680);
    const aspect = ov.n_rows / ov.n_cols;
    let mw = availW;
    let mh = availW * aspect;
    if (mh > maxH) { mh = maxH; mw = Math.min(availW, maxH / aspect); }
    mh = Math.max(48, mh);
    mw = Math.max(48, mw);
    const H = Math.ceil(TOP + mh + this.BH + 6);
    const key = [W, H, dpr, mw, mh].join(",");
    if (key === this.layoutKey) return false;
    this.layoutKey = key;
    this.dpr = dpr;
    this.W = W;
    this.H = H;
    this.map = { x: this.LW, y: TOP, w: mw, h: mh };
    for (const cv of [this.canvas, this.over]) {
      cv.width = Math.round(W * dpr);
      cv.height = Math.round(H * dpr);
      cv.style.width = `${W}px`;
      cv.style.height = `${H}px`;
    }
    const m = this.map;
    this.dev = { X: Math.round(m.x * dpr), Y: Math.round(m.y * dpr), W: Math.round(m.w * dpr), H: Math.round(m.h * dpr) };
    this.image = this.ctx.createImageData(this.dev.W, this.dev.H);
    this.stat.mapRect = { ...this.map };
    this.stat.dpr = dpr;
    return true;
  }

  // canvas CSS px -> continuous cell coordinates
  toCell(x, y) {
    const m = this.map;
    const v = this.view;
    return { r: v.r0 + ((y - m.y) / m.h) * (v.r1 - v.r0), c: v.c0 + ((x - m.x) / m.w) * (v.c1 - v.c0) };
  }

  inMap(x, y) {
    const m = this.map;
    return x >= m.x && x < m.x + m.w && y >= m.y && y < m.y + m.h;
  }

  cellToClient(r, c) {
    const rect = this.canvas.getBoundingClientRect();
    const m = this.map;
    const v = this.view;
    return { x: rect.left + m.x + ((c + 0.5 - v.c0) / (v.c1 - v.c0)) * m.w,
      y: rect.top + m.y + ((r + 0.5 - v.r0) / (v.r1 - v.r0)) * m.h };
  }

  devicePixel(r, c) {
    const d = this.dev;
    const v = this.view;
    return { x: Math.floor(d.X + ((c + 0.5 - v.c0) / (v.c1 - v.c0)) * d.W),
      y: Math.floor(d.Y + ((r + 0.5 - v.r0) / (v.r1 - v.r0)) * d.H) };
  }

  // ---- what is drawn: the head's held tile, its finer tile, then detail tiles, coarse to fine
  layers() {
    const ov = this.ov;
    const h = this.head;
    const out = [ov.held[h]];
    const ht = this.headTiles.get(`${ov.id}:${h}`);
    if (ht) out.push(ht);
    const ds = this.details.filter((d) => d.overview === ov.id && d.head === h).reverse(); // oldest first
    out.push(...ds);
    for (const t of out) this.colourIndex(t);
    return out.map((t, i) => [t, i]).sort((a, b) => b[0].pool - a[0].pool || a[1] - b[1]).map((x) => x[0]);
  }

  colourIndex(t) {
    if (t.q && t.qFor !== undefined && t.qFor !== this.ov.id) t.q = null;
    if (t.q || !t.values) return;
    const { lo, hi } = this.ov;
    const s = hi > lo ? 255 / (hi - lo) : 0;
    const q = new Uint8Array(t.values.length);
    for (let i = 0; i < q.length; i++) {
      const v = t.values[i];
      q[i] = v !== v ? 0 : clamp(Math.round((v - lo) * s), 0, 255);
    }
    t.q = q;
    t.qFor = this.ov.id;
  }

  covers(t) {
    const v = this.view;
    return t.r0 <= v.r0 && t.c0 <= v.c0 && t.r0 + t.rows * t.pool >= v.r1 && t.c0 + t.cols * t.pool >= v.c1;
  }

  // the pool of the finest tile that covers the whole view, times what the screen pools on top of it
  poolNote(layers) {
    const v = this.view;
    let best = null;
    for (const t of layers) if (this.covers(t)) best = t;
    best = best || layers[0];
    const perPx = Math.max((v.r1 - v.r0) / this.dev.H, (v.c1 - v.c0) / this.dev.W);
    if (perPx > best.pool * 1.0001) { // the screen pools several of the tile's cells or blocks into one pixel
      const n = Math.round(perPx);
      return { pool: best.pool * Math.ceil(perPx / best.pool - 1e-9), exact: false,
        text: `max over ${n} × ${n} cells per pixel` };
    }
    return { pool: best.pool, exact: best.pool === 1,
      text: best.pool === 1 ? "exact" : `max over ${best.pool} × ${best.pool} blocks` };
  }

  render(layers) {
    const d = this.dev;
    const v = this.view;
    const out = new Uint32Array(this.image.data.buffer);
    out.fill(0);
    const lut = this.ov.lut;
    const { table, size } = this.hatchTable();
    const hatch = (bits, x, y) => table[KIND_OF[bits]][(y % size) * size + (x % size)];
    const cr = (v.r1 - v.r0) / d.H;
    const cc = (v.c1 - v.c0) / d.W;
    let first = 0; // layers under one that covers the whole view are not drawn
    layers.forEach((t, i) => { if (this.covers(t)) first = i; });
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
    this.ctx.putImageData(this.image, d.X, d.Y);
  }

  // per hatch kind, one size x size tile of colours in device pixels (grey, white lines)
  hatchTable() {
    const size = Math.max(4, Math.round(6 * this.dpr));
    if (this.hatch && this.hatch.size === size) return this.hatch;
    const lw = Math.max(1, Math.round(this.dpr));
    const grey = packRgb(...MASK_GREY);
    const white = packRgb(...HATCH);
    const table = KINDS.map((kind) => {
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
    this.hatch = { size, table };
    return this.hatch;
  }

  // ---- drawing
  draw(cause, t0, detail = null) {
    if (!this.ov || !this.map) return;
    const tStart = performance.now();
    t0 = t0 === undefined ? tStart : t0;
    const ctx = this.ctx;
    const ov = this.ov;
    const dpr = this.dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const layers = this.layers();
    this.render(layers);
    const tMap = performance.now() - tStart;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const note = this.poolNote(layers);
    this.drawText(note);
    this.drawGrid();
    if (this.pointer && !this.drag && !this.tip.hidden) this.showTip(this.pointer.x, this.pointer.y); // new cell
    else this.drawOverlay();
    const tRender = performance.now() - tStart;
    this.canvas.dataset.pool = String(note.pool);
    this.canvas.dataset.head = String(this.head);
    this.draws += 1;
    const n = this.draws;
    const st = this.stat;
    st.view = { ...this.view };
    st.head = this.head;
    st.overview = ov.id;
    st.pool = note.pool;
    st.note = note.text;
    requestAnimationFrame(() => {
      const t = performance.now();
      const rec = { n, cause, ms: t - t0, render_ms: tRender, map_ms: tMap, at: t, t0, head: this.head, overview: ov.id };
      st.draws = n;
      st.last = rec;
      this.history.push(rec);
      if (this.history.length > 200) this.history.shift();
      if (detail) {
        st.detail = { view: detail.view, pool: detail.pool, head: detail.head, overview: detail.overview,
          arrived: detail.arrived, drawn: t };
      }
      this.canvas.dataset.drawn = String(n);
    });
  }

  drawText(note) {
    const ctx = this.ctx;
    const ov = this.ov;
    const m = this.map;
    const v = this.view;
    const fg = this.textColour;
    ctx.fillStyle = fg;
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    const name = (ov.heads && ov.heads[this.head]) || String(this.head);
    ctx.font = this.font(14, 600);
    ctx.fillText(this.fit(`${ov.title ? ov.title + " · " : ""}head ${name}`, this.W - 8), 4, 16);
    ctx.font = this.font(12);
    ctx.globalAlpha = 0.75;
    const r1 = Math.ceil(v.r1) - 1;
    const c1 = Math.ceil(v.c1) - 1;
    const range = `queries ${Math.floor(v.r0)}–${r1} × keys ${Math.floor(v.c0)}–${c1} of ${ov.n_rows} × ${ov.n_cols}`;
    ctx.fillText(this.fit(`${note.text} · ${range}`, this.W - 8), 4, 34);
    ctx.globalAlpha = 1;

    // axis names in the free corners
    ctx.font = this.font(11, 600);
    ctx.textAlign = "right";
    ctx.fillText("query ↓", m.x - 4, m.y - 9);
    ctx.textAlign = "left";
    ctx.fillText("key →", 4, m.y + m.h + 14);

    // ticks: tokens when the view is exact enough to read them, positions otherwise
    ctx.font = this.font(11);
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
      ctx.fillText(this.fit(tokensRows ? this.rowLabel(i) : String(i), this.LW - 10), m.x - 5, y);
      ctx.fillRect(m.x - 3, y - 0.5, 3, 1);
    }
    const colStep = tokensCols ? niceStep(13 / colPx) : niceStep(48 / colPx);
    ctx.save();
    for (let j = Math.ceil(v.c0 / colStep) * colStep; j < v.c1; j += colStep) {
      const x = m.x + ((tokensCols ? j + 0.5 : j) - v.c0) * colPx;
      if (x < m.x - 0.5 || x > m.x + m.w + 0.5) continue;
      ctx.fillRect(x - 0.5, m.y + m.h, 1, 3);
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.translate(x, m.y + m.h + 5);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "right";
      ctx.fillText(this.fit(tokensCols ? this.colLabel(j) : String(j), this.BH - 10), 0, 0);
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    }
    ctx.restore();
    this.drawColourBar();
  }

  drawColourBar() {
    const ctx = this.ctx;
    const ov = this.ov;
    const m = this.map;
    const x = m.x + m.w + 14;
    const w = 12;
    const h = Math.max(40, m.h - (ov.reasons || this.hasMasks() ? 30 : 0));
    if (!this.bar || this.bar.name !== ov.colormap) { // 1 x 256 pixels, top = hi, drawn scaled
      const bar = document.createElement("canvas");
      bar.width = 1;
      bar.height = 256;
      const img = bar.getContext("2d").createImageData(1, 256);
      new Uint32Array(img.data.buffer).set(ov.lut.slice().reverse());
      bar.getContext("2d").putImageData(img, 0, 0);
      this.bar = { name: ov.colormap, canvas: bar };
    }
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.bar.canvas, 0, 0, 1, 256, x, m.y, w, h);
    ctx.strokeStyle = this.textColour;
    ctx.globalAlpha = 0.4;
    ctx.strokeRect(x - 0.5, m.y - 0.5, w + 1, h + 1);
    ctx.globalAlpha = 1;
    ctx.fillStyle = this.textColour;
    ctx.font = this.font(11);
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
    ctx.fillText(this.fit(ov.value_name || "value", h), 0, 0);
    ctx.restore();
    if (ov.reasons || this.hasMasks()) { // masked swatch
      const y = m.y + h + 12;
      ctx.fillStyle = "#8c8c8c";
      ctx.fillRect(x, y, w, 12);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let k = -12; k < 12; k += 4) { ctx.moveTo(x + k, y + 12); ctx.lineTo(x + k + 12, y); }
      ctx.save();
      ctx.rect(x, y, w, 12);
      ctx.clip();
      ctx.stroke();
      ctx.restore();
      ctx.fillStyle = this.textColour;
      ctx.fillText("masked", x + w + 5, y + 6);
    }
  }

  hasMasks() {
    const ht = this.headTiles.get(`${this.ov.id}:${this.head}`);
    return !!(ht && ht.m) || this.details.some((d) => d.m && d.head === this.head);
  }

  drawGrid() {
    const ctx = this.ctx;
    const m = this.map;
    const v = this.view;
    const rowPx = m.h / (v.r1 - v.r0);
    const colPx = m.w / (v.c1 - v.c0);
    if (Math.min(rowPx, colPx) < 12) return;
    ctx.fillStyle = "rgba(255,255,255,0.35)";
    for (let i = Math.ceil(v.r0); i <= v.r1; i++) ctx.fillRect(m.x, m.y + (i - v.r0) * rowPx - 0.5, m.w, 1);
    for (let j = Math.ceil(v.c0); j <= v.c1; j++) ctx.fillRect(m.x + (j - v.c0) * colPx - 0.5, m.y, 1, m.h);
  }

  cellRect(r0, r1, c0, c1) {
    const m = this.map;
    const v = this.view;
    const x0 = m.x + ((c0 - v.c0) / (v.c1 - v.c0)) * m.w;
    const x1 = m.x + ((c1 - v.c0) / (v.c1 - v.c0)) * m.w;
    const y0 = m.y + ((r0 - v.r0) / (v.r1 - v.r0)) * m.h;
    const y1 = m.y + ((r1 - v.r0) / (v.r1 - v.r0)) * m.h;
    return [x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0)];
  }

  drawOverlay() {
    const ctx = this.octx;
    if (!this.map) return;
    const m = this.map;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.over.width, this.over.height);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.save();
    ctx.beginPath();
    ctx.rect(m.x, m.y, m.w, m.h);
    ctx.clip();
    const outline = (rect, colour, width, dash = []) => {
      ctx.setLineDash(dash);
      ctx.lineWidth = width + 2;
      ctx.strokeStyle = "rgba(0,0,0,0.55)";
      ctx.strokeRect(...rect);
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.strokeRect(...rect);
      ctx.setLineDash([]);
    };
    const ov = this.ov;
    if (this.query !== null && this.query < ov.n_rows) outline(this.cellRect(this.query, this.query + 1, 0, ov.n_cols), "#ffffff", 1.5);
    const s = this.selection;
    if (s) {
      if (s.kind === "cells") for (const [r, c] of s.cells) outline(this.cellRect(r, r + 1, c, c + 1), SEL_COLOUR, 2);
      if (s.kind === "row") outline(this.cellRect(s.row, s.row + 1, 0, ov.n_cols), SEL_COLOUR, 2);
      if (s.kind === "column") outline(this.cellRect(0, ov.n_rows, s.col, s.col + 1), SEL_COLOUR, 2);
      if (s.kind === "rect") outline(this.cellRect(s.r0, s.r1, s.c0, s.c1), SEL_COLOUR, 2, [5, 3]);
    }
    const d = this.drag;
    if (d && d.box && d.moved) {
      const a = this.toCell(d.x0, d.y0);
      const b = this.toCell(d.x, d.y);
      const [r0, r1, c0, c1] = this.boxCells(a, b);
      outline(this.cellRect(r0, r1, c0, c1), d.box === "zoom" ? "#ffffff" : SEL_COLOUR, 1.5, [4, 3]);
    }
    if (this.hover) outline(this.cellRect(this.hover.r, this.hover.r + 1, this.hover.c, this.hover.c + 1), "#ffffff", 1);
    ctx.restore();
  }

  fit(text, maxW) {
    const key = this.ctx.font + "|" + maxW + "|" + text;
    let out = this.fitCache.get(key);
    if (out !== undefined) return out;
    const ctx = this.ctx;
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
    if (this.fitCache.size > 5000) this.fitCache.clear();
    this.fitCache.set(key, out);
    return out;
  }

  // ---- hover: the exact value and both tokens, from the finest tile under the pointer
  describe(r, c) {
    const ov = this.ov;
    const reasons = (bits) => Object.entries(ov.legend || {}).filter(([b]) => bits & Number(b)).map(([, n]) => n).join(" + ") || "masked";
    const q = (i) => `${this.rowLabel(i)}`;
    const vname = ov.value_name || "value";
    const layers = this.layers();
    for (let li = layers.length - 1; li >= 0; li--) {
      const t = layers[li];
      const i = Math.floor((r - t.r0) / t.pool);
      const j = Math.floor((c - t.c0) / t.pool);
      if (i < 0 || j < 0 || i >= t.rows || j >= t.cols) continue;
      const k = i * t.cols + j;
      const bits = t.m ? t.m[k] : 0;
      if (!t.values) continue; // uint8 tiles only if no detail covers the cell (below)
      const rowText = (x) => (ov.produces ? `${x}·${ov.rowTokens[x]} (→ ${ov.produces[x]})` : q(x));
      if (t.pool === 1) {
        const v = t.values[k];
        if (bits) return [`query ${rowText(r)} → key ${this.colLabel(c)}: masked: ${reasons(bits)}`, `${vname} ${fmt(v)}`];
        return [`query ${rowText(r)} → key ${this.colLabel(c)}: ${fmt(v)}`, `${vname} · exact cell`];
      }
      const p = t.pool;
      const br0 = t.r0 + i * p;
      const bc0 = t.c0 + j * p;
      const block = `the ${p} × ${p} block at queries ${br0}–${Math.min(ov.n_rows, br0 + p) - 1}, keys ${bc0}–${Math.min(ov.n_cols, bc0 + p) - 1}`;
      if (bits) return [`${block}: masked: ${reasons(bits)}`, `every cell of the block is masked`];
      const a = t.argmax ? t.argmax[k] : 0;
      const ar = br0 + Math.floor(a / p);
      const ac = bc0 + (a % p);
      return [`max over ${block}: ${fmt(t.values[k])}`, `at query ${rowText(ar)} → key ${this.colLabel(ac)} (${vname})`];
    }
    // no float tile covers it yet: the uint8 overview says roughly, the exact value is on its way
    const t = layers.filter((x) => !x.values).pop();
    const p = t.pool;
    const i = Math.floor(r / p);
    const j = Math.floor(c / p);
    const k = i * t.cols + j;
    const cells = p === 1 ? `query ${this.rowLabel(r)} → key ${this.colLabel(c)}` :
      `max over the ${p} × ${p} block at queries ${i * p}–${Math.min(ov.n_rows, i * p + p) - 1}, keys ${j * p}–${Math.min(ov.n_cols, j * p + p) - 1}`;
    const sk = this.skipped;
    const coarse = sk && sk.overview === ov.id && sk.head === this.head; // cleared when a new view is reported
    const side = coarse ? Math.floor(Math.sqrt(sk.maxCells || 0)).toLocaleString("en-US") : "";
    if (t.m && t.m[k]) {
      return [`${cells}: masked: ${reasons(t.m[k])}`, coarse ? "from the overview" :
        "from the overview; the exact values are on their way"];
    }
    const approx = ov.lo + (t.q[k] / 255) * (ov.hi - ov.lo);
    return [`${cells}: ≈ ${tickText(approx)}`, coarse ?
      `${vname}, from the uint8 overview; zoom in to at most ${side} × ${side} cells for exact values` :
      `${vname}, from the uint8 overview; the exact value is on its way`];
  }

  showTip(x, y) {
    const cell = this.toCell(x, y);
    const r = clamp(Math.floor(cell.r), 0, this.ov.n_rows - 1);
    const c = clamp(Math.floor(cell.c), 0, this.ov.n_cols - 1);
    this.hover = { r, c };
    this.stat.hover = { r, c };
    const lines = this.describe(r, c);
    this.tip.replaceChildren(...lines.map((s, i) => {
      const div = document.createElement("div");
      div.textContent = s;
      if (i) div.className = "attn-tip-sub";
      return div;
    }));
    this.tip.hidden = false;
    const left = x + 14 + this.tip.offsetWidth > this.W ? Math.max(0, x - 14 - this.tip.offsetWidth) : x + 14;
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${y + 16}px`;
    this.drawOverlay();
  }

  hideTip() {
    this.hover = null;
    this.pointer = null;
    this.stat.hover = null;
    this.tip.hidden = true;
    this.drawOverlay();
  }

  // ---- interaction
  changeView(v, cause, t0) {
    this.view = this.clampView(v);
    this.touched = true;
    this.draw(cause, t0); // Chromium delivers wheel and pointer moves once per frame: draw each at once
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(() => this.reportView(), VIEW_REPORT_MS);
  }

  reportView() {
    const v = this.view;
    const out = { r0: Math.floor(v.r0), r1: Math.ceil(v.r1 - 1e-9), c0: Math.floor(v.c0), c1: Math.ceil(v.c1 - 1e-9) };
    const s = JSON.stringify(out);
    if (s === this.reported.view) return;
    this.reported.view = s;
    this.skipped = null; // the new view's detail (or that it is too big) is on its way
    this.stat.reportedView = { ...out, at: performance.now() };
    this.setState("view", out);
  }

  zoom(f, r, c, cause, t0) {
    const v = this.view;
    if (r === undefined) { r = (v.r0 + v.r1) / 2; c = (v.c0 + v.c1) / 2; }
    const rs = clamp((v.r1 - v.r0) * f, Math.min(MIN_SPAN, this.ov.n_rows), this.ov.n_rows);
    const cs = clamp((v.c1 - v.c0) * f, Math.min(MIN_SPAN, this.ov.n_cols), this.ov.n_cols);
    const fr = rs / (v.r1 - v.r0);
    const fc = cs / (v.c1 - v.c0);
    this.changeView({ r0: r - (r - v.r0) * fr, r1: r - (r - v.r0) * fr + rs, c0: c - (c - v.c0) * fc,
      c1: c - (c - v.c0) * fc + cs }, cause, t0);
  }

  pan(dr, dc, cause, t0) {
    const v = this.view;
    const rs = v.r1 - v.r0;
    const cs = v.c1 - v.c0;
    this.changeView({ r0: v.r0 + dr * rs, r1: v.r1 + dr * rs, c0: v.c0 + dc * cs, c1: v.c1 + dc * cs }, cause, t0);
  }

  act(a, t0, big = false) {
    if (!this.ov) return;
    const s = big ? 0.5 : 0.125;
    if (a === "in") this.zoom(1 / 1.5, undefined, undefined, "zoom", t0);
    else if (a === "out") this.zoom(1.5, undefined, undefined, "zoom", t0);
    else if (a === "reset") this.changeView(this.fullView(), "reset", t0);
    else if (a === "left") this.pan(0, -s, "pan", t0);
    else if (a === "right") this.pan(0, s, "pan", t0);
    else if (a === "up") this.pan(-s, 0, "pan", t0);
    else if (a === "down") this.pan(s, 0, "pan", t0);
  }

  setHead(h, t0) {
    if (!this.ov || !(h >= 0 && h < this.ov.n_heads) || h === this.head) return;
    this.head = h;
    this.buildHeads();
    this.draw("head", t0);
    this.reported.head = h;
    this.setState("head", h);
  }

  setMode(mode) {
    this.mode = mode;
    for (const b of this.root.querySelectorAll(".attn-modes button[data-mode]")) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    this.canvas.dataset.mode = mode;
  }

  setSelection(sel) {
    this.selection = sel;
    this.setState("selection", sel);
    this.stat.selection = sel;
    this.drawOverlay();
  }

  boxCells(a, b) {
    const ov = this.ov;
    const r0 = clamp(Math.floor(Math.min(a.r, b.r)), 0, ov.n_rows - 1);
    const c0 = clamp(Math.floor(Math.min(a.c, b.c)), 0, ov.n_cols - 1);
    const r1 = clamp(Math.floor(Math.max(a.r, b.r)) + 1, r0 + 1, ov.n_rows);
    const c1 = clamp(Math.floor(Math.max(a.c, b.c)) + 1, c0 + 1, ov.n_cols);
    return [r0, r1, c0, c1];
  }

  local(e) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }

  onWheel(e) {
    const { x, y } = this.local(e);
    if (!this.ov || !this.inMap(x, y)) return;
    e.preventDefault();
    const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    const f = clamp(Math.exp(dy * 0.002), 0.5, 2);
    const cell = this.toCell(x, y);
    this.pointer = { x, y };
    this.zoom(f, cell.r, cell.c, "wheel", e.timeStamp);
  }

  onDown(e) {
    if (!this.ov || e.button !== 0) return;
    const { x, y } = this.local(e);
    if (!this.inMap(x, y)) return;
    this.canvas.focus({ preventScroll: true });
    this.canvas.setPointerCapture(e.pointerId);
    const box = e.shiftKey && this.mode === "view" ? "zoom" : this.mode === "rect" ? "select" : null;
    this.drag = { x0: x, y0: y, x, y, view: { ...this.view }, box, moved: false };
  }

  onMove(e) {
    if (!this.ov) return;
    const { x, y } = this.local(e);
    const d = this.drag;
    if (d) {
      d.x = x;
      d.y = y;
      if (Math.abs(x - d.x0) + Math.abs(y - d.y0) > 4) d.moved = true;
      if (!d.moved) return;
      if (d.box) { this.drawOverlay(); return; }
      const m = this.map;
      const v = d.view;
      const dr = -((y - d.y0) / m.h) * (v.r1 - v.r0);
      const dc = -((x - d.x0) / m.w) * (v.c1 - v.c0);
      this.changeView({ r0: v.r0 + dr, r1: v.r1 + dr, c0: v.c0 + dc, c1: v.c1 + dc }, "drag", e.timeStamp);
      this.tip.hidden = true;
      return;
    }
    if (this.inMap(x, y)) {
      this.pointer = { x, y };
      this.showTip(x, y);
    } else if (this.hover) this.hideTip();
  }

  onUp(e) {
    const d = this.drag;
    this.drag = null;
    if (!d || !this.ov) return;
    const { x, y } = this.local(e);
    const a = this.toCell(d.x0, d.y0);
    if (!d.moved) { this.click(a, e.timeStamp); return; }
    if (d.box) {
      const [r0, r1, c0, c1] = this.boxCells(a, this.toCell(x, y));
      if (d.box === "zoom") this.changeView({ r0, r1, c0, c1 }, "box", e.timeStamp);
      else this.setSelection({ kind: "rect", r0, r1, c0, c1 });
      this.drawOverlay();
    }
  }

  click(cell, t0) {
    const ov = this.ov;
    const r = clamp(Math.floor(cell.r), 0, ov.n_rows - 1);
    const c = clamp(Math.floor(cell.c), 0, ov.n_cols - 1);
    if (this.mode === "view") {
      this.query = r;
      this.stat.query = r;
      this.setState("query", r);
      this.drawOverlay();
      return;
    }
    if (this.mode === "cells") {
      const cells = this.selection && this.selection.kind === "cells" ? this.selection.cells.slice() : [];
      const i = cells.findIndex(([a, b]) => a === r && b === c);
      if (i >= 0) cells.splice(i, 1);
      else cells.push([r, c]);
      this.setSelection(cells.length ? { kind: "cells", cells } : null);
    } else if (this.mode === "row") this.setSelection({ kind: "row", row: r });
    else if (this.mode === "column") this.setSelection({ kind: "column", col: c });
  }

  onKey(e) {
    if (!this.ov || e.target.tagName === "SELECT") return;
    const keys = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down", "+": "in", "=": "in",
      "-": "out", _: "out", 0: "reset" };
    const a = keys[e.key];
    if (a) {
      e.preventDefault();
      this.act(a, e.timeStamp, e.shiftKey && a.length > 3);
    } else if (e.key === "[" || e.key === "]") {
      e.preventDefault();
      const n = this.ov.n_heads;
      this.setHead((this.head + (e.key === "]" ? 1 : n - 1)) % n, e.timeStamp);
    } else if (e.key === "Escape") {
      this.drag = null;
      this.setMode("view");
      this.drawOverlay();
    }
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const t0 = performance.now();
  const part = unpack(data);
  if (!part || !part.key) return undefined;
  if (part.part !== "overview") {
    const inst = instances.get(part.key);
    if (inst) inst.addPart(part, t0);
    else {
      const q = waiting.get(part.key) || [];
      q.push(part);
      waiting.set(part.key, q.slice(-4));
    }
    return undefined;
  }
  let inst = parentElement.__attnCanvas;
  if (!inst || inst.key !== part.key) {
    if (inst) inst.destroy();
    inst = new AttentionCanvas(parentElement, part.key);
    parentElement.__attnCanvas = inst;
  }
  inst.setState = (name, value) => setStateValue(name, value);
  instances.set(part.key, inst);
  inst.setOverview(part, t0);
  return () => {
    inst.destroy();
    if (parentElement.__attnCanvas === inst) delete parentElement.__attnCanvas;
  };
}
