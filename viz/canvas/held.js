// The maps the page holds: an overview prepared once for the redraw, the overviews a user may switch to (a stack's
// or the neighbours', by their choice, within HELD_BYTES), dropped when a new traced call comes.

const HELD_BYTES = 96 * 2 ** 20; // the stacks' maps the page keeps (the least recently shown go first)

// an overview's arrays turned into what the redraw reads (once per overview): every head's held tile (uint8 colour
// indices, or float32 exact values), decoded labels, colour table, hatch kinds, the reasons present
function prepareOverview(ov) {
  if (ov.held) return;
  const H = ov.n_heads;
  const r = Math.ceil(ov.n_rows / ov.pool);
  const c = Math.ceil(ov.n_cols / ov.pool);
  const n = r * c;
  const reasons = ov.reasons || null;
  ov.held = [];
  for (let h = 0; h < H; h++) {
    const m = !reasons ? null : reasons.shape.length === 3 ? reasons.subarray(h * n, (h + 1) * n) : reasons;
    ov.held.push({ kind: "held", r0: 0, c0: 0, pool: ov.pool, rows: r, cols: c,
      q: ov.tiles ? ov.tiles.subarray(h * n, (h + 1) * n) : null,
      values: ov.values ? ov.values.subarray(h * n, (h + 1) * n) : null, m });
  }
  ov.rowTokens = decodeLabels(ov.rows);
  ov.colTokens = ov.cols ? decodeLabels(ov.cols) : ov.rowTokens;
  ov.produces = decodeLabels(ov.produces);
  ov.lut = lut32(ov.colormap);
  ov.exactMax = ov.exact_max || EXACT_MAX_DEFAULT;
  ov.hatchKinds = hatchKinds(ov.reason_table || []);
  let bits = 0;
  if (reasons) for (let i = 0; i < reasons.length; i++) bits |= reasons[i];
  ov.reasonBits = bits;
}

// keep an overview the user may switch to, by its choice (a layer, kind, stage or step), within HELD_BYTES: the
// least recently held go first, never the one shown; returns the one held for its id (already prepared) if any
function holdOverview(ac, ov) {
  if (!ov.choice) return ov;
  const k = choiceKey(ov.choice);
  const had = ac.held.get(k);
  if (had && had.id === ov.id) {
    ac.held.delete(k); // most recent last
    ac.held.set(k, had);
    return had;
  }
  ac.held.delete(k);
  ac.held.set(k, ov);
  let bytes = 0;
  for (const o of ac.held.values()) bytes += overviewBytes(o);
  for (const [key, o] of ac.held) { // the least recently held first, never the one shown
    if (bytes <= HELD_BYTES) break;
    if (o === ac.ov || o === ov) continue;
    bytes -= overviewBytes(o);
    ac.held.delete(key);
  }
  return ov;
}

function overviewBytes(ov) {
  return (ov.tiles ? ov.tiles.length : 0) + (ov.values ? ov.values.length * 4 : 0) +
    (ov.reasons ? ov.reasons.length : 0);
}

// a new traced call: the maps held from the old one go
function dropScopes(ac, scope) {
  for (const [k, o] of ac.held) if (o.scope !== undefined && o.scope !== scope) ac.held.delete(k);
}

// {overview, head, rows, cols, exact, values}: the shown head's held tile (exact float32 cells, else uint8 indices)
function shownCells(ac) {
  if (!ac.ov) return null;
  const t = ac.ov.held[ac.head];
  return { overview: ac.ov.id, head: ac.head, rows: t.rows, cols: t.cols, pool: t.pool, exact: !!t.values,
    values: Array.from(t.values || t.q) };
}
