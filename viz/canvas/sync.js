// sync.js: the page's state and Python's, both ways. Out: the view (whole cells, once zooming and panning rest),
// through the host's report(name, value). In: the "sync" part, what Python saw and asks ({head, view, overview,
// seen: {view, head, query, selection, choice}, goto: {r0, r1, c0, c1, nonce} or null}). Functions take the canvas
// first.

const VIEW_REPORT_MS = 120; // the view is reported this long after the last zoom / pan step

function scheduleViewReport(ac) {
  clearTimeout(ac.viewTimer);
  ac.viewTimer = setTimeout(() => reportView(ac), VIEW_REPORT_MS);
}

// the view in whole cells, end exclusive
function reportedCells(ac) {
  const v = ac.view;
  return { r0: Math.floor(v.r0), r1: Math.ceil(v.r1 - 1e-9), c0: Math.floor(v.c0), c1: Math.ceil(v.c1 - 1e-9) };
}

function reportView(ac) {
  const out = reportedCells(ac);
  const s = JSON.stringify(out);
  if (s === ac.reported.view) return;
  ac.reported.view = s;
  ac.skipped = null; // the new view's detail (or that it is too big) is on its way
  ac.stat.reportedView = { ...out, at: performance.now() };
  ac.report("view", out);
}

// A fresh page (or Python choosing another head) takes the head and view Python drew the detail for; true if
// anything changed (then redraw).
function applySync(ac, p) {
  const seen = p.seen || {};
  let changed = applyChoice(ac, seen);
  if (typeof p.head === "number" && p.head !== ac.head && p.head < ac.ov.n_heads &&
      (ac.reported.head === undefined || seen.head === ac.reported.head)) {
    ac.head = p.head; // Python chose another head (its widget, not this page): follow, and say so
    buildHeads(ac);
    if (seen.head !== p.head) {
      ac.reported.head = p.head;
      ac.report("head", p.head);
    }
    changed = true;
  }
  if (p.goto && p.goto.nonce !== ac.gotoNonce && p.overview === ac.ov.id) {
    // Python asked to show a region ("find in text"): jump there even after the user moved the view
    ac.gotoNonce = p.goto.nonce;
    ac.view = clampView(ac.ov, { r0: p.goto.r0, r1: p.goto.r1, c0: p.goto.c0, c1: p.goto.c1 });
    ac.touched = true;
    reportView(ac);
    changed = true;
  } else if (!ac.touched && p.view && p.overview === ac.ov.id) {
    const v = p.view;
    const full = fullView(ac.ov);
    if (v.r1 - v.r0 < full.r1 || v.c1 - v.c0 < full.c1) {
      ac.view = clampView(ac.ov, { r0: v.r0, r1: v.r1, c0: v.c0, c1: v.c1 });
      ac.reported.view = JSON.stringify(v);
      changed = true;
    }
  }
  if (ac.selection === null && seen.selection) {
    ac.selection = seen.selection;
    changed = true;
  }
  if (ac.query === null && typeof seen.query === "number") {
    ac.query = seen.query;
    changed = true;
  }
  return changed;
}

// The map the page picked (ac.asked) and Python's: once Python has seen the pick and still sends another map, it
// chose otherwise (that combination is not there): show Python's. A map Python chose with its own widgets is
// reported back, so that the page's state says what it shows. Returns false: show() draws what it changes.
function applyChoice(ac, seen) {
  const offered = ac.offered;
  if (!offered || !offered.choice) return false;
  const seenKey = seen.choice ? choiceKey(seen.choice) : null;
  if (ac.asked) {
    if (seenKey !== choiceKey(ac.asked) || choiceKey(offered.choice) === seenKey) return false;
    ac.asked = null;
    ac.show(offered, "overview");
    return false; // show() drew it
  }
  const shown = choiceKey(offered.choice);
  if (seenKey !== null && seenKey !== shown && ac.reported.choice !== shown) {
    ac.reported.choice = shown;
    ac.report("choice", offered.choice);
  }
  return false;
}
