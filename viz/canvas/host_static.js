// host_static.js: the standalone file's host (viz/standalone.py writes the file): no kernel, no server, no network.
// The file holds, in <script type="application/json" id="attn-file">, its parts as base64 (zlib-deflated when
// `deflate` is set; the browser's DecompressionStream inflates them): the overview of every head first, then exact
// detail tiles (whole heads, or one window of one head, up to the budget the file states), with the head and view it
// was saved at and a note saying where its exact cells stop (the hover says it over cells without them).

function bytesOf(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

async function partOf(entry) {
  const raw = bytesOf(entry.data);
  if (!entry.deflate) return unpack(raw);
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
  return unpack(new Uint8Array(await new Response(stream).arrayBuffer()));
}

// whether a detail part holds every cell of the map exactly
function wholeMap(ov, d) {
  const t = d.tile;
  return t && t.pool === 1 && t.r0 === 0 && t.c0 === 0 && t.rows === ov.n_rows && t.cols === ov.n_cols;
}

async function boot() {
  const t0 = performance.now();
  const spec = JSON.parse(document.getElementById("attn-file").textContent);
  const [ov, ...details] = await Promise.all(spec.parts.map(partOf));
  const byHead = new Map();
  for (const d of details) byHead.set(d.head, [...(byHead.get(d.head) || []), d]);
  const el = document.getElementById("attn-root");
  let ac = null;
  // the head's exact tiles (the core keeps a few recent ones); where they stop, the hover says so
  const feed = (head) => {
    const held = byHead.get(head) || [];
    for (const d of held) ac.addPart(d, performance.now());
    if (!held.some((d) => wholeMap(ov, d))) {
      ac.addPart({ part: "detail", skipped: true, overview: ov.id, head, max_cells: 0, note: spec.note },
        performance.now());
    }
  };
  ac = new AttentionCanvas(el, spec.key || "file", (name) => {
    if (name === "head" || name === "view") feed(ac.head);
  });
  ac.root.querySelector(".attn-bar").appendChild(findBox(ac));
  ac.setOverview(ov, t0);
  const view = spec.view ? { ...spec.view, nonce: 1 } : null;
  ac.addPart({ part: "sync", overview: ov.id, head: spec.head, view: null, seen: {}, goto: view }, t0);
  feed(ac.head);
  ac.stat.file = { parts: spec.parts.length, exactHeads: [...byHead.keys()], ready: performance.now() - t0 };
  // the file's exact value of one cell, or null where it holds none (tests compare them with the trace)
  ac.stat.exactCell = (head, r, c) => {
    for (const d of byHead.get(head) || []) {
      const t = d.tile;
      if (t.pool === 1 && r >= t.r0 && r < t.r0 + t.rows && c >= t.c0 && c < t.c0 + t.cols) {
        return t.values[(r - t.r0) * t.cols + (c - t.c0)];
      }
    }
    return null;
  };
}

boot().catch((e) => {
  const el = document.getElementById("attn-root");
  el.textContent = `This file could not be drawn: ${e && e.message ? e.message : e}`;
  window.__attnFileError = String(e && e.stack ? e.stack : e);
});
