"""viz/canvas: the renderer's JavaScript files (one job each, small), the one module the Streamlit wrapper sends,
and the core run in Chromium without a server (it reads what viz.tiles writes; the reason table drives it)."""

import importlib
import os
import re

import numpy as np
import pytest

from tests.e2e_support import chromium, chromium_available
from viz import canvas, tiles, wire

BANNER = re.compile(r"^// ---- viz/canvas/(\S+)\n", re.M)


def sections(module: str) -> dict[str, str]:
    """The joined module's files by name (renderer_js marks where each starts)."""
    parts = BANNER.split(module)
    assert parts[0] == ""
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_file_is_joined_and_small():
    on_disk = {p.name for p in canvas.DIR.glob("*.js")}
    helpers = {name for files in canvas.HOSTS.values() for name in files}
    assert on_disk == {*canvas.ORDER, *helpers, *(f"host_{h}.js" for h in canvas.HOSTS)}
    for name in on_disk:
        n = len((canvas.DIR / name).read_text(encoding="utf-8").splitlines())
        assert n < 500, f"viz/canvas/{name}: {n} lines"


FRAMEWORKS = r"streamlit|setStateValue|setTriggerValue|--st-|anywidget|jupyter|save_changes"


@pytest.mark.parametrize("host", list(canvas.HOSTS))
def test_only_the_host_names_its_framework_and_only_it_exports(host):
    module = canvas.renderer_js(host)
    files = sections(module)
    assert list(files) == [*canvas.ORDER, *canvas.HOSTS[host], f"host_{host}.js"]
    for name in (*canvas.ORDER, *canvas.HOSTS[host]):
        assert files[name] == (canvas.DIR / name).read_text(encoding="utf-8") + "\n"
        code = re.sub(r"//.*", "", files[name])  # the seam's description may name the hosts
        assert not re.search(FRAMEWORKS, code, re.I), name
        assert not re.search(r"^\s*(import|export)\b", files[name], re.M), name
    exports = {"streamlit": r"^export default function", "anywidget": r"^export default \{ render \}"}
    if host in exports:
        assert re.search(exports[host], files[f"host_{host}.js"], re.M)
    else:  # the standalone file's module runs itself
        assert not re.search(r"^\s*export\b", files[f"host_{host}.js"], re.M)
    assert not re.search(r"^\s*import\b|\bimport\(|https?://", module, re.M)  # nothing fetched at run time
    with pytest.raises(ValueError, match="streamlit"):
        canvas.renderer_js("nosuchhost")


def test_the_wrapper_sends_the_joined_module(monkeypatch):
    import streamlit.components.v2 as v2

    wrapper = importlib.import_module("ui.components.attention_canvas")
    sent = {}

    def register(name, **assets):
        sent.update(assets, name=name)
        return lambda **_: None

    monkeypatch.setattr(v2, "component", register)
    try:
        importlib.reload(wrapper)  # registers again, with the recorder
    finally:
        monkeypatch.undo()
        importlib.reload(wrapper)
    assert sent["name"] == "attention_canvas"
    assert sent["js"] == canvas.renderer_js("streamlit") and sent["css"] == canvas.renderer_css()


# ---- the core in Chromium (no host, no server): its files as one classic script on a blank page

@pytest.fixture(scope="module")
def core():
    if not chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing (/usr/bin/chromium): .ci/run must install it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    with chromium() as page:
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content="\n".join((canvas.DIR / n).read_text(encoding="utf-8") for n in canvas.ORDER))
        yield page


UNPACK_JS = """(bytes) => { const strip = (x) => ArrayBuffer.isView(x) ? {shape: x.shape, kind: x.constructor.name,
    values: Array.from(x)} : Array.isArray(x) ? x.map(strip) : x && typeof x === "object" ?
    Object.fromEntries(Object.entries(x).map(([k, v]) => [k, strip(v)])) : x;
    return strip(unpack(new Uint8Array(bytes))); }"""
