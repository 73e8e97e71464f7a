// canvas.js: one attention map on a <canvas>: an instance's state (the parts it holds, the map shown, head, query,
// selection) and its redraw. The other files are its jobs: colours, wire, geometry, draw, axes, tooltip, input,
// sync, choices; viz/canvas/__init__.py joins them into one ES module, a host adapter last.
//
// A map arrives in parts (viz/tiles.py): "overview" (every head's tile, labels, range, reason table), "head" (the
// selected head's finer tile), "detail" (float32 cells or block maxima of the view the page reported), "stack"
// (more overviews the page holds: other layers, kinds, stages or training steps, drawn when the user picks them)
// and "sync" (what Python saw and asks). Every redraw is made from what the instance holds, at once.
//
// The seam for hosts (host_*.js: one per framework; this core names none). A host:
//   - turns the bytes it receives into a part: unpack(bytes) (wire.js; null if they are not a part);
//   - makes an instance in its element: new AttentionCanvas(parentElement, key, report), where
//     report(name, value) sends the page's state to Python: "view" ({r0, r1, c0, c1}, end exclusive), "head",
//     "query" (a row), "selection" ({kind, ...} or null), "detail_request" ({overview, head, view, n}) or "choice"
//     (the map the user picked on the page, e.g. {kind, layer, stage} or {step}: the names of the overview's
//     choice groups);
//   - delivers parts: ac.setOverview(part, t0) for an "overview", ac.addPart(part, t0) for "head", "detail",
//     "stack" and "sync" (held until an overview has come, except "stack"); t0: performance.now() when the part
//     arrived;
//   - may set ac.report again (a new channel), and calls ac.destroy() when its element goes;
//   - ends the module with the `export default` its framework loads.
// Added in issue 30 (optional: a host that sends none of them gets the old behaviour): an overview may carry
// "values" (float32 (H, rows, cols), exact cells when pool is 1: the hover needs no detail), "choice" (which map it
// is, {name: value}), "choices" ({groups: [{name, label, options: [[value, text], ...], control: "buttons" |
// "select" | "slider", after_heads}], valid: [[value per group], ...] or null}: the controls drawn in the bar),
// "scope" (the traced call it comes from: maps of another scope are dropped when it changes) and "selectable"
// (false: no selection tools); a "stack" part ({part: "stack", slot, overviews: [overview, ...]}, or {deferred:
// true}: the page asks for it with a "detail_request") carries several maps at once, each with its "choice".
// host_streamlit.js mounts each part on its own and finds the instance by key; host_anywidget.js (the notebook
// widget, viz/notebook.py) makes one instance in its `el`, reports through the widget's traits and takes parts
// from a trait and from messages; host_static.js (the standalone file, viz/standalone.py) reads them from the page.

const EXACT_MAX_DEFAULT = 256; // tokens on the axes from this many cells per axis down (the overview says)
const PENDING_MAX = 4; // parts held until the overview comes
const CHOICE_REPORT_MS = 500; // a slider's choice is reported this long after its last step: no rerun while it moves
const SHORT_MAX = 48; // tokens per axis up to which the zoom buttons are left out (wheel and keys still zoom)

// window.__attnCanvasStats[key]: what each instance drew, and hooks for tests and benchmarks
function canvasStats() {
  window.__attnCanvasStats = window.__attnCanvasStats || {};
  return window.__attnCanvasStats;
}

class AttentionCanvas {
  constructor(parent, key, report) {
    this.parent = parent;
    this.key = key;
    this.report = report || (() => {}); // (name, value): the host sends it to Python
    this.ov = null;
    this.head = null;
    this.view = null;
    this.mode = "view";
    this.selection = null;
    this.query = null;
    this.pending = []; // parts that came before the overview
    this.headTiles = new Map(); // `${overview}:${head}` -> tile
    this.details = []; // newest first
    this.skipped = null; // {overview, head, maxCells}: the reported view is too big to read exactly
    this.detailRequests = 0; // deferred parts asked for (each a new value, so each reruns the script)
    this.reported = {}; // what this page last told Python
    this.touched = false; // the user has moved the view (a fresh page adopts Python's view until then)
    this.held = new Map(); // choiceKey -> an overview the page may switch to (from stacks and overviews)
    this.choices = null; // the overview's choice groups (the controls in the bar)
    this.asked = null; // the choice the page picked and Python has not shown yet
    this.offered = null; // the overview Python sent last
    this.history = [];
    this.fitCache = new Map();
    this.draws = 0;
    this.stat = { key, draws: 0, last: null, history: this.history, detail: null };
    canvasStats()[key] = this.stat;
    this.stat.cellToClient = (r, c) => cellToClient(this.canvas.getBoundingClientRect(), this.map, this.view, r, c);
    this.stat.devicePixel = (r, c) => devicePixel(this.dev, this.view, r, c);
    this.stat.lut = lutRgb;
    this.stat.shown = () => shownCells(this); // the shown head's held cells, for tests
    this.stat.holds = (choice) => this.held.has(choiceKey(choice)); // a map the page can draw without Python
    this.build();
  }

