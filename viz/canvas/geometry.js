// geometry.js: the view (cells shown, {r0, r1, c0, c1}, end exclusive, fractional while zooming), zoom and pan,
// and cells <-> pixels. `ov` is the overview part (n_rows, n_cols); `map` the map's rectangle in CSS px
// ({x, y, w, h}); `dev` the same in device pixels ({X, Y, W, H}).

const MIN_SPAN = 2; // cells: the deepest zoom shows 2 x 2 cells
const TOP = 36; // CSS px above the map: the title and note line, the axis name
const BAR_W = 92; // CSS px right of the map: the colour bar and its labels
const MAX_CELL = 36; // CSS px: the largest side of a cell (short maps: square cells, not a wall of colour)
const MIN_ROW = 16; // CSS px per row that a short map keeps even when it does not fit the first screen

function clamp(x, lo, hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

function niceStep(raw) { // 1, 2, 5, 10, 20, ... cells between ticks, at least raw
  if (raw <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function fullView(ov) {
  return { r0: 0, r1: ov.n_rows, c0: 0, c1: ov.n_cols };
}

// at least MIN_SPAN cells per axis, inside the map
function clampView(ov, v) {
  const fix = (a, b, n) => {
    let span = clamp(b - a, Math.min(MIN_SPAN, n), n);
    a = clamp(a, 0, n - span);
    return [a, a + span];
  };
  const [r0, r1] = fix(v.r0, v.r1, ov.n_rows);
  const [c0, c1] = fix(v.c0, v.c1, ov.n_cols);
  return { r0, r1, c0, c1 };
}

// the view scaled by f around cell (r, c) (default: its centre), the cell staying where it is on screen
function zoomView(ov, v, f, r, c) {
  if (r === undefined) { r = (v.r0 + v.r1) / 2; c = (v.c0 + v.c1) / 2; }
  const rs = clamp((v.r1 - v.r0) * f, Math.min(MIN_SPAN, ov.n_rows), ov.n_rows);
  const cs = clamp((v.c1 - v.c0) * f, Math.min(MIN_SPAN, ov.n_cols), ov.n_cols);
  const fr = rs / (v.r1 - v.r0);
  const fc = cs / (v.c1 - v.c0);
  return { r0: r - (r - v.r0) * fr, r1: r - (r - v.r0) * fr + rs, c0: c - (c - v.c0) * fc,
    c1: c - (c - v.c0) * fc + cs };
}

// moved by dr, dc view spans
function panView(v, dr, dc) {
  const rs = v.r1 - v.r0;
  const cs = v.c1 - v.c0;
  return { r0: v.r0 + dr * rs, r1: v.r1 + dr * rs, c0: v.c0 + dc * cs, c1: v.c1 + dc * cs };
}

// the whole cells between two continuous cell positions: [r0, r1, c0, c1], end exclusive
function boxCells(ov, a, b) {
  const r0 = clamp(Math.floor(Math.min(a.r, b.r)), 0, ov.n_rows - 1);
  const c0 = clamp(Math.floor(Math.min(a.c, b.c)), 0, ov.n_cols - 1);
  const r1 = clamp(Math.floor(Math.max(a.r, b.r)) + 1, r0 + 1, ov.n_rows);
  const c1 = clamp(Math.floor(Math.max(a.c, b.c)) + 1, c0 + 1, ov.n_cols);
  return [r0, r1, c0, c1];
}

// canvas CSS px -> continuous cell coordinates
function toCell(map, v, x, y) {
  return { r: v.r0 + ((y - map.y) / map.h) * (v.r1 - v.r0), c: v.c0 + ((x - map.x) / map.w) * (v.c1 - v.c0) };
}

function inMap(map, x, y) {
  return x >= map.x && x < map.x + map.w && y >= map.y && y < map.y + map.h;
}

// cells [r0, r1) x [c0, c1) -> [x, y, w, h] in canvas CSS px (at least 1 px each way)
function cellRect(map, v, r0, r1, c0, c1) {
  const x0 = map.x + ((c0 - v.c0) / (v.c1 - v.c0)) * map.w;
  const x1 = map.x + ((c1 - v.c0) / (v.c1 - v.c0)) * map.w;
  const y0 = map.y + ((r0 - v.r0) / (v.r1 - v.r0)) * map.h;
  const y1 = map.y + ((r1 - v.r0) / (v.r1 - v.r0)) * map.h;
  return [x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0)];
}

// cell (r, c)'s centre in client px (`rect`: the canvas's bounding rectangle)
function cellToClient(rect, map, v, r, c) {
  return { x: rect.left + map.x + ((c + 0.5 - v.c0) / (v.c1 - v.c0)) * map.w,
    y: rect.top + map.y + ((r + 0.5 - v.r0) / (v.r1 - v.r0)) * map.h };
}

// cell (r, c)'s centre in device pixels of the canvas
function devicePixel(dev, v, r, c) {
  return { x: Math.floor(dev.X + ((c + 0.5 - v.c0) / (v.c1 - v.c0)) * dev.W),
    y: Math.floor(dev.Y + ((r + 0.5 - v.r0) / (v.r1 - v.r0)) * dev.H) };
}

// the canvas's height and the map's rectangle for a canvas W CSS px wide whose map canvas starts `top` px below the
// top of the first screen: labels LW wide on the left and BH high below, the colour bar on the right; square cells
// of at most MAX_CELL px; as high as the first screen leaves below `top` (a short map fits it whole), at least
// MIN_ROW px a row or the old window-based height, whichever is less, and at most 680 px
function frame(W, windowH, top, LW, BH, nRows, nCols) {
  const availW = Math.max(60, W - LW - BAR_W);
  const tall = clamp(windowH - 360, 220, 680);
  const room = top >= 0 && top < windowH ? windowH - top - TOP - BH - 14 : tall;
  const maxH = clamp(Math.max(room, Math.min(MIN_ROW * nRows, tall)), 120, 680);
  const cell = Math.min(availW / nCols, maxH / nRows, MAX_CELL);
  const mw = Math.max(48, cell * nCols);
  const mh = Math.max(48, cell * nRows);
  return { H: Math.ceil(TOP + mh + BH + 6), map: { x: LW, y: TOP, w: mw, h: mh } };
}

function deviceRect(map, dpr) {
  return { X: Math.round(map.x * dpr), Y: Math.round(map.y * dpr), W: Math.round(map.w * dpr),
    H: Math.round(map.h * dpr) };
}

// the distance from the top of the first screen of the element's scrolling ancestor (or the window)
function scrollerTop(el) {
  for (let p = el.parentElement; p; p = p.parentElement) {
    if (p.scrollHeight > p.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(p).overflowY)) {
      return p.getBoundingClientRect().top - p.scrollTop;
    }
  }
  return -window.scrollY;
}
