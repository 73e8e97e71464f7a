// snapshot.js: the map as a PNG for a paper or a slide: drawn again at PNG_SCALE device pixels per CSS pixel (or
// the screen's ratio, if higher), with its title, axes, colour bar and outlines, on the page's background; then
// drawn back at the screen's ratio. Functions take the canvas (`ac`) first.

const PNG_SCALE = 2;

// the first opaque background colour from the element up (white if none)
function backgroundOf(el) {
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const bg = getComputedStyle(e).backgroundColor;
    if (bg && bg !== "transparent" && !/rgba\([^)]*,\s*0\)$/.test(bg)) return bg;
  }
  return "#ffffff";
}

// a new <canvas> holding the map at `scale` (its hover outline and tooltip left out)
function snapshotCanvas(ac, scale = PNG_SCALE) {
  if (!ac.ov) return null;
  const hover = ac.hover;
  const tipHidden = ac.tip.hidden;
  ac.hover = null;
  ac.tip.hidden = true;
  ac.scale = Math.max(scale, window.devicePixelRatio || 1);
  ac.layoutKey = null;
  ac.layout();
  ac.draw("snapshot");
  drawOverlay(ac);
  const out = document.createElement("canvas");
  out.width = ac.canvas.width;
  out.height = ac.canvas.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = backgroundOf(ac.root);
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(ac.canvas, 0, 0);
  ctx.drawImage(ac.over, 0, 0);
  ac.scale = null;
  ac.layoutKey = null;
  ac.layout();
  ac.hover = hover;
  ac.tip.hidden = tipHidden;
  ac.draw("snapshot-done");
  drawOverlay(ac);
  ac.stat.snapshot = { width: out.width, height: out.height, scale: out.width / ac.W };
  return out;
}

// a file name from the map's title and head: "cross-attention-layer-1-weights-head-3.png"
function snapshotName(ac) {
  const name = `${ac.ov.title || "attention"} head ${(ac.ov.heads || [])[ac.head] ?? ac.head}`;
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") + ".png";
}

// the snapshot downloaded as a PNG file
function savePng(ac, scale = PNG_SCALE) {
  const out = snapshotCanvas(ac, scale);
  if (!out) return;
  out.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = snapshotName(ac);
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}