  build() {
    const root = document.createElement("div");
    root.className = "attn";
    root.dataset.key = this.key; // tests and benchmarks find an instance's controls by it
    root.innerHTML = `
      <div class="attn-bar">
        <div class="attn-choices" role="group" aria-label="map"></div>
        <div class="attn-heads" role="group" aria-label="head"></div>
        <div class="attn-choices attn-after" role="group" aria-label="stage"></div>
        <div class="attn-tools" role="group" aria-label="zoom and pan">
          <button data-act="in" title="zoom in (+)">+</button>
          <button data-act="out" title="zoom out (−)">−</button>
          <button data-act="reset" title="whole map (0)">reset</button>
          <button data-act="left" title="pan left (←)">←</button>
          <button data-act="up" title="pan up (↑)">↑</button>
          <button data-act="down" title="pan down (↓)">↓</button>
          <button data-act="right" title="pan right (→)">→</button>
          <button data-act="png" title="save the map as a PNG at 2× (axes and colour bar included)">PNG</button>
        </div>
      </div>
      <div class="attn-stage">
        <canvas class="attn-map" tabindex="0" aria-label="attention map"></canvas>
        <canvas class="attn-over" aria-hidden="true"></canvas>
        <div class="attn-tip" role="tooltip" hidden></div>
      </div>
      <div class="attn-foot">
        <div class="attn-modes" role="group" aria-label="select">
          <span class="attn-label">select</span>
          <button data-mode="view" aria-pressed="true" title="click: pick the query row; drag: pan">off</button>
          <button data-mode="cells" title="click cells to add or remove them">cells</button>
          <button data-mode="row" title="click a query row">row</button>
          <button data-mode="column" title="click a key column">column</button>
          <button data-mode="rect" title="drag a rectangle">rect</button>
          <button data-act="clear" title="clear the selection">clear</button>
        </div>
        <div class="attn-hint">hover: both tokens and the value · click: pick the query row · wheel or +/−: zoom ·
          drag: pan · shift+drag: zoom to a box · keys ← ↑ ↓ → pan, 0 whole map, [ ] head</div>
      </div>`;
    this.parent.appendChild(root);
    this.root = root;
    this.canvas = root.querySelector(".attn-map");
    this.over = root.querySelector(".attn-over");
    this.tip = root.querySelector(".attn-tip");
    this.headBox = root.querySelector(".attn-heads");
    this.choiceBoxes = [...root.querySelectorAll(".attn-choices")];
    this.ctx = this.canvas.getContext("2d");
    this.octx = this.over.getContext("2d");
    bindInput(this);
    this.resize = new ResizeObserver(() => { if (this.ov && this.layout()) this.draw("resize"); });
    this.resize.observe(root);
  }

  destroy() {
    this.resize.disconnect();
    clearTimeout(this.viewTimer);
    clearTimeout(this.choiceTimer);
    this.root.remove();
    if (canvasStats()[this.key] === this.stat) delete canvasStats()[this.key];
  }

  // ---- parts
  // Python's map: shown, unless the page picked another one that Python has not seen yet (sync.js decides then)
  setOverview(ov, t0) {
    ov = this.hold(ov);
    this.offered = ov;
    if (this.asked && ov.choice && choiceKey(ov.choice) !== choiceKey(this.asked)) return;
    this.asked = null;
    this.show(ov, "overview", t0);
  }

