// colours.js: the colour scales (256-entry lookup tables) and every fixed colour the canvas paints with.

// Viridis (matplotlib, CC0) and ColorBrewer RdBu (Apache-2.0, see NOTICE.md; reversed: blue below 0, red above),
// evenly spaced stops as in plotly.colors, interpolated linearly in RGB to 256 entries as Plotly does.
const STOPS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
    "#fde725"],
  rdbu_r: ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
    "#b2182b", "#67001f"],
};
const MASK_GREY = "#8c8c8c"; // one grey for every masked cell (viz/heatmap.py MASK_COLOUR)
const HATCH_LINE = "#ffffff"; // the hatching's lines on that grey
const SEL_COLOUR = "#ff2d95"; // the selection's outline

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

// one opaque pixel as the Uint32 view of ImageData holds it
function packRgb(r, g, b) {
  return LITTLE ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
}

// colour index (0..255) -> packed pixel
function lut32(name) {
  const lut = LUTS[name] || LUTS.viridis;
  const out = new Uint32Array(256);
  for (let i = 0; i < 256; i++) out[i] = packRgb(lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2]);
  return out;
}

// [r, g, b] of colour index q (what the tests compare pixels with)
function lutRgb(name, q) {
  return Array.from((LUTS[name] || LUTS.viridis).subarray(q * 3, q * 3 + 3));
}
