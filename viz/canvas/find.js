// find.js: "find in text" on the page, for hosts without a server-side finder (the notebook widget, the standalone
// file): the positions whose query token holds a word (from the overview's labels), and a jump there: the view the
// app's "Show it on the map" moves to, and that row as the query. Functions take the canvas (`ac`) first.

const FIND_MAX = 500; // matches listed
const FIND_HALF = 32; // the view: 2 * FIND_HALF queries around the match, 4 * FIND_HALF keys

// positions whose query token holds `word` (case-insensitive), at most FIND_MAX
function findPositions(ov, word) {
  const needle = String(word || "").trim().toLowerCase();
  const out = [];
  if (!needle || !ov.rowTokens) return out;
  for (let i = 0; i < ov.rowTokens.length && out.length < FIND_MAX; i++) {
    if (ov.rowTokens[i].toLowerCase().includes(needle)) out.push(i);
  }
  return out;
}

// the view around query `pos`: its keys end at its own position on a self-attention's diagonal
function findView(ov, pos) {
  const r0 = Math.max(0, pos - FIND_HALF);
  const centre = ov.cols ? Math.min(pos, ov.n_cols - 1) : pos + (ov.n_cols - ov.n_rows);
  const c0 = Math.max(0, centre - 2 * FIND_HALF);
  return { r0, r1: Math.min(ov.n_rows, r0 + 2 * FIND_HALF), c0, c1: Math.min(ov.n_cols, c0 + 4 * FIND_HALF) };
}

function showPosition(ac, pos) {
  ac.changeView(findView(ac.ov, pos), "find");
  ac.setQuery(pos);
}

// an input, the count and ‹ › through the matches; Enter or a pause in typing finds, and shows the first
function findBox(ac) {
  const box = document.createElement("div");
  box.className = "attn-find";
  box.innerHTML = `<span class="attn-label">find</span><input type="search" placeholder="a word of the input"
    aria-label="find in text" maxlength="200"><button data-step="-1" title="previous">‹</button>
    <button data-step="1" title="next">›</button><span class="attn-find-count"></span>`;
  const input = box.querySelector("input");
  const count = box.querySelector(".attn-find-count");
  let found = [];
  let at = 0;
  let timer = null;
  const show = () => {
    count.textContent = !input.value.trim() ? "" : found.length ?
      `${at + 1} of ${found.length}${found.length === FIND_MAX ? "+" : ""}: ${found[at]}·${ac.ov.rowTokens[found[at]]}` :
      "no query token holds it";
    if (found.length) showPosition(ac, found[at]);
  };
  const search = () => {
    clearTimeout(timer);
    found = ac.ov ? findPositions(ac.ov, input.value) : [];
    at = 0;
    show();
  };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 250); });
  input.addEventListener("keydown", (e) => { e.stopPropagation(); if (e.key === "Enter") search(); });
  box.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b || !found.length) return;
    at = (at + Number(b.dataset.step) + found.length) % found.length;
    show();
  });
  return box;
}