  // the overview the page shows from now on, drawn at once; cause: "overview", or the choice group the user changed
  show(ov, cause, t0) {
    if (this.ov && this.ov.id === ov.id) {
      this.waiting(false);
      return;
    }
    const old = this.ov;
    prepareOverview(ov);
    if (ov.choices) this.choices = ov.choices;
    if (ov.scope !== undefined && (!old || old.scope !== ov.scope)) dropScopes(this, ov.scope);
    this.ov = ov;
    this.stat.choice = ov.choice || null;
    this.fitCache.clear();
    if (!old || old.n_rows !== ov.n_rows || old.n_cols !== ov.n_cols) {
      this.view = fullView(ov);
      if (old) scheduleViewReport(this); // Python's view was the old map's
    }
    const H = ov.n_heads;
    if (this.head === null || this.head >= H) this.head = clamp(ov.head || 0, 0, H - 1);
    this.headTiles = new Map([...this.headTiles].filter(([k]) => k.startsWith(ov.id + ":")));
    this.details = this.details.filter((d) => d.overview === ov.id);
    this.root.classList.toggle("attn-no-select", ov.selectable === false);
    this.root.classList.toggle("attn-short", Math.max(ov.n_rows, ov.n_cols) <= SHORT_MAX); // whole at a glance
    buildHeads(this);
    buildChoices(this);
    this.waiting(false);
    measureLabels(this);
    // the same frame (size, labels' room) as the map before: no layout, which would read the page's geometry
    const same = old && ["n_rows", "n_cols", "LW", "BH", "flatBH", "colW"].every((k) => old[k] === ov[k]);
    if (!same) this.layout();
    if (old) this.draw(cause, t0);
    else requestAnimationFrame(() => this.draw(cause, t0)); // a fresh page: the head Python sends with it first
    const queued = this.pending;
    this.pending = [];
    for (const p of queued) this.addPart(p, t0);
  }

  // keep an overview the user may switch to (held.js); returns the one held for its id (already prepared) if any
  hold(ov) {
    return holdOverview(this, ov);
  }

