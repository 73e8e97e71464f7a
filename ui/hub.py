"""The sidebar's Hugging Face parts: what the cache holds (and why a model of it cannot be opened), and downloading a
hub id the cache lacks, when this server allows it: the size first, then a progress bar with bytes and speed and a
Stop button, while the page keeps showing the model that was open."""

from __future__ import annotations

import streamlit as st

from model import hub
from model.safe.memory import max_model_bytes

from .launch import launch
from .models import path_policy, size_text
from .text import md, short

PLANS = "_download_plans"  # session: hub name -> DownloadPlan, or the refusal's message
STARTED = "_download_started"  # session: the hub names whose download this session started (or the command line did)
AUTOSTARTED = "_download_autostarted"  # session: the command line's download was started (or found done) once
POLL_SECONDS = 0.5
MAX_SHOWN = 60  # lines of the cache's listing in the sidebar (the picker offers every model)


def cache_table() -> None:
    """An expander listing the cache's models, one line each (id and revision, family, size on disk; or why it
    cannot be opened), then the scan's problems. Nothing when the cache is off or empty."""
    if not hub.cache_enabled():
        return
    found = hub.listing()
    if not found.models and not found.problems:
        return
    bad = sum(m.reason is not None for m in found.models)
    title = f"Hugging Face cache · {len(found.models)} models" + (f" ({bad} cannot open)" if bad else "")
    with st.expander(title):
        lines = [f"- **{md(m.name)}** · " + (f"{md(m.family or '?')} · {size_text(m.size_on_disk)}" if m.reason is None
                                            else f"cannot open: {md(short(m.reason, 160))}")
                 for m in found.models[:MAX_SHOWN]]
        if len(found.models) > MAX_SHOWN:
            lines.append(f"- … and {len(found.models) - MAX_SHOWN:,} more (`python -m model.hub list` shows them all)")
        public = path_policy().public  # a public server does not say where its files are
        if public and found.problems:
            lines.append(f"- ⚠ {len(found.problems)} entries of the cache could not be listed")
        elif found.problems:
            lines += [f"- ⚠ {md(short(problem, 300))}" for problem in found.problems]
        st.markdown("\n".join(lines))
        st.caption(("The Hugging Face cache" if public else f"{md(found.cache)} (HF_HUB_CACHE)")
                   + f", scanned in {found.seconds:.2f} s"
                   + (f"; {found.older} older snapshots no branch or tag points to are not listed" if found.older
                      else "") + ". Type an id (org/name, org/name@revision) below to open one.")


def _plan(ref: hub.HubRef):
    """The download's plan (one request to the hub, no file fetched), kept in the session; a str when refused."""
    plans = st.session_state.setdefault(PLANS, {})
    if ref.name not in plans:
        try:
            plans[ref.name] = hub.plan_download(ref)
        except hub.DownloadRefused as e:
            plans[ref.name] = str(e)
    return plans[ref.name]


def download_panel(error: hub.NotCached, typed: str) -> None:
    """For a hub id the cache lacks (``typed`` in the box), with downloads allowed: its size and a Download button
    (or why it would be refused); then the download's progress (a fragment that reruns itself: the rest of the page
    stays as it is); when it ends, the whole page runs again and opens the model, or says what went wrong. The
    command line's model with ``--allow-download`` starts by itself, once per session."""
    ref = error.ref
    asked = launch()
    autostart = asked.allow_download and typed == asked.model and not st.session_state.get(AUTOSTARTED)
    st.session_state[AUTOSTARTED] = True
    job = hub.current_job(ref)
    started = st.session_state.setdefault(STARTED, set())
    if job is not None and job.state().running:
        _progress(ref.name)
        return
    state = job.state() if job is not None else None
    if state is not None and ref.name in started and state.status in ("failed", "stopped"):  # say why it ended
        (st.warning if state.status == "stopped" else st.error)(md(short(state.message, 600)))
        started.discard(ref.name)
        st.session_state.get(PLANS, {}).pop(ref.name, None)  # what is left to fetch has changed: ask the hub again
        st.button("Check again", key="download_again")
        return
    plan = _plan(ref)
    st.info(md(short(error, 600)))
    if isinstance(plan, str):
        st.error(f"It will not be downloaded: {md(short(plan, 600))}")
        return
    what = f"{len(plan.files)} files, {size_text(plan.total_bytes)}"
    st.caption(f"From the hub: config, tokenizer and safetensors files only ({what}); the weights, "
               f"{size_text(plan.weights_bytes)}, are within this server's model budget of "
               f"{max_model_bytes() / 2**30:,.1f} GiB (INSPECTOR_MAX_MODEL_MB).")
    if autostart or st.button(f"Download {ref.name} ({size_text(plan.total_bytes)})", key="download_start",
                              type="primary"):
        hub.start_job(plan)
        started.add(ref.name)
        st.rerun()


@st.fragment(run_every=POLL_SECONDS)
def _progress(name: str) -> None:
    """The running download's bar (bytes, speed, time left) and its Stop button; reruns itself every half second and
    the whole page once the download has ended."""
    job = hub.current_job(hub.HubRef.parse(name))
    state = job.state() if job is not None else None
    if state is None or not state.running:
        st.rerun(scope="app")
    stopping = job.counter.stopping.is_set()
    st.progress(min(1.0, state.done / state.total) if state.total else 0.0,
                text=f"{'Stopping' if stopping else 'Downloading'} {md(name)}: {state.line()}")
    st.button("Stop", key="download_stop", on_click=job.stop, disabled=stopping,
              help="Stops at the next chunk: nothing half-written is kept; finished files stay in the cache.")


__all__ = ["cache_table", "download_panel"]
