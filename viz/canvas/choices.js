// choices.js: the maps a page may switch between without Python (other layers, kinds, stages, training steps):
// the overview's choice groups as controls in the bar (buttons, a list or a slider), which combination a pick
// means, and the keys the held maps are found by. Functions take the canvas (`ac`, canvas.js) first.

// a choice ({kind, layer, stage}) as one string, whatever the order of its names
function choiceKey(choice) {
  return JSON.stringify(Object.keys(choice).sort().map((k) => [k, choice[k]]));
}

// `current` with group `name` set to `value`, moved to the valid combination that keeps most of the other groups
// (the earlier groups first); null if no combination has that value
function resolveChoice(choices, current, name, value) {
  const names = choices.groups.map((g) => g.name);
  const at = names.indexOf(name);
  if (at < 0) return null;
  if (!choices.valid) return { ...current, [name]: value };
  let best = null;
  let bestScore = -1;
  for (const combo of choices.valid) {
    if (combo[at] !== value) continue;
    let score = 0;
    names.forEach((n, i) => { if (i !== at && combo[i] === current[n]) score += 2 ** (names.length - i); });
    if (score > bestScore) { best = combo; bestScore = score; }
  }
  return best && Object.fromEntries(names.map((n, i) => [n, best[i]]));
}

const html = (s) => String(s).replace(/[<&>"]/g, (c) => `&#${c.charCodeAt(0)};`);

// the bar's controls for the choice groups: before the heads, and after them the groups marked after_heads;
// `shown`: the choice to mark (default: the map's); rebuilt only when the groups change
function buildChoices(ac, shown) {
  const groups = (ac.choices && ac.choices.groups) || [];
  const current = shown || ac.asked || (ac.ov && ac.ov.choice) || {};
  const sig = JSON.stringify(groups);
  if (ac.choiceSig !== sig) {
    ac.choiceSig = sig;
    const [before, after] = ac.choiceBoxes;
    before.innerHTML = groups.filter((g) => !g.after_heads).map(groupHtml).join("");
    after.innerHTML = groups.filter((g) => g.after_heads).map(groupHtml).join("");
  }
  for (const g of groups) {
    const el = ac.root.querySelector(`.attn-choice[data-choice="${CSS.escape(g.name)}"]`);
    if (!el) continue;
    const i = g.options.findIndex(([v]) => v === current[g.name]);
    for (const b of el.querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.i) === i));
    const input = el.querySelector("select, input");
    if (input && i >= 0 && Number(input.value) !== i) input.value = String(i);
    const out = el.querySelector("output");
    if (out && i >= 0) out.textContent = g.options[i][1];
  }
}

function groupHtml(g) {
  const label = `<span class="attn-label">${html(g.label || g.name)}</span>`;
  const name = html(g.name);
  if (g.control === "slider") {
    return `<div class="attn-choice attn-slider" data-choice="${name}">${label}<input type="range" min="0" ` +
      `max="${g.options.length - 1}" step="1" aria-label="${html(g.label || g.name)}"><output></output></div>`;
  }
  if (g.control === "select" || (!g.control && g.options.length > 48)) {
    return `<div class="attn-choice" data-choice="${name}">${label}<select aria-label="${html(g.label || g.name)}">` +
      g.options.map(([, t], i) => `<option value="${i}">${html(t)}</option>`).join("") + "</select></div>";
  }
  return `<div class="attn-choice" data-choice="${name}">${label}` +
    g.options.map(([, t], i) => `<button data-i="${i}" aria-pressed="false">${html(t)}</button>`).join("") + "</div>";
}

// clicks, lists and slider steps on the choice controls -> ac.pick (a slider's steps are reported once it rests)
function bindChoices(ac) {
  const option = (e) => {
    const el = e.target.closest(".attn-choice");
    const g = el && ac.choices && ac.choices.groups.find((x) => x.name === el.dataset.choice);
    return g ? [g, el] : [null, null];
  };
  for (const box of ac.choiceBoxes) {
    box.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      const [g] = option(e);
      if (b && g) ac.pick(g.name, g.options[Number(b.dataset.i)][0], e.timeStamp);
    });
    box.addEventListener("change", (e) => {
      const [g] = option(e);
      if (g && e.target.tagName === "SELECT") ac.pick(g.name, g.options[Number(e.target.value)][0], e.timeStamp);
    });
    box.addEventListener("input", (e) => {
      const [g, el] = option(e);
      if (!g || e.target.type !== "range") return;
      const [value, text] = g.options[Number(e.target.value)];
      el.querySelector("output").textContent = text;
      ac.pick(g.name, value, e.timeStamp, true);
    });
  }
}
