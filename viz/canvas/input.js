// input.js: mouse, wheel, keyboard and the toolbar: zoom and pan, the head buttons, clicks that pick the query or
// select cells. Functions take the canvas (`ac`) first; state changes go through its methods (canvas.js), which
// redraw and report them.

const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down", "+": "in", "=": "in",
  "-": "out", _: "out", 0: "reset" };

function bindInput(ac) {
  const root = ac.root;
  root.querySelector(".attn-tools").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b) act(ac, b.dataset.act, e.timeStamp);
  });
  root.querySelector(".attn-modes").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.act === "clear") ac.setSelection(null);
    else setMode(ac, b.dataset.mode);
  });
  ac.headBox.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b) ac.setHead(Number(b.dataset.head), e.timeStamp);
  });
  ac.headBox.addEventListener("change", (e) => ac.setHead(Number(e.target.value), e.timeStamp));
  bindChoices(ac);
  root.addEventListener("keydown", (e) => onKey(ac, e));
  const c = ac.canvas;
  c.addEventListener("wheel", (e) => onWheel(ac, e), { passive: false });
  c.addEventListener("pointerdown", (e) => onDown(ac, e));
  c.addEventListener("pointermove", (e) => onMove(ac, e));
  c.addEventListener("pointerup", (e) => onUp(ac, e));
  c.addEventListener("pointercancel", () => { ac.drag = null; drawOverlay(ac); });
  c.addEventListener("pointerleave", () => hideTip(ac));
}

// one button per head (a <select> above 48 heads), the shown head pressed
function buildHeads(ac) {
  const ov = ac.ov;
  const box = ac.headBox;
  const names = ov.heads || [];
  const sig = names.join("\n");
  if (box.dataset.for !== sig) { // rebuilt only when the heads' names change (not for another layer's map)
    box.dataset.for = sig;
    if (names.length <= 48) {
      box.innerHTML = `<span class="attn-label">head</span>` + names.map((n, h) =>
        `<button data-head="${h}" aria-pressed="false">${String(n).replace(/[<&>"]/g, "")}</button>`).join("");
    } else {
      box.innerHTML = `<span class="attn-label">head</span><select>${names.map((n, h) =>
        `<option value="${h}">${String(n).replace(/[<&>"]/g, "")}</option>`).join("")}</select>`;
    }
  }
  for (const b of box.querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.head) === ac.head));
  }
  const s = box.querySelector("select");
  if (s) s.value = String(ac.head);
}

// a toolbar or key action: zoom by 1.5, the whole map, or pan an eighth of the view (big: half)
function act(ac, a, t0, big = false) {
  if (!ac.ov) return;
  const s = big ? 0.5 : 0.125;
  const zoom = (f) => ac.changeView(zoomView(ac.ov, ac.view, f), "zoom", t0);
  const pan = (dr, dc) => ac.changeView(panView(ac.view, dr, dc), "pan", t0);
  if (a === "in") zoom(1 / 1.5);
  else if (a === "out") zoom(1.5);
  else if (a === "reset") ac.changeView(fullView(ac.ov), "reset", t0);
  else if (a === "left") pan(0, -s);
  else if (a === "right") pan(0, s);
  else if (a === "up") pan(-s, 0);
  else if (a === "down") pan(s, 0);
  else if (a === "png") savePng(ac);
}

// "view" (click: the query row; drag: pan), "cells", "row", "column" or "rect"
function setMode(ac, mode) {
  ac.mode = mode;
  for (const b of ac.root.querySelectorAll(".attn-modes button[data-mode]")) {
    b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
  }
  ac.canvas.dataset.mode = mode;
}

// an event's position in canvas CSS px
function local(ac, e) {
  const rect = ac.canvas.getBoundingClientRect();
  return { x: e.clientX - rect.left, y: e.clientY - rect.top };
}

