"""The Training view's figures: scores and losses over training steps, and one head across steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from .grids import thumbnail_grid
from .heatmap import esc, figure

HEAD_COLOURS = qualitative.Safe + qualitative.Vivid  # colour-blind-considerate qualitative palette first


def score_lines(steps: Sequence[int], series: Mapping[str, Sequence[float]], *, title: str, y_title: str,
                current_step: int | None = None, chance: float | None = None, y_range: tuple | None = None,
                highlight: str | None = None, reference: tuple[int, float, str] | None = None) -> go.Figure:
    """One line per series (e.g. per head) over training steps; a dotted chance level, the current step, and a
    ``reference`` point (step, value, name), e.g. the final model's own score."""
    data = []
    for n, (name, ys) in enumerate(series.items()):
        width = 3.5 if name == highlight else 1.8
        data.append(dict(type="scatter", x=list(steps), y=np.asarray(ys, dtype=np.float64), mode="lines+markers",
                         name=esc(name), line={"color": HEAD_COLOURS[n % len(HEAD_COLOURS)], "width": width},
                         marker={"size": 5}, hovertemplate=f"{esc(name)}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>"))
    shapes = []
    if current_step is not None:
        shapes.append({"type": "line", "x0": current_step, "x1": current_step, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": "#333", "width": 1, "dash": "dot"}})
    if chance is not None:
        data.append(dict(type="scatter", x=[min(steps), max(steps)], y=[chance, chance], mode="lines",
                         name="chance (uniform attention)", line={"color": "grey", "dash": "dot"},
                         hovertemplate=f"chance {chance:.3f}<extra></extra>"))
    if reference is not None:
        step, value, name = reference
        data.append(dict(type="scatter", x=[step], y=[value], mode="markers", name=esc(name),
                         marker={"symbol": "star", "size": 13, "color": "#222"},
                         hovertemplate=f"{esc(name)}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>"))
    for trace in data:
        trace["showlegend"] = True  # every series named, even a single one
    return figure(data, dict(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title={"text": title, "x": 0},
                             xaxis={"title": {"text": "training step"}},
                             yaxis={"title": {"text": y_title}, **({"range": list(y_range)} if y_range else {})},
                             legend={"orientation": "h", "y": -0.25}, shapes=shapes))


def metric_panels(steps: Sequence[int], losses: Mapping[str, Sequence[float]], scores: Mapping[str, Sequence[float]],
                  *, title: str, current_step: int | None = None) -> go.Figure:
    """What training recorded at each snapshot, losses (nats) and scores (0..1) on panels of their own that share
    the step axis: one axis never mixes a 0-6 loss with a 0-1 score. Every series is named in the legend."""
    panels = [(name, part, unit) for name, part, unit in (("loss", losses, "loss (nats)"),
                                                            ("score", scores, "score (0..1)")) if part]
    data, layout, shapes = [], {}, []
    n = 0
    gap = 0.12
    height = (1 - gap * (len(panels) - 1)) / max(len(panels), 1)
    for i, (_, part, unit) in enumerate(panels):
        ax = "" if i == 0 else str(i + 1)
        top = 1 - i * (height + gap)
        for name, ys in part.items():
            data.append(dict(type="scatter", x=list(steps), y=np.asarray(ys, dtype=np.float64), mode="lines+markers",
                             name=esc(name), xaxis=f"x{ax}", yaxis=f"y{ax}", showlegend=True,
                             line={"color": HEAD_COLOURS[n % len(HEAD_COLOURS)], "width": 1.8}, marker={"size": 5},
                             hovertemplate=f"{esc(name)}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>"))
            n += 1
        layout[f"yaxis{ax}"] = {"title": {"text": unit}, "domain": [max(0.0, top - height), top], "anchor": f"x{ax}",
                                **({"range": [0, 1.02]} if unit.startswith("score") else {"rangemode": "tozero"})}
        layout[f"xaxis{ax}"] = {"anchor": f"y{ax}", "matches": None if i == 0 else "x",
                                "title": {"text": "training step" if i == len(panels) - 1 else ""}}
        if current_step is not None:
            shapes.append({"type": "line", "x0": current_step, "x1": current_step, "xref": f"x{ax}",
                           "yref": f"y{ax} domain", "y0": 0, "y1": 1,
                           "line": {"color": "#333", "width": 1, "dash": "dot"}})
    for key in [k for k, v in layout.items() if k.startswith("xaxis") and v.get("matches") is None]:
        layout[key].pop("matches")
    return figure(data, dict(height=210 * len(panels) + 110, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                             title={"text": title, "x": 0}, legend={"orientation": "h", "y": -0.12},
                             shapes=shapes, **layout))


def head_across_steps(maps: np.ndarray, steps: Sequence[int], q_labels: Sequence[str], k_labels: Sequence[str],
                      *, head_name: str, allowed: np.ndarray | None = None, cols: int = 8) -> go.Figure:
    """(S, Tq, Tk) one head's weights at each snapshot, side by side (click one to jump to that step)."""
    cells = [(i, 0) for i in range(len(steps))]
    return thumbnail_grid(maps, q_labels, k_labels, cells=cells, cols=cols, allowed=allowed,
                          row_names=[f"step {s}" for s in steps], title=f"{esc(head_name)} across training",
                          show_ticks=False, panel_titles=[f"step {s}" for s in steps])
