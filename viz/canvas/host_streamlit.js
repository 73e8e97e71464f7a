// host_streamlit.js: the Streamlit components v2 host (ui/components/attention_canvas.py mounts it). Each part is
// its own mount, whose `data` is the part's bytes: the "overview" mount owns the instance (in its element); the
// "head", "detail" and "sync" mounts find it by the `key` in their header. The page's state goes back to Python
// as component state (setStateValue).

const instances = new Map(); // key -> AttentionCanvas
const waiting = new Map(); // key -> parts that came before their overview's instance (the last PENDING_MAX)

function forget(inst) {
  inst.destroy();
  if (instances.get(inst.key) === inst) instances.delete(inst.key);
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const t0 = performance.now();
  const part = unpack(data);
  if (!part || !part.key) return undefined;
  if (part.part !== "overview") {
    const inst = instances.get(part.key);
    if (inst) inst.addPart(part, t0);
    else waiting.set(part.key, [...(waiting.get(part.key) || []), part].slice(-PENDING_MAX));
    return undefined;
  }
  let inst = parentElement.__attnCanvas;
  if (!inst || inst.key !== part.key) {
    if (inst) forget(inst);
    inst = new AttentionCanvas(parentElement, part.key);
    parentElement.__attnCanvas = inst;
  }
  inst.report = (name, value) => setStateValue(name, value);
  instances.set(part.key, inst);
  inst.setOverview(part, t0);
  const held = waiting.get(part.key) || [];
  waiting.delete(part.key);
  for (const p of held) inst.addPart(p, t0);
  return () => {
    forget(inst);
    if (parentElement.__attnCanvas === inst) delete parentElement.__attnCanvas;
  };
}