function onWheel(ac, e) {
  const { x, y } = local(ac, e);
  if (!ac.ov || !inMap(ac.map, x, y)) return;
  e.preventDefault();
  const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
  const f = clamp(Math.exp(dy * 0.002), 0.5, 2);
  const cell = toCell(ac.map, ac.view, x, y);
  ac.pointer = { x, y };
  ac.changeView(zoomView(ac.ov, ac.view, f, cell.r, cell.c), "wheel", e.timeStamp);
}

function onDown(ac, e) {
  if (!ac.ov || e.button !== 0) return;
  const { x, y } = local(ac, e);
  if (!inMap(ac.map, x, y)) return;
  ac.canvas.focus({ preventScroll: true });
  ac.canvas.setPointerCapture(e.pointerId);
  const box = e.shiftKey && ac.mode === "view" ? "zoom" : ac.mode === "rect" ? "select" : null;
  ac.drag = { x0: x, y0: y, x, y, view: { ...ac.view }, box, moved: false };
}

function onMove(ac, e) {
  if (!ac.ov) return;
  const { x, y } = local(ac, e);
  const d = ac.drag;
  if (d) {
    d.x = x;
    d.y = y;
    if (Math.abs(x - d.x0) + Math.abs(y - d.y0) > 4) d.moved = true;
    if (!d.moved) return;
    if (d.box) { drawOverlay(ac); return; }
    const m = ac.map;
    const v = d.view;
    const dr = -((y - d.y0) / m.h) * (v.r1 - v.r0);
    const dc = -((x - d.x0) / m.w) * (v.c1 - v.c0);
    ac.changeView({ r0: v.r0 + dr, r1: v.r1 + dr, c0: v.c0 + dc, c1: v.c1 + dc }, "drag", e.timeStamp);
    ac.tip.hidden = true;
    return;
  }
  if (inMap(ac.map, x, y)) {
    ac.pointer = { x, y };
    showTip(ac, x, y);
  } else if (ac.hover) hideTip(ac);
}

function onUp(ac, e) {
  const d = ac.drag;
  ac.drag = null;
  if (!d || !ac.ov) return;
  const { x, y } = local(ac, e);
  const a = toCell(ac.map, ac.view, d.x0, d.y0);
  if (!d.moved) { click(ac, a, e.timeStamp); return; }
  if (d.box) {
    const [r0, r1, c0, c1] = boxCells(ac.ov, a, toCell(ac.map, ac.view, x, y));
    if (d.box === "zoom") ac.changeView({ r0, r1, c0, c1 }, "box", e.timeStamp);
    else ac.setSelection({ kind: "rect", r0, r1, c0, c1 });
    drawOverlay(ac);
  }
}

// a click on a cell: the query row (mode "view"), else the selection the mode makes
function click(ac, cell, t0) {
  const ov = ac.ov;
  const r = clamp(Math.floor(cell.r), 0, ov.n_rows - 1);
  const c = clamp(Math.floor(cell.c), 0, ov.n_cols - 1);
  if (ac.mode === "view") {
    ac.setQuery(r);
    return;
  }
  if (ac.mode === "cells") {
    const cells = ac.selection && ac.selection.kind === "cells" ? ac.selection.cells.slice() : [];
    const i = cells.findIndex(([a, b]) => a === r && b === c);
    if (i >= 0) cells.splice(i, 1);
    else cells.push([r, c]);
    ac.setSelection(cells.length ? { kind: "cells", cells } : null);
  } else if (ac.mode === "row") ac.setSelection({ kind: "row", row: r });
  else if (ac.mode === "column") ac.setSelection({ kind: "column", col: c });
}

function onKey(ac, e) {
  if (!ac.ov || e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return; // a list's or slider's keys
  const a = KEYS[e.key];
  if (a) {
    e.preventDefault();
    act(ac, a, e.timeStamp, e.shiftKey && a.length > 3);
  } else if (e.key === "[" || e.key === "]") {
    e.preventDefault();
    const n = ac.ov.n_heads;
    ac.setHead((ac.head + (e.key === "]" ? 1 : n - 1)) % n, e.timeStamp);
  } else if (e.key === "Escape") {
    ac.drag = null;
    setMode(ac, "view");
    drawOverlay(ac);
  }
}