  addPart(p, t0) {
    if (p.part === "stack") {
      if (p.deferred) { // computed after the map is drawn: ask for it (a rerun computes it)
        if (this.ov) this.requestDeferred(p);
        else this.pending = [...this.pending, p].slice(-PENDING_MAX);
        return;
      }
      for (const ov of p.overviews || []) this.hold(ov);
      this.stat.held = this.held.size;
      const want = this.asked && this.held.get(choiceKey(this.asked));
      if (want && (!this.ov || want.id !== this.ov.id)) this.show(want, "stack", t0);
      return;
    }
    if (!this.ov) {
      this.pending = [...this.pending, p].slice(-PENDING_MAX);
      return;
    }
    if (p.part === "sync") {
      if (applySync(this, p)) this.draw("sync", t0);
      return;
    }
    if (p.part === "detail" && p.skipped) { // a view too big to read exactly: the overview's values, and say so
      this.skipped = { overview: p.overview, head: p.head, maxCells: p.max_cells, note: p.note || null };
      this.stat.skipped = { ...this.skipped };
      return;
    }
    if (p.part === "detail" && p.deferred) { // a new overview went first: ask for its detail (a rerun computes it)
      if (p.overview === this.ov.id) this.requestDeferred(p);
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

  // what deferred parts stand for is asked for with a new detail_request (each value new: each reruns the script)
  requestDeferred(p) {
    if (this.deferredFor === this.ov.id) return; // one request per map: its rerun computes every deferred part
    this.deferredFor = this.ov.id;
    this.detailRequests += 1;
    this.stat.detailRequests = this.detailRequests;
    this.report("detail_request", { overview: this.ov.id, head: this.head, view: p.view || reportedCells(this),
      n: this.detailRequests });
  }

  // ---- redraw
  // the canvases' size for the element's width; false if nothing changed
  layout() {
    const ov = this.ov;
    const W = Math.max(240, Math.floor(this.root.clientWidth || 600));
    const dpr = this.scale || window.devicePixelRatio || 1; // scale: a snapshot's ratio (snapshot.js)
    const windowH = window.innerHeight || 900;
    const stage = this.canvas.parentElement.getBoundingClientRect();
    const top = stage.top - scrollerTop(this.root); // where the map's canvas starts on the first screen
    this.labelsFor(W, windowH, top);
    const { H, map } = frame(W, windowH, top, this.LW, this.BH, ov.n_rows, ov.n_cols);
    const key = [W, H, dpr, map.w, map.h, this.BH].join(",");
    if (key === this.layoutKey) return false;
    this.layoutKey = key;
    this.dpr = dpr;
    this.W = W;
    this.H = H;
    this.map = map;
    for (const cv of [this.canvas, this.over]) {
      cv.width = Math.round(W * dpr);
      cv.height = Math.round(H * dpr);
      cv.style.width = `${W}px`;
      cv.style.height = `${H}px`;
    }
    this.dev = deviceRect(map, dpr);
    this.image = this.ctx.createImageData(this.dev.W, this.dev.H);
    this.stat.mapRect = { ...this.map };
    this.stat.dpr = dpr;
    return true;
  }

  // the key labels lie flat when every one fits its column at the map's size, else they stand up (axes.js)
  labelsFor(W, windowH, top) {
    const ov = this.ov;
    this.BH = ov.BH;
    this.flatCols = false;
    if (!ov.flatBH) return;
    const { map } = frame(W, windowH, top, this.LW, ov.flatBH, ov.n_rows, ov.n_cols);
    if (map.w / ov.n_cols >= ov.colW + 6) {
      this.BH = ov.flatBH;
      this.flatCols = true;
    }
  }

  // cause: what asked ("overview", "head", "detail", "wheel", a choice group ...), for the stats; t0: when asked
  draw(cause, t0, detail = null) {
    if (!this.ov || !this.map) return;
    const tStart = performance.now();
    t0 = t0 === undefined ? tStart : t0;
    const ctx = this.ctx;
    const ov = this.ov;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const tiles = layers(this);
    paintMap(this, tiles);
    const tMap = performance.now() - tStart;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    const note = poolNote(this.view, this.dev, tiles);
    drawAxes(this, note);
    drawGrid(this);
    if (this.pointer && !this.drag && !this.tip.hidden) showTip(this, this.pointer.x, this.pointer.y); // new cell
    else drawOverlay(this);
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
      const rec = { n, cause, ms: t - t0, render_ms: tRender, map_ms: tMap, at: t, t0, head: this.head,
        overview: ov.id, choice: ov.choice || null };
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

  // the map the user asked for is not in the page yet: dimmed until it comes
  waiting(on) {
    this.root.classList.toggle("attn-waiting", on);
    this.stat.waiting = on ? this.asked : null;
  }

  // ---- what the user changes: redrawn at once, reported to Python
  changeView(v, cause, t0) {
    this.view = clampView(this.ov, v);
    this.touched = true;
    this.draw(cause, t0); // Chromium delivers wheel and pointer moves once per frame: draw each at once
    scheduleViewReport(this);
  }

  setHead(h, t0) {
    if (!this.ov || !(h >= 0 && h < this.ov.n_heads) || h === this.head) return;
    this.head = h;
    buildHeads(this);
    this.draw("head", t0);
    this.reported.head = h;
    this.report("head", h);
  }

  // another value of one choice group (a layer, a kind, a stage, a training step): drawn at once from the maps the
  // page holds (else dimmed until Python sends it), reported to Python (``later``: once the slider rests)
  pick(name, value, t0, later = false) {
    if (!this.ov || !this.ov.choice || !this.choices) return;
    const target = resolveChoice(this.choices, this.asked || this.ov.choice, name, value);
    if (!target) return;
    const k = choiceKey(target);
    if (k === choiceKey(this.asked || this.ov.choice)) return;
    this.asked = k === choiceKey(this.ov.choice) ? null : target;
    const ov = this.held.get(k);
    if (ov) this.show(ov, name, t0);
    else {
      buildChoices(this, target);
      this.waiting(true);
    }
    clearTimeout(this.choiceTimer);
    const send = () => {
      this.reported.choice = k;
      this.report("choice", target);
    };
    if (later) this.choiceTimer = setTimeout(send, CHOICE_REPORT_MS);
    else send();
  }

  setQuery(r) {
    this.query = r;
    this.stat.query = r;
    this.report("query", r);
    drawOverlay(this);
  }

  setSelection(sel) {
    this.selection = sel;
    this.report("selection", sel);
    this.stat.selection = sel;
    drawOverlay(this);
  }
}