KINDS = {"u1": "Uint8Array", "u2": "Uint16Array", "u4": "Uint32Array", "f4": "Float32Array"}


def same_as_page(py, js) -> bool:
    """A part as viz.wire.unpack reads it equals what the page's unpack made of the same bytes."""
    if isinstance(py, np.ndarray):
        return (js["shape"] == list(py.shape) and js["kind"] == KINDS[wire.DTYPES[py.dtype.name]]
                and np.array_equal(np.asarray(js["values"], dtype=py.dtype), py.ravel()))
    if isinstance(py, dict):
        return set(py) == set(js) and all(same_as_page(py[k], js[k]) for k in py)
    if isinstance(py, list):
        return len(py) == len(js) and all(same_as_page(a, b) for a, b in zip(py, js, strict=True))
    return py == js


@pytest.mark.browser
def test_the_page_reads_what_wire_pack_writes(core):
    rng = np.random.default_rng(0)
    reasons = np.zeros((2, 3, 5), dtype=np.uint8)
    reasons[:, 0, 4] = tiles.REASON_BITS["causal"] | tiles.REASON_BITS["padding"]
    overview = tiles.overview_payload(rng.integers(0, 256, (2, 3, 5), dtype=np.uint8), 1, 3, 5, ["a", "b\n", "ü"],
                                      list("vwxyz"), reasons=reasons, produces=["1", "2", "3"], heads=["0", "1"])
    values, argmax = tiles.block_max_argmax(rng.standard_normal((37, 21)).astype(np.float32), 4)
    detail = tiles.detail_payload(values, 8, 16, 4, head=1, overview_id=overview["id"], argmax=argmax,
                                  view={"r0": 8, "r1": 45, "c0": 16, "c1": 37})
    for part in (overview, detail):
        data = wire.pack({**part, "key": "map"})
        page = core.evaluate(UNPACK_JS, list(data))
        assert same_as_page(wire.unpack(data), page)
    labels = core.evaluate("(b) => decodeLabels(new Uint8Array(b))", overview["rows"].tolist())
    assert labels == wire.labels_from_blob(overview["rows"])
    assert core.evaluate("() => unpack(new Uint8Array([1, 2, 3, 4, 0, 0, 0, 0]))") is None


@pytest.mark.browser
def test_hatches_and_reason_names_come_from_the_overviews_table(core):
    table = tiles.reason_table()
    assert sorted(r["name"] for r in table) == sorted(tiles.REASON_BITS)
    assert all(r["bit"] == tiles.REASON_BITS[r["name"]] for r in table)
    assert len({r["hatch"] for r in table}) == len(table)  # one pattern per reason

    def page_hatches(t):
        return core.evaluate("(t) => { const {kinds, kindOf} = hatchKinds(t);"
                             " return Array.from(kindOf, (k) => kinds[k]); }", t)

    def first_hatch(t, bits):  # a cell with several reasons: the first of the table that it has
        return next((r["hatch"] for r in t if bits & r["bit"]), "-")

    for t in (table, table[::-1]):  # the order is the table's, not the page's
        got = page_hatches(t)
        assert got == [first_hatch(t, bits) for bits in range(256)]
    both = tiles.REASON_BITS["causal"] | tiles.REASON_BITS["padding"]
    assert page_hatches(table)[both] != page_hatches(table[::-1])[both]
    text = "(a) => reasonText(a[0], a[1])"  # the hover's names: lowest bit first
    by_bit = sorted(table, key=lambda r: r["bit"])
    assert core.evaluate(text, [table, both]) == " + ".join(r["name"] for r in by_bit if both & r["bit"])
    assert core.evaluate(text, [table[::-1], both]) == core.evaluate(text, [table, both])
    assert core.evaluate(text, [table, 0]) == "masked"
    renamed = [{**r, "name": r["name"].upper()} for r in table]
    assert core.evaluate(text, [renamed, tiles.REASON_BITS["window"]]) == "WINDOW"
