// host_anywidget.js: the Jupyter host (anywidget; viz/notebook.py's AttentionWidget). render({model, el}) makes one
// instance in `el`, under a bar of pickers (attention kind, layer, stage) and "find in text" (find.js), with the
// query strip (strip.js) below.
//
// Python -> page: the `overview` trait (a part's bytes, as a binary buffer: a new attention or stage; it holds every
// head's tile, so a head change is drawn at once, without asking the kernel) and custom messages {type: "part"}
// whose one buffer is a part ("detail", "row" or "sync"), or {type: "error", message}. Page -> Python: the traits
// `view`, `head`, `query` and `selection` (the core's report), `name` and `stage` (the pickers), and the message
// {type: "ready"} when a view of the widget opens (the kernel answers with the head, view and detail it holds).

const u8Of = (b) => (b instanceof Uint8Array ? b : b instanceof ArrayBuffer ? new Uint8Array(b) :
  new Uint8Array(b.buffer, b.byteOffset, b.byteLength));

// the kind / layer / stage selects, from the `choices` trait ({records: [{name, kind, layer}], stages: {name: [...]},
// stage_names: {stage: words}}) and the `name` and `stage` traits
function buildPickers(model, box, onPick) {
  const choices = model.get("choices") || { records: [], stages: {} };
  const name = model.get("name");
  const stage = model.get("stage");
  const records = choices.records || [];
  const current = records.find((r) => r.name === name) || records[0];
  if (!current) return;
  const kinds = [...new Set(records.map((r) => r.kind))];
  const layers = records.filter((r) => r.kind === current.kind);
  const stages = (choices.stages || {})[current.name] || ["weights"];
  const words = choices.stage_names || {};
  const opts = (items, value, text) => items.map((x) =>
    `<option value="${String(x.value).replace(/[<&>"]/g, "")}"${x.value === value ? " selected" : ""}>` +
    `${String(text(x)).replace(/[<&>"]/g, "")}</option>`).join("");
  box.innerHTML = `<span class="attn-label">attention</span>
    <select data-pick="kind" aria-label="attention kind">${opts(kinds.map((k) => ({ value: k })), current.kind,
      (x) => x.value)}</select>
    <span class="attn-label">layer</span>
    <select data-pick="layer" aria-label="layer">${opts(layers.map((r) => ({ value: r.name, layer: r.layer })),
      current.name, (x) => x.layer)}</select>
    <span class="attn-label">stage</span>
    <select data-pick="stage" aria-label="stage">${opts(stages.map((s) => ({ value: s })), stage,
      (x) => words[x.value] || x.value)}</select>`;
  box.onchange = (e) => {
    const pick = e.target.dataset.pick;
    let next = current.name;
    if (pick === "kind") {
      const same = records.filter((r) => r.kind === e.target.value);
      next = (same.find((r) => r.layer === current.layer) || same[same.length - 1]).name;
    } else if (pick === "layer") next = e.target.value;
    const nextStage = pick === "stage" ? e.target.value : stage;
    const allowed = (choices.stages || {})[next] || ["weights"];
    onPick(next, allowed.includes(nextStage) ? nextStage : "weights");
  };
}

function render({ model, el }) {
  const t0 = performance.now();
  const root = document.createElement("div");
  root.className = "attn attn-widget";
  root.dataset.key = model.get("key") || "notebook";
  root.dataset.lmSuppressShortcuts = "true"; // keys typed into the widget are its own, not the notebook's commands
  const bar = document.createElement("div");
  bar.className = "attn-bar";
  const picks = document.createElement("div");
  picks.className = "attn-pickers";
  const mapBox = document.createElement("div");
  const strip = stripElement();
  const status = document.createElement("div");
  status.className = "attn-status";
  status.setAttribute("role", "status");
  root.append(bar, mapBox, strip.root, status);
  el.appendChild(root);

  const report = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  const ac = new AttentionCanvas(mapBox, model.get("key") || "notebook", report);
  bar.append(picks, findBox(ac));
  ac.stat.received = 0; // what came from the kernel: overview changes and messages (tests count them)
  const say = (text) => { status.textContent = text || ""; };
  const pickers = () => buildPickers(model, picks, (name, stage) => {
    say("computing the overview of every head…");
    model.set("name", name);
    model.set("stage", stage);
    model.save_changes();
  });

  const onOverview = () => {
    const part = unpack(u8Of(model.get("overview")));
    ac.stat.received += 1;
    if (!part) return;
    if (ac.ov && ac.ov.id !== part.id) strip.root.hidden = true;
    ac.setOverview(part, performance.now());
    pickers();
    say("");
  };
  const onMessage = (msg, buffers) => {
    ac.stat.received += 1;
    if (msg && msg.type === "error") { say(msg.message); return; }
    if (!msg || msg.type !== "part" || !buffers || !buffers.length) return;
    const part = unpack(u8Of(buffers[0]));
    if (!part) return;
    if (part.part === "row") {
      if (ac.ov && part.overview === ac.ov.id) drawStrip(strip, ac.ov, part, mapBox.clientWidth || 600);
      return;
    }
    ac.addPart(part, performance.now());
  };
  model.on("change:overview", onOverview);
  model.on("change:choices", pickers);
  model.on("msg:custom", onMessage);
  const first = unpack(u8Of(model.get("overview")));
  if (first) ac.setOverview(first, t0);
  pickers();
  model.send({ type: "ready" });
  return () => {
    model.off("change:overview", onOverview);
    model.off("change:choices", pickers);
    model.off("msg:custom", onMessage);
    ac.destroy();
    root.remove();
  };
}

export default { render };
